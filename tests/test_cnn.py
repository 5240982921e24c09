"""CNNs as a layer model: the spec parser and its bounds, TrainConfig's ``layers``, a tiny
deterministic CNN that learns, saving and loading it (format 2), hostile CNN model files, the
command line's --arch/--layers, the budget's refusal of absurd CNN runs."""

import pickle
from dataclasses import replace

import numpy as np
import pytest
from conftest import HAVE_MNIST, block_digits
from test_cli import run

from mnist_net import MLP, ModelFileError, Network, TrainConfig, model_from_bytes, model_to_bytes
from mnist_net.architecture import (
    PRESETS,
    count_parameters,
    flops_per_image,
    format_layers,
    layer_shapes,
    mlp_layers,
    parse_layers,
)
from mnist_net.budget import estimate_training_cost, refusal
from mnist_net.functional import logits_in_chunks, predict_chunk
from mnist_net.model_io import FORMAT_VERSION, model_to_dict

TINY = "conv 4x3x3 -> pool 2 -> conv 8x3x3 valid -> pool 2 -> dense 16 -> dropout 0.2 -> dense 10"


# --- the spec -------------------------------------------------------------------------------------


def test_the_preset_parses_to_the_shapes_and_sizes_it_promises():
    layers = parse_layers("cnn")
    assert format_layers(layers) == PRESETS["cnn"]
    assert layer_shapes(layers) == [
        (28, 28, 1), (28, 28, 32), (14, 14, 32), (14, 14, 64), (7, 7, 64), (256,), (256,), (10,),
    ]  # fmt: skip
    # 5*5*1*32+32 + 5*5*32*64+64 + 3136*256+256 + 256*10+10
    assert count_parameters(layers) == 832 + 51264 + 803072 + 2570
    forward, backward = flops_per_image(layers)
    assert forward == 2 * (28 * 28 * 25 * 32 + 14 * 14 * 25 * 32 * 64 + 3136 * 256 + 2560)
    assert backward == 2 * forward - 2 * 28 * 28 * 25 * 32  # no image gradient


def test_specs_are_forgiving_in_spelling_and_canonical_in_storage():
    assert format_layers(parse_layers("CONV 8 x 3 x 5 valid → pool 2 , Dense 10")) == (
        "conv 8x3x5 valid -> pool 2 -> dense 10"
    )
    assert TrainConfig(layers=" cnn ").layers == PRESETS["cnn"]
    assert parse_layers("dense 128 -> dense 64 -> dense 10") == mlp_layers((128, 64))


