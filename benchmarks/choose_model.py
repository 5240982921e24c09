"""Which trained model to ship? Scores candidate model files on *validation* digits only.

Each candidate is scored on the training images its own run held out (its config's seed and
``val_fraction``: ``stratified_split``, as training split them), on those same validation digits
redrawn as 280x280 canvases in every colour scheme and read back through ``canvas_to_input``
(``augment_choice.drawn_inputs``), by pen band, and on the validation digits of the styled
classes (0, 1, 4, 7, 9) with a handwriting style drawn in, then redrawn. An ensemble of all the
candidates (mean of their probabilities) is scored too when they share a validation split.
The test set is never touched here: it gives the final figure of the one chosen
(``python -m mnist_net evaluate``, ``benchmarks/drawn_digits.py``).

    python benchmarks/choose_model.py MODEL.pkl [MODEL.pkl ...] [--n 400]

Non-goals: training (see the README's recipe), the test set.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # the checkout's mnist_net and the sibling benchmarks
from augment_choice import drawn_inputs  # noqa: E402

from mnist_net import load_mnist, load_model  # noqa: E402
from mnist_net.augment import STYLE_DIGIT, add_styles  # noqa: E402
from mnist_net.data import stratified_split  # noqa: E402

PEN_BANDS = ((0.5, 1.0, "thin"), (1.0, 1.75, "medium"), (1.75, 2.51, "thick"))


def validation_sets(images: np.ndarray, labels: np.ndarray, n: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{name: (inputs (m, 784) float32, labels (m,))}: MNIST validation, drawn by pen band, styled drawn."""
    sets = {"MNIST val": (images.astype(np.float32) / 255, labels)}
    Xd, yd, pens = drawn_inputs(images, labels, n, 0)
    sets["drawn"] = (Xd, yd)
    for lo, hi, name in PEN_BANDS:
        band = (pens >= lo) & (pens < hi)
        sets[f"drawn {name}"] = (Xd[band], yd[band])
    styled = np.flatnonzero(np.isin(labels, list(STYLE_DIGIT.values())))
    square = images[styled].reshape(-1, 28, 28).astype(np.float32) / 255
    drawn_styled = add_styles(square, labels[styled], np.random.default_rng(99), 1.0)
    Xs, ys, _ = drawn_inputs((drawn_styled * 255).round().astype(np.uint8), labels[styled], n // 2, 1)
    sets["styled drawn"] = (Xs, ys)
    return sets


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--n", type=int, default=400, help="validation digits redrawn (x 5 schemes)")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    data = load_mnist(args.data_dir, progress=False)
    models = {path: load_model(path) for path in args.models}
    splits: dict[tuple[int, float], dict] = {}
    columns = ["MNIST val", "drawn", *(f"drawn {b[2]}" for b in PEN_BANDS), "styled drawn"]
    print(f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'model':<44}" + "".join(f"{c:>14}" for c in columns))
    probabilities: dict[tuple[int, float], list[dict[str, np.ndarray]]] = {}
    for path, model in models.items():
        key = (model.config.seed, model.config.val_fraction)
        if key not in splits:
            start = time.perf_counter()
            _, va = stratified_split(data.y_train, key[1], key[0])
            splits[key] = validation_sets(data.X_train[va], data.y_train[va], args.n)
            print(f"  (validation of seed {key[0]}: {len(va)} images, built in {time.perf_counter() - start:.0f} s)")
        proba = {name: model.predict_proba(X) for name, (X, _) in splits[key].items()}
        probabilities.setdefault(key, []).append(proba)
        row = [float(np.mean(proba[c].argmax(1) == splits[key][c][1])) for c in columns]
        print(f"{Path(path).name:<44}" + "".join(f"{100 * v:>13.2f}%" for v in row), flush=True)
    for key, group in probabilities.items():
        if len(group) > 1:
            row = [float(np.mean(np.mean([p[c] for p in group], 0).argmax(1) == splits[key][c][1])) for c in columns]
            print(
                f"{f'ensemble of the {len(group)} (seed {key[0]} split)':<44}"
                + "".join(f"{100 * v:>13.2f}%" for v in row)
            )
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
