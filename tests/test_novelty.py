""" "That doesn't look like a digit" and "several digits": real digits pass, held-out shapes are flagged,
several digits side by side are noticed, any model works, bad input is refused, the file is sound."""

from __future__ import annotations

import numpy as np
import pytest
from not_a_digit import (
    Drawing,
    bars,
    families,
    family_canvases,
    house,
    inputs_of,
    pts,
    render_drawing,
    several_digits_ink,
    sketched,
    sketched_canvases,
    smiley,
)

from mnist_net import MLP, canvas_to_input, load_model
from mnist_net.novelty import (
    ASSET,
    GROUPS,
    MAX_FALSE_ALARM,
    assess_input,
    calibrate,
    check_assets,
    count_digit_parts,
    load_assets,
    model_calibration,
    novelty_scores,
    save_assets,
    several_digits,
    shipped_assets,
)
from mnist_net.synth import SCHEMES, paint, random_stroke, render


@pytest.fixture(scope="module")
def model() -> MLP:
    return load_model()


def _flagged(X: np.ndarray, model: MLP) -> np.ndarray:
    return novelty_scores(X, model) >= model_calibration(model).threshold


def _canvas(drawing: Drawing, seed: int, scheme: str = "white_on_black") -> np.ndarray:
    rng = np.random.default_rng(seed)
    return paint(render_drawing(drawing, rng), scheme, rng)


# --- the shipped file -----------------------------------------------------------------------------


def test_shipped_file_is_small_and_holds_every_kind_of_calibration_digit():
    assert ASSET.stat().st_size < 1_000_000
    assets = load_assets()
    counts = np.bincount(assets.calibration_groups, minlength=len(GROUPS))
    assert len(counts) == len(GROUPS) and counts.min() >= 500
    assert assets.calibration_inputs.dtype == np.float32 and assets.calibration_inputs.max() <= 1


