"""Fine-tuning: teach a trained network one person's handwriting from a few of their digits.

``fine_tune(model, X, y)`` returns a new network (the one given is never changed) trained for a
few hundred small steps on batches that mix two things:

* the person's digits (``X`` (n, 784) from ``canvas_to_input``, ``y`` (n,)), each step seeing
  fresh augmented views of them (``augment.augment_batch``: small rotations, shifts, scale,
  stroke width and elastic bends; never the label-aware styles, which would teach the very
  shapes the benchmark's writers are made of), so 3 digits per class give hundreds of views;
* MNIST rehearsal (training images), so the network does not forget everyone else's digits.

Every parameter is also pulled towards its original value (an L2 penalty on the change,
``anchor``): the tuned network stays close to the one that was good on MNIST. The defaults were
chosen by measurement on synthetic writers built from MNIST *validation* digits, the 5,000 the
shipped model never trained on (``benchmarks/finetune_writers.py --pool validation --grid``;
README, "Teach it your handwriting"): Adam at 3e-4 with the pull at 1 kept the MNIST drop at
0.02 points (worst writer 0.23) for a 91% fall in the writers' error; without the pull the same
steps cost 0.49 points (worst 0.75), and a larger step, more steps, a weaker pull, augmented
or distilled rehearsal (``rehearsal_targets="base"``) were no better on both counts. Without
the personal views the error fell by 74% instead of 90%.

Each step runs ``functional.forward_trace`` and ``functional.backward`` over the model's own
layers (any MLP, any layer spec such as the CNN) and an ``optim`` optimiser, so nothing here
knows an MLP from a CNN. The returned model records what it was tuned on (``Network.fine_tune_``, saved in the
model file): digits per class, the base model's hash, the options, and before/after figures
when held-out data is given. Also here: ``split_held_out`` (a stratified split of a person's
digits), ``evaluate_digits``, ``accuracy_by_class`` and ``digit_flips`` (which digits a
fine-tune turned from wrong to right, and back).

Callbacks: ``progress(fraction_done)`` is called about 100 times per fine-tune; ``stop()``
is checked before every step, and when it returns true the fine-tune ends there and returns
the model as tuned so far (its record says ``stopped`` and how many steps were done). No
global state: safe to call from a thread or a child process. Non-goals: learning new classes,
tuning on thousands of digits (``MAX_PERSONAL_DIGITS``), GPUs.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from numbers import Integral, Real
from typing import Any

import numpy as np
from threadpoolctl import ThreadpoolController

from .augment import augment_batch
from .config import N_CLASSES, N_INPUTS, OPTIMIZERS, TrainConfig
from .data import as_input, uint8_to_float
from .digitset import MAX_DIGITS, DigitSet
from .functional import Params, accuracy_and_loss, backward, forward, forward_trace, softmax
from .metrics import confusion_matrix, per_class_accuracy
from .model_io import model_to_bytes
from .network import Network
from .optim import make_optimizer

MAX_PERSONAL_DIGITS = MAX_DIGITS  # one full digit set; more is training from scratch, not tuning
MAX_STEPS = 20_000
# "labels": rehearsal images are learnt with their MNIST labels; "base": with the base model's own
# probabilities for them (distillation, Li & Hoiem's "learning without forgetting"), which pins
# down what the network does on MNIST more tightly than a label it already gets right.
REHEARSAL_TARGETS = ("labels", "base")
MIN_REHEARSAL = 100  # fewer MNIST images than this cannot stand for "everyone else's digits"


@dataclass(frozen=True)
class FineTuneOptions:
    """How a fine-tune runs. Defaults chosen by measurement (module docstring; README).

    steps: optimiser steps; batch_size: images per step, of which ``personal_fraction`` are
    augmented personal digits and the rest MNIST rehearsal; learning_rate: Adam's step size
    (a tenth of training's 1e-3); anchor: strength of the L2 pull of every parameter towards
    its original value (0 = none); the augmentation ranges of the personal views
    (``max_rotation`` degrees, ``max_shift`` pixels, ``scale_range``, ``stroke_change_prob``,
    ``max_slant`` degrees, ``elastic_prob``); seed: all randomness; threads: BLAS threads.
    """

    steps: int = 300
    batch_size: int = 64
    personal_fraction: float = 0.5
    learning_rate: float = 3e-4
    optimizer: str = "adam"
    momentum: float = 0.9
    anchor: float = 1.0
    max_rotation: float = 10.0
    max_shift: float = 1.5
    scale_range: tuple[float, float] = (0.9, 1.1)
    stroke_change_prob: float = 0.5
    max_slant: float = 0.0
    elastic_prob: float = 0.3
    rehearsal_targets: str = "labels"
    augment_rehearsal: bool = False
    seed: int = 0
    threads: int | None = 1

    def __post_init__(self) -> None:
        if not isinstance(self.optimizer, str):
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.rehearsal_targets not in REHEARSAL_TARGETS:
            raise ValueError(f"rehearsal_targets must be one of {REHEARSAL_TARGETS}, got {self.rehearsal_targets!r}")
        if type(self.augment_rehearsal) is not bool:
            raise ValueError(f"augment_rehearsal must be true or false, got {self.augment_rehearsal!r}")
        for name in ("steps", "batch_size", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Integral):
                raise ValueError(f"{name} must be a whole number, got {value!r}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, Integral)):
            raise ValueError(f"threads must be a whole number or None, got {self.threads!r}")
        for name in (
            "personal_fraction",
            "learning_rate",
            "momentum",
            "anchor",
            "max_rotation",
            "max_shift",
            "stroke_change_prob",
            "max_slant",
            "elastic_prob",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
                raise ValueError(f"{name} must be a number, got {value!r}")
        try:
            lo, hi = (float(s) for s in self.scale_range)
        except (TypeError, ValueError):
            raise ValueError(f"scale_range must be two numbers, got {self.scale_range!r}") from None
        object.__setattr__(self, "scale_range", (lo, hi))
        checks = [
            (1 <= self.steps <= MAX_STEPS, f"steps must be 1..{MAX_STEPS}"),
            (2 <= self.batch_size <= 4096, "batch_size must be 2..4096"),
            (0 < self.personal_fraction <= 1, "personal_fraction must be in (0, 1]"),
            (0 < self.learning_rate <= 1, "learning_rate must be in (0, 1]"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}"),
            (0 <= self.momentum < 1, "momentum must be in [0, 1)"),
            (0 <= self.anchor <= 1000, "anchor must be in [0, 1000]"),
            (0 <= self.max_rotation <= 45, "max_rotation must be 0..45 degrees"),
            (0 <= self.max_shift <= 5, "max_shift must be 0..5 pixels"),
            (0.5 <= lo <= hi <= 2, "scale_range must be LO <= HI within [0.5, 2]"),
            (0 <= self.stroke_change_prob <= 1, "stroke_change_prob must be in [0, 1]"),
            (0 <= self.max_slant <= 45, "max_slant must be 0..45 degrees"),
            (0 <= self.elastic_prob <= 1, "elastic_prob must be in [0, 1]"),
            (0 <= self.seed < 2**63, "seed must be in 0..2**63-1"),
            (self.threads is None or 1 <= self.threads <= 64, "threads must be 1..64 (or None)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (the model file stores them)."""
        d = asdict(self)
        d["scale_range"] = list(self.scale_range)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FineTuneOptions:
        """Rebuild from ``to_dict()``'s dict; unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def augmentation(self) -> TrainConfig:
        """The ranges of the personal views as the TrainConfig ``augment.augment_batch`` reads."""
        return TrainConfig(
            augment=True,
            max_rotation=self.max_rotation,
            max_shift=self.max_shift,
            scale_range=self.scale_range,
            stroke_change_prob=self.stroke_change_prob,
            max_slant=self.max_slant,
            elastic_prob=self.elastic_prob,
        )


# --- checking what the caller gives -----------------------------------------------------------------


def _checked_digits(X, y, what: str, max_n: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(X (n, 784) float32 or uint8, y (n,) int64) or ValueError saying what is wrong with ``what``."""
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != N_INPUTS:
        raise ValueError(f"{what}: expected inputs of shape (n, {N_INPUTS}) (canvas_to_input's), got {X.shape}")
    y = np.asarray(y)
    if y.ndim != 1 or y.dtype.kind not in "iu" and not (y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0)):
        raise ValueError(f"{what}: labels must be a 1-D array of digits 0-9, got {y.dtype} of shape {y.shape}")
    if len(X) != len(y):
        raise ValueError(f"{what}: {len(X)} inputs but {len(y)} labels")
    if len(y) == 0:
        raise ValueError(f"{what}: no digits given")
    if max_n is not None and len(y) > max_n:
        raise ValueError(f"{what}: {len(y):,} digits; at most {max_n:,} can be used (a fine-tune, not a training)")
    if y.min() < 0 or y.max() >= N_CLASSES:
        raise ValueError(f"{what}: labels must be digits 0-9, found {y[(y < 0) | (y >= N_CLASSES)][0]}")
    try:
        X = as_input(X, keep_uint8=True)
    except ValueError as e:
        raise ValueError(f"{what}: {e}") from None
    return X, y.astype(np.int64)


