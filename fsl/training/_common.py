"""Plumbing shared by the trainers: validation, seeds, compile, fit, run files."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from typing import Any, Callable, Iterable, Mapping

import keras
import numpy as np

from fsl.training._runs import RunDir, prepare_run, versions

logger = logging.getLogger(__name__)


# === Argument validation ===


def check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int. Received: {name}={value!r}")
    return int(value)


def check_seed(seed: Any, name: str = "seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{name} must be an int >= 0. Received: {name}={seed!r}")
    return int(seed)


def check_positive_float(name: str, value: Any, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}. Received: {name}={value!r}")
    return value


def check_int_pair(name: str, value: Any) -> tuple[int, int]:
    """Two positive ints (a tuple or list), e.g. the MNIST encoder's widths."""
    ok = (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in value
        )
    )
    if not ok:
        raise ValueError(f"{name} must be two positive ints. Received: {name}={value!r}")
    return int(value[0]), int(value[1])


def check_dropout(dropout: Any) -> float:
    """A dropout rate in ``[0, 1)``."""
    dropout = check_positive_float("dropout", dropout, allow_zero=True)
    if dropout >= 1:
        raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout!r}")
    return dropout


def check_fraction(name: str, value: Any) -> float:
    """A number in ``[0, 1]`` (e.g. an augmentation strength)."""
    value = check_positive_float(name, value, allow_zero=True)
    if value > 1:
        raise ValueError(f"{name} must be in [0, 1]. Received: {name}={value!r}")
    return value


def augment_batches(
    dataset,
    seed: int,
    rotation: float = 0.0,
    translation: float = 0.0,
    zoom: float = 0.0,
    flip: bool = False,
    fill_mode: str = "constant",
):
    """Random geometric augmentation of each image, in the ``tf.data`` pipeline.

    Works on batches ``(x, y)`` and on pair batches ``((x1, x2), y)`` (each
    image transformed on its own), with Keras preprocessing layers.

    Args:
        dataset: batched ``tf.data.Dataset`` of images ``[B, H, W, C]``.
        seed: seed of the random transforms.
        rotation: largest rotation, in turns (0.04 = 14 degrees); 0: none.
        translation: largest shift, as a fraction of height and width.
        zoom: largest zoom in or out, as a fraction of the size.
        flip: also flip left-right at random (faces; not digits).
        fill_mode: how pixels from outside the image are filled
            (``"constant"`` 0, or ``"nearest"``, ``"reflect"``...).

    Returns:
        The dataset with augmented images, prefetched; the same ``seed``
        gives the same images, run after run.
    """
    import tensorflow as tf

    steps = []
    if flip:
        steps.append(keras.layers.RandomFlip("horizontal", seed=seed + 3))
    if rotation > 0:
        steps.append(keras.layers.RandomRotation(rotation, fill_mode=fill_mode, seed=seed))
    if translation > 0:
        steps.append(keras.layers.RandomTranslation(
            translation, translation, fill_mode=fill_mode, seed=seed + 1))
    if zoom > 0:
        steps.append(keras.layers.RandomZoom(zoom, fill_mode=fill_mode, seed=seed + 2))
    if not steps:
        return dataset

    def augmenter(x, training):
        # The layers one after the other, not in a keras.Sequential: each
        # preprocessing layer runs on TensorFlow inside tf.data whatever the
        # Keras backend, a Sequential would call the backend's (e.g. JAX's)
        # ops on the pipeline's symbolic tf.Tensors and fail.
        for step in steps:
            x = step(x, training=training)
        return x

    def augment(x, y):
        if isinstance(x, (tuple, list)):
            return tuple(augmenter(xi, training=True) for xi in x), y
        return augmenter(x, training=True), y

    # One call at a time: the layers draw from a stateful seed generator, and
    # parallel calls would take its states in a varying order (two runs with
    # the same seed would augment differently). prefetch still overlaps the
    # augmentation with training.
    return dataset.map(augment).prefetch(tf.data.AUTOTUNE)


#: ``loss`` values of the triplet trainers (MNIST and faces): the online
#: triplet losses, and the lifted-structure, multi-similarity and circle
#: losses, which mine the same labelled P x K batches.
TRIPLET_LOSSES = ("semihard", "hard", "batch-all", "lifted", "multi-similarity", "circle")
#: The losses whose parameters are their papers' (TF Similarity's defaults),
#: defined on the angular distance: the trainers' ``margin`` and ``metric``
#: do not apply to them.
PAIR_WEIGHTING_LOSSES = ("multi-similarity", "circle")


#: Per trainer loss, the constructor arguments of its ``fsl.losses`` class
#: that a trainer's ``loss_options`` may set: the margin losses' margin and
#: distance come from the trainer's own ``margin`` / ``metric``.
LOSS_OPTIONS = {
    "semihard": (),
    "hard": ("soft",),
    "batch-all": (),
    "lifted": (),
    "multi-similarity": ("alpha", "beta", "epsilon", "lmda", "center"),
    "circle": ("gamma", "margin"),
}


