"""A reader of dlib's serialization format, in Python and numpy (no dlib).

dlib saves a network (``dlib::serialize(net, out)``) as one recursive
stream: every layer wrapper writes its version, then the layers below it,
then its own details. So a file holds the versions of all layers from the
loss down to the input, then the input layer, then each layer's details
from the bottom up. This module reads that stream for the layers a
``dlib::loss_metric`` ResNet uses (``con``, ``affine`` or ``bn_con``,
``relu``, ``max_pool``, ``avg_pool``, ``add_prev``, ``fc``, tags and skips,
``input_rgb_image_sized``) and returns plain numpy arrays; the caller says
which layers it expects, and anything else is an error naming the byte
offset.

The encoding (``dlib/serialize.h``, ``dlib/cuda/tensor.h``):

* integers: a control byte (bit 7: negative; low 4 bits: byte count)
  followed by that many little-endian bytes;
* floats: ``mantissa * 2**exponent``, two such integers (a special
  exponent marks inf / -inf / NaN);
* strings: an integer length, then the bytes; bools: ASCII ``'1'``/``'0'``;
* tensors (version 2): ``num_samples, k, nr, nc`` then raw little-endian
  float32 values in NCHW order (version 1: dlib floats).

Reference:
    D. E. King, "Dlib-ml: A Machine Learning Toolkit", JMLR 10, 2009;
    http://dlib.net (``dlib/dnn/core.h``, ``layers.h``, ``input.h``,
    ``loss.h``).
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import numpy as np

from fsl._checks import PathLike

__all__ = ["DlibFormatError", "DlibReader", "DlibLayer", "read_network"]

# float_details' special exponents (dlib/float_details.h).
_IS_INF, _IS_NINF, _IS_NAN = 32000, 32001, 32002


class DlibFormatError(ValueError):
    """The bytes are not the dlib network the caller expects."""


@dataclasses.dataclass
class DlibLayer:
    """One layer of a dlib network, bottom (input) first.

    Attributes:
        kind: ``"input_rgb_image_sized"``, ``"con"``, ``"affine"``,
            ``"relu"``, ``"max_pool"``, ``"avg_pool"``, ``"add_prev"``,
            ``"fc"``, ``"tag"``, ``"skip"`` or ``"loss_metric"``.
        tag: the tag number of ``tag``/``skip``/``add_prev`` layers.
        params: numpy arrays and numbers read from the file (e.g. ``filters``
            ``[num_filters, k, nr, nc]`` and ``biases`` of a ``con``).
    """

    kind: str
    tag: int | None = None
    params: dict[str, Any] = dataclasses.field(default_factory=dict)


class DlibReader:
    """Sequential reader of dlib's primitive encodings from bytes.

    Args:
        data: the whole serialized file.
        name: how the source is named in errors.
    """

    def __init__(self, data: bytes, name: str = "<bytes>"):
        self.data = memoryview(data)
        self.pos = 0
        self.name = name

    def error(self, message: str) -> DlibFormatError:
        return DlibFormatError(f"{self.name}: {message} (at byte {self.pos} of {len(self.data)})")

    def _take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise self.error(f"unexpected end of file reading {n} bytes")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def int(self) -> int:
        """dlib's packed signed or unsigned integer."""
        control = self._take(1)[0]
        size = control & 0x0F
        if size == 0 or size > 8 or control & 0x70:
            self.pos -= 1
            raise self.error(f"bad integer control byte 0x{control:02x}")
        value = int.from_bytes(self._take(size), "little")
        return -value if control & 0x80 else value

    def float(self) -> float:
        """dlib's portable float: mantissa then exponent."""
        mantissa = self.int()
        exponent = self.int()
        if exponent == _IS_INF:
            return math.inf
        if exponent == _IS_NINF:
            return -math.inf
        if exponent == _IS_NAN:
            return math.nan
        return math.ldexp(float(mantissa), exponent)

    def bool(self) -> bool:
        value = bytes(self._take(1))
        if value not in (b"0", b"1"):
            self.pos -= 1
            raise self.error(f"expected a bool ('0' or '1'), found {value!r}")
        return value == b"1"

    def string(self) -> str:
        length = self.int()
        if length < 0 or length > 4096:
            raise self.error(f"implausible string length {length}")
        return bytes(self._take(length)).decode("latin-1")

    def tensor(self) -> np.ndarray:
        """A ``dlib::tensor`` as float32 ``[num_samples, k, nr, nc]``."""
        version = self.int()
        shape = tuple(self.int() for _ in range(4))
        if version not in (1, 2) or any(s < 0 for s in shape):
            raise self.error(f"bad tensor header: version {version}, shape {shape}")
        count = int(np.prod(shape))
        if version == 2:
            values = np.frombuffer(self._take(4 * count), dtype="<f4").astype(np.float32)
        else:
            values = np.array([self.float() for _ in range(count)], dtype=np.float32)
        return values.reshape(shape)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        version = self.int()
        if version != 1:
            raise self.error(f"bad alias_tensor version {version}")
        return tuple(self.int() for _ in range(4))

    def expect_string(self, *names: str) -> str:
        start = self.pos
        try:
            value = self.string()
        except DlibFormatError:
            value = None
        if value not in names:
            self.pos = start
            raise self.error(f"expected {' or '.join(map(repr, names))}, found {value!r}")
        return value


