"""Training an F-CAM decoder on a frozen classifier, resumably, and its ablation.

    result = train_fcam(FcamConfig(backbone="synthetic_lite0"), out="checkpoints/fcam/synthetic_lite0__cam.pt")

Per step, for a batch of training images (F-CAM section 3, Fig. 2):
1. one forward of the frozen classifier records the decoder's taps and the CAM layer in the same
   pass (plus one gradient when the base method needs it), batched on the device, whereas the
   authors' code recomputes every CAM image by image;
2. the CAM of the image's class (its label, or the classifier's top-1 on unlabelled data) is
   turned into seeds (`explorer.fcam.seeds`), drawn anew;
3. the decoder's logits give the partial cross-entropy on the seeds, the CRF loss on the image and
   the log-barrier size loss (`explorer.fcam.losses`); only the decoder learns (SGD with Nesterov
   momentum, as the paper).

Every random draw (epoch order, flips and quarter turns, seed pixels) comes from a generator
seeded by (seed, epoch, step), and the run state (decoder, optimiser, BatchNorm statistics,
history, best weights) is written atomically every ``save_every`` steps and at each epoch's end:
a killed run, restarted with the same settings, continues from its last checkpoint and ends with
the weights an uninterrupted run gives. After each epoch the decoder is scored on the validation
split (MaxBoxAcc of the F-CAM, as the paper selects models on CUB; PxAP for masks-only data), and
the best epoch is kept. Data without ground truth (a folder) keeps the last epoch.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from explorer.atomic import save_torch_atomically, write_json_atomically
from explorer.backbones import Backbone, DecoderSpec, load_backbone
from explorer.capture import capture
from explorer.distributed import join
from explorer.fcam.decoder import FcamDecoder, FcamError, build_decoder, decoder_spec, parameter_count
from explorer.fcam.losses import barrier_t, crf_loss, partial_cross_entropy, size_loss
from explorer.fcam.seeds import SeedConfig, seeds_from_cam
from explorer.methods import METHODS, compute_cams, resolve_relu, validate_methods
from explorer.metrics import BoxEvaluator, PixelEvaluator, thresholds
from explorer.train import augment, check_finite_step, epoch_permutation, step_generator

STATE_VERSION = 1
EVAL_SIZE = 224
LOG_EVERY = 10  # steps per point of the training curve in the card

#: Ablation variants (F-CAM Table D.1): sampling regions (SR) alone, + CRF, + size (ASC), all.
ABLATION_VARIANTS = {
    "seeds": {"crf_weight": 0.0, "size_weight": 0.0},
    "seeds+crf": {"size_weight": 0.0},
    "seeds+size": {"crf_weight": 0.0},
    "seeds+crf+size": {},
}


#: Where seeds come from: the CAM (the method), or the ground truth on the CAM's grid (positive controls).
SEED_SOURCES = ("cam", "object", "part")


class FcamInterrupted(RuntimeError):
    """``max_steps`` was reached; the run state holds everything needed to resume."""


@dataclass(frozen=True)
class FcamConfig:
    """Every knob of a decoder run; all of it goes into the card and is checked on resume.

    Defaults are F-CAM's (shared/reference/fcam-decoder.md) except where this CPU forces a
    choice, each picked on the synthetic benchmark's validation split (README, "F-CAM"): 5 epochs
    instead of 50, a batch of 16, SGD at 0.03 instead of 0.01 for the short schedule, and a CRF
    weight of 2e-8 instead of 2e-9 (after 200 steps, validation MaxBoxAcc 26.7 with 2e-9, 65.3
    with 1e-8, 87.3 with 2e-8). n- = 0.3 suits objects that cover 5-35 % of the image.
    """

    backbone: str
    dataset: str = "synthetic"
    weights: str = "pretrained"
    base_method: str = "cam"
    layer: str | None = None
    relu: str = "published"
    train_split: str = "train"
    val_split: str = "val"
    train_limit: int | None = None
    val_limit: int | None = None
    epochs: int = 5
    batch_size: int = 16
    lr: float = 0.03
    momentum: float = 0.9
    weight_decay: float = 1e-4
    n_negative: float = 0.3
    fg_samples: int = 1
    bg_samples: int = 1
    patch: int = 3
    erode: int = 11
    ce_weight: float = 1.0
    crf_weight: float = 2e-8
    crf_sigma_rgb: float = 15.0
    crf_sigma_xy: float = 100.0
    crf_scale: int = 4
    size_weight: float = 0.1
    t_start: float = 1.0
    t_factor: float = 1.01
    t_cap: float = 10.0
    augment: bool = True
    decoder_widths: tuple[int, ...] | None = None  # None: the registry's widths and centre
    decoder_centre: int | None = None
    threshold_interval: float = 0.001
    seed: int = 0
    save_every: int = 20
    # What the seeds are drawn from: the base method's CAM (the paper), or a positive control that
    # replaces it with the ground truth reduced to the CAM's grid (F-CAM supplementary E): the
    # object mask ("object") or the class-deciding part's mask ("part", the synthetic benchmark).
    seed_source: str = "cam"

    def seeds(self) -> SeedConfig:
        return SeedConfig(n_negative=self.n_negative, fg_samples=self.fg_samples, bg_samples=self.bg_samples,
                          patch=self.patch, erode=self.erode)

    def check(self) -> None:
        validate_methods([self.base_method])
        self.seeds()
        for name in ("epochs", "batch_size", "crf_scale", "save_every"):
            if getattr(self, name) < 1:
                raise FcamError(f"{name.replace('_', '-')} must be at least 1")
        for name in ("lr", "ce_weight"):
            if not getattr(self, name) > 0:
                raise FcamError(f"{name.replace('_', '-')} must be positive")
        for name, high in (("epochs", 1000), ("batch_size", 256), ("crf_scale", 64), ("lr", 10.0), ("ce_weight", 1e6),
                           ("crf_weight", 1e6), ("size_weight", 1e6), ("save_every", 10**6)):
            value = getattr(self, name)
            if not math.isfinite(value) or value > high:
                raise FcamError(f"{name.replace('_', '-')} must be at most {high:g}, not {value:g}")
        for name in ("crf_weight", "size_weight", "weight_decay", "momentum"):
            if getattr(self, name) < 0:
                raise FcamError(f"{name.replace('_', '-')} cannot be negative")
        if not 0 < self.threshold_interval < 1:
            raise FcamError("the threshold interval must lie strictly between 0 and 1")
        if self.seed_source not in SEED_SOURCES:
            raise FcamError(f"seed source {self.seed_source!r}: choose one of {', '.join(SEED_SOURCES)}")


@dataclass
class FcamResult:
    weights: Path
    card: Path
    best_epoch: int
    val: dict
    train_seconds: float
    history: list[dict] = field(default_factory=list)


# ------------------------------------------------------------------------------ data

@dataclass
class SplitTensors:
    """A split decoded once: uint8 images at the input size, labels (-1 unknown) and the ground
    truth at the protocol's 224 x 224 (boxes as lists, masks as arrays), when the data has it."""

    images: torch.Tensor
    labels: torch.Tensor
    boxes: list[np.ndarray] | None
    masks: np.ndarray | None
    ignores: np.ndarray | None
    classes: list[str]
    kind: str
    parts: np.ndarray | None = None  # the class-deciding part's mask (synthetic benchmark), when asked for


