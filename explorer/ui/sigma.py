"""The shared Gaussian sigma (pixels, per axis): presets, sliders, the hand-over from the Receptive
Field page, and the correlation-against-sigma curve of the Smoothing Lab."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st
import torch

from explorer import views
from explorer.pipeline import pixel_maps
from explorer.presets import MANUAL_LABEL, PAPER_LABEL, PAPER_SIGMA, CardError, fitted_sigma, sigma_presets
from explorer.smoothing import SmoothingError, SplitCurve, shipped_split_curve
from explorer.ui.maps import GridResult
from explorer.ui.sidebar import Selection
from explorer.ui.widgets import STATE_PREFIX, WIDGET_PREFIX, remember, remembered, selectbox, set_widget, slider, toggle

SIGMA_MIN, SIGMA_MAX, SIGMA_STEP = 1.0, 150.0, 0.5
POOR_FIT_R2 = 0.8  # below this the fitted Gaussian describes the ERF too loosely to lead a first look
SIGMA_SWEEP = np.arange(SIGMA_MIN, SIGMA_MAX + SIGMA_STEP, SIGMA_STEP)  # the whole slider range
_APPLIED = "sigma_applied"  # the (preset, values) last written onto the sliders


def presets(state: Selection) -> dict[str, tuple[float, float] | None]:
    """Sigma presets for this backbone/layer, the first being the opening default; a damaged ERF
    card is reported and skipped. Where the layer's fitted ERF is a poor Gaussian (R² < 0.8, e.g.
    EfficientNet-Lite0's head, 108 px at R² 0.54) the paper's VGG16 sigma leads instead: the fit
    would spread every cell over the whole image and hide what Gaussian upsampling does, while the
    paper's 32 px shows the grid's cells melting into a map. The fitted value stays in the list."""
    return _presets_and_note(state)[0]


def poor_fit_note(state: Selection) -> str | None:
    """Why the opening sigma is not the layer's own fit, when it is not."""
    return _presets_and_note(state)[1]


def _presets_and_note(state: Selection) -> tuple[dict[str, tuple[float, float] | None], str | None]:
    """The presets and the poor-fit sentence from ONE read of the layer's ERF card."""
    try:
        fit = fitted_sigma(state.backbone.name, state.layer)
        options = sigma_presets(state.backbone.name, state.layer, weights=state.backbone.weights, fit=fit)
    except CardError as exc:
        st.warning(str(exc))
        return {PAPER_LABEL: PAPER_SIGMA, MANUAL_LABEL: None}, None
    if fit is None or fit.r2 >= POOR_FIT_R2:
        return options, None
    if next(iter(options)) == fit.label:
        options = {PAPER_LABEL: PAPER_SIGMA, **{k: v for k, v in options.items() if k != PAPER_LABEL}}
    return options, (f"σ opens at the Extended-CAM paper's VGG16 value ({PAPER_SIGMA[0]:g}, {PAPER_SIGMA[1]:g} px): "
                     f"this layer's fitted ERF is a loose Gaussian (R² {fit.r2:.2f} < {POOR_FIT_R2}) whose σ "
                     f"({fit.sigma_x:.0f}, {fit.sigma_y:.0f} px) spreads every cell over the whole image, so every "
                     "Gaussian map would be one even wash. Its value is in the preset list, one click away.")


def _to_manual() -> None:
    """A slider moved: the preset list says so (a preset sets the sliders, it never locks them)."""
    set_widget("sigma_preset", MANUAL_LABEL)
    remember(_APPLIED, (MANUAL_LABEL, None))


def adopt_sigma(sigma: tuple[float, float]) -> None:
    """A sigma the browser's live slider settled on becomes the page's (manual) sigma, once."""
    sx, sy = (float(np.clip(v, SIGMA_MIN, SIGMA_MAX)) for v in sigma)
    if (remembered("sigma_x", None), remembered("sigma_y", None)) == (sx, sy):
        return
    _to_manual()
    set_widget("sigma_x", sx)
    set_widget("sigma_y", sy)


def use_sigma(sigma: float) -> None:
    """Callback: make `sigma` (both axes) the shared manual sigma."""
    _to_manual()
    set_widget("sigma_x", float(sigma))
    set_widget("sigma_y", float(sigma))


def _apply(preset: str, values: tuple[float, float] | None) -> None:
    """Write a preset onto the sliders once, when it is chosen (or its values change with the
    backbone): afterwards the sliders are the user's."""
    if values is None or remembered(_APPLIED, None) == (preset, values):
        return
    sx, sy = (float(np.clip(v, SIGMA_MIN, SIGMA_MAX)) for v in values)
    set_widget("sigma_x", sx)
    set_widget("sigma_y", sy)
    remember(_APPLIED, (preset, values))


def _x_moved() -> None:
    """σx moved: manual from now on, and σy follows while x and y are linked."""
    _to_manual()
    if remembered("sigma_linked", True):
        set_widget("sigma_y", st.session_state[WIDGET_PREFIX + "sigma_x"])


