"""`torchrun --nproc_per_node 2 -m explorer evaluate` (gloo, CPU) gives exactly the summary of one
process, and the chunk files reach rank 0 through torch.distributed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from explorer.datasets import make_synthetic

pytestmark = pytest.mark.slow

ARGS = ["evaluate", "--backbone", "synthetic_cnn", "--weights", "random", "--methods", "gradcam,extendedcam",
        "--upsampler", "bilinear,gaussian", "--sigma", "20,24", "--batch-size", "3", "--threshold-interval", "0.01",
        "--device", "cpu"]


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_two_gloo_processes_match_one(tmp_path):
    data = make_synthetic(tmp_path / "synthetic", seed=7, sizes={"train": 0, "val": 0, "test": 10})
    dataset = ["--dataset", f"synthetic:{data}"]
    run([sys.executable, "-m", "explorer", *ARGS, *dataset, "--out", str(tmp_path / "one")], tmp_path)
    two = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "explorer", *ARGS, *dataset, "--out", str(tmp_path / "two")], tmp_path)
    one_summary = json.loads((tmp_path / "one" / "summary.json").read_text())
    two_summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert two_summary["rows"] == one_summary["rows"]
    assert two_summary["num_images"] == 10
    assert (tmp_path / "two" / "records.csv").read_text() == (tmp_path / "one" / "records.csv").read_text()
    assert "(rank 0 of 2)" in two.stderr
