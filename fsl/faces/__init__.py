"""Faces: MTCNN detection, 5-point alignment and FaceNet-style crops.

* ``detect(image)`` / ``largest_face(image)``: faces as ``Face`` (box
  ``(x, y, w, h)``, score, ``[5, 2]`` landmarks in ``KEYPOINT_NAMES`` order;
  "left" is the image's left, as in MTFL).
* ``align_face(image, keypoints, size)``: similarity warp onto the ArcFace
  5-point template (``REFERENCE_5POINTS``, ``template(size)``).
* ``crop_face(image, box, margin, size)``: box plus margin, clipped, resized.
* ``similarity_transform(src, dst)``: Umeyama least-squares similarity.
* ``FacePipeline``: detect, align, embed; then ``verify``, ``enroll`` +
  ``identify`` (with an "unknown" answer) and ``cluster``.

Importing this package is cheap: ``mtcnn`` (and TensorFlow) load only when a
detector is first built.
"""

from __future__ import annotations

from fsl.faces.align import (
    REFERENCE_5POINTS,
    REFERENCE_SIZE,
    align_face,
    crop_face,
    similarity_transform,
    template,
)
from fsl.faces.crops import face_crops, face_folder_crops
from fsl.faces.detect import (
    KEYPOINT_NAMES,
    Face,
    detect,
    get_detector,
    largest_face,
    load_image,
)
from fsl.faces.pipeline import (
    FacePipeline,
    Identification,
    NoFaceError,
    Verification,
    cluster_embeddings,
    list_images,
    save_cluster_grids,
)

__all__ = [
    "Face",
    "FacePipeline",
    "Identification",
    "NoFaceError",
    "Verification",
    "cluster_embeddings",
    "face_crops",
    "face_folder_crops",
    "list_images",
    "save_cluster_grids",
    "KEYPOINT_NAMES",
    "REFERENCE_5POINTS",
    "REFERENCE_SIZE",
    "align_face",
    "crop_face",
    "detect",
    "get_detector",
    "largest_face",
    "load_image",
    "similarity_transform",
    "template",
]
