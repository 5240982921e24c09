""" "That doesn't look like a digit": an out-of-distribution score for one network input, and a
note when a picture holds several digits side by side.

A network trained on digits answers for anything: a letter A reads "4, 98.9% sure". Two
signals that such an input is unlike the digits, added after scaling each to its spread on digits:

- the **energy** of the model's logits, ``-logsumexp(logits)``: high when no class fits
  (model-dependent, so it works for any model the app loads, any depth, sigmoid or relu);
- a small **outlier detector** (784-64-2 relu) on the input itself, trained once to tell MNIST
  digits and redrawn digits from generated scribbles, shapes and letters (outlier exposure;
  model-independent; shipped in ``assets/novelty.npz``).

Each model gets its own threshold at first use: the score of a shipped sample of digits (MNIST
validation images, digits redrawn as canvases, digits sketched with a round pen) is computed
and the threshold put where at most MAX_FALSE_ALARM of each kind of digit is flagged; cached
per model. The asset is rebuilt with ``python benchmarks/not_a_digit.py --write-asset
assets/novelty.npz``, which also measures every candidate score (figures in the README).

``several_digits(image)`` looks at the picture's ink (``preprocess.ink_map``) for two or more
digit-sized parts separated by empty columns.

Non-goals: reading several digits, separating digits that touch or overlap, and telling a digit
from a letter that is drawn the same way (O and 0, I and 1, Z and 2, S and 5, B and 8).
Pure NumPy; never imports streamlit.
"""

from __future__ import annotations

import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import SIDE
from .functional import Params, forward
from .network import MLP
from .preprocess import ink_map

ASSET = Path(__file__).resolve().parent.parent / "assets" / "novelty.npz"
FORMAT = 1
N_INPUTS = SIDE * SIDE
# Chosen on calibration data (benchmarks/not_a_digit.py): per kind of digit, the share of the
# shipped sample that may be called "not a digit".
MAX_FALSE_ALARM = 0.015
GROUPS = ("MNIST validation", "drawn", "sketched")  # kinds of digit in the shipped calibration sample
DETECTOR_KEYS = ("W1", "b1", "W2", "b2")
MAX_CACHED_MODELS = 16

# several_digits: a part is a run of inked columns; parts count as digits when tall and heavy
# enough next to the biggest part, and the empty gap between parts must be a real gap.
PART_INK = 0.2  # a pixel with at least this much ink marks its column as inked
MIN_GAP = 0.04  # empty columns between two parts: at least 4% of the tallest part's height (and 2 px)
MIN_PART_HEIGHT = 0.5  # a digit-sized part is at least half as tall as the tallest part
MIN_PART_MASS = 0.1  # ... and has at least 10% of the heaviest part's ink


@dataclass(frozen=True)
class Novelty:
    """Whether one input looks like a digit to this model, its score and the model's threshold.

    score: 0 is a typical digit; ``looks_like_digit`` is ``score < threshold``. reason: a short
    sentence for display.
    """

    looks_like_digit: bool
    score: float
    threshold: float
    reason: str


@dataclass(frozen=True)
class NoveltyAssets:
    """The shipped file: the outlier detector and the calibration sample of digits.

    detector: W1 (784, h), b1 (h,), W2 (h, 2), b2 (2,) float32; calibration_inputs: (n, 784)
    float32 in [0, 1]; calibration_groups: (n,) int64 index into GROUPS.
    """

    detector: Params
    calibration_inputs: np.ndarray
    calibration_groups: np.ndarray


@dataclass(frozen=True)
class Calibration:
    """One model's scaling of the two signals and its threshold (see ``calibrate``)."""

    energy_centre: float
    energy_scale: float
    detector_centre: float
    detector_scale: float
    threshold: float
    false_alarms: tuple[float, ...]  # share of each GROUP of the calibration sample flagged


# --- the asset ------------------------------------------------------------------------------


