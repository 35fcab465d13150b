"""Structured losses over all the pairs of a batch: lifted structure and N-pairs.

The lifted structured loss (Song, Xiang, Jegelka and Savarese 2016) and the
N-pairs losses (Sohn 2016) with TensorFlow Addons' names, arguments and
values, in O(B^2) memory (TFA's lifted loss tiles a ``[B * B, B]`` tensor).
"""

from __future__ import annotations

import keras
from keras import ops

from fsl import mining
from fsl.losses.base import (
    Metric,
    MetricLoss,
    _check_rank,
    _check_stacked,
    _masked_logsumexp,
    _prepare_batch,
    _to_compute_dtype,
    _validate_margin,
    _validate_metric,
    _validate_real,
)

__all__ = [
    "lifted_struct_loss",
    "npairs_loss",
    "npairs_loss_from_embeddings",
    "npairs_multilabel_loss",
    "LiftedStructLoss",
    "NpairsLoss",
    "PairNpairsLoss",
    "NpairsMultilabelLoss",
]


# === Functions ===


def lifted_struct_loss(
    y_true, y_pred, margin: float = 1.0, distance_metric: Metric = "L2"
):
    """Lifted structured loss (as ``tfa.losses.lifted_struct_loss``).

    For every positive pair ``(i, j)`` of the batch, a smooth hinge over all
    the negatives of both ends::

        J_ij = log(sum_{k in N_i} exp(margin - D_ik)
                   + sum_{l in N_j} exp(margin - D_jl)) + D_ij
        loss = 1 / (2 |P|) * sum_{(i, j) in P} max(J_ij, 0) ** 2

    Song, Xiang, Jegelka and Savarese 2016, "Deep Metric Learning via Lifted
    Structured Feature Embedding" (eq. 4). TFA tiles a ``[B * B, B]`` tensor;
    this form needs O(B^2) memory (one log-sum-exp per row).

    Args:
        y_true: integer labels ``[B]`` or ``[B, 1]``.
        y_pred: embeddings ``[B, D]``, not normalised (as in the paper
            and TFA). On the unit sphere every distance is at most 2, so
            ``J_ij >= log(2 n) + margin - 2`` with ``n`` negatives per row:
            with more than ``e^(2 - margin) / 2`` negatives (any 2 at margin 1)
            no pair is ever satisfied and every pair keeps a gradient.
        margin: the margin ``alpha``.
        distance_metric: ``"L2"`` (default, TFA's only choice),
            ``"squared-L2"``, ``"angular"`` or a callable ``[B, D] -> [B, B]``.

    Returns:
        Scalar loss in float32 (float64 for float64 ``y_pred``); 0 when the batch has no
        positive pair or no negative (TFA returns NaN there).

    Raises:
        ValueError: negative margin, unknown metric, ``y_pred`` not rank 2.

    Examples:

    >>> import numpy as np
    >>> x = np.array([[0.0, 0.0], [0.0, 1.0], [3.0, 0.0], [3.0, 1.0]], "float32")
    >>> # each pair: J = log(2 * (e^(1 - 3) + e^(1 - sqrt(10)))) + 1 = 0.3085
    >>> round(float(lifted_struct_loss(np.array([0, 0, 1, 1]), x, margin=1.0)), 4)
    0.0476
    """
    margin = _validate_margin(margin)
    metric = _validate_metric(distance_metric)
    batch = _prepare_batch(y_true, y_pred, metric)
    distances, positive_mask, negative_mask = batch[:3]
    lse, has_negative = _masked_logsumexp(margin - distances, negative_mask)
    # The pair (i, j) needs the negatives of row j too: every row's, gathered.
    j = ops.logaddexp(ops.expand_dims(lse, 1), ops.expand_dims(batch.gather(lse), 0))
    j = j + distances
    has_negative_j = ops.greater(batch.gather(ops.cast(has_negative, distances.dtype)), 0.0)
    valid = ops.logical_and(
        positive_mask,
        ops.logical_or(ops.expand_dims(has_negative, 1), ops.expand_dims(has_negative_j, 0)),
    )
    squared = ops.where(valid, ops.square(ops.maximum(j, 0.0)), 0.0)
    count = batch.total(ops.sum(ops.cast(valid, distances.dtype)))
    # Each unordered pair appears twice in the [B, B] sum, and in the count.
    loss = 0.5 * ops.sum(squared) / ops.maximum(count, 1.0)
    return loss


def _check_logits(y_pred):
    logits = _check_rank(
        y_pred, 2, "y_pred", "[B, B] (similarities of anchors to positives)"
    )
    rows, cols = logits.shape
    if rows is not None and cols is not None and rows != cols:
        raise ValueError(
            "y_pred must have shape [B, B] (similarities of anchors to "
            f"positives). Received: y_pred.shape={tuple(logits.shape)}"
        )
    return _to_compute_dtype(logits)


