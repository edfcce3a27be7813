"""AppTest of the four metrics pages (Thresholds & Histograms, Failure Cases, Confidence Metrics,
Downscale Simulation) on an evaluation the test runs itself, with a randomly initialised
synthetic-benchmark CNN on a tiny synthetic dataset, so nothing depends on shipped files."""

from __future__ import annotations

from pathlib import Path

import pytest

from explorer.datasets import make_synthetic
from explorer.evaluate import EvalConfig, evaluate
from tests.app.conftest import (
    all_text,
    open_page,
    run,
    widget,
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pages")
    data = make_synthetic(root / "synthetic", seed=11, sizes={"train": 0, "val": 0, "test": 12})
    runs = root / "runs"
    config = EvalConfig(dataset=f"synthetic:{data}", backbone="synthetic_cnn", weights="random",
                        methods=("cam", "gradcam"), upsamplers=("bilinear", "gaussian"), sigma=(24.0, 24.0),
                        batch_size=6, threshold_interval=0.01)
    evaluate(config, runs / "tiny", device="cpu")
    return runs


@pytest.fixture
def env(runs, monkeypatch):
    monkeypatch.setenv("CAM_EXPLORER_RUNS", str(runs))
    monkeypatch.setenv("CAM_EXPLORER_ROOTS", str(runs.parent))  # the folders the app may read
    return runs








def test_thresholds_page_draws_the_curves(env):
    at = open_page("thresholds_and_histograms")
    assert at.title[0].value == "Thresholds & Histograms"
    assert not at.error
    assert len(at.get("plotly_chart")) == 3
    table = at.dataframe[0].value
    assert "MaxBoxAcc" in table.columns and "PxAP" in table.columns
    at.radio(key=widget("thresholds.region")).set_value("foreground")
    at.radio(key=widget("thresholds.variant")).set_value("V2 IoU 0.7")
    run(at)
    at.multiselect(key=widget("thresholds.combos")).set_value(["gradcam@gaussian"])
    run(at)
    assert len(at.dataframe[0].value) == 1


def test_thresholds_page_without_runs_explains_how_to_make_one(tmp_path, monkeypatch):
    monkeypatch.setenv("CAM_EXPLORER_RUNS", str(tmp_path / "empty"))
    monkeypatch.setattr("explorer.runs.SHIPPED_RUNS_DIR", tmp_path / "none")
    at = open_page("thresholds_and_histograms")
    assert "No finished evaluation yet" in all_text(at)


def test_failure_cases_sorts_and_opens_compare(env):
    at = open_page("failure_cases")
    assert not at.error
    assert len(at.image) == 8
    captions = [c for image in at.image for c in image.captions]
    ious = [float(c.split("IoU ")[1].split(" ")[0]) for c in captions]
    assert ious == sorted(ious)
    at.radio(key=widget("failure.order")).set_value("best first")
    at.radio(key=widget("failure.show")).set_value("masks")
    run(at)
    captions = [c for image in at.image for c in image.captions]
    ious = [float(c.split("IoU ")[1].split(" ")[0]) for c in captions]
    assert ious == sorted(ious, reverse=True)
    at.button[0].click()
    at.run()
    assert at.session_state["cam.image_source"] == "upload"
    assert at.session_state["cam.backbone"] == "synthetic_cnn"


def test_confidence_page_computes_table4_on_the_gallery(env):
    at = open_page("confidence_metrics")
    assert not at.error
    shipped = len(at.dataframe)  # on opening: the evaluation's tables only, Table 4 waits for its button
    assert shipped in (1, 2)  # Tables 2-4, and faithfulness where the evaluation measured it
    at.button(key=widget("confidence.table4.go")).click()
    run(at)
    assert len(at.dataframe) == shipped + 1
    table = at.dataframe[0].value
    assert [m.split(" · ")[0] for m in table["map"]] == ["Grad-CAM", "Grad-CAM", "Grad-CAM++", "Grad-CAM++",
                                                         "Extended-CAM", "Extended-CAM"]
    values = [float(cell.split(" [")[0]) for cell in table["Avg Drop % (relative)"]]
    assert all(0 <= v <= 100 for v in values)
    assert all(cell.endswith("]") and ", " in cell for cell in table["Avg Drop % (relative)"])  # with its interval
    assert list(table["n"])[0] == 7
    # 7 photos cannot rank methods: the page says so
    assert any("Only 7 images" in w.value for w in at.warning)
    charts = at.get("plotly_chart")
    assert len(charts) == 2  # the tiny run's bars
    import json

    bars = json.loads(charts[0].proto.spec)["data"]
    assert all(bar["orientation"] == "h" for bar in bars)  # method names on the y axis, never crowded
    assert all(bar["error_x"]["visible"] for bar in bars)  # each bar with its 95 % interval
    at.radio(key=widget("confidence.source")).set_value("folder")
    run(at)
    at.text_input(key=widget("confidence.folder")).set_value("/no/such/folder")
    run(at)
    missing = all_text(at)
    assert "'/no/such/folder' is not a folder this server shares" in missing
    at.text_input(key=widget("confidence.folder")).set_value("/etc")
    run(at)
    assert all_text(at) == missing.replace("/no/such/folder", "/etc")  # a probe learns nothing


def test_downscale_page_draws_the_ceiling(env, runs, tmp_path):
    at = open_page("downscale_simulation")
    assert len(at.dataframe) == 1  # the default simulation shows on opening
    at.text_input(key=widget("downscale.dataset")).set_value(f"synthetic:{runs.parent / 'synthetic'}")
    run(at)
    assert "press the button" in all_text(at)  # other settings wait for their button
    at.button(key=widget("downscale.go")).click()
    run(at)
    assert not at.error
    table = at.dataframe[0].value
    assert list(table["z"]) == [2, 4, 8, 16, 32]
    assert table["PxAP bilinear"].iloc[0] > table["PxAP bilinear"].iloc[-1]
    assert list(table["Gaussian σ (px)"]) == [1.0, 2.0, 4.0, 8.0, 16.0]  # sigma in pixels, as on every page
    at.text_input(key=widget("downscale.dataset")).set_value("folder:/nowhere")
    run(at)
    at.button(key=widget("downscale.go")).click()
    run(at)
    assert "'/nowhere' is not a folder this server shares" in all_text(at)


def test_confidence_table_shows_faithfulness_when_the_evaluation_measured_it() -> None:
    from explorer.ui.runs import confidence_table

    row = {"method": "gradcam", "upsampler": "bilinear", "images": 300, "average_drop": 10.0, "increase": 40.0,
           "average_drop_relative": 12.0, "increase_relative": 30.0, "deletion_auc": 0.123456,
           "deletion_auc_ci": [0.1, 0.15], "confidence_change": -0.2}
    assert confidence_table([row])[0]["Avg Drop % (relative)"] == "12.00 [not stored]"
    line = confidence_table([row], "faithfulness")[0]
    assert line["deletion AUC ↓"] == "0.123 [0.10, 0.15]"
    assert "insertion AUC ↑" not in line  # not measured: no column, never None
    assert line["Δ p_c (masked)"] == "-0.200 [not stored]"
    plain = {k: v for k, v in row.items() if k not in ("deletion_auc", "deletion_auc_ci", "confidence_change")}
    assert confidence_table([plain], "faithfulness") == []  # an evaluation without them: no table at all


@pytest.fixture(scope="module")
def fcam_runs(tmp_path_factory) -> Path:
    """A tiny evaluation that holds every kind of map: interpolations, the F-CAM decoder (one
    trained for an epoch on eight images), the network-free controls and the references."""
    from explorer.fcam_train import FcamConfig, train_fcam

    root = tmp_path_factory.mktemp("fcam-pages")
    data = make_synthetic(root / "synthetic", seed=13, sizes={"train": 8, "val": 4, "test": 6})
    decoder = root / "decoders" / "synthetic_cnn__cam.pt"
    train_fcam(FcamConfig(backbone="synthetic_cnn", dataset=f"synthetic:{data}", weights="random", epochs=1,
                          batch_size=4), decoder, device="cpu")
    config = EvalConfig(dataset=f"synthetic:{data}", backbone="synthetic_cnn", weights="random",
                        methods=("cam",), upsamplers=("bilinear", "gaussian", "fcam"), sigma=(24.0, 24.0),
                        batch_size=6, threshold_interval=0.01, decoders={"cam": str(decoder)})
    evaluate(config, root / "runs" / "with-fcam", device="cpu")
    return root / "runs"


@pytest.mark.parametrize("combo", ["cam@bilinear", "cam@gaussian", "cam@fcam"])
def test_failure_cases_draws_every_kind_of_map_and_opens_it_in_compare(fcam_runs, monkeypatch, combo):
    monkeypatch.setenv("CAM_EXPLORER_RUNS", str(fcam_runs))
    monkeypatch.setenv("CAM_EXPLORER_ROOTS", str(fcam_runs.parent))
    at = open_page("failure_cases")
    at.selectbox(key=widget("failure.run")).set_value(str(fcam_runs / "with-fcam"))
    run(at)
    at.selectbox(key=widget("failure.combo")).set_value(combo)
    run(at)
    assert not at.error, [e.value for e in at.error]
    assert len(at.image) == 6
    at.button[0].click()
    at.run()
    assert combo.split("@")[1] in at.session_state["cam.upsamplers"]
    if combo.endswith("fcam"):
        assert at.session_state["cam.decoder.synthetic_cnn.stage4.cam"].endswith("synthetic_cnn__cam.pt")


def test_failure_cases_counts_and_filters_failure_types(env):
    from explorer.metrics.failures import FAILURE_TYPES

    at = open_page("failure_cases")
    counts = at.dataframe[0].value
    assert {"localised", *FAILURE_TYPES, "wrong class", "images"} <= set(counts.columns)
    per_type = counts[["localised", *FAILURE_TYPES]].sum(axis=1)
    assert (per_type == counts["images"]).all()  # every image has exactly one type
    row = counts.iloc[0]
    kinds = [k for k in FAILURE_TYPES if row[k] > 0]
    assert kinds
    at.selectbox(key=widget("failure.kind")).set_value(kinds[0])
    run(at)
    assert len(at.image) == min(int(row[kinds[0]]), 8)
    assert all(kinds[0] in c for image in at.image for c in image.captions)
