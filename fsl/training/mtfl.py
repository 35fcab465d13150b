"""MTFL trainer: one network for five facial landmarks and four attributes."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import keras
import tensorflow as tf

from fsl import runs
from fsl._checks import (
    check_choice,
    check_positive_float,
    check_positive_int,
    check_rate,
    check_seed,
)
from fsl.evaluation.protocols import evaluate_mtfl
from fsl.preprocessing import Preprocessing
from fsl.runs import RunDir
from fsl.training.options import RunOptions, guard_run

logger = logging.getLogger(__name__)

#: Synthetic set size by default and with ``fast=True``.
SYNTHETIC_SIZE, FAST_SYNTHETIC_SIZE, FAST_EPOCHS = 10000, 120, 1
#: Default task weights: landmarks are normalised to [0, 1], so their squared
#: error (about 1e-2 per image at first, 1e-4 late in training) is tiny next to
#: the attribute cross-entropies; ``loss_weights`` overrides these.
DEFAULT_LOSS_WEIGHTS = {"landmarks": 100.0}


@guard_run
def train_mtfl(
    epochs: int | None = None,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    image_size: int = 64,
    dropout: float = 0.0,
    bottleneck: int = 256,
    source: str = "auto",
    data_dir=None,
    synthetic_size: int | None = None,
    loss_weights: Mapping[str, float] | None = None,
    augment: bool = True,
    seed: int = 0,
    **run_options: Any,
) -> dict[str, Any]:
    """Train the multitask MTFL model (landmarks + gender/smile/glasses/pose).

    Data: ``fsl.data.mtfl.load_mtfl(source, data_dir)``: the real MTFL if it
    is in ``data_dir``, else (``source="auto"``) a synthetic MTFL-format set,
    a choice logged and written to ``config.json`` as ``data_source``.
    Model: ``fsl.models.mtfl_model`` compiled with ``mtfl_losses``; Adam with
    a cosine-decayed learning rate.

    Reference: Zhang, Luo, Loy and Tang, "Facial Landmark Detection by Deep
    Multi-task Learning", ECCV 2014.

    Args:
        epochs: passes over the training split (default 40; 1 with ``fast``).
        batch_size: images per batch.
        learning_rate: initial Adam learning rate (cosine decay to 0).
        image_size: side of the square input (images are resized).
        dropout: dropout after the dense bottleneck. The chapter uses 0.5;
            it costs landmark precision, so the default is 0.
        bottleneck: width of the shared dense layer (chapter: 128).
        source: ``"auto"``, ``"real"`` or ``"synthetic"``.
        data_dir: MTFL data folder (default ``fsl.data.mtfl.default_data_dir()``).
        synthetic_size: images in the synthetic set (default 10,000; 120
            with ``fast``); more faces give better landmarks.
        loss_weights: task -> loss weight overrides (see ``mtfl_losses``),
            on top of ``DEFAULT_LOSS_WEIGHTS`` (landmarks 100, others 1).
        augment: landmark-aware augmentation of training images.
        seed: seed of the weights, batches and augmentation.
        **run_options: ``fsl.training.RunOptions`` (``output_dir``, ``run``,
            ``overwrite``, ``resume``, ``fast``, ``jit_compile``,
            ``mixed_precision``, ``verbose``, ``callbacks``).

    Returns:
        The metrics written to ``metrics.json``: ``mean_error``,
        ``failure_rate``, ``attribute_accuracy``, ``history``...

    Raises:
        ValueError: for an invalid argument (named in the message).
        FileExistsError: if the run folder exists and neither ``overwrite``
            nor ``resume`` is set.
    """
    from fsl import models
    from fsl.data.mtfl import load_mtfl

    arguments = dict(locals())
    for name in ("run_options", "models", "load_mtfl"):
        arguments.pop(name)
    options = RunOptions.from_kwargs("train_mtfl", run_options)
    if options.fast:
        epochs = FAST_EPOCHS if epochs is None else epochs
        synthetic_size = FAST_SYNTHETIC_SIZE if synthetic_size is None else synthetic_size
    epochs = check_positive_int("epochs", 40 if epochs is None else epochs)
    synthetic_size = check_positive_int(
        "synthetic_size", SYNTHETIC_SIZE if synthetic_size is None else synthetic_size
    )
    batch_size = check_positive_int("batch_size", batch_size)
    learning_rate = check_positive_float("learning_rate", learning_rate)
    image_size = check_positive_int("image_size", image_size)
    bottleneck = check_positive_int("bottleneck", bottleneck)
    dropout = check_rate("dropout", dropout)
    source = check_choice("source", source, ("auto", "real", "synthetic"))
    seed = check_seed(seed)
    if loss_weights is not None and not isinstance(loss_weights, Mapping):
        raise TypeError(f"loss_weights must be a dict task -> float. Received: loss_weights={loss_weights!r}")
    losses, weights = models.mtfl_losses({**DEFAULT_LOSS_WEIGHTS, **(loss_weights or {})})
    # Absolute paths: the run re-evaluates (and resumes) from any working folder.
    data_dir = None if data_dir is None else os.path.abspath(data_dir)
    arguments.update(
        epochs=epochs, synthetic_size=synthetic_size, data_dir=data_dir, loss_weights=weights
    )

    # The data first: a failed download leaves no run folder behind.
    data = load_mtfl(source, data_dir, n=synthetic_size, seed=seed)
    run_dir = options.start("mtfl", arguments)
    keras.utils.set_random_seed(seed)
    logger.info("MTFL source used: %s (%s)", data.source, data.root)
    size = (image_size, image_size)
    runs.update_config(
        run_dir,
        data_source=data.source,
        data_root=os.path.abspath(data.root),
        preprocessing=Preprocessing(size, channels=1, standardize="unit").to_config(),
    )

    # === Data ===
    # The pipeline skips unreadable images (a filter), so its cardinality is
    # unknown: repeat it and give Keras the epoch length (one pass over the
    # annotated faces) instead of letting an epoch end by running out of data.
    from fsl.data.mtfl import SPLIT_FILES, read_annotations

    n_train = len(read_annotations(data.root / SPLIT_FILES["train"], data.root))
    steps_per_epoch = max(1, -(-n_train // batch_size))
    train_ds = data.dataset(
        "train", image_size=size, channels=1, augment=augment, shuffle=True, seed=seed, cache=True,
    )
    train_ds = train_ds.repeat().batch(batch_size).prefetch(tf.data.AUTOTUNE)
    test_ds = data.dataset("test", image_size=size, channels=1, batch_size=256, cache=True)

    # === Model ===
    with options.dtype_policy():
        model = models.mtfl_model(
            input_shape=(image_size, image_size, 1), dropout=dropout, bottleneck=bottleneck
        )
    schedule = keras.optimizers.schedules.CosineDecay(
        learning_rate, decay_steps=epochs * steps_per_epoch
    )
    options.compile(
        model,
        optimizer=keras.optimizers.Adam(schedule),
        loss=losses,
        loss_weights=weights,
    )

    # === Training ===
    history, seconds = options.fit(model, train_ds, epochs, run_dir, steps_per_epoch=steps_per_epoch)
    run_dir.save_model(model, "model")

    # === Evaluation ===
    metrics = evaluate_mtfl(model, test_ds)
    metrics["run_dir"] = str(run_dir.path)
    metrics = runs.finish_run(run_dir, metrics, history, seconds, data.source)
    accuracy = ", ".join(f"{k} {v:.3f}" for k, v in metrics["attribute_accuracy"].items())
    options.echo(
        f"landmark error: {metrics['mean_error']:.4f} (failure rate "
        f"{metrics['failure_rate']:.3f}); attribute accuracy: {accuracy}")
    return metrics


def evaluate_run(run_dir: RunDir, config: dict[str, Any]) -> dict[str, Any]:
    """Re-evaluate a finished MTFL run on the test split recorded in its config."""
    from fsl.data.mtfl import mtfl_dataset

    prep = config["preprocessing"]
    model = run_dir.load_model()
    test_ds = mtfl_dataset(
        config["data_root"], "test", image_size=tuple(prep["image_size"]),
        channels=prep["channels"], batch_size=256,
    )
    metrics = evaluate_mtfl(model, test_ds)
    metrics["data_source"] = config.get("data_source")
    return metrics
