"""Finite-difference checks of the conv, pool and dropout layers and of whole small CNNs (float64, tiny shapes)."""

import numpy as np
import pytest

from mnist_net.architecture import Layer, parse_layers
from mnist_net.functional import init_params, input_gradient, layer_outputs, loss_and_grads, softmax_cross_entropy
from mnist_net.layers import (
    conv2d_backward,
    conv2d_forward,
    dropout_backward,
    dropout_forward,
    dropout_mask,
    maxpool_backward,
    maxpool_forward,
)


def numeric_grad(f, x, eps=1e-6, at=None):
    """Central differences of the scalar f() with respect to the elements of x (changed in place):
    all of them, or the flat indices ``at`` (the others stay 0)."""
    g = np.zeros_like(x)
    for flat in range(x.size) if at is None else at:
        i = np.unravel_index(flat, x.shape)
        old = x[i]
        x[i] = old + eps
        up = f()
        x[i] = old - eps
        down = f()
        x[i] = old
        g[i] = (up - down) / (2 * eps)
    return g


def direct_conv(X, W, b, padding):
    """Convolution by its definition, one output pixel at a time (the reference)."""
    kh, kw, _, c_out = W.shape
    if padding == "same":
        X = np.pad(X, ((0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0)))
    n, h, w, _ = X.shape
    out = np.zeros((n, h - kh + 1, w - kw + 1, c_out))
    for r in range(out.shape[1]):
        for c in range(out.shape[2]):
            out[:, r, c, :] = np.einsum("nijc,ijcd->nd", X[:, r : r + kh, c : c + kw, :], W) + b
    return out


