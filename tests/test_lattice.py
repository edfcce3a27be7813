"""The permutohedral lattice (explorer.fcam.lattice) against its construction and the exact sum."""

import numpy as np
import pytest
import torch

from explorer.fcam.lattice import _elevate, _simplex, crf_features, lattice_to_exact_ratio, permutohedral_filter
from explorer.fcam.losses import affinity_times


def exact(features: np.ndarray, values: np.ndarray) -> np.ndarray:
    return affinity_times(torch.from_numpy(features).double()[None], torch.from_numpy(values).double()[None])[0].numpy()


@pytest.mark.parametrize("d", [1, 2, 5])
def test_elevated_points_lie_on_the_hyperplane_and_in_their_simplex(d):
    features = np.random.default_rng(d).normal(size=(300, d)) * 3
    elevated = _elevate(features)
    assert np.allclose(elevated.sum(1), 0.0, atol=1e-9)
    rem0, rank, bary = _simplex(elevated)
    assert (rem0 % (d + 1) == 0).all() and rem0.sum(1).tolist() == [0] * len(rem0)
    assert sorted(rank[0].tolist()) == list(range(d + 1))  # a permutation: every vertex once
    assert np.allclose(bary.sum(1), 1.0) and (bary >= -1e-12).all()
    # The barycentric combination of the simplex's d+1 vertices gives the point back.
    r = np.arange(d + 1)[:, None, None]
    vertices = rem0[None] + np.where(rank[None] > d - r, r - (d + 1), r)   # (d+1) x N x (d+1)
    rebuilt = (bary.T[..., None] * vertices).sum(0)
    assert np.allclose(rebuilt, elevated, atol=1e-9)


@pytest.mark.parametrize("d, floor", [(1, 0.995), (2, 0.995), (5, 0.99)])
def test_the_filter_follows_the_exact_gaussian_sum_up_to_one_scale(d, floor):
    rng = np.random.default_rng(10 + d)
    features = rng.random((1500, d)) * 4
    values = rng.random((1500, 2))
    lattice, dense = permutohedral_filter(features, values), exact(features, values)
    assert np.corrcoef(lattice.ravel(), dense.ravel())[0, 1] > floor
    ratio = lattice / dense
    assert ratio.std() / ratio.mean() < 0.1  # one scale for all points, not a shape of its own


def test_far_apart_points_do_not_mix_and_the_filter_is_linear():
    features = np.array([[0.0, 0.0], [50.0, 50.0]])
    values = np.array([[1.0, 2.0], [7.0, -1.0]])
    out = permutohedral_filter(features, values)
    for i in range(2):  # each point alone gives the same: nothing crosses 50 standard deviations
        assert np.allclose(out[i], permutohedral_filter(features[i:i + 1], values[i:i + 1])[0])
    assert np.allclose(permutohedral_filter(features, 3 * values), 3 * out)
    assert 0.2 < out[0, 0] < 1.0  # the exact sum gives 1.0 (the point itself); the lattice less


def test_ratio_on_an_image_is_near_the_synthetic_estimate():
    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(128, 40, (48, 48, 3)), 0, 255)
    image[12:36, 12:36] = [200, 60, 60]
    features = crf_features(image, 15.0, 100.0)
    assert features.shape == (48 * 48, 5) and features[1, 0] == pytest.approx(1 / 100.0)
    mask = np.zeros((48, 48))
    mask[12:36, 12:36] = 1
    probs = np.stack([1 - mask.ravel(), mask.ravel()], 1)
    ratio = lattice_to_exact_ratio(image, probs, 15.0, 100.0)
    direct = (probs * permutohedral_filter(features, probs)).sum() / (probs * exact(features, probs)).sum()
    assert ratio == pytest.approx(direct, rel=1e-4)
    assert 0.3 < ratio < 1.0
