"""The training process: what runs in the child that ``jobs.TrainingJob`` starts for one run.

``train_in_child`` loads MNIST itself (from the folder the parent found, checked against the
official hashes: nothing big is pickled across), trains (a fresh network, or more epochs of
a model sent as the bytes of the safe file format), evaluates on the test set and sends
everything back through a one-way pipe as small messages, the model as those bytes too.
It writes no model files, so a child that is killed at any moment leaves nothing behind. Between
batches it stops when the parent sets the stop event (or on its own when the loss
diverges), and while the parent clears the run event it waits on that event: no CPU, and
the training clock (elapsed time, rate, ETA) stands still. A pause longer than
``max_pause_seconds`` ends as a stop, so a forgotten pause does not hold a training slot for
ever. If the parent goes away (the server killed outright), the next send fails: the child
stops after that batch, scores its model as a stopped run and, if the parent gave it
``keep_if_orphaned`` (where the server's ``run_store.RunStore`` is, whose run this is), writes
that run into the store atomically, so the restarted server lists it. A paused child sends a
heartbeat every few seconds to find out. Without ``keep_if_orphaned`` it writes no files.
``fine_tune_in_child`` is the same life for a fine-tune (``finetune.fine_tune``) of a model
on a person's digits: it holds out a stratified third of them (``split_held_out``; a digit
with fewer than 2 examples is all taught), tunes on the rest with MNIST rehearsal, and sends
back the tuned model with ``Result.tuning`` (before/after on the held-out digits and on MNIST
test, and which held-out digits flipped).
Non-goals: several runs per process, talking to any UI.

Messages, in order (each a tuple whose first item names it):
``("status", TRAINING | EVALUATING | PAUSED)``, ``("progress", record_dict)`` (many),
``("weights", preview)`` (at most about once a second: ``weights_preview``), ``("paused",
seconds)`` heartbeats, ``("note", text)``, then exactly one final message: ``("result",
Result)``, ``("diverged", explanation)`` or ``("error", message)``.
"""

from __future__ import annotations

import math
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import TrainConfig
from .data import MnistError, load_mnist
from .finetune import FineTuneOptions, fine_tune, split_held_out
from .history import Progress, explain_divergence
from .metrics import Evaluation, evaluate
from .model_io import ModelFileError, model_from_bytes, model_to_bytes
from .network import MLP
from .run_store import RunStore, run_file_bytes

TRAINING, EVALUATING, PAUSED = "training", "evaluating", "paused"
PREVIEW_SECONDS = 1.0  # at most one weights preview a second: a class watches, nobody needs more
PREVIEW_UNITS = 64  # dense first layers: the incoming weights of this many units
HEARTBEAT_SECONDS = 5.0  # a paused child checks this often that its parent is still there
MAX_PAUSE_SECONDS = 30 * 60.0


@dataclass(frozen=True)
class Result:
    """What a finished (or stopped) run sends back. ``mistake_images``: (m, 784) uint8 test digits."""

    model_bytes: bytes
    evaluation: Evaluation | None  # None for a fine-tune (its MNIST figures are in ``tuning``)
    mistake_images: np.ndarray | None
    mistake_labels: np.ndarray | None
    stopped: bool
    tuning: dict[str, Any] | None = None  # a fine-tune's figures (fine_tune_in_child); None for a training


def weights_preview(params: dict[str, np.ndarray] | None) -> np.ndarray | None:
    """The first layer's weights as small pictures, (n, h, w) float32, for watching a network learn.

    Dense first layer ``W1`` (n_in, units) on a square input: the first ``PREVIEW_UNITS`` units'
    incoming weights, each as an (h, h) picture of the input (28x28 for an image). Conv first
    layer ``W1`` (kh, kw, c_in, C): its C filters on the first input channel, (C, kh, kw).
    None when there is nothing to picture (no weights yet, a non-square dense input).
    A copy: the caller may keep it while training goes on.
    """
    W = None if params is None else params.get("W1")
    if W is None:
        return None
    if W.ndim == 4:
        return np.ascontiguousarray(W[:, :, 0, :].transpose(2, 0, 1), dtype=np.float32)
    if W.ndim != 2:
        return None
    side = math.isqrt(W.shape[0])
    if side * side != W.shape[0]:
        return None
    units = W[:, :PREVIEW_UNITS].T  # (units, n_in)
    return np.ascontiguousarray(units.reshape(len(units), side, side), dtype=np.float32)


