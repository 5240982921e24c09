"""The training process: what runs in the child that ``jobs.TrainingJob`` starts for one run.

``train_in_child`` loads MNIST itself (from the folder the parent found, checked against the
official hashes: nothing big is pickled across), trains, evaluates on the test set and sends
everything back through a one-way pipe as small messages, the model as the bytes of the safe
file format. It writes no files, so a child that is killed at any moment leaves nothing
behind. It stops after the current batch when the parent sets the stop event, or on its own
when the loss diverges. If the parent goes away, the next send fails and the child ends.
Non-goals: several runs per process, resuming a saved model, talking to any UI.

Messages, in order (each a tuple whose first item names it):
``("status", TRAINING | EVALUATING)``, ``("progress", record_dict)`` (many), then exactly one
final message: ``("result", Result)``, ``("diverged", explanation)`` or ``("error", message)``.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import TrainConfig
from .data import MnistError, load_mnist
from .history import explain_divergence
from .metrics import Evaluation, evaluate
from .model_io import ModelFileError, model_to_bytes
from .network import MLP

TRAINING, EVALUATING = "training", "evaluating"


@dataclass(frozen=True)
class Result:
    """What a finished (or stopped) run sends back. ``mistake_images``: (m, 784) uint8 test digits."""

    model_bytes: bytes
    evaluation: Evaluation
    mistake_images: np.ndarray
    mistake_labels: np.ndarray
    stopped: bool


def train_in_child(config_dict: dict[str, Any], mnist_dir: str, conn, stop_event, source: str) -> None:
    """The child's whole life; see the module docstring. ``conn`` is the sending end of a Pipe."""
    _own_session()
    try:
        conn.send(_train(TrainConfig.from_dict(config_dict), mnist_dir, conn, stop_event, source))
    except (BrokenPipeError, EOFError, ConnectionError):
        return  # the parent is gone: nobody is left to tell
    except Exception as e:  # every other ending is reported, never silent
        message = str(e) or type(e).__name__
        if not isinstance(e, (ValueError, MnistError, ModelFileError, OSError, MemoryError)):
            message = f"{type(e).__name__}: {message}\n{traceback.format_exc(limit=3)}"
        elif isinstance(e, MemoryError):
            message = "the training process ran out of memory"
        try:
            conn.send(("error", message))
        except (BrokenPipeError, EOFError, ConnectionError):
            return
    finally:
        conn.close()


def _train(config: TrainConfig, mnist_dir: str, conn, stop_event, source: str) -> tuple:
    """Train and evaluate; the final message to send."""
    started = time.time()
    data = load_mnist(mnist_dir, download=False, progress=False)
    conn.send(("status", TRAINING))
    model = MLP(config)
    diverged: dict[str, Any] | None = None
    stopped = False

    def should_stop() -> bool:
        return diverged is not None or stop_event.is_set()

    for record in model.iter_fit(data.X_train, data.y_train, stop=should_stop):
        conn.send(("progress", record.to_dict()))
        if record.diverged and diverged is None:
            diverged = record.to_dict()
        stopped = stopped or record.stopped
    if diverged is not None:
        return ("diverged", explain_divergence(diverged, config.optimizer, config.learning_rate))
    conn.send(("status", EVALUATING))
    evaluation = evaluate(model, data.X_test, data.y_test)
    model.record_results(evaluation.accuracy, time.time() - started, data.data_hash, source, stopped)
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
