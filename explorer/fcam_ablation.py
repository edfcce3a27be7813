"""F-CAM Table D.1 on any dataset with ground truth: which loss term buys what.

Four decoders are trained with the same settings but for the loss terms: sampling regions (the
seeds' partial cross-entropy) alone, + the CRF loss, + the size constraint, and all three. Each is
then scored by the evaluate pipeline on the chosen split beside the base CAM with bilinear
upsampling, so the numbers are exactly those `python -m explorer evaluate` gives, with its 95 %
bootstrap intervals over images. `run_seeded_ablation` repeats the table for several training seeds
(the classifier, the data and the split stay the same; only the decoder's initialisation, epoch
order, augmentation and seed draws change) and `aggregate_ablations` puts the spread over seeds
beside the spread over images. Everything is resumable: a rerun skips finished trainings and
evaluations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from explorer.atomic import write_json_atomically, write_text_atomically
from explorer.backbones import load_backbone
from explorer.controls import CONTROLS
from explorer.evaluate import EvalConfig, evaluate
from explorer.fcam.decoder import FcamError, read_decoder_card
from explorer.fcam_train import ABLATION_VARIANTS, FcamConfig, config_dict, train_fcam
from explorer.metrics.intervals import with_interval
from explorer.safe_files import UnsafeFileError, read_json

VARIANT_LABELS = {
    "seeds": "CAM + seeds (SR)",
    "seeds+crf": "CAM + SR + CRF",
    "seeds+size": "CAM + SR + size (ASC)",
    "seeds+crf+size": "CAM + SR + CRF + ASC (F-CAM)",
}
METRICS = (("max_box_acc", "MaxBoxAcc"), ("max_box_acc_v2", "MaxBoxAccV2"), ("pxap", "PxAP"))
# F-CAM Table D.1, CUB, VGG16, MaxBoxAcc (CAM* rows), the column the synthetic tables stand beside.
PAPER_CUB_VGG16_MAX_BOX_ACC = {"baseline": 61.6, "seeds": 84.2, "seeds+size": 82.9, "seeds+crf": 84.6,
                               "seeds+crf+size": 87.3}


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
                     + " | ".join(with_interval(self.baseline, k) for k, _ in present) + " | | |")
        for row in self.rows:
            gain = row[present[0][0]] - self.baseline[present[0][0]]
            lines.append(f"| {VARIANT_LABELS.get(row['variant'], row['variant'])} | "
                         + " | ".join(with_interval(row, k) for k, _ in present)
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
    rows, baseline, controls = [], None, []
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
            verb = "reading back (trained before)" if path.is_file() and path.with_suffix(".json").is_file() else "training"
            log(f"{variant}: {verb} {path.name} (crf weight {settings.crf_weight:g}, size weight "
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
            baseline = _scores(bilinear)
            controls = [{"method": r["method"], **_scores(r)} for r in summary.rows
                        if r["method"].startswith(("control_", "reference_"))]
        rows.append({"variant": variant, "crf_weight": settings.crf_weight, "size_weight": settings.size_weight,
                     "decoder": str(path), "best_epoch": card["best_epoch"], "train_seconds": card["train_seconds"],
                     "images": fcam_row["images"], **_scores(fcam_row)})
    table = AblationTable(config.backbone, config.base_method, split, baseline or {}, rows)
    write_json_atomically(out / "ablation.json", {
        "backbone": table.backbone, "base_method": table.base_method, "dataset": config.dataset, "split": split,
        "command": command, "baseline_bilinear": table.baseline, "controls": controls, "rows": rows,
        "settings": config_dict(config)})
    write_text_atomically(out / "ablation.md", table.markdown() + "\n")
    return table


def _scores(row: dict) -> dict:
    """The three metrics of an evaluate row, each with its bootstrap interval when it has one."""
    return {key: row[key] for name, _ in METRICS for key in (name, f"{name}_ci") if key in row}


def run_seeded_ablation(config: FcamConfig, out_dir: str | Path, seeds: Sequence[int], *,
                        reuse: str | Path | None = None, **kwargs: Any) -> dict:
    """Table D.1 once per training seed, in ``out_dir/seed<N>/``, then the table over seeds
    (``out_dir/seeds.json`` and ``seeds.md``). ``reuse`` stands in for the full-loss decoder of
    the seed it was trained with only."""
    if len(set(seeds)) != len(seeds) or not seeds:
        raise FcamError("give each training seed once, e.g. --seeds 0,1,2")
    reuse_seed = read_decoder_card(Path(reuse))["settings"].get("seed") if reuse is not None else None
    out = Path(out_dir)
    for seed in seeds:
        run_ablation(dataclasses.replace(config, seed=seed), out / f"seed{seed}",
                     reuse=reuse if reuse_seed == seed else None, **kwargs)
    result = aggregate_ablations([out / f"seed{seed}" for seed in seeds])
    write_json_atomically(out / "seeds.json", result)
    write_text_atomically(out / "seeds.md", seeds_markdown(result) + "\n")
    return result


def aggregate_ablations(folders: Sequence[str | Path]) -> dict:
    """Several seeds' ``ablation.json`` as one table: per variant and metric each seed's score with
    its 95 % interval over images, the mean over seeds and their sample standard deviation. The
    runs must differ in the training seed only."""
    runs = []
    for folder in folders:
        path = Path(folder) / "ablation.json"
        if not path.is_file():
            raise FcamError(f"{path} does not exist: run python -m explorer fcam-ablation for that seed first")
        try:
            runs.append(read_json(path))
        except UnsafeFileError as exc:
            raise FcamError(f"{exc}; rerun that seed's ablation") from exc
    if not runs:
        raise FcamError("no ablation runs to aggregate")
    first = runs[0]
    for run in runs[1:]:
        other = {k: v for k, v in run["settings"].items() if k != "seed"}
        changed = sorted(k for k, v in first["settings"].items() if k != "seed" and other.get(k) != v)
        if changed or run["split"] != first["split"]:
            raise FcamError(f"the ablation runs differ in more than the seed ({', '.join(changed) or 'split'}); "
                            "only runs of one recipe can be aggregated")
        if [r["variant"] for r in run["rows"]] != [r["variant"] for r in first["rows"]]:
            raise FcamError("the ablation runs trained different variants; aggregate runs of the same variants")
    seeds = [run["settings"]["seed"] for run in runs]
    rows = []
    for i, variant in enumerate(r["variant"] for r in first["rows"]):
        row: dict[str, Any] = {"variant": variant, "per_seed": [], "paper_cub_vgg16_max_box_acc":
                               PAPER_CUB_VGG16_MAX_BOX_ACC.get(variant)}
        for seed, run in zip(seeds, runs):
            per = run["rows"][i]
            row["per_seed"].append({"seed": seed, "best_epoch": per["best_epoch"],
                                    "train_seconds": per["train_seconds"], **_scores(per)})
        for name, _ in METRICS:
            values = [p[name] for p in row["per_seed"] if name in p]
            if len(values) == len(runs):
                row[name] = float(np.mean(values))
                row[f"{name}_sd"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
                row[f"{name}_range"] = [float(min(values)), float(max(values))]
        rows.append(row)
    baseline = first["baseline_bilinear"]
    return {"backbone": first["backbone"], "base_method": first["base_method"], "dataset": first["dataset"],
            "split": first["split"], "images": first["rows"][0].get("images"), "seeds": seeds,
            "baseline_bilinear": baseline, "controls": first.get("controls", []),
            "paper_cub_vgg16_baseline": PAPER_CUB_VGG16_MAX_BOX_ACC["baseline"],
            "rows": rows, "settings": {k: v for k, v in first["settings"].items() if k != "seed"},
            "spread": "mean over training seeds, sample standard deviation (n - 1); each seed's 95 % interval is "
                      "the percentile bootstrap over the scored images"}


def seeds_markdown(result: dict) -> str:
    """The table over seeds: mean +- s.d. per metric, the gain over CAM + bilinear, each seed's
    MaxBoxAcc with its interval over images, and the paper's CUB VGG16 number."""
    n = len(result["seeds"])
    present = [(k, label) for k, label in METRICS if k in result["baseline_bilinear"]]
    first = present[0][0]
    base = result["baseline_bilinear"]
    seeds = ", ".join(str(s) for s in result["seeds"])
    lines = ["| variant | " + " | ".join(f"{label} (mean ± s.d., {n} seeds)" for _, label in present)
             + f" | gain in {present[0][1]} | {present[0][1]} per seed ({seeds}) [95 % interval over images] "
             "| paper, CUB VGG16 MaxBoxAcc |",
             "|" + "---|" * (len(present) + 4)]
    lines.append(f"| {result['base_method']} + bilinear (no decoder; no training seed) | "
                 + " | ".join(with_interval(base, k) for k, _ in present)
                 + f" | | | {result['paper_cub_vgg16_baseline']} |")
    for control in result.get("controls", []):
        kind = "control, no network" if control["method"].startswith("control_") else "oracle, from the ground truth"
        name = control["method"].partition("_")[2]
        label = CONTROLS.get(name, name.replace("_", " ") + " mask")
        lines.append(f"| {label} ({kind}) | " + " | ".join(with_interval(control, k) for k, _ in present)
                     + " | | | |")
    for row in result["rows"]:
        gains = [p[first] - base[first] for p in row["per_seed"]]
        per_seed = "; ".join(with_interval(p, first) for p in row["per_seed"])
        paper = row["paper_cub_vgg16_max_box_acc"]
        lines.append(f"| {VARIANT_LABELS.get(row['variant'], row['variant'])} | "
                     + " | ".join(f"{row[k]:.1f} ± {row[f'{k}_sd']:.1f}" for k, _ in present)
                     + f" | {np.mean(gains):+.1f} | {per_seed} | {'' if paper is None else paper} |")
    return "\n".join(lines)
