"""Shared fixtures: the real MNIST files, a small real model, an empty models folder."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

# Fixtures of the browser tests (the real app, headless Chromium), for every tests/test_browser*.py.
pytest_plugins = ["browser_kit"]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The one place tests look for MNIST: $MNIST_DIR, else the shared folder beside the checkout.
MNIST_DIR = Path(os.environ.get("MNIST_DIR") or PROJECT_ROOT.parent / "shared" / "mnist")
HAVE_MNIST = (MNIST_DIR / "t10k-labels-idx1-ubyte.gz").exists()


def block_digits(n: int = 200, seed: int = 0):
    """A tiny learnable set (X (n, 784) float32 in [0, 1], y (n,)): each class lights up its own block of pixels."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 10
    X = rng.random((n, 784), dtype=np.float32) * 0.3
    for c in range(10):
        X[y == c, c * 78 : (c + 1) * 78] += 0.7
    return np.clip(X, 0, 1), y


def wait_until(condition: Callable[[], object], timeout: float = 60.0, interval: float = 0.05) -> bool:
    """Poll ``condition`` until it is true or ``timeout`` seconds pass; returns whether it came true.

    Tests wait for what they expect this way, never by sleeping a fixed time and hoping.
    """
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


@pytest.fixture(autouse=True)
def own_runs_folder(tmp_path_factory, monkeypatch) -> None:
    """Finished runs that tests keep go to a folder of their own, never the user's ~/.cache.

    (The browser tests' app servers start before this, with a cache folder of their own.)
    """
    monkeypatch.setenv("MNIST_NET_RUNS_DIR", str(tmp_path_factory.mktemp("runs")))


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """Folder holding the four MNIST .gz files (``$MNIST_DIR``, else ``../shared/mnist``)."""
    if not HAVE_MNIST:
        pytest.skip(f"needs the MNIST files in {MNIST_DIR} (set MNIST_DIR)")
    return MNIST_DIR


@pytest.fixture(scope="session")
def mnist(mnist_dir):
    """The real data set, loaded once per test session (read-only: do not modify its arrays)."""
    from mnist_net import load_mnist

    return load_mnist(mnist_dir, download=False, progress=False)


@pytest.fixture(scope="session")
def small_model(mnist):
    """A real model trained for 3 epochs on 10,000 MNIST images (~93% test accuracy), seconds to fit."""
    from mnist_net import MLP

    model = MLP(hidden_sizes=(64,), activation="relu", epochs=3, n_train=10000, seed=1, batch_size=64)
    model.fit(mnist.X_train, mnist.y_train)
    model.metrics_ = {"test_accuracy": model.score(mnist.X_test, mnist.y_test)}
    model.info_ = {"trained_at": "2026-11-28T10:00:00+00:00", "source": "test fixture"}
    return model


@pytest.fixture
def models_dir(tmp_path, monkeypatch) -> Path:
    """An empty models folder, made the app's folder via MNIST_NET_MODELS_DIR."""
    folder = tmp_path / "models"
    monkeypatch.setenv("MNIST_NET_MODELS_DIR", str(folder))
    return folder
