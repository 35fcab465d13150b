"""Triplet losses: explicit triplets and online mining over labelled batches.

FaceNet's triplet loss (Schroff, Kalenichenko and Philbin 2015) on stacked
triplets, and the online-mining losses of a labelled batch: semi-hard
(FaceNet, ``tfa.losses.TripletSemiHardLoss``), batch-hard and batch-all
(Hermans, Beyer and Leibe 2017), all in O(B^2) memory through ``fsl.mining``.
"""

from __future__ import annotations

import keras
from keras import ops

from fsl import distances as distances_lib
from fsl import mining
from fsl.losses.base import (
    Metric,
    MetricLoss,
    _check_rank,
    _check_stacked,
    _prepare_batch,
    _to_compute_dtype,
    _validate_margin,
    _validate_metric,
    _validate_soft,
)

__all__ = [
    "triplet_loss",
    "triplet_semihard_loss",
    "triplet_hard_loss",
    "triplet_batch_all_loss",
    "TripletLoss",
    "TripletSemiHardLoss",
    "TripletHardLoss",
    "TripletBatchAllLoss",
]


#: Up to this many positives per anchor per log2(B), the semi-hard and
#: batch-all losses select slot by slot (``fsl.mining.semihard_weights``,
#: ``batch_all_weights``), above it from sorted rows; measured on CPU at
#: B = 4096 (``benchmarks/mining.py``), where the two cost the same at about
#: 2.5 and 5 times log2(B) positives.
_SEMIHARD_SLOTS_PER_LOG2_B = 2.0
_BATCH_ALL_SLOTS_PER_LOG2_B = 4.0

# === Functions ===


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
        Scalar mean loss, in float32 (float64 for float64 input).

    Examples:

    >>> import numpy as np
    >>> a, p, n = (np.array([[x, 0.0]], "float32") for x in (0.0, 1.0, 1.5))
    >>> round(float(triplet_loss(a, p, n, margin=0.5)), 4)  # max(1 - 2.25 + 0.5, 0)
    0.0
    >>> round(float(triplet_loss(a, p, p, margin=0.5)), 4)  # max(1 - 1 + 0.5, 0)
    0.5
    """
    margin = _validate_margin(margin)
    metric = _validate_metric(distance_metric)
    anchor = _to_compute_dtype(_check_rank(anchor, 2, "anchor", "[B, D]"))
    positive = _to_compute_dtype(_check_rank(positive, 2, "positive", "[B, D]"))
    negative = _to_compute_dtype(_check_rank(negative, 2, "negative", "[B, D]"))
    return ops.mean(_triplet_hinge(anchor, positive, negative, margin, metric))


def triplet_semihard_loss(
    y_true, y_pred, margin: float = 1.0, distance_metric: Metric = "L2"
):
    """Triplet loss with online semi-hard negative mining (as ``tfa.losses``).

    For every positive pair ``(a, p)`` of the batch, the negative is the
    closest ``n`` with ``d(a, n) > d(a, p)`` (semi-hard); when there is none,
    the farthest negative of ``a``. The loss is
    ``max(d(a, p) - d(a, n) + margin, 0)`` averaged over all positive pairs.
    Schroff et al. 2015, "FaceNet"; the algorithm of TFA's
    ``triplet_semihard_loss``, in O(B^2) memory: with few positives per
    anchor (P x K batches) one masked arg-min per row and positive slot
    (``fsl.mining.semihard_weights``), else sorted rows.

    Args:
        y_true: integer labels ``[B]`` or ``[B, 1]``.
        y_pred: embeddings ``[B, D]`` (TFA expects them L2-normalised for the
            L2 metrics; not required).
        margin: the margin.
        distance_metric: ``"L2"`` (default), ``"squared-L2"``, ``"angular"``
            or a callable ``[B, D] -> [B, B]``.

    Returns:
        Scalar loss, in float32 (float64 for float64 ``y_pred``); 0 when the batch holds no
        valid triplet.

    Raises:
        ValueError: negative margin, unknown metric, ``y_pred`` not rank 2.
    """
    margin = _validate_margin(margin)
    metric = _validate_metric(distance_metric)
    batch = _prepare_batch(y_true, y_pred, metric)
    distances, positive_mask, negative_mask = batch[:3]
    positive = ops.cast(positive_mask, distances.dtype)
    num_positives = batch.total(ops.sum(positive))

    def by_slots():
        weights, active = mining.semihard_weights(distances, positive_mask, negative_mask,
                                                  margin)
        return ops.sum(distances * weights) + margin * active

    def by_sorting():
        semihard, _ = mining.semihard_negative(distances, negative_mask)
        hinge = ops.maximum(distances - semihard + margin, 0.0)
        return ops.sum(hinge * positive)

    total = ops.cond(mining.few_positives(positive_mask, _SEMIHARD_SLOTS_PER_LOG2_B),
                     by_slots, by_sorting)
    loss = total / ops.maximum(num_positives, 1.0)
    loss = ops.where(batch.has_triplet, loss, ops.zeros_like(loss))
    return loss


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
        Scalar loss in float32 (float64 for float64 ``y_pred``); 0 when the batch holds no valid
        triplet.

    Raises:
        ValueError: negative margin, unknown metric, ``y_pred`` not rank 2.
    """
    margin = _validate_margin(margin)
    soft = _validate_soft(soft)
    metric = _validate_metric(distance_metric)
    batch = _prepare_batch(y_true, y_pred, metric)
    distances, positive_mask, negative_mask = batch[:3]
    hard_positive = mining.hardest_positive(distances, positive_mask)
    hard_negative = mining.hardest_negative(distances, negative_mask)
    if soft:
        per_anchor = ops.softplus(hard_positive - hard_negative)
    else:
        per_anchor = ops.maximum(hard_positive - hard_negative + margin, 0.0)
    loss = ops.sum(per_anchor) / batch.anchors
    loss = ops.where(batch.has_triplet, loss, ops.zeros_like(loss))
    return loss


