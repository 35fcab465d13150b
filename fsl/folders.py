"""Folders ``fsl`` writes: who owns them, who is writing them, and writes that survive a crash.

* Ownership: every run folder and export ``fsl`` creates holds a marker file,
  ``.fsl`` (JSON: its kind, when, which ``fsl``). ``overwrite`` replaces only
  a folder with that marker (or, for folders written before markers, one
  that ``legacy`` recognises); anything else is refused, naming the folder.
  A symbolic link is resolved first, and the folder it points to is checked.
* Locks: ``FolderLock`` holds an OS lock (``fcntl.flock``) on ``.fsl-lock``
  inside the folder, with the owner's pid in it, while a process writes
  there; a second writer is refused with an error naming the first. The
  OS drops the lock when its process dies, so a lock file left by a dead
  process is stale: it is taken over with a warning naming that pid.
* ``atomic_write_text``: a temporary file, fsync, rename, fsync of the
  folder: a reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import logging
import os
import pathlib
import shutil
from collections.abc import Callable

from fsl._checks import PathLike

logger = logging.getLogger(__name__)

MARKER = ".fsl"
LOCK = ".fsl-lock"
KINDS = ("run", "export")


class FolderLockedError(FileExistsError):
    """Another live process is writing the folder."""


# === Atomic writes ===


def _fsync_dir(folder: pathlib.Path) -> None:
    with contextlib.suppress(OSError):  # not every file system syncs folders
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a synced temporary file and a rename."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def atomic_save(path: PathLike, save: Callable[[pathlib.Path], None]) -> None:
    """``save(tmp)`` to a temporary sibling with the same suffix, then rename
    it over ``path`` (e.g. ``model.save`` for a ``.keras`` file). The
    temporary name ends with the whole name of ``path`` (Keras checks
    ``.keras`` and ``.weights.h5``)."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        save(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


# === Ownership ===


def mark(folder: PathLike, kind: str) -> None:
    """Write the ownership marker of a folder ``fsl`` created."""
    import fsl

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}. Received: kind={kind!r}")
    info = {"kind": kind, "fsl": fsl.__version__,
            "created": datetime.datetime.now().isoformat(timespec="seconds")}
    atomic_write_text(pathlib.Path(folder) / MARKER, json.dumps(info) + "\n")


def owner_kind(folder: PathLike) -> str | None:
    """The kind in a folder's marker, or ``None`` (no marker, or not ``fsl``'s)."""
    try:
        info = json.loads((pathlib.Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return info.get("kind") if isinstance(info, dict) else None


def check_replaceable(folder: PathLike, kind: str,
                      legacy: Callable[[pathlib.Path], bool] | None = None) -> pathlib.Path:
    """The folder ``overwrite`` may replace, symbolic links resolved.

    Args:
        folder: an existing folder.
        kind: ``"run"`` or ``"export"``: the marker's kind it must have.
        legacy: recognises a folder of that kind written before markers.

    Returns:
        The resolved folder.

    Raises:
        FileExistsError: it is not a folder ``fsl`` wrote as ``kind``.
        FolderLockedError: a live process is writing it.
    """
    path = pathlib.Path(folder)
    resolved = path.resolve()
    via = f" (a link to {str(resolved)!r})" if path.is_symlink() else ""
    if not resolved.is_dir():
        raise FileExistsError(f"{str(path)!r}{via} is not a folder; refusing to replace it")
    if owner_kind(resolved) != kind and not (legacy is not None and legacy(resolved)):
        raise FileExistsError(
            f"{str(path)!r}{via} was not written by fsl as a {kind} folder (no {MARKER} "
            f"marker); refusing to replace it with overwrite. Choose another {kind} folder, "
            "or move it away yourself")
    with FolderLock(resolved):  # refuses while someone writes it
        pass
    return resolved


def replace_owned(folder: PathLike, kind: str,
                  legacy: Callable[[pathlib.Path], bool] | None = None) -> pathlib.Path:
    """Delete a folder ``check_replaceable`` allows; returns the resolved path."""
    resolved = check_replaceable(folder, kind, legacy)
    lock = FolderLock(resolved).acquire()  # nobody starts writing it meanwhile
    try:
        shutil.rmtree(resolved)
    finally:
        lock.release()
    return resolved


# === Locks ===


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FolderLock:
    """An exclusive OS lock on a folder while this process writes it.

    Args:
        folder: the folder (it must exist).

    Raises (on ``acquire`` / entering the context):
        FolderLockedError: another live process holds the lock; the message
            names its pid.

    Examples:

    ```python
    with FolderLock("saved_models/run"):
        ...  # no other process can overwrite or resume the run meanwhile
    ```
    """

    def __init__(self, folder: PathLike):
        self.folder = pathlib.Path(folder)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> FolderLock:
        import fcntl

        if self._fd is not None:
            return self
        path = self.folder / LOCK
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            owner = _read_pid(path)
            raise FolderLockedError(
                f"{str(self.folder)!r} is being written by another process"
                f"{f' (pid {owner})' if owner else ''}; wait for it to finish or stop it "
                "first") from None
        previous = _read_pid(path)
        if previous and previous != os.getpid():
            state = "no longer running" if not _alive(previous) else "holding no lock"
            logger.warning("Taking over the stale lock of %s left by pid %d (%s)",
                           self.folder, previous, state)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock (the lock file stays, empty: no stale pid)."""
        import fcntl

        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __del__(self):
        self.release()

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_pid(path: pathlib.Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


__all__ = [
    "FolderLock",
    "FolderLockedError",
    "KINDS",
    "LOCK",
    "MARKER",
    "atomic_save",
    "atomic_write_text",
    "check_replaceable",
    "mark",
    "owner_kind",
    "replace_owned",
]