def _soft_target_cross_entropy(targets, logits):
    """Per-row cross-entropy of ``softmax(logits)`` against row-normalised targets."""
    total = ops.sum(targets, axis=1, keepdims=True)
    has = ops.squeeze(ops.greater(total, 0.0), axis=1)
    targets = targets / ops.where(ops.greater(total, 0.0), total, ops.ones_like(total))
    per_row = -ops.sum(targets * ops.log_softmax(logits, axis=1), axis=1)
    return per_row, has


def npairs_loss(y_true, y_pred):
    """N-pairs loss (as ``tfa.losses.npairs_loss``).

    ``y_pred[i, j]`` is the similarity of anchor ``i`` to positive ``j``
    (e.g. ``anchors @ positives.T``); each row is a softmax over the
    positives, and its target is uniform over the positives whose label is
    the anchor's. The loss is the mean cross-entropy over the anchors. Sohn
    2016, "Improved Deep Metric Learning with Multi-class N-pair Loss
    Objective" (TFA's form: without the paper's L2 penalty on the
    embeddings).

    Args:
        y_true: integer labels ``[B]`` or ``[B, 1]``, the class of pair ``i``.
        y_pred: similarity matrix ``[B, B]``.

    Returns:
        Scalar loss in float32 (float64 for float64 ``y_pred``).

    Raises:
        ValueError: ``y_pred`` not of shape ``[B, B]``, or labels not ``[B]``.

    Examples:

    >>> import numpy as np
    >>> logits = np.array([[2.0, 0.0], [0.0, 2.0]], "float32")
    >>> round(float(npairs_loss(np.array([0, 1]), logits)), 4)  # log(1 + e^-2)
    0.1269
    """
    logits = _check_logits(y_pred)
    labels = mining.flat_labels(y_true)
    same = ops.equal(ops.expand_dims(labels, 1), ops.expand_dims(labels, 0))
    per_row, _ = _soft_target_cross_entropy(ops.cast(same, logits.dtype), logits)
    return ops.mean(per_row)


def npairs_loss_from_embeddings(y_true, anchors, positives, reg_lambda: float = 0.002):
    """N-pairs loss of anchor and positive embeddings, with Sohn's L2 penalty.

    ``npairs_loss(y_true, anchors @ positives.T)`` plus
    ``reg_lambda / 4 * (mean_i |a_i|^2 + mean_i |p_i|^2)``: the form (and
    default ``reg_lambda``) of ``tf.contrib.losses.metric_learning.
    npairs_loss(labels, embeddings_anchor, embeddings_positive)`` that
    TensorFlow 1 code calls. The embeddings are not normalised (the penalty
    keeps them from growing).

    Args:
        y_true: integer labels ``[B]`` or ``[B, 1]``, the class of pair ``i``.
        anchors: ``[B, D]`` anchor embeddings.
        positives: ``[B, D]`` embeddings of another example of each anchor's
            class.
        reg_lambda: weight of the L2 penalty (>= 0).

    Returns:
        Scalar loss in float32 (float64 for float64 embeddings).

    Raises:
        ValueError: negative ``reg_lambda``, embeddings not rank 2.

    Examples:

    >>> import numpy as np
    >>> a = np.array([[1.0, 0.0], [0.0, 1.0]], "float32")
    >>> # logits = a @ a.T = I: each row log(1 + e^-1) = 0.3133; penalty 0
    >>> round(float(npairs_loss_from_embeddings([0, 1], a, a, reg_lambda=0.0)), 4)
    0.3133
    """
    reg_lambda = _validate_real("reg_lambda", reg_lambda, 0.0)
    anchors = _to_compute_dtype(_check_rank(anchors, 2, "anchors", "[B, D]"))
    positives = _to_compute_dtype(_check_rank(positives, 2, "positives", "[B, D]"))
    logits = ops.matmul(anchors, ops.transpose(positives))
    penalty = ops.mean(ops.sum(ops.square(anchors), axis=1)) + ops.mean(
        ops.sum(ops.square(positives), axis=1)
    )
    loss = npairs_loss(y_true, logits) + 0.25 * reg_lambda * penalty
    return loss


