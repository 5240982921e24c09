"""Turn a drawing or a photo of one digit into the network's MNIST-style input.

MNIST digits were made by fitting each digit's ink into a 20x20 box (aspect ratio kept,
anti-aliased) and moving its centre of mass to the middle of a 28x28 field. A canvas
drawing is bigger, off-centre, any colour and any stroke width, so ``canvas_to_input``
rebuilds exactly that normalisation from whatever it is given:

1. ``ink_map``: any supported array -> (H, W) float32 "amount of ink" in [0, 1]. Colour
   schemes are handled here: transparent backgrounds (ink in the alpha channel), light
   ink on dark, dark ink on light (auto-inverted), and photos of paper (uneven lighting
   and paper noise are subtracted).
2. ``digit_region``: drop specks far from the digit, find the ink's bounding box, and
   decide whether there is a digit at all (blank, near-blank and a lone dot give None).
3. ``mnist_normalise``: crop, resize the long side to 20 px with an anti-aliasing filter
   (``fit_into_box``), and shift by whole pixels so the centre of mass lands within half a
   pixel of pixel (14, 14) of the 28x28 field, where MNIST puts it (``centre_offset``).

``input_steps`` returns every intermediate array (``InputSteps``, for the draw page's "how
your drawing became the input"); ``canvas_to_input`` is its last step, so both are one path.

Image files (uploads, the CLI's ``predict``) are decoded into arrays by ``uploads.image_from_bytes``.

Non-goals: several digits in one image, segmentation of cluttered photos, deskewing,
stroke-width normalisation (tried: thinning fat-pen drawings back to MNIST's width gained
nothing measurable once the model is trained with thickened strokes).
Pure NumPy + Pillow; never imports streamlit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .data import BOX, SIDE

# Where MNIST puts the centre of mass: pixel index 14 (0-based) in both directions, not the
# geometric middle 13.5. Measured over the 60,000 training images: 14.00 +- 0.29 (rows and
# columns alike), i.e. MNIST shifted by whole pixels to bring it to pixel 14. We match the data.
CENTRE = 14.0
MAX_INPUT_PIXELS = 40_000_000  # refuse arrays bigger than this (memory), with a message
WORK_SIDE = 1024  # larger images are shrunk to this long side first: plenty for one digit
MIN_CONTRAST = 0.08  # ink must differ from the background by 8% of full range
MIN_CONTRAST_PHOTO = 0.15  # on paper, specks and shadows reach ~0.1: a pen stroke is darker
PHOTO_FLOOR = 0.2  # on a photo, ink fainter than 20% of the darkest stroke is paper
NOISE_SIGMAS = 4.0  # ink below background noise x this is treated as paper, not ink
INK_LEVEL = 0.1  # the bounding box takes in edges down to 10% ink (below: JPEG ringing, fringe)
GRID = 32  # cells on the long side for the speck filter
MIN_PART = 0.03  # ink parts lighter than 3% of the main part are specks and dropped
MIN_EXTENT = 0.03  # ink spanning < 3% of the image's long side is a stray mark, not a digit
MIN_INK_FRACTION = 0.0004  # total ink below this fraction of the image is near-blank
# A small, round, filled blob (a click of the pen) is a dot, not a digit. A thick 0 drawn
# large is also round and nearly filled, hence the size condition.
DOT_ASPECT, DOT_FILL, DOT_EXTENT = 1.6, 0.6, 0.15  # a disc fills 0.785 of its box
# Shrinking into the 20x20 box averages the area each output pixel covers (BOX), which is
# what anti-aliasing a pen drawing means; enlarging a tiny drawing interpolates (BILINEAR).
# Chosen by measurement (2026-11-28, a 512-256 relu model, 1,800 canvases drawn from MNIST
# *validation* digits): BOX 96.4% vs BICUBIC 96.2%, BILINEAR 96.1%, LANCZOS 95.9%.
SHRINK, ENLARGE = Image.Resampling.BOX, Image.Resampling.BILINEAR
# Scale so the 95th percentile of the inked pixels becomes full ink: MNIST strokes are
# saturated in the middle; a thin stroke shrunk 10x would otherwise fade (measured: 95 vs
# 100 (the maximum) +0.06% on the same canvases; 90 the same as 95).
PEAK_PERCENTILE = 95.0


# --- 1. any array -> ink map ------------------------------------------------------------------


def to_unit_float(image) -> np.ndarray:
    """Validate an image array and scale it to float32 in [0, 1], shape kept.

    Accepts bool, 8-bit integers, uint16 (0-65535), other integers holding 8-bit (0-255) or
    16-bit (up to 65535) values, and floats in [0, 1] or in [0, 255]. Raises ValueError
    with the reason for anything else.
    """
    try:
        arr = np.asarray(image)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"could not read the image as an array: {exc}") from None
    if arr.dtype == bool:
        return arr.astype(np.float32)
    # By kind, not np.issubdtype: NumPy counts timedelta64 as an integer type, but it is no pixel data (and int()
    # of one raises TypeError). Complex, datetime, object, str, bytes and structured arrays are refused alike.
    if arr.dtype.kind not in "uif":
        raise ValueError(f"image must hold numbers (uint8, integers or floats), got dtype {arr.dtype}")
    if arr.size > MAX_INPUT_PIXELS * 4:
        raise ValueError(f"image is too large ({arr.size} values); at most {MAX_INPUT_PIXELS} pixels")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise ValueError("image contains NaN or infinite values")
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if lo < 0 or hi > 255:
            raise ValueError(f"float image values must be in the range [0, 1] or [0, 255], got [{lo:g}, {hi:g}]")
        arr = arr.astype(np.float32)
        return arr if hi <= 1 else arr / np.float32(255)
    lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
    if lo < 0:
        raise ValueError(f"integer image values must be >= 0, got {lo}")
    if arr.dtype.itemsize == 1 or (arr.dtype != np.uint16 and hi <= 255):
        scale = 255  # 8-bit data, possibly held in a wider integer type
    elif hi <= 65535:
        scale = 65535  # 16-bit data (uint16 always counts as 16-bit)
    else:
        raise ValueError(f"integer image values must be 8- or 16-bit (<= 65535), got {hi}")
    return arr.astype(np.float32) / np.float32(scale)


def _check_shape(shape: tuple[int, ...]) -> None:
    if len(shape) == 3 and shape[2] in (1, 2, 3, 4) or len(shape) == 2:
        if min(shape[:2]) < 1:
            raise ValueError(f"image is empty: shape {shape}")
        if shape[0] * shape[1] > MAX_INPUT_PIXELS:
            raise ValueError(f"image is too large ({shape[0]}x{shape[1]}); at most {MAX_INPUT_PIXELS} pixels")
        return
    raise ValueError(f"expected an image of shape (H, W), (H, W, 3) RGB or (H, W, 4) RGBA, got {shape}")


def luminance(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) float in [0, 1] -> (H, W) float32 perceived brightness (ITU-R 601 weights)."""
    return (rgb @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.float32)


