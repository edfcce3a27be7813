"""CAM Explorer's router: `streamlit run app.py` (or `make app`).

It sets the page up, draws the shared sidebar once (image, backbone, weights, layer, target class;
`explorer.ui.selection()` hands its choices to the page) and runs the page chosen in the
navigation. The pages in `app_pages/` are layout only.
"""

import streamlit as st

from explorer import ui

PAGES = [
    st.Page("app_pages/home.py", title="Home", icon=":material/home:", url_path="Home", default=True),
    st.Page("app_pages/compare.py", title="Compare", icon=":material/grid_view:", url_path="Compare"),
    st.Page("app_pages/smoothing_lab.py", title="Smoothing Lab", icon=":material/blur_on:", url_path="Smoothing_Lab"),
    st.Page("app_pages/receptive_field.py", title="Receptive Field", icon=":material/center_focus_strong:",
            url_path="Receptive_Field"),
    st.Page("app_pages/thresholds_and_histograms.py", title="Thresholds and Histograms", icon=":material/ssid_chart:",
            url_path="Thresholds_and_Histograms"),
    st.Page("app_pages/failure_cases.py", title="Failure Cases", icon=":material/report:", url_path="Failure_Cases"),
    st.Page("app_pages/confidence_metrics.py", title="Confidence Metrics", icon=":material/speed:",
            url_path="Confidence_Metrics"),
    st.Page("app_pages/downscale_simulation.py", title="Downscale Simulation", icon=":material/photo_size_select_small:",
            url_path="Downscale_Simulation"),
    st.Page("app_pages/sanity_checks.py", title="Sanity Checks", icon=":material/shuffle:", url_path="Sanity_Checks"),
    st.Page("app_pages/fcam.py", title="F-CAM", icon=":material/auto_fix_high:", url_path="F-CAM"),
]

st.set_page_config(page_title="CAM Explorer", layout="wide")
ui.compact_top()
page = st.navigation(PAGES)
ui.draw_sidebar()
with st.sidebar:
    ui.data_uploader()
try:
    page.run()
finally:
    ui.forget_selection()  # a page run on its own (AppTest) never sees a stale choice
