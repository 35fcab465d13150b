"""fsl.models: shapes, weight sharing, the MTFL landmark loss, save/reload, tiny fits."""

from __future__ import annotations

import doctest

import keras
import numpy as np
import pytest
from keras import ops

from fsl import layers, models

pytestmark = pytest.mark.backend_agnostic

SMALL = (16, 16, 1)
# XLA compilation costs more than these few tiny steps on TensorFlow; JAX needs jit.
JIT = keras.backend.backend() == "jax"


def _np(x) -> np.ndarray:
    return ops.convert_to_numpy(x)


def _predict(model: keras.Model, x):
    """Compiled inference (fast on JAX, where eager calls dispatch op by op)."""
    return model.predict(x, batch_size=len(x), verbose=0)


def _images(n: int, shape=SMALL, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=(n, *shape)).astype("float32")


# --- Encoders and siamese models ---------------------------------------------


def test_mnist_encoder_default_is_the_chapter_network():
    enc = models.mnist_encoder()
    assert enc.input_shape == (None, 28, 28, 1)
    assert enc.output_shape == (None, 128)
    convs = [l for l in enc.layers if isinstance(l, keras.layers.Conv2D)]
    assert [(c.filters, c.kernel_size) for c in convs] == [(64, (3, 3)), (128, (3, 3))]
    assert sum(isinstance(l, keras.layers.MaxPooling2D) for l in enc.layers) == 2


@pytest.mark.parametrize("activation, normalize", [(None, False), ("relu", False), (None, True)])
def test_mnist_encoder_heads(activation, normalize):
    enc = models.mnist_encoder(8, SMALL, normalize=normalize, activation=activation, dropout=0.1)
    out = _np(enc(_images(5)))
    assert out.shape == (5, 8)
    if activation == "relu":
        assert out.min() >= 0.0
    if normalize:
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    else:
        assert out.min() < 0.0 or activation == "relu"


@pytest.mark.parametrize("metric", ["L2", "squared-L2", "angular"])
def test_siamese_distance_model_shares_the_encoder(metric):
    enc = models.mnist_encoder(8, SMALL, pooling="avg")
    model = models.siamese_distance_model(enc, metric=metric)
    assert model.output_shape == (None, 1)
    # Shared weights: no weight besides the encoder's.
    assert len(model.weights) == len(enc.weights)
    x1, x2 = _images(4, seed=1), _images(4, seed=2)
    got = _np(model.predict([x1, x2], verbose=0))
    e1, e2 = (_np(enc(x)).astype(np.float64) for x in (x1, x2))
    if metric == "L2":
        want = np.linalg.norm(e1 - e2, axis=1)
    elif metric == "squared-L2":
        want = np.sum((e1 - e2) ** 2, axis=1)
    else:
        cos = np.sum(e1 * e2, 1) / np.linalg.norm(e1, axis=1) / np.linalg.norm(e2, axis=1)
        want = 1.0 - cos
    np.testing.assert_allclose(got[:, 0], want, rtol=1e-4, atol=1e-5)
    # The same image on both sides is at distance 0.
    np.testing.assert_allclose(_np(model([x1, x1])), 0.0, atol=1e-5)


@pytest.mark.parametrize("kind", ["abs", "chi2"])
def test_siamese_classifier_outputs_probability_of_same(kind):
    enc = models.mnist_encoder(8, SMALL, activation="relu", pooling="avg")
    model = models.siamese_classifier(enc, kind=kind)
    assert model.output_shape == (None, 1)
    assert len(model.weights) == len(enc.weights) + 2  # + head kernel and bias
    x1, x2 = _images(4, seed=1), _images(4, seed=2)
    p = _np(model([x1, x2]))
    head = model.get_layer("same_probability")
    phi = _np(head.features(enc(x1), enc(x2))).astype(np.float64)
    want = 1.0 / (1.0 + np.exp(-(phi @ _np(head.kernel)[:, 0] + _np(head.bias)[0])))
    np.testing.assert_allclose(p[:, 0], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_np(model([x2, x1])), p, rtol=1e-5, atol=1e-6)


