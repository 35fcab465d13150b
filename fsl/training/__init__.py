"""Trainers: one function per task, each writing a run folder.

Tasks (``fsl train <task>`` on the command line):

* ``"siamese-mnist"``: ``train_siamese_mnist``, siamese contrastive network on
  MNIST (the main job);
* ``"triplet-mnist"``: ``train_triplet_mnist``, embedding trained with online
  triplet mining;
* ``"mtfl"``: ``train_mtfl``, multitask landmarks + attributes model;
* ``"facenet"``: ``train_facenet``, FaceNet-style face embedding on a face
  folder with an identity-disjoint split;
* ``"pretrained"``: ``pretrained_run``, a pretrained network of
  ``fsl.pretrained`` written as a run (``fsl pretrained NAME``), its
  threshold chosen on a face folder's training people.

Every run writes ``<output_dir>/<run>/`` with ``model.keras``,
``config.json``, ``metrics.json``, TensorBoard ``logs/`` and, while
unfinished, a ``backup/`` checkpoint used by ``resume=True`` (the public run
format: ``fsl.runs``). A run folder is never overwritten unless
``overwrite=True``.

Modules: ``options`` (``RunOptions``, the run-control arguments every
trainer takes), ``losses`` (the trainers' loss names and options),
``presets`` (named recipes as data), ``distribution`` (the data-parallel
engines; ``multi_worker`` mends Keras's ``fit`` under TensorFlow's
multi-worker strategy), and one module per task.

``evaluate_run(path)`` re-evaluates a finished run from its saved model.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from fsl.runs import (
    DEFAULT_OUTPUT_DIR,
    RunDir,
    open_run,
    prepare_run,
)

#: task name -> (module, trainer, evaluator). Modules load on first use.
TASKS: dict[str, tuple[str, str, str]] = {
    "siamese-mnist": ("fsl.training.mnist", "train_siamese_mnist", "evaluate_run"),
    "triplet-mnist": ("fsl.training.mnist", "train_triplet_mnist", "evaluate_run"),
    "mtfl": ("fsl.training.mtfl", "train_mtfl", "evaluate_run"),
    "facenet": ("fsl.training.facenet", "train_facenet", "evaluate_run"),
    "pretrained": ("fsl.training.pretrained", "pretrained_run", "evaluate_run"),
}
_TRAINER_NAMES = {trainer: (module, trainer) for module, trainer, _ in TASKS.values()}


def _check_task(task: str) -> tuple[str, str, str]:
    if task not in TASKS:
        raise ValueError(f"Unknown task. Expected one of {list(TASKS)}. Received: task={task!r}")
    return TASKS[task]


def get_evaluator(task: str) -> Callable[[RunDir, dict], dict]:
    """The function re-evaluating a finished run of ``task``."""
    module, _, evaluator = _check_task(task)
    return getattr(importlib.import_module(module), evaluator)


#: Names read on first use from the modules that import Keras.
_LAZY_NAMES = {
    "LOSS_OPTIONS": "fsl.training.losses",
    "MARGIN_HEADS": "fsl.training.losses",
    "TRIPLET_LOSSES": "fsl.training.losses",
    "RunOptions": "fsl.training.options",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(_LAZY_NAMES[name]), name)
    if name in _TRAINER_NAMES:
        module, trainer = _TRAINER_NAMES[name]
        return getattr(importlib.import_module(module), trainer)
    raise AttributeError(f"module 'fsl.training' has no attribute {name!r}")


def evaluate_run(path) -> dict[str, Any]:
    """Re-evaluate a finished run folder with its saved model.

    Args:
        path: the run folder (``<output_dir>/<run>``).

    Returns:
        The task's metrics (as in ``metrics.json``, without the history),
        recomputed from ``model.keras`` / ``embedding.keras`` on the data
        recorded in ``config.json``.

    Raises:
        FileNotFoundError: if the folder, its config or its model is missing.
        ValueError: if the config names an unknown task.
    """
    run_dir = open_run(path)
    config = run_dir.read_config()
    task = config.get("task")
    if task not in TASKS:
        raise ValueError(
            f"Unknown task in {run_dir.config_path}. Expected one of "
            f"{list(TASKS)}. Received: task={task!r}"
        )
    return get_evaluator(task)(run_dir, config)


__all__ = [
    "DEFAULT_OUTPUT_DIR",
    "LOSS_OPTIONS",
    "MARGIN_HEADS",
    "RunDir",
    "RunOptions",
    "TASKS",
    "TRIPLET_LOSSES",
    "evaluate_run",
    "get_evaluator",
    "open_run",
    "prepare_run",
    "train_facenet",
    "train_mtfl",
    "train_siamese_mnist",
    "train_triplet_mnist",
]
