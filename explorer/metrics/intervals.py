"""95 % bootstrap intervals over test images for every headline number, and the F-CAM code's
per-threshold top-k localisation.

The bootstrap resamples images with replacement (``replicates`` multinomial draws of N out of N,
seeded) and recomputes the statistic *as it is defined*, the threshold choice included: MaxBoxAcc
of a replicate is the max over tau of that replicate's BoxAcc curve, and PxAP is the AP of the
replicate's summed pixel histograms. The interval is the 2.5th and 97.5th percentile of the
replicates (the percentile bootstrap). Every replicate is one matrix product of the weights
(B x N) with the images' per-threshold values (N x T), so 1,000 replicates of 1,000 images at
1,000 thresholds cost a fraction of a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from explorer.metrics.boxes import ImageCurves
from explorer.metrics.common import MetricError
from explorer.metrics.pixels import average_precision

REPLICATES = 1000
LEVEL = 95.0


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def as_list(self) -> list[float]:
        return [round(self.low, 4), round(self.high, 4)]


def bootstrap_weights(n: int, replicates: int = REPLICATES, seed: int = 0) -> np.ndarray:
    """B x n resampling counts: row b says how many times each image is drawn in replicate b."""
    if n < 1:
        raise MetricError("A bootstrap needs at least one image.")
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=replicates).astype(np.float64)


def _percentiles(values: np.ndarray) -> Interval:
    tail = (100.0 - LEVEL) / 2
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return Interval(float(low), float(high))


def hit_curves(curves: Sequence[ImageCurves], delta: float = 0.5, all_contours: bool = False) -> np.ndarray:
    """N x T booleans: image i's box (largest contour, or the best of all contours) at threshold t
    has IoU >= ``delta`` with a ground-truth box."""
    name = "iou_all" if all_contours else "iou_largest"
    return np.stack([getattr(c, name)[c.mask_of_threshold] >= delta for c in curves])


def max_acc_interval(hits: np.ndarray, weights: np.ndarray) -> Interval:
    """Interval of max_t mean_i hits[i, t] (MaxBoxAcc, or a joint top-k counter), percent."""
    n = hits.shape[0]
    return _percentiles(100.0 * (weights @ hits.astype(np.float64)).max(axis=1) / n)


def max_box_acc_v2_interval(curves: Sequence[ImageCurves], weights: np.ndarray,
                            deltas: Sequence[int] = (30, 50, 70)) -> Interval:
    """MaxBoxAccV2: the mean over deltas of each delta's best-threshold accuracy, per replicate."""
    n = len(curves)
    per_delta = [(weights @ hit_curves(curves, d / 100, all_contours=True).astype(np.float64)).max(axis=1) / n
                 for d in deltas]
    return _percentiles(100.0 * np.mean(per_delta, axis=0))


def pxap_interval(pos: np.ndarray, neg: np.ndarray, weights: np.ndarray) -> Interval:
    """PxAP from each image's positive and negative histograms (N x bins), per replicate."""
    pos_w, neg_w = weights @ pos.astype(np.float64), weights @ neg.astype(np.float64)
    return _percentiles(np.array([average_precision(p, q)[-1] for p, q in zip(pos_w, neg_w)]))


@dataclass(frozen=True)
class PairedDifference:
    """Statistic(A) - statistic(B) on the same images, with its paired 95 % bootstrap interval
    (both maps scored on the same resampled images in each replicate). The interval holding 0
    means the ranking is not established."""

    difference: float
    low: float
    high: float

    @property
    def reading(self) -> str:
        return "A > B" if self.low > 0 else "A < B" if self.high < 0 else "not established"

    def as_dict(self) -> dict:
        return {"difference": round(self.difference, 4), "ci": [round(self.low, 4), round(self.high, 4)],
                "reading": self.reading}


def _paired(point: float, replicates: np.ndarray) -> PairedDifference:
    interval = _percentiles(replicates)
    return PairedDifference(point, interval.low, interval.high)


def paired_max_acc_difference(hits_a: np.ndarray, hits_b: np.ndarray, weights: np.ndarray) -> PairedDifference:
    """max_t mean_i A[i, t] - max_t mean_i B[i, t] (percent): each side keeps its own best
    threshold in every replicate, as MaxBoxAcc is defined."""
    if hits_a.shape[0] != hits_b.shape[0]:
        raise MetricError("A paired difference needs the same images on both sides.")
    n = hits_a.shape[0]
    point = 100.0 * (hits_a.mean(axis=0).max() - hits_b.mean(axis=0).max())
    reps = 100.0 * ((weights @ hits_a.astype(np.float64)).max(axis=1)
                    - (weights @ hits_b.astype(np.float64)).max(axis=1)) / n
    return _paired(float(point), reps)


