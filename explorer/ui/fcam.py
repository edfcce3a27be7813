"""The F-CAM page's glue: the decoders that fit the sidebar's choices, the view of one image
(CAM, seeds, F-CAM), and decoder fits as background jobs of this session."""

from __future__ import annotations

import hashlib
import logging
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st
import torch
from PIL import Image

from explorer.backbones import Backbone, load_backbone
from explorer.errors import ExplorerError
from explorer.fcam.decoder import FcamDecoder, FcamError
from explorer.jobs import JobStatus, ThreadJob, TrainingJob
from explorer.methods import METHODS
from explorer.pipeline import grid_maps, pixel_maps
from explorer.runs import list_runs, runs_dir, runs_with_decoder, slug
from explorer.server_files import ServerPathError, public_name
from explorer.ui.erf import folder_problem
from explorer.ui.loading import NETWORK_LOCK, idle_timeout_s, server_governor, session_owner
from explorer.ui.sidebar import Selection
from explorer.ui.uploads import session_space, typed_dataset
from explorer.ui.widgets import remember, remembered
from explorer.upsample import FCAM, UPSAMPLERS

logger = logging.getLogger(__name__)

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
    owner: str = ""  # "shipped", "yours" (fitted in this session) or "this server's" (trained from the CLI)

    @property
    def label(self) -> str:
        where = self.owner or ("shipped" if self.shipped else "yours")
        val = self.card.get("val", {})
        score = f", val MaxBoxAcc {val['max_box_acc']:.1f}" if "max_box_acc" in val else ""
        return f"{Path(self.path).name} · from {METHODS[self.base_method].label}{score} [{where}]"


def fcam_user_dir() -> Path:
    """Where this session's fitted decoders go: its private space, never listed for another."""
    return session_space().decoders


def fcam_server_dir() -> Path:
    """Decoders the server's operator trained into runs/fcam (python -m explorer train-fcam)."""
    return runs_dir() / "fcam"


def decoder_choices(state: Selection) -> tuple[list[DecoderChoice], list[str]]:
    """The decoders that fit the sidebar's backbone, weights and layer (shipped first, then the
    user's, newest first), and one line per decoder file whose card could not be read."""
    from explorer.fcam.decoder import FCAM_DIR, read_decoder_card

    backbone = state.backbone
    found, problems = [], []
    for folder, owner in ((FCAM_DIR, "shipped"), (fcam_server_dir(), "this server's"), (fcam_user_dir(), "yours")):
        shipped = owner == "shipped"
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
            found.append(DecoderChoice(str(path), path.stat().st_mtime, card["base_method"], shipped, card, owner))
    found += _carried_decoders(state, {choice.path for choice in found}, problems)
    return found, problems


def _carried_decoders(state: Selection, listed: set[str], problems: list[str]) -> list[DecoderChoice]:
    """Decoders chosen elsewhere in this session that no folder above lists: the one an
    evaluation scored, carried by Failure Cases' "Open in Compare" (a server-side path from the
    evaluation's summary, never one a visitor typed)."""
    from explorer.fcam.decoder import read_decoder_card

    carried: list[DecoderChoice] = []
    for method in METHODS:
        wanted = remembered(f"decoder.{state.backbone.name}.{state.layer}.{method}", None)
        if not wanted or wanted in listed or not Path(wanted).is_file():
            continue
        try:
            card = read_decoder_card(wanted)
        except FcamError as exc:
            problems.append(str(exc))
            continue
        if card["backbone"] == state.backbone.name and card["layer"] == state.layer and card["base_method"] == method:
            carried.append(DecoderChoice(wanted, Path(wanted).stat().st_mtime, method, False, card, "the evaluation's"))
    return carried


def validation_score(choice: DecoderChoice) -> float:
    """How a decoder scored when it was selected: validation MaxBoxAcc (PxAP for masks-only data)."""
    val = choice.card.get("val", {})
    return float(val.get("max_box_acc", val.get("pxap", float("-inf"))))


def best_decoder(choices: list[DecoderChoice]) -> DecoderChoice:
    """The decoder with the best validation score (the first of equals)."""
    return max(choices, key=validation_score)


#: Kept for teaching benchmark v1, which colour alone solves; never offered in place of the current ones.
TEACHING_BACKBONES = ("synthetic_v1_lite0", "synthetic_v1_cnn")