def load_split(spec: str, split: str, size: tuple[int, int], limit: int | None = None,
               progress: Callable[[int], object] | None = None, parts: bool = False) -> SplitTensors:
    from explorer.datasets import open_dataset

    dataset = open_dataset(spec, split)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    if count == 0:
        raise FcamError(f"{spec} ({split}) has no images")
    h, w = size
    images = torch.empty((count, 3, h, w), dtype=torch.uint8)
    labels = torch.full((count,), -1, dtype=torch.long)
    has_boxes, has_masks = "boxes" in dataset.kind, "masks" in dataset.kind
    boxes, masks, ignores, part_masks = [], [], [], []
    for i in range(count):
        image = dataset.load_image(i).convert("RGB")
        if image.size != (w, h):
            image = image.resize((w, h), resample=2)  # bilinear, as Backbone.resize
        images[i] = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)
        if dataset[i].label is not None:
            labels[i] = int(dataset[i].label)
        if has_boxes:
            boxes.append(dataset.gt_boxes(i, EVAL_SIZE))
        if has_masks:
            fg, ig = dataset.gt_mask(i, EVAL_SIZE)
            masks.append(fg)
            ignores.append(ig)
        if parts:
            part_masks.append(dataset.part_mask(i, EVAL_SIZE))
        if progress is not None:
            progress(1)
    return SplitTensors(images, labels, boxes if has_boxes else None,
                        np.stack(masks) if has_masks else None, np.stack(ignores) if has_masks else None,
                        list(dataset.classes), dataset.kind, np.stack(part_masks) if parts else None)


