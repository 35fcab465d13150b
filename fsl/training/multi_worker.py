"""Keras 3's ``Model.fit`` under ``tf.distribute.MultiWorkerMirroredStrategy``.

With several workers, Keras 3's TensorFlow trainer fails in two places
(keras-team/keras#20585, Keras 3.0-3.15 at least):

1. Before the first step, ``fit`` reduces the first batch over all replicas
   (``strategy.reduce("MEAN", batch, axis=None)``) only to learn its shapes
   for the model's symbolic build. The collective strategy cannot reduce a
   nested value (tf.distribute's own "support `value` being a nest" TODO),
   so every ``(x, y)`` batch fails with "Attempt to convert a value
   (PerReplica...) ... to a Tensor".
2. Every step's logs are reduced with ``strategy.reduce("MEAN", v, axis=0)``,
   which fails for the scalar loss ("Invalid reduction dimension 0 for input
   with 0 dimensions").

``fit_fixes(model)`` mends both while one trainer's ``fit`` runs: the model
is built from this worker's first replica's share of the batch (the same
shapes, no collective), and scalars are averaged over the replicas with
``axis=None`` (what ``fit`` does on one machine). Batches, gradients and
updates are untouched: the step is the strategy's own.
"""

from __future__ import annotations

import contextlib
import logging

import keras

log = logging.getLogger(__name__)


def _trainer_module():
    try:
        from keras.src.backend.tensorflow import trainer
    except ImportError:
        return None
    names = ("reduce_per_replica", "_collective_all_reduce_multi_worker")
    if not (all(hasattr(trainer, name) for name in names)
            and hasattr(trainer.TensorFlowTrainer, "_maybe_symbolic_build")):
        return None
    return trainer


@contextlib.contextmanager
def fit_fixes(model: keras.Model):
    """The context in which ``model.fit`` runs under a multi-worker strategy.

    Replaces Keras's build-time reduction on ``model`` and its per-step log
    reduction (a module function) until the context ends; anything but a
    multi-worker strategy's scalar mean goes to Keras's own code.

    Args:
        model: the model about to be fitted, built and compiled under the
            strategy.
    """
    import tensorflow as tf

    trainer = _trainer_module()
    if trainer is None:
        log.warning("Keras %s's TensorFlow trainer is not the one fsl mends: fit runs "
                    "as Keras has it under MultiWorkerMirroredStrategy",
                    keras.__version__)
        yield
        return
    keras_build = trainer.TensorFlowTrainer._maybe_symbolic_build
    keras_reduce = trainer.reduce_per_replica

    def build(iterator=None, data_batch=None):
        strategy = model.distribute_strategy
        if iterator is not None:
            for _, _, batches in iterator:
                first = next(batches)
                data_batch = tf.nest.map_structure(
                    lambda v: strategy.experimental_local_results(v)[0]
                    if isinstance(v, tf.distribute.DistributedValues) else v, first)
                break
        return keras_build(model, data_batch=data_batch)

    def reduce(values, strategy, reduction="auto"):
        if reduction not in ("auto", "mean") or not trainer._collective_all_reduce_multi_worker(
                strategy):
            return keras_reduce(values, strategy, reduction)

        def mean(value):
            local = (strategy.experimental_local_results(value)[0]
                     if isinstance(value, tf.distribute.DistributedValues) else value)
            if not tf.is_tensor(local):
                return value
            return strategy.reduce("MEAN", value, axis=None if local.shape.rank == 0 else 0)

        return tf.nest.map_structure(mean, values)

    object.__setattr__(model, "_maybe_symbolic_build", build)
    trainer.reduce_per_replica = reduce
    try:
        yield
    finally:
        trainer.reduce_per_replica = keras_reduce
        object.__delattr__(model, "_maybe_symbolic_build")


__all__ = ["fit_fixes"]
