"""Evaluation protocols: how ``fsl`` measures a trained model, whatever trained it.

Each protocol takes a model (images -> embeddings, or the MTFL network) and
data, and returns a dict of plain numbers; the trainers, ``fsl evaluate``,
the benchmarks and the notebooks call the same functions.

* ``evaluate_faces``: face embeddings on people never seen in training:
  10-fold verification (Huang et al. 2007, LFW's protocol) on all same pairs
  and as many different pairs (``verification_pairs``), the deployable
  threshold chosen on training pairs (cross-fitted when the model ends with
  a whitening learned on them), S-norm, leave-one-out precision@1 and k-means
  NMI / ARI / purity.
* ``evaluate_embeddings``: digit embeddings: pair accuracy at a threshold
  chosen on training pairs, and precision@1.
* ``evaluate_mtfl``: landmark error normalised by the inter-ocular distance,
  failure rate and attribute accuracy (Zhang et al. 2014, TCDCN).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from fsl._checks import check_choice, check_positive_float
from fsl.models.base import predict

#: Seeds of the fixed MNIST evaluation pairs (train digits, test digits).
EVAL_SEED_TRAIN = 11
EVAL_SEED_TEST = 12
#: MTFL's attribute outputs.
ATTRIBUTES = ("gender", "smile", "glasses", "pose")
#: ``score_norm`` choices of ``evaluate_faces``.
SCORE_NORMS = (None, "s-norm")


# === Faces ===


def verification_pairs(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All same-identity pairs and as many different-identity pairs.

    Args:
        labels: identity labels ``[N]``.
        seed: seed of the draw of the different pairs.

    Returns:
        ``(i, j, same)`` index arrays (``i < j``) and float labels, 1 = same.
    """
    labels = np.asarray(labels)
    i, j = np.triu_indices(len(labels), k=1)
    is_same = labels[i] == labels[j]
    pos = np.flatnonzero(is_same)
    neg = np.flatnonzero(~is_same)
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError(
            "Verification needs at least one same and one different pair. Received: "
            f"{len(pos)} same and {len(neg)} different pairs"
        )
    rng = np.random.default_rng(seed)
    neg = rng.choice(neg, size=min(len(pos), len(neg)), replace=False)
    keep = np.sort(np.concatenate([pos, neg]))
    return i[keep], j[keep], is_same[keep].astype("float32")


