"""A hostile corpus made here, one family per way a file or an argument can attack: small files
that ask for huge memory, links and pipes that leave or block, archives that escape or explode,
data that lies, and command lines that used to end in a traceback. Each gets one clear message,
promptly, with bounded memory (peaks measured in a fresh process beside a well-formed file)."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from explorer.backbones import BackboneError, load_backbone
from explorer.checkpoints import SCALE_SUFFIX, CheckpointError, dequantize_state, load_state_dict
from explorer.datasets import make_synthetic, open_dataset
from explorer.datasets.errors import DatasetError
from explorer.datasets.loaders import read_mask
from explorer.fcam.decoder import FcamError, read_decoder_card
from explorer.images import ImageError, load_image
from explorer.metrics import MetricError, thresholds
from explorer.server_files import ServerPathError, dataset_spec, server_path, unpack_zip

ROOT = Path(__file__).resolve().parents[2]
PEAK_SCRIPT = """
import resource, sys
from explorer.backbones import load_backbone
from explorer.errors import ExplorerError
try:
    load_backbone("synthetic_cnn", sys.argv[1])
    print("loaded")
except ExplorerError as exc:
    print("refused:", str(exc)[:300])
print("peak_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def peak_load(path: Path) -> tuple[str, float]:
    """(what happened, peak resident MB) of loading `path` as synthetic_cnn weights in a new process."""
    out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(path)], cwd=ROOT, capture_output=True, text=True,
                         timeout=300).stdout.splitlines()
    return out[0], float(out[-1].split()[1])


def png(width: int, height: int, mode_byte: int = 0, bit_depth: int = 1, extra: bytes = b"") -> bytes:
    """A PNG whose header declares width x height, with a tiny (incomplete) data chunk."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    header = struct.pack(">IIBBBBB", width, height, bit_depth, mode_byte, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + extra + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def cnn_state(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A well-formed synthetic_cnn weight file (random weights) and its state."""
    state = load_backbone("synthetic_cnn", "random").model.state_dict()
    path = tmp_path_factory.mktemp("weights") / "good.pt"
    torch.save(state, path)
    return path, state


# ------------------------------------------------------------------ tiny files, huge memory

def test_checkpoint_bombs_are_refused_before_memory_follows_them(cnn_state, tmp_path) -> None:
    good, state = cnn_state
    loaded, baseline = peak_load(good)
    assert loaded == "loaded"

    # (1) 180 KB: an int8 weight (60000, 1) with a (1, 60000) scale would broadcast to 60000^2 floats.
    scale_bomb = tmp_path / "scale.pt"
    torch.save({"w": torch.ones(60000, 1, dtype=torch.int8), "w" + SCALE_SUFFIX: torch.ones(1, 60000).half()},
               scale_bomb)
    with pytest.raises(CheckpointError, match=r"scale of w is \(1, 60000\), not one value per output channel"):
        load_state_dict(scale_bomb)
    # (2) the same pair under the model's real key names: refused by its shapes before dequantizing
    first = next(k for k, v in state.items() if v.dim() == 4)
    named = tmp_path / "named.pt"
    torch.save({**{k: v for k, v in state.items() if k != first},
                first: torch.ones(60000, 1, dtype=torch.int8), first + SCALE_SUFFIX: torch.ones(1, 60000).half()}, named)
    # (3) a zip whose deflated entry unpacks to far more than the file (here 64 MB of zeros in a few hundred KB)
    plain = tmp_path / "plain.pt"
    torch.save({"w": torch.zeros(64 * 2**20, dtype=torch.int8)}, plain)
    deflated = tmp_path / "deflated.pt"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            dst.writestr(item.filename, src.read(item.filename))
    assert deflated.stat().st_size < 2**20
    # (4) NaN weights
    nan = tmp_path / "nan.pt"
    torch.save({k: (v * float("nan") if v.is_floating_point() else v) for k, v in state.items()}, nan)

    peaks = {"well-formed": baseline}
    for name, path, words in (("scale bomb, model keys", named, "is (60000, 1)"),
                              ("deflated zeros", deflated, "holds compressed entries"),
                              ("NaN weights", nan, "NaN or infinite")):
        outcome, peak = peak_load(path)
        assert outcome.startswith("refused:") and words in outcome, (name, outcome)
        peaks[name] = peak
        assert peak < baseline + 100, (name, peak, baseline)  # no allocation the file asked for
    print("peak resident MB:", json.dumps({k: round(v) for k, v in peaks.items()}))


