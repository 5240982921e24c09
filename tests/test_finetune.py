"""Fine-tuning on a person's digits: it learns their style, leaves the base model alone, refuses bad
input, records what it was tuned on (through save/load), works for a CNN; and the helpers."""

from __future__ import annotations

import pickle
from dataclasses import replace

import numpy as np
import pytest

from mnist_net import (
    MLP,
    DigitSet,
    FineTuneOptions,
    ModelFileError,
    Network,
    accuracy_by_class,
    evaluate_digits,
    fine_tune,
    load_model,
    model_from_bytes,
    model_to_bytes,
    save_model,
    split_held_out,
)
from mnist_net.finetune import (
    MAX_PERSONAL_DIGITS,
    anchor_pull,
    digit_flips,
    model_sha256,
    soft_cross_entropy,
    step_targets,
)
from mnist_net.functional import softmax_cross_entropy
from mnist_net.model_io import model_to_dict

ROWS = 28


def bar_digits(n: int, seed: int, writer: bool) -> tuple[np.ndarray, np.ndarray]:
    """A tiny learnable "handwriting": class c is a bright horizontal bar, 2 rows thick.

    Everyone (``writer=False``) draws digit c's bar at rows 2c+2..2c+3, on the left half of the
    image; this writer (``writer=True``) draws the same bars on the right half, where the base
    model has never seen ink: it cannot read them until it is taught. X (n, 784) float32, y (n,).
    """
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 10
    X = rng.random((n, ROWS, ROWS), dtype=np.float32) * 0.1
    cols = slice(16, 27) if writer else slice(1, 12)
    for i, c in enumerate(y):
        X[i, 2 * c + 3 : 2 * c + 5, cols] = 1.0
    return X.reshape(n, -1), y


@pytest.fixture(scope="module")
def base_and_data():
    """A small ReLU MLP that reads everyone's bars (and not the writer's), with its data."""
    X, y = bar_digits(600, seed=0, writer=False)
    model = MLP(hidden_sizes=(32,), activation="relu", epochs=8, batch_size=32, seed=0, val_fraction=0).fit(X, y)
    return model, (X, y)


# The writer's ink lies where the base model has never seen any, far from anything the default pull
# towards the original weights (anchor 1, chosen on synthetic writers) lets the weights go: these
# tests of learning turn it off; test_the_anchor_keeps_the_weights_near_the_original tests the pull.
OPTIONS = FineTuneOptions(steps=120, batch_size=32, seed=3, anchor=0.0)


def param_bytes(model: Network) -> dict[str, bytes]:
    assert model.params_ is not None
    return {k: v.tobytes() for k, v in model.params_.items()}


def test_tuning_teaches_the_writers_style_without_forgetting_everyone_elses(base_and_data):
    base, rehearsal = base_and_data
    mine_X, mine_y = bar_digits(30, seed=1, writer=True)  # 3 per class to learn from
    held_X, held_y = bar_digits(200, seed=2, writer=True)  # the same writer's other digits
    others_X, others_y = bar_digits(300, seed=4, writer=False)
    before_mine, before_others = base.score(held_X, held_y), base.score(others_X, others_y)
    tuned = fine_tune(base, mine_X, mine_y, options=OPTIONS, rehearsal=rehearsal)
    assert before_others > 0.97 and before_mine < 0.5  # the writer is really unreadable at first
    assert tuned.score(held_X, held_y) > 0.9
    assert tuned.score(others_X, others_y) > 0.95


