"""Load benchmark: many browser sessions drawing at once while another session trains.

Starts ``streamlit run app.py`` on a free 127.0.0.1 port (MNIST from ``$MNIST_DIR``, an
empty temporary models folder), opens headless Chromium sessions with Playwright, and
times mouse-up -> prediction shown for three phases in one run:

1. idle: one session drawing alone;
2. crowd: ``--sessions`` sessions (separate browser contexts) drawing at the same time;
3. crowd + training: the same, while one more session trains on the Train page.

Latency is timed in each page (mouse-up to the answer bar showing the new stroke count).
Every drawing is checked: the page must show the digit that was drawn; a drawing that
gets no answer within 20 s counts as lost and is drawn again. Prints median, p95 and max
latency per phase and the ratios to idle, the server's memory (and its training child's);
writes ``benchmarks/out/load_test.json``. ``--nice-browser 19`` lets the server have the
CPU first, as when each person's browser runs on their own device.
A benchmark with figures, not a test: nothing here asserts a time. The server is stopped
by its PID at the end.

    MNIST_DIR=../shared/mnist python benchmarks/load_test.py --sessions 8 --rounds 3 --nice-browser 19
    MNIST_DIR=../shared/mnist python benchmarks/load_test.py --sessions 30 --rounds 2 --nice-browser 19
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from app_server import CHROMIUM, CHROMIUM_ARGS, PROJECT_ROOT, WATCH_ANSWERS_JS, start_app, stop_app, stroke_points

# Eight users have eight visible tabs: keep Chromium from throttling the ones it considers
# in the background (their timers drive the canvas's rerun).
CHROMIUM_ARGS = [
    *CHROMIUM_ARGS,
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]

# Pen strokes in canvas fractions (x, y), as a person would draw them with a mouse.
DIGITS = {
    "1": [[(0.50, 0.15), (0.50, 0.85)]],
    "7": [[(0.27, 0.20), (0.73, 0.20), (0.62, 0.42), (0.45, 0.85)]],
    "0": [[(0.5 + 0.22 * math.sin(t), 0.5 - 0.33 * math.cos(t)) for t in np.linspace(0, 2 * math.pi, 41)]],
}
PROMPT = "Draw a digit from 0 to 9 in the black box"
OUT = PROJECT_ROOT / "benchmarks" / "out"
LOST_AFTER_S = 20
LOST: list[dict] = []  # one entry per drawing the app never answered


CANVAS = ".st-key-canvas canvas.upper-canvas"


async def open_draw_page(browser, url: str):
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(120_000)
    await page.goto(url)
    await page.wait_for_selector(CANVAS)
    await page.get_by_text(PROMPT).wait_for()
    await page.evaluate(WATCH_ANSWERS_JS)
    return context, page


async def settled_canvas_box(page) -> dict:
    """The canvas's box once it is mounted and has not moved for 0.5 s (layout settles after load)."""
    canvas = page.locator(CANVAS)
    boxes = []
    for _ in range(2400):
        boxes.append(await canvas.bounding_box() if await canvas.count() == 1 else None)
        if boxes[-1] is not None and boxes[-10:] == [boxes[-1]] * 10:
            return boxes[-1]
        await asyncio.sleep(0.05)
    raise TimeoutError("the canvas never settled")


async def draw(page, strokes, box) -> None:
    for stroke in strokes:
        points = stroke_points(box, stroke)
        await page.mouse.move(*points[0])
        await page.mouse.down()
        for x, y in points[1:]:
            await page.mouse.move(x, y, steps=8)
        await page.mouse.up()


async def draw_and_time(page, digit: str) -> dict:
    """Draw ``digit``, wait for the page's answer to it, clear. Returns digit, shown digit and latency.

    The latency is timed in the page (``app_server.WATCH_ANSWERS_JS``). A drawing the app never answers
    within ``LOST_AFTER_S`` is counted as lost (with a screenshot) and drawn again after Clear.
    """
    strokes = DIGITS[digit]
    selector = f'.answer-bar[data-strokes="{len(strokes)}"]'
    lost = 0
    box = await settled_canvas_box(page)
    while True:
        before = await page.evaluate("() => window.answerTimes.length")
        await draw(page, strokes, box)
        try:
            await page.wait_for_selector(selector, state="attached", timeout=LOST_AFTER_S * 1000)
            break
        except Exception:
            lost += 1
            LOST.append({"digit": digit})
            OUT.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(OUT / f"load_test_lost_{len(LOST)}.png"))
            if lost == 3:
                raise
            await clear(page)
    times = await page.evaluate("() => window.answerTimes.slice()")
    latency = times[-1] if len(times) > before else float("nan")
    shown = await page.get_attribute(selector, "data-digit")
    await clear(page)
    return {"drawn": digit, "shown": shown, "latency": latency, "lost_before": lost}


