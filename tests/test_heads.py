"""fsl.heads against float64 numpy references of the papers' formulas.

ArcFace and sub-center ArcFace as insightface's code computes them (the
``th``/``mm`` fallback, ``easy_margin``), CosFace, and AdaFace as its
authors' code (running norm statistics, eps 1e-3). Gradients against central
differences of the references. On TensorFlow the layers run in float64 and
must match to 1e-6; on JAX (float64 off by default) in float32, to 1e-4.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from keras import ops
from references import head_cosines, ref_adaface, ref_arcface, ref_cosface

import fsl
from fsl import heads

pytestmark = pytest.mark.backend_agnostic

F64 = keras.backend.backend() == "tensorflow"
DTYPE = "float64" if F64 else "float32"
RTOL = 1e-6 if F64 else 1e-4


def _case(seed=0, b=6, d=5, classes=4, k=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(b, d)) * rng.uniform(0.5, 30, size=(b, 1))  # norms vary (AdaFace)
    w = rng.normal(size=(d, classes * k))
    labels = rng.integers(0, classes, size=b)
    return x, w, labels


def _head(cls, w, **options):
    head = cls(dtype=DTYPE, **options)
    head.build([(None, w.shape[0]), (None,)])
    head.kernel.assign(w.astype(DTYPE))
    return head


def _value_and_grads(head, x, labels, weights, training=False):
    """sum(weights * logits) and its gradients w.r.t. the embeddings and kernel."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        xt = tf.constant(x.astype(DTYPE))
        with tf.GradientTape() as tape:
            tape.watch(xt)
            logits = head([xt, labels], training=training)
            total = tf.reduce_sum(logits * weights.astype(DTYPE))
        gx, gw = tape.gradient(total, [xt, head.kernel.value])
        return np.asarray(logits), np.asarray(gx), np.asarray(gw)
    import jax

    def total(xv, wv):
        logits, _ = head.stateless_call([wv], [v.value for v in head.non_trainable_variables],
                                        [xv, labels], training=training)
        return jax.numpy.sum(logits * weights.astype(DTYPE)), logits

    (_, logits), (gx, gw) = jax.value_and_grad(total, argnums=(0, 1), has_aux=True)(
        x.astype(DTYPE), head.kernel.value)
    return np.asarray(logits), np.asarray(gx), np.asarray(gw)


def _numeric_grads(fn, x, w, h=1e-6):
    gx, gw = np.zeros_like(x), np.zeros_like(w)
    for array, grad in ((x, gx), (w, gw)):
        for index in np.ndindex(array.shape):
            old = array[index]
            array[index] = old + h
            up = fn(x, w)
            array[index] = old - h
            down = fn(x, w)
            array[index] = old
            grad[index] = (up - down) / (2 * h)
    return gx, gw


