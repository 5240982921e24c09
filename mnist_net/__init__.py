"""mnist_net: a handwritten-digit recogniser whose network is written from scratch in NumPy.

Public API: ``load_mnist``, ``load_model``, ``save_model``, ``Network`` (alias ``MLP``: ``fit``,
``iter_fit``, ``predict_proba``, ...), ``TrainConfig``, ``Progress``, ``canvas_to_input``,
``image_from_bytes``; a user's own digits: ``DigitSet`` and its files (``digitset``),
``fine_tune`` (``finetune``).
Modules, from the bottom (each imports only modules above it in this list):
``architecture`` (layer specs), ``layers`` (conv, pool, dropout, flatten: forward beside
backward), ``optim``, ``history``, ``data`` (verified MNIST), ``files``, ``safe_pickle``,
``confidence`` -> ``config``, ``functional`` (dense maths), ``preprocess`` (canvas to input),
``metrics`` -> ``augment``, ``digitset``, ``uploads``, ``budget`` -> ``train`` (the loop),
``synth`` (drawn test digits) -> ``network`` (the class) -> ``model_io`` (files), ``explain``
(saliency), ``inside`` (activations, filters), ``novelty`` (not-a-digit score) -> ``finetune``,
``registry`` (the models folder), ``run_store`` -> ``worker`` (a run's process), ``cli`` ->
``jobs`` (a run from the parent's side) -> ``runs`` (a server's runs).
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
