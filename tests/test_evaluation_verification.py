"""fsl.evaluation.verification against explicit-loop references, hand-derived
cases and sklearn's ROC/AUC."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from fsl.evaluation import verification as V

# Distances drawn from a small grid so ties are common; labels 0/1.
pairs = st.integers(min_value=1, max_value=40).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 12), min_size=n, max_size=n).map(
            lambda v: np.asarray(v, float) / 4.0
        ),
        st.lists(st.integers(0, 1), min_size=n, max_size=n).map(np.asarray),
    )
)
both_classes = pairs.filter(lambda p: 0 < p[1].sum() < len(p[1]))


# === References (explicit loops) ===


def _loop_accuracy(d, s, t):
    correct = 0
    for di, si in zip(d, s):
        predicted_same = di <= t
        correct += int(predicted_same == (si == 1))
    return correct / len(d)


def _loop_best(d, s):
    values = sorted(set(float(x) for x in d))
    candidates = [values[0] - 1.0]
    for a, b in zip(values[:-1], values[1:]):
        candidates.append((a + b) / 2.0)
    candidates.append(values[-1])
    best_t, best_acc = None, -1.0
    for t in candidates:  # ascending: keeps the smallest on ties
        acc = _loop_accuracy(d, s, t)
        if acc > best_acc:
            best_t, best_acc = t, acc
    return best_t, best_acc


def _loop_rates(d, s, t):
    accepted_same = sum(1 for di, si in zip(d, s) if si == 1 and di <= t)
    accepted_diff = sum(1 for di, si in zip(d, s) if si == 0 and di <= t)
    return accepted_same / sum(s == 1), accepted_diff / sum(s == 0)


# === pair_distances ===


@pytest.mark.parametrize("metric", ["L2", "squared-L2", "angular", "cosine"])
def test_pair_distances_match_loop(metric):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 6, 3))
    got = V.pair_distances(a, b, metric)
    for i in range(6):
        if metric == "L2":
            want = np.linalg.norm(a[i] - b[i])
        elif metric == "squared-L2":
            want = np.sum((a[i] - b[i]) ** 2)
        else:
            want = 1.0 - a[i] @ b[i] / (np.linalg.norm(a[i]) * np.linalg.norm(b[i]))
        assert got[i] == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_pair_distances_bad_input():
    with pytest.raises(ValueError, match=r"emb1.shape=\(2, 3\), emb2.shape=\(3, 3\)"):
        V.pair_distances(np.zeros((2, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="metric='manhattan'"):
        V.pair_distances(np.zeros((2, 3)), np.zeros((2, 3)), "manhattan")
    with pytest.raises(ValueError, match=r"emb1 must be 2-D.*shape \(3,\)"):
        V.pair_distances(np.zeros(3), np.zeros(3))


# === s_norm_distances ===


def _loop_s_norm(a, b, cohort, metric, top_k=None):
    out = []
    for x, y in zip(a, b):
        d = V.pair_distances(x[None], y[None], metric)[0]
        z = []
        for side in (x, y):
            to_cohort = sorted(V.pair_distances(np.repeat(side[None], len(cohort), 0), cohort, metric))
            if top_k is not None:
                to_cohort = to_cohort[:top_k]
            mean = sum(to_cohort) / len(to_cohort)
            std = (sum((t - mean) ** 2 for t in to_cohort) / len(to_cohort)) ** 0.5
            z.append((d - mean) / std)
        out.append((z[0] + z[1]) / 2)
    return np.asarray(out)


def _loop_statistics(x, cohort, metric, top_k=None, own=None, cohort_labels=None):
    """Mean / std of x's distances to the cohort rows not labelled ``own``."""
    rows = [c for c, label in zip(cohort, cohort_labels if own is not None else [None] * len(cohort))
            if own is None or label != own]
    to_cohort = sorted(V.pair_distances(x[None], np.asarray(c)[None], metric)[0] for c in rows)
    if top_k is not None:
        to_cohort = to_cohort[:top_k]
    mean = sum(to_cohort) / len(to_cohort)
    return mean, (sum((t - mean) ** 2 for t in to_cohort) / len(to_cohort)) ** 0.5


