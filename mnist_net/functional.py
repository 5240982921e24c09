"""The network's maths as small pure functions over batch-first arrays.

Each forward function sits next to its backward rule so the chain rule can be
checked on one screen. Shapes: ``X: (batch, n_in)``, ``W: (n_in, n_out)``,
``b: (n_out,)``, ``logits: (batch, n_classes)``.

Non-goals: autograd, layers other than dense ones, GPU.
"""

from __future__ import annotations

import numpy as np


def linear_forward(X: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Affine map. X: (batch, n_in), W: (n_in, n_out), b: (n_out,) -> Z: (batch, n_out)."""
    Z = X @ W
    Z += b  # in place: no second (batch, n_out) temporary
    return Z


def linear_backward(
    dZ: np.ndarray, X: np.ndarray, W: np.ndarray, need_dX: bool = True
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients of ``X @ W + b`` given dL/dZ: (batch, n_out).

    Returns (dX: (batch, n_in), dW: (n_in, n_out), db: (n_out,)). With ``need_dX=False``
    dX is None: the first layer's input is the image, whose gradient nobody uses, and
    skipping that GEMM saves nearly half the backward pass's multiply-adds.
    """
    dX = dZ @ W.T if need_dX else None
    return dX, X.T @ dZ, dZ.sum(axis=0)


# Activations take an optional ``out`` (which may be the input itself): the network
# overwrites each fresh GEMM result in place instead of allocating another array.

def sigmoid_forward(Z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Logistic function 1 / (1 + exp(-Z)), stable for any Z.

    With e = exp(-|Z|), which never overflows: 1 / (1 + e) for Z >= 0, e / (1 + e) for
    Z < 0. As e <= 1, the numerator (1 or e) is max(e, Z >= 0): one exp, no branches.
    """
    e = np.abs(Z)
    np.negative(e, out=e)
    np.exp(e, out=e)
    out = np.maximum(e, Z >= 0, out=out)
    e += 1
    out /= e
    return out


def sigmoid_backward(dA: np.ndarray, A: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """dL/dZ = dA * A * (1 - A), using the forward output A = sigmoid(Z)."""
    slope = 1 - A
    slope *= A
    return np.multiply(dA, slope, out=out)


def relu_forward(Z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """max(Z, 0)."""
    return np.maximum(Z, 0, out=out)


def relu_backward(dA: np.ndarray, A: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """dL/dZ = dA where Z > 0 else 0, using the forward output A = relu(Z) (A > 0 iff Z > 0)."""
    return np.multiply(dA, A > 0, out=out)


ACTIVATIONS = {
    "sigmoid": (sigmoid_forward, sigmoid_backward),
    "relu": (relu_forward, relu_backward),
}


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax. logits: (batch, k) -> probabilities (batch, k), rows sum to 1."""
    e = logits - logits.max(axis=1, keepdims=True)  # no overflow in exp
    np.exp(e, out=e)
    e /= e.sum(axis=1, keepdims=True)
    return e


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
    true_shifted = shifted[rows, y]
    e = np.exp(shifted, out=shifted)  # shifted is our own temporary: reuse its memory
    sum_e = e.sum(axis=1)
    loss = float(np.sum(np.log(sum_e) - true_shifted)) / n
    dlogits = e
    dlogits /= (sum_e * n)[:, None]  # p / n
    dlogits[rows, y] -= 1.0 / n
    return loss, dlogits


def l2_penalty(weights: list[np.ndarray], l2: float) -> float:
    """0.5 * l2 * sum of squared weights (biases excluded)."""
    if l2 == 0.0:
        return 0.0
    return 0.5 * l2 * float(sum(np.sum(W.astype(np.float64) ** 2) for W in weights))
