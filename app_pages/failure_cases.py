"""Failure Cases: the images an evaluation scored worst (or best), drawn at its chosen threshold."""

import streamlit as st

from explorer import ui

state = ui.selection()


def _matches(found: tuple[str, bool], kind: str) -> bool:
    """Whether an image's (failure type, wrong class) belongs to the chosen kind."""
    return found[1] if kind == "wrong class" else found[0] == kind

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
types = ui.attempt("sorting the failures by type", lambda: ui.failure_types(run, *combo)) or {}
if types:
    with st.expander("Failure types of every map in this evaluation", expanded=False):
        st.dataframe(ui.failure_counts(run), hide_index=True)
        st.caption("At each map's chosen threshold: **localised** (IoU >= 0.5); **no region above τ** (no box at "
                   "all); **too small** (the box lies inside the object's box: a part was found); **too large** "
                   "(it contains the object's box); **wrong place** (neither). **Wrong class** counts the images "
                   "whose top-1 prediction is not the label, whatever their box.")
    kinds = ["all", *ui.FAILURE_TYPES, "wrong class", "localised"]
    kind = ui.selectbox("Show", "failure.kind", kinds, "all",
                        format_func=lambda k: k if k == "all" else f"{k} ({sum(_matches(t, k) for t in types.values())})")
else:
    kind = "all"
order_column, count_column, show_column = st.columns(3)
with order_column:
    order = ui.radio("Order", "failure.order", ("worst first", "best first"), "worst first", horizontal=True)
with count_column:
    count = ui.slider("Images", "failure.count", 4, 24, 8, step=4)
with show_column:
    show = ui.radio("Draw", "failure.show", ("boxes", "masks"), "boxes" if has_iou else "masks", horizontal=True)
ranked = sorted((r for r in records if r[score_key] is not None
                 and (kind == "all" or _matches(types.get(r["image_id"], ("", False)), kind))),
                key=lambda r: r[score_key], reverse=order == "best first")[:count]
st.caption(f"{len(records)} images; sorted by {'IoU at the MaxBoxAcc threshold' if has_iou else 'per-image PxAP'}; "
           f"threshold τ = {run.row(*combo).get('best_threshold', 0.5):.3f}.")
tiles = ui.attempt("drawing the maps", lambda: ui.failure_tiles(run, *combo, ranked, show))
if not tiles:
    st.stop()
for start in range(0, len(tiles), ui.TILES_PER_LINE):
    for column, tile in zip(st.columns(ui.TILES_PER_LINE), tiles[start:start + ui.TILES_PER_LINE]):
        with column:
            found = types.get(tile.record["image_id"])
            kind_note = f" · {found[0]}{', wrong class' if found[1] else ''}" if found else ""
            st.image(tile.picture, caption=f"{tile.record['image_id'].rsplit('/', 1)[-1]} · {tile.caption}{kind_note}",
                     output_format="PNG", width="stretch")
            if st.button("Open in Compare", key=f"open.{tile.record['image_id']}") and ui.attempt(
                    "opening the image in Compare", lambda tile=tile: ui.open_in_compare(run, tile, *combo)):
                st.switch_page("app_pages/compare.py")