@pytest.mark.parametrize("metric", ["L2", "angular"])
@pytest.mark.parametrize("top_k", [None, 3])
def test_s_norm_with_labels_leaves_own_people_out(metric, top_k, monkeypatch):
    # Scoring pairs of the cohort's own people: each side's statistics skip
    # the cohort rows of its own identity (explicit loop as reference).
    rng = np.random.default_rng(3)
    cohort = rng.normal(size=(12, 4))
    cohort_labels = np.repeat(np.arange(4), 3)
    i = rng.integers(0, 12, size=10)
    j = rng.integers(0, 12, size=10)
    monkeypatch.setattr(V, "_COHORT_CHUNK", 4)
    got = V.s_norm_distances(cohort[i], cohort[j], cohort, metric, top_k,
                             labels1=cohort_labels[i], labels2=cohort_labels[j],
                             cohort_labels=cohort_labels)
    want = []
    for a, b in zip(i, j):
        d = V.pair_distances(cohort[a][None], cohort[b][None], metric)[0]
        (ma, sa), (mb, sb) = (
            _loop_statistics(cohort[k], cohort, metric, top_k, cohort_labels[k], cohort_labels)
            for k in (a, b))
        want.append(((d - ma) / sa + (d - mb) / sb) / 2)
    np.testing.assert_allclose(got, want, rtol=1e-9)
    # Without the labels the own rows count, and the scores differ.
    plain = V.s_norm_distances(cohort[i], cohort[j], cohort, metric, top_k)
    assert not np.allclose(plain, got)


def test_cohort_statistics_hand_derived_and_labelled():
    mean, std = V.cohort_statistics([[0.0, 0.0]], [[0.0, 1.0], [0.0, 3.0], [0.0, 9.0]])
    assert mean[0] == pytest.approx(13 / 3) and std[0] == pytest.approx(np.std([1, 3, 9]))
    # Leaving out the row labelled like the embedding: distances 1 and 3.
    mean, std = V.cohort_statistics([[0.0, 0.0]], [[0.0, 1.0], [0.0, 3.0], [0.0, 9.0]],
                                    labels=["a"], cohort_labels=["b", "c", "a"])
    assert (mean[0], std[0]) == pytest.approx((2.0, 1.0))


@pytest.mark.parametrize("top_k", [None, 4])
def test_s_norm_cross_distances_match_pairs(top_k):
    rng = np.random.default_rng(4)
    queries, gallery, cohort = rng.normal(size=(3, 6)), rng.normal(size=(5, 6)), rng.normal(size=(8, 6))
    got = V.s_norm_cross_distances(queries, gallery, cohort, "L2", top_k)
    assert got.shape == (3, 5)
    for q in range(3):
        for g in range(5):
            want = V.s_norm_distances(queries[q:q + 1], gallery[g:g + 1], cohort, "L2", top_k)[0]
            assert got[q, g] == pytest.approx(want, rel=1e-9)
    with pytest.raises(ValueError, match=r"gallery.shape=\(5, 2\)"):
        V.s_norm_cross_distances(queries, np.zeros((5, 2)), cohort)


def test_s_norm_label_errors():
    a = np.zeros((2, 3))
    cohort, labels = np.arange(12.0).reshape(4, 3), np.array([0, 0, 1, 1])
    with pytest.raises(ValueError, match="labels1, labels2 and cohort_labels go together"):
        V.s_norm_distances(a, a, cohort, labels1=[0, 1], labels2=[0, 1])
    with pytest.raises(ValueError, match=r"len\(labels2\)=3, emb2 has 2 rows"):
        V.s_norm_distances(a, a, cohort, labels1=[0, 1], labels2=[0, 1, 2], cohort_labels=labels)
    with pytest.raises(ValueError, match="labels and cohort_labels go together"):
        V.cohort_statistics(a, cohort, labels=[0, 1])
    # Two of the four cohort rows are left out: top_k=3 cannot be met.
    with pytest.raises(ValueError, match="only 2 cohort rows have another label than embedding 0"):
        V.s_norm_distances(a, a, cohort, top_k=3, labels1=[0, 1], labels2=[0, 1],
                           cohort_labels=labels)


