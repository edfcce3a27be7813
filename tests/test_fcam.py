"""F-CAM: seeds against hand-made maps and scikit-image, the CRF loss against brute force, the
log-barrier against its formula, decoders on every backbone, and resumable training."""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from explorer import grid_maps, load_backbone, pixel_maps
from explorer.backbones import REGISTRY
from explorer.datasets import make_synthetic
from explorer.fcam import (
    IGNORE,
    FcamError,
    SeedConfig,
    UNetDecoder,
    barrier_t,
    build_decoder,
    crf_loss,
    crf_loss_dense,
    draw_seeds,
    load_decoder,
    log_barrier,
    otsu_thresholds,
    parameter_count,
    partial_cross_entropy,
    read_decoder_card,
    sampling_regions,
    seeds_from_cam,
    size_loss,
)
from explorer.fcam_train import FcamConfig, FcamInterrupted, train_fcam

SIZES = {"train": 12, "val": 6, "test": 6}


# ------------------------------------------------------------------------------ seeds

def test_otsu_matches_scikit_image_on_random_and_degenerate_maps():
    from skimage.filters import threshold_otsu

    rng = np.random.default_rng(0)
    maps = [rng.integers(0, 256, (40, 50)), rng.integers(30, 60, (40, 50)),
            np.where(rng.random((40, 50)) > 0.7, 200, 10), (rng.beta(0.5, 2, (40, 50)) * 255).astype(int),
            np.clip(rng.normal(120, 5, (40, 50)), 0, 255).astype(int)]
    batch = torch.as_tensor(np.stack(maps), dtype=torch.uint8)
    ours = otsu_thresholds(batch)
    for m, t in zip(maps, ours.tolist()):
        assert t == int(threshold_otsu(m.astype(np.uint8))), (t, threshold_otsu(m.astype(np.uint8)))


def test_sampling_regions_on_a_hand_made_map():
    """A bright 40 x 40 square on a left-to-right ramp: C+ is the square eroded by 5 px on each
    side (11 x 11 kernel), C- the darkest n- fraction (the left columns)."""
    H = W = 100
    ramp = torch.linspace(0.0, 0.3, W).repeat(H, 1)
    cam = ramp.clone()
    cam[30:70, 50:90] = 1.0
    fg, bg = sampling_regions(cam[None], SeedConfig(n_negative=0.2))
    expected = torch.zeros(H, W, dtype=torch.bool)
    expected[35:65, 55:85] = True
    assert torch.equal(fg[0], expected)
    assert int(bg[0].sum()) == 2000  # exactly 20 % of 10,000 pixels
    assert bg[0][:, :20].all() and not bg[0][:, 21:].any()  # the darkest columns of the ramp


def test_erosion_that_empties_keeps_the_otsu_region():
    cam = torch.zeros(1, 60, 60)
    cam[0, 10:14, 10:14] = 1.0  # 4 x 4: an 11 x 11 erosion leaves nothing
    fg, _ = sampling_regions(cam, SeedConfig())
    assert int(fg.sum()) == 16


def test_constant_map_gives_no_seeds():
    cam, fg, bg, labels = seeds_from_cam(torch.full((2, 7, 7), 3.0), (56, 56), SeedConfig(),
                                         torch.Generator().manual_seed(0))
    assert not fg.any() and not bg.any() and (labels == IGNORE).all()


def test_seed_patches_lie_in_their_regions_and_overlaps_are_dropped():
    g = torch.Generator().manual_seed(1)
    fg = torch.zeros(3, 50, 50, dtype=torch.bool)
    bg = torch.zeros(3, 50, 50, dtype=torch.bool)
    fg[:, 10:20, 10:20] = True
    bg[:, 30:45, 30:45] = True
    labels = draw_seeds(fg, bg, SeedConfig(fg_samples=1, bg_samples=1), g)
    for b in range(3):
        assert int((labels[b] == 1).sum()) == 9 and int((labels[b] == 0).sum()) == 9  # one 3 x 3 patch each
        ys, xs = torch.nonzero(labels[b] == 1, as_tuple=True)
        assert fg[b, int(ys.float().mean()), int(xs.float().mean())]  # the patch's centre was drawn from C+
        ys, xs = torch.nonzero(labels[b] == 0, as_tuple=True)
        assert bg[b, int(ys.float().mean()), int(xs.float().mean())]
    # The same region for both: every drawn pixel is marked twice or not at all -> dropped
    both = draw_seeds(fg, fg, SeedConfig(fg_samples=40, bg_samples=40), torch.Generator().manual_seed(2))
    assert ((both == 0) | (both == 1)).sum() < 2 * 40 * 9 * 3
    assert not ((both == 0) & (both == 1)).any()


