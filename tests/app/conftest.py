"""What every AppTest of the app shares: open a page through the router as a person does (app.py
draws the sidebar, then the page runs), rerun insisting on a clean run, and read what is shown.

AppTest runs the router and reruns the whole script for every interaction (fragments included),
so these tests cover behaviour, not fragment latency: that is measured in tests/browser. Models
come from `st.cache_resource`, shared by every AppTest in this process.
"""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

REPO_ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 300
HOME = "home"


def widget(name: str) -> str:
    """The session-state key of a persistent widget (see explorer.ui.widgets.persistent)."""
    return f"cam.widget.{name}"


def page_path(page: str) -> str:
    """The script of a page as st.navigation knows it: "compare" -> "app_pages/compare.py"."""
    return f"app_pages/{page}.py"


def run(at: AppTest) -> AppTest:
    """Rerun and insist on a clean run: no uncaught exception reached the page."""
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def open_page(page: str = HOME, timeout: float = TIMEOUT_S, live: bool = False) -> AppTest:
    """A fresh session on Home, switched to `page` (a name in app_pages/, e.g. "compare").

    AppTest runs no JavaScript, so Compare's live (in-browser) Gaussian tiles cannot draw here:
    unless `live`, the session starts with them off and the server draws every tile (the path a
    browser without the component takes). tests/browser covers the live tiles."""
    at = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=timeout)
    at.session_state["cam.live_sigma"] = live
    run(at)
    if page != HOME:
        switch(at, page)
    return at


def switch(at: AppTest, page: str) -> AppTest:
    at.switch_page(page_path(page))
    return run(at)


def texts(elements) -> str:
    return "\n".join(str(element.value) for element in elements)


def all_text(at: AppTest) -> str:
    return texts((*at.markdown, *at.caption, *at.info, *at.error, *at.warning, *at.success))


def image_captions(at: AppTest) -> str:
    return "\n".join(caption for image in at.image for caption in image.captions)
