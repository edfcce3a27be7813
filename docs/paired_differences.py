"""Paired differences between maps of one evaluation, per image, with a 95 % bootstrap interval.

Two maps scored on the same images are compared image by image: the mean of (A - B) over the
images, its interval from resampling the images (the same draws for both maps, so what the images
share cancels). Two separate intervals that overlap can still hide a difference this one shows,
and a difference whose interval holds 0 is not established.

    python docs/paired_differences.py checkpoints/evaluations/synthetic_vgg_test1000 \
        --metric drop_relative --maps extendedcam@gaussian,gradcam@gaussian,gradcampp@gaussian

``--metric``: a per-image column of records.csv: drop, drop_relative (Average Drop %, normal and
relative masking; lower is better), pxap (per-image PxAP) or iou.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

from explorer.evaluate import EvaluateError, read_summary
from explorer.metrics.intervals import bootstrap_weights, mean_interval
from explorer.runs import Run, load_records

METRICS = ("drop", "drop_relative", "pxap", "iou")


def per_image(run: Run, combo: str, metric: str) -> dict[str, float]:
    method, _, upsampler = combo.partition("@")
    records = load_records(run, method, upsampler)
    if not records:
        raise EvaluateError(f"{run.path.name} has no per-image records for {combo}")
    values = {r["image_id"]: r[metric] for r in records if r[metric] is not None}
    if not values:
        raise EvaluateError(f"{run.path.name}: {combo} has no '{metric}' per image (was it measured?)")
    return values


def paired_rows(run: Run, combos: list[str], metric: str) -> list[tuple[str, str, int, float, tuple[float, float]]]:
    """(A, B, images, mean of A - B, its 95 % interval) for every pair of the given maps."""
    values = {combo: per_image(run, combo, metric) for combo in combos}
    rows = []
    for a, b in itertools.combinations(combos, 2):
        shared = sorted(values[a].keys() & values[b].keys())
        diff = np.array([values[a][i] - values[b][i] for i in shared])
        interval = mean_interval(diff, bootstrap_weights(len(diff)))
        rows.append((a, b, len(diff), float(diff.mean()), (interval.low, interval.high)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Paired per-image differences between maps of one evaluation.")
    parser.add_argument("folder", help="an evaluation folder (python -m explorer evaluate --out)")
    parser.add_argument("--metric", choices=METRICS, default="drop_relative")
    parser.add_argument("--maps", required=True, help="comma-separated method@upsampler, at least two")
    args = parser.parse_args(argv)
    combos = [c.strip() for c in args.maps.split(",") if c.strip()]
    try:
        if len(combos) < 2:
            raise EvaluateError("--maps needs at least two method@upsampler pairs to compare")
        run = Run(Path(args.folder), read_summary(args.folder), shipped=False)
        rows = paired_rows(run, combos, args.metric)
    except EvaluateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"| A | B | images | mean of A - B ({args.metric}) | 95 % paired interval | reading |")
    print("|---|---|---|---|---|---|")
    for a, b, n, mean, (low, high) in rows:
        reading = "A > B" if low > 0 else "A < B" if high < 0 else "not established (the interval holds 0)"
        print(f"| {a} | {b} | {n} | {mean:+.2f} | [{low:+.2f}, {high:+.2f}] | {reading} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
