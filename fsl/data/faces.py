"""Face folders: one sub-folder per identity, read into ``tf.data`` pipelines.

This is the layout of LFW, CASIA-WebFace, VGGFace2 and ORL::

    root/
        Aaron_Eckhart/Aaron_Eckhart_0001.jpg
        Abbas_Kiarostami/...

* ``list_faces(root)`` lists the images (sorted, deterministic) with integer
  labels, one per identity folder.
* ``identity_split(faces)`` splits by identity: verification is measured on
  people never seen in training, so train and test share no person.
* ``face_dataset(paths, labels, ...)`` decodes (jpg, png, pgm, bmp; grey or
  colour), resizes, optionally augments and standardises, and batches.
* ``load_images_numpy(faces)`` returns plain arrays for small sets (ORL,
  eigenfaces baselines).
* ``face_loader(...)`` returns a ``path -> image`` function for pipelines that
  build their own batches (P x K sampling in ``fsl.data.sampling``).

Images are decoded with Pillow inside ``tf.numpy_function`` because
TensorFlow's ``decode_image`` reads neither PGM nor every BMP variant. An
unreadable or corrupt image never raises in the middle of an epoch: it is
skipped and a warning that names the file is logged.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
from collections.abc import Iterable, Sequence

import numpy as np
import tensorflow as tf

from fsl import preprocessing
from fsl._checks import PathLike

logger = logging.getLogger(__name__)


DEFAULT_EXTENSIONS = ("jpg", "jpeg", "png", "pgm", "bmp")
STANDARDIZE_METHODS = (*preprocessing.STANDARDIZE_MODES, None)


# === Listing and splitting ===


@dataclasses.dataclass
class FaceFolder:
    """Images of a face folder with one integer label per identity.

    Attributes:
        paths: image paths (str), sorted by identity then file name.
        labels: int32 array, ``labels[i]`` indexes ``class_names``.
        class_names: identity (folder) names; label ``j`` is
            ``class_names[j]``.
    """

    paths: list
    labels: np.ndarray
    class_names: list

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _normalize_extensions(extensions: Iterable[str]) -> tuple:
    if isinstance(extensions, str):
        extensions = (extensions,)
    normalized = tuple(e.lower().lstrip(".") for e in extensions)
    if not normalized:
        raise ValueError(f"extensions must not be empty. Received: extensions={extensions}")
    return normalized


def list_faces(
    root: PathLike,
    min_images: int = 1,
    extensions: Sequence[str] = DEFAULT_EXTENSIONS,
) -> FaceFolder:
    """Lists a face folder with one sub-folder per identity.

    Args:
        root: folder whose sub-folders are identities.
        min_images: identities with fewer images are left out (logged); e.g.
            ``min_images=2`` keeps only people who can form a positive pair.
        extensions: image file extensions to keep (case-insensitive). Other
            files (README, .txt, ...) are ignored.

    Returns:
        A ``FaceFolder``: paths sorted by identity then file name, int32
        labels ``0..num_classes - 1`` in sorted identity order.

    Raises:
        FileNotFoundError: ``root`` does not exist or is not a folder.
        ValueError: ``min_images < 1``, or no identity folder holds at least
            ``min_images`` images.

    Examples:
    >>> faces = list_faces("orl_faces")  # doctest: +SKIP
    >>> len(faces), faces.num_classes  # doctest: +SKIP
    (400, 40)
    """
    if int(min_images) != min_images or min_images < 1:
        raise ValueError(f"min_images must be an integer >= 1. Received: min_images={min_images}")
    extensions = _normalize_extensions(extensions)
    root = pathlib.Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Face folder not found (or not a folder). Received: root={str(root)!r}")

    paths, labels, class_names = [], [], []
    empty, too_few = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        images = sorted(
            str(f)
            for f in folder.iterdir()
            if f.is_file() and f.suffix.lower().lstrip(".") in extensions
        )
        if not images:
            empty.append(folder.name)
            continue
        if len(images) < min_images:
            too_few.append(folder.name)
            continue
        label = len(class_names)
        class_names.append(folder.name)
        paths.extend(images)
        labels.extend([label] * len(images))
    if empty:
        logger.info("list_faces(%s): ignored %d folder(s) with no image: %s", root, len(empty), empty[:10])
    if too_few:
        logger.info(
            "list_faces(%s): left out %d identities with fewer than %d images",
            root,
            len(too_few),
            min_images,
        )
    if not paths:
        raise ValueError(
            f"No identity folder with at least {min_images} image(s) with extension in "
            f"{extensions} under root={str(root)!r}"
        )
    logger.info("list_faces(%s): %d images of %d identities", root, len(paths), len(class_names))
    return FaceFolder(paths=paths, labels=np.asarray(labels, dtype="int32"), class_names=class_names)


def _subset(faces: FaceFolder, class_ids: Sequence[int]) -> FaceFolder:
    """Keeps the identities ``class_ids`` (sorted) and relabels them ``0..k-1``."""
    class_ids = sorted(int(c) for c in class_ids)
    new_label = {old: new for new, old in enumerate(class_ids)}
    keep = [i for i, label in enumerate(faces.labels) if int(label) in new_label]
    return FaceFolder(
        paths=[faces.paths[i] for i in keep],
        labels=np.asarray([new_label[int(faces.labels[i])] for i in keep], dtype="int32"),
        class_names=[faces.class_names[c] for c in class_ids],
    )


def select_identities(faces: FaceFolder, names: Sequence[str]) -> FaceFolder:
    """Keeps only the identities ``names`` (folder names), relabelled ``0..k-1``.

    E.g. the training people of a split, to split them again into training
    and validation people and choose a recipe without the test people.

    Args:
        faces: a ``FaceFolder`` (from ``list_faces``).
        names: identity folder names, each present in ``faces.class_names``.

    Returns:
        A ``FaceFolder`` of those identities, in sorted identity order.

    Raises:
        ValueError: ``names`` is empty, repeats a name, or names an identity
            that ``faces`` does not have.
    """
    if isinstance(names, str):
        raise ValueError(f"names must be a list of identity names. Received: names={names!r}")
    names = [str(n) for n in names]
    if not names:
        raise ValueError("names must name at least one identity. Received: names=[]")
    if len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"names repeats identities {repeated}. Received: names={names!r}")
    index = {name: i for i, name in enumerate(faces.class_names)}
    missing = [n for n in names if n not in index]
    if missing:
        raise ValueError(
            f"Identities {missing} are not in the face folder (it has "
            f"{faces.num_classes}: {faces.class_names[:5]}...). Received: names={names!r}"
        )
    return _subset(faces, [index[n] for n in names])


def identity_split(
    faces: FaceFolder,
    test_identities: int | float = 10,
    seed: int = 0,
) -> tuple:
    """Splits a face folder into identity-disjoint train and test sets.

    Verification and recognition of *new* people is measured on identities
    never seen in training, so no person appears on both sides.

    Args:
        faces: a ``FaceFolder`` (from ``list_faces``).
        test_identities: number of test identities (int ``>= 0``; 0 puts
            everyone on the training side and leaves the test side empty),
            or a fraction of the identities in ``(0, 1)``.
        seed: seed of the (deterministic) choice of test identities.

    Returns:
        ``(train, test)``, two ``FaceFolder`` objects, each relabelled
        ``0..k-1`` in sorted identity order (``class_names`` says who is who).

    Raises:
        ValueError: ``test_identities`` leaves the training side without
            identities, or is a fraction that leaves the test side empty.
    """
    n = faces.num_classes
    if isinstance(test_identities, float) and not float(test_identities).is_integer():
        if not 0.0 < test_identities < 1.0:
            raise ValueError(
                "test_identities must be an int >= 0 or a fraction in (0, 1). "
                f"Received: test_identities={test_identities}"
            )
        n_test = int(round(test_identities * n))
    else:
        n_test = int(test_identities)
    fraction = isinstance(test_identities, float) and not float(test_identities).is_integer()
    if not (1 if fraction else 0) <= n_test <= n - 1:
        raise ValueError(
            f"test_identities must leave at least one training identity (and, as a fraction, "
            f"one test identity) in the split of {n} identities. "
            f"Received: test_identities={test_identities}"
        )
    rng = np.random.default_rng(seed)
    test_ids = rng.permutation(n)[:n_test]
    train_ids = sorted(set(range(n)) - set(int(i) for i in test_ids))
    return _subset(faces, train_ids), _subset(faces, test_ids)


# === Decoding ===


def read_image_pil(path: PathLike, channels: int = 1) -> np.ndarray:
    """Decodes one image file at its own size: ``fsl.preprocessing.read_image``."""
    return preprocessing.read_image(path, channels)


def _decode_or_skip(path, channels: int):
    """numpy_function body: (image uint8, ok); logs and returns ok=False on error."""
    path = path.decode("utf-8") if isinstance(path, bytes) else str(path)
    try:
        return read_image_pil(path, channels), np.bool_(True)
    except Exception as error:  # noqa: BLE001 - any decoder error skips the file
        logger.warning("Skipping unreadable image %s (%s: %s)", path, type(error).__name__, error)
        return np.zeros((1, 1, channels), dtype="uint8"), np.bool_(False)


def decode_image_tf(path, channels: int = 1):
    """``tf.data`` decoding of one path: returns ``(image uint8 [H, W, C], ok)``.

    ``ok`` is False (and a warning names the file) when it cannot be read; the
    image is then a ``[1, 1, C]`` zero placeholder, to be filtered out.
    """
    channels = preprocessing.check_channels(channels)
    image, ok = tf.numpy_function(
        lambda p: _decode_or_skip(p, channels), [path], [tf.uint8, tf.bool], stateful=False
    )
    image.set_shape([None, None, channels])
    ok.set_shape([])
    return image, ok


def resize_image(image, image_size=(96, 96), center_crop: float = 1.0):
    """Central crop then antialiased bilinear resize (``fsl.preprocessing.resize``),
    as a ``tf.Tensor`` for ``tf.data``."""
    return preprocessing.resize(tf.convert_to_tensor(image), image_size, center_crop)


def standardize_image(image, standardize: str | None = "fixed"):
    """Standardises ``0..255`` pixels (``fsl.preprocessing.standardize``;
    ``"prewhiten"`` per image, also in a batch), as a ``tf.Tensor`` for ``tf.data``."""
    return preprocessing.standardize(tf.convert_to_tensor(image), standardize)


def load_image(
    path: PathLike,
    image_size=(96, 96),
    channels: int = 1,
    center_crop: float = 1.0,
) -> np.ndarray:
    """Loads one image as float32 ``[H, W, C]`` with values in ``[0, 255]``.

    Same decoding and resizing as ``face_dataset`` (no standardisation):
    ``fsl.preprocessing.Preprocessing(...).load(path)``.

    Args:
        path: image file (jpg, jpeg, png, pgm, bmp).
        image_size: ``(height, width)`` or None (keep the file's size).
        channels: 1 (grey) or 3 (RGB).
        center_crop: fraction of each side kept around the centre before
            resizing.

    Returns:
        float32 numpy array ``[height, width, channels]``.

    Raises:
        ValueError: the file cannot be decoded (the message names it).
    """
    image_size = preprocessing.check_image_size(image_size)
    try:
        array = preprocessing.read_image(path, channels)
    except FileNotFoundError as error:
        raise ValueError(f"Cannot read image {str(path)!r}: {error}") from error
    return preprocessing.resize(array, image_size, center_crop)


# === Augmentation ===


def augment_image(image, seed, crop_fraction: float = 0.9, max_brightness: float = 0.1):
    """Training augmentation, deterministic given ``seed``.

    Random crop of ``crop_fraction`` of each side resized back (a small
    scale/translation jitter), horizontal flip, brightness shift of up to
    ``max_brightness * 255``; values clipped to ``[0, 255]``.

    Args:
        image: float32 ``[H, W, C]`` in ``[0, 255]``, static ``H, W, C``.
        seed: int tensor of shape ``[2]`` (stateless random ops).
        crop_fraction: fraction of each side kept by the random crop.
        max_brightness: maximal brightness shift as a fraction of 255.

    Returns:
        float32 ``[H, W, C]`` in ``[0, 255]``.
    """
    height, width, channels = image.shape
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3)
    crop_h = max(1, int(round(height * crop_fraction)))
    crop_w = max(1, int(round(width * crop_fraction)))
    image = tf.image.stateless_random_crop(image, [crop_h, crop_w, channels], seed=seeds[0])
    image = tf.image.resize(image, (height, width), method="bilinear")
    image = tf.image.stateless_random_flip_left_right(image, seed=seeds[1])
    image = tf.image.stateless_random_brightness(image, max_brightness * 255.0, seed=seeds[2])
    return tf.clip_by_value(image, 0.0, 255.0)


def _random_seeds(seed: int):
    """Dataset of ``[2]`` int64 seeds, new each epoch, deterministic given ``seed``."""
    return tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)


# === Pipelines ===


def face_dataset(
    paths: Sequence[str],
    labels: Sequence[int] | None = None,
    image_size=(96, 96),
    channels: int = 1,
    standardize: str | None = "fixed",
    augment: bool = False,
    batch_size: int | None = None,
    shuffle: bool = False,
    seed: int = 0,
    cache: bool = False,
    center_crop: float = 1.0,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """A ``tf.data`` pipeline of face images (and labels).

    Args:
        paths: image paths (e.g. ``list_faces(root).paths``).
        labels: int labels, one per path, or None for images only.
        image_size: ``(height, width)`` of the output; None keeps each file's
            size (then ``batch_size`` and ``augment`` need equal sizes).
        channels: 1 (grey) or 3 (RGB); files are converted as needed.
        standardize: ``"fixed"`` ((x - 127.5) / 128), ``"prewhiten"``
            (per image), ``"unit"`` (x / 255) or None (``[0, 255]``).
        augment: random crop, horizontal flip and brightness (training).
        batch_size: batch size, or None for single elements.
        shuffle: shuffle the order (again at each epoch).
        seed: seed of the shuffling and the augmentation: the same seed gives
            the same stream.
        cache: cache the decoded, resized images in memory (before
            augmentation).
        center_crop: fraction of each side kept around the centre before
            resizing.
        drop_remainder: drop the last incomplete batch.

    Returns:
        A dataset of ``(image, label)`` (or ``image`` when ``labels`` is None),
        image float32 ``[height, width, channels]`` (batched: ``[B, ...]``),
        label int32. Unreadable files are skipped with a warning naming them.

    Raises:
        ValueError: invalid arguments, or ``len(labels) != len(paths)``.

    Examples:
    >>> faces = list_faces("orl_faces")  # doctest: +SKIP
    >>> ds = face_dataset(faces.paths, faces.labels, batch_size=32)  # doctest: +SKIP
    """
    image_size = preprocessing.check_image_size(image_size)
    channels = preprocessing.check_channels(channels)
    preprocessing.check_standardize(standardize)
    if not 0.0 < center_crop <= 1.0:
        raise ValueError(f"center_crop must be in (0, 1]. Received: center_crop={center_crop}")
    if batch_size is not None and (int(batch_size) != batch_size or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None. Received: batch_size={batch_size}")
    if augment and image_size is None:
        raise ValueError("augment=True needs a fixed image_size. Received: image_size=None")
    paths = [str(p) for p in paths]
    if not paths:
        raise ValueError("paths must not be empty. Received: paths=[]")
    has_labels = labels is not None
    if has_labels:
        labels = np.asarray(labels, dtype="int32")
        if labels.shape != (len(paths),):
            raise ValueError(
                f"labels must have one entry per path ({len(paths)}). Received: labels.shape={labels.shape}"
            )
    else:
        labels = np.zeros(len(paths), dtype="int32")

    ds = tf.data.Dataset.from_tensor_slices((paths, labels))
    if shuffle and not cache:
        ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)

    def decode(path, label):
        image, ok = decode_image_tf(path, channels)
        return image, label, ok

    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.filter(lambda image, label, ok: ok)
    ds = ds.map(
        lambda image, label, ok: (resize_image(image, image_size, center_crop), label),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    if cache:
        ds = ds.cache()
        if shuffle:
            ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    if augment:
        ds = tf.data.Dataset.zip((ds, _random_seeds(seed)))
        ds = ds.map(
            lambda element, s: (augment_image(element[0], s), element[1]),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
    ds = ds.map(
        lambda image, label: (standardize_image(image, standardize), label),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    if not has_labels:
        ds = ds.map(lambda image, label: image)
    if batch_size is not None:
        ds = ds.batch(int(batch_size), drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)


def face_loader(
    image_size=(96, 96),
    channels: int = 1,
    standardize: str | None = "fixed",
    center_crop: float = 1.0,
):
    """A ``path -> image`` function for pipelines that sample their own batches.

    For ``fsl.data.sampling.pk_file_dataset(paths, labels, p, k, load_fn,
    seed)``: P x K batches cannot drop an element, so an unreadable file gives
    an all-zero image (before standardisation) and a warning naming it,
    instead of being skipped. Check a new dataset once with ``face_dataset``
    (which skips and names bad files) or ``verify_images``.

    Returns:
        A function mapping a scalar string tensor to float32
        ``[height, width, channels]``.
    """
    image_size = preprocessing.check_image_size(image_size)
    if image_size is None:
        raise ValueError("face_loader needs a fixed image_size. Received: image_size=None")
    channels = preprocessing.check_channels(channels)
    preprocessing.check_standardize(standardize)

    def load(path):
        image, ok = decode_image_tf(path, channels)
        image = resize_image(image, image_size, center_crop)
        image = tf.where(ok, image, tf.zeros_like(image))
        image = tf.ensure_shape(image, [image_size[0], image_size[1], channels])
        return standardize_image(image, standardize)

    return load


def verify_images(paths: Sequence[str], channels: int = 1) -> list:
    """Returns the paths that cannot be decoded (each logged as a warning)."""
    bad = []
    for path in paths:
        _, ok = _decode_or_skip(str(path), preprocessing.check_channels(channels))
        if not ok:
            bad.append(str(path))
    return bad


def load_images_numpy(
    faces: FaceFolder,
    image_size=(112, 92),
    channels: int = 1,
    standardize: str | None = "unit",
) -> tuple:
    """All images of a small face folder as numpy arrays (ORL, eigenfaces).

    Args:
        faces: a ``FaceFolder``.
        image_size: ``(height, width)``; the default is ORL's native size.
        channels: 1 or 3.
        standardize: as in ``face_dataset``; default ``"unit"`` (``[0, 1]``).

    Returns:
        ``(images, labels)``: float32 ``[N, height, width, channels]`` and
        int32 ``[N]``. Unreadable files are skipped with a warning naming
        them (so ``N`` may be less than ``len(faces)``).
    """
    image_size = preprocessing.check_image_size(image_size)
    if image_size is None:
        raise ValueError("load_images_numpy needs a fixed image_size. Received: image_size=None")
    ds = face_dataset(
        faces.paths,
        faces.labels,
        image_size=image_size,
        channels=channels,
        standardize=standardize,
        batch_size=256,
    )
    images, labels = [], []
    for x, y in ds.as_numpy_iterator():
        images.append(x)
        labels.append(y)
    if not images:
        raise ValueError(f"No readable image among the {len(faces)} files of the face folder")
    return np.concatenate(images).astype("float32"), np.concatenate(labels).astype("int32")


__all__ = [
    "FaceFolder",
    "list_faces",
    "identity_split",
    "select_identities",
    "read_image_pil",
    "decode_image_tf",
    "resize_image",
    "standardize_image",
    "load_image",
    "augment_image",
    "face_dataset",
    "face_loader",
    "verify_images",
    "load_images_numpy",
]