def npairs_multilabel_loss(y_true, y_pred):
    """N-pairs loss for multi-label data (as ``tfa.losses.npairs_multilabel_loss``).

    The target of row ``i`` is proportional to the number of labels that
    pairs ``i`` and ``j`` share, ``|labels(i) & labels(j)|``; otherwise as
    ``npairs_loss``.

    Args:
        y_true: 0/1 indicators ``[B, C]`` (``y_true[i, c] = 1`` when pair
            ``i`` has class ``c``); a ``tf.SparseTensor`` is made dense.
        y_pred: similarity matrix ``[B, B]``.

    Returns:
        Scalar loss in float32 (float64 for float64 ``y_pred``): the mean
        over the rows that have at least one label (TFA returns NaN when a
        row has none); 0 when no row has one.

    Raises:
        ValueError: ``y_pred`` not of shape ``[B, B]``, ``y_true`` not rank 2.
    """
    logits = _check_logits(y_pred)
    indicators = _check_rank(
        ops.convert_to_tensor(y_true, sparse=False), 2, "y_true", "[B, C] (0/1)"
    )
    indicators = ops.cast(indicators, logits.dtype)
    shared = ops.matmul(indicators, ops.transpose(indicators))
    per_row, has = _soft_target_cross_entropy(shared, logits)
    count = ops.sum(ops.cast(has, logits.dtype))
    loss = ops.sum(ops.where(has, per_row, 0.0)) / ops.maximum(count, 1.0)
    return loss


def _pair_npairs_loss(y_true, y_pred, reg_lambda):
    y_pred = _check_stacked(y_pred, 2, "[B, 2, D] (stacked anchors and positives)")
    return npairs_loss_from_embeddings(y_true, y_pred[:, 0], y_pred[:, 1], reg_lambda)


# === Classes ===


@keras.saving.register_keras_serializable(package="fsl")
class LiftedStructLoss(MetricLoss):
    """Lifted structured loss (``tfa.losses.LiftedStructLoss``).

    ``y_true``: integer labels ``[B]`` or ``[B, 1]``; ``y_pred``: embeddings
    ``[B, D]``. See ``lifted_struct_loss`` (Song et al. 2016).

    Args:
        margin: the margin (>= 0).
        distance_metric: ``"L2"`` (default), ``"squared-L2"``, ``"angular"``
            or a registered callable.
        mining: ``"global"`` (default) or ``"replica"``: under data
            parallelism, mine the whole batch or each replica's share
            (``fsl.losses.replicas``).
        **kwargs: ``reduction``, ``name``, ``dtype`` (``fsl.losses.MetricLoss``).
    """

    def __init__(self, margin: float = 1.0, distance_metric: Metric = "L2", mining: str = "global", **kwargs):
        super().__init__(
            lifted_struct_loss, margin=margin, distance_metric=distance_metric, mining=mining, **kwargs,
        )


@keras.saving.register_keras_serializable(package="fsl")
class NpairsLoss(MetricLoss):
    """N-pairs loss on a similarity matrix (``tfa.losses.NpairsLoss``).

    ``y_true``: integer labels ``[B]``; ``y_pred``: similarities ``[B, B]``
    of anchors to positives. See ``npairs_loss`` (Sohn 2016).

    Args:
        **kwargs: ``reduction``, ``name``, ``dtype`` (``fsl.losses.MetricLoss``).
    """

    def __init__(self, **kwargs):
        super().__init__(npairs_loss, **kwargs)


@keras.saving.register_keras_serializable(package="fsl")
class PairNpairsLoss(MetricLoss):
    """N-pairs loss of (anchor, positive) pairs stacked as ``y_pred = [B, 2, D]``.

    ``y_true``: integer labels ``[B]``, the class of pair ``i`` (one pair per
    class per batch in Sohn's setting; repeated classes share the target).
    See ``npairs_loss_from_embeddings``: ``tf.contrib``'s N-pairs loss with
    its L2 penalty, for a model whose output stacks its two towers.

    Args:
        reg_lambda: weight of the L2 penalty on the embeddings (>= 0).
        **kwargs: ``reduction``, ``name``, ``dtype`` (``fsl.losses.MetricLoss``).
    """

    def __init__(self, reg_lambda: float = 0.002, **kwargs):
        super().__init__(_pair_npairs_loss, reg_lambda=reg_lambda, **kwargs)


@keras.saving.register_keras_serializable(package="fsl")
class NpairsMultilabelLoss(MetricLoss):
    """Multi-label N-pairs loss (``tfa.losses.NpairsMultilabelLoss``).

    ``y_true``: 0/1 indicators ``[B, C]``; ``y_pred``: similarities
    ``[B, B]``. See ``npairs_multilabel_loss``.

    Args:
        **kwargs: ``reduction``, ``name``, ``dtype`` (``fsl.losses.MetricLoss``).
    """

    def __init__(self, **kwargs):
        super().__init__(npairs_multilabel_loss, **kwargs)
