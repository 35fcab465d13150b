"""fsl.layers against numpy references, with gradient safety and config round-trips."""

from __future__ import annotations

import doctest
import json

import keras
import numpy as np
import pytest
from helpers import assert_all_finite, value_and_grad
from keras import ops

from fsl import layers

pytestmark = pytest.mark.backend_agnostic


def _np(x) -> np.ndarray:
    return ops.convert_to_numpy(x)


# --- L2Normalize -------------------------------------------------------------


def test_l2_normalize_matches_numpy():
    x = np.random.default_rng(0).normal(size=(6, 5)).astype("float32")
    got = _np(layers.L2Normalize()(x))
    want = x / np.linalg.norm(x, axis=1, keepdims=True)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)


def test_l2_normalize_axis_and_zero_row():
    x = np.array([[3.0, 0.0], [4.0, 0.0]], "float32")
    got = _np(layers.L2Normalize(axis=0)(x))
    np.testing.assert_allclose(got, [[0.6, 0.0], [0.8, 0.0]], atol=1e-6)
    value, (grad,) = value_and_grad(
        lambda e: ops.sum(layers.L2Normalize()(e)), np.zeros((2, 3), "float32")
    )
    assert value == 0.0
    assert_all_finite(grad)


# --- PairDistance ------------------------------------------------------------


def _paired_reference(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    if metric == "L2":
        return np.sqrt(np.sum((a - b) ** 2, axis=1))
    if metric == "squared-L2":
        return np.sum((a - b) ** 2, axis=1)
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return 1.0 - cos


@pytest.mark.parametrize("metric", ["L2", "squared-L2", "angular"])
@pytest.mark.parametrize("keepdims", [True, False])
def test_pair_distance_matches_numpy(metric, keepdims):
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2, 7, 4)).astype("float32")
    layer = layers.PairDistance(metric, keepdims=keepdims)
    got = _np(layer([a, b]))
    want = _paired_reference(a, b, metric)
    assert got.shape == ((7, 1) if keepdims else (7,))
    np.testing.assert_allclose(got.reshape(-1), want, rtol=1e-4, atol=1e-5)
    assert layer.compute_output_shape([(None, 4), (None, 4)]) == (
        (None, 1) if keepdims else (None,)
    )


def test_pair_distance_alias_is_canonicalised():
    assert layers.PairDistance("euclidean").metric == "L2"
    assert layers.PairDistance("cosine").get_config()["metric"] == "angular"


@pytest.mark.parametrize("metric", ["L2", "squared-L2", "angular"])
def test_pair_distance_gradient_finite_at_zero_distance(metric):
    x = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]], "float32")
    layer = layers.PairDistance(metric)
    value, (ga, gb) = value_and_grad(lambda a, b: ops.sum(layer([a, b])), x, x.copy())
    np.testing.assert_allclose(value, 0.0, atol=1e-6)
    assert_all_finite(ga, gb)
    if metric == "L2":
        np.testing.assert_array_equal(ga, 0.0)


def test_pair_distance_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="Received: metric='manhattan'"):
        layers.PairDistance("manhattan")
    with pytest.raises(TypeError, match="Received: metric="):
        layers.PairDistance(lambda a, b: a)
    with pytest.raises(TypeError, match="Received: keepdims=1"):
        layers.PairDistance("L2", keepdims=1)
    x = np.ones((2, 3), "float32")
    with pytest.raises(ValueError, match="two tensors"):
        layers.PairDistance()([x, x, x])


# --- SiameseHead -------------------------------------------------------------


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


