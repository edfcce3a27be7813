"""Pixel metrics of the WSOL protocol (OpenImages): PxAP, plus per-pixel views for failure pages
and the activation histograms of F-CAM's Fig. 6.

PxAP (shared/reference/wsol-protocol.md, "PxAP"). With the bin edges

    edges = thresholds + [1.0, 2.0, 3.0]        (T + 3 edges, T + 2 bins; a score of exactly 1.0
                                                 lands in [1, 2), the last bin [2, 3] is closed)

the scores of foreground pixels and of background pixels are histogrammed separately and summed
over all images (micro average; ignored pixels count nowhere). Then, index i = 0 .. T + 1 running
from the highest bin down (reversed cumulative sums):

    tp_i = #{foreground scores >= edge_(T+1-i)},  fp_i likewise for the background,  fn_i = P - tp_i
    precision_i = tp_i / (tp_i + fp_i),           recall_i = tp_i / (tp_i + fn_i) = tp_i / P
    PxAP = 100 * sum_{i >= 1, tp_i + fp_i != 0} precision_i * (recall_i - recall_(i-1))

A pixel counts as predicted foreground at tau when its score is >= tau (the histogram's left-closed
bins). The bins come from a lookup table corrected by exact comparisons with the edges (_Binner),
which puts every value in the same bin as np.histogram does; np.bincount then counts them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from explorer.metrics.common import ArrayLike, MetricError, as_numpy, check_map, check_thresholds, iter_maps

# mask_confusion labels
TN, TP, FP, FN, IGNORED = 0, 1, 2, 3, 4
CONFUSION_LABELS = ("true negative", "true positive", "false positive", "false negative", "ignored")


def histogram_edges(taus: np.ndarray) -> np.ndarray:
    """The protocol's bin edges: thresholds followed by 1.0, 2.0, 3.0."""
    return np.append(taus, [1.0, 2.0, 3.0])


class _Binner:
    """Bin index of values in [0, 1] for the protocol's edges, equal to np.histogram's binning.

    np.histogram puts v in bin j with edges[j] <= v < edges[j + 1] (left-closed; the last bin
    [2, 3] is closed but no value in [0, 1] reaches it), i.e. searchsorted(edges, v, "right") - 1.
    A binary search per pixel is slow, so a lookup table over K uniform cells of [0, 1] gives a
    first guess, and exact float64 comparisons with the real edges then move each guess down or up
    until edges[j] <= v < edges[j + 1] holds: the same bins as np.histogram, by construction.
    """

    def __init__(self, edges: np.ndarray):
        self.edges = edges
        self.cells = max(1024, 4 * len(edges))
        grid = np.arange(self.cells + 1, dtype=np.float64) / self.cells
        self.lut = np.maximum(np.searchsorted(edges, grid, side="right") - 1, 0)
        # Thresholds crowded into a few cells would need many correction rounds: binary search then.
        self.crowded = int(np.diff(self.lut).max(initial=0)) > 4

    def __call__(self, values: np.ndarray) -> np.ndarray:
        """Bin of each value (1-D float64 in [0, 1]); -1 for a value below the first edge, which
        np.histogram leaves out (only possible when the thresholds do not start at 0)."""
        edges = self.edges
        if self.crowded:
            idx = np.searchsorted(edges, values, side="right") - 1
            idx[values < edges[0]] = -1
            return idx
        cell = (values * self.cells).astype(np.intp)
        np.clip(cell, 0, self.cells, out=cell)
        idx = self.lut[cell]
        below = values < edges[0] if edges[0] > 0 else None
        if below is not None:
            idx[below] = 0  # parked in bin 0 (so the checks below pass), flagged -1 at the end
        # First check on the whole array (no fancy indexing), then only on the guesses that moved.
        # A guess never goes below bin 0 (v >= edges[0]) nor past bin T (v <= 1 < edges[T + 1] = 2).
        down = edges[idx] > values
        up = edges[idx + 1] <= values
        if below is not None:
            down &= ~below
            up &= ~below
        idx += up
        idx -= down
        todo = np.flatnonzero(down | up)
        while len(todo):
            v, j = values[todo], idx[todo]
            down = edges[j] > v
            up = edges[j + 1] <= v
            idx[todo] = j - down + up
            todo = todo[down | up]
        if below is not None:
            idx[below] = -1
        return idx


