"""What each layer of a network did with one input: the numbers behind the app's "inside the layers" view.

For one input x (784,), ``look_inside`` returns every hidden layer's output (conv and pool
layers as feature maps (c, h, w), dense layers as units (n,)), named by its spec (``conv
32x5x5``, ``pool 2``, ``dense 256``), each scaled for showing by one scale per layer; the
first conv layer's filters when it reads the image (c_out, kh, kw); and the units of the first
dense layer that fired most, with their incoming weights as 28x28 pictures when that layer reads
the pixels (an MLP; a CNN's reads feature maps). Dropout layers are left out: when a network
reads they pass their input on unchanged, so they would show the layer before them again. The
logits are the answer, shown elsewhere.

Scaling: activations (ReLU or sigmoid: never negative) are divided by the largest value of
their layer, so a map or unit that hardly responded looks dark next to those that did.
Weights and filters are signed and are divided tile by tile by their own largest magnitude,
so every tile's pattern shows, whatever its overall size (``scaled_per_tile``).

Pure functions over NumPy arrays, shapes in docstrings. Non-goals: drawing (the pages do
that), several inputs at once, explaining a unit beyond its weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .architecture import IMAGE_SIDE, N_INPUTS
from .network import Network

TOP_UNITS = 8  # units of the first dense layer shown with their weights


@dataclass(frozen=True)
class LayerActivity:
    """One hidden layer's output for one input.

    ``values`` is (c, h, w) for a conv or pool layer (one map per channel), (n,) for a dense one;
    ``shown`` is the same array divided by the layer's largest value (in [0, 1] for ReLU and
    sigmoid outputs; ``scaled_by_layer``)."""

    position: int  # 1-based place in the network's spec
    title: str  # the layer in spec syntax, e.g. "conv 32x5x5"
    kind: str  # "conv", "pool" or "dense"
    values: np.ndarray
    shown: np.ndarray

    @property
    def is_map(self) -> bool:
        return self.values.ndim == 3


@dataclass(frozen=True)
class TopUnits:
    """The units of a dense layer that fired most for the input, largest first, and their incoming
    weights as pictures when the layer reads the 28x28 image: ``weights`` (k, 28, 28), else None."""

    position: int  # the layer's 1-based place in the spec (as in ``LayerActivity``)
    title: str
    units: np.ndarray  # (k,) unit indices
    activations: np.ndarray  # (k,) their outputs
    weights: np.ndarray | None


@dataclass(frozen=True)
class Inside:
    """Everything the layer view shows for one input (``look_inside``)."""

    layers: list[LayerActivity]  # hidden layers in order, dropout left out
    filters: np.ndarray | None  # (c_out, kh, kw) the first conv layer's filters, if it reads the image
    filters_title: str | None
    top: TopUnits | None  # the first dense layer's top units (None: no hidden dense layer)


def scaled_by_layer(values: np.ndarray) -> np.ndarray:
    """``values`` (any shape) divided by their largest magnitude: in [-1, 1], and in [0, 1] when
    none is negative. All zero (or not finite) stays zero."""
    values = np.nan_to_num(np.asarray(values, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    top = float(np.abs(values).max(initial=0.0))
    return values / top if top > 0 else np.zeros_like(values)


def scaled_per_tile(tiles: np.ndarray) -> np.ndarray:
    """Tiles (n, ...) each divided by its own largest magnitude: (n, ...) in [-1, 1]; an all-zero tile
    stays zero. Non-finite values count as zero."""
    tiles = np.nan_to_num(np.asarray(tiles, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if tiles.size == 0:
        return tiles
    top = np.abs(tiles.reshape(len(tiles), -1)).max(axis=1).reshape((-1,) + (1,) * (tiles.ndim - 1))
    return np.divide(tiles, top, out=np.zeros_like(tiles), where=top > 0)


def top_units(activations: np.ndarray, k: int = TOP_UNITS) -> np.ndarray:
    """Indices (min(k, n),) of the k largest of ``activations`` (n,), largest first; ties: lower index first."""
    activations = np.asarray(activations, np.float64).reshape(-1)
    return np.argsort(-activations, kind="stable")[: max(0, int(k))]


def maps_first(values: np.ndarray) -> np.ndarray:
    """A conv or pool output for one image (h, w, c) as one map per channel: (c, h, w)."""
    return np.ascontiguousarray(np.moveaxis(values, -1, 0))


def first_conv_filters(model: Network) -> tuple[str, np.ndarray] | None:
    """(title, filters (c_out, kh, kw)) of the network's first layer if it is a conv reading the image
    (one input channel), else None. Filter i is what map i of that layer looks for."""
    if not model.layers or model.layers[0].kind != "conv" or model.params_ is None:
        return None
    W = model.params_["W1"]  # (kh, kw, 1, c_out)
    return model.layers[0].text(), np.ascontiguousarray(np.moveaxis(W[:, :, 0, :], -1, 0))


def unit_weights(model: Network, units: np.ndarray) -> np.ndarray | None:
    """The incoming weights of ``units`` (k,) of the first layer as pictures (k, 28, 28), if that layer
    is dense and reads the image's 784 pixels; else None."""
    if not model.layers or model.layers[0].kind != "dense" or model.params_ is None:
        return None
    W = model.params_["W1"]  # (784, units)
    if W.shape[0] != N_INPUTS:
        return None
    return np.ascontiguousarray(W[:, np.asarray(units, int)].T.reshape(-1, IMAGE_SIDE, IMAGE_SIDE))


def look_inside(model: Network, x: np.ndarray, k: int = TOP_UNITS) -> Inside:
    """What every hidden layer did with the input x (784,) in [0, 1] (one forward pass)."""
    outputs = model.layer_outputs(np.asarray(x, np.float32).reshape(1, -1))
    layers: list[LayerActivity] = []
    for position, (layer, out) in enumerate(zip(model.layers[:-1], outputs[:-1]), start=1):
        if layer.kind == "dropout":
            continue
        values = out.values[0]
        values = maps_first(values) if values.ndim == 3 else values.reshape(-1)
        layers.append(LayerActivity(position, layer.text(), layer.kind, values, scaled_by_layer(values)))
    top = None
    dense = next((a for a in layers if a.kind == "dense"), None)
    if dense is not None:
        units = top_units(dense.values, k)
        weights = unit_weights(model, units) if dense.position == 1 else None
        top = TopUnits(dense.position, dense.title, units, dense.values[units], weights)
    filters = first_conv_filters(model)
    return Inside(layers, None if filters is None else filters[1], None if filters is None else filters[0], top)
