"""Optimisers: update rules over parameter dicts keyed like the gradients ("W1", "b1", ...).

Each optimiser keeps its state in a plain dict of arrays (``state``) so a saved
model can carry it and a run can resume exactly.
"""

from __future__ import annotations

import numpy as np


class SGD:
    """Plain gradient descent: p -= lr * g."""

    name = "sgd"

    def __init__(self, learning_rate: float, **_: float) -> None:
        self.learning_rate = learning_rate
        self.state: dict[str, np.ndarray] = {}
        self._scratch: dict[str, np.ndarray] = {}

    def scratch(self, key: str, like: np.ndarray) -> np.ndarray:
        """A workspace array shaped like ``like``, kept across steps (workspace, not state)."""
        s = self._scratch.get(key)
        if s is None or s.shape != like.shape or s.dtype != like.dtype:
            s = self._scratch[key] = np.empty_like(like)
        return s

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        for k, g in grads.items():
            params[k] -= np.multiply(g, self.learning_rate, out=self.scratch(k, params[k]))


class Momentum(SGD):
    """Heavy-ball momentum: v = mu * v - lr * g; p += v."""

    name = "momentum"

    def __init__(self, learning_rate: float, momentum: float = 0.9, **_: float) -> None:
        super().__init__(learning_rate)
        self.momentum = momentum

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        for k, g in grads.items():
            v = self.state.get("v_" + k)
            if v is None:
                v = self.state["v_" + k] = np.zeros_like(params[k])
            v *= self.momentum
            v -= np.multiply(g, self.learning_rate, out=self.scratch(k, v))
            params[k] += v


class Adam(SGD):
    """Adam (Kingma & Ba, 2015) with bias correction.

    Updated in place through one scratch array per parameter, kept across steps: no
    temporaries, because Adam touches every weight at every step and is memory bound.
    Twelve passes over each parameter's memory (3 for m, 4 for v, 5 for the update: NumPy cannot
    fuse them further), both bias corrections folded into one scalar step size. The scratch
    arrays are workspace, not state: the saved state keeps its keys t, m_<p>, v_<p>.
    """

    name = "adam"
    beta1, beta2, eps = 0.9, 0.999, 1e-8

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        t = self.state["t"] = self.state.get("t", np.zeros((), np.int64)) + 1
        # lr * sqrt(1 - beta2^t) / (1 - beta1^t): the same update as correcting m and v, fewer array ops.
        lr_t = float(self.learning_rate * np.sqrt(1 - self.beta2**t) / (1 - self.beta1**t))
        for k, g in grads.items():
            m = self.state.get("m_" + k)
            if m is None:
                m = self.state["m_" + k] = np.zeros_like(params[k])
                self.state["v_" + k] = np.zeros_like(params[k])
            v = self.state["v_" + k]
            scratch = self.scratch(k, params[k])
            m *= self.beta1  # m = beta1 m + (1 - beta1) g
            m += np.multiply(g, 1 - self.beta1, out=scratch)
            np.square(g, out=scratch)  # v = beta2 v + (1 - beta2) g^2
            scratch *= 1 - self.beta2
            v *= self.beta2
            v += scratch
            np.sqrt(v, out=scratch)  # p -= lr_t m / (sqrt(v) + eps)
            scratch += self.eps
            np.divide(m, scratch, out=scratch)
            scratch *= lr_t
            params[k] -= scratch


OPTIMIZERS = {cls.name: cls for cls in (SGD, Momentum, Adam)}


def make_optimizer(name: str, learning_rate: float, momentum: float = 0.9) -> SGD:
    try:
        cls = OPTIMIZERS[name]
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; choose from {sorted(OPTIMIZERS)}") from None
    return cls(learning_rate=learning_rate, momentum=momentum)


def expected_state_keys(name: str, param_names: list[str]) -> set[str]:
    """The keys a complete state of optimizer ``name`` holds once it has taken a step.

    sgd keeps nothing; momentum a velocity ``v_<p>`` per parameter; adam the step count ``t``
    and both moments ``m_<p>``, ``v_<p>``. An empty state (no step yet) is valid for all three.
    """
    if name == "sgd":
        return set()
    if name == "momentum":
        return {"v_" + p for p in param_names}
    if name == "adam":
        return {"t"} | {f"{m}_{p}" for p in param_names for m in "mv"}
    raise ValueError(f"unknown optimizer {name!r}; choose from {sorted(OPTIMIZERS)}")


def state_problem(name: str, state: dict[str, np.ndarray], params: dict[str, np.ndarray]) -> str | None:
    """Why ``state`` cannot resume optimizer ``name`` on ``params``, or None if it can.

    Checks the keys (all or nothing), shapes, finiteness and signs: Adam's second moment is
    never negative; momentum's velocity may be.
    """
    if not state:
        return None
    expected = expected_state_keys(name, list(params))
    if set(state) != expected:
        missing, extra = sorted(expected - set(state))[:3], sorted(set(state) - expected)[:3]
        return f"the {name} optimizer state is incomplete or does not fit (missing {missing}, unexpected {extra})"
    for key, value in state.items():
        if key == "t":
            if value.shape != () or value.dtype.kind not in "iu" or int(value) < 0:
                return "the optimizer step count t must be a non-negative integer"
            continue
        param = params[key.partition("_")[2]]
        if value.shape != param.shape:
            return f"optimizer state {key} has shape {value.shape}, the parameter {param.shape}"
        if value.dtype.kind != "f" or not np.all(np.isfinite(value)):
            return f"optimizer state {key} holds NaN, infinite or non-float values"
        if name == "adam" and key.startswith("v_") and value.min() < 0:
            return f"optimizer state {key} (Adam's second moment) holds negative values"
    return None
