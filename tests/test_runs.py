"""The server's run registry with real training processes: users see and control only their own
runs, at most N train at once (the rest wait their turn), bounds per user and in all, budget
refusals, and keep / rename / delete touching only the file the registry itself wrote."""

import os
import re
import signal
import time
from datetime import UTC, datetime

import numpy as np
import pytest
from conftest import wait_until

from mnist_net import DigitSet, FineTuneOptions, TrainConfig, fine_tune, load_model, split_held_out
from mnist_net.finetune import model_sha256
from mnist_net.jobs import CANCELLED, DONE, FAILED, QUEUED, STOPPED
from mnist_net.model_io import model_from_bytes, model_to_bytes
from mnist_net.registry import list_models, model_filename
from mnist_net.run_store import RunStore, RunStoreError, read_run_file, run_file_bytes
from mnist_net.runs import (
    FINE_TUNE_RUN,
    MAX_MORE_EPOCHS,
    MORE_RUN,
    RunRefused,
    RunRegistry,
    kept_file_names,
    name_slug,
    new_user_id,
    valid_user_id,
)
from mnist_net.worker import HELD_OUT_FRACTION, HELD_OUT_SEED


def tiny(seed: int = 0) -> TrainConfig:
    return TrainConfig(hidden_sizes=(16,), activation="relu", epochs=1, n_train=300, batch_size=32, seed=seed)


def long_run() -> TrainConfig:
    """Minutes of training unless stopped."""
    return TrainConfig(hidden_sizes=(64,), epochs=100, n_train=20000, batch_size=16, log_every=1)


@pytest.fixture
def registry():
    reg = RunRegistry()
    yield reg
    reg.stop_all(timeout=60)  # never leave a training process behind


def finished(registry, user, run_id, timeout=120, store_dir=None):
    """The run's view once it has finished (and, given ``store_dir``, once it is in that store:
    the registry writes it there just after the status turns)."""
    assert wait_until(lambda: registry.get(user, run_id).snapshot.finished, timeout=timeout)
    if store_dir is not None:
        assert wait_until(lambda: (store_dir / user / f"{run_id}.npz").exists(), timeout=timeout)
    return registry.get(user, run_id)


