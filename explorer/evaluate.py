"""Dataset evaluation: every (method, upsampler) pair over a dataset, resumable and shardable.

    config = EvalConfig(dataset="synthetic", split="test", backbone="synthetic_lite0",
                        methods=("cam", "gradcam"), upsamplers=("bilinear", "gaussian"))
    summary = evaluate(config, "runs/lite0")          # runs/lite0/summary.{json,csv}, records.csv

The dataset is cut into chunks of ``batch_size`` images. Each chunk is one batch through the
pipeline (one capture for all gradient methods), and its results are written to
``chunks/chunk-<index>.npz`` by an atomic rename, so a chunk file either holds a finished chunk
or does not exist: an interrupted run, restarted with the same settings, skips the chunks that
exist. With several processes (``torchrun``), process ``rank`` of ``world`` takes the chunks
``i`` with ``i % world == rank`` and rank 0 assembles the summary from all chunk files, which gives
exactly the numbers of one process: box metrics are rebuilt from each image's exact per-mask
curves, PxAP from summed integer histograms.

What a chunk keeps, per (method, upsampler):
* each image's box curves (``ImageCurves``: the IoU of the largest contour and the best IoU over
  all contours at every distinct binary mask, and which mask each threshold gives), so MaxBoxAcc,
  MaxBoxAccV2, the BoxAcc curves and every image's IoU at the chosen threshold are exact;
* the positive/negative pixel histograms over the threshold bins (PxAP and its PR curve) and
  each image's own PxAP, for masks datasets;
* histograms of map values over foreground and background pixels (F-CAM Fig. 6);
* the softmax confidence of the target on the image masked by the map, normal and relative
  (top 50 %) masking, for Average Drop % and % Increase (Extended-CAM Tables 2-3).

Maps are min-max normalised (the protocol's ``normalize_scoremap``) after upsampling to the
protocol's 224 x 224. With a masks dataset, two reference rows score maps built from the
ground truth itself: the whole object (what a perfect localiser gives) and, on the synthetic
benchmark, only the class-deciding part (what a classifier's evidence covers).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from explorer.atomic import save_npz_atomically, write_atomically
from explorer.backbones import Backbone, load_backbone
from explorer.controls import CONTROLS, control_maps
from explorer.datasets.errors import DatasetError
from explorer.errors import ExplorerError
from explorer.images import ImageError
from explorer.methods import validate_methods
from explorer.metrics import (
    IOU_LEVELS,
    BoxEvaluator,
    ImageCurves,
    PixelEvaluator,
    average_drop_increase,
    localization_accuracy,
    score_map_to_uint8,
    thresholds,
)
from explorer.metrics.boxes import image_curves_uint8
from explorer.metrics.faithfulness import deletion_insertion, road
from explorer.metrics.intervals import (
    LEVEL,
    REPLICATES,
    bootstrap_weights,
    hit_curves,
    joint_localization,
    joint_localization_v2,
    max_acc_interval,
    max_box_acc_v2_interval,
    mean_interval,
    pxap_interval,
    topk_correct,
)
from explorer.pipeline import fcam_at, grid_maps
from explorer.safe_files import UnsafeFileError, file_problem, read_json
from explorer.upsample import FCAM, UPSAMPLERS, UpsampleError, normalise, upsample

EVAL_SIZE = 224
VALUE_BINS = 50
REFERENCE_UPSAMPLER = "exact"
REFERENCES = {"object": "ground-truth object mask (a perfect localiser)",
              "part": "class-deciding part mask (the evidence a classifier needs)"}
CHUNK_VERSION = 2


class EvaluateError(ExplorerError):
    """The evaluation cannot run or resume as asked; the message says why."""


@dataclass(frozen=True)
class EvalConfig:
    """Everything that decides the numbers; a resumed run must have the same."""

    dataset: str
    backbone: str
    methods: tuple[str, ...]
    upsamplers: tuple[str, ...] = ("bilinear", "gaussian")
    split: str = "test"
    weights: str = "pretrained"
    layer: str | None = None
    sigma: tuple[float, float] | None = None
    relu: str = "none"
    threshold_interval: float = 0.001
    batch_size: int = 16
    confidence: bool = True
    references: bool = True
    controls: bool = True        # network-free maps scored beside the methods (explorer.controls)
    faithfulness: tuple[str, ...] = ()  # any of FAITHFULNESS: extra forwards per image and combo
    limit: int | None = None
    method_options: dict = field(default_factory=dict)
    decoders: dict = field(default_factory=dict)  # base method -> F-CAM decoder file (upsampler "fcam")

    def combos(self) -> list[tuple[str, str]]:
        """(method, upsampler) pairs; "fcam" pairs only a method that a decoder was trained from."""
        return [(m, u) for m in self.methods for u in self.upsamplers if u != FCAM or m in self.decoders]


@dataclass
class EvalSummary:
    rows: list[dict]
    out_dir: Path
    num_images: int
    skipped: list[dict]
    seconds: float
    classification_accuracy: float | None
    target_policy: str

    def row(self, method: str, upsampler: str) -> dict:
        return next(r for r in self.rows if r["method"] == method and r["upsampler"] == upsampler)


FAITHFULNESS = ("deletion", "insertion", "road")
PER_IMAGE_FAITHFULNESS = ("deletion_auc", "insertion_auc", "road_morf", "road_lerf")
FAITHFULNESS_STEPS = 32  # deletion / insertion: p_c at 33 fractions (RISE: 224 for 224 x 224)


def combo_key(method: str, upsampler: str) -> str:
    return f"{method}@{upsampler}"


# -------------------------------------------------------------------------- the run

def evaluate(
    config: EvalConfig,
    out_dir: str | os.PathLike[str],
    *,
    backbone: Backbone | None = None,
    device: str | torch.device | None = None,
    progress: Callable[[int, int], object] | None = None,
    rank: int = 0,
    world: int = 1,
    summarise: bool | None = None,
) -> EvalSummary | None:
    """Run (or resume) the evaluation into ``out_dir``; return the summary (rank 0 only).

    ``progress(done_images, total_images)`` is called after each chunk this process finishes
    (and once at the start, counting the chunks already on disk).
    """
    from explorer.datasets import open_dataset

    start_time = time.perf_counter()
    methods = tuple(validate_methods(config.methods))
    for up in config.upsamplers:
        if up not in UPSAMPLERS and up != FCAM:
            raise UpsampleError(f"Unknown upsampler '{up}'; use one of {', '.join(UPSAMPLERS + (FCAM,))}.")
    if FCAM in config.upsamplers and not any(m in config.decoders for m in methods):
        raise EvaluateError("the F-CAM upsampler needs a decoder trained from one of the methods evaluated "
                            f"({', '.join(methods)}); train one with `python -m explorer train-fcam`")
    if config.batch_size < 1:
        raise EvaluateError("the batch size must be at least 1")
    unknown = [f for f in config.faithfulness if f not in FAITHFULNESS]
    if unknown:
        raise EvaluateError(f"unknown faithfulness measure(s) {', '.join(unknown)}; use {', '.join(FAITHFULNESS)}")
    out = Path(out_dir)
    chunk_dir = out / "chunks"
    chunk_dir.mkdir(parents=True, exist_ok=True)
    _check_or_write_config(out, config, rank)

    dataset = open_dataset(config.dataset, config.split, strict=False)
    count = len(dataset) if config.limit is None else min(config.limit, len(dataset))
    if count == 0:
        raise EvaluateError(f"{config.dataset} ({config.split}) has no image to evaluate")
    if backbone is None:
        backbone = load_backbone(config.backbone, config.weights, device=device)
    layer = backbone.resolve_layer(config.layer)
    decoders = load_decoders(config, backbone)
    sigma = config.sigma
    if "gaussian" in config.upsamplers and sigma is None:
        raise EvaluateError("the Gaussian upsampler needs a sigma (x, y) in input pixels")
    taus = thresholds(config.threshold_interval)
    n_chunks = math.ceil(count / config.batch_size)
    mine = [i for i in range(n_chunks) if i % world == rank]
    policy = _target_policy(dataset, backbone)
    check_labels(dataset, backbone, count)

    done = sum(min(config.batch_size, count - i * config.batch_size) for i in mine if _chunk_path(out, i).is_file())
    if progress is not None:
        progress(done, sum(min(config.batch_size, count - i * config.batch_size) for i in mine))
    for index in mine:
        path = _chunk_path(out, index)
        if path.is_file():
            continue
        first = index * config.batch_size
        indices = list(range(first, min(first + config.batch_size, count)))
        arrays = _evaluate_chunk(config, dataset, backbone, layer, methods, sigma, taus, indices, policy, decoders)
        save_npz_atomically(path, arrays)
        done += len(indices)
        if progress is not None:
            progress(done, sum(min(config.batch_size, count - i * config.batch_size) for i in mine))

    if summarise is None:
        summarise = rank == 0
    if not summarise:
        return None
    missing = [i for i in range(n_chunks) if not _chunk_path(out, i).is_file()]
    if missing:
        raise EvaluateError(f"{len(missing)} chunk(s) are not finished yet (first: {missing[0]}); "
                            f"rerun to complete them")
    return summarise_run(out, config, n_chunks, count, dataset, time.perf_counter() - start_time, policy)


def load_decoders(config: EvalConfig, backbone: Backbone) -> dict:
    """The F-CAM decoders the config names (only when "fcam" is among the upsamplers)."""
    if FCAM not in config.upsamplers:
        return {}
    from explorer.fcam import FcamError, load_decoder

    decoders = {}
    for method, path in config.decoders.items():
        if method not in config.methods:
            continue
        try:
            decoder = load_decoder(path, backbone)
        except FcamError as exc:
            raise EvaluateError(str(exc)) from exc
        if decoder.base_method != method or decoder.layer != backbone.resolve_layer(config.layer):
            raise EvaluateError(f"{Path(path).name} was trained from {decoder.base_method} on layer {decoder.layer}, "
                                f"not {method} on {backbone.resolve_layer(config.layer)}")
        decoders[method] = decoder
    return decoders


def _target_policy(dataset, backbone: Backbone) -> str:
    """Which class each map explains: the ground-truth label when the dataset's classes are the
    backbone's (the WSOL protocol), else the backbone's top-1 prediction."""
    if dataset.classes and list(dataset.classes) == list(backbone.class_names):
        return "label"
    if dataset.classes and len(dataset.classes) == len(backbone.class_names):
        return "label"
    return "predicted"


def check_labels(dataset, backbone: Backbone, count: int) -> None:
    """A label the classifier has no class for cannot be its ground truth: say so, rather than
    silently explain its prediction instead."""
    n = len(backbone.class_names)
    for i in range(count):
        label = dataset[i].label
        if label is not None and not 0 <= int(label) < n:
            raise EvaluateError(f"image '{dataset[i].image_id}' has label {label}, but {backbone.name} has {n} classes "
                                f"(0 to {n - 1}); a dataset's labels must be the classifier's classes")


def _chunk_path(out: Path, index: int) -> Path:
    return out / "chunks" / f"chunk-{index:06d}.npz"


def _config_json(config: EvalConfig) -> str:
    return json.dumps(asdict(config), sort_keys=True, indent=2)


def _check_or_write_config(out: Path, config: EvalConfig, rank: int) -> None:
    path = out / "config.json"
    text = _config_json(config)
    if path.is_file():
        try:
            old = read_json(path)
        except UnsafeFileError:
            old = None
        if old != json.loads(text):
            raise EvaluateError(f"{out} holds an evaluation with other settings (see {path}); choose another "
                                f"--out folder, or delete that one to start over")
        return
    if rank == 0:
        write_atomically(path, text.encode())


# -------------------------------------------------------------------------- one chunk

def _evaluate_chunk(config: EvalConfig, dataset, backbone: Backbone, layer: str, methods: Sequence[str],
                    sigma, taus: np.ndarray, indices: list[int], policy: str,
                    decoders: dict | None = None) -> dict[str, np.ndarray]:
    has_boxes = "boxes" in dataset.kind
    has_masks = "masks" in dataset.kind
    images, kept, skipped = [], [], []
    gt_boxes, gt_masks, ignores, parts = [], [], [], []
    for i in indices:
        try:  # everything about the image first: one unreadable file skips the image, not the run
            image = dataset.load_image(i)
            boxes = dataset.gt_boxes(i, EVAL_SIZE) if has_boxes else None
            masks = dataset.gt_mask(i, EVAL_SIZE, image_size=image.size) if has_masks else None
            part = dataset.part_mask(i, EVAL_SIZE) if has_masks and dataset[i].part_path is not None else None
        except (ImageError, DatasetError, OSError) as exc:
            skipped.append((dataset[i].image_id, str(exc)))
            continue
        images.append(image)
        kept.append(i)
        if boxes is not None:
            gt_boxes.append(boxes)
        if masks is not None:
            gt_masks.append(masks[0])
            ignores.append(masks[1])
        if part is not None:
            parts.append(part)
    arrays: dict[str, np.ndarray] = {
        "version": np.array(CHUNK_VERSION),
        "skipped_ids": np.array([s[0] for s in skipped], dtype=str),
        "skipped_reasons": np.array([s[1] for s in skipped], dtype=str),
        "ids": np.array([dataset[i].image_id for i in kept], dtype=str),
    }
    if not kept:
        return arrays
    labels = np.array([-1 if dataset[i].label is None else int(dataset[i].label) for i in kept])
    batch = backbone.preprocess(images)
    with torch.no_grad():  # in float64, as average_drop_increase reads the masked images
        probs = torch.softmax(backbone.model(batch).double(), dim=1)
    k = min(5, probs.shape[1])
    top_p, top_i = probs.topk(k, dim=1)
    predicted = top_i[:, 0]
    if policy == "label" and (labels >= 0).all():
        targets = torch.as_tensor(labels, device=batch.device)
    else:
        targets = predicted
    arrays.update(labels=labels, targets=targets.cpu().numpy(), top_classes=top_i.cpu().numpy(),
                  top_probs=top_p.cpu().numpy().astype(np.float32))

    grid = grid_maps(backbone, batch, targets, methods, layer, relu=config.relu, decoders=decoders,
                     **config.method_options)
    full_confidence = probs.gather(1, targets.view(-1, 1))[:, 0].cpu()
    input_size = backbone.input_size
    for method, up in config.combos():
        if up == FCAM:  # the decoder's probability, scored as it is (the protocol does not normalise it)
            maps = fcam_at(grid.fcam[method], (EVAL_SIZE, EVAL_SIZE))
        else:
            # In float64 before the uint8 step, as the protocol's normalisation.
            maps = normalise(upsample(grid.maps[method], (EVAL_SIZE, EVAL_SIZE), up, sigma).double(), "minmax")
        maps_np = maps.detach().cpu().numpy().astype(np.float64)
        prefix = combo_key(method, up) + "/"
        _score(arrays, prefix, maps_np, taus, gt_boxes, gt_masks, ignores, has_boxes, has_masks)
        if config.confidence:
            if tuple(input_size) == (EVAL_SIZE, EVAL_SIZE):
                at_input = maps
            elif up == FCAM:
                at_input = fcam_at(grid.fcam[method], input_size)
            else:
                at_input = normalise(upsample(grid.maps[method], input_size, up, sigma), "minmax")
            for relative in (False, True):
                result = average_drop_increase(backbone.model, batch, at_input.float(), targets,
                                               relative=relative, mean=backbone.mean, std=backbone.std,
                                               batch_size=len(batch), full_confidence=full_confidence)
                name = "relative" if relative else "normal"
                arrays[prefix + "conf_full"] = result.confidence.astype(np.float64)
                arrays[prefix + f"conf_{name}"] = result.masked_confidence.astype(np.float64)
        if config.faithfulness:
            at_input = maps if tuple(input_size) == (EVAL_SIZE, EVAL_SIZE) else (
                fcam_at(grid.fcam[method], input_size) if up == FCAM
                else normalise(upsample(grid.maps[method], input_size, up, sigma), "minmax"))
            _faithfulness(arrays, prefix, config.faithfulness, backbone, batch, at_input.float(), targets)
    if config.controls:
        pixels = np.stack([np.asarray(image.convert("RGB").resize((EVAL_SIZE, EVAL_SIZE), Image.Resampling.BILINEAR))
                           for image in images])
        arrays.update(control_scores(pixels, taus, gt_boxes, gt_masks, ignores, has_boxes, has_masks))
    if config.references and has_masks:
        refs = {"object": np.stack(gt_masks).astype(np.float64)}
        if len(parts) == len(kept):
            refs["part"] = np.stack(parts).astype(np.float64)
        for name, maps_np in refs.items():
            prefix = combo_key(f"reference_{name}", REFERENCE_UPSAMPLER) + "/"
            _score(arrays, prefix, maps_np, taus, gt_boxes, gt_masks, ignores, has_boxes, has_masks)
    return arrays


# ---------------------------------------------------------------------- controls, once per image

CONTROL_CACHE_VERSION = 1
#: _score's outputs that add up over images; every other one is per image, concatenated in order.
SUMMED_SCORES = ("values_foreground", "values_background", "pos_hist", "neg_hist")


def control_cache_dir() -> Path:
    """Where scored control maps are kept: ``$CAM_EXPLORER_CONTROL_CACHE``, else ``controls/`` in
    the dataset cache (they are a few kB an image)."""
    from explorer.datasets.synthetic import default_cache_root

    env = os.environ.get("CAM_EXPLORER_CONTROL_CACHE")
    return Path(env).expanduser() if env else default_cache_root() / "controls"


def control_key(pixels: np.ndarray, taus: np.ndarray, boxes, mask, ignore, has_boxes: bool, has_masks: bool) -> str:
    """The content of everything a control's score depends on: the image's pixels at the
    evaluation size, its ground truth, the thresholds, the controls and this code's version. The
    same image in any evaluation of any classifier gets the same key, so the score is reused."""
    digest = hashlib.sha256(f"{CONTROL_CACHE_VERSION}|{CHUNK_VERSION}|{VALUE_BINS}|{','.join(CONTROLS)}|"
                            f"{has_boxes}|{has_masks}|{pixels.shape}".encode())
    for part in (pixels, taus, boxes, mask, ignore):
        if part is not None:
            array = np.ascontiguousarray(part)
            digest.update(f"{array.dtype}{array.shape}".encode())
            digest.update(array.tobytes())
    return digest.hexdigest()


def control_scores(pixels: np.ndarray, taus: np.ndarray, gt_boxes, gt_masks, ignores, has_boxes: bool,
                   has_masks: bool, cache: Path | None = None) -> dict[str, np.ndarray]:
    """Every control scored on every image, as `_score` would score the batch, each image read
    from the control cache when an earlier evaluation scored it (about 2.3 s an image for the five
    maps otherwise) and written there when not."""
    cache = control_cache_dir() if cache is None else cache
    per_image = []
    for i in range(len(pixels)):
        truth = (gt_boxes[i] if has_boxes else None, gt_masks[i] if has_masks else None,
                 ignores[i] if has_masks else None)
        path = cache / (key := control_key(pixels[i], taus, *truth, has_boxes, has_masks))[:2] / f"{key}.npz"
        scored = _read_scores(path)
        if scored is None:
            scored = {}
            for name in CONTROLS:
                prefix = combo_key(f"control_{name}", REFERENCE_UPSAMPLER) + "/"
                _score(scored, prefix, control_maps(name, pixels[i:i + 1]), taus, [truth[0]], [truth[1]], [truth[2]],
                       has_boxes, has_masks)
            try:
                save_npz_atomically(path, scored)
            except OSError:  # a read-only or full cache costs time, never the evaluation
                pass
        per_image.append(scored)
    return {key: (np.sum([s[key] for s in per_image], axis=0) if key.rpartition("/")[2] in SUMMED_SCORES
                  else np.concatenate([s[key] for s in per_image]))
            for key in per_image[0]}


def _read_scores(path: Path) -> dict[str, np.ndarray] | None:
    if file_problem(path) is not None:
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):  # damaged: scored again and rewritten
        return None


def _faithfulness(arrays: dict, prefix: str, measures: Sequence[str], backbone: Backbone, batch: torch.Tensor,
                  maps: torch.Tensor, targets: torch.Tensor) -> None:
    """Per-image deletion / insertion AUC and ROAD mean p_c (MoRF, LeRF) of a batch of maps."""
    mean, std = backbone.mean, backbone.std
    for mode in ("deletion", "insertion"):
        if mode in measures:
            curve = deletion_insertion(backbone.model, batch, maps, targets, mode=mode, steps=FAITHFULNESS_STEPS,
                                       mean=mean, std=std)
            arrays[prefix + f"{mode}_auc"] = curve.auc
            arrays[prefix + f"{mode}_curve"] = curve.probabilities
    if "road" in measures:
        for order in ("morf", "lerf"):
            arrays[prefix + f"road_{order}"] = road(backbone.model, batch, maps, targets, order=order, mean=mean,
                                                     std=std).auc


def _score(arrays: dict, prefix: str, maps: np.ndarray, taus: np.ndarray, gt_boxes, gt_masks, ignores,
           has_boxes: bool, has_masks: bool) -> None:
    """Reduce a batch of [0, 1] maps to what the summary and the pages need (see module doc)."""
    n = len(maps)
    if has_boxes:
        curves = [image_curves_uint8(score_map_to_uint8(m), b, taus) for m, b in zip(maps, gt_boxes)]
        sizes = np.array([len(c.iou_largest) for c in curves])
        arrays[prefix + "mask_of_threshold"] = np.stack([c.mask_of_threshold.astype(np.uint8) for c in curves])
        arrays[prefix + "masks_per_image"] = sizes
        for name in ("iou_largest", "box_largest", "iou_all", "box_all", "box_count"):
            arrays[prefix + name] = np.concatenate([getattr(c, name) for c in curves])
    fg_hist = np.zeros(VALUE_BINS, dtype=np.int64)
    bg_hist = np.zeros(VALUE_BINS, dtype=np.int64)
    for i in range(n):
        values = np.clip(maps[i], 0, 1)
        if has_masks:
            counted = ~(ignores[i] & ~gt_masks[i])
            fg_hist += np.histogram(values[gt_masks[i]], bins=VALUE_BINS, range=(0, 1))[0]
            bg_hist += np.histogram(values[~gt_masks[i] & counted], bins=VALUE_BINS, range=(0, 1))[0]
        else:
            bg_hist += np.histogram(values, bins=VALUE_BINS, range=(0, 1))[0]
    arrays[prefix + "values_foreground"] = fg_hist
    arrays[prefix + "values_background"] = bg_hist
    if has_masks:
        ev = PixelEvaluator(taus, keep_image_hists=True)
        ev.accumulate(maps, np.stack(gt_masks), np.stack(ignores))
        arrays[prefix + "pos_hist"] = ev.pos_hist
        arrays[prefix + "neg_hist"] = ev.neg_hist
        arrays[prefix + "image_pos_hist"] = np.stack(ev.image_pos_hists)
        arrays[prefix + "image_neg_hist"] = np.stack(ev.image_neg_hists)
        arrays[prefix + "image_pxap"] = np.array(ev._image_pxap, dtype=np.float64)


# -------------------------------------------------------------------------- the summary

def _curves_from(chunk, prefix: str) -> list[ImageCurves]:
    sizes = chunk[prefix + "masks_per_image"]
    ends = np.cumsum(sizes)
    starts = ends - sizes
    mot = chunk[prefix + "mask_of_threshold"]
    fields = {name: chunk[prefix + name] for name in ("iou_largest", "box_largest", "iou_all", "box_all", "box_count")}
    return [ImageCurves(mask_of_threshold=mot[j], **{name: value[s:e] for name, value in fields.items()})
            for j, (s, e) in enumerate(zip(starts, ends))]


def summarise_run(out: Path, config: EvalConfig, n_chunks: int, count: int, dataset, seconds: float,
                  policy: str) -> EvalSummary:
    """Read every chunk in order and write summary.json, summary.csv, records.csv and curves.npz."""
    taus = thresholds(config.threshold_interval)
    chunks = []
    for i in range(n_chunks):
        with np.load(_chunk_path(out, i), allow_pickle=False) as data:
            chunks.append({key: data[key] for key in data.files})
    combos = list(config.combos())
    if config.controls:
        combos += [(f"control_{name}", REFERENCE_UPSAMPLER) for name in CONTROLS]
    if config.references and "masks" in dataset.kind:
        combos.append(("reference_object", REFERENCE_UPSAMPLER))
        if all(s.part_path is not None for s in dataset.samples[:count]):
            combos.append(("reference_part", REFERENCE_UPSAMPLER))
    ids = np.concatenate([c["ids"] for c in chunks])
    # What the lenient loader left out (malformed lines, paths leaving the dataset, missing files),
    # then the images a chunk could not read: each with its reason, file and line where known.
    skipped = [{"image_id": None, "reason": str(issue)} for issue in dataset.issues]
    skipped += [{"image_id": str(i), "reason": str(r)} for c in chunks
                for i, r in zip(c["skipped_ids"], c["skipped_reasons"])]
    evaluated = [c for c in chunks if len(c["ids"])]
    labels = np.concatenate([c["labels"] for c in evaluated]) if evaluated else np.zeros(0, int)
    top = np.concatenate([c["top_classes"] for c in evaluated]) if evaluated else np.zeros((0, 1), int)
    top_probs = np.concatenate([c["top_probs"] for c in evaluated]) if evaluated else np.zeros((0, 1))
    targets = np.concatenate([c["targets"] for c in evaluated]) if evaluated else np.zeros(0, int)
    has_labels = policy == "label" and len(labels) and (labels >= 0).all()
    class_acc = float(100.0 * np.mean(top[:, 0] == labels)) if has_labels else None
    weights = bootstrap_weights(len(ids)) if len(ids) else None
    intervals: dict[str, list[float]] = {}
    if has_labels and weights is not None:
        intervals["classification_accuracy"] = mean_interval(100.0 * (top[:, 0] == labels), weights).as_list()

    rows, curves_out = [], {"thresholds": taus, "value_edges": np.linspace(0, 1, VALUE_BINS + 1)}
    records: dict[str, dict[str, np.ndarray]] = {key: {} for key in ("iou", "box", "iou_v2", "pxap", "drop", "drop_relative",
                                                                             *PER_IMAGE_FAITHFULNESS)}
    for method, up in combos:
        prefix = combo_key(method, up) + "/"
        key = combo_key(method, up)
        row: dict[str, Any] = {"method": method, "upsampler": up, "images": int(len(ids))}
        network_free = method.startswith(("reference_", "control_"))
        present = [c for c in evaluated if prefix + "values_background" in c]
        if present and prefix + "masks_per_image" in present[0]:
            ev = BoxEvaluator(taus, IOU_LEVELS, keep_records=True)
            for c in present:
                for curve in _curves_from(c, prefix):
                    ev.add_curves(curve)
            box = ev.compute()
            all_curves = [curve for c in present for curve in _curves_from(c, prefix)]
            hits = hit_curves(all_curves)
            assert box.image_iou is not None and box.image_box is not None and box.image_iou_v2 is not None  # keep_records
            row.update(max_box_acc=box.max_box_acc, max_box_acc_v2=box.max_box_acc_v2,
                       best_threshold=box.best_threshold,
                       **{f"box_acc_v2_iou{d}": float(v) for d, v in zip(box.iou_levels, box.max_box_acc_v2_by_delta)})
            if weights is not None:
                row["max_box_acc_ci"] = max_acc_interval(hits, weights).as_list()
                row["max_box_acc_v2_ci"] = max_box_acc_v2_interval(all_curves, weights, box.iou_levels).as_list()
            if has_labels and not network_free:
                # F-CAM's code: a joint counter (right class AND IoU >= 0.5) per threshold, then the
                # max over thresholds; the protocol paper's reading at MaxBoxAcc's best threshold beside it.
                for k in (1, 5):
                    if top.shape[1] < k:
                        continue
                    correct = topk_correct(top, labels, k)
                    row[f"top{k}_loc"] = joint_localization(hits, correct)
                    row[f"top{k}_loc_v2"] = joint_localization_v2(all_curves, correct, box.iou_levels)
                    row[f"top{k}_loc_at_best_tau"] = localization_accuracy(box.image_iou, top, labels, k=k)
                    if weights is not None:
                        row[f"top{k}_loc_ci"] = max_acc_interval(hits & correct[:, None], weights).as_list()
            curves_out[key + "/box_acc"] = box.box_acc
            curves_out[key + "/box_acc_v2"] = box.box_acc_v2
            records["iou"][key] = box.image_iou
            records["box"][key] = box.image_box
            records["iou_v2"][key] = box.image_iou_v2[box.iou_levels.index(50)]
        if present and prefix + "pos_hist" in present[0]:
            pe = PixelEvaluator(taus)
            pe.pos_hist = sum(c[prefix + "pos_hist"] for c in present)
            pe.neg_hist = sum(c[prefix + "neg_hist"] for c in present)
            pe.num_images = len(ids)
            pe._image_pxap = list(np.concatenate([c[prefix + "image_pxap"] for c in present]))
            px = pe.compute()
            row["pxap"] = px.pxap
            if weights is not None and prefix + "image_pos_hist" in present[0]:
                row["pxap_ci"] = pxap_interval(np.concatenate([c[prefix + "image_pos_hist"] for c in present]),
                                               np.concatenate([c[prefix + "image_neg_hist"] for c in present]),
                                               weights).as_list()
            curves_out[key + "/precision"] = px.precision
            curves_out[key + "/recall"] = px.recall
            records["pxap"][key] = px.image_pxap
        if present:
            curves_out[key + "/values_foreground"] = sum(c[prefix + "values_foreground"] for c in present)
            curves_out[key + "/values_background"] = sum(c[prefix + "values_background"] for c in present)
        if present and prefix + "conf_full" in present[0]:
            y = np.concatenate([c[prefix + "conf_full"] for c in present])
            for name, col in (("normal", "drop"), ("relative", "drop_relative")):
                o = np.concatenate([c[prefix + f"conf_{name}"] for c in present])
                with np.errstate(invalid="ignore", divide="ignore"):
                    drop = np.where(y > 0, np.maximum(0.0, y - o) / y, 0.0)
                suffix = "" if name == "normal" else "_relative"
                row[f"average_drop{suffix}"] = float(100.0 * drop.mean())
                row[f"increase{suffix}"] = float(100.0 * np.mean(o > y))
                if weights is not None:
                    row[f"average_drop{suffix}_ci"] = mean_interval(100.0 * drop, weights).as_list()
                    row[f"increase{suffix}_ci"] = mean_interval(100.0 * (o > y), weights).as_list()
                records[col][key] = 100.0 * drop
            o = np.concatenate([c[prefix + "conf_normal"] for c in present])
            row["confidence_change"] = float(np.mean(o - y))
            if weights is not None:
                row["confidence_change_ci"] = mean_interval(o - y, weights).as_list()
        for column in PER_IMAGE_FAITHFULNESS:
            if present and prefix + column in present[0]:
                values = np.concatenate([c[prefix + column] for c in present])
                row[column] = float(values.mean())
                if weights is not None:
                    row[column + "_ci"] = mean_interval(values, weights).as_list()
                records[column][key] = values
        for mode in ("deletion", "insertion"):
            if present and prefix + f"{mode}_curve" in present[0]:
                curves_out[key + f"/{mode}_curve"] = np.concatenate([c[prefix + f"{mode}_curve"] for c in present]).mean(0)
        rows.append(row)

    summary = EvalSummary(rows=rows, out_dir=out, num_images=int(len(ids)), skipped=skipped, seconds=seconds,
                          classification_accuracy=class_acc, target_policy=policy)
    meta = {"config": asdict(config), "num_images": summary.num_images, "skipped": skipped,
            "classification_accuracy": class_acc, "target_policy": policy, "intervals": intervals,
            "interval_method": (f"{LEVEL:.0f} % percentile bootstrap over the {len(ids)} images, {REPLICATES} replicates "
                                "(seed 0), thresholds re-chosen in each replicate"),
            "controls": {name: words for name, words in CONTROLS.items()} if config.controls else {},
            "dataset_kind": dataset.kind, "classes": list(dataset.classes), "rows": rows,
            "seconds_this_call": round(seconds, 1)}
    write_atomically(out / "summary.json", (json.dumps(meta, indent=2, default=_json_default) + "\n").encode())
    write_atomically(out / "summary.csv", _csv(rows).encode())
    buffer = io.BytesIO()
    save_npz: Any = np.savez_compressed  # numpy's stubs type **arrays as its flags
    save_npz(buffer, **curves_out)
    write_atomically(out / "curves.npz", buffer.getvalue())
    write_atomically(out / "records.csv", _records_csv(ids, labels, targets, top, top_probs, records,
                                                        dataset.classes).encode())
    return summary


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(type(value))


SUMMARY_COLUMNS = ["method", "upsampler", "images", "max_box_acc", "max_box_acc_lo", "max_box_acc_hi", "max_box_acc_v2",
                   "max_box_acc_v2_lo", "max_box_acc_v2_hi", "box_acc_v2_iou30", "box_acc_v2_iou50", "box_acc_v2_iou70",
                   "best_threshold", "pxap", "pxap_lo", "pxap_hi", "top1_loc", "top1_loc_lo", "top1_loc_hi", "top1_loc_v2",
                   "top1_loc_at_best_tau", "top5_loc", "top5_loc_v2", "top5_loc_at_best_tau", "average_drop",
                   "average_drop_lo", "average_drop_hi", "increase", "increase_lo", "increase_hi", "average_drop_relative",
                   "increase_relative", "confidence_change", "confidence_change_lo", "confidence_change_hi",
                   "deletion_auc", "deletion_auc_lo", "deletion_auc_hi", "insertion_auc", "insertion_auc_lo",
                   "insertion_auc_hi", "road_morf", "road_morf_lo", "road_morf_hi", "road_lerf", "road_lerf_lo",
                   "road_lerf_hi"]


def _csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        flat = dict(row)
        for key, value in row.items():  # an interval [low, high] becomes two columns
            if key.endswith("_ci"):
                flat[key[:-3] + "_lo"], flat[key[:-3] + "_hi"] = value
        writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in flat.items() if not k.endswith("_ci")})
    return buffer.getvalue()


def _records_csv(ids, labels, targets, top, top_probs, records: dict, classes) -> str:
    """One line per image and (method, upsampler): what the Failure Cases page sorts and shows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image_id", "label", "target", "predicted", "score", "combo", "iou", "box_x0", "box_y0",
                     "box_x1", "box_y1", "iou_v2", "pxap", "drop", "drop_relative", *PER_IMAGE_FAITHFULNESS])
    combos = sorted(set().union(*[set(v) for v in records.values()]))
    for combo in combos:
        for j, image_id in enumerate(ids):
            box = records["box"].get(combo)
            cells = [image_id, int(labels[j]), int(targets[j]), int(top[j, 0]), f"{float(top_probs[j, 0]):.4f}", combo]
            iou = records["iou"].get(combo)
            cells.append(f"{iou[j]:.4f}" if iou is not None else "")
            cells.extend(box[j].tolist() if box is not None else ["", "", "", ""])
            for name in ("iou_v2", "pxap", "drop", "drop_relative", *PER_IMAGE_FAITHFULNESS):
                values = records[name].get(combo)
                cells.append("" if values is None or np.isnan(values[j]) else f"{values[j]:.4f}")
            writer.writerow(cells)
    return buffer.getvalue()


