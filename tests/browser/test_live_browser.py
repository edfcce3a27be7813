"""Live smoothing in Chromium at a projector's 1280x720: Compare's Gaussian tiles repaint in the
browser as the sigma slider moves, the browser's maps equal the engine's `upsample(...,
"gaussian")` after the same normalisation (read back from the page, and the canvas's pixels from
the same overlay), and the sigma reaches the server when the slider is released."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import Frame, Page

import explorer as ex
from explorer import views
from tests.browser.test_browser import open_page_from_nav, settle, shoot, slider_value

pytestmark = [pytest.mark.browser, pytest.mark.slow]
PRESSES = 8




LIVE = 'iframe[title*="live_gaussian"]'


def live_frame(page: Page, ready: str = "window.liveGaussian.painted > 0 && window.liveGaussian.base") -> Frame:
    """The live component's frame once `ready` (a JavaScript condition on window.liveGaussian) holds."""
    page.wait_for_selector(LIVE)
    frame = next(f for f in page.frames if "live_gaussian" in f.url)
    frame.wait_for_function(f"window.liveGaussian && {ready}")
    return frame


def engine_maps(methods: list[str], sigma: tuple[float, float]) -> dict[str, np.ndarray]:
    backbone = ex.load_backbone("efficientnet_lite0", device="cpu")
    x = backbone.preprocess([ex.gallery_image("chelsea")])
    grid = ex.grid_maps(backbone, x, [285], methods, relu="published")
    return {m: ex.normalise(ex.upsample(grid.maps[m], backbone.input_size, "gaussian", sigma).double(),
                            "minmax")[0].numpy() for m in methods}


def browser_maps(frame: Frame) -> dict[str, np.ndarray]:
    tiles = frame.evaluate("window.liveGaussian.tiles.map(t => [t.name, Array.from(t.values)])")
    return {name: np.asarray(values).reshape(224, 224) for name, values in tiles}


def test_the_gaussian_tiles_repaint_in_the_browser(projector: Page, app_url: str, screenshot_dir: Path) -> None:
    page = projector
    page.goto(app_url)
    settle(page, '[data-testid="stImage"]')
    open_page_from_nav(page, "Compare", "Compare CAM methods")
    frame = live_frame(page)
    shoot(page, screenshot_dir, "live-01-compare-1280x720")
    sigma = tuple(frame.evaluate("window.liveGaussian.sigma"))
    ours = browser_maps(frame)
    expected = engine_maps(list(ours), sigma)
    for method, values in ours.items():
        assert np.abs(values - expected[method]).max() <= 1e-3, method
    # the canvas holds the same overlay the server would draw (one level for float rounding)
    base = np.asarray(ex.load_backbone("efficientnet_lite0", device="cpu").resize(ex.gallery_image("chelsea")))
    pixels = np.asarray(frame.evaluate("""() => { const c = document.querySelector('canvas');
        return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data); }""")).reshape(224, 224, 4)
    first = next(iter(ours))
    drawn = views.overlay(base, ours[first], views.colour_scale(ours[first]), 0.5)
    assert np.abs(pixels[..., :3].astype(int) - drawn.astype(int)).max() <= 1

    slider = frame.locator('input[aria-label="live σx (pixels)"]')
    slider.focus()
    before = frame.evaluate("window.liveGaussian.painted")
    for _ in range(PRESSES):
        page.keyboard.press("ArrowRight")
    frame.wait_for_function(f"window.liveGaussian.painted >= {before + 1}")
    settle(page, 'iframe[title*="live_gaussian"]')
    frame.wait_for_timeout(500)  # the last repaint
    moved = tuple(frame.evaluate("window.liveGaussian.sigma"))
    assert moved[0] > sigma[0] and moved[1] == moved[0]  # linked: y follows x
    assert frame.evaluate("window.liveGaussian.latencies.length") >= 1
    on_step = 1 + round((sigma[0] - 1) / 0.5) * 0.5  # the range input snaps to its 0.5 px steps
    assert moved == (on_step + PRESSES * 0.5,) * 2  # every press kept: no server echo pulled the slider back
    after = browser_maps(frame)
    expected = engine_maps(list(after), moved)
    assert all(np.abs(after[m] - expected[m]).max() <= 1e-3 for m in after)
    shoot(page, screenshot_dir, "live-02-sigma-moved")
    # the released sigma is the page's: the server's own sliders show it once live is off
    page.get_by_text("Live σ", exact=True).click()
    settle(page, '[data-testid="stImage"]')
    assert float(slider_value(page, "σx (pixels)")) == pytest.approx(moved[0])


def test_the_smoothing_lab_repaints_in_the_browser(projector: Page, app_url: str, screenshot_dir: Path) -> None:
    """Its Extended-CAM map, the two maps' Pearson r, the profiles and the curve's marker follow σ in
    the browser; the maps and r equal the engine's (explorer.views.pearson) at every σ read."""
    page = projector
    page.goto(f"{app_url}/Smoothing_Lab")
    frame = live_frame(page, "window.liveGaussian.lab && window.liveGaussian.lab.r !== null")
    backbone = ex.load_backbone("efficientnet_lite0", device="cpu")
    x = backbone.preprocess([ex.gallery_image("chelsea")])
    grid = ex.grid_maps(backbone, x, [285], ["gradcam", "extendedcam"], relu="published")
    implicit = ex.normalise(ex.upsample(grid.maps["gradcam"], 224, "bilinear").double(), "minmax")[0].numpy()

    def check() -> tuple[float, float]:
        sigma, r, explicit, theirs = frame.evaluate("""() => { const l = window.liveGaussian;
            return [l.sigma, l.lab.r, Array.from(l.lab.explicit), Array.from(l.lab.implicit)]; }""")
        expected = ex.normalise(ex.upsample(grid.maps["extendedcam"], 224, "gaussian", tuple(sigma)).double(),
                                "minmax")[0].numpy()
        assert np.abs(np.asarray(explicit).reshape(224, 224) - expected).max() <= 1e-3
        assert np.abs(np.asarray(theirs).reshape(224, 224) - implicit).max() <= 1e-3
        assert r == pytest.approx(views.pearson(expected, implicit), abs=1e-4)
        return sigma[0], r

    sigma, r = check()
    shoot(page, screenshot_dir, "live-03-smoothing-lab-1280x720")
    frame.locator('input[aria-label="live σx (pixels)"]').focus()
    for _ in range(PRESSES):
        page.keyboard.press("ArrowLeft")
    settle(page, 'iframe[title*="live_gaussian"]')
    frame.wait_for_timeout(500)
    moved, moved_r = check()
    assert moved < sigma and moved_r != r
    assert frame.locator("#curve line[stroke='rgb(255, 75, 75)']").count() == 1  # the current σx on the curve
    shoot(page, screenshot_dir, "live-04-smoothing-lab-sigma-moved")