def _checked_model(model) -> Network:
    if not isinstance(model, Network) or model.params_ is None:
        raise ValueError("fine_tune needs a trained model (load_model's or a fitted Network)")
    return model


def model_sha256(model: Network) -> str:
    """sha256 (hex) of the model's file bytes (``model_to_bytes``): names the base of a fine-tune."""
    return hashlib.sha256(model_to_bytes(model)).hexdigest()


# --- the steps ---------------------------------------------------------------------------------------


def mixed_batch(
    personal: np.ndarray,
    personal_labels: np.ndarray,
    order: np.ndarray,
    rehearsal: np.ndarray,
    rehearsal_labels: np.ndarray,
    rng: np.random.Generator,
    n_personal: int,
    n_rehearsal: int,
    views: TrainConfig,
    rehearsal_views: TrainConfig | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One step's batch: ``n_personal`` augmented personal digits, the next ones of ``order`` (their
    indices, a cycle of shuffles), then ``n_rehearsal`` random rehearsal images (augmented with
    ``rehearsal_views`` if given, else unchanged).

    personal: (n, 784) float32; rehearsal: (m, 784) uint8 or float32. Returns (X (b, 784) float32
    in [0, 1], y (b,) int64) with b = n_personal + n_rehearsal.
    """
    mine = augment_batch(personal[order], rng, views, personal_labels[order])
    parts, labels = [mine], [personal_labels[order]]
    if n_rehearsal:
        pick = rng.integers(0, len(rehearsal), n_rehearsal)
        others = rehearsal[pick]
        others = uint8_to_float(others) if others.dtype == np.uint8 else others
        if rehearsal_views is not None:
            others = augment_batch(others, rng, rehearsal_views, rehearsal_labels[pick])
        parts.append(others)
        labels.append(rehearsal_labels[pick])
    return np.concatenate(parts), np.concatenate(labels)


def soft_cross_entropy(logits: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(logits) against target distributions, and its gradient.

    logits, targets: (batch, k), each target row summing to 1 (a one-hot row is a label).
    Returns (loss, dlogits (batch, k)) with dlogits = (softmax(logits) - targets) / batch.
    Log-sum-exp keeps it exact when a probability underflows.
    """
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_sum = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    log_p = shifted - log_sum
    n = len(logits)
    loss = float(-np.sum(targets * log_p)) / n
    dlogits = np.exp(log_p)
    dlogits -= targets
    dlogits /= n
    return loss, dlogits.astype(logits.dtype, copy=False)


