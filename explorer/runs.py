"""Finished evaluations on disk, as the metrics pages read them.

An evaluation folder (written by ``python -m explorer evaluate``) holds ``summary.json``,
``summary.csv``, ``curves.npz`` (BoxAcc against threshold, precision-recall, value histograms)
and ``records.csv`` (one line per image and method/upsampler pair). The pages list those under
:data:`RUNS_DIR` (the user's own runs) and :data:`SHIPPED_RUNS_DIR` (the README's evaluations of the
shipped classifiers on the full synthetic test split).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from explorer.evaluate import EvaluateError, combo_key, read_summary
from explorer.server_files import public_name, runs_dir

REPO_DIR = Path(__file__).resolve().parent.parent
SHIPPED_RUNS_DIR = REPO_DIR / "checkpoints" / "evaluations"


def slug(text: str) -> str:
    """`text` as a safe file-name part: letters, digits, '-' and '_' only, at most 60 characters."""
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text).strip("-")[:60] or "run"


__all__ = ["Run", "list_runs", "load_curves", "load_records", "runs_dir", "runs_with_decoder", "slug"]


@dataclass(frozen=True)
class Run:
    path: Path
    summary: dict
    shipped: bool
    mine: bool = False  # made in this visitor's session (its private space), not by the server's operator

    @property
    def owner(self) -> str:
        return "shipped" if self.shipped else "yours" if self.mine else "this server's"

    @property
    def label(self) -> str:
        config = self.summary["config"]
        return (f"{self.path.name} · {config['backbone']} on {public_name(str(config['dataset']))} ({config['split']}), "
                f"{self.summary['num_images']} images [{self.owner}]")

    @property
    def combos(self) -> list[tuple[str, str]]:
        return [(row["method"], row["upsampler"]) for row in self.summary["rows"]]

    def row(self, method: str, upsampler: str) -> dict:
        for row in self.summary["rows"]:
            if row["method"] == method and row["upsampler"] == upsampler:
                return row
        raise EvaluateError(f"{self.path.name} has no results for {method} with {upsampler}")


def list_runs(*roots: Path, own: Path | None = None) -> list[Run]:
    """Every finished evaluation directly under the given folders (default: the server's runs,
    then the shipped ones), after those in ``own`` (a session's private runs folder) when given.
    A folder without a readable summary is left out (it is unfinished); no session's private
    space is ever listed from the shared folders."""
    roots = roots or (runs_dir(), SHIPPED_RUNS_DIR)
    found = []
    for root, mine in ([(own, True)] if own is not None else []) + [(r, False) for r in roots]:
        if not root.is_dir():
            continue
        for path in sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()):
            try:
                summary = read_summary(path)
            except EvaluateError:
                continue
            found.append(Run(path, summary, shipped=root == SHIPPED_RUNS_DIR, mine=mine))
    return found


def runs_with_decoder(decoder: str | Path, runs: list[Run] | None = None) -> list[tuple[Run, str]]:
    """The finished evaluations that scored this decoder file, each with the method whose seeds
    trained it (an evaluation records its decoders relative to the repository or absolute)."""
    target = (REPO_DIR / decoder).resolve()  # an absolute path stays as it is
    shipped = REPO_DIR / "checkpoints" / "fcam"
    found = []
    for run in list_runs() if runs is None else runs:
        for method, path in (run.summary["config"].get("decoders") or {}).items():
            where = Path(path)
            same = (REPO_DIR / where).resolve() == target
            # A shipped evaluation made in another checkout names the shipped decoder by that
            # checkout's absolute path: the same file in this one.
            moved = (where.is_absolute() and where.parent.parts[-2:] == ("checkpoints", "fcam")
                     and target.parent == shipped.resolve() and where.name == target.name)
            if same or moved:
                found.append((run, method))
    return found


def run_decoder_file(run: Run, method: str) -> Path:
    """The F-CAM decoder an evaluation scored for `method`, in this checkout: a path relative to
    the repository, or an absolute one; a shipped decoder named by another checkout's absolute
    path is this checkout's shipped file of the same name."""
    named = (run.summary["config"].get("decoders") or {}).get(method)
    if not named:
        raise EvaluateError(f"{run.path.name} scored no F-CAM decoder for {method}")
    where = Path(named)
    local = where if where.is_absolute() else REPO_DIR / where
    shipped = REPO_DIR / "checkpoints" / "fcam" / where.name
    if not local.is_file() and where.parent.parts[-2:] == ("checkpoints", "fcam") and shipped.is_file():
        return shipped
    return local


def load_curves(run: Run) -> dict[str, np.ndarray]:
    path = run.path / "curves.npz"
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError) as exc:
        raise EvaluateError(f"{path}: cannot be read ({exc}); rerun the evaluation") from exc


def load_records(run: Run, method: str, upsampler: str) -> list[dict]:
    """The per-image lines of one method/upsampler pair, numbers parsed (None where empty)."""
    path = run.path / "records.csv"
    key = combo_key(method, upsampler)
    rows = []
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            for line in csv.DictReader(fh):
                if line["combo"] != key:
                    continue
                row: dict = {"image_id": line["image_id"]}
                for name in ("label", "target", "predicted", "box_x0", "box_y0", "box_x1", "box_y1"):
                    row[name] = int(line[name]) if line[name] != "" else None
                for name in ("score", "iou", "iou_v2", "pxap", "drop", "drop_relative"):
                    row[name] = float(line[name]) if line[name] != "" else None
                rows.append(row)
    except (OSError, KeyError, ValueError) as exc:
        raise EvaluateError(f"{path}: cannot be read ({exc}); rerun the evaluation") from exc
    return rows
