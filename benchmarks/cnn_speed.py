"""CNN speed: our NumPy CNN against the same network in PyTorch on the CPU, and the GEMM limit.

For a layer spec (default: the ``cnn`` preset) at one batch size and one thread each, it times
training steps (forward, backward, Adam) on MNIST images:

- ours: ``functional.loss_and_grads`` + ``optim.Adam``, exactly what the training loop runs
  per batch (dropout on, float32, NHWC);
- PyTorch: the same layers (Conv2d "same" padding, MaxPool2d, Linear, Dropout), ``Adam(fused=True)``,
  NCHW (its native layout), ``torch.set_num_threads(1)``;
- the GEMM limit: only the matrix products an epoch of ours needs (forward, weight gradients,
  input gradients except the image's), on preallocated float32 operands of the same shapes.
  Epoch FLOPs over that time is this machine's GEMM rate; no implementation on this BLAS can
  beat that floor.

The three take turns (``--rounds`` rounds of ``--batches`` batches each), so a busy spell on
this shared machine hits them alike; the figures are medians of the rounds, extrapolated to an
epoch of 55,000 images (60,000 minus the validation split) with the load average beside them,
in wall time and in CPU time (less at the mercy of the scheduler when the load exceeds the
cores), and the ratios also paired round by round.
``--profile`` adds where our step's time goes, per layer and direction.

Usage (from the repository root; PyTorch is for benchmarks only: ``pip install torch==2.13.0``):
    MNIST_DIR=/work/shared/mnist python benchmarks/cnn_speed.py                 # ~3 min
    MNIST_DIR=/work/shared/mnist python benchmarks/cnn_speed.py --quick --profile

Non-goals: asserting timings, GPUs, other thread counts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

from mnist_net import load_mnist
from mnist_net.architecture import flops_per_image, layer_shapes, param_shapes, parse_layers
from mnist_net.functional import init_params, loss_and_grads
from mnist_net.optim import Adam

EPOCH_IMAGES = 55_000


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.1f} / {five:.1f} / {fifteen:.1f}"


def our_step(layers, batch_size: int, seed: int = 0):
    """A closure running one training step of ours on the next batch."""
    params = init_params(layers, "relu", np.random.default_rng(seed))
    opt = Adam(1e-3)
    rng = np.random.default_rng(seed + 1)

    def step(xb: np.ndarray, yb: np.ndarray) -> None:
        _, grads, _ = loss_and_grads(params, xb, yb, "relu", 0.0, layers, rng)
        opt.step(params, grads)

    return step


def torch_step(layers, batch_size: int, seed: int = 0):
    """The same network in PyTorch (NCHW), one training step per call."""
    import torch  # benchmarks only: never a dependency of the product

    torch.manual_seed(seed)
    modules: list = []
    shapes = layer_shapes(layers)
    for i, (layer, before) in enumerate(zip(layers, shapes[:-1])):
        if layer.kind == "conv":
            modules.append(
                torch.nn.Conv2d(before[2], layer.size, layer.kernel, padding="same" if layer.padding == "same" else 0)
            )
            modules.append(torch.nn.ReLU())
        elif layer.kind == "pool":
            modules.append(torch.nn.MaxPool2d(layer.size))
        elif layer.kind == "dense":
            if len(before) == 3:
                modules.append(torch.nn.Flatten())
            modules.append(torch.nn.Linear(int(np.prod(before)), layer.size))
            if i < len(layers) - 1:
                modules.append(torch.nn.ReLU())
        elif layer.kind == "dropout":
            modules.append(torch.nn.Dropout(layer.rate))
    net = torch.nn.Sequential(*modules)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(xb: np.ndarray, yb: np.ndarray) -> None:
        x = torch.from_numpy(xb).reshape(len(xb), 1, 28, 28)
        y = torch.from_numpy(yb)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()

    return step


def gemm_step(layers, batch_size: int):
    """Only the GEMMs of one training step of ours, on preallocated operands of its shapes."""
    shapes = layer_shapes(layers)
    rng = np.random.default_rng(0)
    products = []  # (A, B, out) with out = A @ B
    first = True
    for (
        layer,
        before,
        after,
    ) in zip(layers, shapes[:-1], shapes[1:]):
        if not layer.has_params:
            continue
        if layer.kind == "conv":
            rows = batch_size * after[0] * after[1]
            k = layer.kernel[0] * layer.kernel[1] * before[2]
        else:
            rows, k = batch_size, int(np.prod(before))
        n = layer.size

        def mat(*shape):
            return rng.random(shape, dtype=np.float32)

        products.append((mat(rows, k), mat(k, n), np.empty((rows, n), np.float32)))  # forward
        products.append((mat(k, rows), mat(rows, n), np.empty((k, n), np.float32)))  # dW = cols.T @ dZ
        if not first:
            products.append((mat(rows, n), mat(n, k), np.empty((rows, k), np.float32)))  # dX = dZ @ W.T
        first = False

    def step(xb: np.ndarray, yb: np.ndarray) -> None:
        for a, b, out in products:
            np.matmul(a, b, out=out)

    return step


def profile(layers, X: np.ndarray, y: np.ndarray, batch_size: int, batches: int) -> None:
    """Where our step's time goes: cProfile's top functions over ``batches`` steps."""
    import cProfile
    import pstats

    step = our_step(layers, batch_size)
    pr = cProfile.Profile()
    pr.enable()
    for b in range(batches):
        step(X[b * batch_size : (b + 1) * batch_size], y[b * batch_size : (b + 1) * batch_size])
    pr.disable()
    pstats.Stats(pr).sort_stats("tottime").print_stats(14)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", default="cnn", help="layer spec or preset (default: cnn)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=10, help="batches per round and contender")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="3 rounds of 4 batches")
    parser.add_argument("--profile", action="store_true", help="also profile our step")
    args = parser.parse_args()
    if args.quick:
        args.batches, args.rounds = 4, 3
    layers = parse_layers(args.layers)
    data = load_mnist(download=False)
    need = args.batches * args.batch_size
    X = (data.X_train[:need].reshape(need, -1) / np.float32(255)).astype(np.float32)
    y = data.y_train[:need].astype(np.int64)
    import torch

    torch.set_num_threads(1)
    with threadpool_limits(limits=1, user_api="blas"):
        contenders = {
            "ours": our_step(layers, args.batch_size),
            "pytorch": torch_step(layers, args.batch_size),
            "GEMM limit": gemm_step(layers, args.batch_size),
        }
        seconds: dict[str, list[float]] = {name: [] for name in contenders}
        cpu: dict[str, list[float]] = {name: [] for name in contenders}
        loads = [load()]
        for step in contenders.values():  # warm-up: allocations, thread pools
            step(X[: args.batch_size], y[: args.batch_size])
        for _ in range(args.rounds):
            for name, step in contenders.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                for b in range(args.batches):
                    rows = slice(b * args.batch_size, (b + 1) * args.batch_size)
                    step(X[rows], y[rows])
                seconds[name].append((time.perf_counter() - start) / args.batches)
                cpu[name].append((time.process_time() - start_cpu) / args.batches)
            loads.append(load())
        if args.profile:
            profile(layers, X, y, args.batch_size, args.batches)
    forward, backward = flops_per_image(layers)
    epoch_batches = -(-EPOCH_IMAGES // args.batch_size)
    epoch_flops = EPOCH_IMAGES * (forward + backward)
    print(f"layers: {args.layers} ({sum(np.prod(w) + np.prod(b) for w, b in param_shapes(layers)):,} parameters)")
    print(
        f"batch {args.batch_size}, 1 thread each, {args.rounds} interleaved rounds of {args.batches} batches; "
        f"epoch = {EPOCH_IMAGES:,} images = {epoch_batches} batches, {epoch_flops / 1e12:.2f} TFLOP of GEMMs"
    )
    print(f"{loads[0]} before, {loads[-1]} after")
    medians = {name: statistics.median(s) for name, s in seconds.items()}
    for name, m in medians.items():
        spread = f"{min(seconds[name]) * epoch_batches:.1f}-{max(seconds[name]) * epoch_batches:.1f}"
        rate = epoch_flops / (m * epoch_batches) / 1e9
        print(
            f"  {name:<11} {m * 1e3:7.1f} ms/batch  {m * epoch_batches:6.1f} s/epoch "
            f"(rounds {spread})  {rate:5.1f} GFLOP/s"
        )
    cpu_medians = {name: statistics.median(s) for name, s in cpu.items()}
    print("  CPU s/epoch: " + ", ".join(f"{name} {m * epoch_batches:.1f}" for name, m in cpu_medians.items()))

    def paired(a: str, b: str, times: dict[str, list[float]]) -> float:
        """Median over rounds of a's time over b's in the same round (neighbours in time)."""
        return statistics.median(x / z for x, z in zip(times[a], times[b]))

    for other, goal in (("pytorch", " (goal at most 1.5x)"), ("GEMM limit", "")):
        print(
            f"ours / {other}: {medians['ours'] / medians[other]:.2f}x of medians, "
            f"{paired('ours', other, seconds):.2f}x paired by round, "
            f"{paired('ours', other, cpu):.2f}x in CPU time{goal}"
        )


if __name__ == "__main__":
    main()
