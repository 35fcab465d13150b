"""fsl.mining against numpy brute-force references (explicit loops)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import assert_all_finite, value_and_grad
from keras import ops

from fsl import mining

pytestmark = pytest.mark.backend_agnostic


def _np(x) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(x))


def _random_batch(seed: int, b: int = 12, classes: int = 4):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=b)
    # Rounded distances: ties between positives and negatives do happen.
    d = np.round(rng.uniform(0, 2, size=(b, b)), 1).astype("float32")
    d = (d + d.T) / 2
    np.fill_diagonal(d, 0.0)
    return labels, d


def _masks_reference(labels):
    b = len(labels)
    pos = np.zeros((b, b), bool)
    neg = np.zeros((b, b), bool)
    for i in range(b):
        for j in range(b):
            pos[i, j] = labels[i] == labels[j] and i != j
            neg[i, j] = labels[i] != labels[j]
    return pos, neg


@pytest.mark.parametrize("dtype", ["int32", "int64", "uint8"])
@pytest.mark.parametrize("column", [False, True])
def test_build_masks_matches_loops(dtype, column):
    labels = np.random.default_rng(0).integers(0, 4, size=10).astype(dtype)
    pos, neg = mining.build_masks(labels[:, None] if column else labels)
    want_pos, want_neg = _masks_reference(labels)
    np.testing.assert_array_equal(_np(pos), want_pos)
    np.testing.assert_array_equal(_np(neg), want_neg)


def test_build_masks_rejects_bad_shape():
    with pytest.raises(ValueError, match=r"labels.shape=\(4, 2\)"):
        mining.build_masks(np.zeros((4, 2), "int32"))


def test_masked_reductions_match_loops_and_handle_empty_rows():
    labels, d = _random_batch(1)
    labels[0] = 99  # anchor 0 has no positive
    pos, neg = _masks_reference(labels)
    got_max = _np(mining.masked_maximum(d, pos))
    got_min = _np(mining.masked_minimum(d, neg))
    for a in range(len(d)):
        want_max = d[a][pos[a]].max() if pos[a].any() else d[a].min()
        want_min = d[a][neg[a]].min() if neg[a].any() else d[a].max()
        assert got_max[a] == pytest.approx(want_max)
        assert got_min[a] == pytest.approx(want_min)
    # Same through the named selections.
    np.testing.assert_allclose(_np(mining.hardest_positive(d, pos)), got_max)
    np.testing.assert_allclose(_np(mining.hardest_negative(d, neg)), got_min)
    # Single class: no negatives at all -> row maximum, finite.
    empty = np.zeros_like(neg)
    np.testing.assert_allclose(_np(mining.masked_minimum(d, empty)), d.max(axis=1))


@pytest.mark.parametrize("side", ["left", "right"])
def test_searchsorted_rows_matches_numpy(side):
    rng = np.random.default_rng(2)
    b, n, m = 7, 9, 11
    counts = rng.integers(0, n + 1, size=b)
    rows = np.sort(np.round(rng.uniform(0, 1, size=(b, n)), 1), axis=1)
    # Garbage after the valid prefix must be ignored.
    for r in range(b):
        rows[r, counts[r]:] = -5.0
    queries = np.round(rng.uniform(-0.1, 1.1, size=(b, m)), 1)
    got = _np(mining.searchsorted_rows(rows.astype("float32"), queries.astype("float32"),
                                        counts, side=side))
    for r in range(b):
        valid = rows[r, : counts[r]].astype("float32")
        want = np.searchsorted(valid, queries[r].astype("float32"), side=side)
        np.testing.assert_array_equal(got[r], want)


def test_searchsorted_rows_rejects_bad_side():
    with pytest.raises(ValueError, match="side='middle'"):
        mining.searchsorted_rows(np.zeros((1, 1)), np.zeros((1, 1)), [1], side="middle")


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_semihard_negative_matches_loops(seed):
    labels, d = _random_batch(seed)
    pos, neg = _masks_reference(labels)
    got, found = (_np(t) for t in mining.semihard_negative(d, neg))
    for a in range(len(d)):
        for p in range(len(d)):
            if not pos[a, p]:
                continue
            negatives = d[a][neg[a]]
            farther = negatives[negatives > d[a, p]]
            want = farther.min() if len(farther) else negatives.max()
            assert got[a, p] == pytest.approx(want), (a, p)
            assert bool(found[a, p]) == bool(len(farther))


@pytest.mark.parametrize("margin", [0.0, 0.3, 1.0])
def test_batch_all_hinge_matches_loops(margin):
    labels, d = _random_batch(6)
    pos, neg = _masks_reference(labels)
    hinge_sum, count = (_np(t) for t in mining.batch_all_hinge(d, pos, neg, margin))
    for a in range(len(d)):
        for p in range(len(d)):
            want_sum, want_count = 0.0, 0
            if pos[a, p]:
                for n in range(len(d)):
                    if neg[a, n]:
                        # Active: d(a, n) < d(a, p) + margin, in float32.
                        threshold = np.float32(d[a, p]) + np.float32(margin)
                        if d[a, n] < threshold:
                            want_sum += float(threshold) - float(d[a, n])
                            want_count += 1
            assert hinge_sum[a, p] == pytest.approx(want_sum, abs=1e-5), (a, p)
            assert count[a, p] == want_count, (a, p)


def test_mining_gradients_are_finite_and_reach_selected_entries():
    labels, d = _random_batch(7)
    pos, neg = _masks_reference(labels)

    def total(dist):
        semi, _ = mining.semihard_negative(dist, neg)
        s, c = mining.batch_all_hinge(dist, pos, neg, 0.5)
        return ops.sum(ops.where(pos, semi, 0.0)) + ops.sum(s)

    value, (grad,) = value_and_grad(total, d)
    assert_all_finite(value, grad)
    assert np.abs(grad).sum() > 0


def test_dynamic_batch_size_under_tf_function():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("unknown static batch size only arises in TensorFlow graphs")
    import tensorflow as tf

    labels, d = _random_batch(8)
    pos, neg = _masks_reference(labels)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32),
                                  tf.TensorSpec([None, None], tf.bool)])
    def semihard(dist, negative_mask):
        return mining.semihard_negative(dist, negative_mask)[0]

    got = semihard(tf.constant(d), tf.constant(neg)).numpy()
    want = _np(mining.semihard_negative(d, neg)[0])
    np.testing.assert_allclose(got[pos], want[pos])
