"""Command line: `python -m explorer <command> ...`; every command has --help.

Errors a user can cause (a bad image, an unknown layer, missing weights) print one plain line
and exit with status 2; they never show a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

from explorer.backbones import BackboneError
from explorer.capture import CaptureError
from explorer.checkpoints import CheckpointError
from explorer.images import ImageError
from explorer.methods import METHODS, MethodError
from explorer.upsample import UPSAMPLERS, UpsampleError

USER_ERRORS = (ImageError, BackboneError, CaptureError, CheckpointError, MethodError, UpsampleError)
from explorer.presets import PAPER_SIGMA

COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def command(name: str, help_text: str, configure: Callable[[argparse.ArgumentParser], None]):
    """Register `python -m explorer <name>`."""
    def register(run: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = (help_text, configure, run)
        return run
    return register


def csv_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_sigma(text: str) -> tuple[float, float]:
    try:
        values = [float(v) for v in csv_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"sigma must be one or two numbers like 31.8,33.4; got '{text}'")
    if len(values) == 1:
        values = values * 2
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"sigma takes one or two numbers (x,y); got '{text}'")
    return values[0], values[1]


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
    p.add_argument("--methods", type=csv_list, default=["gradcam", "extendedcam"],
                   help=f"comma-separated, from: {','.join(METHODS)}")
    p.add_argument("--upsampler", type=csv_list, default=["bilinear", "gaussian"],
                   help=f"comma-separated, from: {','.join(UPSAMPLERS)}")
    p.add_argument("--sigma", type=parse_sigma, default=None,
                   help="Gaussian sigma in pixels, x,y or one value (default: the Extended-CAM paper's 31.78,33.36)")
    p.add_argument("--relu", default="published",
                   help="published (each method's own) | none (signed) | after | before")
    p.add_argument("--normaliser", default="minmax", choices=["none", "minmax", "max"])
    p.add_argument("--target", default=None, help="class index or ImageNet name (default: the top-1 prediction)")
    p.add_argument("--shared-scale", action="store_true", help="one colour range for every cell")
    p.add_argument("--out", type=Path, default=Path("grid.png"), help="PNG to write")
    p.add_argument("--npy", type=Path, default=None, help="also write the raw grid maps as .npy")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda when present)")


@command("cam", "side-by-side CAMs of one image as a labelled PNG, and the top-5 predictions", _configure_cam)
def run_cam(args: argparse.Namespace) -> int:
    from explorer import views
    from explorer.backbones import load_backbone
    from explorer.images import load_image
    from explorer.methods import method_label, validate_methods
    from explorer.pipeline import grid_maps, pixel_map_table

    methods = validate_methods(args.methods)
    for up in args.upsampler:
        if up not in UPSAMPLERS:
            raise UpsampleError(f"Unknown upsampler '{up}'; use one of {', '.join(UPSAMPLERS)}.")
    sigma = args.sigma or PAPER_SIGMA
    image = load_image(args.image)
    backbone = load_backbone(args.backbone, args.weights, device=args.device)
    batch = backbone.preprocess(image)
    top5 = backbone.top_k(batch, 5)[0]
    print(f"{backbone.name} ({backbone.weights_label}) top-5 for {args.image}:")
    for rank, (index, name, prob) in enumerate(top5, 1):
        print(f"  {rank}. {name} (class {index}): {prob:.3f}")
    target = resolve_target(backbone.class_names, args.target, top5[0][0])
    start = time.perf_counter()
    grid = grid_maps(backbone, batch, [target], methods, args.layer, relu=args.relu)
    table = pixel_map_table(grid, backbone.input_size, args.upsampler, sigma, args.normaliser)
    elapsed = time.perf_counter() - start
    col_labels = {u: (f"gaussian sx={sigma[0]:g} sy={sigma[1]:g}" if u == "gaussian" else u) for u in args.upsampler}
    row_labels = {m: method_label(m, grid.relu[m]) for m in methods}
    title = f"{backbone.name} / {grid.layer} / class {target} {backbone.class_names[target]}"
    sheet = views.comparison_sheet(backbone.resize(image), table, row_labels, col_labels,
                                   shared_scale=args.shared_scale, title=title)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(f"wrote {args.out} ({len(methods)} methods x {len(args.upsampler)} upsamplers, {elapsed:.2f} s)")
    if args.npy is not None:
        args.npy.write_bytes(views.npy_bytes({m: grid.maps[m][0].cpu().numpy() for m in methods}))
        print(f"wrote {args.npy} (raw grid maps, rows in the order {','.join(methods)})")
    return 0


# ------------------------------------------------------------------------------------ main

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m explorer",
                                     description="CAM Explorer: how convolutional networks see.")
    sub = parser.add_subparsers(dest="command", metavar="command")
    for name, (help_text, configure, _run) in COMMANDS.items():
        configure(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 0
    try:
        return COMMANDS[args.command][2](args)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
