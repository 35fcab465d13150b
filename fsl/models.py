"""Functional Keras models for similarity learning, built from ``fsl.layers``.

* ``mnist_encoder``: the small convolutional encoder of the siamese/triplet
  chapter (MNIST, 28x28).
* ``siamese_distance_model``: two inputs, shared encoder, ``PairDistance``
  output for a contrastive loss.
* ``siamese_classifier``: two inputs, shared encoder, ``SiameseHead``
  output ``P(same)`` for binary cross-entropy.
* ``embedding_model`` / ``triplet_model``: images to L2-normalised
  embeddings, for triplet losses with integer labels.
* ``mtfl_model`` + ``mtfl_losses``: the multitask facial-landmark network
  (MTFL: five landmarks, gender, smile, glasses, head pose).
* ``facenet_model``: a compact Inception-ResNet-style FaceNet embedding
  network for small face sets, trainable on a CPU, with global average or
  global depthwise (MobileFaceNets) pooling.
* ``pooled_embedding``: the embedding of a trained network taken before its
  projection head (better on unseen identities).
* ``flip_averaged_embedding``: an embedding network's output averaged over
  each image and its mirror image (test-time augmentation, in the model).
* ``recalibrate_batch_norm``: batch-norm statistics recomputed on clean
  images after training on augmented ones (precise BN).
* ``whitened_embedding``: an embedding network followed by within-class
  covariance normalisation (WCCN) learned on labelled training images.

Pair label convention, everywhere in ``fsl``: ``1`` = same identity,
``0`` = different.

Every model is a plain functional ``keras.Model`` made of built-in Keras
layers and registered ``fsl`` layers (no ``Lambda``), so
``keras.saving.load_model(path)`` reloads a saved ``.keras`` file with no
``custom_objects`` once ``fsl`` is imported.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import keras
from keras import layers as kl
from keras import ops

from fsl import distances
from fsl.layers import (
    HorizontalFlip,
    L2Normalize,
    PairDistance,
    ScaledResidual,
    SiameseHead,
    Standardize,
    Whitening,
)

logger = logging.getLogger(__name__)

__all__ = [
    "mnist_encoder",
    "siamese_distance_model",
    "siamese_classifier",
    "embedding_model",
    "triplet_model",
    "mtfl_model",
    "mtfl_losses",
    "MTFL_TASKS",
    "LandmarkL2Loss",
    "landmark_l2",
    "facenet_model",
    "pooled_embedding",
    "flip_averaged_embedding",
    "ensemble_embedding",
    "recalibrate_batch_norm",
    "whitened_embedding",
]


#: dtype of every model's output layers (embedding, distance, heads). Under
#: a mixed-precision policy (``keras.config.set_dtype_policy("mixed_float16")``
#: or ``"mixed_bfloat16"`` while a model is built) the body computes in 16
#: bits and these layers in float32, as the Keras mixed-precision guide
#: recommends: embeddings, distances and probabilities stay precise and the
#: losses see float32.
OUTPUT_DTYPE = "float32"


# === Validation helpers ===


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int. Received: {name}={value!r}")
    return value


def _check_rate(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a float in [0, 1). Received: {name}={value!r}")
    return float(value)


def _check_image_shape(input_shape: Any, min_side: int = 1) -> tuple:
    ok = (
        isinstance(input_shape, (tuple, list))
        and len(input_shape) == 3
        and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in input_shape)
    )
    if not ok:
        raise ValueError(
            "input_shape must be (height, width, channels) with positive ints. "
            f"Received: input_shape={input_shape!r}"
        )
    if min(input_shape[:2]) < min_side:
        raise ValueError(
            f"input_shape must be at least {min_side}x{min_side} pixels for this "
            f"network. Received: input_shape={tuple(input_shape)!r}"
        )
    return tuple(input_shape)


def _check_encoder(encoder: Any) -> keras.Model:
    if not isinstance(encoder, keras.Model):
        raise TypeError(
            "encoder must be a keras.Model. "
            f"Received: encoder of type {type(encoder).__name__}"
        )
    if len(encoder.inputs or []) != 1 or len(encoder.outputs or []) != 1:
        raise ValueError(
            "encoder must be a built model with one input and one output. "
            f"Received: encoder={encoder.name!r} with "
            f"{len(encoder.inputs or [])} inputs, {len(encoder.outputs or [])} outputs"
        )
    if len(encoder.outputs[0].shape) != 2:
        raise ValueError(
            "encoder must output [batch, embedding_dim] vectors. "
            f"Received: encoder={encoder.name!r} with output shape "
            f"{tuple(encoder.outputs[0].shape)}"
        )
    return encoder


def _encoder_input(encoder: keras.Model, name: str) -> keras.KerasTensor:
    spec = encoder.inputs[0]
    return keras.Input(shape=tuple(spec.shape[1:]), dtype=spec.dtype, name=name)


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

    Reference: the book's siamese-network chapter (same layer sizes) and the
    keras.io example "Image similarity estimation using a Siamese Network
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
    _check_positive_int("embedding_dim", embedding_dim)
    input_shape = _check_image_shape(input_shape, min_side=4)
    _check_rate("dropout", dropout)
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
    _check_positive_int("convs_per_block", convs_per_block)

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

    Note: the book's "siamese" network is trained as a 10-way classifier with
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


# === MTFL multitask model ===

#: Task name -> number of outputs. Landmarks are ``x1..x5, y1..y5``
#: normalised to ``[0, 1]`` by the image width / height; the attributes are
#: integer classes ``0..n-1`` (MTFL: gender, smile, glasses in {0, 1} after
#: subtracting 1 from the file's 1/2 codes; pose in 0..4).
MTFL_TASKS: dict[str, int] = {
    "landmarks": 10,
    "gender": 2,
    "smile": 2,
    "glasses": 2,
    "pose": 5,
}


def landmark_l2(y_true, y_pred):
    """Per-sample squared Euclidean landmark error, ``[B, 10] -> [B]``.

    ``sum_k (y_pred_k - y_true_k)^2`` over the 10 coordinates: the squared L2
    distance between the predicted and true landmark vectors.

    Args:
        y_true: ``[B, 10]`` target landmarks.
        y_pred: ``[B, 10]`` predicted landmarks.

    Returns:
        ``[B]`` squared errors.
    """
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.cast(y_true, y_pred.dtype)
    return ops.sum(ops.square(y_pred - y_true), axis=-1)


@keras.saving.register_keras_serializable(package="fsl")
class LandmarkL2Loss(keras.losses.Loss):
    """Squared L2 landmark error, averaged over the batch.

    ``mean_b sum_k (y_pred[b, k] - y_true[b, k])^2``: the squared Euclidean
    error summed over the 10 coordinates (``x1..x5, y1..y5``), then averaged
    over the batch (``reduction="sum_over_batch_size"``). It is ``10 x`` the
    mean squared error, i.e. the per-image squared error, which keeps its
    scale comparable to the attribute cross-entropies.

    Note: the book's landmark loss, ``tf.square(a, b)``, squares ``a`` and
    passes ``b`` as the op's *name*: the target is ignored and the network is
    only pushed towards ``0``. This loss compares prediction and target.

    Reference: Zhang, Luo, Loy and Tang, "Facial Landmark Detection by Deep
    Multi-task Learning", ECCV 2014 (MTFL; the least-squares landmark term).

    Args:
        name: loss name.
        reduction: Keras loss reduction.
        dtype: loss dtype.

    Examples:

    >>> import numpy as np
    >>> y_true = np.zeros((2, 10), "float32")
    >>> y_pred = np.full((2, 10), 0.5, "float32")
    >>> float(LandmarkL2Loss()(y_true, y_pred))
    2.5
    """

    def __init__(
        self,
        name: str = "landmark_l2",
        reduction: str = "sum_over_batch_size",
        dtype: str | None = None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        return landmark_l2(y_true, y_pred)

    def get_config(self) -> dict:
        return super().get_config()


def mtfl_losses(
    weights: Mapping[str, float] | None = None,
) -> tuple[dict[str, keras.losses.Loss], dict[str, float]]:
    """Losses and loss weights for ``mtfl_model``, to pass to ``compile``.

    ``landmarks``: ``LandmarkL2Loss`` (a real squared L2 between prediction
    and target; the book's ``tf.square(a, b)`` ignored the target). The
    attributes: ``SparseCategoricalCrossentropy`` on integer targets
    ``0..n-1``.

    Args:
        weights: task -> weight overrides (non-negative floats); tasks not
            given keep weight ``1.0``. Keys must be among ``MTFL_TASKS``.

    Returns:
        ``(losses, loss_weights)``, two dicts keyed by task name.

    Raises:
        ValueError: for an unknown task or a negative / non-numeric weight.

    Examples:

    >>> losses, loss_weights = mtfl_losses({"pose": 0.5})
    >>> sorted(losses) == sorted(MTFL_TASKS), loss_weights["pose"]
    (True, 0.5)
    """
    loss_weights = {task: 1.0 for task in MTFL_TASKS}
    if weights is not None:
        if not isinstance(weights, Mapping):
            raise TypeError(
                f"weights must be a dict task -> float. Received: weights={weights!r}"
            )
        for task, weight in weights.items():
            if task not in MTFL_TASKS:
                raise ValueError(
                    f"Unknown MTFL task. Expected keys among {list(MTFL_TASKS)}. "
                    f"Received: weights={dict(weights)!r}"
                )
            if (
                isinstance(weight, bool)
                or not isinstance(weight, (int, float))
                or not 0 <= weight < float("inf")
            ):
                raise ValueError(
                    f"Task weights must be finite floats >= 0. Received: "
                    f"weights[{task!r}]={weight!r}"
                )
            loss_weights[task] = float(weight)
    losses: dict[str, keras.losses.Loss] = {"landmarks": LandmarkL2Loss()}
    for task in MTFL_TASKS:
        if task != "landmarks":
            losses[task] = keras.losses.SparseCategoricalCrossentropy(name=f"{task}_loss")
    return losses, loss_weights


def mtfl_model(
    input_shape: Sequence[int] = (64, 64, 1),
    dropout: float = 0.5,
    bottleneck: int = 128,
    landmark_activation: str = "sigmoid",
    name: str = "mtfl",
) -> keras.Model:
    """The chapter's multitask facial-landmark network (MTFL).

    Four convolution + max-pooling stages of 16 / 48 / 64 / 64 filters
    (5x5, then 3x3; ReLU), a dense bottleneck with dropout, and five heads:

    * ``"landmarks"``: 10 values ``x1..x5, y1..y5``, normalised to
      ``[0, 1]`` by the image width / height (``sigmoid`` by default, or
      ``"linear"``).
    * ``"gender"``, ``"smile"``, ``"glasses"``: 2-way softmax.
    * ``"pose"``: 5-way softmax.

    The outputs are a dict keyed by those names; compile with
    ``losses, loss_weights = mtfl_losses()``.

    Reference: Zhang, Luo, Loy and Tang, "Facial Landmark Detection by Deep
    Multi-task Learning", ECCV 2014 (the MTFL data set and the multitask
    idea); the book's MTFL chapter for the architecture.

    Args:
        input_shape: ``(height, width, channels)``, at least 16x16.
        dropout: dropout rate after the bottleneck, in ``[0, 1)``.
        bottleneck: width of the shared dense layer, a positive int.
        landmark_activation: ``"sigmoid"`` or ``"linear"``.
        name: model name.

    Returns:
        A ``keras.Model`` with one image input and a dict of five outputs.

    Raises:
        ValueError: for an invalid argument, naming the value received.

    Examples:

    >>> import numpy as np
    >>> model = mtfl_model()
    >>> outputs = model.predict(np.zeros((2, 64, 64, 1), "float32"), verbose=0)
    >>> {task: value.shape for task, value in sorted(outputs.items())}
    {'gender': (2, 2), 'glasses': (2, 2), 'landmarks': (2, 10), 'pose': (2, 5), 'smile': (2, 2)}
    """
    input_shape = _check_image_shape(input_shape, min_side=16)
    _check_rate("dropout", dropout)
    _check_positive_int("bottleneck", bottleneck)
    if landmark_activation not in ("sigmoid", "linear"):
        raise ValueError(
            "landmark_activation must be 'sigmoid' or 'linear'. "
            f"Received: landmark_activation={landmark_activation!r}"
        )

    # === Layers ===
    stages = [(16, 5), (48, 3), (64, 3), (64, 3)]

    # === Functional Model ===
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for i, (filters, kernel) in enumerate(stages, start=1):
        x = kl.Conv2D(filters, kernel, padding="same", activation="relu", name=f"conv{i}")(x)
        x = kl.MaxPooling2D(2, name=f"pool{i}")(x)
    x = kl.Flatten(name="flatten")(x)
    x = kl.Dense(bottleneck, activation="relu", name="bottleneck")(x)
    if dropout > 0:
        x = kl.Dropout(dropout, name="dropout")(x)
    outputs = {
        "landmarks": kl.Dense(
            10, activation=landmark_activation, name="landmarks", dtype=OUTPUT_DTYPE
        )(x)
    }
    for task, classes in MTFL_TASKS.items():
        if task != "landmarks":
            outputs[task] = kl.Dense(
                classes, activation="softmax", name=task, dtype=OUTPUT_DTYPE
            )(x)
    return keras.Model(inputs, outputs, name=name)


# === FaceNet-style embedding model ===

# Small face sets give a few hundred training steps: with Keras' default
# momentum (0.99) the moving statistics still carry a third of their initial
# values then, and the saved model's embeddings collapse at inference (ORL,
# 30 train / 10 unseen people, default recipe: 10-fold verification 0.74 with
# 0.99, 0.90 with 0.9).
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
    ``fsl.training.train_facenet``'s default (its docstring has the ORL
    numbers, against average pooling).

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
    input_shape = _check_image_shape(input_shape, min_side=32)
    _check_positive_int("embedding_dim", embedding_dim)
    _check_positive_int("width", width)
    _check_positive_int("blocks", blocks)
    _check_rate("dropout", dropout)
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


def pooled_embedding(
    model: keras.Model, layer: str | None = None, name: str | None = None
) -> keras.Model:
    """The embedding taken before a network's projection head.

    A triplet loss trains ``facenet_model`` through its last ``Dense``
    (the projection head); on people never seen in training, the
    L2-normalised output of the global pooling before it separates
    identities better (on ORL, 30 people to train and 10 unseen, 4 splits x
    2 seeds, the same 40-epoch recipe: 10-fold verification 0.908 against
    0.894, precision@1 0.996 against 0.966, k-means NMI 0.943 against 0.872;
    ``benchmarks/quality.py orl --repeats 2 --facenet-recipe plain-pooled``
    and ``plain``). The same was seen for contrastive representations:
    Chen, Kornblith, Norouzi and Hinton, "A Simple Framework for Contrastive
    Learning of Visual Representations" (SimCLR), ICML 2020, section 4.2.

    The returned model shares its weights with ``model`` (no copy): train
    ``model``, then save or use this one.

    Args:
        model: a functional model, e.g. from ``facenet_model``.
        layer: name of the layer whose output (``[B, D]``) is the embedding;
            default: ``facenet_model``'s pooling layer (``"gdc_pool"`` or
            ``"avg_pool"``, whichever ``model`` has).
        name: name of the new model (default ``"<model.name>_pooled"``).

    Returns:
        A ``keras.Model`` from ``model``'s input to the L2-normalised
        output of ``layer`` (float32 under a mixed-precision policy).

    Raises:
        ValueError: if ``model`` has no layer ``layer`` (or, with the
            default, no pooling layer) or its output is not of rank 2.

    Examples:

    >>> net = facenet_model(input_shape=(64, 64, 1), width=8, embedding_dim=16)
    >>> pooled_embedding(net).output_shape
    (None, 64)
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"model must be a keras.Model. Received: model={model!r}")
    names = [item.name for item in model.layers]
    if layer is None:
        found = [item for item in POOLING_LAYERS.values() if item in names]
        if len(found) != 1:
            raise ValueError(
                f"model {model.name!r} must have exactly one of the pooling layers "
                f"{sorted(POOLING_LAYERS.values())} when no layer is named; pass layer=. "
                f"Received: a model with {found or 'none of them'}"
            )
        layer = found[0]
    if not isinstance(layer, str):
        raise ValueError(f"layer must be a layer name (str). Received: layer={layer!r}")
    if layer not in names:
        raise ValueError(
            f"model {model.name!r} has no layer {layer!r}; its layers are {names}. "
            f"Received: layer={layer!r}"
        )
    features = model.get_layer(layer).output
    if len(features.shape) != 2:
        raise ValueError(
            f"layer {layer!r} must output [batch, features] (rank 2). "
            f"Received: output shape {tuple(features.shape)}"
        )
    outputs = L2Normalize(name=f"{layer}_l2_normalize", dtype=OUTPUT_DTYPE)(features)
    return keras.Model(model.inputs, outputs, name=name or f"{model.name}_pooled")