def evaluate_faces(
    model: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    seed: int = 0,
    metric: str = "L2",
    train_images: np.ndarray | None = None,
    train_labels: np.ndarray | None = None,
    score_norm: str | None = None,
    wccn: float | None = None,
) -> dict[str, Any]:
    """Verification, retrieval and clustering metrics on held-out identities.

    Args:
        model: images -> embeddings.
        images: ``[N, H, W, C]`` preprocessed test faces.
        labels: identity labels ``[N]``.
        seed: seed of the pairs, folds and k-means.
        metric: distance between embeddings.
        train_images, train_labels: the training faces; when given, the
            deployable ``threshold`` is chosen on training pairs (people
            seen in training), never on the test people it is judged on.
        score_norm: ``None``, or ``"s-norm"``: also score the pairs with
            ``fsl.evaluation.s_norm_distances``, the training faces' embeddings
            as the cohort (people other than the test people; needs
            ``train_images``).
        wccn: ``None``, or the shrinkage of the ``fsl.layers.Whitening``
            that ends ``model``, learned on these training faces
            (``fsl.models.whitened_embedding``). Pairs of the people a
            whitening was learned on look far tighter than pairs of new
            people (a threshold read off them rejects many of the new
            people's same pairs), so the thresholds are then chosen on
            cross-fitted training pairs: the training people in 3 folds
            (``seed``), each fold's pairs scored after a whitening
            relearned, with the same shrinkage, on the other folds (its
            S-norm cohort: the other folds' faces). Needs ``train_labels``
            and 4 or more training identities.

    Returns:
        ``verification_accuracy`` (10-fold mean: each fold's threshold chosen
        on the other 9, on raw distances) and ``verification_std``,
        ``threshold`` (chosen on training pairs when the training faces are
        given, else on the evaluated pairs; ``threshold_source`` says which),
        ``precision_at_1`` (leave-one-out), ``nmi`` / ``ari`` / ``purity`` of
        k-means with one cluster per identity, and the counts. With the
        training faces, also ``accuracy_at_threshold``: the test pairs judged
        by that deployable threshold, and its ``far_at_threshold`` (the
        fraction of the test's different pairs it accepts) and
        ``val_at_threshold`` (of its same pairs). With ``score_norm="s-norm"``, also
        ``s_norm_verification_accuracy`` and ``s_norm_verification_std``: the
        same 10-fold protocol, same pairs and folds, on S-normalised
        distances; with the training labels, ``s_norm_threshold`` (chosen on
        the training pairs, S-normalised against the training faces without
        each side's own person) and ``s_norm_accuracy_at_threshold`` /
        ``s_norm_far_at_threshold`` / ``s_norm_val_at_threshold``.

    Raises:
        ValueError: for an unknown ``score_norm``, or ``"s-norm"`` without
            ``train_images``; for ``wccn`` that is not a positive number,
            without the training faces and labels, with a ``model`` that
            does not end with a ``Whitening`` layer, or with fewer than 4
            training identities.
    """
    from fsl.evaluation import (
        accuracy_at_threshold,
        best_threshold,
        cluster,
        clustering_scores,
        kfold_verification,
        pair_distances,
        precision_at_1,
        s_norm_distances,
    )

    check_choice("score_norm", score_norm, SCORE_NORMS)
    if wccn is not None and (train_images is None or train_labels is None):
        raise ValueError(f"wccn={wccn!r} needs train_images and train_labels (the faces the "
                         "whitening was learned on). Received: None")
    if wccn is not None:
        wccn = check_positive_float("wccn", wccn)
    base_model = None if wccn is None else _before_whitening(model)
    if score_norm is not None and train_images is None:
        raise ValueError(
            f"score_norm={score_norm!r} needs train_images (the cohort). Received: train_images=None"
        )
    embeddings = predict(model, images)
    i, j, same = verification_pairs(labels, seed)
    distances = pair_distances(embeddings[i], embeddings[j], metric)
    n_folds = min(10, len(same))
    folds = kfold_verification(distances, same, n_folds=n_folds, seed=seed)
    train_embeddings = None if train_images is None else predict(model, train_images)
    extra = {}
    if score_norm == "s-norm":
        normalized = s_norm_distances(embeddings[i], embeddings[j], train_embeddings, metric)
        s_folds = kfold_verification(normalized, same, n_folds=n_folds, seed=seed)
        extra = {"s_norm_verification_accuracy": s_folds["mean_accuracy"],
                 "s_norm_verification_std": s_folds["std_accuracy"]}
    if train_embeddings is not None and train_labels is not None:
        chosen = _training_thresholds(model, base_model, train_images, train_embeddings,
                                      np.asarray(train_labels), seed, metric, score_norm, wccn)
        threshold, threshold_source = chosen["threshold"], chosen["threshold_source"]
        extra["accuracy_at_threshold"] = accuracy_at_threshold(distances, same, threshold)
        extra.update(_rates_at(distances, same, threshold, ""))
        if score_norm == "s-norm":
            s_threshold = extra["s_norm_threshold"] = chosen["s_norm_threshold"]
            extra["s_norm_accuracy_at_threshold"] = accuracy_at_threshold(
                normalized, same, s_threshold)
            extra.update(_rates_at(normalized, same, s_threshold, "s_norm_"))
    else:
        threshold, _ = best_threshold(distances, same)
        threshold_source = "evaluated pairs"
    n_ids = len(np.unique(labels))
    scores = clustering_scores(labels, cluster(embeddings, n_clusters=n_ids, seed=seed))
    return {
        "verification_accuracy": folds["mean_accuracy"],
        "verification_std": folds["std_accuracy"],
        **extra,
        "threshold": threshold,
        "threshold_source": threshold_source,
        "precision_at_1": precision_at_1(embeddings, labels, metric=metric),
        **scores,
        "pairs": len(same),
        "same_pairs": int(same.sum()),
        "test_images": len(labels),
        "test_identities": n_ids,
        "metric": metric,
    }


def training_thresholds(
    model: keras.Model,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    seed: int = 0,
    metric: str = "L2",
    score_norm: str | None = None,
    wccn: float | None = None,
) -> dict[str, Any]:
    """The deployable thresholds of ``evaluate_faces``, from the training faces alone.

    What a run trained on all of its people (no test people) can report:
    the verification threshold chosen on the training pairs (cross-fitted
    when the model ends with a whitening, ``wccn``), and with
    ``score_norm="s-norm"`` the S-norm threshold, exactly as
    ``evaluate_faces`` chooses them.

    Args:
        model, train_images, train_labels, seed, metric, score_norm, wccn:
            as in ``evaluate_faces``.

    Returns:
        ``threshold``, ``threshold_source``, ``training_pairs``,
        ``training_accuracy_at_threshold`` (on those pairs: optimistic, the
        people were trained on), and ``s_norm_threshold`` with S-norm.

    Raises:
        ValueError: as ``evaluate_faces``; fewer than 2 training identities.
    """
    check_choice("score_norm", score_norm, SCORE_NORMS)
    train_labels = np.asarray(train_labels)
    if len(np.unique(train_labels)) < 2:
        raise ValueError("training_thresholds needs at least 2 training identities. Received: "
                         f"{len(np.unique(train_labels))}")
    if wccn is not None:
        wccn = check_positive_float("wccn", wccn)
    base_model = None if wccn is None else _before_whitening(model)
    return _training_thresholds(model, base_model, train_images, predict(model, train_images),
                                train_labels, seed, metric, score_norm, wccn)


