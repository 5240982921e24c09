"""One training run in a child process, for a UI that polls it.

``TrainingJob(config, mnist_dir).start()`` starts a child process (multiprocessing's
"forkserver" context: each run forks from a small, single-threaded server process that has
already imported NumPy and mnist_net, so a run starts in milliseconds and never inherits the
web server's threads or memory). Training outside the caller's process leaves a web server's
drawing sessions their CPU and GIL, and a crash of a run cannot take the server down.
The child (``worker.train_in_child``) loads MNIST itself, trains, evaluates and sends back
progress records and, at the end, the model as bytes of the safe file format. A thread in
this process reads those messages, so ``snapshot()`` (a consistent copy taken under a lock)
is cheap and never waits for training. ``stop()`` sets an event the child checks after every
batch; the model trained so far is still evaluated and returned. ``pause()`` clears an event
the child then waits on between batches (no CPU; the run's elapsed time and ETA leave the
pause out) until ``resume()``. A job given ``base_model_bytes`` trains more epochs of that
model: its history and epoch count carry on. The child sends a small picture of the first
layer's weights about once a second (``snapshot().weights_preview``). A child that dies (killed,
out of memory) is reported as failed with its exit status; it writes no files, so nothing
partial is left. Saving is the caller's choice: the app keeps a model only when the user
asks (``runs.RunRegistry.keep``); a job given a ``save_dir`` saves its model there itself,
from this process, when it arrives.
A finished run kept in a ``run_store`` comes back after a restart as a ``RestoredJob``.
Non-goals: several runs per job, resuming an unfinished job after the server restarts, scheduling
(``runs`` decides when a job starts).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

import numpy as np

from .config import TrainConfig
from .data import Mnist
from .history import fraction_done
from .metrics import Evaluation
from .model_io import ModelFileError, model_from_bytes
from .network import MLP
from .registry import save_new_model
from .run_store import StoredRun
from .worker import (
    EVALUATING,
    MAX_PAUSE_SECONDS,
    PAUSED,
    PREVIEW_SECONDS,
    TRAINING,
    Result,
    fine_tune_in_child,
    train_in_child,
    weights_preview,
    whole_epochs,
)

QUEUED, STARTING = "queued", "starting"
DONE, STOPPED, DIVERGED, FAILED, CANCELLED = "done", "stopped", "diverged", "failed", "cancelled"
FINISHED = (DONE, STOPPED, DIVERGED, FAILED, CANCELLED)
STATUSES = (QUEUED, STARTING, TRAINING, PAUSED, EVALUATING, *FINISHED)  # in the order a run goes through them

# "forkserver" where the platform has it (Linux, macOS), else "spawn": never plain "fork",
# which would copy a threaded web server mid-flight.
START_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
_context = multiprocessing.get_context(START_METHOD)
if START_METHOD == "forkserver":
    # Imported once in the fork server, so every run's child starts with them loaded.
    _context.set_forkserver_preload(["mnist_net.worker"])


_MAIN_LOCK = threading.Lock()


@contextmanager
def _caller_main_hidden() -> Iterator[None]:
    """While starting a child, show multiprocessing a bare ``__main__``, so the child imports none.

    Spawn and forkserver children re-run the parent's ``__main__`` file (to unpickle objects
    defined there). A host that runs scripts as ``__main__`` (Streamlit runs the app's script
    so) would have its whole page run again inside every training process. The child needs
    nothing from there: its target lives in ``mnist_net.worker``. The caller's module is put
    back unless the host replaced it meanwhile (a new script run), whose module is then kept.
    """
    with _MAIN_LOCK:
        caller = sys.modules.get("__main__")
        bare = types.ModuleType("__main__")  # no __file__, no __spec__: nothing to re-run
        sys.modules["__main__"] = bare
        try:
            yield
        finally:
            if sys.modules.get("__main__") is bare and caller is not None:
                sys.modules["__main__"] = caller


@dataclass(frozen=True)
class JobSnapshot:
    """A consistent view of a job at one moment. ``history`` is a list of Progress dicts."""

    status: str
    history: list[dict]
    error: str | None  # why it failed, or the explanation of a divergence
    evaluation: Evaluation | None
    mistake_images: np.ndarray | None  # (m, 784) uint8: the test digits of evaluation.mistakes
    mistake_labels: np.ndarray | None  # (m,) their true digits
    created: float  # time.time() when the job was made
    started: float | None  # when its process started (None while queued)
    finished_at: float | None
    saved_path: Path | None = None  # where the model was saved (only for a job given a save_dir)
    save_error: str | None = None  # why that save failed (the model is still in memory)
    stopping: bool = False  # asked to stop, not ended yet
    pause_requested: bool = False  # asked to pause (``paused`` once the child has: after its current batch)
    weights_preview: np.ndarray | None = None  # worker.weights_preview of the latest weights; do not modify
    note: str | None = None  # something the child said about the run (e.g. a pause that ended it)
    tuning: dict[str, Any] | None = None  # a finished fine-tune's figures (FineTuneJob)

    @property
    def running(self) -> bool:
        """Not finished yet: queued, starting, training or evaluating."""
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

    @property
    def paused(self) -> bool:
        """The child is waiting (it may be about to carry on if the pause was just lifted)."""
        return self.status == PAUSED

    @property
    def pausing(self) -> bool:
        """Asked to pause, still finishing its batch."""
        return self.pause_requested and not self.paused


def describe_exit(exitcode: int | None) -> str:
    """A child's exit status in words: 'killed by SIGKILL (...)', 'exit code 3'."""
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        why = " (out of memory, or stopped by an administrator)" if -exitcode == signal.SIGKILL else ""
        return f"killed by {name}{why}"
    return f"exit code {exitcode}"


