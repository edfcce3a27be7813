"""Command line: `python -m explorer <command> ...`; every command has --help.

Errors a user can cause (a bad image, an unknown layer, missing weights) print one plain line
and exit with status 2; they never show a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from explorer.cli_args import (
    BATCH_MAX,
    CRF_SCALE_MAX,
    EPOCHS_MAX,
    ERF_IMAGES_MAX,
    IMAGES_MAX,
    LOSS_WEIGHT_MAX,
    LR_MAX,
    SEED_MAX,
    THREADS_MAX,
    Parser,
    csv_list,
    device,
    names,
    number,
    numbers,
    output_file,
    output_folder,
    whole,
    whole_numbers,
)
from explorer.erf import MODES as ERF_MODES
from explorer.errors import ExplorerError
from explorer.fcam.decoder import FcamError
from explorer.methods import METHODS, MethodError
from explorer.presets import sigma_presets
from explorer.upsample import FCAM, UPSAMPLERS, UpsampleError

ALL_UPSAMPLERS = UPSAMPLERS + (FCAM,)

COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def command(name: str, help_text: str, configure: Callable[[argparse.ArgumentParser], None]):
    """Register `python -m explorer <name>`."""
    def register(run: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = (help_text, configure, run)
        return run
    return register


def parse_sigma(text: str) -> tuple[float, float]:
    try:
        values = [float(v) for v in csv_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"sigma must be one or two numbers like 31.8,33.4; got '{text}'") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"sigma takes one or two numbers (x,y); got '{text}'")
    return values[0], values[1]


def check_upsamplers(upsamplers: list[str]) -> None:
    for up in upsamplers:
        if up not in ALL_UPSAMPLERS:
            raise UpsampleError(f"Unknown upsampler '{up}'; use one of {', '.join(ALL_UPSAMPLERS)}.")


def resolve_decoders(backbone, methods: list[str], upsamplers: list[str], paths: list[Path] | None,
                     layer: str | None = None) -> dict[str, Path]:
    """base method -> decoder file for the upsampler "fcam": the --decoder files given (each card
    says which method trained it), else the shipped decoders of this backbone."""
    from explorer.fcam import read_decoder_card, shipped_decoders

    if FCAM not in upsamplers:
        return {}
    if paths:
        found = {}
        for path in paths:
            card = read_decoder_card(path)
            found[card["base_method"]] = path
    else:
        found = shipped_decoders(backbone.name)
    layer = backbone.resolve_layer(layer)
    chosen = {m: p for m, p in found.items() if m in methods and read_decoder_card(p)["layer"] == layer}
    if not chosen:
        have = ", ".join(f"{m} ({p.name})" for m, p in found.items()) or "none"
        raise FcamError(f"no F-CAM decoder of {backbone.name} (layer {layer}) was trained from "
                        f"{', '.join(methods)} (decoders found: {have}); train one with `python -m explorer "
                        f"train-fcam --backbone {backbone.name} --base-method {methods[0]}` or pass --decoder")
    return chosen


def resolve_target(class_names: list[str], text: str | None, predicted: int) -> int:
    """A class given as an index or a (case-insensitive) ImageNet name; the top-1 when None."""
    if text is None:
        return predicted
    if text.isdigit():
        index = int(text)
        if 0 <= index < len(class_names):
            return index
        raise MethodError(f"Class index {index} is out of range 0..{len(class_names) - 1}.")
    matches = [i for i, name in enumerate(class_names) if name.lower() == text.lower()]
    if not matches:
        matches = [i for i, name in enumerate(class_names) if text.lower() in name.lower()]
    if len(matches) != 1:
        hint = ", ".join(class_names[i] for i in matches[:5]) if matches else "none"
        raise MethodError(f"'{text}' does not name exactly one class (matches: {hint}).")
    return matches[0]



# ------------------------------------------------------------------------------------- cam

def _configure_cam(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image", required=True, help="an image file, or gallery:<name> (e.g. gallery:chelsea)")
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--weights", default="pretrained", help="pretrained | random | path to a state_dict")
    p.add_argument("--layer", default=None, help="target layer (default: the backbone's)")
    p.add_argument("--layers", choices=["auto"], default=None,
                   help="auto: first print the layer advisor's table (grid, Grad-CAM deletion AUC, Spearman after "
                        "re-initialising the head, the peers' choice) and draw at its suggested layer unless --layer "
                        "is given")
    p.add_argument("--methods", type=names, default=["gradcam", "extendedcam"],
                   help=f"comma-separated, from: {','.join(METHODS)}")
    p.add_argument("--upsampler", type=names, default=["bilinear", "gaussian"],
                   help=f"comma-separated, from: {','.join(ALL_UPSAMPLERS)} (fcam: the F-CAM decoder, for the "
                        f"methods a decoder was trained from)")
    p.add_argument("--decoder", type=Path, action="append", default=None,
                   help="F-CAM decoder file (.pt with its .json card) for --upsampler fcam; may repeat "
                        "(default: the shipped decoders of the backbone)")
    p.add_argument("--sigma", type=parse_sigma, default=None,
                   help="Gaussian sigma in pixels, x,y or one value (default: the first sigma preset of the "
                        "backbone/layer: its fitted ERF card when there is one, else the Extended-CAM paper's "
                        "31.78,33.36)")
    p.add_argument("--relu", default="published",
                   help="published (each method's own) | none (signed) | after | before")
    p.add_argument("--normaliser", default="minmax", choices=["none", "minmax", "max"])
    p.add_argument("--target", default=None, help="class index or ImageNet name (default: the top-1 prediction)")
    p.add_argument("--shared-scale", action="store_true", help="one colour range for every cell")
    p.add_argument("--out", type=output_file(".png", ".jpg", ".jpeg", ".webp"), default=Path("grid.png"),
                   help="the picture to write (.png, .jpg or .webp; its folder must exist)")
    p.add_argument("--npy", type=output_file(".npy"), default=None,
                   help="also write the raw grid maps as one .npy (methods whose maps share one grid size)")
    p.add_argument("--npz", type=output_file(".npz"), default=None,
                   help="also write a self-describing .npz: the settings (JSON), every raw grid map and every "
                        "upsampled map")
    p.add_argument("--eigen-smooth", action="store_true",
                   help="replace each map by the first principal component of its per-channel terms "
                        "(pytorch-grad-cam's eigen_smooth)")
    p.add_argument("--aug-smooth", action="store_true",
                   help="average each map over 6 flipped and rescaled copies of the image (x 1.0, 0.9, 1.1; "
                        "pytorch-grad-cam's aug_smooth): 6x the cost")
    p.add_argument("--fuse-layers", type=names, default=None,
                   help="comma-separated layers: the layercam row becomes LayerCAM fused over them (Jiang et al. "
                        "2021, eq. 9: tanh scaling, the finest grid, element-wise max)")
    p.add_argument("--device", type=device, default=None, help="cpu | cuda (default: cuda when present)")


@command("cam", "side-by-side CAMs of one image as a labelled PNG, and the top-5 predictions", _configure_cam)
def run_cam(args: argparse.Namespace) -> int:
    from explorer import views
    from explorer.backbones import load_backbone
    from explorer.fcam import load_decoder
    from explorer.images import load_image
    from explorer.methods import fused_layercam, method_label, validate_methods
    from explorer.pipeline import grid_maps, pixel_map_table

    methods = validate_methods(args.methods)
    check_upsamplers(args.upsampler)
    if args.fuse_layers is not None and ("layercam" not in methods or len(args.fuse_layers) < 2):
        raise ExplorerError("--fuse-layers fuses LayerCAM maps: add layercam to --methods and name at least two "
                            "layers.")
    image = load_image(args.image)
    backbone = load_backbone(args.backbone, args.weights, device=args.device)
    if backbone.task != "classification":
        raise ExplorerError(f"cam explains a classifier's class; {backbone.name} is a {backbone.task} model. Use "
                            "explorer.explain(..., target=...) with a target from explorer.targets, or the app's "
                            "Compare page, whose target picker follows the task.")
    decoders = {m: load_decoder(p, backbone)
                for m, p in resolve_decoders(backbone, methods, args.upsampler, args.decoder, args.layer).items()}
    sigma = args.sigma
    if sigma is None and "gaussian" in args.upsampler:
        label, sigma = next((label, value) for label, value in
                            sigma_presets(backbone.name, backbone.resolve_layer(args.layer),
                                          weights=backbone.weights).items()
                            if value is not None)
        print(f"sigma preset: {label}")
    batch = backbone.preprocess(image)
    top5 = backbone.top_k(batch, 5)[0]
    print(f"{backbone.name} ({backbone.weights_label}) top-5 for {args.image}:")
    for rank, (index, name, prob) in enumerate(top5, 1):
        print(f"  {rank}. {name} (class {index}): {prob:.3f}")
    target = resolve_target(backbone.class_names, args.target, top5[0][0])
    if args.layers == "auto":
        args.layer = _advise(backbone, batch, target, args.layer)
    start = time.perf_counter()
    grid = grid_maps(backbone, batch, [target], methods, args.layer, relu=args.relu, decoders=decoders,
                     eigen=args.eigen_smooth, aug_smooth=args.aug_smooth)
    if args.fuse_layers is not None:
        grid.maps["layercam"] = fused_layercam(backbone, batch, [target], args.fuse_layers)[0]
        print(f"layercam fused over {', '.join(backbone.resolve_layer(x) for x in args.fuse_layers)} "
              f"({tuple(grid.maps['layercam'].shape[-2:])} grid)")
    table = pixel_map_table(grid, backbone.input_size, args.upsampler, sigma, args.normaliser)
    elapsed = time.perf_counter() - start
    col_labels = {u: (f"gaussian sx={sigma[0]:g} sy={sigma[1]:g}" if u == "gaussian" else
                      "F-CAM decoder" if u == FCAM else u) for u in args.upsampler}
    row_labels = {m: method_label(m, grid.relu[m]) + (" fused" if m == "layercam" and args.fuse_layers else "")
                  + (", aug-smooth" if args.aug_smooth else "") + (", eigen-smooth" if args.eigen_smooth else "")
                  for m in methods}
    title = f"{backbone.name} / {grid.layer} / class {target} {backbone.class_names[target]}"
    sheet = views.comparison_sheet(backbone.resize(image), table, row_labels, col_labels,
                                   shared_scale=args.shared_scale, title=title)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(f"wrote {args.out} ({len(methods)} methods x {len(args.upsampler)} upsamplers, {elapsed:.2f} s)")
    if args.npy is not None:
        shapes = {tuple(grid.maps[m].shape[-2:]) for m in methods}
        if len(shapes) > 1:
            raise ExplorerError(f"--npy stacks maps of one grid size; these methods give {len(shapes)} sizes "
                                f"(the input-gradient methods work at the image's resolution): use --npz")
        args.npy.write_bytes(views.npy_bytes({m: grid.maps[m][0].cpu().numpy() for m in methods}))
        print(f"wrote {args.npy} (raw grid maps, rows in the order {','.join(methods)})")
    if args.npz is not None:
        settings = {"image": str(args.image), "backbone": backbone.name, "weights": backbone.weights,
                    "layer": grid.layer, "class_index": target, "class_name": backbone.class_names[target],
                    "methods": {m: {"label": row_labels[m], "relu": grid.relu[m]} for m in methods},
                    "upsamplers": list(args.upsampler), "sigma_pixels": list(sigma) if sigma else None,
                    "normaliser": args.normaliser, "eigen_smooth": bool(args.eigen_smooth),
                    "aug_smooth": bool(args.aug_smooth), "fused_layers": args.fuse_layers}
        arrays = {f"grid/{m}": grid.maps[m][0].cpu().numpy() for m in methods}
        arrays.update({f"pixels/{m}/{u}": v.cpu().numpy() for (m, u), v in table.items()})
        args.npz.write_bytes(views.npz_bytes(settings, arrays))
        print(f"wrote {args.npz} (settings, raw grid maps, upsampled maps)")
    return 0


def _advise(backbone, batch, target: int, layer: str | None) -> str:
    """Print the layer advisor's table; the layer to draw at: the one given, else the suggested."""
    from explorer.layer_advisor import advice_table, advise_layers, suggested

    rows = advise_layers(backbone, batch, target)
    print(f"layer advisor for class {target} {backbone.class_names[target]}:")
    print(advice_table(rows))
    return layer if layer is not None else suggested(rows).layer


