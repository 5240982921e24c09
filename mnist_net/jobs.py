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

from .config import TrainConfig
from .data import Mnist
from .history import fraction_done
from .metrics import Evaluation, evaluate
from .model_io import ModelFileError
from .network import MLP
from .registry import save_new_model

STARTING, TRAINING, EVALUATING, DONE, STOPPED, FAILED = (
    "starting",
    "training",
    "evaluating",
    "done",
    "stopped",
    "failed",
)
FINISHED = (DONE, STOPPED, FAILED)


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
        return 0.0 if self.latest is None else fraction_done(self.latest)

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
            return JobSnapshot(
                self._status,
                list(self._history),
                self._error,
                self._evaluation,
                self._saved_path,
                self._save_error,
                self._started,
                self._finished_at,
            )

    def _set(self, **changes) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(self, "_" + name, value)

    def _run(self) -> None:
        try:
            model = MLP(self.config)
            self._set(status=TRAINING)
            stopped = False
            for record in model.iter_fit(self.data.X_train, self.data.y_train, stop=self._stop.is_set):
                with self._lock:
                    self._history.append(record.to_dict())
                stopped = stopped or record.stopped
            self._set(status=EVALUATING)
            evaluation = evaluate(model, self.data.X_test, self.data.y_test)
            model.record_results(
                evaluation.accuracy, time.time() - self._started, self.data.data_hash, self.source, stopped
            )
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
