"""Views: overlay images, labelled grids, pre-binned histograms, profiles and plotly figures,
made from arrays. No Streamlit here; pages only place what these functions return.

Signed maps (any negative value) get a diverging colormap centred on zero; non-negative maps a
sequential one. Payloads stay small: overlays are PNG-ready uint8 images, histograms are
pre-binned, heatmaps are sent at grid level.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

SEQUENTIAL_CMAP = "jet"
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


def colour_scale(*maps: np.ndarray) -> ColourScale:
    """One scale spanning all the given maps (pass one map for a per-map scale)."""
    values = [np.asarray(m, dtype=np.float64) for m in maps]
    finite = [v[np.isfinite(v)] for v in values]
    finite = [v for v in finite if v.size]
    if not finite:
        return ColourScale(0.0, 1.0, False)
    lo = min(float(v.min()) for v in finite)
    hi = max(float(v.max()) for v in finite)
    if lo < 0:
        peak = max(abs(lo), abs(hi)) or 1.0
        return ColourScale(-peak, peak, True)
    return ColourScale(lo, hi if hi > lo else lo + 1.0, False)


def colourise(values: np.ndarray, scale: ColourScale) -> np.ndarray:
    """H x W values -> H x W x 3 uint8 through the scale's colormap (NaN drawn as the scale's low)."""
    from matplotlib import colormaps

    span = scale.hi - scale.lo
    unit = np.clip((np.nan_to_num(values, nan=scale.lo) - scale.lo) / (span if span > 0 else 1.0), 0, 1)
    rgba = colormaps[scale.cmap](unit)
    return (rgba[..., :3] * 255).astype(np.uint8)


def overlay(image: np.ndarray | Image.Image, values: np.ndarray, scale: ColourScale | None = None,
            alpha: float = 0.5) -> np.ndarray:
    """The map blended over the image (both H x W); uint8 H x W x 3."""
    base = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.float32)
    values = np.asarray(values, dtype=np.float32)
    if base.shape[:2] != values.shape:
        raise ValueError(f"image {base.shape[:2]} and map {values.shape} differ in size")
    heat = colourise(values, scale or colour_scale(values)).astype(np.float32)
    return np.clip((1 - alpha) * base + alpha * heat, 0, 255).astype(np.uint8)


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


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two maps; 0.0 when either is constant (instead of NaN)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else 0.0


# ------------------------------------------------------------------------------ plotly figures

def heatmap_figure(grid: np.ndarray, title: str = "", scale: ColourScale | None = None,
                   class_name: str = ""):
    """Interactive grid-level heatmap with the raw value of each cell on hover."""
    import plotly.graph_objects as go

    grid = np.asarray(grid, dtype=np.float32)
    scale = scale or colour_scale(grid)
    fig = go.Figure(go.Heatmap(
        z=np.round(grid, 5), zmin=scale.lo, zmax=scale.hi,
        colorscale="RdBu" if scale.signed else "Jet", reversescale=scale.signed,
        hovertemplate="cell (row %{y}, col %{x})<br>value %{z:.4g}<extra>" + class_name + "</extra>",
    ))
    fig.update_yaxes(autorange="reversed", scaleanchor="x", constrain="domain")
    fig.update_layout(title=title, height=380, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def histogram_figure(histograms: dict[str, Histogram], title: str = "", x_title: str = "raw value"):
    """Overlaid pre-binned histograms (bars), one trace per label."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for label, hist in histograms.items():
        fig.add_trace(go.Bar(x=hist.centres, y=hist.counts, name=label, opacity=0.6,
                             width=np.diff(hist.edges)))
    fig.update_layout(barmode="overlay", title=title, height=320, xaxis_title=x_title,
                      yaxis_title="cells", margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(orientation="h", y=-0.3))
    return fig


def profile_figure(profiles: dict[str, np.ndarray], title: str = "", x_title: str = "x (pixels)"):
    import plotly.graph_objects as go

    fig = go.Figure()
    for label, values in profiles.items():
        values = np.asarray(values, dtype=np.float32)
        fig.add_trace(go.Scatter(x=np.arange(values.size), y=values, mode="lines", name=label))
    fig.update_layout(title=title, height=320, xaxis_title=x_title, yaxis_title="normalised value",
                      margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.3))
    return fig


