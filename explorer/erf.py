"""Effective receptive field (ERF): estimate it, fit a 2D Gaussian to it, store the fit.

Extended-CAM's Gaussian upsampling (section 3.1, eq. 4) lets every grid cell spray a 2D Gaussian
whose standard deviations (sigma_x, sigma_y) are those of the layer's *effective* receptive field
(Luo et al., 2016, "Understanding the Effective Receptive Field in Deep Convolutional Neural
Networks"). Section 4.1 of Extended-CAM estimates it as the paper does here:

1. ERF map. For the unit at the centre cell (i*, j*) of the target layer's h x w grid, take the
   gradient of its channel sum with respect to the input image x (B x 3 x H x W), transform it
   per element by the mode m, combine the three input channels by summing, and average over
   N images:

       ERF(y, x) = 1/N sum_n sum_c m( d [sum_k A_k,i*,j*(x_n)] / d x_n[c, y, x] )

   with m = |g| ("abs", the default, as Luo et al.), max(g, 0) ("relu"), g^2 ("square") or g
   itself ("signed"). The centre cell of an even grid is (h // 2, w // 2); its centre in input
   pixels follows the project's convention (the same as bilinear interpolation with
   align_corners=False): c_y = (i* + 0.5) * H / h - 0.5, c_x = (j* + 0.5) * W / w - 0.5.

2. Fit. lmfit's Gaussian2dModel (Newville et al., the library the paper used):

       G(x, y) = A / (2 pi sx sy) * exp(-(x - cx)^2 / (2 sx^2) - (y - cy)^2 / (2 sy^2))

   optionally plus a constant offset and/or a rotation of the axes, on input-pixel coordinates
   (x = column index, y = row index), with R^2 = 1 - SS_res / SS_tot over the whole map. The
   paper reports R^2 0.9905, sx 31.78, sy 33.36 for pretrained VGG16 conv5_3 (Table 1). A fit
   that did not converge is never returned: it raises ErfFitError.

3. Card. `save_erf_card` writes the fit as the JSON card `explorer.presets` reads, atomically.

The gradient is taken with `torch.autograd.grad` w.r.t. a fresh input leaf only: no parameter
`.grad` is written, no requires_grad flag or train/eval state is changed, and it works when the
caller sits inside `torch.no_grad()`. The forward stops at the target layer (a private exception
raised by a scoped, thread-owned hook), so the layers above it cost nothing.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from explorer.atomic import write_atomically
from explorer.backbones import Backbone
from explorer.errors import ExplorerError
from explorer.images import ImageError, gallery_image, gallery_names, load_image
from explorer.presets import CardError

MODES = ("abs", "relu", "square", "signed")

#: A fit explaining less of the map than this is no Gaussian at all (pure noise gives ~0.00x).
#: EfficientNet-Lite0's head, a real but poorly Gaussian ERF, measures 0.54 here (256 gallery
#: crops), well above it.
MIN_R2 = 0.1

#: Gallery/folder crops: a square of this fraction of the photo's short side (uniform).
CROP_SCALE = (0.3, 1.0)


class ErfError(ExplorerError):
    """An ERF cannot be estimated as asked; the message says why and what to do."""


class ErfFitError(ErfError):
    """The 2D Gaussian fit did not converge (or found no Gaussian); never returned silently."""


class _StopForward(Exception):
    """Raised by the recording hook once the target layer has run: the rest of the forward is
    not needed for the layer's gradient, so it is skipped."""


# ============================================================================ image sources

@dataclass
class ImageSource:
    """A re-iterable stream of preprocessed batches (tensors B x 3 x H x W) of known size.

    Not to be confused with `explorer.images.ImageSource` (what one image may be read from):
    this one is *many* images, already normalised for a backbone. `name` is what a card records
    ("noise", "gallery", "folder:<dir>"); `skipped` lists files that could not be read (folder
    sources), so a caller can report them. Iterating twice gives the same batches (seeded).
    """

    name: str
    total: int
    batch_size: int
    input_size: tuple[int, int]
    make: Callable[[], Iterator[torch.Tensor]] = field(repr=False)
    skipped: list[str] = field(default_factory=list)
    note: str = ""

    def __iter__(self) -> Iterator[torch.Tensor]:
        return self.make()

    def __len__(self) -> int:
        """Number of batches."""
        return math.ceil(self.total / self.batch_size)


def _check_counts(n: int, batch_size: int) -> None:
    if n < 1:
        raise ErfError(f"The ERF needs at least one image; got {n}.")
    if batch_size < 1:
        raise ErfError(f"The batch size must be at least 1; got {batch_size}.")


def _chunks(n: int, batch_size: int) -> Iterator[int]:
    done = 0
    while done < n:
        size = min(batch_size, n - done)
        yield size
        done += size


def noise_batches(n: int, batch_size: int, input_size: tuple[int, int] | int, seed: int = 0) -> ImageSource:
    """n images of Gaussian noise N(0, 1) *in the normalised input space* (after mean/std), the
    input of the random-VGG16 reference measurement. Batches are on the CPU; `estimate_erf`
    moves them."""
    _check_counts(n, batch_size)
    h, w = (input_size, input_size) if isinstance(input_size, int) else (int(input_size[0]), int(input_size[1]))

    def make() -> Iterator[torch.Tensor]:
        generator = torch.Generator().manual_seed(seed)
        for size in _chunks(n, batch_size):
            yield torch.randn(size, 3, h, w, generator=generator)

    return ImageSource("noise", n, batch_size, (h, w), make)