def triplet_batch_all_loss(
    y_true, y_pred, margin: float = 1.0, distance_metric: Metric = "L2"
):
    """Batch-all triplet loss: mean over the active valid triplets.

    Every valid triplet ``(a, p, n)`` of the batch (``a != p`` same label,
    ``n`` another label) gives ``max(d(a, p) - d(a, n) + margin, 0)``; the loss
    is their mean over the triplets where it is positive (0 when there is
    none). Hermans, Beyer and Leibe 2017, "In Defense of the Triplet Loss for
    Person Re-Identification" ("batch all", averaged over non-zero terms).
    Computed in O(B^2) memory: with few positives per anchor one comparison
    per row and positive slot (``fsl.mining.batch_all_weights``), else
    sorted negatives and prefix sums.

    Args:
        y_true: integer labels ``[B]`` or ``[B, 1]``.
        y_pred: embeddings ``[B, D]``.
        margin: the margin.
        distance_metric: ``"L2"`` (default), ``"squared-L2"``, ``"angular"``
            or a callable ``[B, D] -> [B, B]``.

    Returns:
        Scalar loss in float32 (float64 for float64 ``y_pred``).

    Raises:
        ValueError: negative margin, unknown metric, ``y_pred`` not rank 2.
    """
    margin = _validate_margin(margin)
    metric = _validate_metric(distance_metric)
    batch = _prepare_batch(y_true, y_pred, metric)
    distances, positive_mask, negative_mask = batch[:3]

    def by_slots():
        weights, count = mining.batch_all_weights(distances, positive_mask, negative_mask,
                                                  margin)
        return ops.sum(distances * weights) + margin * count, count

    def by_sorting():
        hinge_sum, active = mining.batch_all_hinge(distances, positive_mask, negative_mask,
                                                   margin)
        return ops.sum(hinge_sum), ops.sum(active)

    total, count = ops.cond(mining.few_positives(positive_mask, _BATCH_ALL_SLOTS_PER_LOG2_B),
                            by_slots, by_sorting)
    count = batch.total(count)
    loss = total / ops.maximum(count, 1.0)
    loss = ops.where(ops.greater(count, 0.0), loss, ops.zeros_like(loss))
    return loss


def _triplet_loss(y_true, y_pred, margin, distance_metric):
    """Per-triplet hinges of ``y_pred = [B, 3, D]``; ``y_true`` is ignored."""
    y_pred = _to_compute_dtype(_check_stacked(y_pred, 3, "[B, 3, D] (anchor, positive, negative)"))
    return _triplet_hinge(y_pred[:, 0], y_pred[:, 1], y_pred[:, 2], margin, distance_metric)


# === Classes ===