def test_same_seed_same_model_and_the_base_is_untouched(base_and_data):
    base, rehearsal = base_and_data
    before_params, before_file = param_bytes(base), model_to_bytes(base)
    mine_X, mine_y = bar_digits(30, seed=1, writer=True)
    copy_X = mine_X.copy()
    a = fine_tune(base, mine_X, mine_y, options=OPTIONS, rehearsal=rehearsal)
    b = fine_tune(base, mine_X, mine_y, options=OPTIONS, rehearsal=rehearsal)
    assert param_bytes(base) == before_params and model_to_bytes(base) == before_file
    assert param_bytes(a) == param_bytes(b) and param_bytes(a) != before_params
    np.testing.assert_array_equal(mine_X, copy_X)  # the caller's digits are not changed either
    assert base.fine_tune_ is None and a.params_ is not base.params_


def test_the_record_says_what_it_was_tuned_on_and_survives_save_and_load(base_and_data, tmp_path):
    base, rehearsal = base_and_data
    mine_X, mine_y = bar_digits(23, seed=1, writer=True)
    held_X, held_y = bar_digits(40, seed=2, writer=True)
    test_X, test_y = bar_digits(50, seed=4, writer=False)
    tuned = fine_tune(
        base, mine_X, mine_y, options=OPTIONS, rehearsal=rehearsal, held_out=(held_X, held_y), test=(test_X, test_y)
    )
    record = tuned.fine_tune_
    assert record is not None
    assert record["personal_counts"] == [3, 3, 3, 2, 2, 2, 2, 2, 2, 2]
    assert record["base_sha256"] == model_sha256(base) and len(record["base_sha256"]) == 64
    assert FineTuneOptions.from_dict(record["options"]) == OPTIONS
    assert record["steps_done"] == OPTIONS.steps and record["stopped"] is False
    figures = record["figures"]
    assert figures["held_out_n"] == 40 and figures["test_n"] == 50
    assert figures["held_out_before"] == base.score(held_X, held_y)
    assert figures["held_out_after"] == tuned.score(held_X, held_y) > figures["held_out_before"]
    assert figures["test_after"] == tuned.score(test_X, test_y) == tuned.metrics_["test_accuracy"]
    loaded = load_model(save_model(tuned, tmp_path / "tuned.pkl"))
    assert loaded.fine_tune_ == record
    assert param_bytes(loaded) == param_bytes(tuned)
    # Tuning a tuned model again names the tuned model as its base.
    again = fine_tune(loaded, mine_X, mine_y, options=FineTuneOptions(steps=2, batch_size=8), rehearsal=rehearsal)
    assert again.fine_tune_["base_sha256"] == model_sha256(loaded) != record["base_sha256"]


def test_without_a_test_set_the_base_models_test_accuracy_is_not_claimed(base_and_data):
    base, rehearsal = base_and_data
    base_with_metric = Network.from_state({**base.state_dict(), "metrics": {"test_accuracy": 0.99}})
    mine_X, mine_y = bar_digits(10, seed=1, writer=True)
    tuned = fine_tune(base_with_metric, mine_X, mine_y, options=FineTuneOptions(steps=3), rehearsal=rehearsal)
    assert tuned.metrics_["test_accuracy"] is None
    assert tuned.fine_tune_["figures"] == {}


def test_the_anchor_keeps_the_weights_near_the_original(base_and_data):
    base, rehearsal = base_and_data
    mine_X, mine_y = bar_digits(30, seed=1, writer=True)

    def distance(model: Network) -> float:
        return float(sum(np.sum((model.params_[k] - base.params_[k]) ** 2) for k in base.params_))

    free = fine_tune(base, mine_X, mine_y, options=OPTIONS, rehearsal=rehearsal)
    pulled = fine_tune(base, mine_X, mine_y, options=replace(OPTIONS, anchor=1.0), rehearsal=rehearsal)
    assert distance(pulled) < 0.5 * distance(free)
    assert FineTuneOptions().anchor == 1.0  # the default pulls


