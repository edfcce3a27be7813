"""Downscale Simulation (F-CAM supplementary E): the localisation ceiling a coarse map imposes."""

import numpy as np
import streamlit as st

from explorer import ui, views

ui.selection()

st.title("Downscale Simulation")
st.markdown(
    "A CAM read at stride z is a grid z times coarser than the image. Replace it by the best map such a "
    "grid could hold, the **ground-truth mask itself** downscaled by z (bilinear interpolation, as the "
    "F-CAM paper's Fig. E.4), upsample it back and score it with PxAP: whatever the method, no CAM of "
    "that stride can do better. The curve is that ceiling against z (F-CAM Fig. D.3)."
)
spec_column, count_column, sigma_column, method_column = st.columns(4)
with spec_column:
    spec = ui.text_input("Masks dataset", "downscale.dataset", "synthetic",
                         help="synthetic, synthetic:<dir> or openimages:<root>")
with count_column:
    count = ui.slider("Images", "downscale.count", *ui.DOWNSCALE_IMAGES, step=10)
with sigma_column:
    sigma_cells = ui.slider("Gaussian σ per grid cell", "downscale.sigma", 0.1, 2.0, 0.5, step=0.05,
                            help="A coarser grid needs a wider Gaussian: σ in pixels is this times z (the table "
                                 "gives it for every z), as every other page measures σ.")
with method_column:
    downscale = ui.radio("Downscale by", "downscale.method", ("bilinear", "area"), "bilinear",
                         format_func={"bilinear": "bilinear interpolation (paper)", "area": "cell average"}.get)
# The default simulation shows on opening (cached for every visitor); any other runs on its button.
asked = (spec.strip(), int(count), float(sigma_cells), downscale)
shown = ui.remembered("downscale.shown", ui.DOWNSCALE_DEFAULT)
if asked != shown:
    if ui.requested("downscale", asked, "Simulate these settings",
                    help="Downscales and restores the masks of the chosen images at every z (a few seconds per "
                         "hundred images on a CPU)."):
        shown = asked
        ui.remember("downscale.shown", shown)
    else:
        st.caption(f"Showing the last simulation ({shown[1]} images of {shown[0]}, σ {shown[2]:g} per cell, "
                   f"{shown[3]}); press the button to simulate the settings above.")
spec_shown, count, sigma_cells, downscale = shown
result = ui.attempt("simulating", lambda: ui.downscale_curves(spec_shown, "test", count, sigma_cells, downscale))
if result is None:
    st.stop()
curves = {"bilinear upsampling": result["curves"]["bilinear"],
          f"Gaussian upsampling (σ = {sigma_cells:g} z px)": result["curves"]["gaussian"]}
chart, table = st.container(), st.container()  # one above the other: the table's five columns need the width
chart.plotly_chart(views.downscale_figure(result["zooms"], curves,
                                          title=f"PxAP ceiling against z ({result['images']} test images)"))
table.dataframe([{"z": z, "grid at 224 px": f"{round(224 / z)}×{round(224 / z)}",
                  "Gaussian σ (px)": round(sigma_cells * z, 2), "PxAP bilinear": round(b, 2),
                  "PxAP Gaussian": round(g, 2)}
                 for z, b, g in zip(result["zooms"], result["curves"]["bilinear"], result["curves"]["gaussian"])],
                hide_index=True)
st.subheader("One mask, restored from each z")
for upsampler in ("bilinear", "gaussian"):
    columns = st.columns(len(result["zooms"]) + 1)
    columns[0].image(views.overlay(result["example_image"], result["example_mask"].astype(np.float32)),
                     caption="ground truth", width="stretch")
    for column, z, restored in zip(columns[1:], result["zooms"], result["examples"][upsampler]):
        column.image(views.overlay(result["example_image"], restored), caption=f"z = {z}, {upsampler}", width="stretch")
