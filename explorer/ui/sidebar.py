"""The shared sidebar (image, backbone, weights, layer, target class), drawn once per run by the
router in app.py; every page reads its choices with `selection()`."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import streamlit as st
from PIL import Image

from explorer.backbones import Backbone, backbone_names
from explorer.errors import ExplorerError
from explorer.images import GALLERY, GALLERY_PREFIX, ImageError, gallery_image, gallery_names, image_digest
from explorer.server_files import DATA_DIR
from explorer.targets import Target
from explorer.ui.loading import decode_upload, layer_shapes, load_cached_backbone, top5
from explorer.ui.targets import choose_function_target
from explorer.ui.widgets import WIDGET_PREFIX, attempt, radio, remember, remembered, selectbox, set_widget
from explorer.user_models import model_cards

DEFAULT_BACKBONE = "efficientnet_lite0"
DEFAULT_GALLERY = "chelsea"
UPLOAD_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "tiff", "tif"]
MAX_UPLOAD_MB = 25
WEIGHT_LABELS = {"pretrained": "trained weights", "random": "RANDOM (untrained)"}
CARD_WEIGHT_LABELS = {"pretrained": "the card's weights", "random": "RANDOM (untrained)"}
MODELS_DIR = DATA_DIR / "models"
MODELS_ENV = "CAM_EXPLORER_MODELS"  # a server's own folder of model cards, instead of data/models/
RANDOM_BADGE = "RANDOM (untrained) weights: a baseline, not an explanation."
RANDOM_WARNING = ("RANDOM (untrained) weights: this network has learnt nothing, so its predictions "
                  "and maps are a baseline to compare against, not an explanation.")
TOP1 = -1  # target option: "whatever the network predicts first", following image and backbone
_CURRENT = "cam.selection"


@dataclass(frozen=True)
class ImageChoice:
    """An image the user chose: a gallery photo or an uploaded file (kept, so it survives page
    switches even though the uploader widget is emptied)."""

    key: str  # cache key: "gallery:<name>" or the SHA-256 of the uploaded bytes
    label: str
    data: bytes | None = None

    def load(self) -> Image.Image:
        if self.data is None:
            return gallery_image(self.key.removeprefix(GALLERY_PREFIX))
        return decode_upload(self.key, self.data)


DEFAULT_IMAGE = ImageChoice(GALLERY_PREFIX + DEFAULT_GALLERY, DEFAULT_GALLERY)


PAGE_GUIDE = (  # (page file, title, icon, what it is for): the landing page links every page
    ("app_pages/compare.py", "Compare", ":material/grid_view:",
     "Every method x upsampler as overlays, the grid-level heatmap, value histograms, timings and downloads."),
    ("app_pages/smoothing_lab.py", "Smoothing Lab", ":material/blur_on:",
     "Find the Gaussian sigma at which Extended-CAM's explicit smoothing matches Grad-CAM's implicit one."),
    ("app_pages/receptive_field.py", "Receptive Field", ":material/center_focus_strong:",
     "Estimate a layer's effective receptive field and fit the Gaussian that sets sigma."),
    ("app_pages/thresholds_and_histograms.py", "Thresholds and Histograms", ":material/ssid_chart:",
     "BoxAcc and precision-recall against the threshold, and map values on object and background."),
    ("app_pages/failure_cases.py", "Failure Cases", ":material/report:",
     "The images an evaluated method localises worst, with its box and the ground truth."),
    ("app_pages/confidence_metrics.py", "Confidence Metrics", ":material/speed:",
     "Average Drop and % Increase (Extended-CAM Tables 2-4), with intervals and n."),
    ("app_pages/downscale_simulation.py", "Downscale Simulation", ":material/photo_size_select_small:",
     "How localisation degrades as the CAM grid gets coarser."),
    ("app_pages/sanity_checks.py", "Sanity Checks", ":material/shuffle:",
     "Randomise the network block by block: does the map follow the weights or only the image?"),
    ("app_pages/fcam.py", "F-CAM", ":material/auto_fix_high:",
     "A U-Net decoder trained from CAM seeds, its maps, and fitting one on your data."),
)


@dataclass(frozen=True)
class Selection:
    """Everything the sidebar decided, as every page reads it."""

    image_choice: ImageChoice
    image: Image.Image  # as decoded: upright RGB at its own size
    seen: Image.Image  # as the network sees it (squashed to its input size)
    backbone: Backbone
    layer: str
    layer_shape: tuple[int, int, int]  # (channels, h, w)
    target: int  # the class index; for a function target its class where it has one, else -1
    predictions: list[tuple[int, str, float]]  # top-5 (index, name, probability); none unless a classifier
    objective: Target | None = None  # the function target of a segmentation, detection, embedding or regression model
    target_key: int | str = -1  # what caches tell targets apart by: the class, or the function target's description
    target_label: str = ""

    @property
    def target_name(self) -> str:
        return self.target_label or self.backbone.class_names[self.target]

    @property
    def targets(self) -> list:
        """The one image's target as the engine takes it: a class index or a function."""
        return [self.objective if self.objective is not None else self.target]

    @property
    def is_classifier(self) -> bool:
        return self.backbone.task == "classification"

    @property
    def size(self) -> tuple[int, int]:
        return self.backbone.input_size


