"""The values the trainers' categorical arguments take, as plain data.

No Keras or TensorFlow here: the ``fsl`` command builds its ``--help`` and
checks its arguments from these without importing them. The trainer
modules re-export each name where it belongs.
"""

from __future__ import annotations

#: Digits per class in an MNIST P x K batch when ``k`` is not given, per loss:
#: 4 (Hermans et al.'s K) for the losses that weight each anchor's hardest
#: pairs, 16 for semi-hard and batch-all (``benchmarks/README.md``).
DEFAULT_K = {"semihard": 16, "hard": 4, "batch-all": 16, "lifted": 4,
             "multi-similarity": 4, "circle": 4}
#: ``train_facenet``'s ``embedding`` choices: the pooled features before the
#: projection head, or the projection the loss trains.
EMBEDDINGS = ("pooled", "projection")
#: ``train_facenet``'s ``pooling`` choices (``fsl.models.POOLING_LAYERS``' keys).
POOLINGS = ("avg", "gdc")

#: Data-parallel engines of ``distribution=`` (``fsl.training.distribution``).
DISTRIBUTIONS = ("mirrored", "multi-worker", "jax-data-parallel")
