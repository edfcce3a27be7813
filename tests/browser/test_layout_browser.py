"""Nothing is clipped, at a projector's 1280x720 and at 1920x1080, on any page: no label or text
cut by its box (an ellipsis or hidden overflow), no table wider than its box (its right-hand
columns behind a scroll bar), no chart title or axis title outside its figure. Each page is
screenshotted at both sizes for a person to look at."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page

from tests.browser.test_browser import settle
from tests.browser.test_live_browser import LIVE, live_frame
from tests.conftest import fresh_page

pytestmark = [pytest.mark.browser, pytest.mark.slow]
OVERFLOW_JS = (Path(__file__).parent / "overflow.js").read_text()
ROUTER = (Path(__file__).resolve().parents[2] / "app.py").read_text()
PAGES = re.findall(r'url_path="([^"]+)"', ROUTER)  # every page the router serves
SIZES = [(1280, 720), (1920, 1080)]


@pytest.mark.parametrize("width, height", SIZES)
def test_no_page_clips_its_text_tables_or_titles(browser, app_url: str, screenshot_dir: Path, width: int,
                                                 height: int) -> None:
    problems = {}
    assert len(PAGES) == ROUTER.count("st.Page(")
    with fresh_page(browser, width, height) as page:
        for path in PAGES:
            page.goto(f"{app_url}/{path}")
            settle(page, "h1")
            page.wait_for_timeout(1500)  # charts and tables draw after the run ends
            settle(page, "h1")
            found = page.evaluate(OVERFLOW_JS)
            if found:
                problems[path] = found
            page.screenshot(path=str(screenshot_dir / f"layout-{path}-{width}x{height}.png"))
    assert not problems, problems


@pytest.mark.parametrize("width, height", SIZES)
def test_the_first_maps_show_without_scrolling(browser, app_url: str, width: int, height: int) -> None:
    """Compare's first overlay tile (drawn in the live component) and the Smoothing Lab's first map
    lie wholly inside the first screen, controls and all."""
    with fresh_page(browser, width, height) as page:
        page.goto(f"{app_url}/Compare")
        tile = first_drawn_bottom(page, "window.liveGaussian.painted > 0", "figure img, figure canvas")
        assert tile <= height, f"Compare's first tile ends at {tile:.0f} px of {height}"
        page.goto(f"{app_url}/Smoothing_Lab")
        lab = first_drawn_bottom(page, "window.liveGaussian.lab && window.liveGaussian.lab.r !== null", "canvas")
        assert lab <= height, f"the Smoothing Lab's first map ends at {lab:.0f} px of {height}"


def first_drawn_bottom(page: Page, ready: str, selector: str) -> float:
    """Where, in the page, the live component's first `selector` element ends once `ready` holds."""
    frame = live_frame(page, ready)
    settle(page, LIVE)
    top = page.locator(LIVE).bounding_box()["y"]
    return top + frame.evaluate(f"document.querySelector('{selector}').getBoundingClientRect().bottom")
