"""``fsl serve``: a face search engine (web page and JSON API) over ``fsl.index``.

``create_app(run, db)`` builds the FastAPI application; ``SearchEngine`` is
the model and the gallery behind it; ``fsl.serve.uploads`` checks uploads.
Needs the ``fsl[serve]`` extra (FastAPI, uvicorn, python-multipart).
"""

from fsl.serve.uploads import MAX_PIXELS, MAX_UPLOAD_BYTES, UploadError, read_upload

__all__ = ["MAX_PIXELS", "MAX_UPLOAD_BYTES", "UploadError", "create_app", "read_upload"]


def __getattr__(name):
    if name in ("create_app", "SearchEngine"):  # FastAPI only when asked for
        from fsl.serve import app

        return getattr(app, name)
    raise AttributeError(f"module 'fsl.serve' has no attribute {name!r}")
