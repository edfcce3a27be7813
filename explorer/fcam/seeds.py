"""F-CAM's sampling regions ("seeds"): the pixel pseudo-labels drawn from a CAM, batched.

F-CAM eq. 1-2 (shared/papers/f-cam.txt; shared/reference/fcam-decoder.md):

    C+ = pixels of C above the Otsu threshold of uint8(255 C) (threshold clamped to [1, 254]),
         eroded once with a k x k all-ones kernel (kept un-eroded when erosion empties it);
    C- = the n- fraction of pixels with the lowest C;
    Omega' = U(C+) u U(C-): a few pixels drawn uniformly from each region, each dilated to a
             p x p patch; a pixel marked both ways is dropped, every other pixel is ignored.

C is the low-resolution CAM min-max normalised at its own resolution (a constant or non-finite
map gives zeros) and resized bilinearly to the image. A constant map gives no seeds. Everything
runs on the maps' device, for a whole batch at once; the draws come from a torch.Generator so a
training run is reproducible step by step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from explorer.errors import ExplorerError
from explorer.upsample import normalise


class SeedError(ExplorerError):
    """A seed setting that cannot draw seeds (n- outside (0, 1), an even patch, ...)."""

IGNORE = -100  # label of unsupervised pixels (torch's cross-entropy default ignore_index)


@dataclass(frozen=True)
class SeedConfig:
    """The knobs of the sampling regions, with F-CAM's defaults."""

    n_negative: float = 0.3   # fraction of lowest-CAM pixels allowed as background (paper: 0.1..0.7)
    fg_samples: int = 1       # pixels drawn from C+ per image and iteration
    bg_samples: int = 1       # pixels drawn from C- per image and iteration
    patch: int = 3            # each drawn pixel is dilated to patch x patch
    erode: int = 11           # C+ is eroded once with an erode x erode all-ones kernel

    def __post_init__(self) -> None:
        if not 0.0 < self.n_negative < 1.0:
            raise SeedError(f"n_negative must lie strictly between 0 and 1, not {self.n_negative}")
        for name in ("fg_samples", "bg_samples", "patch", "erode"):
            if getattr(self, name) < 1:
                raise SeedError(f"{name} must be at least 1")
        if self.patch % 2 == 0 or self.erode % 2 == 0:
            raise SeedError("patch and erode must be odd (a centred square)")


