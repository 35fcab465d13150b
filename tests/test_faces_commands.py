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
    # Raw distances and the run's threshold by default; --score-norm s-norm
    # normalises against the run's cohort.npy, with its s_norm_threshold.
    from fsl.evaluation import pair_distances, s_norm_distances

    metrics = json.loads((run_dir / "metrics.json").read_text())
    cohort = np.load(run_dir / "cohort.npy")
    a, b = orl_dir / "s01" / "01.png", orl_dir / "s02" / "01.png"
    raw_pipeline = FacePipeline.from_run(run_dir, detect_faces=False)
    assert raw_pipeline.cohort is None
    emb_a, emb_b = raw_pipeline.embed(a)[None], raw_pipeline.embed(b)[None]
    status, out, _ = _main(capsys, "verify", a, b, "--model", run_dir, "--no-detect", "--json")
    got = json.loads(out)
    assert status == 0 and got["score_norm"] is False
    assert got["distance"] == pytest.approx(pair_distances(emb_a, emb_b)[0], rel=1e-4, abs=1e-5)
    assert got["threshold"] == pytest.approx(metrics["threshold"])
    assert got["same"] == (got["distance"] <= got["threshold"])
    status, out, _ = _main(capsys, "verify", a, b, "--model", run_dir, "--no-detect", "--json",
                           "--score-norm", "s-norm")
    got = json.loads(out)
    assert status == 0 and got["score_norm"] is True
    want = s_norm_distances(emb_a, emb_b, cohort)[0]
    assert got["distance"] == pytest.approx(want, rel=1e-4, abs=1e-4)
    assert got["threshold"] == pytest.approx(metrics["s_norm_threshold"])
    assert got["same"] == (got["distance"] <= got["threshold"])
    status, out, _ = _main(capsys, "verify", a, a, "--model", run_dir, "--no-detect")
    assert status == 0 and "same person" in out and "distance 0.0000" in out
    status, out, _ = _main(capsys, "verify", a, a, "--model", run_dir, "--no-detect",
                           "--score-norm", "s-norm")
    assert status == 0 and "same person" in out and "S-norm distance -" in out


def test_score_norm_s_norm_needs_a_cohort(run_dir, tmp_path, orl_dir, capsys):
    bare = tmp_path / "bare"
    shutil.copytree(run_dir, bare)
    (bare / "cohort.npy").unlink()
    a = orl_dir / "s01" / "01.png"
    status, out, _ = _main(capsys, "verify", a, a, "--model", bare, "--no-detect", "--json")
    assert status == 0 and json.loads(out)["score_norm"] is False
    status, _, err = _main(capsys, "verify", a, a, "--model", bare, "--no-detect",
                           "--score-norm", "s-norm")
    assert status == 2 and "cohort.npy" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(ValueError, match="score_norm='auto'"):
        FacePipeline.from_run(run_dir, score_norm="auto")


def test_verify_with_detection_finds_the_faces(run_dir, orl_dir, capsys):
    a, b = orl_dir / "s03" / "01.png", orl_dir / "s03" / "02.png"
    status, out, err = _main(capsys, "verify", a, b, "--model", run_dir, "--json")
    assert status == 0, err
    want = FacePipeline.from_run(run_dir).verify(a, b)
    assert json.loads(out)["distance"] == pytest.approx(want.distance, rel=1e-4, abs=1e-5)


def _direct_distances(query, enrolled, cohort):
    from fsl.evaluation import pair_distances, s_norm_cross_distances

    if cohort is not None:
        return s_norm_cross_distances(query, enrolled, cohort)[0]
    return pair_distances(np.repeat(query, len(enrolled), 0), enrolled)


