"""The Receptive Field page in a real Chromium: the stored card's numbers show at once; a small
live estimate fits and draws; the log scale redraws; "Use σ" reaches the Compare page; and a Stop
click during a long estimate (Streamlit interrupts the running script with a rerun) keeps the
images averaged so far, which Continue carries on from.

Screenshots of every step land in test-artifacts/screenshots/rf-*.png.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_browser import open_page_from_nav, server_sigma, settle, slider_value

pytestmark = pytest.mark.browser

PROGRESS = '[data-testid="stProgress"]'


def shoot(page: Page, directory: Path, name: str) -> None:
    """The whole page: Streamlit scrolls inside its main section, so the viewport is stretched to
    the content's height for the shot (a full_page screenshot would stop at the viewport)."""
    size = page.viewport_size
    height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], min(int(height) + 40, 6000))})
    page.wait_for_timeout(400)
    page.screenshot(path=str(directory / f"{name}.png"))
    page.set_viewport_size(size)


def metric_value(page: Page, label: str, index: int = 0) -> str:
    metric = page.locator('[data-testid="stMetric"]', has_text=label).nth(index)
    return metric.locator('[data-testid="stMetricValue"]').inner_text().strip()


def set_images(page: Page, target: int) -> None:
    """Move the "Number of images" slider (4 to 256) to `target` with the keyboard, one key and
    one rerun at a time (keys pressed during a rerun can be lost)."""
    slider = page.locator('input[type="range"][aria-label="Number of images"]')
    for _ in range(12):
        value = int(slider_value(page, "Number of images"))
        if value == target:
            return
        slider.focus()
        page.keyboard.press("End" if target == 256 else "Home" if target == 4 or value > target else "ArrowRight")
        expect(page.locator('[data-testid="stSlider"]', has_text="Number of images")
               .locator('[data-testid="stSliderThumbValue"]')).not_to_have_text(str(value))
        settle(page, 'h1:has-text("Effective receptive field")')
    raise AssertionError(f"the slider did not reach {target}")


def images_done(page: Page) -> int:
    text = page.locator(PROGRESS).inner_text()
    match = re.search(r"(\d+) / (\d+) images", text)
    return int(match.group(1)) if match else 0


