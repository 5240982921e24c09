"""Network: a layered classifier with a softmax output, scikit-learn-like; ``MLP`` is its old name.

One class for every architecture, because an MLP is a network of dense layers: the config's
``layers`` spec (e.g. the ``cnn`` preset) or, when empty, its ``hidden_sizes`` say which layers.
Keeping one class (``MLP`` is the same class) means every caller that loads, saves, shows or
calibrates a model handles CNNs unchanged. Hyperparameters live in a TrainConfig; learned state
lives in ``params_`` (a dict ``{"W1": ..., "b1": ..., ...}``, one pair per conv or dense layer),
set by ``fit`` or rebuilt by ``from_state`` from a saved file's dict. The maths is in
``functional`` and ``layers``, the loop in ``train``; this class is where they meet.
Non-goals: GPUs, autograd.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .architecture import Layer, is_mlp
from .config import N_INPUTS, TrainConfig
from .data import as_input
from .functional import (
    LayerOutput,
    Params,
    dense_layers,
    input_gradient,
    layer_outputs,
    logits_in_chunks,
    param_layer_sizes,
    softmax,
)
from .history import Progress
from .train import TrainingState, initial_params, run_training


class Network:
    """A classifier of (n, 784) images by a chain of layers, with a softmax output.

    >>> model = MLP(hidden_sizes=(128, 64), activation="relu", epochs=5).fit(X, y)
    >>> cnn = Network(layers="cnn", activation="relu", epochs=1).fit(X, y)
    >>> model.predict_proba(X[:3]).sum(axis=1)   # -> [1., 1., 1.]
    """

    def __init__(self, config: TrainConfig | None = None, **hyperparameters: Any) -> None:
        self.config = replace(config or TrainConfig(), **hyperparameters)
        self.params_: Params | None = None
        self.history_: list[dict] = []
        self.metrics_: dict[str, Any] = {}
        self.optimizer_state_: dict[str, np.ndarray] = {}
        self.data_hash_: str | None = None
        self.epochs_done_: int = 0
        self.info_: dict[str, Any] = {}  # free-form provenance (how it was made, when)
        self.fine_tune_: dict[str, Any] | None = None  # what it was fine-tuned on (finetune.fine_tune), if it was

    # --- structure -----------------------------------------------------------------
    @property
    def activation(self) -> str:
        return self.config.activation

    @property
    def layers(self) -> tuple[Layer, ...]:
        """The layers: the config's spec, or for an MLP the dense layers its weights describe."""
        if self.params_ is not None and not self.config.layers:
            return dense_layers(self.params_)
        return self.config.layer_specs

    @property
    def is_mlp(self) -> bool:
        return is_mlp(self.layers)

    @property
    def layer_sizes(self) -> list[int]:
        """[n_in, h1, ..., 10] for an MLP; for other layers, the values each layer outputs per image."""
        if self.params_ is not None and not self.config.layers:
            return param_layer_sizes(self.params_)
        return self.config.layer_sizes

    @property
    def architecture(self) -> str:
        """Short text for people: ``784→128→64→10``, or the layer spec."""
        return "→".join(map(str, self.layer_sizes)) if not self.config.layers else self.config.architecture

    def initialize(self, n_in: int = N_INPUTS) -> Network:
        """Seeded starting weights from the config (what ``fit`` starts from)."""
        self.params_ = initial_params(self.config, n_in)
        return self

    def _fitted_params(self) -> Params:
        if self.params_ is None:
            raise ValueError("this network is not fitted yet: call fit() or load a model")
        return self.params_

    # --- state: what a model file holds ----------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild or resume this model, as plain data and arrays."""
        params = self._fitted_params()
        return {
            "layers": self.config.layers,
            "layer_sizes": [int(s) for s in self.layer_sizes],
            "activation": self.activation,
            "params": {k: np.ascontiguousarray(v) for k, v in params.items()},
            "config": self.config.to_dict(),
            "history": list(self.history_),
            "metrics": dict(self.metrics_),
            "data_hash": self.data_hash_,
            "optimizer_state": {k: np.asarray(v) for k, v in self.optimizer_state_.items()},
            "epochs_done": int(self.epochs_done_),
            "info": dict(self.info_),
            "fine_tune": None if self.fine_tune_ is None else dict(self.fine_tune_),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Network:
        """Rebuild a model from ``state_dict()``'s dict (already validated by the loader).

        ``config`` may be a TrainConfig or its dict; every key but ``params`` is optional.
        """
        config = state.get("config")
        if not isinstance(config, TrainConfig):
            config = TrainConfig.from_dict(config or {})
        model = cls(config)
        model.params_ = {k: np.ascontiguousarray(v) for k, v in state["params"].items()}
        model.history_ = list(state.get("history") or [])
        model.metrics_ = dict(state.get("metrics") or {})
        model.info_ = dict(state.get("info") or {})
        model.data_hash_ = state.get("data_hash")
        model.epochs_done_ = int(state.get("epochs_done") or 0)
        model.optimizer_state_ = dict(state.get("optimizer_state") or {})
        tuned = state.get("fine_tune")
        model.fine_tune_ = None if tuned is None else dict(tuned)
        return model

    def record_results(
        self, test_accuracy: float, train_seconds: float, data_hash: str, source: str, stopped_early: bool, **info: Any
    ) -> None:
        """Write a finished run's metrics and provenance, the same way for every caller.

        The last validation accuracy comes from the history; ``info`` adds keys such as the
        command line that trained it.
        """
        val = [h["val_acc"] for h in self.history_ if h.get("val_acc") is not None]
        self.metrics_ = {
            "test_accuracy": test_accuracy,
            "val_accuracy": val[-1] if val else None,
            "train_seconds": round(train_seconds, 1),
        }
        self.data_hash_ = data_hash
        self.info_ = {
            **self.info_,
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "source": source,
            **info,
            "stopped_early": stopped_early,
        }

    # --- scikit-learn-like API -----------------------------------------------------
    def iter_fit(
        self,
        X: ArrayLike,
        y: ArrayLike,
        X_val: ArrayLike | None = None,
        y_val: ArrayLike | None = None,
        stop: Callable[[], bool] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> Iterator[Progress]:
        """Train for config.epochs on (X, y), yielding Progress records (see ``train.run_training``).

        The model is up to date at every yield (an epoch record's epoch is already booked),
        so a caller may save it there. A fitted model resumes where it left off.
        """
        state = TrainingState(self.params_, self.optimizer_state_, self.history_, self.epochs_done_)
        try:
            for record in run_training(self.config, state, X, y, X_val, y_val, stop=stop, clock=clock):
                self._take(state)
                yield record
        finally:
            self._take(state)

    def _take(self, state: TrainingState) -> None:
        self.params_, self.optimizer_state_ = state.params, state.optimizer_state
        self.history_, self.epochs_done_ = state.history, state.epochs_done

    def fit(
        self,
        X: ArrayLike,
        y: ArrayLike,
        X_val: ArrayLike | None = None,
        y_val: ArrayLike | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> Network:
        """Train for config.epochs on (X, y); returns self."""
        for _ in self.iter_fit(X, y, X_val, y_val, stop=stop):
            pass
        return self

    def logits(self, X: ArrayLike) -> np.ndarray:
        """Raw scores (n, 10) for images (n, 784) in [0, 1] (or uint8)."""
        params = self._fitted_params()
        X = self._inputs(X)
        return logits_in_chunks(params, X, self.activation, layers=self.layers)

    def _inputs(self, X: ArrayLike) -> np.ndarray:
        X = as_input(X)
        params = self._fitted_params()
        n_in = params["W1"].shape[0] if params["W1"].ndim == 2 and self.is_mlp else N_INPUTS
        if X.shape[1] != n_in:
            raise ValueError(f"expected {n_in} features per image, got {X.shape[1]}")
        return X

    # --- looking inside ---------------------------------------------------------------
    def layer_outputs(self, X: ArrayLike) -> list[LayerOutput]:
        """Each layer's name, kind and output for images (n, 784) (``functional.layer_outputs``);
        for many images, call it on slices: it keeps every layer's output of the batch."""
        return layer_outputs(self._fitted_params(), self._inputs(X), self.activation, self.layers)

    def input_gradient(self, X: ArrayLike, dlogits: np.ndarray | Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """d(some function of the logits)/d(pixels), (n, 784), given its gradient w.r.t. the logits
        (or a function of the logits returning it): ``functional.input_gradient``."""
        return input_gradient(self._fitted_params(), self._inputs(X), self.activation, dlogits, self.layers)

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Class probabilities (n, 10) for images (n, 784) in [0, 1]; rows sum to 1."""
        return softmax(self.logits(X).astype(np.float64)).astype(np.float32)

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predicted digit per image, (n,) int64."""
        return np.argmax(self.logits(X), axis=1)

    def score(self, X: ArrayLike, y: ArrayLike) -> float:
        """Accuracy on (X, y)."""
        return float(np.mean(self.predict(X) == np.asarray(y)))

    def __repr__(self) -> str:
        state = "fitted" if self.params_ is not None else "not fitted"
        if not self.config.layers:
            return f"MLP({'-'.join(map(str, self.layer_sizes))}, {self.activation}, {state})"
        return f"Network({self.config.layers}, {self.activation}, {state})"


MLP = Network  # the name callers and files have always used: the same class