def flip_averaged_embedding(model: keras.Model, name: str | None = None) -> keras.Model:
    """An embedding network averaged over each face and its mirror image.

    A face and its mirror image show the same person; averaging the two
    embeddings (then L2-normalising) cancels part of what the network
    learned about which way a head is turned or where the light comes from.
    This test-time augmentation is common in face recognition evaluation
    (the verification code of Deng et al., "ArcFace", CVPR 2019, adds the
    embeddings of each image and its flip; on ORL, 30 people to train and
    10 unseen, see ``fsl.training.train_facenet``). Being a layer of
    the model, the flip is saved and exported with it: serving computes
    what was evaluated. It costs two forward passes per image.

    The returned model shares its weights with ``model`` (no copy).

    Args:
        model: a model from a batch of images (``[B, H, W, C]``) to
            embeddings (``[B, D]``), e.g. ``pooled_embedding(net)``.
        name: name of the new model (default ``"<model.name>_flip_averaged"``).

    Returns:
        A ``keras.Model`` with ``model``'s input, whose output is the
        L2-normalised mean of ``model(x)`` and ``model(mirror(x))``.

    Raises:
        TypeError: if ``model`` is not a ``keras.Model``.
        ValueError: if it does not map one batch of images (rank 4) to one
            batch of vectors.

    Examples:

    >>> net = facenet_model(input_shape=(32, 32, 1), width=8, embedding_dim=16)
    >>> flip_averaged_embedding(net).output_shape
    (None, 16)
    """
    model = _check_encoder(model)
    if len(model.inputs[0].shape) != 4:
        raise ValueError(
            "model must take a batch of images [B, H, W, C] (rank 4). Received: "
            f"model={model.name!r} with input shape {tuple(model.inputs[0].shape)}"
        )
    inputs = _encoder_input(model, "image")
    mirrored = HorizontalFlip(name="mirror")(inputs)
    mean = kl.Average(name="flip_average", dtype=OUTPUT_DTYPE)([model(inputs), model(mirrored)])
    outputs = L2Normalize(name="flip_l2_normalize", dtype=OUTPUT_DTYPE)(mean)
    return keras.Model(inputs, outputs, name=name or f"{model.name}_flip_averaged")