def test_seeds_are_reproducible_from_the_generator():
    cam = torch.rand(2, 7, 7, generator=torch.Generator().manual_seed(0))
    a = seeds_from_cam(cam, (64, 64), SeedConfig(), torch.Generator().manual_seed(5))[3]
    b = seeds_from_cam(cam, (64, 64), SeedConfig(), torch.Generator().manual_seed(5))[3]
    c = seeds_from_cam(cam, (64, 64), SeedConfig(), torch.Generator().manual_seed(6))[3]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_partial_cross_entropy_reads_only_the_seeds():
    logits = torch.randn(2, 2, 8, 8, requires_grad=True)
    labels = torch.full((2, 8, 8), IGNORE)
    labels[0, 1, 1] = 1
    labels[1, 5, 5] = 0
    loss = partial_cross_entropy(logits, labels)
    expected = 0.5 * (-torch.log_softmax(logits[0, :, 1, 1], 0)[1] - torch.log_softmax(logits[1, :, 5, 5], 0)[0])
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert int((logits.grad.abs().sum(1) > 0).sum()) == 2
    assert partial_cross_entropy(logits, torch.full((2, 8, 8), IGNORE)).item() == 0.0


# ------------------------------------------------------------------------------ CRF

def _probs(B: int, H: int, W: int, seed: int = 0) -> torch.Tensor:
    return torch.softmax(torch.randn(B, 2, H, W, generator=torch.Generator().manual_seed(seed)), dim=1)


def test_crf_loss_is_the_dense_formula_at_block_size_one():
    images = torch.randint(0, 256, (2, 3, 12, 16), generator=torch.Generator().manual_seed(0)).float()
    probs = _probs(2, 12, 16)
    ours = crf_loss(probs, images, scale=1, chunk=37)
    dense = crf_loss_dense(probs, images)
    torch.testing.assert_close(ours.double(), dense, rtol=1e-5, atol=0)


def test_crf_gradient_is_the_dense_gradient_at_block_size_one():
    images = torch.randint(0, 256, (1, 3, 10, 10), generator=torch.Generator().manual_seed(1)).float()
    logits = torch.randn(1, 2, 10, 10, generator=torch.Generator().manual_seed(2), requires_grad=True)
    crf_loss(torch.softmax(logits, 1), images, scale=1).backward()
    ours = logits.grad.clone()
    logits.grad = None
    crf_loss_dense(torch.softmax(logits.double(), 1), images).backward()
    torch.testing.assert_close(ours.double(), logits.grad.double(), rtol=1e-4, atol=1e-6)


def test_crf_estimate_is_unbiased_over_block_draws():
    """On a tiny image the mean of many draws of the s = 2 estimate approaches the dense sum
    (within four standard errors)."""
    images = torch.randint(0, 256, (1, 3, 4, 4), generator=torch.Generator().manual_seed(4)).float()
    probs = _probs(1, 4, 4, seed=5)
    dense = crf_loss_dense(probs, images).item()
    g = torch.Generator().manual_seed(0)
    draws = [crf_loss(probs, images, scale=2, generator=g).item() for _ in range(4000)]
    assert abs(np.mean(draws) - dense) < 4 * np.std(draws) / math.sqrt(len(draws))


CRF_SINGLE_DRAW_TOLERANCE = 0.20  # documented in explorer/fcam/losses.py and the README (s = 4, 256 blocks)
CRF_MEAN_TOLERANCE = 0.01


@pytest.mark.parametrize("name", ["chelsea", "astronaut", "coffee"])
def test_crf_estimate_on_photo_crops_stays_within_the_documented_tolerance(name):
    """64 x 64 crops of the sample photos at the network's 224 x 224 (brute force: 4096^2 pairs):
    one draw of the s = 4 estimate, the mean of 32 draws, and the mean gradient's direction."""
    from explorer.images import gallery_image

    image = gallery_image(name).convert("RGB").resize((224, 224))
    images = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None, :, 60:124, 60:124].float()
    # A smooth, object-like foreground probability (what a decoder outputs), not noise.
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    fg = torch.sigmoid((18.0 - ((yy - 30) ** 2 + (xx - 34) ** 2).sqrt()) / 3.0)
    logits = (4 * torch.stack([-fg, fg])[None]).requires_grad_(True)
    exact = crf_loss_dense(torch.softmax(logits.double(), 1), images)
    exact.backward()
    g_exact = logits.grad.flatten().clone()
    logits.grad = None
    g = torch.Generator().manual_seed(0)
    values, g_sum = [], torch.zeros_like(g_exact)
    for _ in range(128):
        estimate = crf_loss(torch.softmax(logits, 1), images, scale=4, generator=g)
        estimate.backward()
        values.append(estimate.item())
        g_sum += logits.grad.flatten()
        logits.grad = None
    errors = np.abs(np.array(values) - exact.item()) / abs(exact.item())
    assert errors.max() < CRF_SINGLE_DRAW_TOLERANCE, errors.max()
    assert abs(np.mean(values[:32]) - exact.item()) / abs(exact.item()) < CRF_MEAN_TOLERANCE
    cosine = torch.nn.functional.cosine_similarity(g_sum.double(), g_exact.double(), dim=0).item()
    assert cosine > 0.93, cosine


