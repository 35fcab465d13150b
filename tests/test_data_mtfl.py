"""fsl.data.mtfl: annotation parser, synthetic generator, dataset, landmark-aware augmentation.

References: a hand-written annotation fixture in the real MTFL format, images
with coloured dots drawn at known landmarks (the dots must be where the
transformed landmarks say), and Pillow's pixels. ``download_mtfl`` is tested
on a local archive through a ``file://`` URL (the test machines have no
network): the same code path as HTTPS, checksums included.
"""

from __future__ import annotations

import hashlib
import logging
import pathlib
import zipfile

import numpy as np
import pytest
from PIL import Image, ImageDraw

from fsl.data import mtfl

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "mtfl_training_sample.txt"
COLOURS = np.array(
    [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255]], dtype="float32"
)


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    return mtfl.synthesize(tmp_path_factory.mktemp("synth") / "mtfl", n=20, seed=5, image_size=(96, 88))


# === Parser ===


def test_read_annotations_fixture(tmp_path):
    ann = mtfl.read_annotations(FIXTURE, root=tmp_path)
    assert len(ann) == 3
    assert ann.paths[0] == str(tmp_path / "lfw_5590" / "Aaron_Eckhart_0001.jpg")
    assert ann.paths[2] == str(tmp_path / "AFLW" / "image00002.jpg")
    assert ann.landmarks.dtype == np.float32 and ann.landmarks.shape == (3, 10)
    np.testing.assert_allclose(
        ann.landmarks[0], [107.25, 147.25, 126.25, 106.25, 146.75, 108.25, 109.75, 136.75, 154.25, 149.75]
    )
    np.testing.assert_array_equal(ann.gender, [0, 1, 0])  # 1 male, 2 female -> 0, 1
    np.testing.assert_array_equal(ann.smile, [1, 0, 0])
    np.testing.assert_array_equal(ann.glasses, [1, 0, 1])
    np.testing.assert_array_equal(ann.pose, [2, 4, 0])
    assert ann.pose.dtype == np.int32
    # default root: the folder of the file
    assert mtfl.read_annotations(FIXTURE).paths[1] == str(FIXTURE.parent / "net_7876" / "prefix_1.jpg")


@pytest.mark.parametrize(
    "bad_line, match",
    [
        ("a\\b.jpg 1 2 3 4 5 6 7 8 9 10 1 1 1", "15 fields"),
        ("a\\b.jpg 1 2 3 4 5 6 7 8 9 zz 1 1 1 1", "non-numeric"),
        ("a\\b.jpg 1 2 3 4 5 6 7 8 9 10 3 1 1 1", "gender"),
        ("a\\b.jpg 1 2 3 4 5 6 7 8 9 10 1 1 1 6", "pose"),
        ("a\\b.jpg 1 2 3 4 5 6 7 8 9 10 1 0 1 1", "smile"),
    ],
)
def test_read_annotations_malformed_line_names_file_and_line(tmp_path, bad_line, match):
    path = tmp_path / "training.txt"
    good = "x\\y.jpg 1 2 3 4 5 6 7 8 9 10 1 1 1 1"
    path.write_text(f"{good}\n\n{bad_line}\n")
    with pytest.raises(ValueError, match=match) as info:
        mtfl.read_annotations(path)
    assert "line 3" in str(info.value) and str(path) in str(info.value)


def test_read_annotations_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.txt"):
        mtfl.read_annotations(tmp_path / "nothing.txt")


# === Synthetic set ===


