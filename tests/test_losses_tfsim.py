"""Multi-similarity and circle losses against TF Similarity's values and gradients and numpy loops."""

from __future__ import annotations

import json
import pathlib

import keras
import numpy as np
import pytest
from helpers import assert_all_finite, load_npz, scalar, value_and_grad
from keras import ops
from references import circle as _ref_circle
from references import multi_similarity as _ref_ms

from fsl import losses

pytestmark = pytest.mark.backend_agnostic

METRICS = ["angular", "L2", "squared-L2"]
TFSIM = pathlib.Path(__file__).parent / "fixtures" / "tfsim_losses.npz"
FUNCTIONS = {"ms": losses.multi_similarity_loss, "circle": losses.circle_loss}


@pytest.fixture(scope="module")
def tfsim():
    return load_npz(TFSIM)


def tfsim_cosine(embeddings):
    """TF Similarity's "cosine" distance: 1 - a . b, for normalised rows, not renormalised."""
    return ops.maximum(1.0 - ops.matmul(embeddings, ops.transpose(embeddings)), 0.0)


# === numpy references (explicit loops, float64) ===


def _batch(seed, b=16, d=6, classes=4, spread=0.8):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=b).astype("int32")
    labels[:2] = labels[0]
    labels[2] = (labels[0] + 1) % classes
    x = rng.normal(size=(classes, d))[labels] + spread * rng.normal(size=(b, d))
    return labels, (x / np.linalg.norm(x, axis=1, keepdims=True)).astype("float32")


# === TF Similarity 0.17 (tests/fixtures/make_tfsim_losses.py) ===


@pytest.mark.parametrize("kind", ["ms", "circle"])
@pytest.mark.parametrize("case", range(6))
def test_values_and_gradients_match_tf_similarity(tfsim, kind, case):
    labels, x = tfsim[f"{kind}{case}_labels"], tfsim[f"{kind}{case}_embeddings"]
    params = tfsim[f"{kind}{case}_params"].tolist()
    want, want_grad = float(tfsim[f"{kind}{case}_loss"]), tfsim[f"{kind}{case}_grad"]
    fn = FUNCTIONS[kind]
    scale = max(np.abs(want_grad).max(), 1e-3)
    # With TF Similarity's own cosine (no renormalisation) the gradient is TF
    # Similarity's; fsl's "angular" normalises the rows, so its gradient is
    # that gradient with the radial part removed (same value).
    value, (grad,) = value_and_grad(lambda e: fn(labels, e, *params, tfsim_cosine), x)
    assert float(value) == pytest.approx(want, rel=1e-5, abs=1e-7)
    np.testing.assert_allclose(grad, want_grad, atol=2e-6 * scale)
    value, (grad,) = value_and_grad(lambda e: fn(labels, e, *params), x)
    assert float(value) == pytest.approx(want, rel=1e-5, abs=1e-7)
    tangent = want_grad - np.sum(want_grad * x, axis=1, keepdims=True) * x
    np.testing.assert_allclose(grad, tangent, atol=2e-6 * scale)
    loss = (losses.MultiSimilarityLoss if kind == "ms" else losses.CircleLoss)(*params)
    assert scalar(loss(labels, x)) == pytest.approx(want, rel=1e-5, abs=1e-7)


def test_tf_similarity_fixture_agrees_with_the_loops(tfsim):
    assert "tfsim 0.17.1" in str(tfsim["versions"])
    for case in range(6):
        labels, x = tfsim[f"ms{case}_labels"], tfsim[f"ms{case}_embeddings"]
        assert _ref_ms(labels, x, *tfsim[f"ms{case}_params"].tolist()) == pytest.approx(
            float(tfsim[f"ms{case}_loss"]), rel=1e-5, abs=1e-7)
        labels, x = tfsim[f"circle{case}_labels"], tfsim[f"circle{case}_embeddings"]
        assert _ref_circle(labels, x, *tfsim[f"circle{case}_params"].tolist()) == pytest.approx(
            float(tfsim[f"circle{case}_loss"]), rel=1e-5)


# === numpy references, every metric ===


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multi_similarity_matches_reference(metric, seed):
    labels, x = _batch(seed, spread=[0.3, 0.8, 2.0][seed])
    params = (2.0, 40.0, 0.1, 0.5, 1.0)
    want = _ref_ms(labels, x, *params, metric)
    got = scalar(losses.multi_similarity_loss(labels, x, *params, distance_metric=metric))
    assert got == pytest.approx(want, rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_circle_matches_reference(metric, seed):
    labels, x = _batch(seed, spread=[0.3, 0.8, 2.0][seed])
    want = _ref_circle(labels, x, 80.0, 0.4, metric)
    got = scalar(losses.circle_loss(labels, x, 80.0, 0.4, distance_metric=metric))
    assert got == pytest.approx(want, rel=1e-4)


def test_multi_similarity_by_hand():
    # Two classes on two orthogonal axes, two points each, identical within a
    # class: each anchor has one positive at angular distance 0 and two
    # negatives at 1. A positive is kept only if farther than the closest
    # negative minus epsilon (0 > 1 - 0.1: no), so nothing is kept: loss 0.
    x = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], "float32")
    labels = np.array([0, 0, 1, 1])
    assert scalar(losses.multi_similarity_loss(labels, x)) == 0.0
    # With epsilon = 1.5 every pair is kept; alpha = 2, beta = 4 (so that the
    # negative term is not negligible), lmda = 0.5: per anchor
    # log(1 + e^(2 (0 - 0.5))) / 2 + log(1 + 2 e^(-4 (1 - 0.5))) / 4.
    want = np.log1p(np.exp(-1.0)) / 2 + np.log1p(2 * np.exp(-2.0)) / 4
    got = losses.multi_similarity_loss(labels, x, alpha=2.0, beta=4.0, epsilon=1.5)
    assert scalar(got) == pytest.approx(want, rel=1e-6)


