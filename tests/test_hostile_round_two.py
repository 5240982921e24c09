"""Hostile input, round two: no trained model is ever lost, and values from a file stay bounded.

Every optimizer x activation x depth trains, saves, loads back identically and resumes; model
files whose metadata would stall the page, or whose config and optimizer state the trainer
cannot use, are refused at load; the CLI checks --out before training and rescues a model it
cannot save; the train page refuses what the file format or this server cannot do; the
models folder copes with undecodable names and with files replaced behind its back.
"""

from __future__ import annotations

import os
import pickle
import re
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from app_server import free_port
from bounded import run_bounded
from conftest import HAVE_MNIST, MNIST_DIR, block_digits, wait_until
from streamlit.testing.v1 import AppTest

from mnist_net import MLP, ModelFileError, TrainConfig, cli, load_model, model_from_bytes, model_to_bytes, save_model
from mnist_net.budget import estimate_training_cost, refusal
from mnist_net.model_io import model_to_dict
from mnist_net.registry import list_models, model_facts, save_new_model

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
needs_mnist = pytest.mark.skipif(not HAVE_MNIST, reason="needs MNIST_DIR")


def tiny(optimizer="adam", activation="relu", hidden=(16,), **kw) -> MLP:
    lr = {"sgd": 0.1, "momentum": 0.05, "adam": 1e-2}[optimizer]
    return MLP(hidden_sizes=hidden, activation=activation, optimizer=optimizer, learning_rate=lr, epochs=1,
               batch_size=32, seed=2, **kw)  # fmt: skip


def edited(model: MLP, change) -> bytes:
    d = model_to_dict(model)
    change(d)
    return pickle.dumps(d, protocol=4)


# --- 1. every optimizer x activation x depth trains, saves, loads back, resumes -------------------


@pytest.mark.parametrize("hidden", [(16,), (24, 12)], ids=["1-hidden", "2-hidden"])
@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_every_optimizer_activation_and_depth_saves_loads_and_resumes(optimizer, activation, hidden, tmp_path):
    X, y = block_digits()
    model = tiny(optimizer, activation, hidden).fit(X, y)
    path = save_model(model, tmp_path / "m.pkl")
    loaded = load_model(path)
    assert loaded.config == model.config and loaded.epochs_done_ == 1
    assert loaded.params_.keys() == model.params_.keys()
    assert all(np.array_equal(loaded.params_[k], model.params_[k]) for k in model.params_)
    assert loaded.optimizer_state_.keys() == model.optimizer_state_.keys()
    assert all(np.array_equal(loaded.optimizer_state_[k], model.optimizer_state_[k]) for k in model.optimizer_state_)
    assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))
    # Resuming the loaded copy continues exactly as the original would have.
    model.fit(X, y)
    loaded.fit(X, y)
    assert loaded.epochs_done_ == 2
    assert all(np.array_equal(loaded.params_[k], model.params_[k]) for k in model.params_)
    load_model(save_model(loaded, tmp_path / "again.pkl"))


@needs_mnist
def test_cli_momentum_run_is_saved_and_resumes_with_another_optimizer(tmp_path, capsys):
    out = tmp_path / "m.pkl"
    args = ["--data-dir", str(MNIST_DIR), "--n-train", "1000", "--epochs", "1", "--hidden", "16", "-q"]
    assert cli.main(["train", "--optimizer", "momentum", "--lr", "0.05", *args, "--out", str(out)]) == 0
    assert load_model(out).optimizer_state_  # the velocities, some negative, came along
    code = cli.main(["train", "--resume", str(out), "--optimizer", "adam", *args, "--out", str(out)])
    assert code == 0 and "starts afresh" in capsys.readouterr().err
    resumed = load_model(out)
    assert resumed.epochs_done_ == 2 and "t" in resumed.optimizer_state_


# --- 3. metadata is bounded and validated at load --------------------------------------------------


def _load_bytes(data: bytes) -> None:
    model = model_from_bytes(data)
    "".join(model_facts(model).values())  # what the page does with a model's facts


