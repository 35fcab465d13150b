"""fsl.export: SavedModels that run without fsl and without keras.

Each kind of export is written once (module fixture), then ONE fresh Python
process, in which ``import keras`` and ``import fsl`` are blocked, loads every
SavedModel, calls both signatures at batch sizes 1 and 5 and feeds them bad
inputs. Its outputs are compared here with the in-process Keras model run on
numpy-preprocessed pixels (the preprocessing formulas written out in numpy).

Not backend-agnostic: export needs the TensorFlow backend.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from fsl import export, models
from fsl.layers import Standardize

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="fsl.export writes TensorFlow SavedModels: needs KERAS_BACKEND=tensorflow",
)

ATOL = 1e-5
BATCH_SIZES = (1, 5)

# Model input sizes: non-square, so that a height / width mix-up shows.
ENC_HWC = (12, 10, 1)
FACENET_HWC = (32, 32, 1)
MTFL_HWC = (16, 24, 1)
RESIZE_HW = (15, 13)  # input size fed to the resize=True embedding export
MTFL_FEED_HW = {1: MTFL_HWC[:2], 5: (40, 30)}  # the MTFL export resizes too


# === numpy references ===


def _np_preprocess(x: np.ndarray, mode: str | None) -> np.ndarray:
    x = x.astype(np.float64)
    if mode is None:
        return x
    if mode == "fixed":
        return (x - 127.5) / 128.0
    if mode == "unit":
        return x / 255.0
    n = np.prod(x.shape[1:])
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    std = x.std(axis=(1, 2, 3), keepdims=True)
    return (x - mean) / np.maximum(std, 1.0 / np.sqrt(n))


def _l2n(e: np.ndarray) -> np.ndarray:
    e = np.asarray(e, np.float64)
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-6)


def _predict(model, x: np.ndarray):
    out = model(x.astype("float32"), training=False)
    if isinstance(out, dict):
        return {k: np.array(v, np.float64) for k, v in out.items()}
    return np.array(out, np.float64)


def _np_distance(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    sq = np.sum((a - b) ** 2, axis=1)
    if metric == "L2":
        return np.sqrt(sq)
    if metric == "squared-L2":
        return sq
    return np.maximum(1.0 - np.sum(_l2n(a) * _l2n(b), axis=1), 0.0)


def _images(rng, n, hw, c=1) -> np.ndarray:
    return rng.integers(0, 256, size=(n, *hw, c)).astype(np.uint8)


# === Exports (written once) ===


# (kind, model, image a, image b, preprocessing, metric, normalize) of the
# S-norm verifiers.
_S_NORM_CASES = [
    ("verifier_snorm", "facenet", "face_a", "face_b", None, "L2", True),
    ("verifier_snorm_enc", "encoder", "enc", "enc_b", "fixed", "angular", False),
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(0)
    # An encoder WITHOUT L2Normalize: the export must normalise.
    encoder = models.mnist_encoder(embedding_dim=8, input_shape=ENC_HWC, pooling="avg")
    # FaceNet with its own Standardize layer: exported with preprocessing=None;
    # as train_facenet saves it by default: depthwise (GDC) pooling, the pooled
    # embedding, averaged with the mirror image's (a fsl layer inside a nested
    # model: the SavedModel must still load without fsl).
    facenet = models.flip_averaged_embedding(models.pooled_embedding(models.facenet_model(
        input_shape=FACENET_HWC, embedding_dim=8, width=4, blocks=1, preprocessing="prewhiten",
        pooling="gdc",
    )))
    mtfl = models.mtfl_model(input_shape=MTFL_HWC, bottleneck=8)

    inputs = {}
    for b in BATCH_SIZES:
        inputs[f"enc_{b}"] = _images(rng, b, ENC_HWC[:2])
        inputs[f"resize_{b}"] = _images(rng, b, RESIZE_HW)
        inputs[f"face_a_{b}"] = _images(rng, b, FACENET_HWC[:2])
        inputs[f"face_b_{b}"] = _images(rng, b, FACENET_HWC[:2])
        inputs[f"enc_b_{b}"] = _images(rng, b, ENC_HWC[:2])
        inputs[f"mtfl_{b}"] = _images(rng, b, MTFL_FEED_HW[b])
    # One pair identical (distance 0 -> same), the others random.
    inputs["face_b_5"][0] = inputs["face_a_5"][0]

    # Thresholds between two observed distances: both decisions occur, no ties.
    d = _np_distance(
        _l2n(_predict(facenet, inputs["face_a_5"])),
        _l2n(_predict(facenet, inputs["face_b_5"])),
        "L2",
    )
    d_sorted = np.sort(d)
    face_threshold = float((d_sorted[2] + d_sorted[3]) / 2)
    d = _np_distance(
        _predict(encoder, _np_preprocess(inputs["enc_5"], "fixed")),
        _predict(encoder, _np_preprocess(inputs["enc_b_5"], "fixed")),
        "squared-L2",
    )
    d_sorted = np.sort(d)
    enc_threshold = float((d_sorted[1] + d_sorted[2]) / 2)

    # S-norm verifiers: a cohort of other embeddings baked in. The facenet
    # one L2 (its cohort is normalised by the export), the encoder one
    # angular on raw embeddings; thresholds between two observed S-norm
    # distances (negative ones are allowed on that scale).
    from fsl.evaluation import s_norm_distances

    cohorts = {"verifier_snorm": rng.normal(size=(7, facenet.output_shape[-1])),
               "verifier_snorm_enc": rng.normal(size=(6, encoder.output_shape[-1]))}
    s_thresholds = {}
    for kind, model_key, a_key, b_key, prep, metric, norm in _S_NORM_CASES:
        model = {"facenet": facenet, "encoder": encoder}[model_key]
        ea = _predict(model, _np_preprocess(inputs[f"{a_key}_5"], prep))
        eb = _predict(model, _np_preprocess(inputs[f"{b_key}_5"], prep))
        cohort = _l2n(cohorts[kind]) if norm else cohorts[kind]
        d_sorted = np.sort(s_norm_distances(_l2n(ea) if norm else ea, _l2n(eb) if norm else eb,
                                            cohort, metric))
        s_thresholds[kind] = float((d_sorted[1] + d_sorted[2]) / 2)

    paths = {
        "emb_fixed": export.export_embedding_model(
            encoder, root / "emb_fixed", preprocessing="fixed"
        ),
        "emb_resize": export.export_embedding_model(
            encoder, root / "emb_resize", preprocessing="prewhiten", resize=True
        ),
        "verifier_face": export.export_pair_verifier(
            facenet, root / "verifier_face", threshold=face_threshold, preprocessing=None
        ),
        "verifier_enc": export.export_pair_verifier(
            encoder,
            root / "verifier_enc",
            threshold=enc_threshold,
            metric="squared-L2",
            preprocessing="fixed",
            normalize=False,  # distances between the raw embeddings
        ),
        "mtfl": export.export_mtfl_model(mtfl, root / "mtfl", resize=True),
        "verifier_snorm": export.export_pair_verifier(
            facenet, root / "verifier_snorm", threshold=s_thresholds["verifier_snorm"],
            preprocessing=None, cohort=cohorts["verifier_snorm"],
        ),
        "verifier_snorm_enc": export.export_pair_verifier(
            encoder, root / "verifier_snorm_enc", threshold=s_thresholds["verifier_snorm_enc"],
            metric="angular", preprocessing="fixed", normalize=False,
            cohort=cohorts["verifier_snorm_enc"],
        ),
    }
    np.savez(root / "inputs.npz", **inputs)
    return {
        "root": root,
        "paths": paths,
        "inputs": inputs,
        "encoder": encoder,
        "facenet": facenet,
        "mtfl": mtfl,
        "thresholds": {"verifier_face": face_threshold, "verifier_enc": enc_threshold,
                       **s_thresholds},
        "cohorts": cohorts,
    }


# The fresh process: TensorFlow only. keras and fsl are blocked, so any
# attempt to import them (by the SavedModel loader or the restored graphs)
# fails loudly.
_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.modules["keras"] = None
    sys.modules["fsl"] = None
    import numpy as np
    import tensorflow as tf

    root, paths = sys.argv[1], json.loads(sys.argv[2])
    report = {"modules": sorted(
        m for m in sys.modules
        if m == "keras" or m.startswith(("keras.", "fsl.")) or m == "fsl"
    )}
    report["blocked"] = [sys.modules["keras"] is None, sys.modules["fsl"] is None]
    inputs = dict(np.load(root + "/inputs.npz"))
    out = {}
    loaded = {k: tf.saved_model.load(p) for k, p in paths.items()}
    for b in (1, 5):
        feeds = {
            "emb_fixed": {"images": inputs[f"enc_{b}"]},
            "emb_resize": {"images": inputs[f"resize_{b}"]},
            "verifier_face": {"image_a": inputs[f"face_a_{b}"],
                              "image_b": inputs[f"face_b_{b}"]},
            "verifier_enc": {"image_a": inputs[f"enc_{b}"],
                             "image_b": inputs[f"enc_b_{b}"]},
            "mtfl": {"images": inputs[f"mtfl_{b}"]},
            "verifier_snorm": {"image_a": inputs[f"face_a_{b}"],
                               "image_b": inputs[f"face_b_{b}"]},
            "verifier_snorm_enc": {"image_a": inputs[f"enc_{b}"],
                                   "image_b": inputs[f"enc_b_{b}"]},
        }
        for kind, feed in feeds.items():
            for sig, dtype in (("serving_default", tf.float32), ("serve_uint8", tf.uint8)):
                args = {k: tf.constant(v.astype(dtype.as_numpy_dtype)) for k, v in feed.items()}
                result = loaded[kind].signatures[sig](**args)
                for name, value in result.items():
                    out[f"{kind}|{sig}|{b}|{name}"] = value.numpy()
    for kind in ("verifier_face", "verifier_enc", "verifier_snorm", "verifier_snorm_enc"):
        out[f"{kind}|attr_threshold"] = loaded[kind].threshold[0].numpy()
    np.savez(root + "/outputs.npz", **out)
    report["keras_after_calls"] = sorted(
        m for m in sys.modules if m.startswith(("keras.", "fsl."))
    )
    with open(root + "/report.json", "w") as f:
        json.dump(report, f)

    def verify_sig(a, b):
        return loaded["verifier_enc"].signatures["serving_default"](image_a=a, image_b=b)

    def verify_fn(a, b):
        return loaded["verifier_enc"].serving_default(a, b)

    # Bad inputs: every one must raise (not crash the process, not pass).
    good = inputs["enc_5"].astype(np.float32)
    bad = {
        "rank3": tf.constant(good[0]),
        "channels": tf.constant(np.repeat(good, 3, axis=-1)),
        "int32": tf.constant(good.astype(np.int32)),
        "float64": tf.constant(good.astype(np.float64)),
        "uint8_to_float_signature": tf.constant(good.astype(np.uint8)),
    }
    errors = {}
    model = loaded["emb_fixed"]
    five = tf.constant(inputs["enc_5"].astype(np.float32))
    bad["batch_mismatch"] = (five, five[:3])
    for name, x in bad.items():
        if name == "batch_mismatch":
            tries = (("signature", lambda x: verify_sig(*x)), ("function", lambda x: verify_fn(*x)))
        else:
            tries = (
                ("signature", lambda x: model.signatures["serving_default"](images=x)),
                ("function", lambda x: model.serving_default(x)),
            )
        for how, fn in tries:
            try:
                fn(x)
                errors[f"{name}|{how}"] = None
            except Exception as e:  # noqa: BLE001
                errors[f"{name}|{how}"] = type(e).__name__ + ": " + str(e)[:2000]
            with open(root + "/errors.json", "w") as f:
                json.dump(errors, f)
    """
)


