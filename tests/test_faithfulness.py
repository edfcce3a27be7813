"""Deletion / insertion, ROAD and the confidence change against closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer.metrics import MetricError
from explorer.metrics.faithfulness import (
    blur,
    confidence_change,
    deletion_insertion,
    noisy_linear_impute,
    pixel_order,
    road,
)


def mean_model(scale: float = 4.0, region: torch.Tensor | None = None, offset: float = 0.0):
    """logits [scale * (mean(x over region) - offset), 0]: p_0 = sigmoid of that."""
    def model_fn(x: torch.Tensor) -> torch.Tensor:
        r = torch.ones(x.shape[-2:], dtype=x.dtype) if region is None else region.to(x.dtype)
        s = scale * ((x * r).sum(dim=(1, 2, 3)) / (r.sum() * x.shape[1]) - offset)
        return torch.stack([s, torch.zeros_like(s)], dim=1)
    return model_fn


def test_deletion_of_a_uniform_image_follows_the_removed_fraction():
    images = torch.ones(1, 3, 8, 8, dtype=torch.float64)
    maps = torch.rand(1, 8, 8, dtype=torch.float64)
    curve = deletion_insertion(mean_model(), images, maps, [0], steps=16)
    expected = 1 / (1 + np.exp(-4.0 * (1 - curve.fractions)))
    np.testing.assert_allclose(curve.probabilities[0], expected, rtol=1e-12)
    np.testing.assert_allclose(curve.auc[0], np.trapezoid(expected, curve.fractions))


def test_a_map_on_the_evidence_deletes_faster_and_inserts_faster_than_its_reverse():
    region = torch.zeros(8, 8)
    region[2:5, 2:6] = 1
    model = mean_model(8.0, region, offset=0.6)
    images = (region.double() * (0.8 + 0.2 * torch.rand(2, 3, 8, 8, dtype=torch.float64)))
    good = region.double()[None].repeat(2, 1, 1) + 0.01 * torch.rand(2, 8, 8, dtype=torch.float64)
    bad = -good
    assert (deletion_insertion(model, images, good, [0, 0]).auc < deletion_insertion(model, images, bad, [0, 0]).auc).all()
    ins_good = deletion_insertion(model, images, good, [0, 0], mode="insertion")
    ins_bad = deletion_insertion(model, images, bad, [0, 0], mode="insertion")
    assert (ins_good.auc > ins_bad.auc).all()
    full = torch.sigmoid(model(images)[:, 0]).numpy()
    np.testing.assert_allclose(ins_good.probabilities[:, -1], full, rtol=1e-12)
    np.testing.assert_allclose(ins_good.probabilities[:, 0], torch.sigmoid(model(blur(images))[:, 0]).numpy(), rtol=1e-12)
    assert (morf := road(model, images, good, [0, 0], noise_std=0)).auc.shape == (2,)
    lerf = road(model, images, good, [0, 0], order="lerf", noise_std=0)
    assert (morf.auc < lerf.auc).all()


def test_pixel_space_masking_round_trips_through_the_normalisation():
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    pixels = torch.rand(1, 3, 6, 6, dtype=torch.float64)
    m = torch.tensor(mean, dtype=torch.float64).reshape(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float64).reshape(1, 3, 1, 1)
    normalised = (pixels - m) / s
    seen = []

    def model_fn(x):
        seen.append(x * s + m)
        return torch.zeros(x.shape[0], 2, dtype=x.dtype)

    deletion_insertion(model_fn, normalised, torch.rand(1, 6, 6), [0], steps=2, mean=mean, std=std)
    torch.testing.assert_close(seen[0][0], pixels[0])
    torch.testing.assert_close(seen[0][-1], torch.zeros(3, 6, 6, dtype=torch.float64), atol=1e-12, rtol=0)


def test_linear_imputation_reproduces_a_plane_in_the_interior():
    h, w = 12, 10
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    plane = torch.stack([0.1 + 0.02 * yy + 0.03 * xx, 0.5 - 0.01 * xx, 0.2 + 0.0 * yy])
    removed = torch.zeros(h, w, dtype=torch.bool)
    removed[3:8, 2:7] = True
    removed[9, 8] = True
    out = noisy_linear_impute(plane, removed, noise_std=0.0)
    torch.testing.assert_close(out, plane, rtol=0, atol=1e-10)
    noisy = noisy_linear_impute(plane, removed, noise_std=0.01, generator=torch.Generator().manual_seed(0))
    assert torch.equal(noisy[:, ~removed], plane[:, ~removed])
    assert 0.003 < float((noisy - plane)[:, removed].std()) < 0.03


def test_confidence_change_closed_form_and_bad_input():
    images = torch.full((1, 3, 4, 4), 1.0, dtype=torch.float64)
    maps = torch.full((1, 4, 4), 0.5, dtype=torch.float64)
    change = confidence_change(mean_model(), images, maps, [0])
    np.testing.assert_allclose(change, [1 / (1 + np.exp(-2.0)) - 1 / (1 + np.exp(-4.0))])
    with pytest.raises(MetricError, match=r"\[0, 1\]"):
        confidence_change(mean_model(), images, maps * 3, [0])
    with pytest.raises(MetricError, match="N x H x W"):
        deletion_insertion(mean_model(), images, torch.zeros(1, 3, 3), [0])
    with pytest.raises(MetricError, match="targets"):
        road(mean_model(), images, maps, [0, 1])
    assert pixel_order(torch.tensor([[[1.0, 3.0], [3.0, 0.0]]])).tolist() == [[1, 2, 0, 3]]
