"""Map pictures: colour scales, overlays, labelled grids and the comparison sheet, image bytes for
the screen and for downloads, pre-binned histograms. No Streamlit; pages only place what these
functions return.

Signed maps (any negative value) get a diverging colormap centred on zero; non-negative maps a
sequential one. Payloads stay small: overlays are uint8 images, histograms are pre-binned.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

SEQUENTIAL_CMAP = "inferno"  # perceptually uniform; jet invents edges where the values are smooth
DIVERGING_CMAP = "RdBu_r"


def to_numpy(maps) -> np.ndarray:
    if isinstance(maps, torch.Tensor):
        return maps.detach().float().cpu().numpy()
    return np.asarray(maps, dtype=np.float32)


def is_signed(values: np.ndarray) -> bool:
    return bool(np.nanmin(values) < 0)


@dataclass(frozen=True)
class ColourScale:
    """The value range a colormap spans. Signed scales are symmetric around zero."""

    lo: float
    hi: float
    signed: bool

    @property
    def cmap(self) -> str:
        return DIVERGING_CMAP if self.signed else SEQUENTIAL_CMAP


def _finite_range(values: np.ndarray) -> tuple[float, float] | None:
    """(min, max) over the finite values, None when there are none. Two reductions when every value
    is finite (a normalised map always is); the mask only for a map with NaN or infinity."""
    if values.size == 0:
        return None
    lo, hi = float(np.min(values)), float(np.max(values))
    if np.isfinite(lo) and np.isfinite(hi):
        return lo, hi
    finite = values[np.isfinite(values)]
    return (float(finite.min()), float(finite.max())) if finite.size else None


def colour_scale(*maps: np.ndarray) -> ColourScale:
    """One scale spanning all the given maps (pass one map for a per-map scale)."""
    ranges = [r for r in (_finite_range(np.asarray(m)) for m in maps) if r is not None]
    if not ranges:
        return ColourScale(0.0, 1.0, False)
    lo = min(r[0] for r in ranges)
    hi = max(r[1] for r in ranges)
    if lo < 0:
        peak = max(abs(lo), abs(hi)) or 1.0
        return ColourScale(-peak, peak, True)
    return ColourScale(lo, hi if hi > lo else lo + 1.0, False)


@functools.lru_cache(maxsize=8)
def _colour_table(cmap: str) -> tuple[np.ndarray, int]:
    """The colormap's own N colours as uint8 RGB rows, and N."""
    from matplotlib import colormaps

    colours = colormaps[cmap]
    return (colours(np.arange(colours.N))[:, :3] * 255).astype(np.uint8), int(colours.N)


def colour_table(cmap: str) -> np.ndarray:
    """The colormap's N colours as an N x 3 uint8 table (what `colourise` indexes; the browser's live
    tiles index the same table)."""
    return _colour_table(cmap)[0]


def colourise(values: np.ndarray, scale: ColourScale) -> np.ndarray:
    """H x W values -> H x W x 3 uint8 through the scale's colormap (NaN drawn as the scale's low).

    A lookup in the colormap's table, indexed as matplotlib indexes it (floor(x N), the top value
    in the last bin): the same colours, without a float RGBA image per tile on every rerun."""
    table, n = _colour_table(scale.cmap)
    span = scale.hi - scale.lo
    unit = np.clip((np.nan_to_num(values, nan=scale.lo) - scale.lo) / (span if span > 0 else 1.0), 0, 1)
    return table[np.minimum((unit * n).astype(np.intp), n - 1)]


def overlay(image: np.ndarray | Image.Image, values: np.ndarray, scale: ColourScale | None = None,
            alpha: float = 0.5) -> np.ndarray:
    """The map blended over the image (both H x W); uint8 H x W x 3."""
    base = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.float32)
    values = np.asarray(values, dtype=np.float32)
    if base.shape[:2] != values.shape:
        raise ValueError(f"image {base.shape[:2]} and map {values.shape} differ in size")
    heat = colourise(values, scale or colour_scale(values)).astype(np.float32)
    return np.clip((1 - alpha) * base + alpha * heat, 0, 255).astype(np.uint8)