def test_saving_is_byte_for_byte_deterministic_and_round_trips(tmp_path):
    assets = shipped_assets()
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    save_assets(a, assets)
    save_assets(b, assets)
    assert a.read_bytes() == b.read_bytes()
    again = load_assets(a)
    assert np.array_equal(again.calibration_inputs, assets.calibration_inputs)
    assert all(np.array_equal(again.detector[k], assets.detector[k]) for k in assets.detector)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: d.update(format=np.array([99])), "format"),
        (lambda d: d.pop("detector_W2"), "detector_W2"),
        (lambda d: d.update(detector_b1=d["detector_b1"].astype(np.float64)), "detector_b1"),
        (lambda d: d.update(detector_W1=d["detector_W1"][:100]), "detector_W1"),
        (lambda d: d.update(detector_b2=np.full(2, np.nan, np.float32)), "detector_b2"),
        (lambda d: d.update(calibration_inputs=d["calibration_inputs"].astype(np.float32)), "calibration_inputs"),
        (lambda d: d.update(calibration_groups=d["calibration_groups"][:-1]), "calibration_groups"),
        (lambda d: d.update(calibration_groups=np.zeros_like(d["calibration_groups"])), "calibration_groups"),
    ],
)
def test_a_damaged_file_is_refused_with_the_reason(damage, message):
    with np.load(ASSET, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    damage(arrays)
    with pytest.raises(ValueError, match=message):
        check_assets(arrays)


# --- digits pass, non-digits are flagged ---------------------------------------------------------


def test_real_mnist_test_digits_mostly_look_like_digits(mnist, model):
    idx = np.random.default_rng(0).choice(len(mnist.X_test), 3000, replace=False)
    flagged = _flagged(mnist.X_test[idx].astype(np.float32) / 255, model)
    assert flagged.mean() <= 0.03  # measured: about 1% of the whole test set


def test_drawn_test_digits_mostly_look_like_digits(mnist, model):
    rng = np.random.default_rng(5)
    canvases = []
    for i in rng.choice(len(mnist.X_test), 120, replace=False):
        stroke = random_stroke(rng)
        canvases += [render(mnist.X_test[i], stroke, scheme, rng) for scheme in SCHEMES]
    flagged = _flagged(inputs_of(canvases), model)
    assert flagged.mean() <= 0.05  # measured: about 1.5% of drawn test digits


def test_sketched_digits_look_like_digits(model):
    """Digits drawn by the same renderer as the shapes: what is flagged is the shape, not the drawing style."""
    assert _flagged(inputs_of(sketched_canvases(200, seed=77)), model).mean() <= 0.04


@pytest.mark.parametrize("family, floor", [("ten bars", 0.9), ("smiley", 0.6), ("house", 0.5), ("spiral", None)])
def test_held_out_shapes_are_mostly_flagged(model, family, floor):
    makers = {**families("held-out"), **families("calibration")}
    X = inputs_of(family_canvases(makers[family], 60, seed=500))
    caught = _flagged(X, model).mean()
    if floor is None:  # a calibration family, seen by the detector: nearly always caught
        assert caught >= 0.9
    else:
        assert caught >= floor


def test_the_issues_smiley_and_ten_bars_are_no_longer_digits(model):
    """The issue's smiley ("0, 95.6%") and ten vertical bars ("0, 96.7%"), drawn plainly, ten times each.

    (Its letter A is caught only about a quarter of the time: letters are the hard case, see the README.)
    """
    pictures = {
        "smiley": smiley(np.random.default_rng(0)),
        "ten bars": Drawing(strokes=[pts((v, 0), (v, 1)) for v in np.linspace(0, 1, 10)], pen_scale=0.4),
    }
    for name, drawing in pictures.items():
        verdicts = [assess_input(canvas_to_input(_canvas(drawing, seed)), model) for seed in range(10)]
        assert np.mean([not v.looks_like_digit for v in verdicts]) >= 0.8, name
        assert "doesn't look like a digit" in next(v.reason for v in verdicts if not v.looks_like_digit)


def test_a_verdict_carries_score_threshold_and_reason(mnist, model):
    v = assess_input(mnist.X_test[0].astype(np.float32) / 255, model)
    assert v.looks_like_digit and v.score < v.threshold and "looks like a digit" in v.reason
    assert isinstance(v.score, float) and isinstance(v.threshold, float)


# --- any model ------------------------------------------------------------------------------------


def test_a_tiny_sigmoid_model_gets_its_own_threshold_and_still_flags_bars(mnist):
    tiny = MLP(hidden_sizes=(16,), activation="sigmoid", epochs=1, n_train=3000, seed=2)
    tiny.fit(mnist.X_train, mnist.y_train)
    cal = model_calibration(tiny)
    assert cal.threshold != model_calibration(load_model()).threshold
    assert max(cal.false_alarms) <= MAX_FALSE_ALARM + 1e-9
    X = inputs_of(family_canvases(sketched(bars), 40, seed=9))
    assert _flagged(X, tiny).mean() >= 0.35  # measured 0.52: a weak model, a weaker energy signal
    assert assess_input(mnist.X_test[1].astype(np.float32) / 255, tiny).looks_like_digit


def test_a_deeper_relu_model_works_untrained_too():
    """Any depth: a 4-hidden-layer network, even with random weights, is calibrated and answers."""
    deep = MLP(hidden_sizes=(32, 32, 16, 16), activation="relu", seed=0).initialize()
    cal = model_calibration(deep)
    assert np.isfinite(cal.threshold) and max(cal.false_alarms) <= MAX_FALSE_ALARM + 1e-9
    x = shipped_assets().calibration_inputs[0]
    assert isinstance(assess_input(x, deep).looks_like_digit, bool)


# --- determinism, cost, bad input -----------------------------------------------------------------


def test_scores_are_deterministic_and_the_cache_matches_a_fresh_calibration(model):
    x = inputs_of(sketched_canvases(3, seed=1))
    first, second = novelty_scores(x, model), novelty_scores(x, model)
    assert np.array_equal(first, second)
    assert calibrate(model, shipped_assets()) == model_calibration(model)
    assert assess_input(x[0], model) == assess_input(x[0].copy(), model)


def test_calibration_runs_once_per_model_and_each_call_costs_one_forward_pass_of_one_row(model, monkeypatch):
    copy = MLP.from_state(model.state_dict())
    rows: list[int] = []
    original = MLP.logits
    monkeypatch.setattr(MLP, "logits", lambda self, X: rows.append(len(X)) or original(self, X))
    x = shipped_assets().calibration_inputs[0]
    for _ in range(5):
        assess_input(x, copy)
    n_cal = len(shipped_assets().calibration_inputs)
    assert rows == [n_cal] + [1] * 5  # calibrated once, then one row per call


def test_changed_weights_are_calibrated_again(model):
    copy = MLP.from_state(model.state_dict())
    before = model_calibration(copy)
    copy.params_ = {k: v * 2 if k.startswith("W") else v for k, v in copy.params_.items()}
    assert model_calibration(copy).energy_centre != before.energy_centre


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros(783, np.float32),
        np.zeros((2, 784), np.float32),
        np.zeros((28, 28), np.float32),
        np.zeros(784, np.uint8),
        np.full(784, np.nan, np.float32),
        np.full(784, 1.5, np.float32),
        np.full(784, -0.1, np.float32),
        "a digit",
    ],
)
def test_bad_inputs_are_refused(model, bad):
    with pytest.raises(ValueError):
        assess_input(bad, model)