def test_s_norm_hand_derived():
    # a = (0, 0) lies 1, 1, 2 from the cohort: mean 4/3, std sqrt(2/9) / ... =
    # sqrt(6/27). b = (1, 0) lies sqrt 2, sqrt 2, 1 from it. d(a, b) = 1.
    cohort = [[0.0, 1.0], [0.0, -1.0], [2.0, 0.0]]
    mean_a, std_a = 4 / 3, np.sqrt(6 / 27)
    to_b = np.array([np.sqrt(2), np.sqrt(2), 1.0])
    mean_b, std_b = to_b.mean(), np.sqrt(np.mean((to_b - to_b.mean()) ** 2))
    want = ((1 - mean_a) / std_a + (1 - mean_b) / std_b) / 2
    got = V.s_norm_distances([[0.0, 0.0]], [[1.0, 0.0]], cohort)
    assert got[0] == pytest.approx(want, rel=1e-12)
    # Symmetric in the two sides of a pair.
    back = V.s_norm_distances([[1.0, 0.0]], [[0.0, 0.0]], cohort)
    assert back[0] == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("metric", ["L2", "squared-L2", "angular"])
@pytest.mark.parametrize("top_k", [None, 2, 5])
def test_s_norm_matches_loop(metric, top_k, monkeypatch):
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2, 7, 4))
    cohort = rng.normal(size=(9, 4))
    # Chunks of 3 rows: the chunked statistics must equal the unchunked ones.
    monkeypatch.setattr(V, "_COHORT_CHUNK", 3)
    got = V.s_norm_distances(a, b, cohort, metric, top_k=top_k)
    np.testing.assert_allclose(got, _loop_s_norm(a, b, cohort, metric, top_k), rtol=1e-9)


def test_s_norm_fixes_a_per_region_scale():
    # Two kinds of people: "tight" ones (identities 1 apart at most, each
    # face within ~0.05 of its identity) and "loose" ones (identities ~4
    # apart, faces within ~0.4). No single raw threshold fits both; S-norm
    # against a cohort of OTHER people of both kinds puts them on one scale.
    rng = np.random.default_rng(0)

    def centres(n, radius):
        v = rng.normal(size=(n, 8))
        return radius * v / np.linalg.norm(v, axis=1, keepdims=True)

    def pairs(c, noise, n=400):
        i = rng.integers(0, len(c), size=n)
        j = np.where(rng.random(n) < 0.5, i, rng.integers(0, len(c), size=n))
        face = lambda k: c[k] + noise * rng.normal(size=(n, 8))
        return face(i), face(j), (i == j).astype(int)

    tight, loose = pairs(centres(50, 1.0), 0.05), pairs(centres(50, 4.0), 0.4)
    a, b, same = (np.concatenate(parts) for parts in zip(tight, loose))
    cohort = np.concatenate([
        centres(50, 1.0) + 0.05 * rng.normal(size=(50, 8)),
        centres(50, 4.0) + 0.4 * rng.normal(size=(50, 8)),
    ])
    raw = V.best_threshold(V.pair_distances(a, b), same)[1]
    normed = V.best_threshold(V.s_norm_distances(a, b, cohort), same)[1]
    assert raw < 0.85 and normed > 0.98, (raw, normed)


def test_s_norm_scale_invariant_and_finite():
    rng = np.random.default_rng(2)
    a, b, cohort = rng.normal(size=(3, 5, 3))
    one = V.s_norm_distances(a, b, cohort)
    np.testing.assert_allclose(V.s_norm_distances(3 * a, 3 * b, 3 * cohort), one, rtol=1e-9)
    # An embedding equidistant from every cohort row: no spread, still finite.
    got = V.s_norm_distances([[0.0, 0.0]], [[0.5, 0.0]], [[1.0, 0.0], [-1.0, 0.0]])
    assert np.all(np.isfinite(got))


