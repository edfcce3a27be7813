"""Every method a peer also implements: our grid map against pytorch-grad-cam's and torchcam's at
matched settings (Pearson r and max |diff| at grid level), and our time against theirs.

    python benchmarks/bench_methods.py [--batch 8] [--repeats 2] [--json PATH]

ONE process, the SAME EfficientNet-Lite0 (ImageNet weights) and the SAME gallery batch (targets:
each image's top-1 class). Grid level means before any upsampling or normalisation: ours with the
ReLU after the channel sum (what both peers apply), pytorch-grad-cam with its resize-and-min-max
step (`scale_cam_image`) replaced by the identity for the duration of its call, torchcam with
`normalized=False`. The one-pass methods run at the `head` layer (1280 x 7 x 7) on `--batch`
images; the perturbation methods (one forward per channel or more) run on one image (chelsea) at
`blocks.10` (112 x 14 x 14), so that every peer finishes in seconds (Ablation-CAM at `head`:
pytorch-grad-cam's ablation layer cannot stand in for a Lite0 block, which takes a drop-connect
argument); Score-CAM's head-layer race
is bench_extra_passes.py. Settings are matched where the peer allows it (samples, alpha, the
comparison classes, the kernel); where the peer fixes a choice, the row's note says what differs
and why. Nothing is cached between contestants (each call builds its own hooks, copies and masks);
ours and the peer alternate, median of --repeats each.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import explorer  # noqa: E402
from benchmarks.common import choose_threads, describe_machine, machine_info, print_table, write_json  # noqa: E402
from explorer.methods import comparison_classes, fused_layercam  # noqa: E402

# (our method, peer, peer class, layer kind, note on what differs)
ROWS = [
    ("eigencam", "pytorch-grad-cam", "EigenCAM", "one-pass",
     "pgc centres each channel before the SVD (the paper does not): another direction, an offset"),
    ("eigengradcam", "pytorch-grad-cam", "EigenGradCAM", "one-pass", "as Eigen-CAM: pgc centres g*A first"),
    ("kpcacam", "pytorch-grad-cam", "KPCA_CAM", "one-pass", "same kernel and centring; sign fixed differently"),
    ("fem", "pytorch-grad-cam", "FEM", "one-pass", "same formula (k = 2, sigma with 1/Z)"),
    ("shapleycam", "pytorch-grad-cam", "ShapleyCAM", "one-pass", "same ReST score and HVP"),
    ("finercam", "pytorch-grad-cam", "FinerCAM", "one-pass",
     "pgc weighs each comparison class by its softmax p_d (differentiated too); ours the plain mean"),
    ("guidedbackprop", "pytorch-grad-cam", "GuidedBackpropReLUModel", "one-pass",
     "pgc guides only modules named 'ReLU': Lite0's ReLU6 stay plain, so its map is the plain gradient's"),
    ("fullgrad", "pytorch-grad-cam", "FullGrad", "one-pass",
     "pgc resizes and min-max normalises every channel on its own; FullGrad's code (ours) each layer as a whole"),
    ("ablationcam", "pytorch-grad-cam", "AblationCAM", "ablation",
     "same zero ablation and ratio; pgc runs the whole network per ablated copy, ours the tail only"),
    ("scorecam", "pytorch-grad-cam", "ScoreCAM", "perturbation",
     "pgc upsamples masks with align_corners=True; ours False, as torchcam"),
    ("scorecam", "torchcam", "ScoreCAM", "perturbation",
     "torchcam min-max normalises the grid, then upsamples; ours upsamples, then normalises (the paper)"),
    ("sscam", "torchcam", "SSCAM", "perturbation",
     "torchcam adds its noise to the activation before the mask (std 2), ours to the mask (paper); random"),
    ("iscam", "torchcam", "ISCAM", "perturbation",
     "torchcam scales step i by sum_{j<=i} j/N (up to 5.5), ours by i/N (paper)"),
    ("gradcam+aug", "pytorch-grad-cam", "GradCAM", "one-pass",
     "aug_smooth: the same 6 flips x scales, maps averaged after flipping back"),
    ("layercam+fused", "torchcam", "LayerCAM", "one-pass",
     "fusion over blocks.10, blocks.15, head: torchcam applies eq. 9's tanh to min-max normalised maps, ours to M / max M"),
]
FUSED_LAYERS = ("blocks.10", "blocks.15", "head")
SAMPLES = 2  # noisy / integration samples of SS-CAM and IS-CAM for this comparison


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", default="auto")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--only", default="", help="comma-separated methods to run (default: every row)")
    return p.parse_args(argv)


@contextmanager
def pgc_at_grid_level():
    """pytorch-grad-cam returns maps resized to the input and min-max scaled; inside this block it
    returns the grid map after its ReLU instead."""
    import pytorch_grad_cam.base_cam as base

    original = base.scale_cam_image
    base.scale_cam_image = lambda cam, target_size=None: np.asarray(cam, dtype=np.float32)
    try:
        yield
    finally:
        base.scale_cam_image = original


def run_ours(backbone, images, targets, layer, method):
    if method == "layercam+fused":
        return fused_layercam(backbone, images, targets, FUSED_LAYERS)[0].cpu().numpy()
    name, _, option = method.partition("+")
    return explorer.compute_cams(backbone, images, targets, [name], layer, relu="after", score_samples=SAMPLES,
                                 aug_smooth=option == "aug")[name].cpu().numpy()


def run_pgc(backbone, images, targets, layer, cls_name, aug=False):
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    module = backbone.module(layer)
    model = backbone.model
    target_list = [int(t) for t in targets]
    if cls_name == "GuidedBackpropReLUModel":
        gb = pytorch_grad_cam.GuidedBackpropReLUModel(model=model, device=images.device)
        out = np.stack([np.abs(gb(images[i:i + 1], target_category=t)).max(axis=-1) for i, t in enumerate(target_list)])
        model.zero_grad(set_to_none=True)
        return out
    with pgc_at_grid_level():
        if cls_name == "FinerCAM":
            cap = explorer.capture(backbone, images, targets, layer, gradient=False)
            D = comparison_classes(cap.logits, cap.targets)
            from pytorch_grad_cam.utils.model_targets import FinerWeightedTarget

            cam = pytorch_grad_cam.FinerCAM(model=model, target_layers=[module])
            out = cam(input_tensor=images, targets=[FinerWeightedTarget(t, D[i].tolist(), 1.0)
                                                    for i, t in enumerate(target_list)])
            cam.base_cam.activations_and_grads.release()
        elif cls_name == "ShapleyCAM":
            from pytorch_grad_cam.utils.model_targets import ClassifierOutputReST

            with pytorch_grad_cam.ShapleyCAM(model=model, target_layers=[module]) as cam:
                out = cam(input_tensor=images, targets=[ClassifierOutputReST(t) for t in target_list])
        else:
            with getattr(pytorch_grad_cam, cls_name)(model=model, target_layers=[module]) as cam:
                out = cam(input_tensor=images, targets=[ClassifierOutputTarget(t) for t in target_list],
                          aug_smooth=aug)
    model.zero_grad(set_to_none=True)
    return np.asarray(out)


def run_torchcam(backbone, images, targets, layer, cls_name, fused=False):
    import torchcam.methods

    if fused:  # its documented multi-layer use: normalised CAMs of each layer, then fuse_cams
        paths = [backbone.layers[backbone.resolve_layer(name)] for name in FUSED_LAYERS]
        extractor = torchcam.methods.LayerCAM(backbone.model, target_layer=paths)
        try:
            scores = backbone.model(images)
            cams = extractor(class_idx=[int(t) for t in targets], scores=scores)
            return extractor.fuse_cams(cams).detach().float().cpu().numpy()
        finally:
            extractor.remove_hooks()
    path = backbone.layers[backbone.resolve_layer(layer)]
    kwargs = {"num_samples": SAMPLES} if cls_name in ("SSCAM", "ISCAM") else {}
    extractor = getattr(torchcam.methods, cls_name)(backbone.model, target_layer=path, batch_size=16, **kwargs)
    try:
        with torch.no_grad():
            scores = backbone.model(images)
        cams = extractor(class_idx=[int(t) for t in targets], scores=scores, normalized=False)
    finally:
        extractor.remove_hooks()
    return cams[0].detach().float().cpu().numpy()


def compare(ours: np.ndarray, theirs: np.ndarray) -> tuple[float, float]:
    """(min over images of Pearson r, max |diff| / max |ours|)."""
    rs = []
    for a, b in zip(ours.reshape(len(ours), -1).astype(np.float64), theirs.reshape(len(theirs), -1).astype(np.float64)):
        rs.append(1.0 if a.std() == 0 and b.std() == 0 else float(np.corrcoef(a, b)[0, 1]))
    scale = float(np.abs(ours).max()) or 1.0
    return min(rs), float(np.abs(ours - theirs).max()) / scale


def race(ours, theirs, repeats: int) -> tuple[object, float, object, float]:
    """Both contestants `repeats` times, interleaved (the order flips every round, so a load that
    drifts during the run weighs on both alike): (our output, our median s, theirs, their median s)."""
    times: dict[int, list[float]] = {0: [], 1: []}
    outputs: dict[int, object] = {}
    contestants = [ours, theirs]
    for round_ in range(repeats):
        for index in ((0, 1) if round_ % 2 == 0 else (1, 0)):
            start = time.perf_counter()
            outputs[index] = contestants[index]()
            times[index].append(time.perf_counter() - start)
    return outputs[0], float(np.median(times[0])), outputs[1], float(np.median(times[1]))


def main(argv=None) -> int:
    args = parse_args(argv)
    threads = choose_threads(args.threads)
    backbone = explorer.load_backbone("efficientnet_lite0", "pretrained", device="cpu")
    names = explorer.gallery_names()
    batch = backbone.preprocess([explorer.gallery_image(names[i % len(names)]) for i in range(args.batch)])
    one = backbone.preprocess([explorer.gallery_image("chelsea")])
    with torch.no_grad():
        batch_targets = backbone.model(batch).argmax(1)
        one_targets = backbone.model(one).argmax(1)
    rows, records = [], []
    only = {m for m in args.only.split(",") if m}
    for method, peer, cls_name, kind, note in ROWS:
        if only and method not in only:
            continue
        images, targets, layer = {"one-pass": (batch, batch_targets, "head"), "ablation": (one, one_targets, "head"),
                                  "perturbation": (one, one_targets, "blocks.10")}[kind]
        option = method.partition("+")[2]
        runner = functools.partial(run_pgc, aug=option == "aug") if peer == "pytorch-grad-cam" else \
            functools.partial(run_torchcam, fused=option == "fused")
        try:
            mine, t_ours, theirs, t_peer = race(functools.partial(run_ours, backbone, images, targets, layer, method),
                                                functools.partial(runner, backbone, images, targets, layer, cls_name),
                                                args.repeats)
        except Exception as exc:  # a peer's failure is a finding, reported in its row
            rows.append([method, f"{peer} {cls_name}", layer, "-", "-", "-", "-", "-",
                         f"failed: {type(exc).__name__}: {exc}"[:120]])
            continue
        r, diff = compare(np.asarray(mine), np.asarray(theirs))
        print(f"{method} vs {peer} {cls_name}: r {r:.4f}, max|diff| {diff:.3g}, {t_ours:.2f} s vs {t_peer:.2f} s",
              flush=True)
        rows.append([method, f"{peer} {cls_name}", f"{layer}, B={len(images)}", f"{r:.4f}", f"{diff:.3g}",
                     f"{t_ours * 1000:.0f}", f"{t_peer * 1000:.0f}", f"{t_ours / t_peer:.2f}", note])
        records.append({"method": method, "peer": peer, "peer_class": cls_name, "layer": layer, "batch": len(images),
                        "pearson_r_min": r, "max_abs_diff_rel": diff, "ours_s": t_ours, "peer_s": t_peer,
                        "note": note})
    print(describe_machine(machine_info(torch.device("cpu"))) + f"; threads {threads}")
    print_table(["ours", "peer", "where", "r (min)", "max|diff|/max", "ours ms", "peer ms", "ratio", "what differs"],
                rows, title="Grid-level agreement and time, EfficientNet-Lite0 (ImageNet), ReLU after the sum")
    if args.json:
        write_json(args.json, {"rows": records, "machine": machine_info(torch.device("cpu")), "threads": threads})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
