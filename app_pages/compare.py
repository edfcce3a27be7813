"""Compare CAM methods: rows of methods, columns of upsamplers, on the sidebar's image and layer.

The grid maps (the network's forward + gradient) are computed in a cached call outside the
fragments below, once per choice of methods and ReLU policy; sigma, upsampler, normaliser and
colour-scale changes rerun only the overlay fragment, which upsamples those cached maps, and a
switch of the heatmap's method only the fragment that draws it.
"""

import streamlit as st

from explorer import FCAM, NORMALISERS, ui

NORMALISER_LABELS = {
    "minmax": "min-max (0 to 1)",
    "max": "max (divide by max |value|, keeps the sign)",
    "none": "none (raw values)",
}

state = ui.selection()

st.title("Compare CAM methods")
ui.context_banner(state)
if not state.is_classifier and state.objective is None:
    st.info(f"Nothing to explain here: {state.target_name}. Try another image.")
    st.stop()

methods_column, relu_column, smoothing_column = st.columns([3, 1, 1])
with methods_column:
    methods = ui.multiselect("Methods", "methods", ui.available_methods(state), ui.DEFAULT_METHODS,
                             format_func=ui.method_name)
with relu_column:
    relu = ui.selectbox("ReLU policy", "relu", tuple(ui.RELU_LABELS), "published", format_func=ui.RELU_LABELS.get,
                        help="Each method's published choice; none (signed maps); after the channel sum "
                             "(Grad-CAM's, and with Extended-CAM it is HiResCAM); or before it (element-wise).")
with smoothing_column:
    smoothing = ui.multiselect("Smoothing", "smoothing", [s for s in ui.SMOOTHING if s != "aug" or state.objective is None],
                               (),
                               format_func=lambda name: f"{name}-smooth",
                               help=" · ".join(ui.SMOOTHING.values()) + " (pytorch-grad-cam's aug_smooth and "
                                    "eigen_smooth). They apply to every chosen method.")
reason = ui.cam_unavailable_reason(state)
if reason:
    st.caption(f"CAM is not offered here. {reason}")
for note in ui.cost_notes(state, methods):
    st.caption(note)

runnable = ui.approve_slow_methods(state, methods, relu)
if not methods:
    st.info("Choose at least one method.")
if not runnable:
    st.stop()
result = ui.attempt("computing the maps",
                    lambda: ui.grid(state, runnable, relu, ui.active_decoders(state), smoothing))
if result is None or not result.maps:  # nothing yet, or only slow methods still computing (progress above)
    st.stop()


@st.fragment
def overlays() -> None:
    """Everything that only re-upsamples the cached grid maps."""
    upsampler_column, normaliser_column, scale_column, alpha_column = st.columns([3, 2, 1.5, 1.5],
                                                                               vertical_alignment="bottom")
    with upsampler_column:
        upsamplers = ui.multiselect("Upsamplers", "upsamplers", ui.available_upsamplers(state), ("bilinear", "gaussian"),
                                    format_func=lambda u: ui.upsampler_label(u, (0, 0)) if u == FCAM else u,
                                    help="The F-CAM decoder is offered when one was trained for this backbone and "
                                         "layer; it fills the rows of the methods it was trained from.")
    with normaliser_column:
        normaliser = ui.selectbox("Normaliser", "normaliser", NORMALISERS, "minmax", format_func=NORMALISER_LABELS.get,
                                  help="With 'none' or 'max' a signed map stays signed and is drawn with a "
                                       "diverging colour map centred on zero.")
    with scale_column:
        shared = ui.toggle("Shared scale", "shared_scale", False,
                           help="One colour range for every cell, so magnitudes compare across cells.")
        live = ui.toggle("Live σ", "live_sigma", True,
                         help="The Gaussian tiles repaint in your browser as σ moves (the server gets σ when you let "
                              "go). Off: every move asks the server to redraw. With the shared colour scale the "
                              "server redraws.")
    with alpha_column:
        alpha = ui.slider("Overlay opacity", "overlay_alpha", 0.0, 1.0, 0.5, step=0.05,
                          help="0 shows the image alone, 1 the map alone.")
    use_live = live and "gaussian" in upsamplers and not shared
    if use_live:
        ui.adopt_released_sigma()
    notes: list[str] = []
    sigma = ui.sigma_controls(state, with_presets=True, sliders=not use_live, notes=notes)
    if not upsamplers:
        st.info("Choose at least one upsampler.")
        return
    table = ui.attempt("upsampling the maps", lambda: ui.pixel_table(result, state.size, upsamplers, sigma, normaliser))
    if table is None:
        return
    rows = {method: result.label(method) for method in result.maps}
    columns = {up: ui.upsampler_label(up, sigma) for up in upsamplers}
    if use_live:
        ui.live_overlay_grid(state.seen, result, table, rows, columns, sigma, normaliser, alpha,
                             ui.remembered("sigma_linked", True))
    else:
        ui.show_overlay_grid(state.seen, table, rows, columns, shared, alpha)
    for note in notes:
        st.caption(note)
    title = f"{state.backbone.name} / {state.layer} / {state.target_name}" + (
        f" (class {state.target})" if state.objective is None else "")
    with st.expander("Faithfulness of one map on this image (deletion and insertion, RISE)"):
        pairs = [key for key in table if key[1] != FCAM] if state.is_classifier else []
        if not state.is_classifier:
            st.caption("Deletion and insertion follow a class probability: they apply to classifiers.")
        if pairs:
            chosen = ui.selectbox("Map", "faithfulness_map", pairs, pairs[0],
                                  format_func=lambda key: f"{rows[key[0]]} · {columns[key[1]]}")
            if st.button("Draw its deletion and insertion curves", key="faithfulness.go"):
                ui.remember("faithfulness_drawn", True)
            if ui.remembered("faithfulness_drawn", False):
                figure = ui.attempt("measuring faithfulness",
                                    lambda: ui.faithfulness_curves(state, result, chosen[0], chosen[1], sigma)[0])
                if figure is not None:
                    st.plotly_chart(figure)
                    st.caption("Deletion blacks out the map's most important pixels first; insertion reveals them "
                               "on a blurred copy (kernel 11, σ 5). 33 fractions, 66 forwards.")
    downloads = st.container(horizontal=True)
    downloads.download_button("Download the grid (PNG)", ui.sheet_png(state.seen, table, rows, columns, shared, title, alpha),
                                 file_name="cam-grid.png", mime="image/png", on_click="ignore")
    downloads.download_button("Download maps and settings (.npz)",
                              ui.grid_npz(state, result, table, upsamplers, sigma, normaliser),
                              file_name="cam-maps.npz", mime="application/octet-stream", on_click="ignore",
                              help="One .npz: 'settings' (JSON: backbone, weights, layer, class, each method's ReLU "
                                   "policy, upsamplers, sigma, normaliser), the raw grid maps 'grid/<method>' and the "
                                   "maps shown 'pixels/<method>/<upsampler>'. np.load(path) reads it.")