def test_user_ids_are_unguessable_and_only_our_own_shape_is_accepted():
    ids = {new_user_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(valid_user_id(i) and len(i) == 32 for i in ids)
    for bad in ("", "abc", "x" * 31, "x" * 33, "../" + "x" * 29, "x" * 31 + "\n", None, 12345, ["x" * 32]):
        assert not valid_user_id(bad)
    reg = RunRegistry()
    assert reg.runs("not an id") == [] and reg.settings("nope") == {}
    with pytest.raises(ValueError):
        reg.submit("not an id", tiny(), "/nowhere")


def test_each_user_sees_and_controls_only_their_own_runs(registry, mnist_dir, models_dir):
    alice, bob = new_user_id(), new_user_id()
    run_id = registry.submit(alice, long_run(), mnist_dir)
    assert [v.id for v in registry.runs(alice)] == [run_id]
    assert wait_until(lambda: registry.get(alice, run_id).snapshot.history, timeout=60)
    # Bob knows nothing of it, even given its id: he cannot see, stop, keep, rename or forget it.
    assert registry.runs(bob) == [] and registry.get(bob, run_id) is None and registry.job(bob, run_id) is None
    assert registry.stop(bob, run_id) is False
    assert registry.get(alice, run_id).snapshot.running
    for action in (lambda: registry.keep(bob, run_id, "mine"), lambda: registry.rename(bob, run_id, "x")):
        with pytest.raises(RunRefused, match="no such run"):
            action()
    registry.forget(bob, run_id)
    assert registry.get(alice, run_id) is not None
    # Alice stops it; the model trained so far is evaluated and stays in the run, unsaved.
    assert registry.stop(alice, run_id)
    view = finished(registry, alice, run_id)
    assert view.snapshot.status == STOPPED and view.has_model and view.kept_path is None
    assert list_models() == []


def test_at_most_max_running_train_at_once_and_the_rest_wait_their_turn(mnist_dir):
    registry = RunRegistry(max_running=1)
    try:
        first, second, third = new_user_id(), new_user_id(), new_user_id()
        a = registry.submit(first, long_run(), mnist_dir)
        b = registry.submit(second, tiny(), mnist_dir)
        c = registry.submit(third, tiny(), mnist_dir)
        assert registry.running_count() == 1
        waiting = registry.get(second, b)
        assert waiting.snapshot.status == QUEUED and waiting.queue_position == 0 and waiting.snapshot.started is None
        assert registry.get(third, c).queue_position == 1
        # The third gives up while waiting: cancelled, never started, and the second moves on first.
        registry.stop(third, c)
        assert registry.get(third, c).snapshot.status == CANCELLED
        assert wait_until(lambda: registry.get(first, a).snapshot.history, timeout=60)
        assert registry.get(second, b).snapshot.status == QUEUED  # still waiting: the slot is taken
        registry.stop(first, a)
        assert finished(registry, second, b).snapshot.status == DONE  # started as soon as the slot freed
        assert registry.get(third, c).snapshot.started is None
    finally:
        registry.stop_all(timeout=60)


def test_one_unfinished_run_per_user_a_bounded_queue_and_the_budget(mnist_dir):
    registry = RunRegistry(max_running=1, max_waiting=1)
    try:
        me, other, third = new_user_id(), new_user_id(), new_user_id()
        registry.submit(me, long_run(), mnist_dir)
        with pytest.raises(RunRefused, match="already have a run"):
            registry.submit(me, tiny(), mnist_dir)
        registry.submit(other, tiny(), mnist_dir)  # waits
        with pytest.raises(RunRefused, match="server is busy"):
            registry.submit(third, tiny(), mnist_dir)
        with pytest.raises(RunRefused, match="cannot run that.*hours"):
            registry.submit(third, TrainConfig(hidden_sizes=(4096, 2048), epochs=10_000), mnist_dir)
    finally:
        registry.stop_all(timeout=60)


def test_keep_rename_and_delete_touch_only_the_file_the_registry_wrote(registry, mnist_dir, models_dir):
    me = new_user_id()
    run_id = registry.submit(me, tiny(), mnist_dir)
    view = finished(registry, me, run_id)
    assert view.snapshot.status == DONE and list_models() == []  # nothing saved until kept
    path = registry.keep(me, run_id, "My best net!")
    accuracy = view.snapshot.evaluation.accuracy
    assert path.parent == models_dir
    assert re.fullmatch(rf"mnist-\d{{8}}-\d{{6}}-acc{100 * accuracy:.2f}-My-best-net\.pkl", path.name), path.name
    assert load_model(path).metrics_["test_accuracy"] == accuracy
    assert registry.get(me, run_id).name == "My best net!" and registry.get(me, run_id).label == "My best net!"
    with pytest.raises(RunRefused, match="kept already"):
        registry.keep(me, run_id, "again")
    # Rename: the same file under a new name, never over another file.
    blocker = path.with_name(path.name.replace("My-best-net", "sevens"))
    blocker.write_bytes(b"someone else's file")
    renamed = registry.rename(me, run_id, "sevens")
    assert renamed.name == blocker.name.replace(".pkl", "-2.pkl") and not path.exists()
    assert blocker.read_bytes() == b"someone else's file"
    assert load_model(renamed).metrics_["test_accuracy"] == accuracy
    # Delete: only that file; the model stays in the run, which can be kept again.
    registry.delete_kept(me, run_id)
    assert not renamed.exists() and blocker.exists()
    assert registry.get(me, run_id).kept_path is None and registry.get(me, run_id).has_model
    again = registry.keep(me, run_id, "")
    assert again.name.endswith(f"acc{100 * accuracy:.2f}.pkl")  # no name: model_filename's own
    # A long name (40 characters in the file name) whose file name is taken gets -2, and is still ours.
    long_name = "a very long name for a network of mine, longer than forty letters"
    stem = again.name[: again.name.index(".pkl")]
    taken = again.with_name(f"{stem}-{name_slug(long_name)}.pkl")
    taken.write_bytes(b"taken")
    longer = registry.rename(me, run_id, long_name)
    assert longer.name == taken.name.replace(".pkl", "-2.pkl")
    registry.delete_kept(me, run_id)
    assert not longer.exists() and taken.read_bytes() == b"taken"
    again = registry.keep(me, run_id, "")
    # A file replaced behind the app's back (same name, other content) is left alone.
    again.unlink()
    again.write_bytes(b"not what the app saved")
    with pytest.raises(RunRefused, match="changed since"):
        registry.delete_kept(me, run_id)
    with pytest.raises(RunRefused, match="changed since"):
        registry.rename(me, run_id, "other")
    assert again.read_bytes() == b"not what the app saved"


def test_a_name_never_leaves_the_models_folder():
    for name in ("../../etc/passwd", "a/b\\c", ".hidden", "x.pkl", "ünïcode ok", "\x00\n\t", "-" * 80, "a" * 500):
        slug = name_slug(name)
        assert "/" not in slug and "\\" not in slug and "." not in slug and len(slug) <= 40
        assert all(c.isalnum() or c in "-_" for c in slug)
    assert name_slug("../../etc/passwd") == "etc-passwd" and name_slug("ünïcode ok") == "ünïcode-ok"
    first = next(kept_file_names(datetime(2026, 11, 28, 11, 5, 12, tzinfo=UTC), 0.9763, "../x"))
    assert first == model_filename(datetime(2026, 11, 28, 11, 5, 12, tzinfo=UTC), 0.9763).replace(".pkl", "-x.pkl")


def test_oldest_finished_runs_make_room_and_models_in_memory_are_bounded(mnist_dir):
    registry = RunRegistry(max_runs_per_user=2)
    me = new_user_id()
    try:
        ids = []
        for seed in range(3):
            ids.append(registry.submit(me, tiny(seed), mnist_dir))
            finished(registry, me, ids[-1])
        assert [v.id for v in registry.runs(me)] == [ids[2], ids[1]]  # newest first; the oldest dropped
        assert [v.number for v in registry.runs(me)] == [3, 2]
        # A memory budget smaller than two models keeps only the newest model's run.
        small = RunRegistry(max_model_bytes=1)
        first = small.submit(me, tiny(), mnist_dir)
        finished(small, me, first)
        second = small.submit(me, tiny(1), mnist_dir)
        finished(small, me, second)
        assert [v.id for v in small.runs(me)] == [second]
    finally:
        registry.stop_all(timeout=60)


def test_settings_are_kept_per_user_and_bounded():
    registry = RunRegistry()
    me, other = new_user_id(), new_user_id()
    registry.remember_settings(
        me, {"hidden_sizes": "64", "epochs": 3, "augment": True, "bad": object(), "x": "y" * 999}
    )
    assert registry.settings(me) == {"hidden_sizes": "64", "epochs": 3, "augment": True, "x": "y" * 200}
    assert registry.settings(other) == {}


def test_pause_resume_and_train_more_act_only_on_the_users_own_runs(registry, mnist_dir):
    me, other = new_user_id(), new_user_id()
    run_id = registry.submit(me, long_run(), mnist_dir)
    assert wait_until(lambda: registry.get(me, run_id).snapshot.history, timeout=60)
    assert registry.pause(other, run_id) is False and not registry.get(me, run_id).snapshot.pause_requested
    assert registry.pause(me, run_id)
    assert wait_until(lambda: registry.get(me, run_id).snapshot.paused, timeout=60)
    assert registry.running_count() == 1  # a paused run keeps its slot
    assert registry.resume(other, run_id) is False and registry.get(me, run_id).snapshot.pause_requested
    assert registry.resume(me, run_id) and not registry.get(me, run_id).snapshot.pause_requested
    with pytest.raises(RunRefused, match="no trained model"):  # still training: nothing to continue yet
        registry.submit_more(me, run_id, 1, mnist_dir)
    registry.stop(me, run_id)
    base = finished(registry, me, run_id)
    with pytest.raises(RunRefused, match="no such run"):
        registry.submit_more(other, run_id, 1, mnist_dir)
    for bad in (0, -1, MAX_MORE_EPOCHS + 1, True, 1.5):
        with pytest.raises(RunRefused, match="more epochs"):
            registry.submit_more(me, run_id, bad, mnist_dir)
    registry.rename(me, run_id, "first try")
    more_id = registry.submit_more(me, run_id, 1, mnist_dir)
    view = registry.get(me, more_id)
    assert view.kind == MORE_RUN and view.based_on_id == run_id and view.origin == "continues first try"
    assert view.number == 2 and view.config.epochs == 1
    assert view.config.hidden_sizes == base.config.hidden_sizes and view.config.n_train == base.config.n_train
    with pytest.raises(RunRefused, match="already have a run"):  # still one unfinished run per user
        registry.submit_more(me, run_id, 1, mnist_dir)
    registry.stop(me, more_id)
    done = finished(registry, me, more_id)
    assert done.has_model and registry.model(me, more_id).info_["continued_from_epoch"] == 0
    registry.rename(me, run_id, "renamed")
    assert registry.get(me, more_id).origin == "continues renamed"  # follows the base run's name
    registry.forget(me, run_id)
    assert registry.get(me, more_id).origin == "continues renamed"  # remembered once the base is gone
    assert registry.get(me, run_id) is None


# --- fine-tune runs --------------------------------------------------------------------------------


def writer_digits(mnist, per_class: int, seed: int = 0) -> DigitSet:
    """A "writer" MNIST reads badly: test digits mirrored left to right, ``per_class`` of each digit."""
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.choice(np.flatnonzero(mnist.y_test == c), per_class, replace=False) for c in range(10)])
    images = mnist.X_test[idx].reshape(-1, 28, 28)[:, :, ::-1].reshape(-1, 784)
    n = len(idx)
    return DigitSet(
        images.astype(np.float32) / 255, mnist.y_test[idx].astype(np.int64), np.zeros((n, 56, 56), np.uint8),
        np.full(n, 1.8e9),
    )  # fmt: skip


