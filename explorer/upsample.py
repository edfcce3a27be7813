"""Upsamplers (grid map -> pixel map) and normalisers, batched on the maps' device.

Gaussian upsampling is Extended-CAM eq. 4: every grid cell (i, j) sprays a 2D Gaussian whose
sigma is the effective receptive field's, and every pixel sums the sprays of ALL cells:

    L_xy = sum_ij L_ij exp(-(x - cx_j)^2 / (2 sx^2) - (y - cy_i)^2 / (2 sy^2)).

The kernel is separable, so with Gy[y, i] = exp(-(y - cy_i)^2 / (2 sy^2)) and Gx likewise, the
double sum is exactly the matrix product Gy @ L @ Gx^T: two small products per map, no
truncation. Cell centres follow the convention of bilinear interpolation with
align_corners=False: cy_i = (i + 0.5) * H / h - 0.5, cx_j = (j + 0.5) * W / w - 0.5 (the paper
writes x - (w/u) i, which shifts every centre by half a cell). The kernel's mass is not divided
out: scaling is the normaliser's job.
"""

from __future__ import annotations

import functools
import numbers
import operator
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from explorer.errors import ExplorerError

UPSAMPLERS = ("nearest", "bilinear", "bicubic", "gaussian")
#: The F-CAM decoder's name where upsamplers are chosen (the pipeline, evaluate, the pages). It is
#: not one of UPSAMPLERS: it decodes image features, not the grid map (see explorer.pipeline).
FCAM = "fcam"
NORMALISERS = ("none", "minmax", "max")

# Bounds that keep every Gaussian finite and meaningful: below 0.05 px the kernel underflows
# between pixel centres; far beyond any image the map is one constant.
SIGMA_MIN = 0.05
SIGMA_MAX = 100_000.0


class UpsampleError(ExplorerError):
    """Bad upsampling or normalisation arguments; the message says what is allowed."""


MAX_SIDE = 16_384  # pixels of an upsampled side; a 16k x 16k float map is 1 GB already
MAX_OUTPUT_ELEMENTS = 2**28  # B x H x W of one call (1 GiB of float32)


def _side(value: object) -> int:
    if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
        raise UpsampleError(f"a size must be a whole number of pixels, not {value!r:.40}.")
    try:
        side = int(value) if isinstance(value, float) else operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise UpsampleError(f"a size must be a whole number of pixels, not {value!r:.40}.") from None
    if not 1 <= side <= MAX_SIDE:
        raise UpsampleError(f"a size must be from 1 to {MAX_SIDE:,} pixels, not {side:,}.")
    return side


def _size(size: int | Sequence[int]) -> tuple[int, int]:
    """(H, W) from one side or two, each a whole number from 1 to MAX_SIDE."""
    if isinstance(size, (str, bytes)) or not isinstance(size, Sequence) and not hasattr(size, "__index__") \
            and not isinstance(size, float):
        raise UpsampleError(f"size must be one number of pixels or (height, width), not {size!r:.40}.")
    if isinstance(size, Sequence):
        if len(size) != 2:
            raise UpsampleError(f"size must be one number of pixels or (height, width), not {len(size)} numbers.")
        return _side(size[0]), _side(size[1])
    side = _side(size)
    return side, side


def check_maps(maps: object, what: str = "maps") -> torch.Tensor:
    """Grid maps B x h x w of real numbers (at least one map and one cell), else UpsampleError."""
    if not isinstance(maps, torch.Tensor):
        raise UpsampleError(f"{what} must be a tensor B x h x w, not {type(maps).__name__}.")
    if maps.dim() != 3 or min(maps.shape) < 1:
        raise UpsampleError(f"Expected {what} of shape B x h x w (a batch of 2D maps), got {tuple(maps.shape)}; "
                            "a single map m is m[None].")
    if maps.is_complex() or maps.dtype == torch.bool:
        raise UpsampleError(f"{what} must hold real numbers, not {maps.dtype}.")
    return maps


