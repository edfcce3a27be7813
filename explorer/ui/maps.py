"""The Compare page's engine glue: which methods run (slow ones on request), the grid maps from one
shared capture (cached), the cheap pixel half a slider reruns, and the overlay grid and downloads."""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import streamlit as st
import torch
from PIL import Image

from explorer import views
from explorer.backbones import Backbone
from explorer.capture import capture, capture_layers
from explorer.errors import ExplorerError
from explorer.jobs import JobStatus, ThreadJob
from explorer.layer_advisor import advise_layers, suggested
from explorer.memo import BoundedMemo, digest
from explorer.methods import (
    ACTIVATION_FORMULAS,
    GRADIENT_FORMULAS,
    METHODS,
    RELU_POLICIES,
    augment,
    average_augmented,
    channel_sum,
    fuse_layer_maps,
    method_label,
    policy_map,
    resolve_relu,
    weights_from_capture,
)
from explorer.perturbation import Stopped, Watch
from explorer.pipeline import grid_maps, pixel_maps, single_threaded
from explorer.targets import Target
from explorer.ui.fcam import DecoderChoice, load_cached_decoder
from explorer.ui.loading import NETWORK_LOCK, idle_timeout_s, server_governor, session_owner
from explorer.ui.sidebar import Selection, shape_text
from explorer.ui.widgets import remembered
from explorer.upsample import FCAM

logger = logging.getLogger(__name__)

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
SMOOTHING = {
    "aug": "aug-smooth: the mean map of 6 flipped and rescaled copies (6x the cost)",
    "eigen": "eigen-smooth: the first principal component of the per-channel terms",
}


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
    """Every method for a class target; for a function target those that read only the capture."""
    unavailable = cam_unavailable_reason(state) is not None
    return [m for m in METHODS if not (m == "cam" and unavailable) and (state.objective is None or METHODS[m].any_target)]


def method_cost(state: Selection, method: str) -> str:
    return METHODS[method].describe_cost(state.layer_shape[0])


def is_slow(state: Selection, method: str) -> bool:
    return METHODS[method].extra_passes(state.layer_shape[0], {}) > SLOW_EXTRA_PASSES


def cost_notes(state: Selection, methods: Sequence[str]) -> list[str]:
    """What the affordable extra-pass methods (Smooth Grad-CAM++) add to the shared capture."""
    return [f"{method_name(m)}: {method_cost(state, m)}." for m in methods
            if METHODS[m].extra_passes(state.layer_shape[0], {}) and not is_slow(state, m)]


def _approval_key(state: Selection, method: str) -> str:
    # No ReLU policy: a slow method's result is kept under every policy, so changing it asks nothing.
    return "|".join(map(str, (state.image_choice.key, state.backbone.name, state.backbone.weights,
                              state.layer, state.target, method)))


def approve_slow_methods(state: Selection, methods: Sequence[str], relu: str) -> list[str]:
    """The methods to compute now: every cheap one, and each slow one the user has asked for
    (by a click on its button) for exactly these inputs; a warning and a button for the rest."""
    approved: set[str] = remembered("approved_slow", set())
    runnable = []
    for method in methods:
        key = _approval_key(state, method)
        if is_slow(state, method) and key not in approved:
            device = "a CPU" if state.backbone.device.type == "cpu" else "a GPU"
            st.warning(f"{method_name(method)} needs {method_cost(state, method)} "
                       f"(this can take minutes on {device}); it runs when you ask.")
            if not st.button(f"Compute {method_name(method)}", key=f"compute.{method}"):
                continue
            approved.add(key)
        runnable.append(method)
    return runnable


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
    smoothing: tuple[str, ...] = ()  # keys of SMOOTHING applied to every map

    def label(self, method: str) -> str:
        suffix = "".join(f", {name}-smooth" for name in self.smoothing)
        return method_label(method, self.relu[method]) + suffix