QUICK = FineTuneOptions(steps=60)


def test_a_fine_tune_run_reports_its_figures_and_its_model_is_kept_like_any(
    registry, mnist, mnist_dir, small_model, models_dir
):
    me, other = new_user_id(), new_user_id()
    digits = writer_digits(mnist, per_class=4)
    base_bytes = model_to_bytes(small_model)
    run_id = registry.submit_fine_tune(me, base_bytes, "default", digits, mnist_dir, options=QUICK)
    assert registry.get(other, run_id) is None and registry.runs(other) == []
    view = finished(registry, me, run_id)
    assert view.snapshot.status == DONE, view.snapshot.error
    assert view.kind == FINE_TUNE_RUN and view.origin == "fine-tunes default" and view.has_model
    assert view.snapshot.fraction_done == 1.0 and view.snapshot.evaluation is None
    tuning = view.tuning
    assert set(tuning) == {
        "held_out_before", "held_out_after", "mnist_before", "mnist_after", "flipped", "n_train", "n_held_out",
    }  # fmt: skip
    # The figures are exactly those of the same fine-tune done here, on the same split.
    train_idx, held_idx = split_held_out(digits.labels, HELD_OUT_FRACTION, HELD_OUT_SEED)
    assert (tuning["n_train"], tuning["n_held_out"]) == (len(train_idx), len(held_idx)) == (30, 10)  # 1 of 4 kept
    held = (digits.inputs[held_idx], digits.labels[held_idx])
    here = fine_tune(
        small_model, digits.inputs[train_idx], digits.labels[train_idx], options=QUICK,
        rehearsal=(mnist.X_train, mnist.y_train), held_out=held, test=(mnist.X_test, mnist.y_test),
    )  # fmt: skip
    figures = here.fine_tune_["figures"]
    assert (
        tuning["held_out_before"] == figures["held_out_before"]
        and tuning["held_out_after"] == figures["held_out_after"]
    )
    assert tuning["mnist_before"] == figures["test_before"] == small_model.score(mnist.X_test, mnist.y_test)
    assert tuning["mnist_after"] == figures["test_after"]
    before_right = small_model.predict(held[0]) == held[1]
    after_right = here.predict(held[0]) == held[1]
    assert tuning["flipped"] == {
        "wrong_to_right": held_idx[~before_right & after_right].tolist(),
        "right_to_wrong": held_idx[before_right & ~after_right].tolist(),
    }
    assert tuning["held_out_before"] < 0.5  # mirrored digits: the base reads most of them wrong
    # Its model is kept, renamed and deleted like any run's, and the kept file is a listed model.
    tuned = registry.model(me, run_id)
    np.testing.assert_array_equal(tuned.params_["W1"], here.params_["W1"])
    assert tuned.fine_tune_["personal_counts"] == [3] * 10
    path = registry.keep(me, run_id, "my handwriting")
    assert [m.path for m in list_models()] == [path] and "my-handwriting" in path.name
    assert load_model(path).fine_tune_["base_sha256"] == model_sha256(model_from_bytes(base_bytes))
    renamed = registry.rename(me, run_id, "mine")
    registry.delete_kept(me, run_id)
    assert not renamed.exists() and list_models() == []
    assert small_model.fine_tune_ is None  # the base is untouched


