"""MLP: a dense network with a softmax output, scikit-learn-like.

Hyperparameters live in a TrainConfig; learned state lives in ``params_`` (a dict
``{"W1": (n_in, h1), "b1": (h1,), ...}``), set by ``fit`` or by ``load_model``.
Non-goals: convolutions, GPUs, autograd. Readable and vectorised over the batch.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .config import TrainConfig, layer_sizes
from .functional import ACTIVATIONS, linear_backward, linear_forward, softmax, softmax_cross_entropy


def init_params(sizes: list[int], activation: str, rng: np.random.Generator,
                dtype=np.float32) -> dict[str, np.ndarray]:
    """Scaled-Gaussian weights (He for relu, Xavier/Glorot for sigmoid), zero biases."""
    params = {}
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        gain = 2.0 if activation == "relu" else 1.0
        std = np.sqrt(gain / n_in)
        params[f"W{i}"] = (rng.standard_normal((n_in, n_out)) * std).astype(dtype)
        params[f"b{i}"] = np.zeros(n_out, dtype=dtype)
    return params


def forward(params: dict[str, np.ndarray], X: np.ndarray, activation: str
            ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Logits (batch, 10) and the list of layer inputs [X, A1, A2, ...] for backward."""
    act, _ = ACTIVATIONS[activation]
    n_layers = len(params) // 2
    inputs = [X]
    A = X
    for i in range(1, n_layers):
        Z = linear_forward(A, params[f"W{i}"], params[f"b{i}"])
        A = act(Z, out=Z)  # backward needs only A, so Z's buffer is reused for it
        inputs.append(A)
    logits = linear_forward(A, params[f"W{n_layers}"], params[f"b{n_layers}"])
    return logits, inputs


def backward(params: dict[str, np.ndarray], inputs: list[np.ndarray], dlogits: np.ndarray,
             activation: str, l2: float = 0.0) -> dict[str, np.ndarray]:
    """Gradients keyed like params, from dL/dlogits and the forward's layer inputs."""
    _, act_backward = ACTIVATIONS[activation]
    n_layers = len(params) // 2
    grads = {}
    dZ = dlogits
    for i in range(n_layers, 0, -1):
        W = params[f"W{i}"]
        A_prev = inputs[i - 1]
        # The first layer's input is the image: its gradient is never used, so skip it.
        dA_prev, dW, db = linear_backward(dZ, A_prev, W, need_dX=i > 1)
        if l2:
            dW += l2 * W
        grads[f"W{i}"], grads[f"b{i}"] = dW, db
        if i > 1:
            dZ = act_backward(dA_prev, A_prev, out=dA_prev)  # dA_prev is a fresh array
    return grads


def loss_and_grads(params, X, y, activation, l2=0.0):
    """Mean cross-entropy (+ L2) on a batch and its exact gradients. X: (batch, n_in), y: (batch,)."""
    logits, inputs = forward(params, X, activation)
    loss, dlogits = softmax_cross_entropy(logits, y)
    if l2:
        loss += 0.5 * l2 * sum(float(np.sum(params[k] ** 2)) for k in params if k[0] == "W")
    return loss, backward(params, inputs, dlogits, activation, l2), logits


def as_input(X, keep_uint8: bool = False) -> np.ndarray:
    """Validate and convert images to float32 in [0, 1], shape (n, 784).

    uint8 input is scaled by 1/255 (or, with ``keep_uint8``, returned as uint8 for
    ``uint8_to_float`` to scale batch by batch); float input must already be in [0, 1].
    """
    X = np.asarray(X)
    if X.ndim == 1:
        X = X[None, :]
    if X.ndim == 3:
        X = X.reshape(len(X), -1)
    if X.ndim != 2:
        raise ValueError(f"expected images of shape (n, 784), got {X.shape}")
    if X.dtype == np.uint8:
        return X if keep_uint8 else uint8_to_float(X)
    if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise ValueError(f"expected numeric images, got dtype {X.dtype}")
    X = X.astype(np.float32, copy=False)
    if not np.all(np.isfinite(X)):
        raise ValueError("images contain NaN or infinite values")
    # A little slack for rounding; 0-255 floats are a common slip and would predict nonsense.
    if X.size and (X.min() < -1e-3 or X.max() > 1 + 1e-3):
        raise ValueError(f"float images must hold pixels in [0, 1], got values in [{X.min():g}, {X.max():g}] "
                         "(divide 0-255 pixel values by 255)")
    return X


