"""Thresholds & Histograms: what a dataset evaluation's numbers are made of (F-CAM Figs. 5-6).

Reads a finished evaluation (shipped, or run from the form on this page); nothing here touches a
network except the form.
"""

import numpy as np
import streamlit as st

from explorer import ui, views

state = ui.selection()

st.title("Thresholds & Histograms")
st.markdown(
    "A CAM becomes a box or a mask only after a threshold τ. The WSOL protocol scores every τ from 0 to "
    "1 and keeps the best: **MaxBoxAcc** (largest connected region, IoU ≥ 0.5), **MaxBoxAccV2** (all "
    "regions, IoU 0.3/0.5/0.7) and **PxAP** (area under precision-recall over pixels). The curves below "
    "show how sharply each map depends on τ, and the value histograms show why: a CAM's values pile up "
    "near 0 with no clear second mode (F-CAM Fig. 6), so no threshold separates object from background."
)
ui.evaluation_form(state)
run = ui.choose_run()
if run is None:
    st.stop()
combos = ui.choose_combos(run, "thresholds.combos")
if not combos:
    st.info("Pick at least one method and upsampler.")
    st.stop()
curves = ui.attempt("reading the evaluation", lambda: ui.run_curves(run))
if curves is None:
    st.stop()

st.dataframe(ui.summary_table(run, combos, localisation_only=True), hide_index=True)
st.caption("Average Drop and % Increase of the same rows: Confidence Metrics.")
labels = {c: ui.combo_label(*c) for c in combos}
keys = {c: f"{c[0]}@{c[1]}" for c in combos}

histogram_column, region_column = st.columns([3, 1])
with region_column:
    region = ui.radio("Pixels", "thresholds.region", ("all", "foreground", "background"), "all",
                      help="Foreground and background need ground-truth masks.")
with histogram_column:
    histograms = {}
    for combo in combos:
        fg = curves.get(keys[combo] + "/values_foreground")
        bg = curves.get(keys[combo] + "/values_background")
        if fg is None or bg is None:
            continue
        histograms[labels[combo]] = {"all": fg + bg, "foreground": fg, "background": bg}[region]
    st.plotly_chart(views.value_histogram_figure(curves["value_edges"], histograms,
                                                 title=f"Distribution of normalised map values ({region} pixels)"))

box_column, pr_column = st.columns(2, gap="large")
with box_column:
    variant = ui.radio("BoxAcc", "thresholds.variant", ("MaxBoxAcc (IoU 0.5)", "V2 IoU 0.3", "V2 IoU 0.5", "V2 IoU 0.7"),
                       "MaxBoxAcc (IoU 0.5)", horizontal=True)
    box_curves = {}
    for combo in combos:
        if variant.startswith("MaxBoxAcc"):
            table = curves.get(keys[combo] + "/box_acc")
            row = 1
        else:
            table = curves.get(keys[combo] + "/box_acc_v2")
            row = {"0.3": 0, "0.5": 1, "0.7": 2}[variant[-3:]]
        if table is not None:
            box_curves[labels[combo]] = table[row]
    if box_curves:
        st.plotly_chart(views.box_acc_figure(curves["thresholds"], box_curves, {k: 0 for k in box_curves},
                                             title=f"BoxAcc against τ ({variant.replace('MaxBoxAcc ', '')}); × best τ"))
    else:
        st.caption("This dataset has no boxes, so there is no BoxAcc curve.")
with pr_column:
    pr = {}
    for combo in combos:
        precision = curves.get(keys[combo] + "/precision")
        if precision is not None:
            pr[labels[combo]] = (precision, curves[keys[combo] + "/recall"], run.row(*combo).get("pxap", np.nan))
    if pr:
        st.plotly_chart(views.precision_recall_figure(pr, title="Pixel precision against recall"))
    else:
        st.caption("This dataset has no pixel masks, so there is no precision-recall curve.")