async def clear(page) -> None:
    await page.locator(".st-key-clear button").click()
    await page.wait_for_selector('.answer-bar[data-strokes="0"]', state="attached")


async def session_draws(page, rounds: int, offset: int) -> list[dict]:
    order = list(DIGITS)
    results = []
    for i in range(rounds * len(order)):
        results.append(await draw_and_time(page, order[(i + offset) % len(order)]))
        print(
            f"  session {offset}: drew {results[-1]['drawn']}, shown {results[-1]['shown']} "
            f"after {results[-1]['latency']:.2f} s",
            file=sys.stderr,
        )
    return results


async def crowd(pages, rounds: int) -> list[dict]:
    """All sessions draw at the same time; each starts on a different digit."""
    per_session = await asyncio.gather(*(session_draws(p, rounds, i) for i, p in enumerate(pages)))
    return [r for results in per_session for r in results]


async def start_training(browser, url: str):
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(120_000)
    await page.goto(url + "/train")
    await page.get_by_role("heading", name="Train a network").wait_for()
    await page.locator(".st-key-n_train input").fill("60000")
    await page.locator(".st-key-epochs input").fill("200")
    await page.locator(".st-key-hidden_sizes input").fill("512,256")
    await page.locator(".st-key-start button").click()
    try:
        await page.get_by_text(re.compile(r"^Epoch 1/200 · batch")).wait_for(timeout=300_000)
    except Exception:
        OUT.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(OUT / "load_test_training_did_not_start.png"))
        raise
    return context, page


async def training_progress(page) -> str:
    """The train page's progress line, e.g. 'Epoch 1/30 · batch 120/430 · ...'."""
    return await page.get_by_text(re.compile(r"^Epoch \d+/\d+ · batch")).first.inner_text()


def rss_mb(pid: int) -> float:
    """Resident memory of one process in MB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def descendants(pid: int) -> list[int]:
    """PIDs of every process below ``pid`` (the forkserver and its training children)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    found, frontier = [], [pid]
    while frontier:
        children = [c for c, p in parents.items() if p in frontier]
        found += children
        frontier = children
    return found


def nice_browser(level: int, server_pid: int) -> None:
    """Lower the browser's CPU priority (every process below us but the server's tree).

    On this one machine the sessions' browsers share two cores with the server; in a class each
    person's browser runs on their own device. Chromium's renderers start scheduling sessions of
    their own, and Linux (autogroup) shares the CPU between sessions first: set both.
    """
    server_tree = {server_pid, *descendants(server_pid)}
    for pid in descendants(os.getpid()):
        if pid in server_tree:
            continue
        try:
            os.setpriority(os.PRIO_PROCESS, pid, level)
            Path(f"/proc/{pid}/autogroup").write_text(str(level))
        except OSError:
            pass


async def sample_memory(pid: int, samples: list[dict], stop: asyncio.Event) -> None:
    """Every 0.5 s: the server's RSS and that of all its child processes, in MB."""
    while not stop.is_set():
        samples.append(
            {
                "server_mb": rss_mb(pid),
                "children_mb": sum(rss_mb(c) for c in descendants(pid)),
                "load_1min": os.getloadavg()[0],
            }
        )
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except TimeoutError:
            pass


SERVER_CPU: dict[str, float] = {}  # phase -> the web server's CPU-s per wall-s (its cores in use)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far (its threads included), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def server_cpu(pid: int, phase: str):
    """Book how many cores the web server process used during ``phase`` (training runs elsewhere)."""
    cpu, wall = cpu_seconds(pid), time.perf_counter()
    yield
    SERVER_CPU[phase] = (cpu_seconds(pid) - cpu) / (time.perf_counter() - wall)


def summary(results: list[dict]) -> dict:
    times = np.array([r["latency"] for r in results if r["latency"] == r["latency"]])
    return {
        "drawings": len(results),
        "correct": sum(r["drawn"] == r["shown"] for r in results),
        "untimed": sum(r["latency"] != r["latency"] for r in results),
        "lost_strokes": sum(r["lost_before"] for r in results),
        "median_s": float(np.median(times)),
        "p95_s": float(np.percentile(times, 95)),
        "max_s": float(times.max()),
    }


