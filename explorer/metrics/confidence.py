"""Confidence metrics of a saliency map (Chattopadhay et al., 2018, "Grad-CAM++"; the Extended-CAM
paper's Tables 2-3 on PASCAL VOC 2007 val): how much the class confidence drops when the image is
masked by the map.

With Y_i the softmax confidence of class c_i on image i and O_i the same on image i multiplied by
its [0, 1] map (upsampled to the image size):

    Average Drop % = 100 * mean_i max(0, Y_i - O_i) / Y_i         (lower is better)
    % Increase     = 100 * mean_i [O_i > Y_i]                     (higher is better)

Relative masking (Extended-CAM Table 3) replaces the map by a binary mask that keeps the top
`top_fraction` (50 %) of its pixels, so that every method uncovers the same area.

Where the map multiplies the image. The Grad-CAM++ code multiplies the un-normalised image by the
map, so a masked pixel is black. Models take normalised input, where zero is the dataset's mean
colour, not black; so when `mean` and `std` are given, the normalised input is mapped back to
pixel space, multiplied there and normalised again:

    masked = ((x * std + mean) * map - mean) / std

Without them, the map multiplies the input as given (right for a model fed un-normalised images).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from explorer.metrics.common import MetricError


@dataclass
class ConfidenceResult:
    """Average Drop % and % Increase, with the per-image confidences they came from."""

    average_drop: float
    increase: float
    confidence: np.ndarray         # (N,) Y: softmax confidence of the target on the full image
    masked_confidence: np.ndarray  # (N,) O: the same on the masked image
    targets: np.ndarray            # (N,) the classes explained
    kept_fraction: np.ndarray      # (N,) mean of the mask actually applied (0.5 with relative masking)
    relative: bool


def relative_mask(maps: torch.Tensor, top_fraction: float = 0.5) -> torch.Tensor:
    """Binary masks (same shape and dtype as `maps`, N x H x W) keeping exactly
    k = floor(top_fraction * H * W) pixels of each map: those of highest value, ties going to the
    lower row-major index (a stable descending sort), so the kept area never depends on ties."""
    if not (0.0 <= float(top_fraction) <= 1.0):
        raise MetricError(f"top_fraction must lie in [0, 1]; got {top_fraction}.")
    n, h, w = maps.shape
    k = int(math.floor(float(top_fraction) * h * w))
    flat = maps.reshape(n, h * w)
    order = torch.argsort(flat, dim=1, descending=True, stable=True)
    keep = torch.zeros_like(flat)
    keep.scatter_(1, order[:, :k], 1.0)
    return keep.reshape(n, h, w)


def _as_tensor(x, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    try:
        return torch.as_tensor(np.asarray(x))
    except (TypeError, ValueError) as exc:
        raise MetricError(f"{name} must be an array or a tensor: {exc}") from None


def _model_device(model_fn, fallback: torch.device) -> torch.device:
    if isinstance(model_fn, torch.nn.Module):
        for p in model_fn.parameters():
            return p.device
        for b in model_fn.buffers():
            return b.device
    return fallback


def average_drop_increase(model_fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, maps01,
                          targets: Sequence[int] | np.ndarray | torch.Tensor | None = None, *,
                          relative: bool = False, top_fraction: float = 0.5,
                          mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                          batch_size: int = 32, device: torch.device | str | None = None,
                          full_confidence=None) -> ConfidenceResult:
    """Average Drop % and % Increase of maps on a classifier (formulas in the module docstring).

    model_fn: batch (B x C x H x W, the model's input space) -> logits (B x classes), e.g. the
        model itself; it is called under torch.no_grad() and its train/eval mode is left alone.
    images: N x C x H x W tensor, as the model takes it (normalised if mean/std are given).
    maps01: N x H x W (or N x 1 x H x W) maps in [0, 1] at the images' resolution.
    targets: the class of each map; None -> each image's top-1 class on the full image.
    relative: keep only the top `top_fraction` pixels of each map (binary mask), Extended-CAM Table 3.
    mean, std: per-channel normalisation of `images`; given, the mask is applied to the
        un-normalised image (masked pixels black), else to `images` as given.
    Runs in batches of `batch_size` on `device` (default: the model's parameters' device, else the
    images'). A term with Y_i = 0 (a softmax underflow) counts as no drop.
    """
    images = _as_tensor(images, "images")
    if images.ndim != 4:
        raise MetricError(f"images must be N x C x H x W; got shape {tuple(images.shape)}.")
    n, c, h, w = images.shape
    maps = _as_tensor(maps01, "maps01")
    if maps.ndim == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if tuple(maps.shape) != (n, h, w):
        raise MetricError(f"maps01 must be N x H x W = {(n, h, w)} (the images' size); got {tuple(maps.shape)}.")
    if not maps.is_floating_point():
        maps = maps.double()
    if torch.isnan(maps).any():
        raise MetricError("maps01 contains NaN.")
    if n and (maps.min() < 0 or maps.max() > 1):
        raise MetricError(f"maps01 must lie in [0, 1]; got [{float(maps.min()):g}, {float(maps.max()):g}].")
    if n == 0:
        raise MetricError("No image to evaluate.")
    if batch_size < 1:
        raise MetricError("batch_size must be at least 1.")
    if (mean is None) != (std is None):
        raise MetricError("Give both mean and std (to mask in pixel space) or neither.")
    if targets is not None:
        targets_t = _as_tensor(targets, "targets").reshape(-1).long()
        if len(targets_t) != n:
            raise MetricError(f"Got {n} images but {len(targets_t)} targets.")
    dev = torch.device(device) if device is not None else _model_device(model_fn, images.device)
    dtype = images.dtype if images.is_floating_point() else torch.float32
    if mean is not None:
        mean_t = torch.as_tensor(mean, dtype=dtype, device=dev).reshape(1, -1, 1, 1)
        std_t = torch.as_tensor(std, dtype=dtype, device=dev).reshape(1, -1, 1, 1)
        if mean_t.shape[1] != c or std_t.shape[1] != c:
            raise MetricError(f"mean and std need one value per channel ({c}).")

    known = None
    if full_confidence is not None:
        if targets is None:
            raise MetricError("full_confidence needs the targets it was read for.")
        known = _as_tensor(full_confidence, "full_confidence").reshape(-1).double().cpu()
        if len(known) != n:
            raise MetricError(f"Got {n} images but {len(known)} full-image confidences.")
    ys, os_, ts, kept = [], [], [], []
    with torch.no_grad():
        for start in range(0, n, batch_size):
            x = images[start:start + batch_size].to(dev, dtype)
            m = maps[start:start + batch_size].to(dev)
            if relative:  # rank in the maps' own precision, then cast
                m = relative_mask(m, top_fraction)
            m = m.to(dtype)
            m4 = m[:, None]
            if mean is not None:
                masked = ((x * std_t + mean_t) * m4 - mean_t) / std_t
            else:
                masked = x * m4
            p_masked = torch.softmax(model_fn(masked).double(), dim=1)
            if targets is None:
                p_full = torch.softmax(model_fn(x).double(), dim=1)
                t = p_full.argmax(dim=1)
            else:
                t = targets_t[start:start + batch_size].to(dev)
                if (t < 0).any() or (t >= p_masked.shape[1]).any():
                    raise MetricError(f"targets must lie in [0, {p_masked.shape[1]}).")
            idx = torch.arange(len(t), device=dev)
            if known is not None:
                ys.append(known[start:start + batch_size])
            else:
                if targets is not None:
                    p_full = torch.softmax(model_fn(x).double(), dim=1)
                ys.append(p_full[idx, t].cpu())
            os_.append(p_masked[idx, t].cpu())
            ts.append(t.cpu())
            kept.append(m.reshape(len(m), -1).double().mean(dim=1).cpu())

    y = torch.cat(ys).numpy()
    o = torch.cat(os_).numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        drop = np.where(y > 0, np.maximum(0.0, y - o) / y, 0.0)
    return ConfidenceResult(
        average_drop=float(100.0 * drop.mean()),
        increase=float(100.0 * np.mean(o > y)),
        confidence=y, masked_confidence=o, targets=torch.cat(ts).numpy(),
        kept_fraction=torch.cat(kept).numpy(), relative=bool(relative),
    )