def test_synthesize_format_and_round_trip(synthetic_root):
    root = synthetic_root
    assert "SYNTHETIC" in (root / "README.txt").read_text()
    train_lines = (root / "training.txt").read_text().splitlines()
    assert len(train_lines) == 16 and len((root / "testing.txt").read_text().splitlines()) == 4
    assert train_lines[0].startswith("synthetic\\00000.jpg ")
    codes = np.array([[int(v) for v in line.split()[11:]] for line in train_lines])
    assert codes[:, :3].min() >= 1 and codes[:, :3].max() <= 2
    assert codes[:, 3].min() >= 1 and codes[:, 3].max() <= 5
    ann = mtfl.read_annotations(root / "training.txt")
    np.testing.assert_array_equal(ann.gender, codes[:, 0] - 1)
    np.testing.assert_array_equal(ann.pose, codes[:, 3] - 1)

    ds = mtfl.mtfl_dataset(root, "train", image_size=(40, 36), channels=1)
    elements = list(ds.as_numpy_iterator())
    assert len(elements) == 16
    image, targets = elements[3]
    assert image.shape == (40, 36, 1) and image.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert set(targets) == {"landmarks", "gender", "smile", "glasses", "pose"}
    assert targets["landmarks"].dtype == np.float32 and targets["landmarks"].shape == (10,)
    for name in ("gender", "smile", "glasses", "pose"):
        assert targets[name].dtype == np.int32
        assert int(targets[name]) == int(getattr(ann, name)[3])
    # landmarks normalised by the original size: (x + 0.5) / W, (y + 0.5) / H
    expected = np.concatenate([(ann.landmarks[3, :5] + 0.5) / 88, (ann.landmarks[3, 5:] + 0.5) / 96])
    np.testing.assert_allclose(targets["landmarks"], expected, atol=1e-6)
    # image: Pillow's grey pixels / 255 (at the native size, resize is the identity)
    native = next(iter(mtfl.mtfl_dataset(root, "test", image_size=(96, 88))))[0].numpy()
    reference = np.asarray(Image.open(root / "synthetic" / "00016.jpg").convert("L"), "float32") / 255.0
    np.testing.assert_allclose(native[..., 0], reference, atol=1e-5)
    batched = mtfl.mtfl_dataset(root, "train", image_size=(32, 32), batch_size=5)
    images, targets = next(iter(batched))
    assert images.shape == (5, 32, 32, 1) and targets["landmarks"].shape == (5, 10)


def test_synthetic_landmarks_lie_on_drawn_features(synthetic_root):
    ann = mtfl.read_annotations(synthetic_root / "training.txt")
    for path, marks in zip(ann.paths, ann.landmarks):
        grey = np.asarray(Image.open(path).convert("L"), "float32")
        xs, ys = marks[:5], marks[5:]

        def at(x, y, r=1):
            col, row = int(round(x)), int(round(y))
            return grey[row - r : row + r + 1, col - r : col + r + 1]

        eye_distance = np.hypot(xs[1] - xs[0], ys[1] - ys[0])
        assert eye_distance > 8
        for k in (0, 1):  # the pupil (dark) is under the eye landmark
            cheek_y = ys[k] + 0.55 * (ys[3 + k] - ys[k])
            cheek_x = xs[k] + 0.55 * (xs[3 + k] - xs[k])
            cheek = np.median(at(cheek_x, cheek_y, 1))
            assert at(xs[k], ys[k], 0).item() < 90, path
            assert at(xs[k], ys[k], 0).item() < cheek - 40, path
        for k in (3, 4):  # mouth corners: dark lips at (or right next to) the corner
            mouth = at(xs[k], ys[k], 1).min()
            assert mouth < 120, path
        assert xs[0] < xs[1] and xs[3] < xs[4]  # "left" is on the left of the image
        assert ys[2] > min(ys[0], ys[1]) - 2 and max(ys[3], ys[4]) > ys[2] - 2


