"""The methods with extra passes, Score-CAM and Smooth Grad-CAM++, against the libraries, with peak memory.

    python benchmarks/bench_extra_passes.py [--backbone efficientnet_lite0] [--layer head]
        [--scorecam-batch 1] [--smooth-batch 8] [--repeats 2] [--json PATH]

In ONE process on the SAME model and inputs (the gallery photos; targets = top-1):

* Score-CAM (one masked forward per channel: 1280 for Lite0's head): ours (`compute_cams(...,
  ["scorecam"])`, chunks of 16 masked images through one reusable buffer) against
  pytorch-grad-cam's ScoreCAM (which builds the B x K x 3 x H x W masked batch at once, then
  forwards it 16 at a time) and torchcam's ScoreCAM (batch_size 32);
* Smooth Grad-CAM++ (4 noisy copies, noise std 0.3, torchcam's defaults): ours against torchcam's
  SmoothGradCAMpp. pytorch-grad-cam has no Smooth Grad-CAM++ (its `aug_smooth` is test-time
  augmentation, a different method), so that pair is left out and said so.

Peak memory is the process's resident set size above its level before the call, sampled every
2 ms by a thread on the CPU (`/proc/self/status`), or torch.cuda.max_memory_allocated on a GPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TQDM_DISABLE", "1")  # pytorch-grad-cam's ScoreCAM draws a bar per image

import torch  # noqa: E402

import explorer  # noqa: E402
from benchmarks.bench_cams import gallery_batch  # noqa: E402
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

SCORECAM_TIME_TARGET = 0.5  # ours / pytorch-grad-cam's ScoreCAM (Lite0 head, chelsea, batch 1)
SCORECAM_MEMORY_TARGET = 1 / 3  # ours / its peak memory


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--layer", default=None)
    p.add_argument("--scorecam-batch", type=int, default=1, help="images for Score-CAM (default 1)")
    p.add_argument("--smooth-batch", type=int, default=8, help="images for Smooth Grad-CAM++ (default 8)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default=None)
    p.add_argument("--threads", default="auto")
    p.add_argument("--json", dest="json_path", default=None)
    return p.parse_args(argv)


def _rss_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def peak_memory(fn, device: torch.device) -> int:
    """Bytes above the starting level at the peak of one call of `fn`."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - base)
    base = _rss_bytes()
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        fn()
    finally:
        done.set()
        thread.join()
    return int(max(peak[0], _rss_bytes()) - base)


def make_ours(backbone, images, targets, layer, method):
    def ours():
        return explorer.compute_cams(backbone, images, targets, [method], layer, relu="published")[method]

    return ours


def make_pgc_scorecam(backbone, images, targets, layer):
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    module = backbone.module(layer)

    def pgc():
        with ScoreCAM(model=backbone.model, target_layers=[module]) as cam:
            return cam(input_tensor=images, targets=[ClassifierOutputTarget(int(t)) for t in targets])

    return pgc


def make_torchcam(backbone, images, targets, layer, class_name, **kwargs):
    import torchcam.methods

    cls = getattr(torchcam.methods, class_name)
    path = backbone.layers[layer]
    target_list = [int(t) for t in targets]

    def tc():
        extractor = cls(backbone.model, target_layer=path, **kwargs)
        try:
            with torch.set_grad_enabled(class_name != "ScoreCAM"):
                scores = backbone.model(images)
                return extractor(class_idx=target_list, scores=scores)[0]
        finally:
            extractor.remove_hooks()

    return tc


