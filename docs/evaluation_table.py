"""Print an evaluation's summary as the Markdown tables the README shows: the methods, then the
controls (maps that use no network) and references, every number with its 95 % interval.

    python docs/evaluation_table.py checkpoints/evaluations/synthetic_lite0 [--confidence]
    python docs/evaluation_table.py checkpoints/evaluations/synthetic_lite0_fcam_six --table1

``--table1`` prints F-CAM's Table 1 layout instead: one line per seed method (bilinear, Gaussian,
the decoder), the F-CAM paper's VGG16 numbers for the same seeds beside it.
"""

from __future__ import annotations

import argparse
import sys

from explorer.evaluate import EvaluateError, read_summary
from explorer.metrics.intervals import with_interval

LABELS = {"cam": "CAM", "gradcam": "Grad-CAM", "gradcampp": "Grad-CAM++", "smoothgradcampp": "Smooth Grad-CAM++",
          "xgradcam": "XGrad-CAM", "layercam": "LayerCAM", "extendedcam": "Extended-CAM (signed)",
          "reference_object": "oracle: object mask", "reference_part": "oracle: head mask only",
          "control_saturation": "HSV saturation", "control_median_distance": "distance from the median colour",
          "control_median_distance_filtered": "the same, 5x5 median-filtered",
          "control_frequency_tuned": "frequency-tuned saliency", "control_centre": "centre Gaussian"}
LOCALISATION = (("max_box_acc", "MaxBoxAcc"), ("max_box_acc_v2", "MaxBoxAccV2"), ("pxap", "PxAP"),
                ("top1_loc", "top-1 loc"))
CONFIDENCE = (("average_drop", "AD %"), ("increase", "Inc %"), ("average_drop_relative", "AD % rel."),
              ("increase_relative", "Inc % rel."))


def cell(row: dict, key: str) -> str:
    return with_interval(row, key)


def table(rows: list[dict], columns) -> list[str]:
    lines = [f"| map | upsampler | {' | '.join(label for _, label in columns)} |", "|" + "---|" * (len(columns) + 2)]
    for row in rows:
        up = {"fcam": "**F-CAM decoder**", "exact": "-"}.get(row["upsampler"], row["upsampler"])
        lines.append(f"| {LABELS.get(row['method'], row['method'])} | {up} | "
                     f"{' | '.join(cell(row, key) for key, _ in columns)} |")
    return lines


def table1(rows: list[dict]) -> list[str]:
    from explorer.fcam.paper import TABLE1_VGG

    by = {(r["method"], r["upsampler"]): r for r in rows}
    lines = ["| seeds from | bilinear MaxBoxAcc | Gaussian MaxBoxAcc | F-CAM MaxBoxAcc | F-CAM MaxBoxAccV2 | F-CAM PxAP "
             "| bilinear PxAP | paper, CUB VGG16 MaxBoxAcc |", "|" + "---|" * 8]
    for method in dict.fromkeys(r["method"] for r in rows if r["upsampler"] == "fcam"):
        bil, gau, dec = (by.get((method, u), {}) for u in ("bilinear", "gaussian", "fcam"))
        before, after = TABLE1_VGG[method]["cub_max_box_acc"]
        lines.append(f"| {LABELS.get(method, method)} | {cell(bil, 'max_box_acc')} | {cell(gau, 'max_box_acc')} | "
                     f"{cell(dec, 'max_box_acc')} | {cell(dec, 'max_box_acc_v2')} | {cell(dec, 'pxap')} | "
                     f"{cell(bil, 'pxap')} | {before} -> {after} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="An evaluation's summary as the README's Markdown tables.")
    parser.add_argument("folder", help="an evaluation folder (python -m explorer evaluate --out)")
    parser.add_argument("--table1", action="store_true", help="F-CAM's Table 1 layout, the paper's numbers beside")
    parser.add_argument("--confidence", action="store_true", help="Average Drop / %% Increase instead of localisation")
    args = parser.parse_args(argv)
    try:
        summary = read_summary(args.folder)
    except EvaluateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = summary["rows"]
    if args.table1:
        print("\n".join(table1(rows)))
        return 0
    methods = [r for r in rows if not r["method"].startswith(("control_", "reference_"))]
    others = [r for r in rows if r["method"].startswith(("control_", "reference_"))]
    columns = CONFIDENCE if args.confidence else LOCALISATION
    print("\n".join(table(methods, columns)))
    if columns is LOCALISATION and others:
        print()
        print("\n".join(table(others, LOCALISATION[:3])))
    accuracy = summary.get("classification_accuracy")
    interval = summary.get("intervals", {}).get("classification_accuracy")
    print(f"\n{summary['num_images']} images; classification accuracy "
          + (f"{accuracy:.1f} % [{interval[0]:.1f}, {interval[1]:.1f}]" if interval else f"{accuracy:.1f} %")
          + f"; sigma {summary['config']['sigma']}; {summary['seconds_this_call']:.0f} s; "
          + "[low, high]: " + summary.get("interval_method", "no interval stored") + ".")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
