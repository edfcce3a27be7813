"""Version 2 of the synthetic WSOL benchmark: 20 kinds of bird that colour cannot find.

Version 1 was solved without a network (a map of HSV saturation scored MaxBoxAcc 86-92): its
objects were one saturated colour on earthy backgrounds. Here every design choice removes a
shortcut that a map which does not look at the class could take:

* **The class is a small part.** Every object has a body, a tail and one or two wings, drawn from
  distributions shared by all 20 classes; only the head differs: one of five shapes (disc, spike,
  hammer, star, fork) times one of four markings (plain, an eye spot, a band across it, two-tone
  halves). The head covers 8-19 % of the object (12 % on average).
* **Parts do not share one colour.** Head, body, wings and tail each get their own colour and fill
  (a two-tone pattern, or a texture cut from a real photograph).
* **Object colours overlap the background's.** Backgrounds are crops of the real photographs that
  installed packages ship (scikit-image, scikit-learn, matplotlib) or tinted photo textures; in
  half of the images every part's colour is sampled from that image's own background.
* **Distractors share parts with the classes.** Headless birds (a body with wings and a tail, no
  head) of the same sizes and fills, lone wings, and branches and leaves that partly occlude the
  object (never its head): saliency finds them as readily as the object.
* **Photographic nuisances.** Anti-aliased edges (4x supersampling), a soft cast shadow, a lighting
  gradient, articulated wings and tails, any position, any angle, objects from about 5 % to 45 % of
  the image's area, two birds in some images, sensor noise, JPEG.

Ground truth is exact: an object pixel is one whose anti-aliased coverage is at least 1/2 and that
no occluder covers; the ignore mask marks the pixels outside the object whose colour mixes object
and background (partial coverage, and a 1-pixel band for JPEG's ringing). The part mask is the
visible head.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from explorer.datasets.errors import DatasetError

__all__ = ["CLASSES", "GENERATOR", "HEAD_SHAPES", "MARKINGS", "Params", "PHOTOS", "render"]

SUPERSAMPLE = 4


def _regular(n: int, radius: float = 1.0) -> np.ndarray:
    angles = 2 * np.pi * np.arange(n) / n
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)


def _star(points: int, inner: float) -> np.ndarray:
    angles = np.pi * np.arange(2 * points) / points
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


# Head outlines centred on the origin, "away from the body" along +x (as in version 1).
HEAD_SHAPES: dict[str, tuple[str, np.ndarray]] = {
    "disc": ("a round disc", _regular(40)),
    "spike": ("a long thin triangle pointing away from the body, like a beak",
              np.array([(1.6, 0.0), (-0.4, 0.42), (-0.4, -0.42)])),
    "hammer": ("a bar across the body's axis on a short neck, like a hammerhead",
               np.array([(-0.6, -0.28), (0.1, -0.28), (0.1, -1.15), (0.65, -1.15), (0.65, 1.15), (0.1, 1.15),
                         (0.1, 0.28), (-0.6, 0.28)])),
    "star": ("a five-pointed star, one point away from the body", _star(5, 0.45)),
    "fork": ("a swallow-tail fork opening away from the body",
             np.array([(-0.6, -0.32), (1.0, -0.9), (0.3, 0.0), (1.0, 0.9), (-0.6, 0.32)])),
}
MARKINGS: dict[str, str] = {
    "plain": "no marking",
    "eye": "a round eye spot in a contrasting colour",
    "band": "a band across it in a contrasting colour",
    "halves": "two halves, one in a contrasting colour",
}


@dataclass(frozen=True)
class PartClass:
    """One class: its name, what its head looks like, the head's outline and its marking."""

    name: str
    description: str
    shape: str
    marking: str


CLASSES: tuple[PartClass, ...] = tuple(
    PartClass(f"{shape}-{marking}", f"head: {words}, with {MARKINGS[marking]}", shape, marking)
    for shape, (words, _) in HEAD_SHAPES.items() for marking in MARKINGS)


