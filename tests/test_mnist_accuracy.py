"""Accuracy floor on the real MNIST test set (needs MNIST_DIR; about half a minute)."""

import os
from pathlib import Path

import pytest

from mnist_net import MLP, load_mnist

MNIST_DIR = os.environ.get("MNIST_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "mnist"))


@pytest.mark.slow
@pytest.mark.skipif(not Path(MNIST_DIR, "train-images-idx3-ubyte.gz").exists(), reason="needs MNIST_DIR")
def test_default_network_reaches_97_percent_within_10_epochs():
    d = load_mnist(MNIST_DIR, download=False)
    model = MLP(epochs=10, seed=0)  # the defaults: 784-128-64-10 sigmoid, as in the notebook
    assert model.layer_sizes == [784, 128, 64, 10] and model.activation == "sigmoid"
    model.fit(d.X_train, d.y_train)
    acc = model.score(d.X_test, d.y_test)
    print(f"default network, 10 epochs: test accuracy {acc:.4f}")
    assert acc >= 0.97
