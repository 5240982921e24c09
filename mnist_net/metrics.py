"""Evaluation of a fitted classifier: accuracy per class, confusion matrix, worst mistakes, and
how far its confidence can be trusted (a reliability diagram's bins, the "not sure" rule's
coverage against accuracy).

Pure NumPy over batch-first arrays, so the train page only draws what these return.
Non-goals: plotting, precision/recall/F1 reports, calibrating a model, anything that needs scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .confidence import MIN_MARGIN, MIN_PROBABILITY, is_sure


class ProbabilisticClassifier(Protocol):
    """Anything with ``predict_proba(X) -> (n, n_classes)``, such as an MLP."""

    def predict_proba(self, X: np.ndarray) -> np.ndarray: ...


N_CLASSES = 10


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = N_CLASSES) -> np.ndarray:
    """Counts (n_classes, n_classes) int64: row = true digit, column = predicted digit.

    y_true, y_pred: (n,) integer labels in [0, n_classes).
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} must be equal-length 1-D arrays")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.size and (y.min() < 0 or y.max() >= n_classes):
            raise ValueError(f"{name} must hold labels in [0, {n_classes})")
    # One bincount over the flattened (true, pred) pair index is the whole matrix.
    flat = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


def per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
    """Fraction of each true digit classified correctly (recall), (n_classes,) float64.

    NaN for a digit with no examples, so "never seen" is not confused with "always wrong".
    """
    confusion = np.asarray(confusion)
    totals = confusion.sum(axis=1)
    correct = np.diag(confusion).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, correct / np.maximum(totals, 1), np.nan)


def most_confident_mistakes(y_true: np.ndarray, proba: np.ndarray, k: int = 8) -> np.ndarray:
    """Indices (<= k,) of wrongly classified examples, most confident wrong answer first.

    proba: (n, n_classes) class probabilities; y_true: (n,).
    """
    proba = np.asarray(proba)
    y_true = np.asarray(y_true, dtype=np.int64)
    predicted = proba.argmax(axis=1)
    wrong = np.flatnonzero(predicted != y_true)
    confidence = proba[wrong, predicted[wrong]]
    # Stable sort keeps ties in data order, so the result is deterministic.
    order = np.argsort(-confidence, kind="stable")
    return wrong[order[:k]]


@dataclass(frozen=True)
class Evaluation:
    """A model's results on a labelled set of n images."""

    accuracy: float
    confusion: np.ndarray  # (10, 10) int64, row = true digit, column = predicted
    per_class: np.ndarray  # (10,) float64 recall per digit, NaN if absent
    mistakes: np.ndarray  # (m,) indices into the evaluated set, most confident first
    mistake_predicted: np.ndarray  # (m,) what the model said for each mistake
    mistake_probability: np.ndarray  # (m,) the probability it gave that wrong answer
    n: int


def evaluate(model: ProbabilisticClassifier, X: np.ndarray, y: np.ndarray, n_mistakes: int = 8) -> Evaluation:
    """Evaluate any classifier with ``predict_proba(X) -> (n, 10)`` on images X (n, 784), labels y (n,)."""
    y = np.asarray(y, dtype=np.int64)
    proba = np.asarray(model.predict_proba(X))
    predicted = proba.argmax(axis=1)
    confusion = confusion_matrix(y, predicted, proba.shape[1])
    mistakes = most_confident_mistakes(y, proba, n_mistakes)
    return Evaluation(
        accuracy=float(np.mean(predicted == y)) if len(y) else float("nan"),
        confusion=confusion,
        per_class=per_class_accuracy(confusion),
        mistakes=mistakes,
        mistake_predicted=predicted[mistakes],
        mistake_probability=proba[mistakes, predicted[mistakes]].astype(np.float64),
        n=len(y),
    )


def cell_members(y_true: np.ndarray, proba: np.ndarray, true_digit: int, predicted: int) -> np.ndarray:
    """Indices of the examples in one confusion-matrix cell (true ``true_digit``, answered ``predicted``),
    the most confident answer first (ties in data order). proba: (n, n_classes); y_true: (n,)."""
    proba = np.asarray(proba)
    y_true = np.asarray(y_true, dtype=np.int64)
    answered = proba.argmax(axis=1)
    members = np.flatnonzero((y_true == true_digit) & (answered == predicted))
    order = np.argsort(-proba[members, predicted], kind="stable")
    return members[order]


