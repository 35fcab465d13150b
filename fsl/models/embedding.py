"""Embedding transforms applied after training, each a layer of the saved model.

* ``pooled_embedding``: the embedding of a trained network taken before its
  projection head.
* ``flip_averaged_embedding``: the output averaged over each image and its
  mirror image (test-time augmentation, in the model).
* ``ensemble_embedding``: several networks joined into one embedding.
* ``recalibrate_batch_norm``: batch-norm statistics recomputed on clean
  images after training on augmented ones (precise BN).
* ``whitened_embedding``: within-class covariance normalisation (WCCN,
  Hatch et al. 2006) learned on labelled training images.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import keras
from keras import layers as kl

from fsl._checks import check_positive_int
from fsl.layers import HorizontalFlip, L2Normalize, Whitening
from fsl.models.base import OUTPUT_DTYPE, _check_encoder, _encoder_input, sublayers
from fsl.models.facenet import POOLING_LAYERS

logger = logging.getLogger(__name__)


def pooled_embedding(
    model: keras.Model, layer: str | None = None, name: str | None = None
) -> keras.Model:
    """The embedding taken before a network's projection head.

    A triplet loss trains ``facenet_model`` through its last ``Dense``
    (the projection head); on people never seen in training, the
    L2-normalised output of the global pooling before it separates
    identities better (``benchmarks/README.md``). The same was seen for contrastive representations:
    Chen, Kornblith, Norouzi and Hinton, "A Simple Framework for Contrastive
    Learning of Visual Representations" (SimCLR), ICML 2020, section 4.2.

    The returned model shares its weights with ``model`` (no copy): train
    ``model``, then save or use this one.

    Args:
        model: a functional model, e.g. from ``facenet_model``.
        layer: name of the layer whose output (``[B, D]``) is the embedding;
            default: ``facenet_model``'s pooling layer (``"gdc_pool"`` or
            ``"avg_pool"``, whichever ``model`` has).
        name: name of the new model (default ``"<model.name>_pooled"``).

    Returns:
        A ``keras.Model`` from ``model``'s input to the L2-normalised
        output of ``layer`` (float32 under a mixed-precision policy).

    Raises:
        ValueError: if ``model`` has no layer ``layer`` (or, with the
            default, no pooling layer) or its output is not of rank 2.

    Examples:

    >>> from fsl.models import facenet_model

    >>> net = facenet_model(input_shape=(64, 64, 1), width=8, embedding_dim=16)
    >>> pooled_embedding(net).output_shape
    (None, 64)
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"model must be a keras.Model. Received: model={model!r}")
    names = [item.name for item in model.layers]
    if layer is None:
        found = [item for item in POOLING_LAYERS.values() if item in names]
        if len(found) != 1:
            raise ValueError(
                f"model {model.name!r} must have exactly one of the pooling layers "
                f"{sorted(POOLING_LAYERS.values())} when no layer is named; pass layer=. "
                f"Received: a model with {found or 'none of them'}"
            )
        layer = found[0]
    if not isinstance(layer, str):
        raise ValueError(f"layer must be a layer name (str). Received: layer={layer!r}")
    if layer not in names:
        raise ValueError(
            f"model {model.name!r} has no layer {layer!r}; its layers are {names}. "
            f"Received: layer={layer!r}"
        )
    features = model.get_layer(layer).output
    if len(features.shape) != 2:
        raise ValueError(
            f"layer {layer!r} must output [batch, features] (rank 2). "
            f"Received: output shape {tuple(features.shape)}"
        )
    outputs = L2Normalize(name=f"{layer}_l2_normalize", dtype=OUTPUT_DTYPE)(features)
    return keras.Model(model.inputs, outputs, name=name or f"{model.name}_pooled")


