"""The app with a ViT, a segmentation model and a detector from model cards (random weights saved
to files): the sidebar's target picker follows the card's task, Compare draws the maps of the
function target, and the pages that explain a classifier's class say so instead of failing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.app.conftest import all_text, open_page, run, switch, widget
from tests.cards import detection_card, segmentation_card, vector_card, vit_card

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cards(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {"vit": vit_card(folder), "segmentation": segmentation_card(folder), "detection": detection_card(folder),
            "embedding": vector_card(folder, "embedding"), "regression": vector_card(folder, "regression")}


@pytest.fixture
def compare(cards, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CAM_EXPLORER_MODELS", str(next(iter(cards.values())).parent))
    return open_page("compare")


def choose_card(at, card: Path):
    at.selectbox(key=widget("backbone")).set_value(f"card:{card}")
    return run(at)


def test_segmentation_picks_a_class_and_a_region(compare, cards) -> None:
    at = choose_card(compare, cards["segmentation"])
    assert not at.error, [e.value for e in at.error]
    assert at.selectbox(key=widget("layer.deeplab-mbv3")).value == "backbone.16"
    assert at.selectbox(key=widget("seg_class.deeplab-mbv3")) is not None
    assert "segmentation target" in all_text(at) and "summed over its predicted pixels" in all_text(at)
    methods = at.multiselect(key=widget("methods")).options
    assert "Grad-CAM" in " ".join(methods) and not any("Score-CAM" in m for m in methods)
    assert len(at.image) >= 2  # the overlays of the default methods
    at.radio(key=widget("seg_region")).set_value("box")
    run(at)
    assert "summed over box x 25-75 %" in all_text(at) and not at.error
    at.toggle(key=widget("show_strip")).set_value(True)
    run(at)  # every layer's map from one forward and one gradient of the region's score
    assert not at.error and any("backbone.16" in c for image in at.image for c in image.captions)


def test_detection_picks_one_of_its_boxes(compare, cards) -> None:
    at = choose_card(compare, cards["detection"])
    assert not at.error, [e.value for e in at.error]
    box = at.selectbox(key=widget("det_box.frcnn-mbv3-320"))
    assert box.options and box.options[0].startswith("person 0.")
    assert "detection target" in all_text(at) and len(at.image) >= 2
    switch(at, "sanity_checks")
    assert "explains a classifier's class" in all_text(at) and not at.error


def test_a_vit_keeps_the_class_picker_at_its_first_norm(compare, cards) -> None:
    at = choose_card(compare, cards["vit"])
    assert not at.error, [e.value for e in at.error]
    assert at.selectbox(key=widget("layer.vit-tiny")).value == "blocks.11.norm1"
    assert "first norm" in all_text(at) and len(at.image) >= 2


def test_an_embedding_explains_its_similarity_to_a_reference(compare, cards) -> None:
    at = choose_card(compare, cards["embedding"])
    assert not at.error, [e.value for e in at.error]
    assert "cosine similarity to (this image)" in all_text(at)
    at.selectbox(key=widget("reference.resnet18-embedding")).set_value("astronaut")
    run(at)
    assert "cosine similarity to astronaut" in all_text(at) and not at.error and len(at.image) >= 2


def test_a_regression_explains_one_output(compare, cards) -> None:
    at = choose_card(compare, cards["regression"])
    at.selectbox(key=widget("output.resnet18-regression")).set_value(5)
    run(at)
    assert "target **output 5** (regression target)" in all_text(at) and not at.error and len(at.image) >= 2


def test_the_layer_advisor_scores_and_sets_a_layer(compare) -> None:
    at = compare
    at.button(key="advisor.go").click()
    run(at)
    table = next(d.value for d in at.dataframe if "layer" in d.value.columns)
    assert "deletion AUC (lower better)" in table.columns and "head" in set(table["layer"])
    assert table.loc[table["layer"] == "head", "peers' choice"].item() == "yes"
    suggested = next(c.value for c in at.caption if str(c.value).startswith("Suggested:")).split("`")[1]
    at.button(key="advisor.use").click()
    run(at)
    assert at.selectbox(key=widget("layer.efficientnet_lite0")).value == suggested
