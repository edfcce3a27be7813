"""The user's own networks: any torchvision classifier from a local weight file
(`load_backbone("torchvision:resnet18", weights=path)`), or any `nn.Module` as it is
(`module_backbone(model)`), made into a `Backbone` without a registry entry.

What the registry states by hand is found here by looking at the network once:

* Target layers: one dry forward at the input size records every module whose output is a 4D
  feature map. Modules that hand on the same tensor (a block and its last ReLU, an in-place ReLU
  and its convolution) are one layer, named by the shortest path (the last to run among equals).
  Pooling layers and what merely passes a pooling's output on are left out.
* The default layer is the last feature map with more than one cell before the classifier.
* A GAP + linear head is detected by measurement, not by name: the logits must equal the last
  linear layer applied to the global average of the default layer's map (on a random input, in
  eval mode). Only then is plain CAM offered (VGG's MLP head and ConvNeXt's LayerNorm fail it).
* Preprocessing comes from torchvision's weight metadata (crop size, mean, std), and the class
  names are ImageNet's when the network has 1,000 outputs, else `class <i>` or a names file.

Nothing is downloaded: the weights come from the user's file only (or `weights="random"`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from explorer.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RANDOM_WEIGHTS_SEED,
    Backbone,
    BackboneError,
    TokenLayout,
    default_device,
    imagenet_class_names,
)
from explorer.checkpoints import CheckpointError, check_shapes, load_state_dict
from explorer.targets import TASKS

TORCHVISION = "torchvision:"
TIMM = "timm:"
POOLING = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
MAX_NAMES_BYTES = 16 * 2**20
MAX_CLASSES = 50_000  # ImageNet-21k has 21,843; a 10^6-class head alone would take gigabytes
INPUT_SIDE = (16, 2048)  # pixels of each side of the network's input
MIN_STD = 1e-4  # a smaller std (or 0) makes every normalised pixel overflow to inf / NaN
MAX_TEXT = 2000  # characters of a card's name or description


def torchvision_architectures() -> list[str]:
    """The classification architectures torchvision can build (no weights involved)."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def torchvision_task(arch: str) -> str | None:
    """"classification", "segmentation" or "detection" for an architecture torchvision can build, else None."""
    import torchvision

    for task, module in (("classification", torchvision.models), ("segmentation", torchvision.models.segmentation),
                         ("detection", torchvision.models.detection)):
        if arch in torchvision.models.list_models(module=module):
            return task
    return None


MAX_SPECIAL_TOKENS = 8  # CLS, a distillation token and up to six register tokens


