"""Online mining of positives and negatives as fixed-shape masks.

Every function here works on a ``[B, B]`` distance matrix and the ``[B, B]``
label masks of one batch, with ``keras.ops`` only: no Python loop over pairs,
no ragged index lists, fixed output shapes, O(B^2) memory. They are the parts
the triplet losses in ``fsl.losses`` are built from, and can be used on their
own (e.g. to log how many semi-hard negatives a batch holds).

Conventions, shared with TensorFlow Addons so that the losses reproduce its
numbers:

* ``positive_mask[i, j]``: same label and ``i != j``.
* ``negative_mask[i, j]``: different labels.
* A masked reduction over an empty mask does not produce ``inf`` or NaN:
  ``masked_maximum`` of an empty row is the row minimum and
  ``masked_minimum`` of an empty row is the row maximum (TFA's
  ``_masked_maximum`` / ``_masked_minimum``).

The semi-hard negative of a pair ``(a, p)`` (FaceNet, Schroff et al. 2015) is
the closest negative ``n`` with ``d(a, n) > d(a, p)``. TFA finds it by tiling a
``[B * B, B]`` tensor; here each anchor's negative distances are sorted once
(``O(B^2 log B)``) and every ``d(a, p)`` is located in its row by a batched
binary search (``O(B^2 log B)`` time, ``O(B^2)`` memory), so ``B = 4096`` fits
easily in memory.

The losses read the semi-hard negative only at the positive pairs, and a
P x K batch has only ``K - 1`` positives per anchor. ``semihard_weights``
and ``batch_all_weights`` therefore visit the positives one *slot* at a time
(the first positive of every anchor, then the second...): per slot one
masked arg-min (semi-hard) or one comparison (batch-all) over each row, no
sort, ``O(B^2 M)`` time for ``M`` positives per anchor. They return integer
selections as a weight matrix, so that the loss and its gradient are one
product with the distance matrix. ``few_positives`` tells which way is
cheaper for a batch (measured by ``benchmarks/mining.py``).
"""

from __future__ import annotations

import warnings

from keras import ops

from fsl import distances as distances_lib

__all__ = [
    "build_masks",
    "masked_maximum",
    "masked_minimum",
    "hardest_positive",
    "hardest_negative",
    "sort_negatives",
    "searchsorted_rows",
    "semihard_negative",
    "batch_all_hinge",
    "few_positives",
    "semihard_weights",
    "batch_all_weights",
    "flat_labels",
]


def flat_labels(labels):
    """Labels ``[B]`` or ``[B, 1]`` as a ``[B]`` tensor.

    Raises:
        ValueError: for any other shape, naming it.
    """
    labels = ops.convert_to_tensor(labels)
    rank = len(labels.shape)
    if rank == 2 and labels.shape[1] not in (None, 1):
        raise ValueError(
            "labels must have shape [B] or [B, 1]. "
            f"Received: labels.shape={tuple(labels.shape)}"
        )
    if rank not in (1, 2):
        raise ValueError(
            "labels must have shape [B] or [B, 1]. "
            f"Received: labels.shape={tuple(labels.shape)}"
        )
    return ops.reshape(labels, (-1,))


def build_masks(labels):
    """Positive and negative masks of a batch of labels.

    Args:
        labels: integer (or float) labels of shape ``[B]`` or ``[B, 1]``.

    Returns:
        ``(positive_mask, negative_mask)``, boolean ``[B, B]`` tensors.
        ``positive_mask[i, j]`` is true when ``labels[i] == labels[j]`` and
        ``i != j``; ``negative_mask[i, j]`` when ``labels[i] != labels[j]``.

    Raises:
        ValueError: if ``labels`` is not of rank 1 or ``[B, 1]``.

    Examples:

    >>> import numpy as np
    >>> pos, neg = build_masks(np.array([0, 0, 1]))
    >>> np.asarray(pos).astype(int).tolist()
    [[0, 1, 0], [1, 0, 0], [0, 0, 0]]
    >>> np.asarray(neg).astype(int).tolist()
    [[0, 0, 1], [0, 0, 1], [1, 1, 0]]
    """
    labels = flat_labels(labels)
    same = ops.equal(ops.expand_dims(labels, 1), ops.expand_dims(labels, 0))
    n = ops.shape(labels)[0]
    not_diagonal = ops.logical_not(ops.cast(ops.eye(n), "bool"))
    return ops.logical_and(same, not_diagonal), ops.logical_not(same)


