"""fsl.evaluation.baselines.Eigenfaces: against sklearn's PCA, exact
reconstruction, whitening, and the classic ORL recognition result."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA

from fsl.evaluation import precision_at_1
from fsl.evaluation.baselines import Eigenfaces, select_eigenfaces


def _data(seed=0, n=30, shape=(6, 5)):
    rng = np.random.default_rng(seed)
    # Low-rank structure plus noise, so the components are well separated.
    basis = rng.normal(size=(4, int(np.prod(shape))))
    weights = rng.normal(size=(n, 4)) * np.array([5.0, 3.0, 2.0, 1.0])
    flat = weights @ basis + 0.1 * rng.normal(size=(n, basis.shape[1])) + 7.0
    return flat.reshape((n,) + shape)


@pytest.mark.parametrize("whiten", [False, True])
@pytest.mark.parametrize("shape", [(6, 5), (12, 10)], ids=["svd", "gram"])
def test_matches_sklearn_pca_up_to_sign(whiten, shape):
    # 30 images of 30 pixels use the SVD; of 120 pixels, the N x N Gram matrix.
    images = _data(shape=shape)
    flat = images.reshape(len(images), -1)
    model = Eigenfaces(n_components=4, whiten=whiten).fit(images)
    reference = PCA(n_components=4, whiten=whiten, svd_solver="full").fit(flat)
    np.testing.assert_allclose(model.mean_, reference.mean_)
    np.testing.assert_allclose(model.explained_variance_, reference.explained_variance_,
                               rtol=1e-9)
    np.testing.assert_allclose(
        model.explained_variance_ratio_, reference.explained_variance_ratio_
    )
    signs = np.sign(np.sum(model.components_ * reference.components_, axis=1))
    np.testing.assert_allclose(model.components_, reference.components_ * signs[:, None],
                               atol=1e-10)
    np.testing.assert_allclose(
        model.transform(images), reference.transform(flat) * signs, atol=1e-8
    )


def test_projection_properties():
    images = _data(1)
    model = Eigenfaces(n_components=4).fit(images)
    np.testing.assert_allclose(model.components_ @ model.components_.T, np.eye(4),
                               atol=1e-12)
    z = model.transform(images)
    np.testing.assert_allclose(np.var(z, axis=0, ddof=1), model.explained_variance_)
    white = Eigenfaces(n_components=4, whiten=True).fit_transform(images)
    np.testing.assert_allclose(np.var(white, axis=0, ddof=1), 1.0)
    # With every component kept, reconstruction is exact (SVD path; the Gram
    # path with rank-deficient data falls back to it as well).
    for data in (images, _data(2, shape=(12, 10))):
        full = Eigenfaces(n_components=30).fit(data)
        np.testing.assert_allclose(
            full.inverse_transform(full.transform(data)), data.reshape(30, -1), atol=1e-9
        )
    assert Eigenfaces(n_components=3, whiten=True).get_config() == {
        "n_components": 3, "whiten": True, "normalize": False
    }


def test_orl_eigenfaces_recognition(orl_dir):
    """Turk & Pentland's baseline on ORL: 5 photos per person enrolled, the
    other 5 recognised by their nearest neighbour; the literature reports
    roughly 0.9 for this split."""
    from PIL import Image

    train, train_labels, test, test_labels = [], [], [], []
    for person in sorted(p for p in orl_dir.iterdir() if p.is_dir()):
        files = sorted(person.glob("*.png"))
        assert len(files) == 10, f"{person}: {len(files)} images"
        for i, path in enumerate(files):
            image = np.asarray(Image.open(path).convert("L"), dtype=np.float64) / 255.0
            (train if i % 2 == 0 else test).append(image)
            (train_labels if i % 2 == 0 else test_labels).append(person.name)
    assert len(set(train_labels)) == 40
    model = Eigenfaces(n_components=40).fit(np.stack(train))
    accuracy = precision_at_1(
        model.transform(np.stack(test)), test_labels,
        model.transform(np.stack(train)), train_labels,
    )
    assert 0.90 <= accuracy <= 1.0, accuracy  # 0.945 with this split
    # 40 eigenfaces carry most of the pixel variance of the training faces.
    assert model.explained_variance_ratio_.sum() > 0.7


def test_bad_input():
    with pytest.raises(ValueError, match="n_components=0"):
        Eigenfaces(n_components=0)
    with pytest.raises(ValueError, match=r"min\(n_samples, n_features\) = 3.*n_components=5"):
        Eigenfaces(n_components=5).fit(np.zeros((3, 10)))
    with pytest.raises(ValueError, match="not fitted"):
        Eigenfaces(n_components=2).transform(np.zeros((3, 10)))
    model = Eigenfaces(n_components=2).fit(_data())
    with pytest.raises(ValueError, match=r"30 values per item.*shape \(2, 4, 4\)"):
        model.transform(np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match=r"shape \(0,\)"):
        Eigenfaces(n_components=2).fit(np.zeros((0,)))


def test_normalize_scales_projections_to_unit_norm():
    images = _data(3)
    plain = Eigenfaces(n_components=3, whiten=True).fit(images)
    unit = Eigenfaces(**{**plain.get_config(), "normalize": True}).fit(images)
    z = plain.transform(images)
    np.testing.assert_allclose(unit.transform(images), z / np.linalg.norm(z, axis=1)[:, None])
    # The mean face projects to 0 and stays 0 (no NaN).
    assert np.all(unit.transform(unit.mean_[None]) == 0.0)
    with pytest.raises(ValueError, match="normalize=True"):
        unit.inverse_transform(z)
    with pytest.raises(ValueError, match="normalize must be True or False. Received: normalize=1"):
        Eigenfaces(normalize=1)


def _people(seed=0, n_people=8, per_person=6, dim=40):
    """Identity in 3 low-variance directions, a nuisance in 2 strong ones."""
    rng = np.random.default_rng(seed)
    identity = rng.normal(size=(n_people, 3)) @ rng.normal(size=(3, dim))
    nuisance = rng.normal(size=(n_people * per_person, 2)) * 4.0 @ rng.normal(size=(2, dim))
    faces = np.repeat(identity, per_person, axis=0) + nuisance
    faces += 0.3 * rng.normal(size=faces.shape)
    return faces, np.repeat(np.arange(n_people) * 7 + 3, per_person)


def _reference_auc(images, labels, held, k, whiten, normalize):
    """PCA by numpy SVD and AUC by counting pairs (Mann-Whitney)."""
    fit = images[~np.isin(labels, held)]
    mean = fit.mean(axis=0)
    _, singular, vt = np.linalg.svd(fit - mean, full_matrices=False)
    z = (images[np.isin(labels, held)] - mean) @ vt[:k].T
    if whiten:
        z = z / (singular[:k] / np.sqrt(len(fit) - 1))
    if normalize:
        z = z / np.linalg.norm(z, axis=1, keepdims=True)
    y = labels[np.isin(labels, held)]
    i, j = np.triu_indices(len(y), 1)
    d = np.linalg.norm(z[i] - z[j], axis=1)
    same, diff = d[y[i] == y[j]], d[y[i] != y[j]]
    wins = (same[:, None] < diff[None, :]).sum() + 0.5 * (same[:, None] == diff[None, :]).sum()
    return wins / (len(same) * len(diff))


def test_select_eigenfaces_matches_a_numpy_reference():
    faces, labels = _people()
    model, report = select_eigenfaces(faces, labels, n_components=(2, 5, 12),
                                      validation_identities=0.25, splits=2, seed=4)
    # The same inner splits: 2 of the 8 identities held out per split.
    rng = np.random.default_rng(4)
    helds = [rng.permutation(np.unique(labels))[:2] for _ in range(2)]
    assert len(report["grid"]) == 12
    for row in report["grid"]:
        expected = np.mean([_reference_auc(faces, labels, held, row["n_components"],
                                           row["whiten"], row["normalize"]) for held in helds])
        np.testing.assert_allclose(row["validation_auc"], expected, rtol=1e-9)
    best = max(report["grid"], key=lambda row: row["validation_auc"])
    assert {k: report[k] for k in best} == best
    assert model.get_config() == {k: best[k] for k in ("n_components", "whiten", "normalize")}
    # Refitted on all the faces: the mean face is the mean of all 48.
    np.testing.assert_allclose(model.mean_, faces.mean(axis=0))
    # The two nuisance components alone cannot tell people apart.
    assert best["n_components"] > 2
    two = [row["validation_auc"] for row in report["grid"] if row["n_components"] == 2]
    assert max(two) < best["validation_auc"]


def test_select_eigenfaces_skips_component_counts_too_large():
    faces, labels = _people(1)
    # 6 of 8 identities fit each inner PCA: 36 faces, so 40 components cannot.
    _, report = select_eigenfaces(faces, labels, n_components=(3, 40), whiten=(False,),
                                  normalize=(True,), validation_identities=0.25)
    assert [row["n_components"] for row in report["grid"]] == [3]
    with pytest.raises(ValueError, match=r"include a value <= 36.*n_components=\[40\]"):
        select_eigenfaces(faces, labels, n_components=(40,), validation_identities=0.25)


def test_select_eigenfaces_bad_input():
    faces, labels = _people(2)
    with pytest.raises(ValueError, match="at least 3 identities.*Received: 2"):
        select_eigenfaces(faces[:12], labels[:12])
    with pytest.raises(ValueError, match="validation_identities=1.5"):
        select_eigenfaces(faces, labels, validation_identities=1.5)
    with pytest.raises(ValueError, match="splits=0"):
        select_eigenfaces(faces, labels, splits=0)
    with pytest.raises(ValueError, match=r"whiten must be a non-empty list.*whiten=\(\)"):
        select_eigenfaces(faces, labels, whiten=())
    with pytest.raises(ValueError, match="n_components=0"):
        select_eigenfaces(faces, labels, n_components=(0,))
    with pytest.raises(ValueError, match=r"labels must have one label per row.*len\(labels\)=5"):
        select_eigenfaces(faces, labels[:5])
    single = np.arange(len(labels))  # every face its own identity: no same pairs
    with pytest.raises(ValueError, match="at least 2 images"):
        select_eigenfaces(faces, single, n_components=(3,))