def curve_figure(x: np.ndarray, curves: dict[str, np.ndarray], title: str, x_title: str,
                 y_title: str, marker_x: float | None = None):
    import plotly.graph_objects as go

    fig = go.Figure()
    for label, y in curves.items():
        fig.add_trace(go.Scatter(x=np.asarray(x), y=np.asarray(y), mode="lines", name=label))
    if marker_x is not None:
        fig.add_vline(x=marker_x, line_dash="dash", line_color="grey")
    fig.update_layout(title=title, height=320, xaxis_title=x_title, yaxis_title=y_title,
                      margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.3))
    return fig


def comparison_sheet(image: Image.Image, table: dict, row_labels: dict[str, str],
                     col_labels: dict[str, str], shared_scale: bool = False, title: str = "") -> Image.Image:
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
    tiles = [[overlay(base, arrays[(m, u)], common or colour_scale(arrays[(m, u)])) if (m, u) in arrays else absent
              for u in ups] for m in methods]
    return labelled_grid(tiles, [row_labels.get(m, m) for m in methods], [col_labels.get(u, u) for u in ups], title)


def mark_row(image: np.ndarray, row: int, colour: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """A copy of an H x W x 3 uint8 image with pixel row `row` drawn in `colour`, so a profile
    plot can be matched to the place in the image it was taken from."""
    marked = np.array(image, dtype=np.uint8, copy=True)
    marked[int(np.clip(row, 0, marked.shape[0] - 1))] = colour
    return marked


def sigma_curve_figure(sigmas: np.ndarray, correlations: np.ndarray, best: float, current: float,
                       title: str = "", y_title: str = "Pearson r"):
    """Correlation against Gaussian sigma, with dashed markers at the best and the current sigma."""
    fig = curve_figure(sigmas, {y_title: correlations}, title, "sigma (pixels)", y_title, marker_x=best)
    fig.add_annotation(x=best, y=1, yref="paper", text=f"best {best:g}", showarrow=False, xanchor="left",
                       xshift=4, yshift=8)
    fig.add_vline(x=current, line_color="crimson")
    fig.update_layout(showlegend=False, margin=dict(l=10, r=10, t=50, b=10))
    return fig


def profile_pair_figure(profiles: dict[str, np.ndarray], title: str = "",
                        colours: Sequence[str] = ("crimson", "royalblue")):
    """`profile_figure` with one clearly different colour per trace (themes often pick shades of
    one hue, which makes two overlapping profiles hard to tell apart)."""
    fig = profile_figure(profiles, title)
    for trace, colour in zip(fig.data, colours):
        trace.line.color = colour
    return fig


# ----------------------------------------------------------------- effective receptive field

ERF_CMAP = "magma"
ERF_PLOT_SIDE = 112  # heatmaps of an ERF are sent at most this many cells a side
LOG_DECADES = 3.0  # a log-scale ERF heatmap spans this many decades below the peak


def block_mean(values: np.ndarray, max_side: int = ERF_PLOT_SIDE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(small, ys, xs): an H x W map averaged over f x f blocks, f = ceil(max(H, W) / max_side),
    with the block centres in input pixels (so hover and axes still read input pixels). Edge
    blocks are padded with the edge value. float32, so a 224 x 224 map costs ~50 KB, not 400."""
    values = np.asarray(values, dtype=np.float64)
    h, w = values.shape
    f = max(1, int(np.ceil(max(h, w) / max_side)))
    if f > 1:
        padded = np.pad(values, ((0, (-h) % f), (0, (-w) % f)), mode="edge")
        values = padded.reshape(padded.shape[0] // f, f, padded.shape[1] // f, f).mean(axis=(1, 3))
    ys = np.arange(values.shape[0]) * f + (f - 1) / 2
    xs = np.arange(values.shape[1]) * f + (f - 1) / 2
    return values.astype(np.float32), ys, xs


def log_values(values: np.ndarray) -> np.ndarray:
    """log10 of |values| where non-zero, NaN elsewhere (drawn blank)."""
    magnitude = np.abs(np.asarray(values, dtype=np.float64))
    with np.errstate(divide="ignore"):
        return np.where(magnitude > 0, np.log10(np.where(magnitude > 0, magnitude, 1.0)), np.nan)


def erf_image(values: np.ndarray) -> np.ndarray:
    """An ERF map as an H x W x 3 uint8 picture (magma over its own range; diverging when signed),
    for a quick PNG (the running mean while an estimate runs)."""
    from matplotlib import colormaps

    values = np.asarray(values, dtype=np.float64)
    scale = colour_scale(values)
    if scale.signed:
        return colourise(values, scale)
    unit = np.clip((values - scale.lo) / (scale.hi - scale.lo), 0, 1)
    return (colormaps[ERF_CMAP](unit)[..., :3] * 255).astype(np.uint8)


def _ellipse_path(cx: float, cy: float, sx: float, sy: float, rotation: float, k: float,
                  bounds: tuple[float, float, float, float]) -> str:
    """An SVG path of the k-sigma ellipse, only its parts inside bounds (x0, x1, y0, y1): plotly
    does not clip shapes to the axes, so a wide ellipse would otherwise spill over the figure."""
    t = np.linspace(0, 2 * np.pi, 145)
    u, v = k * sx * np.cos(t), k * sy * np.sin(t)
    c, s = np.cos(rotation), np.sin(rotation)
    x, y = cx + c * u - s * v, cy + s * u + c * v
    x0, x1, y0, y1 = bounds
    inside = (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
    parts, previous = [], False
    for a, b, ok in zip(x, y, inside):
        if ok:
            parts.append(f"{'L' if previous else 'M'} {a:.2f},{b:.2f}")
        previous = bool(ok)
    return " ".join(parts)


def erf_heatmap_figure(values: np.ndarray, title: str, *, log: bool = False, diverging: bool = False,
                       value_range: tuple[float, float] | None = None,
                       ellipse: tuple[float, float, float, float, float] | None = None,
                       centre: tuple[float, float] | None = None, value_name: str = "ERF", height: int = 360):
    """An input-resolution map as a plotly heatmap, block-averaged to <= ERF_PLOT_SIDE a side.

    log: colours show log10 |value| over LOG_DECADES decades below the peak (zeros blank).
    diverging: a signed map (residual, signed ERF), colours symmetric around zero.
    value_range: (lo, hi) in the map's units (shared by a map and its fit).
    ellipse: (cx, cy, sx, sy, rotation) of a fitted Gaussian: its 1- and 2-sigma ellipses are drawn.
    centre: (x, y) of the layer's centre cell in pixels, marked with a cross.
    """
    import plotly.graph_objects as go

    small, ys, xs = block_mean(values)
    if diverging and not log:
        peak = float(np.nanmax(np.abs(small))) or 1.0
        lo, hi = value_range or (-peak, peak)
        colours, name = "RdBu", value_name
        z, reverse = small, True
    elif log:
        z = log_values(small).astype(np.float32)
        finite = z[np.isfinite(z)]
        top = np.log10(max(abs(value_range[1]), 1e-300)) if value_range else float(finite.max()) if finite.size else 0.0
        # At most LOG_DECADES below the peak, but no lower than the map needs.
        lo, hi = max(top - LOG_DECADES, float(finite.min()) if finite.size else top - LOG_DECADES), top
        lo = min(lo, hi - 0.1)
        colours, name, reverse = ERF_CMAP.capitalize(), f"log10 |{value_name}|", False
    else:
        z = small
        lo, hi = value_range or (float(np.nanmin(small)), float(np.nanmax(small)))
        colours, name, reverse = ERF_CMAP.capitalize(), value_name, False
    f = xs[1] - xs[0] if xs.size > 1 else 1.0
    fig = go.Figure(go.Heatmap(
        z=z, x=xs, y=ys, zmin=lo, zmax=hi, colorscale=colours, reversescale=reverse,
        colorbar=dict(title=dict(text=name, side="right"), thickness=12),
        hovertemplate=f"x %{{x:.0f}} px, y %{{y:.0f}} px<br>{name} %{{z:.4g}}<extra>"
                      + (f"{f:g}×{f:g} block mean" if f > 1 else "") + "</extra>",
    ))
    h, w = np.asarray(values).shape
    if ellipse is not None:
        cx, cy, sx, sy, rotation = ellipse
        for k, dash in ((1, "solid"), (2, "dash")):
            path = _ellipse_path(cx, cy, sx, sy, rotation, k, (-0.5, w - 0.5, -0.5, h - 0.5))
            if path:
                fig.add_shape(type="path", path=path, line=dict(color="cyan", width=1.2, dash=dash))
    if centre is not None:
        fig.add_trace(go.Scatter(x=[centre[0]], y=[centre[1]], mode="markers", showlegend=False,
                                 marker=dict(symbol="cross-thin", size=12, line=dict(color="cyan", width=2)),
                                 hovertemplate="centre cell's centre (%{x:.1f}, %{y:.1f})<extra></extra>"))
    fig.update_xaxes(range=[-0.5, w - 0.5], title="x (pixels)", constrain="domain")
    fig.update_yaxes(range=[h - 0.5, -0.5], title="y (pixels)", scaleanchor="x", constrain="domain")
    fig.update_layout(title=title, height=height, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def erf_profile_figure(measured: np.ndarray, fitted: np.ndarray, title: str, x_title: str, *, log: bool = False):
    """One line through the ERF map and the same line through its fitted Gaussian."""
    import plotly.graph_objects as go

    measured = np.asarray(measured, dtype=np.float32)
    fitted = np.asarray(fitted, dtype=np.float32)
    positions = np.arange(measured.size)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=positions, y=measured, mode="lines", name="ERF (measured)",
                             line=dict(color="#444444", width=1.2)))
    fig.add_trace(go.Scatter(x=positions, y=fitted, mode="lines", name="fitted Gaussian",
                             line=dict(color="crimson", width=2, dash="dash")))
    fig.update_yaxes(type="log" if log else "linear", title="ERF" + (" (log axis)" if log else ""))
    if log:
        ticks = log_ticks(np.concatenate([measured, fitted]))
        if len(ticks) >= 2:
            fig.update_yaxes(tickvals=ticks, ticktext=[f"{t:.3g}" for t in ticks])
    fig.update_layout(title=title, height=300, xaxis_title=x_title, margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(orientation="h", y=-0.3))
    return fig


def log_ticks(values: np.ndarray) -> list[float]:
    """1-2-5 tick values spanning the positive values (plotly's own log ticks label a short range
    with bare mantissas: "5 2 1 5 2")."""
    positive = np.asarray(values, dtype=np.float64)
    positive = positive[np.isfinite(positive) & (positive > 0)]
    if not positive.size:
        return []
    lo, hi = float(positive.min()), float(positive.max())
    ticks = [m * 10.0 ** k for k in range(int(np.floor(np.log10(lo))) - 1, int(np.ceil(np.log10(hi))) + 1)
             for m in (1, 2, 5)]
    inside = [t for t in ticks if lo <= t <= hi]
    if len(inside) > 8:  # many decades: the powers of ten only
        inside = [t for t in inside if abs(np.log10(t) - round(np.log10(t))) < 1e-9]
    if len(inside) < 3:  # a narrow range: every digit
        inside = [m * 10.0 ** k for k in range(int(np.floor(np.log10(lo))) - 1, int(np.ceil(np.log10(hi))) + 1)
                  for m in range(1, 10) if lo <= m * 10.0 ** k <= hi]
    return inside


def erf_convergence_figure(rows: Sequence[dict]):
    """R² (left) and sigma x/y with their formal standard errors (right) against the number of
    images averaged (log2 axis), from `explorer.erf.convergence` rows; failed fits are gaps."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    n = np.array([row["n"] for row in rows], dtype=np.float64)

    def column(name: str) -> np.ndarray:
        return np.array([np.nan if row.get(name) is None else row[name] for row in rows], dtype=np.float64)

    fig = make_subplots(rows=1, cols=2, subplot_titles=("R² of the fit", "σ (pixels), bars: lmfit standard error"),
                        horizontal_spacing=0.1)
    fig.add_trace(go.Scatter(x=n, y=column("r2"), mode="lines+markers", name="R²", line=dict(color="#444444"),
                             hovertemplate="%{x:.0f} images: R² %{y:.4f}<extra></extra>"), row=1, col=1)
    for axis, colour in (("x", "crimson"), ("y", "royalblue")):
        fig.add_trace(go.Scatter(
            x=n, y=column(f"sigma_{axis}"), mode="lines+markers", name=f"σ{axis}", line=dict(color=colour),
            error_y=dict(type="data", array=np.nan_to_num(column(f"sigma_{axis}_stderr")), visible=True),
            hovertemplate=f"%{{x:.0f}} images: σ{axis} %{{y:.2f}} px<extra></extra>"), row=1, col=2)
    ticks = [int(v) for v in n]
    for col in (1, 2):
        fig.update_xaxes(type="log", tickvals=ticks, ticktext=[str(t) for t in ticks],
                         title="images averaged", row=1, col=col)
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.35))
    return fig


