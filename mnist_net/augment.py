"""On-the-fly augmentation, vectorised over a batch and float32 throughout.

A digit drawn in a browser differs from an MNIST digit in position, size, slant and stroke
thickness even after preprocessing, and people write some digits in styles MNIST barely has.
The transforms here cover that variation: random affine warps (rotation, scale, shift, slant),
elastic distortions (Simard et al. 2003), stroke-width changes, and label-aware handwriting
styles (a flag and a foot on 1s, a crossbar on 7s, a slash through 0s, a curled tail on 9s,
an open top on 4s). Everything is array maths over the whole batch: no Python loop per image
or pixel. All warps are folded into one bilinear resampling per batch. The ranges come from
``TrainConfig`` (chosen by measurement on redrawn validation digits: README, "Augmentation").
Non-goals: noise, occlusion, colour (the preprocessing removes those before the network).
"""

from __future__ import annotations

import numpy as np

from .config import TrainConfig
from .data import BOX, SIDE

# Pixel grid of an MNIST image, centred on the image centre: x (columns) and y (rows), (SIDE*SIDE,).
_CENTRE = (SIDE - 1) / 2.0
_GRID_Y, _GRID_X = (a.ravel() - np.float32(_CENTRE) for a in np.mgrid[0:SIDE, 0:SIDE].astype(np.float32))
_GRID = np.stack([_GRID_X, _GRID_Y, np.ones_like(_GRID_X)])  # (3, SIDE*SIDE): centred x, y and 1
CHUNK = 64  # images augmented at a time: every temporary then stays in the CPU's cache (4x faster at 256)


