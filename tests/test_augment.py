"""Augmentation: shapes and ranges, determinism, and that each transform does what it claims."""

from __future__ import annotations

import numpy as np

from mnist_net import TrainConfig
from mnist_net.augment import (
    STYLE_DIGIT,
    STYLES,
    add_styles,
    affine_warp,
    augment_batch,
    elastic_field,
    grow_strokes,
    thicken_steps,
    thin,
)
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


# --- elastic distortions, slants and handwriting styles --------------------------------------------

EVERYTHING = TrainConfig(stroke_change_prob=0.6, max_slant=12.0, elastic_prob=1.0, style_prob=1.0)
STILL = dict(max_shift=0, max_rotation=0, scale_range=(1, 1), stroke_change_prob=0.0)


def _digits(n: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Ten stroke figures with ink in the middle, labelled 0-9 in turn, (n, 784) float32."""
    img = np.zeros((n, 28, 28), np.float32)
    img[:, 5:23, 12:15] = 1.0
    img[:, 5:8, 8:20] = 0.8
    return img.reshape(n, 784), np.arange(n) % 10


def test_every_transform_on_keeps_float32_shape_range_and_seed_determinism():
    x, y = _digits(130)  # more than one chunk, and a partial last chunk
    before = x.copy()
    a = augment_batch(x, np.random.default_rng(3), EVERYTHING, y)
    b = augment_batch(x, np.random.default_rng(3), EVERYTHING, y)
    c = augment_batch(x, np.random.default_rng(4), EVERYTHING, y)
    assert a.shape == (130, 784) and a.dtype == np.float32
    assert a.min() >= 0 and a.max() <= 1
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(x, before)


def test_a_float64_batch_comes_back_float32():
    x, y = _digits(8)
    assert augment_batch(x.astype(np.float64), np.random.default_rng(0), EVERYTHING, y).dtype == np.float32


def test_identity_warp_returns_the_image():
    x, _ = _digits(4)
    out = affine_warp(x, np.zeros(4), np.ones(4), np.zeros((4, 2)))
    np.testing.assert_allclose(out, x, atol=1e-6)


def test_without_labels_no_style_is_drawn():
    x, y = _digits(20)
    styled_off = TrainConfig(style_prob=0.0)
    assert np.array_equal(
        augment_batch(x, np.random.default_rng(1), TrainConfig(style_prob=1.0)),
        augment_batch(x, np.random.default_rng(1), styled_off),
    )


def test_elastic_field_is_bounded_by_alpha_and_smooth():
    field = elastic_field(np.random.default_rng(0), 200, alpha=34.0, sigma=4.0)
    assert field.shape == (200, 2, 28, 28) and field.dtype == np.float32
    assert np.abs(field).max() <= 34.0
    assert abs(float(field.mean())) < 0.2  # no drift
    # Smooth: next-pixel differences are a small part of the field's own spread, unlike raw noise's.
    step = np.abs(np.diff(field, axis=3)).mean() + np.abs(np.diff(field, axis=2)).mean()
    assert step < 0.3 * field.std()
    raw = np.random.default_rng(0).uniform(-1, 1, (200, 2, 28, 28))
    assert np.abs(np.diff(raw, axis=3)).mean() > raw.std()
    # sigma sets the scale: a wider Gaussian is smoother still.
    wide = elastic_field(np.random.default_rng(0), 200, alpha=34.0, sigma=8.0)
    assert np.abs(np.diff(wide, axis=3)).mean() / wide.std() < np.abs(np.diff(field, axis=3)).mean() / field.std()


def test_elastic_distortion_moves_ink_a_little_and_keeps_most_of_it():
    x, y = _digits(50)
    bent = augment_batch(x, np.random.default_rng(0), TrainConfig(elastic_prob=1.0, **STILL), y)
    assert not np.allclose(bent, x)
    assert np.all(np.abs(bent.sum(axis=1) / x.sum(axis=1) - 1) < 0.35)


def test_slant_leans_a_vertical_bar():
    x = _bar(40)
    out = augment_batch(x, np.random.default_rng(0), TrainConfig(max_slant=20.0, **STILL)).reshape(40, 28, 28)
    cols = np.arange(28)
    top = (out[:, 5:9] * cols).sum(axis=(1, 2)) / out[:, 5:9].sum(axis=(1, 2))
    bottom = (out[:, 19:23] * cols).sum(axis=(1, 2)) / out[:, 19:23].sum(axis=(1, 2))
    lean = top - bottom
    assert np.abs(lean).max() > 2 and np.abs(lean).max() <= 14 * np.tan(np.deg2rad(20)) + 0.5
    assert (lean > 1).any() and (lean < -1).any()  # both ways


def test_each_style_changes_only_digits_of_its_class():
    x, y = _digits(100)
    out = add_styles(x.reshape(100, 28, 28), y, np.random.default_rng(0), 1.0).reshape(100, 784)
    changed = ~np.all(out == x, axis=1)
    assert set(y[changed]) == {STYLE_DIGIT[s] for s in STYLES}
    assert changed[np.isin(y, list(STYLE_DIGIT.values()))].all()


def test_strokes_are_added_where_the_style_puts_them():
    stem = np.zeros((1, 28, 28), np.float32)
    stem[0, 4:24, 13:15] = 1.0  # top 4, bottom 23, stem at x 13.5, height 20
    for digit, style, where in [
        (1, "foot_1", (23, slice(8, 12))),  # the foot reaches left along the bottom row
        (1, "flag_1", (7, slice(7, 11))),  # the flag comes down to the left of the top
        (7, "crossbar_7", (15, slice(16, 19))),  # the bar crosses the stem below the middle
        (9, "curl_9", (23, slice(8, 12))),  # the tail hooks left at the bottom
    ]:
        out = add_styles(stem, np.array([digit]), _only(style), 1.0)[0]
        assert out[where].max() > 0.5, style
        assert np.all(out >= stem[0]), style  # drawing adds ink, removes none
        assert np.array_equal(out[:, 20:], stem[0][:, 20:]) or style == "crossbar_7", style


def _only(style: str) -> np.random.Generator:
    """An rng stand-in whose draws choose exactly ``style`` (prob 1 for it, 0 for the rest)."""

    class Only:
        def __init__(self):
            self.calls = 0

        def random(self, n):
            pick = STYLES[self.calls] == style
            self.calls += 1
            return np.zeros(n) if pick else np.ones(n)

        def uniform(self, lo, hi, n):
            return np.full(n, (lo + hi) / 2)

    return Only()  # type: ignore[return-value]


def test_slash_crosses_the_middle_of_a_zero():
    ring = np.zeros((1, 28, 28), np.float32)
    yy, xx = np.mgrid[0:28, 0:28]
    r = np.hypot(yy - 13.5, xx - 13.5)
    ring[0][(r > 6) & (r < 8.5)] = 1.0
    out = add_styles(ring, np.array([0]), np.random.default_rng(0), 1.0)[0]
    assert ring[0, 13, 13] == 0 and out[12:16, 12:16].max() > 0.5
    assert np.all(out >= ring[0])


def test_open_top_4_erases_only_the_upper_left_and_keeps_the_stem():
    four = np.zeros((1, 28, 28), np.float32)
    four[0, 4:24, 16:18] = 1.0  # the stem, x 16-17, down to the bottom
    four[0, 15:17, 6:20] = 1.0  # the bar
    for i in range(11):  # the left stroke, from the bar up to the stem's top: a closed top
        four[0, 15 - i, 6 + i : 8 + i] = 1.0
    out = add_styles(four, np.array([4]), np.random.default_rng(0), 1.0)[0]
    assert np.all(out <= four[0])  # only erases
    assert np.array_equal(out[:, 16:], four[0][:, 16:])  # the stem and the bar's right part stay
    assert np.array_equal(out[12:], four[0][12:])  # everything below the top 35% stays
    assert out[4:10, :15].sum() < 0.5 * four[0, 4:10, :15].sum()  # the join at the top is open


def test_grow_strokes_matches_a_padded_window_reference():
    rng = np.random.default_rng(0)
    x = rng.random((30, 28, 28), dtype=np.float32) * 1.2 - 0.1  # negatives too (synth's bicubic fields)
    steps = rng.integers(0, 4, 30)
    ref = x.copy()
    for k in range(1, 4):
        p = np.pad(ref, ((0, 0), (1, 1), (1, 1)))
        taps = [p[:, 1:-1, 1:-1], p[:, :-2, 1:-1], p[:, 2:, 1:-1], p[:, 1:-1, :-2], p[:, 1:-1, 2:]]
        if k % 2 == 0:
            taps += [p[:, :-2, :-2], p[:, :-2, 2:], p[:, 2:, :-2], p[:, 2:, 2:]]
        ref = np.where((steps >= k)[:, None, None], np.maximum.reduce(taps), ref)
    assert np.array_equal(grow_strokes(x, steps), ref)
