"""MTFL: facial landmarks and attributes, real or SYNTHETIC, as ``tf.data``.

The Multi-Task Facial Landmark dataset (Zhang, Luo, Loy, Tang, "Facial
Landmark Detection by Deep Multi-task Learning", ECCV 2014) annotates 12,995
faces with 5 landmarks and 4 attributes. ``MTFL.zip`` unpacks to image folders
(``AFLW/``, ``lfw_5590/``, ``net_7876/``) and two annotation files,
``training.txt`` (10,000 faces) and ``testing.txt`` (2,995). Each line is::

    lfw_5590\\Aaron_Eckhart_0001.jpg x1 x2 x3 x4 x5 y1 y2 y3 y4 y5 gender smile glasses pose

* the path is relative to the folder of the annotation file, with Windows
  backslashes;
* landmarks 1..5: left eye, right eye, nose tip, left mouth corner, right
  mouth corner ("left" = on the left of the image), in pixels, pixel centres
  at integer coordinates;
* 1-based codes: gender 1 male / 2 female; smile 1 yes / 2 no; glasses
  1 yes / 2 no; head pose 1..5 (yaw from one profile to the other, 3 frontal).

``read_annotations`` returns them with 0-based codes (``code - 1``): gender
0 male / 1 female, smile 0 smiling / 1 not, glasses 0 wearing / 1 not, pose
0..4 (2 frontal; a mirror image has pose ``4 - pose``).

``mtfl_dataset`` yields ``(image, targets)``: image float32 ``[H, W, C]`` in
``[0, 1]``; targets ``{"landmarks": float32 [10] (x1..x5, y1..y5) normalised
by the width / height, "gender", "smile", "glasses", "pose": int32}``, the
names of the outputs of ``fsl.models`` multitask MTFL model.

``synthesize`` writes a SYNTHETIC stand-in in the exact MTFL format (drawn
cartoon faces with known landmarks and rendered attributes) for offline tests
and tutorials; ``load_mtfl`` uses the real data when present and says which.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import pathlib

import numpy as np
import tensorflow as tf

from fsl import preprocessing
from fsl._checks import PathLike
from fsl.data import faces as _faces
from fsl.data.mtfl_synthetic import SYNTHETIC_MARKER, SYNTHETIC_VERSION, synthesize

logger = logging.getLogger(__name__)


MTFL_URL = "https://mmlab.ie.cuhk.edu.hk/projects/TCDCN/data/MTFL.zip"
#: The SHA-256 of the authors' MTFL.zip. The authors publish none and no
#: trusted copy was at hand to record it from, so it is unset: see
#: ``download_mtfl`` (trust on first use). Set it (or pass ``sha256=``) to pin.
MTFL_SHA256: str | None = None
SPLIT_FILES = {"train": "training.txt", "test": "testing.txt"}
ATTRIBUTES = ("gender", "smile", "glasses", "pose")
NUM_CLASSES = {"gender": 2, "smile": 2, "glasses": 2, "pose": 5}
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
# Horizontal flip: left eye <-> right eye, left mouth corner <-> right one.
FLIP_PERMUTATION = (1, 0, 2, 4, 3)


# === Annotations ===


@dataclasses.dataclass
class MtflAnnotations:
    """Parsed MTFL annotation file.

    Attributes:
        paths: absolute-ish image paths (root joined with the relative path).
        landmarks: float32 ``[N, 10]`` pixel coordinates x1..x5, y1..y5.
        gender, smile, glasses, pose: int32 ``[N]``, 0-based codes.
    """

    paths: list
    landmarks: np.ndarray
    gender: np.ndarray
    smile: np.ndarray
    glasses: np.ndarray
    pose: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)


def read_annotations(txt_path: PathLike, root: PathLike | None = None) -> MtflAnnotations:
    """Reads an MTFL annotation file (``training.txt`` / ``testing.txt``).

    Args:
        txt_path: the annotation file.
        root: folder the image paths are relative to; default: the folder of
            ``txt_path``.

    Returns:
        An ``MtflAnnotations`` (codes converted to 0-based).

    Raises:
        FileNotFoundError: ``txt_path`` does not exist.
        ValueError: a malformed line (message: file, line number, line): not
            15 fields, a non-numeric coordinate, or a code out of range.
    """
    txt_path = pathlib.Path(txt_path)
    if not txt_path.is_file():
        raise FileNotFoundError(f"MTFL annotation file not found. Received: txt_path={str(txt_path)!r}")
    root = txt_path.parent if root is None else pathlib.Path(root)
    paths, landmarks, codes = [], [], []
    for lineno, line in enumerate(txt_path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{txt_path}, line {lineno}"
        if len(fields) != 15:
            raise ValueError(
                f"{where}: expected 15 fields (path, x1..x5, y1..y5, gender, smile, glasses, pose). "
                f"Received {len(fields)}: {line.strip()!r}"
            )
        try:
            coords = [float(v) for v in fields[1:11]]
            code = [int(v) for v in fields[11:15]]
        except ValueError:
            raise ValueError(f"{where}: non-numeric landmark or code. Received: {line.strip()!r}") from None
        if not all(math.isfinite(c) for c in coords):
            raise ValueError(f"{where}: non-finite landmark. Received: {line.strip()!r}")
        for name, value in zip(ATTRIBUTES, code):
            if not 1 <= value <= NUM_CLASSES[name]:
                raise ValueError(
                    f"{where}: {name} code must be in 1..{NUM_CLASSES[name]}. "
                    f"Received: {name}={value} in {line.strip()!r}"
                )
        relative = fields[0].replace("\\", "/")
        paths.append(str(root / relative))
        landmarks.append(coords)
        codes.append([c - 1 for c in code])
    if not paths:
        raise ValueError(f"{txt_path}: no annotation line")
    codes = np.asarray(codes, dtype="int32")
    return MtflAnnotations(
        paths=paths,
        landmarks=np.asarray(landmarks, dtype="float32"),
        gender=codes[:, 0],
        smile=codes[:, 1],
        glasses=codes[:, 2],
        pose=codes[:, 3],
    )


# === Landmark-aware augmentation ===


def flip_landmarks(landmarks, pose):
    """Mirror of normalised landmarks ``[..., 10]`` and pose.

    ``x -> 1 - x``, left/right eyes and mouth corners swapped (so "left"
    stays the one on the left of the image), pose ``p -> 4 - p``.
    """
    landmarks = tf.convert_to_tensor(landmarks, tf.float32)
    xs, ys = landmarks[..., :5], landmarks[..., 5:]
    perm = list(FLIP_PERMUTATION)
    xs = 1.0 - tf.gather(xs, perm, axis=-1)
    ys = tf.gather(ys, perm, axis=-1)
    return tf.concat([xs, ys], axis=-1), 4 - pose


def affine_landmarks(image, landmarks, rotation, scale, shift):
    """Rotates/scales (about the centre) and shifts an image and its landmarks.

    Args:
        image: float32 ``[H, W, C]`` (static shape).
        landmarks: float32 ``[10]`` normalised (x1..x5, y1..y5), with the
            convention ``x_norm = (x_pixel + 0.5) / W``.
        rotation: angle in radians (positive: clockwise on screen).
        scale: zoom factor (> 1 enlarges the face).
        shift: ``[2]`` translation as a fraction of (W, H).

    Returns:
        ``(image, landmarks)``; the landmark ``k`` lands on the pixel that
        the content under landmark ``k`` moved to. Borders repeat the edge.
    """
    height, width = int(image.shape[0]), int(image.shape[1])
    size = tf.constant([width, height], tf.float32)
    centre = size / 2.0
    translation = tf.cast(shift, tf.float32) * size
    cos, sin = tf.cos(rotation), tf.sin(rotation)
    # forward: P' = c + s R (P - c) + t  (continuous coords, pixel centres at i + 0.5)
    forward = scale * tf.reshape(tf.stack([cos, -sin, sin, cos]), [2, 2])
    inverse = tf.reshape(tf.stack([cos, sin, -sin, cos]), [2, 2]) / scale
    # output pixel index j -> input pixel index: inverse @ (j + 0.5 - c - t) + c - 0.5
    offset = tf.linalg.matvec(inverse, 0.5 - centre - translation) + centre - 0.5
    transform = tf.stack(
        [inverse[0, 0], inverse[0, 1], offset[0], inverse[1, 0], inverse[1, 1], offset[1], 0.0, 0.0]
    )
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None],
        transforms=transform[None],
        output_shape=tf.constant([height, width], tf.int32),
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="NEAREST",
    )[0]
    points = tf.stack([landmarks[:5], landmarks[5:]], axis=-1) * size  # [5, 2]
    moved = tf.linalg.matvec(forward, points - centre) + centre + translation
    moved = moved / size
    return out, tf.concat([moved[:, 0], moved[:, 1]], axis=0)


def augment_face(
    image,
    landmarks,
    pose,
    seed,
    max_rotation: float = 10.0,
    scale_range: tuple = (0.9, 1.1),
    max_shift: float = 0.05,
    flip: bool = True,
    max_brightness: float = 0.1,
    contrast_range: tuple = (0.8, 1.2),
):
    """Landmark-aware augmentation, deterministic given ``seed``.

    Horizontal flip (with the left/right swap and mirrored pose), rotation
    of up to ``max_rotation`` degrees, scale in ``scale_range``, shift of up
    to ``max_shift`` of the size, then brightness and contrast; the landmarks
    follow the pixels.

    Args:
        image: float32 ``[H, W, C]`` in ``[0, 1]`` (static shape).
        landmarks: float32 ``[10]``, normalised.
        pose: int32 scalar, 0..4.
        seed: int ``[2]`` seed of the stateless random ops.

    Returns:
        ``(image in [0, 1], landmarks, pose)``. Landmarks are not clipped: a
        zoom or shift can move one slightly outside ``[0, 1]``.
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 7)
    landmarks = tf.cast(landmarks, tf.float32)
    pose = tf.cast(pose, tf.int32)
    if flip:
        do_flip = tf.random.stateless_uniform([], seeds[0]) < 0.5
        flipped_marks, flipped_pose = flip_landmarks(landmarks, pose)
        image = tf.where(do_flip, tf.image.flip_left_right(image), image)
        landmarks = tf.where(do_flip, flipped_marks, landmarks)
        pose = tf.where(do_flip, flipped_pose, pose)
    rotation = tf.random.stateless_uniform([], seeds[1], -1.0, 1.0) * (max_rotation * math.pi / 180.0)
    scale = tf.random.stateless_uniform([], seeds[2], scale_range[0], scale_range[1])
    shift = tf.random.stateless_uniform([2], seeds[3], -max_shift, max_shift)
    image, landmarks = affine_landmarks(image, landmarks, rotation, scale, shift)
    contrast = tf.random.stateless_uniform([], seeds[4], contrast_range[0], contrast_range[1])
    brightness = tf.random.stateless_uniform([], seeds[5], -max_brightness, max_brightness)
    mean = tf.reduce_mean(image)
    image = (image - mean) * contrast + mean + brightness
    return tf.clip_by_value(image, 0.0, 1.0), landmarks, pose


