"""fsl.faces.align: Umeyama similarity, the 5-point template, align and crop.

References: a linear least-squares solve for the similarity (its parameters
``a = c cos, b = c sin, tx, ty`` enter linearly), hand-derived templates, and
synthetic faces whose landmarks we place and then find again.
"""

from __future__ import annotations

import numpy as np
import pytest

from fsl.faces import (
    REFERENCE_5POINTS,
    align_face,
    crop_face,
    similarity_transform,
    template,
)


def _similarity(angle_deg: float, scale: float, tx: float, ty: float) -> np.ndarray:
    theta = np.deg2rad(angle_deg)
    c, s = scale * np.cos(theta), scale * np.sin(theta)
    return np.array([[c, -s, tx], [s, c, ty]])


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def _lstsq_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Brute-force reference: x' = a x - b y + tx, y' = b x + a y + ty."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst):
        rows.append([x, -y, 1.0, 0.0])
        rhs.append(u)
        rows.append([y, x, 0.0, 1.0])
        rhs.append(v)
    (a, b, tx, ty), *_ = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)
    return np.array([[a, -b, tx], [b, a, ty]])


# --- similarity_transform ----------------------------------------------------


@pytest.mark.parametrize(
    "angle, scale, tx, ty",
    [(20.0, 1.6, 30.0, -12.0), (-75.0, 0.4, 0.0, 5.5), (180.0, 1.0, -3.0, 7.0), (0.0, 2.0, 0.0, 0.0)],
)
def test_similarity_recovers_known_transform(angle, scale, tx, ty):
    matrix = _similarity(angle, scale, tx, ty)
    src = np.random.default_rng(0).uniform(-50, 150, size=(7, 2))
    recovered = similarity_transform(src, _apply(matrix, src))
    np.testing.assert_allclose(recovered, matrix, atol=1e-9)


def test_similarity_two_points_is_exact():
    src = np.array([[0.0, 0.0], [1.0, 0.0]])
    dst = np.array([[1.0, 1.0], [1.0, 3.0]])  # rotate +90 deg, scale 2, shift (1, 1)
    np.testing.assert_allclose(
        similarity_transform(src, dst), [[0.0, -2.0, 1.0], [2.0, 0.0, 1.0]], atol=1e-12
    )


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_similarity_matches_least_squares_reference_on_noisy_points(seed):
    rng = np.random.default_rng(seed)
    src = rng.uniform(0, 100, size=(5, 2))
    dst = _apply(_similarity(rng.uniform(-90, 90), rng.uniform(0.5, 2), 10, -4), src)
    dst = dst + rng.normal(scale=3.0, size=dst.shape)
    got = similarity_transform(src, dst)
    np.testing.assert_allclose(got, _lstsq_similarity(src, dst), atol=1e-8)
    # ... and is a true minimum: perturbing it increases the squared error.
    error = np.sum((_apply(got, src) - dst) ** 2)
    for _ in range(20):
        a, b = got[0, 0], got[1, 0]
        da, db, dx, dy = rng.normal(scale=1e-3, size=4)
        other = np.array([[a + da, -(b + db), got[0, 2] + dx], [b + db, a + da, got[1, 2] + dy]])
        assert np.sum((_apply(other, src) - dst) ** 2) > error


def test_similarity_never_reflects():
    src = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 2.0], [3.0, 5.0]])
    mirrored = src * np.array([-1.0, 1.0])  # a reflection fits exactly
    matrix = similarity_transform(src, mirrored)
    linear = matrix[:, :2]
    assert np.linalg.det(linear) > 0
    np.testing.assert_allclose(linear[0, 0], linear[1, 1], atol=1e-12)  # [[a, -b], [b, a]]
    np.testing.assert_allclose(linear[0, 1], -linear[1, 0], atol=1e-12)
    np.testing.assert_allclose(matrix, _lstsq_similarity(src, mirrored), atol=1e-9)


def test_similarity_coincident_points_raise():
    same = np.full((5, 2), 7.0)
    good = REFERENCE_5POINTS
    with pytest.raises(ValueError, match="src_points are degenerate"):
        similarity_transform(same, good)
    with pytest.raises(ValueError, match="dst_points are degenerate"):
        similarity_transform(good, same)


@pytest.mark.parametrize(
    "src, dst, match",
    [
        (np.zeros((5, 3)), np.zeros((5, 3)), r"shape \[N, 2\]"),
        (np.zeros((1, 2)), np.zeros((1, 2)), r"N >= 2"),
        (np.ones((5, 2)) * np.arange(5)[:, None], np.ones((4, 2)), "same shape"),
        ([[0, 0], [np.nan, 1]], [[0, 0], [1, 1]], "finite"),
        ("abc", [[0, 0], [1, 1]], "src_points"),
    ],
)
def test_similarity_bad_input_raises(src, dst, match):
    with pytest.raises(ValueError, match=match):
        similarity_transform(src, dst)


# --- template ------------------------------------------------------------------