def test_a_fine_tune_with_too_few_digits_holds_none_out_and_says_so(registry, mnist, mnist_dir, small_model):
    me = new_user_id()
    run_id = registry.submit_fine_tune(
        me, model_to_bytes(small_model), "default", writer_digits(mnist, per_class=1), mnist_dir, options=QUICK
    )
    view = finished(registry, me, run_id)
    assert view.snapshot.status == DONE, view.snapshot.error
    tuning = view.tuning
    assert tuning["n_held_out"] == 0 and tuning["n_train"] == 10
    assert tuning["held_out_before"] is None and tuning["held_out_after"] is None
    assert tuning["flipped"] == {"wrong_to_right": [], "right_to_wrong": []}
    assert tuning["mnist_after"] is not None
    assert "Too few digits to keep some aside" in view.snapshot.note


def test_a_fine_tune_can_be_stopped_and_a_killed_one_fails_leaving_no_file(
    registry, mnist, mnist_dir, small_model, models_dir
):
    me = new_user_id()
    long = FineTuneOptions(steps=20_000)
    base = model_to_bytes(small_model)
    run_id = registry.submit_fine_tune(me, base, "default", writer_digits(mnist, 4), mnist_dir, options=long)
    assert wait_until(lambda: registry.get(me, run_id).snapshot.history, timeout=60)
    assert registry.get(me, run_id).snapshot.eta is not None
    registry.stop(me, run_id)
    stopped = finished(registry, me, run_id)
    assert stopped.snapshot.status == STOPPED and stopped.has_model and stopped.tuning["mnist_after"] is not None
    again = registry.submit_fine_tune(me, base, "default", writer_digits(mnist, 4), mnist_dir, options=long)
    assert wait_until(lambda: registry.get(me, again).snapshot.history, timeout=60)
    os.kill(registry.job(me, again).pid, signal.SIGKILL)
    view = finished(registry, me, again)
    assert view.snapshot.status == FAILED and "SIGKILL" in view.snapshot.error
    assert not view.has_model and view.tuning is None
    assert not models_dir.exists() or not any(models_dir.rglob("*"))