def fallback_decoder_backbone() -> tuple[str, float] | None:
    """The backbone (of the current benchmark) whose best shipped decoder scored highest on its
    validation split, with that score: where the F-CAM page opens when the sidebar's backbone has
    no decoder."""
    from explorer.fcam.decoder import backbones_with_shipped_decoders, read_decoder_card, shipped_decoders

    best: tuple[str, float] | None = None
    for name in backbones_with_shipped_decoders():
        if name in TEACHING_BACKBONES:
            continue
        for path in shipped_decoders(name).values():
            try:
                val = read_decoder_card(path).get("val", {})
            except FcamError:
                continue
            score = float(val.get("max_box_acc", val.get("pxap", float("-inf"))))
            if best is None or score > best[1]:
                best = (name, score)
    return best


def evaluation_thresholds(choice: DecoderChoice) -> tuple[float | None, float | None]:
    """(tau of the base CAM + bilinear, tau of the F-CAM) as the newest evaluation that scored this
    decoder chose them (its best MaxBoxAcc thresholds); None where no evaluation did."""
    for run, method in runs_with_decoder(choice.path, list_runs(own=session_space().runs)):
        taus = []
        for upsampler in ("bilinear", FCAM):
            try:
                taus.append(run.row(method, upsampler).get("best_threshold"))
            except ExplorerError:
                taus.append(None)
        return taus[0], taus[1]
    return None, None


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
    with NETWORK_LOCK:
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


def _fcam_jobs() -> dict:
    return st.session_state.setdefault("fcam.jobs", {})


def fcam_job() -> TrainingJob | None:
    return _fcam_jobs().get("current")


def _classify_fit_error(exc: BaseException) -> tuple[JobStatus, str | None]:
    from explorer.fcam_train import FcamInterrupted

    if isinstance(exc, FcamInterrupted):
        return JobStatus.STOPPED, None
    if isinstance(exc, (ExplorerError, OSError)):
        return JobStatus.FAILED, str(exc)
    logger.error("Unexpected error while fitting an F-CAM decoder", exc_info=exc)
    return JobStatus.FAILED, "Something went wrong while fitting; the details are in the server log."


def start_fcam_fit(state: Selection, spec: str, base_method: str, epochs: int, limit: int) -> TrainingJob:
    """Start fitting a decoder on `spec` (a folder, a synthetic or protocol dataset) in a thread."""
    from explorer.fcam_train import FcamConfig, train_fcam

    spec = typed_dataset(spec)  # inside the shared roots or this session's uploads, resolved
    backbone = state.backbone
    val_limit = min(int(limit), 300)
    config = FcamConfig(backbone=backbone.name, weights=backbone.weights, base_method=base_method, layer=state.layer,
                        dataset=spec, epochs=int(epochs), train_limit=int(limit), val_limit=val_limit)
    config.check()
    digest = hashlib.sha256(repr(config).encode()).hexdigest()[:8]
    kind, _, where = spec.partition(":")
    name = slug(f"{kind}-{Path(where).name}" if where else kind)  # e.g. folder-photos (never the token)
    out = fcam_user_dir() / f"{backbone.name}__{base_method}__{name}-{digest}.pt"
    # The card records the command that reproduces the decoder: an argument list, quoted once.
    argv = ["python", "-m", "explorer", "train-fcam", "--backbone", backbone.name, "--weights", backbone.weights,
            "--base-method", base_method, "--layer", state.layer, "--dataset", spec, "--epochs", str(epochs),
            "--train-limit", str(limit), "--val-limit", str(val_limit), "--out", str(out)]

    def work(job: ThreadJob) -> None:
        own = load_backbone(backbone.name, backbone.weights)  # the shared model stays untouched
        train_fcam(config, out, command=shlex.join(argv), backbone=own, progress=fit.progress,
                   should_stop=job.should_stop)

    owner, alive = session_owner()
    fit = TrainingJob(work, {"spec": public_name(spec), "base_method": base_method, "epochs": epochs, "limit": limit,
                             "backbone": backbone.name, "weights": backbone.weights, "layer": state.layer}, out,
                      name="fcam-fit", classify=_classify_fit_error, governor=server_governor(), owner=owner,
                      alive=alive, idle_timeout_s=idle_timeout_s())
    _fcam_jobs()["current"] = fit
    return fit.start()


def stop_fcam_fit() -> None:
    job = fcam_job()
    if job is not None and job.status in (JobStatus.RUNNING, JobStatus.QUEUED):
        job.request_stop()


def dataset_problem(spec: str) -> str | None:
    """A quick check of a dataset typed on the F-CAM page (inside the shared roots only); None
    when it looks usable."""
    try:
        checked = typed_dataset(spec)
    except ServerPathError as exc:
        return str(exc)
    kind, _, where = checked.partition(":")
    if kind == "folder":
        return folder_problem(where)
    return None
