"""mnist_net: a handwritten-digit recogniser whose network is written from scratch in NumPy.

Public API: ``load_mnist``, ``load_model``, ``save_model``, ``MLP``, ``TrainConfig``,
``iter_training``, ``canvas_to_input``, ``image_from_bytes``. Non-goals: GPUs, convolutions,
autograd. Never imports streamlit.
"""

from .config import TrainConfig
from .data import Mnist, MnistError, load_mnist
from .model_io import ModelFileError, load_model, model_from_bytes, model_to_bytes, save_model
from .network import MLP
from .preprocess import canvas_to_input, image_from_bytes
from .train import Progress, iter_training

__all__ = [
    "MLP", "Mnist", "MnistError", "ModelFileError", "Progress", "TrainConfig", "canvas_to_input",
    "image_from_bytes", "iter_training", "load_mnist", "load_model", "model_from_bytes", "model_to_bytes",
    "save_model",
]
