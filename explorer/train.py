"""Training the synthetic benchmark's classifiers, resumably.

    train_classifier("synthetic_cnn", data_root, out="checkpoints/synthetic_cnn.pt")

Image labels only (weak supervision): the boxes and masks are never read here. A run with a
``teacher`` adds attention transfer from that classifier's CAM (`attention_transfer_loss`); the
teacher itself learnt from labels only, so the supervision stays weak. The split's
images are decoded once into a uint8 tensor; each step draws a batch from a permutation fixed by
``(seed, epoch)`` and applies label-preserving flips and quarter turns fixed by
``(seed, epoch, step)`` (objects are placed at random angles, so every one of the eight
symmetries of the square keeps the class). Because every random draw is a function of those
numbers, a run killed at any point and resumed from its last checkpoint ends with the same
weights as an uninterrupted run.

The checkpoint is written every ``save_every`` steps and at the end of each epoch, to a temporary
file that is then renamed (``os.replace``), so a kill never leaves a half-written file that reads
as complete. The model selected is the epoch with the best validation accuracy; its test accuracy
is measured on the weights exactly as shipped (int8 weights with per-channel scales: a quarter of the
float32 bytes).
"""

from __future__ import annotations

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
from torch import nn

from explorer.atomic import save_torch_atomically, write_json_atomically
from explorer.backbones import REGISTRY, BackboneError, build_lite, lite_weight_file
from explorer.checkpoints import CheckpointError, dequantize_state, load_state_dict, quantize_state
from explorer.distributed import join
from explorer.errors import ExplorerError
from explorer.safe_files import file_problem, read_json_object

ARCHS = ("synthetic_cnn", "synthetic_lite0", "synthetic_vgg")
FINE_TUNED = ("synthetic_lite0", "synthetic_vgg")  # ImageNet Lite0 layers inside, a new head on top
NEW_LAYERS = ("_fc.", "conv5.", "fc1.", "fc2.")
STATE_VERSION = 1


