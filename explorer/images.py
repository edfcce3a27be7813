"""Safe image decoding and the built-in sample gallery.

Everything the user hands to CAM Explorer goes through :func:`load_image`. Its
job is to turn *anything* (a good photo, a 16-bit scan, a renamed zip file, half
a download, a 400-megapixel "decompression bomb") into either a plain 8-bit RGB
image or an :class:`ImageError` whose message a non-programmer can act on. The
rest of the engine can then assume a small, fully loaded ``"RGB"`` image and
never has to think about file formats, alpha channels or EXIF rotation.

The gallery offers a few real photographs that ship inside already-installed
packages (scikit-image, scikit-learn, matplotlib), so the tool works offline and
without any uploaded file.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import re
import stat
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import IO, TypeAlias

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from explorer.errors import ExplorerError
from explorer.safe_files import file_problem

__all__ = [
    "GALLERY",
    "MIN_SIDE",
    "ImageError",
    "ImageSource",
    "gallery_image",
    "gallery_names",
    "image_digest",
    "load_image",
]

ImageSource: TypeAlias = str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes]

#: Smallest accepted width or height, in pixels. Below this a CNN sees little
#: more than a single blurred patch, and a class-activation map over it would
#: be meaningless, so such images are refused rather than silently upscaled.
MIN_SIDE = 8

#: Largest image file read, in bytes (a 50-megapixel photo is about 20 MB as JPEG, 150 MB as PNG).
MAX_FILE_BYTES = 200 * 1024 * 1024

#: Prefix that makes :func:`load_image` return a gallery photo instead of a file.
GALLERY_PREFIX = "gallery:"

_SUPPORTED_TEXT = "PNG, JPEG, WebP, BMP, GIF or TIFF"
_CHOOSE_ANOTHER = f"Please choose a {_SUPPORTED_TEXT} image."

# Pillow can identify ~40 formats, several of which (TGA, SPIDER, MPEG, ...)
# have no reliable signature and will happily "decode" random bytes into noise.
# Only the everyday photo formats are attempted. MPO is how Pillow reports the
# multi-picture JPEGs that many phone cameras write.
_ACCEPTED_FORMATS = ("PNG", "JPEG", "MPO", "WEBP", "BMP", "GIF", "TIFF")

# Leading bytes of the accepted formats. A file that starts like one of them but
# that Pillow cannot identify is a damaged image, not "some other kind of file".
_SIGNATURES = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",  # JPEG / MPO
    b"GIF87a",
    b"GIF89a",
    b"II*\x00",  # TIFF, little-endian
    b"MM\x00*",  # TIFF, big-endian
    b"BM",
)

_HIGH_BIT_DEPTH_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_NUMERIC_MODES = frozenset({"I", "F"})

GALLERY: dict[str, str] = {
    "chelsea": "Chelsea the cat: a close-up of a tabby cat's face",
    "coffee": "A cup of espresso on a red saucer, seen from above",
    "astronaut": "Astronaut Eileen Collins in an orange flight suit",
    "rocket": "A Falcon 9 rocket on its launch pad at night",
    "grace_hopper": "Rear Admiral Grace Hopper in navy uniform, in front of a US flag",
    "china": "A Chinese pagoda at the Summer Palace, Beijing, above trees and a lake",
    "flower": "An orange dahlia flower against a blurred green background",
}


class ImageError(ExplorerError):
    """An image could not be used; ``str(error)`` is a message meant for end users.

    It says what is wrong and what to do about it, without jargon, so the app
    can show it as-is. The underlying Python/Pillow exception, when there is
    one, is kept as ``__cause__`` for logs and debugging.
    """


def load_image(
    source: ImageSource,
    *,
    max_pixels: int = 50_000_000,
    max_bytes: int = MAX_FILE_BYTES,
) -> Image.Image:
    """Decode ``source`` into a fully loaded 8-bit ``"RGB"`` image, or raise :class:`ImageError`.

    ``source`` may be a path (``str`` or ``os.PathLike``), raw bytes
    (``bytes``/``bytearray``/``memoryview``), a binary file object (read from
    its current position), or ``"gallery:<name>"`` for a sample photo.

    The whole file is read into memory first (at most ``max_bytes``), so the
    result never depends on an open file handle. Decoding is then guarded:

    * only PNG, JPEG, WebP, BMP, GIF and TIFF are attempted;
    * images with more than ``max_pixels`` pixels are refused from their header,
      before any pixel is decoded, and Pillow's own decompression-bomb warning
      is escalated to an error for this call only;
    * images with a side shorter than :data:`MIN_SIDE` (8) pixels are refused as
      too small to explain;
    * truncated files are errors, never a silently half-grey picture
      (``ImageFile.LOAD_TRUNCATED_IMAGES`` is left at its default, ``False``);
    * every other failure inside Pillow becomes an :class:`ImageError` too.

    The result is normalised for display and for the model: the EXIF
    orientation is applied (so phone photos are upright), animations give their
    first frame, transparency is composited onto white, and 16-bit, 32-bit
    integer and floating-point images are rescaled to 0..255 (non-finite
    values count as 0).
    """
    if isinstance(source, str) and source.startswith(GALLERY_PREFIX):
        return gallery_image(source[len(GALLERY_PREFIX) :].strip())
    data = _read_source(source, max_bytes)
    return _decode(data, max_pixels=max_pixels)


def gallery_names() -> list[str]:
    """The names accepted by :func:`gallery_image`, in display order."""
    return list(GALLERY)


def gallery_image(name: str) -> Image.Image:
    """Return the sample photo ``name`` (a key of :data:`GALLERY`) as an RGB image.

    Photos are decoded once and cached; every call returns a fresh copy so that
    a caller drawing on its image cannot alter what the next caller gets.
    """
    if name not in GALLERY:
        raise ImageError(
            f'There is no sample image called "{name}". '
            f"Available samples: {', '.join(GALLERY)}."
        )
    return _cached_gallery_image(name).copy()


def image_digest(source: bytes | bytearray | memoryview | Image.Image) -> str:
    """A SHA-256 hex digest identifying an image, for use as a cache key.

    For raw bytes it hashes the bytes themselves (cheap; no decoding needed).
    For a PIL image it hashes the size and the RGB pixel data, so two images
    that look identical share a key whatever their mode or metadata, and two
    with the same pixels but different shapes (2x3 vs 3x2) do not.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return hashlib.sha256(source).hexdigest()
    if isinstance(source, Image.Image):
        rgb = source if source.mode == "RGB" else source.convert("RGB")
        digest = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode())
        digest.update(rgb.tobytes())
        return digest.hexdigest()
    raise TypeError(f"image_digest expects bytes or a PIL image, not {type(source).__name__}")