def draw_sidebar() -> Selection:
    """Draw the shared sidebar (the router does, once per run, before the page) and keep its
    choices for `selection()`; stops the run when not even a fallback choice is usable."""
    with st.sidebar:
        st.header("Image and network")
        chosen = attempt("reading your choices", _choose)
    if chosen is None:
        st.stop()
    st.session_state[_CURRENT] = chosen
    return chosen


def selection() -> Selection:
    """What the sidebar decided in this run, as every page reads it (a page run on its own,
    not through app.py's router, draws the sidebar itself)."""
    chosen = st.session_state.get(_CURRENT)
    return chosen if chosen is not None else draw_sidebar()


def forget_selection() -> None:
    """The router's last word in every run: the next run draws the sidebar afresh."""
    st.session_state.pop(_CURRENT, None)


def _choose() -> Selection:
    choice, image = _choose_image()
    backbone = _choose_backbone()
    shapes = layer_shapes(backbone.name, backbone.weights, backbone)
    layer = _choose_layer(backbone, shapes)
    if backbone.task != "classification":
        picked = choose_function_target(backbone, choice.key, image)
        return Selection(choice, image, backbone.resize(image), backbone, layer, shapes[layer], picked.target, [],
                         picked.objective, picked.key, picked.label)
    predictions = top5(choice.key, backbone.name, backbone.weights, backbone, image)
    target = _choose_target(backbone, predictions)
    return Selection(choice, image, backbone.resize(image), backbone, layer, shapes[layer], target, predictions,
                     target_key=target)


def _choose_image() -> tuple[ImageChoice, Image.Image]:
    """The asked image when it decodes; otherwise an error and the last valid image."""
    source = radio("Image source", "image_source", ("gallery", "upload"), horizontal=True,
                   format_func={"gallery": "sample photo", "upload": "upload"}.get)
    asked = _asked_image(source)
    previous = remembered("image", DEFAULT_IMAGE)
    if asked is not None and asked.key != previous.key:
        try:
            image = asked.load()
        except ImageError as exc:
            st.error(str(exc))
            st.caption(f"Still showing **{previous.label}**.")
        else:
            remember("image", asked)
            return asked, image
    return previous, previous.load()


def _asked_image(source: str) -> ImageChoice | None:
    if source == "gallery":
        name = selectbox("Sample photo", "gallery_name", gallery_names(), DEFAULT_GALLERY,
                         format_func=lambda n: n.replace("_", " "))
        st.caption(GALLERY[name])
        return ImageChoice(GALLERY_PREFIX + name, name)
    upload = st.file_uploader("Your image", type=UPLOAD_TYPES, max_upload_size=MAX_UPLOAD_MB,
                              key=WIDGET_PREFIX + "upload", help=f"PNG, JPEG, WebP, BMP or TIFF, at most {MAX_UPLOAD_MB} MB.")
    if upload is None:
        current = remembered("image", DEFAULT_IMAGE)
        st.caption(f"Showing **{current.label}** until you upload a file.")
        return None
    data = upload.getvalue()
    return ImageChoice(image_digest(data), upload.name, data)


def weight_labels(name: str) -> dict[str, str]:
    """The Weights choice described as what the weights are: ImageNet for the torchvision and
    Lite0 networks, "trained here" for the synthetic-benchmark classifiers."""
    from explorer.backbones import REGISTRY

    spec = REGISTRY.get(name)
    if spec is None:
        return WEIGHT_LABELS
    label = spec.pretrained_label
    version = re.search(r"benchmark (v\d+)", label)
    where = f" (benchmark {version.group(1)})" if version else ""
    if "fine-tuned here" in label:
        what = f"fine-tuned here{where}"
    elif label.startswith("trained here"):
        what = f"trained here{where}"
    else:
        what = f"pretrained ({label.split(' (')[0]})"
    return {"pretrained": what, "random": WEIGHT_LABELS["random"]}


