"""The user's own digits in the app: the session's digit set, the draw page's "Right" / "No, it's
a ..." feedback, collect mode's steps, the My digits grid and set files, and the teach picker.

The set is a ``mnist_net.digitset.DigitSet`` (plain arrays: inputs as ``canvas_to_input`` makes
them, labels, small pictures, times) kept in session state (``state.MY_DIGITS_KEY``), so it
outlives page switches, mode switches and Clear; it lives as long as the browser tab's session
(a reload starts a new one), which is why My digits offers it as a file. A digit taken from the
canvas is its latest reported picture (``pages.ui.canvas``); taking one clears the canvas for
the next, and never takes the same picture twice (the canvas must report again first).
The callbacks here change session state only; the pages draw. No maths here.
Non-goals: keeping sets on the server, sharing them between users.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import streamlit as st

from mnist_net.digitset import DigitSet, DigitSetError, digit_set_from_bytes, thumbnail_from_canvas
from mnist_net.model_io import default_model_path
from mnist_net.registry import list_models
from mnist_net.runs import FINE_TUNE_RUN
from pages.ui import canvas, state

MAX_ROUNDS = 10  # collect mode: ten rounds are 100 digits, more than a fine-tune needs
MIN_PER_CLASS = 2  # digits of a class before one is kept aside to test on (runs: a third of each, from 2)


def my_digits() -> DigitSet:
    """The session's digit set (empty at first)."""
    digits = st.session_state.get(state.MY_DIGITS_KEY)
    if digits is None:
        digits = st.session_state[state.MY_DIGITS_KEY] = DigitSet.empty()
    return digits


def set_my_digits(digits: DigitSet) -> None:
    st.session_state[state.MY_DIGITS_KEY] = digits


# --- taking the drawing on the canvas ------------------------------------------------------------


def take_drawing(label: int) -> bool:
    """Add the canvas's picture to the set as ``label`` and clear the canvas; whether it was taken.

    Not taken when there is no digit to read, or when the canvas has not reported since the last
    Undo or Clear (its picture is then one already taken, or about to go).
    """
    drawing = canvas.latest_drawing()
    steps = drawing.shown_steps
    if drawing.waiting or steps is None or steps.input is None or drawing.shown_picture is None:
        return False
    try:
        digits = my_digits().add(steps.input, int(label), thumbnail_from_canvas(drawing.shown_picture), time.time())
    except DigitSetError as e:
        st.session_state[state.ADDED_NOTE_KEY] = (None, str(e))
        return False
    set_my_digits(digits)
    drawing.clear()
    st.session_state[state.ADDED_NOTE_KEY] = (int(label), len(digits))
    return True


def confirm_right(label: int) -> None:
    """The "Right" button: the network's answer ``label`` is what the user drew."""
    take_drawing(label)


def correct_to_chosen() -> None:
    """The "No, it's a ..." buttons: the digit the user picked is what they drew."""
    label = st.session_state.get(state.FEEDBACK_DIGIT_KEY)
    st.session_state[state.FEEDBACK_DIGIT_KEY] = None  # ready for the next digit
    if label is not None:
        take_drawing(int(label))


# --- collect mode ---------------------------------------------------------------------------------


@dataclass
class Collect:
    """Collect mode: ask for 0, 1, ..., 9 in turn, ``rounds`` times. Plain data, one per session."""

    rounds: int
    step: int = 0  # steps done (taken or skipped)
    taken: list[float | None] = field(default_factory=list)  # per step done: the digit's time, None if skipped

    @property
    def total(self) -> int:
        return 10 * self.rounds

    @property
    def done(self) -> bool:
        return self.step >= self.total

    @property
    def asked(self) -> int:
        """The digit asked for now."""
        return self.step % 10

    @property
    def round(self) -> int:
        """The round of the digit asked for now, from 1."""
        return min(self.step, self.total - 1) // 10 + 1

    def record(self, when: float | None) -> None:
        """The asked digit was taken (at ``when``) or skipped (None): ask for the next."""
        self.taken.append(when)
        self.step += 1

    def back(self) -> float | None:
        """Go back one step; the time of the digit that step took (to take out of the set), or None."""
        if not self.taken:
            return None
        self.step -= 1
        return self.taken.pop()


def collecting() -> Collect | None:
    return st.session_state.get(state.COLLECT_KEY)


def start_collecting(rounds: int) -> None:
    """Start collect mode on a clean canvas (what was drawn before is not a digit it asked for)."""
    st.session_state[state.COLLECT_KEY] = Collect(max(1, min(MAX_ROUNDS, int(rounds))))
    st.session_state.pop(state.COLLECT_NOTE_KEY, None)
    canvas.latest_drawing().clear()


def collect_next() -> None:
    """ "Next": take the drawing as the digit asked for, and ask for the next one."""
    task = collecting()
    if task is None or task.done:
        return
    if take_drawing(task.asked):
        task.record(float(my_digits().timestamps[-1]))
        st.session_state.pop(state.COLLECT_NOTE_KEY, None)
    else:
        note = st.session_state.get(state.ADDED_NOTE_KEY)
        problem = note[1] if note and note[0] is None else None
        st.session_state[state.COLLECT_NOTE_KEY] = problem or f"Draw a {task.asked} first (or skip it)."


def collect_skip() -> None:
    task = collecting()
    if task is not None and not task.done:
        task.record(None)
        st.session_state.pop(state.COLLECT_NOTE_KEY, None)
        canvas.latest_drawing().clear()


