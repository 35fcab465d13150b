"""The pieces every export's graph is made of: argument checks, the input
signatures, raw pixels to the model's input, the model in inference mode,
cohort statistics."""

from __future__ import annotations

from typing import Any

import keras

from fsl import distances
from fsl import preprocessing as preprocessing_lib
from fsl._checks import check_bool, check_choice
from fsl.models import sublayers

#: Preprocessing modes accepted by the exporters (``None``: none).
PREPROCESSING_MODES = preprocessing_lib.STANDARDIZE_MODES

#: The two serving signatures of every export, with their input dtype.
SIGNATURE_DTYPES = {"serving_default": "float32", "serve_uint8": "uint8"}


def _require_tensorflow_backend(function: str):
    from fsl.backend import require_tensorflow

    require_tensorflow(f"fsl.export.{function} writes a TensorFlow SavedModel and")
    import tensorflow as tf

    return tf


def _check_preprocessing(preprocessing: str | None) -> str | None:
    return check_choice("preprocessing", preprocessing, (*PREPROCESSING_MODES, None))


def _check_image_model(model: Any, preprocessing: str | None, argname: str = "model"):
    """Validate a Keras model with one ``[N, H, W, C]`` input; return (H, W, C)."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"{argname} must be a keras.Model. Received: {argname} of type "
                        f"{type(model).__name__}")
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs or len(inputs) != 1:
        raise ValueError(
            f"{argname} must be a functional or sequential keras.Model with exactly "
            f"one image input. Received: {argname}={model.name!r} with "
            f"{len(inputs) if inputs else 0} inputs"
        )
    shape = tuple(inputs[0].shape)
    if len(shape) != 4 or shape[-1] is None:
        raise ValueError(f"{argname} must take images of shape [N, H, W, C] with a known C. "
                         f"Received: input shape {shape}")
    if preprocessing is not None:
        from fsl.layers import Standardize

        standardizing = sublayers(model, Standardize)
        if standardizing:
            layer = standardizing[0]
            raise ValueError(
                f"{argname} already standardises its input (layer "
                f"{layer.name!r}, mode={layer.mode!r}); pass preprocessing=None "
                f"to avoid standardising twice. Received: "
                f"preprocessing={preprocessing!r}"
            )
    return shape[1:]


def _input_specs(tf, names, hwc, resize: bool):
    h, w, c = hwc
    shape = [None, None, None, c] if resize else [None, h, w, c]
    return {
        signature: [tf.TensorSpec(shape, getattr(tf, dtype), name=n) for n in names]
        for signature, dtype in SIGNATURE_DTYPES.items()
    }


def _images_to_model_input(tf, images, hwc, resize, standardize, name):
    """Check shape, cast to float32, resize, standardise: raw pixels -> model input,
    with ``fsl.preprocessing``'s resizing and formulas (the same as every other path)."""
    h, w, c = hwc
    expected = [None, None, None, c] if resize else [None, h, w, c]
    images = tf.ensure_shape(images, expected, name=f"check_{name}_shape")
    x = tf.cast(images, tf.float32)
    if resize:
        x = preprocessing_lib.resize(x, (h, w))
    return preprocessing_lib.standardize(x, standardize)


def _model_fn(model):
    import tensorflow as tf

    def call(x):
        # Batch norm's kernels fail on an empty batch: the model then sees one
        # blank image, and none of its outputs is kept.
        n = tf.shape(x)[0]
        blank = tf.zeros(tf.concat([[1], tf.shape(x)[1:]], axis=0), x.dtype)
        out = model(tf.cond(n > 0, lambda: x, lambda: blank), training=False)
        return tf.nest.map_structure(lambda t: t[:n], out)

    return call


def _embedder(tf, model, hwc, resize, standardize, normalize: bool = True):
    """``embed(images, name)``: raw pixels -> the model's float32 embeddings,
    L2-normalised when ``normalize``; ``name`` names the input in errors."""
    call = _model_fn(model)

    def embed(images, name):
        x = _images_to_model_input(tf, images, hwc, resize, standardize, name)
        embeddings = tf.cast(call(x), tf.float32)
        return distances.l2_normalize(embeddings, axis=-1) if normalize else embeddings

    return embed


def _check_embedding_output(model, argname: str = "model") -> int | None:
    """``model`` has one ``[N, D]`` output; returns ``D``."""
    if len(model.outputs) != 1 or len(model.outputs[0].shape) != 2:
        raise ValueError(
            f"{argname} must have one [N, D] output. Received: output shape(s) "
            f"{[tuple(o.shape) for o in model.outputs]}"
        )
    return model.outputs[0].shape[-1]


def _check_inputs(function: str, model, preprocessing, resize, argname: str = "model"):
    """The checks every exporter starts with: the backend, the preprocessing,
    an image model, ``resize``; returns ``(tf, preprocessing, (H, W, C), resize)``."""
    tf = _require_tensorflow_backend(function)
    preprocessing = _check_preprocessing(preprocessing)
    hwc = _check_image_model(model, preprocessing, argname)
    return tf, preprocessing, hwc, _check_resize(resize, hwc, argname)


def _check_resize(resize: bool, hwc, argname: str = "model") -> bool:
    check_bool("resize", resize)
    if resize and (hwc[0] is None or hwc[1] is None):
        raise ValueError(
            f"resize=True needs a {argname} with a fixed input height and width. "
            f"Received: input shape (None, {hwc[0]}, {hwc[1]}, {hwc[2]})"
        )
    return resize


def _check_cohort(cohort: Any, dim: int | None, normalize: bool):
    """A ``[C >= 2, dim]`` finite float32 cohort, L2-normalised if ``normalize``."""
    import numpy as np

    from fsl.evaluation.verification import check_cohort as check

    array, _ = check(cohort, None if dim is None else int(dim))
    if normalize:
        array = array / np.maximum(np.linalg.norm(array, axis=1, keepdims=True), 1e-12)
    return array.astype("float32")


def _cohort_statistics(tf, embeddings, cohort, metric: str):
    """Mean and std (floored) of each row's ``metric`` distances to the cohort,
    in float32: the graph version of ``fsl.evaluation.cohort_statistics``."""
    d = tf.cast(distances.cross_distances(embeddings, cohort, metric), tf.float32)
    mean = tf.reduce_mean(d, axis=-1)
    std = tf.sqrt(tf.reduce_mean(tf.square(d - mean[:, None]), axis=-1))
    return mean, tf.maximum(std, 1e-12)
