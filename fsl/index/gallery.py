"""A searchable gallery of embeddings that persists: people, photos, search.

``Gallery`` keeps its items in a SQLite file (``fsl.index.store``), the
source of truth, and searches them with a backend in memory
(``fsl.index.search``), built from the file when it opens. The approximate
backend's HNSW graph is saved beside the file when the gallery closes
(``<file>.hnsw``, with the items' generation) and loaded instead of rebuilt
by the next open if no write happened since. A gallery
belongs to one model: the file records the model's fingerprint
(``model_card``), and opening it with another model is refused, naming
both, since distances between two models' embeddings mean nothing.

A search returns the ``k`` nearest items with their distances, and a
decision: the nearest item's person if its distance is at most the
threshold, else "unknown" (``person=None``). The threshold is the run's
(chosen for verification: two photos, same person?) until
``Gallery.calibrate`` rehearses identification among the enrolled people
(``fsl.index.calibration``) and keeps the gallery's own in the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import pathlib
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from fsl._checks import PathLike, check_positive_int
from fsl.folders import atomic_save, atomic_write_text
from fsl.index.search import ExactSearch
from fsl.index.store import SCHEMA_VERSION, Store

logger = logging.getLogger(__name__)

#: Search backends by name.
BACKENDS = ("exact", "approximate")
#: Longest person name, in characters.
MAX_NAME = 100
_BAD_NAME = re.compile(r"[/\\\x00-\x1f\x7f]")


class ModelMismatchError(ValueError):
    """A gallery opened with a model other than the one that built it."""


@dataclasses.dataclass(frozen=True)
class Match:
    """One gallery item found by a search."""

    item_id: int
    person: str
    distance: float
    source: str | None = None


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """The nearest items of one query and the decision they give.

    ``person`` is the nearest item's person when its distance is at most
    ``threshold``, else ``None``: unknown (or an empty gallery).
    """

    matches: list[Match]
    person: str | None
    distance: float | None
    threshold: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def model_card(run_dir: PathLike) -> dict[str, Any]:
    """What a gallery records of a run's model: ``fingerprint`` (SHA-256 of
    the embedding file and the preprocessing), ``name``, ``dim``, ``metric``
    and ``threshold``.

    Raises:
        FileNotFoundError: the run has no model.
    """
    from fsl.runs import open_run

    run = open_run(run_dir)
    model_file = run.embedding_path if run.embedding_path.is_file() else run.model_path
    config = run.read_config()
    metrics = run.read_metrics() if run.metrics_path.is_file() else {}
    digest = hashlib.sha256(model_file.read_bytes())
    digest.update(json.dumps(config.get("preprocessing"), sort_keys=True).encode())
    import keras

    dim = int(keras.saving.load_model(model_file, compile=False).output_shape[-1]) \
        if "embedding_size" not in metrics else int(metrics["embedding_size"])
    return {"fingerprint": digest.hexdigest(), "name": run.name, "dim": dim,
            "metric": metrics.get("metric", "L2"), "threshold": float(metrics.get("threshold", 1.0))}


def check_person(name: Any) -> str:
    """A person's name as a gallery stores it.

    Raises:
        ValueError: not a string, empty, longer than ``MAX_NAME``, or with a
            path separator or control character (naming the value).
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"A person's name must be a non-empty string. Received: {name!r}")
    name = name.strip()
    if len(name) > MAX_NAME or _BAD_NAME.search(name) or name in (".", ".."):
        raise ValueError(f"A person's name must be at most {MAX_NAME} characters with no path "
                         f"separator or control character. Received: {name[:120]!r}")
    return name