def patch_grid(model: nn.Module, input_size: tuple[int, int]) -> tuple[int, int] | None:
    """The patch grid of a vision transformer: the input size over the stride of its patch
    embedding (the first convolution whose kernel equals its stride, at least 2); None for a
    network without one (a CNN's stem overlaps its windows)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            if module.kernel_size == module.stride and min(module.stride) >= 2:
                return input_size[0] // module.stride[0], input_size[1] // module.stride[1]
            return None
    return None


def token_layout(shape: tuple[int, ...], grid: tuple[int, int] | None) -> TokenLayout | None:
    """How an output of `shape` (batch first) maps onto the patch grid or one of its halvings
    (Swin's patch merging): tokens with up to MAX_SPECIAL_TOKENS leading special tokens, or
    channels-last; None when it is neither (a 4D output whose last two dims are such a grid is
    channels-first, as a CNN's)."""
    if grid is None:
        return None
    grids = [(grid[0] >> k, grid[1] >> k) for k in range(5) if grid[0] >> k and grid[1] >> k]
    if len(shape) == 3:
        for g in grids:
            special = shape[1] - g[0] * g[1]
            if 0 <= special <= MAX_SPECIAL_TOKENS:
                return TokenLayout("tokens", special, g)
    if len(shape) == 4 and tuple(shape[2:]) not in grids and tuple(shape[1:3]) in grids:
        return TokenLayout("nhwc", 0, (int(shape[1]), int(shape[2])))
    return None


def _grid_shape(out: torch.Tensor, layout: TokenLayout | None) -> tuple[int, int, int]:
    if layout is None:
        return int(out.shape[1]), int(out.shape[2]), int(out.shape[3])
    return int(out.shape[-1]), layout.grid[0], layout.grid[1]


def is_transformer(layouts: dict[str, TokenLayout]) -> bool:
    """Token outputs, or channels-last blocks with a first norm (Swin). A CNN with a patchify stem
    and channels-last internals (ConvNeXt) keeps its CNN default layer, the last feature map."""
    return any(layout.kind == "tokens" or name.rsplit(".", 1)[-1] in ("norm1", "ln_1")
               for name, layout in layouts.items())


def transformer_default(layers: list[tuple[int, str, tuple[int, int, int]]], layouts: dict[str, TokenLayout]) -> str:
    """Where the peers point ViT users: the last block's first norm (timm's blocks[-1].norm1,
    torchvision's encoder_layer_N.ln_1); else the last token layer with a grid."""
    tokens = [name for _, name, (_, gh, gw) in layers if name in layouts and gh * gw > 1]
    firsts = [name for name in tokens if name.rsplit(".", 1)[-1] in ("norm1", "ln_1")]
    return (firsts or tokens)[-1]


def discover_layers(model: nn.Module, input_size: tuple[int, int], device: torch.device | None = None
                    ) -> tuple[dict[str, str], dict[str, tuple[int, int, int]], str, int, dict[str, TokenLayout]]:
    """(layers: name -> module path, their (C, h, w) shapes, the default layer, the number of
    outputs, the token layouts of a transformer's layers) from one dry forward."""
    grid = patch_grid(model, input_size)
    records: list[tuple[str, torch.Tensor, TokenLayout | None]] = []  # (path, output, layout) in completion order
    pooled: set[int] = set()
    handles = []
    for path, module in model.named_modules():
        if not path:
            continue

        def hook(_m, _i, out, path=path, module=module):
            if not isinstance(out, torch.Tensor) or out.dim() not in (3, 4) or out.shape[0] != 1:
                return  # the dry forward holds one image: a first size of N is per proposal (a detector's RoIs)
            layout = token_layout(tuple(out.shape), grid)
            if out.dim() == 4 or layout is not None:
                records.append((path, out, layout))  # kept alive, so no id is reused during the forward
                if isinstance(module, POOLING):
                    pooled.add(id(out))
        handles.append(module.register_forward_hook(hook))
    try:
        outputs = _dry_forward(model, input_size, device)
    finally:
        for handle in handles:
            handle.remove()
    groups: dict[int, list[tuple[int, str, torch.Tensor, TokenLayout | None]]] = {}
    for order, (path, out, layout) in enumerate(records):
        groups.setdefault(id(out), []).append((order, path, out, layout))
    layers: list[tuple[int, str, tuple[int, int, int]]] = []
    layouts: dict[str, TokenLayout] = {}
    for key, members in groups.items():
        if key in pooled:
            continue
        order, path, out, layout = min(members, key=lambda m: (m[1].count("."), len(m[1]), -m[0]))
        layers.append((max(m[0] for m in members), path, _grid_shape(out, layout)))
        if layout is not None:
            layouts[path] = layout
    layers.sort()
    if not layers:
        raise BackboneError("The network has no layer whose output is a 4D feature map or a grid of tokens: there is "
                            "nothing to explain.")
    spatial = [name for _, name, (_, gh, gw) in layers if gh * gw > 1]
    if not spatial:
        raise BackboneError("Every feature map of the network is 1x1: there is no grid for a CAM.")
    names = {path: path for _, path, _ in layers}
    shapes = {path: shape for _, path, shape in layers}
    default = transformer_default(layers, layouts) if is_transformer(layouts) else spatial[-1]
    return names, shapes, default, outputs, layouts


def _dry_forward(model: nn.Module, input_size: tuple[int, int], device: torch.device | None) -> int:
    """One forward of zeros in eval mode; the number of outputs."""
    was_training = model.training
    model.eval()
    h, w = input_size
    try:
        with torch.no_grad():
            output = model(torch.zeros(1, 3, h, w, device=device or next(model.parameters()).device))
        return output_count(model, output)
    except Exception as exc:
        raise BackboneError(f"A dry forward at {h}x{w} failed ({exc.__class__.__name__}: {str(exc)[:200]}); "
                            "give the input size the network expects.") from exc
    finally:
        model.train(was_training)


def output_count(model: nn.Module, output: object) -> int:
    """How many classes (or values) the network outputs per image: a classifier's logits, a
    segmentation model's class planes ({"out": B x C x H x W} in torchvision), a detector's
    box classifier (its output is a list of detections, so the count is read from its head)."""
    if isinstance(output, torch.Tensor):
        return int(output.shape[1])
    if isinstance(output, dict) and isinstance(output.get("out"), torch.Tensor):
        return int(output["out"].shape[1])
    classifier = getattr(getattr(getattr(model, "roi_heads", None), "box_predictor", None), "cls_score", None)
    if isinstance(output, list) and isinstance(classifier, nn.Linear):
        return int(classifier.out_features)
    dense_head = getattr(getattr(model, "head", None), "classification_head", None)  # RetinaNet, FCOS, SSD
    count = getattr(dense_head, "num_classes", getattr(dense_head, "num_columns", None))  # SSD: one column a class
    if isinstance(output, list) and isinstance(count, int):
        return count
    raise TypeError(f"the output {type(output).__name__} is neither logits, class planes nor detections")


def gap_linear_head(model: nn.Module, layer_path: str, input_size: tuple[int, int]) -> nn.Linear | None:
    """The last linear layer when the logits are exactly it applied to the global average of
    `layer_path`'s output (measured on a random input in eval mode), else None."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        return None
    head = linears[-1]
    captured: list[torch.Tensor] = []
    handle = model.get_submodule(layer_path).register_forward_hook(lambda _m, _i, out: captured.append(out))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            generator = torch.Generator().manual_seed(0)
            h, w = input_size
            x = torch.randn(2, 3, h, w, generator=generator).to(next(model.parameters()).device)
            logits = model(x)
    finally:
        handle.remove()
        model.train(was_training)
    if not captured or not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        return None
    pooled = captured[-1].float().mean(dim=(2, 3))
    if pooled.shape[1] != head.in_features or logits.shape[1] != head.out_features:
        return None
    expected = nn.functional.linear(pooled, head.weight.float(), None if head.bias is None else head.bias.float())
    scale = max(float(logits.abs().max()), 1e-6)
    return head if torch.allclose(logits.float(), expected, atol=1e-4 * scale, rtol=1e-4) else None


def read_class_names(path: str | os.PathLike[str], count: int, exact: bool = True) -> list[str]:
    """Class names from a text file (one per line) or JSON (a list, or {"0": name, ...})."""
    from explorer.safe_files import UnsafeFileError, read_regular

    try:
        text = read_regular(path, MAX_NAMES_BYTES).decode("utf-8-sig")
    except (UnsafeFileError, UnicodeDecodeError) as exc:
        raise BackboneError(f"The class names in {path} cannot be read ({exc}).") from exc
    if str(path).endswith(".json"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise BackboneError(f"{path} is not valid JSON ({exc}).") from exc
        if isinstance(data, dict) and not exact:
            data = [data[k] for k in sorted(data, key=lambda k: int(k) if str(k).isdigit() else 0)]
        if isinstance(data, dict):
            try:
                data = [data[str(i)] for i in range(count)]
            except KeyError as exc:
                raise BackboneError(f"{path} names no class {exc}; it needs keys 0 to {count - 1}.") from exc
        names = [str(n) for n in data] if isinstance(data, list) else []
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) > MAX_CLASSES:
        raise BackboneError(f"{path} names {len(names):,} classes; at most {MAX_CLASSES:,} are allowed.")
    if exact and len(names) != count:
        raise BackboneError(f"{path} names {len(names)} classes, but the network has {count} outputs.")
    return names


def module_backbone(model: nn.Module, *, name: str = "your model", input_size: Sequence[int] = (224, 224),
                    mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                    class_names: Sequence[str] | str | os.PathLike[str] | None = None, weights: str = "yours",
                    weights_label: str = "your weights", layer: str | None = None,
                    device: str | torch.device | None = None, task: str = "classification") -> Backbone:
    """Any `nn.Module` over B x 3 x H x W images as a Backbone, layers found by `discover_layers`:
    a classifier (B x classes), or for `task` an encoder or regressor (B x D), a segmentation
    model (B x C x H x W, or {"out": ...}), a detector (a list of boxes, labels, scores per image).
    The module is put in eval mode and moved to `device` (default: CUDA when present), never copied."""
    size = check_input_size(list(input_size) if isinstance(input_size, tuple) else input_size, name)
    mean, std = check_normalisation(list(mean), list(std), name)
    if task not in TASKS:
        raise BackboneError(f"{name}: the task '{str(task)[:40]}' is not one of {', '.join(TASKS)}.")
    model.eval()
    model.to(torch.device(device) if device is not None else default_device())
    layers, shapes, default, outputs, layouts = discover_layers(model, size)
    if task in ("segmentation", "detection"):
        default = dense_default(layers, shapes, default)
    if layer is not None:
        if layer not in layers:
            raise BackboneError(f"{name} has no target layer '{layer}'. Layers with a feature map: "
                                f"{', '.join(list(layers)[-8:])} (and {max(len(layers) - 8, 0)} earlier).")
        default = layer
    head = None if default in layouts or task != "classification" else gap_linear_head(model, layers[default], size)
    if class_names is None and task in ("embedding", "regression"):
        names = [f"{'dimension' if task == 'embedding' else 'output'} {i}" for i in range(outputs)]
    elif class_names is None:
        names = imagenet_class_names() if outputs == 1000 else [f"class {i}" for i in range(outputs)]
    elif isinstance(class_names, (str, os.PathLike)):
        names = read_class_names(class_names, outputs)
    else:
        names = [str(n) for n in class_names]
        if len(names) != outputs:
            raise BackboneError(f"{len(names)} class names were given, but {name} has {outputs} outputs.")
    backbone = Backbone(name=name, model=model, weights=weights, weights_label=weights_label, input_size=size,
                        mean=(float(mean[0]), float(mean[1]), float(mean[2])),
                        std=(float(std[0]), float(std[1]), float(std[2])), class_names=names, layers=layers,
                        default_layer=default, head=head, cam_layer=default if head is not None else None,
                        layer_notes=_layer_notes(default, head is not None, layouts, task), token_layouts=layouts,
                        task=task)
    backbone._shapes.update(shapes)
    return backbone


def dense_default(layers: dict[str, str], shapes: dict[str, tuple[int, int, int]], default: str) -> str:
    """A segmentation or detection network's default layer: the last spatial map of its `backbone`
    (torchvision's layer4 of an FCN or DeepLab, the last block of a detector's body), where the
    peers point users; the heads after it predict from it."""
    inside = [name for name in layers if name.startswith("backbone.") and shapes[name][1] * shapes[name][2] > 1]
    return inside[-1] if inside else default


def _layer_notes(default: str, gap_linear: bool, layouts: dict[str, TokenLayout],
                 task: str = "classification") -> dict[str, str]:
    """What the UI says about the layers: the default's role, and how each token layer is read."""
    notes = {name: layout.describe() for name, layout in layouts.items()}
    if task in ("segmentation", "detection"):
        notes[default] = f"the backbone's last feature map, which the {task} heads read; where the peers point users"
    elif default in layouts:
        notes[default] = ("the last block's first norm, where the peers point ViT users (a later layer feeds only "
                          f"the class token, so its patch tokens get no gradient); {layouts[default].describe()}")
    else:
        notes[default] = "the last feature map before the classifier" + (
            " (its GAP + linear head: plain CAM applies)" if gap_linear else "")
    return notes


@dataclass(frozen=True)
class Built:
    """A network built with its weights, before its layers are looked at: the model and what
    preprocessing, name and label it comes with."""

    model: nn.Module
    name: str
    input_size: tuple[int, int]
    mean: Sequence[float]
    std: Sequence[float]
    weights: str
    weights_label: str
    task: str = "classification"
    class_names: tuple[str, ...] = ()  # the architecture's own (torchvision's metadata), used when the count fits

    def backbone(self, class_names: Sequence[str] | str | os.PathLike[str] | None = None,
                 device: str | torch.device | None = None) -> Backbone:
        return module_backbone(self.model, name=self.name, input_size=self.input_size, mean=self.mean, std=self.std,
                               class_names=class_names if class_names is not None else self.own_names(),
                               weights=self.weights, weights_label=self.weights_label, device=device, task=self.task)

    def own_names(self) -> list[str] | None:
        """The metadata's class names where the network has as many outputs (a segmentation or detection model's
        VOC or COCO categories); None leaves the choice to `module_backbone`."""
        if self.task == "classification" or not self.class_names:
            return None
        count = _classes_in(dict(self.model.named_parameters()), self.model, self.task)
        return list(self.class_names) if count == len(self.class_names) else None


def torchvision_backbone(arch: str, weights: str | Path = "random", *, class_names: str | os.PathLike[str] | None = None,
                         device: str | torch.device | None = None, num_classes: int | None = None) -> Backbone:
    """torchvision's `arch` with the user's weight file (or random weights, labelled as such).

    The number of classes is read from the file's final layer; preprocessing from torchvision's
    metadata for the architecture."""
    return build_torchvision(arch, weights, num_classes).backbone(class_names, device)


def check_class_count(num_classes: int | None, what: str) -> None:
    """A head of more than MAX_CLASSES outputs is refused before it is built (it alone would
    take gigabytes)."""
    if num_classes is not None and not 1 <= num_classes <= MAX_CLASSES:
        raise BackboneError(f"{what} asks for {num_classes:,} classes; 1 to {MAX_CLASSES:,} are allowed.")


def build_torchvision(arch: str, weights: str | Path = "random", num_classes: int | None = None) -> Built:
    """torchvision's classifier, segmentation model or detector `arch`, untrained or with the
    user's weights; preprocessing from its metadata (a detector normalises and resizes inside,
    so its images go in as [0, 1] pixels at the size it resizes to)."""
    import torchvision

    check_class_count(num_classes, f"torchvision's {arch}")
    task = torchvision_task(arch)
    if task is None:
        known = torchvision_architectures() + torchvision.models.list_models(module=torchvision.models.segmentation) \
            + torchvision.models.list_models(module=torchvision.models.detection)
        raise BackboneError(f"torchvision has no classifier, segmentation model or detector '{arch}'. Known: "
                            f"{', '.join(sorted(known))}.")
    meta = torchvision.models.get_model_weights(arch).DEFAULT
    state = _user_state(weights)
    num_classes = num_classes or len(meta.meta["categories"])  # random weights: as many as asked
    extra: dict[str, Any] = {} if task == "classification" else {"weights_backbone": None}
    if task == "segmentation" and state is not None and any(k.startswith("aux_classifier.") for k in state):
        extra["aux_loss"] = True  # trained with the auxiliary head: its weights load, its output is not used
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        model = _build(arch, num_classes, extra)
        if state is not None and (classes := _classes_in(state, model, task)) not in (None, num_classes):
            model = _build(arch, classes, extra)  # the file decides how many classes
    kind, label = _fit(model, state, weights, f"torchvision's {arch}")
    size, mean, std = _torchvision_preprocessing(model, meta.transforms(), task)
    return Built(model, f"{TORCHVISION}{arch}", size, mean, std, kind, label, task=task,
                 class_names=tuple(str(c) for c in meta.meta["categories"]))


def _torchvision_preprocessing(model: nn.Module, transforms: Any, task: str
                               ) -> tuple[tuple[int, int], Sequence[float], Sequence[float]]:
    """(input size, mean, std) from torchvision's preset: a classifier's crop, a segmentation
    model's resize; a detector's own resize with identity normalisation (it normalises inside)."""
    if task == "detection":
        side = int(model.transform.min_size[0])  # type: ignore[union-attr,index]
        return (side, side), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    sizes = transforms.crop_size if task == "classification" else transforms.resize_size
    side = sizes[0] if isinstance(sizes, (list, tuple)) else sizes
    return (int(side), int(side)), transforms.mean, transforms.std


def timm_backbone(name: str, weights: str | Path = "random", *, class_names: str | os.PathLike[str] | None = None,
                  device: str | torch.device | None = None, num_classes: int | None = None) -> Backbone:
    """timm's `name` built without its hub weights (`pretrained=False`) and given the user's file
    (or random weights); preprocessing from the model's own configuration."""
    return build_timm(name, weights, num_classes).backbone(class_names, device)


def build_timm(name: str, weights: str | Path = "random", num_classes: int | None = None) -> Built:
    try:
        import timm
    except ImportError as exc:  # pinned in requirements.txt; a notebook may lack it
        raise BackboneError("timm is not installed: pip install timm") from exc
    if name not in timm.list_models():
        raise BackboneError(f"timm has no model '{name}' (timm.list_models() lists them).")
    check_class_count(num_classes, f"timm's {name}")
    state = _user_state(weights)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        extra: dict[str, Any] = {"num_classes": num_classes} if num_classes else {}
        model = timm.create_model(name, pretrained=False, **extra)
        if state is not None:
            classes = _classes_in(state, model)
            if classes is not None and classes != model.num_classes:
                model = timm.create_model(name, pretrained=False, num_classes=classes)
    kind, label = _fit(model, state, weights, f"timm's {name}")
    config = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", {}) or {}
    height, width = tuple(config.get("input_size", (3, 224, 224)))[-2:]
    return Built(model, f"{TIMM}{name}", (int(height), int(width)), config.get("mean", IMAGENET_MEAN),
                 config.get("std", IMAGENET_STD), kind, label)


# ------------------------------------------------------------------ the WSOL protocol's networks

WSOL = "wsol:"
WSOL_ARCHITECTURES = ("vgg16", "vgg16-28x28", "resnet50", "resnet50-28x28", "inception_v3", "inception_v3-28x28")
# VGG16 with its last max-pool removed (14 x 14 at 224), or the last two (28 x 28): the layer
# configuration of the protocol's VGG16-CAM; "M" is a 2 x 2 max-pool.
_VGG_CAM: dict[str, list[int | str]] = {
    "14x14": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    "28x28": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, 512, 512, 512],
}


class WsolVggCam(nn.Module):
    """The protocol's VGG16-CAM: VGG16's convolutions (features.<i>, keys as in its checkpoints),
    conv6 (512 -> 1024, 3 x 3) + ReLU, global average pooling and fc (1024 -> classes)."""

    def __init__(self, num_classes: int, grid: str = "14x14") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in _VGG_CAM[grid]:
            if isinstance(item, str):  # "M"
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, item, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                channels = item
        self.features = nn.Sequential(*layers)
        self.conv6 = nn.Conv2d(512, 1024, kernel_size=3, padding=1)
        self.relu = nn.ReLU(inplace=False)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.avgpool(self.relu(self.conv6(self.features(x)))).flatten(1))


