"""Receptive Field: the effective receptive field (ERF) of the sidebar's backbone and layer, its
2D Gaussian fit, and what the fit means for Gaussian upsampling.

A stored measurement (checkpoints/erf/<backbone>__<layer>.json and its PNG) shows at once; a live
estimate runs as a job kept in session state (explorer.ui.run_erf_job): a progress bar, a Stop
button that keeps the images averaged so far, and Continue. The fitted sigma can become the
Gaussian upsampler's sigma on the Compare page and in the Smoothing Lab.
"""

import streamlit as st

from explorer import ui, views
from explorer.erf import ErfFitError
from explorer.jobs import ErfSettings

state = ui.selection()
backbone = state.backbone
channels, grid_h, grid_w = state.layer_shape

# ---------------------------------------------------------------------------------- side by side

def side_by_side() -> None:
    """Several ERFs next to each other: stored cards and this session's estimates (drawn last, so
    an estimate finished in this run is already offered)."""
    st.subheader("Side by side")
    choices = ui.erf_comparison_choices()
    own = [label for label in choices if label.startswith(f"{backbone.name} / {state.layer} ")]
    paper = [label for label in choices if label.startswith("vgg16 / conv5_3 ")]
    chosen = ui.multiselect("ERFs to compare", "erf.compare", list(choices), (own + paper)[:2] or list(choices)[:2],
                            help="Stored cards of every backbone and layer, and the estimates made on this page in "
                                 "this session (only yours).")
    shown = [(label, ui.erf_comparison(choices[label], label)) for label in chosen if label in choices]
    failed = [label for label, item in shown if item is None]
    shown = [(label, item) for label, item in shown if item is not None]
    if failed:
        st.caption("No Gaussian fits " + ", ".join(failed) + "; it is left out.")
    if shown:
        outline_column, table_column = st.container(), st.container()  # stacked: the table needs the width
        outline_column.plotly_chart(views.erf_outlines_figure([o for _, (o, _) in shown]), key="erf.outlines")
        table_column.dataframe([{"ERF": o.label, "from": o.origin, "σx (px)": round(o.sigma_x, 2),
                                 "σy (px)": round(o.sigma_y, 2), "R²": round(o.r2, 3)} for _, (o, _) in shown],
                               hide_index=True)
        table_column.caption("The wider the ellipse, the more a grid cell of that layer sees, and the larger the σ "
                             "Gaussian upsampling should spray. The paper's VGG16 conv5_3: σ 31.78 × 33.36 px, "
                             "R² 0.9905.")
        for start in range(0, len(shown), 2):
            for column, (label, (outline, picture)) in zip(st.columns(2), shown[start:start + 2]):
                if isinstance(picture, tuple):
                    estimate, fit = picture
                    column.plotly_chart(views.erf_heatmap_figure(
                        estimate.map, f"{outline.label}: measured ERF", centre=estimate.centre_px,
                        ellipse=(fit.centre_x, fit.centre_y, fit.sigma_x, fit.sigma_y, fit.rotation or 0.0)),
                        key=f"erf.compare.{start}.{label}", theme=None)
                elif picture is not None:
                    column.image(str(picture), width="stretch", caption=f"{label}: the stored ERF, its fit and residual")


st.title("Effective receptive field")
st.markdown(f"`{backbone.name}` with {backbone.weights_label} · layer `{state.layer}` "
            f"({ui.shape_text(state.layer_shape)}) · the ERF of the centre cell of its {grid_h}×{grid_w} grid")
if backbone.is_random:
    st.warning(ui.RANDOM_WARNING)
st.markdown(
    "A grid cell of a convolutional layer does not see its pixels equally. Its **effective receptive field** "
    "(ERF) is how strongly each input pixel moves it: the gradient of the cell with respect to the image, "
    "averaged over many images (Luo et al., 2016). Extended-CAM's **Gaussian upsampling** (section 3.1, eq. 4) "
    "lets every grid cell spray a 2D Gaussian over the pixels with the σ of that ERF, fitted with lmfit "
    "(section 4.1: VGG16 conv5_3, R² 0.9905, σ 31.78 / 33.36 px). The fit's **R²** says whether one Gaussian "
    "describes the ERF at all; when it does not, Gaussian upsampling with any single σ is an approximation."
)

# ------------------------------------------------------------------------ stored measurement

st.subheader("Stored measurement")
card, card_png = ui.erf_card(backbone.name, state.layer)
if card is None:
    st.info(f"No stored ERF for `{backbone.name}` / `{state.layer}`. Estimate it live below, or store one with "
            f"`python -m explorer erf --backbone {backbone.name} --layer {state.layer}"
            f"{' --weights random' if backbone.is_random else ''}`.")
