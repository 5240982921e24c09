"""Evaluation of a fitted classifier: accuracy per class, confusion matrix, worst mistakes.

Pure NumPy over batch-first arrays, so the train page only draws what these return.
Non-goals: plotting, precision/recall/F1 reports, anything that needs scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


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
