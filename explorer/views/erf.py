"""Views of an effective receptive field: its picture, heatmaps on a linear or log scale with the
fitted ellipse, profiles, convergence against the number of images, and the words that say what a
fit means for Gaussian upsampling (they sit beside the figures they explain)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from explorer.erf import ErfEstimate, ErfFit
from explorer.views.figures import PALETTE, colour_scale_for_plotly
from explorer.views.maps import colour_scale, colourise

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
        colours: str | list[tuple[float, str]] = "RdBu"
        name = value_name
        z, reverse = small, True
    elif log:
        z = log_values(small).astype(np.float32)
        finite = z[np.isfinite(z)]
        top = np.log10(max(abs(value_range[1]), 1e-300)) if value_range else float(finite.max()) if finite.size else 0.0
        # At most LOG_DECADES below the peak, but no lower than the map needs.
        lo, hi = max(top - LOG_DECADES, float(finite.min()) if finite.size else top - LOG_DECADES), top
        lo = min(lo, hi - 0.1)
        colours, name, reverse = colour_scale_for_plotly(ERF_CMAP.capitalize()), f"log10 |{value_name}|", False
    else:
        z = small
        lo, hi = value_range or (float(np.nanmin(small)), float(np.nanmax(small)))
        colours, name, reverse = colour_scale_for_plotly(ERF_CMAP.capitalize()), value_name, False
    f = xs[1] - xs[0] if xs.size > 1 else 1.0
    z = np.clip(z, lo, hi)  # plotly paints values outside [zmin, zmax] off the scale (NaN stays blank)
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


# ------------------------------------------------------------------- what the numbers mean

R2_GOOD, R2_ROUGH = 0.95, 0.80


def r2_verdict(r2: float) -> tuple[str, str]:
    """(level, headline) for a fit's R²: level is "good", "rough" or "poor"."""
    share = f"{max(r2, 0.0):.0%}"
    if r2 >= R2_GOOD:
        return "good", f"Well described by one Gaussian (R² = {r2:.3f} ≥ {R2_GOOD})."
    if r2 >= R2_ROUGH:
        return "rough", (f"Roughly Gaussian (R² = {r2:.3f}, between {R2_ROUGH} and {R2_GOOD}): one Gaussian "
                         f"captures {share} of the map's variation.")
    return "poor", (f"Not one Gaussian (R² = {r2:.3f} < {R2_ROUGH}): the fitted Gaussian explains only "
                    f"{share} of the map's variation.")


def _sig(fit: ErfFit) -> str:
    return f"({fit.sigma_x:.1f}, {fit.sigma_y:.1f}) px"


def erf_meaning(fit: ErfFit, alternative: ErfFit | None, erf_map: np.ndarray) -> str:
    """What this fit means for Gaussian upsampling, worded from its numbers (R², sigma, and the
    fit with the offset option flipped: a constant floor under a narrower peak)."""
    level, headline = r2_verdict(fit.r2)
    with_floor, plain = (fit, alternative) if fit.offset is not None else (alternative, fit)
    floor = _floor_share(with_floor, erf_map) if with_floor is not None else None
    peak_on_floor = bool(with_floor is not None and plain is not None and floor is not None and floor >= 0.1
                     and with_floor.r2 - plain.r2 >= 0.05
                     and max(with_floor.sigma_x, with_floor.sigma_y) < 0.8 * min(plain.sigma_x, plain.sigma_y))
    lines = [f"**{headline}**"]
    if level == "good":
        lines.append(f"Gaussian upsampling with σ = {_sig(fit)} spreads each grid cell over the pixels the way "
                     f"this layer's centre unit actually looks at them; that is the premise of Extended-CAM "
                     f"(its VGG16 conv5_3: R² 0.9905, σ 31.78 / 33.36 px).")
    elif level == "rough":
        lines.append(f"σ = {_sig(fit)} is a usable summary, but the shape departs from a Gaussian: the residual "
                     f"shows where (a floor, a flat or square core, a tilt). Gaussian-upsampled maps of this layer "
                     f"are an approximation of what the layer sees.")
    else:
        lines.append("One σ cannot describe this map, so Gaussian upsampling with the fitted σ misrepresents how "
                     "a cell of this layer spreads over the pixels; look at the residual and the profiles.")
    if peak_on_floor and level != "good" and with_floor is not None and plain is not None:
        lines.append(
            f"The map is a sharp peak on a broad floor: fitted with a constant floor, the peak has σ = "
            f"{_sig(with_floor)} (R² {with_floor.r2:.2f}) and the floor carries {floor:.0%} of the map's total; "
            f"without it one Gaussian needs σ = {_sig(plain)} (R² {plain.r2:.2f}). A Gaussian upsampler can only "
            f"be one of them: with the wide σ it over-smooths the peak (every cell's value is smeared far beyond "
            f"where its gradient concentrates); with the peak's σ it ignores the floor (the weak influence every "
            f"cell has on the whole image). Compare both σ on the Compare page before trusting either.")
    return "\n\n".join(lines)


