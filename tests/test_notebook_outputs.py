"""The committed notebook outputs carry no machine paths and no TensorFlow log lines
(``tools/scrub_notebook_outputs.py`` scrubs them after a full run)."""

from __future__ import annotations

import importlib.util
import json

import pytest
from conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
_SPEC = importlib.util.spec_from_file_location(
    "scrub_notebook_outputs", REPO / "tools" / "scrub_notebook_outputs.py")
scrub = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(scrub)


def _texts(notebook):
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            if "text" in output:
                yield "".join(output["text"])
            for key, value in output.get("data", {}).items():
                if key.startswith("text/"):
                    yield "".join(value)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_outputs_are_scrubbed(path):
    notebook = json.loads(path.read_text())
    bad = [line for text in _texts(notebook) for line in text.splitlines()
           if scrub.TF_LOG.search(line) or scrub.MACHINE_PATH.search(line)]
    assert bad == [], f"{path.name}: run tools/scrub_notebook_outputs.py; e.g. {bad[:2]}"


def test_scrub_drops_log_lines_and_rewrites_paths():
    text = ("I0000 00:00:1795492829.390198   15358 port.cc:153] oneDNN custom operations are on.\n"
            "runs in /tmp/fsl-runs-x and /work/shared/data/orl_faces, cache /root/.keras/a\n"
            "precision@1 0.98\n")
    assert scrub.scrub_text(text) == (
        "runs in $TMPDIR/fsl-runs-x and $FSL_DATA_DIR/orl_faces, cache ~/.keras/a\n"
        "precision@1 0.98\n")
    notebook = {"cells": [{"cell_type": "code", "outputs": [
        {"output_type": "stream", "name": "stderr",
         "text": ["WARNING: All log messages before absl::InitializeLog() is called\n"]},
        {"output_type": "stream", "name": "stdout", "text": ["ok /tmp/a\n"]}]}]}
    outputs = scrub.scrub_notebook(notebook)["cells"][0]["outputs"]
    assert outputs == [{"output_type": "stream", "name": "stdout", "text": ["ok $TMPDIR/a\n"]}]
    assert scrub.MACHINE_PATH.search("at /home/me/x") and not scrub.MACHINE_PATH.search(
        "at $TMPDIR/x")