class Gallery:
    """People's embeddings in a SQLite file, searched in memory.

    Args:
        path: the SQLite file (created if absent).
        model: the model's card (``model_card(run)``; a dict with
            ``fingerprint``, ``name``, ``dim``, ``metric``, ``threshold``).
            Needed to create a gallery; when the file exists, it must be the
            model the file records (or ``None``: take the file's).
        backend: ``"exact"`` (default) or ``"approximate"`` (HNSW, the
            ``fsl[search]`` extra).

    Raises:
        ModelMismatchError: the file was built with another model.
        ValueError: a new gallery without ``model``, an unknown backend.

    Examples:

    >>> import tempfile, numpy as np
    >>> card = {"fingerprint": "abc", "name": "demo", "dim": 2, "metric": "L2", "threshold": 0.5}
    >>> gallery = Gallery(tempfile.mkdtemp() + "/g.sqlite", card)
    >>> _ = gallery.add(np.array([[0.0, 1.0], [1.0, 0.0]]), ["ada", "bob"])
    >>> result = gallery.search(np.array([[0.1, 0.9]]), k=2)[0]
    >>> result.person, [m.person for m in result.matches]
    ('ada', ['ada', 'bob'])
    >>> gallery.search(np.array([[5.0, 5.0]]))[0].person is None  # unknown
    True
    """

    def __init__(self, path: PathLike, model: Mapping[str, Any] | None = None,
                 backend: str = "exact"):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}. Received: backend={backend!r}")
        self.path = pathlib.Path(path)
        self._lock = threading.RLock()
        self._store = Store(self.path)
        recorded = self._store.meta()
        if not recorded:
            if model is None:
                self._store.close()
                raise ValueError(f"{str(self.path)!r} is a new gallery: give the model it is "
                                 "for (model=fsl.index.model_card(run))")
            recorded = {**_check_card(model), "schema": SCHEMA_VERSION}
            self._store.set_meta(recorded)
        elif model is not None and model["fingerprint"] != recorded["fingerprint"]:
            self._store.close()
            raise ModelMismatchError(
                f"The gallery {str(self.path)!r} was built with model {recorded['name']!r} "
                f"(fingerprint {recorded['fingerprint'][:12]}), not with {model['name']!r} "
                f"(fingerprint {model['fingerprint'][:12]}): build another gallery for it")
        elif model is not None and float(model["threshold"]) != float(recorded["threshold"]):
            # Same model, threshold recalibrated since (fsl calibrate): the run's is current.
            recorded = {**recorded, "threshold": float(model["threshold"])}
            self._store.set_meta({"threshold": recorded["threshold"]})
        self.model = recorded
        self.dim, self.metric = int(recorded["dim"]), recorded["metric"]
        #: The last ``calibrate`` report kept in the file, or ``None``.
        self.calibration = recorded.get("calibration")
        self.threshold = float(recorded["threshold"] if self.calibration is None
                               else self.calibration["threshold"])
        self.backend = _make_backend(backend, self.dim, self.metric)
        #: Where the search backend came from: ``"items"`` (built from the
        #: SQLite rows) or ``"saved graph"`` (the HNSW file, still current).
        self.backend_source = "items"
        if backend == "approximate" and self._load_graph():
            ids, names = self._store.people_of_items()
        else:
            ids, vectors, names = self._store.embeddings(self.dim)
            self.backend.add(ids, vectors)
        self._people = dict(zip(ids.tolist(), names, strict=True))
        #: Bumped by every add and remove (e.g. to refresh what is derived from the items).
        self.version = 0

    # === The saved HNSW graph ===

    @property
    def graph_path(self) -> pathlib.Path:
        """Where an approximate gallery saves its graph: beside the SQLite file."""
        return self.path.with_name(self.path.name + ".hnsw")

    @property
    def _graph_meta_path(self) -> pathlib.Path:
        return self.path.with_name(self.path.name + ".hnsw.json")

    def _graph_state(self) -> dict[str, Any]:
        """What a saved graph must have been saved at to be current."""
        return {"generation": self._store.generation(), "dim": self.dim, "metric": self.metric,
                "fingerprint": self.model["fingerprint"]}

    def _load_graph(self) -> bool:
        """Restore the saved graph if it was saved at the items' current generation."""
        if not (self.graph_path.is_file() and self._graph_meta_path.is_file()):
            return False
        try:
            saved = json.loads(self._graph_meta_path.read_text())
            if any(saved.get(k) != v for k, v in self._graph_state().items()):
                logger.info("%s: the saved graph is older than the items; rebuilding it",
                            self.graph_path)
                return False
            self.backend.load(self.graph_path)
        except (OSError, ValueError, RuntimeError) as error:
            logger.warning("%s could not be read (%s); rebuilding the graph from the items",
                           self.graph_path, error)
            self.backend = _make_backend("approximate", self.dim, self.metric)
            return False
        self.backend_source = "saved graph"
        return True

    def save_graph(self) -> pathlib.Path | None:
        """Save an approximate gallery's graph beside the SQLite file, with the
        items' generation, so the next open loads it instead of rebuilding it
        (``close`` does this). Nothing for the exact backend.

        Returns:
            The graph's path, or ``None`` for the exact backend.
        """
        if not hasattr(self.backend, "save"):
            return None
        with self._lock:
            meta = {**self._graph_state(), "items": len(self.backend)}
            atomic_save(self.graph_path, self.backend.save)
            atomic_write_text(self._graph_meta_path, json.dumps(meta))
        return self.graph_path

    # === Writes ===

    def add(self, embeddings, people: Sequence[str], sources: Sequence[str | None] | None = None,
            thumbnails: Sequence[bytes | None] | None = None,
            metadata: Sequence[Mapping[str, Any]] | None = None) -> list[int]:
        """Add items (one embedding per photo, and its person); returns their ids.

        Raises:
            ValueError: embeddings not ``[N, dim]`` or not finite, a bad
                person's name, or lengths that differ (nothing is stored).
        """
        vectors = np.asarray(embeddings, np.float64)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"embeddings must be [N, {self.dim}]. Received: shape={vectors.shape}")
        if not np.all(np.isfinite(vectors)):
            raise ValueError("embeddings must be finite. Received: NaN or infinite values")
        names = [check_person(name) for name in people]
        n = len(vectors)
        sources = list(sources) if sources is not None else [None] * n
        thumbnails = list(thumbnails) if thumbnails is not None else [None] * n
        metadata = list(metadata) if metadata is not None else [{}] * n
        if not len(names) == len(sources) == len(thumbnails) == len(metadata) == n:
            raise ValueError(f"one person, source, thumbnail and metadata per embedding: {n} "
                             f"embeddings. Received: {len(names)} people, {len(sources)} "
                             f"sources, {len(thumbnails)} thumbnails, {len(metadata)} metadata")
        with self._lock:
            ids = self._store.add(vectors.astype(np.float32), names, sources, thumbnails,
                                  metadata)
            self.backend.add(np.asarray(ids), vectors.astype(np.float32))
            self._people.update(zip(ids, names, strict=True))
            self.version += 1
        return ids

    def remove(self, item_ids: Iterable[int] | None = None, person: str | None = None) -> int:
        """Remove items by id, or every item of a person; returns how many."""
        if (item_ids is None) == (person is None):
            raise ValueError("give item_ids or person (one of them). Received: "
                             f"item_ids={item_ids!r}, person={person!r}")
        with self._lock:
            ids = self._store.item_ids_of(check_person(person)) if person is not None \
                else [int(i) for i in item_ids]
            removed = self._store.remove_items(ids)
            self.backend.remove(removed)
            for item in removed:
                self._people.pop(item, None)
            self.version += 1
        return len(removed)

    # === The threshold ===

    @property
    def threshold_source(self) -> str:
        """``"gallery"`` after ``calibrate``, else ``"run"``."""
        return "run" if self.calibration is None else "gallery"

    def calibrate(self, far_target: float | None = None, max_queries: int = 5000,
                  seed: int = 0) -> dict[str, Any]:
        """Choose the gallery's identification threshold and keep it in the file.

        Rehearses open-set identification with the enrolled items
        (``fsl.index.calibration.rehearse``: each item searched as a known
        person among the others and as a stranger with its person left out),
        and from then on decides with the threshold found, also after the
        file is opened again, until ``use_run_threshold``. Calibrate again
        after the gallery changed much: the report records its size.

        Args:
            far_target: ``None``: the most correct answers; a rate in
                ``[0, 1]``: the loosest threshold letting at most that share
                of strangers in.
            max_queries: at most this many items replayed (a seeded sample).
            seed: the sample's seed.

        Returns:
            The report of ``rehearse`` (the rates at the run's threshold under
            ``"at_threshold"``), plus ``items``: the gallery's size then.

        Raises:
            ValueError: fewer than two people, a bad ``far_target``.
        """
        from fsl.index.calibration import rehearse

        with self._lock:
            _, vectors, people = self._store.embeddings(self.dim)
            report = rehearse(vectors, people, self.metric, far_target, max_queries, seed,
                              threshold=float(self.model["threshold"]))
            report["items"] = len(vectors)
            self._store.set_meta({"calibration": report})
            self.calibration, self.threshold = report, float(report["threshold"])
        logger.info("Gallery %s: threshold %.4f from %d known and %d stranger rehearsals "
                    "(run's %.4f)", self.path, self.threshold, report["n_known"],
                    report["n_unknown"], float(self.model["threshold"]))
        return report

    def use_run_threshold(self) -> None:
        """Forget ``calibrate``'s threshold: decide with the run's again."""
        with self._lock:
            self._store.delete_meta(["calibration"])
            self.calibration, self.threshold = None, float(self.model["threshold"])

    # === Reads ===

    def __len__(self) -> int:
        return len(self.backend)

    def people(self) -> dict[str, int]:
        """Each person's name and number of photos."""
        return self._store.people()

    def items(self, person: str | None = None) -> list[dict[str, Any]]:
        """The items (id, person, source, metadata, added, has a thumbnail)."""
        return self._store.items(person)

    def thumbnail(self, item_id: int) -> bytes | None:
        return self._store.thumbnail(item_id)

    def embeddings(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Every item's (ids, embeddings, people), e.g. for a map of the gallery."""
        return self._store.embeddings(self.dim)

    def search(self, queries, k: int = 5) -> list[SearchResult]:
        """The ``k`` nearest items of each query embedding and the decision.

        Raises:
            ValueError: queries not ``[Q, dim]`` (one ``[dim]`` is accepted)
                or not finite; ``k`` not a positive integer.
        """
        k = check_positive_int("k", k)
        queries = np.asarray(queries, np.float64)
        if queries.ndim == 1:
            queries = queries[None]
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries must be [Q, {self.dim}]. Received: shape={queries.shape}")
        if not np.all(np.isfinite(queries)):
            raise ValueError("queries must be finite. Received: NaN or infinite values")
        with self._lock:
            ids, distances = self.backend.search(queries.astype(np.float32), k)
            people = {int(i): self._people[int(i)] for i in ids.ravel() if i >= 0}
        sources = self._store.sources(ids[ids >= 0].ravel().tolist())
        results = []
        for row_ids, row_d in zip(ids, distances, strict=True):
            matches = [Match(int(i), people[int(i)], float(d), sources.get(int(i)))
                       for i, d in zip(row_ids, row_d, strict=True) if i >= 0]
            known = bool(matches) and matches[0].distance <= self.threshold
            results.append(SearchResult(matches, matches[0].person if known else None,
                                        matches[0].distance if matches else None,
                                        self.threshold))
        return results

    def close(self) -> None:
        """Save an approximate gallery's graph (``save_graph``), close the file."""
        try:
            self.save_graph()
        except OSError as error:  # a read-only or full disk: the next open rebuilds
            logger.warning("Could not save the search graph %s: %s", self.graph_path, error)
        finally:
            self._store.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _check_card(model: Mapping[str, Any]) -> dict[str, Any]:
    missing = {"fingerprint", "name", "dim", "metric", "threshold"} - set(model)
    if missing:
        raise ValueError(f"model must be a model card (fsl.index.model_card) with fingerprint, "
                         f"name, dim, metric and threshold. Missing: {sorted(missing)}")
    from fsl.evaluation.verification import pair_distances

    pair_distances(np.zeros((1, 2)), np.zeros((1, 2)), model["metric"])  # validates the metric
    return {"fingerprint": str(model["fingerprint"]), "name": str(model["name"]),
            "dim": check_positive_int("dim", model["dim"]), "metric": model["metric"],
            "threshold": float(model["threshold"])}


def _make_backend(name: str, dim: int, metric: str):
    if name == "exact":
        return ExactSearch(dim, metric)
    from fsl.index.search import ApproximateSearch

    return ApproximateSearch(dim, metric)


__all__ = ["BACKENDS", "MAX_NAME", "Gallery", "Match", "ModelMismatchError", "SearchResult",
           "check_person", "model_card"]
