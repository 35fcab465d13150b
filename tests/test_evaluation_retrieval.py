"""fsl.evaluation.retrieval against explicit-loop references and a hand-derived
three-query example."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from fsl.evaluation import retrieval as R


def _distance(a, b, metric):
    if metric == "L2":
        return float(np.sqrt(np.sum((a - b) ** 2)))
    if metric == "squared-L2":
        return float(np.sum((a - b) ** 2))
    return float(1.0 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _loop_metrics(q, ql, g, gl, metric, ks):
    """Recall@k for each k and MAP@R, one query at a time, by sorting lists."""
    leave_one_out = g is None
    if leave_one_out:
        g, gl = q, ql
    recalls = {k: [] for k in ks}
    aps = []
    for i in range(len(q)):
        ranked = sorted(
            (_distance(q[i], g[j], metric), j)
            for j in range(len(g))
            if not (leave_one_out and j == i)
        )
        rel = [gl[j] == ql[i] for _, j in ranked]
        r = sum(rel)
        if r == 0:
            continue
        for k in ks:
            recalls[k].append(any(rel[:k]))
        ap = 0.0
        for position in range(1, r + 1):
            if rel[position - 1]:
                ap += sum(rel[:position]) / position
        aps.append(ap / r)
    return {k: float(np.mean(v)) for k, v in recalls.items()}, float(np.mean(aps))


def _clustered(seed, n=60, classes=6, dim=4, noise=0.8):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    centers = rng.normal(size=(classes, dim))
    return centers[labels] + noise * rng.normal(size=(n, dim)), labels


def test_three_query_hand_derived():
    gallery = np.array([[0.0], [1.0], [2.0], [3.0], [10.0]])
    gallery_labels = ["A", "B", "A", "B", "C"]
    queries = np.array([[0.4], [1.9], [9.0]])
    query_labels = ["A", "B", "C"]
    # q1 ranks A B A B C, R=2: AP = (1/2) * P(1) = 0.5.
    # q2 ranks A B B A C, R=2: AP = (1/2) * P(2) = 0.25.
    # q3 ranks C first, R=1: AP = 1.
    args = (queries, query_labels, gallery, gallery_labels)
    assert R.map_at_r(*args) == pytest.approx((0.5 + 0.25 + 1.0) / 3)
    assert R.precision_at_1(*args) == pytest.approx(2 / 3)
    assert R.recall_at_k(*args, ks=(1, 2, 5)) == pytest.approx({1: 2 / 3, 2: 1.0, 5: 1.0})


@pytest.mark.parametrize("metric", ["L2", "squared-L2", "angular"])
@pytest.mark.parametrize("chunk_size", [7, 512])
def test_leave_one_out_matches_loop(metric, chunk_size):
    x, y = _clustered(0)
    want_recall, want_map = _loop_metrics(x, y, None, None, metric, (1, 3, 10))
    got = R.recall_at_k(x, y, metric=metric, ks=(1, 3, 10), chunk_size=chunk_size)
    assert got == pytest.approx(want_recall)
    assert R.map_at_r(x, y, metric=metric, chunk_size=chunk_size) == pytest.approx(want_map)
    assert R.precision_at_1(x, y, metric=metric, chunk_size=chunk_size) == pytest.approx(
        want_recall[1]
    )
    assert 0.0 < want_map < 1.0  # the example is neither trivial nor hopeless


@pytest.mark.parametrize("metric", ["L2", "angular"])
def test_query_gallery_matches_loop(metric):
    x, y = _clustered(1, n=105)
    q, ql, g, gl = x[:25], y[:25], x[25:], y[25:]
    gl = gl.astype(str)
    ql = ql.astype(str)
    ql[0] = "nobody"  # no relevant item: left out of every metric
    want_recall, want_map = _loop_metrics(q, ql, g, gl, metric, (1, 5, 80))
    got = R.recall_at_k(q, ql, g, gl, metric=metric, ks=(1, 5, 80), chunk_size=4)
    assert got == pytest.approx(want_recall)
    assert got[80] == 1.0
    assert R.map_at_r(q, ql, g, gl, metric=metric, chunk_size=4) == pytest.approx(want_map)


@pytest.mark.parametrize("metric", ["L2", "squared-L2"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_ties_are_ranked_by_gallery_index(metric, seed):
    # Points on a 3x3 integer grid: many exactly equal distances, compared
    # exactly in both implementations.
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, size=(40, 2)).astype(float)
    y = rng.integers(0, 4, 40)
    want_recall, want_map = _loop_metrics(x, y, None, None, metric, (1, 2, 7))
    for chunk_size in (3, 64):
        got = R.recall_at_k(x, y, metric=metric, ks=(1, 2, 7), chunk_size=chunk_size)
        assert got == pytest.approx(want_recall)
        assert R.map_at_r(x, y, metric=metric, chunk_size=chunk_size) == pytest.approx(
            want_map
        )


def test_k_nearest_helper_orders_by_distance_then_index():
    d = np.array([[3.0, 1.0, 1.0, 0.5, 1.0], [2.0, 2.0, 2.0, 2.0, 2.0]])
    np.testing.assert_array_equal(R._k_nearest(d, 3), [[3, 1, 2], [0, 1, 2]])
    np.testing.assert_array_equal(R._k_nearest(d, 5), [[3, 1, 2, 4, 0], [0, 1, 2, 3, 4]])


def test_perfect_and_worst_rankings():
    x = np.array([[0.0], [0.1], [0.2], [5.0], [5.1], [5.2]])
    assert R.map_at_r(x, [0, 0, 0, 1, 1, 1]) == 1.0
    # Each item's two relevant items are the two FARTHEST ones.
    x = np.array([[0.0], [1.0], [10.0], [11.0]])
    assert R.map_at_r(x, [0, 1, 0, 1]) == 0.0
    assert R.precision_at_1(x, [0, 1, 0, 1]) == 0.0


def test_singleton_queries_are_skipped_with_a_warning(caplog):
    x = np.array([[0.0], [0.1], [3.0]])
    with caplog.at_level(logging.WARNING, logger="fsl.evaluation.retrieval"):
        assert R.precision_at_1(x, [0, 0, 1]) == 1.0
    assert "1 of 3 queries have no relevant item" in caplog.text
    with pytest.raises(ValueError, match="No query has a relevant"):
        R.map_at_r(x, [0, 1, 2])


def test_bad_input():
    x, y = np.zeros((4, 2)), [0, 0, 1, 1]
    with pytest.raises(ValueError, match=r"k=4"):
        R.recall_at_k(x, y, ks=(1, 4))  # leave-one-out: 3 candidates
    with pytest.raises(ValueError, match=r"k=0"):
        R.recall_at_k(x, y, ks=(0,))
    with pytest.raises(ValueError, match=r"len\(query_labels\)=3"):
        R.precision_at_1(x, [0, 0, 1])
    with pytest.raises(ValueError, match="gallery_labels is None"):
        R.precision_at_1(x, y, gallery_emb=x)
    with pytest.raises(ValueError, match=r"gallery_emb.shape=\(4, 3\)"):
        R.precision_at_1(x, y, np.zeros((4, 3)), y)
    with pytest.raises(ValueError, match=r"query_emb must not be empty"):
        R.map_at_r(np.zeros((0, 2)), [])
    with pytest.raises(ValueError, match="chunk_size=0"):
        R.map_at_r(x, y, chunk_size=0)
    with pytest.raises(ValueError, match="metric='hamming'"):
        R.map_at_r(x, y, metric="hamming")
