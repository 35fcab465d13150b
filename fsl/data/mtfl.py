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
import shutil
from typing import Optional, Union

import numpy as np
import tensorflow as tf

from fsl.data import faces as _faces

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

MTFL_URL = "http://mmlab.ie.cuhk.edu.hk/projects/TCDCN/data/MTFL.zip"
SPLIT_FILES = {"train": "training.txt", "test": "testing.txt"}
ATTRIBUTES = ("gender", "smile", "glasses", "pose")
NUM_CLASSES = {"gender": 2, "smile": 2, "glasses": 2, "pose": 5}
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
# Horizontal flip: left eye <-> right eye, left mouth corner <-> right one.
FLIP_PERMUTATION = (1, 0, 2, 4, 3)
SYNTHETIC_MARKER = "synthetic.json"
SYNTHETIC_VERSION = 1


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


def read_annotations(txt_path: PathLike, root: Optional[PathLike] = None) -> MtflAnnotations:
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
    batch_size: Optional[int] = None,
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
    image_size = _faces._check_image_size(image_size)
    if image_size is None:
        raise ValueError("mtfl_dataset needs a fixed image_size. Received: image_size=None")
    channels = _faces._check_channels(channels)
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
        image = _faces.resize_image(image, image_size) / 255.0
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


# === Synthetic MTFL ===

_README = """SYNTHETIC MTFL-format face set (NOT the real MTFL dataset).

Written by fsl.data.mtfl.synthesize(n={n}, seed={seed}, image_size={size}).
Cartoon faces drawn with Pillow, with known landmarks and rendered attributes:
  landmarks: pupil centres, nose tip, mouth corners (pixel centres at integers)
  gender (1 male / 2 female): short hair cap vs long hair down the sides
  smile (1 yes / 2 no): wide open mouth with teeth and raised corners vs a
    narrower straight closed mouth
  glasses (1 yes / 2 no): thick dark round frames over tinted lenses, a bridge
  pose (1..5): yaw; eyes, nose and mouth shifted from image-left (1) to
    image-right (5) within the face, hair shifted the other way, an ear on
    the far side growing with the yaw; 3 = frontal
with random position, scale, rotation, skin/hair/background colours, lighting
and noise. Same file format as MTFL.zip: training.txt and testing.txt, lines
'synthetic\\NNNNN.jpg x1..x5 y1..y5 gender smile glasses pose'.
Use it for tests and tutorials; report results on it as synthetic.
"""


def _rotate_points(points: np.ndarray, centre, angle_deg: float) -> np.ndarray:
    """Where PIL's ``Image.rotate(angle_deg, center=centre)`` moves ``points``."""
    theta = math.radians(angle_deg)
    cos, sin = math.cos(theta), math.sin(theta)
    dx = points[:, 0] - centre[0]
    dy = points[:, 1] - centre[1]
    # counter-clockwise on screen (y down)
    return np.stack([centre[0] + cos * dx + sin * dy, centre[1] - sin * dx + cos * dy], axis=1)


_SUPERSAMPLE = 4


