"""The MTFL multitask facial-landmark network (Zhang et al. 2014, TCDCN).

Five landmarks plus gender, smile, glasses and head pose from one face crop:
``mtfl_model`` builds it, ``mtfl_losses`` gives its losses and weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras
from keras import layers as kl
from keras import ops

from fsl._checks import check_image_shape, check_positive_int, check_rate
from fsl.losses.base import MetricLoss
from fsl.models.base import OUTPUT_DTYPE

# === MTFL multitask model ===

#: Task name -> number of outputs. Landmarks are ``x1..x5, y1..y5``
#: normalised to ``[0, 1]`` by the image width / height; the attributes are
#: integer classes ``0..n-1`` (MTFL: gender, smile, glasses in {0, 1} after
#: subtracting 1 from the file's 1/2 codes; pose in 0..4).
MTFL_TASKS: dict[str, int] = {
    "landmarks": 10,
    "gender": 2,
    "smile": 2,
    "glasses": 2,
    "pose": 5,
}


def landmark_l2(y_true, y_pred):
    """Per-sample squared Euclidean landmark error, ``[B, 10] -> [B]``.

    ``sum_k (y_pred_k - y_true_k)^2`` over the 10 coordinates: the squared L2
    distance between the predicted and true landmark vectors.

    Args:
        y_true: ``[B, 10]`` target landmarks.
        y_pred: ``[B, 10]`` predicted landmarks.

    Returns:
        ``[B]`` squared errors.
    """
    y_pred = ops.convert_to_tensor(y_pred)
    y_true = ops.cast(y_true, y_pred.dtype)
    return ops.sum(ops.square(y_pred - y_true), axis=-1)


@keras.saving.register_keras_serializable(package="fsl")
class LandmarkL2Loss(MetricLoss):
    """Squared L2 landmark error, averaged over the batch.

    ``mean_b sum_k (y_pred[b, k] - y_true[b, k])^2``: the squared Euclidean
    error summed over the 10 coordinates (``x1..x5, y1..y5``), then averaged
    over the batch (``reduction="sum_over_batch_size"``). It is ``10 x`` the
    mean squared error, i.e. the per-image squared error, which keeps its
    scale comparable to the attribute cross-entropies.

    Note: the chapter's TensorFlow 1 landmark loss, ``tf.square(a, b)``, squares ``a`` and
    passes ``b`` as the op's *name*: the target is ignored and the network is
    only pushed towards ``0``. This loss compares prediction and target.

    Reference: Zhang, Luo, Loy and Tang, "Facial Landmark Detection by Deep
    Multi-task Learning", ECCV 2014 (MTFL; the least-squares landmark term).

    Args:
        **kwargs: ``reduction``, ``name``, ``dtype`` (``fsl.losses.MetricLoss``).

    Examples:

    >>> import numpy as np
    >>> y_true = np.zeros((2, 10), "float32")
    >>> y_pred = np.full((2, 10), 0.5, "float32")
    >>> float(LandmarkL2Loss()(y_true, y_pred))
    2.5
    """

    def __init__(self, **kwargs):
        super().__init__(landmark_l2, **kwargs)


def mtfl_losses(
    weights: Mapping[str, float] | None = None,
) -> tuple[dict[str, keras.losses.Loss], dict[str, float]]:
    """Losses and loss weights for ``mtfl_model``, to pass to ``compile``.

    ``landmarks``: ``LandmarkL2Loss`` (a real squared L2 between prediction
    and target; the chapter's ``tf.square(a, b)`` ignored the target). The
    attributes: ``SparseCategoricalCrossentropy`` on integer targets
    ``0..n-1``.

    Args:
        weights: task -> weight overrides (non-negative floats); tasks not
            given keep weight ``1.0``. Keys must be among ``MTFL_TASKS``.

    Returns:
        ``(losses, loss_weights)``, two dicts keyed by task name.

    Raises:
        ValueError: for an unknown task or a negative / non-numeric weight.

    Examples:

    >>> losses, loss_weights = mtfl_losses({"pose": 0.5})
    >>> sorted(losses) == sorted(MTFL_TASKS), loss_weights["pose"]
    (True, 0.5)
    """
    loss_weights = {task: 1.0 for task in MTFL_TASKS}
    if weights is not None:
        if not isinstance(weights, Mapping):
            raise TypeError(
                f"weights must be a dict task -> float. Received: weights={weights!r}"
            )
        for task, weight in weights.items():
            if task not in MTFL_TASKS:
                raise ValueError(
                    f"Unknown MTFL task. Expected keys among {list(MTFL_TASKS)}. "
                    f"Received: weights={dict(weights)!r}"
                )
            if (
                isinstance(weight, bool)
                or not isinstance(weight, (int, float))
                or not 0 <= weight < float("inf")
            ):
                raise ValueError(
                    f"Task weights must be finite floats >= 0. Received: "
                    f"weights[{task!r}]={weight!r}"
                )
            loss_weights[task] = float(weight)
    losses: dict[str, keras.losses.Loss] = {"landmarks": LandmarkL2Loss()}
    for task in MTFL_TASKS:
        if task != "landmarks":
            losses[task] = keras.losses.SparseCategoricalCrossentropy(name=f"{task}_loss")
    return losses, loss_weights


def mtfl_model(
    input_shape: Sequence[int] = (64, 64, 1),
    dropout: float = 0.5,
    bottleneck: int = 128,
    landmark_activation: str = "sigmoid",
    name: str = "mtfl",
) -> keras.Model:
    """The chapter's multitask facial-landmark network (MTFL).

    Four convolution + max-pooling stages of 16 / 48 / 64 / 64 filters
    (5x5, then 3x3; ReLU), a dense bottleneck with dropout, and five heads:

    * ``"landmarks"``: 10 values ``x1..x5, y1..y5``, normalised to
      ``[0, 1]`` by the image width / height (``sigmoid`` by default, or
      ``"linear"``).
    * ``"gender"``, ``"smile"``, ``"glasses"``: 2-way softmax.
    * ``"pose"``: 5-way softmax.

    The outputs are a dict keyed by those names; compile with
    ``losses, loss_weights = mtfl_losses()``.

    Reference: Zhang, Luo, Loy and Tang, "Facial Landmark Detection by Deep
    Multi-task Learning", ECCV 2014 (the MTFL data set and the multitask
    idea); the chapter's MTFL network for the architecture.

    Args:
        input_shape: ``(height, width, channels)``, at least 16x16.
        dropout: dropout rate after the bottleneck, in ``[0, 1)``.
        bottleneck: width of the shared dense layer, a positive int.
        landmark_activation: ``"sigmoid"`` or ``"linear"``.
        name: model name.

    Returns:
        A ``keras.Model`` with one image input and a dict of five outputs.

    Raises:
        ValueError: for an invalid argument, naming the value received.

    Examples:

    >>> import numpy as np
    >>> model = mtfl_model()
    >>> outputs = model.predict(np.zeros((2, 64, 64, 1), "float32"), verbose=0)
    >>> {task: value.shape for task, value in sorted(outputs.items())}
    {'gender': (2, 2), 'glasses': (2, 2), 'landmarks': (2, 10), 'pose': (2, 5), 'smile': (2, 2)}
    """
    input_shape = check_image_shape(input_shape, min_side=16)
    check_rate("dropout", dropout)
    check_positive_int("bottleneck", bottleneck)
    if landmark_activation not in ("sigmoid", "linear"):
        raise ValueError(
            "landmark_activation must be 'sigmoid' or 'linear'. "
            f"Received: landmark_activation={landmark_activation!r}"
        )

    # === Layers ===
    stages = [(16, 5), (48, 3), (64, 3), (64, 3)]

    # === Functional Model ===
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for i, (filters, kernel) in enumerate(stages, start=1):
        x = kl.Conv2D(filters, kernel, padding="same", activation="relu", name=f"conv{i}")(x)
        x = kl.MaxPooling2D(2, name=f"pool{i}")(x)
    x = kl.Flatten(name="flatten")(x)
    x = kl.Dense(bottleneck, activation="relu", name="bottleneck")(x)
    if dropout > 0:
        x = kl.Dropout(dropout, name="dropout")(x)
    outputs = {
        "landmarks": kl.Dense(
            10, activation=landmark_activation, name="landmarks", dtype=OUTPUT_DTYPE
        )(x)
    }
    for task, classes in MTFL_TASKS.items():
        if task != "landmarks":
            outputs[task] = kl.Dense(
                classes, activation="softmax", name=task, dtype=OUTPUT_DTYPE
            )(x)
    return keras.Model(inputs, outputs, name=name)
