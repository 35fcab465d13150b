"""The ``fsl`` entry point: the parser, the command registry and the error policy.

Commands::

    fsl train {siamese-mnist,triplet-mnist,mtfl,facenet} [options]
    fsl pretrained dlib-resnet --output DIR [--data FACES]   # a pretrained face model
    fsl evaluate RUN_DIR                 # re-evaluate a run, print JSON metrics
    fsl embed RUN_DIR IMAGES... --out embeddings.npy
    fsl export RUN_DIR [--kind embedding|verifier|mtfl] [--export-dir DIR] [--score-norm s-norm]
    fsl verify A.jpg B.jpg --model RUN_DIR      # distance, threshold, decision
    fsl identify --gallery DIR PHOTO --model RUN_DIR
    fsl cluster DIR --model RUN_DIR [--n-clusters N] [--out DIR]
    fsl calibrate RUN_DIR --data DIR [--far 1e-3]   # threshold on your labelled photos

Every command has ``--help``. Error policy: the library's validation errors
(``ValueError``, ``FileNotFoundError``, ``FileExistsError``... see
``EXPECTED_ERRORS``) and bad arguments end with ONE line on stderr, ``fsl:
error: ...``, and exit status 2. Any other exception is a bug: ``fsl``
prints ``fsl: internal error: ...`` and exits with status 1, and
``--traceback`` (anywhere on the command line) shows its trace, as it does
for the expected errors.

Another command plugs in with ``register_command(name, help, add_arguments,
run)``; ``run(args)`` returns an exit status (``None`` means 0).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from fsl.backend import BackendError
from fsl.cli import faces, pretrained, runs, serve, train
from fsl.cli.args import CliError, Parser

#: Exceptions that mean "the user asked for something wrong", reported in one line.
EXPECTED_ERRORS = (
    CliError,
    ValueError,
    FileNotFoundError,
    FileExistsError,
    OSError,  # the file system or the network: read-only, full, name too long, offline
    BackendError,  # a feature needs KERAS_BACKEND=tensorflow
)
EXIT_USAGE = 2
EXIT_BUG = 1
TRACEBACK_FLAG = "--traceback"

logger = logging.getLogger("fsl.cli")


# === Registry ===


@dataclasses.dataclass
class Command:
    """A subcommand: its help, how to add its arguments, and what it runs."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]


COMMANDS: dict[str, Command] = {}


def register_command(
    name: str,
    help: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int | None],
    replace: bool = False,
) -> Command:
    """Add a subcommand to ``fsl``.

    Args:
        name: the subcommand (e.g. ``"verify"``).
        help: one-line help shown by ``fsl --help``.
        add_arguments: ``f(parser)`` adding the subcommand's arguments.
        run: ``f(args) -> exit status or None``; raise ``ValueError``,
            ``FileNotFoundError``... for a one-line error with status 2.
        replace: allow replacing an existing command of that name.

    Returns:
        The registered ``Command``.

    Raises:
        ValueError: if ``name`` is already registered and ``replace`` is False.
    """
    if name in COMMANDS and not replace:
        raise ValueError(f"A command named {name!r} is already registered. Received: name={name!r}")
    command = Command(name, help, add_arguments, run)
    COMMANDS[name] = command
    return command


register_command("train", "train a model; writes a run folder", train.add_arguments, train.run)
register_command("pretrained", "write a pretrained network (dlib's face ResNet) as a run folder",
                 pretrained.pretrained_arguments, pretrained.run_pretrained)
register_command("evaluate", "re-evaluate a run folder; prints JSON metrics",
                 runs.add_run_dir, runs.run_evaluate)
register_command("embed", "embed image files with a run's model (.npy)",
                 runs.add_embed_arguments, runs.run_embed)
register_command("export", "export a run's model as a SavedModel",
                 runs.add_export_arguments, runs.run_export)
register_command("verify", "are two photos the same person? (distance, threshold, decision)",
                 faces.verify_arguments, faces.run_verify)
register_command("identify", "who is in a photo, against an enrolled gallery (or unknown)",
                 faces.identify_arguments, faces.run_identify)
register_command("calibrate", "choose a run's threshold on labelled photos of your people",
                 faces.calibrate_arguments, faces.run_calibrate)
register_command("cluster", "group a folder of photos by person; one grid image per cluster",
                 faces.cluster_arguments, faces.run_cluster)
register_command("serve", "a face search engine: web page and JSON API over a gallery",
                 serve.serve_arguments, serve.run_serve)


# === Entry point ===


def build_parser() -> argparse.ArgumentParser:
    """The ``fsl`` argument parser with every registered command."""
    import fsl

    parser = Parser(
        prog="fsl",
        description="Similarity learning in Keras 3: train, evaluate, embed, export.",
    )
    parser.add_argument("--version", action="version", version=f"fsl {fsl.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log INFO messages, TensorFlow's start-up messages included")
    parser.add_argument(TRACEBACK_FLAG, action="store_true",
                        help="show the full trace of an error (accepted anywhere)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.required = True
    for cmd in COMMANDS.values():
        sub = commands.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        cmd.add_arguments(sub)
        sub.set_defaults(_command=cmd)
    return parser


@contextlib.contextmanager
def _quiet_stderr(quiet: bool):
    """Send what is written to file descriptor 2 (TensorFlow's C++ start-up
    lines, printed before its logging can be configured) to ``os.devnull``."""
    if not quiet:
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _load_fsl(verbose: bool) -> None:
    """Import Keras (and its backend) quietly unless ``verbose``, and register
    fsl's serializable classes: what every command needs once its arguments
    are known to be good."""
    import fsl

    with _quiet_stderr(not verbose):
        import keras  # noqa: F401

        fsl.register_serializables()
    if not verbose:
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
        logging.getLogger("absl").setLevel(logging.ERROR)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``fsl`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    Expected errors print ``fsl: error: <message>`` on one line and return 2;
    other exceptions print ``fsl: internal error: <type>: <message>`` and
    return 1. With ``--traceback`` both print their trace first.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    show_trace = TRACEBACK_FLAG in argv
    argv = [a for a in argv if a != TRACEBACK_FLAG]
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except CliError as error:
        print(f"fsl: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exit_:  # --help / --version
        return int(exit_.code or 0)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.command == "train":
        # The data source and similar choices are logged by the trainers.
        logging.getLogger("fsl").setLevel(logging.INFO)
    cmd: Command = args._command
    try:
        _load_fsl(args.verbose)
        status = cmd.run(args)
    except EXPECTED_ERRORS as error:
        if show_trace:
            traceback.print_exc()
        print(f"fsl: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as error:  # noqa: BLE001 - a bug: say so, trace on request
        if show_trace:
            traceback.print_exc()
        print(f"fsl: internal error: {type(error).__name__}: {_one_line(error)}"
              + ("" if show_trace else f" (rerun with {TRACEBACK_FLAG} to see where)"),
              file=sys.stderr)
        return EXIT_BUG
    return int(status or 0)
