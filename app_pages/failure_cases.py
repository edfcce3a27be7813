"""Failure Cases: the images an evaluation scored worst (or best), drawn at its chosen threshold."""

import streamlit as st

from explorer import ui

state = ui.selection()

st.title("Failure Cases")
st.markdown(
    "Each image of an evaluation, sorted by how well its map localised the object at the threshold the "
    "protocol chose for the whole dataset. With boxes: the ground truth is **green**, the box drawn "
    "around the map's largest region is **red**. With masks: **green** true positives, **red** false "
    "positives, **blue** false negatives, grey ignored pixels. Open any image in Compare to try other "
    "methods and upsamplers on it."
)
run = ui.choose_run("failure.run")
if run is None:
    st.stop()
combo = ui.choose_combo(run, "failure.combo")
if combo is None:
    st.stop()
records = ui.attempt("reading the records", lambda: ui.run_records(run, *combo))
if not records:
    st.stop()

has_iou = records[0]["iou"] is not None
score_key = "iou" if has_iou else "pxap"
order_column, count_column, show_column = st.columns(3)
with order_column:
    order = ui.radio("Order", "failure.order", ("worst first", "best first"), "worst first", horizontal=True)
with count_column:
    count = ui.slider("Images", "failure.count", 4, 24, 8, step=4)
with show_column:
    show = ui.radio("Draw", "failure.show", ("boxes", "masks"), "boxes" if has_iou else "masks", horizontal=True)
ranked = sorted((r for r in records if r[score_key] is not None), key=lambda r: r[score_key],
                reverse=order == "best first")[:count]
st.caption(f"{len(records)} images; sorted by {'IoU at the MaxBoxAcc threshold' if has_iou else 'per-image PxAP'}; "
           f"threshold τ = {run.row(*combo).get('best_threshold', 0.5):.3f}.")
tiles = ui.attempt("drawing the maps", lambda: ui.failure_tiles(run, *combo, ranked, show))
if not tiles:
    st.stop()
for start in range(0, len(tiles), ui.TILES_PER_LINE):
    for column, tile in zip(st.columns(ui.TILES_PER_LINE), tiles[start:start + ui.TILES_PER_LINE]):
        with column:
            st.image(tile.picture, caption=f"{tile.record['image_id'].rsplit('/', 1)[-1]} · {tile.caption}",
                     output_format="PNG", width="stretch")
            if st.button("Open in Compare", key=f"open.{tile.record['image_id']}") and ui.attempt(
                    "opening the image in Compare", lambda tile=tile: ui.open_in_compare(run, tile, *combo)):
                st.switch_page("app_pages/compare.py")
