"""The four metrics pages in a real Chromium, on an evaluation this test runs (a randomly
initialised synthetic-benchmark CNN on a tiny synthetic dataset): curves drawn and redrawn, failure
cases sorted and opened in Compare, Table 4 on the sample photos, the downscale ceiling redrawn as
sigma slides. Screenshots land in test-artifacts/screenshots/metrics-*.png.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from explorer.datasets import make_synthetic
from explorer.evaluate import EvalConfig, evaluate
from tests.browser.test_browser import server_sigma

from .test_receptive_field_browser import open_page_from_nav, settle, shoot, slider_value

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def tiny_run(server_runs_dir: Path, tmp_path_factory) -> Path:
    data = make_synthetic(tmp_path_factory.mktemp("browser-metrics") / "synthetic", seed=21,
                          sizes={"train": 0, "val": 0, "test": 12})
    config = EvalConfig(dataset=f"synthetic:{data}", backbone="synthetic_cnn", weights="random",
                        methods=("cam", "gradcam"), upsamplers=("bilinear", "gaussian"), sigma=(24.0, 24.0),
                        batch_size=6, threshold_interval=0.01)
    evaluate(config, server_runs_dir / "browser-tiny", device="cpu")
    return data


def choose_run(page: Page, marker: str, label: str = "browser-tiny") -> None:
    """Select the test's evaluation (yours are listed first, so it usually already is)."""
    box = page.locator('[data-testid="stSelectbox"]', has_text="Evaluation").first
    if label in box.locator("input").input_value() or label in box.inner_text():
        return
    box.locator("input").click()
    page.locator('[role="option"]', has_text=label).click()
    settle(page, marker)


def test_metrics_pages(page: Page, app_url: str, tiny_run: Path, screenshot_dir: Path) -> None:
    page.goto(app_url)
    settle(page, '[data-testid="stDataFrame"]')

    open_page_from_nav(page, "Thresholds and Histograms", "Thresholds & Histograms")
    choose_run(page, ".js-plotly-plot")
    expect(page.locator(".js-plotly-plot")).to_have_count(3)
    expect(page.locator(".js-plotly-plot").nth(1)).to_contain_text("BoxAcc against τ")
    page.locator("label", has_text="foreground").click()
    settle(page, ".js-plotly-plot")
    expect(page.locator(".js-plotly-plot").first).to_contain_text("foreground pixels")
    shoot(page, screenshot_dir, "metrics-01-thresholds")

    open_page_from_nav(page, "Failure Cases", "Failure Cases")
    choose_run(page, '[data-testid="stImage"] img')
    expect(page.locator('[data-testid="stImage"] img')).to_have_count(8)
    first_worst = page.locator('[data-testid="stImageCaption"]').first.inner_text()
    page.locator("label", has_text="best first").click()
    settle(page, '[data-testid="stImage"] img')
    assert page.locator('[data-testid="stImageCaption"]').first.inner_text() != first_worst
    shoot(page, screenshot_dir, "metrics-02-failure-cases")
    image_name = page.locator('[data-testid="stImageCaption"]').first.inner_text().split(" · ")[0]
    page.get_by_role("button", name="Open in Compare").first.click()
    settle(page, 'h1:has-text("Compare CAM methods")')
    server_sigma(page)  # the server draws every tile (live σ off): these captions are the server's
    shoot(page, screenshot_dir, "metrics-03-opened-in-compare")
    expect(page.locator('[data-testid="stSidebar"]')).to_contain_text(image_name)
    expect(page.locator('[data-testid="stMarkdownContainer"]', has_text="(weights: RANDOM").first).to_contain_text(
        "synthetic_cnn")

    open_page_from_nav(page, "Confidence Metrics", "Confidence Metrics")
    settle(page, '[data-testid="stDataFrame"]')
    expect(page.locator('[data-testid="stDataFrame"]').first).to_be_visible()
    shoot(page, screenshot_dir, "metrics-04-confidence")

    open_page_from_nav(page, "Downscale Simulation", "Downscale Simulation")
    spec = page.locator('input[aria-label="Masks dataset"]')
    spec.fill(f"synthetic:{tiny_run}")
    spec.press("Enter")
    settle(page, '[data-testid="stDataFrame"]')
    page.get_by_role("button", name="Simulate these settings").click()
    settle(page, '[data-testid="stDataFrame"]')
    expect(page.locator(".js-plotly-plot")).to_have_count(1)
    before = slider_value(page, "Gaussian σ per grid cell")
    slider = page.locator('input[type="range"][aria-label="Gaussian σ per grid cell"]')
    slider.focus()
    page.keyboard.press("ArrowRight")
    settle(page, '[data-testid="stDataFrame"]')
    page.get_by_role("button", name="Simulate these settings").click()
    settle(page, '[data-testid="stDataFrame"]')
    assert slider_value(page, "Gaussian σ per grid cell") != before
    expect(page.locator(".js-plotly-plot").first).to_contain_text("Gaussian upsampling (σ = 0.55 z px)")
    shoot(page, screenshot_dir, "metrics-05-downscale")
