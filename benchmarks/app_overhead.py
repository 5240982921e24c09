"""How much does training from the web page cost, compared with a plain training loop?

Side by side in one run, same config and data, interleaved and repeated:

- ``plain``: ``for _ in iter_training(...): pass``, as the command line does.
- ``job+poll``: a ``TrainingJob`` worker thread while the main thread does what the train
  page's fragment does every POLL seconds: take a snapshot, build both charts from the
  (thinned) history and serialise them to JSON, roughly what Streamlit sends to the browser.
- ``app`` (with ``--browser``): the real thing: ``streamlit run app.py`` plus headless
  Chromium showing the train page with its live chart, started from the form; the training
  time is read from the saved model's history.

The figure compared is training throughput (images/s over the whole run, from the
progress records' own clock). Usage::

    OMP_NUM_THREADS=1 MNIST_DIR=../shared/mnist python benchmarks/app_overhead.py [--browser]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
from app_server import CHROMIUM, CHROMIUM_ARGS, start_app, stop_app

from mnist_net import MLP, TrainConfig, load_mnist, load_model, save_model
from mnist_net.history import history_columns, log_every_for, thin_history
from mnist_net.jobs import TrainingJob
from mnist_net.metrics import evaluate

ROOT = Path(__file__).resolve().parents[1]

POLL = 1.0  # the train page's fragment interval (pages/train.py POLL_SECONDS)


def config_for(n_train: int, epochs: int) -> TrainConfig:
    return TrainConfig(
        hidden_sizes=(128, 64),
        activation="relu",
        optimizer="adam",
        batch_size=128,
        epochs=epochs,
        n_train=n_train,
        log_every=log_every_for(n_train, 128),
    )


def throughput(history: list[dict]) -> float:
    """Images/s over the whole run: the last record's samples_per_s is seen / elapsed."""
    return history[-1]["samples_per_s"]


def cpu_seconds(pids) -> float:
    """User + system CPU seconds used so far by the given live processes (Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def descendants(root: int) -> set[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError):
                pass
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def run_plain(data, config, out: Path) -> tuple[float, float]:
    """The command line's path: train, evaluate, save. (images/s, CPU seconds)."""
    cpu = time.process_time()
    model = MLP(config)
    for _ in model.iter_fit(data.X_train, data.y_train):
        pass
    model.metrics_ = {"test_accuracy": evaluate(model, data.X_test, data.y_test).accuracy}
    save_model(model, out / "plain.pkl")
    return throughput(model.history_), time.process_time() - cpu


def chart_json(history: list[dict]) -> str:
    """What the page builds each poll: two charts from the thinned history, as JSON."""
    table = pd.DataFrame(history_columns(thin_history(history)))
    out = []
    for cols in (["train_acc", "val_acc"], ["loss", "val_loss"]):
        long = table.melt(id_vars="epoch", value_vars=cols, var_name="series").dropna()
        spec = {
            "mark": {"type": "line", "point": True},
            "encoding": {
                "x": {"field": "epoch", "type": "quantitative"},
                "y": {"field": "value", "type": "quantitative"},
                "color": {"field": "series", "type": "nominal"},
            },
            "data": {"values": long.to_dict(orient="records")},
        }
        out.append(json.dumps(spec))
    return "".join(out)


def run_job_with_polling(data, config, out: Path) -> tuple[float, float]:
    """The page's path without Streamlit: worker thread + a poller building the charts."""
    cpu = time.process_time()
    job = TrainingJob(config, data, save_dir=out).start()
    while job.snapshot().running:
        snap = job.snapshot()
        if snap.history:
            chart_json(snap.history)
        time.sleep(POLL)
    snap = job.snapshot()
    assert snap.error is None, snap.error
    return throughput(snap.history), time.process_time() - cpu


def run_app_in_browser(n_train: int, epochs: int) -> tuple[float, float, float]:
    """The real app: (images/s, server CPU seconds, browser CPU seconds) from Start to results."""
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="app_overhead_"))
    proc, url = start_app(work, {})
    try:
        with sync_playwright() as pw:
            ctx = pw.chromium.launch_persistent_context(
                str(work / "profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            page = ctx.new_page()
            page.set_default_timeout(600_000)
            page.goto(url + "/train")
            # A tiny first run loads MNIST into the server's cache, so the timed run measures training.
            page.locator(".st-key-n_train input").fill("100")
            page.locator(".st-key-epochs input").fill("1")
            page.locator(".st-key-start button").click()
            page.get_by_text("Test accuracy").first.wait_for()
            page.get_by_text("Settings: change them and train again").click()
            page.locator(".st-key-n_train input").fill(str(n_train))
            page.locator(".st-key-epochs input").fill(str(epochs))
            page.locator(".st-key-hidden_sizes input").fill("128,64")
            browser = descendants(os.getpid()) - {proc.pid}
            server_cpu, browser_cpu = cpu_seconds([proc.pid]), cpu_seconds(browser)
            page.locator(".st-key-start button").click()
            while len(list((work / "models").glob("*.pkl"))) < 2:  # the timed run's model is saved
                time.sleep(0.2)
            page.get_by_text("Test accuracy").first.wait_for()
            server_cpu = cpu_seconds([proc.pid]) - server_cpu
            browser_cpu = cpu_seconds(browser) - browser_cpu
            ctx.close()
        saved = max((work / "models").glob("*.pkl"), key=lambda p: p.stat().st_mtime_ns)
        return throughput(load_model(saved).history_), server_cpu, browser_cpu
    finally:
        stop_app(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-train", type=int, default=60000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--browser", action="store_true", help="also time the real app in headless Chromium")
    args = parser.parse_args()
    data = load_mnist(progress=False)
    config = config_for(args.n_train, args.epochs)
    print(
        f"config: 784-128-64-10 relu adam, batch 128, {args.n_train} images, {args.epochs} epochs, "
        f"log_every {config.log_every}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}"
    )
    results: dict[str, list[tuple[float, ...]]] = {"plain": [], "job+poll": []}
    if args.browser:
        results["app"] = []
    with tempfile.TemporaryDirectory() as out:
        for r in range(args.repeats):
            results["plain"].append(run_plain(data, config, Path(out)))
            results["job+poll"].append(run_job_with_polling(data, config, Path(out)))
            if args.browser:
                results["app"].append(run_app_in_browser(args.n_train, args.epochs))
            print(
                f"repeat {r + 1}: "
                + ", ".join(
                    f"{k} {v[-1][0]:,.0f} img/s, CPU " + "+".join(f"{c:.1f}" for c in v[-1][1:]) + " s"
                    for k, v in results.items()
                )
            )
    base_rate = statistics.median(r[0] for r in results["plain"])
    base_cpu = statistics.median(r[1] for r in results["plain"])
    for name, runs in results.items():
        rate = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        line = (
            f"{name:>9}: median {rate:8,.0f} images/s (ratio {rate / base_rate:.3f}); "
            f"trainer-process CPU {cpu:.1f} s (ratio {cpu / base_cpu:.3f})"
        )
        if name == "app":
            line += f"; browser CPU {statistics.median(r[2] for r in runs):.1f} s"
        print(line)


if __name__ == "__main__":
    main()