# ------------------------------------------------------------------------------------- erf

def _configure_erf(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--weights", default="pretrained", help="pretrained | random | path to a state_dict")
    p.add_argument("--layer", default=None, help="target layer (default: the backbone's)")
    p.add_argument("--images", type=whole(1, ERF_IMAGES_MAX), default=64, help="number of images to average (default 64)")
    p.add_argument("--source", default="gallery",
                   help="noise (N(0,1) in the normalised input space) | gallery (random crops of the "
                        "sample photos) | folder:<dir> (random crops of your images); default gallery")
    p.add_argument("--mode", default="abs", choices=ERF_MODES,
                   help="how the input gradient is turned into the map: abs (|g|, default), relu, square, signed")
    p.add_argument("--batch-size", type=whole(1, BATCH_MAX), default=8)
    p.add_argument("--seed", type=whole(0, SEED_MAX), default=0, help="seeds the images (and random weights)")
    p.add_argument("--offset", action="store_true", help="fit a constant offset too")
    p.add_argument("--rotation", action="store_true", help="fit a rotated Gaussian")
    p.add_argument("--out", type=output_file(".json"), default=None,
                   help="JSON card to write (default: checkpoints/erf/<backbone>__<layer>.json, the card "
                        "the Gaussian upsampler's presets read)")
    p.add_argument("--png", type=output_file(".png"), default=None, help="figure to write (default: --out with .png)")
    p.add_argument("--device", type=device, default=None, help="cpu | cuda (default: cuda when present)")


@command("erf", "estimate a layer's effective receptive field, fit a 2D Gaussian (lmfit), write its card + PNG",
         _configure_erf)
def run_erf(args: argparse.Namespace) -> int:
    import shlex

    from tqdm import tqdm

    from explorer import erf
    from explorer.backbones import load_backbone
    from explorer.presets import erf_card_path

    if args.weights == "random":
        import torch

        torch.manual_seed(args.seed)  # random weights are part of what the card must reproduce
    backbone = load_backbone(args.backbone, args.weights, device=args.device)
    layer = backbone.resolve_layer(args.layer)
    source = erf.image_source(args.source, backbone, args.images, args.batch_size, args.seed)
    if source.note:
        print(f"source {source.name}: {source.note}")
    out = args.out or erf_card_path(backbone.name, layer)
    png = args.png or out.with_suffix(".png")
    print(f"ERF of {backbone.name} ({backbone.weights_label}) / {layer}, {args.mode} gradient, "
          f"{source.total} {source.name} images, batch {args.batch_size}")

    # The running sum is kept beside the card after every batch: a killed run resumes from it.
    state = out.with_name(f".{out.name}.partial.npz")
    key = json.dumps({"backbone": backbone.name, "weights": str(args.weights), "layer": layer, "mode": args.mode,
                      "source": source.name, "images": args.images, "batch": args.batch_size, "seed": args.seed},
                     sort_keys=True)
    bar = tqdm(total=source.total, unit="img", desc="ERF", dynamic_ncols=True)

    def progress(done: int, _total: int | None, _map) -> None:
        bar.update(done - bar.n)

    if state.is_file():
        print(f"resuming the partial estimate in {state}")
    try:
        # Ctrl-C keeps what was accumulated: it is fitted and written, marked, and the state stays.
        estimate = erf.estimate_erf_resumable(backbone, layer, source, state, mode=args.mode, key=key,
                                              progress=progress)
    finally:
        bar.close()
    if estimate.interrupted:
        print(f"interrupted after {estimate.n_images} of {source.total} images: fitting and writing what "
              f"was accumulated (the card says interrupted: true); rerun the same command to continue")
    fit = erf.fit_erf(estimate.map, offset=args.offset, rotation=args.rotation)
    argv = getattr(args, "argv", None)
    command_line = "python -m explorer " + shlex.join(argv if argv is not None else sys.argv[1:])
    erf.save_erf_card(estimate, fit, out, command_line)
    erf.erf_figure_png(estimate, fit, png)
    if not estimate.interrupted:
        state.unlink(missing_ok=True)

    def pm(name: str) -> str:
        err = fit.stderr.get(name)
        return f"{getattr(fit, name):.2f} ± {err:.2f}" if err is not None else f"{getattr(fit, name):.2f} (no stderr)"

    print(f"fit ({'+'.join(k for k, v in fit.options.items() if v) or 'plain'}): R² {fit.r2:.4f}, "
          f"sigma_x {pm('sigma_x')}, sigma_y {pm('sigma_y')} px, centre ({pm('centre_x')}, {pm('centre_y')}) "
          f"vs centre cell {estimate.centre_cell} of {estimate.grid[0]}x{estimate.grid[1]} at "
          f"({estimate.centre_px[0]:g}, {estimate.centre_px[1]:g})"
          + (f", offset {fit.offset:.3g}" if fit.offset is not None else "")
          + (f", rotation {fit.rotation:.3f} rad" if fit.rotation is not None else ""))
    if fit.stderr_note:
        print(f"note: {fit.stderr_note}")
    print(f"{estimate.n_images} images in {estimate.seconds:.1f} s, fit {fit.seconds:.2f} s; wrote {out} and {png}"
          + (" (INTERRUPTED)" if estimate.interrupted else ""))
    return 0


# ---------------------------------------------------------------------------- make-synthetic

image_count = whole(0, IMAGES_MAX)


def _configure_make_synthetic(p: argparse.ArgumentParser) -> None:
    from explorer.datasets.synthetic import DEFAULT_SIZES, V1_WEAKNESS, VERSION, VERSIONS

    p.add_argument("--out", type=output_folder, required=True, help="folder to create (absent or empty)")
    p.add_argument("--seed", type=whole(0, SEED_MAX), default=0, help="the same seed gives the same bytes (default 0)")
    p.add_argument("--version", type=int, choices=VERSIONS, default=VERSION,
                   help=f"benchmark version (default {VERSION}; 1 is kept for teaching: {V1_WEAKNESS})")
    for split, count in DEFAULT_SIZES.items():
        p.add_argument(f"--{split}", type=image_count, default=count, help=f"{split} images (default {count})")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out")
    p.add_argument("--preview", type=output_file(".png"), default=None,
                   help="also write a PNG sheet of 12 examples (outline, box and class-deciding part)")


@command("make-synthetic", "generate the synthetic WSOL benchmark: classes decided by a small part of the object",
         _configure_make_synthetic)
def run_make_synthetic(args: argparse.Namespace) -> int:
    from PIL import Image
    from tqdm import tqdm

    from explorer.datasets import load_synthetic, make_synthetic, preview_sheet, read_manifest

    sizes = {"train": args.train, "val": args.val, "test": args.test}
    start = time.perf_counter()
    with tqdm(total=sum(sizes.values()), unit="image", desc="make-synthetic") as bar:
        root = make_synthetic(args.out, seed=args.seed, sizes=sizes, progress=bar.update, overwrite=args.overwrite,
                              number=args.version)
    manifest = read_manifest(root)
    for split, counts in manifest["counts"].items():
        print(f"  {split}: {counts['images']} images, {counts['instances']} objects")
    print(f"wrote {root} (seed {args.seed}, {time.perf_counter() - start:.1f} s)")
    if args.preview is not None:
        split = next((s for s in ("test", "val", "train") if manifest["counts"][s]["images"]), None)
        if split is None:
            print("no preview: every split is empty")
            return 0
        args.preview.parent.mkdir(parents=True, exist_ok=True)
        sheet = preview_sheet(load_synthetic(root, split))
        # 256 colours: a third of the size, and no visible difference at this scale.
        sheet.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(args.preview, optimize=True)
        print(f"wrote {args.preview} ({split} examples)")
    return 0


# ---------------------------------------------------------------------------- train-classifier

def _configure_train_classifier(p: argparse.ArgumentParser) -> None:
    from explorer.train import ARCHS

    p.add_argument("--arch", required=True, choices=ARCHS,
                   help="synthetic_cnn (small CNN from scratch), synthetic_lite0 (ImageNet Lite0, fine-tuned) or "
                        "synthetic_vgg (Lite0's blocks to stride 16 with a VGG-style max-pool + FC-ReLU-FC head)")
    p.add_argument("--data", type=Path, default=None,
                   help="a synthetic dataset folder (default: the cached one, generated on first use)")
    p.add_argument("--out", type=output_file(".pt"), default=None, help="weights file (default: checkpoints/<arch>.pt); "
                   "the card is written beside it with .json")
    p.add_argument("--epochs", type=whole(1, EPOCHS_MAX), default=None,
                   help="default: 50 for synthetic_cnn, 6 for synthetic_lite0, 8 for synthetic_vgg")
    p.add_argument("--batch-size", type=whole(1, BATCH_MAX), default=32)
    p.add_argument("--lr", type=number(0, LR_MAX, above=True), default=None, help="peak learning rate (default per architecture)")
    p.add_argument("--seed", type=whole(0, SEED_MAX), default=0)
    p.add_argument("--teacher", default=None,
                   help="a registered classifier whose CAM guides the student by attention transfer "
                        "(default: synthetic_lite0 for synthetic_cnn, none for synthetic_lite0; 'none' turns it off)")
    p.add_argument("--attention-weight", type=number(0, LOSS_WEIGHT_MAX), default=None,
                   help="weight of the attention-transfer term (default 5 with a teacher)")
    p.add_argument("--distill-weight", type=number(0, LOSS_WEIGHT_MAX), default=None,
                   help="share of the loss given to the teacher's softened class scores, 0-1 "
                        "(knowledge distillation; default 0.7 for synthetic_cnn, 0 otherwise; 0 turns it off)")
    p.add_argument("--distill-temperature", type=number(0, 1000, above=True), default=None,
                   help="temperature T softening the teacher's and student's scores (default 4)")
    p.add_argument("--init-from", default=None,
                   help="a registered classifier, or a .pt file, of the same architecture whose layers (all but "
                        "the class head) start the run instead of random weights (synthetic_cnn only; 'none' turns "
                        "it off); the card records the file's SHA-256 and its card's command")
    p.add_argument("--run-dir", type=Path, default=None,
                   help="where the resumable run state lives (default: <out without .pt>.run/)")
    p.add_argument("--device", type=device, default=None, help="cpu or cuda (default: cuda when present, else cpu)")
    p.add_argument("--threads", type=whole(1, THREADS_MAX), default=None, help="CPU threads for torch (default: torch's choice)")


@command("train-classifier", "train a synthetic-benchmark classifier (resumes an interrupted run)",
         _configure_train_classifier)
def run_train_classifier(args: argparse.Namespace) -> int:
    import dataclasses

    import torch
    from tqdm import tqdm

    from explorer.backbones import CHECKPOINT_DIR
    from explorer.datasets.synthetic import ensure_synthetic
    from explorer.train import TrainConfig, train_classifier

    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainConfig.defaults(args.arch)
    changes = {"seed": args.seed, "batch_size": args.batch_size}
    if args.epochs is not None:
        changes["epochs"] = args.epochs
    if args.lr is not None:
        changes["lr"] = args.lr
    if args.teacher is not None:
        changes["teacher"] = "" if args.teacher.lower() == "none" else args.teacher
        if changes["teacher"] and not config.attention_weight and args.attention_weight is None:
            changes["attention_weight"] = 5.0  # a teacher named for an architecture without one by default
    if args.attention_weight is not None:
        changes["attention_weight"] = args.attention_weight
    if args.distill_weight is not None:
        changes["distill_weight"] = args.distill_weight
    if args.distill_temperature is not None:
        changes["distill_temperature"] = args.distill_temperature
    if args.init_from is not None:
        changes["init_from"] = "" if args.init_from.lower() == "none" else args.init_from
    if not changes.get("teacher", config.teacher) and args.distill_weight is None:
        changes["distill_weight"] = 0.0  # no teacher: nothing to distil (named explicitly, check() refuses)
    config = dataclasses.replace(config, **changes).check()
    if args.data is None:
        with tqdm(unit="image", desc="generating the synthetic dataset (first use)") as bar:
            data = ensure_synthetic(progress=bar.update)
    else:
        data = args.data
    out = args.out or CHECKPOINT_DIR / f"{args.arch}.pt"
    bars: dict[str, tqdm] = {}

    def progress(phase: str, done: int, total: int, info: dict) -> None:
        if phase == "teacher":
            bar = bars.get("teacher")
            if bar is None:
                bar = bars["teacher"] = tqdm(total=total, unit="image", desc=f"teacher CAMs ({config.teacher})")
            bar.n = done
            bar.refresh()
            if done >= total:
                bars.pop("teacher").close()
        elif phase == "train":
            bar = bars.get("train")
            if bar is None:
                bar = bars["train"] = tqdm(total=total, initial=done - 1, unit="step", desc=args.arch)
            bar.n = done
            bar.set_postfix(epoch=info["epoch"], loss=f"{info['loss']:.3f}", refresh=False)
            bar.refresh()
        else:
            tqdm.write(f"epoch {done}/{total}: val accuracy {info['val_accuracy']:.3f} "
                       f"({info['elapsed_s']:.0f} s)")

    command_line = "python -m explorer " + " ".join(args.argv)
    try:
        result = train_classifier(args.arch, data, out, config=config, run_dir=args.run_dir,
                                  command=command_line, device=args.device, progress=progress)
    finally:
        for bar in bars.values():
            bar.close()
    print(f"test accuracy {result.test_accuracy:.4f} (val {result.val_accuracy:.4f}, epoch {result.best_epoch}), "
          f"{result.train_seconds / 60:.1f} min of training")
    print(f"wrote {result.weights} and {result.card}")
    return 0


# -------------------------------------------------------------------------------- evaluate

def _configure_evaluate(p: argparse.ArgumentParser) -> None:
    from explorer.datasets.loaders import SPECS

    p.add_argument("--dataset", required=True, help=f"one of: {SPECS}")
    p.add_argument("--split", default="test", help="train | val | test (VOC: train, val, trainval, test)")
    p.add_argument("--backbone", default="synthetic_lite0")
    p.add_argument("--weights", default="pretrained", help="pretrained | random | path to a state_dict")
    p.add_argument("--layer", default=None, help="target layer (default: the backbone's)")
    p.add_argument("--methods", type=names, default=["cam", "gradcam", "gradcampp", "xgradcam", "layercam",
                                                         "extendedcam"],
                   help=f"comma-separated, from: {', '.join(METHODS)} (default: the six one-pass methods)")
    p.add_argument("--upsampler", type=names, default=["bilinear", "gaussian"],
                   help=f"comma-separated, from: {', '.join(ALL_UPSAMPLERS)} (fcam: the F-CAM decoder, scored "
                        f"for the methods a decoder was trained from)")
    p.add_argument("--decoder", type=Path, action="append", default=None,
                   help="F-CAM decoder file for --upsampler fcam; may repeat (default: the shipped decoders)")
    p.add_argument("--sigma", type=parse_sigma, default=None,
                   help="Gaussian sigma x,y in input pixels (default: the backbone/layer preset)")
    p.add_argument("--relu", default="none",
                   help="ReLU policy: none (default), after (the channel sum), before, or published (each method's own)")
    p.add_argument("--threshold-interval", type=number(1e-4, 0.5), default=0.001, help="the protocol's 0.001 by default")
    p.add_argument("--batch-size", type=whole(1, BATCH_MAX), default=16)
    p.add_argument("--limit", type=whole(1, IMAGES_MAX), default=None, help="evaluate only the first N images")
    p.add_argument("--no-confidence", action="store_true", help="skip Average Drop / %% Increase (2 forwards per map)")
    p.add_argument("--no-controls", action="store_true",
                   help="skip the network-free control rows (they do not depend on the backbone, sigma or method: "
                        "a sweep needs them once)")
    p.add_argument("--faithfulness", type=names, default=[],
                   help="comma-separated, from: deletion, insertion (RISE: 33 forwards per map each), road (MoRF and "
                        "LeRF at 9 fractions, noisy linear imputation: 18 forwards and 18 sparse solves per map)")
    p.add_argument("--out", type=output_folder, required=True, help="output folder (resumed when it holds the same run)")
    p.add_argument("--device", type=device, default=None, help="cpu or cuda (default: cuda when present)")


@command("evaluate", "evaluate methods x upsamplers over a dataset (WSOL metrics, Average Drop); resumable",
         _configure_evaluate)
def run_evaluate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from explorer.backbones import load_backbone
    from explorer.evaluate import EvalConfig, evaluate, evaluate_distributed
    from explorer.methods import validate_methods

    methods = tuple(validate_methods(args.methods))
    check_upsamplers(args.upsampler)
    rank, world = _distributed_rank()
    # Under torchrun each process loads its own copy on its own device; this one only resolves
    # the layer and the sigma preset.
    backbone = load_backbone(args.backbone, args.weights, device="cpu" if world > 1 else args.device)
    sigma = args.sigma
    if sigma is None and "gaussian" in args.upsampler:
        label, sigma = next((label, value) for label, value in
                            sigma_presets(backbone.name, backbone.resolve_layer(args.layer),
                                          weights=backbone.weights).items() if value is not None)
        if rank == 0:
            print(f"sigma preset: {label}")
    decoders = resolve_decoders(backbone, list(methods), args.upsampler, args.decoder, args.layer)
    if rank == 0:
        for up in args.upsampler:
            if up == FCAM:
                for method in methods:
                    print(f"F-CAM decoder for {method}: {decoders[method]}" if method in decoders
                          else f"F-CAM: no decoder trained from {method}; its fcam column is left out")
    config = EvalConfig(dataset=args.dataset, split=args.split, backbone=args.backbone, weights=str(args.weights),
                        layer=backbone.resolve_layer(args.layer), methods=methods,
                        upsamplers=tuple(args.upsampler), sigma=tuple(sigma) if sigma else None, relu=args.relu,
                        threshold_interval=args.threshold_interval, batch_size=args.batch_size,
                        confidence=not args.no_confidence, limit=args.limit, controls=not args.no_controls,
                        faithfulness=tuple(args.faithfulness), decoders={m: str(p) for m, p in decoders.items()})
    bar = tqdm(unit="image", desc=f"evaluate {args.backbone}" + (f" (rank 0 of {world})" if world > 1 else ""),
               disable=rank != 0)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    start = time.perf_counter()
    try:
        if world > 1:  # under torchrun: one process per device, chunks gathered to rank 0
            summary = evaluate_distributed(config, args.out, device=args.device, progress=progress)
        else:
            summary = evaluate(config, args.out, backbone=backbone, progress=progress)
    finally:
        bar.close()
    if summary is None:
        return 0
    print(f"{summary.num_images} images in {time.perf_counter() - start:.1f} s"
          + (f"; {len(summary.skipped)} skipped (see summary.json)" if summary.skipped else "")
          + (f"; classification accuracy {summary.classification_accuracy:.1f} %"
             if summary.classification_accuracy is not None else ""))
    print(format_summary(summary.rows))
    print(f"wrote {args.out}/summary.csv, summary.json, records.csv, curves.npz")
    return 0


def _distributed_rank() -> tuple[int, int]:
    """(rank, world size) under torchrun; (0, 1) otherwise."""

    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def format_summary(rows: list[dict]) -> str:
    columns = [("method", "method", "{}"), ("upsampler", "upsampler", "{}"), ("max_box_acc", "MaxBoxAcc", "{:.1f}"),
               ("max_box_acc_v2", "MaxBoxAccV2", "{:.1f}"), ("pxap", "PxAP", "{:.1f}"),
               ("top1_loc", "top-1 loc", "{:.1f}"), ("average_drop", "AD %", "{:.1f}"),
               ("increase", "Inc %", "{:.1f}"), ("average_drop_relative", "AD rel", "{:.1f}"),
               ("increase_relative", "Inc rel", "{:.1f}"), ("confidence_change", "dp_c", "{:+.3f}"),
               ("deletion_auc", "deletion", "{:.3f}"), ("insertion_auc", "insertion", "{:.3f}"),
               ("road_morf", "ROAD MoRF", "{:.3f}"), ("road_lerf", "ROAD LeRF", "{:.3f}")]
    present = [c for c in columns if any(c[0] in r for r in rows)]
    table = [[label for _, label, _ in present]]
    for row in rows:
        table.append([fmt.format(row[key]) if key in row else "-" for key, _, fmt in present])
    widths = [max(len(r[i]) for r in table) for i in range(len(present))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)) for r in table)