def test_template_sizes():
    np.testing.assert_allclose(template(), REFERENCE_5POINTS)
    np.testing.assert_allclose(template(224), 2.0 * REFERENCE_5POINTS)
    np.testing.assert_allclose(template(160), REFERENCE_5POINTS * (160 / 112))
    # The 96 x 112 SphereFace template: same points, x shifted by -8.
    np.testing.assert_allclose(template((112, 96))[0], [30.2946, 51.6963])
    np.testing.assert_allclose(template((112, 96)), REFERENCE_5POINTS - [8.0, 0.0])
    # Image-left eye has the smaller x; eyes above nose above mouth.
    t = template(96)
    assert t[0, 0] < t[1, 0] and t[3, 0] < t[4, 0]
    assert t[:2, 1].max() < t[2, 1] < t[3:, 1].min()


@pytest.mark.parametrize("size", [0, -5, 1.5, (112,), (112, 0), "112", True])
def test_template_bad_size_raises(size):
    with pytest.raises(ValueError, match="size"):
        template(size)


def test_template_constant_is_read_only():
    with pytest.raises(ValueError):
        REFERENCE_5POINTS[0, 0] = 0.0
    t = template(112)
    t[0, 0] = 0.0  # a copy, free to modify
    assert REFERENCE_5POINTS[0, 0] == pytest.approx(38.2946)


# --- align_face ------------------------------------------------------------------


