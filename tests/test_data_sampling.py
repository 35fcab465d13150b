"""fsl.data.sampling: P x K batch composition, epoch coverage, determinism, policies.

Batches are checked by brute force on their content (labels of every row),
not only on shapes.
"""

from __future__ import annotations

import logging
import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsl.data import sampling


def _assert_pk(batch_labels, p, k):
    """Exactly p distinct labels, k consecutive rows each."""
    batch_labels = np.asarray(batch_labels)
    assert batch_labels.shape == (p * k,)
    blocks = batch_labels.reshape(p, k)
    assert np.all(blocks == blocks[:, :1]), batch_labels
    assert len(set(blocks[:, 0].tolist())) == p, batch_labels


def _expected_batches(counts, p, k):
    groups = [math.ceil(n / k) for n in counts]
    return max(math.ceil(sum(groups) / p), max(groups))


# --- the epoch plan ------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(st.integers(1, 12), min_size=2, max_size=9),
    p=st.integers(1, 4),
    k=st.integers(1, 5),
    min_per_identity=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_plan_composition_and_coverage(counts, p, k, min_per_identity, seed):
    labels = np.repeat(np.arange(len(counts)) * 7, counts)  # non-contiguous ids
    kept = [c for c in counts if c >= min_per_identity]
    if p > len(kept):
        with pytest.raises(ValueError, match=f"p={p}"):
            sampling.pk_epoch_indices(labels, p, k, seed, 0, min_per_identity)
        return
    plan = sampling.pk_epoch_indices(labels, p, k, seed, 0, min_per_identity)
    assert plan.shape == (_expected_batches(kept, p, k), p * k)
    for row in plan:
        _assert_pk(labels[row], p, k)
    kept_ids = [i for i, c in enumerate(counts) if c >= min_per_identity]
    expected = np.flatnonzero(np.isin(labels, np.array(kept_ids) * 7))
    np.testing.assert_array_equal(np.unique(plan), expected)  # every kept example, nothing else


def test_plan_hand_derived_small_case():
    # counts 5, 2, 3 with k=2: groups 3 + 1 + 2 = 6; p=2 -> B = max(3, 3) = 3.
    labels = np.array([0] * 5 + [1] * 2 + [2] * 3)
    plan = sampling.pk_epoch_indices(labels, p=2, k=2, seed=5)
    assert plan.shape == (3, 4)
    for row in plan:
        _assert_pk(labels[row], 2, 2)
    # Identity 0 has 3 groups, one per batch; 6 groups fill 3 x 2 slots exactly,
    # so every other identity appears exactly its number of groups.
    per_batch = [set(labels[row].tolist()) for row in plan]
    assert all(0 in ids for ids in per_batch)
    assert sum(1 in ids for ids in per_batch) == 1
    assert sum(2 in ids for ids in per_batch) == 2
    # Within a group of K, no repeat when the identity has >= K examples.
    for row in plan:
        for group in row.reshape(2, 2):
            assert len(set(group.tolist())) == 2


def test_plan_is_deterministic_and_changes_with_epoch_and_seed():
    labels = np.repeat(np.arange(10), 6)
    a = sampling.pk_epoch_indices(labels, 4, 3, seed=1, epoch=0)
    np.testing.assert_array_equal(a, sampling.pk_epoch_indices(labels, 4, 3, seed=1, epoch=0))
    assert not np.array_equal(a, sampling.pk_epoch_indices(labels, 4, 3, seed=1, epoch=1))
    assert not np.array_equal(a, sampling.pk_epoch_indices(labels, 4, 3, seed=2, epoch=0))


def test_few_examples_are_sampled_with_replacement_up_to_k():
    labels = np.array([0] * 2 + [1] * 8 + [2] * 8)
    plan = sampling.pk_epoch_indices(labels, p=3, k=5, seed=0)
    groups_of_0 = [g for row in plan for g in row.reshape(3, 5) if labels[g[0]] == 0]
    assert groups_of_0
    for group in groups_of_0:
        counts = np.bincount(group, minlength=2)[:2]
        assert sorted(counts.tolist()) == [2, 3]  # both examples, floor/ceil(5 / 2)


def test_identities_below_min_per_identity_are_dropped_and_logged(caplog):
    labels = np.array([0, 1, 1, 2, 2, 3, 3])  # identity 0 has one example
    with caplog.at_level(logging.WARNING, logger="fsl.data.sampling"):
        plan = sampling.pk_epoch_indices(labels, p=2, k=2, seed=0)
    assert 0 not in plan
    assert "dropped 1 of 4 identities" in caplog.text
    kept_all = sampling.pk_epoch_indices(labels, p=2, k=2, seed=0, min_per_identity=1)
    groups = kept_all.reshape(-1, 2)
    assert [0, 0] in groups.tolist()  # the single example, repeated K times


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"p": 5}, "p=5"),
        ({"p": 0}, "p=0"),
        ({"k": 0}, "k=0"),
        ({"k": 1.5}, "k=1.5"),
        ({"seed": -2}, "seed=-2"),
        ({"min_per_identity": 0}, "min_per_identity=0"),
        ({"min_per_identity": 4, "p": 2}, "p=2"),
    ],
)
def test_bad_arguments_name_the_value(kwargs, match):
    args = {"labels": np.repeat(np.arange(4), 3), "p": 2, "k": 2} | kwargs
    with pytest.raises(ValueError, match=match):
        sampling.pk_epoch_indices(**args)
    if "seed" not in kwargs:
        with pytest.raises(ValueError, match=match):
            sampling.pk_batches(**args)


