"""The train page under Streamlit's AppTest: a real tiny training, live panel, stop, results,
saved file, "use this model", bad settings, and missing MNIST."""

import re
import time
from pathlib import Path

import pytest
from conftest import wait_until
from streamlit.testing.v1 import AppTest

from mnist_net import data as data_module
from mnist_net import load_model
from mnist_net.jobs import DONE, STOPPED
from mnist_net.registry import list_models

APP = str(Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture
def train_page(mnist_dir, models_dir, monkeypatch):
    monkeypatch.setenv("MNIST_DIR", str(mnist_dir))
    at = AppTest.from_file(APP, default_timeout=120)
    at.switch_page("pages/train.py").run()
    assert not at.exception
    yield at
    job = at.session_state["train_job"] if "train_job" in at.session_state else None
    if job is not None:  # never leave a worker thread training after a test
        job.stop()
        job.join(timeout=60)


def fill_form(at, **values):
    for key, value in values.items():
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
    # Saved into the models folder, atomically, with the accuracy in its name, loadable.
    [saved] = list_models()
    assert saved.path == snap.saved_path and saved.path.parent == models_dir
    assert f"acc{100 * snap.evaluation.accuracy:.2f}" in saved.name
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


def test_bad_settings_show_a_message(train_page):
    at = train_page
    fill_form(at, hidden_sizes="64, lots")
    at.button(key="start").click().run()
    assert not at.exception
    assert "train_job" not in at.session_state
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
