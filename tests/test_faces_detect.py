"""fsl.faces.detect: MTCNN on blank images, ORL faces and a two-face composite.

The real detector is built once (``fsl.faces.get_detector`` caches it) and
run on a handful of small images. The conversion of MTCNN's raw rows (box
format, landmark layout, sorting, thresholds, upscaling) is checked exactly
with a scripted detector whose output we choose.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from PIL import Image

from fsl.faces import KEYPOINT_NAMES, Face, detect, get_detector, largest_face, load_image

ORL_SAMPLES = [("s01", "01"), ("s05", "01"), ("s12", "03"), ("s23", "01"), ("s37", "05")]


@pytest.fixture(scope="module")
def detector():
    return get_detector()


def _orl(orl_dir, person, shot):
    path = orl_dir / person / f"{shot}.png"
    if not path.exists():
        pytest.fail(f"ORL image missing: {path}")
    return path


def _assert_plausible(face: Face, image_shape):
    x, y, w, h = face.box
    assert w > 0 and h > 0
    assert x >= 0 and y >= 0 and x + w <= image_shape[1] and y + h <= image_shape[0]
    kp = face.keypoints
    assert kp.shape == (5, 2) and np.all(np.isfinite(kp))
    # Landmarks inside the box (1 px slack for rounding at clipped borders).
    assert np.all(kp[:, 0] >= x - 1) and np.all(kp[:, 0] <= x + w + 1), (face.box, kp)
    assert np.all(kp[:, 1] >= y - 1) and np.all(kp[:, 1] <= y + h + 1), (face.box, kp)
    left_eye, right_eye, nose, mouth_left, mouth_right = kp
    assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]  # image left
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
    assert 0.0 <= face.score <= 1.0


# --- the real detector ----------------------------------------------------------


@pytest.mark.parametrize("shape", [(120, 100, 3), (64, 64)])
def test_blank_image_has_no_face(detector, shape):
    assert detect(np.full(shape, 128, np.uint8), detector=detector) == []
    assert largest_face(np.zeros(shape, np.uint8), detector=detector) is None


def test_tiny_image_has_no_face(detector):
    assert detect(np.full((8, 10, 3), 200, np.uint8), detector=detector) == []


def test_orl_faces_are_found_with_plausible_landmarks(orl_dir, detector):
    found = 0
    for person, shot in ORL_SAMPLES:
        path = _orl(orl_dir, person, shot)
        faces = detect(path, detector=detector)
        if len(faces) == 1:
            found += 1
            _assert_plausible(faces[0], (112, 92))
            assert faces[0].score >= 0.9
    assert found >= 4, f"MTCNN found exactly one face in only {found}/5 ORL photos"


def test_path_grey_and_rgb_inputs_agree(orl_dir, detector):
    path = _orl(orl_dir, "s01", "01")
    grey = np.array(Image.open(path).convert("L"))
    rgb = np.stack([grey] * 3, axis=-1)
    results = [detect(x, detector=detector) for x in (str(path), path, grey, rgb, grey[:, :, None])]
    assert all(len(r) == 1 for r in results)
    for r in results[1:]:
        np.testing.assert_allclose(r[0].box, results[0][0].box)
        np.testing.assert_allclose(r[0].keypoints, results[0][0].keypoints)
    # The caller's array is not modified.
    np.testing.assert_array_equal(rgb[:, :, 0], grey)


def test_upscale_maps_back_to_input_pixels(orl_dir, detector):
    path = _orl(orl_dir, "s12", "03")
    native = largest_face(path, detector=detector)
    doubled = largest_face(path, detector=detector, upscale=2.0)
    assert native is not None and doubled is not None
    # Same face, in the same (input) coordinates, up to detector jitter.
    np.testing.assert_allclose(doubled.keypoints, native.keypoints, atol=4.0)
    np.testing.assert_allclose(doubled.box, native.box, atol=8.0)


def test_composite_of_two_faces_largest_first(orl_dir, detector):
    small = Image.open(_orl(orl_dir, "s01", "01")).convert("L")  # 92 x 112
    big = Image.open(_orl(orl_dir, "s23", "01")).convert("L")
    big = big.resize((round(92 * 1.7), round(112 * 1.7)), Image.Resampling.BILINEAR)
    canvas = Image.new("L", (big.width + small.width + 20, big.height), color=0)
    canvas.paste(small, (0, (big.height - small.height) // 2))
    canvas.paste(big, (small.width + 20, 0))
    image = np.asarray(canvas)

    faces = detect(image, detector=detector)

    assert len(faces) == 2, [f.to_dict() for f in faces]
    assert faces[0].area > faces[1].area
    assert faces[0].box[0] >= small.width  # the big face is the right-hand one
    assert faces[1].box[0] + faces[1].box[2] <= small.width + 1
    for face in faces:
        _assert_plausible(face, image.shape)
    assert largest_face(image, detector=detector).box == faces[0].box


# --- conversion of MTCNN rows, with a scripted detector -----------------------


class _ScriptedDetector:
    """Returns fixed MTCNN numpy rows; records the image and kwargs it got."""

    def __init__(self, rows):
        self.rows = np.asarray(rows, dtype=np.float64)
        if self.rows.size == 0:
            self.rows = self.rows.reshape(0, 16)
        self.calls = []

    def detect_faces(self, image, **kwargs):
        self.calls.append((image, kwargs))
        return self.rows.copy()


def _row(x1, y1, x2, y2, score, xs, ys):
    return [0, x1, y1, x2, y2, score, *xs, *ys]


def test_rows_are_converted_sorted_and_filtered():
    rows = [
        _row(10, 10, 30, 40, 0.95, [12, 25, 18, 14, 26], [20, 20, 28, 35, 35]),  # 20 x 30
        _row(50, 5, 90, 60, 0.99, [60, 80, 70, 62, 82], [25, 24, 40, 50, 50]),  # 40 x 55
        _row(0, 0, 80, 80, 0.50, [1, 2, 3, 4, 5], [6, 7, 8, 9, 10]),  # low score
    ]
    scripted = _ScriptedDetector(rows)
    faces = detect(np.zeros((100, 100, 3), np.uint8), min_confidence=0.9, detector=scripted)

    assert [f.box for f in faces] == [(50.0, 5.0, 40.0, 55.0), (10.0, 10.0, 20.0, 30.0)]
    assert [f.score for f in faces] == [pytest.approx(0.99), pytest.approx(0.95)]
    np.testing.assert_allclose(faces[1].keypoints, [[12, 20], [25, 20], [18, 28], [14, 35], [26, 35]])
    assert faces[0].keypoints_dict()["right_eye"] == (80.0, 24.0)
    assert list(faces[0].keypoints_dict()) == list(KEYPOINT_NAMES)
    assert faces[0].to_dict()["box"] == [50.0, 5.0, 40.0, 55.0]
    image, kwargs = scripted.calls[0]
    assert image.shape == (100, 100, 3) and image.dtype == np.uint8
    assert kwargs["output_type"] == "numpy" and kwargs["box_format"] == "xyxy"

    everything = detect(np.zeros((100, 100, 3), np.uint8), min_confidence=0.0, detector=scripted)
    assert [f.area for f in everything] == [6400.0, 2200.0, 600.0]
    assert detect(np.zeros((100, 100), np.uint8), detector=_ScriptedDetector([])) == []


def test_upscale_divides_coordinates_back():
    rows = [_row(20, 40, 60, 100, 0.99, [30, 50, 40, 32, 48], [60, 60, 75, 90, 90])]
    scripted = _ScriptedDetector(rows)
    faces = detect(np.zeros((50, 40), np.uint8), detector=scripted, upscale=2.0, min_face_size=16)
    image, kwargs = scripted.calls[0]
    assert image.shape == (100, 80, 3) and kwargs["min_face_size"] == 16
    assert faces[0].box == (10.0, 20.0, 20.0, 30.0)
    np.testing.assert_allclose(faces[0].keypoints[0], [15.0, 30.0])


def test_detector_without_landmarks_raises():
    boxes_only = np.array([[0, 10, 10, 30, 40, 0.99]])  # stages="face_detection_only"
    with pytest.raises(ValueError, match=r"Received: rows with shape \(1, 6\)"):
        detect(np.zeros((50, 50, 3), np.uint8), detector=_ScriptedDetector(boxes_only))


# --- bad input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "image, error, match",
    [
        (np.zeros((20, 20, 4), np.uint8), ValueError, r"Received: image with shape \(20, 20, 4\)"),
        (np.zeros((2, 20, 20, 3), np.uint8), ValueError, r"Received: image with shape \(2, 20, 20, 3\)"),
        (np.zeros((20, 20, 3), np.float32), ValueError, "image.dtype=float32"),
        (np.zeros((0, 20, 3), np.uint8), ValueError, "empty"),
        ([[1, 2], [3, 4]], TypeError, "list"),
    ],
)
def test_bad_arrays_raise(image, error, match):
    with pytest.raises(error, match=match):
        detect(image, detector=_ScriptedDetector([]))


def test_missing_and_unreadable_files_raise(tmp_path):
    missing = tmp_path / "nobody.png"
    with pytest.raises(FileNotFoundError, match="nobody.png"):
        detect(missing, detector=_ScriptedDetector([]))
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"this is not a png")
    with pytest.raises(ValueError, match="garbage.png"):
        detect(str(garbage), detector=_ScriptedDetector([]))


def test_rgba_file_is_converted(tmp_path):
    path = tmp_path / "rgba.png"
    Image.new("RGBA", (30, 20), (10, 20, 30, 128)).save(path)
    rgb = load_image(path)
    assert rgb.shape == (20, 30, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[0, 0], [10, 20, 30])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"min_confidence": 1.5}, "min_confidence"),
        ({"min_confidence": -0.1}, "min_confidence"),
        ({"min_face_size": 5}, "min_face_size"),
        ({"upscale": 0}, "upscale"),
        ({"upscale": float("nan")}, "upscale"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        detect(np.zeros((50, 50, 3), np.uint8), detector=_ScriptedDetector([]), **kwargs)


def test_other_backends_get_a_clear_error(monkeypatch):
    # The mtcnn package converts its outputs with TensorFlow's .numpy(): on
    # another backend, one clear error before any model runs (cached or not).
    from fsl.backend import BackendError

    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(BackendError, match=r"KERAS_BACKEND=tensorflow.*--no-detect.*"
                                           r"Received: backend='jax'"):
        get_detector()
    with pytest.raises(BackendError, match="MTCNN"):
        detect(np.zeros((40, 40, 3), "uint8"))
