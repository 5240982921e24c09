"""A run's record: progress records as the loop yields them, and columns for charting them.

The training loop writes ``Progress`` records; the model file stores them as plain dicts;
the CLI prints them and the train page charts them. Kept apart from the loop so the file
format and the pages read a run's history without importing the trainer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass
class Progress:
    """One progress record. ``kind`` is "batch" or "epoch"; accuracies are fractions."""

    kind: str
    epoch: int  # 1-based epoch this record belongs to
    batch: int  # batches done in this epoch
    batches_per_epoch: int
    epochs: int  # total epochs of this run
    loss: float  # mean training loss since the previous record
    train_acc: float  # training accuracy (on the augmented batches) since the previous record
    val_acc: float | None  # validation accuracy (epoch records only)
    val_loss: float | None
    samples_per_s: float
    elapsed: float  # seconds since the run started
    eta: float  # estimated seconds to the end of the run
    stopped: bool = False  # true on the final record of a run that was asked to stop

    @property
    def fraction_done(self) -> float:
        return fraction_done(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fraction_done(record: dict[str, Any]) -> float:
    """How far through its run a progress record (as a dict) is, 0..1."""
    total = record["epochs"] * record["batches_per_epoch"]
    done = (record["epoch"] - 1) * record["batches_per_epoch"] + record["batch"]
    return min(1.0, done / max(total, 1))


def log_every_for(n_images: int, batch_size: int, records_per_epoch: int = 25) -> int:
    """How many batches between progress records so an epoch gives ~records_per_epoch points."""
    batches = max(1, -(-n_images // max(batch_size, 1)))
    return max(1, batches // records_per_epoch)


def history_columns(history: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Progress dicts -> columns for charting; ``epoch`` is fractional (1.5 = half of epoch 2).

    Validation columns are NaN on records that did not evaluate (all but epoch ends).
    """

    def column(key: str) -> np.ndarray:
        return np.array([np.nan if h.get(key) is None else h[key] for h in history], dtype=np.float64)

    epoch = np.array([h["epoch"] - 1 + h["batch"] / max(h["batches_per_epoch"], 1) for h in history], dtype=np.float64)
    return {
        "epoch": epoch,
        "train_acc": column("train_acc"),
        "val_acc": column("val_acc"),
        "loss": column("loss"),
        "val_loss": column("val_loss"),
    }


def thin_history(history: list[dict[str, Any]], max_points: int = 150) -> list[dict[str, Any]]:
    """At most ~max_points records for a chart: every k-th batch record, plus every epoch record.

    Keeps a live chart's cost per redraw bounded however long the run; epoch records carry
    the validation figures, so none of them is dropped.
    """
    if len(history) <= max_points:
        return list(history)
    step = -(-len(history) // max_points)
    last = len(history) - 1
    return [h for i, h in enumerate(history) if i % step == 0 or i == last or h.get("kind") == "epoch"]