@dataclass(frozen=True)
class Params:
    """Every knob of the version-2 generator (all of it is in the parameter hash). Lengths are
    fractions of the image side, part sizes fractions of the body's half-length, unless stated."""

    object_length: tuple[float, float] = (0.50, 0.95)      # tail tip to head tip
    object_length_two: tuple[float, float] = (0.36, 0.52)  # each bird when an image holds two
    two_objects_rate: float = 0.12
    body_aspect: tuple[float, float] = (0.40, 0.58)
    body_wobble: float = 0.05
    head_area: tuple[float, float] = (0.13, 0.19)          # head area / body area
    head_overlap: float = 0.35
    tail_length: tuple[float, float] = (0.45, 0.85)
    tail_spread_deg: tuple[float, float] = (12.0, 32.0)
    tail_swing_deg: float = 30.0                           # articulation of the tail
    wing_length: tuple[float, float] = (0.55, 0.85)
    wing_width: tuple[float, float] = (0.14, 0.24)
    wing_angle_deg: tuple[float, float] = (15.0, 75.0)     # away from the body's back axis
    background_palette_rate: float = 0.5                   # images whose part colours come from the background
    photo_fill_rate: float = 0.35                          # parts filled with a photo texture
    head_contrast: float = 55.0          # minimum RGB distance, head to body and to the ground around it
    headless_birds: tuple[int, int] = (1, 2)
    small_distractors: tuple[int, int] = (0, 3)
    occluder_rate: float = 0.4           # images with a branch or leaf over the bird
    occluded_share_max: float = 0.3
    photo_background_rate: float = 0.7   # else a tinted photo texture (brick, grass, gravel)
    background_split_rate: float = 0.25
    background_blur: tuple[float, float] = (0.0, 2.0)
    shadow_rate: float = 0.7
    illumination: float = 0.25
    noise_std: float = 3.0
    jpeg_quality: int = 92
    ignore_band: int = 1


GENERATOR = Params()

# (module, name): colour photographs, then grey textures that are tinted. Fixed: the generated
# bytes depend on this list, and every entry ships inside a pinned requirement.
PHOTOS: tuple[tuple[str, str], ...] = (
    ("skimage", "astronaut"), ("skimage", "chelsea"), ("skimage", "coffee"), ("skimage", "rocket"),
    ("skimage", "immunohistochemistry"), ("skimage", "hubble_deep_field"), ("sklearn", "china.jpg"),
    ("sklearn", "flower.jpg"), ("matplotlib", "grace_hopper.jpg"),
)
GREY_TEXTURES: tuple[str, ...] = ("brick", "grass", "gravel", "camera", "coins", "moon")
_PATTERNS = ("plain", "stripes", "spots", "checks")


def _load_photo(source: str, name: str) -> np.ndarray:
    if source == "skimage":
        import skimage.data

        image = getattr(skimage.data, name)()
    elif source == "sklearn":
        from sklearn.datasets import load_sample_image

        image = load_sample_image(name)
    else:
        import matplotlib

        path = Path(matplotlib.get_data_path()) / "sample_data" / name
        with Image.open(path) as handle:
            image = np.asarray(handle.convert("RGB"))
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3]).astype(np.float32)


@functools.cache
def photos() -> tuple[np.ndarray, ...]:
    """The colour photographs, float32 RGB 0..255, loaded once per process."""
    try:
        return tuple(_load_photo(source, name) for source, name in PHOTOS)
    except (OSError, ImportError, AttributeError, ValueError) as exc:
        raise DatasetError(f"a photograph the synthetic benchmark is built from cannot be read ({exc}); "
                           "reinstall the requirements (scikit-image, scikit-learn, matplotlib)") from exc


@functools.cache
def grey_textures() -> tuple[np.ndarray, ...]:
    """The grey textures, contrast-stretched to 0..1."""
    import skimage.data

    out = []
    for name in GREY_TEXTURES:
        grey = np.asarray(getattr(skimage.data, name)(), dtype=np.float32)
        if grey.ndim == 3:
            grey = grey[..., :3].mean(axis=2)
        low, high = np.percentile(grey, [1, 99])
        out.append(np.clip((grey - low) / max(high - low, 1.0), 0, 1))
    return tuple(out)


# ------------------------------------------------------------------------------- geometry


