"""Data-parallel training with the frameworks' own engines.

``distribution=`` of the trainers (``fsl train ... --distribution``):

* ``"mirrored"``: ``tf.distribute.MirroredStrategy`` over this machine's
  GPUs, or its CPU devices when it has none (TensorFlow backend).
* ``"multi-worker"``: ``tf.distribute.MultiWorkerMirroredStrategy`` over
  the processes (machines) that ``TF_CONFIG`` names, each with its devices
  (TensorFlow backend); without ``TF_CONFIG``, this process alone.
* ``"jax-data-parallel"``: ``keras.distribution.DataParallel`` over every
  JAX device (JAX backend), of this process or of several.

The model is built, compiled and trained inside the engine; the batch is
the global batch, split into equal consecutive shares. A P x K batch keeps
each identity's K faces together, so with P a multiple of the number of
replicas every replica holds whole identities. The mining losses mine the
global batch (``fsl.losses.replicas``), so a step equals one device's step
on the whole batch.

Several processes or machines, the same command in each:

* TensorFlow: ``"multi-worker"`` with ``TF_CONFIG`` (``{"cluster": {"worker":
  ["host0:port", "host1:port"]}, "task": {"type": "worker", "index": i}}``,
  a ``"chief"`` task counting first). Keras 3's ``Model.fit`` fails under
  this strategy (keras-team/keras#20585); ``fsl.training.multi_worker``
  mends the two places for the duration of a trainer's ``fit``.
* JAX: ``"jax-data-parallel"`` with ``keras.distribution.initialize``'s
  environment variables (``KERAS_DISTRIBUTION_JOB_ADDRESSES``: the
  coordinator's ``host:port``, ``KERAS_DISTRIBUTION_NUM_PROCESSES``,
  ``KERAS_DISTRIBUTION_PROCESS_ID``; CPU collectives over gloo).

The processes join when the run options are made (``join_processes``),
every process builds the same global P x K batches from the seed and the
engine gives each its consecutive share, and the step runs over all
processes' devices. Every process writes a run folder of its own
(checkpoints to resume from): process 0 the run (``run``, which must be
given), process ``i`` ``"<run>-process<i>"``. If one process stops, the
others fail in a collective operation; start them all again with
``resume=True``.

Batch normalization: under the TensorFlow strategies, the batch-norm layers
are switched to ``synchronized=True`` for training (statistics all-reduced
over the global batch, as on one device) and back afterwards (the saved
model loads on any backend); under JAX the jitted step computes them on the
global batch anyway.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from typing import Any

import keras

from fsl.models import sublayers
from fsl.training.choices import DISTRIBUTIONS

_BACKEND = {"mirrored": "tensorflow", "multi-worker": "tensorflow",
            "jax-data-parallel": "jax"}
_STRATEGIES = ("mirrored", "multi-worker")


def _process_variable(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    if not value.isdigit():
        raise ValueError(f"{name} must be a non-negative integer. Received: {name}={value!r}")
    return int(value)


def _tf_config() -> tuple[int, int]:
    """(number of tasks, this task's index) of ``TF_CONFIG``'s cluster:
    its ``chief`` first, then its ``worker`` tasks; (1, 0) without it."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 1, 0
    try:
        config = json.loads(raw)
        cluster, task = config.get("cluster") or {}, config.get("task") or {}
        tasks = [(kind, i) for kind in ("chief", "worker")
                 for i in range(len(cluster.get(kind) or []))]
    except (ValueError, AttributeError, TypeError):
        raise ValueError("TF_CONFIG must be JSON with a 'cluster' of 'chief'/'worker' "
                         f"addresses and this process's 'task'. Received: TF_CONFIG={raw!r}"
                         ) from None
    if len(tasks) <= 1 and not task:
        return max(len(tasks), 1), 0
    here = (task.get("type"), task.get("index"))
    if here not in tasks:
        raise ValueError(f"TF_CONFIG's task must be one of its cluster's {tasks}. "
                         f"Received: task={task!r}")
    return len(tasks), tasks.index(here)


def _group() -> tuple[str | None, str, int, int]:
    """(engine, variable, count, index) of the training processes the
    environment asks for; (None, "", 1, 0) for one."""
    keras_count = _process_variable("KERAS_DISTRIBUTION_NUM_PROCESSES") or 1
    tf_count, tf_index = _tf_config()
    if keras_count > 1 and tf_count > 1:
        raise ValueError("Both KERAS_DISTRIBUTION_NUM_PROCESSES (JAX) and TF_CONFIG "
                         "(TensorFlow) ask for several training processes: set one. Received: "
                         f"KERAS_DISTRIBUTION_NUM_PROCESSES={keras_count}, TF_CONFIG with "
                         f"{tf_count} tasks")
    if tf_count > 1:
        return "multi-worker", "TF_CONFIG", tf_count, tf_index
    if keras_count > 1:
        index = _process_variable("KERAS_DISTRIBUTION_PROCESS_ID") or 0
        if index >= keras_count:
            raise ValueError(f"KERAS_DISTRIBUTION_PROCESS_ID must be below "
                             f"KERAS_DISTRIBUTION_NUM_PROCESSES={keras_count}. Received: "
                             f"KERAS_DISTRIBUTION_PROCESS_ID={index}")
        return ("jax-data-parallel", f"KERAS_DISTRIBUTION_NUM_PROCESSES={keras_count}",
                keras_count, index)
    return None, "", 1, 0


def process_count() -> int:
    """How many processes train together: ``TF_CONFIG``'s tasks
    (``"multi-worker"``) or ``KERAS_DISTRIBUTION_NUM_PROCESSES``
    (``"jax-data-parallel"``); 1 without either."""
    return _group()[2]


def process_index() -> int:
    """This process's index among them (``TF_CONFIG``'s task, the chief
    first; or ``KERAS_DISTRIBUTION_PROCESS_ID``); 0 for one process."""
    return _group()[3]


@functools.cache
def _join() -> None:
    import jax

    # JAX's collectives between CPU processes need gloo (GPUs use NCCL).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        keras.distribution.initialize()
    except RuntimeError as error:
        raise RuntimeError(
            "The training processes must join before JAX computes anything in this process "
            "(train first, or call fsl.training.distribution.join_processes "
            f"('jax-data-parallel') at the start). JAX said: {error}") from error


def join_processes(name: str | None) -> None:
    """Join the other training processes the environment names (once per
    process): under ``"multi-worker"`` create the strategy from
    ``TF_CONFIG``; under ``"jax-data-parallel"`` with
    ``KERAS_DISTRIBUTION_NUM_PROCESSES`` above 1, call
    ``keras.distribution.initialize``. Trainers call it when their run
    options are made.

    Raises:
        ValueError: several processes under another engine, a process
            index out of range, a malformed ``TF_CONFIG``, or no
            coordinator address.
        RuntimeError: JAX computed something in this process already.
    """
    engine, variable, count, _ = _group()
    if name == "multi-worker":
        if engine == "jax-data-parallel":
            raise ValueError(f"{variable} asks for several JAX processes: distribution must "
                             f"be 'jax-data-parallel'. Received: distribution={name!r}")
        _multi_worker()
        return
    if count == 1:
        return
    if name != engine:
        raise ValueError(f"{variable} asks for several training processes: distribution must "
                         f"be {engine!r}. Received: distribution={name!r}")
    if not os.environ.get("KERAS_DISTRIBUTION_JOB_ADDRESSES"):
        raise ValueError("Several training processes need the coordinator's address in "
                         "KERAS_DISTRIBUTION_JOB_ADDRESSES (host:port of process 0). "
                         "Received: none")
    _join()


def process_run_name(run: str | None) -> str | None:
    """The run folder name of this process: ``run`` for process 0 (or a single
    process), ``"<run>-process<i>"`` for process ``i``.

    Raises:
        ValueError: several processes and no ``run`` (they must agree on it).
    """
    if process_count() == 1:
        return run
    if run is None:
        raise ValueError("Several training processes must be given the same run name (run=, "
                         "--run): a default name from the clock could differ. Received: run=None")
    index = process_index()
    return run if index == 0 else f"{run}-process{index}"


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


@functools.cache
def _multi_worker():
    import tensorflow as tf

    return tf.distribute.MultiWorkerMirroredStrategy()


def _strategy(name: str):
    return _multi_worker() if name == "multi-worker" else _mirrored()


def replicas(name: str | None) -> int:
    """How many replicas share the global batch under ``name``."""
    if name is None:
        return 1
    if name == "jax-data-parallel":
        import jax

        return len(jax.devices())
    return int(_strategy(name).num_replicas_in_sync)


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
    with _strategy(name).scope():
        yield


def share_batches(dataset):
    """``dataset`` with ``tf.data``'s ``DATA`` auto-shard policy: under
    ``"multi-worker"``, every worker builds the same global batches and the
    strategy gives each its consecutive share (not whole files). Anything
    but a ``tf.data.Dataset`` is returned as it is."""
    import tensorflow as tf

    if not isinstance(dataset, tf.data.Dataset):
        return dataset
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


@contextlib.contextmanager
def synchronized_batch_norm(model: keras.Model, name: str | None):
    """Under a TensorFlow strategy, the model's batch-norm layers normalise with
    the global batch's statistics inside this context."""
    layers = sublayers(model, keras.layers.BatchNormalization) if name in _STRATEGIES else []
    for layer in layers:
        layer.synchronized = True
    try:
        yield
    finally:
        for layer in layers:
            layer.synchronized = False


__all__ = ["DISTRIBUTIONS", "check_batch", "check_distribution",
           "distributed", "join_processes", "process_count", "process_index",
           "process_run_name", "replicas", "share_batches", "synchronized_batch_norm"]