def wait_for_images(page: Page, at_least: int, timeout_s: float = 90.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if page.locator(PROGRESS).count() and (done := images_done(page)) >= at_least:
            return done
        page.wait_for_timeout(100)
    raise AssertionError(f"the estimate did not reach {at_least} images in {timeout_s:.0f} s")


def interrupted_count(page: Page) -> int:
    alert = page.locator('[data-testid="stAlert"]', has_text="Interrupted after")
    expect(alert).to_be_visible()
    return int(re.search(r"Interrupted after (\d+) of 256 images", alert.inner_text()).group(1))


def test_card_live_estimate_log_scale_use_sigma_and_stop_continue(page: Page, app_url: str,
                                                                  screenshot_dir: Path) -> None:
    page.goto(app_url)
    settle(page, '[data-testid="stDataFrame"]')
    open_page_from_nav(page, "Receptive Field", "Effective receptive field")

    stored_card(page, screenshot_dir)
    live_estimate(page, screenshot_dir)
    side_by_side(page, screenshot_dir)
    log_scale(page, screenshot_dir)
    use_sigma_on_compare(page, screenshot_dir)
    stop_and_continue(page, screenshot_dir)


def stored_card(page: Page, screenshot_dir: Path) -> None:
    """The stored card of EfficientNet-Lite0's head, shown at once."""
    expect(page.locator('[data-testid="stMetric"]', has_text="R²").first).to_contain_text("0.542")
    assert metric_value(page, "σx (px)") == "108.07"
    expect(page.locator('[data-testid="stAlert"]', has_text="Not one Gaussian").first).to_be_visible()
    expect(page.locator('[data-testid="stImage"] img').first).to_be_visible()
    shoot(page, screenshot_dir, "rf-01-card")


def live_estimate(page: Page, screenshot_dir: Path) -> None:
    """A small live estimate: 8 noise images."""
    set_images(page, 8)
    page.get_by_role("button", name="Estimate").click()
    settle(page, 'button:has-text("on the other pages"):has-text("Use σ =")')
    expect(page.get_by_text("Done: 8 noise images, mode abs, seed 0")).to_be_visible()
    live_r2 = float(metric_value(page, "R²", 1))
    assert 0.1 < live_r2 <= 1
    expect(page.locator('.js-plotly-plot')).to_have_count(7)  # six of the estimate, the side-by-side outlines
    shoot(page, screenshot_dir, "rf-02-live-estimate")


def side_by_side(page: Page, screenshot_dir: Path) -> None:
    """This estimate next to the stored cards, with their sigmas and R²."""
    chooser = page.locator('[data-testid="stMultiSelect"]', has_text="ERFs to compare")
    chooser.locator("input").click()
    page.keyboard.type("this session")  # the options are filtered as one types
    page.locator('[role="option"]', has_text="this session").first.click()
    page.keyboard.press("Escape")
    settle(page, '.js-plotly-plot')
    table = page.locator('[data-testid="stDataFrame"]').last
    expect(table).to_contain_text("this session")
    expect(page.locator('.js-plotly-plot', has_text="Fitted ERFs")).to_have_count(1)
    expect(page.locator('.js-plotly-plot', has_text="measured ERF")).to_have_count(1)
    page.locator('.js-plotly-plot', has_text="Fitted ERFs").scroll_into_view_if_needed()
    shoot(page, screenshot_dir, "rf-02b-side-by-side")


def log_scale(page: Page, screenshot_dir: Path) -> None:
    """The log colour scale."""
    page.locator("label", has_text="Log colour scale").click()
    settle(page, '.js-plotly-plot')
    expect(page.locator('.js-plotly-plot').first).to_contain_text("log10 |ERF|")
    shoot(page, screenshot_dir, "rf-03-log-scale")


def use_sigma_on_compare(page: Page, screenshot_dir: Path) -> None:
    """The fitted sigma used on the other pages."""
    use = page.get_by_role("button", name=re.compile(r"Use σ = \("))
    sigma_x, sigma_y = re.search(r"Use σ = \(([\d.]+), ([\d.]+)\)", use.inner_text()).groups()
    use.click()
    expect(page.get_by_text(f"The other pages' Gaussian σ now: manual ({sigma_x}, {sigma_y}) px.")).to_be_visible()
    settle(page, '.js-plotly-plot')
    open_page_from_nav(page, "Compare", "Compare CAM methods")
    server_sigma(page)
    expect(page.locator('input[aria-label="Gaussian σ preset"]')).to_have_value("manual")
    assert float(slider_value(page, "σx (pixels)")) == float(sigma_x)
    expect(page.locator('[data-testid="stImageCaption"]', has_text="gaussian").first).to_contain_text(
        f"gaussian σ=({sigma_x}, {sigma_y})")
    shoot(page, screenshot_dir, "rf-04-compare-uses-the-fitted-sigma")


def stop_and_continue(page: Page, screenshot_dir: Path) -> None:
    """A long estimate, stopped, continued, stopped again: nothing averaged is lost."""
    open_page_from_nav(page, "Receptive Field", "Effective receptive field")
    expect(page.get_by_text("Done: 8 noise images, mode abs, seed 0")).to_be_visible()  # kept
    set_images(page, 256)
    page.get_by_role("button", name="Estimate").click()
    wait_for_images(page, 16)
    shoot(page, screenshot_dir, "rf-05-running")
    page.get_by_role("button", name="Stop").click()
    settle(page, 'text=Interrupted after')
    first_stop = interrupted_count(page)
    assert 16 <= first_stop < 256
    # The map, its fit and the count agree: no batch of the stopped run slipped in afterwards.
    expect(page.locator('.js-plotly-plot').first).to_contain_text(f"{first_stop} images, interrupted")
    expect(page.get_by_role("button", name=re.compile(r"Use σ = \("))).to_be_visible()  # the partial map is fitted
    shoot(page, screenshot_dir, "rf-06-stopped")

    page.get_by_role("button", name="Continue to 256 images").click()
    expect(page.get_by_text(f"continuing from {first_stop} images")).to_be_visible()
    wait_for_images(page, first_stop + 8)
    page.get_by_role("button", name="Stop").click()
    settle(page, 'text=Interrupted after')
    second_stop = interrupted_count(page)
    assert first_stop < second_stop < 256
    expect(page.locator('.js-plotly-plot').first).to_contain_text(f"{second_stop} images, interrupted")
    shoot(page, screenshot_dir, "rf-07-continued-and-stopped-again")
    print(f"stopped at {first_stop}, continued, stopped again at {second_stop} of 256 images")
