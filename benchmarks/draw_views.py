"""Server CPU time per stroke on the draw page, with the look-inside views closed and open.

Starts the real app, draws digits stroke by stroke in headless Chromium, and reads the server
process's CPU time (all its threads, nanoseconds, from its CPU-time clock) from just
before each stroke until the server is quiet again after the answer is shown. The conditions
take turns digit by digit (closed, then each view alone, then all open, again and again), so all
see the same machine load. With ``--before REF``, a second server runs the app as it was at git
commit REF (exported with ``git archive``, nothing in the checkout changes), and its page takes
its turn too: the page before the views. Prints median and p95 per condition and the ratio of
medians to the first condition. A second model is put in the models folder (a copy of the
shipped one) so "compare two models" compares two. With ``--model FILE`` (e.g. a CNN), that
model is put there too and chosen in the picker, so the views read it instead of the shipped one.

    python benchmarks/draw_views.py --rounds 12 --before 4c38ee0
    python benchmarks/draw_views.py --rounds 8 --model /tmp/cnn.pkl

Non-goals: timing in the browser (``tests/test_browser_draw.py -k speed`` does mouse-up to answer).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import app_server  # noqa: E402
from app_server import CHROMIUM, CHROMIUM_ARGS, PROJECT_ROOT, start_app, stop_app, stroke_points  # noqa: E402

VIEWS = ("inside_steps", "inside_why", "inside_layers", "inside_strokes", "inside_compare")
CONDITIONS = {"closed": (), **{name: (name,) for name in VIEWS}, "all open": VIEWS}
# A 7 in three strokes and a 4 in three: drawn alternately, each stroke timed.
DIGITS = [
    [[(0.27, 0.20), (0.73, 0.20)], [(0.73, 0.20), (0.62, 0.42), (0.45, 0.85)], [(0.45, 0.52), (0.72, 0.52)]],
    [[(0.35, 0.15), (0.25, 0.55), (0.70, 0.55)], [(0.60, 0.20), (0.60, 0.88)], [(0.20, 0.55), (0.30, 0.55)]],
]


def server_cpu_ns(pid: int) -> int:
    """CPU time of process ``pid`` so far, all its threads (also those that have ended), in nanoseconds.

    Read from the process's CPU-time clock (Linux's clock id of a process: ``(~pid << 3) | 2``, what
    ``clock_getcpuclockid`` returns). Summing the live threads' /proc schedstat, as this benchmark
    did before, misses the thread each script run has ended in by the time it is read: the views' own work.
    """
    return time.clock_gettime_ns(((~pid) << 3) | 2)


def wait_quiet(pid: int, window: float = 0.12, threshold_ns: int = 1_500_000, timeout: float = 10) -> None:
    """Wait until the server used less than ``threshold_ns`` of CPU in the last ``window`` seconds."""
    deadline = time.monotonic() + timeout
    last = server_cpu_ns(pid)
    while time.monotonic() < deadline:
        time.sleep(window)
        now = server_cpu_ns(pid)
        if now - last < threshold_ns:
            return
        last = now


def set_views(page, open_views) -> None:
    for key in VIEWS:
        details = page.locator(f".st-key-{key} details")
        if (details.get_attribute("open") is not None) != (key in open_views):
            page.locator(f".st-key-{key} summary").click()
            page.wait_for_function(
                "([sel, want]) => { const d = document.querySelector(sel); return d && d.open === want; }",
                arg=[f".st-key-{key} details", key in open_views],
            )


def draw_stroke(page, stroke) -> None:
    canvas = page.locator("canvas.upper-canvas")
    canvas.scroll_into_view_if_needed()  # opening a view far down scrolls the canvas away: a stroke would miss
    points = stroke_points(canvas.bounding_box(), stroke)
    page.mouse.move(*points[0])
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(x, y, steps=8)
    page.mouse.up()


MEASURED = "measured.pkl"  # the --model file's name in the models folder


def serve(root: Path, work: Path, mnist: str, model: Path | None = None):
    """Start the app found in ``root`` (a checkout) with a models folder holding a second model
    (and ``model``, if given, as MEASURED)."""
    (work / "models").mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / "assets" / "default_model.pkl", work / "models" / "second.pkl")
    if model is not None:
        shutil.copy(model, work / "models" / MEASURED)
    app_server.PROJECT_ROOT = root  # start_app runs `streamlit run app.py` there
    try:
        return start_app(work, {"MNIST_DIR": mnist, "OMP_NUM_THREADS": "1"})
    finally:
        app_server.PROJECT_ROOT = PROJECT_ROOT


def export(ref: str, folder: Path) -> Path:
    """The project as it was at git commit ``ref``, written into ``folder`` (the checkout is not touched)."""
    folder.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", ref], cwd=PROJECT_ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def open_page(browser, url: str, choose: str | None = None):
    """A desktop page of the app, with the picker's model ``choose`` (a label's text) if given, warmed up."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(60_000)
    page.goto(url)
    page.locator("canvas.upper-canvas").wait_for()
    if choose is not None:
        facts = "[data-testid=stSidebarUserContent]"
        before = page.locator(facts).inner_text()
        page.locator(".st-key-model_choice").click()
        page.get_by_role("option", name=choose).click()
        page.wait_for_function(  # the sidebar's facts are the chosen model's
            "([sel, old]) => document.querySelector(sel).innerText !== old", arg=[facts, before]
        )
    draw_stroke(page, DIGITS[0][0])  # warm up: first stroke, model load, first views
    page.wait_for_selector('.answer-bar[data-strokes="1"]', state="attached")
    return page


