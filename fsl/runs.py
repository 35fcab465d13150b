"""The run folder: the public contract between training, evaluation and serving.

A run folder ``<output_dir>/<run>/`` holds:

* ``model.keras``: the trained model (reloads with no ``custom_objects``);
* ``embedding.keras``: the embedding model, for tasks that learn one;
* ``domain.npz``: the range of the training images' pixel statistics
  (``fsl.evaluation.domain.Domain``), for embedding tasks: the serving
  paths warn about inputs unlike them;
* ``config.json``: every argument, the seed, the data source actually used and
  the versions of Python, Keras, TensorFlow and the Keras backend;
* ``metrics.json``: what the run measured, with the per-epoch ``history``;
* ``history.csv``: one row per finished epoch (appended across resumes);
* ``logs/``: TensorBoard logs;
* ``backup/``: the checkpoints of the last two epochs
  (``fsl.checkpoint.RunCheckpoint``), present only while a run is
  unfinished: ``finish_run`` deletes it once ``metrics.json`` is written.

``config.json`` records ``task``, ``arguments``, ``status`` (``"running"``,
``"finished"``) and, for image tasks, ``preprocessing``: the
``fsl.preprocessing.Preprocessing`` the model was trained with, which every
serving path reads back (``RunDir.preprocessing()``).

This module is what the trainers write and what ``fsl evaluate``, ``fsl
embed``, ``fsl export``, the face commands and the benchmarks read: open a
run with ``open_run(path)``, load its models under the dtype policy they
were trained with (``RunDir.load_model``).
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import json
import logging
import math
import os
import pathlib
import platform
import shutil
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from fsl._checks import check_choice
from fsl.folders import FolderLock, atomic_save, atomic_write_text, mark, replace_owned

if TYPE_CHECKING:
    import keras

logger = logging.getLogger(__name__)

DEFAULT_OUTPUT_DIR = "saved_models"
MODEL_FILE = "model.keras"
EMBEDDING_FILE = "embedding.keras"
COHORT_FILE = "cohort.npy"
DOMAIN_FILE = "domain.npz"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
LOGS_DIR = "logs"
BACKUP_DIR = "backup"


def versions() -> dict[str, str]:
    """Versions of the software a run depends on (for ``config.json``)."""
    import keras

    import fsl

    info = {
        "fsl": fsl.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
    }
    try:
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
    except ImportError:  # pragma: no cover - tensorflow is a dependency
        info["tensorflow"] = None
    if keras.backend.backend() == "jax":
        import jax

        info["jax"] = jax.__version__
    return info


def tensorboard_available() -> bool:
    """Whether the ``tensorboard`` package (needed by the TensorBoard callback)
    is importable."""
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def to_jsonable(value: Any) -> Any:
    """Convert numpy scalars/arrays, paths and tuples to plain JSON values.

    Non-finite floats become ``None`` (JSON has no NaN).
    """
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, pathlib.PurePath):
        return str(value)
    return value


def _write_json(path: pathlib.Path, data: Mapping[str, Any]) -> None:
    atomic_write_text(path, json.dumps(to_jsonable(data), indent=2, sort_keys=True) + "\n")


def _legacy_run(path: pathlib.Path) -> bool:
    """A run folder written by an ``fsl`` from before ownership markers."""
    try:
        config = json.loads((path / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "task" in config and "fsl" in (
        config.get("versions") or {})


def read_json(path: str | pathlib.Path) -> dict[str, Any]:
    """Read a JSON file written by a run, with a clear error if it is missing."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No such file: {path}")
    return json.loads(path.read_text())


