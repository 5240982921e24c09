"""Why the network chose its digit: which input pixels pushed it towards the answer, which towards the runner-up.

``margin_attribution`` takes the logit margin ``m(x) = logit_digit(x) - logit_rival(x)`` and
returns its gradient times the input, per pixel (Simonyan et al. 2013's saliency, weighted by
the input as in Shrikumar et al. 2016): positive where that pixel's ink raised the margin (for
the answer), negative where it lowered it (for the runner-up). Pixels without ink get 0: they
did not push at all. The gradient comes from ``Network.input_gradient``, so it works for every
network the package builds (dense or convolutional, sigmoid or ReLU, any depth).
Non-goals: other attribution methods (integrated gradients, occlusion); explaining training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import confidence
from .network import Network


@dataclass(frozen=True)
class Attribution:
    """Why ``digit`` and not ``rival``: ``pixels`` (784,) is gradient x input of their logit margin."""

    digit: int
    rival: int
    margin: float  # logit_digit - logit_rival at the input
    gradient: np.ndarray  # (784,) d margin / d pixel
    pixels: np.ndarray  # (784,) gradient * input

    @property
    def display_scale(self) -> float:
        """|pixels| at the 95th percentile of the pixels that pushed at all (0 if none did): shown as full
        colour, so a few extreme pixels do not leave the rest of the map too dark to read."""
        pushed = np.abs(self.pixels[self.pixels != 0])
        return float(np.percentile(pushed, 95)) if pushed.size else 0.0


def top_two(logits: np.ndarray) -> tuple[int, int]:
    """The answer and the runner-up of one row of 10 logits (ties: the lower digit first, as the
    "not sure" rule orders them: softmax keeps the order)."""
    first, _, second, _ = confidence.top_two(np.asarray(logits, np.float64)[None])
    return int(first[0]), int(second[0])


def margin_attribution(
    model: Network, x: np.ndarray, digit: int | None = None, rival: int | None = None
) -> Attribution:
    """Gradient x input of ``logit[digit] - logit[rival]`` for one input x (784,) in [0, 1].

    ``digit`` and ``rival`` default to the network's answer and runner-up for x.
    """
    x = np.asarray(x, np.float32).reshape(1, -1)
    pair: dict[str, Any] = {}

    def margin_gradient(logits: np.ndarray) -> np.ndarray:
        """d margin / d logits, choosing the pair from the logits of the one forward pass."""
        row = logits[0]
        best, second = top_two(row)
        first = best if digit is None else int(digit)
        other = (second if first == best else best) if rival is None else int(rival)
        if not (0 <= first < row.size and 0 <= other < row.size) or first == other:
            raise ValueError(f"digit and rival must be two different classes of 0..{row.size - 1}")
        pair.update(digit=first, rival=other, margin=float(row[first]) - float(row[other]))
        dlogits = np.zeros_like(logits, dtype=np.float32)
        dlogits[0, first], dlogits[0, other] = 1.0, -1.0
        return dlogits

    gradient = np.asarray(model.input_gradient(x, margin_gradient), np.float32)[0]
    return Attribution(pair["digit"], pair["rival"], pair["margin"], gradient, gradient * x[0])
