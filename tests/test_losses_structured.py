"""Lifted-structure and N-pairs losses against TFA values, numpy references and hand values."""

from __future__ import annotations

import json
import pathlib

import keras
import numpy as np
import pytest
from helpers import assert_all_finite, load_npz, scalar, value_and_grad
from keras import ops
from references import lifted as _ref_lifted
from references import npairs as _ref_npairs
from scipy.special import logsumexp

from fsl import losses

pytestmark = pytest.mark.backend_agnostic

METRICS = ["L2", "squared-L2", "angular"]
TFA = pathlib.Path(__file__).parent / "fixtures" / "tfa_lifted_npairs.npz"


@pytest.fixture(scope="module")
def tfa():
    return load_npz(TFA)


# === numpy references (explicit loops, float64) ===


def _ref_multilabel(indicators, logits):
    rows = []
    for i in range(len(indicators)):
        shared = np.array([np.sum(indicators[i] * indicators[j]) for j in range(len(indicators))],
                          np.float64)
        if shared.sum() == 0:
            continue  # fsl: rows with no label are left out (TFA: NaN)
        log_p = logits[i] - logsumexp(logits[i].astype(np.float64))
        rows.append(-np.sum(shared / shared.sum() * log_p))
    return float(np.mean(rows)) if rows else 0.0


def _batch(seed, b=12, d=5, classes=4, scale=1.0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=b).astype("int32")
    labels[:2] = labels[0]
    labels[2] = (labels[0] + 1) % classes
    return labels, (scale * rng.normal(size=(b, d))).astype("float32")


# === TensorFlow Addons 0.23 values (tests/fixtures/make_tfa_lifted_npairs.py) ===


@pytest.mark.parametrize("case", range(7))
def test_lifted_struct_loss_matches_tfa(tfa, case):
    labels, x = tfa[f"lifted{case}_labels"], tfa[f"lifted{case}_embeddings"]
    margin, want = float(tfa[f"lifted{case}_margin"]), float(tfa[f"lifted{case}_loss"])
    assert scalar(losses.lifted_struct_loss(labels, x, margin)) == pytest.approx(want, rel=1e-5)
    assert scalar(losses.LiftedStructLoss(margin=margin)(labels, x)) == pytest.approx(want, rel=1e-5)
    assert scalar(losses.LiftedStructLoss(margin)(labels[:, None], x)) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("case", range(5))
def test_npairs_loss_matches_tfa(tfa, case):
    labels, logits = tfa[f"npairs{case}_labels"], tfa[f"npairs{case}_logits"]
    want = float(tfa[f"npairs{case}_loss"])
    assert scalar(losses.npairs_loss(labels, logits)) == pytest.approx(want, rel=1e-5)
    assert scalar(losses.NpairsLoss()(labels, logits)) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("case", range(3))
def test_npairs_multilabel_loss_matches_tfa(tfa, case):
    labels, logits = tfa[f"multilabel{case}_labels"], tfa[f"multilabel{case}_logits"]
    want = float(tfa[f"multilabel{case}_loss"])
    assert scalar(losses.npairs_multilabel_loss(labels, logits)) == pytest.approx(want, rel=1e-5)
    assert scalar(losses.NpairsMultilabelLoss()(labels, logits)) == pytest.approx(want, rel=1e-5)


def test_tfa_fixture_is_what_its_script_describes(tfa):
    assert "tfa 0.23.0" in str(tfa["versions"])
    # The reference itself agrees with TFA's numbers (the fixture is not circular).
    for case in range(7):
        labels, x = tfa[f"lifted{case}_labels"], tfa[f"lifted{case}_embeddings"]
        ref = _ref_lifted(labels, x, float(tfa[f"lifted{case}_margin"]))
        assert ref == pytest.approx(float(tfa[f"lifted{case}_loss"]), rel=1e-5)
    for case in range(5):
        ref = _ref_npairs(tfa[f"npairs{case}_labels"], tfa[f"npairs{case}_logits"])
        assert ref == pytest.approx(float(tfa[f"npairs{case}_loss"]), rel=1e-5)


# === numpy references: every metric, and gradients ===


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("seed,margin,scale", [(0, 1.0, 1.0), (1, 0.3, 0.2), (2, 2.0, 3.0)])
def test_lifted_matches_reference(metric, seed, margin, scale):
    labels, x = _batch(seed, scale=scale)
    want = _ref_lifted(labels, x, margin, metric)
    assert scalar(losses.lifted_struct_loss(labels, x, margin, metric)) == pytest.approx(
        want, rel=1e-4, abs=1e-6
    )