def check_loss_options(loss: str, options: Any) -> dict:
    """A trainer's ``loss_options`` for ``loss`` as a plain dict (``{}`` for
    ``None``), its keys among ``LOSS_OPTIONS[loss]``; the values are checked
    by the loss class itself (``triplet_loss``)."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise ValueError(
            "loss_options must be a dict of the loss's arguments, e.g. {'gamma': 64.0}. "
            f"Received: loss_options={options!r}"
        )
    allowed = LOSS_OPTIONS[loss]
    for key in options:
        if key in allowed:
            continue
        if key in ("margin", "distance_metric") and loss not in PAIR_WEIGHTING_LOSSES:
            hint = "the trainer's margin and metric arguments set the margin and distance"
        else:
            hint = f"it takes {', '.join(allowed)}" if allowed else "it takes none"
        raise ValueError(
            f"loss_options key {key!r} is not an option of loss={loss!r} ({hint}). "
            f"Received: loss_options={dict(options)!r}"
        )
    # numpy scalars as plain Python values: config.json and get_config stay plain.
    return {key: value.item() if isinstance(value, np.generic) else value
            for key, value in options.items()}


def triplet_loss(
    loss: str, margin: float, metric: str = "L2", options: Mapping | None = None
) -> keras.losses.Loss:
    """The ``fsl.losses`` batch loss a trainer's ``loss`` names (one of
    ``TRIPLET_LOSSES``), with its margin and distance; the multi-similarity
    and circle losses on the angular distance, with their default parameters
    (``margin`` and ``metric`` unused) where ``options`` does not set them.
    ``options``: more of the class's arguments (``check_loss_options``); a
    bad value raises the class's ``ValueError``."""
    from fsl import losses

    options = check_loss_options(loss, options)
    if loss == "multi-similarity":
        return losses.MultiSimilarityLoss(**options)
    if loss == "circle":
        return losses.CircleLoss(**options)
    return {
        "semihard": losses.TripletSemiHardLoss,
        "hard": losses.TripletHardLoss,
        "batch-all": losses.TripletBatchAllLoss,
        "lifted": losses.LiftedStructLoss,
    }[loss](margin=margin, distance_metric=metric, **options)


#: ``mixed_precision`` values of the trainers: Keras dtype policies.
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def check_precision(value: Any) -> str:
    """``None`` / ``"float32"`` (full precision) or a mixed policy name."""
    return check_choice("mixed_precision", "float32" if value is None else value, PRECISIONS)


