"""Data-parallel training over two processes on 127.0.0.1, on the backend
under test: ``"multi-worker"`` (``tf.distribute.MultiWorkerMirroredStrategy``,
``TF_CONFIG``) on TensorFlow, ``"jax-data-parallel"`` (``keras.distribution``'s
environment variables) on JAX.

``tests/multiprocess_run.py`` trains a small face run (two epochs of two
P x K batches) in two processes, one CPU device each, and alone on two
logical devices (``"mirrored"`` / ``"jax-data-parallel"``): the same global
batches, so the weights must agree. Then process 1 is ended after the first
epoch: process 0 fails with the engine's error and fsl's note, and both
resume from their own checkpoints and finish in step.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest

import fsl  # noqa: F401  (registers the layers model.keras names)

pytestmark = pytest.mark.backend_agnostic

SCRIPT = pathlib.Path(__file__).with_name("multiprocess_run.py")
BACKEND = keras.backend.backend()
if BACKEND not in ("jax", "tensorflow"):
    pytest.skip(f"several training processes are TensorFlow's and JAX's engines; the backend "
                f"is {BACKEND}", allow_module_level=True)
#: What the surviving process's error says when its peer stopped.
PEER_GONE = {"jax": "Gloo", "tensorflow": "unhealthy (stopped sending heartbeats)"}


def _free_ports(count: int) -> list[int]:
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


def _env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("KERAS_DISTRIBUTION_") and k != "TF_CONFIG"}
    return {**env, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1", **extra}


def _process_env(index, ports):
    if BACKEND == "jax":
        return _env(KERAS_DISTRIBUTION_JOB_ADDRESSES=f"127.0.0.1:{ports[0]}",
                    KERAS_DISTRIBUTION_NUM_PROCESSES="2", KERAS_DISTRIBUTION_PROCESS_ID=str(index))
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    return _env(TF_CONFIG=json.dumps({"cluster": cluster,
                                      "task": {"type": "worker", "index": index}}))


def _alone(orl_dir, out, run):
    done = subprocess.run([sys.executable, str(SCRIPT), str(orl_dir), str(out), run,
                           "--backend", BACKEND, "--devices", "2"], env=_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def _together(orl_dir, out, run, *options):
    ports = _free_ports(2)
    procs = [subprocess.Popen(
        [sys.executable, str(SCRIPT), str(orl_dir), str(out), run, "--backend", BACKEND,
         *options],
        env=_process_env(i, ports), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)]
    results = []
    for proc in procs:
        try:
            _, err = proc.communicate(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
        results.append((proc.returncode, err))
    return results


def _weights(folder):
    model = keras.saving.load_model(folder / "model.keras")
    return [np.asarray(w) for w in model.get_weights()]


def _gap(a, b):
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))


def test_two_processes_train_as_one_and_resume_after_one_stops(orl_dir, tmp_path):
    _alone(orl_dir, tmp_path, "alone")
    results = _together(orl_dir, tmp_path, "two")
    assert [code for code, _ in results] == [0, 0], [err[-2000:] for _, err in results]
    # Process 0 writes the run, process 1 a folder of its own.
    assert (tmp_path / "two" / "metrics.json").is_file()
    assert (tmp_path / "two-process1" / "metrics.json").is_file()
    alone, two = _weights(tmp_path / "alone"), _weights(tmp_path / "two")
    assert _gap(two, alone) <= 1e-4, _gap(two, alone)
    assert _gap(_weights(tmp_path / "two-process1"), two) <= 1e-6

    (code0, err0), (code1, _) = _together(orl_dir, tmp_path, "cut", "--die-after", "0")
    assert code1 == 3
    assert code0 == 2 and "FAILED:" in err0, err0[-3000:]
    assert PEER_GONE[BACKEND] in err0, err0[-3000:]
    assert "start them all again with resume=True" in err0, err0[-3000:]
    results = _together(orl_dir, tmp_path, "cut", "--resume")
    assert [code for code, _ in results] == [0, 0], [err[-2000:] for _, err in results]
    for folder in ("cut", "cut-process1"):
        config = json.loads((tmp_path / folder / "config.json").read_text())
        assert (config["status"], config["resumed_from_epoch"]) == ("finished", 1), folder
    # Each process restored its own checkpoint of the same epoch: still in step.
    assert _gap(_weights(tmp_path / "cut-process1"), _weights(tmp_path / "cut")) <= 1e-6
