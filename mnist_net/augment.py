"""On-the-fly augmentation: random affine warps and stroke-width changes, vectorised over a batch.

A digit drawn in a browser differs from an MNIST digit in position, size, slant and
stroke thickness even after preprocessing; these transforms cover that variation.
Everything is array maths over the whole batch: no Python loop per image. The ranges come
from ``TrainConfig`` (chosen by measurement on redrawn validation digits: README,
"Augmentation"). Non-goals: elastic distortions, noise, occlusion.
"""

from __future__ import annotations

import numpy as np

from .config import TrainConfig
from .data import BOX, SIDE


def affine_warp(
    images: np.ndarray, angle_deg: np.ndarray, scale: np.ndarray, shift: np.ndarray, side: int = SIDE
) -> np.ndarray:
    """Rotate by angle, scale about the centre, then shift; bilinear sampling, zeros outside.

    images: (batch, side*side) float32; angle_deg, scale: (batch,); shift: (batch, 2) as (dx, dy).
    Returns (batch, side*side) float32.
    """
    b = images.shape[0]
    c = (side - 1) / 2.0
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float32)
    px = xs.ravel()[None, :] - c - shift[:, :1]  # (b, side*side) output coords, centred
    py = ys.ravel()[None, :] - c - shift[:, 1:]
    theta = np.deg2rad(angle_deg)[:, None].astype(np.float32)
    cos, sin = np.cos(theta), np.sin(theta)
    inv_s = (1.0 / scale)[:, None].astype(np.float32)
    # Inverse map: where in the source does each output pixel come from?
    sx = (cos * px + sin * py) * inv_s + c
    sy = (-sin * px + cos * py) * inv_s + c
    # Pad one ring of zeros so out-of-range taps read 0; clip into the padded frame.
    padded = np.zeros((b, side + 2, side + 2), np.float32)
    padded[:, 1:-1, 1:-1] = images.reshape(b, side, side)
    flat = padded.reshape(b, -1)
    sx = np.clip(sx + 1, 0, side + 0.999)
    sy = np.clip(sy + 1, 0, side + 0.999)
    x0 = sx.astype(np.int32)
    y0 = sy.astype(np.int32)
    fx, fy = sx - x0, sy - y0
    w = side + 2
    x1, y1 = np.minimum(x0 + 1, side + 1), np.minimum(y0 + 1, side + 1)

    def tap(yy, xx):
        return np.take_along_axis(flat, yy * w + xx, axis=1)

    out = (1 - fy) * ((1 - fx) * tap(y0, x0) + fx * tap(y0, x1)) + fy * ((1 - fx) * tap(y1, x0) + fx * tap(y1, x1))
    return out.astype(np.float32, copy=False)


def _neighbours(images: np.ndarray) -> list[np.ndarray]:
    """The images and their four one-pixel shifts (plus-shaped neighbourhood), each (batch, H, W)."""
    p = np.pad(images, ((0, 0), (1, 1), (1, 1)))
    return [images, p[:, :-2, 1:-1], p[:, 2:, 1:-1], p[:, 1:-1, :-2], p[:, 1:-1, 2:]]


def _diagonals(images: np.ndarray) -> list[np.ndarray]:
    """The images' four diagonal one-pixel shifts, each (batch, H, W)."""
    p = np.pad(images, ((0, 0), (1, 1), (1, 1)))
    return [p[:, :-2, :-2], p[:, :-2, 2:], p[:, 2:, :-2], p[:, 2:, 2:]]


def thin(images: np.ndarray, side: int = SIDE) -> np.ndarray:
    """Soft grey erosion: average of the image and its plus-kernel erosion, so thin strokes survive.

    images: (batch, side*side). Returns a new array of the same shape.
    """
    eroded = np.minimum.reduce(_neighbours(images.reshape(-1, side, side))).reshape(images.shape)
    return 0.5 * (images + eroded)


def grow_strokes(images: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Grey dilation of image i by steps[i] pixels (0 = unchanged), alternating plus and square kernels.

    The alternation makes a pen tip grow round, not diamond- or square-shaped. images:
    (batch, H, W); steps: (batch,) ints >= 0. Returns a new (batch, H, W) array. Used by the
    augmentation (thicker pens) and by ``synth`` (redrawing digits with a fat pen).
    """
    out = images.copy()
    for k in range(1, int(steps.max(initial=0)) + 1):
        grow = steps >= k
        nb = _neighbours(out[grow])
        if k % 2 == 0:
            nb += _diagonals(out[grow])
        out[grow] = np.maximum.reduce(nb)
    return out


def thicken_steps(images: np.ndarray, steps: np.ndarray, side: int = SIDE) -> np.ndarray:
    """``grow_strokes`` for flat images (batch, side*side); returns the same shape."""
    return grow_strokes(images.reshape(-1, side, side), steps).reshape(images.shape)


def augment_batch(images: np.ndarray, rng: np.random.Generator, config: TrainConfig) -> np.ndarray:
    """Random per-image rotation, scale, shift and stroke width. images: (batch, 784) in [0, 1].

    Ranges from ``config`` (max_shift, max_rotation, scale_range, stroke_change_prob,
    max_thicken). Of the images whose stroke changes, half are thinned and half thickened by
    1..max_thicken pixels; a thickened digit is also shrunk so it still fits the 20-pixel
    box, as canvas_to_input fits a thick drawing into the box.
    """
    b = images.shape[0]
    angle = np.asarray(rng.uniform(-config.max_rotation, config.max_rotation, b), np.float32)
    scale = np.asarray(rng.uniform(config.scale_range[0], config.scale_range[1], b), np.float32)
    shift = np.asarray(rng.uniform(-config.max_shift, config.max_shift, (b, 2)), np.float32)
    out = images.astype(np.float32, copy=True)
    p = config.stroke_change_prob
    if p > 0:
        u = np.asarray(rng.random(b))
        thick = u < p / 2
        thinner = (u >= p / 2) & (u < p)
        steps = np.where(thick, rng.integers(1, config.max_thicken + 1, b), 0)
        if thick.any():
            out = thicken_steps(out, steps)
            scale *= (BOX / (BOX + 2 * steps)).astype(np.float32)
        if thinner.any():
            out[thinner] = thin(out[thinner])
    out = affine_warp(out, angle, scale, shift)
    return np.clip(out, 0.0, 1.0, out=out)
