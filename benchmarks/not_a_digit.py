"""Measure "that doesn't look like a digit" scores and choose mnist_net.novelty's threshold.

In-distribution (calibration): the MNIST validation images the shipped model never trained on
(the stratified split of its config) and canvases redrawn from them with ``mnist_net.synth``.
Out-of-distribution: non-digits generated here as canvases in every colour scheme, split into
a *calibration* set of families (used to compare the methods) and a *held-out* set of other
shapes and letters, other fonts (reported). Every canvas goes through ``canvas_to_input``.

Each score method is thresholded to raise at most --max-alarm false alarms on the calibration
digits (MNIST validation and drawn, each); the table shows its false alarms and its catch rate
per non-digit family. The shipped method's threshold is then checked on the MNIST *test* set
and on drawn test digits (final figures only, never used to choose), and its per-call time on
one drawing is measured.

    python benchmarks/not_a_digit.py [--n-per-family 300] [--n-drawn 600] [--max-alarm 0.01]
    python benchmarks/not_a_digit.py --write-asset assets/novelty.npz   # rebuild the shipped file
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from threadpoolctl import threadpool_limits

from mnist_net import Mnist, TrainConfig, canvas_to_input, load_mnist, load_model
from mnist_net.augment import augment_batch
from mnist_net.data import stratified_split
from mnist_net.functional import forward, init_params, loss_and_grads
from mnist_net.novelty import (
    ASSET,
    GROUPS,
    MAX_FALSE_ALARM,
    NoveltyAssets,
    assess_input,
    calibrate,
    count_digit_parts,
    detector_score,
    energy,
    load_assets,
    model_calibration,
    novelty_scores,
    save_assets,
    several_digits,
)
from mnist_net.optim import Adam
from mnist_net.synth import CANVAS, SCHEMES, Stroke, draw_ink, paint, random_stroke, render

# --- drawings: strokes in a unit box (x right, y down), rendered with a round pen ---------------

Path = np.ndarray  # (n, 2) points in the unit box


@dataclass
class Drawing:
    """A sketch: pen strokes (polylines) and filled outlines, in unit-box coordinates."""

    strokes: list[Path] = field(default_factory=list)
    fills: list[Path] = field(default_factory=list)
    pen_scale: float = 1.0  # below 1 for close parallel lines, so a fat pen does not fill them in


def pts(*points: tuple[float, float]) -> Path:
    return np.array(points, np.float64)


def arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int = 32) -> Path:
    """Points of an elliptic arc from angle a0 to a1 (degrees; 0 = right, 90 = down)."""
    a = np.deg2rad(np.linspace(a0, a1, n))
    return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], axis=1)


def join(*parts: Path) -> Path:
    return np.concatenate(parts)


def bowl(x0: float, y0: float, y1: float, w: float) -> Path:
    """A right-facing half loop from (x0, y0) to (x0, y1) reaching w to the right (as in P, R, B, D)."""
    r = (y1 - y0) / 2
    return join(
        pts((x0, y0), (x0 + max(0.0, w - r), y0)), arc(x0 + max(0.0, w - r), y0 + r, r, r, -90, 90), pts((x0, y1))
    )


# Hand-drawn letters, one list of strokes each. Capitals fill the unit box; lowercase letters
# use rows 0.35-1 (x-height) with ascenders from 0 and descenders to 1.3.
LETTERS: dict[str, list[Path]] = {
    "A": [pts((0, 1), (0.5, 0), (1, 1)), pts((0.22, 0.6), (0.78, 0.6))],
    "C": [arc(0.5, 0.5, 0.5, 0.5, -40, -320)],
    "D": [pts((0, 0), (0, 1)), bowl(0, 0, 1, 0.9)],
    "E": [pts((0.9, 0), (0, 0), (0, 1), (0.9, 1)), pts((0, 0.5), (0.7, 0.5))],
    "F": [pts((0.9, 0), (0, 0), (0, 1)), pts((0, 0.48), (0.7, 0.48))],
    "G": [join(arc(0.5, 0.5, 0.5, 0.5, -40, -360), pts((1, 0.55), (0.55, 0.55)))],
    "H": [pts((0, 0), (0, 1)), pts((1, 0), (1, 1)), pts((0, 0.5), (1, 0.5))],
    "J": [pts((0.25, 0), (1, 0)), join(pts((0.75, 0), (0.75, 0.72)), arc(0.45, 0.72, 0.3, 0.28, 0, 170))],
    "K": [pts((0, 0), (0, 1)), pts((0.9, 0), (0, 0.6)), pts((0.3, 0.4), (1, 1))],
    "L": [pts((0, 0), (0, 1), (0.75, 1))],
    "M": [pts((0, 1), (0, 0), (0.5, 0.65), (1, 0), (1, 1))],
    "N": [pts((0, 1), (0, 0), (1, 1), (1, 0))],
    "P": [pts((0, 1), (0, 0)), bowl(0, 0, 0.55, 0.8)],
    "R": [pts((0, 1), (0, 0)), bowl(0, 0, 0.55, 0.8), pts((0.35, 0.55), (0.9, 1))],
    "T": [pts((0, 0), (1, 0)), pts((0.5, 0), (0.5, 1))],
    "U": [join(pts((0, 0), (0, 0.6)), arc(0.5, 0.6, 0.5, 0.4, 180, 0), pts((1, 0.6), (1, 0)))],
    "V": [pts((0, 0), (0.5, 1), (1, 0))],
    "W": [pts((0, 0), (0.25, 1), (0.5, 0.35), (0.75, 1), (1, 0))],
    "X": [pts((0, 0), (1, 1)), pts((1, 0), (0, 1))],
    "Y": [pts((0, 0), (0.5, 0.5), (1, 0)), pts((0.5, 0.5), (0.5, 1))],
    "a": [arc(0.35, 0.68, 0.35, 0.32, -30, 330), pts((0.72, 0.36), (0.72, 1))],
    "c": [arc(0.4, 0.68, 0.4, 0.32, -40, -320)],
    "d": [arc(0.35, 0.68, 0.35, 0.32, 0, 360), pts((0.72, 0), (0.72, 1))],
    "e": [join(pts((0.02, 0.68), (0.8, 0.68)), arc(0.41, 0.68, 0.39, 0.32, 0, -300))],
    "f": [join(arc(0.55, 0.2, 0.25, 0.2, -20, -180), pts((0.3, 0.2), (0.3, 1))), pts((0.05, 0.42), (0.65, 0.42))],
    "h": [pts((0, 0), (0, 1)), join(arc(0.35, 0.6, 0.35, 0.25, 180, 360), pts((0.7, 0.6), (0.7, 1)))],
    "k": [pts((0, 0), (0, 1)), pts((0.6, 0.35), (0, 0.72)), pts((0.2, 0.6), (0.65, 1))],
    "m": [
        pts((0, 0.35), (0, 1)),
        join(arc(0.25, 0.55, 0.25, 0.2, 180, 360), pts((0.5, 0.55), (0.5, 1))),
        join(arc(0.75, 0.55, 0.25, 0.2, 180, 360), pts((1, 0.55), (1, 1))),
    ],
    "n": [pts((0, 0.35), (0, 1)), join(arc(0.35, 0.6, 0.35, 0.25, 180, 360), pts((0.7, 0.6), (0.7, 1)))],
    "p": [pts((0, 0.36), (0, 1.3)), arc(0.35, 0.68, 0.35, 0.32, 0, 360)],
    "r": [pts((0, 0.35), (0, 1)), arc(0.35, 0.6, 0.35, 0.25, 180, 300)],
    "t": [join(pts((0.3, 0.05), (0.3, 0.85)), arc(0.5, 0.85, 0.2, 0.15, 180, 60)), pts((0.05, 0.35), (0.6, 0.35))],
    "u": [join(pts((0, 0.35), (0, 0.75)), arc(0.35, 0.75, 0.35, 0.25, 180, 0)), pts((0.7, 0.35), (0.7, 1))],
    "v": [pts((0, 0.35), (0.35, 1), (0.7, 0.35))],
    "w": [pts((0, 0.35), (0.22, 1), (0.45, 0.55), (0.68, 1), (0.9, 0.35))],
    "x": [pts((0, 0.35), (0.7, 1)), pts((0.7, 0.35), (0, 1))],
    "y": [pts((0, 0.35), (0.35, 0.95)), pts((0.7, 0.35), (0.25, 1.3))],
    # Letters that look like digits (O/0, I/1, Z/2, S/5, B/8, b/6, q/9): no detector can tell them
    # from the digit they resemble, so they are measured apart and never counted as catches.
    "O": [arc(0.5, 0.5, 0.45, 0.5, -90, 270)],
    "I": [pts((0.5, 0), (0.5, 1))],
    "Z": [pts((0, 0), (1, 0), (0, 1), (1, 1))],
    "S": [join(arc(0.5, 0.25, 0.45, 0.25, -20, -270), arc(0.5, 0.75, 0.45, 0.25, -90, 160))],
    "B": [pts((0, 0), (0, 1)), bowl(0, 0, 0.48, 0.75), bowl(0, 0.48, 1, 0.9)],
    "b": [pts((0, 0), (0, 1)), arc(0.35, 0.68, 0.35, 0.32, 0, 360)],
    "q": [arc(0.35, 0.68, 0.35, 0.32, 0, 360), pts((0.7, 0.36), (0.7, 1.3))],
}
# Digits sketched by the same renderer: in-distribution, so a score that flags them has learned
# how this file draws, not what a digit looks like.
DIGIT_SKETCHES: dict[str, list[list[Path]]] = {
    "0": [[arc(0.5, 0.5, 0.42, 0.5, -90, 270)]],
    "1": [[pts((0.5, 0), (0.5, 1))], [pts((0.2, 0.25), (0.6, 0), (0.6, 1))]],
    "2": [[join(arc(0.5, 0.3, 0.45, 0.3, 190, 390), pts((0, 1), (1, 1)))]],
    "3": [[join(arc(0.5, 0.25, 0.42, 0.25, -160, 90), arc(0.5, 0.75, 0.47, 0.25, -90, 160))]],
    "4": [
        [pts((0.7, 1), (0.7, 0), (0, 0.65), (1, 0.65))],
        [pts((0.1, 0), (0, 0.55), (1, 0.55)), pts((0.75, 0), (0.75, 1))],
    ],
    "5": [[pts((0.9, 0), (0.15, 0), (0.1, 0.45)), arc(0.5, 0.68, 0.45, 0.32, -150, 150)]],
    "6": [[join(arc(0.6, 0.6, 0.5, 0.6, -80, -180), arc(0.5, 0.73, 0.42, 0.27, 180, 540))]],
    "7": [[pts((0, 0), (1, 0), (0.35, 1))], [pts((0, 0), (1, 0), (0.35, 1)), pts((0.3, 0.5), (0.85, 0.5))]],
    "8": [[join(arc(0.5, 0.25, 0.35, 0.25, 90, 450), arc(0.5, 0.75, 0.45, 0.25, -90, 270))]],
    "9": [[join(arc(0.5, 0.3, 0.45, 0.3, 0, 360), pts((0.95, 0.3), (0.8, 1)))]],
}


def digit_sketch(rng: np.random.Generator) -> Drawing:
    variants = DIGIT_SKETCHES[str(rng.integers(10))]
    return Drawing(strokes=list(variants[rng.integers(len(variants))]))


LETTERS_CALIBRATION = "EFHKMNPRWXYehkmnrwx"
LETTERS_HELD_OUT = "ACDGJLTUVacdfptuvy"
LOOKALIKES = "OIZSBbq"


def letter(chars: str) -> Callable[[np.random.Generator], Drawing]:
    def make(rng: np.random.Generator) -> Drawing:
        return Drawing(strokes=list(LETTERS[chars[rng.integers(len(chars))]]))

    return make


def circle_cross(rng: np.random.Generator) -> Drawing:
    """A circle with a + or an x through it."""
    if rng.random() < 0.5:
        bar = [pts((0.5, 0), (0.5, 1)), pts((0, 0.5), (1, 0.5))]
    else:
        d = 0.5 / np.sqrt(2)
        bar = [pts((0.5 - d, 0.5 - d), (0.5 + d, 0.5 + d)), pts((0.5 + d, 0.5 - d), (0.5 - d, 0.5 + d))]
    return Drawing(strokes=[arc(0.5, 0.5, 0.5, 0.5, 0, 360, 48), *bar])


def star(rng: np.random.Generator) -> Drawing:
    """A five-pointed star in one stroke, or a star outline with 5-8 points."""
    if rng.random() < 0.5:
        a = np.deg2rad(-90 + 144 * np.arange(6))
        return Drawing(strokes=[np.stack([0.5 + 0.5 * np.cos(a), 0.5 + 0.5 * np.sin(a)], axis=1)])
    k = int(rng.integers(5, 9))
    a = np.deg2rad(-90 + 180 / k * np.arange(2 * k + 1))
    r = np.where(np.arange(2 * k + 1) % 2 == 0, 0.5, rng.uniform(0.18, 0.3))
    return Drawing(strokes=[np.stack([0.5 + r * np.cos(a), 0.5 + r * np.sin(a)], axis=1)])


def spiral(rng: np.random.Generator) -> Drawing:
    turns = rng.uniform(2, 4)
    t = np.linspace(0, 1, 200)
    a = 2 * np.pi * turns * t * (1 if rng.random() < 0.5 else -1)
    r = 0.05 + 0.45 * t
    return Drawing(strokes=[np.stack([0.5 + r * np.cos(a), 0.5 + r * np.sin(a)], axis=1)], pen_scale=0.5)


def hatching(rng: np.random.Generator) -> Drawing:
    """Horizontal or diagonal lines, or a grid."""
    n = int(rng.integers(4, 9))
    u = np.linspace(0, 1, n)
    kind = rng.integers(3)
    if kind == 0:  # horizontal
        return Drawing(strokes=[pts((0, v), (1, v)) for v in u], pen_scale=0.5)
    if kind == 1:  # diagonal
        return Drawing(strokes=[pts((v, 0), (v + 0.5, 1)) for v in u * 1.5 - 0.5], pen_scale=0.5)
    return Drawing(strokes=[pts((0, v), (1, v)) for v in u] + [pts((v, 0), (v, 1)) for v in u], pen_scale=0.5)


def scribble(rng: np.random.Generator) -> Drawing:
    """A random smooth pen path with many turns."""
    n = int(rng.integers(5, 12))
    knots = rng.random((n, 2))
    t = np.linspace(0, n - 1, 20 * n)
    path = np.stack([np.interp(t, np.arange(n), knots[:, i]) for i in range(2)], axis=1)
    kernel = np.ones(9) / 9
    smooth = np.stack([np.convolve(np.pad(path[:, i], 4, mode="edge"), kernel, "valid") for i in range(2)], axis=1)
    return Drawing(strokes=[smooth])


def blob(rng: np.random.Generator) -> Drawing:
    """A filled irregular round shape."""
    a = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    r = 0.5 + sum(rng.uniform(-0.12, 0.12) * np.cos(k * a + rng.uniform(0, 6.3)) for k in (2, 3, 5))
    outline = np.stack([0.5 + r * np.cos(a), 0.5 + r * np.sin(a)], axis=1)
    return Drawing(strokes=[join(outline, outline[:1])], fills=[outline])


def polygon(rng: np.random.Generator) -> Drawing:
    k = int(rng.integers(3, 7))
    a = np.deg2rad(-90 + 360 / k * np.arange(k + 1) + rng.uniform(-8, 8))
    return Drawing(strokes=[np.stack([0.5 + 0.5 * np.cos(a), 0.5 + 0.5 * np.sin(a)], axis=1)])


def smiley(rng: np.random.Generator) -> Drawing:
    eye = rng.uniform(0.03, 0.07)
    smile = rng.uniform(0.15, 0.3)
    face = [arc(0.5, 0.5, 0.5, 0.5, 0, 360, 48), arc(0.5, 0.55, 0.28, smile, 20, 160)]
    eyes = [arc(x, 0.35, eye, eye, 0, 360, 12) for x in (0.33, 0.67)]
    return Drawing(strokes=face + eyes, fills=eyes)


def bars(rng: np.random.Generator) -> Drawing:
    """Vertical bars side by side (ten, like the issue's example, or 5-12)."""
    n = 10 if rng.random() < 0.5 else int(rng.integers(5, 13))
    return Drawing(strokes=[pts((v, 0), (v, 1)) for v in np.linspace(0, 1, n)], pen_scale=0.4)


def house(rng: np.random.Generator) -> Drawing:
    roof = rng.uniform(0.3, 0.45)
    walls = pts((0.05, roof), (0.05, 1), (0.95, 1), (0.95, roof))
    door = pts((0.4, 1), (0.4, 0.7), (0.6, 0.7), (0.6, 1))
    strokes = [walls, pts((0, roof), (0.5, 0), (1, roof)), door]
    if rng.random() < 0.5:
        strokes.append(
            pts((0.15, roof + 0.1), (0.3, roof + 0.1), (0.3, roof + 0.25), (0.15, roof + 0.25), (0.15, roof + 0.1))
        )
    return Drawing(strokes=strokes)


def arrow(rng: np.random.Generator) -> Drawing:
    a = rng.uniform(0, 2 * np.pi)
    tip = np.array([0.5 + 0.5 * np.cos(a), 0.5 + 0.5 * np.sin(a)])
    tail = 1.0 - tip
    back = (tail - tip) / np.linalg.norm(tail - tip) * 0.3
    rot = [np.array([[np.cos(s), -np.sin(s)], [np.sin(s), np.cos(s)]]) for s in (0.5, -0.5)]
    head = pts(tuple(tip + rot[0] @ back), tuple(tip), tuple(tip + rot[1] @ back))
    return Drawing(strokes=[np.stack([tail, tip]), head])


def heart(rng: np.random.Generator) -> Drawing:
    left, right = arc(0.27, 0.27, 0.25, 0.25, 135, 360), arc(0.73, 0.27, 0.25, 0.25, 180, 405)
    outline = join(pts((0.5, 1)), left, right, pts((0.5, 1)))
    return Drawing(strokes=[outline], fills=[outline] if rng.random() < 0.4 else [])


# --- rendering a drawing the way a hand draws on the canvas ------------------------------------

SUPERSAMPLE = 2
N_INPUTS = 28 * 28


def _wobble(path: Path, rng: np.random.Generator, amount: float) -> Path:
    """Resample a polyline every ~1% of the box and add a smooth sideways tremor (hand jitter)."""
    seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
    s = np.concatenate([[0], np.cumsum(seg)])
    if s[-1] == 0:
        return path
    t = np.linspace(0, s[-1], max(2, int(s[-1] / 0.01)))
    dense = np.stack([np.interp(t, s, path[:, i]) for i in range(2)], axis=1)
    noise = np.zeros_like(dense)
    for _ in range(3):
        freq, phase = rng.uniform(0.5, 4), rng.uniform(0, 2 * np.pi, 2)
        noise += amount * rng.uniform(0.3, 1) * np.sin(2 * np.pi * freq * t[:, None] + phase)
    return dense + noise


def render_drawing(drawing: Drawing, rng: np.random.Generator, canvas: int = CANVAS) -> np.ndarray:
    """A drawing on a canvas at a random size, slant, position and pen width -> (canvas, canvas) ink.

    Size 35-85% of the canvas height (as the drawn digits), rotation +-12 degrees, shear and
    aspect changes, a hand tremor of ~1.5% of the size, a round pen 4-16% of the drawing's
    height (at least 4 px, at most 40 px: the app's pen slider), anti-aliased (2x supersampled).
    """
    strokes = [_wobble(p, rng, rng.uniform(0.005, 0.02)) for p in drawing.strokes]
    fills = [p for p in drawing.fills]
    allp = np.concatenate(strokes + fills)
    lo, hi = allp.min(axis=0), allp.max(axis=0)
    angle, shear, aspect = np.deg2rad(rng.uniform(-12, 12)), rng.uniform(-0.2, 0.2), rng.uniform(0.8, 1.25)
    m = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) @ np.array(
        [[aspect, shear], [0, 1]]
    )
    centre = (lo + hi) / 2
    strokes = [(p - centre) @ m.T for p in strokes]
    fills = [(p - centre) @ m.T for p in fills]
    allp = np.concatenate(strokes + fills)
    lo, hi = allp.min(axis=0), allp.max(axis=0)
    height = rng.uniform(0.35, 0.85) * canvas
    pen = float(np.clip(rng.uniform(0.04, 0.16) * drawing.pen_scale * height, 4, 40))
    scale = min((height - pen) / max(hi[1] - lo[1], 1e-6), (canvas - 2 * pen) / max(hi[0] - lo[0], 1e-6))
    size = (hi - lo) * scale
    free = np.maximum(canvas - pen - size, 0)
    offset = pen / 2 + rng.random(2) * free - lo * scale
    big = Image.new("L", (canvas * SUPERSAMPLE, canvas * SUPERSAMPLE), 0)
    draw = ImageDraw.Draw(big)
    k = SUPERSAMPLE

    def place(p: Path) -> list[tuple[float, float]]:
        return [tuple(v) for v in ((p * scale + offset) * k)]

    for p in fills:
        draw.polygon(place(p), fill=255)
    w = max(1, round(pen * k))
    for p in strokes:
        q = place(p)
        draw.line(q, fill=255, width=w, joint="curve")
        for x, y in (q[0], q[-1]):  # round pen tips
            draw.ellipse((x - w / 2, y - w / 2, x + w / 2, y + w / 2), fill=255)
    small = big.resize((canvas, canvas), Image.Resampling.BOX)
    return np.asarray(small, np.float32) / 255.0


