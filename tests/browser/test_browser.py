"""The app in a real Chromium: the landing page classifies, the Compare page's sigma slider reruns
only its fragment and redraws the grid, and sidebar and sigma choices survive page switches.

Screenshots of every step land in test-artifacts/screenshots/ for a person to look at.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

READY = '[data-testid="stApp"][data-test-script-state="notRunning"]'
SIGMA_PRESS_COUNT = 6


def settle(page: Page, marker: str) -> None:
    """Wait until `marker` is on the page and no script (or fragment) run is in progress.

    The marker comes first: before the first run starts the app also reads "notRunning".
    """
    page.wait_for_selector(marker)
    page.wait_for_selector(READY, state="attached")
    page.wait_for_timeout(300)  # let the last deltas paint
    page.wait_for_selector(READY, state="attached")


def shoot(page: Page, directory: Path, name: str) -> None:
    page.screenshot(path=str(directory / f"{name}.png"))


def open_page_from_nav(page: Page, label: str, title: str) -> None:
    page.locator('[data-testid="stSidebarNavLink"]', has_text=label).click()
    settle(page, f'h1:has-text("{title}")')


def server_sigma(page: Page) -> None:
    """On Compare: switch the live (in-browser) Gaussian tiles off, so the server draws every tile
    and its σ sliders show (tests/browser/test_live_browser.py covers the live tiles)."""
    page.wait_for_selector('[data-testid="stCheckbox"]:has-text("Live σ")')
    toggle = page.locator('[data-testid="stCheckbox"]', has_text="Live σ").locator("input")
    if toggle.is_checked():
        page.locator('[data-testid="stCheckbox"]', has_text="Live σ").locator("label").click()
    page.wait_for_selector('[data-testid="stImage"] img')
    settle(page, '[data-testid="stImage"] img')


def choose(page: Page, label: str, option: str) -> None:
    """Pick `option` in the selectbox labelled `label` and wait for the rerun."""
    page.locator(f'input[aria-label="{label}"]').click()
    page.locator('[role="option"]', has_text=option).first.click()
    expect(page.locator(f'input[aria-label="{label}"]')).to_have_value(option)
    settle(page, '[data-testid="stImage"]')


def slider_value(page: Page, label: str) -> str:
    slider = page.locator('[data-testid="stSlider"]', has_text=label)
    return slider.locator('[data-testid="stSliderThumbValue"]').inner_text().strip()


def image_sources(page: Page) -> list[str]:
    return page.locator('[data-testid="stImage"] img').evaluate_all("images => images.map(i => i.src)")


def gaussian_captions(page: Page) -> list[str]:
    captions = page.locator('[data-testid="stImageCaption"]').all_inner_texts()
    return [caption for caption in captions if caption.startswith("gaussian")]


def test_sigma_moves_redraw_the_grid_and_choices_survive_page_switches(page: Page, app_url: str,
                                                                       screenshot_dir: Path) -> None:
    page.goto(app_url)
    settle(page, '[data-testid="stDataFrame"]')
    expect(page.locator('[data-testid="stDataFrame"]')).to_contain_text("Egyptian cat")
    shoot(page, screenshot_dir, "01-landing")

    open_page_from_nav(page, "Compare", "Compare CAM methods")
    server_sigma(page)
    shoot(page, screenshot_dir, "02-compare")

    choose(page, "Target layer", "blocks.15 (320×7×7)")
    choose(page, "Gaussian σ preset", "manual")
    before_sigma = slider_value(page, "σx (pixels)")
    before_images = image_sources(page)
    before_captions = gaussian_captions(page)

    slider = page.locator('input[type="range"][aria-label="σx (pixels)"]')
    first_gaussian_caption = page.locator('[data-testid="stImageCaption"]', has_text="gaussian").first
    started = time.monotonic()
    slider.focus()
    page.keyboard.press("ArrowRight")
    expect(first_gaussian_caption).not_to_have_text(before_captions[0])
    one_step_seconds = time.monotonic() - started
    one_step_caption = first_gaussian_caption.inner_text()
    for _ in range(SIGMA_PRESS_COUNT - 1):
        page.keyboard.press("ArrowRight")
    expect(first_gaussian_caption).not_to_have_text(one_step_caption)
    settle(page, '[data-testid="stImage"] img')
    after_sigma = slider_value(page, "σx (pixels)")
    assert float(after_sigma) > float(before_sigma)
    assert gaussian_captions(page) != before_captions
    assert f"({float(after_sigma):.4g}, {float(after_sigma):.4g})" in gaussian_captions(page)[0]  # linked
    assert set(image_sources(page)) != set(before_images), "the grid was not re-rendered"
    print(f"sigma {before_sigma} -> {after_sigma}; one step redrew the grid in {one_step_seconds:.2f} s")

    with page.expect_download() as download:
        page.get_by_role("button", name="Download the grid (PNG)").click()
    assert Path(download.value.path()).read_bytes().startswith(b"\x89PNG")
    shoot(page, screenshot_dir, "03-compare-sigma-moved")

    open_page_from_nav(page, "Smoothing Lab", "Smoothing Lab")
    page.wait_for_selector('[data-testid="stMetric"]')
    assert slider_value(page, "σx (pixels)") == after_sigma
    expect(page.locator('[data-testid="stMarkdownContainer"]', has_text="layer blocks.15").first).to_be_visible()
    shoot(page, screenshot_dir, "04-smoothing-lab")

    open_page_from_nav(page, "Compare", "Compare CAM methods")
    page.wait_for_selector('[data-testid="stImage"] img')
    assert slider_value(page, "σx (pixels)") == after_sigma
    expect(page.locator('input[aria-label="Gaussian σ preset"]')).to_have_value("manual")
    expect(page.locator('input[aria-label="Target layer"]')).to_have_value("blocks.15 (320×7×7)")
    assert page.locator('[data-testid="stAlert"]').count() == 0
    shoot(page, screenshot_dir, "05-compare-after-switching-back")

    # The class picker searches all class names as one types.
    target = page.locator('input[aria-label="Target class"]')
    target.click()
    page.keyboard.type("goldfi")
    options = page.locator('[role="option"]')
    expect(options.first).to_contain_text("goldfish")
    texts = options.all_inner_texts()
    assert texts and all("goldfi" in t.lower() for t in texts), texts
    shoot(page, screenshot_dir, "06-class-picker-search")
    options.first.click()
    settle(page, '[data-testid="stImage"] img')
    expect(page.locator('[data-testid="stMarkdownContainer"]', has_text="target goldfish").first).to_be_visible()
    page.locator('[data-testid="stPlotlyChart"]', has_text="side by side").first.scroll_into_view_if_needed()
    shoot(page, screenshot_dir, "07-compare-histograms-side-by-side")

    # The layer strip with LayerCAM, and LayerCAM fused over the deepest three layers.
    page.locator("label", has_text="Show the layer strip").click()
    settle(page, '[data-testid="stImageCaption"]:has-text("head · 1280×7×7")')
    choose(page, "Method over every target layer", "LayerCAM")
    expect(page.locator('[data-testid="stImageCaption"]', has_text="LayerCAM fused over 3 layers")).to_be_visible()
    page.locator('[data-testid="stImageCaption"]', has_text="LayerCAM fused").scroll_into_view_if_needed()
    shoot(page, screenshot_dir, "08-compare-layer-strip-layercam-fused")


def test_smoothing_lab_shows_the_curve_over_the_test_split(page: Page, app_url: str, screenshot_dir: Path) -> None:
    """The VGG-style classifier: the one-image curve, then the shipped curve over the whole test split
    with its interval band, the peak and the paper's 20 px."""
    page.goto(app_url)
    settle(page, '[data-testid="stDataFrame"]')
    page.locator('input[aria-label="Backbone"]').click()
    page.locator('[role="option"]', has_text="synthetic_vgg").first.click()
    settle(page, '[data-testid="stDataFrame"]')
    open_page_from_nav(page, "Smoothing Lab", "Smoothing Lab")
    page.wait_for_selector('h3:has-text("Over the whole test split")')  # the maps above it are the browser's (live σ)
    heading = page.locator("h3", has_text="Over the whole test split")
    expect(heading).to_be_visible()
    expect(page.locator('[data-testid="stMarkdownContainer"]', has_text="the mean correlation peaks at").first).to_be_visible()
    chart = page.locator('[data-testid="stPlotlyChart"]', has_text="Mean correlation against")
    expect(chart).to_contain_text("paper (VGG16)")
    chart.scroll_into_view_if_needed()
    assert page.locator('[data-testid="stAlert"]').filter(has_text="Error").count() == 0
    shoot(page, screenshot_dir, "09-smoothing-lab-test-split")