@dataclass(frozen=True)
class Reliability:
    """A reliability diagram's numbers: examples binned by confidence (the top probability).

    A well-calibrated model's accuracy in each bin equals the bin's mean confidence.
    """

    edges: np.ndarray  # (n_bins + 1,) bin edges over [0, 1]
    count: np.ndarray  # (n_bins,) int64 examples per bin
    confidence: np.ndarray  # (n_bins,) mean top probability per bin, NaN where empty
    accuracy: np.ndarray  # (n_bins,) fraction right per bin, NaN where empty
    calibration_error: float  # expected calibration error: sum over bins of count / n * |accuracy - confidence|


def reliability_bins(y_true: np.ndarray, proba: np.ndarray, n_bins: int = 10) -> Reliability:
    """Bin examples by their top probability into ``n_bins`` equal-width bins over [0, 1].

    Bins are [lo, hi) except the last, which includes 1.0. proba: (n, n_classes); y_true: (n,).
    """
    if n_bins < 1:
        raise ValueError("n_bins must be at least 1")
    proba = np.asarray(proba, np.float64)
    y_true = np.asarray(y_true, dtype=np.int64)
    confidence = proba.max(axis=1) if len(proba) else np.zeros(0)
    right = (proba.argmax(axis=1) == y_true) if len(proba) else np.zeros(0, bool)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip((confidence * n_bins).astype(np.int64), 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, weights=confidence, minlength=n_bins) / count
        accuracy = np.bincount(which, weights=right.astype(np.float64), minlength=n_bins) / count
    filled = count > 0
    error = float(np.sum(count[filled] * np.abs(accuracy[filled] - mean_conf[filled])) / max(1, len(y_true)))
    return Reliability(edges, count, np.where(filled, mean_conf, np.nan), np.where(filled, accuracy, np.nan), error)


@dataclass(frozen=True)
class CoverageCurve:
    """What the "not sure" rule trades: both its thresholds scaled together by ``scale`` (0: answer
    everything; 1: the rule as the app uses it; higher: stricter), and at each scale the share of
    examples answered as sure (coverage) and how many of those are right (accuracy)."""

    scale: np.ndarray  # (k,) increasing, includes 0 and exactly 1
    min_probability: np.ndarray  # (k,) the rule's probability threshold at each scale
    min_margin: np.ndarray  # (k,) its margin threshold at each scale
    coverage: np.ndarray  # (k,) fraction of examples answered as sure
    accuracy: np.ndarray  # (k,) accuracy among those, NaN where none is answered
    current: int  # index of scale 1: the thresholds in use


def coverage_curve(
    y_true: np.ndarray,
    proba: np.ndarray,
    min_probability: float = MIN_PROBABILITY,
    min_margin: float = MIN_MARGIN,
    n_points: int = 41,
) -> CoverageCurve:
    """Coverage and accuracy of the "not sure" rule (``confidence.is_sure``) as its thresholds scale.

    Scales run evenly from 0 to where the larger threshold reaches 1 (``n_points`` of them, plus
    exactly 1). proba: (n, n_classes); y_true: (n,).
    """
    if not (0 < min_probability <= 1 and 0 <= min_margin <= 1):
        raise ValueError("min_probability must be in (0, 1] and min_margin in [0, 1]")
    proba = np.asarray(proba, np.float64)
    y_true = np.asarray(y_true, dtype=np.int64)
    right = proba.argmax(axis=1) == y_true
    top = 1.0 / max(min_probability, min_margin)
    scale = np.union1d(np.linspace(0.0, top, max(2, n_points)), [1.0])
    coverage, accuracy = np.empty(len(scale)), np.empty(len(scale))
    for i, s in enumerate(scale):
        sure = is_sure(proba, min_probability * s, min_margin * s)
        coverage[i] = float(sure.mean()) if len(sure) else float("nan")
        accuracy[i] = float(right[sure].mean()) if sure.any() else float("nan")
    return CoverageCurve(
        scale, min_probability * scale, min_margin * scale, coverage, accuracy, int(np.flatnonzero(scale == 1.0)[0])
    )
