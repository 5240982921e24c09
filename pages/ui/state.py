"""Session-state keys, the frame guard and the models a page can use.

Every ``st.session_state`` key the app uses is a named constant here, so the frame, the
pages and the tests agree on them. The frame guard lets a page run without ``app.py``
(a deep link on a fresh server) by running the frame instead.
"""

from __future__ import annotations

import os
import runpy
from pathlib import Path

import streamlit as st

import mnist_net
from mnist_net.jobs import TrainingJob
from mnist_net.model_io import default_model_path
from mnist_net.registry import file_version

APP_SCRIPT = Path(__file__).resolve().parents[2] / "app.py"

# --- session-state keys --------------------------------------------------------------------
FRAME_KEY = "app_frame_ran"  # true while app.py's frame runs the page in this script run
JOB_KEY = "train_job"  # the current (or last) TrainingJob of this session
PREVIOUS_MODEL_KEY = "previous_session_model"  # the model of the job before it, for the draw page
MODEL_CHOICE_KEY = "model_choice"  # the draw page's model picker
UPLOADED_MODEL_KEY = "uploaded_model"  # (file_id, model) of the last uploaded model file
CANVAS_GENERATION_KEY = "canvas_generation"  # unused since Clear keeps the canvas mounted (pages.ui.canvas)
CANVAS_KEY = "canvas"  # the drawing canvas (one key for good: Undo and Clear never remount it)
DRAWING_KEY = "drawing"  # pages.ui.canvas.Drawing: the strokes and what the network reads in them
DIGIT_UPLOAD_GENERATION_KEY = "digit_upload_generation"  # each upload empties the uploader (a new key)
UPLOADED_DIGIT_KEY = "uploaded_digit"  # (file name, image array) of the last picture taken
UPLOAD_PROBLEM_KEY = "digit_upload_problem"  # (file name, reason) of the last refused picture
STROKE_WIDTH_KEY = "stroke_width"
INPUT_MODE_KEY = "input_mode"
# Test seam: AppTest cannot draw on the canvas, so a test may put an (H, W, 4) RGBA array here.
INJECTED_CANVAS_KEY = "injected_canvas_image"
SESSION_MODEL_CHOICE = "session"  # the picker's value for "the model trained in this session"


def run_inside_frame() -> None:
    """Call first in every page: if Streamlit ran the page without app.py, run the frame instead.

    Streamlit runs a folder called ``pages/`` as an old-style multipage app until
    ``st.navigation`` has run once in the process (and under AppTest, on every run); then a
    page runs bare. The frame runs this page inside itself, and the bare run stops here.
    """
    if not st.session_state.get(FRAME_KEY):
        runpy.run_path(str(APP_SCRIPT))
        st.stop()


def training_job() -> TrainingJob | None:
    return st.session_state.get(JOB_KEY)


def training_is_running() -> bool:
    job = training_job()
    return job is not None and job.snapshot().running


def session_model() -> mnist_net.MLP | None:
    """The model trained on the Train page in this session (the latest finished one)."""
    job = training_job()
    if job is not None and job.model is not None:
        return job.model
    return st.session_state.get(PREVIOUS_MODEL_KEY)


def start_training(job: TrainingJob) -> None:
    """Make ``job`` the session's run, keeping the last run's model for the draw page."""
    previous = training_job()
    if previous is not None and previous.model is not None:
        st.session_state[PREVIOUS_MODEL_KEY] = previous.model
    st.session_state[JOB_KEY] = job.start()


@st.cache_resource(show_spinner=False, max_entries=16)
def _model_from_file(path: str, version: tuple[int, ...]) -> mnist_net.MLP:
    """A model file, loaded once per server per version of the file (``registry.file_version``). Read-only."""
    return mnist_net.load_model(path)


def load_file_model(path: Path) -> mnist_net.MLP:
    """A model file through the server-wide cache; ModelFileError if it is not a valid model."""
    try:
        version = file_version(path.stat())
    except OSError:
        version = ()  # load_model reports the missing file with its own message
    return _model_from_file(str(path), version)


def default_model() -> mnist_net.MLP:
    return load_file_model(default_model_path())


def uploaded_model(file) -> mnist_net.MLP:
    """Load an uploaded model file safely, once per upload; ModelFileError if it is not a model."""
    cached = st.session_state.get(UPLOADED_MODEL_KEY)
    if cached is not None and cached[0] == file.file_id:
        return cached[1]
    model = mnist_net.model_from_bytes(file.getvalue())
    st.session_state[UPLOADED_MODEL_KEY] = (file.file_id, model)
    return model


def get_mnist() -> mnist_net.Mnist:
    """MNIST, loaded once per server (see ``_mnist``); MnistError if it cannot be found or downloaded."""
    return _mnist(os.environ.get("MNIST_DIR", ""))


@st.cache_resource(show_spinner=False)
def _mnist(mnist_dir: str) -> mnist_net.Mnist:
    """The data set; ``mnist_dir`` (the MNIST_DIR setting) is only the cache key."""
    return mnist_net.load_mnist(progress=False)
