"""The training loop, as a generator the caller drives, over plain state.

``run_training(config, state, X, y)`` trains the parameter dict in ``state`` with the pure
functions of ``functional``, yielding progress records (every ``config.log_every`` batches
and at each epoch's end), and stops cleanly at the next batch when ``stop()`` returns true.
Training time (a record's ``elapsed``, its rate and ETA) is read from ``clock``: a caller that
pauses a run inside ``stop()`` passes a clock that stands still while paused.
A batch whose loss diverges (NaN, or exploded: ``history.loss_diverged``) gets a record of its
own at once, flagged ``diverged``; the loop does not stop by itself, the caller decides (the
train page's job stops, the command line trains on as it always did).
It knows nothing of the MLP class: ``MLP.fit`` / ``MLP.iter_fit`` hand it their state.
Reads top to bottom: shuffle, (augment), forward, backward, step, log, evaluate, stop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike
from threadpoolctl import ThreadpoolController

from .augment import augment_batch
from .config import N_INPUTS, TrainConfig
from .data import as_input, as_labels, stratified_split, uint8_to_float
from .functional import Params, accuracy_and_loss, dense_layers, init_params, loss_and_grads
from .history import Progress, loss_diverged
from .optim import make_optimizer, state_problem


@dataclass
class TrainingState:
    """Everything a run changes, as plain data: what a saved file needs to resume.

    ``params`` None means "not initialised yet": the loop initialises it from the config's seed.
    The loop updates these objects in place and books each finished epoch before yielding it.
    """

    params: Params | None = None
    optimizer_state: dict[str, np.ndarray] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    epochs_done: int = 0


def initial_params(config: TrainConfig, n_in: int) -> Params:
    """The seeded starting weights for ``config`` (the same every time for the same seed).

    An MLP takes any ``n_in``; a layer spec's network reads the 784 pixels of a 28x28 image.
    """
    rng = np.random.default_rng(config.seed)
    if not config.layers:
        return init_params([n_in, *config.layer_sizes[1:]], config.activation, rng)
    if n_in != N_INPUTS:
        raise ValueError(f"layers {config.layers!r} read {N_INPUTS} pixels per image, got {n_in}")
    return init_params(config.layer_specs, config.activation, rng)


def prepare_data(
    X: ArrayLike, y: ArrayLike, X_val: ArrayLike | None, y_val: ArrayLike | None, config: TrainConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Subset (config.n_train) and split off a stratified validation set if none is given.

    uint8 training images stay uint8 (a quarter of float32's memory and of the bytes each
    batch gathers); the loop scales every batch to [0, 1] as it goes.
    """
    images, labels = np.asarray(X), as_labels(y)
    if len(images) != len(labels):
        raise ValueError(f"X has {len(images)} images but y has {len(labels)} labels")
    if len(labels) == 0:
        raise ValueError("no training images")
    if config.n_train is not None and config.n_train < len(images):
        idx, _ = stratified_split(labels, 1 - config.n_train / len(images), config.seed)
        images, labels = images[idx], labels[idx]
    val_images = np.asarray(X_val) if X_val is not None else None
    val_labels = as_labels(y_val) if y_val is not None else None
    if val_images is None and config.val_fraction > 0:
        tr, va = stratified_split(labels, config.val_fraction, config.seed)
        images, labels, val_images, val_labels = images[tr], labels[tr], images[va], labels[va]
    Xv = as_input(val_images) if val_images is not None else None
    if config.val_max is not None and Xv is not None and val_labels is not None:
        Xv, val_labels = Xv[: config.val_max], val_labels[: config.val_max]
    return as_input(images, keep_uint8=True), labels, Xv, val_labels


