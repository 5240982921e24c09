"""Choose and check the "not sure" thresholds of mnist_net.confidence by measurement.

Calibration data the model never trained on, and which is not the reported test data:
the MNIST validation images the CLI held out (same seed and fraction as the model's
config), plus some of them redrawn as canvases in every colour scheme (mnist_net.synth).
For each (min probability, min margin) on a grid it reports the share of wrong answers
caught ("not sure") and of right answers doubted; it picks the pair that catches the most
wrong answers while doubting at most --max-doubt of the right drawn answers, then shows
the effect of the chosen and of the shipped thresholds on the test data (MNIST test and
drawn test canvases) for information only.

    python benchmarks/confidence.py [--model PATH] [--n-drawn 1000] [--max-doubt 0.02]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from mnist_net import canvas_to_input, load_mnist, load_model
from mnist_net.confidence import MIN_MARGIN, MIN_PROBABILITY, is_sure
from mnist_net.data import stratified_split
from mnist_net.synth import SCHEMES, random_stroke, render


def drawn_inputs(images, labels, n, seed):
    """n digits redrawn in every colour scheme and preprocessed: (X (m, 784), y (m,))."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(images), size=min(n, len(images)), replace=False)
    X, y = [], []
    for i in idx:
        stroke = random_stroke(rng)
        for scheme in SCHEMES:
            x = canvas_to_input(render(images[i], stroke, scheme, rng))
            if x is not None:
                X.append(x)
                y.append(labels[i])
    return np.stack(X), np.asarray(y, np.int64)


def top_probability(proba):
    return proba.max(axis=1)


def margin(proba):
    top2 = np.sort(proba, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def neg_entropy(proba):
    p = np.clip(proba.astype(np.float64), 1e-12, 1)
    return np.sum(p * np.log(p), axis=1)


def effect(proba, y, min_probability, min_margin) -> tuple[float, float, float, float]:
    """(accuracy, share of wrong answers caught, share of right answers doubted, accuracy when sure)."""
    right = proba.argmax(axis=1) == y
    sure = is_sure(proba, min_probability, min_margin)
    caught = float(np.mean(~sure[~right])) if (~right).any() else 1.0
    doubted = float(np.mean(~sure[right]))
    return float(right.mean()), caught, doubted, float(right[sure].mean()) if sure.any() else 1.0


def describe(name, proba, y, p, m) -> str:
    acc, caught, doubted, sure_acc = effect(proba, y, p, m)
    return (
        f"{name:<18} accuracy {acc:.4f}; 'not sure' catches {caught:.0%} of the wrong answers and "
        f"doubts {doubted:.1%} of the right ones; accuracy when sure {sure_acc:.4f}"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--n-drawn", type=int, default=1000)
    parser.add_argument("--max-doubt", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    model = load_model(args.model)
    data = load_mnist(progress=False)
    cfg = model.config
    _, val_idx = stratified_split(data.y_train.astype(np.int64), cfg.val_fraction, cfg.seed)
    Xv, yv = data.X_train[val_idx], data.y_train[val_idx].astype(np.int64)
    Xd, yd = drawn_inputs(Xv, yv, args.n_drawn, args.seed)
    pv, pd = model.predict_proba(Xv), model.predict_proba(Xd)

    print(f"calibration: {len(yv)} MNIST validation images, {len(yd)} drawn canvases from them")
    print(f"single signals, each thresholded to doubt {args.max_doubt:.0%} of the right drawn answers:")
    for name, signal in (("top probability", top_probability), ("margin", margin), ("negative entropy", neg_entropy)):
        right_d = pd.argmax(axis=1) == yd
        cut = np.quantile(signal(pd)[right_d], args.max_doubt)
        caught = [float(np.mean(signal(q)[q.argmax(axis=1) != t] < cut)) for q, t in ((pd, yd), (pv, yv))]
        print(
            f"  {name:<17} threshold {cut:.3f}: catches {caught[0]:.0%} of wrong drawn answers, "
            f"{caught[1]:.0%} of wrong MNIST validation answers"
        )

    grid = [(p, m) for p in np.arange(0.40, 0.97, 0.02) for m in np.arange(0.0, 0.91, 0.05)]
    best = None
    for p, m in grid:
        _, caught_d, doubted_d, _ = effect(pd, yd, p, m)
        _, caught_v, _, _ = effect(pv, yv, p, m)
        score = caught_d + caught_v
        if doubted_d <= args.max_doubt and (best is None or score > best[0]):
            best = (score, round(float(p), 2), round(float(m), 2))
    if best is None:
        print("no threshold pair doubts few enough right answers")
        return 1
    _, p, m = best
    print(f"chosen: min probability {p}, min margin {m} (shipped: {MIN_PROBABILITY}, {MIN_MARGIN})")
    print(describe("MNIST validation", pv, yv, p, m))
    print(describe("drawn (validation)", pd, yd, p, m))
    print("for information, shipped thresholds on test data (not used to choose):")
    Xdt, ydt = drawn_inputs(data.X_test, data.y_test.astype(np.int64), args.n_drawn, args.seed + 1)
    print(
        describe(
            "MNIST test", model.predict_proba(data.X_test), data.y_test.astype(np.int64), MIN_PROBABILITY, MIN_MARGIN
        )
    )
    print(describe("drawn (test)", model.predict_proba(Xdt), ydt, MIN_PROBABILITY, MIN_MARGIN))
    return 0


if __name__ == "__main__":
    sys.exit(main())
