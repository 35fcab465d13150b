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
Faces are prepared as the run's model was trained (``config.json``'s
preprocessing): whole photos for a run trained on face crops such as ORL,
MTCNN detection and alignment for one trained on aligned faces;
``--detect``/``--no-detect`` and ``--align`` override that, with a warning.

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


def _add_pipeline_options(parser: argparse.ArgumentParser, with_model: bool = True) -> None:
    if with_model:
        parser.add_argument(
            "--model",
            default=os.environ.get("FSL_FACE_MODEL"),
            help="run folder of `fsl train facenet`, or an embedding SavedModel "
            "(default: $FSL_FACE_MODEL)",
        )
        parser.add_argument("--threshold", type=float, default=None,
                            help="distance threshold (default: the run's, chosen on training "
                            "pairs or by fsl calibrate; on the S-norm scale with S-norm)")
    parser.add_argument("--score-norm", choices=("none", "s-norm"), default="none",
                        help="none (default): raw distances; s-norm: S-normalised against the "
                        "run's training faces (cohort.npy) with its s_norm_threshold")
    parser.add_argument("--detect", dest="detect", action=argparse.BooleanOptionalAction,
                        default=None,
                        help="detect faces with MTCNN (--no-detect: each photo is one face); "
                        "default: as the run's model was trained")
    parser.add_argument("--align", choices=ALIGN_MODES, default=None,
                        help="alignment of detected faces; default: the run's (template "
                        "for a SavedModel)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def build_pipeline(args: argparse.Namespace) -> FacePipeline:
    """A ``FacePipeline`` from the ``--model`` / ``--threshold`` / ... options."""
    if not args.model:
        raise ValueError("--model is required (a run folder or an embedding SavedModel)")
    model = pathlib.Path(args.model)
    if not model.exists():
        raise FileNotFoundError(f"model not found: {args.model}")
    overrides = {key: value for key, value in (("detect_faces", args.detect),
                                               ("align", args.align)) if value is not None}
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


def read_pairs(path: str) -> list[tuple[str, str]]:
    """``fsl verify --pairs``: two image paths a line (CSV), relative ones
    taken from the file's folder; blank lines and ``#`` comments skipped.

    Raises:
        FileNotFoundError: the file, or an image it names, does not exist.
        ValueError: a line without exactly two paths, naming its number.
    """
    import csv

    file = pathlib.Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"pairs file not found: {path}")
    pairs = []
    with file.open(newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            fields = [field.strip() for field in row]
            if not any(fields) or fields[0].startswith("#"):
                continue
            if len(fields) != 2 or not all(fields):
                raise ValueError(f"{path}, line {number}: expected two image paths separated by "
                                 f"a comma. Received: {','.join(row)!r}")
            a, b = (str(file.parent / field) if not os.path.isabs(field) else field
                    for field in fields)
            pairs.append((_check_file(a), _check_file(b)))
    if not pairs:
        raise ValueError(f"no pairs in {path}")
    return pairs


#: Appended to a decision about a photo unlike the model's training data.
_UNRELIABLE = "  (unreliable: unlike the training data)"


def run_verify(args: argparse.Namespace) -> int:
    if args.pairs is not None:
        if args.image_a is not None or args.image_b is not None:
            raise ValueError("give two photos or --pairs FILE, not both")
        pairs = read_pairs(args.pairs)
    elif args.image_a is None or args.image_b is None:
        raise ValueError("give two photos to compare (or --pairs FILE)")
    else:
        pairs = [(_check_file(args.image_a), _check_file(args.image_b))]
    pipeline = build_pipeline(args)
    embeddings: dict[str, tuple] = {}

    def embed(path):
        if path not in embeddings:  # each photo embedded once
            embeddings[path] = pipeline.embed_with_domain(path)
        return embeddings[path]

    results = []
    for a, b in pairs:
        (ea, known_a), (eb, known_b) = embed(a), embed(b)
        distance = float(pipeline.distance(ea, eb)[0])
        results.append({"image_a": a, "image_b": b, "distance": distance,
                        "threshold": pipeline.threshold, "same": distance <= pipeline.threshold,
                        "score_norm": pipeline.cohort is not None,
                        "in_domain": None if known_a is None else known_a and known_b})
    if args.json:
        print(json.dumps(results if args.pairs is not None else results[0]))
    else:
        for result in results:
            decision = "same person" if result["same"] else "different people"
            prefix = f"{result['image_a']}  {result['image_b']}  " if args.pairs else ""
            print(f"{prefix}{_scale(pipeline)} {result['distance']:.4f}  "
                  f"threshold {result['threshold']:.4f}  -> {decision}"
                  f"{_UNRELIABLE if result['in_domain'] is False else ''}")
    return 0


def run_identify(args: argparse.Namespace) -> int:
    for photo in args.photo:
        _check_file(photo)
    if not pathlib.Path(args.gallery).is_dir():
        raise FileNotFoundError(f"gallery folder not found: {args.gallery}")
    pipeline = build_pipeline(args)
    gallery = pipeline.enroll(args.gallery)  # once, for every photo
    results = [pipeline.identify(photo, gallery) for photo in args.photo]
    scale = {"score_norm": pipeline.cohort is not None}
    if args.json:
        dicts = [{"photo": photo, **result.to_dict(), **scale}
                 for photo, result in zip(args.photo, results)]
        print(json.dumps(dicts if len(dicts) > 1 else dicts[0]))
    else:
        for photo, result in zip(args.photo, results):
            who = result.name if result.name is not None else f"unknown (nearest: {result.nearest})"
            prefix = f"{photo}  " if len(results) > 1 else ""
            print(f"{prefix}{who}  {_scale(pipeline)} {result.distance:.4f}  "
                  f"threshold {result.threshold:.4f}"
                  f"{_UNRELIABLE if result.in_domain is False else ''}")
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
    parser.add_argument("image_a", nargs="?")
    parser.add_argument("image_b", nargs="?")
    parser.add_argument("--pairs", metavar="FILE",
                        help="verify many pairs: a CSV file of two image paths a line "
                        "(relative to the file's folder); each photo is embedded once")
    _add_pipeline_options(parser)


def identify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gallery", required=True,
                        help="folder with one sub-folder of photos per enrolled person")
    parser.add_argument("photo", nargs="+", help="one or more photos (the gallery is "
                        "enrolled once)")
    _add_pipeline_options(parser)


