"""The metrics pages' glue: finished evaluations (choose, read, tabulate), the in-page evaluation
form, failure cases, Extended-CAM Table 4 on a dataset and the downscale simulation."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import streamlit as st
from PIL import Image

from explorer import views
from explorer.backbones import Backbone, backbone_names, load_backbone
from explorer.controls import CONTROLS
from explorer.datasets.errors import DatasetError
from explorer.fcam.decoder import FcamError
from explorer.images import image_digest
from explorer.jobs import Job
from explorer.methods import METHODS
from explorer.metrics.intervals import with_interval
from explorer.pipeline import fcam_at, grid_maps
from explorer.presets import sigma_presets
from explorer.runs import runs_dir, slug
from explorer.server_files import public_name
from explorer.ui.loading import NETWORK_LOCK, load_cached_backbone, server_governor
from explorer.ui.maps import DEFAULT_METHODS, method_name
from explorer.ui.sidebar import WEIGHT_LABELS, ImageChoice, Selection
from explorer.ui.uploads import session_space, typed_dataset
from explorer.ui.widgets import (
    WIDGET_PREFIX,
    attempt,
    multiselect,
    number_input,
    remember,
    remembered,
    selectbox,
    set_widget,
    text_input,
)
from explorer.upsample import FCAM

EVAL_METHODS = ("cam", "gradcam", "gradcampp", "xgradcam", "layercam", "extendedcam")
EVAL_UPSAMPLERS = ("bilinear", "gaussian", "nearest", "bicubic")
EVAL_LIMIT = (8, 600, 64)  # images: min, max, default of the in-page evaluation
TABLE4_METHODS = ("gradcam", "gradcampp", "extendedcam")  # Extended-CAM Table 4's equations
TABLE4_UPSAMPLERS = ("gaussian", "bilinear")


def _combo(key: str) -> tuple[str, str]:
    method, _, upsampler = key.partition("@")
    return method, upsampler


def combo_label(method: str, upsampler: str) -> str:
    if method.startswith("reference_"):
        return {"reference_object": "reference: whole-object mask",
                "reference_part": "reference: discriminative part only"}.get(method, method)
    if method.startswith("control_"):  # a map that uses no network
        return f"control: {CONTROLS.get(method[len('control_'):], method)}"
    return f"{METHODS[method].label} · {'F-CAM decoder' if upsampler == FCAM else upsampler}"


def available_runs():
    """This session's own evaluations, the server's, then the shipped ones (never another session's)."""
    from explorer.runs import list_runs

    return list_runs(own=session_space().runs)


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
    combos = [c for c in run.combos if references or not c[0].startswith(("reference_", "control_"))]
    keys = [f"{m}@{u}" for m, u in combos]
    default = [k for k in keys if k.startswith("cam@") or k.startswith("reference_")] or keys[:default_count]
    chosen = multiselect("Methods and upsamplers", name, keys, default,
                         format_func=lambda k: combo_label(*k.split("@", 1)))
    return [_combo(k) for k in chosen]


def choose_combo(run, name: str) -> tuple[str, str] | None:
    combos = [c for c in run.combos if not c[0].startswith(("reference_", "control_"))]
    if not combos:
        st.info("This evaluation holds no CAM method.")
        return None
    keys = [f"{m}@{u}" for m, u in combos]
    key = selectbox("Method and upsampler", name, keys, keys[0], format_func=lambda k: combo_label(*k.split("@", 1)))
    return _combo(key)


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


def summary_table(run, combos: Sequence[tuple[str, str]] | None = None,
                  localisation_only: bool = False) -> list[dict[str, Any]]:
    """The evaluation's rows as a table (percentages to 0.1). A cell a row cannot have (a control or
    reference map has no class, hence no top-1 localisation or Average Drop) reads "—", never None.
    `localisation_only` keeps the localisation columns (a page's width holds them at 1280 px)."""
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
            if key in row and row[key] is not None:
                out[label] = f"{row[key]:.3f}" if key == "best_threshold" else f"{row[key]:.1f}"
            else:
                out[label] = "—"
        rows.append(out)
    confidence = {"Average Drop %", "% Increase", "Avg Drop % (relative)", "% Increase (relative)"}
    present = [label for label in names.values() if any(r[label] != "—" for r in rows)
               and not (localisation_only and label in confidence)]
    return [{k: v for k, v in r.items() if k == "method and upsampler" or k in present} for r in rows]


def decoder_test_rows(decoder_path: str) -> list[dict[str, Any]]:
    """How a decoder scored wherever an evaluation scored it, beside its own seeds upsampled
    without it and the centre baseline of the same images; then the F-CAM paper's Table 1 (VGG16)
    for the same seeds. Every number with its 95 % interval where one is stored."""
    from explorer.fcam.paper import TABLE1_CENTRE, TABLE1_VGG
    from explorer.runs import runs_with_decoder

    def cells(row: dict) -> dict[str, str]:
        return {label: with_interval(row, key, "—")
                for key, label in (("max_box_acc", "MaxBoxAcc"), ("max_box_acc_v2", "MaxBoxAccV2"), ("pxap", "PxAP"))}

    table: list[dict[str, Any]] = []
    method = ""
    for run, method in runs_with_decoder(decoder_path, available_runs()):
        where = f"{run.path.name} ({run.summary['config']['split']}, {run.summary['num_images']} images)"
        for combo in ((method, "bilinear"), (method, "gaussian"), (method, FCAM), ("control_centre", "exact")):
            if combo in run.combos:
                table.append({"evaluation": where, "map": combo_label(*combo), **cells(run.row(*combo))})
    paper = TABLE1_VGG.get(method)
    if table and paper:
        before, after = paper["cub_max_box_acc"]
        pxap_before, pxap_after = paper["openimages_pxap"]
        for label, box, pxap in ((METHODS[method].label, before, pxap_before),
                                 (f"{METHODS[method].label} + F-CAM", after, pxap_after),
                                 ("centre baseline", TABLE1_CENTRE["cub_max_box_acc"], TABLE1_CENTRE["openimages_pxap"])):
            table.append({"evaluation": "F-CAM paper, Table 1 (VGG16)",
                          "map": label, "MaxBoxAcc": f"{box:.1f}", "MaxBoxAccV2": "—", "PxAP": f"{pxap:.1f}"})
    return table


SMALL_N = 100  # below this many images, a table of Average Drop / % Increase is a sketch, not a ranking


def _interval(row: dict, key: str, digits: int = 1, between: str = " to ") -> str:
    interval = row.get(f"{key}_ci")
    return f"{interval[0]:.{digits}f}{between}{interval[1]:.{digits}f}" if interval else "not stored"


CONFIDENCE_COLUMNS = (("average_drop_relative", "Avg Drop % (relative)"), ("increase_relative", "% Increase (relative)"),
                      ("average_drop", "Avg Drop % (normal)"), ("increase", "% Increase (normal)"))


def confidence_table(rows: Sequence[dict], part: str = "confidence") -> list[dict[str, Any]]:
    """Extended-CAM Tables 2-4 (`part` "confidence") or the faithfulness measures an evaluation
    took with them (`part` "faithfulness") as rows: each cell a number and its 95 % bootstrap
    interval, "39.86 [37.1, 42.5]", so that a table of four or five measures fits the page at
    1280 px. None when no row holds the part's measures."""
    columns = CONFIDENCE_COLUMNS if part == "confidence" else FAITHFULNESS_COLUMNS
    digits = (2, 1) if part == "confidence" else (3, 2)
    table = []
    for r in rows:
        if "average_drop" not in r or not any(key in r for key, _ in columns):
            continue
        line: dict[str, Any] = {"map": combo_label(r["method"], r["upsampler"]), "n": r.get("images")}
        for key, label in columns:
            if key in r:
                line[label] = f"{r[key]:.{digits[0]}f} [{_interval(r, key, digits[1], ', ')}]"
        table.append(line)
    return table


FAITHFULNESS_COLUMNS = (("confidence_change", "Δ p_c (masked)"), ("deletion_auc", "deletion AUC ↓"),
                        ("insertion_auc", "insertion AUC ↑"), ("road_morf", "ROAD MoRF ↓"), ("road_lerf", "ROAD LeRF ↑"))
FAITHFULNESS_NOTE = ("Δ p_c (masked): p_c(x·M) − p_c(x); deletion / insertion: the AUC of p_c as the map's pixels are "
                     "removed or inserted (RISE); ROAD: mean p_c after removing the most (MoRF) or least (LeRF) "
                     "relevant pixels with noisy linear imputation. ↓ lower is better, ↑ higher is better; "
                     "[95 % bootstrap interval].")


def confidence_warnings(rows: Sequence[dict], images: int) -> list[str]:
    """What a reader must know before ranking these rows: too few images, or overlapping intervals."""
    from explorer.metrics.intervals import ranking_note

    notes = []
    if images < SMALL_N:
        step = 100.0 / images if images else 100.0
        notes.append(f"Only {images} images: % Increase moves in steps of {step:.1f} points and the intervals are "
                     f"wide; use a dataset of at least {SMALL_N} images to rank the methods.")
    for key, lower, what in (("average_drop_relative", True, "Average Drop % (relative)"),
                             ("increase_relative", False, "% Increase (relative)")):
        note = ranking_note(list(rows), key, lower, what)
        if note:
            notes.append(note)
    return notes


@st.cache_resource(max_entries=4, show_spinner="Opening the dataset…")
def open_cached_dataset(spec: str, split: str):
    from explorer.datasets import open_dataset

    return open_dataset(spec, split, strict=False)


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
        if st.button("Run evaluation", key=WIDGET_PREFIX + f"{name}.go", type="primary"):
            attempt("evaluating the dataset",
                    lambda: _run_evaluation(typed_dataset(spec), split, backbone_name, methods, upsamplers, int(limit)))


def _run_evaluation(spec: str, split: str, backbone_name: str, methods: Sequence[str], upsamplers: Sequence[str],
                    limit: int) -> None:
    from explorer.evaluate import EvalConfig, evaluate

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
                        upsamplers=tuple(upsamplers), sigma=(float(sigma[0]), float(sigma[1])), limit=limit, decoders=decoders)
    digest = hashlib.sha256(repr(config).encode()).hexdigest()[:8]
    out = session_space().runs / f"{slug(backbone_name)}-{slug(public_name(spec))}-{split}-{limit}-{digest}"
    bar = st.progress(0.0, text="Starting…")

    def progress(done: int, total: int) -> None:
        bar.progress(done / max(total, 1), text=f"{done} / {total} images")

    def waiting(position: int) -> None:
        bar.progress(0.0, text=f"Waiting for a free slot: number {position} in the queue (the server runs "
                               f"{server_governor().limit or 'any number of'} long job(s) at once)")

    with server_governor().slot(Job(), cancelled=lambda: False, on_wait=waiting):
        summary = evaluate(config, out, backbone=backbone, progress=progress)
    assert summary is not None  # one process: always summarised
    bar.progress(1.0, text=f"Done: {summary.num_images} images in {summary.seconds:.0f} s")
    remember("run", str(out))
    set_widget("run", str(out))
    st.rerun()