@pytest.mark.parametrize("score_norm", ["none", "s-norm"])
def test_identify_matches_a_direct_gallery(run_dir, orl_dir, tmp_path, capsys, score_norm):
    gallery_dir = tmp_path / "gallery"
    people = ["s31", "s32", "s33", "s34"]  # the chapter's four employees
    for person in people:
        (gallery_dir / person).mkdir(parents=True)
        shutil.copy(orl_dir / person / "01.png", gallery_dir / person / "01.png")
    pipeline = FacePipeline.from_run(
        run_dir, score_norm=None if score_norm == "none" else score_norm, detect_faces=False)
    assert (pipeline.cohort is not None) == (score_norm == "s-norm")
    enrolled = np.stack([pipeline.embed(orl_dir / p / "01.png") for p in people])
    gallery = Gallery(metric=pipeline.metric, cohort=pipeline.cohort).enroll(enrolled, people)
    for query in (orl_dir / "s32" / "05.png", orl_dir / "s39" / "05.png"):
        embedding = pipeline.embed(query)[None]
        names, distances = gallery.identify(embedding, pipeline.threshold)
        # The gallery's distances, computed here independently.
        assert distances[0] == pytest.approx(
            _direct_distances(embedding, enrolled, pipeline.cohort).min(), rel=1e-9)
        status, out, err = _main(capsys, "identify", "--gallery", gallery_dir, query,
                                 "--model", run_dir, "--no-detect", "--json",
                                 "--score-norm", score_norm)
        assert status == 0, err
        got = json.loads(out)
        assert got["name"] == names[0] and got["score_norm"] is (score_norm == "s-norm")
        assert got["distance"] == pytest.approx(distances[0], rel=1e-4, abs=1e-4)


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
    # With S-norm, cut at the run's s_norm_threshold: the groups of
    # cluster_embeddings on the same embeddings and cohort.
    from fsl.faces.pipeline import cluster_embeddings, list_images

    status, out, err = _main(capsys, "cluster", photos, "--model", run_dir, "--no-detect",
                             "--score-norm", "s-norm", "--out", tmp_path / "s", "--json")
    assert status == 0, err
    pipeline = FacePipeline.from_run(run_dir, score_norm="s-norm", detect_faces=False)
    files = list_images(photos)
    labels = cluster_embeddings(np.stack([pipeline.embed(f) for f in files]), None,
                                threshold=pipeline.threshold, cohort=pipeline.cohort)
    want = sorted(sorted(str(f) for f, l in zip(files, labels) if l == k) for k in set(labels))
    assert sorted(sorted(v) for v in json.loads(out)["clusters"].values()) == want


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
        # The run trained on whole photos; with detection asked for, a blank one has no face.
        "no_face": ["verify", blank, good, "--model", run_dir, "--detect"],
        "unreadable": ["verify", garbage, good, "--model", run_dir],
        "empty_dir": ["cluster", tmp_path / "empty", "--model", run_dir],
        "no_model": ["verify", good, good, "--model", tmp_path / "no_such_run"],
    }[case]
    status, out, err = _main(capsys, *argv)
    assert status == 2
    assert err.startswith("fsl: error: ") and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


