"""Mining over the global batch of data-parallel training.

A mining loss (semi-hard, batch-hard, batch-all, lifted, multi-similarity,
circle) finds its pairs and triplets within a batch, so under data
parallelism it matters which batch it sees: the whole (global) batch, as on
one device, or each replica's share of it. The losses' ``mining`` option
chooses:

* ``"global"`` (default): the pairs and triplets of the whole batch, the
  same loss and gradients as one device on the concatenated batch.
* ``"replica"``: each replica mines its own share; the loss is the mean of
  the replicas' losses.

How, per framework engine:

* TensorFlow (a ``tf.distribute`` replica context with several replicas,
  e.g. ``MirroredStrategy``): each replica all-gathers the embeddings and
  labels (``ReplicaContext.all_gather``, differentiable: the gradient of
  a row goes back to the replica that owns it), mines its own rows as
  anchors against the global batch (``[B_local, B_global]`` distances, not
  ``B_global^2``), and divides by the global normaliser (pairs, anchors or
  active triplets, summed across replicas). Keras 3 sums the replicas'
  gradients and leaves a scalar loss unscaled, so the replicas' losses, and
  their gradients, add up to the one-device loss of the whole batch. In
  ``"replica"`` mode a replica's loss is divided by the number of replicas.
* JAX (``keras.distribution.DataParallel``): the jitted step computes on the
  global batch (sharded by XLA), so the loss already mines it whole;
  ``"replica"`` splits the batch into the data-parallel shards and averages
  the shards' losses.

On one device both modes are the same loss.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable
from typing import Any

import keras
from keras import ops

#: Values of the mining losses' ``mining`` option.
MINING_MODES = ("global", "replica")

_MODE: contextvars.ContextVar[str | None] = contextvars.ContextVar("fsl_mining", default=None)


def check_mining(mode: Any) -> str:
    """``mode`` if it is one of ``MINING_MODES``.

    Raises:
        ValueError: anything else, naming it.
    """
    if mode not in MINING_MODES:
        raise ValueError(f"mining must be one of {MINING_MODES}. Received: mining={mode!r}")
    return mode


class Replicas:
    """The replicas of a ``tf.distribute`` replica context, as the losses use them.

    Args:
        context: a ``tf.distribute.ReplicaContext`` with several replicas.
    """

    def __init__(self, context):
        self.context = context
        self.count = int(context.num_replicas_in_sync)

    def gather(self, x):
        """Every replica's ``x`` concatenated on axis 0, in replica order
        (differentiable)."""
        return self.context.all_gather(x, axis=0)

    def total(self, x):
        """The sum of ``x`` over the replicas (a count: no gradient)."""
        import tensorflow as tf

        return self.context.all_reduce(tf.distribute.ReduceOp.SUM, ops.stop_gradient(x))

    def offset(self, rows):
        """Where this replica's rows start in the gathered batch."""
        sizes = self.gather(ops.reshape(ops.cast(rows, "int32"), (1,)))
        before = ops.less(ops.arange(self.count, dtype="int32"),
                          ops.cast(self.context.replica_id_in_sync_group, "int32"))
        return ops.sum(ops.where(before, sizes, ops.zeros_like(sizes)))


def _tf_replicas() -> Replicas | None:
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync <= 1:
        return None
    return Replicas(context)


def global_replicas() -> Replicas | None:
    """The replicas to mine across: inside a mining loss in ``"global"`` mode
    in a ``tf.distribute`` replica context with several replicas, else
    ``None`` (mine the batch at hand)."""
    return _tf_replicas() if _MODE.get() == "global" else None


def data_parallel_shards() -> int:
    """The number of batch shards of the active ``keras.distribution``
    (``DataParallel``), 1 without one."""
    distribution = keras.distribution.distribution()
    if not isinstance(distribution, keras.distribution.DataParallel):
        return 1
    mesh = distribution.device_mesh
    return int(mesh.shape[list(mesh.axis_names).index(distribution.batch_dim_name)])


@contextlib.contextmanager
def _mining(mode: str):
    token = _MODE.set(mode)
    try:
        yield
    finally:
        _MODE.reset(token)


def mine(fn: Callable[..., Any], y_true, y_pred, options: dict[str, Any], mode: str):
    """``fn(y_true, y_pred, **options)`` over the batch that ``mode`` names.

    Args:
        fn: a mining loss function (``fsl.losses.triplet_semihard_loss``...).
        y_true, y_pred: this replica's labels and embeddings.
        options: ``fn``'s options.
        mode: ``"global"`` or ``"replica"``.

    Returns:
        This replica's scalar loss, scaled as the module docstring says.
    """
    replicas = _tf_replicas()
    if replicas is not None:
        if mode == "global":
            with _mining("global"):
                return fn(y_true, y_pred, **options)
        return fn(y_true, y_pred, **options) / replicas.count
    shards = data_parallel_shards() if mode == "replica" else 1
    rows = y_pred.shape[0]
    if shards > 1 and rows is not None and rows % shards == 0:
        size = rows // shards
        labels = ops.reshape(ops.convert_to_tensor(y_true), (rows, -1))
        losses = [fn(labels[i * size:(i + 1) * size], y_pred[i * size:(i + 1) * size],
                     **options) for i in range(shards)]
        return ops.mean(ops.stack(losses))
    return fn(y_true, y_pred, **options)


__all__ = ["MINING_MODES", "Replicas", "check_mining", "data_parallel_shards",
           "global_replicas", "mine"]
