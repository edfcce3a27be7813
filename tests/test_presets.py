"""Sigma presets: a stored ERF fit is the default only for the weights it was measured on."""

import json

import pytest

from explorer.presets import MANUAL_LABEL, PAPER_LABEL, PAPER_SIGMA, CardError, sigma_presets


def write_card(directory, weights="random", **extra):
    card = {"backbone": "vgg16", "layer": "conv5_3", "weights": weights, "sigma_x": 36.0, "sigma_y": 36.3,
            "r2": 0.993, "command": "python -m explorer erf ...", **extra}
    (directory / "vgg16__conv5_3.json").write_text(json.dumps(card))


def test_without_a_card_the_paper_comes_first(tmp_path):
    presets = sigma_presets("vgg16", "conv5_3", directory=tmp_path)
    assert list(presets) == [PAPER_LABEL, MANUAL_LABEL] and presets[PAPER_LABEL] == PAPER_SIGMA


def test_a_matching_card_is_the_default(tmp_path):
    write_card(tmp_path)
    labels = list(sigma_presets("vgg16", "conv5_3", directory=tmp_path, weights="random"))
    assert labels[0].startswith("fitted ERF") and "random weights" in labels[0]


def test_a_card_for_other_weights_is_offered_but_not_default(tmp_path):
    write_card(tmp_path, weights="random")
    presets = sigma_presets("vgg16", "conv5_3", directory=tmp_path, weights="pretrained")
    labels = list(presets)
    assert labels[0] == PAPER_LABEL and labels[1].startswith("fitted ERF") and labels[-1] == MANUAL_LABEL


@pytest.mark.parametrize("text", ['{"sigma_x": 3', '{"sigma_x": 3, "r2": 0.9}', '{"sigma_x": -1, "sigma_y": 2, "r2": 1}'])
def test_a_damaged_card_is_reported(tmp_path, text):
    (tmp_path / "vgg16__conv5_3.json").write_text(text)
    with pytest.raises(CardError, match="vgg16__conv5_3.json"):
        sigma_presets("vgg16", "conv5_3", directory=tmp_path)
