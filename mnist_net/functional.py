"""The network's maths as small pure functions over batch-first arrays.

Dense layers and activations first (each forward next to its backward rule, so the chain rule
can be checked on one screen; conv, pool and dropout are in ``layers``), then the whole network
over a parameter dict ``{"W1": ..., "b1": ..., ...}`` (one W/b pair per conv or dense layer) and
its list of layers (``architecture.Layer``; omitted, the dense layers the weights' shapes
describe): ``init_params``, ``forward``, ``backward``, ``loss_and_grads``, and for looking
inside, ``layer_outputs`` and ``input_gradient``. Shapes: ``X: (batch, n_in)`` (784 pixels in
[0, 1] for a network with conv layers), dense ``W: (n_in, n_out)``, ``b: (n_out,)``, ``logits:
(batch, n_classes)``. The training loop and the model class build on these; nothing here knows
about either.

Non-goals: autograd, branching networks, GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .architecture import IMAGE_SIDE, Layer, floats_per_image, param_shapes
from .layers import (
    conv2d_backward,
    conv2d_forward,
    dropout_backward,
    dropout_forward,
    dropout_mask,
    maxpool_backward,
    maxpool_forward,
)


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


# --- the whole network over a parameter dict and its layers ------------------------------------

Params = dict[str, np.ndarray]
Layers = tuple[Layer, ...]
# Floats a predicting chunk may hold at once (256 MB): a big CNN predicts fewer rows at a time.
PREDICT_FLOATS = 64 * 1024**2


def n_layers(params: Params) -> int:
    """Number of parameterised layers (weight arrays) in a parameter dict."""
    return len(params) // 2


def param_layer_sizes(params: Params) -> list[int]:
    """[n_in, h1, ..., n_out] read off the weight shapes of a dense network."""
    return [params["W1"].shape[0]] + [params[f"W{i}"].shape[1] for i in range(1, n_layers(params) + 1)]


def dense_layers(params: Params) -> Layers:
    """The dense layers a parameter dict of 2-D weights describes (an MLP, any sizes)."""
    return tuple(Layer("dense", int(params[f"W{i}"].shape[1])) for i in range(1, n_layers(params) + 1))


def init_params(
    sizes: list[int] | Layers, activation: str, rng: np.random.Generator, dtype: type = np.float32
) -> Params:
    """Scaled-Gaussian weights (He for relu, Xavier/Glorot for sigmoid), zero biases.

    sizes: [n_in, h1, ..., n_out] for a dense network (W{i}: (sizes[i-1], sizes[i]),
    b{i}: (sizes[i],)), or a tuple of Layers (shapes from ``architecture.param_shapes``; a
    conv's fan-in is kh*kw*c_in). The same seed gives an MLP the same weights either way.
    """
    shapes: list[tuple[tuple[int, ...], tuple[int, ...]]]
    if sizes and isinstance(sizes[0], Layer):
        shapes = param_shapes(tuple(sizes))
    else:
        dims = [int(s) for s in sizes]  # type: ignore[arg-type]
        shapes = [((n_in, n_out), (n_out,)) for n_in, n_out in zip(dims[:-1], dims[1:])]
    params = {}
    gain = 2.0 if activation == "relu" else 1.0
    for i, (w_shape, b_shape) in enumerate(shapes, start=1):
        fan_in = int(np.prod(w_shape[:-1]))
        std = np.sqrt(gain / fan_in)
        params[f"W{i}"] = (rng.standard_normal(w_shape) * std).astype(dtype)
        params[f"b{i}"] = np.zeros(b_shape, dtype=dtype)
    return params


@dataclass
class Trace:
    """What a forward pass keeps for backward: each layer's input (the image first) and what
    its backward needs besides (dropout's mask)."""

    inputs: list[np.ndarray]
    saved: list[Any]


def _as_image(A: np.ndarray) -> np.ndarray:
    """(n, 784) -> (n, 28, 28, 1) for a conv or pool; images pass unchanged."""
    return A.reshape(len(A), IMAGE_SIDE, IMAGE_SIDE, 1) if A.ndim == 2 else A


def forward_trace(
    params: Params, X: np.ndarray, activation: str, layers: Layers | None = None, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, Trace]:
    """Logits (batch, n_out) and the Trace for backward. Dropout is on only with an ``rng``
    (training); without one the layer passes its input through (prediction)."""
    layers = layers or dense_layers(params)
    act, _ = ACTIVATIONS[activation]
    last = len(layers) - 1
    inputs: list[np.ndarray] = []
    saved: list[Any] = []
    A = X
    p = 0  # parameterised layers so far
    for i, layer in enumerate(layers):
        inputs.append(A)
        extra = None
        if layer.kind == "dense":
            p += 1
            A = linear_forward(A.reshape(len(A), -1), params[f"W{p}"], params[f"b{p}"])
            if i < last:
                A = act(A, out=A)  # backward needs only the output, so Z's buffer is reused for it
        elif layer.kind == "conv":
            p += 1
            Z = conv2d_forward(_as_image(A), params[f"W{p}"], params[f"b{p}"], layer.padding)
            A = act(Z, out=Z)
        elif layer.kind == "pool":
            A = maxpool_forward(_as_image(A), layer.size)  # backward reads its input and output
        elif layer.kind == "dropout" and rng is not None and layer.rate > 0:
            extra = dropout_mask(A.shape, layer.rate, rng, A.dtype.type)
            A = dropout_forward(A, extra)  # a new array: its input is the activation backward reads
        saved.append(extra)
    return A, Trace(inputs, saved)


def forward(
    params: Params, X: np.ndarray, activation: str, layers: Layers | None = None, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Logits (batch, n_out) and the list of layer inputs [X, A1, A2, ...] (``forward_trace``)."""
    logits, trace = forward_trace(params, X, activation, layers, rng)
    return logits, trace.inputs


def _backward(
    params: Params,
    trace: Trace,
    dlogits: np.ndarray,
    activation: str,
    l2: float,
    layers: Layers,
    to_input: bool,
) -> tuple[Params, np.ndarray | None]:
    """Gradients keyed like params, and dL/dX (the image's shape) if ``to_input``."""
    _, act_backward = ACTIVATIONS[activation]
    with_params = [i for i, layer in enumerate(layers) if layer.has_params]
    index = {i: k for k, i in enumerate(with_params, start=1)}
    # Below the first weights lies only the image, whose gradient training never uses: stop there.
    stop = 0 if to_input else with_params[0]
    grads: Params = {}
    d: np.ndarray | None = dlogits
    for i in range(len(layers) - 1, stop - 1, -1):
        layer, A_in, extra = layers[i], trace.inputs[i], trace.saved[i]
        need = i > stop or to_input
        assert d is not None
        if layer.has_params:
            W = params[f"W{index[i]}"]
            if layer.kind == "dense":
                dA, dW, db = linear_backward(d, A_in.reshape(len(A_in), -1), W, need_dX=need)
            else:
                dA, dW, db = conv2d_backward(d, _as_image(A_in), W, layer.padding, need_dX=need)
            if l2:
                dW += l2 * W
            grads[f"W{index[i]}"], grads[f"b{index[i]}"] = dW, db
        elif layer.kind == "pool":
            # A pool is never last: its output is the next layer's input.
            fused = activation == "relu" and i > 0 and layers[i - 1].kind in ("conv", "dense")
            dA = maxpool_backward(d, _as_image(A_in), trace.inputs[i + 1], layer.size, after_relu=fused)
            if fused:  # the relu's backward is done: go straight on below it
                d = dA
                continue
        elif layer.kind == "dropout" and extra is not None:
            dA = dropout_backward(d, extra)
        else:  # dropout at prediction: the identity
            dA = d.copy()
        if dA is not None:
            dA = dA.reshape(A_in.shape)
            if i > 0 and layers[i - 1].kind in ("conv", "dense"):
                dA = act_backward(dA, A_in, out=dA)  # A_in is that layer's activation; dA is fresh
        d = dA
    return grads, d if to_input else None


def backward(
    params: Params,
    inputs: list[np.ndarray] | Trace,
    dlogits: np.ndarray,
    activation: str,
    l2: float = 0.0,
    layers: Layers | None = None,
) -> Params:
    """Gradients keyed like params, from dL/dlogits (batch, n_out) and the forward's Trace
    (or, for dense layers, its list of layer inputs)."""
    trace = inputs if isinstance(inputs, Trace) else Trace(list(inputs), [None] * len(inputs))
    return _backward(params, trace, dlogits, activation, l2, layers or dense_layers(params), False)[0]


def loss_and_grads(
    params: Params,
    X: np.ndarray,
    y: np.ndarray,
    activation: str,
    l2: float = 0.0,
    layers: Layers | None = None,
    rng: np.random.Generator | None = None,
) -> tuple[float, Params, np.ndarray]:
    """Mean cross-entropy (+ L2) on a batch, its exact gradients, and the logits.

    X: (batch, n_in) float in [0, 1], y: (batch,) ints; ``rng`` turns dropout on (training).
    Returns (loss, grads, logits (batch, n_out)).
    """
    layers = layers or dense_layers(params)
    logits, trace = forward_trace(params, X, activation, layers, rng)
    loss, dlogits = softmax_cross_entropy(logits, y)
    loss += l2_penalty([params[k] for k in params if k[0] == "W"], l2)
    return loss, _backward(params, trace, dlogits, activation, l2, layers, False)[0], logits


def predict_chunk(layers: Layers, chunk: int = 4096) -> int:
    """Rows per forward chunk for these layers: at most ``chunk``, fewer so that one chunk's
    activations stay within PREDICT_FLOATS."""
    return max(1, min(chunk, PREDICT_FLOATS // floats_per_image(layers)))


def logits_in_chunks(
    params: Params, X: np.ndarray, activation: str, chunk: int = 4096, layers: Layers | None = None
) -> np.ndarray:
    """Logits (n, n_out) for any number of inputs, a bounded chunk of rows at a time (bounded memory)."""
    layers = layers or dense_layers(params)
    if any(layer.kind != "dense" for layer in layers):
        chunk = predict_chunk(layers, chunk)
    if 0 < len(X) <= chunk:  # one chunk (e.g. a single drawn digit): no copy
        return forward(params, X, activation, layers)[0]
    out = [forward(params, X[i : i + chunk], activation, layers)[0] for i in range(0, len(X), chunk)]
    return np.concatenate(out) if out else np.zeros((0, layers[-1].size), np.float32)


def accuracy_and_loss(
    params: Params, X: np.ndarray, y: np.ndarray, activation: str, layers: Layers | None = None
) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of the network on inputs X (n, n_in), labels y (n,)."""
    p = softmax(logits_in_chunks(params, X, activation, layers=layers).astype(np.float64))
    acc = float(np.mean(p.argmax(axis=1) == y))
    loss = float(-np.mean(np.log(np.maximum(p[np.arange(len(y)), y], 1e-12))))
    return acc, loss


# --- looking inside ------------------------------------------------------------------------------


class LayerOutput(NamedTuple):
    """One layer's output for a batch: ``name`` like "2 pool 2", ``kind`` ("conv", "pool",
    "dense", "dropout"), ``values`` (batch, h, w, c) for conv/pool, (batch, units) for dense."""

    name: str
    kind: str
    values: np.ndarray


def layer_outputs(params: Params, X: np.ndarray, activation: str, layers: Layers | None = None) -> list[LayerOutput]:
    """Every layer's output (after its activation; the last is the logits) for inputs X (n, n_in)."""
    layers = layers or dense_layers(params)
    logits, trace = forward_trace(params, X, activation, layers)
    values = [*trace.inputs[1:], logits]
    return [LayerOutput(f"{i} {layer.text()}", layer.kind, v) for i, (layer, v) in enumerate(zip(layers, values), 1)]


def input_gradient(
    params: Params,
    X: np.ndarray,
    activation: str,
    dlogits: np.ndarray | Callable[[np.ndarray], np.ndarray],
    layers: Layers | None = None,
) -> np.ndarray:
    """dF/dX (shape of X) of any function F of the logits, given dF/dlogits (batch, n_out) or a
    function logits -> dF/dlogits; e.g. ``lambda z: np.eye(10)[[3]] * np.ones_like(z)`` for
    how each pixel moves the score of digit 3 (a saliency map)."""
    layers = layers or dense_layers(params)
    logits, trace = forward_trace(params, X, activation, layers)
    upstream = dlogits(logits) if callable(dlogits) else dlogits
    upstream = np.array(upstream, dtype=logits.dtype)  # our own copy: backward works in place
    dX = _backward(params, trace, upstream, activation, 0.0, layers, True)[1]
    assert dX is not None
    return dX.reshape(X.shape)
