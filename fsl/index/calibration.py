"""A gallery's own identification threshold, rehearsed with its enrolled photos.

A run's threshold answers a verification question: are these two photos the
same person? A gallery answers another: is this photo one of the N people
enrolled, and which? With N people there are N chances of a stranger
falling close to someone, so the nearest distance of a stranger shrinks as
the gallery grows, and a verification threshold lets more strangers in.

``rehearse`` replays open-set identification with the gallery's own items,
leaving out what a real query would not find:

* a *known* query: item ``i`` searched against every other item (its own
  row left out), for people with two photos or more; it is answered right
  when the nearest item is of the same person;
* an *unknown* query: item ``i`` searched against the other people only (its
  whole person left out): a stranger to the gallery.

Every item gives one unknown query and (with two photos or more) one known
query, so both kinds weigh alike. The threshold is then chosen on these
outcomes by ``fsl.evaluation.open_set_threshold``: the most correct answers,
or the loosest threshold whose false accept rate is at most ``far_target``.
This is the leave-one-out form of ``fsl.evaluation.choose_threshold``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fsl._checks import check_positive_int
from fsl.evaluation import cross_distances, open_set_rates, open_set_threshold

#: Distances computed per block of queries: at most this many numbers.
_BLOCK_NUMBERS = 1 << 24


def rehearse(vectors, people, metric: str, far_target: float | None = None,
             max_queries: int = 5000, seed: int = 0,
             threshold: float | None = None) -> dict[str, Any]:
    """Leave-one-out open-set identification among the enrolled items.

    Args:
        vectors: ``[N, D]`` the items' embeddings.
        people: ``N`` person names.
        metric: the gallery's distance.
        far_target: ``None``: the threshold with the most correct answers;
            a rate in ``[0, 1]``: the largest threshold whose false accept
            rate (strangers accepted as someone) is at most ``far_target``.
        max_queries: at most this many items are replayed as queries (a
            seeded sample of a larger gallery); each is searched against
            the whole gallery.
        seed: the sample's seed.
        threshold: another threshold to score on the same queries (e.g. the
            run's), reported as ``"at_threshold"``.

    Returns:
        ``fsl.evaluation.open_set_rates`` at the chosen ``threshold``
        (accuracy, false accept / reject and misidentification rates,
        ``n_known``, ``n_unknown``), plus ``far_target`` and, when
        ``threshold`` is given, ``"at_threshold"``: the same rates at it.

    Raises:
        ValueError: fewer than two people (no stranger to rehearse with),
            ``far_target`` outside ``[0, 1]``, mismatched inputs.

    Examples:

    >>> import numpy as np
    >>> vectors = np.array([[0.0], [0.2], [5.0], [5.3], [10.0], [10.1]])
    >>> out = rehearse(vectors, ["a", "a", "b", "b", "c", "c"], "L2")
    >>> out["threshold"], out["accuracy"]  # midway between 0.3 (same) and 4.7 (stranger)
    (2.5, 1.0)
    """
    vectors = np.asarray(vectors, np.float64)
    people = list(people)
    if vectors.ndim != 2 or len(vectors) != len(people):
        raise ValueError(f"vectors must be [N, D] with one person each. Received: vectors of "
                         f"shape {vectors.shape} and {len(people)} people")
    names, codes = np.unique(np.asarray(people, dtype=object).astype(str), return_inverse=True)
    if len(names) < 2:
        raise ValueError("A gallery's threshold is rehearsed with strangers: it needs two "
                         f"people or more. Received: {len(names)} person")
    max_queries = check_positive_int("max_queries", max_queries)
    queries = np.arange(len(vectors))
    if len(queries) > max_queries:
        queries = np.sort(np.random.default_rng(seed).choice(queries, max_queries, False))
    counts = np.bincount(codes)
    squared_norms = np.sum(vectors * vectors, axis=1)
    nearest_other, nearest_other_code, nearest_stranger = [], [], []
    block = max(1, _BLOCK_NUMBERS // len(vectors))
    for start in range(0, len(queries), block):
        rows = queries[start:start + block]
        d = cross_distances(vectors[rows], vectors, metric, squared_norms)
        d[np.arange(len(rows)), rows] = np.inf  # not itself
        best = np.argmin(d, axis=1)
        nearest_other.append(d[np.arange(len(rows)), best])
        nearest_other_code.append(codes[best])
        d[codes[rows][:, None] == codes[None, :]] = np.inf  # not its own person
        nearest_stranger.append(np.min(d, axis=1))
    nearest_other = np.concatenate(nearest_other)
    nearest_other_code = np.concatenate(nearest_other_code)
    nearest_stranger = np.concatenate(nearest_stranger)
    has_other = counts[codes[queries]] >= 2
    distances = np.concatenate([nearest_other[has_other], nearest_stranger])
    known = np.concatenate([np.ones(int(has_other.sum()), bool),
                            np.zeros(len(queries), bool)])
    right = np.concatenate([nearest_other_code[has_other] == codes[queries][has_other],
                            np.zeros(len(queries), bool)])
    chosen = open_set_threshold(distances, known, right, far_target)
    report = {**open_set_rates(distances, known, right, chosen), "far_target": far_target}
    if threshold is not None:
        report["at_threshold"] = open_set_rates(distances, known, right, float(threshold))
    return report


__all__ = ["rehearse"]