# --------------------------------------------------------------------------- reading


def _read_source(source: ImageSource, max_bytes: int) -> bytes:
    """Get the raw file bytes from any supported kind of source, size-checked."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if len(data) > max_bytes:
            raise _too_large(_file_size(len(data)), max_bytes)
    elif isinstance(source, (str, os.PathLike)):
        data = _read_path(Path(source), max_bytes)
    elif callable(getattr(source, "read", None)):
        data = _read_stream(source, max_bytes, what="The uploaded file")
    else:
        raise ImageError(
            f"Cannot read an image from this kind of value ({type(source).__name__}). "
            "Please provide a file path, the file's bytes, or an open file."
        )
    if not data:
        raise ImageError(f"This file is empty (0 bytes). {_CHOOSE_ANOTHER}")
    return data


def _read_path(path: Path, max_bytes: int) -> bytes:
    if path.is_dir():
        raise ImageError(f'The path "{path}" is a folder, not an image file. {_CHOOSE_ANOTHER}')
    kind = file_problem(path)
    if kind is not None and kind != "file not found" and kind != "permission denied":
        # A named pipe would block the open forever and a device never ends: refused unopened.
        raise ImageError(f'The path "{path}" is {kind}. {_CHOOSE_ANOTHER}')
    try:
        handle = open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb")
    except FileNotFoundError as exc:
        raise ImageError(
            f'The file "{path}" was not found (it does not exist). '
            "Please check the name and location and try again."
        ) from exc
    except PermissionError as exc:
        raise ImageError(
            f'The file "{path}" could not be opened: permission denied. '
            "Please check that you are allowed to read it."
        ) from exc
    except (OSError, ValueError) as exc:  # ValueError: e.g. a NUL byte in the path
        raise ImageError(
            f'The file "{path}" could not be opened. Please check the name and try again.'
        ) from exc
    with handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):  # swapped for a pipe or device since it was checked
            raise ImageError(f'The path "{path}" is not a regular file. {_CHOOSE_ANOTHER}')
        size = info.st_size
        if size > max_bytes:  # refuse before reading a single byte
            raise _too_large(_file_size(size), max_bytes)
        return _read_stream(handle, max_bytes, what=f'The file "{path.name}"')


def _read_stream(stream: IO[bytes], max_bytes: int, *, what: str) -> bytes:
    """Read at most ``max_bytes + 1`` bytes: enough to detect "too large" without reading it all."""
    try:
        data = stream.read(max_bytes + 1)
    except OSError as exc:
        raise ImageError(
            f"{what} could not be read. Please try again or choose another file."
        ) from exc
    if not isinstance(data, (bytes, bytearray)):
        raise ImageError(
            f"{what} was opened as text, not as binary data, so it cannot be an image. "
            "Open it in binary mode ('rb')."
        )
    if len(data) > max_bytes:
        raise _too_large(f"more than {_file_size(max_bytes)}", max_bytes)
    return bytes(data)


def _too_large(size: str, max_bytes: int) -> ImageError:
    return ImageError(
        f"This file is too large ({size}); the limit is {_file_size(max_bytes)}. "
        "Please use a smaller or more compressed image."
    )


def _file_size(n_bytes: int) -> str:
    if n_bytes < 1024:
        return f"{n_bytes:,} bytes"
    if n_bytes < 1024 * 1024:
        return f"{n_bytes / 1024:,.1f} KB"
    return f"{n_bytes / (1024 * 1024):,.1f} MB"


# -------------------------------------------------------------------------- decoding


def _decode(data: bytes, *, max_pixels: int) -> Image.Image:
    """Open, validate, fully load and normalise an image held in memory."""
    with warnings.catch_warnings():
        # Scoped to this block, so Pillow's global behaviour is left untouched. (The
        # warnings module is process-wide, so this is a second line of defence; the
        # header check against max_pixels below is the primary one.)
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=_accepted_formats())
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageError(_bomb_message(str(exc), max_pixels)) from exc
        except UnidentifiedImageError as exc:
            if _has_image_signature(data):
                raise ImageError(_chunk_message(exc) or _damaged_message()) from exc
            raise ImageError(
                "This file could not be read as an image: it is not an image, or not in a "
                "supported format (it may be a document, web page, archive or a file with "
                f"the wrong extension). {_CHOOSE_ANOTHER}"
            ) from exc
        except Exception as exc:
            raise ImageError(_chunk_message(exc) or _damaged_message()) from exc

        with image:
            _check_dimensions(image.width, image.height, max_pixels)
            _check_data_covers_pixels(image, data)
            try:
                # Animated GIF/WebP: Image.open leaves us on frame 0, which is what we want.
                image.load()
                upright = ImageOps.exif_transpose(image)
            except Exception as exc:
                raise ImageError(_chunk_message(exc) or _damaged_message()) from exc

    try:
        return _to_rgb(upright)
    except Exception as exc:
        raise ImageError(
            f'This image uses an unusual colour format ("{upright.mode}") that could not be '
            f"converted to ordinary colours. Please re-save it as an 8-bit RGB {_SUPPORTED_TEXT} "
            "image."
        ) from exc


@functools.cache
def _accepted_formats() -> tuple[str, ...]:
    """The accepted formats this Pillow build can open (WebP support is optional)."""
    Image.init()
    return tuple(fmt for fmt in _ACCEPTED_FORMATS if fmt in Image.OPEN)


def _has_image_signature(data: bytes) -> bool:
    is_webp = data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    return is_webp or data.startswith(_SIGNATURES)


def _check_dimensions(width: int, height: int, max_pixels: int) -> None:
    """Refuse from the header alone images too big to decode safely or too small to explain."""
    if width * height > max_pixels:
        raise ImageError(
            f"This image is too large: {width:,} × {height:,} = {width * height:,} pixels, "
            f"but the limit is {max_pixels:,} pixels. Please resize it and try again."
        )
    if min(width, height) < MIN_SIDE:
        raise ImageError(
            f"This image is too small to explain ({width} × {height} pixels). Both sides "
            f"must be at least {MIN_SIDE} pixels; please choose a larger image."
        )


def _bomb_message(pillow_message: str, max_pixels: int) -> str:
    """Describe an image Pillow refused at open time as a possible decompression bomb.

    Pillow raises before handing out the image, so its size is only known from
    Pillow's own message; the limit quoted is the stricter of ours and Pillow's.
    """
    limit = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)
    match = re.search(r"\((\d+) pixels\)", pillow_message)
    size = f" ({int(match.group(1)):,} pixels)" if match else ""
    return (
        f"This image is too large to open safely{size}; the limit is {limit:,} pixels. "
        "Please resize it and try again."
    )


# A complete baseline JPEG spends at least about one byte per 16 x 16 block of pixels (the DC
# difference and end-of-block codes of its luma and chroma blocks), so a file with less than a
# byte per 32 x 32 pixels cannot hold the picture its header declares: its decoder would fill
# the rest with grey. Real photos use 100 to 1000 times more.
MIN_JPEG_BYTES_PER_PIXEL = 1 / 1024


def jpeg_scan_bytes(data: bytes) -> int:
    """Bytes from the first start-of-scan marker (FF DA) to the end: the compressed picture
    itself. Headers, comments and colour profiles come before it, so padding them cannot make a
    truncated picture look whole."""
    start = data.find(b"\xff\xda")
    return 0 if start < 0 else len(data) - start


def _check_data_covers_pixels(image: Image.Image, data: bytes) -> None:
    """Every JPEG, whatever its size: its compressed picture must hold at least a byte per
    32 x 32 pixels, or its decoder would fill the missing rest with grey without a word."""
    pixels = image.width * image.height
    if image.format != "JPEG":
        return
    scan = jpeg_scan_bytes(data)
    if scan < max(pixels * MIN_JPEG_BYTES_PER_PIXEL, 2):
        raise ImageError(
            f"This JPEG declares {image.width:,} × {image.height:,} pixels but its picture holds only "
            f"{_file_size(scan)} of data: it ends long before its declared size (a truncated or crafted file). "
            "Please re-save the image and try again."
        )


def _chunk_message(exc: BaseException) -> str | None:
    """Pillow's refusal of an oversized metadata chunk (text, ICC profile), in words; None for
    any other failure."""
    text = str(exc)
    if "Decompressed Data Too Large" in text or "Too much memory used in text chunks" in text \
            or "chunk" in text.lower() and "too large" in text.lower():
        return ("This image carries a metadata chunk (text or a colour profile) far larger than any picture "
                "needs; it was refused before decoding. Please re-save the image without its metadata.")
    return None


def _damaged_message() -> str:
    return (
        "This image file is incomplete or damaged (it may be truncated, for example by an "
        "unfinished download or copy). Please re-download or re-save it and try again."
    )


# ------------------------------------------------------------------- colour handling


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB without losing what the picture shows.

    ``Image.convert`` alone is not enough: it clips 16-bit and 32-bit values
    at 255 (a 16-bit photo comes out almost all white), it passes NaN through
    undefined casts, and converting RGBA to RGB just drops alpha, turning
    transparent areas into whatever colour happened to be stored there
    (often black).
    """
    if image.mode in _HIGH_BIT_DEPTH_MODES:
        levels = np.asarray(image, dtype=np.float64) / 257.0  # 0..65535 -> 0..255
        return _grey_to_rgb(levels)
    if image.mode in _NUMERIC_MODES:
        return _grey_to_rgb(_stretch_to_8bit(np.asarray(image, dtype=np.float64)))
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def _stretch_to_8bit(values: np.ndarray) -> np.ndarray:
    """Map the actual min..max of 32-bit/float data onto 0..255; NaN and ±inf count as 0.

    These images have no fixed range (a depth map may span 0..3, a scientific
    TIFF -1e6..1e6), so the data's own range is the only sensible scale. A
    constant image keeps its value, clipped to 0..255.
    """
    finite = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(finite.min()), float(finite.max())
    if high == low:
        return np.full_like(finite, min(max(low, 0.0), 255.0))
    return (finite - low) * (255.0 / (high - low))