def test_lifted_gradient_matches_finite_differences():
    labels, x = _batch(3, b=8, d=3)
    _, (grad,) = value_and_grad(lambda e: losses.lifted_struct_loss(labels, e, 1.0), x)
    x64, eps = x.astype(np.float64), 1e-5
    numeric = np.zeros_like(x64)
    for idx in np.ndindex(*x.shape):
        up, down = x64.copy(), x64.copy()
        up[idx] += eps
        down[idx] -= eps
        numeric[idx] = (_ref_lifted(labels, up, 1.0) - _ref_lifted(labels, down, 1.0)) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-3, atol=1e-4)


def test_lifted_far_apart_embeddings_do_not_underflow():
    # Distances of hundreds: every exp(margin - D) is 0 in float32, so a plain
    # log(sum(exp(...))) is log(0) = -inf; the loss must still be the float64
    # reference's, with finite gradients.
    labels, x = _batch(4, scale=100.0)
    value, (grad,) = value_and_grad(lambda e: losses.lifted_struct_loss(labels, e, 1.0), x)
    assert float(value) == pytest.approx(_ref_lifted(labels, x, 1.0), rel=1e-4)
    assert_all_finite(grad)
    assert np.abs(grad).max() > 0


def test_lifted_on_the_unit_sphere_never_reaches_zero():
    # The docstring's bound: distances <= 2 on the sphere, so with n negatives
    # per row J_ij >= log(2 n) + margin - 2 + D_ij. Best case for the loss:
    # each class on one point, the two classes antipodal (every D_ik = 2).
    x = np.array([[1.0, 0.0]] * 3 + [[-1.0, 0.0]] * 3, "float32")
    labels = np.array([0, 0, 0, 1, 1, 1])
    n, margin = 3, 1.0
    bound = 0.5 * (np.log(2 * n) + margin - 2.0) ** 2
    assert scalar(losses.lifted_struct_loss(labels, x, margin)) == pytest.approx(bound, rel=1e-5)
    assert _ref_lifted(labels, x, margin) == pytest.approx(bound, rel=1e-9)


def test_npairs_matches_reference_with_repeated_classes_and_large_logits():
    rng = np.random.default_rng(5)
    labels = np.array([0, 1, 2, 0, 1, 3, 4, 4], "int32")
    for scale in (1.0, 100.0):
        logits = (scale * rng.normal(size=(8, 8))).astype("float32")
        value, (grad,) = value_and_grad(lambda z: losses.npairs_loss(labels, z), logits)
        assert float(value) == pytest.approx(_ref_npairs(labels, logits), rel=1e-4)
        assert_all_finite(grad)
        # d loss / d logits[i] = (softmax(logits[i]) - targets[i]) / B
        p = np.exp(logits - logsumexp(logits.astype(np.float64), axis=1, keepdims=True))
        targets = (labels[:, None] == labels[None, :]).astype(np.float64)
        targets /= targets.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(grad, (p - targets) / 8, atol=1e-6)


def test_npairs_by_hand():
    # two classes, logits 2 on the diagonal: each row's loss is log(1 + e^-2)
    logits = np.array([[2.0, 0.0], [0.0, 2.0]], "float32")
    assert scalar(losses.npairs_loss([0, 1], logits)) == pytest.approx(np.log1p(np.exp(-2.0)))
    # same class: the target is (1/2, 1/2) whatever the logits -> log 2 at equal logits
    assert scalar(losses.npairs_loss([5, 5], np.zeros((2, 2), "float32"))) == pytest.approx(np.log(2))


def _ref_npairs_embeddings(labels, anchors, positives, reg_lambda):
    """tf.contrib's npairs_loss: cross-entropy of a @ p.T plus reg/4 (mean |a|^2 + mean |p|^2)."""
    a, p = anchors.astype(np.float64), positives.astype(np.float64)
    logits = np.array([[a[i] @ p[j] for j in range(len(p))] for i in range(len(a))])
    penalty = np.mean([v @ v for v in a]) + np.mean([v @ v for v in p])
    return _ref_npairs(labels, logits) + 0.25 * reg_lambda * penalty


