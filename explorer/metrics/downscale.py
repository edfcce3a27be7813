"""Downscale simulation (F-CAM, supplementary E): how much localisation a coarse map can carry.

A CAM of stride z is a (H/z) x (W/z) grid upsampled back to H x W. Give it the best possible
content, the ground-truth mask itself downscaled by z (bilinear interpolation, as the paper's
Fig. E.4), and upsample it back: the
PxAP of the result against the original mask is a ceiling that no CAM of that stride can beat,
whatever its method, because the detail below a cell is gone. Bilinear and Gaussian (eq. 4,
sigma in cells) upsampling give different ceilings.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from explorer.metrics.common import MetricError
from explorer.metrics.pixels import PixelEvaluator
from explorer.upsample import upsample

ZOOMS = (2, 4, 8, 16, 32)


def downscale_masks(masks: np.ndarray, z: int, method: str = "bilinear") -> torch.Tensor:
    """N x H x W binary masks -> N x round(H/z) x round(W/z) float maps.

    ``bilinear`` interpolates (align_corners=False, no anti-aliasing), as the F-CAM paper's
    simulation does: a cell reads the mask near its centre. ``area`` averages each cell instead
    (its foreground fraction), the gentlest downscale.
    """
    if int(z) != z or z < 1:
        raise MetricError(f"the zoom factor must be a whole number >= 1, not {z}")
    if method not in ("bilinear", "area"):
        raise MetricError(f"unknown downscale method '{method}'; use bilinear or area")
    x = torch.as_tensor(np.asarray(masks), dtype=torch.float64)[:, None]
    h, w = x.shape[-2:]
    size = (max(1, round(h / z)), max(1, round(w / z)))
    if method == "area":
        return F.adaptive_avg_pool2d(x, size)[:, 0]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)[:, 0]


def restored_masks(masks: np.ndarray, z: int, upsampler: str, sigma_cells: float = 0.5,
                   downscale: str = "bilinear") -> np.ndarray:
    """Downscale by z, upsample back to the masks' size; values in [0, 1] (what a CAM would be).
    The Gaussian's sigma is ``sigma_cells`` grid cells, i.e. ``sigma_cells * z`` pixels."""
    h, w = masks.shape[-2:]
    small = downscale_masks(masks, z, downscale)
    sigma = (sigma_cells * z, sigma_cells * z) if upsampler == "gaussian" else None
    big = upsample(small, (h, w), upsampler, sigma).clamp(0, 1)
    return big.numpy()


def downscale_pxap(masks: np.ndarray, ignores: np.ndarray | None, zooms: Sequence[int] = ZOOMS,
                   upsamplers: Sequence[str] = ("bilinear", "gaussian"), sigma_cells: float = 0.5,
                   thresholds: np.ndarray | None = None, downscale: str = "bilinear") -> dict[str, list[float]]:
    """upsampler -> PxAP (percent) at each zoom of ``zooms``: the ceiling curve of F-CAM supp. E."""
    from explorer.metrics.common import thresholds as grid

    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3 or not masks.any():
        raise MetricError("downscale_pxap needs N x H x W masks with some foreground")
    taus = grid() if thresholds is None else thresholds
    curves: dict[str, list[float]] = {}
    for up in upsamplers:
        values = []
        for z in zooms:
            ev = PixelEvaluator(taus)
            ev.accumulate(restored_masks(masks, z, up, sigma_cells, downscale), masks, ignores)
            values.append(ev.compute().pxap)
        curves[up] = values
    return curves