def test_s_norm_bad_input():
    a = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"cohort.shape=\(1, 3\)"):
        V.s_norm_distances(a, a, np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"dimension 3.*cohort.shape=\(4, 2\)"):
        V.s_norm_distances(a, a, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="top_k=1"):
        V.s_norm_distances(a, a, np.ones((4, 3)), top_k=1)
    with pytest.raises(ValueError, match="top_k=5"):
        V.s_norm_distances(a, a, np.ones((4, 3)), top_k=5)
    with pytest.raises(ValueError, match="top_k=True"):
        V.s_norm_distances(a, a, np.ones((4, 3)), top_k=True)
    with pytest.raises(ValueError, match="metric='manhattan'"):
        V.s_norm_distances(a, a, np.ones((4, 3)), "manhattan")
    with pytest.raises(ValueError, match="cohort must be finite"):
        V.s_norm_distances(a, a, np.full((4, 3), np.nan))


# === best_threshold / accuracy_at_threshold ===


def test_best_threshold_hand_derived():
    # t < 0.2: 2/4 (the two different pairs); t = 0.35: 3/4; t = 0.55: 2/4;
    # t = 0.8: 3/4; t = 1.0: 2/4. Best 3/4, smallest such threshold 0.35.
    d, s = [0.2, 0.5, 0.6, 1.0], [1, 0, 1, 0]
    t, acc = V.best_threshold(d, s)
    assert t == pytest.approx(0.35)
    assert acc == 0.75
    assert V.accuracy_at_threshold(d, s, 0.8) == 0.75
    assert V.accuracy_at_threshold(d, s, 0.55) == 0.5


def test_best_threshold_extremes():
    # All different: best is to accept nothing, with a threshold below 0.3.
    t, acc = V.best_threshold([0.3, 0.7], [0, 0])
    assert acc == 1.0 and t < 0.3
    # All same: accept everything.
    t, acc = V.best_threshold([0.3, 0.7], [True, True])
    assert acc == 1.0 and t >= 0.7


@settings(max_examples=60, deadline=None)
@given(pairs)
def test_best_threshold_matches_brute_force(p):
    d, s = p
    t, acc = V.best_threshold(d, s)
    ref_t, ref_acc = _loop_best(d, s)
    assert acc == pytest.approx(ref_acc, abs=1e-12)
    assert _loop_accuracy(d, s, t) == pytest.approx(acc, abs=1e-12)
    # Same decisions as the reference's threshold (the extremes may differ in value).
    np.testing.assert_array_equal(d <= t, d <= ref_t)


def test_best_threshold_scales_to_large_inputs():
    rng = np.random.default_rng(3)
    s = rng.integers(0, 2, 200_000)
    d = rng.normal(loc=1.0 - 0.5 * s, scale=0.3)
    t, acc = V.best_threshold(d, s)
    # Two unit-variance-scaled Gaussians 0.5 apart: Bayes threshold at 0.75.
    assert t == pytest.approx(0.75, abs=0.02)
    assert acc == pytest.approx(V.accuracy_at_threshold(d, s, t))


# === kfold_verification ===


def test_kfold_hand_derived():
    # Fold 0 held out: trained on (0.35 same, 0.4 diff) -> t = 0.375, test 2/2.
    # Fold 1 held out: trained on (0.1 same, 0.5 diff) -> t = 0.3, 0.35 same pair
    # is rejected -> 1/2.
    d, s = [0.1, 0.5, 0.35, 0.4], [1, 0, 1, 0]
    out = V.kfold_verification(d, s, folds=["a", "a", "b", "b"])
    np.testing.assert_allclose(out["thresholds"], [0.375, 0.3])
    np.testing.assert_allclose(out["fold_accuracies"], [1.0, 0.5])
    assert out["mean_accuracy"] == pytest.approx(0.75)
    assert out["std_accuracy"] == pytest.approx(0.25)


