"""Speed and peak memory of the online triplet losses (forward + backward).

For each strategy (semihard, hard, batch-all, and the lifted-structure,
multi-similarity and circle losses) and batch size B, a fresh Python
subprocess builds random ``[B, D]`` embeddings (4 examples per class), runs
the loss and its gradient once to warm up (tracing / compilation), then
``--repeats`` more times, and reports the median seconds (wall clock, and the
process's CPU time; ``--threads`` sets TensorFlow's) and its peak resident
memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``), so each number covers
one configuration only. ``tfa_tile_bytes`` is the size of the float32
``[B * B, B]`` tile that TensorFlow Addons' semi-hard and lifted losses
materialise (computed, not run; TFA's lifted loss builds several), for
comparison with ``fsl``'s O(B^2) memory. ``ratio_to_hard`` is a record's
time over batch-hard's at the same B (when both ran).

``tfsim-multi-similarity`` and ``tfsim-circle`` (TensorFlow only, not in the
default list) time TensorFlow Similarity's own ``MultiSimilarityLoss`` and
``CircleLoss`` (``distance="cosine"``, their defaults, which ``fsl``'s
defaults equal) the same way, on the same TensorFlow through ``tf-keras``
(``TF_USE_LEGACY_KERAS=1`` in their subprocess); ``fsl``'s records then get
``ratio_to_tf_similarity``. TF Similarity 0.17 is Keras 2 only and pins old
TensorFlow, so it is installed beside ``fsl`` without its dependencies::

    pip install --no-deps tensorflow-similarity==0.17.1 tf-keras==2.21.0 tabulate

Usage::

    python benchmarks/mining.py            # B in 256 ... 4096, D = 128
    python benchmarks/mining.py --quick    # B in 64, 128, 256
    python benchmarks/mining.py --sizes 4096 --per-class 16 --strategies semihard hard
    python benchmarks/mining.py --strategies multi-similarity tfsim-multi-similarity \
        circle tfsim-circle
    KERAS_BACKEND=jax python benchmarks/mining.py

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

STRATEGIES = ("semihard", "hard", "batch-all", "lifted", "multi-similarity", "circle")
#: TensorFlow Similarity's implementations, timed for comparison (fsl's name -> class).
TF_SIMILARITY = {"tfsim-multi-similarity": ("multi-similarity", "MultiSimilarityLoss"),
                 "tfsim-circle": ("circle", "CircleLoss")}
FULL_SIZES = (256, 512, 1024, 2048, 4096)
QUICK_SIZES = (64, 128, 256)
EXAMPLES_PER_CLASS = 4  # default of --per-class


def _rss_high_water_bytes() -> int:
    """Peak RSS so far (Linux reports ru_maxrss in KiB, macOS in bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _tf_similarity_loss(name: str):
    """TF Similarity's loss class ``name``, imported without running the
    package's ``__init__`` (it imports the plotting and search modules, with
    umap-learn, nmslib and bokeh, which the losses do not use)."""
    import importlib.util
    import types

    spec = importlib.util.find_spec("tensorflow_similarity")
    if spec is None or importlib.util.find_spec("tf_keras") is None:
        raise ImportError("TF Similarity's losses need tensorflow-similarity 0.17 and tf-keras: "
                          "pip install --no-deps tensorflow-similarity==0.17.1 tf-keras==2.21.0 "
                          "tabulate")
    package = types.ModuleType("tensorflow_similarity")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["tensorflow_similarity"] = package
    from tensorflow_similarity import losses

    return getattr(losses, name)(distance="cosine")


def _loss_fn(strategy: str):
    if strategy in TF_SIMILARITY:
        loss = _tf_similarity_loss(TF_SIMILARITY[strategy][1])
        return lambda y, x: loss(y, x)

    from fsl import losses

    if strategy == "semihard":
        return lambda y, x: losses.triplet_semihard_loss(y, x, margin=1.0)
    if strategy == "hard":
        return lambda y, x: losses.triplet_hard_loss(y, x, margin=1.0)
    if strategy == "batch-all":
        return lambda y, x: losses.triplet_batch_all_loss(y, x, margin=1.0)
    if strategy == "lifted":
        return lambda y, x: losses.lifted_struct_loss(y, x, margin=1.0)
    if strategy == "multi-similarity":
        return lambda y, x: losses.multi_similarity_loss(y, x)
    if strategy == "circle":
        return lambda y, x: losses.circle_loss(y, x)
    raise ValueError(f"Unknown strategy. Received: strategy={strategy!r}")


def _forward_backward(strategy: str):
    """A compiled ``(labels, embeddings) -> (loss, grad)`` for the backend."""
    import keras

    fn = _loss_fn(strategy)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function
        def step(y, x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = fn(y, x)
            return loss, tape.gradient(loss, x)

        return lambda y, x: [t.numpy() for t in step(y, x)]
    if backend == "jax":
        import jax

        step = jax.jit(jax.value_and_grad(lambda x, y: fn(y, x)))
        return lambda y, x: jax.block_until_ready(step(x, y))
    raise NotImplementedError(f"Unsupported backend for this benchmark: {backend}")


def run_one(strategy: str, batch_size: int, dim: int, repeats: int,
            per_class: int = EXAMPLES_PER_CLASS, threads: int | None = None) -> dict:
    """Time one configuration in this process; returns its JSON record."""
    import keras
    import numpy as np

    if threads and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)

    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch_size, dim)).astype("float32")
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = (np.arange(batch_size) // per_class).astype("int32")
    machine = _machine.describe()  # before the timed work
    step = _forward_backward(strategy)
    baseline = _rss_high_water_bytes()
    step(y, x)  # warm-up: trace / compile
    times, cpu_times = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        step(y, x)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    return {
        "strategy": strategy,
        "B": batch_size,
        "D": dim,
        "per_class": per_class,
        "backend": keras.backend.backend(),
        "seconds_per_step": statistics.median(times),
        "cpu_seconds_per_step": statistics.median(cpu_times),
        "threads": threads,
        "repeats": repeats,
        "peak_rss_bytes": _rss_high_water_bytes(),
        "rss_before_first_step_bytes": baseline,
        "tfa_tile_bytes": 4 * batch_size**3,
        "machine": machine,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small B only")
    parser.add_argument("--sizes", type=int, nargs="*", help="batch sizes")
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--per-class", type=int, default=EXAMPLES_PER_CLASS,
                        help=f"examples per class (default {EXAMPLES_PER_CLASS})")
    parser.add_argument("--strategies", nargs="*", default=list(STRATEGIES),
                        choices=STRATEGIES + tuple(TF_SIMILARITY))
    parser.add_argument("--threads", type=int, default=None,
                        help="TensorFlow's intra- and inter-op threads (default: its own)")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds allowed per configuration")
    parser.add_argument("--worker", nargs=2, metavar=("STRATEGY", "B"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        if args.worker[0] in TF_SIMILARITY:
            os.environ["KERAS_BACKEND"] = "tensorflow"
        record = run_one(args.worker[0], int(args.worker[1]), args.dim, args.repeats,
                         args.per_class, args.threads)
        print(json.dumps(record))
        return 0

    sizes = args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    records = []
    for strategy in args.strategies:
        for batch_size in sizes:
            command = [sys.executable, os.path.abspath(__file__), "--worker",
                       strategy, str(batch_size), "--dim", str(args.dim),
                       "--repeats", str(args.repeats), "--per-class", str(args.per_class)]
            if args.threads:
                command += ["--threads", str(args.threads)]
            # tf.keras is Keras 2 (tf-keras) for TF Similarity only.
            legacy = {"TF_USE_LEGACY_KERAS": "1"} if strategy in TF_SIMILARITY else {}
            try:
                done = subprocess.run(command, capture_output=True, text=True,
                                      env={**env, **legacy}, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                records.append({"strategy": strategy, "B": batch_size, "D": args.dim,
                                "error": f"timed out after {args.timeout} s"})
                continue
            if done.returncode != 0:
                records.append({"strategy": strategy, "B": batch_size, "D": args.dim,
                                "error": done.stderr.strip().splitlines()[-1:]})
                continue
            records.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(records[-1]), file=sys.stderr, flush=True)
    hard = {r["B"]: r["seconds_per_step"] for r in records
            if r.get("strategy") == "hard" and "seconds_per_step" in r}
    reference = {(TF_SIMILARITY[r["strategy"]][0], r["B"]): r["seconds_per_step"]
                 for r in records if r.get("strategy") in TF_SIMILARITY
                 and "seconds_per_step" in r}
    for record in records:
        if "seconds_per_step" in record and record["B"] in hard:
            record["ratio_to_hard"] = record["seconds_per_step"] / hard[record["B"]]
        key = (record.get("strategy"), record.get("B"))
        if "seconds_per_step" in record and key in reference:
            record["ratio_to_tf_similarity"] = record["seconds_per_step"] / reference[key]
    print(json.dumps(records, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