class RunDir:
    """Paths and files of one run folder.

    Args:
        path: the run folder.
    """

    def __init__(self, path: str | pathlib.Path):
        self.path = pathlib.Path(path)
        #: The ``fsl.folders.FolderLock`` held while this process writes the run.
        self.lock: FolderLock | None = None

    def release(self) -> None:
        """Drop the run's lock, if this process holds it."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def save_model(self, model: keras.Model, which: str = "model") -> pathlib.Path:
        """Save ``model.keras`` or ``embedding.keras`` atomically (a crash leaves
        the old file or the new one)."""
        paths = {"model": self.model_path, "embedding": self.embedding_path}
        if which not in paths:
            raise ValueError(f"which must be one of {sorted(paths)}. Received: which={which!r}")
        atomic_save(paths[which], model.save)
        return paths[which]

    # === Paths ===
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def model_path(self) -> pathlib.Path:
        return self.path / MODEL_FILE

    @property
    def embedding_path(self) -> pathlib.Path:
        return self.path / EMBEDDING_FILE

    @property
    def cohort_path(self) -> pathlib.Path:
        """Embeddings of the training faces, S-norm's cohort (face runs)."""
        return self.path / COHORT_FILE

    @property
    def domain_path(self) -> pathlib.Path:
        """The range of the training images' pixel statistics
        (``fsl.evaluation.domain.Domain``), for out-of-domain hints."""
        return self.path / DOMAIN_FILE

    def save_domain(self, pixels) -> None:
        """Fit and save the run's ``Domain`` on its training images (raw
        model-size pixels, 0..255)."""
        from fsl.evaluation.domain import Domain

        Domain.fit(pixels).save(self.domain_path)

    def read_domain(self):
        """The run's ``fsl.evaluation.domain.Domain``, or ``None`` if it has
        none (runs from before it was saved)."""
        from fsl.evaluation.domain import Domain

        return Domain.load(self.domain_path) if self.domain_path.is_file() else None

    @property
    def config_path(self) -> pathlib.Path:
        return self.path / CONFIG_FILE

    @property
    def metrics_path(self) -> pathlib.Path:
        return self.path / METRICS_FILE

    @property
    def history_path(self) -> pathlib.Path:
        return self.path / HISTORY_FILE

    @property
    def logs_dir(self) -> pathlib.Path:
        return self.path / LOGS_DIR

    @property
    def backup_dir(self) -> pathlib.Path:
        return self.path / BACKUP_DIR

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # === Files ===
    def write_config(self, config: Mapping[str, Any]) -> None:
        _write_json(self.config_path, config)

    def read_config(self) -> dict[str, Any]:
        return read_json(self.config_path)

    def write_metrics(self, metrics: Mapping[str, Any]) -> None:
        _write_json(self.metrics_path, metrics)

    def read_metrics(self) -> dict[str, Any]:
        return read_json(self.metrics_path)

    def load_model(self, which: str = "model") -> keras.Model:
        """``model.keras`` or ``embedding.keras``, loaded under the run's dtype policy.

        A model compiled under ``mixed_float16`` comes back with its
        ``LossScaleOptimizer`` (and that optimizer's saved state) only if the
        global dtype policy is ``mixed_float16`` while it loads; a plain
        ``keras.saving.load_model`` under the default float32 policy gives
        an unscaled optimizer and warns that it skipped the optimizer's
        variables, and fine-tuning it in float16 risks gradients that
        underflow. This loads under the ``mixed_precision`` recorded in
        ``config.json`` and restores the global policy afterwards.

        Args:
            which: ``"model"`` (the trained model, compiled) or
                ``"embedding"`` (the saved embedding model).

        Returns:
            The loaded Keras model.

        Raises:
            ValueError: ``which`` is neither.
            FileNotFoundError: the run has no such file.
        """
        import keras

        import fsl

        fsl.register_serializables()
        paths = {"model": self.model_path, "embedding": self.embedding_path}
        if which not in paths:
            raise ValueError(f"which must be one of {sorted(paths)}. Received: which={which!r}")
        if not paths[which].is_file():
            raise FileNotFoundError(f"{str(self.path)!r} has no {paths[which].name}")
        config = self.read_config() if self.config_path.is_file() else {}
        policy = check_precision((config.get("arguments") or {}).get("mixed_precision"))
        with dtype_policy(policy):
            return keras.saving.load_model(paths[which])

    def read_s_norm(self) -> tuple[np.ndarray, float]:
        """The S-norm cohort (``cohort.npy``) and ``s_norm_threshold`` of a face run.

        Raises:
            FileNotFoundError: if the run has no cohort or no S-norm threshold
                (it was not trained with ``score_norm="s-norm"``).
        """
        metrics = self.read_metrics() if self.metrics_path.is_file() else {}
        if not self.cohort_path.is_file() or "s_norm_threshold" not in metrics:
            raise FileNotFoundError(
                f"{str(self.path)!r} has no S-norm cohort ({self.cohort_path.name} and "
                "s_norm_threshold in metrics.json): train it with score_norm='s-norm', "
                "or use raw distances"
            )
        return np.load(self.cohort_path), float(metrics["s_norm_threshold"])

    def preprocessing(self):
        """The ``fsl.preprocessing.Preprocessing`` the run's model was trained with.

        Raises:
            ValueError: if ``config.json`` records none (a run of a task
                without image input).
        """
        from fsl.preprocessing import Preprocessing

        recorded = self.read_config().get("preprocessing")
        if not recorded:
            raise ValueError(f"{str(self.config_path)!r} records no preprocessing")
        return Preprocessing.from_config(recorded)

    def set_threshold(self, threshold: float, calibration: Mapping[str, Any],
                      key: str = "threshold") -> dict[str, Any]:
        """Replace the run's ``threshold`` (or ``s_norm_threshold``) in
        ``metrics.json``, keeping the old value: ``threshold_history`` gets an
        entry with the key, the previous and the new value and the
        ``calibration`` report. Returns the updated metrics.

        Raises:
            FileNotFoundError: the run has no ``metrics.json``.
            ValueError: an unknown ``key`` or a threshold that is not finite.
        """
        if key not in ("threshold", "s_norm_threshold"):
            raise ValueError("key must be 'threshold' or 's_norm_threshold'. "
                             f"Received: key={key!r}")
        if not math.isfinite(float(threshold)):
            raise ValueError(f"threshold must be finite. Received: threshold={threshold!r}")
        metrics = self.read_metrics()
        metrics.setdefault("threshold_history", []).append({
            "key": key, "previous": metrics.get(key), "threshold": float(threshold),
            "set": datetime.datetime.now().isoformat(timespec="seconds"),
            "calibration": dict(calibration),
        })
        metrics[key] = float(threshold)
        self.write_metrics(metrics)
        return metrics

    def callbacks(self, extra: Iterable[keras.callbacks.Callback] | None = None):
        """The run's callbacks: checkpoint/restore, per-epoch CSV, stop on NaN, TensorBoard.

        ``RunCheckpoint`` comes first so that the checkpoint of an epoch is
        written before anything after it (e.g. an interruption) runs.
        ``extra`` callbacks come last.
        """
        import keras

        from fsl.checkpoint import RunCheckpoint

        callbacks = [
            RunCheckpoint(self.backup_dir, keep=2),
            keras.callbacks.CSVLogger(str(self.history_path), append=True),
            # fsl's losses turn NaN or inf embeddings into a NaN loss: stop there.
            keras.callbacks.TerminateOnNaN(),
        ]
        if tensorboard_available():
            callbacks.append(
                keras.callbacks.TensorBoard(
                    log_dir=str(self.logs_dir), write_graph=False, profile_batch=0
                )
            )
        else:
            logger.warning(
                "TensorBoard logs are NOT written to %s: the 'tensorboard' package "
                "is not installed (pip install tensorboard)",
                self.logs_dir,
            )
        return callbacks + list(extra or [])

    def history(self) -> dict[str, list[float]]:
        """Per-epoch history from ``history.csv``, across resumed runs.

        If an interruption left an epoch logged twice, the last row wins.
        """
        if not self.history_path.is_file():
            return {}
        with self.history_path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        by_epoch: dict[int, dict[str, str]] = {}
        for row in rows:
            if row.get("epoch") in (None, "", "epoch"):
                continue
            by_epoch[int(row["epoch"])] = row
        history: dict[str, list[float]] = {}
        for epoch in sorted(by_epoch):
            for key, value in by_epoch[epoch].items():
                if key == "epoch":
                    continue
                # CSVLogger writes "NA" for a metric an epoch did not log.
                number = float("nan") if value in (None, "", "NA") else float(value)
                history.setdefault(key, []).append(number)
        return {
            key: values
            for key, values in history.items()
            if not all(math.isnan(v) for v in values)
        }

    def completed_epochs(self) -> int:
        """Epochs done according to the newest checkpoint in ``backup/`` (0 if none)."""
        from fsl.checkpoint import completed_epochs

        return completed_epochs(self.backup_dir)