def _floor_share(fit: ErfFit, erf_map: np.ndarray) -> float | None:
    total = float(np.asarray(erf_map).sum())
    if fit.offset is None or not fit.offset > 0 or not total > 0:
        return None
    return float(fit.offset) * erf_map.size / total


def card_meaning(card: dict[str, Any]) -> str:
    """The same reading for a stored card (no map: from its R² and sigmas only)."""
    level, headline = r2_verdict(float(card["r2"]))
    sigma = f"({card['sigma_x']:.1f}, {card['sigma_y']:.1f}) px"
    lines = [f"**{headline}**"]
    if level == "good":
        lines.append(f"Gaussian upsampling with σ = {sigma} matches how this layer's centre unit spreads over "
                     f"the pixels, as Extended-CAM assumes (its VGG16 conv5_3: R² 0.9905, σ 31.78 / 33.36 px).")
    elif level == "rough":
        lines.append(f"σ = {sigma} is a usable summary; the residual panel of the figure shows where the shape "
                     f"departs from a Gaussian.")
    else:
        lines.append(f"σ = {sigma} is a compromise between parts of the map one Gaussian cannot hold together "
                     f"(often a sharp peak on a broad floor: see the residual panel): Gaussian upsampling with it "
                     f"over-smooths the peak, and a narrower σ would ignore the floor. Estimate live below and "
                     f"tick *fit a constant offset* to measure the peak and the floor apart.")
    if card.get("fit_options", {}).get("offset"):
        lines.append("This card's fit included a constant offset (a floor under the Gaussian).")
    return "\n\n".join(lines)


def honest_spread(rows: Sequence[dict[str, Any]]) -> str | None:
    """How much sigma and R² still moved over the last doubling of the image count."""
    good = [row for row in rows if row.get("sigma_x") is not None]
    if len(good) < 2:
        return None
    a, b = good[-2], good[-1]
    return (f"From {a['n']} to {b['n']} images σx moved by {b['sigma_x'] - a['sigma_x']:+.2f} px, "
            f"σy by {b['sigma_y'] - a['sigma_y']:+.2f} px and R² by {b['r2'] - a['r2']:+.3f}.")


def erf_figures(estimate: ErfEstimate, fit: ErfFit | None, log: bool) -> dict[str, Any]:
    """The page's plotly figures: "map" always; with a fit also "surface", "residual" and the
    "profile_x" / "profile_y" lines through the fitted centre. Map and fit share a colour range."""
    erf_map = estimate.map
    signed = estimate.mode == "signed" and not log
    note = f"{estimate.mode} gradient, {estimate.n_images} images" + (", interrupted" if estimate.interrupted else "")
    if fit is None:
        return {"map": erf_heatmap_figure(erf_map, f"ERF ({note})", log=log, diverging=signed,
                                                centre=estimate.centre_px)}
    value_range = (min(float(erf_map.min()), float(fit.surface.min())),
                   max(float(erf_map.max()), float(fit.surface.max())))
    ellipse = (fit.centre_x, fit.centre_y, fit.sigma_x, fit.sigma_y, fit.rotation or 0.0)
    height, width = erf_map.shape
    row = int(round(min(max(fit.centre_y, 0), height - 1)))
    col = int(round(min(max(fit.centre_x, 0), width - 1)))
    return {
        "map": erf_heatmap_figure(erf_map, f"ERF ({note})", log=log, diverging=signed, value_range=value_range,
                                        ellipse=ellipse, centre=estimate.centre_px),
        "surface": erf_heatmap_figure(fit.surface, "Fitted 2D Gaussian", log=log, diverging=signed,
                                            value_range=value_range, value_name="fit"),
        "residual": erf_heatmap_figure(fit.residual, f"Residual (map − fit), R² {fit.r2:.3f}", diverging=True,
                                             value_name="residual"),
        "profile_x": erf_profile_figure(erf_map[row], fit.surface[row],
                                              f"x profile through the centre (row {row})", "x (pixels)", log=log),
        "profile_y": erf_profile_figure(erf_map[:, col], fit.surface[:, col],
                                              f"y profile through the centre (column {col})", "y (pixels)", log=log),
    }


