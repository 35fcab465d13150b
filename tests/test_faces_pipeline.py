"""FacePipeline end to end on ORL, with an Eigenfaces embedder (no training).

Eigenfaces fitted on 30 ORL people embed 10 people never seen in the fit; the
pipeline must then verify, identify (with an unknown answer) and cluster them
the way a direct numpy computation on the same embeddings says it should.
"""

from __future__ import annotations

import numpy as np
import pytest

from fsl.data.faces import identity_split, list_faces, load_images_numpy
from fsl.evaluation import Eigenfaces, best_threshold, pair_distances
from fsl.faces.pipeline import (
    FacePipeline,
    NoFaceError,
    cluster_embeddings,
    list_images,
    save_cluster_grids,
)

SIZE = (56, 46)  # half of ORL's 112 x 92


@pytest.fixture(scope="module")
def orl_setup(orl_dir):
    faces = list_faces(orl_dir)
    train, test = identity_split(faces, test_identities=10, seed=0)
    x_train, _ = load_images_numpy(train, image_size=SIZE, standardize=None)
    eigen = Eigenfaces(n_components=40).fit(x_train.reshape(len(x_train), -1))

    def embedder(images):
        return eigen.transform(np.asarray(images).reshape(len(images), -1))

    return train, test, embedder


def _pipeline(embedder, **kwargs):
    kwargs.setdefault("threshold", 1.0)
    return FacePipeline(embedder, image_size=SIZE, channels=1, detect_faces=False, **kwargs)


def test_embed_matches_direct_embedding(orl_setup):
    _, test, embedder = orl_setup
    pipeline = _pipeline(embedder)
    x_test, _ = load_images_numpy(test, image_size=SIZE, standardize=None)
    got = np.stack([pipeline.embed(p) for p in test.paths[:5]])
    np.testing.assert_allclose(got, embedder(x_test[:5]), rtol=1e-4, atol=1e-3)


def test_verify_decides_with_the_threshold(orl_setup):
    _, test, embedder = orl_setup
    x_test, y_test = load_images_numpy(test, image_size=SIZE, standardize=None)
    emb = embedder(x_test)
    n = len(emb)
    d = pair_distances(np.repeat(emb, n, 0), np.tile(emb, (n, 1))).reshape(n, n)
    same_mask = (y_test[:, None] == y_test[None, :]) & ~np.eye(n, dtype=bool)
    same_pair = np.unravel_index(np.argmin(np.where(same_mask, d, np.inf)), d.shape)
    diff_pair = np.unravel_index(np.argmax(np.where(~same_mask & ~np.eye(n, dtype=bool), d, -1)), d.shape)
    d_same, d_diff = d[same_pair], d[diff_pair]
    assert d_same < d_diff
    threshold = float((d_same + d_diff) / 2)
    pipeline = _pipeline(embedder, threshold=threshold)
    result = pipeline.verify(test.paths[same_pair[0]], test.paths[same_pair[1]])
    assert result.same and result.distance == pytest.approx(d_same, rel=1e-3)
    result = pipeline.verify(test.paths[diff_pair[0]], test.paths[diff_pair[1]])
    assert not result.same and result.distance == pytest.approx(d_diff, rel=1e-3)
    assert result.threshold == threshold
    assert pipeline.verify(test.paths[0], test.paths[0]).distance == pytest.approx(0.0, abs=1e-6)


def test_identify_one_shot_with_unknown(orl_setup, tmp_path):
    _, test, embedder = orl_setup
    # Enrol 5 of the 10 unseen people with ONE photo each (one-shot).
    people = test.class_names[:5]
    for name in people:
        (tmp_path / "gallery" / name).mkdir(parents=True)
        first = next(p for p, l in zip(test.paths, test.labels) if test.class_names[l] == name)
        (tmp_path / "gallery" / name / "01.png").write_bytes(open(first, "rb").read())
    x_test, y_test = load_images_numpy(test, image_size=SIZE, standardize=None)
    emb = embedder(x_test)
    names = np.array([test.class_names[l] for l in y_test])
    # Threshold from the data, as the chapter should have done.
    d = pair_distances(emb[:, None].repeat(len(emb), 1).reshape(-1, emb.shape[1]),
                       emb[None].repeat(len(emb), 0).reshape(-1, emb.shape[1]))
    same = (names[:, None] == names[None, :]).reshape(-1).astype(int)
    threshold, _ = best_threshold(d, same)
    pipeline = _pipeline(embedder, threshold=threshold)
    gallery = pipeline.enroll(tmp_path / "gallery")
    assert sorted(gallery.names) == sorted(people)
    # Expected answers computed directly: nearest enrolled template, or None.
    templates = np.stack([emb[np.argmax(names == n)] for n in people])
    for index in range(0, len(test.paths), 7):
        dist = pair_distances(np.repeat(emb[[index]], 5, 0), templates)
        expected = people[int(np.argmin(dist))] if dist.min() <= threshold else None
        got = pipeline.identify(test.paths[index], gallery)
        assert got.name == expected
        # abs: a query that IS the enrolled photo is at distance ~0 (float noise).
        assert got.distance == pytest.approx(dist.min(), rel=1e-3, abs=1e-3)


