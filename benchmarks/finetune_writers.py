"""Does fine-tuning teach the network a person's handwriting? Synthetic writers, 3 digits per class.

No real handwriting of other people is in this repo, so each "writer" is built from MNIST
digits given one fixed style that MNIST under-represents, drawn on a canvas and read back
exactly as the app reads a drawing (``synth.render`` -> ``canvas_to_input``):

* the label-aware styles of ``augment`` (a flag and a foot on 1s, a crossbar on 7s, a slash
  through 0s, a curled tail on 9s, an open top on 4s), each used or not by the writer;
* a slant and a tilt of their own, one elastic bend applied to every digit they write
  (a consistent wobble of the hand, not fresh noise per digit), their own pen width, size
  range and canvas colour scheme.

Per writer: fine-tune the model on 3 digits per class (30), score the held-out rest (20 per
class by default), and the MNIST accuracy before and after. ``--pool test`` (the reported
figures) builds writers from MNIST *test* digits and measures the drop on the full official
test set; ``--pool validation`` builds them from the 5,000 validation images the shipped model
never trained on, rehearses only on the other 55,000, and measures the drop on the validation
digits no writer used: that is the pool the fine-tune's settings were chosen on (``--grid``).

Honest caveats: the styles come from the same code as the augmentation's styles (the fine-tune
does not use them, but the shapes are ours, so this is partly circular), and a writer here
varies less than a person does. Real handwriting is the real judge.

    python benchmarks/finetune_writers.py                      # shipped model, 10 test writers
    python benchmarks/finetune_writers.py --pool validation --grid
    python benchmarks/finetune_writers.py --model runs/cnn.pkl --writers 3
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass, replace

import numpy as np

from mnist_net import FineTuneOptions, canvas_to_input, fine_tune, load_mnist, load_model
from mnist_net.augment import (
    STYLE_DIGIT,
    STYLES,
    affine_source,
    bilinear_sample,
    draw_polylines,
    elastic_field,
    ink_geometry,
    open_top_4,
    style_polylines,
)
from mnist_net.data import stratified_split
from mnist_net.synth import SCHEMES, Stroke, render

PROTOTYPES = 2  # ways a "person" writer has of writing each digit


@dataclass(frozen=True)
class Writer:
    """One synthetic writer's fixed habits."""

    styles: tuple[str, ...]  # which of augment.STYLES they use
    slant: float  # degrees of lean (shear), either way
    tilt: float  # degrees of rotation of every digit
    bend: np.ndarray  # (2, 28, 28) one elastic displacement field, the same for all their digits
    pen: float  # stroke width relative to MNIST's (synth.Stroke.pen)
    height: tuple[float, float]  # digit height range as a fraction of the canvas
    scheme: str  # canvas colour scheme (synth.SCHEMES)

    def describe(self) -> str:
        styles = ",".join(s.replace("_", "") for s in self.styles) or "none"
        return f"{styles}; slant {self.slant:+.0f}, tilt {self.tilt:+.0f}, pen {self.pen:.1f}, {self.scheme}"


def random_writer(rng: np.random.Generator) -> Writer:
    """A writer: each style used with probability 0.7, slant 8-22 degrees either way, tilt up to
    6 degrees, one elastic bend (alpha 6-14 px, sigma 5), pen 0.6-2.2, a colour scheme."""
    styles = tuple(s for s in STYLES if rng.random() < 0.7)
    slant = float(rng.uniform(8, 22) * rng.choice([-1, 1]))
    bend = elastic_field(rng, 1, float(rng.uniform(6, 14)), 5.0)[0]
    low = float(rng.uniform(0.35, 0.6))
    return Writer(
        styles=styles,
        slant=slant,
        tilt=float(rng.uniform(-6, 6)),
        bend=bend,
        pen=float(rng.uniform(0.6, 2.2)),
        height=(low, low + 0.25),
        scheme=str(rng.choice(SCHEMES)),
    )


