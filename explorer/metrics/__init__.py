"""Evaluation metrics of CAM Explorer, protocol-exact (shared/reference/wsol-protocol.md).

Box metrics (CUB, ILSVRC): MaxBoxAcc (largest contour, IoU 0.5) and MaxBoxAccV2 (all contours,
IoU 0.3/0.5/0.7, best tau per IoU), top-1/top-5 localisation, computed in one vectorised pass
that gives the reference's numbers exactly. Pixel metrics (OpenImages): PxAP and its
precision-recall curve. Confidence metrics (PASCAL VOC): Average Drop % and % Increase, with
normal or relative masking. Inputs are numpy arrays (torch tensors for the confidence metrics);
outputs are numpy arrays and dataclasses. Bad input raises MetricError (a ValueError).
"""

from explorer.metrics.boxes import (
    IOU_LEVELS,
    BoxEvaluator,
    BoxResult,
    ImageCurves,
    boxes_from_map,
    check_boxes,
    image_curves,
    iou,
    localization_accuracy,
    resize_boxes,
    score_map_to_uint8,
)
from explorer.metrics.common import MetricError, thresholds
from explorer.metrics.confidence import ConfidenceResult, average_drop_increase, relative_mask
from explorer.metrics.pixels import (
    CONFUSION_LABELS,
    PixelEvaluator,
    PixelResult,
    histogram_edges,
    mask_confusion,
    pxap,
    value_histogram,
)

__all__ = [
    "MetricError", "thresholds",
    "IOU_LEVELS", "BoxEvaluator", "BoxResult", "ImageCurves", "boxes_from_map", "check_boxes",
    "image_curves", "iou", "localization_accuracy", "resize_boxes", "score_map_to_uint8",
    "PixelEvaluator", "PixelResult", "CONFUSION_LABELS", "histogram_edges", "mask_confusion", "pxap",
    "value_histogram",
    "ConfidenceResult", "average_drop_increase", "relative_mask",
]
