"""The ``fsl`` console script: a light, quiet start for the command line.

``import fsl`` imports Keras (and with it TensorFlow) to register its
serializable classes; the command line needs neither to print ``--help`` or
to refuse a bad argument. ``main`` sets ``FSL_LIGHT_IMPORT=1`` so that
``fsl`` defers them to the commands that use them, keeps TensorFlow's C++
start-up messages off the terminal unless ``--verbose`` / ``-v`` is given,
and runs ``fsl.cli.main``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fsl`` command line (``sys.argv[1:]`` by default); the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ["FSL_LIGHT_IMPORT"] = "1"
    if not {"-v", "--verbose"} & set(argv):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from fsl.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
