"""Face crops: the one way a photo becomes model input, at training and serving.

``face_crops`` detects the faces of a photo (MTCNN) and cuts each out as a
run's ``fsl.preprocessing.Preprocessing`` says (``align="crop"``: the box
grown by ``margin``; ``"template"``: the 5-point similarity transform), then
brings it to the model's size and channels. ``FacePipeline`` serves through
it, and a face run trained on uncropped photos (``train_facenet(align=...)``)
is trained on the crops ``face_folder_crops`` makes with it: the same pixels
at both ends. Those crops are computed once per face folder and preparation
and cached (``FSL_CACHE_DIR``, default ``~/.cache/fsl``), keyed by every
file's path, size and modification time and by the preparation.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib
from typing import Any

import numpy as np

from fsl._checks import PathLike
from fsl.faces.align import align_face, crop_face, dlib_chip_template
from fsl.faces.detect import Face, detect, largest_face, load_image
from fsl.folders import atomic_save
from fsl.preprocessing import Preprocessing

logger = logging.getLogger(__name__)

#: Bumped when the crops a preparation gives change (old cache entries are ignored).
CROPS_VERSION = 2


def face_crops(
    pixels: Any,
    prep: Preprocessing,
    align: str,
    margin: float = 32.0,
    detect_faces: bool = True,
    min_confidence: float = 0.9,
    faces: list[Face] | None = None,
) -> list[tuple[Face | None, np.ndarray]]:
    """Every face of a photo as ``(Face or None, pixels)``, largest first.

    Args:
        pixels: the photo (anything ``fsl.faces.load_image`` reads).
        prep: the model's preparation (size, channels; its ``align`` is not
            read here: serving may ask for another).
        align: ``"template"``, ``"dlib-chip"``, ``"crop"`` or ``"none"`` (the
            detected box as is).
        margin: pixels around the box for ``align="crop"``.
        detect_faces: ``False``: the whole photo is the one face (``None``).
        min_confidence: the detector's score threshold.
        faces: faces already detected in ``pixels`` (skips detection).

    Returns:
        A list of ``(face, float32 [H, W, C] in 0..255 at the model's size)``.
    """
    pixels = load_image(pixels)
    if not detect_faces:
        return [(None, prep.prepare(pixels))]
    found = detect(pixels, min_confidence=min_confidence) if faces is None else faces
    side = max(prep.image_size)
    crops = []
    for face in found:
        if align == "template":
            crop = align_face(pixels, face.keypoints, size=side)
        elif align == "dlib-chip":
            crop = align_face(pixels, face.keypoints, size=side,
                              reference=dlib_chip_template(side))
        elif align == "crop":
            crop = crop_face(pixels, face.box, margin=margin, size=side)
        else:
            x, y, w, h = (int(round(v)) for v in face.box)
            crop = pixels[y : y + h, x : x + w]
        crops.append((face, prep.prepare(np.asarray(crop))))
    return crops


def cache_dir() -> pathlib.Path:
    """Where face crops are cached: ``$FSL_CACHE_DIR/face-crops``, default
    ``~/.cache/fsl/face-crops``."""
    root = os.environ.get("FSL_CACHE_DIR") or pathlib.Path.home() / ".cache" / "fsl"
    return pathlib.Path(root) / "face-crops"


def _key(paths, prep: Preprocessing, min_confidence: float) -> str:
    files = []
    for path in paths:
        stat = pathlib.Path(path).stat()
        files.append([os.path.abspath(path), stat.st_size, stat.st_mtime_ns])
    recipe = {"version": CROPS_VERSION, "files": files, "min_confidence": min_confidence,
              "preparation": {k: v for k, v in prep.to_config().items() if k != "standardize"}}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:32]


def face_folder_crops(
    paths: list[PathLike],
    labels: np.ndarray,
    prep: Preprocessing,
    min_confidence: float = 0.9,
    cache: PathLike | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The largest face of each photo, cut out as ``prep`` says, cached.

    Args:
        paths: the photos (e.g. a ``FaceFolder``'s ``paths``).
        labels: their identity labels.
        prep: a ``Preprocessing`` with ``align`` ``"crop"``, ``"template"`` or
            ``"dlib-chip"``.
        min_confidence: the detector's score threshold.
        cache: the cache folder; default ``cache_dir()``.

    Returns:
        ``(pixels float32 [N, H, W, C] 0..255, labels [N], kept paths)``: a
        photo with no face or that cannot be read is skipped with a warning
        naming it.

    Raises:
        ValueError: ``prep.align`` is ``"none"``, or no photo has a face.
    """
    if prep.align == "none":
        raise ValueError("face_folder_crops cuts faces out of photos: prep.align must be "
                         "'crop', 'template' or 'dlib-chip'. Received: align='none'")
    labels = np.asarray(labels)
    folder = pathlib.Path(cache) if cache is not None else cache_dir()
    entry = folder / f"{_key(paths, prep, min_confidence)}.npz"
    if entry.is_file():
        with np.load(entry) as stored:
            kept = stored["kept"]
            pixels = stored["pixels"]
        logger.info("Reusing %d cached face crops (%s) from %s", len(kept), prep.describe(), entry)
    else:
        logger.info("Detecting and cutting out the faces of %d photos (%s); cached in %s",
                    len(paths), prep.describe(), entry)
        crops, kept = [], []
        for index, path in enumerate(paths):
            try:
                pixels = load_image(path)
            except (OSError, ValueError) as error:
                logger.warning("Skipping %s: %s", path, error)
                continue
            face = largest_face(pixels, min_confidence=min_confidence)
            if face is None:
                logger.warning("Skipping %s: no face found", path)
                continue
            crops.append(face_crops(pixels, prep, prep.align, prep.margin, faces=[face])[0][1])
            kept.append(index)
        if not crops:
            raise ValueError(f"No face found in any of the {len(paths)} photos")
        pixels, kept = np.stack(crops).astype(np.float32), np.asarray(kept, np.int64)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_save(entry, lambda tmp: np.savez(tmp, pixels=pixels, kept=kept))
    return pixels, labels[kept], [str(paths[i]) for i in kept]


__all__ = ["CROPS_VERSION", "cache_dir", "face_crops", "face_folder_crops"]
