"""Draw docs/cam_vs_object.png: the synthetic benchmark's trap, seen through a shipped classifier.

    python docs/make_phenomenon_figure.py checkpoints/evaluations/synthetic_lite0 --out docs/cam_vs_object.png

For the first test images of each class, one row: the image with its object outline and the
class-deciding part; then each method/upsampler pair's map with the ground-truth box (green) and
the box the protocol draws from the map at that pair's MaxBoxAcc threshold (red). When the
evaluation scored an F-CAM decoder, its column comes last.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from scipy import ndimage  # noqa: E402

from explorer import load_backbone, views  # noqa: E402
from explorer.datasets import open_dataset  # noqa: E402
from explorer.evaluate import read_summary  # noqa: E402
from explorer.fcam import load_decoder  # noqa: E402
from explorer.metrics import boxes_from_map  # noqa: E402
from explorer.pipeline import fcam_at, grid_maps  # noqa: E402
from explorer.runs import Run  # noqa: E402
from explorer.upsample import normalise, upsample  # noqa: E402

PAIRS = (("cam", "bilinear"), ("gradcam", "bilinear"), ("extendedcam", "gaussian"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished evaluation folder")
    parser.add_argument("--out", type=Path, default=Path("docs/cam_vs_object.png"))
    parser.add_argument("--per-class", type=int, default=1)
    args = parser.parse_args()
    run = Run(args.run, read_summary(args.run), shipped=False)
    config = run.summary["config"]
    dataset = open_dataset(config["dataset"], config["split"])
    backbone = load_backbone(config["backbone"], config["weights"], device="cpu")
    chosen, seen_classes = [], {}
    for i, sample in enumerate(dataset):
        if seen_classes.get(sample.label, 0) < args.per_class:
            seen_classes[sample.label] = seen_classes.get(sample.label, 0) + 1
            chosen.append(i)
    images = [dataset.load_image(i) for i in chosen]
    batch = backbone.preprocess(images)
    labels = [dataset[i].label for i in chosen]
    pairs = list(PAIRS) + [(m, "fcam") for m in config.get("decoders", {})]
    methods = sorted({m for m, _ in pairs})
    decoders = {m: load_decoder(path, backbone) for m, path in config.get("decoders", {}).items()}
    grid = grid_maps(backbone, batch, labels, methods, config.get("layer"), decoders=decoders)
    sigma = tuple(config["sigma"])
    rows = []
    for j, i in enumerate(chosen):
        seen = np.asarray(images[j].convert("RGB").resize((224, 224), Image.Resampling.BILINEAR))
        fg, _ = dataset.gt_mask(i)
        part = dataset.part_mask(i)
        first = seen.copy()
        edge = fg & ~ndimage.binary_erosion(fg, iterations=2)
        first[edge] = (40, 200, 60)
        first[part & ~ndimage.binary_erosion(part, iterations=1)] = (255, 255, 0)
        tiles = [first]
        for method, up in pairs:
            if up == "fcam":
                values = fcam_at(grid.fcam[method][j:j + 1], (224, 224))[0].numpy()
            else:
                values = normalise(upsample(grid.maps[method][j:j + 1], (224, 224), up, sigma), "minmax")[0].numpy()
            tau = run.row(method, up)["best_threshold"]
            tile = views.overlay(seen, values, views.colour_scale(values))
            tile = views.draw_boxes(tile, dataset.gt_boxes(i), views.GT_COLOUR)
            tile = views.draw_boxes(tile, boxes_from_map(values.astype(np.float64), tau), views.PRED_COLOUR)
            tiles.append(tile)
        rows.append(tiles)
    row_labels = [dataset.classes[dataset[i].label] for i in chosen]
    col_labels = ["object, part (yellow)"] + [
        f"{m} + {'F-CAM' if u == 'fcam' else u}: {run.row(m, u)['max_box_acc']:.1f}" for m, u in pairs]
    sheet = views.labelled_grid(rows, row_labels, col_labels,
                                title=f"{config['backbone']}, synthetic test split: boxes from each map (red) vs ground truth "
                                      f"(green); column titles give the split's MaxBoxAcc")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(args.out, optimize=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
