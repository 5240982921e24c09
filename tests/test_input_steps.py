"""``input_steps``: the draw page's "how your drawing became the input" is canvas_to_input's own path.

The steps must end in exactly the array ``canvas_to_input`` returns, and each step must be what
its caption says (the box holds the digit's ink, the fit has a long side of 20, the shift puts
the centre of mass at pixel 14), on many canvases of every colour scheme.
"""

from __future__ import annotations

import numpy as np
import pytest

from mnist_net.preprocess import (
    BOX,
    CENTRE,
    INK_LEVEL,
    SIDE,
    canvas_to_input,
    centre_of_mass,
    digit_region,
    ink_map,
    input_steps,
    mnist_normalise,
)
from mnist_net.synth import SCHEMES, random_stroke, render


def canvases(mnist, n: int, seed: int = 0):
    """n MNIST test digits redrawn on 280x280 canvases, random size, pen, place and colour scheme."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        yield render(mnist.X_test[i].reshape(28, 28), random_stroke(rng), SCHEMES[i % len(SCHEMES)], rng)


def test_steps_end_in_exactly_canvas_to_input_on_many_canvases(mnist):
    for image in canvases(mnist, 300):
        steps, x = input_steps(image), canvas_to_input(image)
        assert x is not None and steps.input is not None
        assert steps.input.dtype == x.dtype and np.array_equal(steps.input, x)
        # ... and the stages composed by hand give the same array (one pipeline, not two).
        assert np.array_equal(mnist_normalise(digit_region(ink_map(image))), x)


def test_each_step_is_what_its_caption_says(mnist):
    for image in canvases(mnist, 120, seed=1):
        s = input_steps(image)
        top, left, bottom, right = s.box
        assert s.ink.shape == s.kept.shape and 0 <= top < bottom <= s.ink.shape[0] and 0 <= left < right
        # The box holds all the digit's ink above the edge level, and its edges touch some.
        inked = s.kept > INK_LEVEL
        assert inked.sum() == inked[top:bottom, left:right].sum()
        crop = s.crop
        assert (crop[0] > INK_LEVEL).any() and (crop[-1] > INK_LEVEL).any() and (crop[:, 0] > INK_LEVEL).any()
        # Specks are only ever removed, never added.
        assert np.all((s.kept == s.ink) | (s.kept == 0))
        # The fit: long side BOX, aspect ratio kept to a pixel, saturated strokes.
        h, w = s.fitted.shape
        f = BOX / max(crop.shape)
        assert max(h, w) == BOX and abs(h - crop.shape[0] * f) <= 1 and abs(w - crop.shape[1] * f) <= 1
        assert s.fitted.max() == pytest.approx(1.0)
        # The shift: fitted placed at the offset is the input, its centre of mass at pixel 14.
        field = s.input.reshape(SIDE, SIDE)
        r, c = s.offset
        assert np.array_equal(field[r : r + h, c : c + w], s.fitted) and field.sum() == pytest.approx(s.fitted.sum())
        com = centre_of_mass(field)
        assert abs(com[0] - CENTRE) <= 0.5 and abs(com[1] - CENTRE) <= 0.5
        assert com == pytest.approx((s.centre_of_mass[0] + r, s.centre_of_mass[1] + c))


def test_steps_stop_where_the_pipeline_finds_no_digit():
    blank = input_steps(np.zeros((280, 280, 4), np.uint8))
    assert blank.ink is None and blank.kept is None and blank.input is None and blank.crop is None
    dot = np.zeros((280, 280), np.uint8)
    dot[140:146, 140:146] = 255  # a click of the pen: ink found, but no digit
    steps = input_steps(dot)
    assert steps.ink is not None and steps.box is None and steps.fitted is None and steps.input is None
    assert canvas_to_input(dot) is None