def _validate_name(run: str) -> str:
    if not isinstance(run, str) or not run.strip():
        raise ValueError(f"run must be a non-empty string. Received: run={run!r}")
    if run in (".", "..") or "/" in run or "\\" in run:
        raise ValueError(
            f"run must be a plain folder name (no path separators). Received: run={run!r}"
        )
    if len(os.fsencode(run)) > 255:  # NAME_MAX of Linux, macOS and Windows file systems
        raise ValueError(
            f"run must be a folder name of at most 255 bytes. Received: run={run[:40]!r}... "
            f"({len(os.fsencode(run))} bytes)"
        )
    return run


def prepare_run(
    task: str,
    output_dir: str | pathlib.Path | None = None,
    run: str | None = None,
    overwrite: bool = False,
    resume: bool = False,
) -> RunDir:
    """Create (or reopen, to resume) the folder of a training run.

    Args:
        task: task name, e.g. ``"siamese-mnist"``; the default run name is the
            task name plus a timestamp.
        output_dir: parent folder of all runs. Defaults to ``./saved_models``.
        run: run folder name. Defaults to ``"<task>-<YYYYmmdd-HHMMSS>"``; with
            ``resume=True`` and no name, the latest unfinished run of ``task``.
        overwrite: delete an existing run folder of that name first.
        resume: continue an interrupted run in an existing folder (its
            ``backup/`` checkpoint restores the weights and the epoch).

    Returns:
        The ``RunDir``.

    Raises:
        ValueError: if both ``overwrite`` and ``resume`` are set, or the name
            is not a plain folder name.
        FileExistsError: if the folder exists and neither ``overwrite`` nor
            ``resume`` is set, or ``resume`` is set on a finished run.
        FileNotFoundError: if ``resume`` is set and there is nothing to resume.
    """
    if overwrite and resume:
        raise ValueError(
            "overwrite and resume cannot both be set. Received: overwrite=True, resume=True"
        )
    root = pathlib.Path(output_dir if output_dir is not None else DEFAULT_OUTPUT_DIR)
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"output_dir is not a folder. Received: output_dir={str(root)!r}")
    if run is None and resume:
        candidates = sorted(
            p for p in root.glob(f"{task}-*") if (p / BACKUP_DIR).is_dir()
        ) if root.is_dir() else []
        if not candidates:
            raise FileNotFoundError(
                f"resume=True but there is no unfinished {task!r} run in {str(root)!r}; "
                "name one with run=..."
            )
        run = candidates[-1].name
    if run is None:
        run = f"{task}-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    run_dir = RunDir(root / _validate_name(run))
    path = run_dir.path
    if resume:
        if not path.is_dir():
            raise FileNotFoundError(f"Cannot resume: run folder {str(path)!r} does not exist")
        run_dir.lock = FolderLock(path.resolve()).acquire()
        if run_dir.metrics_path.is_file() and not run_dir.backup_dir.exists():
            run_dir.release()
            raise FileExistsError(
                f"Cannot resume: run {str(path)!r} already finished; use "
                "overwrite to train it again or another run name"
            )
        logger.info("Resuming run %s from epoch %d", path, run_dir.completed_epochs())
        return run_dir
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise FileExistsError(
                f"Run folder {str(path)!r} already exists; use overwrite=True "
                "(--overwrite) to replace it, resume=True (--resume) to continue "
                "it, or another run name"
            )
        logger.warning("Overwriting run folder %s", path)
        resolved = replace_owned(path, "run", _legacy_run)
        resolved.mkdir(parents=True)
    else:
        path.mkdir(parents=True)
    mark(path, "run")
    run_dir.lock = FolderLock(path.resolve()).acquire()
    return run_dir