def test_decoder_cards_are_bounded_before_a_network_is_built(tmp_path) -> None:
    card = {"kind": "fcam_decoder", "backbone": "synthetic_cnn", "base_method": "cam", "layer": "stage4",
            "taps": ["stage1", "stage2", "stage3", "stage4"], "widths": [64, 32, 16], "command": "x"}
    for change, words in (({"widths": [20000, 64, 32]}, "'widths' must be a list"),
                          ({"taps": 5}, "'taps' must be a list"),
                          ({"centre": 10**9}, "'centre' must be empty or"),
                          ({"widths": [True, 2]}, "'widths' must be a list")):
        (tmp_path / "d.json").write_text(json.dumps({**card, **change}))
        with pytest.raises(FcamError, match=words):
            read_decoder_card(tmp_path / "d.pt")


def test_masks_are_capped_as_images_are(tmp_path) -> None:
    bomb = tmp_path / "mask.png"
    bomb.write_bytes(png(30000, 30000))  # 1-bit, 900 million pixels declared in 100 bytes
    start = time.perf_counter()
    with pytest.raises(DatasetError, match="declares 900,000,000 pixels, more than the 50,000,000 allowed"):
        read_mask(bomb)
    assert time.perf_counter() - start < 5  # refused from the header, nothing decoded


def test_the_threshold_grid_is_bounded() -> None:
    with pytest.raises(MetricError, match="1e-09"):
        thresholds(1e-9)
    assert len(thresholds(1e-4)) == 10_000


def test_a_jpeg_whose_data_end_before_its_declared_size_is_refused() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (96, 64), (120, 30, 200)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, 7000, 7000)
    with pytest.raises(ImageError, match="declares 7,000 × 7,000 pixels but its picture holds only"):
        load_image(bytes(data))


def test_an_oversized_metadata_chunk_is_named_as_such() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buffer, "PNG")
    good = buffer.getvalue()
    text = zlib.compress(b"a" * (200 * 2**20), 9)
    payload = b"comment\x00\x00" + text
    chunk = struct.pack(">I", len(payload)) + b"zTXt" + payload + struct.pack(">I", zlib.crc32(b"zTXt" + payload))
    with pytest.raises(ImageError, match="metadata chunk"):
        load_image(good[:33] + chunk + good[33:])


# ---------------------------------------------------------------- links, pipes and devices

@pytest.fixture
def dataset(tmp_path) -> Path:
    return make_synthetic(tmp_path / "synthetic", seed=5, sizes={"train": 0, "val": 0, "test": 6})


def test_symlinks_out_of_a_dataset_are_refused(dataset, tmp_path) -> None:
    meta = dataset / "metadata" / "SYNTHETIC" / "test"
    ids = (meta / "image_ids.txt").read_text().split("\n")
    victim = dataset / ids[0]
    victim.unlink()
    outside = tmp_path / "secret.jpg"
    outside.write_bytes(b"not for you")
    victim.symlink_to(outside)
    data = open_dataset(f"cub:{dataset}", "test", strict=False, metadata_dir=dataset / "metadata" / "SYNTHETIC",
                        image_root=dataset)
    assert ids[0] not in {s.image_id for s in data}
    assert any("leaves the dataset folder (through a symbolic link)" in issue for issue in data.issues)