def test_crf_prefers_a_segmentation_that_follows_colour():
    """Two colour halves: the split along the colour edge has a lower R than a split across it."""
    images = torch.zeros(1, 3, 16, 16)
    images[:, 0, :, :8] = 255.0
    along = torch.zeros(1, 2, 16, 16)
    along[:, 1, :, :8] = 1.0
    along[:, 0, :, 8:] = 1.0
    across = torch.zeros(1, 2, 16, 16)
    across[:, 1, :8] = 1.0
    across[:, 0, 8:] = 1.0
    assert crf_loss(along, images, scale=2) < crf_loss(across, images, scale=2)


# ------------------------------------------------------------------------------ size

def test_log_barrier_is_its_formula_and_smooth_at_the_edge():
    for t in (1.0, 2.5, 10.0):
        z = torch.tensor([-1000.0, -5.0, -1.0 / t ** 2, -0.5 / t ** 2, 0.0, 3.0], dtype=torch.float64)
        expected = [(-math.log(-v) / t) if v <= -1 / t ** 2 else (t * v - math.log(1 / t ** 2) / t + 1 / t)
                    for v in z.tolist()]
        torch.testing.assert_close(log_barrier(z, t), torch.tensor(expected, dtype=torch.float64))
        edge = torch.tensor(-1.0 / t ** 2, dtype=torch.float64, requires_grad=True)
        left = (edge - 1e-7).detach().requires_grad_(True)
        right = (edge + 1e-7).detach().requires_grad_(True)
        log_barrier(left, t).backward()
        log_barrier(right, t).backward()
        assert abs(left.grad.item() - right.grad.item()) < 1e-4 * t ** 2  # the derivative is t on both sides
        assert abs(log_barrier(left, t).item() - log_barrier(right, t).item()) < 1e-5


def test_size_loss_pushes_both_regions_to_grow_and_t_follows_its_schedule():
    probs = torch.full((1, 2, 10, 10), 0.5, requires_grad=True)
    size_loss(probs, 1.0).backward()
    assert (probs.grad < 0).all()  # more mass in either region lowers the loss
    torch.testing.assert_close(size_loss(probs.detach(), 1.0), torch.tensor(-math.log(50.0)))
    assert barrier_t(0) == 1.0 and barrier_t(1) == pytest.approx(1.01) and barrier_t(10_000) == 10.0


# ------------------------------------------------------------------------------ decoders

@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_backbone_declares_a_decoder_with_full_resolution_output(name):
    backbone = load_backbone(name, "random", device="cpu")
    decoder = build_decoder(backbone, seed=0)
    h, w = backbone.input_size
    x = torch.randn(2, 3, h, w)
    from explorer import capture

    cap = capture(backbone, x, [0, 1], gradient=False, taps=decoder.taps)
    logits = decoder.logits(cap.features, (h, w))
    assert logits.shape == (2, 2, h, w)
    fcam = decoder.foreground(cap.features, (h, w))
    assert fcam.shape == (2, h, w) and float(fcam.min()) >= 0 and float(fcam.max()) <= 1


def test_unet_rejects_inconsistent_shapes():
    with pytest.raises(FcamError):
        UNetDecoder([8, 16, 32], widths=[8])
    net = UNetDecoder([8, 16], widths=[8])
    with pytest.raises(FcamError):
        net([torch.zeros(1, 16, 4, 4)], (8, 8))