def test_stop_returns_the_model_tuned_so_far_and_progress_rises_to_one(base_and_data):
    base, rehearsal = base_and_data
    mine_X, mine_y = bar_digits(30, seed=1, writer=True)
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 7  # checked before each step: 7 steps run

    seen: list[float] = []
    tuned = fine_tune(base, mine_X, mine_y, options=OPTIONS, rehearsal=rehearsal, stop=stop, progress=seen.append)
    assert tuned.fine_tune_["stopped"] is True and tuned.fine_tune_["steps_done"] == 7
    assert tuned.info_["stopped_early"] is True and param_bytes(tuned) != param_bytes(base)
    seen.clear()
    fine_tune(base, mine_X, mine_y, options=OPTIONS, rehearsal=rehearsal, progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == 1.0 and 10 <= len(seen) <= 130
    assert all(0 < f <= 1 for f in seen)


def test_a_tiny_cnn_is_tuned_through_the_same_layers(base_and_data):
    _, rehearsal = base_and_data
    X, y = rehearsal
    spec = "conv 4x3x3 -> pool 2 -> dropout 0.1 -> dense 10"
    cnn = Network(layers=spec, activation="relu", epochs=4, seed=0, batch_size=32, val_fraction=0.0).fit(X, y)
    before = param_bytes(cnn)
    mine_X, mine_y = bar_digits(30, seed=1, writer=True)
    held_X, held_y = bar_digits(100, seed=2, writer=True)
    # A CNN with 4 filters learns the new place more slowly than the MLP: a larger step.
    options = FineTuneOptions(steps=120, batch_size=32, seed=3, learning_rate=1e-3, anchor=0.0)
    tuned = fine_tune(cnn, mine_X, mine_y, options=options, rehearsal=rehearsal)
    assert param_bytes(cnn) == before
    assert tuned.config.layers == cnn.config.layers and not tuned.is_mlp
    assert cnn.score(held_X, held_y) < 0.5 < 0.9 < tuned.score(held_X, held_y)
    assert tuned.score(X, y) > 0.95
    assert model_from_bytes(model_to_bytes(tuned)).fine_tune_ == tuned.fine_tune_


# --- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "X, y, match",
    [
        (np.zeros((3, 785), np.float32), [1, 2, 3], r"shape \(n, 784\)"),
        (np.zeros(784, np.float32), [1], r"shape \(n, 784\)"),
        (np.zeros((3, 784), np.float32), [1, 2], "3 inputs but 2 labels"),
        (np.zeros((0, 784), np.float32), np.zeros(0, np.int64), "no digits"),
        (np.full((2, 784), np.nan, np.float32), [1, 2], "NaN"),
        (np.full((2, 784), 3.0, np.float32), [1, 2], r"\[0, 1\]"),
        (np.zeros((2, 784), np.float32), [1, 10], "found 10"),
        (np.zeros((2, 784), np.float32), [-1, 1], "found -1"),
        (np.zeros((2, 784), np.float32), [1.5, 2], "digits 0-9"),
        (np.zeros((2, 784), np.float32), [["a"], ["b"]], "digits 0-9"),
        (np.zeros((MAX_PERSONAL_DIGITS + 1, 784), np.float32), np.ones(MAX_PERSONAL_DIGITS + 1, int), "at most 5,000"),
    ],
)
def test_bad_personal_digits_are_refused_with_a_reason(base_and_data, X, y, match):
    base, rehearsal = base_and_data
    with pytest.raises(ValueError, match=match):
        fine_tune(base, X, y, rehearsal=rehearsal)


