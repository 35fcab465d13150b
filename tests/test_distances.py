"""fsl.distances against a numpy brute-force reference, with gradient safety."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_all_finite, value_and_grad
from keras import ops

from fsl import distances

pytestmark = pytest.mark.backend_agnostic


def _reference(x: np.ndarray, metric: str) -> np.ndarray:
    x = x.astype(np.float64)
    n = len(x)
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if metric == "L2":
                out[i, j] = np.sqrt(np.sum((x[i] - x[j]) ** 2))
            elif metric == "squared-L2":
                out[i, j] = np.sum((x[i] - x[j]) ** 2)
            else:
                ni = x[i] / max(np.linalg.norm(x[i]), 1e-6)
                nj = x[j] / max(np.linalg.norm(x[j]), 1e-6)
                out[i, j] = 0.0 if i == j else max(1.0 - ni @ nj, 0.0)
    return out


@pytest.mark.parametrize("metric", ["L2", "squared-L2", "angular"])
def test_pairwise_matches_brute_force(metric):
    x = np.random.default_rng(0).normal(size=(9, 5)).astype("float32")
    got = ops.convert_to_numpy(distances.pairwise_distances(x, metric))
    np.testing.assert_allclose(got, _reference(x, metric), rtol=1e-4, atol=1e-5)
    assert np.all(np.diag(got) == 0.0)
    np.testing.assert_allclose(got, got.T, atol=1e-6)


@pytest.mark.parametrize("metric", ["L2", "squared-L2", "angular"])
def test_paired_matches_brute_force(metric):
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2, 7, 4)).astype("float32")
    got = ops.convert_to_numpy(distances.paired_distances(a, b, metric))
    want = [_reference(np.stack([a[i], b[i]]), metric)[0, 1] for i in range(7)]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("metric", ["L2", "squared-L2", "angular"])
def test_duplicate_rows_give_finite_gradients(metric):
    x = np.array([[1.0, 2.0], [1.0, 2.0], [0.0, 0.0], [3.0, -1.0]], "float32")
    value, (grad,) = value_and_grad(
        lambda e: ops.sum(distances.pairwise_distances(e, metric)), x
    )
    assert_all_finite(value, grad)
    got = ops.convert_to_numpy(distances.pairwise_distances(x, metric))
    np.testing.assert_allclose([got[0, 1], got[1, 0]], 0.0, atol=1e-6)


def test_paired_l2_zero_distance_gradient_is_zero():
    x = np.ones((3, 4), "float32")
    value, (ga, gb) = value_and_grad(
        lambda a, b: ops.sum(distances.paired_distances(a, b, "L2")), x, x.copy()
    )
    assert value == 0.0
    np.testing.assert_array_equal(ga, 0.0)
    np.testing.assert_array_equal(gb, 0.0)


def test_get_resolves_names_aliases_and_callables():
    assert distances.get("euclidean") is distances.pairwise_euclidean
    assert distances.get("Squared-L2") is distances.pairwise_squared_euclidean
    assert distances.get("cosine") is distances.pairwise_angular
    fn = lambda e: e  # noqa: E731
    assert distances.get(fn) is fn


def test_unknown_metric_names_the_value():
    with pytest.raises(ValueError, match="Received: metric='manhattan'"):
        distances.get("manhattan")
    with pytest.raises(TypeError, match="Received: metric=3"):
        distances.canonical_name(3)


@pytest.mark.parametrize("metric", ["L2", "squared-L2", "angular"])
def test_cross_distances_match_numpy_and_pairwise(metric):
    rng = np.random.default_rng(11)
    a = rng.normal(size=(4, 6)).astype("float32")
    b = rng.normal(size=(7, 6)).astype("float32")
    got = np.asarray(distances.cross_distances(a, b, metric))
    diff = a[:, None, :] - b[None, :, :]
    squared = np.sum(diff.astype("float64") ** 2, axis=-1)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
    want = {"L2": np.sqrt(squared), "squared-L2": squared,
            "angular": 1.0 - unit(a.astype("float64")) @ unit(b.astype("float64")).T}[metric]
    assert got.shape == (4, 7)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # A set against itself: the pairwise matrix off the diagonal.
    both = np.asarray(distances.cross_distances(a, a, metric))
    off = ~np.eye(4, dtype=bool)
    np.testing.assert_allclose(both[off], np.asarray(distances.pairwise_distances(a, metric))[off],
                               rtol=1e-6, atol=1e-6)


def test_cross_distances_l2_gradient_finite_at_zero():
    a = np.array([[1.0, 2.0]], "float32")
    value, grad = value_and_grad(lambda x: ops.sum(distances.cross_distances(x, a, "L2")), a)
    assert float(value) == 0.0
    assert_all_finite(grad)
    with pytest.raises(ValueError, match="manhattan"):
        distances.cross_distances(a, a, "manhattan")
