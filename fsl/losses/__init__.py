"""Metric-learning losses, a Keras 3 replacement for TensorFlow Addons.

Each loss is a pure function (the math, with ``keras.ops`` only, so it runs on
every Keras backend) and a thin ``keras.losses.Loss`` subclass that validates
and stores plain arguments and is registered for serialization under the
package ``"fsl"``: a model compiled with one reloads with
``keras.saving.load_model(path)`` and no ``custom_objects``.

Names, arguments and results follow ``tfa.losses`` (``ContrastiveLoss``,
``TripletSemiHardLoss``, ``TripletHardLoss``, ``LiftedStructLoss``,
``NpairsLoss``, ``NpairsMultilabelLoss``), checked against values computed
with TensorFlow Addons 0.23. Added: ``TripletLoss`` on explicit triplets,
``PairContrastiveLoss`` on stacked embedding pairs, ``TripletBatchAllLoss`` and
``PairNpairsLoss`` (N-pairs from the two embeddings with ``tf.contrib``'s L2
penalty); ``LiftedStructLoss`` also takes ``distance_metric``.
``MultiSimilarityLoss`` and ``CircleLoss`` follow TF Similarity 0.17 (Keras 2
only), checked against its values and gradients; their default ``"angular"``
distance is its ``"cosine"`` on L2-normalised embeddings, and normalises the
rows itself (so its gradient has no radial part).

Differences from TFA, all where TFA returns NaN or a meaningless value:

* A batch with no valid triplet (no two examples share a label, or every
  example has the same label, or ``B = 1``) gives a loss of exactly 0 with a
  zero gradient. TFA's semi-hard and lifted losses return NaN there (0 / 0)
  and its hard loss returns about ``margin``. A row of
  ``NpairsMultilabelLoss`` with no label is left out of the mean (TFA: NaN).
* The online triplet and lifted losses never build the ``[B * B, B]`` tile of
  TFA's semi-hard and lifted losses: memory is O(B^2) (see ``fsl.mining``).
* Gradients are finite for duplicate or identical embeddings (the square root
  of a zero distance has a zero gradient).

Like TFA, the online triplet losses compute in float32 when the embeddings are
float16 / bfloat16 (mixed precision) and cast the loss back to that dtype.

Modules: ``base`` (``MetricLoss``, the one base class), ``contrastive``,
``triplet``, ``structured`` (lifted structure, N-pairs) and
``pair_weighting`` (multi-similarity, circle). ``get(name, **options)``
builds a loss from its name.
"""

from __future__ import annotations

from typing import Any

import keras

from fsl.losses.base import Metric, MetricLoss
from fsl.losses.contrastive import (
    ContrastiveLoss,
    PairContrastiveLoss,
    contrastive_loss,
    contrastive_loss_from_embeddings,
)
from fsl.losses.pair_weighting import (
    CircleLoss,
    MultiSimilarityLoss,
    circle_loss,
    multi_similarity_loss,
)
from fsl.losses.structured import (
    LiftedStructLoss,
    NpairsLoss,
    NpairsMultilabelLoss,
    PairNpairsLoss,
    lifted_struct_loss,
    npairs_loss,
    npairs_loss_from_embeddings,
    npairs_multilabel_loss,
)
from fsl.losses.triplet import (
    TripletBatchAllLoss,
    TripletHardLoss,
    TripletLoss,
    TripletSemiHardLoss,
    triplet_batch_all_loss,
    triplet_hard_loss,
    triplet_loss,
    triplet_semihard_loss,
)

#: Short names of the losses (the trainers' ``loss`` values among them).
ALIASES: dict[str, type[MetricLoss]] = {
    "contrastive": ContrastiveLoss,
    "pair-contrastive": PairContrastiveLoss,
    "triplet": TripletLoss,
    "semihard": TripletSemiHardLoss,
    "hard": TripletHardLoss,
    "batch-all": TripletBatchAllLoss,
    "lifted": LiftedStructLoss,
    "npairs": NpairsLoss,
    "pair-npairs": PairNpairsLoss,
    "npairs-multilabel": NpairsMultilabelLoss,
    "multi-similarity": MultiSimilarityLoss,
    "circle": CircleLoss,
}


def get(identifier: Any, **options: Any) -> keras.losses.Loss:
    """A loss from its name, its config or itself.

    Args:
        identifier: a short name of ``ALIASES`` (``"semihard"``,
            ``"multi-similarity"``...), a class name (``"TripletSemiHardLoss"``),
            a loss's default name (``"triplet_semihard_loss"``), a serialized
            config (dict), or a ``keras.losses.Loss`` (returned as is).
        **options: the class's arguments (``margin=0.5``...); none with a
            config or an instance.

    Returns:
        The ``keras.losses.Loss``.

    Raises:
        ValueError: for an unknown name, or options given with a config or
            an instance; the class's own errors for a bad option.

    Examples:

    >>> get("semihard", margin=0.5).get_config()["margin"]
    0.5
    >>> type(get("CircleLoss")).__name__
    'CircleLoss'
    """
    if isinstance(identifier, (keras.losses.Loss, dict)):
        if options:
            raise ValueError(
                "Options are given with a name only, not with a loss or a config. "
                f"Received: options={options!r}"
            )
        if isinstance(identifier, dict):
            return keras.saving.deserialize_keras_object(identifier)
        return identifier
    cls = _BY_NAME.get(identifier) if isinstance(identifier, str) else None
    if cls is None:
        raise ValueError(
            f"Unknown loss. Expected one of {sorted(ALIASES)} or a class name of "
            f"fsl.losses. Received: identifier={identifier!r}"
        )
    return cls(**options)


_BY_NAME: dict[str, type[MetricLoss]] = {
    **{cls.__name__: cls for cls in ALIASES.values()},
    **{cls().name: cls for cls in ALIASES.values()},
    **ALIASES,
}

__all__ = [
    "ALIASES",
    "Metric",
    "MetricLoss",
    "get",
    "contrastive_loss",
    "contrastive_loss_from_embeddings",
    "triplet_loss",
    "triplet_semihard_loss",
    "triplet_hard_loss",
    "triplet_batch_all_loss",
    "lifted_struct_loss",
    "npairs_loss",
    "npairs_loss_from_embeddings",
    "npairs_multilabel_loss",
    "multi_similarity_loss",
    "circle_loss",
    "ContrastiveLoss",
    "PairContrastiveLoss",
    "TripletLoss",
    "TripletSemiHardLoss",
    "TripletHardLoss",
    "TripletBatchAllLoss",
    "LiftedStructLoss",
    "NpairsLoss",
    "PairNpairsLoss",
    "NpairsMultilabelLoss",
    "MultiSimilarityLoss",
    "CircleLoss",
]
