"""Training jobs: a real short run in a thread, stop, snapshots, evaluation, save, failure."""

import threading
import time

import numpy as np
import pytest

from mnist_net import TrainConfig, load_model
from mnist_net.config import parse_hidden_sizes
from mnist_net.history import history_columns, log_every_for, thin_history
from mnist_net.jobs import DONE, FAILED, STOPPED, TrainingJob


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


def test_job_trains_evaluates_and_saves(mnist, models_dir):
    config = TrainConfig(
        hidden_sizes=(32,), activation="relu", epochs=2, n_train=600, batch_size=32, log_every=5, seed=3
    )
    job = TrainingJob(config, mnist).start()
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
    assert snap.saved_path.parent == models_dir and snap.saved_path.exists()
    assert load_model(snap.saved_path).metrics_ == model.metrics_


def test_stop_ends_early_and_still_evaluates(mnist, tmp_path):
    config = TrainConfig(hidden_sizes=(32,), epochs=50, n_train=5000, batch_size=16, log_every=1)
    job = TrainingJob(config, mnist, save_dir=tmp_path).start()
    deadline = time.time() + 60
    while not job.snapshot().history and time.time() < deadline:
        time.sleep(0.01)
    job.stop()
    assert job.join(timeout=60)
    snap = job.snapshot()
    assert snap.status == STOPPED and snap.history[-1]["stopped"]
    assert snap.fraction_done < 0.5
    assert job.model.info_["stopped_early"] is True
    assert snap.evaluation is not None and snap.saved_path.exists()


def test_snapshots_are_consistent_copies(mnist, tmp_path):
    config = TrainConfig(hidden_sizes=(16,), epochs=1, n_train=2000, batch_size=8, log_every=1)
    job = TrainingJob(config, mnist, autosave=False).start()
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
    assert job.snapshot().saved_path is None


def test_bad_data_fails_with_message(mnist):
    class Broken:
        X_train = np.zeros((20, 784), np.uint8)
        y_train = np.full(20, 12, np.uint8)  # not digits
        X_test, y_test, data_hash = mnist.X_test, mnist.y_test, "x"

    job = TrainingJob(TrainConfig(epochs=1), Broken(), autosave=False).start()
    assert job.join(timeout=30)
    snap = job.snapshot()
    assert snap.status == FAILED and "digits" in snap.error and job.model is None