def _training_thresholds(model, base_model, train_images, train_embeddings, train_labels,
                         seed, metric, score_norm, wccn) -> dict[str, Any]:
    from fsl.evaluation import accuracy_at_threshold, best_threshold, pair_distances, s_norm_distances

    train_normalized = None
    if wccn is None:
        ti, tj, tsame = verification_pairs(train_labels, seed)
        train_distances = pair_distances(train_embeddings[ti], train_embeddings[tj], metric)
        threshold_source = "training pairs"
        if score_norm == "s-norm":
            # The training pairs scored against the training faces, each side
            # without its own person (as the test people are not in the cohort).
            train_normalized = s_norm_distances(
                train_embeddings[ti], train_embeddings[tj], train_embeddings, metric,
                labels1=train_labels[ti], labels2=train_labels[tj],
                cohort_labels=train_labels,
            )
    else:
        base = predict(base_model, train_images)
        train_distances, train_normalized, tsame = _cross_fitted_pairs(
            base, train_labels, wccn, metric, seed, score_norm == "s-norm")
        threshold_source = "cross-fitted training pairs"
    threshold, _ = best_threshold(train_distances, tsame)
    chosen = {"threshold": threshold, "threshold_source": threshold_source,
              "training_pairs": len(tsame),
              "training_accuracy_at_threshold": accuracy_at_threshold(
                  train_distances, tsame, threshold)}
    if score_norm == "s-norm":
        chosen["s_norm_threshold"] = best_threshold(train_normalized, tsame)[0]
    return chosen


#: Folds of the training people for cross-fitted thresholds (``wccn``), and
#: the fewest training people that allow them (2 folds of 2).
CROSS_FIT_FOLDS = 3
CROSS_FIT_MIN_PEOPLE = 4


def _before_whitening(model: keras.Model) -> keras.Model:
    """``model`` without its final ``fsl.layers.Whitening``."""
    from fsl.layers import Whitening

    if not isinstance(model, keras.Model) or not model.layers:
        raise ValueError("wccn is set, so model must be a keras.Model ending with an "
                         f"fsl.layers.Whitening layer. Received: model={model!r}")
    if not isinstance(model.layers[-1], Whitening):
        raise ValueError(
            "wccn is set, so model must end with an fsl.layers.Whitening layer "
            "(fsl.models.whitened_embedding). Received: model whose last layer is "
            f"{type(model.layers[-1]).__name__}"
        )
    return keras.Model(model.inputs, model.layers[-1].input)