def test_grid_maps_runs_decoders_in_the_same_forward():
    backbone = load_backbone("synthetic_cnn", "random", device="cpu")
    decoder = build_decoder(backbone, seed=0)
    decoder.net.eval()
    calls = []
    handle = backbone.model.register_forward_hook(lambda *_: calls.append(1))
    try:
        x = torch.randn(2, 3, 224, 224)
        grid = grid_maps(backbone, x, [0, 3], ["cam", "gradcam"], decoders={"cam": decoder})
    finally:
        handle.remove()
    assert len(calls) == 1
    assert grid.fcam["cam"].shape == (2, 224, 224) and "fcam:cam" in grid.seconds
    out = pixel_maps(grid.maps["cam"], (100, 120), "fcam", fcam=grid.fcam["cam"])
    assert out.shape == (2, 100, 120)


# ------------------------------------------------------------------------------ training

@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("fcam") / "synthetic", seed=7, sizes=SIZES)


@pytest.fixture(scope="module")
def cnn():
    return load_backbone("synthetic_cnn", "random", device="cpu")


def tiny(data: Path, **changes) -> FcamConfig:
    base = FcamConfig(backbone="synthetic_cnn", weights="random", dataset=f"synthetic:{data}", epochs=2,
                      batch_size=4, save_every=1, decoder_widths=(16, 8, 8), decoder_centre=16)
    return dataclasses.replace(base, **changes)


@pytest.fixture(scope="module")
def uninterrupted(data, cnn, tmp_path_factory):
    out = tmp_path_factory.mktemp("fcam-full") / "dec.pt"
    return train_fcam(tiny(data), out, backbone=cnn, command="python -m explorer test")


def test_training_writes_a_card_and_a_loadable_decoder(uninterrupted, cnn):
    card = json.loads(uninterrupted.card.read_text())
    assert card["kind"] == "fcam_decoder" and card["command"] == "python -m explorer test"
    assert card["base_method"] == "cam" and card["layer"] == "stage4" and card["widths"] == [16, 8, 8]
    assert len(card["history"]) == 2 and card["best_epoch"] in (1, 2)
    assert set(card["val"]) == {"max_box_acc", "max_box_acc_v2", "best_threshold", "pxap"}
    assert card["curve"] and {"ce", "crf", "size", "loss"} <= set(card["curve"][0])
    decoder = load_decoder(uninterrupted.weights, cnn)
    assert not decoder.net.training and decoder.base_method == "cam"


def test_a_killed_run_resumes_to_the_same_decoder(data, cnn, uninterrupted, tmp_path):
    out = tmp_path / "dec.pt"
    with pytest.raises(FcamInterrupted):
        train_fcam(tiny(data), out, backbone=cnn, max_steps=2)  # mid-epoch 1
    assert not out.exists()
    with pytest.raises(FcamInterrupted):
        train_fcam(tiny(data), out, backbone=cnn, max_steps=2)  # into epoch 2
    resumed = train_fcam(tiny(data), out, backbone=cnn, command="python -m explorer test")
    a = torch.load(uninterrupted.weights, weights_only=True)
    b = torch.load(resumed.weights, weights_only=True)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
    card_a, card_b = (json.loads(p.read_text()) for p in (uninterrupted.card, resumed.card))
    strip = lambda h: [{k: v for k, v in e.items() if k != "elapsed_s"} for e in h]  # noqa: E731
    assert strip(card_a["history"]) == strip(card_b["history"]) and card_a["curve"] == card_b["curve"]


def test_resuming_with_other_settings_is_refused(data, cnn, tmp_path):
    out = tmp_path / "dec.pt"
    with pytest.raises(FcamInterrupted):
        train_fcam(tiny(data), out, backbone=cnn, max_steps=1)
    with pytest.raises(FcamError, match="other settings"):
        train_fcam(tiny(data, lr=0.5), out, backbone=cnn)


def test_evaluate_scores_the_decoder_as_an_upsampler(data, cnn, uninterrupted, tmp_path):
    from explorer.evaluate import EvalConfig, evaluate

    config = EvalConfig(dataset=f"synthetic:{data}", backbone="synthetic_cnn", weights="random",
                        methods=("cam", "gradcam"), upsamplers=("bilinear", "fcam"), confidence=True,
                        decoders={"cam": str(uninterrupted.weights)})
    summary = evaluate(config, tmp_path / "eval", backbone=cnn)
    combos = {(r["method"], r["upsampler"]) for r in summary.rows}
    assert ("cam", "fcam") in combos and ("gradcam", "fcam") not in combos
    row = summary.row("cam", "fcam")
    assert 0 <= row["max_box_acc"] <= 100 and 0 <= row["pxap"] <= 100 and "average_drop" in row
    # The same number as scoring the decoder directly on the test split
    from explorer.fcam_train import class_targets, load_split, score_split

    split = load_split(f"synthetic:{data}", "test", (224, 224))
    direct = score_split(cnn, load_decoder(uninterrupted.weights, cnn), split, class_targets(cnn, split)[0],
                         tiny(data, layer="stage4"))
    assert row["max_box_acc"] == pytest.approx(direct["max_box_acc"], abs=1e-3)  # score_split rounds to 4 places
    assert row["pxap"] == pytest.approx(direct["pxap"], abs=1e-3)


