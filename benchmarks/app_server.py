"""Start and stop the real app for browser tests and benchmarks: one place for the details.

``start_app`` runs ``streamlit run app.py`` on a free 127.0.0.1 port and waits for its health
check; ``stop_app`` ends it by its PID. ``CHROMIUM`` and ``CHROMIUM_ARGS`` launch Debian's
headless Chromium with nothing that reaches outside this machine.
Non-goals: serving the app for users (``scripts/app.sh`` does that).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(work: Path, env: dict[str, str], timeout: float = 120) -> tuple[subprocess.Popen, str]:
    """``streamlit run app.py`` with ``env`` added; returns (process, url) once it answers.

    Its output goes to ``work/streamlit.log``; the models folder defaults to ``work/models``.
    """
    port = free_port()
    env = {"MNIST_NET_MODELS_DIR": str(work / "models"), **os.environ, **env}
    with open(work / "streamlit.log", "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                "app.py",
                "--server.port",
                str(port),
                "--server.headless",
                "true",
                "--server.address",
                "127.0.0.1",
                "--browser.gatherUsageStats",
                "false",
                "--server.fileWatcherType",
                "none",
            ],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return proc, url
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            stop_app(proc)
            raise RuntimeError("streamlit did not start:\n" + (work / "streamlit.log").read_text()[-3000:])
        time.sleep(0.3)


def stop_app(proc: subprocess.Popen) -> None:
    """SIGTERM by PID, then SIGKILL if it does not end within 20 s."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=20)


def stroke_points(box: dict, stroke) -> list[tuple[float, float]]:
    """A stroke in canvas fractions [(x, y), ...] -> page coordinates in the canvas's bounding ``box``."""
    return [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in stroke]


# Timing in the page itself, from each pen-up (mouse or finger) to the answer for a new stroke
# count (a MutationObserver), so a figure is the user's wait, not a driver's round trips. It
# watches the answer bar, which every screen size has and which says "0 strokes" after Clear,
# so two one-stroke drawings in a row are two answers even when the old answer block lingers.
# ``window.answerTimes`` holds the seconds.
WATCH_ANSWERS_JS = """() => {
    if (window.answerTimes) return;
    window.answerTimes = [];
    let penUp = null, lastSeen = null;
    const up = () => { penUp = performance.now(); };
    window.addEventListener("mouseup", up, true);
    window.addEventListener("touchend", up, true);
    new MutationObserver(() => {
        const bar = document.querySelector(".answer-bar[data-strokes]");
        const strokes = bar && bar.getAttribute("data-strokes");
        if (strokes && strokes !== "0" && strokes !== lastSeen && penUp !== null) {
            window.answerTimes.push((performance.now() - penUp) / 1000);
            penUp = null;
        }
        lastSeen = strokes;
    }).observe(document.body, { childList: true, subtree: true, attributes: true });
}"""