def open_run(path: str | pathlib.Path) -> RunDir:
    """Open an existing, finished run folder (for evaluate / embed / export).

    Raises:
        FileNotFoundError: if the folder, its ``config.json`` or its
            ``model.keras`` is missing.
    """
    run_dir = RunDir(path)
    if not run_dir.path.is_dir():
        raise FileNotFoundError(f"Run folder not found: {str(run_dir.path)!r}")
    for required in (run_dir.config_path, run_dir.model_path):
        if not required.is_file():
            raise FileNotFoundError(
                f"{str(run_dir.path)!r} is not a finished run: {required.name} is missing"
            )
    return run_dir


# === Dtype policy ===


#: ``mixed_precision`` values of the trainers: Keras dtype policies.
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def check_precision(value: Any) -> str:
    """``None`` / ``"float32"`` (full precision) or a mixed policy name."""
    return check_choice("mixed_precision", "float32" if value is None else value, PRECISIONS)


@contextlib.contextmanager
def dtype_policy(name: str):
    """Build models under the Keras dtype policy ``name``, then restore the old one.

    Layers take the global policy when they are created, so a model built
    inside ``with dtype_policy("mixed_bfloat16"):`` computes in bfloat16 with
    float32 weights (its output layers stay float32, see
    ``fsl.models.OUTPUT_DTYPE``), and keeps that policy when saved and
    reloaded. ``compile`` wraps the optimizer in a ``LossScaleOptimizer``
    for ``mixed_float16``.
    """
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


