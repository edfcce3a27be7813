"""Plotly figures of maps, curves and evaluations (heatmaps, histograms, profiles, threshold and
precision-recall curves, training curves) and the drawings the metrics pages put on images."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from explorer.views.maps import ColourScale, Histogram, colour_scale

# ------------------------------------------------------------------------------ one style per series

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#bcbd22",
           "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354", "#756bb1",
           "#636363", "#fd8d3c")
UPSAMPLER_DASH = {"bilinear": "solid", "gaussian": "dash", "F-CAM decoder": "dot", "fcam": "dot", "nearest": "dashdot",
                  "bicubic": "longdash"}
GREYS = ("#444444", "#777777", "#999999", "#bbbbbb", "#555555", "#888888", "#aaaaaa")


def series_style(name: str) -> tuple[str, str]:
    """(colour, dash) of a series named "<method label> · <upsampler>" (or with the upsampler in
    brackets): the colour is the method's, the dash the upsampler's, the same in every chart of
    every page. Controls and references are drawn in greys."""
    from explorer.methods import METHODS

    labels = sorted(((spec.label, i) for i, spec in enumerate(METHODS.values())), key=lambda t: -len(t[0]))
    dash = next((d for up, d in UPSAMPLER_DASH.items() if up in name), "solid")
    name = re.sub(r" \((PxAP|MaxBoxAcc)[^)]*\)$", "", name)  # a score in the legend does not change the colour
    if name.startswith(("control", "reference")):
        return GREYS[sum(map(ord, name)) % len(GREYS)], dash
    for label, index in labels:
        if name.startswith(label):
            return PALETTE[index % len(PALETTE)], dash
    return PALETTE[sum(map(ord, name)) % len(PALETTE)], dash


def consistent_styles(fig):
    """Give every named trace its series' colour and dash; an unnamed trace (a marker drawn on a
    line) takes the colour of the trace before it."""
    last = None
    taken: dict[tuple[str, str], str] = {}  # style -> the series that has it: two series never share one
    for trace in fig.data:
        if trace.name:
            last = _free_style(series_style(trace.name), trace.name, taken)
        if last is None:
            continue
        colour, dash = last
        if trace.type == "bar":
            trace.marker.color = colour
        else:
            trace.line.color = colour
            trace.marker.color = colour
            if trace.name:
                trace.line.dash = dash
    return fig


def _free_style(style: tuple[str, str], name: str, taken: dict[tuple[str, str], str]) -> tuple[str, str]:
    """`style`, or the next colour of its family that no other series of this figure has."""
    colour, dash = style
    family = GREYS if colour in GREYS else PALETTE
    start = family.index(colour) if colour in family else 0
    for step in range(len(family) + 1):
        candidate = (family[(start + step) % len(family)], dash)
        if taken.get(candidate, name) == name:
            taken[candidate] = name
            return candidate
    return style


def colour_scale_for_plotly(name: str) -> list[tuple[float, str]]:
    """A named plotly colour scale as an explicit list that the browser draws as it is. Streamlit's
    frontend treats the colours #000001-#000032 as placeholders of its own theme and repaints them,
    so inferno's and magma's first colour (#000004) came out salmon or lavender at the low end."""
    from plotly.colors import get_colorscale

    scale = [(float(t), str(c)) for t, c in get_colorscale(name)]
    return [(t, "#010106" if c.lower().startswith("#0000") else c) for t, c in scale]


# ------------------------------------------------------------------------------ plotly figures

def heatmap_figure(grid: np.ndarray, title: str = "", scale: ColourScale | None = None,
                   class_name: str = ""):
    """Interactive grid-level heatmap with the raw value of each cell on hover."""
    import plotly.graph_objects as go

    grid = np.asarray(grid, dtype=np.float32)
    scale = scale or colour_scale(grid)
    # Rounded for the hover text, then kept inside [zmin, zmax]: plotly paints a value outside the
    # range (the rounded minimum, a hair below zmin) in a colour that is not on the scale.
    z = np.clip(np.round(grid.astype(np.float64), 5), scale.lo, scale.hi)
    fig = go.Figure(go.Heatmap(
        z=z, zmin=scale.lo, zmax=scale.hi,
        colorscale="RdBu" if scale.signed else colour_scale_for_plotly("Inferno"), reversescale=scale.signed,
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
    return consistent_styles(fig)


HISTOGRAM_COLUMNS = 3


def histogram_grid_figure(histograms: dict[str, Histogram], title: str = "", x_title: str = "raw value",
                          columns: int = HISTOGRAM_COLUMNS):
    """Small multiples of pre-binned histograms, one panel per label, side by side. Each panel keeps
    its own value axis: raw grid values of different methods live on scales decades apart (CAM's
    logits, Grad-CAM's gradient-weighted sums), so one shared axis would flatten all but one. A
    dotted line marks zero where a panel's range crosses it (a signed map).

    The layout is written out in one dict (axis domains, titles, zero lines) rather than through
    make_subplots and update_* calls: this figure is rebuilt on every rerun of Compare, and
    plotly's property machinery made it 75 ms of a 120 ms rerun."""
    import plotly.graph_objects as go

    labels = list(histograms)
    columns = max(1, min(columns, len(labels)))
    rows = max(1, -(-len(labels) // columns))
    gap_x, gap_y = 0.08, 0.6 / (rows + 1)  # room for a panel's axis title above the next one's title
    width, height = (1 - gap_x * (columns - 1)) / columns, (1 - gap_y * (rows - 1)) / rows
    data: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    shapes: list[dict[str, Any]] = []
    layout: dict[str, Any] = {"annotations": annotations, "shapes": shapes}
    for i, label in enumerate(labels):
        hist = histograms[label]
        row, col = divmod(i, columns)
        suffix = "" if i == 0 else str(i + 1)
        x0, y1 = col * (width + gap_x), 1 - row * (height + gap_y)
        colour, _ = series_style(label)
        data.append(dict(type="bar", x=hist.centres.tolist(), y=np.asarray(hist.counts).tolist(),
                         width=np.diff(hist.edges).tolist(), name=label, showlegend=False,
                         marker=dict(color=colour), xaxis=f"x{suffix}", yaxis=f"y{suffix}"))
        layout[f"xaxis{suffix}"] = dict(domain=[max(0.0, x0), min(1.0, x0 + width)], anchor=f"y{suffix}",
                                        title=dict(text=x_title, font=dict(size=11)))
        layout[f"yaxis{suffix}"] = dict(domain=[max(0.0, y1 - height), min(1.0, y1)], anchor=f"x{suffix}",
                                        title=dict(text="cells" if col == 0 else "", font=dict(size=11)))
        annotations.append(dict(text=label, x=x0 + width / 2, y=y1, xref="paper", yref="paper",
                                          xanchor="center", yanchor="bottom", showarrow=False, font=dict(size=12)))
        if hist.edges[0] < 0 < hist.edges[-1]:
            shapes.append(dict(type="line", x0=0, x1=0, y0=0, y1=1, xref=f"x{suffix}",
                                         yref=f"y{suffix} domain", line=dict(color="grey", dash="dot")))
    layout.update(title=dict(text=title), height=70 + 230 * rows, bargap=0, margin=dict(l=10, r=10, t=60, b=10))
    return go.Figure(data=data, layout=layout)


def profile_figure(profiles: dict[str, np.ndarray], title: str = "", x_title: str = "x (pixels)"):
    import plotly.graph_objects as go

    fig = go.Figure()
    for label, values in profiles.items():
        values = np.asarray(values, dtype=np.float32)
        fig.add_trace(go.Scatter(x=np.arange(values.size), y=values, mode="lines", name=label))
    fig.update_layout(title=title, height=320, xaxis_title=x_title, yaxis_title="normalised value",
                      margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.3))
    return consistent_styles(fig)


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
    return consistent_styles(fig)


def label_marker(fig, x: float, text: str):
    """Name the dashed marker `curve_figure` draws at x, above the plot area."""
    fig.add_annotation(x=x, y=1, yref="paper", text=text, showarrow=False, xanchor="left", xshift=4, yshift=8)
    return fig


def sigma_curve_figure(sigmas: np.ndarray, correlations: np.ndarray, best: float, current: float,
                       title: str = "", y_title: str = "Pearson r"):
    """Correlation against Gaussian sigma, with dashed markers at the best and the current sigma."""
    fig = label_marker(curve_figure(sigmas, {y_title: correlations}, title, "sigma (pixels)", y_title, marker_x=best),
                       best, f"best {best:g}")
    fig.add_vline(x=current, line_color="crimson")
    fig.update_layout(showlegend=False, margin=dict(l=10, r=10, t=50, b=10))
    return fig


def split_sigma_curve_figure(sigmas: np.ndarray, mean_r: np.ndarray, low: np.ndarray, high: np.ndarray, best: float,
                             best_interval: tuple[float, float], paper_sigma: float | None = None, title: str = ""):
    """Mean r against sigma over a split (`curve_figure` with its dashed marker at the peak), its 95 %
    band, the interval of the peak's position (shaded), and the paper's sigma (dotted) when there is one."""
    import plotly.graph_objects as go

    x = np.asarray(sigmas, dtype=np.float64)
    fig = label_marker(curve_figure(x, {"mean r over the images": mean_r}, title, "sigma (pixels)", "Pearson r",
                                    marker_x=best), best, f"peak {best:g} px")
    line = fig.data[0]
    line.update(mode="lines+markers", marker=dict(size=5))
    fig.add_trace(go.Scatter(x=np.concatenate([x, x[::-1]]), y=np.concatenate([np.asarray(high), np.asarray(low)[::-1]]),
                             fill="toself", fillcolor=line.line.color, opacity=0.2, line=dict(width=0),
                             hoverinfo="skip", name="95 % interval of the mean"))
    if best_interval[1] > best_interval[0]:
        fig.add_vrect(x0=best_interval[0], x1=best_interval[1], fillcolor="grey", opacity=0.15, line_width=0)
    if paper_sigma is not None:
        fig.add_vline(x=paper_sigma, line_dash="dot", line_color="crimson")
        fig.add_annotation(x=paper_sigma, y=0, yref="paper", text=f"paper (VGG16) ≈ {paper_sigma:g} px", showarrow=False,
                           xanchor="right", xshift=-4, yshift=8, font=dict(color="crimson"))
    fig.update_layout(height=340, margin=dict(l=10, r=10, t=50, b=10))
    return fig


def profile_pair_figure(profiles: dict[str, np.ndarray], title: str = "",
                        colours: Sequence[str] = ("crimson", "royalblue")):
    """`profile_figure` with one clearly different colour per trace (themes often pick shades of
    one hue, which makes two overlapping profiles hard to tell apart)."""
    fig = profile_figure(profiles, title)
    for trace, colour in zip(fig.data, colours):
        trace.line.color = colour
    return consistent_styles(fig)


# ------------------------------------------------------------------ evaluation views (metrics pages)

GT_COLOUR = (40, 200, 60)      # ground-truth boxes: green
PRED_COLOUR = (230, 40, 40)    # predicted boxes: red
CONFUSION_COLOURS = {           # mask outcome at the chosen threshold (metrics.mask_confusion codes)
    1: (40, 200, 60),   # true positive
    2: (230, 40, 40),   # false positive
    3: (40, 110, 240),  # false negative
    4: (150, 150, 150),  # ignored
}


LOG_SPREAD = 100.0  # shares spanning more than two decades get a log axis (one spike at 0 hides the rest)


def value_histogram_figure(edges: np.ndarray, histograms: dict[str, np.ndarray], title: str = "",
                           y_title: str = "share of pixels"):
    """Pre-binned histograms of map values (counts, normalised here to shares), one line per label
    (F-CAM Fig. 6): a CAM piles up near 0, a good localiser also shows a mode near 1."""
    import plotly.graph_objects as go

    centres = (edges[:-1] + edges[1:]) / 2
    fig = go.Figure()
    shares = []
    for label, counts in histograms.items():
        counts = np.asarray(counts, dtype=np.float64)
        total = counts.sum()
        shares.append(counts / total if total else counts)
        fig.add_trace(go.Scatter(x=centres, y=shares[-1], mode="lines", line_shape="hvh", name=label))
    positive = np.concatenate([v[v > 0] for v in shares]) if shares else np.array([])
    log = positive.size > 0 and positive.max() / positive.min() > LOG_SPREAD
    fig.update_layout(title=title, height=340, xaxis_title="normalised map value",
                      yaxis_title=y_title + (" (log scale)" if log else ""), yaxis_type="log" if log else "linear",
                      margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.3))
    if log:
        decades = decade_ticks(float(positive.min()), float(positive.max()))
        fig.update_yaxes(tickvals=decades, ticktext=[percent_label(v) for v in decades])
    else:
        fig.update_yaxes(tickformat=".2~%")
    return consistent_styles(fig)


def decade_ticks(low: float, high: float) -> list[float]:
    """Powers of ten spanning [low, high]: plotly's own log ticks mix 2s and 5s between decades and
    SI suffixes ("100µ"), which read badly for a share of pixels."""
    return [10.0 ** k for k in range(int(np.floor(np.log10(low))), int(np.ceil(np.log10(high))) + 1)]


def percent_label(share: float) -> str:
    """A share as a percentage with just the digits it needs: 1 -> "100%", 1e-4 -> "0.01%"."""
    return f"{share * 100:.{max(0, -int(np.floor(np.log10(share * 100))))}f}%"


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
    return consistent_styles(fig)


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
    return consistent_styles(fig)


def draw_boxes(image: np.ndarray, boxes: Sequence[Sequence[int]], colour: tuple[int, int, int],
               width: int = 2) -> np.ndarray:
    """A copy of an H x W x 3 uint8 picture with inclusive boxes [x0, y0, x1, y1] outlined. A box
    that covers the whole picture would sit on the tile's frame and vanish: it is drawn inset,
    dashed, with a "whole image" tag."""
    picture = Image.fromarray(np.array(image, dtype=np.uint8, copy=True))
    draw = ImageDraw.Draw(picture)
    height, width_px = picture.height, picture.width
    for box in boxes:
        x0, y0, x1, y1 = (int(v) for v in box)
        if x0 <= 1 and y0 <= 1 and x1 >= width_px - 2 and y1 >= height - 2:
            _dashed_rectangle(draw, (6, 6, width_px - 7, height - 7), colour, width)
            draw.rectangle([8, 8, 84, 22], fill=(0, 0, 0))
            draw.text((11, 9), "whole image", fill=colour)
        else:
            draw.rectangle([x0, y0, x1, y1], outline=colour, width=width)
    return np.asarray(picture)


def _dashed_rectangle(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], colour: tuple[int, int, int],
                      width: int, dash: int = 8) -> None:
    x0, y0, x1, y1 = box
    for start in range(x0, x1, 2 * dash):
        end = min(start + dash, x1)
        draw.line([(start, y0), (end, y0)], fill=colour, width=width)
        draw.line([(start, y1), (end, y1)], fill=colour, width=width)
    for start in range(y0, y1, 2 * dash):
        end = min(start + dash, y1)
        draw.line([(x0, start), (x0, end)], fill=colour, width=width)
        draw.line([(x1, start), (x1, end)], fill=colour, width=width)


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
    return consistent_styles(fig)


def bar_figure(categories: Sequence[str], series: dict[str, Sequence[float]], title: str, x_title: str,
               intervals: dict[str, Sequence[Sequence[float] | None]] | None = None):
    """Grouped horizontal bars: one group per category (its label on the y axis, where long method
    names have room and never overlap), one bar per series, and the 95 % interval of each bar as
    an error bar where `intervals` gives one ([lo, hi] per category, None where none)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for label, values in series.items():
        values = [float(v) for v in values]
        error = None
        spans = (intervals or {}).get(label)
        if spans is not None:
            plus = [max(0.0, float(s[1]) - v) if s is not None else 0.0 for s, v in zip(spans, values)]
            minus = [max(0.0, v - float(s[0])) if s is not None else 0.0 for s, v in zip(spans, values)]
            error = dict(type="data", array=plus, arrayminus=minus, visible=True, thickness=1.2, width=3)
        fig.add_trace(go.Bar(y=list(categories), x=values, name=label, orientation="h", error_x=error))
    fig.update_yaxes(autorange="reversed", automargin=True)
    fig.update_layout(barmode="group", title=title, height=110 + 16 * len(categories) * max(1, len(series)),
                      xaxis_title=x_title, margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(orientation="h", y=-0.12, yanchor="top"))
    return consistent_styles(fig)


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
