"""The F-CAM decoder: a U-Net over the frozen classifier's multi-scale features.

F-CAM (shared/papers/f-cam.txt, Fig. 2; shared/reference/fcam-decoder.md) replaces the
interpolation of a coarse CAM by a trainable decoder. The decoder does NOT read the CAM: it
decodes the encoder's features, deepest first, and the CAM acts only through the pseudo-labels
(seeds) it is trained from. Each block:

    x <- nearest-upsample(x, 2); x <- bilinear-resize(x, skip size) if sizes differ;
    x <- concat(x, skip); x <- ReLU(BN(conv3x3(x))); x <- ReLU(BN(conv3x3(x)))

and the head is one conv3x3 to 2 channels (background, foreground), resized bilinearly to the
input size. The F-CAM is the softmax foreground probability S_2, not normalised (the WSOL
protocol scores it as it is).

Where each backbone is tapped, and the block widths, are declared in the backbone registry
(`explorer.backbones.DecoderSpec`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from explorer.backbones import CHECKPOINT_DIR, Backbone, DecoderSpec
from explorer.checkpoints import CheckpointError, load_state_dict
from explorer.errors import ExplorerError
from explorer.safe_files import UnsafeFileError, file_problem, read_json

FCAM_DIR = CHECKPOINT_DIR / "fcam"


class FcamError(ExplorerError):
    """An F-CAM decoder cannot be built, loaded or applied as asked; the message says why."""


def conv_bn_relu(cin: int, cout: int, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU())


class DecoderBlock(nn.Module):
    """Upsample x2 (nearest), match the skip's size (bilinear), concatenate, two conv-BN-ReLU."""

    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.conv1 = conv_bn_relu(cin + cskip, cout)
        self.conv2 = conv_bn_relu(cout, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if skip is not None:
            if x.shape[-2:] != skip.shape[-2:]:
                x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class UNetDecoder(nn.Module):
    """U-Net decoder over features given shallow -> deep; returns 2-channel logits.

    tap_channels: channels of each tapped feature, shallowest first. widths: output channels of
    each block, deepest first; block i takes the i-th skip from the deep end, and blocks beyond
    the skips upsample without one. centre: optional 1x1 conv-BN-ReLU on the deepest feature.
    """

    def __init__(self, tap_channels: Sequence[int], widths: Sequence[int], centre: int | None = None):
        super().__init__()
        if len(tap_channels) < 1 or len(widths) < 1:
            raise FcamError("a decoder needs at least one tapped feature and one block")
        if len(widths) < len(tap_channels) - 1:
            raise FcamError(f"{len(tap_channels) - 1} skip features need at least as many blocks, got {len(widths)}")
        self.tap_channels = tuple(int(c) for c in tap_channels)
        self.widths = tuple(int(w) for w in widths)
        self.centre_width = centre
        deepest = self.tap_channels[-1]
        self.centre = conv_bn_relu(deepest, centre, kernel=1) if centre else nn.Identity()
        skips = self.tap_channels[:-1][::-1]
        cin = centre or deepest
        blocks = []
        for i, width in enumerate(self.widths):
            blocks.append(DecoderBlock(cin, skips[i] if i < len(skips) else 0, width))
            cin = width
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(cin, 2, 3, padding=1)

    def forward(self, features: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """features shallow -> deep (B x C_i x h_i x w_i); logits B x 2 x size."""
        if len(features) != len(self.tap_channels):
            raise FcamError(f"the decoder reads {len(self.tap_channels)} features, got {len(features)}")
        skips = list(features[:-1])[::-1]
        x = self.centre(features[-1])
        for i, block in enumerate(self.blocks):
            x = block(x, skips[i] if i < len(skips) else None)
        logits = self.head(x)
        if tuple(logits.shape[-2:]) != tuple(size):
            logits = F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
        return logits


@dataclass
class FcamDecoder:
    """A decoder bound to the backbone it reads: which layers it taps, which CAM trained it.

    `foreground(features, size)` gives the F-CAM (softmax foreground probability) of a batch
    whose features were recorded by `explorer.capture(..., taps=decoder.taps)`.
    """

    net: UNetDecoder
    backbone: str
    taps: tuple[str, ...]
    base_method: str
    layer: str
    card: dict = field(default_factory=dict)
    source: str = "untrained"

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @property
    def label(self) -> str:
        return f"F-CAM decoder (trained from {self.base_method})"

    def logits(self, features: dict[str, torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        missing = [t for t in self.taps if t not in features]
        if missing:
            raise FcamError(f"the capture did not record the decoder's taps {missing}; pass taps=decoder.taps")
        return self.net([features[t].to(self.device) for t in self.taps], size)

    @torch.no_grad()
    def foreground(self, features: dict[str, torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """The F-CAM: softmax foreground probability B x H x W in [0, 1], float32."""
        logits = self.logits(features, size)  # eval mode: BN reads its statistics, never writes
        return torch.softmax(logits.float(), dim=1)[:, 1]


def tap_channels(backbone: Backbone, spec: DecoderSpec) -> list[int]:
    return [backbone.layer_shape(t)[0] for t in spec.taps]


def decoder_spec(backbone: Backbone, widths: Sequence[int] | None = None,
                 centre: int | None | str = "default") -> DecoderSpec:
    """The registry's decoder spec for `backbone`, with optional width changes."""
    if backbone.decoder is None:
        raise FcamError(f"{backbone.name} declares no F-CAM decoder taps")
    spec = backbone.decoder
    centre_width = spec.centre if isinstance(centre, str) else centre  # "default": the registry's
    return DecoderSpec(taps=spec.taps, widths=tuple(widths) if widths else spec.widths, centre=centre_width)


def build_decoder(backbone: Backbone, base_method: str = "cam", layer: str | None = None,
                  spec: DecoderSpec | None = None, seed: int | None = None) -> FcamDecoder:
    """A freshly initialised decoder for `backbone` on its device (seeded when `seed` is given)."""
    spec = spec or decoder_spec(backbone)
    for tap in spec.taps:
        backbone.resolve_layer(tap)
    channels = tap_channels(backbone, spec)
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = UNetDecoder(channels, spec.widths, spec.centre)
    else:
        net = UNetDecoder(channels, spec.widths, spec.centre)
    return FcamDecoder(net=net.to(backbone.device), backbone=backbone.name, taps=tuple(spec.taps),
                       base_method=base_method, layer=backbone.resolve_layer(layer))


def parameter_count(decoder: FcamDecoder) -> int:
    return sum(p.numel() for p in decoder.net.parameters())


# ------------------------------------------------------------------------------ files

def decoder_path(backbone: str, base_method: str = "cam") -> Path:
    """Where the shipped decoder of a backbone and base method lives."""
    return FCAM_DIR / f"{backbone}__{base_method}.pt"


def read_decoder_card(path: str | Path) -> dict:
    """The card beside a decoder's weights (same name, .json), or a clear error."""
    path = Path(path).with_suffix(".json")
    if file_problem(path) == "file not found":
        raise FcamError(f"{path}: no card beside the decoder weights (it says which backbone, taps and widths "
                        f"they belong to)")
    try:  # a pipe or /dev/zero in its place is refused before anything is read
        card = read_json(path)
    except UnsafeFileError as exc:
        raise FcamError(f"{exc}; the decoder's card cannot be used: retrain the decoder or restore the file") from exc
    needed = ("kind", "backbone", "base_method", "layer", "taps", "widths", "command")
    if not isinstance(card, dict) or card.get("kind") != "fcam_decoder" or any(k not in card for k in needed):
        raise FcamError(f"{path}: not an F-CAM decoder card (needs kind 'fcam_decoder' and {', '.join(needed[1:])})")
    _check_card_shape(path, card)
    return card


MAX_DECODER_WIDTH = 2048  # the widest shipped block is 256; a card is text anyone can edit
MAX_DECODER_BLOCKS = 8


def _check_card_shape(path: Path, card: dict) -> None:
    """The card decides how large a network is built: bounded before anything is allocated."""
    def whole(value: object, low: int, high: int) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high

    taps, widths, centre = card["taps"], card["widths"], card.get("centre")
    if not (isinstance(taps, list) and 1 <= len(taps) <= MAX_DECODER_BLOCKS + 1
            and all(isinstance(t, str) and t for t in taps)):
        raise FcamError(f"{path}: 'taps' must be a list of 1 to {MAX_DECODER_BLOCKS + 1} layer names, not {taps!r:.80}")
    if not (isinstance(widths, list) and 1 <= len(widths) <= MAX_DECODER_BLOCKS
            and all(whole(w, 1, MAX_DECODER_WIDTH) for w in widths)):
        raise FcamError(f"{path}: 'widths' must be a list of 1 to {MAX_DECODER_BLOCKS} whole numbers from 1 to "
                        f"{MAX_DECODER_WIDTH}, not {widths!r:.80}")
    if centre is not None and not whole(centre, 1, MAX_DECODER_WIDTH):
        raise FcamError(f"{path}: 'centre' must be empty or a whole number from 1 to {MAX_DECODER_WIDTH}, "
                        f"not {centre!r:.80}")
    for key in ("backbone", "base_method", "layer"):
        if not isinstance(card[key], str):
            raise FcamError(f"{path}: '{key}' must be text, not {card[key]!r:.80}")


def load_decoder(path: str | Path, backbone: Backbone) -> FcamDecoder:
    """A trained decoder (weights read with weights_only=True) for `backbone`, in eval mode."""
    path = Path(path)
    card = read_decoder_card(path)
    if card["backbone"] != backbone.name:
        raise FcamError(f"{path.name} was trained on {card['backbone']}, not {backbone.name}")
    spec = DecoderSpec(taps=tuple(card["taps"]), widths=tuple(card["widths"]), centre=card.get("centre"))
    decoder = build_decoder(backbone, card["base_method"], card["layer"], spec)
    expected = {key: tuple(value.shape) for key, value in decoder.net.state_dict().items()}
    try:
        state = load_state_dict(path, expected, fits="the decoder its card describes")
    except CheckpointError as exc:
        raise FcamError(str(exc)) from exc
    try:
        decoder.net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as exc:
        raise FcamError(f"{path.name} does not fit its decoder: {str(exc).splitlines()[-1].strip()}") from exc
    decoder.net.eval()
    decoder.card = card
    decoder.source = str(path)
    return decoder


def backbones_with_shipped_decoders() -> list[str]:
    """The backbones that a shipped decoder (weights with a card) belongs to."""
    return sorted({p.stem.split("__", 1)[0] for p in FCAM_DIR.glob("*__*.pt") if p.with_suffix(".json").is_file()})


def shipped_decoders(backbone: str) -> dict[str, Path]:
    """base method -> shipped decoder weights for `backbone` (those with a card)."""
    found = {}
    for path in sorted(FCAM_DIR.glob(f"{backbone}__*.pt")):
        if path.with_suffix(".json").is_file():
            found[path.stem.split("__", 1)[1]] = path
    return found
