"""Export ``fsl`` models as standalone TensorFlow SavedModels.

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

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import pathlib
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any

import keras

from fsl import distances, folders
from fsl import preprocessing as preprocessing_lib
from fsl._checks import PathLike, check_bool, check_choice

logger = logging.getLogger(__name__)


__all__ = [
    "FORMATS",
    "ONNX_FILE",
    "ONNX_OPSET",
    "PREPROCESSING_MODES",
    "export_embedding_model",
    "export_pair_verifier",
    "export_mtfl_model",
    "load_exported",
    "export_info",
    "signature_input_spec",
]

#: Preprocessing modes accepted by the exporters (``None``: none).
PREPROCESSING_MODES = preprocessing_lib.STANDARDIZE_MODES

#: The two serving signatures of every export, with their input dtype.
SIGNATURE_DTYPES = {"serving_default": "float32", "serve_uint8": "uint8"}
#: Export formats of ``export_embedding_model``.
FORMATS = ("savedmodel", "onnx")
#: The ONNX file an ONNX export folder holds, and its opset.
ONNX_FILE = "model.onnx"
ONNX_OPSET = 17

_MTFL_OUTPUTS = {"landmarks": 10, "gender": 2, "smile": 2, "glasses": 2, "pose": 5}


# === Argument checks ===


def _require_tensorflow_backend(function: str):
    from fsl.backend import require_tensorflow

    require_tensorflow(f"fsl.export.{function} writes a TensorFlow SavedModel and")
    import tensorflow as tf

    return tf


def _check_preprocessing(preprocessing: str | None) -> str | None:
    return check_choice("preprocessing", preprocessing, (*PREPROCESSING_MODES, None))


def _iter_layers(model: keras.layers.Layer):
    for layer in getattr(model, "layers", []):
        yield layer
        yield from _iter_layers(layer)


def _check_image_model(model: Any, preprocessing: str | None, argname: str = "model"):
    """Validate a Keras model with one ``[N, H, W, C]`` input; return (H, W, C)."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"{argname} must be a keras.Model. Received: {argname} of type "
                        f"{type(model).__name__}")
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if not inputs or len(inputs) != 1:
        raise ValueError(
            f"{argname} must be a functional or sequential keras.Model with exactly "
            f"one image input. Received: {argname}={model.name!r} with "
            f"{len(inputs) if inputs else 0} inputs"
        )
    shape = tuple(inputs[0].shape)
    if len(shape) != 4 or shape[-1] is None:
        raise ValueError(f"{argname} must take images of shape [N, H, W, C] with a known C. "
                         f"Received: input shape {shape}")
    if preprocessing is not None:
        from fsl.layers import Standardize

        for layer in _iter_layers(model):
            if isinstance(layer, Standardize):
                raise ValueError(
                    f"{argname} already standardises its input (layer "
                    f"{layer.name!r}, mode={layer.mode!r}); pass preprocessing=None "
                    f"to avoid standardising twice. Received: "
                    f"preprocessing={preprocessing!r}"
                )
    return shape[1:]


def _prepare_export_dir(export_dir: PathLike, overwrite: bool) -> pathlib.Path:
    if not isinstance(export_dir, (str, os.PathLike)):
        raise TypeError(f"export_dir must be a path. Received: export_dir={export_dir!r}")
    check_bool("overwrite", overwrite)
    path = pathlib.Path(export_dir)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"export_dir exists and is not a directory. Received: "
                              f"export_dir='{path}'")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"export_dir is not empty; pass overwrite=True (--overwrite on the command "
                "line) to replace it. "
                f"Received: export_dir='{path}'"
            )
        # Only an export fsl wrote is replaced (the marker, or an older fsl export).
        path = folders.check_replaceable(path, "export", _legacy_export)
    return path


def _legacy_export(path: pathlib.Path) -> bool:
    """A SavedModel written by an ``fsl`` from before ownership markers."""
    model = path / "saved_model.pb"
    return model.is_file() and b"fsl_export_info" in model.read_bytes()


