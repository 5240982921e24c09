"""A run's record: progress records as the loop yields them, and columns for charting them.

The training loop writes ``Progress`` records; the model file stores them as plain dicts;
the CLI prints them and the train page charts them. Kept apart from the loop so the file
format and the pages read a run's history without importing the trainer. Also here: when a
loss counts as diverged (the loop flags it, the caller decides whether to stop) and how to
explain it to a person.
"""

from __future__ import annotations

import math
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
    diverged: bool = False  # true on the record of the batch where the loss first diverged

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


# Cross-entropy of a uniform guess over ten digits: where an untrained network starts.
CHANCE_LOSS = math.log(10)
# A batch loss this many times the run's first one (or chance's, if that is higher) means the
# weights are blowing up. Healthy runs measured here peak at about 4x (adam at 0.05 briefly
# reaches 9.6 and recovers); learning rate 5 with sgd reaches 400x within three batches.
DIVERGED_GROWTH = 40.0
# The learning rates that usually work here, per optimizer (also the train page's help text).
USUAL_LEARNING_RATES = {"sgd": 0.1, "momentum": 0.05, "adam": 0.001}


def loss_diverged(loss: float, first_loss: float) -> bool:
    """Whether a batch loss shows a run diverging: NaN or infinite, or exploded from where it started.

    ``first_loss`` is the run's first batch loss (with any L2 penalty, as ``loss`` is).
    """
    if not math.isfinite(loss):
        return True
    start = first_loss if math.isfinite(first_loss) else CHANCE_LOSS
    return loss > DIVERGED_GROWTH * max(start, CHANCE_LOSS)


def explain_divergence(record: dict[str, Any], optimizer: str, learning_rate: float) -> str:
    """A sentence for a person: where the run diverged, what the loss did, what to try instead."""
    loss = record.get("loss")
    if loss is None or not math.isfinite(loss):
        what = "the loss became infinite or not a number (NaN)"
    else:
        what = f"the loss exploded to {loss:,.4g} (an untrained network starts near {CHANCE_LOSS:.1f})"
    usual = USUAL_LEARNING_RATES.get(optimizer)
    advice = f"try about {usual:g}, the usual value for {optimizer}" if usual else "try a smaller one"
    if usual is not None and learning_rate <= usual:
        advice = f"try {learning_rate / 10:g} (a tenth of it)"
    return (
        f"Training diverged in epoch {record['epoch']}, batch {record['batch']} of {record['batches_per_epoch']}: "
        f"{what}. The learning rate ({learning_rate:g}) is probably too high: {advice}."
    )


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