def _rotation(angle: float) -> np.ndarray:
    return np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])


def _polygon_area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def coverage(polygons: list[np.ndarray], size: int, holes: list[np.ndarray] | None = None,
             width: float = 0.0) -> np.ndarray:
    """Anti-aliased coverage (0..1, float32) of the union of ``polygons`` (pixel coordinates) minus
    ``holes``; with ``width`` > 0 the polygons are open polylines of that thickness.

    Drawn at ``SUPERSAMPLE`` x resolution over the polygons' bounding box only, then box-averaged."""
    out = np.zeros((size, size), np.float32)
    points = np.concatenate(polygons)
    pad = width / 2 + 2
    x0, y0 = np.clip(np.floor(points.min(axis=0) - pad).astype(int), 0, size)
    x1, y1 = np.clip(np.ceil(points.max(axis=0) + pad).astype(int) + 1, 0, size)
    if x1 <= x0 or y1 <= y0:
        return out
    origin = np.array([x0, y0], dtype=np.float64)
    canvas = Image.new("L", (int(x1 - x0) * SUPERSAMPLE, int(y1 - y0) * SUPERSAMPLE), 0)
    draw = ImageDraw.Draw(canvas)

    def scaled(p: np.ndarray) -> list[tuple[float, float]]:
        return [tuple(q) for q in ((p - origin) * SUPERSAMPLE + (SUPERSAMPLE - 1) / 2)]

    for polygon in polygons:
        if width > 0:
            draw.line(scaled(polygon), fill=255, width=max(1, int(round(width * SUPERSAMPLE))), joint="curve")
        else:
            draw.polygon(scaled(polygon), fill=255)
    for hole in holes or []:
        draw.polygon(scaled(hole), fill=0)
    array = np.asarray(canvas, dtype=np.float32).reshape(int(y1 - y0), SUPERSAMPLE, int(x1 - x0), SUPERSAMPLE)
    out[y0:y1, x0:x1] = array.mean(axis=(1, 3)) / 255.0
    return out


@dataclass
class _Bird:
    """One bird's parts in pixel coordinates, in drawing order (tail, body, wings, head)."""

    tail: np.ndarray
    body: np.ndarray
    wings: list[np.ndarray]
    head: np.ndarray | None
    marking: list[np.ndarray]   # polygons inside the head, in a contrasting colour
    axis: np.ndarray            # unit vector, body to head


def _bird_geometry(rng: np.random.Generator, label: int | None) -> tuple[dict[str, np.ndarray | list], np.ndarray]:
    """A bird in unit coordinates (body half-length 1, head towards +x); ``label`` None: no head."""
    g = GENERATOR
    aspect = rng.uniform(*g.body_aspect)
    phi = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    wobble = sum(rng.uniform(-1, 1) * g.body_wobble * np.cos(k * phi + rng.uniform(0, 2 * np.pi)) for k in (2, 3))
    body = np.stack([(1 + wobble) * np.cos(phi), aspect * (1 + wobble) * np.sin(phi)], axis=1)

    # Tail: a fan (or a forked fan) hinged at the back of the body, swung by the articulation.
    length = rng.uniform(*g.tail_length)
    spread = np.radians(rng.uniform(*g.tail_spread_deg))
    root = np.array([-0.85, 0.0])
    half = aspect * 0.35
    fan = [(0.0, -half), (-length * np.cos(spread), -length * np.sin(spread) - half)]
    if rng.random() < 0.5:
        fan.append((-length * 0.6, 0.0))  # a notch: a forked tail
    fan += [(-length * np.cos(spread), length * np.sin(spread) + half), (0.0, half)]
    tail = np.array(fan) @ _rotation(np.radians(rng.uniform(-g.tail_swing_deg, g.tail_swing_deg))).T + root

    wings = []
    sides = [1.0, -1.0] if rng.random() < 0.6 else [float(rng.choice([-1.0, 1.0]))]
    for side in sides:
        wing_length, wing_width = rng.uniform(*g.wing_length), rng.uniform(*g.wing_width)
        angle = np.pi - side * np.radians(rng.uniform(*g.wing_angle_deg))
        direction = np.array([np.cos(angle), np.sin(angle)])
        base = np.array([rng.uniform(-0.1, 0.3), side * aspect * 0.45])
        ellipse = _regular(28) * [wing_length / 2, wing_width]
        if rng.random() < 0.5:  # a pointed wing tip
            ellipse[:, 0] = np.where(ellipse[:, 0] > 0, ellipse[:, 0] * 1.25, ellipse[:, 0])
        wings.append(ellipse @ _rotation(angle).T + base + direction * wing_length / 2)

    parts: dict[str, np.ndarray | list] = {"tail": tail, "body": body, "wings": wings}
    if label is not None:
        kind = CLASSES[label]
        outline = HEAD_SHAPES[kind.shape][1]
        area = rng.uniform(*g.head_area) * _polygon_area(body)
        scale = np.sqrt(area / _polygon_area(outline))
        head = outline * scale
        back = -head[:, 0].min()
        shift = np.array([body[0, 0] + back * (1 - g.head_overlap), 0.0])
        parts["head"] = head + shift
        parts["marking"] = [m * scale + shift for m in _marking(kind.marking, outline)]
    return parts, body