def sigma_controls(state: Selection, *, with_presets: bool, sliders: bool = True,
                   notes: list[str] | None = None, compact: bool = False) -> tuple[float, float]:
    """The shared Gaussian sigma (pixels, per axis), the same on every page: a preset sets the
    sliders and moving a slider switches the preset to manual; the sliders are always live.
    `sliders=False` leaves the sliders to the browser (live smoothing) and returns their value;
    a `notes` list receives the poor-fit sentence for the page to show lower down (under the maps
    on Compare, so that they start above a projector's fold) instead of a caption here. `compact`
    (without presets or sliders) draws the link toggle alone, in the caller's column."""
    options, note = _presets_and_note(state)
    labels = list(options)
    if compact:  # the link toggle alone, in the caller's column; the poor-fit sentence is not shown here
        columns, notes = [st.container()], []
    else:
        widths = [3.5, 1.6, 2, 2] if with_presets else [1.6, 2, 2]
        columns = st.columns(widths, vertical_alignment="bottom")
    if with_presets:
        with columns[0]:
            preset = selectbox("Gaussian σ preset", "sigma_preset", labels, labels[0],
                               help="Sets the sliders: a fitted effective receptive field of this layer when "
                                    "one is stored, the Extended-CAM paper's VGG16 values, or your own.")
        columns = columns[1:]
    else:
        preset = remembered("sigma_preset", labels[0])
        preset = preset if preset in labels else labels[0]
    _apply(preset, options[preset])
    with columns[0]:
        linked = toggle("Link x and y", "sigma_linked", True)
    default = float(np.clip((options[preset] or PAPER_SIGMA)[0], SIGMA_MIN, SIGMA_MAX))
    if note and preset == labels[0] and notes is not None:
        notes.append(note)
        note = None
    if not sliders:
        if note and preset == labels[0]:
            st.caption(note)
        return float(remembered("sigma_x", default)), float(remembered("sigma_y", default))
    with columns[1]:
        sigma_x = slider("σx (pixels)", "sigma_x", SIGMA_MIN, SIGMA_MAX, default, step=SIGMA_STEP,
                         on_change=_x_moved, help="Moving it switches the preset to manual; σy follows while linked.")
    with columns[2]:
        sigma_y = slider("σy (pixels)", "sigma_y", SIGMA_MIN, SIGMA_MAX, default, step=SIGMA_STEP,
                         disabled=linked, on_change=_to_manual)
    if note and preset == labels[0]:
        st.caption(note)
    return sigma_x, sigma_y


@dataclass(frozen=True)
class SigmaCurve:
    """Pearson r between two maps at each sigma of a sweep, and where it peaks."""

    sigmas: np.ndarray
    correlations: np.ndarray

    @property
    def best(self) -> float:
        return float(self.sigmas[int(np.argmax(self.correlations))])

    @property
    def best_correlation(self) -> float:
        return float(np.max(self.correlations))


def sigma_correlation(result: GridResult, size: tuple[int, int]) -> SigmaCurve:
    """r between Extended-CAM Gaussian-upsampled at each sigma of SIGMA_SWEEP (both axes) and
    Grad-CAM bilinear-upsampled: upsampling only, from the cached grid maps."""
    return _sigma_curve(result.key, (int(size[0]), int(size[1])), _explicit=result.maps["extendedcam"],
                        _implicit=result.maps["gradcam"])


@st.cache_data(max_entries=16, show_spinner=False)
def _sigma_curve(result_key: str, size: tuple[int, int], *, _explicit: np.ndarray,
                 _implicit: np.ndarray) -> SigmaCurve:
    implicit = pixel_maps(torch.from_numpy(_implicit)[None], size, "bilinear", None, "minmax")[0].numpy()
    explicit = torch.from_numpy(_explicit)[None]
    correlations = [views.pearson(pixel_maps(explicit, size, "gaussian", (s, s), "minmax")[0].numpy(), implicit)
                    for s in SIGMA_SWEEP]
    return SigmaCurve(SIGMA_SWEEP.copy(), np.asarray(correlations))


def split_sigma_curve(state: Selection) -> SplitCurve | None:
    """The shipped curve over the test split for this backbone/layer and weights, or None where
    there is none; a damaged file is reported and skipped, the page goes on."""
    try:
        return shipped_split_curve(state.backbone, state.layer)
    except SmoothingError as exc:
        st.warning(str(exc))
        return None


def sigma_on_slider(value: float) -> float:
    """A sigma as the sliders hold it: clipped into range, on their 0.5 px step."""
    return float(np.clip(round(value / SIGMA_STEP) * SIGMA_STEP, SIGMA_MIN, SIGMA_MAX))


def use_stored_sigma(backbone: str, layer: str) -> None:
    """Callback: select the stored fit of backbone/layer as the Gaussian sigma preset of the Compare
    page (the Smoothing Lab follows it)."""
    fit = fitted_sigma(backbone, layer)
    if fit is None:
        return
    remember("sigma_preset", fit.label)
    for name, value in zip(("sigma_x", "sigma_y"), (fit.sigma_x, fit.sigma_y)):
        set_widget(name, float(np.clip(value, SIGMA_MIN, SIGMA_MAX)))


def use_sigmas(sigma_x: float, sigma_y: float) -> None:
    """Callback: make (sigma_x, sigma_y), on the sliders' step, the shared manual sigma; x and y
    are unlinked when they differ."""
    sx, sy = sigma_on_slider(sigma_x), sigma_on_slider(sigma_y)
    _to_manual()
    set_widget("sigma_linked", sx == sy)
    set_widget("sigma_x", sx)
    set_widget("sigma_y", sy)


def shared_sigma() -> tuple[str, float | None, float | None]:
    """(preset label, sigma x, sigma y) as the Compare page will use them."""
    return (remembered("sigma_preset", ""), st.session_state.get(STATE_PREFIX + "sigma_x"),
            st.session_state.get(STATE_PREFIX + "sigma_y"))