class _Pen:
    """ImageDraw on a canvas ``F`` times larger, in the coordinates of the small image.

    Small-image pixel ``i`` (centre at ``i``) is the box-average of the large
    pixels ``iF .. iF + F - 1``, whose centre is ``iF + (F - 1) / 2``; Pillow
    floors coordinates, hence the extra ``+ 0.5``. Drawn shapes land within
    about 0.1 px of their nominal position after ``resize(BOX)``.
    """

    def __init__(self, image):
        from PIL import ImageDraw

        self.draw = ImageDraw.Draw(image)
        self.f = _SUPERSAMPLE

    def p(self, x, y):
        return (x * self.f + (self.f - 1) / 2.0 + 0.5, y * self.f + (self.f - 1) / 2.0 + 0.5)

    def box(self, x0, y0, x1, y1):
        return [*self.p(x0, y0), *self.p(x1, y1)]

    def ellipse(self, x, y, rx, ry, fill=None, outline=None, width=1.0):
        cx, cy = self.p(x, y)
        self.draw.ellipse(
            [cx - rx * self.f, cy - ry * self.f, cx + rx * self.f, cy + ry * self.f],
            fill=fill,
            outline=outline,
            width=max(1, int(round(width * self.f))),
        )

    def rectangle(self, box, fill=None):
        self.draw.rectangle(self.box(*box), fill=fill)

    def rounded_rectangle(self, box, radius, fill=None):
        self.draw.rounded_rectangle(self.box(*box), radius=radius * self.f, fill=fill)

    def line(self, box, fill=None, width=1.0):
        self.draw.line(self.box(*box), fill=fill, width=max(1, int(round(width * self.f))))

    def polygon(self, points, fill=None):
        self.draw.polygon([self.p(x, y) for x, y in points], fill=fill)

    def chord(self, box, start, end, fill=None):
        self.draw.chord(self.box(*box), start, end, fill=fill)