def cam_for_seeds(grid_maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """C: B x h x w raw CAMs -> min-max normalised at low resolution, bilinear to `size`."""
    low = normalise(grid_maps.float(), "minmax")
    return F.interpolate(low[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0].clamp_(0, 1)


def to_uint8(maps01: torch.Tensor) -> torch.Tensor:
    """uint8(255 C) by truncation, as the reference casts it."""
    return (maps01 * 255).to(torch.uint8)


def otsu_thresholds(images: torch.Tensor) -> torch.Tensor:
    """Otsu's threshold of each uint8 map in a batch B x H x W, as scikit-image's threshold_otsu
    computes it on integer images: histogram over the levels from the map's minimum to its
    maximum, between-class variance w1(t) w2(t+1) (m1(t) - m2(t+1))^2, first maximum. A
    constant map returns its value. Returns B integer levels (foreground: value > threshold).
    """
    B = images.shape[0]
    flat = images.reshape(B, -1).long()
    hist = torch.zeros((B, 256), dtype=torch.float64, device=images.device)
    hist.scatter_add_(1, flat, torch.ones_like(flat, dtype=torch.float64))
    levels = torch.arange(256, dtype=torch.float64, device=images.device)
    lo = flat.min(dim=1).values
    hi = flat.max(dim=1).values
    w1 = hist.cumsum(1)
    w2 = hist.flip(1).cumsum(1).flip(1)
    m1 = (hist * levels).cumsum(1) / w1.clamp_min(1e-300)
    m2 = (hist * levels).flip(1).cumsum(1).flip(1) / w2.clamp_min(1e-300)
    variance = w1[:, :-1] * w2[:, 1:] * (m1[:, :-1] - m2[:, 1:]) ** 2  # B x 255, t = 0..254
    t = levels[:-1].long()[None]
    valid = (t >= lo[:, None]) & (t < hi[:, None])
    variance = torch.where(valid, variance, torch.full_like(variance, -1.0))
    # argmax returns the first of equal maxima on CPU and CUDA alike (a plateau of empty bins).
    best = variance.argmax(dim=1)
    return torch.where(hi > lo, best, lo)


def erode(masks: torch.Tensor, kernel: int) -> torch.Tensor:
    """Binary erosion with a kernel x kernel square; outside the image counts as foreground
    (OpenCV's default border for erosion), so objects touching the border are not eaten."""
    inverted = (~masks)[:, None].float()
    return F.max_pool2d(inverted, kernel, stride=1, padding=kernel // 2)[:, 0] == 0


def dilate(masks: torch.Tensor, kernel: int) -> torch.Tensor:
    return F.max_pool2d(masks[:, None].float(), kernel, stride=1, padding=kernel // 2)[:, 0] > 0


def sampling_regions(maps01: torch.Tensor, config: SeedConfig = SeedConfig()) -> tuple[torch.Tensor, torch.Tensor]:
    """(C+, C-) boolean B x H x W for maps in [0, 1] at image resolution (see module doc)."""
    B, H, W = maps01.shape
    img = to_uint8(maps01)
    thr = otsu_thresholds(img).clamp(1, 254)
    fg = img > thr.view(B, 1, 1).to(torch.uint8)
    eroded = erode(fg, config.erode)
    empty = ~eroded.flatten(1).any(dim=1)
    fg = torch.where(empty.view(B, 1, 1), fg, eroded)
    k = max(1, int(math.ceil(config.n_negative * H * W)))
    lowest = torch.topk(maps01.reshape(B, -1), k, dim=1, largest=False).indices
    bg = torch.zeros((B, H * W), dtype=torch.bool, device=maps01.device)
    bg.scatter_(1, lowest, True)
    bg = bg.view(B, H, W)
    constant = (maps01.flatten(1).amax(1) - maps01.flatten(1).amin(1)) <= 0
    fg &= ~constant.view(B, 1, 1)
    bg &= ~constant.view(B, 1, 1)
    return fg, bg


def _draw(region: torch.Tensor, count: int, generator: torch.Generator | None) -> torch.Tensor:
    """`count` pixels drawn uniformly (with replacement) from each non-empty region: a B x H x W
    mask of the drawn pixels (empty for an empty region)."""
    B, H, W = region.shape
    weights = region.reshape(B, -1).float()
    has = weights.sum(1) > 0
    drawn = torch.zeros_like(weights, dtype=torch.bool)
    if has.any():
        # Draws on the CPU from the CPU generator: the same pixels on every device.
        picks = torch.multinomial(weights[has].cpu(), count, replacement=True, generator=generator)
        rows = drawn[has]
        rows.scatter_(1, picks.to(region.device), True)
        drawn[has] = rows
    return drawn.view(B, H, W)


def draw_seeds(fg: torch.Tensor, bg: torch.Tensor, config: SeedConfig = SeedConfig(),
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Omega': labels B x H x W (long) with 1 foreground, 0 background, IGNORE elsewhere."""
    fg_seed = dilate(_draw(fg, config.fg_samples, generator), config.patch)
    bg_seed = dilate(_draw(bg, config.bg_samples, generator), config.patch)
    labels = torch.full(fg.shape, IGNORE, dtype=torch.long, device=fg.device)
    labels[fg_seed & ~bg_seed] = 1
    labels[bg_seed & ~fg_seed] = 0
    return labels


def seeds_from_cam(grid_maps: torch.Tensor, size: tuple[int, int], config: SeedConfig = SeedConfig(),
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """From raw CAMs to seeds in one call: (C, C+, C-, labels)."""
    cam = cam_for_seeds(grid_maps, size)
    fg, bg = sampling_regions(cam, config)
    return cam, fg, bg, draw_seeds(fg, bg, config, generator)