@dataclass
class TrainingJob:
    """Train ``MLP(config)`` on MNIST in a child process; see the module docstring.

    ``data``: the folder holding the four MNIST files, or a loaded ``Mnist`` (its ``source``
    folder is used: the child loads and checks the files itself; no array is sent across).
    ``save_dir``: if given, the finished model is saved there under a new name.
    ``on_finish`` (optional) is called once, from the job's reader thread, when the job ends.
    ``base_model_bytes``: a model file's bytes to train ``config.epochs`` more epochs of (its
    layers and optimiser state carry on; ``config`` should be that model's, with new epochs).
    After a run that ends with a model, ``model`` holds it and ``model_bytes`` its file's bytes.
    """

    config: TrainConfig
    data: Mnist | str | os.PathLike
    save_dir: str | os.PathLike | None = None
    source: str = "train page"
    on_finish: Callable[[TrainingJob], None] | None = None
    base_model_bytes: bytes | None = None
    max_pause_seconds: float = MAX_PAUSE_SECONDS
    preview_seconds: float | None = PREVIEW_SECONDS  # None: no weights previews (for benchmarks)
    keep_if_orphaned: dict[str, Any] | None = None  # where the child stores the run if this process dies
    model: MLP | None = field(default=None, init=False)
    model_bytes: bytes | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = _context.Event()
        self._run = _context.Event()  # cleared while paused: the child waits on it
        self._run.set()
        self._process: multiprocessing.process.BaseProcess | None = None
        self._reader: threading.Thread | None = None
        self._status = QUEUED
        self._history: list[dict] = []
        self._error: str | None = None
        self._result: Result | None = None
        self._created = time.time()
        self._started: float | None = None
        self._finished_at: float | None = None
        self._saved_path: Path | None = None
        self._save_error: str | None = None
        self._note: str | None = None
        self._preview: np.ndarray | None = None
        if self.base_model_bytes is not None:  # the curve and the pictures carry on from the base model
            base = model_from_bytes(self.base_model_bytes)  # ModelFileError for bytes that are no model
            self._history = whole_epochs(base.history_, base.epochs_done_)
            self._preview = weights_preview(base.params_)

    @property
    def mnist_dir(self) -> Path:
        """The folder the child loads MNIST from."""
        return Path(self.data.source if isinstance(self.data, Mnist) else self.data)

    # --- control -------------------------------------------------------------------------
    def start(self) -> TrainingJob:
        """Start the child process (once); a job stopped while queued stays cancelled."""
        with self._lock:
            if self._status == CANCELLED:
                return self
            if self._process is not None:
                raise RuntimeError("this job has already been started")
            receiver, sender = _context.Pipe(duplex=False)
            target, args, kwargs = self._child(sender)
            process = _context.Process(  # type: ignore[attr-defined]
                target=target,
                args=args,
                kwargs=kwargs,
                name="mnist-training",
                daemon=True,  # ended with this process if it exits normally
            )
            self._status, self._started = STARTING, time.time()
            try:
                with _caller_main_hidden():
                    process.start()
            except Exception as e:  # no process (out of memory, too many processes): a failed run
                receiver.close()
                self._status, self._finished_at = FAILED, time.time()
                self._error = f"the training process could not be started: {e}"
                failed = True
            else:
                failed = False
                self._process = process
                reader = threading.Thread(
                    target=self._read, args=(receiver, process), name="mnist-training-reader", daemon=True
                )
                reader.start()
                self._reader = reader  # published only once started: join() may run in another thread
            finally:
                sender.close()  # our copy: the child's end alone keeps the pipe open, so its death ends recv()
        if failed:
            self._finish()
        return self

    def _child(self, sender) -> tuple[Callable[..., None], tuple, dict[str, Any]]:
        """What the child process runs: its target function and arguments."""
        kwargs = dict(
            run_event=self._run,
            base_model_bytes=self.base_model_bytes,
            max_pause_seconds=self.max_pause_seconds,
            preview_seconds=self.preview_seconds,
            keep_if_orphaned=self.keep_if_orphaned,
        )
        return train_in_child, (self.config.to_dict(), str(self.mnist_dir), sender, self._stop, self.source), kwargs

    def stop(self, note: str | None = None) -> None:
        """Ask training to stop after the current batch; the model so far is still evaluated.

        A job that has not started yet is cancelled instead (it never starts). ``note``, for
        a job still running, says why it was stopped (``snapshot().note``).
        """
        cancelled = False
        with self._lock:
            if note is not None and self._status not in FINISHED:
                self._note = note
            if self._process is None and self._status == QUEUED:
                self._status, self._finished_at = CANCELLED, time.time()
                cancelled = True
        self._stop.set()
        self._run.set()  # a paused child wakes up to stop
        if cancelled:
            self._finish()

    def pause(self) -> bool:
        """Pause after the current batch (the child then waits, using no CPU). False if not training."""
        with self._lock:
            if self._status not in (STARTING, TRAINING, PAUSED) or self._stop.is_set():
                return False
            self._run.clear()
            return True

    def resume(self) -> bool:
        """Carry on after ``pause``. False if the job was not paused (or pausing)."""
        with self._lock:
            if self._run.is_set():
                return False
            self._run.set()
            return True

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the job to end (a queued job waits until it is started and ends); True if it has."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            reader = self._reader
            if reader is not None:
                reader.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if self.snapshot().finished:
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            if reader is None:
                time.sleep(0.05)  # still queued: its start comes from whoever schedules it

    @property
    def status(self) -> str:
        """The current status (cheaper than a snapshot: no copy of the history)."""
        with self._lock:
            return self._status

    @property
    def pid(self) -> int | None:
        """The child's process id once started (for monitoring; the job never needs it)."""
        process = self._process
        return None if process is None else process.pid

    def snapshot(self) -> JobSnapshot:
        with self._lock:
            r = self._result
            return JobSnapshot(
                self._status,
                list(self._history),
                self._error,
                None if r is None else r.evaluation,
                None if r is None else r.mistake_images,
                None if r is None else r.mistake_labels,
                self._created,
                self._started,
                self._finished_at,
                self._saved_path,
                self._save_error,
                self._stop.is_set() and self._status not in FINISHED,
                not self._run.is_set() and self._status in (STARTING, TRAINING, PAUSED),
                self._preview,
                self._note,
                None if r is None else r.tuning,
            )

    # --- the reader thread -----------------------------------------------------------------
    def _read(self, receiver, process) -> None:
        """Take the child's messages until its final one or its death, then book the ending."""
        final: tuple | None = None
        try:
            while final is None:
                ready = wait([receiver, process.sentinel])
                if receiver in ready or receiver.poll():
                    try:
                        message = receiver.recv()
                    except (EOFError, OSError):
                        break  # the child closed its end: it has ended
                    final = self._take(message)
                elif process.sentinel in ready:
                    while final is None and receiver.poll():  # what it sent before it died
                        final = self._take(receiver.recv())
                    break
        except Exception as e:  # a message that cannot be read is a failed run, never a hung one
            final = ("error", f"could not read the training process's messages: {e}")
        finally:
            receiver.close()
        process.join(timeout=30)
        if final is None:
            final = ("error", f"the training process ended unexpectedly: {describe_exit(process.exitcode)}")
        self._book(final)
        self._finish()

    def _take(self, message: tuple) -> tuple | None:
        """Book a progress or status message; return the message if it is the final one."""
        kind = message[0]
        with self._lock:
            if kind == "progress":
                self._history.append(message[1])
                return None
            if kind == "status":
                self._status = message[1]
                return None
            if kind == "weights":
                self._preview = message[1]
                return None
            if kind == "note":
                self._note = str(message[1])
                return None
            if kind == "paused":  # a heartbeat: nothing to book
                return None
        return message

    def _book(self, final: tuple) -> None:
        kind, payload = final[0], final[1]
        status, error, result, model = FAILED, None, None, None
        if kind == "result":
            try:
                model = model_from_bytes(payload.model_bytes)  # the safe loader checks what came back
            except ModelFileError as e:
                error = f"the trained model could not be read back: {e}"
            else:
                status, result = (STOPPED if payload.stopped else DONE), payload
        elif kind == "diverged":
            status, error = DIVERGED, str(payload)
        else:
            error = str(payload)
        saved_path, save_error = None, None
        if result is not None and model is not None and self.save_dir is not None:
            try:
                saved_path = save_new_model(model, self.save_dir)
            except (OSError, ModelFileError) as e:  # full disk, read-only folder: the model stays in memory, usable
                save_error = f"could not save the model: {e}"
        with self._lock:
            if result is not None:
                self.model, self.model_bytes = model, result.model_bytes
                self._preview = weights_preview(model.params_ if model is not None else None)
            self._status, self._error, self._result = status, error, result
            self._saved_path, self._save_error = saved_path, save_error
            self._finished_at = time.time()

    def _finish(self) -> None:
        if self.on_finish is not None:
            self.on_finish(self)