def flip_averaged_embedding(model: keras.Model, name: str | None = None) -> keras.Model:
    """An embedding network averaged over each face and its mirror image.

    A face and its mirror image show the same person; averaging the two
    embeddings (then L2-normalising) cancels part of what the network
    learned about which way a head is turned or where the light comes from.
    This test-time augmentation is common in face recognition evaluation
    (the verification code of Deng et al., "ArcFace", CVPR 2019, adds the
    embeddings of each image and its flip). Being a layer of
    the model, the flip is saved and exported with it: serving computes
    what was evaluated. It costs two forward passes per image.

    The returned model shares its weights with ``model`` (no copy).

    Args:
        model: a model from a batch of images (``[B, H, W, C]``) to
            embeddings (``[B, D]``), e.g. ``pooled_embedding(net)``.
        name: name of the new model (default ``"<model.name>_flip_averaged"``).

    Returns:
        A ``keras.Model`` with ``model``'s input, whose output is the
        L2-normalised mean of ``model(x)`` and ``model(mirror(x))``.

    Raises:
        TypeError: if ``model`` is not a ``keras.Model``.
        ValueError: if it does not map one batch of images (rank 4) to one
            batch of vectors.

    Examples:

    >>> from fsl.models import facenet_model

    >>> net = facenet_model(input_shape=(32, 32, 1), width=8, embedding_dim=16)
    >>> flip_averaged_embedding(net).output_shape
    (None, 16)
    """
    model = _check_encoder(model)
    if len(model.inputs[0].shape) != 4:
        raise ValueError(
            "model must take a batch of images [B, H, W, C] (rank 4). Received: "
            f"model={model.name!r} with input shape {tuple(model.inputs[0].shape)}"
        )
    inputs = _encoder_input(model, "image")
    mirrored = HorizontalFlip(name="mirror")(inputs)
    mean = kl.Average(name="flip_average", dtype=OUTPUT_DTYPE)([model(inputs), model(mirrored)])
    outputs = L2Normalize(name="flip_l2_normalize", dtype=OUTPUT_DTYPE)(mean)
    return keras.Model(inputs, outputs, name=name or f"{model.name}_flip_averaged")


def ensemble_embedding(members: Sequence[keras.Model], name: str = "ensemble") -> keras.Model:
    """Several embedding networks as one: their outputs side by side.

    Each member's embedding is L2-normalised, the ``M`` of them are
    concatenated and the result L2-normalised again: every member weighs
    the same and the squared L2 distance between two images is the mean of
    the members' squared distances (so the ensemble's cosine similarity is
    the mean of theirs). Networks trained from different random
    initialisations make partly independent errors, which the average
    cancels: Lakshminarayanan, Pritzel and Blundell, "Simple and Scalable
    Predictive Uncertainty Estimation using Deep Ensembles", NeurIPS 2017;
    Fort, Hu and Lakshminarayanan, "Deep Ensembles: A Loss Landscape
    Perspective", 2019 (random initialisation alone gives most of the
    diversity).

    The returned model shares its weights with ``members`` (no copy); it is
    one model, saved and exported as one.

    Args:
        members: one or more models with the same input shape, each from a
            batch of inputs to embeddings ``[B, D_m]`` (the widths may
            differ).
        name: name of the new model.

    Returns:
        A ``keras.Model`` with the members' input and unit-norm
        ``[B, sum(D_m)]`` outputs.

    Raises:
        TypeError: if a member is not a ``keras.Model``.
        ValueError: if ``members`` is empty, a member does not map one input
            to one ``[B, D]`` output, or the input shapes differ.

    Examples:

    >>> from fsl.models import facenet_model

    >>> nets = [facenet_model(input_shape=(32, 32, 1), width=4, blocks=1,
    ...                       embedding_dim=8, name=f"net{i}") for i in range(2)]
    >>> ensemble_embedding(nets).output_shape
    (None, 16)
    """
    if isinstance(members, keras.Model) or not isinstance(members, Sequence) or not members:
        raise ValueError(
            f"members must be a non-empty list of models. Received: members={members!r}"
        )
    members = [_check_encoder(member) for member in members]
    shapes = {tuple(member.inputs[0].shape[1:]) for member in members}
    if len(shapes) != 1:
        raise ValueError(
            "members must all take the same input shape. Received: input shapes "
            f"{[tuple(member.inputs[0].shape[1:]) for member in members]}"
        )
    inputs = _encoder_input(members[0], "image")
    parts = [
        L2Normalize(name=f"member{i}_l2_normalize", dtype=OUTPUT_DTYPE)(member(inputs))
        for i, member in enumerate(members)
    ]
    joined = parts[0] if len(parts) == 1 else kl.Concatenate(
        name="members", dtype=OUTPUT_DTYPE)(parts)
    outputs = L2Normalize(name="ensemble_l2_normalize", dtype=OUTPUT_DTYPE)(joined)
    return keras.Model(inputs, outputs, name=name)