def _gaussian_blobs(height, width, centres, sigma):
    """One channel per centre, a Gaussian blob of std ``sigma`` at (x, y)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    channels = [
        np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2.0 * sigma**2)) for cx, cy in centres
    ]
    return np.stack(channels, axis=-1)


def _centroids(image):
    ys, xs = np.mgrid[0 : image.shape[0], 0 : image.shape[1]].astype(np.float64)
    out = []
    for c in range(image.shape[2]):
        w = image[:, :, c].astype(np.float64)
        out.append([np.sum(w * xs) / np.sum(w), np.sum(w * ys) / np.sum(w)])
    return np.array(out)


@pytest.mark.parametrize(
    "angle, scale, tx, ty, size",
    [(20.0, 1.6, 40.0, 25.0, 112), (-35.0, 0.8, 90.0, 10.0, 160), (160.0, 1.2, 190.0, 170.0, 96)],
)
def test_align_brings_dots_back_to_template(angle, scale, tx, ty, size):
    # A synthetic "face": five blobs at the 112-template landmarks, rotated,
    # scaled and shifted by a known similarity into a 240 x 260 photo.
    photo_transform = _similarity(angle, scale, tx, ty)
    keypoints = _apply(photo_transform, REFERENCE_5POINTS)
    photo = _gaussian_blobs(240, 260, keypoints, sigma=2.5 * scale).astype(np.float32)
    assert np.all(keypoints > 5) and np.all(keypoints[:, 0] < 255) and np.all(keypoints[:, 1] < 235)

    aligned = align_face(photo, keypoints, size=size)

    assert aligned.shape == (size, size, 5) and aligned.dtype == np.float32
    found = _centroids(aligned)
    error = np.linalg.norm(found - template(size), axis=1)
    assert error.max() < 1.0, (found, template(size))
    # Each blob lands where its own landmark belongs, not just somewhere.
    for i, (x, y) in enumerate(np.rint(template(size)).astype(int)):
        assert np.argmax(aligned[y, x]) == i


def test_align_rgb_uint8_photo():
    photo_transform = _similarity(20.0, 1.5, 60.0, 20.0)
    keypoints = _apply(photo_transform, REFERENCE_5POINTS)
    blobs = _gaussian_blobs(220, 240, keypoints[:3], sigma=4.0)  # eyes, nose
    photo = np.rint(255 * blobs).astype(np.uint8)

    aligned = align_face(photo, keypoints, size=112)

    assert aligned.shape == (112, 112, 3) and aligned.dtype == np.uint8
    found = _centroids(aligned.astype(np.float64))
    np.testing.assert_allclose(found, REFERENCE_5POINTS[:3], atol=1.0)


@pytest.mark.parametrize("scale", [3.0, 8.0])
def test_align_large_faces_do_not_alias(scale):
    """A face several times the output's size: blocks are averaged before the
    warp, so a one-pixel checkerboard comes out as its mean grey (sampled
    directly it would come out as a pattern of near-black and near-white)."""
    keypoints = REFERENCE_5POINTS * scale + 7.0
    side = int(112 * scale) + 20
    checker = ((np.indices((side, side)).sum(axis=0) % 2) * 255).astype(np.uint8)
    aligned = align_face(checker, keypoints, size=112).astype(np.float64)
    inner = aligned[8:-8, 8:-8]
    assert abs(inner.mean() - 127.5) < 8 and inner.std() < 20, (inner.mean(), inner.std())
    # And the blobs still land on the template (the reduction moves no landmark).
    blobs = _gaussian_blobs(side, side, keypoints, sigma=2.5 * scale).astype(np.float32)
    found = _centroids(align_face(blobs, keypoints, size=112))
    assert np.linalg.norm(found - REFERENCE_5POINTS, axis=1).max() < 1.0


def test_align_identity_keeps_pixels():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(112, 112, 3), dtype=np.uint8)
    np.testing.assert_array_equal(align_face(image, REFERENCE_5POINTS, size=112), image)
    grey = image[:, :, 0]
    np.testing.assert_array_equal(align_face(grey, REFERENCE_5POINTS, size=112), grey)


def test_align_accepts_face_like_and_custom_reference():
    class FaceLike:
        keypoints = REFERENCE_5POINTS * 2.0

    image = np.zeros((224, 224), np.float64)
    image[100:110, 50:60] = 1.0
    out = align_face(image, FaceLike(), size=(56, 48), reference=REFERENCE_5POINTS / 2.0 - [4, 0])
    assert out.shape == (56, 48) and out.dtype == np.float64
    # Scale 1/4 and shift -4 in x: the square [50, 60) x [100, 110) maps to
    # about [8.5, 11) x [25, 27.5).
    ys, xs = np.nonzero(out > 0.5)
    assert 8 <= xs.min() and xs.max() <= 11 and 24 <= ys.min() and ys.max() <= 28


@pytest.mark.parametrize(
    "image, keypoints, kwargs, error, match",
    [
        (np.zeros((4, 4, 3, 1)), REFERENCE_5POINTS, {}, ValueError, "Received: image with shape"),
        ([[0, 1], [2, 3]], REFERENCE_5POINTS, {}, TypeError, "numpy array"),
        (np.zeros((50, 50)), np.zeros((5, 2)), {}, ValueError, "degenerate"),
        (np.zeros((50, 50)), REFERENCE_5POINTS[:4], {}, ValueError, "same shape"),
        (np.zeros((50, 50)), REFERENCE_5POINTS, {"size": 0}, ValueError, "size"),
    ],
)
def test_align_bad_input_raises(image, keypoints, kwargs, error, match):
    with pytest.raises(error, match=match):
        align_face(image, keypoints, **kwargs)


# --- crop_face ----------------------------------------------------------------------


def _coordinate_image(height, width):
    """Channel 0 holds x, channel 1 holds y: crops reveal where they came from."""
    ys, xs = np.mgrid[0:height, 0:width]
    return np.stack([xs, ys], axis=-1).astype(np.float32)


def test_crop_without_resize_is_the_margin_slice():
    image = _coordinate_image(100, 120)
    out = crop_face(image, (10, 20, 40, 40), margin=10, size=50)
    np.testing.assert_array_equal(out, image[15:65, 5:55])


def test_crop_is_clipped_to_the_image():
    image = _coordinate_image(100, 120)
    out = crop_face(image, (-10, -5, 40, 40), margin=20, size=(45, 40))
    np.testing.assert_array_equal(out, image[0:45, 0:40])
    out = crop_face(image, (100, 80, 30, 30), margin=0, size=(20, 20))
    np.testing.assert_array_equal(out, image[80:100, 100:120])


def test_crop_resizes_bilinearly():
    image = _coordinate_image(200, 200)
    out = crop_face(image, (40, 60, 80, 80), margin=32, size=160)  # 112 x 112 crop -> 160
    assert out.shape == (160, 160, 2)
    # Crop x in [24, 136), y in [44, 156); a linear ramp stays a ramp.
    assert out[0, 0, 0] == pytest.approx(24.0, abs=0.5)
    assert out[-1, -1, 0] == pytest.approx(135.0, abs=0.5)
    assert out[0, 0, 1] == pytest.approx(44.0, abs=0.5)
    assert out[-1, -1, 1] == pytest.approx(155.0, abs=0.5)
    centre = out[80, 80]  # output pixel 80 samples input 24 + (80.5 * 112 / 160 - 0.5)
    np.testing.assert_allclose(centre, [24 + 55.85, 44 + 55.85], atol=0.01)
    assert np.all(np.diff(out[80, :, 0]) > 0) and np.all(np.diff(out[:, 80, 1]) > 0)


def test_crop_keeps_dtype_and_grey():
    image = np.arange(60 * 80, dtype=np.int64).reshape(60, 80) % 256
    image = image.astype(np.uint8)
    out = crop_face(image, (10, 10, 30, 30), margin=0, size=30)
    assert out.dtype == np.uint8 and out.shape == (30, 30)
    np.testing.assert_array_equal(out, image[10:40, 10:40])


@pytest.mark.parametrize(
    "box, margin, match",
    [
        ((200, 200, 10, 10), 0, "outside the image"),
        ((10, 10, 0, 10), 0, "w, h > 0"),
        ((10, 10, 10), 0, r"\(x, y, w, h\)"),
        ((10, np.nan, 10, 10), 0, "finite"),
        ((10, 10, 10, 10), -2, "margin"),
    ],
)
def test_crop_bad_input_raises(box, margin, match):
    with pytest.raises(ValueError, match=match):
        crop_face(np.zeros((100, 100, 3), np.uint8), box, margin=margin)