def check_assets(arrays: dict[str, np.ndarray]) -> NoveltyAssets:
    """Validate the arrays of a novelty file -> NoveltyAssets; ValueError naming what is wrong."""
    version = arrays.get("format")
    if version is None or version.shape != (1,) or int(version[0]) != FORMAT:
        raise ValueError(f"novelty file: expected format {FORMAT}, got {None if version is None else version.tolist()}")
    detector = {}
    for key in DETECTOR_KEYS:
        value = arrays.get(f"detector_{key}")
        if value is None or value.dtype != np.float32 or not np.all(np.isfinite(value)):
            raise ValueError(f"novelty file: detector_{key} missing, not float32 or not finite")
        detector[key] = value
    hidden = detector["W1"].shape[1] if detector["W1"].ndim == 2 else -1
    shapes = {"W1": (N_INPUTS, hidden), "b1": (hidden,), "W2": (hidden, 2), "b2": (2,)}
    for key, shape in shapes.items():
        if detector[key].shape != shape or hidden < 1:
            raise ValueError(f"novelty file: detector_{key} has shape {detector[key].shape}, expected {shape}")
    inputs, groups = arrays.get("calibration_inputs"), arrays.get("calibration_groups")
    if inputs is None or inputs.dtype != np.uint8 or inputs.ndim != 2 or inputs.shape[1] != N_INPUTS:
        raise ValueError("novelty file: calibration_inputs must be (n, 784) uint8")
    if groups is None or groups.shape != (len(inputs),) or not np.issubdtype(groups.dtype, np.integer):
        raise ValueError("novelty file: calibration_groups must hold one integer per calibration input")
    if set(np.unique(groups).tolist()) != set(range(len(GROUPS))):
        raise ValueError(f"novelty file: calibration_groups must use each of 0..{len(GROUPS) - 1}")
    if np.bincount(groups).min() * MAX_FALSE_ALARM < 5:
        raise ValueError("novelty file: too few calibration digits of some kind for the false-alarm rate")
    return NoveltyAssets(detector, inputs.astype(np.float32) / np.float32(255), groups.astype(np.int64))


def load_assets(path: Path | str = ASSET) -> NoveltyAssets:
    """Read and validate a novelty file (an .npz of plain arrays, never unpickled)."""
    with np.load(path, allow_pickle=False) as npz:
        return check_assets({k: npz[k] for k in npz.files})


def save_assets(path: Path | str, assets: NoveltyAssets) -> None:
    """Write a novelty file byte for byte the same for the same arrays (fixed zip timestamps).

    calibration_inputs are stored as uint8 (rounded), so what loads back is what calibrates.
    """
    arrays: dict[str, np.ndarray] = {"format": np.array([FORMAT], np.int64)}
    arrays |= {f"detector_{k}": np.ascontiguousarray(assets.detector[k], np.float32) for k in DETECTOR_KEYS}
    arrays["calibration_inputs"] = np.round(np.clip(assets.calibration_inputs, 0, 1) * 255).astype(np.uint8)
    arrays["calibration_groups"] = np.asarray(assets.calibration_groups, np.uint8)
    check_assets(arrays)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, value in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w") as f:
                np.lib.format.write_array(f, value, allow_pickle=False)


_assets: NoveltyAssets | None = None
_lock = threading.Lock()
_calibrations: dict[int, tuple[MLP, tuple[object, ...], Calibration]] = {}


def shipped_assets() -> NoveltyAssets:
    """The shipped ``assets/novelty.npz``, loaded once per process."""
    global _assets
    with _lock:
        if _assets is None:
            _assets = load_assets(ASSET)
        return _assets


# --- the two signals --------------------------------------------------------------------------


def energy(logits: np.ndarray) -> np.ndarray:
    """-logsumexp of each row: (n, k) logits -> (n,) float64; higher = less like any class."""
    z = np.asarray(logits, np.float64)
    top = z.max(axis=1)
    return -(top + np.log(np.exp(z - top[:, None]).sum(axis=1)))


