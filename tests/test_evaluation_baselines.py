"""fsl.evaluation.baselines.Eigenfaces: against sklearn's PCA, exact
reconstruction, whitening, and the classic ORL recognition result."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA

from fsl.evaluation import precision_at_1
from fsl.evaluation.baselines import Eigenfaces


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
        "n_components": 3, "whiten": True
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
