"""Retrieval metrics on embeddings: precision@1, recall@k and MAP@R.

Every function takes query embeddings ``[Nq, D]`` with their labels, and an
optional gallery ``[Ng, D]`` with labels. Without a gallery the evaluation is
leave-one-out within the queries: each query is searched among all the other
queries (never itself). An item is relevant to a query when it has the same
label.

Neighbours are ranked by distance (smaller = more similar; ``"L2"``,
``"squared-L2"`` or ``"angular"``). Distances are computed ``chunk_size``
queries at a time, so memory is O(chunk_size * Ng): 10k x 10k runs in a few
hundred MB. Equal distances are ranked by gallery index (the lower first).

Queries that have no relevant item in the gallery (a singleton class in
leave-one-out) cannot be scored; they are left out of every metric and a
warning says how many.

Reference: Musgrave, Belongie and Lim, 2020. "A Metric Learning Reality
Check" (MAP@R, Section 3.2).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import numpy as np

from fsl.evaluation._validation import (
    as_embeddings,
    as_labels,
    cross_distances,
    metric_name,
)

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 512


class _Search:
    """Validated query/gallery sets and the relevant-item count per query."""

    def __init__(self, query_emb, query_labels, gallery_emb, gallery_labels, metric,
                 chunk_size):
        self.metric = metric_name(metric)
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) \
                or chunk_size < 1:
            raise ValueError(f"chunk_size must be an integer >= 1. Received: "
                             f"chunk_size={chunk_size!r}")
        self.chunk_size = int(chunk_size)
        self.query = as_embeddings(query_emb, "query_emb")
        self.query_labels = as_labels(query_labels, len(self.query), "query_labels",
                                      "query_emb")
        if (gallery_emb is None) != (gallery_labels is None):
            raise ValueError(
                "gallery_emb and gallery_labels must be given together. Received: "
                f"gallery_emb is {'None' if gallery_emb is None else 'given'}, "
                f"gallery_labels is {'None' if gallery_labels is None else 'given'}"
            )
        self.leave_one_out = gallery_emb is None
        if self.leave_one_out:
            if len(self.query) < 2:
                raise ValueError(
                    "Leave-one-out retrieval needs at least 2 queries. Received: "
                    f"query_emb with shape {self.query.shape}"
                )
            self.gallery, self.gallery_labels = self.query, self.query_labels
        else:
            self.gallery = as_embeddings(gallery_emb, "gallery_emb")
            self.gallery_labels = as_labels(gallery_labels, len(self.gallery),
                                            "gallery_labels", "gallery_emb")
            if self.gallery.shape[1] != self.query.shape[1]:
                raise ValueError(
                    "query_emb and gallery_emb must have the same dimension. "
                    f"Received: query_emb.shape={self.query.shape}, "
                    f"gallery_emb.shape={self.gallery.shape}"
                )
        self.n_gallery = len(self.gallery) - int(self.leave_one_out)
        # R: number of relevant gallery items per query.
        classes, gallery_codes = np.unique(self.gallery_labels, return_inverse=True)
        counts = np.bincount(gallery_codes, minlength=len(classes))
        position = np.searchsorted(classes, self.query_labels)
        position = np.minimum(position, len(classes) - 1)
        found = classes[position] == self.query_labels
        self.n_relevant = np.where(found, counts[position], 0) - int(self.leave_one_out)
        self.scored = self.n_relevant > 0
        n_skipped = int(np.sum(~self.scored))
        if n_skipped == len(self.query):
            raise ValueError(
                "No query has a relevant (same-label) item in the gallery, so "
                f"retrieval cannot be scored. Received: {len(self.query)} queries, "
                f"labels {np.unique(self.query_labels)[:5].tolist()}..."
            )
        if n_skipped:
            logger.warning(
                "%d of %d queries have no relevant item in the gallery and are "
                "left out of the retrieval metrics.", n_skipped, len(self.query))

    def check_k(self, k, name: str = "k") -> int:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"{name} must be a positive integer. Received: {name}={k!r}")
        if k > self.n_gallery:
            raise ValueError(
                f"{name} must be at most the number of gallery items per query "
                f"({self.n_gallery}). Received: {name}={k}"
            )
        return int(k)

    def neighbour_labels(self, k_per_query: np.ndarray) -> Iterator[tuple[slice, np.ndarray]]:
        """Yield ``(rows, relevant)`` per chunk: ``relevant[i, j]`` is True when
        the ``j``-th nearest gallery item of query ``rows.start + i`` has its
        label, for ``j < max(k_per_query[rows])``."""
        for start in range(0, len(self.query), self.chunk_size):
            rows = slice(start, min(start + self.chunk_size, len(self.query)))
            k = int(np.max(k_per_query[rows]))
            distances = cross_distances(self.query[rows], self.gallery, self.metric)
            if self.leave_one_out:
                local = np.arange(rows.stop - rows.start)
                distances[local, local + rows.start] = np.inf
            top = _k_nearest(distances, k)
            relevant = self.gallery_labels[top] == self.query_labels[rows, None]
            yield rows, relevant


def _k_nearest(distances: np.ndarray, k: int) -> np.ndarray:
    """Indices ``[M, k]`` of the k smallest entries of each row, sorted by
    (distance, column index), ties at the k-th distance included by index."""
    m, n = distances.shape
    if k >= n:
        return np.argsort(distances, axis=1, kind="stable")[:, :k]
    kth = np.partition(distances, k - 1, axis=1)[:, k - 1 : k]  # [M, 1]
    below = distances < kth
    at = distances == kth
    # Of the entries equal to the k-th value, keep the lowest-index ones.
    room = k - np.sum(below, axis=1, keepdims=True)
    keep = below | (at & (np.cumsum(at, axis=1) <= room))
    columns = np.nonzero(keep)[1].reshape(m, k)  # ascending index per row
    order = np.argsort(np.take_along_axis(distances, columns, axis=1), axis=1,
                       kind="stable")
    return np.take_along_axis(columns, order, axis=1)


def _search(query_emb, query_labels, gallery_emb, gallery_labels, metric, chunk_size):
    return _Search(query_emb, query_labels, gallery_emb, gallery_labels, metric,
                   chunk_size)


def recall_at_k(
    query_emb,
    query_labels,
    gallery_emb=None,
    gallery_labels=None,
    metric: str = "L2",
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> dict:
    """Fraction of queries with at least one relevant item among the k nearest.

    Args:
        query_emb: array-like ``[Nq, D]``.
        query_labels: array-like ``[Nq]`` class of each query.
        gallery_emb: optional array-like ``[Ng, D]``; None for leave-one-out
            within the queries.
        gallery_labels: array-like ``[Ng]``, given with ``gallery_emb``.
        metric: ``"L2"``, ``"squared-L2"`` or ``"angular"``.
        ks: the values of k, each in ``[1, Ng]`` (``Nq - 1`` in leave-one-out).
        chunk_size: queries per distance block.

    Returns:
        ``{k: recall@k}`` for each k.

    Raises:
        ValueError: bad shapes or lengths, a k out of range, an unknown metric,
            or no query with a relevant item.

    Examples:

    >>> x = [[0.0], [0.1], [1.0], [1.1]]
    >>> recall_at_k(x, [0, 0, 1, 1], ks=(1, 2))
    {1: 1.0, 2: 1.0}
    """
    search = _search(query_emb, query_labels, gallery_emb, gallery_labels, metric,
                     chunk_size)
    ks = [search.check_k(k) for k in np.atleast_1d(np.asarray(ks, dtype=object))]
    hits = {k: 0 for k in ks}
    k_max = np.full(len(search.query), max(ks))
    for rows, relevant in search.neighbour_labels(k_max):
        scored = search.scored[rows]
        for k in ks:
            hits[k] += int(np.sum(np.any(relevant[:, :k], axis=1) & scored))
    n_scored = int(np.sum(search.scored))
    return {k: hits[k] / n_scored for k in ks}


def precision_at_1(
    query_emb,
    query_labels,
    gallery_emb=None,
    gallery_labels=None,
    metric: str = "L2",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> float:
    """Fraction of queries whose nearest gallery item has the same label.

    Args: as ``recall_at_k`` (without ``ks``).

    Returns:
        Precision@1 (equal to recall@1) in ``[0, 1]``.

    Examples:

    >>> precision_at_1([[0.0], [1.0]], [0, 1], [[0.2], [0.9]], [1, 0])
    0.0
    """
    return recall_at_k(query_emb, query_labels, gallery_emb, gallery_labels, metric,
                       ks=(1,), chunk_size=chunk_size)[1]


def map_at_r(
    query_emb,
    query_labels,
    gallery_emb=None,
    gallery_labels=None,
    metric: str = "L2",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> float:
    """Mean average precision at R (Musgrave et al., 2020).

    For a query with ``R`` relevant gallery items,
    ``AP@R = (1 / R) * sum_{i <= R} P(i) * rel(i)``, where ``rel(i)`` is 1 if
    the ``i``-th nearest item is relevant and ``P(i)`` is the precision among
    the ``i`` nearest. MAP@R is its mean over queries. Unlike recall@k it
    rewards ranking ALL relevant items first, and is 1 only then.

    Args: as ``recall_at_k`` (without ``ks``).

    Returns:
        MAP@R in ``[0, 1]``.

    Examples:

    >>> x = [[0.0], [0.1], [1.0], [1.1]]
    >>> map_at_r(x, [0, 0, 1, 1])
    1.0
    """
    search = _search(query_emb, query_labels, gallery_emb, gallery_labels, metric,
                     chunk_size)
    r = np.maximum(search.n_relevant, 1)
    total = 0.0
    for rows, relevant in search.neighbour_labels(r):
        r_rows = r[rows]
        ranks = np.arange(1, relevant.shape[1] + 1)
        within_r = ranks[None, :] <= r_rows[:, None]
        rel = relevant & within_r
        precision = np.cumsum(rel, axis=1) / ranks[None, :]
        average_precision = np.sum(precision * rel, axis=1) / r_rows
        total += float(np.sum(average_precision[search.scored[rows]]))
    return total / int(np.sum(search.scored))
