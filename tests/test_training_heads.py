"""``train_facenet`` with a margin-softmax head (``loss="arcface"`` ...).

The saved training model's logits are checked against the papers' formulas
(``references``) on the projection it was trained through, the saved
embedding against the training model's weights (the head left out), and the
combined objective against its parts.
"""

from __future__ import annotations

import csv
import json

import keras
import numpy as np
import pytest
from helpers import CountEpochs, Interrupt
from references import ref_adaface, ref_arcface, ref_cosface

import fsl
from fsl import cli, heads
from fsl.training import train_facenet
from fsl.training.losses import HEAD_MARGINS, MARGIN_HEADS

HEAD_TYPES = (heads.ArcFace, heads.CosFace, heads.AdaFace)
#: A small, fast run: 8 training and 4 test people, 32 x 32, two batches.
SMALL = {"test_identities": 4, "image_size": 32, "p": 4, "k": 2, "augment": 0.0,
         "wccn": None, "score_norm": None, "test_time_flip": False, "fast": True,
         "verbose": 0}


def _people(orl_dir, n=12):
    return sorted(p.name for p in orl_dir.iterdir() if p.is_dir())[:n]


def _history(run):
    with (run / "history.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _reference(head, x, labels):
    """The head's inference logits from the papers' formulas (float64)."""
    w = keras.ops.convert_to_numpy(head.kernel).astype("float64")
    x = x.astype("float64")
    if isinstance(head, heads.AdaFace):
        # Outside training AdaFace reads its running statistics unchanged.
        mean, std = (float(keras.ops.convert_to_numpy(v)) for v in
                     (head.batch_mean, head.batch_std))
        return ref_adaface(x, w, labels, head.scale, head.margin, head.h, 0.0, mean, std)[0]
    if isinstance(head, heads.CosFace):
        return ref_cosface(x, w, labels, head.scale, head.margin)
    return ref_arcface(x, w, labels, head.scale, head.margin, head.easy_margin,
                       head.centres_per_class)


@pytest.mark.parametrize("loss", MARGIN_HEADS)
def test_margin_head_is_trained_on_the_projection_and_left_out_of_the_embedding(
        tmp_path, orl_dir, loss):
    options = {"centres": 2} if loss == "subcenter-arcface" else {"scale": 30.0}
    train_facenet(orl_dir, identities=_people(orl_dir), loss=loss, loss_options=options,
                  output_dir=tmp_path, run="r", **SMALL)
    arguments = json.loads((tmp_path / "r" / "config.json").read_text())["arguments"]
    assert (arguments["loss"], arguments["margin"], arguments["loss_options"]) == (
        loss, HEAD_MARGINS[loss], options)

    model = keras.saving.load_model(tmp_path / "r" / "model.keras")
    head = model.get_layer(loss.replace("-", "_"))
    assert isinstance(head, HEAD_TYPES) and head.num_classes == 8
    assert head.margin == HEAD_MARGINS[loss]
    assert head.scale == options.get("scale", 64.0)
    assert head.centres_per_class == options.get("centres", 1)
    assert head.class_centres().shape[0] == 8
    if loss == "adaface":
        # The two training steps moved the norm statistics from their start.
        assert float(keras.ops.convert_to_numpy(head.batch_std)) < 100.0

    rng = np.random.default_rng(0)
    images = rng.normal(size=(6, 32, 32, 1)).astype("float32")
    labels = np.array([0, 1, 2, 7, 7, 3], dtype="int32")
    projection = keras.Model(model.get_layer("image").output,
                             model.get_layer("embedding").output).predict(images, verbose=0)
    logits = model.predict({"image": images, "label": labels}, verbose=0)
    np.testing.assert_allclose(logits, _reference(head, projection, labels),
                               rtol=1e-4, atol=1e-4 * head.scale)

    embedding = keras.saving.load_model(tmp_path / "r" / "embedding.keras")
    assert not any(isinstance(layer, HEAD_TYPES) for layer in embedding.layers)
    assert len(embedding.inputs) == 1
    weighted = [layer for layer in embedding.layers if layer.weights]
    assert weighted
    for layer in weighted:
        for saved, trained in zip(layer.weights, model.get_layer(layer.name).weights,
                                  strict=True):
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(saved),
                                          keras.ops.convert_to_numpy(trained))