@pytest.mark.parametrize("reg_lambda", [0.0, 0.002, 0.5])
def test_npairs_from_embeddings_matches_reference(reg_lambda):
    rng = np.random.default_rng(13)
    labels = np.array([3, 1, 4, 0, 2, 5, 1], "int32")  # class 1 twice
    a, p = rng.normal(size=(2, 7, 6)).astype("float32")
    want = _ref_npairs_embeddings(labels, a, p, reg_lambda)
    got = losses.npairs_loss_from_embeddings(labels, a, p, reg_lambda)
    assert scalar(got) == pytest.approx(want, rel=1e-5)
    stacked = np.stack([a, p], axis=1)
    loss = losses.PairNpairsLoss(reg_lambda=reg_lambda)
    assert scalar(loss(labels, stacked)) == pytest.approx(want, rel=1e-5)
    value, grads = value_and_grad(
        lambda x, y: losses.npairs_loss_from_embeddings(labels, x, y, reg_lambda), a, p
    )
    assert_all_finite(value, grads)
    # the penalty's share of the gradient: reg / 4 * 2 a_i / B on top of the
    # cross-entropy's; check it against the reg = 0 gradient
    _, base = value_and_grad(
        lambda x, y: losses.npairs_loss_from_embeddings(labels, x, y, 0.0), a, p
    )
    np.testing.assert_allclose(grads[0] - base[0], reg_lambda * a / (2 * 7), atol=1e-6)


def test_multilabel_rows_without_labels_are_left_out():
    rng = np.random.default_rng(6)
    indicators = np.array([[1, 0, 1], [0, 0, 0], [0, 1, 1], [1, 0, 0]], "int32")
    logits = rng.normal(size=(4, 4)).astype("float32")
    want = _ref_multilabel(indicators, logits)
    value, (grad,) = value_and_grad(
        lambda z: losses.npairs_multilabel_loss(indicators, z), logits
    )
    assert float(value) == pytest.approx(want, rel=1e-5)
    assert_all_finite(grad)
    np.testing.assert_array_equal(grad[1], 0.0)
    empty, (grad,) = value_and_grad(
        lambda z: losses.npairs_multilabel_loss(np.zeros((4, 3)), z), logits
    )
    assert float(empty) == 0.0
    np.testing.assert_array_equal(grad, 0.0)


def test_multilabel_equals_npairs_on_one_hot_labels():
    rng = np.random.default_rng(7)
    labels = np.array([0, 2, 1, 2, 0, 3])
    logits = rng.normal(size=(6, 6)).astype("float32")
    one_hot = np.eye(4, dtype="int32")[labels]
    assert scalar(losses.npairs_multilabel_loss(one_hot, logits)) == pytest.approx(
        scalar(losses.npairs_loss(labels, logits)), rel=1e-6
    )


def test_permuting_the_batch_leaves_the_losses_unchanged():
    labels, x = _batch(8)
    perm = np.random.default_rng(8).permutation(len(labels))
    for metric in METRICS:
        assert scalar(losses.lifted_struct_loss(labels[perm], x[perm], 1.0, metric)) == pytest.approx(
            scalar(losses.lifted_struct_loss(labels, x, 1.0, metric)), rel=1e-5
        )
    logits = x @ x[::-1].T
    assert scalar(losses.npairs_loss(labels[perm], logits[perm][:, perm])) == pytest.approx(
        scalar(losses.npairs_loss(labels, logits)), rel=1e-5
    )


# === edge cases ===


LIFTED_EDGE = {
    "no_positive_pair": (np.arange(6), np.random.default_rng(0).normal(size=(6, 4))),
    "single_class": (np.zeros(6, int), np.random.default_rng(1).normal(size=(6, 4))),
    "batch_of_one": (np.array([3]), np.ones((1, 4))),
    "identical_embeddings": (np.array([0, 0, 1, 1, 2, 2]), np.ones((6, 4))),
    "duplicates": (np.array([0, 0, 1, 1]), np.array([[1, 0], [1, 0], [1, 0], [0, 1]], float)),
}


@pytest.mark.parametrize("case", list(LIFTED_EDGE))
@pytest.mark.parametrize("metric", METRICS)
def test_lifted_edge_cases_give_finite_value_and_gradient(case, metric):
    labels, x = LIFTED_EDGE[case]
    value, (grad,) = value_and_grad(
        lambda e: losses.lifted_struct_loss(labels, e, 1.0, metric), x.astype("float32")
    )
    assert_all_finite(value, grad)
    if case in ("no_positive_pair", "single_class", "batch_of_one"):
        assert float(value) == 0.0
        np.testing.assert_array_equal(grad, 0.0)
    elif case == "identical_embeddings":
        # every distance 0: J = log(4 e^m + 4 e^m) = m + log 8 for each positive pair
        assert float(value) == pytest.approx((1.0 + np.log(8.0)) ** 2 / 2, rel=1e-5)
    else:
        want = _ref_lifted(labels, x, 1.0, metric)
        assert float(value) == pytest.approx(want, rel=1e-4)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_input_computes_in_float32(dtype):
    labels, x = _batch(9)
    low = losses.lifted_struct_loss(labels, ops.cast(x, dtype), 1.0)
    assert keras.backend.standardize_dtype(low.dtype) == "float32"
    x_low = ops.convert_to_numpy(ops.cast(ops.cast(x, dtype), "float32"))
    assert scalar(low) == pytest.approx(_ref_lifted(labels, x_low, 1.0), rel=2e-2)
    logits = x @ x.T
    low = losses.npairs_loss(labels, ops.cast(logits, dtype))
    assert keras.backend.standardize_dtype(low.dtype) == "float32"
    assert scalar(low) == pytest.approx(_ref_npairs(labels, logits), rel=2e-2)


