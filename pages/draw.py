"""Draw page (the landing page): draw or upload a digit and see what the network thinks; say whether
it was right ("Right" / "No, it's a ..."), or collect your own digits one asked-for digit at a time.

A stroke reruns only the drawing panel (``st.fragment``: canvas, its buttons, the answer),
not the model picker with its file listing. The drawing is kept in session state
(``pages.ui.canvas``), so it is still there after another page or an upload, and it is read
again by whichever model is chosen. Drawing and upload go through the same ``mnist_net``
pipeline (``input_steps`` -> ``predict_proba`` -> ``assess``). Below the answer, "look inside"
views (``pages.ui.inside``) in expanders that run only while open. The feedback buttons and
collect mode put the drawing into the session's digit set (``pages.ui.digits``; the My digits
page shows it) and clear the canvas for the next digit. No maths here.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import streamlit as st

import mnist_net
from mnist_net.confidence import assess
from mnist_net.novelty import assess_input, several_digits
from mnist_net.preprocess import InputSteps, input_steps
from mnist_net.registry import list_models, model_facts
from mnist_net.uploads import MAX_UPLOAD_BYTES
from pages.ui import canvas, digits, state
from pages.ui.charts import enlarged, probability_chart
from pages.ui.inside import Reading, look_inside
from pages.ui.style import PREDICTION_CSS, answer_bar_html, collect_prompt, plain, prediction_html

state.run_inside_frame()

IMAGE_TYPES = ["png", "jpg", "jpeg", "gif", "bmp", "webp", "tif", "tiff"]
# The uploader's MB are 10**6 bytes: it refuses a bit below the pipeline's 20 MiB, never above.
UPLOAD_LIMIT_MB = MAX_UPLOAD_BYTES // 2**20
DRAW, COLLECT, UPLOAD = "Draw", "Collect my digits", "Upload an image"
DRAW_PROMPT = "Draw a digit from 0 to 9 in the black box: the network guesses after every stroke."
COLLECT_PROMPT = "Draw the digit asked for above: what the network reads in it shows here."
BAR_PROMPT = "Draw a digit below: the network's answer shows here."
KEEP_DRAWING = "I can't see a digit yet: keep drawing."
BAR_KEEP_DRAWING = "No digit yet: keep drawing."
UPLOAD_PROMPT = (
    f"Upload a photo or scan of one digit (PNG, JPEG, GIF, BMP, WEBP or TIFF, up to {UPLOAD_LIMIT_MB} MB): "
    "dark ink on light paper or light on dark, the network reads it like a drawing."
)


@dataclass(frozen=True)
class Chosen:
    """The model that answers, its name, and the picker's other models (label -> loader), to compare."""

    model: mnist_net.MLP | None
    label: str
    others: dict[str, Callable[[], mnist_net.MLP]]


def choose_model() -> Chosen:
    """Sidebar: pick a model and show its facts. Falls back to the shipped model on a bad upload."""
    st.subheader("Model")
    trained = state.session_model()
    saved = {f"file:{m.name}": m for m in list_models()}
    labels = {"default": "Shipped default model"}
    if trained is not None:
        labels[state.SESSION_MODEL_CHOICE] = state.session_model_label()
    labels.update({key: f"Saved: {m.name}" for key, m in saved.items()})
    labels["upload"] = "Upload a model file…"
    loaders: dict[str, Callable[[], mnist_net.MLP]] = {"default": state.default_model}
    if trained is not None:
        loaders[state.SESSION_MODEL_CHOICE] = lambda: trained
    loaders.update({key: (lambda path=m.path: state.load_file_model(path)) for key, m in saved.items()})
    uploaded = st.session_state.get(state.UPLOADED_MODEL_KEY)
    if uploaded is not None:
        loaders["upload"] = lambda: uploaded[1]
    if st.session_state.get(state.MODEL_CHOICE_KEY) not in labels:
        st.session_state[state.MODEL_CHOICE_KEY] = "default"
    choice = st.selectbox(
        "Which network guesses",
        list(labels),
        format_func=labels.get,
        key=state.MODEL_CHOICE_KEY,
        persist_state="session",
    )
    model, name = None, labels[choice]
    try:
        if choice == state.SESSION_MODEL_CHOICE:
            model = trained
        elif choice in saved:
            model = state.load_file_model(saved[choice].path)
        elif choice == "upload":
            file = st.file_uploader(
                "Model file (.pkl)",
                type=["pkl"],
                key="model_upload",
                help="A model saved by this app or by `python -m mnist_net train`.",
            )
            if file is None:
                st.caption("No file yet: using the shipped default model meanwhile.")
            else:
                name = file.name
                model = state.uploaded_model(file)
                st.success(f"Loaded {plain(file.name)}", icon=":material/check_circle:")
    except mnist_net.ModelFileError as e:
        st.error(
            f"**{plain(name)}** could not be used: {plain(e)}. Using the shipped default model instead.",
            icon=":material/error:",
        )
    if model is None:
        try:
            model, choice, name = state.default_model(), "default", labels["default"]
        except mnist_net.ModelFileError as e:
            st.error(
                f"The shipped model could not be loaded: {plain(e)}. Train one on the Train page.",
                icon=":material/error:",
            )
            return Chosen(None, name, {})
    # Facts carry text from the file (its source, its date): shown as plain text, never as markup.
    st.markdown("  \n".join(f"**{name}:** {plain(value)}" for name, value in model_facts(model).items()))
    others = {(labels[k] if k != "upload" else "Uploaded model"): f for k, f in loaders.items() if k != choice}
    return Chosen(model, name, others)


