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

from collections.abc import Sequence

import numpy as np

from fsl.evaluation._validation import as_labels, l2_normalize


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


def _rescale(projected: np.ndarray, variance: np.ndarray, whiten: bool,
             normalize: bool) -> np.ndarray:
    """Projections on the top eigenfaces (``variance``: theirs), whitened
    and / or L2-normalised."""
    if whiten:
        # Components with zero variance stay 0 rather than NaN.
        scale = np.sqrt(variance)
        projected = np.divide(projected, scale, out=np.zeros_like(projected), where=scale > 0)
    if normalize:
        projected = l2_normalize(projected)
    return projected


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
        normalize: if True, scale each embedding to unit L2 norm, so that
            L2 distances between them rank pairs by the angle between the
            projections, as between a network's unit-norm embeddings (with
            ``whiten``, Moon and Phillips' "Mahalanobis angle").

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

    def __init__(self, n_components: int = 50, whiten: bool = False, normalize: bool = False):
        if isinstance(n_components, bool) or not isinstance(n_components, (int, np.integer)) \
                or n_components < 1:
            raise ValueError(f"n_components must be a positive integer. Received: "
                             f"n_components={n_components!r}")
        for name, flag in (("whiten", whiten), ("normalize", normalize)):
            if not isinstance(flag, (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False. Received: {name}={flag!r}")
        self.n_components = int(n_components)
        self.whiten = bool(whiten)
        self.normalize = bool(normalize)
        self.mean_ = None

    def get_config(self) -> dict:
        """Constructor arguments as plain JSON values."""
        return {"n_components": self.n_components, "whiten": self.whiten,
                "normalize": self.normalize}

    def fit(self, images) -> Eigenfaces:
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
            float64 ``[N, n_components]`` embeddings (unit-norm rows with
            ``normalize``; a row that projects to 0 stays 0).
        """
        x = self._check_fitted(images, "images")
        projected = (x - self.mean_) @ self.components_.T
        return _rescale(projected, self.explained_variance_, self.whiten, self.normalize)

    def fit_transform(self, images) -> np.ndarray:
        """``fit(images)`` then ``transform(images)``."""
        return self.fit(images).transform(images)

    def inverse_transform(self, embeddings) -> np.ndarray:
        """Reconstruct flattened images ``[N, D]`` from embeddings.

        Raises:
            ValueError: not fitted, embeddings of the wrong shape, or a
                ``normalize`` model (the norm of each projection is lost).
        """
        if self.mean_ is None:
            raise ValueError("This Eigenfaces model is not fitted yet: call fit first.")
        if self.normalize:
            raise ValueError("inverse_transform needs the projections' norms, which "
                             "normalize=True discards. Received: a normalize=True model")
        z = np.asarray(embeddings, dtype=np.float64)
        if z.ndim != 2 or z.shape[1] != self.n_components:
            raise ValueError(
                f"embeddings must have shape [N, {self.n_components}]. Received: "
                f"shape {z.shape}"
            )
        if self.whiten:
            z = z * np.sqrt(self.explained_variance_)
        return z @ self.components_ + self.mean_


def select_eigenfaces(
    images,
    labels,
    n_components: Sequence[int] = (10, 20, 40, 80, 150),
    whiten: Sequence[bool] = (False, True),
    normalize: Sequence[bool] = (False, True),
    validation_identities: float = 1 / 3,
    splits: int = 3,
    seed: int = 0,
) -> tuple[Eigenfaces, dict]:
    """Eigenfaces with its settings chosen on the training people only.

    A baseline is only as good as its settings, and choosing them on the
    people it is then tested on flatters it. Here every combination of the
    grids is scored on ``splits`` identity-disjoint splits of the training
    people themselves: PCA fitted on the faces of the remaining identities,
    the ROC AUC (``fsl.evaluation.auc``, threshold-free) of the L2 distances
    of all pairs among the held-out identities' faces. The best mean AUC wins
    (ties: the earlier combination, in ``n_components`` x ``whiten`` x
    ``normalize`` order) and is refitted on all the faces. Component counts
    above what the smallest inner training set allows are left out.

    Reference: Moon and Phillips, "Computational and performance aspects of
    PCA-based face-recognition algorithms", Perception 30(3), 2001 (the
    distance and whitening matter as much as the number of components).

    Args:
        images: ``[N, H, W(, C)]`` faces or ``[N, D]`` vectors.
        labels: ``[N]`` identity labels, at least 3 identities.
        n_components, whiten, normalize: the values tried (non-empty).
        validation_identities: fraction of the identities held out in each
            inner split, in ``(0, 1)``; at least 2 and at most all but one
            identity are held out.
        splits: number of inner splits (a positive int).
        seed: seed of the inner splits.

    Returns:
        ``(model, report)``: the chosen ``Eigenfaces`` fitted on all the
        images, and a dict with the chosen ``n_components``, ``whiten``,
        ``normalize``, its ``validation_auc`` and the ``grid`` (every
        combination's settings and mean AUC).

    Raises:
        ValueError: bad images or labels, fewer than 3 identities, an empty
            or invalid grid, or a bad ``validation_identities`` / ``splits``.

    Examples:

    >>> rng = np.random.default_rng(0)
    >>> people = rng.normal(size=(6, 64))
    >>> faces = np.repeat(people, 5, axis=0) + 0.3 * rng.normal(size=(30, 64))
    >>> model, report = select_eigenfaces(faces, np.repeat(np.arange(6), 5),
    ...                                   n_components=(2, 8))
    >>> model.get_config() == {k: report[k] for k in ("n_components", "whiten", "normalize")}
    True
    >>> len(report["grid"]), model.transform(faces).shape == (30, report["n_components"])
    (8, True)
    """
    from fsl.evaluation.verification import auc, pair_distances

    x = _flatten(images, "images")
    y = as_labels(labels, len(x), "labels", "images")
    identities = np.unique(y)
    if len(identities) < 3:
        raise ValueError("select_eigenfaces needs at least 3 identities (2 held out, 1 to "
                         f"fit). Received: {len(identities)} identities")
    if not 0.0 < float(validation_identities) < 1.0:
        raise ValueError("validation_identities must be in (0, 1). Received: "
                         f"validation_identities={validation_identities!r}")
    if isinstance(splits, bool) or not isinstance(splits, (int, np.integer)) or splits < 1:
        raise ValueError(f"splits must be a positive integer. Received: splits={splits!r}")
    grids = {"n_components": n_components, "whiten": whiten, "normalize": normalize}
    for name, values in grids.items():
        if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or not values:
            raise ValueError(f"{name} must be a non-empty list of values. Received: "
                             f"{name}={values!r}")
    n_held = int(np.clip(round(validation_identities * len(identities)), 2,
                         len(identities) - 1))
    rng = np.random.default_rng(seed)
    inner = []
    for _ in range(splits):
        held = np.isin(y, rng.permutation(identities)[:n_held])
        i, j = np.triu_indices(int(held.sum()), 1)
        inner.append((x[~held], x[held][i], x[held][j], (y[held][i] == y[held][j])))
    largest = min(min(len(fit), fit.shape[1]) for fit, *_ in inner)
    for k in n_components:
        Eigenfaces(k)  # validates k
    counts = [int(k) for k in n_components if k <= largest]
    if not counts:
        raise ValueError(f"n_components must include a value <= {largest} (the smallest inner "
                         f"training set). Received: n_components={list(n_components)!r}")
    # The top-k eigenfaces are the first k of the top-max(k) ones: one PCA per
    # inner split, sliced per k (as Eigenfaces(k).transform would project).
    scores = {}
    for fit, first, second, same in inner:
        if same.all() or not same.any():
            raise ValueError(
                "An inner split has no same or no different pairs: every identity needs "
                f"at least 2 images. Received: labels with counts "
                f"{np.unique(y, return_counts=True)[1].tolist()}")
        pca = Eigenfaces(max(counts)).fit(fit)
        projected = [pca.transform(first), pca.transform(second)]
        for k in counts:
            for white in whiten:
                for unit in normalize:
                    z = [_rescale(p[:, :k], pca.explained_variance_[:k], white, unit)
                         for p in projected]
                    scores.setdefault((k, bool(white), bool(unit)), []).append(
                        auc(pair_distances(z[0], z[1]), same))
    grid = [{"n_components": k, "whiten": white, "normalize": unit,
             "validation_auc": float(np.mean(values))}
            for (k, white, unit), values in scores.items()]
    best = max(grid, key=lambda row: row["validation_auc"])
    model = Eigenfaces(best["n_components"], whiten=best["whiten"],
                       normalize=best["normalize"]).fit(x)
    return model, {**best, "grid": grid}
