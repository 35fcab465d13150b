"""``export_mtfl_model``: raw face image -> landmarks in pixels + attributes."""

from __future__ import annotations

import keras

from fsl._checks import PathLike
from fsl.export.archive import _prepare_export_dir, _save
from fsl.export.graph import _check_inputs, _images_to_model_input, _model_fn

_MTFL_OUTPUTS = {"landmarks": 10, "gender": 2, "smile": 2, "glasses": 2, "pose": 5}


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
