"""Training throughput (images/s) of fsl's training steps, per backend, vs PyTorch.

Two steps are measured, each on synthetic data already in memory:

* ``mnist_siamese``: the chapter-sized siamese step: two 28x28x1 images through
  a shared conv 32 / conv 64 / dense 128 encoder, ``fsl.layers.PairDistance``,
  ``fsl.losses.ContrastiveLoss``, Adam. Images/s counts both images of a pair.
* ``face_triplet``: ``fsl.models.facenet_model`` on 96x96x1 faces with
  ``fsl.losses.TripletSemiHardLoss`` (online semi-hard mining inside the step),
  P x K labels.

Each Keras backend runs in its own subprocess (``KERAS_BACKEND`` must be set
before Keras is imported); with ``--torch`` and PyTorch installed, a plain
PyTorch loop of the same MNIST network (eager, and ``torch.compile`` with
``--torch-compile``) runs next to them. Every step is compiled
(``jit_compile=True``) where the backend allows it.

Usage::

    python benchmarks/train_throughput.py                      # TF + JAX, CPU sizes
    python benchmarks/train_throughput.py --batch-sizes 256,2048 --torch
    python benchmarks/train_throughput.py --mixed-precision mixed_bfloat16

Prints one JSON document: the machine, the command, and one record per
(framework, step, batch size) with images/s and ms per step (median over
``--repeats`` timed runs of ``--steps`` steps each, after a compile warm-up).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import _machine

# --------------------------------------------------------------------------
# Keras worker (runs inside a subprocess with KERAS_BACKEND set)
# --------------------------------------------------------------------------


def _keras_mnist_siamese(batch: int, jit: bool):
    import keras
    import numpy as np

    import fsl

    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(32, 3, activation="relu")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(64, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(128)(x)
    encoder = keras.Model(inputs, x, name="encoder")
    a, b = keras.Input((28, 28, 1)), keras.Input((28, 28, 1))
    distance = fsl.layers.PairDistance("L2")([encoder(a), encoder(b)])
    model = keras.Model([a, b], distance)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=fsl.losses.ContrastiveLoss(margin=1.0),
        jit_compile=jit,
    )
    rng = np.random.default_rng(0)
    x1 = rng.random((batch, 28, 28, 1), dtype=np.float32)
    x2 = rng.random((batch, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 2, size=(batch, 1)).astype("float32")
    return model, (x1, x2), y, 2 * batch


def _keras_face_triplet(batch: int, jit: bool):
    import keras
    import numpy as np

    import fsl

    model = fsl.models.facenet_model(input_shape=(96, 96, 1), embedding_dim=128)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=fsl.losses.TripletSemiHardLoss(margin=0.2),
        jit_compile=jit,
    )
    rng = np.random.default_rng(0)
    k = 8
    x = rng.random((batch, 96, 96, 1), dtype=np.float32)
    y = (np.arange(batch) // k).astype("int32")
    return model, x, y, batch


_KERAS_STEPS = {"mnist_siamese": _keras_mnist_siamese, "face_triplet": _keras_face_triplet}


def _time_fit(model, x, y, batch: int, steps: int, repeats: int) -> list[float]:
    """Seconds per step, one value per timed repeat, after a warm-up fit."""
    import numpy as np

    def tile(a):
        return np.concatenate([a] * steps)

    xs = tuple(tile(t) for t in x) if isinstance(x, tuple) else tile(x)
    ys = tile(y)
    model.fit(xs, ys, batch_size=batch, epochs=1, shuffle=False, verbose=0)  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.fit(xs, ys, batch_size=batch, epochs=1, shuffle=False, verbose=0)
        times.append((time.perf_counter() - start) / steps)
    return times


def keras_worker(args) -> list[dict]:
    import keras

    if args.mixed_precision:
        keras.mixed_precision.set_global_policy(args.mixed_precision)
    backend = keras.backend.backend()
    records = []
    for step in args.steps_to_run:
        sizes = args.batch_sizes if step == "mnist_siamese" else args.face_batch_sizes
        for batch in sizes:
            jit = backend != "torch" and args.jit == "on"
            try:
                model, x, y, images = _KERAS_STEPS[step](batch, jit)
                times = _time_fit(model, x, y, batch, args.steps, args.repeats)
                per_step = statistics.median(times)
                record = {
                    "framework": f"keras-{backend}",
                    "step": step,
                    "batch_size": batch,
                    "jit_compile": jit,
                    "dtype_policy": keras.mixed_precision.dtype_policy().name,
                    "ms_per_step": round(per_step * 1e3, 3),
                    "images_per_s": round(images / per_step, 1),
                }
            except Exception as error:  # report, keep measuring the others
                record = {
                    "framework": f"keras-{backend}",
                    "step": step,
                    "batch_size": batch,
                    "error": f"{type(error).__name__}: {error}"[:500],
                }
            records.append(record)
            print(json.dumps(record), file=sys.stderr, flush=True)
    return records


# --------------------------------------------------------------------------
# PyTorch reference loop (same MNIST network)
# --------------------------------------------------------------------------


def torch_worker(args) -> list[dict]:
    try:
        import torch
    except ImportError:
        return [{"framework": "torch", "skipped": "torch is not installed"}]
    import numpy as np

    torch.manual_seed(0)

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Conv2d(1, 32, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                torch.nn.Conv2d(32, 64, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                torch.nn.Flatten(), torch.nn.Linear(64 * 5 * 5, 128),
            )

        def forward(self, a, b):
            fa, fb = self.net(a), self.net(b)
            squared = ((fa - fb) ** 2).sum(1)
            return torch.sqrt(torch.clamp(squared, min=1e-12))

    records = []
    modes = ["eager"] + (["compile"] if args.torch_compile else [])
    for mode in modes:
        for batch in args.batch_sizes:
            model = Encoder()
            optimizer = torch.optim.Adam(model.parameters(), 1e-3)
            rng = np.random.default_rng(0)
            a = torch.tensor(rng.random((batch, 1, 28, 28), dtype=np.float32))
            b = torch.tensor(rng.random((batch, 1, 28, 28), dtype=np.float32))
            y = torch.tensor(rng.integers(0, 2, batch).astype("float32"))

            def step():
                optimizer.zero_grad(set_to_none=True)
                d = model(a, b)
                loss = (y * d**2 + (1 - y) * torch.clamp(1.0 - d, min=0) ** 2).mean()
                loss.backward()
                optimizer.step()

            fn = torch.compile(step) if mode == "compile" else step
            for _ in range(3):
                fn()
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                for _ in range(args.steps):
                    fn()
                times.append((time.perf_counter() - start) / args.steps)
            per_step = statistics.median(times)
            records.append({
                "framework": f"torch-{mode}",
                "step": "mnist_siamese",
                "batch_size": batch,
                "ms_per_step": round(per_step * 1e3, 3),
                "images_per_s": round(2 * batch / per_step, 1),
            })
    return records


# --------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="tensorflow,jax")
    parser.add_argument("--batch-sizes", type=_ints, default=[256, 1024, 2048, 4096])
    parser.add_argument("--face-batch-sizes", type=_ints, default=[256, 1024])
    parser.add_argument("--steps", type=int, default=5, help="steps per timed run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="mnist_siamese,face_triplet",
                        help="comma-separated steps: mnist_siamese, face_triplet")
    parser.add_argument("--mixed-precision", default=None,
                        help="Keras dtype policy, e.g. mixed_bfloat16 or mixed_float16")
    parser.add_argument("--jit", choices=("on", "off"), default="on",
                        help="compile the Keras steps with XLA (jit_compile; default on)")
    parser.add_argument("--torch", action="store_true", help="also run the PyTorch loop")
    parser.add_argument("--torch-compile", action="store_true",
                        help="also time torch.compile (with --torch)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.steps_to_run = [s for s in args.only.split(",") if s]
    for s in args.steps_to_run:
        if s not in _KERAS_STEPS:
            parser.error(f"unknown step {s!r}; choose from {sorted(_KERAS_STEPS)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker == "keras":
        print(json.dumps(keras_worker(args)))
        return 0
    if args.worker == "torch":
        print(json.dumps(torch_worker(args)))
        return 0

    forwarded = [a for a in (argv if argv is not None else sys.argv[1:])]
    machine = _machine.describe()  # before the runs: the load of other jobs, not ours
    records = []
    for backend in [b for b in args.backends.split(",") if b]:
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
        proc = subprocess.run(
            [sys.executable, __file__, *forwarded, "--worker", "keras"],
            env=env, capture_output=True, text=True,
        )
        if proc.returncode != 0:
            records.append({"framework": f"keras-{backend}", "error": proc.stderr[-800:]})
            continue
        records.extend(json.loads(proc.stdout.strip().splitlines()[-1]))
    if args.torch:
        proc = subprocess.run(
            [sys.executable, __file__, *forwarded, "--worker", "torch"],
            capture_output=True, text=True,
        )
        if proc.returncode == 0:
            records.extend(json.loads(proc.stdout.strip().splitlines()[-1]))
        else:
            records.append({"framework": "torch", "error": proc.stderr[-800:]})
    print(json.dumps({
        "benchmark": "train_throughput",
        "command": " ".join(["python", "benchmarks/train_throughput.py", *forwarded]),
        "machine": machine,
        "results": records,
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
