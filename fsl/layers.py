"""Keras layers for similarity learning, serializable and ``Lambda``-free.

* ``L2Normalize``: project embeddings onto the unit hypersphere (FaceNet).
* ``PairDistance``: row-wise distance between two embedding batches, the
  output of a siamese distance network trained with a contrastive loss.
* ``SiameseHead``: logistic regression on ``|f1 - f2|`` or the chi-square
  similarity, giving ``P(same)`` for a pair (verification as binary
  classification).
* ``Standardize``: pixel standardisation inside the model, so that exported
  models take raw pixels.
* ``ScaledResidual``: ``x + scale * residual``, the scaled shortcut of
  Inception-ResNet blocks.
* ``Affine``: a fixed-statistics per-channel ``gamma * x + beta`` (a batch
  normalisation folded for inference, dlib's ``affine`` layer).
* ``PaddedAdd``: add two tensors of different shapes, each zero-padded at
  the end of every axis to the larger size (dlib's ``add_prev``).
* ``HorizontalFlip``: mirror images left-right, at inference too (test-time
  augmentation inside the model).
* ``Whitening``: a fixed linear map ``(x - mean) @ matrix`` then L2
  normalisation, e.g. within-class covariance normalisation (WCCN) learned on
  training embeddings, carried inside the embedding model.

Every layer is registered under the package name ``"fsl"`` and has a plain
JSON ``get_config``, so models that use them reload with
``keras.saving.load_model(path)`` and no ``custom_objects`` once ``fsl`` is
imported. The math uses ``keras.ops`` only and runs on every Keras backend.

Pair label convention, everywhere in ``fsl``: ``1`` = same identity,
``0`` = different.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from fsl import distances
from fsl.preprocessing import STANDARDIZE_MODES, standardize_tensor

__all__ = [
    "L2Normalize",
    "PairDistance",
    "SiameseHead",
    "Standardize",
    "ScaledResidual",
    "Affine",
    "PaddedAdd",
    "HorizontalFlip",
    "Whitening",
]


def _check_pair(inputs: Any, layer: str) -> tuple[Any, Any]:
    if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
        kind = type(inputs).__name__
        length = len(inputs) if isinstance(inputs, (list, tuple)) else None
        raise ValueError(
            f"{layer} must be called on a list of two tensors [a, b]. Received: "
            f"inputs of type {kind}" + (f" with {length} items" if length is not None else "")
        )
    return inputs[0], inputs[1]


def _check_pair_shapes(input_shape: Any, layer: str) -> tuple[tuple, tuple]:
    if (
        not isinstance(input_shape, (list, tuple))
        or len(input_shape) != 2
        or not all(isinstance(s, (list, tuple)) for s in input_shape)
    ):
        raise ValueError(
            f"{layer} expects the shapes of two tensors [a, b]. "
            f"Received: input_shape={input_shape}"
        )
    a, b = (tuple(s) for s in input_shape)
    if len(a) != len(b) or (
        a[-1] is not None and b[-1] is not None and a[-1] != b[-1]
    ):
        raise ValueError(
            f"{layer}: both inputs must have the same rank and last dimension. "
            f"Received: input_shape={input_shape}"
        )
    return a, b


@keras.saving.register_keras_serializable(package="fsl")
class L2Normalize(keras.layers.Layer):
    """Scale each embedding to unit L2 norm.

    FaceNet constrains embeddings to the unit hypersphere, ``||f(x)||_2 = 1``,
    so that squared distances lie in ``[0, 4]`` and a triplet margin has a
    fixed scale. Computes ``x / sqrt(max(sum(x ** 2, axis), epsilon))``
    (``fsl.distances.l2_normalize``): an all-zero row stays zero, never NaN.

    Reference: Schroff, Kalenichenko and Philbin, "FaceNet: A Unified
    Embedding for Face Recognition and Clustering", CVPR 2015.

    Args:
        axis: axis to normalise along (an int).
        epsilon: lower bound on the squared norm, ``> 0``.
        **kwargs: standard ``keras.layers.Layer`` arguments.

    Raises:
        ValueError: if ``epsilon <= 0``.
        TypeError: if ``axis`` is not an int.

    Examples:

    >>> import numpy as np
    >>> x = np.array([[3.0, 4.0]], "float32")
    >>> np.asarray(L2Normalize()(x), "float64").round(3).tolist()
    [[0.6, 0.8]]
    """

    def __init__(self, axis: int = -1, epsilon: float = 1e-12, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise TypeError(f"axis must be an int. Received: axis={axis!r}")
        if not isinstance(epsilon, (int, float)) or not epsilon > 0:
            raise ValueError(f"epsilon must be > 0. Received: epsilon={epsilon!r}")
        self.axis = int(axis)
        self.epsilon = float(epsilon)
        self.supports_masking = True

    def call(self, inputs):
        return distances.l2_normalize(inputs, axis=self.axis, epsilon=self.epsilon)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"axis": self.axis, "epsilon": self.epsilon})
        return config


@keras.saving.register_keras_serializable(package="fsl")
class PairDistance(keras.layers.Layer):
    """Row-wise distance ``d(a_i, b_i)`` between two batches of embeddings.

    Called on ``[a, b]`` (two ``[B, D]`` tensors), returns ``[B, 1]`` (or
    ``[B]`` with ``keepdims=False``). It replaces the ``Lambda`` distance layer
    of the keras.io siamese contrastive example, so the model serializes. The
    ``"L2"`` distance is exactly 0 with a zero gradient for identical rows.

    Reference: Hadsell, Chopra and LeCun, "Dimensionality Reduction by
    Learning an Invariant Mapping", CVPR 2006 (the contrastive loss that
    consumes this distance).

    Args:
        metric: ``"L2"``, ``"squared-L2"`` or ``"angular"`` (or an alias such
            as ``"euclidean"``, ``"cosine"``); see ``fsl.distances``. Stored
            under its canonical name.
        keepdims: return ``[B, 1]`` (True, the default, the shape a Keras loss
            expects next to ``[B, 1]`` labels) or ``[B]``.
        **kwargs: standard ``keras.layers.Layer`` arguments.

    Raises:
        ValueError: for an unknown metric name.
        TypeError: for a metric that is not a string (a callable would not
            serialize), or a non-bool ``keepdims``.

    Examples:

    >>> import numpy as np
    >>> a = np.array([[0.0, 0.0]], "float32")
    >>> b = np.array([[3.0, 4.0]], "float32")
    >>> np.asarray(PairDistance("L2")([a, b])).tolist()
    [[5.0]]
    """

    def __init__(self, metric: str = "L2", keepdims: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.metric = distances.canonical_name(metric)
        if not isinstance(keepdims, bool):
            raise TypeError(f"keepdims must be a bool. Received: keepdims={keepdims!r}")
        self.keepdims = keepdims
        self._fn = distances.get_paired(self.metric)

    def build(self, input_shape):
        _check_pair_shapes(input_shape, "PairDistance")
        self.built = True

    def call(self, inputs):
        a, b = _check_pair(inputs, "PairDistance")
        d = self._fn(a, b)
        return ops.expand_dims(d, -1) if self.keepdims else d

    def compute_output_shape(self, input_shape):
        a, _ = _check_pair_shapes(input_shape, "PairDistance")
        return a[:-1] + (1,) if self.keepdims else a[:-1]

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"metric": self.metric, "keepdims": self.keepdims})
        return config


_SIAMESE_KINDS = ("abs", "chi2")


@keras.saving.register_keras_serializable(package="fsl")
class SiameseHead(keras.layers.Layer):
    """Face verification as binary classification: ``P(same)`` for a pair.

    Called on ``[f1, f2]`` (two ``[B, D]`` embeddings of the two images from a
    shared encoder), returns ``sigmoid(sum_k w_k * phi_k + b)`` of shape
    ``[B, 1]``, the probability that the two images show the SAME identity
    (label convention: ``1`` = same, ``0`` = different; train with
    ``keras.losses.BinaryCrossentropy``). Features:

    * ``kind="abs"``: ``phi_k = |f1_k - f2_k|``.
    * ``kind="chi2"``: the chi-square similarity
      ``phi_k = (f1_k - f2_k)^2 / (f1_k + f2_k)``. It assumes non-negative
      features (e.g. ReLU outputs); the layer computes
      ``(f1_k - f2_k)^2 / (|f1_k + f2_k| + epsilon)`` so that it stays finite
      (0 with finite gradients where ``f1_k = f2_k = 0``) for any input.

    Both features are symmetric, so the output does not depend on the order
    of the pair.

    Reference: Andrew Ng, deeplearning.ai "Convolutional Neural Networks"
    course, week 4, "Face verification and binary classification"; Taigman et
    al., "DeepFace", CVPR 2014 (the chi-square similarity).

    Args:
        kind: ``"abs"`` or ``"chi2"``.
        epsilon: ``> 0``, added to the chi-square denominator.
        kernel_initializer: initializer of the weights ``w`` (``[D, 1]``).
        bias_initializer: initializer of the bias ``b`` (``[1]``).
        **kwargs: standard ``keras.layers.Layer`` arguments.

    Raises:
        ValueError: for an unknown ``kind`` or ``epsilon <= 0``.

    Examples:

    >>> import numpy as np
    >>> head = SiameseHead("abs")
    >>> f = np.ones((2, 8), "float32")
    >>> tuple(head([f, f]).shape)
    (2, 1)
    """

    def __init__(
        self,
        kind: str = "abs",
        epsilon: float = 1e-7,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if kind not in _SIAMESE_KINDS:
            raise ValueError(
                f"kind must be one of {list(_SIAMESE_KINDS)}. Received: kind={kind!r}"
            )
        if not isinstance(epsilon, (int, float)) or not epsilon > 0:
            raise ValueError(f"epsilon must be > 0. Received: epsilon={epsilon!r}")
        self.kind = kind
        self.epsilon = float(epsilon)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        a, _ = _check_pair_shapes(input_shape, "SiameseHead")
        if a[-1] is None:
            raise ValueError(
                "SiameseHead needs a known feature dimension. "
                f"Received: input_shape={input_shape}"
            )
        self.kernel = self.add_weight(
            name="kernel", shape=(a[-1], 1), initializer=self.kernel_initializer
        )
        self.bias = self.add_weight(
            name="bias", shape=(1,), initializer=self.bias_initializer
        )
        self.built = True

    def features(self, f1, f2):
        """The pair features ``phi`` (``[B, D]``) before the logistic unit."""
        diff = ops.subtract(f1, f2)
        if self.kind == "abs":
            return ops.abs(diff)
        return ops.square(diff) / (ops.abs(ops.add(f1, f2)) + self.epsilon)

    def call(self, inputs):
        f1, f2 = _check_pair(inputs, "SiameseHead")
        logits = ops.matmul(self.features(f1, f2), self.kernel) + self.bias
        return ops.sigmoid(logits)

    def compute_output_shape(self, input_shape):
        a, _ = _check_pair_shapes(input_shape, "SiameseHead")
        return a[:-1] + (1,)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "kind": self.kind,
                "epsilon": self.epsilon,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config




@keras.saving.register_keras_serializable(package="fsl")
class Standardize(keras.layers.Layer):
    """Standardise raw pixel values inside the model.

    Putting the preprocessing in the model means an exported model takes raw
    pixels (``0..255``, ``uint8`` or float) and nobody has to remember the
    formula at serving time. Integer inputs are cast to the layer's compute
    dtype (``float32`` by default). The formulas are
    ``fsl.preprocessing.standardize``'s, in ``keras.ops``; modes, as in David
    Sandberg's ``facenet`` (``facenet.py``):

    * ``"fixed"``: ``(x - 127.5) / 128`` (``fixed_image_standardization``).
    * ``"prewhiten"``: per image, ``(x - mean) / max(std, 1 / sqrt(n))`` with
      ``mean``, ``std`` over all ``n`` pixel values of that image
      (``prewhiten``). A constant image maps to zeros.
    * ``"unit"``: ``x / 255``.

    Args:
        mode: ``"fixed"``, ``"prewhiten"`` or ``"unit"``.
        **kwargs: standard ``keras.layers.Layer`` arguments.

    Raises:
        ValueError: for an unknown ``mode``.

    Examples:

    >>> import numpy as np
    >>> x = np.array([[0, 255]], "uint8")
    >>> np.asarray(Standardize("unit")(x)).tolist()
    [[0.0, 1.0]]
    """

    def __init__(self, mode: str = "fixed", **kwargs):
        super().__init__(**kwargs)
        if mode not in STANDARDIZE_MODES:
            raise ValueError(
                f"mode must be one of {list(STANDARDIZE_MODES)}. Received: mode={mode!r}"
            )
        self.mode = mode

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if self.mode == "prewhiten" and len(x.shape) < 2:
            raise ValueError(
                "Standardize(mode='prewhiten') needs a batch of images with rank "
                f">= 2. Received: input of shape {x.shape}"
            )
        return standardize_tensor(x, self.mode)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(inputs.shape, dtype=self.compute_dtype)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"mode": self.mode})
        return config


@keras.saving.register_keras_serializable(package="fsl")
class ScaledResidual(keras.layers.Layer):
    """``x + scale * residual``: the scaled shortcut of Inception-ResNet.

    Called on ``[x, residual]`` (same shapes). Scaling the residual branch by
    ``0.1 .. 0.3`` before the addition stabilises the training of
    Inception-ResNet networks.

    Reference: Szegedy, Ioffe, Vanhoucke and Alemi, "Inception-v4,
    Inception-ResNet and the Impact of Residual Connections on Learning",
    AAAI 2017, section 3.3.

    Args:
        scale: the residual scale, a finite float ``> 0``.
        **kwargs: standard ``keras.layers.Layer`` arguments.

    Raises:
        ValueError: if ``scale <= 0``.
    """

    def __init__(self, scale: float = 0.2, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(scale, (int, float)) or not 0 < scale < float("inf"):
            raise ValueError(f"scale must be > 0. Received: scale={scale!r}")
        self.scale = float(scale)

    def call(self, inputs):
        x, residual = _check_pair(inputs, "ScaledResidual")
        return x + self.scale * residual

    def compute_output_shape(self, input_shape):
        a, _ = _check_pair_shapes(input_shape, "ScaledResidual")
        return a

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"scale": self.scale})
        return config



@keras.saving.register_keras_serializable(package="fsl")
class Affine(keras.layers.Layer):
    """Per-channel ``gamma * x + beta`` over the last axis, no batch statistics.

    What a batch normalisation becomes once its statistics are folded into
    its scale and shift for inference (dlib's ``affine`` layer). Training
    updates ``gamma`` and ``beta`` like any weights but never re-estimates
    statistics, so fine-tuning a pretrained network on small batches keeps
    its normalisation (the "frozen batch norm" of detection networks).

    Args:
        **kwargs: standard ``keras.layers.Layer`` arguments.

    Examples:

    >>> import numpy as np
    >>> layer = Affine()
    >>> layer.build((None, 2))
    >>> layer.set_weights([np.array([2.0, 3.0]), np.array([1.0, 0.0])])
    >>> np.asarray(layer(np.ones((1, 2), "float32"))).tolist()
    [[3.0, 3.0]]
    """

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(
                f"Affine needs a known last dimension. Received: input_shape={input_shape}"
            )
        self.gamma = self.add_weight(shape=(channels,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(channels,), initializer="zeros", name="beta")

    def call(self, inputs):
        gamma = ops.cast(self.gamma, inputs.dtype)
        beta = ops.cast(self.beta, inputs.dtype)
        return inputs * gamma + beta

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="fsl")
class PaddedAdd(keras.layers.Layer):
    """``a + b`` for tensors of different static shapes, zero-padded at the end.

    Called on ``[a, b]`` of the same rank; every non-batch axis of each is
    padded with zeros after its last element up to the larger of the two
    sizes, then they are added. A residual shortcut with fewer channels, or
    a pooled shortcut one pixel larger than the strided branch, is added this
    way in dlib's ResNets (``add_prev``: its ``tt::add`` of tensors of
    different sizes).

    Args:
        **kwargs: standard ``keras.layers.Layer`` arguments.

    Raises:
        ValueError: on inputs of different ranks or unknown non-batch sizes.

    Examples:

    >>> import numpy as np
    >>> a = np.ones((1, 2, 1), "float32")
    >>> b = np.full((1, 1, 2), 10.0, "float32")
    >>> np.asarray(PaddedAdd()([a, b]))[0].tolist()
    [[11.0, 10.0], [1.0, 0.0]]
    """

    @staticmethod
    def _target(a_shape, b_shape) -> tuple:
        a_shape, b_shape = tuple(a_shape), tuple(b_shape)
        if len(a_shape) != len(b_shape) or any(
            s is None for s in (*a_shape[1:], *b_shape[1:])
        ):
            raise ValueError(
                "PaddedAdd needs two inputs of the same rank with known non-batch sizes. "
                f"Received: shapes {a_shape} and {b_shape}"
            )
        return tuple(max(x, y) for x, y in zip(a_shape[1:], b_shape[1:]))

    def call(self, inputs):
        a, b = _check_pair(inputs, "PaddedAdd")
        target = self._target(a.shape, b.shape)

        def pad(x):
            widths = [(0, 0)] + [(0, t - s) for s, t in zip(x.shape[1:], target)]
            return x if all(w == (0, 0) for w in widths) else ops.pad(x, widths)

        return pad(a) + pad(b)

    def compute_output_shape(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2:
            raise ValueError(f"PaddedAdd expects two shapes. Received: input_shape={input_shape}")
        a, b = input_shape
        batch = a[0] if a[0] is not None else b[0]
        return (batch, *self._target(a, b))


@keras.saving.register_keras_serializable(package="fsl")
class HorizontalFlip(keras.layers.Layer):
    """Mirror a batch of images left-right, always (not a random layer).

    ``keras.layers.RandomFlip`` flips only in training; this layer flips at
    inference, for test-time augmentation inside a model (see
    ``fsl.models.flip_averaged_embedding``), so that an exported model does
    it too.

    Args:
        data_format: ``"channels_last"`` (``[B, H, W, C]``, the width is axis
            2) or ``"channels_first"`` (``[B, C, H, W]``, axis 3); default
            ``keras.config.image_data_format()``.
        **kwargs: standard ``keras.layers.Layer`` arguments.

    Raises:
        ValueError: for another ``data_format``, or an input that is not a
            rank-4 batch of images.

    Examples:

    >>> import numpy as np
    >>> x = np.arange(6, dtype="float32").reshape(1, 1, 3, 2)
    >>> np.asarray(HorizontalFlip("channels_last")(x))[0, 0].tolist()
    [[4.0, 5.0], [2.0, 3.0], [0.0, 1.0]]
    """

    def __init__(self, data_format: str | None = None, **kwargs):
        super().__init__(**kwargs)
        data_format = keras.config.image_data_format() if data_format is None else data_format
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError(
                "data_format must be 'channels_last' or 'channels_first'. Received: "
                f"data_format={data_format!r}"
            )
        self.data_format = data_format

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                "HorizontalFlip expects a batch of images of rank 4. Received: "
                f"input_shape={tuple(input_shape)}"
            )
        super().build(input_shape)

    def call(self, inputs):
        return ops.flip(inputs, axis=2 if self.data_format == "channels_last" else 3)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"data_format": self.data_format})
        return config


@keras.saving.register_keras_serializable(package="fsl")
class Whitening(keras.layers.Layer):
    """A fixed affine map of embeddings, then L2 normalisation.

    Computes ``l2_normalize((x - mean) @ matrix)``. ``mean`` (``[D]``) and
    ``matrix`` (``[D, units]``) are non-trainable weights: zeros and the
    identity until set, e.g. with ``set_weights([mean, matrix])`` from
    ``fsl.evaluation.within_class_whitening`` (within-class covariance
    normalisation, WCCN), as ``fsl.models.whitened_embedding`` does. They are
    saved with the model, so a reloaded or exported model applies the same
    map.

    Reference: Hatch, Kajarekar and Stolcke, "Within-class covariance
    normalization for SVM-based speaker recognition", Interspeech 2006.

    Args:
        units: output width (default: the input width).
        epsilon: lower bound on the squared norm in the L2 normalisation
            (an all-zero row stays zero), ``> 0``.
        **kwargs: standard ``keras.layers.Layer`` arguments.

    Raises:
        ValueError: for a non-positive ``units`` or ``epsilon``, or an input
            that is not ``[B, D]`` with a known ``D``.

    Examples:

    >>> import numpy as np
    >>> layer = Whitening()
    >>> layer.build((None, 2))
    >>> layer.set_weights([np.array([1.0, 0.0]), np.diag([1.0, 2.0])])
    >>> np.asarray(layer(np.array([[4.0, 2.0]], "float32")), "float64").round(3).tolist()
    [[0.6, 0.8]]
    """

    def __init__(self, units: int | None = None, epsilon: float = 1e-12, **kwargs):
        super().__init__(**kwargs)
        if units is not None and (isinstance(units, bool) or not isinstance(units, int)
                                  or units < 1):
            raise ValueError(f"units must be a positive int or None. Received: units={units!r}")
        if not isinstance(epsilon, (int, float)) or not epsilon > 0:
            raise ValueError(f"epsilon must be > 0. Received: epsilon={epsilon!r}")
        self.units = units
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(
                "Whitening expects embeddings [B, D] with a known D. Received: "
                f"input_shape={tuple(input_shape)}"
            )
        dim = int(input_shape[-1])
        units = dim if self.units is None else self.units
        self.mean = self.add_weight(shape=(dim,), initializer="zeros", trainable=False,
                                    name="mean")
        self.matrix = self.add_weight(shape=(dim, units), initializer="identity",
                                      trainable=False, name="matrix")
        super().build(input_shape)

    def call(self, inputs):
        projected = ops.matmul(inputs - ops.cast(self.mean, inputs.dtype),
                               ops.cast(self.matrix, inputs.dtype))
        return distances.l2_normalize(projected, axis=-1, epsilon=self.epsilon)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1] if self.units is None else self.units)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"units": self.units, "epsilon": self.epsilon})
        return config
