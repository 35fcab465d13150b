"""Eigenfaces: the classical PCA baseline for face embeddings.

Turk and Pentland, 1991. "Eigenfaces for Recognition" (Journal of Cognitive
Neuroscience 3(1)). Faces are flattened to pixel vectors, centred on the mean
face, and projected on the top principal components ("eigenfaces"); the
projections are embeddings that the metrics of ``fsl.evaluation`` compare
with those of a trained network.

Plain numpy: with fewer images than pixels, the eigenvectors of the small
``N x N`` Gram matrix (Turk and Pentland's own trick); otherwise an SVD.
"""

from __future__ import annotations

import numpy as np


def _flatten(images, name: str) -> np.ndarray:
    try:
        array = np.asarray(images, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be an array of images or vectors. Received: "
                         f"{name} of type {type(images).__name__}") from error
    if array.ndim < 2 or array.shape[0] == 0 or array[0].size == 0:
        raise ValueError(
            f"{name} must be [N, D] vectors or [N, H, W(, C)] images with N >= 1. "
            f"Received: {name} with shape {array.shape}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite. Received: {name} with NaN/inf values")
    return array.reshape(len(array), -1)


def _principal_axes(centred: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` squared singular values ``[k]`` and right singular vectors
    ``[k, D]`` of the centred data ``[N, D]``.

    With fewer images than pixels (N < D) this is Turk and Pentland's trick:
    eigenvectors ``v`` of the small ``N x N`` matrix ``A A^T`` give the
    eigenfaces ``A^T v / sqrt(lambda)``, O(N^2 D) instead of an SVD of the
    ``N x D`` matrix. If a kept eigenvalue is (numerically) zero, the
    eigenface is undefined that way and a full SVD is used instead.
    """
    n, d = centred.shape
    if n < d:
        eigenvalues, vectors = np.linalg.eigh(centred @ centred.T)
        top = np.argsort(eigenvalues)[::-1][:k]
        eigenvalues = eigenvalues[top]
        if eigenvalues[-1] > 1e-9 * max(eigenvalues[0], np.finfo(float).tiny):
            components = (vectors[:, top].T @ centred) / np.sqrt(eigenvalues)[:, None]
            return eigenvalues, components
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    return singular[:k] ** 2, vt[:k]


class Eigenfaces:
    """PCA on flattened pixels (Turk and Pentland, 1991).

    Args:
        n_components: number of eigenfaces kept, ``1 <= n_components <=
            min(N, D)`` of the training data.
        whiten: if True, divide each projection by the standard deviation of
            its component on the training set (unit-variance embeddings).

    Attributes (after ``fit``):
        mean_: ``[D]`` mean face.
        components_: ``[n_components, D]`` eigenfaces (orthonormal rows),
            by decreasing variance; the sign of each is fixed so that its
            largest-magnitude entry is positive.
        explained_variance_: ``[n_components]`` variance of each component
            (unbiased, divided by ``N - 1``).
        explained_variance_ratio_: fraction of the total variance.
        image_shape_: shape of one training image.

    Examples:

    >>> rng = np.random.default_rng(0)
    >>> faces = rng.normal(size=(20, 8, 8))
    >>> model = Eigenfaces(n_components=5).fit(faces)
    >>> model.transform(faces[:3]).shape
    (3, 5)
    """

    def __init__(self, n_components: int = 50, whiten: bool = False):
        if isinstance(n_components, bool) or not isinstance(n_components, (int, np.integer)) \
                or n_components < 1:
            raise ValueError(f"n_components must be a positive integer. Received: "
                             f"n_components={n_components!r}")
        self.n_components = int(n_components)
        self.whiten = bool(whiten)
        self.mean_ = None

    def get_config(self) -> dict:
        """Constructor arguments as plain JSON values."""
        return {"n_components": self.n_components, "whiten": self.whiten}

    def fit(self, images) -> "Eigenfaces":
        """Compute the mean face and the eigenfaces.

        Args:
            images: ``[N, D]`` vectors or ``[N, H, W]`` / ``[N, H, W, C]``
                images.

        Returns:
            The fitted model itself.

        Raises:
            ValueError: bad images, or ``n_components > min(N, D)``.
        """
        x = _flatten(images, "images")
        n, d = x.shape
        if self.n_components > min(n, d):
            raise ValueError(
                f"n_components must be <= min(n_samples, n_features) = {min(n, d)}. "
                f"Received: n_components={self.n_components} for images of shape "
                f"{np.shape(images)}"
            )
        self.image_shape_ = tuple(np.shape(images)[1:])
        self.mean_ = x.mean(axis=0)
        centred = x - self.mean_
        variance, components = _principal_axes(centred, self.n_components)
        signs = np.sign(components[np.arange(len(components)),
                                   np.argmax(np.abs(components), axis=1)])
        signs[signs == 0] = 1.0
        self.components_ = components * signs[:, None]
        self.explained_variance_ = variance / max(n - 1, 1)
        total = np.sum(centred * centred) / max(n - 1, 1)
        self.explained_variance_ratio_ = (
            self.explained_variance_ / total if total > 0
            else np.zeros(self.n_components)
        )
        return self

    def _check_fitted(self, images, name: str) -> np.ndarray:
        if self.mean_ is None:
            raise ValueError("This Eigenfaces model is not fitted yet: call fit first.")
        x = _flatten(images, name)
        if x.shape[1] != self.mean_.shape[0]:
            raise ValueError(
                f"{name} must have {self.mean_.shape[0]} values per item (training "
                f"image shape {self.image_shape_}). Received: {name} with shape "
                f"{np.shape(images)}"
            )
        return x

    def transform(self, images) -> np.ndarray:
        """Project images on the eigenfaces.

        Args:
            images: vectors or images of the training shape.

        Returns:
            float64 ``[N, n_components]`` embeddings.
        """
        x = self._check_fitted(images, "images")
        projected = (x - self.mean_) @ self.components_.T
        if self.whiten:
            # Components with zero variance stay 0 rather than NaN.
            scale = np.sqrt(self.explained_variance_)
            projected = np.divide(projected, scale, out=np.zeros_like(projected),
                                  where=scale > 0)
        return projected

    def fit_transform(self, images) -> np.ndarray:
        """``fit(images)`` then ``transform(images)``."""
        return self.fit(images).transform(images)

    def inverse_transform(self, embeddings) -> np.ndarray:
        """Reconstruct flattened images ``[N, D]`` from embeddings."""
        if self.mean_ is None:
            raise ValueError("This Eigenfaces model is not fitted yet: call fit first.")
        z = np.asarray(embeddings, dtype=np.float64)
        if z.ndim != 2 or z.shape[1] != self.n_components:
            raise ValueError(
                f"embeddings must have shape [N, {self.n_components}]. Received: "
                f"shape {z.shape}"
            )
        if self.whiten:
            z = z * np.sqrt(self.explained_variance_)
        return z @ self.components_ + self.mean_