# --- tf.data pipelines ---------------------------------------------------------------


def test_pk_batches_iterations_follow_the_epoch_plans():
    labels = np.repeat(np.arange(6), [3, 4, 5, 2, 6, 4])
    ds = sampling.pk_batches(labels, p=3, k=2, seed=9)
    assert int(ds.cardinality()) == _expected_batches([3, 4, 5, 2, 6, 4], 3, 2)
    for epoch in range(2):
        got = np.stack([np.asarray(b) for b in ds])
        np.testing.assert_array_equal(got, sampling.pk_epoch_indices(labels, 3, 2, 9, epoch))
    again = np.stack([np.asarray(b) for b in sampling.pk_batches(labels, p=3, k=2, seed=9)])
    np.testing.assert_array_equal(again, sampling.pk_epoch_indices(labels, 3, 2, 9, 0))


def test_pk_dataset_gathers_matching_examples():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 8, size=60)
    x = np.arange(60, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    ds = sampling.pk_dataset(x, labels, p=4, k=3, seed=0)
    assert ds.element_spec[0].shape.as_list() == [12, 3]
    seen = []
    for xb, yb in ds:
        xb, yb = np.asarray(xb), np.asarray(yb)
        _assert_pk(yb, 4, 3)
        index = xb[:, 0].astype(int)
        np.testing.assert_array_equal(labels[index], yb)
        seen.extend(index.tolist())
    counts = np.bincount(labels)
    np.testing.assert_array_equal(np.unique(seen), np.flatnonzero(counts[labels] >= 2))


def test_pk_dataset_length_mismatch():
    with pytest.raises(ValueError, match="len\\(x\\)=3, len\\(y\\)=4"):
        sampling.pk_dataset(np.zeros((3, 2)), np.arange(4), p=1, k=1)


def _load_png(path):
    import tensorflow as tf

    image = tf.io.decode_png(tf.io.read_file(path), channels=1)
    return tf.image.resize(tf.cast(image, tf.float32) / 255.0, (28, 23))


def test_pk_file_dataset_on_orl_faces(orl_dir):
    import tensorflow as tf

    people = sorted(d for d in os.listdir(orl_dir) if d.startswith("s"))[:6]
    paths = [str(orl_dir / d / f) for d in people for f in sorted(os.listdir(orl_dir / d))]
    labels = np.array([int(os.path.basename(os.path.dirname(q))[1:]) for q in paths])
    ds = sampling.pk_file_dataset(paths, labels, p=3, k=4, load_fn=_load_png, seed=0)
    batches = list(ds)
    assert len(batches) == int(ds.cardinality()) == _expected_batches([10] * 6, 3, 4)
    first_images, first_labels = (np.asarray(t) for t in batches[0])
    assert first_images.shape == (12, 28, 23, 1)
    _assert_pk(first_labels, 3, 4)
    # Row 0 is the file the plan names, decoded independently.
    row0 = sampling.pk_epoch_indices(labels, 3, 4, seed=0, epoch=0)[0, 0]
    np.testing.assert_allclose(first_images[0], np.asarray(_load_png(tf.constant(paths[row0]))))


def test_pk_file_dataset_skips_missing_files_with_a_warning(tmp_path, caplog):
    import tensorflow as tf

    paths, labels = [], []
    for person in range(3):
        for j in range(3):
            path = tmp_path / f"{person}_{j}.png"
            pixels = np.full((4, 4, 1), 10 * person + j, dtype=np.uint8)
            tf.io.write_file(str(path), tf.io.encode_png(pixels))
            paths.append(str(path))
            labels.append(person)
    missing = str(tmp_path / "gone.png")
    paths.append(missing)
    labels.append(0)

    def load(path):
        return tf.io.decode_png(tf.io.read_file(path), channels=1)

    with caplog.at_level(logging.WARNING, logger="fsl.data.sampling"):
        ds = sampling.pk_file_dataset(paths, labels, p=2, k=2, load_fn=load, seed=0)
        batches = list(ds)
    assert f"skipping missing file {missing}" in caplog.text
    for images, batch_labels in batches:
        images, batch_labels = np.asarray(images), np.asarray(batch_labels)
        _assert_pk(batch_labels, 2, 2)
        np.testing.assert_array_equal(images[:, 0, 0, 0] // 10, batch_labels)
