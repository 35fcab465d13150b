"""``export_pair_verifier``: two images -> distance and same / different."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import keras

from fsl import distances
from fsl._checks import PathLike, check_bool
from fsl.export.archive import (
    _check_format,
    _contract_info,
    _prepare_export_dir,
    _save,
    _write_onnx,
)
from fsl.export.graph import (
    _check_cohort,
    _check_embedding_output,
    _check_image_model,
    _check_preprocessing,
    _check_resize,
    _cohort_statistics,
    _embedder,
    _require_tensorflow_backend,
)


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
    format: str = "savedmodel",
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
        format: ``"savedmodel"`` or ``"onnx"``: the same graph as an ONNX file
            (``export_dir/model.onnx``, as ``export_embedding_model``'s) with
            the ``"serving_default"`` contract: inputs ``image_a`` and
            ``image_b`` float32 ``[N, H, W, C]`` in ``0..255`` (no
            ``resize``), the outputs above (``same`` as ONNX ``bool``); the
            threshold and cohort are constants of the graph and the info
            (``export_info``) is the file's ``fsl_export_info`` metadata.

    Returns:
        The path of the SavedModel (of the ``.onnx`` file), a string.

    Raises:
        RuntimeError: if the Keras backend is not TensorFlow.
        FileExistsError: if ``export_dir`` is not empty and ``overwrite`` is
            False.
        ValueError: for a non-finite threshold (or a negative one without a
            cohort), an unknown metric, preprocessing or ``format``, a model
            without one image input, a cohort that is not ``[C >= 2, D]``, or
            ONNX with ``resize``.
        ImportError: ``format="onnx"`` without ``tf2onnx`` and ``onnx``.

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
    format = _check_format(format, resize)
    dim = _check_embedding_output(embedding_model, "embedding_model")
    if cohort is not None:
        cohort = _check_cohort(cohort, dim, normalize)
    path = _prepare_export_dir(export_dir, overwrite)
    embed = _embedder(tf, embedding_model, hwc, resize, preprocessing, normalize)
    paired = distances.get_paired(metric)
    threshold_variable = tf.Variable(
        float(threshold), dtype=tf.float32, trainable=False, name="threshold"
    )
    cohort_variable = None if cohort is None else tf.Variable(
        cohort, dtype=tf.float32, trainable=False, name="cohort"
    )

    def verify(image_a, image_b):
        check = tf.debugging.assert_equal(
            tf.shape(image_a)[0],
            tf.shape(image_b)[0],
            message="image_a and image_b must have the same batch size",
        )
        with tf.control_dependencies([check] if check is not None else []):
            image_a, image_b = tf.identity(image_a), tf.identity(image_b)
        a, b = embed(image_a, "image_a"), embed(image_b, "image_b")
        # ONNX drops the assertion: there a mismatch fails in this reshape instead
        # of broadcasting one row against the other batch.
        b = tf.reshape(b, tf.shape(a))
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
    if format == "onnx":
        return _write_onnx(tf, verify, ["image_a", "image_b"], hwc, info, path)
    return _save(tf, embedding_model, verify, ["image_a", "image_b"], hwc, resize, info, path,
                 variables)