def grid(state: Selection, methods: Sequence[str], relu: str,
         decoders: Mapping[str, DecoderChoice] | None = None, smoothing: Sequence[str] = ()) -> GridResult:
    """Grid maps of `methods`: the cheap ones from one shared capture, each slow one alone, so
    adding or removing a cheap method never recomputes a slow one. `decoders` (base method ->
    F-CAM decoder, e.g. `active_decoders(state)`) run on the same capture's features.
    `smoothing`: keys of SMOOTHING, applied to every method."""
    smoothing = tuple(name for name in SMOOTHING if name in smoothing)
    slow = [m for m in methods if is_slow(state, m)]
    fast = [m for m in methods if m not in slow]
    chosen = dict(decoders or {})
    parts = []
    if fast:
        shared = {m: chosen[m] for m in fast if m in chosen}
        parts.append(_grid(*_grid_key(state, fast, relu), _decoder_key(shared), smoothing, _backbone=state.backbone,
                           _image=state.image, _decoders=shared, _objective=state.objective))
    for method in slow:
        own = {method: chosen[method]} if method in chosen else {}
        part = slow_grid(state, method, relu, own, smoothing)
        if part is not None:
            parts.append(part)
    return _merge(parts, [m for m in methods if any(m in part.maps for part in parts)], smoothing)


# ------------------------------------------------------------------ slow methods in the background

SLOW_RESULTS_KEPT = 24  # finished slow grids kept for the whole server (each a few grids of floats)
_SLOW_RESULTS: OrderedDict[tuple, dict] = OrderedDict()
_SLOW_LOCK = threading.Lock()


def _slow_jobs() -> dict[tuple, ThreadJob]:
    return st.session_state.setdefault("maps.slow_jobs", {})


def _slow_key(state: Selection, method: str, own: dict[str, DecoderChoice], smoothing: tuple[str, ...]) -> tuple:
    # No ReLU policy in the key: the job keeps the map under every policy, so changing it is free.
    return (state.image_choice.key, state.backbone.name, state.backbone.weights, state.layer, state.target_key, method,
            _decoder_key(own), smoothing)


def _kept(key: tuple) -> dict | None:
    with _SLOW_LOCK:
        found = _SLOW_RESULTS.get(key)
        if found is not None:
            _SLOW_RESULTS.move_to_end(key)
        return found


def _keep(key: tuple, value: dict) -> None:
    with _SLOW_LOCK:
        _SLOW_RESULTS[key] = value
        while len(_SLOW_RESULTS) > SLOW_RESULTS_KEPT:
            _SLOW_RESULTS.popitem(last=False)


def _classify_slow(exc: BaseException) -> tuple[JobStatus, str | None]:
    if isinstance(exc, Stopped):
        return JobStatus.STOPPED, str(exc)
    if isinstance(exc, ExplorerError):
        return JobStatus.FAILED, str(exc)
    logger.error("A slow method failed", exc_info=exc)
    return JobStatus.FAILED, "Something went wrong while computing it; the details are in the server log."


def _start_slow(state: Selection, method: str, own: dict[str, DecoderChoice], key: tuple,
                smoothing: tuple[str, ...]) -> ThreadJob:
    """Compute a slow method in a background thread under a slot of the server's governor: the page
    stays live, shows progress with a time estimate and can stop it between chunks."""
    backbone, image, target, layer = state.backbone, state.image, state.target, state.layer
    decoders = {m: load_cached_decoder(choice, backbone) for m, choice in own.items()}

    def work(job: ThreadJob) -> None:
        def progress(done: int, total: int) -> None:
            job.done, job.total = done, total

        start = time.perf_counter()
        batch = backbone.preprocess(image)
        aug, eigen = "aug" in smoothing, "eigen" in smoothing
        if aug:
            batch = augment(batch)  # the image itself is row 0
        taps = tuple(dict.fromkeys(t for d in decoders.values() for t in d.taps))
        cap = capture(backbone, batch, [target] * batch.shape[0], layer, gradient=METHODS[method].needs_gradient,
                      taps=taps)
        captured = time.perf_counter()
        weights = weights_from_capture(method, cap, backbone, batch, watch=Watch(progress, job.should_stop))
        maps = {}
        for policy in RELU_POLICIES:
            grid_map = policy_map(weights, cap.activations, policy, eigen=eigen)
            maps[policy] = (average_augmented(grid_map) if aug else grid_map)[0].float().cpu().numpy()
        size = (int(batch.shape[-2]), int(batch.shape[-1]))
        features = {name: value[:1] for name, value in cap.features.items()}
        fcam = {m: d.foreground(features, size)[0].cpu().numpy() for m, d in decoders.items()}
        _keep(key, {"maps": maps, "fcam": fcam,
                    "seconds": {f"capture:{method}": captured - start, method: time.perf_counter() - captured}})

    owner, alive = session_owner()
    job = ThreadJob(work, name=f"slow-{method}", governor=server_governor(), classify=_classify_slow, owner=owner,
                    alive=alive, idle_timeout_s=idle_timeout_s())
    _slow_jobs()[key] = job
    return job.start()


