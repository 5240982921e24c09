"""Training jobs: real short runs in a child process, stop, snapshots, evaluation, the model as
bytes, failure, a killed child, divergence (flagged by the loop, stopped by the job), cancel."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import PROJECT_ROOT, wait_until

from mnist_net import MLP, TrainConfig, model_from_bytes
from mnist_net.config import parse_hidden_sizes
from mnist_net.history import (
    CHANCE_LOSS,
    explain_divergence,
    history_columns,
    log_every_for,
    loss_diverged,
    thin_history,
)
from mnist_net.jobs import CANCELLED, DIVERGED, DONE, FAILED, STOPPED, TrainingJob, describe_exit
from mnist_net.worker import TRAINING_NICENESS


def test_parse_hidden_sizes():
    assert parse_hidden_sizes("128, 64") == (128, 64)
    assert parse_hidden_sizes("32") == (32,)
    for bad in ("", "12,x", " , "):
        with pytest.raises(ValueError, match="hidden layer"):
            parse_hidden_sizes(bad)


def test_log_every_for_gives_about_n_records():
    assert log_every_for(55000, 128, 25) == 430 // 25
    assert log_every_for(300, 64) == 1


def test_history_columns_fractional_epochs_and_nan_validation():
    h = [
        dict(epoch=1, batch=5, batches_per_epoch=10, train_acc=0.5, val_acc=None, loss=1.0, val_loss=None),
        dict(epoch=1, batch=10, batches_per_epoch=10, train_acc=0.7, val_acc=0.8, loss=0.5, val_loss=0.6),
    ]
    cols = history_columns(h)
    np.testing.assert_allclose(cols["epoch"], [0.5, 1.0])
    assert np.isnan(cols["val_acc"][0]) and cols["val_acc"][1] == 0.8


def test_thin_history_bounds_points_and_keeps_epochs():
    history = [dict(kind="epoch" if (i + 1) % 100 == 0 else "batch", i=i) for i in range(1000)]
    thin = thin_history(history, max_points=50)
    assert len(thin) <= 50 + 10
    assert [h["i"] for h in thin if h["kind"] == "epoch"] == list(range(99, 1000, 100))
    assert thin[0] is history[0] and thin[-1] is history[-1]
    assert thin_history(history[:30], max_points=50) == history[:30]


def no_files_in(folder) -> bool:
    """True if ``folder`` holds no file at all (not even a hidden temp file); a missing folder holds none."""
    return not folder.exists() or not any(folder.rglob("*"))


def test_job_trains_in_a_child_process_evaluates_and_returns_the_model(mnist, mnist_dir, models_dir):
    config = TrainConfig(
        hidden_sizes=(32,), activation="relu", epochs=2, n_train=600, batch_size=32, log_every=5, seed=3
    )
    job = TrainingJob(config, mnist_dir).start()
    assert job.pid is not None and job.pid != os.getpid()  # trained in another process
    assert job.join(timeout=120)
    snap = job.snapshot()
    assert snap.status == DONE, snap.error
    assert [h["kind"] for h in snap.history].count("epoch") == 2
    assert snap.fraction_done == 1.0 and snap.eta is None
    assert snap.evaluation.n == 10000
    model = job.model
    assert model.metrics_["test_accuracy"] == snap.evaluation.accuracy > 0.5
    assert model.metrics_["val_accuracy"] == snap.history[-1]["val_acc"]
    assert model.info_["source"] == "train page" and "T" in model.info_["trained_at"]
    # The model came back as the bytes of the safe file format, and the same model trains in-process.
    assert model_from_bytes(job.model_bytes).metrics_ == model.metrics_
    here = MLP(config).fit(mnist.X_train, mnist.y_train)
    np.testing.assert_array_equal(here.params_["W1"], model.params_["W1"])
    # The mistakes come with their images (the page needs no copy of MNIST).
    assert snap.mistake_images.shape == (len(snap.evaluation.mistakes), 784)
    assert snap.mistake_images.dtype == np.uint8 and len(snap.mistake_labels) == len(snap.evaluation.mistakes)
    # Saving is the caller's choice: a job writes no file anywhere.
    assert no_files_in(models_dir)


def test_stop_ends_early_and_still_evaluates(mnist_dir):
    config = TrainConfig(hidden_sizes=(32,), epochs=50, n_train=5000, batch_size=16, log_every=1)
    job = TrainingJob(config, mnist_dir).start()
    assert wait_until(lambda: job.snapshot().history, timeout=60)
    job.stop()
    assert job.join(timeout=60)
    snap = job.snapshot()
    assert snap.status == STOPPED and snap.history[-1]["stopped"]
    assert snap.fraction_done < 0.5
    assert job.model.info_["stopped_early"] is True
    assert snap.evaluation is not None and job.model_bytes


def test_the_training_process_yields_the_cpu_to_the_server(mnist_dir):
    config = TrainConfig(hidden_sizes=(32,), epochs=50, n_train=5000, batch_size=16, log_every=1)
    job = TrainingJob(config, mnist_dir).start()
    try:
        assert wait_until(lambda: job.snapshot().history, timeout=60)
        assert os.getpriority(os.PRIO_PROCESS, job.pid) == TRAINING_NICENESS > os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getsid(job.pid) == job.pid  # a session of its own, so the niceness counts against the server
        autogroup = Path(f"/proc/{job.pid}/autogroup")
        if autogroup.exists():
            assert autogroup.read_text().split()[-1] == str(TRAINING_NICENESS)
    finally:
        job.stop()
        assert job.join(timeout=60)


def test_snapshots_are_consistent_copies(mnist_dir):
    config = TrainConfig(hidden_sizes=(16,), epochs=1, n_train=2000, batch_size=8, log_every=1)
    job = TrainingJob(config, mnist_dir).start()
    seen = []
    stop_reading = threading.Event()

    def reader():
        while not stop_reading.is_set():
            seen.append(len(job.snapshot().history))

    t = threading.Thread(target=reader)
    t.start()
    job.join(timeout=120)
    stop_reading.set()
    t.join()
    assert seen == sorted(seen)  # history only grows, snapshots never see it shrink
    first = job.snapshot()
    first.history.clear()  # a snapshot is a copy: clearing it leaves the job intact
    assert len(job.snapshot().history) > 0


def test_missing_data_fails_with_message(tmp_path):
    job = TrainingJob(TrainConfig(epochs=1), tmp_path / "no-mnist-here").start()
    assert job.join(timeout=60)
    snap = job.snapshot()
    assert snap.status == FAILED and "not found" in snap.error and "train-images" in snap.error
    assert job.model is None and job.model_bytes is None


def test_a_killed_child_is_reported_failed_and_leaves_no_file(mnist_dir, models_dir, tmp_path):
    config = TrainConfig(hidden_sizes=(64,), epochs=100, n_train=20000, batch_size=16, log_every=1)
    job = TrainingJob(config, mnist_dir).start()
    assert wait_until(lambda: job.snapshot().history, timeout=60)
    os.kill(job.pid, signal.SIGKILL)  # what the OOM killer does
    assert job.join(timeout=60)
    snap = job.snapshot()
    assert snap.status == FAILED
    assert "ended unexpectedly" in snap.error and "SIGKILL" in snap.error
    assert job.model is None and job.model_bytes is None and snap.evaluation is None
    assert no_files_in(models_dir)
    assert describe_exit(-9).startswith("killed by SIGKILL") and describe_exit(3) == "exit code 3"


def test_a_diverging_run_is_stopped_and_explained(mnist_dir):
    config = TrainConfig(
        hidden_sizes=(128, 64), activation="relu", optimizer="sgd", learning_rate=5.0, epochs=5, n_train=2000,
        batch_size=32, log_every=1,
    )  # fmt: skip
    job = TrainingJob(config, mnist_dir).start()
    assert job.join(timeout=120)
    snap = job.snapshot()
    assert snap.status == DIVERGED
    assert "diverged in epoch 1" in snap.error and "learning rate (5) is probably too high" in snap.error
    assert "0.1" in snap.error  # what to try instead
    flagged = [h for h in snap.history if h["diverged"]]
    assert len(flagged) == 1
    # Stopped at the next batch: nowhere near the 5 epochs asked for, and nothing to keep.
    assert snap.history[-1]["stopped"] and snap.fraction_done < 0.2
    assert job.model is None and snap.evaluation is None


def test_the_loop_flags_divergence_but_leaves_stopping_to_the_caller(mnist):
    """The command line trains on after a divergence, as it always did: the loop only flags it."""
    config = TrainConfig(
        hidden_sizes=(128, 64), activation="relu", optimizer="sgd", learning_rate=5.0, epochs=2, n_train=2000,
        batch_size=32, log_every=100,
    )  # fmt: skip
    model = MLP(config)
    records = list(model.iter_fit(mnist.X_train, mnist.y_train))
    flagged = [r for r in records if r.diverged]
    assert len(flagged) == 1 and flagged[0].kind == "batch"
    assert [r.kind for r in records].count("epoch") == 2 and not any(r.stopped for r in records)
    # A healthy run is never flagged.
    healthy = MLP(TrainConfig(hidden_sizes=(32,), epochs=1, n_train=1000, batch_size=10, log_every=1))
    assert not any(r.diverged for r in healthy.iter_fit(mnist.X_train, mnist.y_train))


def test_loss_diverged_and_its_explanation():
    assert loss_diverged(float("nan"), 2.3) and loss_diverged(float("inf"), 2.3)
    assert loss_diverged(200.0, 2.3) and not loss_diverged(9.6, 2.3)  # adam at 0.05 spikes to 9.6, recovers
    assert not loss_diverged(150.0, 40.0)  # a big L2 penalty starts the loss high: growth counts, not size
    assert not loss_diverged(5.0, float("nan"))  # an unknown start counts as chance's
    assert CHANCE_LOSS == pytest.approx(2.302585)
    record = dict(epoch=2, batch=7, batches_per_epoch=40, loss=float("nan"))
    text = explain_divergence(record, "adam", 0.5)
    assert "epoch 2, batch 7 of 40" in text and "NaN" in text and "about 0.001" in text
    assert "a tenth of it" in explain_divergence(dict(record, loss=1e6), "sgd", 0.05)


def test_stopping_a_job_before_it_starts_cancels_it(mnist_dir):
    job = TrainingJob(TrainConfig(epochs=1, n_train=300), mnist_dir)
    assert job.snapshot().status == "queued" and job.pid is None
    job.stop()
    assert job.snapshot().status == CANCELLED and job.snapshot().finished
    job.start()  # a cancelled job never starts
    assert job.pid is None and job.join(timeout=1)


def test_the_child_ends_when_its_parent_dies(mnist_dir, tmp_path):
    """A server killed mid-training leaves no training process behind (its next send fails)."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from mnist_net import TrainConfig
        from mnist_net.jobs import TrainingJob
        if __name__ == "__main__":
            cfg = TrainConfig(hidden_sizes=(64,), epochs=100, n_train=20000, batch_size=16, log_every=1)
            job = TrainingJob(cfg, {str(mnist_dir)!r}).start()
            while not job.snapshot().history:
                time.sleep(0.05)
            print(job.pid, flush=True)
            time.sleep(600)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        child = int(parent.stdout.readline())
        assert _alive(child)
        parent.kill()
        parent.wait(timeout=30)
        assert wait_until(lambda: not _alive(child), timeout=60)
    finally:
        if parent.poll() is None:
            parent.kill()
        if "child" in locals() and _alive(child):
            os.kill(child, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