@pytest.mark.skipif(
    __import__("keras").backend.backend() != "tensorflow",
    reason="SavedModel export needs the TF backend",
)
def test_export_verifier_with_the_runs_s_norm(run_dir, orl_dir, tmp_path, capsys):
    import tensorflow as tf

    from fsl.evaluation import pair_distances, s_norm_distances

    metrics = json.loads((run_dir / "metrics.json").read_text())
    pipeline = FacePipeline.from_run(run_dir, detect_faces=False)
    paths = [orl_dir / "s05" / "01.png", orl_dir / "s05" / "02.png", orl_dir / "s06" / "01.png"]
    crops = np.stack([pipeline.faces(p)[0][1] for p in paths])  # float32 pixels 0..255
    emb = pipeline.embed_images(crops)
    a, b = crops[[0, 0]], crops[[1, 2]]
    want_raw = pair_distances(emb[[0, 0]], emb[[1, 2]])
    want = s_norm_distances(emb[[0, 0]], emb[[1, 2]], np.load(run_dir / "cohort.npy"))
    for option, threshold, distance in (([], "threshold", want_raw),
                                        (["--score-norm", "s-norm"], "s_norm_threshold", want)):
        export_dir = tmp_path / ("s-norm" if option else "raw")
        status, _, err = _main(capsys, "export", run_dir, "--kind", "verifier",
                               "--export-dir", export_dir, *option)
        assert status == 0, err
        out = tf.saved_model.load(str(export_dir)).signatures["serving_default"](
            image_a=tf.constant(a), image_b=tf.constant(b))
        np.testing.assert_allclose(out["distance"].numpy(), distance, rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(out["threshold"].numpy(), metrics[threshold], rtol=1e-6)
        assert ("raw_distance" in out) == bool(option)
    # S-norm is for verifiers, and needs the run's cohort.
    status, _, err = _main(capsys, "export", run_dir, "--kind", "embedding",
                           "--export-dir", tmp_path / "e", "--score-norm", "s-norm")
    assert status == 2 and "--kind verifier" in err
    bare = tmp_path / "bare"
    shutil.copytree(run_dir, bare)
    (bare / "cohort.npy").unlink()
    status, _, err = _main(capsys, "export", bare, "--kind", "verifier",
                           "--export-dir", tmp_path / "v", "--score-norm", "s-norm")
    assert status == 2 and "cohort.npy" in err and len(err.strip().splitlines()) == 1


def test_cli_serves_faces_as_the_run_was_trained(run_dir, orl_dir, tmp_path, capsys, caplog):
    # The run trained on whole ORL photos (config.json says so): the face commands
    # serve whole photos by default, and their decisions on the run's unseen people
    # agree with the run's own evaluation at its threshold (--pairs: one call).
    from fsl.data.faces import identity_split, list_faces
    from fsl.evaluation import verification_pairs

    config = json.loads((run_dir / "config.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert config["preprocessing"]["align"] == "none"
    split_seed = config["arguments"]["split_seed"]
    _, test = identity_split(list_faces(orl_dir, min_images=2),
                             config["arguments"]["test_identities"], split_seed)
    assert list(test.class_names) == config["test_identities"]
    i, j, same = verification_pairs(np.asarray(test.labels), split_seed)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("# image_a,image_b\n" + "\n".join(
        f"{test.paths[a]},{test.paths[b]}" for a, b in zip(i, j)) + "\n")
    status, out, err = _main(capsys, "verify", "--pairs", pairs, "--model", run_dir, "--json")
    assert status == 0, err
    results = json.loads(out)
    assert len(results) == len(same)
    accepted = np.array([r["same"] for r in results])
    assert {r["threshold"] for r in results} == {metrics["threshold"]}
    assert np.mean(accepted[same == 0]) == pytest.approx(metrics["far_at_threshold"], abs=0.01)
    assert np.mean(accepted == (same == 1)) == pytest.approx(
        metrics["accuracy_at_threshold"], abs=0.01)

    # Asking for face detection on this run: served, but with a warning naming both.
    with caplog.at_level("WARNING", logger="fsl.faces.pipeline"):
        FacePipeline.from_run(run_dir, detect_faces=True)
    assert "trained on whole photos (no face detection); serving it faces aligned on the " \
           "5-point template" in caplog.text


def test_verify_pairs_and_identify_many_photos_errors(run_dir, orl_dir, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text(f"{orl_dir / 's01' / '01.png'}\n")
    status, _, err = _main(capsys, "verify", "--pairs", bad, "--model", run_dir)
    assert status == 2 and "line 1: expected two image paths" in err
    status, _, err = _main(capsys, "verify", "--model", run_dir)
    assert status == 2 and "give two photos" in err
    # Relative paths count from the pairs file's folder.
    (tmp_path / "p").mkdir()
    for name in ("01", "02"):
        shutil.copy(orl_dir / "s01" / f"{name}.png", tmp_path / "p" / f"{name}.png")
    (tmp_path / "rel.csv").write_text("p/01.png, p/02.png\n")
    relative = json.loads(_main(capsys, "verify", "--pairs", tmp_path / "rel.csv", "--model",
                                run_dir, "--json")[1])
    absolute = json.loads(_main(capsys, "verify", orl_dir / "s01" / "01.png",
                                orl_dir / "s01" / "02.png", "--model", run_dir, "--json")[1])
    assert relative[0]["distance"] == pytest.approx(absolute["distance"], abs=1e-6)
    photos = [orl_dir / "s01" / "01.png", orl_dir / "s01" / "02.png", orl_dir / "s02" / "01.png"]
    gallery = tmp_path / "gallery"
    for person in ("s01", "s02"):
        (gallery / person).mkdir(parents=True)
        shutil.copy(orl_dir / person / "03.png", gallery / person / "03.png")
    status, out, err = _main(capsys, "identify", "--gallery", gallery, *photos[:2], photos[2],
                             "--model", run_dir, "--json")
    assert status == 0, err
    results = json.loads(out)
    assert [r["photo"] for r in results] == [str(p) for p in photos]
    single = json.loads(_main(capsys, "identify", "--gallery", gallery, photos[2], "--model",
                              run_dir, "--json")[1])
    assert single["name"] == results[2]["name"] and single["distance"] == pytest.approx(
        results[2]["distance"])


def test_calibrate_sets_the_threshold_on_labelled_photos(run_dir, orl_dir, tmp_path, capsys):
    # A copy of the run (calibrate writes into it) and 4 people's photos to serve.
    from fsl.evaluation import best_threshold, pair_distances, val_far, verification_pairs

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    people = tmp_path / "people"
    for person in ("s05", "s06", "s07", "s08"):
        shutil.copytree(orl_dir / person, people / person)
    before = json.loads((run / "metrics.json").read_text())["threshold"]

    # The hand reference: the pipeline's embeddings, the protocol's pairs.
    pipeline = FacePipeline.from_run(run)
    paths = sorted(people.glob("*/*.png"))
    labels = np.array([int(p.parent.name[1:]) for p in paths])
    emb = np.stack([pipeline.embed(p) for p in paths])
    i, j, same = verification_pairs(labels, 0)
    distances = pair_distances(emb[i], emb[j])
    want, _ = best_threshold(distances, same)

    status, out, err = _main(capsys, "calibrate", run, "--data", people, "--dry-run")
    assert status == 0, err
    report = json.loads(out)
    assert report["threshold"] == pytest.approx(want) and report["written"] is False
    assert report["pairs"] == len(same) == 2 * report["same_pairs"] == 2 * 4 * 45
    assert json.loads((run / "metrics.json").read_text())["threshold"] == before

    status, out, err = _main(capsys, "calibrate", run, "--data", people, "--far", "0.01")
    assert status == 0, err
    report = json.loads(out)
    assert report["threshold"] == pytest.approx(val_far(distances, same, 0.01)["threshold"])
    assert report["far"] <= 0.01 and report["previous"] == before
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["threshold"] == pytest.approx(report["threshold"])
    assert metrics["threshold_history"][-1]["previous"] == before
    # Served with it from now on.
    assert FacePipeline.from_run(run).threshold == pytest.approx(report["threshold"])

    (tmp_path / "one" / "s01").mkdir(parents=True)
    shutil.copy(orl_dir / "s01" / "01.png", tmp_path / "one" / "s01" / "01.png")
    status, _, err = _main(capsys, "calibrate", run, "--data", tmp_path / "one")
    assert status == 2 and "same and one different pair" in err


def test_cluster_skips_an_unreadable_file_and_names_it(run_dir, orl_dir, tmp_path, capsys, caplog):
    photos = tmp_path / "photos"
    photos.mkdir()
    for person in ("s01", "s02"):
        for name in ("01", "02"):
            shutil.copy(orl_dir / person / f"{name}.png", photos / f"{person}_{name}.png")
    (photos / "broken.png").write_bytes(b"\x89PNG truncated")
    with caplog.at_level("WARNING", logger="fsl.faces.pipeline"):
        status, out, err = _main(capsys, "cluster", photos, "--model", run_dir, "--n-clusters",
                                 "2", "--method", "kmeans", "--out", tmp_path / "grids", "--json")
    assert status == 0, err
    clustered = [p for members in json.loads(out)["clusters"].values() for p in members]
    assert sorted(clustered) == sorted(str(p) for p in photos.glob("s0*.png"))
    assert "broken.png" in caplog.text


def test_pixels_in_0_1_warn(run_dir):
    pipeline = FacePipeline.from_run(run_dir)
    crops = np.full((1, *pipeline.image_size, 1), 0.5, np.float32)
    with pytest.warns(UserWarning, match="0..255"):
        pipeline.embed_images(crops)
