"""Draw a digit in the browser and watch a model read it.

    digits-zoo demo [--host 127.0.0.1] [--port 7860] [--checkpoint PATH ...] [--model NAME]

Serves one page (`demo.html`) over FastAPI: a canvas to draw on with mouse, pen or finger, the
model's reading with all ten probabilities, and the 28x28 picture the model saw. The page posts
the canvas as a PNG; it goes through the same preparation and model code as
`digits-zoo predict`. Needs the demo extra: pip install -e ".[demo]".
"""

import argparse
import base64
import io
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from digits_zoo import arguments
from digits_zoo.data.preprocess import WORK_PIXELS, ImageError, prepare_image, to_tensor
from digits_zoo.errors import DigitsZooError, one_line
from digits_zoo.models.pretrained import DEFAULT_MODEL, manifest
from digits_zoo.predict import Trained, load_trained
from digits_zoo.training.stops import Terminated, sigterm_raises

PAGE = Path(__file__).with_name("demo.html")
MAX_BODY = 1_000_000  # bytes: a canvas PNG is a few kB
# A PNG of a few kB can unpack to a huge picture: at most this many pixels are decoded. The canvas
# has 280x280, and every JPEG fits (decoded at a fraction of its size: see preprocess.WORK_PIXELS).
MAX_PIXELS = 4 * WORK_PIXELS
BODY_SECONDS = 10.0  # to send the body: a client that sends less than it declared is cut off (408)
# Pictures read at once; other requests wait their turn. With the body and pixel limits, this bounds
# the server's memory (docs/predict.md measures it under load).
MAX_READINGS = 2
MAX_CONNECTIONS = 64  # open connections and requests; uvicorn answers 503 to more
INSTALL_EXTRA = "install the demo extra: pip install -e '.[demo]'"


class DemoError(DigitsZooError):
    """The demo cannot start; the message says why."""


@dataclass
class Choice:
    """A model the page offers: the trained network and how the menu names it."""

    label: str
    trained: Trained


def shipped_models() -> dict[str, Choice]:
    """Every model whose trained weights ship with digits_zoo, by name."""
    return {
        name: Choice(f"{name} ({100 * entry['test_acc']:.2f}% on {entry['dataset']} test)", load_trained(name))
        for name, entry in manifest().items()
    }


def checkpoint_models(sources: list[str]) -> dict[str, Choice]:
    """The models of checkpoints or run folders, by the path given."""
    choices = {}
    for source in sources:
        trained = load_trained(source)
        of = "" if trained.dataset == "MNIST" else f", {trained.dataset}"  # a model that reads no digits says so
        choices[source] = Choice(f"{source} (checkpoint{of})", trained)
    return choices


def read_drawing(trained: Trained, picture: bytes) -> dict:
    """The model's reading of an encoded picture: the class (index as `digit`, its name as `class`,
    what the page shows as `label`), all probabilities, and the 28x28 it saw."""
    digit = prepare_image(picture, max_pixels=MAX_PIXELS)
    scores = trained.probabilities(to_tensor([digit]))[0]
    top = int(scores.argmax())
    return {
        "digit": top,
        "class": trained.classes[top],
        "label": trained.label(top),
        "probabilities": [round(float(p), 4) for p in scores],
        "activation": trained.network.output_activation,
        "input": png_data_url(digit),
    }