def whole_epochs(history: list[dict], epochs_done: int) -> list[dict]:
    """The records of a model's finished epochs only: a stopped run's part-epoch is trained again
    when it continues (its epoch is not booked), so its records would draw the curve twice."""
    return [h for h in history if int(h.get("epoch", 0)) <= epochs_done]


class _Link:
    """The child's end of the pipe: a send after the parent has gone sets ``gone`` instead of raising."""

    def __init__(self, conn) -> None:
        self.conn, self.gone = conn, False

    def send(self, message: tuple) -> None:
        if self.gone:
            return
        try:
            self.conn.send(message)
        except (BrokenPipeError, EOFError, ConnectionError):
            self.gone = True

    def close(self) -> None:
        self.conn.close()


ORPHAN_NOTE = (
    "The server stopped unexpectedly (it was killed) while this run trained, so the run stopped "
    "there and was scored as it was."
)


def _reported(link: _Link, work: Callable[[], tuple], keep_if_orphaned: dict[str, Any] | None = None) -> None:
    """Send ``work()``'s final message, or an error message for any exception; close the pipe.

    A result the parent is no longer there to receive goes to ``keep_if_orphaned``'s store.
    """
    started = time.time()
    try:
        final = work()
    except Exception as e:  # every other ending is reported, never silent
        message = str(e) or type(e).__name__
        if not isinstance(e, (ValueError, MnistError, ModelFileError, OSError, MemoryError)):
            message = f"{type(e).__name__}: {message}\n{traceback.format_exc(limit=3)}"
        elif isinstance(e, MemoryError):
            message = "the training process ran out of memory"
        final = ("error", message)
    link.send(final)
    if link.gone and keep_if_orphaned is not None and final[0] == "result":
        keep_orphaned_result(keep_if_orphaned, final[1], started)
    link.close()


def keep_orphaned_result(keep: dict[str, Any], result: Result, started: float) -> Path | None:
    """Write a run whose server has gone into that server's run store, as the server would have.

    ``keep``: ``{"store": RunStore.settings(), "user": id, "run_id": id, "facts": {number, name,
    kind, based_on, based_on_id, created}}`` (``runs.RunRegistry`` fills it). The file's path, or
    None if it could not be written (the run is then lost, as it was before the store).
    """
    facts = dict(
        keep["facts"],
        status="stopped" if result.stopped else "done",
        note=ORPHAN_NOTE if result.stopped else None,
        started=started,
        finished_at=time.time(),
        tuning=result.tuning,
        kept=None,
    )
    data = run_file_bytes(facts, result.model_bytes, result.evaluation, result.mistake_images, result.mistake_labels)
    try:
        return RunStore(**keep["store"]).save(keep["user"], keep["run_id"], data)
    except (OSError, ValueError, TypeError):
        return None


def train_in_child(
    config_dict: dict[str, Any],
    mnist_dir: str,
    conn,
    stop_event,
    source: str,
    run_event=None,
    base_model_bytes: bytes | None = None,
    max_pause_seconds: float = MAX_PAUSE_SECONDS,
    preview_seconds: float | None = PREVIEW_SECONDS,
    keep_if_orphaned: dict[str, Any] | None = None,
) -> None:
    """The child's whole life; see the module docstring. ``conn`` is the sending end of a Pipe.

    ``run_event`` (optional): cleared by the parent to pause. ``base_model_bytes``: train
    ``config.epochs`` more epochs of this model instead of a fresh network. ``preview_seconds``:
    the least time between two weights previews (None: send none; benchmarks compare).
    ``keep_if_orphaned``: where to store the run if the parent goes away (``keep_orphaned_result``).
    """
    _own_session()
    link = _Link(conn)
    controls = _Controls(link, stop_event, run_event, max_pause_seconds)
    config = TrainConfig.from_dict(config_dict)
    _reported(
        link,
        lambda: _train(config, mnist_dir, link, controls, source, base_model_bytes, preview_seconds),
        keep_if_orphaned,
    )


HELD_OUT_FRACTION = 1 / 3  # of each digit's examples (3 of a digit: 1 tested, 2 taught)
HELD_OUT_SEED = 0


