"""``fsl serve``: the face search engine's web page and JSON API (``fsl.serve``)."""

from __future__ import annotations

import argparse
import os
import pathlib

#: Environment variable holding the write token when ``--token`` is not given.
TOKEN_ENV = "FSL_SERVE_TOKEN"


def serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="run folder of the embedding model")
    p.add_argument("--db", default=None,
                   help="the gallery's SQLite file (default: gallery.sqlite in the run folder)")
    p.add_argument("--gallery", default=None, metavar="DIR",
                   help="enrol this folder at start (one sub-folder of photos per person)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="default 8000")
    p.add_argument("--no-detect", dest="detect_faces", action="store_false", default=None,
                   help="every photo is one image (digits, dogs, products): no face detection")
    p.add_argument("--backend", choices=("exact", "approximate"), default="exact",
                   help="gallery search: exact (default) or approximate (HNSW, fsl[search])")
    p.add_argument("--token", default=None,
                   help=f"writes (enrol, delete) need this token (default: ${TOKEN_ENV} if set)")
    p.add_argument("--calibrate", action="store_true",
                   help="at start, choose the gallery's own identification threshold by "
                        "rehearsing with its photos (kept in the SQLite file)")
    p.add_argument("--far-target", type=float, default=None, metavar="RATE",
                   help="with --calibrate: let at most this share of strangers in "
                        "(default: the most correct answers)")
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="upload limit, default 10")


def run_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError as error:
        raise ImportError('fsl serve needs the [serve] extra: pip install "fsl[serve]"') from error
    from fsl.serve.app import create_app

    run = pathlib.Path(args.model)
    if not run.is_dir():
        raise FileNotFoundError(f"model run folder not found: {args.model}")
    if args.gallery is not None and not pathlib.Path(args.gallery).is_dir():
        raise FileNotFoundError(f"gallery folder not found: {args.gallery}")
    if args.far_target is not None and not args.calibrate:
        raise ValueError("--far-target is for --calibrate. Received: --far-target "
                         f"{args.far_target} without --calibrate")
    if not 0 < args.max_upload_mb <= 1024:
        raise ValueError(f"--max-upload-mb must be in (0, 1024]. Received: {args.max_upload_mb}")
    app = create_app(run, args.db or run / "gallery.sqlite",
                     token=args.token or os.environ.get(TOKEN_ENV) or None,
                     detect_faces=args.detect_faces, backend=args.backend,
                     max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
                     gallery_dir=args.gallery, calibrate=args.calibrate,
                     far_target=args.far_target)
    print(f"fsl serve: http://{args.host}:{args.port}/ (API docs at /docs)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
