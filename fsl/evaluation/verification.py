"""Face verification metrics: thresholds, 10-fold accuracy, VAL/FAR, ROC, EER.

Conventions used by every function here:

* A pair score is a DISTANCE: smaller means more similar.
* ``same`` labels are ``1`` for a pair of the same identity and ``0`` for a
  pair of different identities (booleans are accepted).
* A pair is predicted "same" when ``distance <= threshold``.

References:

* Schroff, Kalenichenko and Philbin, 2015. "FaceNet: A Unified Embedding for
  Face Recognition and Clustering" (VAL/FAR, Section 5).
* Huang, Ramesh, Berg and Learned-Miller, 2007. "Labeled Faces in the Wild"
  (the 10-fold verification protocol: threshold chosen on 9 folds, accuracy
  measured on the 10th).
* Kenny, 2010. "Bayesian Speaker Verification with Heavy-Tailed Priors"
  (symmetric score normalisation, S-norm); Auckenthaler, Carey and
  Lloyd-Thomas, 2000 (Z-norm and T-norm); Matejka et al., 2017 (adaptive
  S-norm on the closest cohort members).

Everything is plain numpy and runs whatever the Keras backend.
"""

from __future__ import annotations

import numpy as np

from fsl.evaluation._validation import (
    as_distances_and_labels,
    as_embeddings,
    as_labels,
    cross_distances,
    l2_normalize,
    metric_name,
)

#: rows of embeddings compared with the cohort at a time (bounds memory).
_COHORT_CHUNK = 1024


def pair_distances(emb1, emb2, metric: str = "L2") -> np.ndarray:
    """Distance between row ``i`` of ``emb1`` and row ``i`` of ``emb2`` (numpy).

    Args:
        emb1: array-like ``[N, D]``.
        emb2: array-like ``[N, D]``, same shape as ``emb1``.
        metric: ``"L2"`` (Euclidean), ``"squared-L2"``, or ``"angular"``
            (``1 - cos`` on L2-normalised rows, in ``[0, 2]``), or an alias
            accepted by ``fsl.distances.canonical_name``.

    Returns:
        float64 ``[N]`` distances.

    Raises:
        ValueError: if the shapes differ, are not 2-D, or the metric is unknown.

    Examples:

    >>> pair_distances([[0.0, 0.0]], [[3.0, 4.0]]).tolist()
    [5.0]
    """
    metric = metric_name(metric)
    a = as_embeddings(emb1, "emb1")
    b = as_embeddings(emb2, "emb2")
    if a.shape != b.shape:
        raise ValueError(
            "emb1 and emb2 must have the same shape. Received: "
            f"emb1.shape={a.shape}, emb2.shape={b.shape}"
        )
    if metric == "angular":
        cosine = np.sum(l2_normalize(a) * l2_normalize(b), axis=1)
        return np.maximum(1.0 - cosine, 0.0)
    squared = np.sum((a - b) ** 2, axis=1)
    return squared if metric == "squared-L2" else np.sqrt(squared)


def check_cohort(cohort, dim: int | None = None, top_k=None) -> tuple[np.ndarray, int | None]:
    """Validated ``[C, D]`` cohort (``D == dim`` unless ``dim`` is None) and ``top_k``."""
    cohort = as_embeddings(cohort, "cohort")
    if dim is not None and cohort.shape[1] != dim:
        raise ValueError(
            f"cohort rows must have the embeddings' dimension {dim}. Received: "
            f"cohort.shape={cohort.shape}"
        )
    if len(cohort) < 2:
        raise ValueError(
            "cohort needs at least 2 rows for a standard deviation. Received: "
            f"cohort.shape={cohort.shape}"
        )
    if top_k is not None and (
        isinstance(top_k, bool)
        or not isinstance(top_k, (int, np.integer))
        or not 2 <= top_k <= len(cohort)
    ):
        raise ValueError(
            f"top_k must be None or an integer between 2 and the {len(cohort)} cohort rows. "
            f"Received: top_k={top_k!r}"
        )
    return cohort, None if top_k is None else int(top_k)