def slow_grid(state: Selection, method: str, relu: str, own: dict[str, DecoderChoice],
              smoothing: tuple[str, ...] = ()) -> GridResult | None:
    """The slow method's grid when it is computed; otherwise its background job is started or
    shown (progress, time left, Stop) and None returned, so the rest of the grid draws at once."""
    key = _slow_key(state, method, own, smoothing)
    kept = _kept(key)
    if kept is not None:
        policy = resolve_relu(method, relu)
        digest = hashlib.sha256(repr((key, policy)).encode()).hexdigest()
        return GridResult(digest, {method: kept["maps"][policy]}, {method: policy}, dict(kept["seconds"]),
                          dict(kept["fcam"]), smoothing)
    job = _slow_jobs().get(key)
    if job is None:
        job = _start_slow(state, method, own, key, smoothing)
    if job.status in (JobStatus.RUNNING, JobStatus.QUEUED):
        _slow_progress(key, method_name(method))
    else:
        st.warning(f"{method_name(method)}: {job.error or job.note or job.status}")
        if st.button(f"Compute {method_name(method)} again", key=f"again.{method}"):
            _slow_jobs().pop(key, None)
            st.rerun()
    return None


def eta_text(done: int, total: int, elapsed: float) -> str:
    """"123 of 1280 forward passes, about 2 min 05 s left" (no estimate before the first chunk)."""
    if not total:
        return "starting"
    text = f"{done} of {total} forward passes"
    if done:
        text += f", about {views.duration(elapsed * (total - done) / done)} left"
    return text


@st.fragment(run_every=1.0)
def _slow_progress(key: tuple, name: str) -> None:
    job = _slow_jobs().get(key)
    if job is None:
        return
    if job.status not in (JobStatus.RUNNING, JobStatus.QUEUED):
        st.rerun()  # finished or stopped: redraw the whole page with (or without) its maps
    job.touch()
    position = job.queue_position()
    if position is not None:
        st.info(f"{name} waits for a free slot: number {position} in the queue (the server runs "
                f"{server_governor().limit or 'any number of'} long job(s) at once).")
    else:
        st.progress(job.fraction, text=f"{name}: {eta_text(job.done, job.total, time.monotonic() - job.started)}")
    if st.button(f"Stop {name}", key=f"stop.{name}"):
        job.request_stop()


def _grid_key(state: Selection, methods: Sequence[str], relu: str
              ) -> tuple[str, str, str, str, int | str, tuple[str, ...], str]:
    return (state.image_choice.key, state.backbone.name, state.backbone.weights, state.layer,
            state.target_key, tuple(methods), relu)


def _decoder_key(decoders: dict[str, DecoderChoice]) -> tuple:
    return tuple(sorted((m, d.path, d.stamp) for m, d in decoders.items()))