def ensemble_embedding(members: Sequence[keras.Model], name: str = "ensemble") -> keras.Model:
    """Several embedding networks as one: their outputs side by side.

    Each member's embedding is L2-normalised, the ``M`` of them are
    concatenated and the result L2-normalised again: every member weighs
    the same and the squared L2 distance between two images is the mean of
    the members' squared distances (so the ensemble's cosine similarity is
    the mean of theirs). Networks trained from different random
    initialisations make partly independent errors, which the average
    cancels: Lakshminarayanan, Pritzel and Blundell, "Simple and Scalable
    Predictive Uncertainty Estimation using Deep Ensembles", NeurIPS 2017;
    Fort, Hu and Lakshminarayanan, "Deep Ensembles: A Loss Landscape
    Perspective", 2019 (random initialisation alone gives most of the
    diversity). ``fsl.training.train_facenet(members=...)`` trains the
    members side by side in one model (on ORL's 30 training people two of
    them did no better than one: its docstring has the numbers).

    The returned model shares its weights with ``members`` (no copy); it is
    one model, saved and exported as one.

    Args:
        members: one or more models with the same input shape, each from a
            batch of inputs to embeddings ``[B, D_m]`` (the widths may
            differ).
        name: name of the new model.

    Returns:
        A ``keras.Model`` with the members' input and unit-norm
        ``[B, sum(D_m)]`` outputs.

    Raises:
        TypeError: if a member is not a ``keras.Model``.
        ValueError: if ``members`` is empty, a member does not map one input
            to one ``[B, D]`` output, or the input shapes differ.

    Examples:

    >>> nets = [facenet_model(input_shape=(32, 32, 1), width=4, blocks=1,
    ...                       embedding_dim=8, name=f"net{i}") for i in range(2)]
    >>> ensemble_embedding(nets).output_shape
    (None, 16)
    """
    if isinstance(members, keras.Model) or not isinstance(members, Sequence) or not members:
        raise ValueError(
            f"members must be a non-empty list of models. Received: members={members!r}"
        )
    members = [_check_encoder(member) for member in members]
    shapes = {tuple(member.inputs[0].shape[1:]) for member in members}
    if len(shapes) != 1:
        raise ValueError(
            "members must all take the same input shape. Received: input shapes "
            f"{[tuple(member.inputs[0].shape[1:]) for member in members]}"
        )
    inputs = _encoder_input(members[0], "image")
    parts = [
        L2Normalize(name=f"member{i}_l2_normalize", dtype=OUTPUT_DTYPE)(member(inputs))
        for i, member in enumerate(members)
    ]
    joined = parts[0] if len(parts) == 1 else kl.Concatenate(
        name="members", dtype=OUTPUT_DTYPE)(parts)
    outputs = L2Normalize(name="ensemble_l2_normalize", dtype=OUTPUT_DTYPE)(joined)
    return keras.Model(inputs, outputs, name=name)