# ---------------------------------------------------------------------------- train-fcam

def _configure_fcam_common(p: argparse.ArgumentParser) -> None:
    from explorer.fcam_train import FcamConfig

    d = FcamConfig(backbone="")
    p.add_argument("--backbone", required=True, help="the frozen classifier (e.g. synthetic_lite0, synthetic_cnn)")
    p.add_argument("--weights", default="pretrained", help="pretrained | random | path to a state_dict")
    p.add_argument("--base-method", default=d.base_method, help=f"the CAM the seeds come from (default {d.base_method}); "
                   f"one of {', '.join(METHODS)}")
    p.add_argument("--layer", default=None, help="CAM layer (default: the backbone's)")
    p.add_argument("--dataset", default=d.dataset,
                   help="synthetic (default, generated on first use), synthetic:<dir>, cub:<root>, openimages:<root>, "
                        "voc:<root> or folder:<dir> (a folder: targets are the classifier's top-1, no model selection)")
    p.add_argument("--epochs", type=whole(1, EPOCHS_MAX), default=d.epochs, help=f"default {d.epochs} (the paper: 50 on a GPU)")
    p.add_argument("--batch-size", type=whole(1, BATCH_MAX), default=d.batch_size)
    p.add_argument("--lr", type=number(0, LR_MAX, above=True), default=d.lr, help=f"SGD, Nesterov momentum 0.9 (default {d.lr})")
    p.add_argument("--n-negative", type=number(0, 1, above=True), default=d.n_negative,
                   help=f"fraction of lowest-CAM pixels that may be background seeds (default {d.n_negative})")
    p.add_argument("--crf-weight", type=number(0, LOSS_WEIGHT_MAX), default=d.crf_weight,
                   help=f"lambda of the CRF loss (default {d.crf_weight:g}; 0 turns it off)")
    p.add_argument("--crf-scale", type=whole(1, CRF_SCALE_MAX), default=d.crf_scale,
                   help=f"CRF block size in pixels (default {d.crf_scale})")
    p.add_argument("--size-weight", type=number(0, LOSS_WEIGHT_MAX), default=d.size_weight,
                   help=f"weight of the size constraint (default {d.size_weight:g}; 0 turns it off)")
    p.add_argument("--train-limit", type=whole(1, IMAGES_MAX), default=None, help="use only the first N training images")
    p.add_argument("--val-limit", type=whole(1, IMAGES_MAX), default=None, help="use only the first N validation images")
    p.add_argument("--seed", type=whole(0, SEED_MAX), default=0)
    p.add_argument("--seed-source", choices=("cam", "object", "part"), default=d.seed_source,
                   help="what the seeds are drawn from: the base method's CAM (default, the paper), or a positive "
                        "control: the object mask or the class-deciding part's mask reduced to the CAM's grid")
    p.add_argument("--device", type=device, default=None, help="cpu | cuda (default: cuda when present)")
    p.add_argument("--threads", type=whole(1, THREADS_MAX), default=None, help="CPU threads for torch (default: torch's choice)")


