"""The sidebar's target picker, which follows the model card's task: a class for a classifier; a
class and a region (where the model predicts it, or a box) for a segmentation model; one of the
model's own detections for a detector; a reference image for an embedding; an output index for a
regression. The function targets come from `explorer.targets`; this module only asks for them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st
import torch
from PIL import Image

from explorer.backbones import Backbone
from explorer.images import GALLERY_PREFIX, gallery_image, gallery_names
from explorer.targets import (
    BoxScore,
    CosineSimilarity,
    RegressionOutput,
    SegmentationRegion,
    Target,
    box_mask,
    class_planes,
    detections_of,
    per_image,
    region_of_class,
)
from explorer.ui.loading import NETWORK_LOCK
from explorer.ui.widgets import radio, range_slider, selectbox

MAX_DETECTIONS = 10  # the detections offered, best score first
SAME_IMAGE = "(this image)"


@dataclass(frozen=True)
class TargetChoice:
    """What the maps explain: `target` a class index (-1 where there is none), `objective` the
    function target (None for a classifier's class logit), `key` what caches tell targets apart by."""

    target: int
    objective: Target | None
    key: str
    label: str


@st.cache_data(max_entries=16, show_spinner="Running the model on the image…")
def _output(image_key: str, backbone_name: str, weights: str, _backbone: Backbone, _image: Image.Image) -> object:
    """The model's output for the image (one image's part, detached, on the CPU)."""
    with NETWORK_LOCK, torch.no_grad():
        single = per_image(_backbone.model(_backbone.preprocess(_image)), 1)[0]
    if isinstance(single, torch.Tensor):
        return single.detach().cpu()
    return {k: v.detach().cpu() for k, v in single.items()}  # type: ignore[attr-defined]


def choose_function_target(backbone: Backbone, image_key: str, image: Image.Image) -> TargetChoice:
    """The picker for a model whose task is not classification."""
    def output() -> object:
        return _output(image_key, backbone.name, backbone.weights, backbone, image)

    pickers: dict[str, Callable[[Backbone, Callable[[], object]], TargetChoice]] = {
        "segmentation": _segmentation, "detection": _detection, "embedding": _embedding, "regression": _regression}
    return pickers[backbone.task](backbone, output)


def _segmentation(backbone: Backbone, output: Callable[[], object]) -> TargetChoice:
    planes = class_planes(output())
    covered = torch.bincount(planes.argmax(dim=0).reshape(-1), minlength=planes.shape[0])
    order = [int(c) for c in torch.argsort(covered, descending=True)]
    names = backbone.class_names
    category = selectbox("Target class", f"seg_class.{backbone.name}", order, order[0],
                         format_func=lambda c: f"{names[c]} ({float(covered[c]) / planes[0].numel():.0%} of pixels)",
                         help="The class whose score is summed over the region; classes by the share of pixels the "
                              "model gives them.")
    region = radio("Region", "seg_region", ("predicted", "box"), horizontal=True,
                   format_func={"predicted": "where it predicts the class", "box": "a box"}.get)
    h, w = planes.shape[-2:]
    if region == "box":
        x = range_slider("Box, left to right (%)", "seg_box_x", 0, 100, (25, 75))
        y = range_slider("Box, top to bottom (%)", "seg_box_y", 0, 100, (25, 75))
        box = (x[0] * w / 100, y[0] * h / 100, x[1] * w / 100, y[1] * h / 100)
        mask, where = box_mask(box, (h, w)), f"box x {x[0]}-{x[1]} %, y {y[0]}-{y[1]} %"
    else:
        mask, where = region_of_class(output(), category), "its predicted pixels"
    if not mask.any():
        st.caption("The region is empty: the target is 0 and so is every map. Choose another class or a box.")
    return TargetChoice(category, SegmentationRegion(category, mask), f"region:{category}:{where}",
                        f"{names[category]} summed over {where}")


def _detection(backbone: Backbone, output: Callable[[], object]) -> TargetChoice:
    found = detections_of(output())
    count = min(MAX_DETECTIONS, int(found["scores"].shape[0]))
    if count == 0:
        st.caption("The detector found nothing in this image (none above its score threshold): there is no box to "
                   "explain.")
        return TargetChoice(-1, None, "box:none", "no detection")
    names = backbone.class_names

    def label(i: int) -> str:
        x1, y1, x2, y2 = (int(v) for v in found["boxes"][i].tolist())
        return f"{names[int(found['labels'][i])]} {float(found['scores'][i]):.2f} at ({x1}, {y1})-({x2}, {y2})"

    chosen = selectbox("Detected box", f"det_box.{backbone.name}", list(range(count)), 0, format_func=label,
                       help="The detection whose IoU + score the maps explain (pytorch-grad-cam's box-score target).")
    box, category = found["boxes"][chosen], int(found["labels"][chosen])
    return TargetChoice(category, BoxScore((category,), box[None].clone()), f"box:{category}:{box.tolist()}",
                        label(chosen))


def _embedding(backbone: Backbone, output: Callable[[], object]) -> TargetChoice:
    reference = selectbox("Reference image", f"reference.{backbone.name}", [SAME_IMAGE, *gallery_names()], SAME_IMAGE,
                          help="The maps explain the cosine similarity of this image's embedding to the reference's.")
    if reference == SAME_IMAGE:
        embedding = output()
    else:
        picture = gallery_image(reference)
        embedding = _output(GALLERY_PREFIX + reference, backbone.name, backbone.weights, backbone, picture)
    assert isinstance(embedding, torch.Tensor)
    return TargetChoice(-1, CosineSimilarity(embedding), f"cosine:{reference}",
                        f"cosine similarity to {reference.replace('_', ' ')}")


def _regression(backbone: Backbone, output: Callable[[], object]) -> TargetChoice:
    values = output()
    assert isinstance(values, torch.Tensor)
    size = int(values.numel())
    index = selectbox("Output", f"output.{backbone.name}", list(range(size)), 0,
                      format_func=lambda i: f"{backbone.class_names[i]} = {float(values.reshape(-1)[i]):.3g}")
    return TargetChoice(index, RegressionOutput(index), f"output:{index}", backbone.class_names[index])
