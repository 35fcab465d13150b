"""FaceNet-style trainer: face embeddings with online triplet mining or a
margin-softmax head.

Train on some identities, measure on OTHER identities (never seen in
training): 10-fold verification accuracy, precision@1 and k-means NMI.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np

from fsl import runs
from fsl._checks import (
    check_choice,
    check_fraction,
    check_positive_float,
    check_positive_int,
    check_rate,
    check_real,
    check_seed,
)
from fsl._deprecation import moved_names
from fsl.data.augment import augment_batches
from fsl.evaluation.protocols import CROSS_FIT_MIN_PEOPLE, SCORE_NORMS, evaluate_faces
from fsl.models.base import predict
from fsl.preprocessing import FACE_ALIGNMENTS, Preprocessing
from fsl.pretrained.catalog import PRETRAINED, get_pretrained
from fsl.runs import RunDir
from fsl.training.choices import EMBEDDINGS, POOLINGS
from fsl.training.losses import (
    HEAD_MARGINS,
    MARGIN_HEADS,
    TRIPLET_LOSSES,
    check_loss_options,
    margin_head,
    triplet_loss,
)
from fsl.training.options import RunOptions, guard_run

logger = logging.getLogger(__name__)

FAST_EPOCHS = 1
DEFAULT_EPOCHS = 80
#: identities per P x K batch by default (fewer if fewer people train).
DEFAULT_P = 30
#: The smallest input side ``fsl.models.facenet_model`` takes.
MIN_IMAGE_SIZE = 32
STANDARDIZE = ("fixed", "prewhiten", "unit")
#: ``loss`` values: the online-mining losses, then the margin-softmax heads.
FACENET_LOSSES = TRIPLET_LOSSES + MARGIN_HEADS
#: The triplet losses' margin by default, and that of the semi-hard term a
#: margin head is combined with (``triplet_weight``).
TRIPLET_MARGIN = 0.5

# Augmentation at strength 1: rotation up to 0.03 turns (11 degrees), shift
# up to 5% of the side, zoom in or out up to 10%, left-right flip; borders
# repeat the nearest pixel.
_ROTATION, _TRANSLATION, _ZOOM = 0.03, 0.05, 0.1


def _load(folder, prep: Preprocessing, standardize: bool = True):
    """The folder's faces as the model takes them (``standardize=False``: raw
    0..255 pixels): whole photos, or (``align`` ``"crop"``/``"template"``)
    the largest face of each, detected and cut out once by
    ``fsl.faces.face_folder_crops`` (cached), as serving cuts them."""
    from fsl.data.faces import load_images_numpy

    if prep.align == "none":
        return load_images_numpy(folder, prep.image_size, channels=prep.channels,
                                 standardize=prep.standardize if standardize else None)
    from fsl.faces.crops import face_folder_crops

    pixels, labels, _ = face_folder_crops(folder.paths, folder.labels, prep)
    if standardize:
        pixels = prep.standardize_pixels(pixels)
    return pixels.astype("float32"), labels.astype("int32")


def _split(data_dir, identities, test_identities, split_seed):
    """The (train, test) ``FaceFolder`` pair of a run: ``identities`` only, if given."""
    from fsl.data.faces import identity_split, list_faces, select_identities

    folder = list_faces(data_dir, min_images=2)
    if identities is not None:
        folder = select_identities(folder, identities)
    return identity_split(folder, test_identities, split_seed)


@guard_run
def train_facenet(
    data_dir,
    epochs: int | None = None,
    test_identities: int | float = 10,
    identities: Sequence[str] | None = None,
    loss: str = "semihard",
    p: int | None = None,
    k: int = 4,
    image_size: int | None = None,
    embedding_dim: int = 64,
    margin: float | None = None,
    loss_options: Mapping[str, Any] | None = None,
    triplet_weight: float = 0.0,
    learning_rate: float | None = None,
    standardize: str | None = None,
    align: str | None = None,
    crop_margin: float = 32.0,
    augment: float = 1.0,
    embedding: str | None = None,
    pooling: str = "gdc",
    dropout: float = 0.2,
    init: str | None = None,
    freeze_blocks: int = 0,
    precise_bn: bool = True,
    test_time_flip: bool = True,
    wccn: float | None = 1.0,
    score_norm: str | None = "s-norm",
    seed: int = 0,
    split_seed: int | None = None,
    **run_options: Any,
) -> dict[str, Any]:
    """Train a FaceNet-style embedding on a face folder, test on new people.

    The folder (one sub-folder per identity, e.g. ORL's ``s01..s40``) is
    split by identity (``fsl.data.faces.identity_split``): e.g. 30 people to
    train, 10 never seen in training to test. Training uses P x K batches
    (``fsl.data.sampling.pk_dataset``: ``p`` people, ``k`` faces each) and a
    loss with online mining (semi-hard by default) on
    ``fsl.models.facenet_model``, or (``loss="arcface"``, ``"cosface"``, ...)
    as a classifier of the training people through a margin-softmax head
    (``fsl.heads``) on the projection, trained with softmax cross-entropy
    and left out of the saved embedding. The faces are decoded once into memory
    (small face sets), through ``fsl.preprocessing`` (recorded in the run's
    ``config.json``, so serving prepares faces the same way).

    After training: batch-norm statistics recomputed on the clean training
    faces (``precise_bn``, ``fsl.models.recalibrate_batch_norm``), the
    embedding taken before the projection head (``embedding="pooled"``,
    ``fsl.models.pooled_embedding``), averaged over each face and its mirror
    image (``test_time_flip``, ``fsl.models.flip_averaged_embedding``) and
    whitened by a within-class covariance normalisation learned on the
    training faces (``wccn``, ``fsl.models.whitened_embedding``), each a layer
    of the saved ``embedding.keras``. ``fsl.training.presets.FACENET`` holds
    named recipes (``"plain"``: none of these). Measured recipes:
    ``benchmarks/README.md``.

    Metrics on the test identities (``fsl.evaluation.evaluate_faces``):
    10-fold verification accuracy on all same-identity pairs plus as many
    different-identity pairs, the deployable threshold chosen on training
    pairs, leave-one-out precision@1, and NMI / ARI / purity of k-means with
    one cluster per person.

    Reference: Schroff, Kalenichenko and Philbin, "FaceNet: A Unified
    Embedding for Face Recognition and Clustering", CVPR 2015.

    Args:
        data_dir: face folder with one sub-folder per identity.
        epochs: passes over the training faces (default 80; with ``fast``,
            1 epoch of 2 batches).
        test_identities: people held out for testing (int, or a fraction);
            0: train on everyone, and report only the thresholds chosen on
            the training pairs (``fsl.evaluation.training_thresholds``).
        identities: only these people (sub-folder names of ``data_dir``)
            take part, split into training and test people as above;
            default: all (e.g. a split's training people, to hold out
            validation people among them).
        loss: one of ``FACENET_LOSSES``: an online-mining loss of
            ``fsl.training.losses.TRIPLET_LOSSES`` (``"semihard"``,
            ``"hard"``, ``"batch-all"``, ``"lifted"``, ``"multi-similarity"``,
            ``"circle"``; the last two run on the angular distance with their
            own parameters, ``margin`` does not apply to them), or a margin
            head of ``fsl.training.losses.MARGIN_HEADS`` (``"arcface"``,
            ``"subcenter-arcface"``, ``"cosface"``, ``"adaface"``): its
            logits over the training people, from the projection before its
            L2 normalisation, go to ``SparseCategoricalCrossentropy``; the
            run's ``model.keras`` is then the training model (a dict of the
            network's image input, ``"image"`` or ``init``'s own, and
            ``"label"``; the head a layer named after the loss, with
            ``class_centres()``), while ``embedding.keras`` has no head.
        p: identities per batch (at most the number of training
            identities); default: all training identities, at most 30.
        k: faces per identity per batch.
        image_size: side of the square, grey input (default 96; with
            ``init``, the pretrained network's, in RGB).
        embedding_dim: width of the projection head the loss trains.
        margin: triplet margin (default ``TRIPLET_MARGIN``, 0.5, for unit-norm
            embeddings; with ``init``, in the pretrained network's units,
            e.g. dlib's distance threshold 0.6), or a margin head's margin
            (default its paper's, ``fsl.training.losses.HEAD_MARGINS``:
            ArcFace 0.5 radians, CosFace 0.35, AdaFace 0.4).
        loss_options: more arguments of the loss's class
            (``fsl.training.losses.LOSS_OPTIONS``), e.g. ``{"gamma": 64.0}``,
            or ``{"scale": 30.0}`` for a head (default 64).
        triplet_weight: with a margin head, also train the L2-normalised
            projection with the semi-hard triplet loss (margin
            ``TRIPLET_MARGIN``) at this weight next to the head's
            cross-entropy (weight 1); 0 (the default): the head alone.
        learning_rate: initial Adam learning rate (cosine decay to 0);
            default 1e-3, with ``init`` 1e-4.
        standardize: pixel standardisation, ``fsl.preprocessing.STANDARDIZE_MODES``;
            default ``"fixed"``; with ``init``, the network standardises
            itself and this must be left unset.
        align: how faces are cut out of the photos: ``"none"`` (the whole
            photo: cropped face sets such as ORL; the default), ``"crop"``
            (MTCNN's box grown by ``crop_margin`` pixels, FaceNet's crop),
            ``"template"`` (MTCNN's five points onto ``fsl.faces.template``)
            or ``"dlib-chip"`` (onto dlib's face chip; the default with
            ``init="dlib-resnet"``). The crops are
            made once by ``fsl.faces.face_folder_crops`` (cached; photos
            without a face are skipped with a warning) and recorded in the
            run's preprocessing, so ``fsl verify``/``identify``/``cluster``
            and ``FacePipeline.from_run`` cut faces out the same way.
        crop_margin: pixels around the box for ``align="crop"``.
        augment: augmentation strength in ``[0, 1]`` (0: none): random
            left-right flip, rotation up to ``11 * augment`` degrees, shift
            up to ``5% * augment`` of the side and zoom in or out up to
            ``10% * augment``, in the tf.data pipeline.
        embedding: what ``embedding.keras`` outputs: ``"pooled"``
            (L2-normalised global pooling, before the projection head; the
            default) or ``"projection"`` (the output the loss trains; the
            only one with ``init``).
        pooling: ``fsl.models.facenet_model``'s global pooling, ``"gdc"``
            (learned depthwise filter, MobileFaceNets) or ``"avg"``.
        dropout: ``fsl.models.facenet_model``'s dropout before the embedding
            layer, in ``[0, 1)`` (a fresh network only).
        init: ``None`` (``fsl.models.facenet_model`` from random weights) or
            a pretrained network of ``fsl.pretrained.PRETRAINED`` to
            fine-tune (``"dlib-resnet"``), with its own input (150 x 150 RGB
            dlib chips) and output (its 128-d descriptor).
        freeze_blocks: with ``init``, keep the stem and this many residual
            blocks from the input up frozen (0: train everything; dlib's
            ResNet has 14).
        precise_bn: recompute the batch-norm statistics on the clean
            training faces after training.
        test_time_flip: the saved embedding averages each face and its
            mirror image.
        wccn: shrinkage of the within-class covariance normalisation
            appended to the saved embedding; ``None``: none. The run's
            thresholds are then chosen on cross-fitted training pairs.
        score_norm: ``"s-norm"``: also report verification with S-norm
            against the training faces, save them as the cohort
            (``cohort.npy``) and an ``s_norm_threshold``; ``None``: raw
            distances only.
        seed: seed of the weights, batches and augmentation.
        split_seed: seed of the identity split and of the evaluation
            (pairs, folds, k-means); default ``seed``.
        **run_options: ``fsl.training.RunOptions`` (``output_dir``, ``run``,
            ``overwrite``, ``resume``, ``fast``, ``jit_compile``,
            ``mixed_precision``, ``verbose``, ``callbacks``).

    Returns:
        The metrics written to ``metrics.json``.

    Raises:
        FileNotFoundError: if ``data_dir`` does not exist.
        ValueError: for an invalid argument (named in the message).
        FileExistsError: if the run folder exists and neither ``overwrite``
            nor ``resume`` is set.
    """
    arguments = dict(locals())
    arguments.pop("run_options")
    options = RunOptions.from_kwargs("train_facenet", run_options)
    recipe = _check_recipe(arguments, options)
    # Built now so that a bad option value fails before any file is read.
    objective = _objective(recipe, 2)
    train_faces, test_faces = _split(data_dir, recipe["identities"], test_identities,
                                     recipe["split_seed"])
    _check_people(recipe, train_faces.num_classes, test_faces.num_classes)
    if objective.head is not None:
        objective = _objective(recipe, train_faces.num_classes)
    if recipe["p"] is None:
        recipe["p"] = min(DEFAULT_P, train_faces.num_classes)
    # An absolute path: the run re-evaluates (and resumes) from any working folder.
    recipe["data_dir"] = os.path.abspath(data_dir)
    prep = _preprocessing(recipe)

    run_dir = options.start("facenet", recipe)
    keras.utils.set_random_seed(recipe["seed"])
    logger.info(
        "Face folder %s: %d train identities (%d images), %d test identities (%d images)",
        recipe["data_dir"], train_faces.num_classes, len(train_faces),
        test_faces.num_classes, len(test_faces),
    )
    runs.update_config(
        run_dir,
        data_source=recipe["data_dir"],
        train_identities=list(train_faces.class_names),
        test_identities=list(test_faces.class_names),
        preprocessing=prep.to_config(),
    )
    x_train, y_train = _load(train_faces, prep)
    x_test, y_test = _load(test_faces, prep) if len(test_faces) else (None, None)
    net, trained, history, seconds = _fit(recipe, options, run_dir, objective, x_train, y_train)
    embedder = _embedder(recipe, net, x_train, y_train)
    run_dir.save_model(trained, "model")
    run_dir.save_model(embedder, "embedding")
    run_dir.save_domain(_load(train_faces, prep, standardize=False)[0])
    if recipe["score_norm"] == "s-norm":
        # The cohort S-norm scores against when the run verifies or exports.
        np.save(run_dir.cohort_path, predict(embedder, x_train).astype(np.float32))

    metrics = _evaluate(embedder, recipe, x_train, y_train, x_test, y_test)
    metrics.update(embedding=recipe["embedding"], embedding_size=int(embedder.output_shape[-1]),
                   test_time_flip=recipe["test_time_flip"], wccn=recipe["wccn"],
                   run_dir=str(run_dir.path))
    metrics = runs.finish_run(run_dir, metrics, history, seconds, recipe["data_dir"])
    if x_test is None:
        options.echo(f"trained on all {train_faces.num_classes} people, none held out: threshold "
                     f"{metrics['threshold']:.4f} chosen on {metrics['threshold_source']} "
                     "(no accuracy on unseen people to report)")
        return metrics
    s_norm = (
        f" (S-norm: {metrics['s_norm_verification_accuracy']:.4f})"
        if "s_norm_verification_accuracy" in metrics else ""
    )
    options.echo(
        f"verification accuracy on unseen people: {metrics['verification_accuracy']:.4f} "
        f"(10-fold, +/- {metrics['verification_std']:.4f}){s_norm}; precision@1: "
        f"{metrics['precision_at_1']:.4f}; NMI: {metrics['nmi']:.4f}")
    return metrics


def _check_recipe(arguments: dict[str, Any], options: RunOptions) -> dict[str, Any]:
    """``train_facenet``'s arguments validated, as ``config.json`` records them."""
    recipe = dict(arguments)
    identities = recipe["identities"]
    if identities is not None:
        if isinstance(identities, str):
            raise ValueError("identities must be a list of identity folder names. "
                             f"Received: identities={identities!r}")
        recipe["identities"] = [str(n) for n in identities]
    epochs = recipe["epochs"]
    if epochs is None:
        epochs = FAST_EPOCHS if options.fast else DEFAULT_EPOCHS
    recipe["epochs"] = check_positive_int("epochs", epochs)
    loss = recipe["loss"] = check_choice("loss", recipe["loss"], FACENET_LOSSES)
    if recipe["margin"] is None:
        recipe["margin"] = HEAD_MARGINS.get(loss, TRIPLET_MARGIN)
    recipe["triplet_weight"] = check_real("triplet_weight", recipe["triplet_weight"], 0.0)
    if recipe["triplet_weight"] > 0 and loss not in MARGIN_HEADS:
        raise ValueError("triplet_weight adds a semi-hard triplet term to a margin head "
                         f"({', '.join(MARGIN_HEADS)}). Received: triplet_weight="
                         f"{recipe['triplet_weight']!r} with loss={loss!r}")
    if recipe["p"] is not None:
        recipe["p"] = check_positive_int("p", recipe["p"])
    _resolve_init(recipe)
    for name in ("k", "image_size", "embedding_dim"):
        recipe[name] = check_positive_int(name, recipe[name])
    if recipe["k"] < 2:
        raise ValueError("k must be >= 2 faces per person in a P x K batch (a positive pair "
                         f"needs two; with k=1 the loss is 0 throughout). Received: k={recipe['k']}")
    if recipe["init"] is None and recipe["image_size"] < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be >= {MIN_IMAGE_SIZE} for fsl.models.facenet_model. "
                         f"Received: image_size={recipe['image_size']}")
    for name in ("margin", "learning_rate"):
        recipe[name] = check_positive_float(name, recipe[name])
    recipe["loss_options"] = check_loss_options(loss, recipe["loss_options"])
    if recipe["init"] is None:
        recipe["standardize"] = check_choice("standardize", recipe["standardize"], STANDARDIZE)
    recipe["align"] = check_choice("align", recipe["align"], FACE_ALIGNMENTS)
    recipe["crop_margin"] = check_real("crop_margin", recipe["crop_margin"], 0.0)
    recipe["augment"] = check_fraction("augment", recipe["augment"])
    recipe["embedding"] = check_choice("embedding", recipe["embedding"], EMBEDDINGS)
    recipe["pooling"] = check_choice("pooling", recipe["pooling"], POOLINGS)
    recipe["dropout"] = check_rate("dropout", recipe["dropout"])
    for name in ("precise_bn", "test_time_flip"):
        if not isinstance(recipe[name], bool):
            raise ValueError(f"{name} must be True or False. Received: {name}={recipe[name]!r}")
    if recipe["wccn"] is not None:
        recipe["wccn"] = check_positive_float("wccn", recipe["wccn"])
    check_choice("score_norm", recipe["score_norm"], SCORE_NORMS)
    recipe["seed"] = check_seed(recipe["seed"])
    recipe["split_seed"] = (recipe["seed"] if recipe["split_seed"] is None
                            else check_seed(recipe["split_seed"], "split_seed"))
    return recipe


def _resolve_init(recipe: dict[str, Any]) -> None:
    """The defaults that depend on ``init`` (a network of our own, or a
    pretrained one with its own input and output), filled in ``recipe``."""
    init = recipe["init"] = check_choice("init", recipe["init"], (None, *PRETRAINED))
    if init is None:
        if recipe["freeze_blocks"] != 0:
            raise ValueError("freeze_blocks applies to a pretrained network (init=...). "
                             f"Received: freeze_blocks={recipe['freeze_blocks']!r}, init=None")
        defaults = {"image_size": 96, "learning_rate": 1e-3, "standardize": "fixed",
                    "align": "none", "embedding": "pooled"}
        for name, value in defaults.items():
            recipe[name] = value if recipe[name] is None else recipe[name]
        return
    entry = get_pretrained(init)
    prep = entry.preprocessing
    fixed = {"image_size": prep.image_size[0], "standardize": prep.standardize,
             "embedding": "projection"}
    for name, value in fixed.items():
        if recipe[name] is not None and recipe[name] != value:
            raise ValueError(f"init={init!r} fixes {name}={value!r} (the network's own). "
                             f"Received: {name}={recipe[name]!r}")
        recipe[name] = value
    if recipe["learning_rate"] is None:
        recipe["learning_rate"] = 1e-4
    if recipe["align"] is None:
        recipe["align"] = prep.align
    blocks = recipe["freeze_blocks"]
    if isinstance(blocks, bool) or not isinstance(blocks, int) or not 0 <= blocks <= entry.blocks:
        raise ValueError(f"freeze_blocks must be an int in [0, {entry.blocks}] for {init!r}. "
                         f"Received: freeze_blocks={blocks!r}")


def _preprocessing(recipe: dict[str, Any]) -> Preprocessing:
    """The run's input contract: grey at ``image_size`` for our network, the
    pretrained network's own otherwise."""
    if recipe["init"] is None:
        return Preprocessing((recipe["image_size"],) * 2, channels=1,
                             standardize=recipe["standardize"], align=recipe["align"],
                             margin=recipe["crop_margin"])
    return dataclasses.replace(get_pretrained(recipe["init"]).preprocessing,
                               align=recipe["align"], margin=recipe["crop_margin"])


def _check_people(recipe: dict[str, Any], n_train: int, n_test: int = 2) -> None:
    """What the numbers of people allow: ``p``, the cross-fit of ``wccn``, and test
    people enough for a different pair."""
    if n_test == 1:
        raise ValueError("test_identities must leave at least 2 test people (verification "
                         "needs different-person pairs), or be 0 to train on everyone. "
                         "Received: 1 test identity")
    if n_train < 2:
        raise ValueError("training needs at least 2 people (triplets need a different "
                         f"person). Received: {n_train} training identity")
    if recipe["wccn"] is not None and n_train < CROSS_FIT_MIN_PEOPLE:
        raise ValueError(f"wccn needs at least {CROSS_FIT_MIN_PEOPLE} training identities "
                         "(thresholds are chosen out of sample). Received: "
                         f"{n_train} training identities; pass wccn=None")
    if recipe["p"] is not None and recipe["p"] > n_train:
        raise ValueError(
            f"p must be at most the {n_train} training identities. Received: p={recipe['p']}"
        )


@dataclasses.dataclass(frozen=True)
class _Objective:
    """What a run trains: a batch loss on the embedding, or a margin head
    (with a weighted triplet term, ``triplet``, if asked)."""

    head: keras.layers.Layer | None
    triplet: keras.losses.Loss | None


def _objective(recipe: dict[str, Any], num_classes: int) -> _Objective:
    """The run's losses and head, built from the checked recipe (a bad
    option value raises the class's ``ValueError``)."""
    loss = recipe["loss"]
    if loss in TRIPLET_LOSSES:
        return _Objective(None, triplet_loss(loss, recipe["margin"],
                                             options=recipe["loss_options"]))
    head = margin_head(loss, num_classes, recipe["margin"], recipe["loss_options"])
    triplet = triplet_loss("semihard", TRIPLET_MARGIN) if recipe["triplet_weight"] > 0 else None
    return _Objective(head, triplet)


def _with_head(net: keras.Model, recipe, objective: _Objective, dataset):
    """The training model of a margin head, its compile arguments and its
    dataset: ``{"image", "label"}`` in, the head's logits (and the
    L2-normalised projection, for a triplet term) out."""
    image = net.inputs[0]
    label = keras.Input(shape=(), dtype="int32", name="label")
    # The head normalises itself (AdaFace reads the norm): the projection before
    # facenet_model's L2Normalize; a pretrained network's own output.
    features = net.output if recipe["init"] is not None else net.get_layer("embedding").output
    logits = objective.head([features, label])
    cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    inputs = {image.name: image, "label": label}
    if objective.triplet is None:
        model = keras.Model(inputs, logits, name=f"{net.name}_{objective.head.name}")
        compile_kwargs = {"loss": cross_entropy, "metrics": [accuracy]}
        dataset = dataset.map(lambda x, y: ({image.name: x, "label": y}, y))
    else:
        model = keras.Model(inputs, {"logits": logits, "embedding": net.output},
                            name=f"{net.name}_{objective.head.name}")
        compile_kwargs = {
            "loss": {"logits": cross_entropy, "embedding": objective.triplet},
            "loss_weights": {"logits": 1.0, "embedding": recipe["triplet_weight"]},
            "metrics": {"logits": [accuracy]},
        }
        dataset = dataset.map(
            lambda x, y: ({image.name: x, "label": y}, {"logits": y, "embedding": y}))
    return model, compile_kwargs, dataset


def _fit(recipe, options: RunOptions, run_dir: RunDir, objective: _Objective, x_train, y_train):
    """Build, compile and train the network; returns (network, the model
    trained: the network or its margin-head model, history, seconds)."""
    from fsl import models
    from fsl.data.sampling import pk_dataset
    from fsl.training.distribution import check_batch

    p, k, seed, augment = recipe["p"], recipe["k"], recipe["seed"], recipe["augment"]
    dataset = pk_dataset(x_train, y_train, p=p, k=k, seed=seed)
    steps = max(int(dataset.cardinality().numpy()), 1)
    if augment > 0:
        dataset = augment_batches(
            dataset, seed, rotation=_ROTATION * augment, translation=_TRANSLATION * augment,
            zoom=_ZOOM * augment, flip=True, fill_mode="nearest",
        )
    size = recipe["image_size"]
    check_batch(options.distribution, p, k)
    with options.dtype_policy():
        if recipe["init"] is None:
            net = models.facenet_model(input_shape=(size, size, 1),
                                       embedding_dim=recipe["embedding_dim"],
                                       pooling=recipe["pooling"], dropout=recipe["dropout"],
                                       name="facenet")
        else:
            pretrained = get_pretrained(recipe["init"])
            net = pretrained.build(None)
            pretrained.freeze(net, recipe["freeze_blocks"])
        if objective.head is None:
            trained, compile_kwargs = net, {"loss": objective.triplet}
        else:
            trained, compile_kwargs, dataset = _with_head(net, recipe, objective, dataset)
    schedule = keras.optimizers.schedules.CosineDecay(
        recipe["learning_rate"], decay_steps=recipe["epochs"] * steps)
    options.compile(trained, optimizer=keras.optimizers.Adam(schedule), **compile_kwargs)
    # fast: a smoke run of two P x K batches.
    fit_kwargs = {"steps_per_epoch": min(2, steps)} if options.fast else {}
    history, seconds = options.fit(trained, dataset, recipe["epochs"], run_dir, **fit_kwargs)
    if recipe["precise_bn"]:
        models.recalibrate_batch_norm(net, x_train, batch_size=p * k)
    return net, trained, history, seconds


def _evaluate(embedder, recipe, x_train, y_train, x_test, y_test) -> dict[str, Any]:
    """``evaluate_faces`` on the test people; with none (``test_identities=0``),
    the thresholds chosen on the training pairs only."""
    from fsl.evaluation.protocols import training_thresholds

    if x_test is None:
        return {**training_thresholds(embedder, x_train, y_train, seed=recipe["split_seed"],
                                      score_norm=recipe["score_norm"], wccn=recipe["wccn"]),
                "test_identities": 0}
    return evaluate_faces(embedder, x_test, y_test, seed=recipe["split_seed"],
                          train_images=x_train, train_labels=y_train,
                          score_norm=recipe["score_norm"], wccn=recipe["wccn"])


def _embedder(recipe, net: keras.Model, x_train, y_train) -> keras.Model:
    """The saved embedding: pooled or projected, mirror-averaged, whitened."""
    from fsl import models

    embedder = models.pooled_embedding(net) if recipe["embedding"] == "pooled" else net
    if recipe["test_time_flip"]:
        embedder = models.flip_averaged_embedding(embedder)
    if recipe["wccn"] is not None:
        embedder = models.whitened_embedding(embedder, x_train, y_train, shrinkage=recipe["wccn"])
    return embedder


def evaluate_run(run_dir: RunDir, config: dict[str, Any]) -> dict[str, Any]:
    """Re-evaluate a finished facenet run on its held-out identities."""
    arguments = config["arguments"]
    prep = run_dir.preprocessing()
    split_seed = arguments.get("split_seed", arguments["seed"])
    train_faces, test_faces = _split(arguments["data_dir"], arguments.get("identities"),
                                     arguments["test_identities"], split_seed)
    x_train, y_train = _load(train_faces, prep)
    x_test, y_test = _load(test_faces, prep) if len(test_faces) else (None, None)
    model = run_dir.load_model("embedding")
    # Runs from before score normalisation / WCCN existed have neither argument.
    recipe = {"split_seed": split_seed, "score_norm": arguments.get("score_norm"),
              "wccn": arguments.get("wccn")}
    return _evaluate(model, recipe, x_train, y_train, x_test, y_test)


__getattr__ = moved_names(__name__, {
    "verification_pairs": "fsl.evaluation.protocols:verification_pairs",
})
