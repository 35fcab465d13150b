"""Face runs trained on uncropped photos: faces detected and cut out once,
cached, and served exactly as trained.

The photos are ORL faces pasted at random places on larger canvases (so the
detector has a face to find and a crop to make); the reference for serving
is the cached crop itself: ``FacePipeline.from_run`` must embed each photo
as the model's embedding of that crop.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

from fsl.data.faces import list_faces
from fsl.faces import face_folder_crops
from fsl.faces.pipeline import FacePipeline
from fsl.preprocessing import Preprocessing

PEOPLE = [f"s{i:02d}" for i in range(1, 7)]


@pytest.fixture(scope="module")
def photos(orl_dir, tmp_path_factory):
    """6 ORL people, each face pasted at a random place on a 200 x 180 canvas."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for person in PEOPLE:
        (root / person).mkdir()
        for path in sorted((orl_dir / person).iterdir())[:6]:
            face = Image.open(path).convert("L")
            canvas = Image.new("L", (200, 180), int(rng.integers(90, 170)))
            canvas.paste(face, (int(rng.integers(0, 200 - face.width)),
                                int(rng.integers(0, 180 - face.height))))
            canvas.save(root / person / f"{path.stem}.png")
    return root


def test_crops_are_cached_and_photos_without_a_face_are_named(photos, tmp_path, caplog):
    folder = list_faces(photos)
    blank = photos / "s01" / "blank.png"
    Image.new("L", (200, 180), 128).save(blank)
    try:
        folder = list_faces(photos)
        prep = Preprocessing((48, 48), 1, "fixed", align="template")
        with caplog.at_level(logging.INFO, logger="fsl.faces.crops"):
            pixels, labels, kept = face_folder_crops(folder.paths, folder.labels, prep,
                                                     cache=tmp_path)
        assert f"Skipping {blank}: no face found" in caplog.text
        assert str(blank) not in kept and len(kept) == len(pixels) == len(labels)
        assert len(kept) >= len(folder.paths) - 4  # MTCNN finds (almost) every pasted face
        assert pixels.shape[1:] == (48, 48, 1) and 0 <= pixels.min() and pixels.max() <= 255
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="fsl.faces.crops"):
            again, _, kept_again = face_folder_crops(folder.paths, folder.labels, prep,
                                                     cache=tmp_path)
        assert "Reusing" in caplog.text and kept_again == kept
        np.testing.assert_array_equal(again, pixels)
        # Another preparation is another cache entry.
        face_folder_crops(folder.paths[:3], folder.labels[:3],
                          Preprocessing((48, 48), 1, "fixed", align="crop", margin=8),
                          cache=tmp_path)
        assert len(list(tmp_path.glob("*.npz"))) == 2
    finally:
        blank.unlink()
    with pytest.raises(ValueError, match="align must be 'crop', 'template' or 'dlib-chip'"):
        face_folder_crops(folder.paths, folder.labels, Preprocessing((48, 48)), cache=tmp_path)


@pytest.mark.parametrize("align", ["template", "crop"])
def test_a_run_on_uncropped_photos_serves_the_crops_it_trained_on(photos, tmp_path, align,
                                                                   monkeypatch):
    from fsl.training import evaluate_run, train_facenet

    monkeypatch.setenv("FSL_CACHE_DIR", str(tmp_path / "cache"))
    metrics = train_facenet(photos, align=align, crop_margin=10, test_identities=2, fast=True,
                            image_size=48, p=4, k=2, output_dir=tmp_path, run="r", verbose=0)
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["preprocessing"]["align"] == align
    assert config["preprocessing"]["margin"] == 10.0
    assert len(list((tmp_path / "cache" / "face-crops").glob("*.npz"))) == 2  # train, test
    assert evaluate_run(tmp_path / "r")["verification_accuracy"] == pytest.approx(
        metrics["verification_accuracy"], abs=1e-6)

    # Serving, by default, detects and cuts faces out as the run trained.
    pipeline = FacePipeline.from_run(tmp_path / "r")
    assert pipeline.detect_faces and pipeline.align == align
    if align == "crop":
        assert pipeline.margin == 10.0
    prep = Preprocessing.from_config(config["preprocessing"])
    train = list_faces(photos)
    paths = [p for p in train.paths if any(f"/{n}/" in p for n in config["train_identities"])][:5]
    pixels, _, kept = face_folder_crops(paths, np.zeros(len(paths)), prep,
                                        cache=tmp_path / "cache" / "face-crops-check")
    served = np.stack([pipeline.embed(path) for path in kept])
    trained = np.asarray(pipeline.embedder.predict(prep.standardize_pixels(pixels), verbose=0))
    np.testing.assert_allclose(served, trained, atol=1e-5)
