"""Siamese pairs: a tf.data pipeline re-drawn every epoch, and fixed eval pairs.

Label convention, everywhere in this module: ``same = 1.0`` means the two
images show the SAME class, ``same = 0.0`` means DIFFERENT classes (the
convention of ``fsl.losses.ContrastiveLoss`` and of verification metrics).

* ``pair_dataset(x, y, ...)``: a ``tf.data.Dataset`` of ``((x1, x2), same)``
  batches for training. Each iteration over the dataset (each Keras epoch)
  draws new pairs, and the whole sequence of epochs is fixed by ``seed``.
* ``make_eval_pairs(x, y, seed)``: a fixed numpy set with exactly one positive
  and one negative pair per image, the protocol used for the MNIST siamese
  evaluation ("one positive and one negative pair per test digit").
* ``sample_pair_indices`` / ``eval_pair_indices``: the same draws as index
  arrays, for custom pipelines and for tests.

Pair drawing rules (both functions):

* a positive pair ``(i, j)`` has ``y[i] == y[j]`` and ``i != j``: an image is
  never paired with itself. Anchors of positive pairs are taken only from
  classes with at least two examples.
* a negative pair ``(i, j)`` has ``y[i] != y[j]``: the class of ``j`` is drawn
  uniformly among the other classes, then ``j`` uniformly in that class.
"""

from __future__ import annotations

import itertools
import logging
import math

import numpy as np

from fsl._checks import check_fraction, check_positive_int, check_seed

logger = logging.getLogger(__name__)


# === Validation ===


def _check_xy(x, y) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be a 1-D array of labels. Received: y.shape={y.shape}")
    if x is not None and len(x) != len(y):
        raise ValueError(
            "x and y must have the same length. "
            f"Received: len(x)={len(x)}, len(y)={len(y)}"
        )
    n_classes = len(np.unique(y))
    if n_classes < 2:
        raise ValueError(
            "Pairs need at least 2 classes (negatives are pairs of different "
            f"classes). Received: {n_classes} class(es) in y of length {len(y)}"
        )
    return x, y


# === Index drawing (numpy) ===


