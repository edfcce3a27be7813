"""A ViT, a segmentation model and a detector in Chromium at a projector's 1280x720: the target
picker follows each card's task and Compare draws the maps; screenshots for a person to look at."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page

from tests.browser.test_browser import open_page_from_nav, settle, shoot
from tests.cards import detection_card, segmentation_card, vit_card

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def cards(server_models_dir: Path) -> dict[str, Path]:
    return {"vit-tiny": vit_card(server_models_dir), "deeplab-mbv3": segmentation_card(server_models_dir),
            "frcnn-mbv3-320": detection_card(server_models_dir)}




def choose_backbone(page: Page, name: str) -> None:
    field = page.locator('input[aria-label="Backbone"]')
    field.click()
    field.fill(name)  # the list is long and drawn lazily: typing filters it to the card
    page.locator('[role="option"]', has_text=f"your model: {name}").first.click()
    settle(page, 'iframe[title*="live_gaussian"]')


@pytest.mark.parametrize("name, picker", [("vit-tiny", "Target class"), ("deeplab-mbv3", "Region"),
                                          ("frcnn-mbv3-320", "Detected box")])
def test_each_task_draws_its_maps(projector: Page, app_url: str, cards, screenshot_dir: Path, name: str,
                                  picker: str) -> None:
    projector.goto(app_url)
    settle(projector, '[data-testid="stImage"]')
    open_page_from_nav(projector, "Compare", "Compare CAM methods")
    settle(projector, 'iframe[title*="live_gaussian"]')
    choose_backbone(projector, name)
    sidebar = projector.locator('[data-testid="stSidebar"]')
    assert sidebar.get_by_text(picker, exact=True).count() >= 1
    frame = next(f for f in projector.frames if "live_gaussian" in f.url)  # the overlay grid, drawn in the browser
    frame.wait_for_function("window.liveGaussian && window.liveGaussian.painted > 0 && window.liveGaussian.tiles.length >= 2")
    assert frame.locator("img").count() >= 2  # the bilinear tiles beside the live Gaussian canvases
    assert projector.locator('[data-testid="stException"]').count() == 0
    assert projector.locator('[data-testid="stAlert"]', has_text="went wrong").count() == 0
    shoot(projector, screenshot_dir, f"targets-{name}-1280x720")
    projector.set_viewport_size({"width": 1280, "height": 1600})
    shoot(projector, screenshot_dir, f"targets-{name}-tall")
