"""Distances between embeddings, by name, with safe numerics.

Two shapes of question are answered here:

* ``pairwise_distances(embeddings, metric)``: the ``[B, B]`` matrix of
  distances between every pair of rows of one batch (used by online mining).
* ``paired_distances(a, b, metric)``: the ``[B]`` vector of distances between
  row ``i`` of ``a`` and row ``i`` of ``b`` (used by siamese pairs and explicit
  triplets).

A metric is named by a string (``"L2"``, ``"squared-L2"``, ``"angular"``, and
a few aliases) or given as a callable. Names keep Keras configs plain JSON;
``get`` resolves them. The definitions follow TensorFlow Addons'
``metric_learning`` module, so that the triplet losses reproduce its numbers:

* ``"L2"``: Euclidean distance ``||a - b||``.
* ``"squared-L2"``: ``||a - b||^2``.
* ``"angular"``: cosine distance ``1 - cos(a, b)`` in ``[0, 2]``, computed on
  L2-normalised rows.

Safety: the square root never sees zero in the backward pass. Where a squared
distance is ``<= 0`` (the diagonal, duplicate rows, round-off) the distance is
exactly ``0`` and its gradient is ``0`` (the "double where" trick), instead of
the ``inf * 0 = NaN`` a plain ``sqrt`` gives.

All functions use ``keras.ops`` only and run on every Keras backend.
"""

from __future__ import annotations

from collections.abc import Callable

from keras import ops

DistanceFn = Callable[..., object]
Metric = str | DistanceFn

# tf.math.l2_normalize's epsilon, so "angular" matches TensorFlow Addons.
_L2_NORMALIZE_EPSILON = 1e-12


def _safe_sqrt(squared):
    """``sqrt`` that is exactly 0, with gradient 0, where ``squared <= 0``."""
    positive = ops.greater(squared, 0.0)
    safe = ops.where(positive, squared, ops.ones_like(squared))
    return ops.where(positive, ops.sqrt(safe), ops.zeros_like(squared))


def l2_normalize(x, axis: int = -1, epsilon: float = _L2_NORMALIZE_EPSILON):
    """Scale rows to unit L2 norm, as ``tf.math.l2_normalize`` does.

    Args:
        x: tensor of any rank.
        axis: axis along which to normalise.
        epsilon: lower bound on the squared norm; an all-zero row stays zero
            instead of becoming NaN.

    Returns:
        ``x / sqrt(max(sum(x ** 2, axis), epsilon))``.
    """
    square_sum = ops.sum(ops.square(x), axis=axis, keepdims=True)
    return x * ops.rsqrt(ops.maximum(square_sum, epsilon))


def _zero_diagonal(matrix):
    return ops.where(ops.eye(ops.shape(matrix)[0], dtype="bool"), 0.0, matrix)


def _cross_squared_euclidean(a, b):
    """``|a_i|^2 - 2 a_i.b_j + |b_j|^2`` clamped at 0, ``[A, D], [B, D] -> [A, B]``."""
    dot = ops.matmul(a, ops.transpose(b))
    squared = (
        ops.expand_dims(ops.sum(ops.square(b), axis=1), 0)
        - 2.0 * dot
        + ops.expand_dims(ops.sum(ops.square(a), axis=1), 1)
    )
    return ops.maximum(squared, 0.0)


def _unit_angular(a, b):
    """``1 - a_i . b_j`` clamped at 0, for rows already of unit norm."""
    return ops.maximum(1.0 - ops.matmul(a, ops.transpose(b)), 0.0)


def _cross_angular(a, b):
    """``1 - cos(a_i, b_j)`` clamped at 0, ``[A, D], [B, D] -> [A, B]``."""
    return _unit_angular(l2_normalize(a, axis=1), l2_normalize(b, axis=1))


