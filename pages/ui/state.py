"""Session-state keys, the frame guard, who the user is, their runs, and the models a page can use.

Every ``st.session_state`` key the app uses is a named constant here, so the frame, the
pages and the tests agree on them. The frame guard lets a page run without ``app.py``
(a deep link on a fresh server) by running the frame instead.

Who the user is: a Streamlit session ends on every reload, so the user's identity lives in
the browser, as a cookie holding a random id (``mnist_net.runs.new_user_id``, 192 bits).
A cookie rather than the URL's query string: every tab of the browser sends it, a reload
keeps it, and it is never shown, so a URL projected for a class or pasted into a chat does
not hand out the right to stop someone's run. The server reads it from the request
(``st.context.cookies``) and accepts only the shape of its own ids; the page sets it with a
two-line script (``remember_user``). The runs themselves live in one server-wide
``RunRegistry`` (``run_registry``), which only ever shows a user their own runs.
"""

from __future__ import annotations

import os
import runpy
from pathlib import Path

import streamlit as st

import mnist_net
from mnist_net.config import TrainConfig
from mnist_net.data import find_mnist
from mnist_net.jobs import TrainingJob
from mnist_net.model_io import default_model_path
from mnist_net.novelty import model_calibration
from mnist_net.registry import file_version
from mnist_net.run_store import RunStore, default_folder
from mnist_net.runs import RunRegistry, RunView, new_user_id, valid_user_id

APP_SCRIPT = Path(__file__).resolve().parents[2] / "app.py"

# --- session-state keys --------------------------------------------------------------------
FRAME_KEY = "app_frame_ran"  # true while app.py's frame runs the page in this script run
JOB_KEY = "train_job"  # the TrainingJob of the run the train page shows (kept in step by show_run)
PREVIOUS_MODEL_KEY = "previous_session_model"  # a model set by older code; the draw page's last resort
USER_ID_KEY = "user_id"  # this browser's user id (from its cookie, or made in this session)
SELECTED_RUN_KEY = "selected_run"  # id of the run the train page shows (None: the newest)
USED_RUN_KEY = "used_run"  # id of the run whose model the draw page uses ("use this model")
MODEL_CHOICE_KEY = "model_choice"  # the draw page's model picker
UPLOADED_MODEL_KEY = "uploaded_model"  # (file_id, model) of the last uploaded model file
CANVAS_GENERATION_KEY = "canvas_generation"  # unused since Clear keeps the canvas mounted (pages.ui.canvas)
CANVAS_KEY = "canvas"  # the drawing canvas (one key for good: Undo and Clear never remount it)
DRAWING_KEY = "drawing"  # pages.ui.canvas.Drawing: the strokes and what the network reads in them
DIGIT_UPLOAD_GENERATION_KEY = "digit_upload_generation"  # each upload empties the uploader (a new key)
UPLOADED_DIGIT_KEY = "uploaded_digit"  # (file name, image array) of the last picture taken
UPLOAD_PROBLEM_KEY = "digit_upload_problem"  # (file name, reason) of the last refused picture
STROKE_WIDTH_KEY = "stroke_width"
COMPARE_KEY = "compare_with"  # the draw page's "compare two models": the other model's label
TEST_PROBABILITIES_KEY = "test_probabilities"  # (run id, (10000, 10) its model's test probabilities)
INPUT_MODE_KEY = "input_mode"
# Test seam: AppTest cannot draw on the canvas, so a test may put an (H, W, 4) RGBA array here.
INJECTED_CANVAS_KEY = "injected_canvas_image"
# The personal digit set (pages.ui.digits): this session's DigitSet and what goes with it.
MY_DIGITS_KEY = "my_digits"  # mnist_net.digitset.DigitSet, the digits this session collected
ADDED_NOTE_KEY = "my_digits_added"  # (label, how many now) of the digit last added from the draw page
COLLECT_KEY = "collect"  # pages.ui.digits.Collect: collect mode's rounds and steps (None: not collecting)
COLLECT_NOTE_KEY = "collect_note"  # a one-line message for collect mode (e.g. "draw it first")
FEEDBACK_DIGIT_KEY = "feedback_digit"  # the draw page's "No, it's a ..." digit buttons
SET_UPLOAD_GENERATION_KEY = "digit_set_upload_generation"  # each set upload empties its uploader (a new key)
PENDING_SET_KEY = "pending_digit_set"  # (file name, DigitSet) uploaded, waiting for "add" or "replace"
SET_UPLOAD_PROBLEM_KEY = "digit_set_upload_problem"  # (file name, reason) of the last refused set file
TEACH_RUN_KEY = "teach_run"  # id of the fine-tune run the My digits page shows (None: none yet)
TEACH_SETS_KEY = "teach_sets"  # run id -> the DigitSet it was given (its "flipped" indices point into it)
TEACH_MODEL_KEY = "teach_model"  # the My digits page's model picker
SESSION_MODEL_CHOICE = "session"  # the picker's value for "the model trained in this session"
USER_COOKIE = "mnist_net_user"  # the browser cookie holding the user id
COOKIE_DAYS = 365


def run_inside_frame() -> None:
    """Call first in every page: if Streamlit ran the page without app.py, run the frame instead.

    Streamlit runs a folder called ``pages/`` as an old-style multipage app until
    ``st.navigation`` has run once in the process (and under AppTest, on every run); then a
    page runs bare. The frame runs this page inside itself, and the bare run stops here.
    """
    if not st.session_state.get(FRAME_KEY):
        runpy.run_path(str(APP_SCRIPT))
        st.stop()


