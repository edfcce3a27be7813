"""F-CAM Table D.1 on any dataset with ground truth: which loss term buys what.

Four decoders are trained with the same settings but for the loss terms: sampling regions (the
seeds' partial cross-entropy) alone, + the CRF loss, + the size constraint, and all three. Each is
then scored by the evaluate pipeline on the chosen split beside the base CAM with bilinear
upsampling, so the numbers are exactly those `python -m explorer evaluate` gives. Everything is
resumable: a rerun skips finished trainings and evaluations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from explorer.atomic import write_json_atomically, write_text_atomically
from explorer.backbones import load_backbone
from explorer.evaluate import EvalConfig, evaluate
from explorer.fcam.decoder import FcamError, read_decoder_card
from explorer.fcam_train import ABLATION_VARIANTS, FcamConfig, config_dict, train_fcam

VARIANT_LABELS = {
    "seeds": "CAM + seeds (SR)",
    "seeds+crf": "CAM + SR + CRF",
    "seeds+size": "CAM + SR + size (ASC)",
    "seeds+crf+size": "CAM + SR + CRF + ASC (F-CAM)",
}
METRICS = (("max_box_acc", "MaxBoxAcc"), ("max_box_acc_v2", "MaxBoxAccV2"), ("pxap", "PxAP"))


@dataclass
class AblationTable:
    backbone: str
    base_method: str
    split: str
    baseline: dict
    rows: list[dict] = field(default_factory=list)

    def markdown(self) -> str:
        present = [(k, label) for k, label in METRICS if k in self.baseline]
        head = "| variant | " + " | ".join(label for _, label in present) + " | gain in " + present[0][1] + " | training |"
        lines = [head, "|" + "---|" * (len(present) + 3)]
        lines.append(f"| {self.base_method} + bilinear (no decoder) | "
                     + " | ".join(f"{self.baseline[k]:.1f}" for k, _ in present) + " | | |")
        for row in self.rows:
            gain = row[present[0][0]] - self.baseline[present[0][0]]
            lines.append(f"| {VARIANT_LABELS.get(row['variant'], row['variant'])} | "
                         + " | ".join(f"{row[k]:.1f}" for k, _ in present)
                         + f" | {gain:+.1f} | {row['train_seconds'] / 60:.0f} min |")
        return "\n".join(lines)


def variant_config(config: FcamConfig, variant: str) -> FcamConfig:
    if variant not in ABLATION_VARIANTS:
        raise FcamError(f"unknown ablation variant '{variant}'; choose from {', '.join(ABLATION_VARIANTS)}")
    default = FcamConfig(backbone=config.backbone)
    base = dataclasses.replace(config, crf_weight=config.crf_weight or default.crf_weight,
                               size_weight=config.size_weight or default.size_weight)
    changes: dict[str, Any] = dict(ABLATION_VARIANTS[variant])
    return dataclasses.replace(base, **changes)


def run_ablation(config: FcamConfig, out_dir: str | Path, *, variants: Sequence[str] = tuple(ABLATION_VARIANTS),
                 split: str = "test", limit: int | None = None, reuse: str | Path | None = None,
                 command: str | None = None, device=None,
                 progress: Callable[[str, int, int, dict], object] | None = None,
                 log: Callable[[str], object] = lambda _text: None) -> AblationTable:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    backbone = load_backbone(config.backbone, config.weights, device=device)
    layer = backbone.resolve_layer(config.layer)
    rows, baseline = [], None
    for variant in variants:
        settings = variant_config(dataclasses.replace(config, layer=layer), variant)
        if variant == "seeds+crf+size" and reuse is not None:
            path = Path(reuse)
            card = read_decoder_card(path)
            if card["settings"] != config_dict(settings):
                changed = sorted(k for k, v in config_dict(settings).items() if card["settings"].get(k) != v)
                raise FcamError(f"{path.name} was trained with other settings ({', '.join(changed)}); drop --reuse "
                                f"or pass the same settings")
            log(f"{variant}: reusing {path}")
        else:
            path = out / f"{variant.replace('+', '_')}.pt"
            log(f"{variant}: training {path.name} (crf weight {settings.crf_weight:g}, size weight "
                f"{settings.size_weight:g})")
            cmd = f"{command} [variant {variant}]" if command else None
            train_fcam(settings, path, command=cmd, backbone=backbone, progress=progress)
            card = read_decoder_card(path)
        eval_config = EvalConfig(dataset=config.dataset, split=split, backbone=config.backbone,
                                 weights=config.weights, layer=layer, methods=(config.base_method,),
                                 upsamplers=("bilinear", "fcam"), confidence=False, limit=limit,
                                 relu=card["relu"], decoders={config.base_method: str(path)})
        log(f"{variant}: scoring on {config.dataset} ({split})")
        summary = evaluate(eval_config, out / "eval" / variant.replace("+", "_"), backbone=backbone)
        assert summary is not None  # one process: always summarised
        fcam_row = summary.row(config.base_method, "fcam")
        if baseline is None:
            bilinear = summary.row(config.base_method, "bilinear")
            baseline = {k: bilinear[k] for k, _ in METRICS if k in bilinear}
        rows.append({"variant": variant, "crf_weight": settings.crf_weight, "size_weight": settings.size_weight,
                     "decoder": str(path), "best_epoch": card["best_epoch"], "train_seconds": card["train_seconds"],
                     **{k: fcam_row[k] for k, _ in METRICS if k in fcam_row}})
    table = AblationTable(config.backbone, config.base_method, split, baseline or {}, rows)
    write_json_atomically(out / "ablation.json", {
        "backbone": table.backbone, "base_method": table.base_method, "dataset": config.dataset, "split": split,
        "command": command, "baseline_bilinear": table.baseline, "rows": rows,
        "settings": config_dict(config)})
    write_text_atomically(out / "ablation.md", table.markdown() + "\n")
    return table