def test_embedding_and_triplet_models_are_unit_norm():
    enc = models.mnist_encoder(8, SMALL, pooling="avg")
    for model in (models.embedding_model(enc), models.triplet_model(enc)):
        out = _np(model(_images(3)))
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    raw = models.embedding_model(enc, normalize=False)
    np.testing.assert_allclose(_np(raw(_images(3))), _np(enc(_images(3))), rtol=1e-6)


def test_facenet_model_shapes_and_preprocessing():
    model = models.facenet_model(input_shape=(32, 32, 1), embedding_dim=16, width=8,
                                 blocks=1, preprocessing="fixed")
    assert model.output_shape == (None, 16)
    assert isinstance(model.get_layer("standardize"), layers.Standardize)
    assert any(isinstance(l, layers.ScaledResidual) for l in model.layers)
    raw = np.random.default_rng(0).integers(0, 256, size=(3, 32, 32, 1)).astype("float32")
    out = _predict(model, raw)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    # Standardize inside the model == standardising outside a model without it.
    bare = models.facenet_model(input_shape=(32, 32, 1), embedding_dim=16, width=8, blocks=1)
    bare.set_weights(model.get_weights())
    np.testing.assert_allclose(_predict(bare, (raw - 127.5) / 128.0), out, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(
    keras.backend.backend() == "jax",
    reason="architecture-only check, the same on every backend; building the full "
    "model on JAX spends ~30 s compiling weight initializers",
)
def test_facenet_default_size_is_cpu_friendly():
    model = models.facenet_model()
    assert model.input_shape == (None, 96, 96, 1) and model.output_shape == (None, 128)
    flops = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            flops += 2 * np.prod(layer.output.shape[1:3]) * np.prod(layer.kernel.shape)
        elif isinstance(layer, keras.layers.Dense):
            flops += 2 * np.prod(layer.kernel.shape)
    assert 0.05e9 < flops < 1e9, flops
    assert model.count_params() < 2_000_000


# --- MTFL --------------------------------------------------------------------


def test_mtfl_model_outputs_a_dict_of_named_heads():
    model = models.mtfl_model()
    convs = [l.filters for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert convs == [16, 48, 64, 64]
    out = _predict(model, _images(3, (64, 64, 1)))
    assert set(out) == set(models.MTFL_TASKS)
    for task, n in models.MTFL_TASKS.items():
        assert tuple(out[task].shape) == (3, n)
    for task in ("gender", "smile", "glasses", "pose"):
        np.testing.assert_allclose(out[task].sum(axis=1), 1.0, rtol=1e-5)
    landmarks = out["landmarks"]
    assert landmarks.min() >= 0.0 and landmarks.max() <= 1.0


def test_landmark_l2_loss_matches_numpy():
    rng = np.random.default_rng(7)
    y_true, y_pred = rng.uniform(size=(2, 6, 10)).astype("float32")
    want = np.mean(np.sum((y_pred.astype(np.float64) - y_true) ** 2, axis=1))
    got = float(_np(models.LandmarkL2Loss()(y_true, y_pred)))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose(_np(models.landmark_l2(y_true, y_pred)),
                               np.sum((y_pred - y_true) ** 2, axis=1), rtol=1e-5)


def test_landmark_loss_depends_on_the_target_unlike_the_books():
    # The book's tf.square(a, b) is square(a): the same value for any target.
    y_pred = np.full((4, 10), 0.5, "float32")
    loss = models.LandmarkL2Loss()
    at_target = float(_np(loss(y_pred, y_pred)))
    off_target = float(_np(loss(np.zeros_like(y_pred), y_pred)))
    assert at_target == 0.0
    np.testing.assert_allclose(off_target, 10 * 0.25, rtol=1e-6)
    # Ten times the mean squared error.
    mse = float(_np(keras.losses.MeanSquaredError()(np.zeros_like(y_pred), y_pred)))
    np.testing.assert_allclose(off_target, 10 * mse, rtol=1e-6)


def test_mtfl_losses_and_weights():
    losses, weights = models.mtfl_losses({"landmarks": 2.0, "pose": 0})
    assert set(losses) == set(weights) == set(models.MTFL_TASKS)
    assert isinstance(losses["landmarks"], models.LandmarkL2Loss)
    assert isinstance(losses["gender"], keras.losses.SparseCategoricalCrossentropy)
    assert weights == {"landmarks": 2.0, "gender": 1.0, "smile": 1.0, "glasses": 1.0, "pose": 0.0}
    with pytest.raises(ValueError, match="Received: weights="):
        models.mtfl_losses({"age": 1.0})
    with pytest.raises(ValueError, match=r"Received: weights\['smile'\]=-1"):
        models.mtfl_losses({"smile": -1})


def _mtfl_data(n: int, seed: int = 0, size: int = 32):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, size, size, 1)).astype("float32")
    y = {"landmarks": rng.uniform(0.2, 0.8, size=(n, 10)).astype("float32")}
    for task, classes in models.MTFL_TASKS.items():
        if task != "landmarks":
            y[task] = rng.integers(0, classes, size=(n,)).astype("int32")
    return x, y


