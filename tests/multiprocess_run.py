"""A small face run over several processes, for tests/test_multiprocess.py:
``distribution="jax-data-parallel"`` started once per process with
``keras.distribution``'s environment variables (``--backend jax``), or
``"multi-worker"`` with ``TF_CONFIG`` (``--backend tensorflow``); or alone
with ``--devices N`` logical CPU devices (``"jax-data-parallel"`` /
``"mirrored"``).

Usage::

    python tests/multiprocess_run.py ORL_DIR OUT_DIR RUN [--backend jax] [--epochs 2]
        [--devices N] [--die-after EPOCH] [--resume]

``--die-after E``: process 1 ends itself (exit code 3) after epoch ``E``'s
checkpoint. A failed run prints ``FAILED: <error>`` (with its notes) and
exits 2 at once, without waiting for JAX's shutdown barrier of the other
processes.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=("jax", "tensorflow"), default="jax")
    parser.add_argument("orl_dir")
    parser.add_argument("out_dir")
    parser.add_argument("run")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--devices", type=int, default=None)
    parser.add_argument("--die-after", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    os.environ["KERAS_BACKEND"] = args.backend
    if args.backend == "jax":
        flags = " --xla_cpu_collective_call_terminate_timeout_seconds=600"
        if args.devices:
            flags += f" --xla_force_host_platform_device_count={args.devices}"
        os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + flags
        distribution = "jax-data-parallel"
    else:
        import tensorflow as tf

        if args.devices:
            tf.config.set_logical_device_configuration(
                tf.config.list_physical_devices("CPU")[0],
                [tf.config.LogicalDeviceConfiguration()] * args.devices)
        distribution = "mirrored" if args.devices else "multi-worker"

    import keras

    from fsl.training import train_facenet
    from fsl.training.distribution import process_index

    class Die(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if process_index() == 1 and epoch == args.die_after:
                os._exit(3)

    people = sorted(p for p in os.listdir(args.orl_dir)
                    if os.path.isdir(os.path.join(args.orl_dir, p)))[:12]
    try:
        train_facenet(args.orl_dir, identities=people, test_identities=4, image_size=32, p=4,
                      k=2, dropout=0.0, augment=0.0, wccn=None, score_norm=None,
                      test_time_flip=False, fast=True, epochs=args.epochs,
                      distribution=distribution, output_dir=args.out_dir, run=args.run,
                      resume=args.resume, verbose=0,
                      callbacks=[Die()] if args.die_after is not None else None)
    except Exception as error:  # noqa: BLE001 - reported to the test
        print("FAILED: " + "".join(traceback.format_exception_only(error)), file=sys.stderr,
              flush=True)
        os._exit(2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
