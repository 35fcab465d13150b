"""fsl.preprocessing: one contract from file to model input, the same through every path."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from PIL import Image

from fsl import preprocessing as P
from fsl.layers import Standardize


def _rgb(seed=0, shape=(37, 29, 3)):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


# === Channels and decoding ===


def test_grey_of_uint8_rgb_is_pillows_convert_l_bit_for_bit():
    rgb = _rgb()
    expected = np.asarray(Image.fromarray(rgb, "RGB").convert("L"))[..., None]
    np.testing.assert_array_equal(P.to_channels(rgb, 1), expected)
    # Batched too, and grey -> RGB repeats the channel.
    np.testing.assert_array_equal(P.to_channels(np.stack([rgb, rgb]), 1)[1], expected)
    np.testing.assert_array_equal(P.to_channels(expected, 3), np.repeat(expected, 3, axis=-1))


def test_grey_of_float_rgb_is_the_luma_formula():
    rgb = _rgb(1).astype(np.float32)
    want = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    np.testing.assert_allclose(P.to_channels(rgb, 1)[..., 0], want, rtol=1e-6)


def test_read_image_modes_and_16_bit_scaling(tmp_path):
    rgb = _rgb(2)
    Image.fromarray(rgb, "RGB").save(tmp_path / "c.png")
    np.testing.assert_array_equal(P.read_image(tmp_path / "c.png", 3), rgb)
    np.testing.assert_array_equal(
        P.read_image(tmp_path / "c.png", 1),
        np.asarray(Image.fromarray(rgb).convert("L"))[..., None])
    # 16-bit grey: 0..65535 -> 0..255 by 1/257, not stretched to the image's own maximum.
    values = np.array([[0, 257 * 100], [257 * 200, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "d16.png")
    np.testing.assert_array_equal(P.read_image(tmp_path / "d16.png", 1)[..., 0],
                                  [[0, 100], [200, 255]])


def test_read_image_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        P.read_image(tmp_path / "nope.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="bad.png"):
        P.read_image(tmp_path / "bad.png")
    with pytest.raises(ValueError, match="channels=2"):
        P.read_image(tmp_path / "bad.png", channels=2)


# === Resizing and standardisation, numpy and tensors alike ===


def test_resize_numpy_and_tensor_agree_and_match_tf():
    import tensorflow as tf

    x = _rgb(3).astype(np.float32)
    out = P.resize(x, (16, 12))
    assert isinstance(out, np.ndarray) and out.shape == (16, 12, 3)
    np.testing.assert_array_equal(out, P.resize(tf.constant(x), (16, 12)).numpy())
    np.testing.assert_allclose(
        out, tf.image.resize(x, (16, 12), "bilinear", antialias=True).numpy(), rtol=0, atol=0)
    # The same size: untouched; a central crop keeps the middle.
    np.testing.assert_array_equal(P.resize(x, x.shape[:2]), x)
    np.testing.assert_array_equal(P.resize(x, None, center_crop=0.5),
                                  tf.image.central_crop(x, 0.5).numpy())


@pytest.mark.parametrize("mode", ["fixed", "prewhiten", "unit", None])
def test_standardize_numpy_tensor_and_layer_agree(mode):
    import tensorflow as tf

    batch = np.stack([_rgb(4, (6, 5, 1)), _rgb(5, (6, 5, 1)) // 3]).astype(np.float32)
    ref = {
        "fixed": (batch - 127.5) / 128.0,
        "unit": batch / 255.0,
        None: batch,
    }
    if mode == "prewhiten":
        # Per image, also inside a batch.
        flat = batch.reshape(2, -1).astype(np.float64)
        std = np.maximum(flat.std(axis=1), 1 / np.sqrt(flat.shape[1]))
        ref[mode] = (batch - flat.mean(axis=1)[:, None, None, None]) / std[:, None, None, None]
    got = P.standardize(batch, mode)
    np.testing.assert_allclose(got, ref[mode], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(P.standardize(tf.constant(batch), mode).numpy(), got,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(P.standardize(batch[1], mode), got[1], rtol=1e-5, atol=1e-6)
    if mode is not None:
        layer = keras.ops.convert_to_numpy(Standardize(mode)(batch))
        np.testing.assert_allclose(layer, got, rtol=1e-5, atol=1e-6)


def test_prewhiten_of_a_constant_image_is_zero():
    assert np.all(P.standardize(np.full((4, 4, 1), 77.0, np.float32), "prewhiten") == 0)


def test_standardize_refuses_an_unknown_mode():
    with pytest.raises(ValueError, match="standardize='z'"):
        P.standardize(np.zeros((2, 2, 1)), "z")


# === The contract of one model ===


def test_preprocessing_config_round_trip_and_old_configs():
    prep = P.Preprocessing((32, 24), channels=3, standardize="prewhiten", center_crop=0.8)
    config = json.loads(json.dumps(prep.to_config()))
    assert P.Preprocessing.from_config(config) == prep
    assert config["resize"] == P.RESIZE_METHOD
    # Runs written before the contract record three keys.
    old = P.Preprocessing.from_config({"image_size": [28, 28], "channels": 1,
                                       "standardize": "unit"})
    assert old == P.Preprocessing((28, 28), 1, "unit", 1.0)
    with pytest.raises(ValueError, match="resize='nearest'"):
        P.Preprocessing.from_config({**config, "resize": "nearest"})
    with pytest.raises(ValueError, match="image_size"):
        P.Preprocessing.from_config({"channels": 1})
    # How faces were cut out of photos: recorded; older runs trained on whole photos.
    assert old.align == "none"
    cropped = P.Preprocessing((32, 32), align="crop", margin=16)
    assert P.Preprocessing.from_config(cropped.to_config()) == cropped
    assert "grown by 16 px" in cropped.describe()


@pytest.mark.parametrize("kwargs, match", [
    ({"image_size": (0, 4)}, "image_size"),
    ({"image_size": 8, "channels": 2}, "channels=2"),
    ({"image_size": 8, "standardize": "zscore"}, "standardize='zscore'"),
    ({"image_size": 8, "center_crop": 1.5}, "center_crop=1.5"),
    ({"image_size": 8, "center_crop": 0}, "center_crop=0"),
    ({"image_size": 8, "align": "mtcnn"}, "align='mtcnn'"),
    ({"image_size": 8, "margin": -1}, "margin=-1"),
])
def test_preprocessing_rejects_bad_fields(kwargs, match):
    with pytest.raises(ValueError, match=match):
        P.Preprocessing(**kwargs)


def test_load_equals_the_steps_one_by_one(tmp_path):
    rgb = _rgb(6, (50, 40, 3))
    Image.fromarray(rgb).save(tmp_path / "f.png")
    prep = P.Preprocessing((20, 16), channels=1, standardize="fixed")
    steps = P.resize(P.to_channels(rgb, 1), (20, 16))
    np.testing.assert_array_equal(prep.load(tmp_path / "f.png"), steps)
    np.testing.assert_array_equal(prep.prepare(rgb), steps)
    np.testing.assert_allclose(prep.model_input(rgb), (steps - 127.5) / 128.0, rtol=1e-6)
    assert prep.load_batch([tmp_path / "f.png"] * 2).shape == (2, 20, 16, 1)
