"""Classroom load without browsers: many drawing sessions spoken straight over Streamlit's websocket.

``load_test.py`` drives real Chromium sessions, and on this 2-core machine their renderers take
most of the CPU, so it measures the browsers as much as the server. Here each "student" is a
small websocket client that speaks Streamlit's own protocol (``BackMsg`` / ``ForwardMsg``
protobufs, as the browser does): it opens the draw page, then reports strokes exactly as the
canvas component does (its JSON: the revision marker and the stroke objects, plus the
picture as a PNG data URL, a different MNIST *test* digit redrawn on a 280x280 canvas by
``mnist_net.synth`` each time) and times the server from the report to the answer bar for
that stroke count arriving (``data-strokes`` / ``data-digit``). Each client waits for its
answer before its next stroke, then "thinks" for ``--think`` seconds, like a person drawing.

Phases in one run: 1 session alone; ``--sessions`` at once; the same while one more session
(a real Chromium at niceness 19, as on its own device) trains on the Train page. Prints
median / p95 / max per phase, answers that never came (lost), digits read right, server
cores and memory, and the load average. A stroke's report sent by the real canvas reaches
the server at pen-up (the page presses the component's send control then: pages/ui/canvas.py),
so a person waits this round trip plus the browser's own drawing of the answer
(``python -m pytest tests/test_browser_draw.py -k speed -s`` times that, in a browser).
A benchmark with figures, not a test. The server is stopped by its PID at the end.

    MNIST_DIR=../shared/mnist python benchmarks/ws_load.py --sessions 8 --strokes 20
    MNIST_DIR=../shared/mnist python benchmarks/ws_load.py --sessions 30 --strokes 10
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import re
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import websockets
from app_server import CHROMIUM, CHROMIUM_ARGS, PROJECT_ROOT, start_app, stop_app
from load_test import SERVER_CPU, descendants, nice_browser, rss_mb, sample_memory, server_cpu, start_training
from PIL import Image
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from mnist_net import load_mnist
from mnist_net.synth import random_stroke, render

ANSWER = re.compile(r'class="answer-bar" data-digit="(\d|)" data-sure="\d" data-strokes="(\d+)"')
WIDGET_ID = re.compile(rb"\$\$ID-[0-9a-f]{32}-canvas")
LOST_AFTER_S = 20.0


def digit_pictures(n: int, seed: int = 0) -> list[tuple[int, str]]:
    """(label, PNG data URL) of n MNIST test digits redrawn white on black on a 280x280 canvas."""
    data = load_mnist(os.environ.get("MNIST_DIR"), progress=False)
    rng = np.random.default_rng(seed)
    pictures = []
    for i in rng.choice(len(data.y_test), n, replace=False):
        rgba = render(data.X_test[i], random_stroke(rng), "white_on_black", rng)
        buffer = io.BytesIO()
        Image.fromarray(rgba).save(buffer, format="PNG")
        pictures.append((int(data.y_test[i]), "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()))
    return pictures


def path_object(k: int) -> dict:
    """One freehand stroke as the canvas reports it (Fabric's Path): the app counts them."""
    return {"type": "Path", "stroke": "#FFFFFF", "strokeWidth": 18, "path": [["M", 100 + k, 60], ["L", 100 + k, 220]]}


class Student:
    """One browser tab's worth of protocol: the draw page, then strokes reported one by one."""

    def __init__(self, url: str):
        self.ws_url = url.replace("http://", "ws://") + "/_stcore/stream"
        self.origin = url
        self.page_hash = ""
        self.fragment = ""
        self.canvas_id = ""
        self.strokes = 0

    async def open(self) -> None:
        self.ws = await websockets.connect(
            self.ws_url,
            subprotocols=["streamlit"],
            origin=self.origin,
            max_size=2**26,
            ping_interval=None,
            open_timeout=120,
        )
        first = BackMsg()
        first.rerun_script.context_info.url = self.origin + "/"
        first.rerun_script.context_info.timezone = "UTC"
        await self.ws.send(first.SerializeToString())
        async for _text in self._until_finished():
            pass
        if not (self.canvas_id and self.page_hash and self.fragment):
            raise RuntimeError("the draw page did not show its canvas")

    async def _until_finished(self):
        """Yield the markdown of each element until the script run (page or fragment) finishes."""
        while True:
            raw = await self.ws.recv()
            msg = ForwardMsg()
            msg.ParseFromString(raw)
            kind = msg.WhichOneof("type")
            if kind == "script_finished":
                return
            if kind == "new_session":
                self.page_hash = msg.new_session.page_script_hash or self.page_hash
            if not self.canvas_id and (found := WIDGET_ID.search(raw)):
                self.canvas_id = found.group().decode()
            if kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
                element = msg.delta.new_element
                if element.WhichOneof("type") == "bidi_component" and msg.delta.fragment_id:
                    self.fragment = msg.delta.fragment_id
                if element.WhichOneof("type") == "markdown":
                    yield element.markdown.body
            if kind == "navigation":
                self.page_hash = msg.navigation.page_script_hash or self.page_hash

    async def stroke(self, picture: str) -> tuple[float, str | None]:
        """Report one more stroke with this picture; (seconds to its answer, digit shown or None if lost)."""
        self.strokes += 1
        marker = {"type": "Rect", "left": 1, "top": 0, "width": 0, "height": 0, "visible": False}
        value = {
            "drawing": {
                "raw": {"version": "7.4.0", "objects": [marker, *map(path_object, range(self.strokes))]},
                "data": picture,
            }
        }
        msg = BackMsg()
        rerun = msg.rerun_script
        rerun.page_script_hash = self.page_hash
        rerun.fragment_id = self.fragment
        rerun.context_info.url = self.origin + "/"
        widget = rerun.widget_states.widgets.add()
        widget.id = self.canvas_id
        widget.json_value = json.dumps(value)
        start = time.perf_counter()
        await self.ws.send(msg.SerializeToString())
        shown, latency = None, float("nan")

        async def answer():
            nonlocal shown, latency
            async for body in self._until_finished():
                found = ANSWER.search(body)
                if found and int(found.group(2)) == self.strokes and shown is None:
                    latency, shown = time.perf_counter() - start, found.group(1)

        try:
            await asyncio.wait_for(answer(), LOST_AFTER_S)
        except TimeoutError:
            return float("nan"), None
        return latency, shown


async def draw_for(student: Student, pictures, strokes: int, think: float, offset: int, results: list) -> None:
    for i in range(strokes):
        label, picture = pictures[(offset * 7 + i) % len(pictures)]
        latency, shown = await student.stroke(picture)
        results.append({"label": label, "shown": shown, "latency": latency})
        await asyncio.sleep(think * (0.5 + np.random.default_rng(offset * 1000 + i).random()))


async def phase(name: str, students, pictures, strokes: int, think: float, pid: int) -> list[dict]:
    results: list[dict] = []
    with server_cpu(pid, name):
        await asyncio.gather(*(draw_for(s, pictures, strokes, think, i, results) for i, s in enumerate(students)))
    return results


def summary(results: list[dict]) -> dict:
    times = np.array([r["latency"] for r in results if r["shown"] is not None])
    return {
        "strokes": len(results),
        "lost": sum(r["shown"] is None for r in results),
        "read_right": sum(r["shown"] == str(r["label"]) for r in results),
        "median_s": float(np.median(times)) if times.size else float("nan"),
        "p95_s": float(np.percentile(times, 95)) if times.size else float("nan"),
        "max_s": float(times.max()) if times.size else float("nan"),
    }


async def run(args) -> dict:
    from playwright.async_api import async_playwright

    pictures = digit_pictures(60)
    with tempfile.TemporaryDirectory(prefix="mnist-wsload-") as tmp:
        proc, url = start_app(
            Path(tmp), {"MNIST_DIR": args.mnist_dir, "OMP_NUM_THREADS": "1", "XDG_CACHE_HOME": str(Path(tmp) / "cache")}
        )
        memory: list[dict] = []
        done = asyncio.Event()
        sampler = asyncio.create_task(sample_memory(proc.pid, memory, done))
        phases: dict[str, list[dict]] = {}
        progress: list[str] = []
        children: list[int] = []
        try:
            warm = Student(url)
            await warm.open()
            await draw_for(warm, pictures, 3, 0, 99, [])
            students = [Student(url) for _ in range(args.sessions)]
            for s in students:
                await s.open()
            phases["1 session"] = await phase("1 session", students[:1], pictures, args.strokes, args.think, proc.pid)
            crowd = f"{args.sessions} sessions drawing"
            phases[crowd] = await phase(crowd, students, pictures, args.strokes, args.think, proc.pid)
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                try:
                    context, trainer = await start_training(browser, url)
                    nice_browser(19, proc.pid)
                    progress.append(await trainer.get_by_text(re.compile(r"^Epoch \d+/\d+ · batch")).first.inner_text())
                    busy = f"{args.sessions} sessions drawing + 1 training"
                    phases[busy] = await phase(busy, students, pictures, args.strokes, args.think, proc.pid)
                    progress.append(await trainer.get_by_text(re.compile(r"^Epoch \d+/\d+ · batch")).first.inner_text())
                    children = descendants(proc.pid)
                    await context.close()
                finally:
                    await browser.close()
            for s in [warm, *students]:
                await s.ws.close()
        finally:
            done.set()
            await sampler
            server_mb = rss_mb(proc.pid)
            stop_app(proc)
            for pid in children:  # a training child the server's shutdown did not end
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
    report = {name: {**summary(r), "server_cores": SERVER_CPU.get(name, float("nan"))} for name, r in phases.items()}
    return {
        "phases": report,
        "sessions": args.sessions,
        "strokes_per_session": args.strokes,
        "think_s": args.think,
        "training_progress_before_after": progress,
        "processes_below_server_while_training": len(children),
        "server_memory_mb_max": max(m["server_mb"] for m in memory),
        "server_memory_mb_end": server_mb,
        "children_memory_mb_max": max(m["children_mb"] for m in memory),
        "load_1min_during": [min(m["load_1min"] for m in memory), max(m["load_1min"] for m in memory)],
        "cpu_count": os.cpu_count(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--strokes", type=int, default=20, help="strokes each session reports per phase")
    parser.add_argument("--think", type=float, default=1.0, help="mean pause between a session's strokes, s")
    parser.add_argument(
        "--mnist-dir", default=os.environ.get("MNIST_DIR") or str(PROJECT_ROOT.parent / "shared" / "mnist")
    )
    args = parser.parse_args()
    os.environ["MNIST_DIR"] = args.mnist_dir
    result = asyncio.run(run(args))
    out = PROJECT_ROOT / "benchmarks" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "ws_load.json").write_text(json.dumps(result, indent=2))
    head = f"{'phase':40} {'strokes':>8} {'lost':>5} {'read right':>10} {'median':>8} {'p95':>8} {'max':>8}"
    print(head + f" {'server cores':>13}")
    for name, f in result["phases"].items():
        print(
            f"{name:40} {f['strokes']:8d} {f['lost']:5d} {f['read_right']:10d} {f['median_s']:7.3f}s "
            f"{f['p95_s']:7.3f}s {f['max_s']:7.3f}s {f['server_cores']:13.2f}"
        )
    before, after = result["training_progress_before_after"]
    print(f"training during the crowd: {before!r} -> {after!r}")
    print(
        f"server memory max {result['server_memory_mb_max']:.0f} MB, training child max "
        f"{result['children_memory_mb_max']:.0f} MB; 1-min load during the run "
        f"{result['load_1min_during'][0]:.1f}-{result['load_1min_during'][1]:.1f}; {os.cpu_count()} CPUs"
    )
    return 0 if all(f["lost"] == 0 for f in result["phases"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