def test_a_small_file_with_a_hugely_repeated_string_is_refused_fast(small_model):
    long = "x" * 100_000
    data = edited(small_model, lambda d: d["info"].update(source=[long] * 20_000))  # 2 GB as text
    assert len(data) < 1_000_000  # the small model's weights and Adam state are most of it
    outcome = run_bounded(_load_bytes, data, seconds=10, memory_mb=400)
    assert outcome.kind == "raised" and outcome.error_type == "ModelFileError", outcome
    assert outcome.seconds < 5


@pytest.mark.parametrize(
    "field, value",
    [
        ("trained_at", np.zeros(3)),
        ("trained_at", "9999-99-99T99:99"),
        ("trained_at", "0001-01-01T00:00:00"),
        ("trained_at", "2026-01-01" + "x" * 100),
        ("source", ["a", "b"]),
        ("source", "x" * 5000),
        ("command", {"nested": "dict"}),
    ],
)
def test_bad_metadata_fields_are_refused_at_load(small_model, field, value):
    with pytest.raises(ModelFileError, match=f"info {field}"):
        model_from_bytes(edited(small_model, lambda d: d["info"].update({field: value})))


@pytest.mark.parametrize("value", [1.5, -0.1, "99%", [0.9]])
def test_bad_metrics_are_refused_at_load(small_model, value):
    with pytest.raises(ModelFileError, match="metrics test_accuracy"):
        model_from_bytes(edited(small_model, lambda d: d["metrics"].update(test_accuracy=value)))


def test_too_much_metadata_text_is_refused(small_model):
    many = {f"note{i}": "y" * 3000 for i in range(10)}
    with pytest.raises(ModelFileError, match="characters of text"):
        model_from_bytes(edited(small_model, lambda d: d["info"].update(many)))


def test_facts_shown_about_a_model_are_bounded(small_model):
    model = model_from_bytes(edited(small_model, lambda d: d["info"].update(source="s" * 3000)))
    facts = model_facts(model)
    assert all(len(v) <= 200 for v in facts.values()) and facts["Source"].endswith("…")


def test_file_text_is_shown_as_plain_text_never_markdown(small_model, models_dir):
    evil = "![tracker](http://127.0.0.1:9/pixel.png) :red[**loud**] <img src=x onerror=alert(1)>"
    model = model_from_bytes(edited(small_model, lambda d: d["info"].update(source=evil)))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.selectbox(key="model_choice").set_value("upload").run()
    at.file_uploader(key="model_upload").set_value(("evil.pkl", model_to_bytes(model), "application/octet-stream"))
    at.run()
    assert not at.exception
    facts = " ".join(m.value for m in at.sidebar.markdown)
    source = facts.split("**Source:**", 1)[1].strip()
    assert source.startswith(r"\!\[tracker\]\(http\://127.0.0.1:9/pixel.png\)")  # the same text, escaped
    # Not one character that Markdown or HTML could read as markup is left unescaped.
    assert not re.search(r"(?<!\\)[!\[\]()<>*`]", source), source


# --- 4. what the trainer cannot use does not load; --out is checked first; nothing is lost --------


def test_partial_adam_state_is_refused_at_load(small_model):
    def drop_one_moment(d):
        del d["optimizer_state"]["v_W1"]

    with pytest.raises(ModelFileError, match="incomplete"):
        model_from_bytes(edited(small_model, drop_one_moment))


def test_adam_state_without_its_step_count_is_refused(small_model):
    with pytest.raises(ModelFileError, match="incomplete"):
        model_from_bytes(edited(small_model, lambda d: d["optimizer_state"].pop("t")))