# --- typed letters: fonts on this machine -------------------------------------------------------

FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts")


def fonts(family: str) -> list[str]:
    """TrueType files whose name starts with ``family`` (e.g. "DejaVu", "Liberation"), sorted."""
    found = []
    for d in FONT_DIRS:
        found += glob.glob(os.path.join(d, "**", f"{family}*.ttf"), recursive=True)
    return sorted(p for p in found if "Math" not in p)


def typed_letter(chars: str, font_files: list[str]) -> Callable[[np.random.Generator], np.ndarray]:
    """Letters typed in one of ``font_files`` at a random size, weight (outline) and position."""

    def make(rng: np.random.Generator) -> np.ndarray:
        ch = chars[rng.integers(len(chars))]
        height = rng.uniform(0.35, 0.85) * CANVAS
        font = ImageFont.truetype(font_files[rng.integers(len(font_files))], size=int(height * 1.3))
        im = Image.new("L", (CANVAS * 3, CANVAS * 3), 0)
        draw = ImageDraw.Draw(im)
        bold = int(rng.integers(0, max(1, int(height * 0.04)) + 1))
        draw.text((CANVAS, CANVAS), ch, font=font, fill=255, stroke_width=bold, stroke_fill=255)
        ink = np.asarray(im, np.float32) / 255.0
        rows, cols = np.nonzero(ink > 0.1)
        crop = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        f = min(1.0, height / crop.shape[0], (CANVAS - 4) / crop.shape[1])
        if f < 1:
            size = (max(1, round(crop.shape[1] * f)), max(1, round(crop.shape[0] * f)))
            crop = np.asarray(Image.fromarray(crop, mode="F").resize(size, Image.Resampling.BOX), np.float32)
        out = np.zeros((CANVAS, CANVAS), np.float32)
        top = int(rng.integers(0, CANVAS - crop.shape[0] + 1))
        left = int(rng.integers(0, CANVAS - crop.shape[1] + 1))
        out[top : top + crop.shape[0], left : left + crop.shape[1]] = crop
        return out

    return make


