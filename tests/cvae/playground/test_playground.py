"""`cvae playground`: the digit preparation, the JSON API against a real server, and the page in
a real headless Chromium (Debian's, driven by playwright-core from npm; `make test` installs
both)."""

from __future__ import annotations

import io
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from werkzeug.serving import make_server

from cvae.client import Client
from cvae.playground.app import create_app
from cvae.playground.digits import mnist_like, to_data_url
from tests.service.serverproc import ServerProcess

pytestmark = pytest.mark.timeout(300)
_ROOT = Path(__file__).resolve().parents[3]
_NODE_MODULES = _ROOT / ".venv" / "node" / "node_modules"


def _drawing(dark_on_light: bool = False, where: tuple[int, int] = (40, 40)) -> bytes:
    picture = Image.new("L", (280, 280), 255 if dark_on_light else 0)
    x, y = where
    ImageDraw.Draw(picture).line([(x, y), (x + 60, y + 120)], fill=0 if dark_on_light else 255,
                                 width=18)  # fmt: skip
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("dark_on_light", [False, True])
def test_a_drawing_becomes_an_mnist_like_digit(dark_on_light: bool) -> None:
    digit = mnist_like(_drawing(dark_on_light))
    assert digit.shape == (28, 28) and digit.dtype == np.uint8
    ink = np.argwhere(digit > 30)
    height, width = ink.max(axis=0) - ink.min(axis=0) + 1
    assert max(height, width) <= 21 and max(height, width) >= 18  # scaled into the 20 px box
    rows, cols = np.indices(digit.shape)
    mass = digit.astype(float).sum()
    assert abs((rows * digit).sum() / mass - 14) < 1.5  # centred by mass, like MNIST
    assert abs((cols * digit).sum() / mass - 14) < 1.5
    assert digit[0].max() == 0 and digit[:, 0].max() == 0  # the background stays dark
    assert not mnist_like(_blank()).any()


def _blank() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (50, 50), 0).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def playground(encoder_server: str) -> Iterator[str]:
    """The playground app on a free port, talking to the real server."""
    with Client(encoder_server) as client:
        http = make_server("127.0.0.1", 0, create_app(client), threaded=True)
        thread = threading.Thread(target=http.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{http.port}/"
        finally:
            http.shutdown()
            thread.join(10)


def test_the_api_restyles_a_digit_and_samples(encoder_server: str) -> None:
    with Client(encoder_server) as client:
        web = create_app(client).test_client()
        assert web.get("/api/info").get_json()["has_encoder"] is True
        answer = web.post("/api/digit", json={"image": to_data_url(mnist_like(_drawing()))})
        assert answer.status_code == 200, answer.get_json()
        body = answer.get_json()
        assert len(body["restyled"]) == 10 and len(body["probabilities"]) == 10
        assert sum(body["probabilities"]) == pytest.approx(1.0, abs=1e-4)
        assert body["predicted_label"] == int(np.argmax(body["log_likelihood"]))
        digit = mnist_like(_drawing())
        expected = client.restyle(digit[None], [body["predicted_label"]], range(10))
        assert body["restyled"][3] == to_data_url(expected.images[3])
        rows = web.post("/api/samples", json={"seed": 3, "temperature": 0.7, "per_label": 4})
        assert [len(row) for row in rows.get_json()["rows"]] == [4] * 10
        again = web.post("/api/samples", json={"seed": 3, "temperature": 0.7, "per_label": 4})
        assert again.get_json()["rows"] == rows.get_json()["rows"]
        assert (
            web.post("/api/digit", json={"image": "data:image/png;base64,AAAA"}).status_code == 400
        )
        refused = web.post("/api/samples", json={"seed": -1})
        assert refused.status_code == 400 and "seed" in refused.get_json()["error"]


def test_the_playground_tries_the_shipped_fast_model_by_name() -> None:
    """`cvae playground --model cvae-mnist-fast` on `make serve`'s repository: its Client names
    the model on every call."""
    shipped = Path(__file__).resolve().parents[3] / "models"
    with (
        ServerProcess(shipped, "--model-name", "cvae-mnist", metrics=False) as server,
        Client(server.address, model="cvae-mnist-fast") as client,
    ):
        web = create_app(client).test_client()
        info = web.get("/api/info").get_json()
        assert (info["name"], info["has_encoder"]) == ("cvae-mnist-fast", True)
        answer = web.post("/api/digit", json={"image": to_data_url(mnist_like(_drawing()))})
        assert answer.status_code == 200, answer.get_json()
        assert answer.get_json()["model_version"] == info["version"]
        rows = web.post("/api/samples", json={"seed": 3, "per_label": 2}).get_json()["rows"]
        assert [len(row) for row in rows] == [2] * 10


def test_the_page_works_in_headless_chromium(playground: str, tmp_path: Path) -> None:
    screenshot = tmp_path / "playground.png"
    script = Path(__file__).with_name("playground_browser.js")
    done = subprocess.run(
        ["node", str(script), playground, str(screenshot)],
        env={**os.environ, "NODE_PATH": str(_NODE_MODULES)},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"restyled":10' in done.stdout
    with Image.open(screenshot) as picture:
        assert picture.width == 1000 and picture.height >= 900