def colourbar(scale: ColourScale, width: int = 360, height: int = 14, shared: bool = True) -> Image.Image:
    """A labelled horizontal colour bar of `scale`: its range and whether it is signed (a diverging
    map centred on zero), or, when every tile spans its own range, the colour map's meaning."""
    ramp = np.linspace(scale.lo, scale.hi, width)[None].repeat(height, 0)
    strip = Image.fromarray(colourise(ramp, scale))
    font = _font(12)
    canvas = Image.new("RGB", (width + 20, height + 36), "white")
    canvas.paste(strip, (10, 4))
    draw = ImageDraw.Draw(canvas)
    if shared:
        left, right = f"{scale.lo:.3g}", f"{scale.hi:.3g}"
    else:
        left, right = "low", "high"
    draw.text((10, height + 8), left, fill="black", font=font)
    draw.text((width + 10 - font.getlength(right), height + 8), right, fill="black", font=font)
    middle = ("0 (signed map: diverging, centred on zero)" if scale.signed else
              ("one range for every tile" if shared else "each tile spans its own range (in its caption)"))
    draw.text((10 + (width - font.getlength(middle)) / 2, height + 8), middle, fill="black", font=font)
    return canvas


def colourbar_html(scale: ColourScale, shared: bool = True, width_px: int = 400) -> str:
    """The same colour bar as `colourbar`, as a small HTML block (a CSS gradient through 11 stops
    of the colour map and its labels) for pages that draw it beside images."""
    stops = np.linspace(scale.lo, scale.hi, 11)
    colours = colourise(stops[None], scale)[0]
    gradient = ", ".join(f"rgb({r},{g},{b}) {100 * i / 10:.0f}%" for i, (r, g, b) in enumerate(colours))
    left, right = (f"{scale.lo:.3g}", f"{scale.hi:.3g}") if shared else ("low", "high")
    middle = ("0: signed maps, diverging colours centred on zero" if scale.signed else
              ("one range for every tile" if shared else "each tile spans its own range (in its caption)"))
    return (f'<div style="width:{width_px}px;font-size:0.8rem;color:#555">'
            f'<div style="height:12px;border-radius:2px;background:linear-gradient(to right, {gradient})"></div>'
            f'<div style="display:flex;justify-content:space-between"><span>{left}</span><span>{middle}</span>'
            f'<span>{right}</span></div></div>')


def _font(size: int):
    try:
        from matplotlib import font_manager

        return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)
    except Exception:  # a font is a nicety; the default bitmap font still labels the grid
        return ImageFont.load_default()


def labelled_grid(tiles: Sequence[Sequence[np.ndarray]], row_labels: Sequence[str],
                  col_labels: Sequence[str], title: str = "", pad: int = 6) -> Image.Image:
    """A side-by-side sheet: rows x columns of equal-size uint8 tiles with row and column labels."""
    rows, cols = len(tiles), len(tiles[0])
    th, tw = tiles[0][0].shape[:2]
    font = _font(14)
    title_font = _font(16)
    left = 12 + max(int(font.getlength(label)) for label in row_labels)
    top = 28 + (26 if title else 0)
    width = left + cols * (tw + pad) + pad
    height = top + rows * (th + pad) + pad
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, 6), title, fill="black", font=title_font)
    for c, label in enumerate(col_labels):
        x = left + c * (tw + pad) + pad
        draw.text((x + (tw - font.getlength(label)) / 2, top - 22), label, fill="black", font=font)
    for r, label in enumerate(row_labels):
        y = top + r * (th + pad) + pad
        draw.text((6, y + th / 2 - 8), label, fill="black", font=font)
        for c in range(cols):
            x = left + c * (tw + pad) + pad
            sheet.paste(Image.fromarray(tiles[r][c]), (x, y))
    return sheet


