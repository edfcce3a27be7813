"""AppTest of the F-CAM Decoder page and of the F-CAM upsampler in Compare, on a decoder this test
trains itself (a randomly initialised synthetic-benchmark CNN on a tiny synthetic dataset), so
nothing depends on shipped files; and the page's own fit, on a folder of images."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from explorer.datasets import make_synthetic
from explorer.fcam_train import FcamConfig, train_fcam
from tests.app.conftest import (
    TIMEOUT_S,
    all_text,
    image_captions,
    open_page,
    run,
    widget,
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fcam-page")
    data = make_synthetic(root / "synthetic", seed=13, sizes={"train": 8, "val": 4, "test": 4})
    runs = root / "runs"
    config = FcamConfig(backbone="synthetic_cnn", weights="random", dataset=f"synthetic:{data}", epochs=1,
                        batch_size=4, decoder_widths=(16, 8, 8), decoder_centre=16)
    train_fcam(config, runs / "fcam" / "synthetic_cnn__cam__tiny.pt", command="python -m explorer test")
    photos = root / "photos"
    photos.mkdir()
    for i, path in enumerate(sorted((data / "images" / "test").rglob("*.jpg"))):
        shutil.copy(path, photos / f"photo{i}.jpg")
    return runs


@pytest.fixture
def env(runs, monkeypatch):
    monkeypatch.setenv("CAM_EXPLORER_RUNS", str(runs))
    monkeypatch.setenv("CAM_EXPLORER_ROOTS", str(runs.parent))  # the folders the app may read
    return runs










def use_random_cnn(at: AppTest) -> AppTest:
    at.selectbox(key=widget("backbone")).set_value("synthetic_cnn")
    run(at)
    at.radio(key=widget("weights")).set_value("random")
    return run(at)


def test_page_says_when_no_decoder_fits_the_backbone(env):
    at = open_page("fcam")
    assert at.title[0].value == "F-CAM Decoder"
    assert "No F-CAM decoder is trained for `efficientnet_lite0`" in all_text(at)


def test_page_shows_cam_seeds_fcam_boxes_and_training(env):
    at = use_random_cnn(open_page("fcam"))
    text = all_text(at)
    assert "No F-CAM decoder" not in text
    assert "synthetic_cnn__cam__tiny.pt" in str(at.selectbox(key=widget("fcam.decoder.synthetic_cnn.stage4")).value)
    shown = image_captions(at)
    assert "C⁺ (green" in shown and "F-CAM: the decoder's foreground probability" in shown
    assert "box at τ" in shown
    assert "Reproduce with `python -m explorer test`" in text
    at.number_input(key=widget("fcam.draw")).set_value(3)
    run(at)
    assert "patches of draw 3" in image_captions(at)
    at.slider(key=widget("fcam.tau_fcam")).set_value(0.9)
    run(at)
    assert "F-CAM · box at τ = 0.90" in image_captions(at)


def test_compare_offers_the_decoder_as_an_upsampler(env):
    at = use_random_cnn(open_page("compare"))
    assert "F-CAM decoder" in at.multiselect(key=widget("upsamplers")).options
    at.multiselect(key=widget("methods")).set_value(["cam", "gradcam"])
    run(at)
    at.multiselect(key=widget("upsamplers")).set_value(["bilinear", "fcam"])
    run(at)
    shown = image_captions(at)
    assert "F-CAM decoder ·" in shown
    assert "no decoder trained from Grad-CAM" in shown
    assert len(at.image) == 4


def test_fit_a_decoder_on_a_folder_from_the_page(env):
    at = use_random_cnn(open_page("fcam"))
    photos = env.parent / "photos"
    at.text_input[0].set_value(f"folder:{photos}")
    next(s for s in at.slider if s.label == "Epochs").set_value(1)
    at.button[-1].click()  # the form's submit button is the last button on the page
    run(at)
    job = at.session_state["fcam.jobs"]["current"]
    job.thread.join(timeout=TIMEOUT_S)
    assert job.status == "done", job.error
    run(at)
    assert "Done:" in all_text(at)
    choices = [str(o) for o in at.selectbox(key=widget("fcam.decoder.synthetic_cnn.stage4")).options]
    assert any("folder" in c for c in choices), choices


def test_fit_form_rejects_a_missing_folder(env):
    at = use_random_cnn(open_page("fcam"))
    at.text_input[0].set_value("folder:/nonexistent/photos")
    at.button[-1].click()
    run(at)
    assert "'/nonexistent/photos' is not a folder this server shares" in all_text(at)
    at.text_input[0].set_value("folder:/etc")  # exists, readable, but not shared: the same words
    at.button[-1].click()
    run(at)
    assert "'/etc' is not a folder this server shares" in all_text(at)
    assert "passwd" not in all_text(at)