def fine_tune_in_child(
    base_model_bytes: bytes,
    inputs: np.ndarray,
    labels: np.ndarray,
    mnist_dir: str,
    conn,
    stop_event,
    run_event=None,
    options: dict[str, Any] | None = None,
    max_pause_seconds: float = MAX_PAUSE_SECONDS,
    keep_if_orphaned: dict[str, Any] | None = None,
) -> None:
    """A fine-tune's whole life (module docstring): ``inputs`` (n, 784) float32, ``labels`` (n,)."""
    _own_session()
    link = _Link(conn)
    controls = _Controls(link, stop_event, run_event, max_pause_seconds)
    tune_options = FineTuneOptions.from_dict(options or {})
    _reported(
        link,
        lambda: _fine_tune(base_model_bytes, inputs, labels, mnist_dir, link, controls, tune_options),
        keep_if_orphaned,
    )


def _fine_tune(
    base_bytes: bytes,
    inputs: np.ndarray,
    labels: np.ndarray,
    mnist_dir: str,
    link: _Link,
    controls: _Controls,
    options: FineTuneOptions,
) -> tuple:
    data = load_mnist(mnist_dir, download=False, progress=False)
    base = model_from_bytes(base_bytes)  # the safe loader, in the child too
    X, y = np.asarray(inputs, np.float32), np.asarray(labels, np.int64)
    train_idx, held_idx = split_held_out(y, HELD_OUT_FRACTION, HELD_OUT_SEED)
    if not len(held_idx):
        note = (
            "Too few digits to keep some aside for testing (fewer than 2 of each digit): all "
            f"{len(y)} were used to teach it, so there are no before/after figures on your own digits."
        )
        link.send(("note", note))
    link.send(("status", TRAINING))
    began = controls.clock()

    def progress(fraction: float) -> None:
        link.send(("progress", tuning_record(fraction, options.steps, controls.clock() - began)))

    held = (X[held_idx], y[held_idx]) if len(held_idx) else None
    tuned = fine_tune(
        base, X[train_idx], y[train_idx], options=options, rehearsal=(data.X_train, data.y_train), held_out=held,
        test=(data.X_test, data.y_test), progress=progress, stop=controls.stop_requested,
    )  # fmt: skip
    record = tuned.fine_tune_ or {}
    figures = record.get("figures", {})
    flipped: dict[str, list[int]] = {"wrong_to_right": [], "right_to_wrong": []}
    if held is not None:
        right_before = base.predict(held[0]) == held[1]
        right_after = tuned.predict(held[0]) == held[1]
        flipped = {
            "wrong_to_right": held_idx[~right_before & right_after].tolist(),
            "right_to_wrong": held_idx[right_before & ~right_after].tolist(),
        }
    tuning = {
        "held_out_before": figures.get("held_out_before"),
        "held_out_after": figures.get("held_out_after"),
        "mnist_before": figures.get("test_before"),
        "mnist_after": figures.get("test_after"),
        "flipped": flipped,
        "n_train": int(len(train_idx)),
        "n_held_out": int(len(held_idx)),
    }
    result = Result(model_to_bytes(tuned), None, None, None, bool(record.get("stopped")), tuning)
    return ("result", result)


def tuning_record(fraction: float, steps: int, elapsed: float) -> dict[str, Any]:
    """A fine-tune's progress as a progress record (one 'epoch' of ``steps`` batches): what
    ``fraction_done`` and the ETA read; its loss and accuracies are not measured (NaN)."""
    done = min(steps, max(0, round(fraction * steps)))
    eta = elapsed * (steps - done) / done if done else 0.0
    nan = float("nan")
    return Progress(
        kind="epoch" if done == steps else "batch", epoch=1, batch=done, batches_per_epoch=steps, epochs=1,
        loss=nan, train_acc=nan, val_acc=None, val_loss=None, samples_per_s=nan, elapsed=elapsed, eta=eta,
        stopped=False, diverged=False,
    ).to_dict()  # fmt: skip