class TrainError(ExplorerError):
    """Training cannot start or resume; the message says why."""


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of a run; all of it is written to the card and checked on resume."""

    arch: str
    epochs: int
    batch_size: int = 32
    lr: float = 2e-3            # peak learning rate (the new head's, for the fine-tuned network)
    backbone_lr_scale: float = 0.2  # fine-tuning: pretrained layers learn at lr * this
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    warmup_epochs: float = 0.5
    freeze_below_stride: int = 8  # fine-tuning: layers at strides < this stay frozen (BN included)
    seed: int = 0
    save_every: int = 25         # steps between mid-epoch checkpoints
    teacher: str = ""            # a registered classifier whose CAM guides where the student looks
    attention_weight: float = 0.0  # beta of the attention-transfer term (0: labels only)
    distill_weight: float = 0.0  # alpha of the teacher's softened class scores (0: labels only)
    distill_temperature: float = 4.0
    init_from: str = ""          # a registered classifier or a .pt file of this network: its layers (not its head) start the run

    @staticmethod
    def defaults(arch: str) -> TrainConfig:
        if arch == "synthetic_cnn":
            # From scratch, with labels alone, ten recipes of up to 3150 steps stayed at chance: the
            # 10-40 px head that decides the class is a needle the network never finds. Attention
            # transfer from the fine-tuned Lite0's CAM says where to look (the weights still start
            # random); it left chance within 450 steps.
            # On benchmark v2 (20 classes, 120 training images each) attention transfer alone reached
            # 47 % test accuracy in 40 epochs: where to look is not enough when the class is a small
            # marking. The teacher's softened scores (knowledge distillation) say how alike classes
            # are, which 120 labels per class cannot.
            return TrainConfig(arch=arch, epochs=50, lr=2e-3, teacher="synthetic_lite0", attention_weight=5.0,
                               distill_weight=0.7, distill_temperature=4.0)
        if arch == "synthetic_vgg":
            # Three new layers (conv5, fc1, fc2) on a shallower body than Lite0's: its loss leaves
            # chance more slowly (2.82 after 36 steps at lr 2e-3, 2.93 at 5e-4), so two more epochs.
            return TrainConfig(arch=arch, epochs=8, lr=2e-3, backbone_lr_scale=0.5, freeze_below_stride=4)
        if arch == "synthetic_lite0":
            # 4 epochs with strides < 8 frozen and the body at lr/5 stopped at 89.0 % test accuracy;
            # the body needs to move more to learn the part shapes.
            return TrainConfig(arch=arch, epochs=6, lr=2e-3, backbone_lr_scale=0.5, freeze_below_stride=4)
        raise TrainError(f"unknown architecture '{arch}'; choose one of {', '.join(ARCHS)}")

    def check(self) -> TrainConfig:
        """TrainError naming the first setting a run cannot start with; the config itself when all are usable."""
        from explorer.backbones import REGISTRY

        if self.arch not in ARCHS:
            raise TrainError(f"unknown architecture '{self.arch}'; choose one of {', '.join(ARCHS)}")
        for name in ("epochs", "batch_size", "lr", "save_every"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise TrainError(f"--{name.replace('_', '-')} must be positive, not {value}")
        for name, high in (("epochs", 1000), ("batch_size", 256), ("lr", 10.0), ("attention_weight", 1e6),
                           ("distill_temperature", 1000.0), ("warmup_epochs", 1000)):
            if getattr(self, name) > high:
                raise TrainError(f"--{name.replace('_', '-')} must be at most {high:g}, not {getattr(self, name):g}")
        for name in ("backbone_lr_scale", "weight_decay", "label_smoothing", "warmup_epochs", "attention_weight",
                     "distill_weight", "distill_temperature"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise TrainError(f"--{name.replace('_', '-')} must be zero or positive, not {value}")
        if self.distill_weight > 1:
            raise TrainError(f"--distill-weight mixes the teacher's scores with the labels: at most 1, not "
                             f"{self.distill_weight}")
        if self.distill_weight and not self.distill_temperature:
            raise TrainError("--distill-temperature must be positive when --distill-weight is set")
        if self.distill_weight and not self.teacher:
            raise TrainError("--distill-weight needs a --teacher")
        if self.label_smoothing >= 1:
            raise TrainError(f"--label-smoothing must be below 1, not {self.label_smoothing}")
        if self.teacher and self.teacher not in REGISTRY:
            raise TrainError(f"unknown teacher '{self.teacher}'; choose a registered backbone or 'none'")
        if self.init_from and self.arch in FINE_TUNED:
            raise TrainError(f"--init-from is for the network trained here from the start; {self.arch} starts from "
                             f"ImageNet Lite0")
        if self.init_from and self.init_from not in REGISTRY and not Path(self.init_from).is_file():
            raise TrainError(f"unknown --init-from '{self.init_from}'; choose a registered classifier, a .pt file of "
                             f"the same network, or 'none'")
        return self


@dataclass
class TrainResult:
    weights: Path
    card: Path
    test_accuracy: float
    val_accuracy: float
    best_epoch: int
    train_seconds: float
    history: list[dict] = field(default_factory=list)


# ------------------------------------------------------------------------------ the models

def build_model(config: TrainConfig) -> nn.Module:
    """A fresh network: the small CNN from scratch, or Lite0 with ImageNet weights and a new head."""
    torch.manual_seed(config.seed)
    if config.arch == "synthetic_cnn":
        model = REGISTRY["synthetic_cnn"].build()
        if config.init_from:
            _load_layers_from(model, config.init_from, config.arch)
        return model
    if config.arch in FINE_TUNED:
        from explorer.classifiers import SYNTHETIC_CLASS_NAMES, LiteVgg

        model = build_lite("efficientnet_lite0", num_classes=len(SYNTHETIC_CLASS_NAMES))
        state = load_state_dict(lite_weight_file("efficientnet_lite0"))
        state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if set(missing) != {"_fc.weight", "_fc.bias"} or unexpected:
            raise TrainError(f"the ImageNet Lite0 weights do not fit: missing {missing}, unexpected {unexpected}")
        return LiteVgg(lite=model) if config.arch == "synthetic_vgg" else model
    raise TrainError(f"unknown architecture '{config.arch}'; choose one of {', '.join(ARCHS)}")


def _load_layers_from(model: nn.Module, name: str, arch: str) -> None:
    """Start ``model`` from the trained layers of the classifier ``name`` (a registered name, any
    number of classes, or a weights file of ``arch``): every tensor but the class head ``fc``, which
    keeps its fresh draw."""
    from explorer.backbones import load_backbone

    source = (load_backbone(name) if name in REGISTRY else load_backbone(arch, weights=name)).model.state_dict()
    own = model.state_dict()
    layers = {k: v for k, v in source.items() if not k.startswith("fc.")}
    misfits = sorted(k for k, v in layers.items() if k not in own or own[k].shape != v.shape)
    if misfits or set(own) - set(layers) - {"fc.weight", "fc.bias"}:
        raise TrainError(f"{name} is not the same network as this one: {', '.join(misfits[:5]) or 'layers missing'}")
    model.load_state_dict({**own, **layers})


def init_from_record(name: str) -> dict:
    """What a run started from, so its card names the exact weights even after the file behind a
    registered name is replaced: path, SHA-256, and the command and accuracy of the source's card."""
    import hashlib

    path = REGISTRY[name].pretrained_file() if name in REGISTRY else Path(name)
    shown = path.resolve().relative_to(Path.cwd()) if path.resolve().is_relative_to(Path.cwd()) else path
    record: dict[str, Any] = {"name": name, "weights": str(shown),
                              "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    card = path.with_suffix(".json")
    if card.is_file():
        source = read_json_object(card, TrainError, "the card of the starting weights cannot be used")
        record.update({key: source[key] for key in ("command", "test_accuracy", "val_accuracy", "best_epoch",
                                                       "train_seconds") if key in source})
        record["epochs"] = source.get("settings", {}).get("epochs")
        if "init_from" in source:
            record["init_from"] = source["init_from"]  # the chain back to random weights
    return record


def _frozen_modules(model: Any, config: TrainConfig) -> list[nn.Module]:
    """Fine-tuning keeps the generic high-resolution layers (stem and blocks at strides below
    ``freeze_below_stride``) fixed: most of the backward cost is there, and they need no change."""
    if config.arch not in FINE_TUNED:
        return []
    frozen: list[nn.Module] = [model._conv_stem, model._bn0]
    stride = 2
    for block in model._blocks:
        s = block._block_args.stride
        stride *= s[0] if isinstance(s, (list, tuple)) else s
        if stride >= config.freeze_below_stride:
            return frozen
        frozen.append(block)
    if hasattr(model, "_conv_head") and stride < config.freeze_below_stride:
        frozen += [model._conv_head, model._bn1]  # Lite0's head conv sits at the last blocks' stride
    return frozen


def _param_groups(model: nn.Module, config: TrainConfig, frozen: list[nn.Module]) -> list[dict]:
    frozen_ids = {id(p) for m in frozen for p in m.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) not in frozen_ids)
    if config.arch not in FINE_TUNED:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "lr": config.lr}]
    head = [p for n, p in model.named_parameters() if n.startswith(NEW_LAYERS)]
    body = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith(NEW_LAYERS)]
    return [{"params": body, "lr": config.lr * config.backbone_lr_scale}, {"params": head, "lr": config.lr}]