def collect_back() -> None:
    """ "Undo last": ask again for the digit before, taking it out of the set if it was taken."""
    task = collecting()
    if task is None:
        return
    when = task.back()
    st.session_state.pop(state.COLLECT_NOTE_KEY, None)
    if when is not None:
        digits = my_digits()
        hits = np.flatnonzero(digits.timestamps == when)
        if len(hits):
            set_my_digits(digits.remove(int(hits[-1])))


def stop_collecting() -> None:
    st.session_state[state.COLLECT_KEY] = None
    st.session_state.pop(state.COLLECT_NOTE_KEY, None)


# --- the My digits page's actions -------------------------------------------------------------------


def remove_digit(index: int, when: float) -> None:
    """Delete digit ``index`` if it is still the one shown (the same time): a stale click does nothing."""
    digits = my_digits()
    if 0 <= index < len(digits) and digits.timestamps[index] == when:
        set_my_digits(digits.remove(index))


def clear_all() -> None:
    set_my_digits(DigitSet.empty())
    task = collecting()
    if task is not None:  # its "undo last" would point at digits that are gone
        task.taken = [None] * len(task.taken)


def set_upload_key() -> str:
    return f"digit_set_upload_{st.session_state.get(state.SET_UPLOAD_GENERATION_KEY, 0)}"


def take_set_upload() -> None:
    """Uploader callback: read the set file (or say why not) and empty the uploader; nothing mine changes yet."""
    file = st.session_state.get(set_upload_key())
    st.session_state[state.SET_UPLOAD_GENERATION_KEY] = st.session_state.get(state.SET_UPLOAD_GENERATION_KEY, 0) + 1
    if file is None:
        return
    try:
        uploaded = digit_set_from_bytes(file.getvalue())
    except DigitSetError as e:
        st.session_state.pop(state.PENDING_SET_KEY, None)
        st.session_state[state.SET_UPLOAD_PROBLEM_KEY] = (file.name, str(e))
        return
    st.session_state.pop(state.SET_UPLOAD_PROBLEM_KEY, None)
    if len(my_digits()) == 0:  # nothing to lose: take it at once
        set_my_digits(uploaded)
        st.session_state.pop(state.PENDING_SET_KEY, None)
    else:
        st.session_state[state.PENDING_SET_KEY] = (file.name, uploaded)


def add_pending() -> None:
    pending = st.session_state.pop(state.PENDING_SET_KEY, None)
    if pending is None:
        return
    try:
        set_my_digits(my_digits().extend(pending[1]))
    except DigitSetError as e:
        st.session_state[state.SET_UPLOAD_PROBLEM_KEY] = (pending[0], f"adding it to yours: {e}")
        st.session_state[state.PENDING_SET_KEY] = pending  # still there, to replace with or drop


def replace_with_pending() -> None:
    pending = st.session_state.pop(state.PENDING_SET_KEY, None)
    if pending is not None:
        clear_all()
        set_my_digits(pending[1])


def drop_pending() -> None:
    st.session_state.pop(state.PENDING_SET_KEY, None)


# --- which model to teach ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelChoice:
    label: str
    model_bytes: Callable[[], bytes]  # the model file's bytes, read when teaching starts


def teach_choices() -> dict[str, ModelChoice]:
    """The models a user can teach: the shipped one, the saved ones, and their own runs' models."""
    choices = {"default": ModelChoice("Shipped default model", lambda: default_model_path().read_bytes())}
    for saved in list_models():
        choices[f"file:{saved.name}"] = ModelChoice(f"Saved: {saved.name}", lambda p=saved.path: Path(p).read_bytes())
    uid = state.known_user_id()
    if uid is not None:
        registry = state.run_registry()
        for view in registry.runs(uid):
            if view.has_model and view.kept_path is None:  # a kept run is listed as its file already
                choices[f"run:{view.id}"] = ModelChoice(
                    f"Your run: {view.label}", lambda run_id=view.id: _run_model_bytes(uid, run_id)
                )
    return choices


def _run_model_bytes(uid: str, run_id: str) -> bytes:
    job = state.run_registry().job(uid, run_id)
    data = None if job is None else job.model_bytes
    if not data:
        raise FileNotFoundError("that run's model is gone (the run was removed from your list)")
    return data


def draw_page_choice(choices: dict[str, ModelChoice]) -> str:
    """The picker's start: the model the draw page uses, where it is one of ``choices``."""
    on_draw_page = st.session_state.get(state.MODEL_CHOICE_KEY)
    if on_draw_page in choices:
        return on_draw_page
    used = st.session_state.get(state.USED_RUN_KEY)
    if on_draw_page == state.SESSION_MODEL_CHOICE and f"run:{used}" in choices:
        return f"run:{used}"
    return "default"


def teach_problem(mine: DigitSet) -> str | None:
    """Why "Teach" cannot start with these digits (None: it can)."""
    if len(mine) == 0:
        return "Collect some digits first: collect mode on the Draw page gives 30 in about two minutes."
    return None


def teach_warning(mine: DigitSet) -> str | None:
    """What teaching these digits cannot show (None: nothing to say)."""
    counts = mine.counts()
    if len(mine) and not (counts >= MIN_PER_CLASS).any():
        return (
            f"With fewer than {MIN_PER_CLASS} of each digit, none can be kept aside to test on: it will learn "
            "from all of them, and the figures will be on MNIST only. Collect mode gives 3 of each."
        )
    return None


def latest_teach_run(uid: str | None) -> str | None:
    """The user's newest fine-tune run (one started before a reload, say), or None."""
    if uid is None:
        return None
    return next((v.id for v in state.run_registry().runs(uid) if v.kind == FINE_TUNE_RUN), None)
