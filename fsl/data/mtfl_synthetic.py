"""A SYNTHETIC stand-in for MTFL: drawn cartoon faces in the exact MTFL format.

``synthesize`` writes faces with known landmarks (pupil centres, nose tip,
mouth corners) and rendered attributes (gender, smile, glasses, head pose),
with ``training.txt`` / ``testing.txt`` as ``MTFL.zip`` has them, for offline
tests, tutorials and CI. They are not real faces: ``fsl.data.mtfl.load_mtfl``
says which source it used.
"""

from __future__ import annotations

import json
import logging
import math
import pathlib
import shutil

import numpy as np

from fsl import preprocessing
from fsl._checks import PathLike

logger = logging.getLogger(__name__)

SYNTHETIC_MARKER = "synthetic.json"
SYNTHETIC_VERSION = 1


_README = """SYNTHETIC MTFL-format face set (NOT the real MTFL dataset).

Written by fsl.data.mtfl.synthesize(n={n}, seed={seed}, image_size={size}).
Cartoon faces drawn with Pillow, with known landmarks and rendered attributes:
  landmarks: pupil centres, nose tip, mouth corners (pixel centres at integers)
  gender (1 male / 2 female): short hair cap vs long hair down the sides
  smile (1 yes / 2 no): wide open mouth with teeth and raised corners vs a
    narrower straight closed mouth
  glasses (1 yes / 2 no): thick dark round frames over tinted lenses, a bridge
  pose (1..5): yaw; eyes, nose and mouth shifted from image-left (1) to
    image-right (5) within the face, hair shifted the other way, an ear on
    the far side growing with the yaw; 3 = frontal
with random position, scale, rotation, skin/hair/background colours, lighting
and noise. Same file format as MTFL.zip: training.txt and testing.txt, lines
'synthetic\\NNNNN.jpg x1..x5 y1..y5 gender smile glasses pose'.
Use it for tests and tutorials; report results on it as synthetic.
"""


def _rotate_points(points: np.ndarray, centre, angle_deg: float) -> np.ndarray:
    """Where PIL's ``Image.rotate(angle_deg, center=centre)`` moves ``points``."""
    theta = math.radians(angle_deg)
    cos, sin = math.cos(theta), math.sin(theta)
    dx = points[:, 0] - centre[0]
    dy = points[:, 1] - centre[1]
    # counter-clockwise on screen (y down)
    return np.stack([centre[0] + cos * dx + sin * dy, centre[1] - sin * dx + cos * dy], axis=1)


_SUPERSAMPLE = 4


class _Pen:
    """ImageDraw on a canvas ``F`` times larger, in the coordinates of the small image.

    Small-image pixel ``i`` (centre at ``i``) is the box-average of the large
    pixels ``iF .. iF + F - 1``, whose centre is ``iF + (F - 1) / 2``; Pillow
    floors coordinates, hence the extra ``+ 0.5``. Drawn shapes land within
    about 0.1 px of their nominal position after ``resize(BOX)``.
    """

    def __init__(self, image):
        from PIL import ImageDraw

        self.draw = ImageDraw.Draw(image)
        self.f = _SUPERSAMPLE

    def p(self, x, y):
        return (x * self.f + (self.f - 1) / 2.0 + 0.5, y * self.f + (self.f - 1) / 2.0 + 0.5)

    def box(self, x0, y0, x1, y1):
        return [*self.p(x0, y0), *self.p(x1, y1)]

    def ellipse(self, x, y, rx, ry, fill=None, outline=None, width=1.0):
        cx, cy = self.p(x, y)
        self.draw.ellipse(
            [cx - rx * self.f, cy - ry * self.f, cx + rx * self.f, cy + ry * self.f],
            fill=fill,
            outline=outline,
            width=max(1, int(round(width * self.f))),
        )

    def rectangle(self, box, fill=None):
        self.draw.rectangle(self.box(*box), fill=fill)

    def rounded_rectangle(self, box, radius, fill=None):
        self.draw.rounded_rectangle(self.box(*box), radius=radius * self.f, fill=fill)

    def line(self, box, fill=None, width=1.0):
        self.draw.line(self.box(*box), fill=fill, width=max(1, int(round(width * self.f))))

    def polygon(self, points, fill=None):
        self.draw.polygon([self.p(x, y) for x, y in points], fill=fill)

    def chord(self, box, start, end, fill=None):
        self.draw.chord(self.box(*box), start, end, fill=fill)


