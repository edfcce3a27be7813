"""Sanity Checks: Adebayo et al.'s cascading model-parameter randomisation, one block at a time
from the output down, with each chosen method's map, its Spearman rank correlation and SSIM with
the trained network's map after every step (bilinear and Gaussian upsampling)."""

import streamlit as st

from explorer import ui

state = ui.selection()
ui.require_classifier(state, "Sanity Checks")

st.title("Sanity Checks: does the map depend on the network?")
ui.context_banner(state)
st.markdown(
    "Adebayo et al. (2018) re-initialise a trained network's weights from the top layer down, one block "
    "at a time, and recompute the saliency map after each step. A map that explains the *network* must "
    "change as its learned weights are destroyed. A map that still looks the same after the network is "
    "random is showing properties of the *image* (edges, colour contrast), whatever its name says. "
    "Everything runs on a copy of the network; the one you explore is untouched."
)
methods = ui.multiselect("Methods", "sanity.methods", [m for m in ui.SANITY_METHODS if m in ui.available_methods(state)],
                         ["gradcam", "extendedcam", "randomcam"], format_func=ui.method_name)
sigma = ui.sigma_controls(state, with_presets=True)
if not methods:
    st.info("Choose at least one method.")
    st.stop()
settings = (state.backbone.name, state.backbone.weights, state.layer, state.image_choice.key, state.target,
            tuple(methods), tuple(sigma))
if not ui.requested("sanity", settings, "Run the cascade",
                    help="Re-initialises the network block by block on a copy and recomputes every chosen map after "
                         "each step: about a minute on a CPU. Streamlit's Stop (top right) ends it."):
    st.info("The cascade re-initialises a copy of the network one block at a time and recomputes each map after "
            "every step, so it takes about a minute here: press **Run the cascade** when the methods and σ are "
            "the ones you want. A result already computed for these choices shows at once.")
    st.stop()
result = ui.attempt("randomising the network", lambda: ui.sanity_result(state, methods, sigma))
if result is None:
    st.stop()

for level, text in ui.sanity_verdicts(result):
    {"warning": st.warning, "success": st.success, "info": st.info}[level](text)
left, right = st.columns(2)
left.plotly_chart(ui.sanity_curves(result, "spearman"))
right.plotly_chart(ui.sanity_curves(result, "ssim"))
st.caption(f"Steps (x axis): 0 = trained, then {', '.join(result.steps[1:])} re-initialised in turn (cumulative).")
for method in methods:
    for upsampler in ("bilinear", "gaussian"):
        tiles, captions = ui.sanity_strip(state, result, method, upsampler)
        st.markdown(f"**{ui.method_name(method)} · {upsampler}**")
        for column, tile, caption in zip(st.columns(len(tiles)), tiles, captions):
            column.image(tile, caption=caption, width="stretch")