def _fcam_config(args: argparse.Namespace, **changes):
    import dataclasses

    import torch

    from explorer.fcam_train import FcamConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    config = FcamConfig(backbone=args.backbone, weights=str(args.weights), base_method=args.base_method,
                        layer=args.layer, dataset=args.dataset, epochs=args.epochs, batch_size=args.batch_size,
                        lr=args.lr, n_negative=args.n_negative, crf_weight=args.crf_weight, crf_scale=args.crf_scale,
                        size_weight=args.size_weight, train_limit=args.train_limit, val_limit=args.val_limit,
                        seed=args.seed, seed_source=args.seed_source)
    config = dataclasses.replace(config, **changes)
    try:
        config.check()
    except ValueError as exc:
        raise FcamError(str(exc)) from exc
    return config


def _fcam_progress(desc: str):
    from tqdm import tqdm

    bars: dict = {}

    def progress(phase: str, done: int, total: int, info: dict) -> None:
        if phase == "load":
            if "load" not in bars:
                bars["load"] = tqdm(unit="image", desc="decoding images", leave=False)
            bars["load"].update(done)
        elif phase == "train":
            if "load" in bars:
                bars.pop("load").close()
            bar = bars.get("train")
            if bar is None:
                bar = bars["train"] = tqdm(total=total, initial=done - 1, unit="step", desc=desc)
            bar.n = done
            bar.set_postfix(epoch=info["epoch"], loss=f"{info['loss']:.3f}", refresh=False)
            bar.refresh()
        else:
            scores = ", ".join(f"{k[4:]} {v:.1f}" for k, v in info.items() if k.startswith("val_"))
            tqdm.write(f"epoch {done}/{total}: loss {info.get('train_loss', float('nan')):.4f}"
                       + (f", validation {scores}" if scores else "") + f" ({info['elapsed_s']:.0f} s)")

    def close() -> None:
        for bar in bars.values():
            bar.close()

    return progress, close


