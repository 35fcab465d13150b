"""``export_embedding_model``: raw pixels -> unit embeddings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras

from fsl._checks import PathLike
from fsl.export.archive import (
    _check_format,
    _contract_info,
    _prepare_export_dir,
    _save,
    _write_onnx,
)
from fsl.export.graph import (
    _check_embedding_output,
    _check_inputs,
    _embedder,
)


def export_embedding_model(
    model: keras.Model,
    export_dir: PathLike,
    preprocessing: str | None = "fixed",
    overwrite: bool = False,
    resize: bool = False,
    contract: Mapping[str, Any] | None = None,
    format: str = "savedmodel",
) -> str:
    """Export an embedding network as a SavedModel: raw pixels -> unit embeddings.

    The SavedModel has two signatures, each taking ``images`` ``[N, H, W, C]``
    and returning ``{"embeddings": [N, D] float32}``, L2-normalised (also when
    the model's own output is not):

    * ``"serving_default"``: ``float32`` pixels in ``0..255``.
    * ``"serve_uint8"``: ``uint8`` pixels.

    The graph casts to ``float32``, optionally resizes, applies
    ``preprocessing`` and runs the model in inference mode (dropout off,
    batch-norm statistics frozen).

    Args:
        model: a ``keras.Model`` with one ``[N, H, W, C]`` image input and a
            ``[N, D]`` output (e.g. ``fsl.models.facenet_model``).
        export_dir: folder to write; created if needed.
        preprocessing: ``"fixed"`` (``(x - 127.5) / 128``), ``"prewhiten"``
            (per image ``(x - mean) / max(std, 1 / sqrt(n))``), ``"unit"``
            (``x / 255``) or ``None``. Use ``None`` when the model already
            starts with a ``fsl.layers.Standardize`` layer.
        overwrite: replace a non-empty ``export_dir``.
        resize: if True the signatures accept any height and width
            (``[N, None, None, C]``) and resize bilinearly to the model's
            ``H x W`` before preprocessing, anti-aliased as the training
            pipeline (``fsl.data.faces.resize_image``) resizes; if False
            (default) they accept exactly ``[N, H, W, C]``.
        contract: the run's ``fsl.preprocessing.Preprocessing`` config, recorded
            in the export's info (``export_info(...)["contract"]``) so that
            ``FacePipeline.from_saved_model`` prepares faces as in training.
        format: ``"savedmodel"`` or ``"onnx"``: the same graph as an ONNX file
            (``export_dir/model.onnx``, opset ``ONNX_OPSET``, through
            ``tf2onnx``: the ``[onnx]`` extra) with the ``"serving_default"``
            contract: input ``images`` float32 ``[N, H, W, C]`` in ``0..255``
            (no ``resize``), output ``embeddings`` float32
            ``[N, D]``, L2-normalised; the info is the file's
            ``fsl_export_info`` metadata (``export_info`` reads it).

    Returns:
        The path of the SavedModel (of the ``.onnx`` file), a string.

    Raises:
        RuntimeError: if the Keras backend is not TensorFlow.
        FileExistsError: if ``export_dir`` is not empty and ``overwrite`` is
            False.
        ValueError: for a model without one image input, an unknown
            ``preprocessing`` or ``format``, ``preprocessing`` given for a
            model that already contains a ``Standardize`` layer, or ONNX with
            ``resize``.
        TypeError: for arguments of the wrong type.
        ImportError: ``format="onnx"`` without ``tf2onnx`` and ``onnx``.

    Examples:

    ```python
    from fsl import models, export
    path = export.export_embedding_model(
        models.facenet_model(), "/tmp/facenet", preprocessing="fixed"
    )
    import tensorflow as tf
    loaded = tf.saved_model.load(path)
    pixels = tf.zeros([4, 96, 96, 1], tf.uint8)
    loaded.signatures["serve_uint8"](images=pixels)["embeddings"].shape
    # -> TensorShape([4, 128])
    ```
    """
    tf, preprocessing, hwc, resize = _check_inputs(
        "export_embedding_model", model, preprocessing, resize)
    _check_embedding_output(model)
    format = _check_format(format, resize)
    path = _prepare_export_dir(export_dir, overwrite)
    embedder = _embedder(tf, model, hwc, resize, preprocessing)

    def embed(images):
        return {"embeddings": embedder(images, "images")}

    info = {"kind": "embedding", "preprocessing": preprocessing, **_contract_info(contract)}
    if format == "onnx":
        return _write_onnx(tf, embed, ["images"], hwc, info, path)
    return _save(tf, model, embed, ["images"], hwc, resize, info, path)