def pairwise_squared_euclidean(embeddings):
    """Squared Euclidean distances between all rows, ``[B, D] -> [B, B]``.

    Computed as ``|a|^2 - 2 a.b + |b|^2`` (O(B^2) memory, never ``[B, B, D]``)
    on the rows minus their mean, clamped at 0 and with an exact zero
    diagonal. Distances do not change when every row moves by the same
    vector; centring first keeps the three terms from cancelling the
    distances of nearby rows far from the origin (in float32 the error of a
    squared distance is about ``1e-7 |a|^2``: with rows at ``|a| ~ 1e4``,
    duplicates would be ~3 apart instead of 0).

    Args:
        embeddings: float tensor of shape ``[B, D]``.

    Returns:
        Symmetric ``[B, B]`` tensor of squared distances.
    """
    embeddings = ops.convert_to_tensor(embeddings)
    centred = embeddings - ops.mean(embeddings, axis=0, keepdims=True)
    return _zero_diagonal(_cross_squared_euclidean(centred, centred))


def pairwise_euclidean(embeddings):
    """Euclidean distances between all rows, ``[B, D] -> [B, B]``.

    Args:
        embeddings: float tensor of shape ``[B, D]``.

    Returns:
        Symmetric ``[B, B]`` tensor; zero diagonal; finite gradient everywhere.
    """
    return _zero_diagonal(_safe_sqrt(pairwise_squared_euclidean(embeddings)))


def pairwise_angular(embeddings):
    """Cosine distances ``1 - cos`` between all rows, ``[B, D] -> [B, B]``.

    Args:
        embeddings: float tensor of shape ``[B, D]`` (need not be normalised).

    Returns:
        Symmetric ``[B, B]`` tensor with values in ``[0, 2]`` and zero diagonal.
    """
    unit = l2_normalize(ops.convert_to_tensor(embeddings), axis=1)  # once, not per side
    return _zero_diagonal(_unit_angular(unit, unit))


def paired_squared_euclidean(a, b):
    """``||a_i - b_i||^2`` for each row, ``[B, D], [B, D] -> [B]``."""
    return ops.sum(ops.square(ops.subtract(a, b)), axis=-1)


def paired_euclidean(a, b):
    """``||a_i - b_i||`` for each row; 0 with zero gradient when ``a_i == b_i``."""
    return _safe_sqrt(paired_squared_euclidean(a, b))


def paired_angular(a, b):
    """``1 - cos(a_i, b_i)`` for each row, in ``[0, 2]``."""
    cosine = ops.sum(l2_normalize(a, axis=-1) * l2_normalize(b, axis=-1), axis=-1)
    return ops.maximum(1.0 - cosine, 0.0)


_PAIRWISE = {
    "L2": pairwise_euclidean,
    "squared-L2": pairwise_squared_euclidean,
    "angular": pairwise_angular,
}
_PAIRED = {
    "L2": paired_euclidean,
    "squared-L2": paired_squared_euclidean,
    "angular": paired_angular,
}
_ALIASES = {
    "l2": "L2",
    "euclidean": "L2",
    "squared-l2": "squared-L2",
    "squared_l2": "squared-L2",
    "sql2": "squared-L2",
    "squared_euclidean": "squared-L2",
    "squared-euclidean": "squared-L2",
    "angular": "angular",
    "cosine": "angular",
}

METRICS = tuple(_PAIRWISE)


def canonical_name(metric: str) -> str:
    """The canonical name (``"L2"``, ``"squared-L2"`` or ``"angular"``) of a metric.

    Args:
        metric: a metric name or alias, case-insensitive.

    Returns:
        The canonical name.

    Raises:
        ValueError: for an unknown name, naming the value received.
    """
    if not isinstance(metric, str):
        raise TypeError(
            f"A metric name must be a string. Received: metric={metric!r} "
            f"of type {type(metric).__name__}"
        )
    key = metric.strip().lower()
    if key not in _ALIASES:
        raise ValueError(
            f"Unknown distance metric. Expected one of {list(METRICS)} (or the "
            f"aliases {sorted(_ALIASES)}). Received: metric={metric!r}"
        )
    return _ALIASES[key]


