"""AppTest checks of the Receptive Field page: the stored card shows without computing, a live
estimate fits and draws, its sigma reaches the Compare page, a stopped estimate continues where it
stopped (and ends exactly where an uninterrupted one would), and user errors (a missing folder,
unreadable files, a failed fit) are plain messages with the rest of the page intact.

Live estimates use 4-8 noise images on EfficientNet-Lite0's `blocks.4` (its forward stops there),
so each takes a second or two on a CPU. The real interruption (a Stop click while the loop runs,
which Streamlit turns into a RerunException) can only happen in a browser: see
tests/browser/test_receptive_field_browser.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from explorer import erf, ui
from explorer.erf import ErfFitError
from explorer.ui import erf as ui_erf
from tests.app.conftest import (
    REPO_ROOT,
    open_page,
    run,
    switch,
    texts,
    widget,
)

CHEAP_LAYER = "blocks.4"






def open_rf_page() -> AppTest:
    return open_page("receptive_field")




def metrics(at: AppTest) -> dict[str, str]:
    """label -> value of the metrics after the stored card's (the live fit's, when there is one)."""
    return {m.label: m.value for m in at.metric}


def charts(at: AppTest) -> dict[str, tuple[int, dict]]:
    """key -> (size in bytes, plotly figure JSON) of the page's charts."""
    return {element.key: (len(element.proto.spec), json.loads(element.proto.spec))
            for element in at.get("plotly_chart")}


def estimate(at: AppTest, n: int, seed: int = 0, layer: str = CHEAP_LAYER) -> AppTest:
    at.selectbox(key=widget("layer.efficientnet_lite0")).set_value(layer)
    run(at)
    at.slider(key=widget("erf_n")).set_value(n)
    at.number_input(key=widget("erf_seed")).set_value(seed)
    run(at)
    at.button(key="erf.estimate").click()
    return run(at)


def side_by_side(at: AppTest):
    """The side-by-side table (the expander's table of every card has no "ERF" column)."""
    return next(frame.value for frame in at.dataframe if "ERF" in frame.value.columns)