def test_synthesize_deterministic_and_never_overwrites(tmp_path):
    a = mtfl.synthesize(tmp_path / "a", n=6, seed=3, image_size=(48, 48))
    b = mtfl.synthesize(tmp_path / "b", n=6, seed=3, image_size=(48, 48))
    c = mtfl.synthesize(tmp_path / "c", n=6, seed=4, image_size=(48, 48))
    assert (a / "training.txt").read_text() == (b / "training.txt").read_text()
    assert (a / "synthetic" / "00002.jpg").read_bytes() == (b / "synthetic" / "00002.jpg").read_bytes()
    assert (a / "training.txt").read_text() != (c / "training.txt").read_text()

    with pytest.raises(FileExistsError, match=str(a)):
        mtfl.synthesize(a, n=4, seed=1, image_size=(48, 48))
    assert len((a / "training.txt").read_text().splitlines()) == 5  # untouched
    (a / "keep.me").write_text("user file")
    mtfl.synthesize(a, n=4, seed=1, image_size=(48, 48), overwrite=True)
    assert len(list((a / "synthetic").iterdir())) == 4
    assert (a / "keep.me").read_text() == "user file"
    with pytest.raises(FileExistsError):
        mtfl.synthesize(tmp_path / "a" / "synthetic", n=4)


def test_synthesize_attributes_are_varied(tmp_path):
    root = mtfl.synthesize(tmp_path / "s", n=60, seed=0, image_size=(48, 48))
    ann = mtfl.read_annotations(root / "training.txt")
    for name in ("gender", "smile", "glasses"):
        assert 0.2 < getattr(ann, name).mean() < 0.8
    assert set(ann.pose.tolist()) == {0, 1, 2, 3, 4}


# === Augmentation ===


def _dot_image(tmp_path, pose_code=1):
    """128x112 RGB image with 5 coloured dots at known landmarks; MTFL root."""
    width, height = 112, 128
    xs = np.array([38.0, 74.0, 57.0, 42.0, 70.0])
    ys = np.array([50.0, 47.0, 68.0, 90.0, 92.0])
    image = Image.new("RGB", (width, height), (0, 0, 0))
    draw = ImageDraw.Draw(image)
    for (x, y), colour in zip(zip(xs, ys), COLOURS.astype(int)):
        draw.ellipse([x - 6, y - 6, x + 6, y + 6], fill=tuple(int(c) for c in colour))
    (tmp_path / "img").mkdir()
    image.save(tmp_path / "img" / "dots.png")
    coords = " ".join(f"{v:.2f}" for v in np.concatenate([xs, ys]))
    line = f"img\\dots.png {coords} 1 1 2 {pose_code}"
    (tmp_path / "training.txt").write_text("\n".join([line] * 24) + "\n")
    (tmp_path / "testing.txt").write_text(line + "\n")
    return tmp_path


def test_augmented_landmarks_follow_the_dots(tmp_path):
    root = _dot_image(tmp_path, pose_code=2)  # pose 1 (0-based): mirror is 3
    size = 64
    ds = mtfl.mtfl_dataset(root, "train", image_size=(size, size), channels=3, augment=True, seed=11)
    flipped_seen = {True: 0, False: 0}
    outputs = list(ds.as_numpy_iterator())
    for image, targets in outputs:
        assert image.shape == (size, size, 3)
        pose = int(targets["pose"])
        assert pose in (1, 3)
        flipped = pose == 3
        flipped_seen[flipped] += 1
        order = list(mtfl.FLIP_PERMUTATION) if flipped else list(range(5))
        marks = targets["landmarks"]
        rgb = image * 255.0
        for k in range(5):
            x, y = marks[k] * size - 0.5, marks[5 + k] * size - 0.5
            colour = COLOURS[order[k]]
            close = np.all(np.abs(rgb - colour) < 70, axis=-1)
            rows, cols = np.nonzero(close)
            assert len(rows) > 3, (k, flipped)
            centroid = np.array([cols.mean(), rows.mean()])
            assert np.hypot(*(centroid - [x, y])) < 1.0, (k, flipped, centroid, (x, y))
        assert marks[0] < marks[1] and marks[3] < marks[4]  # left stays left after a flip
        for name, value in (("gender", 0), ("smile", 0), ("glasses", 1)):
            assert int(targets[name]) == value
    assert flipped_seen[True] > 2 and flipped_seen[False] > 2
    # the geometry really changed (not only flips)
    plain = next(iter(mtfl.mtfl_dataset(root, "train", image_size=(size, size))))[1]["landmarks"].numpy()
    moved = [np.abs(t["landmarks"] - plain).max() for _, t in outputs if int(t["pose"]) == 1]
    assert max(moved) > 0.02