def _wsol_resnet50(num_classes: int, grid: str) -> nn.Module:
    """torchvision's ResNet50 (the same keys) with layer4, and for 28 x 28 layer3 too, at stride 1
    instead of 2, as the protocol's ResNet50-CAM: its stride lives in each stage's first conv2."""
    import torchvision

    model = torchvision.models.resnet50(weights=None, num_classes=num_classes)
    stages = [model.layer4] + ([model.layer3] if grid == "28x28" else [])
    for stage in stages:
        first = stage[0]
        first.conv2.stride = (1, 1)
        if first.downsample is not None:
            first.downsample[0].stride = (1, 1)
    return model


class WsolInceptionCam(nn.Module):
    """The protocol's Inception-v3-CAM: torchvision's Inception-v3 blocks (the same keys), with the
    stem's first conv padded by 1, the stem's two max-pools padded by 1 with ceil_mode, a third
    max-pool after Mixed_5d (dropped for 28 x 28 maps), Mixed_6a at stride 1 (padding 1, its pool
    too), no Mixed_7; then SPG_A3_1b and SPG_A3_2b (3 x 3 convs to 1024, ReLU), SPG_A4 (1 x 1 conv
    to the classes) and global average pooling. A 1 x 1 conv followed by GAP is GAP followed by a
    linear layer, so SPG_A4 is held as that nn.Linear (its checkpoint weight is reshaped on load):
    the protocol's CAM is plain CAM at SPG_A3_2b, and the GAP + linear head is detected as such.
    At 224 x 224 the maps are 14 x 14 (28 x 28 without the third pool)."""

    def __init__(self, num_classes: int, grid: str = "14x14") -> None:
        super().__init__()
        from torchvision.models.inception import BasicConv2d, InceptionA, InceptionC

        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2, padding=1)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.maxpool3: nn.Module = nn.MaxPool2d(3, stride=2, ceil_mode=True) if grid == "14x14" else nn.Identity()
        self.Mixed_6a = _inception_b_stride1(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.SPG_A3_1b = nn.Sequential(nn.Conv2d(768, 1024, 3, padding=1), nn.ReLU())
        self.SPG_A3_2b = nn.Sequential(nn.Conv2d(1024, 1024, 3, padding=1), nn.ReLU())
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.SPG_A4 = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool1(self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x))))
        x = self.maxpool2(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)))
        x = self.maxpool3(self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x))))
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(self.Mixed_6a(x)))))
        # Dropout as a function, not a module: one module used three times would be a "layer" whose
        # hook fires three times.
        drop = nn.functional.dropout
        x = self.SPG_A3_2b(drop(self.SPG_A3_1b(drop(x, 0.5, self.training)), 0.5, self.training))
        return self.SPG_A4(self.avgpool(drop(x, 0.5, self.training)).flatten(1))


