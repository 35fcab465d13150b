"""Identity-balanced P x K batches for online triplet mining.

Every batch holds exactly ``P`` distinct identities with exactly ``K`` examples
each, ``P * K`` rows laid out identity by identity (rows ``[j K, (j + 1) K)``
share one label), which is what batch-hard / batch-all mining needs: every
anchor has ``K - 1`` positives and ``(P - 1) K`` negatives in its batch.

References:
    Schroff, Kalenichenko, Philbin, "FaceNet: A Unified Embedding for Face
    Recognition and Clustering", CVPR 2015.
    Hermans, Beyer, Leibe, "In Defense of the Triplet Loss for Person
    Re-Identification", arXiv:1703.07737, 2017 (P x K batches, batch hard).

Epoch plan (``pk_epoch_indices``), for epoch ``e`` with
``rng = np.random.default_rng([seed, e])``:

1. Identities with fewer than ``min_per_identity`` examples are dropped (a
   warning says how many). The examples of each remaining identity ``c``
   (``n_c`` of them) are shuffled and cut into ``g_c = ceil(n_c / K)`` groups
   of ``K``. The last group is completed with other examples of ``c`` drawn
   without replacement; an identity with ``n_c < K`` fills its single group by
   cycling its shuffled examples (sampling with replacement: each example
   appears ``floor(K / n_c)`` or ``ceil(K / n_c)`` times).
2. The epoch has ``B = max(ceil(G / P), max_c g_c)`` batches, ``G = sum g_c``.
   Groups, identity by identity in a random identity order, are dealt round
   robin to the ``B`` batches, so the groups of one identity land in distinct
   batches.
3. A batch dealt fewer than ``P`` groups is completed with groups of ``K``
   examples of identities it does not yet hold, chosen at random.
4. Groups inside each batch and the batches themselves are shuffled.

So an epoch visits every example of every kept identity at least once, and
only the completions of steps 1 and 3 repeat examples. A dataset built here
moves to the next epoch number each time an iteration over it reaches its
end (each Keras epoch): different batches every epoch, the same sequence
for the same ``seed``, independent of any global seed; an iteration given up
early (a peek) does not use an epoch up.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
from collections.abc import Callable, Sequence

import numpy as np

from fsl._checks import check_int

logger = logging.getLogger(__name__)


# === Validation ===


def _identities(labels, p: int, k: int, min_per_identity: int) -> list[np.ndarray]:
    """Validated arguments; the index array of each kept identity."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(
            f"labels must be a 1-D array. Received: labels.shape={labels.shape}"
        )
    p = check_int("p", p, 1)
    k = check_int("k", k, 1)
    min_per_identity = check_int("min_per_identity", min_per_identity, 1)
    classes, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    members = np.split(order, np.cumsum(np.bincount(inverse, minlength=len(classes)))[:-1])
    kept = [m for m in members if len(m) >= min_per_identity]
    dropped = len(members) - len(kept)
    if dropped:
        logger.warning(
            "P x K sampling: dropped %d of %d identities with fewer than "
            "min_per_identity=%d examples.",
            dropped,
            len(members),
            min_per_identity,
        )
    if p > len(kept):
        raise ValueError(
            f"p must be <= the number of identities with >= min_per_identity="
            f"{min_per_identity} examples ({len(kept)}). Received: p={p}"
        )
    return kept


