"""Extended-CAM's section-5 claim over a whole split: explicit smoothing mimics Grad-CAM's implicit one.

Grad-CAM pools the gradient into one weight per channel (w_k); Extended-CAM keeps one weight per
cell (w_kij, eq. 8) and then smooths explicitly, with the Gaussian upsampler (eq. 4). The paper
observes that at some sigma (about 20 px for VGG16) the two maps look alike: the pooling of
Grad-CAM acts as an implicit smoothing. Here that is measured, not eyeballed: for every image of
a split, the Pearson correlation between Grad-CAM upsampled bilinearly and Extended-CAM upsampled
with the Gaussian at each sigma of a sweep (both min-max normalised at the input size), then the
mean over images with a 95 % bootstrap interval, and where the mean peaks.

After a GAP + linear head the two methods give the same grid map (dy/dA_kij = w_k / Z for every
cell), so the curve only measures how far Gaussian upsampling is from bilinear; after a head that
is not GAP + linear (``synthetic_vgg``) the maps genuinely differ and the claim can be tested.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from explorer.backbones import CHECKPOINT_DIR, Backbone
from explorer.errors import ExplorerError
from explorer.metrics.intervals import bootstrap_weights, mean_interval
from explorer.pipeline import grid_maps
from explorer.safe_files import UnsafeFileError, read_regular
from explorer.upsample import normalise, upsample

DEFAULT_SIGMAS = tuple(float(s) for s in (1, 2, 4, 6, 8, 10, 12, 15, 18, 21, 25, 30, 35, 40, 50, 60, 70, 80, 100, 120,
                                          150))


SHIPPED_CURVES_DIR = CHECKPOINT_DIR / "evaluations" / "smoothing"
MAX_CURVE_BYTES = 2**20  # a curve over 21 sigmas is about 3 kB; anything near this is not one


class SmoothingError(ExplorerError):
    """The smoothing curve cannot be computed as asked."""


@dataclass
class SmoothingCurve:
    sigmas: np.ndarray
    correlations: np.ndarray          # images x sigmas
    methods: tuple[str, str] = ("gradcam", "extendedcam")
    seconds: float = 0.0
    image_ids: list[str] = field(default_factory=list)

    @property
    def mean(self) -> np.ndarray:
        return self.correlations.mean(axis=0)

    @property
    def best_sigma(self) -> float:
        return float(self.sigmas[int(np.argmax(self.mean))])

    def summary(self) -> dict:
        weights = bootstrap_weights(len(self.correlations))
        intervals = [mean_interval(self.correlations[:, j], weights).as_list() for j in range(len(self.sigmas))]
        # Where the peak is, per bootstrap replicate: the interval of the best sigma itself.
        best = self.sigmas[np.argmax(weights @ self.correlations / len(self.correlations), axis=1)]
        return {
            "implicit": f"{self.methods[0]} + bilinear", "explicit": f"{self.methods[1]} + gaussian(sigma)",
            "images": int(len(self.correlations)), "sigmas": self.sigmas.tolist(),
            "mean_r": [round(float(v), 4) for v in self.mean], "mean_r_ci": intervals,
            "std_r": [round(float(v), 4) for v in self.correlations.std(axis=0)],
            "best_sigma": self.best_sigma, "best_mean_r": round(float(self.mean.max()), 4),
            "best_sigma_ci": [float(np.percentile(best, 2.5)), float(np.percentile(best, 97.5))],
            "seconds": round(self.seconds, 1),
        }


@dataclass(frozen=True)
class SplitCurve:
    """A finished ``smoothing-curve`` run over a split, as its JSON holds it: mean r over the images
    at each sigma with its 95 % bootstrap interval, and where (with what interval) the mean peaks."""

    sigmas: np.ndarray
    mean_r: np.ndarray
    low: np.ndarray
    high: np.ndarray
    best_sigma: float
    best_sigma_ci: tuple[float, float]
    images: int
    dataset: str
    split: str
    weights: str
    paper_sigma: float | None

    @property
    def best_interval(self) -> tuple[float, float]:
        """The 95 % interval of the mean r at the best sigma."""
        at = int(np.argmin(np.abs(self.sigmas - self.best_sigma)))
        return float(self.low[at]), float(self.high[at])

    def reading(self) -> str:
        """What the curve says, in one sentence a reader can check against the figure."""
        low, high = self.best_interval
        peak = (f"{self.best_sigma_ci[0]:g}-{self.best_sigma_ci[1]:g} px"
                if self.best_sigma_ci[0] != self.best_sigma_ci[1] else f"{self.best_sigma_ci[0]:g} px")
        text = (f"Over {self.images} images of the {self.dataset} {self.split} split, the mean correlation peaks at "
                f"**σ = {self.best_sigma:g} px** (95 % interval of the peak's position {peak}), mean r "
                f"{float(self.mean_r.max()):.3f} [{low:.3f}, {high:.3f}].")
        if self.paper_sigma is not None:
            text += f" The Extended-CAM paper reports about {self.paper_sigma:g} px for VGG16 on its photographs."
        return text


def read_split_curve(path: str | Path) -> SplitCurve:
    """A ``smoothing-curve`` JSON; a file that is not one raises SmoothingError naming it."""
    path = Path(path)
    try:
        data = json.loads(read_regular(path, MAX_CURVE_BYTES).decode("utf-8"))
    except UnsafeFileError as exc:
        raise SmoothingError(f"{path.name} is not a readable smoothing curve, too large or not a regular file "
                             f"({exc}); rerun `smoothing-curve`.") from exc
    except ValueError as exc:
        raise SmoothingError(f"{path.name} cannot be read as a smoothing curve ({exc}); rerun `smoothing-curve`.") from exc
    try:
        sigmas = np.asarray(data["sigmas"], dtype=np.float64)
        mean_r = np.asarray(data["mean_r"], dtype=np.float64)
        intervals = np.asarray(data["mean_r_ci"], dtype=np.float64).reshape(len(sigmas), 2)
        paper = data.get("paper") or {}
        curve = SplitCurve(sigmas, mean_r, intervals[:, 0], intervals[:, 1], float(data["best_sigma"]),
                           (float(data["best_sigma_ci"][0]), float(data["best_sigma_ci"][1])), int(data["images"]),
                           str(data["dataset"]), str(data["split"]), str(data["weights"]),
                           float(paper["vgg16_sigma_px"]) if "vgg16_sigma_px" in paper else None)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise SmoothingError(f"{path.name} cannot be read as a smoothing curve ({exc}); rerun `smoothing-curve`.") from exc
    if sigmas.ndim != 1 or len(sigmas) == 0 or mean_r.shape != sigmas.shape or curve.images < 1:
        raise SmoothingError(f"{path.name} is not a smoothing curve (its sigmas and mean r do not match).")
    return curve


def shipped_split_curve(backbone: Backbone, layer: str, directory: Path = SHIPPED_CURVES_DIR) -> SplitCurve | None:
    """The shipped curve over the test split for this backbone's layer, or None when there is none
    for these weights (a curve of the shipped classifier says nothing about random or other weights)."""
    path = directory / f"{backbone.name}__{layer}.json"
    if backbone.weights != "pretrained" or not path.is_file():
        return None
    curve = read_split_curve(path)
    return curve if curve.weights == backbone.weights_label else None


def _pearson_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson r of each pair of flattened maps (N x ...), 0 where either map is constant."""
    a = a.flatten(1).double()
    b = b.flatten(1).double()
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    denom = (a.pow(2).sum(1) * b.pow(2).sum(1)).sqrt()
    return torch.where(denom > 0, (a * b).sum(1) / torch.where(denom > 0, denom, torch.ones_like(denom)),
                       torch.zeros_like(denom))


