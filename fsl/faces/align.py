"""Face alignment: similarity transforms onto a 5-point template, and crops.

Two ways to cut a face out of a photo:

* ``align_face(image, keypoints, size)``: warp the photo so that the five
  landmarks (left eye, right eye, nose, mouth left, mouth right; "left" is
  the image's left, as in MTFL and ``fsl.faces.detect``) land as close as
  possible, in the least-squares sense, to a canonical template
  (``REFERENCE_5POINTS``, the ArcFace/InsightFace 112 x 112 template). Only a
  similarity (rotation, uniform scale, translation) is used, so faces are not
  sheared or mirrored.
* ``crop_face(image, box, margin, size)``: FaceNet's crop, the detection box
  grown by ``margin`` pixels (``margin / 2`` per side), clipped to the image
  and resized to ``size x size``.

Coordinates are ``(x, y)`` in pixels, with the centre of pixel ``image[i, j]``
at ``(x, y) = (j, i)`` (the convention of OpenCV's ``warpAffine``, in which
the ArcFace template is defined, and of MTCNN's landmarks).

Everything here is numpy / scipy / PIL; no OpenCV.

Reference:
    S. Umeyama, "Least-squares estimation of transformation parameters between
    two point patterns", IEEE TPAMI 13(4), 1991.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "REFERENCE_5POINTS",
    "REFERENCE_SIZE",
    "DLIB_CHIP_SIZE",
    "DLIB_CHIP_TEMPLATE",
    "dlib_chip_template",
    "template",
    "similarity_transform",
    "align_face",
    "crop_face",
]

# Side, in pixels, of the square image REFERENCE_5POINTS is defined in.
REFERENCE_SIZE = 112

# ArcFace / InsightFace 5-point template, (x, y) in a 112 x 112 image.
REFERENCE_5POINTS = np.array(
    [
        [38.2946, 51.6963],  # left eye (image left)
        [73.5318, 51.5014],  # right eye
        [56.0252, 71.7366],  # nose tip
        [41.5493, 92.3655],  # mouth, left corner
        [70.7299, 92.2041],  # mouth, right corner
    ],
    dtype=np.float64,
)
REFERENCE_5POINTS.setflags(write=False)

#: Side of dlib's face chips (``get_face_chip_details(shape, 150, 0.25)``).
DLIB_CHIP_SIZE = 150

# Where MTCNN's five points land, on average, in dlib's 150 x 150 face chip
# (padding 0.25) cut by dlib's own 5-point shape predictor; fitted by
# tools/fit_dlib_template.py on 384 ORL photos. On people the fit did not
# see, the points lie 3.7 chip pixels from it on average and the chip
# samples the photo 3.5 chip pixels from where dlib's chip does.
DLIB_CHIP_TEMPLATE = np.array(
    [
        [46.6372, 45.4956],  # left eye (image left)
        [101.2253, 45.1776],  # right eye
        [73.5287, 75.2695],  # nose tip
        [50.045, 101.0046],  # mouth, left corner
        [97.7041, 100.9749],  # mouth, right corner
    ],
    dtype=np.float64,
)
DLIB_CHIP_TEMPLATE.setflags(write=False)

Size = int | Sequence[int]


def _parse_size(size: Size, name: str = "size") -> tuple[int, int]:
    """``int`` or ``(height, width)`` -> ``(height, width)``, validated."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        height = width = int(size)
    elif (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size)
    ):
        height, width = int(size[0]), int(size[1])
    else:
        raise ValueError(
            f"{name} must be a positive int or a (height, width) pair of ints. "
            f"Received: {name}={size!r}"
        )
    if height < 1 or width < 1:
        raise ValueError(f"{name} must be positive. Received: {name}={size!r}")
    return height, width


def template(size: Size = REFERENCE_SIZE) -> np.ndarray:
    """The 5-point template for an output image of the given size.

    The 112 x 112 ArcFace template is scaled by ``height / 112`` and centred
    horizontally, so ``template(112)`` is ``REFERENCE_5POINTS``,
    ``template(160)`` is it scaled by 160 / 112, and ``template((112, 96))``
    is the classic 96 x 112 SphereFace template (x shifted by -8).

    Args:
        size: output side in pixels, or ``(height, width)``.

    Returns:
        float64 array ``[5, 2]`` of ``(x, y)`` positions, in the order left eye,
        right eye, nose, mouth left, mouth right.

    Raises:
        ValueError: if ``size`` is not a positive int or pair of ints.

    Examples:

    >>> template(224)[0]
    array([ 76.5892, 103.3926])
    """
    height, width = _parse_size(size)
    scale = height / REFERENCE_SIZE
    points = REFERENCE_5POINTS * scale
    points[:, 0] += (width - REFERENCE_SIZE * scale) / 2.0
    return points


