"""fsl.data.pairs: pair labels (1 = same class), balance, per-epoch redraw, eval pairs.

Images are their own index (``x[i] == i``), so every pair a pipeline yields is
decoded back to indices and checked against the labels by brute force.
"""

from __future__ import annotations

import numpy as np
import pytest

from fsl.data import pairs


def _labels(n_classes=5, per_class=8, singletons=0):
    y = np.repeat(np.arange(n_classes), per_class)
    return np.concatenate([y, n_classes + np.arange(singletons)])


def _index_images(n):
    return np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1)


def _check_pairs(y, i1, i2, same):
    """Brute-force check of the convention: same == 1 iff same class, no self pair."""
    assert same.dtype == np.float32
    assert set(np.unique(same)) <= {0.0, 1.0}
    for a, b, s in zip(i1, i2, same):
        assert (y[a] == y[b]) == (s == 1.0), (a, b, s)
        if s == 1.0:
            assert a != b


def _epoch(dataset):
    """All pairs of one iteration, decoded to indices."""
    i1, i2, same, sizes = [], [], [], []
    for (x1, x2), s in dataset:
        i1.append(np.asarray(x1).reshape(-1).astype(int))
        i2.append(np.asarray(x2).reshape(-1).astype(int))
        same.append(np.asarray(s))
        sizes.append(len(s))
    return np.concatenate(i1), np.concatenate(i2), np.concatenate(same), sizes


# --- sample_pair_indices --------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.5, 0.25, 1.0, 0.0])
def test_sample_pair_indices_labels_and_exact_balance(fraction):
    y = _labels(singletons=3)
    n = 200
    i1, i2, same = pairs.sample_pair_indices(y, n, seed=3, positive_fraction=fraction)
    _check_pairs(y, i1, i2, same)
    assert int(same.sum()) == int(np.floor(fraction * n))


def test_batches_are_balanced_and_anchors_cycle():
    y = _labels(n_classes=4, per_class=10)  # 40 images
    i1, i2, same = pairs.sample_pair_indices(y, 40, seed=1, batch_size=8)
    _check_pairs(y, i1, i2, same)
    assert [int(same[s : s + 8].sum()) for s in range(0, 40, 8)] == [4] * 5
    # 40 pairs over 40 images: every image is the anchor of exactly one pair.
    assert sorted(i1.tolist()) == list(range(40))
    i1, _, _ = pairs.sample_pair_indices(y, 100, seed=1)
    assert np.bincount(i1, minlength=40).min() >= 2  # 2.5 cycles of permutations


def test_negatives_reach_every_other_class():
    y = _labels(n_classes=4, per_class=25)
    i1, i2, same = pairs.sample_pair_indices(y, 2000, seed=0)
    neg = same == 0
    for c in range(4):
        partners = set(y[i2[neg & (y[i1] == c)]].tolist())
        assert partners == set(range(4)) - {c}


def test_singleton_classes_are_never_positive_anchors():
    y = _labels(n_classes=2, per_class=3, singletons=4)
    i1, i2, same = pairs.sample_pair_indices(y, 300, seed=0)
    _check_pairs(y, i1, i2, same)
    single = np.arange(6, 10)
    assert not np.isin(i1[same == 1], single).any()
    assert np.isin(i1[same == 0], single).any()  # still used as negatives


def test_all_singletons_cannot_make_positives():
    with pytest.raises(ValueError, match="positive_fraction=0.5"):
        pairs.sample_pair_indices(np.arange(5), 10)
    _, _, same = pairs.sample_pair_indices(np.arange(5), 10, positive_fraction=0.0)
    assert same.sum() == 0


# --- pair_dataset -----------------------------------------------------------------


def test_pair_dataset_shapes_labels_and_balance():
    y = _labels(n_classes=5, per_class=8)  # 40 images
    ds = pairs.pair_dataset(_index_images(40), y, batch_size=8, seed=0)
    spec = ds.element_spec
    assert spec[0][0].shape.as_list() == [8, 1, 1, 1]
    assert spec[1].dtype.name == "float32"
    i1, i2, same, sizes = _epoch(ds)
    assert sizes == [8] * 5
    _check_pairs(y, i1, i2, same)
    assert int(same.sum()) == 20
    assert sorted(i1.tolist()) == list(range(40))  # each image anchors one pair