def degrees(radians: float) -> float:
    return math.degrees(radians)


def plus_minus(err: float | None) -> str:
    """A formal standard error as shown under a metric: "± 0.32" (or "± n/a")."""
    return f"± {err:.2g}" if err is not None else "± n/a (no covariance)"


# ------------------------------------------------------------------ several ERFs side by side

@dataclass(frozen=True)
class ErfOutline:
    """One fitted ERF as the side-by-side view draws it: a stored card or a fresh estimate."""

    label: str
    origin: str  # "stored card" or "this session"
    sigma_x: float
    sigma_y: float
    centre_x: float
    centre_y: float
    rotation: float
    r2: float
    input_size: tuple[int, int]  # (height, width) in pixels

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> ErfOutline:
        h, w = (int(v) for v in card["input_size"])
        return cls(f"{card['backbone']} / {card['layer']}", "stored card", float(card["sigma_x"]),
                   float(card["sigma_y"]), float(card["centre_x"]), float(card["centre_y"]),
                   float(card.get("rotation") or 0.0), float(card["r2"]), (h, w))

    @classmethod
    def from_fit(cls, label: str, fit: ErfFit, input_size: tuple[int, int]) -> ErfOutline:
        return cls(label, "this session", fit.sigma_x, fit.sigma_y, fit.centre_x, fit.centre_y,
                   fit.rotation or 0.0, fit.r2, (int(input_size[0]), int(input_size[1])))

    @property
    def legend(self) -> str:
        return f"{self.label}: σ {self.sigma_x:.1f} × {self.sigma_y:.1f} px, R² {self.r2:.2f}"


def erf_outlines_figure(outlines: Sequence[ErfOutline], height: int = 420):
    """Every chosen ERF's fitted 1σ (solid) and 2σ (dashed) ellipse on one pixel frame, each moved
    to the frame's centre so that only size and shape differ, one colour per ERF: which layer
    sprays wider, and by how much, at a glance. Frame: the largest input among them."""
    import plotly.graph_objects as go

    h = max((o.input_size[0] for o in outlines), default=224)
    w = max((o.input_size[1] for o in outlines), default=224)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    fig = go.Figure()
    for i, outline in enumerate(outlines):
        colour = PALETTE[i % len(PALETTE)]
        for k, dash in ((1, "solid"), (2, "dash")):
            t = np.linspace(0, 2 * np.pi, 145)
            u, v = k * outline.sigma_x * np.cos(t), k * outline.sigma_y * np.sin(t)
            c, s = np.cos(outline.rotation), np.sin(outline.rotation)
            fig.add_trace(go.Scatter(
                x=cx + c * u - s * v, y=cy + s * u + c * v, mode="lines", name=outline.legend,
                legendgroup=outline.label, showlegend=k == 1, line=dict(color=colour, dash=dash, width=2),
                hovertemplate=f"{outline.legend}<br>{k}σ ellipse<extra>{outline.origin}</extra>"))
    fig.add_shape(type="rect", x0=-0.5, y0=-0.5, x1=w - 0.5, y1=h - 0.5, line=dict(color="grey", dash="dot"))
    fig.update_xaxes(range=[-0.5 - w / 4, w - 0.5 + w / 4], title="x (pixels)", constrain="domain")
    fig.update_yaxes(range=[h - 0.5 + h / 4, -0.5 - h / 4], title="y (pixels)", scaleanchor="x",
                     constrain="domain")
    fig.update_layout(title=f"Fitted ERFs (1σ solid, 2σ dashed) in a {w}×{h} input",
                      height=height, margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(orientation="h", y=-0.2))
    return fig
