"""The losses a trainer's ``loss`` argument names, and their options.

The trainers of labelled P x K batches (``train_triplet_mnist``,
``train_facenet``) choose among ``TRIPLET_LOSSES``; ``triplet_loss`` builds
the ``fsl.losses`` class through ``fsl.losses.get`` with the trainer's margin
and distance and the ``loss_options`` a user gave. ``train_facenet`` also
takes the margin-softmax heads of ``MARGIN_HEADS`` (``margin_head`` builds
the ``fsl.heads`` layer).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from fsl._checks import check_choice

if TYPE_CHECKING:
    import keras

#: ``loss`` values of the triplet trainers (MNIST and faces): the online
#: triplet losses, and the lifted-structure, multi-similarity and circle
#: losses, which mine the same labelled P x K batches.
TRIPLET_LOSSES = ("semihard", "hard", "batch-all", "lifted", "multi-similarity", "circle")
#: The losses whose parameters are their papers' (TF Similarity's defaults),
#: defined on the angular distance: the trainers' ``margin`` and ``metric``
#: do not apply to them.
PAIR_WEIGHTING_LOSSES = ("multi-similarity", "circle")
#: ``loss`` values of ``train_facenet`` that train a margin-softmax head over
#: the training identities (``fsl.heads``), dropped from the saved embedding.
MARGIN_HEADS = ("arcface", "subcenter-arcface", "cosface", "adaface")
#: Each head's ``margin`` when the trainer's ``margin`` is not given: its paper's.
HEAD_MARGINS = {"arcface": 0.5, "subcenter-arcface": 0.5, "cosface": 0.35, "adaface": 0.4}


#: Per trainer loss, the constructor arguments of its ``fsl.losses`` class
#: that a trainer's ``loss_options`` may set: the margin losses' margin and
#: distance come from the trainer's own ``margin`` / ``metric``.
LOSS_OPTIONS = {
    "semihard": (),
    "hard": ("soft",),
    "batch-all": (),
    "lifted": (),
    "multi-similarity": ("alpha", "beta", "epsilon", "lmda", "center"),
    "circle": ("gamma", "margin"),
    "arcface": ("scale", "easy_margin"),
    "subcenter-arcface": ("scale", "easy_margin", "centres"),
    "cosface": ("scale",),
    "adaface": ("scale", "h", "t_alpha"),
}


def check_loss_options(loss: str, options: Any) -> dict:
    """A trainer's ``loss_options`` for ``loss`` as a plain dict (``{}`` for
    ``None``), its keys among ``LOSS_OPTIONS[loss]``; the values are checked
    by the loss class itself (``triplet_loss``)."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise ValueError(
            "loss_options must be a dict of the loss's arguments, e.g. {'gamma': 64.0}. "
            f"Received: loss_options={options!r}"
        )
    allowed = LOSS_OPTIONS[loss]
    for key in options:
        if key in allowed:
            continue
        if key == "margin" and loss in MARGIN_HEADS:
            hint = "the trainer's margin argument sets the head's margin"
        elif key in ("margin", "distance_metric") and loss not in PAIR_WEIGHTING_LOSSES:
            hint = "the trainer's margin and metric arguments set the margin and distance"
        else:
            hint = f"it takes {', '.join(allowed)}" if allowed else "it takes none"
        raise ValueError(
            f"loss_options key {key!r} is not an option of loss={loss!r} ({hint}). "
            f"Received: loss_options={dict(options)!r}"
        )
    # numpy scalars as plain Python values: config.json and get_config stay plain.
    return {key: value.item() if isinstance(value, np.generic) else value
            for key, value in options.items()}


def triplet_loss(
    loss: str, margin: float, metric: str = "L2", options: Mapping | None = None
) -> keras.losses.Loss:
    """The ``fsl.losses`` batch loss a trainer's ``loss`` names (one of
    ``TRIPLET_LOSSES``), with its margin and distance; the multi-similarity
    and circle losses on the angular distance, with their default parameters
    (``margin`` and ``metric`` unused) where ``options`` does not set them.
    ``options``: more of the class's arguments (``check_loss_options``); a
    bad value raises the class's ``ValueError``."""
    from fsl import losses

    options = check_loss_options(check_choice("loss", loss, TRIPLET_LOSSES), options)
    if loss in PAIR_WEIGHTING_LOSSES:
        return losses.get(loss, **options)
    return losses.get(loss, margin=margin, distance_metric=metric, **options)


def margin_head(
    loss: str, num_classes: int, margin: float, options: Mapping | None = None
) -> keras.layers.Layer:
    """The ``fsl.heads`` layer a trainer's ``loss`` names (one of
    ``MARGIN_HEADS``) over ``num_classes`` identities, with the trainer's
    ``margin`` and ``options`` (``check_loss_options``), computing in float32
    under any dtype policy; a bad value raises the class's ``ValueError``."""
    from fsl import heads

    options = check_loss_options(check_choice("loss", loss, MARGIN_HEADS), options)
    layer = {"arcface": heads.ArcFace, "subcenter-arcface": heads.SubCenterArcFace,
             "cosface": heads.CosFace, "adaface": heads.AdaFace}[loss]
    return layer(num_classes, margin=margin, dtype="float32", name=loss.replace("-", "_"),
                 **options)
