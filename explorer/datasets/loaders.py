"""One record type for every dataset the explorer evaluates on, and the readers that fill it.

* :func:`load_protocol` reads the WSOL protocol's metadata folders (CUB-200-2011 with boxes,
  OpenImages30k with masks, and the synthetic benchmark, which is written in both styles);
* :func:`load_voc2007` reads a PASCAL VOC 2007 devkit (XML boxes, used for the confidence metrics);
* :func:`load_folder` wraps a folder of plain images (no labels, no ground truth);
* :func:`open_dataset` picks one of them from a short spec such as ``cub:/data/wsol``.

Ground truth follows the protocol exactly: boxes are rescaled to the evaluation size per axis with
``int(coord * size / original_size)``; masks are read as grayscale, nearest-resized (OpenCV's
``INTER_NEAREST``, as the reference does) and thresholded at 0.5, instances are OR-ed, and the
ignore region is what the ignore mask marks outside the foreground.

Metadata problems are reported with the file and the line (``.../localization.txt line 17:
expected 5 comma-separated fields, got 4``). With ``strict=False`` a bad line or a missing file
drops the images it concerns instead, and the dataset lists what it skipped in ``issues``, so an
evaluation can go on and say how many images it left out.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from explorer.datasets.errors import DatasetError
from explorer.images import GALLERY_PREFIX, load_image
from explorer.safe_files import UnsafeFileError, contained_problem, read_regular

__all__ = [
    "IMAGE_EXTENSIONS",
    "VOC_CLASSES",
    "Sample",
    "WsolDataset",
    "load_folder",
    "load_protocol",
    "load_synthetic",
    "load_voc2007",
    "open_dataset",
    "read_mask",
    "rescale_boxes",
]

#: The evaluation resolution of the protocol.
EVAL_SIZE = 224

MAX_METADATA_BYTES = 64 * 2**20  # a metadata text file; CUB's largest is 0.5 MB
MAX_METADATA_LINES = 2_000_000  # lines of one metadata file: each becomes Python objects (~1 kB a line)
MAX_MASK_BYTES = 64 * 2**20
MAX_MASK_PIXELS = 50_000_000  # as explorer.images.load_image caps images
MAX_CLASSES = 100_000  # ImageNet-21k has 21,841
MAX_SIDE = 1_000_000  # pixels: a coordinate beyond this is a mistake (10^30 once overflowed int64)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)

SPECS = "synthetic, synthetic-v1, synthetic:<dir>, cub:<root>, openimages:<root>, voc:<root>, folder:<dir>, gallery"



def _no_boxes() -> np.ndarray:
    return np.zeros((0, 4), dtype=np.int64)


@dataclass(frozen=True, eq=False)
class Sample:
    """One image and its ground truth.

    ``boxes`` are at the protocol's 224 x 224 scale; ``boxes_original`` are the file's inclusive
    pixel boxes and ``original_size`` is (width, height) when the metadata gives it. A dataset with
    masks instead of boxes has ``k = 0`` boxes and lists its instance masks in ``mask_paths``.
    ``part_path`` is the synthetic benchmark's mask of the class-deciding part.
    """

    image_id: str
    image_path: Path
    label: int | None
    boxes: np.ndarray = field(default_factory=_no_boxes)
    boxes_original: np.ndarray = field(default_factory=_no_boxes)
    original_size: tuple[int, int] | None = None
    mask_paths: tuple[Path, ...] = ()
    ignore_path: Path | None = None
    part_path: Path | None = None


class WsolDataset(Sequence[Sample]):
    """An indexable list of :class:`Sample` with the class names and ground-truth readers.

    ``kind`` says what ground truth it has: ``"boxes"``, ``"masks"``, ``"boxes+masks"`` (the
    synthetic benchmark) or ``"none"``. ``issues`` lists what a lenient load skipped, ``skipped``
    how many listed images were left out.
    """

    def __init__(self, name: str, split: str, samples: list[Sample], classes: list[str], kind: str,
                 issues: list[str] | None = None, skipped: int = 0) -> None:
        self.name = name
        self.split = split
        self.samples = samples
        self.classes = classes
        self.kind = kind
        self.issues = issues or []
        self.skipped = skipped

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        return self.samples[index]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def __repr__(self) -> str:
        skipped = f", {self.skipped} skipped" if self.skipped else ""
        return (f"WsolDataset({self.name} {self.split}: {len(self)} images, {len(self.classes)} classes, "
                f"{self.kind}{skipped})")

    def load_image(self, index: int) -> Image.Image:
        """The image as 8-bit RGB, through the explorer's safe decoder."""
        path = self.samples[index].image_path
        if str(path).startswith(GALLERY_PREFIX):  # the sample photos that ship inside packages
            return load_image(str(path))
        return load_image(path)

    def gt_boxes(self, index: int, size: int = EVAL_SIZE) -> np.ndarray:
        """The image's boxes (k x 4, inclusive x0, y0, x1, y1) rescaled to ``size`` x ``size``."""
        sample = self.samples[index]
        if sample.original_size is None:
            return _no_boxes()
        return rescale_boxes(sample.boxes_original, sample.original_size, size)

    def gt_mask(self, index: int, size: int = EVAL_SIZE,
                image_size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(foreground, ignore) boolean ``size`` x ``size`` masks, as the protocol builds them;
        with ``image_size`` (width, height), masks of another size are an error."""
        sample = self.samples[index]
        if not sample.mask_paths:
            raise DatasetError(f"{self.name} has no masks (its ground truth is {self.kind}); use the boxes")
        foreground = np.logical_or.reduce([read_mask(path, size, image_size) for path in sample.mask_paths])
        if sample.ignore_path is None:
            return foreground, np.zeros_like(foreground)
        return foreground, read_mask(sample.ignore_path, size, image_size) & ~foreground

    def part_mask(self, index: int, size: int = EVAL_SIZE) -> np.ndarray:
        """The synthetic benchmark's mask of the class-deciding part, ``size`` x ``size``."""
        path = self.samples[index].part_path
        if path is None:
            raise DatasetError(f"{self.name} records no part masks (only the synthetic benchmark does)")
        return read_mask(path, size)


# ------------------------------------------------------------------- ground-truth geometry


def rescale_boxes(boxes: np.ndarray, original_size: tuple[int, int], size: int = EVAL_SIZE) -> np.ndarray:
    """Boxes in original pixels -> ``size`` scale, per axis, with the protocol's truncation.

    ``int(coord * size / original)``: the multiplication is exact on integers and the division
    is correctly rounded both in Python and in float64, so this matches the reference bit for bit.
    """
    width, height = original_size
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    scaled = np.empty_like(boxes)
    scaled[:, 0::2] = (boxes[:, 0::2] * size / width).astype(np.int64)
    scaled[:, 1::2] = (boxes[:, 1::2] * size / height).astype(np.int64)
    return scaled


def read_mask(path: str | os.PathLike[str], size: int = EVAL_SIZE,
              expected: tuple[int, int] | None = None) -> np.ndarray:
    """One mask PNG as the protocol reads it: grayscale (an RGB ignore mask too), nearest-resized
    to ``size`` x ``size`` with OpenCV, then ``> 0.5``. With ``expected`` (the image's width and
    height), a mask of another size is an error: it cannot be aligned with the image.

    OpenCV rather than Pillow because its ``INTER_NEAREST`` samples ``floor(i * scale)``, not pixel
    centres, and its grayscale weights differ slightly: the protocol's numbers come from OpenCV.
    """
    import cv2  # imported here: ~0.1 s, and only mask datasets need it

    try:
        raw = read_regular(path, MAX_MASK_BYTES)  # not cv2.imread: it mishandles non-ASCII paths
    except UnsafeFileError as exc:
        raise DatasetError(f"{path}: the mask cannot be read ({exc})") from exc
    _check_mask_size(path, raw)
    data = np.frombuffer(raw, dtype=np.uint8)
    grey = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
    if grey is None:
        raise DatasetError(f"{path}: not a readable mask image")
    if expected is not None and (grey.shape[1], grey.shape[0]) != tuple(expected):
        raise DatasetError(f"{path}: the mask is {grey.shape[1]}x{grey.shape[0]} but its image is "
                           f"{expected[0]}x{expected[1]}; masks must have their image's size")
    return cv2.resize(grey, (size, size), interpolation=cv2.INTER_NEAREST) > 0.5


def _check_mask_size(path: str | os.PathLike[str], raw: bytes) -> None:
    """Masks are capped as images are: the pixel count is read from the header, before decoding."""
    import io
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a bomb warning: counted below
            width, height = Image.open(io.BytesIO(raw)).size  # the header only
    except Image.DecompressionBombError as exc:  # beyond Pillow's own limit, far beyond ours
        declared = re.search(r"\((\d+) pixels\)", str(exc))
        raise DatasetError(f"{path}: the mask declares {int(declared.group(1)) if declared else 0:,} pixels, more than "
                           f"the {MAX_MASK_PIXELS:,} allowed (masks are capped as images are)") from exc
    except Exception as exc:  # no header Pillow knows: never handed to a decoder that reads it whole unchecked
        raise DatasetError(f"{path}: not a readable mask image (PNG, as the protocol's, or another format whose "
                           "size can be checked first: JPEG, BMP, TIFF, GIF)") from exc
    if width * height > MAX_MASK_PIXELS:
        raise DatasetError(f"{path}: the mask declares {width * height:,} pixels ({width}x{height}), more than the "
                           f"{MAX_MASK_PIXELS:,} allowed (masks are capped as images are)")


# ---------------------------------------------------------------------------- line reading


class _Report:
    """Strict: the first problem raises. Lenient: problems are kept, and the images they concern
    are remembered so that they can be dropped (and not reported again by the files that follow).
    """

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.issues: list[str] = []
        self.dropped: set[str] = set()

    def problem(self, where: str, message: str, image_id: str | None = None) -> None:
        text = f"{where}: {message}"
        if self.strict:
            raise DatasetError(text)
        self.issues.append(text)
        if image_id is not None:
            self.dropped.add(image_id)


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) pairs of a metadata file.

    The protocol's files end without a newline; one final newline (as editors add) is tolerated,
    and Windows line ends are read as plain ones.
    """
    if (problem := contained_problem(path.parent, path)) is not None and problem != "file not found":
        raise DatasetError(f"{path}: {problem}")  # a metadata file linked out of its folder is never read
    try:
        # utf-8-sig: a byte-order mark (Windows editors write one) is not part of the first id.
        text = read_regular(path, MAX_METADATA_BYTES).decode("utf-8-sig")
    except UnsafeFileError as exc:
        raise DatasetError(str(exc)) from exc
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from exc
    if not text:
        return []
    if text.count("\n") > MAX_METADATA_LINES:
        raise DatasetError(f"{path}: more than {MAX_METADATA_LINES:,} lines; a dataset split here holds fewer images "
                           "(split the file, or evaluate a part with --limit)")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [(n, line.removesuffix("\r")) for n, line in enumerate(lines, start=1)]


def _to_int(text: str) -> int | None:
    return int(text) if re.fullmatch(r"[+-]?\d{1,30}", text.strip()) else None


def _unsafe_path(text: str) -> str | None:
    """Why a path read from a metadata file must not be used, or None when it is fine.

    Paths in metadata are relative to a dataset folder; an absolute path or a '..' would read
    files outside it (a metadata file from elsewhere should not be able to point anywhere).
    """
    if not text:
        return "empty path"
    if "\x00" in text:
        return "the path contains a NUL character"
    if text.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", text):
        return f"'{text}' is an absolute path; paths must be relative to the dataset folder"
    if ".." in re.split(r"[\\/]", text):
        return f"'{text}' leaves the dataset folder ('..' is not allowed)"
    return None


def _join(root: Path, relative: str) -> Path:
    return root.joinpath(*PurePosixPath(relative.replace("\\", "/")).parts)


# ------------------------------------------------------------------------- protocol folders


def load_protocol(
    metadata_dir: str | os.PathLike[str],
    image_root: str | os.PathLike[str],
    split: str,
    kind: str = "auto",
    *,
    mask_root: str | os.PathLike[str] | None = None,
    strict: bool = True,
) -> WsolDataset:
    """Read ``<metadata_dir>/<split>/{image_ids,class_labels,image_sizes,localization}.txt``.

    ``metadata_dir`` is e.g. ``metadata/CUB``; image ids are paths relative to ``image_root``,
    mask paths relative to ``mask_root`` (default: ``image_root``, as OpenImages lays them out).
    ``kind`` is ``"boxes"`` (lines ``image_id,x0,y0,x1,y1``), ``"masks"``
    (``image_id,mask_png,ignore_png``) or ``"auto"`` (from the first line's field count).
    ``image_sizes.txt`` may be empty or absent for masks. An optional ``part_masks.txt``
    (``image_id,part_png``, the synthetic benchmark's) fills :attr:`Sample.part_path`; an optional
    ``<metadata_dir>/class_names.txt`` names the classes (one per line, in label order); otherwise
    the names are the images' folder names when each class has exactly one.
    """
    if kind not in ("auto", "boxes", "masks"):
        raise DatasetError(f"kind must be 'auto', 'boxes' or 'masks', not '{kind}'")
    metadata_dir, image_root = Path(metadata_dir), Path(image_root)
    meta = metadata_dir / _check_split(split)
    if not meta.is_dir():
        raise DatasetError(f"{meta}: metadata folder not found (it should hold image_ids.txt, class_labels.txt, "
                           "image_sizes.txt and localization.txt)")
    files = _SplitFiles(meta, _Report(strict))
    if kind == "auto":
        kind = _localization_kind(meta / "localization.txt")
    truth = _GroundTruth(kind, image_root, Path(mask_root) if mask_root is not None else image_root)

    for where, (image_id, label) in files.rows("class_labels.txt", "image_id,label"):
        number = _to_int(label)
        if number is None or number < 0:
            files.report.problem(where, f"the label '{label}' is not a whole number >= 0", image_id)
        elif number >= MAX_CLASSES:
            files.report.problem(where, f"the label {number} is not below {MAX_CLASSES:,} (no classifier here has "
                                        "that many classes)", image_id)
        elif image_id in truth.labels:
            files.report.problem(where, f"a second label for '{image_id}'", image_id)
        else:
            truth.labels[image_id] = number

    for where, (image_id, *size) in files.rows("image_sizes.txt", "image_id,width,height", optional=True):
        width, height = (_to_int(v) for v in size)
        if width is None or height is None or width <= 0 or height <= 0 or max(width, height) > MAX_SIDE:
            files.report.problem(where, f"the size '{','.join(size)}' is not two whole numbers > 0", image_id)
        else:
            truth.sizes[image_id] = (width, height)

    if kind == "boxes":
        for where, (image_id, *coords) in files.rows("localization.txt", "image_id,x0,y0,x1,y1"):
            parsed = [_to_int(v) for v in coords]
            box = [c for c in parsed if c is not None and 0 <= c <= MAX_SIDE]
            if len(box) != 4 or len(parsed) != 4:
                files.report.problem(where, f"the box '{','.join(coords)[:80]}' is not four whole numbers from 0 to "
                                            f"{MAX_SIDE:,}", image_id)
            elif box[2] < box[0] or box[3] < box[1]:
                files.report.problem(where, f"the box '{','.join(coords)}' is reversed (x1 < x0 or y1 < y0)",
                                     image_id)
            else:
                truth.boxes.setdefault(image_id, []).append(box)
    else:
        for where, (image_id, mask, ignore) in files.rows("localization.txt", "image_id,mask_png,ignore_png"):
            if unsafe := _unsafe_path(mask) or (_unsafe_path(ignore) if ignore else None):
                files.report.problem(where, unsafe, image_id)
            elif image_id in truth.masks and ignore:
                files.report.problem(where, "only an image's first mask line may name an ignore mask "
                                            "(later instance lines end with a comma)", image_id)
            else:
                if image_id not in truth.masks:
                    truth.ignores[image_id] = (where, ignore) if ignore else None
                truth.masks.setdefault(image_id, []).append((where, mask))

    for where, (image_id, part) in files.rows("part_masks.txt", "image_id,part_png", optional=True):
        if unsafe := _unsafe_path(part):
            files.report.problem(where, unsafe, image_id)
        else:
            truth.parts[image_id] = (where, part)

    names_file = metadata_dir / "class_names.txt"
    class_names = [text for _, text in _read_lines(names_file)] if names_file.exists() else None
    samples = []
    for image_id, n in files.listed.items():
        if image_id not in files.report.dropped:
            sample = truth.sample(files.report, f"{files.ids_file} line {n}", image_id, class_names)
            if sample is not None:
                samples.append(sample)
    classes = class_names if class_names is not None else _folder_class_names(
        [(truth.labels[s.image_id], s.image_id) for s in samples])
    return WsolDataset(metadata_dir.name, split, samples, classes, kind, files.report.issues,
                       skipped=files.line_count - len(samples))


def _check_split(split: str) -> str:
    """A split is a plain name (it becomes a folder or file name), never a path."""
    if not re.fullmatch(r"[\w-]+", split):
        raise DatasetError(f"'{split}' is not a split name (like train, val or test)")
    return split


def _localization_kind(path: Path) -> str:
    """"boxes" or "masks", from the number of fields on the first line of localization.txt."""
    lines = _read_lines(path)
    if not lines:
        raise DatasetError(f"{path}: the file is empty, so it is neither boxes nor masks")
    count = lines[0][1].count(",") + 1
    if count not in (3, 5):
        raise DatasetError(f"{path} line 1: expected 5 fields (image_id,x0,y0,x1,y1: boxes) or 3 "
                           f"(image_id,mask_png,ignore_png: masks), got {count}")
    return "boxes" if count == 5 else "masks"


class _SplitFiles:
    """One split's metadata folder: its ``image_ids.txt``, and the other files' lines checked
    against it, each problem reported once."""

    def __init__(self, meta: Path, report: _Report) -> None:
        self.meta = meta
        self.report = report
        self.ids_file = meta / "image_ids.txt"
        lines = _read_lines(self.ids_file)
        self.line_count = len(lines)
        self.listed: dict[str, int] = {}  # image id -> its line in image_ids.txt
        for n, text in lines:
            where = f"{self.ids_file} line {n}"
            if "," in text:
                report.problem(where, f"expected 1 field (an image id), got {text.count(',') + 1}")
            elif unsafe := _unsafe_path(text):
                report.problem(where, unsafe, text)
            elif text in self.listed:
                report.problem(where, f"image id '{text}' is listed twice (also line {self.listed[text]})", text)
            else:
                self.listed[text] = n

    def rows(self, name: str, layout: str, *, optional: bool = False) -> Iterator[tuple[str, list[str]]]:
        """(where, fields) of each line of ``name`` with the right number of fields
        and a listed image id; the others are reported (an image already dropped, silently)."""
        path = self.meta / name
        if optional and not path.exists():
            return
        expected = layout.count(",") + 1
        for n, text in _read_lines(path):
            where = f"{path} line {n}"
            fields = text.split(",")
            if len(fields) != expected:
                # The first field is probably still the image id: drop that image rather than
                # keep it with part of its ground truth missing.
                self.report.problem(where, f"expected {expected} comma-separated fields ({layout}), got "
                                           f"{len(fields)}", fields[0] if fields[0] in self.listed else None)
            elif fields[0] in self.report.dropped:
                continue
            elif fields[0] not in self.listed:
                self.report.problem(where, f"image id '{fields[0]}' is not listed in image_ids.txt")
            else:
                yield where, fields


@dataclass
class _GroundTruth:
    """What the files say about each image id, assembled into samples at the end."""

    kind: str
    image_root: Path
    mask_root: Path
    labels: dict[str, int] = field(default_factory=dict)
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    boxes: dict[str, list[list[int]]] = field(default_factory=dict)
    masks: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # (where, path) per instance
    ignores: dict[str, tuple[str, str] | None] = field(default_factory=dict)
    parts: dict[str, tuple[str, str]] = field(default_factory=dict)

    def sample(self, report: _Report, where: str, image_id: str, class_names: list[str] | None) -> Sample | None:
        """One image's record; None (reported at the line that names the missing thing) when
        something is missing."""
        label = self.labels.get(image_id)
        if label is None:
            report.problem(where, f"'{image_id}' has no label in class_labels.txt", image_id)
            return None
        if class_names is not None and label >= len(class_names):
            report.problem(where, f"the label {label} of '{image_id}' is not below the {len(class_names)} "
                                  "classes of class_names.txt", image_id)
            return None
        image_path = _join(self.image_root, image_id)
        located = [(where, image_path)]
        size = self.sizes.get(image_id)
        boxes, scaled = _no_boxes(), _no_boxes()
        mask_paths: tuple[Path, ...] = ()
        ignore_path = part_path = None
        if self.kind == "boxes":
            if image_id not in self.boxes:
                report.problem(where, f"'{image_id}' has no box in localization.txt", image_id)
                return None
            if size is None:
                report.problem(where, f"'{image_id}' has no size in image_sizes.txt (needed to rescale its "
                                      "boxes)", image_id)
                return None
            boxes = np.array(self.boxes[image_id], dtype=np.int64)
            scaled = rescale_boxes(boxes, size)
        else:
            if image_id not in self.masks:
                report.problem(where, f"'{image_id}' has no mask in localization.txt", image_id)
                return None
            mask_paths = tuple(_join(self.mask_root, mask) for _, mask in self.masks[image_id])
            located += [(line, path) for (line, _), path in zip(self.masks[image_id], mask_paths)]
            if (ignore := self.ignores.get(image_id)) is not None:
                ignore_path = _join(self.mask_root, ignore[1])
                located.append((ignore[0], ignore_path))
        if image_id in self.parts:
            part_path = _join(self.mask_root, self.parts[image_id][1])
            located.append((self.parts[image_id][0], part_path))
        for line, path in located:
            if (problem := contained_problem(self.image_root if path == image_path else self.mask_root, path)):
                report.problem(line, f"{problem}: {path}", image_id)
                return None
        if size is not None and self.kind == "boxes":
            width, height = size
            outside = [b for b in self.boxes[image_id] if b[2] >= width or b[3] >= height]
            if outside:  # refused, not clipped: a box past the image means the size or the box is wrong
                report.problem(where, f"the box {outside[0]} of '{image_id}' lies outside its {width}x{height} "
                                      "image (image_sizes.txt)", image_id)
                return None
        return Sample(image_id, image_path, label, scaled, boxes, size, mask_paths, ignore_path, part_path)


def _folder_class_names(labelled: list[tuple[int, str]]) -> list[str]:
    """Class names from the image folders (CUB's ``001.Black_footed_Albatross``) when each label
    has exactly one folder and no two labels share one; else ``class <label>``."""
    if not labelled:
        return []
    folders: dict[int, set[str]] = {}
    for label, image_id in labelled:
        folders.setdefault(label, set()).add(PurePosixPath(image_id).parent.name)
    names = [f"class {label}" for label in range(max(folders) + 1)]
    single = {label: next(iter(f)) for label, f in folders.items() if len(f) == 1}
    if len(single) == len(folders) and all(single.values()) and len(set(single.values())) == len(single):
        for label, name in single.items():
            names[label] = name
    return names


# ------------------------------------------------------------------------ the synthetic set


def load_synthetic(root: str | os.PathLike[str] | None = None, split: str = "test", *,
                   strict: bool = True) -> WsolDataset:
    """The synthetic benchmark with boxes, masks and part masks together.

    ``root`` defaults to the cached copy (generated on first use, see
    :func:`explorer.datasets.synthetic.ensure_synthetic`). Both metadata styles are read and
    merged, so a sample has its boxes (``metadata/SYNTHETIC``) and its instance and ignore masks
    (``metadata/SYNTHETIC_MASKS``).
    """
    from explorer.datasets.synthetic import NAME, ensure_synthetic

    root = Path(root) if root is not None else ensure_synthetic()
    with_masks = load_protocol(root / "metadata" / f"{NAME}_MASKS", root, split, "masks", strict=strict)
    with_boxes = load_protocol(root / "metadata" / NAME, root, split, "boxes", strict=strict)
    by_id = {sample.image_id: sample for sample in with_boxes}
    samples = [replace(sample, boxes=by_id[sample.image_id].boxes,
                       boxes_original=by_id[sample.image_id].boxes_original,
                       original_size=by_id[sample.image_id].original_size)
               for sample in with_masks if sample.image_id in by_id]
    issues = with_masks.issues + with_boxes.issues
    return WsolDataset(NAME, split, samples, with_masks.classes, "boxes+masks", issues,
                       skipped=len(with_masks) + with_masks.skipped - len(samples))


# ------------------------------------------------------------------------------ VOC 2007


def load_voc2007(root: str | os.PathLike[str], split: str = "val", *, strict: bool = True) -> WsolDataset:
    """PASCAL VOC 2007: ``root`` is the ``VOCdevkit`` folder or its ``VOC2007`` folder.

    Reads ``ImageSets/Main/<split>.txt``, then ``Annotations/<id>.xml`` and
    ``JPEGImages/<id>.jpg`` for each id. Every object's box is kept (VOC's 1-based
    xmin/ymin/xmax/ymax become 0-based inclusive), and the label is the class of the largest
    object (the first listed among equals), an index into :data:`VOC_CLASSES`.
    """
    root = Path(root)
    base = root / "VOC2007" if (root / "VOC2007").is_dir() else root
    for needed in ("JPEGImages", "Annotations", "ImageSets/Main"):
        if not (base / needed).is_dir():
            raise DatasetError(f"{base}: not a VOC2007 folder (no {needed}/); give the VOCdevkit or the "
                               "VOC2007 folder")
    list_file = base / "ImageSets" / "Main" / f"{_check_split(split)}.txt"
    report = _Report(strict)
    samples: list[Sample] = []
    lines = _read_lines(list_file)
    listed: dict[str, int] = {}
    for n, text in lines:
        where = f"{list_file} line {n}"
        image_id = text.strip()
        if not image_id or re.search(r"[\\/\s]", image_id) or image_id == "..":
            report.problem(where, f"'{text}' is not an image id (one name per line, like 000005)")
            continue
        if image_id in listed:  # as the protocol's loaders: an image counts once
            report.problem(where, f"image id '{image_id}' is listed twice (also line {listed[image_id]})")
            continue
        listed[image_id] = n
        xml_path = base / "Annotations" / f"{image_id}.xml"
        image_path = base / "JPEGImages" / f"{image_id}.jpg"
        problem = next(((p, path) for path in (xml_path, image_path) if (p := contained_problem(base, path))), None)
        if problem is not None:
            report.problem(where, f"{problem[0]}: {problem[1]}")
            continue
        sample = _voc_sample(report, xml_path, image_id, image_path)
        if sample is not None:
            samples.append(sample)
    return WsolDataset("VOC2007", split, samples, list(VOC_CLASSES), "boxes", report.issues,
                       skipped=len(lines) - len(samples))


def _voc_sample(report: _Report, xml_path: Path, image_id: str, image_path: Path) -> Sample | None:
    try:
        annotation = ElementTree.fromstring(read_regular(xml_path, MAX_METADATA_BYTES))
    except UnsafeFileError as exc:
        report.problem(f"{xml_path}", str(exc))
        return None
    except ElementTree.ParseError as exc:
        report.problem(f"{xml_path} line {exc.position[0]}", f"not well-formed XML ({exc})")
        return None
    width, height = (_to_int(annotation.findtext(f"size/{tag}", "")) for tag in ("width", "height"))
    if width is None or height is None or not 0 < width <= MAX_SIDE or not 0 < height <= MAX_SIDE:
        report.problem(f"{xml_path}", f"<size> needs whole-number <width> and <height> from 1 to {MAX_SIDE:,}")
        return None
    labels, boxes = [], []
    for k, obj in enumerate(annotation.iter("object"), start=1):
        where = f"{xml_path} object {k}"
        name = (obj.findtext("name") or "").strip()
        if name not in VOC_CLASSES:
            report.problem(where, f"unknown class '{name}' (not one of the 20 VOC classes)")
            return None
        parsed = [_to_int(obj.findtext(f"bndbox/{tag}", "")) for tag in ("xmin", "ymin", "xmax", "ymax")]
        coords = [c for c in parsed if c is not None and 1 <= c <= MAX_SIDE]
        if len(coords) != 4:
            report.problem(where, f"<bndbox> needs whole-number xmin, ymin, xmax, ymax from 1 to {MAX_SIDE:,} "
                                  "(VOC is 1-based)")
            return None
        x0, y0, x1, y1 = (c - 1 for c in coords)  # 1-based inclusive -> 0-based inclusive
        if x1 < x0 or y1 < y0:
            report.problem(where, f"the box {coords} is reversed (xmax < xmin or ymax < ymin)")
            return None
        if x1 >= width or y1 >= height:
            report.problem(where, f"the box {coords} lies outside the {width}x{height} image (<size>)")
            return None
        labels.append(VOC_CLASSES.index(name))
        boxes.append((x0, y0, x1, y1))
    if not boxes:
        report.problem(f"{xml_path}", "no <object> in the annotation")
        return None
    box_array = np.array(boxes, dtype=np.int64)
    areas = (box_array[:, 2] - box_array[:, 0] + 1) * (box_array[:, 3] - box_array[:, 1] + 1)
    label = labels[int(np.argmax(areas))]  # argmax: the first of equal areas
    size = (width, height)
    return Sample(image_id, image_path, label, rescale_boxes(box_array, size), box_array, size)


# ---------------------------------------------------------------------------- plain folders


def load_folder(directory: str | os.PathLike[str]) -> WsolDataset:
    """The images directly inside ``directory`` (by extension, sorted by name; hidden files and
    everything else are ignored), without labels or ground truth."""
    folder = Path(directory)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: folder not found")
    files = sorted(p for p in folder.iterdir()
                   if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
                   and contained_problem(folder, p) is None)  # regular files that stay in the folder
    if not files:
        raise DatasetError(f"{folder}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)})")
    samples = [Sample(path.name, path, None) for path in files]
    return WsolDataset(folder.name or str(folder), "all", samples, [], "none")


def load_gallery() -> WsolDataset:
    """The sample photos (scikit-image, matplotlib, scikit-learn) as a dataset without ground truth:
    what the confidence metrics run on out of the box."""
    from explorer.images import gallery_names

    samples = [Sample(name, Path(GALLERY_PREFIX + name), None) for name in gallery_names()]
    return WsolDataset("gallery", "all", samples, [], "none")


# ------------------------------------------------------------------------------------ specs


def open_dataset(
    spec: str,
    split: str = "test",
    *,
    strict: bool = True,
    metadata_dir: str | os.PathLike[str] | None = None,
    image_root: str | os.PathLike[str] | None = None,
    mask_root: str | os.PathLike[str] | None = None,
) -> WsolDataset:
    """A dataset from a short spec: ``synthetic`` (version 2), ``synthetic-v1``, ``synthetic:<dir>``, ``cub:<root>``,
    ``openimages:<root>``, ``voc:<root>`` or ``folder:<dir>``.

    ``cub:<root>`` expects the protocol repository's layout: ``<root>/metadata/CUB/<split>/`` and
    the images under ``<root>/CUB`` (or ``<root>/CUB_200_2011/images``, as the archive unpacks).
    ``openimages:<root>`` expects ``<root>/metadata/OpenImages/<split>/`` and images and masks under
    ``<root>/OpenImages``. ``metadata_dir``, ``image_root`` and ``mask_root`` override those.
    """
    kind, _, arg = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "synthetic":
        return load_synthetic(arg or None, split, strict=strict)
    if kind == "synthetic-v1" and not arg:  # kept for teaching; see synthetic.V1_WEAKNESS
        from explorer.datasets.synthetic import ensure_synthetic

        return load_synthetic(ensure_synthetic(number=1), split, strict=strict)
    if kind == "gallery":
        return load_gallery()
    if kind in ("cub", "openimages", "voc", "folder") and not arg:
        raise DatasetError(f"'{spec}' needs a folder after the colon, like {kind}:/data/...")
    root = Path(arg).expanduser()
    if kind == "cub":
        images = Path(image_root) if image_root else _first_dir(root, ("CUB", "CUB_200_2011/images"))
        return load_protocol(metadata_dir or root / "metadata" / "CUB", images, split, "boxes", strict=strict)
    if kind == "openimages":
        images = Path(image_root) if image_root else root / "OpenImages"
        return load_protocol(metadata_dir or root / "metadata" / "OpenImages", images, split, "masks",
                             mask_root=mask_root, strict=strict)
    if kind == "voc":
        return load_voc2007(root, split, strict=strict)
    if kind == "folder":
        return load_folder(root)
    raise DatasetError(f"unknown dataset '{spec}'; use one of: {SPECS}")


def _first_dir(root: Path, candidates: tuple[str, ...]) -> Path:
    for candidate in candidates:
        if (root / candidate).is_dir():
            return root / candidate
    raise DatasetError(f"{root}: no image folder found (looked for {', '.join(candidates)}); "
                       "pass image_root to say where the images are")
