"""What a training run will cost (memory, time) before it starts, and what a server refuses.

The app serves a whole class from one process on a small machine, so the train page checks
a run's estimate against the server's budget before starting it. The estimate is rough (the
machine is shared and its speed varies) but errs high: it is a bound to refuse absurd
runs, not a promise. Speeds are measured by ``python benchmarks/bench_speed.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .architecture import count_parameters as count_layer_parameters
from .architecture import floats_per_image, flops_per_image
from .config import N_INPUTS, TrainConfig, count_parameters

# Sustained float32 GEMM rate of one BLAS thread here, discounted (about 95 GFLOP/s for bare
# GEMMs, 60 for a whole epoch of the default network): conservative so estimates err high.
FLOPS_PER_SECOND = 30e9
# Networks with conv layers: training steps of the cnn preset ran at 25 GFLOP/s of wall time at
# load 8-12 here (52 GFLOP/s of CPU time; benchmarks/cnn_speed.py, 2026-12-02): the im2col copies
# and pooling cost on top of the GEMMs. 20 errs high, as above.
CNN_FLOPS_PER_SECOND = 20e9
SECONDS_PER_BATCH_STEP = 40e-6  # fixed Python/NumPy cost of one layer's step, whatever its size
OPTIMIZER_ARRAYS = {"sgd": 0, "momentum": 1, "adam": 3}  # adam: two moments and one scratch array
EVAL_CHUNK = 4096  # rows per forward chunk at evaluation (functional.logits_in_chunks)
# What one run may take on this server: a 2-core, 24 GB machine shared by a class.
MAX_RUN_BYTES = 3 * 1024**3
MAX_RUN_SECONDS = 4 * 3600


@dataclass(frozen=True)
class TrainingCost:
    """Estimated peak extra memory (bytes) and wall time (seconds) of a run."""

    peak_bytes: int
    seconds: float

    def describe(self) -> str:
        minutes = self.seconds / 60
        when = f"about {self.seconds:.0f} s" if minutes < 2 else f"about {minutes:.0f} min"
        if minutes >= 180:
            when = f"about {minutes / 60:.0f} hours"
        return f"{when}, about {self.peak_bytes / 1024**2:,.0f} MB of memory"


def estimate_training_cost(config: TrainConfig, n_images: int, n_val: int = 5000) -> TrainingCost:
    """Cost of training ``config`` on ``n_images`` images (validated against ``n_val`` each epoch)."""
    if config.layers:
        return _layered_cost(config, n_images, n_val)
    sizes = config.layer_sizes
    params = count_parameters(sizes)
    n_train = n_images if config.n_train is None else min(config.n_train, n_images)
    widths = sum(sizes[1:])
    state_bytes = 4 * params * (2 + OPTIMIZER_ARRAYS[config.optimizer])  # weights, gradients, optimizer
    # Activations of one batch (kept for backward), their gradients and temporaries.
    batch_bytes = 4 * config.batch_size * (N_INPUTS * (3 if config.augment else 1) + 3 * widths)
    eval_bytes = 4 * min(EVAL_CHUNK, n_val) * 2 * max(sizes[1:])
    data_bytes = n_train * N_INPUTS + 4 * n_val * N_INPUTS  # uint8 training copy, float32 validation
    flops_per_image = 6 * params  # forward 2, backward 4 multiply-adds per weight (rounded up)
    steps = config.epochs * -(-n_train // config.batch_size)
    seconds = (
        config.epochs * (n_train + n_val / 3) * flops_per_image / FLOPS_PER_SECOND
        + steps * len(sizes) * SECONDS_PER_BATCH_STEP
    )
    if config.augment:
        seconds += config.epochs * n_train * 40e-6  # warping and stroke changes, per image
    return TrainingCost(state_bytes + batch_bytes + eval_bytes + data_bytes, seconds)


def _layered_cost(config: TrainConfig, n_images: int, n_val: int) -> TrainingCost:
    """estimate_training_cost for a layer spec: GEMM FLOPs over the measured rate, memory per image."""
    layers = config.layer_specs
    n_train = n_images if config.n_train is None else min(config.n_train, n_images)
    forward, backward = flops_per_image(layers)
    state_bytes = 4 * count_layer_parameters(layers) * (2 + OPTIMIZER_ARRAYS[config.optimizer])
    batch_bytes = 4 * config.batch_size * (floats_per_image(layers) + N_INPUTS * (2 if config.augment else 0))
    eval_bytes = 4 * min(EVAL_CHUNK, n_val) * floats_per_image(layers)
    data_bytes = n_train * N_INPUTS + 4 * n_val * N_INPUTS
    steps = config.epochs * -(-n_train // config.batch_size)
    rate = CNN_FLOPS_PER_SECOND if any(layer.kind == "conv" for layer in layers) else FLOPS_PER_SECOND
    seconds = (
        config.epochs * (n_train * (forward + backward) + n_val * forward) / rate
        + steps * len(layers) * SECONDS_PER_BATCH_STEP
    )
    if config.augment:
        seconds += config.epochs * n_train * 40e-6
    return TrainingCost(state_bytes + batch_bytes + min(eval_bytes, 4 * 64 * 1024**2) + data_bytes, seconds)


def refusal(cost: TrainingCost, max_bytes: int = MAX_RUN_BYTES, max_seconds: float = MAX_RUN_SECONDS) -> str | None:
    """Why this server will not run a training of this cost, or None if it will."""
    if cost.peak_bytes > max_bytes:
        return (
            f"this run would need about {cost.peak_bytes / 1024**3:.1f} GB of memory; "
            f"this server allows {max_bytes / 1024**3:.0f} GB per run (use smaller layers or batches)"
        )
    if cost.seconds > max_seconds:
        return (
            f"this run would take about {cost.seconds / 3600:.1f} hours; this server allows "
            f"{max_seconds / 3600:.0f} hours per run (fewer epochs, fewer images or smaller layers)"
        )
    return None