@pytest.fixture(scope="module")
def fresh(setup):
    root = setup["root"]
    script = root / "consumer.py"
    script.write_text(_SCRIPT)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [sys.executable, str(script), str(root), json.dumps(setup["paths"])],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    result = {"proc": proc}
    for name in ("report.json", "errors.json"):
        if (root / name).exists():
            result[name] = json.loads((root / name).read_text())
    if (root / "outputs.npz").exists():
        with np.load(root / "outputs.npz") as data:
            result["outputs"] = {k: data[k] for k in data.files}
    return result


def _outputs(fresh):
    if "outputs" not in fresh:
        pytest.fail(f"the TensorFlow-only process failed:\n{fresh['proc'].stderr[-4000:]}")
    return fresh["outputs"]


# === The fresh process ===


def test_fresh_process_loads_without_fsl_and_keras(fresh):
    _outputs(fresh)
    report = fresh["report.json"]
    # TF 2.21's `import tensorflow` imports keras eagerly when it can; here it
    # cannot (blocked), so nothing from the keras or fsl packages is loaded,
    # before or after loading and calling every SavedModel.
    assert report["blocked"] == [True, True]
    assert report["modules"] == ["fsl", "keras"]  # the two blocking placeholders
    assert report["keras_after_calls"] == []


@pytest.mark.parametrize("signature", ["serving_default", "serve_uint8"])
@pytest.mark.parametrize("batch", BATCH_SIZES)
def test_embedding_export_matches_model(setup, fresh, signature, batch):
    out = _outputs(fresh)
    encoder, inputs = setup["encoder"], setup["inputs"]
    expected = _l2n(_predict(encoder, _np_preprocess(inputs[f"enc_{batch}"], "fixed")))
    got = out[f"emb_fixed|{signature}|{batch}|embeddings"]
    assert got.shape == (batch, 8) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("batch", BATCH_SIZES)