@st.fragment
def drawing_panel(chosen: Chosen, collect: bool = False) -> None:
    """The canvas, Undo, Clear, pen width, the answer and what to do with the digit: all that a
    stroke reruns. ``collect``: collect mode (it asks for each digit in turn) instead of feedback."""
    task = digits.collecting() if collect else None
    if collect and (task is None or task.done):
        collect_start(task)
        return
    prompt = st.empty()  # collect mode's "Draw a 7", once the canvas is read
    bar = st.container(key="answer_bar")  # the answer above the canvas, on phones only (PREDICTION_CSS)
    left, right = st.columns([1, 1], gap="large")
    with left:
        drawing = canvas.digit_canvas(st.session_state.get(state.STROKE_WIDTH_KEY, 18))
        with st.container(horizontal=True, width=canvas.SIDE, key="canvas_buttons"):
            st.button("Undo", icon=":material/undo:", key="undo", on_click=canvas.undo, width="stretch")
            st.button("Clear", icon=":material/ink_eraser:", key="clear", on_click=canvas.clear, width="stretch")
        what_next = st.container(key="collect_buttons" if task is not None else "feedback", width=canvas.SIDE)
        st.slider(
            "Pen width",
            min_value=6,
            max_value=40,
            value=18,
            key=state.STROKE_WIDTH_KEY,
            persist_state="session",
            width=canvas.SIDE,
        )
    strokes, steps, picture = drawing.shown_strokes, drawing.shown_steps, drawing.shown_picture
    injected = st.session_state.get(state.INJECTED_CANVAS_KEY)
    if injected is not None and strokes == 0:
        steps, picture = input_steps(injected), injected  # AppTest: the canvas renders nothing there
    with right:
        words = DRAW_PROMPT if task is None else COLLECT_PROMPT
        proba = show_prediction(chosen.model, None if steps is None else steps.input, strokes, words, bar)
    with what_next:
        if task is not None:
            # The next digit is named only once the canvas shows its cleared drawing (see collect_prompt).
            prompt.markdown(collect_prompt_html(task, ready=not drawing.waiting), unsafe_allow_html=True)
            collect_buttons(task)
        else:
            # Only for a picture the canvas reported (not one being cleared): that is the one kept.
            confirmable = proba is not None and not drawing.waiting and drawing.shown_input is not None
            feedback(int(np.argmax(proba)) if confirmable else None)
    look_inside(reading(chosen, proba, steps, picture, drawing.stroke_inputs))


def feedback(answer: int | None) -> None:
    """ "Right" / "No, it's a ..." for the answer shown (None: nothing to confirm), and the count so far."""
    if answer is not None:
        st.button(
            f"Right, it's a {answer}",
            icon=":material/check:",
            key="feedback_right",
            on_click=digits.confirm_right,
            args=(answer,),
            width="stretch",
        )
        st.segmented_control(
            "No, it's a",
            list(range(10)),
            key=state.FEEDBACK_DIGIT_KEY,
            on_change=digits.correct_to_chosen,
            width="stretch",
            help="Keep this drawing in My digits as the digit you pick, and clear the canvas for the next.",
        )
    st.caption(added_text(just_kept=answer is None))


