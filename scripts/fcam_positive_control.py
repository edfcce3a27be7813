"""F-CAM's positive control: decoders trained from ground-truth seeds, scored against plain
upsampling of the very grid map their seeds came from, paired per image.

A negative F-CAM result means little unless the same code, given good seeds, beats interpolation.
Here the CAM is replaced by the ground truth reduced to the CAM's grid (F-CAM supplementary E):

* ``object``: the object mask, area-pooled to the grid (the best a grid map can be);
* ``part``: the class-deciding part's mask (the head on the synthetic benchmark), area-pooled:
  what a perfect classifier's CAM could at best show on benchmark v2.

Each decoder is trained with the shipped trainer (``train_fcam``, ``seed_source``) at the paper's
CRF weight converted to this implementation's units (1.15e-9) and at the shipped 2e-8; the object
case over three training seeds. On the test split each decoder's map is compared with bilinear
and Gaussian (the layer's fitted ERF sigma) upsampling of the same grid map: MaxBoxAcc,
MaxBoxAccV2 and PxAP, each difference with a paired 95 % bootstrap interval over the images.

    python scripts/fcam_positive_control.py --threads 1          # resumable; rerun to continue
    python scripts/fcam_positive_control.py --summary            # the table, from what is finished
    python scripts/fcam_positive_control.py --readme             # ... written into README.md's F-CAM section

Everything lands in checkpoints/fcam/positive_control/: each decoder (.pt + card), each
evaluation (.eval.json) and summary.json / summary.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from explorer.atomic import write_json_atomically, write_text_atomically
from explorer.backbones import load_backbone
from explorer.capture import capture
from explorer.fcam.decoder import load_decoder
from explorer.fcam_train import (
    EVAL_SIZE,
    FcamConfig,
    class_targets,
    ground_truth_masks,
    load_split,
    normalise_uint8,
    oracle_grid_maps,
    train_fcam,
)
from explorer.metrics import BoxEvaluator, PixelEvaluator, thresholds
from explorer.metrics.intervals import (
    bootstrap_weights,
    hit_curves,
    max_acc_interval,
    max_box_acc_v2_interval,
    paired_max_acc_difference,
    paired_max_box_acc_v2_difference,
    paired_pxap_difference,
    pxap_interval,
)
from explorer.upsample import normalise, upsample

OUT = Path("checkpoints/fcam/positive_control")
PAPER_CRF = 1.15e-9  # F-CAM's lambda converted to this implementation's units (README, F-CAM)
SHIPPED_CRF = 2e-8
#: (seed source, CRF weight, training seed), in the order they run: the four that answer the
#: question first, then the object case's other seeds.
RUNS = [("object", PAPER_CRF, 0), ("object", SHIPPED_CRF, 0), ("part", PAPER_CRF, 0), ("part", SHIPPED_CRF, 0),
        ("object", PAPER_CRF, 1), ("object", PAPER_CRF, 2), ("object", SHIPPED_CRF, 1), ("object", SHIPPED_CRF, 2)]


def run_name(backbone: str, source: str, crf: float, seed: int) -> str:
    return f"{backbone}__{source}__crf{crf:.3g}__seed{seed}"


def erf_sigma(backbone: str, layer: str) -> tuple[float, float]:
    card = json.loads(Path(f"checkpoints/erf/{backbone}__{layer}.json").read_text(encoding="utf-8"))
    return float(card["sigma_x"]), float(card["sigma_y"])


def train(args: argparse.Namespace, source: str, crf: float, seed: int) -> Path:
    name = run_name(args.backbone, source, crf, seed)
    out = OUT / f"{name}.pt"
    if out.is_file() and out.with_suffix(".json").is_file():
        return out
    config = FcamConfig(backbone=args.backbone, seed_source=source, crf_weight=crf, seed=seed,
                        train_limit=args.train_limit, val_limit=args.val_limit)
    command = (f"python scripts/fcam_positive_control.py --backbone {args.backbone} --threads {args.threads} "
               f"(run {name}; or python -m explorer train-fcam --backbone {args.backbone} --seed-source {source} "
               f"--crf-weight {crf:g} --seed {seed} --train-limit {args.train_limit} --val-limit {args.val_limit} "
               f"--threads {args.threads} --out {out})")
    start = time.perf_counter()
    train_fcam(config, out, command=command, device="cpu")
    print(f"trained {name} in {(time.perf_counter() - start) / 60:.1f} min", flush=True)
    return out


def scorers() -> tuple[BoxEvaluator, PixelEvaluator]:
    taus = thresholds(0.001)
    return BoxEvaluator(taus, keep_records=True), PixelEvaluator(taus, keep_image_hists=True)


def score(box: BoxEvaluator, pix: PixelEvaluator) -> dict:
    result, weights = box.compute(), bootstrap_weights(box.num_images)
    pos, neg = np.stack(pix.image_pos_hists), np.stack(pix.image_neg_hists)
    return {"max_box_acc": round(result.max_box_acc, 4),
            "max_box_acc_ci": max_acc_interval(hit_curves(result.curves), weights).as_list(),
            "max_box_acc_v2": round(result.max_box_acc_v2, 4),
            "max_box_acc_v2_ci": max_box_acc_v2_interval(result.curves, weights, result.iou_levels).as_list(),
            "pxap": round(pix.compute().pxap, 4), "pxap_ci": pxap_interval(pos, neg, weights).as_list()}


def paired(a: tuple[BoxEvaluator, PixelEvaluator], b: tuple[BoxEvaluator, PixelEvaluator]) -> dict:
    ca, cb = a[0].compute().curves, b[0].compute().curves
    weights = bootstrap_weights(len(ca))
    return {"max_box_acc": paired_max_acc_difference(hit_curves(ca), hit_curves(cb), weights).as_dict(),
            "max_box_acc_v2": paired_max_box_acc_v2_difference(ca, cb, weights).as_dict(),
            "pxap": paired_pxap_difference(np.stack(a[1].image_pos_hists), np.stack(a[1].image_neg_hists),
                                           np.stack(b[1].image_pos_hists), np.stack(b[1].image_neg_hists),
                                           weights).as_dict()}


@torch.no_grad()
def evaluate(args: argparse.Namespace, decoder_file: Path, source: str) -> dict:
    """The decoder, bilinear and Gaussian of the same ground-truth grid map, on the test split."""
    target = decoder_file.with_suffix(".eval.json")
    if target.is_file():
        return json.loads(target.read_text(encoding="utf-8"))
    backbone = load_backbone(args.backbone, device="cpu")
    decoder = load_decoder(decoder_file, backbone)
    decoder.net.eval()
    layer = backbone.resolve_layer(None)
    sigma = erf_sigma(args.backbone, layer)
    data = load_split("synthetic", "test", backbone.input_size, args.test_limit, parts=source == "part")
    truth = ground_truth_masks(data, source, backbone.input_size)
    targets, _ = class_targets(backbone, data)
    maps = {"fcam": scorers(), "bilinear": scorers(), "gaussian": scorers()}
    for start in range(0, len(data.images), 16):
        x = normalise_uint8(data.images[start:start + 16], backbone)
        cap = capture(backbone, x, targets[start:start + 16], layer, gradient=False, taps=decoder.taps)
        grid = oracle_grid_maps(truth[start:start + 16], (cap.activations.shape[-2], cap.activations.shape[-1]))
        pixels = {"fcam": decoder.foreground(cap.features, backbone.input_size),
                  "bilinear": normalise(upsample(grid, EVAL_SIZE, "bilinear"), "minmax"),
                  "gaussian": normalise(upsample(grid, EVAL_SIZE, "gaussian", sigma=sigma), "minmax")}
        for name, values in pixels.items():
            if tuple(values.shape[-2:]) != (EVAL_SIZE, EVAL_SIZE):
                values = torch.nn.functional.interpolate(values[:, None], size=(EVAL_SIZE, EVAL_SIZE),
                                                         mode="bilinear", align_corners=False)[:, 0]
            v = values.cpu().numpy().astype(np.float64)
            maps[name][0].accumulate(v, data.boxes[start:start + 16])
            maps[name][1].accumulate(v, data.masks[start:start + 16], data.ignores[start:start + 16])
    result = {"decoder": str(decoder_file), "seed_source": source, "split": "test", "images": len(data.images),
              "grid": list(cap.activations.shape[-2:]), "gaussian_sigma": list(sigma),
              "rows": {name: score(*pair) for name, pair in maps.items()},
              "paired": {"fcam - bilinear": paired(maps["fcam"], maps["bilinear"]),
                         "fcam - gaussian": paired(maps["fcam"], maps["gaussian"]),
                         "gaussian - bilinear": paired(maps["gaussian"], maps["bilinear"])},
              "interval_method": "95 % percentile bootstrap over the images, 1000 replicates (seed 0), "
                                 "paired: both maps on the same resampled images, thresholds re-chosen"}
    write_json_atomically(target, result)
    return result


def summary(backbone: str) -> str:
    lines = ["| seeds from | CRF weight | training seed | metric | F-CAM | bilinear | Gaussian | F-CAM - bilinear "
             "(paired) | F-CAM - Gaussian (paired) |", "|---|---|---|---|---|---|---|---|---|"]
    by_setting: dict[tuple[str, float, str], list[float]] = {}
    for source, crf, seed in RUNS:
        path = OUT / f"{run_name(backbone, source, crf, seed)}.eval.json"
        if not path.is_file():
            continue
        ev = json.loads(path.read_text(encoding="utf-8"))
        for metric in ("max_box_acc", "max_box_acc_v2", "pxap"):
            cells = [f"{ev['rows'][m][metric]:.1f} [{ev['rows'][m][metric + '_ci'][0]:.1f}, "
                     f"{ev['rows'][m][metric + '_ci'][1]:.1f}]" for m in ("fcam", "bilinear", "gaussian")]
            diffs = [ev["paired"][k][metric] for k in ("fcam - bilinear", "fcam - gaussian")]
            cells += [f"{d['difference']:+.1f} [{d['ci'][0]:+.1f}, {d['ci'][1]:+.1f}] ({d['reading']})" for d in diffs]
            lines.append(f"| {source} | {crf:g} | {seed} | {metric} | " + " | ".join(cells) + " |")
            by_setting.setdefault((source, crf, metric), []).append(ev["rows"]["fcam"][metric])
    lines += ["", "| seeds from | CRF weight | metric | F-CAM mean +- s.d. over training seeds | seeds |",
              "|---|---|---|---|---|"]
    for (source, crf, metric), values in by_setting.items():
        sd = statistics.stdev(values) if len(values) > 1 else float("nan")
        lines.append(f"| {source} | {crf:g} | {metric} | {statistics.mean(values):.1f} +- {sd:.1f} | {len(values)} |")
    return "\n".join(lines) + "\n"


README_MARKS = ("<!-- positive-control:start -->", "<!-- positive-control:end -->")


def sync_readme(table: str, readme: Path = Path("README.md")) -> None:
    """Put the finished table between the README's positive-control marks."""
    text = readme.read_text(encoding="utf-8")
    start, end = (text.index(mark) for mark in README_MARKS)
    write_text_atomically(readme, text[:start + len(README_MARKS[0])] + "\n" + table.strip() + "\n" + text[end:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="synthetic_cnn", help="the frozen classifier whose taps feed the decoder")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train-limit", type=int, default=2400)
    parser.add_argument("--val-limit", type=int, default=300)
    parser.add_argument("--test-limit", type=int, default=300)
    parser.add_argument("--only", type=int, default=None, help="run only the first N of the planned runs")
    parser.add_argument("--summary", action="store_true", help="print the table of what is finished and stop")
    parser.add_argument("--readme", action="store_true", help="write the table of what is finished into README.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    OUT.mkdir(parents=True, exist_ok=True)
    if args.readme:
        table = summary(args.backbone)
        write_text_atomically(OUT / "summary.md", table)
        sync_readme(table)
        return 0
    if not args.summary:
        for source, crf, seed in RUNS[:args.only]:
            decoder = train(args, source, crf, seed)
            evaluate(args, decoder, source)
            table = summary(args.backbone)
            write_text_atomically(OUT / "summary.md", table)
            sync_readme(table)  # the README's table always matches the summary (a test holds them equal)
            print(table, flush=True)
    print(summary(args.backbone))
    return 0


if __name__ == "__main__":
    sys.exit(main())
