"""The command line, run as a user runs it: a subprocess, its output and its files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from explorer import compute_cams, load_backbone, load_image
from explorer.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "explorer", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_help_lists_every_command_and_each_has_help():
    top = run("--help")
    assert top.returncode == 0
    for name in COMMANDS:
        assert name in top.stdout
        sub = run(name, "--help")
        assert sub.returncode == 0 and "usage" in sub.stdout, name


def test_cam_writes_a_labelled_grid_and_prints_top5(tmp_path):
    out = tmp_path / "grid.png"
    npy = tmp_path / "raw.npy"
    result = run("cam", "--image", "gallery:chelsea", "--backbone", "efficientnet_lite0",
                 "--methods", "gradcam,extendedcam", "--upsampler", "bilinear,gaussian",
                 "--sigma", "31.8,33.4", "--out", str(out), "--npy", str(npy))
    assert result.returncode == 0, result.stderr
    assert "1. " in result.stdout and "cat" in result.stdout.split("2. ")[0]
    sheet = Image.open(out)
    assert sheet.width > 2 * 224 and sheet.height > 2 * 224
    raw = np.load(npy)
    assert raw.shape == (2, 7, 7) and raw.dtype == np.float32
    # The file holds the raw grid maps the engine computes (signed Extended-CAM, not normalised).
    backbone = load_backbone("efficientnet_lite0")
    batch = backbone.preprocess(load_image("gallery:chelsea"))
    top1 = backbone.top_k(batch, 1)[0][0][0]  # the CLI's default target
    expected = compute_cams(backbone, batch, [top1], ["gradcam", "extendedcam"], relu="published")
    np.testing.assert_allclose(raw[0], expected["gradcam"][0].numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(raw[1], expected["extendedcam"][0].numpy(), rtol=1e-4, atol=1e-6)
    assert raw[1].max() < 0.9  # not min-max normalised (raw Extended-CAM of chelsea peaks at 0.22)


def test_bad_input_is_one_clear_line_not_a_traceback(tmp_path, capsys):
    """In-process (main() is what `python -m explorer` calls) to skip five torch imports;
    the subprocess test above covers the real entry point."""
    bad = tmp_path / "photo.png"
    bad.write_text("<html>not a picture</html>")
    cases = [
        ("--image", str(bad)),
        ("--image", "gallery:chelsea", "--methods", "magic"),
        ("--image", "gallery:chelsea", "--backbone", "vgg16"),
        ("--image", "gallery:chelsea", "--layer", "fc7"),
        ("--image", "gallery:chelsea", "--upsampler", "gaussian", "--sigma", "0"),
    ]
    for case in cases:
        code = main(["cam", *case, "--out", str(tmp_path / "x.png")])
        err = capsys.readouterr().err
        assert code == 2, (case, err)
        assert err.startswith("error: ") and "Traceback" not in err and len(err.splitlines()) == 1, err


def test_cam_writes_a_self_describing_npz_and_refuses_an_npy_of_mixed_grids(tmp_path, capsys):
    import json

    import numpy as np

    out = tmp_path / "maps.npz"
    code = main(["cam", "--image", "gallery:chelsea", "--methods", "gradcam,fullgrad", "--upsampler", "bilinear",
                 "--eigen-smooth", "--npz", str(out), "--out", str(tmp_path / "grid.png"), "--device", "cpu"])
    assert code == 0
    with np.load(out, allow_pickle=False) as f:
        settings = json.loads(str(f["settings"]))
        assert settings["eigen_smooth"] is True and settings["backbone"] == "efficientnet_lite0"
        assert f["grid/gradcam"].shape == (7, 7) and f["grid/fullgrad"].shape == (224, 224)
        assert f["pixels/fullgrad/bilinear"].shape == (224, 224)
    code = main(["cam", "--image", "gallery:chelsea", "--methods", "gradcam,fullgrad", "--upsampler", "bilinear",
                 "--npy", str(tmp_path / "maps.npy"), "--out", str(tmp_path / "grid.png"), "--device", "cpu"])
    assert code != 0 and "use --npz" in capsys.readouterr().err


def test_cam_aug_smooth_and_layercam_fused_over_layers(tmp_path, capsys):
    import json

    import numpy as np

    out = tmp_path / "maps.npz"
    code = main(["cam", "--image", "gallery:chelsea", "--methods", "gradcam,layercam", "--upsampler", "bilinear",
                 "--aug-smooth", "--fuse-layers", "blocks.10,blocks.15,head", "--npz", str(out),
                 "--out", str(tmp_path / "grid.png"), "--device", "cpu"])
    assert code == 0
    assert "layercam fused over blocks.10, blocks.15, head ((14, 14) grid)" in capsys.readouterr().out
    with np.load(out, allow_pickle=False) as f:
        settings = json.loads(str(f["settings"]))
        assert settings["aug_smooth"] is True and settings["fused_layers"] == ["blocks.10", "blocks.15", "head"]
        label = settings["methods"]["layercam"]["label"]
        assert label.startswith("LayerCAM") and "fused" in label
        assert f["grid/layercam"].shape == (14, 14) and f["grid/gradcam"].shape == (7, 7)
        assert 0 <= f["grid/layercam"].min() and f["grid/layercam"].max() <= np.tanh(2.0) + 1e-6
    code = main(["cam", "--image", "gallery:chelsea", "--methods", "gradcam", "--fuse-layers", "head,blocks.15",
                 "--out", str(tmp_path / "grid.png"), "--device", "cpu"])
    assert code != 0 and "add layercam" in capsys.readouterr().err