# ------------------------------------------------------------------ evaluation views (metrics pages)

GT_COLOUR = (40, 200, 60)      # ground-truth boxes: green
PRED_COLOUR = (230, 40, 40)    # predicted boxes: red
CONFUSION_COLOURS = {           # mask outcome at the chosen threshold (metrics.mask_confusion codes)
    1: (40, 200, 60),   # true positive
    2: (230, 40, 40),   # false positive
    3: (40, 110, 240),  # false negative
    4: (150, 150, 150),  # ignored
}


def value_histogram_figure(edges: np.ndarray, histograms: dict[str, np.ndarray], title: str = "",
                           y_title: str = "share of pixels"):
    """Pre-binned histograms of map values (counts, normalised here to shares), one line per label
    (F-CAM Fig. 6): a CAM piles up near 0, a good localiser also shows a mode near 1."""
    import plotly.graph_objects as go

    centres = (edges[:-1] + edges[1:]) / 2
    fig = go.Figure()
    for label, counts in histograms.items():
        counts = np.asarray(counts, dtype=np.float64)
        total = counts.sum()
        fig.add_trace(go.Scatter(x=centres, y=counts / total if total else counts, mode="lines",
                                 line_shape="hvh", name=label))
    fig.update_layout(title=title, height=340, xaxis_title="normalised map value", yaxis_title=y_title,
                      margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.3))
    return fig