def cohort_statistics(
    embeddings,
    cohort,
    metric: str = "L2",
    top_k: int | None = None,
    labels=None,
    cohort_labels=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each embedding's distances to a cohort.

    The statistics S-norm (``s_norm_distances``) divides by, for callers that
    keep them, e.g. a gallery normalised once and queried many times.

    Args:
        embeddings: array-like ``[N, D]``.
        cohort: array-like ``[C, D]`` embeddings of other people, ``C >= 2``.
        metric: as ``pair_distances``.
        top_k: if given, only each embedding's ``top_k`` closest cohort rows
            count (adaptive S-norm); ``2 <= top_k <= C``.
        labels, cohort_labels: optional identity labels ``[N]`` and ``[C]``,
            given together: the cohort rows with an embedding's own label
            are left out of its statistics (to score the cohort's own people,
            e.g. to choose a threshold on training pairs with the training
            faces as the cohort). At least 2 rows (and ``top_k``) must remain.

    Returns:
        ``(mean, std)``, float64 ``[N]`` each; ``std`` is floored at float64's
        epsilon, so dividing by it never gives inf or NaN.

    Raises:
        ValueError: on mismatched shapes, a cohort of fewer than 2 rows, an
            unknown metric, ``top_k`` out of range, only one of the label
            arrays, or too few cohort rows left for a labelled embedding.

    Examples:

    >>> mean, std = cohort_statistics([[0.0, 0.0]], [[0.0, 1.0], [0.0, 3.0]])
    >>> mean.tolist(), std.tolist()
    ([2.0], [1.0])
    """
    metric = metric_name(metric)
    embeddings = as_embeddings(embeddings, "embeddings")
    cohort, top_k = check_cohort(cohort, embeddings.shape[1], top_k)
    if (labels is None) != (cohort_labels is None):
        raise ValueError(
            "labels and cohort_labels go together. Received: "
            f"labels={'None' if labels is None else 'an array'}, "
            f"cohort_labels={'None' if cohort_labels is None else 'an array'}"
        )
    if labels is not None:
        labels = as_labels(labels, len(embeddings), "labels", "embeddings")
        cohort_labels = as_labels(cohort_labels, len(cohort), "cohort_labels", "cohort")
    means = np.empty(len(embeddings))
    stds = np.empty(len(embeddings))
    for start in range(0, len(embeddings), _COHORT_CHUNK):
        rows = slice(start, start + _COHORT_CHUNK)
        distances = cross_distances(embeddings[rows], cohort, metric)
        if labels is None:
            if top_k is not None:
                distances = np.partition(distances, top_k - 1, axis=1)[:, :top_k]
            means[rows] = distances.mean(axis=1)
            stds[rows] = distances.std(axis=1)
            continue
        keep = labels[rows, None] != cohort_labels[None, :]
        counts = keep.sum(axis=1)
        needed = 2 if top_k is None else top_k
        if counts.min() < needed:
            bad = start + int(np.argmin(counts))
            raise ValueError(
                f"only {int(counts.min())} cohort rows have another label than embedding {bad} "
                f"(label {labels[bad]!r}); at least {needed} are needed"
            )
        if top_k is not None:
            # Left-out rows sort last; every row keeps >= top_k finite ones.
            distances = np.partition(np.where(keep, distances, np.inf), top_k - 1, axis=1)
            distances = distances[:, :top_k]
            keep, counts = np.ones_like(distances, bool), np.full(len(distances), top_k)
        mean = np.where(keep, distances, 0.0).sum(axis=1) / counts
        means[rows] = mean
        stds[rows] = np.sqrt(np.where(keep, (distances - mean[:, None]) ** 2, 0.0).sum(axis=1) / counts)
    # A row at the same distance from every cohort member has no spread to
    # divide by: the floor keeps its scores finite (no inf, no NaN), if huge.
    return means, np.maximum(stds, np.finfo(np.float64).eps)


def s_norm_distances(
    emb1,
    emb2,
    cohort,
    metric: str = "L2",
    top_k: int | None = None,
    *,
    labels1=None,
    labels2=None,
    cohort_labels=None,
) -> np.ndarray:
    """Pair distances normalised against a cohort of other people (S-norm).

    A raw distance means different things for different faces: an unusual
    photo (a turned head, glasses) is far from everything, so its genuine
    pairs are far too, and one global threshold misjudges them. S-norm
    rescales each pair's distance by how far each of its two embeddings
    lies from a cohort of impostors: with ``mu(x)`` and ``sd(x)`` the mean
    and standard deviation of the distances from ``x`` to the cohort rows
    (``cohort_statistics``),

        s(a, b) = ((d(a, b) - mu(a)) / sd(a) + (d(a, b) - mu(b)) / sd(b)) / 2

    (the average of a Z-norm for each side, symmetric in ``a`` and ``b``).
    The cohort must not contain the people being verified: the training
    people are the usual choice; to score pairs of the cohort's own people,
    give the labels and each side's own people are left out of its
    statistics. The result is still a distance (smaller = more similar,
    negative for pairs closer than the cohort is): every function of this
    module takes it, thresholds included.

    Args:
        emb1: array-like ``[N, D]``.
        emb2: array-like ``[N, D]``, same shape as ``emb1``.
        cohort: array-like ``[C, D]`` embeddings of other people, ``C >= 2``.
        metric: as ``pair_distances``.
        top_k: if given, only each embedding's ``top_k`` closest cohort rows
            count (adaptive S-norm, Matejka et al. 2017); ``2 <= top_k <= C``.
        labels1, labels2, cohort_labels: optional labels ``[N]``, ``[N]``,
            ``[C]``, all three or none (see ``cohort_statistics``).

    Returns:
        float64 ``[N]`` normalised distances.

    Raises:
        ValueError: if the shapes differ, the cohort has fewer than two rows
            or another dimension, the metric is unknown, ``top_k`` is out of
            range, or the labels are incomplete.

    Examples:

    >>> cohort = [[0.0, 1.0], [0.0, -1.0], [2.0, 0.0]]
    >>> s_norm_distances([[0.0, 0.0]], [[1.0, 0.0]], cohort).round(3).tolist()
    [-1.061]
    """
    metric = metric_name(metric)
    distances = pair_distances(emb1, emb2, metric)
    given = [x is not None for x in (labels1, labels2, cohort_labels)]
    if any(given) and not all(given):
        raise ValueError(
            "labels1, labels2 and cohort_labels go together. Received: "
            + ", ".join(f"{n}={'an array' if g else 'None'}"
                        for n, g in zip(("labels1", "labels2", "cohort_labels"), given))
        )
    if all(given):
        labels1 = as_labels(labels1, len(distances), "labels1", "emb1")
        labels2 = as_labels(labels2, len(distances), "labels2", "emb2")
    mean_a, std_a = cohort_statistics(emb1, cohort, metric, top_k, labels1, cohort_labels)
    mean_b, std_b = cohort_statistics(emb2, cohort, metric, top_k, labels2, cohort_labels)
    return 0.5 * ((distances - mean_a) / std_a + (distances - mean_b) / std_b)


def s_norm_cross_distances(
    queries, gallery, cohort, metric: str = "L2", top_k: int | None = None
) -> np.ndarray:
    """S-normalised distances between every query and every gallery row.

    The matrix version of ``s_norm_distances`` (entry ``[q, g]`` is
    ``s_norm_distances(queries[q:q+1], gallery[g:g+1], cohort)``), for
    identification against a gallery.

    Args:
        queries: array-like ``[Q, D]``.
        gallery: array-like ``[G, D]``.
        cohort, metric, top_k: as ``s_norm_distances``.

    Returns:
        float64 ``[Q, G]``.

    Raises:
        ValueError: as ``s_norm_distances``.

    Examples:

    >>> cohort = [[0.0, 1.0], [0.0, -1.0], [2.0, 0.0]]
    >>> s_norm_cross_distances([[0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]], cohort).shape
    (1, 2)
    """
    metric = metric_name(metric)
    q = as_embeddings(queries, "queries")
    g = as_embeddings(gallery, "gallery")
    if q.shape[1] != g.shape[1]:
        raise ValueError(
            "queries and gallery must have the same dimension. Received: "
            f"queries.shape={q.shape}, gallery.shape={g.shape}"
        )
    distances = cross_distances(q, g, metric)
    mean_q, std_q = cohort_statistics(q, cohort, metric, top_k)
    mean_g, std_g = cohort_statistics(g, cohort, metric, top_k)
    return 0.5 * ((distances - mean_q[:, None]) / std_q[:, None]
                  + (distances - mean_g[None, :]) / std_g[None, :])


def _cumulative_counts(distances: np.ndarray, same: np.ndarray):
    """Sorted unique distances and, for each, the counts of pairs ``<=`` it.

    Returns:
        ``(unique, same_le, diff_le)``: ``unique`` ascending ``[U]``;
        ``same_le[k]`` / ``diff_le[k]`` = number of same / different pairs
        with ``distance <= unique[k]``.
    """
    unique, inverse = np.unique(distances, return_inverse=True)
    same_per_value = np.bincount(inverse, weights=same, minlength=len(unique))
    all_per_value = np.bincount(inverse, minlength=len(unique))
    same_le = np.cumsum(same_per_value)
    diff_le = np.cumsum(all_per_value - same_per_value)
    return unique, same_le, diff_le


def _below(value: float) -> float:
    """The largest float64 strictly below ``value``: a threshold that accepts
    no pair at distance ``>= value``."""
    return float(np.nextafter(value, -np.inf))


def best_threshold(distances, same) -> tuple[float, float]:
    """The distance threshold that maximises verification accuracy.

    Candidate thresholds are a value just below the smallest distance (every
    pair predicted "different"), the midpoints between consecutive sorted
    unique distances, and the largest distance (every pair predicted "same").
    Every distinct prediction is reached by one candidate, so the result is
    the exact maximum. O(N log N): one sort and cumulative sums. Ties in
    accuracy go to the smallest threshold (as facenet's ``np.argmax`` over an
    ascending threshold grid).

    Args:
        distances: array-like ``[N]`` of pair distances (smaller = more similar).
        same: array-like ``[N]``; 1 = same identity, 0 = different.

    Returns:
        ``(threshold, accuracy)``; a pair is predicted same when
        ``distance <= threshold``.

    Raises:
        ValueError: empty input, mismatched lengths, non-finite distances or
            labels outside {0, 1}.

    Examples:

    >>> best_threshold([0.1, 0.4, 0.5, 0.9], [1, 1, 0, 0])
    (0.45, 1.0)
    """
    distances, same = as_distances_and_labels(distances, same)
    unique, same_le, diff_le = _cumulative_counts(distances, same)
    n, n_diff = len(distances), float(len(distances) - np.sum(same))
    # Correct predictions when the threshold accepts exactly the pairs <= unique[k].
    correct = np.concatenate([[n_diff], same_le + (n_diff - diff_le)])
    midpoints = unique[:-1] + (unique[1:] - unique[:-1]) / 2.0
    # Guard round-off: a midpoint must not reach the next distance.
    midpoints = np.where(midpoints < unique[1:], midpoints, unique[:-1])
    thresholds = np.concatenate([[_below(unique[0])], midpoints, unique[-1:]])
    best = int(np.argmax(correct))
    return float(thresholds[best]), float(correct[best] / n)


def accuracy_at_threshold(distances, same, threshold: float) -> float:
    """Fraction of pairs classified correctly by ``distance <= threshold``.

    Args:
        distances: array-like ``[N]`` of pair distances.
        same: array-like ``[N]``; 1 = same identity, 0 = different.
        threshold: pairs at a distance ``<= threshold`` are predicted "same".

    Returns:
        Accuracy in ``[0, 1]``.

    Examples:

    >>> accuracy_at_threshold([0.1, 0.4, 0.5, 0.9], [1, 1, 0, 0], 0.45)
    1.0
    """
    distances, same = as_distances_and_labels(distances, same)
    threshold = check_threshold(threshold)
    return float(np.mean((distances <= threshold) == (same == 1)))


def check_threshold(threshold, allow_none: bool = False) -> float | None:
    """A distance threshold: a number (any float but NaN), or ``None`` if allowed."""
    if threshold is None and allow_none:
        return None
    try:
        value = float(threshold)
    except (TypeError, ValueError) as error:
        kind = "a number or None" if allow_none else "a number"
        raise ValueError(f"threshold must be {kind}. Received: threshold={threshold!r}") from error
    if np.isnan(value):
        raise ValueError(f"threshold must not be NaN. Received: threshold={threshold!r}")
    return value


def _stratified_folds(same: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold index per pair; each fold gets its share of same and different."""
    rng = np.random.default_rng(seed)
    folds = np.empty(len(same), dtype=np.int64)
    offset = 0
    for label in (1, 0):
        members = rng.permutation(np.flatnonzero(same == label))
        folds[members] = (offset + np.arange(len(members))) % n_folds
        offset += len(members)
    return folds


def kfold_verification(
    distances, same, n_folds: int = 10, folds=None, seed: int = 0
) -> dict:
    """Verification accuracy by the LFW k-fold protocol.

    For each fold, the threshold is chosen by ``best_threshold`` on the pairs
    of the other folds, then accuracy is measured on the held-out fold; the
    mean and (population) standard deviation over folds are reported, as
    LFW results and facenet's ``calculate_roc`` do.

    Args:
        distances: array-like ``[N]`` of pair distances (smaller = more similar).
        same: array-like ``[N]``; 1 = same identity, 0 = different.
        n_folds: number of folds when ``folds`` is None (``2 <= n_folds <= N``).
        folds: optional array-like ``[N]`` fold id per pair (e.g. the LFW
            ``pairs.txt`` fold of each pair); overrides ``n_folds`` and
            ``seed``. Needs at least two distinct ids.
        seed: seed of the stratified random split used when ``folds`` is None:
            same and different pairs are shuffled and dealt round-robin, so
            each fold has (within one) the same number of pairs of each kind.

    Returns:
        A dict with ``mean_accuracy`` (float), ``std_accuracy`` (float),
        ``thresholds`` (``[K]`` threshold chosen for each fold),
        ``fold_accuracies`` (``[K]``) and ``folds`` (``[N]`` fold id per pair,
        as ``0..K-1`` in the order of the sorted distinct ids).

    Raises:
        ValueError: bad distances/labels, ``n_folds`` outside ``[2, N]``,
            ``folds`` of the wrong length or with fewer than two ids.

    Examples:

    >>> d = [0.1, 0.2, 0.8, 0.9] * 5
    >>> s = [1, 1, 0, 0] * 5
    >>> kfold_verification(d, s, n_folds=5)["mean_accuracy"]
    1.0
    """
    distances, same = as_distances_and_labels(distances, same)
    n = len(distances)
    if folds is None:
        if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)):
            raise ValueError(f"n_folds must be an integer. Received: n_folds={n_folds!r}")
        if not 2 <= n_folds <= n:
            raise ValueError(
                f"n_folds must be between 2 and the number of pairs ({n}). "
                f"Received: n_folds={n_folds}"
            )
        fold_ids = _stratified_folds(same, int(n_folds), seed)
    else:
        raw = np.asarray(folds)
        if raw.ndim != 1 or len(raw) != n:
            raise ValueError(
                f"folds must be 1-D with one fold id per pair ({n}). Received: "
                f"folds with shape {raw.shape}"
            )
        _, fold_ids = np.unique(raw, return_inverse=True)
        if fold_ids.max() < 1:
            raise ValueError(
                f"folds must contain at least two distinct fold ids. Received: "
                f"folds with the single id {raw[0].item()!r}"
            )
    k = int(fold_ids.max()) + 1
    thresholds = np.empty(k)
    accuracies = np.empty(k)
    for fold in range(k):
        test = fold_ids == fold
        thresholds[fold], _ = best_threshold(distances[~test], same[~test])
        accuracies[fold] = np.mean((distances[test] <= thresholds[fold]) == (same[test] == 1))
    return {
        "mean_accuracy": float(np.mean(accuracies)),
        "std_accuracy": float(np.std(accuracies)),
        "thresholds": thresholds,
        "fold_accuracies": accuracies,
        "folds": fold_ids,
    }


