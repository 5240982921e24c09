"""The training generator: progress records, stopping at the next batch, resuming."""

import numpy as np
from conftest import block_digits

from mnist_net import MLP, load_model, save_model


def test_records_are_complete_and_monotonic():
    X, y = block_digits()
    model = MLP(hidden_sizes=(16,), epochs=3, batch_size=32, log_every=2, learning_rate=1e-2)
    records = list(model.iter_fit(X, y))
    assert records[-1].kind == "epoch" and records[-1].epoch == 3
    elapsed = [r.elapsed for r in records]
    assert elapsed == sorted(elapsed)
    fractions = [r.fraction_done for r in records]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    for r in records:
        assert r.loss > 0 and 0 <= r.train_acc <= 1 and r.samples_per_s > 0 and r.eta >= 0
    assert records[-1].val_acc > 0.9  # the blocks are easy
    assert len(model.history_) == len(records)


def test_stop_ends_the_run_at_the_next_batch():
    X, y = block_digits()
    model = MLP(hidden_sizes=(16,), epochs=50, batch_size=10, log_every=1000)
    calls = []

    def stop():
        calls.append(1)
        return len(calls) >= 3

    records = list(model.iter_fit(X, y, stop=stop))
    assert len(calls) == 3  # checked once per batch, stopped right after the third
    assert records[-1].stopped and records[-1].epoch == 1 and records[-1].batch == 3
    assert model.params_ is not None
    assert np.all(np.isfinite(model.predict_proba(X)))


def test_resume_from_a_saved_model_continues(tmp_path):
    X, y = block_digits()
    model = MLP(hidden_sizes=(16,), epochs=2, batch_size=32, seed=3)
    model.fit(X, y)
    path = save_model(model, tmp_path / "m.pkl")
    resumed = load_model(path)
    assert resumed.epochs_done_ == 2 and resumed.optimizer_state_  # adam moments came along
    records = list(resumed.iter_fit(X, y))
    assert [r.epoch for r in records if r.kind == "epoch"] == [3, 4]
    assert resumed.epochs_done_ == 4
    assert len(resumed.history_) == len(model.history_) + len(records)
    # Resuming picks up the saved Adam step count rather than restarting it.
    assert int(resumed.optimizer_state_["t"]) > int(model.optimizer_state_["t"])


def test_n_train_subset_is_stratified_and_used():
    X, y = block_digits(500)
    model = MLP(hidden_sizes=(8,), epochs=1, batch_size=10, n_train=100, val_fraction=0.2, log_every=1)
    records = list(model.iter_fit(X, y))
    assert records[-1].batches_per_epoch == 8  # 80 training images / batch 10


def test_epoch_is_booked_before_its_record_is_yielded(tmp_path):
    # A caller that saves at an epoch record and stops there must save a consistent model.
    X, y = block_digits()
    model = MLP(hidden_sizes=(8,), epochs=3, batch_size=50)
    for record in model.iter_fit(X, y):
        if record.kind == "epoch":
            assert model.epochs_done_ == record.epoch
            assert int(model.optimizer_state_["t"]) == record.epoch * record.batches_per_epoch
            break
    assert load_model(save_model(model, tmp_path / "m.pkl")).epochs_done_ == 1


def test_blas_threads_are_limited_only_while_training_computes():
    from threadpoolctl import threadpool_info

    def blas_threads():
        return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]

    before = blas_threads()
    X, y = block_digits()
    for _ in MLP(hidden_sizes=(8,), epochs=1, batch_size=50, log_every=1, threads=1).iter_fit(X, y):
        assert blas_threads() == before  # the caller's own setting at every yield
