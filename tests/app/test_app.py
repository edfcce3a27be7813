"""AppTest checks of every page: they render, every control reruns cleanly, and user errors
(broken uploads, missing weights) become friendly messages while the app keeps working.

AppTest runs the router (app.py draws the sidebar, then the page) and reruns the whole script for
every interaction (fragments included), so these tests cover behaviour, not fragment latency: that
is measured in tests/browser. Models come from `st.cache_resource`, shared by every AppTest here.
"""

from __future__ import annotations

import time

import pytest
from streamlit.testing.v1 import AppTest

from explorer.ui import maps as ui_maps
from tests.app.conftest import (
    all_text,
    image_captions,
    open_page,
    run,
    switch,
    texts,
    widget,
)


def top5_classes(at: AppTest) -> list[str]:
    return list(at.dataframe[0].value["class"])


def test_landing_page_shows_image_and_top5() -> None:
    at = open_page("home")
    assert at.title[0].value == "CAM Explorer"
    assert top5_classes(at)[0] == "Egyptian cat"
    assert len(at.image) == 1
    assert not at.error


def test_compare_page_every_control_reruns_cleanly() -> None:
    at = open_page("compare")
    assert len(at.image) == 4 * 2  # CAM, Grad-CAM, Grad-CAM++, Extended-CAM x bilinear, gaussian

    at.multiselect(key=widget("methods")).set_value(["gradcam", "extendedcam", "layercam"])
    run(at)
    assert len(at.image) == 3 * 2

    at.multiselect(key=widget("upsamplers")).set_value(["bilinear", "gaussian", "nearest"])
    run(at)
    assert len(at.image) == 3 * 3

    at.selectbox(key=widget("sigma_preset")).set_value("manual")
    run(at)
    assert not at.slider(key=widget("sigma_x")).disabled
    at.slider(key=widget("sigma_x")).set_value(40.0)
    run(at)
    assert "gaussian σ=(40, 40)" in image_captions(at)  # linked: y follows x

    at.toggle(key=widget("sigma_linked")).set_value(False)
    run(at)
    at.slider(key=widget("sigma_y")).set_value(12.5)
    run(at)
    assert "gaussian σ=(40, 12.5)" in image_captions(at)

    at.selectbox(key=widget("normaliser")).set_value("none")
    run(at)
    at.selectbox(key=widget("target")).set_value(504)  # coffee mug: a class the cat argues against
    at.selectbox(key=widget("relu")).set_value("none")
    run(at)
    assert "diverging" in image_captions(at)  # signed maps, not min-max normalised: diverging colours
    assert "Extended-CAM" in texts(at.markdown)

    at.selectbox(key=widget("relu")).set_value("after")
    run(at)
    assert "HiResCAM" in texts(at.markdown)

    at.toggle(key=widget("shared_scale")).set_value(True)
    run(at)
    assert len(at.image) == 3 * 3
    assert not at.error
    assert len(at.download_button) == 2


def test_sigma_and_normaliser_changes_never_rerun_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_grid_maps = ui_maps.grid_maps

    def counting_grid_maps(*args, **kwargs):
        calls.append(kwargs.get("relu"))
        return real_grid_maps(*args, **kwargs)

    monkeypatch.setattr(ui_maps, "grid_maps", counting_grid_maps)
    at = open_page("compare")
    at.multiselect(key=widget("methods")).set_value(["xgradcam", "gradcam"])
    at.selectbox(key=widget("relu")).set_value("before")  # a combination no other test computes
    run(at)
    assert len(calls) == 1

    at.selectbox(key=widget("sigma_preset")).set_value("manual")
    run(at)
    for sigma in (5.0, 20.5, 90.0):
        at.slider(key=widget("sigma_x")).set_value(sigma)
        run(at)
    at.selectbox(key=widget("normaliser")).set_value("max")
    at.multiselect(key=widget("upsamplers")).set_value(["gaussian", "bicubic"])
    run(at)
    assert "gaussian σ=(90, 90)" in image_captions(at)
    assert len(calls) == 1