# === Layer details ===


def _alias_slice(params: np.ndarray, offset: int, shape: tuple[int, ...]) -> np.ndarray:
    count = int(np.prod(shape))
    return params.reshape(-1)[offset:offset + count].reshape(shape)


def _read_con(reader: DlibReader) -> dict[str, Any]:
    version = reader.expect_string("con_4", "con_5", "con_6")
    params = reader.tensor()
    num_filters = reader.int()
    nr, nc = reader.int(), reader.int()
    stride_y, stride_x = reader.int(), reader.int()
    padding_y, padding_x = reader.int(), reader.int()
    filters = reader.alias_tensor()
    reader.alias_tensor()  # biases: num_filters values after the filters
    for _ in range(4):  # learning-rate and weight-decay multipliers
        reader.float()
    use_bias = reader.bool() if version in ("con_5", "con_6") else True
    if version == "con_6" and reader.bool():
        raise reader.error("a con layer with a fused relu is not supported")
    filter_count = int(np.prod(filters))
    if filters[0] != num_filters or filters[2:] != (nr, nc) or params.size < filter_count:
        raise reader.error(f"con filters {filters} do not match {num_filters} x {nr} x {nc}")
    return {
        "filters": _alias_slice(params, 0, filters),
        "biases": (_alias_slice(params, filter_count, (num_filters,))
                   if use_bias and params.size >= filter_count + num_filters
                   else np.zeros(num_filters, np.float32)),
        "strides": (stride_y, stride_x),
        "padding": (padding_y, padding_x),
    }


def _read_affine(reader: DlibReader) -> dict[str, Any]:
    version = reader.expect_string("affine_", "affine_2", "bn_con2")
    params = reader.tensor()
    gamma = reader.alias_tensor()
    beta = reader.alias_tensor()
    if version == "bn_con2":
        reader.tensor()  # the last batch's means: unused
        reader.tensor()  # and inverse standard deviations
        running_means, running_variances = reader.tensor(), reader.tensor()
        reader.int()  # num_updates
        reader.int()  # running_stats_window_size
        for _ in range(4):
            reader.float()
        eps = reader.float()
        g = _alias_slice(params, 0, gamma).reshape(-1)
        b = _alias_slice(params, int(np.prod(gamma)), beta).reshape(-1)
        scale = g / np.sqrt(running_variances.reshape(-1) + eps)
        return {"gamma": scale.astype(np.float32),
                "beta": (b - running_means.reshape(-1) * scale).astype(np.float32)}
    mode = reader.int()
    if version == "affine_2" and reader.bool():
        raise reader.error("a disabled affine layer is not supported")
    if mode != 0:  # CONV_MODE (FC_MODE = 1): one gamma/beta per channel
        raise reader.error(f"affine layer in mode {mode} (only CONV_MODE = 0 is supported)")
    return {"gamma": _alias_slice(params, 0, gamma).reshape(-1),
            "beta": _alias_slice(params, int(np.prod(gamma)), beta).reshape(-1)}


def _read_pool(reader: DlibReader, name: str) -> dict[str, Any]:
    reader.expect_string(f"{name}_2")
    nr, nc = reader.int(), reader.int()
    stride_y, stride_x = reader.int(), reader.int()
    padding_y, padding_x = reader.int(), reader.int()
    return {"window": (nr, nc), "strides": (stride_y, stride_x), "padding": (padding_y, padding_x)}


def _read_relu(reader: DlibReader) -> dict[str, Any]:
    if reader.expect_string("relu_", "relu_2") == "relu_2" and reader.bool():
        raise reader.error("a disabled relu layer is not supported")
    return {}


