"""Clustering of embeddings and agreement scores with the true identities.

``cluster`` groups embeddings ``[N, D]`` with scikit-learn; ``nmi``, ``ari``
and ``purity`` compare a predicted grouping with the true labels (any
hashable labels; cluster ids need not match class ids). FaceNet (Schroff et
al., 2015, Section 5.6) clusters a personal photo collection this way.
"""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

from fsl.evaluation._validation import as_embeddings, as_labels

METHODS = ("kmeans", "agglomerative")


def cluster(embeddings, n_clusters: int, method: str = "kmeans", seed: int = 0) -> np.ndarray:
    """Cluster embeddings into ``n_clusters`` groups.

    Args:
        embeddings: array-like ``[N, D]``. For angular (cosine) embeddings,
            L2-normalise them first: both methods use Euclidean geometry.
        n_clusters: number of clusters, in ``[1, N]``.
        method: ``"kmeans"`` (``sklearn.cluster.KMeans``, 10 initialisations
            seeded with ``seed``) or ``"agglomerative"``
            (``AgglomerativeClustering`` with Ward linkage; deterministic).
        seed: random seed for k-means.

    Returns:
        int ``[N]`` cluster id per row, in ``0..n_clusters-1``.

    Raises:
        ValueError: bad embeddings, ``n_clusters`` out of range or an unknown
            method.

    Examples:

    >>> labels = cluster([[0.0], [0.1], [5.0], [5.1]], 2)
    >>> bool(labels[0] == labels[1] != labels[2] == labels[3])
    True
    """
    x = as_embeddings(embeddings, "embeddings")
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)) \
            or not 1 <= n_clusters <= len(x):
        raise ValueError(
            f"n_clusters must be an integer between 1 and the number of "
            f"embeddings ({len(x)}). Received: n_clusters={n_clusters!r}"
        )
    if method == "kmeans":
        from sklearn.cluster import KMeans

        model = KMeans(n_clusters=int(n_clusters), n_init=10, random_state=seed)
    elif method == "agglomerative":
        from sklearn.cluster import AgglomerativeClustering

        model = AgglomerativeClustering(n_clusters=int(n_clusters), linkage="ward")
    else:
        raise ValueError(f"method must be one of {list(METHODS)}. Received: method={method!r}")
    return np.asarray(model.fit_predict(x), dtype=np.int64)


def _pair(true, pred) -> tuple[np.ndarray, np.ndarray]:
    true_array = np.asarray(true)
    if true_array.ndim != 1 or len(true_array) == 0:
        raise ValueError(
            f"true must be a non-empty 1-D array of labels. Received: true with "
            f"shape {true_array.shape}"
        )
    pred_array = as_labels(pred, len(true_array), "pred", "true")
    return true_array, pred_array


def nmi(true, pred) -> float:
    """Normalised mutual information ``I(T; P) / ((H(T) + H(P)) / 2)``.

    ``sklearn.metrics.normalized_mutual_info_score`` with the arithmetic mean
    (its default): 1 for identical partitions (up to renaming), 0 for
    independent ones.

    Args:
        true: array-like ``[N]`` true labels.
        pred: array-like ``[N]`` cluster ids.

    Returns:
        NMI in ``[0, 1]``.
    """
    true, pred = _pair(true, pred)
    return float(skm.normalized_mutual_info_score(true, pred))


def ari(true, pred) -> float:
    """Adjusted Rand index (Hubert and Arabie, 1985).

    The Rand index (fraction of pairs of items on which the two partitions
    agree: together in both or apart in both) corrected for chance: 1 for
    identical partitions, about 0 for random ones, negative when worse than
    chance. ``sklearn.metrics.adjusted_rand_score``.

    Args:
        true: array-like ``[N]`` true labels.
        pred: array-like ``[N]`` cluster ids.

    Returns:
        ARI in ``[-0.5, 1]``.
    """
    true, pred = _pair(true, pred)
    return float(skm.adjusted_rand_score(true, pred))


def purity(true, pred) -> float:
    """Fraction of items whose cluster's majority class is their class.

    ``purity = (1 / N) * sum over clusters of max over classes |cluster ∩ class|``.
    It is 1 when every cluster holds a single class (trivially so with one
    cluster per item), so read it with NMI or ARI.

    Args:
        true: array-like ``[N]`` true labels.
        pred: array-like ``[N]`` cluster ids.

    Returns:
        Purity in ``(0, 1]``.

    Examples:

    >>> purity([0, 0, 1, 1], [5, 5, 5, 7])
    0.75
    """
    true, pred = _pair(true, pred)
    _, true_codes = np.unique(true, return_inverse=True)
    _, pred_codes = np.unique(pred, return_inverse=True)
    contingency = np.zeros((pred_codes.max() + 1, true_codes.max() + 1), dtype=np.int64)
    np.add.at(contingency, (pred_codes, true_codes), 1)
    return float(contingency.max(axis=1).sum() / len(true))


def clustering_scores(true, pred) -> dict:
    """NMI, ARI and purity of a clustering.

    Args:
        true: array-like ``[N]`` true labels.
        pred: array-like ``[N]`` cluster ids.

    Returns:
        ``{"nmi": float, "ari": float, "purity": float}``.
    """
    return {"nmi": nmi(true, pred), "ari": ari(true, pred), "purity": purity(true, pred)}