def test_augmentation_deterministic_with_seed(tmp_path):
    root = _dot_image(tmp_path)

    def run(seed):
        ds = mtfl.mtfl_dataset(root, "train", image_size=(32, 32), augment=True, seed=seed, batch_size=24)
        return next(iter(ds))

    (a, ta), (b, tb), (c, tc) = run(1), run(1), run(2)
    # The same seed draws the same transforms. TensorFlow's CPU kernels do not
    # promise bit-identical floats from one run to the next (a few pixels once
    # differed by 1 ulp, 1.5e-8, in CI), so pixels compare to 1e-6, far below
    # what another draw changes (checked below for seed 2).
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(ta["landmarks"].numpy(), tb["landmarks"].numpy())
    assert np.abs(ta["landmarks"].numpy() - tc["landmarks"].numpy()).max() > 1e-3
    assert np.abs(a.numpy() - c.numpy()).max() > 1e-3


def test_flip_landmarks_hand_derived():
    marks = np.array([0.3, 0.7, 0.5, 0.35, 0.65, 0.4, 0.41, 0.6, 0.8, 0.81], "float32")
    flipped, pose = mtfl.flip_landmarks(marks, 0)
    np.testing.assert_allclose(
        flipped.numpy(), [0.3, 0.7, 0.5, 0.35, 0.65, 0.41, 0.4, 0.6, 0.81, 0.8], atol=1e-6
    )
    assert int(pose) == 4
    assert int(mtfl.flip_landmarks(marks, 2)[1]) == 2


def test_affine_landmarks_identity_is_exact():
    image = np.random.default_rng(0).uniform(size=(20, 16, 1)).astype("float32")
    marks = np.linspace(0.1, 0.9, 10).astype("float32")
    out, moved = mtfl.affine_landmarks(image, marks, 0.0, 1.0, np.zeros(2, "float32"))
    np.testing.assert_allclose(out.numpy(), image, atol=1e-5)
    np.testing.assert_allclose(moved.numpy(), marks, atol=1e-6)
    # pure shift by 0.25 of the width: content and landmarks move 4 px right
    out, moved = mtfl.affine_landmarks(image, marks, 0.0, 1.0, np.array([0.25, 0.0], "float32"))
    np.testing.assert_allclose(out.numpy()[:, 4:], image[:, :-4], atol=1e-5)
    np.testing.assert_allclose(moved.numpy()[:5], marks[:5] + 0.25, atol=1e-6)


# === Dataset errors and sources ===


def test_mtfl_dataset_skips_corrupt_image_with_warning(tmp_path, caplog):
    root = _dot_image(tmp_path)
    (root / "img" / "bad.jpg").write_bytes(b"garbage" * 5)
    lines = (root / "testing.txt").read_text().strip()
    bad = "img\\bad.jpg " + " ".join(lines.split()[1:])
    (root / "testing.txt").write_text(f"{lines}\n{bad}\n{lines}\n")
    with caplog.at_level(logging.WARNING, logger="fsl.data.faces"):
        elements = list(mtfl.mtfl_dataset(root, "test", image_size=(16, 16)).as_numpy_iterator())
    assert len(elements) == 2
    assert str(root / "img" / "bad.jpg") in caplog.text


def test_mtfl_dataset_validates(tmp_path):
    root = _dot_image(tmp_path)
    with pytest.raises(ValueError, match="split"):
        mtfl.mtfl_dataset(root, "val")
    with pytest.raises(ValueError, match="channels"):
        mtfl.mtfl_dataset(root, channels=4)
    with pytest.raises(FileNotFoundError, match="training.txt"):
        mtfl.mtfl_dataset(tmp_path / "elsewhere")