@pytest.mark.parametrize("kind", ["abs", "chi2"])
def test_siamese_head_matches_hand_formula(kind):
    rng = np.random.default_rng(2)
    # Non-negative features (ReLU outputs), as chi-square assumes.
    f1, f2 = np.abs(rng.normal(size=(2, 5, 6))).astype("float32")
    head = layers.SiameseHead(kind, bias_initializer="ones")
    got = _np(head([f1, f2]))
    w = _np(head.kernel).astype(np.float64)[:, 0]
    b = _np(head.bias).astype(np.float64)[0]
    assert b == 1.0
    x1, x2 = f1.astype(np.float64), f2.astype(np.float64)
    if kind == "abs":
        phi = np.abs(x1 - x2)
    else:
        phi = (x1 - x2) ** 2 / (x1 + x2 + head.epsilon)
    want = _sigmoid(phi @ w + b)
    assert got.shape == (5, 1)
    np.testing.assert_allclose(got[:, 0], want, rtol=1e-5, atol=1e-6)
    # Symmetric in the pair.
    np.testing.assert_allclose(_np(head([f2, f1])), got, rtol=1e-6, atol=1e-7)


def test_siamese_head_identical_pair_gives_sigmoid_of_bias():
    f = np.abs(np.random.default_rng(3).normal(size=(4, 3))).astype("float32")
    head = layers.SiameseHead("abs", bias_initializer=keras.initializers.Constant(2.0))
    np.testing.assert_allclose(_np(head([f, f])), _sigmoid(2.0), rtol=1e-6)


@pytest.mark.parametrize("kind", ["abs", "chi2"])
def test_siamese_head_gradients_finite_at_zero(kind):
    # f1 == f2 == 0: |f1 - f2| is at its kink and f1 + f2 = 0 in chi2.
    zeros = np.zeros((3, 4), "float32")
    head = layers.SiameseHead(kind)
    value, (g1, g2) = value_and_grad(lambda a, b: ops.sum(head([a, b])), zeros, zeros.copy())
    np.testing.assert_allclose(value, 3 * 0.5, rtol=1e-6)
    assert_all_finite(g1, g2)
    # chi2 also stays finite where f1 = -f2 (outside its non-negative domain).
    a = np.array([[1.0, -2.0, 0.5, 0.0]], "float32")
    value, grads = value_and_grad(lambda x, y: ops.sum(head([x, y])), a, -a)
    assert_all_finite(value, grads)


def test_siamese_head_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="Received: kind='cosine'"):
        layers.SiameseHead("cosine")
    with pytest.raises(ValueError, match="Received: epsilon=0"):
        layers.SiameseHead("chi2", epsilon=0)
    with pytest.raises(ValueError, match="same rank and last dimension"):
        layers.SiameseHead().build([(None, 3), (None, 4)])


# --- Standardize -------------------------------------------------------------


def _facenet_prewhiten(x: np.ndarray) -> np.ndarray:
    """David Sandberg's facenet.prewhiten, verbatim."""
    mean = np.mean(x)
    std = np.std(x)
    std_adj = np.maximum(std, 1.0 / np.sqrt(x.size))
    return np.multiply(np.subtract(x, mean), 1 / std_adj)


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_standardize_matches_facenet(dtype):
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, size=(3, 8, 6, 1)).astype(dtype)
    xf = x.astype(np.float64)
    fixed = _np(layers.Standardize("fixed")(x))
    np.testing.assert_allclose(fixed, (xf - 127.5) / 128.0, rtol=1e-6, atol=1e-6)
    unit = _np(layers.Standardize("unit")(x))
    np.testing.assert_allclose(unit, xf / 255.0, rtol=1e-6, atol=1e-7)
    white = _np(layers.Standardize("prewhiten")(x))
    want = np.stack([_facenet_prewhiten(img) for img in xf])
    np.testing.assert_allclose(white, want, rtol=1e-4, atol=1e-5)
    assert fixed.dtype == unit.dtype == white.dtype == np.float32


def test_standardize_prewhiten_constant_image_is_zero():
    x = np.full((2, 4, 4, 3), 77, "uint8")
    got = _np(layers.Standardize("prewhiten")(x))
    np.testing.assert_array_equal(got, 0.0)


def test_standardize_in_a_uint8_model():
    inputs = keras.Input((4, 4, 1), dtype="uint8")
    model = keras.Model(inputs, layers.Standardize("fixed")(inputs))
    assert model.output.dtype == "float32"
    x = np.arange(16, dtype="uint8").reshape(1, 4, 4, 1)
    np.testing.assert_allclose(_np(model(x)), (x - 127.5) / 128.0, rtol=1e-6)


