"""Predict latency of the model the app ships, on one image and on many different canvases.

Times, with 1 BLAS thread: ``predict_proba`` of the shipped model (``load_model()``) on one
28x28 input, and ``canvas_to_input`` + ``predict_proba`` on ``--canvases`` different 280x280
drawings (MNIST *test* digits redrawn by ``benchmarks/drawn_digits.build_drawn_set`` in every
colour scheme), each canvas timed once, in a shuffled order: one canvas timed again and again
stays in the CPU's caches and takes its cheapest path, which no user's drawing does. Reports
median and 95th percentile with the load average.

    MNIST_DIR=/work/shared/mnist python benchmarks/predict_latency.py [--canvases 1000] [--model PATH]

Non-goals: the browser round trip (tests/test_browser_draw.py -k speed times that).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # the checkout's mnist_net and drawn_digits

from drawn_digits import build_drawn_set  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from mnist_net import canvas_to_input, load_mnist, load_model  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--canvases", type=int, default=1000, help="different canvases (all schemes together)")
    parser.add_argument("--model", default=None, help="model file (default: the shipped one)")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    model = load_model(args.model)
    data = load_mnist(args.data_dir, progress=False)
    canvases, _, _ = build_drawn_set(data.X_test, data.y_test, max(1, args.canvases // 5), seed=1)
    every = [c for scheme in canvases.values() for c in scheme]
    order = np.random.default_rng(0).permutation(len(every))
    x = canvas_to_input(every[0])
    with threadpool_limits(1):
        for _ in range(50):
            model.predict_proba(x[None])
        one = []
        for i in range(2000):
            xi = data.X_test[i % len(data.X_test)][None].astype(np.float32) / 255
            t = time.perf_counter()
            model.predict_proba(xi)
            one.append(time.perf_counter() - t)
        pipeline = []
        for i in order:
            t = time.perf_counter()
            inp = canvas_to_input(every[i])
            if inp is not None:
                model.predict_proba(inp[None])
            pipeline.append(time.perf_counter() - t)
    one_us, pipe_ms = np.array(one) * 1e6, np.array(pipeline) * 1e3
    print(f"model: {args.model or 'shipped'} ({'-'.join(map(str, model.layer_sizes))}, {model.activation})")
    print(
        f"predict_proba, one image (2,000 different test images): median {np.median(one_us):.0f} µs, "
        f"p95 {np.percentile(one_us, 95):.0f} µs"
    )
    print(
        f"canvas_to_input + predict_proba, {len(every)} different 280x280 canvases (each once): "
        f"median {np.median(pipe_ms):.2f} ms, p95 {np.percentile(pipe_ms, 95):.2f} ms"
    )
    print(f"load average: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
