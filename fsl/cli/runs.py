"""``fsl evaluate``, ``fsl embed`` and ``fsl export``: what a run folder is used for."""

from __future__ import annotations

import argparse
import json
import pathlib

from fsl.cli.args import CliError


def add_run_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by fsl train")


def run_evaluate(args) -> int:
    from fsl.training import evaluate_run

    metrics = evaluate_run(args.run_dir)
    from fsl.runs import to_jsonable

    print(json.dumps(to_jsonable(metrics), indent=2, sort_keys=True))
    return 0


def run_embed(args) -> int:
    import numpy as np

    from fsl.runs import open_run

    run_dir = open_run(args.run_dir)
    try:
        prep = run_dir.preprocessing()
    except ValueError as error:
        raise ValueError(f"{error}; cannot embed files") from None
    for image in args.images:
        if not pathlib.Path(image).is_file():
            raise FileNotFoundError(f"image not found: {image}")
    out = pathlib.Path(args.out)
    if out.suffix != ".npy":
        raise ValueError(f"--out must name a .npy file. Received: --out {args.out}")
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{args.out} exists; pass --overwrite to replace it")
    # The run's own preprocessing (fsl.preprocessing): what training, the face
    # commands and the exports feed the model too.
    if prep.align == "none":
        model = run_dir.load_model("embedding")
        images = prep.standardize_pixels(np.stack([prep.load(path) for path in args.images]))
        embeddings = np.asarray(model.predict(images, batch_size=256, verbose=0), "float32")
    else:
        # A model trained on detected faces: detect and align them the same way.
        from fsl.faces.pipeline import FacePipeline

        pipeline = FacePipeline.from_run(run_dir.path)
        embeddings = np.stack([pipeline.embed(path) for path in args.images]).astype("float32")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, embeddings)
    print(f"wrote {out} {embeddings.shape}")
    return 0


def run_export(args) -> int:
    from fsl.runs import open_run

    run_dir = open_run(args.run_dir)
    config = run_dir.read_config()
    try:
        from fsl import export
    except ImportError as error:  # pragma: no cover - fsl.export is part of fsl
        raise CliError(f"fsl.export is not available: {error}") from None
    kind = args.kind or ("mtfl" if config.get("task") == "mtfl" else "embedding")
    if args.score_norm == "s-norm" and kind != "verifier":
        raise ValueError(f"--score-norm s-norm applies to --kind verifier. Received: --kind {kind}")
    if args.format == "onnx" and kind == "mtfl":
        raise ValueError("--format onnx exports the embedding model or the verifier. "
                         f"Received: --kind {kind}")
    # The S-norm verifier is another model than the plain one: its own folder.
    default_dir = kind + ("-s-norm" if args.score_norm == "s-norm" else "") + \
        ("-onnx" if args.format == "onnx" else "")
    export_dir = pathlib.Path(args.export_dir or run_dir.path / "export" / default_dir)
    contract = run_dir.preprocessing() if config.get("preprocessing") else None
    prep = contract.standardize if contract else None
    common = {"preprocessing": prep, "overwrite": args.overwrite, "resize": args.resize}
    if contract and kind != "mtfl":
        common["contract"] = contract.to_config()
    if kind == "mtfl":
        if config.get("task") != "mtfl":
            raise ValueError(f"--kind mtfl needs an mtfl run. Received: task={config.get('task')!r}")
        model = run_dir.load_model()
        path = export.export_mtfl_model(model, export_dir, **common)
    elif kind == "embedding":
        model = run_dir.load_model("embedding")
        path = export.export_embedding_model(model, export_dir, format=args.format, **common)
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
            **common,
            # The threshold was chosen on the embeddings as the model outputs them.
            normalize=False,
            cohort=cohort,
            format=args.format,
        )
    print(f"exported {kind} {'ONNX model' if args.format == 'onnx' else 'SavedModel'} to {path}")
    return 0


def add_embed_arguments(parser):
    add_run_dir(parser)
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    parser.add_argument("--out", required=True, help="output .npy file ([N, D] float32)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def add_export_arguments(parser):
    add_run_dir(parser)
    parser.add_argument(
        "--kind",
        choices=("embedding", "verifier", "mtfl"),
        help="what to export (default: mtfl for mtfl runs, else embedding)",
    )
    parser.add_argument("--format", choices=("savedmodel", "onnx"), default="savedmodel",
                        help="savedmodel (default) or onnx (the embedding model or the "
                        "verifier, the same input contract as the SavedModel's float32 "
                        "signature, no --resize; fsl[onnx])")
    parser.add_argument("--export-dir",
                        help="default RUN_DIR/export/KIND (KIND-s-norm for an S-norm verifier, "
                        "KIND-onnx for ONNX)")
    parser.add_argument("--resize", action="store_true",
                        help="accept images of any size and resize them in the graph, as "
                        "fsl.preprocessing does (default: the run's input size only)")
    parser.add_argument(
        "--score-norm",
        choices=("none", "s-norm"),
        default="none",
        help="verifier only: none (default): raw distance and the run's threshold; s-norm: "
        "the distance S-normalised against the run's training faces (cohort.npy, baked in) "
        "and its s_norm_threshold",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty export dir")