def random_crop(image: Image.Image, rng: np.random.Generator,
                scale: tuple[float, float] = CROP_SCALE) -> Image.Image:
    """A random square crop of `scale` x the short side, flipped left-right with probability 1/2.

    The backbone's preprocess then resizes it to the input size."""
    width, height = image.size
    side = max(1, int(round(rng.uniform(*scale) * min(width, height))))
    left = int(rng.integers(0, width - side + 1))
    top = int(rng.integers(0, height - side + 1))
    crop = image.crop((left, top, left + side, top + side))
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return crop


def gallery_batches(backbone: Backbone, n: int, batch_size: int, seed: int = 0) -> ImageSource:
    """n random crops of the sample-gallery photos (`explorer.images.gallery_names`): a photo drawn
    uniformly, a square of 0.3-1.0 of its short side, a horizontal flip half the time, resized to
    the input size and normalised by `backbone.preprocess`."""
    _check_counts(n, batch_size)
    photos, skipped = {}, []
    for name in gallery_names():
        try:
            photos[name] = gallery_image(name)
        except ImageError:
            skipped.append(name)  # a package providing that photo is missing: use the others
    if not photos:
        raise ErfError("No sample-gallery photo is available on this computer; use --source noise "
                       "or --source folder:<dir>.")
    names = list(photos)

    def make() -> Iterator[torch.Tensor]:
        rng = np.random.default_rng(seed)
        for size in _chunks(n, batch_size):
            crops = [random_crop(photos[names[int(rng.integers(len(names)))]], rng) for _ in range(size)]
            yield backbone.preprocess(crops)

    note = f"{len(names)} gallery photos ({', '.join(names)})"
    return ImageSource("gallery", n, batch_size, backbone.input_size, make, skipped, note)


def folder_batches(backbone: Backbone, folder: str | os.PathLike[str], n: int, batch_size: int,
                   seed: int = 0) -> ImageSource:
    """n random crops (as `gallery_batches`) of the images in `folder` (not recursive).

    Every file is read with `explorer.images.load_image`; unreadable files are skipped, counted
    and named in `source.skipped`. Files are visited in a seeded random order and reused when
    n exceeds their number (each use is a different crop). Files are checked here, before any
    gradient work, and decoded again while iterating, so memory stays one batch of photos.
    """
    _check_counts(n, batch_size)
    root = Path(folder)
    if not root.is_dir():
        raise ErfError(f"The image folder '{root}' does not exist or is not a folder.")
    files = sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise ErfError(f"The image folder '{root}' is empty: put some photos (PNG, JPEG, ...) in it.")
    order = [files[i] for i in np.random.default_rng(seed).permutation(len(files))]
    readable: list[Path] = []
    skipped: list[str] = []
    for path in order:
        if len(readable) >= n:  # enough distinct photos; the rest need not be decoded
            break
        try:
            load_image(path)
        except ImageError:
            skipped.append(path.name)
            continue
        readable.append(path)
    if not readable:
        raise ErfError(f"None of the {len(files)} file(s) in '{root}' could be read as an image "
                       f"(skipped: {', '.join(skipped[:10])}{', ...' if len(skipped) > 10 else ''}).")

    def make() -> Iterator[torch.Tensor]:
        rng = np.random.default_rng(seed + 1)
        k = 0
        for size in _chunks(n, batch_size):
            crops = []
            for _ in range(size):
                path = readable[k % len(readable)]
                k += 1
                crops.append(random_crop(load_image(path), rng))
            yield backbone.preprocess(crops)

    note = f"{len(readable)} readable image(s) of {len(files)} file(s)"
    if skipped:
        note += f"; skipped {len(skipped)}: {', '.join(skipped)}"
    return ImageSource(f"folder:{root}", n, batch_size, backbone.input_size, make, skipped, note)


SOURCES = ("noise", "gallery", "folder:<dir>")


def image_source(spec: str, backbone: Backbone, n: int, batch_size: int, seed: int = 0) -> ImageSource:
    """The images an ERF is averaged over, named as the CLI and the app name them: "noise",
    "gallery" or "folder:<dir>"."""
    if spec == "noise":
        return noise_batches(n, batch_size, backbone.input_size, seed)
    if spec == "gallery":
        return gallery_batches(backbone, n, batch_size, seed)
    if spec.startswith("folder:"):
        return folder_batches(backbone, spec[len("folder:"):], n, batch_size, seed)
    raise ErfError(f"Unknown image source '{spec}'; use {', '.join(SOURCES)}.")


# ============================================================================ estimation

@dataclass
class ErfEstimate:
    """The ERF map of one layer's centre unit, averaged over `n_images` images.

    map: H x W float64 at input resolution (see the module docstring for the formula).
    centre_cell: (row i*, col j*) of the unit on the layer's grid (h, w) = `grid`.
    centre_px: (x, y) of that cell's centre in input pixels, (j* + 0.5) W / w - 0.5 and
    (i* + 0.5) H / h - 0.5. snapshots: (n, running-mean map) after n = 1, 2, 4, 8, ... images,
    plus the final n, for `convergence`. interrupted: stopped early (should_stop, Ctrl-C).
    """

    map: np.ndarray
    n_images: int
    mode: str
    layer: str
    backbone: str
    weights: str
    input_size: tuple[int, int]
    grid: tuple[int, int]
    centre_cell: tuple[int, int]
    centre_px: tuple[float, float]
    interrupted: bool
    source: str
    n_planned: int | None
    seconds: float
    snapshots: list[tuple[int, np.ndarray]] = field(default_factory=list, repr=False)


