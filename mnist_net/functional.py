"""The network's maths as small pure functions over batch-first arrays.

Each forward function sits next to its backward rule so the chain rule can be
checked on one screen. Shapes: ``X: (batch, n_in)``, ``W: (n_in, n_out)``,
``b: (n_out,)``, ``logits: (batch, n_classes)``.

Non-goals: autograd, layers other than dense ones, GPU.
"""

from __future__ import annotations

import numpy as np

def linear_forward(X: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Affine map. X: (batch, n_in), W: (n_in, n_out), b: (n_out,) -> (batch, n_out)."""
    return X @ W + b


def linear_backward(
    dZ: np.ndarray, X: np.ndarray, W: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of ``X @ W + b`` given dL/dZ: (batch, n_out).

    Returns (dX: (batch, n_in), dW: (n_in, n_out), db: (n_out,)).
    """
    return dZ @ W.T, X.T @ dZ, dZ.sum(axis=0)


def sigmoid_forward(Z: np.ndarray) -> np.ndarray:
    """Logistic function, stable for large |Z| (no overflow in exp)."""
    # exp(-|Z|) never overflows; pick the algebraically equal form per sign.
    e = np.exp(-np.abs(Z))
    return np.where(Z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(Z.dtype, copy=False)


def sigmoid_backward(dA: np.ndarray, A: np.ndarray) -> np.ndarray:
    """dL/dZ from dL/dA, using the forward output A = sigmoid(Z)."""
    return dA * A * (1.0 - A)


def relu_forward(Z: np.ndarray) -> np.ndarray:
    """max(Z, 0)."""
    return np.maximum(Z, 0)


def relu_backward(dA: np.ndarray, A: np.ndarray) -> np.ndarray:
    """dL/dZ from dL/dA, using the forward output A = relu(Z) (A > 0 iff Z > 0)."""
    return dA * (A > 0)


ACTIVATIONS = {
    "sigmoid": (sigmoid_forward, sigmoid_backward),
    "relu": (relu_forward, relu_backward),
}


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax. logits: (batch, k) -> probabilities (batch, k), rows sum to 1."""
    shifted = logits - logits.max(axis=1, keepdims=True)  # no overflow in exp
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def softmax_cross_entropy(
    logits: np.ndarray, y: np.ndarray
) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(logits) against integer labels, and its gradient.

    logits: (batch, k), y: (batch,) ints in [0, k).
    Returns (loss, dlogits: (batch, k)) where dlogits = (p - onehot(y)) / batch,
    the exact gradient of the mean loss (the notebook multiplied by p(1-p) as well).
    """
    n = logits.shape[0]
    rows = np.arange(n)
    # log-softmax via log-sum-exp: exact even when a probability underflows to 0.
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    sum_e = e.sum(axis=1, keepdims=True)
    loss = float(np.mean(np.log(sum_e[:, 0]) - shifted[rows, y]))
    dlogits = e / sum_e
    dlogits[rows, y] -= 1.0
    dlogits /= n
    return loss, dlogits


def l2_penalty(weights: list[np.ndarray], l2: float) -> float:
    """0.5 * l2 * sum of squared weights (biases excluded)."""
    if l2 == 0.0:
        return 0.0
    return 0.5 * l2 * float(sum(np.sum(W.astype(np.float64) ** 2) for W in weights))