def added_text(just_kept: bool) -> str:
    """The count of collected digits, and (``just_kept``: before the next drawing) what the last click did."""
    note = st.session_state.get(state.ADDED_NOTE_KEY)
    count = len(digits.my_digits())
    if note is not None and note[0] is None:
        return f"Could not keep that digit: {plain(note[1])}"
    kept = f"Kept as a {note[0]}. " if note is not None and just_kept else ""
    if not count:
        return "What you tell it goes into My digits, to teach the network your handwriting."
    return f"{kept}My digits: {count} collected."


def collect_prompt_html(task: digits.Collect, ready: bool) -> str:
    return collect_prompt(task.asked, task.step + 1, task.total, task.round, task.rounds, ready)


def collect_start(task: digits.Collect | None) -> None:
    """Collect mode before it starts (or after its last digit): how many rounds, Start."""
    have = len(digits.my_digits())
    if task is not None:
        st.success(
            f"Done: {task.total} asked, {sum(t is not None for t in task.taken)} kept. You have {have} digits now.",
            icon=":material/check_circle:",
        )
        st.page_link(
            "pages/my_digits.py", label="See them in My digits, and teach the network", icon=":material/grid_view:"
        )
    st.markdown(
        "The app asks for each digit in turn, 0 to 9; you draw it and press **Next**. "
        "Three rounds (30 digits) take about two minutes and are enough to teach the network your handwriting."
    )
    with st.container(horizontal=True, vertical_alignment="bottom", key="collect_start_row"):
        rounds = st.number_input(
            "Rounds", min_value=1, max_value=digits.MAX_ROUNDS, value=3, key="collect_rounds", width=120
        )
        st.button(
            "Start collecting" if task is None else "Collect more",
            type="primary",
            icon=":material/play_arrow:",
            key="collect_start",
            on_click=digits.start_collecting,
            args=(rounds,),
        )


def collect_buttons(task: digits.Collect) -> None:
    """Next (keep the drawing as the digit asked for), Skip, Undo last, Stop; and what went wrong."""
    st.button(
        f"Next: keep it as a {task.asked}",
        type="primary",
        icon=":material/arrow_forward:",
        key="collect_next",
        on_click=digits.collect_next,
        width="stretch",
    )
    with st.container(horizontal=True, gap="small"):
        st.button("Skip", key="collect_skip", on_click=digits.collect_skip, width="stretch")
        st.button(
            "Undo last", key="collect_back", on_click=digits.collect_back, disabled=not task.taken, width="stretch"
        )
        st.button("Stop", key="collect_stop", on_click=digits.stop_collecting, width="stretch")
    note = st.session_state.get(state.COLLECT_NOTE_KEY)
    if note:
        st.caption(plain(note))


def reading(
    chosen: Chosen,
    proba: np.ndarray | None,
    steps: InputSteps | None,
    picture: np.ndarray | None,
    stroke_inputs: list | None = None,
) -> Reading | None:
    """What the look-inside views read (None: no answer to look into)."""
    if chosen.model is None or proba is None or steps is None or steps.input is None:
        return None
    return Reading(chosen.model, chosen.label, steps.input, proba, steps, picture, stroke_inputs or [], chosen.others)


def digit_upload_key() -> str:
    generation = st.session_state.get(state.DIGIT_UPLOAD_GENERATION_KEY, 0)
    return "digit_upload" if generation == 0 else f"digit_upload_{generation}"


def take_upload() -> None:
    """Uploader callback: keep the picture (or why it was refused) and empty the uploader.

    The uploader gets a new key each time, so it never lists a refused file, nor the ones the
    browser refused before (too big): the picture in use is shown below it instead.
    """
    file = st.session_state.get(digit_upload_key())
    st.session_state[state.DIGIT_UPLOAD_GENERATION_KEY] = st.session_state.get(state.DIGIT_UPLOAD_GENERATION_KEY, 0) + 1
    if file is None:
        return
    try:
        image = mnist_net.image_from_bytes(file.getvalue())
    except ValueError as e:
        st.session_state[state.UPLOAD_PROBLEM_KEY] = (file.name, str(e))
        return
    st.session_state.pop(state.UPLOAD_PROBLEM_KEY, None)
    st.session_state[state.UPLOADED_DIGIT_KEY] = (file.name, image)


