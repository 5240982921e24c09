"""TrainConfig: every hyperparameter of a run, in one dataclass.

The same object flows from the train page (or the command line) to the trainer and
into the saved model file, so a model always records how it was made.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from numbers import Integral, Real

OPTIMIZERS = ("sgd", "momentum", "adam")
ACTIVATIONS = ("sigmoid", "relu")


@dataclass
class TrainConfig:
    hidden_sizes: tuple[int, ...] = (128, 64)  # the notebook's 784-128-64-10
    activation: str = "sigmoid"  # the notebook's; "relu" trains faster and deeper
    optimizer: str = "adam"  # adam needs the least tuning of the three
    learning_rate: float = 1e-3  # adam's usual default; sgd wants ~0.1
    momentum: float = 0.9  # only for optimizer="momentum"
    l2: float = 0.0  # weight decay on weights (not biases)
    batch_size: int = 128  # big enough for BLAS, small enough to generalise
    epochs: int = 10
    augment: bool = False  # random shifts/rotations/scaling/stroke width per batch
    # Augmentation ranges, chosen by measurement on digits redrawn as canvases (see
    # mnist_net/augment.py): canvas_to_input centres digits, so small shifts suffice, and
    # browser pens vary stroke width far more than MNIST does.
    max_shift: float = 2.0  # pixels
    max_rotation: float = 15.0  # degrees
    scale_range: tuple[float, float] = (0.85, 1.15)
    stroke_change_prob: float = 0.6  # chance to thicken (1-2 px) or thin a digit's stroke
    max_thicken: int = 2  # thickened strokes grow by 1..max_thicken pixels
    n_train: int | None = None  # use only this many training images (None = all)
    val_fraction: float = 1 / 12  # 5,000 of the 60,000 training images
    lr_decay: float = 1.0  # learning rate multiplied by this after each epoch
    seed: int = 0  # the only source of randomness: init, split, shuffling, augmentation
    log_every: int = 50  # yield a batch-level progress record every N batches
    val_max: int | None = None  # evaluate on at most this many validation images per epoch
    # BLAS threads while training (None = leave as is). 1 by measurement (benchmarks/
    # bench_speed.py): on 2 shared cores a second thread won nothing and, whenever anything
    # else ran, made epochs several times slower.
    threads: int | None = 1

    def __post_init__(self) -> None:
        self.hidden_sizes = tuple(int(h) for h in self.hidden_sizes)
        self.scale_range = tuple(float(s) for s in self.scale_range)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError with a readable message for any wrongly typed or out-of-range value."""
        for name in ("batch_size", "epochs", "seed", "log_every", "max_thicken", "n_train", "val_max", "threads"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, Integral)):
                raise ValueError(f"{name} must be a whole number, got {value!r}")
        for name in ("learning_rate", "momentum", "l2", "max_shift", "max_rotation", "stroke_change_prob",
                     "val_fraction", "lr_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Real) or value != value:
                raise ValueError(f"{name} must be a number, got {value!r}")
        if self.seed < 0:
            raise ValueError("seed must be >= 0")
        if not self.hidden_sizes or any(h < 1 or h > 4096 for h in self.hidden_sizes):
            raise ValueError("hidden_sizes must be 1-10 layers of 1..4096 units each")
        if len(self.hidden_sizes) > 10:
            raise ValueError("hidden_sizes must be 1-10 layers of 1..4096 units each")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not self.learning_rate > 0:
            raise ValueError("learning_rate must be > 0")
        if not 0 <= self.momentum < 1:
            raise ValueError("momentum must be in [0, 1)")
        if self.l2 < 0:
            raise ValueError("l2 must be >= 0")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if self.epochs < 1:
            raise ValueError("epochs must be >= 1")
        if self.n_train is not None and self.n_train < 10:
            raise ValueError("n_train must be at least 10 (or None for all)")
        if not 0 <= self.val_fraction < 1:
            raise ValueError("val_fraction must be in [0, 1)")
        if not 0 < self.lr_decay <= 1:
            raise ValueError("lr_decay must be in (0, 1]")
        if not 1 <= self.max_thicken <= 4:
            raise ValueError("max_thicken must be 1..4 pixels")
        if self.log_every < 1:
            raise ValueError("log_every must be >= 1")
        if self.threads is not None and not 1 <= self.threads <= 64:
            raise ValueError("threads must be 1..64 (or None to leave BLAS as it is)")

    def to_dict(self) -> dict:
        """Plain types only, so the saved file never depends on this class."""
        d = asdict(self)
        d["hidden_sizes"] = list(self.hidden_sizes)
        d["scale_range"] = list(self.scale_range)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Rebuild from a saved dict, ignoring unknown keys (newer minor additions)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def layer_sizes(config: TrainConfig, n_in: int = 784, n_out: int = 10) -> list[int]:
    return [n_in, *config.hidden_sizes, n_out]


__all__ = ["TrainConfig", "layer_sizes", "OPTIMIZERS", "ACTIVATIONS", "field"]
