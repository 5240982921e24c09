"""What every browser test needs: the real app on 127.0.0.1, headless Chromium, drawing, screenshots.

A pytest plugin (``pytest_plugins`` in conftest.py), so any ``tests/test_browser*.py`` file
can use the fixtures ``app_url`` (``streamlit run app.py`` on a free localhost port, MNIST
from MNIST_DIR, an empty temporary models folder), ``browser_page`` (a desktop-sized page) and
``phone_page`` (390x844, touch), and the helpers ``draw`` (mouse), ``touch_draw`` (real touch
events), ``screenshot``, ``shown_prediction``, ``shown_answer``, ``ink_at``, ``watch_answers``
/ ``answer_delays`` (mouse-up to answer, timed in the page) and ``cpu_load``. Browser tests
never skip in CI (CI=true): a missing browser is a failure there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from app_server import CHROMIUM, CHROMIUM_ARGS, WATCH_ANSWERS_JS, start_app, stop_app, stroke_points
from conftest import MNIST_DIR

PROJECT_ROOT = Path(__file__).resolve().parents[1]

SCREENSHOTS = PROJECT_ROOT / "screenshots"

# Digits as pen strokes in canvas fractions (x, y): what a person would draw with a mouse.
ONE = [[(0.50, 0.15), (0.50, 0.85)]]
SEVEN = [[(0.27, 0.20), (0.73, 0.20), (0.62, 0.42), (0.45, 0.85)]]
ZERO = [[(0.5 + 0.22 * np.sin(t), 0.5 - 0.33 * np.cos(t)) for t in np.linspace(0, 2 * np.pi, 41)]]
DIGITS = {"1": ONE, "7": SEVEN, "0": ZERO}


def require_browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        reason = f"playwright is not installed ({e})"
    else:
        if Path(CHROMIUM).exists():
            return sync_playwright
        reason = f"no Chromium at {CHROMIUM}"
    if in_ci():
        pytest.fail(f"browser tests must run in CI: {reason}")
    pytest.skip(reason)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="module")
def mnist_for_app() -> Path:
    if not (MNIST_DIR / "t10k-labels-idx1-ubyte.gz").exists():
        if in_ci():
            pytest.fail(f"browser tests must run in CI: no MNIST files in {MNIST_DIR} (set MNIST_DIR)")
        pytest.skip(f"needs the MNIST files in {MNIST_DIR} (set MNIST_DIR)")
    return MNIST_DIR


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, mnist_for_app):
    """A running ``streamlit run app.py`` on 127.0.0.1; stopped by its PID afterwards."""
    work = tmp_path_factory.mktemp("app")
    proc, url = start_app(
        work,
        {"MNIST_DIR": str(mnist_for_app), "OMP_NUM_THREADS": "1", "XDG_CACHE_HOME": str(work / "cache")},
        timeout=90,
    )
    try:
        yield url
    finally:
        stop_app(proc)


@pytest.fixture(scope="module")
def playwright_driver():
    """One Playwright per test module, shared by its pages (a second one cannot run alongside)."""
    sync_playwright = require_browser()
    with sync_playwright() as pw:
        yield pw


@contextmanager
def chromium_page(pw, profile: Path, **options):
    """A page in a fresh headless Chromium with its own profile folder, removed afterwards."""
    context = pw.chromium.launch_persistent_context(
        str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, **options
    )
    try:
        page = context.new_page()
        page.set_default_timeout(60_000)
        yield page
    finally:
        context.close()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def browser_page(tmp_path_factory, playwright_driver):
    with chromium_page(
        playwright_driver, tmp_path_factory.mktemp("chromium-profile"), viewport={"width": 1280, "height": 900}
    ) as page:
        yield page


@pytest.fixture(scope="module")
def phone_page(tmp_path_factory, playwright_driver):
    """A phone: 390x844 CSS pixels, touch screen, mobile viewport, device pixel ratio 3."""
    with chromium_page(
        playwright_driver,
        tmp_path_factory.mktemp("chromium-phone-profile"),
        viewport={"width": 390, "height": 844},
        device_scale_factor=3,
        is_mobile=True,
        has_touch=True,
    ) as page:
        yield page


def draw(page, strokes, canvas=None) -> None:
    """Draw strokes (lists of (x, y) canvas fractions) with the mouse on ``canvas``.

    ``canvas`` is a Playwright locator of the canvas to draw on (default: the page's only one;
    while Clear swaps canvases, pass the new one's, or the locator may match both).
    """
    box = canvas_box(page, canvas)
    for stroke in strokes:
        points = stroke_points(box, stroke)
        page.mouse.move(*points[0])
        page.mouse.down()
        for x, y in points[1:]:
            page.mouse.move(x, y, steps=8)
        page.mouse.up()


def choose_option(page, key: str, option: str, tries: int = 5) -> None:
    """Pick ``option`` in the select box ``key``, opening its list again if a rerun closed it.

    A script run that ends just after the click redraws the select box and folds its list
    away, as it would under a person's finger; a person opens it again, and so does this.
    """
    for attempt in range(tries):
        page.locator(f".st-key-{key}").click()
        choice = page.get_by_role("option", name=option)
        try:
            choice.click(timeout=5_000)
            return
        except Exception:
            if attempt == tries - 1:
                raise
            page.keyboard.press("Escape")


def canvas_box(page, canvas=None) -> dict:
    """The canvas's bounding box, once the canvas is what a pen or finger would touch there.

    Just after the phone's sidebar is closed it is still sliding away over the canvas, and a
    stroke begun then lands on the sidebar, as a person's would. (The canvas sits in its
    component's shadow root, so the page's hit test finds the component's host.)
    """
    canvas = canvas or page.locator("canvas.upper-canvas")
    box = canvas.bounding_box()
    centre = [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2]
    page.wait_for_function(
        "([x, y]) => { const hit = document.elementFromPoint(x, y);"
        " return !!(hit && hit.closest('.stBidiComponent')); }",
        arg=centre,
        timeout=10_000,
    )
    return canvas.bounding_box()


def canvas_points(page, stroke) -> list[tuple[float, float]]:
    """A stroke in canvas fractions -> page coordinates (CSS pixels) on the page's canvas."""
    return stroke_points(canvas_box(page), stroke)


def touch_draw(page, strokes, steps: int = 8, finger: float = 10) -> None:
    """Draw strokes with a finger: real touch events through the DevTools protocol.

    (``page.touchscreen`` can only tap.) ``finger`` is the contact's radius in CSS pixels (a
    fingertip's is about 10; the browser may move a touch near an edge onto a nearby element).
    Each segment is split into ``steps`` moves, like ``draw``.
    """
    cdp = page.context.new_cdp_session(page)

    def touch(kind: str, points: list[tuple[float, float]]) -> None:
        contact = [{"x": x, "y": y, "radiusX": finger, "radiusY": finger, "id": 1} for x, y in points]
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": contact})

    try:
        for stroke in strokes:
            points = canvas_points(page, stroke)
            touch("touchStart", points[:1])
            for (x0, y0), (x1, y1) in zip(points, points[1:]):
                for i in range(1, steps + 1):
                    touch("touchMove", [(x0 + (x1 - x0) * i / steps, y0 + (y1 - y0) * i / steps)])
            touch("touchEnd", [])
    finally:
        cdp.detach()


def ink_at(page, x: float, y: float, radius: int = 3) -> int:
    """The brightest pixel (0-255) of the drawing within ``radius`` px of canvas fraction (x, y)."""
    return page.locator("canvas.dc-canvas.lower-canvas").evaluate(
        """(canvas, [x, y, r]) => {
            const cx = Math.round(x * canvas.width), cy = Math.round(y * canvas.height);
            const left = Math.max(0, cx - r), top = Math.max(0, cy - r);
            const d = canvas.getContext("2d").getImageData(left, top, 2 * r + 1, 2 * r + 1).data;
            let most = 0;
            for (let i = 0; i < d.length; i += 4) most = Math.max(most, d[i]);
            return most;
        }""",
        [x, y, radius],
    )


def shown_answer(page, strokes: int, timeout_ms: int = 30_000) -> str | None:
    """Wait until the page has read a drawing of ``strokes`` strokes; the digit it shows, or None.

    Reads the answer bar, which is in the page on every screen size (shown on phones only)
    and always carries the stroke count, also when there is no digit to show.
    """
    selector = f'.answer-bar[data-strokes="{strokes}"]'
    page.wait_for_selector(selector, state="attached", timeout=timeout_ms)
    return page.get_attribute(selector, "data-digit")


def watch_answers(page) -> None:
    """Start timing, in the page itself, from each pen-up (mouse or finger) to the answer shown
    (``app_server.WATCH_ANSWERS_JS``); ``answer_delays`` returns the seconds."""
    page.evaluate(WATCH_ANSWERS_JS)


def answer_delays(page) -> list[float]:
    return page.evaluate("() => window.answerTimes.slice()")


@contextmanager
def cpu_load(processes: int | None = None):
    """Keep every core busy (one busy-looping process each) for the duration; stopped by PID."""
    busy = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes or os.cpu_count() or 2)
    ]
    try:
        yield
    finally:
        for proc in busy:
            proc.kill()
        for proc in busy:
            proc.wait()


def screenshot(page, name: str) -> None:
    """Save the whole page (Streamlit scrolls inside its main block, so grow the viewport to fit)."""
    # Charts and images arrive with the script run's other elements but render asynchronously.
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=stImage] img')]"
        ".every(img => img.complete && img.naturalWidth > 0) && "
        "[...document.querySelectorAll('[data-testid=stVegaLiteChart]')]"
        ".every(chart => chart.querySelector('canvas, svg'))"
    )
    page.wait_for_timeout(500)
    size = page.viewport_size
    height = page.evaluate("document.querySelector('[data-testid=stMain]').scrollHeight")
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], height)})
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name))
    page.set_viewport_size(size)


def shown_prediction(page, strokes: int, timeout_ms: int = 30_000) -> tuple[str, float]:
    """Wait for the prediction of the drawing with ``strokes`` strokes; (digit, seconds since call)."""
    start = time.perf_counter()
    selector = f'.prediction[data-strokes="{strokes}"]'
    page.wait_for_selector(selector, timeout=timeout_ms)
    elapsed = time.perf_counter() - start
    return page.get_attribute(selector, "data-digit"), elapsed