def dlib_chip_template(size: int = DLIB_CHIP_SIZE) -> np.ndarray:
    """``DLIB_CHIP_TEMPLATE`` for a square chip of another side.

    Scaled about pixel edges (a point at the centre of pixel ``i`` of the
    150-pixel chip goes to the same relative place of the ``size`` one).

    Args:
        size: chip side in pixels.

    Returns:
        float64 ``[5, 2]`` template, ``(x, y)`` in the order of ``template``.

    Raises:
        ValueError: if ``size`` is not a positive int.

    Examples:

    >>> dlib_chip_template(150)[2].round(2)
    array([73.53, 75.27])
    """
    height, width = _parse_size(size)
    if height != width:
        raise ValueError(f"dlib chips are square. Received: size={size!r}")
    return (DLIB_CHIP_TEMPLATE + 0.5) * (height / DLIB_CHIP_SIZE) - 0.5


def _as_points(points: Any, name: str) -> np.ndarray:
    if hasattr(points, "keypoints"):  # a fsl.faces.Face
        points = points.keypoints
    try:
        array = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{name} must be an array of (x, y) points of shape [N, 2]. "
            f"Received: {name}={points!r}"
        ) from error
    if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] < 2:
        raise ValueError(
            f"{name} must have shape [N, 2] with N >= 2. "
            f"Received: {name} with shape {array.shape}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite. Received: {name}={array.tolist()}")
    return array


def similarity_transform(src_points: Any, dst_points: Any) -> np.ndarray:
    """Least-squares similarity transform mapping ``src_points`` to ``dst_points``.

    Umeyama's closed form: the rotation ``R`` (no reflection), uniform scale
    ``c`` and translation ``t`` minimising ``sum_i ||dst_i - (c R src_i + t)||^2``.

    Args:
        src_points: ``[N, 2]`` array of ``(x, y)`` points, ``N >= 2``.
        dst_points: ``[N, 2]`` array of the matching target points.

    Returns:
        float64 ``[2, 3]`` matrix ``M = [c R | t]``: ``dst ~ M @ [x, y, 1]``.

    Raises:
        ValueError: if the arrays are not ``[N, 2]`` with the same ``N >= 2``,
            hold NaN/inf, or either set of points is degenerate (all points
            coincident), where no unique similarity exists.

    Examples:

    >>> src = [[0, 0], [1, 0], [0, 1]]
    >>> dst = [[1, 1], [1, 3], [-1, 1]]  # rotate 90 degrees, scale 2, shift (1, 1)
    >>> similarity_transform(src, dst).round(6)
    array([[ 0., -2.,  1.],
           [ 2.,  0.,  1.]])
    """
    src = _as_points(src_points, "src_points")
    dst = _as_points(dst_points, "dst_points")
    if src.shape != dst.shape:
        raise ValueError(
            "src_points and dst_points must have the same shape. Received: "
            f"src_points.shape={src.shape}, dst_points.shape={dst.shape}"
        )
    n = src.shape[0]
    src_mean = src.mean(axis=0)
    dst_mean = dst.mean(axis=0)
    src_centered = src - src_mean
    dst_centered = dst - dst_mean
    src_var = np.sum(src_centered**2) / n
    dst_var = np.sum(dst_centered**2) / n
    # Relative tolerance: points within ~1e-6 of their spread count as one.
    src_scale = max(1.0, float(np.abs(src).max()))
    dst_scale = max(1.0, float(np.abs(dst).max()))
    if src_var <= (1e-9 * src_scale) ** 2:
        raise ValueError(
            "src_points are degenerate (all points coincide); no similarity "
            f"transform is defined. Received: src_points={src.tolist()}"
        )
    if dst_var <= (1e-9 * dst_scale) ** 2:
        raise ValueError(
            "dst_points are degenerate (all points coincide); the transform "
            f"would not be invertible. Received: dst_points={dst.tolist()}"
        )

    covariance = dst_centered.T @ src_centered / n
    u, singular, vt = np.linalg.svd(covariance)
    signs = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        signs[-1] = -1.0  # the best orthogonal map would be a reflection
    rotation = u @ np.diag(signs) @ vt
    scale = float(np.sum(singular * signs)) / src_var
    translation = dst_mean - scale * rotation @ src_mean
    return np.concatenate([scale * rotation, translation[:, None]], axis=1)