def _draw_face(rng: np.random.Generator, size: tuple, gender: int, smile: int, glasses: int, pose: int):
    """One synthetic face. Codes 0-based. Returns (PIL RGB image, [5, 2] landmarks)."""
    from PIL import Image, ImageDraw

    height, width = size
    s = min(height, width)
    cx = width / 2 + rng.uniform(-0.06, 0.06) * width
    cy = height / 2 + rng.uniform(-0.04, 0.06) * height
    a = s * rng.uniform(0.25, 0.31)  # face half-width
    b = a * rng.uniform(1.15, 1.25)  # face half-height
    yaw = (pose - 2) / 2.0  # -1, -0.5, 0, 0.5, 1
    d = yaw * 0.5 * a  # horizontal shift of the features
    back = -0.15 * yaw * a  # the back of the head (hair) shifts the other way

    skin_level = rng.uniform(150, 230)
    skin_tint = np.array([1.0, rng.uniform(0.78, 0.9), rng.uniform(0.62, 0.8)])
    skin = tuple(int(v) for v in np.clip(skin_level * skin_tint, 0, 255))
    hair_level = rng.uniform(15, 85)
    hair_tint = np.array([1.0, rng.uniform(0.7, 0.95), rng.uniform(0.5, 0.8)])
    hair = tuple(int(v) for v in np.clip(hair_level * hair_tint, 0, 255))
    pupil = tuple(int(v) for v in rng.uniform(5, 40, 3))
    lips = (int(rng.uniform(110, 150)), int(rng.uniform(20, 45)), int(rng.uniform(30, 55)))
    frame = tuple(int(v) for v in rng.uniform(0, 45, 3))

    layer = Image.new("RGBA", (width * _SUPERSAMPLE, height * _SUPERSAMPLE), (0, 0, 0, 0))
    pen = _Pen(layer)
    draw = pen

    def ellipse(x, y, rx, ry, fill, outline=None, line=1):
        pen.ellipse(x, y, rx, ry, fill=fill, outline=outline, width=line)

    # neck, then hair behind the head
    draw.rectangle([cx - 0.45 * a, cy + 0.6 * b, cx + 0.45 * a, height], fill=skin)
    if gender == 1:  # female: long hair down the sides
        length = rng.uniform(1.25, 1.7) * b
        draw.rounded_rectangle(
            [cx + back - 1.25 * a, cy - 1.1 * b, cx + back + 1.25 * a, cy + length], radius=0.8 * a, fill=hair
        )
    else:  # male: short cap on top of the head
        ellipse(cx + back, cy - 0.12 * b, 1.07 * a, 0.98 * b, hair)
    ellipse(cx, cy + rng.uniform(0.0, 0.06) * b, a, b * rng.uniform(0.88, 0.94), skin)
    # ear on the side the face turns away from
    if pose != 2:
        side = -1.0 if yaw > 0 else 1.0
        ear = tuple(int(c * 0.85) for c in skin)
        ellipse(cx + side * 0.95 * a, cy, 0.1 * a + 0.12 * a * abs(yaw), 0.25 * b, ear)

    eye_y = cy - 0.16 * b + rng.uniform(-0.03, 0.03) * b
    e = 0.42 * a * (1.0 - 0.22 * abs(yaw))
    left_eye = (cx + d - e, eye_y)
    right_eye = (cx + d + e, eye_y)
    rg = 0.27 * a  # glasses: tinted lenses under the eyes, thick frames over them
    if glasses == 0:
        tint = tuple(int(c) for c in np.array(skin) * 0.55 + np.array([20, 35, 60]))
        for ex, ey in (left_eye, right_eye):
            ellipse(ex, ey, rg, rg * 0.85, tint)
    for ex, ey in (left_eye, right_eye):
        ellipse(ex, ey, max(0.17 * a, 3.0), max(0.1 * a, 2.0), (245, 245, 240))
        ellipse(ex, ey, max(0.085 * a, 1.6), max(0.085 * a, 1.6), pupil)
    if glasses == 0:
        line = max(1.2, 0.1 * a)
        for ex, ey in (left_eye, right_eye):
            ellipse(ex, ey, rg, rg * 0.85, None, outline=frame, line=line)
        draw.line([left_eye[0] + rg, eye_y, right_eye[0] - rg, eye_y], fill=frame, width=line)
        temple_y = eye_y - 0.05 * b
        draw.line([left_eye[0] - rg, eye_y, cx - 0.98 * a + d * 0.3, temple_y], fill=frame, width=line)
        draw.line([right_eye[0] + rg, eye_y, cx + 0.98 * a + d * 0.3, temple_y], fill=frame, width=line)

    nose = (cx + 1.4 * d, cy + 0.14 * b + rng.uniform(-0.03, 0.03) * b)
    shade = tuple(int(c * 0.72) for c in skin)
    draw.polygon(
        [(cx + d, eye_y + 0.12 * b), (nose[0], nose[1]),
         (cx + d - 0.12 * a * np.sign(d or 1), nose[1] + 0.02 * b)],
        fill=tuple(int(c * 0.88) for c in skin),
    )
    ellipse(nose[0], nose[1], 0.07 * a, 0.07 * a, shade)

    mouth_y = cy + 0.5 * b + rng.uniform(-0.03, 0.03) * b
    m = (0.4 if smile == 0 else 0.3) * a * (1.0 - 0.18 * abs(yaw)) * rng.uniform(0.92, 1.08)
    mx = cx + 1.1 * d
    if smile == 0:  # smiling: raised corners, open mouth below them
        corner_y = mouth_y - 0.06 * b
        depth = rng.uniform(0.22, 0.3) * b
        draw.chord([mx - m, corner_y - depth, mx + m, corner_y + depth], 0, 180, fill=lips)
        draw.chord(
            [mx - 0.8 * m, corner_y - 0.4 * depth, mx + 0.8 * m, corner_y + 0.35 * depth],
            0,
            180,
            fill=(235, 235, 230),
        )
        ellipse(mx - m, corner_y, 0.05 * a, 0.05 * a, lips)
        ellipse(mx + m, corner_y, 0.05 * a, 0.05 * a, lips)
    else:  # closed, straight
        corner_y = mouth_y + rng.uniform(-0.01, 0.02) * b
        thick = max(1.5, rng.uniform(0.06, 0.08) * a)
        draw.line([mx - m, corner_y, mx + m, corner_y], fill=lips, width=thick)
        ellipse(mx - m, corner_y, thick / 2, thick / 2, lips)
        ellipse(mx + m, corner_y, thick / 2, thick / 2, lips)
    mouth_left = (mx - m, corner_y)
    mouth_right = (mx + m, corner_y)

    points = np.array([left_eye, right_eye, nose, mouth_left, mouth_right], dtype="float64")
    angle = rng.uniform(-15.0, 15.0)
    # Downsample (anti-aliased), then rotate. PIL rotates about a point in
    # continuous coordinates (pixel centres at i + 0.5), i.e. about our
    # (cx, cy) in pixel-centre-at-integer coordinates.
    layer = layer.resize((width, height), resample=Image.BOX)
    layer = layer.rotate(angle, resample=Image.BILINEAR, center=(cx + 0.5, cy + 0.5))
    points = _rotate_points(points, (cx, cy), angle)

    # background: random colour with a gradient and a few blobs
    yy, xx = np.mgrid[0:height, 0:width].astype("float32")
    base = rng.uniform(40, 220, 3)
    direction = rng.uniform(-1, 1, 2)
    grad = (direction[0] * (xx / width - 0.5) + direction[1] * (yy / height - 0.5)) * rng.uniform(0, 80)
    background = np.clip(base[None, None, :] + grad[..., None], 0, 255).astype("uint8")
    canvas = Image.fromarray(background, "RGB").convert("RGBA")
    blobs = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(0, 4))):
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        r = rng.uniform(0.05, 0.2) * s
        blobs.ellipse([x0 - r, y0 - r, x0 + r, y0 + r], fill=tuple(int(v) for v in rng.uniform(30, 230, 3)))
    canvas = Image.alpha_composite(canvas, layer).convert("RGB")

    # lighting and noise
    pixels = np.asarray(canvas, dtype="float32")
    light = rng.uniform(0.85, 1.15) * (1.0 + rng.uniform(-0.25, 0.25) * (xx / width - 0.5))
    pixels = pixels * light[..., None] + rng.normal(0.0, rng.uniform(0.0, 5.0), pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype("uint8"), "RGB")
    return image, points


