"""Pair-weighting losses: multi-similarity and circle.

The multi-similarity loss (Wang et al. 2019) and the circle loss (Sun et al.
2020) as TF Similarity 0.17 computes them (Keras 2 only there), checked
against its values and gradients. Their default ``"angular"`` distance is TF
Similarity's ``"cosine"`` on L2-normalised embeddings.
"""

from __future__ import annotations

import keras
from keras import ops

from fsl import mining
from fsl.losses.base import (
    Metric,
    MetricLoss,
    _masked_logsumexp,
    _prepare_batch,
    _validate_margin,
    _validate_metric,
    _validate_real,
)

__all__ = [
    "multi_similarity_loss",
    "circle_loss",
    "MultiSimilarityLoss",
    "CircleLoss",
]


# === Functions ===


def _log1p_sum_exp(values, mask):
    """``(log(1 + sum(exp(values))), has)`` of each row over ``mask`` (0 for
    an empty row; ``has``: the row's mask is not empty)."""
    lse, has = _masked_logsumexp(values, mask)
    return ops.logaddexp(ops.zeros_like(lse), lse), has


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
        Scalar loss in float32 (float64 for float64 ``y_pred``); 0 when no anchor has both a
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
    batch = _prepare_batch(y_true, y_pred, metric)
    distances, positive_mask, negative_mask = batch[:3]
    closest_negative = mining.masked_minimum(distances, negative_mask, keepdims=True)
    farthest_positive = mining.masked_maximum(distances, positive_mask, keepdims=True)
    positives = ops.logical_and(
        positive_mask, ops.greater(distances, closest_negative - epsilon)
    )
    negatives = ops.logical_and(
        negative_mask, ops.less(distances, farthest_positive + epsilon)
    )
    shifted = distances + (lmda - center)
    positive_term, has_positive = _log1p_sum_exp(alpha * shifted, positives)
    negative_term, has_negative = _log1p_sum_exp(-beta * shifted, negatives)
    per_anchor = positive_term / alpha + negative_term / beta
    valid = ops.logical_and(has_positive, has_negative)
    loss = ops.sum(ops.where(valid, per_anchor, 0.0)) / batch.anchors
    return loss


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
        Scalar loss in float32 (float64 for float64 ``y_pred``); 0 when no anchor has both a
        positive and a negative.

    Raises:
        ValueError: a parameter out of range, unknown metric, ``y_pred`` not
            rank 2.
    """
    gamma = _validate_real("gamma", gamma, 0.0, low_open=True)
    margin = _validate_margin(margin)
    metric = _validate_metric(distance_metric)
    batch = _prepare_batch(y_true, y_pred, metric)
    distances, positive_mask, negative_mask = batch[:3]
    positive_weight = ops.maximum(margin + distances, 0.0)
    negative_weight = ops.maximum(1.0 + margin - distances, 0.0)
    positive_term, has_positive = _log1p_sum_exp(
        -gamma * positive_weight * (margin - distances), positive_mask)
    negative_term, has_negative = _log1p_sum_exp(
        gamma * negative_weight * (1.0 - margin - distances), negative_mask)
    valid = ops.logical_and(has_positive, has_negative)
    loss = ops.sum(ops.where(valid, positive_term + negative_term, 0.0)) / batch.anchors
    return loss


# === Classes ===


@keras.saving.register_keras_serializable(package="fsl")
class MultiSimilarityLoss(MetricLoss):
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
        mining: ``"global"`` (default) or ``"replica"``: under data
            parallelism, mine the whole batch or each replica's share
            (``fsl.losses.replicas``).
        **kwargs: ``reduction``, ``name``, ``dtype`` (``fsl.losses.MetricLoss``).
    """

    def __init__(
        self,
        alpha: float = 2.0,
        beta: float = 40.0,
        epsilon: float = 0.1,
        lmda: float = 0.5,
        center: float = 1.0,
        distance_metric: Metric = "angular",
        mining: str = "global",
        **kwargs,
    ):
        super().__init__(
            multi_similarity_loss, alpha=alpha, beta=beta, epsilon=epsilon, lmda=lmda,
            center=center, distance_metric=distance_metric, mining=mining, **kwargs,
        )


@keras.saving.register_keras_serializable(package="fsl")
class CircleLoss(MetricLoss):
    """Circle loss (``tensorflow_similarity.losses.CircleLoss``).

    ``y_true``: integer labels ``[B]`` or ``[B, 1]``; ``y_pred``: embeddings
    ``[B, D]``. See ``circle_loss`` (Sun et al. 2020).

    Args:
        gamma: the scale (> 0).
        margin: the relaxation (>= 0).
        distance_metric: ``"angular"`` (default), ``"L2"``, ``"squared-L2"``
            or a registered callable.
        mining: ``"global"`` (default) or ``"replica"``: under data
            parallelism, mine the whole batch or each replica's share
            (``fsl.losses.replicas``).
        **kwargs: ``reduction``, ``name``, ``dtype`` (``fsl.losses.MetricLoss``).
    """

    def __init__(
        self,
        gamma: float = 80.0,
        margin: float = 0.4,
        distance_metric: Metric = "angular",
        mining: str = "global",
        **kwargs,
    ):
        super().__init__(
            circle_loss, gamma=gamma, margin=margin, distance_metric=distance_metric, mining=mining, **kwargs,
        )