def ground_truth_masks(data: SplitTensors, source: str, size: tuple[int, int]) -> torch.Tensor:
    """N x H x W float masks at the input size for an oracle seed source ("object" or "part")."""
    masks = data.masks if source == "object" else data.parts
    if masks is None:
        raise FcamError(f"seeds from the {source} mask need data with {source} masks "
                        f"({'the synthetic benchmark records parts' if source == 'part' else 'masks'})")
    out = torch.from_numpy(np.ascontiguousarray(masks)).float()
    if tuple(out.shape[-2:]) != tuple(size):
        out = torch.nn.functional.interpolate(out[:, None], size=tuple(size), mode="area")[:, 0]
    return out


def oracle_grid_maps(masks: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """The ground truth reduced to the CAM's grid (F-CAM supplementary E): each cell holds the
    share of its pixels that belong to the mask (area pooling), B x h x w."""
    return torch.nn.functional.adaptive_avg_pool2d(masks[:, None].float(), (int(grid[0]), int(grid[1])))[:, 0]


def normalise_uint8(images: torch.Tensor, backbone: Backbone) -> torch.Tensor:
    mean = torch.tensor(backbone.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(backbone.std, dtype=torch.float32).view(1, 3, 1, 1)
    return ((images.float() / 255.0 - mean) / std).to(backbone.device)


def class_targets(backbone: Backbone, data: SplitTensors, batch_size: int = 32) -> tuple[torch.Tensor, str]:
    """Which class each image's CAM explains: its label when the data's classes are the
    backbone's (the WSOL protocol), else the classifier's top-1 prediction."""
    if (data.labels >= 0).all() and len(data.classes) == len(backbone.class_names):
        return data.labels.clone(), "label"
    predicted = torch.empty(len(data.images), dtype=torch.long)
    with torch.no_grad():
        for start in range(0, len(data.images), batch_size):
            x = normalise_uint8(data.images[start:start + batch_size], backbone)
            predicted[start:start + batch_size] = backbone.model(x).argmax(1).cpu()
    return predicted, "predicted"


def base_cams(backbone: Backbone, x: torch.Tensor, targets: torch.Tensor, config: FcamConfig,
              taps: tuple[str, ...] = ()):
    """The base method's raw grid maps and the decoder's features from ONE forward."""
    method = config.base_method
    cap = capture(backbone, x, targets, config.layer, gradient=METHODS[method].needs_gradient, taps=taps)
    maps = compute_cams(backbone, x, cap.targets, [method], cap.layer, relu=resolve_relu(method, config.relu),
                        cap=cap)[method]
    return maps, cap


# ------------------------------------------------------------------------------ scoring

def _resize_to_eval(maps: torch.Tensor) -> torch.Tensor:
    if tuple(maps.shape[-2:]) == (EVAL_SIZE, EVAL_SIZE):
        return maps
    return torch.nn.functional.interpolate(maps[:, None], size=(EVAL_SIZE, EVAL_SIZE), mode="bilinear",
                                           align_corners=False)[:, 0]


@torch.no_grad()
def score_split(backbone: Backbone, decoder: FcamDecoder | None, data: SplitTensors, targets: torch.Tensor,
                config: FcamConfig, batch_size: int = 32, intervals: bool = False) -> dict:
    """MaxBoxAcc / MaxBoxAccV2 / PxAP on a split of either the decoder's F-CAM (decoder given) or
    the base CAM upsampled bilinearly and min-max normalised (decoder None, the baseline).
    ``intervals`` adds ``max_box_acc_ci``, ``max_box_acc_v2_ci`` and ``pxap_ci``, the 95 %
    bootstrap intervals over the split's images (threshold re-chosen in each replicate, as the
    evaluations do)."""
    from explorer.metrics.intervals import (
        bootstrap_weights,
        hit_curves,
        max_acc_interval,
        max_box_acc_v2_interval,
        pxap_interval,
    )
    from explorer.upsample import normalise, upsample

    taus = thresholds(config.threshold_interval)
    boxes = BoxEvaluator(taus, keep_records=intervals) if data.boxes is not None else None
    pixels = PixelEvaluator(taus, keep_image_hists=intervals) if data.masks is not None else None
    if boxes is None and pixels is None:
        return {}
    was_training = decoder.net.training if decoder is not None else False
    if decoder is not None:
        decoder.net.eval()
    try:
        for start in range(0, len(data.images), batch_size):
            x = normalise_uint8(data.images[start:start + batch_size], backbone)
            t = targets[start:start + batch_size]
            if decoder is None:
                maps, _ = base_cams(backbone, x, t, config)
                pixel = normalise(upsample(maps, (EVAL_SIZE, EVAL_SIZE), "bilinear"), "minmax")
            else:
                cap = capture(backbone, x, t, config.layer, gradient=False, taps=decoder.taps)
                pixel = _resize_to_eval(decoder.foreground(cap.features, backbone.input_size))
                if not bool(torch.isfinite(pixel).all()):  # finite weights so large that the logits overflow
                    raise FcamError("training diverged: the decoder's maps hold inf or NaN on the validation images "
                                    "(a learning rate or loss weight too large?). Nothing was written as a result; "
                                    "the run folder keeps the last finite checkpoint. Delete it and start again "
                                    "with a lower --lr.")
            values = pixel.cpu().numpy().astype(np.float64)
            if boxes is not None and data.boxes is not None:
                boxes.accumulate(values, data.boxes[start:start + batch_size])
            if pixels is not None and data.masks is not None:
                ignores = data.ignores[start:start + batch_size] if data.ignores is not None else None
                pixels.accumulate(values, data.masks[start:start + batch_size], ignores)
    finally:
        if decoder is not None:
            decoder.net.train(was_training)
    out: dict[str, Any] = {}
    if boxes is not None:
        result = boxes.compute()
        out.update(max_box_acc=round(result.max_box_acc, 4), max_box_acc_v2=round(result.max_box_acc_v2, 4),
                   best_threshold=round(result.best_threshold, 4))
        if intervals and result.curves is not None:
            weights = bootstrap_weights(result.num_images)
            out["max_box_acc_ci"] = max_acc_interval(hit_curves(result.curves), weights).as_list()
            out["max_box_acc_v2_ci"] = max_box_acc_v2_interval(result.curves, weights, result.iou_levels).as_list()
    if pixels is not None:
        out["pxap"] = round(pixels.compute().pxap, 4)
        if intervals and pixels.image_pos_hists:
            out["pxap_ci"] = pxap_interval(np.stack(pixels.image_pos_hists), np.stack(pixels.image_neg_hists),
                                           bootstrap_weights(len(pixels.image_pos_hists))).as_list()
    return out


def selection_metric(scores: dict) -> float:
    return scores.get("max_box_acc", scores.get("pxap", float("nan")))


# ------------------------------------------------------------------------------ the run

def _load_state(path: Path, config: FcamConfig) -> dict | None:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise FcamError(f"the run state {path} cannot be read ({exc.__class__.__name__}); delete it to start over") from exc
    if state.get("version") != STATE_VERSION or state.get("config") != config_dict(config):
        raise FcamError(f"{path} belongs to a decoder run with other settings; delete it or pass the same "
                        f"settings to resume")
    return state


def config_dict(config: FcamConfig) -> dict:
    out = asdict(config)
    out["decoder_widths"] = list(config.decoder_widths) if config.decoder_widths else None
    if out["seed_source"] == "cam":  # the cards and run states written before positive controls
        del out["seed_source"]
    return out


def _mean(parts: dict[str, float], count: int) -> dict[str, float]:
    return {k: round(v / max(count, 1), 6) for k, v in parts.items()}


def train_fcam(
    config: FcamConfig,
    out: str | os.PathLike[str],
    *,
    run_dir: str | os.PathLike[str] | None = None,
    command: str | None = None,
    device: str | torch.device | None = None,
    backbone: Backbone | None = None,
    progress: Callable[[str, int, int, dict], object] | None = None,
    max_steps: int | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> FcamResult:
    """Train a decoder; write ``out`` (.pt, a state_dict) and its card (.json beside it).

    ``progress(phase, done, total, info)``: phase "load" per image decoded, "train" per step,
    "val" per epoch. ``max_steps`` (tests) or ``should_stop()`` returning True (the app's stop
    button) end this call after a checkpoint, raising FcamInterrupted; calling again resumes.
    """
    config.check()
    out = Path(out)
    if out.suffix != ".pt":
        raise FcamError(f"the decoder file must end in .pt, not {out.name}")
    run_dir = Path(run_dir) if run_dir is not None else out.with_name(f"{out.stem}.run")
    state_path = run_dir / "state.pt"
    procs = join(device if backbone is None else backbone.device)  # under torchrun: this rank and its device
    if config.batch_size % procs.world:
        raise FcamError(f"the batch size {config.batch_size} must divide evenly over the {procs.world} processes")
    if not procs.main:
        progress = None
    if backbone is None:
        backbone = load_backbone(config.backbone, config.weights, device=procs.device)
    elif backbone.name != config.backbone:
        raise FcamError(f"the settings are for {config.backbone}, not {backbone.name}")
    layer = backbone.resolve_layer(config.layer)
    config = dataclasses.replace(config, layer=layer)
    spec = decoder_spec(backbone) if config.decoder_widths is None else DecoderSpec(
        taps=decoder_spec(backbone).taps, widths=tuple(config.decoder_widths), centre=config.decoder_centre)

    def loading(n: int) -> None:
        if progress is not None:
            progress("load", n, 0, {})

    train = load_split(config.dataset, config.train_split, backbone.input_size, config.train_limit, loading,
                       parts=config.seed_source == "part")
    oracle = ground_truth_masks(train, config.seed_source, backbone.input_size) if config.seed_source != "cam" else None
    try:
        val = load_split(config.dataset, config.val_split, backbone.input_size, config.val_limit, loading)
    except Exception:  # a folder has no split of its own: no model selection
        val = None
    if val is not None and val.boxes is None and val.masks is None:
        val = None
    train_targets, policy = class_targets(backbone, train)
    val_targets = class_targets(backbone, val)[0] if val is not None else None

    decoder = build_decoder(backbone, config.base_method, layer, spec, seed=config.seed)
    net = decoder.net
    decoder.net = procs.wrap(net)  # type: ignore[assignment]  # DDP wraps the decoder while it trains
    optimiser = torch.optim.SGD(net.parameters(), lr=config.lr, momentum=config.momentum,
                                nesterov=config.momentum > 0, weight_decay=config.weight_decay)
    n = len(train.images)
    batch = min(config.batch_size, n)
    steps_per_epoch = n // batch
    total_steps = steps_per_epoch * config.epochs
    seeds_config = config.seeds()
    needs_grad_note = METHODS[config.base_method].needs_gradient

    epoch, step, history, curve, elapsed = 0, 0, [], [], 0.0
    best: dict[str, Any] = {"metric": -1.0, "epoch": 0, "state": None, "scores": {}}
    baseline_val = None
    saved = _load_state(state_path, config)
    if saved is not None:
        net.load_state_dict(saved["decoder"])
        optimiser.load_state_dict(saved["optimiser"])
        epoch, step, history, curve, elapsed = (saved["epoch"], saved["step"], saved["history"], saved["curve"],
                                                saved["elapsed"])
        best = {"metric": saved["best_metric"], "epoch": saved["best_epoch"], "state": saved["best_state"],
                "scores": saved["best_scores"]}
        baseline_val = saved["baseline_val"] or None
        running, window = saved["running"], saved["window"]
    else:
        running = {"count": 0, "loss": 0.0, "ce": 0.0, "crf": 0.0, "size": 0.0}
        window = dict(running)
    if baseline_val is None and val is not None and val_targets is not None:
        baseline_val = score_split(backbone, None, val, val_targets, config)

    def checkpoint() -> None:
        if not procs.main:
            return
        save_torch_atomically(state_path, {
            "version": STATE_VERSION, "config": config_dict(config), "decoder": net.state_dict(),
            "optimiser": optimiser.state_dict(), "epoch": epoch, "step": step, "history": history,
            "curve": curve, "elapsed": elapsed, "best_metric": best["metric"], "best_epoch": best["epoch"],
            "best_state": best["state"], "best_scores": best["scores"], "baseline_val": baseline_val or {},
            "running": running, "window": window,
        })

    steps_this_call = 0
    while epoch < config.epochs:
        t = barrier_t(epoch, config.t_start, config.t_factor, config.t_cap)
        order = epoch_permutation(config.seed, epoch, n)
        net.train()
        tick = time.perf_counter()
        while step < steps_per_epoch:
            if (max_steps is not None and steps_this_call >= max_steps) or (should_stop is not None and should_stop()):
                elapsed += time.perf_counter() - tick
                checkpoint()
                raise FcamInterrupted(f"stopped after {steps_this_call} steps (epoch {epoch + 1}, step {step})")
            index = order[step * batch:(step + 1) * batch]
            generator = step_generator(config.seed, epoch, step)
            images, truth = train.images[index], oracle[index] if oracle is not None else None
            if config.augment:
                images, truth = augment(images, generator, truth) if truth is not None else (augment(images, generator), None)
            images = procs.shard(images)  # this rank's share of the global batch (all of it alone)
            x = normalise_uint8(images, backbone)
            targets = procs.shard(train_targets[index]).to(backbone.device)
            if truth is None:
                maps, cap = base_cams(backbone, x, targets, config, decoder.taps)
            else:  # a positive control: the seeds come from the ground truth, never from the CAM
                cap = capture(backbone, x, targets, config.layer, gradient=False, taps=decoder.taps)
                grid = (cap.activations.shape[-2], cap.activations.shape[-1])
                maps = oracle_grid_maps(procs.shard(truth), grid).to(backbone.device)
            _, _, _, labels = seeds_from_cam(maps, backbone.input_size, seeds_config, generator)
            logits = decoder.logits(cap.features, backbone.input_size)
            probs = torch.softmax(logits, dim=1)
            ce = partial_cross_entropy(logits, labels)
            loss = config.ce_weight * ce
            parts = {"ce": ce.item()}
            if config.crf_weight > 0:
                crf = crf_loss(probs, images.to(probs.device).float(), sigma_rgb=config.crf_sigma_rgb,
                               sigma_xy=config.crf_sigma_xy, scale=config.crf_scale, generator=generator)
                loss = loss + config.crf_weight * crf
                parts["crf"] = crf.item() * config.crf_weight
            if config.size_weight > 0:
                size = size_loss(probs, t)
                loss = loss + config.size_weight * size
                parts["size"] = size.item() * config.size_weight
            check_finite_step(loss, None, epoch, step, FcamError)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            check_finite_step(loss, net, epoch, step, FcamError)
            parts["loss"] = loss.item()
            for acc in (running, window):
                acc["count"] += 1
                for key, value in parts.items():
                    acc[key] += value
            step += 1
            steps_this_call += 1
            global_step = epoch * steps_per_epoch + step
            if window["count"] >= LOG_EVERY or step == steps_per_epoch:
                point = {"step": global_step, **_mean({k: v for k, v in window.items() if k != "count"},
                                                       window["count"])}
                curve.append(point)
                window = {"count": 0, "loss": 0.0, "ce": 0.0, "crf": 0.0, "size": 0.0}
            if progress is not None:
                progress("train", global_step, total_steps,
                         {"epoch": epoch + 1, "loss": running["loss"] / running["count"]})
            if step % config.save_every == 0 and step < steps_per_epoch:
                elapsed += time.perf_counter() - tick
                tick = time.perf_counter()
                checkpoint()
        scores = (score_split(backbone, decoder, val, val_targets, config)
                  if val is not None and val_targets is not None else {})
        elapsed += time.perf_counter() - tick
        record = {"epoch": epoch + 1, "t": round(t, 4), "elapsed_s": round(elapsed, 1),
                  **{f"train_{k}": v for k, v in _mean({k: v for k, v in running.items() if k != "count"},
                                                      running["count"]).items()},
                  **{f"val_{k}": v for k, v in scores.items()}}
        history.append(record)
        metric = selection_metric(scores) if scores else float(epoch + 1)  # no ground truth: the last epoch
        if metric > best["metric"]:
            best = {"metric": metric, "epoch": epoch + 1,
                    "state": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}, "scores": scores}
        if progress is not None:
            progress("val", epoch + 1, config.epochs, record)
        running = {"count": 0, "loss": 0.0, "ce": 0.0, "crf": 0.0, "size": 0.0}
        epoch, step = epoch + 1, 0
        checkpoint()

    decoder.net = net
    if not procs.main:  # rank 0 writes the decoder and its card
        procs.barrier()
        procs.close()
        return FcamResult(out, out.with_suffix(".json"), best["epoch"], best["scores"], elapsed, history)
    save_torch_atomically(out, best["state"])
    card = {
        "kind": "fcam_decoder",
        "backbone": config.backbone,
        "backbone_weights": config.weights,
        "base_method": config.base_method,
        "seed_source": config.seed_source,
        "layer": layer,
        "relu": resolve_relu(config.base_method, config.relu),
        "taps": list(spec.taps),
        "widths": list(spec.widths),
        "centre": spec.centre,
        "parameters": parameter_count(decoder),
        "weights_file": out.name,
        "command": command or f"python -m explorer train-fcam --backbone {config.backbone} --out {out}",
        "seed": config.seed,
        "target_policy": policy,
        "model_selection": ("best validation MaxBoxAcc" if val is not None and val.boxes is not None else
                            "best validation PxAP" if val is not None else "last epoch (no localisation ground truth)"),
        "best_epoch": best["epoch"],
        "val": best["scores"],
        "val_baseline": baseline_val or {},
        "train_seconds": round(elapsed, 1),
        "base_method_needs_gradient": needs_grad_note,
        "device": _device_words(backbone.device) + (f" x {procs.world} processes (torchrun)" if procs.world > 1 else ""),
        "torch": torch.__version__,
        "settings": config_dict(config),
        "dataset": {"spec": config.dataset, "train_images": n, "val_images": len(val.images) if val else 0},
        "history": history,
        "curve": curve,
        "bytes": out.stat().st_size,
    }
    write_json_atomically(out.with_suffix(".json"), card)
    procs.barrier()
    procs.close()
    return FcamResult(out, out.with_suffix(".json"), best["epoch"], best["scores"], elapsed, history)


def _device_words(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