def _configure_train_fcam(p: argparse.ArgumentParser) -> None:
    _configure_fcam_common(p)
    p.add_argument("--out", type=output_file(".pt"), default=None,
                   help="decoder weights (default: checkpoints/fcam/<backbone>__<base-method>.pt); the card is "
                        "written beside it with .json")
    p.add_argument("--run-dir", type=Path, default=None,
                   help="where the resumable run state lives (default: <out without .pt>.run/)")


@command("train-fcam", "train an F-CAM decoder on a frozen classifier from its own CAM (resumes an interrupted run)",
         _configure_train_fcam)
def run_train_fcam(args: argparse.Namespace) -> int:
    from explorer.fcam import decoder_path
    from explorer.fcam_train import train_fcam

    config = _fcam_config(args)
    out = args.out or decoder_path(args.backbone, args.base_method)
    progress, close = _fcam_progress(f"F-CAM {args.backbone}")
    try:
        result = train_fcam(config, out, run_dir=args.run_dir, command="python -m explorer " + " ".join(args.argv),
                            device=args.device, progress=progress)
    finally:
        close()
    scores = ", ".join(f"{k} {v:.2f}" for k, v in result.val.items())
    print(f"selected epoch {result.best_epoch}" + (f" (validation {scores})" if scores else "")
          + f"; {result.train_seconds / 60:.1f} min of training")
    print(f"wrote {result.weights} and {result.card}")
    return 0