def _group_of_k(members: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` examples of one identity: without replacement if it has ``>= k``."""
    if len(members) >= k:
        return rng.choice(members, k, replace=False)
    return np.resize(rng.permutation(members), k)


def _plan(kept: list[np.ndarray], p: int, k: int, rng: np.random.Generator) -> np.ndarray:
    # 1. Groups of K per identity, identities in random order.
    groups, owners = [], []
    for c in rng.permutation(len(kept)):
        members = rng.permutation(kept[c])
        n = len(members)
        if n < k:
            groups.append(np.resize(members, k))
            owners.append(c)
            continue
        g = math.ceil(n / k)
        short = g * k - n
        if short:
            extra = rng.choice(members[: (g - 1) * k], short, replace=False)
            members = np.concatenate([members, extra])
        groups.extend(members.reshape(g, k))
        owners.extend([c] * g)
    per_identity = np.bincount(owners, minlength=len(kept))
    # 2. Deal round robin into B batches.
    num_batches = max(math.ceil(len(groups) / p), int(per_identity.max()))
    batches = [[] for _ in range(num_batches)]
    for j, (c, group) in enumerate(zip(owners, groups)):
        batches[j % num_batches].append((c, group))
    # 3. Complete short batches with identities they do not hold.
    plan = np.empty((num_batches, p * k), dtype=np.int64)
    for b, batch in enumerate(batches):
        missing = p - len(batch)
        if missing:
            held = {c for c, _ in batch}
            free = np.array([c for c in range(len(kept)) if c not in held])
            for c in rng.choice(free, missing, replace=False):
                batch.append((int(c), _group_of_k(kept[c], k, rng)))
        # 4. Shuffle groups within the batch.
        plan[b] = np.concatenate([batch[j][1] for j in rng.permutation(p)])
    return plan[rng.permutation(num_batches)]


def pk_epoch_indices(
    labels,
    p: int,
    k: int,
    seed: int = 0,
    epoch: int = 0,
    min_per_identity: int = 2,
) -> np.ndarray:
    """The index batches of one epoch of P x K sampling (see the module docstring).

    Args:
        labels: identity labels ``[N]`` (any sortable dtype).
        p: identities per batch, ``1 <= p <=`` number of kept identities.
        k: examples per identity in a batch, ``>= 1``.
        seed: integer ``>= 0``.
        epoch: epoch number ``>= 0``; with ``seed`` it fixes the draw.
        min_per_identity: identities with fewer examples are dropped
            (default 2: an identity needs a second example to give a
            positive pair); identities with ``min_per_identity <= n < k``
            are sampled with replacement up to ``k``.

    Returns:
        int64 array ``[B, p * k]`` of indices into ``labels``; row ``b`` is
        batch ``b``, ``k`` consecutive entries per identity.

    Raises:
        ValueError: on a bad ``p``, ``k``, ``seed``, ``epoch`` or
            ``min_per_identity``, or ``p`` larger than the number of kept
            identities (the message names the value).

    Examples:

    >>> import numpy as np
    >>> plan = pk_epoch_indices(np.repeat(np.arange(4), 3), p=2, k=3)
    >>> plan.shape
    (2, 6)
    """
    kept = _identities(labels, p, k, min_per_identity)
    seed = check_int("seed", seed, 0)
    epoch = check_int("epoch", epoch, 0)
    return _plan(kept, int(p), int(k), np.random.default_rng([seed, epoch]))


def _num_batches(kept: list[np.ndarray], p: int, k: int) -> int:
    groups = [math.ceil(len(m) / k) for m in kept]
    return max(math.ceil(sum(groups) / p), max(groups))


def pk_batches(labels, p: int, k: int, seed: int = 0, min_per_identity: int = 2):
    """A ``tf.data`` pipeline of P x K index batches, a new plan every epoch.

    Iteration ``e`` over the returned dataset yields the rows of
    ``pk_epoch_indices(labels, p, k, seed, epoch=e, min_per_identity)``.

    Args:
        labels: identity labels ``[N]``.
        p: identities per batch.
        k: examples per identity.
        seed: integer ``>= 0`` fixing the sequence of epochs.
        min_per_identity: see ``pk_epoch_indices``.

    Returns:
        A ``tf.data.Dataset`` of int64 ``[p * k]`` index tensors with known
        cardinality (the number of batches of an epoch).

    Raises:
        ValueError: as ``pk_epoch_indices``.
    """
    import tensorflow as tf

    kept = _identities(labels, p, k, min_per_identity)
    seed = check_int("seed", seed, 0)
    p, k = int(p), int(k)
    # An epoch is used up by a pass that reaches its end: an iterator abandoned
    # early (Keras under tf.distribute reads one batch to build the model, then
    # starts again) leaves the next pass on the same epoch.
    done = {"epochs": 0}

    def batches():
        rng = np.random.default_rng([seed, done["epochs"]])
        yield from _plan(kept, p, k, rng)
        done["epochs"] += 1

    dataset = tf.data.Dataset.from_generator(
        batches, output_signature=tf.TensorSpec([p * k], tf.int64)
    )
    return dataset.apply(
        tf.data.experimental.assert_cardinality(_num_batches(kept, p, k))
    )


def pk_dataset(x, y, p: int, k: int, seed: int = 0, min_per_identity: int = 2):
    """P x K batches ``(x [P*K, ...], y [P*K])`` from in-memory arrays.

    Args:
        x: array ``[N, ...]`` (e.g. float32 images or embeddings).
        y: identity labels ``[N]``.
        p: identities per batch.
        k: examples per identity.
        seed: integer ``>= 0`` fixing the sequence of epochs.
        min_per_identity: see ``pk_epoch_indices``.

    Returns:
        A prefetched ``tf.data.Dataset`` of ``(x_batch, y_batch)``, rows
        grouped by identity (``k`` consecutive rows per identity).

    Raises:
        ValueError: on mismatched lengths, or as ``pk_epoch_indices``.

    Examples:

    >>> import numpy as np
    >>> x = np.random.rand(12, 8).astype("float32")
    >>> xb, yb = next(iter(pk_dataset(x, np.repeat(np.arange(4), 3), p=2, k=3)))
    >>> xb.shape, yb.shape
    (TensorShape([6, 8]), TensorShape([6]))
    """
    import tensorflow as tf

    y = np.asarray(y)
    if len(x) != len(y):
        raise ValueError(
            "x and y must have the same length. "
            f"Received: len(x)={len(x)}, len(y)={len(y)}"
        )
    indices = pk_batches(y, p, k, seed=seed, min_per_identity=min_per_identity)
    xs = tf.convert_to_tensor(np.asarray(x))
    ys = tf.convert_to_tensor(y)

    def gather(index):
        return tf.gather(xs, index), tf.gather(ys, index)

    dataset = indices.map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def pk_file_dataset(
    paths: Sequence[str],
    labels,
    p: int,
    k: int,
    load_fn: Callable,
    seed: int = 0,
    min_per_identity: int = 2,
    num_parallel_calls: int | None = None,
):
    """P x K batches ``(images [P*K, ...], labels [P*K])`` from files.

    Files that do not exist are skipped up front with a warning naming each
    one (before the identity counts, so ``min_per_identity`` applies to what
    is left); nothing fails mid-epoch for a missing file. Errors in decoding a
    file are ``load_fn``'s to handle.

    Args:
        paths: file paths ``[N]``.
        labels: identity labels ``[N]``.
        p: identities per batch.
        k: examples per identity.
        load_fn: a TensorFlow function mapping a scalar string tensor (a
            path) to an image tensor of a fixed shape, e.g. read + decode +
            resize; it runs inside ``Dataset.map``.
        seed: integer ``>= 0`` fixing the sequence of epochs.
        min_per_identity: see ``pk_epoch_indices``.
        num_parallel_calls: parallelism of ``load_fn`` (default AUTOTUNE);
            the order of rows is kept.

    Returns:
        A prefetched ``tf.data.Dataset`` of ``(images, labels)`` batches.

    Raises:
        ValueError: on mismatched lengths, a non-callable ``load_fn``, or as
            ``pk_epoch_indices``.
    """
    import tensorflow as tf

    paths = [os.fspath(path) for path in paths]
    labels = np.asarray(labels)
    if len(paths) != len(labels):
        raise ValueError(
            "paths and labels must have the same length. "
            f"Received: len(paths)={len(paths)}, len(labels)={len(labels)}"
        )
    if not callable(load_fn):
        raise ValueError(f"load_fn must be callable. Received: load_fn={load_fn!r}")
    exists = np.array([os.path.isfile(path) for path in paths], dtype=bool)
    for path in itertools.compress(paths, ~exists):
        logger.warning("P x K sampling: skipping missing file %s", path)
    paths = np.array(paths, dtype=object)[exists].astype(str)
    labels = labels[exists]

    indices = pk_batches(labels, p, k, seed=seed, min_per_identity=min_per_identity)
    path_table = tf.constant(paths)
    label_table = tf.convert_to_tensor(labels)
    parallel = tf.data.AUTOTUNE if num_parallel_calls is None else num_parallel_calls

    dataset = indices.unbatch().map(
        lambda i: (load_fn(tf.gather(path_table, i)), tf.gather(label_table, i)),
        num_parallel_calls=parallel,
        deterministic=True,
    )
    dataset = dataset.batch(int(p) * int(k), drop_remainder=True)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(indices.cardinality()))
    return dataset.prefetch(tf.data.AUTOTUNE)