def failure_types(run, method: str, upsampler: str) -> dict[str, tuple[str, bool]]:
    """image id -> (failure type, wrong class) of every image the evaluation scored with this map
    (explorer.metrics.failures); empty when its dataset has no boxes."""
    return _failure_types(_run_stamp(run), method, upsampler, _run=run)


@st.cache_data(max_entries=32, show_spinner="Sorting the failures by type…")
def _failure_types(stamp: str, method: str, upsampler: str, *, _run) -> dict[str, tuple[str, bool]]:
    from explorer.metrics.failures import failure_type

    config = _run.summary["config"]
    dataset = open_cached_dataset(config["dataset"], config["split"])
    if "boxes" not in dataset.kind:
        return {}
    index_of = {sample.image_id: i for i, sample in enumerate(dataset)}
    out = {}
    for record in run_records(_run, method, upsampler):
        i = index_of.get(record["image_id"])
        if i is None:
            continue
        box = None if record.get("box_x0") is None else [record[k] for k in ("box_x0", "box_y0", "box_x1", "box_y1")]
        wrong_class = record.get("label") is not None and record.get("predicted") not in (None, record["label"])
        out[record["image_id"]] = (failure_type(box, dataset.gt_boxes(i)), bool(wrong_class))
    return out


def failure_counts(run) -> list[dict[str, Any]]:
    """Per method x upsampler of the evaluation: how many images fall in each failure type (and
    how many were classified wrongly), as a table."""
    from explorer.metrics.failures import FAILURE_TYPES, HIT

    rows = []
    for method, upsampler in run.combos:
        if method.startswith(("reference_", "control_")):
            continue
        types = failure_types(run, method, upsampler)
        if not types:
            return []
        kinds = [kind for kind, _ in types.values()]
        rows.append({"map": combo_label(method, upsampler), HIT: kinds.count(HIT),
                     **{kind: kinds.count(kind) for kind in FAILURE_TYPES},
                     "wrong class": sum(wrong for _, wrong in types.values()), "images": len(kinds)})
    return rows


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
    decoders = {method: _run_decoder(_run, method, backbone)} if upsampler == FCAM else {}
    with NETWORK_LOCK:
        batch = backbone.preprocess(images)
        result = grid_maps(backbone, batch, targets, [method], config.get("layer"), relu=config.get("relu", "none"),
                           decoders=decoders)
    if upsampler == FCAM:  # the decoder's foreground probability, as the evaluation scored it
        maps = fcam_at(result.fcam[method], (224, 224)).cpu().numpy()
    else:
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


