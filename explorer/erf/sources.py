"""The images an ERF is averaged over: Gaussian noise, crops of the sample gallery or of a folder."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from explorer.backbones import Backbone
from explorer.erf.common import CROP_SCALE, ErfError
from explorer.images import ImageError, gallery_image, gallery_names, load_image


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
