"""Draw page (the landing page): draw or upload a digit and see what the network thinks.

Every stroke on the canvas reruns this script; the picture goes through the same
``mnist_net`` pipeline as an uploaded image (``canvas_to_input`` -> ``predict_proba``
-> ``assess``). The model is chosen in the sidebar. No maths here: this page only draws.
"""

import numpy as np
import streamlit as st
from streamlit_drawable_canvas import st_canvas

import mnist_net
from mnist_net.confidence import assess
from mnist_net.registry import list_models, model_facts
from pages.ui import state
from pages.ui.charts import enlarged, probability_chart
from pages.ui.style import PREDICTION_CSS, plain, prediction_html

state.run_inside_frame()

CANVAS_SIDE = 280
IMAGE_TYPES = ["png", "jpg", "jpeg", "gif", "bmp", "webp", "tif", "tiff"]


def choose_model() -> mnist_net.MLP | None:
    """Sidebar: pick a model and show its facts. Falls back to the shipped model on a bad upload."""
    st.subheader("Model")
    trained = state.session_model()
    saved = {f"file:{m.name}": m for m in list_models()}
    labels = {"default": "Shipped default model"}
    if trained is not None:
        labels[state.SESSION_MODEL_CHOICE] = "Trained in this session"
    labels.update({key: f"Saved: {m.name}" for key, m in saved.items()})
    labels["upload"] = "Upload a model file…"
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
            model = state.default_model()
        except mnist_net.ModelFileError as e:
            st.error(
                f"The shipped model could not be loaded: {plain(e)}. Train one on the Train page.",
                icon=":material/error:",
            )
            return None
    # Facts carry text from the file (its source, its date): shown as plain text, never as markup.
    st.markdown("  \n".join(f"**{name}:** {plain(value)}" for name, value in model_facts(model).items()))
    return model


def canvas_input() -> tuple[np.ndarray | None, int]:
    """The canvas and its controls -> (RGBA image or None, number of strokes)."""
    generation = st.session_state.setdefault(state.CANVAS_GENERATION_KEY, 0)
    st.space(34)  # room for the canvas's own toolbar (undo, redo, delete), which floats above it
    result = st_canvas(
        stroke_width=st.session_state.get(state.STROKE_WIDTH_KEY, 18),
        stroke_color="#FFFFFF",
        background_color="#000000",
        width=CANVAS_SIDE,
        height=CANVAS_SIDE,
        drawing_mode="freedraw",
        update_streamlit=True,
        return_image_data=True,
        key=f"canvas_{generation}",
    )
    st.slider(
        "Pen width",
        min_value=6,
        max_value=40,
        value=18,
        key=state.STROKE_WIDTH_KEY,
        persist_state="session",
        width=CANVAS_SIDE,
    )
    # A new key gives a fresh, empty canvas.
    st.button(
        "Clear",
        icon=":material/ink_eraser:",
        key="clear",
        width=CANVAS_SIDE,
        on_click=lambda: st.session_state.update({state.CANVAS_GENERATION_KEY: generation + 1}),
    )
    strokes = len((result.json_data or {}).get("objects") or [])
    image = result.image_data
    if image is None:
        image = st.session_state.get(state.INJECTED_CANVAS_KEY)
    return image, strokes


def upload_input() -> np.ndarray | None:
    file = st.file_uploader("A picture of one digit", type=IMAGE_TYPES, key="digit_upload")
    if file is None:
        return None
    try:
        image = mnist_net.image_from_bytes(file.getvalue())
    except ValueError as e:
        st.error(f"Could not use **{plain(file.name)}**: {plain(e)}", icon=":material/error:")
        return None
    st.image(image, caption=file.name, width=160)
    return image


def show_prediction(model: mnist_net.MLP | None, image: np.ndarray | None, strokes: int) -> None:
    prompt = "Draw a digit from 0 to 9 in the black box: the network guesses as you draw."
    if image is None:
        st.info(prompt, icon=":material/draw:")
        return
    try:
        x = mnist_net.canvas_to_input(image)
    except ValueError as e:
        st.error(f"Could not read that picture: {plain(e)}", icon=":material/error:")
        return
    if x is None:
        st.info(prompt if strokes == 0 else "I can't see a digit yet: keep drawing.", icon=":material/draw:")
        return
    if model is None:
        st.warning("No model to ask: choose or train one first.", icon=":material/warning:")
        return
    proba = model.predict_proba(x[None, :])[0]
    verdict = assess(proba)
    digit = int(verdict.digit)
    if verdict.sure:
        headline = f"{verdict.probability:.1%} sure"
    else:
        headline = (
            f"Not sure: a {digit} ({verdict.probability:.0%}) "
            f"or a {verdict.runner_up} ({verdict.runner_up_probability:.0%})?"
        )
    st.markdown(prediction_html(digit, verdict.sure, headline, strokes), unsafe_allow_html=True)
    st.altair_chart(probability_chart(proba, digit), width="stretch", height=190)
    st.image(enlarged(x, 5), clamp=True, width=140, caption="What the network sees (28×28)")


st.html(PREDICTION_CSS)
st.title("Draw a digit")
st.caption("Draw one digit, 0 to 9, with your mouse or finger. The network guesses after every stroke.")

with st.sidebar:
    model = choose_model()

source = st.segmented_control(
    "Input",
    ["Draw", "Upload an image"],
    default="Draw",
    required=True,
    key=state.INPUT_MODE_KEY,
    label_visibility="collapsed",
    persist_state="session",
)
drawing = source != "Upload an image"
left, right = st.columns([1, 1], gap="large")
with left:
    image, strokes = canvas_input() if drawing else (upload_input(), 0)
with right:
    if drawing:
        st.space(34)  # line up with the canvas, which sits below its toolbar's space
    show_prediction(model, image, strokes)
