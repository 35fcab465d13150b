"""The base of every ``fsl`` loss: a pure function plus its validated options.

``MetricLoss`` is ``fsl``'s ``LossFunctionWrapper`` (keras) / ``MetricLoss``
(TF Similarity): a loss class names the pure function that does the math and
the plain-value options it passes to it; ``call`` and ``get_config`` are
written once, here, and every option is validated when the loss is built, with
an error that names the value received.

The helpers below are shared by the loss modules of this package: argument
validators, shape checks, and the float32 compute dtype: every loss computes
in float32 whatever its 16-bit input (``_to_compute_dtype``) and returns a
float32 loss, as Keras does under mixed precision.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import keras
import numpy as np
from keras import ops
from keras.src.losses.loss import reduce_weighted_values  # what Loss.__call__ applies

from fsl import distances as distances_lib
from fsl import mining
from fsl._checks import check_real
from fsl.losses.replicas import check_mining, global_replicas, mine

Metric = str | Callable[..., Any]

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
    return check_real(name, value, low, low_open)


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
    """``x`` in float32 if it is 16-bit (or not float), else as it is.

    The losses compute in float32 (float64 input stays float64) and return
    that dtype: a 16-bit result would overflow to inf above 65504 (float16)
    where the loss is finite, as Keras keeps losses in float32 under its
    mixed-precision policies."""
    x = ops.convert_to_tensor(x)
    dtype = keras.backend.standardize_dtype(x.dtype)
    if dtype in _LOW_PRECISION or "float" not in dtype:
        return ops.cast(x, "float32")
    return x


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


def _validate_option(key: str, value: Any) -> Any:
    """Validate one loss option by its name (see ``_VALIDATORS``)."""
    if key not in _VALIDATORS:
        raise TypeError(f"Unexpected keyword argument {key!r} for a fsl loss. "
                        f"Received: {key}={value!r}")
    return _VALIDATORS[key](value)


_VALIDATORS: dict[str, Callable[[Any], Any]] = {
    "margin": _validate_margin,
    "distance_metric": lambda value: _validate_metric(_deserialize_metric(value)),
    "soft": _validate_soft,
    "reg_lambda": lambda value: _validate_real("reg_lambda", value, 0.0),
    "alpha": lambda value: _validate_real("alpha", value, 0.0, low_open=True),
    "beta": lambda value: _validate_real("beta", value, 0.0, low_open=True),
    "epsilon": lambda value: _validate_real("epsilon", value, 0.0),
    "lmda": lambda value: _validate_real("lmda", value),
    "center": lambda value: _validate_real("center", value),
    "gamma": lambda value: _validate_real("gamma", value, 0.0, low_open=True),
}


# === Shared computation ===


def _concrete(x) -> np.ndarray | None:
    """``x`` as numpy when it has values now (eager), ``None`` inside a traced
    function (``tf.function``, ``jax.jit``), where only shapes are known."""
    try:
        return np.asarray(ops.convert_to_numpy(x))
    except Exception:  # noqa: BLE001 - a symbolic tensor or tracer
        return None


def _check_finite(name: str, x) -> None:
    """Eagerly, NaN or inf in ``x`` is an error naming how many values."""
    values = _concrete(x)
    if values is not None and values.dtype.kind in "fc" and not np.all(np.isfinite(values)):
        bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
        raise ValueError(f"{name} holds {bad} NaN or infinite value(s); a loss of them "
                         f"means nothing. Received: {name} with shape {tuple(values.shape)}")


def _check_batch(y_true, y_pred) -> None:
    """Labels and embeddings of one batch: the same batch size (no broadcast)."""
    n_true = y_true.shape[0] if len(y_true.shape) else None
    n_pred = y_pred.shape[0] if len(y_pred.shape) else None
    if n_true is not None and n_pred is not None and n_true != n_pred:
        raise ValueError(
            "y_true and y_pred must hold the same batch. Received: "
            f"y_true.shape={tuple(y_true.shape)}, y_pred.shape={tuple(y_pred.shape)}")


class _Batch(NamedTuple):
    """What a mining loss mines: its anchors' rows against every candidate.

    On one device (or per replica) anchors and candidates are the batch, and
    ``total`` and ``gather`` are identities. In global mining across
    ``tf.distribute`` replicas (``fsl.losses.replicas``) the anchors are the
    replica's rows, the candidates the gathered global batch; ``total`` sums
    a count over the replicas and ``gather`` concatenates a per-anchor value
    of every replica.
    """

    distances: Any  # [A, C]
    positive_mask: Any  # [A, C]
    negative_mask: Any  # [A, C]
    has_triplet: Any  # scalar: some positive pair and some negative, globally
    anchors: Any  # the global number of anchors (float)
    total: Callable[[Any], Any]
    gather: Callable[[Any], Any]


def _identity(x):
    return x


def _prepare_batch(y_true, y_pred, distance_metric) -> _Batch:
    y_pred = _check_rank(y_pred, 2, "y_pred", "[B, D] (embeddings)")
    y_true = ops.convert_to_tensor(y_true)
    _check_batch(y_true, y_pred)
    _check_finite("y_true", y_true)
    _check_finite("y_pred", y_pred)
    embeddings = _to_compute_dtype(y_pred)
    replicas = global_replicas()
    if replicas is None:
        positive_mask, negative_mask = mining.build_masks(y_true)
        distances = distances_lib.pairwise_distances(embeddings, distance_metric)
        has_triplet = ops.logical_and(ops.any(positive_mask), ops.any(negative_mask))
        anchors = ops.cast(ops.shape(distances)[0], distances.dtype)
        return _Batch(distances, positive_mask, negative_mask, has_triplet, anchors,
                      _identity, _identity)
    labels = mining.flat_labels(y_true)
    all_embeddings, all_labels = replicas.gather(embeddings), replicas.gather(labels)
    rows = ops.shape(embeddings)[0]
    own = ops.expand_dims(ops.arange(rows, dtype="int32") + replicas.offset(rows), 1)
    is_self = ops.equal(own, ops.expand_dims(ops.arange(ops.shape(all_labels)[0],
                                                        dtype="int32"), 0))
    if callable(distance_metric):  # [C, D] -> [C, C]: the own rows of the whole matrix
        distances = ops.take(distance_metric(all_embeddings), own[:, 0], axis=0)
    else:
        distances = distances_lib.cross_distances(embeddings, all_embeddings, distance_metric)
    distances = ops.where(is_self, ops.zeros_like(distances), distances)
    same = ops.equal(ops.expand_dims(labels, 1), ops.expand_dims(all_labels, 0))
    positive_mask = ops.logical_and(same, ops.logical_not(is_self))
    negative_mask = ops.logical_not(same)
    counts = replicas.total(ops.stack([ops.sum(ops.cast(positive_mask, "float32")),
                                       ops.sum(ops.cast(negative_mask, "float32"))]))
    has_triplet = ops.logical_and(ops.greater(counts[0], 0.0), ops.greater(counts[1], 0.0))
    anchors = ops.cast(ops.shape(all_labels)[0], distances.dtype)
    return _Batch(distances, positive_mask, negative_mask, has_triplet, anchors,
                  replicas.total, replicas.gather)


def _masked_logsumexp(values, mask):
    """``log(sum(exp(values)))`` of each row over ``mask``; ``(lse [B], has [B])``.

    A row with an empty mask gets a large finite negative value (standing for
    ``-inf``) so that ``logaddexp`` with it returns the other side and nothing
    downstream meets ``log(0)``; ``has`` tells which rows are real.
    """
    mask = ops.cast(mask, "bool")
    # The shift is the row's masked maximum (an unmasked one would let a large
    # masked-out value underflow every kept term); -inf marks an empty row. It
    # cancels out of the value, so its gradient is exactly 0: stop_gradient
    # saves a backward pass.
    row_max = ops.stop_gradient(
        ops.max(ops.where(mask, values, float("-inf")), axis=1, keepdims=True))
    has = ops.greater(ops.squeeze(row_max, axis=1), float("-inf"))
    # Masked-out entries are replaced before exp (by a value whose exp is 0),
    # not zeroed after: exp of a large masked value would be inf, and
    # where()'s gradient 0 * inf is NaN.
    total = ops.sum(ops.exp(ops.where(mask, values - row_max, -1e4)), axis=1)
    lse = ops.squeeze(row_max, axis=1) + ops.log(ops.where(has, total, 1.0))
    return ops.where(has, lse, -1e30), has


# === Base class ===


class MetricLoss(keras.losses.Loss):
    """A ``keras.losses.Loss`` computed by ``fn(y_true, y_pred, **options)``.

    Subclasses pass their pure function and their options (plain values:
    numbers, bools, metric names); each option is validated on construction,
    stored as an attribute of the same name and written to ``get_config``, so
    a subclass is its ``__init__`` alone.

    Args:
        fn: ``fn(y_true, y_pred, **options)`` returning the loss (a scalar,
            or per-example values that the reduction averages).
        name: name of the loss; default the function's name (without a
            leading underscore).
        reduction: Keras reduction, ``"sum_over_batch_size"`` by default.
        dtype: dtype of the computation (Keras default when ``None``).
        mining: for the losses that mine their batch, ``"global"`` or
            ``"replica"``: under data parallelism, mine the whole batch or
            each replica's share (``fsl.losses.replicas``); ``None`` for the
            others.
        **options: the options of ``fn``, each one a key of the validators
            (``margin``, ``distance_metric``, ``soft``, ``reg_lambda``,
            ``alpha``, ``beta``, ``epsilon``, ``lmda``, ``center``, ``gamma``).

    Raises:
        ValueError, TypeError: an option out of its range, naming the value.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        name: str | None = None,
        reduction: str = "sum_over_batch_size",
        dtype=None,
        mining: str | None = None,
        **options: Any,
    ):
        name = fn.__name__.lstrip("_") if name is None else name
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.fn = fn
        self.mining = None if mining is None else check_mining(mining)
        self._option_names = tuple(options)
        for key, value in options.items():
            setattr(self, key, _validate_option(key, value))

    def __call__(self, y_true, y_pred, sample_weight=None):
        """``keras.losses.Loss.__call__``, except that integer labels keep their
        dtype: Keras casts ``y_true`` to the loss dtype, which would merge class
        ids above 2**24 in float32 (2**11 in float16, 2**8 in bfloat16)."""
        y_true = ops.convert_to_tensor(y_true)
        if "int" not in keras.backend.standardize_dtype(y_true.dtype):
            return super().__call__(y_true, y_pred, sample_weight)
        with keras.name_scope(self.name):
            y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
            return reduce_weighted_values(
                self.call(y_true, y_pred), sample_weight=sample_weight,
                reduction=self.reduction, dtype=self.dtype)

    def call(self, y_true, y_pred):
        options = {key: getattr(self, key) for key in self._option_names}
        if self.mining is None:
            loss = self.fn(y_true, y_pred, **options)
        else:
            loss = mine(self.fn, y_true, y_pred, options, self.mining)
        # Inside fit, NaN or inf in the embeddings or in float labels makes the
        # loss NaN (so that keras.callbacks.TerminateOnNaN stops the run)
        # instead of a finite value some distance metrics would give, or NaN
        # labels each counted as a class of their own; eagerly it is an error.
        finite = ops.all(ops.isfinite(ops.convert_to_tensor(y_pred)))
        y_true = ops.convert_to_tensor(y_true)
        if "float" in keras.backend.standardize_dtype(y_true.dtype):
            finite = ops.logical_and(finite, ops.all(ops.isfinite(y_true)))
        return ops.where(finite, loss, ops.full_like(loss, float("nan")))

    def get_config(self) -> dict:
        config = super().get_config()
        if self.mining is not None:
            config["mining"] = self.mining
        for key in self._option_names:
            value = getattr(self, key)
            config[key] = _serialize_metric(value) if key == "distance_metric" else value
        return config