def _run_decoder(run, method: str, backbone: Backbone):
    """The decoder an evaluation scored for `method`, loaded once per file and backbone."""
    from explorer.runs import run_decoder_file

    path = run_decoder_file(run, method)
    return _cached_run_decoder(str(path), path.stat().st_mtime if path.is_file() else 0.0, backbone.name,
                               backbone.weights, _backbone=backbone)


@st.cache_resource(max_entries=6, show_spinner="Loading the evaluation's F-CAM decoder…")
def _cached_run_decoder(path: str, stamp: float, backbone_name: str, weights: str, *, _backbone: Backbone):
    """Shared by all sessions and never modified: eval mode, forwards only."""
    from explorer.fcam import load_decoder

    return load_decoder(path, _backbone)


def open_in_compare(run, tile: FailureTile, method: str, upsampler: str) -> bool:
    """Make this image, backbone, layer, class, method and upsampler the current choices (the
    caller then switches to the Compare page)."""
    from explorer.images import MAX_FILE_BYTES
    from explorer.safe_files import read_regular

    config = run.summary["config"]
    data = read_regular(tile.image_path, MAX_FILE_BYTES)  # the one size-checked reader, as every dataset file
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
    if upsampler == FCAM:  # the decoder the evaluation scored, not whichever the F-CAM page last chose
        from explorer.runs import run_decoder_file

        layer = config.get("layer") or load_cached_backbone(config["backbone"], config["weights"]).default_layer
        remember(f"decoder.{config['backbone']}.{layer}.{method}", str(run_decoder_file(run, method)))
    return True


