"""The benchmark scripts run and print the JSON they promise (tiny sizes).

They measure speed and quality (README's numbers come from them); here only
their plumbing is checked, so that a change in the library cannot silently
break them.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.slow
def test_train_throughput_prints_records():
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "train_throughput.py"),
         "--backends", "tensorflow", "--only", "mnist_siamese", "--batch-sizes", "8",
         "--steps", "2", "--repeats", "1", "--jit", "off"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["benchmark"] == "train_throughput"
    (record,) = report["results"]
    assert "error" not in record, record
    assert record["framework"] == "keras-tensorflow" and record["batch_size"] == 8
    assert record["jit_compile"] is False
    # images/s counts both images of each pair: 2 * batch / (seconds per step).
    assert record["images_per_s"] == pytest.approx(2 * 8 / (record["ms_per_step"] / 1e3), rel=0.01)