@keras.saving.register_keras_serializable(package="fsl")
class TripletLoss(MetricLoss):
    """Triplet loss of explicit triplets stacked as ``y_pred = [B, 3, D]``.

    ``y_pred[:, 0]`` anchors, ``y_pred[:, 1]`` positives, ``y_pred[:, 2]``
    negatives; ``y_true`` is ignored. Per triplet
    ``max(d(a, p) - d(a, n) + margin, 0)``, then the reduction (mean by
    default). Schroff et al. 2015, "FaceNet".

    Args:
        margin: the margin (>= 0), 0.2 by default as in FaceNet.
        distance_metric: ``"squared-L2"`` (default), ``"L2"``, ``"angular"``.
        **kwargs: ``reduction``, ``name``, ``dtype`` (``fsl.losses.MetricLoss``).
    """

    def __init__(self, margin: float = 0.2, distance_metric: Metric = "squared-L2", **kwargs):
        super().__init__(_triplet_loss, margin=margin, distance_metric=distance_metric, **kwargs)


@keras.saving.register_keras_serializable(package="fsl")
class TripletSemiHardLoss(MetricLoss):
    """Triplet loss with online semi-hard mining (``tfa.losses.TripletSemiHardLoss``).

    ``y_true``: integer labels ``[B]`` or ``[B, 1]``; ``y_pred``: embeddings
    ``[B, D]``. See ``triplet_semihard_loss``. Labels reach the loss cast to
    the loss dtype (float32), so they must be below 2**24 in magnitude.

    Args:
        margin: the margin (>= 0).
        distance_metric: ``"L2"`` (default), ``"squared-L2"``, ``"angular"``
            or a registered callable ``[B, D] -> [B, B]``.
        mining: ``"global"`` (default) or ``"replica"``: under data
            parallelism, mine the whole batch or each replica's share
            (``fsl.losses.replicas``).
        **kwargs: ``reduction``, ``name``, ``dtype`` (``fsl.losses.MetricLoss``).

    Examples:

    >>> import numpy as np
    >>> x = np.array([[0.0, 0.0], [0.0, 0.1], [1.0, 0.0], [1.0, 0.1]], "float32")
    >>> loss = TripletSemiHardLoss(margin=0.5)
    >>> float(loss(np.array([0, 0, 1, 1]), x))  # max(0.1 - 1.0 + 0.5, 0)
    0.0
    """

    def __init__(self, margin: float = 1.0, distance_metric: Metric = "L2",
                 mining: str = "global", **kwargs):
        super().__init__(
            triplet_semihard_loss, margin=margin, distance_metric=distance_metric, mining=mining, **kwargs,
        )


@keras.saving.register_keras_serializable(package="fsl")
class TripletHardLoss(MetricLoss):
    """Batch-hard triplet loss (``tfa.losses.TripletHardLoss``).

    ``y_true``: integer labels ``[B]`` or ``[B, 1]``; ``y_pred``: embeddings
    ``[B, D]``. See ``triplet_hard_loss``.

    Args:
        margin: the margin (>= 0).
        soft: soft margin ``log(1 + exp(hp - hn))`` instead of the hinge.
        distance_metric: ``"L2"`` (default), ``"squared-L2"``, ``"angular"``
            or a registered callable.
        mining: ``"global"`` (default) or ``"replica"``: under data
            parallelism, mine the whole batch or each replica's share
            (``fsl.losses.replicas``).
        **kwargs: ``reduction``, ``name``, ``dtype`` (``fsl.losses.MetricLoss``).
    """

    def __init__(
        self,
        margin: float = 1.0,
        soft: bool = False,
        distance_metric: Metric = "L2",
        mining: str = "global",
        **kwargs,
    ):
        super().__init__(
            triplet_hard_loss, margin=margin, soft=soft, distance_metric=distance_metric,
            mining=mining, **kwargs,
        )


@keras.saving.register_keras_serializable(package="fsl")
class TripletBatchAllLoss(MetricLoss):
    """Batch-all triplet loss over the active triplets (Hermans et al. 2017).

    ``y_true``: integer labels ``[B]`` or ``[B, 1]``; ``y_pred``: embeddings
    ``[B, D]``. See ``triplet_batch_all_loss``.

    Args:
        margin: the margin (>= 0).
        distance_metric: ``"L2"`` (default), ``"squared-L2"``, ``"angular"``
            or a registered callable.
        mining: ``"global"`` (default) or ``"replica"``: under data
            parallelism, mine the whole batch or each replica's share
            (``fsl.losses.replicas``).
        **kwargs: ``reduction``, ``name``, ``dtype`` (``fsl.losses.MetricLoss``).
    """

    def __init__(self, margin: float = 1.0, distance_metric: Metric = "L2",
                 mining: str = "global", **kwargs):
        super().__init__(
            triplet_batch_all_loss, margin=margin, distance_metric=distance_metric, mining=mining, **kwargs,
        )