def _cross_fitted_pairs(embeddings, labels, shrinkage, metric, seed, s_norm):
    """Training pairs scored out of sample: the people split into folds, each
    fold's pairs (``verification_pairs``) whitened by a WCCN learned on the
    other folds, which are also its S-norm cohort. Returns the distances,
    the S-norm distances (``None`` unless ``s_norm``) and the pair labels."""
    from fsl.evaluation import pair_distances, s_norm_distances, within_class_whitening
    from fsl.evaluation._validation import l2_normalize

    people = np.unique(labels)
    if len(people) < CROSS_FIT_MIN_PEOPLE:
        raise ValueError(f"wccn needs at least {CROSS_FIT_MIN_PEOPLE} training identities to "
                         f"choose thresholds out of sample. Received: {len(people)} identities")
    folds = np.array_split(np.random.default_rng(seed).permutation(people),
                           min(CROSS_FIT_FOLDS, len(people) // 2))
    scores, normalized, same = [], [], []
    for held in folds:
        out = np.isin(labels, held)
        mean, matrix = within_class_whitening(embeddings[~out], labels[~out], shrinkage)
        # As the Whitening layer: unit-norm outputs.
        whitened = l2_normalize((np.asarray(embeddings, np.float64) - mean) @ matrix)
        fold, cohort = whitened[out], whitened[~out]
        i, j, fold_same = verification_pairs(labels[out], seed)
        scores.append(pair_distances(fold[i], fold[j], metric))
        if s_norm:
            normalized.append(s_norm_distances(fold[i], fold[j], cohort, metric))
        same.append(fold_same)
    return (np.concatenate(scores), np.concatenate(normalized) if s_norm else None,
            np.concatenate(same))


def _rates_at(distances: np.ndarray, same: np.ndarray, threshold: float, prefix: str) -> dict:
    """What one threshold does to the pairs: the fraction of different pairs
    accepted (false accept rate) and of same pairs accepted (VAL)."""
    accepted = distances <= threshold
    return {f"{prefix}far_at_threshold": float(np.mean(accepted[same == 0])),
            f"{prefix}val_at_threshold": float(np.mean(accepted[same == 1]))}


# === Digits ===


def evaluate_embeddings(
    encoder: keras.Model,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    metric: str = "L2",
) -> dict[str, Any]:
    """Pair accuracy (threshold chosen on training pairs) and precision@1.

    Args:
        encoder: images ``[B, 28, 28, 1]`` -> embeddings ``[B, D]``.
        train: ``(x_train, y_train)``; their ``make_eval_pairs`` (seed
            ``EVAL_SEED_TRAIN``) choose the threshold.
        test: ``(x_test, y_test)``; their ``make_eval_pairs`` (seed
            ``EVAL_SEED_TEST``) measure the accuracy.
        metric: distance between embeddings.

    Returns:
        ``pair_accuracy``, ``threshold``, ``train_pair_accuracy``,
        ``precision_at_1``, ``test_pairs``, ``train_pairs``, ``metric`` and
        the eval seeds.
    """
    from fsl.data.pairs import eval_pair_indices
    from fsl.evaluation import (
        accuracy_at_threshold,
        best_threshold,
        pair_distances,
        precision_at_1,
    )

    (x_train, y_train), (x_test, y_test) = train, test
    e_train = predict(encoder, x_train)
    e_test = predict(encoder, x_test)
    # Same pairs as make_eval_pairs(x, y, seed), drawn as indices: no image copies.
    i1, i2, same = eval_pair_indices(y_train, EVAL_SEED_TRAIN)
    threshold, train_accuracy = best_threshold(
        pair_distances(e_train[i1], e_train[i2], metric), same
    )
    j1, j2, same_test = eval_pair_indices(y_test, EVAL_SEED_TEST)
    test_distances = pair_distances(e_test[j1], e_test[j2], metric)
    return {
        "pair_accuracy": accuracy_at_threshold(test_distances, same_test, threshold),
        "threshold": threshold,
        "train_pair_accuracy": train_accuracy,
        "precision_at_1": precision_at_1(e_test, y_test, metric=metric),
        "train_pairs": len(same),
        "test_pairs": len(same_test),
        "metric": metric,
        "eval_seed_train": EVAL_SEED_TRAIN,
        "eval_seed_test": EVAL_SEED_TEST,
    }


# === MTFL ===


def _collect(dataset) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    images, targets = [], {}
    for x, y in dataset.as_numpy_iterator():
        images.append(x)
        for name, value in y.items():
            targets.setdefault(name, []).append(value)
    if not images:
        raise ValueError("The MTFL test split holds no readable image")
    return np.concatenate(images), {k: np.concatenate(v) for k, v in targets.items()}


def evaluate_mtfl(model: keras.Model, test_dataset, failure_threshold: float = 0.10) -> dict:
    """Landmark error, failure rate and attribute accuracy on a test split.

    Args:
        model: ``fsl.models.mtfl_model`` (dict outputs).
        test_dataset: batched ``(image, targets)`` from ``mtfl_dataset``.
        failure_threshold: per-image normalised mean error counted as a
            failure (0.10, as TCDCN).

    Returns:
        ``mean_error`` (landmark error normalised by the inter-ocular
        distance), ``failure_rate``, ``per_landmark_error``,
        ``attribute_accuracy`` {gender, smile, glasses, pose}, ``n_images``.
    """
    from fsl.evaluation import landmark_report

    images, targets = _collect(test_dataset)
    outputs = model.predict(images, batch_size=256, verbose=0)
    outputs = {k: np.asarray(v) for k, v in outputs.items()}
    report = landmark_report(
        outputs["landmarks"],
        targets["landmarks"],
        {name: outputs[name] for name in ATTRIBUTES},
        {name: targets[name] for name in ATTRIBUTES},
        threshold=failure_threshold,
    )
    report["failure_threshold"] = failure_threshold
    return report


__all__ = [
    "ATTRIBUTES",
    "CROSS_FIT_MIN_PEOPLE",
    "EVAL_SEED_TEST",
    "EVAL_SEED_TRAIN",
    "SCORE_NORMS",
    "evaluate_embeddings",
    "evaluate_faces",
    "evaluate_mtfl",
    "verification_pairs",
]
