"""How images become model input: the one preprocessing contract of ``fsl``.

Every path that feeds pixels to a model (the ``tf.data`` pipelines of the
trainers, ``fsl embed``, ``FacePipeline`` and the face commands, the
SavedModel export) goes through the functions of this module, so the same
file gives the same embedding everywhere:

1. ``read_image``: decode a file with Pillow to ``uint8 [H, W, C]``;
   16-bit files are scaled by ``1 / 257`` (65535 -> 255).
2. ``to_channels``: grey (ITU-R 601-2 luma, bit for bit Pillow's
   ``convert("L")`` on ``uint8``) or RGB.
3. ``resize``: optional central crop, then antialiased bilinear resizing
   (TensorFlow's ``tf.image.resize``, also inside exported SavedModels), to
   ``float32`` in the input's value range (``0..255``).
4. ``standardize``: ``"fixed"`` (FaceNet's ``(x - 127.5) / 128``),
   ``"prewhiten"`` (per image ``(x - mean) / max(std, 1 / sqrt(n))``),
   ``"unit"`` (``x / 255``) or ``None``, on numpy arrays, ``tf.Tensor``
   (pipelines and exports) and Keras tensors (``fsl.layers.Standardize``).

``Preprocessing`` bundles the settings of one model; a run records it in
``config.json`` (``to_config`` / ``from_config``) and serving reads it back
with ``fsl.runs.RunDir.preprocessing()``.

Examples:

>>> import numpy as np
>>> prep = Preprocessing(image_size=(2, 2), channels=1, standardize="unit")
>>> pixels = np.full((4, 4, 3), 255, np.uint8)
>>> prep.model_input(pixels).shape, round(float(prep.model_input(pixels).max()), 4)
((2, 2, 1), 1.0)
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from fsl._checks import PathLike, check_choice, check_real

#: ``standardize`` values (``None`` leaves the pixels in ``0..255``).
STANDARDIZE_MODES = ("fixed", "prewhiten", "unit")
#: FaceNet's fixed standardisation: ``(x - FIXED_CENTER) / FIXED_SCALE``.
FIXED_CENTER, FIXED_SCALE = 127.5, 128.0
#: ``"unit"``: ``x / UNIT_SCALE``.
UNIT_SCALE = 255.0
#: The resizing method every path uses (recorded in ``config.json``).
RESIZE_METHOD = "bilinear-antialias"
#: How a face is cut out of a photo before the steps below: ``"none"`` (the
#: whole photo is the face, e.g. ORL or LFW crops), ``"crop"`` (the detected
#: box grown by ``margin`` pixels, FaceNet's crop), ``"template"`` (the
#: five detected keypoints mapped onto a template) or ``"dlib-chip"`` (the
#: five keypoints mapped onto dlib's face chip, for ``fsl.pretrained``'s
#: dlib ResNet). See ``fsl.faces``.
FACE_ALIGNMENTS = ("none", "crop", "template", "dlib-chip")



# === Checks ===


def check_standardize(standardize: Any) -> str | None:
    """One of ``STANDARDIZE_MODES`` or ``None``."""
    return check_choice("standardize", standardize, (*STANDARDIZE_MODES, None))


def check_channels(channels: Any) -> int:
    """1 (grey) or 3 (RGB)."""
    if isinstance(channels, bool) or channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB). Received: channels={channels!r}")
    return int(channels)


def check_image_size(image_size: Any) -> tuple[int, int] | None:
    """``(height, width)`` of positive ints (one int: a square), or ``None``."""
    if image_size is None:
        return None
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    try:
        height, width = (int(s) for s in image_size)
    except (TypeError, ValueError):
        raise ValueError(
            f"image_size must be (height, width) or None. Received: image_size={image_size!r}"
        ) from None
    if height < 1 or width < 1:
        raise ValueError(f"image_size must be positive. Received: image_size={image_size!r}")
    return height, width


# === Decoding and channels ===


def read_image(path: PathLike, channels: int = 1) -> np.ndarray:
    """Decode one image file with Pillow, at its own size.

    Args:
        path: jpg, png, pgm (8 or 16 bit), bmp, ... file.
        channels: 1 (grey) or 3 (RGB).

    Returns:
        uint8 array ``[height, width, channels]``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: it is empty, truncated or not an image (naming it).
    """
    from PIL import Image, UnidentifiedImageError

    channels = check_channels(channels)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Image file not found. Received: path={str(path)!r}")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                # 16-bit grey: 0..65535 -> 0..255, as Pillow does for 16-bit RGB.
                array = np.asarray(img, dtype=np.float64)
                array = np.clip(np.round(array / 257.0), 0, 255).astype(np.uint8)[..., None]
            elif img.mode == "L":
                array = np.asarray(img, dtype=np.uint8)[..., None]
            else:
                array = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"Could not read an image from file {str(path)!r}: {error}") from error
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"Empty image in file {str(path)!r}")
    return to_channels(array, channels)


def to_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """Pixels ``[H, W]`` / ``[H, W, 1]`` / ``[H, W, 3]`` with ``channels`` channels.

    Grey from RGB is ITU-R 601-2 luma: on ``uint8`` Pillow's own integer
    formula (``convert("L")``, bit for bit), on floats
    ``0.299 R + 0.587 G + 0.114 B``. Grey to RGB repeats the channel.

    Args:
        pixels: numpy array, ``uint8`` or float, batched (``[N, H, W, C]``)
            or not.
        channels: 1 or 3.

    Returns:
        The array with ``channels`` channels, in its own dtype.
    """
    channels = check_channels(channels)
    pixels = np.asarray(pixels)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.ndim not in (3, 4) or pixels.shape[-1] not in (1, 3):
        raise ValueError(
            "pixels must be [H, W], [H, W, 1 or 3] or [N, H, W, 1 or 3]. "
            f"Received: pixels.shape={pixels.shape}"
        )
    if pixels.shape[-1] == channels:
        return pixels
    if channels == 3:
        return np.repeat(pixels, 3, axis=-1)
    if pixels.dtype == np.uint8:
        rgb = pixels.astype(np.uint32)
        grey = (rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16
        return grey.astype(np.uint8)[..., None]
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return (pixels.astype(np.float32) @ weights)[..., None]


# === Resizing ===


def resize(images, image_size=None, center_crop: float = 1.0):
    """Central crop (fraction of each side kept), then antialiased bilinear resize.

    The one resizing of ``fsl``: ``tf.image.resize(..., "bilinear",
    antialias=True)`` on float32, for numpy arrays (the result is numpy) and
    ``tf.Tensor`` (in ``tf.data`` and exported graphs; the result is a
    tensor). Nothing is resized when the size already matches.

    Args:
        images: ``[H, W, C]`` or ``[N, H, W, C]``, any numeric dtype.
        image_size: ``(height, width)``, or ``None`` to keep the size.
        center_crop: fraction in ``(0, 1]`` of height and width kept around
            the centre first (e.g. 0.6 on 250 x 250 LFW images).

    Returns:
        float32 images in the input's value range.
    """
    import tensorflow as tf

    as_numpy = not tf.is_tensor(images)
    x = tf.cast(tf.convert_to_tensor(images), tf.float32)
    if center_crop != 1.0:
        x = tf.image.central_crop(x, check_real("center_crop", center_crop, 0.0, low_open=True))
    if image_size is not None:
        size = check_image_size(image_size)
        static = tuple(x.shape[-3:-1])
        if static != size:
            x = tf.image.resize(x, size, method="bilinear", antialias=True)
    return x.numpy() if as_numpy else x


# === Standardisation ===


def _numpy_stats(x, axes):
    return np.mean(x, axis=axes, keepdims=True), np.std(x, axis=axes, keepdims=True)


def _tf_stats(x, axes):
    import tensorflow as tf

    return (tf.reduce_mean(x, axis=axes, keepdims=True),
            tf.math.reduce_std(x, axis=axes, keepdims=True))


def _keras_stats(x, axes):
    from keras import ops

    mean = ops.mean(x, axis=axes, keepdims=True)
    return mean, ops.sqrt(ops.mean(ops.square(x - mean), axis=axes, keepdims=True))


def _standardize_with(x, mode, stats: Callable, maximum: Callable, floor: Callable,
                      axes=(-3, -2, -1)):
    """The formulas, once; ``stats``/``maximum`` are the array library's and
    ``floor()`` gives prewhiten's ``1 / sqrt(n)`` (a number, or a tensor when
    ``n`` is known only when the graph runs)."""
    if mode == "fixed":
        return (x - FIXED_CENTER) / FIXED_SCALE
    if mode == "unit":
        return x / UNIT_SCALE
    # prewhiten: statistics over each image's values (H, W and C by default).
    mean, std = stats(x, axes)
    return (x - mean) / maximum(std, floor())


def _static_floor(dims) -> Callable | None:
    """``1 / sqrt(prod(dims))`` as a number when every dim is known, else ``None``."""
    if any(dim is None for dim in dims):
        return None
    return lambda: 1.0 / math.sqrt(int(np.prod(dims)))


def standardize(images, mode: str | None):
    """Standardise pixel values in ``0..255`` (``STANDARDIZE_MODES``).

    * ``"fixed"``: ``(x - 127.5) / 128``, about ``[-1, 1]``;
    * ``"prewhiten"``: per image, ``(x - mean) / max(std, 1 / sqrt(n))``
      with ``n`` the number of values of that image (a constant image maps
      to zeros);
    * ``"unit"``: ``x / 255``;
    * ``None``: unchanged (cast to float32).

    Args:
        images: ``[H, W, C]`` or ``[N, H, W, C]``: a numpy array (the result
            is numpy float32) or a ``tf.Tensor`` (the result is a tensor).
        mode: one of the names above.

    Returns:
        float32 images of the same shape.
    """
    mode = check_standardize(mode)
    try:
        import tensorflow as tf

        is_tensor = tf.is_tensor(images)
    except ImportError:  # pragma: no cover - tensorflow is a dependency
        is_tensor = False
    if is_tensor:
        x = tf.cast(images, tf.float32)
        if mode is None:
            return x
        floor = _static_floor(x.shape[-3:]) or (lambda: 1.0 / tf.sqrt(
            tf.cast(tf.reduce_prod(tf.shape(x)[-3:]), tf.float32)))
        return _standardize_with(x, mode, _tf_stats, tf.maximum, floor)
    x = np.asarray(images, dtype=np.float32)
    if mode is None:
        return x
    return _standardize_with(x, mode, _numpy_stats, np.maximum,
                             _static_floor(x.shape[-3:])).astype(np.float32)


def standardize_tensor(x, mode: str):
    """``standardize`` on a Keras tensor of any backend (``keras.ops``), for
    ``fsl.layers.Standardize``; ``x`` is ``[N, ...]`` with static item size
    or not."""
    from keras import ops

    mode = check_choice("mode", mode, STANDARDIZE_MODES)
    floor = _static_floor(x.shape[1:]) or (lambda: 1.0 / ops.sqrt(
        ops.cast(ops.prod(ops.shape(x)[1:]), x.dtype)))
    # Per example, over all of its values (a [B, D] batch too).
    return _standardize_with(x, mode, _keras_stats, ops.maximum, floor,
                             axes=tuple(range(1, len(x.shape))))


# === The contract of one model ===


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How one model's input images are prepared: size, channels, standardisation.

    Args:
        image_size: ``(height, width)`` of the model input (one int: square).
        channels: 1 (grey) or 3 (RGB).
        standardize: ``STANDARDIZE_MODES`` or ``None`` (the model takes raw
            ``0..255`` pixels, e.g. it has a ``Standardize`` layer).
        center_crop: fraction of each side kept around the centre before
            resizing.
        align: how faces were cut out of photos for this model
            (``FACE_ALIGNMENTS``); serving does the same by default
            (``fsl.faces.FacePipeline.from_run``).
        margin: pixels added around the detected box for ``align="crop"``.

    Raises:
        ValueError: any field out of range, naming the value.
    """

    image_size: tuple[int, int]
    channels: int = 1
    standardize: str | None = None
    center_crop: float = 1.0
    align: str = "none"
    margin: float = 32.0

    def __post_init__(self):
        size = check_image_size(self.image_size)
        if size is None:
            raise ValueError("image_size must be (height, width). Received: image_size=None")
        object.__setattr__(self, "image_size", size)
        object.__setattr__(self, "channels", check_channels(self.channels))
        check_standardize(self.standardize)
        crop = check_real("center_crop", self.center_crop, 0.0, low_open=True)
        if crop > 1:
            raise ValueError(f"center_crop must be in (0, 1]. Received: center_crop={crop!r}")
        object.__setattr__(self, "center_crop", crop)
        check_choice("align", self.align, FACE_ALIGNMENTS)
        object.__setattr__(self, "margin", check_real("margin", self.margin, 0.0))

    def describe(self) -> str:
        """The face preparation in words, for messages."""
        faces = {"none": "whole photos (no face detection)",
                 "crop": f"detected boxes grown by {self.margin:g} px",
                 "template": "faces aligned on the 5-point template",
                 "dlib-chip": "faces aligned as dlib's face chips"}[self.align]
        return f"{faces}, {self.image_size[0]}x{self.image_size[1]}, {self.channels} channel(s)"

    # === Config ===

    def to_config(self) -> dict[str, Any]:
        """The plain dict a run records in ``config.json``."""
        return {
            "image_size": list(self.image_size),
            "channels": self.channels,
            "standardize": self.standardize,
            "center_crop": self.center_crop,
            "resize": RESIZE_METHOD,
            "align": self.align,
            "margin": self.margin,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Preprocessing:
        """The inverse of ``to_config`` (older runs record fewer keys)."""
        if not isinstance(config, Mapping) or "image_size" not in config:
            raise ValueError(
                "A preprocessing config needs at least image_size. "
                f"Received: config={config!r}"
            )
        resize_method = config.get("resize", RESIZE_METHOD)
        if resize_method != RESIZE_METHOD:
            raise ValueError(
                f"Unknown resize method (fsl resizes with {RESIZE_METHOD!r}). "
                f"Received: resize={resize_method!r}"
            )
        return cls(
            image_size=tuple(config["image_size"]),
            channels=int(config.get("channels", 1)),
            standardize=config.get("standardize"),
            center_crop=float(config.get("center_crop", 1.0)),
            # Runs from before the alignment was recorded trained on whole photos.
            align=config.get("align", "none"),
            margin=float(config.get("margin", 32.0)),
        )

    # === Pixels ===

    def load(self, path: PathLike) -> np.ndarray:
        """One file as raw model-size pixels, float32 ``[H, W, C]`` in ``0..255``."""
        return self.prepare(read_image(path, self.channels))

    def prepare(self, pixels) -> np.ndarray:
        """Pixels of any size (``[H, W, C]`` or a batch; uint8 or float
        ``0..255``; grey or RGB) as raw model-size float32 pixels."""
        return resize(to_channels(pixels, self.channels), self.image_size, self.center_crop)

    def standardize_pixels(self, images):
        """``standardize(images, self.standardize)``."""
        return standardize(images, self.standardize)

    def model_input(self, pixels) -> np.ndarray:
        """``standardize_pixels(prepare(pixels))``: what the model is fed."""
        return self.standardize_pixels(self.prepare(pixels))

    def load_batch(self, paths: Sequence[PathLike]) -> np.ndarray:
        """Several files as raw model-size pixels ``[N, H, W, C]``."""
        return np.stack([self.load(p) for p in paths]) if paths else np.zeros(
            (0, *self.image_size, self.channels), np.float32)


__all__ = [
    "FACE_ALIGNMENTS",
    "FIXED_CENTER",
    "FIXED_SCALE",
    "Preprocessing",
    "RESIZE_METHOD",
    "STANDARDIZE_MODES",
    "UNIT_SCALE",
    "check_channels",
    "check_image_size",
    "check_standardize",
    "read_image",
    "resize",
    "standardize",
    "standardize_tensor",
    "to_channels",
]
