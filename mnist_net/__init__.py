"""mnist_net: a handwritten-digit recogniser whose network is written from scratch in NumPy.

Public API: ``load_mnist``, ``load_model``, ``save_model``, ``Network`` (alias ``MLP``: ``fit``,
``iter_fit``, ``predict_proba``, ...), ``TrainConfig``, ``Progress``, ``canvas_to_input``,
``image_from_bytes``; a user's own digits: ``DigitSet`` and its files (``digitset``),
``fine_tune`` (``finetune``).
Layers, from the bottom: ``architecture`` (layer specs), ``layers`` and ``functional`` (maths),
``config``, ``data``, ``augment``, ``optim``, ``history`` -> ``train`` (the loop) -> ``network``
(the class) -> ``model_io`` (files) -> ``registry``, ``jobs``, ``cli``.
Non-goals: GPUs, autograd. Never imports streamlit.
"""

from .config import TrainConfig
from .data import Mnist, MnistError, load_mnist
from .digitset import (
    DigitSet,
    DigitSetError,
    digit_set_from_bytes,
    digit_set_to_bytes,
    load_digit_set,
    save_digit_set,
    thumbnail_from_canvas,
)
from .finetune import FineTuneOptions, accuracy_by_class, digit_flips, evaluate_digits, fine_tune, split_held_out
from .history import Progress
from .model_io import ModelFileError, load_model, model_from_bytes, model_to_bytes, save_model
from .network import MLP, Network
from .preprocess import canvas_to_input
from .train import TrainingState, run_training
from .uploads import image_from_bytes

__all__ = [
    "DigitSet",
    "FineTuneOptions",
    "accuracy_by_class",
    "digit_flips",
    "evaluate_digits",
    "fine_tune",
    "split_held_out",
    "DigitSetError",
    "digit_set_from_bytes",
    "digit_set_to_bytes",
    "load_digit_set",
    "save_digit_set",
    "thumbnail_from_canvas",
    "MLP",
    "Mnist",
    "MnistError",
    "ModelFileError",
    "Network",
    "Progress",
    "TrainConfig",
    "TrainingState",
    "canvas_to_input",
    "image_from_bytes",
    "load_mnist",
    "load_model",
    "model_from_bytes",
    "model_to_bytes",
    "run_training",
    "save_model",
]
