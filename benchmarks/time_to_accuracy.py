"""Time to accuracy: how long the default 784-128-64-10 takes to reach a test accuracy, ours vs PyTorch.

What a user waits for is not an epoch but a good network. For each implementation (mnist_net's
own loop; PyTorch on the CPU with ``Adam(fused=True)``; both 1 thread, the same network, sigmoid,
the same initial weights, all 60,000 training images, per-batch uint8 -> float32 scaling in
both) it measures the training seconds until the official test set's accuracy first reaches
``--target`` (97.5%), checked every quarter epoch; the checks themselves are not timed. Wall and
CPU seconds are both reported (1 thread each: CPU time is the work done, which other processes
on a shared machine disturb far less than the wall clock).

1. Grid: every batch size x learning rate of the small grid below, once each (seed 0), the two
   implementations taking turns point by point so that the machine's load hits them alike.
2. Each implementation's fastest grid point is then run again ``--repeats`` times (seeds 0, 1,
   ...), ours and PyTorch alternating; the report gives medians, the load average beside every
   run and the ratio of the medians (goal: ours <= 0.8x PyTorch's time).

PyTorch is needed only here (never by mnist_net):  pip install torch==2.13.0
(CPU build: pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu).

    MNIST_DIR=/work/shared/mnist python benchmarks/time_to_accuracy.py [--quick]

Non-goals: asserting timings; GPUs; other networks (bench_speed.py times epochs).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # the checkout's mnist_net and bench_speed

from threadpoolctl import threadpool_limits  # noqa: E402

from mnist_net import MLP, TrainConfig, load_mnist  # noqa: E402

BATCHES = (64, 128, 256, 512)
RATES = (1e-3, 2e-3, 4e-3, 8e-3)
TARGET_RATIO = 0.8  # ours at most this fraction of PyTorch's time
CHECKS_PER_EPOCH = 4


def ours_time_to(data, batch: int, lr: float, target: float, max_epochs: int, seed: int) -> tuple[float, float, float]:
    """(wall and CPU seconds of training until test accuracy >= target (inf if never), the accuracy then)."""
    batches = -(-len(data.X_train) // batch)
    config = TrainConfig(
        batch_size=batch,
        learning_rate=lr,
        epochs=max_epochs,
        val_fraction=0.0,
        seed=seed,
        log_every=max(1, batches // CHECKS_PER_EPOCH),
        threads=1,
    )
    model = MLP(config)
    steps = model.iter_fit(data.X_train, data.y_train)
    clock, cpu, acc = 0.0, 0.0, 0.0
    while True:
        start, start_cpu = time.perf_counter(), time.process_time()
        record = next(steps, None)
        clock, cpu = clock + time.perf_counter() - start, cpu + time.process_time() - start_cpu
        if record is None:
            return float("inf"), float("inf"), acc
        with threadpool_limits(1):
            acc = model.score(data.X_test, data.y_test)
        if acc >= target:
            steps.close()
            return clock, cpu, acc


def torch_time_to(data, batch: int, lr: float, target: float, max_epochs: int, seed: int) -> tuple[float, float, float]:
    """The same for PyTorch: same network and initial weights, fused Adam, 1 thread."""
    import torch
    import torch.nn.functional as F
    from bench_speed import torch_network

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    X = torch.from_numpy(np.array(data.X_train))  # uint8 (a writable copy), scaled batch by batch as ours is
    Y = torch.from_numpy(data.y_train.astype(np.int64))
    X_test = torch.from_numpy(np.array(data.X_test)).float().div_(255)
    y_test = torch.from_numpy(data.y_test.astype(np.int64))
    net = torch_network("sigmoid", seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr, fused=True)
    generator = torch.Generator().manual_seed(seed)
    n = len(X)
    batches = -(-n // batch)
    check_every = max(1, batches // CHECKS_PER_EPOCH)
    clock, cpu, acc = 0.0, 0.0, 0.0
    for _ in range(max_epochs):
        start, start_cpu = time.perf_counter(), time.process_time()
        order = torch.randperm(n, generator=generator)
        for b in range(batches):
            idx = order[b * batch : (b + 1) * batch]
            xb = X.index_select(0, idx).float().div_(255)
            logits = net(xb)
            loss = F.cross_entropy(logits, Y.index_select(0, idx))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if (b + 1) % check_every == 0 or b == batches - 1:
                clock, cpu = clock + time.perf_counter() - start, cpu + time.process_time() - start_cpu
                with torch.inference_mode():
                    acc = float((net(X_test).argmax(1) == y_test).float().mean())
                if acc >= target:
                    return clock, cpu, acc
                start, start_cpu = time.perf_counter(), time.process_time()
    return float("inf"), float("inf"), acc


RUNNERS = {"ours": ours_time_to, "PyTorch (fused Adam)": torch_time_to}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.975)
    parser.add_argument("--max-epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5, help="runs of each best grid point (seeds 0..)")
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)), help="grid batch sizes")
    parser.add_argument("--rates", default=",".join(map(str, RATES)), help="grid Adam learning rates")
    parser.add_argument("--quick", action="store_true", help="smoke run: 4,000 images, target 0.85, tiny grid")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    if importlib.util.find_spec("torch") is None:
        print(
            "time_to_accuracy.py compares against PyTorch, which is not installed. Install the CPU build "
            "(benchmarks only; mnist_net never needs it):\n"
            "  pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu",
            file=sys.stderr,
        )
        return 2
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    data = load_mnist(args.data_dir, progress=False)
    grid_batches = tuple(int(b) for b in args.batches.split(","))
    grid_rates = tuple(float(r) for r in args.rates.split(","))
    if args.quick:

        class Small:
            X_train, y_train = data.X_train[:4000], data.y_train[:4000]
            X_test, y_test = data.X_test[:2000], data.y_test[:2000]

        data = Small  # type: ignore[assignment]
        args.target, args.max_epochs, args.repeats = 0.85, 5, 1
        grid_batches, grid_rates = (128,), (2e-3,)
    print(
        f"target test accuracy {args.target:.3f}; 784-128-64-10 sigmoid, 1 thread; grid {grid_batches} x {grid_rates}"
    )
    best: dict[str, tuple[float, int, float]] = {}
    with threadpool_limits(1):
        print(f"{'batch':>6}{'lr':>8}" + "".join(f"{name:>26}" for name in RUNNERS) + f"{'load':>7}")
        for batch in grid_batches:
            for lr in grid_rates:
                cells = []
                for name, run in RUNNERS.items():
                    seconds, _, acc = run(data, batch, lr, args.target, args.max_epochs, 0)
                    cells.append(f"{seconds:>16.2f} s ({acc:.4f})")
                    if seconds < best.get(name, (float("inf"),))[0]:
                        best[name] = (seconds, batch, lr)
                print(
                    f"{batch:>6}{lr:>8g}" + "".join(f"{c:>26}" for c in cells) + f"{os.getloadavg()[0]:>7.1f}",
                    flush=True,
                )
        if len(best) < len(RUNNERS):
            print("an implementation never reached the target inside the grid; raise --max-epochs")
            return 1
        print(f"\nbest grid points, each run {args.repeats} times (seeds 0..), taking turns:")
        times: dict[str, list[float]] = {name: [] for name in RUNNERS}
        cpus: dict[str, list[float]] = {name: [] for name in RUNNERS}
        for seed in range(args.repeats):
            order = list(RUNNERS) if seed % 2 == 0 else list(RUNNERS)[::-1]  # who goes first alternates
            for name in order:
                _, batch, lr = best[name]
                seconds, cpu, acc = RUNNERS[name](data, batch, lr, args.target, args.max_epochs, seed)
                times[name].append(seconds)
                cpus[name].append(cpu)
                print(
                    f"  {name}, batch {batch}, lr {lr:g}, seed {seed}: {seconds:.2f} s, CPU {cpu:.2f} s "
                    f"(test {acc:.4f}), load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
    medians = {name: float(np.median(t)) for name, t in times.items()}
    cpu_medians = {name: float(np.median(t)) for name, t in cpus.items()}
    for name, t in times.items():
        _, batch, lr = best[name]
        print(
            f"{name}: batch {batch}, lr {lr:g}: median {medians[name]:.2f} s, CPU {cpu_medians[name]:.2f} s "
            f"(runs {', '.join(f'{x:.2f}' for x in t)})"
        )
    torch_name = "PyTorch (fused Adam)"
    for what, m in (("wall", medians), ("CPU", cpu_medians)):
        ratio = m["ours"] / m[torch_name]
        print(
            f"ours / PyTorch, median {what} time to {args.target:.1%}: {ratio:.2f}x "
            f"(target <= {TARGET_RATIO}x): {'MET' if ratio <= TARGET_RATIO else 'MISSED'}"
        )
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