def _both_classes(same: np.ndarray, what: str) -> tuple[int, int]:
    n_same = int(np.sum(same))
    n_diff = len(same) - n_same
    if n_same == 0 or n_diff == 0:
        raise ValueError(
            f"{what} needs both same (1) and different (0) pairs. Received: "
            f"{n_same} same and {n_diff} different pairs"
        )
    return n_same, n_diff


def val_far(distances, same, far_target: float = 1e-3) -> dict:
    """FaceNet's validation rate at a target false accept rate.

    ``VAL(d) = |TA(d)| / |P_same|`` (same pairs accepted) and
    ``FAR(d) = |FA(d)| / |P_diff|`` (different pairs accepted), with a pair
    accepted when ``distance <= d``. The threshold is the largest distance
    ``d`` among the pairs (or, if even the closest different pair is too
    many, a value just below the smallest distance) whose ``FAR(d) <=
    far_target``: a STEP function, without facenet's interpolation between
    thresholds of a grid, so the reported ``far`` never exceeds the target.

    Args:
        distances: array-like ``[N]`` of pair distances.
        same: array-like ``[N]``; 1 = same identity, 0 = different. Both kinds
            must be present.
        far_target: the largest acceptable FAR, in ``[0, 1]``.

    Returns:
        A dict with ``val``, ``far`` and ``threshold`` (floats).

    Raises:
        ValueError: bad inputs, a missing class, ``far_target`` outside [0, 1].

    Examples:

    >>> val_far([0.1, 0.2, 0.3, 0.4], [1, 0, 1, 0], far_target=0.5)
    {'val': 1.0, 'far': 0.5, 'threshold': 0.3}
    """
    distances, same = as_distances_and_labels(distances, same)
    if not 0.0 <= float(far_target) <= 1.0:
        raise ValueError(f"far_target must be in [0, 1]. Received: far_target={far_target}")
    n_same, n_diff = _both_classes(same, "val_far")
    unique, same_le, diff_le = _cumulative_counts(distances, same)
    far = diff_le / n_diff
    ok = np.flatnonzero(far <= far_target)
    if len(ok) == 0:
        return {"val": 0.0, "far": 0.0, "threshold": _below(unique[0])}
    k = ok[-1]
    return {
        "val": float(same_le[k] / n_same),
        "far": float(far[k]),
        "threshold": float(unique[k]),
    }