def synthesize(
    out_dir: PathLike,
    n: int = 2000,
    seed: int = 0,
    image_size=(96, 96),
    test_fraction: float = 0.2,
    overwrite: bool = False,
) -> pathlib.Path:
    """Writes a SYNTHETIC face set in the exact MTFL format.

    Not real faces: cartoon faces drawn with Pillow, for offline tests,
    tutorials and CI. Each has known landmarks (pupil centres, nose tip,
    mouth corners) and visibly rendered attributes: gender (short hair cap /
    long hair), smile (open mouth with raised corners / straight closed
    mouth), glasses (thick dark frames over tinted lenses), and 5 head poses
    (features shifted from image-left to image-right within the face, hair
    the other way, an ear on the far side). Shapes are drawn 4x larger and
    box-downsampled, so landmarks are accurate to about 0.1 px.
    Position, scale, rotation (+-15 degrees), colours, background, lighting
    and noise are random; the attributes are drawn independently and
    uniformly. Deterministic given ``seed``.

    Files: ``synthetic/NNNNN.jpg``, ``training.txt`` and ``testing.txt`` (the
    last ``round(n * test_fraction)`` faces; backslash paths, 1-based codes,
    as MTFL.zip), ``README.txt`` (says it is synthetic) and
    ``synthetic.json`` (the parameters).

    Args:
        out_dir: folder to write (created).
        n: number of faces (>= 2).
        seed: random seed.
        image_size: ``(height, width)`` of the images.
        test_fraction: fraction written to ``testing.txt``, in ``(0, 1)``.
        overwrite: replace an earlier synthetic set in a non-empty
            ``out_dir`` (only the files listed above are removed).

    Returns:
        ``out_dir`` as a ``pathlib.Path`` (the MTFL root).

    Raises:
        FileExistsError: ``out_dir`` is not empty and ``overwrite=False``.
        ValueError: invalid ``n``, ``image_size`` or ``test_fraction``.
    """
    if int(n) != n or n < 2:
        raise ValueError(f"n must be an integer >= 2. Received: n={n}")
    image_size = preprocessing.check_image_size(image_size)
    if image_size is None or min(image_size) < 32:
        raise ValueError(f"image_size must be at least (32, 32). Received: image_size={image_size}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1). Received: test_fraction={test_fraction}")
    n_test = min(max(1, int(round(n * test_fraction))), n - 1)
    out_dir = pathlib.Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"out_dir is not empty; pass overwrite=True to replace it. Received: out_dir={str(out_dir)!r}"
            )
        shutil.rmtree(out_dir / "synthetic", ignore_errors=True)
        for name in ("training.txt", "testing.txt", "README.txt", SYNTHETIC_MARKER):
            (out_dir / name).unlink(missing_ok=True)
    (out_dir / "synthetic").mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(seed)
    lines = []
    for i in range(int(n)):
        gender, smile, glasses = (int(v) for v in rng.integers(0, 2, 3))
        pose = int(rng.integers(0, 5))
        image, points = _draw_face(rng, image_size, gender, smile, glasses, pose)
        name = f"{i:05d}.jpg"
        image.save(out_dir / "synthetic" / name, format="JPEG", quality=92)
        coords = " ".join(f"{v:.2f}" for v in np.concatenate([points[:, 0], points[:, 1]]))
        lines.append(f"synthetic\\{name} {coords} {gender + 1} {smile + 1} {glasses + 1} {pose + 1}")
    (out_dir / "training.txt").write_text("\n".join(lines[: n - n_test]) + "\n")
    (out_dir / "testing.txt").write_text("\n".join(lines[n - n_test :]) + "\n")
    (out_dir / "README.txt").write_text(_README.format(n=n, seed=seed, size=image_size))
    params = {"n": int(n), "seed": int(seed), "image_size": list(image_size), "test_fraction": test_fraction}
    (out_dir / SYNTHETIC_MARKER).write_text(json.dumps({**params, "version": SYNTHETIC_VERSION}))
    logger.info(
        "synthesize: wrote a SYNTHETIC MTFL-format set of %d faces (%d train, %d test) to %s",
        n,
        n - n_test,
        n_test,
        out_dir,
    )
    return out_dir
