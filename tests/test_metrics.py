"""explorer.metrics against the protocol's golden values and against a literal re-implementation.

The literal implementation below follows shared/reference/wsol-protocol.md step by step, one
threshold and one OpenCV call at a time, with plain Python IoUs, counters and argmaxes, and
np.histogram for PxAP; it shares no code with explorer.metrics. The vectorised evaluators must
give exactly (==, no tolerance) the same numbers on maps chosen to be hard: smooth blobs, noise
with hundreds of contours, plateaus with tied contour areas, rings (hole contours), maps whose
max is below 1, all-zero and constant maps, non-square maps, float32 maps.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from explorer.metrics import (
    BoxEvaluator,
    MetricError,
    PixelEvaluator,
    average_drop_increase,
    boxes_from_map,
    image_curves,
    iou,
    localization_accuracy,
    mask_confusion,
    pxap,
    relative_mask,
    resize_boxes,
    thresholds,
    value_histogram,
)
from explorer.metrics.pixels import FN, FP, IGNORED, TN, TP

LEVELS = (30, 50, 70)


# ----------------------------------------------------------------------------- the literal protocol

def literal_boxes(score_map: np.ndarray, tau: float, multi_contour: bool) -> list[list[int]]:
    """Boxes from a map at one threshold, literally as the protocol states it."""
    height, width = score_map.shape
    img = (np.asarray(score_map, dtype=np.float64) * 255).astype(np.uint8)
    _, on = cv2.threshold(img, int(tau * np.max(img)), 255, cv2.THRESH_BINARY)
    contours = cv2.findContours(on, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
    if len(contours) == 0:
        return [[0, 0, 0, 0]]
    if not multi_contour:
        contours = [max(contours, key=cv2.contourArea)]
    boxes = []
    for c in contours:
        x, y, w, h = cv2.boundingRect(c)
        boxes.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
    return boxes


def literal_iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    inter = ix * iy
    area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
    area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return inter / (area_a + area_b - inter)


def literal_box_metrics(maps, gts, taus) -> dict:
    """Counters per (delta, tau) summed over images, then the max over tau, in Python."""
    n, T = len(maps), len(taus)
    correct = {v: [[0] * T for _ in LEVELS] for v in (1, 2)}
    ious = {1: [], 2: []}
    boxes_at = {1: [], 2: []}
    for m, gt in zip(maps, gts):
        gt = [list(map(int, g)) for g in np.asarray(gt).reshape(-1, 4)]
        per = {1: [], 2: []}
        for v in (1, 2):
            image_boxes = []
            for t, tau in enumerate(taus):
                boxes = literal_boxes(m, tau, multi_contour=(v == 2))
                best = max(literal_iou(b, g) for b in boxes for g in gt)
                per[v].append(best)
                image_boxes.append(boxes)
                for d, delta in enumerate(LEVELS):
                    if best >= delta / 100:
                        correct[v][d][t] += 1
            ious[v].append(per[v])
            boxes_at[v].append(image_boxes)
    acc = {v: np.array([[c * 100. / float(n) for c in row] for row in correct[v]]) for v in (1, 2)}

    def first_argmax(row):
        return max(range(T), key=lambda t: row[t])

    d50 = LEVELS.index(50)
    best1 = first_argmax(acc[1][d50])
    best2 = [first_argmax(acc[2][d]) for d in range(len(LEVELS))]
    return {
        "box_acc": acc[1], "box_acc_v2": acc[2],
        "max_box_acc": acc[1][d50][best1], "best": best1,
        "max_box_acc_v2": sum(acc[2][d][best2[d]] for d in range(len(LEVELS))) / len(LEVELS),
        "best_v2": best2, "ious": ious, "boxes": boxes_at,
    }


def literal_pxap(maps, gts, ignores, taus) -> tuple[float, np.ndarray, np.ndarray]:
    edges = list(taus) + [1.0, 2.0, 3.0]
    pos = np.zeros(len(edges) - 1)
    neg = np.zeros(len(edges) - 1)
    for i, (m, g) in enumerate(zip(maps, gts)):
        m = np.asarray(m, dtype=np.float64)
        ignore = np.zeros_like(g) if ignores is None else (ignores[i] & ~g)
        pos += np.histogram(m[g & ~ignore], bins=edges)[0]
        neg += np.histogram(m[~g & ~ignore], bins=edges)[0]
    tp, fp = pos[::-1].cumsum(), neg[::-1].cumsum()
    fn = pos.sum() - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        precision, recall = tp / (tp + fp), tp / (tp + fn)
    keep = (tp + fp) != 0
    return float((precision[1:] * np.diff(recall))[keep[1:]].sum() * 100), precision, recall


# ------------------------------------------------------------------------------------------ maps

def _minmax(m):
    return (m - m.min()) / (m.max() - m.min())


def smooth(rng, shape=(64, 64), sigma=5.0):
    return _minmax(gaussian_filter(rng.random(shape), sigma))


def blobs(rng, shape=(64, 64)):
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(float)
    m = np.zeros(shape)
    for _ in range(rng.integers(1, 4)):
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        s = rng.uniform(3, shape[0] / 3)
        m += rng.uniform(0.3, 1) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    return _minmax(m)


def noisy(rng, shape=(64, 64)):
    return _minmax(0.6 * smooth(rng, shape, 4.0) + 0.4 * rng.random(shape))


def tied_squares(shape=(40, 48)):
    """Two identical plateaus (equal contour areas at every threshold below their value) and a ring
    (an outer and a hole contour)."""
    m = np.zeros(shape)
    m[5:12, 30:37] = 0.8
    m[25:32, 4:11] = 0.8
    m[20:30, 20:30] = 0.5
    m[23:27, 23:27] = 0.1
    m[2, 2] = m[2, 4] = 0.9  # two one-pixel contours (area 0) on one row
    return m


def staircase(shape=(30, 30)):
    m = np.zeros(shape)
    for k in range(1, 6):
        m[k * 2:shape[0] - k * 2, k * 3:shape[1] - k * 2] = k / 5
    m[0, :] = 0.4  # a line along the border
    return m


def random_gt(rng, shape, k=None):
    h, w = shape
    boxes = []
    for _ in range(k or int(rng.integers(1, 4))):
        x0, y0 = int(rng.integers(0, w - 1)), int(rng.integers(0, h - 1))
        boxes.append([x0, y0, int(rng.integers(x0, w)), int(rng.integers(y0, h))])
    return np.array(boxes)


def map_zoo(rng):
    """(name, map) pairs covering the hard cases."""
    zoo = [
        ("smooth", smooth(rng)), ("smooth-wide", smooth(rng, (48, 80), 8.0)), ("blobs", blobs(rng)),
        ("blobs-max<1", 0.37 * blobs(rng)), ("noisy", noisy(rng)), ("noisy-max<1", 0.6 * noisy(rng, (50, 40))),
        ("ties", tied_squares()), ("staircase", staircase()), ("zeros", np.zeros((20, 30))),
        ("constant", np.full((16, 16), 0.5)), ("ones", np.ones((12, 10))),
        ("quantised", np.round(blobs(rng) * 20) / 20), ("float32", smooth(rng).astype(np.float32)),
        ("speckle", (rng.random((32, 32)) > 0.7) * rng.random((32, 32))),
    ]
    return zoo


def _evaluate(maps, gts, taus):
    ev = BoxEvaluator(taus)
    half = len(maps) // 2  # two accumulate calls: counters must add up across batches
    ev.accumulate(maps[:half], gts[:half])
    ev.accumulate(maps[half:], gts[half:])
    return ev.compute()


def _assert_same(res, lit, maps, taus):
    assert np.array_equal(res.box_acc, lit["box_acc"])
    assert np.array_equal(res.box_acc_v2, lit["box_acc_v2"])
    assert res.max_box_acc == lit["max_box_acc"]
    assert res.max_box_acc_v2 == lit["max_box_acc_v2"]
    assert res.best_threshold_index == lit["best"]
    assert res.best_threshold_index_v2.tolist() == lit["best_v2"]
    for i in range(len(maps)):
        curve1, curve2 = res.image_iou_curves(i)
        assert curve1.tolist() == lit["ious"][1][i]
        assert curve2.tolist() == lit["ious"][2][i]
        assert res.image_iou[i] == lit["ious"][1][i][res.best_threshold_index]
        assert res.image_box[i].tolist() == lit["boxes"][1][i][res.best_threshold_index][0]
        for d, t in enumerate(res.best_threshold_index_v2):
            assert res.image_iou_v2[d, i] == lit["ious"][2][i][t]
            assert res.image_box_v2[d, i].tolist() in lit["boxes"][2][i][t]
            assert res.image_box_count_v2[d, i] == len(lit["boxes"][2][i][t])


# --------------------------------------------------------------------------------- golden values

def test_thresholds_grid():
    assert np.array_equal(thresholds(), np.arange(0, 1, 0.001))
    assert len(thresholds()) == 1000 and len(thresholds(0.01)) == 100
    with pytest.raises(MetricError):
        thresholds(0)
    with pytest.raises(MetricError):
        thresholds(float("nan"))


def test_iou_golden_values():
    assert iou([[1, 2, 5, 6]], [[3, 1, 4, 5]])[0, 0] == 8 / 27
    assert np.array_equal(iou(np.zeros((3, 4), int), np.zeros((5, 4), int)), np.ones((3, 5)))
    eye = [[1, 1, 3, 3], [4, 4, 5, 5]]
    assert np.array_equal(iou(eye, eye), np.eye(2))
    assert iou([0, 0, 0, 0], [1, 1, 1, 1]).shape == (1, 1)


def test_iou_rejects_reversed_and_malformed_boxes():
    with pytest.raises(MetricError, match="reversed"):
        iou([[1, 1, 0, 0]], [[1, 1, 2, 2]])
    with pytest.raises(ValueError):  # MetricError is a ValueError
        iou([[0, 0, 2, 1]], [[0, 3, 2, 1]])
    with pytest.raises(MetricError, match="whole pixel"):
        iou([[0, 0, 2.5, 1]], [[0, 0, 1, 1]])
    with pytest.raises(MetricError, match="k x 4"):
        iou([[0, 0, 2]], [[0, 0, 1, 1]])


def test_boxes_unimodal_golden():
    # The reference's 4 x 5 unimodal map (array[y][x]): a 3 x 3 plateau of 0.4 around a peak of 1.0
    # with 0.8 to its right, and a column of 0.6 on the right edge. With max 255 the levels at
    # tau = 0, .2, .4, .6, .8 are 0, 51, 102, 153, 204 (0.4 -> 102 is switched off at tau .4).
    m = np.array([[0.0, 0.0, 0.0, 0.0, 0.0],
                  [0.0, 0.4, 0.4, 0.4, 0.6],
                  [0.0, 0.4, 1.0, 0.8, 0.6],
                  [0.0, 0.4, 0.4, 0.4, 0.6]])
    taus = np.arange(0, 1, 0.2)
    got = [boxes_from_map(m, t).tolist() for t in taus]
    assert got == [[[1, 1, 4, 3]], [[1, 1, 4, 3]], [[2, 1, 4, 3]], [[2, 2, 4, 3]], [[2, 2, 3, 3]]]
    curves = image_curves(m, [[0, 0, 4, 3]], taus)
    assert curves.box_largest[curves.mask_of_threshold].tolist() == [b[0] for b in got]


def test_boxes_multimodal_golden_with_tied_areas():
    # The reference's multimodal map: at tau = .6 two one-pixel contours (area 0) tie and the first
    # one in findContours order, [2, 3, 3, 3], is the largest.
    m = np.array([[0.4, 0.0, 0.2, 0.2, 0.2],
                  [0.4, 0.4, 0.0, 0.4, 0.0],
                  [0.0, 0.0, 0.0, 0.4, 0.0],
                  [1.0, 0.6, 0.8, 0.2, 0.2]])
    got = [boxes_from_map(m, t)[0].tolist() for t in np.arange(0, 1, 0.2)]
    assert got == [[0, 0, 4, 3], [0, 0, 2, 2], [0, 3, 3, 3], [2, 3, 3, 3], [0, 3, 1, 3]]
    assert boxes_from_map(m, 0.6, multi_contour=True).tolist() == [[2, 3, 3, 3], [0, 3, 1, 3]]


def test_all_zero_map_gives_zero_box():
    for t in np.arange(0, 1, 0.2):
        assert boxes_from_map(np.zeros((3, 3)), t).tolist() == [[0, 0, 0, 0]]
        assert boxes_from_map(np.zeros((3, 3)), t, multi_contour=True).tolist() == [[0, 0, 0, 0]]
    res = _evaluate([np.zeros((3, 3))] * 2, [[[0, 0, 0, 0]], [[1, 1, 2, 2]]], np.arange(0, 1, 0.2))
    assert res.box_acc[LEVELS.index(50)].tolist() == [50.0] * 5  # IoU([0,0,0,0], [0,0,0,0]) = 1


def test_pxap_golden_perfect_and_constant_maps():
    rng = np.random.default_rng(3)
    gt = np.zeros((50, 60), bool)
    gt[10:30, 5:40] = True
    ignore = np.zeros_like(gt)
    ignore[0:15, 30:60] = True  # overlaps the foreground: those pixels stay foreground
    taus = thresholds(0.01)
    for ignore_score in (0.0, 1.0):
        perfect = gt.astype(float)
        perfect[ignore & ~gt] = ignore_score
        assert pxap(perfect, gt, ignore, taus) == 100.0
    P = int(gt.sum())
    N = int((~gt & ~ignore).sum())
    for value in (0.0, 0.5, 1.0):
        assert pxap(np.full(gt.shape, value), gt, ignore, taus) == pytest.approx(100 * P / (P + N), rel=1e-12)
    assert pxap(rng.random(gt.shape), gt, None, taus) == pytest.approx(100 * gt.mean(), abs=3)


# ------------------------------------------------------------------- equality with the literal loop

def test_box_metrics_equal_literal_loop_interval_001():
    rng = np.random.default_rng(0)
    zoo = map_zoo(rng) + [(f"smooth{i}", smooth(rng, (40, 40), rng.uniform(2, 6))) for i in range(6)]
    maps = [m for _, m in zoo]
    gts = [random_gt(rng, m.shape) for m in maps]
    gts[6] = np.array([[3, 24, 12, 33]])  # around the SECOND tied square: the tie-break decides
    taus = thresholds(0.01)
    res = _evaluate(maps, gts, taus)
    _assert_same(res, literal_box_metrics(maps, gts, taus), maps, taus)


def test_box_metrics_equal_literal_loop_interval_0001():
    rng = np.random.default_rng(1)
    maps = [blobs(rng, (56, 56)), noisy(rng, (40, 40)), tied_squares(), 0.5 * smooth(rng, (48, 48)),
            np.zeros((8, 8))]
    gts = [random_gt(rng, m.shape) for m in maps]
    gts[2] = np.array([[3, 24, 12, 33], [30, 5, 37, 12]])
    taus = thresholds(0.001)
    res = _evaluate(maps, gts, taus)
    _assert_same(res, literal_box_metrics(maps, gts, taus), maps, taus)


def cam_like(rng, size=224):
    """A CAM as the protocol makes it: a 7 x 7 grid bicubic-resized, then min-max normalised."""
    grid = rng.random((7, 7)) * 0.3
    grid[rng.integers(0, 7), rng.integers(0, 7)] += 1.0
    return _minmax(cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC))


def test_box_metrics_equal_literal_loop_at_224():
    rng = np.random.default_rng(2)
    maps = [blobs(rng, (224, 224)), cam_like(rng)]
    gts = [random_gt(rng, m.shape, k=2) for m in maps]
    taus = thresholds(0.001)
    res = _evaluate(maps, gts, taus)
    _assert_same(res, literal_box_metrics(maps, gts, taus), maps, taus)


def test_box_metrics_equal_literal_loop_many_maps():
    rng = np.random.default_rng(7)
    makers = [smooth, blobs, noisy, lambda r: 0.8 * cam_like(r, 96)]
    maps = [makers[i % len(makers)](rng) for i in range(16)] + [noisy(rng, (224, 224))]  # ~1000 contours
    gts = [random_gt(rng, m.shape) for m in maps]
    taus = thresholds(0.01)
    res = _evaluate(maps, gts, taus)
    _assert_same(res, literal_box_metrics(maps, gts, taus), maps, taus)


def test_boxes_from_map_equals_literal_boxes():
    rng = np.random.default_rng(4)
    for name, m in map_zoo(rng):
        for tau in rng.random(6).tolist() + [0.0, 0.999]:
            for multi in (False, True):
                assert boxes_from_map(m, tau, multi).tolist() == literal_boxes(m, tau, multi), (name, tau, multi)


def test_pxap_equals_literal_histograms():
    rng = np.random.default_rng(5)
    maps = [m for _, m in map_zoo(rng) if m.shape == (64, 64)]
    maps += [np.round(smooth(rng) * 100) / 100, np.round(blobs(rng) * 1000) / 1000]  # values on the edges
    gts = [m > rng.uniform(0.2, 0.8) * m.max() for m in maps]
    gts[-1][:] = False  # an image without foreground is allowed in a set
    ignores = [rng.random(m.shape) > 0.8 for m in maps]
    for taus in (thresholds(0.01), thresholds(0.001), np.arange(0.1, 1, 0.03), np.array([0.0])):
        for ign in (None, ignores):
            ev = PixelEvaluator(taus)
            ev.accumulate(np.stack(maps[:3]), np.stack(gts[:3]), None if ign is None else np.stack(ign[:3]))
            ev.accumulate(maps[3:], gts[3:], None if ign is None else ign[3:])
            res = ev.compute()
            want, precision, recall = literal_pxap(maps, gts, ign, taus)
            assert res.pxap == want
            assert np.array_equal(res.precision, precision, equal_nan=True)
            assert np.array_equal(res.recall, recall)
            assert res.curve_thresholds[0] == 2.0 and res.curve_thresholds[1] == 1.0
            assert np.isnan(res.image_pxap[-1]) and np.all(np.isfinite(res.image_pxap[:-1]))


@pytest.mark.parametrize("taus", [thresholds(0.001), np.linspace(0.5, 0.5001, 300, endpoint=False)],
                         ids=["grid", "crowded"])
def test_pxap_bins_agree_with_np_histogram_at_edges(taus):
    edges = np.append(taus, [1.0, 2.0, 3.0])
    values = np.concatenate([taus, np.nextafter(taus, 2), np.nextafter(taus[1:], -1), [1.0, 0.0, 0.9995],
                             np.random.default_rng(6).random(5000)])
    ev = PixelEvaluator(taus)
    ev.accumulate(values.reshape(1, 1, -1), np.ones((1, 1, len(values)), bool))
    assert np.array_equal(ev.pos_hist, np.histogram(values, bins=edges)[0])
    assert ev.pos_hist[len(taus)] == 1  # the value 1.0 lands in [1, 2)


def test_torch_inputs_match_numpy():
    rng = np.random.default_rng(8)
    maps = np.stack([smooth(rng, (32, 32)) for _ in range(3)]).astype(np.float32)
    gts = maps > 0.6
    boxes = [random_gt(rng, (32, 32)) for _ in range(3)]
    taus = thresholds(0.01)
    assert pxap(torch.from_numpy(maps), torch.from_numpy(gts), None, taus) == pxap(maps, gts, None, taus)
    a, b = BoxEvaluator(taus), BoxEvaluator(taus)
    a.accumulate(torch.from_numpy(maps), boxes)
    b.accumulate(maps.astype(np.float64), boxes)  # float32 maps are evaluated as their float64 copy
    assert np.array_equal(a.compute().box_acc_v2, b.compute().box_acc_v2)


# ------------------------------------------------------------------------------------------ errors

def test_nan_and_out_of_range_maps_are_errors():
    bad = np.zeros((4, 4))
    bad[1, 1] = np.nan
    with pytest.raises(MetricError, match="NaN"):
        boxes_from_map(bad, 0.5)
    with pytest.raises(MetricError, match="NaN"):
        BoxEvaluator(thresholds(0.1)).accumulate([bad], [[[0, 0, 1, 1]]])
    with pytest.raises(MetricError, match="NaN"):
        PixelEvaluator(thresholds(0.1)).accumulate(bad, np.ones((4, 4), bool))
    with pytest.raises(MetricError, match=r"\[0, 1\]"):
        boxes_from_map(np.full((4, 4), 1.5), 0.5)


def test_no_positive_pixel_is_an_error():
    ev = PixelEvaluator(thresholds(0.1))
    ev.accumulate(np.random.default_rng(0).random((2, 8, 8)), np.zeros((2, 8, 8), bool))
    with pytest.raises(MetricError, match="No positive"):
        ev.compute()
    everything_ignored = PixelEvaluator(thresholds(0.1))
    everything_ignored.accumulate(np.zeros((8, 8)), np.zeros((8, 8), bool), np.ones((8, 8), bool))
    with pytest.raises(MetricError):
        everything_ignored.compute()


def test_bad_evaluator_arguments():
    with pytest.raises(MetricError, match="50"):
        BoxEvaluator(thresholds(0.1), iou_levels=(30, 70))
    with pytest.raises(MetricError, match="increasing"):
        PixelEvaluator([0.5, 0.2])
    ev = BoxEvaluator(thresholds(0.1))
    with pytest.raises(MetricError, match="2 maps but 1"):
        ev.accumulate(np.zeros((2, 4, 4)), [[[0, 0, 1, 1]]])
    with pytest.raises(MetricError, match="reversed"):
        ev.accumulate(np.zeros((1, 4, 4)), [[[2, 0, 1, 1]]])
    with pytest.raises(MetricError, match="No image"):
        ev.compute()
    with pytest.raises(MetricError, match="shape"):
        PixelEvaluator(thresholds(0.1)).accumulate(np.zeros((4, 4)), np.zeros((4, 5), bool))


# --------------------------------------------------------------------------------- other helpers

def test_localization_accuracy_top1_top5():
    ious = np.array([0.9, 0.5, 0.49, 0.7])
    labels = np.array([1, 2, 3, 4])
    ranked = np.array([[1, 0, 0, 0, 0], [0, 2, 0, 0, 0], [3, 0, 0, 0, 0], [0, 0, 0, 0, 9]])
    assert localization_accuracy(ious, ranked[:, 0], labels) == 25.0  # image 0 only
    assert localization_accuracy(ious, ranked, labels, k=5) == 50.0   # images 0 and 1
    with pytest.raises(MetricError):
        localization_accuracy(ious, ranked[:, :2], labels, k=5)

    m = np.zeros((20, 20))
    m[5:10, 5:10] = 1.0
    ev = BoxEvaluator(thresholds(0.1))
    ev.accumulate(np.stack([m, m]), [[[5, 5, 10, 10]], [[15, 15, 19, 19]]])
    res = ev.compute()
    assert res.image_iou.tolist() == [1.0, 0.0]  # box [5, 5, min(10, 19), min(10, 19)]
    assert res.localization_accuracy([[7], [7]], [7, 7]) == 50.0
    assert res.localization_accuracy([[7], [7]], [7, 7], multi_contour=True) == 50.0


def test_resize_boxes_truncates_per_axis():
    assert resize_boxes([1, 2, 4, 3], (10, 20), (35, 10)).tolist() == [[3, 1, 14, 1]]
    want = [int(60 * 224 / 500), int(27 * 224 / 335), int(385 * 224 / 500), int(331 * 224 / 335)]
    assert resize_boxes([[60, 27, 385, 331]], (500, 335)).tolist() == [want]


def test_mask_confusion_labels():
    score = np.array([[0.9, 0.1], [0.6, 0.2]])
    gt = np.array([[True, True], [False, False]])
    ignore = np.array([[True, False], [False, True]])
    assert mask_confusion(score, gt, None, 0.5).tolist() == [[TP, FN], [FP, TN]]
    assert mask_confusion(score, gt, ignore, 0.5).tolist() == [[TP, FN], [FP, IGNORED]]
    assert mask_confusion(score, gt, None, 0.6)[1, 0] == FP  # score >= tau is "on"


def test_value_histogram():
    rng = np.random.default_rng(0)
    maps = rng.random((3, 10, 10)) ** 3
    heights, edges = value_histogram(maps, bins=20)
    assert len(heights) == 20 and edges[0] == 0 and edges[-1] == 1
    assert np.sum(heights * np.diff(edges)) == pytest.approx(1.0)
    counts, _ = value_histogram(maps, bins=10, density=False, masks=maps > 0.5)
    assert counts.sum() == (maps > 0.5).sum()


# ------------------------------------------------------------------------------------ confidence

def _mean_model(scale: float):
    """logits = [scale * mean(x), 0]: the class-0 softmax confidence is sigmoid(scale * mean(x))."""
    def model(x: torch.Tensor) -> torch.Tensor:
        s = scale * x.mean(dim=(1, 2, 3))
        return torch.stack([s, torch.zeros_like(s)], dim=1)
    return model


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def test_average_drop_and_increase_by_hand():
    scale, h, w = 3.0, 6, 8
    levels = [0.8, -0.5, 1.2, -1.0]  # constant images (negative: masking raises the mean)
    images = torch.stack([torch.full((3, h, w), v, dtype=torch.float64) for v in levels])
    rng = np.random.default_rng(0)
    maps = rng.random((4, h, w))
    res = average_drop_increase(_mean_model(scale), images, maps, targets=[0, 0, 0, 0], batch_size=3)
    Y = [_sigmoid(scale * v) for v in levels]
    masked = [_sigmoid(scale * v * maps[i].mean()) for i, v in enumerate(levels)]
    assert res.confidence == pytest.approx(Y, rel=1e-12)
    assert res.masked_confidence == pytest.approx(masked, rel=1e-12)
    drop = 100 * np.mean([max(0.0, y - o) / y for y, o in zip(Y, masked)])
    assert res.average_drop == pytest.approx(drop, rel=1e-10)
    assert res.increase == 50.0  # exactly the two negative images gain confidence
    whole = average_drop_increase(_mean_model(scale), images, maps, targets=[0, 0, 0, 0], batch_size=64)
    assert whole.average_drop == pytest.approx(res.average_drop, rel=1e-12)


def test_relative_masking_keeps_exactly_the_top_half():
    scale, h, w = 2.0, 5, 5  # 25 pixels: floor(12.5) = 12 are kept
    images = torch.full((3, 3, h, w), 0.7, dtype=torch.float64)
    maps = np.stack([np.full((h, w), 0.3),                    # all tied
                     np.arange(h * w).reshape(h, w) / 24.0,   # distinct
                     np.repeat([[0, 0, 1, 1, 1]], h, axis=0) * 1.0])  # 15 tied maxima
    res = average_drop_increase(_mean_model(scale), images, maps, targets=[0, 0, 0], relative=True)
    assert res.kept_fraction.tolist() == [12 / 25] * 3
    Y = _sigmoid(scale * 0.7)
    masked = _sigmoid(scale * 0.7 * 12 / 25)
    assert res.masked_confidence == pytest.approx([masked] * 3, rel=1e-12)
    assert res.average_drop == pytest.approx(100 * (Y - masked) / Y, rel=1e-10)
    mask = relative_mask(torch.as_tensor(maps), 0.5)
    assert mask.sum(dim=(1, 2)).tolist() == [12.0] * 3
    assert mask[1].flatten()[13:].all() and not mask[1].flatten()[:13].any()  # the 12 largest values
    assert mask[0].flatten()[:12].all()  # ties go to the lower row-major index


def test_masking_in_pixel_space_with_mean_and_std():
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)
    images = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    model = _mean_model(1.5)
    ones = average_drop_increase(model, images, np.ones((2, 4, 4)), mean=mean, std=std)
    assert np.allclose(ones.masked_confidence, ones.confidence, rtol=0, atol=1e-12)
    assert ones.average_drop == pytest.approx(0.0, abs=1e-9) and ones.increase == 0.0
    zeros = average_drop_increase(model, images, np.zeros((2, 4, 4)), targets=[0, 0], mean=mean, std=std)
    black = np.mean([-m / s for m, s in zip(mean, std)])  # a black image, normalised
    assert zeros.masked_confidence == pytest.approx([_sigmoid(1.5 * black)] * 2, rel=1e-12)
    with pytest.raises(MetricError, match="both"):
        average_drop_increase(model, images, np.ones((2, 4, 4)), mean=mean)


def test_confidence_defaults_and_errors():
    images = torch.rand(2, 3, 4, 4)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 5))
    res = average_drop_increase(net, images, np.ones((2, 4, 4)))  # targets: top-1 on the full image
    with torch.no_grad():
        assert res.targets.tolist() == net(images).argmax(1).tolist()
    assert res.average_drop == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(MetricError, match="N x H x W"):
        average_drop_increase(net, images, np.ones((2, 5, 4)))
    with pytest.raises(MetricError, match=r"\[0, 1\]"):
        average_drop_increase(net, images, np.full((2, 4, 4), 2.0))
    with pytest.raises(MetricError, match="targets"):
        average_drop_increase(net, images, np.ones((2, 4, 4)), targets=[0, 7])


def test_failure_types_follow_the_box_against_the_object():
    from explorer.metrics.failures import HIT, NO_REGION, TOO_LARGE, TOO_SMALL, WRONG_PLACE, covers_image, failure_type

    truth = np.array([[50, 50, 149, 149]])
    assert failure_type([55, 52, 150, 148], truth) == HIT
    assert failure_type(None, truth) == NO_REGION
    assert failure_type([60, 60, 90, 90], truth) == TOO_SMALL  # a part inside the object
    assert failure_type([0, 0, 223, 223], truth) == TOO_LARGE  # the whole image contains it
    assert failure_type([120, 0, 223, 60], truth) == WRONG_PLACE
    assert failure_type([160, 160, 200, 200], truth) == WRONG_PLACE
    # two objects: judged against the one the box overlaps most
    assert failure_type([10, 10, 40, 40], np.array([[50, 50, 149, 149], [5, 5, 100, 100]])) == TOO_SMALL
    assert covers_image([0, 0, 223, 223], 224, 224) and not covers_image([0, 0, 200, 223], 224, 224)


def test_a_whole_image_box_is_drawn_inside_the_frame_not_on_it():
    from explorer.views.figures import draw_boxes

    base = np.zeros((224, 224, 3), dtype=np.uint8)
    drawn = draw_boxes(base, [[0, 0, 223, 223]], (255, 0, 0))
    assert drawn[0].sum() == 0 and drawn[:, 0].sum() == 0  # the frame stays clear
    assert drawn[6:8, 6:14, 0].max() == 255 and drawn[100:108, 6:8, 0].max() == 255  # dashed, inset
    plain = draw_boxes(base, [[20, 20, 100, 100]], (255, 0, 0))
    assert plain[20, 20:100, 0].min() == 255
