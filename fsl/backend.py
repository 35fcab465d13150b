"""Which Keras backend a feature needs.

The tensor math of ``fsl`` runs on every Keras backend. Two features do not:
SavedModel export (``fsl.export``) writes TensorFlow graphs, and MTCNN face
detection (``fsl.faces.detect``) runs the ``mtcnn`` package, whose code
converts its Keras models' outputs with TensorFlow's ``.numpy()``. Both
raise ``BackendError`` up front on another backend, naming it, instead of
failing inside TensorFlow or ``mtcnn``.
"""

from __future__ import annotations

__all__ = ["BackendError", "require_tensorflow"]


class BackendError(RuntimeError):
    """A feature needs another Keras backend than the one in use."""


def require_tensorflow(feature: str, hint: str = "") -> None:
    """Raise ``BackendError`` unless Keras runs on TensorFlow.

    Args:
        feature: what needs TensorFlow, as the message's subject.
        hint: an alternative for the user, appended to the message.

    Raises:
        BackendError: on any backend but ``"tensorflow"``, naming it.

    Examples:

    >>> require_tensorflow("SavedModel export")  # on TensorFlow: returns None
    """
    import keras

    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise BackendError(
            f"{feature} needs the TensorFlow Keras backend: set KERAS_BACKEND=tensorflow "
            f"before importing keras{hint}. Received: backend={backend!r}"
        )