def run(args) -> dict:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    sync = device_sync(device)
    backbone = explorer.load_backbone(args.backbone, "pretrained", device)
    layer = backbone.resolve_layer(args.layer)
    channels = backbone.layer_shape(layer)[0]
    out: dict = {"backbone": backbone.name, "layer": layer, "channels": channels, "device": str(device), "groups": {}}
    for method, batch, contestants in (
        ("scorecam", args.scorecam_batch, lambda x, t: {
            "ours Score-CAM (distinct masks once, chunks of 16)": make_ours(backbone, x, t, layer, "scorecam"),
            "pytorch-grad-cam ScoreCAM": make_pgc_scorecam(backbone, x, t, layer),
            "torchcam ScoreCAM (batch 32)": make_torchcam(backbone, x, t, layer, "ScoreCAM", batch_size=32),
        }),
        ("smoothgradcampp", args.smooth_batch, lambda x, t: {
            "ours Smooth Grad-CAM++ (4 samples, std 0.3)": make_ours(backbone, x, t, layer, "smoothgradcampp"),
            "torchcam SmoothGradCAMpp (4 samples, std 0.3)": make_torchcam(backbone, x, t, layer, "SmoothGradCAMpp",
                                                                           num_samples=4, std=0.3),
        }),
    ):
        images, names = gallery_batch(backbone, batch)
        targets = backbone.predict(images).argmax(dim=1)
        calls = contestants(images, targets)
        memory = {name: peak_memory(fn, device) for name, fn in calls.items()}  # also the warm-up
        timings = timeit_interleaved(calls, repeats=args.repeats, warmup=0, sync=sync)
        out["groups"][method] = {"batch": batch, "images": names, "timings": timings, "peak_bytes": memory}
    return out


def main(argv=None) -> int:
    start = time.perf_counter()
    args = parse_args(argv)
    threads = choose_threads(args.threads)
    info = machine_info(args.device)
    print(describe_machine(info))
    result = run(args)
    print(f"Backbone {result['backbone']}, layer {result['layer']} ({result['channels']} channels), threads {threads}")
    headline = {}
    for method, group in result["groups"].items():
        t, mem = group["timings"], group["peak_bytes"]
        ours = next(name for name in t if name.startswith("ours"))
        print_table(["contestant", "median ms", "p95 ms", "ours / it", "peak MB above start"],
                    [[name, fmt_ms(v.median), fmt_ms(v.p95), fmt_ratio(t[ours].median / v.median),
                      f"{mem[name] / 2**20:.0f}"] for name, v in t.items()],
                    title=f"{method}, batch {group['batch']}")
        for name in t:
            if name != ours:
                # Issue 13's target: Score-CAM in at most half pytorch-grad-cam's time, in a third of its memory.
                target = SCORECAM_TIME_TARGET if (method == "scorecam" and name.startswith("pytorch")) else 1.0
                headline[f"{method}: ours / {name}"] = {"ratio": t[ours].median / t[name].median, "target": target,
                                                        "ours_peak_mb": mem[ours] / 2**20,
                                                        "their_peak_mb": mem[name] / 2**20}
    if "smoothgradcampp" in result["groups"]:
        print("pytorch-grad-cam has no Smooth Grad-CAM++ (its aug_smooth is test-time augmentation): not compared.")
    for key, h in headline.items():
        h["verdict"] = verdict(h["ratio"], h["target"])
        memory_ratio = h["ours_peak_mb"] / max(h["their_peak_mb"], 1e-9)
        memory_note = ""
        if h["target"] == SCORECAM_TIME_TARGET:
            memory_note = f" (memory {memory_ratio:.2f}x: {verdict(memory_ratio, SCORECAM_MEMORY_TARGET)} "
            memory_note += f"against <= {SCORECAM_MEMORY_TARGET:.2f})"
        print(f"  {key}: {h['ratio']:.3f} {h['verdict']} against <= {h['target']}; peak {h['ours_peak_mb']:.0f} MB "
              f"vs {h['their_peak_mb']:.0f} MB{memory_note}")
    result["headline"] = headline
    print(f"wall {time.perf_counter() - start:.1f} s")
    if args.json_path:
        write_json(args.json_path, {"args": vars(args), "machine": info, "threads": threads, **result})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