def _draw_face(rng: np.random.Generator, size: tuple, gender: int, smile: int, glasses: int, pose: int):
    """One synthetic face. Codes 0-based. Returns (PIL RGB image, [5, 2] landmarks)."""
    from PIL import Image, ImageDraw

    height, width = size
    s = min(height, width)
    cx = width / 2 + rng.uniform(-0.06, 0.06) * width
    cy = height / 2 + rng.uniform(-0.04, 0.06) * height
    a = s * rng.uniform(0.25, 0.31)  # face half-width
    b = a * rng.uniform(1.15, 1.25)  # face half-height
    yaw = (pose - 2) / 2.0  # -1, -0.5, 0, 0.5, 1
    d = yaw * 0.5 * a  # horizontal shift of the features
    back = -0.15 * yaw * a  # the back of the head (hair) shifts the other way

    skin_level = rng.uniform(150, 230)
    skin = tuple(int(v) for v in np.clip(skin_level * np.array([1.0, rng.uniform(0.78, 0.9), rng.uniform(0.62, 0.8)]), 0, 255))
    hair_level = rng.uniform(15, 85)
    hair = tuple(int(v) for v in np.clip(hair_level * np.array([1.0, rng.uniform(0.7, 0.95), rng.uniform(0.5, 0.8)]), 0, 255))
    pupil = tuple(int(v) for v in rng.uniform(5, 40, 3))
    lips = (int(rng.uniform(110, 150)), int(rng.uniform(20, 45)), int(rng.uniform(30, 55)))
    frame = tuple(int(v) for v in rng.uniform(0, 45, 3))

    layer = Image.new("RGBA", (width * _SUPERSAMPLE, height * _SUPERSAMPLE), (0, 0, 0, 0))
    pen = _Pen(layer)
    draw = pen

    def ellipse(x, y, rx, ry, fill, outline=None, line=1):
        pen.ellipse(x, y, rx, ry, fill=fill, outline=outline, width=line)

    # neck, then hair behind the head
    draw.rectangle([cx - 0.45 * a, cy + 0.6 * b, cx + 0.45 * a, height], fill=skin)
    if gender == 1:  # female: long hair down the sides
        length = rng.uniform(1.25, 1.7) * b
        draw.rounded_rectangle(
            [cx + back - 1.25 * a, cy - 1.1 * b, cx + back + 1.25 * a, cy + length], radius=0.8 * a, fill=hair
        )
    else:  # male: short cap on top of the head
        ellipse(cx + back, cy - 0.12 * b, 1.07 * a, 0.98 * b, hair)
    ellipse(cx, cy + rng.uniform(0.0, 0.06) * b, a, b * rng.uniform(0.88, 0.94), skin)
    # ear on the side the face turns away from
    if pose != 2:
        side = -1.0 if yaw > 0 else 1.0
        ear = tuple(int(c * 0.85) for c in skin)
        ellipse(cx + side * 0.95 * a, cy, 0.1 * a + 0.12 * a * abs(yaw), 0.25 * b, ear)

    eye_y = cy - 0.16 * b + rng.uniform(-0.03, 0.03) * b
    e = 0.42 * a * (1.0 - 0.22 * abs(yaw))
    left_eye = (cx + d - e, eye_y)
    right_eye = (cx + d + e, eye_y)
    rg = 0.27 * a  # glasses: tinted lenses under the eyes, thick frames over them
    if glasses == 0:
        tint = tuple(int(c) for c in np.array(skin) * 0.55 + np.array([20, 35, 60]))
        for ex, ey in (left_eye, right_eye):
            ellipse(ex, ey, rg, rg * 0.85, tint)
    for ex, ey in (left_eye, right_eye):
        ellipse(ex, ey, max(0.17 * a, 3.0), max(0.1 * a, 2.0), (245, 245, 240))
        ellipse(ex, ey, max(0.085 * a, 1.6), max(0.085 * a, 1.6), pupil)
    if glasses == 0:
        line = max(1.2, 0.1 * a)
        for ex, ey in (left_eye, right_eye):
            ellipse(ex, ey, rg, rg * 0.85, None, outline=frame, line=line)
        draw.line([left_eye[0] + rg, eye_y, right_eye[0] - rg, eye_y], fill=frame, width=line)
        draw.line([left_eye[0] - rg, eye_y, cx - 0.98 * a + d * 0.3, eye_y - 0.05 * b], fill=frame, width=line)
        draw.line([right_eye[0] + rg, eye_y, cx + 0.98 * a + d * 0.3, eye_y - 0.05 * b], fill=frame, width=line)

    nose = (cx + 1.4 * d, cy + 0.14 * b + rng.uniform(-0.03, 0.03) * b)
    shade = tuple(int(c * 0.72) for c in skin)
    draw.polygon(
        [(cx + d, eye_y + 0.12 * b), (nose[0], nose[1]), (cx + d - 0.12 * a * np.sign(d or 1), nose[1] + 0.02 * b)],
        fill=tuple(int(c * 0.88) for c in skin),
    )
    ellipse(nose[0], nose[1], 0.07 * a, 0.07 * a, shade)

    mouth_y = cy + 0.5 * b + rng.uniform(-0.03, 0.03) * b
    m = (0.4 if smile == 0 else 0.3) * a * (1.0 - 0.18 * abs(yaw)) * rng.uniform(0.92, 1.08)
    mx = cx + 1.1 * d
    if smile == 0:  # smiling: raised corners, open mouth below them
        corner_y = mouth_y - 0.06 * b
        depth = rng.uniform(0.22, 0.3) * b
        draw.chord([mx - m, corner_y - depth, mx + m, corner_y + depth], 0, 180, fill=lips)
        draw.chord(
            [mx - 0.8 * m, corner_y - 0.4 * depth, mx + 0.8 * m, corner_y + 0.35 * depth],
            0,
            180,
            fill=(235, 235, 230),
        )
        ellipse(mx - m, corner_y, 0.05 * a, 0.05 * a, lips)
        ellipse(mx + m, corner_y, 0.05 * a, 0.05 * a, lips)
    else:  # closed, straight
        corner_y = mouth_y + rng.uniform(-0.01, 0.02) * b
        thick = max(1.5, rng.uniform(0.06, 0.08) * a)
        draw.line([mx - m, corner_y, mx + m, corner_y], fill=lips, width=thick)
        ellipse(mx - m, corner_y, thick / 2, thick / 2, lips)
        ellipse(mx + m, corner_y, thick / 2, thick / 2, lips)
    mouth_left = (mx - m, corner_y)
    mouth_right = (mx + m, corner_y)

    points = np.array([left_eye, right_eye, nose, mouth_left, mouth_right], dtype="float64")
    angle = rng.uniform(-15.0, 15.0)
    # Downsample (anti-aliased), then rotate. PIL rotates about a point in
    # continuous coordinates (pixel centres at i + 0.5), i.e. about our
    # (cx, cy) in pixel-centre-at-integer coordinates.
    layer = layer.resize((width, height), resample=Image.BOX)
    layer = layer.rotate(angle, resample=Image.BILINEAR, center=(cx + 0.5, cy + 0.5))
    points = _rotate_points(points, (cx, cy), angle)

    # background: random colour with a gradient and a few blobs
    yy, xx = np.mgrid[0:height, 0:width].astype("float32")
    base = rng.uniform(40, 220, 3)
    direction = rng.uniform(-1, 1, 2)
    grad = (direction[0] * (xx / width - 0.5) + direction[1] * (yy / height - 0.5)) * rng.uniform(0, 80)
    background = np.clip(base[None, None, :] + grad[..., None], 0, 255).astype("uint8")
    canvas = Image.fromarray(background, "RGB").convert("RGBA")
    blobs = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(0, 4))):
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        r = rng.uniform(0.05, 0.2) * s
        blobs.ellipse([x0 - r, y0 - r, x0 + r, y0 + r], fill=tuple(int(v) for v in rng.uniform(30, 230, 3)))
    canvas = Image.alpha_composite(canvas, layer).convert("RGB")

    # lighting and noise
    pixels = np.asarray(canvas, dtype="float32")
    light = rng.uniform(0.85, 1.15) * (1.0 + rng.uniform(-0.25, 0.25) * (xx / width - 0.5))
    pixels = pixels * light[..., None] + rng.normal(0.0, rng.uniform(0.0, 5.0), pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype("uint8"), "RGB")
    return image, points


