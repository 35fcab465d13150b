"""Writing an export: the folder (never replacing what ``fsl`` did not write),
the SavedModel with its signatures and info, or the ONNX file."""

from __future__ import annotations

import json
import logging
import os
import pathlib
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any

import keras

from fsl import folders
from fsl import preprocessing as preprocessing_lib
from fsl._checks import PathLike, check_bool, check_choice
from fsl.export.graph import _input_specs

logger = logging.getLogger(__name__)

#: Export formats of ``export_embedding_model``.
FORMATS = ("savedmodel", "onnx")
#: The ONNX file an ONNX export folder holds, and its opset.
ONNX_FILE = "model.onnx"
ONNX_OPSET = 17


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


def _check_format(format: str, resize: bool) -> str:
    """``format`` among ``FORMATS``; ONNX only at the model's input size."""
    format = check_choice("format", format, FORMATS)
    if format == "onnx" and resize:
        raise ValueError("An ONNX export takes the model's input size: resize=True resizes "
                         "with TensorFlow's anti-aliased kernel, which ONNX has no operator "
                         "for. Received: format='onnx', resize=True")
    return format


def _write_onnx(tf, endpoint, names, hwc, info: dict, path: pathlib.Path) -> str:
    """``endpoint`` under the ``serving_default`` input contract (inputs
    ``names``, float32 ``[N, H, W, C]`` pixels in ``0..255``) as an ONNX file
    (``path/model.onnx``), ``info`` in its ``fsl_export_info`` metadata."""
    try:
        import onnx
        import tf2onnx
    except ImportError as error:
        raise ImportError('ONNX export needs tf2onnx and onnx: pip install "fsl[onnx]"') \
            from error
    specs = _input_specs(tf, names, hwc, False)["serving_default"]
    info = {**info, "resize": False, "input_shape": list(hwc), "format": "onnx"}

    def write_out(folder: pathlib.Path) -> None:
        proto, _ = tf2onnx.convert.from_function(
            tf.function(endpoint, input_signature=specs), input_signature=specs,
            opset=ONNX_OPSET)
        entry = proto.metadata_props.add()
        entry.key, entry.value = "fsl_export_info", json.dumps(info, sort_keys=True)
        onnx.save(proto, str(folder / ONNX_FILE))

    return str(pathlib.Path(_write(write_out, path, "ONNX model")) / ONNX_FILE)


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
