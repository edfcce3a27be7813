"""ERF cards (the JSON the sigma presets read, written atomically) and their figure."""

from __future__ import annotations

import datetime as _dt
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from explorer.atomic import write_atomically
from explorer.erf.common import MODES
from explorer.erf.estimate import ErfEstimate
from explorer.erf.fit import PARAMS, ErfFit
from explorer.presets import CardError
from explorer.safe_files import UnsafeFileError, read_json

_REQUIRED = {"backbone": str, "layer": str, "weights": str, "mode": str, "n_images": int,
             "sigma_x": float, "sigma_y": float, "r2": float, "command": str}


def erf_card(estimate: ErfEstimate, fit: ErfFit, command: str) -> dict[str, Any]:
    """The JSON card of a fit (the format `explorer.presets` reads)."""
    import lmfit

    card: dict[str, Any] = {
        "backbone": estimate.backbone, "layer": estimate.layer, "weights": estimate.weights,
        "mode": estimate.mode, "source": estimate.source, "n_images": estimate.n_images,
        "n_planned": estimate.n_planned, "interrupted": estimate.interrupted,
        "input_size": list(estimate.input_size), "grid": list(estimate.grid),
        "centre_cell": {"row": estimate.centre_cell[0], "col": estimate.centre_cell[1],
                        "x_px": estimate.centre_px[0], "y_px": estimate.centre_px[1]},
    }
    for name in PARAMS:
        value = getattr(fit, name)
        if value is None:
            continue
        card[name] = value
        card[f"{name}_stderr"] = fit.stderr.get(name)
    card.update({
        "height": fit.height, "r2": fit.r2, "fit_options": dict(fit.options), "fit_nfev": fit.nfev,
        "fit_message": fit.message, "stderr_note": fit.stderr_note, "command": command,
        "seconds": round(estimate.seconds, 2), "fit_seconds": round(fit.seconds, 2),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__, "lmfit": lmfit.__version__,
    })
    return card


def save_erf_card(estimate: ErfEstimate, fit: ErfFit, path: str | os.PathLike[str], command: str) -> dict[str, Any]:
    """Write the card as JSON atomically (a temporary file in the same folder, then os.replace),
    so a reader never sees half a card. Returns the card."""
    card = erf_card(estimate, fit, command)
    write_atomically(Path(path), (json.dumps(card, indent=2) + "\n").encode("utf-8"))
    return card