def test_load_mtfl_auto_synthetic_then_reuse_then_real(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="fsl.data.mtfl"):
        data = mtfl.load_mtfl("auto", data_dir=tmp_path, n=5, seed=2, image_size=(40, 40))
    assert data.source == "synthetic" and data.synthetic
    assert "SYNTHETIC" in caplog.text and "not found" in caplog.text
    written = (data.root / "training.txt").read_text()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="fsl.data.mtfl"):
        again = mtfl.load_mtfl("synthetic", data_dir=tmp_path, n=5, seed=2, image_size=(40, 40))
    assert again.root == data.root and "reusing" in caplog.text
    assert (again.root / "training.txt").read_text() == written
    other = mtfl.load_mtfl("synthetic", data_dir=tmp_path, n=6, seed=2, image_size=(40, 40))
    assert len(mtfl.read_annotations(other.root / "training.txt")) + 1 == 6
    assert len(list(other.dataset("test", image_size=(16, 16)).as_numpy_iterator())) == 1

    real_dir = tmp_path / "real"
    _dot_image(real_dir.mkdir() or real_dir)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="fsl.data.mtfl"):
        real = mtfl.load_mtfl("auto", data_dir=real_dir)
    assert real.source == "real" and real.root == real_dir and "REAL" in caplog.text
    with pytest.raises(ValueError, match="source"):
        mtfl.load_mtfl("imagenet", data_dir=tmp_path)


# === Download (a local archive through file://) ===


def _archive(tmp_path, name="MTFL-src.zip"):
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("MTFL/training.txt", FIXTURE.read_text())
        zf.writestr("MTFL/testing.txt", FIXTURE.read_text())
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_checks_the_sha256_and_unpacks(tmp_path):
    source, digest = _archive(tmp_path)
    root = mtfl.download_mtfl(tmp_path / "data", url=source.as_uri(), sha256=digest)
    assert (root / "training.txt").read_text() == FIXTURE.read_text()
    assert (tmp_path / "data" / "MTFL.zip").read_bytes() == source.read_bytes()


def test_download_with_another_sha256_unpacks_nothing(tmp_path):
    source, digest = _archive(tmp_path)
    wrong = "0" * 64
    with pytest.raises(OSError, match=f"has SHA-256 {digest}, expected {wrong}.*nothing unpacked"):
        mtfl.download_mtfl(tmp_path / "data", url=source.as_uri(), sha256=wrong)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == []


def test_download_without_a_known_digest_records_the_first_and_checks_later_ones(tmp_path, caplog):
    source, digest = _archive(tmp_path)
    data = tmp_path / "data"
    with caplog.at_level(logging.WARNING, logger="fsl.data.mtfl"):
        mtfl.download_mtfl(data, url=source.as_uri())
    assert f"recorded its digest {digest}" in caplog.text
    assert (data / "MTFL.zip.sha256").read_text().split()[0] == digest
    mtfl.download_mtfl(data, url=source.as_uri())  # the same file again: accepted
    other, other_digest = _archive(tmp_path, "other.zip")
    with zipfile.ZipFile(other, "a") as zf:
        zf.writestr("MTFL/extra.txt", "changed upstream")
    other_digest = hashlib.sha256(other.read_bytes()).hexdigest()
    with pytest.raises(OSError, match=f"has SHA-256 {other_digest}, expected {digest} "
                                      r"\(recorded in .*MTFL.zip.sha256\)"):
        mtfl.download_mtfl(data, url=other.as_uri())


def test_download_failures_are_oserrors_naming_the_url(tmp_path):
    missing = (tmp_path / "missing.zip").as_uri()
    with pytest.raises(OSError, match=f"Could not download MTFL from {missing}"):
        mtfl.download_mtfl(tmp_path / "data", url=missing)
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK not really a zip")
    with pytest.raises(OSError, match="does not unpack"):
        mtfl.download_mtfl(tmp_path / "data", url=broken.as_uri())
    assert not (tmp_path / "data" / "MTFL.zip").exists()
    assert not list((tmp_path / "data").glob(".*.part"))


def test_the_default_url_is_https():
    assert mtfl.MTFL_URL.startswith("https://")
