"""Data-parallel training on 4 logical CPU devices equals one device.

``tests/distributed_step.py`` runs, in a fresh process on the active
backend (TensorFlow: ``MirroredStrategy``; JAX: ``DataParallel``), one SGD
step of every mining loss with global and with per-replica mining, on 4
devices and on one. With global mining the weight changes (minus the
gradients) and the reported loss equal one device's on the whole batch; with
per-replica mining they differ, which shows that the comparison can fail.
The same for one step of the margin heads' cross-entropy.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

pytestmark = pytest.mark.backend_agnostic

SCRIPT = pathlib.Path(__file__).with_name("distributed_step.py")
LOSSES = ["semihard", "hard", "batch-all", "lifted", "multi-similarity", "circle"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("distributed") / "runs.json"
    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend(), TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, str(SCRIPT), str(out)], env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert len(report["devices"]) >= 4, report["devices"]
    pairs = {}
    for run in report["runs"]:
        key = (run["loss"], run["mining"], run.get("batch_norm"))
        pairs.setdefault(key, {})[run["where"]] = (
            run["value"], np.concatenate([np.asarray(d) for d in run["delta"]]))
        if "state" in run:
            pairs.setdefault(("state", run["loss"]), {})[run["where"]] = run["state"]
    return pairs


def _difference(pair):
    (one_value, one), (many_value, many) = pair["one"], pair["many"]
    scale = max(1.0, float(np.abs(one).max()))
    return abs(one_value - many_value) / max(1.0, abs(one_value)), \
        float(np.abs(one - many).max()) / scale


@pytest.mark.parametrize("loss", LOSSES)
def test_global_mining_equals_one_device_and_per_replica_does_not(runs, loss):
    value_gap, gradient_gap = _difference(runs[(loss, "global", None)])
    assert value_gap <= 1e-5 and gradient_gap <= 1e-5, (value_gap, gradient_gap)
    value_gap, gradient_gap = _difference(runs[(loss, "replica", None)])
    assert gradient_gap > 1e-3, gradient_gap  # 8 rows per replica mine other triplets


@pytest.mark.parametrize("head", ["ArcFace", "CosFace"])
def test_margin_head_step_equals_one_device(runs, head):
    value_gap, gradient_gap = _difference(runs[(head, "head", None)])
    assert value_gap <= 1e-5 and gradient_gap <= 1e-5, (value_gap, gradient_gap)


def test_adaface_norm_statistics(runs):
    (mean_one, std_one), (mean_many, std_many) = (runs[("state", "AdaFace")][w]
                                                  for w in ("one", "many"))
    assert mean_many == pytest.approx(mean_one, rel=1e-6)
    value_gap, gradient_gap = _difference(runs[("AdaFace", "head", None)])
    if keras.backend.backend() == "tensorflow":
        # MirroredStrategy: each replica moves the statistics by its own rows' norms,
        # as the paper's code does on each GPU; the variables average the replicas'
        # updates (aggregation="mean"), which for the mean is the whole batch's
        # but not for the standard deviation, and the margins follow.
        assert std_many != pytest.approx(std_one, rel=1e-6)
        assert 1e-6 < gradient_gap <= 1e-2, gradient_gap
    else:
        # DataParallel: the jitted step sees the global batch.
        assert std_many == pytest.approx(std_one, rel=1e-6)
        assert value_gap <= 1e-5 and gradient_gap <= 1e-5, (value_gap, gradient_gap)


def test_batch_normalization_statistics(runs):
    plain = _difference(runs[("hard", "global", "plain")])[1]
    if keras.backend.backend() == "tensorflow":
        # MirroredStrategy: plain batch norm normalises each replica's rows by
        # their own statistics; synchronized=True all-reduces them.
        assert plain > 1e-4, plain
        assert _difference(runs[("hard", "global", "sync")])[1] <= 1e-5
    else:
        # DataParallel: the jitted step normalises the global batch.
        assert plain <= 1e-5, plain


def test_train_facenet_distributed_equals_one_device(orl_dir, tmp_path):
    """train_facenet's fast run (no dropout, no augmentation: see
    distributed_step._trainer) with the backend's engine and without."""
    out = tmp_path / "trainer.json"
    env = dict(os.environ, KERAS_BACKEND=keras.backend.backend(), TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, str(SCRIPT), str(out), "--trainer", str(orl_dir),
                           str(tmp_path / "runs")], env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    one, many = (json.loads(out.read_text())["trainer"][w] for w in ("one", "many"))
    gap = max(float(np.abs(np.asarray(a) - np.asarray(b)).max())
              for a, b in zip(one["weights"], many["weights"], strict=True))
    if keras.backend.backend() == "tensorflow":
        np.testing.assert_allclose(many["loss"], one["loss"], rtol=1e-5)
        assert gap <= 1e-4, gap
    else:
        # XLA's sharded reductions add in another order, and Adam's first steps
        # (about lr * g / |g|) turn that rounding on near-zero gradients into up
        # to lr per step, which the second step's loss (in the epoch's mean) and
        # the recomputed batch-norm statistics then show: the losses agree to
        # 6e-4, the weights only roughly. The step itself is equal: with plain
        # SGD this comparison gives 3e-7 (and the SGD test above, 1e-5).
        np.testing.assert_allclose(many["loss"], one["loss"], rtol=2e-3)
        assert gap <= 0.05, gap


