"""Augmentation: shapes and ranges, determinism, and that each transform does what it claims."""

from __future__ import annotations

import numpy as np

from mnist_net import TrainConfig
from mnist_net.augment import affine_warp, augment_batch, thicken_steps, thin
from mnist_net.preprocess import centre_of_mass


def _bar(batch: int = 1) -> np.ndarray:
    img = np.zeros((batch, 28, 28), np.float32)
    img[:, 4:24, 13:15] = 1.0  # a vertical stroke 20 high, 2 wide, centred at (13.5, 13.5)
    return img.reshape(batch, 784)


def test_output_shape_dtype_range_and_input_untouched():
    x = np.random.default_rng(0).random((64, 784)).astype(np.float32)
    before = x.copy()
    out = augment_batch(x, np.random.default_rng(1), TrainConfig(stroke_change_prob=1.0))
    assert out.shape == (64, 784) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
    assert np.array_equal(x, before)


def test_same_seed_same_batch():
    x = _bar(16)
    a = augment_batch(x, np.random.default_rng(5), TrainConfig(stroke_change_prob=0.5))
    b = augment_batch(x, np.random.default_rng(5), TrainConfig(stroke_change_prob=0.5))
    c = augment_batch(x, np.random.default_rng(6), TrainConfig(stroke_change_prob=0.5))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_thicken_steps_widen_the_stroke_by_one_pixel_per_side_per_step():
    x = _bar(3)
    out = thicken_steps(x, np.array([0, 1, 2])).reshape(3, 28, 28)
    widths = [(row > 0.5).sum() for row in out[:, 14]]
    assert widths == [2, 4, 6]


def test_thin_keeps_the_stroke_but_lighter_at_its_edges():
    img = np.zeros((1, 28, 28), np.float32)
    img[:, 4:24, 12:16] = 1.0  # 4 px wide
    out = thin(img.reshape(1, 784)).reshape(28, 28)
    assert out[14, 13] == 1.0 and out[14, 12] == 0.5 and out.sum() < img.sum()


def test_pure_shift_moves_the_centre_of_mass():
    x = _bar()
    out = affine_warp(x, np.zeros(1, np.float32), np.ones(1, np.float32), np.array([[2.0, -3.0]], np.float32))
    r, c = centre_of_mass(out.reshape(28, 28))
    assert abs(c - (13.5 + 2)) < 0.05 and abs(r - (13.5 - 3)) < 0.05


def test_rotation_by_90_degrees_turns_a_vertical_bar_horizontal():
    out = affine_warp(
        _bar(), np.array([90.0], np.float32), np.ones(1, np.float32), np.zeros((1, 2), np.float32)
    ).reshape(28, 28)
    assert (out > 0.5).any(axis=0).sum() >= 18 and (out > 0.5).any(axis=1).sum() <= 3


def test_thickened_digits_are_shrunk_to_stay_in_the_box():
    x = _bar(200)
    out = augment_batch(
        x,
        np.random.default_rng(0),
        TrainConfig(max_shift=0, max_rotation=0, scale_range=(1, 1), stroke_change_prob=1.0, max_thicken=2),
    ).reshape(200, 28, 28)
    heights = (out > 0.5).any(axis=2).sum(axis=1)
    assert heights.max() <= 21  # a 20-high bar thickened by 2 px a side would be 24 without the shrink