# === Run life cycle ===


def start_run(
    task: str,
    arguments: Mapping[str, Any],
    output_dir,
    run,
    overwrite: bool,
    resume: bool,
) -> RunDir:
    """Create (or reopen) the run folder, locked for this process, and write a
    first ``config.json``; ``finish_run`` / ``fail_run`` drop the lock."""
    run_dir = prepare_run(task, output_dir, run, overwrite=overwrite, resume=resume)
    config = {
        "task": task,
        "run": run_dir.name,
        "arguments": dict(arguments),
        "seed": arguments.get("seed"),
        "versions": versions(),
        "status": "running",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    try:
        if resume and run_dir.config_path.is_file():
            previous = run_dir.read_config()
            _check_resumed_arguments(run_dir, task, previous, config["arguments"])
            config["resumed_from_epoch"] = run_dir.completed_epochs()
            config["started"] = previous.get("started", config["started"])
        run_dir.write_config(config)
    except BaseException:
        run_dir.release()
        raise
    return run_dir


#: Arguments a resumed run may change: how it runs and reports, not what it
#: trains (its checkpoint holds weights and optimizer state of the first ones).
# distribution: with global-batch mining, a step is the same on any number of devices.
RESUMABLE_CHANGES = frozenset({"resume", "overwrite", "verbose", "jit_compile", "output_dir",
                               "run", "distribution"})


def _check_resumed_arguments(
    run_dir: RunDir, task: str, previous: Mapping[str, Any], arguments: Mapping[str, Any]
) -> None:
    """A resumed run must go on with the task and arguments it started with:
    another loss, size or schedule would train on (or fail to restore) a
    checkpoint made for different ones. Arguments the first config does not
    record (added to ``fsl`` since) are not compared."""
    if previous.get("task", task) != task:
        raise ValueError(
            f"Cannot resume {run_dir.path} as a {task!r} run: it is a "
            f"{previous.get('task')!r} run. Received: task={task!r}"
        )
    before = dict(previous.get("arguments") or {})
    # Compare as config.json stores them (tuples as lists, other types as text).
    now = json.loads(json.dumps(dict(arguments), default=str))
    # Runs from before data folders were recorded absolute hold them as given:
    # a relative one counts from the working folder the run resumes in.
    if isinstance(before.get("data_dir"), str):
        before["data_dir"] = os.path.abspath(before["data_dir"])
    # Runs from before the options were normalised record None for float32.
    if "mixed_precision" in before:
        before["mixed_precision"] = check_precision(before["mixed_precision"])
    changed = [
        f"{key}: {before[key]!r} -> {now[key]!r}"
        for key in sorted(set(before) & set(now) - RESUMABLE_CHANGES)
        if before[key] != now[key]
    ]
    if changed:
        raise ValueError(
            f"resume=True continues {run_dir.path} with the arguments it started with; "
            f"these differ: {'; '.join(changed)}. Pass the same values, or start another "
            "run (another run name)"
        )


def update_config(run_dir: RunDir, **entries: Any) -> dict:
    config = run_dir.read_config()
    config.update(entries)
    run_dir.write_config(config)
    return config


def finish_run(
    run_dir: RunDir,
    metrics: dict[str, Any],
    history: Mapping[str, list[float]],
    train_seconds: float,
    data_source: str,
) -> dict[str, Any]:
    """Write ``metrics.json``, mark the config finished and delete the
    checkpoints in ``backup/``."""
    metrics = dict(metrics)
    metrics["history"] = {k: list(v) for k, v in history.items()}
    metrics["epochs_completed"] = len(next(iter(history.values()), []))
    metrics["train_seconds"] = train_seconds
    metrics["data_source"] = data_source
    run_dir.write_metrics(metrics)
    update_config(run_dir, status="finished", finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
    shutil.rmtree(run_dir.backup_dir, ignore_errors=True)
    run_dir.release()
    return metrics


def fail_run(run_dir: RunDir, error: BaseException) -> None:
    """Mark a run that died ``failed`` in ``config.json``, with the error, and
    drop its lock (a resume continues it from its last checkpoint)."""
    try:
        update_config(run_dir, status="failed", failed=time.strftime("%Y-%m-%dT%H:%M:%S"),
                      error=f"{type(error).__name__}: {error}")
    except OSError as write_error:  # e.g. the disk that failed the run
        logger.error("Could not mark %s failed: %s", run_dir.path, write_error)
    finally:
        run_dir.release()
