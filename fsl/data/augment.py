"""Random geometric augmentation of image batches, inside ``tf.data``."""

from __future__ import annotations

import keras


def augment_batches(
    dataset,
    seed: int,
    rotation: float = 0.0,
    translation: float = 0.0,
    zoom: float = 0.0,
    flip: bool = False,
    fill_mode: str = "constant",
):
    """Random geometric augmentation of each image, in the ``tf.data`` pipeline.

    Works on batches ``(x, y)`` and on pair batches ``((x1, x2), y)`` (each
    image transformed on its own), with Keras preprocessing layers.

    Args:
        dataset: batched ``tf.data.Dataset`` of images ``[B, H, W, C]``.
        seed: seed of the random transforms.
        rotation: largest rotation, in turns (0.04 = 14 degrees); 0: none.
        translation: largest shift, as a fraction of height and width.
        zoom: largest zoom in or out, as a fraction of the size.
        flip: also flip left-right at random (faces; not digits).
        fill_mode: how pixels from outside the image are filled
            (``"constant"`` 0, or ``"nearest"``, ``"reflect"``...).

    Returns:
        The dataset with augmented images, prefetched; the same ``seed``
        gives the same images, run after run.
    """
    import tensorflow as tf

    steps = []
    if flip:
        steps.append(keras.layers.RandomFlip("horizontal", seed=seed + 3))
    if rotation > 0:
        steps.append(keras.layers.RandomRotation(rotation, fill_mode=fill_mode, seed=seed))
    if translation > 0:
        steps.append(keras.layers.RandomTranslation(
            translation, translation, fill_mode=fill_mode, seed=seed + 1))
    if zoom > 0:
        steps.append(keras.layers.RandomZoom(zoom, fill_mode=fill_mode, seed=seed + 2))
    if not steps:
        return dataset

    def augmenter(x, training):
        # The layers one after the other, not in a keras.Sequential: each
        # preprocessing layer runs on TensorFlow inside tf.data whatever the
        # Keras backend, a Sequential would call the backend's (e.g. JAX's)
        # ops on the pipeline's symbolic tf.Tensors and fail.
        for step in steps:
            x = step(x, training=training)
        return x

    def augment(x, y):
        if isinstance(x, (tuple, list)):
            return tuple(augmenter(xi, training=True) for xi in x), y
        return augmenter(x, training=True), y

    # One call at a time: the layers draw from a stateful seed generator, and
    # parallel calls would take its states in a varying order (two runs with
    # the same seed would augment differently). prefetch still overlaps the
    # augmentation with training.
    return dataset.map(augment).prefetch(tf.data.AUTOTUNE)
