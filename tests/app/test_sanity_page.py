"""AppTest: the Sanity Checks page, and a landing page that links every page."""

from __future__ import annotations

from pathlib import Path

from explorer.ui import PAGE_GUIDE
from tests.app.conftest import all_text, open_page, run, widget

ROOT = Path(__file__).resolve().parents[2]


def test_home_links_every_page_with_a_line_on_what_it_is_for() -> None:
    pages = {p.name for p in (ROOT / "app_pages").glob("*.py")} - {"home.py"}
    assert {Path(path).name for path, *_ in PAGE_GUIDE} == pages
    at = open_page("home")
    links = at.get("page_link")
    assert len(links) == len(pages)
    assert all(what in all_text(at) for *_, what in PAGE_GUIDE)


def test_sanity_page_randomises_block_by_block_and_says_what_survives() -> None:
    at = open_page("sanity_checks")
    assert not at.exception and not at.error
    assert "press **Run the cascade**" in all_text(at) and not at.get("plotly_chart")  # nothing heavy on opening
    at.button(key=widget("sanity.go")).click()
    run(at)
    text = all_text(at)
    assert "Adebayo" in text
    assert "Random-CAM (bilinear)" in text and "Grad-CAM (gaussian)" in text
    assert "re-initialised in turn" in text
    assert "the upsampler, not the method, shapes the map" in text  # sigma ~108 px: Random-CAM survives too
    assert len(at.get("plotly_chart")) == 2
    assert len(at.image) == 3 * 2 * 7  # methods x upsamplers x shown steps
    at.multiselect(key=widget("sanity.methods")).set_value(["eigencam"])
    run(at)
    assert not at.error and not at.image  # other settings: asked again
    at.button(key=widget("sanity.go")).click()
    run(at)
    assert len(at.image) == 2 * 7