def read_summary(out_dir: str | os.PathLike[str]) -> dict:
    """summary.json of a finished evaluation, or a clear error."""
    path = Path(out_dir) / "summary.json"
    if file_problem(path) == "file not found":
        raise EvaluateError(f"{path}: no summary; the evaluation has not finished (rerun it to resume)")
    try:
        summary = read_json(path, 64 * 2**20)  # a summary of 1,000 images is 0.1 MB
    except UnsafeFileError as exc:
        raise EvaluateError(f"{exc}; rerun the evaluation to rewrite it") from exc
    if not isinstance(summary, dict) or not isinstance(summary.get("config"), dict) or \
            not isinstance(summary.get("rows"), list):
        raise EvaluateError(f"{path}: damaged (not an evaluation summary); rerun the evaluation to rewrite it")
    return summary


# -------------------------------------------------------------------------- several processes

def evaluate_distributed(config: EvalConfig, out_dir: str | os.PathLike[str], *,
                         device: str | torch.device | None = None,
                         progress: Callable[[int, int], object] | None = None) -> EvalSummary | None:
    """The evaluation under ``torchrun`` (one process per device, any number of nodes).

    torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; each process takes its own device (cuda:<local
    rank> when GPUs exist, else the CPU with the gloo backend) and the chunks ``i % world ==
    rank``. The chunk files are then gathered to rank 0 through ``torch.distributed`` (so the nodes
    need no shared file system), and rank 0 writes the summary from all of them: exactly the
    numbers of one process, since every number is rebuilt from the same per-image records.
    Returns the summary on rank 0, None elsewhere.
    """
    import torch.distributed as dist

    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
    if device is None:
        device = f"cuda:{local}" if cuda else "cpu"
    if cuda:
        torch.cuda.set_device(torch.device(device))
    out = Path(out_dir)
    started_here = not dist.is_initialized()
    if started_here:
        dist.init_process_group("nccl" if cuda else "gloo")
    try:
        backbone = load_backbone(config.backbone, config.weights, device=device)
        if rank == 0:  # the settings file first, so the other ranks can check a resumed folder
            out.mkdir(parents=True, exist_ok=True)
            _check_or_write_config(out, config, 0)
        dist.barrier()
        evaluate(config, out, backbone=backbone, rank=rank, world=world, summarise=False,
                 progress=progress if rank == 0 else None)
        mine = {path.name: path.read_bytes() for path in sorted((out / "chunks").glob("chunk-*.npz"))
                if int(path.stem.split("-")[1]) % world == rank}
        gathered: list | None = [None] * world if rank == 0 else None
        dist.gather_object(mine, gathered, dst=0)
        if rank != 0 or gathered is None:
            return None
        for files in gathered:
            for name, data in files.items():
                path = out / "chunks" / name
                if not path.is_file():
                    write_atomically(path, data)
        return evaluate(config, out, backbone=backbone, rank=0, world=1)
    finally:
        if started_here:
            dist.destroy_process_group()
