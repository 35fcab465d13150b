"""The ``fsl`` command line (also ``python -m fsl``).

Modules: ``main`` (the parser, the command registry, the error policy and
``--traceback``), ``args`` (shared argument types), ``train`` (``fsl
train``), ``runs`` (``fsl evaluate``, ``embed``, ``export``) and ``faces``
(``fsl verify``, ``identify``, ``cluster``). See ``fsl.cli.main``.
"""

from __future__ import annotations

from fsl.cli.args import CliError
from fsl.cli.main import (
    COMMANDS,
    EXIT_BUG,
    EXIT_USAGE,
    EXPECTED_ERRORS,
    Command,
    build_parser,
    main,
    register_command,
)

__all__ = [
    "COMMANDS",
    "CliError",
    "Command",
    "EXIT_BUG",
    "EXIT_USAGE",
    "EXPECTED_ERRORS",
    "build_parser",
    "main",
    "register_command",
]