# --- who the user is, and their runs -------------------------------------------------------
@st.cache_resource(show_spinner=False)
def run_registry() -> RunRegistry:
    """The server's one registry of training runs (shared by every session; thread-safe). Finished
    runs are kept in a scratch folder (``run_store.default_folder()``), so a restart loses none; runs
    still training when the server shuts down are stopped and kept there too."""
    return RunRegistry(store=RunStore(default_folder()), save_on_exit=True)


def known_user_id() -> str | None:
    """This browser's user id if it has one already (this session's, else its cookie's), else None."""
    uid = st.session_state.get(USER_ID_KEY)
    if valid_user_id(uid):
        return uid
    cookie = st.context.cookies.get(USER_COOKIE)
    if valid_user_id(cookie):
        st.session_state[USER_ID_KEY] = cookie
        return cookie
    return None


def user_id() -> str:
    """This browser's user id, made now if it has none (``remember_user`` then stores it in the browser)."""
    uid = known_user_id()
    if uid is None:
        uid = st.session_state[USER_ID_KEY] = new_user_id()
    return uid


def remember_user() -> None:
    """Store the user id in a browser cookie if the browser did not send it (first visit).

    A first-party cookie for this site's paths, a year long, never sent to other sites
    (SameSite=Strict), Secure behind https. The id is ours (URL-safe characters only).
    """
    uid = user_id()
    if st.context.cookies.get(USER_COOKIE) == uid:
        return
    script = (
        f"<script>document.cookie = '{USER_COOKIE}={uid}; path=/; max-age={COOKIE_DAYS * 86400}; samesite=strict'"
        " + (location.protocol === 'https:' ? '; secure' : '');</script>"
    )
    st.html(script, unsafe_allow_javascript=True, width="content")


def user_runs() -> list[RunView]:
    """The user's runs, newest first (none before they have an id)."""
    uid = known_user_id()
    return [] if uid is None else run_registry().runs(uid)


def shown_run(runs: list[RunView]) -> RunView | None:
    """The run the train page shows: the one picked with Watch, else the newest. Keeps JOB_KEY in step."""
    chosen = st.session_state.get(SELECTED_RUN_KEY)
    view = next((v for v in runs if v.id == chosen), None)
    if view is None:  # none picked, or the picked one is gone: the newest
        st.session_state[SELECTED_RUN_KEY] = None
        view = runs[0] if runs else None
    uid = known_user_id()
    job = None if view is None or uid is None else run_registry().job(uid, view.id)
    if job is None:
        st.session_state.pop(JOB_KEY, None)
    else:
        st.session_state[JOB_KEY] = job
    return view


def show_run(run_id: str | None) -> None:
    """Make the train page show this run (a Watch button's callback)."""
    st.session_state[SELECTED_RUN_KEY] = run_id


def training_job() -> TrainingJob | None:
    """The job of the run the train page shows (or last showed) in this session."""
    return st.session_state.get(JOB_KEY)


def training_is_running() -> bool:
    """Whether this user has a run training or waiting (in any tab)."""
    return any(v.snapshot.running for v in user_runs())


def _session_run() -> tuple[RunView, mnist_net.MLP] | None:
    """The run behind the draw page's "your run" model: the one picked with "use this model",
    else the user's newest run that has a model (runs outlive the session: a reload keeps them)."""
    uid = known_user_id()
    if uid is None:
        return None
    registry = run_registry()
    used = st.session_state.get(USED_RUN_KEY)
    views = registry.runs(uid)
    for view in [v for v in views if v.id == used] + [v for v in views if v.id != used]:
        model = registry.model(uid, view.id) if view.has_model else None
        if model is not None:
            return view, model
    return None


def session_model() -> mnist_net.MLP | None:
    """The draw page's model from this user's runs (``_session_run``), else one set by older code."""
    found = _session_run()
    return found[1] if found is not None else st.session_state.get(PREVIOUS_MODEL_KEY)


def session_model_label() -> str:
    """The draw page's name for ``session_model()``: the run it is, e.g. "Your run: Run 3 (93.29%)"."""
    found = _session_run()
    if found is None:
        return "Trained in this session"
    view, model = found
    accuracy = model.metrics_.get("test_accuracy")
    return f"Your run: {view.label}" + (f" ({accuracy:.2%})" if accuracy is not None else "")


def use_run_model(run_id: str) -> None:
    """Make this run's model the draw page's model."""
    st.session_state[USED_RUN_KEY] = run_id
    st.session_state[MODEL_CHOICE_KEY] = SESSION_MODEL_CHOICE


def start_training(config: TrainConfig, mnist_dir: str) -> str:
    """Submit a run for this user and show it; returns its id. RunRefused says why it cannot start."""
    run_id = run_registry().submit(user_id(), config, mnist_dir)
    show_run(run_id)
    return run_id


@st.cache_resource(show_spinner=False, max_entries=16)
def _model_from_file(path: str, version: tuple[int, ...]) -> mnist_net.MLP:
    """A model file, loaded once per server per version of the file (``registry.file_version``). Read-only.

    Its "not a digit" threshold is computed here too (~0.1 s), not at the first stroke.
    """
    model = mnist_net.load_model(path)
    model_calibration(model)
    return model


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


def mnist_folder() -> str:
    """The folder holding the four MNIST files, downloading them first if needed; MnistError if impossible.

    Only the folder: each run's process loads and checks the files itself.
    """
    return str(find_mnist(download=True, progress=False))


def get_mnist() -> mnist_net.Mnist:
    """MNIST, loaded once per server (see ``_mnist``); MnistError if it cannot be found or downloaded."""
    return _mnist(os.environ.get("MNIST_DIR", ""))


@st.cache_resource(show_spinner=False)
def _mnist(mnist_dir: str) -> mnist_net.Mnist:
    """The data set; ``mnist_dir`` (the MNIST_DIR setting) is only the cache key."""
    return mnist_net.load_mnist(progress=False)