def test_bad_models_rehearsal_and_options_are_refused(base_and_data):
    base, rehearsal = base_and_data
    X, y = bar_digits(10, seed=1, writer=True)
    with pytest.raises(ValueError, match="trained model"):
        fine_tune(MLP(), X, y, rehearsal=rehearsal)
    with pytest.raises(ValueError, match="trained model"):
        fine_tune("default", X, y, rehearsal=rehearsal)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 100"):
        fine_tune(base, X, y, rehearsal=(rehearsal[0][:50], rehearsal[1][:50]))
    with pytest.raises(ValueError, match="rehearsal images: labels"):
        fine_tune(base, X, y, rehearsal=(rehearsal[0], rehearsal[1] + 5))
    with pytest.raises(ValueError, match="held-out digits"):
        fine_tune(base, X, y, rehearsal=rehearsal, held_out=(X[:, :10], y))
    for bad in (
        dict(steps=0),
        dict(steps=2.5),
        dict(learning_rate=float("nan")),
        dict(learning_rate=0),
        dict(personal_fraction=0),
        dict(anchor=-1),
        dict(optimizer="lbfgs"),
        dict(batch_size=1),
        dict(scale_range=(1.2, 0.8)),
        dict(threads=0),
        dict(seed=-1),
    ):
        with pytest.raises(ValueError):
            FineTuneOptions(**bad)


def test_all_personal_no_rehearsal_needs_no_mnist(base_and_data):
    base, _ = base_and_data
    X, y = bar_digits(20, seed=1, writer=True)
    tuned = fine_tune(base, X, y, options=FineTuneOptions(steps=5, personal_fraction=1.0))
    assert tuned.fine_tune_["steps_done"] == 5


# --- the record in the model file is checked like every other field ----------------------------------


@pytest.fixture(scope="module")
def tuned_file(base_and_data):
    base, rehearsal = base_and_data
    X, y = bar_digits(20, seed=1, writer=True)
    tuned = fine_tune(base, X, y, options=FineTuneOptions(steps=3), rehearsal=rehearsal, held_out=(X, y))
    return model_to_dict(tuned)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda r: r.update(base_sha256="abc"), "base_sha256"),
        (lambda r: r.update(base_sha256="G" * 64), "base_sha256"),
        (lambda r: r.update(personal_counts=[1] * 9), "personal_counts"),
        (lambda r: r.update(personal_counts=[0] * 10), "personal_counts"),
        (lambda r: r.update(personal_counts=[-1, 3, 0, 0, 0, 0, 0, 0, 0, 0]), "personal_counts"),
        (lambda r: r.update(personal_counts=[10**9] + [0] * 9), "personal_counts"),
        (lambda r: r.update(steps_done=-1), "steps_done"),
        (lambda r: r.update(steps_done=True), "steps_done"),
        (lambda r: r.update(stopped="no"), "stopped"),
        (lambda r: r.update(seconds=float("nan")), "seconds"),
        (lambda r: r.update(tuned_at="yesterday"), "tuned_at"),
        (lambda r: r.update(extra=1), "exactly"),
        (lambda r: r.pop("options"), "exactly"),
        (lambda r: r["options"].update(nested={"a": 1}), "option"),
        (lambda r: r["options"].update(learning_rate=float("inf")), "option"),
        (lambda r: r["options"].update(text="x" * 1000), "option"),
        (lambda r: r["figures"].update(held_out_after=1.5), "held_out_after"),
        (lambda r: r["figures"].update(held_out_n=-3), "held_out_n"),
        (lambda r: r["figures"].update(secret=0.5), "figures"),
    ],
)
def test_a_tampered_record_is_refused_on_load(tuned_file, change, match):
    d = pickle.loads(pickle.dumps(tuned_file))  # a deep copy
    change(d["fine_tune"])
    with pytest.raises(ModelFileError, match=match):
        model_from_bytes(pickle.dumps(d, protocol=4))


def test_a_record_that_is_not_a_dict_is_refused_and_none_is_a_plain_model(tuned_file):
    d = pickle.loads(pickle.dumps(tuned_file))
    d["fine_tune"] = ["a", "list"]
    with pytest.raises(ModelFileError, match="fine_tune"):
        model_from_bytes(pickle.dumps(d, protocol=4))
    d["fine_tune"] = None
    assert model_from_bytes(pickle.dumps(d, protocol=4)).fine_tune_ is None
    del d["fine_tune"]  # files written before fine-tuning existed
    assert model_from_bytes(pickle.dumps(d, protocol=4)).fine_tune_ is None