@contextlib.contextmanager
def dtype_policy(name: str):
    """Build models under the Keras dtype policy ``name``, then restore the old one.

    Layers take the global policy when they are created, so a model built
    inside ``with dtype_policy("mixed_bfloat16"):`` computes in bfloat16 with
    float32 weights (its output layers stay float32, see
    ``fsl.models.OUTPUT_DTYPE``), and keeps that policy when saved and
    reloaded. ``compile`` wraps the optimizer in a ``LossScaleOptimizer``
    for ``mixed_float16``.
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}. Received: {name}={value!r}")
    return value


def check_jit(jit_compile: Any) -> bool | str:
    if jit_compile not in (True, False, "auto"):
        raise ValueError(
            f"jit_compile must be True, False or 'auto'. Received: jit_compile={jit_compile!r}"
        )
    return jit_compile


# === Compile and fit ===


def resolve_jit(model: keras.Model, jit_compile: bool | str = "auto") -> bool:
    """Whether to compile the train step with XLA.

    ``"auto"``: yes on JAX, and on TensorFlow with a GPU/TPU; no on a
    CPU-only TensorFlow (where the XLA compile time outweighs its gain in
    a short run, as Keras's own ``"auto"`` decides). ``True``: yes where the
    backend allows. In both cases, no on torch or when a layer of the model
    says it does not support XLA (``layer.supports_jit``): the model is then
    compiled without XLA and the reason is logged.
    """
    if jit_compile is False:
        return False
    backend = keras.backend.backend()
    if backend == "torch":
        logger.info("jit_compile disabled: not supported by the torch backend here")
        return False
    if jit_compile == "auto" and backend == "tensorflow" and not _tf_has_accelerator():
        # As Keras's own "auto": on a CPU-only TensorFlow, XLA compilation
        # costs more than it saves in a short run.
        logger.info("jit_compile disabled: TensorFlow on CPU only (pass jit_compile=True to force)")
        return False
    unsupported = [layer.name for layer in model._flatten_layers() if not layer.supports_jit]
    if unsupported:
        logger.info("jit_compile disabled: layers without XLA support: %s", unsupported)
        return False
    return True


def _tf_has_accelerator() -> bool:
    import tensorflow as tf

    return any(d.device_type != "CPU" for d in tf.config.list_physical_devices())


def set_seed(seed: int) -> None:
    """Seed Python, numpy and the backend (``keras.utils.set_random_seed``)."""
    keras.utils.set_random_seed(seed)


def start_run(
    task: str,
    arguments: Mapping[str, Any],
    output_dir,
    run,
    overwrite: bool,
    resume: bool,
) -> RunDir:
    """Create the run folder and write a first ``config.json``."""
    run_dir = prepare_run(task, output_dir, run, overwrite=overwrite, resume=resume)
    config = {
        "task": task,
        "run": run_dir.name,
        "arguments": dict(arguments),
        "seed": arguments.get("seed"),
        "versions": versions(),
        "status": "running",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if resume and run_dir.config_path.is_file():
        previous = run_dir.read_config()
        _check_resumed_arguments(run_dir, task, previous, config["arguments"])
        config["resumed_from_epoch"] = run_dir.completed_epochs()
        config["started"] = previous.get("started", config["started"])
    run_dir.write_config(config)
    return run_dir


#: Arguments a resumed run may change: how it runs and reports, not what it
#: trains (its checkpoint holds weights and optimizer state of the first ones).
RESUMABLE_CHANGES = frozenset({"resume", "overwrite", "verbose", "jit_compile", "output_dir", "run"})


def _check_resumed_arguments(
    run_dir: RunDir, task: str, previous: Mapping[str, Any], arguments: Mapping[str, Any]
) -> None:
    """A resumed run must go on with the task and arguments it started with:
    another loss, size or schedule would train on (or fail to restore) a
    checkpoint made for different ones. Arguments the first config does not
    record (added to ``fsl`` since) are not compared."""
    if previous.get("task", task) != task:
        raise ValueError(
            f"Cannot resume {run_dir.path} as a {task!r} run: it is a "
            f"{previous.get('task')!r} run. Received: task={task!r}"
        )
    before = dict(previous.get("arguments") or {})
    # Compare as config.json stores them (tuples as lists, other types as text).
    now = json.loads(json.dumps(dict(arguments), default=str))
    # Runs from before data folders were recorded absolute hold them as given:
    # a relative one counts from the working folder the run resumes in.
    if isinstance(before.get("data_dir"), str):
        before["data_dir"] = os.path.abspath(before["data_dir"])
    changed = [
        f"{key}: {before[key]!r} -> {now[key]!r}"
        for key in sorted(set(before) & set(now) - RESUMABLE_CHANGES)
        if before[key] != now[key]
    ]
    if changed:
        raise ValueError(
            f"resume=True continues {run_dir.path} with the arguments it started with; "
            f"these differ: {'; '.join(changed)}. Pass the same values, or start another "
            "run (another run name)"
        )


def update_config(run_dir: RunDir, **entries: Any) -> dict:
    config = run_dir.read_config()
    config.update(entries)
    run_dir.write_config(config)
    return config


def fit(
    model: keras.Model,
    dataset,
    epochs: int,
    run_dir: RunDir,
    callbacks=None,
    verbose: int | str = "auto",
    **fit_kwargs,
) -> tuple[dict[str, list[float]], float]:
    """``model.fit`` with the run's callbacks; returns (full history, seconds).

    The history covers every epoch of the run, including those trained before
    an interruption (read back from ``history.csv``).
    """
    start = time.perf_counter()
    model.fit(
        dataset,
        epochs=epochs,
        callbacks=run_dir.callbacks(callbacks),
        verbose=verbose,
        shuffle=False,  # tf.data pipelines shuffle (or draw) their own batches
        **fit_kwargs,
    )
    seconds = time.perf_counter() - start
    return run_dir.history(), seconds


def finish_run(
    run_dir: RunDir,
    metrics: dict[str, Any],
    history: Mapping[str, list[float]],
    train_seconds: float,
    data_source: str,
) -> dict[str, Any]:
    """Write ``metrics.json`` and mark the config finished."""
    metrics = dict(metrics)
    metrics["history"] = {k: list(v) for k, v in history.items()}
    metrics["epochs_completed"] = len(next(iter(history.values()), []))
    metrics["train_seconds"] = train_seconds
    metrics["data_source"] = data_source
    run_dir.write_metrics(metrics)
    update_config(run_dir, status="finished", finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
    return metrics


def predict(model: keras.Model, x, batch_size: int = 128) -> np.ndarray:
    """``model.predict`` to numpy, quietly, in batches of one fixed shape.

    The last, partial batch is padded (with copies of the first input) to
    ``batch_size`` and the padding's outputs dropped: a model predicted on
    sets of several sizes (test faces, training faces) then traces its
    predict function once instead of once per new batch size, without
    TensorFlow's retracing warnings. Inputs with a batch below ``batch_size``
    therefore cost a full batch.
    """
    x = np.asarray(x)
    n = len(x)
    if n == 0 or n % batch_size == 0:
        return np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
    padded = np.concatenate([x, np.repeat(x[:1], batch_size - n % batch_size, axis=0)])
    return np.asarray(model.predict(padded, batch_size=batch_size, verbose=0))[:n]


def echo(message: str, verbose: int | str) -> None:
    """Print a summary line unless ``verbose == 0``."""
    if verbose != 0:
        print(message, flush=True)


TrainFn = Callable[..., dict]