def upload_panel(chosen: Chosen) -> None:
    """A picture of a digit -> the answer (the last picture taken stays until the next one)."""
    left, right = st.columns([1, 1], gap="large")
    with left:
        st.file_uploader(
            "A picture of one digit",
            type=IMAGE_TYPES,
            key=digit_upload_key(),
            max_upload_size=UPLOAD_LIMIT_MB,
            on_change=take_upload,
            help=f"Up to {UPLOAD_LIMIT_MB} MB. One digit, any size; a square-ish crop reads best.",
        )
        problem = st.session_state.get(state.UPLOAD_PROBLEM_KEY)
        if problem is not None:
            st.error(f"Could not use **{plain(problem[0])}**: {plain(problem[1])}", icon=":material/error:")
        taken = st.session_state.get(state.UPLOADED_DIGIT_KEY)
        steps = None
        if taken is not None:
            name, image = taken
            st.image(image, caption=name, width=160)
            try:
                steps = input_steps(image)
            except ValueError as e:
                st.error(f"Could not read **{plain(name)}**: {plain(e)}", icon=":material/error:")
    with right:
        proba = show_prediction(
            chosen.model,
            None if steps is None else steps.input,
            0,
            UPLOAD_PROMPT if taken is None else "I can't find a digit in that picture.",
            image=None if taken is None else taken[1],
        )
    if taken is not None:  # nothing to look into before a picture (and the page's run stays as short as before)
        look_inside(reading(chosen, proba, steps, taken[1]))


def show_prediction(
    model: mnist_net.MLP | None, x: np.ndarray | None, strokes: int, prompt: str, bar=None, image=None
) -> np.ndarray | None:
    """The answer for network input ``x`` (None: ``prompt``, or "keep drawing" after strokes).

    ``image``, when given (an upload), is also checked for several digits side by side.
    Returns the model's (10,) probabilities (None: no answer).
    """
    if x is None:
        st.info(prompt if strokes == 0 else KEEP_DRAWING, icon=":material/draw:")
        if bar is not None:
            bar.markdown(
                answer_bar_html(None, False, BAR_PROMPT if strokes == 0 else BAR_KEEP_DRAWING, strokes),
                unsafe_allow_html=True,
            )
        return None
    if model is None:
        st.warning("No model to ask: choose or train one first.", icon=":material/warning:")
        return None
    proba = model.predict_proba(x[None, :])[0]
    verdict = assess(proba)
    novelty = assess_input(x, model)
    digit = int(verdict.digit)
    sure = verdict.sure and novelty.looks_like_digit
    if not novelty.looks_like_digit:
        headline = f"That doesn't look like a digit (closest: a {digit})"
    elif verdict.sure:
        headline = f"{verdict.probability:.1%} sure"
    else:
        headline = (
            f"Not sure: a {digit} ({verdict.probability:.0%}) "
            f"or a {verdict.runner_up} ({verdict.runner_up_probability:.0%})?"
        )
    if image is not None and several_digits(image):
        st.caption("This picture seems to hold several digits: the network reads one digit at a time.")
    if bar is not None:
        bar.markdown(answer_bar_html(digit, sure, headline, strokes), unsafe_allow_html=True)
    st.markdown(prediction_html(digit, sure, headline, strokes), unsafe_allow_html=True)
    data, spec = probability_chart(proba, digit)
    st.vega_lite_chart(data, spec, width="stretch", height=190)
    st.image(enlarged(x, 5), clamp=True, width=140, caption="What the network sees (28×28)")
    return proba


st.html(PREDICTION_CSS)
st.title("Draw a digit")
intro = st.container(key="draw_intro")

with st.sidebar:
    chosen = choose_model()

source = st.segmented_control(
    "Input",
    [DRAW, COLLECT, UPLOAD],
    default=DRAW,
    required=True,
    key=state.INPUT_MODE_KEY,
    label_visibility="collapsed",
    persist_state="session",
)
if source == UPLOAD:
    intro.caption("Upload a picture of one handwritten digit, 0 to 9: the network reads it like a drawing.")
    upload_panel(chosen)
elif source == COLLECT:
    intro.caption("Collect your own digits: draw the digit asked for, press Next. Then teach the network in My digits.")
    drawing_panel(chosen, collect=True)
else:
    intro.caption("Draw one digit, 0 to 9, with your mouse or finger. The network guesses after every stroke.")
    drawing_panel(chosen)