# === Pipeline ===


def mtfl_dataset(
    root: PathLike,
    split: str = "train",
    image_size=(64, 64),
    channels: int = 1,
    augment: bool = False,
    batch_size: int | None = None,
    shuffle: bool = False,
    seed: int = 0,
    cache: bool = False,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """MTFL (real or synthetic) as ``(image, targets)`` for the multitask model.

    Args:
        root: folder with ``training.txt`` and ``testing.txt``.
        split: ``"train"`` (training.txt) or ``"test"`` (testing.txt).
        image_size: output ``(height, width)``; images are resized (not
            cropped) so normalised landmarks do not change.
        channels: 1 (grey) or 3 (RGB).
        augment: landmark-aware augmentation (``augment_face``).
        batch_size: batch size or None for single elements.
        shuffle: shuffle (again each epoch), seeded.
        seed: seed of shuffling and augmentation.
        cache: cache decoded, resized images in memory (before augmentation).
        drop_remainder: drop the last incomplete batch.

    Returns:
        A dataset of ``(image float32 [H, W, C] in [0, 1], {"landmarks":
        float32 [10], "gender", "smile", "glasses": int32 0/1, "pose": int32
        0..4})``. Landmarks are ``(x_pixel + 0.5) / width`` and
        ``(y_pixel + 0.5) / height`` of the original image, x1..x5 then
        y1..y5. Unreadable images are skipped with a warning naming them.

    Raises:
        ValueError: bad ``split`` or other argument.
        FileNotFoundError: the annotation file is missing.
    """
    if split not in SPLIT_FILES:
        raise ValueError(f"split must be one of {tuple(SPLIT_FILES)}. Received: split={split!r}")
    image_size = preprocessing.check_image_size(image_size)
    if image_size is None:
        raise ValueError("mtfl_dataset needs a fixed image_size. Received: image_size=None")
    channels = preprocessing.check_channels(channels)
    if batch_size is not None and (int(batch_size) != batch_size or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None. Received: batch_size={batch_size}")
    root = pathlib.Path(root)
    annotations = read_annotations(root / SPLIT_FILES[split], root)
    logger.info("mtfl_dataset(%s, split=%r): %d faces", root, split, len(annotations))
    ds = tf.data.Dataset.from_tensor_slices(
        (
            annotations.paths,
            annotations.landmarks,
            annotations.gender,
            annotations.smile,
            annotations.glasses,
            annotations.pose,
        )
    )
    n = len(annotations)
    if shuffle and not cache:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)

    def decode(path, marks, gender, smile, glasses, pose):
        image, ok = _faces.decode_image_tf(path, channels)
        shape = tf.cast(tf.shape(image), tf.float32)
        xs = (marks[:5] + 0.5) / shape[1]
        ys = (marks[5:] + 0.5) / shape[0]
        image = preprocessing.standardize(preprocessing.resize(image, image_size), "unit")
        targets = {
            "landmarks": tf.concat([xs, ys], axis=0),
            "gender": gender,
            "smile": smile,
            "glasses": glasses,
            "pose": pose,
        }
        return image, targets, ok

    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.filter(lambda image, targets, ok: ok)
    ds = ds.map(lambda image, targets, ok: (tf.clip_by_value(image, 0.0, 1.0), targets))
    if cache:
        ds = ds.cache()
        if shuffle:
            ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    if augment:

        def aug(element, s):
            image, targets = element
            image, marks, pose = augment_face(image, targets["landmarks"], targets["pose"], s)
            return image, {**targets, "landmarks": marks, "pose": pose}

        ds = tf.data.Dataset.zip((ds, _faces._random_seeds(seed)))
        ds = ds.map(aug, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if batch_size is not None:
        ds = ds.batch(int(batch_size), drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)


# === Sources: real MTFL or synthetic ===


@dataclasses.dataclass
class MtflData:
    """Where MTFL-format data lives and whether it is real.

    Attributes:
        root: folder with ``training.txt`` / ``testing.txt``.
        source: ``"real"`` or ``"synthetic"``.
    """

    root: pathlib.Path
    source: str

    @property
    def synthetic(self) -> bool:
        return self.source == "synthetic"

    def dataset(self, split: str = "train", **kwargs) -> tf.data.Dataset:
        """``mtfl_dataset(self.root, split, **kwargs)``."""
        return mtfl_dataset(self.root, split, **kwargs)


def default_data_dir() -> pathlib.Path:
    """``$FSL_DATA_DIR/mtfl`` or ``~/.keras/datasets/mtfl``."""
    if "FSL_DATA_DIR" in os.environ:
        return pathlib.Path(os.environ["FSL_DATA_DIR"]) / "mtfl"
    return pathlib.Path.home() / ".keras" / "datasets" / "mtfl"


def find_real_mtfl(data_dir: PathLike) -> pathlib.Path | None:
    """The real unpacked MTFL under ``data_dir`` (itself or ``MTFL/``), or None.

    A folder counts when it has ``training.txt`` and ``testing.txt`` and no
    synthetic marker.
    """
    data_dir = pathlib.Path(data_dir)
    for candidate in (data_dir, data_dir / "MTFL"):
        if (
            (candidate / "training.txt").is_file()
            and (candidate / "testing.txt").is_file()
            and not (candidate / SYNTHETIC_MARKER).exists()
        ):
            return candidate
    return None


def download_mtfl(
    data_dir: PathLike | None = None,
    timeout: float = 60.0,
    url: str | None = None,
    sha256: str | None = None,
) -> pathlib.Path:
    """Downloads, checks and unpacks the real MTFL.zip (about 0.5 GB) into ``data_dir/MTFL``.

    Needs network access to the authors' server (``MTFL_URL``, over HTTPS); not
    run by the offline test suite (the test machines have no network). The
    archive is written to a temporary file and renamed into place only once
    complete and checked:

    * its SHA-256 must equal ``sha256`` (default ``MTFL_SHA256``) when set;
    * with neither (``MTFL_SHA256`` is unset: the authors publish no
      checksum and the digest has not been recorded from a trusted copy yet),
      the first download's digest is written to ``MTFL.zip.sha256`` beside
      it and logged, and every later download must match that file (trust on
      first use);
    * it must be a readable zip (``zipfile.testzip``).

    Args:
        data_dir: data folder; default ``default_data_dir()``.
        timeout: socket timeout in seconds (connection and each read).
        url: where to download from (``https://``, ``http://`` or
            ``file://``); default ``MTFL_URL``.
        sha256: the expected hex digest; default ``MTFL_SHA256`` (see above).

    Returns:
        The folder holding ``training.txt`` and ``testing.txt``.

    Raises:
        OSError: the download failed, its digest differs (both digests
            named; nothing is unpacked and the download is deleted), or the
            archive does not unpack (the message names the URL).
    """
    import hashlib
    import urllib.request
    import zipfile

    url = url or MTFL_URL
    sha256 = sha256 or MTFL_SHA256
    data_dir = pathlib.Path(data_dir) if data_dir is not None else default_data_dir()
    target = data_dir / "MTFL"
    archive = data_dir / "MTFL.zip"
    recorded = data_dir / "MTFL.zip.sha256"
    data_dir.mkdir(parents=True, exist_ok=True)
    partial = data_dir / f".MTFL.zip.{os.getpid()}.part"
    logger.info("download_mtfl: downloading the real MTFL from %s to %s", url, archive)
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    except Exception as error:  # noqa: BLE001 - URLError, socket timeouts, HTTP errors...
        partial.unlink(missing_ok=True)
        raise OSError(f"Could not download MTFL from {url}: {error}") from error
    found = digest.hexdigest()
    expected = sha256 or (recorded.read_text().split()[0] if recorded.is_file() else None)
    if expected is not None and found != expected.lower():
        partial.unlink(missing_ok=True)
        raise OSError(f"MTFL download from {url} has SHA-256 {found}, expected {expected} "
                      f"({'recorded in ' + str(recorded) if sha256 is None else 'MTFL_SHA256'}); "
                      "deleted, nothing unpacked")
    try:
        with zipfile.ZipFile(partial) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise zipfile.BadZipFile(f"corrupt member {bad!r}")
            zf.extractall(target)
    except (zipfile.BadZipFile, OSError) as error:
        partial.unlink(missing_ok=True)
        raise OSError(f"MTFL archive from {url} does not unpack into {target}: {error}") from error
    os.replace(partial, archive)
    if expected is None:
        recorded.write_text(f"{found}  MTFL.zip\n")
        logger.warning("download_mtfl: no SHA-256 to check %s against; recorded its digest %s "
                       "in %s: later downloads must match it", url, found, recorded)
    for candidate in [target, *sorted(p for p in target.iterdir() if p.is_dir())]:
        if (candidate / "training.txt").is_file():
            return candidate
    raise OSError(f"MTFL archive from {url} has no training.txt under {target}")


def load_mtfl(
    source: str = "auto",
    data_dir: PathLike | None = None,
    n: int = 2000,
    seed: int = 0,
    image_size=(96, 96),
) -> MtflData:
    """Finds (or makes) MTFL-format data and logs which one is used.

    * ``"real"``: the real MTFL unpacked in ``data_dir`` (itself or
      ``data_dir/MTFL``); downloaded with ``download_mtfl`` if absent.
    * ``"synthetic"``: the synthetic set in ``data_dir/mtfl_synthetic``,
      reused when its ``synthetic.json`` matches ``n``, ``seed`` and
      ``image_size``, else (re)generated with ``synthesize``.
    * ``"auto"``: real if present in ``data_dir`` (no download), else
      synthetic. Never silent: the choice is logged at WARNING level when it
      falls back to synthetic.

    Args:
        source: ``"auto"``, ``"real"`` or ``"synthetic"``.
        data_dir: data folder; default ``default_data_dir()``.
        n, seed, image_size: parameters of the synthetic set.

    Returns:
        An ``MtflData(root, source)``; ``.dataset(split, ...)`` builds the
        pipeline.

    Raises:
        ValueError: unknown ``source``.
        OSError: ``source="real"`` and MTFL is neither present nor
            downloadable.
    """
    if source not in ("auto", "real", "synthetic"):
        raise ValueError(f"source must be 'auto', 'real' or 'synthetic'. Received: source={source!r}")
    data_dir = pathlib.Path(data_dir) if data_dir is not None else default_data_dir()
    if source in ("auto", "real"):
        real = find_real_mtfl(data_dir)
        if real is not None:
            logger.info("load_mtfl: using the REAL MTFL at %s", real)
            return MtflData(root=real, source="real")
        if source == "real":
            logger.info("load_mtfl: real MTFL not in %s; downloading", data_dir)
            return MtflData(root=download_mtfl(data_dir), source="real")
        logger.warning("load_mtfl: real MTFL not found in %s; using the SYNTHETIC MTFL-format set", data_dir)

    root = data_dir / "mtfl_synthetic"
    wanted = {"n": int(n), "seed": int(seed), "image_size": list(preprocessing.check_image_size(image_size))}
    marker = root / SYNTHETIC_MARKER
    if marker.is_file():
        found = json.loads(marker.read_text())
        complete = (root / "training.txt").is_file() and (root / "testing.txt").is_file()
        same = all(found.get(k) == v for k, v in wanted.items())
        if complete and found.get("version") == SYNTHETIC_VERSION and same:
            logger.info("load_mtfl: reusing the SYNTHETIC MTFL-format set at %s (%s)", root, wanted)
            return MtflData(root=root, source="synthetic")
    logger.info("load_mtfl: generating the SYNTHETIC MTFL-format set at %s (%s)", root, wanted)
    synthesize(root, n=n, seed=seed, image_size=image_size, overwrite=marker.is_file())
    return MtflData(root=root, source="synthetic")


__all__ = [
    "MTFL_URL",
    "ATTRIBUTES",
    "NUM_CLASSES",
    "LANDMARK_NAMES",
    "MtflAnnotations",
    "read_annotations",
    "flip_landmarks",
    "affine_landmarks",
    "augment_face",
    "mtfl_dataset",
    "synthesize",
    "MtflData",
    "default_data_dir",
    "find_real_mtfl",
    "download_mtfl",
    "load_mtfl",
]
