"""The training loop, as a generator the caller drives.

``iter_training`` yields progress records (every ``config.log_every`` batches and at
each epoch's end) and stops cleanly at the next batch when ``stop()`` returns true.
The CLI prints the records with a progress bar; the train page charts them. Reads
top to bottom: shuffle, (augment), forward, backward, step, log, evaluate, stop.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from dataclasses import asdict, dataclass
from collections.abc import Callable, Iterator

import numpy as np
from threadpoolctl import ThreadpoolController

from .augment import augment_batch
from .data import stratified_split
from .network import MLP, as_input, loss_and_grads, uint8_to_float
from .optim import make_optimizer


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
        total = self.epochs * self.batches_per_epoch
        return ((self.epoch - 1) * self.batches_per_epoch + self.batch) / max(total, 1)

    def to_dict(self) -> dict:
        return asdict(self)


def accuracy_and_loss(model: MLP, X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of model on (X, y)."""
    p = model.predict_proba(X).astype(np.float64)
    acc = float(np.mean(p.argmax(axis=1) == y))
    loss = float(-np.mean(np.log(np.maximum(p[np.arange(len(y)), y], 1e-12))))
    return acc, loss


def prepare_data(X, y, X_val, y_val, config) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Subset (config.n_train) and split off a stratified validation set if none is given.

    uint8 training images stay uint8 (a quarter of float32's memory and of the bytes each
    batch gathers); the loop scales every batch to [0, 1] as it goes.
    """
    X, y = np.asarray(X), np.asarray(y)
    if len(X) != len(y):
        raise ValueError(f"X has {len(X)} images but y has {len(y)} labels")
    if len(y) == 0:
        raise ValueError("no training images")
    y = y.astype(np.int64)
    if y.min() < 0 or y.max() > 9:
        raise ValueError("labels must be digits 0-9")
    if config.n_train is not None and config.n_train < len(X):
        idx, _ = stratified_split(y, 1 - config.n_train / len(X), config.seed)
        X, y = X[idx], y[idx]
    if X_val is None and config.val_fraction > 0:
        tr, va = stratified_split(y, config.val_fraction, config.seed)
        X, y, X_val, y_val = X[tr], y[tr], X[va], y[va]
    Xf = as_input(X, keep_uint8=True)
    Xv = as_input(X_val) if X_val is not None else None
    yv = np.asarray(y_val).astype(np.int64) if y_val is not None else None
    if config.val_max is not None and Xv is not None:
        Xv, yv = Xv[: config.val_max], yv[: config.val_max]
    return Xf, y, Xv, yv


def iter_training(model: MLP, X, y, X_val=None, y_val=None,
                  stop: Callable[[], bool] | None = None) -> Iterator[Progress]:
    """Train ``model`` in place according to ``model.config``, yielding Progress records.

    A model that already has ``params_`` (e.g. loaded from a file) resumes: its weights,
    optimizer state and history carry on, and ``config.epochs`` more epochs are run.
    BLAS uses ``config.threads`` threads while training computes (None: leave it as is);
    the caller gets its own setting back at every yield.
    """
    steps = _training_steps(model, X, y, X_val, y_val, stop)
    threads = model.config.threads
    if threads is None:
        yield from steps
        return
    blas = ThreadpoolController()
    while True:
        with blas.limit(limits=threads, user_api="blas"):
            record = next(steps, None)
        if record is None:
            return
        yield record


def _training_steps(model: MLP, X, y, X_val, y_val, stop) -> Iterator[Progress]:
    """iter_training's loop, without the BLAS thread setting."""
    cfg = model.config
    X, y, X_val, y_val = prepare_data(X, y, X_val, y_val, cfg)
    if model.params_ is None:
        model.initialize(n_in=X.shape[1], n_out=10)
    done_before = model.epochs_done_
    optimizer = make_optimizer(cfg.optimizer, cfg.learning_rate * cfg.lr_decay ** done_before,
                               cfg.momentum)
    optimizer.state = {k: v.copy() for k, v in model.optimizer_state_.items()}
    # Per-run stream of randomness, derived from the seed and how far training has got,
    # so a resumed run does not replay the first run's shuffles.
    rng = np.random.default_rng([cfg.seed, done_before])
    n = len(X)
    bs = min(cfg.batch_size, n)
    batches = (n + bs - 1) // bs
    start = time.perf_counter()
    seen = 0
    for epoch in range(1, cfg.epochs + 1):
        order = rng.permutation(n)
        loss_sum = correct = count = 0.0
        for b in range(batches):
            idx = order[b * bs:(b + 1) * bs]
            xb, yb = np.take(X, idx, axis=0), y[idx]
            if xb.dtype == np.uint8:
                xb = uint8_to_float(xb)
            if cfg.augment:
                xb = augment_batch(xb, rng, cfg.max_shift, cfg.max_rotation, cfg.scale_range,
                                   cfg.stroke_change_prob, cfg.max_thicken)
            loss, grads, logits = loss_and_grads(model.params_, xb, yb, cfg.activation, cfg.l2)
            optimizer.step(model.params_, grads)
            loss_sum += loss * len(idx)
            correct += int(np.count_nonzero(logits.argmax(axis=1) == yb))
            count += len(idx)
            seen += len(idx)
            stopping = stop is not None and stop()
            last = b == batches - 1
            if (b + 1) % cfg.log_every == 0 or last or stopping:
                elapsed = time.perf_counter() - start
                rate = seen / elapsed if elapsed > 0 else 0.0
                remaining = (cfg.epochs - epoch) * n + (n - (b + 1) * bs)
                record = Progress(
                    kind="epoch" if last else "batch", epoch=done_before + epoch,
                    batch=b + 1, batches_per_epoch=batches,
                    epochs=done_before + cfg.epochs,
                    loss=loss_sum / count, train_acc=correct / count, val_acc=None, val_loss=None,
                    samples_per_s=rate, elapsed=elapsed,
                    eta=max(remaining, 0) / rate if rate else 0.0, stopped=stopping)
                if last and X_val is not None and len(X_val):
                    record.val_acc, record.val_loss = accuracy_and_loss(model, X_val, y_val)
                model.history_.append(record.to_dict())
                loss_sum = correct = count = 0.0
                if last:
                    # Book the finished epoch before yielding, so a caller that saves the
                    # model at an epoch record (or stops there) saves a consistent state.
                    model.epochs_done_ += 1
                    optimizer.learning_rate *= cfg.lr_decay
                model.optimizer_state_ = optimizer.state
                yield record
                if stopping:
                    return


def record_results(model: MLP, test_accuracy: float, train_seconds: float, data_hash: str,
                   source: str, stopped_early: bool, **info) -> None:
    """Write a finished run's metrics and provenance into the model, the same way for every caller.

    The last validation accuracy comes from the model's history; ``info`` adds keys such as
    the command line that trained it.
    """
    val = [h["val_acc"] for h in model.history_ if h.get("val_acc") is not None]
    model.metrics_ = {"test_accuracy": test_accuracy, "val_accuracy": val[-1] if val else None,
                      "train_seconds": round(train_seconds, 1)}
    model.data_hash_ = data_hash
    model.info_ = {**model.info_, "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
                   "source": source, **info, "stopped_early": stopped_early}