def recalibrate_batch_norm(model: keras.Model, images, batch_size: int = 128) -> int:
    """Recompute every batch-norm layer's statistics on ``images``.

    After training on augmented images, the moving means and variances
    describe augmented data; this replaces them by the average, over the
    batches of ``images`` (e.g. the clean training images), of each batch's
    mean and variance, as "precise BN" does: Wu and Johnson, "Rethinking
    'Batch' in BatchNorm", 2021, section 3 (PyTorch's
    ``torch.optim.swa_utils.update_bn`` is the same computation). Nothing
    but the moving statistics changes.

    Args:
        model: a model containing ``keras.layers.BatchNormalization`` layers
            (nested models included).
        images: array ``[N, ...]`` of inputs to ``model``.
        batch_size: images per batch, a positive int; use the training
            batch size (the statistics are per-batch ones).

    Returns:
        The number of batch-norm layers recalibrated (0: nothing to do).

    Raises:
        ValueError: if ``batch_size`` is not a positive int or ``images``
            is empty.

    Examples:

    >>> import numpy as np
    >>> from fsl.models import facenet_model
    >>> net = facenet_model(input_shape=(32, 32, 1), width=4, blocks=1)
    >>> recalibrate_batch_norm(net, np.zeros((8, 32, 32, 1), "float32"), 4)
    19
    """
    check_positive_int("batch_size", batch_size)
    n = len(images)
    if n == 0:
        raise ValueError(f"images must hold at least one input. Received: {n} images")
    layers = sublayers(model, kl.BatchNormalization)
    if not layers:
        return 0
    momenta = [item.momentum for item in layers]
    try:
        # moving = momentum * moving + (1 - momentum) * batch; momentum
        # b / (b + 1) at batch b = 0, 1, ... keeps the running mean of the
        # batches seen so far (the first batch replaces the old statistics).
        for b, start in enumerate(range(0, n, batch_size)):
            for item in layers:
                item.momentum = b / (b + 1.0)
            model(images[start:start + batch_size], training=True)
    finally:
        for item, momentum in zip(layers, momenta):
            item.momentum = momentum
    return len(layers)


def whitened_embedding(
    model: keras.Model,
    images,
    labels,
    shrinkage: float = 1.0,
    batch_size: int = 256,
    name: str | None = None,
) -> keras.Model:
    """An embedding network followed by within-class covariance normalisation.

    Embeds ``images`` (labelled training data), learns the WCCN map of
    ``fsl.evaluation.within_class_whitening`` on them and appends it as an
    ``fsl.layers.Whitening`` layer: the new model outputs
    ``l2_normalize((model(x) - mean) @ W)``. The directions in which one
    person's embeddings vary are shrunk relative to those that separate
    people, a linear back-end fitted after training (no gradient step).

    The returned model shares its weights with ``model`` (no copy); the WCCN
    statistics are weights of the new layer and are saved with it.

    Reference: Hatch, Kajarekar and Stolcke, "Within-class covariance
    normalization for SVM-based speaker recognition", Interspeech 2006.

    Args:
        model: a model from inputs to embeddings ``[B, D]``.
        images: ``[N, ...]`` labelled inputs to ``model`` (the training data).
        labels: ``[N]`` class labels of ``images``.
        shrinkage: ``> 0``, see ``fsl.evaluation.within_class_whitening``.
        batch_size: images per forward pass when embedding ``images``.
        name: name of the new model (default ``"<model.name>_wccn"``).

    Returns:
        A ``keras.Model`` with ``model``'s input and unit-norm ``[B, D]``
        outputs.

    Raises:
        TypeError: if ``model`` is not a ``keras.Model``.
        ValueError: if it does not have one input and one ``[B, D]`` output,
            for a bad ``batch_size``, or as ``within_class_whitening``.

    Examples:

    >>> import numpy as np
    >>> from fsl.models import facenet_model
    >>> net = facenet_model(input_shape=(32, 32, 1), width=4, blocks=1, embedding_dim=8)
    >>> x = np.random.default_rng(0).normal(size=(12, 32, 32, 1)).astype("float32")
    >>> whitened_embedding(net, x, np.repeat(np.arange(4), 3)).output_shape
    (None, 8)
    """
    from fsl.evaluation.whitening import within_class_whitening

    model = _check_encoder(model)
    check_positive_int("batch_size", batch_size)
    embeddings = model.predict(images, batch_size=batch_size, verbose=0)
    mean, matrix = within_class_whitening(embeddings, labels, shrinkage=shrinkage)
    inputs = _encoder_input(model, "input")
    layer = Whitening(name="wccn", dtype=OUTPUT_DTYPE)
    outputs = layer(model(inputs))
    layer.set_weights([mean, matrix])
    return keras.Model(inputs, outputs, name=name or f"{model.name}_wccn")