def png_bytes(image: Image.Image | np.ndarray) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(image: Image.Image | np.ndarray, quality: int = 90) -> bytes:
    """A tile for the screen: JPEG at quality 90 is about a sixth of the PNG's bytes and encodes some
    sixty times faster (0.3 ms against 19 ms for a 224x224 overlay), which is most of what a slider
    move costs with eight tiles. Downloads stay PNG."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def npy_bytes(arrays: dict[str, np.ndarray] | np.ndarray) -> bytes:
    """Raw maps as a .npy file (a dict becomes one stacked array, rows in the dict's order)."""
    if isinstance(arrays, dict):
        arrays = np.stack([np.asarray(a, dtype=np.float32) for a in arrays.values()])
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(arrays, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()


def npz_bytes(settings: dict, arrays: dict[str, np.ndarray]) -> bytes:
    """A self-describing .npz: every array under its own name (e.g. "grid/gradcam",
    "pixels/gradcam/gaussian") and "settings", a JSON string of everything that made them."""
    import json

    buffer = io.BytesIO()
    payload: dict[str, np.ndarray] = {name: np.asarray(a, dtype=np.float32) for name, a in arrays.items()}
    payload["settings"] = np.array(json.dumps(settings, indent=1, sort_keys=True))
    np.savez_compressed(buffer, allow_pickle=False, **payload)
    return buffer.getvalue()


@dataclass(frozen=True)
class Histogram:
    """Pre-binned counts (so a page sends ~bins numbers, not every value)."""

    edges: np.ndarray
    counts: np.ndarray

    @property
    def centres(self) -> np.ndarray:
        return (self.edges[:-1] + self.edges[1:]) / 2


def histogram(values: np.ndarray, bins: int = 60) -> Histogram:
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return Histogram(np.linspace(0, 1, bins + 1), np.zeros(bins, dtype=np.int64))
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    return Histogram(edges, counts)


def duration(seconds: float) -> str:
    """A time as a person reads it: 0.4 ms, 215 ms, 1.47 s, 15 min 53 s, 2 h 05 min."""
    if seconds < 1:
        ms = 1000 * seconds
        return f"{ms:.1f} ms" if ms < 10 else f"{ms:.0f} ms"
    if seconds < 60:
        return f"{seconds:.3g} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two maps; 0.0 when either is constant (instead of NaN)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def comparison_sheet(image: Image.Image, table: dict, row_labels: dict[str, str],
                     col_labels: dict[str, str], shared_scale: bool = False, title: str = "",
                     alpha: float = 0.5) -> Image.Image:
    """The side-by-side PNG: rows are methods, columns upsamplers, each cell an overlay.

    `table` maps (method, upsampler) -> H x W map; with `shared_scale` every cell uses one colour
    range (so magnitudes compare across cells), otherwise each cell spans its own range. A pair
    missing from the table (an F-CAM column for a method no decoder was trained from) is drawn as
    the darkened image.
    """
    methods = list(dict.fromkeys(m for m, _ in table))
    ups = list(dict.fromkeys(u for _, u in table))
    if col_labels:
        ups = [u for u in col_labels if u in ups] + [u for u in ups if u not in col_labels]
    arrays = {key: to_numpy(value) for key, value in table.items()}
    common = colour_scale(*arrays.values()) if shared_scale else None
    base = np.asarray(image.convert("RGB"))
    absent = (base * 0.25).astype(np.uint8)
    tiles = [[overlay(base, arrays[(m, u)], common or colour_scale(arrays[(m, u)]), alpha) if (m, u) in arrays
              else absent for u in ups] for m in methods]
    sheet = labelled_grid(tiles, [row_labels.get(m, m) for m in methods], [col_labels.get(u, u) for u in ups], title)
    signed = any(colour_scale(a).signed for a in arrays.values())
    bar = colourbar(common or ColourScale(-1.0, 1.0, True) if signed else common or ColourScale(0.0, 1.0, False),
                    width=min(480, sheet.width - 40), shared=common is not None)
    out = Image.new("RGB", (sheet.width, sheet.height + bar.height + 8), "white")
    out.paste(sheet, (0, 0))
    out.paste(bar, (10, sheet.height + 4))
    return out


def mark_row(image: np.ndarray, row: int, colour: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """A copy of an H x W x 3 uint8 image with pixel row `row` drawn in `colour`, so a profile
    plot can be matched to the place in the image it was taken from."""
    marked = np.array(image, dtype=np.uint8, copy=True)
    marked[int(np.clip(row, 0, marked.shape[0] - 1))] = colour
    return marked