def _set_train_mode(model: nn.Module, frozen: list[nn.Module]) -> None:
    model.train()
    for m in frozen:
        m.eval()  # frozen BatchNorm keeps its ImageNet statistics


# ------------------------------------------------------------------------------ the data

def load_split_tensor(root: Path, split: str, size: int = 224,
                      progress: Callable[[int], object] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """All images of a split as uint8 N x 3 x size x size, and their labels."""
    from explorer.datasets import load_synthetic
    from explorer.images import load_image

    dataset = load_synthetic(root, split)
    images = torch.empty((len(dataset), 3, size, size), dtype=torch.uint8)
    labels = torch.empty(len(dataset), dtype=torch.long)
    for i, sample in enumerate(dataset):
        image = load_image(sample.image_path).convert("RGB")
        if image.size != (size, size):
            image = image.resize((size, size), resample=2)  # bilinear, as Backbone.resize
        images[i] = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)
        labels[i] = int(sample.label)
        if progress is not None:
            progress(1)
    return images, labels


def normalise_batch(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> the (x/255 - 0.5) / 0.5 input both classifiers are registered with."""
    return images.float().div_(127.5).sub_(1.0)


def check_finite_step(loss: torch.Tensor, module: nn.Module | None, epoch: int, step: int,
                      error: type[ExplorerError]) -> None:
    """Training stops at the first inf or NaN, in the loss (before its step) or in the weights and
    buffers (after it), and nothing non-finite is ever written: the run state on disk is the last finite
    checkpoint, and no result file is written. ``module`` None checks the loss alone."""
    if module is None and torch.isfinite(loss).all():
        return
    finite = bool(torch.isfinite(loss).all()) and (  # buffers too: BatchNorm's running statistics
        module is None or all(bool(torch.isfinite(t).all()) for t in module.state_dict().values() if t.is_floating_point()))
    if not finite:
        raise error(f"training diverged at epoch {epoch + 1}, step {step + 1}: the "
                    f"{'loss' if not torch.isfinite(loss).all() else 'weights'} became inf or NaN (a learning rate "
                    "or loss weight too large?). Nothing was written as a result; the run folder keeps the last "
                    "finite checkpoint. Delete it and start again with a lower --lr.")


def augment(images: torch.Tensor, generator: torch.Generator, maps: torch.Tensor | None = None):
    """One of the eight symmetries of the square per image (flip, then 0-3 quarter turns).

    With ``maps`` (B x h x w, e.g. a teacher's CAMs) the same symmetry is applied to each map and
    ``(images, maps)`` is returned; the random draws are the same either way."""
    out = images.clone()
    out_maps = maps.clone() if maps is not None else None
    flips = torch.randint(0, 2, (len(images),), generator=generator)
    turns = torch.randint(0, 4, (len(images),), generator=generator)
    for i in range(len(images)):
        x = images[i]
        m = maps[i] if maps is not None else None
        if flips[i]:
            x = x.flip(-1)
            m = m.flip(-1) if m is not None else None
        out[i] = torch.rot90(x, int(turns[i]), dims=(-2, -1))
        if m is not None and out_maps is not None:
            out_maps[i] = torch.rot90(m, int(turns[i]), dims=(-2, -1))
    return out if maps is None else (out, out_maps)


def attention_transfer_loss(student_cam: torch.Tensor, teacher_cam: torch.Tensor) -> torch.Tensor:
    """Attention transfer (Zagoruyko & Komodakis 2017) between class activation maps:

        L_AT = mean_b || s_b / ||s_b||_2 - t_b / ||t_b||_2 ||_2^2,   t = ReLU(bilinear(T, size(s)))

    with s the student's CAM of the true class (signed, B x h x w) and T the teacher's CAM. It
    compares where the maps put their mass, never their scale, and lies in [0, 4]."""
    t = torch.nn.functional.interpolate(teacher_cam[:, None].float(), size=student_cam.shape[-2:],
                                        mode="bilinear", align_corners=False)[:, 0].clamp(min=0)
    s = torch.nn.functional.normalize(student_cam.flatten(1), dim=1)
    t = torch.nn.functional.normalize(t.flatten(1), dim=1)
    return (s - t).pow(2).sum(1).mean()


def teacher_outputs(teacher: str, images: torch.Tensor, labels: torch.Tensor, device: torch.device,
                    cache: Path | None = None, batch_size: int = 32,
                    progress: Callable[[str, int, int, dict], object] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's CAM of the true class (N x h x w) and its class scores (N x classes) for every
    image, float32 on the CPU, both from one forward per batch; from ``cache`` when it holds them
    for the same teacher and images (a resumed run skips the work). Scored on the unaugmented
    images: the augmentations are symmetries of the square, which keep the class."""
    from explorer.backbones import load_backbone
    from explorer.capture import capture
    from explorer.methods import compute_cams

    key = {"teacher": teacher, "n": len(images), "digest": float(images[:, :, ::16, ::16].float().sum())}
    if cache is not None and cache.is_file():
        saved = torch.load(cache, map_location="cpu", weights_only=True)
        if saved.get("key") == key:
            return saved["cams"], saved["logits"]
    backbone = load_backbone(teacher)
    backbone.model.to(device)
    cams, logits = [], []
    for start in range(0, len(images), batch_size):
        x = normalise_batch(images[start:start + batch_size]).to(device)
        y = labels[start:start + batch_size].tolist()
        cap = capture(backbone, x, y, gradient=False)  # CAM reads the head's weights: no gradient
        cams.append(compute_cams(backbone, x, y, ["cam"], cap=cap)["cam"].detach().float().cpu())
        logits.append(cap.logits.detach().float().cpu())
        if progress is not None:
            progress("teacher", min(start + batch_size, len(images)), len(images), {})
    out = torch.cat(cams), torch.cat(logits)
    if cache is not None:
        save_torch_atomically(cache, {"key": key, "cams": out[0], "logits": out[1]})
    return out


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Knowledge distillation (Hinton et al. 2015): the teacher's class scores softened by T,

        L_KD = T^2 mean_b KL(softmax(t_b / T) || softmax(s_b / T)),

    with the T^2 keeping its gradient on the scale of the cross-entropy's as T changes. The
    teacher learnt from image labels only, so this is still weak supervision: no box, no mask."""
    log_p = torch.log_softmax(student_logits / temperature, dim=1)
    log_q = torch.log_softmax(teacher_logits.to(student_logits.dtype) / temperature, dim=1)
    return temperature ** 2 * (log_q.exp() * (log_q - log_p)).sum(1).mean()


def _student_cam(model: Any, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and the CAM of the true class, sum_k w_yk A_k, from one forward."""
    features = model.features(x)
    logits = model.fc(model.pool(features).flatten(1))
    return logits, torch.einsum("bchw,bc->bhw", features, model.fc.weight[y])


class _Step(nn.Module):
    """What one training step runs forward: the logits, and under attention transfer the student's
    CAM of the true class too."""

    def __init__(self, model: nn.Module, guided: bool):
        super().__init__()
        self.model = model
        self.guided = guided

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.guided:
            return _student_cam(self.model, x, y)
        return self.model(x), None


def step_generator(seed: int, epoch: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(((seed * 1_000_003) + epoch) * 100_003 + step)


def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 64,
             device: torch.device | None = None) -> float:
    """Top-1 accuracy of ``model`` (put in eval mode) on uint8 images."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = 0
    try:
        for start in range(0, len(images), batch_size):
            x = normalise_batch(images[start:start + batch_size]).to(device)
            correct += int((model(x).argmax(1).cpu() == labels[start:start + batch_size]).sum())
    finally:
        model.train(was_training)
    return correct / max(len(images), 1)


# ------------------------------------------------------------------------------ checkpoints

def shipped_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state_dict as written to checkpoints/: int8 weights with per-channel scales, float16
    elsewhere (`explorer.checkpoints.quantize_state`); loading restores float32 parameters."""
    return quantize_state(model.state_dict())


def _float_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _load_run_state(path: Path, config: TrainConfig) -> dict | None:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TrainError(f"the run checkpoint {path} cannot be read ({exc.__class__.__name__}); "
                         f"delete it to start over") from exc
    if state.get("version") != STATE_VERSION or state.get("config") != asdict(config):
        raise TrainError(f"{path} belongs to a run with other settings ({state.get('config')}); "
                         f"delete it or pass the same settings to resume")
    return state


# ------------------------------------------------------------------------------ the loop

def train_classifier(
    arch: str,
    data_root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    config: TrainConfig | None = None,
    run_dir: str | os.PathLike[str] | None = None,
    command: str | None = None,
    device: str | torch.device | None = None,
    progress: Callable[[str, int, int, dict], object] | None = None,
    max_steps: int | None = None,
) -> TrainResult:
    """Train ``arch`` on the synthetic benchmark at ``data_root``; write ``out`` (.pt) and its card
    (same name, .json). Resumes from ``run_dir/state.pt`` when a run with the same settings was
    interrupted.

    ``progress(phase, done, total, info)`` is called per step (phase "train") and per evaluation.
    ``max_steps`` stops after that many steps in this call (the checkpoint is saved): tests use
    it to simulate an interruption.
    """
    config = (config or TrainConfig.defaults(arch)).check()
    if config.arch != arch:
        raise TrainError(f"the settings are for {config.arch}, not {arch}")
    root = Path(data_root)
    out = Path(out)
    if out.suffix != ".pt":
        raise TrainError(f"--out must name a .pt file, not {out}")
    run_dir = Path(run_dir) if run_dir is not None else out.with_name(f"{out.stem}.run")
    state_path = run_dir / "state.pt"
    procs = join(device)  # under torchrun: this rank's device, and its share of every batch
    device = procs.device
    if config.batch_size % procs.world:
        raise TrainError(f"--batch-size {config.batch_size} must divide evenly over the {procs.world} processes")
    if not procs.main:
        progress = None

    from explorer.datasets.synthetic import read_manifest

    manifest = read_manifest(root)
    train_x, train_y = load_split_tensor(root, "train")
    val_x, val_y = load_split_tensor(root, "val")
    if len(train_x) < config.batch_size:
        raise TrainError(f"the train split has {len(train_x)} images, fewer than one batch of {config.batch_size}")

    model = build_model(config).to(device)
    guided = bool(config.teacher) and config.attention_weight > 0
    if guided and not hasattr(model, "features"):
        raise TrainError(f"attention transfer needs a network with a features() map; {arch} has none")
    cams = soft = None
    if guided or config.distill_weight > 0:  # rank 0 fills the run folder's cache; the others read it
        cache = run_dir / "teacher.pt"
        if procs.main:
            cams, soft = teacher_outputs(config.teacher, train_x, train_y, device, cache=cache, progress=progress)
        procs.barrier()
        if not procs.main:
            cams, soft = teacher_outputs(config.teacher, train_x, train_y, device, cache=cache)
        cams = cams if guided else None
        soft = soft if config.distill_weight > 0 else None
    frozen = _frozen_modules(model, config)
    optimiser = torch.optim.AdamW(_param_groups(model, config, frozen), weight_decay=config.weight_decay)
    # One module, wrapped after the frozen layers stop requiring gradients: DDP expects a gradient
    # for every parameter that requires one.
    runner = procs.wrap(_Step(model, guided))
    steps_per_epoch = len(train_x) // config.batch_size  # the incomplete last batch is dropped
    total_steps = steps_per_epoch * config.epochs
    warmup = max(1, int(config.warmup_epochs * steps_per_epoch))
    base_lrs = [g["lr"] for g in optimiser.param_groups]

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, total_steps - warmup)
        return float(0.5 * (1 + math.cos(math.pi * min(t, 1.0))))  # a Python float: the state stays loadable

    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    epoch, step, history, elapsed = 0, 0, [], 0.0
    best: dict[str, Any] = {"val_accuracy": -1.0, "epoch": -1, "state": None}
    saved = _load_run_state(state_path, config)
    started_from = None
    if config.init_from:
        started_from = (saved or {}).get("init_from") or init_from_record(config.init_from)
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimiser.load_state_dict(saved["optimiser"])
        epoch, step, history, elapsed = saved["epoch"], saved["step"], saved["history"], saved["elapsed"]
        best = {"val_accuracy": saved["best_val_accuracy"], "epoch": saved["best_epoch"], "state": saved["best_state"]}

    def checkpoint() -> None:
        if not procs.main:
            return
        save_torch_atomically(state_path, {
            "version": STATE_VERSION, "config": asdict(config), "model": model.state_dict(),
            "optimiser": optimiser.state_dict(), "epoch": epoch, "step": step, "history": history,
            "elapsed": elapsed, "best_val_accuracy": best["val_accuracy"], "best_epoch": best["epoch"],
            "best_state": best["state"], "init_from": started_from,
        })

    steps_this_call = 0
    running = {"loss": 0.0, "correct": 0, "seen": 0}
    while epoch < config.epochs:
        order = epoch_permutation(config.seed, epoch, len(train_x))
        _set_train_mode(model, frozen)
        tick = time.perf_counter()
        while step < steps_per_epoch:
            if max_steps is not None and steps_this_call >= max_steps:
                elapsed += time.perf_counter() - tick
                checkpoint()
                raise TrainInterrupted(f"stopped after {steps_this_call} steps (epoch {epoch}, step {step})")
            index = order[step * config.batch_size:(step + 1) * config.batch_size]
            generator = step_generator(config.seed, epoch, step)
            if cams is not None:
                images, teacher_map = augment(train_x[index], generator, cams[index])
                teacher_map = procs.shard(teacher_map).to(device)
            else:
                images = augment(train_x[index], generator)
            x = normalise_batch(procs.shard(images)).to(device)
            y = procs.shard(train_y[index]).to(device)
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))  # dropout
            for group, base in zip(optimiser.param_groups, base_lrs):
                group["lr"] = base * lr_factor(epoch * steps_per_epoch + step)
            logits, student_map = runner(x, y)
            loss = loss_fn(logits, y)
            if soft is not None:
                loss = ((1 - config.distill_weight) * loss + config.distill_weight
                        * distillation_loss(logits, procs.shard(soft[index]).to(device), config.distill_temperature))
            if guided:
                loss = loss + config.attention_weight * attention_transfer_loss(student_map, teacher_map)
            check_finite_step(loss, None, epoch, step, TrainError)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            check_finite_step(loss, model, epoch, step, TrainError)
            running["loss"] += loss.item() * len(y)
            running["correct"] += int((logits.argmax(1) == y).sum())
            running["seen"] += len(y)
            step += 1
            steps_this_call += 1
            if progress is not None:
                progress("train", epoch * steps_per_epoch + step, total_steps,
                         {"epoch": epoch + 1, "loss": running["loss"] / running["seen"]})
            if step % config.save_every == 0 and step < steps_per_epoch:
                elapsed += time.perf_counter() - tick
                tick = time.perf_counter()
                checkpoint()
        # Each rank scores its share of the validation split; the counts are summed.
        val_accuracy = procs.total(accuracy(model, procs.shard(val_x), procs.shard(val_y), device=device)
                                   * len(procs.shard(val_y))) / max(len(val_y), 1)
        elapsed += time.perf_counter() - tick
        record = {"epoch": epoch + 1, "val_accuracy": round(val_accuracy, 4),
                  "elapsed_s": round(elapsed, 1)}
        if running["seen"]:  # after a resume mid-epoch only the steps run since then are counted
            record.update(train_loss=round(running["loss"] / running["seen"], 4),
                          train_accuracy=round(running["correct"] / running["seen"], 4))
        history.append(record)
        if val_accuracy > best["val_accuracy"]:
            best = {"val_accuracy": val_accuracy, "epoch": epoch + 1, "state": _float_state(model)}
        if progress is not None:
            progress("val", epoch + 1, config.epochs, record)
        running = {"loss": 0.0, "correct": 0, "seen": 0}
        epoch, step = epoch + 1, 0
        checkpoint()

    if not procs.main:  # rank 0 writes the weights and the card
        procs.barrier()
        procs.close()
        return TrainResult(out, out.with_suffix(".json"), float("nan"), best["val_accuracy"], best["epoch"], elapsed,
                           history)
    # The selected weights, made compact, read back as any user reads them, and measured on the
    # held-out test split.
    best_model = build_model(config)
    best_model.load_state_dict(dequantize_state(best["state"]))
    shipped = shipped_state(best_model)
    final = build_model(config)
    final.load_state_dict(dequantize_state(shipped))
    final.to(device)
    test_x, test_y = load_split_tensor(root, "test")
    test_accuracy = accuracy(final, test_x, test_y, device=device)
    save_torch_atomically(out, shipped)
    card_path = out.with_suffix(".json")
    card = {
        "kind": "classifier",
        "backbone": arch,
        "description": REGISTRY[arch].description,
        "weights_file": out.name,
        "command": command or f"python -m explorer train-classifier --arch {arch} --out {out}",
        "seed": config.seed,
        "test_accuracy": round(test_accuracy, 4),
        "val_accuracy": round(best["val_accuracy"], 4),
        "best_epoch": best["epoch"],
        "train_seconds": round(elapsed, 1),
        "device": _device_words(device) + (f" x {procs.world} processes (torchrun)" if procs.world > 1 else ""),
        "torch": torch.__version__,
        "settings": asdict(config),
        **({"init_from": started_from} if started_from else {}),
        "dataset": {"name": "synthetic", "version": manifest.get("version", 1), "params_hash": manifest.get("params_hash"),
                    "seed": manifest.get("seed"), "counts": manifest.get("counts")},
        "history": history,
        "bytes": out.stat().st_size,
    }
    write_json_atomically(card_path, card)
    procs.barrier()
    procs.close()
    return TrainResult(out, card_path, test_accuracy, best["val_accuracy"], best["epoch"], elapsed, history)


class TrainInterrupted(RuntimeError):
    """``max_steps`` was reached; the run checkpoint holds everything needed to resume."""


def _device_words(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def read_card(path: str | os.PathLike[str]) -> dict:
    """A classifier card, or a clear error when it is missing or damaged."""
    path = Path(path)
    if file_problem(path) == "file not found":
        raise CheckpointError(f"{path}: no card")
    card = read_json_object(path, CheckpointError, "the card is damaged; retrain or restore it")
    if not isinstance(card, dict) or "command" not in card or "test_accuracy" not in card:
        raise CheckpointError(f"{path}: not a classifier card (no command or test_accuracy)")
    return card


__all__ = ["ARCHS", "TrainConfig", "TrainError", "TrainInterrupted", "TrainResult", "accuracy",
           "distillation_loss", "teacher_outputs",
           "build_model", "load_split_tensor", "read_card", "train_classifier", "BackboneError"]