def time_digit(page, pid: int, strokes, open_views) -> list[float] | None:
    """Clear, open ``open_views`` (None: leave the page as it is), then draw the digit stroke by stroke:
    the server's CPU milliseconds per stroke, or None if a stroke got no answer within 20 s (lost)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.locator(".st-key-clear button").click()
    page.wait_for_selector('.answer-bar[data-strokes="0"]', state="attached")
    if open_views is not None:
        set_views(page, open_views)
    wait_quiet(pid)
    spent = []
    for n, stroke in enumerate(strokes, start=1):
        before = server_cpu_ns(pid)
        draw_stroke(page, stroke)
        try:
            page.wait_for_selector(f'.answer-bar[data-strokes="{n}"]', state="attached", timeout=20_000)
        except PlaywrightTimeout:
            return None
        wait_quiet(pid)
        spent.append((server_cpu_ns(pid) - before) / 1e6)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=12, help="digits per condition")
    parser.add_argument("--before", metavar="REF", help="also time the page as it was at this git commit")
    parser.add_argument("--model", type=Path, help="a model file for the views to read (default: the shipped one)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    mnist = os.environ.get("MNIST_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "mnist"))
    conditions = ({f"before ({args.before})": None} if args.before else {}) | CONDITIONS
    times: dict[str, list[float]] = {name: [] for name in conditions}
    lost = dict.fromkeys(conditions, 0)
    load_before = os.getloadavg()[0]
    servers = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            servers.append(serve(PROJECT_ROOT, Path(tmp) / "now", mnist, args.model))
            if args.before:
                old_root = export(args.before, Path(tmp) / "src")
                servers.append(serve(old_root, Path(tmp) / "before", mnist, args.model))
            choose = f"Saved: {MEASURED}" if args.model else None
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                pages = [open_page(browser, url, choose) for _, url in servers]
                for r in range(args.rounds):
                    for name, open_views in conditions.items():
                        now = open_views is not None
                        page, pid = pages[0 if now else 1], servers[0 if now else 1][0].pid
                        for _ in range(3):  # a digit whose stroke got no answer is drawn again
                            digit = time_digit(page, pid, DIGITS[r % len(DIGITS)], open_views if now else None)
                            if digit is not None:
                                times[name].extend(digit)
                                break
                            lost[name] += 1
                browser.close()
        finally:
            for proc, _ in servers:
                stop_app(proc)
    base = float(np.median(next(iter(times.values()))))
    model = args.model.name if args.model else "the shipped model"
    print(
        f"{model}; load average {os.getloadavg()[0]:.1f} (at the start {load_before:.1f}); "
        f"server CPU per stroke (ms), {args.rounds * 3} strokes each (fewer if a digit was lost 3 times)"
    )
    print(f"{'views':<22}{'median':>8}{'p95':>8}{'ratio':>8}{'lost':>6}")
    for name, t in times.items():
        med, p95 = float(np.median(t)), float(np.percentile(t, 95))
        print(f"{name:<22}{med:>8.1f}{p95:>8.1f}{med / base:>8.2f}{lost[name]:>6}")
    print("lost: digits drawn again because a stroke got no answer within 20 s")


if __name__ == "__main__":
    main()