def centre_cell(grid: tuple[int, int], input_size: tuple[int, int]) -> tuple[tuple[int, int], tuple[float, float]]:
    """((i*, j*), (c_x, c_y)): the centre cell (h // 2, w // 2) of an h x w grid (for an even
    side, the cell just below/right of the middle) and its centre in input pixels."""
    (h, w), (H, W) = grid, input_size
    i, j = h // 2, w // 2
    return (i, j), ((j + 0.5) * W / w - 0.5, (i + 0.5) * H / h - 0.5)


def _transform(grad: torch.Tensor, mode: str) -> torch.Tensor:
    if mode == "abs":
        return grad.abs()
    if mode == "relu":
        return grad.clamp_min(0)
    if mode == "square":
        return grad.square()
    return grad


def _layer_output(backbone: Backbone, module: nn.Module, inputs: torch.Tensor, layer: str) -> torch.Tensor:
    """Run the model on `inputs` just far enough to get `module`'s output (with its graph).

    The hook is this thread's only (other threads' forwards through a shared model pass
    untouched) and is removed in every case, including errors and Ctrl-C.
    """
    owner = threading.get_ident()
    recorded: list[Any] = []

    def hook(_module, _inputs, output):
        if threading.get_ident() != owner:
            return None
        recorded.append(output)
        raise _StopForward

    handle = module.register_forward_hook(hook)
    try:
        backbone.model(inputs)
    except _StopForward:
        pass
    finally:
        handle.remove()
    if not recorded:
        raise ErfError(f"Layer '{layer}' did not run in the forward pass of {backbone.name}; choose another layer.")
    out = recorded[0]
    if not isinstance(out, torch.Tensor) or out.dim() != 4:
        raise ErfError(f"Layer '{layer}' does not output one B x C x h x w tensor; choose another layer.")
    return out