def test_a_fine_tune_refuses_what_it_cannot_use(registry, mnist, mnist_dir, small_model):
    me = new_user_id()
    with pytest.raises(RunRefused, match="no digits"):
        registry.submit_fine_tune(me, model_to_bytes(small_model), "default", DigitSet.empty(), mnist_dir)
    with pytest.raises(RunRefused, match="cannot be fine-tuned"):
        registry.submit_fine_tune(me, b"not a model", "default", writer_digits(mnist, 2), mnist_dir)
    with pytest.raises(ValueError):
        registry.submit_fine_tune(
            "not a user", model_to_bytes(small_model), "default", writer_digits(mnist, 2), mnist_dir
        )
    assert registry.runs(me) == []


# --- finished runs kept in a scratch folder across a restart ----------------------------------------


def test_finished_runs_come_back_after_a_restart_and_act_as_before(tmp_path, mnist_dir, models_dir):
    scratch = tmp_path / "scratch"
    me, other = new_user_id(), new_user_id()
    before = RunRegistry(store=RunStore(scratch))
    try:
        first = before.submit(me, tiny(1), mnist_dir)
        finished(before, me, first, store_dir=scratch)
        kept = before.keep(me, first, "kept one")
        second = before.submit(me, tiny(2), mnist_dir)
        finished(before, me, second, store_dir=scratch)
        old = {v.id: v for v in before.runs(me)}
        old_bytes = {i: before.job(me, i).model_bytes for i in old}
    finally:
        before.stop_all(timeout=60)
    # A new server process: a new registry over the same folder.
    after = RunRegistry(store=RunStore(scratch))
    try:
        assert after.runs(other) == []
        views = after.runs(me)
        assert [v.id for v in views] == [second, first]
        for v in views:
            was = old[v.id]
            assert (v.number, v.label, v.kind, v.snapshot.status) == (
                was.number,
                was.label,
                was.kind,
                was.snapshot.status,
            )
            assert v.snapshot.history == was.snapshot.history and v.config == was.config
            assert v.snapshot.evaluation.accuracy == was.snapshot.evaluation.accuracy
            np.testing.assert_array_equal(v.snapshot.evaluation.confusion, was.snapshot.evaluation.confusion)
            np.testing.assert_array_equal(v.snapshot.mistake_images, was.snapshot.mistake_images)
            np.testing.assert_array_equal(v.snapshot.weights_preview, was.snapshot.weights_preview)
            assert after.job(me, v.id).model_bytes == old_bytes[v.id]
        # The kept file is still recognised as this app's: it can be renamed and deleted.
        assert after.get(me, first).kept_path == kept
        renamed = after.rename(me, first, "renamed")
        assert renamed.exists() and not kept.exists()
        # Runs carry on from there: numbers go on, train more works from a restored run.
        more = after.submit_more(me, second, 1, mnist_dir)
        assert after.get(me, more).number == 3 and after.get(me, more).origin == "continues Run 2"
        finished(after, me, more)
        after.forget(me, second)
    finally:
        after.stop_all(timeout=60)
    again = RunRegistry(store=RunStore(scratch))
    assert [(v.number, v.label) for v in again.runs(me)] == [(3, "Run 3"), (1, "renamed")]
    assert again.get(me, first).kept_path == renamed  # the rename was stored too


