"""fsl: similarity learning in Keras 3.

Siamese networks, contrastive and triplet losses with online mining, face
embeddings, verification, recognition, clustering and SavedModel export.

Importing ``fsl`` registers every serializable class (losses, layers, models)
with Keras under the package name ``"fsl"``, so a ``.keras`` file saved from an
``fsl`` model reloads with ``keras.saving.load_model(path)`` and no
``custom_objects``.

The tensor math (``distances``, ``mining``, ``losses``, ``layers``, ``models``)
uses ``keras.ops`` only and runs on every Keras backend. Input pipelines
(``fsl.data``) use ``tf.data``.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

__version__ = "0.1.0"

#: The modules that register fsl's Keras serializables, and the other light ones.
_CORE = ("distances", "heads", "layers", "losses", "mining", "models", "preprocessing")
# Heavier modules (tf.data, sklearn, mtcnn) load on first use.
_LAZY = ("data", "evaluation", "faces", "export", "runs", "training", "cli")

__all__ = [*_CORE, *_LAZY, "register_serializables"]


def register_serializables() -> None:
    """Import the modules that register ``fsl``'s losses, layers and models with
    Keras, so that ``keras.saving.load_model`` finds them. ``import fsl`` does it,
    except in the ``fsl`` command's light start (``FSL_LIGHT_IMPORT=1``), where
    the commands that load a model call it."""
    for name in _CORE:
        globals()[name] = importlib.import_module(f"fsl.{name}")


if os.environ.get("FSL_LIGHT_IMPORT") != "1":
    register_serializables()


def __getattr__(name: str) -> Any:
    if name in _LAZY or name in _CORE:
        module = importlib.import_module(f"fsl.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'fsl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_CORE))
