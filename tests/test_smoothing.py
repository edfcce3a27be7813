"""Extended-CAM section 5 over a dataset: r(Grad-CAM + bilinear, Extended-CAM + Gaussian(sigma))."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from explorer.backbones import load_backbone
from explorer.cli import main
from explorer.datasets import make_synthetic
from explorer.pipeline import grid_maps
from explorer.smoothing import SmoothingError, _pearson_rows, smoothing_curve


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp("smoothing") / "synthetic", seed=2,
                          sizes={"train": 0, "val": 0, "test": 6})


def test_row_correlations_are_pearson_r():
    rng = np.random.default_rng(0)
    a, b = rng.random((3, 5, 5)), rng.random((3, 5, 5))
    expected = [np.corrcoef(x.ravel(), y.ravel())[0, 1] for x, y in zip(a, b)]
    assert np.allclose(_pearson_rows(torch.from_numpy(a), torch.from_numpy(b)).numpy(), expected)
    assert _pearson_rows(torch.ones(1, 5, 5), torch.from_numpy(a[:1])).item() == 0.0  # constant: 0, not NaN


def test_after_a_gap_linear_head_the_two_grid_maps_coincide_and_after_the_vgg_head_they_do_not(data):
    from explorer.datasets import load_synthetic

    images = [load_synthetic(data, "test").load_image(i) for i in range(3)]
    torch.manual_seed(0)
    for name, same in (("synthetic_cnn", True), ("synthetic_vgg", False)):
        backbone = load_backbone(name, "random", device="cpu")
        batch = backbone.preprocess(images)
        grid = grid_maps(backbone, batch, [0, 1, 2], ["gradcam", "extendedcam"])
        gradcam, extended = grid.maps["gradcam"], grid.maps["extendedcam"]
        r = _pearson_rows(gradcam, extended)
        if same:  # dy/dA_kij = w_k / Z at every cell: the weights are the same
            assert torch.allclose(r, torch.ones_like(r), atol=1e-6)
        else:
            assert (r < 0.999).all()


def test_the_curve_over_a_split_has_a_mean_an_interval_and_a_peak(data):
    from explorer.datasets import load_synthetic

    dataset = load_synthetic(data, "test")
    images = [dataset.load_image(i) for i in range(len(dataset))]
    torch.manual_seed(0)
    backbone = load_backbone("synthetic_vgg", "random", device="cpu")
    curve = smoothing_curve(backbone, images, [s.label for s in dataset], sigmas=(2, 10, 40), batch_size=4)
    assert curve.correlations.shape == (len(dataset), 3)
    assert np.all(np.abs(curve.correlations) <= 1 + 1e-9)
    summary = curve.summary()
    assert summary["best_sigma"] in (2, 10, 40) and summary["images"] == len(dataset)
    for value, (low, high) in zip(summary["mean_r"], summary["mean_r_ci"]):
        assert low - 1e-4 <= value <= high + 1e-4
    with pytest.raises(SmoothingError, match="positive"):
        smoothing_curve(backbone, images, sigmas=(0, 5))


def test_the_command_writes_its_json_with_the_command_that_made_it(data, tmp_path, capsys):
    out = tmp_path / "curve.json"
    code = main(["smoothing-curve", "--dataset", f"synthetic:{data}", "--backbone", "synthetic_vgg", "--weights", "random",
                 "--sigmas", "5,20", "--limit", "4", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    card = json.loads(out.read_text())
    assert card["sigmas"] == [5.0, 20.0] and card["images"] == 4 and card["layer"] == "conv5"
    assert card["command"].startswith("python -m explorer smoothing-curve") and card["targets"] == "label"
    assert main(["smoothing-curve", "--sigmas", "five", "--out", str(tmp_path / "x.json")]) == 2
    assert "--sigmas must be numbers" in capsys.readouterr().err


def test_a_written_curve_reads_back_and_says_where_it_peaks(data, tmp_path, capsys):
    from explorer.smoothing import read_split_curve

    out = tmp_path / "curve.json"
    assert main(["smoothing-curve", "--dataset", f"synthetic:{data}", "--backbone", "synthetic_vgg", "--weights", "random",
                 "--sigmas", "5,20,40", "--limit", "4", "--out", str(out)]) == 0, capsys.readouterr().err
    card = json.loads(out.read_text())
    curve = read_split_curve(out)
    assert curve.sigmas.tolist() == [5.0, 20.0, 40.0] and curve.images == 4 and curve.paper_sigma == 20
    assert curve.mean_r.tolist() == card["mean_r"] and curve.best_sigma == card["best_sigma"]
    at = card["sigmas"].index(card["best_sigma"])
    assert curve.best_interval == tuple(card["mean_r_ci"][at])
    assert f"σ = {card['best_sigma']:g} px" in curve.reading() and "Over 4 images" in curve.reading()


@pytest.mark.parametrize("text,message", [
    ("{not json", "cannot be read as a smoothing curve"),
    ('{"sigmas": [1, 2]}', "cannot be read as a smoothing curve"),
    ('{"sigmas": [1, 2], "mean_r": [0.5], "mean_r_ci": [[0.4, 0.6], [0.4, 0.6]], "best_sigma": 1, '
     '"best_sigma_ci": [1, 1], "images": 3, "dataset": "d", "split": "test", "weights": "w"}', "do not match"),
    (" " * (2 << 20), "too large"),
])
def test_a_damaged_curve_file_is_one_clear_error(tmp_path, text, message):
    from explorer.smoothing import read_split_curve

    path = tmp_path / "synthetic_vgg__conv5.json"
    path.write_text(text)
    with pytest.raises(SmoothingError, match=message) as caught:
        read_split_curve(path)
    assert path.name in str(caught.value)


def test_the_shipped_curve_belongs_to_the_shipped_weights_only():
    from explorer.smoothing import shipped_split_curve

    shipped = load_backbone("synthetic_vgg", device="cpu")
    curve = shipped_split_curve(shipped, "conv5")
    assert curve is not None and curve.images == 1000 and curve.split == "test"  # the whole test split
    assert shipped_split_curve(shipped, "blocks.2") is None  # no curve for that layer
    assert shipped_split_curve(load_backbone("synthetic_vgg", "random", device="cpu"), "conv5") is None