def _marking(kind: str, outline: np.ndarray) -> list[np.ndarray]:
    """Polygons (in the head outline's unit frame) painted in the contrasting colour; a marking
    may reach beyond the outline: it is clipped to the head when drawn."""
    low, high = outline.min(axis=0), outline.max(axis=0)
    centre = (low + high) / 2
    if kind == "eye":
        radius = 0.3 * min(high - low)
        return [_regular(20, radius) + centre]
    if kind == "band":
        width = 0.24 * (high[0] - low[0])
        x = centre[0]
        return [np.array([(x - width / 2, low[1] - 1), (x + width / 2, low[1] - 1),
                          (x + width / 2, high[1] + 1), (x - width / 2, high[1] + 1)])]
    if kind == "halves":
        return [np.array([(low[0] - 1, 0.0), (high[0] + 1, 0.0), (high[0] + 1, high[1] + 1),
                          (low[0] - 1, high[1] + 1)])]
    return []


def _place(rng: np.random.Generator, parts: dict, size: int, length: float,
           occupied: np.ndarray | None) -> _Bird | None:
    """Rotate, scale and move a bird so that it is ``length`` pixels long and inside the image;
    None when no place clear of ``occupied`` was found."""
    polygons = [parts["tail"], parts["body"], *parts["wings"]] + ([parts["head"]] if "head" in parts else [])
    points = np.concatenate(polygons)
    extent = points[:, 0].max() - points[:, 0].min()
    scale = length / extent
    for _attempt in range(25):
        rotation = _rotation(rng.uniform(0, 2 * np.pi))
        moved = points @ rotation.T * scale
        low, high = moved.min(axis=0), moved.max(axis=0)
        if (high - low).max() > size - 6:
            scale *= 0.9
            continue
        offset = rng.uniform(2 - low, size - 3 - high)
        if occupied is not None:
            x0, y0 = np.floor(low + offset).astype(int)
            x1, y1 = np.ceil(high + offset).astype(int)
            if occupied[max(y0, 0):y1 + 1, max(x0, 0):x1 + 1].any():
                continue

        def to_px(p: np.ndarray, rotation: np.ndarray = rotation, offset: np.ndarray = offset,
                  scale: float = scale) -> np.ndarray:
            return p @ rotation.T * scale + offset

        return _Bird(tail=to_px(parts["tail"]), body=to_px(parts["body"]), wings=[to_px(w) for w in parts["wings"]],
                     head=to_px(parts["head"]) if "head" in parts else None,
                     marking=[to_px(m) for m in parts.get("marking", [])], axis=rotation[:, 0])
    return None


# -------------------------------------------------------------------------------- colour


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    """A colour from a broad HSV range (muted as often as vivid)."""
    import colorsys

    h, s, v = rng.random(), rng.uniform(0.12, 0.9), rng.uniform(0.25, 0.95)
    return np.array(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32) * 255


