"""Pretrained networks, rebuilt in Keras from their original weight files.

* ``dlib_resnet``: dlib's face-recognition ResNet (128-d descriptors of
  150 x 150 face chips), read from the ``face_recognition_models`` package.

``PRETRAINED`` (``fsl.pretrained.catalog``) names them for ``fsl pretrained
NAME --output DIR``, which writes a run folder every ``fsl`` command takes
(``fsl.training.pretrained.pretrained_run``).
"""

from fsl.pretrained.catalog import PRETRAINED, PretrainedModel, get_pretrained
from fsl.pretrained.dlib_format import DlibFormatError
from fsl.pretrained.dlib_network import (
    DLIB_RESNET_SIZE,
    dlib_resnet,
    dlib_resnet_weights_path,
    read_dlib_resnet,
)

__all__ = [
    "PRETRAINED",
    "PretrainedModel",
    "get_pretrained",
    "DLIB_RESNET_SIZE",
    "DlibFormatError",
    "dlib_resnet",
    "dlib_resnet_weights_path",
    "read_dlib_resnet",
]
