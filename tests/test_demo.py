"""`python -m digits_zoo.demo`: the server's answers, its limits, and the command's errors.

The page itself is driven in a real browser by tests/test_demo_browser.py.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import math
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import pytest
from PIL import Image, ImageDraw

pytest.importorskip("fastapi", reason="the demo extra is not installed: pip install -e '.[demo]'")
pytest.importorskip("httpx2", reason="FastAPI's TestClient needs httpx2: pip install -e '.[dev]'")
from fastapi.testclient import TestClient

from digits_zoo import demo, list_pretrained
from digits_zoo.demo import (
    MAX_BODY,
    MAX_READINGS,
    Choice,
    checkpoint_models,
    create_app,
    listen,
    main,
    read_drawing,
    server,
    shipped_models,
)
from digits_zoo.models.pretrained import manifest
from digits_zoo.predict import load_trained
from digits_zoo.predict import main as predict_main
from tests.conftest import ROOT
from tests.test_predict import large_seven, save_checkpoint

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
        response = client.post(
            "/api/predict", params={"model": source}, content=file.read_bytes(), headers={"content-type": "image/png"}
        )
        assert response.status_code == 200, response.text
        reading = response.json()
        assert reading["digit"] == command["digit"] and reading["activation"] == command["activation"]
        assert reading["class"] == command["class"] and reading["label"] == str(
            command["digit"]
        )  # a digit reads as itself
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


def _blank_png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height), 255).save(buffer, format="PNG")  # megapixels in a few kB
    return buffer.getvalue()


def worst_case_pictures() -> dict[str, bytes]:
    """The pictures that cost the demo the most to read, each in a small body: the largest PNG it
    decodes (transparent, 2048x2048: 0.14 MB), and a JPEG with many pixels for MAX_BODY (7000x9000:
    0.8 MB; JPEGs decode at a fraction of their size)."""
    png, jpeg = io.BytesIO(), io.BytesIO()
    large_seven(2048, 2048).save(png, format="PNG")
    large_seven(7000, 9000, "L").save(jpeg, format="JPEG", quality=75)
    return {"png": png.getvalue(), "jpeg": jpeg.getvalue()}


SEVEN_PNG = canvas_png(SEVEN)
WORST_CASE = worst_case_pictures()
BAD_REQUESTS = {
    "not an image": (dict(content=b"hello"), 400, "not an image"),
    "empty body": (dict(content=b""), 400, "empty image"),
    "blank canvas": (dict(content=canvas_png()), 400, "no digit found"),
    "truncated PNG": (dict(content=SEVEN_PNG[: len(SEVEN_PNG) // 2]), 400, "truncated or corrupt"),
    "too many pixels": (
        dict(content=_blank_png(2049, 2048)),
        400,
        "too large: 2049x2048 pixels, at most 4,194,304 are read",
    ),
    "far too many pixels": (dict(content=_blank_png(5000, 4000)), 400, "too large: 5000x4000 pixels"),
    "unknown model": (
        dict(content=SEVEN_PNG, params={"model": "resnet"}),
        404,
        "unknown model 'resnet'; choose one of: ",
    ),
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


@pytest.mark.parametrize("kind", ["png", "jpeg"])
def test_the_costliest_pictures_accepted_are_read(client, kind):
    response = client.post("/api/predict", params={"model": "lenet5"}, content=WORST_CASE[kind])
    assert response.status_code == 200, response.text
    assert response.json()["digit"] == 7


# ---------------------------------------------------------------- the server under uvicorn


@pytest.fixture(scope="module")
def lenet5() -> dict[str, Choice]:
    return {"lenet5": Choice("lenet5", load_trained("lenet5"))}


@contextmanager
def serving(app):
    """`app` served by uvicorn as the command serves it, in a thread, on a free loopback port."""
    sock = listen("127.0.0.1", 0)
    uvicorn_server = server(app)
    thread = threading.Thread(target=uvicorn_server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        uvicorn_server.should_exit = True
        thread.join(timeout=60)


def post(port: int, body: bytes) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request("POST", "/api/predict", body=body, headers={"content-type": "image/png"})
        return connection.getresponse().status
    finally:
        connection.close()


def test_a_body_shorter_than_declared_is_answered_408_within_the_bound(lenet5):
    with serving(create_app(lenet5, "lenet5", body_seconds=0.5)) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as client:  # (before: no answer, ever)
            client.sendall(
                b"POST /api/predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/png\r\n"
                b"Content-Length: 1000\r\n\r\n" + SEVEN_PNG[:10]
            )
            answer = client.makefile("rb")
            status, *headers = iter(answer.readline, b"\r\n")
            length = next(int(line.split(b":")[1]) for line in headers if line.lower().startswith(b"content-length:"))
            detail = json.loads(answer.read(length))["detail"]
        assert status.startswith(b"HTTP/1.1 408 ")
        assert detail == "the request body did not arrive within 0.5 s (10 of 1,000 bytes came)"
        assert post(port, SEVEN_PNG) == 200  # and the server goes on serving


def test_at_most_max_readings_pictures_are_read_at_once_and_the_others_wait(lenet5, monkeypatch):
    reading = most = 0
    lock = threading.Lock()

    def slow_reading(trained, picture):
        nonlocal reading, most
        with lock:
            reading += 1
            most = max(most, reading)
        time.sleep(0.2)  # (long enough for all requests to arrive while the first are read)
        with lock:
            reading -= 1
        return {"digit": 7}

    monkeypatch.setattr(demo, "read_drawing", slow_reading)
    with serving(create_app(lenet5, "lenet5")) as port, ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: post(port, SEVEN_PNG), range(8)))
    assert statuses == [200] * 8
    assert most <= MAX_READINGS


# ---------------------------------------------------------------- the command


@pytest.mark.slow  # the real demo command
def test_a_bad_checkpoint_is_one_line_and_exit_code_1(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "digits_zoo.demo", "--checkpoint", str(tmp_path / "missing.ckpt")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip() == (
        f"error: {tmp_path / 'missing.ckpt'}: no such checkpoint file, run folder or shipped model; "
        f"shipped: {', '.join(list_pretrained())}"
    )


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
    assert (
        line
        == f"error: cannot listen on 127.0.0.1:{port} (Address already in use); choose another with --port (or --host)"
    )


@pytest.mark.slow  # the real demo command
@pytest.mark.parametrize(
    "signum, line",
    [
        (signal.SIGINT, "stopped: SIGINT (Ctrl+C); the demo is closed"),
        (signal.SIGTERM, "stopped: SIGTERM; the demo is closed"),
    ],
    ids=["SIGINT", "SIGTERM"],
)
def test_ctrl_c_or_sigterm_closes_the_demo_with_one_line(signum, line):
    # Ctrl+C as in a terminal: SIGINT raises KeyboardInterrupt (pytest may run with SIGINT ignored)
    process = subprocess.Popen(
        [sys.executable, "-m", "digits_zoo.demo", "--port", "0", "--model", "lenet5"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        address = re.search(r"http://\S+/", process.stdout.readline())[0]
        with urllib.request.urlopen(address + "api/models", timeout=60) as answer:  # it serves
            assert answer.status == 200
        process.send_signal(signum)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert (process.returncode, out, err) == (128 + signum, "", line + "\n")