def estimate_erf(
    backbone: Backbone,
    layer: str | None,
    images: ImageSource | torch.Tensor | Iterable[torch.Tensor],
    mode: str = "abs",
    batch_size: int = 8,
    progress: Callable[[int, int | None, np.ndarray], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    interruptible: bool = False,
) -> ErfEstimate:
    """The ERF map of `layer`'s centre unit, averaged over `images` (Luo et al. 2016; Extended-CAM
    section 4.1).

    Per image n, per pixel: the three input channels are combined by summing the mode-transformed
    gradient over them, sum_c m(g_n[c, y, x]), with g_n = d(sum_k A_k,i*,j*) / d x_n (see the
    module docstring; "abs" is |g| summed over RGB, not |sum over RGB|). The map is the mean of
    that over images, accumulated as a float64 running sum and count.

    images: an `ImageSource`, one tensor N x 3 x H x W, or any iterable of such batches; a batch
    larger than `batch_size` is processed in chunks of `batch_size` (bounded memory). Batches are
    moved to the model's device. The model should be in eval mode (batch-norm in train mode would
    mix the images of a batch); this function leaves its state as it is.
    progress(done, total, running_mean_map) is called after each chunk (total None when unknown).
    should_stop() is checked between chunks: True ends the estimate early with what was
    accumulated, marked `interrupted`. interruptible=True makes Ctrl-C (KeyboardInterrupt) do the
    same: the chunk in flight is dropped (re-raised when nothing was accumulated yet).
    """
    if mode not in MODES:
        raise ErfError(f"Unknown ERF mode '{mode}'; use one of {', '.join(MODES)}.")
    if batch_size < 1:
        raise ErfError(f"The batch size must be at least 1; got {batch_size}.")
    layer = backbone.resolve_layer(layer)
    module = backbone.module(layer)
    device = backbone.device
    if isinstance(images, ImageSource):
        total, source = images.total, images.name
    elif isinstance(images, torch.Tensor):
        total, source, images = int(images.shape[0]), "tensor", [images]
    else:
        # A list of batches has a known image count; a generator does not.
        total = (sum(int(b.shape[0]) for b in images if isinstance(b, torch.Tensor))
                 if isinstance(images, (list, tuple)) else None)
        source = "batches"

    start = time.perf_counter()
    acc: np.ndarray | None = None
    done = 0
    interrupted = False
    grid = centre = centre_px = None
    input_size: tuple[int, int] | None = None
    snapshots: list[tuple[int, np.ndarray]] = []
    next_snapshot = 1

    def chunks() -> Iterator[torch.Tensor]:
        for batch in images:
            if not isinstance(batch, torch.Tensor) or batch.dim() != 4 or batch.shape[1] != 3:
                raise ErfError("ERF images must be batches of shape B x 3 x H x W.")
            yield from batch.split(batch_size)

    iterator = chunks()
    try:
        while True:
            if done and should_stop is not None and (total is None or done < total) and should_stop():
                interrupted = True
                break
            try:
                chunk = next(iterator)
            except StopIteration:
                break
            size = tuple(chunk.shape[-2:])
            if input_size is None:
                input_size = size
            elif size != input_size:
                raise ErfError(f"All ERF images must have one size; got {size} after {input_size}.")
            with torch.enable_grad():
                inputs = chunk.detach().to(device=device, dtype=torch.float32)
                if device.type == "cpu":
                    # oneDNN's CPU convolutions run faster on NHWC input (~17 % on VGG16 here, no
                    # slower on Lite0); only the input's layout changes, the model is left as it is.
                    inputs = inputs.contiguous(memory_format=torch.channels_last)
                inputs.requires_grad_(True)
                out = _layer_output(backbone, module, inputs, layer)
                if grid is None:
                    grid = (int(out.shape[-2]), int(out.shape[-1]))
                    if grid == (1, 1):
                        raise ErfError(
                            f"Layer '{layer}' outputs a 1x1 map at {input_size[0]}x{input_size[1]}: it has no "
                            f"spatial grid, so there is no centre cell to take the ERF of and nothing for "
                            f"Gaussian upsampling to spray. Choose an earlier layer.")
                    centre, centre_px = centre_cell(grid, input_size)
                if not out.requires_grad:
                    raise ErfError(f"Layer '{layer}' is not differentiable with respect to the input.")
                # Summing over the batch gives each image its own input gradient in one backward:
                # images of an eval-mode batch do not interact.
                target = out[:, :, centre[0], centre[1]].sum()
                (grad,) = torch.autograd.grad(target, inputs)
            per_image = _transform(grad.detach(), mode).sum(dim=1).double().cpu().numpy()  # B x H x W
            # Running sums after each image of the chunk, so snapshots land exactly at 1, 2, 4, ...
            running = np.cumsum(per_image, axis=0)
            if acc is not None:
                running += acc
            n_chunk = per_image.shape[0]
            new_snapshots = []
            while next_snapshot <= done + n_chunk:
                new_snapshots.append((next_snapshot, running[next_snapshot - done - 1] / next_snapshot))
                next_snapshot *= 2
            # Commit the chunk in one step, so a Ctrl-C never leaves sum, count and snapshots apart.
            snapshots, acc, done = snapshots + new_snapshots, running[-1].copy(), done + n_chunk
            if progress is not None:
                progress(done, total, acc / done)
    except KeyboardInterrupt:
        if not interruptible or done == 0:
            raise
        interrupted = True
    if done == 0 or acc is None:
        raise ErfError("No image was given to the ERF estimate.")
    final = acc / done
    if not snapshots or snapshots[-1][0] != done:
        snapshots.append((done, final.copy()))
    return ErfEstimate(
        map=final, n_images=done, mode=mode, layer=layer, backbone=backbone.name, weights=backbone.weights,
        input_size=input_size, grid=grid, centre_cell=centre, centre_px=centre_px,
        interrupted=interrupted, source=source, n_planned=total,
        seconds=time.perf_counter() - start, snapshots=snapshots,
    )


def merge_estimate(total: np.ndarray | None, done: int, snapshots: list[tuple[int, np.ndarray]],
                   part: ErfEstimate) -> tuple[np.ndarray, int, list[tuple[int, np.ndarray]]]:
    """Running totals after one more batch: (sum, count, snapshots) with sum += part.map * k and
    the running mean at every power of two the batch crosses (exact: `part.snapshots` hold the
    batch's own running means after 1, 2, 4, ... images, and the batch size is a power of two
    wherever snapshots are read)."""
    k = part.n_images
    base = 0.0 if total is None else total
    new = [(done + j, (base + mean * j) / (done + j)) for j, mean in part.snapshots
           if (done + j) & (done + j - 1) == 0]
    return base + part.map * k, done + k, snapshots + new


def estimate_erf_resumable(backbone: Backbone, layer: str | None, source: ImageSource, state_path: str | os.PathLike[str],
                           *, mode: str = "abs", key: str = "",
                           progress: Callable[[int, int | None, np.ndarray], None] | None = None) -> ErfEstimate:
    """`estimate_erf` over `source`, batch by batch, with the running sum written atomically to
    `state_path` after every batch. Started again with the same `key` (the settings), it skips the
    batches already summed: a killed run resumes and ends with exactly the map of an uninterrupted
    one (the same float64 sums in the same order). A state of other settings is an error; the
    caller deletes the state once the result is safe. Ctrl-C keeps the state and returns what was
    accumulated, marked interrupted."""
    import itertools

    state_path = Path(state_path)
    layer = backbone.resolve_layer(layer)
    total, done, snapshots, seconds, meta = None, 0, [], 0.0, None
    if state_path.is_file():
        try:
            with np.load(state_path, allow_pickle=False) as saved:
                if str(saved["key"]) != key:
                    raise ErfError(f"{state_path} holds a partial ERF estimate with other settings; delete it or "
                                   f"give the same settings to resume")
                total, done, seconds = saved["sum"].copy(), int(saved["done"]), float(saved["seconds"])
                snapshots = [(int(n), m.copy()) for n, m in zip(saved["snapshot_n"], saved["snapshot_maps"])]
                meta = json.loads(str(saved["meta"]))
        except (OSError, ValueError, KeyError) as exc:
            raise ErfError(f"{state_path}: the partial ERF estimate cannot be read ({exc}); delete it to start over") from exc
    interrupted = False
    start = time.perf_counter()
    try:
        for batch in itertools.islice(iter(source), done // source.batch_size, None):
            part = estimate_erf(backbone, layer, batch, mode=mode, batch_size=source.batch_size)
            total, done, snapshots = merge_estimate(total, done, snapshots, part)
            if meta is None:
                meta = {"input_size": list(part.input_size), "grid": list(part.grid),
                        "centre_cell": list(part.centre_cell), "centre_px": list(part.centre_px)}
            buffer = io.BytesIO()
            np.savez(buffer, key=np.array(key), sum=total, done=np.array(done),
                     seconds=np.array(seconds + time.perf_counter() - start),
                     snapshot_n=np.array([n for n, _ in snapshots]),
                     snapshot_maps=np.stack([m for _, m in snapshots]), meta=np.array(json.dumps(meta)))
            write_atomically(state_path, buffer.getvalue())
            if progress is not None:
                progress(done, source.total, total / done)
    except KeyboardInterrupt:
        if done == 0:
            raise
        interrupted = True
    if done == 0 or total is None or meta is None:
        raise ErfError("No image was given to the ERF estimate.")
    final = total / done
    if not snapshots or snapshots[-1][0] != done:
        snapshots = snapshots + [(done, final.copy())]
    return ErfEstimate(
        map=final, n_images=done, mode=mode, layer=layer, backbone=backbone.name, weights=backbone.weights,
        input_size=tuple(meta["input_size"]), grid=tuple(meta["grid"]), centre_cell=tuple(meta["centre_cell"]),
        centre_px=tuple(meta["centre_px"]), interrupted=interrupted or done < source.total, source=source.name,
        n_planned=source.total, seconds=seconds + time.perf_counter() - start, snapshots=snapshots)


# ============================================================================ fitting

PARAMS = ("amplitude", "centre_x", "centre_y", "sigma_x", "sigma_y", "offset", "rotation")
_LMFIT_NAMES = {"amplitude": "amplitude", "centre_x": "centerx", "centre_y": "centery",
                "sigma_x": "sigmax", "sigma_y": "sigmay", "offset": "c", "rotation": "rotation"}


@dataclass
class ErfFit:
    """A converged 2D Gaussian fit of an ERF map, in input pixels (x = column, y = row).

    amplitude is lmfit's: the Gaussian's volume; `height` = amplitude / (2 pi sx sy) is its peak.
    With rotation, sigma_x/sigma_y are along the Gaussian's own axes, turned by `rotation`
    radians in [-pi/4, pi/4] (so sigma_x stays the axis nearest the horizontal).
    stderr: lmfit's standard error per parameter, None where lmfit could not estimate it
    (`stderr_note` then says so). They are *formal* errors assuming independent pixel residuals;
    neighbouring ERF pixels are strongly correlated, so they understate the real uncertainty:
    the spread across image counts (`convergence`) is the honest one.
    """

    sigma_x: float
    sigma_y: float
    centre_x: float
    centre_y: float
    amplitude: float
    offset: float | None
    rotation: float | None
    stderr: dict[str, float | None]
    r2: float
    surface: np.ndarray = field(repr=False)
    residual: np.ndarray = field(repr=False)
    success: bool
    message: str
    nfev: int
    options: dict[str, bool]
    seconds: float
    stderr_note: str = ""

    @property
    def height(self) -> float:
        return self.amplitude / (2 * math.pi * self.sigma_x * self.sigma_y)


def rotated_gaussian2d(x, y, amplitude=1.0, centerx=0.0, centery=0.0, sigmax=1.0, sigmay=1.0, rotation=0.0):
    """lmfit's gaussian2d with its axes turned by `rotation` radians (counter-clockwise in x, y):

        u = cos t (x - cx) + sin t (y - cy),  v = -sin t (x - cx) + cos t (y - cy)
        G = A / (2 pi sx sy) exp(-u^2 / (2 sx^2) - v^2 / (2 sy^2))

    lmfit 1.3.4's Gaussian2dModel has no rotation, hence this model."""
    dx, dy = x - centerx, y - centery
    c, s = np.cos(rotation), np.sin(rotation)
    u, v = c * dx + s * dy, -s * dx + c * dy
    sx, sy = max(sigmax, 1e-12), max(sigmay, 1e-12)
    return amplitude / (2 * np.pi * sx * sy) * np.exp(-(u * u) / (2 * sx * sx) - (v * v) / (2 * sy * sy))


def _moments(data: np.ndarray, x: np.ndarray, y: np.ndarray, base: float) -> dict[str, float]:
    """Initial guesses from the map's first and second moments, above `base`."""
    weight = np.clip(data - base, 0.0, None)
    mass = float(weight.sum())
    if not (mass > 0 and math.isfinite(mass)):
        raise ErfFitError("Cannot fit a 2D Gaussian: the map has no positive peak (all values at or below "
                          "its baseline).")
    cx, cy = float((weight * x).sum() / mass), float((weight * y).sum() / mass)
    vxx = float((weight * (x - cx) ** 2).sum() / mass)
    vyy = float((weight * (y - cy) ** 2).sum() / mass)
    vxy = float((weight * (x - cx) * (y - cy)).sum() / mass)
    return {"mass": mass, "cx": cx, "cy": cy, "vxx": max(vxx, 0.25), "vyy": max(vyy, 0.25), "vxy": vxy}


def fit_erf(erf_map: np.ndarray, offset: bool = False, rotation: bool = False,
            min_r2: float = MIN_R2) -> ErfFit:
    """Fit a 2D Gaussian (lmfit.models.Gaussian2dModel; a rotated variant when `rotation`; plus
    lmfit.models.ConstantModel when `offset`) to an H x W map by least squares on every pixel.

    Coordinates are input pixels: x = column index, y = row index. Initial values come from the
    map's moments (above the median of its border when an offset is fitted). R^2 = 1 -
    SS_res / SS_tot over the map. Negative pixels (the "microscopic holes" of the signed mode,
    Extended-CAM 4.1) are fitted as they are.

    Raises ErfFitError, never returns silently, when the map is not finite or flat, when lmfit
    reports no success, when a value is not finite, when the peak is not positive or lies outside
    the map, or when R^2 < min_r2 (no Gaussian found, e.g. pure noise).
    """
    import lmfit
    from lmfit.models import ConstantModel, Gaussian2dModel

    data = np.asarray(erf_map, dtype=np.float64)
    if data.ndim != 2 or min(data.shape) < 2:
        raise ErfFitError(f"Cannot fit a 2D Gaussian to a map of shape {data.shape}; it needs an H x W map.")
    if not np.isfinite(data).all():
        raise ErfFitError("Cannot fit a 2D Gaussian: the map holds NaN or infinite values.")
    H, W = data.shape
    ss_tot = float(((data - data.mean()) ** 2).sum())
    if not ss_tot > 0:
        raise ErfFitError("Cannot fit a 2D Gaussian: the map is constant (for example all zero), "
                          "so there is no peak to fit.")
    start = time.perf_counter()
    # Fit in units where the map's largest |value| is 1: ERF gradients can be ~1e-6, and
    # leastsq's finite-difference steps and tolerances behave best near unit scale.
    scale = float(np.abs(data).max())
    z = (data / scale).ravel()
    yy, xx = np.mgrid[0:H, 0:W]
    x, y = xx.ravel().astype(np.float64), yy.ravel().astype(np.float64)

    border = np.concatenate([data[0], data[-1], data[1:-1, 0], data[1:-1, -1]]) / scale
    base = float(np.median(border)) if offset else 0.0
    m = _moments(z, x, y, base)

    if rotation:
        model = lmfit.Model(rotated_gaussian2d, independent_vars=["x", "y"])
        theta = 0.5 * math.atan2(2 * m["vxy"], m["vxx"] - m["vyy"])
        eig = np.linalg.eigvalsh(np.array([[m["vxx"], m["vxy"]], [m["vxy"], m["vyy"]]]))
        cos, sin = math.cos(theta), math.sin(theta)
        var_u = m["vxx"] * cos ** 2 + 2 * m["vxy"] * sin * cos + m["vyy"] * sin ** 2
        var_v = max(float(eig.sum()) - var_u, 0.25)
        guess = {"sigmax": math.sqrt(max(var_u, 0.25)), "sigmay": math.sqrt(var_v), "rotation": theta}
    else:
        model = Gaussian2dModel()
        guess = {"sigmax": math.sqrt(m["vxx"]), "sigmay": math.sqrt(m["vyy"])}
    params = model.make_params(amplitude=m["mass"], centerx=m["cx"], centery=m["cy"], **guess)
    params["sigmax"].set(min=0.0)
    params["sigmay"].set(min=0.0)
    if offset:
        constant = ConstantModel()
        params.update(constant.make_params(c=base))
        model = model + constant

    try:
        result = model.fit(z, params, x=x, y=y)
    except (ValueError, TypeError, np.linalg.LinAlgError) as exc:
        raise ErfFitError(f"The 2D Gaussian fit did not converge: lmfit stopped with {exc}.") from exc
    message = str(result.message)
    if not result.success:
        raise ErfFitError(f"The 2D Gaussian fit did not converge: {message} (after {result.nfev} evaluations).")

    values: dict[str, float] = {}
    stderr: dict[str, float | None] = {}
    for name in PARAMS:
        if name == "offset" and not offset or name == "rotation" and not rotation:
            continue
        par = result.params[_LMFIT_NAMES[name]]
        unit = scale if name in ("amplitude", "offset") else 1.0
        values[name] = float(par.value) * unit
        err = par.stderr
        stderr[name] = float(err) * unit if err is not None and math.isfinite(err) else None
    if not all(math.isfinite(v) for v in values.values()):
        raise ErfFitError(f"The 2D Gaussian fit did not converge: it ended on non-finite values {values}.")
    if rotation:  # canonical form: rotation in [-pi/4, pi/4], sigma_x the axis nearest horizontal
        t = (values["rotation"] + math.pi / 2) % math.pi - math.pi / 2
        if abs(t) > math.pi / 4:
            t -= math.copysign(math.pi / 2, t)
            values["sigma_x"], values["sigma_y"] = values["sigma_y"], values["sigma_x"]
            stderr["sigma_x"], stderr["sigma_y"] = stderr["sigma_y"], stderr["sigma_x"]
        values["rotation"] = t
    values["sigma_x"], values["sigma_y"] = abs(values["sigma_x"]), abs(values["sigma_y"])

    surface = result.eval(x=x, y=y).reshape(H, W) * scale
    residual = data - surface
    r2 = 1.0 - float((residual ** 2).sum()) / ss_tot
    if values["amplitude"] <= 0:
        raise ErfFitError("The 2D Gaussian fit did not converge to a peak: it found a dip (negative amplitude).")
    if not (-0.5 <= values["centre_x"] <= W - 0.5 and -0.5 <= values["centre_y"] <= H - 0.5):
        raise ErfFitError(f"The 2D Gaussian fit did not converge inside the map: its centre "
                          f"({values['centre_x']:.1f}, {values['centre_y']:.1f}) lies outside {W} x {H}.")
    if min(values["sigma_x"], values["sigma_y"]) < 0.1 or max(values["sigma_x"], values["sigma_y"]) > 20 * max(H, W):
        raise ErfFitError(f"The 2D Gaussian fit did not converge to a sensible width: sigma "
                          f"({values['sigma_x']:.3g}, {values['sigma_y']:.3g}) px on a {W} x {H} map.")
    if not r2 >= min_r2:
        raise ErfFitError(f"The 2D Gaussian fit found no Gaussian in this map: R² = {r2:.3f} < {min_r2} "
                          f"(the map looks like noise; average more images).")
    missing = [k for k, v in stderr.items() if v is None]
    note = ""
    if missing:
        note = (f"lmfit could not estimate the standard error of {', '.join(missing)} "
                f"(singular or unavailable covariance)")
    return ErfFit(
        sigma_x=values["sigma_x"], sigma_y=values["sigma_y"], centre_x=values["centre_x"],
        centre_y=values["centre_y"], amplitude=values["amplitude"], offset=values.get("offset"),
        rotation=values.get("rotation"), stderr=stderr, r2=r2, surface=surface, residual=residual,
        success=bool(result.success), message=message, nfev=int(result.nfev),
        options={"offset": offset, "rotation": rotation}, seconds=time.perf_counter() - start,
        stderr_note=note,
    )


def convergence(estimate: ErfEstimate, offset: bool = False, rotation: bool = False) -> list[dict[str, Any]]:
    """Fit each snapshot (1, 2, 4, ... images): how R² and the sigmas settle as more images are
    averaged. A snapshot whose fit fails gets None values and its `error` message (small n is
    often too noisy to fit); it is reported, not hidden."""
    rows: list[dict[str, Any]] = []
    for n, snapshot in estimate.snapshots:
        row: dict[str, Any] = {"n": n, "r2": None, "sigma_x": None, "sigma_y": None,
                               "sigma_x_stderr": None, "sigma_y_stderr": None, "error": None}
        try:
            fit = fit_erf(snapshot, offset=offset, rotation=rotation)
        except ErfFitError as exc:
            row["error"] = str(exc)
        else:
            row.update(r2=fit.r2, sigma_x=fit.sigma_x, sigma_y=fit.sigma_y,
                       sigma_x_stderr=fit.stderr.get("sigma_x"), sigma_y_stderr=fit.stderr.get("sigma_y"))
        rows.append(row)
    return rows


# ============================================================================ cards

_REQUIRED = {"backbone": str, "layer": str, "weights": str, "mode": str, "n_images": int,
             "sigma_x": float, "sigma_y": float, "r2": float, "command": str}


def erf_card(estimate: ErfEstimate, fit: ErfFit, command: str) -> dict[str, Any]:
    """The JSON card of a fit (the format `explorer.presets` reads)."""
    import lmfit

    card: dict[str, Any] = {
        "backbone": estimate.backbone, "layer": estimate.layer, "weights": estimate.weights,
        "mode": estimate.mode, "source": estimate.source, "n_images": estimate.n_images,
        "n_planned": estimate.n_planned, "interrupted": estimate.interrupted,
        "input_size": list(estimate.input_size), "grid": list(estimate.grid),
        "centre_cell": {"row": estimate.centre_cell[0], "col": estimate.centre_cell[1],
                        "x_px": estimate.centre_px[0], "y_px": estimate.centre_px[1]},
    }
    for name in PARAMS:
        value = getattr(fit, name)
        if value is None:
            continue
        card[name] = value
        card[f"{name}_stderr"] = fit.stderr.get(name)
    card.update({
        "height": fit.height, "r2": fit.r2, "fit_options": dict(fit.options), "fit_nfev": fit.nfev,
        "fit_message": fit.message, "stderr_note": fit.stderr_note, "command": command,
        "seconds": round(estimate.seconds, 2), "fit_seconds": round(fit.seconds, 2),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__, "lmfit": lmfit.__version__,
    })
    return card


def save_erf_card(estimate: ErfEstimate, fit: ErfFit, path: str | os.PathLike[str], command: str) -> dict[str, Any]:
    """Write the card as JSON atomically (a temporary file in the same folder, then os.replace),
    so a reader never sees half a card. Returns the card."""
    card = erf_card(estimate, fit, command)
    write_atomically(Path(path), (json.dumps(card, indent=2) + "\n").encode("utf-8"))
    return card


def load_erf_card(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a card; CardError (from explorer.presets) when it is damaged."""
    path = Path(path)
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CardError(f"The ERF card {path} cannot be read ({exc.__class__.__name__}: {exc}); "
                        f"re-create it with the command recorded in it or delete it.") from exc
    if not isinstance(card, dict):
        raise CardError(f"The ERF card {path} is not a JSON object.")
    missing = [key for key in _REQUIRED if key not in card]
    if missing:
        raise CardError(f"The ERF card {path} is damaged: missing {', '.join(missing)}.")
    for key, kind in _REQUIRED.items():
        value = card[key]
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float else isinstance(value, kind)
        if not ok:
            raise CardError(f"The ERF card {path} is damaged: '{key}' should be {kind.__name__}, got {value!r}.")
    sx, sy, r2 = float(card["sigma_x"]), float(card["sigma_y"]), float(card["r2"])
    if not all(math.isfinite(v) for v in (sx, sy, r2)) or sx <= 0 or sy <= 0 or r2 > 1:
        raise CardError(f"The ERF card {path} holds impossible values (sigma {sx}, {sy}, R² {r2}).")
    if card["mode"] not in MODES or card["n_images"] < 1:
        raise CardError(f"The ERF card {path} holds an unknown mode or image count.")
    return card


# ============================================================================ figure

def _figure_palette() -> list[int]:
    """256 fixed colours for the figure: 120 of magma, 112 of RdBu_r, 16 greys (text, axes) and
    the overlays' cyan. Mapping the rendered figure onto them keeps a noisy map's PNG ~3x smaller
    than 24-bit (a shipped figure stays < 200 KB) while the colour bars stay smooth; an adaptive
    256-colour palette gave the bars visible bands."""
    from matplotlib import colormaps

    colours = [colormaps["magma"](t)[:3] for t in np.linspace(0.0, 1.0, 120)]
    colours += [colormaps["RdBu_r"](t)[:3] for t in np.linspace(0.0, 1.0, 112)]
    colours += [(g, g, g) for g in np.linspace(0.0, 1.0, 16)]
    colours += [(0.0, 1.0, 1.0), (0.5, 1.0, 1.0), (0.75, 1.0, 1.0), (0.25, 0.6, 0.6)]
    colours += [(1.0, 1.0, 1.0)] * (256 - len(colours))
    return [int(round(255 * c)) for rgb in colours for c in rgb]


def erf_figure_png(estimate: ErfEstimate, fit: ErfFit, path: str | os.PathLike[str], dpi: int = 72) -> None:
    """map | fitted surface | residual, side by side with colour bars; titles carry sigma ±
    stderr and R²; the map shows the fitted 1- and 2-sigma ellipses and the centre cell's centre
    (+). Drawn on a bare matplotlib Figure (Agg canvas, no pyplot: no global backend switch, safe
    from any thread), written atomically like the card."""
    import io

    from matplotlib.figure import Figure
    from matplotlib.patches import Ellipse

    def pm(name: str) -> str:
        err = fit.stderr.get(name)
        return f"{getattr(fit, name):.2f} ± {err:.2f}" if err is not None else f"{getattr(fit, name):.2f} ± n/a"

    fig = Figure(figsize=(13.5, 4.6), layout="constrained")
    axes = fig.subplots(1, 3)
    H, W = estimate.map.shape
    vmin = min(float(estimate.map.min()), float(fit.surface.min()))
    vmax = max(float(estimate.map.max()), float(fit.surface.max()))
    im0 = axes[0].imshow(estimate.map, cmap="magma", vmin=vmin, vmax=vmax)
    axes[0].set_title(f"ERF ({estimate.mode} gradient), {estimate.n_images} images")
    angle = math.degrees(fit.rotation or 0.0)
    for k in (1, 2):
        axes[0].add_patch(Ellipse((fit.centre_x, fit.centre_y), 2 * k * fit.sigma_x, 2 * k * fit.sigma_y,
                                  angle=angle, fill=False, color="cyan", lw=0.8, ls="-" if k == 1 else "--"))
    axes[0].plot(*estimate.centre_px, "+", color="cyan", ms=8)
    im1 = axes[1].imshow(fit.surface, cmap="magma", vmin=vmin, vmax=vmax)
    axes[1].set_title(f"fit: σx {pm('sigma_x')}, σy {pm('sigma_y')} px\nR² {fit.r2:.4f}")
    limit = float(np.abs(fit.residual).max()) or 1.0
    im2 = axes[2].imshow(fit.residual, cmap="RdBu_r", vmin=-limit, vmax=limit)
    axes[2].set_title("residual (map − fit)")
    for ax, im in zip(axes, (im0, im1, im2)):
        fig.colorbar(im, ax=ax, shrink=0.85)
        ax.set_xlim(-0.5, W - 0.5)  # ellipses wider than the map must not widen the axes
        ax.set_ylim(H - 0.5, -0.5)
        ax.set_xlabel("x (px)")
        ax.set_ylabel("y (px)")
    opts = "+".join(k for k, v in fit.options.items() if v) or "plain"
    status = " — INTERRUPTED" if estimate.interrupted else ""
    fig.suptitle(f"{estimate.backbone} / {estimate.layer} ({estimate.weights} weights), source {estimate.source}, "
                 f"centre cell {estimate.centre_cell} of {estimate.grid[0]}x{estimate.grid[1]}, fit {opts}{status}",
                 fontsize=10)
    rendered = io.BytesIO()
    fig.savefig(rendered, format="png", dpi=dpi)
    rendered.seek(0)
    palette = Image.new("P", (1, 1))
    palette.putpalette(_figure_palette())
    with Image.open(rendered) as image:
        small = image.convert("RGB").quantize(palette=palette, dither=Image.Dither.NONE)
    out = io.BytesIO()
    small.save(out, format="PNG", optimize=True)
    write_atomically(Path(path), out.getvalue())
