"""Contrastive and triplet losses, a Keras 3 replacement for TensorFlow Addons.

Each loss is a pure function (the math, with ``keras.ops`` only, so it runs on
every Keras backend) and a thin ``keras.losses.Loss`` subclass that validates
and stores plain arguments and is registered for serialization under the
package ``"fsl"``: a model compiled with one reloads with
``keras.saving.load_model(path)`` and no ``custom_objects``.

Names, arguments and results follow ``tfa.losses`` (``ContrastiveLoss``,
``TripletSemiHardLoss``, ``TripletHardLoss``, ``LiftedStructLoss``,
``NpairsLoss``, ``NpairsMultilabelLoss``), checked against values computed
with TensorFlow Addons 0.23. Added: ``TripletLoss`` on explicit triplets,
``PairContrastiveLoss`` on stacked embedding pairs, ``TripletBatchAllLoss`` and
``PairNpairsLoss`` (N-pairs from the two embeddings with ``tf.contrib``'s L2
penalty); ``LiftedStructLoss`` also takes ``distance_metric``.
``MultiSimilarityLoss`` and ``CircleLoss`` follow TF Similarity 0.17 (Keras 2
only), checked against its values and gradients; their default ``"angular"``
distance is its ``"cosine"`` on L2-normalised embeddings, and normalises the
rows itself (so its gradient has no radial part).

Differences from TFA, all where TFA returns NaN or a meaningless value:

* A batch with no valid triplet (no two examples share a label, or every
  example has the same label, or ``B = 1``) gives a loss of exactly 0 with a
  zero gradient. TFA's semi-hard and lifted losses return NaN there (0 / 0)
  and its hard loss returns about ``margin``. A row of
  ``NpairsMultilabelLoss`` with no label is left out of the mean (TFA: NaN).
* The online triplet and lifted losses never build the ``[B * B, B]`` tile of
  TFA's semi-hard and lifted losses: memory is O(B^2) (see ``fsl.mining``).
* Gradients are finite for duplicate or identical embeddings (the square root
  of a zero distance has a zero gradient).

Like TFA, the online triplet losses compute in float32 when the embeddings are
float16 / bfloat16 (mixed precision) and cast the loss back to that dtype.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Union

import keras
from keras import ops

from fsl import distances as distances_lib
from fsl import mining

Metric = Union[str, Callable[..., Any]]

__all__ = [
    "contrastive_loss",
    "contrastive_loss_from_embeddings",
    "triplet_loss",
    "triplet_semihard_loss",
    "triplet_hard_loss",
    "triplet_batch_all_loss",
    "lifted_struct_loss",
    "npairs_loss",
    "npairs_loss_from_embeddings",
    "npairs_multilabel_loss",
    "multi_similarity_loss",
    "circle_loss",
    "ContrastiveLoss",
    "PairContrastiveLoss",
    "TripletLoss",
    "TripletSemiHardLoss",
    "TripletHardLoss",
    "TripletBatchAllLoss",
    "LiftedStructLoss",
    "NpairsLoss",
    "PairNpairsLoss",
    "NpairsMultilabelLoss",
    "MultiSimilarityLoss",
    "CircleLoss",
]

_LOW_PRECISION = ("float16", "bfloat16")


# === Validation ===


def _validate_margin(margin) -> float:
    if isinstance(margin, bool) or not isinstance(margin, numbers.Real):
        raise TypeError(
            f"margin must be a non-negative number. Received: margin={margin!r} "
            f"of type {type(margin).__name__}"
        )
    if not math.isfinite(float(margin)) or margin < 0:
        raise ValueError(f"margin must be >= 0 and finite. Received: margin={margin!r}")
    return float(margin)


def _validate_real(name: str, value, low: float = -math.inf, low_open: bool = False) -> float:
    """A finite real number ``> low`` (``low_open``) or ``>= low``; errors name the value."""
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real)
    ok = ok and math.isfinite(float(value)) and (value > low if low_open else value >= low)
    if not ok:
        bound = "" if low == -math.inf else f" {'>' if low_open else '>='} {low:g}"
        raise ValueError(f"{name} must be a finite number{bound}. Received: {name}={value!r}")
    return float(value)


def _validate_metric(metric: Metric) -> Metric:
    """A canonical metric name, or the callable as is; errors name the value."""
    if callable(metric):
        return metric
    return distances_lib.canonical_name(metric)


def _validate_soft(soft) -> bool:
    if not isinstance(soft, bool):
        raise TypeError(f"soft must be a bool. Received: soft={soft!r}")
    return soft


def _check_rank(x, rank: int, name: str, expected: str):
    x = ops.convert_to_tensor(x)
    if len(x.shape) != rank:
        raise ValueError(
            f"{name} must have shape {expected}. Received: {name}.shape="
            f"{tuple(x.shape)}"
        )
    return x


def _check_stacked(y_pred, k: int, expected: str):
    y_pred = _check_rank(y_pred, 3, "y_pred", expected)
    if y_pred.shape[1] is not None and y_pred.shape[1] != k:
        raise ValueError(
            f"y_pred must have shape {expected}. Received: y_pred.shape="
            f"{tuple(y_pred.shape)}"
        )
    return y_pred


def _to_compute_dtype(x):
    """Float32 for low-precision (or non-float) input; returns (x, dtype in)."""
    x = ops.convert_to_tensor(x)
    dtype = keras.backend.standardize_dtype(x.dtype)
    if dtype in _LOW_PRECISION or "float" not in dtype:
        return ops.cast(x, "float32"), dtype
    return x, dtype


def _restore_dtype(loss, dtype: str):
    if dtype in _LOW_PRECISION:
        return ops.cast(loss, dtype)
    return loss


def _match_rank(y_true, y_pred):
    """Squeeze a trailing axis of 1 so that ``[B]`` and ``[B, 1]`` do not broadcast."""
    if len(y_true.shape) == len(y_pred.shape) + 1 and y_true.shape[-1] == 1:
        y_true = ops.squeeze(y_true, axis=-1)
    elif len(y_pred.shape) == len(y_true.shape) + 1 and y_pred.shape[-1] == 1:
        y_pred = ops.squeeze(y_pred, axis=-1)
    return y_true, y_pred


def _serialize_metric(metric: Metric):
    if callable(metric):
        return keras.saving.serialize_keras_object(metric)
    return metric


def _deserialize_metric(metric):
    if isinstance(metric, dict):
        return keras.saving.deserialize_keras_object(metric)
    return metric


# === Pure functions ===


def contrastive_loss(y_true, y_pred, margin: float = 1.0):
    """Contrastive loss of pairs, from their distances (TFA convention).

    Convention: ``y_true = 1`` means the pair is the SAME identity, ``0``
    means DIFFERENT; ``y_pred`` is a DISTANCE (not a similarity). Per pair::

        y * d^2 + (1 - y) * max(margin - d, 0)^2

    Hadsell, Chopra and LeCun 2006, "Dimensionality Reduction by Learning an
    Invariant Mapping".

    Args:
        y_true: ``[B]`` (or ``[B, 1]``) 1 for same, 0 for different.
        y_pred: ``[B]`` (or ``[B, 1]``) distances ``>= 0``.
        margin: distance beyond which a different pair costs nothing.

    Returns:
        Per-pair losses, the shape of ``y_pred``.

    Raises:
        ValueError: if ``margin < 0``.

    Examples:

    >>> import numpy as np
    >>> loss = contrastive_loss(np.array([1.0, 0.0]), np.array([0.5, 0.25]))
    >>> np.asarray(loss).tolist()
    [0.25, 0.5625]
    """
    margin = _validate_margin(margin)
    y_pred = ops.convert_to_tensor(y_pred)
    if "float" not in keras.backend.standardize_dtype(y_pred.dtype):
        y_pred = ops.cast(y_pred, "float32")
    y_true = ops.cast(ops.convert_to_tensor(y_true), y_pred.dtype)
    y_true, y_pred = _match_rank(y_true, y_pred)
    return y_true * ops.square(y_pred) + (1.0 - y_true) * ops.square(
        ops.maximum(margin - y_pred, 0.0)
    )


def contrastive_loss_from_embeddings(
    y_true, a, b, margin: float = 1.0, distance_metric: Metric = "L2"
):
    """Contrastive loss of pairs given by their two embeddings.

    ``contrastive_loss(y_true, d(a_i, b_i), margin)`` with ``y_true = 1`` for
    SAME, ``0`` for DIFFERENT. With the default ``"L2"`` metric the gradient is
    finite even where ``a_i == b_i``.

    Args:
        y_true: ``[B]`` (or ``[B, 1]``) 1 for same, 0 for different.
        a: ``[B, D]`` first embeddings of the pairs.
        b: ``[B, D]`` second embeddings.
        margin: margin of the different pairs.
        distance_metric: ``"L2"``, ``"squared-L2"``, ``"angular"`` or a
            callable ``(a, b) -> [B]``.

    Returns:
        ``[B]`` per-pair losses.
    """
    margin = _validate_margin(margin)
    metric = _validate_metric(distance_metric)
    a = _check_rank(a, 2, "a", "[B, D]")
    b = _check_rank(b, 2, "b", "[B, D]")
    distance = distances_lib.get_paired(metric)(a, b)
    return contrastive_loss(y_true, distance, margin)


def _triplet_hinge(anchor, positive, negative, margin, metric):
    paired = distances_lib.get_paired(metric)
    return ops.maximum(
        paired(anchor, positive) - paired(anchor, negative) + margin, 0.0
    )


def triplet_loss(
    anchor, positive, negative, margin: float = 0.2,
    distance_metric: Metric = "squared-L2",
):
    """Triplet loss of explicit triplets (FaceNet).

    ``mean(max(d(a, p) - d(a, n) + margin, 0))``; Schroff, Kalenichenko and
    Philbin 2015, "FaceNet: A Unified Embedding for Face Recognition and
    Clustering" (which uses the squared L2 distance and margin 0.2).

    Args:
        anchor: ``[B, D]`` anchor embeddings.
        positive: ``[B, D]`` embeddings of the anchors' identities.
        negative: ``[B, D]`` embeddings of other identities.
        margin: the margin ``alpha``.
        distance_metric: ``"squared-L2"`` (default), ``"L2"``, ``"angular"``
            or a callable ``(a, b) -> [B]``.

    Returns:
        Scalar mean loss.

    Examples:

    >>> import numpy as np
    >>> a, p, n = (np.array([[x, 0.0]], "float32") for x in (0.0, 1.0, 2.0))
    >>> float(triplet_loss(a, p, n, margin=0.2))  # max(1 - 4 + 0.2, 0)
    0.0
    """
    margin = _validate_margin(margin)
    metric = _validate_metric(distance_metric)
    anchor = _check_rank(anchor, 2, "anchor", "[B, D]")
    positive = _check_rank(positive, 2, "positive", "[B, D]")
    negative = _check_rank(negative, 2, "negative", "[B, D]")
    return ops.mean(_triplet_hinge(anchor, positive, negative, margin, metric))


def _prepare_batch(y_true, y_pred, distance_metric):
    y_pred = _check_rank(y_pred, 2, "y_pred", "[B, D] (embeddings)")
    embeddings, dtype = _to_compute_dtype(y_pred)
    positive_mask, negative_mask = mining.build_masks(y_true)
    distances = mining.pairwise_distances(embeddings, distance_metric)
    has_triplet = ops.logical_and(ops.any(positive_mask), ops.any(negative_mask))
    return distances, positive_mask, negative_mask, has_triplet, dtype


def triplet_semihard_loss(
    y_true, y_pred, margin: float = 1.0, distance_metric: Metric = "L2"
):
    """Triplet loss with online semi-hard negative mining (as ``tfa.losses``).

    For every positive pair ``(a, p)`` of the batch, the negative is the
    closest ``n`` with ``d(a, n) > d(a, p)`` (semi-hard); when there is none,
    the farthest negative of ``a``. The loss is
    ``max(d(a, p) - d(a, n) + margin, 0)`` averaged over all positive pairs.
    Schroff et al. 2015, "FaceNet"; the algorithm of TFA's
    ``triplet_semihard_loss``, in O(B^2) memory.

    Args:
        y_true: integer labels ``[B]`` or ``[B, 1]``.
        y_pred: embeddings ``[B, D]`` (TFA expects them L2-normalised for the
            L2 metrics; not required).
        margin: the margin.
        distance_metric: ``"L2"`` (default), ``"squared-L2"``, ``"angular"``
            or a callable ``[B, D] -> [B, B]``.

    Returns:
        Scalar loss, in the dtype of ``y_pred``; 0 when the batch holds no
        valid triplet.

    Raises:
        ValueError: negative margin, unknown metric, ``y_pred`` not rank 2.
    """
    margin = _validate_margin(margin)
    metric = _validate_metric(distance_metric)
    distances, positive_mask, negative_mask, has_triplet, dtype = _prepare_batch(
        y_true, y_pred, metric
    )
    semihard, _ = mining.semihard_negative(distances, negative_mask)
    hinge = ops.maximum(distances - semihard + margin, 0.0)
    positive = ops.cast(positive_mask, distances.dtype)
    num_positives = ops.sum(positive)
    loss = ops.sum(hinge * positive) / ops.maximum(num_positives, 1.0)
    loss = ops.where(has_triplet, loss, ops.zeros_like(loss))
    return _restore_dtype(loss, dtype)


def triplet_hard_loss(
    y_true,
    y_pred,
    margin: float = 1.0,
    soft: bool = False,
    distance_metric: Metric = "L2",
):
    """Batch-hard triplet loss (as ``tfa.losses.TripletHardLoss``).

    For every anchor, its hardest (farthest) positive and hardest (closest)
    negative; ``max(hp - hn + margin, 0)``, or with ``soft=True``
    ``log(1 + exp(hp - hn))`` (no margin); mean over all anchors of the
    batch. Hermans, Beyer and Leibe 2017, "In Defense of the Triplet Loss for
    Person Re-Identification".

    As in TFA, an anchor with no positive in the batch still counts in the
    mean, with ``hp`` = the minimum of its distance row (0).

    Args:
        y_true: integer labels ``[B]`` or ``[B, 1]``.
        y_pred: embeddings ``[B, D]``.
        margin: the margin (unused when ``soft=True``).
        soft: use the soft margin ``softplus(hp - hn)``.
        distance_metric: ``"L2"`` (default), ``"squared-L2"``, ``"angular"``
            or a callable ``[B, D] -> [B, B]``.

    Returns:
        Scalar loss in the dtype of ``y_pred``; 0 when the batch holds no valid
        triplet.

    Raises:
        ValueError: negative margin, unknown metric, ``y_pred`` not rank 2.
    """
    margin = _validate_margin(margin)
    soft = _validate_soft(soft)
    metric = _validate_metric(distance_metric)
    distances, positive_mask, negative_mask, has_triplet, dtype = _prepare_batch(
        y_true, y_pred, metric
    )
    hard_positive = mining.hardest_positive(distances, positive_mask)
    hard_negative = mining.hardest_negative(distances, negative_mask)
    if soft:
        per_anchor = ops.softplus(hard_positive - hard_negative)
    else:
        per_anchor = ops.maximum(hard_positive - hard_negative + margin, 0.0)
    loss = ops.mean(per_anchor)
    loss = ops.where(has_triplet, loss, ops.zeros_like(loss))
    return _restore_dtype(loss, dtype)


def triplet_batch_all_loss(
    y_true, y_pred, margin: float = 1.0, distance_metric: Metric = "L2"
):
    """Batch-all triplet loss: mean over the active valid triplets.

    Every valid triplet ``(a, p, n)`` of the batch (``a != p`` same label,
    ``n`` another label) gives ``max(d(a, p) - d(a, n) + margin, 0)``; the loss
    is their mean over the triplets where it is positive (0 when there is
    none). Hermans, Beyer and Leibe 2017, "In Defense of the Triplet Loss for
    Person Re-Identification" ("batch all", averaged over non-zero terms).
    Computed in O(B^2) memory from sorted negatives and prefix sums.

    Args:
        y_true: integer labels ``[B]`` or ``[B, 1]``.
        y_pred: embeddings ``[B, D]``.
        margin: the margin.
        distance_metric: ``"L2"`` (default), ``"squared-L2"``, ``"angular"``
            or a callable ``[B, D] -> [B, B]``.

    Returns:
        Scalar loss in the dtype of ``y_pred``.

    Raises:
        ValueError: negative margin, unknown metric, ``y_pred`` not rank 2.
    """
    margin = _validate_margin(margin)
    metric = _validate_metric(distance_metric)
    distances, positive_mask, negative_mask, has_triplet, dtype = _prepare_batch(
        y_true, y_pred, metric
    )
    hinge_sum, active = mining.batch_all_hinge(
        distances, positive_mask, negative_mask, margin
    )
    total, count = ops.sum(hinge_sum), ops.sum(active)
    loss = total / ops.maximum(count, 1.0)
    loss = ops.where(ops.greater(count, 0.0), loss, ops.zeros_like(loss))
    return _restore_dtype(loss, dtype)


def _masked_logsumexp(values, mask):
    """``log(sum(exp(values)))`` of each row over ``mask``; ``(lse [B], has [B])``.

    A row with an empty mask gets a large finite negative value (standing for
    ``-inf``) so that ``logaddexp`` with it returns the other side and nothing
    downstream meets ``log(0)``; ``has`` tells which rows are real.
    """
    mask = ops.cast(mask, "bool")
    has = ops.any(mask, axis=1)
    row_max = mining.masked_maximum(values, mask, keepdims=True)
    # Masked-out entries are replaced before exp (by a value whose exp is 0),
    # not zeroed after: exp of a large masked value would be inf, and
    # where()'s gradient 0 * inf is NaN.
    shifted = ops.where(mask, values - row_max, ops.full_like(values, -1e4))
    total = ops.sum(ops.exp(shifted), axis=1)
    total = ops.where(has, total, ops.ones_like(total))
    lse = ops.squeeze(row_max, axis=1) + ops.log(total)
    return ops.where(has, lse, ops.full_like(lse, -1e30)), has


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
        Scalar loss in the dtype of ``y_pred``; 0 when the batch has no
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
    distances, positive_mask, negative_mask, _, dtype = _prepare_batch(
        y_true, y_pred, metric
    )
    lse, has_negative = _masked_logsumexp(margin - distances, negative_mask)
    j = ops.logaddexp(ops.expand_dims(lse, 1), ops.expand_dims(lse, 0)) + distances
    valid = ops.logical_and(
        positive_mask,
        ops.logical_or(ops.expand_dims(has_negative, 1), ops.expand_dims(has_negative, 0)),
    )
    squared = ops.where(valid, ops.square(ops.maximum(j, 0.0)), 0.0)
    count = ops.sum(ops.cast(valid, distances.dtype))
    # Each unordered pair appears twice in the [B, B] sum, and in the count.
    loss = 0.5 * ops.sum(squared) / ops.maximum(count, 1.0)
    return _restore_dtype(loss, dtype)


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
        Scalar loss in the dtype of ``y_pred``.

    Raises:
        ValueError: ``y_pred`` not of shape ``[B, B]``, or labels not ``[B]``.

    Examples:

    >>> import numpy as np
    >>> logits = np.array([[2.0, 0.0], [0.0, 2.0]], "float32")
    >>> round(float(npairs_loss(np.array([0, 1]), logits)), 4)  # log(1 + e^-2)
    0.1269
    """
    logits, dtype = _check_logits(y_pred)
    labels = mining._flat_labels(y_true)
    same = ops.equal(ops.expand_dims(labels, 1), ops.expand_dims(labels, 0))
    per_row, _ = _soft_target_cross_entropy(ops.cast(same, logits.dtype), logits)
    return _restore_dtype(ops.mean(per_row), dtype)


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
        Scalar loss in the dtype of the embeddings.

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
    anchors, dtype = _to_compute_dtype(_check_rank(anchors, 2, "anchors", "[B, D]"))
    positives, _ = _to_compute_dtype(_check_rank(positives, 2, "positives", "[B, D]"))
    logits = ops.matmul(anchors, ops.transpose(positives))
    penalty = ops.mean(ops.sum(ops.square(anchors), axis=1)) + ops.mean(
        ops.sum(ops.square(positives), axis=1)
    )
    loss = npairs_loss(y_true, logits) + 0.25 * reg_lambda * penalty
    return _restore_dtype(loss, dtype)


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
        Scalar loss in the dtype of ``y_pred``: the mean over the rows that
        have at least one label (TFA returns NaN when a row has none); 0 when
        no row has one.

    Raises:
        ValueError: ``y_pred`` not of shape ``[B, B]``, ``y_true`` not rank 2.
    """
    logits, dtype = _check_logits(y_pred)
    indicators = _check_rank(
        ops.convert_to_tensor(y_true, sparse=False), 2, "y_true", "[B, C] (0/1)"
    )
    indicators = ops.cast(indicators, logits.dtype)
    shared = ops.matmul(indicators, ops.transpose(indicators))
    per_row, has = _soft_target_cross_entropy(shared, logits)
    count = ops.sum(ops.cast(has, logits.dtype))
    loss = ops.sum(ops.where(has, per_row, 0.0)) / ops.maximum(count, 1.0)
    return _restore_dtype(loss, dtype)


def _log1p_sum_exp(values, mask):
    """``log(1 + sum(exp(values)))`` of each row over ``mask`` (0 for an empty row)."""
    lse, _ = _masked_logsumexp(values, mask)
    return ops.logaddexp(ops.zeros_like(lse), lse)


def multi_similarity_loss(
    y_true,
    y_pred,
    alpha: float = 2.0,
    beta: float = 40.0,
    epsilon: float = 0.1,
    lmda: float = 0.5,
    center: float = 1.0,
    distance_metric: Metric = "angular",
):
    """Multi-similarity loss (as ``tensorflow_similarity.losses.MultiSimilarityLoss``).

    Pairs are first mined per anchor ``i``: the positives farther than its
    closest negative minus ``epsilon``, the negatives closer than its
    farthest positive plus ``epsilon``. Then, with ``D`` the distance and
    ``s = D + lmda - center`` (for the angular distance and ``center = 1``,
    ``lmda - S`` with ``S`` the cosine similarity)::

        L_i = 1 / alpha * log(1 + sum_{p kept} exp(alpha * s_ip))
            + 1 / beta * log(1 + sum_{n kept} exp(-beta * s_in))

    and the loss is the mean of ``L_i`` over the batch, an anchor without a
    kept positive or a kept negative counting 0. Wang, Han, Huang, Dong and
    Scott 2019, "Multi-Similarity Loss with General Pair Weighting for Deep
    Metric Learning" (eq. 12, with its pair mining, eq. 10-11).

    Args:
        y_true: integer labels ``[B]`` or ``[B, 1]``.
        y_pred: embeddings ``[B, D]`` (L2-normalised for TF Similarity's
            ``"cosine"``; ``"angular"`` normalises them itself).
        alpha: scale of the positive pairs (> 0).
        beta: scale of the negative pairs (> 0).
        epsilon: mining margin (>= 0).
        lmda: the similarity margin ``lambda``.
        center: the distance ``lmda`` is measured from (1 for the angular
            distance, whose range is ``[0, 2]``).
        distance_metric: ``"angular"`` (default, TF Similarity's
            ``"cosine"``), ``"L2"``, ``"squared-L2"`` or a callable.

    Returns:
        Scalar loss in the dtype of ``y_pred``; 0 when no anchor has both a
        positive and a negative pair left after mining.

    Raises:
        ValueError: a parameter out of range, unknown metric, ``y_pred`` not
            rank 2.
    """
    alpha = _validate_real("alpha", alpha, 0.0, low_open=True)
    beta = _validate_real("beta", beta, 0.0, low_open=True)
    epsilon = _validate_real("epsilon", epsilon, 0.0)
    lmda = _validate_real("lmda", lmda)
    center = _validate_real("center", center)
    metric = _validate_metric(distance_metric)
    distances, positive_mask, negative_mask, _, dtype = _prepare_batch(
        y_true, y_pred, metric
    )
    closest_negative = mining.masked_minimum(distances, negative_mask, keepdims=True)
    farthest_positive = mining.masked_maximum(distances, positive_mask, keepdims=True)
    positives = ops.logical_and(
        positive_mask, ops.greater(distances, closest_negative - epsilon)
    )
    negatives = ops.logical_and(
        negative_mask, ops.less(distances, farthest_positive + epsilon)
    )
    valid = ops.logical_and(ops.any(positives, axis=1), ops.any(negatives, axis=1))
    shifted = distances + (lmda - center)
    per_anchor = (
        _log1p_sum_exp(alpha * shifted, positives) / alpha
        + _log1p_sum_exp(-beta * shifted, negatives) / beta
    )
    loss = ops.mean(ops.where(valid, per_anchor, 0.0))
    return _restore_dtype(loss, dtype)


def circle_loss(
    y_true,
    y_pred,
    gamma: float = 80.0,
    margin: float = 0.4,
    distance_metric: Metric = "angular",
):
    """Circle loss (as ``tensorflow_similarity.losses.CircleLoss``).

    With the angular distance ``D = 1 - S`` (``S`` the cosine similarity)
    and ``m = margin``, each pair is weighted by how far it is from its
    optimum: positives by ``a_p = max(m + D, 0)``, negatives by
    ``a_n = max(1 + m - D, 0)``; per anchor ``i``::

        L_i = log(1 + sum_p exp(-gamma * a_p * (m - D_ip)))
            + log(1 + sum_n exp(gamma * a_n * (1 - m - D_in)))

    and the loss is the mean of ``L_i`` over the batch (0 for an anchor
    without a positive or a negative). Sun et al. 2020, "Circle Loss: A
    Unified Perspective of Pair Similarity Optimization" (eq. 6-8, in TF
    Similarity's form: the sum of the two log-sum-exp terms where the
    paper's eq. 6 takes the log of one plus their product; like TF
    Similarity, the weights are not detached from the gradient).

    Args:
        y_true: integer labels ``[B]`` or ``[B, 1]``.
        y_pred: embeddings ``[B, D]`` (L2-normalised for TF Similarity's
            ``"cosine"``; ``"angular"`` normalises them itself).
        gamma: the scale (> 0).
        margin: the relaxation ``m`` (>= 0).
        distance_metric: ``"angular"`` (default, TF Similarity's
            ``"cosine"``; the weights and margins assume a distance in
            ``[0, 2]``), ``"L2"``, ``"squared-L2"`` or a callable.

    Returns:
        Scalar loss in the dtype of ``y_pred``; 0 when no anchor has both a
        positive and a negative.

    Raises:
        ValueError: a parameter out of range, unknown metric, ``y_pred`` not
            rank 2.
    """
    gamma = _validate_real("gamma", gamma, 0.0, low_open=True)
    margin = _validate_margin(margin)
    metric = _validate_metric(distance_metric)
    distances, positive_mask, negative_mask, _, dtype = _prepare_batch(
        y_true, y_pred, metric
    )
    valid = ops.logical_and(ops.any(positive_mask, axis=1), ops.any(negative_mask, axis=1))
    positive_weight = ops.maximum(margin + distances, 0.0)
    negative_weight = ops.maximum(1.0 + margin - distances, 0.0)
    per_anchor = _log1p_sum_exp(
        -gamma * positive_weight * (margin - distances), positive_mask
    ) + _log1p_sum_exp(gamma * negative_weight * (1.0 - margin - distances), negative_mask)
    loss = ops.mean(ops.where(valid, per_anchor, 0.0))
    return _restore_dtype(loss, dtype)


# === Loss classes ===


class _MarginLoss(keras.losses.Loss):
    """Stores and validates ``margin`` and ``distance_metric``."""

    def __init__(
        self,
        margin: float,
        distance_metric: Metric,
        reduction: str,
        name: str,
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.margin = _validate_margin(margin)
        self.distance_metric = _validate_metric(_deserialize_metric(distance_metric))

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            margin=self.margin,
            distance_metric=_serialize_metric(self.distance_metric),
        )
        return config


@keras.saving.register_keras_serializable(package="fsl")
class ContrastiveLoss(keras.losses.Loss):
    """Contrastive loss of pairs from their distances (``tfa.losses.ContrastiveLoss``).

    ``y_true = 1`` SAME, ``0`` DIFFERENT; ``y_pred`` is a DISTANCE. Per pair
    ``y * d^2 + (1 - y) * max(margin - d, 0)^2``, then the reduction (mean by
    default). Hadsell, Chopra and LeCun 2006.

    Args:
        margin: distance beyond which a different pair costs nothing (>= 0).
        reduction: Keras reduction, ``"sum_over_batch_size"`` by default.
        name: name of the loss.
        dtype: dtype of the computation (Keras default when ``None``).

    Examples:

    >>> import numpy as np
    >>> loss = ContrastiveLoss(margin=1.0)
    >>> float(loss(np.array([1.0, 0.0]), np.array([0.5, 0.25])))
    0.40625
    """

    def __init__(
        self,
        margin: float = 1.0,
        reduction: str = "sum_over_batch_size",
        name: str = "contrastive_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.margin = _validate_margin(margin)

    def call(self, y_true, y_pred):
        return contrastive_loss(y_true, y_pred, self.margin)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(margin=self.margin)
        return config


@keras.saving.register_keras_serializable(package="fsl")
class PairContrastiveLoss(_MarginLoss):
    """Contrastive loss of pairs given as stacked embeddings ``[B, 2, D]``.

    ``y_pred[:, 0]`` and ``y_pred[:, 1]`` are the two embeddings of each pair
    (e.g. the output of a siamese model that stacks its two towers);
    ``y_true`` is 1 for SAME, 0 for DIFFERENT.

    Args:
        margin: margin of the different pairs (>= 0).
        distance_metric: ``"L2"`` (default), ``"squared-L2"`` or ``"angular"``.
        reduction: Keras reduction.
        name: name of the loss.
        dtype: dtype of the computation.
    """

    def __init__(
        self,
        margin: float = 1.0,
        distance_metric: Metric = "L2",
        reduction: str = "sum_over_batch_size",
        name: str = "pair_contrastive_loss",
        dtype=None,
    ):
        super().__init__(margin, distance_metric, reduction, name, dtype)

    def call(self, y_true, y_pred):
        y_pred = _check_stacked(y_pred, 2, "[B, 2, D] (stacked pairs)")
        return contrastive_loss_from_embeddings(
            y_true, y_pred[:, 0], y_pred[:, 1], self.margin, self.distance_metric
        )


@keras.saving.register_keras_serializable(package="fsl")
class TripletLoss(_MarginLoss):
    """Triplet loss of explicit triplets stacked as ``y_pred = [B, 3, D]``.

    ``y_pred[:, 0]`` anchors, ``y_pred[:, 1]`` positives, ``y_pred[:, 2]``
    negatives; ``y_true`` is ignored. Per triplet
    ``max(d(a, p) - d(a, n) + margin, 0)``, then the reduction (mean by
    default). Schroff et al. 2015, "FaceNet".

    Args:
        margin: the margin (>= 0), 0.2 by default as in FaceNet.
        distance_metric: ``"squared-L2"`` (default), ``"L2"``, ``"angular"``.
        reduction: Keras reduction.
        name: name of the loss.
        dtype: dtype of the computation.
    """

    def __init__(
        self,
        margin: float = 0.2,
        distance_metric: Metric = "squared-L2",
        reduction: str = "sum_over_batch_size",
        name: str = "triplet_loss",
        dtype=None,
    ):
        super().__init__(margin, distance_metric, reduction, name, dtype)

    def call(self, y_true, y_pred):
        y_pred = _check_stacked(y_pred, 3, "[B, 3, D] (anchor, positive, negative)")
        return _triplet_hinge(
            y_pred[:, 0], y_pred[:, 1], y_pred[:, 2], self.margin, self.distance_metric
        )


@keras.saving.register_keras_serializable(package="fsl")
class TripletSemiHardLoss(_MarginLoss):
    """Triplet loss with online semi-hard mining (``tfa.losses.TripletSemiHardLoss``).

    ``y_true``: integer labels ``[B]`` or ``[B, 1]``; ``y_pred``: embeddings
    ``[B, D]``. See ``triplet_semihard_loss``. Labels reach the loss cast to
    the loss dtype (float32), so they must be below 2**24 in magnitude.

    Args:
        margin: the margin (>= 0).
        distance_metric: ``"L2"`` (default), ``"squared-L2"``, ``"angular"``
            or a registered callable ``[B, D] -> [B, B]``.
        reduction: Keras reduction (the loss is already a scalar).
        name: name of the loss.
        dtype: dtype of the computation.

    Examples:

    >>> import numpy as np
    >>> x = np.array([[0.0, 0.0], [0.0, 0.1], [1.0, 0.0], [1.0, 0.1]], "float32")
    >>> loss = TripletSemiHardLoss(margin=0.5)
    >>> float(loss(np.array([0, 0, 1, 1]), x))  # max(0.1 - 1.0 + 0.5, 0)
    0.0
    """

    def __init__(
        self,
        margin: float = 1.0,
        distance_metric: Metric = "L2",
        reduction: str = "sum_over_batch_size",
        name: str = "triplet_semihard_loss",
        dtype=None,
    ):
        super().__init__(margin, distance_metric, reduction, name, dtype)

    def call(self, y_true, y_pred):
        return triplet_semihard_loss(y_true, y_pred, self.margin, self.distance_metric)


@keras.saving.register_keras_serializable(package="fsl")
class TripletHardLoss(_MarginLoss):
    """Batch-hard triplet loss (``tfa.losses.TripletHardLoss``).

    ``y_true``: integer labels ``[B]`` or ``[B, 1]``; ``y_pred``: embeddings
    ``[B, D]``. See ``triplet_hard_loss``.

    Args:
        margin: the margin (>= 0).
        soft: soft margin ``log(1 + exp(hp - hn))`` instead of the hinge.
        distance_metric: ``"L2"`` (default), ``"squared-L2"``, ``"angular"``
            or a registered callable.
        reduction: Keras reduction (the loss is already a scalar).
        name: name of the loss.
        dtype: dtype of the computation.
    """

    def __init__(
        self,
        margin: float = 1.0,
        soft: bool = False,
        distance_metric: Metric = "L2",
        reduction: str = "sum_over_batch_size",
        name: str = "triplet_hard_loss",
        dtype=None,
    ):
        super().__init__(margin, distance_metric, reduction, name, dtype)
        self.soft = _validate_soft(soft)

    def call(self, y_true, y_pred):
        return triplet_hard_loss(
            y_true, y_pred, self.margin, self.soft, self.distance_metric
        )

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(soft=self.soft)
        return config


@keras.saving.register_keras_serializable(package="fsl")
class TripletBatchAllLoss(_MarginLoss):
    """Batch-all triplet loss over the active triplets (Hermans et al. 2017).

    ``y_true``: integer labels ``[B]`` or ``[B, 1]``; ``y_pred``: embeddings
    ``[B, D]``. See ``triplet_batch_all_loss``.

    Args:
        margin: the margin (>= 0).
        distance_metric: ``"L2"`` (default), ``"squared-L2"``, ``"angular"``
            or a registered callable.
        reduction: Keras reduction (the loss is already a scalar).
        name: name of the loss.
        dtype: dtype of the computation.
    """

    def __init__(
        self,
        margin: float = 1.0,
        distance_metric: Metric = "L2",
        reduction: str = "sum_over_batch_size",
        name: str = "triplet_batch_all_loss",
        dtype=None,
    ):
        super().__init__(margin, distance_metric, reduction, name, dtype)

    def call(self, y_true, y_pred):
        return triplet_batch_all_loss(
            y_true, y_pred, self.margin, self.distance_metric
        )



@keras.saving.register_keras_serializable(package="fsl")
class LiftedStructLoss(_MarginLoss):
    """Lifted structured loss (``tfa.losses.LiftedStructLoss``).

    ``y_true``: integer labels ``[B]`` or ``[B, 1]``; ``y_pred``: embeddings
    ``[B, D]``. See ``lifted_struct_loss`` (Song et al. 2016).

    Args:
        margin: the margin (>= 0).
        distance_metric: ``"L2"`` (default), ``"squared-L2"``, ``"angular"``
            or a registered callable.
        reduction: Keras reduction (the loss is already a scalar).
        name: name of the loss.
        dtype: dtype of the computation.
    """

    def __init__(
        self,
        margin: float = 1.0,
        distance_metric: Metric = "L2",
        reduction: str = "sum_over_batch_size",
        name: str = "lifted_struct_loss",
        dtype=None,
    ):
        super().__init__(margin, distance_metric, reduction, name, dtype)

    def call(self, y_true, y_pred):
        return lifted_struct_loss(y_true, y_pred, self.margin, self.distance_metric)


@keras.saving.register_keras_serializable(package="fsl")
class NpairsLoss(keras.losses.Loss):
    """N-pairs loss on a similarity matrix (``tfa.losses.NpairsLoss``).

    ``y_true``: integer labels ``[B]``; ``y_pred``: similarities ``[B, B]``
    of anchors to positives. See ``npairs_loss`` (Sohn 2016).

    Args:
        reduction: Keras reduction (the loss is already a scalar).
        name: name of the loss.
        dtype: dtype of the computation.
    """

    def __init__(
        self,
        reduction: str = "sum_over_batch_size",
        name: str = "npairs_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        return npairs_loss(y_true, y_pred)


@keras.saving.register_keras_serializable(package="fsl")
class PairNpairsLoss(keras.losses.Loss):
    """N-pairs loss of (anchor, positive) pairs stacked as ``y_pred = [B, 2, D]``.

    ``y_true``: integer labels ``[B]``, the class of pair ``i`` (one pair per
    class per batch in Sohn's setting; repeated classes share the target).
    See ``npairs_loss_from_embeddings``: ``tf.contrib``'s N-pairs loss with
    its L2 penalty, for a model whose output stacks its two towers.

    Args:
        reg_lambda: weight of the L2 penalty on the embeddings (>= 0).
        reduction: Keras reduction (the loss is already a scalar).
        name: name of the loss.
        dtype: dtype of the computation.
    """

    def __init__(
        self,
        reg_lambda: float = 0.002,
        reduction: str = "sum_over_batch_size",
        name: str = "pair_npairs_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.reg_lambda = _validate_real("reg_lambda", reg_lambda, 0.0)

    def call(self, y_true, y_pred):
        y_pred = _check_stacked(y_pred, 2, "[B, 2, D] (stacked anchors and positives)")
        return npairs_loss_from_embeddings(
            y_true, y_pred[:, 0], y_pred[:, 1], self.reg_lambda
        )

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(reg_lambda=self.reg_lambda)
        return config


@keras.saving.register_keras_serializable(package="fsl")
class NpairsMultilabelLoss(keras.losses.Loss):
    """Multi-label N-pairs loss (``tfa.losses.NpairsMultilabelLoss``).

    ``y_true``: 0/1 indicators ``[B, C]``; ``y_pred``: similarities
    ``[B, B]``. See ``npairs_multilabel_loss``.

    Args:
        reduction: Keras reduction (the loss is already a scalar).
        name: name of the loss.
        dtype: dtype of the computation.
    """

    def __init__(
        self,
        reduction: str = "sum_over_batch_size",
        name: str = "npairs_multilabel_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        return npairs_multilabel_loss(y_true, y_pred)


@keras.saving.register_keras_serializable(package="fsl")
class MultiSimilarityLoss(keras.losses.Loss):
    """Multi-similarity loss (``tensorflow_similarity.losses.MultiSimilarityLoss``).

    ``y_true``: integer labels ``[B]`` or ``[B, 1]``; ``y_pred``: embeddings
    ``[B, D]``. See ``multi_similarity_loss`` (Wang et al. 2019).

    Args:
        alpha: scale of the positive pairs (> 0).
        beta: scale of the negative pairs (> 0).
        epsilon: mining margin (>= 0).
        lmda: the similarity margin.
        center: the distance ``lmda`` is measured from.
        distance_metric: ``"angular"`` (default), ``"L2"``, ``"squared-L2"``
            or a registered callable.
        reduction: Keras reduction (the loss is already a scalar).
        name: name of the loss.
        dtype: dtype of the computation.
    """

    def __init__(
        self,
        alpha: float = 2.0,
        beta: float = 40.0,
        epsilon: float = 0.1,
        lmda: float = 0.5,
        center: float = 1.0,
        distance_metric: Metric = "angular",
        reduction: str = "sum_over_batch_size",
        name: str = "multi_similarity_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.alpha = _validate_real("alpha", alpha, 0.0, low_open=True)
        self.beta = _validate_real("beta", beta, 0.0, low_open=True)
        self.epsilon = _validate_real("epsilon", epsilon, 0.0)
        self.lmda = _validate_real("lmda", lmda)
        self.center = _validate_real("center", center)
        self.distance_metric = _validate_metric(_deserialize_metric(distance_metric))

    def call(self, y_true, y_pred):
        return multi_similarity_loss(
            y_true, y_pred, self.alpha, self.beta, self.epsilon, self.lmda, self.center,
            self.distance_metric,
        )

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            alpha=self.alpha, beta=self.beta, epsilon=self.epsilon, lmda=self.lmda,
            center=self.center, distance_metric=_serialize_metric(self.distance_metric),
        )
        return config


@keras.saving.register_keras_serializable(package="fsl")
class CircleLoss(keras.losses.Loss):
    """Circle loss (``tensorflow_similarity.losses.CircleLoss``).

    ``y_true``: integer labels ``[B]`` or ``[B, 1]``; ``y_pred``: embeddings
    ``[B, D]``. See ``circle_loss`` (Sun et al. 2020).

    Args:
        gamma: the scale (> 0).
        margin: the relaxation (>= 0).
        distance_metric: ``"angular"`` (default), ``"L2"``, ``"squared-L2"``
            or a registered callable.
        reduction: Keras reduction (the loss is already a scalar).
        name: name of the loss.
        dtype: dtype of the computation.
    """

    def __init__(
        self,
        gamma: float = 80.0,
        margin: float = 0.4,
        distance_metric: Metric = "angular",
        reduction: str = "sum_over_batch_size",
        name: str = "circle_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.gamma = _validate_real("gamma", gamma, 0.0, low_open=True)
        self.margin = _validate_margin(margin)
        self.distance_metric = _validate_metric(_deserialize_metric(distance_metric))

    def call(self, y_true, y_pred):
        return circle_loss(y_true, y_pred, self.gamma, self.margin, self.distance_metric)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            gamma=self.gamma, margin=self.margin,
            distance_metric=_serialize_metric(self.distance_metric),
        )
        return config