# ------------------------------------------------------------------------------ files

def test_damaged_cards_and_foreign_weights_are_refused(uninterrupted, cnn, tmp_path):
    weights = tmp_path / "dec.pt"
    weights.write_bytes(uninterrupted.weights.read_bytes())
    card = json.loads(uninterrupted.card.read_text())
    (tmp_path / "dec.json").write_text("{not json")
    with pytest.raises(FcamError, match="damaged"):
        load_decoder(weights, cnn)
    (tmp_path / "dec.json").write_text(json.dumps({**card, "backbone": "vgg16"}))
    with pytest.raises(FcamError, match="trained on vgg16"):
        load_decoder(weights, cnn)
    (tmp_path / "dec.json").write_text(json.dumps({**card, "widths": [32, 8, 8]}))
    with pytest.raises(FcamError, match=r"do not fit the decoder its card describes: blocks\.0\.conv1\.0\.weight is \(16"):
        load_decoder(weights, cnn)
    (tmp_path / "dec.json").unlink()
    with pytest.raises(FcamError, match="no card"):
        load_decoder(weights, cnn)


class _Exploit:
    def __reduce__(self):
        return (Path("/tmp/fcam-exploit-ran").write_text, ("ran",))


def test_a_pickle_that_would_run_code_is_refused_not_run(uninterrupted, cnn, tmp_path):
    marker = Path("/tmp/fcam-exploit-ran")
    marker.unlink(missing_ok=True)
    weights = tmp_path / "dec.pt"
    torch.save({"net": _Exploit()}, weights)
    (tmp_path / "dec.json").write_text(uninterrupted.card.read_text())
    with pytest.raises(FcamError, match="Refused"):
        load_decoder(weights, cnn)
    assert not marker.exists()
    assert pickle  # imported for clarity: torch.save pickles the object above


# ------------------------------------------------------------------------------ commands

def test_train_fcam_and_ablation_commands_on_a_tiny_configuration(data, tmp_path, capsys):
    """The CI smoke test: both commands end to end on 12 training images, one epoch each."""
    from explorer.cli import main

    common = ["--backbone", "synthetic_cnn", "--weights", "random", "--dataset", f"synthetic:{data}",
              "--epochs", "1", "--batch-size", "4"]
    assert main(["train-fcam", *common, "--out", str(tmp_path / "dec.pt")]) == 0
    card = json.loads((tmp_path / "dec.json").read_text())
    assert card["command"].startswith("python -m explorer train-fcam --backbone synthetic_cnn")
    assert main(["fcam-ablation", *common, "--out", str(tmp_path / "ablation")]) == 0
    table = json.loads((tmp_path / "ablation" / "ablation.json").read_text())
    assert [r["variant"] for r in table["rows"]] == ["seeds", "seeds+crf", "seeds+size", "seeds+crf+size"]
    assert [(r["crf_weight"] > 0, r["size_weight"] > 0) for r in table["rows"]] == [
        (False, False), (True, False), (False, True), (True, True)]
    assert "max_box_acc" in table["baseline_bilinear"] and "pxap" in table["rows"][0]
    out = capsys.readouterr().out
    assert "CAM + SR + CRF + ASC (F-CAM)" in out
    assert main(["train-fcam", *common, "--lr", "-1", "--out", str(tmp_path / "bad.pt")]) == 2
    assert "error: argument --lr: must be above 0, not -1" in capsys.readouterr().err