class _ClassIndex:
    """Examples grouped by class: ``members(c) = order[starts[c]:starts[c]+counts[c]]``."""

    def __init__(self, y: np.ndarray):
        self.classes, self.inverse = np.unique(y, return_inverse=True)
        self.inverse = self.inverse.reshape(-1)
        self.order = np.argsort(self.inverse, kind="stable")
        self.counts = np.bincount(self.inverse)
        self.starts = np.cumsum(self.counts) - self.counts
        self.rank = np.empty(len(y), dtype=np.int64)
        self.rank[self.order] = np.arange(len(y)) - self.starts[self.inverse[self.order]]
        self.eligible = np.flatnonzero(self.counts[self.inverse] >= 2)

    def positives(self, anchors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Another example of the anchor's class (anchors need classes >= 2)."""
        c = self.inverse[anchors]
        counts = self.counts[c]
        offset = 1 + rng.integers(0, counts - 1)  # in [1, count - 1]: never self
        return self.order[self.starts[c] + (self.rank[anchors] + offset) % counts]

    def negatives(self, anchors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """An example of another class, the class drawn uniformly first."""
        n_classes = len(self.classes)
        c = self.inverse[anchors]
        other = (c + 1 + rng.integers(0, n_classes - 1, size=len(anchors))) % n_classes
        return self.order[self.starts[other] + rng.integers(0, self.counts[other])]


def _cycled_permutations(pool: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` items: successive random permutations of ``pool``, concatenated."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    reps = math.ceil(n / len(pool))
    return np.concatenate([rng.permutation(pool) for _ in range(reps)])[:n]


def _balanced_labels(n: int, positive_fraction: float) -> np.ndarray:
    """0/1 sequence whose every window of length L has ``floor(L * f)`` or ``ceil(L * f)`` ones."""
    i = np.arange(n + 1, dtype=np.float64)
    return np.diff(np.floor(i * positive_fraction + 1e-9)).astype(np.float32)


def sample_pair_indices(
    y,
    num_pairs: int,
    seed: int = 0,
    positive_fraction: float = 0.5,
    *,
    batch_size: int | None = None,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``num_pairs`` training pairs as index arrays (``same = 1`` = same class).

    Positives and negatives are balanced exactly: ``floor(positive_fraction *
    num_pairs)`` positives, spread so that every run of ``batch_size``
    consecutive pairs holds ``positive_fraction * batch_size`` positives up to
    one. Anchors (``i1``) cycle through random permutations of all images, so
    with ``num_pairs = len(y)`` every image is the anchor of exactly one pair
    (except that a positive pair never uses an image alone in its class as
    anchor: a random image of a class with >= 2 examples replaces it).

    Args:
        y: int labels ``[N]`` with at least 2 classes.
        num_pairs: number of pairs, >= 1.
        seed: seed of the draw (ignored when ``rng`` is given).
        positive_fraction: fraction of same-class pairs, in ``[0, 1]``.
        batch_size: if given, the pairs are shuffled within consecutive
            chunks of this size only (keeps each batch balanced); else the
            order is the balanced interleaving itself.
        rng: a ``numpy.random.Generator`` to draw from instead of ``seed``.

    Returns:
        ``(i1, i2, same)``: int64 ``[num_pairs]`` indices into ``y`` and
        float32 ``[num_pairs]`` labels, 1.0 = same class, 0.0 = different.

    Raises:
        ValueError: on fewer than 2 classes, ``num_pairs < 1``, a fraction
            outside ``[0, 1]``, or positives requested when no class has two
            examples.
    """
    _, y = _check_xy(None, y)
    num_pairs = check_positive_int("num_pairs", num_pairs)
    positive_fraction = check_fraction("positive_fraction", positive_fraction)
    if rng is None:
        rng = np.random.default_rng(check_seed(seed))
    index = _ClassIndex(y)

    same = _balanced_labels(num_pairs, positive_fraction)
    n_pos = int(same.sum())
    if n_pos and len(index.eligible) == 0:
        raise ValueError(
            "Positive pairs need a class with at least 2 examples; every class "
            f"has one. Received: positive_fraction={positive_fraction}"
        )
    is_pos = same == 1.0
    anchors = _cycled_permutations(np.arange(len(y)), num_pairs, rng)
    # A positive slot cannot use an image alone in its class: a random image
    # of a class with >= 2 examples takes its place.
    alone = is_pos & (index.counts[index.inverse[anchors]] < 2)
    anchors[alone] = rng.choice(index.eligible, int(alone.sum()))
    partners = np.empty(num_pairs, dtype=np.int64)
    partners[is_pos] = index.positives(anchors[is_pos], rng)
    partners[~is_pos] = index.negatives(anchors[~is_pos], rng)

    if batch_size is not None:
        chunk = np.arange(num_pairs) // check_positive_int("batch_size", batch_size)
        perm = np.lexsort((rng.random(num_pairs), chunk))
        anchors, partners, same = anchors[perm], partners[perm], same[perm]
    return anchors, partners, same


def eval_pair_indices(y, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One positive and one negative pair per image, as indices.

    Args:
        y: int labels ``[N]``, at least 2 classes, every class with >= 2
            examples.
        seed: seed of the draw.

    Returns:
        ``(i1, i2, same)`` of length ``2 N``: pair ``2 i`` is ``(i, j)`` with
        ``y[j] == y[i]``, ``j != i``, ``same = 1.0``; pair ``2 i + 1`` is
        ``(i, k)`` with ``y[k] != y[i]``, ``same = 0.0``.

    Raises:
        ValueError: on fewer than 2 classes or a class with a single example
            (it has no positive partner), naming the class.
    """
    _, y = _check_xy(None, y)
    rng = np.random.default_rng(check_seed(seed))
    index = _ClassIndex(y)
    single = index.classes[index.counts < 2]
    if len(single):
        raise ValueError(
            "Every class needs at least 2 examples for one positive pair per "
            f"image. Received: classes with one example: {single[:10].tolist()}"
        )
    anchors = np.arange(len(y))
    positives = index.positives(anchors, rng)
    negatives = index.negatives(anchors, rng)
    i1 = np.repeat(anchors, 2)
    i2 = np.stack([positives, negatives], axis=1).reshape(-1)
    same = np.tile(np.array([1.0, 0.0], dtype=np.float32), len(y))
    return i1, i2, same


def make_eval_pairs(x, y, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A fixed evaluation pair set: one positive and one negative pair per image.

    Args:
        x: images (or any array) ``[N, ...]``.
        y: int labels ``[N]``, at least 2 classes of >= 2 examples each.
        seed: seed of the draw; the same seed gives the same pairs.

    Returns:
        ``(x1, x2, same)`` numpy arrays with ``2 N`` rows; ``same`` is float32,
        1.0 = same class, 0.0 = different class. Rows ``2 i`` and ``2 i + 1``
        both have ``x1 = x[i]``: first its positive, then its negative pair.

    Raises:
        ValueError: on mismatched lengths, fewer than 2 classes, or a class
            with a single example.

    Examples:

    >>> import numpy as np
    >>> x1, x2, same = make_eval_pairs(np.arange(4.0), np.array([0, 0, 1, 1]))
    >>> x1.tolist(), same.tolist()
    ([0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0], [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    """
    x, y = _check_xy(x, y)
    x = np.asarray(x)
    i1, i2, same = eval_pair_indices(y, seed)
    return x[i1], x[i2], same


# === tf.data pipeline ===


def pair_dataset(
    x,
    y,
    batch_size: int = 128,
    seed: int = 0,
    pairs_per_epoch: int | None = None,
    positive_fraction: float = 0.5,
):
    """A ``tf.data`` pipeline of siamese pairs, re-drawn every epoch.

    Yields ``((x1, x2), same)`` with ``x1, x2`` of shape ``[B, ...]`` (the
    dtype of ``x``) and ``same`` float32 ``[B]``: **1.0 = same class, 0.0 =
    different class**. Epoch ``e`` (the ``e``-th iteration over the returned
    dataset, counted from 0) draws its pairs with
    ``sample_pair_indices(y, pairs_per_epoch, rng=np.random.default_rng([seed,
    e]), positive_fraction=..., batch_size=batch_size)``: a new set every epoch,
    and the same sequence of epochs for every dataset built with the same
    arguments, independent of any global seed. Each batch holds
    ``positive_fraction * B`` positives up to one; the last batch of an epoch
    is smaller when ``batch_size`` does not divide ``pairs_per_epoch``.

    Only the small index arrays are drawn in Python (one ``from_generator``
    element per batch); images are gathered by TensorFlow in a parallel
    ``map``, and batches are prefetched.

    Args:
        x: array ``[N, ...]`` of inputs (e.g. float32 images).
        y: int labels ``[N]``, at least 2 classes.
        batch_size: pairs per batch, >= 1.
        seed: integer >= 0 fixing the whole sequence of epochs.
        pairs_per_epoch: pairs per epoch (default ``N``).
        positive_fraction: fraction of same-class pairs, in ``[0, 1]``.

    Returns:
        A ``tf.data.Dataset`` of ``((x1, x2), same)`` batches, for
        ``model.fit(dataset, epochs=...)``.

    Raises:
        ValueError: on mismatched lengths, fewer than 2 classes, or a bad
            ``batch_size``, ``seed``, ``pairs_per_epoch`` or
            ``positive_fraction`` (the message names the value received).

    Examples:

    >>> import numpy as np
    >>> x = np.random.rand(20, 28, 28, 1).astype("float32")
    >>> ds = pair_dataset(x, np.arange(20) % 4, batch_size=8)
    >>> (x1, x2), same = next(iter(ds))
    >>> x1.shape, same.shape
    (TensorShape([8, 28, 28, 1]), TensorShape([8]))
    """
    import tensorflow as tf

    x, y = _check_xy(x, y)
    batch_size = check_positive_int("batch_size", batch_size)
    seed = check_seed(seed)
    if pairs_per_epoch is None:
        pairs_per_epoch = len(y)
    pairs_per_epoch = check_positive_int("pairs_per_epoch", pairs_per_epoch)
    positive_fraction = check_fraction("positive_fraction", positive_fraction)
    index = _ClassIndex(y)
    if positive_fraction > 0 and len(index.eligible) == 0:
        raise ValueError(
            "Positive pairs need a class with at least 2 examples; every class "
            f"has one. Received: positive_fraction={positive_fraction}"
        )
    singletons = int(np.sum(index.counts < 2))
    if singletons:
        logger.warning(
            "%d class(es) have a single example; they appear only in negative pairs.",
            singletons,
        )

    epochs = itertools.count()

    def batches():
        epoch = next(epochs)
        rng = np.random.default_rng([seed, epoch])
        i1, i2, same = sample_pair_indices(
            y,
            pairs_per_epoch,
            positive_fraction=positive_fraction,
            batch_size=batch_size,
            rng=rng,
        )
        for start in range(0, pairs_per_epoch, batch_size):
            stop = start + batch_size
            yield i1[start:stop], i2[start:stop], same[start:stop]

    static = batch_size if pairs_per_epoch % batch_size == 0 else None
    spec = (
        tf.TensorSpec([static], tf.int64),
        tf.TensorSpec([static], tf.int64),
        tf.TensorSpec([static], tf.float32),
    )
    images = tf.convert_to_tensor(np.asarray(x))

    def gather(i1, i2, same):
        return (tf.gather(images, i1), tf.gather(images, i2)), same

    num_batches = math.ceil(pairs_per_epoch / batch_size)
    dataset = tf.data.Dataset.from_generator(batches, output_signature=spec)
    # Known length: Keras shows progress and never warns "ran out of data".
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(num_batches))
    dataset = dataset.map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)
