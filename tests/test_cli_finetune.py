"""The command line's ``finetune MODEL DIGITS.npz --out NEW.pkl`` and ``evaluate MODEL --digits DIGITS.npz``."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import HAVE_MNIST
from test_cli import run

from mnist_net import DigitSet, load_model, save_digit_set, save_model
from mnist_net.digitset import THUMB_SIDE

needs_mnist = pytest.mark.skipif(not HAVE_MNIST, reason="needs MNIST_DIR")


def digit_set_from(X: np.ndarray, y: np.ndarray) -> DigitSet:
    n = len(y)
    return DigitSet(
        (X.reshape(n, 784) / 255).astype(np.float32),
        y.astype(np.int64),
        np.zeros((n, THUMB_SIDE, THUMB_SIDE), np.uint8),
        np.full(n, 1_764_000_000.0),
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory, mnist, small_model):
    """A small real model, and a digit set of 4 MNIST test digits per class whose ink is shifted
    3 px right (a "writer" with a habit), saved as files."""
    folder = tmp_path_factory.mktemp("finetune_cli")
    model_path = save_model(small_model, folder / "base.pkl")
    idx = np.concatenate([np.flatnonzero(mnist.y_test == c)[:4] for c in range(10)])
    shifted = np.roll(mnist.X_test[idx].reshape(-1, 28, 28), 3, axis=2)
    set_path = save_digit_set(folder / "mine.npz", digit_set_from(shifted, mnist.y_test[idx]))
    return folder, model_path, set_path


def test_help_names_both_commands():
    r = run("finetune", "--help")
    assert r.returncode == 0 and "DIGITS.npz" in r.stdout and "--held-out" in r.stdout
    r = run("evaluate", "--help")
    assert r.returncode == 0 and "--digits" in r.stdout


@needs_mnist
def test_finetune_saves_a_tuned_model_and_reports_before_and_after(files):
    folder, model_path, set_path = files
    out = folder / "tuned.pkl"
    r = run("finetune", str(model_path), str(set_path), "--out", str(out), "--steps", "40", "--held-out", "0.25")
    assert r.returncode == 0, r.stderr
    assert "held-out personal digits (10): accuracy" in r.stdout
    assert "MNIST test accuracy" in r.stdout and f"saved {out}" in r.stdout
    tuned = load_model(out)
    record = tuned.fine_tune_
    assert record is not None and record["personal_counts"] == [3] * 10 and record["steps_done"] == 40
    assert record["options"]["steps"] == 40 and "finetune" in tuned.info_["command"]
    assert tuned.metrics_["test_accuracy"] == record["figures"]["test_after"]
    # Without --force an existing --out is kept, and nothing is tuned.
    before = out.read_bytes()
    r = run("finetune", str(model_path), str(set_path), "--out", str(out), "--steps", "2")
    assert r.returncode == 1 and "--force" in r.stderr and out.read_bytes() == before
    # The tuned model says what it was tuned on when evaluated.
    r = run("evaluate", str(out), "--digits", str(set_path))
    assert r.returncode == 0 and "fine-tuned on 30 personal digits" in r.stdout


def test_evaluate_digits_prints_accuracy_per_class_without_mnist(files, tmp_path):
    _, model_path, set_path = files
    env = {"MNIST_DIR": "", "XDG_CACHE_HOME": str(tmp_path)}  # no MNIST anywhere: not needed
    r = run("evaluate", str(model_path), "--digits", str(set_path), "--no-download", env_extra=env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert any(line.startswith(f"accuracy on {set_path}: ") and line.endswith("/40)") for line in lines)
    assert sum(1 for line in lines if line.strip()[:2] in {f"{d}:" for d in range(10)}) == 10
    assert "(4)" in r.stdout


def test_bad_digit_files_and_options_are_one_line_errors(files, tmp_path):
    _, model_path, set_path = files
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 this is no zip")
    for args in (
        ["evaluate", str(model_path), "--digits", str(bad)],
        ["evaluate", str(model_path), "--digits", str(tmp_path / "missing.npz")],
        ["finetune", str(model_path), str(bad), "--out", str(tmp_path / "o.pkl")],
        ["finetune", str(model_path), str(set_path), "--out", str(tmp_path / "o.pkl"), "--steps", "0"],
        ["finetune", str(model_path), str(set_path), "--out", str(tmp_path / "o.pkl"), "--held-out", "1.5"],
        ["finetune", str(tmp_path / "nope.pkl"), str(set_path), "--out", str(tmp_path / "o.pkl")],
    ):
        r = run(*args)
        assert r.returncode == 1, (args, r.stderr)
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "o.pkl").exists()
    empty = save_digit_set(tmp_path / "empty.npz", DigitSet.empty())
    r = run("finetune", str(model_path), str(empty), "--out", str(tmp_path / "o.pkl"))
    assert r.returncode == 1 and "no digits" in r.stderr