def test_stored_card_shows_at_once_without_computing(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(ui_erf, "estimate_erf", lambda *a, **k: calls.append(a))
    at = open_rf_page()
    assert at.title[0].value == "Effective receptive field"
    card = json.loads((REPO_ROOT / "checkpoints/erf/efficientnet_lite0__head.json").read_text())
    assert metrics(at)["R²"] == f"{card['r2']:.3f}" == "0.542"
    assert metrics(at)["σx (px)"] == f"{card['sigma_x']:.2f}"
    assert "Not one Gaussian (R² = 0.542 < 0.8)" in texts(at.warning)
    assert "--layer head" in texts(at.code)  # the command that made the card
    assert len(at.image) == 3  # the card's PNG, then side by side: this card and the paper network's
    side = side_by_side(at)
    assert list(side["ERF"]) == ["efficientnet_lite0 / head", "vgg16 / conv5_3"]
    assert side["σx (px)"][0] == round(card["sigma_x"], 2) and side["R²"][0] == round(card["r2"], 3)
    assert any("Fitted ERFs" in str(chart.proto.spec) for chart in at.get("plotly_chart"))
    assert "Press **Estimate**" in texts(at.info)
    assert not at.error
    assert calls == []  # nothing was estimated

    at.button(key="erf.use_card").click()
    run(at)
    assert at.session_state["cam.sigma_preset"].startswith("fitted ERF of this backbone/layer (108.1, 103.9")


def test_live_estimate_fits_draws_and_its_sigma_reaches_compare() -> None:
    at = estimate(open_rf_page(), 8)
    assert not at.error
    live = metrics(at)
    r2, sigma_x, sigma_y = float(live["R²"]), float(live["σx (px)"]), float(live["σy (px)"])
    assert 0.5 < r2 <= 1 and 2 < sigma_x < 20 and 2 < sigma_y < 20
    assert "Done: 8 noise images, mode abs, seed 0" in texts(at.caption)
    figures = charts(at)
    expected = {"erf.map", "erf.surface", "erf.residual", "erf.profile_x", "erf.profile_y", "erf.convergence"}
    assert expected <= set(figures)
    for key in ("erf.map", "erf.surface", "erf.residual"):
        size, spec = figures[key]
        assert size < 120_000, f"{key}: {size} bytes of figure JSON"
        heatmap = spec["data"][0]
        assert heatmap["type"] == "heatmap"
    convergence = figures["erf.convergence"][1]
    assert [int(x) for x in convergence["layout"]["xaxis"]["tickvals"]] == [1, 2, 4, 8]
    assert "formal standard errors" in texts(at.caption)

    compare = at.multiselect(key=widget("erf.compare"))
    fresh = [option for option in compare.options if "(this session, 8 noise images)" in option]
    assert len(fresh) == 1, compare.options
    compare.set_value([fresh[0], *compare.value])
    run(at)
    side = side_by_side(at)
    assert list(side["from"])[:2] == ["this session", "stored card"]
    assert side["σx (px)"][0] == pytest.approx(sigma_x, abs=0.01)
    assert "erf.compare.0." + fresh[0] in charts(at)  # the fresh estimate's own map beside the cards

    at.toggle(key=widget("erf_log")).set_value(True)
    run(at)
    assert charts(at)["erf.map"][1]["data"][0]["colorbar"]["title"]["text"] == "log10 |ERF|"

    at.button(key="erf.use_fit").click()
    run(at)
    expected_x, expected_y = ui.sigma_on_slider(sigma_x), ui.sigma_on_slider(sigma_y)
    assert at.session_state["cam.sigma_preset"] == "manual"
    assert (at.session_state["cam.sigma_x"], at.session_state["cam.sigma_y"]) == (expected_x, expected_y)
    assert f"manual ({expected_x:g}, {expected_y:g}) px" in texts(at.caption)

    switch(at, "compare")
    run(at)
    assert at.selectbox(key=widget("sigma_preset")).value == "manual"
    assert at.slider(key=widget("sigma_x")).value == expected_x
    assert at.slider(key=widget("sigma_y")).value == expected_y
    captions = "\n".join(c for image in at.image for c in image.captions)
    assert f"gaussian σ=({expected_x:g}, {expected_y:g})" in captions


def test_a_stopped_estimate_keeps_its_images_and_continues_to_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    real = ui_erf.estimate_erf
    batches = []

    def stop_after_first_batch(*args, **kwargs):
        part = real(*args, **kwargs)
        batches.append(part.n_images)
        if len(batches) == 1:  # as a Stop click would: the job is stopped, the batch still counts
            for job in ui_erf._erf_jobs().values():
                ui.stop_erf(job.uid)
        return part

    monkeypatch.setattr(ui_erf, "estimate_erf", stop_after_first_batch)
    at = estimate(open_rf_page(), 16, seed=3)
    assert "Interrupted after 8 of 16 images" in texts(at.warning)
    assert "R²" in metrics(at)  # the partial average is fitted and shown
    assert charts(at)["erf.map"][1]["layout"]["title"]["text"].endswith("8 images, interrupted)")

    at.button(key="erf.continue").click()
    run(at)
    assert batches == [8, 8]  # continued with the second batch, not restarted
    assert "Interrupted" not in texts(at.warning)
    assert "Done: 16 noise images, mode abs, seed 3" in texts(at.caption)

    job = next(iter(at.session_state["erf.jobs"].values()))
    backbone = ui.load_cached_backbone("efficientnet_lite0", "pretrained")
    images = erf.noise_batches(16, ui.ERF_BATCH, backbone.input_size, 3)
    whole = real(backbone, CHEAP_LAYER, images, batch_size=ui.ERF_BATCH)
    resumed = job.estimate()
    np.testing.assert_allclose(resumed.map, whole.map, rtol=1e-9, atol=1e-12)
    assert [n for n, _ in resumed.snapshots] == [n for n, _ in whole.snapshots] == [1, 2, 4, 8, 16]
    for (_, a), (_, b) in zip(resumed.snapshots, whole.snapshots):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_folder_source_errors_are_plain_messages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAM_EXPLORER_ROOTS", str(tmp_path))
    at = open_rf_page()
    at.radio(key=widget("erf_source")).set_value("folder")
    run(at)
    assert "Type the path of a folder" in texts(at.error)
    missing = tmp_path / "no-such-folder"
    at.text_input(key=widget("erf_folder")).input(str(missing))
    run(at)
    assert f"'{missing}' is not a folder this server shares" in texts(at.error)
    assert at.button(key="erf.estimate").disabled
    at.text_input(key=widget("erf_folder")).input("/etc")  # real and readable, but not shared
    run(at)
    assert texts(at.error) == f"'/etc' is not a folder this server shares. Put the data in one of its folders " \
                              f"({tmp_path}) or upload a zip of it."

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "notes.jpg").write_bytes(b"not an image")
    at.text_input(key=widget("erf_folder")).input(str(broken))
    run(at)
    assert not at.error
    at.button(key="erf.estimate").click()
    run(at)
    assert "could be read as an image" in texts(at.error)
    assert "notes.jpg" in texts(at.error)


def test_a_failed_fit_is_an_error_and_the_map_stays(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_fit(*args, **kwargs):
        raise ErfFitError("The 2D Gaussian fit did not converge: simulated.")

    monkeypatch.setattr(ui_erf, "fit_erf", failing_fit)
    at = estimate(open_rf_page(), 4, seed=11)  # a seed no other test fits (fits are cached)
    assert "The 2D Gaussian fit did not converge: simulated." in texts(at.error)
    figures = charts(at)
    assert "erf.map" in figures and "erf.surface" not in figures
    assert "R²" not in {m.label for m in at.metric[3:]}  # only the stored card's metrics, none live