def test_standardize_bad_mode_names_the_value():
    with pytest.raises(ValueError, match="Received: mode='zscore'"):
        layers.Standardize("zscore")


# --- ScaledResidual ----------------------------------------------------------


def test_scaled_residual_matches_numpy_and_validates():
    rng = np.random.default_rng(5)
    x, r = rng.normal(size=(2, 3, 4)).astype("float32")
    got = _np(layers.ScaledResidual(0.17)([x, r]))
    np.testing.assert_allclose(got, x + np.float32(0.17) * r, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="Received: scale=-0.1"):
        layers.ScaledResidual(-0.1)


def test_l2_normalize_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="Received: epsilon=-1"):
        layers.L2Normalize(epsilon=-1)
    with pytest.raises(TypeError, match="Received: axis='last'"):
        layers.L2Normalize(axis="last")


# --- Serialization -----------------------------------------------------------

# --- HorizontalFlip ----------------------------------------------------------


@pytest.mark.parametrize("data_format, axis", [("channels_last", 2), ("channels_first", 3)])
def test_horizontal_flip_matches_numpy_and_passes_gradients(data_format, axis):
    x = np.random.default_rng(3).normal(size=(2, 3, 4, 5)).astype("float32")
    layer = layers.HorizontalFlip(data_format)
    np.testing.assert_array_equal(_np(layer(x)), np.flip(x, axis=axis))
    # Flipping twice is the identity; it flips at inference (not random).
    np.testing.assert_array_equal(_np(layer(layer(x), training=False)), x)
    weights = np.arange(x.size, dtype="float32").reshape(x.shape)
    value, (grad,) = value_and_grad(lambda e: ops.sum(layer(e) * weights), x)
    np.testing.assert_allclose(_np(grad), np.flip(weights, axis=axis))


def test_horizontal_flip_bad_input():
    with pytest.raises(ValueError, match="data_format='channels_middle'"):
        layers.HorizontalFlip("channels_middle")
    with pytest.raises(ValueError, match=r"rank 4. Received: input_shape=\(2, 3\)"):
        layers.HorizontalFlip()(np.zeros((2, 3), "float32"))


# --- Whitening ---------------------------------------------------------------


def test_whitening_matches_numpy_and_saves_its_statistics(tmp_path):
    rng = np.random.default_rng(8)
    mean, matrix = rng.normal(size=5), rng.normal(size=(5, 3))
    inputs = keras.Input((5,))
    layer = layers.Whitening(units=3, name="w")
    model = keras.Model(inputs, layer(inputs))
    layer.set_weights([mean, matrix])
    x = rng.normal(size=(7, 5)).astype("float32")
    projected = (x - mean) @ matrix
    want = projected / np.linalg.norm(projected, axis=1, keepdims=True)
    np.testing.assert_allclose(_np(model(x)), want, rtol=1e-5, atol=1e-6)
    assert model.output_shape == (None, 3)
    assert not layer.trainable_weights and len(layer.non_trainable_weights) == 2
    # The statistics are weights: a reloaded model applies the same map.
    model.save(tmp_path / "w.keras")
    reloaded = keras.saving.load_model(tmp_path / "w.keras")
    np.testing.assert_allclose(_np(reloaded(x)), want, rtol=1e-5, atol=1e-6)
    # Unset, it is the identity map followed by L2 normalisation.
    plain = layers.Whitening()
    np.testing.assert_allclose(_np(plain(x)), x / np.linalg.norm(x, axis=1, keepdims=True),
                               rtol=1e-5, atol=1e-6)


def test_whitening_gradient_is_finite_at_the_mean():
    layer = layers.Whitening()
    layer.build((None, 3))
    layer.set_weights([np.ones(3), np.eye(3)])
    value, (grad,) = value_and_grad(lambda e: ops.sum(layer(e)), np.ones((2, 3), "float32"))
    np.testing.assert_array_equal(_np(value), 0.0)
    assert_all_finite(grad)


