"""fsl.evaluation.landmarks: NME, failure rate and attribute accuracy against
hand-derived values and loop references."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fsl.evaluation import landmarks as L

# Target face: eyes at (0, 0) and (10, 0) (inter-ocular distance 10), nose
# (5, 5), mouth corners (2, 9) and (8, 9). Layout x1..x5, y1..y5.
TARGET = [0.0, 10.0, 5.0, 2.0, 8.0, 0.0, 0.0, 5.0, 9.0, 9.0]


def _loop_nme(pred, target):
    out = []
    for p, t in zip(pred, target):
        iod = math.hypot(t[0] - t[1], t[5] - t[6])
        errors = [math.hypot(p[j] - t[j], p[5 + j] - t[5 + j]) / iod for j in range(5)]
        out.append(sum(errors) / 5)
    return out


def test_hand_derived_nme_and_failure():
    good = list(TARGET)
    good[0] += 3.0  # left eye moved by (3, 4): error 5 / 10 = 0.5
    good[5] += 4.0
    bad = list(TARGET)
    for j in range(5):  # every landmark moved by (0, 2): 0.2 each
        bad[5 + j] += 2.0
    per_image, mean = L.normalized_mean_error([good, bad, TARGET], [TARGET] * 3)
    np.testing.assert_allclose(per_image, [0.1, 0.2, 0.0])
    assert mean == pytest.approx(0.1)
    # 0.1 is not > 0.1: only the second image fails.
    assert L.failure_rate([good, bad, TARGET], [TARGET] * 3) == pytest.approx(1 / 3)
    assert L.failure_rate([good, bad, TARGET], [TARGET] * 3, threshold=0.05) == pytest.approx(
        2 / 3
    )


def test_nme_matches_loop_and_is_scale_invariant():
    rng = np.random.default_rng(0)
    target = rng.uniform(0, 100, size=(20, 10))
    pred = target + rng.normal(scale=3.0, size=(20, 10))
    per_image, mean = L.normalized_mean_error(pred, target)
    np.testing.assert_allclose(per_image, _loop_nme(pred, target))
    assert mean == pytest.approx(np.mean(_loop_nme(pred, target)))
    scaled, _ = L.normalized_mean_error(2.5 * pred + 7.0, 2.5 * target + 7.0)
    np.testing.assert_allclose(scaled, per_image)


def test_attribute_accuracy_forms():
    target = {"gender": [0, 1, 1, 0], "pose": [2, 0, 4, 2]}
    pred = {
        "gender": [0.2, 0.7, 0.4, 0.1],  # P(class 1) cut at 0.5: 0 1 0 0 -> 3/4
        "pose": np.eye(5)[[2, 0, 4, 1]] * 0.9,  # [N, 5] scores: 3/4
        "extra": [1, 1, 1, 1],
    }
    assert L.attribute_accuracy(pred, target) == {"gender": 0.75, "pose": 0.75}
    labels = np.array([[0, 2], [1, 0], [1, 4], [0, 2]])
    assert L.attribute_accuracy(labels[::-1], labels) == {0: 1.0, 1: 0.5}
    assert L.attribute_accuracy([[0, 1, 1, 1]], [[0, 1, 1, 0]]) == {0: 0.75}


def test_landmark_report_is_json_and_consistent():
    rng = np.random.default_rng(1)
    target = rng.uniform(0, 100, size=(15, 10))
    pred = target + rng.normal(scale=6.0, size=(15, 10))
    report = L.landmark_report(
        pred, target, {"smile": [1] * 15}, {"smile": [1] * 5 + [0] * 10}
    )
    json.dumps(report)
    loop = _loop_nme(pred, target)
    assert report["mean_error"] == pytest.approx(np.mean(loop))
    assert report["failure_rate"] == pytest.approx(np.mean(np.array(loop) > 0.1))
    assert np.mean(list(report["per_landmark_error"].values())) == pytest.approx(
        report["mean_error"]
    )
    assert list(report["per_landmark_error"]) == list(L.LANDMARK_NAMES)
    assert report["attribute_accuracy"] == {"smile": pytest.approx(1 / 3)}
    assert report["n_images"] == 15


def test_bad_input():
    with pytest.raises(ValueError, match=r"shape \(1, 8\)"):
        L.normalized_mean_error(np.zeros((1, 8)), np.zeros((1, 8)))
    with pytest.raises(ValueError, match=r"pred.shape=\(2, 10\), target.shape=\(1, 10\)"):
        L.normalized_mean_error(np.zeros((2, 10)), [TARGET])
    with pytest.raises(ValueError, match=r"target rows \[1\]"):
        L.normalized_mean_error([TARGET] * 2, [TARGET, [0.0] * 10])
    with pytest.raises(ValueError, match="threshold=0.0"):
        L.failure_rate([TARGET], [TARGET], threshold=0)
    with pytest.raises(ValueError, match=r"lacks the attributes \['pose'\]"):
        L.attribute_accuracy({"smile": [0]}, {"smile": [0], "pose": [1]})
    with pytest.raises(ValueError, match="3 predictions, 2 targets"):
        L.attribute_accuracy({"smile": [0, 1, 1]}, {"smile": [0, 1]})
    with pytest.raises(ValueError, match="must be given together"):
        L.landmark_report([TARGET], [TARGET], pred_attributes={"smile": [0]})
