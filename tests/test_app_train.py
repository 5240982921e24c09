"""The train page under Streamlit's AppTest: a real tiny training, live panel, stop, results,
keeping the model (named), renaming and deleting it, "use this model", the runs list found
again after a reload (a new session with the same browser id) and stopped from there, another
user who sees nothing, a diverging run, a killed training process, bad settings, missing MNIST."""

import os
import re
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import wait_until
from streamlit.testing.v1 import AppTest

from mnist_net import TrainConfig, load_model
from mnist_net import data as data_module
from mnist_net.jobs import DIVERGED, DONE, FAILED, STOPPED
from mnist_net.registry import list_models
from mnist_net.runs import new_user_id
from pages.ui import state

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def open_train_page(user: str | None = None) -> AppTest:
    """A fresh session on the train page; ``user`` is the id its browser's cookie would carry.

    AppTest cannot send cookies, so the test puts the id where the page keeps the cookie's id
    for the session: a reload is a new session of the same browser, i.e. the same id.
    """
    at = AppTest.from_file(APP, default_timeout=120)
    if user is not None:
        at.session_state[state.USER_ID_KEY] = user
    at.switch_page("pages/train.py").run()
    assert not at.exception
    return at


@pytest.fixture
def train_page(mnist_dir, models_dir, monkeypatch):
    monkeypatch.setenv("MNIST_DIR", str(mnist_dir))
    user = new_user_id()
    at = open_train_page(user)
    yield at
    state.run_registry().stop_all(user, timeout=60)  # never leave a training process running after a test


def fill_form(at, **values):
    for key, value in values.items():  # the text box or the number box of that key
        widget = at.text_input(key=key) if key == "hidden_sizes" else at.number_input(key=key)
        widget.set_value(value)


def charts(at):
    return at.get("vega_lite_chart")


def test_tiny_training_history_chart_saved_file_and_use(train_page, models_dir):
    at = train_page
    fill_form(at, hidden_sizes="32", n_train=300, epochs=1, batch_size=32)
    at.button(key="start").click().run()
    assert not at.exception and not at.error
    job = at.session_state["train_job"]
    assert job.config.n_train == 300 and job.config.epochs == 1 and job.config.hidden_sizes == (32,)
    assert job.join(timeout=120)
    at.run()
    snap = job.snapshot()
    assert snap.status == DONE, snap.error
    # History: one record per batch (log_every 1 for 9 batches) ending with an evaluated epoch.
    assert len(snap.history) == 9 and snap.history[-1]["kind"] == "epoch"
    assert snap.history[-1]["val_acc"] is not None
    # Results: learning curves, per-digit accuracy, confusion matrix, and the test accuracy shown.
    assert len(charts(at)) == 4
    shown = {m.label: m.value for m in at.metric}
    assert shown["Test accuracy"] == f"{snap.evaluation.accuracy:.2%}"
    assert any("unseen test digits" in s.value for s in at.success)
    # Nothing is saved until the user keeps it; kept, it goes into the models folder, named.
    assert list_models() == []
    [name_box] = [t for t in at.text_input if t.key.startswith("keep_name_")]
    name_box.set_value("tiny one")
    at.button(key="keep_model").click().run()
    assert not at.exception and not at.error
    [saved] = list_models()
    [view] = state.run_registry().runs(at.session_state[state.USER_ID_KEY])
    assert saved.path == view.kept_path and saved.path.parent == models_dir
    assert f"acc{100 * snap.evaluation.accuracy:.2f}-tiny-one.pkl" in saved.name
    assert any(saved.name in c.value for c in at.caption)
    reloaded = load_model(saved.path)
    assert reloaded.metrics_["test_accuracy"] == snap.evaluation.accuracy
    assert reloaded.info_["source"] == "train page" and reloaded.info_["trained_at"]
    assert at.get("download_button")
    # One click makes it the draw page's model.
    at.button(key="use_model").click().run()
    assert not at.exception
    assert at.session_state["model_choice"] == "session"
    assert at.title[0].value == "Draw a digit"
    assert at.selectbox(key="model_choice").value == "session"
    # The picker names the run (its name once kept) and its accuracy.
    assert f"Your run: tiny one ({snap.evaluation.accuracy:.2%})" in at.selectbox(key="model_choice").options
    facts = " ".join(m.value for m in at.sidebar.markdown)
    assert "784 → 32 → 10" in facts and f"{100 * snap.evaluation.accuracy:.2f}%" in facts