def step_targets(
    labels: np.ndarray, n_personal: int, original: Params, rehearsal_x: np.ndarray | None, activation: str, layers
) -> np.ndarray:
    """What each row of a batch is taught, (batch, 10) float32: one-hot labels, except that rehearsal
    rows (after the first ``n_personal``) get the base model's probabilities when ``rehearsal_x``
    (those rows' inputs) is given (distillation; dropout off, as the base would answer)."""
    targets = np.zeros((len(labels), N_CLASSES), np.float32)
    targets[np.arange(len(labels)), labels] = 1
    if rehearsal_x is not None and len(rehearsal_x):
        base_logits = forward(original, rehearsal_x, activation, layers)[0]
        targets[n_personal:] = softmax(base_logits.astype(np.float64))
    return targets


def anchor_pull(grads: Params, params: Params, original: Params, strength: float) -> None:
    """Add the gradient of 0.5 * strength * sum((p - p0)^2) over every parameter, in place:
    grads[k] += strength * (params[k] - original[k]). Shapes as the parameters."""
    if strength == 0:
        return
    for k, g in grads.items():
        g += strength * (params[k] - original[k])


class ShuffleCycle:
    """Indices 0..n-1 in an endless sequence of fresh shuffles, ``take(k)`` at a time: every
    personal digit is seen equally often, in a new order each pass."""

    def __init__(self, n: int, rng: np.random.Generator) -> None:
        self.n, self.rng = n, rng
        self.current = rng.permutation(n)
        self.position = 0

    def take(self, k: int) -> np.ndarray:
        out = np.empty(k, np.int64)
        filled = 0
        while filled < k:
            if self.position == self.n:
                self.current, self.position = self.rng.permutation(self.n), 0
            part = self.current[self.position : self.position + k - filled]
            out[filled : filled + len(part)] = part
            filled += len(part)
            self.position += len(part)
        return out


# --- the whole fine-tune -----------------------------------------------------------------------------