@pytest.mark.parametrize("kernel,padding", [((3, 3), "same"), ((2, 4), "same"), ((3, 2), "valid"), ((1, 1), "same")])
def test_conv_matches_the_definition_and_its_gradients_are_exact(kernel, padding):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((2, 5, 6, 3))
    W = rng.standard_normal((*kernel, 3, 4))
    b = rng.standard_normal(4)
    Z = conv2d_forward(X, W, b, padding)
    np.testing.assert_allclose(Z, direct_conv(X, W, b, padding), rtol=1e-10, atol=1e-10)
    upstream = rng.standard_normal(Z.shape)
    dX, dW, db = conv2d_backward(upstream, X, W, padding)

    def loss():
        return float(np.sum(upstream * conv2d_forward(X, W, b, padding)))

    np.testing.assert_allclose(dX, numeric_grad(loss, X), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dW, numeric_grad(loss, W), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(db, numeric_grad(loss, b), rtol=1e-6, atol=1e-7)
    assert conv2d_backward(upstream, X, W, padding, need_dX=False)[0] is None


@pytest.mark.parametrize("shape,size", [((2, 4, 6, 3), 2), ((1, 7, 5, 2), 3)])
def test_maxpool_gradient_is_exact_away_from_ties_and_ragged_edges_get_none(shape, size):
    rng = np.random.default_rng(2)
    X = rng.permutation(np.prod(shape)).reshape(shape).astype(np.float64)  # distinct values: no ties
    Y = maxpool_forward(X, size)
    assert Y.shape == (shape[0], shape[1] // size, shape[2] // size, shape[3])
    np.testing.assert_array_equal(Y[0, 0, 0], X[0, :size, :size].max(axis=(0, 1)))
    upstream = rng.standard_normal(Y.shape)
    dX = maxpool_backward(upstream, X, Y, size)
    np.testing.assert_allclose(
        dX, numeric_grad(lambda: float(np.sum(upstream * maxpool_forward(X, size))), X), rtol=1e-6, atol=1e-6
    )


def test_a_pool_tie_sends_the_whole_gradient_to_the_first_maximum_only():
    X = np.zeros((1, 2, 4, 1))
    X[0, 0, 1, 0] = X[0, 1, 0, 0] = 5.0  # two maxima in the first window
    # the second window is all zeros: a four-way tie (what a relu's dead units give a pool)
    Y = maxpool_forward(X, 2)
    dX = maxpool_backward(np.full(Y.shape, 3.0), X, Y, 2)
    assert Y.ravel().tolist() == [5.0, 0.0] and dX.sum() == 6.0
    assert dX[0, 0, 1, 0] == 3.0 and dX[0, 1, 0, 0] == 0.0  # row-major first: (0, 1)
    assert dX[0, 0, 2, 0] == 3.0 and np.count_nonzero(dX[0, :, 2:, 0]) == 1


def test_dropout_keeps_the_expected_value_and_its_gradient_is_the_mask():
    rng = np.random.default_rng(3)
    mask = dropout_mask((200, 500), 0.3, rng, np.float64)
    assert abs(np.mean(mask == 0) - 0.3) < 0.01 and abs(mask.mean() - 1) < 0.02
    A = rng.standard_normal((4, 5))
    m = dropout_mask(A.shape, 0.5, rng, np.float64)
    upstream = rng.standard_normal(A.shape)
    np.testing.assert_allclose(
        dropout_backward(upstream, m), numeric_grad(lambda: float(np.sum(upstream * dropout_forward(A, m))), A)
    )
    # Seeded: the same generator state gives the same mask.
    np.testing.assert_array_equal(
        dropout_mask((3, 3), 0.5, np.random.default_rng(7)), dropout_mask((3, 3), 0.5, np.random.default_rng(7))
    )


TINY_CNN = "conv 3x3x3 -> pool 2 -> conv 4x3x2 valid -> pool 3 -> dense 5 -> dropout 0.4 -> dense 10"


def some(x, n=25, seed=0):
    """Up to n flat indices of x, chosen at random (a finite-difference check of every weight is slow)."""
    return np.random.default_rng(seed).choice(x.size, min(n, x.size), replace=False)


@pytest.mark.parametrize("activation,with_dropout", [("relu", True), ("sigmoid", False)])
def test_a_whole_small_cnn_has_exact_gradients(activation, with_dropout):
    """End to end through conv -> pool -> conv (valid, rectangular) -> pool -> dense -> dropout -> dense,
    L2 included; dropout with a fixed mask (the same seed at every evaluation)."""
    layers = parse_layers(TINY_CNN)
    rng = np.random.default_rng(4)
    params = init_params(layers, activation, rng, dtype=np.float64)
    for k in params:
        if k[0] == "b":
            params[k] += rng.standard_normal(params[k].shape) * 0.1  # relu kinks away from zero
    X = rng.random((3, 784))
    y = np.array([1, 7, 3])

    def run():
        drop_rng = np.random.default_rng(5) if with_dropout else None
        return loss_and_grads(params, X, y, activation, 1e-3, layers, drop_rng)

    _, grads, _ = run()
    assert set(grads) == set(params)
    for k, p in params.items():
        at = some(p)
        num = numeric_grad(lambda: run()[0], p, at=at)
        np.testing.assert_allclose(grads[k].ravel()[at], num.ravel()[at], rtol=1e-5, atol=1e-8, err_msg=k)


def test_the_input_gradient_and_the_layer_outputs_of_a_cnn():
    layers = parse_layers("conv 2x3x3 -> pool 2 -> dense 6 -> dense 10")
    rng = np.random.default_rng(6)
    params = init_params(layers, "sigmoid", rng, dtype=np.float64)
    X = rng.random((2, 784))
    y = np.array([4, 2])

    def loss():
        logits = layer_outputs(params, X, "sigmoid", layers)[-1].values
        return softmax_cross_entropy(logits, y)[0]

    dX = input_gradient(params, X, "sigmoid", lambda z: softmax_cross_entropy(z, y)[1], layers)
    assert dX.shape == X.shape
    at = some(X, 60)
    np.testing.assert_allclose(dX.ravel()[at], numeric_grad(loss, X, at=at).ravel()[at], rtol=1e-5, atol=1e-9)
    outputs = layer_outputs(params, X, "sigmoid", layers)
    assert [(o.name, o.kind, o.values.shape) for o in outputs] == [
        ("1 conv 2x3x3", "conv", (2, 28, 28, 2)),
        ("2 pool 2", "pool", (2, 14, 14, 2)),
        ("3 dense 6", "dense", (2, 6)),
        ("4 dense 10", "dense", (2, 10)),
    ]


def test_an_mlp_as_layers_is_the_same_network_as_an_mlp_from_sizes():
    layers = (Layer("dense", 12), Layer("dense", 10))
    by_sizes = init_params([784, 12, 10], "relu", np.random.default_rng(0))
    by_layers = init_params(layers, "relu", np.random.default_rng(0))
    for k in by_sizes:
        np.testing.assert_array_equal(by_sizes[k], by_layers[k])
    X = np.random.default_rng(1).random((4, 784), dtype=np.float32)
    y = np.arange(4)
    a, b = loss_and_grads(by_sizes, X, y, "relu"), loss_and_grads(by_layers, X, y, "relu", layers=layers)
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1]["W1"], b[1]["W1"])


def test_conv_in_blocks_of_images_gives_the_same_as_all_at_once(monkeypatch):
    from mnist_net import layers

    rng = np.random.default_rng(8)
    X, W, b = rng.random((5, 6, 6, 2)), rng.standard_normal((3, 3, 2, 4)), rng.standard_normal(4)
    dZ = rng.standard_normal((5, 6, 6, 4))
    whole = conv2d_forward(X, W, b), *conv2d_backward(dZ, X, W, "same")
    monkeypatch.setattr(layers, "BLOCK_FLOATS", 2 * 6 * 6 * 3 * 3 * 4)  # blocks of 2, 2 and 1 images
    assert len(layers._blocks(5, 6 * 6 * 3 * 3 * 4)) == 3
    blocked = conv2d_forward(X, W, b), *conv2d_backward(dZ, X, W, "same")
    for a, c in zip(whole, blocked):
        np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-12)