def _grey_to_rgb(levels: np.ndarray) -> Image.Image:
    grey = np.clip(np.rint(levels), 0, 255).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")


# --------------------------------------------------------------------------- gallery


# scikit-image's own files for its sample photos: decoding one with PIL takes milliseconds, where
# skimage.data.chelsea() imports skimage.io and SciPy's linear algebra first (1.7 s of a cold start).
_SKIMAGE_FILES = {"chelsea": "chelsea.png", "coffee": "coffee.png", "astronaut": "astronaut.png",
                  "rocket": "rocket.jpg"}


def _skimage_photo(name: str) -> Callable[[], Image.Image]:
    def load() -> Image.Image:
        import importlib.util

        spec = importlib.util.find_spec("skimage")  # locates the package without importing it
        if spec is not None and spec.submodule_search_locations:
            path = Path(next(iter(spec.submodule_search_locations))) / "data" / _SKIMAGE_FILES[name]
            if path.is_file():
                with Image.open(path) as image:
                    return image.convert("RGB")
        import skimage.data

        return Image.fromarray(np.ascontiguousarray(getattr(skimage.data, name)())).convert("RGB")

    return load


def _sklearn_photo(filename: str) -> Callable[[], Image.Image]:
    def load() -> Image.Image:
        from sklearn.datasets import load_sample_image

        return Image.fromarray(np.ascontiguousarray(load_sample_image(filename))).convert("RGB")

    return load


def _matplotlib_grace_hopper() -> Image.Image:
    import matplotlib.cbook

    return load_image(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


_GALLERY_LOADERS: dict[str, Callable[[], Image.Image]] = {
    "chelsea": _skimage_photo("chelsea"),
    "coffee": _skimage_photo("coffee"),
    "astronaut": _skimage_photo("astronaut"),
    "rocket": _skimage_photo("rocket"),
    "grace_hopper": _matplotlib_grace_hopper,
    "china": _sklearn_photo("china.jpg"),
    "flower": _sklearn_photo("flower.jpg"),
}


@functools.lru_cache(maxsize=len(GALLERY))
def _cached_gallery_image(name: str) -> Image.Image:
    """Decode a sample photo; its package is imported only now, keeping module import cheap."""
    try:
        return _GALLERY_LOADERS[name]()
    except Exception as exc:
        raise ImageError(
            f'The sample image "{name}" is not available on this computer '
            "(the package that provides it may be missing or incomplete). "
            "Please choose another sample or upload your own image."
        ) from exc