# --- several digits side by side ---------------------------------------------------------------


def several_digits_ink(images: np.ndarray, rng: np.random.Generator, count: int | None = None) -> np.ndarray:
    """2 or 3 MNIST digits (from ``images`` (n, 784)) drawn side by side on one canvas -> ink.

    Same height and pen for all (one writer), gaps of 5-35% of the digit height, a little
    vertical wander; shrunk as a whole if the row is wider than the canvas.
    """
    k = count or int(rng.integers(2, 4))
    height = rng.uniform(0.3, 0.6)
    pen = rng.uniform(0.6, 2.0)
    parts = []
    for i in rng.choice(len(images), k, replace=False):
        ink = draw_ink(images[i], Stroke(height, pen, 0.0, 0.0), CANVAS)
        rows, cols = np.nonzero(ink > 0.05)
        parts.append(ink[: rows.max() + 1, : cols.max() + 1])
    h = height * CANVAS
    gaps = rng.uniform(0.05, 0.35, k - 1) * h
    width = int(sum(p.shape[1] for p in parts) + gaps.sum()) + 1
    rowh = int(max(p.shape[0] for p in parts) + 0.15 * h) + 1
    row = np.zeros((rowh, width), np.float32)
    x = 0.0
    for j, p in enumerate(parts):
        y = int(rng.uniform(0, 0.15 * h))
        row[y : y + p.shape[0], int(x) : int(x) + p.shape[1]] = np.maximum(
            row[y : y + p.shape[0], int(x) : int(x) + p.shape[1]], p
        )
        x += p.shape[1] + (gaps[j] if j < k - 1 else 0)
    f = min(1.0, (CANVAS - 4) / width)
    if f < 1:
        size = (max(1, round(width * f)), max(1, round(rowh * f)))
        row = np.asarray(Image.fromarray(row, mode="F").resize(size, Image.Resampling.BOX), np.float32)
    out = np.zeros((CANVAS, CANVAS), np.float32)
    top = int(rng.integers(0, CANVAS - row.shape[0] + 1))
    left = int(rng.integers(0, CANVAS - row.shape[1] + 1))
    out[top : top + row.shape[0], left : left + row.shape[1]] = row
    return np.clip(out, 0, 1)