def masked_maximum(data, mask, axis: int = 1, keepdims: bool = False):
    """Maximum of ``data`` where ``mask`` is true, safe for empty masks.

    Args:
        data: float tensor, e.g. a ``[B, B]`` distance matrix.
        mask: boolean (or 0/1) tensor of the same shape.
        axis: the axis to reduce.
        keepdims: keep the reduced axis with length 1.

    Returns:
        The masked maximum along ``axis``; where the mask is empty along
        ``axis``, the plain minimum of ``data`` along ``axis`` (TFA's choice:
        finite, and never chosen over a real value). The gradient flows only
        to the selected entries.
    """
    data = ops.convert_to_tensor(data)
    mask = ops.cast(mask, "bool")
    low = ops.min(data, axis=axis, keepdims=True)
    masked = ops.max(ops.where(mask, data, low), axis=axis, keepdims=True)
    return masked if keepdims else ops.squeeze(masked, axis=axis)


def masked_minimum(data, mask, axis: int = 1, keepdims: bool = False):
    """Minimum of ``data`` where ``mask`` is true, safe for empty masks.

    Args:
        data: float tensor, e.g. a ``[B, B]`` distance matrix.
        mask: boolean (or 0/1) tensor of the same shape.
        axis: the axis to reduce.
        keepdims: keep the reduced axis with length 1.

    Returns:
        The masked minimum along ``axis``; where the mask is empty along
        ``axis``, the plain maximum of ``data`` along ``axis`` (as TFA).
    """
    data = ops.convert_to_tensor(data)
    mask = ops.cast(mask, "bool")
    high = ops.max(data, axis=axis, keepdims=True)
    masked = ops.min(ops.where(mask, data, high), axis=axis, keepdims=True)
    return masked if keepdims else ops.squeeze(masked, axis=axis)


def hardest_positive(distances, positive_mask):
    """Per anchor, the largest distance to a positive, ``[B, B] -> [B]``.

    An anchor with no positive gets the minimum of its row (0 for metrics
    with a zero diagonal), as TFA's ``TripletHardLoss``.
    """
    return masked_maximum(distances, positive_mask, axis=1)


def hardest_negative(distances, negative_mask):
    """Per anchor, the smallest distance to a negative, ``[B, B] -> [B]``.

    An anchor with no negative gets the maximum of its row, as TFA.
    """
    return masked_minimum(distances, negative_mask, axis=1)


def sort_negatives(distances, negative_mask):
    """Sort each anchor's negative distances in ascending order.

    Args:
        distances: ``[B, B]`` distance matrix.
        negative_mask: boolean ``[B, B]`` mask of negatives.

    Returns:
        ``(sorted_distances, order, counts)``: ``order`` (int ``[B, B]``) are
        column indices such that the first ``counts[a]`` entries of row ``a``
        are its negatives by increasing distance; ``sorted_distances`` is
        ``take_along_axis(distances, order)`` (differentiable w.r.t.
        ``distances``; entries past ``counts[a]`` are not negatives and must
        be ignored); ``counts`` (int32 ``[B]``) is the number of negatives.
    """
    distances = ops.convert_to_tensor(distances)
    negative_mask = ops.cast(negative_mask, "bool")
    keys = ops.where(
        negative_mask,
        ops.stop_gradient(distances),
        ops.full_like(distances, float("inf")),
    )
    order = ops.argsort(keys, axis=1)
    sorted_distances = ops.take_along_axis(distances, order, axis=1)
    counts = ops.sum(ops.cast(negative_mask, "int32"), axis=1)
    return sorted_distances, order, counts