@st.cache_data(max_entries=24, show_spinner="Computing class activation maps…")
def _grid(image_key: str, backbone_name: str, weights: str, layer: str, target: int | str,
          methods: tuple[str, ...], relu: str, decoder_key: tuple = (), smoothing: tuple[str, ...] = (), *,
          _backbone: Backbone, _image: Image.Image, _decoders: dict | None = None,
          _objective: Target | None = None) -> GridResult:
    """`target` is the class, or the key of the function target `_objective` (which the cache cannot hash)."""
    decoders = {m: load_cached_decoder(choice, _backbone) for m, choice in (_decoders or {}).items()}
    with NETWORK_LOCK:
        batch = _backbone.preprocess(_image)
        result = grid_maps(_backbone, batch, [_objective if _objective is not None else target], methods, layer,
                           relu=relu, decoders=decoders,
                           eigen="eigen" in smoothing, aug_smooth="aug" in smoothing)
    key = hashlib.sha256(repr((image_key, backbone_name, weights, layer, target, methods, relu,
                               decoder_key, smoothing)).encode()).hexdigest()
    return GridResult(key, {m: result.maps[m][0].cpu().numpy() for m in methods}, dict(result.relu),
                      dict(result.seconds), {m: f[0].cpu().numpy() for m, f in result.fcam.items()}, smoothing)


def _merge(parts: list[GridResult], order: Sequence[str], smoothing: tuple[str, ...] = ()) -> GridResult:
    if len(parts) == 1:
        return parts[0]
    if not parts:  # every method asked is still being computed in the background
        return GridResult("pending", {}, {}, {}, smoothing=smoothing)
    maps = {k: v for part in parts for k, v in part.maps.items()}
    relu = {k: v for part in parts for k, v in part.relu.items()}
    seconds = {k: v for part in parts for k, v in part.seconds.items()}
    fcam = {k: v for part in parts for k, v in part.fcam.items()}
    key = hashlib.sha256("+".join(part.key for part in parts).encode()).hexdigest()
    return GridResult(key, {m: maps[m] for m in order}, {m: relu[m] for m in order}, seconds, fcam, smoothing)


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
        rows.append({"stage": what, "time": views.duration(seconds)})
    rows.append({"stage": "total", "time": views.duration(sum(result.seconds.values()))})
    return rows


_FIGURES: BoundedMemo[Any] = BoundedMemo(max_bytes=16 * 2**20)


def heatmap_chart(result: GridResult, method: str, class_name: str) -> Any:
    """The raw grid heatmap of one method (a plotly figure, shared read-only between reruns: a
    switch back to a method shown before builds nothing)."""
    values = result.maps[method]
    title = f"{result.label(method)}: raw grid ({values.shape[0]}×{values.shape[1]})"
    return _FIGURES.get_or_make(("heatmap", digest(values), title, class_name),
                                lambda: views.heatmap_figure(values, title=title, class_name=class_name),
                                size=4096 + 24 * values.size)


def histogram_chart(result: GridResult, columns: int = 2) -> Any:
    """The chosen methods' raw value histograms as small multiples (shared read-only, as above)."""
    key = ("histograms", columns, tuple((result.label(m), digest(v)) for m, v in result.maps.items()))
    return _FIGURES.get_or_make(key, lambda: views.histogram_grid_figure(
        histograms(result), columns=columns, title="Raw grid values, the chosen methods side by side"),
        size=4096 * (1 + len(result.maps)))