def test_unknown_batch_size_in_tf_graph_matches_eager():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("unknown static batch size only arises in TensorFlow graphs")
    import tensorflow as tf

    labels, x = _batch(10)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32),
                                  tf.TensorSpec([None, None], tf.float32)])
    def graph(y, e):
        return losses.lifted_struct_loss(y, e), losses.npairs_loss(y, e @ tf.transpose(e))

    lifted, npairs = graph(tf.constant(labels), tf.constant(x))
    assert float(lifted) == pytest.approx(_ref_lifted(labels, x, 1.0), rel=1e-4)
    assert float(npairs) == pytest.approx(_ref_npairs(labels, x @ x.T), rel=1e-4)


# === serialization and training ===


@pytest.mark.parametrize(
    "loss",
    [losses.LiftedStructLoss(margin=0.7, distance_metric="angular"),
     losses.NpairsLoss(), losses.NpairsMultilabelLoss(name="ml"),
     losses.PairNpairsLoss(reg_lambda=0.01)],
    ids=["lifted", "npairs", "multilabel", "pair-npairs"],
)
def test_config_round_trip(loss):
    config = loss.get_config()
    json.dumps(config)
    labels, x = _batch(11, b=6, d=6)
    y = np.eye(4, dtype="int32")[labels] if isinstance(loss, losses.NpairsMultilabelLoss) else labels
    if isinstance(loss, losses.PairNpairsLoss):
        x = x.reshape(6, 2, 3)
    for clone in (keras.losses.deserialize(keras.losses.serialize(loss)),
                  type(loss).from_config(config)):
        assert type(clone) is type(loss)
        assert clone.get_config() == config
        assert scalar(clone(y, x)) == pytest.approx(scalar(loss(y, x)), rel=1e-6)


def test_model_with_lifted_loss_fits_saves_and_reloads(tmp_path):
    labels = np.repeat(np.arange(4), 4).astype("int32")
    x = np.random.default_rng(12).normal(size=(16, 6)).astype("float32")
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)])
    loss = losses.LiftedStructLoss(margin=0.5)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=loss)
    before = scalar(loss(labels, model(x)))
    history = model.fit(x, labels, batch_size=16, epochs=5, shuffle=False, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert scalar(loss(labels, model(x))) < before  # the loss goes down on its batch
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    assert type(reloaded.loss) is losses.LiftedStructLoss
    assert reloaded.loss.get_config() == loss.get_config()


# === errors ===


def test_bad_inputs_are_rejected_with_the_value_received():
    with pytest.raises(ValueError, match="Received: margin=-1"):
        losses.LiftedStructLoss(margin=-1)
    with pytest.raises(ValueError, match="metric='manhattan'"):
        losses.lifted_struct_loss([0, 0, 1], np.zeros((3, 2)), distance_metric="manhattan")
    with pytest.raises(ValueError, match=r"y_pred.shape=\(4,\)"):
        losses.lifted_struct_loss([0, 0, 1, 1], np.zeros(4, "float32"))
    with pytest.raises(ValueError, match=r"y_pred.shape=\(4, 3\)"):
        losses.npairs_loss([0, 1, 2, 3], np.zeros((4, 3), "float32"))
    with pytest.raises(ValueError, match=r"y_pred.shape=\(4,\)"):
        losses.NpairsLoss()(np.arange(4), np.zeros(4, "float32"))
    with pytest.raises(ValueError, match=r"y_true.shape=\(4,\)"):
        losses.npairs_multilabel_loss(np.arange(4), np.zeros((4, 4), "float32"))
    with pytest.raises(ValueError, match="Received: reg_lambda=-0.1"):
        losses.PairNpairsLoss(reg_lambda=-0.1)
    with pytest.raises(ValueError, match="Received: reg_lambda=nan"):
        losses.npairs_loss_from_embeddings([0], np.ones((1, 2)), np.ones((1, 2)), float("nan"))
    with pytest.raises(ValueError, match=r"y_pred.shape=\(4, 3, 2\)"):
        losses.PairNpairsLoss()(np.arange(4), np.zeros((4, 3, 2), "float32"))