def _configure_ablation(p: argparse.ArgumentParser) -> None:
    from explorer.fcam_train import ABLATION_VARIANTS

    _configure_fcam_common(p)
    p.add_argument("--variants", type=names, default=list(ABLATION_VARIANTS),
                   help=f"comma-separated, from: {', '.join(ABLATION_VARIANTS)} (default: all four)")
    p.add_argument("--split", default="test", help="where the trained decoders are scored (default test)")
    p.add_argument("--limit", type=whole(1, IMAGES_MAX), default=None, help="score only the first N images of that split")
    p.add_argument("--reuse", type=Path, default=None,
                   help="a decoder trained with the full loss and the same settings (e.g. the shipped one): used "
                        "for the seeds+crf+size row instead of training it again (with --seeds: for its own "
                        "seed's row only)")
    p.add_argument("--seeds", type=whole_numbers, default=None,
                   help="comma-separated training seeds (e.g. 0,1,2; replaces --seed): the table once per seed in "
                        "<out>/seed<N>/, then mean and standard deviation over seeds in <out>/seeds.{json,md}")
    p.add_argument("--out", type=output_folder, required=True, help="folder for the decoders, evaluations and ablation.{json,md}")


@command("fcam-ablation", "F-CAM Table D.1 on a dataset: seeds only, + CRF, + size, all three (trained and scored)",
         _configure_ablation)
