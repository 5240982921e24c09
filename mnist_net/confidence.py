"""A "not sure" signal for one prediction, so the app can say so instead of guessing.

The rule (``assess``): a prediction is *sure* when the top class probability is at least
MIN_PROBABILITY **and** it beats the runner-up by at least MIN_MARGIN. Otherwise the app
should show "not sure" (and the top two candidates), not a confident answer.

The thresholds were chosen on calibration data the model never trained on (MNIST validation
images and canvases redrawn from them), catching the most wrong answers while doubting at
most 2% of the right drawn ones: ``python benchmarks/confidence.py``; figures in the README.

Non-goals: calibrating the probabilities themselves (temperature scaling), detecting
"not a digit" (canvas_to_input returns None for blank canvases).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

MIN_PROBABILITY = 0.72
MIN_MARGIN = 0.50


@dataclass(frozen=True)
class Verdict:
    """One prediction: the digit, its probability, whether to trust it, and why (for display)."""

    digit: int
    probability: float
    runner_up: int
    runner_up_probability: float
    sure: bool
    reason: str


def top_two(proba: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(best class, its probability, second class, its probability), each (batch,).

    proba: (batch, n_classes) rows of class probabilities.
    """
    order = np.argsort(-proba, axis=1, kind="stable")  # ties go to the lower digit, like argmax
    rows = np.arange(len(proba))
    first, second = order[:, 0], order[:, 1]
    return first, proba[rows, first], second, proba[rows, second]


def is_sure(proba: np.ndarray, min_probability: float = MIN_PROBABILITY, min_margin: float = MIN_MARGIN) -> np.ndarray:
    """The rule, vectorised: (batch, 10) probabilities -> (batch,) bool "sure"."""
    _, p1, _, p2 = top_two(np.asarray(proba, np.float64))
    return (p1 >= min_probability) & (p1 - p2 >= min_margin)


def assess(proba: ArrayLike, min_probability: float = MIN_PROBABILITY, min_margin: float = MIN_MARGIN) -> Verdict:
    """Judge one prediction. proba: (10,) class probabilities (or (1, 10)).

    Raises ValueError for anything that is not a finite probability vector.
    """
    p = np.asarray(proba, np.float64).reshape(-1)
    if p.size < 2 or not np.all(np.isfinite(p)) or p.min() < 0 or abs(p.sum() - 1) > 1e-3:
        raise ValueError("expected a vector of class probabilities that sums to 1")
    first, p1, second, p2 = (v[0] for v in top_two(p[None, :]))
    sure = bool(p1 >= min_probability and p1 - p2 >= min_margin)
    if sure:
        reason = f"{p1:.0%} sure it is a {first}"
    elif p1 < min_probability:
        reason = f"not sure: best guess {first} at only {p1:.0%} (runner-up {second} at {p2:.0%})"
    else:
        reason = f"not sure: {first} ({p1:.0%}) and {second} ({p2:.0%}) are too close"
    return Verdict(int(first), float(p1), int(second), float(p2), sure, reason)


__all__ = ["Verdict", "assess", "is_sure", "top_two", "MIN_PROBABILITY", "MIN_MARGIN"]
