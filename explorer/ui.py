"""Streamlit glue shared by every page of CAM Explorer: the only Streamlit import in `explorer/`.

Three jobs live here so that `app.py` and `pages/` stay pure layout:

* Cached work keyed on short strings (image digests, backbone, layer and method names), never on
  arrays or tensors: Streamlit hashes large arrays by sampling (two different images can share a
  key) and cannot hash tensors. Arrays the work needs travel in `_`-prefixed, unhashed arguments.
* The shared sidebar (image, backbone, weights, layer, target class). Streamlit forgets a widget's
  value as soon as a page stops rendering that widget, so every choice is also kept in a plain
  (non-widget) `st.session_state` entry and each widget is re-seeded from it: choices survive page
  switches, and an invalid choice falls back to the last valid one.
* Friendly errors: problems a user can cause (a broken file, missing weights, an impossible
  method) become `st.error(message)`; anything else is logged with its traceback and shown as one
  short line, and the app stays usable.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import logging
import math
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

import numpy as np
import streamlit as st
import torch
from PIL import Image

from explorer import views
from explorer.backbones import (
    REGISTRY,
    Backbone,
    BackboneError,
    backbone_names,
    load_backbone,
)
from explorer.capture import CaptureError
from explorer.checkpoints import CheckpointError
from explorer.erf import (
    ErfError,
    ErfEstimate,
    ErfFit,
    ErfFitError,
    convergence,
    estimate_erf,
    fit_erf,
    folder_batches,
    gallery_batches,
    load_erf_card,
    merge_estimate,
    noise_batches,
)
from explorer.fcam.decoder import FcamDecoder, FcamError
from explorer.images import (
    GALLERY,
    GALLERY_PREFIX,
    ImageError,
    gallery_image,
    gallery_names,
    image_digest,
    load_image,
)
from explorer.methods import METHODS, MethodError, method_label
from explorer.pipeline import grid_maps, pixel_maps
from explorer.presets import (
    ERF_DIR,
    MANUAL_LABEL,
    PAPER_LABEL,
    PAPER_SIGMA,
    CardError,
    erf_card_path,
    fitted_sigma,
    sigma_presets,
)
from explorer.runtime import tune_allocator
from explorer.upsample import FCAM, UPSAMPLERS, UpsampleError

T = TypeVar("T")

tune_allocator()  # the app's server process: reuse freed activations instead of re-faulting them

logger = logging.getLogger(__name__)

USER_ERRORS = (ImageError, BackboneError, CaptureError, CheckpointError, MethodError, UpsampleError, CardError,
               FcamError)

DEFAULT_BACKBONE = "efficientnet_lite0"
DEFAULT_GALLERY = "chelsea"
UPLOAD_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "tiff", "tif"]
MAX_UPLOAD_MB = 25
WEIGHT_LABELS = {"pretrained": "pretrained (ImageNet)", "random": "RANDOM (untrained)"}
RANDOM_BADGE = "RANDOM (untrained) weights: a baseline, not an explanation."
RANDOM_WARNING = ("RANDOM (untrained) weights: this network has learnt nothing, so its predictions "
                  "and maps are a baseline to compare against, not an explanation.")
TOP1 = -1  # target option: "whatever the network predicts first", following image and backbone

RELU_LABELS = {
    "published": "published (per method)",
    "none": "none (signed maps)",
    "after": "after the channel sum",
    "before": "before the channel sum",
}
DEFAULT_METHODS = ("cam", "gradcam", "gradcampp", "extendedcam")
# Methods with more extra passes than this wait for an explicit click: Score-CAM's one forward per
# channel is minutes on a CPU for a 1280-channel layer.
SLOW_EXTRA_PASSES = 16

TILES_PER_LINE = 4

SIGMA_MIN, SIGMA_MAX, SIGMA_STEP = 1.0, 150.0, 0.5
SIGMA_SWEEP = np.arange(1.0, 80.0 + SIGMA_STEP, SIGMA_STEP)

_STATE = "cam."
_WIDGET = "cam.widget."

# Network work (forwards with hooks on a model shared by every session) runs one call at a time:
# hooks added by one session must never fire inside another session's forward pass.
_NETWORK_LOCK = threading.Lock()


# ------------------------------------------------------------------------------ errors

def attempt(doing: str, action: Callable[[], T]) -> T | None:
    """Run `action`; on failure show a friendly `st.error` and return None.

    `doing` completes "Something went wrong while ..." for errors nobody anticipated; those are
    logged with their traceback (never shown on screen).
    """
    try:
        return action()
    except USER_ERRORS as exc:
        st.error(str(exc))
    except Exception:
        logger.exception("Unexpected error while %s", doing)
        st.error(f"Something went wrong while {doing}; the details are in the server log. "
                 f"Try another choice.")
    return None


# ----------------------------------------------------------------- choices that persist

def remembered(name: str, default: T) -> T:
    """The last valid value of choice `name` (kept across pages), or `default`."""
    return st.session_state.setdefault(_STATE + name, default)


def remember(name: str, value: Any) -> None:
    st.session_state[_STATE + name] = value


def persistent(widget: Callable[..., T], label: str, name: str, default: T, *args: Any,
               coerce: Callable[[Any], T] = lambda value: value,
               on_change: Callable[[], None] | None = None, **kwargs: Any) -> T:
    """Render `widget(label, *args, **kwargs)` with its value remembered under `name`.

    Streamlit ties a widget's value to the page that rendered it (element ids include the page),
    so on another page a widget with the same key starts afresh. Hence the remembered value is the
    source of truth: it seeds the widget's key before every render (repaired by `coerce` when it
    is no longer valid, e.g. the options changed) and a change callback stores the user's new
    value before the rerun that follows. Seeding through session state instead of
    `value=`/`index=` means Streamlit never sees two competing defaults.
    """
    key = _WIDGET + name
    st.session_state[key] = coerce(remembered(name, default))
    value = widget(label, *args, key=key, on_change=_keep, args=(name, on_change), **kwargs)
    remember(name, value)
    return value


def _keep(name: str, then: Callable[[], None] | None) -> None:
    """Change callback: remember the widget's new value, then run the caller's own callback."""
    remember(name, st.session_state[_WIDGET + name])
    if then is not None:
        then()


def _one_of(options: Sequence[T], default: T | None) -> tuple[list[T], T]:
    choices = list(options)
    return choices, default if default in choices else choices[0]


def selectbox(label: str, name: str, options: Sequence[T], default: T | None = None, **kwargs: Any) -> T:
    """A persistent `st.selectbox`; a remembered value that is no longer offered becomes `default`."""
    choices, fallback = _one_of(options, default)
    return persistent(st.selectbox, label, name, fallback, choices,
                      coerce=lambda v: v if v in choices else fallback, **kwargs)


def radio(label: str, name: str, options: Sequence[T], default: T | None = None, **kwargs: Any) -> T:
    """A persistent `st.radio`."""
    choices, fallback = _one_of(options, default)
    return persistent(st.radio, label, name, fallback, choices,
                      coerce=lambda v: v if v in choices else fallback, **kwargs)


def multiselect(label: str, name: str, options: Sequence[T], default: Sequence[T], **kwargs: Any) -> list[T]:
    """A persistent `st.multiselect`; remembered values no longer offered are dropped."""
    choices = list(options)
    return persistent(st.multiselect, label, name, [d for d in default if d in choices], choices,
                      coerce=lambda v: [x for x in v if x in choices], **kwargs)


def toggle(label: str, name: str, default: bool, **kwargs: Any) -> bool:
    """A persistent `st.toggle`."""
    return persistent(st.toggle, label, name, default, coerce=bool, **kwargs)


def slider(label: str, name: str, low: T, high: T, default: T, **kwargs: Any) -> T:
    """A persistent `st.slider` whose remembered value is clamped into [low, high]."""
    kind = type(default)
    return persistent(st.slider, label, name, default, low, high,
                      coerce=lambda v: kind(min(max(v, low), high)), **kwargs)


def _set_widget(name: str, value: Any) -> None:
    """Set a persistent widget's value (before it renders in this run, or from a callback)."""
    remember(name, value)
    st.session_state[_WIDGET + name] = value


# ----------------------------------------------------------------------- cached loading

def load_cached_backbone(name: str, weights: str) -> Backbone:
    """The shared, cached backbone. Missing pretrained weights are reported before the (slow)
    architecture is built, so an unavailable choice costs nothing on every rerun."""
    if weights == "pretrained" and name in REGISTRY:
        REGISTRY[name].pretrained_file()
    return _load_backbone(name, weights)


@st.cache_resource(max_entries=3, show_spinner="Loading the network…")
def _load_backbone(name: str, weights: str) -> Backbone:
    """Shared by all sessions and never modified: callers only run forwards through it."""
    return load_backbone(name, weights)


@st.cache_data(max_entries=8, show_spinner=False)
def _decode_upload(digest: str, _data: bytes) -> Image.Image:
    """Uploaded bytes -> RGB image, keyed on the bytes' SHA-256 (ImageError is not cached)."""
    return load_image(_data)


@st.cache_data(max_entries=8, show_spinner=False)
def _layer_shapes(backbone_name: str, weights: str, _backbone: Backbone) -> dict[str, tuple[int, int, int]]:
    with _NETWORK_LOCK:
        return {layer: _backbone.layer_shape(layer) for layer in _backbone.layers}


@st.cache_data(max_entries=32, show_spinner="Classifying the image…")
def _top5(image_key: str, backbone_name: str, weights: str, _backbone: Backbone,
          _image: Image.Image) -> list[tuple[int, str, float]]:
    with _NETWORK_LOCK:
        return _backbone.top_k(_backbone.preprocess(_image), 5)[0]


# --------------------------------------------------------------------------- the sidebar

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
        return _decode_upload(self.key, self.data)


DEFAULT_IMAGE = ImageChoice(GALLERY_PREFIX + DEFAULT_GALLERY, DEFAULT_GALLERY)


@dataclass(frozen=True)
class Selection:
    """Everything the sidebar decided, as every page reads it."""

    image_choice: ImageChoice
    image: Image.Image  # as decoded: upright RGB at its own size
    seen: Image.Image  # as the network sees it (squashed to its input size)
    backbone: Backbone
    layer: str
    layer_shape: tuple[int, int, int]  # (channels, h, w)
    target: int
    predictions: list[tuple[int, str, float]]  # top-5 (index, name, probability)

    @property
    def target_name(self) -> str:
        return self.backbone.class_names[self.target]

    @property
    def size(self) -> tuple[int, int]:
        return self.backbone.input_size


