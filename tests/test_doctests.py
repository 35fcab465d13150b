"""The Examples in the docstrings of fsl's core and evaluation modules run and give what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "fsl.distances",
    "fsl.mining",
    "fsl.losses",
    "fsl.losses.contrastive",
    "fsl.losses.triplet",
    "fsl.losses.structured",
    "fsl.preprocessing",
    "fsl.checkpoint",
    "fsl.training.presets",
    "fsl.layers",
    "fsl.heads",
    "fsl.index.calibration",
    "fsl.evaluation.verification",
    "fsl.evaluation.retrieval",
    "fsl.evaluation.recognition",
    "fsl.evaluation.clustering",
    "fsl.evaluation.landmarks",
    "fsl.evaluation.baselines",
    "fsl.evaluation.whitening",
    "fsl.evaluation.domain",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0, f"{name} has no docstring examples"
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
