"""Margin-softmax classification heads: ArcFace, CosFace, AdaFace, sub-center ArcFace.

The face-verification results of the last years come from training the
embedding as a classifier over the training identities with a margin in the
angle between an embedding and its class's weight vector. Each head here is
a Keras layer called on ``[embeddings, labels]``: it L2-normalises the
embeddings ``x`` and the class weights ``W`` (``[D, C]``), takes the cosines
``cos(theta_j) = x . W_j``, adds the margin to the target class's entry, and
returns the logits ``s * (...)`` for
``keras.losses.SparseCategoricalCrossentropy(from_logits=True)``. Called
with ``labels=None`` (or outside training, for AdaFace's statistics), it
returns the plain scaled cosines. After training the head is dropped: the
embedding is the network before it; ``class_centres()`` gives the learned
class directions.

Numerics: the cosines are computed in float32 at least (float64 stays
float64) and clipped to ``[-1 + eps, 1 - eps]`` before ``sqrt(1 - cos^2)``
or ``arccos``, so no NaN appears at ``cos = +-1``, mixed precision included.

References: Deng, Guo, Xue and Zafeiriou, "ArcFace: Additive Angular Margin
Loss for Deep Face Recognition", CVPR 2019 (and sub-center ArcFace, Deng et
al., ECCV 2020); Wang et al., "CosFace: Large Margin Cosine Loss for Deep
Face Recognition", CVPR 2018; Kim, Jain and Liu, "AdaFace: Quality Adaptive
Margin for Face Recognition", CVPR 2022.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from fsl._checks import check_fraction, check_positive_float, check_positive_int, check_real

#: The cosines are clipped this far inside [-1, 1] before sqrt(1 - c^2) and arccos.
COS_EPSILON = 1e-6


def _compute_dtype(x):
    dtype = keras.backend.standardize_dtype(x.dtype)
    return "float64" if dtype == "float64" else "float32"


class _MarginHead(keras.layers.Layer):
    """Shared parts: the class weights, the cosines, the one-hot target."""

    def __init__(self, num_classes: int, scale: float, margin: float, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.scale = check_positive_float("scale", scale)
        self.margin = check_real("margin", margin, low=0.0)
        self.centres_per_class = 1

    def build(self, input_shape):
        embedding_shape = input_shape[0] if isinstance(input_shape, (list, tuple)) and \
            isinstance(input_shape[0], (list, tuple)) else input_shape
        dim = embedding_shape[-1]
        if dim is None:
            raise ValueError("The embedding size must be known. Received: input shape "
                             f"{embedding_shape}")
        self.kernel = self.add_weight(
            name="kernel", shape=(int(dim), self.num_classes * self.centres_per_class),
            initializer="glorot_uniform", trainable=True)

    def _split(self, inputs):
        if isinstance(inputs, (list, tuple)):
            if len(inputs) != 2:
                raise ValueError("A margin head takes [embeddings, labels]. Received: "
                                 f"{len(inputs)} inputs")
            return inputs[0], inputs[1]
        return inputs, None

    #: How far inside [-1, 1] the cosines are clipped.
    cos_epsilon = COS_EPSILON

    def _cosines(self, embeddings):
        """``(cos [B, C * K], norms [B])`` in the compute dtype, clipped."""
        dtype = _compute_dtype(embeddings)
        x = ops.cast(embeddings, dtype)
        norms = ops.sqrt(ops.maximum(ops.sum(x * x, axis=-1), 1e-12))
        w = ops.cast(self.kernel, dtype)
        w = w / ops.sqrt(ops.maximum(ops.sum(w * w, axis=0, keepdims=True), 1e-12))
        cos = ops.matmul(x / ops.expand_dims(norms, -1), w)
        return ops.clip(cos, -1.0 + self.cos_epsilon, 1.0 - self.cos_epsilon), norms

    def _one_hot(self, labels, dtype):
        labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
        return ops.one_hot(labels, self.num_classes, dtype=dtype)

    def class_centres(self):
        """The learned class directions, unit rows: ``[C, D]`` (``[C, K, D]``
        for sub-centers), as numpy."""
        w = ops.convert_to_numpy(self.kernel).astype("float64")
        w = w / (w ** 2).sum(axis=0, keepdims=True) ** 0.5
        w = w.T.reshape(self.num_classes, self.centres_per_class, -1)
        return w[:, 0] if self.centres_per_class == 1 else w

    def compute_output_shape(self, input_shape):
        embedding_shape = input_shape[0] if isinstance(input_shape, (list, tuple)) and \
            isinstance(input_shape[0], (list, tuple)) else input_shape
        return (embedding_shape[0], self.num_classes)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "scale": self.scale, "margin": self.margin}


def _arcface_target(cos, margin: float, easy_margin: bool):
    """``cos(theta + m)`` with the fallback of the paper's code where
    ``theta + m`` passes pi (``th``/``mm``), or with ``easy_margin``."""
    sin = ops.sqrt(ops.maximum(1.0 - cos * cos, 0.0))
    phi = cos * math.cos(margin) - sin * math.sin(margin)
    if easy_margin:
        return ops.where(cos > 0.0, phi, cos)
    th, mm = math.cos(math.pi - margin), math.sin(math.pi - margin) * margin
    return ops.where(cos > th, phi, cos - mm)


@keras.saving.register_keras_serializable(package="fsl")
class ArcFace(_MarginHead):
    """Additive angular margin: the target logit is ``s * cos(theta + m)``.

    Where ``theta + m`` would pass pi (``cos(theta) <= cos(pi - m)``) the
    target is ``s * (cos(theta) - m * sin(m))`` instead, as the paper's code
    does (``th``, ``mm``), keeping the logit monotonic in theta; with
    ``easy_margin=True`` the margin applies only where ``cos(theta) > 0``.

    Args:
        num_classes: the training identities.
        scale: ``s`` (64 in the paper).
        margin: ``m`` in radians (0.5 in the paper).
        easy_margin: the paper code's ``easy_margin`` option.
        **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``).

    Examples:

    >>> import numpy as np
    >>> head = ArcFace(num_classes=3, scale=10.0, margin=0.5)
    >>> logits = head([np.eye(4, dtype="float32")[:2], np.array([0, 2])])
    >>> tuple(logits.shape)
    (2, 3)
    """

    def __init__(self, num_classes: int, scale: float = 64.0, margin: float = 0.5,
                 easy_margin: bool = False, **kwargs):
        super().__init__(num_classes, scale, margin, **kwargs)
        self.easy_margin = bool(easy_margin)

    def call(self, inputs, training=None):
        embeddings, labels = self._split(inputs)
        cos, _ = self._cosines(embeddings)
        cos = self._pool_centres(cos)
        if labels is None:
            return self.scale * cos
        target = self._one_hot(labels, cos.dtype)
        phi = _arcface_target(cos, self.margin, self.easy_margin)
        return self.scale * (target * phi + (1.0 - target) * cos)

    def _pool_centres(self, cos):
        return cos

    def get_config(self):
        return {**super().get_config(), "easy_margin": self.easy_margin}


@keras.saving.register_keras_serializable(package="fsl")
class SubCenterArcFace(ArcFace):
    """ArcFace with ``k`` centres per class: a sample's cosine to a class is
    its largest over the class's centres, so noisy photos can gather around
    a centre of their own (Deng et al. 2020).

    Args:
        num_classes: the training identities.
        centres: ``k``, centres per class (3 in the paper).
        scale, margin, easy_margin: as ``ArcFace``.
        **kwargs: ``keras.layers.Layer`` arguments.
    """

    def __init__(self, num_classes: int, centres: int = 3, scale: float = 64.0,
                 margin: float = 0.5, easy_margin: bool = False, **kwargs):
        super().__init__(num_classes, scale, margin, easy_margin, **kwargs)
        self.centres_per_class = check_positive_int("centres", centres)

    def _pool_centres(self, cos):
        cos = ops.reshape(cos, (-1, self.num_classes, self.centres_per_class))
        return ops.max(cos, axis=-1)

    def get_config(self):
        return {**super().get_config(), "centres": self.centres_per_class}


@keras.saving.register_keras_serializable(package="fsl")
class CosFace(_MarginHead):
    """Additive cosine margin: the target logit is ``s * (cos(theta) - m)``.

    Args:
        num_classes: the training identities.
        scale: ``s`` (64 in the paper).
        margin: ``m`` (0.35 in the paper).
        **kwargs: ``keras.layers.Layer`` arguments.
    """

    def __init__(self, num_classes: int, scale: float = 64.0, margin: float = 0.35, **kwargs):
        super().__init__(num_classes, scale, margin, **kwargs)

    def call(self, inputs, training=None):
        embeddings, labels = self._split(inputs)
        cos, _ = self._cosines(embeddings)
        if labels is None:
            return self.scale * cos
        return self.scale * (cos - self.margin * self._one_hot(labels, cos.dtype))


@keras.saving.register_keras_serializable(package="fsl")
class AdaFace(_MarginHead):
    """Feature-norm adaptive margin (AdaFace).

    The embedding's norm stands for image quality. Over training batches the
    head keeps running statistics of the (clipped to ``[0.001, 100]``) norms
    (non-trainable weights ``batch_mean``, ``batch_std``; updated with rate
    ``t_alpha`` before use, from 20 and 100, as the paper's code), scales
    each sample's norm to ``z = clip((norm - mean) / (std + eps) * h, -1, 1)``
    (no gradient) and moves the target angle by ``-m z`` and its cosine by
    ``m + m z``::

        target = s * (cos(clip(theta - m z, eps, pi - eps)) - (m + m z))

    (``eps`` = 1e-3, to which the cosines are clipped too.)

    High-quality faces (``z`` near 1) get an angular margin, low-quality ones
    an additive one.

    Args:
        num_classes: the training identities.
        scale: ``s`` (64 in the paper).
        margin: ``m`` (0.4 in the paper).
        h: the concentration ``h`` (0.333).
        t_alpha: the running statistics' update rate (0.01).
        **kwargs: ``keras.layers.Layer`` arguments.
    """

    #: The paper code's eps: cosines and the moved angle stay this far inside.
    cos_epsilon = 1e-3

    def __init__(self, num_classes: int, scale: float = 64.0, margin: float = 0.4,
                 h: float = 0.333, t_alpha: float = 0.01, **kwargs):
        super().__init__(num_classes, scale, margin, **kwargs)
        self.h = check_positive_float("h", h)
        self.t_alpha = check_fraction("t_alpha", t_alpha)

    def build(self, input_shape):
        super().build(input_shape)
        self.batch_mean = self.add_weight(name="batch_mean", shape=(), aggregation="mean",
                                          initializer=keras.initializers.Constant(20.0),
                                          trainable=False)
        self.batch_std = self.add_weight(name="batch_std", shape=(), aggregation="mean",
                                         initializer=keras.initializers.Constant(100.0),
                                         trainable=False)

    def call(self, inputs, training=None):
        embeddings, labels = self._split(inputs)
        cos, norms = self._cosines(embeddings)
        if labels is None:
            return self.scale * cos
        norms = ops.stop_gradient(ops.clip(norms, 0.001, 100.0))
        mean, std = ops.cast(self.batch_mean, cos.dtype), ops.cast(self.batch_std, cos.dtype)
        if training:
            n = ops.cast(ops.shape(norms)[0], cos.dtype)
            batch_std = ops.sqrt(ops.sum((norms - ops.mean(norms)) ** 2)
                                 / ops.maximum(n - 1.0, 1.0))  # unbiased, as torch.std
            mean = self.t_alpha * ops.mean(norms) + (1.0 - self.t_alpha) * mean
            std = self.t_alpha * batch_std + (1.0 - self.t_alpha) * std
            self.batch_mean.assign(ops.cast(mean, self.batch_mean.dtype))
            self.batch_std.assign(ops.cast(std, self.batch_std.dtype))
        z = ops.clip((norms - mean) / (std + 1e-3) * self.h, -1.0, 1.0)
        z = ops.expand_dims(ops.stop_gradient(z), -1)
        target = self._one_hot(labels, cos.dtype)
        theta = ops.arccos(cos)
        theta = ops.clip(theta - self.margin * z * target, self.cos_epsilon,
                         math.pi - self.cos_epsilon)
        adjusted = ops.cos(theta) - target * (self.margin + self.margin * z)
        return self.scale * adjusted

    def get_config(self):
        return {**super().get_config(), "h": self.h, "t_alpha": self.t_alpha}


__all__ = ["COS_EPSILON", "AdaFace", "ArcFace", "CosFace", "SubCenterArcFace"]