def test_pair_dataset_redraws_each_epoch_and_is_deterministic():
    y = _labels(n_classes=5, per_class=8)
    x = _index_images(40)
    ds_a = pairs.pair_dataset(x, y, batch_size=16, seed=7)
    ds_b = pairs.pair_dataset(x, y, batch_size=16, seed=7)
    a0, a1 = _epoch(ds_a), _epoch(ds_a)
    b0, b1 = _epoch(ds_b), _epoch(ds_b)
    for a, b in ((a0, b0), (a1, b1)):
        for u, v in zip(a[:3], b[:3]):
            np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a0[1], a1[1])  # a new set of pairs
    assert a0[3] == [16, 16, 8]  # 40 pairs: the last batch is partial
    c0 = _epoch(pairs.pair_dataset(x, y, batch_size=16, seed=8))
    assert not np.array_equal(a0[1], c0[1])


def test_pair_dataset_pairs_per_epoch_and_fraction():
    y = _labels(n_classes=3, per_class=6)
    ds = pairs.pair_dataset(
        _index_images(18), y, batch_size=10, pairs_per_epoch=30, positive_fraction=0.3
    )
    i1, i2, same, sizes = _epoch(ds)
    assert sizes == [10, 10, 10]
    _check_pairs(y, i1, i2, same)
    assert int(same.sum()) == 9


def test_pair_dataset_trains_with_keras_fit():
    import keras

    y = _labels(n_classes=2, per_class=8)
    x = np.random.default_rng(0).random((16, 4, 4, 1)).astype("float32")
    a, b = keras.Input((4, 4, 1)), keras.Input((4, 4, 1))
    dense = keras.layers.Dense(1)
    out = dense(keras.layers.Flatten()(keras.layers.Subtract()([a, b])))
    model = keras.Model([a, b], out)
    model.compile("sgd", "mse")
    history = model.fit(
        pairs.pair_dataset(x, y, batch_size=8), epochs=2, shuffle=False, verbose=0
    )
    assert len(history.history["loss"]) == 2
    assert np.all(np.isfinite(history.history["loss"]))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"batch_size": 0}, "batch_size=0"),
        ({"batch_size": 2.5}, "batch_size=2.5"),
        ({"pairs_per_epoch": -3}, "pairs_per_epoch=-3"),
        ({"positive_fraction": 1.5}, "positive_fraction=1.5"),
        ({"seed": -1}, "seed=-1"),
    ],
)
def test_pair_dataset_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pairs.pair_dataset(_index_images(10), _labels(2, 5), **kwargs)


def test_pair_dataset_needs_two_classes_and_matching_lengths():
    with pytest.raises(ValueError, match="1 class"):
        pairs.pair_dataset(_index_images(4), np.zeros(4, int))
    with pytest.raises(ValueError, match="len\\(x\\)=4, len\\(y\\)=5"):
        pairs.pair_dataset(_index_images(4), np.arange(5))


# --- make_eval_pairs ----------------------------------------------------------------


def test_make_eval_pairs_one_positive_one_negative_per_image():
    y = _labels(n_classes=4, per_class=5)
    x = np.arange(20) * 10  # any array; values identify the image
    x1, x2, same = pairs.make_eval_pairs(x, y, seed=2)
    assert len(x1) == len(x2) == len(same) == 40
    np.testing.assert_array_equal(x1, np.repeat(x, 2))
    np.testing.assert_array_equal(same, np.tile([1.0, 0.0], 20))
    _check_pairs(y, x1 // 10, x2 // 10, same)
    again = pairs.make_eval_pairs(x, y, seed=2)
    np.testing.assert_array_equal(x2, again[1])
    other = pairs.make_eval_pairs(x, y, seed=3)
    assert not np.array_equal(x2, other[1])


def test_make_eval_pairs_rejects_single_example_classes():
    with pytest.raises(ValueError, match=r"one example: \[3\]"):
        pairs.make_eval_pairs(np.zeros(7), np.array([0, 0, 1, 1, 2, 2, 3]))
