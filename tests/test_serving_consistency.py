"""The same file gives the same embedding through every serving path.

``fsl embed``, ``fsl verify --no-detect``, ``FacePipeline.from_run`` and the
exported SavedModel (at the model's size, and resizing in the graph) all go
through ``fsl.preprocessing``: their embeddings of one file agree to 1e-5.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from PIL import Image

from fsl import cli, runs
from fsl.evaluation import pair_distances
from fsl.faces.pipeline import FacePipeline
from fsl.layers import L2Normalize
from fsl.preprocessing import Preprocessing, read_image

PREP = Preprocessing((24, 20), channels=1, standardize="prewhiten")


@pytest.fixture()
def run_and_files(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((24, 20, 1))
    x = keras.layers.Conv2D(6, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = L2Normalize()(keras.layers.Dense(8)(x))
    model = keras.Model(inputs, outputs)
    run = runs.prepare_run("facenet", tmp_path / "runs", "r")
    run.write_config({"task": "facenet", "arguments": {}, "status": "finished",
                      "preprocessing": PREP.to_config()})
    run.write_metrics({"threshold": 0.5, "metric": "L2"})
    model.save(run.model_path)
    model.save(run.embedding_path)
    rng = np.random.default_rng(0)
    files = []
    # Photos of other sizes and channels than the model's: RGB to grey, resizing.
    for name, shape in (("a.png", (50, 40, 3)), ("b.jpg", (30, 30, 3)), ("c.png", (24, 20))):
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / name)
        files.append(str(tmp_path / name))
    return run, model, files


def test_embed_verify_pipeline_and_model_agree(run_and_files, tmp_path, capsys):
    run, model, files = run_and_files
    out = tmp_path / "e.npy"
    assert cli.main(["embed", str(run.path), *files, "--out", str(out)]) == 0
    from_cli = np.load(out)
    # The model on the contract's input, by hand.
    by_hand = np.asarray(model.predict(
        np.stack([PREP.model_input(read_image(f, 1)) for f in files]), verbose=0))
    np.testing.assert_allclose(from_cli, by_hand, rtol=0, atol=1e-5)

    pipeline = FacePipeline.from_run(run.path, detect_faces=False)
    assert pipeline.prep == PREP
    from_pipeline = np.stack([pipeline.embed(f) for f in files])
    np.testing.assert_allclose(from_pipeline, from_cli, rtol=0, atol=1e-5)

    capsys.readouterr()
    assert cli.main(["verify", files[0], files[1], "--model", str(run.path), "--no-detect",
                     "--json"]) == 0
    verified = json.loads(capsys.readouterr().out)
    assert verified["distance"] == pytest.approx(
        float(pair_distances(from_cli[:1], from_cli[1:2], "L2")[0]), abs=1e-5)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="SavedModel export needs the TensorFlow backend")
def test_exported_saved_model_agrees(run_and_files, tmp_path):
    import tensorflow as tf

    from fsl.export import export_embedding_model

    run, model, files = run_and_files
    out = tmp_path / "e.npy"
    assert cli.main(["embed", str(run.path), *files, "--out", str(out)]) == 0
    from_cli = np.load(out)

    # fsl export: raw model-size pixels in, the standardisation in the graph.
    export_dir = tmp_path / "export"
    assert cli.main(["export", str(run.path), "--export-dir", str(export_dir)]) == 0
    # The export records the run's preprocessing: served as trained (whole photos).
    from fsl.export import export_info

    assert export_info(str(export_dir))["contract"] == PREP.to_config()
    served = FacePipeline.from_saved_model(export_dir, threshold=0.5)
    assert served.detect_faces is False
    np.testing.assert_allclose(served.embed(files[0]), from_cli[0], rtol=0, atol=1e-5)
    serve = tf.saved_model.load(str(export_dir)).signatures["serving_default"]
    raw = np.stack([PREP.load(f) for f in files])
    exported = next(iter(serve(tf.constant(raw)).values())).numpy()
    np.testing.assert_allclose(exported, from_cli, rtol=0, atol=1e-5)

    # The S-norm verifier has a folder of its own; --resize exports take any size.
    assert cli.main(["export", str(run.path), "--resize", "--export-dir",
                     str(tmp_path / "any-size")]) == 0
    assert export_info(str(tmp_path / "any-size"))["resize"] is True

    # resize=True: each decoded file at its own size, resized in the graph.
    resizing = tmp_path / "resizing"
    export_embedding_model(model, resizing, preprocessing=PREP.standardize, resize=True)
    serve = tf.saved_model.load(str(resizing)).signatures["serving_default"]
    for i, path in enumerate(files):
        native = read_image(path, 1).astype(np.float32)[None]
        got = next(iter(serve(tf.constant(native)).values())).numpy()
        np.testing.assert_allclose(got[0], from_cli[i], rtol=0, atol=1e-5)