def run_fcam_ablation(args: argparse.Namespace) -> int:
    from explorer.fcam_ablation import run_ablation, run_seeded_ablation, seeds_markdown

    config = _fcam_config(args)
    progress, close = _fcam_progress(f"F-CAM {args.backbone}")
    common = {"variants": args.variants, "split": args.split, "limit": args.limit, "reuse": args.reuse,
              "command": "python -m explorer " + " ".join(args.argv), "device": args.device, "progress": progress,
              "log": print}
    try:
        if args.seeds:
            result = run_seeded_ablation(config, args.out, args.seeds, **common)
        else:
            table = run_ablation(config, args.out, **common)
    finally:
        close()
    if args.seeds:
        print(seeds_markdown(result))
        print(f"wrote {args.out}/seed<N>/ablation.json for seeds {', '.join(map(str, args.seeds))} and "
              f"{args.out}/seeds.json and seeds.md")
    else:
        print(table.markdown())
        print(f"wrote {args.out}/ablation.json and ablation.md")
    return 0


def _configure_fcam_sweep(p: argparse.ArgumentParser) -> None:
    from explorer.fcam_sweep import SWEEPABLE

    _configure_fcam_common(p)
    p.add_argument("--param", required=True, choices=[name.replace("_", "-") for name in SWEEPABLE],
                   help="the setting to vary (F-CAM Fig. D.2 sweeps n-negative over 0.1-0.7)")
    p.add_argument("--values", type=numbers, required=True, help="comma-separated values of --param")
    p.add_argument("--out", type=output_folder, required=True,
                   help="folder for one decoder per value and sweep.{json,md} (resumed when rerun)")