def _batch_norm_layers(model: keras.Model) -> list:
    found = []
    for item in model.layers:
        if isinstance(item, kl.BatchNormalization):
            found.append(item)
        elif isinstance(item, keras.Model):
            found.extend(_batch_norm_layers(item))
    return found


def recalibrate_batch_norm(model: keras.Model, images, batch_size: int = 128) -> int:
    """Recompute every batch-norm layer's statistics on ``images``.

    After training on augmented images, the moving means and variances
    describe augmented data; this replaces them by the average, over the
    batches of ``images`` (e.g. the clean training images), of each batch's
    mean and variance, as "precise BN" does: Wu and Johnson, "Rethinking
    'Batch' in BatchNorm", 2021, section 3 (PyTorch's
    ``torch.optim.swa_utils.update_bn`` is the same computation). Nothing
    but the moving statistics changes.

    Args:
        model: a model containing ``keras.layers.BatchNormalization`` layers
            (nested models included).
        images: array ``[N, ...]`` of inputs to ``model``.
        batch_size: images per batch, a positive int; use the training
            batch size (the statistics are per-batch ones).

    Returns:
        The number of batch-norm layers recalibrated (0: nothing to do).

    Raises:
        ValueError: if ``batch_size`` is not a positive int or ``images``
            is empty.

    Examples:

    >>> import numpy as np
    >>> net = facenet_model(input_shape=(32, 32, 1), width=4, blocks=1)
    >>> recalibrate_batch_norm(net, np.zeros((8, 32, 32, 1), "float32"), 4)
    19
    """
    _check_positive_int("batch_size", batch_size)
    n = len(images)
    if n == 0:
        raise ValueError(f"images must hold at least one input. Received: {n} images")
    layers = _batch_norm_layers(model)
    if not layers:
        return 0
    momenta = [item.momentum for item in layers]
    try:
        # moving = momentum * moving + (1 - momentum) * batch; momentum
        # b / (b + 1) at batch b = 0, 1, ... keeps the running mean of the
        # batches seen so far (the first batch replaces the old statistics).
        for b, start in enumerate(range(0, n, batch_size)):
            for item in layers:
                item.momentum = b / (b + 1.0)
            model(images[start:start + batch_size], training=True)
    finally:
        for item, momentum in zip(layers, momenta):
            item.momentum = momentum
    return len(layers)


