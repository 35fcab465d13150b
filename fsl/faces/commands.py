"""Deprecated: the face commands moved to ``fsl.cli.faces``.

Importing this module warns with a ``DeprecationWarning``; it goes in the next
release.
"""

from __future__ import annotations

import warnings

from fsl.cli.faces import build_pipeline, run_cluster, run_identify, run_verify

warnings.warn("fsl.faces.commands moved to fsl.cli.faces; the old module goes in the next "
              "release", DeprecationWarning, stacklevel=2)

__all__ = ["build_pipeline", "run_cluster", "run_identify", "run_verify"]
