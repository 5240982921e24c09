"""A network described by its layers: the one parser of layer specs, and what a spec costs.

A spec is a chain of layers, e.g. the ``cnn`` preset::

    conv 32x5x5 -> pool 2 -> conv 64x5x5 -> pool 2 -> dense 256 -> dropout 0.3 -> dense 10

``conv CxKHxKW [same|valid]`` (stride 1, "same" by default), ``pool P`` (max over PxP, stride P),
``dense N``, ``dropout R`` (training only). The activation (``TrainConfig.activation``) follows
every conv and every dense layer but the last, which gives the 10 logits; a dense layer after a
conv or pool flattens its input. The input is the (n, 784) image, seen as 28x28x1 by a conv.
An MLP is a chain of dense layers: hidden sizes 128,64 are ``dense 128 -> dense 64 -> dense 10``.

Here: parsing with readable errors, the canonical text of a spec, the shapes through it, and
its size (parameters), work (FLOPs) and memory per image, bounded so that no spec (from the
command line, the train page or a stranger's model file) can make training or prediction
allocate gigabytes. Pure Python, no NumPy: the config validates with it. Non-goals: branches,
strides other than the pool's, other layer kinds.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

IMAGE_SIDE = 28
N_INPUTS = IMAGE_SIDE * IMAGE_SIDE
N_CLASSES = 10
KINDS = ("conv", "pool", "dense", "dropout")
PADDINGS = ("same", "valid")
PRESETS = {
    "cnn": "conv 32x5x5 -> pool 2 -> conv 64x5x5 -> pool 2 -> dense 256 -> dropout 0.3 -> dense 10",
}
# Bounds. A 256-channel conv on 28x28 already takes minutes per epoch here; kernels beyond 9
# see most of a 28-pixel digit at once (a dense layer does that better).
MAX_UNITS = 4096  # per dense layer
MAX_CHANNELS = 256
MAX_KERNEL = 9
MAX_POOL = 7
MAX_LAYERS = 16
MAX_SPEC_CHARS = 1000
MAX_PARAMETERS = 12_000_000  # see config.MAX_PARAMETERS (the same bound: files must load back)
# Floats one image keeps for its backward pass (layer inputs, im2col columns, masks): 4M floats
# = 16 MB per image, so even a predicting chunk of 16 images stays within 256 MB.
MAX_FLOATS_PER_IMAGE = 4_000_000


@dataclass(frozen=True)
class Layer:
    """One layer of a spec. conv: size = channels, kernel = (kh, kw), padding; pool: size = P;
    dense: size = units; dropout: rate in [0, 1)."""

    kind: str
    size: int = 0
    kernel: tuple[int, int] = (0, 0)
    padding: str = "same"
    rate: float = 0.0

    @property
    def has_params(self) -> bool:
        return self.kind in ("conv", "dense")

    def text(self) -> str:
        """The layer in spec syntax (canonical: what ``parse_layers`` reads back to this layer)."""
        if self.kind == "conv":
            pad = "" if self.padding == "same" else " valid"
            return f"conv {self.size}x{self.kernel[0]}x{self.kernel[1]}{pad}"
        if self.kind == "dropout":
            return f"dropout {self.rate:g}"
        return f"{self.kind} {self.size}"


Shape = tuple[int, ...]  # of one image after a layer: (h, w, c) for conv/pool, (n,) for dense


_CONV = re.compile(r"^conv\s+(\d+)\s*x\s*(\d+)\s*x\s*(\d+)(?:\s+(same|valid))?$")
_SIZED = re.compile(r"^(pool|dense)\s+(\d+)$")
_DROPOUT = re.compile(r"^dropout\s+([0-9]*\.?[0-9]+)$")
_EXAMPLE = PRESETS["cnn"]


def _parse_one(item: str, position: int) -> Layer:
    text = " ".join(item.lower().split())
    if m := _CONV.match(text):
        return Layer("conv", int(m[1]), (int(m[2]), int(m[3])), m[4] or "same")
    if m := _SIZED.match(text):
        return Layer(m[1], int(m[2]))
    if m := _DROPOUT.match(text):
        return Layer("dropout", rate=float(m[1]))
    word = text.split(" ", 1)[0] if text else ""
    hint = {
        "conv": "write conv CHANNELSxKxK, e.g. conv 32x5x5 (or conv 32x5x5 valid)",
        "pool": "write pool SIZE, e.g. pool 2",
        "dense": "write dense UNITS, e.g. dense 256",
        "dropout": "write dropout RATE, e.g. dropout 0.3",
    }.get(word, f"layers are {', '.join(KINDS)}")
    return _fail(f"layer {position} {item.strip()!r} is not understood: {hint}")


def _fail(message: str) -> Layer:
    raise ValueError(message)


def parse_layers(text: str) -> tuple[Layer, ...]:
    """A spec (or a preset name such as ``cnn``) -> its layers, checked (``check_layers``).

    Layers are separated by ``->`` (or ``→`` or ``,``). Raises ValueError with a readable
    message: which layer, what is wrong, how to write it.
    """
    if not isinstance(text, str):
        raise ValueError(f"a layer spec must be text, got {type(text).__name__}")
    if len(text) > MAX_SPEC_CHARS:
        raise ValueError(f"the layer spec is {len(text)} characters long; at most {MAX_SPEC_CHARS}")
    text = PRESETS.get(text.strip().lower(), text)
    items = re.split(r"->|→|,", text)
    if not text.strip():
        raise ValueError(f"give at least one layer, e.g. {_EXAMPLE}")
    if any(not item.strip() for item in items):
        raise ValueError(f"the layer spec has an empty layer in {text!r}: separate layers with ->")
    if len(items) > MAX_LAYERS:
        raise ValueError(f"the spec has {len(items)} layers; at most {MAX_LAYERS}")
    layers = tuple(_parse_one(item, i) for i, item in enumerate(items, start=1))
    check_layers(layers)
    return layers


def format_layers(layers: tuple[Layer, ...]) -> str:
    """Canonical spec text, e.g. ``conv 32x5x5 -> pool 2 -> dense 10``."""
    return " -> ".join(layer.text() for layer in layers)


def mlp_layers(hidden_sizes: tuple[int, ...] | list[int]) -> tuple[Layer, ...]:
    """The dense layers of an MLP with these hidden sizes (and the 10 outputs)."""
    return tuple(Layer("dense", int(h)) for h in [*hidden_sizes, N_CLASSES])


def is_mlp(layers: tuple[Layer, ...]) -> bool:
    """Only dense layers: the network the notebook and format-1 files describe."""
    return all(layer.kind == "dense" for layer in layers)


def check_layers(layers: tuple[Layer, ...]) -> None:
    """Raise ValueError unless the layers chain from a 28x28 image to 10 logits within the bounds."""
    if not 1 <= len(layers) <= MAX_LAYERS:
        raise ValueError(f"a network has 1 to {MAX_LAYERS} layers, got {len(layers)}")
    for i, layer in enumerate(layers, start=1):
        where = f"layer {i} ({layer.text()})"
        if layer.kind not in KINDS:
            raise ValueError(f"{where}: unknown kind; layers are {', '.join(KINDS)}")
        if layer.kind == "conv":
            if not 1 <= layer.size <= MAX_CHANNELS:
                raise ValueError(f"{where}: a conv layer has 1 to {MAX_CHANNELS} channels")
            if not all(1 <= k <= MAX_KERNEL for k in layer.kernel):
                raise ValueError(f"{where}: kernels are 1 to {MAX_KERNEL} pixels wide")
            if layer.padding not in PADDINGS:
                raise ValueError(f"{where}: padding is same or valid")
        elif layer.kind == "pool" and not 2 <= layer.size <= MAX_POOL:
            raise ValueError(f"{where}: pooling is over 2 to {MAX_POOL} pixels")
        elif layer.kind == "dense" and not 1 <= layer.size <= MAX_UNITS:
            raise ValueError(f"{where}: a dense layer has 1 to {MAX_UNITS} units")
        elif layer.kind == "dropout" and not (0 <= layer.rate < 1 and math.isfinite(layer.rate)):
            raise ValueError(f"{where}: the dropout rate is in [0, 1)")
    last = layers[-1]
    if last.kind != "dense" or last.size != N_CLASSES:
        raise ValueError(f"the last layer must be dense {N_CLASSES} (one score per digit), got {last.text()}")
    shapes = layer_shapes(layers)  # raises if a layer shrinks the image to nothing
    n_params = count_parameters(layers)
    if n_params > MAX_PARAMETERS:
        raise ValueError(f"these layers have {n_params:,} weights; at most {MAX_PARAMETERS:,} can be trained and saved")
    floats = floats_per_image(layers, shapes)
    if floats > MAX_FLOATS_PER_IMAGE:
        raise ValueError(
            f"these layers keep {floats * 4 / 1024**2:,.0f} MB per image for training; at most "
            f"{MAX_FLOATS_PER_IMAGE * 4 / 1024**2:,.0f} MB (fewer channels, or pool earlier)"
        )


def layer_shapes(layers: tuple[Layer, ...]) -> list[Shape]:
    """Shape of one image after each layer, the input first: [(784,), ...] for an MLP,
    [(28, 28, 1), (28, 28, 32), (14, 14, 32), ...] once a conv sees the image.

    Raises ValueError if a valid conv or a pool leaves no pixels.
    """
    shape: Shape = (N_INPUTS,)
    if layers and layers[0].kind in ("conv", "pool"):
        shape = (IMAGE_SIDE, IMAGE_SIDE, 1)
    shapes = [shape]
    for i, layer in enumerate(layers, start=1):
        if layer.kind in ("conv", "pool"):
            if len(shape) != 3:
                raise ValueError(f"layer {i} ({layer.text()}) needs an image, but follows a dense layer")
            h, w, c = shape
            if layer.kind == "conv":
                kh, kw = layer.kernel
                if layer.padding == "valid":
                    h, w = h - kh + 1, w - kw + 1
                shape = (h, w, layer.size)
            else:
                shape = (h // layer.size, w // layer.size, c)
            if shape[0] < 1 or shape[1] < 1:
                raise ValueError(f"layer {i} ({layer.text()}) gets a {h}x{w} image: too small for it")
        elif layer.kind == "dense":
            shape = (layer.size,)
        shapes.append(shape)
    return shapes


def param_shapes(layers: tuple[Layer, ...]) -> list[tuple[Shape, Shape]]:
    """(W shape, b shape) of each layer with parameters, in order: W{i}, b{i} for i = 1, 2, ...

    conv: W (kh, kw, c_in, c_out), b (c_out,); dense: W (n_in, n_out), b (n_out,).
    """
    shapes = layer_shapes(layers)
    out: list[tuple[Shape, Shape]] = []
    for layer, before in zip(layers, shapes[:-1]):
        if layer.kind == "conv":
            out.append(((*layer.kernel, before[2], layer.size), (layer.size,)))
        elif layer.kind == "dense":
            out.append(((math.prod(before), layer.size), (layer.size,)))
    return out


def count_parameters(layers: tuple[Layer, ...]) -> int:
    """Weights and biases in all."""
    return sum(math.prod(w) + math.prod(b) for w, b in param_shapes(layers))


def flops_per_image(layers: tuple[Layer, ...]) -> tuple[int, int]:
    """(forward, backward) floating-point operations (2 per multiply-add) of the GEMMs for one image.

    Backward is twice forward (dW and dX) except for the first layer, whose input gradient
    (the image's) training skips.
    """
    shapes = layer_shapes(layers)
    forward = backward = 0
    for i, (layer, after) in enumerate(zip(layers, shapes[1:])):
        if layer.kind == "conv":
            kh, kw = layer.kernel
            macs = after[0] * after[1] * kh * kw * shapes[i][2] * layer.size
        elif layer.kind == "dense":
            macs = math.prod(shapes[i]) * layer.size
        else:
            continue
        forward += 2 * macs
        backward += 2 * macs * (1 if i == 0 else 2)
    return forward, backward


def floats_per_image(layers: tuple[Layer, ...], shapes: list[Shape] | None = None) -> int:
    """Floats one training image holds at once: every layer's input and output (kept for
    backward), their gradients, dropout's mask. A bound for the memory of a batch: 4 bytes x
    batch x this (plus the convs' fixed 2 MB blocks of im2col columns, ``layers.BLOCK_FLOATS``)."""
    shapes = shapes or layer_shapes(layers)
    total = 0
    for layer, before, after in zip(layers, shapes[:-1], shapes[1:]):
        total += 2 * (math.prod(before) + math.prod(after))
        if layer.kind == "dropout":
            total += math.prod(after)
    return total


def describe(layers: tuple[Layer, ...]) -> str:
    """Short human text: ``784→128→64→10`` for an MLP, the spec for anything else."""
    if is_mlp(layers):
        return "→".join(str(s) for s in [N_INPUTS, *(layer.size for layer in layers)])
    return format_layers(layers)
