"""fsl.data.lfw: LFW pair lists (View 2 and View 1), against hand-written fixtures.

``load_lfw_tfds`` (tensorflow-datasets, online) is not tested: the suite runs
offline and importing tensorflow-datasets alone costs several seconds.
"""

from __future__ import annotations

import logging
import pathlib

import numpy as np
import pytest
from PIL import Image

from fsl.data import lfw

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "lfw_pairs_2x2.txt"


def test_parse_view2_fixture():
    pairs = lfw.parse_pairs(FIXTURE)  # a Path
    assert len(pairs) == 8 and pairs.num_folds == 2
    np.testing.assert_array_equal(pairs.same, [1, 1, 0, 0, 1, 1, 0, 0])
    np.testing.assert_array_equal(pairs.fold, [0, 0, 0, 0, 1, 1, 1, 1])
    assert pairs.same.dtype == np.int32 and pairs.fold.dtype == np.int32
    assert pairs.path1[0] == "Abel_Pacheco/Abel_Pacheco_0001.jpg"
    assert pairs.path2[0] == "Abel_Pacheco/Abel_Pacheco_0004.jpg"
    assert pairs.path1[3] == "Abdul_Rahman/Abdul_Rahman_0001.jpg"
    assert pairs.path2[3] == "Portia_de_Rossi/Portia_de_Rossi_0012.jpg"
    assert pairs.path2[5] == "Ana_Palacio/Ana_Palacio_0011.jpg"
    np.testing.assert_array_equal(pairs.fold_indices(1), [4, 5, 6, 7])
    with pytest.raises(ValueError, match="fold"):
        pairs.fold_indices(2)


def test_parse_text_and_string_path_and_images_root(tmp_path):
    text = FIXTURE.read_text()
    from_text = lfw.parse_pairs(text, images_root=tmp_path)
    from_str_path = lfw.parse_pairs(str(FIXTURE), images_root=tmp_path)
    assert from_text.path1 == from_str_path.path1
    assert from_text.path2[2] == str(tmp_path / "Dean_Barker" / "Dean_Barker_0001.jpg")
    # missing_images lists what is not on disk
    person = tmp_path / "Zico"
    person.mkdir()
    for i in (2, 3):
        (person / f"Zico_{i:04d}.jpg").write_bytes(b"")
    missing = lfw.missing_images(from_text)
    assert str(person / "Zico_0002.jpg") not in missing
    assert len(missing) == 16 - 2


def test_parse_view1_single_count():
    text = "2\nA 1 2\nB 3 4\nA 1 C 2\nD 5 E 6\n"
    pairs = lfw.parse_pairs(text)
    assert pairs.num_folds == 1
    np.testing.assert_array_equal(pairs.same, [1, 1, 0, 0])
    np.testing.assert_array_equal(pairs.fold, [0, 0, 0, 0])
    assert pairs.path1[3] == "D/D_0005.jpg" and pairs.path2[3] == "E/E_0006.jpg"


@pytest.mark.parametrize(
    "text, match",
    [
        ("2 1\nA 1 2\nA 1 B x\nC 3 4\nC 1 D 2\n", "line 3"),  # non-integer index
        ("2 1\nA 1 2\nA 1 B 1\nC 3 4 5 6\nC 1 D 2\n", "line 4"),  # 5 fields
        ("2 1\nA 1 B 2\nA 1 2\nC 3 4\nC 1 D 2\n", "line 2"),  # different where same expected
        ("2 1\nA 1 2\nA 1 B 1\nC 0 4\nC 1 D 2\n", "line 4"),  # 0 is not 1-based
        ("2 1\nA 1 2\nA 1 B 1\nC 3 4\n", "announces 4"),  # missing line
        ("ten 300\nA 1 2\n", "line 1"),  # bad header
    ],
)
def test_malformed_lines_name_their_number(text, match):
    with pytest.raises(ValueError, match=match):
        lfw.parse_pairs(text)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        lfw.parse_pairs(str(tmp_path / "nope.txt"))


def _fake_lfw(root, pairs):
    """Writes a distinct grey level image for each path of the pairs."""
    paths, _, _ = lfw.unique_images(pairs)
    for level, path in enumerate(paths):
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((12, 10), 10 * level + 5, "uint8")).save(path, format="JPEG", quality=100)
    return paths


def test_unique_images_and_pairs_dataset(tmp_path, caplog):
    pairs = lfw.parse_pairs(FIXTURE, images_root=tmp_path)
    paths, index1, index2 = lfw.unique_images(pairs)
    assert len(paths) == len(set(paths)) == 16  # the fixture repeats no image
    shared = lfw.unique_images(lfw.parse_pairs("1 1\nA 1 2\nA 1 B 1\n"))
    assert shared[0] == ["A/A_0001.jpg", "A/A_0002.jpg", "B/B_0001.jpg"]
    np.testing.assert_array_equal(shared[1], [0, 0])
    np.testing.assert_array_equal(shared[2], [1, 2])
    assert [paths[i] for i in index1] == pairs.path1
    assert [paths[i] for i in index2] == pairs.path2
    _fake_lfw(tmp_path, pairs)
    broken = pathlib.Path(pairs.path2[6])  # fold 1, first different pair
    broken.write_bytes(b"not a jpeg")
    with caplog.at_level(logging.WARNING):
        ds = lfw.pairs_dataset(pairs, image_size=(6, 5), standardize=None, batch_size=4)
        batches = list(ds.as_numpy_iterator())
    assert str(broken) in caplog.text
    (first, second) = np.concatenate([b[0][0] for b in batches]), np.concatenate([b[0][1] for b in batches])
    same = np.concatenate([b[1] for b in batches])
    keep = [i for i in range(8) if i != 6]
    np.testing.assert_array_equal(same, pairs.same[keep])
    assert first.shape == (7, 6, 5, 1)
    levels1 = np.array([10 * index1[i] + 5 for i in keep], "float32")
    levels2 = np.array([10 * index2[i] + 5 for i in keep], "float32")
    np.testing.assert_allclose(first.mean(axis=(1, 2, 3)), levels1, atol=1.5)
    np.testing.assert_allclose(second.mean(axis=(1, 2, 3)), levels2, atol=1.5)
