"""Is an input like the images a model was trained on? Pixel statistics.

A model answers for any pixels: random noise, a blank frame, or faces shown
to a digit model get embeddings and distances like any others, and a
verification threshold then calls them "same" or "different" with no
meaning. ``Domain`` records, for a run's training images (raw model-size
pixels, 0..255), the range of five statistics of each image: its mean and
spread, its shares of near-black and near-white pixels, and its roughness
(mean difference of neighbouring pixels over the spread: high for noise).
An input with a statistic outside the training range, widened by half of
it (at least 0.05) on each side, is out of domain, and the serving paths say its
decision is unreliable. (The nearest-neighbour test in embedding space did
not separate noise from faces with fsl's whitened, unit-norm face
embeddings: every point lies about equally far from all others there.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from fsl._checks import PathLike

#: The statistics, in the order of ``features``' columns.
FEATURES = ("mean", "spread", "black", "white", "roughness")
#: Training images whose statistics make the range (extremes are left out).
LOW, HIGH = 0.005, 0.995
#: How far beyond the training range (a share of its width, at least
#: ``MIN_WIDTH``) is still in domain.
WIDEN, MIN_WIDTH = 0.5, 0.1


def features(pixels) -> np.ndarray:
    """``[N, 5]`` statistics of raw pixels ``[N, H, W, C]`` (or one ``[H, W, C]``) in 0..255.

    Columns (``FEATURES``): mean / 255; standard deviation / 255; share of
    pixels <= 10 and >= 245 (channel mean); mean absolute difference of
    horizontal and vertical neighbours over (standard deviation + 1).
    """
    x = np.asarray(pixels, np.float64)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"pixels must be [N, H, W, C] or [H, W, C]. Received: shape={x.shape}")
    grey = x.mean(axis=-1)
    flat = grey.reshape(len(grey), -1)
    spread = flat.std(axis=1)
    steps = (np.abs(np.diff(grey, axis=1)).mean(axis=(1, 2))
             + np.abs(np.diff(grey, axis=2)).mean(axis=(1, 2))) / 2
    return np.stack([flat.mean(axis=1) / 255, spread / 255, (flat <= 10).mean(axis=1),
                     (flat >= 245).mean(axis=1), steps / (spread + 1.0)], axis=1)


class Domain:
    """The range of each ``FEATURES`` statistic over a run's training images.

    Args:
        low, high: ``[5]`` bounds: an image with a statistic outside
            ``[low, high]`` is out of domain.

    Examples:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> ramps = np.linspace(60, 190, 32)[None, :, None, None] + rng.normal(0, 3, (50, 32, 32, 1))
    >>> domain = Domain.fit(ramps)
    >>> noise = rng.integers(0, 256, (32, 32, 1))
    >>> domain.in_domain(np.stack([ramps[0], noise])).tolist()
    [True, False]
    >>> domain.reason(noise)  # doctest: +ELLIPSIS
    "its spread is 0.29, the training images' is ..."
    """

    def __init__(self, low, high):
        self.low = np.asarray(low, np.float64).reshape(-1)
        self.high = np.asarray(high, np.float64).reshape(-1)
        if self.low.shape != (len(FEATURES),) or self.high.shape != (len(FEATURES),) \
                or not np.all(self.low <= self.high):
            raise ValueError(f"low and high must be {len(FEATURES)} bounds with low <= high. "
                             f"Received: low={self.low.tolist()}, high={self.high.tolist()}")

    @classmethod
    def fit(cls, pixels) -> Domain:
        """The domain of training images (raw pixels ``[N, H, W, C]``, 0..255).

        Raises:
            ValueError: fewer than 2 images, or not 4-d.
        """
        stats = features(pixels)
        if len(stats) < 2:
            raise ValueError(f"Domain.fit needs 2 or more images. Received: {len(stats)}")
        low, high = np.quantile(stats, LOW, axis=0), np.quantile(stats, HIGH, axis=0)
        width = np.maximum(high - low, MIN_WIDTH)
        return cls(low - WIDEN * width, high + WIDEN * width)

    def in_domain(self, pixels) -> np.ndarray:
        """``True`` for each image whose statistics are all within bounds."""
        stats = features(pixels)
        return np.all((stats >= self.low) & (stats <= self.high), axis=1)

    def reason(self, image) -> str | None:
        """Why one image ``[H, W, C]`` is out of domain (``None`` if it is not)."""
        stats = features(image)[0]
        for name, value, low, high in zip(FEATURES, stats, self.low, self.high, strict=True):
            if not low <= value <= high:
                return (f"its {name} is {value:.3g}, the training images' is "
                        f"{max(low, 0.0):.3g}..{high:.3g}")
        return None

    # === Persistence ===

    def save(self, path: PathLike) -> None:
        """Write ``path`` (``.npz``) atomically."""
        from fsl.folders import atomic_save

        atomic_save(path, lambda tmp: np.savez(tmp, low=self.low, high=self.high,
                                               features=np.array(FEATURES)))

    @classmethod
    def load(cls, path: PathLike) -> Domain:
        with np.load(path) as stored:
            if tuple(str(f) for f in stored["features"]) != FEATURES:
                raise ValueError(f"{path} records other statistics: {stored['features']}")
            return cls(stored["low"], stored["high"])

    def to_dict(self) -> Mapping[str, Any]:
        return {name: [float(lo), float(hi)]
                for name, lo, hi in zip(FEATURES, self.low, self.high, strict=True)}


__all__ = ["FEATURES", "Domain", "features"]
