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


# Uneven classes: a singleton (no positive), a pair, and large classes, so that
# rows run out of positive slots at different times.
UNEVEN = np.array([0, 1, 1, 2, 2, 2, 2, 2, 3, 3, 3, 0, 2, 4, 4, 3])


def _semihard_weights_by_loops(labels, d, margin):
    pos, neg = _masks_reference(labels)
    weights, active = np.zeros_like(d), 0
    for a in range(len(d)):
        negatives = np.flatnonzero(neg[a])
        for p in np.flatnonzero(pos[a]):
            farther = [n for n in negatives if d[a, n] > d[a, p]]
            n = min(farther, key=lambda n: (d[a, n], n)) if farther else \
                min(negatives, key=lambda n: (-d[a, n], n))  # lowest column on ties
            if np.float32(d[a, p]) - np.float32(d[a, n]) + np.float32(margin) > 0:
                weights[a, p] += 1
                weights[a, n] -= 1
                active += 1
    return weights, active


def _batch_all_weights_by_loops(labels, d, margin):
    pos, neg = _masks_reference(labels)
    weights, active = np.zeros_like(d), 0
    for a in range(len(d)):
        for p in np.flatnonzero(pos[a]):
            for n in np.flatnonzero(neg[a]):
                if d[a, n] < np.float32(d[a, p]) + np.float32(margin):
                    weights[a, p] += 1
                    weights[a, n] -= 1
                    active += 1
    return weights, active


@pytest.mark.parametrize("labels_seed", ["uneven", 3, 8])
@pytest.mark.parametrize("margin", [0.0, 0.4])
def test_slot_weights_match_loops(labels_seed, margin):
    if labels_seed == "uneven":
        labels = UNEVEN
        _, d = _random_batch(9, b=len(UNEVEN))
    else:
        labels, d = _random_batch(labels_seed)
    pos, neg = _masks_reference(labels)
    for fn, reference in ((mining.semihard_weights, _semihard_weights_by_loops),
                          (mining.batch_all_weights, _batch_all_weights_by_loops)):
        weights, active = (_np(t) for t in fn(d, pos, neg, margin))
        want_weights, want_active = reference(labels, d, margin)
        np.testing.assert_array_equal(weights, want_weights, err_msg=fn.__name__)
        assert float(active) == want_active, fn.__name__


def test_slot_weights_give_the_sorted_selections_values_and_gradients():
    labels = UNEVEN
    rng = np.random.default_rng(2)
    x = rng.normal(size=(len(labels), 4))
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1)).astype("float32")  # no ties
    pos, neg = _masks_reference(labels)

    def by_slots(dist, fn):
        weights, active = fn(dist, pos, neg, 0.7)
        return ops.sum(dist * weights) + 0.7 * active

    def semihard_sorted(dist):
        semi, _ = mining.semihard_negative(dist, neg)
        return ops.sum(ops.where(pos, ops.maximum(dist - semi + 0.7, 0.0), 0.0))

    def batch_all_sorted(dist):
        return ops.sum(mining.batch_all_hinge(dist, pos, neg, 0.7)[0])

    for fn, sorted_fn in ((mining.semihard_weights, semihard_sorted),
                          (mining.batch_all_weights, batch_all_sorted)):
        value, (grad,) = value_and_grad(lambda dist, fn=fn: by_slots(dist, fn), d)
        want, (want_grad,) = value_and_grad(sorted_fn, d)
        assert float(value) == pytest.approx(float(want), rel=1e-6), fn.__name__
        np.testing.assert_allclose(grad, want_grad, atol=1e-6, err_msg=fn.__name__)
        assert np.abs(grad).sum() > 0


def test_few_positives_compares_slots_with_log2_batch():
    # 16 rows: log2 = 4. UNEVEN's largest class has 6 members: 5 positives.
    assert bool(_np(mining.few_positives(_masks_reference(UNEVEN)[0], 2.0)))  # 5 <= 8
    assert not bool(_np(mining.few_positives(_masks_reference(UNEVEN)[0], 1.0)))  # 5 > 4
    one_class = _masks_reference(np.zeros(16, int))[0]  # 15 positives per row
    assert not bool(_np(mining.few_positives(one_class, 2.0)))


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
