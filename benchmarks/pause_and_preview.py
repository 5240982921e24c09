"""What do pausing and the live weights preview cost a training run?

Runs real ``TrainingJob`` children (the app's training processes), interleaved so drifting
load hits every arm alike, for one config (default: 784-128-64-10 relu, 20,000 images,
batch 128, 3 epochs: the train page's kind of run):

- ``preview``: as the app runs it (a weights preview about once a second);
- ``no preview``: ``preview_seconds=None``;
- ``paused``: with previews, paused for ``--pause`` seconds in its first epoch, then resumed;
- ``preview every record``: a preview with every progress record (about 25 an epoch), many
  times the app's rate: a cost too small to see at the app's rate shows up here, multiplied.

Per run: the training loop's own clock per epoch (the last record's ``elapsed`` / epochs;
for the paused arm that clock stands still while paused, so equal figures mean the pause
is not counted) and the child's CPU seconds (from /proc, sampled until it exits) plus,
for the paused arm, the CPU it used while paused. Ratios are medians of each repeat's
ratio to the ``no preview`` run of the same repeat. The direct cost of one preview (the
copy and the pickled send through a pipe) is timed too, as a share of an epoch at the
measured rate. The load average is printed beside the figures. Usage::

    OMP_NUM_THREADS=1 MNIST_DIR=../shared/mnist python benchmarks/pause_and_preview.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import pickle
import statistics
import threading
import time

from mnist_net import MLP, TrainConfig
from mnist_net.data import find_mnist
from mnist_net.history import log_every_for
from mnist_net.jobs import TrainingJob
from mnist_net.worker import PREVIEW_SECONDS, weights_preview


def cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_once(config: TrainConfig, mnist_dir: str, preview: float | None, pause: float) -> dict:
    job = TrainingJob(config, mnist_dir, preview_seconds=preview).start()
    last_cpu = [0.0]
    done = threading.Event()

    def sample() -> None:  # the child's CPU until it exits (the last sample is at most 20 ms early)
        while not done.is_set():
            c = cpu_seconds(job.pid) if job.pid else None
            if c is not None:
                last_cpu[0] = c
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    paused_cpu = None
    if pause:
        while len(job.snapshot().history) < 3:
            time.sleep(0.01)
        job.pause()
        while not job.snapshot().paused:
            time.sleep(0.005)
        before = cpu_seconds(job.pid) or 0.0
        time.sleep(pause)
        paused_cpu = (cpu_seconds(job.pid) or 0.0) - before
        job.resume()
    job.join()
    done.set()
    sampler.join()
    snap = job.snapshot()
    assert snap.status == "done", snap.error
    last = snap.history[-1]
    return {
        "epoch_s": last["elapsed"] / config.epochs,
        "cpu_s": last_cpu[0],
        "paused_cpu_s": paused_cpu,
        "wall_s": snap.finished_at - snap.started,
    }


def preview_cost_seconds(config: TrainConfig, repeats: int = 200) -> float:
    """One preview as the child makes it: the copy, pickling and a pipe send (read on the other side)."""
    params = MLP(config).initialize().params_
    receiver, sender = multiprocessing.Pipe(duplex=False)
    reader = threading.Thread(target=lambda: [receiver.recv() for _ in range(repeats)])
    reader.start()
    started = time.perf_counter()
    for _ in range(repeats):
        sender.send(("weights", weights_preview(params)))
    seconds = (time.perf_counter() - started) / repeats
    reader.join()
    size = len(pickle.dumps(weights_preview(params)))
    print(f"one preview: {1000 * seconds:.3f} ms to copy, pickle and send ({size / 1024:.0f} KiB)")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n-train", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--hidden", default="128,64")
    parser.add_argument("--pause", type=float, default=3.0, help="seconds the paused arm is held")
    args = parser.parse_args()
    mnist_dir = str(find_mnist(download=False))
    config = TrainConfig(
        hidden_sizes=tuple(int(h) for h in args.hidden.split(",")), activation="relu", batch_size=128,
        epochs=args.epochs, n_train=args.n_train, log_every=log_every_for(args.n_train, 128),
    )  # fmt: skip
    print(f"config: {config.architecture}, {args.n_train} images, {args.epochs} epochs; load {os.getloadavg()[0]:.1f}")
    arms = {
        "no preview": (None, 0.0),
        "preview": (PREVIEW_SECONDS, 0.0),
        "paused": (PREVIEW_SECONDS, args.pause),
        "preview every record": (0.0, 0.0),
    }
    results: dict[str, list[dict]] = {a: [] for a in arms}
    loads = []
    for r in range(args.repeats):
        order = list(arms) if r % 2 == 0 else list(reversed(arms))
        for arm in order:
            preview, pause = arms[arm]
            results[arm].append(run_once(config, mnist_dir, preview, pause))
            loads.append(os.getloadavg()[0])
        row = "  ".join(
            f"{a}: {results[a][-1]['epoch_s']:.3f} s/epoch, {results[a][-1]['cpu_s']:.2f} CPU-s" for a in arms
        )
        print(f"repeat {r + 1}: {row}; load {loads[-1]:.1f}", flush=True)
    base = results["no preview"]
    print(f"\nload average during the runs: {min(loads):.1f}-{max(loads):.1f}")
    for arm in arms:
        epoch = statistics.median(x["epoch_s"] for x in results[arm])
        cpu = statistics.median(x["cpu_s"] for x in results[arm])
        paired_epoch = statistics.median(x["epoch_s"] / b["epoch_s"] for x, b in zip(results[arm], base))
        paired_cpu = statistics.median(x["cpu_s"] / b["cpu_s"] for x, b in zip(results[arm], base))
        print(
            f"{arm:>20}: {epoch:.3f} s/epoch (x{paired_epoch:.3f} paired), {cpu:.2f} CPU-s (x{paired_cpu:.3f} paired)"
        )
    paused_cpu = [x["paused_cpu_s"] for x in results["paused"]]
    print(f"CPU used while paused {args.pause:g} s: {', '.join(f'{c:.2f}' for c in paused_cpu)} s")
    one = preview_cost_seconds(config)
    # Previews go by the training clock (wall time), so a starved run sends more per CPU-second.
    shares = [(1 + x["epoch_s"] * args.epochs / PREVIEW_SECONDS) * one / x["cpu_s"] for x in results["preview"]]
    print(
        f"direct cost: one preview per training second, {1000 * one:.2f} ms each = "
        f"{100 * statistics.median(shares):.3f}% of the run's CPU (max {100 * max(shares):.3f}%); "
        f"load {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