@command("fcam-sweep", "F-CAM decoders trained over one setting's values, compared on the validation split",
         _configure_fcam_sweep)
def run_fcam_sweep(args: argparse.Namespace) -> int:
    from explorer.fcam_sweep import run_sweep, sweep_markdown

    config = _fcam_config(args)
    progress, close = _fcam_progress(f"F-CAM {args.backbone}")
    try:
        result = run_sweep(config, args.param.replace("-", "_"), args.values, args.out,
                           command="python -m explorer " + " ".join(args.argv), device=args.device,
                           progress=progress, log=print)
    finally:
        close()
    print(sweep_markdown(result))
    print(f"selected {args.param} {result['selected']:g} on the validation split; wrote {args.out}/sweep.json and sweep.md")
    return 0


# ------------------------------------------------------------------------------------ main

def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m explorer",
                                     description="CAM Explorer: how convolutional networks see.")
    sub = parser.add_subparsers(dest="command", metavar="command", parser_class=Parser)
    for name, (help_text, configure, _run) in COMMANDS.items():
        # '%' in a help text would be read as a format directive by argparse
        configure(sub.add_parser(name, help=help_text.replace("%", "%%"), description=help_text,
                                 prog=f"python -m explorer {name}"))
    return parser


def main(argv: list[str] | None = None) -> int:
    from explorer.runtime import tune_allocator

    tune_allocator()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad argument (2, its one error line already printed)
        return int(exc.code or 0)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the exact command, for cards
    if not args.command:
        parser.print_help()
        return 0
    try:
        return COMMANDS[args.command][2](args)
    except ExplorerError as exc:  # the one place the CLI turns a user's mistake into a message
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the machine refused a file (disk full, read-only, permissions): say which
        print(f"error: {exc.filename or 'a file'}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

# ---------------------------------------------------------------------------- smoothing-curve

def _configure_smoothing_curve(p: argparse.ArgumentParser) -> None:
    from explorer.datasets.loaders import SPECS
    from explorer.smoothing import DEFAULT_SIGMAS

    p.add_argument("--dataset", default="synthetic", help=f"one of: {SPECS} (default synthetic)")
    p.add_argument("--split", default="test")
    p.add_argument("--backbone", default="synthetic_vgg")
    p.add_argument("--weights", default="pretrained", help="pretrained | random | path to a state_dict")
    p.add_argument("--layer", default=None, help="target layer (default: the backbone's)")
    p.add_argument("--sigmas", type=csv_list, default=[f"{s:g}" for s in DEFAULT_SIGMAS],
                   help="comma-separated sigmas in pixels (default: 1 to 150)")
    p.add_argument("--limit", type=whole(1, IMAGES_MAX), default=None, help="only the first N images")
    p.add_argument("--batch-size", type=whole(1, BATCH_MAX), default=16)
    p.add_argument("--out", type=output_file(".json"), required=True, help="JSON file to write")
    p.add_argument("--device", type=device, default=None, help="cpu or cuda (default: cuda when present)")


@command("smoothing-curve", "Extended-CAM section 5 over a dataset: r(Grad-CAM bilinear, Extended-CAM Gaussian) "
         "against sigma, mean and 95% interval", _configure_smoothing_curve)
def run_smoothing_curve(args: argparse.Namespace) -> int:
    import shlex

    from tqdm import tqdm

    from explorer.atomic import write_json_atomically
    from explorer.backbones import load_backbone
    from explorer.datasets import open_dataset
    from explorer.evaluate import check_labels
    from explorer.smoothing import SmoothingError, smoothing_curve

    try:
        sigmas = [float(s) for s in args.sigmas]
    except ValueError as exc:
        raise SmoothingError(f"--sigmas must be numbers in pixels, like 5,10,20 ({exc})") from exc
    backbone = load_backbone(args.backbone, args.weights, device=args.device)
    dataset = open_dataset(args.dataset, args.split, strict=False)
    count = len(dataset) if args.limit is None else min(args.limit, len(dataset))
    same_classes = list(dataset.classes) == list(backbone.class_names)
    if same_classes:
        check_labels(dataset, backbone, count)
    images = [dataset.load_image(i) for i in range(count)]
    targets = [int(dataset[i].label) for i in range(count)] if same_classes else None
    with tqdm(total=count, unit="image", desc="smoothing curve") as bar:
        curve = smoothing_curve(backbone, images, targets, layer=args.layer, sigmas=sigmas, batch_size=args.batch_size,
                                progress=lambda done, _total: bar.update(done - bar.n),
                                image_ids=[dataset[i].image_id for i in range(count)])
    summary = curve.summary()
    summary.update(backbone=backbone.name, weights=backbone.weights_label, layer=backbone.resolve_layer(args.layer),
                   dataset=args.dataset, split=args.split, targets="label" if same_classes else "predicted",
                   paper={"claim": "explicit smoothing at some sigma mimics Grad-CAM's implicit smoothing",
                          "vgg16_sigma_px": 20},
                   command="python -m explorer " + shlex.join(args.argv))
    write_json_atomically(args.out, summary)
    print(f"{count} images: mean r peaks at sigma {summary['best_sigma']:g} px (95 % interval of the peak "
          f"{summary['best_sigma_ci'][0]:g}-{summary['best_sigma_ci'][1]:g}), r {summary['best_mean_r']:.3f}; "
          f"wrote {args.out}")
    return 0


