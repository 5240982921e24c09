"""Inside the layers: the maths (``mnist_net.inside``) and the red/blue tiles (``charts.signed_tiles``).

The layers' outputs are checked against a forward pass written out here by hand, the top units
against a plain sort, the weights against the parameters, and the tiles' colours against the
signs of the numbers drawn."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import block_digits
from PIL import Image

from mnist_net import MLP, TrainConfig
from mnist_net.inside import (
    look_inside,
    maps_first,
    scaled_by_layer,
    scaled_per_tile,
    top_units,
    unit_weights,
)
from mnist_net.layers import conv2d_forward, maxpool_forward
from pages.ui.charts import (
    GAP_COLOUR,
    GREY_GAP_COLOUR,
    GREY_PALETTE,
    LINE_INDEX,
    cell_layout,
    map_grid,
    png,
    signed_tiles,
    tile_grid,
    unit_cells,
)

TINY_CNN = "conv 4x5x5 -> pool 2 -> dense 16 -> dense 10"


# --- signed_tiles -------------------------------------------------------------------------------


def test_signed_tiles_shape_gaps_and_colours_follow_the_signs():
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(5, 3, 4)).astype(np.float32)
    weights[2] = 0.0  # an all-zero tile: black
    grid = signed_tiles(weights, columns=3, factor=2)
    # 2 rows of 3 tiles (the last slot empty), each 6x8 pixels, 1-px gaps between them.
    assert grid.shape == (2 * 6 + 1, 3 * 8 + 2, 3) and grid.dtype == np.uint8
    assert (grid[6] == GAP_COLOUR).all() and (grid[:, 8] == GAP_COLOUR).all() and (grid[:, 17] == GAP_COLOUR).all()
    assert (grid[7:, 18:] == GAP_COLOUR).all()  # the empty sixth slot
    for i in range(5):
        r, c = divmod(i, 3)
        tile = grid[r * 7 : r * 7 + 6, c * 9 : c * 9 + 8].astype(int)
        w = np.repeat(np.repeat(weights[i], 2, axis=0), 2, axis=1)
        red, green, blue = tile[..., 0], tile[..., 1], tile[..., 2]
        assert (green == 0).all()
        assert (red[w > 0] > 0).all() and (blue[w > 0] == 0).all()
        assert (blue[w < 0] > 0).all() and (red[w < 0] == 0).all()
        assert (tile[w == 0] == 0).all()
        if i != 2:  # each tile's largest |w| is full colour (its own scale)
            assert max(red.max(), blue.max()) == 255
            j = np.unravel_index(np.abs(weights[i]).argmax(), weights[i].shape)
            assert tile[j[0] * 2, j[1] * 2].max() == 255


def test_signed_tiles_scale_each_tile_by_its_own_largest_weight():
    small = np.array([[[0.001, -0.0005]]], np.float32)
    big = small * 1000
    both = signed_tiles(np.concatenate([small, big]), columns=2, factor=1)
    np.testing.assert_array_equal(both[:, :2], both[:, 3:])  # the same picture, whatever the size
    assert both[0, 0].tolist() == [255, 0, 0] and both[0, 1].tolist() == [0, 0, 128]


def test_tile_grid_puts_tile_i_in_row_major_order():
    tiles = np.arange(7, dtype=np.uint8)[:, None, None, None] * np.ones((7, 2, 2, 3), np.uint8)
    grid = tile_grid(tiles, columns=4, factor=1)
    assert grid.shape == (2 * 2 + 1, 4 * 2 + 3, 3)
    assert [int(grid[(i // 4) * 3, (i % 4) * 3, 0]) for i in range(7)] == list(range(7))
    assert tile_grid(tiles[:2], columns=8, factor=3).shape == (6, 13, 3)  # fewer tiles than columns


def test_scaled_per_tile_and_by_layer():
    tiles = np.array([[[2.0, -4.0]], [[0.0, 0.0]], [[np.nan, 1.0]]], np.float32)
    np.testing.assert_array_equal(scaled_per_tile(tiles), [[[0.5, -1.0]], [[0.0, 0.0]], [[0.0, 1.0]]])
    np.testing.assert_array_equal(scaled_by_layer(np.array([1.0, 4.0, 0.0])), [0.25, 1.0, 0.0])
    np.testing.assert_array_equal(scaled_by_layer(np.zeros(3)), np.zeros(3))


def test_top_units_are_the_largest_activations_largest_first():
    rng = np.random.default_rng(1)
    a = rng.random(50)
    top = top_units(a, 8)
    assert list(a[top]) == sorted(a, reverse=True)[:8]
    assert top_units(np.array([1.0, 3.0, 3.0, 0.0]), 3).tolist() == [1, 2, 0]  # ties: lower index first
    assert top_units(np.array([0.2, 0.1]), 8).tolist() == [0, 1]


# --- look_inside --------------------------------------------------------------------------------


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


@pytest.mark.parametrize("hidden, activation", [((16,), "sigmoid"), ((24, 12), "relu"), ((16, 16, 8, 8), "relu")])
def test_look_inside_an_mlp_matches_a_forward_pass_by_hand(hidden, activation):
    model = MLP(hidden_sizes=hidden, activation=activation, seed=3).initialize()
    x = np.random.default_rng(2).random(784).astype(np.float32)
    inside = look_inside(model, x)
    act = sigmoid if activation == "sigmoid" else (lambda z: np.maximum(z, 0))
    assert [a.title for a in inside.layers] == [f"dense {h}" for h in hidden]
    a = x.astype(np.float64)
    for i, layer in enumerate(inside.layers, start=1):
        a = act(a @ model.params_[f"W{i}"] + model.params_[f"b{i}"])
        np.testing.assert_allclose(layer.values, a, rtol=1e-4, atol=1e-5)
        assert layer.kind == "dense" and not layer.is_map and layer.shown.max() == pytest.approx(1.0)
    first = inside.layers[0].values
    assert inside.top.title == f"dense {hidden[0]}"
    assert list(inside.top.activations) == sorted(first, reverse=True)[:8]
    # Each top unit's picture is its column of W1, pixel by pixel.
    for unit, picture in zip(inside.top.units, inside.top.weights):
        np.testing.assert_array_equal(picture.reshape(-1), model.params_["W1"][:, unit])
    assert inside.filters is None and inside.filters_title is None


def test_look_inside_a_cnn_maps_filters_and_first_dense_units():
    config = TrainConfig(
        layers="conv 4x5x5 -> pool 2 -> conv 6x3x3 -> dropout 0.3 -> dense 16 -> dense 10",
        activation="relu",
        seed=4,
    )
    model = MLP(config).initialize()
    x = np.random.default_rng(3).random(784).astype(np.float32)
    inside = look_inside(model, x)
    # Dropout is left out (it passes its input on when reading); positions still count it.
    assert [(a.position, a.title) for a in inside.layers] == [
        (1, "conv 4x5x5"),
        (2, "pool 2"),
        (3, "conv 6x3x3"),
        (5, "dense 16"),
    ]
    p = model.params_
    conv1 = np.maximum(conv2d_forward(x.reshape(1, 28, 28, 1), p["W1"], p["b1"]), 0)
    pool = maxpool_forward(conv1, 2)
    conv2 = np.maximum(conv2d_forward(pool, p["W2"], p["b2"]), 0)
    for got, want in zip(inside.layers[:3], (conv1, pool, conv2)):
        assert got.is_map and got.values.shape == (want.shape[3], want.shape[1], want.shape[2])
        np.testing.assert_allclose(got.values, maps_first(want[0]), rtol=1e-4, atol=1e-6)
    assert inside.layers[2].values.shape == (6, 14, 14)
    # Maps share their layer's scale: the layer's largest value is 1, a weaker map stays darker.
    shown = inside.layers[0].shown
    assert shown.max() == pytest.approx(1.0) and shown.min() >= 0
    np.testing.assert_allclose(shown, inside.layers[0].values / inside.layers[0].values.max(), rtol=1e-6)
    # The first conv's filters: W1 (5, 5, 1, 4) as four 5x5 tiles.
    assert inside.filters_title == "conv 4x5x5" and inside.filters.shape == (4, 5, 5)
    for c in range(4):
        np.testing.assert_array_equal(inside.filters[c], p["W1"][:, :, 0, c])
    # The first dense layer reads maps, not pixels: its top units, but no 28x28 weights.
    assert (inside.top.position, inside.top.title) == (5, "dense 16") and inside.top.weights is None
    assert list(inside.top.activations) == sorted(inside.layers[3].values, reverse=True)[:8]
    assert unit_weights(model, inside.top.units) is None


def test_look_inside_a_trained_tiny_cnn():
    X, y = block_digits(200)
    model = MLP(TrainConfig(layers=TINY_CNN, epochs=1, batch_size=32, n_train=96, seed=0)).fit(X, y)
    inside = look_inside(model, X[0])
    assert [a.title for a in inside.layers] == ["conv 4x5x5", "pool 2", "dense 16"]
    assert [a.values.shape for a in inside.layers] == [(4, 28, 28), (4, 14, 14), (16,)]
    assert all(np.isfinite(a.shown).all() and 0 <= a.shown.min() and a.shown.max() <= 1 for a in inside.layers)
    assert inside.filters.shape == (4, 5, 5)
    tiles = signed_tiles(inside.filters, columns=4, factor=6)
    assert tiles.shape == (30, 4 * 30 + 3, 3)


def test_unit_cells_one_cell_per_unit_in_order_top_units_in_orange():
    shown = np.linspace(0, 1, 40).astype(np.float32)
    picture = unit_cells(shown, marked=np.array([39, 3]))
    columns, cell = cell_layout(40)
    assert (columns, cell) == (16, 16)
    assert picture.shape == (3 * (cell + 1) + 1, columns * (cell + 1) + 1, 3)  # a 1-px grey frame round it
    assert (picture[0] == GREY_GAP_COLOUR).all() and (picture[:, -1] == GREY_GAP_COLOUR).all()
    for i in range(40):
        r, c = divmod(i, columns)
        colour = picture[1 + r * (cell + 1) + cell // 2, 1 + c * (cell + 1) + cell // 2].astype(int)
        if i in (39, 3):
            assert colour[0] > colour[1] > colour[2]  # orange, as bright as the unit
            assert colour[0] == round(shown[i] * 240)
        else:
            assert colour.tolist() == [round(shown[i] * 255)] * 3
    assert picture[-2, -2].tolist() == GREY_GAP_COLOUR.tolist()  # after the last unit: no cell
    assert cell_layout(256) == (16, 16) and cell_layout(1000) == (32, 8) and cell_layout(4096) == (64, 4)


def test_map_grid_draws_each_map_about_48_px_in_rows_of_eight():
    shown = np.random.default_rng(5).random((12, 14, 14)).astype(np.float32)
    picture = map_grid(shown)  # indices into GREY_PALETTE
    assert picture.shape == (2 * 43 + 1, 8 * 43 + 1)  # 14 px x 3, 1-px lines and frame
    first = np.repeat(np.repeat(shown[0], 3, axis=0), 3, axis=1)
    np.testing.assert_array_equal(picture[1:43, 1:43], (first * 254).round())
    assert (picture[0] == LINE_INDEX).all() and (picture[43] == LINE_INDEX).all()
    assert (picture[44:, 4 * 43 + 1 :] == LINE_INDEX).all()  # slots 13-16 are empty
    colours = GREY_PALETTE[picture]
    assert (colours[1:43, 1:43, 0] == colours[1:43, 1:43, 2]).all()  # greys, black to white
    assert GREY_PALETTE[0].tolist() == [0, 0, 0] and GREY_PALETTE[254].tolist() == [255, 255, 255]
    assert GREY_PALETTE[LINE_INDEX].tolist() == GREY_GAP_COLOUR.tolist()
    # As a PNG, it decodes to those colours.
    decoded = np.asarray(Image.open(io.BytesIO(png(picture, GREY_PALETTE))).convert("RGB"))
    np.testing.assert_array_equal(decoded, colours)