# --- the families -------------------------------------------------------------------------------

Maker = Callable[[np.random.Generator], np.ndarray]  # rng -> (CANVAS, CANVAS) ink in [0, 1]


def sketched(make: Callable[[np.random.Generator], Drawing]) -> Maker:
    return lambda rng: render_drawing(make(rng), rng)


def families(split: str, digits: np.ndarray | None = None) -> dict[str, Maker]:
    """Non-digit families of one split: "calibration" (compare methods) or "held-out" (report).

    The held-out split has other shapes, other letters and other fonts than the calibration
    split. ``digits`` (n, 784) feeds the several-digits family (held-out only); without it, or
    without fonts on the machine, those families are left out.
    """
    if split == "calibration":
        out: dict[str, Maker] = {
            "letters, hand": sketched(letter(LETTERS_CALIBRATION)),
            "circle + cross": sketched(circle_cross),
            "star": sketched(star),
            "spiral": sketched(spiral),
            "hatching": sketched(hatching),
            "scribble": sketched(scribble),
            "filled blob": sketched(blob),
            "polygon": sketched(polygon),
        }
        if fonts("DejaVu"):
            out["letters, typed"] = typed_letter(LETTERS_CALIBRATION, fonts("DejaVu"))
        return out
    if split == "held-out":
        out = {
            "letters, hand": sketched(letter(LETTERS_HELD_OUT)),
            "smiley": sketched(smiley),
            "ten bars": sketched(bars),
            "house": sketched(house),
            "arrow": sketched(arrow),
            "heart": sketched(heart),
        }
        if fonts("Liberation"):
            out["letters, typed"] = typed_letter(LETTERS_HELD_OUT, fonts("Liberation"))
        if digits is not None:
            out["2-3 digits"] = lambda rng: several_digits_ink(digits, rng)
        out["lookalike letters"] = sketched(letter(LOOKALIKES))
        return out
    raise ValueError(f"unknown split {split!r}")