def detector_score(X: np.ndarray, detector: Params) -> np.ndarray:
    """The outlier detector's log-odds of "not a digit": (n, 784) inputs in [0, 1] -> (n,) float64."""
    logits, _ = forward(detector, np.asarray(X, np.float32), "relu")
    return (logits[:, 1] - logits[:, 0]).astype(np.float64)


def _spread(values: np.ndarray) -> tuple[float, float]:
    """(median, 99th percentile - median) of a signal on digits: where typical is and how far is far."""
    centre = float(np.median(values))
    return centre, max(float(np.quantile(values, 0.99)) - centre, 1e-6)


def combined_score(logits: np.ndarray, detector_values: np.ndarray, calibration: Calibration) -> np.ndarray:
    """(n, k) model logits and (n,) detector log-odds -> (n,) scores; 0 is a typical digit."""
    e = (energy(logits) - calibration.energy_centre) / calibration.energy_scale
    d = (np.asarray(detector_values, np.float64) - calibration.detector_centre) / calibration.detector_scale
    return e + d


def calibrate(model: MLP, assets: NoveltyAssets, max_false_alarm: float = MAX_FALSE_ALARM) -> Calibration:
    """Scale both signals by their spread on the calibration digits and set this model's threshold.

    The threshold is the smallest that flags at most ``max_false_alarm`` of each GROUP of the
    calibration sample. Costs one forward pass over the sample (a few ms to ~100 ms).
    """
    X, groups = assets.calibration_inputs, assets.calibration_groups
    logits, values = model.logits(X), detector_score(X, assets.detector)
    e_centre, e_scale = _spread(energy(logits))
    d_centre, d_scale = _spread(values)
    partial = Calibration(e_centre, e_scale, d_centre, d_scale, np.inf, ())
    scores = combined_score(logits, values, partial)
    threshold = max(
        float(np.quantile(scores[groups == g], 1 - max_false_alarm, method="higher")) for g in range(len(GROUPS))
    )
    threshold = float(np.nextafter(threshold, np.inf))  # flag strictly above the quantile's sample
    alarms = tuple(float(np.mean(scores[groups == g] >= threshold)) for g in range(len(GROUPS)))
    return Calibration(e_centre, e_scale, d_centre, d_scale, threshold, alarms)