def fine_tune(
    model: Network,
    X,
    y,
    *,
    options: FineTuneOptions | None = None,
    rehearsal: tuple[np.ndarray, np.ndarray] | None = None,
    held_out: tuple[np.ndarray, np.ndarray] | None = None,
    test: tuple[np.ndarray, np.ndarray] | None = None,
    progress: Callable[[float], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> Network:
    """A copy of ``model`` tuned to the handwriting of the digits X (n, 784) in [0, 1]
    (``canvas_to_input``'s), labelled y (n,) 0-9; ``model`` itself is not changed.

    rehearsal: MNIST images (m, 784) uint8 or float in [0, 1] and labels (m,) to mix in (the
    training images; None loads them with ``load_mnist``). held_out: some of the person's digits
    kept out of X; test: e.g. MNIST test; for each given, the accuracy before and after goes in
    the record (``fine_tune_["figures"]``), and ``test``'s after-figure becomes the model's
    ``metrics_["test_accuracy"]`` (without ``test`` that metric is cleared: it was the base's).
    progress(fraction_done in [0, 1]) ~100 times; stop() before each step: true ends the
    fine-tune there and returns the model tuned so far (record: stopped, steps_done). The
    record's ``seconds`` include scoring ``held_out`` and ``test`` before and after.

    Raises ValueError for an unfitted model, inputs not (n, 784), NaN or values outside [0, 1],
    labels outside 0-9, no digits, or more than MAX_PERSONAL_DIGITS. Classes with no personal
    digits are not taught, only rehearsed.
    """
    opts = options or FineTuneOptions()
    base = _checked_model(model)
    X, y = _checked_digits(X, y, "personal digits", MAX_PERSONAL_DIGITS)
    X = as_input(X)  # personal digits as float32 (uint8 is scaled once)
    n_rehearsal = opts.batch_size - max(1, round(opts.batch_size * opts.personal_fraction))
    if rehearsal is None and n_rehearsal:
        from .data import load_mnist  # only when needed: reading MNIST takes a second

        data = load_mnist(progress=False)
        rehearsal = (data.X_train, data.y_train)
    R, Ry = (
        _checked_digits(*rehearsal, "rehearsal images", None)
        if n_rehearsal and rehearsal is not None
        else (np.zeros((0, N_INPUTS), np.float32), np.zeros(0, np.int64))
    )
    if n_rehearsal and len(Ry) < MIN_REHEARSAL:
        raise ValueError(f"rehearsal images: {len(Ry)} given; at least {MIN_REHEARSAL} are needed")
    checked_held = _checked_digits(*held_out, "held-out digits", None) if held_out is not None else None
    checked_test = _checked_digits(*test, "test images", None) if test is not None else None

    start = time.perf_counter()
    blas = ThreadpoolController()
    with blas.limit(limits=opts.threads, user_api="blas") if opts.threads else nullcontext():
        figures: dict[str, float | int | None] = {}
        for name, data_xy in (("held_out", checked_held), ("test", checked_test)):
            if data_xy is not None:
                figures[f"{name}_n"] = len(data_xy[1])
                figures[f"{name}_before"] = _accuracy(base, base.params_, data_xy)
        params, steps_done, stopped = _tune(base, X, y, R, Ry, opts, n_rehearsal, progress, stop)
        for name, data_xy in (("held_out", checked_held), ("test", checked_test)):
            if data_xy is not None:
                figures[f"{name}_after"] = _accuracy(base, params, data_xy)
    seconds = time.perf_counter() - start
    tuned = Network.from_state({**base.state_dict(), "params": params, "optimizer_state": {}})
    tuned.metrics_ = {
        "test_accuracy": figures.get("test_after"),
        "val_accuracy": None,
        "train_seconds": round(seconds, 1),
    }
    tuned.info_ = {
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": "fine-tuned on personal digits",
        "stopped_early": stopped,
    }
    tuned.fine_tune_ = {
        "base_sha256": model_sha256(base),
        "personal_counts": np.bincount(y, minlength=N_CLASSES).tolist(),
        "options": opts.to_dict(),
        "steps_done": steps_done,
        "stopped": stopped,
        "seconds": round(seconds, 2),
        "tuned_at": tuned.info_["trained_at"],
        "figures": figures,
    }
    if progress is not None:
        progress(1.0)
    return tuned


def _accuracy(model: Network, params: Params | None, data: tuple[np.ndarray, np.ndarray]) -> float:
    assert params is not None
    X, y = data
    return accuracy_and_loss(params, as_input(X), y, model.activation, model.layers)[0]


def _tune(
    base: Network,
    X: np.ndarray,
    y: np.ndarray,
    R: np.ndarray,
    Ry: np.ndarray,
    opts: FineTuneOptions,
    n_rehearsal: int,
    progress: Callable[[float], None] | None,
    stop: Callable[[], bool] | None,
) -> tuple[Params, int, bool]:
    """The loop: mixed batch, its targets, forward and backward through the model's layers, the pull,
    an optimiser step.
    Returns (the tuned parameters, steps done, whether stop() ended it)."""
    assert base.params_ is not None
    original = base.params_
    params = {k: v.copy() for k, v in original.items()}  # the base model's arrays are never written
    layers, activation = base.layers, base.activation
    optimizer = make_optimizer(opts.optimizer, opts.learning_rate, opts.momentum)
    rng = np.random.default_rng(opts.seed)
    views = opts.augmentation()
    # The base's own augmentation, if it was trained with one: its rehearsal views then look like its training.
    rehearsal_views = base.config if opts.augment_rehearsal and base.config.augment else None
    distill = opts.rehearsal_targets == "base"
    n_personal = opts.batch_size - n_rehearsal
    cycle = ShuffleCycle(len(y), rng)
    report_every = max(1, opts.steps // 100)
    for step in range(opts.steps):
        if stop is not None and stop():
            return params, step, True
        order = cycle.take(n_personal)
        xb, yb = mixed_batch(X, y, order, R, Ry, rng, n_personal, n_rehearsal, views, rehearsal_views)
        targets = step_targets(yb, n_personal, original, xb[n_personal:] if distill else None, activation, layers)
        # Forward beside backward; the rng draws dropout masks (a CNN's dropout is on while tuning).
        logits, trace = forward_trace(params, xb, activation, layers, rng)
        _, dlogits = soft_cross_entropy(logits, targets)
        grads = backward(params, trace, dlogits, activation, 0.0, layers)
        anchor_pull(grads, params, original, opts.anchor)
        optimizer.step(params, grads)
        if progress is not None and (step + 1) % report_every == 0:
            progress((step + 1) / opts.steps)
    return params, opts.steps, False


# --- a person's digits: splitting and scoring ------------------------------------------------------


def split_held_out(labels, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split of a person's digits: (train_idx, held_idx), sorted int64 indices.

    Each class gives round(count * fraction) digits to the held-out part, but always keeps at
    least one for training (a class with one digit is all training). fraction in [0, 1).
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or (labels.size and (labels.dtype.kind not in "iu" or labels.min() < 0)):
        raise ValueError("labels must be a 1-D array of digits 0-9")
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction!r}")
    rng = np.random.default_rng(seed)
    train, held = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_held = min(int(round(len(idx) * fraction)), len(idx) - 1)
        held.append(idx[:n_held])
        train.append(idx[n_held:])
    empty = np.zeros(0, np.int64)
    return (
        np.sort(np.concatenate(train or [empty])).astype(np.int64),
        np.sort(np.concatenate(held or [empty])).astype(np.int64),
    )


def evaluate_digits(model: Network, ds: DigitSet) -> float:
    """Accuracy of ``model`` on a digit set (NaN for an empty set)."""
    if len(ds) == 0:
        return float("nan")
    return float(np.mean(model.predict(ds.inputs) == ds.labels))


def accuracy_by_class(model: Network, ds: DigitSet) -> np.ndarray:
    """(10,) float64 accuracy per true digit on a digit set; NaN for a digit the set lacks."""
    predicted = model.predict(ds.inputs) if len(ds) else np.zeros(0, np.int64)
    return per_class_accuracy(confusion_matrix(ds.labels, predicted))


def digit_flips(before: Network, after: Network, ds: DigitSet) -> tuple[np.ndarray, np.ndarray]:
    """Which of a set's digits changed between two models: (wrong_to_right, right_to_wrong),
    sorted int64 indices into ``ds`` (e.g. the base model and its fine-tuned copy, on held-out digits)."""
    if len(ds) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    right_before = before.predict(ds.inputs) == ds.labels
    right_after = after.predict(ds.inputs) == ds.labels
    return (
        np.flatnonzero(~right_before & right_after).astype(np.int64),
        np.flatnonzero(right_before & ~right_after).astype(np.int64),
    )


__all__ = [
    "MAX_PERSONAL_DIGITS",
    "FineTuneOptions",
    "accuracy_by_class",
    "anchor_pull",
    "digit_flips",
    "evaluate_digits",
    "fine_tune",
    "mixed_batch",
    "ShuffleCycle",
    "soft_cross_entropy",
    "step_targets",
    "model_sha256",
    "split_held_out",
]
