"""Tests for explorer.erf: the lmfit Gaussian fit, the ERF estimate on networks whose ERF is known
exactly, hook/gradient hygiene, image sources, cards and the `erf` command.

The analytic networks are stacks of constant-weight 3x3 convolutions: the centre unit's input
gradient is then the n-fold convolution of a 3x3 box, whose variance per axis is
n * (3^2 - 1) / 12 = 2n/3 (Luo et al. 2016: the ERF tends to a Gaussian as layers are added).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.signal import convolve2d
from torch import nn

from explorer import backbones as bbmod
from explorer import cli, erf
from explorer.backbones import Backbone, BackboneError, BackboneSpec
from explorer.erf import ErfError, ErfFitError, estimate_erf, fit_erf, rotated_gaussian2d
from explorer.erf import sources as erf_sources
from explorer.presets import CardError, fitted_sigma

# ============================================================================ helpers


class Tripwire(nn.Module):
    """Identity until armed; then it raises, to test that hooks go even when a forward fails."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.armed:
            raise RuntimeError("tripwire")
        return x


class Unreachable(nn.Module):
    """Placed after the target layer: the ERF forward must stop before it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - must not run
        raise AssertionError("the forward ran past the target layer")


def const_conv(cin: int = 3, cout: int = 3, k: int = 3, stride: int = 1, padding: int = 1) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, k, stride=stride, padding=padding, bias=False)
    nn.init.constant_(conv.weight, 1.0 / (cin * k * k))  # each output = mean of the window
    return conv


def box_backbone(n: int, size: tuple[int, int] = (48, 48), stride2: bool = False) -> Backbone:
    """n constant 3x3 convs (+ a 2x2 stride-2 mean when stride2), then modules that must not run."""
    mods: list[nn.Module] = [Tripwire()] + [const_conv() for _ in range(n)]
    if stride2:
        mods.append(const_conv(k=2, stride=2, padding=0))
    target = str(len(mods) - 1)
    mods.append(Unreachable())
    return make_backbone(nn.Sequential(*mods), size, {"out": target})


def relu_backbone(size: tuple[int, int] = (32, 32), seed: int = 0) -> Backbone:
    """A small random ReLU net: its input gradient depends on the input and has both signs."""
    torch.manual_seed(seed)
    model = nn.Sequential(Tripwire(), nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                          nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(), Unreachable())
    return make_backbone(model, size, {"out": "6", "early": "2"})


def make_backbone(model: nn.Module, size: tuple[int, int], layers: dict[str, str]) -> Backbone:
    return Backbone(name="test", model=model.eval(), weights="random", weights_label="test", input_size=size,
                    mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), class_names=["a", "b"], layers=layers,
                    default_layer="out")


def box_kernel(n: int) -> np.ndarray:
    """The exact n-fold convolution of the normalised 3x3 box, (2n+1) x (2n+1)."""
    kernel = np.ones((1, 1))
    for _ in range(n):
        kernel = convolve2d(kernel, np.ones((3, 3)) / 9.0)
    return kernel


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def noise(n: int, size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, *size, generator=torch.Generator().manual_seed(seed))


def gaussian_map(shape, sx, sy, cx, cy, amplitude=1000.0, offset=0.0, rotation=0.0, noise_frac=0.02, seed=0):
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    z = rotated_gaussian2d(xx, yy, amplitude, cx, cy, sx, sy, rotation) + offset
    peak = amplitude / (2 * math.pi * sx * sy)
    return z + np.random.default_rng(seed).normal(0.0, noise_frac * peak, z.shape)


# ============================================================================ (1) the fit


@pytest.mark.parametrize("shape, sx, sy, cx, cy", [
    ((224, 224), 36.0, 33.0, 111.5, 111.5),
    ((224, 224), 12.0, 12.0, 80.0, 140.0),
    ((120, 200), 10.0, 20.0, 90.0, 50.0),   # non-square, sigma_y > sigma_x
    ((299, 299), 50.0, 40.0, 149.0, 149.0),  # inception-sized
    ((60, 150), 25.0, 6.0, 70.3, 31.7),      # non-square the other way, off-grid centre
])
@pytest.mark.parametrize("offset", [False, True])
def test_fit_recovers_sigmas_and_centre(shape, sx, sy, cx, cy, offset):
    level = 0.3 * 1000.0 / (2 * math.pi * sx * sy) if offset else 0.0
    fit = fit_erf(gaussian_map(shape, sx, sy, cx, cy, offset=level), offset=offset)
    assert fit.sigma_x == pytest.approx(sx, rel=0.02)
    assert fit.sigma_y == pytest.approx(sy, rel=0.02)
    assert abs(fit.centre_x - cx) < 0.02 * sx and abs(fit.centre_y - cy) < 0.02 * sy
    assert fit.r2 > 0.95 and fit.success and fit.nfev > 0
    assert fit.surface.shape == shape and fit.residual.shape == shape
    assert fit.options == {"offset": offset, "rotation": False}
    assert fit.rotation is None
    if offset:
        assert fit.offset == pytest.approx(level, rel=0.05)
    else:
        assert fit.offset is None
    for name in ("sigma_x", "sigma_y", "centre_x", "centre_y", "amplitude"):
        assert fit.stderr[name] is not None and fit.stderr[name] > 0


def test_fit_rotation_and_its_canonical_form():
    z = gaussian_map((160, 200), 30.0, 12.0, 100.0, 80.0, rotation=0.5)
    fit = fit_erf(z, rotation=True)
    assert fit.rotation == pytest.approx(0.5, abs=0.01)
    assert (fit.sigma_x, fit.sigma_y) == pytest.approx((30.0, 12.0), rel=0.02)
    # The same ellipse turned by more than 45 degrees is reported with its axes swapped, so
    # sigma_x is always the axis nearest the horizontal and rotation stays in [-pi/4, pi/4].
    fit = fit_erf(gaussian_map((160, 200), 30.0, 12.0, 100.0, 80.0, rotation=1.3), rotation=True, offset=True)
    assert fit.rotation == pytest.approx(1.3 - math.pi / 2, abs=0.01)
    assert (fit.sigma_x, fit.sigma_y) == pytest.approx((12.0, 30.0), rel=0.02)
    assert fit.options == {"offset": True, "rotation": True}


def test_fit_starts_from_the_moments_and_converges_in_few_evaluations_on_a_large_map():
    """Work, not wall-clock time: started from the map's moments, the fit of a 299 x 299 map needs a
    few dozen model evaluations (one evaluation is one pass over the 89,401 pixels)."""
    fit = fit_erf(gaussian_map((299, 299), 45.0, 38.0, 149.0, 149.0), offset=True, rotation=True)
    assert fit.success and fit.nfev <= 60, fit.nfev
    assert (fit.sigma_x, fit.sigma_y) == pytest.approx((45.0, 38.0), rel=0.01)
    assert (fit.centre_x, fit.centre_y) == pytest.approx((149.0, 149.0), abs=0.5)


# ============================================================================ (5) failing fits


@pytest.mark.parametrize("bad", [
    np.zeros((64, 64)),                                                  # all zero: no peak
    np.random.default_rng(1).normal(size=(64, 64)),                      # pure noise
    np.abs(np.random.default_rng(2).normal(size=(64, 64))),              # |noise|
    np.full((32, 32), np.nan),                                           # not finite
    -gaussian_map((64, 64), 8.0, 8.0, 32.0, 32.0, noise_frac=0.0),       # a dip, not a peak
])
def test_a_failing_fit_raises_never_returns(bad):
    with pytest.raises(ErfFitError, match="(?i)fit|converge"):
        fit_erf(bad)


def test_unconverged_lmfit_result_raises(monkeypatch):
    import lmfit

    original = lmfit.Model.fit

    def not_converged(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        result.success = False
        result.message = "maximum number of function evaluations exceeded"
        return result

    monkeypatch.setattr(lmfit.Model, "fit", not_converged)
    with pytest.raises(ErfFitError, match="did not converge: maximum number"):
        fit_erf(gaussian_map((64, 64), 8.0, 8.0, 32.0, 32.0))


# ============================================================================ (2) analytic ERFs


def test_box_stack_erf_is_the_exact_discrete_kernel():
    n, size = 12, (48, 48)
    backbone = box_backbone(n, size)
    est = estimate_erf(backbone, "out", noise(2, size), batch_size=2)
    assert est.grid == (48, 48) and est.centre_cell == (24, 24) and est.centre_px == (24.0, 24.0)
    expected = np.zeros(size)
    expected[24 - n:24 + n + 1, 24 - n:24 + n + 1] = 3 * box_kernel(n)  # 3 input channels summed
    np.testing.assert_allclose(est.map, expected, rtol=1e-5, atol=1e-12)
    # Its variance per axis is exactly 2n/3 ...
    yy, xx = np.mgrid[0:48, 0:48]
    w = est.map / est.map.sum()
    assert float((w * (xx - 24.0) ** 2).sum()) == pytest.approx(2 * n / 3, rel=1e-5)
    # ... and the fitted Gaussian's sigma is within a few % of sqrt(2n/3) (the box sum's negative
    # excess kurtosis, -1.5/n, biases a least-squares Gaussian slightly wide).
    fit = fit_erf(est.map)
    assert fit.sigma_x == pytest.approx(math.sqrt(2 * n / 3), rel=0.03)
    assert fit.sigma_y == pytest.approx(math.sqrt(2 * n / 3), rel=0.03)
    assert (fit.centre_x, fit.centre_y) == pytest.approx((24.0, 24.0), abs=1e-3)
    assert fit.r2 > 0.999


def test_stride2_even_grid_centre_convention_non_square():
    n, size = 8, (24, 40)
    backbone = box_backbone(n, size, stride2=True)
    est = estimate_erf(backbone, "out", noise(1, size))
    # 12 x 20 grid: the centre cell of an even grid is (h // 2, w // 2); its pixel centre is
    # ((j + 0.5) * W / w - 0.5, (i + 0.5) * H / h - 0.5) = (20.5, 12.5).
    assert est.grid == (12, 20) and est.centre_cell == (6, 10)
    assert est.centre_px == (20.5, 12.5)
    expected = np.zeros(size)
    kernel = convolve2d(box_kernel(n), np.ones((2, 2)) / 4.0)
    expected[12 - n:12 + n + 2, 20 - n:20 + n + 2] = 3 * kernel
    np.testing.assert_allclose(est.map, expected, rtol=1e-5, atol=1e-12)
    fit = fit_erf(est.map)
    assert (fit.centre_x, fit.centre_y) == pytest.approx(est.centre_px, abs=1e-3)
    # variance 2n/3 + 1/4 (the 2-tap mean adds a uniform {0, 1}'s 1/4)
    assert fit.sigma_x == pytest.approx(math.sqrt(2 * n / 3 + 0.25), rel=0.03)


def test_one_by_one_layer_is_refused():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1))
    backbone = make_backbone(model, (16, 16), {"out": "1"})
    with pytest.raises(ErfError, match="1x1"):
        estimate_erf(backbone, "out", noise(1, (16, 16)))


# ============================================================================ (3) hygiene


def test_no_hooks_no_param_grad_state_kept_under_no_grad():
    backbone = relu_backbone()
    model = backbone.model
    frozen = model[1].weight
    frozen.requires_grad_(False)  # a flag the caller set must survive
    before = hook_count(model)
    calls: list[tuple[int, int | None, float]] = []
    with torch.no_grad():
        est = estimate_erf(backbone, "out", noise(6, (32, 32)), batch_size=2,
                           progress=lambda done, total, m: calls.append((done, total, float(m.sum()))))
    assert hook_count(model) == before
    assert all(p.grad is None for p in model.parameters())
    assert not model.training
    assert frozen.requires_grad is False and model[3].weight.requires_grad is True
    assert [c[0] for c in calls] == [2, 4, 6] and all(c[1] == 6 for c in calls)
    assert est.n_images == 6 and not est.interrupted and est.map.dtype == np.float64
    assert est.map.shape == (32, 32) and est.map.sum() > 0
    # a train-mode model stays in train mode
    model.train()
    estimate_erf(backbone, "out", noise(1, (32, 32)))
    assert model.training and hook_count(model) == before
    model.eval()


def test_hooks_removed_after_an_exception_and_after_an_early_stop():
    backbone = relu_backbone()
    before = hook_count(backbone.model)
    backbone.model[0].armed = True
    with pytest.raises(RuntimeError, match="tripwire"):
        estimate_erf(backbone, "out", noise(2, (32, 32)))
    backbone.model[0].armed = False
    assert hook_count(backbone.model) == before
    # a second batch of another size: a clear error, hooks gone
    with pytest.raises(ErfError, match="one size"):
        estimate_erf(backbone, "out", [noise(2, (32, 32)), noise(2, (40, 40))])
    assert hook_count(backbone.model) == before
    # an early stop via should_stop returns what was accumulated, marked interrupted
    seen: list[int] = []
    est = estimate_erf(backbone, "out", erf.noise_batches(10, 2, (32, 32), seed=0), batch_size=2,
                       progress=lambda done, total, m: seen.append(done), should_stop=lambda: len(seen) >= 2)
    assert est.interrupted and est.n_images == 4 and est.n_planned == 10 and seen == [2, 4]
    assert hook_count(backbone.model) == before
    full = estimate_erf(backbone, "out", erf.noise_batches(4, 2, (32, 32), seed=0))
    np.testing.assert_allclose(est.map, full.map, rtol=1e-12)
    # a stop asked for once every image is done is no interruption
    seen.clear()
    done = estimate_erf(backbone, "out", erf.noise_batches(4, 2, (32, 32), seed=0),
                        progress=lambda n, total, m: seen.append(n), should_stop=lambda: seen[-1] >= 4)
    assert not done.interrupted and done.n_images == 4


def test_ctrl_c_keeps_what_was_accumulated_when_interruptible():
    backbone = relu_backbone()

    def batches():
        yield noise(3, (32, 32))
        raise KeyboardInterrupt

    est = estimate_erf(backbone, "out", batches(), interruptible=True)
    assert est.interrupted and est.n_images == 3
    with pytest.raises(KeyboardInterrupt):
        estimate_erf(backbone, "out", batches())
    assert hook_count(backbone.model) == 0


def test_running_mean_snapshots_at_powers_of_two():
    backbone = relu_backbone()
    images = noise(6, (32, 32), seed=3)
    est = estimate_erf(backbone, "out", images, batch_size=4)
    assert [n for n, _ in est.snapshots] == [1, 2, 4, 6]
    singles = [estimate_erf(backbone, "out", images[k:k + 1]).map for k in range(6)]
    for n, snap in est.snapshots:
        np.testing.assert_allclose(snap, np.mean(singles[:n], axis=0), rtol=1e-5, atol=1e-9)  # float32 batched
    rows = erf.convergence(est)
    assert [r["n"] for r in rows] == [1, 2, 4, 6]
    assert all(set(r) >= {"n", "r2", "sigma_x", "sigma_y", "error"} for r in rows)
    assert all((r["r2"] is None) == (r["error"] is not None) for r in rows)


# ============================================================================ (4) modes


def test_all_four_modes():
    backbone = relu_backbone()
    images = noise(4, (32, 32), seed=5)
    maps = {mode: estimate_erf(backbone, "out", images, mode=mode).map for mode in erf.MODES}
    assert (maps["abs"] >= 0).all() and (maps["relu"] >= 0).all() and (maps["square"] >= 0).all()
    assert (maps["signed"] < 0).any() and (maps["signed"] > 0).any()
    assert (maps["abs"] + 1e-12 >= np.abs(maps["signed"])).all()  # |sum| <= sum of |.|
    assert (maps["relu"] <= maps["abs"] + 1e-12).all()
    with pytest.raises(ErfError, match="mode"):
        estimate_erf(backbone, "out", images, mode="cube")


# ============================================================================ image sources


def test_noise_batches_are_seeded_and_sized():
    src = erf.noise_batches(5, 2, (8, 12), seed=7)
    batches = list(src)
    assert [b.shape[0] for b in batches] == [2, 2, 1] and len(src) == 3 and src.total == 5
    assert batches[0].shape[1:] == (3, 8, 12)
    torch.testing.assert_close(torch.cat(list(src)), torch.cat(batches))  # re-iterable, same batches


def test_gallery_batches_are_preprocessed_crops():
    backbone = relu_backbone(size=(32, 32))
    src = erf.gallery_batches(backbone, 5, 4, seed=1)
    batches = list(src)
    assert [tuple(b.shape) for b in batches] == [(4, 3, 32, 32), (1, 3, 32, 32)]
    assert src.name == "gallery" and src.total == 5
    assert all(b.min() >= -1.0 and b.max() <= 1.0 for b in batches)  # mean 0.5, std 0.5
    torch.testing.assert_close(torch.cat(list(src)), torch.cat(batches))


def test_folder_batches_skip_and_name_unreadable_files(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.jpg"):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    backbone = relu_backbone(size=(32, 32))
    src = erf.folder_batches(backbone, tmp_path, 5, 2, seed=0)
    assert sorted(src.skipped) == ["broken.png", "notes.txt"] and "skipped 2" in src.note
    assert sum(b.shape[0] for b in src) == 5
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ErfError, match="empty"):
        erf.folder_batches(backbone, empty, 5, 2)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "x.png").write_text("nope")
    with pytest.raises(ErfError, match="could be read"):
        erf.folder_batches(backbone, junk, 5, 2)


# ============================================================================ (7) cards


def _small_estimate_and_fit():
    backbone = box_backbone(6, (32, 32))
    est = estimate_erf(backbone, "out", noise(1, (32, 32)))
    return est, fit_erf(est.map, offset=True)


def test_card_round_trip_and_damaged_cards(tmp_path):
    est, fit = _small_estimate_and_fit()
    path = tmp_path / "test__out.json"
    card = erf.save_erf_card(est, fit, path, "python -m explorer erf --test")
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temporary file
    loaded = erf.load_erf_card(path)
    assert loaded == json.loads(json.dumps(card))
    for key in ("backbone", "layer", "weights", "mode", "source", "n_images", "input_size", "centre_cell",
                "sigma_x", "sigma_y", "sigma_x_stderr", "sigma_y_stderr", "centre_x", "centre_y",
                "amplitude", "amplitude_stderr", "offset", "r2", "fit_options", "command", "seconds",
                "created", "torch", "lmfit"):
        assert key in loaded, key
    assert "rotation" not in loaded
    assert loaded["sigma_x"] == pytest.approx(fit.sigma_x) and loaded["command"] == "python -m explorer erf --test"
    assert loaded["centre_cell"] == {"row": 16, "col": 16, "x_px": 16.0, "y_px": 16.0}
    preset = fitted_sigma("test", "out", directory=tmp_path)
    assert preset is not None and preset.sigma_x == pytest.approx(fit.sigma_x)

    text = path.read_text()
    path.write_text(text[: len(text) // 2])  # truncated
    with pytest.raises(CardError):
        erf.load_erf_card(path)
    with pytest.raises(CardError):
        fitted_sigma("test", "out", directory=tmp_path)
    damaged = dict(card)
    del damaged["sigma_x"]
    path.write_text(json.dumps(damaged))
    with pytest.raises(CardError, match="sigma_x"):
        erf.load_erf_card(path)
    path.write_text(json.dumps({**card, "sigma_y": -3.0}))
    with pytest.raises(CardError, match="impossible"):
        erf.load_erf_card(path)
    path.write_text(json.dumps({**card, "sigma_y": "wide"}))
    with pytest.raises(CardError):
        erf.load_erf_card(path)
    with pytest.raises(CardError):
        erf.load_erf_card(tmp_path / "missing.json")


# ============================================================================ (6) the CLI


def _tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 5))


@pytest.fixture
def tiny_registered(monkeypatch):
    """A registered 40x40 backbone, so the CLI runs end to end in a fraction of a second."""
    def no_file():
        raise BackboneError("no pretrained weights for tiny")

    def zero_model() -> nn.Module:
        model = _tiny_model()
        nn.init.zeros_(model[0].weight)  # the input never reaches the layer: an all-zero ERF
        return model

    for name, build in (("tiny", _tiny_model), ("tiny_zero", zero_model)):
        monkeypatch.setitem(bbmod.REGISTRY, name, BackboneSpec(
            name=name, description="test", build=build, pretrained_file=no_file, pretrained_label="none",
            input_size=(40, 40), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
            layers=lambda: ({"out": "5", "early": "1", "pool": "6"}, {}), default_layer="out",
            class_names=lambda: list("abcde")))


def test_cli_erf_writes_card_and_png(tmp_path, capsys, tiny_registered):
    out = tmp_path / "tiny__out.json"
    argv = ["erf", "--backbone", "tiny", "--weights", "random", "--layer", "out", "--images", "6",
            "--source", "noise", "--batch-size", "4", "--seed", "1", "--offset", "--out", str(out)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "R²" in printed and "sigma_x" in printed
    card = erf.load_erf_card(out)
    assert card["command"] == "python -m explorer " + " ".join(argv)
    assert card["n_images"] == 6 and card["source"] == "noise" and card["fit_options"]["offset"] is True
    assert not card["interrupted"]
    png = out.with_suffix(".png")
    assert png.stat().st_size > 1000 and Image.open(png).format == "PNG"
    preset = fitted_sigma("tiny", "out", directory=tmp_path)
    assert preset is not None and preset.sigma_x == pytest.approx(card["sigma_x"])
    # gallery and folder sources, --rotation and an explicit --png path
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 60, 3), dtype=np.uint8)).save(photos / "p.png")
    for source in ("gallery", f"folder:{photos}"):
        assert cli.main(["erf", "--backbone", "tiny", "--weights", "random", "--images", "3", "--source", source,
                         "--rotation", "--out", str(tmp_path / "g.json"), "--png", str(tmp_path / "g.png")]) == 0
        assert erf.load_erf_card(tmp_path / "g.json")["fit_options"]["rotation"] is True
        assert (tmp_path / "g.png").is_file()


def test_cli_erf_user_errors_exit_2(tmp_path, capsys, tiny_registered):
    base = ["erf", "--weights", "random", "--images", "2", "--source", "noise", "--out", str(tmp_path / "x.json")]
    assert cli.main(base + ["--backbone", "tiny", "--layer", "pool"]) == 2
    assert "1x1" in capsys.readouterr().err
    assert cli.main(base + ["--backbone", "tiny_zero"]) == 2
    assert "fit" in capsys.readouterr().err
    assert cli.main(base + ["--backbone", "tiny", "--source", "webcam"]) == 2
    assert "source" in capsys.readouterr().err
    assert cli.main(base + ["--backbone", "tiny", "--source", f"folder:{tmp_path / 'nowhere'}"]) == 2
    assert not (tmp_path / "x.json").exists()


def test_cli_erf_ctrl_c_fits_and_marks_what_was_accumulated(tmp_path, capsys, tiny_registered, monkeypatch):
    original = erf.noise_batches

    def interrupted_noise(n, batch_size, input_size, seed=0):
        src = original(n, batch_size, input_size, seed)
        make_batches = src.make

        def make():
            it = make_batches()
            yield next(it)
            yield next(it)
            raise KeyboardInterrupt

        src.make = make
        return src

    monkeypatch.setattr(erf_sources, "noise_batches", interrupted_noise)  # what image_source calls
    out = tmp_path / "tiny__out.json"
    assert cli.main(["erf", "--backbone", "tiny", "--weights", "random", "--images", "10", "--batch-size", "2",
                     "--source", "noise", "--out", str(out)]) == 0
    assert "interrupted after 4 of 10" in capsys.readouterr().out
    card = erf.load_erf_card(out)
    assert card["interrupted"] is True and card["n_images"] == 4 and card["n_planned"] == 10


def test_cam_default_sigma_comes_from_the_presets(tmp_path, capsys, tiny_registered, monkeypatch):
    import explorer.presets as presets

    # ERF cards are read from a temporary folder: a fitted card there becomes cam's default sigma
    monkeypatch.setattr(cli, "sigma_presets", lambda b, layer, **kw: presets.sigma_presets(b, layer, directory=tmp_path, **kw))
    out = tmp_path / "tiny__out.json"
    assert cli.main(["erf", "--backbone", "tiny", "--weights", "random", "--images", "4", "--source", "noise",
                     "--out", str(out)]) == 0
    sx = erf.load_erf_card(out)["sigma_x"]
    capsys.readouterr()
    cam = ["cam", "--image", "gallery:chelsea", "--backbone", "tiny", "--weights", "random",
           "--methods", "gradcam", "--upsampler", "gaussian", "--out", str(tmp_path / "g.png")]
    assert cli.main(cam) == 0
    printed = capsys.readouterr().out
    assert "sigma preset: fitted ERF" in printed and f"{sx:.1f}" in printed
    assert cli.main(cam + ["--layer", "early"]) == 0  # no card for that layer: the paper's values
    assert "sigma preset: Extended-CAM paper" in capsys.readouterr().out


# ============================================================================ acceptance


def test_random_vgg16_conv5_3_erf_matches_the_reference():
    """offline-resources.md: random VGG16 conv5_3, |gradient| over 32 noise images: R² ~0.99,
    sigma ~36 px. Target: R² >= 0.98, sigma_x, sigma_y in [28, 44].

    ~13 s on the 2-core CPU when idle (~45 s when it is shared): under a minute, so it is not
    marked slow and runs by default (measured: R² 0.988, sigma 36.06, 36.23)."""
    torch.manual_seed(0)
    backbone = bbmod.load_backbone("vgg16", "random", device="cpu")
    est = estimate_erf(backbone, "conv5_3", erf.noise_batches(32, 8, backbone.input_size, seed=0))
    assert est.grid == (14, 14) and est.centre_cell == (7, 7) and est.centre_px == (119.5, 119.5)
    fit = fit_erf(est.map)
    assert fit.r2 >= 0.98
    assert 28 <= fit.sigma_x <= 44 and 28 <= fit.sigma_y <= 44
    assert abs(fit.centre_x - 119.5) < 3 and abs(fit.centre_y - 119.5) < 3
