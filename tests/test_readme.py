"""The README is code a newcomer runs: every ```python block executes as written, in a fresh
interpreter from the repository root, and every `explorer.<name>` / `ex.<name>` it mentions exists."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import explorer

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```python\n(.*?)^```", README, flags=re.S | re.M)
# `explorer.<name>` where <name> is an attribute, not a module path (explorer/ui.py, explorer.cli ...)
NAMES = sorted(set(re.findall(r"\b(?:explorer|ex)\.([A-Za-z_][A-Za-z0-9_]*)\b(?![/.]py)", README)))
MODULES = {"cli", "datasets", "train", "evaluate", "ui", "views", "jobs", "fcam", "fcam_train", "fcam_ablation",
           "metrics", "erf", "runs", "errors", "atomic", "backbones", "capture", "methods", "pipeline", "upsample",
           "images", "presets", "checkpoints", "classifiers", "runtime"}


def test_the_readme_has_python_examples() -> None:
    assert len(BLOCKS) >= 2  # the engine API and the ERF


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_each_python_block_of_the_readme_runs(index: int) -> None:
    result = subprocess.run([sys.executable, "-c", BLOCKS[index]], cwd=ROOT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, f"README python block {index + 1} failed:\n{BLOCKS[index]}\n{result.stderr[-3000:]}"


@pytest.mark.parametrize("name", NAMES)
def test_every_api_name_the_readme_shows_exists(name: str) -> None:
    if name in MODULES:
        __import__(f"explorer.{name}")
    else:
        assert hasattr(explorer, name), f"the README names explorer.{name}, which the package does not export"