def stored_bytes(model_bytes: bytes, number: int = 1, **facts) -> bytes:
    base = dict(
        number=number, name=None, kind="training", based_on=None, based_on_id=None, status="done", note=None,
        created=1.8e9, started=1.8e9, finished_at=1.8e9, tuning=None, kept=None,
    )  # fmt: skip
    return run_file_bytes({**base, **facts}, model_bytes, None, None, None)


def test_the_store_bounds_its_files_and_drops_what_does_not_read_back(tmp_path, small_model):
    store = RunStore(tmp_path, max_per_user=2, max_age_days=1)
    me = new_user_id()
    model_bytes = model_to_bytes(small_model)
    for i in range(3):
        path = store.save(me, f"run{i}", stored_bytes(model_bytes, number=i + 1))
        os.utime(path, (1e9 + i, time.time() - 100 + i))  # in the order written
    assert [r.run_id for r in store.load(me)] == ["run1", "run2"]  # at most 2 per user: the oldest went
    stale = store.save(me, "stale", stored_bytes(model_bytes, number=9))  # a third: run1, the oldest, goes
    os.utime(stale, (1e9, time.time() - 2 * 86400))
    assert [r.run_id for r in store.load(me)] == ["run2"] and not stale.exists()  # expired: deleted
    # Files that do not read back are deleted and skipped, never trusted.
    bad = {
        "garbage": b"not a zip at all",
        "running": stored_bytes(model_bytes, status="training"),
        "pathname": stored_bytes(model_bytes, kept={"name": "../../etc/passwd", "version": [1]}),
        "notamodel": stored_bytes(b"\x80\x04not a model"),
    }
    for name, data in bad.items():
        (tmp_path / me / f"{name}.npz").write_bytes(data)
        with pytest.raises(RunStoreError):
            read_run_file(name, data)
    assert [r.run_id for r in store.load(me)] == ["run2"]
    assert [p.stem for p in (tmp_path / me).glob("*.npz")] == ["run2"]
    # The total cap: the oldest files go, whoever's they are.
    small = RunStore(tmp_path / "capped", max_bytes=int(1.5 * len(stored_bytes(model_bytes))))
    small.save(other := new_user_id(), "a", stored_bytes(model_bytes))
    os.utime(tmp_path / "capped" / other / "a.npz", (1e9, time.time() - 10))
    small.save(me, "b", stored_bytes(model_bytes))
    assert small.load(other) == [] and [r.run_id for r in small.load(me)] == ["b"]