PENDING_BACKBONE = "cam.pending_backbone"


def models_dir() -> Path:
    """Where the app finds model cards: $CAM_EXPLORER_MODELS when set, else data/models/."""
    return Path(os.environ.get(MODELS_ENV) or MODELS_DIR)


def request_backbone(name: str) -> None:
    """Make `name` the sidebar's backbone from the next run on (a page cannot change a widget
    that has already been drawn in this run); the caller reruns."""
    st.session_state[PENDING_BACKBONE] = name


def _choose_backbone() -> Backbone:
    """The asked backbone when it loads; otherwise its error and the last backbone that loaded."""
    cards = [f"card:{path}" for path in model_cards(models_dir())]  # the visitors' own networks (data/models/)
    pending = st.session_state.pop(PENDING_BACKBONE, None)
    if pending is not None:  # a page asked for another backbone (request_backbone); applied before the widget exists
        set_widget("backbone", pending)
    name = selectbox("Backbone", "backbone", backbone_names() + cards, DEFAULT_BACKBONE,
                     format_func=lambda n: f"your model: {Path(n[5:]).stem}" if n.startswith("card:") else n,
                     help="The registered backbones, then the model cards (JSON) in data/models/.")
    labels = CARD_WEIGHT_LABELS if name.startswith("card:") else weight_labels(name)
    weights = radio("Weights", "weights", tuple(WEIGHT_LABELS), horizontal=True, format_func=labels.get)
    previous = remembered("active_backbone", (DEFAULT_BACKBONE, "pretrained"))
    try:
        backbone = load_cached_backbone(name, weights)
    except ExplorerError as exc:
        st.error(str(exc))
        st.caption(f"Still showing **{previous[0]}** with {weight_labels(previous[0])[previous[1]]}.")
        backbone = load_cached_backbone(*previous)
    else:
        remember("active_backbone", (name, weights))
    if backbone.is_random:
        st.warning(RANDOM_BADGE)
    return backbone


def shape_text(shape: Sequence[int]) -> str:
    return "×".join(str(n) for n in shape)


def _choose_layer(backbone: Backbone, shapes: dict[str, tuple[int, int, int]]) -> str:
    """Remembered per backbone, so coming back to a backbone restores its layer."""
    layer = selectbox("Target layer", f"layer.{backbone.name}", list(backbone.layers), backbone.default_layer,
                      format_func=lambda name: f"{name} ({shape_text(shapes[name])})",
                      help="The feature map A (channels × rows × columns) that the CAM methods read.")
    note = backbone.layer_notes.get(layer)
    if note:
        st.caption(note)
    return layer


def _choose_target(backbone: Backbone, predictions: list[tuple[int, str, float]]) -> int:
    top = [index for index, _, _ in predictions]
    top_set = set(top)
    others = [i for i in range(len(backbone.class_names)) if i not in top_set]
    probability = {index: p for index, _, p in predictions}
    names = backbone.class_names

    def label(option: int) -> str:
        if option == TOP1:
            return f"top-1: {names[top[0]]}"
        if option in probability:
            return f"#{top.index(option) + 1} {names[option]} ({probability[option]:.1%})"
        return f"{names[option]} (class {option})"

    choice = selectbox("Target class", "target", [TOP1, *top, *others], TOP1, format_func=label,
                       help="The class whose score the maps explain: one of the top-5 predictions, "
                            f"or type part of a name to search all {len(names)} classes.")
    return top[0] if choice == TOP1 else choice


def require_classifier(state: Selection, page: str) -> None:
    """Stop a page that explains a classifier's class with one line saying where to go instead."""
    if state.is_classifier:
        return
    st.info(f"{page} explains a classifier's class (its numbers are class scores and probabilities); "
            f"`{state.backbone.name}` is a {state.backbone.task} model. Compare shows its maps for the target in the "
            "sidebar, and Receptive Field its layers' receptive fields.")
    st.stop()


def context_banner(state: Selection) -> None:
    """One line naming what every map on the page explains, plus the RANDOM warning."""
    backbone = state.backbone
    target = f"**{state.target_name}** (class {state.target})" if state.objective is None else \
        f"**{state.target_name}** ({backbone.task} target)"
    st.markdown(f"Image **{state.image_choice.label}** · `{backbone.name}` (weights: {backbone.weights_label}) · "
                f"layer `{state.layer}` ({shape_text(state.layer_shape)}) · target {target}")
    if backbone.is_random:
        st.warning(RANDOM_WARNING)
