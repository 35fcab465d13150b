"""fsl.evaluation.clustering: hand-computed NMI/ARI, loop references, and
clustering of well-separated blobs."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsl.evaluation import clustering as C

label_pairs = st.integers(min_value=2, max_value=30).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 3), min_size=n, max_size=n),
        st.lists(st.integers(0, 4), min_size=n, max_size=n),
    )
)


def _loop_purity(true, pred):
    total = 0
    for cluster_id in set(pred):
        members = [t for t, p in zip(true, pred) if p == cluster_id]
        total += Counter(members).most_common(1)[0][1]
    return total / len(true)


def _loop_ari(true, pred):
    """ARI from the four pair counts (Hubert & Arabie's pair-counting form)."""
    a = b = c = d = 0
    n = len(true)
    for i in range(n):
        for j in range(i + 1, n):
            same_t, same_p = true[i] == true[j], pred[i] == pred[j]
            a += same_t and same_p
            b += same_t and not same_p
            c += same_p and not same_t
            d += not same_t and not same_p
    denominator = (a + b) * (b + d) + (a + c) * (c + d)
    return 1.0 if denominator == 0 else 2.0 * (a * d - b * c) / denominator


def _loop_nmi(true, pred):
    n = len(true)
    pt, pp, pj = Counter(true), Counter(pred), Counter(zip(true, pred))
    h_t = -sum(v / n * math.log(v / n) for v in pt.values())
    h_p = -sum(v / n * math.log(v / n) for v in pp.values())
    mi = sum(v / n * math.log((v / n) / (pt[t] / n * pp[p] / n)) for (t, p), v in pj.items())
    if h_t == 0 and h_p == 0:
        return 1.0
    return mi / ((h_t + h_p) / 2) if (h_t + h_p) > 0 else 0.0


def test_hand_derived_scores():
    true, pred = [0, 0, 1, 1], [0, 0, 0, 1]
    # Pair counts: sum C(n_ij, 2) = 1; rows C(3,2) + C(1,2) = 3; columns 1 + 1 = 2;
    # expected = 3 * 2 / C(4,2) = 1, max = 2.5: ARI = (1 - 1) / 1.5 = 0.
    assert C.ari(true, pred) == pytest.approx(0.0, abs=1e-12)
    h_t = math.log(2)
    h_p = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    mi = 0.5 * math.log(4 / 3) + 0.25 * math.log(2 / 3) + 0.25 * math.log(2)
    assert C.nmi(true, pred) == pytest.approx(mi / ((h_t + h_p) / 2))
    assert C.purity(true, pred) == 0.75
    # sum C(n_ij,2) = 2, rows 3, columns 6, expected 1.2, max 4.5.
    assert C.ari([0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 2, 2]) == pytest.approx(0.8 / 3.3)
    # Renaming clusters changes nothing.
    scores = C.clustering_scores(["a", "a", "b", "b"], [7, 7, 3, 3])
    assert scores == {"nmi": pytest.approx(1.0), "ari": pytest.approx(1.0), "purity": 1.0}


@settings(max_examples=60, deadline=None)
@given(label_pairs)
def test_scores_match_loop_references(labels):
    true, pred = labels
    assert C.purity(true, pred) == pytest.approx(_loop_purity(true, pred))
    assert C.ari(true, pred) == pytest.approx(_loop_ari(true, pred), abs=1e-9)
    assert C.nmi(true, pred) == pytest.approx(_loop_nmi(true, pred), abs=1e-9)


@pytest.mark.parametrize("method", ["kmeans", "agglomerative"])
def test_cluster_recovers_separated_blobs(method):
    rng = np.random.default_rng(0)
    true = np.repeat(np.arange(4), 15)
    centers = 10.0 * rng.normal(size=(4, 8))
    x = centers[true] + 0.3 * rng.normal(size=(60, 8))
    pred = C.cluster(x, 4, method=method, seed=3)
    assert pred.shape == (60,) and set(pred.tolist()) == {0, 1, 2, 3}
    assert C.clustering_scores(true, pred) == {
        "nmi": pytest.approx(1.0), "ari": pytest.approx(1.0), "purity": 1.0
    }
    np.testing.assert_array_equal(pred, C.cluster(x, 4, method=method, seed=3))


def test_bad_input():
    x = np.zeros((3, 2))
    with pytest.raises(ValueError, match="n_clusters=4"):
        C.cluster(x, 4)
    with pytest.raises(ValueError, match="n_clusters=0"):
        C.cluster(x, 0)
    with pytest.raises(ValueError, match="method='dbscan'"):
        C.cluster(x, 2, method="dbscan")
    with pytest.raises(ValueError, match=r"len\(pred\)=2"):
        C.purity([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match=r"true with shape \(0,\)"):
        C.nmi([], [])