else:
    numbers, picture = st.columns(2, gap="large")  # three metrics side by side need half the page at 1280 px
    with numbers:
        r2_column, sx_column, sy_column = st.columns(3)
        r2_column.metric("R²", f"{card['r2']:.3f}")
        sx_column.metric("σx (px)", f"{card['sigma_x']:.2f}", views.plus_minus(card.get("sigma_x_stderr")),
                         delta_color="off", delta_arrow="off")
        sy_column.metric("σy (px)", f"{card['sigma_y']:.2f}", views.plus_minus(card.get("sigma_y_stderr")),
                         delta_color="off", delta_arrow="off")
        level, _ = views.r2_verdict(float(card["r2"]))
        {"good": st.success, "rough": st.info, "poor": st.warning}[level](views.card_meaning(card))
        st.caption(f"{card['n_images']} {card.get('source', '')} images, mode {card['mode']}, "
                   f"{card['weights']} weights{' (INTERRUPTED)' if card.get('interrupted') else ''}; "
                   f"created {card.get('created', 'at an unknown time')}. Made by:")
        st.code(card["command"], language="bash", wrap_lines=True)
        if card["weights"] != backbone.weights:
            st.warning(f"This card was measured on {card['weights']} weights; the sidebar uses {backbone.weights}.")
        st.button("Use the stored σ on the other pages", key="erf.use_card", icon=":material/input:",
                  on_click=ui.use_stored_sigma, args=(backbone.name, state.layer),
                  help="Selects this stored fit as the Gaussian σ preset of the Compare page and the Smoothing Lab.")
    with picture:
        if card_png is not None:
            st.image(str(card_png), width="stretch",
                     caption="The stored ERF, its fitted Gaussian (1σ and 2σ ellipses) and the residual.")
with st.expander("All stored measurements, and the paper's"):
    rows = ui.stored_erf_cards()
    rows.append({"backbone": "vgg16 (Extended-CAM paper)", "layer": "conv5_3", "weights": "pretrained",
                 "images": "?", "mode": "?", "R²": 0.9905, "σx": 31.78, "σy": 33.36})
    st.dataframe(rows, hide_index=True)

# ------------------------------------------------------------------------------ live estimate

st.subheader("Estimate live")
with st.container(border=True):
    source_column, count_column, mode_column, seed_column = st.columns([2.2, 2, 1.6, 0.8],
                                                                       vertical_alignment="bottom")
    with source_column:
        source = ui.radio("Images", "erf_source", tuple(ui.ERF_SOURCES), "noise", format_func=ui.ERF_SOURCES.get,
                          horizontal=True,
                          help="Noise: N(0, 1) in the network's normalised input space. Gallery: random crops "
                               "of the sample photos. Folder: random crops of your photos.")
    with count_column:
        low, high, default = ui.ERF_IMAGES
        n_images = ui.slider("Number of images", "erf_n", low, high, default,
                             help="More images, a smoother average: the convergence curve shows whether it settled.")
    with mode_column:
        mode = ui.selectbox("Gradient mode", "erf_mode", tuple(ui.ERF_MODE_LABELS), "abs",
                            format_func=ui.ERF_MODE_LABELS.get,
                            help="How each pixel's gradient g enters the average (summed over RGB).")
    with seed_column:
        seed = ui.number_input("Seed", "erf_seed", 0, 10_000, 0)
    problem = None
    source_name = source
    if source == "folder":
        folder = ui.text_input("Folder on the server", "erf_folder", "", placeholder="data/photos",
                               help="Every readable image in this folder (not its subfolders) is used, "
                                    "as random crops.")
        problem = ui.folder_problem(folder)
        if problem:
            st.error(problem)
        else:
            source_name = ui.folder_source(folder)
    fit_column, rotation_column, button_column = st.columns([1.2, 1.2, 2], vertical_alignment="center")
    with fit_column:
        offset = ui.checkbox("Fit a constant offset", "erf_offset", False,
                             help="A floor under the Gaussian: separates a broad floor from the peak.")
    with rotation_column:
        rotation = ui.checkbox("Fit a rotation", "erf_rotation", False,
                               help="Let the Gaussian's axes turn (σx is then the axis nearest the horizontal).")
    settings = ErfSettings(backbone.name, backbone.weights, state.layer, mode, source_name, int(n_images), int(seed))
    with button_column:
        st.button("Estimate", key="erf.estimate", type="primary", icon=":material/play_arrow:",
                  disabled=problem is not None, on_click=ui.start_erf, args=(settings,))

job = ui.erf_job(backbone, state.layer)
if job is not None and job.running:
    ui.run_erf_job(backbone, job)
if job is None:
    st.info("Press **Estimate** to measure this layer's ERF with the settings above.")
    side_by_side()
    st.stop()

estimate = job.estimate()
if job.status == "failed":
    st.error(job.error)
if job.done < job.total and (job.status == "stopped" or (job.status == "failed" and estimate is not None)):
    why = f" ({job.note})" if job.note else ""
    st.warning(f"Interrupted after {job.done} of {job.total} images{why}: everything below is the average of "
               f"those {job.done} images.")
    if job.status == "stopped":
        st.button(f"Continue to {job.total} images", key="erf.continue", icon=":material/resume:",
                  on_click=ui.continue_erf, args=(job.uid,))
if estimate is None:
    side_by_side()
    st.stop()