def test_embedding_export_resizes_then_prewhitens(setup, fresh, batch):
    import tensorflow as tf

    out = _outputs(fresh)
    raw = setup["inputs"][f"resize_{batch}"]
    resized = tf.image.resize(
        raw.astype("float32"), ENC_HWC[:2], method="bilinear", antialias=True
    ).numpy()
    expected = _l2n(_predict(setup["encoder"], _np_preprocess(resized, "prewhiten")))
    for signature in ("serving_default", "serve_uint8"):
        got = out[f"emb_resize|{signature}|{batch}|embeddings"]
        np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0)


def _pair_embeddings(setup, model_key, a_key, b_key, preprocessing, normalize, batch):
    """The in-Keras embeddings of a verifier's two inputs, and the normalisation."""
    model, inputs = setup[model_key], setup["inputs"]
    norm = _l2n if normalize else (lambda e: e)
    ea = norm(_predict(model, _np_preprocess(inputs[f"{a_key}_{batch}"], preprocessing)))
    eb = norm(_predict(model, _np_preprocess(inputs[f"{b_key}_{batch}"], preprocessing)))
    return ea, eb, norm


@pytest.mark.parametrize(
    "kind, model_key, a_key, b_key, preprocessing, metric, normalize",
    [
        ("verifier_face", "facenet", "face_a", "face_b", None, "L2", True),
        ("verifier_enc", "encoder", "enc", "enc_b", "fixed", "squared-L2", False),
    ],
)
@pytest.mark.parametrize("batch", BATCH_SIZES)
def test_pair_verifier_matches_model(
    setup, fresh, kind, model_key, a_key, b_key, preprocessing, metric, normalize, batch
):
    out = _outputs(fresh)
    threshold = setup["thresholds"][kind]
    ea, eb, norm = _pair_embeddings(setup, model_key, a_key, b_key, preprocessing, normalize, batch)
    expected = _np_distance(ea, eb, metric)
    for signature in ("serving_default", "serve_uint8"):
        distance = out[f"{kind}|{signature}|{batch}|distance"]
        same = out[f"{kind}|{signature}|{batch}|same"]
        assert distance.shape == (batch,) and same.shape == (batch,)
        assert same.dtype == np.bool_
        np.testing.assert_allclose(distance, expected, atol=ATOL, rtol=0)
        np.testing.assert_array_equal(same, expected <= threshold)
        np.testing.assert_allclose(
            out[f"{kind}|{signature}|{batch}|threshold"], np.full(batch, threshold), rtol=1e-6
        )
    np.testing.assert_allclose(out[f"{kind}|attr_threshold"], threshold, rtol=1e-6)
    if batch == 5:
        same = out[f"{kind}|serving_default|5|same"]
        assert same.any() and not same.all(), "the threshold should split the pairs"
        if kind == "verifier_face":
            assert same[0] and distance[0] < 1e-3  # identical images


