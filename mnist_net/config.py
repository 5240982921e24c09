"""TrainConfig: every hyperparameter of a run, in one dataclass, and the one place defaults live.

The same object flows from the train page (or the command line) to the trainer and into
the saved model file, so a model always records how it was made. The CLI's flags, the
train page's widgets and the augmentation read their defaults from here; the app starts
from ``app_start_config()``, a named variation of the defaults.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from numbers import Integral, Real
from typing import Any

from .architecture import (
    PRESETS,
    Layer,
    describe,
    floats_per_image,
    format_layers,
    layer_shapes,
    mlp_layers,
    parse_layers,
)

OPTIMIZERS = ("sgd", "momentum", "adam")
ACTIVATIONS = ("sigmoid", "relu")
N_INPUTS = 784  # 28 x 28 pixels
N_CLASSES = 10
MAX_UNITS = 4096  # per hidden layer: a 4096-wide layer already takes seconds per epoch here
MAX_HIDDEN_LAYERS = 10
# Weights and biases in all. A model file holds them (float32) plus up to two optimizer arrays
# of the same size (Adam): 12M parameters make a ~144 MB file, inside the loader's 200 MB limit,
# so every network the config allows can be saved and loaded back.
MAX_PARAMETERS = 12_000_000
MAX_EPOCHS = 10_000
MAX_BATCH_SIZE = 65_536
MAX_BATCH_BYTES = 2 * 1024**3  # what one training batch of a layer spec may hold (architecture.floats_per_image)


@dataclass
class TrainConfig:
    hidden_sizes: tuple[int, ...] = (128, 64)  # the notebook's 784-128-64-10
    # The network as a layer spec (architecture.py), e.g. "cnn" or "conv 32x5x5 -> pool 2 -> dense 10";
    # "" (the default) is the MLP of hidden_sizes. Stored in canonical form (presets expanded).
    layers: str = ""
    activation: str = "sigmoid"  # the notebook's; "relu" trains faster and deeper
    optimizer: str = "adam"  # adam needs the least tuning of the three
    learning_rate: float = 1e-3  # adam's usual default; sgd wants ~0.1
    momentum: float = 0.9  # only for optimizer="momentum"
    l2: float = 0.0  # weight decay on weights (not biases)
    batch_size: int = 128  # big enough for BLAS, small enough to generalise
    epochs: int = 10
    augment: bool = False  # random shifts/rotations/scaling/stroke width per batch
    # Augmentation ranges, chosen by measurement on digits redrawn as canvases (README,
    # "Augmentation"): canvas_to_input centres digits, so small shifts suffice, and browser
    # pens vary stroke width far more than MNIST does.
    max_shift: float = 2.0  # pixels
    max_rotation: float = 15.0  # degrees
    scale_range: tuple[float, float] = (0.85, 1.15)
    stroke_change_prob: float = 0.6  # chance to thicken (1-2 px) or thin a digit's stroke
    max_thicken: int = 2  # thickened strokes grow by 1..max_thicken pixels (2: ~2.5x an MNIST stroke)
    # Handwriting MNIST lacks (augment.py; off by default, measured in README, "Augmentation"):
    max_slant: float = 0.0  # degrees of random lean (shear) either way; 0 = none
    elastic_prob: float = 0.0  # chance a digit gets an elastic distortion (Simard et al. 2003)
    elastic_alpha: float = 34.0  # its strength (Simard's): displacements under alpha px, ~alpha/20 typical
    elastic_sigma: float = 4.0  # its smoothness: Gaussian width of the displacement field, pixels
    style_prob: float = 0.0  # chance each style of a digit's class is drawn (flag/foot on 1, crossbar on 7, ...)
    n_train: int | None = None  # use only this many training images (None = all)
    val_fraction: float = 1 / 12  # 5,000 of the 60,000 training images
    lr_decay: float = 1.0  # learning rate multiplied by this after each epoch
    seed: int = 0  # the only source of randomness: init, split, shuffling, augmentation
    log_every: int = 50  # yield a batch-level progress record every N batches
    val_max: int | None = None  # evaluate on at most this many validation images per epoch
    # BLAS threads while training (None = leave as is). 1 by measurement (benchmarks/
    # bench_speed.py): on 2 shared cores a second thread won little and, whenever anything
    # else ran, made epochs several times slower.
    threads: int | None = 1

    def __post_init__(self) -> None:
        try:
            self.hidden_sizes = tuple(int(h) for h in self.hidden_sizes)
            self.scale_range = tuple(float(s) for s in self.scale_range)  # type: ignore[assignment]
        except (TypeError, ValueError):
            raise ValueError(
                f"hidden_sizes and scale_range must be sequences of numbers, got "
                f"{self.hidden_sizes!r} and {self.scale_range!r}"
            ) from None
        if isinstance(self.layers, str) and self.layers.strip():
            try:
                self.layers = format_layers(parse_layers(self.layers))
            except ValueError as e:
                raise ValueError(f"layers: {e}") from None
        self.validate()

    def validate(self) -> None:
        """Raise ValueError with a readable message for any wrongly typed or out-of-range value."""
        for name in ("batch_size", "epochs", "seed", "log_every", "max_thicken", "n_train", "val_max", "threads"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, Integral)):
                raise ValueError(f"{name} must be a whole number, got {value!r}")
        for name in (
            "learning_rate",
            "momentum",
            "l2",
            "max_shift",
            "max_rotation",
            "stroke_change_prob",
            "val_fraction",
            "lr_decay",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Real) or value != value:
                raise ValueError(f"{name} must be a number, got {value!r}")
        if self.seed < 0:
            raise ValueError("seed must be >= 0")
        if self.seed >= 2**63:
            raise ValueError("seed must be below 2**63")
        if not 1 <= len(self.hidden_sizes) <= MAX_HIDDEN_LAYERS or any(
            not 1 <= h <= MAX_UNITS for h in self.hidden_sizes
        ):
            raise ValueError(f"hidden_sizes must be 1-{MAX_HIDDEN_LAYERS} layers of 1..{MAX_UNITS} units each")
        if not self.layers and count_parameters(self.layer_sizes) > MAX_PARAMETERS:
            raise ValueError(
                f"hidden_sizes {','.join(map(str, self.hidden_sizes))} make a network of "
                f"{count_parameters(self.layer_sizes):,} weights; at most {MAX_PARAMETERS:,} "
                "can be trained and saved"
            )
        if not isinstance(self.layers, str):
            raise ValueError(f"layers must be a layer spec (text), got {self.layers!r}")
        if self.layers:
            batch_bytes = 4 * self.batch_size * floats_per_image(parse_layers(self.layers))
            if batch_bytes > MAX_BATCH_BYTES:
                raise ValueError(
                    f"a batch of {self.batch_size} through these layers needs about {batch_bytes / 1024**3:.1f} GB; "
                    f"at most {MAX_BATCH_BYTES / 1024**3:.0f} GB (a smaller batch, or fewer channels)"
                )
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not 0 < self.learning_rate <= 100:
            raise ValueError("learning_rate must be in (0, 100]")
        if not 0 <= self.momentum < 1:
            raise ValueError("momentum must be in [0, 1)")
        if not 0 <= self.l2 <= 100:
            raise ValueError("l2 must be in [0, 100]")
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH_SIZE}")
        if self.epochs < 1:
            raise ValueError("epochs must be >= 1")
        if self.epochs > MAX_EPOCHS:
            raise ValueError(f"epochs must be at most {MAX_EPOCHS}")
        if not 0 <= self.max_shift <= 14:
            raise ValueError("max_shift must be 0..14 pixels")
        if not 0 <= self.max_rotation <= 180:
            raise ValueError("max_rotation must be 0..180 degrees")
        if not 0 <= self.stroke_change_prob <= 1:
            raise ValueError("stroke_change_prob must be in [0, 1]")
        if len(self.scale_range) != 2 or not 0.1 <= self.scale_range[0] <= self.scale_range[1] <= 10:
            raise ValueError(f"scale_range must be two numbers LO <= HI in [0.1, 10], got {self.scale_range!r}")
        if self.n_train is not None and self.n_train < 10:
            raise ValueError("n_train must be at least 10 (or None for all)")
        if self.val_max is not None and self.val_max < 1:
            raise ValueError("val_max must be at least 1 (or None for all)")
        if not 0 <= self.val_fraction < 1:
            raise ValueError("val_fraction must be in [0, 1)")
        if not 0 < self.lr_decay <= 1:
            raise ValueError("lr_decay must be in (0, 1]")
        if not 1 <= self.max_thicken <= 4:
            raise ValueError("max_thicken must be 1..4 pixels")
        if not 1 <= self.log_every <= 10**9:
            raise ValueError("log_every must be >= 1")
        if self.threads is not None and not 1 <= self.threads <= 64:
            raise ValueError("threads must be 1..64 (or None to leave BLAS as it is)")
        for name in ("max_slant", "elastic_prob", "elastic_alpha", "elastic_sigma", "style_prob"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Real) or value != value:
                raise ValueError(f"{name} must be a number, got {value!r}")
        if not 0 <= self.max_slant <= 45:
            raise ValueError("max_slant must be 0..45 degrees")
        if not 0 <= self.elastic_prob <= 1:
            raise ValueError("elastic_prob must be in [0, 1]")
        if not 0 <= self.elastic_alpha <= 100:
            raise ValueError("elastic_alpha must be 0..100 pixels")
        if not 0.5 <= self.elastic_sigma <= 20:
            raise ValueError("elastic_sigma must be 0.5..20 pixels")
        if not 0 <= self.style_prob <= 1:
            raise ValueError("style_prob must be in [0, 1]")

    @property
    def layer_specs(self) -> tuple[Layer, ...]:
        """The network's layers: parsed from ``layers``, or the dense layers of ``hidden_sizes``."""
        return parse_layers(self.layers) if self.layers else mlp_layers(self.hidden_sizes)

    @property
    def layer_sizes(self) -> list[int]:
        """[784, *hidden_sizes, 10] for an MLP; for other layers the values each layer outputs per image."""
        if not self.layers:
            return [N_INPUTS, *self.hidden_sizes, N_CLASSES]
        return [math.prod(shape) for shape in layer_shapes(self.layer_specs)]

    @property
    def architecture(self) -> str:
        """Short text for people: ``784→128→64→10``, or the layer spec."""
        return describe(self.layer_specs)

    def to_dict(self) -> dict[str, Any]:
        """Plain types only, so the saved file never depends on this class."""
        d = asdict(self)
        d["hidden_sizes"] = list(self.hidden_sizes)
        d["scale_range"] = list(self.scale_range)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Rebuild from a saved dict, ignoring unknown keys (newer minor additions)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def count_parameters(layer_sizes: list[int]) -> int:
    """Weights and biases of a dense network with these layer sizes."""
    return sum(n_in * n_out + n_out for n_in, n_out in zip(layer_sizes[:-1], layer_sizes[1:]))


