"""Evaluation helpers: hand-worked confusion matrix and recalls, mistakes ordering, a real model."""

import numpy as np
import pytest

from mnist_net.confidence import is_sure
from mnist_net.metrics import (
    cell_members,
    confusion_matrix,
    coverage_curve,
    evaluate,
    most_confident_mistakes,
    per_class_accuracy,
    reliability_bins,
)


def test_confusion_matrix_hand_worked():
    y_true = np.array([0, 0, 1, 2, 2, 2])
    y_pred = np.array([0, 1, 1, 2, 0, 2])
    expected = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred, n_classes=3), expected)


def test_per_class_accuracy_is_recall_and_nan_for_absent_digits():
    cm = confusion_matrix(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 0, 2]), n_classes=4)
    acc = per_class_accuracy(cm)
    np.testing.assert_allclose(acc[:3], [0.5, 1.0, 2 / 3])
    assert np.isnan(acc[3])


def test_confusion_matrix_rejects_bad_labels():
    with pytest.raises(ValueError, match="labels in"):
        confusion_matrix(np.array([0, 10]), np.array([0, 1]))
    with pytest.raises(ValueError, match="equal-length"):
        confusion_matrix(np.array([0, 1]), np.array([0]))


def test_most_confident_mistakes_order_and_limit():
    proba = np.array(
        [
            [0.9, 0.1],  # right
            [0.3, 0.7],  # wrong (true 0), confidence 0.7
            [0.95, 0.05],  # wrong (true 1), confidence 0.95
            [0.4, 0.6],  # wrong (true 0), confidence 0.6
            [0.2, 0.8],
        ]
    )  # right
    y = np.array([0, 0, 1, 0, 1])
    np.testing.assert_array_equal(most_confident_mistakes(y, proba, k=2), [2, 1])
    np.testing.assert_array_equal(most_confident_mistakes(y, proba, k=10), [2, 1, 3])
    assert most_confident_mistakes(np.array([0, 1]), np.eye(2), k=5).size == 0


def test_evaluate_real_model_matches_its_predictions(small_model, mnist):
    X, y = mnist.X_test[:2000], mnist.y_test[:2000]
    ev = evaluate(small_model, X, y, n_mistakes=5)
    predicted = small_model.predict(X)
    assert ev.n == 2000 and ev.confusion.sum() == 2000
    assert ev.accuracy == pytest.approx(np.mean(predicted == y))
    assert ev.accuracy == pytest.approx(np.trace(ev.confusion) / 2000)
    assert ev.accuracy > 0.85  # 3 epochs on 10,000 images; far above chance (0.1)
    assert len(ev.mistakes) == 5
    assert np.all(predicted[ev.mistakes] != y[ev.mistakes])
    np.testing.assert_array_equal(ev.mistake_predicted, predicted[ev.mistakes])
    assert np.all(np.diff(ev.mistake_probability) <= 0)


# --- cells, reliability, coverage (the train page's "mistakes you can explore") ---------------------


def test_cell_members_are_that_cell_most_confident_first():
    y = np.array([3, 3, 3, 5, 3])
    proba = np.full((5, 10), 0.0)
    proba[0, 5], proba[0, 3] = 0.6, 0.4  # 3 read as 5 (0.6)
    proba[1, 3] = 1.0  # right
    proba[2, 5], proba[2, 3] = 0.9, 0.1  # 3 read as 5 (0.9)
    proba[3, 5] = 1.0  # a 5, right
    proba[4, 5], proba[4, 0] = 0.6, 0.4  # 3 read as 5 (0.6, a tie with example 0: data order)
    np.testing.assert_array_equal(cell_members(y, proba, 3, 5), [2, 0, 4])
    np.testing.assert_array_equal(cell_members(y, proba, 5, 5), [3])
    assert cell_members(y, proba, 0, 1).size == 0


