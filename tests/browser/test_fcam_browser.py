"""The F-CAM Decoder page in a real Chromium, with the shipped decoder of synthetic_v1_lite0 on an
uploaded image of the synthetic benchmark (version 1, the one it was trained on): CAM, seeds and
F-CAM drawn; the threshold slider and a new seed draw redraw; Compare shows the decoder as an upsampler column.

Screenshots land in test-artifacts/screenshots/fcam-*.png.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from explorer.datasets import make_synthetic
from tests.browser.test_browser import server_sigma

from .test_receptive_field_browser import open_page_from_nav, settle, shoot, slider_value

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def synthetic_image(tmp_path_factory) -> Path:
    data = make_synthetic(tmp_path_factory.mktemp("browser-fcam") / "synthetic", seed=3,
                          sizes={"train": 0, "val": 0, "test": 2}, number=1)
    return sorted((data / "images" / "test").rglob("*.jpg"))[0]


def choose(page: Page, label: str, option: str, marker: str = '[data-testid="stImage"]') -> None:
    page.locator(f'input[aria-label="{label}"]').click()
    page.locator('[role="option"]', has_text=option).first.click()
    settle(page, marker)


def captions(page: Page) -> list[str]:
    return page.locator('[data-testid="stImageCaption"]').all_inner_texts()


def test_fcam_page_and_the_fcam_column_in_compare(page: Page, app_url: str, synthetic_image: Path,
                                                  screenshot_dir: Path) -> None:
    page.goto(app_url)
    settle(page, '[data-testid="stDataFrame"]')
    choose(page, "Backbone", "synthetic_v1_lite0", '[data-testid="stDataFrame"]')
    page.locator("label", has_text="upload").first.click()
    # the image uploader appears only after the rerun this click starts; until then the only
    # uploader on the page is "Your data" (a zip), which would take the file and refuse it
    image_uploader = page.locator('[data-testid="stFileUploader"]').filter(has_text="Your image")
    expect(image_uploader).to_have_count(1, timeout=60_000)
    image_uploader.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(synthetic_image))
    settle(page, '[data-testid="stDataFrame"]')
    expect(page.locator('[data-testid="stSidebar"]')).to_contain_text(synthetic_image.name)
    # the uploader lists the file before the rerun that reads it ends: wait for the page to use it,
    # or the next page opens on the previous image
    expect(page.locator('[data-testid="stMain"]')).to_contain_text(f"Image {synthetic_image.name}", timeout=60_000)

    shoot(page, screenshot_dir, "fcam-00-home-after-upload")
    open_page_from_nav(page, "F-CAM", "F-CAM Decoder")
    page.wait_for_selector('[data-testid="stImage"] img')
    # the upload is still the image on the next page (the uploader itself starts empty there)
    expect(page.locator('[data-testid="stMain"]')).to_contain_text(f"Image {synthetic_image.name}", timeout=60_000)
    expect(page.locator('[data-testid="stImage"] img')).to_have_count(4)
    assert any(c.startswith("C⁺ (green") for c in captions(page))
    expect(page.locator(".js-plotly-plot")).to_have_count(3)  # grid heatmap, value histograms, training curves
    # v1's shipped evaluation scored this decoder: its table (ours beside the paper's) is shown
    expect(page.get_by_text("How it scored on held-out images")).to_be_visible()
    expect(page.get_by_text("No finished evaluation has scored this decoder yet")).to_have_count(0)
    shoot(page, screenshot_dir, "fcam-01-page")

    before = slider_value(page, "τ for the F-CAM")
    slider = page.locator('input[type="range"][aria-label="τ for the F-CAM"]')
    slider.focus()
    for _ in range(5):
        page.keyboard.press("ArrowRight")
        settle(page, '[data-testid="stImage"] img')
    after = slider_value(page, "τ for the F-CAM")
    assert after != before
    assert any(c.startswith(f"F-CAM · box at τ = {float(after):.2f}") for c in captions(page)), captions(page)

    draw = page.locator('input[aria-label="Seed draw"]')
    draw.fill("7")
    draw.press("Enter")
    settle(page, '[data-testid="stImage"] img')
    assert any("patches of draw 7" in c for c in captions(page))
    shoot(page, screenshot_dir, "fcam-02-threshold-and-draw")

    open_page_from_nav(page, "Compare", "Compare CAM methods")
    server_sigma(page)  # the server draws every tile (live σ off): these captions are the server's
    box = page.locator('[data-testid="stMultiSelect"]', has_text="Upsamplers")
    box.locator("input").click()
    page.locator('[role="option"]', has_text="F-CAM decoder").first.click()
    page.keyboard.press("Escape")
    settle(page, '[data-testid="stImage"] img')
    texts = captions(page)
    assert any(t.startswith("F-CAM decoder ·") for t in texts), texts
    assert any("no decoder trained from Grad-CAM" in t for t in texts), texts
    shoot(page, screenshot_dir, "fcam-03-compare-with-fcam")
