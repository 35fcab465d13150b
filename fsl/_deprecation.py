"""Names that moved, kept under their old names for one release.

``moved_names(module, {"old": "fsl.new.module:new"})`` returns a module
``__getattr__`` that resolves an old name to its new home with a
``DeprecationWarning`` naming both.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any


def moved_names(module: str, moves: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for names of ``module`` that moved.

    Args:
        module: the old module's name (``__name__``).
        moves: old name -> ``"new.module:new_name"``.

    Returns:
        ``__getattr__(name)``: the moved object, after a ``DeprecationWarning``;
        ``AttributeError`` for any other name.
    """

    def __getattr__(name: str) -> Any:
        if name not in moves:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        target, _, attribute = moves[name].partition(":")
        warnings.warn(
            f"{module}.{name} moved to {target}.{attribute}; the old name goes in the "
            "next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(target), attribute)

    return __getattr__
