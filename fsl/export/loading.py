"""Reading an export back: the SavedModel, its info, its input signatures."""

from __future__ import annotations

import json
import os
import pathlib

from fsl._checks import PathLike


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