def roc_curve(distances, same) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve of a distance-based verifier: FAR and TAR per threshold.

    Thresholds are ascending: a value just below the smallest distance
    (``FAR = TAR = 0``), then every distinct distance, the last giving
    ``FAR = TAR = 1``. This equals ``sklearn.metrics.roc_curve(same,
    -distances, drop_intermediate=False)`` with ``thresholds = -scores``.

    Args:
        distances: array-like ``[N]`` of pair distances.
        same: array-like ``[N]``; 1 = same identity, 0 = different. Both kinds
            must be present.

    Returns:
        ``(far, tar, thresholds)``, each ``[U + 1]``: false accept rate
        (different pairs with ``distance <= t``), true accept rate (same pairs
        with ``distance <= t``) and the thresholds ``t``.
    """
    distances, same = as_distances_and_labels(distances, same)
    n_same, n_diff = _both_classes(same, "roc_curve")
    unique, same_le, diff_le = _cumulative_counts(distances, same)
    far = np.concatenate([[0.0], diff_le / n_diff])
    tar = np.concatenate([[0.0], same_le / n_same])
    thresholds = np.concatenate([[_below(unique[0])], unique])
    return far, tar, thresholds


def auc(distances, same) -> float:
    """Area under the ROC curve (trapezoids; ties count one half).

    Equals ``sklearn.metrics.roc_auc_score(same, -distances)``: the chance
    that a random same pair is closer than a random different pair.

    Args:
        distances: array-like ``[N]`` of pair distances.
        same: array-like ``[N]``; 1 = same identity, 0 = different.

    Returns:
        AUC in ``[0, 1]``.
    """
    far, tar, _ = roc_curve(distances, same)
    return float(np.sum((far[1:] - far[:-1]) * (tar[1:] + tar[:-1]) / 2.0))


def eer(distances, same) -> float:
    """Equal error rate: where the ROC curve crosses ``FAR = FRR = 1 - TAR``.

    The ROC points are joined by straight lines (as ``auc`` does) and the
    crossing is found by linear interpolation on the segment where
    ``FAR - FRR`` changes sign.

    Args:
        distances: array-like ``[N]`` of pair distances.
        same: array-like ``[N]``; 1 = same identity, 0 = different.

    Returns:
        The EER in ``[0, 1]`` (0 for perfectly separated pairs).

    Examples:

    >>> eer([0.1, 0.2, 0.3, 0.4], [1, 0, 1, 0])
    0.5
    """
    far, tar, _ = roc_curve(distances, same)
    gap = far - (1.0 - tar)  # non-decreasing, from -1 to +1
    k = int(np.argmax(gap >= 0.0))
    if gap[k] == 0.0:
        return float(far[k])
    t = -gap[k - 1] / (gap[k] - gap[k - 1])
    return float(far[k - 1] + t * (far[k] - far[k - 1]))
