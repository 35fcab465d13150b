"""Shared fixtures: golden values, the ORL faces, seeds, backend.

* ``shared_dir``: ``$FSL_SHARED_DIR`` or ``<repo>/../shared``.
* ``orl_dir``: ``$FSL_DATA_DIR/orl_faces`` or ``<shared>/data/orl_faces``. Tests
  that need it skip with a reason when it is absent, and fail instead when
  ``CI=true`` (CI must exercise them).
* Tests marked ``backend_agnostic`` use only ``keras.ops`` code; CI runs them a
  second time with ``KERAS_BACKEND=jax``.
"""

from __future__ import annotations

import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _shared_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("FSL_SHARED_DIR", REPO.parent / "shared"))


def require_path(path: pathlib.Path, what: str) -> pathlib.Path:
    """Return ``path`` if it exists; else skip (locally) or fail (CI=true)."""
    if path.exists():
        return path
    message = f"{what} not found at {path}; needed by this test"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: this test must run in CI)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def shared_dir() -> pathlib.Path:
    return require_path(_shared_dir(), "the shared/ folder")


@pytest.fixture(scope="session")
def golden():
    """TFA 0.23's loss values (``tests/fixtures/make_tfa_losses.py`` made them)."""
    with np.load(REPO / "tests" / "fixtures" / "tfa_losses.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="session")
def orl_dir() -> pathlib.Path:
    if "FSL_DATA_DIR" in os.environ:
        path = pathlib.Path(os.environ["FSL_DATA_DIR"]) / "orl_faces"
    else:
        path = _shared_dir() / "data" / "orl_faces"
    return require_path(path, "the ORL faces (the AT&T 'Database of Faces': folders s1..s40 "
                        "of 10 PGM photos each; unpack them into <DIR>/orl_faces and set "
                        "FSL_DATA_DIR=<DIR>)")


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    yield


@pytest.fixture(scope="session")
def backend() -> str:
    return keras.backend.backend()
