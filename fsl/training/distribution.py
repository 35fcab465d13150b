"""Data-parallel training with the frameworks' own engines.

``distribution=`` of the trainers (``fsl train ... --distribution``):

* ``"mirrored"``: ``tf.distribute.MirroredStrategy`` over this machine's
  GPUs, or its CPU devices when it has none (TensorFlow backend).
* ``"jax-data-parallel"``: ``keras.distribution.DataParallel`` over every
  JAX device (JAX backend).

The model is built, compiled and trained inside the engine; the batch is
the global batch, split into equal consecutive shares. A P x K batch keeps
each identity's K faces together, so with P a multiple of the number of
replicas every replica holds whole identities. The mining losses mine the
global batch (``fsl.losses.replicas``), so a step equals one device's step
on the whole batch.

Several machines: not offered. ``tf.distribute.MultiWorkerMirroredStrategy``
is the engine, but Keras 3's ``Model.fit`` fails under it
(keras-team/keras#20585); the losses' global mining uses the same
replica-context calls and would carry over.

Batch normalization: under ``MirroredStrategy``, the batch-norm layers
are switched to ``synchronized=True`` for training (statistics all-reduced
over the global batch, as on one device) and back afterwards (the saved
model loads on any backend); under JAX the jitted step computes them on the
global batch anyway.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

import keras

from fsl.training.choices import DISTRIBUTIONS

_BACKEND = {"mirrored": "tensorflow", "jax-data-parallel": "jax"}


def check_distribution(name: Any) -> str | None:
    """``name`` if it is ``None`` or one of ``DISTRIBUTIONS`` usable on this backend.

    Raises:
        ValueError: another value, or an engine of another backend (naming
            both).
    """
    if name is None:
        return None
    if name not in DISTRIBUTIONS:
        raise ValueError(f"distribution must be None or one of {DISTRIBUTIONS}. "
                         f"Received: distribution={name!r}")
    backend = keras.backend.backend()
    if _BACKEND[name] != backend:
        raise ValueError(f"distribution={name!r} needs the {_BACKEND[name]} backend "
                         f"(KERAS_BACKEND={_BACKEND[name]}). Received: backend {backend!r}")
    return name


@functools.cache
def _mirrored():
    # One strategy per process: a second one's collective ops could reuse the
    # first one's instance keys.
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    return tf.distribute.MirroredStrategy(devices)


def replicas(name: str | None) -> int:
    """How many replicas share the global batch under ``name``."""
    if name is None:
        return 1
    if name == "jax-data-parallel":
        import jax

        return len(jax.devices())
    return int(_mirrored().num_replicas_in_sync)


def check_batch(name: str | None, p: int, k: int) -> None:
    """A P x K batch splits into whole identities per replica.

    Raises:
        ValueError: ``p`` not a multiple of the number of replicas.
    """
    count = replicas(name)
    if p % count:
        raise ValueError(f"distribution={name!r} splits each batch over {count} replicas: p "
                         f"(people per batch) must be a multiple of {count}. Received: p={p}")


@contextlib.contextmanager
def distributed(name: str | None):
    """The context in which a trainer builds, compiles and fits its model."""
    if name is None:
        yield
        return
    if name == "jax-data-parallel":
        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(keras.distribution.DataParallel())
        try:
            yield
        finally:
            keras.distribution.set_distribution(previous)
        return
    with _mirrored().scope():
        yield


@contextlib.contextmanager
def synchronized_batch_norm(model: keras.Model, name: str | None):
    """Under a TensorFlow strategy, the model's batch-norm layers normalise with
    the global batch's statistics inside this context."""
    layers = _batch_norm_layers(model) if name == "mirrored" else []
    for layer in layers:
        layer.synchronized = True
    try:
        yield
    finally:
        for layer in layers:
            layer.synchronized = False


def _batch_norm_layers(layer) -> list:
    found = [layer] if isinstance(layer, keras.layers.BatchNormalization) else []
    for inner in getattr(layer, "layers", []):
        found += _batch_norm_layers(inner)
    return found


__all__ = ["DISTRIBUTIONS", "check_batch", "check_distribution", "distributed", "replicas",
           "synchronized_batch_norm"]
