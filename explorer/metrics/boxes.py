"""Box metrics of the WSOL protocol (CUB, ILSVRC): MaxBoxAcc, MaxBoxAccV2, top-1/top-5 localisation.

Boxes from a score map (shared/reference/wsol-protocol.md, "Boxes from a score map"):

    img   = uint8(map * 255)                                    (truncation)
    on    = img > int(tau * max(img))                           (threshold relative to the max)
    C     = findContours(on, RETR_TREE, CHAIN_APPROX_SIMPLE)    (hole contours included)
    boxes = [x, y, min(x + w, W - 1), min(y + h, H - 1)] for (x, y, w, h) = boundingRect(c)
            (every c in C for V2; only the first c of largest contourArea for V1; [0, 0, 0, 0]
            when C is empty)

IoU is inclusive: area = (x1 - x0 + 1)(y1 - y0 + 1). With best IoU_i(tau) = max over (predicted
boxes at tau) x (ground-truth boxes of image i):

    BoxAcc(delta, tau) = 100 * #{i : IoU_i(tau) >= delta / 100} / N
    MaxBoxAcc          = max_tau BoxAcc(50, tau)                       (largest contour)
    MaxBoxAccV2        = mean_{delta in 30, 50, 70} max_tau BoxAcc(delta, tau)   (all contours)

The counters are summed over images before the max, and each delta picks its own best tau.

Why this is fast and still exact. The reference calls OpenCV once per threshold (1000 per image).
Here the work per image is organised by *distinct binary mask* instead:
  * int(tau * max(img)) takes at most 256 values, and two levels a < b give the same mask unless
    some pixel value lies in (a, b]; so findContours runs once per distinct mask (<= 255 calls
    for 1000 thresholds, often far fewer) and the result is shared by every tau that maps to it;
  * each call sees only the bounding box of the mask (with `offset`, so coordinates are the full
    image's): findContours pads the image with zeros itself, and cropping keeps the raster order,
    so the contours and their order are the same; small masks (high thresholds) get cheaper;
  * contour areas (the shoelace sum contourArea computes, exact on integer points), bounding
    rectangles, the first largest contour, IoUs and the counters are computed for all contours of
    all masks at once with numpy instead of one Python call per contour.
Both V1 and V2 come out of the same contours, in one pass. What remains is findContours' own
border tracing, once per distinct mask: on smooth maps that bounds the gain over a single-pass
per-threshold loop to about T / 255. tests/test_metrics.py checks the numbers against a literal
per-threshold loop; benchmarks/bench_metrics.py measures the speed-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from explorer.metrics.common import ArrayLike, MetricError, check_map, check_thresholds, iter_maps

IOU_LEVELS = (30, 50, 70)
ZERO_BOX = np.zeros((1, 4), dtype=np.int64)


# ------------------------------------------------------------------------------------ boxes, IoU

def check_boxes(boxes: ArrayLike, where: str = "boxes", allow_empty: bool = False) -> np.ndarray:
    """Boxes as a k x 4 int64 array [x0, y0, x1, y1] (inclusive); one box may be given as (4,).

    A reversed box (x1 < x0 or y1 < y0) is an error, as in the reference; non-integral
    coordinates are an error too, since the protocol's boxes are pixel indices.
    """
    arr = np.asarray(boxes)
    if arr.ndim == 1 and arr.size == 4:
        arr = arr[None]
    if arr.size == 0 and allow_empty:
        return np.zeros((0, 4), dtype=np.int64)
    if arr.ndim != 2 or arr.shape[1] != 4 or arr.shape[0] == 0:
        raise MetricError(f"{where}: expected k x 4 boxes [x0, y0, x1, y1] with k >= 1; got shape {arr.shape}.")
    if not np.issubdtype(arr.dtype, np.integer):
        as_float = arr.astype(np.float64)
        if not np.all(np.isfinite(as_float)) or np.any(as_float != np.round(as_float)):
            raise MetricError(f"{where}: box coordinates must be whole pixel indices.")
    arr = arr.astype(np.int64)
    bad = (arr[:, 2] < arr[:, 0]) | (arr[:, 3] < arr[:, 1])
    if bad.any():
        raise MetricError(f"{where}: box {arr[np.argmax(bad)].tolist()} is reversed; boxes are "
                          "[x0, y0, x1, y1] with x1 >= x0 and y1 >= y0.")
    return arr


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Inclusive IoU of checked int64 boxes, len(a) x len(b): the same integer areas and the same
    float64 division as the reference, so the values compare bit for bit."""
    ix0 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy0 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix1 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.maximum(0, ix1 - ix0 + 1) * np.maximum(0, iy1 - iy0 + 1)
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    # Valid boxes have area >= 1, so the union is never 0 (the reference's "degenerate" branch).
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def _best_iou(boxes: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """max over the gt boxes of _iou_matrix(boxes, gt), one gt at a time: the same integer areas
    and float64 divisions, without the len(boxes) x len(gt) temporaries (10^5 boxes on noisy
    maps)."""
    x0, y0, x1, y1 = (np.ascontiguousarray(boxes[:, i]) for i in range(4))
    area = (x1 - x0 + 1) * (y1 - y0 + 1)
    best = np.zeros(len(x0))  # IoU >= 0; every gt box raises it where it overlaps
    for gx0, gy0, gx1, gy1 in gt.tolist():
        iw = np.minimum(x1, gx1) - np.maximum(x0, gx0) + 1
        ih = np.minimum(y1, gy1) - np.maximum(y0, gy0) + 1
        inter = np.maximum(iw, 0) * np.maximum(ih, 0)
        value = inter / (area + (gx1 - gx0 + 1) * (gy1 - gy0 + 1) - inter)
        best = np.maximum(best, value)
    return best


def iou(boxes_a: ArrayLike, boxes_b: ArrayLike) -> np.ndarray:
    """Pairwise inclusive IoU, len(a) x len(b), float64.

    IoU = |A n B| / (|A| + |B| - |A n B|) with |[x0, y0, x1, y1]| = (x1 - x0 + 1)(y1 - y0 + 1), so
    two all-zero boxes (one pixel each) have IoU 1. A reversed box raises MetricError.
    """
    return _iou_matrix(check_boxes(boxes_a, "boxes_a"), check_boxes(boxes_b, "boxes_b"))


def resize_boxes(boxes: ArrayLike, image_size: Sequence[int], new_size: Sequence[int] = (224, 224)) -> np.ndarray:
    """Boxes rescaled per axis as the protocol does: int(coord * new / original) (truncation,
    aspect ratio not kept). Sizes are (width, height)."""
    arr = check_boxes(boxes).astype(np.float64)
    (w, h), (nw, nh) = (tuple(map(float, image_size)), tuple(map(float, new_size)))
    scale = np.array([nw, nh, nw, nh])
    size = np.array([w, h, w, h])
    return ((arr * scale) / size).astype(np.int64)  # (coord * new) / old, then int() toward zero


def score_map_to_uint8(score_map: np.ndarray) -> np.ndarray:
    """The protocol's 8-bit map: uint8(map * 255), truncating (the map is float64 in [0, 1])."""
    return (score_map * 255).astype(np.uint8)


def _flatten(contours: Sequence[np.ndarray]) -> tuple[bytes, list[int]]:
    """The points of some contours as one int32 byte string (x, y pairs), and their point counts.

    findContours returns C-contiguous int32 (n, 1, 2) arrays. Joining their buffers right after
    each call costs less than np.concatenate on 10^5 tiny contours (noisy maps) and lets the
    arrays be freed while they are still in cache.
    """
    lengths = list(map(len, contours))
    data = b"".join(c.data for c in contours)
    if len(data) != 8 * sum(lengths):  # not int32 pairs after all (never seen from OpenCV): convert
        data = b"".join(np.ascontiguousarray(np.reshape(c, (-1, 2)), dtype=np.int32).data for c in contours)
    return data, lengths


def _contour_boxes(data: bytes, lengths: Sequence[int], height: int,
                   width: int) -> tuple[np.ndarray, np.ndarray]:
    """Protocol boxes and twice the contourArea of each contour (from `_flatten`), vectorised.

    boundingRect of integer points is (xmin, ymin, xmax - xmin + 1, ymax - ymin + 1), so the box
    is [xmin, ymin, min(xmax + 1, W - 1), min(ymax + 1, H - 1)] (the protocol's x + w keeps the
    reference's off-by-one). contourArea is |sum_i (x_{i-1} y_i - y_{i-1} x_i)| / 2 over the closed
    polygon, accumulated in double from integer products: exact, so comparing the integer sums
    (twice the areas) orders and ties the contours exactly as contourArea does.
    """
    counts = np.asarray(lengths, dtype=np.int64)
    points = np.frombuffer(data, dtype=np.int32).reshape(-1, 2)
    if 2 * (height + 1) * (width + 1) >= 2**31:  # products x * y must not overflow int32
        points = points.astype(np.int64)
    ends = np.cumsum(counts)
    starts: np.ndarray = ends - counts
    last = ends - 1
    x, y = np.ascontiguousarray(points[:, 0]), np.ascontiguousarray(points[:, 1])
    # Shoelace terms of consecutive points (i - 1, i) across the whole array; a prefix sum gives
    # each contour's inner terms, and the closing term (last, first) is added per contour.
    prefix = np.zeros(len(points), dtype=np.int64)
    np.cumsum(x[:-1] * y[1:] - y[:-1] * x[1:], out=prefix[1:])
    closing = x[last].astype(np.int64) * y[starts] - y[last].astype(np.int64) * x[starts]
    area2 = np.abs(prefix[last] - prefix[starts] + closing)
    boxes = np.stack([
        np.minimum.reduceat(x, starts),
        np.minimum.reduceat(y, starts),
        np.minimum(np.maximum.reduceat(x, starts) + 1, width - 1),
        np.minimum(np.maximum.reduceat(y, starts) + 1, height - 1),
    ], axis=1).astype(np.int64)
    return boxes, area2


def _find_contours(mask: np.ndarray, offset: tuple[int, int] = (0, 0)) -> Sequence[np.ndarray]:
    return cv2.findContours(mask.view(np.uint8), cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE, offset=offset)[0]


def boxes_from_map(score_map: ArrayLike, tau: float, multi_contour: bool = False) -> np.ndarray:
    """The protocol's predicted boxes (k x 4 int64) for one map at one threshold.

    multi_contour=False: the box of the largest contour (the first one, in findContours order, of
    largest contourArea), as MaxBoxAcc; True: one box per contour, holes included, as MaxBoxAccV2.
    No contour (e.g. an all-zero map) gives the single box [0, 0, 0, 0].
    """
    arr = check_map(score_map)
    img = score_map_to_uint8(arr)
    level = int(float(tau) * int(img.max()))
    contours = _find_contours(img > level)
    if len(contours) == 0:
        return ZERO_BOX.copy()
    boxes, area2 = _contour_boxes(*_flatten(contours), *img.shape)
    return boxes if multi_contour else boxes[[int(np.argmax(area2))]]


# --------------------------------------------------------------------------- one image, all taus

@dataclass
class ImageCurves:
    """One image's results at every distinct binary mask, and which mask each threshold gives.

    Index a per-mask array with `mask_of_threshold` to get the value at every tau, e.g.
    `iou_largest[mask_of_threshold]` is the V1 IoU curve over the thresholds.
    """

    mask_of_threshold: np.ndarray  # (T,) index into the per-mask arrays below
    iou_largest: np.ndarray        # (M,) IoU of the largest contour's box with the best gt box
    box_largest: np.ndarray        # (M, 4) that box
    iou_all: np.ndarray            # (M,) best IoU over all contour boxes x gt boxes
    box_all: np.ndarray            # (M, 4) the first box reaching it
    box_count: np.ndarray          # (M,) number of contour boxes (1 for the [0, 0, 0, 0] fallback)


def _segment_first_argmax(values: np.ndarray, starts: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Index of the first maximum of each non-empty contiguous segment (like Python's max(), which
    keeps the first of equal maxima)."""
    seg_max = np.maximum.reduceat(values, starts)
    candidates = np.flatnonzero(values == seg_max[owner])
    seg = owner[candidates]
    first = np.ones(len(candidates), dtype=bool)
    first[1:] = seg[1:] != seg[:-1]
    return candidates[first]


def image_curves(score_map: ArrayLike, gt_boxes: ArrayLike, taus: ArrayLike) -> ImageCurves:
    """V1 and V2 boxes and IoUs of one map at every threshold, one findContours per distinct mask."""
    arr = check_map(score_map)
    gt = check_boxes(gt_boxes, "gt_boxes")
    taus = check_thresholds(taus)
    return image_curves_uint8(score_map_to_uint8(arr), gt, taus)


def image_curves_uint8(img: np.ndarray, gt: np.ndarray, taus: np.ndarray) -> ImageCurves:
    height, width = img.shape
    peak = int(img.max())
    # int(tau * max(img)): the same double product and truncation as the reference.
    levels, level_of_tau = np.unique((taus * peak).astype(np.int64), return_inverse=True)
    # img > a and img > b (a < b) differ only if a pixel value lies in (a, b]: key the masks by how
    # many distinct pixel values are <= the level.
    present = np.flatnonzero(np.bincount(img.ravel(), minlength=256))
    keys = np.searchsorted(present, levels, side="right")
    _, first_level, mask_of_level = np.unique(keys, return_index=True, return_inverse=True)
    mask_levels = levels[first_level]
    n_masks = len(mask_levels)

    # Bounding box of each mask from running maxima of the row and column maxima.
    rows, cols = img.max(axis=1), img.max(axis=0)
    top = np.searchsorted(np.maximum.accumulate(rows), mask_levels, side="right")
    bottom = height - np.searchsorted(np.maximum.accumulate(rows[::-1]), mask_levels, side="right")
    left = np.searchsorted(np.maximum.accumulate(cols), mask_levels, side="right")
    right = width - np.searchsorted(np.maximum.accumulate(cols[::-1]), mask_levels, side="right")

    chunks: list[bytes] = []
    lengths: list[int] = []
    counts = np.zeros(n_masks, dtype=np.int64)
    find, tree, simple = cv2.findContours, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE
    for j, (level, t, b, left_, r) in enumerate(zip(mask_levels.tolist(), top.tolist(), bottom.tolist(),
                                                left.tolist(), right.tolist())):
        if t >= height:  # empty mask: no contour
            continue
        found = find((img[t:b, left_:r] > level).view(np.uint8), tree, simple, offset=(left_, t))[0]
        if len(found):
            counts[j] = len(found)
            data, sizes = _flatten(found)
            chunks.append(data)
            lengths.extend(sizes)

    zero_iou = float(_iou_matrix(ZERO_BOX, gt).max())
    iou_largest = np.full(n_masks, zero_iou)
    iou_all = np.full(n_masks, zero_iou)
    box_largest = np.zeros((n_masks, 4), dtype=np.int64)
    box_all = np.zeros((n_masks, 4), dtype=np.int64)
    if lengths:
        boxes, area2 = _contour_boxes(b"".join(chunks), lengths, height, width)
        filled = np.flatnonzero(counts)
        starts = (np.cumsum(counts) - counts)[filled]
        owner = np.repeat(np.arange(len(filled)), counts[filled])

        largest = _segment_first_argmax(area2, starts, owner)
        box_largest[filled] = boxes[largest]
        iou_largest[filled] = _iou_matrix(boxes[largest], gt).max(axis=1)

        per_box = _best_iou(boxes, gt)
        best = _segment_first_argmax(per_box, starts, owner)
        box_all[filled] = boxes[best]
        iou_all[filled] = per_box[best]

    # Compact records (a CUB test set keeps 5794 of them): <= 255 masks fit in uint8 indices.
    return ImageCurves(
        mask_of_threshold=mask_of_level[level_of_tau].astype(np.uint8 if n_masks <= 256 else np.int64),
        iou_largest=iou_largest, box_largest=box_largest.astype(np.int32),
        iou_all=iou_all, box_all=box_all.astype(np.int32), box_count=np.maximum(counts, 1).astype(np.int32),
    )


# ------------------------------------------------------------------------------------ evaluator

@dataclass
class BoxResult:
    """MaxBoxAcc, MaxBoxAccV2 and what they were made of. Accuracies are percentages.

    Rows of the D x T arrays follow `iou_levels` (deltas, percent); columns follow `thresholds`.
    "Largest" (V1) uses the largest contour only, "all" (V2) every contour. The best threshold is
    the first tau reaching the max. Per-image arrays (None when the evaluator kept no records) are
    read at the chosen thresholds: V1 at the MaxBoxAcc tau, V2 at each delta's own tau.
    """

    thresholds: np.ndarray
    iou_levels: tuple[int, ...]
    num_images: int
    box_acc: np.ndarray                 # (D, T) BoxAcc(delta, tau), largest contour
    box_acc_v2: np.ndarray              # (D, T) BoxAcc(delta, tau), all contours
    max_box_acc: float                  # max_tau box_acc[delta = 50]
    best_threshold_index: int
    max_box_acc_v2_by_delta: np.ndarray  # (D,) max_tau box_acc_v2[delta]
    best_threshold_index_v2: np.ndarray  # (D,)
    max_box_acc_v2: float               # mean of max_box_acc_v2_by_delta (the protocol: 30, 50, 70)
    image_iou: np.ndarray | None = None          # (N,) V1 IoU at the MaxBoxAcc threshold
    image_box: np.ndarray | None = None          # (N, 4) the largest contour's box there
    image_iou_v2: np.ndarray | None = None       # (D, N) best IoU over all boxes at each delta's tau
    image_box_v2: np.ndarray | None = None       # (D, N, 4) the box reaching it
    image_box_count_v2: np.ndarray | None = None  # (D, N) how many boxes there were
    curves: list[ImageCurves] | None = field(default=None, repr=False)

    @property
    def best_threshold(self) -> float:
        return float(self.thresholds[self.best_threshold_index])

    @property
    def best_threshold_v2(self) -> np.ndarray:
        return self.thresholds[self.best_threshold_index_v2]

    def image_iou_curves(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Image i's IoU at every threshold: (largest contour, all contours), each (T,)."""
        if self.curves is None:
            raise MetricError("This result kept no per-image records (keep_records=False).")
        c = self.curves[i]
        return c.iou_largest[c.mask_of_threshold], c.iou_all[c.mask_of_threshold]

    def localization_accuracy(self, predictions: ArrayLike, labels: ArrayLike, k: int = 1,
                              multi_contour: bool = False) -> float:
        """Top-k localisation at the chosen threshold (see `localization_accuracy`): V1 IoU at the
        MaxBoxAcc tau, or with multi_contour the V2 IoU at delta 50's tau."""
        if self.image_iou is None or self.image_iou_v2 is None:
            raise MetricError("This result kept no per-image records (keep_records=False).")
        if multi_contour:
            ious = self.image_iou_v2[self.iou_levels.index(50)]
        else:
            ious = self.image_iou
        return localization_accuracy(ious, predictions, labels, k=k)


class BoxEvaluator:
    """Accumulate score maps with their ground-truth boxes, then `compute()` both box metrics.

        ev = BoxEvaluator(thresholds(0.001))
        for maps, boxes in batches:           # maps: N x H x W in [0, 1]; boxes: N arrays k_i x 4
            ev.accumulate(maps, boxes)
        result = ev.compute()                 # result.max_box_acc, result.max_box_acc_v2, ...

    Ground-truth boxes are inclusive [x0, y0, x1, y1] in the maps' pixel grid (the protocol rescales
    them to 224 x 224 with `resize_boxes`). One pass computes V1 (largest contour) and V2 (all
    contours) at every delta in `iou_levels`; MaxBoxAcc needs delta 50 among them.
    keep_records keeps each image's per-mask curves (<= 256 entries per image) for failure-case
    pages: per-image IoUs and boxes at the chosen thresholds.
    """

    def __init__(self, thresholds: ArrayLike, iou_levels: Sequence[int] = IOU_LEVELS, keep_records: bool = True):
        self.thresholds = check_thresholds(thresholds)
        levels = tuple(int(d) for d in iou_levels)
        if not levels or any(not (0 <= d <= 100) for d in levels) or len(set(levels)) != len(levels):
            raise MetricError(f"iou_levels must be distinct percentages in [0, 100]; got {iou_levels}.")
        if 50 not in levels:
            raise MetricError("iou_levels must include 50: MaxBoxAcc is BoxAcc at delta = 50.")
        self.iou_levels = levels
        # delta / 100 as the reference writes it (Python division), so IoU >= delta compares alike.
        self._deltas = np.array([d / 100 for d in levels], dtype=np.float64)[:, None]
        self.keep_records = keep_records
        self.reset()

    def reset(self) -> None:
        shape = (len(self.iou_levels), len(self.thresholds))
        self.num_images = 0
        # The counters: correct_largest[d, t] = #images whose largest-contour box reaches IoU >=
        # iou_levels[d] / 100 at thresholds[t]; correct_all likewise over all contour boxes.
        self.correct_largest = np.zeros(shape, dtype=np.int64)
        self.correct_all = np.zeros(shape, dtype=np.int64)
        self._curves: list[ImageCurves] = []

    def accumulate(self, score_maps: ArrayLike, gt_boxes: Sequence[ArrayLike]) -> None:
        """Add maps (N x H x W, one H x W map, or a list of 2-D maps; values in [0, 1]) with their
        ground-truth boxes: one entry per map, each k_i x 4 or a single (4,) box (so an N x 4 array
        is one box per map). A single map still takes a list: `accumulate(m, [boxes])`."""
        maps = iter_maps(score_maps)
        gt_boxes = list(gt_boxes)
        if len(gt_boxes) != len(maps):
            raise MetricError(f"Got {len(maps)} maps but {len(gt_boxes)} ground-truth box lists.")
        checked = [check_boxes(b, f"gt_boxes[{self.num_images + i}]") for i, b in enumerate(gt_boxes)]
        for arr, gt in zip(maps, checked):
            self.add_curves(image_curves_uint8(score_map_to_uint8(arr), gt, self.thresholds))

    def add_curves(self, curves: ImageCurves) -> None:
        """Add one image already reduced by `image_curves_uint8` (at this evaluator's thresholds), e.g.
        a record read back from disk by a resumed or sharded evaluation."""
        per_tau = curves.mask_of_threshold
        if per_tau.shape != self.thresholds.shape:
            raise MetricError(f"These curves are over {per_tau.shape[0]} thresholds; the evaluator has "
                              f"{len(self.thresholds)}.")
        self.correct_largest += curves.iou_largest[per_tau][None, :] >= self._deltas
        self.correct_all += curves.iou_all[per_tau][None, :] >= self._deltas
        self.num_images += 1
        if self.keep_records:
            self._curves.append(curves)

    def compute(self) -> BoxResult:
        if self.num_images == 0:
            raise MetricError("No image was accumulated.")
        n = float(self.num_images)
        # counts * 100. / N in float64, the reference's expression.
        acc_largest = self.correct_largest.astype(np.float64) * 100. / n
        acc_all = self.correct_all.astype(np.float64) * 100. / n
        d50 = self.iou_levels.index(50)
        best = int(np.argmax(acc_largest[d50]))
        best_v2 = np.argmax(acc_all, axis=1)
        by_delta = acc_all.max(axis=1)
        result = BoxResult(
            thresholds=self.thresholds.copy(), iou_levels=self.iou_levels, num_images=self.num_images,
            box_acc=acc_largest, box_acc_v2=acc_all,
            max_box_acc=float(acc_largest[d50, best]), best_threshold_index=best,
            max_box_acc_v2_by_delta=by_delta, best_threshold_index_v2=best_v2,
            max_box_acc_v2=float(np.mean(by_delta)),
        )
        if self.keep_records:
            curves = list(self._curves)

            def pick(name: str, t: int) -> np.ndarray:  # every image's value at threshold index t
                return np.array([getattr(c, name)[c.mask_of_threshold[t]] for c in curves])

            result.image_iou = pick("iou_largest", best)
            result.image_box = pick("box_largest", best).reshape(-1, 4).astype(np.int64)
            result.image_iou_v2 = np.stack([pick("iou_all", t) for t in best_v2])
            result.image_box_v2 = np.stack([pick("box_all", t).reshape(-1, 4) for t in best_v2]).astype(np.int64)
            result.image_box_count_v2 = np.stack([pick("box_count", t) for t in best_v2]).astype(np.int64)
            result.curves = curves
        return result


# --------------------------------------------------------------------------------- localisation

def localization_accuracy(ious: ArrayLike, predictions: ArrayLike, labels: ArrayLike, k: int = 1,
                          iou_threshold: float = 0.5) -> float:
    """Top-k localisation accuracy, percent: 100 * mean_i [label_i in top-k predictions_i AND
    IoU_i >= iou_threshold] (top-1: correct class and IoU >= 0.5 at the chosen tau; top-5: label in
    the top 5 and IoU >= 0.5).

    predictions: N predicted labels (k = 1 only) or N x K ranked labels, best first, K >= k.
    """
    ious = np.asarray(ious, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    preds = np.asarray(predictions)
    if preds.ndim == 1:
        preds = preds[:, None]
    if preds.ndim != 2 or len(preds) != len(ious) or len(labels) != len(ious):
        raise MetricError(f"Got {len(ious)} IoUs, predictions of shape {np.shape(predictions)} and "
                          f"{len(labels)} labels; expected N, N x K and N.")
    if not (1 <= k <= preds.shape[1]):
        raise MetricError(f"Top-{k} needs at least {k} ranked predictions per image; got {preds.shape[1]}.")
    if len(ious) == 0:
        raise MetricError("No image to evaluate.")
    hit = (preds[:, :k] == labels[:, None]).any(axis=1) & (ious >= iou_threshold)
    return float(hit.mean() * 100.0)