def sidebar() -> Selection:
    """The shared sidebar every page calls first; returns the current (valid) choices."""
    with st.sidebar:
        st.header("Image and network")
        selection = attempt("reading your choices", _choose)
    if selection is None:
        st.stop()
    return selection


def _choose() -> Selection:
    choice, image = _choose_image()
    backbone = _choose_backbone()
    shapes = _layer_shapes(backbone.name, backbone.weights, backbone)
    layer = _choose_layer(backbone, shapes)
    predictions = _top5(choice.key, backbone.name, backbone.weights, backbone, image)
    target = _choose_target(backbone, predictions)
    return Selection(choice, image, backbone.resize(image), backbone, layer, shapes[layer], target, predictions)


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
                              key=_WIDGET + "upload", help=f"PNG, JPEG, WebP, BMP or TIFF, at most {MAX_UPLOAD_MB} MB.")
    if upload is None:
        current = remembered("image", DEFAULT_IMAGE)
        st.caption(f"Showing **{current.label}** until you upload a file.")
        return None
    data = upload.getvalue()
    return ImageChoice(image_digest(data), upload.name, data)


def _choose_backbone() -> Backbone:
    """The asked backbone when it loads; otherwise its error and the last backbone that loaded."""
    name = selectbox("Backbone", "backbone", backbone_names(), DEFAULT_BACKBONE)
    weights = radio("Weights", "weights", tuple(WEIGHT_LABELS), horizontal=True, format_func=WEIGHT_LABELS.get)
    previous = remembered("active_backbone", (DEFAULT_BACKBONE, "pretrained"))
    try:
        backbone = load_cached_backbone(name, weights)
    except USER_ERRORS as exc:
        st.error(str(exc))
        st.caption(f"Still showing **{previous[0]}** with {WEIGHT_LABELS[previous[1]]} weights.")
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
                            "or type to search all ImageNet classes.")
    return top[0] if choice == TOP1 else choice


def context_banner(state: Selection) -> None:
    """One line naming what every map on the page explains, plus the RANDOM warning."""
    backbone = state.backbone
    st.markdown(f"Image **{state.image_choice.label}** · `{backbone.name}` with {backbone.weights_label} · "
                f"layer `{state.layer}` ({shape_text(state.layer_shape)}) · "
                f"target **{state.target_name}** (class {state.target})")
    if backbone.is_random:
        st.warning(RANDOM_WARNING)


# ------------------------------------------------------------------------------- methods

def method_name(method: str) -> str:
    return METHODS[method].label


def cam_unavailable_reason(state: Selection) -> str | None:
    """Why plain CAM cannot run here (it reads the final linear layer), or None when it can."""
    backbone = state.backbone
    if not backbone.has_gap_linear_head:
        return (f"Plain CAM needs a global-average-pooling + linear head; {backbone.name} has none. "
                f"Use Grad-CAM or Extended-CAM instead.")
    if state.layer != backbone.cam_layer:
        return (f"Plain CAM reads the final linear layer, so it only applies to layer "
                f"'{backbone.cam_layer}' of {backbone.name}, not '{state.layer}'.")
    return None


def available_methods(state: Selection) -> list[str]:
    unavailable = cam_unavailable_reason(state) is not None
    return [m for m in METHODS if not (m == "cam" and unavailable)]


def method_cost(state: Selection, method: str) -> str:
    return METHODS[method].describe_cost(state.layer_shape[0])


def is_slow(state: Selection, method: str) -> bool:
    return METHODS[method].extra_passes(state.layer_shape[0], {}) > SLOW_EXTRA_PASSES


def cost_notes(state: Selection, methods: Sequence[str]) -> list[str]:
    """What the affordable extra-pass methods (Smooth Grad-CAM++) add to the shared capture."""
    return [f"{method_name(m)}: {method_cost(state, m)}." for m in methods
            if METHODS[m].extra_passes(state.layer_shape[0], {}) and not is_slow(state, m)]


def _approval_key(state: Selection, method: str, relu: str) -> str:
    return "|".join(map(str, (state.image_choice.key, state.backbone.name, state.backbone.weights,
                              state.layer, state.target, method, relu)))


def approve_slow_methods(state: Selection, methods: Sequence[str], relu: str) -> list[str]:
    """The methods to compute now: every cheap one, and each slow one the user has asked for
    (by a click on its button) for exactly these inputs; a warning and a button for the rest."""
    approved: set[str] = remembered("approved_slow", set())
    runnable = []
    for method in methods:
        key = _approval_key(state, method, relu)
        if is_slow(state, method) and key not in approved:
            device = "a CPU" if state.backbone.device.type == "cpu" else "a GPU"
            st.warning(f"{method_name(method)} needs {method_cost(state, method)} "
                       f"(this can take minutes on {device}); it runs when you ask.")
            if not st.button(f"Compute {method_name(method)}", key=f"compute.{method}"):
                continue
            approved.add(key)
        runnable.append(method)
    return runnable


# ------------------------------------------------------------------------------ grid maps

@dataclass(frozen=True)
class GridResult:
    """Raw grid-level maps (numpy, after the ReLU policy) with what they took to compute.

    `seconds` holds "capture" (the forward + gradient shared by the gradient methods), one entry
    per method, and "capture:<method>" for a slow method computed on its own.
    """

    key: str  # identifies the inputs: derived caches (the sigma curve) key on it
    maps: dict[str, np.ndarray]  # method -> h x w
    relu: dict[str, str]  # method -> ReLU policy applied
    seconds: dict[str, float]
    fcam: dict[str, np.ndarray] = field(default_factory=dict)  # base method -> H x W F-CAM (from the same forward)

    def label(self, method: str) -> str:
        return method_label(method, self.relu[method])


def grid(state: Selection, methods: Sequence[str], relu: str) -> GridResult:
    """Grid maps of `methods`: the cheap ones from one shared capture, each slow one alone, so
    adding or removing a cheap method never recomputes a slow one. The F-CAM decoders trained
    from the cheap methods run on that same capture's features."""
    slow = [m for m in methods if is_slow(state, m)]
    fast = [m for m in methods if m not in slow]
    chosen = active_decoders(state)
    parts = []
    if fast:
        decoders = {m: chosen[m] for m in fast if m in chosen}
        parts.append(_grid(*_grid_key(state, fast, relu), _decoder_key(decoders), _backbone=state.backbone,
                           _image=state.image, _decoders=decoders))
    for method in slow:
        decoders = {method: chosen[method]} if method in chosen else {}
        part = _grid(*_grid_key(state, [method], relu), _decoder_key(decoders), _backbone=state.backbone,
                     _image=state.image, _decoders=decoders)
        seconds = {(f"capture:{method}" if stage == "capture" else stage): s for stage, s in part.seconds.items()}
        parts.append(replace(part, seconds=seconds))
    return _merge(parts, methods)


def _grid_key(state: Selection, methods: Sequence[str], relu: str) -> tuple:
    return (state.image_choice.key, state.backbone.name, state.backbone.weights, state.layer,
            state.target, tuple(methods), relu)


def _decoder_key(decoders: dict[str, "DecoderChoice"]) -> tuple:
    return tuple(sorted((m, d.path, d.stamp) for m, d in decoders.items()))


@st.cache_data(max_entries=24, show_spinner="Computing class activation maps…")
def _grid(image_key: str, backbone_name: str, weights: str, layer: str, target: int,
          methods: tuple[str, ...], relu: str, decoder_key: tuple = (), *, _backbone: Backbone,
          _image: Image.Image, _decoders: dict | None = None) -> GridResult:
    decoders = {m: load_cached_decoder(choice, _backbone) for m, choice in (_decoders or {}).items()}
    with _NETWORK_LOCK:
        batch = _backbone.preprocess(_image)
        result = grid_maps(_backbone, batch, [target], methods, layer, relu=relu, decoders=decoders)
    key = hashlib.sha256(repr((image_key, backbone_name, weights, layer, target, methods, relu,
                               decoder_key)).encode()).hexdigest()
    return GridResult(key, {m: result.maps[m][0].cpu().numpy() for m in methods}, dict(result.relu),
                      dict(result.seconds), {m: f[0].cpu().numpy() for m, f in result.fcam.items()})


def _merge(parts: list[GridResult], order: Sequence[str]) -> GridResult:
    if len(parts) == 1:
        return parts[0]
    maps = {k: v for part in parts for k, v in part.maps.items()}
    relu = {k: v for part in parts for k, v in part.relu.items()}
    seconds = {k: v for part in parts for k, v in part.seconds.items()}
    fcam = {k: v for part in parts for k, v in part.fcam.items()}
    key = hashlib.sha256("+".join(part.key for part in parts).encode()).hexdigest()
    return GridResult(key, {m: maps[m] for m in order}, {m: relu[m] for m in order}, seconds, fcam)


def timing_rows(result: GridResult, state: Selection) -> list[dict[str, Any]]:
    """The computation's stages as table rows: the shared capture, then each method."""
    rows = []
    for stage, seconds in result.seconds.items():
        if stage == "capture":
            what = "shared capture: one forward + one gradient for all gradient methods"
        elif stage.startswith("fcam:"):
            what = f"F-CAM decoder trained from {method_name(stage.split(':', 1)[1])}: decodes the capture's features"
        elif stage.startswith("capture:"):
            what = f"{method_name(stage.split(':', 1)[1])}: its own forward"
        else:
            what = f"{result.label(stage)}: {method_cost(state, stage)}"
        rows.append({"stage": what, "milliseconds": round(1000 * seconds, 1)})
    rows.append({"stage": "total", "milliseconds": round(1000 * sum(result.seconds.values()), 1)})
    return rows