def test_ablation_over_seeds_runs_each_seed_and_reports_the_spread(data, tmp_path, capsys):
    """--seeds: one table per training seed, then mean and sample s.d. over seeds beside each seed's
    interval over images; the seeds really change the decoders, the CAM baseline stays put."""
    from explorer.cli import main

    out = tmp_path / "seeds"
    assert main(["fcam-ablation", "--backbone", "synthetic_cnn", "--weights", "random", "--dataset",
                 f"synthetic:{data}", "--epochs", "1", "--batch-size", "4", "--variants", "seeds,seeds+crf+size",
                 "--seeds", "0,3", "--out", str(out)]) == 0
    per_seed = [json.loads((out / f"seed{s}" / "ablation.json").read_text()) for s in (0, 3)]
    assert [run["settings"]["seed"] for run in per_seed] == [0, 3]
    assert per_seed[0]["baseline_bilinear"] == per_seed[1]["baseline_bilinear"]
    cards = [json.loads((out / f"seed{s}" / "seeds.json").read_text()) for s in (0, 3)]
    assert cards[0]["seed"] == 0 and cards[1]["seed"] == 3
    weights = [torch.load(out / f"seed{s}" / "seeds.pt", weights_only=True) for s in (0, 3)]
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0] if weights[0][k].is_floating_point())
    result = json.loads((out / "seeds.json").read_text())
    assert result["seeds"] == [0, 3] and [r["variant"] for r in result["rows"]] == ["seeds", "seeds+crf+size"]
    for row in result["rows"]:
        values = [p["max_box_acc"] for p in row["per_seed"]]
        assert row["max_box_acc"] == pytest.approx(np.mean(values))
        assert row["max_box_acc_sd"] == pytest.approx(np.std(values, ddof=1))
        for p in row["per_seed"]:
            low, high = p["max_box_acc_ci"]
            assert low <= p["max_box_acc"] <= high
    assert result["rows"][1]["paper_cub_vgg16_max_box_acc"] == 87.3
    text = (out / "seeds.md").read_text()
    assert "mean ± s.d., 2 seeds" in text and "CAM + SR + CRF + ASC (F-CAM)" in text and "| 61.6 |" in text
    # the network-free controls, scored on the same images, stand beside the table
    assert {c["method"] for c in result["controls"]} >= {"control_centre", "reference_object"}
    assert "centre Gaussian (the protocol's baseline) (control, no network)" in text
    assert "seeds.json and seeds.md" in capsys.readouterr().out
    assert main(["fcam-ablation", "--backbone", "synthetic_cnn", "--seeds", "1,1", "--out", str(out)]) == 2
    assert "each number once" in capsys.readouterr().err


def test_aggregating_ablations_refuses_runs_of_different_recipes(tmp_path):
    from explorer.fcam_ablation import aggregate_ablations

    def run(folder: str, seed: int, epochs: int, score: float) -> Path:
        path = tmp_path / folder
        path.mkdir()
        row = {"variant": "seeds", "best_epoch": 1, "train_seconds": 5.0, "max_box_acc": score,
               "max_box_acc_ci": [score - 3, score + 3]}
        (path / "ablation.json").write_text(json.dumps({
            "backbone": "b", "base_method": "cam", "dataset": "d", "split": "test", "rows": [row],
            "baseline_bilinear": {"max_box_acc": 10.0}, "settings": {"seed": seed, "epochs": epochs}}))
        return path

    a, b, c = run("a", 0, 3, 20.0), run("b", 1, 3, 26.0), run("c", 2, 5, 30.0)
    result = aggregate_ablations([a, b])
    assert result["rows"][0]["max_box_acc"] == 23.0
    assert result["rows"][0]["max_box_acc_sd"] == pytest.approx(math.sqrt(18.0))
    assert result["rows"][0]["max_box_acc_range"] == [20.0, 26.0]
    with pytest.raises(FcamError, match="differ in more than the seed .epochs"):
        aggregate_ablations([a, c])
    with pytest.raises(FcamError, match="does not exist"):
        aggregate_ablations([a, tmp_path / "missing"])


