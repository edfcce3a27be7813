"""Tests for explorer.images: a generated corpus of bad, odd and ordinary image files.

Every file is built on the fly in ``tmp_path`` so nothing binary is committed and
each case documents exactly what it feeds to :func:`load_image`.
"""

from __future__ import annotations

import io
import struct
import warnings
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFile, features

from explorer.images import (
    GALLERY,
    MIN_SIDE,
    ImageError,
    gallery_image,
    gallery_names,
    image_digest,
    load_image,
)

WHITE = (255, 255, 255)
needs_webp = pytest.mark.skipif(not features.check("webp"), reason="Pillow built without WebP")


# ---------------------------------------------------------------------------- helpers


def _photo(width: int = 64, height: int = 48) -> Image.Image:
    """A smooth, deterministic RGB test picture (gradients compress and decode predictably)."""
    ys, xs = np.mgrid[0:height, 0:width]
    rgb = np.stack(
        [xs * 255 // max(width - 1, 1), ys * 255 // max(height - 1, 1), np.full_like(xs, 128)],
        axis=-1,
    ).astype(np.uint8)
    return Image.fromarray(rgb)


def _encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _save(tmp_path: Path, name: str, image: Image.Image, fmt: str, **params: Any) -> Path:
    return _write(tmp_path, name, _encode(image, fmt, **params))


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _png_header_only(width: int, height: int) -> bytes:
    """A well-formed PNG signature + IHDR (8-bit RGB) with a token IDAT: decoding never gets far."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + _png_chunk(b"IEND", b"")
    )


def _first_half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("holiday.jpg", b"not really a jpeg" * 50)
        archive.writestr("notes.txt", "hello")
    return buffer.getvalue()


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int32)


# ------------------------------------------------------------------------ error corpus

Builder = Callable[[Path], Any]

NOT_AN_IMAGE = ("could not be read as an image",)
DAMAGED = ("incomplete", "truncated")
TOO_MANY_PIXELS = ("too large", "pixels")

# (id, builder(tmp_path) -> source, load_image kwargs, words that must all appear in the message)
ERROR_CASES: list[tuple[str, Builder, dict[str, int], tuple[str, ...]]] = [
    ("empty_file", lambda t: _write(t, "empty.png", b""), {}, ("empty", "0 bytes")),
    ("empty_bytes", lambda t: b"", {}, ("empty",)),
    ("one_byte", lambda t: _write(t, "one.png", b"\x89"), {}, NOT_AN_IMAGE),
    (
        "random_bytes",
        lambda t: _write(t, "noise.jpg", np.random.default_rng(7).bytes(4096)),
        {},
        NOT_AN_IMAGE,
    ),
    (
        "html_renamed_png",
        lambda t: _write(t, "page.png", b"<!DOCTYPE html><html><body><h1>Hi</h1></body></html>\n"),
        {},
        NOT_AN_IMAGE,
    ),
    (
        "shell_script_renamed_png",
        lambda t: _write(t, "run.png", b"#!/bin/sh\nrm -rf /tmp/nothing\necho done\n"),
        {},
        NOT_AN_IMAGE,
    ),
    ("zip_renamed_jpg", lambda t: _write(t, "photos.jpg", _zip_bytes()), {}, NOT_AN_IMAGE),
    (
        "pdf_renamed_jpg",
        lambda t: _write(t, "scan.jpg", b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n"),
        {},
        NOT_AN_IMAGE,
    ),
    (
        "svg_renamed_png",
        lambda t: _write(
            t, "logo.png", b'<svg xmlns="http://www.w3.org/2000/svg"><rect width="9"/></svg>'
        ),
        {},
        NOT_AN_IMAGE,
    ),
    (
        "unsupported_format_ppm",
        lambda t: _save(t, "photo.ppm", _photo(), "PPM"),
        {},
        ("supported format",),
    ),
    (
        "jpeg_magic_then_garbage",
        lambda t: _write(t, "fake.jpg", b"\xff\xd8\xff\xe0" + b"\x00garbage" * 64),
        {},
        DAMAGED,
    ),
    (
        "png_bad_header_crc",
        lambda t: _write(
            t, "badcrc.png", _png_header_only(64, 64)[:29] + b"\x00\x00\x00\x00" + b"rest"
        ),
        {},
        DAMAGED,
    ),
    (
        "truncated_png",
        lambda t: _write(t, "half.png", _first_half(_encode(_photo(), "PNG"))),
        {},
        DAMAGED,
    ),
    (
        "truncated_jpeg",
        lambda t: _write(t, "half.jpg", _first_half(_encode(_photo(), "JPEG"))),
        {},
        DAMAGED,
    ),
    (
        "truncated_gif",
        lambda t: _write(t, "half.gif", _first_half(_encode(_photo(), "GIF"))),
        {},
        DAMAGED,
    ),
    (
        "truncated_bmp",
        lambda t: _write(t, "half.bmp", _first_half(_encode(_photo(), "BMP"))),
        {},
        DAMAGED,
    ),
    (
        "png_header_without_pixels",
        lambda t: _write(t, "hollow.png", _png_header_only(64, 64)),
        {},
        DAMAGED,
    ),
    (
        "png_header_20000x20000",
        lambda t: _write(t, "bomb.png", _png_header_only(20000, 20000)),
        {},
        (*TOO_MANY_PIXELS, "400,000,000", "50,000,000"),
    ),
    (
        "png_header_10000x6000_over_default_limit",
        lambda t: _write(t, "huge.png", _png_header_only(10000, 6000)),
        {},
        (*TOO_MANY_PIXELS, "10,000 × 6,000", "50,000,000"),
    ),
    (
        "pillow_bomb_warning_is_escalated",  # within our max_pixels, over Pillow's own limit
        lambda t: _write(t, "wide.png", _png_header_only(10000, 9000)),
        {"max_pixels": 10**9},
        (*TOO_MANY_PIXELS, "90,000,000", f"{Image.MAX_IMAGE_PIXELS:,}"),
    ),
    (
        "png_header_zero_width",
        lambda t: _write(t, "zero.png", _png_header_only(0, 10)),
        {},
        DAMAGED,
    ),
    (
        "bomb_via_small_max_pixels",
        lambda t: _save(t, "normal.png", _photo(100, 100), "PNG"),
        {"max_pixels": 5_000},
        (*TOO_MANY_PIXELS, "10,000", "5,000"),
    ),
    (
        "over_max_bytes",
        lambda t: _save(t, "big.bmp", _photo(100, 100), "BMP"),
        {"max_bytes": 1_000},
        ("too large", "29.3 KB", "1,000 bytes"),
    ),
    (
        "bytes_over_max_bytes",
        lambda t: _encode(_photo(100, 100), "BMP"),
        {"max_bytes": 1_000},
        ("too large", "29.3 KB"),
    ),
    (
        "stream_over_max_bytes",
        lambda t: io.BytesIO(_encode(_photo(100, 100), "BMP")),
        {"max_bytes": 1_000},
        ("too large", "more than 1,000 bytes"),
    ),
    (
        "one_pixel",
        lambda t: _save(t, "dot.png", Image.new("RGB", (1, 1)), "PNG"),
        {},
        ("too small", "1 × 1", "at least 8 pixels"),
    ),
    (
        "seven_by_hundred",
        lambda t: _save(t, "thin.png", _photo(7, 100), "PNG"),
        {},
        ("too small", "7 × 100"),
    ),
    (
        "hundred_by_seven",
        lambda t: _save(t, "flat.png", _photo(100, 7), "PNG"),
        {},
        ("too small", "100 × 7"),
    ),
    ("directory", lambda t: t, {}, ("folder",)),
    ("missing_path", lambda t: t / "nope.png", {}, ("not found", "does not exist")),
    ("missing_str_path", lambda t: str(t / "nope.jpg"), {}, ("not found",)),
    (
        "text_mode_file_object",
        lambda t: open(_write(t, "a.txt", b"hello"), encoding="utf-8"),  # noqa: SIM115
        {},
        ("binary",),
    ),
    ("unsupported_source_type", lambda t: 12345, {}, ("cannot read an image", "int")),
    ("unknown_gallery_name", lambda t: "gallery:unicorn", {}, ("unicorn", "chelsea")),
]


@pytest.mark.parametrize(
    ("builder", "kwargs", "words"),
    [pytest.param(b, k, w, id=i) for i, b, k, w in ERROR_CASES],
)
def test_bad_input_raises_human_image_error(
    tmp_path: Path, builder: Builder, kwargs: dict[str, int], words: tuple[str, ...]
) -> None:
    source = builder(tmp_path)
    try:
        with pytest.raises(ImageError) as caught:
            load_image(source, **kwargs)
    finally:
        if hasattr(source, "close"):
            source.close()
    message = str(caught.value)
    lowered = message.lower()
    assert message.strip(), "the message must not be empty"
    assert "traceback" not in lowered
    for jargon in ("oserror", "unidentified", "syntaxerror", "decompressionbomb", "errno"):
        assert jargon not in lowered, f"message leaks a Python error name: {message!r}"
    assert message[0].isupper() and message.rstrip().endswith("."), message
    for word in words:
        assert word.lower() in lowered, f"{word!r} not in {message!r}"


def test_pillow_errors_are_kept_as_cause(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as caught:
        load_image(_write(tmp_path, "x.png", b"not an image at all"))
    assert caught.value.__cause__ is not None


def test_global_pillow_settings_are_left_alone(tmp_path: Path) -> None:
    """Loading (and failing to load) must not change Pillow's or the warnings module's state."""
    filters_before = list(warnings.filters)
    max_pixels_before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageError):
        load_image(_png_header_only(20000, 20000))
    with pytest.raises(ImageError):
        load_image(_encode(_photo(), "JPEG")[:400])
    load_image(_encode(_photo(), "PNG"))
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    assert Image.MAX_IMAGE_PIXELS == max_pixels_before
    assert warnings.filters == filters_before


# ---------------------------------------------------------------------- success corpus


def _palette_with_transparency(tmp_path: Path) -> Path:
    image = Image.new("P", (32, 32), 1)
    image.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    image.paste(0, (0, 0, 16, 32))  # left half: index 0, declared transparent
    return _save(tmp_path, "palette_t.png", image, "PNG", transparency=0)


def _check_palette_transparency(out: Image.Image) -> None:
    assert out.getpixel((2, 2)) == WHITE  # transparent black -> white, not black
    assert out.getpixel((30, 30)) == (200, 30, 30)


def _la(tmp_path: Path) -> Path:
    image = Image.new("LA", (32, 32), (60, 255))
    image.paste((0, 0), (0, 0, 16, 32))
    return _save(tmp_path, "la.png", image, "PNG")


def _check_la(out: Image.Image) -> None:
    assert out.getpixel((2, 2)) == WHITE
    assert out.getpixel((30, 30)) == (60, 60, 60)


def _rgba(tmp_path: Path) -> Path:
    image = Image.new("RGBA", (40, 30), (0, 0, 255, 255))
    image.paste((0, 0, 0, 0), (0, 0, 20, 30))  # fully transparent, stored black
    image.paste((255, 0, 0, 128), (0, 0, 20, 10))  # half-transparent red
    return _save(tmp_path, "rgba.png", image, "PNG")


def _check_rgba(out: Image.Image) -> None:
    assert out.getpixel((5, 20)) == WHITE
    assert out.getpixel((35, 20)) == (0, 0, 255)
    red, green, blue = out.getpixel((5, 5))
    assert red == 255 and 120 <= green <= 135 and green == blue  # red over white, half strength


def _grey_with_trns(tmp_path: Path) -> Path:
    image = Image.new("L", (16, 16), 0)
    image.paste(90, (8, 0, 16, 16))
    return _save(tmp_path, "grey_trns.png", image, "PNG", transparency=0)


def _check_grey_with_trns(out: Image.Image) -> None:
    assert out.getpixel((1, 1)) == WHITE
    assert out.getpixel((12, 1)) == (90, 90, 90)


def _png16(tmp_path: Path) -> Path:
    ramp = np.linspace(0, 65535, 64 * 48).round().astype(np.uint16).reshape(48, 64)
    image = Image.fromarray(ramp)
    assert image.mode == "I;16"
    path = _save(tmp_path, "deep.png", image, "PNG")
    with Image.open(path) as reopened:  # it must really be stored as 16-bit
        assert reopened.mode in ("I;16", "I") and np.asarray(reopened).max() == 65535
    return path


def _check_png16(out: Image.Image) -> None:
    pixels = _pixels(out)
    assert not (pixels == 255).all()
    assert pixels.min() == 0 and pixels.max() == 255
    assert 110 < pixels.mean() < 145  # a uniform ramp: mean near mid-grey
    assert (np.diff(pixels[:, :, 0].ravel()) >= 0).all()  # ramp order preserved


def _tiff16(tmp_path: Path) -> Path:
    values = np.full((20, 30), 65535, dtype=np.uint16)
    values[:, :10] = 0
    values[:, 10:20] = 32896  # 128 * 257
    return _save(tmp_path, "deep.tif", Image.fromarray(values), "TIFF")


def _check_tiff16(out: Image.Image) -> None:
    assert [out.getpixel((x, 5))[0] for x in (5, 15, 25)] == [0, 128, 255]


def _int32_tiff(tmp_path: Path) -> Path:
    values = np.linspace(-100_000, 100_000, 30 * 20).astype(np.int32).reshape(20, 30)
    image = Image.fromarray(values)
    assert image.mode == "I"
    return _save(tmp_path, "int32.tif", image, "TIFF")


def _check_stretched(out: Image.Image) -> None:
    pixels = _pixels(out)
    assert pixels.min() == 0 and pixels.max() == 255


def _float_nan_tiff(tmp_path: Path) -> Path:
    values = np.linspace(0.0, 2.0, 30 * 20, dtype=np.float32).reshape(20, 30)
    values[0, 0] = np.nan
    values[0, 1] = np.inf
    values[0, 2] = -np.inf
    image = Image.fromarray(values)
    assert image.mode == "F"
    return _save(tmp_path, "float.tif", image, "TIFF")


def _check_float_nan(out: Image.Image) -> None:
    pixels = _pixels(out)
    assert pixels[0, 0, 0] == pixels[0, 1, 0] == pixels[0, 2, 0] == 0  # non-finite -> 0 -> min
    assert pixels.max() == 255 and 100 < pixels.mean() < 155


def _constant_float_tiff(tmp_path: Path) -> Path:
    flat = Image.fromarray(np.full((10, 10), 42.0, dtype=np.float32))
    return _save(tmp_path, "flat.tif", flat, "TIFF")


def _check_constant_float(out: Image.Image) -> None:
    assert (_pixels(out) == 42).all()


def _cmyk_jpeg(tmp_path: Path) -> Path:
    return _save(tmp_path, "cmyk.jpg", Image.new("CMYK", (40, 30), (0, 255, 255, 0)), "JPEG")


def _check_red(out: Image.Image) -> None:
    red, green, blue = out.getpixel((out.width // 2, out.height // 2))
    assert red > 200 and green < 60 and blue < 60, (red, green, blue)


def _lab_tiff(tmp_path: Path) -> Path:
    return _save(tmp_path, "lab.tif", Image.new("LAB", (20, 20), (128, 128, 128)), "TIFF")


def _exif_rotated_jpeg(tmp_path: Path) -> Path:
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 10, 10))  # red block in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    return _save(tmp_path, "phone.jpg", image, "JPEG", exif=exif.tobytes(), quality=95)


def _check_exif_rotated(out: Image.Image) -> None:
    red, green, blue = out.getpixel((15, 4))  # the block ends up top-right
    assert red > 200 and blue < 60
    assert out.getpixel((4, 35))[2] > 200  # bottom-left stays blue


def _corrupt_exif_jpeg(tmp_path: Path) -> Path:
    exif = b"Exif\x00\x00II*\x00\xff\xff\xff\x7f"  # offset to the first IFD points nowhere
    return _save(tmp_path, "odd_exif.jpg", _photo(), "JPEG", exif=exif)


def _animated(tmp_path: Path, name: str, fmt: str, **params: Any) -> Path:
    """Two frames, red then blue: only the red first frame may come back."""
    red = Image.new("RGB", (24, 16), (255, 0, 0))
    blue = Image.new("RGB", (24, 16), (0, 0, 255))
    path = _save(tmp_path, name, red, fmt, save_all=True, append_images=[blue], **params)
    with Image.open(path) as check:
        assert getattr(check, "n_frames", 1) == 2
    return path


def _exactly_min_side(tmp_path: Path) -> Path:
    return _save(tmp_path, "tiny.png", _photo(MIN_SIDE, MIN_SIDE), "PNG")


def _open_file(tmp_path: Path) -> io.BufferedReader:
    return _save(tmp_path, "handle.png", _photo(), "PNG").open("rb")


def _ok(
    case_id: str,
    builder: Builder,
    size: tuple[int, int],
    check: Callable[[Image.Image], None] | None = None,
    *,
    marks: Any = (),
) -> Any:
    """A success case: what to load, the size it must come back at, an optional pixel check."""
    return pytest.param(builder, size, check, id=case_id, marks=marks)


def _all_white(out: Image.Image) -> None:
    assert (_pixels(out) == 255).all(), "a fully transparent image must come out white"


SUCCESS_CASES = [
    _ok("png_rgb", lambda t: _save(t, "a.png", _photo(), "PNG"), (64, 48)),
    _ok("jpeg_rgb", lambda t: _save(t, "a.jpg", _photo(), "JPEG"), (64, 48)),
    _ok("bmp", lambda t: _save(t, "a.bmp", _photo(), "BMP"), (64, 48)),
    _ok("tiff", lambda t: _save(t, "a.tif", _photo(), "TIFF"), (64, 48)),
    _ok("gif_static", lambda t: _save(t, "a.gif", _photo(), "GIF"), (64, 48)),
    _ok("webp", lambda t: _save(t, "a.webp", _photo(), "WEBP"), (64, 48), marks=needs_webp),
    _ok(
        "webp_lossless_transparent",
        lambda t: _save(t, "t.webp", Image.new("RGBA", (20, 20)), "WEBP", lossless=True),
        (20, 20),
        _all_white,
        marks=needs_webp,
    ),
    _ok("grey_L", lambda t: _save(t, "g.png", _photo().convert("L"), "PNG"), (64, 48)),
    _ok("bilevel_1", lambda t: _save(t, "b.png", _photo().convert("1"), "PNG"), (64, 48)),
    _ok("bilevel_1_bmp", lambda t: _save(t, "b.bmp", _photo().convert("1"), "BMP"), (64, 48)),
    _ok("palette_P", lambda t: _save(t, "p.png", _photo().convert("P"), "PNG"), (64, 48)),
    _ok("palette_transparency", _palette_with_transparency, (32, 32), _check_palette_transparency),
    _ok("grey_alpha_LA", _la, (32, 32), _check_la),
    _ok("rgba_alpha_zero_region", _rgba, (40, 30), _check_rgba),
    _ok("grey_png_with_trns", _grey_with_trns, (16, 16), _check_grey_with_trns),
    _ok("png_16bit", _png16, (64, 48), _check_png16),
    _ok("tiff_16bit_scaled_by_257", _tiff16, (30, 20), _check_tiff16),
    _ok("tiff_int32_I", _int32_tiff, (30, 20), _check_stretched),
    _ok("tiff_float_F_nan_inf", _float_nan_tiff, (30, 20), _check_float_nan),
    _ok("tiff_float_constant", _constant_float_tiff, (10, 10), _check_constant_float),
    _ok("jpeg_cmyk", _cmyk_jpeg, (40, 30), _check_red),
    _ok("tiff_lab", _lab_tiff, (20, 20)),
    _ok("jpeg_exif_orientation_6", _exif_rotated_jpeg, (20, 40), _check_exif_rotated),
    _ok(
        "jpeg_corrupt_exif_ignored",
        _corrupt_exif_jpeg,
        (64, 48),
        marks=pytest.mark.filterwarnings("ignore:Corrupt EXIF data"),
    ),
    _ok("gif_animated", lambda t: _animated(t, "anim.gif", "GIF"), (24, 16), _check_red),
    _ok(
        "webp_animated",
        lambda t: _animated(t, "anim.webp", "WEBP", lossless=True),
        (24, 16),
        _check_red,
        marks=needs_webp,
    ),
    _ok("exactly_min_side", _exactly_min_side, (MIN_SIDE, MIN_SIDE)),
    _ok("aspect_100_to_1", lambda t: _save(t, "strip.png", _photo(800, 8), "PNG"), (800, 8)),
    _ok("path_as_str", lambda t: str(_save(t, "s.png", _photo(), "PNG")), (64, 48)),
    _ok("bytes", lambda t: _encode(_photo(), "PNG"), (64, 48)),
    _ok("bytearray", lambda t: bytearray(_encode(_photo(), "JPEG")), (64, 48)),
    _ok("memoryview", lambda t: memoryview(_encode(_photo(), "BMP")), (64, 48)),
    _ok("bytesio", lambda t: io.BytesIO(_encode(_photo(), "PNG")), (64, 48)),
    _ok("open_binary_file", _open_file, (64, 48)),
    _ok("gallery_string", lambda t: "gallery:chelsea", (451, 300)),
]


@pytest.mark.parametrize(("builder", "size", "check"), SUCCESS_CASES)
def test_good_input_loads_as_rgb(
    tmp_path: Path,
    builder: Builder,
    size: tuple[int, int],
    check: Callable[[Image.Image], None] | None,
) -> None:
    source = builder(tmp_path)
    try:
        out = load_image(source)
    finally:
        if hasattr(source, "close"):
            source.close()
    assert isinstance(out, Image.Image)
    assert out.mode == "RGB"
    assert out.size == size
    out.getpixel((0, 0))  # pixels are usable after the source is closed
    if check is not None:
        check(out)


def test_size_limit_is_inclusive(tmp_path: Path) -> None:
    data = _encode(_photo(), "PNG")
    path = _write(tmp_path, "exact.png", data)
    for source in (data, path, io.BytesIO(data)):
        assert load_image(source, max_bytes=len(data)).size == (64, 48)
    assert load_image(data, max_pixels=64 * 48).size == (64, 48)


def test_result_does_not_depend_on_the_file(tmp_path: Path) -> None:
    path = _save(tmp_path, "gone.png", _photo(), "PNG")
    out = load_image(path)
    path.unlink()
    assert _pixels(out).shape == (48, 64, 3)


def test_every_source_kind_decodes_the_same_pixels(tmp_path: Path) -> None:
    data = _encode(_photo(), "PNG")
    path = _write(tmp_path, "same.png", data)
    expected = _pixels(_photo())
    for source in (path, str(path), data, bytearray(data), memoryview(data), io.BytesIO(data)):
        assert np.array_equal(_pixels(load_image(source)), expected)


# ---------------------------------------------------------------------------- gallery


@pytest.mark.parametrize("name", sorted(GALLERY))
def test_gallery_images_load(name: str) -> None:
    image = gallery_image(name)
    assert image.mode == "RGB"
    assert min(image.size) >= 200
    assert GALLERY[name].strip() and "\n" not in GALLERY[name]
    assert load_image(f"gallery:{name}").tobytes() == image.tobytes()


def test_gallery_contents() -> None:
    expected = {"chelsea", "coffee", "astronaut", "rocket", "grace_hopper", "china", "flower"}
    assert set(GALLERY) == expected
    assert gallery_names() == list(GALLERY)


def test_unknown_gallery_name_lists_valid_names() -> None:
    with pytest.raises(ImageError) as caught:
        gallery_image("unicorn")
    message = str(caught.value)
    assert "unicorn" in message
    for name in GALLERY:
        assert name in message


def test_gallery_returns_independent_copies() -> None:
    first = gallery_image("coffee")
    original = first.getpixel((0, 0))
    first.paste((1, 2, 3), (0, 0, 50, 50))
    second = gallery_image("coffee")
    assert second is not first
    assert second.getpixel((0, 0)) == original != (1, 2, 3)


# ----------------------------------------------------------------------------- digest


def test_image_digest_is_stable_and_discriminating() -> None:
    data = _encode(_photo(), "PNG")
    assert image_digest(data) == image_digest(bytes(data)) == image_digest(bytearray(data))
    assert len(image_digest(data)) == 64
    assert image_digest(data) != image_digest(_encode(_photo(), "BMP"))

    chelsea, coffee = gallery_image("chelsea"), gallery_image("coffee")
    assert image_digest(chelsea) == image_digest(gallery_image("chelsea"))
    assert image_digest(chelsea) != image_digest(coffee)


def test_image_digest_of_pixels_ignores_mode_but_not_shape() -> None:
    rgb = _photo(12, 8)
    assert image_digest(rgb) == image_digest(rgb.convert("RGBA"))
    flat = Image.new("RGB", (2, 3), (9, 9, 9))
    assert image_digest(flat) != image_digest(Image.new("RGB", (3, 2), (9, 9, 9)))



@pytest.mark.parametrize("name", ["chelsea", "coffee", "astronaut", "rocket"])
def test_scikit_image_photos_read_from_its_files_are_its_own_pixels(name):
    """The gallery reads scikit-image's files with PIL (no skimage.io import at a cold start);
    the pixels are exactly those skimage.data returns."""
    import skimage.data

    from explorer.images import gallery_image

    expected = np.asarray(getattr(skimage.data, name)())[..., :3]
    np.testing.assert_array_equal(np.asarray(gallery_image(name)), expected)