def test_live_panel_then_stop(train_page):
    at = train_page
    fill_form(at, hidden_sizes="64", n_train=20000, epochs=100, batch_size=16)
    at.button(key="start").click().run()
    job = at.session_state["train_job"]
    deadline = time.time() + 60
    while not charts(at) and time.time() < deadline:  # the fragment shows the chart once records arrive
        time.sleep(0.3)
        at.run()
    assert job.snapshot().running
    assert len(charts(at)) == 2  # accuracy and loss
    [bar] = at.get("progress")
    assert re.match(r"Epoch \d+/100 · batch \d+/1146 · .* images/s · about .* s left", bar.proto.text)
    assert at.button(key="start").disabled  # no second run while one is going
    # Switching pages does not stop it, and coming back finds it (and the settings) again.
    at.switch_page("pages/draw.py").run()
    assert not at.exception and at.title[0].value == "Draw a digit"
    assert any("A network is training" in i.value for i in at.sidebar.info)
    records = len(job.snapshot().history)
    assert wait_until(lambda: len(job.snapshot().history) > records, timeout=60)
    assert job.snapshot().running
    at.switch_page("pages/train.py").run()
    assert at.get("progress") and at.text_input(key="hidden_sizes").value == "64"
    at.button(key="stop").click().run()
    assert job.join(timeout=60)
    at.run()
    snap = job.snapshot()
    assert snap.status == STOPPED and snap.fraction_done < 0.5
    assert any("stopped early" in w.value for w in at.warning)
    assert not at.button(key="start").disabled


def test_keep_rename_and_delete_from_the_page(train_page, models_dir):
    at = train_page
    fill_form(at, hidden_sizes="16", n_train=300, epochs=1, batch_size=32)
    at.button(key="start").click().run()
    assert at.session_state["train_job"].join(timeout=120)
    at.run()
    at.button(key="keep_model").click().run()
    [saved] = list_models()
    assert saved.name.endswith("-run-1.pkl")  # the name offered: "run 1"
    [rename_box] = [t for t in at.text_input if t.key.startswith("rename_")]
    rename_box.set_value("sevens only")
    at.button(key="rename_model").click().run()
    assert not at.exception and not at.error
    [renamed] = list_models()
    assert renamed.name.endswith("-sevens-only.pkl") and not saved.path.exists()
    assert "sevens only" in " ".join(m.value for m in at.markdown)  # the runs list shows the name
    at.button(key="delete_kept").click().run()
    assert list_models() == [] and not any(models_dir.iterdir())
    assert at.button(key="keep_model")  # the model is still in the run, and can be kept again
    at.button(key="forget_run").click().run()
    assert not at.exception and "train_job" not in at.session_state
    assert state.run_registry().runs(at.session_state[state.USER_ID_KEY]) == []