def histograms(result: GridResult) -> dict[str, views.Histogram]:
    """Pre-binned raw grid values per method (about two cells per bin, 10 to 60 bins)."""
    return {result.label(m): views.histogram(values, bins=int(np.clip(values.size // 2, 10, 60)))
            for m, values in result.maps.items()}


# Upsampled maps and overlay tiles are pure functions of a grid map and the settings, so a sigma
# move redraws only the Gaussian column; the bilinear column (and a decoder's) is reused.
_PIXELS: BoundedMemo[np.ndarray] = BoundedMemo(max_bytes=96 * 2**20)
_TILES: BoundedMemo[bytes] = BoundedMemo(max_bytes=32 * 2**20)


def pixel_table(result: GridResult, size: tuple[int, int], upsamplers: Sequence[str],
                sigma: tuple[float, float], normaliser: str) -> dict[tuple[str, str], np.ndarray]:
    """(method, upsampler) -> H x W normalised map: the cheap half of the pipeline, all that a
    sigma, upsampler or normaliser change reruns. Maps the settings did not change come from a
    memo keyed by the grid map's content; the rest are upsampled in one batch per grid shape."""
    methods = list(result.maps)
    table: dict[tuple[str, str], np.ndarray] = {}
    for up in upsamplers:
        if up == FCAM:  # the decoder's probability as it is; only for methods a decoder was trained from
            for m in methods:
                if m in result.fcam:
                    key = (FCAM, digest(result.fcam[m]), tuple(size))
                    table[(m, up)] = _PIXELS.get_or_make(key, functools.partial(pixel_map, result, m, size, FCAM,
                                                                                  sigma, normaliser))
            continue
        settings = (up, tuple(size), normaliser, tuple(sigma) if up == "gaussian" else None)
        keys = {m: (digest(result.maps[m]), *settings) for m in methods}
        missing: dict[tuple[int, ...], list[str]] = {}  # input-resolution methods sit beside layer grids
        for m in methods:
            found = _PIXELS.get(keys[m])
            if found is None:
                missing.setdefault(result.maps[m].shape, []).append(m)
            else:
                table[(m, up)] = found
        for group in missing.values():
            with single_threaded():
                maps = pixel_maps(torch.from_numpy(np.stack([result.maps[m] for m in group])), size, up, sigma,
                                  normaliser).numpy()
            table.update({(m, up): _PIXELS.put(keys[m], maps[i].copy()) for i, m in enumerate(group)})
    return {(m, up): table[(m, up)] for up in upsamplers for m in methods if (m, up) in table}


def overlay_tile(base: np.ndarray, base_digest: str, values: np.ndarray, scale: views.ColourScale,
                 alpha: float) -> bytes:
    """The JPEG of one map over the image, from the memo when the same map, scale and opacity
    were drawn over the same image before."""
    key = (base_digest, digest(values), scale, float(alpha))
    return _TILES.get_or_make(key, lambda: views.jpeg_bytes(views.overlay(base, values, scale, alpha)))


def pixel_map(result: GridResult, method: str, size: tuple[int, int], upsampler: str,
              sigma: tuple[float, float] | None, normaliser: str) -> np.ndarray:
    grid_map = torch.from_numpy(result.maps[method])[None]
    fcam = torch.from_numpy(result.fcam[method])[None] if upsampler == FCAM and method in result.fcam else None
    return pixel_maps(grid_map, size, upsampler, sigma, normaliser, fcam)[0].numpy()


@st.cache_data(max_entries=32, show_spinner="Deleting and inserting pixels in the map's order…")
def _faithfulness(result_key: str, method: str, upsampler: str, sigma: tuple[float, float], target: int, *,
                  _result: GridResult, _backbone: Backbone, _image: Image.Image) -> dict[str, Any]:
    from explorer.metrics.faithfulness import deletion_insertion

    size = _backbone.input_size
    pixels = pixel_map(_result, method, size, upsampler, sigma, "minmax")
    batch = _backbone.preprocess(_image)
    maps = torch.from_numpy(np.clip(pixels, 0, 1))[None].to(batch.device)
    curves = {mode: deletion_insertion(_backbone.model, batch, maps, [target], mode=mode, mean=_backbone.mean,
                                       std=_backbone.std) for mode in ("deletion", "insertion")}
    return {mode: (c.fractions, c.probabilities[0], float(c.auc[0])) for mode, c in curves.items()}


def faithfulness_curves(state: Selection, result: GridResult, method: str, upsampler: str,
                        sigma: tuple[float, float]):
    """Deletion and insertion curves (RISE) of one shown map on this image, as a figure whose legend
    carries each AUC: 2 x 33 forwards, computed on request and cached."""
    curves = _faithfulness(result.key, method, upsampler, (float(sigma[0]), float(sigma[1])), state.target,
                           _result=result, _backbone=state.backbone, _image=state.image)
    label = f"{result.label(method)} · {upsampler}"
    x = curves["deletion"][0]
    figure = views.curve_figure(x, {f"deletion (AUC {curves['deletion'][2]:.3f}, lower is better)": curves["deletion"][1],
                                    f"insertion (AUC {curves['insertion'][2]:.3f}, higher is better)":
                                        curves["insertion"][1]},
                                f"{label}: p({state.target_name}) as pixels go in the map's order",
                                "fraction of pixels deleted / inserted", "probability")
    return figure, curves


STRIP_METHODS = tuple(GRADIENT_FORMULAS) + tuple(ACTIVATION_FORMULAS)  # need nothing beyond the capture


@st.cache_data(max_entries=8, show_spinner="One forward and one gradient for every layer…")
def _strip(image_key: str, backbone_name: str, weights: str, target: int | str, method: str, relu: str, *,
           _backbone: Backbone, _image: Image.Image, _objective: Target | None = None
           ) -> list[tuple[str, tuple[int, ...], np.ndarray]]:
    """`target` is the class, or the key of the function target `_objective`."""
    batch = _backbone.preprocess(_image)
    layers = list(_backbone.layers)
    targets = [_objective if _objective is not None else target]
    try:
        captures = capture_layers(_backbone, batch, targets, layers)
    except ExplorerError:  # a layer that runs twice: fall back to one capture per layer, skipping it
        captures = {}
        for layer in layers:
            try:
                captures[layer] = capture(_backbone, batch, targets, layer)
            except ExplorerError:
                continue
    out = []
    for layer, cap in captures.items():
        weights_ = weights_from_capture(method, cap, _backbone, batch)
        grid_map = channel_sum(weights_, cap.activations, resolve_relu(method, relu))[0].cpu().numpy()
        out.append((layer, tuple(cap.activations.shape[1:]), grid_map))
    return out


def layer_strip(state: Selection, method: str, relu: str) -> list[tuple[bytes, str]]:
    """One method over every target layer of the backbone, from ONE forward and ONE gradient:
    (overlay JPEG, caption with the layer and its K x h x w) per layer, bilinear and min-max."""
    rows = _strip(state.image_choice.key, state.backbone.name, state.backbone.weights, state.target_key, method, relu,
                  _backbone=state.backbone, _image=state.image, _objective=state.objective)
    base = np.asarray(state.seen)
    tiles = []
    for layer, shape, grid_map in rows:
        pixels = pixel_maps(torch.from_numpy(grid_map)[None], state.size, "bilinear", None, "minmax")[0].numpy()
        tiles.append((views.jpeg_bytes(views.overlay(base, pixels)), f"{layer} · {shape_text(shape)}"))
    return tiles


def fused_layercam_tile(state: Selection, layers: Sequence[str], relu: str) -> tuple[bytes, str] | None:
    """LayerCAM fused over `layers` (methods.fuse_layer_maps: eq. 9's tanh scaling, bilinear to the
    finest grid, element-wise max) from the layer strip's own cached maps (no forward of its own):
    (overlay JPEG, caption), or None when fewer than two of the layers were captured. The fusion
    reads non-negative maps, so each strip map goes through a ReLU (LayerCAM's own map under the
    policies none, after and published)."""
    rows = _strip(state.image_choice.key, state.backbone.name, state.backbone.weights, state.target_key, "layercam",
                  relu, _backbone=state.backbone, _image=state.image, _objective=state.objective)
    chosen = [torch.from_numpy(grid_map).clamp_min(0)[None] for layer, _, grid_map in rows if layer in layers]
    if len(chosen) < 2:
        return None
    fused = fuse_layer_maps(chosen)
    pixels = pixel_maps(fused, state.size, "bilinear", None, "minmax")[0].numpy()
    h, w = fused.shape[-2:]
    return (views.jpeg_bytes(views.overlay(np.asarray(state.seen), pixels)),
            f"LayerCAM fused over {len(chosen)} layers · {h}×{w}")


@st.cache_data(max_entries=8, show_spinner="Scoring the candidate layers (Grad-CAM, deletion, insertion, sanity)…")
def _advice(image_key: str, backbone_name: str, weights: str, target: int, *, _backbone: Backbone,
            _image: Image.Image) -> tuple[list[dict[str, object]], str]:
    rows = advise_layers(_backbone, _backbone.preprocess(_image), target, lock=NETWORK_LOCK)
    table: list[dict[str, object]] = [{"layer": r.layer, "grid": f"{r.grid[0]}×{r.grid[1]}", "channels": r.channels,
              "deletion AUC (lower better)": round(r.deletion_auc, 3),
              "insertion AUC (higher better)": round(r.insertion_auc, 3),
              "insertion − deletion": round(r.faithfulness, 3),
              "sanity ρ after head reset (≤ 0.5 passes)": round(r.head_spearman, 2),
              "peers' choice": "yes" if r.conventional else ""} for r in rows]
    return table, suggested(rows).layer


def layer_advice(state: Selection) -> tuple[list[dict[str, object]], str]:
    """The layer advisor's table for the sidebar's image and class, and its suggested layer."""
    return _advice(state.image_choice.key, state.backbone.name, state.backbone.weights, state.target,
                   _backbone=state.backbone, _image=state.image)


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
                      col_labels: dict[str, str], shared_scale: bool, alpha: float = 0.5) -> None:
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
    own = {key: views.colour_scale(values) for key, values in table.items()}
    common = views.colour_scale(*table.values()) if shared_scale else None
    base = np.asarray(seen)
    base_digest = digest(base)
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
                    scale = common or own[(method, up)]
                    column.image(overlay_tile(base, base_digest, table[(method, up)], scale, alpha),
                                 width="stretch", caption=f"{col_labels[up]} · {scale_text(scale)}")
    signed = any(scale.signed for scale in own.values())
    shown = common or (views.ColourScale(-1.0, 1.0, True) if signed else views.ColourScale(0.0, 1.0, False))
    st.markdown(views.colourbar_html(shown, shared=common is not None), unsafe_allow_html=True)


def sheet_png(seen: Image.Image, table: dict[tuple[str, str], np.ndarray], row_labels: dict[str, str],
              col_labels: dict[str, str], shared_scale: bool, title: str, alpha: float = 0.5) -> Callable[[], bytes]:
    """The comparison sheet as PNG bytes (labels, ranges and its colour bar), made only when a
    download button is clicked."""
    return functools.partial(_sheet_bytes, seen, table, row_labels, col_labels, shared_scale, title, alpha)


def _sheet_bytes(seen: Image.Image, table: dict[tuple[str, str], np.ndarray], row_labels: dict[str, str],
                 col_labels: dict[str, str], shared_scale: bool, title: str, alpha: float) -> bytes:
    return views.png_bytes(views.comparison_sheet(seen, table, row_labels, col_labels, shared_scale, title, alpha))


def export_settings(state: Selection, result: GridResult, upsamplers: Sequence[str], sigma: tuple[float, float],
                    normaliser: str) -> dict[str, Any]:
    """Everything that made the maps of a Compare grid, for the files it exports."""
    return {
        "image": state.image_choice.label, "backbone": state.backbone.name, "weights": state.backbone.weights,
        "weights_label": state.backbone.weights_label, "layer": state.layer, "layer_shape": list(state.layer_shape),
        "class_index": state.target, "class_name": state.target_name, "input_size": list(state.size),
        "methods": {m: {"label": result.label(m), "relu": result.relu[m], "grid_shape": list(result.maps[m].shape)}
                    for m in result.maps},
        "upsamplers": list(upsamplers), "sigma_pixels": [float(sigma[0]), float(sigma[1])], "normaliser": normaliser,
        "smoothing": {name: SMOOTHING[name] for name in result.smoothing},
    }


def grid_npz(state: Selection, result: GridResult, table: dict[tuple[str, str], np.ndarray],
             upsamplers: Sequence[str], sigma: tuple[float, float], normaliser: str) -> Callable[[], bytes]:
    """The export a notebook can read back alone (made on click): "settings" (JSON), every raw grid
    map as "grid/<method>" and every shown map as "pixels/<method>/<upsampler>"."""
    arrays = {f"grid/{m}": v for m, v in result.maps.items()}
    arrays.update({f"pixels/{m}/{u}": v for (m, u), v in table.items()})
    return functools.partial(views.npz_bytes, export_settings(state, result, upsamplers, sigma, normaliser), arrays)
