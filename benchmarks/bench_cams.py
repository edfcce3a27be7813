"""CAM Explorer's engine against the CAM libraries people already use, on one model and one batch.

    python benchmarks/bench_cams.py [--backbone efficientnet_lite0] [--batch 8] [--repeats 5]
                                    [--device cpu|cuda] [--json PATH]

Everything runs in ONE process on the SAME model object and the SAME input batch (the gallery
photos, preprocessed by the backbone and repeated to fill the batch; targets = each image's top-1
class):

1. ours: `explorer.compute_cams` for cam, gradcam, gradcampp, xgradcam, layercam and extendedcam
   (all from one forward + one torch.autograd.grad), and for gradcam alone;
2. pytorch-grad-cam (PyPI grad-cam): GradCAM, GradCAMPlusPlus, XGradCAM, LayerCAM, HiResCAM, each
   built, called and released (its context manager removes its hooks) separately;
3. torchcam: GradCAM, GradCAMpp, XGradCAM, LayerCAM, each extractor built, used for the whole
   batch (one class index per image) and its hooks removed;
4. the floor: a bare forward + torch.autograd.grad of the summed target scores w.r.t. the target
   layer's output, read by a plain forward hook;
5. upsampling: exact Gaussian (Extended-CAM eq. 4 as two matrix products) against bilinear, and
   against a direct evaluation of eq. 4's double sum over all (pixel, cell) pairs.

Contestants are timed interleaved (every round calls each once, in a fresh random order), after
warm-up, and reported as median and p95. Before timing, cheap checks make sure that the work
compared is equal (our Grad-CAM, ReLU'd, bilinear-upsampled and min-max normalised matches
pytorch-grad-cam's output), that the floor's gradient is ours, and that no contestant leaves hooks
or parameter gradients behind. The headline ratios are printed with PASS/MISS against their
targets; a miss does not change the exit status (this is a measurement, not a test).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import explorer  # noqa: E402
from benchmarks.common import (  # noqa: E402
    Timing,
    choose_threads,
    describe_machine,
    device_sync,
    fmt_ms,
    fmt_ratio,
    load_average,
    machine_info,
    print_table,
    timeit_interleaved,
    verdict,
    write_json,
)
from explorer.backbones import BackboneError  # noqa: E402
from explorer.upsample import cell_centres  # noqa: E402

ALL_METHODS = ["cam", "gradcam", "gradcampp", "xgradcam", "layercam", "extendedcam"]
SIGMA = (31.78, 33.36)  # (sigma_x, sigma_y) in pixels: the Extended-CAM paper's VGG16 conv5_3 ERF
TARGET_A = 1.3  # our six maps / pytorch-grad-cam's single Grad-CAM
TARGET_B = 1.0  # Gaussian / bilinear, 14x14 -> 224x224, batch 64
TARGET_C = 1.15  # our six maps / bare forward + gradient floor

# our method (with the ReLU after the channel sum) -> pytorch-grad-cam class name
PGC_EQUIVALENT = {
    "gradcam": "GradCAM",
    "gradcampp": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "extendedcam": "HiResCAM",  # eq. 8 with ReLU after the sum; its signed map cannot be had from it
}
TORCHCAM_EQUIVALENT = {
    "gradcam": "GradCAM",
    "gradcampp": "GradCAMpp",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
}


# ------------------------------------------------------------------------------------- set-up

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="efficientnet_lite0", help="a registered backbone name")
    p.add_argument("--weights", default="auto",
                   help="pretrained | random | auto (pretrained when available, else random) | a state_dict path")
    p.add_argument("--layer", default=None, help="target layer (default: the backbone's default layer)")
    p.add_argument("--batch", type=int, default=8, help="images per batch (gallery photos, repeated)")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds per contestant")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds before timing")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    p.add_argument("--no-torchcam", action="store_true", help="skip the torchcam contestants")
    p.add_argument("--no-upsample", action="store_true", help="skip the upsampling benchmark")
    p.add_argument("--dense-batch", type=int, default=4,
                   help="maps per call for the direct (broadcast) evaluation of eq. 4 (it needs "
                        "B x H x W x h x w floats)")
    p.add_argument("--upsample-repeats", type=int, default=None,
                   help="timed rounds for the upsamplers (default: max(15, 3 x --repeats))")
    p.add_argument("--profile", action="store_true",
                   help="also profile (torch.profiler) a call of ours, the floor and pytorch-grad-cam's "
                        "Grad-CAM, and repeated calls of the upsamplers; prints the top operators")
    p.add_argument("--json", dest="json_path", default=None, help="write all results to this JSON file")
    p.add_argument("--threads", default="auto",
                   help="torch intra-op threads: a number, 'torch' (torch's own default) or 'auto' (the "
                        "default: torch's own unless the machine is already busy, i.e. its 1-minute load "
                        "average is at least the number of usable cores, then 1; on an oversubscribed "
                        "machine OpenMP threads wait for each other and small ops run 100x slower)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def load(args) -> tuple[explorer.Backbone, str]:
    weights = args.weights
    note = ""
    if weights == "auto":
        try:
            return explorer.load_backbone(args.backbone, "pretrained", args.device), note
        except BackboneError as exc:
            note = f"pretrained weights unavailable ({str(exc).split('.')[0]}.); using RANDOM weights"
            weights = "random"
    return explorer.load_backbone(args.backbone, weights, args.device), note


def gallery_batch(backbone: explorer.Backbone, batch: int) -> tuple[torch.Tensor, list[str]]:
    names = explorer.gallery_names()
    chosen = [names[i % len(names)] for i in range(batch)]
    images = backbone.preprocess([explorer.gallery_image(n) for n in chosen])
    return images, chosen


def count_hooks(model: torch.nn.Module) -> int:
    """Module hooks of every kind on every submodule."""
    total = 0
    for m in model.modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            total += len(getattr(m, attr, {}) or {})
    return total


def params_with_grad(model: torch.nn.Module) -> int:
    return sum(1 for p in model.parameters() if p.grad is not None)


# ---------------------------------------------------------------------------------- contestants

def make_floor(backbone, images, targets, layer):
    """The least any gradient CAM can cost: a forward with a plain forward hook on the target layer,
    then torch.autograd.grad of sum_b y_{c_b} w.r.t. the hooked output. No maps."""
    module = backbone.module(layer)
    model = backbone.model

    def floor():
        recorded = []
        handle = module.register_forward_hook(lambda _m, _i, out: recorded.append(out))
        try:
            with torch.enable_grad():
                logits = model(images)
                score = logits.gather(1, targets[:, None]).sum()
                (grad,) = torch.autograd.grad(score, recorded[0])
        finally:
            handle.remove()
        return recorded[0].detach(), grad

    return floor


def make_ours(backbone, images, targets, layer, methods, pixels=False):
    """Our engine: all `methods` from one capture. With `pixels`, also each map's published ReLU,
    bilinear upsampling to the input size and min-max normalisation (pytorch-grad-cam's output)."""
    def ours():
        maps = explorer.compute_cams(backbone, images, targets, methods, layer,
                                     relu="published" if pixels else "none")
        if pixels:
            maps = {m: explorer.pixel_maps(v, backbone.input_size, "bilinear", normaliser="minmax")
                    for m, v in maps.items()}
        return maps

    return ours


def make_formulas(backbone, images, targets, layer, methods):
    """Our formulas only, on a capture made beforehand: what the maps add on top of the pass."""
    cap = explorer.capture(backbone, images, targets, layer)

    def formulas():
        return explorer.compute_cams(backbone, images, targets, methods, layer, cap=cap)

    return formulas


def make_pgc(backbone, images, targets, layer, class_name):
    """pytorch-grad-cam as documented: build the CAM object, call it on the batch with one
    ClassifierOutputTarget per image, leave its context (which removes its hooks). It calls
    loss.backward(), filling every parameter's .grad; those are set back to None afterwards so the
    other contestants run on an unchanged model (costs microseconds, included in the timing)."""
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = getattr(pytorch_grad_cam, class_name)
    module = backbone.module(layer)
    model = backbone.model
    target_list = [int(t) for t in targets.tolist()]

    def pgc():
        with cls(model=model, target_layers=[module]) as cam:
            out = cam(input_tensor=images, targets=[ClassifierOutputTarget(t) for t in target_list])
        model.zero_grad(set_to_none=True)
        return out

    return pgc


def make_torchcam(backbone, images, targets, layer, class_name):
    """torchcam as documented, batched: build the extractor on the layer's name, forward with
    gradients on, call it with one class index per image (its list form), remove its hooks.
    Its maps are ReLU'd and min-max normalised at grid resolution (it does not upsample)."""
    import torchcam.methods

    cls = getattr(torchcam.methods, class_name)
    path = backbone.layers[backbone.resolve_layer(layer)]
    model = backbone.model
    target_list = [int(t) for t in targets.tolist()]

    def tc():
        extractor = cls(model, target_layer=path)
        try:
            with torch.enable_grad():
                scores = model(images)
                cams = extractor(class_idx=target_list, scores=scores)
        finally:
            extractor.remove_hooks()
        return cams[0]

    return tc


# ----------------------------------------------------------------------------- correctness checks

def per_image_correlation(a: np.ndarray, b: np.ndarray) -> list[float]:
    """Pearson correlation per image; 1.0 when both maps are constant (e.g. both all-zero after
    the ReLU), NaN when only one is."""
    out = []
    for x, y in zip(a.reshape(a.shape[0], -1).astype(np.float64), b.reshape(b.shape[0], -1).astype(np.float64)):
        sx, sy = x.std(), y.std()
        if sx == 0 and sy == 0:
            out.append(1.0 if np.allclose(x, y) else float("nan"))
        elif sx == 0 or sy == 0:
            out.append(float("nan"))
        else:
            out.append(float(np.corrcoef(x, y)[0, 1]))
    return out


def run_checks(backbone, images, targets, layer, methods, with_torchcam: bool) -> dict:
    """Equal-work checks before any timing. Raises AssertionError on a real mismatch."""
    checks: dict = {}
    size = backbone.input_size

    # The floor's gradient is exactly what our capture records.
    cap = explorer.capture(backbone, images, targets, layer)
    acts, grad = make_floor(backbone, images, targets, layer)()
    scale = float(cap.gradients.abs().max()) or 1.0
    err = float((grad.float() - cap.gradients).abs().max()) / scale
    checks["floor_gradient_rel_err"] = err
    assert torch.allclose(acts.float(), cap.activations, rtol=1e-5, atol=1e-6), "floor activations differ from ours"
    assert err < 1e-5, f"floor gradient differs from our capture's (relative error {err:.2e})"

    # Our maps, ReLU after the channel sum, bilinear to the input size, min-max, against
    # pytorch-grad-cam's (ReLU, min-max, cv2 bilinear resize).
    ours = explorer.compute_cams(backbone, images, targets, list(PGC_EQUIVALENT), layer, cap=cap, relu="after")
    correlations = {}
    for method, cls_name in PGC_EQUIVALENT.items():
        mine = explorer.pixel_maps(ours[method], size, "bilinear", normaliser="minmax").cpu().numpy()
        theirs = make_pgc(backbone, images, targets, layer, cls_name)()
        assert theirs.shape == mine.shape, f"pytorch-grad-cam {cls_name} returned {theirs.shape}, ours {mine.shape}"
        corr = per_image_correlation(mine, theirs)
        correlations[f"pytorch-grad-cam {cls_name}"] = {
            "min_correlation": float(np.min(corr)), "max_abs_diff": float(np.abs(mine - theirs).max()),
        }
        if method == "gradcam":
            assert all(c > 0.99 for c in corr), (f"our Grad-CAM does not match pytorch-grad-cam's "
                                      f"(per-image correlations {[round(c, 4) for c in corr]})")

    if with_torchcam:
        for method, cls_name in TORCHCAM_EQUIVALENT.items():
            mine = explorer.normalise(ours[method], "minmax").cpu().numpy()
            theirs = make_torchcam(backbone, images, targets, layer, cls_name)().detach().float().cpu().numpy()
            corr = per_image_correlation(mine, theirs)
            correlations[f"torchcam {cls_name}"] = {
                "min_correlation": float(np.min(corr)), "max_abs_diff": float(np.abs(mine - theirs).max()),
            }
    checks["map_agreement"] = correlations
    assert backbone.model.training is False, "a library left the model in training mode"
    return checks


# ---------------------------------------------------------------------------------- CAM timings

def bench_cams(backbone, images, targets, layer, methods, args, sync) -> dict:
    model = backbone.model
    baseline_hooks = count_hooks(model)
    n = len(methods)
    ours_all = f"ours: {n} maps, one pass ({', '.join(methods)})"
    ours_px = f"ours: {n} maps + ReLU/bilinear {backbone.input_size[0]}/min-max"
    contestants = {
        "floor: bare forward + autograd.grad": make_floor(backbone, images, targets, layer),
        ours_all: make_ours(backbone, images, targets, layer, methods),
        "ours: gradcam alone": make_ours(backbone, images, targets, layer, ["gradcam"]),
        ours_px: make_ours(backbone, images, targets, layer, methods, pixels=True),
        f"ours: the {n} formulas alone, on a given capture": make_formulas(backbone, images, targets, layer, methods),
    }
    for cls_name in PGC_EQUIVALENT.values():
        contestants[f"pytorch-grad-cam {cls_name}"] = make_pgc(backbone, images, targets, layer, cls_name)
    if not args.no_torchcam:
        for cls_name in TORCHCAM_EQUIVALENT.values():
            contestants[f"torchcam {cls_name}"] = make_torchcam(backbone, images, targets, layer, cls_name)

    def clean(name: str) -> None:
        hooks = count_hooks(model)
        if hooks != baseline_hooks:
            raise AssertionError(f"{name} left {hooks - baseline_hooks} hook(s) on the model")
        grads = params_with_grad(model)
        if grads:
            raise AssertionError(f"{name} left .grad on {grads} parameter(s)")

    timings = timeit_interleaved(contestants, repeats=args.repeats, warmup=args.warmup, sync=sync,
                                 seed=args.seed, between=clean)

    pgc_names = [f"pytorch-grad-cam {c}" for c in PGC_EQUIVALENT.values()]
    tc_names = [f"torchcam {c}" for c in TORCHCAM_EQUIVALENT.values()] if not args.no_torchcam else []
    derived = {}
    derived[f"pytorch-grad-cam: {len(pgc_names)} methods separately (sum)"] = _sum_timings(timings, pgc_names)
    if tc_names:
        derived[f"torchcam: {len(tc_names)} methods separately (sum)"] = _sum_timings(timings, tc_names)

    floor = timings["floor: bare forward + autograd.grad"]
    pgc_gc = timings["pytorch-grad-cam GradCAM"]
    rows = []
    for name, t in list(timings.items()) + list(derived.items()):
        rows.append([name, fmt_ms(t.median), fmt_ms(t.p95), fmt_ratio(t.median / pgc_gc.median),
                     fmt_ratio(t.median / floor.median)])
    print_table(["contestant", "median ms", "p95 ms", "/ pgc GradCAM", "/ floor"], rows,
                title=f"CAM maps: {backbone.name}, layer {layer}, batch {images.shape[0]}, "
                      f"{args.repeats} interleaved rounds after {args.warmup} warm-up "
                      f"(derived 'sum' rows: sum of medians, sum of p95s)")
    h, w = backbone.layer_shape(layer)[1:]
    print(f"Outputs: ours, the floor and torchcam stop at the grid (B x {h} x {w}); pytorch-grad-cam always returns "
          f"ReLU'd, min-max'd maps resized (cv2, per image) to "
          f"{backbone.input_size[0]}; the '+ ReLU/bilinear/min-max' row is ours doing that same output work.")
    print(f"Hooks on the model, checked after every call: {count_hooks(model)} (before: {baseline_hooks}); "
          f"parameters with .grad: {params_with_grad(model)} (pytorch-grad-cam's are reset after each of its calls)")
    print()
    return {"timings": timings, "derived": derived, "ours_all": ours_all, "ours_pixels": ours_px}


def _sum_timings(timings: dict[str, Timing], names: list[str]) -> Timing:
    rounds = zip(*(timings[n].samples for n in names))
    return Timing(sum(timings[n].median for n in names), sum(timings[n].p95 for n in names),
                  [sum(r) for r in rounds])


def paired_ratio(a: Timing, b: Timing) -> float:
    """Median over rounds of a's time / b's time in the same round (robust to load drifting
    between rounds, as interleaved samples of one round saw the same load)."""
    return float(np.median([x / y for x, y in zip(a.samples, b.samples)]))


# ---------------------------------------------------------------------------------- upsampling

def dense_kernel(h: int, w: int, H: int, W: int, sigma, device, dtype=torch.float32) -> torch.Tensor:
    """eq. 4's kernel for every (pixel, cell) pair, H x W x h x w, without using separability."""
    sx, sy = sigma
    y = torch.arange(H, device=device, dtype=dtype)[:, None, None, None]
    x = torch.arange(W, device=device, dtype=dtype)[None, :, None, None]
    cy = cell_centres(h, H, device=device, dtype=dtype)[None, None, :, None]
    cx = cell_centres(w, W, device=device, dtype=dtype)[None, None, None, :]
    return torch.exp(-(x - cx) ** 2 / (2 * sx * sx) - (y - cy) ** 2 / (2 * sy * sy))


def dense_broadcast(maps: torch.Tensor, H: int, W: int, sigma) -> torch.Tensor:
    """The double sum as written: L_xy = sum_ij L_ij exp(...), every term materialised per map
    (B x H x W x h x w), then summed over the cells."""
    h, w = maps.shape[-2:]
    k = dense_kernel(h, w, H, W, sigma, maps.device)
    return (k[None] * maps[:, None, None, :, :]).sum(dim=(-2, -1))


def dense_einsum(maps: torch.Tensor, H: int, W: int, sigma, kernel: torch.Tensor | None = None) -> torch.Tensor:
    """The double sum as one contraction over all (pixel, cell) pairs: the full (H W) x (h w)
    kernel (built per call unless given) times the maps (a GEMM)."""
    h, w = maps.shape[-2:]
    k = dense_kernel(h, w, H, W, sigma, maps.device) if kernel is None else kernel
    return torch.einsum("yxij,bij->byx", k, maps)


def bench_upsampling(args, device, sync) -> dict:
    repeats = args.upsample_repeats or max(15, 3 * args.repeats)
    size = 224
    gen = torch.Generator().manual_seed(args.seed)
    configs = [(14, 64), (7, 64), (14, 1), (7, 1)]
    results = {}
    rows = []
    for h, batch in configs:
        maps = torch.randn(batch, h, h, generator=gen).to(device)
        small = maps[: max(1, min(batch, args.dense_batch))].contiguous()
        kernel = dense_kernel(h, h, size, size, SIGMA, device)

        # Equal results first.
        g = explorer.upsample(maps, size, "gaussian", sigma=SIGMA)
        for name, d in [("broadcast", dense_broadcast(small, size, size, SIGMA)),
                        ("einsum", dense_einsum(maps, size, size, SIGMA))]:
            ref = g[: d.shape[0]]
            err = float((d - ref).abs().max() / ref.abs().max())
            assert err < 1e-4, f"dense eq. 4 ({name}) differs from the separable form: relative error {err:.2e}"

        contestants = {
            "gaussian (separable, explorer.upsample)":
                (lambda m=maps: explorer.upsample(m, size, "gaussian", sigma=SIGMA), batch),
            "bilinear (explorer.upsample)": (lambda m=maps: explorer.upsample(m, size, "bilinear"), batch),
            "eq. 4 dense: kernel per call + einsum":
                (lambda m=maps: dense_einsum(m, size, size, SIGMA), batch),
            "eq. 4 dense: cached kernel + einsum":
                (lambda m=maps, k=kernel: dense_einsum(m, size, size, SIGMA, k), batch),
            f"eq. 4 direct double sum (broadcast, {small.shape[0]} maps/call)":
                (lambda m=small: dense_broadcast(m, size, size, SIGMA), small.shape[0]),
        }
        timings = timeit_interleaved({k: v[0] for k, v in contestants.items()}, repeats=repeats,
                                     warmup=args.warmup + 1, sync=sync, seed=args.seed)
        per_map = {k: timings[k].scaled(1.0 / contestants[k][1]) for k in contestants}
        bil = per_map["bilinear (explorer.upsample)"]
        key = f"{h}x{h}->{size}, batch {batch}"
        results[key] = {"timings": timings, "maps_per_call": {k: v[1] for k, v in contestants.items()},
                        "per_map": per_map}
        for k in contestants:
            t = timings[k]
            rows.append([f"[{key}] {k}", fmt_ms(t.median, 3), fmt_ms(t.p95, 3),
                         f"{per_map[k].median * 1e6:.1f}", fmt_ratio(per_map[k].median / bil.median)])
    print_table(["upsampler", "median ms/call", "p95 ms/call", "us/map", "/ bilinear (per map)"], rows,
                title=f"Upsampling to {size}x{size}, float32 on {device}, sigma {SIGMA}, "
                      f"{repeats} interleaved rounds")
    return results


# ------------------------------------------------------------------------------------ profiling

def profile_calls(calls: dict, sync) -> dict[str, str]:
    """`calls`: name -> (fn, iterations). After one warm call, `iterations` calls of each under
    torch.profiler; prints and returns the top operators by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    tables = {}
    for name, (fn, iterations) in calls.items():
        fn()
        sync()
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
        with profile(activities=activities) as prof:
            for _ in range(iterations):
                fn()
            sync()
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
        tables[name] = table
        print(f"Profile: {name} ({iterations} call{'s' if iterations > 1 else ''})")
        print(table)
    return tables


# ---------------------------------------------------------------------------------------- main

def main(argv=None) -> int:
    wall_start = time.perf_counter()
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    threads_note = choose_threads(args.threads)
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    sync = device_sync(device)

    backbone, note = load(args)
    layer = backbone.resolve_layer(args.layer)
    images, names = gallery_batch(backbone, args.batch)
    targets = backbone.predict(images).argmax(dim=1)
    methods = [m for m in ALL_METHODS if m != "cam" or (backbone.has_gap_linear_head and layer == backbone.cam_layer)]

    info = machine_info(device)
    print(describe_machine(info))
    from importlib.metadata import version
    libs = {lib: version(lib) for lib in ("grad-cam", "torchcam", "opencv-python-headless", "opencv-python")
            if _has_dist(lib)}
    print("Libraries: " + ", ".join(f"{k} {v}" for k, v in libs.items()))
    print(f"Backbone: {backbone.name} ({backbone.weights_label}), layer {layer} "
          f"{backbone.layer_shape(layer)}, input {backbone.input_size}, batch {images.shape[0]}")
    if note:
        print(f"Note: {note}")
    if "cam" not in methods:
        print(f"Note: plain CAM does not apply to {backbone.name} layer {layer} (no GAP + linear head "
              f"reading it); 'our maps' are the {len(methods)} gradient methods.")
    print(f"Images: {', '.join(names)}; targets (top-1): {targets.tolist()}")
    print(f"Threads: {threads_note}")
    print()

    checks = run_checks(backbone, images, targets, layer, methods, not args.no_torchcam)
    print("Checks (before timing): floor gradient == our capture's (relative error "
          f"{checks['floor_gradient_rel_err']:.1e}); maps vs the libraries at equal work "
          f"(ReLU after the sum, min-max, and for pytorch-grad-cam bilinear to {backbone.input_size[0]}):")
    for name, c in checks["map_agreement"].items():
        print(f"  {name:34s} min per-image correlation {c['min_correlation']:.5f}, "
              f"max |diff| {c['max_abs_diff']:.4f}")
    print("  (Grad-CAM++ is the only formula where they differ: pytorch-grad-cam adds eps = 1e-6 to alpha's "
          "denominator, comparable to g^2 for small gradients, and torchcam's in-place division acts on a "
          "copy so its weights lose the denominator; ours is eq. 19 exactly.)")
    print()

    cams = bench_cams(backbone, images, targets, layer, methods, args, sync)
    t = cams["timings"]
    ours_all, floor = t[cams["ours_all"]], t["floor: bare forward + autograd.grad"]
    pgc_gc = t["pytorch-grad-cam GradCAM"]
    pgc_five = cams["derived"][f"pytorch-grad-cam: {len(PGC_EQUIVALENT)} methods separately (sum)"]

    ups = None if args.no_upsample else bench_upsampling(args, device, sync)

    headline = {}
    ratio_a = ours_all.median / pgc_gc.median
    headline["A"] = {"what": f"our {len(methods)} maps / pytorch-grad-cam single Grad-CAM "
                             f"({backbone.name}, batch {images.shape[0]})",
                     "ratio": ratio_a, "paired_ratio": paired_ratio(ours_all, pgc_gc), "target": TARGET_A}
    if ups is not None:
        up = ups["14x14->224, batch 64"]["timings"]
        g, b = up["gaussian (separable, explorer.upsample)"], up["bilinear (explorer.upsample)"]
        headline["B"] = {"what": "Gaussian / bilinear, 14x14->224, batch 64", "ratio": g.median / b.median,
                         "paired_ratio": paired_ratio(g, b), "target": TARGET_B}
    headline["C"] = {"what": f"our {len(methods)} maps / bare forward+grad floor", "ratio": ours_all.median / floor.median,
                     "paired_ratio": paired_ratio(ours_all, floor), "target": TARGET_C}
    print("Headline ratios (ratio of medians; in brackets the median of per-round paired ratios):")
    for key, h in headline.items():
        h["verdict"] = verdict(h["ratio"], h["target"])
        print(f"  ({key}) {h['what']}: {h['ratio']:.3f} [{h['paired_ratio']:.3f}]  target <= {h['target']}  "
              f"{h['verdict']}")
    extra = ours_all.median / pgc_five.median
    print(f"  (info) our {len(methods)} maps / pytorch-grad-cam's {len(PGC_EQUIVALENT)} methods computed separately: "
          f"{extra:.3f}")
    print()

    profiles = None
    if args.profile:
        calls = {
            cams["ours_all"]: (make_ours(backbone, images, targets, layer, methods), 1),
            "floor": (make_floor(backbone, images, targets, layer), 1),
            "pytorch-grad-cam GradCAM": (make_pgc(backbone, images, targets, layer, "GradCAM"), 1),
        }
        for h, batch, n in [(7, 1, 200), (14, 64, 20)]:
            m = torch.randn(batch, h, h, device=device)
            calls[f"gaussian {h}x{h}->224 batch {batch}"] = (
                lambda m=m: explorer.upsample(m, 224, "gaussian", sigma=SIGMA), n)
            calls[f"bilinear {h}x{h}->224 batch {batch}"] = (lambda m=m: explorer.upsample(m, 224, "bilinear"), n)
        profiles = profile_calls(calls, sync)

    load_end = load_average()
    wall = time.perf_counter() - wall_start
    print(f"Load average at end: {'n/a' if load_end is None else ' '.join(f'{x:.2f}' for x in load_end)}; "
          f"script wall time {wall:.1f} s")

    if args.json_path:
        write_json(args.json_path, {
            "args": vars(args), "machine": info, "threads": threads_note, "libraries": libs, "backbone": backbone.name,
            "weights": backbone.weights_label, "layer": layer, "methods": methods, "images": names,
            "targets": targets.tolist(), "checks": checks,
            "cams": {"timings": cams["timings"], "derived": cams["derived"]},
            "upsampling": ups, "headline": headline, "profiles": profiles,
            "load_average_end": load_end, "wall_s": wall,
        })
        print(f"Wrote {args.json_path}")
    return 0


def _has_dist(name: str) -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        version(name)
        return True
    except PackageNotFoundError:
        return False


if __name__ == "__main__":
    sys.exit(main())