def box_acc_figure(taus: np.ndarray, curves: dict[str, np.ndarray], best: dict[str, float], title: str = ""):
    """BoxAcc (percent) against the threshold tau, one line per label, a marker at each best tau."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for label, values in curves.items():
        fig.add_trace(go.Scatter(x=taus, y=values, mode="lines", name=label))
        if label in best:
            i = int(np.argmax(values))
            fig.add_trace(go.Scatter(x=[taus[i]], y=[values[i]], mode="markers", showlegend=False,
                                     marker=dict(size=9, symbol="x"), hovertemplate=f"{label}: %{{y:.1f}} at τ=%{{x:.3f}}"))
    fig.update_layout(title=title, height=340, xaxis_title="threshold τ", yaxis_title="BoxAcc (%)",
                      yaxis_range=[0, 100], margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.3))
    return fig


def precision_recall_figure(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], title: str = ""):
    """Precision against recall per label ((precision, recall, PxAP)); the legend carries PxAP."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for label, (precision, recall, ap) in curves.items():
        keep = np.isfinite(precision)
        fig.add_trace(go.Scatter(x=recall[keep], y=precision[keep], mode="lines", name=f"{label} (PxAP {ap:.1f})"))
    fig.update_layout(title=title, height=340, xaxis_title="recall", yaxis_title="precision",
                      xaxis_range=[0, 1], yaxis_range=[0, 1.02], margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(orientation="h", y=-0.3))
    return fig