def test_a_fine_tune_run_comes_back_after_a_restart_with_its_figures(tmp_path, mnist, mnist_dir, small_model):
    me = new_user_id()
    before = RunRegistry(store=RunStore(tmp_path))
    digits = writer_digits(mnist, per_class=3)
    run_id = before.submit_fine_tune(me, model_to_bytes(small_model), "default", digits, mnist_dir, options=QUICK)
    was = finished(before, me, run_id, store_dir=tmp_path)
    assert was.snapshot.status == DONE, was.snapshot.error
    [view] = RunRegistry(store=RunStore(tmp_path)).runs(me)
    assert view.kind == FINE_TUNE_RUN and view.origin == "fine-tunes default" and view.tuning == was.tuning
    assert view.snapshot.evaluation is None and view.has_model and view.snapshot.note == was.snapshot.note


SERVER_THAT_EXITS = """
import sys, time
from mnist_net import TrainConfig
from mnist_net.run_store import RunStore
from mnist_net.runs import RunRegistry

folder, mnist_dir, user, queued_user = sys.argv[1:5]
registry = RunRegistry(store=RunStore(folder), save_on_exit=True, max_running=1)
config = TrainConfig(hidden_sizes=(64,), epochs=100, n_train=20000, batch_size=16, log_every=1)
run = registry.submit(user, config, mnist_dir)
registry.submit(queued_user, config, mnist_dir)  # waits for the one slot
deadline = time.monotonic() + 120
while not registry.get(user, run).snapshot.history:  # training, with progress
    if time.monotonic() > deadline:
        sys.exit("the run never started training")
    time.sleep(0.05)
print(run, flush=True)
if len(sys.argv) > 5:  # killed outright, as by SIGKILL or the out-of-memory killer: no exit handler runs
    import os, signal
    os.kill(os.getpid(), signal.SIGKILL)
# The script ends here, as a server's main thread does after Ctrl-C or SIGTERM.
"""


def test_runs_still_training_when_the_server_exits_are_stopped_and_kept(tmp_path, mnist_dir):
    import subprocess
    import sys

    scratch = tmp_path / "scratch"
    me, waiting = new_user_id(), new_user_id()
    done = subprocess.run(
        [sys.executable, "-c", SERVER_THAT_EXITS, str(scratch), str(mnist_dir), me, waiting],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "stopping 1 training run(s) so their models are kept" in done.stderr
    run_id = done.stdout.strip()
    after = RunRegistry(store=RunStore(scratch))  # the next server process
    [view] = after.runs(me)
    assert view.id == run_id and view.snapshot.status == STOPPED and view.has_model
    assert "server was shut down while this run trained" in view.snapshot.note
    history = view.snapshot.history
    assert history and history[-1]["epoch"] < 100  # stopped part-way, not trained to the end
    assert view.snapshot.evaluation is not None and view.snapshot.evaluation.n == 10_000  # scored as it was then
    model = after.model(me, run_id)
    assert model is not None and model.epochs_done_ < 100
    assert after.runs(waiting) == []  # a run that never started has nothing to keep


def test_a_run_whose_server_is_killed_outright_stores_itself(tmp_path, mnist_dir):
    import subprocess
    import sys

    scratch = tmp_path / "scratch"
    me, waiting = new_user_id(), new_user_id()
    killed = subprocess.run(
        [sys.executable, "-c", SERVER_THAT_EXITS, str(scratch), str(mnist_dir), me, waiting, "kill"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    run_id = killed.stdout.strip()
    stored = scratch / me / f"{run_id}.npz"
    deadline = time.monotonic() + 120
    while not stored.exists():  # the orphaned training process stops, scores its model and writes it
        assert time.monotonic() < deadline, "the killed server's run was never stored"
        time.sleep(0.1)
    after = RunRegistry(store=RunStore(scratch))  # the next server process
    [view] = after.runs(me)
    assert view.id == run_id and view.snapshot.status == STOPPED and view.has_model
    assert "server stopped unexpectedly" in view.snapshot.note
    assert view.number == 1 and view.snapshot.started is not None
    assert view.snapshot.evaluation is not None and view.snapshot.evaluation.n == 10_000
    model = after.model(me, run_id)
    assert model is not None and model.epochs_done_ < 100
    assert after.runs(waiting) == []  # it never started: nothing to store
    assert [p.name for p in scratch.rglob("*") if p.is_file()] == [stored.name]  # no temporary file left