# --- helpers ----------------------------------------------------------------------------------------


def test_anchor_pull_is_the_gradient_of_the_squared_distance():
    rng = np.random.default_rng(0)
    params = {"W1": rng.standard_normal((3, 2)), "b1": rng.standard_normal(2)}
    original = {k: v + rng.standard_normal(v.shape) for k, v in params.items()}
    strength, eps = 0.7, 1e-6

    def penalty(p):
        return 0.5 * strength * sum(np.sum((p[k] - original[k]) ** 2) for k in p)

    grads = {k: np.zeros_like(v) for k, v in params.items()}
    anchor_pull(grads, params, original, strength)
    for k in params:
        for idx in np.ndindex(params[k].shape):
            up = {**params, k: params[k].copy()}
            up[k][idx] += eps
            down = {**params, k: params[k].copy()}
            down[k][idx] -= eps
            assert grads[k][idx] == pytest.approx((penalty(up) - penalty(down)) / (2 * eps), rel=1e-6)


def test_split_held_out_is_stratified_seeded_and_keeps_one_per_class_for_training():
    labels = np.array([0] * 10 + [1] * 4 + [2] * 1 + [3] * 2)
    train, held = split_held_out(labels, 0.25, seed=5)
    assert np.intersect1d(train, held).size == 0 and np.union1d(train, held).size == len(labels)
    assert np.bincount(labels[held], minlength=4).tolist() == [2, 1, 0, 0]  # round(10/4)=2, 1, 0 (one digit), 0
    assert np.bincount(labels[train], minlength=4).tolist() == [8, 3, 1, 2]
    again = split_held_out(labels, 0.25, seed=5)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], held)
    assert not np.array_equal(split_held_out(labels, 0.5, seed=6)[1], split_held_out(labels, 0.5, seed=7)[1])
    assert split_held_out(np.array([3, 3]), 0.9, seed=0)[0].size == 1  # never the class's last digit
    empty = split_held_out(np.zeros(0, np.int64), 0.3)
    assert empty[0].size == 0 and empty[1].size == 0
    with pytest.raises(ValueError):
        split_held_out(labels, 1.0)


def test_evaluate_digits_and_accuracy_by_class(base_and_data):
    base, _ = base_and_data
    X, y = bar_digits(40, seed=9, writer=False)
    thumbs = np.zeros((40, 56, 56), np.uint8)
    ds = DigitSet(X, y, thumbs, np.zeros(40))
    assert evaluate_digits(base, ds) == base.score(X, y)
    per_class = accuracy_by_class(base, ds.subset(np.flatnonzero(y != 4)))
    assert np.isnan(per_class[4]) and np.all(per_class[[0, 1, 2, 3, 5, 6, 7, 8, 9]] >= 0)
    assert np.isnan(evaluate_digits(base, DigitSet.empty()))


def test_soft_cross_entropy_is_the_usual_loss_for_labels_and_its_gradient_is_exact():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((5, 10)) * 3
    labels = np.array([0, 3, 9, 3, 1])
    onehot = np.eye(10)[labels]
    loss, grad = soft_cross_entropy(logits, onehot)
    expected_loss, expected_grad = softmax_cross_entropy(logits.copy(), labels)
    assert loss == pytest.approx(expected_loss, rel=1e-12)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-10, atol=1e-14)
    targets = rng.dirichlet(np.ones(10), size=5)  # soft targets (distillation)
    _, grad = soft_cross_entropy(logits, targets)
    eps = 1e-6
    for idx in [(0, 0), (2, 5), (4, 9)]:
        up, down = logits.copy(), logits.copy()
        up[idx] += eps
        down[idx] -= eps
        numeric = (soft_cross_entropy(up, targets)[0] - soft_cross_entropy(down, targets)[0]) / (2 * eps)
        assert grad[idx] == pytest.approx(numeric, rel=1e-6)
    big = np.array([[1000.0, 0.0] + [0.0] * 8])  # no overflow, a finite loss
    assert np.isfinite(soft_cross_entropy(big, np.eye(10)[[1]])[0])


