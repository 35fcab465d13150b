"""FaceNet-style trainer: face embeddings with online triplet mining.

Train on some identities, measure on OTHER identities (never seen in
training): 10-fold verification accuracy, precision@1 and k-means NMI.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Mapping, Optional, Sequence

import keras
import numpy as np

from fsl.models import POOLING_LAYERS
from fsl.training import _common as common
from fsl.training._runs import RunDir

logger = logging.getLogger(__name__)

FAST_EPOCHS = 1
DEFAULT_EPOCHS = 80
#: identities per P x K batch by default (fewer if fewer people train).
DEFAULT_P = 30
STANDARDIZE = ("fixed", "prewhiten", "unit")
EMBEDDINGS = ("pooled", "projection")
#: ``score_norm`` choices of ``evaluate_faces`` / ``train_facenet``.
SCORE_NORMS = (None, "s-norm")
#: ``pooling`` choices: ``fsl.models.facenet_model``'s.
POOLINGS = tuple(POOLING_LAYERS)

# Augmentation at strength 1: rotation up to 0.03 turns (11 degrees), shift
# up to 5% of the side, zoom in or out up to 10%, left-right flip; borders
# repeat the nearest pixel.
_ROTATION, _TRANSLATION, _ZOOM = 0.03, 0.05, 0.1


def _check_score_norm(score_norm: Any) -> None:
    if score_norm not in SCORE_NORMS:
        raise ValueError(
            f"score_norm must be one of {list(SCORE_NORMS)}. Received: score_norm={score_norm!r}"
        )


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
    train_images: Optional[np.ndarray] = None,
    train_labels: Optional[np.ndarray] = None,
    score_norm: Optional[str] = None,
    wccn: Optional[float] = None,
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
            people (on ORL, a threshold read off them rejected many of the
            new people's same pairs), so the thresholds are then chosen on
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

    _check_score_norm(score_norm)
    if wccn is not None and (train_images is None or train_labels is None):
        raise ValueError(f"wccn={wccn!r} needs train_images and train_labels (the faces the "
                         "whitening was learned on). Received: None")
    if wccn is not None:
        wccn = common.check_positive_float("wccn", wccn)
    base_model = None if wccn is None else _before_whitening(model)
    if score_norm is not None and train_images is None:
        raise ValueError(
            f"score_norm={score_norm!r} needs train_images (the cohort). Received: train_images=None"
        )
    embeddings = common.predict(model, images)
    i, j, same = verification_pairs(labels, seed)
    distances = pair_distances(embeddings[i], embeddings[j], metric)
    n_folds = min(10, len(same))
    folds = kfold_verification(distances, same, n_folds=n_folds, seed=seed)
    train_embeddings = None if train_images is None else common.predict(model, train_images)
    extra = {}
    if score_norm == "s-norm":
        normalized = s_norm_distances(embeddings[i], embeddings[j], train_embeddings, metric)
        s_folds = kfold_verification(normalized, same, n_folds=n_folds, seed=seed)
        extra = {"s_norm_verification_accuracy": s_folds["mean_accuracy"],
                 "s_norm_verification_std": s_folds["std_accuracy"]}
    if train_embeddings is not None and train_labels is not None:
        train_labels = np.asarray(train_labels)
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
            base = common.predict(base_model, train_images)
            train_distances, train_normalized, tsame = _cross_fitted_pairs(
                base, train_labels, wccn, metric, seed, score_norm == "s-norm")
            threshold_source = "cross-fitted training pairs"
        threshold, _ = best_threshold(train_distances, tsame)
        extra["accuracy_at_threshold"] = accuracy_at_threshold(distances, same, threshold)
        extra.update(_rates_at(distances, same, threshold, ""))
        if score_norm == "s-norm":
            s_threshold, _ = best_threshold(train_normalized, tsame)
            extra["s_norm_threshold"] = s_threshold
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


#: Folds of the training people for cross-fitted thresholds (``wccn``), and
#: the fewest training people that allow them (2 folds of 2).
_CROSS_FIT_FOLDS = 3
_CROSS_FIT_MIN_PEOPLE = 4


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
    if len(people) < _CROSS_FIT_MIN_PEOPLE:
        raise ValueError(f"wccn needs at least {_CROSS_FIT_MIN_PEOPLE} training identities to "
                         f"choose thresholds out of sample. Received: {len(people)} identities")
    folds = np.array_split(np.random.default_rng(seed).permutation(people),
                           min(_CROSS_FIT_FOLDS, len(people) // 2))
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


def _load(folder, image_size: int, standardize: str):
    from fsl.data.faces import load_images_numpy

    return load_images_numpy(folder, (image_size, image_size), channels=1, standardize=standardize)


def _split(data_dir, identities, test_identities, split_seed):
    """The (train, test) ``FaceFolder`` pair of a run: ``identities`` only, if given."""
    from fsl.data.faces import identity_split, list_faces, select_identities

    folder = list_faces(data_dir, min_images=2)
    if identities is not None:
        folder = select_identities(folder, identities)
    return identity_split(folder, test_identities, split_seed)


def train_facenet(
    data_dir,
    epochs: Optional[int] = None,
    test_identities: int | float = 10,
    identities: Optional[Sequence[str]] = None,
    loss: str = "semihard",
    p: Optional[int] = None,
    k: int = 4,
    image_size: int = 96,
    embedding_dim: int = 64,
    margin: float = 0.5,
    loss_options: Optional[Mapping[str, Any]] = None,
    learning_rate: float = 1e-3,
    standardize: str = "fixed",
    augment: float = 1.0,
    embedding: str = "pooled",
    pooling: str = "gdc",
    precise_bn: bool = True,
    test_time_flip: bool = True,
    wccn: Optional[float] = 1.0,
    members: int = 1,
    score_norm: Optional[str] = "s-norm",
    seed: int = 0,
    split_seed: Optional[int] = None,
    output_dir=None,
    run: Optional[str] = None,
    overwrite: bool = False,
    resume: bool = False,
    fast: bool = False,
    jit_compile: bool | str = "auto",
    mixed_precision: Optional[str] = None,
    verbose: int | str = "auto",
    callbacks: Optional[Sequence[keras.callbacks.Callback]] = None,
) -> dict[str, Any]:
    """Train a FaceNet-style embedding on a face folder, test on new people.

    The folder (one sub-folder per identity, e.g. ORL's ``s01..s40``) is
    split by identity (``fsl.data.faces.identity_split``): e.g. 30 people to
    train, 10 never seen in training to test. Training uses P x K batches
    (``fsl.data.sampling.pk_dataset``: ``p`` people, ``k`` faces each) and a
    triplet loss with online mining (semi-hard by default) on
    ``fsl.models.facenet_model`` (unit-norm embeddings). The faces are
    decoded once into memory (small face sets; the in-memory array is the
    cache).

    The default recipe, each part tried on ORL (30 people to train, 10
    unseen; over 4 identity splits x 2 seeds, ``benchmarks/quality.py orl
    --repeats 2``, 10-fold verification 0.894 -> 0.959, precision@1
    0.966 -> 1.0, NMI 0.872 -> 0.982 against the plain recipe): batches
    of all 30 training people (``p=30``, more negatives for the semi-hard
    mining), random flips, shifts, zooms and small rotations (``augment``),
    80 epochs on 96 x 96 faces, the final 6 x 6 grid pooled by a learned
    depthwise filter (``pooling="gdc"``), batch-norm statistics recomputed
    on the clean training faces after training
    (``fsl.models.recalibrate_batch_norm``; without it the statistics of
    augmented batches hurt), the embedding taken before the projection
    head (``fsl.models.pooled_embedding``): the triplet loss trains the
    ``embedding_dim``-wide projection, the saved ``embedding.keras`` outputs
    the L2-normalised pooled features (``8 * width`` = 256 values),
    averaged over each face and its mirror image
    (``fsl.models.flip_averaged_embedding``), then whitened by a
    within-class covariance normalisation learned on the training faces
    (``wccn``, ``fsl.models.whitened_embedding``; 0.954 -> 0.959, NMI
    0.969 -> 0.982), with the run's thresholds chosen on cross-fitted
    training pairs (``evaluate_faces``). With S-norm against the training
    faces (``score_norm``, reported next to the raw score) verification
    reaches 0.967 (0.960 without the whitening). The previous default
    (64 x 64, no zoom, no mirror average, no whitening) got 0.935 / 0.999 /
    0.969 (README). Pass ``p=10, augment=0, epochs=40, image_size=64,
    embedding="projection", pooling="avg", precise_bn=False,
    test_time_flip=False, wccn=None`` for the plain recipe.

    Metrics on the test identities: 10-fold verification accuracy on all
    same-identity pairs plus as many different-identity pairs, leave-one-out
    precision@1, and NMI/ARI/purity of k-means with one cluster per person.

    Reference: Schroff, Kalenichenko and Philbin, "FaceNet: A Unified
    Embedding for Face Recognition and Clustering", CVPR 2015.

    Args:
        data_dir: face folder with one sub-folder per identity.
        epochs: passes over the training faces (default 80; with ``fast``,
            1 epoch of 2 batches).
        test_identities: people held out for testing (int, or a fraction).
        identities: only these people (sub-folder names of ``data_dir``)
            take part, split into training and test people as above;
            default: all. For choosing a recipe without the test people:
            pass a split's training people, so that some of them are held
            out as validation people (``benchmarks/quality.py orl
            --validation``).
        loss: ``"semihard"``, ``"hard"``, ``"batch-all"``, ``"lifted"``,
            ``"multi-similarity"`` or ``"circle"``. The last two
            (``fsl.losses.MultiSimilarityLoss``, ``CircleLoss``) run on the
            angular distance with their default parameters unless
            ``loss_options`` sets them; ``margin`` does not apply to them.
            ``"lifted"`` (``fsl.losses.LiftedStructLoss``, Song et al.
            2016) runs here on the unit sphere, where its hinge never
            reaches 0 (see its docstring). On ORL's validation
            protocol (``benchmarks/quality.py orl --validation``), S-norm
            verification, one run per split: semi-hard 0.931, lifted at
            margin 1 0.886, multi-similarity 0.929; two per split:
            semi-hard 0.924, circle 0.929, circle with ``loss_options=
            {"gamma": 64, "margin": 0.25}`` 0.932 (on the test people
            0.965 against semi-hard's 0.967; README).
        p: identities per batch (at most the number of training
            identities); default: all training identities, at most 30.
        k: faces per identity per batch.
        image_size: side of the square, grey input.
        embedding_dim: width of the projection head the loss trains (the
            embedding itself when ``embedding="projection"``).
        margin: triplet margin (unit-norm embeddings).
        loss_options: more arguments of the loss's class, as
            ``fsl.training.train_triplet_mnist``'s (``LOSS_OPTIONS``), e.g.
            ``{"gamma": 64.0}`` for the circle loss.
        learning_rate: initial Adam learning rate (cosine decay to 0).
        standardize: pixel standardisation (``"fixed"``, ``"prewhiten"``,
            ``"unit"``; see ``fsl.data.faces.standardize_image``).
        augment: augmentation strength in ``[0, 1]`` (0: none): random
            left-right flip, rotation up to ``11 * augment`` degrees, shift
            up to ``5% * augment`` of the side and zoom in or out up to
            ``10% * augment``, in the tf.data pipeline.
        embedding: what ``embedding.keras`` outputs and the metrics use:
            ``"pooled"`` (L2-normalised global pooling, before the
            projection head) or ``"projection"`` (the output the loss
            trains).
        pooling: ``fsl.models.facenet_model``'s global pooling: ``"gdc"``
            (a learned depthwise filter over the final grid, MobileFaceNets)
            or ``"avg"`` (global average pooling).
        precise_bn: recompute the batch-norm statistics on the clean
            training faces after training.
        test_time_flip: the saved embedding averages each face and its
            mirror image (``fsl.models.flip_averaged_embedding``, part of
            the model: export and serving do it too).
        wccn: shrinkage of the within-class covariance normalisation
            learned on the training faces' embeddings and appended to the
            saved embedding (``fsl.models.whitened_embedding``, a layer of
            the model: export and serving do it too); ``None``: none.
        members: networks trained side by side (each its own initial
            weights and loss, on the same batches) whose embeddings the
            saved one concatenates (``fsl.models.ensemble_embedding``,
            before the mirror average and the whitening); training costs
            ``members`` times as much. On ORL two members did no better than
            one (10-fold verification 0.958 raw / 0.968 S-norm against
            0.959 / 0.967, ``benchmarks/quality.py orl --repeats 2
            --members 2``), so the default is one.
        score_norm: ``"s-norm"`` (default): the metrics also include
            ``s_norm_verification_accuracy``, pairs scored by
            ``fsl.evaluation.s_norm_distances`` with the training faces as
            the cohort, and ``s_norm_threshold``; the run folder keeps the
            cohort (``cohort.npy``, the training faces' embeddings) for
            ``fsl.faces.FacePipeline.from_run(score_norm="s-norm")`` and the
            ``--score-norm s-norm`` of ``fsl verify`` and ``fsl export``;
            ``None``: raw distances only.
        split_seed: seed of the identity split and of the evaluation
            (pairs, folds, k-means); default ``seed``. Fix it and vary
            ``seed`` to repeat a run on the same people with other initial
            weights and batches.
        seed, output_dir, run, overwrite, resume, fast, jit_compile,
        mixed_precision, verbose, callbacks: as
        ``fsl.training.train_siamese_mnist``.

    Returns:
        The metrics written to ``metrics.json``.

    Raises:
        FileNotFoundError: if ``data_dir`` does not exist.
        ValueError: for an invalid argument (named in the message).
        FileExistsError: if the run folder exists and neither ``overwrite``
            nor ``resume`` is set.
    """
    from fsl import models
    from fsl.data.sampling import pk_dataset

    arguments = dict(locals())
    for name in ("callbacks", "models", "pk_dataset"):
        arguments.pop(name)
    if identities is not None:
        if isinstance(identities, str):
            raise ValueError("identities must be a list of identity folder names. "
                             f"Received: identities={identities!r}")
        arguments["identities"] = identities = [str(n) for n in identities]
    if fast:
        epochs = FAST_EPOCHS if epochs is None else epochs
    epochs = common.check_positive_int("epochs", DEFAULT_EPOCHS if epochs is None else epochs)
    loss = common.check_choice("loss", loss, common.TRIPLET_LOSSES)
    if p is not None:
        p = common.check_positive_int("p", p)
    k = common.check_positive_int("k", k)
    image_size = common.check_positive_int("image_size", image_size)
    embedding_dim = common.check_positive_int("embedding_dim", embedding_dim)
    margin = common.check_positive_float("margin", margin)
    arguments["loss_options"] = loss_options = common.check_loss_options(loss, loss_options)
    learning_rate = common.check_positive_float("learning_rate", learning_rate)
    standardize = common.check_choice("standardize", standardize, STANDARDIZE)
    augment = common.check_fraction("augment", augment)
    embedding = common.check_choice("embedding", embedding, EMBEDDINGS)
    pooling = common.check_choice("pooling", pooling, POOLINGS)
    for name, flag in (("precise_bn", precise_bn), ("test_time_flip", test_time_flip)):
        if not isinstance(flag, bool):
            raise ValueError(f"{name} must be True or False. Received: {name}={flag!r}")
    if wccn is not None:
        wccn = common.check_positive_float("wccn", wccn)
    members = common.check_positive_int("members", members)
    # One loss per member, built now so that a bad option value fails before
    # the run folder exists.
    member_losses = [common.triplet_loss(loss, margin, options=loss_options)
                     for _ in range(members)]
    _check_score_norm(score_norm)
    seed = common.check_seed(seed)
    split_seed = seed if split_seed is None else common.check_seed(split_seed, "split_seed")
    common.check_jit(jit_compile)
    mixed_precision = common.check_precision(mixed_precision)
    train_faces, test_faces = _split(data_dir, identities, test_identities, split_seed)
    if wccn is not None and train_faces.num_classes < _CROSS_FIT_MIN_PEOPLE:
        raise ValueError(f"wccn needs at least {_CROSS_FIT_MIN_PEOPLE} training identities "
                         "(thresholds are chosen out of sample). Received: "
                         f"{train_faces.num_classes} training identities; pass wccn=None")
    if p is None:
        p = min(DEFAULT_P, train_faces.num_classes)
    if p > train_faces.num_classes:
        raise ValueError(
            f"p must be at most the {train_faces.num_classes} training identities. Received: p={p}"
        )
    # An absolute path: the run re-evaluates (and resumes) from any working folder.
    data_dir = os.path.abspath(data_dir)
    arguments.update(epochs=epochs, p=p, split_seed=split_seed, data_dir=data_dir)

    run_dir = common.start_run("facenet", arguments, output_dir, run, overwrite, resume)
    common.set_seed(seed)
    logger.info(
        "Face folder %s: %d train identities (%d images), %d test identities (%d images)",
        data_dir, train_faces.num_classes, len(train_faces),
        test_faces.num_classes, len(test_faces),
    )
    common.update_config(
        run_dir,
        data_source=data_dir,
        train_identities=list(train_faces.class_names),
        test_identities=list(test_faces.class_names),
        preprocessing={"image_size": [image_size, image_size], "channels": 1,
                       "standardize": standardize},
    )
    x_train, y_train = _load(train_faces, image_size, standardize)
    x_test, y_test = _load(test_faces, image_size, standardize)

    # === Model ===
    dataset = pk_dataset(x_train, y_train, p=p, k=k, seed=seed)
    steps = max(int(dataset.cardinality().numpy()), 1)
    if augment > 0:
        dataset = common.augment_batches(
            dataset, seed, rotation=_ROTATION * augment, translation=_TRANSLATION * augment,
            zoom=_ZOOM * augment, flip=True, fill_mode="nearest",
        )
    with common.dtype_policy(mixed_precision):
        nets = [
            models.facenet_model(
                input_shape=(image_size, image_size, 1), embedding_dim=embedding_dim,
                pooling=pooling, name="facenet" if members == 1 else f"facenet_{m}",
            )
            for m in range(members)
        ]
    if members == 1:
        model = nets[0]
        triplet_loss = member_losses[0]
    else:
        # The members side by side in one model: each its own initial
        # weights, output and loss on the same batches; one fit, one
        # checkpoint to resume.
        inputs = keras.Input(shape=(image_size, image_size, 1), name="image")
        model = keras.Model(inputs, [net(inputs) for net in nets], name="facenet_ensemble")
        triplet_loss = member_losses
        dataset = dataset.map(lambda x, y: (x, (y,) * members))
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=epochs * steps)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=triplet_loss,
        jit_compile=common.resolve_jit(model, jit_compile),
    )

    # === Training ===
    # fast: a smoke run of two P x K batches.
    fit_kwargs = {"steps_per_epoch": min(2, steps)} if fast else {}
    history, seconds = common.fit(
        model, dataset, epochs, run_dir, callbacks, verbose, **fit_kwargs
    )
    if precise_bn:
        models.recalibrate_batch_norm(model, x_train, batch_size=p * k)
    embedders = [models.pooled_embedding(net) if embedding == "pooled" else net for net in nets]
    embedder = (embedders[0] if members == 1
                else models.ensemble_embedding(embedders, name="facenet_ensemble_embedding"))
    if test_time_flip:
        embedder = models.flip_averaged_embedding(embedder)
    if wccn is not None:
        embedder = models.whitened_embedding(embedder, x_train, y_train, shrinkage=wccn)
    model.save(run_dir.model_path)
    embedder.save(run_dir.embedding_path)
    if score_norm == "s-norm":
        # The cohort S-norm scores against when the run verifies or exports.
        np.save(run_dir.cohort_path, common.predict(embedder, x_train).astype(np.float32))

    # === Evaluation ===
    metrics = evaluate_faces(embedder, x_test, y_test, seed=split_seed,
                             train_images=x_train, train_labels=y_train, score_norm=score_norm,
                             wccn=wccn)
    metrics["embedding"] = embedding
    metrics["embedding_size"] = int(embedder.output_shape[-1])
    metrics["test_time_flip"] = test_time_flip
    metrics["wccn"] = wccn
    metrics["members"] = members
    metrics["run_dir"] = str(run_dir.path)
    metrics = common.finish_run(run_dir, metrics, history, seconds, data_dir)
    s_norm = (
        f" (S-norm: {metrics['s_norm_verification_accuracy']:.4f})"
        if "s_norm_verification_accuracy" in metrics else ""
    )
    common.echo(
        f"verification accuracy on unseen people: {metrics['verification_accuracy']:.4f} "
        f"(10-fold, +/- {metrics['verification_std']:.4f}){s_norm}; precision@1: "
        f"{metrics['precision_at_1']:.4f}; NMI: {metrics['nmi']:.4f}",
        verbose,
    )
    return metrics


def evaluate_run(run_dir: RunDir, config: dict[str, Any]) -> dict[str, Any]:
    """Re-evaluate a finished facenet run on its held-out identities."""
    arguments = config["arguments"]
    prep = config["preprocessing"]
    split_seed = arguments.get("split_seed", arguments["seed"])
    train_faces, test_faces = _split(arguments["data_dir"], arguments.get("identities"),
                                     arguments["test_identities"], split_seed)
    x_train, y_train = _load(train_faces, prep["image_size"][0], prep["standardize"])
    x_test, y_test = _load(test_faces, prep["image_size"][0], prep["standardize"])
    model = run_dir.load_model("embedding")
    # Runs from before score normalisation / WCCN existed have neither argument.
    return evaluate_faces(model, x_test, y_test, seed=split_seed,
                          train_images=x_train, train_labels=y_train,
                          score_norm=arguments.get("score_norm"), wccn=arguments.get("wccn"))
