"""One F-CAM hyper-parameter swept on the validation split (F-CAM Fig. D.2 sweeps n-).

A decoder is trained for each value with every other setting fixed; each is already scored on
the validation split by its own model selection (the card's ``val``, at the epoch that scored
best there), so the curve reads the cards and the test split is never looked at. The value with
the best validation score (MaxBoxAcc, PxAP without boxes) is the one to evaluate on test.
Resumable: a finished decoder is read back, an interrupted one resumes from its run folder.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from explorer.atomic import write_json_atomically, write_text_atomically
from explorer.backbones import load_backbone
from explorer.fcam.decoder import FcamError, load_decoder, read_decoder_card
from explorer.fcam_train import (
    FcamConfig,
    class_targets,
    config_dict,
    load_split,
    score_split,
    selection_metric,
    train_fcam,
)
from explorer.metrics.intervals import ranking_note, with_interval

#: The settings a sweep may vary: the seeds' background share, the two loss weights, the step size.
SWEEPABLE = ("n_negative", "crf_weight", "size_weight", "lr")
METRICS = (("max_box_acc", "MaxBoxAcc"), ("max_box_acc_v2", "MaxBoxAccV2"), ("pxap", "PxAP"))


def sweep_file(out: Path, param: str, value: float) -> Path:
    return out / f"{param}={value:g}.pt"


def run_sweep(config: FcamConfig, param: str, values: Sequence[float], out_dir: str | Path, *,
              command: str | None = None, device=None,
              progress: Callable[[str, int, int, dict], object] | None = None,
              log: Callable[[str], object] = lambda _text: None) -> dict:
    """Train (or resume, or read back) one decoder per value of ``param``; write sweep.json and
    sweep.md in ``out_dir`` and return the JSON's content."""
    if param not in SWEEPABLE:
        raise FcamError(f"cannot sweep '{param}'; choose one of {', '.join(SWEEPABLE)}")
    if not values or len(set(values)) != len(values):
        raise FcamError("a sweep needs at least one value, each once")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    backbone = load_backbone(config.backbone, config.weights, device=device)
    config = dataclasses.replace(config, layer=backbone.resolve_layer(config.layer))
    rows, baseline = [], None
    for value in values:
        change: dict[str, Any] = {param: value}
        settings = dataclasses.replace(config, **change)
        settings.check()
        path = sweep_file(out, param, value)
        card = read_decoder_card(path) if path.is_file() else None
        if card is not None and card["settings"] != config_dict(settings):
            raise FcamError(f"{path} was trained with other settings; delete it or sweep into another folder")
        if card is None:
            log(f"{param} = {value:g}: training {path.name}")
            train_fcam(settings, path, command=f"{command} [{param} {value:g}]" if command else None,
                       backbone=backbone, progress=progress)
            card = read_decoder_card(path)
        baseline = baseline or card.get("val_baseline")
        rows.append({"value": value, "decoder": str(path), "best_epoch": card["best_epoch"],
                     "train_seconds": card["train_seconds"], **card["val"]})
    val_images, intervals = _validation_intervals(config, backbone, [Path(r["decoder"]) for r in rows])
    if intervals is not None:
        baseline = {**(baseline or {}), **intervals[0]}
        for row, scored in zip(rows, intervals[1:]):
            row.update(scored)
    best = max(rows, key=selection_metric)
    result = {"param": param, "backbone": config.backbone, "base_method": config.base_method,
              "split": "validation", "val_images": val_images, "command": command, "rows": rows,
              "baseline": baseline or {}, "selected": best["value"], "settings": config_dict(config)}
    note = ranking_note([{**r, "images": val_images} for r in rows], "max_box_acc", False,
                        "Validation MaxBoxAcc", ranked="values")
    if note:
        result["ranking_note"] = note
    write_json_atomically(out / "sweep.json", result)
    write_text_atomically(out / "sweep.md", sweep_markdown(result) + "\n")
    return result


def _validation_intervals(config: FcamConfig, backbone, decoders: Sequence[Path]
                          ) -> tuple[int | None, list[dict] | None]:
    """Each decoder (and the seeds' bilinear baseline first) scored again on the validation split
    with a 95 % bootstrap interval on MaxBoxAcc: the cards keep the score only, and a curve over
    a few hundred images is read against its noise. (None, None) without boxes there."""
    try:
        val = load_split(config.dataset, config.val_split, backbone.input_size, config.val_limit)
    except Exception:  # a folder has no validation split: the cards hold no score either
        return None, None
    if val.boxes is None:
        return len(val.images), None
    targets = class_targets(backbone, val)[0]
    scored = [score_split(backbone, None, val, targets, config, intervals=True)]
    for path in decoders:
        scored.append(score_split(backbone, load_decoder(path, backbone), val, targets, config, intervals=True))
    return len(val.images), scored


def sweep_markdown(result: dict) -> str:
    present = [(k, label) for k, label in METRICS if k in result["rows"][0]]
    lines = [f"| {result['param']} | " + " | ".join(label for _, label in present) + " | epoch | training |",
             "|" + "---|" * (len(present) + 3)]
    if result["baseline"]:
        lines.append(f"| {result['base_method']} seeds, bilinear | "
                     + " | ".join(with_interval(result["baseline"], k, "nan") for k, _ in present) + " | | |")
    for row in result["rows"]:
        mark = " (selected)" if row["value"] == result["selected"] else ""
        lines.append(f"| {row['value']:g}{mark} | " + " | ".join(with_interval(row, k, "nan") for k, _ in present)
                     + f" | {row['best_epoch']} | {row['train_seconds'] / 60:.0f} min |")
    if result.get("val_images"):
        lines.append("")
        lines.append(f"{result['val_images']} validation images; [low, high]: 95 % percentile bootstrap over "
                     "them, the threshold re-chosen in each replicate.")
    if result.get("ranking_note"):
        lines.append(result["ranking_note"])
    return "\n".join(lines)
