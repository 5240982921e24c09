"""Augmentation cost per batch against the training step it feeds, before and after a change.

For each network (the default 784-128-64-10 sigmoid, the shipped 784-400-200-10 relu) and batch
size, times per batch: ``augment_batch`` as it is now, ``augment_batch`` from an earlier commit
(``--baseline``, read with ``git show`` and loaded beside the current one), both with the
augmentation defaults and with everything on (slant, elastic, styles: current only), and the
training step (forward, backward, Adam) on the same batch. Every measurement takes its turn
in each round, so the machine's load hits them alike; the report gives medians (never best-of),
the load average of the run, and the ratio augmentation / step (goal: at most 0.5x).

    MNIST_DIR=/work/shared/mnist python benchmarks/bench_augment.py [--baseline 4c38ee0] [--rounds 200]

Non-goals: asserting timings; the augmented epoch (bench_speed.py times epochs).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the checkout's mnist_net

from threadpoolctl import threadpool_limits  # noqa: E402

from mnist_net import TrainConfig, load_mnist  # noqa: E402
from mnist_net.augment import augment_batch  # noqa: E402
from mnist_net.data import uint8_to_float  # noqa: E402
from mnist_net.functional import init_params, loss_and_grads  # noqa: E402
from mnist_net.optim import Adam  # noqa: E402

NETWORKS = {
    "784-128-64-10 sigmoid (default)": ((128, 64), "sigmoid"),
    "784-400-200-10 relu (shipped)": ((400, 200), "relu"),
}
EVERYTHING = TrainConfig(max_slant=12.0, elastic_prob=0.5, style_prob=0.3)
TARGET = 0.5


def load_baseline(rev: str):
    """augment_batch as it was at git revision ``rev`` (None if it cannot be read)."""
    try:
        source = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{rev}:mnist_net/augment.py"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    folder = Path(tempfile.mkdtemp(prefix="augment_baseline_"))
    path = folder / "augment_baseline.py"
    path.write_text(
        source.replace("from .config", "from mnist_net.config").replace("from .data", "from mnist_net.data")
    )
    spec = importlib.util.spec_from_file_location("augment_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.augment_batch


def measure(data, hidden, activation: str, batch: int, before, rounds: int) -> dict[str, float]:
    """Median milliseconds per batch of each task, the tasks taking turns round by round."""
    rng = np.random.default_rng(0)
    params = init_params([784, *hidden, 10], activation, rng)
    opt = Adam(1e-3)
    idx = rng.choice(len(data.X_train), batch, replace=False)
    xb, yb = uint8_to_float(data.X_train[idx]), data.y_train[idx].astype(np.int64)

    def step():
        _, grads, _ = loss_and_grads(params, xb, yb, activation, 0.0)
        opt.step(params, grads)

    tasks = {
        "step": step,
        "after": lambda: augment_batch(xb, rng, TrainConfig(), yb),
        "all on": lambda: augment_batch(xb, rng, EVERYTHING, yb),
    }
    if before is not None:
        tasks["before"] = lambda: before(xb, rng, TrainConfig())
    times: dict[str, list[float]] = {k: [] for k in tasks}
    for task in tasks.values():
        task()  # warm-up
    for r in range(rounds):
        order = list(tasks)[r % len(tasks) :] + list(tasks)[: r % len(tasks)]
        for k in order:
            start = time.perf_counter()
            tasks[k]()
            times[k].append(time.perf_counter() - start)
    return {k: float(np.median(v)) * 1e3 for k, v in times.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="4c38ee0", help="git revision of the 'before' augment.py")
    parser.add_argument("--batches", default="128,256")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    data = load_mnist(args.data_dir, progress=False)
    before = load_baseline(args.baseline)
    loads = [os.getloadavg()[0]]
    print(f"augmentation / training step per batch, medians of {args.rounds} interleaved rounds, 1 thread")
    print(
        f"{'network':<34}{'batch':>6}{'step ms':>9}{'before ms':>11}{'after ms':>10}{'all on ms':>11}"
        f"{'before/step':>13}{'after/step':>12}{'all on/step':>13}"
    )
    with threadpool_limits(1):
        for name, (hidden, activation) in NETWORKS.items():
            for batch in (int(b) for b in args.batches.split(",")):
                ms = measure(data, hidden, activation, batch, before, args.rounds)
                loads.append(os.getloadavg()[0])
                b_ms = ms.get("before", float("nan"))
                print(
                    f"{name:<34}{batch:>6}{ms['step']:>9.2f}{b_ms:>11.2f}{ms['after']:>10.2f}{ms['all on']:>11.2f}"
                    f"{b_ms / ms['step']:>13.2f}{ms['after'] / ms['step']:>12.2f}{ms['all on'] / ms['step']:>13.2f}",
                    flush=True,
                )
    print(
        f"goal: augmentation (defaults) / step <= {TARGET}; 'before' = augment.py at {args.baseline}; "
        f"'all on' adds slant 12, elastic 0.5, styles 0.3"
    )
    print(f"load average: {min(loads):.1f}-{max(loads):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