def test_a_fifo_or_a_device_is_refused_at_once(dataset, tmp_path) -> None:
    fifo = tmp_path / "photo.png"
    os.mkfifo(fifo)
    start = time.perf_counter()
    with pytest.raises(ImageError, match="is a named pipe, not a file"):
        load_image(fifo)
    meta = dataset / "metadata" / "SYNTHETIC" / "test"
    ids = (meta / "image_ids.txt").read_text().split("\n")
    (dataset / ids[0]).unlink()
    os.mkfifo(dataset / ids[0])
    (dataset / ids[1]).unlink()
    (dataset / ids[1]).symlink_to("/dev/zero")
    data = open_dataset(f"cub:{dataset}", "test", strict=False, metadata_dir=dataset / "metadata" / "SYNTHETIC",
                        image_root=dataset)
    reasons = "\n".join(data.issues)
    assert "a named pipe, not a file" in reasons
    assert "leaves the dataset folder" in reasons  # /dev/zero is outside the folder, and a device
    assert time.perf_counter() - start < 30
    result = subprocess.run([sys.executable, "-m", "explorer", "cam", "--image", str(fifo), "--out",
                             str(tmp_path / "g.png")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.strip().startswith("error:") and "named pipe" in result.stderr


# --------------------------------------------------------------------- data that lies

def test_metadata_that_lies_is_reported_line_by_line(dataset) -> None:
    meta = dataset / "metadata" / "SYNTHETIC" / "test"
    ids = (meta / "image_ids.txt").read_text().split("\n")
    (meta / "image_ids.txt").write_bytes(b"\xef\xbb\xbf" + (meta / "image_ids.txt").read_bytes())  # a BOM
    labels = (meta / "class_labels.txt").read_text().split("\n")
    labels[1] = f"{ids[1]},1000000000"
    (meta / "class_labels.txt").write_text("\n".join(labels))
    boxes = (meta / "localization.txt").read_text().split("\n")
    boxes = [f"{ids[2]},0,0,10000,10" if line.startswith(ids[2] + ",") else line for line in boxes]
    boxes.append(f"{ids[3]},0,0,{10**30},5")
    (meta / "localization.txt").write_text("\n".join(boxes))
    data = open_dataset(f"cub:{dataset}", "test", strict=False, metadata_dir=dataset / "metadata" / "SYNTHETIC",
                        image_root=dataset)
    kept = {s.image_id for s in data}
    reasons = "\n".join(data.issues)
    assert ids[0] in kept  # the BOM is not part of the first id
    assert "the label 1000000000 is not below 100,000" in reasons and ids[1] not in kept
    assert "lies outside its 224x224 image" in reasons and ids[2] not in kept
    assert "is not four whole numbers from 0 to 1,000,000" in reasons and ids[3] not in kept


def test_voc_lists_an_image_once(tmp_path) -> None:
    base = tmp_path / "VOC2007"
    for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (base / folder).mkdir(parents=True)
    Image.new("RGB", (50, 40), (10, 200, 30)).save(base / "JPEGImages" / "000001.jpg")
    (base / "Annotations" / "000001.xml").write_text(
        "<annotation><size><width>50</width><height>40</height></size><object><name>dog</name>"
        "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>60</xmax><ymax>30</ymax></bndbox></object></annotation>")
    (base / "ImageSets" / "Main" / "val.txt").write_text("000001\n000001\n")
    data = open_dataset(f"voc:{tmp_path}", "val", strict=False)
    reasons = "\n".join(data.issues)
    assert "listed twice" in reasons
    assert "lies outside the 50x40 image" in reasons and len(data) == 0


# --------------------------------------------------------------- server paths and uploads

def test_typed_server_paths_stay_inside_the_roots(tmp_path, monkeypatch) -> None:
    shared = tmp_path / "shared"
    (shared / "photos").mkdir(parents=True)
    monkeypatch.setenv("CAM_EXPLORER_ROOTS", str(shared))
    assert server_path("photos") == (shared / "photos").resolve()
    assert server_path(str(shared / "photos")) == (shared / "photos").resolve()
    (shared / "escape").symlink_to("/etc")
    messages = set()
    (tmp_path / "elsewhere").mkdir()
    for typed in ("/etc", "escape", "../..", "/no/such/place", str(tmp_path / "elsewhere")):
        with pytest.raises(ServerPathError) as caught:
            server_path(typed)
        messages.add(str(caught.value).replace(typed, "<typed>"))
    assert len(messages) == 1  # missing and not allowed read the same
    assert dataset_spec("folder:photos") == f"folder:{(shared / 'photos').resolve()}"
    with pytest.raises(ServerPathError):
        dataset_spec("cub:/etc")


def zip_of(entries: dict[str, bytes], *, symlink: str | None = None, method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        if symlink is not None:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (0o120777 << 16)
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def test_uploaded_zips_are_unpacked_safely(tmp_path) -> None:
    good = unpack_zip(zip_of({"photos/a.jpg": b"x", "photos/b.jpg": b"y"}), tmp_path / "good")
    assert sorted(p.name for p in (good / "photos").iterdir()) == ["a.jpg", "b.jpg"]
    cases = {
        "escape": (zip_of({"../../evil.txt": b"x"}), "points outside"),
        "absolute": (zip_of({"/etc/evil.txt": b"x"}), "points outside"),
        "link": (zip_of({"a.jpg": b"x"}, symlink="link.jpg"), "symbolic link"),
        "bomb": (zip_of({"zeros.bin": bytes(8 * 2**20)}), "unpacks to 8 MB"),
        "many": (zip_of({f"{i}.txt": b"" for i in range(60)}), "holds 60 files"),
        "not a zip": (b"PK\x03\x04 not really", "not a readable zip"),
    }
    for name, (data, words) in cases.items():
        with pytest.raises(ServerPathError, match=words):
            unpack_zip(data, tmp_path / name, max_unpacked=2**20, max_files=50)
        assert not (tmp_path / name).exists(), name
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no staging folder left
    assert not (tmp_path.parent / "evil.txt").exists()


# ----------------------------------------------------------------------- the command line

def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "explorer", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})


CLI_CASES = [
    ("cam", "--image", "gallery:chelsea", "--upsampler", ""),
    ("cam", "--image", "gallery:chelsea", "--out", "missing/g.png"),
    ("cam", "--image", "gallery:chelsea", "--out", "."),
    ("cam", "--image", "gallery:chelsea", "--out", "g.gif"),
    ("cam", "--image", "gallery:chelsea", "--npy", "."),
    ("cam", "--image", "gallery:chelsea", "--out", "afile/g.png"),
    ("cam", "--image", "gallery:chelsea", "--device", "bogus"),
    ("erf", "--backbone", "vgg16", "--weights", "random", "--out", "missing/e.json"),
    ("erf", "--backbone", "vgg16", "--weights", "random", "--out", "."),
    ("evaluate", "--dataset", "synthetic", "--backbone", "synthetic_cnn", "--limit=-5", "--out", "r"),
    ("evaluate", "--dataset", "synthetic", "--backbone", "synthetic_cnn", "--out", "afile"),
    ("evaluate", "--dataset", "synthetic", "--backbone", "synthetic_cnn", "--threshold-interval", "1e-9", "--out", "r"),
    ("make-synthetic", "--seed=-1", "--out", "s"),
    ("make-synthetic", "--out", "afile/s"),
    ("train-classifier", "--arch", "synthetic_cnn", "--threads=-1"),
    ("train-fcam", "--backbone", "synthetic_cnn", "--threads=-1"),
    ("train-fcam", "--backbone", "synthetic_cnn", "--crf-weight", "nan"),
    ("fcam-ablation", "--backbone", "synthetic_cnn", "--limit=-1", "--out", "r"),
]


@pytest.mark.parametrize("args", CLI_CASES, ids=[" ".join(a) for a in CLI_CASES])
def test_every_command_line_mistake_is_one_error_line(args, tmp_path) -> None:
    (tmp_path / "afile").write_text("a file")
    start = time.perf_counter()
    result = cli(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert time.perf_counter() - start < 60  # refused as the arguments are read, before any model work
    assert not (tmp_path / "r").exists() and not (tmp_path / "s").exists()


def test_nan_weights_are_refused_by_the_cli(cnn_state, tmp_path) -> None:
    _, state = cnn_state
    torch.save({k: (v.fill_(float("inf")) if v.is_floating_point() else v) for k, v in
                {k: v.clone() for k, v in state.items()}.items()}, tmp_path / "inf.pt")
    result = cli("cam", "--image", "gallery:chelsea", "--backbone", "synthetic_cnn", "--weights",
                 str(tmp_path / "inf.pt"), "--out", str(tmp_path / "g.png"), cwd=tmp_path)
    assert result.returncode == 2 and "NaN or infinite" in result.stderr and not (tmp_path / "g.png").exists()
    with pytest.raises(BackboneError, match="NaN or infinite"):
        load_backbone("synthetic_cnn", tmp_path / "inf.pt")
    np.testing.assert_array_equal(dequantize_state({"b": torch.ones(2)})["b"].numpy(), np.ones(2))


def test_a_label_the_classifier_does_not_have_is_an_error(dataset, tmp_path) -> None:
    from types import SimpleNamespace

    from explorer.evaluate import EvalConfig, EvaluateError, check_labels, evaluate

    meta = dataset / "metadata" / "SYNTHETIC" / "test"
    labels = (meta / "class_labels.txt").read_text().split("\n")
    first_id = labels[0].split(",")[0]
    labels[0] = f"{first_id},27"  # 20 classes: the loader reports it, the image is skipped and counted
    (meta / "class_labels.txt").write_text("\n".join(labels))
    config = EvalConfig(dataset=f"synthetic:{dataset}", backbone="synthetic_cnn", weights="random",
                        methods=("gradcam",), upsamplers=("bilinear",), threshold_interval=0.01, confidence=False)
    summary = evaluate(config, tmp_path / "eval", device="cpu")
    assert summary is not None and summary.num_images == 5
    assert any("the label 27" in s["reason"] and "not below the 20 classes" in s["reason"] for s in summary.skipped)
    # a dataset without class names (CUB without class_names.txt): the classifier's count decides
    cnn = load_backbone("synthetic_cnn", "random")
    loose = [SimpleNamespace(image_id="a.jpg", label=1), SimpleNamespace(image_id="b.jpg", label=32)]
    with pytest.raises(EvaluateError, match="image 'b.jpg' has label 32, but synthetic_cnn has 20 classes"):
        check_labels(loose, cnn, 2)
