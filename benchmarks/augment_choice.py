"""Which augmentation settings read drawn digits best? Measured on *validation* digits only.

Splits the 60,000 MNIST training images as training does (``stratified_split``, 1/12 held out,
seed 0), trains one short run per setting on the rest, and scores each on the held-out
validation images and on those same validation digits redrawn as 280x280 canvases
(``benchmarks/drawn_digits.build_drawn_set``, every colour scheme) and read back through
``canvas_to_input``. The test set is never touched: choosing on it would make the drawn-test
benchmark (``drawn_digits.py``) meaningless. Each setting is a change on top of
``TrainConfig``'s augmentation defaults; one run per setting and seed, so differences below
the printed standard error are noise.

    python benchmarks/augment_choice.py [--epochs 6] [--hidden 256,128] [--n 400] [--seeds 0]

Non-goals: the shipped model's recipe (this is a short run per setting), the test set.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # the checkout's mnist_net and drawn_digits
from drawn_digits import build_drawn_set  # noqa: E402

from mnist_net import MLP, TrainConfig, canvas_to_input, load_mnist  # noqa: E402
from mnist_net.augment import STYLE_DIGIT, add_styles  # noqa: E402
from mnist_net.config import parse_hidden_sizes  # noqa: E402
from mnist_net.data import stratified_split  # noqa: E402

SETTINGS = {
    "no augmentation": {"augment": False},
    "defaults (affine + stroke)": {},
    "+ slant 12": {"max_slant": 12.0},
    "+ elastic 0.5 (a34 s4)": {"elastic_prob": 0.5},
    "+ elastic 0.5 (a20 s3)": {"elastic_prob": 0.5, "elastic_alpha": 20.0, "elastic_sigma": 3.0},
    "+ styles 0.3": {"style_prob": 0.3},
    "+ styles 0.15": {"style_prob": 0.15},
    "+ slant 12, elastic 0.5, styles 0.3": {"max_slant": 12.0, "elastic_prob": 0.5, "style_prob": 0.3},
}


def drawn_inputs(images: np.ndarray, labels: np.ndarray, n: int, seed: int):
    """Redraw n of the images on canvases (all schemes) and read them back: (inputs, labels, pens)."""
    canvases, picked, strokes = build_drawn_set(images, labels, n, seed)
    xs, ys, pens = [], [], []
    for scheme_canvases in canvases.values():
        for canvas, label, stroke in zip(scheme_canvases, picked, strokes):
            x = canvas_to_input(canvas)
            if x is not None:
                xs.append(x)
                ys.append(label)
                pens.append(stroke.pen)
    return np.stack(xs), np.array(ys), np.array(pens)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--hidden", default="256,128")
    parser.add_argument("--n", type=int, default=400, help="validation digits redrawn (x 5 schemes)")
    parser.add_argument("--seeds", default="0", help="training seeds, comma-separated")
    parser.add_argument("--only", default=None, help="setting names separated by | (default: all)")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    data = load_mnist(args.data_dir, progress=False)
    base = TrainConfig(
        hidden_sizes=parse_hidden_sizes(args.hidden),
        activation="relu",
        epochs=args.epochs,
        lr_decay=0.85,
        augment=True,
        val_fraction=0.0,
        log_every=10**6,
    )
    tr, va = stratified_split(data.y_train, 1 / 12, 0)
    t0 = time.perf_counter()
    Xd, yd, pens = drawn_inputs(data.X_train[va], data.y_train[va], args.n, 0)
    print(
        f"validation: {len(va)} MNIST images; drawn: {len(yd)} canvases from {args.n} of them "
        f"(built in {time.perf_counter() - t0:.0f} s); load average {os.getloadavg()[0]:.1f}"
    )
    names = list(SETTINGS) if args.only is None else [s.strip() for s in args.only.split("|")]
    # The same validation digits of the styled classes (0, 1, 4, 7, 9) with their styles drawn in
    # (augment.add_styles, every style, a seed of its own), then redrawn as canvases: does a model
    # read a crossed 7 or a footed 1? Made by the same code the training styles come from, so it
    # shows whether those are learnt, not how real people's styled digits look.
    styled = np.flatnonzero(np.isin(data.y_train[va], list(STYLE_DIGIT.values())))
    images = data.X_train[va][styled].reshape(-1, 28, 28).astype(np.float32) / 255
    drawn_styled = add_styles(images, data.y_train[va][styled], np.random.default_rng(99), 1.0)
    Xs, ys, _ = drawn_inputs((drawn_styled * 255).round().astype(np.uint8), data.y_train[va][styled], args.n // 2, 1)
    print(f"styled drawn: {len(ys)} canvases from {args.n // 2} validation digits of classes 0, 1, 4, 7, 9")
    thick = pens >= 1.75
    print(
        f"{'setting':<40}{'seed':>5}{'MNIST val':>11}{'drawn':>8}{'thick pens':>12}{'styled drawn':>14}{'train s':>9}"
    )
    for name in names:
        for seed in (int(s) for s in args.seeds.split(",")):
            config = replace(base, seed=seed, **SETTINGS[name])
            start = time.perf_counter()
            model = MLP(config).fit(data.X_train[tr], data.y_train[tr])
            seconds = time.perf_counter() - start
            val = model.score(data.X_train[va], data.y_train[va])
            hit = model.predict(Xd) == yd
            styled_acc = float(np.mean(model.predict(Xs) == ys))
            print(
                f"{name:<40}{seed:>5}{val:>11.4f}{hit.mean():>8.4f}{hit[thick].mean():>12.4f}{styled_acc:>14.4f}{seconds:>9.0f}",
                flush=True,
            )
    se = np.sqrt(0.97 * 0.03 / len(yd))
    print(f"standard error of a drawn accuracy near 97%: {se:.4f} (binomial; the canvases share digits, so more)")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