def test_kfold_matches_loop_reference():
    rng = np.random.default_rng(4)
    s = rng.integers(0, 2, 300)
    d = rng.normal(loc=1.0 - 0.6 * s, scale=0.4)
    out = V.kfold_verification(d, s, n_folds=10, seed=7)
    folds = out["folds"]
    accuracies = []
    for k in range(10):
        train = [i for i in range(300) if folds[i] != k]
        test = [i for i in range(300) if folds[i] == k]
        t, _ = _loop_best(d[train], s[train])
        accuracies.append(_loop_accuracy(d[test], s[test], t))
    np.testing.assert_allclose(out["fold_accuracies"], accuracies)
    assert out["mean_accuracy"] == pytest.approx(np.mean(accuracies))
    assert out["std_accuracy"] == pytest.approx(np.std(accuracies))


def test_kfold_split_is_stratified_and_seeded():
    s = np.array([1] * 23 + [0] * 37)
    d = np.linspace(0, 1, 60)
    a = V.kfold_verification(d, s, n_folds=10, seed=1)["folds"]
    b = V.kfold_verification(d, s, n_folds=10, seed=1)["folds"]
    c = V.kfold_verification(d, s, n_folds=10, seed=2)["folds"]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    same_per_fold = np.bincount(a[s == 1], minlength=10)
    size_per_fold = np.bincount(a, minlength=10)
    assert same_per_fold.max() - same_per_fold.min() <= 1
    assert size_per_fold.max() - size_per_fold.min() <= 1


def test_kfold_bad_input():
    d, s = [0.1, 0.2, 0.3], [1, 0, 1]
    with pytest.raises(ValueError, match="n_folds=4"):
        V.kfold_verification(d, s, n_folds=4)
    with pytest.raises(ValueError, match="n_folds=1"):
        V.kfold_verification(d, s, n_folds=1)
    with pytest.raises(ValueError, match=r"folds with shape \(2,\)"):
        V.kfold_verification(d, s, folds=[0, 1])
    with pytest.raises(ValueError, match="single id 3"):
        V.kfold_verification(d, s, folds=[3, 3, 3])


# === val_far ===


def test_val_far_hand_derived():
    # Accepting d <= 0.4 takes the three same pairs and one of three different.
    d = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    s = [1, 1, 0, 1, 0, 0]
    out = V.val_far(d, s, far_target=1 / 3)
    assert out == {"val": 1.0, "far": pytest.approx(1 / 3), "threshold": 0.4}
    out = V.val_far(d, s, far_target=0.2)
    assert out == {"val": pytest.approx(2 / 3), "far": 0.0, "threshold": 0.2}
    # The closest pair is a different one: nothing can be accepted at FAR 0.
    out = V.val_far([0.5, 0.6], [0, 1], far_target=0.0)
    assert out["val"] == 0.0 and out["far"] == 0.0 and out["threshold"] < 0.5


@settings(max_examples=60, deadline=None)
@given(both_classes, st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0]))
def test_val_far_matches_brute_force(p, target):
    d, s = p
    out = V.val_far(d, s, far_target=target)
    best = None
    for t in sorted(set(d.tolist())):
        val, far = _loop_rates(d, s, t)
        if far <= target:
            best = (t, val, far)
    if best is None:
        assert out["val"] == 0.0 and out["far"] == 0.0 and out["threshold"] < d.min()
    else:
        assert (out["threshold"], out["val"], out["far"]) == pytest.approx(best)


def test_val_far_bad_input():
    with pytest.raises(ValueError, match="far_target=1.5"):
        V.val_far([0.1, 0.2], [0, 1], far_target=1.5)
    with pytest.raises(ValueError, match="0 different pairs"):
        V.val_far([0.1, 0.2], [1, 1])


# === ROC, AUC, EER ===