def _repeat(a: np.ndarray, times: int) -> np.ndarray:
    return np.tile(a, (times,) + (1,) * (a.ndim - 1))


def test_mtfl_tiny_fit_lowers_the_loss_and_reloads_compiled(tmp_path):
    model = models.mtfl_model(input_shape=(16, 16, 1), dropout=0.0, bottleneck=32)
    losses, loss_weights = models.mtfl_losses({"pose": 0.5})
    model.compile(
        keras.optimizers.Adam(3e-3), loss=losses, loss_weights=loss_weights, jit_compile=JIT
    )
    x, y = _mtfl_data(16, size=16)
    before = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    # One epoch of 40 steps over the same 16 examples: memorise them.
    ys = {task: _repeat(v, 40) for task, v in y.items()}
    model.fit(_repeat(x, 40), ys, batch_size=16, shuffle=False, verbose=0)
    after = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    assert np.isfinite(after) and after < 0.8 * before, (before, after)
    # The compiled model, with its custom landmark loss, reloads by name.
    path = tmp_path / "mtfl.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert isinstance(reloaded.loss["landmarks"], models.LandmarkL2Loss)
    again = reloaded.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    np.testing.assert_allclose(again, after, rtol=1e-5)


def test_siamese_distance_tiny_fit_lowers_contrastive_loss():
    from fsl.losses import ContrastiveLoss

    rng = np.random.default_rng(3)
    base = _images(8, seed=3)
    # Same pairs: an image and a noisy copy (label 1); different: two images (0).
    x1 = np.concatenate([base, base])
    x2 = np.concatenate([base + 0.05 * rng.normal(size=base.shape), np.roll(base, 1, 0)])
    y = np.concatenate([np.ones(8), np.zeros(8)]).astype("float32")[:, None]
    x2 = x2.astype("float32")
    model = models.siamese_distance_model(models.mnist_encoder(8, SMALL, pooling="avg"))
    model.compile(keras.optimizers.Adam(3e-3), loss=ContrastiveLoss(margin=1.0), jit_compile=JIT)
    before = model.evaluate([x1, x2], y, verbose=0)
    model.fit([_repeat(x1, 15), _repeat(x2, 15)], _repeat(y, 15), batch_size=16,
              shuffle=False, verbose=0)
    after = model.evaluate([x1, x2], y, verbose=0)
    assert np.isfinite(after) and after < 0.8 * before, (before, after)


# --- Save / reload -----------------------------------------------------------


def _siamese_inputs():
    return [_images(3, seed=1), _images(3, seed=2)]


