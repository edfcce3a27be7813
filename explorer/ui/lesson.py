"""Home's guided lesson, "Smoothing in five steps", on the sidebar's image: each step first asks
the class to predict what they will see, then one click reveals it. The maps come from one cached
capture (Grad-CAM with its published ReLU, Extended-CAM signed); every step only re-upsamples."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from explorer import views
from explorer.presets import PAPER_SIGMA, CardError, fitted_sigma
from explorer.ui.maps import GridResult, grid, pixel_map
from explorer.ui.sidebar import Selection
from explorer.ui.sigma import POOR_FIT_R2, sigma_correlation
from explorer.ui.widgets import WIDGET_PREFIX, remember, remembered


@dataclass(frozen=True)
class LessonStep:
    title: str
    question: str  # asked before the reveal: the class commits to a prediction first


STEPS = (
    LessonStep("The coarse grid map",
               "The network's map is computed on its last feature grid, not on pixels. How many cells do you expect "
               "across the image, and where will the hottest one be?"),
    LessonStep("Bilinear upsampling",
               "Grad-CAM stretches that grid to the image by bilinear interpolation. What happens between two cell "
               "centres, and can you still see the cells?"),
    LessonStep("A Gaussian at a small σ",
               "Extended-CAM instead paints every cell as a Gaussian of width σ (eq. 4). With σ a quarter of a cell, "
               "what will the map look like?"),
    LessonStep("The fitted effective receptive field",
               "A unit of the last layer 'sees' a blob of the input: its effective receptive field. Is that blob "
               "smaller or larger than one grid cell?"),
    LessonStep("The σ at which Gaussian mimics Grad-CAM",
               "Grad-CAM's bilinear map smooths implicitly. At what σ will Extended-CAM's explicit smoothing look "
               "most like it: smaller than a cell, about a cell, or much larger?"),
)


def smoothing_lesson(state: Selection) -> None:
    """The lesson's current step: its question, then (after one click) what it shows."""
    step = min(int(remembered("lesson.step", 0)), len(STEPS) - 1)
    revealed = bool(remembered("lesson.revealed", False))
    lesson = STEPS[step]
    st.markdown(f"**Step {step + 1} of {len(STEPS)}: {lesson.title}.** {lesson.question}")
    if not revealed:
        st.button("Reveal", key=WIDGET_PREFIX + "lesson.reveal", type="primary", on_click=_reveal)
        return
    result = grid(state, ("gradcam", "extendedcam"), "published")
    REVEALS[step](state, result)
    back, forward = st.columns(2)
    if step + 1 < len(STEPS):
        forward.button("Next step", key=WIDGET_PREFIX + "lesson.next", on_click=_go, args=(step + 1,))
    else:
        forward.page_link("app_pages/smoothing_lab.py", label="Go on in the Smoothing Lab", icon=":material/blur_on:")
    back.button("Start again", key=WIDGET_PREFIX + "lesson.restart", on_click=_go, args=(0,))


def _reveal() -> None:
    remember("lesson.revealed", True)


def _go(step: int) -> None:
    remember("lesson.step", step)
    remember("lesson.revealed", False)


def _cell(state: Selection) -> tuple[float, float]:
    """One grid cell's size in input pixels (y, x)."""
    (height, width), (_, h, w) = state.size, state.layer_shape
    return height / h, width / w


def _show_grid(state: Selection, result: GridResult) -> None:
    h, w = result.maps["gradcam"].shape
    cell_y, cell_x = _cell(state)
    left, right = st.columns([2, 3], gap="medium")
    left.plotly_chart(views.heatmap_figure(result.maps["gradcam"], title=f"Grad-CAM: the raw {h}×{w} grid"),
                      theme=None)
    right.markdown(f"The map has **{h}×{w} cells**, each covering about **{cell_x:.0f}×{cell_y:.0f} pixels** of "
                   f"the {state.size[1]}×{state.size[0]} input. Everything the method knows about *where* is in "
                   "these few numbers; every picture after this step only spreads them over pixels.")