def _write(write_out, path: pathlib.Path, what: str = "SavedModel") -> str:
    """Write with ``write_out(folder)`` into a temporary sibling folder, then
    move it into place.

    An export that fails half-way never destroys an existing ``path``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        write_out(tmp)
        folders.mark(tmp, "export")
        if path.is_dir() and any(path.iterdir()):
            folders.replace_owned(path, "export", _legacy_export)
        elif path.is_dir():
            path.rmdir()
        tmp.rename(path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("Exported %s to %s", what, path)
    return str(path)


def _write_onnx(tf, endpoint, hwc, resize: bool, info: dict, path: pathlib.Path) -> str:
    """``endpoint`` under the ``serving_default`` input contract as an ONNX
    file (``path/model.onnx``), ``info`` in its ``fsl_export_info`` metadata."""
    try:
        import onnx
        import tf2onnx
    except ImportError as error:
        raise ImportError('ONNX export needs tf2onnx and onnx: pip install "fsl[onnx]"') \
            from error
    specs = _input_specs(tf, ["images"], hwc, resize)["serving_default"]
    info = {**info, "resize": resize, "input_shape": list(hwc), "format": "onnx"}

    def write_out(folder: pathlib.Path) -> None:
        proto, _ = tf2onnx.convert.from_function(
            tf.function(endpoint, input_signature=specs), input_signature=specs,
            opset=ONNX_OPSET)
        entry = proto.metadata_props.add()
        entry.key, entry.value = "fsl_export_info", json.dumps(info, sort_keys=True)
        onnx.save(proto, str(folder / ONNX_FILE))

    return str(pathlib.Path(_write(write_out, path, "ONNX model")) / ONNX_FILE)


# === Graph pieces ===


def _input_specs(tf, names, hwc, resize: bool):
    h, w, c = hwc
    shape = [None, None, None, c] if resize else [None, h, w, c]
    return {
        signature: [tf.TensorSpec(shape, getattr(tf, dtype), name=n) for n in names]
        for signature, dtype in SIGNATURE_DTYPES.items()
    }


def _images_to_model_input(tf, images, hwc, resize, standardize, name):
    """Check shape, cast to float32, resize, standardise: raw pixels -> model input,
    with ``fsl.preprocessing``'s resizing and formulas (the same as every other path)."""
    h, w, c = hwc
    expected = [None, None, None, c] if resize else [None, h, w, c]
    images = tf.ensure_shape(images, expected, name=f"check_{name}_shape")
    x = tf.cast(images, tf.float32)
    if resize:
        x = preprocessing_lib.resize(x, (h, w))
    return preprocessing_lib.standardize(x, standardize)


def _model_fn(model):
    import tensorflow as tf

    def call(x):
        # Batch norm's kernels fail on an empty batch: the model then sees one
        # blank image, and none of its outputs is kept.
        n = tf.shape(x)[0]
        blank = tf.zeros(tf.concat([[1], tf.shape(x)[1:]], axis=0), x.dtype)
        out = model(tf.cond(n > 0, lambda: x, lambda: blank), training=False)
        return tf.nest.map_structure(lambda t: t[:n], out)

    return call


def _check_inputs(function: str, model, preprocessing, resize, argname: str = "model"):
    """The checks every exporter starts with: the backend, the preprocessing,
    an image model, ``resize``; returns ``(tf, preprocessing, (H, W, C), resize)``."""
    tf = _require_tensorflow_backend(function)
    preprocessing = _check_preprocessing(preprocessing)
    hwc = _check_image_model(model, preprocessing, argname)
    return tf, preprocessing, hwc, _check_resize(resize, hwc, argname)


def _check_resize(resize: bool, hwc, argname: str = "model") -> bool:
    check_bool("resize", resize)
    if resize and (hwc[0] is None or hwc[1] is None):
        raise ValueError(
            f"resize=True needs a {argname} with a fixed input height and width. "
            f"Received: input shape (None, {hwc[0]}, {hwc[1]}, {hwc[2]})"
        )
    return resize


def _check_cohort(cohort: Any, dim: int | None, normalize: bool):
    """A ``[C >= 2, dim]`` finite float32 cohort, L2-normalised if ``normalize``."""
    import numpy as np

    from fsl.evaluation.verification import check_cohort as check

    array, _ = check(cohort, None if dim is None else int(dim))
    if normalize:
        array = array / np.maximum(np.linalg.norm(array, axis=1, keepdims=True), 1e-12)
    return array.astype("float32")


def _cohort_statistics(tf, embeddings, cohort, metric: str):
    """Mean and std (floored) of each row's ``metric`` distances to the cohort,
    in float32: the graph version of ``fsl.evaluation.cohort_statistics``."""
    d = tf.cast(distances.cross_distances(embeddings, cohort, metric), tf.float32)
    mean = tf.reduce_mean(d, axis=-1)
    std = tf.sqrt(tf.reduce_mean(tf.square(d - mean[:, None]), axis=-1))
    return mean, tf.maximum(std, 1e-12)