def flatten_alpha(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite colour over a background that contrasts with the ink; returns (H, W) grey.

    rgb: (H, W, 3), alpha: (H, W), both float in [0, 1]. On a transparent canvas the
    anti-aliasing lives in alpha; laying dark ink on white (light ink on black) keeps it.
    """
    grey = luminance(rgb)
    weight = float(alpha.sum())
    ink_level = float((grey * alpha).sum() / weight) if weight > 0 else 1.0
    background = 1.0 if ink_level < 0.5 else 0.0
    return grey * alpha + background * (1.0 - alpha)


def _shrink(grey: np.ndarray, side: int = WORK_SIDE) -> np.ndarray:
    """Anti-aliased downscale so the long side is at most ``side`` (aspect kept)."""
    h, w = grey.shape
    if max(h, w) <= side:
        return grey
    f = side / max(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return np.asarray(Image.fromarray(grey, mode="F").resize(size, Image.Resampling.BOX), np.float32)


def _border(grey: np.ndarray) -> np.ndarray:
    """The pixels of the outer ring (about 3% of each side, at least one pixel) as a flat array."""
    h, w = grey.shape
    r, c = max(1, h // 32), max(1, w // 32)
    return np.concatenate([grey[:r].ravel(), grey[-r:].ravel(), grey[:, :c].ravel(), grey[:, -c:].ravel()])


def noise_level(grey: np.ndarray) -> float:
    """Robust std of pixel noise in the border ring, from differences of horizontal neighbours.

    Differences cancel smooth lighting gradients, so only grain and compression noise remain.
    grey: (H, W) float32 in [0, 1]. 0.0 for a clean digital canvas.
    """
    h, w = grey.shape
    r = max(1, h // 32)
    if w < 2:
        return 0.0
    strips = np.concatenate([np.diff(grey[:r], axis=1).ravel(), np.diff(grey[-r:], axis=1).ravel()])
    return 1.4826 * float(np.median(np.abs(strips))) / np.sqrt(2)


def smooth(grey: np.ndarray, passes: int = 2) -> np.ndarray:
    """Binomial [1, 2, 1] / 4 blur along both axes, ``passes`` times (~Gaussian, sigma^2 = passes / 2).

    grey: (H, W) float32; edges repeat. Returns a new (H, W) float32 array.
    """
    out = grey.astype(np.float32, copy=True)
    for _ in range(passes):
        p = np.pad(out, ((1, 1), (0, 0)), mode="edge")
        out = 0.25 * p[:-2] + 0.5 * p[1:-1] + 0.25 * p[2:]
        p = np.pad(out, ((0, 0), (1, 1)), mode="edge")
        out = 0.25 * p[:, :-2] + 0.5 * p[:, 1:-1] + 0.25 * p[:, 2:]
    return out


def _paper_level(grey: np.ndarray, cells: int = 8) -> np.ndarray:
    """Smooth estimate of the paper's brightness at each pixel, for photos on light paper.

    Per block of a cells x cells grid, the 80th percentile (paper outnumbers ink in most
    blocks); then a quadratic surface (lighting gradient and vignetting) fitted to the
    blocks, twice dropping blocks far below the fit (blocks full of ink). grey: (H, W).
    """
    h, w = grey.shape
    bh, bw = max(1, h // cells), max(1, w // cells)
    gh, gw = h // bh, w // bw
    blocks = grey[: gh * bh, : gw * bw].reshape(gh, bh, gw, bw).transpose(0, 2, 1, 3).reshape(gh, gw, -1)
    level = np.percentile(blocks, 80, axis=2).ravel()
    by, bx = np.mgrid[0:gh, 0:gw]
    by, bx = ((by.ravel() + 0.5) * bh / h - 0.5), ((bx.ravel() + 0.5) * bw / w - 0.5)

    def terms(y, x):
        return np.stack([np.ones_like(y), x, y, x * x, y * y, x * y], axis=-1)

    use = np.ones(level.shape, bool)
    for _ in range(3):
        if use.sum() < 6:
            return np.full((h, w), float(np.median(level)), np.float32)
        coef, *_ = np.linalg.lstsq(terms(by[use], bx[use]), level[use], rcond=None)
        resid = level - terms(by, bx) @ coef
        spread = 1.4826 * np.median(np.abs(resid[use])) + 1e-3
        use = resid > -3 * spread
    y = (np.arange(h, dtype=np.float64)[:, None] + 0.5) / h - 0.5
    x = (np.arange(w, dtype=np.float64)[None, :] + 0.5) / w - 0.5
    c = coef
    return (c[0] + c[1] * x + c[2] * y + c[3] * x * x + c[4] * y * y + c[5] * x * y).astype(np.float32)


def ink_map(image) -> np.ndarray | None:
    """Any supported image -> (H', W') float32 ink in [0, 1] (0 = background), or None if blank.

    image: (H, W) grey, (H, W, 1), (H, W, 2) grey+alpha, (H, W, 3) RGB or (H, W, 4) RGBA;
    uint8/uint16/int/bool/float. Images larger than WORK_SIDE are shrunk first.
    The background is the median of the border; a light background is inverted. Noise of
    the background (paper grain, JPEG) sets a floor below which nothing counts as ink.
    """
    shape = np.shape(image)
    _check_shape(shape)
    px = to_unit_float(image)
    if px.ndim == 3 and px.shape[2] in (2, 4):
        alpha = px[..., -1]
        colour = px[..., :3] if px.shape[2] == 4 else np.repeat(px[..., :1], 3, axis=2)
        # Only trust alpha when something is actually transparent; an opaque RGBA is plain RGB.
        grey = flatten_alpha(colour, alpha) if float(alpha.min()) < 0.99 else luminance(colour)
    elif px.ndim == 3 and px.shape[2] == 3:
        grey = luminance(px)
    else:
        grey = px.reshape(px.shape[0], px.shape[1])
    grey = _shrink(grey)
    border = _border(grey)
    background = float(np.median(border))
    light_background = background > 0.5
    noise = noise_level(grey)
    spread = 1.4826 * float(np.median(np.abs(border - background)))
    # Grain, or a background that is not one flat colour: a photo or a scan, not a canvas.
    photo = noise > 0.01 or spread > 0.02
    if photo:
        # Average the grain down before deciding what is ink.
        grey = smooth(grey, passes=2 * max(1, round(max(grey.shape) / 280)))
        noise = noise_level(grey)
    if light_background and photo:
        # Paper: the lighting varies across the page and falls on ink and paper alike, so
        # ink is how much less light the page reflects than paper would there. (Measured on
        # 800 photo-like canvases from MNIST validation digits: 97.3% read right, against
        # 95.0% for subtracting the paper level instead of dividing by it.)
        ink = 1.0 - grey / np.maximum(_paper_level(grey), 1e-3)
    elif light_background:
        ink = background - grey
    else:
        ink = grey - background
    top = float(ink.max())
    # On a photo, what is left of the paper (lighting the fit missed) counts as no ink too.
    floor = max(NOISE_SIGMAS * noise, PHOTO_FLOOR * top if photo else 0.0)
    if top - floor < (MIN_CONTRAST_PHOTO if photo else MIN_CONTRAST):
        return None
    ink = np.clip((ink - floor) / (top - floor), 0.0, 1.0, out=ink)
    return ink.astype(np.float32, copy=False)


# --- 2. where is the digit? --------------------------------------------------------------------


def _components(cells: np.ndarray) -> np.ndarray:
    """Label 8-connected True cells of a small 2-D grid; returns int32 labels 1..k, 0 = empty.

    Works on horizontal runs of cells (a digit has a few per row): runs in neighbouring
    rows that touch, diagonals included, are joined with a union-find.
    """
    h, w = cells.shape
    edges = np.diff(np.pad(cells.astype(np.int8), ((0, 0), (1, 1))), axis=1)
    run_rows, run_starts = np.nonzero(edges == 1)
    _, run_ends = np.nonzero(edges == -1)  # exclusive; same row-major order as the starts
    parent = list(range(len(run_rows)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_in_row = np.searchsorted(run_rows, np.arange(h + 1))
    for r in range(h - 1):
        above = range(first_in_row[r], first_in_row[r + 1])
        below = range(first_in_row[r + 1], first_in_row[r + 2])
        for i in above:
            for j in below:
                if run_starts[i] <= run_ends[j] and run_starts[j] <= run_ends[i]:
                    parent[root(i)] = root(j)
    roots = [root(i) for i in range(len(parent))]
    ids = {r: k for k, r in enumerate(dict.fromkeys(roots), start=1)}
    labels = np.zeros((h, w), np.int32)
    for row, start, end, run_root in zip(run_rows, run_starts, run_ends, roots):
        labels[row, start:end] = ids[run_root]
    return labels


def digit_box(ink: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
    """Keep the digit's ink, drop specks, find its box; None when what is left is blank, tiny or a lone dot.

    ink: (H, W) float32 in [0, 1]. Returns (the ink with specks set to 0 (H, W), the digit's
    bounding box (top, left, bottom, right), bottom and right exclusive).
    Specks are found on a coarse grid (GRID cells on the long side): connected parts whose
    ink is below MIN_PART of the heaviest part are removed. A deliberate mark well apart
    from the digit but as heavy as a stroke is kept (it may be part of a 5 or a 7).
    """
    h, w = ink.shape
    if float(ink.sum()) < max(2.0, MIN_INK_FRACTION * h * w):
        return None
    cell = max(1, -(-max(h, w) // GRID))
    gh, gw = -(-h // cell), -(-w // cell)
    padded = np.zeros((gh * cell, gw * cell), np.float32)
    padded[:h, :w] = ink
    mass = padded.reshape(gh, cell, gw, cell).sum(axis=(1, 3))
    labels = _components(mass > 0.25 * cell)  # a cell needs ink worth a quarter-line of pixels
    if labels.max() == 0:
        return None
    part_mass = np.bincount(labels.ravel(), weights=mass.ravel())
    part_mass[0] = 0.0
    keep_parts = part_mass >= MIN_PART * part_mass.max()
    keep_parts[0] = False
    # Grow the kept cells by one so faint anti-aliased edges next to the digit stay in.
    kept = np.pad(keep_parts[labels], 1)
    kept = np.max([kept[i : i + gh, j : j + gw] for i in range(3) for j in range(3)], axis=0)
    keep = np.repeat(np.repeat(kept, cell, axis=0), cell, axis=1)[:h, :w]
    ink = np.where(keep, ink, np.float32(0))
    rows = np.nonzero((ink > INK_LEVEL).any(axis=1))[0]
    cols = np.nonzero((ink > INK_LEVEL).any(axis=0))[0]
    if len(rows) == 0:
        return None
    box = (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
    crop = ink[box[0] : box[2], box[1] : box[3]]
    ch, cw = crop.shape
    if max(ch, cw) < MIN_EXTENT * max(h, w) or max(ch, cw) < 2:
        return None
    aspect = max(ch, cw) / min(ch, cw)
    fill = float(np.mean(crop > 0.5))
    if aspect < DOT_ASPECT and fill > DOT_FILL and max(ch, cw) < DOT_EXTENT * max(h, w):
        return None
    return ink, box


def digit_region(ink: np.ndarray) -> np.ndarray | None:
    """The digit's ink (specks dropped) cropped to its bounding box (h, w), or None (see ``digit_box``)."""
    found = digit_box(ink)
    if found is None:
        return None
    kept, (top, left, bottom, right) = found
    return kept[top:bottom, left:right]


# --- 3. MNIST normalisation --------------------------------------------------------------------


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    """(row, col) intensity-weighted mean pixel index of a 2-D array with positive total."""
    total = float(image.sum())
    rows = np.arange(image.shape[0], dtype=np.float64)
    cols = np.arange(image.shape[1], dtype=np.float64)
    return float(image.sum(axis=1) @ rows) / total, float(image.sum(axis=0) @ cols) / total


def fit_into_box(crop: np.ndarray) -> np.ndarray | None:
    """Ink cropped to its bounding box (h, w) -> (h', w') float32 with long side BOX, strokes saturated; or None.

    The long side is resized to BOX pixels (aspect ratio kept, anti-aliased), and the ink is
    scaled so strokes are saturated (a thin stroke shrunk 10x would otherwise fade).
    """
    h, w = crop.shape
    f = BOX / max(h, w)
    size = (min(BOX, max(1, round(w * f))), min(BOX, max(1, round(h * f))))
    resample = SHRINK if max(h, w) >= BOX else ENLARGE
    resized = Image.fromarray(np.ascontiguousarray(crop, np.float32), mode="F").resize(size, resample)
    small = np.clip(np.asarray(resized, np.float32), 0.0, None)
    peak = float(np.percentile(small[small > 0], PEAK_PERCENTILE)) if (small > 0).any() else 0.0
    if peak <= 0:
        return None
    return np.minimum(small / peak, 1.0)


def centre_offset(small: np.ndarray) -> tuple[int, int]:
    """(top, left) placing ``small`` (h, w <= SIDE) in SIDE x SIDE with its centre of mass within half a
    pixel of CENTRE (pixel 14, where MNIST puts it), by whole pixels, clamped so no ink falls off."""
    com_r, com_c = centre_of_mass(small)
    top = int(np.clip(round(CENTRE - com_r), 0, SIDE - small.shape[0]))
    left = int(np.clip(round(CENTRE - com_c), 0, SIDE - small.shape[1]))
    return top, left


def place(small: np.ndarray, offset: tuple[int, int]) -> np.ndarray:
    """``small`` (h, w) put into a zero SIDE x SIDE field at ``offset`` (top, left) -> (784,) float32."""
    top, left = offset
    out = np.zeros((SIDE, SIDE), np.float32)
    out[top : top + small.shape[0], left : left + small.shape[1]] = small
    return out.ravel()


def mnist_normalise(crop: np.ndarray) -> np.ndarray | None:
    """Ink cropped to its bounding box (h, w) -> (784,) float32 MNIST-style input, or None.

    ``fit_into_box`` (long side BOX, strokes saturated), then placed in SIDE x SIDE at
    ``centre_offset`` (centre of mass at pixel 14, where MNIST puts it).
    """
    small = fit_into_box(crop)
    return None if small is None else place(small, centre_offset(small))


@dataclass(frozen=True)
class InputSteps:
    """What ``canvas_to_input`` made of one picture, step by step (for showing how a drawing became the input).

    Each field is None from the step where the pipeline found no digit on. ``input`` is the
    very array ``canvas_to_input`` returns (it is built from these steps).
    """

    ink: np.ndarray | None  # (H', W') float32 ink in [0, 1], 0 = background (shrunk to WORK_SIDE if larger)
    kept: np.ndarray | None  # (H', W') the ink with specks far from the digit set to 0
    box: tuple[int, int, int, int] | None  # the digit's box in ``ink``: (top, left, bottom, right), exclusive
    fitted: np.ndarray | None  # (h, w), long side BOX: the digit's ink fitted into the 20x20 box
    centre_of_mass: tuple[float, float] | None  # (row, col) of ``fitted``
    offset: tuple[int, int] | None  # (top, left) where ``fitted`` went into the 28x28 field
    input: np.ndarray | None  # (784,) float32: the network input

    @property
    def crop(self) -> np.ndarray | None:
        """(h, w) the digit's ink cropped to its box (a view of ``kept``)."""
        if self.kept is None or self.box is None:
            return None
        top, left, bottom, right = self.box
        return self.kept[top:bottom, left:right]


def input_steps(image) -> InputSteps:
    """A drawing or photo of one digit -> its ``InputSteps`` (see ``canvas_to_input`` for what ``image`` may be).

    Raises ValueError like ``canvas_to_input``.
    """
    ink = ink_map(image)
    found = None if ink is None else digit_box(ink)
    if found is None:
        return InputSteps(ink, None, None, None, None, None, None)
    kept, box = found
    top, left, bottom, right = box
    fitted = fit_into_box(kept[top:bottom, left:right])
    if fitted is None:
        return InputSteps(ink, kept, box, None, None, None, None)
    offset = centre_offset(fitted)
    return InputSteps(ink, kept, box, fitted, centre_of_mass(fitted), offset, place(fitted, offset))


def canvas_to_input(image) -> np.ndarray | None:
    """A drawing or photo of one digit -> (784,) float32 network input in [0, 1], or None.

    image: (H, W, 4) uint8 RGBA as streamlit-drawable-canvas returns it, at any size and
    in any colour scheme (white on black, black on white, ink on transparent), or an
    (H, W) grey / (H, W, 3) RGB array, e.g. a photo of a digit on paper. Returns None when
    there is no digit to read (blank, near-blank, a stray dot). Raises ValueError with the
    reason for shapes and dtypes it cannot use, and for NaN/infinite values.
    The last of ``input_steps``: one code path for the answer and for showing the steps.
    """
    return input_steps(image).input


__all__ = [
    "canvas_to_input",
    "input_steps",
    "InputSteps",
    "digit_box",
    "fit_into_box",
    "centre_offset",
    "ink_map",
    "digit_region",
    "mnist_normalise",
    "centre_of_mass",
    "to_unit_float",
    "SIDE",
    "BOX",
    "CENTRE",
]
