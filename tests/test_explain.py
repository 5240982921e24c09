"""Why this digit: the margin's gradient against finite differences, for dense and convolutional networks."""

import numpy as np
import pytest

from mnist_net import MLP, TrainConfig
from mnist_net.explain import margin_attribution, top_two

NETWORKS = {
    "sigmoid MLP": TrainConfig(hidden_sizes=(16, 8), activation="sigmoid", seed=1),
    "deep relu MLP": TrainConfig(hidden_sizes=(16, 16, 8, 8), activation="relu", seed=2),
    # No pooling here: a finite step can switch a pool's maximum (its gradient is checked in test_layers).
    "sigmoid CNN": TrainConfig(layers="conv 3x3x3 valid -> dense 12 -> dense 10", activation="sigmoid", seed=3),
}


def margin(model, x, digit, rival) -> float:
    logits = model.logits(x[None].astype(np.float32))[0].astype(np.float64)
    return logits[digit] - logits[rival]


@pytest.mark.parametrize("name", NETWORKS)
def test_gradient_matches_finite_differences(name):
    model = MLP(NETWORKS[name]).initialize()
    rng = np.random.default_rng(0)
    x = rng.uniform(0.2, 0.8, 784).astype(np.float32)
    a = margin_attribution(model, x)
    assert (a.digit, a.rival) == top_two(model.logits(x[None])[0])
    assert a.margin == pytest.approx(margin(model, x, a.digit, a.rival), abs=1e-5)
    eps = 1e-2
    pixels = rng.choice(784, 40, replace=False)
    numeric = []
    for i in pixels:
        up, down = x.copy(), x.copy()
        up[i] += eps
        down[i] -= eps
        numeric.append((margin(model, up, a.digit, a.rival) - margin(model, down, a.digit, a.rival)) / (2 * eps))
    scale = np.abs(a.gradient).max()
    assert scale > 0
    np.testing.assert_allclose(a.gradient[pixels], numeric, atol=0.02 * scale)
    np.testing.assert_allclose(a.pixels, a.gradient * x)  # gradient x input


def test_chosen_pair_blank_pixels_and_bad_pairs():
    model = MLP(NETWORKS["sigmoid MLP"]).initialize()
    x = np.zeros(784, np.float32)
    x[300:320] = 1.0
    a = margin_attribution(model, x, digit=3, rival=8)
    b = margin_attribution(model, x, digit=8, rival=3)
    assert (a.digit, a.rival) == (3, 8) and a.margin == pytest.approx(-b.margin)
    np.testing.assert_allclose(a.pixels, -b.pixels, atol=1e-6)
    assert np.all(a.pixels[x == 0] == 0)  # no ink, no push
    pushed = np.abs(a.pixels[a.pixels != 0])
    assert 0 < a.display_scale <= pushed.max() and np.mean(pushed >= a.display_scale) == pytest.approx(0.05, abs=0.05)
    assert margin_attribution(model, np.zeros(784, np.float32)).display_scale == 0.0
    answer, runner_up = top_two(model.logits(x[None])[0])
    assert margin_attribution(model, x, digit=runner_up).rival == answer  # "why not the answer?"
    with pytest.raises(ValueError, match="two different classes"):
        margin_attribution(model, x, digit=4, rival=4)
    with pytest.raises(ValueError, match="two different classes"):
        margin_attribution(model, x, digit=10)
