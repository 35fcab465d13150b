"""Uploaded photos, checked before anything reads their pixels.

``read_upload`` turns an upload's bytes into RGB pixels or raises
``UploadError`` with the HTTP status a server answers: 413 for a file over
the size limit or an image with more pixels than allowed (a decompression
bomb: a small file that decodes to gigabytes), 400 for anything that is not
an image Pillow reads. Nothing is written to disk.
"""

from __future__ import annotations

import io

import numpy as np

#: Default upload limit, bytes.
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
#: Largest image accepted, in pixels (width x height), checked from the
#: header before decoding.
MAX_PIXELS = 40_000_000


class UploadError(ValueError):
    """An upload refused, with the HTTP ``status`` to answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def read_upload(data: bytes, name: str = "upload", max_bytes: int = MAX_UPLOAD_BYTES,
                max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """RGB pixels ``[H, W, 3]`` uint8 of an uploaded image file.

    Raises:
        UploadError: 413 (too many bytes or pixels), 400 (empty, or not an
            image), naming the upload and what was received.
    """
    from PIL import Image, UnidentifiedImageError

    if len(data) > max_bytes:
        raise UploadError(413, f"{name} is {len(data):,} bytes; the limit is {max_bytes:,}")
    if not data:
        raise UploadError(400, f"{name} is empty")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise UploadError(413, f"{name} is {width} x {height} pixels; the limit is "
                                       f"{max_pixels:,} pixels")
            return np.asarray(image.convert("RGB"), np.uint8)
    except UploadError:
        raise
    except Image.DecompressionBombError as error:
        raise UploadError(413, f"{name} decodes to too many pixels ({error})") from None
    except UnidentifiedImageError:  # its message names an in-memory buffer
        raise UploadError(400, f"{name} is not an image Pillow can read") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise UploadError(400, f"{name} is not an image Pillow can read "
                               f"({type(error).__name__}: {error})") from None


def thumbnail(pixels: np.ndarray, box=None, size: int = 112) -> bytes:
    """A JPEG of ``pixels`` (the ``box`` ``(x, y, w, h)`` of a face, grown
    by a fifth, when given), at most ``size`` pixels a side."""
    from PIL import Image

    image = Image.fromarray(np.asarray(pixels, np.uint8))
    if box is not None:
        x, y, w, h = (float(v) for v in box)
        pad = 0.2 * max(w, h)
        image = image.crop((max(0, int(x - pad)), max(0, int(y - pad)),
                            min(image.width, int(x + w + pad)), min(image.height, int(y + h + pad))))
    image.thumbnail((size, size))
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=85)
    return out.getvalue()


__all__ = ["MAX_PIXELS", "MAX_UPLOAD_BYTES", "UploadError", "read_upload", "thumbnail"]
