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


def test_page_opens_on_a_backbone_with_decoders_and_says_so(env):
    """A first visit with a backbone that has no decoder lands on the backbone of the current
    benchmark whose shipped decoder scored best on validation, on that best decoder, and says so;
    choosing a backbone without a decoder afterwards is respected and explained."""
    import json

    from explorer.fcam.decoder import shipped_decoders
    from explorer.ui.fcam import fallback_decoder_backbone

    at = open_page("fcam")
    assert at.title[0].value == "F-CAM Decoder"
    name, score = fallback_decoder_backbone()
    assert at.session_state["cam.backbone"] == name and not name.startswith("synthetic_v1")
    assert "`efficientnet_lite0` has no F-CAM decoder, so this page opened on" in all_text(at)
    decoder = next(s for s in at.selectbox if s.key and s.key.startswith(widget(f"fcam.decoder.{name}.")))
    scores = {str(p): json.loads(p.with_suffix(".json").read_text())["val"]["max_box_acc"]
              for p in shipped_decoders(name).values()}
    assert scores[str(decoder.value)] == max(scores.values()) == score
    at.selectbox(key=widget("backbone")).set_value("efficientnet_lite0")
    run(at)
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
    assert "No finished evaluation has scored this decoder yet" in text  # the tiny decoder was never scored
    at.number_input(key=widget("fcam.draw")).set_value(3)
    run(at)
    assert "patches of draw 3" in image_captions(at)
    next(s for s in at.slider if s.key.startswith(widget("fcam.tau_fcam."))).set_value(0.9)
    run(at)
    assert "F-CAM · box at τ = 0.90" in image_captions(at)


def test_a_shipped_decoder_shows_its_test_scores_beside_its_seeds_the_centre_and_the_paper():
    """The shipped CAM decoder of synthetic_lite0 was scored by the shipped evaluations: its rows
    are theirs, number for number, with intervals, and the paper's Table 1 row follows."""
    import json

    from explorer.runs import SHIPPED_RUNS_DIR
    from explorer.ui import decoder_test_rows

    rows = decoder_test_rows("checkpoints/fcam/synthetic_lite0__cam.pt")
    summary = json.loads((SHIPPED_RUNS_DIR / "synthetic_lite0_fcam_six" / "summary.json").read_text())
    ours = [r for r in rows if r["evaluation"].startswith("synthetic_lite0_fcam_six ")]
    assert [r["map"] for r in ours] == ["CAM · bilinear", "CAM · gaussian", "CAM · F-CAM decoder",
                                        "control: " + ours[3]["map"][len("control: "):]]
    fcam = next(r for r in summary["rows"] if (r["method"], r["upsampler"]) == ("cam", "fcam"))
    low, high = fcam["max_box_acc_ci"]
    assert ours[2]["MaxBoxAcc"] == f"{fcam['max_box_acc']:.1f} [{low:.1f}, {high:.1f}]"
    assert "centre" in ours[3]["map"].lower()
    paper = [r for r in rows if r["evaluation"].startswith("F-CAM paper")]
    assert [(r["MaxBoxAcc"], r["PxAP"]) for r in paper] == [("61.6", "53.0"), ("87.3", "67.8"), ("59.7", "45.8")]
    assert decoder_test_rows("checkpoints/fcam/no_such_decoder.pt") == []


def test_an_evaluation_made_in_another_checkout_still_finds_its_shipped_decoder():
    """v1's shipped evaluations name their decoder by the absolute path of the checkout that made
    them; in any other checkout the same file is meant."""
    from explorer.runs import REPO_DIR, Run, runs_with_decoder

    def run_naming(path: str) -> Run:
        return Run(Path("e"), {"config": {"decoders": {"cam": path}}}, shipped=True)

    runs = [run_naming("/elsewhere/checkpoints/fcam/synthetic_v1_lite0__cam.pt"),
            run_naming("/elsewhere/runs/fcam/synthetic_v1_lite0__cam.pt"),
            run_naming("checkpoints/fcam/synthetic_v1_lite0__cam.pt"),
            run_naming(str(REPO_DIR / "checkpoints" / "fcam" / "synthetic_v1_lite0__cam.pt"))]
    found = runs_with_decoder("checkpoints/fcam/synthetic_v1_lite0__cam.pt", runs)
    assert [runs.index(run) for run, _ in found] == [0, 2, 3]
    assert runs_with_decoder(str(REPO_DIR / "runs" / "fcam" / "synthetic_v1_lite0__cam.pt"), runs) == []


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