BUILDERS = {
    "mnist_encoder": (lambda: models.mnist_encoder(8, SMALL, normalize=True), lambda: _images(3)),
    "siamese_distance": (
        lambda: models.siamese_distance_model(models.mnist_encoder(8, SMALL), "angular"),
        _siamese_inputs,
    ),
    "siamese_classifier": (
        lambda: models.siamese_classifier(
            models.mnist_encoder(8, SMALL, activation="relu"), "chi2"
        ),
        _siamese_inputs,
    ),
    "embedding": (lambda: models.embedding_model(models.mnist_encoder(8, SMALL)), lambda: _images(3)),
    "mtfl": (lambda: models.mtfl_model(input_shape=(32, 32, 1)), lambda: _mtfl_data(3)[0]),
    "facenet": (
        lambda: models.facenet_model(
            input_shape=(32, 32, 1), embedding_dim=16, width=8, blocks=1, preprocessing="prewhiten"
        ),
        lambda: 255 * _images(3, (32, 32, 1)),
    ),
}


@pytest.mark.parametrize("builder", sorted(BUILDERS))
def test_save_reload_gives_identical_outputs(builder, tmp_path):
    build, inputs = BUILDERS[builder]
    model = build()
    x = inputs()
    path = tmp_path / f"{builder}.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)  # no custom_objects
    want, got = model.predict(x, verbose=0), reloaded.predict(x, verbose=0)
    if isinstance(want, dict):
        assert set(got) == set(want)
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=0, atol=1e-6)
    else:
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


@pytest.mark.skipif(
    keras.backend.backend() == "jax",
    reason="the examples build the full-size models; on JAX that spends ~1 min "
    "compiling weight initializers, and the shapes they show are backend-independent",
)
@pytest.mark.parametrize("module", ["base", "siamese", "mtfl", "facenet", "embedding"])
def test_docstring_examples(module):
    result = doctest.testmod(getattr(models, module), optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} docstring example(s) failed"


