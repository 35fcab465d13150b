"""Data-parallel training speed with global-batch mining, on logical CPU devices.

For each number of devices (``--devices``, default 1 2 4) and global batch
(``--sizes``, default 256 ... 4096), a fresh process trains a small
embedding network (a 2-layer MLP on 128-d inputs, so that the loss and its
mining dominate) with the semi-hard triplet loss, ``mining="global"``, 4
photos per class: TensorFlow's ``MirroredStrategy`` over that many logical
CPU devices (``tf.config.set_logical_device_configuration``), or on JAX
``keras.distribution.DataParallel`` over
``--xla_force_host_platform_device_count`` devices. It reports the median
step time over ``--steps`` steps after one warm-up, images per second, the
process's peak RSS, and the distance matrix each replica holds:
``B_global x B_local`` floats (``fsl.losses.replicas``), against the
``B_global^2`` of mining the whole batch on every replica.

Logical devices share this machine's cores: the numbers show what the
distribution costs and that memory per replica shrinks, not a speed-up.

Usage::

    python benchmarks/scaling.py                      # TensorFlow
    KERAS_BACKEND=jax python benchmarks/scaling.py
    python benchmarks/scaling.py --devices 1 4 --sizes 512 --steps 3

Prints a JSON list of records on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import _machine

DIM = 128


def run_one(devices: int, batch: int, steps: int) -> dict:
    """Train in this process (devices already configured); one record."""
    import keras
    import numpy as np

    import fsl

    backend = keras.backend.backend()
    strategy = None
    if backend == "tensorflow" and devices > 1:
        import tensorflow as tf

        strategy = tf.distribute.MirroredStrategy(
            [d.name for d in tf.config.list_logical_devices("CPU")][:devices])
    if backend == "jax" and devices > 1:
        import jax

        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=jax.devices()[:devices]))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch * (steps + 1), DIM)).astype("float32")
    y = (np.arange(len(x)) // 4).astype("int32")
    import contextlib

    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = keras.Sequential([keras.Input((DIM,)), keras.layers.Dense(256, activation="relu"),
                                  keras.layers.Dense(128)])
        model.compile(optimizer=keras.optimizers.SGD(0.01),
                      loss=fsl.losses.TripletSemiHardLoss(margin=0.5, mining="global"))
    times = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch_index, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch_index, logs=None):
            times.append(time.perf_counter() - self.start)

    model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0, callbacks=[Clock()])
    step = statistics.median(times[1:])
    local = batch // devices
    return {"backend": backend, "devices": devices, "global_batch": batch,
            "seconds_per_step": step, "images_per_second": batch / step, "steps": len(times) - 1,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "distance_matrix_bytes_per_replica": 4 * batch * local,
            "whole_batch_matrix_bytes": 4 * batch * batch}


def _configure(devices: int) -> None:
    """Before the framework starts: ``devices`` logical CPU devices."""
    if os.environ.get("KERAS_BACKEND") == "jax":
        # Logical devices share the cores: allow an all-reduce's participants
        # to arrive more than XLA's default 40 s apart on a busy machine.
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + f" --xla_force_host_platform_device_count={devices}"
                                   + " --xla_cpu_collective_call_terminate_timeout_seconds=600")
        return
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(devices)])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="*", default=[1, 2, 4])
    parser.add_argument("--sizes", type=int, nargs="*", default=[256, 512, 1024, 2048, 4096])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--worker", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _configure(args.worker[0])
        print(json.dumps(run_one(args.worker[0], args.worker[1], args.steps)))
        return 0
    machine = _machine.describe()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    records = []
    for devices in args.devices:
        for batch in args.sizes:
            if batch % (4 * devices):
                raise SystemExit(f"--sizes: {batch} is not a multiple of 4 x {devices} devices")
            done = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker",
                                   str(devices), str(batch), "--steps", str(args.steps)],
                                  capture_output=True, text=True, env=env)
            if done.returncode != 0:
                records.append({"devices": devices, "global_batch": batch,
                                "error": done.stderr.strip().splitlines()[-1:]})
                continue
            records.append({**json.loads(done.stdout.strip().splitlines()[-1]),
                            "machine": machine})
            print(json.dumps(records[-1]), file=sys.stderr, flush=True)
    print(json.dumps(records, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
