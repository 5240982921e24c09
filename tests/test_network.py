"""MLP: determinism, a tiny overfit, the scikit-learn-like API and its input checks."""

import numpy as np
import pytest

from mnist_net import MLP, TrainConfig


def tiny_data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, 784), dtype=np.float32)
    y = np.arange(n) % 10
    return X, y


def test_same_seed_gives_identical_weights_bit_for_bit():
    X, y = tiny_data()
    a = MLP(epochs=2, batch_size=16, augment=True, seed=7, val_fraction=0).fit(X, y)
    b = MLP(epochs=2, batch_size=16, augment=True, seed=7, val_fraction=0).fit(X, y)
    for k in a.params_:
        assert a.params_[k].tobytes() == b.params_[k].tobytes(), k
    c = MLP(epochs=2, batch_size=16, augment=True, seed=8, val_fraction=0).fit(X, y)
    assert not np.array_equal(a.params_["W1"], c.params_["W1"])


@pytest.mark.parametrize(
    "activation,optimizer,lr",
    [
        ("sigmoid", "adam", 1e-2),
        ("relu", "adam", 1e-2),
        ("relu", "momentum", 0.05),
        ("sigmoid", "sgd", 1.0),
    ],
)
def test_tiny_fixed_seed_overfit(activation, optimizer, lr):
    # 30 random images with arbitrary labels: only memorisation can fit them.
    X, y = tiny_data(30)
    model = MLP(
        hidden_sizes=(32,),
        activation=activation,
        optimizer=optimizer,
        learning_rate=lr,
        batch_size=10,
        epochs=150,
        val_fraction=0,
        seed=0,
    )
    model.fit(X, y)
    assert model.score(X, y) == 1.0
    assert model.history_[-1]["loss"] < 0.1


def test_training_reduces_loss_and_history_is_recorded():
    X, y = tiny_data(100)
    model = MLP(hidden_sizes=(16,), epochs=5, batch_size=20, log_every=2, val_fraction=0.2).fit(X, y)
    epochs = [h for h in model.history_ if h["kind"] == "epoch"]
    assert [h["epoch"] for h in epochs] == [1, 2, 3, 4, 5]
    assert all(h["val_acc"] is not None for h in epochs)
    assert any(h["kind"] == "batch" for h in model.history_)
    assert epochs[-1]["loss"] < epochs[0]["loss"]


def test_predict_proba_rows_sum_to_one_and_predict_is_argmax():
    X, y = tiny_data(40)
    model = MLP(hidden_sizes=(8, 8), epochs=1, val_fraction=0).fit(X, y)
    p = model.predict_proba(X)
    assert p.shape == (40, 10) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-5)
    np.testing.assert_array_equal(model.predict(X), p.argmax(axis=1))
    # uint8 images are scaled by 1/255, giving the same answer as floats in [0, 1]
    X8 = (X * 255).round().astype(np.uint8)
    np.testing.assert_allclose(model.predict_proba(X8), model.predict_proba(X8 / 255.0), atol=1e-6)


def test_input_validation_messages():
    X, y = tiny_data(20)
    with pytest.raises(ValueError, match="not fitted"):
        MLP().predict(X)
    model = MLP(hidden_sizes=(4,), epochs=1, val_fraction=0).fit(X, y)
    with pytest.raises(ValueError, match="784"):
        model.predict(np.zeros((2, 100)))
    with pytest.raises(ValueError, match="NaN"):
        model.predict(np.full((1, 784), np.nan))
    with pytest.raises(ValueError, match=r"in \[0, 1\].*divide 0-255"):
        model.predict(X * 255)
    with pytest.raises(ValueError, match="labels"):
        MLP(epochs=1).fit(X, y + 10)
    with pytest.raises(ValueError, match="images but y has"):
        MLP(epochs=1).fit(X, y[:5])
    with pytest.raises(ValueError, match="activation"):
        TrainConfig(activation="tanh")
    with pytest.raises(ValueError, match="hidden_sizes"):
        MLP(hidden_sizes=(0,))


def test_default_architecture_is_the_notebooks():
    model = MLP().initialize()
    assert model.layer_sizes == [784, 128, 64, 10]
    assert model.activation == "sigmoid"
    assert model.params_["W1"].shape == (784, 128) and model.params_["b3"].shape == (10,)
    assert all(v.dtype == np.float32 for v in model.params_.values())


@pytest.mark.parametrize(
    "bad,message",
    [
        ({"l2": float("nan")}, "l2 must be a number"),
        ({"learning_rate": "0.1"}, "learning_rate must be a number"),
        ({"batch_size": 12.5}, "batch_size must be a whole number"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"epochs": True}, "epochs must be a whole number"),
        ({"max_thicken": 9}, "max_thicken"),
    ],
)
def test_config_refuses_wrong_types_and_nan(bad, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**bad)
    assert TrainConfig(batch_size=np.int64(64), learning_rate=np.float32(0.01)).batch_size == 64
