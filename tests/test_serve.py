"""fsl serve: the JSON API through FastAPI's test client, and the page in a real
headless Chromium.

The model is a fast face run on ORL; each answer is checked against the same
search done directly (``FacePipeline`` + ``fsl.index.Gallery``), and a photo
enrolled in the gallery must find itself first, at distance 0.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import threading
import time

import numpy as np
import pytest
from PIL import Image

fastapi = pytest.importorskip("fastapi", reason="fsl serve needs the [serve] extra")
from fastapi.testclient import TestClient  # noqa: E402

from fsl.index import ModelMismatchError  # noqa: E402
from fsl.serve import create_app  # noqa: E402

PEOPLE = ["s01", "s02", "s03", "s04"]


@pytest.fixture(scope="module")
def run(orl_dir, tmp_path_factory):
    from fsl.training import train_facenet

    out = tmp_path_factory.mktemp("serve_runs")
    train_facenet(orl_dir, fast=True, output_dir=out, run="faces", verbose=0, image_size=48)
    return out / "faces"


@pytest.fixture()
def client(run, tmp_path):
    app = create_app(run, tmp_path / "gallery.sqlite")
    with TestClient(app) as client:
        yield client


def _png(path) -> bytes:
    return path.read_bytes()


def _enrol(client, orl_dir, people=PEOPLE, photos=("01", "02", "03"), headers=None):
    ids = {}
    for person in people:
        for photo in photos:
            path = orl_dir / person / f"{photo}.png"
            answer = client.post("/api/enrol", data={"name": person}, headers=headers or {},
                                 files={"photo": (path.name, _png(path), "image/png")})
            assert answer.status_code == 200, answer.text
            ids[(person, photo)] = answer.json()["item_id"]
    return ids


def test_enrol_search_and_the_direct_computation_agree(client, run, orl_dir):
    from fsl.evaluation import pair_distances
    from fsl.faces.pipeline import FacePipeline

    ids = _enrol(client, orl_dir)
    assert client.get("/api/people").json() == {p: 3 for p in PEOPLE}
    # An enrolled photo finds itself first, at distance 0, and is known.
    path = orl_dir / "s02" / "02.png"
    found = client.post("/api/search", data={"k": "3"},
                        files={"photo": ("q.png", _png(path), "image/png")}).json()
    assert found["matches"][0]["item_id"] == ids[("s02", "02")]
    assert found["matches"][0]["distance"] == pytest.approx(0.0, abs=1e-5)
    assert found["person"] == "s02" and len(found["matches"]) == 3 and found["in_domain"]
    # Another photo: the same ranking and decision as a direct search.
    pipeline = FacePipeline.from_run(run)
    query = orl_dir / "s03" / "07.png"
    got = client.post("/api/search", data={"k": "12"},
                      files={"photo": ("q.png", _png(query), "image/png")}).json()
    gallery = {key: pipeline.embed(orl_dir / key[0] / f"{key[1]}.png") for key in ids}
    want = sorted((float(pair_distances(pipeline.embed(query)[None], e[None])[0]), ids[key])
                  for key, e in gallery.items())
    assert [m["item_id"] for m in got["matches"]] == [i for _, i in want]
    np.testing.assert_allclose([m["distance"] for m in got["matches"]], [d for d, _ in want],
                               atol=1e-4)
    threshold = client.get("/api/health").json()["threshold"]
    nearest = got["matches"][0]
    assert got["person"] == (nearest["person"] if nearest["distance"] <= threshold else None)
    assert {"x", "y"} <= set(got["map"])
    points = client.get("/api/map").json()["points"]
    assert len(points) == 12 and {p["person"] for p in points} == set(PEOPLE)
    thumb = client.get(f"/api/items/{ids[('s01', '01')]}/thumbnail")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.content)).size[0] <= 112


def test_delete_restart_and_another_model(client, run, orl_dir, tmp_path):
    ids = _enrol(client, orl_dir, people=["s01", "s02"], photos=("01", "02"))
    assert client.delete(f"/api/items/{ids[('s01', '01')]}").json() == {"deleted": 1}
    assert client.delete("/api/people/s02").json() == {"deleted": 2}
    assert client.delete("/api/people/s02").status_code == 404
    assert client.get("/api/people").json() == {"s01": 1}
    # A new server on the same file has the same gallery.
    with TestClient(create_app(run, tmp_path / "gallery.sqlite")) as again:
        assert again.get("/api/people").json() == {"s01": 1}
    # Another model is refused, naming both.
    from fsl.training import train_facenet

    train_facenet(orl_dir, fast=True, output_dir=tmp_path, run="other", verbose=0,
                  image_size=40, seed=1)
    with pytest.raises(ModelMismatchError, match="built with model 'faces'.*not with 'other'"):
        create_app(tmp_path / "other", tmp_path / "gallery.sqlite")


def _bomb(side: int) -> bytes:
    out = io.BytesIO()
    Image.new("1", (side, side)).save(out, format="PNG")  # side^2 pixels in a few kB
    return out.getvalue()


@pytest.mark.parametrize("upload, status, detail", [
    (b"not an image at all", 400, "is not an image"),
    (b"", 400, "is empty"),
    ("bomb", 413, "decodes to too many pixels"),  # Pillow's own limit, 179 M pixels
    ("large", 413, "8000 x 8000 pixels; the limit is 40,000,000"),  # fsl's, 40 M
    ("big", 413, "the limit is 1,000"),
])
def test_bad_uploads_are_4xx_and_store_nothing(run, tmp_path, orl_dir, upload, status, detail):
    app = create_app(run, tmp_path / "g.sqlite", max_upload_bytes=1000 if upload == "big"
                     else 10 * 1024 * 1024)
    data = {"bomb": lambda: _bomb(20_000), "large": lambda: _bomb(8_000),
            "big": lambda: _png(orl_dir / "s01" / "01.png")}.get(
        upload, lambda: upload)()
    with TestClient(app) as client:
        for url, form in (("/api/enrol", {"name": "x"}), ("/api/search", {})):
            answer = client.post(url, data=form, files={"photo": ("f.png", data, "image/png")})
            assert answer.status_code == status, answer.text
            assert detail in answer.json()["detail"]
        assert client.get("/api/people").json() == {}
        assert client.get("/api/health").status_code == 200  # still serving


@pytest.mark.parametrize("name", ["../etc", "a/b", "tab\there", "x" * 101, " "])
def test_bad_names_are_400_and_store_nothing(client, orl_dir, name):
    path = orl_dir / "s01" / "01.png"
    answer = client.post("/api/enrol", data={"name": name},
                         files={"photo": ("f.png", _png(path), "image/png")})
    assert answer.status_code in (400, 422) and "name" in answer.text
    assert client.get("/api/people").json() == {}


def test_no_face_is_422(run, tmp_path):
    with TestClient(create_app(run, tmp_path / "g.sqlite", detect_faces=True)) as client:
        blank = io.BytesIO()
        Image.new("RGB", (120, 120), (90, 90, 90)).save(blank, format="PNG")
        answer = client.post("/api/search", files={"photo": ("b.png", blank.getvalue(),
                                                             "image/png")})
        assert answer.status_code == 422 and "No face" in answer.json()["detail"]


def test_writes_need_the_token(run, tmp_path, orl_dir):
    with TestClient(create_app(run, tmp_path / "g.sqlite", token="s3cret")) as client:
        path = orl_dir / "s01" / "01.png"
        files = {"photo": ("f.png", _png(path), "image/png")}
        assert client.post("/api/enrol", data={"name": "a"}, files=files).status_code == 401
        assert client.post("/api/enrol", data={"name": "a"}, files=files,
                           headers={"X-FSL-Token": "wrong"}).status_code == 401
        ok = client.post("/api/enrol", data={"name": "a"}, files=files,
                         headers={"X-FSL-Token": "s3cret"})
        assert ok.status_code == 200
        assert client.delete(f"/api/items/{ok.json()['item_id']}").status_code == 401
        assert client.post("/api/search", files=files).status_code == 200  # reads are open


def test_calibrate_chooses_the_gallery_threshold_over_http(run, orl_dir, tmp_path):
    from fsl.index.calibration import rehearse

    headers = {"X-FSL-Token": "t"}
    with TestClient(create_app(run, tmp_path / "g.sqlite", token="t")) as client:
        _enrol(client, orl_dir, people=["s01"], headers=headers)
        one = client.post("/api/calibrate", headers=headers)
        assert one.status_code == 400 and "Received: 1 person" in one.json()["detail"]
        _enrol(client, orl_dir, people=PEOPLE[1:], headers=headers)
        assert client.post("/api/calibrate").status_code == 401  # a write: the token
        run_threshold = client.get("/api/health").json()["threshold"]
        report = client.post("/api/calibrate", headers=headers).json()
        # The same rehearsal, computed directly on the gallery's embeddings.
        _, vectors, people = client.app.state.engine.gallery.embeddings()
        want = rehearse(vectors, people, "L2", threshold=run_threshold)
        assert report["threshold"] == pytest.approx(want["threshold"])
        assert report["at_threshold"] == pytest.approx(want["at_threshold"])
        health = client.get("/api/health").json()
        assert (health["threshold"], health["threshold_source"]) == (report["threshold"],
                                                                      "gallery")
        bad = client.post("/api/calibrate", data={"far_target": "2"}, headers=headers)
        assert bad.status_code == 400 and "far_target=2.0" in bad.json()["detail"]
        assert client.get("/api/health").json()["threshold"] == report["threshold"]
        strict = client.post("/api/calibrate", data={"far_target": "0"}, headers=headers).json()
        assert strict["false_accept_rate"] == 0.0
        assert client.delete("/api/calibrate", headers=headers).json() == {
            "threshold": run_threshold, "threshold_source": "run"}


def test_concurrent_enrolments_all_land(client, orl_dir):
    errors = []

    def enrol(person):
        for photo in ("01", "02", "03"):
            path = orl_dir / person / f"{photo}.png"
            answer = client.post("/api/enrol", data={"name": person},
                                 files={"photo": ("same-name.png", _png(path), "image/png")})
            if answer.status_code != 200:
                errors.append(answer.text)

    threads = [threading.Thread(target=enrol, args=(p,)) for p in PEOPLE]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and client.get("/api/people").json() == {p: 3 for p in PEOPLE}


def test_the_page_and_the_openapi_docs_ship_offline(client):
    page = client.get("/")
    assert page.status_code == 200 and "fsl search" in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        body = client.get(asset)
        assert body.status_code == 200
        assert "http://" not in body.text and "https://" not in body.text  # no CDN
    assert "http" not in page.text.replace("http-equiv", "")
    spec = client.get("/api/openapi.json").json()
    assert {"/api/search", "/api/enrol", "/api/map", "/api/people"} <= set(spec["paths"])
    assert client.get("/docs").status_code == 200


# === A real browser ===


def _chromium():
    for browser in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(browser)
        if found:
            return found, shutil.which("chromedriver")
    return None, None


def test_the_page_in_headless_chromium(run, orl_dir, tmp_path):
    browser, driver = _chromium()
    if not (browser and driver):
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but chromium or chromedriver is missing (.ci/run installs them)")
        pytest.skip("needs Debian's chromium and chromium-driver (apt install chromium "
                    "chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium ([dev])")
    import uvicorn

    app = create_app(run, tmp_path / "g.sqlite")
    with TestClient(app) as client:
        _enrol(client, orl_dir, photos=("01", "02"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--window-size=1100,900"):
        options.add_argument(flag)
    chrome = webdriver.Chrome(service=webdriver.ChromeService(driver), options=options)
    try:
        for _ in range(100):
            if server.started:
                break
            time.sleep(0.1)
        chrome.get(f"http://127.0.0.1:{port}/")
        chrome.find_element("id", "search-photo").send_keys(str(orl_dir / "s03" / "02.png"))
        decision = chrome.find_element("id", "decision")
        for _ in range(200):
            if "s03" in decision.text or "unknown" in decision.text:
                break
            time.sleep(0.1)
        assert decision.text.startswith("s03"), decision.text  # itself, first, known
        cards = chrome.find_elements("css selector", "#results li")
        assert cards and cards[0].text.startswith("s03")
        shot = tmp_path / "search.png"
        chrome.save_screenshot(str(shot))
        pixels = np.asarray(Image.open(shot).convert("L"), float)
        assert pixels.std() > 10  # not a blank page
        # The thumbnail of the first match loaded in the browser.
        loaded = chrome.execute_script(
            "const i = document.querySelector('#results img'); return i.complete && i.naturalWidth")
        assert loaded and loaded > 0
        if os.environ.get("FSL_SCREENSHOTS"):
            chrome.save_screenshot(os.path.join(os.environ["FSL_SCREENSHOTS"], "search.png"))
            chrome.find_element("css selector", "nav button[data-page=gallery]").click()
            time.sleep(1)
            chrome.save_screenshot(os.path.join(os.environ["FSL_SCREENSHOTS"], "gallery.png"))
            chrome.find_element("css selector", "nav button[data-page=map]").click()
            time.sleep(1)
            chrome.save_screenshot(os.path.join(os.environ["FSL_SCREENSHOTS"], "map.png"))
    finally:
        chrome.quit()
        server.should_exit = True
        thread.join(timeout=10)


def test_enrolling_a_folder_at_start_reports_progress_and_skips_bad_files(run, tmp_path,
                                                                          orl_dir, caplog,
                                                                          capsys):
    folder = tmp_path / "people"
    for person in ("s05", "s06"):
        (folder / person).mkdir(parents=True)
        for photo in ("01", "02"):
            shutil.copy(orl_dir / person / f"{photo}.png", folder / person / f"{photo}.png")
    (folder / "s06" / "broken.png").write_bytes(b"not a png")
    with caplog.at_level("WARNING", logger="fsl.serve.app"):
        app = create_app(run, tmp_path / "g.sqlite", gallery_dir=folder, calibrate=True)
    assert f"Skipping {folder / 's06' / 'broken.png'}" in caplog.text
    assert "Enrolled 4 of 5 photos" in caplog.text
    chosen = app.state.engine.gallery.threshold
    assert f"Gallery threshold {chosen:.4f} (run's" in capsys.readouterr().out
    with TestClient(app) as client:
        assert client.get("/api/people").json() == {"s05": 2, "s06": 2}
        assert client.get("/api/health").json()["threshold_source"] == "gallery"


def test_fsl_serve_argument_errors_are_one_line(tmp_path, capsys):
    from fsl import cli

    assert cli.main(["serve", "--model", str(tmp_path / "missing")]) == 2
    assert "model run folder not found" in capsys.readouterr().err
    assert cli.main(["serve"]) == 2
    assert "--model" in capsys.readouterr().err
    tmp_path.joinpath("run").mkdir()
    assert cli.main(["serve", "--model", str(tmp_path / "run"), "--far-target", "0.01"]) == 2
    assert "--far-target 0.01 without --calibrate" in capsys.readouterr().err


def test_an_approximate_gallery_keeps_its_graph_across_restarts(run, orl_dir, tmp_path):
    pytest.importorskip("usearch", reason="the approximate backend needs the [search] extra")
    db = tmp_path / "g.sqlite"
    with TestClient(create_app(run, db, backend="approximate")) as client:
        _enrol(client, orl_dir, people=("s01", "s02"), photos=("01", "02"))
    # The server's shutdown saved the gallery's graph beside its SQLite file.
    assert (tmp_path / "g.sqlite.hnsw").is_file()
    app = create_app(run, db, backend="approximate")
    with TestClient(app) as client:
        assert app.state.engine.gallery.backend_source == "saved graph"
        path = orl_dir / "s02" / "02.png"
        found = client.post("/api/search", files={"photo": ("q.png", _png(path), "image/png")})
        assert found.json()["person"] == "s02"