def test_fcam_sweep_trains_one_decoder_per_value_and_selects_on_validation(data, tmp_path, capsys):
    from explorer.cli import main

    common = ["--backbone", "synthetic_cnn", "--weights", "random", "--dataset", f"synthetic:{data}",
              "--epochs", "1", "--batch-size", "4", "--crf-weight", "0"]
    out = tmp_path / "sweep"
    assert main(["fcam-sweep", *common, "--param", "n-negative", "--values", "0.1,0.5", "--out", str(out)]) == 0
    result = json.loads((out / "sweep.json").read_text())
    assert [r["value"] for r in result["rows"]] == [0.1, 0.5] and result["split"] == "validation"
    best = max(result["rows"], key=lambda r: r["max_box_acc"])
    assert result["selected"] == best["value"]
    cards = [json.loads((out / f"n_negative={v}.json").read_text()) for v in ("0.1", "0.5")]
    assert [c["settings"]["n_negative"] for c in cards] == [0.1, 0.5]
    assert {k for k in cards[0]["settings"] if cards[0]["settings"][k] != cards[1]["settings"][k]} == {"n_negative"}
    assert cards[1]["command"].endswith("[n_negative 0.5]") and cards[0]["val"]["max_box_acc"] == result["rows"][0][
        "max_box_acc"]
    assert "(selected)" in capsys.readouterr().out
    # each value's validation score again, with its bootstrap interval (the cards keep the score only)
    for row in result["rows"] + [result["baseline"]]:
        for metric in ("max_box_acc", "max_box_acc_v2", "pxap"):
            low, high = row[f"{metric}_ci"]
            assert low <= row[metric] <= high
    assert result["val_images"] == SIZES["val"] and f"{SIZES['val']} validation images" in (out / "sweep.md").read_text()
    stamp = (out / "n_negative=0.1.pt").stat().st_mtime_ns
    assert main(["fcam-sweep", *common, "--param", "n-negative", "--values", "0.1", "--out", str(out)]) == 0
    assert (out / "n_negative=0.1.pt").stat().st_mtime_ns == stamp  # read back, not trained again
    capsys.readouterr()
    assert main(["fcam-sweep", *common, "--epochs", "2", "--param", "n-negative", "--values", "0.1",
                 "--out", str(out)]) == 2
    assert "trained with other settings" in capsys.readouterr().err
    assert main(["fcam-sweep", *common, "--param", "seed", "--values", "1", "--out", str(out)]) == 2
    assert main(["fcam-sweep", *common, "--param", "lr", "--values", "0.1,x", "--out", str(out)]) == 2
    assert "'x' is not a number" in capsys.readouterr().err


SHIPPED_DECODERS = sorted((Path(__file__).resolve().parents[1] / "checkpoints" / "fcam").glob("*.pt"))


def test_the_six_table1_baselines_each_have_a_shipped_decoder():
    """F-CAM's Table 1: a decoder from each of the six baselines for synthetic_lite0, and from each
    of the five that exist for the VGG-style classifier (its head has no CAM; Grad-CAM's seeds stand in)."""
    names = {p.stem for p in SHIPPED_DECODERS}
    five = ("gradcam", "gradcampp", "smoothgradcampp", "xgradcam", "layercam")
    assert {f"synthetic_lite0__{m}" for m in ("cam", *five)} <= names
    assert {f"synthetic_vgg__{m}" for m in five} <= names and "synthetic_vgg__cam" not in names


@pytest.mark.parametrize("path", SHIPPED_DECODERS, ids=lambda p: p.stem)
def test_every_shipped_decoder_loads_and_its_card_names_the_command_that_made_it(path):
    card = read_decoder_card(path)
    backbone_name, method = path.stem.split("__")
    assert card["backbone"] == backbone_name and card["base_method"] == method
    words = card["command"].split()
    assert words[:4] == ["python", "-m", "explorer", "train-fcam"] and words[4] == "--backbone"
    # A decoder from before a rename names its backbone's old name, and its card says so.
    assert words[5] == backbone_name or f"under the name {words[5]}" in card["lineage"]
    assert (f"--base-method {method}" in card["command"]) == (method != "cam")
    decoder = load_decoder(path, load_backbone(backbone_name, device="cpu"))
    assert parameter_count(decoder) == card["parameters"]


def test_shipped_table_d1_over_seeds_is_what_the_readme_says():
    """checkpoints/ablation/synthetic_lite0-short: three training seeds of the four loss variants on
    the sweeps' short schedule, scored on the evaluations' 300 test images; the README carries
    seeds.md verbatim, and every decoder has its card with the seed it claims."""
    root = Path(__file__).resolve().parents[1]
    folder = root / "checkpoints" / "ablation" / "synthetic_lite0-short"
    result = json.loads((folder / "seeds.json").read_text())
    assert result["seeds"] == [0, 1, 2] and result["split"] == "test" and result["images"] == 300
    assert [r["variant"] for r in result["rows"]] == ["seeds", "seeds+crf", "seeds+size", "seeds+crf+size"]
    assert result["settings"]["train_limit"] == 800 and result["settings"]["epochs"] == 3
    for row in result["rows"]:
        assert [p["seed"] for p in row["per_seed"]] == [0, 1, 2]
        assert all(f"{m}_ci" in p for p in row["per_seed"] for m in ("max_box_acc", "max_box_acc_v2", "pxap"))
    for seed in (0, 1, 2):
        run = json.loads((folder / f"seed{seed}" / "ablation.json").read_text())
        for row in run["rows"]:
            card = json.loads(Path(root / row["decoder"]).with_suffix(".json").read_text())
            assert card["seed"] == seed and card["settings"]["crf_weight"] == row["crf_weight"]
            assert card["settings"]["size_weight"] == row["size_weight"]
    assert (folder / "seeds.md").read_text().strip() in (root / "README.md").read_text()
    # the README's readings: the seed spread is as large as the variants' differences; every decoder
    # beats CAM + bilinear on boxes, loses to it on pixels, and stays below the centre control
    base = result["baseline_bilinear"]
    centre = next(c for c in result["controls"] if c["method"] == "control_centre")
    decoders = [p for r in result["rows"] for p in r["per_seed"]]
    means = [r["max_box_acc"] for r in result["rows"]]
    assert max(means) - min(means) < max(r["max_box_acc_sd"] for r in result["rows"])
    size = next(r for r in result["rows"] if r["variant"] == "seeds+size")["per_seed"]
    assert size[0]["max_box_acc_ci"][0] > size[1]["max_box_acc_ci"][1]
    assert sum(p["max_box_acc_ci"][0] > base["max_box_acc_ci"][1] for p in decoders) == 11
    assert all(p["pxap"] < base["pxap"] for p in decoders)
    assert sum(p["pxap_ci"][1] < base["pxap_ci"][0] for p in decoders) == 11
    assert all(p["max_box_acc"] < centre["max_box_acc"] and p["pxap"] < centre["pxap"] for p in decoders)


