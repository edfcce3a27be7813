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
from explorer.ui.widgets import STATE_PREFIX, remember, remembered, selectbox, set_widget, slider, toggle

SIGMA_MIN, SIGMA_MAX, SIGMA_STEP = 1.0, 150.0, 0.5
LOCKED_HINT = "The sliders show the preset '{preset}' and are fixed; pick '{manual}' in the preset list to move them."
SIGMA_SWEEP = np.arange(SIGMA_MIN, SIGMA_MAX + SIGMA_STEP, SIGMA_STEP)  # the whole slider range


def presets(state: Selection) -> dict[str, tuple[float, float] | None]:
    """Sigma presets for this backbone/layer; a damaged ERF card is reported and skipped."""
    try:
        return sigma_presets(state.backbone.name, state.layer, weights=state.backbone.weights)
    except CardError as exc:
        st.warning(str(exc))
        return {PAPER_LABEL: PAPER_SIGMA, MANUAL_LABEL: None}


def _to_manual() -> None:
    remember("sigma_preset", MANUAL_LABEL)


def use_sigma(sigma: float) -> None:
    """Callback: make `sigma` (both axes) the shared manual sigma."""
    _to_manual()
    set_widget("sigma_x", float(sigma))
    set_widget("sigma_y", float(sigma))


def sigma_controls(state: Selection, *, with_presets: bool) -> tuple[float, float]:
    """The shared Gaussian sigma (pixels, per axis), the same on every page.

    With `with_presets` a preset select leads and the sliders only move under "manual"; without
    it (the Smoothing Lab) the sliders are always live and moving one switches to "manual".
    """
    options = presets(state)
    labels = list(options)
    widths = [3.5, 1.6, 2, 2] if with_presets else [1.6, 2, 2]
    columns = st.columns(widths, vertical_alignment="bottom")
    if with_presets:
        with columns[0]:
            preset = selectbox("Gaussian σ preset", "sigma_preset", labels, labels[0],
                               help="A fitted effective receptive field of this layer when one is stored, "
                                    "the Extended-CAM paper's VGG16 values, or your own.")
        columns = columns[1:]
    else:
        preset = remembered("sigma_preset", labels[0])
        preset = preset if preset in labels else labels[0]
        if options[preset] is not None:
            st.caption(f"σ comes from the Compare page's preset '{preset}'; moving a slider switches to manual.")
    fixed = options[preset]
    if fixed is not None:
        for name, value in zip(("sigma_x", "sigma_y"), fixed):
            set_widget(name, float(np.clip(value, SIGMA_MIN, SIGMA_MAX)))
    locked = with_presets and fixed is not None
    on_change = None if with_presets else _to_manual
    with columns[0]:
        linked = toggle("Link x and y", "sigma_linked", True)
    default = float(np.clip((fixed or PAPER_SIGMA)[0], SIGMA_MIN, SIGMA_MAX))
    hint = LOCKED_HINT.format(preset=preset, manual=MANUAL_LABEL) if locked else None
    with columns[1]:
        sigma_x = slider("σx (pixels)", "sigma_x", SIGMA_MIN, SIGMA_MAX, default, step=SIGMA_STEP,
                         disabled=locked, on_change=on_change, help=hint)
    if linked and fixed is None:
        set_widget("sigma_y", sigma_x)
    with columns[2]:
        sigma_y = slider("σy (pixels)", "sigma_y", SIGMA_MIN, SIGMA_MAX, default, step=SIGMA_STEP,
                         disabled=locked or linked, on_change=on_change, help=hint)
    if hint:
        st.caption(hint)
    return fixed if fixed is not None else (sigma_x, sigma_y)


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