class _Palette:
    """Where a part's colour comes from: the background's own pixels or a broad random range."""

    def __init__(self, rng: np.random.Generator, background: np.ndarray):
        self.rng = rng
        self.from_background = rng.random() < GENERATOR.background_palette_rate
        self.smooth = ndimage.uniform_filter(background, size=(9, 9, 1))

    def colour(self) -> np.ndarray:
        if self.from_background:
            y, x = self.rng.integers(0, self.smooth.shape[0], 2)
            return np.clip(self.smooth[y, x] + self.rng.uniform(-15, 15, 3), 0, 255).astype(np.float32)
        return _random_colour(self.rng)

    def distinct(self, avoid: list[np.ndarray], distance: float) -> np.ndarray:
        """A colour at least ``distance`` from each of ``avoid`` (the farthest of 40 draws if none is)."""
        best, best_gap = None, -1.0
        for _ in range(40):
            colour = self.colour()
            gap = min((float(np.linalg.norm(colour - a)) for a in avoid), default=np.inf)
            if gap >= distance:
                return colour
            if gap > best_gap:
                best, best_gap = colour, gap
        return best if best is not None else self.colour()


def _contrasting(colour: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Near-black or near-white, whichever stands out from ``colour``."""
    luminance = float(colour @ np.array([0.299, 0.587, 0.114]))
    base = 25.0 if luminance > 120 else 235.0
    return np.clip(base + rng.uniform(-15, 15, 3), 0, 255).astype(np.float32)


# ---------------------------------------------------------------------------------- fills


def _photo_crop(rng: np.random.Generator, shape: tuple[int, int], side_range: tuple[float, float]) -> np.ndarray:
    photo = photos()[rng.integers(len(photos()))]
    h, w = photo.shape[:2]
    side = int(rng.uniform(*side_range) * min(h, w))
    side = max(8, min(side, h, w))
    y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    crop = Image.fromarray(np.clip(photo[y:y + side, x:x + side], 0, 255).astype(np.uint8))
    out = np.asarray(crop.resize((shape[1], shape[0]), Image.Resampling.BILINEAR), dtype=np.float32)
    out = np.rot90(out, int(rng.integers(4))) if shape[0] == shape[1] else out
    return out[:, ::-1] if rng.random() < 0.5 else out


def rotated_coordinates(box: tuple[int, int, int, int], angle: float) -> tuple[np.ndarray, np.ndarray]:
    """The pixel grid of ``box`` (y0, y1, x0, x1) in coordinates rotated by ``angle``: what a
    pattern's stripes and checks run along."""
    y0, y1, x0, x1 = box
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    return xx * np.cos(angle) + yy * np.sin(angle), -xx * np.sin(angle) + yy * np.cos(angle)


def pattern_amount(pattern: str, u: np.ndarray, v: np.ndarray, period: float,
                   white_noise: Callable[[], np.ndarray]) -> np.ndarray:
    """Where a two-tone pattern takes its second tone (0..1) over rotated coordinates (u, v);
    ``white_noise`` is drawn only for spots (so each version keeps its own random stream)."""
    if pattern == "stripes":
        return np.clip(3 * np.sin(2 * np.pi * u / period) + 0.5, 0, 1)
    if pattern == "checks":
        return (np.sin(2 * np.pi * u / period) * np.sin(2 * np.pi * v / period) > 0).astype(np.float32)
    if pattern == "spots":
        noise = ndimage.gaussian_filter(white_noise(), period / 4)
        return (noise > np.quantile(noise, 0.6)).astype(np.float32)
    return np.zeros(u.shape, np.float32)


def _fill(rng: np.random.Generator, colour: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The paint of one part over its bounding box: ``colour`` with a two-tone pattern, or a
    photo texture whose mean is ``colour``."""
    y0, y1, x0, x1 = box
    shape = (y1 - y0, x1 - x0)
    if rng.random() < GENERATOR.photo_fill_rate:
        texture = _photo_crop(rng, shape, (0.05, 0.3))
        grey = texture.mean(axis=2, keepdims=True)
        grey = (grey - grey.mean()) / (grey.std() + 1e-6)
        return np.clip(colour + grey * rng.uniform(12, 35), 0, 255)
    pattern = _PATTERNS[rng.integers(len(_PATTERNS))]
    u, v = rotated_coordinates(box, rng.uniform(0, np.pi))
    period = rng.uniform(5, 14)
    amount = pattern_amount(pattern, u, v, period, lambda: rng.standard_normal(u.shape).astype(np.float32))
    second = colour * rng.uniform(0.65, 0.85) if colour.mean() > 70 else colour + (255 - colour) * rng.uniform(0.12, 0.25)
    return colour + (second - colour) * amount[..., None]


def _composite(image: np.ndarray, alpha: np.ndarray, paint: np.ndarray | np.ndarray) -> None:
    """Alpha-blend ``paint`` (H x W x 3, or one colour) over ``image`` in place."""
    ys, xs = np.nonzero(alpha > 0)
    if ys.size == 0:
        return
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    a = alpha[y0:y1, x0:x1, None]
    region = image[y0:y1, x0:x1]
    region *= 1 - a
    region += a * (paint[y0:y1, x0:x1] if paint.ndim == 3 else paint)


def _paint_part(rng: np.random.Generator, image: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    ys, xs = np.nonzero(alpha > 0)
    if ys.size == 0:
        return
    box = (int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1)
    full = np.zeros_like(image)
    full[box[0]:box[1], box[2]:box[3]] = _fill(rng, colour, box)
    _composite(image, alpha, full)


# ------------------------------------------------------------------------------ background


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    def layer() -> np.ndarray:
        if rng.random() < GENERATOR.photo_background_rate:
            return _photo_crop(rng, (size, size), (0.25, 1.0))
        textures = grey_textures()
        source = textures[rng.integers(len(textures))]
        side = int(rng.integers(96, min(source.shape) + 1))
        y, x = rng.integers(0, source.shape[0] - side + 1), rng.integers(0, source.shape[1] - side + 1)
        grey = np.asarray(Image.fromarray(source[y:y + side, x:x + side]).resize((size, size), Image.Resampling.BILINEAR))
        grey = np.rot90(np.clip(grey, 0, 1), int(rng.integers(4)))
        base = _random_colour(rng)
        dark, light = base * rng.uniform(0.3, 0.6), np.minimum(base * rng.uniform(1.1, 1.6) + 20, 255)
        return dark + (light - dark) * grey[..., None]

    ground = layer()
    if rng.random() < GENERATOR.background_split_rate:
        second = layer()
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        angle = rng.uniform(0, 2 * np.pi)
        side = (xx - rng.uniform(0.3, 0.7) * size) * np.cos(angle) + (yy - rng.uniform(0.3, 0.7) * size) * np.sin(angle)
        ground = np.where((side > 0)[..., None], second, ground)
    blur = rng.uniform(*GENERATOR.background_blur)
    if blur > 0.3:
        ground = ndimage.gaussian_filter(ground, sigma=(blur, blur, 0))
    return np.ascontiguousarray(ground, dtype=np.float32)


def _shadow(rng: np.random.Generator, image: np.ndarray, alpha: np.ndarray, light: np.ndarray) -> None:
    """Darken the ground under a soft, offset copy of the bird's silhouette (in place)."""
    offset = light * rng.uniform(3, 9)
    shifted = ndimage.shift(alpha, (offset[1], offset[0]), order=1, mode="constant")
    soft = ndimage.gaussian_filter(shifted, rng.uniform(2.5, 6.0))
    image *= (1 - rng.uniform(0.35, 0.6) * soft)[..., None]


# ------------------------------------------------------------------------------- render


@dataclass(frozen=True)
class Sample:
    """One rendered image and its exact ground truth."""

    image: np.ndarray             # H x W x 3 uint8
    instances: list[np.ndarray]   # one H x W bool mask per bird (visible pixels)
    part: np.ndarray              # H x W bool: the visible heads
    ignore: np.ndarray            # H x W bool


def _draw_bird(rng: np.random.Generator, image: np.ndarray, bird: _Bird, palette: _Palette,
               size: int) -> tuple[np.ndarray, np.ndarray]:
    """Paint a bird in place; its coverage (0..1) and its head's coverage."""
    tail_colour = palette.colour()
    body_colour = palette.colour()
    wing_colour = palette.colour() if rng.random() < 0.7 else tail_colour
    alphas = [coverage([bird.tail], size), coverage([bird.body], size)] + [coverage([w], size) for w in bird.wings]
    for alpha, colour in zip(alphas, [tail_colour, body_colour] + [wing_colour] * len(bird.wings)):
        _paint_part(rng, image, alpha, colour)
    total = np.maximum.reduce(alphas)
    head_alpha = np.zeros_like(total)
    if bird.head is not None:
        head_alpha = coverage([bird.head], size)
        # The head must be readable: distinct from the body and from the ground just around it.
        ring = (ndimage.binary_dilation(head_alpha > 0, iterations=4) & (total == 0) & (head_alpha == 0))
        around = image[ring].mean(axis=0) if ring.any() else image.reshape(-1, 3).mean(axis=0)
        head_colour = palette.distinct([body_colour, around], GENERATOR.head_contrast)
        _paint_part(rng, image, head_alpha, head_colour)
        if bird.marking:
            mark = np.minimum(coverage(bird.marking, size), head_alpha)
            _composite(image, mark, _contrasting(head_colour, rng))
        total = np.maximum(total, head_alpha)
    return total, head_alpha


def _occluder(rng: np.random.Generator, size: int, bird: _Bird) -> tuple[np.ndarray, str]:
    """A branch across the bird or a leaf on it: its coverage (0..1) and its kind."""
    centre = bird.body.mean(axis=0)
    extent = np.ptp(bird.body, axis=0).max()
    if rng.random() < 0.6:
        angle = rng.uniform(0, np.pi)
        direction = np.array([np.cos(angle), np.sin(angle)])
        normal = np.array([-direction[1], direction[0]])
        middle = centre + normal * rng.uniform(-0.5, 0.5) * extent
        points = np.array([middle + direction * t * size + normal * rng.uniform(-4, 4) for t in (-1.5, -0.5, 0.5, 1.5)])
        return coverage([points], size, width=rng.uniform(0.08, 0.18) * extent), "branch"
    radius = rng.uniform(0.18, 0.35) * extent
    leaf = _regular(32) * [radius, radius * rng.uniform(0.35, 0.6)]
    leaf[:, 1] *= np.abs(np.cos(np.linspace(0, np.pi, 32, endpoint=False))) ** 0.3
    where = centre + rng.uniform(-0.5, 0.5, 2) * extent
    return coverage([leaf @ _rotation(rng.uniform(0, np.pi)).T + where], size), "leaf"


def _lone_shape(rng: np.random.Generator, size: int, occupied: np.ndarray) -> np.ndarray | None:
    """A small distractor: a lone wing, a pebble or a ring, clear of ``occupied``."""
    radius = rng.uniform(0.03, 0.08) * size
    kind = rng.integers(3)
    outline = _regular(28) * ([1.0, 0.3] if kind == 0 else [1.0, rng.uniform(0.6, 1.0)])
    for _attempt in range(15):
        centre = rng.uniform(radius + 2, size - radius - 3, 2)
        rotation = _rotation(rng.uniform(0, np.pi))
        polygon = outline @ rotation.T * radius + centre
        holes = [outline @ rotation.T * radius * 0.5 + centre] if kind == 2 else None
        alpha = coverage([polygon], size, holes)
        if not (alpha > 0)[occupied].any():
            return alpha
    return None


def render(rng: np.random.Generator, label: int, size: int) -> Sample:
    g = GENERATOR
    image = _background(rng, size)
    palette = _Palette(rng, image)
    angle = rng.uniform(0, 2 * np.pi)
    light = np.array([np.cos(angle), np.sin(angle)])

    two = rng.random() < g.two_objects_rate
    occupied = np.zeros((size, size), dtype=bool)
    birds: list[_Bird] = []
    for _ in range(2 if two else 1):
        parts, _ = _bird_geometry(rng, label)
        length = rng.uniform(*(g.object_length_two if two else g.object_length)) * size
        bird = _place(rng, parts, size, length, occupied if birds else None)
        if bird is None:
            continue
        birds.append(bird)
        box = np.concatenate([bird.tail, bird.body, *bird.wings, bird.head])
        x0, y0 = np.floor(box.min(axis=0)).astype(int) - 8
        x1, y1 = np.ceil(box.max(axis=0)).astype(int) + 8
        occupied[max(y0, 0):y1, max(x0, 0):x1] = True

    # Headless birds: the same kind of object minus the part that decides the class.
    fakes: list[_Bird] = []
    for _ in range(int(rng.integers(g.headless_birds[0], g.headless_birds[1] + 1))):
        parts, _ = _bird_geometry(rng, None)
        length = rng.uniform(*g.object_length) * size * rng.uniform(0.6, 1.0)
        fake = _place(rng, parts, size, length, occupied)
        if fake is None:
            continue
        fakes.append(fake)
        box = np.concatenate([fake.tail, fake.body, *fake.wings])
        x0, y0 = np.floor(box.min(axis=0)).astype(int) - 4
        x1, y1 = np.ceil(box.max(axis=0)).astype(int) + 4
        occupied[max(y0, 0):y1, max(x0, 0):x1] = True

    # Shadows first (they fall on the ground), then the birds, real and headless, in random order.
    order = rng.permutation(len(birds) + len(fakes))
    everyone = birds + fakes
    if rng.random() < g.shadow_rate:
        for index in order:
            silhouette = np.concatenate([everyone[index].tail, everyone[index].body, *everyone[index].wings])
            _shadow(rng, image, coverage([silhouette], size), light)
    results: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for index in order:
        results[int(index)] = _draw_bird(rng, image, everyone[index], palette, size)
    drawn = [results[i] for i in range(len(birds))]

    for _ in range(int(rng.integers(g.small_distractors[0], g.small_distractors[1] + 1))):
        alpha = _lone_shape(rng, size, occupied)
        if alpha is not None:
            _paint_part(rng, image, alpha, palette.colour())
            occupied |= alpha > 0

    occluders = np.zeros((size, size), np.float32)
    if birds and rng.random() < g.occluder_rate:
        which = int(rng.integers(len(birds)))
        target = birds[which]
        head_zone = ndimage.binary_dilation(drawn[which][1] > 0, iterations=3)
        object_area = (drawn[which][0] >= 0.5).sum()
        for _attempt in range(8):
            alpha, _kind = _occluder(rng, size, target)
            hidden = ((alpha >= 0.5) & (drawn[which][0] >= 0.5)).sum()
            if not (alpha > 0)[head_zone].any() and hidden <= g.occluded_share_max * object_area:
                _paint_part(rng, image, alpha, palette.colour())
                occluders = np.maximum(occluders, alpha)
                break

    image = _finish(rng, image, size, light)
    instances, parts_mask, any_cover = [], np.zeros((size, size), bool), np.zeros((size, size), np.float32)
    for total, head in drawn:
        visible = (total >= 0.5) & (occluders < 0.5)
        if not visible.any():
            continue
        instances.append(visible)
        parts_mask |= (head >= 0.5) & (occluders < 0.5)
        any_cover = np.maximum(any_cover, total * (occluders < 0.5))
    if not instances:
        raise DatasetError("the synthetic generator placed no visible bird (a bug: please report the seed)")
    foreground = np.logical_or.reduce(instances)
    band = ndimage.binary_dilation(foreground, structure=np.ones((3, 3), bool), iterations=g.ignore_band)
    ignore = ((band | (any_cover > 0)) & ~foreground)
    return Sample(image, instances, parts_mask, ignore)


def _finish(rng: np.random.Generator, image: np.ndarray, size: int, light: np.ndarray) -> np.ndarray:
    """A lighting gradient (brighter towards the light) and sensor noise, then 8-bit."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    ramp = ((xx - size / 2) * light[0] + (yy - size / 2) * light[1]) / (size / 2)
    gain = 1 - rng.uniform(0.05, GENERATOR.illumination) * ramp
    noise = rng.standard_normal(image.shape).astype(np.float32) * GENERATOR.noise_std
    return np.clip(np.rint(image * gain[..., None] + noise), 0, 255).astype(np.uint8)
