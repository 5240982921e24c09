"""Optimisers: the in-place updates give the textbook numbers, and a saved state resumes exactly."""

from __future__ import annotations

import io

import numpy as np
import pytest

from mnist_net.optim import SGD, Adam, Momentum, expected_state_keys, make_optimizer, state_problem


def _problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    params = {"W1": rng.standard_normal((7, 5)).astype(np.float32), "b1": np.zeros(5, np.float32)}
    grads = [{k: rng.standard_normal(v.shape).astype(np.float32) for k, v in params.items()} for _ in range(6)]
    return params, grads


def _reference(name: str, params, grads, lr: float, momentum: float = 0.9):
    """The update rules as written in the papers, in float64, with explicit bias correction."""
    p = {k: v.astype(np.float64) for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v2 = {k: np.zeros_like(v) for k, v in p.items()}
    for t, g in enumerate(grads, start=1):
        for k in p:
            gk = g[k].astype(np.float64)
            if name == "sgd":
                p[k] = p[k] - lr * gk
            elif name == "momentum":
                m[k] = momentum * m[k] - lr * gk
                p[k] = p[k] + m[k]
            else:
                b1, b2, eps = 0.9, 0.999, 1e-8
                m[k] = b1 * m[k] + (1 - b1) * gk
                v2[k] = b2 * v2[k] + (1 - b2) * gk**2
                m_hat, v_hat = m[k] / (1 - b1**t), v2[k] / (1 - b2**t)
                p[k] = p[k] - lr * m_hat / (np.sqrt(v_hat) + eps * np.sqrt(1 - b2**t))
    return p


@pytest.mark.parametrize("name,lr", [("sgd", 0.1), ("momentum", 0.05), ("adam", 1e-2)])
def test_in_place_updates_match_the_textbook_rule(name, lr):
    params, grads = _problem()
    expected = _reference(name, params, grads, lr)
    opt = make_optimizer(name, lr)
    ours = {k: v.copy() for k, v in params.items()}
    for g in grads:
        opt.step(ours, g)
    for k in ours:
        assert ours[k].dtype == np.float32
        np.testing.assert_allclose(ours[k], expected[k], rtol=2e-5, atol=2e-6)
    assert set(opt.state) == (expected_state_keys(name, list(params)) if name != "sgd" else set())


def test_adam_folds_the_bias_correction_into_the_step_exactly_as_the_paper_writes_it():
    # The paper divides by sqrt(v_hat) + eps; folding the correction into the step size moves eps
    # to sqrt(v) + eps, i.e. eps * sqrt(1 - beta2^t) in the paper's terms: the reference above does
    # the same, and the first step of Adam is lr * sign(g) either way.
    params, grads = _problem(1)
    opt = Adam(1e-3)
    p = {k: v.copy() for k, v in params.items()}
    opt.step(p, grads[0])
    np.testing.assert_allclose(p["W1"], params["W1"] - 1e-3 * np.sign(grads[0]["W1"]), rtol=1e-5, atol=1e-7)
    assert int(opt.state["t"]) == 1


@pytest.mark.parametrize("cls", [SGD, Momentum, Adam])
def test_resuming_from_a_saved_state_gives_identical_results(cls):
    params, grads = _problem(2)
    straight = cls(1e-2)
    p_straight = {k: v.copy() for k, v in params.items()}
    for g in grads:
        straight.step(p_straight, g)

    first = cls(1e-2)
    p = {k: v.copy() for k, v in params.items()}
    for g in grads[:3]:
        first.step(p, g)
    buffer = io.BytesIO()  # the state goes through a file as plain arrays, as a saved model's does
    np.savez(buffer, **first.state)
    buffer.seek(0)
    with np.load(buffer) as saved:
        state = {k: saved[k] for k in saved.files}
    assert state_problem(cls.name, state, p) is None
    second = cls(1e-2)
    second.state = state
    for g in grads[3:]:
        second.step(p, g)
    for k in p:
        assert np.array_equal(p[k], p_straight[k])
    for k in straight.state:
        assert np.array_equal(second.state[k], straight.state[k])


def test_scratch_space_is_not_state():
    params, grads = _problem(3)
    opt = Adam(1e-3)
    opt.step(params, grads[0])
    assert set(opt.state) == {"t", "m_W1", "v_W1", "m_b1", "v_b1"}
    assert all(not np.shares_memory(opt.state[k], s) for k in opt.state for s in opt._scratch.values())
