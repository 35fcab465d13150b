"""Face detection with MTCNN: boxes, scores and five landmarks.

``detect(image)`` runs the three-stage MTCNN cascade (P-Net, R-Net, O-Net) of
the ``mtcnn`` package and returns every face as a ``Face``: its box
``(x, y, w, h)`` in pixels, its O-Net score and five landmarks ``[5, 2]`` in
``KEYPOINT_NAMES`` order: left eye, right eye, nose, mouth left, mouth right.
"Left" is the image's left (the smaller x), as in MTFL and in the ``mtcnn``
package: for a frontal face, the "left eye" is the subject's right eye.

The pretrained weights ship inside the ``mtcnn`` wheel
(``mtcnn/assets/weights/*.lz4``); they are loaded by absolute path from
there, so detection works offline. Building the detector takes seconds, so
one instance is built on first use and shared (``get_detector()``).

Reference:
    K. Zhang, Z. Zhang, Z. Li, Y. Qiao, "Joint Face Detection and Alignment
    Using Multitask Cascaded Convolutional Networks", IEEE SPL 23(10), 2016.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import threading
from typing import Any

import numpy as np

__all__ = ["Face", "KEYPOINT_NAMES", "detect", "largest_face", "get_detector", "load_image"]

logger = logging.getLogger(__name__)

KEYPOINT_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

ImageLike = np.ndarray | str | os.PathLike

_DETECTOR = None
_DETECTOR_LOCK = threading.Lock()


@dataclasses.dataclass(eq=False)
class Face:
    """One detected face.

    Attributes:
        box: ``(x, y, w, h)`` in pixels of the input image: top-left corner,
            width and height, clipped to the image.
        score: detector confidence in ``[0, 1]``.
        keypoints: float array ``[5, 2]`` of ``(x, y)`` landmarks in
            ``KEYPOINT_NAMES`` order (left = image left). Not clipped: a
            landmark may fall slightly outside the image.
    """

    box: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray

    @property
    def area(self) -> float:
        """Box area ``w * h`` in square pixels."""
        return float(self.box[2] * self.box[3])

    def keypoints_dict(self) -> dict[str, tuple[float, float]]:
        """Landmarks by name, e.g. ``{"left_eye": (x, y), ...}``."""
        return {name: (float(x), float(y)) for name, (x, y) in zip(KEYPOINT_NAMES, self.keypoints)}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict: ``box``, ``score``, ``keypoints``."""
        return {
            "box": [float(v) for v in self.box],
            "score": float(self.score),
            "keypoints": {k: list(v) for k, v in self.keypoints_dict().items()},
        }


def _weights_path(name: str) -> str:
    import importlib.resources

    path = importlib.resources.files("mtcnn.assets.weights") / name
    if not path.is_file():
        raise FileNotFoundError(
            f"MTCNN weights {name!r} not found in the installed mtcnn package at {path}; "
            "reinstall mtcnn>=1.0"
        )
    return str(path)


def get_detector():
    """The shared ``mtcnn.MTCNN`` detector, built on first call (thread-safe).

    The P-Net, R-Net and O-Net weights are read from the ``mtcnn`` package's
    own assets by absolute path (never from the working directory, never
    downloaded).

    Returns:
        An ``mtcnn.MTCNN`` instance (CPU).

    Raises:
        fsl.backend.BackendError: on a Keras backend other than TensorFlow.
    """
    from fsl.backend import require_tensorflow

    # The mtcnn package converts its models' outputs with TensorFlow's .numpy().
    require_tensorflow("MTCNN face detection (the mtcnn package)",
                       "; or pass already cropped faces without detection "
                       "(FacePipeline(detect_faces=False), --no-detect)")
    global _DETECTOR
    if _DETECTOR is None:
        with _DETECTOR_LOCK:
            if _DETECTOR is None:
                from mtcnn import MTCNN
                from mtcnn.stages import StageONet, StagePNet, StageRNet

                stages = [
                    StagePNet(weights=_weights_path("pnet.lz4")),
                    StageRNet(weights=_weights_path("rnet.lz4")),
                    StageONet(weights=_weights_path("onet.lz4")),
                ]
                _DETECTOR = MTCNN(stages=stages)
                logger.info("Built the MTCNN detector from the mtcnn package's bundled weights")
    return _DETECTOR


