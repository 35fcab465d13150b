"""fsl.pretrained: dlib's serialization format and its face ResNet in Keras.

The reference is dlib itself: ``dlib.face_recognition_model_v1`` (dlib-bin,
a test dependency) on the same chips, live; and, where dlib is not
installed, ``fixtures/dlib_descriptors.npz``, dlib's descriptors of 50 ORL
photos made by ``fixtures/make_dlib_descriptors.py``.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import pathlib
import struct
import subprocess
import sys

import keras
import numpy as np
import pytest
from conftest import IN_CI, REPO

sys.path.insert(0, str(REPO / "tests" / "fixtures"))
from make_dlib_descriptors import chip_pixels  # noqa: E402

from fsl.pretrained.dlib_format import DlibFormatError, DlibReader  # noqa: E402

FIXTURE = REPO / "tests" / "fixtures" / "dlib_descriptors.npz"


def _need_weights():
    from fsl.pretrained.dlib_network import weights_available

    if not weights_available():
        message = 'face_recognition_models is not installed (pip install "fsl[pretrained]")'
        if IN_CI:
            pytest.fail(message + "; CI installs the dev extra, which has it")
        pytest.skip(message)


def _need_dlib():
    if importlib.util.find_spec("dlib") is None:
        if IN_CI:
            pytest.fail("dlib (dlib-bin, in the dev extra) is not installed in CI")
        pytest.skip("dlib is not installed (pip install dlib-bin); the fixture test covers it")
    import dlib

    return dlib


@pytest.fixture(scope="module")
def resnet():
    _need_weights()
    from fsl.pretrained import dlib_resnet

    return dlib_resnet()


# === The encoding, on hand-made bytes ===


def _int(value: int) -> bytes:
    """dlib's packed integer, written from its specification (serialize.h)."""
    magnitude = abs(value)
    body = magnitude.to_bytes(max(1, (magnitude.bit_length() + 7) // 8), "little")
    return bytes([len(body) | (0x80 if value < 0 else 0)]) + body


@pytest.mark.backend_agnostic
@pytest.mark.parametrize("value", [0, 1, 127, 300, 65536, -5, -300, 2**40 + 3])
def test_packed_integers(value):
    reader = DlibReader(_int(value))
    assert reader.int() == value
    assert reader.pos == len(reader.data)


@pytest.mark.backend_agnostic
def test_hand_encoded_bytes():
    # 300 = 0x012c -> control byte 2 (two bytes follow), then 2c 01.
    assert DlibReader(b"\x02\x2c\x01").int() == 300
    assert DlibReader(b"\x81\x05").int() == -5
    # float 0.75 = 3 * 2**-2: mantissa 3, exponent -2.
    assert DlibReader(_int(3) + _int(-2)).float() == 0.75
    assert DlibReader(_int(0) + _int(32000)).float() == math.inf
    assert math.isnan(DlibReader(_int(0) + _int(32002)).float())
    assert DlibReader(_int(5) + b"con_5").string() == "con_5"
    assert DlibReader(b"1").bool() is True
    values = np.array([1.5, -2.0, 0.25, 8.0, 0.0, 3.0], np.float32)
    tensor = _int(2) + b"".join(_int(s) for s in (1, 2, 3, 1)) + struct.pack("<6f", *values)
    np.testing.assert_array_equal(DlibReader(tensor).tensor(), values.reshape(1, 2, 3, 1))


@pytest.mark.backend_agnostic
def test_bad_bytes_name_the_offset():
    with pytest.raises(DlibFormatError, match=r"bad integer control byte 0x30 \(at byte 0"):
        DlibReader(b"0").int()
    with pytest.raises(DlibFormatError, match="unexpected end of file reading 2 bytes"):
        DlibReader(b"\x02\x01").int()
    with pytest.raises(DlibFormatError, match="expected a bool"):
        DlibReader(b"x").bool()
    with pytest.raises(DlibFormatError, match="expected 'con_4' or 'con_5', found 'relu_'"):
        DlibReader(_int(5) + b"relu_").expect_string("con_4", "con_5")


def test_other_files_are_refused(tmp_path):
    _need_weights()
    from fsl.pretrained.dlib_network import dlib_resnet_weights_path, read_dlib_resnet

    data = dlib_resnet_weights_path().read_bytes()
    truncated = tmp_path / "truncated.dat"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(DlibFormatError, match="unexpected end of file"):
        read_dlib_resnet(truncated)
    extra = tmp_path / "extra.dat"
    extra.write_bytes(data + b"\x01\x01")
    with pytest.raises(DlibFormatError, match="2 unread bytes"):
        read_dlib_resnet(extra)
    # The 5-point shape predictor is a dlib file, but not this network.
    import face_recognition_models

    with pytest.raises(DlibFormatError):
        read_dlib_resnet(face_recognition_models.pose_predictor_five_point_model_location())
    with pytest.raises(FileNotFoundError, match="not found"):
        read_dlib_resnet(tmp_path / "missing.dat")


def test_reader_returns_the_whole_network():
    _need_weights()
    from fsl.pretrained.dlib_network import architecture, read_dlib_resnet

    layers = read_dlib_resnet()
    assert [layer.kind for layer in layers[1:-1]] == [
        {"avg_pool_everything": "avg_pool"}.get(kind, kind) for kind, _ in architecture()]
    assert layers[0].params["size"] == (150, 150)
    np.testing.assert_allclose(layers[0].params["mean_rgb"], (122.782, 117.001, 104.298),
                               rtol=1e-6)
    assert layers[-1].kind == "loss_metric"
    assert layers[-1].params["distance_threshold"] == pytest.approx(0.6)
    convs = [layer for layer in layers if layer.kind == "con"]
    assert len(convs) == 29  # a ResNet-29
    assert convs[0].params["filters"].shape == (32, 3, 7, 7)


# === The network against dlib ===


def test_equals_dlib_on_its_own_face_chips(orl_dir, resnet):
    """>= 50 real face chips cut by dlib itself, dlib's descriptor live."""
    dlib = _need_dlib()
    import face_recognition_models

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
    model = dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location())
    from PIL import Image

    chips = []
    for path in sorted(orl_dir.glob("s*/*.png"))[3::7]:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        found = detector(rgb, 1)
        if found:
            chips.append(dlib.get_face_chip(rgb, predictor(rgb, found[0]), size=150, padding=0.25))
    assert len(chips) >= 50
    chips = np.stack(chips)
    expected = np.stack([np.array(model.compute_face_descriptor(c)) for c in chips])
    got = np.asarray(resnet.predict(chips.astype("float32"), verbose=0))
    assert np.abs(got - expected).max() <= 1e-4
    assert np.linalg.norm(expected, axis=1).min() > 0.5  # real descriptors, not zeros


@pytest.mark.backend_agnostic
def test_equals_dlib_fixture(orl_dir):
    """The committed dlib descriptors of 50 ORL photos (on every backend)."""
    _need_weights()
    from fsl.pretrained import dlib_resnet

    with np.load(FIXTURE) as data:
        files, expected = data["files"], data["descriptors"]
    chips = np.stack([chip_pixels(orl_dir / name) for name in files]).astype("float32")
    got = np.asarray(dlib_resnet()(chips[:25])), np.asarray(dlib_resnet()(chips[25:]))
    assert len(files) == 50
    assert np.abs(np.concatenate(got) - expected).max() <= 1e-4


def test_saved_model_reloads_without_custom_objects(tmp_path, resnet):
    import keras

    path = tmp_path / "dlib.keras"
    resnet.save(path)
    reloaded = keras.saving.load_model(path)
    x = np.random.default_rng(0).uniform(0, 255, (2, 150, 150, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(reloaded(x)), np.asarray(resnet(x)), atol=1e-6)


@pytest.mark.backend_agnostic
def test_architecture_without_weights_and_under_bfloat16():
    import keras

    from fsl.pretrained import dlib_resnet

    model = dlib_resnet(weights=None)
    assert model.count_params() == sum(
        int(np.prod(w.shape)) for w in model.weights) and model.output_shape == (None, 128)
    policy = keras.config.dtype_policy()
    try:
        keras.config.set_dtype_policy("mixed_bfloat16")
        mixed = dlib_resnet(weights=None)
    finally:
        keras.config.set_dtype_policy(policy)
    mixed.set_weights(model.get_weights())
    x = np.random.default_rng(1).uniform(0, 255, (2, 150, 150, 3)).astype("float32")
    full, half = np.asarray(model(x)), np.asarray(mixed(x))
    assert half.dtype == np.float32 and np.all(np.isfinite(half))
    # bfloat16 keeps 8 bits of mantissa: close, not equal.
    assert 0 < np.abs(half - full).max() < 0.1 * np.abs(full).max()


def test_missing_package_says_how_to_install(monkeypatch):
    from fsl.pretrained import dlib_network as module

    monkeypatch.setattr(module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match=r'pip install "fsl\[pretrained\]"'):
        module.dlib_resnet_weights_path()
    assert module.weights_available() is False


def test_fixture_script_is_kept():
    assert (pathlib.Path(FIXTURE).parent / "make_dlib_descriptors.py").is_file()


# === Alignment: MTCNN's points onto dlib's chip ===


def test_dlib_chip_template_reproduces_dlibs_chips(orl_dir, resnet):
    """Chips cut from MTCNN's points with DLIB_CHIP_TEMPLATE give descriptors
    close to those of dlib's own chips; the ArcFace template does not."""
    dlib = _need_dlib()
    import face_recognition_models
    from PIL import Image

    from fsl.faces.align import align_face, dlib_chip_template
    from fsl.faces.detect import detect

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
    theirs, ours, arcface = [], [], []
    for path in sorted(orl_dir.glob("s*/*.png"))[5::13]:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        found, faces = detector(rgb, 1), detect(rgb)
        if found and faces:
            theirs.append(dlib.get_face_chip(rgb, predictor(rgb, found[0]), size=150, padding=0.25))
            ours.append(align_face(rgb, faces[0].keypoints, 150, reference=dlib_chip_template()))
            arcface.append(align_face(rgb, faces[0].keypoints, 150))
    assert len(theirs) >= 20
    embed = [np.asarray(resnet.predict(np.stack(c).astype("float32"), verbose=0))
             for c in (theirs, ours, arcface)]
    close = np.linalg.norm(embed[0] - embed[1], axis=1).mean()
    far = np.linalg.norm(embed[0] - embed[2], axis=1).mean()
    assert close < 0.2 and far > 2 * close, (close, far)


def test_dlib_chip_template_scales_about_pixel_edges():
    from fsl.faces.align import DLIB_CHIP_TEMPLATE, dlib_chip_template

    np.testing.assert_allclose(dlib_chip_template(150), DLIB_CHIP_TEMPLATE)
    np.testing.assert_allclose(dlib_chip_template(300), (DLIB_CHIP_TEMPLATE + 0.5) * 2 - 0.5)
    with pytest.raises(ValueError, match="square"):
        dlib_chip_template((150, 120))


# === A pretrained run folder ===

PEOPLE = [f"s{i:02d}" for i in range(1, 13)]


@pytest.fixture(scope="module")
def pretrained(orl_dir, tmp_path_factory):
    _need_weights()
    from fsl.training.pretrained import pretrained_run

    root = tmp_path_factory.mktemp("pretrained")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FSL_CACHE_DIR", str(root / "cache"))
        metrics = pretrained_run("dlib-resnet", orl_dir, test_identities=4, identities=PEOPLE,
                                 output_dir=root / "runs", run="dlib", verbose=0)
        yield root / "runs" / "dlib", metrics


def test_pretrained_run_threshold_and_metrics(pretrained, orl_dir):
    from fsl import runs
    from fsl.evaluation import best_threshold, pair_distances
    from fsl.evaluation.protocols import verification_pairs
    from fsl.faces.crops import face_folder_crops
    from fsl.training.facenet import _split

    path, metrics = pretrained
    run = runs.open_run(path)
    assert run.read_config()["task"] == "pretrained"
    assert run.preprocessing().align == "dlib-chip" and run.domain_path.is_file()
    assert metrics["test_identities"] == 4 and metrics["train_identities"] == 8
    assert metrics["threshold_source"] == "training pairs"
    # The threshold, by hand: the best one on the training people's pairs.
    train, _ = _split(orl_dir, PEOPLE, 4, 0)
    pixels, labels, _ = face_folder_crops(train.paths, train.labels, run.preprocessing())
    embeddings = np.asarray(run.load_model("embedding").predict(pixels, verbose=0))
    i, j, same = verification_pairs(labels, 0)
    expected, _ = best_threshold(pair_distances(embeddings[i], embeddings[j], "L2"), same)
    assert metrics["threshold"] == pytest.approx(expected, abs=1e-6)
    assert metrics["verification_accuracy"] > 0.95 and metrics["precision_at_1"] > 0.95


def test_pretrained_run_serves_as_written(pretrained, orl_dir, capsys):
    from PIL import Image

    from fsl import cli
    from fsl.faces.align import align_face, dlib_chip_template
    from fsl.faces.detect import detect
    from fsl.faces.pipeline import FacePipeline

    path, metrics = pretrained
    pipeline = FacePipeline.from_run(path)
    assert pipeline.align == "dlib-chip" and pipeline.threshold == metrics["threshold"]
    photo = orl_dir / "s11" / "03.png"
    rgb = np.asarray(Image.open(photo).convert("RGB"))
    chip = align_face(rgb, detect(rgb)[0].keypoints, 150, reference=dlib_chip_template())
    by_hand = np.asarray(pipeline.embedder.predict(chip[None].astype("float32"), verbose=0))[0]
    np.testing.assert_allclose(pipeline.embed(str(photo)), by_hand, atol=1e-5)

    capsys.readouterr()
    assert cli.main(["verify", str(photo), str(orl_dir / "s11" / "07.png"), "--model", str(path),
                     "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["same"] is True
    assert cli.main(["evaluate", str(path)]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["verification_accuracy"] == pytest.approx(metrics["verification_accuracy"])


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="SavedModel export needs the TensorFlow backend")
def test_pretrained_export_loads_with_tensorflow_alone(pretrained, tmp_path):
    from fsl import cli

    path, _ = pretrained
    export_dir = tmp_path / "export"
    assert cli.main(["export", str(path), "--export-dir", str(export_dir)]) == 0
    x = np.random.default_rng(2).uniform(0, 255, (3, 150, 150, 3)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    script = (
        "import sys, numpy as np, tensorflow as tf\n"
        f"m = tf.saved_model.load({str(export_dir)!r})\n"
        "f = m.signatures['serving_default']\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r})\n"
        "y = next(iter(f(tf.constant(x)).values())).numpy()\n"
        "assert not any(n == 'fsl' or n.startswith('fsl.') for n in sys.modules)\n"
        f"np.save({str(tmp_path / 'y.npy')!r}, y)\n")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from fsl.runs import open_run

    model = open_run(path).load_model("embedding")
    raw = np.asarray(model(x))
    # The embedding export's contract: L2-normalised embeddings.
    unit = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), unit, atol=1e-5)


def test_pretrained_run_without_data_keeps_dlibs_threshold(tmp_path):
    _need_weights()
    from fsl.training.pretrained import evaluate_run, pretrained_run

    metrics = pretrained_run(output_dir=tmp_path, run="plain", verbose=0)
    assert metrics["threshold"] == 0.6 and "dlib" in metrics["threshold_source"]
    from fsl.runs import open_run

    run = open_run(tmp_path / "plain")
    with pytest.raises(ValueError, match="without a face folder"):
        evaluate_run(run, run.read_config())
    with pytest.raises(FileExistsError):
        pretrained_run(output_dir=tmp_path, run="plain", verbose=0)


def test_pretrained_cli_errors(tmp_path, capsys):
    from fsl import cli

    bad = tmp_path / "bad.dat"
    bad.write_bytes(b"\x01\x01not a network")
    assert cli.main(["pretrained", "dlib-resnet", "--output", str(tmp_path / "r"),
                     "--weights", str(bad)]) == 2
    error = capsys.readouterr().err
    assert "bad.dat" in error and error.count("\n") == 1
    assert not (tmp_path / "r").exists()  # nothing written for a bad file
    assert cli.main(["pretrained", "facenet-vgg", "--output", str(tmp_path / "r")]) == 2
    assert "invalid choice: 'facenet-vgg' (choose from 'dlib-resnet')" in capsys.readouterr().err
    assert cli.main(["pretrained", "dlib-resnet", "--output", str(tmp_path / "r"),
                     "--data", str(tmp_path / "missing")]) == 2
    assert "face folder not found" in capsys.readouterr().err


# === Fine-tuning: train_facenet(init="dlib-resnet") ===

FINE_TUNE_PEOPLE = [f"s{i:02d}" for i in range(1, 9)]


def test_fine_tune_from_dlib_weights(orl_dir, tmp_path, monkeypatch):
    _need_weights()
    from fsl.pretrained import dlib_resnet
    from fsl.runs import open_run
    from fsl.training import train_facenet

    monkeypatch.setenv("FSL_CACHE_DIR", str(tmp_path / "cache"))
    metrics = train_facenet(orl_dir, init="dlib-resnet", freeze_blocks=2, identities=FINE_TUNE_PEOPLE,
                            test_identities=3, fast=True, wccn=None, test_time_flip=False,
                            output_dir=tmp_path, run="ft", verbose=0)
    run = open_run(tmp_path / "ft")
    prep = run.preprocessing()
    assert (prep.image_size, prep.channels, prep.standardize, prep.align) == (
        (150, 150), 3, None, "dlib-chip")
    arguments = run.read_config()["arguments"]
    assert arguments["learning_rate"] == 1e-4 and arguments["embedding"] == "projection"
    tuned = {w.path: np.asarray(w) for w in run.load_model("embedding").weights}
    original = {w.path: np.asarray(w) for w in dlib_resnet().weights}
    assert set(tuned) == set(original)
    frozen = [p for p in tuned if p.split("/")[0] in {"con1", "con5", "affine5"}]
    trained = [p for p in tuned if p.split("/")[0] in {"con6", "descriptor"}]
    assert frozen and trained
    for path in frozen:  # the stem and blocks 1-2 (con1..con5) as dlib trained them
        np.testing.assert_array_equal(tuned[path], original[path])
    assert all(np.abs(tuned[p] - original[p]).max() > 0 for p in trained)
    assert 0.5 <= metrics["verification_accuracy"] <= 1.0


@pytest.mark.parametrize("kwargs, message", [
    ({"init": "dlib-resnet", "image_size": 96}, "fixes image_size=150"),
    ({"init": "dlib-resnet", "standardize": "fixed"}, "fixes standardize=None"),
    ({"init": "dlib-resnet", "embedding": "pooled"}, "fixes embedding='projection'"),
    ({"init": "dlib-resnet", "freeze_blocks": 15}, r"freeze_blocks must be an int in \[0, 14\]"),
    ({"freeze_blocks": 2}, "applies to a pretrained network"),
    ({"init": "vgg-face"}, "init must be one of"),
])
def test_fine_tune_arguments_are_checked(orl_dir, tmp_path, kwargs, message):
    from fsl.training import train_facenet

    with pytest.raises(ValueError, match=message):
        train_facenet(orl_dir, output_dir=tmp_path, run="bad", verbose=0, **kwargs)
    assert not (tmp_path / "bad").exists()


def test_freeze_blocks_counts_dlibs_blocks():
    from fsl.pretrained import dlib_resnet
    from fsl.pretrained.dlib_network import freeze_blocks

    model = dlib_resnet(weights=None)
    freeze_blocks(model, 14)
    frozen = {layer.name for layer in model.layers if not layer.trainable and layer.weights}
    assert frozen == {f"{k}{i}" for k in ("con", "affine") for i in range(1, 30)}
    with pytest.raises(ValueError, match="blocks must be an int"):
        freeze_blocks(model, -1)


def test_fsl_serve_takes_the_pretrained_run(pretrained, orl_dir, tmp_path):
    pytest.importorskip("fastapi", reason="fsl serve needs the [serve] extra")
    from fastapi.testclient import TestClient

    from fsl.serve import create_app

    path, metrics = pretrained
    with TestClient(create_app(path, tmp_path / "gallery.sqlite")) as client:
        for person in ("s09", "s10", "s11"):
            photo = orl_dir / person / "01.png"
            answer = client.post("/api/enrol", data={"name": person},
                                 files={"photo": (photo.name, photo.read_bytes(), "image/png")})
            assert answer.status_code == 200, answer.text
        assert client.get("/api/health").json()["threshold"] == pytest.approx(metrics["threshold"])
        # Another photo of an enrolled person is found; a stranger is unknown.
        query = orl_dir / "s10" / "06.png"
        found = client.post("/api/search", files={"photo": ("q.png", query.read_bytes(),
                                                            "image/png")}).json()
        assert found["person"] == "s10" and found["in_domain"] is True
        stranger = orl_dir / "s12" / "04.png"
        found = client.post("/api/search", files={"photo": ("q.png", stranger.read_bytes(),
                                                            "image/png")}).json()
        assert found["person"] is None
        assert found["matches"][0]["distance"] > metrics["threshold"]
