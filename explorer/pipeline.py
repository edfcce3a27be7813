"""The pipeline, composed: capture -> methods -> ReLU policy -> upsampler -> normaliser.

The first half (`grid_maps`) is the expensive one: one forward + one gradient for all gradient
methods, plus the declared extra passes. The second half (`pixel_maps`) is cheap and is all that
a slider (sigma, normaliser, upsampler) reruns.

The F-CAM decoder is the one upsampler that is not a function of the grid map: it decodes the
classifier's multi-scale features. So it enters at the capture: `grid_maps(..., decoders=...)`
records the decoders' taps in the same forward and stores each decoder's full-resolution map
(foreground probability) in `GridMaps.fcam`, keyed by the base method it was trained from; the
upsampler name "fcam" then reads it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from explorer.backbones import Backbone
from explorer.capture import capture, check_targets
from explorer.methods import AUG_COUNT, METHODS, augment, check_any_target, compute_cams, resolve_relu, validate_methods
from explorer.upsample import FCAM, UpsampleError, normalise, upsample

if TYPE_CHECKING:
    from explorer.fcam.decoder import FcamDecoder


@dataclass
class GridMaps:
    """Raw grid-level maps of several methods for one batch, with what it took to get them."""

    maps: dict[str, torch.Tensor]  # method -> B x h x w, after the ReLU policy
    relu: dict[str, str]  # method -> policy applied
    logits: torch.Tensor  # B x classes, from the shared forward
    targets: torch.Tensor
    layer: str
    seconds: dict[str, float] = field(default_factory=dict)  # "capture" and one entry per method
    fcam: dict[str, torch.Tensor] = field(default_factory=dict)  # base method -> B x H x W F-CAM

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def grid_maps(backbone: Backbone, images: torch.Tensor, targets: object,
              methods: Iterable[str], layer: str | None = None,
              relu: str | Mapping[str, str] = "none", *,
              decoders: Mapping[str, FcamDecoder] | None = None, **options) -> GridMaps:
    """One capture shared by every method asked, then each method's formula, timed separately.

    decoders: base method -> F-CAM decoder; their taps are recorded in the same forward and
    their maps land in `GridMaps.fcam` (timed as "fcam:<method>").
    """
    methods = validate_methods(methods)
    layer = backbone.resolve_layer(layer)
    device = images.device
    decoders = dict(decoders or {})
    taps = tuple(dict.fromkeys(t for d in decoders.values() for t in d.taps))
    aug_smooth = bool(options.get("aug_smooth", False))
    count = images.shape[0]
    images, classes, functions = check_targets(backbone, images, targets)
    if functions is not None:
        check_any_target(methods, aug_smooth)
    targets = classes if functions is None else list(functions.objectives)
    start = time.perf_counter()
    need_grad = any(METHODS[m].needs_gradient for m in methods)
    # With aug-smooth the one shared capture is that of the augmented batch (the images are its first rows).
    cap = capture(backbone, augment(images) if aug_smooth else images,
                  classes.repeat(AUG_COUNT) if aug_smooth else targets, layer, gradient=need_grad, taps=taps)
    _sync(device)
    seconds = {"capture": time.perf_counter() - start}
    fcam = {}
    for method, decoder in decoders.items():
        start = time.perf_counter()
        features = {name: value[:count] for name, value in cap.features.items()}
        fcam[method] = decoder.foreground(features, (int(images.shape[-2]), int(images.shape[-1])))
        _sync(device)
        seconds[f"fcam:{method}"] = time.perf_counter() - start
    maps, policies = {}, {}
    for method in methods:
        start = time.perf_counter()
        policies[method] = resolve_relu(method, relu)
        maps[method] = compute_cams(backbone, images, targets, [method], layer, relu=policies[method],
                                    cap=cap, **options)[method]
        _sync(device)
        seconds[method] = time.perf_counter() - start
    return GridMaps(maps=maps, relu=policies, logits=cap.logits[:count], targets=cap.targets[:count], layer=layer,
                    seconds=seconds, fcam=fcam)


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Torch's intra-op threads limited to one in this thread for the block (the limit is a
    per-thread OpenMP setting: other threads, e.g. another session's forward, keep theirs).

    For the cheap half on one image: its tensors are a few hundred kilobytes, and handing them to
    a second thread costs more than it saves once the cores are shared (with a browser, another
    session, a training run): inside the served app beside a training run a Gaussian upsampling
    of four 14 x 14 maps to 224 x 224 took 40 ms a call with two threads (0.7 ms in one thread
    in a bare process on the same loaded machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def pixel_maps(maps: torch.Tensor, size: int | Sequence[int], upsampler: str = "bilinear",
               sigma=None, normaliser: str = "minmax", fcam: torch.Tensor | None = None) -> torch.Tensor:
    """Upsample then normalise a batch of grid maps (the cheap half of the pipeline).

    For the upsampler "fcam", `fcam` is the decoder's map from `GridMaps.fcam` (B x H x W, a
    probability): it is resized (bilinearly) only when `size` differs, and not normalised,
    since the WSOL protocol scores the F-CAM as the probability it is.
    """
    if upsampler == FCAM:
        if fcam is None:
            raise UpsampleError("The F-CAM upsampler needs the decoder's map (GridMaps.fcam); no decoder "
                                "was run for this method.")
        return fcam_at(fcam, size)
    return normalise(upsample(maps, size, upsampler, sigma), normaliser)


def fcam_at(fcam: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """An F-CAM batch B x H x W at `size` (bilinear when it differs), in [0, 1]."""
    size = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
    if tuple(fcam.shape[-2:]) == size:
        return fcam.float()
    return F.interpolate(fcam[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0].clamp_(0, 1)


def pixel_map_table(grid: GridMaps, size: int | Sequence[int], upsamplers: Iterable[str],
                    sigma=None, normaliser: str = "minmax", index: int = 0) -> dict[tuple[str, str], torch.Tensor]:
    """(method, upsampler) -> H x W map of image `index`: the cells of a comparison grid."""
    table = {}
    for method, maps in grid.maps.items():
        for up in upsamplers:
            if up == FCAM and method not in grid.fcam:
                continue  # no decoder was trained from this method
            fcam = grid.fcam[method][index:index + 1] if up == FCAM else None
            table[(method, up)] = pixel_maps(maps[index:index + 1], size, up, sigma, normaliser, fcam)[0]
    return table