def get(metric: Metric) -> DistanceFn:
    """Resolve a metric to its pairwise distance function ``[B, D] -> [B, B]``.

    Args:
        metric: ``"L2"``, ``"squared-L2"``, ``"angular"`` (or an alias such as
            ``"euclidean"``, ``"cosine"``), or a callable that maps ``[B, D]``
            embeddings to a ``[B, B]`` distance matrix, which is returned as is.

    Returns:
        The pairwise distance function.

    Raises:
        ValueError: if the name is unknown.

    Examples:

    >>> import numpy as np
    >>> d = get("L2")(np.array([[0.0, 0.0], [3.0, 4.0]], "float32"))
    >>> np.asarray(d).round(3).tolist()
    [[0.0, 5.0], [5.0, 0.0]]
    """
    if callable(metric):
        return metric
    return _PAIRWISE[canonical_name(metric)]


def get_paired(metric: str) -> DistanceFn:
    """Resolve a metric name to its row-wise function ``[B, D], [B, D] -> [B]``.

    Args:
        metric: ``"L2"``, ``"squared-L2"`` or ``"angular"`` (or an alias), or a
            callable ``(a, b) -> [B]``, returned as is.

    Returns:
        The paired distance function.
    """
    if callable(metric):
        return metric
    return _PAIRED[canonical_name(metric)]


def pairwise_distances(embeddings, metric: Metric = "L2"):
    """Distance matrix of a batch of embeddings.

    Args:
        embeddings: float tensor ``[B, D]``.
        metric: metric name or callable (see ``get``).

    Returns:
        ``[B, B]`` distances, symmetric with a zero diagonal for the named
        metrics.

    Examples:

    >>> import numpy as np
    >>> x = np.array([[1.0, 0.0], [0.0, 1.0]], "float32")
    >>> np.asarray(pairwise_distances(x, "angular")).round(3).tolist()
    [[0.0, 1.0], [1.0, 0.0]]
    """
    return get(metric)(embeddings)


def cross_distances(a, b, metric: str = "L2"):
    """Distances between every row of ``a`` and every row of ``b``.

    The rectangular version of ``pairwise_distances`` (e.g. queries against
    a gallery or a cohort), with the same formulas: O(A * B) memory, never
    ``[A, B, D]``; ``"L2"`` has a finite gradient at zero distance.

    Args:
        a: float tensor ``[A, D]``.
        b: float tensor ``[B, D]``.
        metric: ``"L2"``, ``"squared-L2"`` or ``"angular"`` (or an alias).

    Returns:
        ``[A, B]`` distances ``d(a_i, b_j)``.

    Raises:
        ValueError: if the metric name is unknown.

    Examples:

    >>> import numpy as np
    >>> a = np.array([[0.0, 0.0]], "float32")
    >>> b = np.array([[3.0, 4.0], [0.0, 1.0]], "float32")
    >>> np.asarray(cross_distances(a, b)).round(3).tolist()
    [[5.0, 1.0]]
    """
    metric = canonical_name(metric)
    a, b = ops.convert_to_tensor(a), ops.convert_to_tensor(b)
    if metric == "angular":
        return _cross_angular(a, b)
    squared = _cross_squared_euclidean(a, b)
    return squared if metric == "squared-L2" else _safe_sqrt(squared)


def paired_distances(a, b, metric: Metric = "L2"):
    """Row-wise distances between two batches of embeddings.

    Args:
        a: float tensor ``[B, D]``.
        b: float tensor ``[B, D]``, same shape as ``a``.
        metric: metric name or callable (see ``get_paired``).

    Returns:
        ``[B]`` distances ``d(a_i, b_i)``.
    """
    return get_paired(metric)(a, b)