def test_whitening_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="units=0"):
        layers.Whitening(units=0)
    with pytest.raises(ValueError, match="epsilon=-1"):
        layers.Whitening(epsilon=-1)
    with pytest.raises(ValueError, match=r"\[B, D\].*input_shape=\(2, 3, 4\)"):
        layers.Whitening()(np.zeros((2, 3, 4), "float32"))


# --- Affine, PaddedAdd (dlib's affine and add_prev) ---------------------------


def test_affine_matches_numpy_and_trains():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 4, 4, 3)).astype("float32")
    gamma, beta = rng.normal(size=3), rng.normal(size=3)
    layer = layers.Affine()
    layer.build(x.shape)
    layer.set_weights([gamma, beta])
    np.testing.assert_allclose(_np(layer(x)), x * gamma + beta, rtol=1e-6, atol=1e-6)
    assert len(layer.trainable_weights) == 2
    _, grads = value_and_grad(lambda v: ops.sum(layer(v)), x)
    np.testing.assert_allclose(grads[0], np.broadcast_to(gamma, x.shape), rtol=1e-6)
    with pytest.raises(ValueError, match="known last dimension"):
        layers.Affine().build((None, None))


def test_padded_add_matches_dlib_add_prev():
    """dlib's tt::add: each input zero-padded after its end to the larger size."""
    rng = np.random.default_rng(4)
    branch = rng.normal(size=(2, 3, 3, 8)).astype("float32")  # strided branch
    shortcut = rng.normal(size=(2, 4, 4, 4)).astype("float32")  # pooled, fewer channels
    expected = np.zeros((2, 4, 4, 8), "float32")
    expected[:, :3, :3, :] += branch
    expected[:, :, :, :4] += shortcut
    np.testing.assert_allclose(_np(layers.PaddedAdd()([branch, shortcut])), expected, atol=1e-6)
    same = layers.PaddedAdd()([shortcut, shortcut])
    np.testing.assert_allclose(_np(same), 2 * shortcut, atol=1e-6)
    assert layers.PaddedAdd().compute_output_shape([(None, 3, 3, 8), (None, 4, 4, 4)]) == (
        None, 4, 4, 8)
    with pytest.raises(ValueError, match="same rank"):
        layers.PaddedAdd()([np.zeros((1, 2)), np.zeros((1, 2, 2))])


LAYER_CASES = [
    (layers.L2Normalize, {"axis": 1, "epsilon": 1e-6}),
    (layers.PairDistance, {"metric": "squared-L2", "keepdims": False}),
    (layers.SiameseHead, {"kind": "chi2", "epsilon": 1e-5}),
    (layers.Standardize, {"mode": "prewhiten"}),
    (layers.ScaledResidual, {"scale": 0.1}),
    (layers.HorizontalFlip, {"data_format": "channels_first"}),
    (layers.Whitening, {"units": 4, "epsilon": 1e-8}),
    (layers.Affine, {}),
    (layers.PaddedAdd, {}),
]


@pytest.mark.parametrize("cls, kwargs", LAYER_CASES, ids=lambda c: getattr(c, "__name__", ""))
def test_config_round_trip(cls, kwargs):
    layer = cls(**kwargs, name="probe")
    config = layer.get_config()
    assert json.loads(json.dumps(config)) == config  # plain JSON values
    for key, value in kwargs.items():
        assert config[key] == value
    clone = cls.from_config(config)
    assert clone.get_config() == config
    # And through keras' registry, by registered name, with no custom_objects.
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"] == f"fsl>{cls.__name__}"
    revived = keras.saving.deserialize_keras_object(json.loads(json.dumps(serialized)))
    assert type(revived) is cls and revived.get_config() == config


def test_siamese_head_save_reload_identical(tmp_path):
    a = keras.Input((6,))
    b = keras.Input((6,))
    model = keras.Model([a, b], layers.SiameseHead("chi2")([a, b]))
    f1, f2 = np.abs(np.random.default_rng(6).normal(size=(2, 5, 6))).astype("float32")
    path = tmp_path / "head.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        _np(reloaded([f1, f2])), _np(model([f1, f2])), rtol=0, atol=1e-6
    )


def test_docstring_examples():
    result = doctest.testmod(layers, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} docstring example(s) failed"
