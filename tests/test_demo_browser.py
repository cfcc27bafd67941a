"""The demo in a real browser: `python -m digits_zoo.demo` serves, headless Chromium opens the page,
draws digits on the canvas with real pointer events (a mouse, then a finger) and reads the answer.

Needs Debian's chromium (apt-get install --no-install-recommends chromium) and Playwright's Python
package, which drives it (no browser download); skips without them.
DIGITS_ZOO_DEMO_SCREENSHOT=docs/images/demo.png also saves the README's screenshot there.
"""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # the real demo command, driven in Chromium

CHROMIUM = Path("/usr/bin/chromium")
# Headless, offline: no sandbox (CI runs as root), no GPU, no calls home.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytest.importorskip("fastapi", reason="the demo extra is not installed: pip install -e '.[demo]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed: pip install -e '.[dev]'")
if not CHROMIUM.is_file():
    pytest.skip(f"no browser at {CHROMIUM}: apt-get install --no-install-recommends chromium", allow_module_level=True)

# In canvas pixels (the canvas is 280x280), one list of points per stroke.
SEVEN = [[(60, 50), (220, 50), (110, 240)]]
ZERO = [[(140 + 70 * math.sin(2 * math.pi * i / 24), 140 - 95 * math.cos(2 * math.pi * i / 24)) for i in range(25)]]
STEPS = 8  # pointer moves between two points of a stroke


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory):
    """The URL printed by the real command, serving on a free port with its default host."""
    log = tmp_path_factory.mktemp("demo") / "stderr.txt"
    with log.open("w") as stderr:
        server = subprocess.Popen(
            [sys.executable, "-m", "digits_zoo.demo", "--port", "0"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    deadline = threading.Timer(120, server.kill)  # a server that never says where it listens
    deadline.start()
    line = server.stdout.readline()
    deadline.cancel()
    if "open http://" not in line:
        server.kill()
        pytest.fail(f"the demo did not start: {line}{log.read_text()}")
    yield line.split("open ", 1)[1].split()[0]
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser, demo_url):
    """Open the demo in a fresh page; afterwards, check that it loaded nothing from elsewhere and
    raised no script error."""
    requested, errors, contexts = [], [], []

    def open_page(**context_options):
        context = browser.new_context(viewport={"width": 834, "height": 652}, **context_options)
        contexts.append(context)
        page = context.new_page()
        page.on("request", lambda request: requested.append(request.url))
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(demo_url)
        page.wait_for_selector("#model[data-ready]", state="attached")  # the menu of models is in
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert errors == []
    assert all(url.startswith((demo_url, "data:")) for url in requested), requested


def on_page(page, stroke) -> list[tuple[float, float]]:
    """Canvas pixels -> page coordinates, at whatever size the canvas is shown."""
    box = page.locator("#pad").bounding_box()
    scale = box["width"] / 280
    return [(box["x"] + x * scale, box["y"] + y * scale) for x, y in stroke]


def draw_with_mouse(page, strokes) -> None:
    for stroke in strokes:
        points = on_page(page, stroke)
        page.mouse.move(*points[0])
        page.mouse.down()
        for point in points[1:]:
            page.mouse.move(*point, steps=STEPS)
        page.mouse.up()


def draw_with_finger(page, strokes) -> None:
    """Touches as a touch screen sends them (Chromium turns them into pointer events)."""
    touch = page.context.new_cdp_session(page)
    for stroke in strokes:
        points = on_page(page, stroke)
        touch.send(
            "Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": points[0][0], "y": points[0][1]}]}
        )
        for (x0, y0), (x1, y1) in itertools.pairwise(points):
            for step in range(1, STEPS + 1):
                x, y = x0 + (x1 - x0) * step / STEPS, y0 + (y1 - y0) * step / STEPS
                touch.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
        touch.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


def reading(page) -> str:
    """The digit shown once the page has read the drawing as it is now."""
    page.wait_for_function(
        "document.querySelector('#reading').dataset.version === document.querySelector('#pad').dataset.version",
        timeout=30_000,
    )
    return page.inner_text("#digit")


def shown_probabilities(page) -> list[float]:
    return page.eval_on_selector_all(".fill", "bars => bars.map(bar => parseFloat(bar.style.height) / 100)")


def save_with_title(png: bytes, title: str, path: Path) -> None:
    import io

    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Title", title)
    Image.open(io.BytesIO(png)).save(path, pnginfo=info)


def test_the_demo_listens_on_this_machine_only_by_default(demo_url):
    assert demo_url.startswith("http://127.0.0.1:")


def test_digits_drawn_with_the_mouse_are_read(open_page, tmp_path):
    page = open_page()
    assert page.input_value("#model") == "robust_vgg"  # DEFAULT_MODEL

    draw_with_mouse(page, SEVEN)
    assert reading(page) == "7"
    probabilities = shown_probabilities(page)
    assert max(probabilities) == probabilities[7] > 0.5
    assert page.eval_on_selector("#seen", "image => [image.naturalWidth, image.naturalHeight]") == [28, 28]
    page.screenshot(path=tmp_path / "demo.png")
    if os.environ.get("DIGITS_ZOO_DEMO_SCREENSHOT"):  # with the model it shows as the PNG's Title (tests/test_docs.py)
        save_with_title(
            page.screenshot(),
            page.eval_on_selector("#model", "menu => menu.selectedOptions[0].text"),
            Path(os.environ["DIGITS_ZOO_DEMO_SCREENSHOT"]),
        )

    page.click("#clear")
    assert reading(page) == "\u2013" and max(shown_probabilities(page)) == 0
    assert page.eval_on_selector("#seen", "image => image.hasAttribute('src')") is False

    draw_with_mouse(page, ZERO)
    assert reading(page) == "0"

    # another model reads the same drawing again, and the page asks that model
    with page.expect_response(lambda response: "model=lenet5" in response.url) as answer:
        page.select_option("#model", "lenet5")
    assert answer.value.json()["digit"] == 0
    assert reading(page) == "0"


def test_a_digit_drawn_with_a_finger_is_read(open_page):
    page = open_page(has_touch=True)
    draw_with_finger(page, SEVEN)
    assert reading(page) == "7"