def load_image(image: Any) -> np.ndarray:
    """Read / convert an image to an ``[H, W, 3]`` uint8 RGB array.

    Args:
        image: an ``[H, W, 3]`` uint8 RGB array, an ``[H, W]`` or
            ``[H, W, 1]`` uint8 grey array (replicated to 3 channels), a PIL
            image, or a path (``str`` / ``os.PathLike``) to any image file PIL
            reads (grey, palette and RGBA files are converted to RGB).

    Returns:
        A C-contiguous ``[H, W, 3]`` uint8 array (a copy: the caller's array
        is never modified).

    Raises:
        FileNotFoundError: if a path does not exist.
        ValueError: if a file is not a readable image, or an array has the
            wrong rank, channel count (e.g. 4: drop alpha first), dtype (not
            uint8) or is empty.
        TypeError: for any other type.
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, (str, os.PathLike)):
        path = pathlib.Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"Image file not found. Received: image={str(image)!r}")
        try:
            with Image.open(path) as pil:
                return np.array(pil.convert("RGB"), dtype=np.uint8)
        except (UnidentifiedImageError, OSError, SyntaxError) as error:
            raise ValueError(
                f"Could not read an image from file {str(image)!r}: {error}"
            ) from error
    if isinstance(image, Image.Image):
        return np.array(image.convert("RGB"), dtype=np.uint8)
    if not isinstance(image, np.ndarray):
        raise TypeError(
            "image must be a numpy array, a PIL image or a path. "
            f"Received: image of type {type(image).__name__}"
        )
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            "image must be [H, W, 3] RGB or [H, W] grey. "
            f"Received: image with shape {image.shape}"
        )
    if image.dtype != np.uint8:
        raise ValueError(
            "image must be uint8 with values in [0, 255]. "
            f"Received: image.dtype={image.dtype}"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image is empty. Received: image with shape {image.shape}")
    return np.array(image, dtype=np.uint8, order="C", copy=True)


def _validate(min_confidence: float, min_face_size: int, upscale: float) -> None:
    if not isinstance(min_confidence, (int, float, np.number)) or not 0.0 <= min_confidence <= 1.0:
        raise ValueError(
            f"min_confidence must be in [0, 1]. Received: min_confidence={min_confidence!r}"
        )
    if (
        not isinstance(min_face_size, (int, np.integer))
        or isinstance(min_face_size, bool)
        or min_face_size < 12
    ):
        raise ValueError(
            "min_face_size must be an int >= 12 (the P-Net window). "
            f"Received: min_face_size={min_face_size!r}"
        )
    if not isinstance(upscale, (int, float, np.number)) or not np.isfinite(upscale) or upscale <= 0:
        raise ValueError(f"upscale must be a finite number > 0. Received: upscale={upscale!r}")


def detect(
    image: Any,
    min_confidence: float = 0.9,
    detector: Any = None,
    *,
    min_face_size: int = 20,
    upscale: float = 1.0,
) -> list[Face]:
    """Detect every face in an image with MTCNN, largest box first.

    Small images: MTCNN finds faces down to ``min_face_size`` pixels (20 by
    default), so a face filling a 92 x 112 ORL photo is found as is. For
    smaller faces lower ``min_face_size`` (slower) or pass ``upscale > 1``:
    the image is enlarged bilinearly before detection and the results are
    mapped back to the input's pixel coordinates.

    Args:
        image: ``[H, W, 3]`` uint8 RGB array, ``[H, W]`` uint8 grey array, PIL
            image, or path to an image file (see ``load_image``).
        min_confidence: keep faces whose score is ``>= min_confidence``, in
            ``[0, 1]``.
        detector: an ``mtcnn.MTCNN`` (anything with its ``detect_faces``); by
            default the shared one from ``get_detector()``.
        min_face_size: smallest face side searched, in pixels of the
            (upscaled) image, ``>= 12``.
        upscale: resize factor applied before detection, ``> 0``.

    Returns:
        A list of ``Face`` sorted by box area, largest first; ``[]`` when no
        face is found.

    Raises:
        FileNotFoundError: if ``image`` is a path that does not exist.
        ValueError: on an unreadable file, a badly shaped or typed array (e.g.
            4 channels, rank 4, float), or bad arguments.
        TypeError: if ``image`` has an unsupported type.

    Examples:

    >>> faces = detect("photo.jpg")  # doctest: +SKIP
    >>> faces[0].box, faces[0].keypoints_dict()["left_eye"]  # doctest: +SKIP
    """
    _validate(min_confidence, min_face_size, upscale)
    rgb = load_image(image)
    height, width = rgb.shape[:2]
    if upscale != 1.0:
        from PIL import Image

        new_size = (max(1, round(width * upscale)), max(1, round(height * upscale)))
        rgb = np.asarray(Image.fromarray(rgb).resize(new_size, Image.Resampling.BILINEAR))
        scale_x, scale_y = new_size[0] / width, new_size[1] / height
    else:
        scale_x = scale_y = 1.0
    if min(rgb.shape[:2]) < 12:
        logger.info("Image of shape %s is smaller than the 12 px P-Net window: no face", rgb.shape)
        return []

    detector = get_detector() if detector is None else detector
    rows = detector.detect_faces(
        rgb,
        output_type="numpy",
        box_format="xyxy",
        min_face_size=int(min_face_size),
    )
    rows = np.asarray(rows, dtype=np.float64)
    if rows.size == 0:
        rows = rows.reshape(0, 16)
    if rows.ndim != 2 or rows.shape[1] != 16:
        raise ValueError(
            "detector must return MTCNN rows [N, 16] (image id, box, score, 5 "
            "landmarks): build it with stages='face_and_landmarks_detection'. "
            f"Received: rows with shape {rows.shape}"
        )

    faces = []
    for row in rows:
        score = float(row[5])
        if score < min_confidence:
            continue
        x1, x2 = row[1] / scale_x, row[3] / scale_x
        y1, y2 = row[2] / scale_y, row[4] / scale_y
        keypoints = np.stack([row[6:11] / scale_x, row[11:16] / scale_y], axis=-1)
        faces.append(
            Face(
                box=(float(x1), float(y1), float(x2 - x1), float(y2 - y1)),
                score=score,
                keypoints=keypoints.astype(np.float32),
            )
        )
    faces.sort(key=lambda face: face.area, reverse=True)
    return faces


def largest_face(image: Any, min_confidence: float = 0.9, detector: Any = None, **kwargs) -> Face | None:
    """The face with the largest box, or ``None`` when there is none.

    Args:
        image: as for ``detect``.
        min_confidence: as for ``detect``.
        detector: as for ``detect``.
        **kwargs: ``min_face_size`` and ``upscale``, as for ``detect``.

    Returns:
        A ``Face`` or ``None``.

    Raises:
        The errors of ``detect``.
    """
    faces = detect(image, min_confidence=min_confidence, detector=detector, **kwargs)
    return faces[0] if faces else None
