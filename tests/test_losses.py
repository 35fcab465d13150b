"""fsl.losses against TFA golden values and numpy brute-force references."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import assert_all_finite, ref_distance, value_and_grad
from hypothesis import given, settings
from hypothesis import strategies as st
from keras import ops
from references import REFERENCES, batch_all
from references import semihard as _ref_semihard

from fsl import distances, losses, mining

pytestmark = pytest.mark.backend_agnostic

METRICS = ["L2", "squared-L2", "angular"]
BATCH_FNS = {
    "semihard": lambda y, x, m, metric: losses.triplet_semihard_loss(y, x, m, metric),
    "hard": lambda y, x, m, metric: losses.triplet_hard_loss(y, x, m, False, metric),
    "hardsoft": lambda y, x, m, metric: losses.triplet_hard_loss(y, x, m, True, metric),
    "batchall": lambda y, x, m, metric: losses.triplet_batch_all_loss(y, x, m, metric),
}


def _f(x) -> float:
    return float(ops.convert_to_numpy(x))


# === numpy brute-force references (explicit loops, float64) ===


def _batch(seed, b=16, d=8, classes=4):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=b).astype("int32")
    labels[:2] = labels[0]  # at least one positive pair
    labels[2] = (labels[0] + 1) % classes  # and a negative
    return labels, rng.normal(size=(b, d)).astype("float32")


# === golden TFA values ===


@pytest.mark.parametrize("case", range(12))
@pytest.mark.parametrize("strategy", ["semihard", "hard", "hardsoft"])
def test_triplet_losses_match_tfa_golden(golden, case, strategy):
    labels = golden[f"case{case}_labels"]
    embeddings = golden[f"case{case}_embeddings"]
    margin = float(golden[f"case{case}_margin"])
    for metric in METRICS:
        want = float(golden[f"case{case}_{strategy}_{metric}"])
        got = _f(BATCH_FNS[strategy](labels, embeddings, margin, metric))
        if want == 0.0:
            assert got == pytest.approx(0.0, abs=1e-7), metric
        else:
            assert got == pytest.approx(want, rel=1e-5), metric


@pytest.mark.parametrize("case", range(5))
def test_contrastive_loss_matches_tfa_golden(golden, case):
    y = golden[f"contrastive{case}_y_true"]
    d = golden[f"contrastive{case}_distance"]
    margin = float(golden[f"contrastive{case}_margin"])
    want = float(golden[f"contrastive{case}_loss"])
    assert _f(losses.ContrastiveLoss(margin)(y, d)) == pytest.approx(want, rel=1e-5)
    assert _f(ops.mean(losses.contrastive_loss(y, d, margin))) == pytest.approx(
        want, rel=1e-5
    )
    # [B, 1] columns must not broadcast to [B, B].
    assert _f(losses.ContrastiveLoss(margin)(y[:, None], d)) == pytest.approx(
        want, rel=1e-5
    )


# === brute-force references ===


@pytest.mark.parametrize("strategy", list(REFERENCES))
@pytest.mark.parametrize("seed,margin", [(0, 1.0), (1, 0.2)])
def test_batch_losses_match_brute_force(strategy, seed, margin):
    labels, x = _batch(seed)
    for metric in METRICS:
        want = REFERENCES[strategy](labels, x, margin, metric)
        got = _f(BATCH_FNS[strategy](labels, x, margin, metric))
        assert got == pytest.approx(want, rel=1e-4, abs=1e-6), metric


@pytest.mark.parametrize("metric", METRICS)
def test_explicit_triplet_loss_matches_brute_force(metric):
    rng = np.random.default_rng(3)
    a, p, n = rng.normal(size=(3, 10, 5)).astype("float32")
    want = np.mean(
        [max(ref_distance(a[i], p[i], metric) - ref_distance(a[i], n[i], metric) + 0.5, 0.0)
         for i in range(10)]
    )
    assert _f(losses.triplet_loss(a, p, n, 0.5, metric)) == pytest.approx(want, rel=1e-4)
    stacked = np.stack([a, p, n], axis=1)
    loss = losses.TripletLoss(margin=0.5, distance_metric=metric)
    assert _f(loss(np.zeros(10), stacked)) == pytest.approx(want, rel=1e-4)


@pytest.mark.parametrize("metric", METRICS)
def test_pair_contrastive_matches_brute_force(metric):
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(2, 9, 5)).astype("float32")
    y = rng.integers(0, 2, size=9).astype("float32")
    terms = []
    for i in range(9):
        d = ref_distance(a[i], b[i], metric)
        terms.append(y[i] * d**2 + (1 - y[i]) * max(1.5 - d, 0.0) ** 2)
    got = losses.contrastive_loss_from_embeddings(y, a, b, 1.5, metric)
    np.testing.assert_allclose(ops.convert_to_numpy(got), terms, rtol=1e-4, atol=1e-6)
    loss = losses.PairContrastiveLoss(margin=1.5, distance_metric=metric)
    assert _f(loss(y, np.stack([a, b], axis=1))) == pytest.approx(np.mean(terms), rel=1e-4)


def test_contrastive_loss_by_hand():
    # same pair at d=0.5: 0.25; different pair at d=0.25, margin 1: 0.75^2.
    got = losses.contrastive_loss(np.array([1.0, 0.0]), np.array([0.5, 0.25]), 1.0)
    np.testing.assert_allclose(ops.convert_to_numpy(got), [0.25, 0.5625])


@pytest.mark.parametrize("per_class", [2, 3, 12])
def test_semihard_and_batch_all_match_references_by_slots_and_by_sorting(per_class):
    # 24 rows, log2 ~ 4.6: 1-2 positives per anchor select slot by slot, 11
    # positives (semi-hard, > 2 log2 B) from sorted rows.
    rng = np.random.default_rng(per_class)
    labels = (np.arange(24) // per_class).astype("int32")
    x = rng.normal(size=(24, 6)).astype("float32")
    positive, _ = mining.build_masks(labels)
    slots = bool(ops.convert_to_numpy(mining.few_positives(positive, 2.0)))
    assert slots == (per_class < 12)
    for margin in (0.2, 1.0):
        want = _ref_semihard(labels, x, margin, "L2")
        assert _f(losses.triplet_semihard_loss(labels, x, margin)) == pytest.approx(
            want, rel=1e-5)
        want = batch_all(labels, x, margin, "L2")
        assert _f(losses.triplet_batch_all_loss(labels, x, margin)) == pytest.approx(
            want, rel=1e-5)


def test_callable_metric_equals_named_metric():
    labels, x = _batch(5)

    def my_l2(e):
        return distances.pairwise_euclidean(e)

    for fn in ("semihard", "hard", "batchall"):
        assert _f(BATCH_FNS[fn](labels, x, 1.0, my_l2)) == pytest.approx(
            _f(BATCH_FNS[fn](labels, x, 1.0, "L2")), rel=1e-6
        )


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_input_computes_and_returns_float32(dtype):
    labels, x = _batch(6)
    for name, fn in BATCH_FNS.items():
        low = fn(labels, ops.cast(x, dtype), 1.0, "L2")
        assert keras.backend.standardize_dtype(low.dtype) == "float32", name
        want = REFERENCES[name](labels, np.asarray(ops.convert_to_numpy(
            ops.cast(ops.cast(x, dtype), "float32"))), 1.0, "L2")
        assert float(ops.convert_to_numpy(ops.cast(low, "float32"))) == pytest.approx(
            want, rel=2e-2
        ), name


# === properties (hypothesis) ===


def _balanced(p, k, d, seed):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(p), k).astype("int32")
    return labels, rng.normal(size=(p * k, d)).astype("float32"), rng


# Few distinct batch shapes (B = 6 or 8): eager JAX compiles once per shape.
@settings(max_examples=6, deadline=None)
@given(
    pk=st.sampled_from([(2, 3), (3, 2), (2, 4), (4, 2)]),
    seed=st.integers(0, 10_000),
    margin=st.sampled_from([0.0, 0.2, 1.0]),
    metric=st.sampled_from(METRICS),
)
def test_properties_permutation_nonnegative_hard_above_semihard(pk, seed, margin, metric):
    labels, x, rng = _balanced(*pk, 4, seed)
    perm = rng.permutation(len(labels))
    values = {}
    for name, fn in BATCH_FNS.items():
        v = _f(fn(labels, x, margin, metric))
        v_perm = _f(fn(labels[perm], x[perm], margin, metric))
        assert v >= 0.0, name
        assert v_perm == pytest.approx(v, rel=1e-5, abs=1e-6), name
        values[name] = v
    # Balanced batch, hinge, same margin and metric: every semi-hard term is
    # <= its anchor's batch-hard term, and each anchor has k - 1 positives.
    assert values["hard"] >= values["semihard"] - 1e-6


# === edge cases: finite values and gradients ===


EDGE_CASES = {
    "no_positive_pair": (np.arange(6), np.random.default_rng(0).normal(size=(6, 4))),
    "single_class": (np.zeros(6, int), np.random.default_rng(1).normal(size=(6, 4))),
    "batch_of_one": (np.array([3]), np.ones((1, 4))),
    "identical_embeddings": (np.array([0, 0, 1, 1, 2, 2]), np.ones((6, 4))),
    "duplicates": (
        np.array([0, 0, 1, 1]),
        np.array([[1, 0], [1, 0], [1, 0], [0, 1]], float),
    ),
}
NO_VALID_TRIPLET = {"no_positive_pair", "single_class", "batch_of_one"}


@pytest.mark.parametrize("case", list(EDGE_CASES))
@pytest.mark.parametrize("strategy", list(BATCH_FNS))
def test_edge_cases_give_finite_value_and_gradient(case, strategy):
    labels, x = EDGE_CASES[case]
    for metric in METRICS:
        value, (grad,) = value_and_grad(
            lambda e: BATCH_FNS[strategy](labels, e, 1.0, metric), x.astype("float32")
        )
        assert_all_finite(value, grad)
        assert float(value) >= 0.0, metric
        if case in NO_VALID_TRIPLET:
            assert float(value) == 0.0, metric
            np.testing.assert_array_equal(grad, 0.0)
        if case == "identical_embeddings" and strategy != "hardsoft":
            # every distance is 0: each hinge is exactly the margin
            assert float(value) == pytest.approx(1.0), metric
        if case == "identical_embeddings" and strategy == "hardsoft":
            assert float(value) == pytest.approx(np.log(2.0)), metric


def test_unknown_batch_size_in_tf_graph_matches_eager():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("unknown static batch size only arises in TensorFlow graphs")
    import tensorflow as tf

    labels, x = _batch(9, b=10, d=4)
    for name in ("semihard", "batchall"):
        fn = BATCH_FNS[name]

        @tf.function(input_signature=[tf.TensorSpec([None], tf.int32),
                                      tf.TensorSpec([None, None], tf.float32)])
        def graph(y, e):
            with tf.GradientTape() as tape:
                tape.watch(e)
                loss = fn(y, e, 1.0, "L2")
            return loss, tape.gradient(loss, e)

        loss, grad = graph(tf.constant(labels), tf.constant(x))
        want, (want_grad,) = value_and_grad(lambda e: fn(labels, e, 1.0, "L2"), x)
        assert float(loss) == pytest.approx(float(want), rel=1e-6), name
        np.testing.assert_allclose(grad.numpy(), want_grad, atol=1e-6)
        assert float(loss) == pytest.approx(REFERENCES[name](labels, x, 1.0, "L2"), rel=1e-4)


@pytest.mark.parametrize("metric", METRICS)
def test_pair_and_explicit_triplet_finite_on_identical_embeddings(metric):
    x = np.ones((4, 3), "float32")
    value, grads = value_and_grad(
        lambda a, b: ops.mean(
            losses.contrastive_loss_from_embeddings(np.array([1, 0, 1, 0]), a, b, 1.0, metric)
        ),
        x, x,
    )
    assert_all_finite(value, grads)
    assert float(value) == pytest.approx(0.5)  # two different pairs at d=0: margin^2
    value, grads = value_and_grad(
        lambda a, p, n: losses.triplet_loss(a, p, n, 0.2, metric), x, x, x
    )
    assert_all_finite(value, grads)
    assert float(value) == pytest.approx(0.2)


# === serialization ===


def _all_losses():
    return [
        losses.ContrastiveLoss(margin=0.7),
        losses.PairContrastiveLoss(margin=0.7, distance_metric="angular"),
        losses.TripletLoss(margin=0.3, distance_metric="L2"),
        losses.TripletSemiHardLoss(margin=0.4, distance_metric="squared-L2"),
        losses.TripletHardLoss(margin=0.5, soft=True, distance_metric="angular"),
        losses.TripletBatchAllLoss(margin=0.6),
    ]


def _inputs_for(loss):
    labels, x = _batch(7, b=8, d=4)
    if isinstance(loss, losses.ContrastiveLoss):
        return (labels % 2).astype("float32"), np.abs(x[:, 0])
    if isinstance(loss, losses.PairContrastiveLoss):
        return (labels % 2).astype("float32"), x.reshape(4, 2, 4)[:, :, :]
    if isinstance(loss, losses.TripletLoss):
        return np.zeros(8), np.stack([x, x[::-1], x * 2], axis=1)
    return labels, x


@pytest.mark.parametrize("index", range(6))
def test_config_round_trip(index):
    loss = _all_losses()[index]
    config = loss.get_config()
    import json

    json.dumps(config)  # plain JSON values
    for clone in (
        keras.losses.deserialize(keras.losses.serialize(loss)),
        type(loss).from_config(config),
    ):
        assert type(clone) is type(loss)
        assert clone.get_config() == config
        y, p = _inputs_for(loss)
        if isinstance(loss, losses.PairContrastiveLoss):
            y = y[:4]
        assert _f(clone(y, p)) == pytest.approx(_f(loss(y, p)), rel=1e-6)


@keras.saving.register_keras_serializable(package="fsl_tests")
def _registered_l2(embeddings):
    return distances.pairwise_euclidean(embeddings)


def test_registered_callable_metric_round_trips():
    loss = losses.TripletSemiHardLoss(margin=0.5, distance_metric=_registered_l2)
    config = loss.get_config()
    import json

    json.dumps(config)
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert clone.distance_metric is _registered_l2
    assert losses.TripletSemiHardLoss.from_config(config).get_config() == config
    labels, x = _batch(10)
    want = _ref_semihard(labels, x, 0.5, "L2")
    assert _f(clone(labels, x)) == pytest.approx(want, rel=1e-4)


@pytest.mark.parametrize(
    "loss",
    [
        losses.TripletSemiHardLoss(margin=0.5),
        losses.TripletHardLoss(margin=0.5),
        losses.TripletBatchAllLoss(margin=0.5),
    ],
    ids=["semihard", "hard", "batchall"],
)
def test_tiny_model_fits_saves_and_reloads(loss, tmp_path):
    labels, x = _balanced(4, 4, 6, 0)[:2]
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(4), keras.layers.UnitNormalization()]
    )
    model.compile(optimizer="sgd", loss=loss)
    # 16 = 12 + 4: the last, smaller batch may be traced with an unknown size.
    history = model.fit(x, labels, batch_size=12, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert type(reloaded.loss) is type(loss)
    assert reloaded.loss.get_config() == loss.get_config()
    np.testing.assert_allclose(
        ops.convert_to_numpy(reloaded(x)), ops.convert_to_numpy(model(x)), atol=1e-6
    )
    assert _f(reloaded.loss(labels, reloaded(x))) == pytest.approx(
        _f(loss(labels, model(x))), rel=1e-5
    )


# === errors ===


@pytest.mark.parametrize(
    "factory",
    [
        lambda: losses.ContrastiveLoss(margin=-1),
        lambda: losses.TripletLoss(margin=-1),
        lambda: losses.TripletSemiHardLoss(margin=-1),
        lambda: losses.TripletHardLoss(margin=-1),
        lambda: losses.TripletBatchAllLoss(margin=-1),
        lambda: losses.PairContrastiveLoss(margin=-1),
        lambda: losses.triplet_semihard_loss([0, 0, 1], np.zeros((3, 2)), margin=-1),
    ],
)
def test_negative_margin_is_rejected(factory):
    with pytest.raises(ValueError, match="Received: margin=-1"):
        factory()


def test_unknown_metric_and_bad_soft_are_rejected():
    with pytest.raises(ValueError, match="metric='manhattan'"):
        losses.TripletSemiHardLoss(distance_metric="manhattan")
    with pytest.raises(ValueError, match="metric='manhattan'"):
        losses.triplet_hard_loss([0, 0, 1], np.zeros((3, 2)), distance_metric="manhattan")
    with pytest.raises(TypeError, match="soft='yes'"):
        losses.TripletHardLoss(soft="yes")
    with pytest.raises(TypeError, match="margin='1'"):
        losses.TripletLoss(margin="1")


def test_wrong_y_pred_rank_is_rejected():
    with pytest.raises(ValueError, match=r"y_pred.shape=\(4,\)"):
        losses.triplet_semihard_loss([0, 0, 1, 1], np.zeros(4, "float32"))
    with pytest.raises(ValueError, match=r"y_pred.shape=\(4, 2, 3\)"):
        losses.TripletBatchAllLoss()(np.zeros(4), np.zeros((4, 2, 3), "float32"))
    with pytest.raises(ValueError, match=r"y_pred.shape=\(4, 2, 3\)"):
        losses.TripletLoss()(np.zeros(4), np.zeros((4, 2, 3), "float32"))
    with pytest.raises(ValueError, match=r"y_pred.shape=\(4, 3\)"):
        losses.PairContrastiveLoss()(np.zeros(4), np.zeros((4, 3), "float32"))


# === losses.get and the MetricLoss base ===


@pytest.mark.parametrize("alias", sorted(losses.ALIASES))
def test_get_resolves_alias_class_name_and_default_name(alias):
    cls = losses.ALIASES[alias]
    assert type(losses.get(alias)) is cls
    assert type(losses.get(cls.__name__)) is cls
    assert type(losses.get(cls().name)) is cls
    # A serialized loss comes back equal; an instance is returned as is.
    loss = cls()
    again = losses.get(keras.saving.serialize_keras_object(loss))
    assert type(again) is cls and again.get_config() == loss.get_config()
    assert losses.get(loss) is loss


def test_get_passes_options_and_validates_them():
    loss = losses.get("hard", margin=0.3, soft=True, distance_metric="angular")
    assert (loss.margin, loss.soft, loss.distance_metric) == (0.3, True, "angular")
    with pytest.raises(ValueError, match="margin=-1"):
        losses.get("semihard", margin=-1)
    with pytest.raises(ValueError, match="identifier='nope'"):
        losses.get("nope")
    with pytest.raises(ValueError, match="options"):
        losses.get(losses.CircleLoss(), gamma=2.0)


def test_metric_loss_base_calls_its_function_with_its_options():
    # A loss class is only its function and options: call and get_config come
    # from MetricLoss, and the call equals the pure function.
    labels, x = _batch(5)
    loss = losses.MultiSimilarityLoss(alpha=3.0, beta=20.0, epsilon=0.2, lmda=0.4)
    expected = losses.multi_similarity_loss(labels, x, 3.0, 20.0, 0.2, 0.4, 1.0, "angular")
    assert _f(loss(labels, x)) == pytest.approx(_f(expected), rel=1e-6)
    config = loss.get_config()
    assert {k: config[k] for k in ("alpha", "beta", "epsilon", "lmda", "center")} == {
        "alpha": 3.0, "beta": 20.0, "epsilon": 0.2, "lmda": 0.4, "center": 1.0}
    assert isinstance(loss, losses.MetricLoss)


# === Labels, batches and non-finite values (nothing silent) ===

BATCH_CLASSES = [losses.TripletSemiHardLoss, losses.TripletHardLoss, losses.TripletBatchAllLoss,
                 losses.LiftedStructLoss, losses.MultiSimilarityLoss, losses.CircleLoss]


@pytest.mark.backend_agnostic
@pytest.mark.parametrize("cls", BATCH_CLASSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_large_integer_labels_stay_distinct_classes(cls, dtype):
    # Keras' Loss.__call__ casts y_true to the loss dtype: 2**24 + 1 is 2**24 in
    # float32, 2049 is 2048 in float16. The classes keep their integer labels.
    labels, x = _batch(7, b=12, classes=3)
    big = {"float32": 2**24, "float16": 2048}[dtype] + labels.astype("int64")
    loss = cls(dtype=dtype)
    want = _f(loss(labels, x))
    assert _f(loss(big, x)) == pytest.approx(want, rel=2e-3 if dtype == "float16" else 1e-6)
    merged = np.asarray(big, dtype).astype("int64")  # what a cast would have made of them
    assert len(np.unique(merged)) < len(np.unique(big))


@pytest.mark.backend_agnostic
def test_label_and_batch_mistakes_are_errors_naming_them():
    labels, x = _batch(3, b=6)
    with pytest.raises(ValueError, match=r"y_true.shape=\(1,\), y_pred.shape=\(6, 8\)"):
        losses.TripletSemiHardLoss()(labels[:1], x)
    with pytest.raises(ValueError, match=r"values \[-1.0, 2.0\]"):
        losses.ContrastiveLoss()(np.array([0.0, 1.0, 2.0, -1.0]), np.array([0.1, 0.2, 0.3, 0.4]))
    with pytest.raises(ValueError, match=r"y_true.shape=\(2,\), y_pred.shape=\(4,\)"):
        losses.contrastive_loss(np.array([0.0, 1.0]), np.array([0.1, 0.2, 0.3, 0.4]))
    bad = x.copy()
    bad[0, 0], bad[1, 1] = np.nan, np.inf
    with pytest.raises(ValueError, match="y_pred holds 2 NaN or infinite"):
        losses.TripletHardLoss()(labels, bad)
    with pytest.raises(ValueError, match="y_true holds 1 NaN"):
        losses.triplet_semihard_loss(np.array([0.0, np.nan, 1.0, 1.0, 0.0, 1.0]), x)


@pytest.mark.backend_agnostic
def test_nan_embeddings_make_the_loss_nan_inside_fit():
    # A model with NaN weights: the L2 semi-hard loss used to report a finite value
    # (often the margin); now the loss is NaN and TerminateOnNaN stops training.
    labels, x = _batch(4, b=16)
    inputs = keras.Input((8,))
    dense = keras.layers.Dense(4)
    model = keras.Model(inputs, dense(inputs))
    model.compile("sgd", loss=losses.TripletSemiHardLoss(margin=0.5))
    dense.kernel.assign(np.full((8, 4), np.nan, "float32"))
    history = model.fit(x, labels, batch_size=8, epochs=3, verbose=0,
                        callbacks=[keras.callbacks.TerminateOnNaN()])
    assert np.isnan(history.history["loss"][0]) and len(history.history["loss"]) == 1


@pytest.mark.backend_agnostic
def test_nan_labels_make_the_loss_nan_inside_fit():
    # Float labels with a NaN used to make each NaN a class of its own (NaN != NaN)
    # and give a finite loss; inside fit the loss is now NaN and training stops.
    labels, x = _batch(4, b=16)
    labels = labels.astype("float32")
    labels[3] = np.nan
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(4)(inputs))
    model.compile("sgd", loss=losses.TripletSemiHardLoss(margin=0.5))
    history = model.fit(x, labels, batch_size=8, epochs=3, verbose=0, shuffle=False,
                        callbacks=[keras.callbacks.TerminateOnNaN()])
    assert np.isnan(history.history["loss"][0]) and len(history.history["loss"]) == 1
    finite = labels.copy()
    finite[3] = 9.0
    history = model.fit(x, finite, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