def run_calibrate(args: argparse.Namespace) -> int:
    from fsl.runs import open_run

    if not pathlib.Path(args.data).is_dir():
        raise FileNotFoundError(f"folder not found: {args.data}")
    run = open_run(args.model)
    pipeline = build_pipeline(args)
    report = pipeline.calibrate(args.data, far=args.far, seed=args.seed)
    key = "s_norm_threshold" if pipeline.cohort is not None else "threshold"
    report["written"] = not args.dry_run
    if not args.dry_run:
        metrics = run.set_threshold(report["threshold"], report, key)
        report["previous"] = metrics["threshold_history"][-1]["previous"]
    print(json.dumps(report, indent=2))
    return 0


def calibrate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="RUN_DIR", help="the run folder whose threshold to set")
    parser.add_argument("--data", required=True,
                        help="labelled photos of the people to serve: one sub-folder per person")
    parser.add_argument("--far", type=float, default=None,
                        help="target false-accept rate (e.g. 1e-3); default: best accuracy")
    parser.add_argument("--seed", type=int, default=0, help="seed of the pairs and folds")
    parser.add_argument("--dry-run", action="store_true",
                        help="report the threshold without writing it into the run")
    _add_pipeline_options(parser, with_model=False)
    parser.set_defaults(threshold=None)


def cluster_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", help="folder of photos (searched recursively)")
    parser.add_argument("--n-clusters", type=positive_int, default=None,
                        help="number of people (default: cut at the threshold)")
    parser.add_argument("--method", choices=CLUSTER_METHODS, default="agglomerative")
    parser.add_argument("--out", default=None,
                        help="folder for one grid image per cluster (default: DIRECTORY_clusters)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    _add_pipeline_options(parser)