def smoothing_curve(backbone: Backbone, images: Sequence, targets: Sequence[int] | None = None, *,
                    layer: str | None = None, sigmas: Sequence[float] = DEFAULT_SIGMAS, batch_size: int = 16,
                    methods: tuple[str, str] = ("gradcam", "extendedcam"),
                    progress: Callable[[int, int], object] | None = None,
                    image_ids: Sequence[str] = ()) -> SmoothingCurve:
    """Per-image r(implicit + bilinear, explicit + gaussian(sigma)) over ``images`` (PIL images).

    ``targets``: the class each map explains (default: the top-1 prediction).
    """
    sigma_values = np.asarray(sigmas, dtype=np.float64)
    if sigma_values.ndim != 1 or len(sigma_values) == 0 or not np.all(np.isfinite(sigma_values)) or (sigma_values <= 0).any():
        raise SmoothingError("the sigmas must be a non-empty list of positive numbers (pixels)")
    if len(images) == 0:
        raise SmoothingError("no image to compute the smoothing curve on")
    start = time.perf_counter()
    size = tuple(int(v) for v in backbone.input_size)
    rows = []
    chunks = math.ceil(len(images) / batch_size)
    for c in range(chunks):
        batch_images = images[c * batch_size:(c + 1) * batch_size]
        batch = backbone.preprocess(list(batch_images))
        if targets is None:
            with torch.no_grad():
                chosen = backbone.model(batch).argmax(1)
        else:
            chosen = torch.as_tensor(list(targets[c * batch_size:(c + 1) * batch_size]), device=batch.device)
        grid = grid_maps(backbone, batch, chosen, methods, layer)
        implicit = normalise(upsample(grid.maps[methods[0]], size, "bilinear", None).double(), "minmax")
        row = [_pearson_rows(implicit, normalise(upsample(grid.maps[methods[1]], size, "gaussian", (s, s)).double(),
                                                 "minmax")) for s in sigma_values]
        rows.append(torch.stack(row, dim=1).cpu().numpy())
        if progress is not None:
            progress(min((c + 1) * batch_size, len(images)), len(images))
    return SmoothingCurve(sigma_values, np.concatenate(rows), methods, time.perf_counter() - start, list(image_ids))
