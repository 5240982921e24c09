"""What every browser test needs: the real app on 127.0.0.1, headless Chromium, drawing, screenshots.

A pytest plugin (``pytest_plugins`` in conftest.py), so any ``tests/test_browser*.py`` file
can use the fixtures ``app_url`` (``streamlit run app.py`` on a free localhost port, MNIST
from MNIST_DIR, an empty temporary models folder) and ``browser_page`` (a desktop-sized page),
and the helpers ``draw``, ``screenshot`` and ``shown_prediction``. Browser tests never skip
in CI (CI=true): a missing browser is a failure there.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from app_server import CHROMIUM, CHROMIUM_ARGS, start_app, stop_app
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
def browser_page(tmp_path_factory):
    sync_playwright = require_browser()
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            page = context.new_page()
            page.set_default_timeout(60_000)
            yield page
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


def draw(page, strokes, canvas=None) -> None:
    """Draw strokes (lists of (x, y) canvas fractions) with the mouse on ``canvas``.

    ``canvas`` is a Playwright locator of the canvas to draw on (default: the page's only one;
    while Clear swaps canvases, pass the new one's, or the locator may match both).
    """
    box = (canvas or page.locator("canvas.upper-canvas")).bounding_box()
    for stroke in strokes:
        points = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for x, y in points[1:]:
            page.mouse.move(x, y, steps=8)
        page.mouse.up()


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