def histograms(result: GridResult) -> dict[str, views.Histogram]:
    """Pre-binned raw grid values per method (about two cells per bin, 10 to 60 bins)."""
    return {result.label(m): views.histogram(values, bins=int(np.clip(values.size // 2, 10, 60)))
            for m, values in result.maps.items()}


# ---------------------------------------------------------------------------- pixel maps

def pixel_table(result: GridResult, size: tuple[int, int], upsamplers: Sequence[str],
                sigma: tuple[float, float], normaliser: str) -> dict[tuple[str, str], np.ndarray]:
    """(method, upsampler) -> H x W normalised map: the cheap half of the pipeline, all that a
    sigma, upsampler or normaliser change reruns."""
    methods = list(result.maps)
    stacked = torch.from_numpy(np.stack([result.maps[m] for m in methods]))
    table = {}
    for up in upsamplers:
        if up == FCAM:  # the decoder's probability as it is; only for methods a decoder was trained from
            for m in methods:
                if m in result.fcam:
                    table[(m, up)] = pixel_map(result, m, size, up, sigma, normaliser)
            continue
        maps = pixel_maps(stacked, size, up, sigma, normaliser).numpy()
        table.update({(m, up): maps[i] for i, m in enumerate(methods)})
    return table


def pixel_map(result: GridResult, method: str, size: tuple[int, int], upsampler: str,
              sigma: tuple[float, float] | None, normaliser: str) -> np.ndarray:
    grid_map = torch.from_numpy(result.maps[method])[None]
    fcam = torch.from_numpy(result.fcam[method])[None] if upsampler == FCAM and method in result.fcam else None
    return pixel_maps(grid_map, size, upsampler, sigma, normaliser, fcam)[0].numpy()


def scale_text(scale: views.ColourScale) -> str:
    if scale.signed:
        return f"diverging ±{scale.hi:.3g}"
    return f"{scale.lo:.3g} to {scale.hi:.3g}"


def upsampler_label(upsampler: str, sigma: tuple[float, float]) -> str:
    if upsampler == "gaussian":
        return f"gaussian σ=({sigma[0]:.4g}, {sigma[1]:.4g})"
    if upsampler == FCAM:
        return "F-CAM decoder"
    return upsampler


def show_overlay_grid(seen: Image.Image, table: dict[tuple[str, str], np.ndarray], row_labels: dict[str, str],
                      col_labels: dict[str, str], shared_scale: bool) -> None:
    """One bordered block per method (a row of its upsamplers), blocks packed so each line holds
    about four tiles: a fixed four-column grid would leave half the page empty with two upsamplers.
    Each tile is an overlay PNG captioned with its upsampler and colour range."""
    methods = list(dict.fromkeys(m for m, _ in table))
    upsamplers = [u for u in col_labels if any(key[1] == u for key in table)]
    if not upsamplers:
        st.info("Nothing to show: no decoder was trained from the chosen methods (the F-CAM Decoder page "
                "lists the decoders and can fit one).")
        return
    blocks_per_line = max(1, TILES_PER_LINE // len(upsamplers))
    common = views.colour_scale(*table.values()) if shared_scale else None
    base = np.asarray(seen)
    for start in range(0, len(methods), blocks_per_line):
        line = methods[start:start + blocks_per_line]
        for block, method in zip(st.columns(blocks_per_line), line):
            with block.container(border=True):
                st.markdown(f"**{row_labels[method]}**")
                for column, up in zip(st.columns(len(upsamplers)), upsamplers):
                    if (method, up) not in table:
                        column.image(views.jpeg_bytes((base * 0.25).astype(np.uint8)), width="stretch",
                                     caption=f"{col_labels[up]}: no decoder trained from {method_name(method)}")
                        continue
                    scale = common or views.colour_scale(table[(method, up)])
                    column.image(views.jpeg_bytes(views.overlay(base, table[(method, up)], scale)),
                                 width="stretch", caption=f"{col_labels[up]} · {scale_text(scale)}")


def sheet_png(seen: Image.Image, table: dict[tuple[str, str], np.ndarray], row_labels: dict[str, str],
              col_labels: dict[str, str], shared_scale: bool, title: str) -> Callable[[], bytes]:
    """The comparison sheet as PNG bytes, made only when a download button is clicked."""
    return functools.partial(_sheet_bytes, seen, table, row_labels, col_labels, shared_scale, title)


def _sheet_bytes(seen: Image.Image, table: dict[tuple[str, str], np.ndarray], row_labels: dict[str, str],
                 col_labels: dict[str, str], shared_scale: bool, title: str) -> bytes:
    return views.png_bytes(views.comparison_sheet(seen, table, row_labels, col_labels, shared_scale, title))


def grid_npy(result: GridResult) -> Callable[[], bytes]:
    """The raw grid maps as one .npy (rows in the order of `result.maps`), made on click."""
    return functools.partial(views.npy_bytes, dict(result.maps))


# --------------------------------------------------------------------------------- sigma

def presets(state: Selection) -> dict[str, tuple[float, float] | None]:
    """Sigma presets for this backbone/layer; a damaged ERF card is reported and skipped."""
    try:
        return sigma_presets(state.backbone.name, state.layer, weights=state.backbone.weights)
    except CardError as exc:
        st.warning(str(exc))
        return {PAPER_LABEL: PAPER_SIGMA, MANUAL_LABEL: None}


def _to_manual() -> None:
    remember("sigma_preset", MANUAL_LABEL)


def use_sigma(sigma: float) -> None:
    """Callback: make `sigma` (both axes) the shared manual sigma."""
    _to_manual()
    _set_widget("sigma_x", float(sigma))
    _set_widget("sigma_y", float(sigma))


def sigma_controls(state: Selection, *, with_presets: bool) -> tuple[float, float]:
    """The shared Gaussian sigma (pixels, per axis), the same on every page.

    With `with_presets` a preset select leads and the sliders only move under "manual"; without
    it (the Smoothing Lab) the sliders are always live and moving one switches to "manual".
    """
    options = presets(state)
    labels = list(options)
    widths = [3.5, 1.6, 2, 2] if with_presets else [1.6, 2, 2]
    columns = st.columns(widths, vertical_alignment="bottom")
    if with_presets:
        with columns[0]:
            preset = selectbox("Gaussian σ preset", "sigma_preset", labels, labels[0],
                               help="A fitted effective receptive field of this layer when one is stored, "
                                    "the Extended-CAM paper's VGG16 values, or your own.")
        columns = columns[1:]
    else:
        preset = remembered("sigma_preset", labels[0])
        preset = preset if preset in labels else labels[0]
        if options[preset] is not None:
            st.caption(f"σ comes from the Compare page's preset '{preset}'; moving a slider switches to manual.")
    fixed = options[preset]
    if fixed is not None:
        for name, value in zip(("sigma_x", "sigma_y"), fixed):
            _set_widget(name, float(np.clip(value, SIGMA_MIN, SIGMA_MAX)))
    locked = with_presets and fixed is not None
    on_change = None if with_presets else _to_manual
    with columns[0]:
        linked = toggle("Link x and y", "sigma_linked", True)
    default = float(np.clip((fixed or PAPER_SIGMA)[0], SIGMA_MIN, SIGMA_MAX))
    with columns[1]:
        sigma_x = slider("σx (pixels)", "sigma_x", SIGMA_MIN, SIGMA_MAX, default, step=SIGMA_STEP,
                         disabled=locked, on_change=on_change)
    if linked and fixed is None:
        _set_widget("sigma_y", sigma_x)
    with columns[2]:
        sigma_y = slider("σy (pixels)", "sigma_y", SIGMA_MIN, SIGMA_MAX, default, step=SIGMA_STEP,
                         disabled=locked or linked, on_change=on_change)
    return fixed if fixed is not None else (sigma_x, sigma_y)


@dataclass(frozen=True)
class SigmaCurve:
    """Pearson r between two maps at each sigma of a sweep, and where it peaks."""

    sigmas: np.ndarray
    correlations: np.ndarray

    @property
    def best(self) -> float:
        return float(self.sigmas[int(np.argmax(self.correlations))])

    @property
    def best_correlation(self) -> float:
        return float(np.max(self.correlations))


def sigma_correlation(result: GridResult, size: tuple[int, int]) -> SigmaCurve:
    """r between Extended-CAM Gaussian-upsampled at each sigma of SIGMA_SWEEP (both axes) and
    Grad-CAM bilinear-upsampled: upsampling only, from the cached grid maps."""
    return _sigma_curve(result.key, tuple(size), _explicit=result.maps["extendedcam"],
                        _implicit=result.maps["gradcam"])


@st.cache_data(max_entries=16, show_spinner=False)
def _sigma_curve(result_key: str, size: tuple[int, int], *, _explicit: np.ndarray,
                 _implicit: np.ndarray) -> SigmaCurve:
    implicit = pixel_maps(torch.from_numpy(_implicit)[None], size, "bilinear", None, "minmax")[0].numpy()
    explicit = torch.from_numpy(_explicit)[None]
    correlations = [views.pearson(pixel_maps(explicit, size, "gaussian", (s, s), "minmax")[0].numpy(), implicit)
                    for s in SIGMA_SWEEP]
    return SigmaCurve(SIGMA_SWEEP.copy(), np.asarray(correlations))


# ------------------------------------------------------------- effective receptive field

# The Receptive Field page. An estimate runs as a *job* kept in this session's state: its running
# sum, count, per-image snapshots and its batch iterator live on one plain object that the loop
# updates after each batch. A click while the loop runs (Stop, or anything else) makes Streamlit
# 1.67 start the next run at once on a new script thread and ask the old one to stop at its next
# `st.*` call; the old thread may still be inside a batch. Hence each job has a lock, held by a
# loop for one batch (take it from the iterator, compute, commit), and an owner: the new run's
# callbacks and reads wait for that batch to be committed, and a run that starts the loop takes
# ownership, so the old thread stops at its next batch. Nothing accumulated is lost or counted
# twice, and the iterator is never used by two threads. Stop marks the job stopped; any other
# click lets the next run carry on where the loop was.

ERF_BATCH = 8  # a power of two, so the snapshots at 1, 2, 4, 8, 16, ... images are exact
ERF_IMAGES = (4, 256, 32)  # slider: min, max, default
ERF_SOURCES = {"noise": "Gaussian noise", "gallery": "sample-gallery crops", "folder": "a folder on the server"}
ERF_MODE_LABELS = {"abs": "abs |g| (Luo et al.)", "relu": "relu max(g, 0)", "square": "square g²",
                   "signed": "signed g"}
ERF_REDRAW_S = 1.5  # the running-mean picture is redrawn at most this often while estimating
R2_GOOD, R2_ROUGH = 0.95, 0.80
_ERF_JOBS = "erf.jobs"
_ERF_MAX_JOBS = 6


def checkbox(label: str, name: str, default: bool, **kwargs: Any) -> bool:
    """A persistent `st.checkbox`."""
    return persistent(st.checkbox, label, name, default, coerce=bool, **kwargs)


def text_input(label: str, name: str, default: str = "", **kwargs: Any) -> str:
    """A persistent `st.text_input`."""
    return persistent(st.text_input, label, name, default, coerce=lambda v: "" if v is None else str(v), **kwargs)


def number_input(label: str, name: str, low: int, high: int, default: int, **kwargs: Any) -> int:
    """A persistent integer `st.number_input`, clamped into [low, high]."""
    return persistent(st.number_input, label, name, default, low, high, step=1,
                      coerce=lambda v: int(min(max(int(v if v is not None else default), low), high)), **kwargs)


@dataclass(frozen=True)
class ErfSettings:
    """What one ERF estimate is made of; `key` (strings only) names it in every cache."""

    backbone: str
    weights: str
    layer: str
    mode: str
    source: str  # "noise", "gallery" or "folder:<absolute path>"
    n: int
    seed: int = 0

    @property
    def key(self) -> str:
        return "|".join(map(str, (self.backbone, self.weights, self.layer, self.mode, self.source, self.n, self.seed)))

    @property
    def layer_key(self) -> str:
        return "|".join((self.backbone, self.weights, self.layer))

    def describe(self) -> str:
        if self.source.startswith("folder:"):
            return f"{self.n} images from the folder {self.source[len('folder:'):]}, mode {self.mode}, seed {self.seed}"
        return f"{self.n} {self.source} images, mode {self.mode}, seed {self.seed}"


def folder_problem(path: str) -> str | None:
    """A quick check of a folder path typed by the user (the full check, that its files are
    images, runs when the estimate starts); None when it looks usable."""
    if not path.strip():
        return "Type the path of a folder of photos on the server (for example /data/photos)."
    folder = Path(path.strip()).expanduser()
    if not folder.exists():
        return f"The folder '{folder}' does not exist on the server."
    if not folder.is_dir():
        return f"'{folder}' is a file, not a folder: give the folder that holds the photos."
    try:
        has_file = any(p.is_file() and not p.name.startswith(".") for p in folder.iterdir())
    except OSError as exc:
        return f"The folder '{folder}' cannot be read ({exc.strerror or exc})."
    if not has_file:
        return f"The folder '{folder}' holds no files: put some photos (PNG, JPEG, ...) in it."
    return None


def folder_source(path: str) -> str:
    return "folder:" + str(Path(path.strip()).expanduser().resolve())


class ErfJob:
    """One estimate in progress or done: a running float64 sum and count, exact running-mean
    snapshots at 1, 2, 4, ... images, and the iterator that continues where it stopped."""

    def __init__(self, settings: ErfSettings) -> None:
        self.settings = settings
        self.uid = f"{settings.key}@{time.monotonic_ns()}"
        self.status = "running"  # running | stopped | done | failed
        self.error: str | None = None
        self.note = ""
        self.total = settings.n
        self.done = 0
        self.sum: np.ndarray | None = None
        self.snapshots: list[tuple[int, np.ndarray]] = []
        self.seconds = 0.0
        self.stops = 0  # how often it was stopped and continued
        self.iterator: Iterator[torch.Tensor] | None = None
        self.meta: dict[str, Any] = {}
        self.result: ErfEstimate | None = None
        # Held for one batch by the loop, and by anyone reading or changing the job's state.
        # Re-entrant: a callback may run inside the loop's thread (AppTest does that).
        self.lock = threading.RLock()
        self.owner: object | None = None  # the run whose loop may advance the job

    @property
    def running(self) -> bool:
        return self.status == "running"

    def commit(self, part: ErfEstimate, seconds: float) -> None:
        """Add one batch's estimate (its own mean and snapshots) to the running totals."""
        if not self.meta:
            self.meta = {"input_size": part.input_size, "grid": part.grid, "centre_cell": part.centre_cell,
                         "centre_px": part.centre_px, "layer": part.layer}
        total, done, snapshots = merge_estimate(self.sum, self.done, self.snapshots, part)
        # One batch, committed together: sum, count and snapshots never disagree.
        self.snapshots, self.sum, self.done, self.seconds = snapshots, total, done, self.seconds + seconds

    def estimate(self) -> ErfEstimate | None:
        """What has been accumulated so far as an ErfEstimate (None before the first batch);
        waits for a batch in flight to be committed."""
        with self.lock:
            return self._estimate()

    def _estimate(self) -> ErfEstimate | None:
        if self.result is not None:
            return self.result
        if not self.done or self.sum is None:
            return None
        s = self.settings
        final = self.sum / self.done
        snapshots = list(self.snapshots)
        if not snapshots or snapshots[-1][0] != self.done:
            snapshots.append((self.done, final))
        estimate = ErfEstimate(
            map=final, n_images=self.done, mode=s.mode, layer=self.meta["layer"], backbone=s.backbone,
            weights=s.weights, input_size=self.meta["input_size"], grid=self.meta["grid"],
            centre_cell=self.meta["centre_cell"], centre_px=self.meta["centre_px"],
            interrupted=self.done < self.total, source=s.source, n_planned=self.total, seconds=self.seconds,
            snapshots=snapshots)
        if self.status == "done":
            self.result = estimate
        return estimate

    @property
    def key(self) -> str:
        """Cache key of what has been accumulated: the settings and the image count."""
        return f"{self.settings.key}|{self.done}"


def _erf_jobs() -> "dict[str, ErfJob]":
    return st.session_state.setdefault(_ERF_JOBS, {})


@st.cache_resource(show_spinner=False)
def _erf_store() -> "tuple[threading.Lock, dict[str, ErfEstimate]]":
    """Finished estimates shared by every session, keyed on ErfSettings.key (strings only);
    entries are never modified after they are stored."""
    return threading.Lock(), {}


def _stored_estimate(key: str) -> ErfEstimate | None:
    lock, store = _erf_store()
    with lock:
        return store.get(key)


def _store_estimate(key: str, estimate: ErfEstimate, max_entries: int = 8) -> None:
    lock, store = _erf_store()
    with lock:
        store.pop(key, None)
        store[key] = estimate
        while len(store) > max_entries:
            store.pop(next(iter(store)))


def erf_job(backbone: Backbone, layer: str) -> ErfJob | None:
    """The latest estimate for this backbone, weights and layer; a running estimate of another
    layer is paused (marked stopped, its images kept), as only the shown layer runs."""
    jobs = _erf_jobs()
    here = "|".join((backbone.name, backbone.weights, layer))
    for key, job in jobs.items():
        if key != here and job.running:
            with job.lock:
                job.status, job.owner = "stopped", None
                job.note = "paused when the sidebar's layer changed"
    return jobs.get(here)


def start_erf(settings: ErfSettings) -> None:
    """Callback of "Estimate": a fresh job (finished at once when another session or an earlier
    run already computed exactly these settings)."""
    jobs = _erf_jobs()
    job = ErfJob(settings)
    cached = _stored_estimate(settings.key)
    if cached is not None:
        job.status, job.result, job.done = "done", cached, cached.n_images
        job.note = "reused: these settings were estimated before"
    jobs.pop(settings.layer_key, None)
    jobs[settings.layer_key] = job
    while len(jobs) > _ERF_MAX_JOBS:
        jobs.pop(next(iter(jobs)))


def _find_job(uid: str) -> ErfJob | None:
    return next((job for job in _erf_jobs().values() if job.uid == uid), None)


def stop_erf(uid: str) -> None:
    """Callback of "Stop": keep what was accumulated, mark the job stopped."""
    job = _find_job(uid)
    if job is None:
        return
    with job.lock:  # after the batch in flight (if any) is committed
        if job.running:
            job.status, job.owner, job.note = "stopped", None, ""


def continue_erf(uid: str) -> None:
    """Callback of "Continue": resume a stopped job where it stopped."""
    job = _find_job(uid)
    if job is None:
        return
    with job.lock:
        if job.status == "stopped" and job.done < job.total:
            job.status, job.note = "running", ""
            job.stops += 1


def _erf_source(backbone: Backbone, settings: ErfSettings):
    s = settings
    if s.source == "noise":
        return noise_batches(s.n, ERF_BATCH, backbone.input_size, s.seed)
    if s.source == "gallery":
        return gallery_batches(backbone, s.n, ERF_BATCH, s.seed)
    if s.source.startswith("folder:"):
        return folder_batches(backbone, s.source[len("folder:"):], s.n, ERF_BATCH, s.seed)
    raise ErfError(f"Unknown image source '{s.source}'.")


def _job_iterator(backbone: Backbone, job: ErfJob) -> Iterator[torch.Tensor]:
    """The job's batch iterator; rebuilt (skipping the batches already used) when it was lost."""
    if job.iterator is None:
        source = _erf_source(backbone, job.settings)
        job.note = source.note
        job.iterator = itertools.islice(iter(source), job.done // ERF_BATCH, None)
    return job.iterator


def run_erf_job(backbone: Backbone, job: ErfJob) -> None:
    """Run `job` to its end here, drawing a progress bar, a Stop button and the running mean.

    Each batch is taken, computed and committed under the job's lock with no `st.*` call in
    between (the only places Streamlit stops a script), so a Stop (or any other click) loses
    nothing (the comment that opens this section says which threads are involved). Errors end the job as
    failed, with what was accumulated kept."""
    s = job.settings
    token = object()
    with job.lock:  # waits for an older run's batch in flight, then this run owns the job
        job.owner = token
    box = st.empty()
    with box.container(border=True):
        st.markdown(f"**Estimating the ERF** of `{s.backbone}` / `{s.layer}` from {s.describe()}"
                    + (f" — continuing from {job.done} images" if job.done else ""))
        bar = st.progress(job.done / job.total, text=_progress_text(job))
        st.button("Stop", key="erf.stop", icon=":material/stop_circle:", on_click=stop_erf, args=(job.uid,),
                  help="Stop after the batch in flight; the images averaged so far are kept and you can continue.")
        live = st.empty()
    last_draw = 0.0
    try:
        while True:
            with job.lock:  # one batch: no st.* call in here, so Streamlit cannot stop it halfway
                if job.owner is not token or not job.running or job.done >= job.total:
                    break
                start = time.perf_counter()
                batch = next(_job_iterator(backbone, job), None)
                if batch is None:
                    break
                with _NETWORK_LOCK:
                    part = estimate_erf(backbone, s.layer, batch, mode=s.mode, batch_size=ERF_BATCH)
                job.commit(part, time.perf_counter() - start)
                done, mean = job.done, job.sum / job.done
            # Streamlit may stop this run from here on (a click): the batch is already in the job.
            bar.progress(done / job.total, text=_progress_text(job))
            if time.monotonic() - last_draw >= ERF_REDRAW_S or done >= job.total:
                last_draw = time.monotonic()
                live.image(views.erf_image(mean), width=300, output_format="PNG",
                           caption=f"running mean after {done} images")
    except (ErfError, ImageError) as exc:
        with job.lock:
            job.status, job.error, job.iterator = "failed", str(exc), None
    except Exception:
        logger.exception("Unexpected error while estimating the ERF")
        with job.lock:
            job.status, job.iterator = "failed", None
            job.error = "Something went wrong while estimating the ERF; the details are in the server log."
    else:
        with job.lock:
            if job.owner is token and job.running:  # all images done (or the source ran out)
                job.status, job.iterator, job.owner, job.total = "done", None, None, job.done
                estimate = job._estimate()
                if estimate is not None:
                    _store_estimate(s.key, estimate)
    box.empty()  # finished or failed: what follows on the page says so


def _progress_text(job: ErfJob) -> str:
    rate = f" · {job.done / job.seconds:.1f} images/s" if job.seconds > 0 else ""
    return f"{job.done} / {job.total} images{rate}"


# ------------------------------------------------------------------- ERF fits (cached)

def erf_fit(job: ErfJob, offset: bool, rotation: bool) -> ErfFit:
    """The 2D Gaussian fit of what the job has accumulated (ErfFitError when it fails)."""
    estimate = job.estimate()
    return _erf_fit(job.key, offset, rotation, _map=estimate.map)


@st.cache_data(max_entries=32, show_spinner="Fitting a 2D Gaussian…")
def _erf_fit(key: str, offset: bool, rotation: bool, *, _map: np.ndarray) -> ErfFit:
    return fit_erf(_map, offset=offset, rotation=rotation)


def erf_convergence(job: ErfJob, offset: bool, rotation: bool) -> list[dict[str, Any]]:
    """R² and sigma after 1, 2, 4, ... images (explorer.erf.convergence), cached on the key."""
    return _erf_convergence(job.key, offset, rotation, _estimate=job.estimate())


@st.cache_data(max_entries=16, show_spinner="Fitting the running means…")
def _erf_convergence(key: str, offset: bool, rotation: bool, *, _estimate: ErfEstimate) -> list[dict[str, Any]]:
    return convergence(_estimate, offset=offset, rotation=rotation)


def erf_alternative_fit(job: ErfJob, offset: bool, rotation: bool) -> ErfFit | None:
    """The fit with the offset option flipped (to tell a peak on a floor apart); None if it fails."""
    try:
        return erf_fit(job, not offset, rotation)
    except ErfFitError:
        return None


# ------------------------------------------------------------------- what the numbers mean

def r2_verdict(r2: float) -> tuple[str, str]:
    """(level, headline) for a fit's R²: level is "good", "rough" or "poor"."""
    share = f"{max(r2, 0.0):.0%}"
    if r2 >= R2_GOOD:
        return "good", f"Well described by one Gaussian (R² = {r2:.3f} ≥ {R2_GOOD})."
    if r2 >= R2_ROUGH:
        return "rough", (f"Roughly Gaussian (R² = {r2:.3f}, between {R2_ROUGH} and {R2_GOOD}): one Gaussian "
                         f"captures {share} of the map's variation.")
    return "poor", (f"Not one Gaussian (R² = {r2:.3f} < {R2_ROUGH}): the fitted Gaussian explains only "
                    f"{share} of the map's variation.")


def _sig(fit: ErfFit) -> str:
    return f"({fit.sigma_x:.1f}, {fit.sigma_y:.1f}) px"


def erf_meaning(fit: ErfFit, alternative: ErfFit | None, erf_map: np.ndarray) -> str:
    """What this fit means for Gaussian upsampling, worded from its numbers (R², sigma, and the
    fit with the offset option flipped: a constant floor under a narrower peak)."""
    level, headline = r2_verdict(fit.r2)
    with_floor, plain = (fit, alternative) if fit.offset is not None else (alternative, fit)
    floor = _floor_share(with_floor, erf_map) if with_floor is not None else None
    peak_on_floor = (with_floor is not None and plain is not None and floor is not None and floor >= 0.1
                     and with_floor.r2 - plain.r2 >= 0.05
                     and max(with_floor.sigma_x, with_floor.sigma_y) < 0.8 * min(plain.sigma_x, plain.sigma_y))
    lines = [f"**{headline}**"]
    if level == "good":
        lines.append(f"Gaussian upsampling with σ = {_sig(fit)} spreads each grid cell over the pixels the way "
                     f"this layer's centre unit actually looks at them; that is the premise of Extended-CAM "
                     f"(its VGG16 conv5_3: R² 0.9905, σ 31.78 / 33.36 px).")
    elif level == "rough":
        lines.append(f"σ = {_sig(fit)} is a usable summary, but the shape departs from a Gaussian: the residual "
                     f"shows where (a floor, a flat or square core, a tilt). Gaussian-upsampled maps of this layer "
                     f"are an approximation of what the layer sees.")
    else:
        lines.append("One σ cannot describe this map, so Gaussian upsampling with the fitted σ misrepresents how "
                     "a cell of this layer spreads over the pixels; look at the residual and the profiles.")
    if peak_on_floor and level != "good":
        lines.append(
            f"The map is a sharp peak on a broad floor: fitted with a constant floor, the peak has σ = "
            f"{_sig(with_floor)} (R² {with_floor.r2:.2f}) and the floor carries {floor:.0%} of the map's total; "
            f"without it one Gaussian needs σ = {_sig(plain)} (R² {plain.r2:.2f}). A Gaussian upsampler can only "
            f"be one of them: with the wide σ it over-smooths the peak (every cell's value is smeared far beyond "
            f"where its gradient concentrates); with the peak's σ it ignores the floor (the weak influence every "
            f"cell has on the whole image). Compare both σ on the Compare page before trusting either.")
    return "\n\n".join(lines)


def _floor_share(fit: ErfFit, erf_map: np.ndarray) -> float | None:
    total = float(np.asarray(erf_map).sum())
    if fit.offset is None or not fit.offset > 0 or not total > 0:
        return None
    return float(fit.offset) * erf_map.size / total


def card_meaning(card: dict[str, Any]) -> str:
    """The same reading for a stored card (no map: from its R² and sigmas only)."""
    level, headline = r2_verdict(float(card["r2"]))
    sigma = f"({card['sigma_x']:.1f}, {card['sigma_y']:.1f}) px"
    lines = [f"**{headline}**"]
    if level == "good":
        lines.append(f"Gaussian upsampling with σ = {sigma} matches how this layer's centre unit spreads over "
                     f"the pixels, as Extended-CAM assumes (its VGG16 conv5_3: R² 0.9905, σ 31.78 / 33.36 px).")
    elif level == "rough":
        lines.append(f"σ = {sigma} is a usable summary; the residual panel of the figure shows where the shape "
                     f"departs from a Gaussian.")
    else:
        lines.append(f"σ = {sigma} is a compromise between parts of the map one Gaussian cannot hold together "
                     f"(often a sharp peak on a broad floor: see the residual panel): Gaussian upsampling with it "
                     f"over-smooths the peak, and a narrower σ would ignore the floor. Estimate live below and "
                     f"tick *fit a constant offset* to measure the peak and the floor apart.")
    if card.get("fit_options", {}).get("offset"):
        lines.append("This card's fit included a constant offset (a floor under the Gaussian).")
    return "\n\n".join(lines)


def honest_spread(rows: Sequence[dict[str, Any]]) -> str | None:
    """How much sigma and R² still moved over the last doubling of the image count."""
    good = [row for row in rows if row.get("sigma_x") is not None]
    if len(good) < 2:
        return None
    a, b = good[-2], good[-1]
    return (f"From {a['n']} to {b['n']} images σx moved by {b['sigma_x'] - a['sigma_x']:+.2f} px, "
            f"σy by {b['sigma_y'] - a['sigma_y']:+.2f} px and R² by {b['r2'] - a['r2']:+.3f}.")


def erf_figures(estimate: ErfEstimate, fit: ErfFit | None, log: bool) -> dict[str, Any]:
    """The page's plotly figures: "map" always; with a fit also "surface", "residual" and the
    "profile_x" / "profile_y" lines through the fitted centre. Map and fit share a colour range."""
    erf_map = estimate.map
    signed = estimate.mode == "signed" and not log
    note = f"{estimate.mode} gradient, {estimate.n_images} images" + (", interrupted" if estimate.interrupted else "")
    if fit is None:
        return {"map": views.erf_heatmap_figure(erf_map, f"ERF ({note})", log=log, diverging=signed,
                                                centre=estimate.centre_px)}
    value_range = (min(float(erf_map.min()), float(fit.surface.min())),
                   max(float(erf_map.max()), float(fit.surface.max())))
    ellipse = (fit.centre_x, fit.centre_y, fit.sigma_x, fit.sigma_y, fit.rotation or 0.0)
    height, width = erf_map.shape
    row = int(round(min(max(fit.centre_y, 0), height - 1)))
    col = int(round(min(max(fit.centre_x, 0), width - 1)))
    return {
        "map": views.erf_heatmap_figure(erf_map, f"ERF ({note})", log=log, diverging=signed, value_range=value_range,
                                        ellipse=ellipse, centre=estimate.centre_px),
        "surface": views.erf_heatmap_figure(fit.surface, "Fitted 2D Gaussian", log=log, diverging=signed,
                                            value_range=value_range, value_name="fit"),
        "residual": views.erf_heatmap_figure(fit.residual, f"Residual (map − fit), R² {fit.r2:.3f}", diverging=True,
                                             value_name="residual"),
        "profile_x": views.erf_profile_figure(erf_map[row], fit.surface[row],
                                              f"x profile through the centre (row {row})", "x (pixels)", log=log),
        "profile_y": views.erf_profile_figure(erf_map[:, col], fit.surface[:, col],
                                              f"y profile through the centre (column {col})", "y (pixels)", log=log),
    }


def degrees(radians: float) -> float:
    return math.degrees(radians)


def plus_minus(err: float | None) -> str:
    """A formal standard error as shown under a metric: "± 0.32" (or "± n/a")."""
    return f"± {err:.2g}" if err is not None else "± n/a (no covariance)"


# ------------------------------------------------------------------- cards and shared sigma

def erf_card(backbone: str, layer: str) -> tuple[dict[str, Any] | None, Any]:
    """(card, png path or None) of the stored fit of this backbone/layer; a damaged card is
    reported with st.warning and treated as absent."""
    path = erf_card_path(backbone, layer)
    if not path.is_file():
        return None, None
    try:
        card = load_erf_card(path)
    except CardError as exc:
        st.warning(str(exc))
        return None, None
    png = path.with_suffix(".png")
    return card, png if png.is_file() else None


def stored_erf_cards() -> list[dict[str, Any]]:
    """Every stored card as a table row (damaged cards skipped), for comparison."""
    rows = []
    for path in sorted(ERF_DIR.glob("*.json")):
        try:
            card = load_erf_card(path)
        except CardError:
            continue
        rows.append({"backbone": card["backbone"], "layer": card["layer"], "weights": card["weights"],
                     "images": f"{card['n_images']} {card.get('source', '')}", "mode": card["mode"],
                     "R²": round(float(card["r2"]), 4), "σx": round(float(card["sigma_x"]), 2),
                     "σy": round(float(card["sigma_y"]), 2)})
    return rows


def sigma_on_slider(value: float) -> float:
    """A sigma as the sliders hold it: clipped into range, on their 0.5 px step."""
    return float(np.clip(round(value / SIGMA_STEP) * SIGMA_STEP, SIGMA_MIN, SIGMA_MAX))


def use_stored_sigma(backbone: str, layer: str) -> None:
    """Callback: select the stored fit of backbone/layer as the Gaussian sigma preset of the Compare
    page (the Smoothing Lab follows it)."""
    fit = fitted_sigma(backbone, layer)
    if fit is None:
        return
    remember("sigma_preset", fit.label)
    for name, value in zip(("sigma_x", "sigma_y"), (fit.sigma_x, fit.sigma_y)):
        _set_widget(name, float(np.clip(value, SIGMA_MIN, SIGMA_MAX)))


def use_sigmas(sigma_x: float, sigma_y: float) -> None:
    """Callback: make (sigma_x, sigma_y), on the sliders' step, the shared manual sigma; x and y
    are unlinked when they differ."""
    sx, sy = sigma_on_slider(sigma_x), sigma_on_slider(sigma_y)
    _to_manual()
    _set_widget("sigma_linked", sx == sy)
    _set_widget("sigma_x", sx)
    _set_widget("sigma_y", sy)


def shared_sigma() -> tuple[str, float | None, float | None]:
    """(preset label, sigma x, sigma y) as the Compare page will use them."""
    return (remembered("sigma_preset", ""), st.session_state.get(_STATE + "sigma_x"),
            st.session_state.get(_STATE + "sigma_y"))


# ------------------------------------------------------------- evaluations (the metrics pages)

EVAL_METHODS = ("cam", "gradcam", "gradcampp", "xgradcam", "layercam", "extendedcam")
EVAL_UPSAMPLERS = ("bilinear", "gaussian", "nearest", "bicubic")
EVAL_LIMIT = (8, 600, 64)  # images: min, max, default of the in-page evaluation
TABLE4_METHODS = ("gradcam", "gradcampp", "extendedcam")  # Extended-CAM Table 4's equations
TABLE4_UPSAMPLERS = ("gaussian", "bilinear")


def _user_errors() -> tuple[type[Exception], ...]:
    from explorer.datasets.errors import DatasetError
    from explorer.evaluate import EvaluateError
    from explorer.metrics import MetricError

    return USER_ERRORS + (DatasetError, EvaluateError, MetricError)


def attempt_all(doing: str, action: Callable[[], T]) -> T | None:
    """`attempt`, also catching dataset, evaluation and metric errors (shown as messages)."""
    try:
        return action()
    except _user_errors() as exc:
        st.error(str(exc))
    except Exception:
        logger.exception("Unexpected error while %s", doing)
        st.error(f"Something went wrong while {doing}; the details are in the server log. Try another choice.")
    return None


def combo_label(method: str, upsampler: str) -> str:
    if method.startswith("reference_"):
        return {"reference_object": "reference: whole-object mask",
                "reference_part": "reference: discriminative part only"}.get(method, method)
    return f"{METHODS[method].label} · {'F-CAM decoder' if upsampler == FCAM else upsampler}"


def available_runs():
    from explorer.runs import list_runs

    return list_runs()


def choose_run(name: str = "run"):
    """Pick a finished evaluation (yours first, then the shipped ones); None when there is none."""
    runs = available_runs()
    if not runs:
        st.info("No finished evaluation yet. Run one with the form below, or from a terminal with "
                "`python -m explorer evaluate --dataset synthetic --backbone synthetic_lite0 --out runs/lite0`.")
        return None
    by_path = {str(run.path): run for run in runs}
    path = selectbox("Evaluation", name, list(by_path), str(runs[0].path), format_func=lambda p: by_path[p].label)
    run = by_path[path]
    config = run.summary["config"]
    sigma = config.get("sigma")
    st.caption(f"{run.summary['num_images']} images · methods {', '.join(config['methods'])} · upsamplers "
               f"{', '.join(config['upsamplers'])}" + (f" (Gaussian σ = {sigma[0]:.3g}, {sigma[1]:.3g})" if sigma else "")
               + (f" · {len(run.summary['skipped'])} skipped" if run.summary.get("skipped") else "")
               + (f" · classification accuracy {run.summary['classification_accuracy']:.1f} %"
                  if run.summary.get("classification_accuracy") is not None else ""))
    return run


def choose_combos(run, name: str, default_count: int = 4, references: bool = True) -> list[tuple[str, str]]:
    combos = [c for c in run.combos if references or not c[0].startswith("reference_")]
    keys = [f"{m}@{u}" for m, u in combos]
    default = [k for k in keys if k.startswith("cam@") or k.startswith("reference_")] or keys[:default_count]
    chosen = multiselect("Methods and upsamplers", name, keys, default,
                         format_func=lambda k: combo_label(*k.split("@", 1)))
    return [tuple(k.split("@", 1)) for k in chosen]


def choose_combo(run, name: str) -> tuple[str, str] | None:
    combos = [c for c in run.combos if not c[0].startswith("reference_")]
    if not combos:
        st.info("This evaluation holds no CAM method.")
        return None
    keys = [f"{m}@{u}" for m, u in combos]
    key = selectbox("Method and upsampler", name, keys, keys[0], format_func=lambda k: combo_label(*k.split("@", 1)))
    return tuple(key.split("@", 1))


def _run_stamp(run) -> str:
    path = run.path / "summary.json"
    return f"{run.path}|{path.stat().st_mtime_ns}"


def run_curves(run) -> dict[str, np.ndarray]:
    return _run_curves(_run_stamp(run), _run=run)


@st.cache_data(max_entries=8, show_spinner="Reading the evaluation…")
def _run_curves(stamp: str, *, _run) -> dict[str, np.ndarray]:
    from explorer.runs import load_curves

    return load_curves(_run)


def run_records(run, method: str, upsampler: str) -> list[dict]:
    return _run_records(_run_stamp(run), method, upsampler, _run=run)


@st.cache_data(max_entries=16, show_spinner="Reading the per-image records…")
def _run_records(stamp: str, method: str, upsampler: str, *, _run) -> list[dict]:
    from explorer.runs import load_records

    return load_records(_run, method, upsampler)


def summary_table(run, combos: Sequence[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
    """The evaluation's rows as a table (percentages rounded to 0.1)."""
    names = {"max_box_acc": "MaxBoxAcc", "max_box_acc_v2": "MaxBoxAccV2", "pxap": "PxAP", "top1_loc": "top-1 loc",
             "top5_loc": "top-5 loc", "best_threshold": "best τ", "average_drop": "Average Drop %",
             "increase": "% Increase", "average_drop_relative": "Avg Drop % (relative)",
             "increase_relative": "% Increase (relative)"}
    wanted = None if combos is None else {tuple(c) for c in combos}
    rows = []
    for row in run.summary["rows"]:
        if wanted is not None and (row["method"], row["upsampler"]) not in wanted:
            continue
        out = {"method and upsampler": combo_label(row["method"], row["upsampler"])}
        for key, label in names.items():
            if key in row:
                out[label] = round(row[key], 3 if key == "best_threshold" else 1)
        rows.append(out)
    return rows


@st.cache_resource(max_entries=4, show_spinner="Opening the dataset…")
def open_cached_dataset(spec: str, split: str):
    from explorer.datasets import open_dataset

    return open_dataset(spec, split, strict=False)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text).strip("-")[:60] or "run"


def evaluation_form(state: Selection, name: str = "evalform") -> None:
    """An expander that evaluates a dataset in this session, with a progress bar; the result is
    written under runs/ and selected. Interrupted (page left, server stopped), it resumes."""
    from explorer.datasets.loaders import SPECS

    with st.expander("Evaluate a dataset", expanded=not available_runs()):
        spec = text_input("Dataset", f"{name}.dataset", "synthetic", help=f"One of: {SPECS}.")
        split = selectbox("Split", f"{name}.split", ["test", "val", "train"], "test")
        choices = backbone_names()
        default_backbone = "synthetic_lite0" if spec.strip().startswith("synthetic") else state.backbone.name
        backbone_name = selectbox("Backbone", f"{name}.backbone", choices, default_backbone)
        methods = multiselect("Methods", f"{name}.methods", list(EVAL_METHODS), ["cam", "gradcam", "extendedcam"],
                              format_func=method_name)
        from explorer.fcam import shipped_decoders

        offered = list(EVAL_UPSAMPLERS) + ([FCAM] if shipped_decoders(backbone_name) else [])
        upsamplers = multiselect("Upsamplers", f"{name}.upsamplers", offered, ["bilinear", "gaussian"],
                                 format_func=lambda u: "F-CAM decoder (shipped)" if u == FCAM else u)
        limit = number_input("Images (the first N of the split)", f"{name}.limit", *EVAL_LIMIT)
        if not methods or not upsamplers:
            st.caption("Pick at least one method and one upsampler.")
            return
        if st.button("Run evaluation", key=_WIDGET + f"{name}.go", type="primary"):
            attempt_all("evaluating the dataset",
                        lambda: _run_evaluation(spec.strip(), split, backbone_name, methods, upsamplers, int(limit)))


def _run_evaluation(spec: str, split: str, backbone_name: str, methods: Sequence[str], upsamplers: Sequence[str],
                    limit: int) -> None:
    from explorer.evaluate import EvalConfig, evaluate
    from explorer.runs import runs_dir

    # A private copy of the network: a long evaluation never holds the shared model's lock.
    backbone = load_backbone(backbone_name, "pretrained")
    layer = backbone.default_layer
    sigma = next(v for v in sigma_presets(backbone_name, layer, weights=backbone.weights).values() if v is not None)
    methods = [m for m in methods if m != "cam" or backbone.has_gap_linear_head]
    decoders = {}
    if FCAM in upsamplers:
        from explorer.fcam import read_decoder_card, shipped_decoders

        decoders = {m: str(p) for m, p in shipped_decoders(backbone_name).items()
                    if m in methods and read_decoder_card(p)["layer"] == layer}
        if not decoders:
            raise FcamError(f"No shipped F-CAM decoder of {backbone_name} was trained from {', '.join(methods)}; "
                            f"add its base method to the methods or drop the F-CAM upsampler.")
    config = EvalConfig(dataset=spec, split=split, backbone=backbone_name, layer=layer, methods=tuple(methods),
                        upsamplers=tuple(upsamplers), sigma=tuple(sigma), limit=limit, decoders=decoders)
    digest = hashlib.sha256(repr(config).encode()).hexdigest()[:8]
    out = runs_dir() / f"{_slug(backbone_name)}-{_slug(spec)}-{split}-{limit}-{digest}"
    bar = st.progress(0.0, text="Starting…")

    def progress(done: int, total: int) -> None:
        bar.progress(done / max(total, 1), text=f"{done} / {total} images")

    summary = evaluate(config, out, backbone=backbone, progress=progress)
    bar.progress(1.0, text=f"Done: {summary.num_images} images in {summary.seconds:.0f} s")
    remember("run", str(out))
    _set_widget("run", str(out))
    st.rerun()


# ------------------------------------------------------------------------------ failure cases

@dataclass(frozen=True)
class FailureTile:
    picture: np.ndarray
    caption: str
    record: dict
    image_path: str


def failure_tiles(run, method: str, upsampler: str, records: Sequence[dict], show: str) -> list[FailureTile]:
    """Each record's image with its map and ground truth drawn at the evaluation's chosen threshold:
    boxes (green truth, red prediction) or, with show="masks", pixel outcomes."""
    ids = tuple(r["image_id"] for r in records)
    return _failure_tiles(_run_stamp(run), method, upsampler, ids, show, _run=run, _records=tuple(records))


@st.cache_data(max_entries=16, show_spinner="Drawing the maps of these images…")
def _failure_tiles(stamp: str, method: str, upsampler: str, ids: tuple[str, ...], show: str, *, _run,
                   _records: tuple[dict, ...]) -> list[FailureTile]:
    from explorer.metrics import mask_confusion
    from explorer.upsample import normalise, upsample

    config = _run.summary["config"]
    dataset = open_cached_dataset(config["dataset"], config["split"])
    index_of = {sample.image_id: i for i, sample in enumerate(dataset)}
    backbone = load_cached_backbone(config["backbone"], config["weights"])
    row = _run.row(method, upsampler)
    tau = row.get("best_threshold", 0.5)
    indices = [index_of[i] for i in ids if i in index_of]
    records = [r for r in _records if r["image_id"] in index_of]
    if not indices:
        return []
    images = [dataset.load_image(i) for i in indices]
    targets = [r["target"] for r in records]
    sigma = tuple(config["sigma"]) if config.get("sigma") else None
    with _NETWORK_LOCK:
        batch = backbone.preprocess(images)
        result = grid_maps(backbone, batch, targets, [method], config.get("layer"), relu=config.get("relu", "none"))
    maps = normalise(upsample(result.maps[method], (224, 224), upsampler, sigma), "minmax").cpu().numpy()
    tiles = []
    for image, i, record, values in zip(images, indices, records, maps):
        seen = np.asarray(image.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR))
        picture = views.overlay(seen, values, views.colour_scale(values))
        if show == "masks" and "masks" in dataset.kind:
            fg, ignore = dataset.gt_mask(i)
            picture = views.confusion_overlay(seen, mask_confusion(values, fg, ignore, tau))
        elif "boxes" in dataset.kind:
            picture = views.draw_boxes(picture, dataset.gt_boxes(i), views.GT_COLOUR)
            if record.get("box_x0") is not None:
                picture = views.draw_boxes(picture, [[record[k] for k in ("box_x0", "box_y0", "box_x1", "box_y1")]],
                                           views.PRED_COLOUR)
        names = dataset.classes or backbone.class_names
        label = names[record["label"]] if record.get("label") is not None and 0 <= record["label"] < len(names) else "?"
        predicted = backbone.class_names[record["predicted"]] if record.get("predicted") is not None else "?"
        parts = [f"IoU {record['iou']:.2f}" if record.get("iou") is not None else None,
                 f"PxAP {record['pxap']:.1f}" if record.get("pxap") is not None else None,
                 f"{label} → {predicted} ({record['score']:.0%})" if record.get("score") is not None else None]
        tiles.append(FailureTile(picture, " · ".join(p for p in parts if p), record, str(dataset[i].image_path)))
    return tiles


def open_in_compare(run, tile: FailureTile, method: str, upsampler: str) -> None:
    """Make this image, backbone, layer, class, method and upsampler the current choices (the
    caller then switches to the Compare page)."""
    config = run.summary["config"]
    data = Path(tile.image_path).read_bytes()
    remember("image", ImageChoice(image_digest(data), tile.record["image_id"], data))
    remember("image_source", "upload")
    remember("backbone", config["backbone"])
    remember("weights", config["weights"] if config["weights"] in WEIGHT_LABELS else "pretrained")
    if config.get("layer"):
        remember(f"layer.{config['backbone']}", config["layer"])
    remember("target", tile.record["target"])
    methods = list(remembered("methods", list(DEFAULT_METHODS)))
    remember("methods", list(dict.fromkeys([method, *methods])))
    ups = list(remembered("upsamplers", ["bilinear", "gaussian"]))
    remember("upsamplers", list(dict.fromkeys([upsampler, *ups])))


# --------------------------------------------------------------------------- confidence metrics

def confidence_grid(spec: str, backbone: Backbone, layer: str, sigma: tuple[float, float]):
    """Extended-CAM Table 4 on a dataset: Average Drop % and % Increase (normal and relative
    masking) for Grad-CAM, Grad-CAM++ and Extended-CAM with Gaussian and bilinear upsampling.
    Written under runs/ like any evaluation, so it is computed once per choice."""
    return _confidence_grid(spec, backbone.name, backbone.weights, layer, tuple(float(s) for s in sigma),
                            _backbone=backbone)


@st.cache_data(max_entries=8, show_spinner="Masking the images by each map and re-classifying them…")
def _confidence_grid(spec: str, backbone_name: str, weights: str, layer: str, sigma: tuple[float, float], *,
                     _backbone: Backbone) -> dict:
    from explorer.evaluate import EvalConfig, evaluate
    from explorer.runs import runs_dir

    split = "val" if spec.startswith("voc:") else "test"  # VOC 2007's test half is often not installed
    config = EvalConfig(dataset=spec, split=split, backbone=backbone_name, weights=weights, layer=layer,
                        methods=TABLE4_METHODS, upsamplers=TABLE4_UPSAMPLERS, sigma=sigma, references=False,
                        batch_size=8)
    digest = hashlib.sha256(repr(config).encode()).hexdigest()[:10]
    out = runs_dir() / "table4" / f"{_slug(backbone_name)}-{_slug(spec)}-{digest}"
    with _NETWORK_LOCK:
        summary = evaluate(config, out, backbone=_backbone)
    return {"rows": summary.rows, "images": summary.num_images, "skipped": summary.skipped,
            "policy": summary.target_policy}


# --------------------------------------------------------------------------- downscale simulation

DOWNSCALE_IMAGES = (10, 300, 100)


def downscale_curves(spec: str, split: str, count: int, sigma_cells: float, downscale: str) -> dict:
    return _downscale_curves(spec, split, int(count), float(sigma_cells), downscale)


@st.cache_data(max_entries=16, show_spinner="Downscaling and restoring the masks…")
def _downscale_curves(spec: str, split: str, count: int, sigma_cells: float, downscale: str) -> dict:
    from explorer.metrics.downscale import ZOOMS, downscale_pxap, restored_masks

    dataset = open_cached_dataset(spec, split)
    if "masks" not in dataset.kind:
        from explorer.datasets.errors import DatasetError

        raise DatasetError(f"{spec} has no pixel masks ({dataset.kind}); the simulation needs a masks dataset "
                           "such as synthetic or openimages:<root>")
    n = min(count, len(dataset))
    pairs = [dataset.gt_mask(i) for i in range(n)]
    masks = np.stack([fg for fg, _ in pairs])
    ignores = np.stack([ig for _, ig in pairs])
    curves = downscale_pxap(masks, ignores, ZOOMS, ("bilinear", "gaussian"), sigma_cells, downscale=downscale)
    example = masks[:1]
    examples = {up: [restored_masks(example, z, up, sigma_cells, downscale)[0] for z in ZOOMS]
                for up in ("bilinear", "gaussian")}
    return {"zooms": list(ZOOMS), "curves": curves, "images": n, "example_mask": example[0],
            "examples": examples, "example_image": np.asarray(dataset.load_image(0).convert("RGB").resize((224, 224)))}


# --------------------------------------------------------------------------------- F-CAM

FCAM_FIT_EPOCHS = (1, 20, 3)  # slider: min, max, default of a fit in the app
FCAM_FIT_LIMIT = (8, 2000, 200)  # training images: min, max, default
FCAM_VALUE_BINS = 50


@dataclass(frozen=True)
class DecoderChoice:
    """A trained decoder on disk: its file, the card's facts, and a stamp (the file's mtime) so
    a retrained file is a new cache key."""

    path: str
    stamp: float
    base_method: str
    shipped: bool
    card: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def label(self) -> str:
        where = "shipped" if self.shipped else "yours"
        val = self.card.get("val", {})
        score = f", val MaxBoxAcc {val['max_box_acc']:.1f}" if "max_box_acc" in val else ""
        return f"{Path(self.path).name} · from {method_name(self.base_method)}{score} [{where}]"


def fcam_user_dir():
    from explorer.runs import runs_dir

    return runs_dir() / "fcam"


def decoder_choices(state: Selection) -> tuple[list[DecoderChoice], list[str]]:
    """The decoders that fit the sidebar's backbone, weights and layer (shipped first, then the
    user's, newest first), and one line per decoder file whose card could not be read."""
    from explorer.fcam.decoder import FCAM_DIR, read_decoder_card

    backbone = state.backbone
    found, problems = [], []
    for folder, shipped in ((FCAM_DIR, True), (fcam_user_dir(), False)):
        if not folder.is_dir():
            continue
        paths = sorted(folder.glob(f"{backbone.name}__*.pt"), key=lambda p: (-p.stat().st_mtime, p.name))
        for path in paths:
            try:
                card = read_decoder_card(path)
            except FcamError as exc:
                problems.append(str(exc))
                continue
            if card["backbone"] != backbone.name or card["layer"] != state.layer:
                continue
            if str(card.get("backbone_weights", "pretrained")) != backbone.weights:
                continue
            found.append(DecoderChoice(str(path), path.stat().st_mtime, card["base_method"], shipped, card))
    return found, problems


def active_decoders(state: Selection) -> dict[str, DecoderChoice]:
    """base method -> the decoder the pages use: the one chosen on the F-CAM Decoder page, else
    the shipped one, else the user's newest."""
    choices, _ = decoder_choices(state)
    active: dict[str, DecoderChoice] = {}
    for choice in choices:
        active.setdefault(choice.base_method, choice)
    for method in list(active):
        wanted = remembered(f"decoder.{state.backbone.name}.{state.layer}.{method}", None)
        match = next((c for c in choices if c.path == wanted), None)
        if match is not None:
            active[method] = match
    return active


def use_decoder(state: Selection, choice: DecoderChoice) -> None:
    remember(f"decoder.{state.backbone.name}.{state.layer}.{choice.base_method}", choice.path)


def available_upsamplers(state: Selection) -> tuple[str, ...]:
    """The interpolations, and the F-CAM decoder when one fits this backbone and layer."""
    return UPSAMPLERS + ((FCAM,) if active_decoders(state) else ())


def load_cached_decoder(choice: DecoderChoice, backbone: Backbone) -> FcamDecoder:
    return _load_decoder(choice.path, choice.stamp, backbone.name, backbone.weights, _backbone=backbone)


@st.cache_resource(max_entries=6, show_spinner="Loading the F-CAM decoder…")
def _load_decoder(path: str, stamp: float, backbone_name: str, weights: str, *, _backbone: Backbone) -> FcamDecoder:
    """Shared by all sessions and never modified: eval mode, forwards only."""
    from explorer.fcam import load_decoder

    return load_decoder(path, _backbone)


@dataclass(frozen=True)
class FcamView:
    """What the F-CAM Decoder page shows for one image: the coarse CAM, its seeds and the maps."""

    grid: np.ndarray  # raw low-resolution CAM of the base method
    cam: np.ndarray  # C: min-max at low resolution, bilinear to the input (what the seeds read)
    foreground: np.ndarray  # C+ (bool)
    background: np.ndarray  # C- (bool)
    labels: np.ndarray  # seeds drawn: 1 / 0 / IGNORE
    cam_bilinear: np.ndarray  # the base CAM the protocol's way: bilinear, then min-max
    fcam: np.ndarray  # the decoder's foreground probability
    seconds: dict[str, float]


def fcam_view(state: Selection, choice: DecoderChoice, draw: int) -> FcamView:
    return _fcam_view(state.image_choice.key, state.backbone.name, state.backbone.weights, state.layer, state.target,
                      choice.path, choice.stamp, int(draw), _backbone=state.backbone, _image=state.image,
                      _choice=choice)


@st.cache_data(max_entries=16, show_spinner="Running the classifier and the decoder…")
def _fcam_view(image_key: str, backbone_name: str, weights: str, layer: str, target: int, path: str, stamp: float,
               draw: int, *, _backbone: Backbone, _image: Image.Image, _choice: DecoderChoice) -> FcamView:
    from explorer.fcam.seeds import (
        SeedConfig,
        cam_for_seeds,
        draw_seeds,
        sampling_regions,
    )

    decoder = load_cached_decoder(_choice, _backbone)
    settings = decoder.card.get("settings", {})
    seeds = SeedConfig(**{k: settings[k] for k in ("n_negative", "fg_samples", "bg_samples", "patch", "erode")
                          if k in settings})
    method = decoder.base_method
    with _NETWORK_LOCK:
        batch = _backbone.preprocess(_image)
        result = grid_maps(_backbone, batch, [target], [method], layer,
                           relu=decoder.card.get("relu", "published"), decoders={method: decoder})
    grid_map = result.maps[method]
    cam = cam_for_seeds(grid_map, _backbone.input_size)
    fg, bg = sampling_regions(cam, seeds)
    labels = draw_seeds(fg, bg, seeds, torch.Generator().manual_seed(draw))
    bilinear = pixel_maps(grid_map, _backbone.input_size, "bilinear", None, "minmax")
    return FcamView(grid_map[0].cpu().numpy(), cam[0].cpu().numpy(), fg[0].cpu().numpy(), bg[0].cpu().numpy(),
                    labels[0].cpu().numpy(), bilinear[0].cpu().numpy(), result.fcam[method][0].cpu().numpy(),
                    dict(result.seconds))


def largest_box(score_map: np.ndarray, tau: float) -> list[list[int]]:
    """The protocol's MaxBoxAcc box at threshold tau: the largest contour's bounding box."""
    from explorer.metrics import boxes_from_map

    return [list(map(int, b)) for b in boxes_from_map(np.clip(score_map, 0, 1), tau)]


def value_histograms(view: FcamView) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Pre-binned values of the CAM (bilinear, min-max) and of the F-CAM over this image (Fig. 6)."""
    edges = np.linspace(0.0, 1.0, FCAM_VALUE_BINS + 1)
    return edges, {"CAM + bilinear": np.histogram(np.clip(view.cam_bilinear, 0, 1), bins=edges)[0],
                   "F-CAM decoder": np.histogram(np.clip(view.fcam, 0, 1), bins=edges)[0]}


def card_settings_rows(card: dict) -> list[dict[str, Any]]:
    """The settings a decoder was trained with, for a table."""
    settings = card.get("settings", {})
    wanted = ("dataset", "base_method", "epochs", "batch_size", "lr", "n_negative", "ce_weight", "crf_weight",
              "crf_scale", "crf_sigma_rgb", "crf_sigma_xy", "size_weight", "t_start", "t_factor", "augment", "seed")
    rows = [{"setting": key, "value": str(settings[key])} for key in wanted if key in settings]
    rows += [{"setting": key, "value": str(card[key])} for key in ("taps", "widths", "centre", "parameters",
                                                                  "model_selection", "best_epoch", "device")
             if key in card]
    return rows


def steps_per_epoch(card: dict) -> int | None:
    history, curve = card.get("history") or [], card.get("curve") or []
    if not history or not curve:
        return None
    epochs = history[-1]["epoch"]
    return max(1, round(curve[-1]["step"] / epochs)) if epochs else None


class FcamFitJob:
    """A decoder fit running in a background thread for one session: progress for the page to
    poll, a stop event, and the decoder file when it is done. A stopped fit keeps its run state on
    disk, so starting the same settings again continues it."""

    def __init__(self, settings: dict[str, Any], out) -> None:
        self.settings = settings
        self.out = out
        self.status = "running"  # running | stopped | done | failed
        self.error: str | None = None
        self.phase, self.done, self.total = "load", 0, 0
        self.loaded = 0
        self.info: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []
        self.started = time.monotonic()
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def progress(self, phase: str, done: int, total: int, info: dict) -> None:
        with self.lock:
            if phase == "load":
                self.loaded += done
            elif phase == "train":
                self.phase, self.done, self.total, self.info = "train", done, total, dict(info)
            else:
                self.history.append(dict(info))

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0

    def describe(self) -> str:
        with self.lock:
            if self.phase == "load":
                return f"decoding images: {self.loaded}"
            loss = self.info.get("loss")
            return (f"step {self.done} / {self.total}, epoch {self.info.get('epoch', '?')}"
                    + (f", loss {loss:.4f}" if loss is not None else "")
                    + f" · {time.monotonic() - self.started:.0f} s")


def _fcam_jobs() -> dict:
    return st.session_state.setdefault("fcam.jobs", {})


def fcam_job() -> FcamFitJob | None:
    return _fcam_jobs().get("current")


def start_fcam_fit(state: Selection, spec: str, base_method: str, epochs: int, limit: int) -> FcamFitJob:
    """Start fitting a decoder on `spec` (a folder, a synthetic or protocol dataset) in a thread."""
    from explorer.fcam.train import FcamConfig, FcamInterrupted, train_fcam

    backbone = state.backbone
    config = FcamConfig(backbone=backbone.name, weights=backbone.weights, base_method=base_method, layer=state.layer,
                        dataset=spec, epochs=int(epochs), train_limit=int(limit), val_limit=min(int(limit), 300))
    config.check()
    digest = hashlib.sha256(repr(config).encode()).hexdigest()[:8]
    kind, _, where = spec.partition(":")
    name = _slug(f"{kind}-{Path(where).name}" if where else kind)  # e.g. folder-photos
    out = fcam_user_dir() / f"{backbone.name}__{base_method}__{name}-{digest}.pt"
    job = FcamFitJob({"spec": spec, "base_method": base_method, "epochs": epochs, "limit": limit,
                      "backbone": backbone.name, "weights": backbone.weights, "layer": state.layer}, out)
    command = (f"python -m explorer train-fcam --backbone {backbone.name} --weights {backbone.weights} "
               f"--base-method {base_method} --layer {state.layer} --dataset {spec} --epochs {epochs} "
               f"--train-limit {limit} --val-limit {min(int(limit), 300)} --out {out}")

    def work() -> None:
        try:
            own = load_backbone(backbone.name, backbone.weights)  # the shared model stays untouched
            train_fcam(config, out, command=command, backbone=own, progress=job.progress,
                       should_stop=job.stop_event.is_set)
        except FcamInterrupted:
            job.status = "stopped"
        except USER_ERRORS + (ValueError, OSError) as exc:
            job.status, job.error = "failed", str(exc)
        except Exception:
            logger.exception("Unexpected error while fitting an F-CAM decoder")
            job.status, job.error = "failed", "Something went wrong while fitting; the details are in the server log."
        else:
            job.status = "done"

    job.thread = threading.Thread(target=work, name="fcam-fit", daemon=True)
    _fcam_jobs()["current"] = job
    job.thread.start()
    return job


def stop_fcam_fit() -> None:
    job = fcam_job()
    if job is not None and job.status == "running":
        job.stop_event.set()


def dataset_problem(spec: str) -> str | None:
    """A quick check of a dataset typed on the F-CAM page; None when it looks usable."""
    kind, _, arg = spec.partition(":")
    if kind == "folder":
        return folder_problem(arg)
    if kind in ("synthetic", "cub", "openimages", "voc"):
        if arg and not Path(arg).expanduser().is_dir():
            return f"The folder '{arg}' does not exist on the server."
        return None
    return "Give folder:<path>, synthetic, synthetic:<path>, cub:<root>, openimages:<root> or voc:<root>."
