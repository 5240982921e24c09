"""Evaluation helpers: hand-worked confusion matrix and recalls, mistakes ordering, a real model."""

import numpy as np
import pytest

from mnist_net.metrics import confusion_matrix, evaluate, most_confident_mistakes, per_class_accuracy


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