CASES = {
    "arcface": (heads.ArcFace, {"scale": 64.0, "margin": 0.5},
                lambda x, w, y, x0: ref_arcface(x, w, y, 64.0, 0.5)),
    "arcface-easy": (heads.ArcFace, {"scale": 30.0, "margin": 0.3, "easy_margin": True},
                     lambda x, w, y, x0: ref_arcface(x, w, y, 30.0, 0.3, easy=True)),
    "subcenter": (heads.SubCenterArcFace, {"scale": 64.0, "margin": 0.5, "centres": 3},
                  lambda x, w, y, x0: ref_arcface(x, w, y, 64.0, 0.5, k=3)),
    "cosface": (heads.CosFace, {"scale": 64.0, "margin": 0.35},
                lambda x, w, y, x0: ref_cosface(x, w, y, 64.0, 0.35)),
    "adaface": (heads.AdaFace, {"scale": 64.0, "margin": 0.4},
                lambda x, w, y, x0: ref_adaface(x, w, y, 64.0, 0.4, 0.333, 0.01,
                                                norms_of=x0)[0]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_logits_and_gradients_match_the_papers_formulas(name):
    cls, options, reference = CASES[name]
    k = options.get("centres", 1)
    x, w, labels = _case(seed=len(name), k=k)
    head = _head(cls, w, num_classes=4, **options)
    weights = np.random.default_rng(9).normal(size=(len(x), 4))
    logits, gx, gw = _value_and_grads(head, x, labels, weights, training=True)
    want = reference(x, w, labels, x)
    np.testing.assert_allclose(logits, want, rtol=RTOL, atol=RTOL * 64)
    fixed = x.copy()
    want_gx, want_gw = _numeric_grads(
        lambda xv, wv: float(np.sum(weights * reference(xv, wv, labels, fixed))), x.copy(),
        w.copy())
    scale = max(1.0, np.abs(want_gx).max(), np.abs(want_gw).max())
    np.testing.assert_allclose(gx, want_gx, atol=RTOL * 10 * scale)
    np.testing.assert_allclose(gw, want_gw, atol=RTOL * 10 * scale)
    # Without labels: the plain scaled cosines (inference).
    plain = ops.convert_to_numpy(head(x.astype(DTYPE)))
    c = head_cosines(x, w, head.cos_epsilon).reshape(len(x), 4, k).max(axis=-1)
    np.testing.assert_allclose(plain, options["scale"] * c, rtol=RTOL, atol=RTOL * 64)


def test_the_arcface_fallback_where_theta_plus_m_passes_pi():
    # A sample almost opposite its class: cos(theta) < cos(pi - m).
    w = np.array([[1.0, 0.0], [0.0, 1.0]])
    x = np.array([[-1.0, 0.05]])
    head = _head(heads.ArcFace, w, num_classes=2, scale=1.0, margin=0.5)
    got = ops.convert_to_numpy(head([x.astype(DTYPE), np.array([0])]))[0, 0]
    c = x[0, 0] / np.linalg.norm(x[0])
    assert c < math.cos(math.pi - 0.5)
    assert got == pytest.approx(c - math.sin(math.pi - 0.5) * 0.5, rel=RTOL)


def test_adaface_keeps_its_norm_statistics():
    x, w, labels = _case(seed=3)
    head = _head(heads.AdaFace, w, num_classes=4)
    _, mean, std = ref_adaface(x, w, labels, 64.0, 0.4, 0.333, 0.01)
    head([x.astype(DTYPE), labels], training=True)
    assert float(ops.convert_to_numpy(head.batch_mean)) == pytest.approx(mean, rel=1e-5)
    assert float(ops.convert_to_numpy(head.batch_std)) == pytest.approx(std, rel=1e-5)
    head([x.astype(DTYPE), labels], training=False)  # inference leaves them
    assert float(ops.convert_to_numpy(head.batch_mean)) == pytest.approx(mean, rel=1e-5)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("name", list(CASES))
def test_no_nan_at_cos_plus_minus_one_in_mixed_precision(name, policy):
    cls, options, _ = CASES[name]
    k = options.get("centres", 1)
    rng = np.random.default_rng(1)
    w = rng.normal(size=(8, 3 * k)).astype("float32")
    # Embeddings exactly on a class direction and exactly opposite it.
    x = np.stack([w[:, 0] * 3.0, -w[:, 0] * 2.0, w[:, k] * 0.5]).astype("float16")
    keras.config.set_dtype_policy(policy)
    try:
        head = cls(num_classes=3, **options)
        head.build([(None, 8), (None,)])
        head.kernel.assign(w)
        weights = np.ones((3, 3), "float32")
        logits, gx, gw = _value_and_grads_mixed(head, x, np.array([0, 0, 1]), weights)
    finally:
        keras.config.set_dtype_policy("float32")
    assert np.all(np.isfinite(logits)) and np.all(np.isfinite(gx)) and np.all(np.isfinite(gw))


def _value_and_grads_mixed(head, x, labels, weights):
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            logits = head([xt, labels], training=True)
            total = tf.reduce_sum(tf.cast(logits, "float32") * weights)
        gx, gw = tape.gradient(total, [xt, head.kernel.value])
        return np.asarray(logits, "float32"), np.asarray(gx, "float32"), np.asarray(gw)
    import jax

    def total(xv, wv):
        logits, _ = head.stateless_call([wv], [v.value for v in head.non_trainable_variables],
                                        [xv, labels], training=True)
        return jax.numpy.sum(logits.astype("float32") * weights), logits

    (_, logits), (gx, gw) = jax.value_and_grad(total, argnums=(0, 1), has_aux=True)(
        x, head.kernel.value)
    return np.asarray(logits, "float32"), np.asarray(gx, "float32"), np.asarray(gw)


@pytest.mark.parametrize("name", list(CASES))
def test_heads_save_reload_and_export_class_centres(name, tmp_path):
    cls, options, _ = CASES[name]
    embeddings = keras.Input((5,))
    labels = keras.Input((), dtype="int32")
    head = cls(num_classes=4, **options)
    model = keras.Model([embeddings, labels], head([embeddings, labels]))
    x, _, y = _case(seed=2)
    path = tmp_path / "head.keras"
    model.save(path)
    again = keras.saving.load_model(path)  # after `import fsl`, no custom_objects
    np.testing.assert_allclose(ops.convert_to_numpy(again([x, y])),
                               ops.convert_to_numpy(model([x, y])), rtol=1e-5, atol=1e-5)
    assert type(again.layers[-1]) is cls
    assert again.layers[-1].get_config() == head.get_config()
    centres = head.class_centres()
    k = options.get("centres", 1)
    assert centres.shape == ((4, 5) if k == 1 else (4, k, 5))
    np.testing.assert_allclose(np.linalg.norm(centres, axis=-1), 1.0, rtol=1e-6)
    kernel = ops.convert_to_numpy(head.kernel)
    first = kernel[:, 0] / np.linalg.norm(kernel[:, 0])
    np.testing.assert_allclose(centres.reshape(4 * k, 5)[0], first, rtol=1e-6)
    assert fsl.heads is heads


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="num_classes"):
        heads.ArcFace(num_classes=0)
    with pytest.raises(ValueError, match="margin"):
        heads.CosFace(num_classes=3, margin=-0.1)
    with pytest.raises(ValueError, match="t_alpha"):
        heads.AdaFace(num_classes=3, t_alpha=2.0)
    head = heads.ArcFace(num_classes=3)
    with pytest.raises(ValueError, match="Received: 3 inputs"):
        head([np.zeros((2, 4), "float32")] * 3)
