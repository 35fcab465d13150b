"""Named training recipes, as data.

A preset is a dict of a trainer's keyword arguments: pass it on with
``train_facenet(data_dir, **presets.get("facenet", "plain"))`` and add or
override any argument. ``"default"`` is the trainer's own defaults (an empty
dict); the others are the recipes ``benchmarks/README.md`` measures.
"""

from __future__ import annotations

import copy
from typing import Any

#: ``train_facenet`` recipes.
FACENET: dict[str, dict[str, Any]] = {
    "default": {},
    # The chapter's FaceNet recipe without the additions of the default:
    # no augmentation, no precise batch norm, no mirror average, no WCCN,
    # average pooling, the projection as the embedding, 64 x 64 faces.
    "plain": {
        "p": 10,
        "augment": 0.0,
        "epochs": 40,
        "image_size": 64,
        "embedding": "projection",
        "pooling": "avg",
        "precise_bn": False,
        "test_time_flip": False,
        "wccn": None,
    },
}

#: Presets per trainer name.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {"facenet": FACENET}


def get(trainer: str, name: str) -> dict[str, Any]:
    """A copy of the keyword arguments of preset ``name`` of ``trainer``.

    Raises:
        ValueError: an unknown trainer or preset, naming the choices.

    Examples:

    >>> get("facenet", "plain")["pooling"]
    'avg'
    """
    if trainer not in PRESETS:
        raise ValueError(f"No presets for trainer. Expected one of {sorted(PRESETS)}. "
                         f"Received: trainer={trainer!r}")
    if name not in PRESETS[trainer]:
        raise ValueError(f"Unknown {trainer} preset. Expected one of "
                         f"{sorted(PRESETS[trainer])}. Received: name={name!r}")
    return copy.deepcopy(PRESETS[trainer][name])
