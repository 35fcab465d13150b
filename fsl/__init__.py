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
from typing import Any

__version__ = "0.1.0"

# Eager: these register Keras serializables and are cheap to import.
from fsl import (  # noqa: E402
    distances,
    layers,
    losses,
    mining,
    models,
    preprocessing,
)

# Lazy: heavier modules (tf.data, sklearn, mtcnn) load on first use.
_LAZY = ("data", "evaluation", "faces", "export", "runs", "training", "cli")

__all__ = ["distances", "layers", "losses", "mining", "models", "preprocessing", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f"fsl.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'fsl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))
