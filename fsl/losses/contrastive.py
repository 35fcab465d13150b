"""Contrastive losses of pairs (Hadsell, Chopra and LeCun 2006).

Convention, everywhere in ``fsl``: ``y_true = 1`` means the pair is the SAME
identity, ``0`` DIFFERENT; a distance is smaller for more similar pairs.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from fsl import distances as distances_lib
from fsl.losses.base import (
    Metric,
    MetricLoss,
    _check_rank,
    _check_stacked,
    _concrete,
    _match_rank,
    _to_compute_dtype,
    _validate_margin,
    _validate_metric,
)

__all__ = [
    "contrastive_loss",
    "contrastive_loss_from_embeddings",
    "ContrastiveLoss",
    "PairContrastiveLoss",
]


# === Functions ===


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
        Per-pair losses, the shape of ``y_pred``, in float32 (float64 for
        float64 distances): 16-bit distances are widened first, so a far
        different pair gives 0, not ``inf * 0``.

    Raises:
        ValueError: if ``margin < 0``.

    Examples:

    >>> import numpy as np
    >>> loss = contrastive_loss(np.array([1.0, 0.0]), np.array([0.5, 0.25]))
    >>> np.asarray(loss).tolist()
    [0.25, 0.5625]
    """
    margin = _validate_margin(margin)
    y_pred = _to_compute_dtype(y_pred)
    y_true = ops.convert_to_tensor(y_true)
    labels = _concrete(y_true)
    if labels is not None and not np.all(np.isin(labels, (0, 1))):
        odd = sorted(set(np.unique(labels).tolist()) - {0, 1})[:5]
        raise ValueError("y_true must be 1 (same) or 0 (different) for each pair. Received: "
                         f"y_true with values {odd}")
    y_true = ops.cast(y_true, y_pred.dtype)
    y_true, y_pred = _match_rank(y_true, y_pred)
    if y_true.shape != y_pred.shape and None not in (*y_true.shape, *y_pred.shape):
        raise ValueError("y_true and y_pred must have one value per pair. Received: "
                         f"y_true.shape={tuple(y_true.shape)}, y_pred.shape={tuple(y_pred.shape)}")
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
    a = _to_compute_dtype(_check_rank(a, 2, "a", "[B, D]"))
    b = _to_compute_dtype(_check_rank(b, 2, "b", "[B, D]"))
    distance = distances_lib.get_paired(metric)(a, b)
    return contrastive_loss(y_true, distance, margin)


def _pair_contrastive_loss(y_true, y_pred, margin, distance_metric):
    y_pred = _check_stacked(y_pred, 2, "[B, 2, D] (stacked pairs)")
    return contrastive_loss_from_embeddings(
        y_true, y_pred[:, 0], y_pred[:, 1], margin, distance_metric
    )


# === Classes ===


@keras.saving.register_keras_serializable(package="fsl")
class ContrastiveLoss(MetricLoss):
    """Contrastive loss of pairs from their distances (``tfa.losses.ContrastiveLoss``).

    ``y_true = 1`` SAME, ``0`` DIFFERENT; ``y_pred`` is a DISTANCE. Per pair
    ``y * d^2 + (1 - y) * max(margin - d, 0)^2``, then the reduction (mean by
    default). Hadsell, Chopra and LeCun 2006.

    Args:
        margin: distance beyond which a different pair costs nothing (>= 0).
        **kwargs: ``reduction``, ``name``, ``dtype`` (``fsl.losses.MetricLoss``).

    Examples:

    >>> import numpy as np
    >>> loss = ContrastiveLoss(margin=1.0)
    >>> float(loss(np.array([1.0, 0.0]), np.array([0.5, 0.25])))
    0.40625
    """

    def __init__(self, margin: float = 1.0, **kwargs):
        super().__init__(contrastive_loss, margin=margin, **kwargs)


@keras.saving.register_keras_serializable(package="fsl")
class PairContrastiveLoss(MetricLoss):
    """Contrastive loss of pairs given as stacked embeddings ``[B, 2, D]``.

    ``y_pred[:, 0]`` and ``y_pred[:, 1]`` are the two embeddings of each pair
    (e.g. the output of a siamese model that stacks its two towers);
    ``y_true`` is 1 for SAME, 0 for DIFFERENT.

    Args:
        margin: margin of the different pairs (>= 0).
        distance_metric: ``"L2"`` (default), ``"squared-L2"`` or ``"angular"``.
        **kwargs: ``reduction``, ``name``, ``dtype`` (``fsl.losses.MetricLoss``).
    """

    def __init__(self, margin: float = 1.0, distance_metric: Metric = "L2", **kwargs):
        super().__init__(
            _pair_contrastive_loss, margin=margin, distance_metric=distance_metric, **kwargs,
        )