def _contract_info(contract: Mapping[str, Any] | None) -> dict:
    """``{"contract": ...}`` for the export info: a checked preprocessing config."""
    if contract is None:
        return {}
    return {"contract": preprocessing_lib.Preprocessing.from_config(contract).to_config()}


def _save(tf, model, endpoint, names, hwc, resize: bool, info: dict, path: pathlib.Path,
          variables: dict | None = None) -> str:
    """Write an export: ``endpoint`` under both serving signatures (inputs
    ``names``), ``variables`` as named collections, and ``info`` (with the
    input contract) as the ``fsl_export_info`` collection ``export_info`` reads."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    for signature, specs in _input_specs(tf, names, hwc, resize).items():
        archive.add_endpoint(signature, endpoint, input_signature=specs)
    for name, variable in (variables or {}).items():
        archive.add_variable_collection(name, [variable])
    info = {**info, "resize": resize, "input_shape": list(hwc)}
    archive.add_variable_collection(
        "fsl_export_info",
        [tf.Variable(json.dumps(info, sort_keys=True), trainable=False, name="info")],
    )
    return _write(lambda folder: archive.write_out(str(folder), verbose=False), path)


# === Exporters ===


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
    if len(model.outputs) != 1 or len(model.outputs[0].shape) != 2:
        raise ValueError(
            "model must have one [N, D] output. Received: output shape(s) "
            f"{[tuple(o.shape) for o in model.outputs]}"
        )
    format = check_choice("format", format, FORMATS)
    if format == "onnx" and resize:
        raise ValueError("An ONNX export takes the model's input size: resize=True resizes "
                         "with TensorFlow's anti-aliased kernel, which ONNX has no operator "
                         "for. Received: format='onnx', resize=True")
    path = _prepare_export_dir(export_dir, overwrite)
    call = _model_fn(model)

    def embed(images):
        x = _images_to_model_input(tf, images, hwc, resize, preprocessing, "images")
        embeddings = tf.cast(call(x), tf.float32)
        return {"embeddings": distances.l2_normalize(embeddings, axis=-1)}

    info = {"kind": "embedding", "preprocessing": preprocessing, **_contract_info(contract)}
    if format == "onnx":
        return _write_onnx(tf, embed, hwc, resize, info, path)
    return _save(tf, model, embed, ["images"], hwc, resize, info, path)


def export_pair_verifier(
    embedding_model: keras.Model,
    export_dir: PathLike,
    threshold: float,
    metric: str = "L2",
    preprocessing: str | None = "fixed",
    overwrite: bool = False,
    resize: bool = False,
    normalize: bool = True,
    cohort: Any = None,
    contract: Mapping[str, Any] | None = None,
) -> str:
    """Export a face verifier: two images -> distance and same / different.

    The SavedModel's signatures take ``image_a`` and ``image_b`` (each
    ``[N, H, W, C]``, pixel ``i`` of ``a`` compared with pixel ``i`` of
    ``b``) and return

    * ``"distance"``: ``[N] float32``, ``metric`` between the two embeddings.
    * ``"same"``: ``[N] bool``, ``distance <= threshold`` (True = same
      identity, the ``fsl`` pair-label convention).
    * ``"threshold"``: ``[N] float32``, the baked-in threshold repeated (one
      per row, so that every output has the batch dimension, as TensorFlow
      Serving's row format needs).
    * with a ``cohort``: ``"distance"`` is the S-normalised distance
      (``fsl.evaluation.s_norm_distances`` against the baked-in cohort, in
      float32) and ``"raw_distance"`` the distance before normalisation.

    Signatures: ``"serving_default"`` (``float32`` pixels in ``0..255``) and
    ``"serve_uint8"`` (``uint8``). The threshold is also stored as a
    variable: ``tf.saved_model.load(path).threshold[0]``.

    Args:
        embedding_model: a ``keras.Model`` with one image input and a
            ``[N, D]`` output.
        export_dir: folder to write.
        threshold: the decision threshold on the distance, a finite number
            ``>= 0``, chosen on held-out pairs (e.g. with
            ``fsl.evaluation``) with the *same* metric and normalisation.
        metric: ``"L2"``, ``"squared-L2"`` or ``"angular"`` (see
            ``fsl.distances``).
        preprocessing: as in ``export_embedding_model``.
        overwrite: replace a non-empty ``export_dir``.
        resize: as in ``export_embedding_model``.
        normalize: L2-normalise the embeddings before measuring the
            distance (default True; a no-op for models that end in
            ``L2Normalize``); the cohort rows too.
        cohort: optional ``[C, D]`` embeddings of other people (``C >= 2``,
            e.g. a face run's ``cohort.npy``) to S-normalise the distance
            against; ``threshold`` is then on the S-norm scale (e.g. the
            run's ``s_norm_threshold``) and may be negative.
        contract: the run's ``fsl.preprocessing.Preprocessing`` config, recorded
            in the export's info (``export_info(...)["contract"]``) so that
            ``FacePipeline.from_saved_model`` prepares faces as in training.

    Returns:
        The path of the SavedModel, a string.

    Raises:
        RuntimeError: if the Keras backend is not TensorFlow.
        FileExistsError: if ``export_dir`` is not empty and ``overwrite`` is
            False.
        ValueError: for a non-finite threshold (or a negative one without a
            cohort), an unknown metric or preprocessing, a model without one
            image input, or a cohort that is not ``[C >= 2, D]``.

    Examples:

    ```python
    path = export_pair_verifier(model, "/tmp/verifier", threshold=1.1, metric="L2")
    verify = tf.saved_model.load(path).signatures["serving_default"]
    out = verify(image_a=faces_a, image_b=faces_b)
    out["same"]
    # -> <tf.Tensor: shape=(2,), dtype=bool, numpy=array([ True, False])>
    ```
    """
    tf = _require_tensorflow_backend("export_pair_verifier")
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise TypeError(f"threshold must be a number. Received: threshold={threshold!r}")
    threshold = float(threshold)
    if not math.isfinite(threshold) or (threshold < 0 and cohort is None):
        raise ValueError(
            "threshold must be a finite number (>= 0 without a cohort). "
            f"Received: threshold={threshold!r}"
        )
    metric = distances.canonical_name(metric)
    preprocessing = _check_preprocessing(preprocessing)
    check_bool("normalize", normalize)
    hwc = _check_image_model(embedding_model, preprocessing, "embedding_model")
    resize = _check_resize(resize, hwc, "embedding_model")
    if len(embedding_model.outputs) != 1 or len(embedding_model.outputs[0].shape) != 2:
        raise ValueError(
            "embedding_model must have one [N, D] output. Received: output shape(s) "
            f"{[tuple(o.shape) for o in embedding_model.outputs]}"
        )
    if cohort is not None:
        cohort = _check_cohort(cohort, embedding_model.outputs[0].shape[-1], normalize)
    path = _prepare_export_dir(export_dir, overwrite)
    call = _model_fn(embedding_model)
    paired = distances.get_paired(metric)
    threshold_variable = tf.Variable(
        float(threshold), dtype=tf.float32, trainable=False, name="threshold"
    )
    cohort_variable = None if cohort is None else tf.Variable(
        cohort, dtype=tf.float32, trainable=False, name="cohort"
    )

    def embed(images, name):
        x = _images_to_model_input(tf, images, hwc, resize, preprocessing, name)
        embeddings = tf.cast(call(x), tf.float32)
        return distances.l2_normalize(embeddings, axis=-1) if normalize else embeddings

    def verify(image_a, image_b):
        check = tf.debugging.assert_equal(
            tf.shape(image_a)[0],
            tf.shape(image_b)[0],
            message="image_a and image_b must have the same batch size",
        )
        with tf.control_dependencies([check] if check is not None else []):
            image_a, image_b = tf.identity(image_a), tf.identity(image_b)
        a, b = embed(image_a, "image_a"), embed(image_b, "image_b")
        distance = tf.cast(paired(a, b), tf.float32)
        outputs = {}
        if cohort_variable is not None:
            outputs["raw_distance"] = distance
            mean_a, std_a = _cohort_statistics(tf, a, cohort_variable, metric)
            mean_b, std_b = _cohort_statistics(tf, b, cohort_variable, metric)
            distance = 0.5 * ((distance - mean_a) / std_a + (distance - mean_b) / std_b)
        t = tf.identity(threshold_variable)
        return {
            "distance": distance,
            "same": tf.less_equal(distance, t),
            "threshold": tf.fill(tf.shape(distance), t),
            **outputs,
        }

    variables = {"threshold": threshold_variable}
    if cohort_variable is not None:
        variables["cohort"] = cohort_variable
    info = {"kind": "pair_verifier", "preprocessing": preprocessing, "metric": metric,
            "threshold": float(threshold), "normalize": normalize,
            "score_norm": None if cohort is None else "s-norm",
            "cohort_size": 0 if cohort is None else int(len(cohort)),
            **_contract_info(contract)}
    return _save(tf, embedding_model, verify, ["image_a", "image_b"], hwc, resize, info, path,
                 variables)


def export_mtfl_model(
    model: keras.Model,
    export_dir: PathLike,
    preprocessing: str | None = "unit",
    overwrite: bool = False,
    resize: bool = False,
) -> str:
    """Export the MTFL multitask model: raw face image -> landmarks + attributes.

    The model (``fsl.models.mtfl_model``) predicts landmarks ``x1..x5,
    y1..y5`` normalised to ``[0, 1]`` by the image width / height. The
    exported signatures take ``images`` ``[N, H, W, C]`` and return

    * ``"landmarks"``: ``[N, 5, 2] float32``, ``(x, y)`` in **pixel
      coordinates of the input image** (``x = x_norm * width``,
      ``y = y_norm * height`` with the width and height of the image given to
      the signature, before any resizing).
    * ``"gender"``, ``"smile"``, ``"glasses"``: ``[N, 2] float32``, the
      model's softmax probabilities of classes ``0`` and ``1`` (MTFL codes
      ``1`` and ``2`` minus one; see ``fsl.models.MTFL_TASKS``).
    * ``"pose"``: ``[N, 5] float32``, probabilities of poses ``0..4``.

    Signatures: ``"serving_default"`` (``float32`` pixels in ``0..255``) and
    ``"serve_uint8"`` (``uint8``).

    Args:
        model: a ``keras.Model`` with one image input and a dict output with
            the keys ``landmarks`` ``[N, 10]``, ``gender``, ``smile``,
            ``glasses`` ``[N, 2]`` and ``pose`` ``[N, 5]``.
        export_dir: folder to write.
        preprocessing: default ``"unit"`` (``x / 255``), what the MTFL
            pipeline feeds the model; see ``export_embedding_model``.
        overwrite: replace a non-empty ``export_dir``.
        resize: accept any image size and resize to the model's (the
            landmarks are still returned in the input image's pixels).

    Returns:
        The path of the SavedModel, a string.

    Raises:
        RuntimeError: if the Keras backend is not TensorFlow.
        FileExistsError: if ``export_dir`` is not empty and ``overwrite`` is
            False.
        ValueError: for a model without the MTFL outputs.

    Examples:

    ```python
    path = export_mtfl_model(fsl.models.mtfl_model(), "/tmp/mtfl")
    out = tf.saved_model.load(path).signatures["serve_uint8"](
        images=tf.zeros([1, 64, 64, 1], tf.uint8)
    )
    out["landmarks"].shape
    # -> TensorShape([1, 5, 2])
    ```
    """
    tf, preprocessing, hwc, resize = _check_inputs(
        "export_mtfl_model", model, preprocessing, resize)
    output = model.output
    shapes = (
        {k: tuple(v.shape) for k, v in output.items()} if isinstance(output, dict) else None
    )
    expected = {k: (None, n) for k, n in _MTFL_OUTPUTS.items()}
    if shapes is None or any(shapes.get(k) != v for k, v in expected.items()):
        raise ValueError(
            f"model must output a dict with the shapes {expected}. Received: "
            f"output shapes {shapes if shapes is not None else model.output_shape}"
        )
    path = _prepare_export_dir(export_dir, overwrite)
    call = _model_fn(model)

    def predict(images):
        x = _images_to_model_input(tf, images, hwc, resize, preprocessing, "images")
        out = {k: tf.cast(v, tf.float32) for k, v in call(x).items()}
        size = tf.cast(tf.shape(images)[1:3], tf.float32)  # (height, width)
        landmarks = tf.reshape(out["landmarks"], [-1, 2, 5])  # [N, (x, y), 5]
        scale = tf.reshape(tf.stack([size[1], size[0]]), [1, 2, 1])
        return {
            "landmarks": tf.transpose(landmarks * scale, [0, 2, 1]),
            **{k: out[k] for k in ("gender", "smile", "glasses", "pose")},
        }

    return _save(tf, model, predict, ["images"], hwc, resize,
                 {"kind": "mtfl", "preprocessing": preprocessing}, path)


# === Loading ===


def _check_saved_model_dir(path: PathLike) -> pathlib.Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a path. Received: path={path!r}")
    path = pathlib.Path(path)
    if not (path / "saved_model.pb").is_file():
        raise FileNotFoundError(
            f"No SavedModel (saved_model.pb) found. Received: path='{path}'"
        )
    return path


def load_exported(path: PathLike):
    """Load an exported SavedModel with ``tf.saved_model.load``.

    Needs TensorFlow only (any Keras backend; ``fsl`` is not needed to load,
    this is a convenience).

    Args:
        path: the folder written by one of the ``export_*`` functions.

    Returns:
        The loaded object: call ``obj.signatures["serving_default"](...)``
        (keyword arguments, dict of outputs) or ``obj.serving_default(...)``
        (positional). ``obj.fsl_export_info[0]`` holds a JSON string with the
        export's settings; pair verifiers also have ``obj.threshold[0]``.

    Raises:
        FileNotFoundError: if ``path`` holds no SavedModel.

    Examples:

    ```python
    loaded = load_exported("/tmp/facenet")
    signature_input_spec(loaded)
    # -> {'images': TensorSpec(shape=(None, 96, 96, 1), dtype=tf.float32, name='images')}
    ```
    """
    path = _check_saved_model_dir(path)
    import tensorflow as tf

    return tf.saved_model.load(str(path))


def export_info(loaded_or_path) -> dict:
    """The settings an export was written with (kind, preprocessing, ...).

    Args:
        loaded_or_path: a loaded SavedModel or its path, or an exported
            ``.onnx`` file's path.

    Returns:
        A dict, e.g. ``{"kind": "embedding", "preprocessing": "fixed",
        "resize": False, "input_shape": [96, 96, 1]}``; pair verifiers add
        ``metric``, ``threshold`` and ``normalize``.

    Raises:
        FileNotFoundError: if a path holds no SavedModel.
        ValueError: if the SavedModel was not written by ``fsl.export``.

    Examples:

    ```python
    export_info("/tmp/verifier")["threshold"]
    # -> 1.1
    ```
    """
    if isinstance(loaded_or_path, (str, os.PathLike)) and str(loaded_or_path).endswith(".onnx"):
        import onnx

        metadata = {entry.key: entry.value
                    for entry in onnx.load(str(loaded_or_path)).metadata_props}
        if "fsl_export_info" not in metadata:
            raise ValueError("This ONNX file was not written by fsl.export (no fsl_export_info "
                             f"metadata). Received: loaded_or_path={loaded_or_path!r}")
        return json.loads(metadata["fsl_export_info"])
    loaded = (
        load_exported(loaded_or_path)
        if isinstance(loaded_or_path, (str, os.PathLike))
        else loaded_or_path
    )
    info = getattr(loaded, "fsl_export_info", None)
    if not info:
        raise ValueError(
            "This SavedModel was not written by fsl.export (it has no "
            f"fsl_export_info). Received: loaded_or_path={loaded_or_path!r}"
        )
    value = info[0].numpy()
    return json.loads(value.decode() if isinstance(value, bytes) else value)


def signature_input_spec(loaded_or_path, signature: str = "serving_default") -> dict:
    """The inputs a serving signature expects: name -> ``tf.TensorSpec``.

    Args:
        loaded_or_path: a loaded SavedModel (``load_exported``) or its path.
        signature: the signature key, e.g. ``"serving_default"`` or
            ``"serve_uint8"``.

    Returns:
        A dict from input name (``"images"``, or ``"image_a"`` and
        ``"image_b"``) to its ``tf.TensorSpec`` (shape with ``None`` for the
        batch size, dtype).

    Raises:
        KeyError: for an unknown signature, naming the available ones.

    Examples:

    ```python
    signature_input_spec("/tmp/facenet", "serve_uint8")
    # -> {'images': TensorSpec(shape=(None, 96, 96, 1), dtype=tf.uint8, name='images')}
    ```
    """
    loaded = (
        load_exported(loaded_or_path)
        if isinstance(loaded_or_path, (str, os.PathLike))
        else loaded_or_path
    )
    signatures = loaded.signatures
    if signature not in signatures:
        raise KeyError(
            f"Unknown signature. Available: {sorted(signatures)}. "
            f"Received: signature={signature!r}"
        )
    _, kwargs = signatures[signature].structured_input_signature
    return dict(kwargs)
