"""Evaluation of embeddings: verification, retrieval, recognition, clustering,
landmarks, within-class covariance normalisation, and an Eigenfaces baseline.

Conventions (shared by every module):

* Embeddings are numpy arrays (or array-likes) of shape ``[N, D]``.
* Pair scores are DISTANCES: smaller means more similar.
* ``same`` labels are ``1`` for a pair of the same identity, ``0`` otherwise.
* A pair is predicted "same" when ``distance <= threshold``.

The metrics are plain numpy / scipy / scikit-learn and run whatever the
Keras backend is. ``protocols`` holds the measurement protocols that run a
model on data (``evaluate_faces``, ``evaluate_embeddings``,
``evaluate_mtfl``), used by the trainers, ``fsl evaluate`` and the
benchmarks alike.
"""

from __future__ import annotations

from fsl.evaluation._validation import cross_distances
from fsl.evaluation.baselines import Eigenfaces, select_eigenfaces
from fsl.evaluation.clustering import ari, cluster, clustering_scores, nmi, purity
from fsl.evaluation.landmarks import (
    attribute_accuracy,
    failure_rate,
    landmark_report,
    normalized_mean_error,
)
from fsl.evaluation.protocols import (
    evaluate_embeddings,
    evaluate_faces,
    evaluate_mtfl,
    training_thresholds,
    verification_pairs,
)
from fsl.evaluation.recognition import (
    Gallery,
    choose_threshold,
    evaluate_open_set,
    open_set_rates,
    open_set_threshold,
)
from fsl.evaluation.retrieval import map_at_r, precision_at_1, recall_at_k
from fsl.evaluation.verification import (
    accuracy_at_threshold,
    auc,
    best_threshold,
    cohort_statistics,
    eer,
    kfold_verification,
    pair_distances,
    roc_curve,
    s_norm_cross_distances,
    s_norm_distances,
    val_far,
)
from fsl.evaluation.whitening import within_class_whitening

__all__ = [
    "cross_distances",
    "evaluate_embeddings",
    "evaluate_faces",
    "evaluate_mtfl",
    "training_thresholds",
    "verification_pairs",
    "Eigenfaces",
    "Gallery",
    "accuracy_at_threshold",
    "ari",
    "attribute_accuracy",
    "auc",
    "best_threshold",
    "choose_threshold",
    "cluster",
    "clustering_scores",
    "cohort_statistics",
    "eer",
    "evaluate_open_set",
    "open_set_rates",
    "open_set_threshold",
    "failure_rate",
    "kfold_verification",
    "landmark_report",
    "map_at_r",
    "nmi",
    "normalized_mean_error",
    "pair_distances",
    "precision_at_1",
    "purity",
    "recall_at_k",
    "roc_curve",
    "s_norm_cross_distances",
    "s_norm_distances",
    "select_eigenfaces",
    "val_far",
    "within_class_whitening",
]