def confidence_grid(spec: str, backbone: Backbone, layer: str, sigma: tuple[float, float]):
    """Extended-CAM Table 4 on a dataset: Average Drop % and % Increase (normal and relative
    masking) for Grad-CAM, Grad-CAM++ and Extended-CAM with Gaussian and bilinear upsampling.
    Written under runs/ like any evaluation, so it is computed once per choice."""
    return _confidence_grid(typed_dataset(spec), backbone.name, backbone.weights, layer, (float(sigma[0]), float(sigma[1])),
                            _backbone=backbone)


@st.cache_data(max_entries=8, show_spinner="Masking the images by each map and re-classifying them…")
def _confidence_grid(spec: str, backbone_name: str, weights: str, layer: str, sigma: tuple[float, float], *,
                     _backbone: Backbone) -> dict:
    from explorer.evaluate import EvalConfig, evaluate

    split = "val" if spec.startswith("voc:") else "test"  # VOC 2007's test half is often not installed
    config = EvalConfig(dataset=spec, split=split, backbone=backbone_name, weights=weights, layer=layer,
                        methods=TABLE4_METHODS, upsamplers=TABLE4_UPSAMPLERS, sigma=sigma, references=False,
                        batch_size=8)
    digest = hashlib.sha256(repr(config).encode()).hexdigest()[:10]
    out = runs_dir() / "table4" / f"{slug(backbone_name)}-{slug(public_name(spec))}-{digest}"
    with server_governor().slot(Job(), cancelled=lambda: False), NETWORK_LOCK:
        summary = evaluate(config, out, backbone=_backbone)
    assert summary is not None  # one process: always summarised
    return {"rows": summary.rows, "images": summary.num_images, "skipped": summary.skipped,
            "policy": summary.target_policy}


DOWNSCALE_IMAGES = (10, 300, 100)
DOWNSCALE_DEFAULT = ("synthetic", 100, 0.5, "bilinear")  # (masks dataset, images, σ per cell, downscale): on opening


def downscale_curves(spec: str, split: str, count: int, sigma_cells: float, downscale: str) -> dict:
    return _downscale_curves(typed_dataset(spec), split, int(count), float(sigma_cells), downscale)


@st.cache_data(max_entries=16, show_spinner="Downscaling and restoring the masks…")
def _downscale_curves(spec: str, split: str, count: int, sigma_cells: float, downscale: str) -> dict:
    from explorer.metrics.downscale import ZOOMS, downscale_pxap, restored_masks

    dataset = open_cached_dataset(spec, split)
    if "masks" not in dataset.kind:
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
