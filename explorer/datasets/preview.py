"""A contact sheet of a dataset's ground truth, to check by eye that it is what it claims to be."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from explorer.datasets.loaders import EVAL_SIZE, WsolDataset

__all__ = ["preview_sheet"]

_OUTLINE = (40, 255, 90)
_BOX = (255, 220, 0)
_PART = (255, 40, 40)
_CAPTION = 20
_GAP = 6


def preview_sheet(dataset: WsolDataset, count: int = 12, columns: int = 6) -> Image.Image:
    """Up to ``count`` examples at 224 x 224, the classes taken in turn.

    Each example shows the image with its mask outline (green) and boxes (yellow); when the dataset
    records the class-deciding part, a second tile below dims everything but that part (outlined
    in red), which is where a classifier's CAM is expected to concentrate.
    """
    indices = _balanced(dataset, count)
    with_parts = any(dataset[i].part_path is not None for i in indices)
    rows_per_example = 2 if with_parts else 1
    example_rows = -(-len(indices) // columns)
    cell_h = _CAPTION + rows_per_example * EVAL_SIZE
    sheet = Image.new("RGB", (columns * (EVAL_SIZE + _GAP) + _GAP, example_rows * (cell_h + _GAP) + _GAP),
                      (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=14)
    for k, index in enumerate(indices):
        x = _GAP + (k % columns) * (EVAL_SIZE + _GAP)
        y = _GAP + (k // columns) * (cell_h + _GAP)
        sample = dataset[index]
        caption = dataset.classes[sample.label] if sample.label is not None else sample.image_id
        draw.text((x + 2, y + 2), f"{caption}  ({len(sample.boxes) or len(sample.mask_paths)} obj.)",
                  fill=(0, 0, 0), font=font)
        image = np.asarray(dataset.load_image(index).resize((EVAL_SIZE, EVAL_SIZE), Image.Resampling.BILINEAR)).copy()
        sheet.paste(Image.fromarray(_annotated(dataset, index, image)), (x, y + _CAPTION))
        if with_parts and sample.part_path is not None:
            sheet.paste(Image.fromarray(_part_view(dataset.part_mask(index), image)), (x, y + _CAPTION + EVAL_SIZE))
    return sheet


def _balanced(dataset: WsolDataset, count: int) -> list[int]:
    """The first images of each class in turn, so every class shows up."""
    by_class: dict[int | None, list[int]] = {}
    for index, sample in enumerate(dataset):
        by_class.setdefault(sample.label, []).append(index)
    queues = [by_class[label] for label in sorted(by_class, key=lambda v: -1 if v is None else v)]
    chosen: list[int] = []
    while len(chosen) < min(count, len(dataset)):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop(0))
    return chosen


def _annotated(dataset: WsolDataset, index: int, image: np.ndarray) -> np.ndarray:
    out = image.copy()
    if dataset[index].mask_paths:
        foreground, _ = dataset.gt_mask(index)
        out[foreground & ~ndimage.binary_erosion(foreground)] = _OUTLINE
    tile = Image.fromarray(out)
    draw = ImageDraw.Draw(tile)
    for x0, y0, x1, y1 in dataset.gt_boxes(index):
        draw.rectangle((int(x0), int(y0), int(x1), int(y1)), outline=_BOX, width=1)
    return np.asarray(tile)


def _part_view(part: np.ndarray, image: np.ndarray) -> np.ndarray:
    out = (image * 0.3).astype(np.uint8)
    out[part] = image[part]
    out[ndimage.binary_dilation(part, iterations=2) & ~part] = _PART
    return out
