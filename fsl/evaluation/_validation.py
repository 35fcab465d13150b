"""Input checks and numpy distance helpers shared by ``fsl.evaluation``.

Every check turns array-likes into numpy arrays and raises an error that names
the value it received, so a caller sees at once which argument was wrong.
"""

from __future__ import annotations

import numpy as np

from fsl.distances import canonical_name

# tf.math.l2_normalize's epsilon, as in fsl.distances.
_L2_NORMALIZE_EPSILON = 1e-12


def _describe(value) -> str:
    """A short description of an argument for error messages."""
    try:
        shape = np.shape(value)
    except (TypeError, ValueError):
        return repr(value)[:80]
    if int(np.prod(shape)) > 8:
        return f"array of shape {tuple(shape)}"
    return repr(value)


def as_vector(values, name: str, dtype=np.float64) -> np.ndarray:
    """``values`` as a non-empty 1-D array of finite numbers.

    Raises:
        ValueError: if it is not 1-D, is empty, or (for floats) holds NaN/inf.
    """
    try:
        array = np.asarray(values, dtype=dtype)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{name} must be a 1-D array of numbers. Received: {name}={_describe(values)}"
        ) from error
    if array.ndim != 1:
        raise ValueError(
            f"{name} must be 1-D. Received: {name} with shape {array.shape}"
        )
    if array.size == 0:
        raise ValueError(f"{name} must not be empty. Received: {name}={values!r}")
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        raise ValueError(
            f"{name} must be finite. Received: {name} with "
            f"{int(np.sum(~np.isfinite(array)))} NaN/inf values"
        )
    return array


def as_binary_labels(same, n: int, name: str = "same") -> np.ndarray:
    """``same`` as a 1-D int array of 0/1 of length ``n`` (1 = same identity).

    Raises:
        ValueError: wrong length, or values other than 0 and 1.
    """
    raw = np.asarray(same)
    if raw.dtype == bool:
        raw = raw.astype(np.int64)
    labels = as_vector(raw, name, dtype=np.float64)
    if len(labels) != n:
        raise ValueError(
            f"distances and {name} must have the same length. Received: "
            f"len(distances)={n}, len({name})={len(labels)}"
        )
    bad = ~np.isin(labels, (0.0, 1.0))
    if np.any(bad):
        raise ValueError(
            f"{name} must hold only 0 (different) and 1 (same). Received: "
            f"{name} with values {sorted(set(labels[bad].tolist()))[:5]}"
        )
    return labels.astype(np.int64)


def as_distances_and_labels(distances, same) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(distances, same)``: float64 ``[N]`` and int ``[N]`` 0/1."""
    distances = as_vector(distances, "distances")
    same = as_binary_labels(same, len(distances))
    return distances, same


def as_embeddings(embeddings, name: str) -> np.ndarray:
    """``embeddings`` as a non-empty finite float64 ``[N, D]`` array."""
    try:
        array = np.asarray(embeddings, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{name} must be a [N, D] array of numbers. Received: "
            f"{name}={_describe(embeddings)}"
        ) from error
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D [N, D]. Received: {name} with shape {array.shape}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(
            f"{name} must not be empty. Received: {name} with shape {array.shape}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite. Received: {name} with NaN/inf values")
    return array


def as_labels(labels, n: int, name: str, n_name: str) -> np.ndarray:
    """``labels`` as a 1-D array of length ``n`` (any hashable dtype)."""
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(
            f"{name} must be 1-D. Received: {name} with shape {array.shape}"
        )
    if len(array) != n:
        raise ValueError(
            f"{name} must have one label per row of {n_name}. Received: "
            f"len({name})={len(array)}, {n_name} has {n} rows"
        )
    return array


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm; all-zero rows stay zero (as fsl.distances)."""
    square_sum = np.sum(x * x, axis=1, keepdims=True)
    return x / np.sqrt(np.maximum(square_sum, _L2_NORMALIZE_EPSILON))


def class_means(x: np.ndarray, codes: np.ndarray, n_classes: int) -> np.ndarray:
    """``[n_classes, D]`` mean row of ``x`` per class code ``0..n_classes-1``
    (every code present)."""
    sums = np.zeros((n_classes, x.shape[1]))
    np.add.at(sums, codes, x)
    return sums / np.bincount(codes, minlength=n_classes)[:, None]


def cross_distances(a: np.ndarray, b: np.ndarray, metric: str,
                    b_squared_norms: np.ndarray | None = None) -> np.ndarray:
    """``[Na, Nb]`` distances between rows of ``a`` and rows of ``b`` (numpy).

    ``metric`` is a canonical name (``"L2"``, ``"squared-L2"``, ``"angular"``).
    Memory is O(Na * Nb); callers chunk ``a`` for large sets. A caller that
    searches one ``b`` many times passes ``b_squared_norms`` (``[Nb]``, the
    rows' squared norms) so they are not recomputed, and ``b`` is not copied.
    """
    b_sq = np.sum(b * b, axis=1) if b_squared_norms is None else b_squared_norms
    if metric == "angular":
        cosine = (l2_normalize(a) @ b.T) / np.sqrt(np.maximum(b_sq, _L2_NORMALIZE_EPSILON))
        return np.maximum(1.0 - cosine, 0.0)
    squared = np.sum(a * a, axis=1)[:, None] - 2.0 * (a @ b.T) + b_sq[None, :]
    squared = np.maximum(squared, 0.0)
    if metric == "squared-L2":
        return squared
    return np.sqrt(squared)


def metric_name(metric) -> str:
    """Canonical metric name; raises naming the value for anything else."""
    return canonical_name(metric)
