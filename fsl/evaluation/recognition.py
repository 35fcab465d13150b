"""One-shot face recognition with an "unknown" answer (open-set identification).

A ``Gallery`` holds the enrolled people (say, the four employees allowed in
the building, one or a few photos each). A query is answered with the name of
the nearest enrolled person when its distance is ``<= threshold``, and with
``None`` ("unknown") otherwise. ``evaluate_open_set`` scores such answers on
queries from enrolled AND non-enrolled people; ``choose_threshold`` picks the
threshold on a validation set.

Conventions: embeddings are ``[N, D]`` arrays; distances (smaller = more
similar) use ``"L2"``, ``"squared-L2"`` or ``"angular"``; a query is accepted
when its nearest distance is ``<= threshold``. Plain numpy.
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np

from fsl.evaluation._validation import (
    as_binary_labels,
    as_embeddings,
    as_vector,
    class_means,
    cross_distances,
    l2_normalize,
    metric_name,
)
from fsl.evaluation.verification import check_threshold

MODES = ("mean", "all")


def _as_names(names, n: int, what: str) -> list:
    if isinstance(names, str):
        return [names] * n
    names = list(names)
    if len(names) != n:
        raise ValueError(
            f"{what} must have one name per embedding (or be a single string). "
            f"Received: {len(names)} names for {n} embeddings"
        )
    return names


class Gallery:
    """Enrolled people for nearest-neighbour identification with rejection.

    Args:
        metric: ``"L2"``, ``"squared-L2"`` or ``"angular"``.
        mode: ``"mean"``: each person is represented by the mean of their
            enrolled embeddings (of the L2-normalised embeddings for
            ``"angular"``), one template per person; ``"all"``: every enrolled
            embedding is kept and a query's distance to a person is its
            distance to that person's closest embedding.
        cohort: optional ``[C, D]`` embeddings of people who are neither
            enrolled nor queried (e.g. the training faces): distances are then
            S-normalised against it (``fsl.evaluation.s_norm_cross_distances``),
            and thresholds are on that scale (often negative).
        top_k: adaptive S-norm, as ``fsl.evaluation.s_norm_distances``.

    Examples:

    >>> g = Gallery().enroll([[0.0, 0.0], [0.0, 0.2]], "ana").enroll([[5.0, 5.0]], ["bo"])
    >>> g.identify([[0.1, 0.0], [9.0, 0.0]], threshold=1.0)[0]
    ['ana', None]
    """

    def __init__(self, metric: str = "L2", mode: str = "mean", cohort=None,
                 top_k: int | None = None):
        self.metric = metric_name(metric)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}. Received: mode={mode!r}")
        self.mode = mode
        if cohort is None and top_k is not None:
            raise ValueError(f"top_k needs a cohort. Received: cohort=None, top_k={top_k!r}")
        if cohort is not None:
            from fsl.evaluation.verification import check_cohort

            cohort, top_k = check_cohort(cohort, top_k=top_k)
        self.cohort = cohort
        self.top_k = top_k
        self._embeddings: list[np.ndarray] = []
        self._names: list[Hashable] = []

    # === Enrolment ===

    def enroll(self, embeddings, names) -> Gallery:
        """Add embeddings of one or several people.

        Args:
            embeddings: array-like ``[N, D]`` (``[D]`` for a single image).
            names: one name per row, or a single string for all rows. Enrolling
                a name again adds images to that person.

        Returns:
            The gallery itself, so calls chain.

        Raises:
            ValueError: bad embeddings, a name count that does not match, a
                ``None`` name, or a dimension that differs from earlier ones.
        """
        array = np.asarray(embeddings, dtype=np.float64)
        if array.ndim == 1:
            array = array[None, :]
        array = as_embeddings(array, "embeddings")
        names = _as_names(names, len(array), "names")
        if any(name is None for name in names):
            raise ValueError("names must not be None (None means 'unknown'). "
                             f"Received: names={names[:5]!r}")
        if self._embeddings and array.shape[1] != len(self._embeddings[0]):
            raise ValueError(
                "All enrolled embeddings must have the same dimension. Received: "
                f"dimension {array.shape[1]}, gallery has {len(self._embeddings[0])}"
            )
        self._embeddings.extend(array)
        self._names.extend(names)
        return self

    @property
    def names(self) -> list:
        """Enrolled people, in order of first enrolment."""
        return list(dict.fromkeys(self._names))

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name) -> bool:
        return name in set(self._names)

    def templates(self) -> tuple[np.ndarray, list]:
        """The ``[M, D]`` vectors queries are compared with, and their names."""
        if not self._embeddings:
            raise ValueError("The gallery is empty: enroll someone first.")
        x = np.stack(self._embeddings)
        if self.mode == "all":
            return x, list(self._names)
        if self.metric == "angular":
            x = l2_normalize(x)
        names = self.names
        index = {name: i for i, name in enumerate(names)}
        codes = np.array([index[name] for name in self._names])
        return class_means(x, codes, len(names)), names

    # === Identification ===

    def nearest(self, query_embeddings) -> tuple[list, np.ndarray]:
        """Nearest enrolled person of each query and its distance (no rejection)."""
        templates, names = self.templates()
        query = np.asarray(query_embeddings, dtype=np.float64)
        if query.ndim == 1:
            query = query[None, :]
        query = as_embeddings(query, "query_embeddings")
        if query.shape[1] != templates.shape[1]:
            raise ValueError(
                "query_embeddings must have the gallery's dimension "
                f"({templates.shape[1]}). Received: shape {query.shape}"
            )
        if self.cohort is None:
            distances = cross_distances(query, templates, self.metric)
        else:
            from fsl.evaluation.verification import s_norm_cross_distances

            distances = s_norm_cross_distances(query, templates, self.cohort, self.metric, self.top_k)
        best = np.argmin(distances, axis=1)
        return [names[i] for i in best], distances[np.arange(len(query)), best]

    def identify(self, query_embeddings, threshold: float | None = None
                 ) -> tuple[list, np.ndarray]:
        """Name each query, or answer ``None`` (unknown) when nobody is close.

        Args:
            query_embeddings: array-like ``[N, D]`` (``[D]`` for one query).
            threshold: a query is accepted when its nearest distance is
                ``<= threshold``; None accepts everyone (closed set). Choose it
                with ``choose_threshold``, not by hand.

        Returns:
            ``(names, distances)``: a list of ``N`` names (``None`` for
            unknown) and the ``[N]`` distances to the nearest enrolled person.
        """
        threshold = check_threshold(threshold, allow_none=True)
        names, distances = self.nearest(query_embeddings)
        if threshold is not None:
            names = [n if d <= threshold else None for n, d in zip(names, distances)]
        return names, distances

    def __repr__(self) -> str:
        cohort = "" if self.cohort is None else f", cohort={len(self.cohort)} rows"
        return (f"Gallery(metric={self.metric!r}, mode={self.mode!r}, "
                f"people={len(self)}, embeddings={len(self._embeddings)}{cohort})")


def _outcomes(gallery: Gallery, query_emb, query_names):
    """Nearest distance, 'known' mask and 'right person' mask per query."""
    if not isinstance(gallery, Gallery):
        raise ValueError(f"gallery must be a Gallery. Received: gallery of type "
                         f"{type(gallery).__name__}")
    nearest, distances = gallery.nearest(query_emb)
    true = _as_names(query_names, len(distances), "query_names")
    enrolled = set(gallery.names)
    known = np.array([name is not None and name in enrolled for name in true])
    right = np.array([k and n == t for k, n, t in zip(known, nearest, true)], dtype=bool)
    return distances, known, right


def _rate(count, total) -> float | None:
    return None if total == 0 else float(count / total)


def evaluate_open_set(gallery: Gallery, query_emb, query_names,
                      threshold: float | None) -> dict:
    """Score open-set identification on queries of known and unknown people.

    A query whose name is enrolled in ``gallery`` is "known" and answered
    correctly with that name; any other query (its name not enrolled, or
    ``None``) is "unknown" and answered correctly with ``None``.

    Args:
        gallery: a ``Gallery``.
        query_emb: array-like ``[N, D]``.
        query_names: ``N`` true names (``None`` or any non-enrolled name for
            people the system should not know).
        threshold: acceptance threshold (``None``: accept everyone).

    Returns:
        A dict of plain values:

        * ``accuracy``: correct answers over all queries;
        * ``false_accept_rate``: unknown queries accepted as someone, over
          unknown queries;
        * ``false_reject_rate``: known queries answered ``None``, over known;
        * ``misidentification_rate``: known queries accepted under the WRONG
          name, over known;
        * ``known_accuracy``: known queries given their own name, over known;
        * ``n_known``, ``n_unknown``, ``threshold``.

        A rate whose denominator is 0 (no unknown or no known queries) is
        ``None``, not NaN.

    Examples:

    >>> g = Gallery().enroll([[0.0], [5.0]], ["ana", "bo"])
    >>> out = evaluate_open_set(g, [[0.2], [4.9], [20.0]], ["ana", "bo", "eve"], 1.0)
    >>> out["accuracy"], out["false_accept_rate"]
    (1.0, 0.0)
    """
    threshold = check_threshold(threshold, allow_none=True)
    distances, known, right = _outcomes(gallery, query_emb, query_names)
    return open_set_rates(distances, known, right, threshold)


def open_set_rates(distances, known, right, threshold: float | None) -> dict:
    """``evaluate_open_set``'s scores from the outcomes of open-set queries.

    Args:
        distances, known, right: as ``open_set_threshold``.
        threshold: acceptance threshold (``None``: accept everyone).

    Returns:
        The dict of ``evaluate_open_set``.
    """
    distances = as_vector(distances, "distances")
    known = as_binary_labels(known, len(distances), "known").astype(bool)
    right = as_binary_labels(right, len(distances), "right").astype(bool)
    accepted = np.ones_like(known) if threshold is None else distances <= threshold
    n_known, n_unknown = int(known.sum()), int((~known).sum())
    correct = np.sum(right & accepted) + np.sum(~known & ~accepted)
    return {
        "accuracy": float(correct / len(distances)),
        "false_accept_rate": _rate(np.sum(~known & accepted), n_unknown),
        "false_reject_rate": _rate(np.sum(known & ~accepted), n_known),
        "misidentification_rate": _rate(np.sum(known & ~right & accepted), n_known),
        "known_accuracy": _rate(np.sum(right & accepted), n_known),
        "n_known": n_known,
        "n_unknown": n_unknown,
        "threshold": None if threshold is None else float(threshold),
    }


def choose_threshold(gallery: Gallery, val_emb, val_names,
                     far_target: float | None = None) -> float:
    """Pick the acceptance threshold on a validation set.

    Args:
        gallery: a ``Gallery``.
        val_emb: array-like ``[N, D]`` validation queries (other images than
            the enrolled ones; include non-enrolled people).
        val_names: ``N`` true names (``None`` / non-enrolled for unknown).
        far_target: None to maximise ``evaluate_open_set``'s accuracy (exact:
            candidates are a value below the smallest distance, midpoints
            between sorted distinct distances and the largest distance; ties go
            to the smallest threshold). A number in ``[0, 1]`` to return
            instead the largest validation distance whose false accept rate is
            ``<= far_target`` (needs unknown queries), as ``val_far``.

    Returns:
        The threshold.

    Raises:
        ValueError: bad inputs, ``far_target`` outside ``[0, 1]``, or a
            ``far_target`` with no unknown validation query.
    """
    distances, known, right = _outcomes(gallery, val_emb, val_names)
    return open_set_threshold(distances, known, right, far_target)


def open_set_threshold(distances, known, right, far_target: float | None = None) -> float:
    """The acceptance threshold from the outcomes of open-set queries.

    The core of ``choose_threshold``, for callers that computed the queries'
    nearest distances themselves (e.g. ``fsl.index.Gallery.calibrate``, which
    rehearses with the enrolled photos).

    Args:
        distances: ``[N]`` each query's distance to its nearest enrolled
            person.
        known: ``[N]`` booleans: the query's person is enrolled.
        right: ``[N]`` booleans: the nearest enrolled person is the query's
            own (implies ``known``).
        far_target: as ``choose_threshold``.

    Returns:
        The threshold, as ``choose_threshold``.

    Raises:
        ValueError: inputs of different lengths or empty, ``right`` without
            ``known``, ``far_target`` outside ``[0, 1]`` or with no unknown
            query.

    Examples:

    >>> open_set_threshold([0.1, 0.5, 0.9], [True, True, False], [True, True, False])
    0.7
    """
    distances = as_vector(distances, "distances")
    known = as_binary_labels(known, len(distances), "known").astype(bool)
    right = as_binary_labels(right, len(distances), "right").astype(bool)
    if np.any(right & ~known):
        raise ValueError("right must imply known. Received: a query answered right whose "
                         "person is not enrolled")
    unique, inverse = np.unique(distances, return_inverse=True)
    right_le = np.cumsum(np.bincount(inverse, weights=right, minlength=len(unique)))
    unknown_le = np.cumsum(np.bincount(inverse, weights=~known, minlength=len(unique)))
    n_unknown = float(np.sum(~known))
    below = float(np.nextafter(unique[0], -np.inf))
    if far_target is not None:
        if not 0.0 <= float(far_target) <= 1.0:
            raise ValueError(f"far_target must be in [0, 1]. Received: far_target={far_target}")
        if n_unknown == 0:
            raise ValueError(
                "far_target needs validation queries of people not enrolled. "
                f"Received: all {len(distances)} val_names are enrolled"
            )
        ok = np.flatnonzero(unknown_le / n_unknown <= float(far_target))
        return below if len(ok) == 0 else float(unique[ok[-1]])
    correct = np.concatenate([[n_unknown], right_le + n_unknown - unknown_le])
    midpoints = unique[:-1] + (unique[1:] - unique[:-1]) / 2.0
    midpoints = np.where(midpoints < unique[1:], midpoints, unique[:-1])
    thresholds = np.concatenate([[below], midpoints, unique[-1:]])
    return float(thresholds[int(np.argmax(correct))])