overlays()

st.subheader("Across layers")
strip_column, _ = st.columns([2, 3])
with strip_column:
    strip_method = ui.selectbox("Method over every target layer", "strip_method", list(ui.STRIP_METHODS), "gradcam",
                                format_func=ui.method_name,
                                help="One forward and one gradient give every layer's map; earlier layers are finer "
                                     "(Extended-CAM's future work).")
    show_strip = ui.toggle("Show the layer strip", "show_strip", False)
if show_strip:
    tiles = ui.attempt("computing the layer strip", lambda: ui.layer_strip(state, strip_method, relu))
    if tiles:
        for column, (tile, caption) in zip(st.columns(len(tiles)), tiles):
            column.image(tile, caption=caption, width="stretch")
        st.caption("Bilinear upsampling and min-max normalisation; the ReLU policy chosen above.")
    if strip_method == "layercam":
        layers = list(state.backbone.layers)
        fuse_column, fused_column = st.columns([4, 1], vertical_alignment="center")
        with fuse_column:
            fuse = ui.multiselect("Fuse LayerCAM over", "fuse_layers", layers, layers[-3:],
                                  help="LayerCAM's multi-layer fusion (Jiang et al. 2021, eq. 9): each layer's map "
                                       "scaled by tanh(2 M / max M), resized to the finest grid, element-wise "
                                       "maximum. Shallow layers add fine detail to the deep layer's location.")
        fused = ui.attempt("fusing LayerCAM", lambda: ui.fused_layercam_tile(state, fuse, relu))
        if fused is not None:
            fused_column.image(fused[0], caption=fused[1], width="stretch")
        elif len(fuse) < 2:
            fused_column.caption("Pick at least two layers to fuse.")

with st.expander("Which layer? The layer advisor"):
    if not state.is_classifier:
        st.caption("The advisor scores layers by a class's probability: it applies to classifiers.")
    else:
        st.caption("Each stage's last layer: Grad-CAM's deletion and insertion AUCs there on this image (RISE), the "
                   "Spearman ρ of its map before and after the head is re-initialised (a map that survives shows the "
                   "image, not the learning), and the peers' usual layer. About 2 × 17 forwards per layer.")
        if st.button("Score the layers", key="advisor.go"):
            ui.remember(f"advisor.{state.backbone.name}", True)
        if ui.remembered(f"advisor.{state.backbone.name}", False):
            advice = ui.attempt("scoring the layers", lambda: ui.layer_advice(state))
            if advice is not None:
                rows, best = advice
                st.dataframe(rows, hide_index=True)
                st.caption(f"Suggested: `{best}`, the highest insertion − deletion among the layers that pass the "
                           "sanity check.")
                st.button(f"Use {best}", key="advisor.use",
                          on_click=lambda: ui.set_widget(f"layer.{state.backbone.name}", best))

st.subheader("Inside the grid")


@st.fragment
def inside_the_grid() -> None:
    """The raw grid of one method and every method's value histogram: switching the method
    reruns only this block (the maps are cached; nothing above is redrawn)."""
    heatmap_column, histogram_column = st.columns(2, gap="large")
    with heatmap_column:
        shown = ui.selectbox("Heatmap of", "heatmap_method", list(result.maps), format_func=result.label)
        # The layer's grid, or the image's for input-gradient methods.
        st.plotly_chart(ui.heatmap_chart(result, shown, state.target_name), theme=None)  # keep the scale's dark end
        st.caption("Hover a cell for its raw value, before any upsampling or normalisation.")
    with histogram_column:
        st.plotly_chart(ui.histogram_chart(result, columns=2))
        st.caption("One panel per method, each on its own value axis (raw values of different methods differ by "
                   "orders of magnitude); a dotted line marks zero in a signed map.")


inside_the_grid()

st.subheader("Time taken")
st.dataframe(ui.timing_rows(result, state), hide_index=True)
st.caption("Measured when these maps were first computed; changing the sigma, upsampler or normaliser reuses "
           "them without running the network again.")