def non_digit_canvas(make: Maker, rng: np.random.Generator) -> np.ndarray:
    """One generated non-digit painted in a random colour scheme (what the app would receive)."""
    return paint(make(rng), SCHEMES[rng.integers(len(SCHEMES))], rng)


# --- data sets -----------------------------------------------------------------------------------


def split(data: Mnist) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train labels, validation images, validation labels): the default config's split.

    The shipped model held out these 5,000 validation images (same fraction and seed).
    """
    cfg = TrainConfig()
    train_idx, val_idx = stratified_split(data.y_train.astype(np.int64), cfg.val_fraction, cfg.seed)
    return data.X_train[train_idx], data.y_train[train_idx], data.X_train[val_idx], data.y_train[val_idx]


def drawn_canvases(images: np.ndarray, n: int, seed: int, every_scheme: bool = True) -> list[np.ndarray]:
    """n of ``images`` redrawn with ``mnist_net.synth``: each in every colour scheme (n * 5 canvases,
    as benchmarks/drawn_digits.py does), or each once in a random scheme (n independent canvases)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in rng.choice(len(images), size=min(n, len(images)), replace=False):
        stroke = random_stroke(rng)
        schemes = SCHEMES if every_scheme else (SCHEMES[rng.integers(len(SCHEMES))],)
        out += [render(images[i], stroke, scheme, rng) for scheme in schemes]
    return out