class _Controls:
    """The child's side of stop and pause, asked after every batch; keeps the training clock."""

    def __init__(self, link: _Link, stop_event, run_event, max_pause_seconds: float) -> None:
        self.link, self.stop_event, self.run_event = link, stop_event, run_event
        self.max_pause_seconds = max_pause_seconds
        self.paused_seconds = 0.0

    def clock(self) -> float:
        """Seconds of work: a perf_counter that stands still while paused."""
        return time.perf_counter() - self.paused_seconds

    def stop_requested(self) -> bool:
        """Whether to stop now (asked, or the parent has gone); first waits (no CPU) while paused."""
        if self.link.gone:
            return True
        if self.run_event is not None and not self.run_event.is_set() and not self.stop_event.is_set():
            self._wait_while_paused()
        return self.stop_event.is_set() or self.link.gone

    def _pause_left(self, began: float) -> float:
        return max(0.01, self.max_pause_seconds - (time.perf_counter() - began))

    def _wait_while_paused(self) -> None:
        began = time.perf_counter()
        self.link.send(("status", PAUSED))
        # The parent's stop() sets the run event too, so a stop ends the wait at once.
        while not self.run_event.wait(min(HEARTBEAT_SECONDS, self._pause_left(began))):
            waited = time.perf_counter() - began
            if waited >= self.max_pause_seconds:
                minutes = self.max_pause_seconds / 60
                self.link.send(("note", f"Paused for more than {minutes:g} minutes, so it was stopped there."))
                self.stop_event.set()
                break
            self.link.send(("paused", waited))  # how a paused child finds out that its parent has gone
            if self.link.gone:
                break
        self.paused_seconds += time.perf_counter() - began
        if not self.stop_event.is_set():
            self.link.send(("status", TRAINING))


def _train(
    config: TrainConfig,
    mnist_dir: str,
    link: _Link,
    controls: _Controls,
    source: str,
    base: bytes | None,
    preview_seconds: float | None,
) -> tuple:
    """Train and evaluate; the final message to send."""
    started = controls.clock()
    data = load_mnist(mnist_dir, download=False, progress=False)
    link.send(("status", TRAINING))
    info: dict[str, Any] = {}
    if base is None:
        model = MLP(config).initialize()
    else:
        model = model_from_bytes(base)
        model.history_ = whole_epochs(model.history_, model.epochs_done_)
        if config.optimizer != model.config.optimizer:
            model.optimizer_state_ = {}  # another optimiser's state means nothing to this one
        info["continued_from_epoch"] = model.epochs_done_
        model.config = config
    diverged: dict[str, Any] | None = None
    stopped = False
    last_preview = controls.clock()
    if preview_seconds is not None:
        link.send(("weights", weights_preview(model.params_)))

    def should_stop() -> bool:
        return diverged is not None or controls.stop_requested()

    for record in model.iter_fit(data.X_train, data.y_train, stop=should_stop, clock=controls.clock):
        link.send(("progress", record.to_dict()))
        if record.diverged and diverged is None:
            diverged = record.to_dict()
        stopped = stopped or record.stopped
        if preview_seconds is not None and controls.clock() - last_preview >= preview_seconds:
            link.send(("weights", weights_preview(model.params_)))
            last_preview = controls.clock()
    if diverged is not None:
        return ("diverged", explain_divergence(diverged, config.optimizer, config.learning_rate))
    link.send(("status", EVALUATING))
    evaluation = evaluate(model, data.X_test, data.y_test)
    train_seconds = controls.clock() - started
    model.record_results(evaluation.accuracy, train_seconds, data.data_hash, source, stopped, **info)
    result = Result(
        model_bytes=model_to_bytes(model),
        evaluation=evaluation,
        mistake_images=data.X_test[evaluation.mistakes].copy(),
        mistake_labels=data.y_test[evaluation.mistakes].copy(),
        stopped=stopped,
    )
    return ("result", result)


# A run yields the CPU to people drawing: an answer is ~10 ms of server CPU that someone waits
# for, a training batch is not. Nice 10 weighs about a tenth of the server when both want a
# core and costs the run nothing while the server idles (benchmarks/load_test.py).
TRAINING_NICENESS = 10


def _own_session() -> None:
    """Leave the parent's session (no Ctrl-C from the server's terminal) and yield the CPU.

    Linux (with autogroup) shares the CPU between sessions first, and niceness only counts
    inside a session: the run's own session gets the niceness too, so it weighs less than the
    web server's whenever the server has work. The server still ends its runs when it exits
    (they are daemon processes).
    """
    try:
        os.setsid()
    except (AttributeError, OSError):  # not on this platform, or already a session leader
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, 0, TRAINING_NICENESS)
    except (AttributeError, OSError):
        pass
    try:  # Linux with autogroup only; elsewhere the process niceness is all there is
        with open("/proc/self/autogroup", "w") as f:
            f.write(str(TRAINING_NICENESS))
    except OSError:
        pass