def run_training(
    config: TrainConfig,
    state: TrainingState,
    X: ArrayLike,
    y: ArrayLike,
    X_val: ArrayLike | None = None,
    y_val: ArrayLike | None = None,
    stop: Callable[[], bool] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Iterator[Progress]:
    """Train ``state`` according to ``config``, yielding Progress records.

    A state that already has ``params`` (e.g. from a saved model) resumes: its weights,
    optimizer state and history carry on, and ``config.epochs`` more epochs are run.
    BLAS uses ``config.threads`` threads while training computes (None: leave it as is);
    the caller gets its own setting back at every yield.
    """
    steps = _training_steps(config, state, X, y, X_val, y_val, stop, clock)
    if config.threads is None:
        yield from steps
        return
    blas = ThreadpoolController()
    while True:
        with blas.limit(limits=config.threads, user_api="blas"):
            record = next(steps, None)
        if record is None:
            return
        yield record


def _training_steps(
    cfg: TrainConfig,
    state: TrainingState,
    X,
    y,
    X_val,
    y_val,
    stop: Callable[[], bool] | None,
    clock: Callable[[], float],
) -> Iterator[Progress]:
    """run_training's loop, without the BLAS thread setting."""
    X, y, X_val, y_val = prepare_data(X, y, X_val, y_val, cfg)
    if state.params is None:
        state.params = initial_params(cfg, n_in=X.shape[1])
    params = state.params
    # An MLP's layers come from its weights (any n_in); a layer spec's from the config.
    layers = cfg.layer_specs if cfg.layers else dense_layers(params)
    problem = state_problem(cfg.optimizer, state.optimizer_state, params)
    if problem:
        raise ValueError(f"cannot resume training: {problem}")
    done_before = state.epochs_done
    optimizer = make_optimizer(cfg.optimizer, cfg.learning_rate * cfg.lr_decay**done_before, cfg.momentum)
    optimizer.state = state.optimizer_state  # updated in place, so the state is always current
    # Per-run stream of randomness, derived from the seed and how far training has got,
    # so a resumed run does not replay the first run's shuffles.
    rng = np.random.default_rng([cfg.seed, done_before])
    n = len(X)
    bs = min(cfg.batch_size, n)
    batches = (n + bs - 1) // bs
    start = clock()
    seen = 0
    first_loss: float | None = None
    diverged_before = False  # only the first diverging batch is flagged
    for epoch in range(1, cfg.epochs + 1):
        order = rng.permutation(n)
        loss_sum = correct = count = 0.0
        for b in range(batches):
            idx = order[b * bs : (b + 1) * bs]
            xb, yb = np.take(X, idx, axis=0), y[idx]
            if xb.dtype == np.uint8:
                xb = uint8_to_float(xb)
            if cfg.augment:
                xb = augment_batch(xb, rng, cfg, yb)
            # The run's rng draws the dropout masks too: seeded, and never at prediction.
            loss, grads, logits = loss_and_grads(params, xb, yb, cfg.activation, cfg.l2, layers, rng)
            optimizer.step(params, grads)
            loss_sum += loss * len(idx)
            correct += int(np.count_nonzero(logits.argmax(axis=1) == yb))
            count += len(idx)
            seen += len(idx)
            if first_loss is None:
                first_loss = loss
            diverging = not diverged_before and loss_diverged(loss, first_loss)
            diverged_before = diverged_before or diverging
            stopping = stop is not None and stop()
            last = b == batches - 1
            if (b + 1) % cfg.log_every == 0 or last or stopping or diverging:
                elapsed = clock() - start
                rate = seen / elapsed if elapsed > 0 else 0.0
                remaining = (cfg.epochs - epoch) * n + (n - (b + 1) * bs)
                record = Progress(
                    kind="epoch" if last else "batch",
                    epoch=done_before + epoch,
                    batch=b + 1,
                    batches_per_epoch=batches,
                    epochs=done_before + cfg.epochs,
                    loss=loss_sum / count,
                    train_acc=correct / count,
                    val_acc=None,
                    val_loss=None,
                    samples_per_s=rate,
                    elapsed=elapsed,
                    eta=max(remaining, 0) / rate if rate else 0.0,
                    stopped=stopping,
                    diverged=diverging,
                )
                if last and X_val is not None and y_val is not None and len(X_val):
                    record.val_acc, record.val_loss = accuracy_and_loss(params, X_val, y_val, cfg.activation, layers)
                state.history.append(record.to_dict())
                loss_sum = correct = count = 0.0
                if last:
                    # Book the finished epoch before yielding, so a caller that saves the
                    # model at an epoch record (or stops there) saves a consistent state.
                    state.epochs_done += 1
                    optimizer.learning_rate *= cfg.lr_decay
                yield record
                if stopping:
                    return
