"""fsl.evaluation.recognition: the four-employees open-set scenario by hand,
and a loop reference for identification, scoring and threshold choice."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fsl.evaluation.recognition import Gallery, choose_threshold, evaluate_open_set

EMPLOYEES = {"ana": (0, 0), "bo": (10, 0), "cy": (0, 10), "dan": (10, 10)}


def _four_employees(mode="mean"):
    gallery = Gallery(mode=mode)
    for name, (x, y) in EMPLOYEES.items():
        # Two photos each, 1 apart: their mean is the employee's centre.
        gallery.enroll([[x - 0.5, y], [x + 0.5, y]], name)
    queries = np.array([[1, 0], [10, 2], [0, 13], [6, 6], [5, 5], [20, 20]], float)
    # Nearest distances: 1, 2, 3, sqrt(32) (dan), sqrt(50) (eve, equidistant:
    # first enrolled = ana), sqrt(200) (fay).
    names = ["ana", "bo", "cy", "dan", "eve", None]
    return gallery, queries, names


def test_four_employees_hand_derived():
    gallery, queries, names = _four_employees()
    got, distances = gallery.identify(queries, threshold=4.0)
    assert got == ["ana", "bo", "cy", None, None, None]
    np.testing.assert_allclose(
        distances, [1, 2, 3, math.sqrt(32), math.sqrt(50), math.sqrt(200)]
    )
    out = evaluate_open_set(gallery, queries, names, threshold=4.0)
    assert out == {
        "accuracy": pytest.approx(5 / 6),
        "false_accept_rate": 0.0,
        "false_reject_rate": 0.25,
        "misidentification_rate": 0.0,
        "known_accuracy": 0.75,
        "n_known": 4,
        "n_unknown": 2,
        "threshold": 4.0,
    }
    out = evaluate_open_set(gallery, queries, names, threshold=7.5)
    assert out["accuracy"] == pytest.approx(5 / 6)
    assert out["false_accept_rate"] == 0.5 and out["false_reject_rate"] == 0.0
    out = evaluate_open_set(gallery, queries, names, threshold=None)  # closed set
    assert out["accuracy"] == pytest.approx(4 / 6) and out["false_accept_rate"] == 1.0
    # Accepting up to dan (5.66) and rejecting eve (7.07) answers all six right.
    t = choose_threshold(gallery, queries, names)
    assert t == pytest.approx((math.sqrt(32) + math.sqrt(50)) / 2)
    assert evaluate_open_set(gallery, queries, names, t)["accuracy"] == 1.0
    assert choose_threshold(gallery, queries, names, far_target=0.5) == pytest.approx(
        math.sqrt(50)
    )
    assert choose_threshold(gallery, queries, names, far_target=0.0) == pytest.approx(
        math.sqrt(32)
    )


def test_mean_and_all_modes_differ_as_documented():
    photos = [[0.0, 0.0], [4.0, 0.0]]
    mean = Gallery(mode="mean").enroll(photos, "ana")
    every = Gallery(mode="all").enroll(photos, "ana")
    query = [[0.0, 0.0]]
    assert mean.nearest(query)[1][0] == pytest.approx(2.0)  # to the mean (2, 0)
    assert every.nearest(query)[1][0] == pytest.approx(0.0)  # to the closest photo
    # Angular mean mode averages L2-normalised photos: (1,0) and (0,3) -> (.5,.5).
    angular = Gallery(metric="angular").enroll([[1.0, 0.0], [0.0, 3.0]], "ana")
    assert angular.nearest([[1.0, 1.0]])[1][0] == pytest.approx(0.0, abs=1e-12)
    assert len(angular) == 1 and "ana" in angular and "bo" not in angular


def _loop_nearest(templates, names, q):
    best = None
    for template, name in zip(templates, names):
        d = math.dist(template, q)
        if best is None or d < best[1]:
            best = (name, d)
    return best


def _loop_accuracy(templates, names, queries, truth, t):
    correct = 0
    for q, true in zip(queries, truth):
        name, d = _loop_nearest(templates, names, q)
        answer = name if d <= t else None
        expected = true if true in names else None
        correct += answer == expected
    return correct / len(queries)


def test_scoring_and_threshold_match_loop_reference():
    rng = np.random.default_rng(0)
    centers = 3.0 * rng.normal(size=(8, 5))
    enrolled = [f"p{i}" for i in range(5)]  # p5..p7 are strangers
    gallery = Gallery(mode="all")
    for i, name in enumerate(enrolled):
        gallery.enroll(centers[i] + 0.5 * rng.normal(size=(3, 5)), name)
    truth = [f"p{i}" for i in rng.integers(0, 8, 60)]
    queries = np.stack([centers[int(n[1:])] for n in truth]) + rng.normal(size=(60, 5))
    templates, template_names = gallery.templates()
    t = choose_threshold(gallery, queries, truth)
    got = evaluate_open_set(gallery, queries, truth, t)
    assert got["accuracy"] == pytest.approx(
        _loop_accuracy(templates, template_names, queries, truth, t)
    )
    # No threshold does better: try every nearest distance and the midpoints.
    ds = sorted(_loop_nearest(templates, template_names, q)[1] for q in queries)
    candidates = [ds[0] - 1] + [(a + b) / 2 for a, b in zip(ds, ds[1:])] + [ds[-1]]
    best = max(_loop_accuracy(templates, template_names, queries, truth, c) for c in candidates)
    assert got["accuracy"] == pytest.approx(best)
    assert 0.5 < best < 1.0  # a case where the threshold matters
    # The far_target threshold: FAR <= target, and no larger distance keeps it.
    t_far = choose_threshold(gallery, queries, truth, far_target=0.2)
    assert evaluate_open_set(gallery, queries, truth, t_far)["false_accept_rate"] <= 0.2
    next_up = min([d for d in ds if d > t_far], default=None)
    if next_up is not None:
        assert evaluate_open_set(gallery, queries, truth, next_up)["false_accept_rate"] > 0.2


def test_bad_input():
    with pytest.raises(ValueError, match="mode='median'"):
        Gallery(mode="median")
    with pytest.raises(ValueError, match="gallery is empty"):
        Gallery().identify([[0.0]])
    gallery = Gallery().enroll([[0.0, 1.0]], ["ana"])
    with pytest.raises(ValueError, match="2 names for 1 embeddings"):
        gallery.enroll([[0.0, 1.0]], ["ana", "bo"])
    with pytest.raises(ValueError, match="dimension 3, gallery has 2"):
        gallery.enroll([[0.0, 1.0, 2.0]], "bo")
    with pytest.raises(ValueError, match="must not be None"):
        gallery.enroll([[0.0, 1.0]], [None])
    with pytest.raises(ValueError, match=r"shape \(1, 3\)"):
        gallery.identify([[0.0, 1.0, 2.0]])
    with pytest.raises(ValueError, match="threshold='high'"):
        gallery.identify([[0.0, 1.0]], "high")
    with pytest.raises(ValueError, match="all 1 val_names are enrolled"):
        choose_threshold(gallery, [[0.0, 1.0]], ["ana"], far_target=0.1)
    with pytest.raises(ValueError, match="far_target=2"):
        choose_threshold(gallery, [[0.0, 1.0]], [None], far_target=2)
    with pytest.raises(ValueError, match="1 names for 2 embeddings"):
        evaluate_open_set(gallery, [[0.0, 1.0], [1.0, 1.0]], ["ana"], 1.0)
    # Rates without a denominator are None, not NaN.
    out = evaluate_open_set(gallery, [[0.0, 1.0]], ["ana"], 1.0)
    assert out["false_accept_rate"] is None and out["accuracy"] == 1.0


@pytest.mark.parametrize("mode", ["mean", "all"])
def test_gallery_with_cohort_uses_s_norm(mode):
    from fsl.evaluation import s_norm_distances

    rng = np.random.default_rng(7)
    enrolled = rng.normal(size=(6, 5))
    names = ["ana", "ana", "bo", "bo", "cy", "dee"]
    cohort = rng.normal(size=(9, 5))
    queries = rng.normal(size=(4, 5))
    gallery = Gallery(mode=mode, cohort=cohort).enroll(enrolled, names)
    templates, template_names = gallery.templates()
    got_names, got = gallery.nearest(queries)
    for q, (name, distance) in enumerate(zip(got_names, got)):
        # Reference: each (query, template) pair S-normalised on its own.
        scores = [s_norm_distances(queries[q:q + 1], t[None], cohort)[0] for t in templates]
        assert distance == pytest.approx(min(scores), rel=1e-9)
        assert name == template_names[int(np.argmin(scores))]
    # Thresholds are on the S-norm scale, negative ones included.
    cut = float(np.median(got))
    answers, _ = gallery.identify(queries, threshold=cut)
    assert answers == [n if d <= cut else None for n, d in zip(got_names, got)]
    assert "cohort=9 rows" in repr(gallery)


def test_gallery_cohort_errors():
    with pytest.raises(ValueError, match="top_k=3"):
        Gallery(top_k=3)
    with pytest.raises(ValueError, match=r"cohort.shape=\(1, 2\)"):
        Gallery(cohort=[[0.0, 1.0]])
    with pytest.raises(ValueError, match="top_k=5"):
        Gallery(cohort=np.ones((4, 2)), top_k=5)
    gallery = Gallery(cohort=np.ones((4, 3))).enroll([[0.0, 1.0]], "ana")
    with pytest.raises(ValueError, match=r"dimension 2.*cohort.shape=\(4, 3\)"):
        gallery.nearest([[0.0, 1.0]])
