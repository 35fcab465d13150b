"""A pretrained network as a run folder: ``fsl pretrained NAME --output DIR``.

``pretrained_run`` writes the folder every ``fsl`` command reads
(``fsl.runs``): ``model.keras`` and ``embedding.keras`` (the network with its
original weights), ``config.json`` with the ``Preprocessing`` it takes
(e.g. dlib chips of 150 x 150 RGB for ``"dlib-resnet"``) and
``metrics.json`` with the metric and the verification threshold. With a face
folder (one sub-folder per person) the threshold is chosen on pairs of its
training people and the network is measured on its held-out people, as
``train_facenet`` measures a trained one (same split, pairs and protocol);
without one, the threshold is the one the network's authors give. So
``fsl verify``, ``identify``, ``cluster``, ``evaluate``, ``export`` and
``serve`` take a pretrained model exactly as a trained one.
"""

from __future__ import annotations

import os
from typing import Any

from fsl import runs
from fsl.pretrained.catalog import get_pretrained
from fsl.runs import RunDir
from fsl.training.facenet import _check_people, _evaluate, _load, _split
from fsl.training.options import RunOptions, guard_run

__all__ = ["pretrained_run", "evaluate_run"]


@guard_run
def pretrained_run(
    model: str = "dlib-resnet",
    data_dir=None,
    test_identities: int | float = 10,
    identities=None,
    split_seed: int = 0,
    weights=None,
    **run_options: Any,
) -> dict[str, Any]:
    """Write a pretrained network as a run folder, with a threshold.

    Args:
        model: a name of ``fsl.pretrained.PRETRAINED`` (``"dlib-resnet"``).
        data_dir: a face folder (one sub-folder per identity), or ``None``
            to keep the authors' threshold and measure nothing.
        test_identities: people of ``data_dir`` held out to measure the
            network on (``fsl.data.faces.identity_split``); 0: all people
            choose the threshold.
        identities: only these identity folders take part.
        split_seed: seed of the split and of the pairs.
        weights: the weights file; default: the model's own source (for
            ``"dlib-resnet"``, the ``face_recognition_models`` package).
        **run_options: ``fsl.training.RunOptions`` (``output_dir``, ``run``,
            ``overwrite``, ``verbose``; nothing is trained).

    Returns:
        The metrics written to ``metrics.json``: ``threshold``,
        ``threshold_source``, ``metric`` and, with held-out people, the
        verification accuracy, precision@1 and clustering scores of
        ``fsl.evaluation.evaluate_faces``.

    Raises:
        ValueError: an unknown model or bad split arguments.
        ModuleNotFoundError: the weights' package is not installed (naming it).
        FileNotFoundError: ``data_dir`` or ``weights`` does not exist.
        FileExistsError: the run folder exists and ``overwrite`` is not set.

    Examples:

    >>> metrics = pretrained_run("dlib-resnet", "faces/", output_dir="saved_models",
    ...                          run="dlib-resnet")  # doctest: +SKIP
    """
    options = RunOptions.from_kwargs("pretrained_run", run_options)
    if options.resume:
        raise ValueError("pretrained_run trains nothing, so there is nothing to resume. "
                         "Received: resume=True")
    entry = get_pretrained(model)
    prep = entry.preprocessing
    if weights is not None and not os.path.isfile(weights):
        raise FileNotFoundError(f"weights file not found. Received: weights={str(weights)!r}")
    weights_file = os.path.abspath(weights) if weights is not None else str(entry.weights_path())
    with options.dtype_policy():
        network = entry.build(weights_file)  # fails here, before the run folder, on a bad file
    train_faces = test_faces = None
    if data_dir is not None:
        train_faces, test_faces = _split(data_dir, identities, test_identities, split_seed)
        _check_people({"wccn": None, "p": None}, train_faces.num_classes, test_faces.num_classes)
    recipe = {"model": model, "weights": weights_file,
              "data_dir": None if data_dir is None else os.path.abspath(data_dir),
              "test_identities": test_identities, "identities": identities,
              "split_seed": split_seed}
    run_dir = options.start("pretrained", recipe)
    runs.update_config(run_dir, preprocessing=prep.to_config(), data_source=weights_file,
                       reference=entry.reference)
    run_dir.save_model(network, "model")
    run_dir.save_model(network, "embedding")
    if train_faces is None:
        metrics = {"threshold": entry.threshold, "threshold_source": entry.threshold_source,
                   "metric": entry.metric}
    else:
        metrics = _measure(network, split_seed, train_faces, test_faces, prep, run_dir)
    metrics.update(model=model, weights=weights_file,
                   embedding_size=int(network.output_shape[-1]), run_dir=str(run_dir.path))
    metrics = runs.finish_run(run_dir, metrics, {}, 0.0, weights_file)
    accuracy = metrics.get("verification_accuracy")
    options.echo(
        f"{model}: threshold {metrics['threshold']:.4f} ({metrics['threshold_source']})"
        + ("" if accuracy is None else
           f"; verification accuracy on {metrics['test_identities']} unseen people: "
           f"{accuracy:.4f}; precision@1: {metrics['precision_at_1']:.4f}"))
    return metrics


def _measure(network, split_seed: int, train_faces, test_faces, prep,
             run_dir: RunDir | None = None) -> dict[str, Any]:
    """Threshold on the training people, metrics on the held-out ones; with
    ``run_dir``, the training faces' pixel statistics become its domain."""
    x_train, y_train = _load(train_faces, prep)
    x_test, y_test = _load(test_faces, prep) if len(test_faces) else (None, None)
    if run_dir is not None:
        run_dir.save_domain(x_train)
    settings = {"split_seed": split_seed, "score_norm": None, "wccn": None}
    metrics = _evaluate(network, settings, x_train, y_train, x_test, y_test)
    metrics["train_identities"] = int(train_faces.num_classes)
    return metrics


def evaluate_run(run_dir: RunDir, config: dict[str, Any]) -> dict[str, Any]:
    """Re-measure a pretrained run on the face folder it was written with.

    Raises:
        ValueError: the run was written without a face folder.
    """
    arguments = config["arguments"]
    if not arguments.get("data_dir"):
        raise ValueError(f"{str(run_dir.path)!r} was written without a face folder (data_dir), "
                         "so there is nothing to evaluate it on; write it again with one")
    train_faces, test_faces = _split(arguments["data_dir"], arguments.get("identities"),
                                     arguments["test_identities"], arguments["split_seed"])
    return _measure(run_dir.load_model("embedding"), arguments["split_seed"], train_faces,
                    test_faces, run_dir.preprocessing())
