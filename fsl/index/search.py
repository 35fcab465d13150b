"""Nearest-neighbour search over a gallery's embeddings, behind one interface.

* ``ExactSearch`` (the default): every distance, by matrix products in
  blocks; exact recall, no extra package.
* ``ApproximateSearch``: an HNSW graph from ``usearch`` (the
  ``fsl[search]`` extra), for large galleries; it removes items in place
  and saves with the gallery. Chosen over ``faiss-cpu`` by measuring
  (``benchmarks/search.py``) and because its HNSW index supports deletes.

Both take and return the gallery's item ids; distances are on the gallery's
metric (``"L2"``, ``"squared-L2"`` or ``"angular"``), as the rest of ``fsl``
computes them.
"""

from __future__ import annotations

import numpy as np

from fsl.evaluation import cross_distances

_BLOCK = 1024


class ExactSearch:
    """All distances, computed in blocks of queries.

    Args:
        dim: embedding size.
        metric: the distance.
    """

    name = "exact"

    def __init__(self, dim: int, metric: str = "L2"):
        self.dim, self.metric = int(dim), metric
        self.ids = np.zeros(0, np.int64)
        # float64, as fsl.evaluation computes distances: no copy per query;
        # their squared norms are kept, not recomputed per query.
        self.vectors = np.zeros((0, self.dim), np.float64)
        self.squared_norms = np.zeros(0, np.float64)

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, np.float64)
        self.ids = np.concatenate([self.ids, np.asarray(ids, np.int64)])
        self.vectors = np.concatenate([self.vectors, vectors])
        self.squared_norms = np.concatenate([self.squared_norms, np.sum(vectors * vectors, 1)])

    def remove(self, ids) -> None:
        keep = ~np.isin(self.ids, np.asarray(list(ids), np.int64))
        self.ids, self.vectors = self.ids[keep], self.vectors[keep]
        self.squared_norms = self.squared_norms[keep]

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(ids [Q, k'], distances [Q, k'])``, nearest first, ``k' = min(k, len)``."""
        queries = np.asarray(queries, np.float32)
        k = min(int(k), len(self.ids))
        out_ids = np.zeros((len(queries), k), np.int64)
        out_d = np.zeros((len(queries), k), np.float64)
        if k == 0:
            return out_ids, out_d
        for start in range(0, len(queries), _BLOCK):
            d = cross_distances(queries[start:start + _BLOCK].astype(np.float64),
                                self.vectors, self.metric, self.squared_norms)
            top = np.argpartition(d, k - 1, axis=1)[:, :k] if k < d.shape[1] else \
                np.tile(np.arange(d.shape[1]), (len(d), 1))
            rows = np.arange(len(d))[:, None]
            order = np.argsort(d[rows, top], axis=1, kind="stable")
            best = top[rows, order]
            out_ids[start:start + len(d)] = self.ids[best]
            out_d[start:start + len(d)] = d[rows, best]
        return out_ids, out_d


class ApproximateSearch:
    """An HNSW graph (``usearch``), for galleries too large to scan.

    Args:
        dim: embedding size.
        metric: the distance (``"L2"`` is searched as squared L2 and
            returned as its square root; ``"angular"`` as usearch's cosine
            distance, ``1 - cos``).
        connectivity, expansion_add, expansion_search: the graph's degree
            and search breadths (usearch's defaults are 16, 128, 64).

    Raises:
        ImportError: ``usearch`` is not installed (``pip install "fsl[search]"``).
    """

    name = "approximate"

    def __init__(self, dim: int, metric: str = "L2", connectivity: int = 16,
                 expansion_add: int = 128, expansion_search: int = 64):
        try:
            from usearch.index import Index
        except ImportError as error:
            raise ImportError("The approximate backend needs usearch: pip install "
                              "\"fsl[search]\" (or use backend='exact')") from error
        self.dim, self.metric = int(dim), metric
        self.index = Index(ndim=self.dim, metric="cos" if metric == "angular" else "l2sq",
                           dtype="f32", connectivity=connectivity,
                           expansion_add=expansion_add, expansion_search=expansion_search)

    def __len__(self) -> int:
        return len(self.index)

    def save(self, path) -> None:
        """Write the graph to ``path`` (usearch's format)."""
        self.index.save(str(path))

    def load(self, path) -> None:
        """Replace the graph by the one saved at ``path``.

        Raises:
            RuntimeError: the file is not a usearch index of this shape.
        """
        self.index.load(str(path))

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            self.index.add(np.asarray(ids, np.uint64), np.asarray(vectors, np.float32))

    def remove(self, ids) -> None:
        ids = np.asarray(list(ids), np.uint64)
        if len(ids):
            self.index.remove(ids)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """As ``ExactSearch.search`` (approximately nearest); a row the graph
        answers with fewer than ``k'`` items ends with id -1 at distance inf."""
        queries = np.asarray(queries, np.float32)
        k = min(int(k), len(self.index))
        if k == 0 or not len(queries):
            return np.zeros((len(queries), k), np.int64), np.zeros((len(queries), k))
        found = self.index.search(queries, k)
        keys = np.full((len(queries), k), -1, np.int64)
        distances = np.full((len(queries), k), np.inf)
        if len(queries) == 1:  # usearch answers one query with one Matches, unpadded
            n = len(found.keys)
            keys[0, :n], distances[0, :n] = found.keys[:k], found.distances[:k]
            counts = np.array([n])
        else:
            keys[:] = np.asarray(found.keys, np.int64)[:, :k]
            distances[:] = np.asarray(found.distances, np.float64)[:, :k]
            counts = np.asarray(found.counts).reshape(-1)
        # Rows the graph answered with fewer than k: the rest is id -1, distance inf.
        missing = np.arange(k)[None, :] >= counts[:, None]
        keys[missing], distances[missing] = -1, np.inf
        distances = np.maximum(distances, 0.0)
        if self.metric == "L2":
            distances = np.sqrt(distances)
        return keys, distances


__all__ = ["ApproximateSearch", "ExactSearch"]
