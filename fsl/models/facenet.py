"""A compact FaceNet-style embedding network: backbone, pooled features, head.

``facenet_model`` is an Inception-ResNet-style body small enough to train on
a CPU, pooled by global average or global depthwise convolution
(MobileFaceNets), then projected and L2-normalised (Schroff et al. 2015).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers as kl

from fsl._checks import check_image_shape, check_positive_int, check_rate
from fsl.layers import L2Normalize, ScaledResidual, Standardize
from fsl.models.base import OUTPUT_DTYPE

# === FaceNet-style embedding model ===

# Small face sets give a few hundred training steps: with Keras' default
# momentum (0.99) the moving statistics still carry a third of their initial
# values then, and the saved model's embeddings collapse at inference.
_BN_MOMENTUM = 0.9

#: ``facenet_model``'s ``pooling`` choices -> the layer giving the pooled
#: features (what ``pooled_embedding`` takes by default).
POOLING_LAYERS = {"avg": "avg_pool", "gdc": "gdc_pool"}


def _conv_bn(x, filters, kernel, name, strides=1):
    x = kl.Conv2D(
        filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv"
    )(x)
    x = kl.BatchNormalization(momentum=_BN_MOMENTUM, scale=False, name=f"{name}_bn")(x)
    return kl.Activation("relu", name=f"{name}_relu")(x)


def _block_a(x, width, scale, name):
    """Inception-ResNet-A (block35): 1x1 | 1x1-3x3 | 1x1-3x3-3x3, scaled residual."""
    channels = x.shape[-1]
    b0 = _conv_bn(x, width, 1, f"{name}_b0")
    b1 = _conv_bn(x, width, 1, f"{name}_b1a")
    b1 = _conv_bn(b1, width, 3, f"{name}_b1b")
    b2 = _conv_bn(x, width, 1, f"{name}_b2a")
    b2 = _conv_bn(b2, width, 3, f"{name}_b2b")
    b2 = _conv_bn(b2, width, 3, f"{name}_b2c")
    mixed = kl.Concatenate(name=f"{name}_concat")([b0, b1, b2])
    up = kl.Conv2D(channels, 1, name=f"{name}_up")(mixed)
    x = ScaledResidual(scale, name=f"{name}_residual")([x, up])
    return kl.Activation("relu", name=f"{name}_out")(x)


def _reduction(x, width, name):
    """Grid reduction: 3x3/2 conv | 1x1-3x3-3x3/2 | 3x3/2 max pool, concatenated."""
    b0 = _conv_bn(x, 2 * width, 3, f"{name}_b0", strides=2)
    b1 = _conv_bn(x, width, 1, f"{name}_b1a")
    b1 = _conv_bn(b1, width, 3, f"{name}_b1b")
    b1 = _conv_bn(b1, 2 * width, 3, f"{name}_b1c", strides=2)
    b2 = kl.MaxPooling2D(3, strides=2, padding="same", name=f"{name}_pool")(x)
    return kl.Concatenate(name=f"{name}_concat")([b0, b1, b2])


def _block_b(x, width, scale, name):
    """Inception-ResNet-B (block17): 1x1 | 1x1-1x5-5x1, scaled residual."""
    channels = x.shape[-1]
    b0 = _conv_bn(x, 2 * width, 1, f"{name}_b0")
    b1 = _conv_bn(x, 2 * width, 1, f"{name}_b1a")
    b1 = _conv_bn(b1, 2 * width, (1, 5), f"{name}_b1b")
    b1 = _conv_bn(b1, 2 * width, (5, 1), f"{name}_b1c")
    mixed = kl.Concatenate(name=f"{name}_concat")([b0, b1])
    up = kl.Conv2D(channels, 1, name=f"{name}_up")(mixed)
    x = ScaledResidual(scale, name=f"{name}_residual")([x, up])
    return kl.Activation("relu", name=f"{name}_out")(x)


def facenet_model(
    input_shape: Sequence[int] = (96, 96, 1),
    embedding_dim: int = 128,
    width: int = 32,
    blocks: int = 2,
    dropout: float = 0.2,
    preprocessing: str | None = None,
    pooling: str = "avg",
    name: str = "facenet",
) -> keras.Model:
    """A compact FaceNet-style embedding network for small face sets.

    An Inception-ResNet-v1 in miniature: a convolutional stem (two stride-2
    reductions and a max pool, to 1/8 of the input), ``blocks``
    Inception-ResNet-A blocks (parallel 1x1 / 3x3 / double-3x3 branches, a
    linear 1x1 projection and a residual scaled by 0.17), a grid reduction,
    ``blocks`` Inception-ResNet-B blocks (factorised 1x5 / 5x1 branch,
    residual scale 0.1), global pooling (``pooling``), dropout,
    ``Dense(embedding_dim)`` and ``L2Normalize``: unit-norm embeddings for a
    triplet loss. With the defaults (96x96x1, ``width=32``) it has about
    0.5 M parameters and costs about 0.15 GFLOP per image, so a few epochs on
    300 faces take minutes on two CPU cores.

    ``pooling="gdc"`` replaces the global average pooling by a global
    depthwise convolution (MobileFaceNets): one learned ``h x w`` filter
    per channel over the final ``h x w`` grid, then batch normalisation. A
    face crop is roughly aligned, so the eyes or the mouth fall on the same
    cells of the grid in every image; the average weighs all cells alike,
    the depthwise filter learns which cells matter, per channel. It is
    ``fsl.training.train_facenet``'s default.

    References: Schroff, Kalenichenko and Philbin, "FaceNet: A Unified
    Embedding for Face Recognition and Clustering", CVPR 2015; Szegedy,
    Ioffe, Vanhoucke and Alemi, "Inception-v4, Inception-ResNet and the
    Impact of Residual Connections on Learning", AAAI 2017; for
    ``pooling="gdc"``: Chen, Liu, Gao and Han, "MobileFaceNets: Efficient
    CNNs for Accurate Real-Time Face Verification on Mobile Devices", CCBR
    2018, section 2.2.

    Args:
        input_shape: ``(height, width, channels)``, at least 32x32.
        embedding_dim: size of the embedding, a positive int.
        width: base number of filters per branch (the stem has ``width`` to
            ``4 * width`` channels), a positive int.
        blocks: number of residual blocks of each kind, a positive int.
        dropout: dropout rate before the embedding layer, in ``[0, 1)``.
        preprocessing: ``None`` (the model takes already standardised
            images), or a ``fsl.layers.Standardize`` mode (``"fixed"``,
            ``"prewhiten"``, ``"unit"``) applied to raw ``0..255`` pixels
            inside the model.
        pooling: ``"avg"`` (global average pooling, layer ``"avg_pool"``)
            or ``"gdc"`` (global depthwise convolution + batch norm, output
            layer ``"gdc_pool"``); either gives ``8 * width`` features,
            which ``pooled_embedding`` takes as the embedding.
        name: model name.

    Returns:
        A ``keras.Model`` mapping ``[B, H, W, C]`` images to L2-normalised
        ``[B, embedding_dim]`` embeddings.

    Raises:
        ValueError: for an invalid argument, naming the value received.

    Examples:

    >>> model = facenet_model(embedding_dim=64)
    >>> model.output_shape
    (None, 64)
    >>> facenet_model(input_shape=(64, 64, 1), pooling="gdc").get_layer("gdc").kernel_size
    (4, 4)
    """
    input_shape = check_image_shape(input_shape, min_side=32)
    check_positive_int("embedding_dim", embedding_dim)
    check_positive_int("width", width)
    check_positive_int("blocks", blocks)
    check_rate("dropout", dropout)
    if preprocessing not in (None, "fixed", "prewhiten", "unit"):
        raise ValueError(
            "preprocessing must be None, 'fixed', 'prewhiten' or 'unit'. "
            f"Received: preprocessing={preprocessing!r}"
        )
    if pooling not in POOLING_LAYERS:
        raise ValueError(
            f"pooling must be one of {sorted(POOLING_LAYERS)}. Received: pooling={pooling!r}"
        )

    # === Functional Model ===
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    if preprocessing is not None:
        x = Standardize(preprocessing, name="standardize")(x)
    # Stem: H -> H/2 -> H/4 -> H/8.
    x = _conv_bn(x, width, 3, "stem1", strides=2)
    x = _conv_bn(x, width, 3, "stem2")
    x = kl.MaxPooling2D(3, strides=2, padding="same", name="stem_pool1")(x)
    x = _conv_bn(x, 2 * width, 1, "stem3")
    x = _conv_bn(x, 2 * width, 3, "stem4")
    x = kl.MaxPooling2D(3, strides=2, padding="same", name="stem_pool2")(x)
    x = _conv_bn(x, 4 * width, 1, "stem5")
    for i in range(blocks):
        x = _block_a(x, width, 0.17, f"block_a{i + 1}")
    x = _reduction(x, width, "reduction")  # H/16, 8 * width channels
    for i in range(blocks):
        x = _block_b(x, width, 0.1, f"block_b{i + 1}")
    if pooling == "gdc":
        # One h x w filter per channel over the whole final grid -> 1 x 1.
        x = kl.DepthwiseConv2D(x.shape[1:3], padding="valid", use_bias=False, name="gdc")(x)
        x = kl.BatchNormalization(momentum=_BN_MOMENTUM, name="gdc_bn")(x)
        x = kl.Flatten(name=POOLING_LAYERS["gdc"])(x)
    else:
        x = kl.GlobalAveragePooling2D(name=POOLING_LAYERS["avg"])(x)
    if dropout > 0:
        x = kl.Dropout(dropout, name="dropout")(x)
    x = kl.Dense(embedding_dim, name="embedding", dtype=OUTPUT_DTYPE)(x)
    x = L2Normalize(name="l2_normalize", dtype=OUTPUT_DTYPE)(x)
    return keras.Model(inputs, x, name=name)
