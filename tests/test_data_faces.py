"""fsl.data.faces: listing, identity split, decoding, standardisation, augmentation.

ORL (40 people x 10 png) through the ``orl_dir`` fixture; small tmp folders for
pgm/bmp/jpg, corrupt files, empty folders and errors. References: Pillow's
pixels and numpy formulas.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from fsl.data import faces as F


def _write(path, array, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format=fmt)
    return path


def _gradient(height=20, width=16, channels=1, offset=0):
    y, x = np.mgrid[0:height, 0:width]
    grey = ((x * 7 + y * 5 + offset) % 256).astype("uint8")
    if channels == 1:
        return grey
    return np.stack([grey, 255 - grey, (grey // 2).astype("uint8")], axis=-1)


# === Listing and splitting (ORL) ===


def test_list_faces_orl(orl_dir):
    faces = F.list_faces(orl_dir)
    assert len(faces) == 400
    assert faces.num_classes == 40
    assert faces.class_names == [f"s{i:02d}" for i in range(1, 41)]
    assert faces.labels.dtype == np.int32
    np.testing.assert_array_equal(np.bincount(faces.labels), np.full(40, 10))
    # README.md at the root and any non-image file are ignored; paths sorted
    assert all(p.endswith(".png") for p in faces.paths)
    assert faces.paths == sorted(faces.paths)
    for path, label in zip(faces.paths[::37], faces.labels[::37]):
        assert f"/{faces.class_names[label]}/" in path
    assert F.list_faces(orl_dir).paths == faces.paths  # deterministic


@pytest.mark.parametrize("test_identities, n_test", [(10, 10), (0.25, 10), (1, 1), (0, 0)])
def test_identity_split_disjoint_and_deterministic(orl_dir, test_identities, n_test):
    faces = F.list_faces(orl_dir)
    train, test = F.identity_split(faces, test_identities=test_identities, seed=3)
    assert test.num_classes == n_test and train.num_classes == 40 - n_test
    assert not set(train.class_names) & set(test.class_names)
    assert len(train) + len(test) == 400
    assert not set(train.paths) & set(test.paths)
    for part in (train, test):  # relabelled 0..k-1, labels consistent with names
        assert sorted(set(part.labels.tolist())) == list(range(part.num_classes))
        for path, label in zip(part.paths, part.labels):
            assert f"/{part.class_names[label]}/" in path
    again = F.identity_split(faces, test_identities=test_identities, seed=3)
    assert again[1].class_names == test.class_names
    other = F.identity_split(faces, test_identities=10, seed=4)[1]
    if n_test == 10:
        assert other.class_names != test.class_names


def test_select_identities_keeps_and_relabels_those_people():
    faces = F.FaceFolder(
        paths=["a/1", "a/2", "b/1", "c/1", "c/2", "c/3"],
        labels=np.array([0, 0, 1, 2, 2, 2], "int32"),
        class_names=["a", "b", "c"],
    )
    kept = F.select_identities(faces, ["c", "a"])
    assert kept.class_names == ["a", "c"]  # sorted identity order, as identity_split
    assert kept.paths == ["a/1", "a/2", "c/1", "c/2", "c/3"]
    assert kept.labels.tolist() == [0, 0, 1, 1, 1]
    # Split again: the validation people come out of the kept ones only.
    train, val = F.identity_split(kept, test_identities=1, seed=0)
    assert set(train.class_names) | set(val.class_names) == {"a", "c"}


@pytest.mark.parametrize("names, match", [
    (["a", "zz"], r"Identities \['zz'\] are not in the face folder"),
    (["a", "a"], r"repeats identities \['a'\]"),
    ([], r"Received: names=\[\]"),
    ("a", r"Received: names='a'"),
])
def test_select_identities_rejects_bad_names(names, match):
    faces = F.FaceFolder(paths=["a/1", "b/1"], labels=np.array([0, 1], "int32"),
                         class_names=["a", "b"])
    with pytest.raises(ValueError, match=match):
        F.select_identities(faces, names)


@pytest.mark.parametrize("bad", [-1, 40, 1.5, -0.2])
def test_identity_split_rejects_bad_size(orl_dir, bad):
    faces = F.list_faces(orl_dir)
    with pytest.raises(ValueError, match="test_identities"):
        F.identity_split(faces, test_identities=bad)


# === Decoding (ORL vs Pillow) ===


def test_load_image_matches_pil(orl_dir):
    faces = F.list_faces(orl_dir)
    path = faces.paths[13]
    reference = np.asarray(Image.open(path), dtype="float32")
    assert reference.shape == (112, 92)
    native = F.load_image(path, image_size=(112, 92), channels=1)
    assert native.shape == (112, 92, 1) and native.dtype == np.float32
    np.testing.assert_allclose(native[..., 0], reference, atol=1e-3)
    rgb = F.load_image(path, image_size=None, channels=3)
    for c in range(3):
        np.testing.assert_allclose(rgb[..., c], reference, atol=1e-3)
    # resizing to half size averages 2x2 blocks (antialiased bilinear)
    half = F.load_image(path, image_size=(56, 46))
    blocks = reference.reshape(56, 2, 46, 2).mean(axis=(1, 3))
    assert np.abs(half[..., 0] - blocks)[2:-2, 2:-2].mean() < 3.0


def test_face_dataset_orl_shapes_and_values(orl_dir):
    faces = F.list_faces(orl_dir)
    paths, labels = faces.paths[:12], faces.labels[:12]
    ds = F.face_dataset(paths, labels, image_size=(112, 92), standardize=None, batch_size=5)
    batches = list(ds.as_numpy_iterator())
    assert [b[0].shape for b in batches] == [(5, 112, 92, 1)] * 2 + [(2, 112, 92, 1)]
    images = np.concatenate([b[0] for b in batches])
    got_labels = np.concatenate([b[1] for b in batches])
    np.testing.assert_array_equal(got_labels, labels)
    assert got_labels.dtype == np.int32
    for image, path in zip(images, paths):
        np.testing.assert_allclose(image[..., 0], np.asarray(Image.open(path), "float32"), atol=1e-3)


def test_standardize_formulas(orl_dir):
    path = F.list_faces(orl_dir).paths[0]
    raw = F.load_image(path, image_size=(48, 40))
    unbatched = F.face_dataset([path], image_size=(48, 40), standardize=None)
    np.testing.assert_allclose(next(iter(unbatched)).numpy(), raw, atol=1e-4)
    n = raw.size
    expected = {
        "fixed": (raw - 127.5) / 128.0,
        "prewhiten": (raw - raw.mean()) / max(raw.std(), 1.0 / np.sqrt(n)),
        "unit": raw / 255.0,
    }
    for method, want in expected.items():
        got = next(iter(F.face_dataset([path], image_size=(48, 40), standardize=method))).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=method)
    # prewhiten of a constant image: divides by 1/sqrt(n), no NaN
    flat = F.standardize_image(np.full((4, 4, 1), 77.0, "float32"), "prewhiten").numpy()
    np.testing.assert_array_equal(flat, np.zeros((4, 4, 1)))


def test_augment_shape_range_and_seed(orl_dir):
    paths = F.list_faces(orl_dir).paths[:8]

    def run(seed):
        ds = F.face_dataset(paths, image_size=(64, 56), standardize=None, augment=True, seed=seed)
        return np.stack(list(ds.as_numpy_iterator()))

    a, b, c = run(7), run(7), run(8)
    plain = np.stack(list(F.face_dataset(paths, image_size=(64, 56), standardize=None).as_numpy_iterator()))
    assert a.shape == plain.shape == (8, 64, 56, 1)
    assert a.min() >= 0.0 and a.max() <= 255.0
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1.0
    assert np.abs(a - plain).max() > 1.0


def test_augment_flip_only_is_exact_mirror():
    image = np.arange(6 * 4, dtype="float32").reshape(6, 4, 1)
    flips = 0
    for s in range(12):
        out = F.augment_image(image, np.array([s, 1]), crop_fraction=1.0, max_brightness=0.0).numpy()
        if np.array_equal(out, image[:, ::-1]):
            flips += 1
        else:
            np.testing.assert_allclose(out, image, atol=1e-4)
    assert 0 < flips < 12


def test_shuffle_is_a_seeded_permutation(orl_dir):
    faces = F.list_faces(orl_dir)
    paths = faces.paths[:30]

    def order(seed):
        ds = F.face_dataset(paths, np.arange(30), image_size=(8, 8), shuffle=True, seed=seed)
        return [int(y) for _, y in ds.as_numpy_iterator()]

    first = order(1)
    assert sorted(first) == list(range(30)) and first != list(range(30))
    assert order(1) == first


def test_load_images_numpy_orl(orl_dir):
    faces = F.list_faces(orl_dir)
    subset = F.FaceFolder(faces.paths[:20], faces.labels[:20], faces.class_names)
    images, labels = F.load_images_numpy(subset, image_size=(56, 46))
    assert images.shape == (20, 56, 46, 1) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    np.testing.assert_array_equal(labels, subset.labels)
    np.testing.assert_allclose(images[5] * 255.0, F.load_image(subset.paths[5], (56, 46)), atol=1e-3)


def test_face_loader_for_pk_sampling(orl_dir):
    path = F.list_faces(orl_dir).paths[3]
    load = F.face_loader(image_size=(32, 32), standardize="unit")
    got = load(np.array(path)).numpy()
    np.testing.assert_allclose(got, F.load_image(path, (32, 32)) / 255.0, atol=1e-5)


def test_face_loader_feeds_pk_sampling(orl_dir):
    sampling = pytest.importorskip("fsl.data.sampling", reason="fsl.data.sampling not available")
    train, _ = F.identity_split(F.list_faces(orl_dir), test_identities=30, seed=0)
    load = F.face_loader(image_size=(24, 20), standardize="unit")
    ds = sampling.pk_file_dataset(train.paths, train.labels, p=4, k=3, load_fn=load, seed=0)
    images, labels = next(iter(ds))
    assert images.shape == (12, 24, 20, 1)
    counts = np.unique(labels.numpy(), return_counts=True)[1]
    np.testing.assert_array_equal(counts, [3, 3, 3, 3])
    assert 0.0 <= float(images.numpy().min()) and float(images.numpy().max()) <= 1.0


# === Formats, corrupt files, errors (tmp folders) ===


def test_formats_pgm_bmp_jpg_grey_and_colour(tmp_path):
    grey = _gradient()
    colour = _gradient(channels=3, offset=40)
    files = {
        "a/x.pgm": (grey, "PPM"),
        "a/y.bmp": (colour, "BMP"),
        "b/z.png": (colour, "PNG"),
        "b/w.JPG": (grey, "JPEG"),
    }
    for name, (array, fmt) in files.items():
        _write(tmp_path / name, array, fmt)
    assert (tmp_path / "a/x.pgm").read_bytes()[:2] == b"P5"
    faces = F.list_faces(tmp_path)
    assert len(faces) == 4 and faces.class_names == ["a", "b"]
    by_name = {p.split("/")[-1]: p for p in faces.paths}

    pgm = F.load_image(by_name["x.pgm"], image_size=None)
    np.testing.assert_array_equal(pgm[..., 0], grey)
    bmp_rgb = F.load_image(by_name["y.bmp"], image_size=None, channels=3)
    np.testing.assert_array_equal(bmp_rgb, colour)
    bmp_grey = F.load_image(by_name["y.bmp"], image_size=None, channels=1)
    luma = np.asarray(Image.fromarray(colour).convert("L"), "float32")
    np.testing.assert_array_equal(bmp_grey[..., 0], luma)
    pgm_rgb = F.load_image(by_name["x.pgm"], image_size=None, channels=3)
    np.testing.assert_array_equal(pgm_rgb, np.repeat(grey[..., None], 3, axis=-1))
    jpg = F.load_image(by_name["w.JPG"], image_size=None)
    assert np.abs(jpg[..., 0] - grey).mean() < 8.0  # lossy

    ds = F.face_dataset(faces.paths, faces.labels, image_size=(10, 8), channels=3, batch_size=4)
    images, labels = next(iter(ds))
    assert images.shape == (4, 10, 8, 3)
    np.testing.assert_array_equal(labels.numpy(), [0, 0, 1, 1])


def test_corrupt_images_are_skipped_with_named_warning(tmp_path, caplog):
    good = [_write(tmp_path / "p" / f"{i}.png", _gradient(offset=i)) for i in range(3)]
    bad_jpg = tmp_path / "p" / "broken.jpg"
    full = tmp_path / "full.jpg"
    Image.fromarray(_gradient(64, 64)).save(full, format="JPEG")
    bad_jpg.write_bytes(full.read_bytes()[:200])  # truncated
    full.unlink()
    garbage_jpg = tmp_path / "q" / "garbage.jpg"
    garbage_jpg.parent.mkdir()
    garbage_jpg.write_bytes(b"this is not an image at all" * 10)
    garbage_pgm = tmp_path / "q" / "garbage.pgm"
    garbage_pgm.write_bytes(b"P5\n16 20\n255\n" + b"\x01" * 17)  # header promises more
    good.append(_write(tmp_path / "q" / "ok.pgm", _gradient(), "PPM"))

    faces = F.list_faces(tmp_path)
    assert len(faces) == 7
    with caplog.at_level(logging.WARNING, logger="fsl.data.faces"):
        ds = F.face_dataset(faces.paths, faces.labels, image_size=(20, 16), standardize=None, batch_size=3)
        images = np.concatenate([x for x, _ in ds.as_numpy_iterator()])
    assert images.shape == (4, 20, 16, 1)
    text = caplog.text
    for bad in (bad_jpg, garbage_jpg, garbage_pgm):
        assert str(bad) in text
    for path in good:
        assert str(path) not in text
    np.testing.assert_array_equal(images[3, ..., 0], _gradient())  # ok.pgm came through
    assert sorted(F.verify_images(faces.paths)) == sorted(str(p) for p in (bad_jpg, garbage_jpg, garbage_pgm))
    with pytest.raises(ValueError, match="garbage.jpg"):
        F.load_image(garbage_jpg)


def test_empty_and_unknown_ignored_min_images(tmp_path, caplog):
    _write(tmp_path / "alice" / "1.png", _gradient())
    _write(tmp_path / "alice" / "2.png", _gradient(offset=3))
    _write(tmp_path / "bob" / "1.png", _gradient())
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hello")
    (tmp_path / "alice" / "meta.json").write_text("{}")
    with caplog.at_level(logging.INFO, logger="fsl.data.faces"):
        faces = F.list_faces(tmp_path)
    assert faces.class_names == ["alice", "bob"]
    assert "empty" in caplog.text
    assert F.list_faces(tmp_path, min_images=2).class_names == ["alice"]


def test_list_faces_errors(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        F.list_faces(missing)
    (tmp_path / "someone").mkdir()
    (tmp_path / "someone" / "a.txt").write_text("x")
    with pytest.raises(ValueError, match="No identity folder"):
        F.list_faces(tmp_path)
    with pytest.raises(ValueError, match="min_images"):
        F.list_faces(tmp_path, min_images=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"channels": 2}, "channels"),
        ({"standardize": "zscore"}, "standardize"),
        ({"image_size": (0, 5)}, "image_size"),
        ({"batch_size": 0}, "batch_size"),
        ({"labels": [0, 1]}, "labels"),
        ({"center_crop": 1.5}, "center_crop"),
        ({"augment": True, "image_size": None}, "image_size"),
    ],
)
def test_face_dataset_validates_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        F.face_dataset(["a.png"], **{"labels": [0], **kwargs})
