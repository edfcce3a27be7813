"""kill -9 in the middle of every long job, then the same command again: it resumes, ends with the
results of an uninterrupted run, and no partially written file is ever read as complete.

Each job runs as a user runs it (a `python -m explorer` subprocess) on a tiny configuration: the
synthetic benchmark with a few images and randomly initialised networks. The kill lands when the
job's first checkpoint (chunk file, run state, partial ERF sum) exists, i.e. mid-run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from explorer.datasets import make_synthetic

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("killed") / "synthetic", seed=17,
                          sizes={"train": 16, "val": 4, "test": 12})


def explorer_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "explorer", *args]


def run_to_end(command: list[str]) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def kill_when(command: list[str], ready, timeout: float = 600) -> None:
    """Start `command`, SIGKILL it as soon as `ready()` is true (it must not have finished)."""
    process = subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if process.poll() is not None:
                pytest.fail(f"the job ended (status {process.returncode}) before it could be killed: "
                            f"{process.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("the job never reached its first checkpoint")
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL


def no_temporary_files_read_as_complete(folder: Path) -> None:
    """Atomic writes leave at most hidden *.tmp files behind, never a half-written real name."""
    for path in folder.rglob("*"):
        if path.is_file() and path.name.endswith(".tmp"):
            assert path.name.startswith("."), path


def test_evaluate_killed_mid_run_resumes_to_the_same_summary(data, tmp_path):
    args = ["evaluate", "--dataset", f"synthetic:{data}", "--backbone", "synthetic_cnn", "--weights", "random",
            "--methods", "gradcam,extendedcam", "--upsampler", "bilinear,gaussian", "--sigma", "24",
            "--batch-size", "2", "--threshold-interval", "0.01", "--device", "cpu"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    run_to_end(explorer_command(*args, "--out", str(whole)))
    kill_when(explorer_command(*args, "--out", str(killed)), lambda: len(list((killed / "chunks").glob("chunk-*.npz"))) >= 2)
    assert not (killed / "summary.json").exists()
    no_temporary_files_read_as_complete(killed)
    done_before = len(list((killed / "chunks").glob("chunk-*.npz")))
    assert done_before < 6
    run_to_end(explorer_command(*args, "--out", str(killed)))
    assert json.loads((killed / "summary.json").read_text())["rows"] == json.loads((whole / "summary.json").read_text())["rows"]
    assert (killed / "records.csv").read_text() == (whole / "records.csv").read_text()


def test_erf_killed_mid_run_resumes_to_the_same_card(tmp_path):
    args = ["erf", "--backbone", "vgg16", "--weights", "random", "--layer", "conv4_3", "--images", "24",
            "--batch-size", "2", "--source", "noise", "--device", "cpu"]
    whole, killed = tmp_path / "whole.json", tmp_path / "killed.json"
    run_to_end(explorer_command(*args, "--out", str(whole)))
    state = killed.with_name(f".{killed.name}.partial.npz")

    def halfway() -> bool:
        if not state.is_file():
            return False
        try:
            with np.load(state) as saved:
                return int(saved["done"]) >= 6
        except Exception:  # being replaced this very moment
            return False

    kill_when(explorer_command(*args, "--out", str(killed)), halfway)
    assert not killed.exists()
    resumed = run_to_end(explorer_command(*args, "--out", str(killed)))
    assert "resuming the partial estimate" in resumed.stdout
    a, b = json.loads(whole.read_text()), json.loads(killed.read_text())
    for key in ("n_images", "interrupted", "r2", "amplitude", "sigma_x", "sigma_y", "centre_x", "centre_y"):
        assert a[key] == b[key], key
    assert not state.exists()


def test_train_classifier_killed_mid_run_resumes_to_the_same_weights(data, tmp_path):
    args = ["train-classifier", "--arch", "synthetic_cnn", "--data", str(data), "--epochs", "2", "--batch-size", "4"]
    whole, killed = tmp_path / "whole.pt", tmp_path / "killed.pt"
    run_to_end(explorer_command(*args, "--out", str(whole)))
    state = tmp_path / "killed.run" / "state.pt"
    kill_when(explorer_command(*args, "--out", str(killed)), state.is_file)
    assert not killed.exists()
    run_to_end(explorer_command(*args, "--out", str(killed)))
    a, b = torch.load(whole, weights_only=True), torch.load(killed, weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_train_fcam_killed_mid_run_resumes_to_the_same_decoder(data, tmp_path):
    args = ["train-fcam", "--backbone", "synthetic_cnn", "--weights", "random", "--dataset", f"synthetic:{data}",
            "--epochs", "2", "--batch-size", "4"]
    whole, killed = tmp_path / "whole.pt", tmp_path / "killed.pt"
    run_to_end(explorer_command(*args, "--out", str(whole)))
    state = tmp_path / "killed.run" / "state.pt"
    kill_when(explorer_command(*args, "--out", str(killed)), state.is_file)
    assert not killed.exists() and not killed.with_suffix(".json").exists()
    run_to_end(explorer_command(*args, "--out", str(killed)))
    a, b = torch.load(whole, weights_only=True), torch.load(killed, weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    card_a, card_b = (json.loads(p.with_suffix(".json").read_text()) for p in (whole, killed))
    assert card_a["val"] == card_b["val"] and card_a["curve"] == card_b["curve"]
