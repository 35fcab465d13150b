"""The FaceNet training step with global-batch semi-hard mining, on one GPU.

A device check for a machine with an accelerator (Keras on JAX; TensorFlow
is not needed): ``fsl.models.facenet_model`` at 96 x 96 grey faces, the
semi-hard triplet loss (``mining="global"``) on a batch of ``--batch``
faces, ``--per-class`` photos per person (FaceNet's regime: 1,800 faces,
about 40 per person), Adam, ``--steps`` timed steps after one compiling
step. Prints one JSON object: the device, step time (median), images per
second, and the device's peak memory (``memory_stats``), plus the loss of
the first and last step (finite, going down on these random faces' fixed
labels).

Usage (see benchmarks/README.md, "Device check", for carrying Keras)::

    KERAS_BACKEND=jax python benchmarks/device_facenet_step.py
    KERAS_BACKEND=jax python benchmarks/device_facenet_step.py --batch 256 --steps 2  # CPU smoke
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1800)
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args(argv)
    if args.batch % args.per_class:
        parser.error(f"--batch must be a multiple of --per-class. Received: {args.batch}, "
                     f"{args.per_class}")
    import jax
    import keras
    import numpy as np

    import fsl

    size = args.image_size
    model = fsl.models.facenet_model(input_shape=(size, size, 1), embedding_dim=128)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=fsl.losses.TripletSemiHardLoss(margin=0.2, mining="global"))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch, size, size, 1)).astype("float32")
    y = (np.arange(args.batch) // args.per_class).astype("int32")
    losses, times = [], []
    for _ in range(args.steps + 1):
        start = time.perf_counter()
        loss = model.train_on_batch(x, y)
        times.append(time.perf_counter() - start)  # train_on_batch returns a host value
        losses.append(float(loss))
    device = jax.devices()[0]
    stats = device.memory_stats() or {}
    step = statistics.median(times[1:])
    print(json.dumps({
        "device": str(device), "platform": device.platform, "backend": keras.backend.backend(),
        "batch": args.batch, "per_class": args.per_class, "image_size": size,
        "first_step_seconds": times[0], "seconds_per_step": step,
        "images_per_second": args.batch / step,
        "peak_bytes_in_use": stats.get("peak_bytes_in_use"),
        "loss_first": losses[0], "loss_last": losses[-1],
        "finite": bool(np.all(np.isfinite(losses))),
    }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
