"""Hostile and broken inputs, end to end: every file of the image corpus through the app (AppTest)
and the command line, untrusted checkpoints and cards, damaged datasets, and numerically extreme
maps. Nothing may crash the server, leave it unusable, run code it was handed, or let a NaN or an
infinity reach a view or a metric.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from explorer import compute_cams, load_backbone, normalise, upsample, views
from explorer.backbones import BackboneError
from explorer.cli import main
from explorer.datasets import make_synthetic
from explorer.evaluate import EvalConfig, evaluate
from explorer.images import ImageError, load_image
from explorer.metrics import BoxEvaluator, PixelEvaluator, average_drop_increase, thresholds
from tests.test_images import ERROR_CASES, SUCCESS_CASES

ROOT = Path(__file__).resolve().parents[2]


def widget(name: str) -> str:
    return f"cam.widget.{name}"


# ------------------------------------------------------------------------------ the corpus

def _extra_hostile() -> dict[str, tuple[str, bytes]]:
    """Files the image tests do not build, each of which must be refused (name, bytes)."""
    import io
    import pickle
    import struct

    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (40, 40), (200, 30, 30)).save(png, format="PNG")
    broken_crc = bytearray(png.getvalue())
    idat = broken_crc.index(b"IDAT")
    broken_crc[idat + 6] ^= 0xFF  # a flipped byte inside the compressed pixels
    gif_screen = b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\x00\x00\x00" + b";"
    tiff_huge = (b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 2)
                 + struct.pack("<HHII", 256, 4, 1, 30000) + struct.pack("<HHII", 257, 4, 1, 30000) + b"\x00" * 4)
    return {
        "svg_renamed_png": ("drawing.png", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'),
        "png_corrupt_pixels": ("crc.png", bytes(broken_crc)),
        "jpeg_start_marker_only": ("start.jpg", b"\xff\xd8\xff"),
        "gif_65535_screen_no_frame": ("screen.gif", gif_screen),
        "tiff_header_30000_square": ("huge.tif", tiff_huge),
        "python_pickle_renamed_jpg": ("model.jpg", pickle.dumps({"weights": [1, 2, 3]})),
    }


def corpus_files(tmp_path: Path) -> tuple[list[tuple[str, Path]], list[tuple[str, Path]]]:
    """The image corpus of tests/test_images.py written as files: (bad, good) lists of (id, path).
    Cases that are not files (an int, a gallery name, a stream) stay in test_images.py."""
    bad, good = [], []
    for case_id, builder, kwargs, _words in ERROR_CASES:
        if kwargs:  # an error only under a tighter limit than the app's
            continue
        folder = tmp_path / "bad" / case_id
        folder.mkdir(parents=True)
        source = builder(folder)
        if isinstance(source, (bytes, bytearray)):
            path = folder / "upload.png"
            path.write_bytes(bytes(source))
            source = path
        if isinstance(source, Path) and source.is_file():
            bad.append((case_id, source))
    for case_id, (name, data) in _extra_hostile().items():
        path = tmp_path / "bad" / f"extra_{case_id}" / name
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        bad.append((f"extra_{case_id}", path))
    for param in SUCCESS_CASES:
        builder, _size, _check = param.values
        folder = tmp_path / "good" / param.id
        folder.mkdir(parents=True)
        try:
            source = builder(folder)
        except Exception:  # a codec this Pillow build lacks (the corpus marks those cases)
            continue
        if isinstance(source, (str, Path)) and Path(source).is_file():
            good.append((param.id, Path(source)))
    return bad, good


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return corpus_files(tmp_path_factory.mktemp("corpus"))


def test_the_corpus_has_at_least_fifty_files(corpus):
    bad, good = corpus
    assert len(bad) + len(good) >= 50, (len(bad), len(good))
    assert len(bad) >= 25 and len(good) >= 25
    for _case_id, path in bad:
        with pytest.raises(ImageError):
            load_image(path)


def test_every_corpus_file_gets_a_clear_message_in_the_app_and_the_app_keeps_working(corpus):
    """One session uploads every file in turn: a bad one shows one error and keeps the previous
    image (whose predictions still show); a good one replaces it. No exception reaches the page."""
    bad, good = corpus
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    at.radio(key=widget("image_source")).set_value("upload")
    at.run()
    shown_errors = 0
    from explorer.ui import UPLOAD_TYPES

    for case_id, path in bad + good:
        # The uploader takes only its extensions (as the browser's file dialog does); another file
        # reaches the app only renamed, so it is sent renamed: the decoder reads content, not names.
        name = path.name if path.suffix.lower().lstrip(".") in UPLOAD_TYPES else f"{path.name}.png"
        at.file_uploader(key=widget("upload")).set_value((name, path.read_bytes(), "application/octet-stream"))
        at.run()
        assert not at.exception, (case_id, [e.value for e in at.exception])
        errors = [str(e.value) for e in at.error]
        if (case_id, path) in bad:
            assert len(errors) == 1, (case_id, errors)
            assert "Traceback" not in errors[0] and errors[0].strip().endswith("."), (case_id, errors[0])
            shown_errors += 1
        else:
            assert not errors, (case_id, errors)
        assert len(at.dataframe) == 1 and len(at.dataframe[0].value) == 5, case_id  # the top-5 still shows
    assert shown_errors == len(bad)


def test_every_bad_file_gives_one_error_line_on_the_command_line(corpus, tmp_path, capsys):
    bad, good = corpus
    for case_id, path in bad:
        assert main(["cam", "--image", str(path), "--out", str(tmp_path / "x.png")]) == 2, case_id
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], (case_id, err)
    for case_id, path in good[:3]:
        assert main(["cam", "--image", str(path), "--methods", "gradcam", "--upsampler", "bilinear",
                     "--out", str(tmp_path / f"{case_id}.png")]) == 0, case_id
    capsys.readouterr()


def test_huge_headers_are_refused_before_decoding(tmp_path):
    """20000 x 20000 and 1 x 1 declared sizes: refused from the header, in milliseconds."""
    import struct
    import time
    import zlib

    def header_only(width: int, height: int) -> bytes:
        def chunk(kind: bytes, payload: bytes) -> bytes:
            return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")

    start = time.perf_counter()
    with pytest.raises(ImageError, match="too large"):
        load_image(header_only(20_000, 20_000))
    assert time.perf_counter() - start < 1.0
    with pytest.raises(ImageError):
        load_image(header_only(1, 1))


# ------------------------------------------------------------------------------ checkpoints

class _Payload:
    def __reduce__(self):
        return (os.system, ("touch /tmp/explorer-reliability-pwned",))


def test_a_crafted_pickle_is_refused_and_never_run(tmp_path):
    marker = Path("/tmp/explorer-reliability-pwned")
    marker.unlink(missing_ok=True)
    path = tmp_path / "evil.pt"
    torch.save({"weight": _Payload()}, path)
    with pytest.raises(BackboneError, match="Refused"):
        load_backbone("synthetic_cnn", path)
    assert not marker.exists()
    assert main(["cam", "--image", "gallery:chelsea", "--backbone", "synthetic_cnn", "--weights", str(path)]) == 2
    assert not marker.exists()


def test_wrong_architecture_names_the_keys(tmp_path):
    path = tmp_path / "lite0.pt"
    torch.save(load_backbone("efficientnet_lite0", "random").model.state_dict(), path)
    with pytest.raises(BackboneError) as err:
        load_backbone("synthetic_cnn", path)
    message = str(err.value)
    assert "do not fit synthetic_cnn" in message and "missing key(s)" in message and "stage1" in message


def test_damaged_cards_are_reported_not_ignored(tmp_path):
    from explorer import presets
    from explorer.fcam import FcamError, read_decoder_card
    from explorer.train import read_card

    card = tmp_path / "card.json"
    card.write_text('{"backbone": "vgg16", "sigma_x": ')
    with pytest.raises(Exception, match="damaged|cannot|invalid"):
        read_card(card)
    with pytest.raises(FcamError, match="damaged"):
        read_decoder_card(card)
    erf_dir = tmp_path / "erf"
    erf_dir.mkdir()
    (erf_dir / "vgg16__conv5_3.json").write_text("{broken")
    with pytest.raises(presets.CardError, match="damaged"):
        presets.sigma_presets("vgg16", "conv5_3", directory=erf_dir, weights="random")


# ------------------------------------------------------------------------------ datasets

def test_a_damaged_dataset_is_evaluated_with_what_can_be_read(tmp_path):
    """Malformed metadata lines, a missing image, a path leaving the dataset and a mask of the
    wrong size: each is reported with its file and line, the rest is evaluated, and the summary
    counts what was skipped."""
    from PIL import Image

    data = make_synthetic(tmp_path / "synthetic", seed=4, sizes={"train": 0, "val": 0, "test": 8})
    meta = data / "metadata" / "SYNTHETIC_MASKS" / "test"
    lines = (meta / "localization.txt").read_text().split("\n")
    ids = (meta / "image_ids.txt").read_text().split("\n")
    lines.append(f"{ids[0]},../../etc/passwd,")  # leaves the dataset folder
    lines.append("not,enough")  # malformed
    (meta / "localization.txt").write_text("\n".join(lines))
    (data / ids[1]).unlink()  # missing image (ids are paths relative to the dataset folder)
    first_mask = next(line.split(",")[1] for line in lines if line.startswith(ids[2]))
    Image.new("1", (50, 50)).save(data / first_mask)  # wrong size
    config = EvalConfig(dataset=f"synthetic:{data}", backbone="synthetic_cnn", weights="random",
                        methods=("gradcam",), upsamplers=("bilinear",), threshold_interval=0.01, confidence=False)
    summary = evaluate(config, tmp_path / "eval", device="cpu")
    assert summary.num_images < 8 and summary.num_images >= 4
    reasons = " ".join(s["reason"] for s in summary.skipped)
    stored = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert len(stored["skipped"]) == len(summary.skipped) >= 1
    assert all(math.isfinite(v) for row in summary.rows for v in row.values() if isinstance(v, float))
    assert "localization.txt line" in reasons  # malformed lines and the escaping path: file and line
    assert "'../../etc/passwd' leaves the dataset folder ('..' is not allowed)" in reasons
    assert f"file not found: {data / ids[1]}" in reasons  # the missing image, named
    assert "50x50" in reasons  # the mask of the wrong size
    assert summary.num_images == 5  # less the escaping line's image, the missing one and the wrong mask's


# ------------------------------------------------------------------------------ numerics

@pytest.mark.parametrize("kind", ["zeros", "constant", "huge", "tiny"])
def test_degenerate_maps_stay_finite_through_every_stage(kind):
    grid = {"zeros": torch.zeros(2, 7, 7), "constant": torch.full((2, 7, 7), 3.5),
            "huge": torch.full((2, 7, 7), 1e30) * torch.rand(2, 7, 7), "tiny": torch.rand(2, 7, 7) * 1e-30}[kind]
    for up in ("nearest", "bilinear", "bicubic", "gaussian"):
        for sigma in ((0.1, 0.1), (10_000.0, 10_000.0), (31.78, 33.36)):
            for norm in ("none", "minmax", "max"):
                pixels = normalise(upsample(grid, 224, up, sigma=sigma if up == "gaussian" else None), norm)
                if norm != "none":
                    assert torch.isfinite(pixels).all(), (kind, up, sigma, norm)
                    assert float(pixels.abs().max()) <= 1.0 + 1e-6
    maps = normalise(upsample(grid, 224, "bilinear"), "minmax").numpy().astype(np.float64)
    boxes = BoxEvaluator(thresholds(0.01), keep_records=False)
    boxes.accumulate(maps, [np.array([[10, 10, 100, 100]])] * 2)
    assert math.isfinite(boxes.compute().max_box_acc)
    pixel = PixelEvaluator(thresholds(0.01))
    masks = np.zeros((2, 224, 224), bool)
    masks[:, 50:90, 50:90] = True
    pixel.accumulate(maps, masks)
    assert math.isfinite(pixel.compute().pxap)
    assert np.isfinite(views.overlay(np.zeros((224, 224, 3), np.uint8), maps[0])).all()


def test_zero_gradients_and_saturated_softmax_give_finite_maps_and_confidences():
    backbone = load_backbone("synthetic_cnn", "random")  # a private instance: changed freely here
    with torch.no_grad():
        backbone.head.weight.zero_()  # every gradient w.r.t. the layer is exactly zero
    x = torch.randn(2, 3, 224, 224)
    maps = compute_cams(backbone, x, [0, 1], ["cam", "gradcam", "gradcampp", "xgradcam", "layercam", "extendedcam"])
    for name, m in maps.items():
        assert torch.isfinite(m).all(), name
        assert torch.isfinite(normalise(upsample(m, 224, "gaussian", sigma=30.0), "minmax")).all(), name
    with torch.no_grad():
        backbone.head.bias.zero_()
        backbone.head.bias[0] = 1e4  # softmax saturates to one class
    result = average_drop_increase(backbone.model, x, torch.rand(2, 224, 224), torch.tensor([0, 1]),
                                   mean=backbone.mean, std=backbone.std)
    assert np.isfinite(result.confidence).all() and np.isfinite(result.masked_confidence).all()


def test_the_ui_bounds_its_sigma_sliders():
    from explorer import ui
    from explorer.upsample import SIGMA_MAX, SIGMA_MIN

    assert SIGMA_MIN <= ui.SIGMA_MIN < ui.SIGMA_MAX <= SIGMA_MAX
    assert ui.sigma_on_slider(0.0001) == ui.SIGMA_MIN and ui.sigma_on_slider(1e9) == ui.SIGMA_MAX