def synthesize(
    out_dir: PathLike,
    n: int = 2000,
    seed: int = 0,
    image_size=(96, 96),
    test_fraction: float = 0.2,
    overwrite: bool = False,
) -> pathlib.Path:
    """Writes a SYNTHETIC face set in the exact MTFL format.

    Not real faces: cartoon faces drawn with Pillow, for offline tests,
    tutorials and CI. Each has known landmarks (pupil centres, nose tip,
    mouth corners) and visibly rendered attributes: gender (short hair cap /
    long hair), smile (open mouth with raised corners / straight closed
    mouth), glasses (thick dark frames over tinted lenses), and 5 head poses
    (features shifted from image-left to image-right within the face, hair
    the other way, an ear on the far side). Shapes are drawn 4x larger and
    box-downsampled, so landmarks are accurate to about 0.1 px.
    Position, scale, rotation (+-15 degrees), colours, background, lighting
    and noise are random; the attributes are drawn independently and
    uniformly. Deterministic given ``seed``.

    Files: ``synthetic/NNNNN.jpg``, ``training.txt`` and ``testing.txt`` (the
    last ``round(n * test_fraction)`` faces; backslash paths, 1-based codes,
    as MTFL.zip), ``README.txt`` (says it is synthetic) and
    ``synthetic.json`` (the parameters).

    Args:
        out_dir: folder to write (created).
        n: number of faces (>= 2).
        seed: random seed.
        image_size: ``(height, width)`` of the images.
        test_fraction: fraction written to ``testing.txt``, in ``(0, 1)``.
        overwrite: replace an earlier synthetic set in a non-empty
            ``out_dir`` (only the files listed above are removed).

    Returns:
        ``out_dir`` as a ``pathlib.Path`` (the MTFL root).

    Raises:
        FileExistsError: ``out_dir`` is not empty and ``overwrite=False``.
        ValueError: invalid ``n``, ``image_size`` or ``test_fraction``.
    """
    if int(n) != n or n < 2:
        raise ValueError(f"n must be an integer >= 2. Received: n={n}")
    image_size = _faces._check_image_size(image_size)
    if image_size is None or min(image_size) < 32:
        raise ValueError(f"image_size must be at least (32, 32). Received: image_size={image_size}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1). Received: test_fraction={test_fraction}")
    n_test = min(max(1, int(round(n * test_fraction))), n - 1)
    out_dir = pathlib.Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"out_dir is not empty; pass overwrite=True to replace it. Received: out_dir={str(out_dir)!r}"
            )
        shutil.rmtree(out_dir / "synthetic", ignore_errors=True)
        for name in ("training.txt", "testing.txt", "README.txt", SYNTHETIC_MARKER):
            (out_dir / name).unlink(missing_ok=True)
    (out_dir / "synthetic").mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(seed)
    lines = []
    for i in range(int(n)):
        gender, smile, glasses = (int(v) for v in rng.integers(0, 2, 3))
        pose = int(rng.integers(0, 5))
        image, points = _draw_face(rng, image_size, gender, smile, glasses, pose)
        name = f"{i:05d}.jpg"
        image.save(out_dir / "synthetic" / name, format="JPEG", quality=92)
        coords = " ".join(f"{v:.2f}" for v in np.concatenate([points[:, 0], points[:, 1]]))
        lines.append(f"synthetic\\{name} {coords} {gender + 1} {smile + 1} {glasses + 1} {pose + 1}")
    (out_dir / "training.txt").write_text("\n".join(lines[: n - n_test]) + "\n")
    (out_dir / "testing.txt").write_text("\n".join(lines[n - n_test :]) + "\n")
    (out_dir / "README.txt").write_text(_README.format(n=n, seed=seed, size=image_size))
    params = {"n": int(n), "seed": int(seed), "image_size": list(image_size), "test_fraction": test_fraction}
    (out_dir / SYNTHETIC_MARKER).write_text(json.dumps({**params, "version": SYNTHETIC_VERSION}))
    logger.info(
        "synthesize: wrote a SYNTHETIC MTFL-format set of %d faces (%d train, %d test) to %s",
        n,
        n - n_test,
        n_test,
        out_dir,
    )
    return out_dir


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


