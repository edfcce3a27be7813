"""Smoothing Lab: Extended-CAM's explicit Gaussian smoothing against Grad-CAM's implicit one.

Both maps come from one cached capture (Grad-CAM with its published ReLU, Extended-CAM signed);
the fragment below only re-upsamples them, so moving sigma or the profile row never reruns the
network.
"""

import streamlit as st

from explorer import ui, views

state = ui.selection()
ui.require_classifier(state, "Smoothing Lab")

st.title("Smoothing Lab")
ui.context_banner(state)
st.markdown("Grad-CAM's **implicit** smoothing (bilinear) against Extended-CAM's **explicit** one (Gaussian, eq. 4): "
            "where do they agree? Why they differ: below.")
same_grid = state.backbone.has_gap_linear_head and state.layer == state.backbone.cam_layer
result = ui.attempt("computing the maps",
                    lambda: ui.grid(state, ("gradcam", "extendedcam"), "published", ui.active_decoders(state)))
if result is None:
    st.stop()


@st.fragment
def lab() -> None:
    """Re-upsampling only: sigma, the profile row and everything drawn from them (in the browser
    with live σ: the maps, r, the profiles and the curve's marker repaint as σ moves)."""
    height, _ = state.size
    live_column, link_column, row_column = st.columns([1, 1.3, 5], vertical_alignment="bottom")
    with live_column:
        live = ui.toggle("Live σ", "live_sigma", True,
                         help="The Extended-CAM map, the correlation, the profiles and the curve's marker repaint in "
                              "your browser as σ moves (the server gets σ when you let go). Off: every move asks the "
                              "server.")
    if live:  # one row: the σ sliders are the browser's
        ui.adopt_released_sigma(ui.LAB_KEY)
        with link_column:
            sigma = ui.sigma_controls(state, with_presets=False, sliders=False, compact=True)
        with row_column:
            row = ui.slider("Profile row (pixels from the top)", "profile_row", 0, height - 1, height // 2)
    else:
        sigma = ui.sigma_controls(state, with_presets=False)
        row = ui.slider("Profile row (pixels from the top)", "profile_row", 0, height - 1, height // 2)
    if live:
        curve = ui.sigma_correlation(result, state.size)
        ui.live_lab(state.seen, result, {"extendedcam": result.label("extendedcam"),
                                         "gradcam": f"{result.label('gradcam')}, bilinear"},
                    sigma, row, curve, ui.remembered("sigma_linked", True))
        st.button(f"Use σ = {curve.best:g} (the curve's best)", on_click=ui.use_sigma, args=(curve.best,))
        return
    explicit = ui.pixel_map(result, "extendedcam", state.size, "gaussian", sigma, "minmax")
    implicit = ui.pixel_map(result, "gradcam", state.size, "bilinear", None, "minmax")
    explicit_label = f"{result.label('extendedcam')}, Gaussian σ=({sigma[0]:.4g}, {sigma[1]:.4g})"
    implicit_label = f"{result.label('gradcam')}, bilinear"
    explicit_column, implicit_column, score_column = st.columns([2, 2, 3], gap="medium")
    explicit_column.image(views.jpeg_bytes(views.mark_row(views.overlay(state.seen, explicit), row)),
                          width="stretch", caption=f"{explicit_label}, min-max")
    implicit_column.image(views.jpeg_bytes(views.mark_row(views.overlay(state.seen, implicit), row)),
                          width="stretch", caption=f"{implicit_label}, min-max")
    curve = ui.sigma_correlation(result, state.size)
    with score_column:
        st.metric("Pearson correlation of the two maps", f"{views.pearson(explicit, implicit):.3f}")
        st.metric("Best σ on the curve below (x = y)", f"{curve.best:g} px", f"r = {curve.best_correlation:.3f}",
                  delta_color="off", delta_arrow="off")
        st.button(f"Use σ = {curve.best:g}", on_click=ui.use_sigma, args=(curve.best,))
        st.caption("The white line on the maps is the row the profiles are drawn along.")
    profile_column, curve_column = st.columns(2, gap="large")
    profile_column.plotly_chart(views.profile_pair_figure({explicit_label: explicit[row], implicit_label: implicit[row]},
                                                     title=f"Profiles along row {row}"))
    curve_column.plotly_chart(views.sigma_curve_figure(curve.sigmas, curve.correlations, curve.best, sigma[0],
                                                       title="Correlation against σ (red: the current σx)"))


lab()

st.subheader("What the page compares")
st.markdown(
    "Grad-CAM keeps only the positive part of its grid map (a ReLU after the channel sum) and then "
    "upsamples it bilinearly, so its smoothing is *implicit*: fixed by the size of a grid cell. "
    "Extended-CAM keeps the signed map and spreads every cell as a Gaussian of width σ (Extended-CAM, "
    "eq. 4), so its smoothing is *explicit*. Section 5 of the Extended-CAM paper compares the two; "
    "for VGG16 it finds explicit smoothing mimics Grad-CAM best near σ ≈ 20 pixels. Move σ, watch the "
    "correlation and the profiles, and find the σ where the two agree for this network and layer."
)
if same_grid:
    with st.container(border=True):
        st.markdown(f"**Here Grad-CAM and Extended-CAM give the same grid map.** `{state.layer}` feeds a "
                    "global-average-pooling + linear head, so the gradient of the class score is the same at every "
                    "cell of a channel:")
        st.latex(r"\frac{\partial y_c}{\partial A^k_{ij}} = \frac{w^c_k}{Z}\quad\text{for every cell } (i, j)")
        st.markdown("and Extended-CAM's per-cell weights equal Grad-CAM's pooled ones: only the upsampling differs "
                    "above. To see the two equations part, choose an earlier layer (for EfficientNet-Lite0, "
                    "blocks.15 or blocks.10) or the backbone synthetic_vgg, whose head after conv5 is VGG16's kind "
                    "(max-pool, FC-ReLU, FC).")

split = ui.split_sigma_curve(state)
if split is not None:
    st.subheader("Over the whole test split")
    st.markdown(split.reading() + " One image's curve (above) can peak elsewhere; this one is the claim tested.")
    st.plotly_chart(views.split_sigma_curve_figure(
        split.sigmas, split.mean_r, split.low, split.high, split.best_sigma, split.best_sigma_ci, split.paper_sigma,
        title=f"Mean correlation against σ over {split.images} images, with its 95 % interval"))
