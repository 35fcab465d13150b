"""Backend-agnostic test helpers (TensorFlow, JAX, PyTorch)."""

from __future__ import annotations

from typing import Callable, Sequence

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
