"""Backend-agnostic test helpers (TensorFlow, JAX, PyTorch)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import numpy as np


def value_and_grad(fn: Callable, *args: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Value of ``fn(*args)`` (a scalar) and its gradients w.r.t. every argument.

    Runs on the active Keras backend, so a test that uses it checks the
    gradient that training on that backend would see. A ``None`` gradient
    (the value does not depend on an argument) is returned as zeros.
    """
    args = [np.asarray(a, dtype="float32") for a in args]
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        xs = [tf.convert_to_tensor(a) for a in args]
        with tf.GradientTape() as tape:
            for x in xs:
                tape.watch(x)
            y = fn(*xs)
        grads = tape.gradient(y, xs)
        grads = [np.zeros_like(a) if g is None else np.asarray(g) for a, g in zip(args, grads)]
        return np.asarray(y), grads
    if backend == "jax":
        import jax

        y, grads = jax.value_and_grad(fn, argnums=tuple(range(len(args))))(*args)
        return np.asarray(y), [np.asarray(g) for g in grads]
    if backend == "torch":
        import torch

        xs = [torch.tensor(a, requires_grad=True) for a in args]
        y = fn(*xs)
        y.backward()
        grads = [np.zeros_like(a) if x.grad is None else x.grad.numpy() for a, x in zip(args, xs)]
        return y.detach().numpy(), grads
    raise NotImplementedError(f"Unsupported backend: {backend}")


def assert_all_finite(*arrays: np.ndarray | Sequence[np.ndarray]) -> None:
    """Fail if any value in the arrays (or lists of arrays) is NaN or infinite."""
    for a in arrays:
        items = a if isinstance(a, (list, tuple)) else [a]
        for item in items:
            item = np.asarray(item)
            assert np.all(np.isfinite(item)), f"non-finite values: {item}"


def scalar(x) -> float:
    """A scalar tensor of any backend and float dtype as a Python float."""
    return float(keras.ops.convert_to_numpy(keras.ops.cast(x, "float32")))


def load_npz(path) -> dict:
    """Every array of an ``.npz`` file, read once."""
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def ref_distance(u, v, metric: str) -> float:
    """Distance of two vectors in float64, for the loops of numpy references:
    ``"L2"``, ``"squared-L2"`` or ``"angular"`` (1 - cosine, at least 0)."""
    u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
    if metric == "L2":
        return float(np.sqrt(np.sum((u - v) ** 2)))
    if metric == "squared-L2":
        return float(np.sum((u - v) ** 2))
    nu, nv = u / max(np.linalg.norm(u), 1e-6), v / max(np.linalg.norm(v), 1e-6)
    return float(max(1.0 - nu @ nv, 0.0))


class Interrupt(keras.callbacks.Callback):
    """Fails the run at the end of its first epoch (after its checkpoint)."""

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            raise RuntimeError("simulated interruption")


class CountEpochs(keras.callbacks.Callback):
    """Records the index of every epoch that ran."""

    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(epoch)
