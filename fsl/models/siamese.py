"""Siamese and triplet models: the MNIST encoder and the two-tower networks.

* ``mnist_encoder``: the small convolutional encoder of the siamese/triplet
  chapter (MNIST, 28x28).
* ``siamese_distance_model``: two inputs, shared encoder, ``PairDistance``
  output for a contrastive loss.
* ``siamese_classifier``: two inputs, shared encoder, ``SiameseHead``
  output ``P(same)`` for binary cross-entropy.
* ``embedding_model`` / ``triplet_model``: images to L2-normalised
  embeddings, for triplet losses with integer labels.

Pair label convention, everywhere in ``fsl``: ``1`` = same identity,
``0`` = different.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers as kl

from fsl import distances
from fsl._checks import check_image_shape, check_positive_int, check_rate
from fsl.layers import L2Normalize, PairDistance, SiameseHead
from fsl.models.base import OUTPUT_DTYPE, _check_encoder, _encoder_input

# === MNIST encoder ===


def mnist_encoder(
    embedding_dim: int = 128,
    input_shape: Sequence[int] = (28, 28, 1),
    normalize: bool = False,
    dropout: float = 0.0,
    activation: str | None = None,
    pooling: str = "flatten",
    filters: Sequence[int] = (64, 128),
    convs_per_block: int = 1,
    name: str = "mnist_encoder",
) -> keras.Model:
    """The small convolutional encoder of the siamese / triplet chapter.

    ``Conv2D(64, 3x3, relu) -> MaxPool -> Conv2D(128, 3x3, relu) -> MaxPool
    -> Flatten (or global pooling) -> [Dropout] -> Dense(embedding_dim)``
    with a configurable head: linear (default), ReLU, and/or L2-normalised
    (``normalize=True``, FaceNet's unit hypersphere, for triplet losses with
    a fixed margin). About 0.03 GFLOP per 28x28 image: fast on a CPU.

    Reference: the siamese-network chapter this package's notebooks follow
    (same layer sizes) and the keras.io example "Image similarity estimation using a Siamese Network
    with a contrastive loss".

    Args:
        embedding_dim: size of the embedding, a positive int.
        input_shape: ``(height, width, channels)``, at least 4x4.
        normalize: append ``L2Normalize`` (unit-norm embeddings).
        dropout: dropout rate before the last dense layer, in ``[0, 1)``.
        activation: activation of the last dense layer: ``None`` /
            ``"linear"`` or ``"relu"``.
        pooling: ``"flatten"`` (the chapter's), ``"avg"`` or ``"max"``
            (global pooling, fewer parameters).
        filters: the two convolutions' widths; the chapter's ``(64, 128)``
            by default. ``(32, 64)`` (the keras.io MNIST convnet's) is 3.5x
            cheaper and overfits the 4,000 bundled digits less.
        convs_per_block: 3x3 convolutions before each max pool: 1 (the
            chapter's) or more (VGG-style blocks: a larger receptive field
            for the same number of pooling steps).
        name: model name.

    Returns:
        A ``keras.Model`` mapping ``[B, H, W, C]`` images to
        ``[B, embedding_dim]`` embeddings.

    Raises:
        ValueError: for an invalid argument, naming the value received.

    Examples:

    >>> enc = mnist_encoder(embedding_dim=16)
    >>> enc.output_shape
    (None, 16)
    """
    check_positive_int("embedding_dim", embedding_dim)
    input_shape = check_image_shape(input_shape, min_side=4)
    check_rate("dropout", dropout)
    if not isinstance(normalize, bool):
        raise TypeError(f"normalize must be a bool. Received: normalize={normalize!r}")
    if activation not in (None, "linear", "relu"):
        raise ValueError(
            "activation must be None, 'linear' or 'relu'. "
            f"Received: activation={activation!r}"
        )
    if pooling not in ("flatten", "avg", "max"):
        raise ValueError(
            f"pooling must be 'flatten', 'avg' or 'max'. Received: pooling={pooling!r}"
        )
    if (
        not isinstance(filters, (tuple, list))
        or len(filters) != 2
        or not all(isinstance(f, int) and not isinstance(f, bool) and f > 0 for f in filters)
    ):
        raise ValueError(
            f"filters must be two positive ints. Received: filters={filters!r}"
        )
    check_positive_int("convs_per_block", convs_per_block)

    # === Layers ===
    pool_layer = {
        "flatten": kl.Flatten,
        "avg": kl.GlobalAveragePooling2D,
        "max": kl.GlobalMaxPooling2D,
    }[pooling]

    # === Functional Model ===
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for block, width in enumerate(filters, start=1):
        for i in range(convs_per_block):
            # The chapter's layer names (conv1, conv2) when there is one conv per block.
            suffix = "" if convs_per_block == 1 else f"_{i + 1}"
            x = kl.Conv2D(
                width, 3, padding="same", activation="relu", name=f"conv{block}{suffix}"
            )(x)
        x = kl.MaxPooling2D(2, name=f"pool{block}")(x)
    x = pool_layer(name=pooling)(x)
    if dropout > 0:
        x = kl.Dropout(dropout, name="dropout")(x)
    x = kl.Dense(embedding_dim, activation=activation, name="embedding", dtype=OUTPUT_DTYPE)(x)
    if normalize:
        x = L2Normalize(name="l2_normalize", dtype=OUTPUT_DTYPE)(x)
    return keras.Model(inputs, x, name=name)


# === Siamese and triplet models ===


def siamese_distance_model(
    encoder: keras.Model, metric: str = "L2", name: str = "siamese_distance"
) -> keras.Model:
    """Siamese network whose output is the distance between two embeddings.

    Two inputs ``(x1, x2)`` go through the SAME encoder (shared weights); the
    output is ``PairDistance(metric)`` of shape ``[B, 1]``. Train it with a
    contrastive loss on pair labels ``y`` with ``1`` = same, ``0`` =
    different (``fsl.losses.ContrastiveLoss``): same pairs are pulled
    together, different pairs pushed beyond the margin.

    Reference: Hadsell, Chopra and LeCun, "Dimensionality Reduction by
    Learning an Invariant Mapping", CVPR 2006; the keras.io siamese
    contrastive example (whose ``Lambda`` distance this model replaces).

    Args:
        encoder: a ``keras.Model`` with one image input and one
            ``[B, D]`` output (e.g. ``mnist_encoder()``).
        metric: ``"L2"``, ``"squared-L2"`` or ``"angular"`` (see
            ``fsl.distances``).
        name: model name.

    Returns:
        A ``keras.Model`` with inputs ``[x1, x2]`` and output ``[B, 1]``
        distances.

    Raises:
        TypeError: if ``encoder`` is not a Keras model.
        ValueError: for an encoder with the wrong inputs/outputs or an
            unknown metric.

    Examples:

    >>> model = siamese_distance_model(mnist_encoder(16))
    >>> model.output_shape
    (None, 1)
    """
    encoder = _check_encoder(encoder)
    metric = distances.canonical_name(metric)

    # === Functional Model ===
    x1 = _encoder_input(encoder, "x1")
    x2 = _encoder_input(encoder, "x2")
    e1, e2 = encoder(x1), encoder(x2)
    distance = PairDistance(metric, name="distance", dtype=OUTPUT_DTYPE)([e1, e2])
    return keras.Model([x1, x2], distance, name=name)


def siamese_classifier(
    encoder: keras.Model, kind: str = "abs", name: str = "siamese_classifier"
) -> keras.Model:
    """Siamese network that classifies a pair as same / different.

    Two inputs ``(x1, x2)``, a shared encoder, and a ``SiameseHead``: the
    output ``[B, 1]`` is ``P(same)``, a logistic regression on
    ``|f1 - f2|`` (``kind="abs"``) or the chi-square similarity
    (``kind="chi2"``, for non-negative features such as ReLU outputs). Train
    it with ``keras.losses.BinaryCrossentropy`` on labels ``1`` = same,
    ``0`` = different.

    Note: the chapter's TensorFlow 1 "siamese" network is trained as a 10-way
    classifier with
    the same image fed to both branches, so it never compares two different
    images. This model does the verification task proper: it compares two
    DIFFERENT images.

    Reference: Andrew Ng, deeplearning.ai "Convolutional Neural Networks",
    week 4, "Face verification and binary classification"; Koch, Zemel and
    Salakhutdinov, "Siamese Neural Networks for One-shot Image Recognition",
    ICML 2015 deep-learning workshop.

    Args:
        encoder: a ``keras.Model`` with one image input and one ``[B, D]``
            output.
        kind: ``"abs"`` or ``"chi2"`` (see ``fsl.layers.SiameseHead``).
        name: model name.

    Returns:
        A ``keras.Model`` with inputs ``[x1, x2]`` and output ``[B, 1]``
        probabilities of "same".

    Raises:
        TypeError: if ``encoder`` is not a Keras model.
        ValueError: for an encoder with the wrong inputs/outputs or an
            unknown ``kind``.
    """
    encoder = _check_encoder(encoder)
    head = SiameseHead(kind, name="same_probability", dtype=OUTPUT_DTYPE)

    # === Functional Model ===
    x1 = _encoder_input(encoder, "x1")
    x2 = _encoder_input(encoder, "x2")
    p_same = head([encoder(x1), encoder(x2)])
    return keras.Model([x1, x2], p_same, name=name)


def embedding_model(
    encoder: keras.Model, normalize: bool = True, name: str = "embedding_model"
) -> keras.Model:
    """Images to (L2-normalised) embeddings, for triplet losses.

    Wraps ``encoder`` and, with ``normalize=True``, appends ``L2Normalize``
    (FaceNet's unit hypersphere). Train it with
    ``fsl.losses.TripletSemiHardLoss`` / ``TripletHardLoss`` on integer class
    labels ``[B]``: the triplets are mined online inside each batch.

    Reference: Schroff, Kalenichenko and Philbin, "FaceNet", CVPR 2015;
    Hermans, Beyer and Leibe, "In Defense of the Triplet Loss for Person
    Re-Identification", 2017.

    Args:
        encoder: a ``keras.Model`` with one image input and one ``[B, D]``
            output.
        normalize: append ``L2Normalize``.
        name: model name.

    Returns:
        A ``keras.Model`` mapping images to ``[B, D]`` embeddings.

    Raises:
        TypeError: if ``encoder`` is not a Keras model or ``normalize`` not a
            bool.
        ValueError: for an encoder with the wrong inputs/outputs.
    """
    encoder = _check_encoder(encoder)
    if not isinstance(normalize, bool):
        raise TypeError(f"normalize must be a bool. Received: normalize={normalize!r}")

    # === Functional Model ===
    inputs = _encoder_input(encoder, "image")
    x = encoder(inputs)
    if normalize:
        x = L2Normalize(name="l2_normalize", dtype=OUTPUT_DTYPE)(x)
    return keras.Model(inputs, x, name=name)


def triplet_model(encoder: keras.Model, name: str = "triplet_model") -> keras.Model:
    """``embedding_model(encoder, normalize=True)``: unit-norm embeddings.

    Args:
        encoder: a ``keras.Model`` with one image input and one ``[B, D]``
            output.
        name: model name.

    Returns:
        A ``keras.Model`` mapping images to L2-normalised ``[B, D]``
        embeddings, to train with an online-mining triplet loss.
    """
    return embedding_model(encoder, normalize=True, name=name)
