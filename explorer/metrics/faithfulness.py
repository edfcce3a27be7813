"""Faithfulness of a saliency map: does the network's confidence follow the pixels the map ranks
first? Three measures, all on the softmax probability p_c of the explained class:

* deletion and insertion (Petsiuk et al. 2018, RISE, section 4.1): remove the pixels in the map's
  order (deletion: to black, from the full image) or reveal them (insertion: onto a blurred copy,
  Gaussian kernel 11, sigma 5, as RISE's code), a fraction k/S at step k, and take the area under
  p_c against the fraction (trapezoid). Deletion AUC: lower is better; insertion AUC: higher.
* ROAD (Rong et al. 2022, "A Consistent and Efficient Evaluation Strategy for Attribution
  Methods"): remove a fraction p of the pixels, the most relevant first (MoRF) or the least (LeRF),
  and fill them by noisy linear imputation, so that the removal itself carries no shape the
  network could read. A faithful map drops p_c fast under MoRF and slowly under LeRF.
* the confidence change (pytorch-grad-cam's CamMultImageConfidenceChange): p_c(x * M) - p_c(x).

Masking happens in pixel space: given mean and std, the normalised input is mapped back, changed
there and normalised again (as in `explorer.metrics.confidence`). Pixel order is a stable
descending sort of the map, so ties never depend on the platform.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from explorer.metrics.common import MetricError

ModelFn = Callable[[torch.Tensor], torch.Tensor]
ROAD_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
NEIGHBOUR_WEIGHTS = ((-1, -1, 1 / 12), (-1, 0, 1 / 6), (-1, 1, 1 / 12), (0, -1, 1 / 6), (0, 1, 1 / 6),
                     (1, -1, 1 / 12), (1, 0, 1 / 6), (1, 1, 1 / 12))  # ROAD's imputation kernel


@dataclass
class Curve:
    """p_c of every image (N x S) at each fraction of pixels changed (S), and its area."""

    name: str
    fractions: np.ndarray
    probabilities: np.ndarray
    auc: np.ndarray  # per image

    @property
    def mean_auc(self) -> float:
        return float(self.auc.mean())


def _pixel_space(images: torch.Tensor, mean, std):
    if (mean is None) != (std is None):
        raise MetricError("Give both mean and std (to change pixels in pixel space) or neither.")
    if mean is None:
        return images, (lambda x: x)
    m = torch.as_tensor(mean, dtype=images.dtype, device=images.device).reshape(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=images.dtype, device=images.device).reshape(1, -1, 1, 1)
    return images * s + m, (lambda x: (x - m) / s)


def _check(images: torch.Tensor, maps: torch.Tensor, targets) -> tuple[torch.Tensor, torch.Tensor]:
    if images.ndim != 4:
        raise MetricError(f"images must be N x C x H x W; got shape {tuple(images.shape)}.")
    maps = torch.as_tensor(maps)
    if maps.ndim == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if tuple(maps.shape) != (images.shape[0],) + tuple(images.shape[2:]):
        raise MetricError(f"maps must be N x H x W = {(images.shape[0],) + tuple(images.shape[2:])}; "
                          f"got {tuple(maps.shape)}.")
    if torch.isnan(maps).any():
        raise MetricError("maps contain NaN.")
    t = torch.as_tensor(targets).reshape(-1).long()
    if len(t) != images.shape[0]:
        raise MetricError(f"Got {images.shape[0]} images but {len(t)} targets.")
    return maps, t


def pixel_order(maps: torch.Tensor) -> torch.Tensor:
    """N x (H*W) pixel indices, most salient first (stable: ties keep row-major order)."""
    return torch.argsort(maps.reshape(maps.shape[0], -1), dim=1, descending=True, stable=True)


def _probabilities(model_fn: ModelFn, batch: torch.Tensor, target: int, batch_size: int) -> torch.Tensor:
    out = []
    with torch.no_grad():
        for start in range(0, batch.shape[0], batch_size):
            out.append(torch.softmax(model_fn(batch[start:start + batch_size]).double(), dim=1)[:, target])
    return torch.cat(out).cpu()


def blur(pixels: torch.Tensor, kernel: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """RISE's insertion start: a Gaussian blur (reflect padding) of B x C x H x W pixels."""
    x = torch.arange(kernel, dtype=pixels.dtype, device=pixels.device) - (kernel - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    c = pixels.shape[1]
    padded = F.pad(pixels, (kernel // 2,) * 4, mode="reflect")
    out = F.conv2d(padded, g.reshape(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(out, g.reshape(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def deletion_insertion(model_fn: ModelFn, images: torch.Tensor, maps, targets, *, mode: str = "deletion",
                       steps: int = 32, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                       batch_size: int = 33) -> Curve:
    """The deletion or insertion curve of each map (module docstring), at fractions k/steps,
    k = 0..steps: steps + 1 forwards per image. RISE used steps = H*W/224 (224 for 224 x 224)."""
    if mode not in ("deletion", "insertion"):
        raise MetricError(f"mode must be 'deletion' or 'insertion', not '{mode}'.")
    if steps < 1:
        raise MetricError("steps must be at least 1.")
    maps, t = _check(images, maps, targets)
    pixels, back = _pixel_space(images, mean, std)
    n, c, h, w = images.shape
    order = pixel_order(maps)
    fractions = np.arange(steps + 1) / steps
    counts = np.round(fractions * h * w).astype(int)
    probs = np.empty((n, steps + 1))
    for i in range(n):
        start_img = pixels[i:i + 1] if mode == "deletion" else blur(pixels[i:i + 1])
        end_img = torch.zeros_like(pixels[i:i + 1]) if mode == "deletion" else pixels[i:i + 1]
        rank = torch.empty(h * w, dtype=torch.long, device=images.device)
        rank[order[i].to(images.device)] = torch.arange(h * w, device=images.device)
        changed = rank[None, :] < torch.as_tensor(counts, device=images.device)[:, None]  # (S+1) x HW
        changed = changed.reshape(steps + 1, 1, h, w).to(pixels.dtype)
        batch = start_img * (1 - changed) + end_img * changed
        probs[i] = _probabilities(model_fn, back(batch), int(t[i]), batch_size).numpy()
    auc = np.asarray(np.trapezoid(probs, fractions, axis=1))
    return Curve(mode, fractions, probs, auc)


def noisy_linear_impute(pixels: torch.Tensor, removed: torch.Tensor, noise_std: float = 0.01,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """ROAD's noisy linear imputation of one image (C x H x W, pixel values): every removed pixel
    (removed: H x W bool) becomes the weighted mean of its 8 neighbours (1/6 direct, 1/12 diagonal,
    renormalised at the border), all removed pixels solved jointly as one sparse linear system,
    plus N(0, noise_std^2) noise. Known pixels are unchanged."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import splu

    c, h, w = pixels.shape
    mask = removed.cpu().numpy().astype(bool)
    unknown = np.flatnonzero(mask.ravel())
    if unknown.size == 0:
        return pixels.clone()
    index = -np.ones(h * w, dtype=np.int64)
    index[unknown] = np.arange(unknown.size)
    ys, xs = np.divmod(unknown, w)
    values = pixels.detach().double().cpu().numpy().reshape(c, h * w)
    total = np.zeros(unknown.size)
    rows, cols, data = [np.arange(unknown.size)], [np.arange(unknown.size)], [np.ones(unknown.size)]
    rhs = np.zeros((unknown.size, c))
    for dy, dx, wt in NEIGHBOUR_WEIGHTS:
        ny, nx = ys + dy, xs + dx
        inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        total[inside] += wt
    for dy, dx, wt in NEIGHBOUR_WEIGHTS:
        ny, nx = ys + dy, xs + dx
        inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        where = np.flatnonzero(inside)
        flat = ny[where] * w + nx[where]
        weight = wt / total[where]
        is_unknown = index[flat] >= 0
        rows.append(where[is_unknown])
        cols.append(index[flat[is_unknown]])
        data.append(-weight[is_unknown])
        rhs[where[~is_unknown]] += weight[~is_unknown, None] * values[:, flat[~is_unknown]].T
    matrix = coo_matrix((np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))),
                        shape=(unknown.size, unknown.size)).tocsc()
    solved = splu(matrix).solve(rhs)
    out = values.copy()
    out[:, unknown] = solved.T
    result = torch.as_tensor(out.reshape(c, h, w), dtype=pixels.dtype)
    if noise_std > 0:
        noise = torch.randn((c, int(unknown.size)), generator=generator, dtype=torch.float64)
        result.view(c, -1)[:, torch.as_tensor(unknown)] += (noise_std * noise).to(pixels.dtype)
    return result.to(pixels.device)


def road(model_fn: ModelFn, images: torch.Tensor, maps, targets, *, order: str = "morf",
         fractions: Sequence[float] = ROAD_FRACTIONS, mean: Sequence[float] | None = None,
         std: Sequence[float] | None = None, noise_std: float = 0.01, seed: int = 0,
         batch_size: int = 16) -> Curve:
    """ROAD: p_c after removing each fraction of pixels, most relevant first ("morf") or least
    ("lerf"), imputed by `noisy_linear_impute` (pixel values taken in [0, 1] units: images in 0-1
    before normalisation). `auc` is the mean p_c over the fractions."""
    if order not in ("morf", "lerf"):
        raise MetricError(f"order must be 'morf' or 'lerf', not '{order}'.")
    fractions_a = np.asarray(fractions, dtype=float)
    if fractions_a.size == 0 or (fractions_a < 0).any() or (fractions_a > 1).any():
        raise MetricError("ROAD fractions must lie in [0, 1].")
    maps, t = _check(images, maps, targets)
    pixels, back = _pixel_space(images, mean, std)
    n, c, h, w = images.shape
    ranked = pixel_order(maps if order == "morf" else -maps)
    generator = torch.Generator().manual_seed(seed)
    probs = np.empty((n, fractions_a.size))
    for i in range(n):
        batch = []
        for p in fractions_a:
            removed = torch.zeros(h * w, dtype=torch.bool)
            removed[ranked[i, :int(round(p * h * w))].cpu()] = True
            batch.append(noisy_linear_impute(pixels[i], removed.reshape(h, w), noise_std, generator))
        probs[i] = _probabilities(model_fn, back(torch.stack(batch)), int(t[i]), batch_size).numpy()
    return Curve(f"road-{order}", fractions_a, probs, probs.mean(axis=1))


def confidence_change(model_fn: ModelFn, images: torch.Tensor, maps01, targets, *,
                      mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                      batch_size: int = 32) -> np.ndarray:
    """p_c(x * M) - p_c(x) per image, M the [0, 1] map (pixel space when mean/std are given)."""
    maps, t = _check(images, maps01, targets)
    if maps.min() < 0 or maps.max() > 1:
        raise MetricError("maps must lie in [0, 1] for the confidence change; normalise them first.")
    pixels, back = _pixel_space(images, mean, std)
    out = np.empty(images.shape[0])
    for i in range(images.shape[0]):
        both = back(torch.cat([pixels[i:i + 1] * maps[i].to(pixels.dtype), pixels[i:i + 1]]))
        p = _probabilities(model_fn, both, int(t[i]), batch_size).numpy()
        out[i] = p[0] - p[1]
    return out