def test_reliability_bins_hand_worked():
    # Confidences 0.95, 0.95, 0.55, 0.55, 0.55, 1.0 (into the last bin); right: yes, no, yes, no, no, yes.
    proba = np.zeros((6, 10))
    for i, (p, d) in enumerate([(0.95, 1), (0.95, 2), (0.55, 3), (0.55, 4), (0.55, 5), (1.0, 6)]):
        proba[i, d], proba[i, 0] = p, 1 - p
    y = np.array([1, 0, 3, 0, 0, 6])
    r = reliability_bins(y, proba, n_bins=10)
    np.testing.assert_allclose(r.edges, np.linspace(0, 1, 11))
    np.testing.assert_array_equal(r.count, [0, 0, 0, 0, 0, 3, 0, 0, 0, 3])
    assert r.confidence[5] == pytest.approx(0.55) and r.accuracy[5] == pytest.approx(1 / 3)
    assert r.confidence[9] == pytest.approx((0.95 + 0.95 + 1.0) / 3) and r.accuracy[9] == pytest.approx(2 / 3)
    assert np.isnan(r.accuracy[0]) and np.isnan(r.confidence[7])
    expected = (3 * abs(1 / 3 - 0.55) + 3 * abs(2 / 3 - 2.9 / 3)) / 6
    assert r.calibration_error == pytest.approx(expected)


def test_a_perfectly_calibrated_model_has_no_calibration_error():
    rng = np.random.default_rng(0)
    n = 200_000
    p = rng.uniform(0.1, 1.0, n)  # top probability; right with exactly that chance
    proba = np.zeros((n, 10))
    proba[:, 0], proba[:, 1] = p, 1 - p  # when p < 0.5 the top class is 1, with probability 1 - p
    right_top = rng.random(n) < proba.max(axis=1)
    y = np.where(right_top, proba.argmax(axis=1), 9)
    r = reliability_bins(y, proba)
    assert r.calibration_error < 0.01
    filled = r.count > 0
    np.testing.assert_allclose(r.accuracy[filled], r.confidence[filled], atol=0.02)


def test_coverage_curve_hand_worked_and_the_current_rule_marked():
    # (top, runner-up) per example; the rule at scale 1: p1 >= 0.72 and p1 - p2 >= 0.5.
    pairs = [(0.9, 0.1), (0.8, 0.2), (0.75, 0.25), (0.6, 0.4), (0.5, 0.5)]
    proba = np.zeros((5, 10))
    for i, (p1, p2) in enumerate(pairs):
        proba[i, 0], proba[i, 1] = p1, p2
    y = np.array([0, 1, 0, 0, 0])  # example 1 is wrong
    c = coverage_curve(y, proba, n_points=5)
    assert c.scale[c.current] == 1.0 and c.min_probability[c.current] == 0.72 and c.min_margin[c.current] == 0.5
    assert c.coverage[c.current] == pytest.approx(3 / 5) and c.accuracy[c.current] == pytest.approx(2 / 3)
    assert c.scale[0] == 0 and c.coverage[0] == 1.0 and c.accuracy[0] == pytest.approx(4 / 5)
    # The scale runs until the larger threshold is 1; nothing here is that sure.
    assert c.min_probability[-1] == pytest.approx(1.0) and c.coverage[-1] == 0 and np.isnan(c.accuracy[-1])
    assert np.all(np.diff(c.scale) > 0) and np.all(np.diff(c.coverage) <= 0)
    np.testing.assert_array_equal(is_sure(proba), [True, True, True, False, False])


def test_coverage_curve_on_a_real_model(small_model, mnist):
    proba = small_model.predict_proba(mnist.X_test[:2000])
    c = coverage_curve(mnist.y_test[:2000], proba)
    assert c.coverage[0] == 1.0 and c.accuracy[0] == pytest.approx(
        small_model.score(mnist.X_test[:2000], mnist.y_test[:2000])
    )
    assert c.accuracy[c.current] > c.accuracy[0]  # doubting the unsure ones leaves answers more often right