def app_start_config() -> TrainConfig:
    """Where the train page starts: the defaults, but ReLU for 5 epochs.

    A class watching a run wants a good network in about a minute: ReLU reaches in 5 epochs
    what sigmoid needs 10 for. The CLI keeps the notebook's network (``TrainConfig()``).
    """
    return replace(TrainConfig(), activation="relu", epochs=5)


def preset_layers(name: str) -> str:
    """The layer spec of a named architecture: "mlp" (hidden_sizes, i.e. ""), or a preset such as "cnn"."""
    if name == "mlp":
        return ""
    if name not in PRESETS:
        raise ValueError(f"unknown architecture {name!r}; choose from mlp, {', '.join(PRESETS)}")
    return PRESETS[name]


def parse_hidden_sizes(text: str) -> tuple[int, ...]:
    """ "128, 64" -> (128, 64): the one parser of hidden sizes, for the CLI and the train page.

    Raises ValueError with a readable message for empty input, empty items ("128,,64"),
    and anything that is not a whole number.
    """
    parts = [p.strip() for p in str(text).replace(";", ",").strip().strip(",").split(",")]
    if parts == [""]:
        raise ValueError("give at least one hidden layer size, e.g. 128,64")
    if "" in parts:
        raise ValueError(f"hidden layer sizes have an empty item in {text!r}: write them like 128,64")
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(
            f"hidden layer sizes must be whole numbers separated by commas (comma-separated integers), got {text!r}"
        ) from None
