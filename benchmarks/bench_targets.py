"""Transformers and function targets against pytorch-grad-cam: agreement (r) and time, one process.

    python benchmarks/bench_targets.py [--repeats 3] [--json PATH]

Every network has random weights (seed 0): no weights can be downloaded here. Each row runs the
SAME model on the SAME input (the gallery's chelsea photo) and does equal work on both sides:
one forward, one gradient, the method's formula, bilinear upsampling to the input and min-max
normalisation (pytorch-grad-cam's `cam(...)` returns exactly that; ours is `compute_cams` then
`upsample` + `normalise`). Nothing is cached between calls on either side; the model is warmed
up once. Times are medians of `--repeats` interleaved rounds. Where the time differs: the peer's
`loss.backward()` runs the backward through every parameter down to the input; ours takes
`torch.autograd.grad` with respect to the target layer's output only, so it stops there.

* token layers: timm ViT-Tiny, DeiT-Tiny (two special tokens) and Swin-Tiny at the default layer
  (the last block's first norm) with the equivalent `reshape_transform` on the peer's side;
  Grad-CAM, Grad-CAM++, XGrad-CAM, LayerCAM, Score-CAM on ViT-Tiny. Grad-CAM++ differs by
  design: the peer adds 1e-6 to eq. 19's denominator 2 g^2 + sum A g^3, and at a ViT's norm
  layer every denominator is below 1e-6, so its map is not eq. 19 (with the peer's epsilon our
  capture gives the peer's map, tests/test_transformers.py);
* targets: SegmentationRegion against SemanticSegmentationTarget on fcn_resnet50 and
  deeplabv3_mobilenet_v3_large (the predicted region of the most frequent class), BoxScore
  against FasterRCNNBoxScoreTarget on fasterrcnn_mobilenet_v3_large_fpn (its top two
  detections; score threshold 0 and 320-pixel resizing so random weights detect something).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import explorer as ex  # noqa: E402
from benchmarks.common import (  # noqa: E402
    choose_threads,
    describe_machine,
    fmt_ms,
    format_table,
    machine_info,
    timeit_interleaved,
    write_json,
)
from explorer.targets import per_image, region_of_class  # noqa: E402
from tests.test_targets import PlanesOnly  # noqa: E402  (the wrapper pytorch-grad-cam's tutorial puts on a segmentation model)

R_TARGET = 0.999


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", default="auto")
    p.add_argument("--json", type=Path, default=None)
    return p.parse_args(argv)


def ours_pixels(backbone, x, target, method: str, layer: str | None = None, **options) -> np.ndarray:
    grid = ex.compute_cams(backbone, x, [target], [method], layer, relu="after", **options)[method]
    size = (int(x.shape[-2]), int(x.shape[-1]))
    return ex.normalise(ex.upsample(grid, size, "bilinear"), "minmax")[0].cpu().numpy()


def peer_call(cls, model, module, x, target, reshape=None, batch_size: int | None = None) -> Callable[[], np.ndarray]:
    def run() -> np.ndarray:
        with cls(model=model, target_layers=[module], reshape_transform=reshape) as cam:
            if batch_size is not None:
                cam.batch_size = batch_size
            return cam(input_tensor=x, targets=[target])[0]
    return run


def row(what: str, ours: Callable[[], np.ndarray], theirs: Callable[[], np.ndarray], repeats: int) -> dict:
    r = float(np.corrcoef(ours().ravel(), theirs().ravel())[0, 1])
    timing = timeit_interleaved({"ours": ours, "peer": theirs}, repeats=repeats, warmup=0)
    ratio = timing["ours"].median / timing["peer"].median
    print(f"  {what}: r {r:.6f}, ours {fmt_ms(timing['ours'].median)}, peer {fmt_ms(timing['peer'].median)}",
          flush=True)
    verdict = "PASS" if r >= R_TARGET else "DIFFERS: the peer's epsilon" if "Grad-CAM++" in what else "MISS"
    return {"what": what, "r": r, "ours_s": timing["ours"].median, "peer_s": timing["peer"].median,
            "ratio": ratio, "verdict": verdict}


def token_rows(photo, repeats: int) -> list[dict]:
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM, XGradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    rows = []
    for name in ("timm:vit_tiny_patch16_224", "timm:deit_tiny_distilled_patch16_224", "timm:swin_tiny_patch4_window7_224"):
        backbone = ex.load_backbone(name, "random", device="cpu")
        x = backbone.preprocess([photo])
        reshape = backbone.token_layouts[backbone.default_layer].to_grid
        peers = {"gradcam": GradCAM}
        if name == "timm:vit_tiny_patch16_224":
            peers.update(gradcampp=GradCAMPlusPlus, xgradcam=XGradCAM, layercam=LayerCAM, scorecam=ScoreCAM)
        for method, cls in peers.items():
            extra = {"scorecam_chunk": 64} if method == "scorecam" else {}
            rows.append(row(f"{name} {backbone.default_layer}: {ex.METHODS[method].label}",
                            lambda b=backbone, i=x, m=method, e=extra: ours_pixels(b, i, 3, m, **e),
                            peer_call(cls, backbone.model, backbone.module(), x, ClassifierOutputTarget(3), reshape,
                                      64 if method == "scorecam" else None),
                            1 if method == "scorecam" else repeats))
    return rows


def built(arch: str, size: int) -> ex.Backbone:
    from explorer.user_models import build_torchvision

    backbone = build_torchvision(arch, "random").backbone(device="cpu")
    if backbone.task == "detection":
        backbone.model.roi_heads.score_thresh = 0.0
        backbone.model.transform.min_size, backbone.model.transform.max_size = (size,), size
    return backbone


def target_rows(photo, repeats: int) -> list[dict]:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget, SemanticSegmentationTarget

    rows = []
    for arch in ("fcn_resnet50", "deeplabv3_mobilenet_v3_large"):
        backbone = built(arch, 224)
        x = torch.nn.functional.interpolate(backbone.preprocess([photo]), size=(224, 224), mode="bilinear")
        with torch.no_grad():
            single = per_image(backbone.model(x), 1)[0]
        category = int(single["out"].argmax(dim=0).flatten().mode().values)
        mask = region_of_class(single, category)
        rows.append(row(f"torchvision {arch} {backbone.default_layer}: Grad-CAM, SegmentationRegion",
                        lambda b=backbone, i=x, c=category, m=mask: ours_pixels(b, i, ex.SegmentationRegion(c, m), "gradcam"),
                        peer_call(GradCAM, PlanesOnly(backbone.model), backbone.module(), x,
                                  SemanticSegmentationTarget(category, mask.numpy())), repeats))
    backbone = built("fasterrcnn_mobilenet_v3_large_fpn", 320)
    x = torch.nn.functional.interpolate(backbone.preprocess([photo]), size=(320, 320), mode="bilinear")
    with torch.no_grad():
        found = per_image(backbone.model(x), 1)[0]
    boxes, labels = found["boxes"][:2], tuple(int(v) for v in found["labels"][:2])
    layer = "backbone.body.16"
    rows.append(row(f"torchvision fasterrcnn_mobilenet_v3_large_fpn {layer}: Grad-CAM, BoxScore",
                    lambda: ours_pixels(backbone, x, ex.BoxScore(labels, boxes), "gradcam", layer),
                    peer_call(GradCAM, backbone.model, backbone.module(layer), x,
                              FasterRCNNBoxScoreTarget(list(labels), boxes.numpy())), repeats))
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    threads = choose_threads(args.threads)
    machine = machine_info()
    print(describe_machine(machine), "|", threads)
    photo = ex.gallery_image("chelsea")
    rows = token_rows(photo, args.repeats) + target_rows(photo, args.repeats)
    table = [[r["what"], f"{r['r']:.6f}", fmt_ms(r["ours_s"]), fmt_ms(r["peer_s"]), f"{r['ratio']:.2f}", r["verdict"]]
             for r in rows]
    print(format_table(["row", "r vs pytorch-grad-cam", "ours", "peer", "ours / peer", f"r >= {R_TARGET}"], table))
    if args.json is not None:
        write_json(args.json, {"machine": machine, "threads": threads, "rows": rows,
                               "headline": {f"{r['what']} (r {r['r']:.4f}): ours / pytorch-grad-cam time":
                                            {"ratio": r["ratio"], "target": 1.0, "verdict": r["verdict"], "r": r["r"]}
                                            for r in rows}})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
