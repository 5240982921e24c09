"""The maths: finite-difference gradient checks (float64, tiny nets) and hand-worked values."""

import numpy as np
import pytest

from mnist_net.functional import (
    init_params,
    linear_backward,
    linear_forward,
    loss_and_grads,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    softmax,
    softmax_cross_entropy,
)


def numeric_grad(f, x, eps=1e-6):
    """Central differences of scalar f() with respect to every entry of x (modified in place)."""
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        fp = f()
        x[i] = old - eps
        fm = f()
        x[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


def rel_err(a, b):
    return np.max(np.abs(a - b)) / max(1e-8, np.max(np.abs(a) + np.abs(b)))


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
@pytest.mark.parametrize("l2", [0.0, 0.1])
def test_network_gradients_match_finite_differences(activation, l2):
    rng = np.random.default_rng(1)
    sizes = [5, 4, 3, 10]
    params = init_params(sizes, activation, rng, dtype=np.float64)
    for k in params:  # non-zero biases so their gradients are exercised too
        params[k] += 0.1 * rng.standard_normal(params[k].shape)
    X = rng.random((7, 5))
    y = rng.integers(0, 10, 7)
    _, grads, _ = loss_and_grads(params, X, y, activation, l2)
    for name, p in params.items():
        num = numeric_grad(lambda: loss_and_grads(params, X, y, activation, l2)[0], p)
        assert rel_err(grads[name], num) < 1e-6, name


@pytest.mark.parametrize("forward,backward", [(sigmoid_forward, sigmoid_backward), (relu_forward, relu_backward)])
def test_activation_backward_matches_finite_differences(forward, backward):
    rng = np.random.default_rng(2)
    Z = rng.standard_normal((4, 6)) + 0.05  # keep relu's kink away from the sample points
    upstream = rng.standard_normal((4, 6))
    analytic = backward(upstream, forward(Z))
    num = numeric_grad(lambda: float(np.sum(upstream * forward(Z))), Z)
    assert rel_err(analytic, num) < 1e-6


def test_linear_backward_matches_finite_differences():
    rng = np.random.default_rng(3)
    X, W, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 2)), rng.standard_normal(2)
    upstream = rng.standard_normal((3, 2))

    def f():
        return float(np.sum(upstream * linear_forward(X, W, b)))

    dX, dW, db = linear_backward(upstream, X, W)
    assert rel_err(dX, numeric_grad(f, X)) < 1e-6
    assert rel_err(dW, numeric_grad(f, W)) < 1e-6
    assert rel_err(db, numeric_grad(f, b)) < 1e-6


def test_softmax_cross_entropy_hand_worked():
    # logits (0, ln 3): p = (1/4, 3/4); label 1 -> loss = -ln(3/4); dlogits = p - onehot.
    logits = np.array([[0.0, np.log(3.0)]])
    loss, d = softmax_cross_entropy(logits, np.array([1]))
    assert loss == pytest.approx(-np.log(0.75))
    np.testing.assert_allclose(d, [[0.25, -0.25]])


def test_output_gradient_is_p_minus_y_over_batch():
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((6, 10))
    y = rng.integers(0, 10, 6)
    _, d = softmax_cross_entropy(logits.copy(), y)
    expected = softmax(logits)
    expected[np.arange(6), y] -= 1
    np.testing.assert_allclose(d, expected / 6)


def test_stable_for_huge_inputs_without_warnings():
    big = np.array([[1e4, -1e4, 0.0], [-1e30, 1e30, 5.0]], np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        p = softmax(big)
        s = sigmoid_forward(big)
        loss, _ = softmax_cross_entropy(big.astype(np.float64), np.array([1, 0]))
    assert np.all(np.isfinite(p)) and np.allclose(p.sum(axis=1), 1)
    assert np.all((s >= 0) & (s <= 1)) and s[0, 0] == 1 and s[0, 1] == 0
    assert np.isfinite(loss) and loss > 100  # confidently wrong: large but finite


def test_sigmoid_matches_definition_and_keeps_dtype():
    z = np.linspace(-20, 20, 41, dtype=np.float32)
    np.testing.assert_allclose(sigmoid_forward(z), 1 / (1 + np.exp(-z.astype(np.float64))), rtol=1e-6)
    assert sigmoid_forward(z).dtype == np.float32
