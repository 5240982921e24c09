"""A training run in a background thread, for a UI that polls it.

``TrainingJob`` drives ``iter_training`` in a worker thread, so training outlives the
web page's script runs (a click or a page switch reruns the script; the thread keeps
going). The UI asks for a ``snapshot()`` (a consistent copy taken under a lock) as
often as it likes, and ``stop()`` asks training to end after the current batch. At the
end the job evaluates the model on the test set, records metrics and provenance on it,
and saves it into the models folder. The worker never touches the UI.
Non-goals: several runs per job, processes, resuming a job after the server restarts.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import TrainConfig
from .data import Mnist
from .metrics import Evaluation, evaluate
from .model_io import ModelFileError
from .network import MLP
from .registry import save_new_model
from .train import iter_training, record_results

STARTING, TRAINING, EVALUATING, DONE, STOPPED, FAILED = (
    "starting", "training", "evaluating", "done", "stopped", "failed")
FINISHED = (DONE, STOPPED, FAILED)


def parse_hidden_sizes(text: str) -> tuple[int, ...]:
    """"128, 64" -> (128, 64). ValueError with a readable message for anything else."""
    parts = [p.strip() for p in str(text).replace(";", ",").split(",") if p.strip()]
    if not parts:
        raise ValueError("give at least one hidden layer size, e.g. 128,64")
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"hidden layer sizes must be whole numbers separated by commas, "
                         f"got {text!r}") from None
    return sizes


def log_every_for(n_images: int, batch_size: int, records_per_epoch: int = 25) -> int:
    """How many batches between progress records so an epoch gives ~records_per_epoch points."""
    batches = max(1, -(-n_images // max(batch_size, 1)))
    return max(1, batches // records_per_epoch)


def history_columns(history: list[dict]) -> dict[str, np.ndarray]:
    """Progress dicts -> columns for charting; ``epoch`` is fractional (1.5 = half of epoch 2).

    Validation columns are NaN on records that did not evaluate (all but epoch ends).
    """
    def column(key):
        return np.array([np.nan if h.get(key) is None else h[key] for h in history], dtype=np.float64)

    epoch = np.array([h["epoch"] - 1 + h["batch"] / max(h["batches_per_epoch"], 1) for h in history],
                     dtype=np.float64)
    return {"epoch": epoch, "train_acc": column("train_acc"), "val_acc": column("val_acc"),
            "loss": column("loss"), "val_loss": column("val_loss")}


def thin_history(history: list[dict], max_points: int = 150) -> list[dict]:
    """At most ~max_points records for a chart: every k-th batch record, plus every epoch record.

    Keeps a live chart's cost per redraw bounded however long the run; epoch records carry
    the validation figures, so none of them is dropped.
    """
    if len(history) <= max_points:
        return list(history)
    step = -(-len(history) // max_points)
    last = len(history) - 1
    return [h for i, h in enumerate(history) if i % step == 0 or i == last or h.get("kind") == "epoch"]


@dataclass(frozen=True)
class JobSnapshot:
    """A consistent view of a job at one moment. ``history`` is a list of Progress dicts."""

    status: str
    history: list[dict]
    error: str | None
    evaluation: Evaluation | None
    saved_path: Path | None
    save_error: str | None
    started: float  # time.time() when the job started
    finished_at: float | None

    @property
    def running(self) -> bool:
        return self.status not in FINISHED

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def latest(self) -> dict | None:
        return self.history[-1] if self.history else None

    @property
    def fraction_done(self) -> float:
        h = self.latest
        if h is None:
            return 0.0
        total = h["epochs"] * h["batches_per_epoch"]
        done = (h["epoch"] - 1) * h["batches_per_epoch"] + h["batch"]
        return min(1.0, done / max(total, 1))

    @property
    def eta(self) -> float | None:
        """Seconds left, or None before the first progress record."""
        h = self.latest
        return None if h is None or self.finished else float(h["eta"])


@dataclass
class TrainingJob:
    """Train ``MLP(config)`` on ``data`` in a daemon thread; see the module docstring.

    ``save_dir`` None saves into the default models folder; pass ``autosave=False`` to keep
    the model only in memory.
    """

    config: TrainConfig
    data: Mnist
    save_dir: Path | None = None
    autosave: bool = True
    source: str = "train page"
    model: MLP | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._status = STARTING
        self._history: list[dict] = []
        self._error: str | None = None
        self._evaluation: Evaluation | None = None
        self._saved_path: Path | None = None
        self._save_error: str | None = None
        self._started = time.time()
        self._finished_at: float | None = None

    def start(self) -> TrainingJob:
        if self._thread is not None:
            raise RuntimeError("this job has already been started")
        self._started = time.time()
        self._thread = threading.Thread(target=self._run, name="mnist-training", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask training to stop after the current batch; the model so far is still evaluated and saved."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread; True if it has finished."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.snapshot().finished

    def snapshot(self) -> JobSnapshot:
        with self._lock:
            return JobSnapshot(self._status, list(self._history), self._error, self._evaluation,
                               self._saved_path, self._save_error, self._started, self._finished_at)

    def _set(self, **changes) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(self, "_" + name, value)

    def _run(self) -> None:
        try:
            model = MLP(self.config)
            self._set(status=TRAINING)
            stopped = False
            for record in iter_training(model, self.data.X_train, self.data.y_train, stop=self._stop.is_set):
                with self._lock:
                    self._history.append(record.to_dict())
                stopped = stopped or record.stopped
            self._set(status=EVALUATING)
            evaluation = evaluate(model, self.data.X_test, self.data.y_test)
            record_results(model, evaluation.accuracy, time.time() - self._started, self.data.data_hash,
                           self.source, stopped)
            self.model = model
            self._set(evaluation=evaluation)
            if self.autosave:
                try:
                    self._set(saved_path=save_new_model(model, self.save_dir))
                except (OSError, ModelFileError) as e:  # full disk, read-only folder, unsavable weights:
                    # the model stays in memory, usable and downloadable
                    self._set(save_error=f"could not save the model: {e}")
            self._set(status=STOPPED if stopped else DONE, finished_at=time.time())
        except Exception as e:  # the worker must always end in a state the UI can show
            message = str(e) or type(e).__name__
            if not isinstance(e, (ValueError, RuntimeError, OSError)):
                message = f"{type(e).__name__}: {message}\n{traceback.format_exc(limit=3)}"
            self._set(status=FAILED, error=message, finished_at=time.time())