def test_shipped_short_sweeps_are_what_the_readme_says():
    """The n- and CRF-weight sweeps (checkpoints/fcam/sweeps/*-short): intervals on every row, no
    value separable from the rest, and the point both sweeps share (n- 0.3, lambda 2e-8) scored alike."""
    root = Path(__file__).resolve().parents[1] / "checkpoints" / "fcam" / "sweeps"
    n_sweep = json.loads((root / "synthetic_lite0-n-negative-short" / "sweep.json").read_text())
    crf_sweep = json.loads((root / "synthetic_lite0-crf-weight-short" / "sweep.json").read_text())
    for sweep in (n_sweep, crf_sweep):
        assert sweep["split"] == "validation" and sweep["val_images"] == 150
        assert all(f"{m}_ci" in r for r in sweep["rows"] + [sweep["baseline"]]
                   for m in ("max_box_acc", "max_box_acc_v2", "pxap"))
        assert "cannot rank" in sweep["ranking_note"]
    assert [r["value"] for r in n_sweep["rows"]] == [0.1, 0.3, 0.5, 0.7]
    assert crf_sweep["selected"] == 0 and n_sweep["selected"] == 0.7
    shared_n = next(r for r in n_sweep["rows"] if r["value"] == 0.3)
    shared_crf = next(r for r in crf_sweep["rows"] if r["value"] == 2e-8)
    assert {k: shared_n[k] for k in ("max_box_acc", "pxap")} == {k: shared_crf[k] for k in ("max_box_acc", "pxap")}
    # the README: on pixels eight rows (n- 0.3 and 0.5, every CRF weight) sit below CAM + bilinear, intervals clear
    below = [r for sweep in (n_sweep, crf_sweep) for r in sweep["rows"] if r["value"] not in (0.1, 0.7)]
    assert len(below) == 8 and all(r["pxap_ci"][1] < n_sweep["baseline"]["pxap_ci"][0] for r in below)


def test_positive_control_decoders_are_shipped_with_their_cards_and_the_readme_shows_their_table():
    """Every finished positive-control decoder ships with a card that names the command and the
    seed source, its evaluation names it, and the README's table is the summary written from them."""
    folder = Path(__file__).resolve().parents[1] / "checkpoints" / "fcam" / "positive_control"
    evaluations = sorted(folder.glob("*.eval.json"))
    assert evaluations, "the first positive-control decoder is shipped"
    for path in evaluations:
        result = json.loads(path.read_text(encoding="utf-8"))
        card = json.loads(path.with_name(path.name.replace(".eval.json", ".json")).read_text(encoding="utf-8"))
        assert card["seed_source"] == result["seed_source"] in ("object", "part")
        assert "fcam_positive_control.py" in card["command"] and "--seed-source" in card["command"]
        assert Path(result["decoder"]).name == path.name.replace(".eval.json", ".pt")
        assert set(result["paired"]) == {"fcam - bilinear", "fcam - gaussian", "gaussian - bilinear"}
        for row in result["rows"].values():
            assert row["max_box_acc_ci"][0] <= row["max_box_acc"] <= row["max_box_acc_ci"][1]
    readme = (folder.parents[2] / "README.md").read_text(encoding="utf-8")
    assert (folder / "summary.md").read_text(encoding="utf-8").strip() in readme
