"""The "not sure" rule: thresholds, messages, input checks, and that it separates right from wrong."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mnist_net.confidence import MIN_MARGIN, MIN_PROBABILITY, assess, is_sure


def _proba(**probs) -> np.ndarray:
    """Probabilities with the given digits set (keys d0..d9) and the rest shared equally."""
    p = np.zeros(10)
    for k, v in probs.items():
        p[int(k[1:])] = v
    rest = 1 - p.sum()
    free = p == 0
    p[free] = rest / free.sum()
    return p


def test_peaked_prediction_is_sure():
    v = assess(_proba(d7=0.97))
    assert v.sure and v.digit == 7 and v.probability == pytest.approx(0.97)
    assert "7" in v.reason and "not sure" not in v.reason


def test_low_top_probability_is_not_sure():
    v = assess(_proba(d3=0.5, d5=0.1))
    assert not v.sure and v.digit == 3 and "only" in v.reason and "not sure" in v.reason


def test_close_runner_up_is_not_sure_even_with_high_top():
    top = MIN_PROBABILITY + 0.005
    second = top - MIN_MARGIN + 0.005  # margin just below the threshold
    assert 0 < second < top and top + second <= 1, "the rule's margin must be able to matter"
    v = assess(_proba(d4=top, d9=second))
    assert not v.sure and v.runner_up == 9 and "too close" in v.reason


def test_thresholds_are_inclusive():
    p = _proba(d1=MIN_PROBABILITY)
    margin = p[1] - np.sort(p)[-2]
    assert assess(p, min_probability=MIN_PROBABILITY, min_margin=margin - 1e-9).sure
    assert not assess(p, min_probability=MIN_PROBABILITY + 1e-6, min_margin=0).sure


def test_batch_shape_one_is_accepted():
    assert assess(_proba(d2=0.99)[None, :]).digit == 2


@pytest.mark.parametrize(
    "bad", [np.full(10, np.nan), np.full(10, -0.1), np.ones(10), [1.0], [], np.array([0.5, 0.5, np.inf])]
)
def test_invalid_probabilities_raise(bad):
    with pytest.raises(ValueError, match="probabilities"):
        assess(bad)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.01, 10), min_size=10, max_size=10))
def test_vectorised_rule_matches_assess(weights):
    p = np.array(weights) / np.sum(weights)
    v = assess(p)
    assert v.sure == bool(is_sure(p[None, :])[0])
    assert v.digit == int(np.argmax(p)) and v.probability >= v.runner_up_probability


def test_not_sure_separates_wrong_from_right_on_real_digits(mnist):
    from mnist_net import load_model

    data = mnist
    model = load_model()
    proba = model.predict_proba(data.X_test)
    right = proba.argmax(axis=1) == data.y_test
    sure = is_sure(proba)
    # Most wrong answers are flagged, few right ones are, so "sure" answers are more accurate.
    assert np.mean(~sure[~right]) > 0.35
    assert np.mean(~sure[right]) < 0.02
    assert right[sure].mean() > right.mean() > right[~sure].mean()