def write(
    writer: Writer, digits: np.ndarray, labels: np.ndarray, rng: np.random.Generator, wobble: float
) -> np.ndarray:
    """The writer's versions of MNIST digits (n, 784) uint8 -> inputs (n, 784) float32 as the app
    reads them (rows where canvas_to_input finds no digit are all zero; there are none in practice).

    Every digit gets the writer's styles, slant, tilt and bend, plus what varies each time a
    person writes: a rotation within 3 degrees, a size and place on the canvas, and (``wobble``
    > 0) a fresh small elastic bend of that strength (Simard's alpha, in pixels).
    """
    images = digits.reshape(-1, 28, 28).astype(np.float32) / 255
    geometry = ink_geometry(images)
    radius = np.full(len(images), 0.9, np.float32)
    for style in writer.styles:
        mine = np.flatnonzero(labels == STYLE_DIGIT[style])
        if not len(mine):
            continue
        g = {k: v[mine] for k, v in geometry.items()}
        if style == "open_4":
            images[mine] = open_top_4(images[mine], g)
        else:
            images[mine] = draw_polylines(images[mine], style_polylines(style, g), radius[mine])
    n = len(images)
    jitter = rng.uniform(-3, 3, n)  # a person never writes the same digit twice
    coords = affine_source(
        writer.tilt + jitter, np.ones(n), np.zeros((n, 2)), np.full(n, np.tan(np.deg2rad(writer.slant)))
    )
    coords += writer.bend.reshape(1, 2, -1)
    if wobble > 0:
        coords += elastic_field(rng, n, wobble, 4.0).reshape(n, 2, -1)
    warped = np.clip(bilinear_sample(images, coords), 0, 1).reshape(n, 28, 28)
    out = np.zeros((n, 784), np.float32)
    for i in range(n):
        stroke = Stroke(float(rng.uniform(*writer.height)), writer.pen, float(rng.uniform()), float(rng.uniform()))
        x = canvas_to_input(render(warped[i], stroke, writer.scheme, rng))
        if x is not None:
            out[i] = x
    return out


def writer_sets(pool_X, pool_y, n_writers: int, per_class: int, seed: int, kind: str = "person"):
    """Per writer: (Writer, inputs (10 * per_class, 784), labels, the pool indices used).

    kind "person": a writer has two ways of writing each digit (two MNIST digits per class, their
    prototypes) and writes each of their ``per_class`` digits from one of the two, picked at
    random, each time a little differently (a fresh elastic wobble of strength 10, a rotation
    within 3 degrees, size and place); kind "crowd": each of a writer's digits is a different
    MNIST digit (a different person's shape, only the style is the writer's): a pessimistic
    bound, since much of what is then wrong is not the writer's habit. Digits are never shared
    between writers.
    """
    rng = np.random.default_rng(seed)
    by_class = [rng.permutation(np.flatnonzero(pool_y == c)) for c in range(10)]
    take = per_class if kind == "crowd" else PROTOTYPES
    if min(len(b) for b in by_class) < n_writers * take:
        raise SystemExit(f"the pool has too few digits of some class for {n_writers} writers x {take}")
    sets = []
    for w in range(n_writers):
        chosen = [b[w * take : (w + 1) * take] for b in by_class]
        pick = np.random.default_rng([seed, w, 2])
        if kind == "person":  # class c's digits, each from one of its prototypes
            chosen = [protos[pick.integers(0, len(protos), per_class)] for protos in chosen]
        idx = np.concatenate(chosen)
        writer = random_writer(np.random.default_rng([seed, w]))
        wobble = 10.0 if kind == "person" else 0.0
        inputs = write(writer, pool_X[idx], pool_y[idx], np.random.default_rng([seed, w, 1]), wobble)
        sets.append((writer, inputs, pool_y[idx].astype(np.int64), np.unique(idx)))
    return sets