def whitened_embedding(
    model: keras.Model,
    images,
    labels,
    shrinkage: float = 1.0,
    batch_size: int = 256,
    name: str | None = None,
) -> keras.Model:
    """An embedding network followed by within-class covariance normalisation.

    Embeds ``images`` (labelled training data), learns the WCCN map of
    ``fsl.evaluation.within_class_whitening`` on them and appends it as an
    ``fsl.layers.Whitening`` layer: the new model outputs
    ``l2_normalize((model(x) - mean) @ W)``. The directions in which one
    person's embeddings vary are shrunk relative to those that separate
    people, a linear back-end fitted after training (no gradient step). On
    ORL, 30 people to train and 10 unseen, it raises 10-fold verification on
    the unseen people (``fsl.training.train_facenet``, README).

    The returned model shares its weights with ``model`` (no copy); the WCCN
    statistics are weights of the new layer and are saved with it.

    Reference: Hatch, Kajarekar and Stolcke, "Within-class covariance
    normalization for SVM-based speaker recognition", Interspeech 2006.

    Args:
        model: a model from inputs to embeddings ``[B, D]``.
        images: ``[N, ...]`` labelled inputs to ``model`` (the training data).
        labels: ``[N]`` class labels of ``images``.
        shrinkage: ``> 0``, see ``fsl.evaluation.within_class_whitening``.
        batch_size: images per forward pass when embedding ``images``.
        name: name of the new model (default ``"<model.name>_wccn"``).

    Returns:
        A ``keras.Model`` with ``model``'s input and unit-norm ``[B, D]``
        outputs.

    Raises:
        TypeError: if ``model`` is not a ``keras.Model``.
        ValueError: if it does not have one input and one ``[B, D]`` output,
            for a bad ``batch_size``, or as ``within_class_whitening``.

    Examples:

    >>> import numpy as np
    >>> net = facenet_model(input_shape=(32, 32, 1), width=4, blocks=1, embedding_dim=8)
    >>> x = np.random.default_rng(0).normal(size=(12, 32, 32, 1)).astype("float32")
    >>> whitened_embedding(net, x, np.repeat(np.arange(4), 3)).output_shape
    (None, 8)
    """
    from fsl.evaluation.whitening import within_class_whitening

    model = _check_encoder(model)
    _check_positive_int("batch_size", batch_size)
    embeddings = model.predict(images, batch_size=batch_size, verbose=0)
    mean, matrix = within_class_whitening(embeddings, labels, shrinkage=shrinkage)
    inputs = _encoder_input(model, "input")
    layer = Whitening(name="wccn", dtype=OUTPUT_DTYPE)
    outputs = layer(model(inputs))
    layer.set_weights([mean, matrix])
    return keras.Model(inputs, outputs, name=name or f"{model.name}_wccn")
