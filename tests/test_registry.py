"""Models folder: where it is, unique atomic names, listing, loading back, model facts."""

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mnist_net import MLP, TrainConfig, load_model, registry
from mnist_net.registry import list_models, model_facts, model_filename, models_dir, save_new_model

WHEN = datetime(2026, 11, 28, 11, 5, 12, tzinfo=UTC)


def test_models_dir_from_env_else_project_models(monkeypatch, tmp_path):
    monkeypatch.setenv("MNIST_NET_MODELS_DIR", str(tmp_path / "m"))
    assert models_dir() == tmp_path / "m"
    monkeypatch.delenv("MNIST_NET_MODELS_DIR")
    assert models_dir() == Path(registry.__file__).resolve().parents[1] / "models"


def test_filename_has_time_and_accuracy():
    assert model_filename(WHEN, 0.97634) == "mnist-20261128-110512-acc97.63.pkl"
    assert model_filename(WHEN, None) == "mnist-20261128-110512.pkl"


def test_listing_reads_the_accuracy_of_repeats_and_kept_names(models_dir):
    from mnist_net.runs import kept_file_names

    models_dir.mkdir(parents=True, exist_ok=True)
    kept = next(iter(kept_file_names(WHEN, 0.9812, "my first run")))
    for name in ("mnist-20261128-110512-acc97.63-2.pkl", kept):
        (models_dir / name).write_bytes(b"x")
    accuracies = {m.path.name: m.test_accuracy for m in list_models()}
    assert accuracies == pytest.approx({"mnist-20261128-110512-acc97.63-2.pkl": 0.9763, kept: 0.9812})
    assert "my" in kept  # the user's name is in the file name


def test_save_lists_and_loads_back(small_model, models_dir):
    path = save_new_model(small_model, when=WHEN)
    assert path.parent == models_dir and path.name.startswith("mnist-20261128-110512-acc")
    [entry] = list_models()
    assert entry.path == path
    assert entry.test_accuracy == round(small_model.metrics_["test_accuracy"], 4)
    loaded = load_model(path)
    assert loaded.layer_sizes == small_model.layer_sizes
    assert loaded.metrics_ == small_model.metrics_ and loaded.info_ == small_model.info_
    assert [p.name for p in models_dir.iterdir()] == [path.name]  # no temp files left behind


def test_same_second_saves_never_overwrite(small_model, models_dir):
    paths = []
    barrier = threading.Barrier(4)

    def save():
        barrier.wait()
        paths.append(save_new_model(small_model, when=WHEN))

    threads = [threading.Thread(target=save) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(paths)) == 4
    assert sorted(m.path for m in list_models()) == sorted(paths)
    for p in paths:
        load_model(p)  # each one complete


def test_listing_ignores_temp_empty_and_foreign_files(small_model, models_dir):
    models_dir.mkdir()
    (models_dir / ".pending-abc.pkl").write_bytes(b"partial")
    (models_dir / "reserved.pkl").write_bytes(b"")
    (models_dir / "notes.txt").write_text("hi")
    (models_dir / "sub.pkl").mkdir()
    assert list_models() == []
    own = save_new_model(small_model)
    assert [m.path for m in list_models()] == [own]


def test_missing_folder_lists_nothing(tmp_path):
    assert list_models(tmp_path / "nope") == []


def test_model_facts(small_model):
    facts = model_facts(small_model)
    assert facts["Layers"] == "784 → 64 → 10"
    cnn = MLP(TrainConfig(layers="conv 4x3x3 -> pool 2 -> dense 10")).initialize()
    assert model_facts(cnn)["Layers"] == "conv 4x3x3 → pool 2 → dense 10"
    assert facts["Activation"] == "relu"
    assert facts["Test accuracy"].endswith("%")
    assert facts["Trained"] == "2026-11-28 10:00 UTC"


def test_same_second_saves_without_hard_links(small_model, models_dir, monkeypatch):
    """Filesystems without hard links fall back to an exclusive reservation of the name."""

    def no_links(src, dst):
        raise PermissionError("hard links not supported here")

    monkeypatch.setattr(registry.os, "link", no_links)
    paths = [save_new_model(small_model, when=WHEN) for _ in range(3)]
    assert len(set(paths)) == 3
    assert [p.name for p in paths][1:] == [paths[0].name.replace(".pkl", f"-{i}.pkl") for i in (2, 3)]
    assert sorted(p.name for p in models_dir.iterdir()) == sorted(p.name for p in paths)  # no temp files
    for p in paths:
        load_model(p)
