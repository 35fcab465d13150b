"""Functional Keras models for similarity learning, built from ``fsl.layers``.

* ``mnist_encoder``: the small convolutional encoder of the siamese/triplet
  chapter (MNIST, 28x28).
* ``siamese_distance_model``: two inputs, shared encoder, ``PairDistance``
  output for a contrastive loss.
* ``siamese_classifier``: two inputs, shared encoder, ``SiameseHead``
  output ``P(same)`` for binary cross-entropy.
* ``embedding_model`` / ``triplet_model``: images to L2-normalised
  embeddings, for triplet losses with integer labels.
* ``mtfl_model`` + ``mtfl_losses``: the multitask facial-landmark network
  (MTFL: five landmarks, gender, smile, glasses, head pose).
* ``facenet_model``: a compact Inception-ResNet-style FaceNet embedding
  network for small face sets, trainable on a CPU, with global average or
  global depthwise (MobileFaceNets) pooling.
* ``pooled_embedding``: the embedding of a trained network taken before its
  projection head (better on unseen identities).
* ``flip_averaged_embedding``: an embedding network's output averaged over
  each image and its mirror image (test-time augmentation, in the model).
* ``recalibrate_batch_norm``: batch-norm statistics recomputed on clean
  images after training on augmented ones (precise BN).
* ``whitened_embedding``: an embedding network followed by within-class
  covariance normalisation (WCCN) learned on labelled training images.

Pair label convention, everywhere in ``fsl``: ``1`` = same identity,
``0`` = different.

Every model is a plain functional ``keras.Model`` made of built-in Keras
layers and registered ``fsl`` layers (no ``Lambda``), so
``keras.saving.load_model(path)`` reloads a saved ``.keras`` file with no
``custom_objects`` once ``fsl`` is imported.

Modules: ``siamese`` (MNIST encoder, siamese and triplet models), ``mtfl``,
``facenet`` (the face network) and ``embedding`` (after-training embedding
transforms); ``base`` holds ``OUTPUT_DTYPE``.
"""

from __future__ import annotations

from fsl.models.base import OUTPUT_DTYPE, predict, sublayers
from fsl.models.embedding import (
    ensemble_embedding,
    flip_averaged_embedding,
    pooled_embedding,
    recalibrate_batch_norm,
    whitened_embedding,
)
from fsl.models.facenet import POOLING_LAYERS, facenet_model
from fsl.models.mtfl import MTFL_TASKS, LandmarkL2Loss, landmark_l2, mtfl_losses, mtfl_model
from fsl.models.siamese import (
    embedding_model,
    mnist_encoder,
    siamese_classifier,
    siamese_distance_model,
    triplet_model,
)

__all__ = [
    "OUTPUT_DTYPE",
    "predict",
    "sublayers",
    "POOLING_LAYERS",
    "mnist_encoder",
    "siamese_distance_model",
    "siamese_classifier",
    "embedding_model",
    "triplet_model",
    "mtfl_model",
    "mtfl_losses",
    "MTFL_TASKS",
    "LandmarkL2Loss",
    "landmark_l2",
    "facenet_model",
    "pooled_embedding",
    "flip_averaged_embedding",
    "ensemble_embedding",
    "recalibrate_batch_norm",
    "whitened_embedding",
]