def find_real_mtfl(data_dir: PathLike) -> Optional[pathlib.Path]:
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


def download_mtfl(data_dir: Optional[PathLike] = None, timeout: float = 60.0) -> pathlib.Path:
    """Downloads and unpacks the real MTFL.zip (about 0.5 GB) into ``data_dir/MTFL``.

    Needs network access to the authors' server (``MTFL_URL``); not run by the
    offline test suite (the test machines have no network).

    Args:
        data_dir: data folder; default ``default_data_dir()``.
        timeout: socket timeout in seconds (connection and each read).

    Returns:
        The folder holding ``training.txt`` and ``testing.txt``.

    Raises:
        OSError: the download or unpacking failed (message names the URL).
    """
    import urllib.request
    import zipfile

    data_dir = pathlib.Path(data_dir) if data_dir is not None else default_data_dir()
    target = data_dir / "MTFL"
    target.mkdir(parents=True, exist_ok=True)
    archive = data_dir / "MTFL.zip"
    logger.info("download_mtfl: downloading the real MTFL from %s to %s", MTFL_URL, archive)
    try:
        with urllib.request.urlopen(MTFL_URL, timeout=timeout) as response, open(archive, "wb") as out:
            shutil.copyfileobj(response, out, length=1 << 20)
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(target)
    except Exception as error:  # noqa: BLE001
        raise OSError(f"Could not download/unpack MTFL from {MTFL_URL} into {target}: {error}") from error
    for candidate in [target, *sorted(p for p in target.iterdir() if p.is_dir())]:
        if (candidate / "training.txt").is_file():
            return candidate
    raise OSError(f"MTFL archive from {MTFL_URL} has no training.txt under {target}")


def load_mtfl(
    source: str = "auto",
    data_dir: Optional[PathLike] = None,
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
    wanted = {"n": int(n), "seed": int(seed), "image_size": list(_faces._check_image_size(image_size))}
    marker = root / SYNTHETIC_MARKER
    if marker.is_file():
        found = json.loads(marker.read_text())
        complete = (root / "training.txt").is_file() and (root / "testing.txt").is_file()
        if complete and found.get("version") == SYNTHETIC_VERSION and all(found.get(k) == v for k, v in wanted.items()):
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
