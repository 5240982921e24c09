"""Drawn-digit robustness benchmark: does the model read digits the way people draw them?

Builds a seeded set from MNIST *test* images (never trained on): each digit redrawn on a
280x280 canvas at a random size (35-85% of the canvas height), random position and pen
width, in every colour scheme (mnist_net.synth.SCHEMES; the same geometry in each, so the
schemes compare like for like). Each canvas goes through ``canvas_to_input`` and the model;
the same canvases also go through the naive pipeline (resize the whole canvas to 28x28),
side by side. Also times ``canvas_to_input`` + predict for one 280x280 RGBA canvas.

    python benchmarks/drawn_digits.py [--model PATH] [--n N] [--seed S]

Prints a table: accuracy per colour scheme, per size and pen-width band, overall; the
share of canvases read as "no digit" (None); and the latency (median and 95th percentile).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from mnist_net import canvas_to_input, load_mnist, load_model
from mnist_net.synth import SCHEMES, naive_input, random_stroke, render


def build_drawn_set(images: np.ndarray, labels: np.ndarray, n: int, seed: int = 0):
    """Pick n digits (seeded, stratified by nothing: uniform) and draw each in every scheme.

    Returns (canvases {scheme: list of arrays}, labels (n,), strokes list of Stroke).
    """
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(images), size=min(n, len(images)), replace=False)
    strokes = [random_stroke(rng) for _ in idx]
    canvases = {s: [render(images[i], st, s, rng) for i, st in zip(idx, strokes)] for s in SCHEMES}
    return canvases, np.asarray(labels)[idx].astype(np.int64), strokes


def predict_canvases(model, canvases: list[np.ndarray], pipeline) -> np.ndarray:
    """Predicted digit per canvas through ``pipeline`` (canvas -> (784,) or None); -1 for None."""
    inputs = [pipeline(c) for c in canvases]
    ok = np.array([x is not None for x in inputs])
    pred = np.full(len(inputs), -1, np.int64)
    if ok.any():
        pred[ok] = model.predict(np.stack([x for x in inputs if x is not None]))
    return pred


def evaluate_drawn(model, canvases, labels) -> dict[str, dict[str, np.ndarray]]:
    """{pipeline: {scheme: predictions}} for the preprocessed and the naive pipeline."""
    return {
        name: {s: predict_canvases(model, canvases[s], fn) for s in canvases}
        for name, fn in (("canvas_to_input", canvas_to_input), ("naive resize", naive_input))
    }


def latency(model, canvas: np.ndarray, repeats: int = 300) -> tuple[float, float]:
    """(median, 95th percentile) milliseconds of canvas_to_input + predict_proba on one canvas."""
    for _ in range(10):
        model.predict_proba(canvas_to_input(canvas)[None])
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        model.predict_proba(canvas_to_input(canvas)[None])
        times.append(time.perf_counter() - t)
    ms = np.array(times) * 1e3
    return float(np.median(ms)), float(np.percentile(ms, 95))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model file (default: the shipped assets/default_model.pkl)")
    parser.add_argument("--n", type=int, default=1000, help="digits per colour scheme (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None, help="MNIST folder (default: $MNIST_DIR or the cache)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    model = load_model(args.model)
    data = load_mnist(args.data_dir, progress=False)
    t0 = time.perf_counter()
    canvases, labels, strokes = build_drawn_set(data.X_test, data.y_test, args.n, args.seed)
    build_s = time.perf_counter() - t0
    results = evaluate_drawn(model, canvases, labels)

    print(f"model: {args.model or 'default'} ({'-'.join(map(str, model.layer_sizes))}, {model.activation})")
    print(f"MNIST test accuracy (official 10k): {model.score(data.X_test, data.y_test):.4f}")
    print(
        f"drawn set: {len(labels)} MNIST test digits x {len(SCHEMES)} colour schemes, seed {args.seed} "
        f"(built in {build_s:.0f} s)"
    )
    print(f"{'condition':<28}{'canvas_to_input':>17}{'naive resize':>14}{'no digit':>10}")
    heights = np.array([s.height_frac for s in strokes])
    pens = np.array([s.pen for s in strokes])
    rows = [(s, np.ones(len(labels), bool), [s]) for s in SCHEMES]
    rows += [
        (f"height {lo:.2f}-{hi:.2f}", (heights >= lo) & (heights < hi), SCHEMES)
        for lo, hi in ((0.35, 0.5), (0.5, 0.7), (0.7, 0.86))
    ]
    rows += [
        (f"pen {lo:.1f}-{hi:.1f}x MNIST", (pens >= lo) & (pens < hi), SCHEMES)
        for lo, hi in ((0.5, 1.0), (1.0, 1.75), (1.75, 2.51))
    ]
    rows += [("overall", np.ones(len(labels), bool), SCHEMES)]
    for name, mask, schemes in rows:
        acc = {p: np.mean(np.concatenate([results[p][s][mask] == labels[mask] for s in schemes])) for p in results}
        none = np.mean(np.concatenate([results["canvas_to_input"][s][mask] == -1 for s in schemes]))
        print(f"{name:<28}{acc['canvas_to_input']:>17.4f}{acc['naive resize']:>14.4f}{none:>10.4f}")
    med, p95 = latency(model, canvases["transparent"][0])
    print(f"latency, canvas_to_input + predict_proba, one 280x280 RGBA canvas: median {med:.2f} ms, p95 {p95:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