def _read_fc(reader: DlibReader) -> dict[str, Any]:
    version = reader.expect_string("fc_2", "fc_3")
    num_outputs, num_inputs = reader.int(), reader.int()
    params = reader.tensor()
    weights = reader.alias_tensor()
    reader.alias_tensor()  # biases
    bias_mode = reader.int()
    if int(np.prod(weights)) != num_inputs * num_outputs:
        raise reader.error(f"fc weights {weights} do not match {num_inputs} x {num_outputs}")
    for _ in range(4):
        reader.float()
    if version == "fc_3":
        reader.bool()
    if bias_mode != 1:  # FC_NO_BIAS
        raise reader.error(f"fc layer with bias mode {bias_mode} (only fc_no_bias is supported)")
    # Row-major [num_inputs, num_outputs]: output = input @ weights.
    return {"weights": _alias_slice(params, 0, (num_inputs, num_outputs))}


_DETAILS = {
    "con": _read_con,
    "affine": _read_affine,
    "relu": _read_relu,
    "max_pool": lambda r: _read_pool(r, "max_pool"),
    "avg_pool": lambda r: _read_pool(r, "avg_pool"),
    "add_prev": lambda r: (r.expect_string("add_prev_"), {})[1],
    "fc": _read_fc,
}


def _skip_layer_state(reader: DlibReader, expansion_factor: bool) -> None:
    """The training state an ``add_layer`` writes after its details."""
    for _ in range(3):
        reader.bool()  # setup called, gradient stale, output disabled
    reader.tensor()  # x_grad
    reader.tensor()  # cached output
    reader.tensor()  # params_grad (grad_final for the layer above the input)
    if expansion_factor:  # version 3 of the add_layer over the input
        reader.int()


def read_network(path: PathLike, layers: list[tuple[str, int | None]]) -> list[DlibLayer]:
    """Read a ``loss_metric`` network whose layers are ``layers``.

    Args:
        path: the ``.dat`` file ``dlib::serialize`` wrote.
        layers: the expected layers from the input up, as ``(kind, tag)``
            pairs, e.g. ``[("con", None), ("affine", None), ..., ("fc", None)]``
            (the input and the loss are implied).

    Returns:
        ``[input, *layers, loss]`` as ``DlibLayer`` with the file's values.

    Raises:
        FileNotFoundError: no such file.
        DlibFormatError: the file is not that network (naming what was
            expected, what was found and where).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"dlib network file not found. Received: path={str(path)!r}")
    with open(path, "rb") as handle:
        reader = DlibReader(handle.read(), name=str(path))
    if reader.int() != 1:
        raise reader.error("not a dlib loss layer (version 1 expected)")
    loss_version = reader.expect_string("loss_metric_", "loss_metric_2")
    loss = DlibLayer("loss_metric", params={"margin": 0.1, "distance_threshold": 0.75})
    if loss_version == "loss_metric_2":
        loss.params = {"margin": reader.float(), "distance_threshold": reader.float()}

    # Versions, top (below the loss) to bottom.
    bottom_version = None
    for index, (kind, _) in enumerate(reversed(layers)):
        version = bottom_version = reader.int()
        bottom = index == len(layers) - 1
        allowed = {"tag": (1,), "skip": (1,)}.get(kind, (2, 3) if bottom else (1, 2))
        if version not in allowed:
            raise reader.error(f"layer {kind!r}: unexpected wrapper version {version}")
        if bottom and kind in ("tag", "skip"):
            raise reader.error("the lowest layer must be a computational layer")

    reader.expect_string("input_rgb_image_sized")
    mean = tuple(reader.float() for _ in range(3))
    size = (reader.int(), reader.int())
    result = [DlibLayer("input_rgb_image_sized", params={"mean_rgb": mean, "size": size})]

    # Details, bottom up; tags and skips write nothing after their version.
    for index, (kind, tag) in enumerate(layers):
        layer = DlibLayer(kind, tag=tag)
        if kind not in ("tag", "skip"):
            if kind not in _DETAILS:
                raise ValueError(f"Unsupported dlib layer kind {kind!r}")
            layer.params = _DETAILS[kind](reader)
            _skip_layer_state(reader, expansion_factor=index == 0 and bottom_version == 3)
        result.append(layer)
    result.append(loss)
    if reader.pos != len(reader.data):
        raise reader.error(f"{len(reader.data) - reader.pos} unread bytes after the network")
    return result