# --- Bad arguments -----------------------------------------------------------


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: models.mnist_encoder(0), "Received: embedding_dim=0"),
        (lambda: models.mnist_encoder(input_shape=(28, 28)), r"Received: input_shape=\(28, 28\)"),
        (lambda: models.mnist_encoder(dropout=1.5), "Received: dropout=1.5"),
        (lambda: models.mnist_encoder(activation="tanh"), "Received: activation='tanh'"),
        (lambda: models.mnist_encoder(pooling="sum"), "Received: pooling='sum'"),
        (lambda: models.mtfl_model(bottleneck=-3), "Received: bottleneck=-3"),
        (lambda: models.mtfl_model(landmark_activation="relu"), "Received: landmark_activation='relu'"),
        (lambda: models.facenet_model(width=0), "Received: width=0"),
        (lambda: models.facenet_model(input_shape=(16, 16, 1)), r"Received: input_shape=\(16, 16, 1\)"),
        (lambda: models.facenet_model(preprocessing="zscore"), "Received: preprocessing='zscore'"),
        (lambda: models.facenet_model(pooling="max"), "Received: pooling='max'"),
        (
            lambda: models.siamese_distance_model(models.mnist_encoder(4, SMALL), "manhattan"),
            "Received: metric='manhattan'",
        ),
        (lambda: models.siamese_classifier(models.mnist_encoder(4, SMALL), "dot"), "Received: kind='dot'"),
    ],
)
def test_bad_arguments_name_the_value(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_encoder_must_be_a_single_output_vector_model():
    with pytest.raises(TypeError, match="Received: encoder of type str"):
        models.siamese_distance_model("mnist")
    inputs = keras.Input(SMALL)
    image_model = keras.Model(inputs, keras.layers.Conv2D(2, 3)(inputs), name="convs")
    with pytest.raises(ValueError, match="Received: encoder='convs'"):
        models.embedding_model(image_model)


def test_pooled_embedding_is_the_normalised_pooling_and_shares_weights(tmp_path):
    net = models.facenet_model(input_shape=(32, 32, 1), embedding_dim=16, width=8, blocks=1)
    pooled = models.pooled_embedding(net)
    x = _images(4, (32, 32, 1))
    features = keras.Model(net.input, net.get_layer("avg_pool").output).predict(x, verbose=0)
    want = features / np.linalg.norm(features, axis=1, keepdims=True)
    got = pooled.predict(x, verbose=0)
    assert got.shape == (4, 64)  # 8 * width channels after the grid reduction
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # Same weights, not a copy: changing the network changes the pooled embedding.
    kernel = net.get_layer("stem1_conv").kernel
    kernel.assign(keras.ops.convert_to_numpy(kernel) * -1.0)
    assert not np.allclose(pooled.predict(x, verbose=0), got, atol=1e-4)
    path = tmp_path / "pooled.keras"
    pooled.save(path)
    np.testing.assert_allclose(
        keras.saving.load_model(path).predict(x, verbose=0), pooled.predict(x, verbose=0),
        rtol=0, atol=1e-6,
    )
    with pytest.raises(ValueError, match="Received: layer='pool5'"):
        models.pooled_embedding(net, layer="pool5")
    with pytest.raises(ValueError, match=r"rank 2.*\(None, 16, 16, 8\)"):
        models.pooled_embedding(net, layer="stem1_relu")


def test_facenet_gdc_pooling_against_numpy(tmp_path):
    """pooling="gdc": one learned filter per channel over the final grid, then BN."""
    net = models.facenet_model(input_shape=(32, 32, 1), embedding_dim=16, width=8, blocks=1,
                               pooling="gdc")
    names = [item.name for item in net.layers]
    assert "gdc_pool" in names and "avg_pool" not in names
    gdc, bn = net.get_layer("gdc"), net.get_layer("gdc_bn")
    assert gdc.kernel_size == (2, 2)  # 32 / 16: the whole final grid
    rng = np.random.default_rng(3)
    kernel = rng.normal(size=tuple(gdc.kernel.shape)).astype("float32")  # [2, 2, 64, 1]
    gdc.kernel.assign(kernel)
    gamma, beta, mean = (rng.normal(size=64).astype("float32") for _ in range(3))
    var = rng.uniform(0.5, 2.0, size=64).astype("float32")
    bn.set_weights([gamma, beta, mean, var])
    x = _images(4, (32, 32, 1))
    grid = _predict(keras.Model(net.input, net.get_layer("block_b1_out").output), x)
    assert grid.shape == (4, 2, 2, 64)
    # Each cell weighted by its own (learned) weight: not an average.
    z = np.einsum("bhwc,hwc->bc", grid, kernel[..., 0])
    want = gamma * (z - mean) / np.sqrt(var + bn.epsilon) + beta
    got = _predict(keras.Model(net.input, net.get_layer("gdc_pool").output), x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # pooled_embedding finds the GDC layer by itself; its output is that, unit-norm.
    pooled = models.pooled_embedding(net)
    assert pooled.output_shape == (None, 64)
    np.testing.assert_allclose(
        _predict(pooled, x), want / np.linalg.norm(want, axis=1, keepdims=True),
        rtol=1e-4, atol=1e-5,
    )
    path = tmp_path / "gdc.keras"
    net.save(path)
    np.testing.assert_allclose(_predict(keras.saving.load_model(path), x), _predict(net, x),
                               rtol=0, atol=1e-6)


def test_pooled_embedding_needs_a_layer_without_a_pooling_layer():
    inputs = keras.Input((4,))
    plain = keras.Model(inputs, keras.layers.Dense(3, name="head")(inputs), name="plain")
    with pytest.raises(ValueError, match="pass layer=.*none of them"):
        models.pooled_embedding(plain)
    assert models.pooled_embedding(plain, layer="head").output_shape == (None, 3)
    with pytest.raises(ValueError, match="Received: layer=3"):
        models.pooled_embedding(plain, layer=3)


def test_flip_averaged_embedding_matches_numpy_and_reloads(tmp_path):
    net = models.facenet_model(input_shape=(32, 32, 1), embedding_dim=16, width=8, blocks=1)
    pooled = models.pooled_embedding(net)
    tta = models.flip_averaged_embedding(pooled)
    x = _images(4, (32, 32, 1))
    both = pooled.predict(x, verbose=0) + pooled.predict(np.flip(x, axis=2), verbose=0)
    want = both / np.linalg.norm(both, axis=1, keepdims=True)
    got = tta.predict(x, verbose=0)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # A face and its mirror image get the same embedding.
    np.testing.assert_allclose(tta.predict(np.flip(x, axis=2), verbose=0), got, atol=1e-5)
    assert tta.name == f"{pooled.name}_flip_averaged"
    path = tmp_path / "tta.keras"
    tta.save(path)
    np.testing.assert_allclose(
        keras.saving.load_model(path).predict(x, verbose=0), got, rtol=0, atol=1e-6
    )


def test_flip_averaged_embedding_bad_input():
    with pytest.raises(TypeError, match="encoder of type str"):
        models.flip_averaged_embedding("net")
    inputs = keras.Input((4,))
    vectors = keras.Model(inputs, keras.layers.Dense(3)(inputs), name="vectors")
    with pytest.raises(ValueError, match=r"model='vectors' with input shape \(None, 4\)"):
        models.flip_averaged_embedding(vectors)


def test_ensemble_embedding_matches_numpy_and_reloads(tmp_path):
    nets = [models.facenet_model(input_shape=(32, 32, 1), embedding_dim=8 * (i + 1), width=4,
                                 blocks=1, name=f"net{i}") for i in range(3)]
    ensemble = models.ensemble_embedding(nets, name="trio")
    x = _images(4, (32, 32, 1))
    # Each member normalised, side by side, normalised again: the squared
    # distance is the mean of the members' squared distances.
    parts = [net.predict(x, verbose=0).astype("float64") for net in nets]
    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)
    want = unit(np.concatenate([unit(part) for part in parts], axis=1))
    got = ensemble.predict(x, verbose=0)
    assert got.shape == (4, 8 + 16 + 24) and ensemble.name == "trio"
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    mean_sq = np.mean([np.sum((part[0] - part[1]) ** 2) for part in parts])
    np.testing.assert_allclose(np.sum((got[0] - got[1]) ** 2), mean_sq, rtol=1e-4)
    # Shares the members' weights, adds none.
    assert len(ensemble.weights) == sum(len(net.weights) for net in nets)
    path = tmp_path / "ensemble.keras"
    ensemble.save(path)
    np.testing.assert_allclose(
        keras.saving.load_model(path).predict(x, verbose=0), got, rtol=0, atol=1e-6
    )
    # One member: its own normalised embedding.
    np.testing.assert_allclose(models.ensemble_embedding(nets[:1]).predict(x, verbose=0),
                               unit(parts[0]), rtol=1e-5, atol=1e-6)


def test_ensemble_embedding_bad_input():
    net = models.facenet_model(input_shape=(32, 32, 1), embedding_dim=8, width=4, blocks=1)
    with pytest.raises(ValueError, match=r"Received: members=\[\]"):
        models.ensemble_embedding([])
    with pytest.raises(ValueError, match="non-empty list of models"):
        models.ensemble_embedding(net)
    with pytest.raises(TypeError, match="encoder of type str"):
        models.ensemble_embedding([net, "net"])
    other = models.facenet_model(input_shape=(48, 48, 1), embedding_dim=8, width=4, blocks=1,
                                 name="other")
    with pytest.raises(ValueError, match=r"input shapes \[\(32, 32, 1\), \(48, 48, 1\)\]"):
        models.ensemble_embedding([net, other])


def test_whitened_embedding_matches_numpy_and_reloads(tmp_path):
    from fsl.evaluation import within_class_whitening

    net = models.facenet_model(input_shape=(32, 32, 1), embedding_dim=8, width=4, blocks=1)
    x = _images(12, (32, 32, 1))
    labels = np.repeat(np.arange(4), 3)
    wccn = models.whitened_embedding(net, x, labels, shrinkage=0.5, batch_size=5)
    base = net.predict(x, verbose=0)
    mean, matrix = within_class_whitening(base, labels, shrinkage=0.5)
    projected = (base - mean) @ matrix
    want = projected / np.linalg.norm(projected, axis=1, keepdims=True)
    got = wccn.predict(x, verbose=0)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert wccn.name == f"{net.name}_wccn" and wccn.get_layer("wccn").units is None
    # Shares the network's weights; the statistics are the new layer's only.
    assert len(wccn.trainable_weights) == len(net.trainable_weights)
    path = tmp_path / "wccn.keras"
    wccn.save(path)
    np.testing.assert_allclose(
        keras.saving.load_model(path).predict(x, verbose=0), got, rtol=0, atol=1e-6
    )


def test_whitened_embedding_bad_input():
    net = models.facenet_model(input_shape=(32, 32, 1), embedding_dim=8, width=4, blocks=1)
    x = _images(4, (32, 32, 1))
    with pytest.raises(TypeError, match="encoder of type str"):
        models.whitened_embedding("net", x, [0, 0, 1, 1])
    with pytest.raises(ValueError, match="batch_size=0"):
        models.whitened_embedding(net, x, [0, 0, 1, 1], batch_size=0)
    with pytest.raises(ValueError, match="shrinkage=-1"):
        models.whitened_embedding(net, x, [0, 0, 1, 1], shrinkage=-1)
    with pytest.raises(ValueError, match=r"len\(labels\)=3"):
        models.whitened_embedding(net, x, [0, 0, 1])


def _bn_net():
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(3, 3, use_bias=False, name="conv")(inputs)
    x = keras.layers.BatchNormalization(momentum=0.9, name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(x))
    return keras.Model(inputs, keras.layers.Dense(2)(x))


def test_recalibrate_batch_norm_averages_the_batch_statistics():
    rng = np.random.default_rng(0)
    net = _bn_net()
    x = (rng.normal(size=(10, 6, 6, 2)) * 3 + 1).astype("float32")
    conv = keras.Model(net.input, net.get_layer("conv").output).predict(x, verbose=0)
    # numpy reference: mean over batches of 4, 4, 2 of each batch's channel
    # mean and (biased) variance.
    batches = [conv[0:4], conv[4:8], conv[8:10]]
    want_mean = np.mean([b.mean(axis=(0, 1, 2)) for b in batches], axis=0)
    want_var = np.mean([b.var(axis=(0, 1, 2)) for b in batches], axis=0)
    assert models.recalibrate_batch_norm(net, x, batch_size=4) == 1
    bn = net.get_layer("bn")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_mean), want_mean, rtol=1e-4)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_variance), want_var, rtol=1e-4)
    assert bn.momentum == 0.9  # restored
    # Inference now normalises with those statistics.
    gamma, beta = (keras.ops.convert_to_numpy(w) for w in (bn.gamma, bn.beta))
    bn_out = keras.Model(net.input, bn.output).predict(x, verbose=0)
    np.testing.assert_allclose(
        bn_out, (conv - want_mean) / np.sqrt(want_var + bn.epsilon) * gamma + beta,
        rtol=1e-4, atol=1e-4,
    )


def test_recalibrate_batch_norm_nested_none_and_bad_arguments():
    inner = _bn_net()
    outer = keras.Sequential([keras.Input((6, 6, 2)), inner])
    assert models.recalibrate_batch_norm(outer, np.ones((3, 6, 6, 2), "float32")) == 1
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    assert models.recalibrate_batch_norm(plain, np.ones((3, 4), "float32")) == 0
    with pytest.raises(ValueError, match="Received: batch_size=0"):
        models.recalibrate_batch_norm(inner, np.ones((3, 6, 6, 2), "float32"), batch_size=0)
    with pytest.raises(ValueError, match="Received: 0 images"):
        models.recalibrate_batch_norm(inner, np.ones((0, 6, 6, 2), "float32"))