def test_an_unexpected_failure_is_logged_and_shown_briefly(monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    def broken_grid_maps(*args, **kwargs):
        raise RuntimeError("simulated internal failure")

    at = open_page("compare")
    monkeypatch.setattr(ui_maps, "grid_maps", broken_grid_maps)
    at.multiselect(key=widget("methods")).set_value(["gradcampp", "layercam"])
    at.selectbox(key=widget("relu")).set_value("before")  # not cached by any other test
    run(at)
    assert "Something went wrong while computing the maps" in texts(at.error)
    assert "simulated internal failure" not in texts(at.error)
    assert "simulated internal failure" in caplog.text  # the traceback went to the log

    monkeypatch.undo()
    at.selectbox(key=widget("relu")).set_value("published")
    run(at)
    assert not at.error
    assert len(at.image) == 2 * 2


def test_compare_offers_cam_only_at_its_layer_and_gates_slow_methods() -> None:
    at = open_page("compare")
    assert "CAM" in at.multiselect(key=widget("methods")).options  # options are shown by label
    assert "cam" in at.multiselect(key=widget("methods")).value

    at.selectbox(key=widget("layer.efficientnet_lite0")).set_value("blocks.2")
    run(at)
    assert "CAM is not offered here" in texts(at.caption)
    assert "CAM" not in at.multiselect(key=widget("methods")).options

    at.multiselect(key=widget("methods")).set_value(["gradcam", "scorecam"])
    run(at)
    assert "Score-CAM needs up to 24 extra forward passes" in texts(at.warning)
    assert len(at.image) == 2  # Grad-CAM only until Score-CAM is asked for

    at.button(key="compute.scorecam").click()
    run(at)  # it now runs in the background: the page draws Grad-CAM at once, with a progress bar and Stop
    assert len(at.image) == 2
    for _ in range(120):
        if len(at.image) == 2 * 2:
            break
        time.sleep(0.5)
        run(at)
    assert len(at.image) == 2 * 2
    assert "Score-CAM: its own forward" in str(at.dataframe[0].value)
    at.selectbox(key=widget("relu")).set_value("none")  # a cheap setting: the slow map is kept, not recomputed
    run(at)
    assert len(at.image) == 2 * 2 and not at.get("progress")


def test_compare_draws_the_deletion_and_insertion_curves_of_a_chosen_map() -> None:
    at = open_page("compare")
    at.button(key="faithfulness.go").click()
    run(at)
    assert not at.error
    charts = at.get("plotly_chart")
    assert any("deletion (AUC" in str(chart.proto.spec) for chart in charts)


def test_compare_layer_strip_shows_one_method_over_every_layer() -> None:
    at = open_page("compare")
    before = len(at.image)
    at.toggle(key=widget("show_strip")).set_value(True)
    run(at)
    assert not at.error
    captions = image_captions(at)
    assert len(at.image) == before + 7  # EfficientNet-Lite0: stem, blocks.0/2/4/10/15, head
    assert "stem · 32×112×112" in captions and "head · 1280×7×7" in captions


def test_compare_fuses_layercam_over_chosen_layers() -> None:
    at = open_page("compare")
    at.toggle(key=widget("show_strip")).set_value(True)
    at.selectbox(key=widget("strip_method")).set_value("layercam")
    run(at)
    assert not at.error
    assert "LayerCAM fused over 3 layers · 14×14" in image_captions(at)  # blocks.10, blocks.15, head
    at.multiselect(key=widget("fuse_layers")).set_value(["head"])
    run(at)
    assert "Pick at least two layers to fuse." in texts(at.caption)


def test_compare_smoothing_options_and_histograms_side_by_side() -> None:
    at = open_page("compare")
    charts = [str(chart.proto.spec) for chart in at.get("plotly_chart")]
    assert any("the chosen methods side by side" in spec for spec in charts)
    assert not any(tab for tab in at.tabs)  # not one histogram per tab any more
    at.multiselect(key=widget("smoothing")).set_value(["aug", "eigen"])
    run(at)
    assert not at.error
    assert "Grad-CAM, aug-smooth, eigen-smooth" in texts(at.markdown)


def test_smoothing_lab_says_nothing_of_the_kind_where_the_equations_differ() -> None:
    at = open_page("smoothing_lab")
    at.selectbox(key=widget("layer.efficientnet_lite0")).set_value("blocks.15")
    run(at)
    assert "give the same grid map" not in texts(at.info)
    assert not at.error


def test_smoothing_lab_shows_the_shipped_curve_over_the_test_split() -> None:
    """Section 5 over the whole split (checkpoints/evaluations/smoothing) beside the one-image curve,
    for the classifier and layer it was computed on only."""
    import json

    from explorer.smoothing import SHIPPED_CURVES_DIR

    at = open_page("smoothing_lab")
    assert "Over the whole test split" not in texts(at.subheader)  # ImageNet Lite0: no curve shipped
    at.selectbox(key=widget("backbone")).set_value("synthetic_vgg")
    run(at)
    assert not at.error
    assert "Over the whole test split" in texts(at.subheader)
    shipped = json.loads((SHIPPED_CURVES_DIR / "synthetic_vgg__conv5.json").read_text())
    reading = texts(at.markdown)
    assert f"Over {shipped['images']} images" in reading and f"σ = {shipped['best_sigma']:g} px" in reading
    assert "about 20 px for VGG16" in reading
    charts = [str(chart.proto.spec) for chart in at.get("plotly_chart")]
    assert any(f"over {shipped['images']} images" in spec for spec in charts)


def test_compare_runs_every_method_the_peers_have() -> None:
    """The methods of issue 13 in the app: the one-pass ones at once, Ablation-CAM behind its button."""
    at = open_page("compare")
    cheap = ["eigencam", "eigengradcam", "kpcacam", "fem", "randomcam", "shapleycam", "finercam", "guidedbackprop",
             "guidedgradcam", "fullgrad"]
    at.multiselect(key=widget("methods")).set_value(cheap + ["ablationcam"])
    run(at)
    assert not at.error
    assert len(at.image) == len(cheap) * 2
    assert "Ablation-CAM needs 1280 extra forward passes of the layers after the target" in texts(at.warning)
    for label in ("Eigen-CAM", "KPCA-CAM", "FEM", "Random-CAM", "Shapley-CAM", "Finer-CAM", "Guided Grad-CAM", "FullGrad"):
        assert label in texts(at.markdown), label


def test_smoothing_lab_follows_sigma() -> None:
    at = open_page("smoothing_lab")
    # Lite0's head: GAP + linear, the equations coincide (said in words and as a formula)
    assert "give the same grid map" in texts(at.markdown) and len(at.get("latex")) == 1
    correlation = at.metric[0].value
    assert at.metric[0].label.startswith("Pearson correlation")
    assert len(at.image) == 2

    at.slider(key=widget("sigma_x")).set_value(4.0)
    run(at)
    assert at.metric[0].value != correlation
    assert "Gaussian σ=(4, 4)" in image_captions(at)

    at.slider(key=widget("profile_row")).set_value(30)
    run(at)
    best = at.metric[1].value.removesuffix(" px")
    at.button[0].click()
    run(at)
    assert at.slider(key=widget("sigma_x")).value == pytest.approx(float(best))


def test_broken_upload_is_reported_and_the_previous_image_kept() -> None:
    at = open_page("home")
    at.radio(key=widget("image_source")).set_value("upload")
    run(at)
    at.file_uploader(key=widget("upload")).set_value(("x.png", b"not an image", "image/png"))
    run(at)
    assert "could not be read as an image" in texts(at.error)
    assert "Still showing **chelsea**" in texts(at.caption)
    assert top5_classes(at)[0] == "Egyptian cat"

    at.radio(key=widget("image_source")).set_value("gallery")
    run(at)
    at.selectbox(key=widget("gallery_name")).set_value("coffee")
    run(at)
    assert not at.error
    assert top5_classes(at)[0] == "espresso"
    assert "target **espresso**" in texts(at.markdown)  # the top-1 target follows the image


def test_missing_weights_are_named_and_random_weights_labelled() -> None:
    at = open_page("home")
    at.selectbox(key=widget("backbone")).set_value("vgg16")
    run(at)
    assert "vgg16-397923af.pth" in texts(at.error)
    assert "efficientnet_lite0" in texts(at.markdown)  # still showing the last backbone that loaded

    at.radio(key=widget("weights")).set_value("random")
    run(at)
    assert not at.error
    assert "RANDOM (untrained)" in texts(at.warning)
    assert "`vgg16` (weights: RANDOM (untrained) weights)" in texts(at.markdown)
    assert at.selectbox(key=widget("layer.vgg16")).value == "conv5_3"


def test_target_class_can_be_any_imagenet_class() -> None:
    at = open_page("home")
    at.selectbox(key=widget("target")).set_value(281)
    run(at)
    assert "target **tabby** (class 281)" in texts(at.markdown)


def test_choices_survive_a_page_switch() -> None:
    at = open_page("home")
    switch(at, "compare")
    run(at)
    at.selectbox(key=widget("layer.efficientnet_lite0")).set_value("blocks.15")
    at.selectbox(key=widget("sigma_preset")).set_value("manual")
    run(at)
    at.slider(key=widget("sigma_x")).set_value(55.0)
    run(at)

    switch(at, "smoothing_lab")
    run(at)
    assert "layer `blocks.15`" in texts(at.markdown)
    assert at.slider(key=widget("sigma_x")).value == 55.0

    switch(at, "compare")
    run(at)
    assert at.selectbox(key=widget("sigma_preset")).value == "manual"
    assert at.slider(key=widget("sigma_x")).value == 55.0
    assert at.selectbox(key=widget("layer.efficientnet_lite0")).value == "blocks.15"

    switch(at, "home")
    run(at)
    assert "layer `blocks.15`" in texts(at.markdown)


def test_a_preset_sets_the_sliders_and_a_poor_fit_does_not_lead() -> None:
    """Lite0's head has a fitted ERF of 108 px at R² 0.54: the opening sigma is the paper's, said
    and explained, the fit is one click away, and no preset ever locks the sliders."""
    from explorer.presets import PAPER_LABEL, PAPER_SIGMA, fitted_sigma

    at = open_page("compare")
    preset = at.selectbox(key=widget("sigma_preset"))
    assert preset.value == PAPER_LABEL
    assert "loose Gaussian (R² 0.54 < 0.8)" in all_text(at)
    assert not at.slider(key=widget("sigma_x")).disabled
    assert at.slider(key=widget("sigma_x")).value == pytest.approx(PAPER_SIGMA[0])
    fit = fitted_sigma("efficientnet_lite0", "head")
    preset.set_value(fit.label)
    run(at)
    assert at.slider(key=widget("sigma_x")).value == pytest.approx(fit.sigma_x)
    assert f"gaussian σ=({fit.sigma_x:.4g}" in image_captions(at)
    at.slider(key=widget("sigma_x")).set_value(12.0)
    run(at)
    assert at.selectbox(key=widget("sigma_preset")).value == "manual"
    assert "gaussian σ=(12, 12)" in image_captions(at)  # linked: y followed x


def test_the_opening_sigma_shows_a_visible_difference_between_bilinear_and_gaussian() -> None:
    import torch

    import explorer as ex
    from explorer.presets import PAPER_SIGMA, fitted_sigma

    backbone = ex.load_backbone("efficientnet_lite0", device="cpu")
    x = backbone.preprocess([ex.load_image("gallery:chelsea")])
    grid = ex.compute_cams(backbone, x, [285], ["gradcam"])["gradcam"]
    bilinear = ex.normalise(ex.upsample(torch.relu(grid), 224, "bilinear"), "minmax")

    def gaussian(sigma):
        return ex.normalise(ex.upsample(grid, 224, "gaussian", sigma=sigma), "minmax")

    fit = fitted_sigma("efficientnet_lite0", "head")
    opening = float((gaussian(PAPER_SIGMA) - bilinear).abs().mean())
    wash = gaussian((fit.sigma_x, fit.sigma_y))
    assert opening > 0.05  # the Gaussian tile visibly differs from the bilinear one
    spread = gaussian(PAPER_SIGMA)
    assert float((wash - wash.mean()).abs().mean()) < float((spread - spread.mean()).abs().mean())  # the fit washes out


def test_live_sigma_hands_the_gaussian_tiles_to_the_browser_and_adopts_a_released_sigma() -> None:
    at = open_page("compare", live=True)
    assert not at.error and not at.exception
    assert not [s for s in at.slider if s.key == widget("sigma_x")]  # the browser's slider replaces the server's
    assert at.get("component_instance"), "the live component is on the page"
    at.session_state["cam.live_gaussian"] = {"sigma": [41.5, 41.5]}  # what the browser sends on release
    run(at)
    assert (at.session_state["cam.sigma_x"], at.session_state["cam.sigma_y"]) == (41.5, 41.5)
    assert at.selectbox(key=widget("sigma_preset")).value == "manual"
    at.selectbox(key=widget("sigma_preset")).set_value(at.selectbox(key=widget("sigma_preset")).options[0])
    run(at)  # a preset chosen after the release wins: the same release is not adopted twice
    assert at.session_state["cam.sigma_x"] != 41.5
    at.toggle(key=widget("live_sigma")).set_value(False)
    run(at)
    assert at.slider(key=widget("sigma_x")).value == at.session_state["cam.sigma_x"]