def cell_centres(n_cells: int, n_pixels: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Pixel coordinate of each cell's centre: (i + 0.5) * n_pixels / n_cells - 0.5."""
    i = torch.arange(n_cells, device=device, dtype=torch.float64)
    return ((i + 0.5) * n_pixels / n_cells - 0.5).to(dtype)


@functools.lru_cache(maxsize=64)
def gaussian_matrix(n_cells: int, n_pixels: int, sigma: float, device=None,
                    dtype=torch.float32) -> torch.Tensor:
    """G (n_pixels x n_cells), G[p, i] = exp(-(p - c_i)^2 / (2 sigma^2)).

    Cached: a slider move or a dataset loop reuses the same few matrices (a 224 x 14 one is
    12 KB), and rebuilding them was two thirds of a batch-1 upsampling. Callers must not modify
    the returned tensor.
    """
    p = torch.arange(n_pixels, device=device, dtype=torch.float64)[:, None]
    c = cell_centres(n_cells, n_pixels, device=device, dtype=torch.float64)[None, :]
    return torch.exp(-((p - c) ** 2) / (2.0 * float(sigma) ** 2)).to(dtype)


def check_sigma(sigma) -> tuple[float, float]:
    """sigma as (sigma_x, sigma_y) in input pixels, bounded to [SIGMA_MIN, SIGMA_MAX]."""
    if sigma is None:
        raise UpsampleError("Gaussian upsampling needs sigma (in input pixels), e.g. the fitted ERF's.")
    if isinstance(sigma, (str, bytes, bool, complex)):  # "12" would otherwise read as (1, 2)
        raise UpsampleError(f"sigma must be a number or (sigma_x, sigma_y) in pixels, not {sigma!r:.40}.")
    if isinstance(sigma, numbers.Real):
        sx = sy = float(sigma)
    else:
        try:
            values = list(sigma)
        except TypeError:
            raise UpsampleError(f"sigma must be a number or (sigma_x, sigma_y) in pixels, not {sigma!r:.40}.") from None
        if len(values) != 2 or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
            raise UpsampleError(f"sigma must be one number or two (sigma_x, sigma_y), not {sigma!r:.60}.")
        sx, sy = float(values[0]), float(values[1])
    for s in (sx, sy):
        if not (SIGMA_MIN <= s <= SIGMA_MAX):  # also rejects NaN
            raise UpsampleError(f"sigma must lie between {SIGMA_MIN} and {SIGMA_MAX:g} pixels; got {s}.")
    return sx, sy


def gaussian_upsample(maps: torch.Tensor, size: int | Sequence[int], sigma) -> torch.Tensor:
    """Extended-CAM eq. 4, exactly, as Gy @ L @ Gx^T for a batch B x h x w -> B x H x W.

    sigma: one number or (sigma_x, sigma_y), in input pixels.
    """
    maps = check_maps(maps)
    H, W = _size(size)
    _check_output(maps, H, W)
    sx, sy = check_sigma(sigma)
    h, w = maps.shape[-2:]
    dtype = maps.dtype if maps.is_floating_point() else torch.float32
    gy = gaussian_matrix(int(h), H, sy, device=maps.device, dtype=dtype)
    gx = gaussian_matrix(int(w), W, sx, device=maps.device, dtype=dtype)
    return gy @ maps.to(dtype) @ gx.T


def _check_output(maps: torch.Tensor, H: int, W: int) -> None:
    if maps.shape[0] * H * W > MAX_OUTPUT_ELEMENTS:
        raise UpsampleError(f"{maps.shape[0]} maps of {H} x {W} pixels is more than {MAX_OUTPUT_ELEMENTS:,} values in one "
                            "call; upsample fewer maps at a time.")


def upsample(maps: torch.Tensor, size: int | Sequence[int], method: str = "bilinear",
             sigma=None) -> torch.Tensor:
    """Grid maps B x h x w -> pixel maps B x H x W.

    nearest / bilinear / bicubic: torch interpolation with align_corners=False (the convention
    of the WSOL protocol's resize). gaussian: `gaussian_upsample` with sigma (x, y) in pixels.
    """
    maps = check_maps(maps)
    H, W = _size(size)
    _check_output(maps, H, W)
    if method == "gaussian":
        return gaussian_upsample(maps, (H, W), sigma)
    if method == FCAM:
        raise UpsampleError("The F-CAM decoder reads the image's features, not the grid map: pass decoders= to "
                            "explorer.grid_maps and read GridMaps.fcam (or pixel_maps(..., 'fcam', fcam=...)).")
    if method not in UPSAMPLERS:
        raise UpsampleError(f"Unknown upsampler '{method}'; use one of {', '.join(UPSAMPLERS)}.")
    kwargs = {} if method == "nearest" else {"align_corners": False}
    return F.interpolate(maps[:, None].float(), size=(H, W), mode=method, **kwargs)[:, 0]


def normalise(maps: torch.Tensor, method: str = "minmax") -> torch.Tensor:
    """Per-map scaling, a separate stage after upsampling.

    "none": unchanged; "minmax": (m - min) / (max - min), in [0, 1]; "max": m / max|m|, in
    [-1, 1] and sign-preserving (for signed maps). A constant (in particular all-zero) map
    carries no spatial information and becomes zeros under every normaliser but "none", and a
    map with any NaN or infinity becomes zeros (as the WSOL reference does), never NaN.
    """
    if method not in NORMALISERS:
        raise UpsampleError(f"Unknown normaliser '{method}'; use one of {', '.join(NORMALISERS)}.")
    if not isinstance(maps, torch.Tensor) or maps.dim() < 2 or maps.is_complex() or maps.dtype == torch.bool:
        raise UpsampleError(f"normalise takes a batch of maps (B x ...) of real numbers, not "
                            f"{tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__}.")
    flat = maps.flatten(1)
    flat = flat if flat.dtype == torch.float64 else flat.float()  # float64 stays: the protocol normalises in it
    # amin / amax propagate NaN and show an infinity, so one pair of reductions both finds the
    # non-finite maps and gives the range (torch.isfinite over every pixel costs ten times more).
    lo, hi = flat.amin(dim=1, keepdim=True), flat.amax(dim=1, keepdim=True)
    finite = torch.isfinite(lo) & torch.isfinite(hi)
    if not bool(finite.all()):
        flat = torch.where(finite, flat, torch.zeros_like(flat))
        lo, hi = torch.where(finite, lo, torch.zeros_like(lo)), torch.where(finite, hi, torch.zeros_like(hi))
    if method == "none":
        return flat.view_as(maps)
    span = hi - lo
    varies = span > 0  # a constant map carries no spatial information: zeros
    if method == "minmax":
        out = (flat - lo) / torch.where(varies, span, torch.ones_like(span))
    else:
        peak = torch.maximum(hi.abs(), lo.abs())
        out = flat / torch.where(peak > 0, peak, torch.ones_like(peak))
    if not bool(varies.all()):
        out = out * varies
    return out.view_as(maps)
