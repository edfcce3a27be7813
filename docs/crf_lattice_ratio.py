"""How the F-CAM authors' CRF weight translates into this implementation's units.

    .venv/bin/python docs/crf_lattice_ratio.py [--images 8] [--out checkpoints/evaluations/crf_lattice_ratio.json]

The paper's lambda = 2e-9 multiplies a CRF loss computed with a permutohedral lattice; the loss
here (explorer.fcam.losses) uses the exact dense Gaussian. For the first `--images` test images of
benchmark v2 at 224 x 224 (sigma_rgb 15, sigma_xy 100, the paper's), this computes
R_lattice / R_exact = sum_k S_k^T (lattice W) S_k / sum_k S_k^T W S_k with three segmentations S:
the object's ground-truth mask, that mask blurred (a soft decoder-like map) and a uniform 0.5.
The paper-equivalent weight in exact units is lambda_paper x ratio. The exact product is
50176^2 affinities an image (about half a minute each on 2 cores).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from explorer.atomic import write_json_atomically  # noqa: E402
from explorer.datasets.loaders import load_synthetic, read_mask  # noqa: E402
from explorer.fcam.lattice import lattice_to_exact_ratio  # noqa: E402
from explorer.fcam.losses import CRF_SIGMA_RGB, CRF_SIGMA_XY, CRF_WEIGHT_PAPER  # noqa: E402


def segmentations(mask: np.ndarray) -> dict[str, np.ndarray]:
    soft = np.asarray(Image.fromarray((mask * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(8)),
                      np.float64) / 255.0
    maps = {"object mask": mask.astype(np.float64), "blurred mask": soft, "uniform 0.5": np.full(mask.shape, 0.5)}
    return {name: np.stack([1.0 - m.ravel(), m.ravel()], 1) for name, m in maps.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    dataset = load_synthetic(split="test")
    ratios: dict[str, list[float]] = {}
    started = time.perf_counter()
    for sample in list(dataset)[:args.images]:
        image = np.asarray(Image.open(sample.image_path).convert("RGB").resize((224, 224), Image.BILINEAR))
        mask = np.zeros((224, 224), bool)
        for path in sample.mask_paths:
            mask |= read_mask(path) > 0
        for name, probs in segmentations(mask).items():
            ratio = lattice_to_exact_ratio(image, probs, CRF_SIGMA_RGB, CRF_SIGMA_XY)
            ratios.setdefault(name, []).append(ratio)
        print(sample.image_id, {name: round(values[-1], 4) for name, values in ratios.items()}, flush=True)
    rows = {name: {"mean": statistics.mean(v), "min": min(v), "max": max(v), "n": len(v)} for name, v in ratios.items()}
    every = [x for v in ratios.values() for x in v]
    result = {
        "sigma_rgb": CRF_SIGMA_RGB, "sigma_xy": CRF_SIGMA_XY, "size": [224, 224], "split": "test",
        "images": args.images, "ratio_lattice_over_exact": rows,
        "ratio_overall": statistics.mean(every),
        "paper_lambda": CRF_WEIGHT_PAPER,
        "paper_lambda_in_exact_units": CRF_WEIGHT_PAPER * statistics.mean(every),
        "seconds": round(time.perf_counter() - started, 1),
        "command": "python docs/crf_lattice_ratio.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    for name, row in rows.items():
        print(f"{name:14s} ratio {row['mean']:.4f} (min {row['min']:.4f}, max {row['max']:.4f}, n {row['n']})")
    print(f"paper lambda {CRF_WEIGHT_PAPER:g} on the lattice = {result['paper_lambda_in_exact_units']:.3g} on the exact sum")
    if args.out:
        write_json_atomically(Path(args.out), result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