def _fingerprint(model: MLP) -> tuple[object, ...]:
    """Cheap identity of a model's weights: array ids, shapes and a strided sum of each."""
    params = model.params_
    if params is None:
        raise ValueError("the model is not fitted: train or load one first")
    return tuple(
        (k, id(v), v.shape, float(v.ravel()[:: max(1, v.size // 64)].sum())) for k, v in sorted(params.items())
    )


def model_calibration(model: MLP) -> Calibration:
    """``calibrate(model, shipped_assets())``, cached per model (recomputed if its weights change)."""
    if not isinstance(model, MLP):
        raise ValueError(f"expected an mnist_net MLP, got {type(model).__name__}")
    fingerprint = _fingerprint(model)
    with _lock:
        cached = _calibrations.get(id(model))
    if cached is not None and cached[0] is model and cached[1] == fingerprint:
        return cached[2]
    calibration = calibrate(model, shipped_assets())
    with _lock:
        if len(_calibrations) >= MAX_CACHED_MODELS:
            _calibrations.pop(next(iter(_calibrations)))
        _calibrations[id(model)] = (model, fingerprint, calibration)
    return calibration


# --- one input ----------------------------------------------------------------------------------


def _check_inputs(x: np.ndarray) -> np.ndarray:
    """(784,) or (n, 784) float input in [0, 1] -> (n, 784) float32; ValueError otherwise."""
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"expected float inputs in [0, 1] (canvas_to_input's output), got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != N_INPUTS or len(arr) == 0:
        raise ValueError(f"expected an input of shape (784,) or (n, 784), got {np.shape(x)}")
    if not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 1:
        raise ValueError("inputs must be finite and in [0, 1]")
    return arr.astype(np.float32, copy=False)


def novelty_scores(X: np.ndarray, model: MLP) -> np.ndarray:
    """Scores for a batch: (n, 784) inputs in [0, 1] -> (n,) float64 (compare with the threshold)."""
    X = _check_inputs(X)
    calibration = model_calibration(model)
    return combined_score(model.logits(X), detector_score(X, shipped_assets().detector), calibration)


def assess_input(x: np.ndarray, model: MLP) -> Novelty:
    """Does one network input look like a digit to ``model``? x: (784,) (or (1, 784)) in [0, 1].

    Raises ValueError for other shapes, non-float dtypes, values outside [0, 1] and a model that
    is not a fitted MLP.
    """
    X = _check_inputs(x)
    if len(X) != 1:
        raise ValueError(f"expected one input, got {len(X)}: use novelty_scores for a batch")
    calibration = model_calibration(model)
    score = float(novelty_scores(X, model)[0])
    looks = score < calibration.threshold
    if looks:
        reason = f"looks like a digit (novelty {score:.2f}, below {calibration.threshold:.2f})"
    else:
        reason = f"doesn't look like a digit (novelty {score:.2f}, at or above {calibration.threshold:.2f})"
    return Novelty(bool(looks), score, calibration.threshold, reason)


# --- several digits side by side -----------------------------------------------------------------


def digit_parts(ink: np.ndarray) -> list[tuple[int, int]]:
    """Digit-sized parts of an ink map, left to right, as column ranges [start, stop).

    ink: (H, W) float in [0, 1]. A part is a run of columns holding ink (>= PART_INK); runs
    separated by fewer empty columns than MIN_GAP of the tallest part's height are one part.
    Parts much shorter (MIN_PART_HEIGHT) or lighter (MIN_PART_MASS) than the biggest one (a
    dot, a dash, a speck) are left out.
    """
    ink = np.asarray(ink, np.float32)
    if ink.ndim != 2:
        raise ValueError(f"expected an ink map of shape (H, W), got {ink.shape}")
    inked = ink >= PART_INK
    cols = inked.any(axis=0)
    if not cols.any():
        return []
    edges = np.diff(np.concatenate([[0], cols.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    rows_any = [np.flatnonzero(inked[:, a:b].any(axis=1)) for a, b in zip(starts, stops)]
    tallest = max(int(r[-1] - r[0] + 1) for r in rows_any)
    min_gap = max(2, MIN_GAP * tallest)
    runs: list[list[int]] = []
    for a, b in zip(starts.tolist(), stops.tolist()):
        if runs and a - runs[-1][1] < min_gap:
            runs[-1][1] = b
        else:
            runs.append([a, b])
    heights, masses = [], []
    for a, b in runs:
        r = np.flatnonzero(inked[:, a:b].any(axis=1))
        heights.append(int(r[-1] - r[0] + 1))
        masses.append(float(ink[:, a:b].sum()))
    top_h, top_m = max(heights), max(masses)
    return [
        (a, b)
        for (a, b), h, m in zip(runs, heights, masses)
        if h >= MIN_PART_HEIGHT * top_h and m >= MIN_PART_MASS * top_m
    ]


def count_digit_parts(image: np.ndarray) -> int:
    """How many digit-sized parts sit side by side in a picture (0 for a blank one).

    image: anything ``canvas_to_input`` takes ((H, W, 4) RGBA canvas, grey, RGB, photo).
    Raises ValueError for shapes and dtypes it cannot use.
    """
    ink = ink_map(image)
    return 0 if ink is None else len(digit_parts(ink))


def several_digits(image: np.ndarray) -> bool:
    """True when a picture holds two or more digit-sized parts side by side (``count_digit_parts``)."""
    return count_digit_parts(image) >= 2


__all__ = [
    "ASSET",
    "GROUPS",
    "MAX_FALSE_ALARM",
    "Calibration",
    "Novelty",
    "NoveltyAssets",
    "assess_input",
    "calibrate",
    "check_assets",
    "combined_score",
    "count_digit_parts",
    "detector_score",
    "digit_parts",
    "energy",
    "load_assets",
    "model_calibration",
    "novelty_scores",
    "save_assets",
    "several_digits",
    "shipped_assets",
]
