"""How long does a training run take from the web page, compared with the command line?

Side by side in one run, same config and data, interleaved and repeated:

- ``cli``: ``python -m mnist_net train ... --out model.pkl`` in a fresh process, as a user
  would run it: start, load MNIST, train, test, save.
- ``job``: a ``TrainingJob`` (the child process the app uses) while this process does what the
  train page's fragment does every poll: take a snapshot, build both charts from the (thinned)
  history and serialise them to JSON, roughly what Streamlit sends to the browser.
- ``app`` (with ``--browser``): the real thing: ``streamlit run app.py`` plus headless
  Chromium, Start pressed on the train page, until the results are shown; the model is then
  kept (saved) so its training history can be read.

Figures per path: wall time from start to result (the CLI's includes starting Python and
saving; the job's starts at ``start()``, the app's at the click), training-loop time (the
last progress record's own clock), and CPU seconds: of the process that trained (booked to the
fork server that reaps it), and, for the app, of the server and of the browser meanwhile. Ratios are
against the CLI: of the medians over the repeats, and "paired" (the median of each repeat's
ratio to the CLI run just before it, steadier when the machine's load drifts); the load
average is printed as it goes. Usage::

    OMP_NUM_THREADS=1 MNIST_DIR=../shared/mnist python benchmarks/app_overhead.py [--browser]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from app_server import CHROMIUM, CHROMIUM_ARGS, start_app, stop_app

from mnist_net import TrainConfig, load_model
from mnist_net.data import find_mnist
from mnist_net.history import history_columns, log_every_for, thin_history
from mnist_net.jobs import TrainingJob

ROOT = Path(__file__).resolve().parents[1]

POLL = 0.25  # the train page's fragment interval for a short run (pages/train.py FAST_POLL_SECONDS)


def config_for(n_train: int, epochs: int) -> TrainConfig:
    """What the train page builds for 784-128-64-10 relu (its defaults otherwise)."""
    return TrainConfig(
        hidden_sizes=(128, 64),
        activation="relu",
        optimizer="adam",
        batch_size=128,
        epochs=epochs,
        n_train=None if n_train >= 60000 else n_train,
        log_every=log_every_for(n_train, 128),
    )


def training_seconds(history: list[dict]) -> float:
    return history[-1]["elapsed"]


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def process_tree(root: int) -> set[int]:
    """``root`` and all its descendants (Linux /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = int(fields[1])
    found, frontier = {root}, {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def cpu_of(pids, children: bool = False) -> float:
    """CPU seconds (user + system) of live processes; with ``children``, of the ones they have reaped."""
    total = 0
    for pid in pids:
        if (fields := _stat(pid)) is not None:
            total += sum(int(f) for f in (fields[13:15] if children else fields[11:13]))
    return total / os.sysconf("SC_CLK_TCK")


def browser_processes(me: int) -> set[int]:
    """Chromium and Playwright's driver: this process's descendants that are not Python."""
    found = set()
    for pid in process_tree(me) - {me}:
        try:
            if not Path(f"/proc/{pid}/comm").read_text().startswith("python"):
                found.add(pid)
        except OSError:
            pass
    return found


def fork_server(root: int) -> int:
    """The multiprocessing fork server under ``root``: it reaps every training child, so its
    children's CPU (cutime + cstime) grows by exactly each finished run's CPU."""
    for pid in process_tree(root):
        try:
            fields = _stat(pid)
            if fields and int(fields[1]) == root and b"forkserver" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            pass
    raise RuntimeError(f"no fork server under process {root}: run one job first")


def run_cli(config: TrainConfig, out: Path) -> tuple[float, float, float]:
    """(wall s, training s, CPU s) of the command line for the same run."""
    path = out / "cli.pkl"
    command = [sys.executable, "-m", "mnist_net", "train", "--quiet", "--force", "--out", str(path)]
    command += ["--hidden", ",".join(map(str, config.hidden_sizes)), "--activation", config.activation]
    command += ["--epochs", str(config.epochs), "--log-every", str(config.log_every)]
    if config.n_train:
        command += ["--n-train", str(config.n_train)]
    before = os.times()
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, capture_output=True)
    wall = time.perf_counter() - started
    after = os.times()
    cpu = after.children_user + after.children_system - before.children_user - before.children_system
    return wall, training_seconds(load_model(path).history_), cpu


def chart_json(history: list[dict]) -> str:
    """What the page builds each poll: two charts from the thinned history, as JSON."""
    table = pd.DataFrame(history_columns(thin_history(history)))
    out = []
    for cols in (["train_acc", "val_acc"], ["loss", "val_loss"]):
        long = table.melt(id_vars="epoch", value_vars=cols, var_name="series").dropna()
        out.append(json.dumps({"data": {"values": long.to_dict(orient="records")}}))
    return "".join(out)


def run_job(config: TrainConfig, mnist_dir: str) -> tuple[float, float, float]:
    """(wall s, training s, training process CPU s) of the app's job, polled as the page polls it."""
    started = time.perf_counter()
    job = TrainingJob(config, mnist_dir).start()
    server = fork_server(os.getpid())
    before = cpu_of([server], children=True)
    while job.snapshot().running:
        snap = job.snapshot()
        if snap.history:
            chart_json(snap.history)
        time.sleep(POLL)
    wall = time.perf_counter() - started
    snap = job.snapshot()
    assert snap.error is None, snap.error
    assert wait_until_reaped(server, before)
    return wall, training_seconds(snap.history), cpu_of([server], children=True) - before


def wait_until_reaped(server: int, before: float, timeout: float = 10) -> bool:
    """The fork server reaps a finished child at once; wait for its CPU to be booked."""
    deadline = time.monotonic() + timeout
    while cpu_of([server], children=True) == before:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class Browser:
    """One app server and one Chromium page for all the repeats."""

    def __init__(self, nice: int = 0) -> None:
        from playwright.sync_api import sync_playwright

        self.nice = nice
        self.work = Path(tempfile.mkdtemp(prefix="app_overhead_"))
        self.proc, self.url = start_app(self.work, {})
        self.pw = sync_playwright().start()
        self.ctx = self.pw.chromium.launch_persistent_context(
            str(self.work / "profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        self.page = self.ctx.new_page()
        self.page.set_default_timeout(600_000)
        self.kept = 0

    def run(self, n_train: int, epochs: int) -> tuple[float, float, float, float, float]:
        """(wall s from the click to the results, training s, CPU s of trainer, server, browser) of the real app."""
        page = self.page
        page.goto(self.url + "/train")
        page.get_by_role("heading", name="Train a network").wait_for()
        if self.kept:  # the form is folded away once there are runs
            page.get_by_text("Settings: change them and train again").click()
        page.locator(".st-key-n_train input").fill(str(n_train))
        page.locator(".st-key-epochs input").fill(str(epochs))
        page.locator(".st-key-hidden_sizes input").fill("128,64")
        # relu is the page's starting activation (app_start_config)
        server, me = self.proc.pid, os.getpid()
        forks = fork_server(server) if self.kept else None  # there since the warm-up run
        browser = browser_processes(me)
        if self.nice:  # the browser yields the CPU, as if it ran on the user's own machine
            for pid in browser:
                try:
                    os.setpriority(os.PRIO_PROCESS, pid, self.nice)
                    # Chromium's renderers start sessions of their own, and Linux (autogroup) shares
                    # the CPU between sessions first: the session's weight is what counts.
                    Path(f"/proc/{pid}/autogroup").write_text(str(self.nice))
                except OSError:
                    pass
        before = cpu_of([forks or 0], children=True), cpu_of([server]), cpu_of(browser) + cpu_of(browser, children=True)
        started = time.perf_counter()
        page.locator(".st-key-start button").click()
        page.locator(".st-key-keep_model button").wait_for()  # the results, with the Keep button
        wall = time.perf_counter() - started
        if forks is None:  # the warm-up run: no figures
            forks = fork_server(server)
        else:
            assert wait_until_reaped(forks, before[0])
        browser = browser_processes(me)
        after = cpu_of([forks], children=True), cpu_of([server]), cpu_of(browser) + cpu_of(browser, children=True)
        trainer, server_cpu, browser_cpu = (a - b for a, b in zip(after, before))
        page.locator(".st-key-keep_model button").click()
        self.kept += 1
        while len(list((self.work / "models").glob("*.pkl"))) < self.kept:
            time.sleep(0.1)
        saved = max((self.work / "models").glob("*.pkl"), key=lambda p: p.stat().st_mtime_ns)
        history = load_model(saved).history_
        return wall, training_seconds(history), trainer, server_cpu, browser_cpu

    def close(self) -> None:
        self.ctx.close()
        self.pw.stop()
        stop_app(self.proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-train", type=int, default=60000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--browser", action="store_true", help="also time the real app in headless Chromium")
    parser.add_argument(
        "--nice-browser",
        type=int,
        default=0,
        help="run Chromium (and its sessions' scheduling groups) at this niceness, e.g. 19: on a 2-core box, "
        "stands in for a browser on the user's own machine",
    )
    args = parser.parse_args()
    mnist_dir = str(find_mnist(progress=False))
    config = config_for(args.n_train, args.epochs)
    print(
        f"config: 784-128-64-10 relu adam, batch 128, {args.n_train} images, {args.epochs} epochs, "
        f"log_every {config.log_every}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; "
        f"browser niceness {args.nice_browser}; "
        f"load average before {os.getloadavg()[0]:.1f}"
    )
    results: dict[str, list[tuple[float, ...]]] = {"cli": [], "job": []}
    run_job(config_for(300, 1), mnist_dir)  # starts this process's fork server
    browser = Browser(args.nice_browser) if args.browser else None
    if browser is not None:
        results["app"] = []
        browser.run(300, 1)  # a first tiny run warms the app server (imports, fork server) once
        browser.kept = 1
    try:
        with tempfile.TemporaryDirectory() as out:
            for r in range(args.repeats):
                results["cli"].append(run_cli(config, Path(out)))
                results["job"].append(run_job(config, mnist_dir))
                if browser is not None:
                    results["app"].append(browser.run(args.n_train, args.epochs))
                print(
                    f"repeat {r + 1}: "
                    + ", ".join(
                        f"{k} {v[-1][0]:.2f} s wall / {v[-1][1]:.2f} s training / CPU "
                        + "+".join(f"{c:.2f}" for c in v[-1][2:])
                        for k, v in results.items()
                    )
                    + f"; load {os.getloadavg()[0]:.1f}"
                )
    finally:
        if browser is not None:
            browser.close()
    base = [statistics.median(r[i] for r in results["cli"]) for i in range(3)]
    for name, runs in results.items():
        wall, train, cpu = (statistics.median(r[i] for r in runs) for i in range(3))
        # Per repeat, against the CLI run just before it (the machine's load changes between repeats).
        paired = [statistics.median(r[i] / c[i] for r, c in zip(runs, results["cli"])) for i in range(3)]
        line = (
            f"{name:>4}: median wall {wall:6.2f} s (ratio {wall / base[0]:.3f}, paired {paired[0]:.3f}); "
            f"training {train:6.2f} s (ratio {train / base[1]:.3f}, paired {paired[1]:.3f}); "
            f"trainer CPU {cpu:5.2f} s (ratio {cpu / base[2]:.3f})"
        )
        if name == "app":
            line += (
                f"; meanwhile server CPU {statistics.median(r[3] for r in runs):.2f} s, "
                f"browser CPU {statistics.median(r[4] for r in runs):.2f} s"
            )
        print(line)
    one, five, _ = os.getloadavg()
    print(f"load average after {one:.1f} (1 min), {five:.1f} (5 min); {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
