"""`fsl verify`, `fsl identify`, `fsl cluster` through fsl.cli.main, on ORL.

A quick FaceNet run (fast mode) gives the model; every printed number is
checked against the same computation done directly with FacePipeline.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from fsl import cli
from fsl.evaluation import Gallery
from fsl.faces.pipeline import FacePipeline


def test_face_commands_are_registered():
    assert {"verify", "identify", "cluster"} <= set(cli.COMMANDS)


@pytest.fixture(scope="module")
def run_dir(orl_dir, tmp_path_factory):
    from fsl.training import train_facenet

    out = tmp_path_factory.mktemp("runs")
    train_facenet(orl_dir, fast=True, output_dir=out, run="faces", verbose=0, image_size=48)
    return out / "faces"


def _main(capsys, *argv):
    status = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_verify_prints_distance_threshold_decision(run_dir, orl_dir, capsys):
    a, b = orl_dir / "s01" / "01.png", orl_dir / "s02" / "01.png"
    status, out, _ = _main(capsys, "verify", a, b, "--model", run_dir, "--no-detect", "--json")
    assert status == 0
    got = json.loads(out)
    want = FacePipeline.from_run(run_dir, detect_faces=False).verify(a, b)
    assert got["distance"] == pytest.approx(want.distance, rel=1e-4, abs=1e-5)
    assert got["threshold"] == pytest.approx(json.loads((run_dir / "metrics.json").read_text())["threshold"])
    assert got["same"] == (got["distance"] <= got["threshold"])
    status, out, _ = _main(capsys, "verify", a, a, "--model", run_dir, "--no-detect")
    assert status == 0 and "same person" in out and "distance 0.0000" in out


def test_verify_with_detection_finds_the_faces(run_dir, orl_dir, capsys):
    a, b = orl_dir / "s03" / "01.png", orl_dir / "s03" / "02.png"
    status, out, err = _main(capsys, "verify", a, b, "--model", run_dir, "--json")
    assert status == 0, err
    want = FacePipeline.from_run(run_dir).verify(a, b)
    assert json.loads(out)["distance"] == pytest.approx(want.distance, rel=1e-4, abs=1e-5)


def test_identify_matches_a_direct_gallery(run_dir, orl_dir, tmp_path, capsys):
    gallery_dir = tmp_path / "gallery"
    people = ["s31", "s32", "s33", "s34"]  # the chapter's four employees
    for person in people:
        (gallery_dir / person).mkdir(parents=True)
        shutil.copy(orl_dir / person / "01.png", gallery_dir / person / "01.png")
    pipeline = FacePipeline.from_run(run_dir, detect_faces=False)
    gallery = Gallery(metric=pipeline.metric).enroll(
        np.stack([pipeline.embed(orl_dir / p / "01.png") for p in people]), people
    )
    for query in (orl_dir / "s32" / "05.png", orl_dir / "s39" / "05.png"):
        names, distances = gallery.identify(pipeline.embed(query)[None], pipeline.threshold)
        status, out, err = _main(capsys, "identify", "--gallery", gallery_dir, query,
                                 "--model", run_dir, "--no-detect", "--json")
        assert status == 0, err
        got = json.loads(out)
        assert got["name"] == names[0]
        assert got["distance"] == pytest.approx(distances[0], rel=1e-4, abs=1e-5)


def test_cluster_writes_one_grid_per_cluster(run_dir, orl_dir, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for person in ("s35", "s36"):
        for i in (1, 2, 3):
            shutil.copy(orl_dir / person / f"0{i}.png", photos / f"{person}_{i}.png")
    out_dir = tmp_path / "grids"
    status, out, err = _main(capsys, "cluster", photos, "--model", run_dir, "--no-detect",
                             "--n-clusters", 2, "--out", out_dir, "--json")
    assert status == 0, err
    result = json.loads(out)
    assert sum(len(v) for v in result["clusters"].values()) == 6
    assert sorted(p.name for p in out_dir.iterdir()) == ["cluster_000.png", "cluster_001.png"]
    # Running again must not overwrite the grids without --overwrite.
    status, _, err = _main(capsys, "cluster", photos, "--model", run_dir, "--no-detect",
                           "--n-clusters", 2, "--out", out_dir)
    assert status == 2 and "overwrite" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("case", ["missing", "no_face", "unreadable", "empty_dir", "no_model"])
def test_bad_input_is_one_line_and_exit_2(case, run_dir, orl_dir, tmp_path, capsys):
    from PIL import Image

    good = orl_dir / "s01" / "01.png"
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((120, 100, 3), 128, np.uint8)).save(blank)
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"not an image at all")
    (tmp_path / "empty").mkdir()
    argv = {
        "missing": ["verify", tmp_path / "nope.jpg", good, "--model", run_dir],
        "no_face": ["verify", blank, good, "--model", run_dir],
        "unreadable": ["verify", garbage, good, "--model", run_dir],
        "empty_dir": ["cluster", tmp_path / "empty", "--model", run_dir],
        "no_model": ["verify", good, good, "--model", tmp_path / "no_such_run"],
    }[case]
    status, out, err = _main(capsys, *argv)
    assert status == 2
    assert err.startswith("fsl: error: ") and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
