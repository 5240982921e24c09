"""On-the-fly augmentation: random affine warps and stroke-width changes, vectorised over a batch.

A digit drawn in a browser differs from an MNIST digit in position, size, slant and
stroke thickness even after preprocessing; these transforms cover that variation.
Everything is array maths over the whole batch: no Python loop per image.
"""

from __future__ import annotations

import numpy as np

SIDE = 28


def affine_warp(images: np.ndarray, angle_deg: np.ndarray, scale: np.ndarray,
                shift: np.ndarray, side: int = SIDE) -> np.ndarray:
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

    out = ((1 - fy) * ((1 - fx) * tap(y0, x0) + fx * tap(y0, x1))
           + fy * ((1 - fx) * tap(y1, x0) + fx * tap(y1, x1)))
    return out.astype(np.float32, copy=False)


def _neighbours(images: np.ndarray, side: int = SIDE) -> list[np.ndarray]:
    """The image and its four one-pixel shifts (plus-shaped neighbourhood), (batch, side, side) each."""
    img = images.reshape(-1, side, side)
    p = np.pad(img, ((0, 0), (1, 1), (1, 1)))
    return [img, p[:, :-2, 1:-1], p[:, 2:, 1:-1], p[:, 1:-1, :-2], p[:, 1:-1, 2:]]


def thicken(images: np.ndarray, side: int = SIDE) -> np.ndarray:
    """Grey dilation with a plus-shaped kernel: strokes about one pixel wider."""
    return np.maximum.reduce(_neighbours(images, side)).reshape(images.shape)


def thin(images: np.ndarray, side: int = SIDE) -> np.ndarray:
    """Soft grey erosion: average of the image and its plus-kernel erosion, so thin strokes survive."""
    eroded = np.minimum.reduce(_neighbours(images, side)).reshape(images.shape)
    return 0.5 * (images + eroded)


def augment_batch(images: np.ndarray, rng: np.random.Generator, max_shift: float = 3.0,
                  max_rotation: float = 15.0, scale_range: tuple[float, float] = (0.85, 1.15),
                  stroke_change_prob: float = 0.3) -> np.ndarray:
    """Random per-image rotation, scale, shift and stroke width. images: (batch, 784) in [0, 1]."""
    b = images.shape[0]
    angle = rng.uniform(-max_rotation, max_rotation, b).astype(np.float32)
    scale = rng.uniform(scale_range[0], scale_range[1], b).astype(np.float32)
    shift = rng.uniform(-max_shift, max_shift, (b, 2)).astype(np.float32)
    out = affine_warp(images, angle, scale, shift)
    if stroke_change_prob > 0:
        u = rng.random(b)
        thick = u < stroke_change_prob / 2
        thinner = (u >= stroke_change_prob / 2) & (u < stroke_change_prob)
        if thick.any():
            out[thick] = thicken(out[thick])
        if thinner.any():
            out[thinner] = thin(out[thinner])
    return np.clip(out, 0.0, 1.0, out=out)
