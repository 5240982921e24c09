"""Model files: save/load round trip, the plain-dict format, the notebook's pickle, atomic writes."""

import pickle

import numpy as np
import pytest

from mnist_net import MLP, ModelFileError, load_model, save_model
from mnist_net.model_io import FORMAT_VERSION, model_to_dict


@pytest.fixture
def fitted():
    rng = np.random.default_rng(0)
    X, y = rng.random((50, 784), dtype=np.float32), np.arange(50) % 10
    model = MLP(hidden_sizes=(12, 6), activation="relu", epochs=2, batch_size=10).fit(X, y)
    model.metrics_ = {"test_accuracy": 0.5}
    model.data_hash_ = "abc"
    model.info_ = {"source": "test"}
    return model, X


def test_round_trip_keeps_everything(fitted, tmp_path):
    model, X = fitted
    path = save_model(model, tmp_path / "sub" / "m.pkl")
    loaded = load_model(path)
    for k in model.params_:
        np.testing.assert_array_equal(loaded.params_[k], model.params_[k])
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert loaded.config == model.config
    assert loaded.history_ == model.history_ and loaded.metrics_ == model.metrics_
    assert loaded.data_hash_ == "abc" and loaded.info_ == {"source": "test"}
    assert loaded.epochs_done_ == 2 and loaded.layer_sizes == [784, 12, 6, 10]
    assert set(loaded.optimizer_state_) == set(model.optimizer_state_)


def test_file_is_a_plain_dict_independent_of_our_classes(fitted, tmp_path):
    model, _ = fitted
    path = save_model(model, tmp_path / "m.pkl")
    raw = path.read_bytes()
    assert b"mnist_net" not in raw.split(b"kind")[0]  # no class of ours is referenced
    d = pickle.loads(raw)  # our own file in a trusted test: plain pickle is fine here
    assert d["format_version"] == FORMAT_VERSION and d["layer_sizes"] == [784, 12, 6, 10]
    assert d["activation"] == "relu" and d["params"]["W1"].shape == (784, 12)
    assert isinstance(d["config"], dict) and isinstance(d["history"], list)
    assert {"metrics", "data_hash", "optimizer_state", "epochs_done", "info"} <= set(d)


def notebook_forward(nb, x):
    """The seed notebook's forward pass for one column vector x: (784, 1)."""

    def sig(z):
        return 1 / (1 + np.exp(-z))

    a1 = sig(nb["w1"] @ x + nb["b1"])
    a2 = sig(nb["w2"] @ a1 + nb["b2"])
    z3 = nb["w3"] @ a2 + nb["b3"]
    e = np.exp(z3 - z3.max())
    return (e / e.sum())[:, 0]


def test_notebook_pickle_loads_and_predicts_like_the_notebook(tmp_path):
    rng = np.random.default_rng(0)
    size = [784, 128, 64, 10]
    nb = {}
    for i in (1, 2, 3):
        nb[f"w{i}"] = rng.standard_normal((size[i], size[i - 1])) / np.sqrt(size[i - 1])
        nb[f"b{i}"] = rng.standard_normal((size[i], 1)) / np.sqrt(size[i - 1])
    path = tmp_path / "mnist_model.pkl"
    path.write_bytes(pickle.dumps(nb))
    model = load_model(path)
    assert model.layer_sizes == size and model.activation == "sigmoid"
    X = rng.random((5, 784))
    expected = np.stack([notebook_forward(nb, x[:, None]) for x in X])
    np.testing.assert_allclose(model.predict_proba(X), expected, atol=1e-5)
    np.testing.assert_array_equal(model.predict(X), expected.argmax(axis=1))


def test_save_is_atomic_when_writing_fails(fitted, tmp_path, monkeypatch):
    model, _ = fitted
    path = save_model(model, tmp_path / "m.pkl")
    before = path.read_bytes()

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("mnist_net.model_io.os.fsync", broken_fsync)
    with pytest.raises(OSError, match="No space"):
        save_model(model, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.pkl"]  # no temp file left behind


def test_unfitted_model_cannot_be_saved(tmp_path):
    with pytest.raises(ValueError, match="not been fitted"):
        save_model(MLP(), tmp_path / "m.pkl")


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ModelFileError, match="no such model file"):
        load_model(tmp_path / "nope.pkl")


def test_config_round_trips_through_model_dict(fitted):
    model, _ = fitted
    d = model_to_dict(model)
    assert d["config"]["hidden_sizes"] == [12, 6] and d["config"]["activation"] == "relu"


def test_saved_file_is_readable_by_others(fitted, tmp_path):
    model, _ = fitted
    path = save_model(model, tmp_path / "m.pkl")
    assert path.stat().st_mode & 0o777 == 0o644