def searchsorted_rows(sorted_rows, queries, counts, side: str = "left"):
    """Row-wise ``searchsorted``: where each query falls in its sorted row.

    A batched binary search (``ceil(log2(N + 1))`` vectorised steps), so it
    runs in ``O(B * M * log N)`` time and ``O(B * M)`` memory.

    Args:
        sorted_rows: ``[B, N]``; the first ``counts[b]`` entries of row ``b``
            are sorted ascending, the rest are ignored.
        queries: ``[B, M]`` values to locate in their own row.
        counts: int ``[B]``, the number of valid entries of each row.
        side: ``"left"``: the number of valid entries ``< query``;
            ``"right"``: the number ``<= query``.

    Returns:
        int32 ``[B, M]`` insertion positions, each in ``[0, counts[b]]``.

    Raises:
        ValueError: if ``side`` is not ``"left"`` or ``"right"``.
    """
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right'. Received: side={side!r}")
    sorted_rows = ops.stop_gradient(ops.convert_to_tensor(sorted_rows))
    queries = ops.stop_gradient(ops.convert_to_tensor(queries))
    counts = ops.expand_dims(ops.cast(counts, "int32"), 1)
    compare = ops.less if side == "left" else ops.less_equal
    n_static = sorted_rows.shape[1]
    n = ops.shape(sorted_rows)[1]
    position = ops.zeros(ops.shape(queries), dtype="int32")

    def step(position, size):
        candidate = position + size
        index = ops.clip(candidate - 1, 0, ops.maximum(n - 1, 0))
        value = ops.take_along_axis(sorted_rows, index, axis=1)
        accept = ops.logical_and(
            ops.less_equal(candidate, counts), compare(value, queries)
        )
        return ops.where(accept, candidate, position)

    if n_static is not None:
        # Static width: a fixed, unrolled number of steps (XLA-friendly).
        size = 1 << max(int(n_static).bit_length() - 1, 0)
        while size >= 1:
            position = step(position, size)
            size //= 2
        return position

    # Dynamic width (e.g. a tf.function traced with an unknown batch size).
    n_steps = ops.cast(ops.floor(ops.log2(ops.cast(n, "float32") + 1.0)), "int32") + 1
    first = ops.cast(ops.power(2, n_steps - 1), "int32")

    def body(i, state):
        position, size = state
        return step(position, size), ops.maximum(size // 2, 1)

    position, _ = ops.fori_loop(0, n_steps, body, (position, first))
    return position


def semihard_negative(distances, negative_mask):
    """The semi-hard negative distance of every ``(anchor, j)`` pair.

    For anchor ``a`` and column ``j`` the result is the smallest ``d(a, n)``
    over negatives ``n`` with ``d(a, n) > d(a, j)`` strictly; when there is
    none, the largest ``d(a, n)`` over all negatives of ``a`` (TFA's
    ``TripletSemiHardLoss``; Schroff et al. 2015, "FaceNet"). Only the
    entries at positive pairs are used by the loss.

    Args:
        distances: ``[B, B]`` distance matrix.
        negative_mask: boolean ``[B, B]`` mask of negatives.

    Returns:
        ``(semihard, found)``: float ``[B, B]`` distances and a boolean
        ``[B, B]`` that is true where a strictly farther negative exists.
        Rows with no negatives hold their row minimum (never NaN).
    """
    distances = ops.convert_to_tensor(distances)
    sorted_distances, _, counts = sort_negatives(distances, negative_mask)
    n_closer = searchsorted_rows(sorted_distances, distances, counts, side="right")
    found = ops.less(n_closer, ops.expand_dims(counts, 1))
    last = ops.maximum(ops.shape(distances)[1] - 1, 0)
    outside = ops.take_along_axis(
        sorted_distances, ops.minimum(n_closer, last), axis=1
    )
    inside = masked_maximum(distances, negative_mask, axis=1, keepdims=True)
    return ops.where(found, outside, inside), found


def batch_all_hinge(distances, positive_mask, negative_mask, margin: float):
    """Sum and count of the active batch-all triplets of each positive pair.

    For each pair ``(a, p)`` the triplets ``(a, p, n)`` over all negatives
    ``n`` of ``a`` (Hermans et al. 2017, "In Defense of the Triplet Loss for
    Person Re-Identification"): ``hinge = max(d(a, p) - d(a, n) + margin, 0)``.
    Computed from each anchor's sorted negatives and their prefix sums, never
    materialising the ``[B, B, B]`` triplet tensor.

    Args:
        distances: ``[B, B]`` distance matrix.
        positive_mask: boolean ``[B, B]`` mask of positive pairs.
        negative_mask: boolean ``[B, B]`` mask of negatives.
        margin: the triplet margin.

    Returns:
        ``(hinge_sum, active_count)``, both ``[B, B]``: the sum of the hinge
        over the negatives of ``a`` and the number of negatives with a
        positive hinge (``d(a, n) < d(a, p) + margin``), zero off the
        positive pairs.
    """
    distances = ops.convert_to_tensor(distances)
    sorted_distances, _, counts = sort_negatives(distances, negative_mask)
    threshold = distances + ops.cast(margin, distances.dtype)
    n_active = searchsorted_rows(sorted_distances, threshold, counts, side="left")
    # prefix[a, k] = sum of the k smallest negative distances of anchor a.
    prefix = ops.concatenate(
        [
            ops.zeros_like(sorted_distances[:, :1]),
            ops.cumsum(sorted_distances, axis=1),
        ],
        axis=1,
    )
    prefix_k = ops.take_along_axis(prefix, n_active, axis=1)
    count = ops.cast(n_active, distances.dtype)
    hinge_sum = ops.maximum(count * threshold - prefix_k, 0.0)
    positive_mask = ops.cast(positive_mask, "bool")
    zeros = ops.zeros_like(distances)
    return (
        ops.where(positive_mask, hinge_sum, zeros),
        ops.where(positive_mask, count, zeros),
    )


def _positive_slots(positive_mask):
    """``(rank, slots, counts)``: the rank of each positive in its row
    (1, 2, ... at positive entries), the most positives of a row (int32
    scalar) and each row's number of positives (``[B, 1]``)."""
    positive = ops.cast(positive_mask, "int32")
    counts = ops.sum(positive, axis=1, keepdims=True)
    return ops.cumsum(positive, axis=1), ops.max(counts), counts


def _slot_column(rank, slot):
    """Column ``[B, 1]`` of each row's positive number ``slot + 1`` (0 when
    the row has fewer positives): the first column where ``rank`` reaches it."""
    reached = ops.cast(ops.equal(rank, slot + 1), "int32")
    return ops.expand_dims(ops.cast(ops.argmax(reached, axis=1), "int32"), 1)


def few_positives(positive_mask, per_log2_batch: float):
    """True when no anchor has more than ``per_log2_batch * log2(B)`` positives.

    The slot-by-slot selections (``semihard_weights``, ``batch_all_weights``)
    cost ``O(B^2 M)`` for ``M`` positives per anchor, the sorted ones
    (``semihard_negative``, ``batch_all_hinge``) ``O(B^2 log B)``; the losses
    take the slots below ``per_log2_batch * log2(B)`` positives (the factor
    measured on CPU at ``B = 4096``: about 2 for semi-hard, 4 for batch-all).

    Returns:
        A boolean scalar tensor.
    """
    _, slots, _ = _positive_slots(positive_mask)
    batch = ops.cast(ops.shape(positive_mask)[0], "float32")
    return ops.less_equal(ops.cast(slots, "float32"),
                          per_log2_batch * ops.log2(ops.maximum(batch, 2.0)))


def semihard_weights(distances, positive_mask, negative_mask, margin: float):
    """Semi-hard triplets as weights on the distance matrix (slot by slot).

    For each positive pair ``(a, p)`` its semi-hard negative ``n`` is chosen
    as ``semihard_negative`` does (the closest with ``d(a, n) > d(a, p)``,
    else the farthest negative; ties to the lowest column), by one masked
    arg-min over row ``a`` per positive slot. A triplet is active when
    ``d(a, p) - d(a, n) + margin > 0``. Selections are made on
    ``stop_gradient(distances)``.

    Args:
        distances: ``[B, B]`` distance matrix.
        positive_mask: boolean ``[B, B]`` mask of positive pairs.
        negative_mask: boolean ``[B, B]`` mask of negatives.
        margin: the triplet margin.

    Returns:
        ``(weights, active)``: ``weights [B, B]`` holds, per entry, the number
        of active triplets using it as ``(a, p)`` minus those using it as
        ``(a, n)``; ``active`` (scalar) counts the active triplets. The sum of
        the active hinges is ``sum(distances * weights) + margin * active``,
        and its gradient flows through ``distances`` only.
    """
    d = ops.stop_gradient(ops.convert_to_tensor(distances))
    positive = ops.cast(positive_mask, "bool")
    negative = ops.cast(negative_mask, "bool")
    rank, slots, counts = _positive_slots(positive)
    inf = ops.full_like(d, float("inf"))
    negative_d = ops.where(negative, d, inf)
    farthest_d = ops.where(negative, d, -inf)
    farthest = ops.max(farthest_d, axis=1, keepdims=True)
    farthest_column = ops.expand_dims(ops.cast(ops.argmax(farthest_d, axis=1), "int32"), 1)
    columns = ops.expand_dims(ops.arange(ops.shape(d)[1], dtype="int32"), 0)
    zeros = ops.zeros_like(d)

    def slot(m, carry):
        weights, active = carry
        p = _slot_column(rank, m)
        d_ap = ops.take_along_axis(d, p, axis=1)
        farther = ops.where(ops.greater(negative_d, d_ap), negative_d, inf)
        n = ops.expand_dims(ops.cast(ops.argmin(farther, axis=1), "int32"), 1)
        d_an = ops.take_along_axis(farther, n, axis=1)
        found = ops.less(d_an, float("inf"))
        n = ops.where(found, n, farthest_column)
        d_an = ops.where(found, d_an, farthest)
        on = ops.logical_and(ops.greater(counts, m), ops.greater(d_ap - d_an + margin, 0.0))
        on = ops.cast(on, d.dtype)
        weights = (weights + ops.where(ops.equal(columns, p), on, zeros)
                   - ops.where(ops.equal(columns, n), on, zeros))
        return weights, active + ops.sum(on)

    return ops.fori_loop(0, slots, slot, (zeros, ops.sum(zeros[:1, :1])))


def batch_all_weights(distances, positive_mask, negative_mask, margin: float):
    """Active batch-all triplets as weights on the distance matrix (slot by slot).

    The triplets ``(a, p, n)`` of ``batch_all_hinge`` with a positive hinge
    (``d(a, n) < d(a, p) + margin``), counted by one comparison over row
    ``a`` per positive slot, on ``stop_gradient(distances)``.

    Args:
        distances: ``[B, B]`` distance matrix.
        positive_mask: boolean ``[B, B]`` mask of positive pairs.
        negative_mask: boolean ``[B, B]`` mask of negatives.
        margin: the triplet margin.

    Returns:
        ``(weights, active)`` as ``semihard_weights``: the sum of the active
        hinges is ``sum(distances * weights) + margin * active``.
    """
    d = ops.stop_gradient(ops.convert_to_tensor(distances))
    negative = ops.cast(negative_mask, "bool")
    rank, slots, counts = _positive_slots(positive_mask)
    columns = ops.expand_dims(ops.arange(ops.shape(d)[1], dtype="int32"), 0)
    zeros = ops.zeros_like(d)

    def slot(m, carry):
        weights, active = carry
        p = _slot_column(rank, m)
        d_ap = ops.take_along_axis(d, p, axis=1)
        hit = ops.logical_and(negative, ops.less(d, d_ap + margin))
        hit = ops.cast(ops.logical_and(hit, ops.greater(counts, m)), d.dtype)
        n_hit = ops.sum(hit, axis=1, keepdims=True)
        weights = weights - hit + ops.where(ops.equal(columns, p), n_hit, zeros)
        return weights, active + ops.sum(n_hit)

    return ops.fori_loop(0, slots, slot, (zeros, ops.sum(zeros[:1, :1])))


def pairwise_distances(embeddings, metric: distances_lib.Metric = "L2"):
    """Deprecated alias of ``fsl.distances.pairwise_distances``.

    Kept for one release; it warns with a ``DeprecationWarning``.
    """
    warnings.warn(
        "fsl.mining.pairwise_distances is deprecated; use "
        "fsl.distances.pairwise_distances", DeprecationWarning, stacklevel=2,
    )
    return distances_lib.pairwise_distances(embeddings, metric)

