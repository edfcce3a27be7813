"""Hostile input, round three: a reusable corpus, one family of cases per section.

Each case is something a visitor, a notebook user or a downloaded file can do. What every case
must get: one clear message (an ExplorerError, or one `error:` line and exit status 2 from the
CLI), never a traceback, a hang or unbounded memory, and nothing lost or written wrong. Memory
cases run in a fresh process whose peak resident memory is compared with the same process doing
nothing hostile. The sessions family (one visitor's uploads and runs never reaching another) is
in test_sessions.py.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import explorer as ex
from explorer.backbones import BackboneError
from explorer.capture import CaptureError
from explorer.checkpoints import CheckpointError, load_state_dict
from explorer.datasets.errors import DatasetError
from explorer.datasets.loaders import load_protocol, load_voc2007
from explorer.erf.fit import ErfFitError, fit_erf
from explorer.errors import ExplorerError
from explorer.fcam.decoder import FcamError, read_decoder_card
from explorer.images import ImageError, load_image
from explorer.methods import MethodError
from explorer.server_files import ServerPathError, unpack_zip
from explorer.upsample import UpsampleError
from explorer.user_models import MAX_CLASSES, load_card

ROOT = Path(__file__).resolve().parents[2]
CLI_TIMEOUT_S = 120
HEADROOM_MB = 400  # what a refused hostile case may add to the peak memory of the same process doing nothing


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """The CLI in its own process, bounded in time: a hang fails the test instead of the suite."""
    return subprocess.run([sys.executable, "-m", "explorer", *args], capture_output=True, text=True,
                          timeout=CLI_TIMEOUT_S, cwd=cwd, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


def one_error(result: subprocess.CompletedProcess, *words: str) -> str:
    """Exit status 2, no traceback, and one `error:` line that holds every one of `words`."""
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.returncode == 2, (result.returncode, result.stdout[-500:], result.stderr[-500:])
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def peak_mb(code: str, cwd: Path = ROOT) -> float:
    """Peak resident memory (MB) of a fresh process running `code` after importing the engine."""
    program = textwrap.dedent("""
        import resource, torch, explorer, explorer.checkpoints, explorer.datasets.loaders, explorer.fcam.decoder
        import explorer.user_models
        {code}
        print("PEAK", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    """).format(code=textwrap.indent(textwrap.dedent(code), "").strip())
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
                            cwd=cwd)
    assert result.returncode == 0, result.stderr[-2000:]
    return float(result.stdout.split("PEAK")[-1])


@pytest.fixture(scope="module")
def baseline_mb() -> float:
    return peak_mb("pass")


# ------------------------------------------------------------------------------ hangs

def test_a_decoder_card_that_is_a_named_pipe_is_refused_not_waited_on(tmp_path: Path) -> None:
    decoder = tmp_path / "x.pt"
    torch.save({}, decoder)
    os.mkfifo(tmp_path / "x.json")
    with pytest.raises(FcamError, match="named pipe"):
        read_decoder_card(decoder)
    one_error(cli("cam", "--image", "gallery:chelsea", "--backbone", "synthetic_cnn", "--methods", "cam",
                  "--upsampler", "fcam", "--decoder", str(decoder), "--out", str(tmp_path / "g.png")), "named pipe")


@pytest.mark.parametrize("args,words", [
    (("erf", "--backbone", "synthetic_cnn", "--images", str(10**30)), ("--images", "at most 100,000")),
    (("train-fcam", "--backbone", "synthetic_cnn", "--epochs", str(10**30)), ("--epochs", "at most 1,000")),
    (("train-fcam", "--backbone", "synthetic_cnn", "--train-limit", "1e9"), ("--train-limit", "whole number")),
    (("train-classifier", "--arch", "synthetic_cnn", "--epochs", "99999"), ("--epochs",)),
    (("evaluate", "--backbone", "synthetic_cnn", "--limit", str(2**80), "--out", "/tmp/x"), ("--limit",)),
], ids=["erf-images", "fcam-epochs", "fcam-limit-float", "classifier-epochs", "evaluate-limit"])
def test_unbounded_counts_are_refused_where_they_are_typed(args, words) -> None:
    one_error(cli(*args), *words)


def test_fitting_a_huge_map_is_refused_at_once() -> None:
    with pytest.raises(ErfFitError, match="at most"):
        fit_erf(np.zeros((4097, 4097), dtype=np.float32))


def test_help_states_the_bounds() -> None:
    result = cli("train-fcam", "--help")
    assert result.returncode == 0
    for bound in ("[1 to 1,000]", "[1 to 64]", "[above 0 to 10]", "[0 to 4,294,967,295]", "[1 to 256]"):
        assert bound in " ".join(result.stdout.split()), bound


# ------------------------------------------------------------------------------ memory

def test_a_decoder_card_linked_to_dev_zero_costs_no_memory(tmp_path: Path, baseline_mb: float) -> None:
    torch.save({}, tmp_path / "x.pt")
    (tmp_path / "x.json").symlink_to("/dev/zero")
    peak = peak_mb(f"""
        try:
            explorer.fcam.decoder.read_decoder_card({str(tmp_path / 'x.pt')!r})
        except explorer.fcam.decoder.FcamError as exc:
            assert "device" in str(exc), exc
        else:
            raise SystemExit("accepted")
    """)
    assert peak - baseline_mb < HEADROOM_MB, (peak, baseline_mb)


def test_a_million_class_names_are_refused_before_a_head_is_built(tmp_path: Path, baseline_mb: float) -> None:
    (tmp_path / "names.txt").write_text("\n".join(f"class {i}" for i in range(10**6)), encoding="utf-8")
    (tmp_path / "card.json").write_text(json.dumps({"architecture": "torchvision:resnet18",
                                                    "class_names": "names.txt"}), encoding="utf-8")
    peak = peak_mb(f"""
        try:
            explorer.user_models.load_card({str(tmp_path / 'card.json')!r}, "random")
        except explorer.backbones.BackboneError as exc:
            assert "{MAX_CLASSES:,}" in str(exc), exc
        else:
            raise SystemExit("accepted")
    """)
    assert peak - baseline_mb < HEADROOM_MB, (peak, baseline_mb)


def test_a_zero_stride_tensor_declaring_terabytes_is_refused_unread(tmp_path: Path, baseline_mb: float) -> None:
    torch.save({"w": torch.zeros(1).expand(10**6, 10**6)}, tmp_path / "w.pt")  # 4 TB declared, 4 bytes stored
    peak = peak_mb(f"""
        try:
            explorer.checkpoints.load_state_dict({str(tmp_path / 'w.pt')!r})
        except explorer.checkpoints.CheckpointError as exc:
            assert "repeating view" in str(exc), exc
        else:
            raise SystemExit("accepted")
    """)
    assert peak - baseline_mb < HEADROOM_MB, (peak, baseline_mb)
    with pytest.raises(CheckpointError, match="repeating view"):
        load_state_dict(tmp_path / "w.pt")


def test_a_mask_in_a_format_whose_size_cannot_be_checked_first_is_refused(tmp_path: Path, baseline_mb: float) -> None:
    # Radiance HDR: OpenCV decodes it, Pillow cannot read its header; it declares 30,000 x 30,000 floats.
    hdr = tmp_path / "mask.png"
    hdr.write_bytes(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 30000 +X 30000\n" + b"\x02\x02\x75\x30" * 1000)
    peak = peak_mb(f"""
        try:
            explorer.datasets.loaders.read_mask({str(hdr)!r})
        except explorer.datasets.errors.DatasetError as exc:
            assert "not a readable mask image" in str(exc), exc
        else:
            raise SystemExit("accepted")
    """)
    assert peak - baseline_mb < HEADROOM_MB, (peak, baseline_mb)


# ------------------------------------------------------------------------------ wrong results without a word

@pytest.mark.parametrize("field,value,words", [
    ("std", [0, 0.2, 0.2], "at least 0.0001"),
    ("std", [1e-40, 0.2, 0.2], "at least 0.0001"),
    ("mean", [float("nan"), 0.4, 0.4], "finite"),
    ("mean", [0.5, 0.5], "three finite numbers"),
    ("input_size", "ab", "input_size"),
    ("input_size", [224, 10**9], "input_size"),
    ("input_size", [True, 224], "input_size"),
    ("layer", ["x"], '"layer" must be text'),
    ("class_names", 5, '"class_names"'),
    ("class_names", [1, 2], '"class_names"'),
    ("name", {"a": 1}, '"name" must be text'),
], ids=lambda v: str(v)[:24])
def test_a_model_card_is_checked_whole_before_anything_is_built(tmp_path: Path, field, value, words) -> None:
    card = tmp_path / "card.json"
    card.write_text(json.dumps({"architecture": "torchvision:resnet18", field: value}), encoding="utf-8")
    with pytest.raises(BackboneError) as raised:
        load_card(card, "random")
    assert words in str(raised.value) and str(card) in str(raised.value)
    one_error(cli("cam", "--image", "gallery:chelsea", "--backbone", f"card:{card}", "--weights", "random",
                  "--out", str(tmp_path / "g.png")), words)


def test_a_module_given_a_zero_std_is_refused() -> None:
    from explorer.user_models import module_backbone

    with pytest.raises(BackboneError, match="std"):
        module_backbone(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1),
                                            torch.nn.Flatten(), torch.nn.Linear(4, 2)), std=(0.0, 1.0, 1.0))


def _voc(root: Path, size: str, box: str) -> Path:
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    (root / "ImageSets" / "Main").mkdir(parents=True)
    Image.new("RGB", (64, 64), (90, 120, 30)).save(root / "JPEGImages" / "a.jpg")
    (root / "ImageSets" / "Main" / "val.txt").write_text("a\n", encoding="utf-8")
    (root / "Annotations" / "a.xml").write_text(
        f"<annotation><size>{size}</size><object><name>dog</name><bndbox>{box}</bndbox></object></annotation>",
        encoding="utf-8")
    return root


@pytest.mark.parametrize("size,box", [
    ("<width>100000000000000000</width><height>64</height>",
     "<xmin>1</xmin><ymin>1</ymin><xmax>100000000000000000</xmax><ymax>30</ymax>"),
    ("<width>64</width><height>64</height>",
     "<xmin>1</xmin><ymin>1</ymin><xmax>100000000000000000</xmax><ymax>30</ymax>"),
], ids=["huge-size", "huge-box"])
def test_voc_coordinates_beyond_a_million_are_reported_not_wrapped(tmp_path: Path, size: str, box: str) -> None:
    root = _voc(tmp_path / "voc", size, box)
    with pytest.raises(DatasetError, match="1,000,000"):
        load_voc2007(root, "val")
    assert len(load_voc2007(root, "val", strict=False)) == 0


def test_a_short_jpeg_that_declares_a_large_picture_is_refused_not_greyed() -> None:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (1000, 999, 3), dtype=np.uint8)).save(buffer, "JPEG")
    data = buffer.getvalue()
    cut = data[:data.index(b"\xff\xda") + 40] + b"\xff\xd9"  # the headers, a sliver of the scan, the end marker
    with pytest.raises(ImageError, match="truncated or crafted"):
        load_image(cut)
    padded = cut[:20] + b"\xff\xfe\xff\xff" + b"x" * 65000 + cut[20:]  # a 64 kB comment cannot hide it
    with pytest.raises(ImageError):
        load_image(padded)
    assert load_image(data).size == (999, 1000)  # the whole file still loads


def test_a_metadata_file_linked_out_of_the_dataset_is_not_read(tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("a.png,0\n", encoding="utf-8")
    meta = tmp_path / "meta" / "test"
    meta.mkdir(parents=True)
    Image.new("RGB", (64, 64)).save(tmp_path / "a.png")
    for name, text in (("image_ids.txt", "a.png"), ("image_sizes.txt", "a.png,64,64"),
                       ("localization.txt", "a.png,1,1,30,30")):
        (meta / name).write_text(text + "\n", encoding="utf-8")
    (meta / "class_labels.txt").symlink_to(outside)
    with pytest.raises(DatasetError, match="leaves the dataset folder"):
        load_protocol(tmp_path / "meta", tmp_path, "test")


def test_training_stops_at_the_first_non_finite_step_and_writes_nothing(tmp_path: Path) -> None:
    from explorer.fcam_train import FcamConfig, train_fcam
    from explorer.train import check_finite_step

    with pytest.raises(ExplorerError, match="epoch 2, step 4: the loss became inf or NaN"):
        check_finite_step(torch.tensor(float("nan")), None, 1, 3, ExplorerError)
    net = torch.nn.Linear(2, 2)
    with torch.no_grad():
        net.weight[0, 0] = float("inf")
    with pytest.raises(ExplorerError, match="weights became inf or NaN"):
        check_finite_step(torch.tensor(1.0), net, 0, 0, ExplorerError)
    data = ex.datasets.make_synthetic(tmp_path / "data", seed=5, sizes={"train": 16, "val": 4, "test": 0})
    config = FcamConfig(backbone="synthetic_cnn", dataset=f"synthetic:{data}", weights="random", epochs=1,
                        batch_size=8, lr=10.0, momentum=0.0, ce_weight=1e6, crf_weight=0.0, size_weight=0.0)
    out = tmp_path / "d.pt"
    with pytest.raises(FcamError, match=r"diverged"):
        train_fcam(config, out, device="cpu")
    assert not out.exists() and not out.with_suffix(".json").exists()


# ------------------------------------------------------------------------------ tracebacks in the CLI

@pytest.mark.parametrize("args,words", [
    (("erf", "--backbone", "synthetic_cnn", "--seed", str(2**64)), ("--seed", "at most")),
    (("make-synthetic", "--out", "/tmp/never-made", "--train", str(10**30)), ("--train", "at most")),
    (("train-fcam", "--backbone", "synthetic_cnn", "--crf-scale", str(10**9)), ("--crf-scale", "at most 64")),
    (("train-fcam", "--backbone", "synthetic_cnn", "--lr", "1e300"), ("--lr", "at most 10")),
    (("train-classifier", "--arch", "synthetic_cnn", "--lr", "1e308"), ("--lr", "at most 10")),
    (("train-fcam", "--backbone", "synthetic_cnn", "--threads", str(10**9)), ("--threads", "at most 256")),
    (("train-fcam", "--backbone", "synthetic_cnn", "--lr", "nan"), ("--lr", "finite")),
    (("fcam-sweep", "--backbone", "synthetic_cnn", "--param", "n-negative", "--values", "5", "--out", "/tmp"),
     ("n_negative",)),
    (("cam", "--image", "gallery:chelsea", "--backbone", "synthetic_cnn", "--target", str(2**70)), ("out of range",)),
    (("cam", "--image", "gallery:chelsea", "--backbone", "synthetic_cnn", "--target", "-1"), ("-1",)),
], ids=["seed", "synthetic-train", "crf-scale", "fcam-lr", "classifier-lr", "threads", "lr-nan", "sweep-values",
        "target-2^70", "target-negative"])
def test_out_of_range_numbers_get_one_line(args, words) -> None:
    one_error(cli(*args), *words)


@pytest.mark.parametrize("env,words", [
    ({"WORLD_SIZE": "abc"}, ("WORLD_SIZE",)),
    ({"WORLD_SIZE": "2", "RANK": "5"}, ("RANK",)),
    ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}, ("MASTER_ADDR",)),
], ids=["world-text", "rank-beyond-world", "no-master"])
def test_a_broken_torchrun_environment_gets_one_line(tmp_path: Path, env, words) -> None:
    one_error(cli("train-fcam", "--backbone", "synthetic_cnn", "--weights", "random", "--train-limit", "2",
                  "--out", str(tmp_path / "d.pt"), env={k: v for k, v in env.items()}), *words)


# ------------------------------------------------------------------------------ the engine API

@pytest.fixture(scope="module")
def tiny():
    backbone = ex.load_backbone("synthetic_cnn", "random", device="cpu")
    return backbone, backbone.preprocess([ex.load_image("gallery:chelsea")])


API_CASES = {
    "two channels": (lambda b, x: ex.compute_cams(b, x[:, :2], [0], ["gradcam"]), CaptureError, "x H x W"),
    "integer pixels": (lambda b, x: ex.compute_cams(b, (x * 50).to(torch.int32), [0], ["gradcam"]), CaptureError,
                       "real floats"),
    "complex pixels": (lambda b, x: ex.compute_cams(b, x.to(torch.complex64), [0], ["gradcam"]), CaptureError,
                       "real floats"),
    "NaN pixels": (lambda b, x: ex.compute_cams(b, x * float("nan"), [0], ["gradcam"]), CaptureError, "NaN"),
    "a list for images": (lambda b, x: ex.compute_cams(b, x.tolist(), [0], ["gradcam"]), CaptureError, "tensor"),
    "target 10^6": (lambda b, x: ex.compute_cams(b, x, [10**6], ["gradcam"]), CaptureError, "20 classes"),
    "target -1": (lambda b, x: ex.compute_cams(b, x, [-1], ["gradcam"]), CaptureError, "numbered 0 to 19"),
    "target 2^70": (lambda b, x: ex.compute_cams(b, x, [2**70], ["gradcam"]), CaptureError, "not a class"),
    "float target": (lambda b, x: ex.compute_cams(b, x, [1.5], ["gradcam"]), CaptureError, "whole numbers"),
    "two targets one image": (lambda b, x: ex.compute_cams(b, x, [1, 2], ["gradcam"]), CaptureError, "one class"),
    "NaN smooth_std": (lambda b, x: ex.compute_cams(b, x, [0], ["smoothgradcampp"], smooth_std=float("nan")),
                       MethodError, "smooth_std"),
    "zero samples": (lambda b, x: ex.compute_cams(b, x, [0], ["smoothgradcampp"], smooth_samples=0), MethodError,
                     "smooth_samples"),
    "seed 2^64": (lambda b, x: ex.compute_cams(b, x, [0], ["gradcam"], seed=2**64), MethodError, "seed"),
    "size 0": (lambda b, x: ex.upsample(torch.rand(1, 7, 7), 0), UpsampleError, "from 1"),
    "size -3": (lambda b, x: ex.upsample(torch.rand(1, 7, 7), -3), UpsampleError, "from 1"),
    "size 10^6": (lambda b, x: ex.upsample(torch.rand(1, 7, 7), 10**6), UpsampleError, "16,384"),
    "size 224.5": (lambda b, x: ex.upsample(torch.rand(1, 7, 7), 224.5), UpsampleError, "whole number"),
    "three sizes": (lambda b, x: ex.upsample(torch.rand(1, 7, 7), (1, 2, 3)), UpsampleError, "(height, width)"),
    "text size": (lambda b, x: ex.upsample(torch.rand(1, 7, 7), "224"), UpsampleError, "size"),
    "too many pixels": (lambda b, x: ex.upsample(torch.rand(64, 7, 7), 16_000), UpsampleError, "fewer maps"),
    "three sigmas": (lambda b, x: ex.upsample(torch.rand(1, 7, 7), 224, "gaussian", sigma=(1, 2, 3)), UpsampleError,
                     "two"),
    "sigma as text": (lambda b, x: ex.upsample(torch.rand(1, 7, 7), 224, "gaussian", sigma="12"), UpsampleError,
                      "'12'"),
    "NaN sigma": (lambda b, x: ex.upsample(torch.rand(1, 7, 7), 224, "gaussian", sigma=float("nan")), UpsampleError,
                  "sigma"),
    "1-D map": (lambda b, x: ex.upsample(torch.rand(7), 224), UpsampleError, "B x h x w"),
    "empty map": (lambda b, x: ex.upsample(torch.rand(1, 0, 7), 224), UpsampleError, "B x h x w"),
    "complex map": (lambda b, x: ex.upsample(torch.rand(1, 7, 7, dtype=torch.complex64), 224), UpsampleError, "real"),
    "numpy map": (lambda b, x: ex.upsample(np.zeros((1, 7, 7)), 224), UpsampleError, "tensor"),
    "normalise a list": (lambda b, x: ex.normalise([1, 2, 3]), UpsampleError, "batch of maps"),
    "backbone 123": (lambda b, x: ex.load_backbone(123), BackboneError, "named by text"),
    "weights 1.5": (lambda b, x: ex.load_backbone("synthetic_cnn", 1.5), BackboneError, "weights"),
    "device cuda:7 or no GPU": (lambda b, x: ex.load_backbone("synthetic_cnn", "random", device="cuda:7"),
                                BackboneError, "cuda"),
    "device tpu": (lambda b, x: ex.load_backbone("synthetic_cnn", "random", device="tpu"), BackboneError, "device"),
    "explain sigma as text": (lambda b, x: ex.explain(b, "gallery:chelsea", upsampler="gaussian", sigma="12"),
                              UpsampleError, "'12'"),
    "explain target 1.5": (lambda b, x: ex.explain(b, "gallery:chelsea", target=1.5), MethodError, "class index"),
    "explain target text": (lambda b, x: ex.explain(b, "gallery:chelsea", target="abc"), MethodError, "class index"),
    "explain a number": (lambda b, x: ex.explain(123, "gallery:chelsea"), MethodError, "nn.Module"),
}


@pytest.mark.parametrize("case", list(API_CASES))
def test_the_api_refuses_at_its_boundary(tiny, case: str) -> None:
    call, error, words = API_CASES[case]
    with pytest.raises(error) as raised:
        call(*tiny)
    assert isinstance(raised.value, ExplorerError) and words in str(raised.value), str(raised.value)


def test_the_api_still_takes_what_it_always_took(tiny) -> None:
    backbone, x = tiny
    maps = ex.compute_cams(backbone, x, torch.tensor([3]), ["gradcam"])["gradcam"]
    assert ex.upsample(maps, np.int64(224)).shape == (1, 224, 224)
    assert ex.upsample(maps, (224.0, 200), "gaussian", sigma=np.float32(20)).shape == (1, 224, 200)
    assert ex.upsample(maps, torch.Size([32, 32]), "gaussian", sigma=[10, 12]).shape == (1, 32, 32)


# ------------------------------------------------------------------------------ zip uploads

def _zip(entries: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate name it is asked to write
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def _method_99() -> bytes:
    data = bytearray(_zip([("photos/a.png", b"hello")], zipfile.ZIP_STORED))
    for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        at = data.index(signature) + offset
        data[at:at + 2] = (99).to_bytes(2, "little")  # 99: AES, which Python's zipfile cannot undo
    return bytes(data)


def _encrypted() -> bytes:
    data = bytearray(_zip([("photos/a.png", b"hello")], zipfile.ZIP_STORED))
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.index(signature) + offset
        data[at] |= 0x1
    return bytes(data)


ZIP_CASES = {
    "the same name twice": (lambda: _zip([("photos/a.png", b"1"), ("photos/a.png", b"2")]), "twice"),
    "a file and a folder of one name": (lambda: _zip([("photos", b"1"), ("photos/a.png", b"2")]), "same name"),
    "a 300-character name": (lambda: _zip([("photos/" + "x" * 300 + ".png", b"1")]), "longer than"),
    "a 2,000-character path": (lambda: _zip([("/".join(["d" * 100] * 20) + "/a.png", b"1")]), "longer than"),
    "compression method 99": (_method_99, "compression method 99"),
    "an encrypted entry": (_encrypted, "encrypted"),
    "a truncated archive": (lambda: _zip([("photos/a.png", b"x" * 5000)])[:-40], "zip"),
}


@pytest.mark.parametrize("case", list(ZIP_CASES))
def test_a_zip_that_cannot_be_unpacked_says_why_and_leaves_nothing(tmp_path: Path, case: str) -> None:
    build, words = ZIP_CASES[case]
    with pytest.raises(ServerPathError) as raised:
        unpack_zip(build(), tmp_path / "dest")
    assert words in str(raised.value), str(raised.value)
    assert list(tmp_path.iterdir()) == []


def test_a_plain_zip_still_unpacks(tmp_path: Path) -> None:
    dest = unpack_zip(_zip([("photos/a.png", b"1"), ("photos/b/c.png", b"2")], zipfile.ZIP_BZIP2), tmp_path / "d")
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*.png")) == ["photos/a.png", "photos/b/c.png"]