if job.status == "done":
    st.caption(f"Done: {job.settings.describe()}, averaged in {estimate.seconds:.1f} s"
               + (f" · {job.note}" if job.note else "") + ".")
if job.settings.key != settings.key:
    st.caption(f"Showing the last estimate ({job.settings.describe()}); press Estimate for the settings above.")

log = ui.toggle("Log colour scale", "erf_log", False,
                help="log10 of the ERF (up to three decades below its peak): shows the floor far from the centre.")
try:
    fit = ui.erf_fit(job, offset, rotation)
except ErfFitError as exc:
    fit = None
    st.error(f"{exc} The map is shown without a fit.")
    if estimate.mode == "signed":
        st.caption("Signed gradients of opposite sign cancel when averaged, so a signed ERF often has no single "
                   "positive peak to fit; the abs mode (Luo et al.) is the one Gaussian upsampling is fitted on.")

if fit is not None:
    level, _ = views.r2_verdict(fit.r2)
    alternative = ui.erf_alternative_fit(job, offset, rotation)
    {"good": st.success, "rough": st.info, "poor": st.warning}[level](views.erf_meaning(fit, alternative, estimate.map))
    metric_columns = st.columns(5)
    metric_columns[0].metric("R²", f"{fit.r2:.4f}")
    metric_columns[1].metric("σx (px)", f"{fit.sigma_x:.2f}", views.plus_minus(fit.stderr.get("sigma_x")),
                             delta_color="off", delta_arrow="off")
    metric_columns[2].metric("σy (px)", f"{fit.sigma_y:.2f}", views.plus_minus(fit.stderr.get("sigma_y")),
                             delta_color="off", delta_arrow="off")
    metric_columns[3].metric("Centre (x, y) px", f"{fit.centre_x:.1f}, {fit.centre_y:.1f}",
                             help=f"The centre cell's own centre is at ({estimate.centre_px[0]:.1f}, "
                                  f"{estimate.centre_px[1]:.1f}).")
    if fit.offset is not None:
        metric_columns[4].metric("Offset (floor)", f"{fit.offset:.3g}")
    elif fit.rotation is not None:
        metric_columns[4].metric("Rotation", f"{views.degrees(fit.rotation):.1f}°")
    st.caption("± are lmfit's formal standard errors: they assume independent pixel residuals, but neighbouring "
               "ERF pixels are strongly correlated, so they understate the real uncertainty. The honest spread is "
               "how much σ still moves as images are added (the convergence curves below)."
               + (f" {fit.stderr_note}." if fit.stderr_note else ""))
    use_column, shared_column = st.columns([1, 3], vertical_alignment="center")
    shown_sigma = f"({ui.sigma_on_slider(fit.sigma_x):g}, {ui.sigma_on_slider(fit.sigma_y):g})"
    use_column.button(f"Use σ = {shown_sigma} on the other pages",
                      key="erf.use_fit", type="primary", icon=":material/input:",
                      on_click=ui.use_sigmas, args=(fit.sigma_x, fit.sigma_y),
                      help="Sets the Gaussian upsampler's σ of the Compare page and the Smoothing Lab (preset "
                           "'manual', on the sliders' 0.5 px step).")
    preset, shared_x, shared_y = ui.shared_sigma()
    if preset == ui.MANUAL_LABEL and shared_x is not None:
        shared_column.caption(f"The other pages' Gaussian σ now: manual ({shared_x:g}, {shared_y:g}) px.")
    elif preset:
        shared_column.caption(f"The other pages' Gaussian σ now: preset '{preset}'.")

# ------------------------------------------------------------------------------------ figures

figures = views.erf_figures(estimate, fit, log)
map_column, surface_column, residual_column = st.columns(3)
map_column.plotly_chart(figures["map"], key="erf.map", theme=None)
if fit is not None:
    surface_column.plotly_chart(figures["surface"], key="erf.surface", theme=None)
    residual_column.plotly_chart(figures["residual"], key="erf.residual", theme=None)
    st.caption("Cyan: the fitted 1σ (solid) and 2σ (dashed) ellipses; +: the centre of the layer's centre cell. "
               "Map and fit share one colour scale; the residual is always linear, red where the map is above the fit."
               + (" Log scale: log10 |value|, zero pixels blank." if log else ""))
    x_column, y_column = st.columns(2)
    x_column.plotly_chart(figures["profile_x"], key="erf.profile_x")
    y_column.plotly_chart(figures["profile_y"], key="erf.profile_y")

    st.subheader("Convergence: R² and σ against the number of images averaged")
    rows = ui.erf_convergence(job, offset, rotation)
    st.plotly_chart(views.erf_convergence_figure(rows), key="erf.convergence")
    spread = views.honest_spread(rows)
    failed = [row for row in rows if row["error"]]
    st.caption(" ".join(part for part in (
        "Each point is the fit of the running mean after that many images (the last one is the fit above).",
        spread,
        (f"No fit after {', '.join(str(r['n']) for r in failed)} image(s): {failed[-1]['error']}" if failed else None),
    ) if part))

side_by_side()