def test_process_settings_are_checked_before_anything_runs(monkeypatch, tmp_path):
    from fsl.training import distribution, train_facenet

    assert (distribution.process_count(), distribution.process_run_name(None)) == (1, None)
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "2")
    monkeypatch.setenv("KERAS_DISTRIBUTION_PROCESS_ID", "1")
    assert distribution.process_run_name("r") == "r-process1"
    with pytest.raises(ValueError, match=r"same run name.*Received: run=None"):
        distribution.process_run_name(None)
    with pytest.raises(ValueError, match=r"must be 'jax-data-parallel'. Received: "
                                         r"distribution='mirrored'"):
        distribution.join_processes("mirrored")
    with pytest.raises(ValueError, match=r"must be 'jax-data-parallel'. Received: "
                                         r"distribution=None"):
        train_facenet(tmp_path, output_dir=tmp_path, run="r")
    monkeypatch.setenv("KERAS_DISTRIBUTION_PROCESS_ID", "2")
    with pytest.raises(ValueError, match=r"below KERAS_DISTRIBUTION_NUM_PROCESSES=2. "
                                         r"Received: KERAS_DISTRIBUTION_PROCESS_ID=2"):
        distribution.process_index()
    monkeypatch.setenv("KERAS_DISTRIBUTION_PROCESS_ID", "one")
    with pytest.raises(ValueError, match=r"non-negative integer. Received: "
                                         r"KERAS_DISTRIBUTION_PROCESS_ID='one'"):
        distribution.process_index()
    assert not (tmp_path / "r").exists()


def test_tf_config_names_the_processes_and_is_checked(monkeypatch, tmp_path):
    from fsl.training import distribution, train_facenet

    monkeypatch.delenv("KERAS_DISTRIBUTION_NUM_PROCESSES", raising=False)
    cluster = {"chief": ["h0:1"], "worker": ["h1:1", "h2:1"]}

    def config(**task):
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))

    # The chief counts first, then the workers in their order.
    for task, index in ((dict(type="chief", index=0), 0), (dict(type="worker", index=1), 2)):
        config(**task)
        assert (distribution.process_count(), distribution.process_index()) == (3, index)
    assert distribution.process_run_name("r") == "r-process2"
    with pytest.raises(ValueError, match=r"TF_CONFIG asks for several training processes: "
                                         r"distribution must be 'multi-worker'. Received: "
                                         r"distribution='mirrored'"):
        distribution.join_processes("mirrored")
    with pytest.raises(ValueError, match=r"distribution must be 'multi-worker'. Received: "
                                         r"distribution=None"):
        train_facenet(tmp_path, output_dir=tmp_path, run="r")
    config(type="worker", index=2)
    with pytest.raises(ValueError, match=r"task must be one of its cluster's .*Received: task="
                                         r"\{'type': 'worker', 'index': 2\}"):
        distribution.process_index()
    monkeypatch.setenv("TF_CONFIG", "{cluster")
    with pytest.raises(ValueError, match=r"TF_CONFIG must be JSON.*Received: "
                                         r"TF_CONFIG='\{cluster'"):
        distribution.process_count()
    config(type="worker", index=0)
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "2")
    with pytest.raises(ValueError, match=r"Both KERAS_DISTRIBUTION_NUM_PROCESSES \(JAX\) and "
                                         r"TF_CONFIG"):
        distribution.process_count()
    assert not (tmp_path / "r").exists()
    # One task (or none) is one process.
    monkeypatch.delenv("KERAS_DISTRIBUTION_NUM_PROCESSES")
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["h0:1"]},
                                                "task": {"type": "worker", "index": 0}}))
    assert (distribution.process_count(), distribution.process_index()) == (1, 0)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="mends Keras's TensorFlow trainer (the multi-worker strategy's)")
def test_multi_worker_fit_fixes_last_one_fit_and_step_aside(monkeypatch, caplog):
    from keras.src.backend.tensorflow import trainer

    from fsl.training import multi_worker

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    keras_reduce = trainer.reduce_per_replica
    with multi_worker.fit_fixes(model):
        assert trainer.reduce_per_replica is not keras_reduce
        assert "_maybe_symbolic_build" in vars(model)
        # Outside a multi-worker strategy, Keras's own reduction answers.
        import tensorflow as tf

        value = tf.constant([1.0, 3.0])
        np.testing.assert_allclose(
            trainer.reduce_per_replica({"v": value}, tf.distribute.get_strategy(), "auto")["v"],
            keras_reduce({"v": value}, tf.distribute.get_strategy(), "auto")["v"])
    assert trainer.reduce_per_replica is keras_reduce
    assert "_maybe_symbolic_build" not in vars(model)
    # A Keras whose trainer is not the one mended: a warning, and fit as Keras has it.
    monkeypatch.setattr(multi_worker, "_trainer_module", lambda: None)
    with caplog.at_level("WARNING", logger="fsl.training.multi_worker"):
        with multi_worker.fit_fixes(model):
            assert trainer.reduce_per_replica is keras_reduce
    assert "is not the one fsl mends" in caplog.text