def _inception_b_stride1(in_channels: int) -> nn.Module:
    from torchvision.models.inception import InceptionB

    class InceptionBStride1(InceptionB):
        """torchvision's InceptionB (its keys) at stride 1 with padding 1, as the protocol's Mixed_6a."""

        def __init__(self, in_channels: int) -> None:
            super().__init__(in_channels)
            for conv in (self.branch3x3.conv, self.branch3x3dbl_3.conv):
                conv.stride, conv.padding = (1, 1), (1, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            pooled = nn.functional.max_pool2d(x, kernel_size=3, stride=1, padding=1)
            deep = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
            return torch.cat([self.branch3x3(x), deep, pooled], 1)

    return InceptionBStride1(in_channels)


def _wsol_network(base: str, classes: int, grid: str) -> nn.Module:
    if base == "vgg16":
        return WsolVggCam(classes, grid)
    if base == "inception_v3":
        return WsolInceptionCam(classes, grid)
    return _wsol_resnet50(classes, grid)


def wsol_backbone(arch: str, weights: str | Path = "random", *, class_names: str | os.PathLike[str] | None = None,
                  device: str | torch.device | None = None, num_classes: int | None = None) -> Backbone:
    """The WSOL protocol's VGG16-CAM, ResNet50-CAM or Inception-v3-CAM (14 x 14 maps, or 28 x 28 with "-28x28") with
    a checkpoint saved by its training code ({"state_dict": ...}, `module.` prefixes allowed)."""
    return build_wsol(arch, weights, num_classes).backbone(class_names, device)


def build_wsol(arch: str, weights: str | Path = "random", num_classes: int | None = None) -> Built:
    if arch not in WSOL_ARCHITECTURES:
        raise BackboneError(f"Unknown WSOL architecture '{arch}'; choose one of {', '.join(WSOL_ARCHITECTURES)}.")
    base, _, grid = arch.partition("-")
    grid = grid or "14x14"
    state = _user_state(weights)
    if state is not None and (head := state.get("SPG_A4.weight")) is not None and head.dim() == 4:
        state = {**state, "SPG_A4.weight": head.flatten(1)}  # the 1 x 1 conv, as the linear layer it is after GAP
    head_key = "SPG_A4.weight" if base == "inception_v3" else "fc.weight"
    if state is not None and (fc := state.get(head_key)) is not None:
        num_classes = int(fc.shape[0])  # the file decides how many classes
    classes = num_classes or 1000
    check_class_count(classes, f"wsol:{arch}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        model = _wsol_network(base, classes, grid)
    kind, label = _fit(model, state, weights, f"wsol:{arch}")
    return Built(model, f"{WSOL}{arch}", (224, 224), IMAGENET_MEAN, IMAGENET_STD, kind, label)


# ------------------------------------------------------------------------------ model cards

CARD = "card:"
CARD_KEYS = {"architecture", "weights", "input_size", "mean", "std", "class_names", "layer", "name", "description",
             "task"}


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _three_numbers(value: object, field_name: str, where: str) -> tuple[float, float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 3 or not all(_is_number(v) for v in value):
        raise BackboneError(f"{where}: \"{field_name}\" must be three finite numbers (R, G, B), got {str(value)[:80]}.")
    return float(value[0]), float(value[1]), float(value[2])


def check_normalisation(mean: object, std: object, where: str) -> tuple[tuple[float, float, float],
                                                                        tuple[float, float, float]]:
    """Three finite means (|m| <= 1000) and three finite stds >= MIN_STD, else one BackboneError."""
    means, stds = _three_numbers(mean, "mean", where), _three_numbers(std, "std", where)
    if any(abs(v) > 1000 for v in means):
        raise BackboneError(f"{where}: \"mean\" must lie within +-1000 (pixels are read in [0, 1]).")
    if any(v < MIN_STD for v in stds):
        raise BackboneError(f"{where}: every \"std\" must be at least {MIN_STD:g} (a smaller one, or 0, turns every "
                            "pixel into inf or NaN).")
    return means, stds


def check_input_size(value: object, where: str) -> tuple[int, int]:
    """[height, width] (or one side) of whole pixels within INPUT_SIDE, else one BackboneError."""
    sides = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    low, high = INPUT_SIDE
    if (not isinstance(sides, (list, tuple)) or len(sides) not in (1, 2)
            or not all(isinstance(v, int) and not isinstance(v, bool) and low <= v <= high for v in sides)):
        raise BackboneError(f"{where}: \"input_size\" must be [height, width] in whole pixels from {low} to {high}, "
                            f"got {str(value)[:80]}.")
    return (int(sides[0]), int(sides[-1]))


def check_card(card: object, where: str) -> dict:
    """Every field of a model card checked before anything is built: types, ranges, finite
    values, std > 0, at most MAX_CLASSES class names; one message naming the field."""
    if not isinstance(card, dict):
        raise BackboneError(f"{where} must hold a JSON object, not {type(card).__name__}.")
    unknown = sorted(set(card) - CARD_KEYS)
    if unknown:
        raise BackboneError(f"{where} has unknown keys {unknown}; it knows {sorted(CARD_KEYS)}.")
    if not isinstance(card.get("architecture"), str) or not 0 < len(card["architecture"]) <= 200:
        raise BackboneError(f"{where} needs an \"architecture\" such as \"torchvision:resnet18\".")
    for key in ("weights", "layer", "name", "description"):
        value = card.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > MAX_TEXT):
            raise BackboneError(f"{where}: \"{key}\" must be text (at most {MAX_TEXT} characters), "
                                f"not {type(value).__name__}.")
    if "task" in card and card["task"] not in TASKS:
        raise BackboneError(f"{where}: \"task\" must be one of {', '.join(TASKS)}, not {str(card['task'])[:40]}.")
    if "input_size" in card:
        check_input_size(card["input_size"], where)
    if "mean" in card or "std" in card:
        check_normalisation(card.get("mean", IMAGENET_MEAN), card.get("std", IMAGENET_STD), where)
    names = card.get("class_names")
    if names is not None and not isinstance(names, str):
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise BackboneError(f"{where}: \"class_names\" must name a file or be a list of names, "
                                f"not {type(names).__name__}.")
        if not 1 <= len(names) <= MAX_CLASSES:
            raise BackboneError(f"{where}: \"class_names\" lists {len(names):,} names; 1 to {MAX_CLASSES:,} are allowed.")
    return card


def load_card(path: str | os.PathLike[str], weights: str | Path = "pretrained",
              device: str | torch.device | None = None) -> Backbone:
    """A network described by a model card (JSON written by its owner):

        {"architecture": "torchvision:resnet18" or "timm:<name>",
         "weights": "resnet18-mine.pt",          (relative to the card)
         "class_names": "names.txt" or [...],   (optional; ImageNet's for 1,000 outputs)
         "input_size": [224, 224], "mean": [...], "std": [...],   (optional: the architecture's)
         "layer": "layer4", "name": "my resnet",                  (optional)
         "task": "classification"}   (optional: or embedding, regression; segmentation and
                                      detection follow from a torchvision architecture)

    `weights` "pretrained" means the card's file; "random" the architecture untrained."""
    from explorer.safe_files import UnsafeFileError, read_regular

    card_path = Path(path)
    try:
        card = json.loads(read_regular(card_path, MAX_NAMES_BYTES).decode("utf-8-sig"))
    except (UnsafeFileError, UnicodeDecodeError, ValueError) as exc:
        raise BackboneError(f"The model card {card_path} cannot be read ({exc}).") from exc
    card = check_card(card, f"The model card {card_path}")
    here = card_path.parent

    def beside(value: object, what: str) -> Path:
        if not isinstance(value, str) or not value:
            raise BackboneError(f"The model card {card_path}: \"{what}\" must name a file.")
        target = (here / value).resolve()
        from explorer.safe_files import is_inside

        if not is_inside(here, target):
            raise BackboneError(f"The model card {card_path}: \"{what}\" must lie beside the card, not at {value}.")
        return target

    if isinstance(weights, str) and weights == "pretrained":
        weights = beside(card.get("weights"), "weights") if card.get("weights") else "random"
    names = card.get("class_names")
    class_names = beside(names, "class_names") if isinstance(names, str) else names
    count = None  # random weights get as many outputs as the card names classes
    if isinstance(class_names, Path):
        count = len(read_class_names(class_names, -1, exact=False))
    elif isinstance(class_names, list):
        count = len(class_names)
    architecture = card["architecture"]
    kind, _, rest = architecture.partition(":")
    builders = {"torchvision": build_torchvision, "timm": build_timm, "wsol": build_wsol}
    if kind not in builders:
        raise BackboneError(f"The model card {card_path}: architecture '{architecture}' is not torchvision:<arch>, "
                            "timm:<name> or wsol:<arch>.")
    built = builders[kind](rest, weights, count)
    return module_backbone(built.model, name=str(card.get("name") or f"{CARD}{card_path.name}"),
                           input_size=card.get("input_size", built.input_size), mean=card.get("mean", built.mean),
                           std=card.get("std", built.std),
                           class_names=class_names if class_names is not None else built.own_names(),
                           weights=built.weights, weights_label=built.weights_label, layer=card.get("layer"),
                           device=device, task=card_task(card, built, card_path))


def card_task(card: dict, built: Built, card_path: Path) -> str:
    """The card's task: a segmentation model or detector is what its architecture is; a network
    with one vector per image is a classifier unless the card calls it an embedding or regression."""
    task = card.get("task", built.task)
    vector_tasks = ("classification", "embedding", "regression")
    if task != built.task and not (built.task == "classification" and task in vector_tasks):
        raise BackboneError(f"The model card {card_path}: \"task\" is {task}, but {card['architecture']} is a "
                            f"{built.task} model.")
    return str(task)


def model_cards(folder: str | os.PathLike[str]) -> list[Path]:
    """The model cards (*.json) in `folder`, by name; none when it does not exist."""
    root = Path(folder)
    return sorted(p for p in root.glob("*.json") if p.is_file()) if root.is_dir() else []


def _build(arch: str, num_classes: int, extra: dict[str, Any] | None = None) -> nn.Module:
    import torchvision

    try:
        return torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **(extra or {}))
    except Exception as exc:
        raise BackboneError(f"torchvision could not build {arch} with {num_classes} classes ({exc}).") from exc


def _user_state(weights: str | Path) -> dict[str, torch.Tensor] | None:
    """The state_dict of the user's file (safely read, DataParallel prefixes removed); None for
    weights="random"."""
    if isinstance(weights, str) and weights == "random":
        return None
    try:
        return _strip_prefixes(load_state_dict(Path(weights)))
    except CheckpointError as exc:
        raise BackboneError(str(exc)) from exc


def _fit(model: nn.Module, state: dict[str, torch.Tensor] | None, weights: str | Path, what: str) -> tuple[str, str]:
    """Load `state` into `model` after its names and shapes are checked; (weights kind, label)."""
    if state is None:
        return "random", "RANDOM (untrained) weights"
    try:
        check_shapes(state, {k: tuple(v.shape) for k, v in model.state_dict().items()}, weights, what)
    except CheckpointError as exc:
        raise BackboneError(str(exc)) from exc
    model.load_state_dict(state, strict=True)
    return str(weights), f"your file {Path(weights).name}"


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """DataParallel / DistributedDataParallel save keys as `module.<key>`."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return state


def _classes_in(state: dict[str, torch.Tensor], model: nn.Module, task: str = "classification") -> int | None:
    """The output count of the file's class layer: a classifier's last parameter, a segmentation
    model's last `classifier.` bias, a detector's box classifier."""
    names = [k for k, _ in model.named_parameters()]
    if task == "detection":
        last = "roi_heads.box_predictor.cls_score.bias"  # Faster / Mask R-CNN; other detectors keep their count
    elif task == "segmentation":
        last = [k for k in names if k.startswith("classifier.") and k.endswith("bias")][-1]
    else:
        last = names[-1]
    tensor = state.get(last)
    if tensor is None:
        return None
    return int(tensor.shape[0])