def test_cluster_groups_match_direct_clustering(orl_setup, tmp_path):
    _, test, embedder = orl_setup
    folder = tmp_path / "photos"
    folder.mkdir()
    chosen = [p for p, l in zip(test.paths, test.labels) if l < 3]
    for k, path in enumerate(chosen):
        (folder / f"{k:02d}.png").write_bytes(open(path, "rb").read())
    pipeline = _pipeline(embedder)
    groups = pipeline.cluster(folder, n_clusters=3)
    assert sorted(len(v) for v in groups.values()) == sorted(
        np.bincount(cluster_embeddings(
            embedder(load_images_numpy(list_faces(tmp_path), image_size=SIZE, standardize=None)[0]),
            3)).tolist()
    )
    assert sum(len(v) for v in groups.values()) == len(chosen)
    written = save_cluster_grids(groups, tmp_path / "grids")
    assert len(written) == 3 and all(p.exists() for p in written)
    with pytest.raises(FileExistsError, match="grids"):
        save_cluster_grids(groups, tmp_path / "grids")


def test_detection_path_on_a_real_photo(orl_dir):
    """With MTCNN: ORL photos hold one face; a blank photo is a NoFaceError."""
    calls = []

    def embedder(images):
        calls.append(np.asarray(images).shape)
        return np.asarray(images).reshape(len(images), -1)[:, :8]

    pipeline = FacePipeline(embedder, image_size=64, channels=1, detect_faces=True)
    photo = sorted((orl_dir / "s01").glob("*.png"))[0]
    found = pipeline.faces(photo)
    assert len(found) == 1 and found[0][1].shape == (64, 64, 1)
    pipeline.embed(photo)
    assert calls == [(1, 64, 64, 1)]
    with pytest.raises(NoFaceError):
        pipeline.embed(np.full((120, 100, 3), 128, np.uint8))


def test_bad_arguments_name_the_value(tmp_path):
    with pytest.raises(ValueError, match="channels=2"):
        FacePipeline(lambda x: x, channels=2)
    with pytest.raises(ValueError, match="align='warp'"):
        FacePipeline(lambda x: x, align="warp")
    with pytest.raises(ValueError, match="threshold=-1"):
        FacePipeline(lambda x: x, threshold=-1)
    with pytest.raises(FileNotFoundError, match="nope"):
        list_images(tmp_path / "nope")
    with pytest.raises(ValueError, match="No images"):
        list_images(tmp_path)


def test_s_norm_pipeline_verifies_and_clusters_on_the_normalised_scale(orl_setup):
    """With a cohort (the 30 training people), the pipeline's distance is
    fsl.evaluation.s_norm_distances' and its threshold is on that scale."""
    from fsl.evaluation import s_norm_cross_distances, s_norm_distances

    train, test, embedder = orl_setup
    x_train, _ = load_images_numpy(train, image_size=SIZE, standardize=None)
    cohort = embedder(x_train)
    x_test, y_test = load_images_numpy(test, image_size=SIZE, standardize=None)
    emb = embedder(x_test)
    a, b = test.paths[0], test.paths[11]
    want = s_norm_distances(emb[[0]], emb[[11]], cohort)[0]
    # A negative threshold is valid on the S-norm scale (and only there).
    pipeline = _pipeline(embedder, cohort=cohort, threshold=want - 0.01)
    got = pipeline.verify(a, b)
    assert got.distance == pytest.approx(want, rel=1e-3, abs=1e-3) and got.same is False
    assert _pipeline(embedder, cohort=cohort, threshold=want + 0.01).verify(a, b).same is True
    # Agglomerative clustering cut at an S-norm threshold: the same groups
    # as cutting the S-norm distance matrix by hand (single pairs of people
    # whose S-norm distance is below the cut join, the rest stay apart).
    pick = [k for k, label in enumerate(y_test) if label < 3]
    sub = emb[pick]
    matrix = s_norm_cross_distances(sub, sub, cohort)
    off = matrix[~np.eye(len(sub), dtype=bool)]
    lowest = off.min()
    labels = cluster_embeddings(sub, None, threshold=lowest - 1.0, cohort=cohort)
    assert len(set(labels)) == len(sub)  # below every distance: all apart
    labels = cluster_embeddings(sub, None, threshold=off.max() + 1.0, cohort=cohort)
    assert len(set(labels)) == 1  # above every distance: one group
    # Between: the two closest faces join first (average linkage).
    i, j = np.unravel_index(np.argmin(np.where(np.eye(len(sub), dtype=bool), np.inf, matrix)),
                            matrix.shape)
    second = np.sort(np.unique(np.round(off, 12)))[1]
    labels = cluster_embeddings(sub, None, threshold=(lowest + second) / 2, cohort=cohort)
    assert len(set(labels)) == len(sub) - 1 and labels[i] == labels[j]
    by_count = cluster_embeddings(sub, 3, cohort=cohort)
    assert len(set(by_count)) == 3


def test_bad_cohort_names_the_value():
    with pytest.raises(ValueError, match=r"cohort.shape=\(1, 4\)"):
        FacePipeline(lambda x: x, cohort=np.ones((1, 4)))
    with pytest.raises(ValueError, match="NaN"):
        FacePipeline(lambda x: x, cohort=np.full((3, 4), np.nan))