@dataclass
class FineTuneJob(TrainingJob):
    """Fine-tune the model in ``base_model_bytes`` on a person's digits in a child process
    (``worker.fine_tune_in_child``), with the same progress, stop, pause and failure handling
    as a training; ``snapshot().tuning`` holds its figures at the end. ``inputs`` (n, 784)
    float32 in [0, 1] and ``labels`` (n,) are the digits; ``config`` is the base model's (for
    display); ``options``: ``FineTuneOptions.to_dict()`` (empty: the defaults).
    """

    inputs: np.ndarray | None = None
    labels: np.ndarray | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.base_model_bytes is None or self.inputs is None or self.labels is None:
            raise ValueError("a fine-tune needs base_model_bytes, inputs and labels")
        super().__post_init__()
        self._history = []  # its progress is the tuning's own, not the base model's training

    def _child(self, sender) -> tuple[Callable[..., None], tuple, dict[str, Any]]:
        args = (self.base_model_bytes, self.inputs, self.labels, str(self.mnist_dir), sender, self._stop)
        kwargs = dict(
            run_event=self._run,
            options=self.options,
            max_pause_seconds=self.max_pause_seconds,
            keep_if_orphaned=self.keep_if_orphaned,
        )
        return fine_tune_in_child, args, kwargs


@dataclass
class RestoredJob(TrainingJob):
    """A finished run read back from a ``run_store.RunStore`` after a server restart: its
    snapshot, model and bytes as they were; it has no process and never starts."""

    stored: StoredRun | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        s = self.stored
        if s is None:
            raise ValueError("a restored job needs its stored run")
        facts = s.facts
        self.model, self.model_bytes = s.model, s.model_bytes
        self._status = facts["status"]
        self._history = [] if facts["kind"] == "fine-tune" else list(s.model.history_)
        stopped = self._status == STOPPED
        self._result = Result(s.model_bytes, s.evaluation, s.mistake_images, s.mistake_labels, stopped, facts["tuning"])
        self._created, self._started, self._finished_at = facts["created"], facts["started"], facts["finished_at"]
        self._note = facts["note"]
        self._preview = weights_preview(s.model.params_)

    def start(self) -> TrainingJob:
        return self  # finished already