def png_data_url(digit) -> str:
    buffer = io.BytesIO()
    Image.fromarray(digit).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def create_app(choices: dict[str, Choice], default: str, body_seconds: float = BODY_SECONDS):
    """The FastAPI app: the page, the menu of models, and readings of posted drawings (at most
    MAX_READINGS at once; a body must arrive within `body_seconds`)."""
    import anyio
    import anyio.to_thread
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.responses import HTMLResponse

    # No /docs: its page would load scripts from the internet.
    app = FastAPI(title="digits_zoo demo", docs_url=None, redoc_url=None, openapi_url=None)
    page = PAGE.read_text(encoding="utf-8")
    readers = anyio.CapacityLimiter(MAX_READINGS)

    async def read_body(request: Request) -> bytes:
        """The request body, refused (413) as soon as it passes MAX_BODY, or (408) if it has not
        arrived within `body_seconds` (uvicorn bounds the wait between requests, not within one)."""
        too_large = HTTPException(413, f"request body over {MAX_BODY:,} bytes: send one PNG of the drawing")
        declared = request.headers.get("content-length", "0")
        if not declared.isdigit():
            raise HTTPException(400, f"bad Content-Length header: {declared!r}")
        if int(declared) > MAX_BODY:
            raise too_large
        body = bytearray()
        try:
            with anyio.fail_after(body_seconds):
                async for chunk in request.stream():  # also bounds a body sent without a length
                    body += chunk
                    if len(body) > MAX_BODY:
                        raise too_large
        except TimeoutError:
            of = f" of {int(declared):,}" if "content-length" in request.headers else ""
            raise HTTPException(
                408, f"the request body did not arrive within {body_seconds:g} s ({len(body):,}{of} bytes came)"
            ) from None
        return bytes(body)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/api/models")
    def models() -> dict:
        return {
            "default": default,
            "models": [{"id": key, "label": choice.label} for key, choice in choices.items()],
        }

    @app.post("/api/predict")
    async def predict(request: Request, model: str = default) -> dict:
        if model not in choices:
            raise HTTPException(404, f"unknown model {model!r}; choose one of: {', '.join(choices)}")
        picture = await read_body(request)
        try:  # the model runs in a worker thread, so the server stays responsive
            return await anyio.to_thread.run_sync(read_drawing, choices[model].trained, picture, limiter=readers)
        except ImageError as error:
            raise HTTPException(400, f"cannot read the drawing: {error}") from None

    return app


def require_extra() -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as error:
        raise DemoError(f"the demo needs {error.name or 'fastapi and uvicorn'}: {INSTALL_EXTRA}") from None


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, so that a taken port is one clear error before serving."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart at once after Ctrl+C
        sock.bind((host, port))
        sock.listen()
        return sock
    except OSError as error:
        sock.close()
        raise DemoError(
            f"cannot listen on {host}:{port} ({error.strerror or one_line(error)}); "
            "choose another with --port (or --host)"
        ) from None


def server(app):
    """The uvicorn server of `app`, answering 503 beyond MAX_CONNECTIONS."""
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, log_level="warning", limit_concurrency=MAX_CONNECTIONS))


def serve(app, sock: socket.socket) -> None:
    """Serve `app` on `sock` until Ctrl+C or SIGTERM: uvicorn shuts down gracefully, then raises the
    signal again (KeyboardInterrupt, or `Terminated` under `sigterm_raises`)."""
    server(app).run(sockets=[sock])


def main(argv: list[str] | None = None) -> int:
    return run(arguments.demo().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    try:
        with sigterm_raises():
            return serve_pages(args)
    except KeyboardInterrupt:  # at any moment: while the models load, or after uvicorn's graceful shutdown
        print("stopped: SIGINT (Ctrl+C); the demo is closed", file=sys.stderr)
        return 128 + signal.SIGINT
    except Terminated:
        print("stopped: SIGTERM; the demo is closed", file=sys.stderr)
        return 128 + signal.SIGTERM


def serve_pages(args: argparse.Namespace) -> int:
    try:
        require_extra()
        choices = shipped_models() | checkpoint_models(args.checkpoint)
        default = args.model or (args.checkpoint[0] if args.checkpoint else DEFAULT_MODEL)
        if default not in choices:
            raise DemoError(f"--model {default!r} is not offered; choose one of: {', '.join(choices)}")
        app = create_app(choices, default)
        sock = listen(args.host, args.port)
    except (DigitsZooError, OSError) as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 1
    host, port = sock.getsockname()[:2]
    address = f"[{host}]" if ":" in host else host
    print(f"digits_zoo demo: open http://{address}:{port}/ in a browser (Ctrl+C stops it)", flush=True)
    serve(app, sock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