def draw_boxes(image: np.ndarray, boxes: Sequence[Sequence[int]], colour: tuple[int, int, int],
               width: int = 2) -> np.ndarray:
    """A copy of an H x W x 3 uint8 picture with inclusive boxes [x0, y0, x1, y1] outlined."""
    picture = Image.fromarray(np.array(image, dtype=np.uint8, copy=True))
    draw = ImageDraw.Draw(picture)
    for box in boxes:
        x0, y0, x1, y1 = (int(v) for v in box)
        draw.rectangle([x0, y0, x1, y1], outline=colour, width=width)
    return np.asarray(picture)


def confusion_overlay(image: np.ndarray, confusion: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """Pixels coloured by their outcome (true positive green, false positive red, false negative
    blue, ignored grey; true negatives keep the image)."""
    base = np.asarray(image, dtype=np.float32)
    out = base.copy()
    for code, colour in CONFUSION_COLOURS.items():
        where = confusion == code
        out[where] = (1 - alpha) * base[where] + alpha * np.array(colour, dtype=np.float32)
    return out.clip(0, 255).astype(np.uint8)


def downscale_figure(zooms: Sequence[int], curves: dict[str, Sequence[float]], title: str = ""):
    """PxAP (percent) against the downscale factor z, log2 x axis (F-CAM Fig. D.3)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for label, values in curves.items():
        fig.add_trace(go.Scatter(x=list(zooms), y=list(values), mode="lines+markers", name=label))
    fig.update_layout(title=title, height=340, xaxis_title="downscale factor z", yaxis_title="PxAP (%)",
                      xaxis=dict(type="log", tickvals=list(zooms), ticktext=[str(z) for z in zooms]),
                      margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.3))
    return fig


def bar_figure(categories: Sequence[str], series: dict[str, Sequence[float]], title: str, y_title: str):
    """Grouped bars: one group per category, one bar per series."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for label, values in series.items():
        fig.add_trace(go.Bar(x=list(categories), y=list(values), name=label))
    fig.update_layout(barmode="group", title=title, height=340, yaxis_title=y_title,
                      margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.3))
    return fig