def paired_max_box_acc_v2_difference(curves_a: Sequence[ImageCurves], curves_b: Sequence[ImageCurves],
                                     weights: np.ndarray, deltas: Sequence[int] = (30, 50, 70)) -> PairedDifference:
    """MaxBoxAccV2(A) - MaxBoxAccV2(B), paired per replicate."""
    n = len(curves_a)
    ones = np.ones((1, n))

    def v2(curves: Sequence[ImageCurves], w: np.ndarray) -> np.ndarray:
        return np.mean([(w @ hit_curves(curves, d / 100, all_contours=True).astype(np.float64)).max(axis=1) / n
                        for d in deltas], axis=0)

    return _paired(float(100.0 * (v2(curves_a, ones) - v2(curves_b, ones))[0]),
                   100.0 * (v2(curves_a, weights) - v2(curves_b, weights)))


def paired_pxap_difference(pos_a: np.ndarray, neg_a: np.ndarray, pos_b: np.ndarray, neg_b: np.ndarray,
                           weights: np.ndarray) -> PairedDifference:
    """PxAP(A) - PxAP(B) from per-image histograms (N x bins each), paired per replicate."""
    def pxap(pos: np.ndarray, neg: np.ndarray, w: np.ndarray) -> np.ndarray:
        pw, nw = w @ pos.astype(np.float64), w @ neg.astype(np.float64)
        return np.array([average_precision(p, q)[-1] for p, q in zip(pw, nw)])

    ones = np.ones((1, len(pos_a)))
    point = float((pxap(pos_a, neg_a, ones) - pxap(pos_b, neg_b, ones))[0])
    return _paired(point, pxap(pos_a, neg_a, weights) - pxap(pos_b, neg_b, weights))


def mean_interval(values: np.ndarray, weights: np.ndarray) -> Interval:
    """Interval of a mean over images (Average Drop %, % Increase, accuracy), in the values' units."""
    values = np.asarray(values, dtype=np.float64)
    return _percentiles(weights @ values / len(values))


def topk_correct(top_classes: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """N booleans: the label is among the first ``k`` ranked predictions."""
    if top_classes.shape[1] < k:
        raise MetricError(f"Top-{k} needs at least {k} ranked predictions per image; got {top_classes.shape[1]}.")
    return (top_classes[:, :k] == labels[:, None]).any(axis=1)


def joint_localization(hits: np.ndarray, correct: np.ndarray) -> float:
    """Top-k localisation as F-CAM's code counts it: one counter per threshold of the images whose
    class is right (``correct``) AND whose box hits (``hits``, N x T), and the max over thresholds;
    percent. Reading the joint hit at MaxBoxAcc's best threshold instead can only give less."""
    if len(hits) == 0:
        raise MetricError("No image to evaluate.")
    return float(100.0 * (hits & correct[:, None]).mean(axis=0).max())


def joint_localization_v2(curves: Sequence[ImageCurves], correct: np.ndarray, deltas: Sequence[int] = (30, 50, 70)
                          ) -> float:
    """The V2 variant: multi-contour boxes, the mean over deltas of each delta's joint maximum."""
    return float(np.mean([joint_localization(hit_curves(curves, d / 100, all_contours=True), correct)
                          for d in deltas]))


def with_interval(row: dict, key: str, missing: str = "") -> str:
    """``row[key]`` to one decimal with its stored 95 % interval (``row[key + "_ci"]``) when there
    is one: "12.3 [9.7, 16.7]"; ``missing`` when the row has no such number."""
    value = row.get(key)
    if value is None:
        return missing
    interval = row.get(f"{key}_ci")
    return f"{value:.1f} [{interval[0]:.1f}, {interval[1]:.1f}]" if interval else f"{value:.1f}"


def ranking_note(rows: Sequence[dict], key: str, lower_is_better: bool, what: str,
                 ranked: str = "methods") -> str | None:
    """None when the best row's 95 % interval for ``key`` is clear of every other row's; else a
    sentence saying that these rows cannot rank the methods (the intervals overlap)."""
    scored = [r for r in rows if key in r and f"{key}_ci" in r]
    if len(scored) < 2:
        return None
    scored.sort(key=lambda r: r[key], reverse=not lower_is_better)
    best = scored[0]
    low, high = best[f"{key}_ci"]
    overlapping = [r for r in scored[1:] if r[f"{key}_ci"][0] <= high and r[f"{key}_ci"][1] >= low]
    if not overlapping:
        return None
    n = best.get("images")
    return (f"{what}: the best row's 95 % interval ({low:.1f} to {high:.1f}) overlaps {len(overlapping)} other "
            f"row(s)" + (f" with n = {n} images" if n else "") + f"; these numbers cannot rank those {ranked}.")
