"""The pipeline, composed: capture -> methods -> ReLU policy -> upsampler -> normaliser.

The first half (`grid_maps`) is the expensive one: one forward + one gradient for all gradient
methods, plus the declared extra passes. The second half (`pixel_maps`) is cheap and is all that
a slider (sigma, normaliser, upsampler) reruns.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import torch

from explorer.backbones import Backbone
from explorer.capture import capture
from explorer.methods import METHODS, compute_cams, resolve_relu, validate_methods
from explorer.upsample import normalise, upsample


@dataclass
class GridMaps:
    """Raw grid-level maps of several methods for one batch, with what it took to get them."""

    maps: dict[str, torch.Tensor]  # method -> B x h x w, after the ReLU policy
    relu: dict[str, str]  # method -> policy applied
    logits: torch.Tensor  # B x classes, from the shared forward
    targets: torch.Tensor
    layer: str
    seconds: dict[str, float] = field(default_factory=dict)  # "capture" and one entry per method

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def grid_maps(backbone: Backbone, images: torch.Tensor, targets: torch.Tensor | Sequence[int],
              methods: Iterable[str], layer: str | None = None,
              relu: str | Mapping[str, str] = "none", **options) -> GridMaps:
    """One capture shared by every method asked, then each method's formula, timed separately."""
    methods = validate_methods(methods)
    layer = backbone.resolve_layer(layer)
    device = images.device
    start = time.perf_counter()
    need_grad = any(METHODS[m].needs_gradient for m in methods)
    cap = capture(backbone, images, targets, layer, gradient=need_grad)
    _sync(device)
    seconds = {"capture": time.perf_counter() - start}
    maps, policies = {}, {}
    for method in methods:
        start = time.perf_counter()
        policies[method] = resolve_relu(method, relu)
        maps[method] = compute_cams(backbone, images, cap.targets, [method], layer, relu=policies[method],
                                    cap=cap, **options)[method]
        _sync(device)
        seconds[method] = time.perf_counter() - start
    return GridMaps(maps=maps, relu=policies, logits=cap.logits, targets=cap.targets, layer=layer,
                    seconds=seconds)


def pixel_maps(maps: torch.Tensor, size: int | Sequence[int], upsampler: str = "bilinear",
               sigma=None, normaliser: str = "minmax") -> torch.Tensor:
    """Upsample then normalise a batch of grid maps (the cheap half of the pipeline)."""
    return normalise(upsample(maps, size, upsampler, sigma), normaliser)


def pixel_map_table(grid: GridMaps, size: int | Sequence[int], upsamplers: Iterable[str],
                    sigma=None, normaliser: str = "minmax", index: int = 0) -> dict[tuple[str, str], torch.Tensor]:
    """(method, upsampler) -> H x W map of image `index`: the cells of a comparison grid."""
    table = {}
    for method, maps in grid.maps.items():
        for up in upsamplers:
            table[(method, up)] = pixel_maps(maps[index:index + 1], size, up, sigma, normaliser)[0]
    return table
