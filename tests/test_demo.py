"""`python -m digits_zoo.demo`: the server's answers, its limits, and the command's errors.

The page itself is driven in a real browser by tests/test_demo_browser.py.
"""

from __future__ import annotations

import base64
import io
import json
import math
import socket
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw

pytest.importorskip("fastapi", reason="the demo extra is not installed: pip install -e '.[demo]'")
pytest.importorskip("httpx2", reason="FastAPI's TestClient needs httpx2: pip install -e '.[dev]'")
from fastapi.testclient import TestClient  # noqa: E402

from digits_zoo.demo import MAX_BODY, checkpoint_models, create_app, main, read_drawing, shipped_models  # noqa: E402
from digits_zoo.predict import main as predict_main  # noqa: E402
from digits_zoo.weights import manifest  # noqa: E402
from tests.conftest import ROOT  # noqa: E402
from tests.test_evaluate import fashion_run  # noqa: E402, F401  (a fixture)
from tests.test_predict import save_checkpoint  # noqa: E402

SEVEN = [[(60, 50), (220, 50), (110, 240)]]
ZERO = [[(140 + 70 * math.sin(2 * math.pi * i / 24), 140 - 95 * math.cos(2 * math.pi * i / 24)) for i in range(25)]]


def canvas_png(strokes=(), size=(280, 280)) -> bytes:
    """What the page sends: dark strokes on a white canvas, as a PNG."""
    image = Image.new("RGBA", size, "white")
    for stroke in strokes:
        ImageDraw.Draw(image).line(stroke, fill=(17, 17, 17, 255), width=24, joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def decode_data_url(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as image:
        return np.asarray(image)


@pytest.fixture(scope="module")
def checkpoint(tiny_data, tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("demo_model") / "model.ckpt", tiny_data)


@pytest.fixture(scope="module")
def client(checkpoint):
    app = create_app(shipped_models() | checkpoint_models([str(checkpoint)]), default="lenet5")
    with TestClient(app) as client:
        yield client


def test_the_page_is_served_and_fetches_nothing_from_the_internet(client):
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    assert '<canvas id="pad"' in page and "touch-action: none" in page and "pointerdown" in page
    assert "://" not in page  # no script, style, font or icon from elsewhere
    assert client.get("/docs").status_code == 404  # FastAPI's docs page would load scripts from a CDN


def test_the_menu_offers_every_shipped_model_and_the_checkpoints(client, checkpoint):
    menu = client.get("/api/models").json()
    assert menu["default"] == "lenet5"
    ids = [model["id"] for model in menu["models"]]
    assert ids == [*sorted(manifest()), str(checkpoint)]
    accuracy = 100 * manifest()["vgg_bn"]["test_acc"]  # as measured when the weights were made
    assert menu["models"][ids.index("vgg_bn")]["label"] == f"vgg_bn ({accuracy:.2f}% on MNIST test)"


@pytest.mark.parametrize("model", ["lenet5", "checkpoint"])
def test_a_drawing_is_read_exactly_as_the_predict_command_reads_it(client, checkpoint, model, tmp_path, capsys):
    source = str(checkpoint) if model == "checkpoint" else model
    files = []
    for name, strokes in (("seven", SEVEN), ("zero", ZERO)):
        files.append(tmp_path / f"{name}.png")
        files[-1].write_bytes(canvas_png(strokes))
    assert predict_main([*map(str, files), "--model", source, "--json", "--save-input", str(tmp_path / "seen")]) == 0
    expected = json.loads(capsys.readouterr().out)

    for file, command in zip(files, expected):
        response = client.post("/api/predict", params={"model": source}, content=file.read_bytes(),
                               headers={"content-type": "image/png"})
        assert response.status_code == 200, response.text
        reading = response.json()
        assert reading["digit"] == command["digit"] and reading["activation"] == command["activation"]
        assert reading["class"] == command["class"] and reading["label"] == str(command["digit"])  # a digit reads as itself
        assert len(reading["probabilities"]) == 10
        assert max(reading["probabilities"]) == pytest.approx(command["probability"], abs=1e-4)
        for top in command["top3"]:
            assert reading["probabilities"][top["digit"]] == pytest.approx(top["probability"], abs=1e-4)
        with Image.open(tmp_path / "seen" / f"{file.stem}.28x28.png") as seen:
            assert np.array_equal(decode_data_url(reading["input"]), np.asarray(seen))
    if model == "lenet5":  # a trained model reads them right; the checkpoint saw one training step
        assert [command["digit"] for command in expected] == [7, 0]


def test_a_clothing_model_is_offered_and_read_with_its_class_names(fashion_run):
    import torchvision

    run = str(fashion_run[0])
    choice = checkpoint_models([run])[run]
    assert choice.label == f"{run} (checkpoint, FashionMNIST)"
    reading = read_drawing(choice.trained, canvas_png(SEVEN))
    assert reading["label"] == reading["class"] == torchvision.datasets.FashionMNIST.classes[reading["digit"]]


def _chunks(size: int):
    for _ in range(size // 65536 + 1):
        yield b"\0" * 65536


def _huge_blank_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (5000, 4000), 255).save(buffer, format="PNG")  # 20 Mpixels in a few kB
    return buffer.getvalue()


SEVEN_PNG = canvas_png(SEVEN)
BAD_REQUESTS = {
    "not an image": (dict(content=b"hello"), 400, "not an image"),
    "empty body": (dict(content=b""), 400, "empty image"),
    "blank canvas": (dict(content=canvas_png()), 400, "no digit found"),
    "truncated PNG": (dict(content=SEVEN_PNG[: len(SEVEN_PNG) // 2]), 400, "truncated or corrupt"),
    "too many pixels": (dict(content=_huge_blank_png()), 400, "too large"),
    "unknown model": (dict(content=SEVEN_PNG, params={"model": "resnet"}), 404, "unknown model 'resnet'; choose one of: "),
    "body over the limit": (dict(content=b"\0" * (MAX_BODY + 1)), 413, "request body over"),
    "streamed body over the limit": (dict(content=_chunks(MAX_BODY)), 413, "request body over"),
    "bad length header": (dict(content=b"x", headers={"content-length": "abc"}), 400, "bad Content-Length"),
}


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_a_bad_request_gets_a_clear_error_and_the_server_keeps_serving(client, case):
    request, status, message = BAD_REQUESTS[case]
    response = client.post("/api/predict", **request)
    assert response.status_code == status
    assert message in response.json()["detail"]
    assert client.post("/api/predict", content=SEVEN_PNG).json()["digit"] == 7


# ---------------------------------------------------------------- the command


def test_a_bad_checkpoint_is_one_line_and_exit_code_1(tmp_path):
    result = subprocess.run([sys.executable, "-m", "digits_zoo.demo", "--checkpoint", str(tmp_path / "missing.ckpt")],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip() == f"error: {tmp_path / 'missing.ckpt'}: no such checkpoint file or run folder"


def test_without_the_demo_extra_it_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if fastapi were not installed
    assert main([]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line == "error: the demo needs fastapi: install the demo extra: pip install -e '.[demo]'"


def test_an_unknown_start_model_or_a_taken_port_is_one_line(capsys):
    assert main(["--model", "resnet"]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: --model 'resnet' is not offered; choose one of: flatten_mlp, ")

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["--port", str(port)]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line == f"error: cannot listen on 127.0.0.1:{port} (Address already in use); choose another with --port (or --host)"