@pytest.mark.parametrize("case", _S_NORM_CASES, ids=[c[0] for c in _S_NORM_CASES])
@pytest.mark.parametrize("batch", BATCH_SIZES)
def test_s_norm_verifier_matches_numpy(setup, fresh, case, batch):
    """The baked-in S-norm equals fsl.evaluation.s_norm_distances (float64)."""
    from fsl.evaluation import s_norm_distances

    kind, model_key, a_key, b_key, preprocessing, metric, normalize = case
    out = _outputs(fresh)
    threshold = setup["thresholds"][kind]
    ea, eb, norm = _pair_embeddings(setup, model_key, a_key, b_key, preprocessing, normalize, batch)
    expected = s_norm_distances(ea, eb, norm(setup["cohorts"][kind]), metric)
    for signature in ("serving_default", "serve_uint8"):
        got = {name: out[f"{kind}|{signature}|{batch}|{name}"]
               for name in ("distance", "raw_distance", "same", "threshold")}
        np.testing.assert_allclose(got["distance"], expected, atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(got["raw_distance"], _np_distance(ea, eb, metric),
                                   atol=ATOL, rtol=0)
        np.testing.assert_array_equal(got["same"], expected <= threshold)
        np.testing.assert_allclose(got["threshold"], np.full(batch, threshold), rtol=1e-6)
    np.testing.assert_allclose(out[f"{kind}|attr_threshold"], threshold, rtol=1e-6)
    if batch == 5:
        assert got["same"].any() and not got["same"].all(), "the threshold should split the pairs"
    info = export.export_info(setup["paths"][kind])
    assert info["score_norm"] == "s-norm" and info["cohort_size"] == len(setup["cohorts"][kind])


def test_s_norm_verifier_bad_cohort(setup, tmp_path):
    facenet = setup["facenet"]
    dim = facenet.output_shape[-1]
    with pytest.raises(ValueError, match=r"cohort.shape=\(1, "):
        export.export_pair_verifier(facenet, tmp_path / "a", 0.5, preprocessing=None,
                                    cohort=np.ones((1, dim)))
    with pytest.raises(ValueError, match=rf"dimension {dim}.*cohort.shape=\(3, {dim + 1}\)"):
        export.export_pair_verifier(facenet, tmp_path / "b", 0.5, preprocessing=None,
                                    cohort=np.ones((3, dim + 1)))
    # A negative threshold is an S-norm threshold: only with a cohort.
    with pytest.raises(ValueError, match="threshold=-0.5"):
        export.export_pair_verifier(facenet, tmp_path / "c", -0.5, preprocessing=None)
    assert not any(tmp_path.iterdir())  # nothing written by the failed calls


@pytest.mark.parametrize("signature", ["serving_default", "serve_uint8"])
@pytest.mark.parametrize("batch", BATCH_SIZES)
def test_mtfl_export_matches_model(setup, fresh, signature, batch):
    """Landmarks come back in pixels of the image fed in, also when it was resized."""
    import tensorflow as tf

    out = _outputs(fresh)
    raw = setup["inputs"][f"mtfl_{batch}"].astype("float32")
    h, w = raw.shape[1:3]
    if (h, w) != MTFL_HWC[:2]:  # batch 5: fed at 40x30, resized to 16x24
        raw = tf.image.resize(raw, MTFL_HWC[:2], method="bilinear", antialias=True).numpy()
    expected = _predict(setup["mtfl"], _np_preprocess(raw, "unit"))
    lm = expected["landmarks"]  # x1..x5, y1..y5 in [0, 1]
    expected_px = np.stack([lm[:, :5] * w, lm[:, 5:] * h], axis=-1)  # [N, 5, (x, y)]
    got = out[f"mtfl|{signature}|{batch}|landmarks"]
    assert got.shape == (batch, 5, 2)
    np.testing.assert_allclose(got, expected_px, atol=ATOL * max(h, w), rtol=0)
    for task, classes in (("gender", 2), ("smile", 2), ("glasses", 2), ("pose", 5)):
        got = out[f"mtfl|{signature}|{batch}|{task}"]
        assert got.shape == (batch, classes)
        np.testing.assert_allclose(got, expected[task], atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    "case, expected",
    [
        ("rank3", "(None, 12, 10, 1)|[?,12,10,1]"),
        ("channels", "(None, 12, 10, 1)|[?,12,10,1]"),
        ("int32", "float"),
        ("float64", "float"),
        ("uint8_to_float_signature", "float"),
        ("batch_mismatch", "same batch size"),
    ],
)
@pytest.mark.parametrize("how", ["signature", "function"])
def test_bad_inputs_are_rejected(fresh, case, expected, how):
    proc = fresh["proc"]
    assert proc.returncode == 0, f"the TF-only process crashed:\n{proc.stderr[-4000:]}"
    message = fresh["errors.json"][f"{case}|{how}"]
    assert message is not None, f"{case} input was accepted by the {how}"
    assert any(part in message for part in expected.split("|")), message


# === In-process API ===


def test_load_exported_and_input_spec(setup):
    import tensorflow as tf

    loaded = export.load_exported(setup["paths"]["emb_fixed"])
    spec = export.signature_input_spec(loaded)
    assert spec == {"images": tf.TensorSpec((None, *ENC_HWC), tf.float32, name="images")}
    spec = export.signature_input_spec(setup["paths"]["verifier_face"], "serve_uint8")
    assert sorted(spec) == ["image_a", "image_b"]
    assert spec["image_a"].dtype == tf.uint8
    assert tuple(spec["image_a"].shape) == (None, *FACENET_HWC)
    resize_spec = export.signature_input_spec(setup["paths"]["emb_resize"])
    assert tuple(resize_spec["images"].shape) == (None, None, None, 1)
    info = export.export_info(setup["paths"]["verifier_enc"])
    assert info["metric"] == "squared-L2" and info["preprocessing"] == "fixed"
    assert info["threshold"] == pytest.approx(setup["thresholds"]["verifier_enc"])
    with pytest.raises(KeyError, match="serve_float64"):
        export.signature_input_spec(loaded, "serve_float64")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        export.load_exported(setup["root"] / "nowhere")
    plain = setup["root"] / "plain_tf_module"
    tf.saved_model.save(tf.Module(), str(plain))
    with pytest.raises(ValueError, match="not written by fsl.export"):
        export.export_info(plain)


@pytest.mark.parametrize("kind", ["emb_fixed", "verifier_face", "verifier_snorm", "mtfl"])
def test_an_empty_batch_gives_empty_outputs(setup, kind):
    # Batch norm's kernels failed on a batch of 0 (the facenet model has it).
    import tensorflow as tf

    loaded = export.load_exported(setup["paths"][kind])
    signature = loaded.signatures["serving_default"]
    spec = export.signature_input_spec(loaded)
    empty = {name: tf.zeros([0, *[d or 24 for d in s.shape[1:]]], s.dtype)
             for name, s in spec.items()}
    outputs = signature(**empty)
    assert outputs and all(v.shape[0] == 0 for v in outputs.values()), outputs
    one = {name: tf.zeros([1, *t.shape[1:]], t.dtype) for name, t in empty.items()}
    assert all(v.shape[0] == 1 for v in signature(**one).values())


@pytest.mark.parametrize("model_key", ["encoder", "facenet", "mtfl"])
def test_keras_file_round_trip(setup, tmp_path, model_key):
    model = setup[model_key]
    x = _np_preprocess(_images(np.random.default_rng(1), 3, model.input_shape[1:3]), "unit")
    path = tmp_path / f"{model_key}.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    before, after = _predict(model, x), _predict(reloaded, x)
    if isinstance(before, dict):
        assert sorted(before) == sorted(after)
        for k in before:
            np.testing.assert_array_equal(after[k], before[k])
    else:
        np.testing.assert_array_equal(after, before)


# === Overwrite protection and validation ===


def _tiny_encoder():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(2, 3)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def test_overwrite_protection(tmp_path):
    model = _tiny_encoder()
    target = tmp_path / "out"
    target.mkdir()
    export.export_embedding_model(model, target)  # an empty folder is fine
    assert (target / "saved_model.pb").is_file()
    keep = target / "keep.txt"
    keep.write_text("do not delete")
    with pytest.raises(FileExistsError, match=str(target)):
        export.export_embedding_model(model, target)
    with pytest.raises(FileExistsError, match=str(target)):
        export.export_pair_verifier(model, target, threshold=1.0)
    with pytest.raises(FileExistsError, match=str(target)):
        export.export_mtfl_model(models.mtfl_model((16, 16, 1), bottleneck=4), target)
    assert keep.read_text() == "do not delete"
    path = export.export_embedding_model(model, target, overwrite=True)
    assert path == str(target)
    assert not keep.exists() and (target / "saved_model.pb").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary left behind
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(FileExistsError, match="not a directory"):
        export.export_embedding_model(model, a_file, overwrite=True)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda m, d: export.export_embedding_model(m, d, preprocessing="zscore"),
         ValueError, "preprocessing='zscore'"),
        (lambda m, d: export.export_embedding_model(m, d, overwrite="yes"),
         TypeError, "overwrite='yes'"),
        (lambda m, d: export.export_embedding_model("model", d),
         TypeError, "Received: model of type str"),
        (lambda m, d: export.export_embedding_model(m, 3), TypeError, "export_dir=3"),
        (lambda m, d: export.export_pair_verifier(m, d, threshold=-1.0),
         ValueError, "threshold=-1.0"),
        (lambda m, d: export.export_pair_verifier(m, d, threshold=float("nan")),
         ValueError, "threshold=nan"),
        (lambda m, d: export.export_pair_verifier(m, d, threshold="0.5"),
         TypeError, "threshold='0.5'"),
        (lambda m, d: export.export_pair_verifier(m, d, threshold=1.0, metric="manhattan"),
         ValueError, "metric='manhattan'"),
        (lambda m, d: export.export_mtfl_model(m, d), ValueError, "output shapes"),
    ],
)
def test_invalid_arguments(tmp_path, call, error, match):
    with pytest.raises(error, match=match):
        call(_tiny_encoder(), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_rejects_double_standardisation_and_bad_models(tmp_path):
    inputs = keras.Input((8, 8, 1))
    x = Standardize("unit")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    with pytest.raises(ValueError, match="already standardises"):
        export.export_embedding_model(model, tmp_path / "a", preprocessing="fixed")
    wrapped = models.embedding_model(model)  # nested: still detected
    with pytest.raises(ValueError, match="already standardises"):
        export.export_pair_verifier(wrapped, tmp_path / "b", threshold=1.0)
    a, b = keras.Input((8, 8, 1)), keras.Input((8, 8, 1))
    two = keras.Model([a, b], keras.layers.Concatenate()([a, b]))
    with pytest.raises(ValueError, match="exactly one image input"):
        export.export_embedding_model(two, tmp_path / "c")
    vector = keras.Input((5,))
    with pytest.raises(ValueError, match=r"Received: input shape \(None, 5\)"):
        export.export_embedding_model(
            keras.Model(vector, keras.layers.Dense(2)(vector)), tmp_path / "d"
        )
    assert list(tmp_path.iterdir()) == []


def test_other_backends_get_a_clear_error(tmp_path, monkeypatch):
    from fsl.backend import BackendError

    encoder, mtfl = _tiny_encoder(), models.mtfl_model((16, 16, 1), bottleneck=4)
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(BackendError, match="SavedModel and needs.*KERAS_BACKEND=tensorflow"):
        export.export_embedding_model(encoder, tmp_path / "x")
    with pytest.raises(RuntimeError, match="backend='jax'"):
        export.export_pair_verifier(encoder, tmp_path / "x", threshold=1.0)
    with pytest.raises(RuntimeError, match="KERAS_BACKEND=tensorflow"):
        export.export_mtfl_model(mtfl, tmp_path / "x")
    assert not (tmp_path / "x").exists()