def _show_bilinear(state: Selection, result: GridResult) -> None:
    values = pixel_map(result, "gradcam", state.size, "bilinear", None, "minmax")
    left, right = st.columns([2, 3], gap="medium")
    left.image(views.overlay(state.seen, values), caption="Grad-CAM, bilinear, min-max", width="stretch")
    right.markdown("Between two cell centres the value runs in a straight line, so the cells disappear into "
                   "ramps: the smoothing is *implicit*, fixed by the cell size, and nobody chose it.")


def _show_small_sigma(state: Selection, result: GridResult) -> None:
    cell_y, cell_x = _cell(state)
    sigma = (cell_x / 4, cell_y / 4)
    values = pixel_map(result, "extendedcam", state.size, "gaussian", sigma, "minmax")
    left, right = st.columns([2, 3], gap="medium")
    left.image(views.overlay(state.seen, values), width="stretch",
               caption=f"Extended-CAM, Gaussian σ = ({sigma[0]:.1f}, {sigma[1]:.1f}) px, min-max")
    right.markdown("With σ a quarter of a cell each cell becomes a **dot** at its centre: the grid is visible "
                   "again. Eq. 4 sums one Gaussian per cell, so a larger σ lets the dots melt into one map.")


def _show_erf(state: Selection, result: GridResult) -> None:
    try:
        fit = fitted_sigma(state.backbone.name, state.layer)
    except CardError as exc:
        st.warning(str(exc))
        fit = None
    cell_y, cell_x = _cell(state)
    sigma = (fit.sigma_x, fit.sigma_y) if fit is not None else PAPER_SIGMA
    values = pixel_map(result, "extendedcam", state.size, "gaussian", sigma, "minmax")
    left, right = st.columns([2, 3], gap="medium")
    left.image(views.overlay(state.seen, values), width="stretch",
               caption=f"Extended-CAM, Gaussian at the ERF's σ = ({sigma[0]:.1f}, {sigma[1]:.1f}) px")
    where = ("measured for this layer" if fit is not None else
             "not measured for this layer, so the Extended-CAM paper's VGG16 value stands in")
    quality = ("" if fit is None or fit.r2 >= POOR_FIT_R2 else
               f" Here the fit is loose (R² {fit.r2:.2f}): the receptive field is not one clean blob, and its σ "
               "spreads every cell over the whole image.")
    right.markdown(f"The ERF's σ ({where}) is about **{sigma[0] / cell_x:.1f} cells** wide: one unit gathers "
                   f"evidence from about ±2σ = ±{2 * sigma[0]:.0f} px of the input. Extended-CAM sprays each "
                   f"cell back over that area.{quality} The Receptive Field page measures it.")


def _show_mimic(state: Selection, result: GridResult) -> None:
    curve = sigma_correlation(result, state.size)
    explicit = pixel_map(result, "extendedcam", state.size, "gaussian", (curve.best, curve.best), "minmax")
    implicit = pixel_map(result, "gradcam", state.size, "bilinear", None, "minmax")
    left, middle, right = st.columns(3)
    left.image(views.overlay(state.seen, explicit), width="stretch",
               caption=f"Extended-CAM, Gaussian σ = {curve.best:g} px")
    middle.image(views.overlay(state.seen, implicit), width="stretch", caption="Grad-CAM, bilinear")
    cell_y, cell_x = _cell(state)
    right.markdown(f"The two maps agree best at **σ = {curve.best:g} px** (Pearson r = {curve.best_correlation:.3f}), "
                   f"about {curve.best / cell_x:.1f} cells: that is how much smoothing Grad-CAM's bilinear step "
                   "applies without saying so. The Extended-CAM paper finds about 20 px for VGG16.")


REVEALS = (_show_grid, _show_bilinear, _show_small_sigma, _show_erf, _show_mimic)