def test_a_model_that_is_not_a_fitted_mlp_is_refused():
    x = np.zeros(784, np.float32)
    with pytest.raises(ValueError, match="MLP"):
        assess_input(x, object())
    with pytest.raises(ValueError, match="not fitted"):
        assess_input(x, MLP())


def test_novelty_scores_take_a_batch(model):
    X = shipped_assets().calibration_inputs[:7]
    assert novelty_scores(X, model).shape == (7,)
    assert novelty_scores(X, model).dtype == np.float64


# --- several digits -------------------------------------------------------------------------------


def test_two_or_three_digits_side_by_side_are_noticed_and_one_digit_is_not(mnist):
    rng = np.random.default_rng(3)
    pool = mnist.X_test[:500]
    for count in (2, 3):
        inks = [several_digits_ink(pool, rng, count=count) for _ in range(40)]
        canvases = [paint(ink, SCHEMES[i % len(SCHEMES)], rng) for i, ink in enumerate(inks)]
        assert np.mean([several_digits(c) for c in canvases]) >= 0.9
        assert np.mean([count_digit_parts(c) == count for c in canvases]) >= 0.75
    singles = []
    for i in rng.choice(len(mnist.X_test), 80, replace=False):
        singles += [render(mnist.X_test[i], random_stroke(rng), scheme, rng) for scheme in SCHEMES]
    assert np.mean([several_digits(c) for c in singles]) <= 0.03


def test_one_sketched_digit_is_one_part_and_a_blank_canvas_none():
    canvases = sketched_canvases(50, seed=8)
    assert np.mean([count_digit_parts(c) == 1 for c in canvases]) >= 0.95
    blank = np.zeros((280, 280, 4), np.uint8)
    blank[..., 3] = 255
    assert count_digit_parts(blank) == 0 and not several_digits(blank)


def test_a_dot_or_dash_beside_a_digit_is_not_a_second_digit():
    one = np.zeros((280, 280), np.float32)
    one[60:220, 100:114] = 1.0  # a tall stroke: a 1
    with_dot = one.copy()
    with_dot[200:212, 160:172] = 1.0
    with_dash = one.copy()
    with_dash[140:150, 150:230] = 1.0
    two_ones = one.copy()
    two_ones[70:215, 170:184] = 1.0
    assert [count_digit_parts(a) for a in (one, with_dot, with_dash, two_ones)] == [1, 1, 1, 2]


@pytest.mark.parametrize("bad", [np.zeros((5, 5, 7)), np.zeros(10), np.full((20, 20), np.nan)])
def test_several_digits_refuses_what_canvas_to_input_refuses(bad):
    with pytest.raises(ValueError):
        several_digits(bad)


def test_house_is_one_part():
    """A drawing that is one connected thing is one part, whatever it is."""
    assert count_digit_parts(_canvas(house(np.random.default_rng(0)), 0)) == 1
