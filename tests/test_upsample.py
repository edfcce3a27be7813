"""Upsamplers and normalisers: Gaussian upsampling against eq. 4's double sum, evaluated directly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from explorer import gaussian_upsample, normalise, upsample
from explorer.upsample import UpsampleError, cell_centres


def eq4_direct(grid: np.ndarray, H: int, W: int, sx: float, sy: float) -> np.ndarray:
    """Extended-CAM eq. 4 as written, one pixel and one cell at a time (float64)."""
    h, w = grid.shape
    out = np.zeros((H, W))
    cy = [(i + 0.5) * H / h - 0.5 for i in range(h)]
    cx = [(j + 0.5) * W / w - 0.5 for j in range(w)]
    for y in range(H):
        for x in range(W):
            total = 0.0
            for i in range(h):
                for j in range(w):
                    total += grid[i, j] * math.exp(-((x - cx[j]) ** 2) / (2 * sx * sx) - ((y - cy[i]) ** 2) / (2 * sy * sy))
            out[y, x] = total
    return out


@pytest.mark.parametrize("seed", range(6))
def test_gaussian_equals_the_double_sum(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 6, size=2)
    H, W = rng.integers(4, 24, size=2)
    sx, sy = rng.uniform(0.5, 12, size=2)
    grids = rng.normal(size=(3, h, w))
    ours = gaussian_upsample(torch.tensor(grids, dtype=torch.float64), (H, W), (sx, sy)).numpy()
    assert ours.shape == (3, H, W)
    for b in range(3):
        np.testing.assert_allclose(ours[b], eq4_direct(grids[b], H, W, sx, sy), rtol=1e-10, atol=1e-12)


def test_gaussian_every_cell_reaches_every_pixel():
    """Unlike bilinear, a far cell still contributes (the paper's point in section 3.1)."""
    grid = torch.zeros(1, 14, 14)
    grid[0, 0, 0] = 1.0
    out = gaussian_upsample(grid, 224, 31.78)
    assert out[0, -1, -1] > 0
    assert F.interpolate(grid[:, None], size=224, mode="bilinear", align_corners=False)[0, 0, -1, -1] == 0


def test_gaussian_float32_matches_float64_and_stays_on_device():
    grids = torch.randn(64, 14, 14)
    ours = upsample(grids, 224, "gaussian", sigma=(31.78, 33.36))
    exact = upsample(grids.double(), 224, "gaussian", sigma=(31.78, 33.36))
    assert ours.dtype == torch.float32 and ours.device == grids.device
    torch.testing.assert_close(ours.double(), exact, rtol=1e-4, atol=1e-3)


def test_cell_centres_match_bilinear_align_corners_false():
    """A one-hot grid upsampled bilinearly peaks exactly at the cell centre we use."""
    h, H = 7, 224
    centres = cell_centres(h, H)
    grid = torch.zeros(1, h, h)
    grid[0, 3, 3] = 1
    up = upsample(grid, H, "bilinear")[0]
    assert abs(float(up.sum(0).argmax()) - float(centres[3])) <= 0.5


def test_interpolating_upsamplers_and_shapes():
    grids = torch.randn(2, 5, 7)
    for method in ("nearest", "bilinear", "bicubic"):
        out = upsample(grids, (30, 41), method)
        assert out.shape == (2, 30, 41)
    torch.testing.assert_close(upsample(grids, (30, 41), "bilinear"),
                               F.interpolate(grids[:, None], size=(30, 41), mode="bilinear", align_corners=False)[:, 0])


def test_bad_arguments_are_clear_errors():
    grids = torch.randn(1, 7, 7)
    with pytest.raises(UpsampleError, match="needs sigma"):
        upsample(grids, 224, "gaussian")
    for bad in (0.0, -1.0, float("nan"), 1e9):
        with pytest.raises(UpsampleError, match="between"):
            upsample(grids, 224, "gaussian", sigma=bad)
    with pytest.raises(UpsampleError, match="Unknown upsampler"):
        upsample(grids, 224, "lanczos")
    with pytest.raises(UpsampleError, match="B x h x w"):
        upsample(grids[0], 224, "bilinear")


@pytest.mark.parametrize("sigma", [0.05, 0.1, 10_000.0, 100_000.0])
def test_extreme_sigmas_stay_finite(sigma):
    out = upsample(torch.randn(2, 7, 7), 224, "gaussian", sigma=sigma)
    assert torch.isfinite(out).all()
    assert torch.isfinite(normalise(out, "minmax")).all()


def test_normalisers():
    maps = torch.tensor([[[-2.0, 0.0], [1.0, 4.0]]])
    torch.testing.assert_close(normalise(maps, "minmax"), torch.tensor([[[0.0, 1 / 3], [0.5, 1.0]]]))
    torch.testing.assert_close(normalise(maps, "max"), torch.tensor([[[-0.5, 0.0], [0.25, 1.0]]]))
    torch.testing.assert_close(normalise(maps, "none"), maps)


@pytest.mark.parametrize("method", ["none", "minmax", "max"])
def test_constant_zero_and_nan_maps_normalise_to_zeros(method):
    maps = torch.stack([torch.zeros(3, 3), torch.full((3, 3), 5.0),
                        torch.tensor([[1.0, float("nan"), 0.0]] * 3), torch.full((3, 3), float("inf"))])
    out = normalise(maps, method)
    assert torch.isfinite(out).all()
    if method != "none":
        assert (out == 0).all()
    else:
        torch.testing.assert_close(out[1], maps[1])
        assert (out[2:] == 0).all()


@pytest.mark.parametrize("method", ["none", "minmax", "max"])
def test_a_broken_map_leaves_its_neighbours_in_the_batch_alone(method):
    """Only the map with a NaN or an infinity becomes zeros; the others are scaled as if alone."""
    good = torch.tensor([[-2.0, 0.0], [1.0, 4.0]])
    maps = torch.stack([good, torch.tensor([[1.0, -float("inf")], [0.0, 2.0]]), 3 * good,
                        torch.tensor([[float("nan"), 1.0], [2.0, 3.0]])])
    out = normalise(maps, method)
    for i in (0, 2):
        torch.testing.assert_close(out[i], normalise(maps[i:i + 1], method)[0])
    assert (out[[1, 3]] == 0).all()
    torch.testing.assert_close(out[0], normalise(good[None], method)[0])
