"""Every notebook runs top to bottom in fast mode (FSL_FAST=1), offline.

Marked ``notebook`` and deselected by default (they take minutes); CI runs them
with ``pytest -m notebook``. A notebook that raises fails its test.
"""

from __future__ import annotations

import pathlib

import pytest
from conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))

pytestmark = pytest.mark.notebook


def test_notebooks_exist():
    assert NOTEBOOKS, "no notebooks found in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_fast_mode(path: pathlib.Path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="needs the [notebooks] extra")
    nbclient = pytest.importorskip("nbclient", reason="needs the [notebooks] extra")
    monkeypatch.setenv("FSL_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("FSL_RUNS_DIR", str(tmp_path / "saved_models"))
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    errors = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert not errors, f"{path.name}: {errors[0]['ename']}: {errors[0]['evalue']}"
    code = "".join(c.source for c in nb.cells if c.cell_type == "code")
    for banned in ("tf.placeholder", "tf.Session", "Lambda(", "tensorflow_addons"):
        assert banned not in code, f"{path.name} uses {banned}"
