"""The layer advisor: its candidates, each number against the function that defines it, the
suggestion rule, and the CLI's `cam --layers auto`."""

from __future__ import annotations

import pytest
import torch

import explorer as ex
from explorer.cli import main
from explorer.layer_advisor import AdvisorError, LayerAdvice, advise_layers, candidate_layers, suggested
from explorer.metrics.faithfulness import deletion_insertion
from tests.nets import conv_net


def test_candidates_are_stage_ends_and_the_default() -> None:
    backbone = conv_net()  # conv1 16 x 16; conv2 and relu2 8 x 8 (relu2 the default)
    assert set(candidate_layers(backbone)) == {"relu2", "conv1"}  # conv2 shares relu2's grid and comes before it


def test_each_number_is_what_it_says() -> None:
    backbone = conv_net(inplace=False)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    rows = advise_layers(backbone, x, 3, ["conv1", "relu2"], steps=8)
    assert [r.layer for r in rows] == ["conv1", "relu2"] and [r.conventional for r in rows] == [False, True]
    assert rows[0].grid == (16, 16) and rows[0].channels == 8
    grid = ex.compute_cams(backbone, x, [3], ["gradcam"], "relu2", relu="after")["gradcam"]
    pixels = ex.normalise(ex.upsample(grid, 32, "bilinear"), "minmax")
    deletion = deletion_insertion(backbone.model, x, pixels, [3], mode="deletion", steps=8, mean=backbone.mean,
                                  std=backbone.std)
    assert rows[1].deletion_auc == pytest.approx(float(deletion.auc[0]))
    assert -1 <= rows[1].head_spearman < 1  # the re-initialised fc changes Grad-CAM's channel weights
    original = backbone.model.fc.weight.clone()
    advise_layers(backbone, x, 3, ["relu2"], steps=2)
    assert torch.equal(backbone.model.fc.weight, original)  # the head was reset on a copy


def test_the_suggestion_skips_layers_that_fail_the_sanity_check() -> None:
    def row(name: str, deletion: float, insertion: float, rho: float) -> LayerAdvice:
        return LayerAdvice(name, 8, (4, 4), deletion, insertion, rho, False)

    rows = [row("a", 0.1, 0.9, 0.9), row("b", 0.3, 0.7, 0.2), row("c", 0.4, 0.6, 0.1)]
    assert suggested(rows).layer == "b"  # "a" is the most faithful but its map survives the head reset
    assert suggested([rows[0]]).layer == "a"  # when none passes, the evidence alone decides
    with pytest.raises(AdvisorError):
        suggested([])


def test_cli_prints_the_advice_and_draws_at_the_suggested_layer(tmp_path, capsys) -> None:
    code = main(["cam", "--image", "gallery:chelsea", "--backbone", "torchvision:resnet18", "--weights", "random",
                 "--methods", "gradcam", "--upsampler", "bilinear", "--layers", "auto",
                 "--out", str(tmp_path / "x.png")])
    out = capsys.readouterr().out
    assert code == 0 and "<- suggested" in out and "layer4" in out and (tmp_path / "x.png").is_file()