def test_a_reload_finds_the_run_and_can_stop_it_while_others_see_nothing(train_page):
    at = train_page
    user = at.session_state[state.USER_ID_KEY]
    fill_form(at, hidden_sizes="48", n_train=20000, epochs=100, batch_size=16)
    at.button(key="start").click().run()
    job = at.session_state["train_job"]
    assert wait_until(lambda: job.snapshot().history, timeout=60)
    # Reload: a new session from the same browser finds the run, its progress and its settings.
    again = open_train_page(user)
    assert again.session_state["train_job"] is job
    assert any("Run 1" in m.value and "training" in m.value for m in again.markdown)
    [bar] = again.get("progress")
    assert re.match(r"Epoch \d+/100 · batch", bar.proto.text)
    assert again.text_input(key="hidden_sizes").value == "48" and again.number_input(key="epochs").value == 100
    assert again.button(key="start").disabled
    # Another browser (another id) sees no run and no settings.
    stranger = open_train_page(new_user_id())
    assert "train_job" not in stranger.session_state and not stranger.get("progress")
    assert stranger.text_input(key="hidden_sizes").value == "128,64"
    assert not [b for b in stranger.button if b.key.startswith("stop")]
    # Stopped from the reloaded page, with the runs list's own Stop button.
    again.button(key=f"stop_{[v.id for v in state.run_registry().runs(user)][0]}").click().run()
    assert job.join(timeout=60)
    again.run()
    assert job.snapshot().status == STOPPED
    assert any("stopped early" in w.value for w in again.warning)
    # Which moment the figures belong to: the validation figure is the last whole epoch's, if any
    # finished before the stop (on a busy machine the stop can come inside epoch 1).
    assert any(
        "Stopped in epoch" in c.value and ("last whole epoch" in c.value or "no whole epoch" in c.value)
        for c in again.caption
    )
    at.run()  # the first tab sees the same ending
    assert any("stopped early" in w.value for w in at.warning)


def test_a_third_run_waits_its_turn_and_says_so(train_page, mnist_dir):
    at = train_page
    registry = state.run_registry()
    others = [new_user_id() for _ in range(registry.max_running)]
    try:
        for other in others:  # the server's slots are taken by other people's long runs
            registry.submit(other, TrainConfig(hidden_sizes=(64,), epochs=100, n_train=20000, batch_size=16), mnist_dir)
        fill_form(at, hidden_sizes="16", n_train=300, epochs=1, batch_size=32)
        at.button(key="start").click().run()
        assert not at.exception and not at.error
        job = at.session_state["train_job"]
        assert job.snapshot().status == "queued"
        [bar] = at.get("progress")
        assert bar.proto.text.startswith("Waiting for a free slot: 0 runs ahead of yours")
        at.switch_page("pages/draw.py").run()
        assert any("waiting for its turn" in i.value for i in at.sidebar.info)
        registry.stop(others[0], registry.runs(others[0])[0].id)  # a slot frees: this run starts
        assert job.join(timeout=120) and job.snapshot().status == DONE
    finally:
        for other in others:
            registry.stop_all(other, timeout=60)


def test_a_diverging_run_is_reported_with_the_reason(train_page):
    at = train_page
    fill_form(at, hidden_sizes="128,64", n_train=2000, epochs=5, batch_size=32, learning_rate=5.0)
    at.selectbox(key="optimizer").set_value("sgd")
    at.button(key="start").click().run()
    job = at.session_state["train_job"]
    assert job.join(timeout=120)
    at.run()
    assert job.snapshot().status == DIVERGED
    assert not at.success and not at.exception
    [error] = at.error
    assert "diverged" in error.value and "learning rate (5) is probably too high" in error.value
    assert len(charts(at)) == 2  # the curves up to the divergence
    assert not at.get("download_button") and "keep_model" not in [b.key for b in at.button]


def test_a_killed_training_process_is_reported_failed_and_saves_nothing(train_page, models_dir):
    at = train_page
    fill_form(at, hidden_sizes="64", n_train=20000, epochs=100, batch_size=16)
    at.button(key="start").click().run()
    job = at.session_state["train_job"]
    assert wait_until(lambda: job.snapshot().history, timeout=60)
    os.kill(job.pid, signal.SIGKILL)
    assert job.join(timeout=60)
    at.run()
    assert job.snapshot().status == FAILED
    assert any("Training failed" in e.value and "SIGKILL" in e.value for e in at.error)
    assert not models_dir.exists() or not any(models_dir.iterdir())
    assert not at.button(key="start").disabled  # and the next run can start


