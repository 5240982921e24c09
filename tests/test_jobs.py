"""Training jobs: real short runs in a child process, stop, snapshots, evaluation, the model as
bytes, failure, a killed child, divergence (flagged by the loop, stopped by the job), cancel."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import replace
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
from mnist_net.model_io import ModelFileError
from mnist_net.worker import PREVIEW_UNITS, TRAINING_NICENESS, weights_preview, whole_epochs


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


# --- weights as they learn, pause / resume, train more ---------------------------------------


def test_weights_preview_pictures_the_first_layer():
    rng = np.random.default_rng(0)
    dense = {"W1": rng.standard_normal((784, 100)).astype(np.float32), "W2": np.zeros((100, 10))}
    preview = weights_preview(dense)
    assert preview.shape == (PREVIEW_UNITS, 28, 28) == (64, 28, 28) and preview.dtype == np.float32
    np.testing.assert_array_equal(preview[5], dense["W1"][:, 5].reshape(28, 28))  # unit 5's incoming weights
    assert weights_preview({"W1": dense["W1"][:, :10]}).shape == (10, 28, 28)  # fewer units: all of them
    conv = {"W1": rng.standard_normal((5, 3, 1, 32)).astype(np.float32)}  # (kh, kw, c_in, c_out)
    filters = weights_preview(conv)
    assert filters.shape == (32, 5, 3)
    np.testing.assert_array_equal(filters[7], conv["W1"][:, :, 0, 7])
    preview[0, 0, 0] = 99.0  # a copy: training's weights are not touched
    assert dense["W1"][0, 0] != 99.0
    assert weights_preview(None) is None and weights_preview({"W1": np.zeros((50, 4))}) is None  # 50: not square


def test_whole_epochs_drops_a_stopped_part_epoch():
    history = [dict(epoch=1, kind="epoch"), dict(epoch=2, kind="batch"), dict(epoch=2, kind="batch")]
    assert whole_epochs(history, 1) == history[:1]
    assert whole_epochs(history, 2) == history and whole_epochs(history, 0) == []


def test_the_job_sends_the_first_layers_weights_as_they_learn(mnist_dir):
    config = TrainConfig(hidden_sizes=(96,), epochs=2, n_train=3000, batch_size=32, log_every=2, seed=4)
    job = TrainingJob(config, mnist_dir).start()
    assert wait_until(lambda: job.snapshot().weights_preview is not None, timeout=60)
    first = job.snapshot().weights_preview
    assert first.shape == (64, 28, 28)
    np.testing.assert_array_equal(first, weights_preview(MLP(config).initialize().params_))  # the starting weights
    assert job.join(timeout=120) and job.snapshot().status == DONE
    last = job.snapshot().weights_preview
    np.testing.assert_array_equal(last, weights_preview(job.model.params_))  # the trained ones, at the end
    assert not np.allclose(first, last)


def child_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_pause_holds_training_without_cpu_and_resume_carries_on_without_counting_the_pause(mnist_dir):
    config = TrainConfig(hidden_sizes=(32,), epochs=2, n_train=4000, batch_size=16, log_every=5)
    job = TrainingJob(config, mnist_dir).start()
    assert wait_until(lambda: job.snapshot().history, timeout=60)
    assert job.pause()
    assert job.snapshot().pause_requested
    assert wait_until(lambda: job.snapshot().paused, timeout=60)
    held_from = time.monotonic()  # the child is waiting from here on, at the latest
    records, cpu = len(job.snapshot().history), child_cpu_seconds(job.pid)
    # While paused: not one more record, and (next to) no CPU, however long we look.
    assert not wait_until(lambda: len(job.snapshot().history) > records, timeout=1.5)
    assert child_cpu_seconds(job.pid) - cpu <= 0.05
    assert job.snapshot().paused and job.snapshot().running
    held = time.monotonic() - held_from  # the child was paused at least this long
    assert job.resume()
    assert wait_until(lambda: len(job.snapshot().history) > records, timeout=60)  # it carries on
    assert not job.snapshot().pause_requested
    assert job.join(timeout=120)
    snap = job.snapshot()
    assert snap.status == DONE and [h["kind"] for h in snap.history].count("epoch") == 2
    # The training clock stood still while paused: elapsed leaves out at least the time we held it.
    wall = snap.finished_at - snap.started
    assert snap.history[-1]["elapsed"] <= wall - held
    assert job.model.metrics_["train_seconds"] <= wall - held + 0.1


def test_stop_ends_a_paused_run_and_still_evaluates(mnist_dir):
    job = TrainingJob(TrainConfig(hidden_sizes=(32,), epochs=50, n_train=5000, batch_size=16, log_every=1), mnist_dir)
    job.start()
    assert wait_until(lambda: job.snapshot().history, timeout=60)
    job.pause()
    assert wait_until(lambda: job.snapshot().paused, timeout=60)
    job.stop()
    assert job.join(timeout=60)
    snap = job.snapshot()
    assert snap.status == STOPPED and snap.evaluation is not None and not snap.pause_requested
    assert not job.pause() and not job.resume()  # a finished job has nothing to pause or resume


def test_a_pause_longer_than_the_limit_ends_as_a_stop(mnist_dir):
    config = TrainConfig(hidden_sizes=(32,), epochs=50, n_train=5000, batch_size=16, log_every=1)
    job = TrainingJob(config, mnist_dir, max_pause_seconds=0.3).start()
    assert wait_until(lambda: job.snapshot().history, timeout=60)
    job.pause()
    assert job.join(timeout=60)  # never resumed: it stops by itself
    snap = job.snapshot()
    assert snap.status == STOPPED and "Paused for more than" in snap.note and snap.evaluation is not None


def test_train_more_continues_the_epochs_the_history_and_the_weights(mnist_dir):
    config = TrainConfig(hidden_sizes=(32,), activation="relu", epochs=2, n_train=2000, batch_size=32, seed=5)
    base = TrainingJob(config, mnist_dir).start()
    assert base.join(timeout=120) and base.snapshot().status == DONE
    base_bytes = base.model_bytes
    more = TrainingJob(replace(config, epochs=3), mnist_dir, base_model_bytes=base_bytes)
    before = more.snapshot()
    assert before.history == base.snapshot().history  # the curve carries on from the base's
    np.testing.assert_array_equal(before.weights_preview, base.snapshot().weights_preview)
    assert more.start().join(timeout=120)
    snap = more.snapshot()
    assert snap.status == DONE, snap.error
    epochs = [(h["epoch"], h["epochs"]) for h in snap.history if h["kind"] == "epoch"]
    assert epochs == [(1, 2), (2, 2), (3, 5), (4, 5), (5, 5)]
    model = more.model
    assert model.epochs_done_ == 5 and model.history_ == snap.history
    assert model.info_["continued_from_epoch"] == 2
    assert model.optimizer_state_ and not np.array_equal(model.params_["W1"], base.model.params_["W1"])
    assert base.model_bytes == base_bytes  # the base run is left as it was
    # Its first new batches start from the base's weights, not afresh: the loss carries on low.
    first_new = next(h for h in snap.history if h["epoch"] == 3)
    assert first_new["loss"] < base.snapshot().history[0]["loss"] / 2


def test_train_more_of_a_stopped_run_trains_its_part_epoch_again(mnist_dir):
    config = TrainConfig(hidden_sizes=(32,), epochs=50, n_train=5000, batch_size=16, log_every=1)
    base = TrainingJob(config, mnist_dir).start()
    assert wait_until(lambda: base.snapshot().history, timeout=60)
    base.stop()
    assert base.join(timeout=60) and base.snapshot().status == STOPPED
    assert base.model.epochs_done_ == 0 and base.snapshot().history[-1]["kind"] == "batch"
    more = TrainingJob(replace(config, epochs=1), mnist_dir, base_model_bytes=base.model_bytes)
    assert more.snapshot().history == []  # no whole epoch yet: its part-epoch is trained again
    assert more.start().join(timeout=120) and more.snapshot().status == DONE
    assert [h["epoch"] for h in more.snapshot().history] == [1] * len(more.snapshot().history)
    assert more.model.epochs_done_ == 1


def test_train_more_refuses_bytes_that_are_no_model(mnist_dir):
    with pytest.raises(ModelFileError):
        TrainingJob(TrainConfig(epochs=1), mnist_dir, base_model_bytes=b"not a model")
