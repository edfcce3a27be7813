"""The floor of a slider move in Streamlit on this machine: a fragment holding one slider and eight
captions, nothing computed. bench_app_latency.py times it the same way as Compare's sigma move, so
the difference is what Compare itself costs."""

import streamlit as st

st.title("Slider floor")


@st.fragment
def tiles() -> None:
    sigma = st.slider("σx (pixels)", 1.0, 150.0, 30.0, step=0.5)
    for i, column in enumerate(st.columns(8)):
        column.caption(f"gaussian σ {sigma} · tile {i}")


tiles()