@pytest.mark.parametrize(
    "change, match",
    [
        ({"scale_range": [1.0]}, "scale_range"),
        ({"scale_range": [2.0, 1.0]}, "scale_range"),
        ({"epochs": 10**9}, "epochs must be at most"),
        ({"batch_size": 10**9}, "batch_size"),
        ({"max_rotation": 1e6}, "max_rotation"),
        ({"learning_rate": 1e300}, "learning_rate"),
    ],
)
def test_configs_the_trainer_cannot_use_are_refused_at_load(small_model, change, match):
    with pytest.raises(ModelFileError, match=match):
        model_from_bytes(edited(small_model, lambda d: d["config"].update(change)))


def test_a_loaded_model_always_resumes(small_model):
    """Whatever loads can be trained further: the loader checks all that resuming needs."""
    X, y = block_digits()
    model = model_from_bytes(model_to_bytes(small_model))
    model.config = TrainConfig(**{**model.config.to_dict(), "epochs": 1, "n_train": None})
    model.fit(X, y)
    assert model.epochs_done_ == small_model.epochs_done_ + 1


def test_cli_checks_out_before_loading_data_or_training(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    started = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "mnist_net", "train", "--out", str(blocker / "m.pkl"), "--no-download"],
        cwd=ROOT, env={**os.environ, "MNIST_DIR": str(tmp_path / "no-mnist-here")}, capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 1 and "cannot write --out" in r.stderr and "Traceback" not in r.stderr
    assert time.monotonic() - started < 30
    r = subprocess.run([sys.executable, "-m", "mnist_net", "train", "--out", str(tmp_path), "--force"], cwd=ROOT,
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 1 and "is a directory" in r.stderr


@needs_mnist
def test_a_model_that_cannot_be_saved_where_asked_is_rescued(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MNIST_NET_MODELS_DIR", str(tmp_path / "models"))
    out = tmp_path / "out" / "m.pkl"
    real_save = cli.save_model

    def disk_full_at_out(model, path):
        if Path(path) == out:
            raise OSError(28, f"could not save the model to {path}: No space left on device")
        return real_save(model, path)

    monkeypatch.setattr(cli, "save_model", disk_full_at_out)
    args = ["train", "--data-dir", str(MNIST_DIR), "--n-train", "500", "--epochs", "1", "--hidden", "8", "-q"]
    assert cli.main([*args, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "No space left" in err and "was saved to" in err
    [rescued] = list_models(tmp_path / "models")
    assert str(rescued.path) in err and load_model(rescued.path).epochs_done_ == 1


# --- 5. the form cannot ask for what the format or the server cannot do ---------------------------


def test_config_limits_match_the_file_format(tmp_path):
    with pytest.raises(ValueError, match="at most 12,000,000"):
        TrainConfig(hidden_sizes=(4096, 4096))
    # The largest network the config allows, with Adam's state, saves and loads back.
    big = MLP(hidden_sizes=(2900, 1200), optimizer="adam").initialize()
    big.optimizer_state_ = {"t": np.array(1)} | {
        f"{m}_{k}": np.zeros_like(v) for k, v in big.params_.items() for m in "mv"
    }  # fmt: skip
    assert sum(v.size for v in big.params_.values()) > 5_000_000
    assert load_model(save_model(big, tmp_path / "big.pkl")).layer_sizes == [784, 2900, 1200, 10]


def test_cost_estimates_grow_with_the_work_and_absurd_runs_are_refused():
    small = estimate_training_cost(TrainConfig(), 60_000)
    assert refusal(small) is None
    assert estimate_training_cost(TrainConfig(epochs=20), 60_000).seconds > 1.9 * small.seconds
    assert estimate_training_cost(TrainConfig(hidden_sizes=(1024, 512)), 60_000).peak_bytes > small.peak_bytes
    slow = TrainConfig(hidden_sizes=(2048, 2048), epochs=200, batch_size=1)
    assert "hours" in refusal(estimate_training_cost(slow, 60_000))
    huge = TrainConfig(hidden_sizes=(2048, 2048), batch_size=65536)
    assert "GB" in refusal(estimate_training_cost(huge, 60_000))


@pytest.fixture
def train_page(mnist_dir, models_dir, monkeypatch):
    monkeypatch.setenv("MNIST_DIR", str(mnist_dir))
    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page("pages/train.py").run()
    return at


@pytest.mark.parametrize(
    "hidden, epochs, batch, message",
    [
        ("4096,4096", 5, 128, "at most 12,000,000"),
        ("2048,2048", 200, 1, "This server cannot run that"),
        ("128,,64", 5, 128, "empty item"),
    ],
)
def test_train_page_refuses_what_cannot_be_trained_or_saved(train_page, hidden, epochs, batch, message):
    at = train_page
    at.text_input(key="hidden_sizes").set_value(hidden)
    at.number_input(key="epochs").set_value(epochs)
    at.number_input(key="batch_size").set_value(batch)
    at.button(key="start").click().run()
    assert not at.exception and "train_job" not in at.session_state
    assert any(message in e.value for e in at.error), [e.value for e in at.error]


# --- 6. the models folder ------------------------------------------------------------------------


def test_a_file_name_that_is_not_utf8_does_not_break_the_listing_or_the_page(small_model, models_dir):
    kept = save_new_model(small_model)
    with open(os.path.join(os.fsencode(models_dir), b"mnist-\xff\xfe-bad.pkl"), "wb") as f:
        f.write(model_to_bytes(small_model))
    assert [m.path for m in list_models()] == [kept]
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception
    assert f"Saved: {kept.name}" in at.selectbox(key="model_choice").options


def test_a_replaced_file_with_its_old_mtime_is_reloaded(small_model, models_dir, mnist):
    path = save_new_model(small_model)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.selectbox(key="model_choice").set_value(f"file:{path.name}").run()
    assert "784 → 64 → 10" in " ".join(m.value for m in at.sidebar.markdown)
    before = path.stat()
    other = MLP(hidden_sizes=(12,), epochs=1, n_train=500, seed=4).fit(mnist.X_train, mnist.y_train)
    save_model(other, path)  # replaced ...
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # ... and its modification time put back
    assert path.stat().st_mtime_ns == before.st_mtime_ns
    at.run()
    assert not at.exception
    assert "784 → 12 → 10" in " ".join(m.value for m in at.sidebar.markdown)


# --- 9. where the server listens -------------------------------------------------------------------


def _other_address() -> str | None:
    """An address of this machine that is not loopback, if it has one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
            address = s.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


def test_the_app_listens_only_on_this_machine_by_default(tmp_path):
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    script = (ROOT / "scripts" / "app.sh").read_text()
    assert "address=127.0.0.1" in script and "--classroom" in script
    other = _other_address()
    if other is None:
        pytest.skip("this machine has no non-loopback address to probe")
    port = free_port()
    with open(tmp_path / "log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
             "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "MNIST_NET_MODELS_DIR": str(tmp_path / "models")},
        )  # fmt: skip
    try:

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    return r.read().strip() == b"ok"
            except OSError:
                return False

        assert wait_until(healthy, timeout=90, interval=0.3), (tmp_path / "log").read_text()[-2000:]
        with pytest.raises(OSError):
            socket.create_connection((other, port), timeout=3).close()
    finally:
        proc.terminate()
        proc.wait(30)


def test_a_long_history_is_thinned_on_save_and_a_huge_one_refused_at_load(small_model, tmp_path):
    record = dict(small_model.history_[-1], kind="batch")
    model = model_from_bytes(model_to_bytes(small_model))
    model.history_ = [dict(record, batch=i) for i in range(120_000)] + small_model.history_[-1:]
    loaded = load_model(save_model(model, tmp_path / "long.pkl"))
    assert 1 < len(loaded.history_) <= 20_001 and loaded.history_[-1] == small_model.history_[-1]
    shared = [record] * 35_000  # one dict, 35k references: a small file, a million-value walk
    outcome = run_bounded(model_from_bytes, edited(small_model, lambda d: d.update(history=shared)), seconds=10)
    assert outcome.kind == "raised" and outcome.error_type == "ModelFileError", outcome
    assert "at most 30000" in outcome.message or "more than 1000000 values" in outcome.message
