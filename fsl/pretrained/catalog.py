"""The pretrained models ``fsl`` can write as run folders, by name.

``PRETRAINED`` maps a name (``fsl pretrained NAME``) to a ``PretrainedModel``:
how to build the network with its weights, how it takes images (the
``Preprocessing`` every serving path then applies) and the threshold to use
when no face folder is given to choose one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from fsl.preprocessing import Preprocessing
from fsl.pretrained import dlib_network

__all__ = ["PRETRAINED", "PretrainedModel", "get_pretrained"]


@dataclasses.dataclass(frozen=True)
class PretrainedModel:
    """One pretrained embedding network.

    Attributes:
        name: its name on the command line.
        description: one line for ``fsl pretrained --help``.
        build: ``build(weights)`` returns the Keras model; ``weights`` is a
            path or ``None`` for the default source.
        weights_path: ``weights_path()`` returns the default weights file
            (raises ``ModuleNotFoundError`` naming the package to install).
        preprocessing: how the model takes images.
        metric: the distance its embeddings are compared with.
        threshold: the verification threshold its authors give.
        threshold_source: where ``threshold`` comes from, in words.
        reference: the paper or page.
        blocks: how many blocks ``freeze(model, n)`` can freeze.
        freeze: ``freeze(model, n)`` freezes the first ``n`` blocks (for
            fine-tuning, ``train_facenet(init=..., freeze_blocks=n)``).
    """

    name: str
    description: str
    build: Callable[[Any], Any]
    weights_path: Callable[[], Any]
    preprocessing: Preprocessing
    metric: str
    threshold: float
    threshold_source: str
    reference: str
    blocks: int
    freeze: Callable[[Any, int], None]


PRETRAINED: dict[str, PretrainedModel] = {
    "dlib-resnet": PretrainedModel(
        name="dlib-resnet",
        description="dlib's face-recognition ResNet-29, 128-d (face_recognition_models "
                    "package; LFW 99.38% by its author)",
        build=lambda weights: dlib_network.dlib_resnet(
            "face_recognition_models" if weights is None else weights),
        weights_path=dlib_network.dlib_resnet_weights_path,
        preprocessing=Preprocessing((dlib_network.DLIB_RESNET_SIZE,) * 2, channels=3,
                                    standardize=None, align="dlib-chip"),
        metric="L2",
        threshold=0.6,
        threshold_source="dlib's distance threshold for this model (its loss_metric layer)",
        reference="D. E. King, High Quality Face Recognition with Deep Metric Learning, 2017",
        blocks=dlib_network.DLIB_RESNET_BLOCKS,
        freeze=dlib_network.freeze_blocks,
    ),
}


def get_pretrained(name: str) -> PretrainedModel:
    """The ``PretrainedModel`` called ``name``.

    Raises:
        ValueError: an unknown name (listing the known ones).
    """
    if name not in PRETRAINED:
        raise ValueError(f"Unknown pretrained model. Expected one of {sorted(PRETRAINED)}. "
                         f"Received: {name!r}")
    return PRETRAINED[name]
