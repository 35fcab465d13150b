"""What every ``fsl`` model shares: the output dtype and encoder checks."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

#: dtype of every model's output layers (embedding, distance, heads). Under
#: a mixed-precision policy (``keras.config.set_dtype_policy("mixed_float16")``
#: or ``"mixed_bfloat16"`` while a model is built) the body computes in 16
#: bits and these layers in float32, as the Keras mixed-precision guide
#: recommends: embeddings, distances and probabilities stay precise and the
#: losses see float32.
OUTPUT_DTYPE = "float32"


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


def sublayers(model: keras.layers.Layer, kind: type | tuple[type, ...] = keras.layers.Layer
              ) -> list:
    """Every layer inside ``model``, nested models included, depth first.

    Args:
        model: a Keras model (or any layer with ``layers``).
        kind: keep only instances of this class (or tuple of classes).

    Returns:
        The layers, each after the model that holds it; ``model`` itself is
        not included.

    Examples:

    >>> import keras
    >>> inner = keras.Sequential([keras.Input((2,)), keras.layers.BatchNormalization()])
    >>> outer = keras.Sequential([keras.Input((2,)), inner, keras.layers.Dense(1)])
    >>> [type(layer).__name__ for layer in sublayers(outer)]
    ['Sequential', 'BatchNormalization', 'Dense']
    >>> len(sublayers(outer, keras.layers.BatchNormalization))
    1
    """
    found = []
    for layer in getattr(model, "layers", []):
        if isinstance(layer, kind):
            found.append(layer)
        found += sublayers(layer, kind)
    return found


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