async def run(args) -> dict:
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory(prefix="mnist-load-") as tmp:
        proc, url = start_app(
            Path(tmp), {"MNIST_DIR": args.mnist_dir, "OMP_NUM_THREADS": "1", "XDG_CACHE_HOME": str(Path(tmp) / "cache")}
        )
        print(f"app at {url} (pid {proc.pid})", file=sys.stderr)
        try:
            async with async_playwright() as pw:
                # launch() gives every run a fresh temporary profile (its own --user-data-dir).
                browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                memory: list[dict] = []
                done_sampling = asyncio.Event()
                sampler = asyncio.create_task(sample_memory(proc.pid, memory, done_sampling))
                try:
                    phases = {}
                    print("opening sessions", file=sys.stderr)
                    contexts_pages = [await open_draw_page(browser, url) for _ in range(args.sessions)]
                    pages = [p for _, p in contexts_pages]
                    if args.nice_browser:
                        nice_browser(args.nice_browser, proc.pid)
                    await session_draws(pages[0], 1, 0)  # warm-up: first script runs, model cache
                    with server_cpu(proc.pid, "idle (1 session)"):
                        phases["idle (1 session)"] = await session_draws(pages[0], args.rounds, 0)
                    with server_cpu(proc.pid, f"{args.sessions} sessions drawing"):
                        phases[f"{args.sessions} sessions drawing"] = await crowd(pages, args.rounds)
                    trainer_context, trainer = await start_training(browser, url)
                    if args.nice_browser:
                        nice_browser(args.nice_browser, proc.pid)
                    progress = [await training_progress(trainer)]
                    with server_cpu(proc.pid, f"{args.sessions} sessions drawing + 1 training"):
                        phases[f"{args.sessions} sessions drawing + 1 training"] = await crowd(pages, args.rounds)
                    progress.append(await training_progress(trainer))
                    still_training = await trainer.locator(".st-key-stop button").count() == 1
                    await trainer.locator(".st-key-stop button").click()
                    await trainer.get_by_text("Training was stopped early").wait_for(timeout=120_000)
                    await trainer_context.close()
                    for context, _ in contexts_pages:
                        await context.close()
                finally:
                    done_sampling.set()
                    await sampler
                    await browser.close()
        finally:
            stop_app(proc)
    report = {name: {**summary(results), "server_cores": SERVER_CPU[name]} for name, results in phases.items()}
    idle = report["idle (1 session)"]["median_s"]
    for figures in report.values():
        figures["median_vs_idle"] = figures["median_s"] / idle
    wrong = [r for results in phases.values() for r in results if r["drawn"] != r["shown"]]
    return {
        "phases": report,
        "training_still_running_after_crowd": still_training,
        "training_progress_before_and_after_crowd": progress,
        "wrong": wrong,
        "sessions": args.sessions,
        "rounds": args.rounds,
        "browser_niceness": args.nice_browser,
        "cpu_count": os.cpu_count(),
        "lost": LOST,
        "server_memory_mb_max": max(m["server_mb"] for m in memory),
        "children_memory_mb_max": max(m["children_mb"] for m in memory),
        "load_average": os.getloadavg(),
        "load_1min_during": [min(m["load_1min"] for m in memory), max(m["load_1min"] for m in memory)],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="each session draws 1, 7 and 0 this many times")
    parser.add_argument(
        "--mnist-dir", default=os.environ.get("MNIST_DIR") or str(PROJECT_ROOT.parent / "shared" / "mnist")
    )
    parser.add_argument(
        "--nice-browser",
        type=int,
        default=0,
        help="run the browsers at this niceness (e.g. 19), as if each session ran on its own device",
    )
    args = parser.parse_args()
    result = asyncio.run(run(args))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "load_test.json").write_text(json.dumps(result, indent=2))
    print(
        f"{'phase':40} {'drawings':>8} {'correct':>8} {'lost':>5} {'median':>8} {'p95':>8} {'max':>8} {'x idle':>7}"
        f" {'server cores':>12}"
    )
    for name, f in result["phases"].items():
        print(
            f"{name:40} {f['drawings']:8d} {f['correct']:8d} {f['lost_strokes']:5d} {f['median_s']:7.2f}s "
            f"{f['p95_s']:7.2f}s {f['max_s']:7.2f}s {f['median_vs_idle']:7.1f} {f['server_cores']:12.2f}"
        )
    before, after = result["training_progress_before_and_after_crowd"]
    print(
        f"training during the crowd: {before!r} -> {after!r}; still running after it: "
        f"{result['training_still_running_after_crowd']}; {os.cpu_count()} CPUs"
    )
    print(
        f"server memory max {result['server_memory_mb_max']:.0f} MB, its child processes (training) max "
        f"{result['children_memory_mb_max']:.0f} MB; load average at the end "
        f"{', '.join(f'{x:.1f}' for x in result['load_average'])} (1-min load during the run "
        f"{result['load_1min_during'][0]:.1f}-{result['load_1min_during'][1]:.1f}); "
        f"browser niceness {args.nice_browser}"
    )
    if LOST:
        print(f"lost drawings: {len(LOST)} (screenshots in benchmarks/out/)")
    return 0 if not result["wrong"] else 1


if __name__ == "__main__":
    sys.exit(main())