def test_distilled_rehearsal_rows_are_taught_the_base_models_answers(base_and_data):
    base, (X, y) = base_and_data
    labels = y[:8]
    targets = step_targets(labels, 3, base.params_, X[3:8], base.activation, base.layers)
    np.testing.assert_array_equal(targets[:3], np.eye(10)[labels[:3]])
    np.testing.assert_allclose(targets[3:], base.predict_proba(X[3:8]), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(step_targets(labels, 3, base.params_, None, "relu", base.layers), np.eye(10)[labels])
    mine_X, mine_y = bar_digits(30, seed=1, writer=True)
    held_X, held_y = bar_digits(100, seed=2, writer=True)
    options = FineTuneOptions(steps=120, batch_size=32, seed=3, anchor=0.0, rehearsal_targets="base")
    tuned = fine_tune(base, mine_X, mine_y, options=options, rehearsal=(X, y))
    assert tuned.score(held_X, held_y) > 0.9 and tuned.score(X, y) > 0.95


def test_the_writers_benchmark_builds_consistent_writers_from_disjoint_digits(mnist):
    """benchmarks/finetune_writers.py: each writer's digits are valid inputs, made the same way for
    the same seed, from MNIST digits no other writer uses; a person's digits repeat two prototypes."""
    import finetune_writers as bench

    pool_X, pool_y = mnist.X_test[:2000], mnist.y_test[:2000]
    sets = bench.writer_sets(pool_X, pool_y, n_writers=2, per_class=4, seed=0, kind="person")
    again = bench.writer_sets(pool_X, pool_y, n_writers=2, per_class=4, seed=0, kind="person")
    for (writer, X, y, used), (_, X2, _, used2) in zip(sets, again):
        assert X.shape == (40, 784) and X.dtype == np.float32 and 0 <= X.min() and X.max() <= 1
        assert np.all(X.max(axis=1) > 0.5)  # every digit was found on its canvas
        assert np.array_equal(X, X2) and np.array_equal(used, used2)
        assert np.bincount(y, minlength=10).tolist() == [4] * 10 and len(used) <= 20
        assert set(writer.styles) <= set(bench.STYLES)
    assert np.intersect1d(sets[0][3], sets[1][3]).size == 0
    crowd = bench.writer_sets(pool_X, pool_y, n_writers=2, per_class=4, seed=0, kind="crowd")
    assert all(len(used) == 40 for *_, used in crowd)
    train, held = bench.first_per_class(sets[0][2], 3)
    assert len(train) == 30 and len(held) == 10 and np.intersect1d(train, held).size == 0


def test_digit_flips_name_the_digits_a_fine_tune_turned_right_and_wrong(base_and_data):
    base, rehearsal = base_and_data
    mine_X, mine_y = bar_digits(30, seed=1, writer=True)
    tuned = fine_tune(base, mine_X, mine_y, options=OPTIONS, rehearsal=rehearsal)
    held_X, held_y = bar_digits(60, seed=2, writer=True)
    ds = DigitSet(held_X, held_y, np.zeros((60, 56, 56), np.uint8), np.zeros(60))
    fixed, broken = digit_flips(base, tuned, ds)
    right_before, right_after = base.predict(held_X) == held_y, tuned.predict(held_X) == held_y
    assert np.array_equal(fixed, np.flatnonzero(~right_before & right_after)) and len(fixed) > 20
    assert np.array_equal(broken, np.flatnonzero(right_before & ~right_after))
    assert [len(a) for a in digit_flips(base, base, ds)] == [0, 0]
    assert [len(a) for a in digit_flips(base, tuned, DigitSet.empty())] == [0, 0]