def seed_picture(image: np.ndarray | Image.Image, foreground: np.ndarray, background: np.ndarray,
                 labels: np.ndarray, alpha: float = 0.35) -> np.ndarray:
    """F-CAM's sampling regions over the image: C+ tinted green, C- tinted blue, and the seeds
    drawn this iteration (label 1 foreground, 0 background) ringed in white and black."""
    base = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.float32)
    tinted = base.copy()
    tinted[foreground] = (1 - alpha) * tinted[foreground] + alpha * np.array([0, 200, 0])
    tinted[background] = (1 - alpha) * tinted[background] + alpha * np.array([40, 80, 255])
    picture = Image.fromarray(np.clip(tinted, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    for value, fill in ((1, (0, 255, 0)), (0, (60, 120, 255))):
        ys, xs = np.nonzero(labels == value)
        for y, x in zip(ys, xs):
            draw.point((int(x), int(y)), fill=fill)
        for cy, cx in _patch_centres(labels == value):
            draw.ellipse([cx - 6, cy - 6, cx + 6, cy + 6], outline="white", width=2)
            draw.ellipse([cx - 8, cy - 8, cx + 8, cy + 8], outline="black", width=1)
    return np.asarray(picture)


def _patch_centres(mask: np.ndarray) -> list[tuple[float, float]]:
    from scipy import ndimage

    labelled, count = ndimage.label(mask)
    if not count:
        return []
    return [tuple(c) for c in ndimage.center_of_mass(mask, labelled, range(1, count + 1))]


def training_curve_figure(curve: Sequence[dict], history: Sequence[dict], steps_per_epoch: int | None = None):
    """An F-CAM decoder's training: the loss terms every few steps (left axis) and the
    validation localisation after each epoch (right axis)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(specs=[[{"secondary_y": True}]])
    steps = [p["step"] for p in curve]
    for key, label in (("loss", "total loss"), ("ce", "seed cross-entropy"), ("crf", "λ · CRF"), ("size", "size (log-barrier)")):
        if curve and key in curve[0] and any(p.get(key) for p in curve):
            fig.add_trace(go.Scatter(x=steps, y=[p[key] for p in curve], mode="lines", name=label), secondary_y=False)
    if history and steps_per_epoch:
        xs = [h["epoch"] * steps_per_epoch for h in history]
        for key, label in (("val_max_box_acc", "val MaxBoxAcc"), ("val_pxap", "val PxAP")):
            if key in history[0]:
                fig.add_trace(go.Scatter(x=xs, y=[h[key] for h in history], mode="lines+markers", name=label,
                                         line=dict(dash="dot")), secondary_y=True)
    fig.update_layout(height=340, margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=-0.3),
                      xaxis_title="training step")
    fig.update_yaxes(title_text="loss", secondary_y=False)
    fig.update_yaxes(title_text="validation (%)", secondary_y=True)
    return fig
