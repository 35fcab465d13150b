"""Labeled Faces in the Wild: the verification protocol's pair lists, and TFDS.

LFW (Huang et al., "Labeled Faces in the Wild: A Database for Studying Face
Recognition in Unconstrained Environments", UMass TR 07-49, 2007) defines
verification on fixed pair lists:

* View 2, ``pairs.txt``: first line ``"10 300"`` (10 folds, 300 pairs of
  each kind per fold); then, per fold, 300 *same* lines ``name idx1 idx2``
  followed by 300 *different* lines ``name1 idx1 name2 idx2``.
* View 1, ``pairsDevTrain.txt`` / ``pairsDevTest.txt``: first line a single
  count ``N``; then ``N`` same lines and ``N`` different lines (one fold).

Indices are 1-based; the image of ``(name, idx)`` is
``<root>/<name>/<name>_<idx:04d>.jpg``.

Label convention: ``same = 1`` for two images of the same person, ``0`` for
different people.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib

import numpy as np

from fsl._checks import PathLike

logger = logging.getLogger(__name__)



@dataclasses.dataclass
class LfwPairs:
    """Verification pairs of an LFW pair list.

    Attributes:
        path1, path2: image paths (relative ``name/name_0001.jpg`` when no
            ``images_root`` was given).
        same: int32, 1 if both images show the same person, else 0.
        fold: int32 fold index (0-based; always 0 for View 1).
        num_folds: number of folds.
    """

    path1: list
    path2: list
    same: np.ndarray
    fold: np.ndarray
    num_folds: int

    def __len__(self) -> int:
        return len(self.path1)

    def fold_indices(self, fold: int) -> np.ndarray:
        """Indices of the pairs of ``fold`` (the test fold of a 10-fold run)."""
        if not 0 <= fold < self.num_folds:
            raise ValueError(f"fold must be in [0, {self.num_folds}). Received: fold={fold}")
        return np.flatnonzero(self.fold == fold)


def image_path(name: str, index: int, images_root: PathLike | None = None) -> str:
    """``<root>/<name>/<name>_<index:04d>.jpg`` (``index`` 1-based)."""
    relative = f"{name}/{name}_{int(index):04d}.jpg"
    return relative if images_root is None else str(pathlib.Path(images_root) / relative)


def _read_source(path_or_text) -> tuple:
    """Returns (text, description) for a path or the text itself."""
    if isinstance(path_or_text, os.PathLike):
        path = pathlib.Path(path_or_text)
        return path.read_text(), str(path)
    if not isinstance(path_or_text, str):
        raise TypeError(
            f"path_or_text must be a path or the text of a pair list. Received: {type(path_or_text).__name__}"
        )
    if "\n" in path_or_text.strip():
        return path_or_text, "<text>"
    path = pathlib.Path(path_or_text)
    if not path.is_file():
        raise FileNotFoundError(f"LFW pair list not found. Received: path_or_text={path_or_text!r}")
    return path.read_text(), str(path)


def _index(token: str, source: str, lineno: int, line: str) -> int:
    try:
        value = int(token)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(
            f"{source}, line {lineno}: image index must be an integer >= 1. Received: {line!r}"
        )
    return value


def parse_pairs(path_or_text, images_root: PathLike | None = None) -> LfwPairs:
    """Parses an LFW pair list (View 2 ``pairs.txt`` or View 1 ``pairsDev*.txt``).

    Args:
        path_or_text: path of the file, or its text (a string with newlines).
        images_root: folder holding one sub-folder per person (e.g.
            ``lfw/`` or ``lfw-deepfunneled/``); paths are relative if None.

    Returns:
        An ``LfwPairs`` in file order: per fold, the same pairs then the
        different pairs.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: malformed header or line (the message gives the line
            number and the line), a *different* line where a *same* line is
            expected (or the reverse), or a wrong number of lines.

    Examples:
    >>> pairs = parse_pairs("2 1\\nA 1 2\\nA 1 B 1\\nC 3 4\\nC 1 D 2\\n")
    >>> pairs.same.tolist(), pairs.fold.tolist()
    ([1, 0, 1, 0], [0, 0, 1, 1])
    >>> pairs.path1[1], pairs.path2[1]
    ('A/A_0001.jpg', 'B/B_0001.jpg')
    """
    text, source = _read_source(path_or_text)
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1)]
    lines = [(n, line) for n, line in lines if line]
    if not lines:
        raise ValueError(f"{source}: empty LFW pair list")
    header_no, header = lines[0]
    fields = header.split()
    try:
        counts = [int(f) for f in fields]
    except ValueError:
        counts = []
    if len(counts) == 2 and min(counts) >= 1:
        num_folds, per_kind = counts
    elif len(counts) == 1 and counts[0] >= 1:
        num_folds, per_kind = 1, counts[0]
    else:
        raise ValueError(
            f"{source}, line {header_no}: header must be 'folds pairs_per_kind' (View 2) or "
            f"'pairs_per_kind' (View 1). Received: {header!r}"
        )
    body = lines[1:]
    expected = 2 * num_folds * per_kind
    if len(body) != expected:
        raise ValueError(
            f"{source}: header {header!r} announces {expected} pair lines. Received: {len(body)} lines"
        )

    path1, path2, same, fold = [], [], [], []
    for position, (lineno, line) in enumerate(body):
        fold_index, within = divmod(position, 2 * per_kind)
        want_same = within < per_kind
        tokens = line.split()
        if len(tokens) == 3 and want_same:
            name, i1, i2 = tokens
            p1 = image_path(name, _index(i1, source, lineno, line), images_root)
            p2 = image_path(name, _index(i2, source, lineno, line), images_root)
        elif len(tokens) == 4 and not want_same:
            name1, i1, name2, i2 = tokens
            p1 = image_path(name1, _index(i1, source, lineno, line), images_root)
            p2 = image_path(name2, _index(i2, source, lineno, line), images_root)
        else:
            kind = "same ('name idx1 idx2')" if want_same else "different ('name1 idx1 name2 idx2')"
            raise ValueError(
                f"{source}, line {lineno}: expected a {kind} pair of fold {fold_index}. Received: {line!r}"
            )
        path1.append(p1)
        path2.append(p2)
        same.append(1 if want_same else 0)
        fold.append(fold_index)
    logger.info(
        "parse_pairs(%s): %d pairs in %d fold(s) of %d same + %d different",
        source,
        len(path1),
        num_folds,
        per_kind,
        per_kind,
    )
    return LfwPairs(
        path1=path1,
        path2=path2,
        same=np.asarray(same, dtype="int32"),
        fold=np.asarray(fold, dtype="int32"),
        num_folds=num_folds,
    )


def missing_images(pairs: LfwPairs) -> list:
    """Paths of the pairs that do not exist on disk (sorted, unique)."""
    return sorted({p for p in pairs.path1 + pairs.path2 if not os.path.exists(p)})


def unique_images(pairs: LfwPairs) -> tuple:
    """The distinct images of the pairs, to embed each once.

    Returns:
        ``(paths, index1, index2)``: sorted unique paths and int32 arrays with
        ``paths[index1[i]] == pairs.path1[i]`` and
        ``paths[index2[i]] == pairs.path2[i]``.
    """
    paths = sorted(set(pairs.path1) | set(pairs.path2))
    position = {p: i for i, p in enumerate(paths)}
    index1 = np.asarray([position[p] for p in pairs.path1], dtype="int32")
    index2 = np.asarray([position[p] for p in pairs.path2], dtype="int32")
    return paths, index1, index2


def pairs_dataset(
    pairs: LfwPairs,
    image_size=(96, 96),
    channels: int = 1,
    standardize: str | None = "fixed",
    center_crop: float = 1.0,
    batch_size: int | None = None,
):
    """``tf.data`` of ``((image1, image2), same)`` for the pairs, in file order.

    Decoding, resizing and standardisation as ``fsl.data.faces.face_dataset``.
    A pair with an unreadable image is skipped, with a warning naming the
    file (so the result may have fewer pairs than ``pairs``).

    Args:
        pairs: an ``LfwPairs`` with paths that exist (``images_root`` given).
        image_size, channels, standardize, center_crop: as ``face_dataset``.
        batch_size: batch size, or None for single pairs.

    Returns:
        A dataset of ``((float32 [H, W, C], float32 [H, W, C]), int32 same)``.
    """
    import tensorflow as tf

    from fsl import preprocessing
    from fsl.data import faces

    image_size = preprocessing.check_image_size(image_size)
    if image_size is None:
        raise ValueError("pairs_dataset needs a fixed image_size. Received: image_size=None")
    channels = preprocessing.check_channels(channels)
    preprocessing.check_standardize(standardize)
    if len(pairs) == 0:
        raise ValueError("pairs must not be empty. Received: 0 pairs")

    def load(path):
        image, ok = faces.decode_image_tf(path, channels)
        image = faces.resize_image(image, image_size, center_crop)
        return faces.standardize_image(image, standardize), ok

    def decode(path1, path2, same):
        image1, ok1 = load(path1)
        image2, ok2 = load(path2)
        return (image1, image2), same, tf.logical_and(ok1, ok2)

    ds = tf.data.Dataset.from_tensor_slices((pairs.path1, pairs.path2, pairs.same))
    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.filter(lambda images, same, ok: ok).map(lambda images, same, ok: (images, same))
    if batch_size is not None:
        ds = ds.batch(int(batch_size))
    return ds.prefetch(tf.data.AUTOTUNE)


def load_lfw_tfds(split: str = "train", data_dir: PathLike | None = None, download: bool = True):
    """LFW through the ``tensorflow-datasets`` ``lfw`` builder (online path).

    Elements are dicts ``{"image": uint8 [250, 250, 3], "label": person name
    (string)}``. TFDS downloads the archive (about 180 MB) on first use into
    ``data_dir``. Not exercised by the offline test suite; its error paths
    (missing package, no data without download) are.

    Args:
        split: TFDS split (the builder has only ``"train"``; slices like
            ``"train[:80%]"`` work).
        data_dir: TFDS data folder (TFDS default when None).
        download: let TFDS download if the data is not in ``data_dir``.

    Returns:
        A ``tf.data.Dataset`` of ``{"image", "label"}`` dicts.

    Raises:
        ImportError: tensorflow-datasets is not installed.
        FileNotFoundError: the data is not in ``data_dir`` and
            ``download=False``, or the download failed.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise ImportError(
            "load_lfw_tfds needs tensorflow-datasets: pip install 'fsl[datasets]'"
        ) from error
    builder = tfds.builder("lfw", data_dir=None if data_dir is None else str(data_dir))
    if not builder.is_prepared():
        if not download:
            raise FileNotFoundError(
                "LFW is not prepared in the TFDS data_dir and download=False. "
                f"Received: data_dir={data_dir!r}"
            )
        logger.info("load_lfw_tfds: downloading LFW with tensorflow-datasets into %s", builder.data_dir)
        try:
            builder.download_and_prepare()
        except Exception as error:  # noqa: BLE001 - network errors vary
            raise FileNotFoundError(
                f"Could not download LFW with tensorflow-datasets into {builder.data_dir}: {error}"
            ) from error
    logger.info("load_lfw_tfds: LFW from tensorflow-datasets (%s), split=%r", builder.data_dir, split)
    return builder.as_dataset(split=split)


__all__ = [
    "LfwPairs",
    "image_path",
    "parse_pairs",
    "missing_images",
    "unique_images",
    "pairs_dataset",
    "load_lfw_tfds",
]