@settings(max_examples=60, deadline=None)
@given(both_classes)
def test_roc_and_auc_match_sklearn(p):
    d, s = p
    far, tar, thresholds = V.roc_curve(d, s)
    fpr, tpr, sk_thresholds = skm.roc_curve(s, -d, drop_intermediate=False)
    np.testing.assert_allclose(far, fpr)
    np.testing.assert_allclose(tar, tpr)
    np.testing.assert_allclose(thresholds[1:], -sk_thresholds[1:])
    assert thresholds[0] < d.min()
    assert V.auc(d, s) == pytest.approx(skm.roc_auc_score(s, -d), abs=1e-12)


def test_auc_is_probability_same_closer_than_different():
    rng = np.random.default_rng(5)
    s = rng.integers(0, 2, 80)
    d = rng.normal(size=80) - 0.5 * s
    wins = 0.0
    for i in np.flatnonzero(s == 1):
        for j in np.flatnonzero(s == 0):
            wins += 1.0 if d[i] < d[j] else (0.5 if d[i] == d[j] else 0.0)
    assert V.auc(d, s) == pytest.approx(wins / (s.sum() * (80 - s.sum())))


def test_eer_hand_derived():
    # ROC (FAR, FRR): (0,1) (0,.5) (.5,.5) (.5,0) (1,0): FAR = FRR = 0.5 at t=0.2.
    assert V.eer([0.1, 0.2, 0.3, 0.4], [1, 0, 1, 0]) == pytest.approx(0.5)
    assert V.eer([0.1, 0.2, 0.3, 0.4], [1, 1, 0, 0]) == 0.0
    assert V.eer([0.1, 0.2, 0.3, 0.4], [0, 0, 1, 1]) == 1.0
    # One same pair between two different pairs: from (0, 1) to (.5, 1) to
    # (.5, 0); FAR - FRR crosses 0 on the vertical segment at FAR = 0.5.
    assert V.eer([0.1, 0.2, 0.3], [0, 1, 0]) == pytest.approx(0.5)


@settings(max_examples=60, deadline=None)
@given(both_classes)
def test_eer_matches_segment_search_on_sklearn_roc(p):
    d, s = p
    fpr, tpr, _ = skm.roc_curve(s, -d, drop_intermediate=False)
    ref = None
    for i in range(1, len(fpr)):
        # g = FAR - FRR along the segment, linear from g0 to g1.
        g0, g1 = fpr[i - 1] + tpr[i - 1] - 1.0, fpr[i] + tpr[i] - 1.0
        if g0 <= 0.0 <= g1:
            if g0 == 0.0:
                ref = fpr[i - 1]
            elif g1 == 0.0:
                ref = fpr[i]
            else:
                w = g0 / (g0 - g1)
                ref = (1 - w) * fpr[i - 1] + w * fpr[i]
            break
    got = V.eer(d, s)
    assert got == pytest.approx(ref, abs=1e-12)
    # At the EER point the interpolated FRR equals the FAR.
    assert 0.0 <= got <= 1.0


# === Bad input shared by every function ===


@pytest.mark.parametrize(
    "fn", [V.best_threshold, V.roc_curve, V.auc, V.eer, V.kfold_verification, V.val_far]
)
def test_bad_distances_and_labels(fn):
    with pytest.raises(ValueError, match=r"len\(distances\)=3, len\(same\)=2"):
        fn([0.1, 0.2, 0.3], [1, 0])
    with pytest.raises(ValueError, match="must not be empty"):
        fn([], [])
    with pytest.raises(ValueError, match=r"values \[2.0\]"):
        fn([0.1, 0.2, 0.3], [1, 0, 2])
    with pytest.raises(ValueError, match="NaN/inf"):
        fn([0.1, np.nan, 0.3], [1, 0, 1])
    with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
        fn(np.zeros((2, 2)), [1, 0])


def test_accuracy_at_threshold_bad_threshold():
    with pytest.raises(ValueError, match="threshold='x'"):
        V.accuracy_at_threshold([0.1], [1], "x")
