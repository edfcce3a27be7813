"""F-CAM inference against the CAMs it replaces, on one model and one batch (F-CAM Table F.4's point).

    python benchmarks/bench_fcam.py [--backbone synthetic_lite0] [--batch 8] [--repeats 7] [--json PATH]

Everything runs in ONE process on the SAME classifier and the SAME batch (the gallery photos,
preprocessed and repeated to fill the batch; targets = each image's top-1), interleaved after
warm-up, median and p95 reported:

1. F-CAM: one forward of the frozen classifier recording the decoder's taps (no gradient), then
   the decoder at full resolution (the softmax foreground probability, nothing else to do);
2. ours, Grad-CAM + bilinear: one forward + one torch.autograd.grad, the formula, bilinear
   upsampling and min-max (what a user compares F-CAM with in the app);
3. ours, CAM + bilinear: one forward and the final layer's weights (no gradient at all);
4. pytorch-grad-cam's GradCAM (the library users know), ReLU, bilinear and min-max included.

The decoder is the shipped one of the backbone (checkpoints/fcam/), or a freshly initialised one of
the same shape when none ships (timing does not depend on the weights).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

import explorer  # noqa: E402
from benchmarks.bench_cams import gallery_batch, make_pgc  # noqa: E402
from benchmarks.common import (  # noqa: E402
    choose_threads,
    describe_machine,
    device_sync,
    fmt_ms,
    fmt_ratio,
    machine_info,
    print_table,
    timeit_interleaved,
    verdict,
    write_json,
)
from explorer.fcam import build_decoder, decoder_path, load_decoder, parameter_count  # noqa: E402

TARGET = 1.0  # F-CAM / the gradient CAM it replaces


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="synthetic_lite0")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default=None)
    p.add_argument("--threads", default="auto", help="as in bench_cams.py")
    p.add_argument("--json", dest="json_path", default=None)
    return p.parse_args(argv)


def make_fcam(backbone, decoder, images, targets):
    def fcam():
        cap = explorer.capture(backbone, images, targets, decoder.layer, gradient=False, taps=decoder.taps)
        return decoder.foreground(cap.features, backbone.input_size)

    return fcam


def make_cam_bilinear(backbone, images, targets, method):
    def cam():
        maps = explorer.compute_cams(backbone, images, targets, [method], relu="published")[method]
        return explorer.pixel_maps(maps, backbone.input_size, "bilinear", normaliser="minmax")

    return cam


def run(args) -> dict:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    sync = device_sync(device)
    backbone = explorer.load_backbone(args.backbone, "pretrained", device)
    path = decoder_path(backbone.name, "cam")
    if path.is_file():
        decoder, source = load_decoder(path, backbone), str(path.relative_to(path.parents[2]))
    else:
        decoder, source = build_decoder(backbone, seed=0), "untrained decoder of the shipped shape"
        decoder.net.eval()
    images, names = gallery_batch(backbone, args.batch)
    targets = backbone.predict(images).argmax(dim=1)
    contestants = {
        "F-CAM: forward (taps, no grad) + decoder": make_fcam(backbone, decoder, images, targets),
        "ours: Grad-CAM + bilinear + min-max": make_cam_bilinear(backbone, images, targets, "gradcam"),
        "ours: CAM + bilinear + min-max": make_cam_bilinear(backbone, images, targets, "cam"),
        "pytorch-grad-cam GradCAM": make_pgc(backbone, images, targets, backbone.default_layer, "GradCAM"),
    }
    timings = timeit_interleaved(contestants, repeats=args.repeats, warmup=args.warmup, sync=sync)
    return {"backbone": backbone.name, "decoder": source, "decoder_parameters": parameter_count(decoder),
            "batch": int(images.shape[0]), "images": names, "device": str(device), "timings": timings}


def main(argv=None) -> int:
    start = time.perf_counter()
    args = parse_args(argv)
    threads = choose_threads(args.threads)
    info = machine_info(args.device)
    print(describe_machine(info))
    result = run(args)
    t = result["timings"]
    fcam = t["F-CAM: forward (taps, no grad) + decoder"]
    grad = t["ours: Grad-CAM + bilinear + min-max"]
    pgc = t["pytorch-grad-cam GradCAM"]
    print(f"Backbone {result['backbone']}, decoder {result['decoder']} ({result['decoder_parameters'] / 1e6:.2f} M "
          f"parameters), batch {result['batch']}, threads {threads}")
    print_table(["contestant", "median ms", "p95 ms", "vs F-CAM"],
                [[name, fmt_ms(v.median), fmt_ms(v.p95), fmt_ratio(v.median / fcam.median)] for name, v in t.items()])
    result["headline"] = {
        "fcam_vs_our_gradcam": {"ratio": fcam.median / grad.median, "target": TARGET},
        "fcam_vs_pytorch_grad_cam": {"ratio": fcam.median / pgc.median, "target": TARGET},
    }
    for key, h in result["headline"].items():
        h["verdict"] = verdict(h["ratio"], h["target"])
        print(f"  {key}: {h['ratio']:.3f} (target <= {h['target']}) {h['verdict']}")
    print(f"wall {time.perf_counter() - start:.1f} s")
    if args.json_path:
        write_json(args.json_path, {"args": vars(args), "machine": info, "threads": threads, **result})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