def uint8_to_float(X: np.ndarray) -> np.ndarray:
    """uint8 pixels (n, 784) -> float32 in [0, 1], the same values as_input gives."""
    return np.divide(X, np.float32(255), dtype=np.float32)


class MLP:
    """Multi-layer perceptron classifier with a softmax output.

    >>> model = MLP(hidden_sizes=(128, 64), activation="relu", epochs=5).fit(X, y)
    >>> model.predict_proba(X[:3]).sum(axis=1)   # -> [1., 1., 1.]
    """

    def __init__(self, config: TrainConfig | None = None, **hyperparameters) -> None:
        self.config = replace(config or TrainConfig(), **hyperparameters)
        self.params_: dict[str, np.ndarray] | None = None
        self.history_: list[dict] = []
        self.metrics_: dict = {}
        self.optimizer_state_: dict = {}
        self.data_hash_: str | None = None
        self.epochs_done_: int = 0
        self.info_: dict = {}  # free-form provenance (how it was made, when)

    # --- structure -----------------------------------------------------------------
    @property
    def activation(self) -> str:
        return self.config.activation

    @property
    def layer_sizes(self) -> list[int]:
        if self.params_ is not None:
            n = len(self.params_) // 2
            return [self.params_["W1"].shape[0]] + [self.params_[f"W{i}"].shape[1] for i in range(1, n + 1)]
        return layer_sizes(self.config)

    def initialize(self, n_in: int = 784, n_out: int = 10) -> MLP:
        rng = np.random.default_rng(self.config.seed)
        self.params_ = init_params(layer_sizes(self.config, n_in, n_out), self.config.activation, rng)
        return self

    def _check_fitted(self) -> None:
        if self.params_ is None:
            raise ValueError("this MLP is not fitted yet: call fit() or load a model")

    # --- scikit-learn-like API -----------------------------------------------------
    def fit(self, X, y, X_val=None, y_val=None, stop=None) -> MLP:
        """Train for config.epochs on (X, y); returns self. See mnist_net.train for progress."""
        from .train import iter_training  # train imports this module

        for _ in iter_training(self, X, y, X_val, y_val, stop=stop):
            pass
        return self

    def logits(self, X, batch_size: int = 4096) -> np.ndarray:
        self._check_fitted()
        X = as_input(X)
        n_in = self.params_["W1"].shape[0]
        if X.shape[1] != n_in:
            raise ValueError(f"expected {n_in} features per image, got {X.shape[1]}")
        if 0 < len(X) <= batch_size:  # one chunk (e.g. a single drawn digit): no copy
            return forward(self.params_, X, self.activation)[0]
        out = [forward(self.params_, X[i:i + batch_size], self.activation)[0]
               for i in range(0, len(X), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.layer_sizes[-1]), np.float32)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (n, 10) for images (n, 784) in [0, 1]; rows sum to 1."""
        return softmax(self.logits(X).astype(np.float64)).astype(np.float32)

    def predict(self, X) -> np.ndarray:
        """Predicted digit per image, (n,) int64."""
        return np.argmax(self.logits(X), axis=1)

    def score(self, X, y) -> float:
        """Accuracy on (X, y)."""
        return float(np.mean(self.predict(X) == np.asarray(y)))

    def __repr__(self) -> str:
        sizes = "-".join(map(str, self.layer_sizes))
        state = "fitted" if self.params_ is not None else "not fitted"
        return f"MLP({sizes}, {self.activation}, {state})"
