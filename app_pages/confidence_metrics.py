"""Confidence Metrics: Average Drop % and % Increase (Extended-CAM Tables 2-4).

A map is good evidence when keeping only what it highlights keeps the classifier's confidence:
Average Drop % = 100 · mean(max(0, Y - O) / Y) (lower is better) and % Increase = 100 · share of
images with O > Y (higher is better), Y the confidence on the image, O on the image multiplied
by the map (normal masking) or by its top-50 % pixels (relative masking).
"""

import streamlit as st

from explorer import ui, views

state = ui.selection()

st.title("Confidence Metrics")
st.markdown(
    "Multiply the image by the map, classify it again, and compare the target's confidence before (Y) "
    "and after (O). **Average Drop %** = 100 · mean(max(0, Y − O) / Y), lower is better; **% Increase** "
    "= share of images where O > Y, higher is better. *Normal* masking multiplies by the map itself; "
    "*relative* masking keeps the map's top 50 % of pixels (Extended-CAM Table 3)."
)
ui.context_banner(state)

st.subheader("Extended-CAM Table 4: equation × upsampler")
source = ui.radio("Images", "confidence.source", ("gallery", "folder", "voc"), "gallery", horizontal=True,
                  format_func={"gallery": "the sample photos", "folder": "a folder the server shares",
                               "voc": "PASCAL VOC 2007 (root folder)"}.get)
spec = "gallery"
if source != "gallery":
    path = ui.text_input("Path on the server", f"confidence.{source}", "")
    problem = ui.folder_problem(path)
    if problem:
        st.info(problem)
        st.stop()
    spec = f"{source}:{path.strip()}"
if state.layer_shape[1] * state.layer_shape[2] > 64 * 64:
    st.warning("This layer is very fine; pick a deeper one in the sidebar for a meaningful comparison.")
sigma = ui.sigma_controls(state, with_presets=True)
grid = None
if ui.requested("confidence.table4", (spec, state.backbone.name, state.backbone.weights, state.layer, tuple(sigma)),
                "Compute Table 4 for these images",
                help="Masks every image by six maps and classifies it again (about a minute for the sample "
                     "photos on a CPU); computed once per choice, then shown at once."):
    grid = ui.attempt("computing the confidence metrics",
                      lambda: ui.confidence_grid(spec, state.backbone, state.layer, sigma))
else:
    st.caption("Six maps per image, each image masked and classified again: press the button to compute it for "
               "the images, backbone, layer and σ chosen (a result already computed shows at once). The shipped "
               "evaluations' tables are below.")
if grid is not None:
    st.caption(f"{grid['images']} images with `{state.backbone.name}` layer `{state.layer}`; each map explains "
               f"{'the image label' if grid['policy'] == 'label' else 'the top-1 prediction'}; Gaussian σ = "
               f"({sigma[0]:g}, {sigma[1]:g})." + (f" {len(grid['skipped'])} images skipped." if grid["skipped"] else ""))
    st.dataframe(ui.confidence_table(grid["rows"]), hide_index=True)
    st.caption("Each cell: the measure and [its 95 % bootstrap interval] over the images.")
    for note in ui.confidence_warnings(grid["rows"], grid["images"]):
        st.warning(note)
    st.caption("The paper (VGG16, ImageNet, relative masking) finds Extended-CAM with Gaussian upsampling best "
               "(39.86 / 20.72) and Extended-CAM with bilinear upsampling worst (79.23 / 4.02).")

st.subheader("From a dataset evaluation")
run = ui.choose_run("confidence.run")
if run is not None:
    rows = [r for r in run.summary["rows"] if "average_drop" in r]
    if not rows:
        st.info("This evaluation was run without confidence metrics.")
    else:
        st.caption(f"n = {run.summary.get('num_images', '?')} images of {run.summary['config']['dataset']} "
                   f"({run.summary['config']['split']}); intervals: {run.summary.get('interval_method', 'none stored')}.")
        st.dataframe(ui.confidence_table(rows), hide_index=True)
        faithfulness = ui.confidence_table(rows, "faithfulness")
        if faithfulness:
            st.markdown("**Faithfulness of the same maps**")
            st.dataframe(faithfulness, hide_index=True)
            st.caption(ui.FAITHFULNESS_NOTE)
        for note in ui.confidence_warnings(rows, run.summary.get("num_images", 0)):
            st.warning(note)
        categories = [ui.combo_label(r["method"], r["upsampler"]) for r in rows]
        left, right = st.columns(2, gap="large")
        for column, key, title in ((left, "average_drop", "Average Drop % (lower is better)"),
                                   (right, "increase", "% Increase (higher is better)")):
            column.plotly_chart(views.bar_figure(
                categories, {"normal": [r[key] for r in rows], "relative": [r[key + "_relative"] for r in rows]},
                title, title.split(" (")[0],
                intervals={"normal": [r.get(key + "_ci") for r in rows],
                           "relative": [r.get(key + "_relative_ci") for r in rows]}))
        st.caption("Error bars: 95 % bootstrap intervals over the test images. Bars whose intervals overlap do "
                   "not rank.")
