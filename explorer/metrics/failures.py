"""Why a map's box missed: one failure type per image, from its box at the evaluation's threshold.

A box localises when its IoU with a ground-truth box reaches delta (0.5, MaxBoxAcc's). When it does
not, the box is compared with the ground-truth box it overlaps most (the first of equal IoUs):

* "no region above τ": the map has no pixel above the threshold, so there is no box at all;
* "too small": the box lies inside that ground-truth box (the map found a part, e.g. the head);
* "too large": the box contains it (the map spread over the object and its surroundings);
* "wrong place": neither (it overlaps too little, or lies elsewhere).

Independently, "wrong class" marks an image whose top-1 prediction is not its label (the map then
explains another class's evidence). Boxes are inclusive [x0, y0, x1, y1] in pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

HIT = "localised"
NO_REGION = "no region above τ"
TOO_SMALL = "too small"
TOO_LARGE = "too large"
WRONG_PLACE = "wrong place"
WRONG_CLASS = "wrong class"
FAILURE_TYPES = (NO_REGION, TOO_SMALL, TOO_LARGE, WRONG_PLACE)


def box_iou(box: Sequence[float], truths: np.ndarray) -> np.ndarray:
    """IoU of one inclusive box with each row of truths (k x 4), as the protocol counts pixels."""
    truths = np.asarray(truths, dtype=np.float64).reshape(-1, 4)
    x0, y0, x1, y1 = (float(v) for v in box)
    ix = np.clip(np.minimum(x1, truths[:, 2]) - np.maximum(x0, truths[:, 0]) + 1, 0, None)
    iy = np.clip(np.minimum(y1, truths[:, 3]) - np.maximum(y0, truths[:, 1]) + 1, 0, None)
    inter = ix * iy
    area = (x1 - x0 + 1) * (y1 - y0 + 1)
    areas = (truths[:, 2] - truths[:, 0] + 1) * (truths[:, 3] - truths[:, 1] + 1)
    return inter / (area + areas - inter)


def failure_type(box: Sequence[float] | None, truths: np.ndarray, delta: float = 0.5) -> str:
    """HIT or one of FAILURE_TYPES for a predicted box (None: nothing above the threshold)."""
    truths = np.asarray(truths, dtype=np.float64).reshape(-1, 4)
    if box is None:
        return NO_REGION
    if len(truths) == 0:
        return WRONG_PLACE
    ious = box_iou(box, truths)
    if ious.max() >= delta:
        return HIT
    g0, h0, g1, h1 = truths[int(np.argmax(ious))]
    x0, y0, x1, y1 = (float(v) for v in box)
    if x0 >= g0 and y0 >= h0 and x1 <= g1 and y1 <= h1:
        return TOO_SMALL
    if x0 <= g0 and y0 <= h0 and x1 >= g1 and y1 >= h1:
        return TOO_LARGE
    return WRONG_PLACE


def covers_image(box: Sequence[float] | None, width: int, height: int, margin: int = 1) -> bool:
    """The box is the whole picture (within `margin` pixels): drawn on the frame it would vanish."""
    if box is None:
        return False
    x0, y0, x1, y1 = (float(v) for v in box)
    return x0 <= margin and y0 <= margin and x1 >= width - 1 - margin and y1 >= height - 1 - margin