def bilinear_sample(images: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Sample each image at its own source coordinates, bilinear, zeros outside the image.

    images: (batch, side, side) float32; coords: (batch, 2, n) float32 source (column, row)
    of each output pixel; coords is used as scratch (its values change). Returns (batch, n)
    float32: one gather per corner over the whole batch, every temporary the batch's size.
    """
    b, side = images.shape[0], images.shape[1]
    w = side + 2  # one ring of zeros, so taps just outside read 0
    padded = np.zeros((b, w, w), np.float32)
    padded[:, 1:-1, 1:-1] = images
    flat = padded.reshape(-1)
    coords += np.float32(1)  # into the padded frame, clamped so both taps of a pixel stay in it
    np.clip(coords, 0, np.float32(side + 0.999), out=coords)
    corner = np.floor(coords)
    coords -= corner  # now the fractions, float32 (a float32 - int subtraction would promote to float64)
    fx, fy = coords[:, 0], coords[:, 1]
    position = corner[:, 1] * np.float32(w)
    position += corner[:, 0]  # exact in float32: below w * w
    index = position.astype(np.intp)
    index += (np.arange(b, dtype=np.intp) * (w * w))[:, None]
    top = flat.take(index)
    index += 1
    step = flat.take(index)
    step -= top
    step *= fx
    top += step  # the upper pair, blended across
    index += w - 1
    bottom = flat.take(index)
    index += 1
    step = flat.take(index)
    step -= bottom
    step *= fx
    bottom += step  # the lower pair
    bottom -= top
    bottom *= fy
    top += bottom
    return top


def affine_source(
    angle_deg: np.ndarray, scale: np.ndarray, shift: np.ndarray, slant: np.ndarray | None = None
) -> np.ndarray:
    """Source coordinates, (batch, 2, SIDE*SIDE) float32 (column, row), of an affine warp.

    The warp slants (x += slant * y, slant as the tangent of the lean), rotates by angle,
    scales about the centre, then shifts by (dx, dy); this is its inverse, mapping each output
    pixel to where in the source it comes from, as one (2, 3) matrix per image applied to the
    pixel grid by a single batched matrix product. angle_deg, scale: (batch,); shift: (batch, 2);
    slant: (batch,) or None.
    """
    theta = np.deg2rad(np.asarray(angle_deg, np.float64))
    inv_s = 1.0 / np.asarray(scale, np.float64)
    cos, sin = np.cos(theta) * inv_s, np.sin(theta) * inv_s
    k = np.zeros_like(cos) if slant is None else np.asarray(slant, np.float64)
    m = np.empty((len(cos), 2, 3))
    # Unrotate and unscale: (x, y) -> (cos x + sin y, -sin x + cos y) / scale; then unslant: x -= k y.
    m[:, 0, 0], m[:, 0, 1] = cos + k * sin, sin - k * cos
    m[:, 1, 0], m[:, 1, 1] = -sin, cos
    shift = np.asarray(shift, np.float64)
    m[:, :, 2] = _CENTRE - np.einsum("bij,bj->bi", m[:, :, :2], shift)  # unshift first
    return np.matmul(m.astype(np.float32), _GRID)


def affine_warp(
    images: np.ndarray,
    angle_deg: np.ndarray,
    scale: np.ndarray,
    shift: np.ndarray,
    side: int = SIDE,
    slant: np.ndarray | None = None,
) -> np.ndarray:
    """Slant, rotate by angle, scale about the centre, then shift; bilinear sampling, zeros outside.

    images: (batch, side*side) float32; angle_deg, scale: (batch,); shift: (batch, 2) as (dx, dy);
    slant: (batch,) tangents or None. Returns (batch, side*side) float32.
    """
    if side != SIDE:
        raise ValueError(f"affine_warp works on {SIDE}x{SIDE} images")
    return bilinear_sample(
        np.asarray(images, np.float32).reshape(-1, side, side), affine_source(angle_deg, scale, shift, slant)
    )


def smoothing_matrix(sigma: float, side: int = SIDE) -> np.ndarray:
    """(side, side) float32 Gaussian smoothing operator: row i averages around pixel i.

    Rows sum to 1 (a weighted average, renormalised at the borders), so smoothing values in
    [-1, 1] gives values in [-1, 1].
    """
    d = np.arange(side, dtype=np.float64)
    g = np.exp(-0.5 * ((d[:, None] - d[None, :]) / sigma) ** 2)
    return (g / g.sum(axis=1, keepdims=True)).astype(np.float32)


def elastic_field(rng: np.random.Generator, n: int, alpha: float, sigma: float, side: int = SIDE) -> np.ndarray:
    """Simard et al.'s random displacement fields: uniform noise smoothed by a Gaussian, times alpha.

    Returns (n, 2, side, side) float32 displacements (dx, dy) in pixels, each at most alpha
    in size (a smoothed value of noise in [-1, 1]) and smooth at the scale of sigma pixels.
    Smoothing is G @ U @ G.T for every field at once (two matrix products over the whole batch).
    """
    g = smoothing_matrix(sigma, side)
    noise = rng.random((n * 2 * side, side), dtype=np.float32)
    noise *= 2
    noise -= 1
    across = noise @ g.T  # every row of every field smoothed in one matrix product
    down = g @ across.reshape(-1, side, side).transpose(1, 0, 2).reshape(side, -1)  # then every column
    field = down.reshape(side, n * 2, side).transpose(1, 0, 2).reshape(n, 2, side, side)
    field *= np.float32(alpha)
    return field


# --- stroke width ---------------------------------------------------------------------------


def _line3(a: np.ndarray, axis: int, op: np.ufunc) -> np.ndarray:
    """op (np.maximum or np.minimum) of each pixel and its two neighbours along ``axis`` (1 or 2)
    of (batch, H, W), with zeros beyond the border (as a zero-padded 3-tap window). Returns a new array."""
    out = a.copy()
    before = (slice(None),) * axis
    lo, hi = before + (slice(None, -1),), before + (slice(1, None),)
    op(out[lo], a[hi], out=out[lo])
    op(out[hi], a[lo], out=out[hi])
    for edge in (before + (0,), before + (-1,)):
        op(out[edge], 0, out=out[edge])
    return out


def _window(a: np.ndarray, op: np.ufunc, square: bool) -> np.ndarray:
    """One-pixel grey dilation (op=np.maximum) or erosion (np.minimum) of (batch, H, W) by the plus
    (centre and 4 neighbours) or the 3x3 square kernel, zeros beyond the border."""
    across = _line3(a, 2, op)
    if square:
        return _line3(across, 1, op)  # the square kernel is separable: rows, then columns
    return op(across, _line3(a, 1, op), out=across)


def thin(images: np.ndarray, side: int = SIDE) -> np.ndarray:
    """Soft grey erosion: average of the image and its plus-kernel erosion, so thin strokes survive.

    images: (batch, side*side). Returns a new float32 array of the same shape.
    """
    a = np.asarray(images, np.float32)
    out = _window(a.reshape(-1, side, side), np.minimum, square=False).reshape(a.shape)
    out += a
    out *= np.float32(0.5)
    return out


def grow_strokes(images: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Grey dilation of image i by steps[i] pixels (0 = unchanged), alternating plus and square kernels.

    The alternation makes a pen tip grow round, not diamond- or square-shaped. images:
    (batch, H, W); steps: (batch,) ints >= 0. Returns a new (batch, H, W) array. Used by the
    augmentation (thicker pens) and by ``synth`` (redrawing digits with a fat pen).
    """
    out = images.copy()
    for k in range(1, int(steps.max(initial=0)) + 1):
        grow = np.flatnonzero(steps >= k)
        part = out if len(grow) == len(out) else out[grow]
        grown = _window(part, np.maximum, square=k % 2 == 0)
        if len(grow) == len(out):
            out = grown
        else:
            out[grow] = grown
    return out


def thicken_steps(images: np.ndarray, steps: np.ndarray, side: int = SIDE) -> np.ndarray:
    """``grow_strokes`` for flat images (batch, side*side); returns the same shape."""
    return grow_strokes(images.reshape(-1, side, side), steps).reshape(images.shape)


# --- handwriting styles MNIST lacks -------------------------------------------------------------

STYLES = ("flag_1", "foot_1", "crossbar_7", "slash_0", "curl_9", "open_4")
STYLE_DIGIT = {"flag_1": 1, "foot_1": 1, "crossbar_7": 7, "slash_0": 0, "curl_9": 9, "open_4": 4}
_INK = 0.3  # a pixel at least this dark counts as ink when finding a digit's extent


def ink_geometry(images: np.ndarray) -> dict[str, np.ndarray]:
    """Per image: ink extent and where its strokes sit. images: (batch, SIDE, SIDE) float32.

    Returns float32 arrays of shape (batch,): top, bottom, left, right (ink bounding box,
    pixel indices), and x-centroids of the ink in the top, middle and bottom fifths of the
    box (cx_top, cx_mid, cx_bottom), and the ink per row there (pen_bottom: about the stroke
    width where one stroke crosses a row). An image without ink gets a box around the centre.
    """
    ink = np.asarray(images >= _INK)
    rows, cols = np.any(ink, axis=2), np.any(ink, axis=1)
    idx = np.arange(SIDE)
    has = np.any(rows, axis=1)
    top = np.where(has, rows.argmax(axis=1), 10).astype(np.float32)
    bottom = np.where(has, SIDE - 1 - rows[:, ::-1].argmax(axis=1), 17).astype(np.float32)
    left = np.where(has, cols.argmax(axis=1), 10).astype(np.float32)
    right = np.where(has, SIDE - 1 - cols[:, ::-1].argmax(axis=1), 17).astype(np.float32)
    mass = images.sum(axis=2)  # (batch, SIDE) ink per row
    moment = images @ idx.astype(np.float32)  # (batch, SIDE) sum of x * ink per row
    height = bottom - top + 1

    def centroid(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        band = (idx[None, :] >= lo[:, None]) & (idx[None, :] <= hi[:, None])
        m = np.where(band, mass, 0).sum(axis=1)
        c = np.where(band, moment, 0).sum(axis=1) / np.maximum(m, 1e-6)
        return np.where(m > 1e-6, c, (left + right) / 2).astype(np.float32)

    fifth = height / 5
    low = (idx[None, :] >= (bottom - fifth)[:, None]) & (idx[None, :] <= bottom[:, None])
    return {
        "pen_bottom": (np.where(low, mass, 0).sum(axis=1) / np.maximum(low.sum(axis=1), 1)).astype(np.float32),
        "top": top,
        "bottom": bottom,
        "left": left,
        "right": right,
        "cx_top": centroid(top, top + fifth),
        "cx_mid": centroid(top + 2 * fifth, top + 3 * fifth),
        "cx_bottom": centroid(bottom - fifth, bottom),
    }


def style_polylines(style: str, g: dict[str, np.ndarray]) -> np.ndarray:
    """The pen path each image of ``style`` gets: (n, points, 2) float32 (x, y), from its ink geometry."""
    top, bottom, left, right = g["top"], g["bottom"], g["left"], g["right"]
    h = bottom - top + 1
    if style == "flag_1":  # a short up-stroke into the top of the stem
        x, y = g["cx_top"], top
        pts = [(x - 0.3 * h, y + 0.25 * h), (x, y)]
    elif style == "foot_1":  # a base across the bottom of the stem
        x, y = g["cx_bottom"], bottom
        pts = [(x - 0.25 * h, y), (x + 0.25 * h, y)]
    elif style == "crossbar_7":  # a bar across the stem, a little below the middle
        x, y = g["cx_mid"], top + 0.55 * h
        pts = [(x - 0.22 * h, y), (x + 0.22 * h, y)]
    elif style == "slash_0":  # corner to corner through the ring
        pts = [(left, bottom), (right, top)]
    elif style == "curl_9":  # the tail's end hooks back to the left
        x, y = g["cx_bottom"], bottom
        pts = [
            (x, y - 0.1 * h),
            (x - 0.12 * h, y + 0.04 * h),
            (x - 0.28 * h, y - 0.04 * h),
            (x - 0.32 * h, y - 0.16 * h),
        ]
    else:
        raise ValueError(f"unknown style {style!r}")
    return np.stack([np.stack([px, py], axis=-1) for px, py in pts], axis=1).astype(np.float32)


def draw_polylines(images: np.ndarray, paths: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Add anti-aliased pen strokes: images (n, SIDE, SIDE) float32; paths (n, points, 2) (x, y);
    radius (n,) pen half-width in pixels. Returns a new (n, SIDE, SIDE) array (max of ink and pen).
    """
    grid = np.stack([_GRID_X + np.float32(_CENTRE), _GRID_Y + np.float32(_CENTRE)], axis=-1)  # (P, 2)
    dist = np.full((len(images), SIDE * SIDE), np.inf, np.float32)
    for a, b in zip(paths[:, :-1].transpose(1, 0, 2), paths[:, 1:].transpose(1, 0, 2)):  # segments, not pixels
        ab = b - a  # (n, 2)
        t = ((grid[None] - a[:, None]) @ ab[:, :, None])[..., 0] / np.maximum((ab * ab).sum(axis=1), 1e-6)[:, None]
        np.clip(t, 0, 1, out=t)
        near = a[:, None] + t[..., None] * ab[:, None]
        np.minimum(dist, np.linalg.norm(grid[None] - near, axis=-1), out=dist)
    pen = np.clip(radius[:, None] + np.float32(0.5) - dist, 0, 1)
    return np.maximum(images, pen.reshape(images.shape))


def open_top_4(images: np.ndarray, g: dict[str, np.ndarray]) -> np.ndarray:
    """Erase the upper part of a 4's left stroke, so it no longer meets the stem at the top.

    The stem's x is taken from the bottom fifth (only the stem reaches down there); ink in the
    top 35% of the box left of the stem's left edge (half a pen width and half a pixel to the
    left of its centre) goes. images: (n, SIDE, SIDE); returns a new array.
    """
    h = g["bottom"] - g["top"] + 1
    rows = np.arange(SIDE, dtype=np.float32)
    upper = rows[None, :] < (g["top"] + 0.35 * h)[:, None]  # (n, SIDE)
    left_of_stem = rows[None, :] < (g["cx_bottom"] - g["pen_bottom"] / 2 - 0.5)[:, None]
    return np.where(upper[:, :, None] & left_of_stem[:, None, :], np.float32(0), images)


def add_styles(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator, prob: float) -> np.ndarray:
    """Each style is given, with probability ``prob``, to each image of its digit; the rest untouched.

    images: (batch, SIDE, SIDE) float32; labels: (batch,) ints. Returns a new array.
    """
    out = images.copy()
    geometry = ink_geometry(out)
    for style in STYLES:  # six styles, each vectorised over its images
        chosen = np.flatnonzero((labels == STYLE_DIGIT[style]) & (rng.random(len(labels)) < prob))
        if not len(chosen):
            continue
        g = {k: v[chosen] for k, v in geometry.items()}
        if style == "open_4":
            out[chosen] = open_top_4(out[chosen], g)
        else:
            radius = rng.uniform(0.6, 1.2, len(chosen)).astype(np.float32)
            out[chosen] = draw_polylines(out[chosen], style_polylines(style, g), radius)
    return out


# --- the batch -----------------------------------------------------------------------------------


def augment_batch(
    images: np.ndarray, rng: np.random.Generator, config: TrainConfig, labels: np.ndarray | None = None
) -> np.ndarray:
    """Random per-image styles, stroke width, slant, rotation, scale, shift and elastic distortion.

    images: (batch, 784) in [0, 1]; labels: (batch,) digits, needed only for the styles
    (``style_prob``; without labels no style is drawn). Ranges from ``config`` (max_shift,
    max_rotation, scale_range, stroke_change_prob, max_thicken, max_slant, elastic_prob,
    elastic_alpha, elastic_sigma, style_prob). Of the images whose stroke changes, half are
    thinned and half thickened by 1..max_thicken pixels; a thickened digit is also shrunk so
    it still fits the 20-pixel box, as canvas_to_input fits a thick drawing into the box.
    Returns a new (batch, 784) float32 array in [0, 1]; the input is untouched. The random
    draws and the warp's coordinates are made for the whole batch; the pixel work runs
    ``CHUNK`` images at a time, so its temporaries stay in cache. Same seed, same batch.
    """
    images = np.asarray(images, np.float32)
    b = len(images)
    square = images.reshape(b, SIDE, SIDE)
    if config.style_prob > 0 and labels is not None:
        square = add_styles(square, np.asarray(labels), rng, config.style_prob)
    angle = np.asarray(rng.uniform(-config.max_rotation, config.max_rotation, b))
    scale = np.asarray(rng.uniform(config.scale_range[0], config.scale_range[1], b))
    shift = np.asarray(rng.uniform(-config.max_shift, config.max_shift, (b, 2)))
    steps = np.zeros(b, np.int64)
    thinner = np.zeros(b, bool)
    p = config.stroke_change_prob
    if p > 0:
        u = np.asarray(rng.random(b))
        thick = u < p / 2
        thinner = (u >= p / 2) & (u < p)
        steps = np.where(thick, rng.integers(1, config.max_thicken + 1, b), 0)
        scale *= BOX / (BOX + 2 * steps)  # a thickened digit is refitted into the box
    slant = None
    if config.max_slant > 0:
        slant = np.tan(np.deg2rad(rng.uniform(-config.max_slant, config.max_slant, b)))
    coords = affine_source(angle, scale, shift, slant)
    if config.elastic_prob > 0:
        bent = np.flatnonzero(rng.random(b) < config.elastic_prob)
        if len(bent):
            field = elastic_field(rng, len(bent), config.elastic_alpha, config.elastic_sigma)
            coords[bent] += field.reshape(len(bent), 2, -1)
    out = np.empty((b, SIDE * SIDE), np.float32)
    for a in range(0, b, CHUNK):
        part = slice(a, a + CHUNK)
        out[part] = bilinear_sample(_restroke(square[part], steps[part], thinner[part]), coords[part])
    return np.clip(out, 0.0, 1.0, out=out)


def _restroke(images: np.ndarray, steps: np.ndarray, thinner: np.ndarray) -> np.ndarray:
    """Thicken image i by steps[i] pixels and thin those marked ``thinner``. (n, SIDE, SIDE) -> (n, SIDE, SIDE);
    the input is returned itself when nothing changes, else left untouched."""
    out = grow_strokes(images, steps) if steps.any() else images
    if thinner.any():
        out = out.copy() if out is images else out
        out[thinner] = thin(out[thinner].reshape(-1, SIDE * SIDE)).reshape(-1, SIDE, SIDE)
    return out
