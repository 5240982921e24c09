"""The network's maths as small pure functions over batch-first arrays.

Layers first (each forward next to its backward rule, so the chain rule can be checked on
one screen), then the whole network over a parameter dict ``{"W1": (n_in, h1), "b1": (h1,),
...}``: ``init_params``, ``forward``, ``backward``, ``loss_and_grads``. Shapes: ``X: (batch,
n_in)``, ``W: (n_in, n_out)``, ``b: (n_out,)``, ``logits: (batch, n_classes)``. The
training loop and the MLP class both build on these; nothing here knows about either.

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

    Four passes (negate, exp, add, reciprocal): where -Z is large exp overflows to inf and
    1 / (1 + inf) is the correct 0, so the overflow is expected and silenced; nothing else can
    overflow. Relative error stays at float32 rounding over the whole range, tails included.
    """
    out = np.negative(Z, out=out)
    with np.errstate(over="ignore"):
        np.exp(out, out=out)
    out += 1
    return np.reciprocal(out, out=out)


def sigmoid_backward(dA: np.ndarray, A: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """dL/dZ = dA * A * (1 - A), using the forward output A = sigmoid(Z). Three passes."""
    slope = np.subtract(1, A, dtype=A.dtype)
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


def softmax_cross_entropy(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
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


# --- the whole network over a parameter dict ---------------------------------------------------

Params = dict[str, np.ndarray]


def n_layers(params: Params) -> int:
    """Number of dense layers (weight matrices) in a parameter dict."""
    return len(params) // 2


def param_layer_sizes(params: Params) -> list[int]:
    """[n_in, h1, ..., n_out] read off the weight shapes."""
    return [params["W1"].shape[0]] + [params[f"W{i}"].shape[1] for i in range(1, n_layers(params) + 1)]


def init_params(sizes: list[int], activation: str, rng: np.random.Generator, dtype: type = np.float32) -> Params:
    """Scaled-Gaussian weights (He for relu, Xavier/Glorot for sigmoid), zero biases.

    sizes: [n_in, h1, ..., n_out]. Returns W{i}: (sizes[i-1], sizes[i]), b{i}: (sizes[i],).
    """
    params = {}
    gain = 2.0 if activation == "relu" else 1.0
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        std = np.sqrt(gain / n_in)
        params[f"W{i}"] = (rng.standard_normal((n_in, n_out)) * std).astype(dtype)
        params[f"b{i}"] = np.zeros(n_out, dtype=dtype)
    return params


def forward(params: Params, X: np.ndarray, activation: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """Logits (batch, n_out) and the list of layer inputs [X, A1, A2, ...] for backward."""
    act, _ = ACTIVATIONS[activation]
    last = n_layers(params)
    inputs = [X]
    A = X
    for i in range(1, last):
        Z = linear_forward(A, params[f"W{i}"], params[f"b{i}"])
        A = act(Z, out=Z)  # backward needs only A, so Z's buffer is reused for it
        inputs.append(A)
    logits = linear_forward(A, params[f"W{last}"], params[f"b{last}"])
    return logits, inputs


def backward(params: Params, inputs: list[np.ndarray], dlogits: np.ndarray, activation: str, l2: float = 0.0) -> Params:
    """Gradients keyed like params, from dL/dlogits (batch, n_out) and the forward's layer inputs."""
    _, act_backward = ACTIVATIONS[activation]
    grads = {}
    dZ = dlogits
    for i in range(n_layers(params), 0, -1):
        W = params[f"W{i}"]
        A_prev = inputs[i - 1]
        # The first layer's input is the image: its gradient is never used, so skip it.
        dA_prev, dW, db = linear_backward(dZ, A_prev, W, need_dX=i > 1)
        if l2:
            dW += l2 * W
        grads[f"W{i}"], grads[f"b{i}"] = dW, db
        if dA_prev is not None:  # every layer but the first
            dZ = act_backward(dA_prev, A_prev, out=dA_prev)  # dA_prev is a fresh array
    return grads


def loss_and_grads(
    params: Params, X: np.ndarray, y: np.ndarray, activation: str, l2: float = 0.0
) -> tuple[float, Params, np.ndarray]:
    """Mean cross-entropy (+ L2) on a batch, its exact gradients, and the logits.

    X: (batch, n_in) float in [0, 1], y: (batch,) ints. Returns (loss, grads, logits (batch, n_out)).
    """
    logits, inputs = forward(params, X, activation)
    loss, dlogits = softmax_cross_entropy(logits, y)
    loss += l2_penalty([params[k] for k in params if k[0] == "W"], l2)
    return loss, backward(params, inputs, dlogits, activation, l2), logits


def logits_in_chunks(params: Params, X: np.ndarray, activation: str, chunk: int = 4096) -> np.ndarray:
    """Logits (n, n_out) for any number of inputs, ``chunk`` rows at a time (bounded memory)."""
    if 0 < len(X) <= chunk:  # one chunk (e.g. a single drawn digit): no copy
        return forward(params, X, activation)[0]
    out = [forward(params, X[i : i + chunk], activation)[0] for i in range(0, len(X), chunk)]
    return np.concatenate(out) if out else np.zeros((0, param_layer_sizes(params)[-1]), np.float32)


def accuracy_and_loss(params: Params, X: np.ndarray, y: np.ndarray, activation: str) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of the network on inputs X (n, n_in), labels y (n,)."""
    p = softmax(logits_in_chunks(params, X, activation).astype(np.float64))
    acc = float(np.mean(p.argmax(axis=1) == y))
    loss = float(-np.mean(np.log(np.maximum(p[np.arange(len(y)), y], 1e-12))))
    return acc, loss