def test_bad_settings_show_a_message(train_page):
    at = train_page
    fill_form(at, hidden_sizes="64, lots")
    at.button(key="start").click().run()
    assert not at.exception
    assert "train_job" not in at.session_state
    assert state.run_registry().runs(at.session_state[state.USER_ID_KEY]) == []
    assert any("Please check the settings" in e.value and "whole numbers" in e.value for e in at.error)


def test_missing_mnist_says_what_to_do(models_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(data_module, "MIRRORS", ("http://127.0.0.1:9/",))  # refused at once: offline
    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page("pages/train.py").run()
    assert any("not on this machine yet" in i.value for i in at.info)
    at.button(key="start").click().run()
    assert not at.exception
    assert "train_job" not in at.session_state
    assert any("could not be downloaded" in e.value for e in at.error)
    advice = " ".join(m.value for m in at.markdown)
    assert "MNIST_DIR=" in advice and "train-images-idx3-ubyte.gz" in advice
    assert str(tmp_path / "cache") in advice
    at.run()  # and the page keeps working
    assert not at.exception and at.button(key="start")


def weight_tiles(at) -> list:
    """The page's pictures of first-layer weights (found by their caption)."""
    return [im for im in at.get("image") if im.captions and "first layer" in im.captions[0]]


def test_pause_and_resume_from_the_live_panel_with_the_weights_shown(train_page):
    at = train_page
    fill_form(at, hidden_sizes="64", n_train=20000, epochs=100, batch_size=16)
    at.button(key="start").click().run()
    job = at.session_state["train_job"]
    assert wait_until(lambda: job.snapshot().history, timeout=60)
    at.run()
    assert len(weight_tiles(at)) == 1  # the weights as they learn, beside the live chart
    assert "Weights as they learn" in " ".join(m.value for m in at.markdown)
    at.button(key="pause").click().run()
    assert not at.exception and job.snapshot().pause_requested
    assert wait_until(lambda: job.snapshot().paused, timeout=60)
    at.run()
    [bar] = at.get("progress")
    assert bar.proto.text.startswith("Paused in epoch 1/100") and "the pause does not count" in bar.proto.text
    assert any(s.value.endswith(": paused") for s in at.subheader)
    records = len(job.snapshot().history)
    at.button(key="resume").click().run()
    assert not at.exception and not job.snapshot().pause_requested
    assert wait_until(lambda: len(job.snapshot().history) > records, timeout=60)  # training again
    at.run()
    assert at.button(key="pause") is not None and not at.button(key="pause").disabled
    at.button(key="stop").click().run()
    assert job.join(timeout=60) and job.snapshot().status == STOPPED


def test_train_more_after_a_run_appears_as_a_new_run_that_continues_it(train_page):
    at = train_page
    fill_form(at, hidden_sizes="32", n_train=300, epochs=1, batch_size=32)
    at.button(key="start").click().run()
    first = at.session_state["train_job"]
    assert first.join(timeout=120)
    at.run()
    assert len(weight_tiles(at)) == 1 and "Weights it learned" in " ".join(m.value for m in at.markdown)
    [more] = [n for n in at.number_input if n.key.startswith("more_epochs_")]
    more.set_value(2)
    at.button(key="train_more").click().run()
    assert not at.exception and not at.error
    job = at.session_state["train_job"]
    assert job is not first and job.base_model_bytes == first.model_bytes and job.config.epochs == 2
    assert job.join(timeout=120)
    at.run()
    snap = job.snapshot()
    assert snap.status == DONE, snap.error
    assert [h["epoch"] for h in snap.history if h["kind"] == "epoch"] == [1, 2, 3]
    rows = [m.value for m in at.markdown if m.value.startswith("**Run")]
    assert rows[0].startswith("**Run 2** (shown below) · done") and rows[1].startswith("**Run 1**")
    assert any(c.value.startswith("continues Run 1 · ") and "2 more epochs" in c.value for c in at.caption)
    assert at.subheader[0].value == "Your runs" and any(s.value == "Run 2" for s in at.subheader)


def test_a_fine_tune_run_is_listed_naming_its_base_and_its_model_can_be_kept(
    train_page, mnist, mnist_dir, small_model, models_dir
):
    from mnist_net import DigitSet, FineTuneOptions
    from mnist_net.model_io import model_to_bytes

    at = train_page
    user = at.session_state[state.USER_ID_KEY]
    idx = np.concatenate([np.flatnonzero(mnist.y_test == c)[:3] for c in range(10)])
    mirrored = mnist.X_test[idx].reshape(-1, 28, 28)[:, :, ::-1].reshape(-1, 784).astype(np.float32) / 255
    labels, thumbnails = mnist.y_test[idx].astype(np.int64), np.zeros((30, 56, 56), np.uint8)
    digits = DigitSet(mirrored, labels, thumbnails, np.full(30, 1.8e9))
    registry = state.run_registry()
    run_id = registry.submit_fine_tune(
        user, model_to_bytes(small_model), "default", digits, mnist_dir, options=FineTuneOptions(steps=40)
    )
    assert registry.job(user, run_id).join(timeout=120)
    at.run()
    assert not at.exception
    view = registry.get(user, run_id)
    assert view.snapshot.status == DONE, view.snapshot.error
    rows = [m.value for m in at.markdown if m.value.startswith("**Run")]
    assert rows == [f"**Run 1** (shown below) · done · your held-out digits {view.tuning['held_out_before']:.0%} → "
                    f"{view.tuning['held_out_after']:.0%} · MNIST test {view.tuning['mnist_after']:.2%}"]  # fmt: skip
    assert any(c.value.startswith("fine-tunes default on your digits · 784→64→10") for c in at.caption)
    shown = {m.label: m.value for m in at.metric}
    assert shown["Your 10 held-out digits"] == f"{view.tuning['held_out_after']:.1%}"
    assert shown["MNIST test"] == f"{view.tuning['mnist_after']:.2%}"
    assert not charts(at) and not any(b.key == "train_more" for b in at.button)  # no curves, no "train more"
    [name_box] = [t for t in at.text_input if t.key.startswith("keep_name_")]
    name_box.set_value("my writing")
    at.button(key="keep_model").click().run()
    assert not at.exception and not at.error
    [saved] = list_models()
    assert "my-writing" in saved.name and load_model(saved.path).fine_tune_ is not None


def test_a_running_fine_tune_shows_its_steps_and_can_be_paused_and_stopped(train_page, mnist, mnist_dir, small_model):
    from mnist_net import DigitSet, FineTuneOptions
    from mnist_net.model_io import model_to_bytes

    at = train_page
    user = at.session_state[state.USER_ID_KEY]
    labels = np.repeat(np.arange(10), 2)
    digits = DigitSet(
        mnist.X_test[:20].astype(np.float32) / 255, labels, np.zeros((20, 56, 56), np.uint8), np.full(20, 1.8e9)
    )
    registry = state.run_registry()
    run_id = registry.submit_fine_tune(
        user, model_to_bytes(small_model), "default", digits, mnist_dir, options=FineTuneOptions(steps=20_000)
    )
    job = registry.job(user, run_id)
    assert wait_until(lambda: job.snapshot().history, timeout=60)
    at.run()
    [bar] = at.get("progress")
    assert re.match(r"Learning your handwriting: step \d+ of 20000 · about [\d,]+ s left", bar.proto.text)
    assert not charts(at) and not weight_tiles(at)  # a fine-tune draws no curves
    at.button(key="pause").click().run()
    assert wait_until(lambda: job.snapshot().paused, timeout=60)
    at.run()
    assert at.get("progress")[0].proto.text.startswith("Paused in step ")
    at.button(key="stop").click().run()
    assert job.join(timeout=60) and job.snapshot().status == STOPPED
    at.run()
    assert any("Stopped early" in w.value for w in at.warning)