@pytest.mark.parametrize(
    "spec,message",
    [
        ("", r"give at least one layer"),
        ("conv 32x5x5 -> -> dense 10", r"empty layer"),
        ("conv 32x5 -> dense 10", r"layer 1 'conv 32x5' is not understood: write conv CHANNELSxKxK"),
        ("conv 32x5x5 -> maxpool 2 -> dense 10", r"layer 2 'maxpool 2' is not understood: layers are conv"),
        ("dropout 1.5 -> dense 10", r"dropout rate is in \[0, 1\)"),
        ("conv 32x5x5 -> pool 2 -> dense 9", r"last layer must be dense 10"),
        ("conv 32x5x5 -> pool 2", r"last layer must be dense 10"),
        ("dense 64 -> conv 8x3x3 -> dense 10", r"layer 2 \(conv 8x3x3\) needs an image, but follows a dense layer"),
        ("conv 4x9x9 valid -> conv 4x9x9 valid -> conv 4x9x9 valid -> conv 4x9x9 valid -> dense 10", r"too small"),
        ("pool 7 -> pool 7 -> dense 10", r"layer 2 \(pool 7\) gets a 4x4 image: too small"),
        ("conv 100000x3x3 -> dense 10", r"1 to 256 channels"),
        ("conv 8x99x99 -> dense 10", r"kernels are 1 to 9 pixels"),
        ("conv 8x0x3 -> dense 10", r"kernels are 1 to 9 pixels"),
        ("pool 1 -> dense 10", r"pooling is over 2 to 7"),
        ("dense 5000 -> dense 10", r"1 to 4096 units"),
        ("conv 64x3x3 -> dense 4096 -> dense 10", r"weights; at most 12,000,000"),
        (" -> ".join(["conv 256x3x3"] * 6 + ["dense 10"]), r"18 MB per image for training; at most 15 MB"),
        (" -> ".join(["dense 10"] * 17), r"at most 16"),
        ("dense 10 " * 200, r"at most 1000"),
    ],
)
def test_spec_errors_say_which_layer_and_what_to_write(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_layers(spec)
    if spec.strip():  # "" is the MLP of hidden_sizes
        with pytest.raises(ValueError, match="^layers: .*" + message):
            TrainConfig(layers=spec)
    else:
        with pytest.raises(ValueError, match=r"layers must be a layer spec \(text\), got 123"):
            TrainConfig(layers=123)  # type: ignore[arg-type]


def test_a_batch_that_would_need_gigabytes_is_refused_by_the_config():
    with pytest.raises(ValueError, match=r"a batch of 4096 through these layers needs about \d+\.\d GB"):
        TrainConfig(layers="cnn", batch_size=4096)
    TrainConfig(layers="cnn", batch_size=512)  # fine


def test_the_config_carries_the_layers_through_its_dict():
    cfg = TrainConfig(layers="cnn", activation="relu")
    again = TrainConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.layer_specs == parse_layers("cnn")
    assert TrainConfig().layer_specs == mlp_layers((128, 64)) and TrainConfig().architecture == "784→128→64→10"


# --- the model --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_cnn():
    X, y = block_digits(300)
    model = Network(layers=TINY, activation="relu", epochs=6, batch_size=30, val_fraction=0, learning_rate=3e-3)
    return model.fit(X, y), X, y


def test_a_tiny_deterministic_cnn_learns(tiny_cnn):
    model, X, y = tiny_cnn
    assert model.score(X, y) >= 0.9
    assert model.history_[0]["loss"] > 2 * model.history_[-1]["loss"]
    again = Network(model.config).fit(X, y)  # same seed, same data: the same network
    for k in model.params_:
        np.testing.assert_array_equal(again.params_[k], model.params_[k])
    assert MLP is Network and isinstance(model, MLP)
    assert repr(model) == f"Network({TINY}, relu, fitted)"


def test_prediction_needs_no_dropout_and_is_bounded_in_memory(tiny_cnn):
    model, X, _ = tiny_cnn
    p = model.predict_proba(X[:7])
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(model.predict_proba(X[:7]), p)  # no random dropout at prediction
    np.testing.assert_allclose(model.predict_proba(X[3:4]), p[3:4], rtol=1e-5)
    big = parse_layers("conv 64x5x5 -> conv 64x5x5 -> pool 2 -> dense 10")
    assert predict_chunk(big) < 4096  # a heavy spec predicts fewer rows at a time
    chunked = logits_in_chunks(model.params_, X, "relu", chunk=16, layers=model.layers)
    np.testing.assert_allclose(chunked, model.logits(X), rtol=1e-5, atol=1e-5)


def test_a_cnn_resumes_training_where_it_left_off(tiny_cnn):
    model, X, y = tiny_cnn
    copy = model_from_bytes(model_to_bytes(model))
    copy.config = replace(copy.config, epochs=1)
    copy.fit(X, y)
    assert copy.epochs_done_ == model.epochs_done_ + 1 and int(copy.optimizer_state_["t"]) > 0


def test_layer_outputs_and_input_gradient_of_a_model(tiny_cnn):
    model, X, _ = tiny_cnn
    outputs = model.layer_outputs(X[:2])
    assert [o.kind for o in outputs] == ["conv", "pool", "conv", "pool", "dense", "dropout", "dense"]
    assert outputs[0].values.shape == (2, 28, 28, 4) and outputs[2].values.shape == (2, 12, 12, 8)
    np.testing.assert_allclose(outputs[-1].values, model.logits(X[:2]), rtol=1e-6)
    saliency = model.input_gradient(X[:2], lambda z: np.eye(10, dtype=np.float32)[[3, 3]])
    assert saliency.shape == (2, 784) and np.any(saliency != 0)


# --- files --------------------------------------------------------------------------------------


def test_a_cnn_round_trips_through_a_format_2_file(tiny_cnn, tmp_path):
    model, X, _ = tiny_cnn
    d = model_to_dict(model)
    assert d["format_version"] == FORMAT_VERSION == 2 and d["layers"] == TINY
    loaded = model_from_bytes(model_to_bytes(model))
    assert loaded.config == model.config and loaded.layers == model.layers
    np.testing.assert_array_equal(loaded.predict_proba(X[:20]), model.predict_proba(X[:20]))
    for k in model.optimizer_state_:
        np.testing.assert_array_equal(loaded.optimizer_state_[k], model.optimizer_state_[k])


def test_an_mlp_file_still_says_layer_sizes_and_version_1_files_still_load():
    X, y = block_digits(100)
    mlp = MLP(hidden_sizes=(12,), epochs=1).fit(X, y)
    d = model_to_dict(mlp)
    assert d["layers"] == "" and d["layer_sizes"] == [784, 12, 10]
    d["format_version"] = 1
    del d["layers"]
    old = model_from_bytes(pickle.dumps(d, protocol=4))
    np.testing.assert_array_equal(old.predict_proba(X), mlp.predict_proba(X))


def edited(model, edit) -> bytes:
    d = model_to_dict(model)
    edit(d)
    return pickle.dumps(d, protocol=4)


def _set(key, value):
    def edit(d):
        d[key] = value

    return edit


def _param(name, value):
    def edit(d):
        d["params"][name] = value

    return edit


@pytest.mark.parametrize(
    "edit,message",
    [
        (
            _set("layers", "conv 8x3x3 -> pool 2 -> conv 8x3x3 valid -> pool 2 -> dense 16 -> dense 10"),
            r"W1 \(3, 3, 1, 4\) / b1 \(4,\) do not fit the layers: expected \(3, 3, 1, 8\)",
        ),
        (_set("layers", "conv 4x3x3 -> dense 10 -> pool 2 -> dense 10"), r"invalid layers in file: .*needs an image"),
        (_set("layers", "conv 100000x3x3 -> dense 10"), r"invalid layers in file: .*1 to 256 channels"),
        (_set("layers", "conv 4x999x999 -> dense 10"), r"invalid layers in file: .*kernels are 1 to 9"),
        (_set("layers", " -> ".join(["conv 256x3x3"] * 6 + ["dense 10"])), r"MB per image"),
        (_set("layers", ["conv", 4]), r"layers must be a layer spec"),
        (_set("layers", "conv 4x3x3 -> " * 400 + "dense 10"), r"layers must be a layer spec of at most 1000"),
        (_set("layer_sizes", [784, 10]), r"layer_sizes .* do not match the layers"),
        (_param("W1", np.zeros((3, 3, 1, 5), np.float32)), r"W1 \(3, 3, 1, 5\) / b1 \(4,\) do not fit"),
        (_param("W1", np.zeros((9, 4), np.float32)), r"W1 \(9, 4\) / b1 \(4,\) do not fit"),
        (_param("W3", np.zeros((200, 16), np.float32)), r"W3 \(200, 16\) / b3 \(16,\) do not fit"),
        (_param("b2", np.zeros((8, 1), np.float32)), r"b2 \(8, 1\) do not fit"),
        (_param("W2", np.full((3, 3, 4, 8), np.nan, np.float32)), r"NaN or infinite"),
        (_param("W2", np.full((3, 3, 4, 8), 1e35, np.float32)), r"predictions would overflow"),
        (_param("W2", np.zeros((3, 3, 4, 8), np.int32)), r"must be float arrays"),
        (_param("W9", np.zeros((3,), np.float32)), r"parameters must be exactly"),
    ],
)
def test_hostile_cnn_files_are_refused_with_a_reason(tiny_cnn, edit, message):
    model, _, _ = tiny_cnn
    with pytest.raises(ModelFileError, match=message) as info:
        model_from_bytes(edited(model, edit))
    assert len(str(info.value)) < 400


def test_a_file_cannot_smuggle_a_different_network_through_its_config(tiny_cnn):
    model, _, _ = tiny_cnn

    def edit(d):
        d["config"]["layers"] = "cnn"  # the file's own "layers" field decides, and must fit the weights

    loaded = model_from_bytes(edited(model, edit))
    assert loaded.config.layers == TINY


# --- command line and budget ---------------------------------------------------------------------


def test_the_budget_counts_cnn_flops_and_refuses_absurd_runs():
    cnn = estimate_training_cost(TrainConfig(layers="cnn", epochs=1), 60_000)
    mlp = estimate_training_cost(TrainConfig(epochs=1), 60_000)
    assert cnn.seconds > 10 * mlp.seconds
    assert refusal(cnn) is None
    huge = estimate_training_cost(TrainConfig(layers="conv 128x9x9 -> pool 2 -> dense 10", epochs=200), 60_000)
    assert "hours" in refusal(huge)


def test_the_cli_refuses_bad_specs_and_absurd_runs_before_loading_anything(tmp_path):
    r = run("train", "--layers", "conv 32x5x5 -> dense 9", "--out", str(tmp_path / "m.pkl"))
    assert r.returncode == 2 and "last layer must be dense 10" in r.stderr and "Traceback" not in r.stderr
    r = run("train", "--arch", "cnn", "--hidden", "64", "--out", str(tmp_path / "m.pkl"))
    assert r.returncode == 1 and "--hidden sizes an MLP" in r.stderr
    spec = "conv 128x9x9 -> pool 2 -> dense 10"
    r = run("train", "--layers", spec, "--epochs", "10000", "--out", str(tmp_path / "m.pkl"), timeout=60)
    assert r.returncode == 1 and "more than 7 days" in r.stderr


@pytest.mark.skipif(not HAVE_MNIST, reason="needs MNIST_DIR")
def test_the_cli_trains_evaluates_and_predicts_with_a_cnn(tmp_path):
    out = tmp_path / "cnn.pkl"
    spec = "conv 8x5x5 -> pool 2 -> dense 32 -> dense 10"
    r = run("train", "--layers", spec, "--n-train", "2000", "--epochs", "1", "--batch-size", "50", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert f"training {spec} relu" in r.stderr  # relu unless asked otherwise
    r = run("evaluate", str(out))
    assert r.returncode == 0 and f"({spec}, relu)" in r.stdout
    assert float(r.stdout.split("test accuracy: ")[1].split()[0]) > 0.7
    from PIL import Image

    Image.fromarray((block_digits(1)[0][0].reshape(28, 28) * 255).astype(np.uint8)).save(tmp_path / "d.png")
    r = run("predict", str(out), str(tmp_path / "d.png"))
    assert r.returncode == 0 and "d.png: " in r.stdout
