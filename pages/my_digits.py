"""My digits page: the digits this session collected, by class; their file; teaching the network them.

The set lives in session state (``pages.ui.digits``): it survives other pages and Clear, and
goes with the session (a reload), so the page offers it as a ``.npz`` file to download and to
upload again (checked by ``mnist_net.digitset``; an upload never replaces what is here unless
the user says so). "Teach the network" starts a fine-tune as a run in the server's
``RunRegistry`` (a child process, like training: the page polls it, Stop stops it), then
shows its before/after figures on the held-out part of the user's digits and on the MNIST
test set, the digits that flipped, and keep / use, as on the train page. No maths here.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import streamlit as st

import mnist_net
from mnist_net.digitset import MAX_FILE_BYTES, DigitSet, digit_set_to_bytes
from mnist_net.jobs import CANCELLED, DIVERGED, FAILED, QUEUED, STOPPED
from mnist_net.runs import RunRefused, RunView
from pages.ui import digits, state
from pages.ui.style import MY_DIGITS_CSS, plain

state.run_inside_frame()

THUMB = 48  # pixels a digit is shown at in the grid (its picture is 56x56)
POLL_SECONDS = 1.0
# The uploader's MB are 10**6 bytes: it refuses a bit below digitset's own cap, never above.
SET_UPLOAD_LIMIT_MB = MAX_FILE_BYTES // 2**20


def show_grid(mine: DigitSet) -> None:
    """The digits as ten rows, one per class, each digit with its delete button."""
    for label in range(10):
        members = np.flatnonzero(mine.labels == label)
        with st.container(horizontal=True, key=f"class_{label}", gap="small", vertical_alignment="center"):
            st.markdown(f"**{label}**  \n{len(members)}", width=40)
            if not len(members):
                st.caption("none yet")
            for i in members:
                with st.container(width=THUMB + 8, gap=None, key=f"my_digit_{i}"):
                    st.image(mine.thumbnails[i], width=THUMB)
                    st.button(
                        "",
                        icon=":material/close:",
                        key=f"remove_digit_{i}",
                        type="tertiary",  # no help tooltip: Streamlit 1.67 then draws the button twice
                        on_click=digits.remove_digit,
                        args=(int(i), float(mine.timestamps[i])),
                    )


def show_files(mine: DigitSet) -> None:
    """Download, upload (add to mine or replace them), clear all."""
    st.subheader("Keep them, or bring them back")
    st.caption(
        "Your digits live in this browser tab until you reload or close it. Download them to keep them, "
        "and upload the file again later (or on another computer)."
    )
    left, middle = st.columns(2, vertical_alignment="bottom")
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
    left.download_button(
        f"Download my {len(mine)} digits (.npz)",
        data=digit_set_to_bytes(mine) if len(mine) else b"",
        file_name=f"my-digits-{stamp}.npz",
        mime="application/octet-stream",
        icon=":material/download:",
        key="download_digits",
        disabled=not len(mine),
        width="stretch",
    )
    with middle.popover("Delete all…", icon=":material/delete_sweep:", disabled=not len(mine), width="stretch"):
        st.markdown(f"Delete all **{len(mine)}** of your digits? Download them first to keep a copy.")
        st.button("Yes, delete them all", type="primary", key="clear_all_digits", on_click=digits.clear_all)
    st.file_uploader(
        "Upload a digit set (.npz, from Download)",
        type=["npz"],
        key=digits.set_upload_key(),
        on_change=digits.take_set_upload,
        max_upload_size=SET_UPLOAD_LIMIT_MB,
    )
    problem = st.session_state.get(state.SET_UPLOAD_PROBLEM_KEY)
    if problem is not None:
        st.error(
            f"Could not use **{plain(problem[0])}**: {plain(problem[1])} Your digits are unchanged.",
            icon=":material/error:",
        )
    pending = st.session_state.get(state.PENDING_SET_KEY)
    if pending is not None:
        name, theirs = pending
        st.info(
            f"**{plain(name)}** holds {len(theirs)} digits. Add them to your {len(mine)}, or replace yours with them?",
            icon=":material/upload_file:",
        )
        with st.container(horizontal=True):
            st.button(f"Add them (to {len(mine) + len(theirs)})", key="add_uploaded", on_click=digits.add_pending)
            st.button("Replace mine", key="replace_with_uploaded", on_click=digits.replace_with_pending)
            st.button("Cancel", key="drop_uploaded", on_click=digits.drop_pending)


# --- teaching --------------------------------------------------------------------------------------


def start_teaching(mine: DigitSet, choice: digits.ModelChoice) -> None:
    """Submit the fine-tune of ``choice`` on ``mine``; says why not if it cannot start."""
    registry = state.run_registry()
    try:
        base = choice.model_bytes()
        folder = state.mnist_folder()
        run_id = registry.submit_fine_tune(state.user_id(), base, choice.label, mine, folder)
    except (RunRefused, ValueError, OSError, mnist_net.MnistError) as e:
        st.error(f"Could not start teaching: {plain(e)}", icon=":material/block:")
        return
    st.session_state.setdefault(state.TEACH_SETS_KEY, {})[run_id] = mine
    st.session_state[state.TEACH_RUN_KEY] = run_id
    st.rerun()


def teach_form(mine: DigitSet) -> None:
    choices = digits.teach_choices()
    if st.session_state.get(state.TEACH_MODEL_KEY) not in choices:
        st.session_state[state.TEACH_MODEL_KEY] = digits.draw_page_choice(choices)
    key = st.selectbox(
        "Which network learns your handwriting",
        list(choices),
        format_func=lambda k: choices[k].label,
        key=state.TEACH_MODEL_KEY,
    )
    st.caption(
        "It learns from most of your digits and keeps some of each digit aside to test on, with MNIST digits "
        "mixed in so it does not forget them. The network you pick stays as it is: you get a new one."
    )
    problem = digits.teach_problem(mine)
    if st.button(
        "Teach it my handwriting",
        type="primary",
        icon=":material/school:",
        key="teach",
        disabled=problem is not None,
    ):
        start_teaching(mine, choices[key])
    if problem is not None:
        st.caption(plain(problem))
    elif (warning := digits.teach_warning(mine)) is not None:
        st.caption(plain(warning))


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def show_progress(view: RunView) -> None:
    snap = view.snapshot
    if snap.status == QUEUED:
        ahead = view.queue_position or 0
        text = f"Waiting for a free slot ({ahead} ahead)…" if ahead else "Waiting for a free slot…"
    elif snap.stopping:
        text = "Stopping, then testing the network as it is…"
    else:
        eta = snap.eta
        text = "Learning your handwriting…" + (f" about {eta:.0f} s left" if eta is not None else "")
    bar, button = st.columns([5, 1], vertical_alignment="center")
    bar.progress(snap.fraction_done, text=text)
    button.button(
        "Stop",
        icon=":material/stop_circle:",
        key="stop_teaching",
        on_click=state.run_registry().stop,
        args=(state.user_id(), view.id),
        width="stretch",
    )
    st.caption("You can switch pages meanwhile: it keeps going, and this page shows the result when you come back.")


def show_thumbnails(given: DigitSet | None, indices: list[int], key: str) -> None:
    if given is None:
        st.caption(f"{len(indices)} digits (their pictures were in the session that started this run).")
        return
    with st.container(horizontal=True, key=key, gap="small"):
        for i in indices:
            if 0 <= i < len(given):
                st.image(given.thumbnails[i], width=THUMB, caption=str(int(given.labels[i])))


def right_of(accuracy: float | None, n: int) -> str:
    """ "90.0% (9 of 10)" for an accuracy on n digits."""
    return "–" if accuracy is None else f"{accuracy:.1%} ({round(accuracy * n)} of {n})"


def points(before: float | None, after: float | None, digits_after_point: int) -> str | None:
    return None if before is None or after is None else f"{100 * (after - before):+.{digits_after_point}f} points"


def show_tuning_result(view: RunView) -> None:
    tuning = view.tuning or {}
    snap = view.snapshot
    if snap.status == STOPPED:
        st.warning("Stopped early: the figures are for the network as it was then.", icon=":material/stop_circle:")
    held_before, held_after = tuning.get("held_out_before"), tuning.get("held_out_after")
    mnist_before, mnist_after = tuning.get("mnist_before"), tuning.get("mnist_after")
    n_train, n_held = int(tuning.get("n_train", 0)), int(tuning.get("n_held_out", 0))
    with st.container(key="teach_result"):
        st.success(
            f"Taught {plain(view.based_on or 'the network')} on {n_train} of your digits"
            + (f"; tested on {n_held} others it never saw." if n_held else "."),
            icon=":material/check_circle:",
        )
        if snap.note:
            st.caption(plain(snap.note))
        left, right = st.columns(2)
        if n_held:
            left.metric(
                f"Your {n_held} held-out digits",
                f"{held_after:.0%}" if held_after is not None else "–",
                points(held_before, held_after, 0),
            )
        right.metric(
            "MNIST test (10,000 digits)",
            f"{mnist_after:.2%}" if mnist_after is not None else "–",
            points(mnist_before, mnist_after, 2),
            delta_color="normal",
        )
        before_after = [f"MNIST test {percent(mnist_before)} → {percent(mnist_after)}"]
        if n_held:
            before_after.insert(
                0, f"your held-out digits {right_of(held_before, n_held)} → {right_of(held_after, n_held)}"
            )
        st.caption("Before → after: " + "; ".join(before_after) + ".")
        given = st.session_state.get(state.TEACH_SETS_KEY, {}).get(view.id)
        flipped = tuning.get("flipped") or {}
        now_right, now_wrong = list(flipped.get("wrong_to_right", [])), list(flipped.get("right_to_wrong", []))
        if now_right:
            st.markdown(f"**Now read right** ({len(now_right)}), wrong before:")
            show_thumbnails(given, now_right, "flipped_right")
        if now_wrong:
            st.markdown(f"**Now read wrong** ({len(now_wrong)}), right before:")
            show_thumbnails(given, now_wrong, "flipped_wrong")
        if n_held and not now_right and not now_wrong:
            st.caption("None of your held-out digits changed from wrong to right or back.")
    show_keep(view)


def show_keep(view: RunView) -> None:
    registry, uid = state.run_registry(), state.user_id()
    if view.kept_path is None:
        st.caption("This network lives only in its run until you keep it; kept ones are listed on the Draw page.")
        name_col, keep_col = st.columns([3, 1], vertical_alignment="bottom")
        name = name_col.text_input("Name", value="my handwriting", key=f"teach_name_{view.id}", max_chars=60)
        if keep_col.button(
            "Keep this model", type="primary", icon=":material/save:", key="keep_taught", width="stretch"
        ):
            try:
                registry.keep(uid, view.id, name)
            except RunRefused as e:
                st.error(str(e), icon=":material/error:")
            else:
                st.rerun()
    else:
        st.caption(f"Kept in the models folder as `{plain(view.kept_path.name)}`: the Draw page lists it.")
    if st.button("Use it on the Draw page", icon=":material/draw:", key="use_taught"):
        state.use_run_model(view.id)
        if view.kept_path is not None:
            st.session_state[state.MODEL_CHOICE_KEY] = f"file:{view.kept_path.name}"
        st.switch_page("pages/draw.py")


def show_teach_run(view: RunView) -> None:
    snap = view.snapshot
    if snap.running:
        show_progress(view)
    elif snap.status in (FAILED, DIVERGED):
        st.error(f"Teaching failed: {plain(snap.error or snap.status)}", icon=":material/error:")
    elif snap.status == CANCELLED:
        st.info("Stopped before it started.", icon=":material/block:")
    else:
        show_tuning_result(view)


st.html(MY_DIGITS_CSS)
st.title("My digits")
mine = digits.my_digits()
counts = mine.counts()
if len(mine):
    st.caption(f"{len(mine)} digits: " + " · ".join(f"{d}: {int(n)}" for d, n in enumerate(counts)))
else:
    st.info(
        "No digits yet. On the Draw page, tell the network after each guess whether it was right, "
        "or use **Collect my digits** to draw each digit in turn.",
        icon=":material/draw:",
    )
    st.page_link("pages/draw.py", label="Go to the Draw page", icon=":material/draw:")

st.subheader("Teach the network")
state.remember_user()  # the browser keeps its id, so a teaching run is found again after a reload
registry = state.run_registry()
uid = state.known_user_id()
if state.TEACH_RUN_KEY not in st.session_state:  # a new session (a reload): show the user's latest teaching
    st.session_state[state.TEACH_RUN_KEY] = digits.latest_teach_run(uid)
run_id = st.session_state.get(state.TEACH_RUN_KEY)
shown = None if run_id is None or uid is None else registry.get(uid, run_id)
if shown is None:
    teach_form(mine)
else:
    running = shown.snapshot.running

    @st.fragment(run_every=POLL_SECONDS if running else None)
    def teach_panel() -> None:
        view = registry.get(state.user_id(), shown.id)
        if view is None:
            st.session_state[state.TEACH_RUN_KEY] = None
            st.rerun(scope="app")
        assert view is not None
        if view.snapshot.running != running:
            st.rerun(scope="app")  # it ended (or was restarted): redraw the page with the result
        show_teach_run(view)

    teach_panel()
    if not running:
        st.button(
            "Teach again",
            icon=":material/refresh:",
            key="teach_again",
            on_click=lambda: st.session_state.update({state.TEACH_RUN_KEY: None}),
        )

if len(mine):
    st.subheader("Your digits by class")
    show_grid(mine)
show_files(mine)
