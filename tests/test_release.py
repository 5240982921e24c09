"""Shipping a model: ``export`` drops what differs between runs, so one seeded command gives one file."""

import hashlib

import numpy as np
import pytest
from conftest import HAVE_MNIST
from test_cli import run

from mnist_net import load_model
from mnist_net.model_io import WALL_CLOCK_PROGRESS, release_copy

needs_mnist = pytest.mark.skipif(not HAVE_MNIST, reason="needs MNIST_DIR")


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@needs_mnist
def test_same_command_same_bytes_after_export(tmp_path):
    # A tiny CNN with augmentation and dropout: every source of randomness is seeded.
    args = ["--layers", "conv 4x5x5 -> pool 2 -> dense 16 -> dropout 0.2 -> dense 10", "--augment", "--style-prob"]
    args += ["0.3", "--n-train", "600", "--epochs", "2", "--seed", "3", "--val-fraction", "0.1", "--quiet"]
    out = tmp_path / "model.pkl"  # the same path both times: the file records the command, --out included
    trained, shipped = [], []
    for name in ("a", "b"):
        assert run("train", *args, "--out", str(out)).returncode == 0
        trained.append(out.rename(tmp_path / f"{name}.pkl"))
        shipped.append(tmp_path / f"{name}-ship.pkl")
        r = run("export", str(trained[-1]), "--out", str(shipped[-1]))
        assert r.returncode == 0, r.stderr
    assert sha(trained[0]) != sha(trained[1])  # the raw files record when and how fast they trained
    assert sha(shipped[0]) == sha(shipped[1])
    original, copy = load_model(trained[0]), load_model(shipped[0])
    assert original.optimizer_state_ and not copy.optimizer_state_
    assert shipped[0].stat().st_size < 0.5 * trained[0].stat().st_size  # Adam's two moments per weight are gone
    assert "trained_at" not in copy.info_ and copy.info_["command"] == original.info_["command"]
    assert all(k not in r for r in copy.history_ for k in WALL_CLOCK_PROGRESS)
    assert [r["loss"] for r in copy.history_] == [r["loss"] for r in original.history_]
    X = np.random.default_rng(0).random((5, 784), dtype=np.float32)
    np.testing.assert_array_equal(copy.predict_proba(X), original.predict_proba(X))
    r = run("export", str(trained[0]), "--out", str(shipped[0]))
    assert r.returncode == 1 and "--force" in r.stderr  # never silently overwrite


def test_release_copy_leaves_the_model_alone(small_model):
    before = small_model.state_dict()
    copy = release_copy(small_model)
    assert copy is not small_model and small_model.info_ == before["info"]
    assert "trained_at" in small_model.info_ and "trained_at" not in copy.info_