def _optional_masks(masks: ArrayLike | None, n: int, shapes: list[tuple[int, int]],
                    what: str) -> list[np.ndarray] | None:
    return None if masks is None else _check_masks(masks, n, shapes, what)


def _check_masks(masks: ArrayLike, n: int, shapes: list[tuple[int, int]], what: str) -> list[np.ndarray]:
    if not isinstance(masks, (list, tuple)):
        masks = as_numpy(masks)
        if masks.ndim == 2:
            masks = masks[None]
    masks = list(masks)
    if len(masks) != n:
        raise MetricError(f"Got {n} maps but {len(masks)} {what}.")
    out = []
    for i, (m, shape) in enumerate(zip(masks, shapes)):
        m = as_numpy(m)
        if m.shape != shape:
            raise MetricError(f"{what}[{i}] has shape {m.shape}; its map has {shape}.")
        if m.dtype != np.bool_:
            if not np.all((m == 0) | (m == 1)):
                raise MetricError(f"{what}[{i}] must be boolean (or 0/1).")
            m = m.astype(bool)
        out.append(m)
    return out


def average_precision(pos_hist: np.ndarray, neg_hist: np.ndarray) -> tuple[
        np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """tp, fp, fn, precision, recall and PxAP from the two histograms, in the reference's float64
    arithmetic (counts are exact in float64)."""
    pos = pos_hist.astype(np.float64)
    neg = neg_hist.astype(np.float64)
    tp = pos[::-1].cumsum()
    fp = neg[::-1].cumsum()
    fn = pos.sum() - tp
    with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 where nothing is predicted yet
        precision = tp / (tp + fp)
        recall = tp / (tp + fn)
    defined = (tp + fp) != 0
    pxap = float((precision[1:] * np.diff(recall))[defined[1:]].sum() * 100)
    return tp, fp, fn, precision, recall, pxap


@dataclass
class PixelResult:
    """PxAP and its precision-recall curve.

    The curve arrays (T + 2 entries) run from the strictest threshold to the loosest:
    entry i counts the pixels with score >= curve_thresholds[i], where curve_thresholds =
    [2.0, 1.0, tau_(T-1), ..., tau_0]. precision is NaN where nothing is predicted (tp + fp = 0).
    image_pxap is each image's own PxAP (NaN for an image without a foreground pixel): not the
    protocol's number (which pools all pixels), a way to rank images for a failure page.
    """

    thresholds: np.ndarray
    curve_thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    num_positive: int
    num_negative: int
    pxap: float
    image_pxap: np.ndarray


class PixelEvaluator:
    """Accumulate score maps with ground-truth masks, then `compute()` PxAP.

        ev = PixelEvaluator(thresholds(0.001))
        ev.accumulate(maps, gt_masks, ignore_masks)   # N x H x W each; ignore may be None
        result = ev.compute()                         # result.pxap, result.precision, ...

    Ignored pixels follow the protocol: ignore = ignore mask AND NOT foreground (a foreground pixel
    under the ignore mask stays foreground). An image without a foreground pixel is allowed (its
    pixels are all negatives, as in the reference); `compute` raises when the whole set has none.
    """

    def __init__(self, thresholds: ArrayLike, keep_image_hists: bool = False):
        self.keep_image_hists = keep_image_hists  # each image's histograms too (for bootstrap intervals)
        self.thresholds = check_thresholds(thresholds, increasing=True)
        self.edges = histogram_edges(self.thresholds)
        self._binner = _Binner(self.edges)
        self.reset()

    def reset(self) -> None:
        bins = len(self.edges) - 1
        self.pos_hist = np.zeros(bins, dtype=np.int64)
        self.neg_hist = np.zeros(bins, dtype=np.int64)
        self.num_images = 0
        self._image_pxap: list[float] = []
        self.image_pos_hists: list[np.ndarray] = []
        self.image_neg_hists: list[np.ndarray] = []

    def accumulate(self, score_maps: ArrayLike, gt_masks: ArrayLike,
                   ignore_masks: ArrayLike | None = None) -> None:
        """Add maps (N x H x W, one H x W map or a list of 2-D maps, in [0, 1]) with their boolean
        foreground masks and, optionally, ignore masks of the same shapes."""
        maps = iter_maps(score_maps)
        shapes = [m.shape for m in maps]
        gts = _check_masks(gt_masks, len(maps), shapes, "gt_masks")
        ignores = _optional_masks(ignore_masks, len(maps), shapes, "ignore_masks")
        bins = len(self.edges) - 1
        for i, (m, g) in enumerate(zip(maps, gts)):
            # One bincount for both histograms: key = bin + bins * is_foreground.
            idx = self._binner(m.ravel())
            key = idx + bins * g.ravel()
            counted = idx >= 0 if self.edges[0] > 0 else None  # below the first edge: left out
            if ignores is not None:  # ignored = ignore AND NOT foreground: foreground always counts
                kept = ~(ignores[i] & ~g).ravel()
                counted = kept if counted is None else counted & kept
            if counted is not None:
                key = key[counted]
            neg, pos = np.bincount(key, minlength=2 * bins).reshape(2, bins).astype(np.int64)
            self.pos_hist += pos
            self.neg_hist += neg
            self._image_pxap.append(average_precision(pos, neg)[-1] if pos.any() else float("nan"))
            if self.keep_image_hists:  # an image has at most 65,535 pixels per bin at the protocol's 224 x 224
                dtype = np.uint16 if m.size < 2**16 else np.int64
                self.image_pos_hists.append(pos.astype(dtype))
                self.image_neg_hists.append(neg.astype(dtype))
            self.num_images += 1

    def compute(self) -> PixelResult:
        if self.num_images == 0:
            raise MetricError("No image was accumulated.")
        num_pos, num_neg = int(self.pos_hist.sum()), int(self.neg_hist.sum())
        if num_pos == 0:
            raise MetricError("No positive (foreground) ground-truth pixel in the evaluated set: PxAP "
                              "is undefined.")
        tp, fp, fn, precision, recall, pxap = average_precision(self.pos_hist, self.neg_hist)
        return PixelResult(
            thresholds=self.thresholds.copy(), curve_thresholds=self.edges[-2::-1].copy(),
            precision=precision, recall=recall, tp=tp, fp=fp, fn=fn,
            num_positive=num_pos, num_negative=num_neg, pxap=pxap,
            image_pxap=np.array(self._image_pxap, dtype=np.float64),
        )


def pxap(score_maps: ArrayLike, gt_masks: ArrayLike, ignore_masks: ArrayLike | None = None,
         thresholds: ArrayLike | None = None) -> float:
    """PxAP of a set of maps in one call (thresholds default to the protocol's arange(0, 1, 0.001))."""
    from explorer.metrics.common import thresholds as grid

    ev = PixelEvaluator(grid() if thresholds is None else thresholds)
    ev.accumulate(score_maps, gt_masks, ignore_masks)
    return ev.compute().pxap


def mask_confusion(score_map: ArrayLike, gt_mask: ArrayLike, ignore_mask: ArrayLike | None = None,
                   tau: float = 0.5) -> np.ndarray:
    """Per-pixel outcome at threshold tau, uint8: 0 TN, 1 TP, 2 FP, 3 FN, 4 ignored
    (`CONFUSION_LABELS`). A pixel is predicted foreground when score >= tau (PxAP's convention);
    ignored = ignore mask AND NOT foreground, as in PxAP."""
    arr = check_map(score_map)
    g = _check_masks([gt_mask], 1, [arr.shape], "gt_mask")[0]
    on = arr >= float(tau)
    out = np.where(g, np.where(on, TP, FN), np.where(on, FP, TN)).astype(np.uint8)
    if ignore_mask is not None:
        ig = _check_masks([ignore_mask], 1, [arr.shape], "ignore_mask")[0]
        out[ig & ~g] = IGNORED
    return out


def value_histogram(score_maps: ArrayLike, bins: int | ArrayLike = 50,
                    value_range: tuple[float, float] = (0.0, 1.0), density: bool = True,
                    masks: ArrayLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Histogram of map values pooled over maps (F-CAM Fig. 6: CAM activations pile up near 0; a
    good localiser shows a second mode near 1). Returns (heights, edges); with density the heights
    integrate to 1 over the range, else they are counts. `masks` (optional, N x H x W bool) keeps
    only the selected pixels, e.g. the foreground or the background of each image.
    """
    maps = iter_maps(score_maps)
    if masks is not None:
        sel = _check_masks(masks, len(maps), [m.shape for m in maps], "masks")
        values = np.concatenate([m[s] for m, s in zip(maps, sel)])
    else:
        values = np.concatenate([m.ravel() for m in maps])
    heights, edges = np.histogram(values, bins=bins, range=value_range, density=density and values.size > 0)
    return heights, edges
