"""The shipped default model: it loads with no arguments, says how it was made, and is accurate
on the official MNIST test set and on digits drawn the way people draw them on a canvas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mnist_net import canvas_to_input, load_model
from mnist_net.synth import SCHEMES, naive_input, random_stroke, render

DEFAULT = Path(__file__).resolve().parents[1] / "assets" / "default_model.pkl"


@pytest.fixture(scope="module")
def model():
    return load_model()  # no argument: the shipped assets/default_model.pkl


# ``mnist`` (the real data set from MNIST_DIR) comes from conftest.py.


def test_default_model_loads_and_is_small(model):
    assert DEFAULT.is_file() and DEFAULT.stat().st_size < 5 * 1024 * 1024
    assert model.layer_sizes[0] == 784 and model.layer_sizes[-1] == 10
    assert model.predict_proba(np.zeros((1, 784))).shape == (1, 10)


def test_metadata_records_how_it_was_made(model):
    command = model.info_["command"]
    assert command.startswith("python -m mnist_net train ")
    assert "--seed" in command and "--augment" in command and "assets/default_model.pkl" in command
    assert not model.info_.get("stopped_early")
    assert model.config.augment and model.metrics_["test_accuracy"] >= 0.99


def test_mnist_test_accuracy(model, mnist):
    acc = model.score(mnist.X_test, mnist.y_test)
    assert acc >= 0.99
    assert acc == pytest.approx(model.metrics_["test_accuracy"], abs=1e-4)  # the metadata is true
    assert model.data_hash_ == mnist.data_hash


def test_drawn_digit_accuracy(model, mnist):
    rng = np.random.default_rng(2024)
    idx = rng.choice(len(mnist.X_test), 120, replace=False)
    right = {s: [] for s in SCHEMES}
    naive_right = []
    for i in idx:
        stroke = random_stroke(rng)
        for scheme in SCHEMES:
            canvas = render(mnist.X_test[i], stroke, scheme, rng)
            x = canvas_to_input(canvas)
            assert x is not None
            right[scheme].append(model.predict(x[None])[0] == mnist.y_test[i])
            naive_right.append(model.predict(naive_input(canvas)[None])[0] == mnist.y_test[i])
    per_scheme = {s: float(np.mean(v)) for s, v in right.items()}
    overall = float(np.mean([r for v in right.values() for r in v]))
    assert overall >= 0.95, per_scheme
    assert min(per_scheme.values()) >= 0.92, per_scheme
    assert overall > float(np.mean(naive_right)) + 0.3  # the preprocessing is what makes it work
