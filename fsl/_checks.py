"""One set of argument validators for all of ``fsl``.

Each validator returns the value as a plain Python type (an ``int``, a
``float``, a ``tuple``) and raises ``ValueError`` (``TypeError`` for a value of
the wrong kind where the caller promised one, e.g. a bool flag) with a
message that names the argument and the value received, as Keras does::

    ValueError: k must be an integer >= 2. Received: k=1

Exception policy: these errors, and the library's other ``ValueError`` /
``FileNotFoundError`` / ``FileExistsError``, are what the command line
reports in one line (``fsl.cli``); anything else is a bug and keeps its trace.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable
from typing import Any

import numpy as np

#: A file system path, as the standard library takes it.
PathLike = str | os.PathLike


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """An integer ``>= minimum`` (numpy integers accepted), as ``int``."""
    if not _is_int(value) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}. Received: {name}={value!r}")
    return int(value)


def check_positive_int(name: str, value: Any) -> int:
    """An integer ``>= 1``."""
    return check_int(name, value, 1)


def check_seed(seed: Any, name: str = "seed") -> int:
    """A random seed: an integer ``>= 0``."""
    return check_int(name, seed, 0)


def check_real(name: str, value: Any, low: float = -math.inf, low_open: bool = False) -> float:
    """A finite real number ``> low`` (``low_open``) or ``>= low``, as ``float``."""
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real)
    ok = ok and math.isfinite(float(value)) and (value > low if low_open else value >= low)
    if not ok:
        bound = "" if low == -math.inf else f" {'>' if low_open else '>='} {low:g}"
        raise ValueError(f"{name} must be a finite number{bound}. Received: {name}={value!r}")
    return float(value)


def check_positive_float(name: str, value: Any, allow_zero: bool = False) -> float:
    """A finite number ``> 0`` (``>= 0`` with ``allow_zero``)."""
    return check_real(name, value, 0.0, low_open=not allow_zero)


def _check_interval(name: str, value: Any, high_open: bool) -> float:
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real)
    ok = ok and math.isfinite(float(value)) and 0 <= value and (
        value < 1 if high_open else value <= 1)
    if not ok:
        interval = "[0, 1)" if high_open else "[0, 1]"
        raise ValueError(f"{name} must be in {interval}. Received: {name}={value!r}")
    return float(value)


def check_fraction(name: str, value: Any) -> float:
    """A number in ``[0, 1]`` (e.g. an augmentation strength)."""
    return _check_interval(name, value, high_open=False)


def check_rate(name: str, value: Any) -> float:
    """A rate in ``[0, 1)`` (e.g. dropout)."""
    return _check_interval(name, value, high_open=True)


def check_int_pair(name: str, value: Any) -> tuple[int, int]:
    """Two positive ints (a tuple or list), e.g. two layer widths."""
    ok = (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(_is_int(v) and v > 0 for v in value)
    )
    if not ok:
        raise ValueError(f"{name} must be two positive ints. Received: {name}={value!r}")
    return int(value[0]), int(value[1])


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """One of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}. Received: {name}={value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """A real ``bool`` (not 0 / 1 or a string)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool. Received: {name}={value!r}")
    return value


def check_image_shape(input_shape: Any, min_side: int = 1) -> tuple[int, int, int]:
    """``(height, width, channels)`` of positive ints, each side ``>= min_side``."""
    ok = (
        isinstance(input_shape, (tuple, list))
        and len(input_shape) == 3
        and all(_is_int(d) and d > 0 for d in input_shape)
    )
    if not ok:
        raise ValueError(
            "input_shape must be (height, width, channels) with positive ints. "
            f"Received: input_shape={input_shape!r}"
        )
    if min(input_shape[:2]) < min_side:
        raise ValueError(
            f"input_shape must be at least {min_side}x{min_side} pixels for this "
            f"network. Received: input_shape={tuple(input_shape)!r}"
        )
    return tuple(int(d) for d in input_shape)
