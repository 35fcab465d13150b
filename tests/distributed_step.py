"""One training step on 4 logical CPU devices and on one device, for
tests/test_distributed.py (run in a fresh process: the devices must be set
before the framework starts).

Usage::

    python tests/distributed_step.py OUT.json [--losses semihard hard ...]

Runs on the backend of ``KERAS_BACKEND``. TensorFlow: 4 logical CPU devices
(``tf.config.set_logical_device_configuration``) and
``tf.distribute.MirroredStrategy``; JAX: ``--xla_force_host_platform_device_count=4``
and ``keras.distribution.DataParallel``. For each loss and mining mode, one
``model.fit`` step of plain SGD (learning rate 1: the weight change is minus
the gradient) on the same 32-row batch (8 people x 4), from the same weights,
and the same on one device; writes the weight changes and reported losses.
Then batch-hard through a model with batch normalization: ``plain``
(``keras.layers.BatchNormalization()``: per-replica statistics under
``MirroredStrategy``, global-batch ones under JAX's ``DataParallel``) and,
on TensorFlow, ``sync`` (``synchronized=True``: statistics all-reduced).
Then one step of each margin head's cross-entropy (``HEADS``), with the
heads' non-trainable state after it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

REPLICAS = 4

if os.environ.get("KERAS_BACKEND") == "jax":
    # The logical devices share the machine's cores: on a busy 2-core machine
    # one device's thread can reach an all-reduce more than XLA's default 40 s
    # after the others, and XLA then aborts the process.
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + f" --xla_force_host_platform_device_count={REPLICAS}"
                               + " --xla_cpu_collective_call_terminate_timeout_seconds=600")

import numpy as np  # noqa: E402

#: fsl.losses names and options.
LOSSES = {
    "semihard": {"margin": 0.5},
    "hard": {"margin": 0.5},
    "batch-all": {"margin": 0.5},
    "lifted": {"margin": 1.0},
    "multi-similarity": {},
    "circle": {},
}


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(8), 4)).astype("int32")
    x = rng.normal(size=(32, 6)).astype("float32")
    return x, labels


def _model(batch_norm: str | None, seed: int = 1):
    import keras

    rng = np.random.default_rng(seed)
    inputs = keras.Input((6,))
    h = keras.layers.Dense(16, activation="tanh", name="hidden")(inputs)
    if batch_norm is not None:
        h = keras.layers.BatchNormalization(synchronized=batch_norm == "sync", name="bn")(h)
    outputs = keras.layers.Dense(8, name="embedding")(h)
    model = keras.Model(inputs, outputs)
    # Random kernels; biases, scales and statistics as Keras initialises them.
    model.set_weights([rng.normal(scale=0.5, size=w.shape).astype("float32")
                       if w.ndim > 1 else w for w in model.get_weights()])
    return model


def _step(loss_name: str, mining: str, batch_norm: str | None, strategy=None) -> dict:
    import contextlib

    import keras

    import fsl

    options = LOSSES[loss_name]
    x, labels = _data()
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        model = _model(batch_norm)
        before = [w.copy() for w in model.get_weights()]
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0),
                      loss=fsl.losses.get(loss_name, mining=mining, **options))
    return _fit_one_batch(model, x, labels, before)


def _fit_one_batch(model, inputs, labels, before) -> dict:
    """One ``fit`` step on the 32-row batch: the reported loss and the weight
    changes from ``before``."""
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        data = tf.data.Dataset.from_tensor_slices((inputs, labels)).batch(32)
        history = model.fit(data, epochs=1, verbose=0)
    else:
        history = model.fit(inputs, labels, batch_size=32, epochs=1, shuffle=False, verbose=0)
    after = model.get_weights()
    return {"value": float(history.history["loss"][0]),
            "delta": [(a - b).ravel().tolist() for a, b in zip(after, before, strict=True)]}


#: fsl.heads layers and options (8 classes: the 8 people of _data).
HEADS = {"ArcFace": {"scale": 10.0}, "CosFace": {"scale": 10.0}, "AdaFace": {"scale": 10.0}}


def _head_step(head_name: str, strategy=None) -> dict:
    """One SGD step of a margin head's cross-entropy on the same batch; also
    the head's non-trainable weights (AdaFace's norm statistics) after it."""
    import contextlib

    import keras

    import fsl

    x, labels = _data()
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        net = _model(None)
        label = keras.Input((), dtype="int32", name="label")
        head = getattr(fsl.heads, head_name)(8, **HEADS[head_name])
        key = net.inputs[0].name
        model = keras.Model({key: net.inputs[0], "label": label}, head([net.output, label]))
        head.set_weights([np.random.default_rng(2).normal(size=w.shape).astype("float32")
                          if w.ndim > 1 else w for w in head.get_weights()])
        before = [w.copy() for w in model.get_weights()]
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return {**_fit_one_batch(model, {key: x, "label": labels}, labels, before),
            "state": [float(np.asarray(w)) for w in head.non_trainable_weights]}


def _trainer(orl_dir: str, out_dir: str, distribution: str | None) -> dict:
    """train_facenet's fast run (two P x K batches of 8 people) on ORL, without
    dropout (its masks differ between one device and four) or augmentation
    (under tf.distribute, Keras reads one batch before training, which draws
    the augmentation's random numbers once more)."""
    import keras

    from fsl.training import train_facenet

    train_facenet(orl_dir, fast=True, output_dir=out_dir, run=distribution or "one",
                  verbose=0, image_size=32, p=8, k=4, dropout=0.0, augment=0.0, distribution=distribution,
                  jit_compile=False)
    from fsl.runs import open_run

    run = open_run(os.path.join(out_dir, distribution or "one"))
    model = keras.saving.load_model(run.model_path)
    return {"weights": [w.ravel().tolist() for w in model.get_weights()],
            "loss": [float(v) for v in run.history()["loss"]]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--trainer", nargs=2, metavar=("ORL_DIR", "RUNS_DIR"),
                        help="instead: train_facenet on one device and distributed")
    parser.add_argument("--losses", nargs="*", default=list(LOSSES))
    parser.add_argument("--heads", nargs="*", default=list(HEADS))
    parser.add_argument("--batch-norm", nargs="*", default=None,
                        help="sync (TensorFlow only) and plain; default: what the backend has")
    args = parser.parse_args(argv)
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(REPLICAS)])
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(devices)  # one per process

        def distributed(fn):
            return fn(strategy)

        def single(fn):
            return fn(None)
    else:
        import jax

        devices = [str(d) for d in jax.devices()]

        def distributed(fn):
            keras.distribution.set_distribution(keras.distribution.DataParallel(
                devices=jax.devices()[:REPLICAS]))
            try:
                return fn(None)
            finally:
                keras.distribution.set_distribution(None)

        def single(fn):
            return fn(None)

    if len(devices) < REPLICAS:
        raise RuntimeError(f"expected {REPLICAS} devices. Received: {devices}")
    out = {"backend": backend, "devices": devices, "runs": []}
    if args.trainer:
        engine = "mirrored" if backend == "tensorflow" else "jax-data-parallel"
        out["trainer"] = {where: _trainer(*args.trainer, distribution)
                          for where, distribution in (("one", None), ("many", engine))}
        with open(args.out, "w") as handle:
            json.dump(out, handle)
        return 0
    for loss in args.losses:
        for mining in ("global", "replica"):
            for where, run in (("one", single), ("many", distributed)):
                record = run(lambda strategy, loss=loss, mining=mining:
                             _step(loss, mining, None, strategy))
                out["runs"].append({"loss": loss, "mining": mining, "where": where, **record})
    for head in args.heads:
        for where, run in (("one", single), ("many", distributed)):
            record = run(lambda strategy, head=head: _head_step(head, strategy))
            out["runs"].append({"loss": head, "mining": "head", "where": where, **record})
    if args.batch_norm is None:
        args.batch_norm = ["sync", "plain"] if backend == "tensorflow" else ["plain"]
    for batch_norm in args.batch_norm:
        for where, run in (("one", single), ("many", distributed)):
            record = run(lambda strategy, bn=batch_norm: _step("hard", "global", bn, strategy))
            out["runs"].append({"loss": "hard", "mining": "global", "batch_norm": batch_norm,
                                "where": where, **record})
    with open(args.out, "w") as handle:
        json.dump(out, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