def first_per_class(labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(the first k indices of each class, the rest)."""
    train = np.concatenate([np.flatnonzero(labels == c)[:k] for c in range(10)])
    rest = np.setdiff1d(np.arange(len(labels)), train)
    return train, rest


def run(model, sets, options, rehearsal, mnist_eval, train_per_class: int) -> list[dict]:
    """Fine-tune once per writer; per writer the figures as a dict."""
    rows = []
    for writer, X, y, _ in sets:
        train, held = first_per_class(y, train_per_class)
        start = time.perf_counter()
        tuned = fine_tune(model, X[train], y[train], options=options, rehearsal=rehearsal)
        seconds = time.perf_counter() - start
        base_err = 1 - model.score(X[held], y[held])
        tuned_err = 1 - tuned.score(X[held], y[held])
        rows.append(
            {
                "writer": writer.describe(),
                "base_err": base_err,
                "tuned_err": tuned_err,
                "mnist_before": mnist_eval[2],
                "mnist_after": tuned.score(mnist_eval[0], mnist_eval[1]),
                "seconds": seconds,
            }
        )
    return rows


def summary(rows: list[dict]) -> dict:
    base = np.mean([r["base_err"] for r in rows])
    tuned = np.mean([r["tuned_err"] for r in rows])
    return {
        "base_err": base,
        "tuned_err": tuned,
        "fall": 1 - tuned / base if base else float("nan"),
        "mnist_drop": 100 * np.mean([r["mnist_before"] - r["mnist_after"] for r in rows]),
        "worst_drop": 100 * max(r["mnist_before"] - r["mnist_after"] for r in rows),
        "seconds": np.median([r["seconds"] for r in rows]),
        "max_seconds": max(r["seconds"] for r in rows),
    }


def print_table(rows: list[dict], mnist_name: str) -> None:
    print(f"| writer | base error | tuned error | {mnist_name} before -> after | s |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['writer']} | {100 * r['base_err']:.1f}% | {100 * r['tuned_err']:.1f}% | "
            f"{100 * r['mnist_before']:.2f} -> {100 * r['mnist_after']:.2f}% | {r['seconds']:.1f} |"
        )
    s = summary(rows)
    print(
        f"| **mean** | **{100 * s['base_err']:.1f}%** | **{100 * s['tuned_err']:.1f}%** "
        f"(error falls by {100 * s['fall']:.0f}%) | drop {s['mnist_drop']:.2f} points (worst {s['worst_drop']:.2f}) | "
        f"median {s['seconds']:.1f} (max {s['max_seconds']:.1f}) |"
    )


# Candidates compared on the validation pool (README, "Teach it your handwriting").
GRID = {
    "adam lr 1e-4": dict(learning_rate=1e-4),
    "adam lr 3e-4": dict(learning_rate=3e-4),
    "adam lr 1e-3": dict(learning_rate=1e-3),
    "adam lr 3e-4 + anchor 1": dict(learning_rate=3e-4, anchor=1.0),
    "adam lr 1e-3 + anchor 1": dict(learning_rate=1e-3, anchor=1.0),
    "adam lr 1e-3 + anchor 3": dict(learning_rate=1e-3, anchor=3.0),
    "adam lr 1e-3 + anchor 10": dict(learning_rate=1e-3, anchor=10.0),
    "adam lr 1e-3 + anchor 1, 600 steps": dict(learning_rate=1e-3, anchor=1.0, steps=600),
    "adam lr 1e-3 + anchor 1, 150 steps": dict(learning_rate=1e-3, anchor=1.0, steps=150),
    "adam lr 1e-3 + anchor 1, personal 0.25": dict(learning_rate=1e-3, anchor=1.0, personal_fraction=0.25),
    "adam lr 1e-3 + anchor 1, no views": dict(
        learning_rate=1e-3,
        anchor=1.0,
        max_rotation=0.0,
        max_shift=0.0,
        scale_range=(1.0, 1.0),
        stroke_change_prob=0.0,
        elastic_prob=0.0,
    ),
    "adam lr 3e-4 + anchor 0.3": dict(learning_rate=3e-4, anchor=0.3),
    "adam lr 3e-4 + anchor 0.3, distill": dict(learning_rate=3e-4, anchor=0.3, rehearsal_targets="base"),
    "adam lr 3e-4 + anchor 1, distill": dict(learning_rate=3e-4, anchor=1.0, rehearsal_targets="base"),
    "adam lr 1e-3 + anchor 1, distill": dict(learning_rate=1e-3, anchor=1.0, rehearsal_targets="base"),
    "adam lr 3e-4 + anchor 1, augmented rehearsal": dict(learning_rate=3e-4, anchor=1.0, augment_rehearsal=True),
    "sgd lr 0.1": dict(optimizer="sgd", learning_rate=0.1),
    "sgd lr 0.1 + anchor 1": dict(optimizer="sgd", learning_rate=0.1, anchor=1.0),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model file (default: the shipped model)")
    parser.add_argument("--pool", choices=("test", "validation"), default="test")
    parser.add_argument("--writers", type=int, default=10)
    parser.add_argument("--train-per-class", type=int, default=3)
    parser.add_argument("--held-per-class", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--kind", choices=("person", "crowd"), default="person", help="how a writer's digits vary (writer_sets)"
    )
    parser.add_argument("--grid", action="store_true", help="compare the GRID of options (validation pool)")
    parser.add_argument("--only", default=None, help="with --grid: names of GRID entries, separated by ;")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--anchor", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    args = parser.parse_args(argv)

    model = load_model(args.model)
    data = load_mnist(progress=False)
    if args.pool == "test":
        pool_X, pool_y = data.X_test, data.y_test
        rehearsal = (data.X_train, data.y_train)
        mnist_X, mnist_y, mnist_name = data.X_test, data.y_test, "MNIST test"
    else:
        # The shipped model's own split (TrainConfig: val_fraction 1/12, seed 0): 5,000 images it never trained on.
        train_idx, val_idx = stratified_split(data.y_train, model.config.val_fraction, model.config.seed)
        pool_X, pool_y = data.X_train[val_idx], data.y_train[val_idx]
        rehearsal = (data.X_train[train_idx], data.y_train[train_idx])
        mnist_X, mnist_y, mnist_name = pool_X, pool_y, "MNIST val"
    per_class = args.train_per_class + args.held_per_class
    sets = writer_sets(pool_X, pool_y, args.writers, per_class, args.seed, args.kind)
    if args.pool == "validation":  # the MNIST figure on validation digits no writer used
        used = np.concatenate([s[3] for s in sets])
        keep = np.setdiff1d(np.arange(len(pool_y)), used)
        mnist_X, mnist_y = mnist_X[keep], mnist_y[keep]
    mnist_eval = (mnist_X, mnist_y, model.score(mnist_X, mnist_y))
    load = os.getloadavg()
    print(
        f"model {model.architecture} ({model.activation}); {args.writers} {args.kind} writers from MNIST {args.pool}, "
        f"{args.train_per_class} per class to tune, {args.held_per_class} held out; {mnist_name} {len(mnist_y)} "
        f"images; load {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
    )
    base_options = FineTuneOptions()
    overrides = (
        ("steps", args.steps),
        ("learning_rate", args.lr),
        ("anchor", args.anchor),
        ("batch_size", args.batch_size),
    )
    for name, value in overrides:
        if value is not None:
            base_options = replace(base_options, **{name: value})
    if not args.grid:
        print(f"options: {base_options}")
        print_table(run(model, sets, base_options, rehearsal, mnist_eval, args.train_per_class), mnist_name)
        print(f"load after: {os.getloadavg()[0]:.1f}")
        return
    names = args.only.split(";") if args.only else list(GRID)
    print(f"| options | base error | tuned error | error falls by | {mnist_name} drop (worst) | median s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in names:
        options = replace(base_options, **GRID[name])
        s = summary(run(model, sets, options, rehearsal, mnist_eval, args.train_per_class))
        print(
            f"| {name} | {100 * s['base_err']:.1f}% | {100 * s['tuned_err']:.1f}% | {100 * s['fall']:.0f}% | "
            f"{s['mnist_drop']:.2f} ({s['worst_drop']:.2f}) | {s['seconds']:.1f} |",
            flush=True,
        )
    print(f"load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