def load_erf_card(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a card; CardError (from explorer.presets) when it is damaged."""
    path = Path(path)
    try:
        card = read_json(path)
    except UnsafeFileError as exc:
        raise CardError(f"The ERF card {path} cannot be read ({exc.__class__.__name__}: {exc}); "
                        f"re-create it with the command recorded in it or delete it.") from exc
    if not isinstance(card, dict):
        raise CardError(f"The ERF card {path} is not a JSON object.")
    missing = [key for key in _REQUIRED if key not in card]
    if missing:
        raise CardError(f"The ERF card {path} is damaged: missing {', '.join(missing)}.")
    for key, kind in _REQUIRED.items():
        value = card[key]
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float else isinstance(value, kind)
        if not ok:
            raise CardError(f"The ERF card {path} is damaged: '{key}' should be {kind.__name__}, got {value!r}.")
    sx, sy, r2 = float(card["sigma_x"]), float(card["sigma_y"]), float(card["r2"])
    if not all(math.isfinite(v) for v in (sx, sy, r2)) or sx <= 0 or sy <= 0 or r2 > 1:
        raise CardError(f"The ERF card {path} holds impossible values (sigma {sx}, {sy}, R² {r2}).")
    if card["mode"] not in MODES or card["n_images"] < 1:
        raise CardError(f"The ERF card {path} holds an unknown mode or image count.")
    return card


# ============================================================================ figure

def _figure_palette() -> list[int]:
    """256 fixed colours for the figure: 120 of magma, 112 of RdBu_r, 16 greys (text, axes) and
    the overlays' cyan. Mapping the rendered figure onto them keeps a noisy map's PNG ~3x smaller
    than 24-bit (a shipped figure stays < 200 KB) while the colour bars stay smooth; an adaptive
    256-colour palette gave the bars visible bands."""
    from matplotlib import colormaps

    colours = [colormaps["magma"](t)[:3] for t in np.linspace(0.0, 1.0, 120)]
    colours += [colormaps["RdBu_r"](t)[:3] for t in np.linspace(0.0, 1.0, 112)]
    colours += [(g, g, g) for g in np.linspace(0.0, 1.0, 16)]
    colours += [(0.0, 1.0, 1.0), (0.5, 1.0, 1.0), (0.75, 1.0, 1.0), (0.25, 0.6, 0.6)]
    colours += [(1.0, 1.0, 1.0)] * (256 - len(colours))
    return [int(round(255 * c)) for rgb in colours for c in rgb]


def erf_figure_png(estimate: ErfEstimate, fit: ErfFit, path: str | os.PathLike[str], dpi: int = 72) -> None:
    """map | fitted surface | residual, side by side with colour bars; titles carry sigma ±
    stderr and R²; the map shows the fitted 1- and 2-sigma ellipses and the centre cell's centre
    (+). Drawn on a bare matplotlib Figure (Agg canvas, no pyplot: no global backend switch, safe
    from any thread), written atomically like the card."""

    from matplotlib.figure import Figure
    from matplotlib.patches import Ellipse

    def pm(name: str) -> str:
        err = fit.stderr.get(name)
        return f"{getattr(fit, name):.2f} ± {err:.2f}" if err is not None else f"{getattr(fit, name):.2f} ± n/a"

    fig = Figure(figsize=(13.5, 4.6), layout="constrained")
    axes = fig.subplots(1, 3)
    H, W = estimate.map.shape
    vmin = min(float(estimate.map.min()), float(fit.surface.min()))
    vmax = max(float(estimate.map.max()), float(fit.surface.max()))
    im0 = axes[0].imshow(estimate.map, cmap="magma", vmin=vmin, vmax=vmax)
    axes[0].set_title(f"ERF ({estimate.mode} gradient), {estimate.n_images} images")
    angle = math.degrees(fit.rotation or 0.0)
    for k in (1, 2):
        axes[0].add_patch(Ellipse((fit.centre_x, fit.centre_y), 2 * k * fit.sigma_x, 2 * k * fit.sigma_y,
                                  angle=angle, fill=False, color="cyan", lw=0.8, ls="-" if k == 1 else "--"))
    axes[0].plot(*estimate.centre_px, "+", color="cyan", ms=8)
    im1 = axes[1].imshow(fit.surface, cmap="magma", vmin=vmin, vmax=vmax)
    axes[1].set_title(f"fit: σx {pm('sigma_x')}, σy {pm('sigma_y')} px\nR² {fit.r2:.4f}")
    limit = float(np.abs(fit.residual).max()) or 1.0
    im2 = axes[2].imshow(fit.residual, cmap="RdBu_r", vmin=-limit, vmax=limit)
    axes[2].set_title("residual (map − fit)")
    for ax, im in zip(axes, (im0, im1, im2)):
        fig.colorbar(im, ax=ax, shrink=0.85)
        ax.set_xlim(-0.5, W - 0.5)  # ellipses wider than the map must not widen the axes
        ax.set_ylim(H - 0.5, -0.5)
        ax.set_xlabel("x (px)")
        ax.set_ylabel("y (px)")
    opts = "+".join(k for k, v in fit.options.items() if v) or "plain"
    status = " — INTERRUPTED" if estimate.interrupted else ""
    fig.suptitle(f"{estimate.backbone} / {estimate.layer} ({estimate.weights} weights), source {estimate.source}, "
                 f"centre cell {estimate.centre_cell} of {estimate.grid[0]}x{estimate.grid[1]}, fit {opts}{status}",
                 fontsize=10)
    rendered = io.BytesIO()
    fig.savefig(rendered, format="png", dpi=dpi)
    rendered.seek(0)
    palette = Image.new("P", (1, 1))
    palette.putpalette(_figure_palette())
    with Image.open(rendered) as image:
        small = image.convert("RGB").quantize(palette=palette, dither=Image.Dither.NONE)
    out = io.BytesIO()
    small.save(out, format="PNG", optimize=True)
    write_atomically(Path(path), out.getvalue())