def test_circle_by_hand():
    # Same layout: one positive at D = 0 (weight m + 0), two negatives at D = 1
    # (weight 1 + m - 1); m = 0.25, gamma = 4, per anchor:
    # log(1 + e^(-4 * 0.25 * 0.25)) + log(1 + 2 e^(4 * 0.25 * (1 - 0.25 - 1))).
    x = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], "float32")
    want = np.log1p(np.exp(-0.25)) + np.log1p(2 * np.exp(-0.25))
    assert scalar(losses.circle_loss([0, 0, 1, 1], x, gamma=4.0, margin=0.25)) == pytest.approx(
        want, rel=1e-6)


# === edge cases ===


EDGE = {
    "no_positive_pair": (np.arange(6), np.random.default_rng(0).normal(size=(6, 4))),
    "single_class": (np.zeros(6, int), np.random.default_rng(1).normal(size=(6, 4))),
    "batch_of_one": (np.array([3]), np.ones((1, 4))),
    "identical_embeddings": (np.array([0, 0, 1, 1, 2, 2]), np.ones((6, 4))),
}


@pytest.mark.parametrize("kind", ["ms", "circle"])
@pytest.mark.parametrize("case", list(EDGE))
@pytest.mark.parametrize("metric", METRICS)
def test_edge_cases_give_finite_value_and_gradient(kind, case, metric):
    labels, x = EDGE[case]
    value, (grad,) = value_and_grad(
        lambda e: FUNCTIONS[kind](labels, e, distance_metric=metric), x.astype("float32")
    )
    assert_all_finite(value, grad)
    if case != "identical_embeddings":
        assert float(value) == 0.0
        np.testing.assert_array_equal(grad, 0.0)
    else:
        ref = _ref_ms if kind == "ms" else _ref_circle
        args = (2.0, 40.0, 0.1, 0.5, 1.0) if kind == "ms" else (80.0, 0.4)
        assert float(value) == pytest.approx(ref(labels, x, *args, metric), rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_input_computes_in_float32(dtype):
    labels, x = _batch(3)
    x_low = ops.convert_to_numpy(ops.cast(ops.cast(x, dtype), "float32"))
    for kind, ref, args in (("ms", _ref_ms, (2.0, 40.0, 0.1, 0.5, 1.0)),
                            ("circle", _ref_circle, (80.0, 0.4))):
        low = FUNCTIONS[kind](labels, ops.cast(x, dtype))
        assert keras.backend.standardize_dtype(low.dtype) == "float32"
        assert scalar(low) == pytest.approx(ref(labels, x_low, *args), rel=3e-2)


# === serialization and training ===


@pytest.mark.parametrize("loss", [
    losses.MultiSimilarityLoss(alpha=1.5, beta=30.0, epsilon=0.2, lmda=0.6, center=1.0),
    losses.CircleLoss(gamma=64.0, margin=0.25, distance_metric="L2"),
], ids=["ms", "circle"])
def test_config_round_trip_and_a_model_that_fits_and_reloads(loss, tmp_path):
    config = loss.get_config()
    json.dumps(config)
    labels, x = _batch(4)
    for clone in (keras.losses.deserialize(keras.losses.serialize(loss)),
                  type(loss).from_config(config)):
        assert clone.get_config() == config
        assert scalar(clone(labels, x)) == pytest.approx(scalar(loss(labels, x)), rel=1e-6)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4),
                              keras.layers.UnitNormalization()])
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=loss)
    before = scalar(loss(labels, model(x)))
    history = model.fit(x, labels, batch_size=16, epochs=5, shuffle=False, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert scalar(loss(labels, model(x))) < before
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    assert type(reloaded.loss) is type(loss) and reloaded.loss.get_config() == config


@pytest.mark.parametrize("factory, match", [
    (lambda: losses.MultiSimilarityLoss(alpha=0), "alpha=0"),
    (lambda: losses.MultiSimilarityLoss(beta=-1.0), "beta=-1.0"),
    (lambda: losses.MultiSimilarityLoss(epsilon=-0.1), "epsilon=-0.1"),
    (lambda: losses.MultiSimilarityLoss(lmda=float("nan")), "lmda=nan"),
    (lambda: losses.MultiSimilarityLoss(center="1"), "center='1'"),
    (lambda: losses.CircleLoss(gamma=0.0), "gamma=0.0"),
    (lambda: losses.CircleLoss(margin=-0.4), "margin=-0.4"),
    (lambda: losses.CircleLoss(distance_metric="manhattan"), "metric='manhattan'"),
    (lambda: losses.circle_loss([0, 0, 1], np.zeros(3, "float32")), r"y_pred.shape=\(3,\)"),
])
def test_bad_arguments_are_rejected_with_the_value_received(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()
