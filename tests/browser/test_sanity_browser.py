"""The Sanity Checks page and the new methods in a real Chromium: the randomisation strips and
curves drawn, a method added and the page redrawn, and Compare showing the methods issue 13 added.
Screenshots land in test-artifacts/screenshots/sanity-*.png."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_browser import server_sigma

from .test_receptive_field_browser import open_page_from_nav, settle, shoot

pytestmark = pytest.mark.browser


def add_option(page: Page, label: str, option: str, marker: str) -> None:
    box = page.locator('[data-testid="stMultiSelect"]', has_text=label).locator("input")
    box.click()
    box.press_sequentially(option[:6])  # the list is long and virtualised: filter it first
    page.locator('[role="option"]', has_text=option).first.click()
    page.keyboard.press("Escape")
    settle(page, marker)


def test_sanity_page_and_new_methods(page: Page, app_url: str, screenshot_dir: Path) -> None:
    page.goto(app_url)
    settle(page, '[data-testid="stDataFrame"]')
    expect(page.locator('[data-testid="stPageLink"]')).to_have_count(9)

    open_page_from_nav(page, "Sanity Checks", "Sanity Checks")
    expect(page.locator(".js-plotly-plot")).to_have_count(0)  # nothing heavy runs on opening
    page.get_by_role("button", name="Run the cascade").click()
    page.wait_for_selector(".js-plotly-plot")
    settle(page, '[data-testid="stImage"] img')
    expect(page.locator(".js-plotly-plot")).to_have_count(2)
    expect(page.locator(".js-plotly-plot").first).to_contain_text("Spearman")
    expect(page.locator('[data-testid="stImage"] img')).to_have_count(3 * 2 * 7)
    expect(page.locator('[data-testid="stAlert"]', has_text="Random-CAM (bilinear)")).to_have_count(1)
    expect(page.locator('[data-testid="stAlert"]', has_text="the upsampler, not the method")).to_have_count(1)
    shoot(page, screenshot_dir, "sanity-01-page")

    add_option(page, "Methods", "Eigen-CAM", 'button:has-text("Run the cascade")')
    page.get_by_role("button", name="Run the cascade").click()
    settle(page, '[data-testid="stImage"] img')
    expect(page.locator('[data-testid="stImage"] img')).to_have_count(4 * 2 * 7)
    page.locator('[data-testid="stImage"]').last.scroll_into_view_if_needed()
    shoot(page, screenshot_dir, "sanity-02-eigencam-added")

    open_page_from_nav(page, "Compare", "Compare CAM methods")
    server_sigma(page)  # the server draws every tile (live σ off): these captions are the server's
    for label in ("Eigen-CAM", "Shapley-CAM", "FEM"):
        add_option(page, "Methods", label, '[data-testid="stImage"] img')
    expect(page.locator('[data-testid="stMarkdownContainer"]', has_text="Shapley-CAM").first).to_be_visible()
    page.locator('[data-testid="stImage"]').last.scroll_into_view_if_needed()
    shoot(page, screenshot_dir, "sanity-03-compare-new-methods")


def test_a_slow_method_runs_in_the_background_with_progress_and_stop(page: Page, app_url: str,
                                                                     screenshot_dir: Path) -> None:
    page.goto(app_url)
    settle(page, '[data-testid="stDataFrame"]')
    open_page_from_nav(page, "Compare", "Compare CAM methods")
    server_sigma(page)  # the server draws every tile (live σ off): these captions are the server's
    # Score-CAM at Lite0's head: about 530 masked forwards, half a minute here, so Stop surely lands
    # while it runs (Ablation-CAM's tail-only passes can finish before the click on an idle machine).
    add_option(page, "Methods", "Score-CAM", '[data-testid="stImage"] img')
    page.get_by_role("button", name="Compute Score-CAM").click()
    bar = page.locator('[data-testid="stProgress"]')
    expect(bar).to_contain_text("forward passes", timeout=60_000)
    expect(bar).to_contain_text("left", timeout=60_000)
    # The page stays live: the cheap methods' maps are drawn while Score-CAM runs.
    assert page.locator('[data-testid="stImage"] img').count() >= 4 * 2
    shoot(page, screenshot_dir, "slow-01-progress")
    page.get_by_role("button", name="Stop Score-CAM").click()
    expect(page.locator('[data-testid="stAlert"]', has_text="Stopped after")).to_be_visible(timeout=60_000)
    expect(page.get_by_role("button", name="Compute Score-CAM again")).to_be_visible()
    shoot(page, screenshot_dir, "slow-02-stopped")
