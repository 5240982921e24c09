"""Synthetic "drawn" digits: an MNIST digit re-rendered the way people draw on a canvas.

Used to measure (benchmarks/drawn_digits.py) and test (tests/) how the preprocessing and
the model hold up on browser drawings: each digit is redrawn on a large canvas at a
random size and position, with a thinner or thicker pen, in one of several colour
schemes (white on black, black on white, ink on a transparent canvas with anti-aliasing
in alpha, grayscale, and an RGB photo of paper with uneven light and grain).
Build it from MNIST *test* images only, so nothing here has been trained on.

Non-goals: realistic pen dynamics, training data, speed (a few ms per canvas is fine).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .augment import grow_strokes

SCHEMES = ("white_on_black", "black_on_white", "transparent", "grayscale", "photo")
CANVAS = 280
MNIST_STROKE = 0.12  # an MNIST stroke is about 12% of the digit's height


@dataclass(frozen=True)
class Stroke:
    """Geometry of one drawing, shared across colour schemes so they can be compared.

    height_frac: digit height / canvas height; pen: stroke width relative to MNIST's own
    (0.5 = half as thick, 2.5 = two and a half times); x, y: top-left as a fraction of the
    free space (0 = touching the left/top edge, 1 = touching the right/bottom edge).
    """

    height_frac: float
    pen: float
    x: float
    y: float


def random_stroke(rng: np.random.Generator, height=(0.35, 0.85), pen=(0.5, 2.5)) -> Stroke:
    """A random drawing geometry: size and pen uniform in the given ranges, any position."""
    return Stroke(float(rng.uniform(*height)), float(rng.uniform(*pen)), float(rng.uniform()), float(rng.uniform()))


def draw_ink(digit: np.ndarray, stroke: Stroke, canvas: int = CANVAS) -> np.ndarray:
    """Redraw one MNIST digit as anti-aliased pen ink on a square canvas.

    digit: (28, 28) or (784,) uint8 or float in [0, 1]. Returns (canvas, canvas) float32 ink
    in [0, 1]: the digit's bounding box scaled to ``height_frac * canvas`` (aspect kept),
    its strokes thinned (higher threshold) or thickened (dilation) to ``pen``, with edges
    about 1.5 px soft like a browser's anti-aliased brush.
    """
    d = np.asarray(digit, np.float32).reshape(28, 28)
    if d.max() > 1:
        d = d / 255.0
    rows, cols = np.nonzero(d > 0.05)
    crop = d[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    h = max(8, round(stroke.height_frac * canvas))
    w = max(2, min(canvas - 2, round(h * crop.shape[1] / crop.shape[0])))
    field = np.asarray(Image.fromarray(crop, mode="F").resize((w, h), Image.Resampling.BICUBIC), np.float32)
    field = np.clip(field, 0, 1)
    # Thinner pens: keep only the core of each stroke; thicker pens: grow the strokes.
    level = 0.5 + 0.3 * min(1.0, max(0.0, (1.0 - stroke.pen) / 0.5))
    grow = max(0, round((stroke.pen - 1.0) * MNIST_STROKE * h / 2))
    field = grow_strokes(field[None], np.array([grow]))[0]
    # The bicubic field ramps over ~h/20 px at an edge; steepen it to a ~1.5 px soft edge.
    steep = max(1.0, h / 20 / 1.5)
    ink = np.clip((field - level) * steep + 0.5, 0.0, 1.0)
    out = np.zeros((canvas, canvas), np.float32)
    top = round(stroke.y * (canvas - h))
    left = round(stroke.x * (canvas - w))
    out[top : top + h, left : left + w] = ink
    return out


def paint(ink: np.ndarray, scheme: str, rng: np.random.Generator) -> np.ndarray:
    """Colour an ink map (H, W) in [0, 1] as a canvas of the given scheme.

    white_on_black / black_on_white: (H, W, 4) uint8 opaque RGBA; transparent: RGBA whose
    colour is the pen's and whose alpha carries the ink (a random pen colour, as a canvas
    with no background returns it); grayscale: (H, W) uint8, random polarity and levels;
    photo: (H, W, 3) uint8 paper with a lighting gradient, grain and specks, dark pen ink.
    """
    h, w = ink.shape
    if scheme == "white_on_black":
        v = np.round(ink * 255).astype(np.uint8)
        return np.dstack([v, v, v, np.full_like(v, 255)])
    if scheme == "black_on_white":
        v = np.round(255 - ink * 255).astype(np.uint8)
        return np.dstack([v, v, v, np.full_like(v, 255)])
    if scheme == "transparent":
        pens = np.array([[0, 0, 0], [255, 255, 255], [31, 119, 180], [214, 39, 40]], np.uint8)
        colour = pens[rng.integers(len(pens))]
        rgb = np.broadcast_to(colour, (h, w, 3))
        return np.dstack([rgb, np.round(ink * 255).astype(np.uint8)])
    if scheme == "grayscale":
        background, pen = rng.uniform(0, 60), rng.uniform(190, 255)
        if rng.random() < 0.5:
            background, pen = 255 - background, 255 - pen
        return np.round(background + (pen - background) * ink).astype(np.uint8)
    if scheme == "photo":
        paper = rng.uniform(200, 245) * np.array([1.0, rng.uniform(0.96, 1.0), rng.uniform(0.88, 1.0)])
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        gx, gy = rng.uniform(-0.25, 0.25, 2)
        light = 1.0 + gx * (xx - 0.5) + gy * (yy - 0.5)  # light falls off across the page
        pen_rgb = rng.uniform(10, 70) * np.array([1.0, 1.0, rng.uniform(1.0, 2.0)])
        strength = rng.uniform(0.75, 0.95)
        a = (ink * strength)[..., None]
        img = (paper * (1 - a) + pen_rgb * a) * light[..., None]
        img += rng.normal(0, rng.uniform(2, 7), (h, w, 1))  # sensor grain
        specks = rng.random((h, w)) < 0.0005  # paper fibres and dust
        img[specks] *= 0.6
        return np.clip(np.round(img), 0, 255).astype(np.uint8)
    raise ValueError(f"unknown colour scheme {scheme!r}; expected one of {SCHEMES}")


def render(
    digit: np.ndarray, stroke: Stroke, scheme: str, rng: np.random.Generator, canvas: int = CANVAS
) -> np.ndarray:
    """One MNIST digit drawn on a canvas: ``paint(draw_ink(...))``."""
    return paint(draw_ink(digit, stroke, canvas), scheme, rng)


def naive_input(image: np.ndarray) -> np.ndarray:
    """What a naive app does: the whole canvas to greyscale, resized to 28x28. (784,) float32.

    Pillow's "L" conversion drops alpha, so ink on a transparent canvas keeps only its colour.
    """
    arr = np.asarray(image)
    if arr.ndim == 2:
        im = Image.fromarray(arr, mode="L")
    else:
        im = Image.fromarray(arr).convert("L")
    small = im.resize((28, 28), Image.Resampling.LANCZOS)
    return np.asarray(small, np.float32).ravel() / 255.0


__all__ = ["SCHEMES", "Stroke", "random_stroke", "draw_ink", "paint", "render", "naive_input"]