def sketched_canvases(n: int, seed: int) -> list[np.ndarray]:
    """n digits sketched with the same renderer as the non-digits, in random colour schemes."""
    rng = np.random.default_rng(seed)
    return [non_digit_canvas(sketched(digit_sketch), rng) for _ in range(n)]


def family_canvases(make: Maker, n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [non_digit_canvas(make, rng) for _ in range(n)]


def inputs_of(canvases: list[np.ndarray]) -> np.ndarray:
    """canvas_to_input of each canvas, the ones with no digit left out: (m, 784) float32."""
    xs = [canvas_to_input(c) for c in canvases]
    xs = [x for x in xs if x is not None]
    return np.stack(xs) if xs else np.zeros((0, N_INPUTS), np.float32)


# --- the shipped file: calibration sample and outlier detector ------------------------------------

# Each calibration digit is drawn on its own (one colour scheme each): the 1.5% tail of a kind of
# digit is then estimated from ~15 independent digits, not from 3 digits in 5 colours.
N_CAL_MNIST, N_CAL_DRAWN, N_CAL_SKETCHED = 1000, 1000, 1000
DETECTOR_HIDDEN, DETECTOR_EPOCHS, N_NEGATIVES, N_DRAWN_POSITIVES = 64, 6, 600, 800


def train_detector(
    X_train: np.ndarray, drawn: np.ndarray, negatives: np.ndarray, seed: int = 0
) -> dict[str, np.ndarray]:
    """A 784-64-2 relu network: class 0 digits, class 1 non-digits (outlier exposure).

    X_train: (n, 784) uint8 MNIST training images (augmented afresh every epoch as the shipped
    model's training was); drawn: (m, 784) redrawn training digits; negatives: (k, 784)
    generated non-digits of the calibration families. Each batch holds 128 MNIST digits, 16
    drawn ones and 96 non-digits. Adam, fixed seed: the same weights every run on one machine.
    """
    rng = np.random.default_rng(seed)
    cfg = TrainConfig()
    params = init_params([N_INPUTS, DETECTOR_HIDDEN, 2], "relu", rng)
    optimizer = Adam(1e-3)
    X = X_train.astype(np.float32) / 255
    for _ in range(DETECTOR_EPOCHS):
        order = rng.permutation(len(X))
        for i in range(0, len(order), 128):
            digits = augment_batch(X[order[i : i + 128]], rng, cfg)
            batch = np.concatenate(
                [digits, drawn[rng.integers(len(drawn), size=16)], negatives[rng.integers(len(negatives), size=96)]]
            )
            labels = np.r_[np.zeros(len(digits) + 16, np.int64), np.ones(96, np.int64)]
            _, grads, _ = loss_and_grads(params, batch, labels, "relu", 1e-4)
            optimizer.step(params, grads)
    return params


def build_assets(data: Mnist, log: Callable[[str], None] = print) -> NoveltyAssets:
    """Everything in assets/novelty.npz, from MNIST training data and the calibration families only."""
    X_train, _, X_val, _ = split(data)
    rng = np.random.default_rng(100)
    mnist = X_val[rng.choice(len(X_val), N_CAL_MNIST, replace=False)].astype(np.float32) / 255
    drawn = inputs_of(drawn_canvases(X_val, N_CAL_DRAWN, seed=101, every_scheme=False))
    sketches = inputs_of(sketched_canvases(N_CAL_SKETCHED, seed=102))
    log(f"calibration sample: {len(mnist)} MNIST validation, {len(drawn)} drawn, {len(sketches)} sketched digits")
    negatives = np.concatenate(
        [
            inputs_of(family_canvases(make, N_NEGATIVES, 200 + j))
            for j, make in enumerate(families("calibration").values())
        ]
    )
    drawn_train = inputs_of(drawn_canvases(X_train, N_DRAWN_POSITIVES, seed=103))
    log(f"detector: {len(negatives)} calibration non-digits, {len(drawn_train)} drawn training digits; training")
    with threadpool_limits(1):  # one BLAS thread: the same sums in the same order, the same weights
        detector = train_detector(X_train, drawn_train, negatives)
    calibration = np.concatenate([mnist, drawn, sketches])
    groups = np.repeat(np.arange(3), [len(mnist), len(drawn), len(sketches)])
    return NoveltyAssets(detector, calibration, groups)


# --- candidate scores (higher = less like a digit) ------------------------------------------------

Score = Callable[[np.ndarray], np.ndarray]  # (n, 784) inputs -> (n,) scores


def hidden_features(model, X: np.ndarray) -> np.ndarray:
    """The last hidden layer's activations: (n, 784) -> (n, h)."""
    _, inputs = forward(model.params_, np.asarray(X, np.float32), model.activation)
    return inputs[-1].astype(np.float64)


def mahalanobis(model, X_train: np.ndarray, y_train: np.ndarray) -> Score:
    """Distance of the last hidden layer's activations to the nearest class mean (shared covariance)."""
    H = hidden_features(model, X_train.astype(np.float32) / 255)
    means = np.stack([H[y_train == c].mean(axis=0) for c in range(10)])
    centred = H - means[y_train]
    precision = np.linalg.pinv(centred.T @ centred / len(H) + 1e-3 * np.eye(H.shape[1]))

    def score(X: np.ndarray) -> np.ndarray:
        h = hidden_features(model, X)
        return np.min([np.einsum("ij,jk,ik->i", h - m, precision, h - m) for m in means], axis=0)

    return score


def pca_residual(X_train: np.ndarray, k: int = 40, seed: int = 0) -> Score:
    """Squared reconstruction error of a k-component PCA of augmented MNIST training images."""
    rng = np.random.default_rng(seed)
    X = X_train.astype(np.float32) / 255
    X = np.concatenate([augment_batch(X[i : i + 5000], rng, TrainConfig()) for i in range(0, len(X), 5000)])
    mean = X.mean(axis=0)
    _, _, vt = np.linalg.svd(X - mean, full_matrices=False)
    basis = vt[:k]

    def score(X: np.ndarray) -> np.ndarray:
        z = X - mean
        return ((z - (z @ basis.T) @ basis) ** 2).sum(axis=1).astype(np.float64)

    return score


def candidate_scores(model, assets: NoveltyAssets, X_train: np.ndarray, y_train: np.ndarray) -> dict[str, Score]:
    calibration = calibrate(model, assets)
    return {
        "max softmax (1 - p_max)": lambda X: 1.0 - model.predict_proba(X).max(axis=1).astype(np.float64),
        "energy (-logsumexp logits)": lambda X: energy(model.logits(X)),
        "Mahalanobis, last hidden": mahalanobis(model, X_train, y_train),
        "PCA-40 residual": pca_residual(X_train),
        "outlier detector (input)": lambda X: detector_score(X, assets.detector),
        "energy + detector (shipped)": lambda X: (
            (energy(model.logits(X)) - calibration.energy_centre) / calibration.energy_scale
            + (detector_score(X, assets.detector) - calibration.detector_centre) / calibration.detector_scale
        ),
    }


def threshold_for(scores_by_group: list[np.ndarray], max_alarm: float) -> float:
    """The smallest threshold flagging at most ``max_alarm`` of each group (flag: score >= threshold)."""
    return float(
        np.nextafter(max(float(np.quantile(s, 1 - max_alarm, method="higher")) for s in scores_by_group), np.inf)
    )


def rate(flags: np.ndarray) -> str:
    return f"{np.mean(flags):.1%}" if len(flags) else "-"


def table(rows: list[tuple[str, list[str]]], header: list[str], first: int = 28) -> str:
    widths = [max(len(h), *(len(r[1][i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["| " + "method".ljust(first) + " | " + " | ".join(h.rjust(w) for h, w in zip(header, widths)) + " |"]
    lines.append("|" + "-" * (first + 2) + "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|")
    lines += [
        "| " + name.ljust(first) + " | " + " | ".join(c.rjust(w) for c, w in zip(cells, widths)) + " |"
        for name, cells in rows
    ]
    return "\n".join(lines)


def per_call_ms(model, x: np.ndarray, repeats: int = 300) -> tuple[float, float]:
    """(median, 95th percentile) ms of assess_input for one input, the model's calibration cached."""
    assess_input(x, model)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        assess_input(x, model)
        times.append(time.perf_counter() - t)
    ms = np.array(times) * 1e3
    return float(np.median(ms)), float(np.percentile(ms, 95))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model file (default: the shipped one)")
    parser.add_argument("--n-per-family", type=int, default=300, help="canvases per non-digit family")
    parser.add_argument("--n-drawn", type=int, default=600, help="digits redrawn per set (x 5 colour schemes)")
    parser.add_argument("--n-sketched", type=int, default=600, help="sketched digits per set")
    parser.add_argument("--max-alarm", type=float, default=MAX_FALSE_ALARM, help="false alarms allowed per digit kind")
    parser.add_argument("--write-asset", default=None, help="rebuild the shipped file here (e.g. assets/novelty.npz)")
    parser.add_argument("--asset", default=str(ASSET), help="novelty file to measure (default: the shipped one)")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)

    data = load_mnist(args.data_dir, progress=False)
    if args.write_asset:
        t0 = time.perf_counter()
        assets = build_assets(data)
        save_assets(args.write_asset, assets)
        size_kb = os.path.getsize(args.write_asset) / 1e3
        print(f"wrote {args.write_asset} ({size_kb:.0f} kB) in {time.perf_counter() - t0:.0f} s")
        return 0

    model = load_model(args.model)
    assets = load_assets(args.asset)
    X_train, y_train, X_val, _ = split(data)
    t0 = time.perf_counter()
    digits_cal = {
        "MNIST val": X_val.astype(np.float32) / 255,
        "drawn val": inputs_of(drawn_canvases(X_val, args.n_drawn, seed=1)),
        "sketched": inputs_of(sketched_canvases(args.n_sketched, seed=3)),
    }
    test_drawn_canvases = drawn_canvases(data.X_test, args.n_drawn, seed=2)
    test_sketched_canvases = sketched_canvases(args.n_sketched, seed=4)
    digits_test = {
        "MNIST test": data.X_test.astype(np.float32) / 255,
        "drawn test": inputs_of(test_drawn_canvases),
        "sketched test": inputs_of(test_sketched_canvases),
    }
    cal_families = {
        name: family_canvases(make, args.n_per_family, 10 + j)
        for j, (name, make) in enumerate(families("calibration").items())
    }
    held_families = {
        name: family_canvases(make, args.n_per_family, 40 + j)
        for j, (name, make) in enumerate(families("held-out", data.X_test).items())
    }
    cal_inputs = {k: inputs_of(v) for k, v in cal_families.items()}
    held_inputs = {k: inputs_of(v) for k, v in held_families.items()}
    print(
        f"model: {args.model or 'default'} ({'-'.join(map(str, model.layer_sizes))}, {model.activation}); "
        f"sets built in {time.perf_counter() - t0:.0f} s; {args.n_per_family} canvases per family"
    )
    print(f"digits: {', '.join(f'{k} {len(v)}' for k, v in {**digits_cal, **digits_test}.items())}")

    methods = candidate_scores(model, assets, X_train, y_train.astype(np.int64))
    counted = [k for k in held_inputs if k not in ("lookalike letters",)]
    cal_rows, held_rows = [], []
    for name, score in methods.items():
        cal_scores = [score(v) for v in digits_cal.values()]
        thr = threshold_for(cal_scores, args.max_alarm)
        alarms = [rate(s >= thr) for s in cal_scores]
        caught_cal = {k: np.mean(score(v) >= thr) for k, v in cal_inputs.items()}
        caught_held = {k: np.mean(score(v) >= thr) for k, v in held_inputs.items()}
        cal_rows.append(
            (name, alarms + [f"{c:.0%}" for c in caught_cal.values()] + [f"{np.mean(list(caught_cal.values())):.0%}"])
        )
        held_rows.append(
            (
                name,
                [f"{caught_held[k]:.0%}" for k in held_inputs] + [f"{np.mean([caught_held[k] for k in counted]):.0%}"],
            )
        )
    print(
        f"\ncalibration: false alarms on digits and catch rate per calibration family "
        f"(each method thresholded at <= {args.max_alarm:.1%} false alarms per kind of digit)"
    )
    print(table(cal_rows, list(digits_cal) + list(cal_inputs) + ["mean"]))
    print("\nheld-out families, same thresholds (mean over all but the lookalike letters):")
    print(table(held_rows, list(held_inputs) + ["mean"]))

    chosen = model_calibration(model)
    print(
        f"\nchosen: energy + detector; this model's threshold {chosen.threshold:.3f} from the shipped sample "
        f"(false alarms there: {', '.join(f'{g} {a:.1%}' for g, a in zip(GROUPS, chosen.false_alarms))})"
    )
    final = [(f"{k}", rate(novelty_scores(v, model) >= chosen.threshold)) for k, v in digits_test.items()]
    print("test digits flagged (final figures):", ", ".join(f"{k} {r}" for k, r in final))
    print(
        "held-out families caught:",
        ", ".join(f"{k} {rate(novelty_scores(v, model) >= chosen.threshold)}" for k, v in held_inputs.items()),
    )

    per_letter = {
        ch: inputs_of(family_canvases(sketched(letter(ch)), args.n_per_family // 10, 300 + i))
        for i, ch in enumerate(LETTERS_HELD_OUT)
    }
    print(
        "held-out hand letters caught, per letter:",
        " ".join(f"{ch} {np.mean(novelty_scores(v, model) >= chosen.threshold):.0%}" for ch, v in per_letter.items()),
    )

    several = [several_digits(c) for c in held_families["2-3 digits"]]
    single = [several_digits(c) for c in test_drawn_canvases + test_sketched_canvases]
    print(
        f"\nseveral_digits: {np.mean(several):.1%} of {len(several)} canvases of 2-3 digits side by side; "
        f"{np.mean(single):.1%} of {len(single)} single drawn or sketched test digits"
    )
    for name, canvases in held_families.items():
        if name != "2-3 digits":
            print(f"  several_digits on {name}: {np.mean([several_digits(c) for c in canvases]):.0%}")

    x = digits_test["drawn test"][0]
    t = time.perf_counter()
    calibrate(model, assets)
    calibration_ms = (time.perf_counter() - t) * 1e3
    med, p95 = per_call_ms(model, x)
    canvas = test_drawn_canvases[0]
    t = time.perf_counter()
    for _ in range(50):
        count_digit_parts(canvas)
    parts_ms = (time.perf_counter() - t) / 50 * 1e3
    print(
        f"\nper call: assess_input {med:.3f} ms median, {p95:.3f} ms p95; several_digits on a 280x280 canvas "
        f"{parts_ms:.2f} ms; calibrating a model at first use {calibration_ms:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