def test_triplet_weight_adds_the_semihard_term(tmp_path, orl_dir):
    train_facenet(orl_dir, identities=_people(orl_dir), loss="cosface", triplet_weight=0.5,
                  output_dir=tmp_path, run="c", **SMALL)
    (row,) = _history(tmp_path / "c")
    total, logits, triplet = (float(row[k]) for k in ("loss", "logits_loss", "embedding_loss"))
    assert triplet > 0
    assert total == pytest.approx(logits + 0.5 * triplet, rel=1e-5)
    model = keras.saving.load_model(tmp_path / "c" / "model.keras")
    assert type(model.loss["embedding"]).__name__ == "TripletSemiHardLoss"
    assert model.loss["embedding"].margin == 0.5
    images = np.random.default_rng(1).normal(size=(3, 32, 32, 1)).astype("float32")
    out = model.predict({"image": images, "label": np.zeros(3, "int32")}, verbose=0)
    np.testing.assert_allclose(np.linalg.norm(out["embedding"], axis=1), 1.0, rtol=1e-5)


def test_interrupted_head_run_resumes_with_its_head(tmp_path, orl_dir):
    kwargs = dict(SMALL, identities=_people(orl_dir), loss="adaface", epochs=2,
                  output_dir=tmp_path, run="a")
    with pytest.raises(RuntimeError, match="simulated"):
        train_facenet(orl_dir, callbacks=[Interrupt()], **kwargs)
    counter = CountEpochs()
    train_facenet(orl_dir, resume=True, callbacks=[counter], **kwargs)
    assert counter.epochs == [1]
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert (config["status"], config["resumed_from_epoch"]) == ("finished", 1)
    # The checkpoint (network, head and optimizer) was restored: the optimizer
    # went on to 2 epochs x 2 steps.
    model = keras.saving.load_model(tmp_path / "a" / "model.keras")
    assert isinstance(model.get_layer("adaface"), heads.AdaFace)
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 4


@pytest.mark.parametrize("kwargs, match", [
    ({"loss": "semihard", "triplet_weight": 0.5},
     r"triplet_weight adds.*Received: triplet_weight=0.5 with loss='semihard'"),
    ({"loss": "arcface", "triplet_weight": -1.0}, r"triplet_weight.*-1.0"),
    ({"loss": "arcface", "loss_options": {"margin": 0.3}}, r"head's margin"),
    ({"loss": "cosface", "loss_options": {"h": 0.3}}, r"'h' is not an option.*it takes scale"),
    ({"loss": "cosface", "loss_options": {"scale": 0.0}}, r"scale.*0.0"),
    ({"loss": "adaface", "loss_options": {"t_alpha": 2.0}}, r"t_alpha.*2.0"),
    ({"loss": "arcfaces"}, r"loss.*'arcfaces'"),
])
def test_bad_head_arguments_name_the_value_before_any_run_folder(tmp_path, orl_dir, kwargs,
                                                                   match):
    with pytest.raises(ValueError, match=match):
        train_facenet(orl_dir, output_dir=tmp_path, run="bad", fast=True, **kwargs)
    assert not (tmp_path / "bad").exists()


def test_cli_head_flags_reach_the_trainer(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(fsl.training, "train_facenet",
                        lambda data, **kwargs: seen.update(kwargs) or {"ok": True})
    assert cli.main(["train", "facenet", "--data", str(tmp_path), "--loss", "adaface",
                     "--triplet-weight", "0.25", "--loss-option", "h=0.5"]) == 0
    assert (seen["loss"], seen["triplet_weight"], seen["loss_options"]) == (
        "adaface", 0.25, {"h": 0.5})
    # Not given: the trainer's default (the head's paper margin) applies.
    assert "margin" not in seen
    assert cli.main(["train", "facenet", "--data", str(tmp_path), "--triplet-weight", "-1"]) == 2
