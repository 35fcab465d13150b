"""Facial landmark and attribute metrics for the MTFL multitask model.

Landmarks are arrays ``[N, 10]`` in the MTFL order ``x1..x5, y1..y5`` for
(1) left eye, (2) right eye, (3) nose tip, (4) left mouth corner, (5) right
mouth corner, as ``fsl.data.mtfl`` yields them. The error of a landmark is
the Euclidean distance between prediction and target, divided by the
inter-ocular distance of the TARGET (distance between landmarks 1 and 2), so
the metric does not depend on the face size. Give both arrays in the same
coordinates: pixels, or coordinates normalised by one common scale (for
coordinates normalised by width and height separately the images must be
square).

Reference: Zhang, Luo, Loy and Tang, 2014. "Facial Landmark Detection by Deep
Multi-task Learning" (TCDCN): mean error normalised by the inter-ocular
distance, and failure rate = fraction of images with mean error > 10%.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


def _as_landmarks(values, name: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a [N, 10] array of numbers. Received: "
                         f"{name}={values!r}") from error
    if array.ndim != 2 or array.shape[1] != 10 or array.shape[0] == 0:
        raise ValueError(
            f"{name} must have shape [N, 10] (x1..x5, y1..y5) with N >= 1. "
            f"Received: {name} with shape {array.shape}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite. Received: {name} with NaN/inf values")
    return array


def _errors(pred, target) -> np.ndarray:
    """``[N, 5]`` landmark errors normalised by the target inter-ocular distance."""
    pred = _as_landmarks(pred, "pred")
    target = _as_landmarks(target, "target")
    if pred.shape != target.shape:
        raise ValueError(
            "pred and target must have the same shape. Received: "
            f"pred.shape={pred.shape}, target.shape={target.shape}"
        )
    pred_xy = np.stack([pred[:, :5], pred[:, 5:]], axis=-1)  # [N, 5, 2]
    target_xy = np.stack([target[:, :5], target[:, 5:]], axis=-1)
    inter_ocular = np.linalg.norm(target_xy[:, 0] - target_xy[:, 1], axis=-1)
    bad = np.flatnonzero(inter_ocular <= 0.0)
    if len(bad):
        raise ValueError(
            "Every target face needs distinct eye landmarks (inter-ocular "
            f"distance > 0). Received: zero inter-ocular distance for target rows "
            f"{bad[:5].tolist()}"
        )
    return np.linalg.norm(pred_xy - target_xy, axis=-1) / inter_ocular[:, None]


def normalized_mean_error(pred, target) -> tuple[np.ndarray, float]:
    """Mean landmark error per image, normalised by the inter-ocular distance.

    For image ``n``: ``NME_n = (1/5) * sum_j ||p_nj - t_nj|| / ||t_n1 - t_n2||``.

    Args:
        pred: array-like ``[N, 10]`` predicted landmarks ``x1..x5, y1..y5``.
        target: array-like ``[N, 10]`` true landmarks, same order.

    Returns:
        ``(per_image, mean)``: float64 ``[N]`` NME per image and their mean.

    Raises:
        ValueError: shapes other than ``[N, 10]``, mismatched shapes, non-finite
            values, or a target with both eyes at the same point.

    Examples:

    >>> target = [[0, 10, 5, 2, 8, 0, 0, 5, 9, 9]]      # eyes 10 apart
    >>> pred = [[1, 10, 5, 2, 8, 0, 0, 5, 9, 9]]        # left eye 1 off
    >>> per_image, mean = normalized_mean_error(pred, target)
    >>> round(mean, 6)
    0.02
    """
    errors = _errors(pred, target)
    per_image = errors.mean(axis=1)
    return per_image, float(per_image.mean())


def failure_rate(pred, target, threshold: float = 0.10) -> float:
    """Fraction of images whose normalised mean error exceeds ``threshold``.

    Args:
        pred: array-like ``[N, 10]`` predicted landmarks.
        target: array-like ``[N, 10]`` true landmarks.
        threshold: failure threshold on the per-image NME (TCDCN uses 0.10).

    Returns:
        Failure rate in ``[0, 1]``.
    """
    threshold = float(threshold)
    if not threshold > 0.0:
        raise ValueError(f"threshold must be > 0. Received: threshold={threshold}")
    per_image, _ = normalized_mean_error(pred, target)
    return float(np.mean(per_image > threshold))


def _as_predicted_labels(values, n: int, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim == 2:
        if array.shape[1] == 1:
            array = array[:, 0]
        else:
            return np.argmax(array, axis=1)  # probabilities or logits [N, C]
    if array.ndim != 1:
        raise ValueError(
            f"predictions for {name} must be [N] labels, [N] probabilities of "
            f"class 1 or [N, C] scores. Received: shape {array.shape}"
        )
    if len(array) != n:
        raise ValueError(
            f"predictions and targets for {name} must have the same length. "
            f"Received: {len(array)} predictions, {n} targets"
        )
    if np.issubdtype(array.dtype, np.floating) and np.any(array != np.round(array)):
        if np.any((array < 0.0) | (array > 1.0)):
            raise ValueError(
                f"1-D float predictions for {name} must be labels or probabilities "
                f"of class 1 in [0, 1]. Received: values in "
                f"[{array.min()}, {array.max()}]"
            )
        return (array >= 0.5).astype(np.int64)
    return array.astype(np.int64)


def attribute_accuracy(pred, target) -> dict:
    """Classification accuracy of each face attribute.

    Args:
        pred: a mapping ``{name: predictions}`` (e.g. the MTFL model outputs
            ``gender``, ``smile``, ``glasses``, ``pose``) or a sequence with one
            entry per attribute. Each entry is ``[N]`` integer labels, ``[N]``
            probabilities of class 1 (binary attributes, cut at 0.5), or
            ``[N, C]`` probabilities / logits (arg-max taken).
        target: the same structure with ``[N]`` integer labels; a mapping's
            keys must all be in ``pred``. A 2-D array ``[N, A]`` of labels is
            read as ``A`` attributes (then ``pred`` is ``[N, A]`` labels or a
            sequence of ``A`` entries).

    Returns:
        ``{name_or_index: accuracy}``.

    Raises:
        ValueError: missing attributes, length mismatches, bad shapes.

    Examples:

    >>> attribute_accuracy({"smile": [[0.9, 0.1], [0.2, 0.8]]}, {"smile": [0, 0]})
    {'smile': 0.5}
    """
    if isinstance(target, Mapping):
        if not isinstance(pred, Mapping):
            raise ValueError(
                "target is a mapping of attributes, so pred must be one too. "
                f"Received: pred of type {type(pred).__name__}"
            )
        missing = [key for key in target if key not in pred]
        if missing:
            raise ValueError(
                f"pred lacks the attributes {missing}. Received: pred keys "
                f"{sorted(map(str, pred))}"
            )
        keys = list(target)
        targets = [target[key] for key in keys]
        preds = [pred[key] for key in keys]
    else:
        target_array = np.asarray(target) if not isinstance(target, (list, tuple)) \
            else None
        if target_array is not None and target_array.ndim == 2:
            targets = list(target_array.T)
            pred_array = np.asarray(pred) if not isinstance(pred, (list, tuple)) else None
            preds = list(pred_array.T) if pred_array is not None else list(pred)
        elif target_array is not None and target_array.ndim == 1:
            targets, preds = [target_array], [pred]
        else:
            targets, preds = list(target), list(pred)
        if len(preds) != len(targets):
            raise ValueError(
                "pred and target must have the same number of attributes. Received: "
                f"{len(preds)} and {len(targets)}"
            )
        keys = list(range(len(targets)))
    result = {}
    for key, p, t in zip(keys, preds, targets):
        labels = np.asarray(t)
        if labels.ndim != 1 or len(labels) == 0:
            raise ValueError(
                f"targets for {key!r} must be non-empty [N] labels. Received: shape "
                f"{labels.shape}"
            )
        predicted = _as_predicted_labels(p, len(labels), repr(key))
        result[key] = float(np.mean(predicted == labels))
    return result


def landmark_report(pred_landmarks, target_landmarks, pred_attributes=None,
                    target_attributes=None, threshold: float = 0.10) -> dict:
    """All landmark (and optionally attribute) metrics in one dict.

    Args:
        pred_landmarks: array-like ``[N, 10]``.
        target_landmarks: array-like ``[N, 10]``.
        pred_attributes: optional, as ``attribute_accuracy``'s ``pred``.
        target_attributes: optional, as ``attribute_accuracy``'s ``target``.
        threshold: failure threshold on the per-image NME.

    Returns:
        ``{"mean_error": float, "failure_rate": float, "per_landmark_error":
        {left_eye, right_eye, nose, mouth_left, mouth_right: float},
        "n_images": int}`` plus ``"attribute_accuracy": {...}`` when attributes
        are given. Plain JSON values.
    """
    if (pred_attributes is None) != (target_attributes is None):
        raise ValueError(
            "pred_attributes and target_attributes must be given together. "
            f"Received: pred_attributes is "
            f"{'None' if pred_attributes is None else 'given'}, target_attributes is "
            f"{'None' if target_attributes is None else 'given'}"
        )
    errors = _errors(pred_landmarks, target_landmarks)
    per_image = errors.mean(axis=1)
    threshold = float(threshold)
    if not threshold > 0.0:
        raise ValueError(f"threshold must be > 0. Received: threshold={threshold}")
    report = {
        "mean_error": float(per_image.mean()),
        "failure_rate": float(np.mean(per_image > threshold)),
        "per_landmark_error": {
            name: float(value) for name, value in zip(LANDMARK_NAMES, errors.mean(axis=0))
        },
        "n_images": int(len(per_image)),
    }
    if pred_attributes is not None:
        report["attribute_accuracy"] = attribute_accuracy(pred_attributes,
                                                          target_attributes)
    return report
