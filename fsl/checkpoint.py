"""The checkpoint of an unfinished run: the last two epochs, written atomically.

``RunCheckpoint`` takes the place of ``keras.callbacks.BackupAndRestore`` in
every trainer. At the end of each epoch it writes the model's weights and
optimizer state to ``epoch-NNNN.weights.h5`` in the run's ``backup/``
folder through a temporary file, an fsync and a rename (a kill or a full
disk leaves the previous files whole), then deletes all but the newest
``keep`` of them. When ``fit`` starts it restores the newest checkpoint that
loads; one that is truncated or corrupt is skipped with a warning naming it
and the one used instead. It deletes nothing when ``fit`` ends: the last
epoch's checkpoint stays until the run is finished (``fsl.runs.finish_run``
removes ``backup/``), so a run killed after its last epoch, while it saves
or evaluates, resumes without training again.
"""

from __future__ import annotations

import logging
import pathlib
import re

import keras

from fsl._checks import PathLike, check_int
from fsl.folders import atomic_save

logger = logging.getLogger(__name__)

_PATTERN = re.compile(r"^epoch-(\d+)\.weights\.h5$")
# The files of keras.callbacks.BackupAndRestore (runs started before this
# callback): read, never written.
_KERAS_WEIGHTS = "latest.weights.h5"
_KERAS_METADATA = "training_metadata.json"


class CheckpointError(OSError):
    """Every checkpoint of a run failed to load."""


def checkpoints(backup_dir: PathLike) -> list[tuple[int, pathlib.Path]]:
    """The checkpoints in ``backup_dir``, newest first, as (epochs done, file).

    Includes a ``keras.callbacks.BackupAndRestore`` checkpoint
    (``latest.weights.h5`` with its ``training_metadata.json``) if present.
    """
    import json

    folder = pathlib.Path(backup_dir)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _PATTERN.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    metadata = folder / _KERAS_METADATA
    if (folder / _KERAS_WEIGHTS).is_file() and metadata.is_file():
        try:
            found.append((int(json.loads(metadata.read_text())["epoch"]),
                          folder / _KERAS_WEIGHTS))
        except (ValueError, KeyError, TypeError):
            logger.warning("Ignoring %s: not a BackupAndRestore record", metadata)
    return sorted(found, key=lambda item: item[0], reverse=True)


def completed_epochs(backup_dir: PathLike) -> int:
    """Epochs done according to the newest checkpoint's name (0 if none)."""
    found = checkpoints(backup_dir)
    return found[0][0] if found else 0


class RunCheckpoint(keras.callbacks.Callback):
    """Save weights and optimizer state after every epoch; restore them when
    ``fit`` starts.

    Args:
        backup_dir: the folder of the checkpoints (created when needed).
        keep: how many of the newest checkpoints to keep (>= 1; 2 lets a
            corrupt newest one fall back to the one before).

    Raises:
        CheckpointError: from ``fit`` when checkpoints exist and none of
            them loads (naming each and its error): training from scratch
            would silently throw the run's epochs away.

    Example:

    >>> import tempfile
    >>> import numpy as np
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> folder = tempfile.mkdtemp()
    >>> _ = model.fit(np.zeros((4, 2)), np.zeros((4, 1)), epochs=3, verbose=0,
    ...               callbacks=[RunCheckpoint(folder)])
    >>> [epochs for epochs, _ in checkpoints(folder)]
    [3, 2]
    """

    def __init__(self, backup_dir: PathLike, keep: int = 2):
        super().__init__()
        self.backup_dir = pathlib.Path(backup_dir)
        self.keep = check_int("keep", keep, minimum=1)

    def on_train_begin(self, logs=None):
        # A process killed while writing leaves its temporary file (the run
        # folder is locked: no other process is writing one now).
        if self.backup_dir.is_dir():
            for stale in self.backup_dir.glob(".tmp-*"):
                logger.warning("Removing %s, left by a process that died while writing it", stale)
                stale.unlink(missing_ok=True)
        found = checkpoints(self.backup_dir)
        if not found:
            return
        if not self.model.built:
            raise ValueError("RunCheckpoint restores into a built model; build "
                             f"{self.model.name!r} (call it on a batch) before fit")
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        failures = []
        for epochs, path in found:
            try:
                self.model.load_weights(path)
            except Exception as error:  # noqa: BLE001 - h5py raises OSError, KeyError, ValueError...
                failures.append(f"{path.name}: {type(error).__name__}: {error}")
                logger.warning("Checkpoint %s does not load (%s: %s)%s", path,
                               type(error).__name__, error,
                               "; trying the one before" if (epochs, path) != found[-1] else "")
                continue
            if failures:
                logger.warning("Resuming from %s (epoch %d) instead", path, epochs)
            self.model._initial_epoch = epochs
            return
        raise CheckpointError(
            f"No checkpoint in {str(self.backup_dir)!r} loads: {'; '.join(failures)}. "
            "Delete the folder to train this run from scratch (or start it again with "
            "--overwrite)"
        )

    def on_epoch_end(self, epoch, logs=None):
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        path = self.backup_dir / f"epoch-{epoch + 1:04d}.weights.h5"
        atomic_save(path, self.model.save_weights)
        for _, old in checkpoints(self.backup_dir)[self.keep:]:
            old.unlink(missing_ok=True)
            if old.name == _KERAS_WEIGHTS:
                (self.backup_dir / _KERAS_METADATA).unlink(missing_ok=True)
