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


def test_home_teaches_smoothing_in_five_steps_each_asked_then_revealed() -> None:
    from explorer.ui.lesson import STEPS

    at = open_page("home")
    for number, step in enumerate(STEPS, 1):
        assert f"Step {number} of {len(STEPS)}: {step.title}" in all_text(at)
        assert step.question in all_text(at)
        shown = len(at.image) + len(at.get("plotly_chart"))
        at.button(key=widget("lesson.reveal")).click()  # one click reveals
        run(at)
        assert len(at.image) + len(at.get("plotly_chart")) > shown
        if number == 1:
            assert "**7×7 cells**" in all_text(at)  # Lite0's head at 224 px: cells of 32 px
        if number < len(STEPS):
            at.button(key=widget("lesson.next")).click()
            run(at)
    assert "agree best at **σ =" in all_text(at)
    at.button(key=widget("lesson.restart")).click()
    run(at)
    assert f"Step 1 of {len(STEPS)}" in all_text(at)
