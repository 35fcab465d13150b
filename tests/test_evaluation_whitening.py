"""fsl.evaluation.within_class_whitening against an explicit numpy / scipy
reference, its defining identity, and its effect on the within-class scatter."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from fsl.evaluation import within_class_whitening


def _data(seed=0, classes=6, per_class=8, dim=5):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * 3.0
    # Anisotropic within-class noise: large along the first axis.
    noise = rng.normal(size=(classes * per_class, dim)) * np.array([4.0, 1.0, 0.5, 0.2, 0.1])
    return np.repeat(centres, per_class, axis=0) + noise, np.repeat(np.arange(classes), per_class)


def _reference(x, y, shrinkage):
    scatter = np.zeros((x.shape[1], x.shape[1]))
    for label in np.unique(y):
        members = x[y == label]
        centred = members - members.mean(axis=0)
        for row in centred:
            scatter += np.outer(row, row)
    scatter /= len(x)
    regularised = scatter + shrinkage * np.trace(scatter) / len(scatter) * np.eye(len(scatter))
    return x.mean(axis=0), np.real(scipy.linalg.inv(scipy.linalg.sqrtm(regularised))), scatter


@pytest.mark.parametrize("shrinkage", [0.1, 1.0, 10.0])
def test_matches_the_inverse_square_root_reference(shrinkage):
    x, y = _data()
    mean, matrix = within_class_whitening(x, y, shrinkage=shrinkage)
    want_mean, want_matrix, scatter = _reference(x, y, shrinkage)
    np.testing.assert_allclose(mean, want_mean, atol=1e-12)
    np.testing.assert_allclose(matrix, want_matrix, rtol=1e-8, atol=1e-10)
    # W is symmetric and W (S_w + shrinkage * s * I) W = I.
    np.testing.assert_allclose(matrix, matrix.T, atol=1e-12)
    regularised = scatter + shrinkage * np.trace(scatter) / 5 * np.eye(5)
    np.testing.assert_allclose(matrix @ regularised @ matrix, np.eye(5), atol=1e-9)


def test_shrinks_the_within_class_directions():
    x, y = _data(1)
    shrinkage = 0.5
    mean, matrix = within_class_whitening(x, y, shrinkage=shrinkage)
    _, _, before = _reference(x, y, 0.0)
    _, _, after = _reference((x - mean) @ matrix, y, 0.0)
    # W shares S_w's eigenvectors: each within-class variance l becomes
    # l / (l + shrinkage * mean(l)), so the dominant axis no longer dominates.
    eigenvalues = np.linalg.eigvalsh(before)
    np.testing.assert_allclose(
        np.linalg.eigvalsh(after), eigenvalues / (eigenvalues + shrinkage * eigenvalues.mean()),
        rtol=1e-9)
    assert np.linalg.eigvalsh(after)[-1] / np.linalg.eigvalsh(after)[0] < \
        eigenvalues[-1] / eigenvalues[0] / 10
    # Label-dependent: a relabelling changes the map.
    _, shuffled = within_class_whitening(x, np.random.default_rng(0).permutation(y), shrinkage)
    assert not np.allclose(shuffled, matrix, atol=1e-3)


def test_singular_scatter_stays_finite_and_singletons_add_nothing():
    rng = np.random.default_rng(2)
    # 3 embeddings in 10 dimensions: the scatter has rank 1.
    x = rng.normal(size=(3, 10))
    mean, matrix = within_class_whitening(x, [0, 0, 1], shrinkage=1.0)
    assert np.all(np.isfinite(matrix))
    # The singleton class 1 contributes no scatter: same map without it but
    # for the normalisation by N (a scalar factor).
    _, without = within_class_whitening(np.vstack([x[:2], x[:2].mean(0) + 0 * x[2]]),
                                        [0, 0, 1], shrinkage=1.0)
    np.testing.assert_allclose(matrix, without, rtol=1e-9)
    np.testing.assert_allclose(mean, x.mean(axis=0))


def test_bad_input_names_the_value():
    x, y = _data()
    with pytest.raises(ValueError, match="shrinkage=0"):
        within_class_whitening(x, y, shrinkage=0)
    with pytest.raises(ValueError, match="shrinkage=nan"):
        within_class_whitening(x, y, shrinkage=float("nan"))
    with pytest.raises(ValueError, match=r"len\(labels\)=3"):
        within_class_whitening(x, y[:3])
    with pytest.raises(ValueError, match="at least 2 embeddings. Received: 4 classes"):
        within_class_whitening(x[:4], [0, 1, 2, 3])
    with pytest.raises(ValueError, match="no within-class variation"):
        within_class_whitening(np.ones((4, 3)), [0, 0, 1, 1])
    with pytest.raises(ValueError, match="2-D"):
        within_class_whitening(np.ones(4), [0, 0, 1, 1])
