"""Datasets: the synthetic benchmark generator and the protocol / VOC / folder loaders.

The fixtures are written here, byte by byte, in the exact on-disk formats (no newline after the
last line, repeated ids for several boxes, an empty ignore field, an 8-bit RGB ignore mask), so the
loaders are tested against the formats rather than against their own writer.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from explorer.cli import main
from explorer.datasets import (
    SYNTHETIC_CLASSES,
    DatasetError,
    ensure_synthetic,
    load_folder,
    load_protocol,
    load_synthetic,
    load_voc2007,
    make_synthetic,
    open_dataset,
    read_manifest,
    rescale_boxes,
)
from explorer.datasets.preview import preview_sheet
from explorer.datasets.synthetic import params_hash

SMALL = {"train": 12, "val": 4, "test": 4}


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("synthetic") / "seed0", seed=0, sizes=SMALL)


# ----------------------------------------------------------------------------- synthetic


def test_same_seed_gives_the_same_bytes_and_another_seed_does_not(synthetic, tmp_path):
    again = make_synthetic(tmp_path / "again", seed=0, sizes=SMALL)
    other = make_synthetic(tmp_path / "other", seed=1, sizes=SMALL)
    first = tree_digest(synthetic)
    assert tree_digest(again) == first
    assert len(first) > 20 * 4  # image, mask(s), ignore, part per image, plus metadata
    images = {digest for name, digest in first.items() if name.startswith("images/")}
    other_images = {digest for name, digest in tree_digest(other).items() if name.startswith("images/")}
    assert len(images) == len(other_images) == sum(SMALL.values()) and not images & other_images


def test_masks_are_binary_and_boxes_are_their_tight_boxes(synthetic):
    data = load_synthetic(synthetic, "train")
    assert len(data) == SMALL["train"] and data.kind == "boxes+masks"
    for index, sample in enumerate(data):
        assert len(sample.mask_paths) == len(sample.boxes_original) >= 1
        for path, box in zip(sample.mask_paths, sample.boxes_original):
            image = Image.open(path)
            assert image.mode == "1" and image.size == (224, 224)  # 1-bit, original size
            mask = np.asarray(image)
            ys, xs = np.nonzero(mask)
            assert box.tolist() == [xs.min(), ys.min(), xs.max(), ys.max()]
        assert Image.open(sample.ignore_path).mode == "RGB"  # as OpenImages' may be
        foreground, ignore = data.gt_mask(index)
        assert ignore.any() and not (ignore & foreground).any()
        assert (data.gt_boxes(index) == sample.boxes_original).all()  # 224 -> 224


def test_the_class_deciding_part_is_inside_the_object_and_small(synthetic):
    data = load_synthetic(synthetic, "train")
    fractions = []
    for index in range(len(data)):
        foreground, _ = data.gt_mask(index)
        part = data.part_mask(index)
        assert part.any() and not (part & ~foreground).any()
        fractions.append(part.sum() / foreground.sum())
    assert 0.05 < min(fractions) and max(fractions) < 0.22  # the head: 8-19 % of the bird in the full set
    manifest = read_manifest(synthetic)
    assert 0.08 < manifest["part_area_fraction"]["train"]["mean"] < 0.16
    assert [c["name"] for c in manifest["classes"]] == [c.name for c in SYNTHETIC_CLASSES]
    assert manifest["counts"]["train"]["images"] == SMALL["train"]
    assert (synthetic / "DONE").read_text() == manifest["params_hash"] == params_hash(0, SMALL, 224)


def test_metadata_has_no_final_newline_and_parses_back_in_both_styles(synthetic):
    texts = list((synthetic / "metadata").rglob("*.txt"))
    assert len(texts) == 2 * (1 + 3 * 5)
    for path in texts:
        content = path.read_bytes()
        assert not content.endswith(b"\n") and b" " not in content and b"\r" not in content, path
    boxes = load_protocol(synthetic / "metadata" / "SYNTHETIC", synthetic, "test")
    masks = load_protocol(synthetic / "metadata" / "SYNTHETIC_MASKS", synthetic, "test")
    assert (boxes.kind, masks.kind) == ("boxes", "masks")
    assert [s.image_id for s in boxes] == [s.image_id for s in masks]
    assert boxes.classes == masks.classes == [c.name for c in SYNTHETIC_CLASSES]
    assert masks[0].original_size is None  # OpenImages style: image_sizes.txt is empty
    lines = (synthetic / "metadata/SYNTHETIC_MASKS/train/localization.txt").read_text().split("\n")
    assert all(line.count(",") == 2 for line in lines)
    assert all(not line.endswith(",") for line in lines[:1])


def test_an_existing_folder_is_kept_and_an_interrupted_run_leaves_nothing(synthetic, tmp_path):
    with pytest.raises(DatasetError, match="not empty"):
        make_synthetic(synthetic, sizes=SMALL)

    seen = []

    def interrupt_after_three(_n):
        seen.append(1)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        make_synthetic(tmp_path / "cut", sizes=SMALL, progress=interrupt_after_three)
    assert list(tmp_path.iterdir()) == []


def test_ensure_synthetic_generates_once_and_replaces_a_stale_copy(tmp_path):
    first = ensure_synthetic(tmp_path, sizes={"test": 3})
    assert first.parent == tmp_path and first.name.startswith("synthetic-v2-seed0-")
    stamp = (first / "DONE").stat().st_mtime_ns
    assert ensure_synthetic(tmp_path, sizes={"test": 3}) == first
    assert (first / "DONE").stat().st_mtime_ns == stamp
    (first / "DONE").write_text("an older version")
    assert ensure_synthetic(tmp_path, sizes={"test": 3}) == first
    assert (first / "DONE").read_text() == params_hash(0, {"test": 3}, 224)
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name]  # no leftovers


def test_version_2_has_twenty_classes_decided_by_the_head_and_names_the_classifiers_use(synthetic):
    from explorer.classifiers import SYNTHETIC_CLASS_NAMES
    from explorer.datasets.synthetic import class_names

    manifest = read_manifest(synthetic)
    assert manifest["version"] == 2 and len(manifest["classes"]) == 20
    assert class_names(2) == [c["name"] for c in manifest["classes"]] == list(SYNTHETIC_CLASS_NAMES)
    assert len({c["part"] for c in manifest["classes"]}) == 20  # every class has its own head
    assert "weakness" not in manifest


def test_version_1_stays_reachable_with_its_weakness_stated(tmp_path):
    from explorer.datasets.synthetic import V1_WEAKNESS, class_names

    root = make_synthetic(tmp_path / "v1", sizes={"test": 5}, number=1)
    manifest = read_manifest(root)
    assert manifest["version"] == 1 and manifest["weakness"] == V1_WEAKNESS and "saturation" in V1_WEAKNESS
    assert class_names(1) == ["disc", "spike", "hammer", "star", "fork"] == load_synthetic(root, "test").classes
    assert params_hash(0, {"test": 5}, 224, 1) != params_hash(0, {"test": 5}, 224, 2)
    v1 = ensure_synthetic(tmp_path, sizes={"test": 2}, number=1)
    v2 = ensure_synthetic(tmp_path, sizes={"test": 2})
    assert v1.name.startswith("synthetic-v1-") and v2.name.startswith("synthetic-v2-") and v1 != v2
    with pytest.raises(DatasetError, match="versions 1, 2"):
        make_synthetic(tmp_path / "v3", sizes={"test": 1}, number=3)


def test_version_1_still_generates_the_bytes_its_classifiers_were_trained_on():
    from explorer.backbones import CHECKPOINT_DIR
    from explorer.datasets.synthetic import V1_SIZES

    for name in ("synthetic_v1_lite0", "synthetic_v1_cnn"):
        card = json.loads((CHECKPOINT_DIR / f"{name}.json").read_text())
        assert params_hash(0, V1_SIZES, 224, 1) == card["dataset"]["params_hash"] == "56a0462bf91fb430"


def test_version_2_edges_are_anti_aliased_and_mixed_pixels_are_ignored():
    from explorer.datasets import synthetic_v2

    sample = synthetic_v2.render(np.random.default_rng([0, 1, 2]), 7, 224)
    foreground = np.logical_or.reduce(sample.instances)
    assert sample.part.any() and not (sample.part & ~foreground).any()
    assert not (sample.ignore & foreground).any()
    # Every pixel touching the object from outside is ignored (its colour mixes bird and ground).
    outside_neighbours = ndimage.binary_dilation(foreground) & ~foreground
    assert sample.ignore[outside_neighbours].all()
    # Anti-aliasing: the edge has intermediate colours, the coverage of a polygon is fractional.
    cover = synthetic_v2.coverage([np.array([(10.3, 10.0), (50.7, 12.0), (30.0, 60.2)])], 64)
    assert ((cover > 0.05) & (cover < 0.95)).sum() > 40 and cover.max() == 1.0


# ---------------------------------------------------------------------- protocol fixtures


def write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("\n".join(lines).encode())


def write_image(path: Path, size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (120, 80, 40)).save(path)


CUB_IDS = ["001.Albatross/a_1.jpg", "002.Gull/g_1.jpg", "002.Gull/g_2.jpg"]


@pytest.fixture
def cub(tmp_path) -> Path:
    """A CUB-style folder: two boxes for the first image (its id repeated), no final newlines."""
    meta = tmp_path / "metadata" / "CUB" / "test"
    sizes = {CUB_IDS[0]: (500, 335), CUB_IDS[1]: (300, 400), CUB_IDS[2]: (224, 224)}
    write_lines(meta / "image_ids.txt", CUB_IDS)
    write_lines(meta / "class_labels.txt", [f"{CUB_IDS[0]},0", f"{CUB_IDS[1]},1", f"{CUB_IDS[2]},1"])
    write_lines(meta / "image_sizes.txt", [f"{i},{w},{h}" for i, (w, h) in sizes.items()])
    write_lines(meta / "localization.txt", [f"{CUB_IDS[0]},60,27,385,331", f"{CUB_IDS[0]},1,2,499,334",
                                            f"{CUB_IDS[1]},10,20,299,399", f"{CUB_IDS[2]},0,0,223,223"])
    for image_id, size in sizes.items():
        write_image(tmp_path / "CUB" / image_id, size)
    return tmp_path


def test_cub_style_boxes_with_repeated_ids_are_rescaled_per_axis(cub):
    data = open_dataset(f"cub:{cub}", "test")
    assert len(data) == 3 and data.kind == "boxes" and data.name == "CUB"
    assert data.classes == ["001.Albatross", "002.Gull"]
    first = data[0]
    assert first.original_size == (500, 335) and first.label == 0
    assert first.boxes_original.tolist() == [[60, 27, 385, 331], [1, 2, 499, 334]]
    expected = [[int(60 * 224 / 500), int(27 * 224 / 335), int(385 * 224 / 500), int(331 * 224 / 335)],
                [int(1 * 224 / 500), int(2 * 224 / 335), int(499 * 224 / 500), int(334 * 224 / 335)]]
    assert first.boxes.tolist() == expected == data.gt_boxes(0).tolist()
    assert data.gt_boxes(1, size=100).tolist() == [[int(10 * 100 / 300), int(20 * 100 / 400), 99, 99]]
    assert data.load_image(0).size == (500, 335)
    with pytest.raises(DatasetError, match="no masks"):
        data.gt_mask(0)


def test_cub_images_in_the_archive_layout_and_overridden_roots(cub):
    (cub / "CUB_200_2011").mkdir()
    (cub / "CUB").rename(cub / "CUB_200_2011" / "images")
    assert len(open_dataset(f"cub:{cub}", "test")) == 3
    moved = cub / "elsewhere"
    (cub / "CUB_200_2011" / "images").rename(moved)
    with pytest.raises(DatasetError, match="no image folder found"):
        open_dataset(f"cub:{cub}", "test")
    assert len(open_dataset(f"cub:{cub}", "test", image_root=moved)) == 3


def test_box_rescale_is_the_protocol_truncation_per_axis():
    rng = np.random.default_rng(0)
    for _ in range(200):
        width, height = (int(v) for v in rng.integers(1, 5000, 2))
        box = [int(rng.integers(0, width)), int(rng.integers(0, height)),
               int(rng.integers(0, width)), int(rng.integers(0, height))]
        expected = [int(box[0] * 224 / width), int(box[1] * 224 / height),
                    int(box[2] * 224 / width), int(box[3] * 224 / height)]
        assert rescale_boxes(np.array([box]), (width, height)).tolist() == [expected]


def save_bitmap(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask).save(path)  # bool -> mode "1": a 1-bit PNG


@pytest.fixture
def openimages(tmp_path) -> Path:
    """Two instances of one image (the second line ends with a comma), an 8-bit RGB ignore PNG,
    an image whose single line has an empty ignore field, and an empty image_sizes.txt."""
    root = tmp_path / "OpenImages"
    meta = tmp_path / "metadata" / "OpenImages" / "test"
    first, second = "test/01226z/aaa.jpg", "test/0k4j/bbb.jpg"
    write_image(root / first, (448, 336))
    write_image(root / second, (300, 200))
    left = np.zeros((336, 448), bool)
    left[10:100, 20:200] = True
    right = np.zeros((336, 448), bool)
    right[200:300, 300:440] = True
    save_bitmap(root / "test/01226z/aaa_m01226z_1.png", left)
    save_bitmap(root / "test/01226z/aaa_m01226z_2.png", right)
    ignore = np.zeros((336, 448, 3), np.uint8)
    ignore[0:150, 0:448] = (255, 255, 255)  # overlaps the first instance: foreground wins
    Image.fromarray(ignore).save(root / "test/01226z/aaa_ignore.png")
    save_bitmap(root / "test/0k4j/bbb_m0k4j_1.png", np.ones((200, 300), bool))
    write_lines(meta / "image_ids.txt", [first, second])
    write_lines(meta / "class_labels.txt", [f"{first},0", f"{second},1"])
    write_lines(meta / "image_sizes.txt", [])
    write_lines(meta / "localization.txt", [
        f"{first},test/01226z/aaa_m01226z_1.png,test/01226z/aaa_ignore.png",
        f"{first},test/01226z/aaa_m01226z_2.png,",
        f"{second},test/0k4j/bbb_m0k4j_1.png,",
    ])
    return tmp_path


def test_openimages_masks_are_or_ed_and_ignore_excludes_the_foreground(openimages):
    data = open_dataset(f"openimages:{openimages}", "test")
    assert data.kind == "masks" and data.classes == ["01226z", "0k4j"]
    assert Image.open(data[0].ignore_path).mode == "RGB"
    assert len(data[0].mask_paths) == 2 and data[1].ignore_path is None
    assert len(data[0].boxes) == 0 and data[0].original_size is None
    foreground, ignore = data.gt_mask(0)
    assert foreground.shape == ignore.shape == (224, 224)
    # 448 x 336 -> 224: nearest neighbour takes rows floor(i * 1.5) and columns 2 * j.
    rows, cols = np.floor(np.arange(224) * 1.5).astype(int), np.arange(224) * 2
    left = np.zeros((336, 448), bool)
    left[10:100, 20:200] = True
    right = np.zeros((336, 448), bool)
    right[200:300, 300:440] = True
    expected = (left | right)[np.ix_(rows, cols)]
    assert (foreground == expected).all()
    expected_ignore = (np.arange(336) < 150)[rows][:, None] & ~expected
    assert (ignore == expected_ignore).all()
    assert data.gt_mask(1)[0].all() and not data.gt_mask(1)[1].any()


# ------------------------------------------------------------------------------ VOC 2007


def voc_xml(objects: list[tuple[str, int, int, int, int]], size=(500, 375)) -> str:
    parts = [f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
             f"<xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>" for n, a, b, c, d in objects]
    return (f"<annotation><folder>VOC2007</folder><size><width>{size[0]}</width><height>{size[1]}</height>"
            f"<depth>3</depth></size>{''.join(parts)}</annotation>")


@pytest.fixture
def voc(tmp_path) -> Path:
    base = tmp_path / "VOCdevkit" / "VOC2007"
    (base / "Annotations").mkdir(parents=True)
    (base / "ImageSets" / "Main").mkdir(parents=True)
    (base / "Annotations" / "000005.xml").write_text(
        voc_xml([("chair", 263, 211, 324, 339), ("person", 1, 1, 500, 375)]))
    (base / "Annotations" / "000007.xml").write_text(voc_xml([("car", 141, 50, 500, 330)], (500, 333)))
    (base / "ImageSets" / "Main" / "val.txt").write_text("000005\n000007\n")  # VOC ends with a newline
    write_image(base / "JPEGImages" / "000005.jpg", (500, 375))
    write_image(base / "JPEGImages" / "000007.jpg", (500, 333))
    return tmp_path / "VOCdevkit"


def test_voc_keeps_every_box_zero_based_and_labels_the_largest_object(voc):
    for root in (voc, voc / "VOC2007"):
        data = load_voc2007(root, "val")
        assert [s.image_id for s in data] == ["000005", "000007"]
        assert len(data.classes) == 20 and data.kind == "boxes"
        first = data[0]
        assert first.boxes_original.tolist() == [[262, 210, 323, 338], [0, 0, 499, 374]]
        assert data.classes[first.label] == "person"
        assert first.boxes.tolist()[1] == [0, 0, int(499 * 224 / 500), int(374 * 224 / 375)]
        assert data.classes[data[1].label] == "car" and data[1].original_size == (500, 333)
    assert len(open_dataset(f"voc:{voc}", "val")) == 2


def test_voc_problems_name_the_file(voc):
    base = voc / "VOC2007"
    (base / "Annotations" / "000007.xml").write_text(voc_xml([("unicorn", 1, 1, 5, 5)]))
    with pytest.raises(DatasetError, match=r"000007\.xml object 1: unknown class 'unicorn'"):
        load_voc2007(voc, "val")
    (base / "Annotations" / "000007.xml").write_text("<annotation><size>")
    with pytest.raises(DatasetError, match=r"000007\.xml line 1: not well-formed"):
        load_voc2007(voc, "val")
    (base / "Annotations" / "000007.xml").unlink()
    with pytest.raises(DatasetError, match=r"val\.txt line 2: file not found: .*000007\.xml"):
        load_voc2007(voc, "val")
    lenient = load_voc2007(voc, "val", strict=False)
    assert len(lenient) == 1 and lenient.skipped == 1 and "val.txt line 2" in lenient.issues[0]


# -------------------------------------------------------------------------------- folders


def test_folder_lists_images_sorted_and_ignores_other_files(tmp_path):
    for name in ("b.png", "a.JPG", "c.webp"):
        write_image(tmp_path / name, (32, 32))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden.png").write_bytes(b"")
    (tmp_path / "sub.png").mkdir()
    data = open_dataset(f"folder:{tmp_path}")
    assert [s.image_id for s in data] == ["a.JPG", "b.png", "c.webp"]
    assert data[0].label is None and data.kind == "none" and data.gt_boxes(0).shape == (0, 4)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images found"):
        load_folder(tmp_path / "empty")


# ---------------------------------------------------------------- errors, escapes, lenience


def edit_line(path: Path, line: int, text: str | None) -> None:
    """Replace (or, with None, delete) one 1-based line, keeping the no-final-newline format."""
    lines = path.read_text().split("\n")
    if text is None:
        del lines[line - 1]
    else:
        lines[line - 1] = text
    path.write_bytes("\n".join(lines).encode())


@pytest.mark.parametrize(("file", "line", "text", "message"), [
    ("localization.txt", 2, f"{CUB_IDS[0]},1,2,499", "localization.txt line 2: expected 5 comma-separated fields"),
    ("localization.txt", 3, f"{CUB_IDS[1]},10,2x,299,399", "localization.txt line 3: the box '10,2x,299,399' is not"),
    ("localization.txt", 4, f"{CUB_IDS[2]},100,0,50,223",
     "localization.txt line 4: the box '100,0,50,223' is reversed"),
    ("class_labels.txt", 2, "002.Gull/g_9.jpg,1", "class_labels.txt line 2: image id '002.Gull/g_9.jpg' is not listed"),
    ("class_labels.txt", 3, f"{CUB_IDS[2]},one", "class_labels.txt line 3: the label 'one' is not"),
    ("class_labels.txt", 3, None, "image_ids.txt line 3: '002.Gull/g_2.jpg' has no label"),
    ("image_sizes.txt", 1, f"{CUB_IDS[0]},500", "image_sizes.txt line 1: expected 3 comma-separated fields"),
    ("image_ids.txt", 2, "../../secret.jpg", "image_ids.txt line 2: '../../secret.jpg' leaves the dataset folder"),
    ("image_ids.txt", 2, "/etc/passwd", "image_ids.txt line 2: '/etc/passwd' is an absolute path"),
    ("image_ids.txt", 3, CUB_IDS[0], "image_ids.txt line 3: image id '001.Albatross/a_1.jpg' is listed twice"),
])
def test_malformed_lines_are_reported_with_file_and_line(cub, file, line, text, message):
    edit_line(cub / "metadata/CUB/test" / file, line, text)
    with pytest.raises(DatasetError) as error:
        open_dataset(f"cub:{cub}", "test")
    assert message in str(error.value)
    assert f"metadata/CUB/test/{file}" in str(error.value) or "image_ids.txt" in str(error.value)


def test_missing_files_are_reported_with_the_line_that_names_them(cub, openimages):
    (cub / "CUB" / CUB_IDS[1]).unlink()
    with pytest.raises(DatasetError, match=r"image_ids\.txt line 2: file not found: .*g_1\.jpg"):
        open_dataset(f"cub:{cub}", "test")
    (openimages / "OpenImages/test/01226z/aaa_m01226z_2.png").unlink()
    with pytest.raises(DatasetError, match=r"localization\.txt line 2: file not found: .*aaa_m01226z_2\.png"):
        open_dataset(f"openimages:{openimages}", "test")
    (cub / "metadata/CUB/test/class_labels.txt").unlink()
    with pytest.raises(DatasetError, match=r"class_labels\.txt: file not found"):
        open_dataset(f"cub:{cub}", "test")


def test_mask_paths_that_leave_the_dataset_are_refused(openimages):
    loc = openimages / "metadata/OpenImages/test/localization.txt"
    edit_line(loc, 3, "test/0k4j/bbb.jpg,../../../etc/shadow.png,")
    with pytest.raises(DatasetError, match=r"localization\.txt line 3: '\.\./\.\./\.\./etc/shadow\.png' leaves"):
        open_dataset(f"openimages:{openimages}", "test")
    edit_line(loc, 3, "test/0k4j/bbb.jpg,test/0k4j/bbb_m0k4j_1.png,C:\\ignore.png")
    with pytest.raises(DatasetError, match="absolute path"):
        open_dataset(f"openimages:{openimages}", "test")
    edit_line(loc, 3, "test/0k4j/bbb.jpg,test/0k4j/bbb_m0k4j_1.png,")
    edit_line(loc, 2, "test/01226z/aaa.jpg,test/01226z/aaa_m01226z_2.png,test/01226z/aaa_ignore.png")
    with pytest.raises(DatasetError, match=r"line 2: only an image's first mask line may name an ignore"):
        open_dataset(f"openimages:{openimages}", "test")


def test_lenient_mode_skips_bad_images_and_lists_why(cub):
    edit_line(cub / "metadata/CUB/test/localization.txt", 2, f"{CUB_IDS[0]},1,2,499")
    (cub / "CUB" / CUB_IDS[2]).unlink()
    data = open_dataset(f"cub:{cub}", "test", strict=False)
    assert [s.image_id for s in data] == [CUB_IDS[1]]
    assert data.skipped == 2 and len(data.issues) == 2
    assert "localization.txt line 2:" in data.issues[0] and "image_ids.txt line 3: file not found" in data.issues[1]
    assert "2 skipped" in repr(data)


def test_a_final_newline_and_windows_line_ends_are_tolerated(cub):
    path = cub / "metadata/CUB/test/localization.txt"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n") + b"\r\n")
    assert len(open_dataset(f"cub:{cub}", "test")[0].boxes) == 2


def test_unknown_specs_and_missing_folders_say_what_is_accepted(tmp_path):
    with pytest.raises(DatasetError, match="use one of: synthetic"):
        open_dataset("imagenet:/data")
    with pytest.raises(DatasetError, match="needs a folder"):
        open_dataset("cub:")
    with pytest.raises(DatasetError, match="metadata folder not found"):
        load_protocol(tmp_path / "metadata" / "CUB", tmp_path, "test")


# ---------------------------------------------------------------------------- CLI, preview


def test_make_synthetic_command_writes_the_dataset_and_refuses_a_full_folder(tmp_path, capsys):
    out = tmp_path / "synth"
    preview = tmp_path / "preview.png"
    assert main(["make-synthetic", "--out", str(out), "--train", "3", "--val", "0", "--test", "5",
                 "--preview", str(preview)]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "test" in printed and "5 images" in printed
    assert json.loads((out / "dataset.json").read_text())["counts"]["train"]["images"] == 3
    assert Image.open(preview).width > 5 * 224
    assert main(["make-synthetic", "--out", str(out), "--test", "1"]) == 2
    assert "not empty" in capsys.readouterr().err


def test_preview_sheet_without_parts_has_one_row_per_example(cub):
    sheet = preview_sheet(open_dataset(f"cub:{cub}", "test"), count=3, columns=3)
    assert sheet.height < 300 < sheet.width