def _as_image(image: Any) -> np.ndarray:
    if hasattr(image, "mode") and hasattr(image, "size"):  # PIL image
        image = np.asarray(image)
    if not isinstance(image, np.ndarray):
        raise TypeError(
            "image must be a numpy array [H, W] or [H, W, C] (or a PIL image). "
            f"Received: image of type {type(image).__name__}"
        )
    if image.ndim not in (2, 3) or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(
            "image must have shape [H, W] or [H, W, C] with H, W >= 1. "
            f"Received: image with shape {image.shape}"
        )
    if not (np.issubdtype(image.dtype, np.number) or image.dtype == bool):
        raise ValueError(f"image must be numeric. Received: image.dtype={image.dtype}")
    return image


def _cast_like(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Cast float results back to ``dtype``, rounding and clipping integers."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    if np.issubdtype(dtype, np.bool_):
        return values >= 0.5
    return values.astype(dtype)


def align_face(
    image: Any,
    keypoints: Any,
    size: Size = REFERENCE_SIZE,
    reference: Any = None,
) -> np.ndarray:
    """Warp ``image`` so its five landmarks match the template.

    The similarity transform from ``keypoints`` to the template (Umeyama least
    squares) is inverted and each output pixel is sampled bilinearly from the
    input; outside the input the image is taken as 0 (so borders fade to 0
    over one pixel instead of being cut). A face more than twice the output's
    size is first reduced by an integer factor (the mean of each block), so
    that a large photo does not alias into the output.

    Args:
        image: ``[H, W]`` or ``[H, W, C]`` numpy array (any numeric dtype, any
            number of channels) or PIL image.
        keypoints: ``[5, 2]`` array of ``(x, y)`` landmarks in the order left
            eye, right eye, nose, mouth left, mouth right (image left), e.g.
            ``Face.keypoints``; a ``Face`` itself is accepted.
        size: output side in pixels, or ``(height, width)``.
        reference: target points ``[N, 2]`` in the output image; defaults to
            ``template(size)``. Must have as many points as ``keypoints``.

    Returns:
        Array ``[size, size, C]`` (``[size, size]`` for a 2-D input) with the
        dtype of ``image``.

    Raises:
        TypeError: if ``image`` is not an array or PIL image.
        ValueError: on a bad image shape, bad ``size``, keypoints that are
            not ``[N, 2]`` / do not match ``reference``, or degenerate points.

    Examples:

    >>> face = np.zeros((112, 112, 3), np.uint8)
    >>> align_face(face, REFERENCE_5POINTS, size=160).shape
    (160, 160, 3)
    """
    from scipy import ndimage

    image = _as_image(image)
    height, width = _parse_size(size)
    points = _as_points(keypoints, "keypoints")
    target = template((height, width)) if reference is None else _as_points(reference, "reference")
    if target.shape != points.shape:
        raise ValueError(
            "keypoints and reference must have the same shape. Received: "
            f"keypoints.shape={points.shape}, reference.shape={target.shape}"
        )
    forward = np.vstack([similarity_transform(points, target), [0.0, 0.0, 1.0]])
    # Shrinking by more than 2: average factor x factor blocks first (as dlib's
    # image pyramid does before cutting a chip), so that bilinear sampling
    # does not alias a large face into the small output.
    factor = int(np.floor(1.0 / np.sqrt(abs(np.linalg.det(forward[:2, :2])))))
    if factor >= 2:
        image = _reduce(image, factor)
        points = (points + 0.5) / factor - 0.5
        forward = np.vstack([similarity_transform(points, target), [0.0, 0.0, 1.0]])
    inverse = np.linalg.inv(forward)  # output (x, y, 1) -> input (x, y, 1)
    # scipy works in (row, col) = (y, x) index order.
    swap = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    inverse_rc = swap @ inverse @ swap

    values = image.astype(np.float32 if image.dtype.itemsize <= 4 else np.float64)
    squeeze = values.ndim == 2
    if squeeze:
        values = values[:, :, None]
    channels = values.shape[2]
    out = np.stack(
        [
            ndimage.affine_transform(
                np.ascontiguousarray(values[:, :, c]),
                inverse_rc[:2, :2],
                offset=inverse_rc[:2, 2],
                output_shape=(height, width),
                output=values.dtype,
                order=1,
                mode="grid-constant",
                cval=0.0,
            )
            for c in range(channels)
        ],
        axis=-1,
    )
    if squeeze:
        out = out[:, :, 0]
    return _cast_like(out, image.dtype)


def _reduce(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean of each ``factor x factor`` block (a partial last block: of the
    pixels it has), in the image's dtype."""
    values = image.astype(np.float64)
    squeeze = values.ndim == 2
    if squeeze:
        values = values[:, :, None]
    height, width = values.shape[:2]
    rows, cols = -(-height // factor), -(-width // factor)
    padded = np.zeros((rows * factor, cols * factor, values.shape[2]))
    padded[:height, :width] = values
    counts = np.zeros((rows * factor, cols * factor, 1))
    counts[:height, :width] = 1.0
    sums = padded.reshape(rows, factor, cols, factor, -1).sum(axis=(1, 3))
    out = sums / counts.reshape(rows, factor, cols, factor, 1).sum(axis=(1, 3))
    return _cast_like(out[:, :, 0] if squeeze else out, image.dtype)


def _resize(values: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of ``[h, w, C]`` float32 values with PIL, per channel."""
    from PIL import Image

    channels = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(values[:, :, c], dtype=np.float32)).resize(
                (width, height), Image.Resampling.BILINEAR
            )
        )
        for c in range(values.shape[2])
    ]
    return np.stack(channels, axis=-1)


def crop_face(image: Any, box: Any, margin: float = 32, size: Size = 160) -> np.ndarray:
    """FaceNet's crop: the box grown by ``margin`` pixels, clipped, resized.

    As in FaceNet's ``align_dataset_mtcnn``: the box is grown by
    ``margin / 2`` pixels on every side, clipped to the image, cut out and
    resized bilinearly to ``size`` (the aspect ratio is not kept).

    Args:
        image: ``[H, W]`` or ``[H, W, C]`` numpy array or PIL image.
        box: ``(x, y, w, h)`` in pixels, e.g. ``Face.box``; a ``Face`` itself
            is accepted.
        margin: total pixels added to the width and to the height, ``>= 0``.
        size: output side in pixels, or ``(height, width)``.

    Returns:
        Array ``[size, size, C]`` (``[size, size]`` for a 2-D input) with the
        dtype of ``image``.

    Raises:
        ValueError: on a bad image, a negative margin, a box that is not four
            finite numbers with ``w, h > 0``, or a box outside the image.

    Examples:

    >>> image = np.zeros((100, 100, 3), np.uint8)
    >>> crop_face(image, (20, 30, 40, 40), margin=10, size=64).shape
    (64, 64, 3)
    """
    image = _as_image(image)
    height, width = _parse_size(size)
    if not isinstance(margin, (int, float, np.number)) or not np.isfinite(margin) or margin < 0:
        raise ValueError(f"margin must be a finite number >= 0. Received: margin={margin!r}")
    if hasattr(box, "box"):  # a fsl.faces.Face
        box = box.box
    try:
        values = np.asarray(box, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as error:
        raise ValueError(f"box must be (x, y, w, h). Received: box={box!r}") from error
    if values.shape != (4,) or not np.all(np.isfinite(values)) or values[2] <= 0 or values[3] <= 0:
        raise ValueError(
            f"box must be four finite numbers (x, y, w, h) with w, h > 0. Received: box={box!r}"
        )
    x, y, w, h = values
    image_h, image_w = image.shape[:2]
    x1 = int(np.floor(max(x - margin / 2.0, 0.0)))
    y1 = int(np.floor(max(y - margin / 2.0, 0.0)))
    x2 = int(np.ceil(min(x + w + margin / 2.0, image_w)))
    y2 = int(np.ceil(min(y + h + margin / 2.0, image_h)))
    if x2 <= x1 or y2 <= y1:
        raise ValueError(
            f"box lies outside the image of shape {image.shape}. Received: box={box!r}, "
            f"margin={margin!r}"
        )
    crop = image[y1:y2, x1:x2]
    squeeze = crop.ndim == 2
    floats = crop.astype(np.float32)
    if squeeze:
        floats = floats[:, :, None]
    if floats.shape[:2] == (height, width):
        out = floats
    else:
        out = _resize(floats, height, width)
    if squeeze:
        out = out[:, :, 0]
    return _cast_like(out, image.dtype)
