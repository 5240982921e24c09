"""The command line: exit codes, one-line errors, train -> evaluate -> predict on real MNIST."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import HAVE_MNIST, MNIST_DIR
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
needs_mnist = pytest.mark.skipif(not HAVE_MNIST, reason="needs MNIST_DIR")


def run(*args, env_extra=None, timeout=300):
    env = {**os.environ, "MNIST_DIR": str(MNIST_DIR), **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "mnist_net", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("args", [[], ["train"], ["evaluate"], ["predict"]])
def test_help_everywhere(args):
    r = run(*args, "--help")
    assert r.returncode == 0 and "usage:" in r.stdout


def test_no_command_is_a_usage_error():
    r = run()
    assert r.returncode == 2 and "usage:" in r.stderr


def test_missing_model_is_one_line_not_a_traceback(tmp_path):
    r = run("evaluate", str(tmp_path / "nope.pkl"))
    assert r.returncode == 1
    assert r.stderr.strip() == f"error: {tmp_path / 'nope.pkl'}: no such model file"


def test_hostile_model_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"cos\nsystem\n(S'echo hi'\ntR.")
    r = run("evaluate", str(bad))
    assert r.returncode == 1 and "Traceback" not in r.stderr and "refused" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_missing_mnist_offline_says_what_to_do(tmp_path):
    r = run(
        "train",
        "--no-download",
        "--out",
        str(tmp_path / "m.pkl"),
        env_extra={"MNIST_DIR": "", "XDG_CACHE_HOME": str(tmp_path)},
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "MNIST_DIR" in r.stderr and "not found" in r.stderr
    assert not (tmp_path / "m.pkl").exists()


def test_invalid_option_value(tmp_path):
    r = run("train", "--epochs", "0", "--out", str(tmp_path / "m.pkl"))
    assert r.returncode == 1 and "epochs must be >= 1" in r.stderr
    r = run("train", "--hidden", "12,x")
    assert r.returncode == 2 and "comma-separated integers" in r.stderr


@needs_mnist
def test_train_evaluate_predict_round_trip(tmp_path):
    out = tmp_path / "m.pkl"
    r = run(
        "train",
        "--n-train",
        "3000",
        "--epochs",
        "2",
        "--hidden",
        "64",
        "--activation",
        "relu",
        "--lr",
        "0.003",
        "--seed",
        "1",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    assert "test accuracy" in r.stdout and out.exists()
    assert "ETA" in r.stderr  # the progress bar
    r2 = run("train", "--epochs", "1", "--out", str(out))
    assert r2.returncode == 1 and "--force" in r2.stderr  # never silently overwrite

    r = run("evaluate", str(out))
    assert r.returncode == 0
    acc = float(r.stdout.split("test accuracy: ")[1].split()[0])
    assert acc > 0.85
    assert "confusion matrix" in r.stdout and r.stdout.count("\n") > 20

    from mnist_net import load_mnist, load_model

    model = load_model(out)
    assert model.info_["command"].startswith("python -m mnist_net train")
    assert model.metrics_["test_accuracy"] == pytest.approx(acc)
    # predict: a real test digit as a PNG, and a non-image file.
    d = load_mnist(MNIST_DIR)
    idx = int(np.flatnonzero(model.predict(d.X_test[:200]) == d.y_test[:200])[0])
    Image.fromarray(d.X_test[idx].reshape(28, 28)).save(tmp_path / "digit.png")
    (tmp_path / "notes.txt").write_text("not an image")
    r = run("predict", str(out), str(tmp_path / "digit.png"), str(tmp_path / "notes.txt"))
    assert r.returncode == 1  # one of the inputs failed
    assert f"digit.png: {d.y_test[idx]} (p=" in r.stdout
    assert "notes.txt: error:" in r.stderr and "Traceback" not in r.stderr


@needs_mnist
def test_resume_continues_training(tmp_path):
    out = tmp_path / "m.pkl"
    assert run("train", "--n-train", "1000", "--epochs", "1", "--hidden", "16", "--out", str(out)).returncode == 0
    r = run("train", "--resume", str(out), "--epochs", "1", "--out", str(out))
    assert r.returncode == 0, r.stderr
    from mnist_net import load_model

    assert load_model(out).epochs_done_ == 2


@needs_mnist
def test_ctrl_c_stops_at_the_next_batch_and_saves(tmp_path):
    import signal
    import time

    out = tmp_path / "m.pkl"
    env = {**os.environ, "MNIST_DIR": str(MNIST_DIR)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mnist_net",
            "train",
            "--epochs",
            "50",
            "--hidden",
            "32",
            "--log-every",
            "1",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Wait until training is under way (the progress bar shows a batch count), then press Ctrl-C.
    seen = ""
    deadline = time.time() + 120
    while "img/s" not in seen and time.time() < deadline:
        seen += proc.stderr.read(64)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "stopping after this batch" in stderr and "Traceback" not in stderr
    assert "saved" in stdout
    from mnist_net import load_model

    model = load_model(out)
    assert model.info_["stopped_early"] is True and model.epochs_done_ == 0
    assert model.history_[-1]["stopped"] and model.history_[-1]["batch"] < 430
