"""Home: what CAM Explorer is, the image as the network sees it, its top-5, and where to go next.

The router (app.py) draws the sidebar before this page; its choices hold on every page.
"""

import streamlit as st

from explorer import ui

state = ui.selection()

st.title("CAM Explorer")
st.markdown(
    "How does a convolutional network *see* an image? Class activation maps (CAMs) answer by "
    "weighting the feature maps of one layer by how much they matter for one class. CAM Explorer "
    "lets teachers and students of explainability and weakly-supervised object localisation "
    "(WSOL) compare the published methods side by side: CAM, Grad-CAM, Grad-CAM++, Smooth "
    "Grad-CAM++, XGrad-CAM, LayerCAM, Extended-CAM, Eigen-CAM, Shapley-CAM, Finer-CAM, the Score-CAM "
    "family, Ablation-CAM and more, with each step of the pipeline (ReLU placement, upsampling, "
    "normalisation) as an explicit choice."
)
ui.context_banner(state)

with st.container(border=True):
    st.subheader("A lesson: smoothing in five steps")
    st.caption("On the image and network in the sidebar. Each step asks the class to predict first, then one "
               "click shows it.")
    if state.is_classifier:
        ui.smoothing_lesson(state)
    else:
        st.info(f"The lesson follows a classifier's class; `{state.backbone.name}` is a {state.backbone.task} model. "
                "Open Compare to see its maps for the target chosen in the sidebar.")

picture, predictions = st.columns(2, gap="large")
with picture:
    height, width = state.size
    st.subheader("What the network sees")
    st.image(state.seen, caption=f"{state.image_choice.label}, resized to {width}×{height} as the network's "
                                 f"input (original {state.image.width}×{state.image.height}, aspect not kept)")
with predictions:
    if state.is_classifier:
        st.subheader("Top-5 predictions")
        if state.backbone.is_random:
            st.caption("An untrained network's guesses: meaningless by design.")
        st.dataframe(
            [{"rank": rank, "class": name, "index": index, "probability": prob}
             for rank, (index, name, prob) in enumerate(state.predictions, 1)],
            hide_index=True,
            column_config={"probability": st.column_config.ProgressColumn("probability", format="percent",
                                                                           min_value=0.0, max_value=1.0)},
        )
    else:
        st.subheader(f"What the maps explain ({state.backbone.task})")
        st.markdown(f"**{state.target_name}**, chosen in the sidebar.")
    st.subheader("Where to next")
    for path, label, icon, what in ui.PAGE_GUIDE:
        st.page_link(path, label=label, icon=icon)
        st.caption(what)
    st.caption("Choose the image, backbone, weights, target layer and class in the sidebar; the choices "
               "hold on every page.")
