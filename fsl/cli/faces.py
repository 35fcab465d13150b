"""``fsl verify``, ``fsl identify`` and ``fsl cluster``: the face commands.

::

    fsl verify a.jpg b.jpg --model saved_models/<run>
    fsl identify --gallery DIR photo.jpg --model saved_models/<run>
    fsl cluster DIR --model saved_models/<run> [--n-clusters N] [--out DIR]

``--model`` is a run folder written by ``fsl train facenet`` (its threshold
and preprocessing come from ``metrics.json`` / ``config.json``) or an
embedding SavedModel written by ``fsl export`` (then pass ``--threshold``).
Distances are raw, compared with the run's ``threshold``; ``--score-norm
s-norm`` S-normalises them against the run's training faces (``cohort.npy``,
saved by runs trained with S-norm, the default) and compares them with its
``s_norm_threshold``. Both thresholds are chosen on training pairs; the S-norm
one can transfer worse to new people (``benchmarks/README.md``), so it is opt-in.
Photos are detected and aligned with MTCNN unless ``--no-detect`` (for photos
that are already face crops, such as ORL or LFW crops).

A photo with no face, an unreadable file or a directory with no images is a
one-line error with exit status 2 (the CLI turns ``ValueError`` /
``FileNotFoundError`` into that).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib

from fsl.cli.args import positive_int
from fsl.faces.pipeline import (
    ALIGN_MODES,
    CLUSTER_METHODS,
    FacePipeline,
    list_images,
    save_cluster_grids,
)


def _add_pipeline_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=os.environ.get("FSL_FACE_MODEL"),
        help="run folder of `fsl train facenet`, or an embedding SavedModel "
        "(default: $FSL_FACE_MODEL)",
    )
    parser.add_argument("--threshold", type=float, default=None,
                        help="distance threshold (default: the run's, chosen on training pairs; "
                        "on the S-norm scale when S-norm is used)")
    parser.add_argument("--score-norm", choices=("none", "s-norm"), default="none",
                        help="none (default): raw distances; s-norm: S-normalised against the "
                        "run's training faces (cohort.npy) with its s_norm_threshold")
    parser.add_argument("--no-detect", dest="detect", action="store_false",
                        help="treat each photo as an already cropped face (no MTCNN)")
    parser.add_argument("--align", choices=ALIGN_MODES, default="template",
                        help="alignment of detected faces (default: template)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def build_pipeline(args: argparse.Namespace) -> FacePipeline:
    """A ``FacePipeline`` from the ``--model`` / ``--threshold`` / ... options."""
    if not args.model:
        raise ValueError("--model is required (a run folder or an embedding SavedModel)")
    model = pathlib.Path(args.model)
    if not model.exists():
        raise FileNotFoundError(f"model not found: {args.model}")
    overrides = {"detect_faces": args.detect, "align": args.align}
    if args.threshold is not None:
        overrides["threshold"] = args.threshold
    score_norm = getattr(args, "score_norm", "none")
    if (model / "saved_model.pb").is_file():
        if args.threshold is None:
            raise ValueError(f"--threshold is required with a SavedModel. Received: --model {args.model}")
        if score_norm == "s-norm":
            raise ValueError(
                "--score-norm s-norm needs a run folder (its cohort.npy). "
                f"Received: --model {args.model}, a SavedModel"
            )
        return FacePipeline.from_saved_model(model, **overrides)
    return FacePipeline.from_run(
        model, score_norm=None if score_norm == "none" else score_norm, **overrides)


def _scale(pipeline: FacePipeline) -> str:
    return "S-norm distance" if pipeline.cohort is not None else "distance"


def _check_file(path: str) -> str:
    if not pathlib.Path(path).is_file():
        raise FileNotFoundError(f"image not found: {path}")
    return path


def run_verify(args: argparse.Namespace) -> int:
    for path in (args.image_a, args.image_b):
        _check_file(path)
    pipeline = build_pipeline(args)
    result = pipeline.verify(args.image_a, args.image_b)
    if args.json:
        print(json.dumps({**result.to_dict(), "score_norm": pipeline.cohort is not None}))
    else:
        decision = "same person" if result.same else "different people"
        print(f"{_scale(pipeline)} {result.distance:.4f}  threshold {result.threshold:.4f}  "
              f"-> {decision}")
    return 0


def run_identify(args: argparse.Namespace) -> int:
    _check_file(args.photo)
    if not pathlib.Path(args.gallery).is_dir():
        raise FileNotFoundError(f"gallery folder not found: {args.gallery}")
    pipeline = build_pipeline(args)
    result = pipeline.identify(args.photo, pipeline.enroll(args.gallery))
    if args.json:
        print(json.dumps({**result.to_dict(), "score_norm": pipeline.cohort is not None}))
    else:
        who = result.name if result.name is not None else f"unknown (nearest: {result.nearest})"
        print(f"{who}  {_scale(pipeline)} {result.distance:.4f}  "
              f"threshold {result.threshold:.4f}")
    return 0


def run_cluster(args: argparse.Namespace) -> int:
    list_images(args.directory)  # fails early, in one line, on an empty folder
    pipeline = build_pipeline(args)
    groups = pipeline.cluster(args.directory, n_clusters=args.n_clusters, method=args.method)
    out = pathlib.Path(args.out or pathlib.Path(args.directory).with_name(
        pathlib.Path(args.directory).name + "_clusters"))
    written = save_cluster_grids(groups, out, overwrite=args.overwrite)
    summary = {str(k): [str(p) for p in v] for k, v in groups.items()}
    if args.json:
        print(json.dumps({"clusters": summary, "grids": [str(p) for p in written]}))
    else:
        for (cluster_id, members), grid in zip(groups.items(), written):
            print(f"cluster {cluster_id}: {len(members)} photos -> {grid}")
    return 0


def verify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image_a")
    parser.add_argument("image_b")
    _add_pipeline_options(parser)


def identify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gallery", required=True,
                        help="folder with one sub-folder of photos per enrolled person")
    parser.add_argument("photo")
    _add_pipeline_options(parser)


def cluster_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", help="folder of photos (searched recursively)")
    parser.add_argument("--n-clusters", type=positive_int, default=None,
                        help="number of people (default: cut at the threshold)")
    parser.add_argument("--method", choices=CLUSTER_METHODS, default="agglomerative")
    parser.add_argument("--out", default=None,
                        help="folder for one grid image per cluster (default: DIRECTORY_clusters)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    _add_pipeline_options(parser)
