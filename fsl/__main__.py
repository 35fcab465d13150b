"""``python -m fsl``: the ``fsl`` command line (see ``fsl.cli``)."""

import sys

from fsl.cli import main

if __name__ == "__main__":
    sys.exit(main())
