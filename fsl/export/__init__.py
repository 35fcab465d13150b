"""Export ``fsl`` models as standalone TensorFlow SavedModels (and ONNX files).

An exported model takes **raw pixels** and needs neither ``fsl`` nor Keras to
run: ``tf.saved_model.load(path)`` in a process that imports TensorFlow only
(or TensorFlow Serving) is enough. The preprocessing (``fixed``,
``prewhiten`` or ``unit``) and, optionally, resizing are part of the graph,
with ``fsl.preprocessing``'s formulas and resizing, so nobody has to remember the formula at
serving time.

Three kinds of export:

* ``export_embedding_model``: images -> L2-normalised embeddings ``[N, D]``.
* ``export_pair_verifier``: two images -> ``distance`` ``[N]`` and ``same``
  ``[N]`` (``distance <= threshold``), with the calibrated threshold baked in;
  optionally S-normalised against a cohort of embeddings baked in too.
* ``export_mtfl_model``: image -> landmarks in pixel coordinates ``[N, 5, 2]``
  and the attribute probabilities of the MTFL multitask model.

Every export has two serving signatures:

* ``"serving_default"``: ``float32`` pixels in ``0..255``.
* ``"serve_uint8"``: ``uint8`` pixels.

Both take ``[N, H, W, C]`` batches (any ``N``). A tensor of the wrong rank,
channel count or dtype is rejected with an error that names the expected
shape or dtype (TensorFlow converts *numpy* arrays to the signature's dtype
itself, so pass tensors if you want a strict dtype check).

``format="onnx"`` (``export_embedding_model``, ``export_pair_verifier``)
writes the ``"serving_default"`` graph as an ONNX file instead (through
``tf2onnx``, the ``[onnx]`` extra), run by ``onnxruntime`` with neither
TensorFlow nor ``fsl``.

Modules: ``graph`` (the pieces of every graph and the argument checks),
``archive`` (writing a folder, a SavedModel or an ONNX file), one per kind of
export, and ``loading``.

Export needs the TensorFlow backend (``KERAS_BACKEND=tensorflow``); on other
backends the functions raise a ``RuntimeError``.

Examples:

```python
import fsl.export, fsl.models
model = fsl.models.facenet_model()
fsl.export.export_embedding_model(model, "facenet_sm", preprocessing="fixed")
# later, in a process without fsl:
import tensorflow as tf
serve = tf.saved_model.load("facenet_sm").signatures["serving_default"]
serve(images=tf.zeros([2, 96, 96, 1]))["embeddings"].shape
# -> TensorShape([2, 128])
```
"""

from fsl.export.archive import FORMATS, ONNX_FILE, ONNX_OPSET
from fsl.export.embedding import export_embedding_model
from fsl.export.graph import PREPROCESSING_MODES, SIGNATURE_DTYPES
from fsl.export.loading import export_info, load_exported, signature_input_spec
from fsl.export.mtfl import export_mtfl_model
from fsl.export.verifier import export_pair_verifier

__all__ = [
    "FORMATS",
    "ONNX_FILE",
    "ONNX_OPSET",
    "PREPROCESSING_MODES",
    "SIGNATURE_DTYPES",
    "export_embedding_model",
    "export_info",
    "export_mtfl_model",
    "export_pair_verifier",
    "load_exported",
    "signature_input_spec",
]
