"""Draw page (the landing page): draw or upload a digit and see what the network thinks.

Every stroke on the canvas reruns this script; the picture goes through the same
``mnist_net`` pipeline as an uploaded image (``canvas_to_input`` -> ``predict_proba``
-> ``assess``). The model is chosen in the sidebar. No maths here: this page only draws.
"""

import runpy
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st
from streamlit_drawable_canvas import st_canvas

import mnist_net
from mnist_net.confidence import assess
from mnist_net.model_io import default_model_path
from mnist_net.registry import list_models, model_facts

if not st.session_state.get("app_frame_ran"):
    # Streamlit ran this page without app.py (a deep link on a fresh server, see app.py):
    # run the frame, which runs this page inside it, and stop this bare run.
    runpy.run_path(str(Path(__file__).resolve().parents[1] / "app.py"))
    st.stop()

CANVAS_SIDE = 280
# Test seam: AppTest cannot draw on the canvas, so a test may put an (H, W, 4) RGBA array here.
INJECTED_CANVAS_KEY = "injected_canvas_image"
DIGITS = [str(d) for d in range(10)]


@st.cache_resource(show_spinner=False, max_entries=16)
def model_from_file(path: str, modified_ns: int) -> mnist_net.MLP:
    """A model file, loaded once per server (keyed by mtime so a replaced file reloads). Read-only."""
    return mnist_net.load_model(path)


def load_file_model(path: Path) -> mnist_net.MLP:
    try:
        modified = path.stat().st_mtime_ns
    except OSError:
        modified = 0  # load_model reports the missing file with its own message
    return model_from_file(str(path), modified)


def session_model() -> mnist_net.MLP | None:
    """The model trained on the Train page in this session (the latest finished one)."""
    job = st.session_state.get("train_job")
    if job is not None and job.model is not None:
        return job.model
    return st.session_state.get("previous_session_model")


def uploaded_model(file) -> mnist_net.MLP:
    """Load an uploaded model file safely, once per upload; ModelFileError if it is not a model."""
    cached = st.session_state.get("uploaded_model")
    if cached is not None and cached[0] == file.file_id:
        return cached[1]
    model = mnist_net.model_from_bytes(file.getvalue())
    st.session_state["uploaded_model"] = (file.file_id, model)
    return model


def choose_model() -> mnist_net.MLP | None:
    """Sidebar: pick a model and show its facts. Falls back to the shipped model on a bad upload."""
    st.subheader("Model")
    trained = session_model()
    saved = {f"file:{m.name}": m for m in list_models()}
    labels = {"default": "Shipped default model"}
    if trained is not None:
        labels["session"] = "Trained in this session"
    labels.update({key: f"Saved: {m.name}" for key, m in saved.items()})
    labels["upload"] = "Upload a model file…"
    if st.session_state.get("model_choice") not in labels:
        st.session_state["model_choice"] = "default"
    choice = st.selectbox("Which network guesses", list(labels), format_func=labels.get,
                          key="model_choice", persist_state="session")
    model, name = None, labels[choice]
    try:
        if choice == "session":
            model = trained
        elif choice in saved:
            model = load_file_model(saved[choice].path)
        elif choice == "upload":
            file = st.file_uploader("Model file (.pkl)", type=["pkl"], key="model_upload",
                                    help="A model saved by this app or by `python -m mnist_net train`.")
            if file is None:
                st.caption("No file yet: using the shipped default model meanwhile.")
            else:
                name = file.name
                model = uploaded_model(file)
                st.success(f"Loaded {file.name}", icon=":material/check_circle:")
    except mnist_net.ModelFileError as e:
        st.error(f"**{name}** could not be used: {e}. Using the shipped default model instead.",
                 icon=":material/error:")
    if model is None:
        try:
            model = load_file_model(default_model_path())
        except mnist_net.ModelFileError as e:
            st.error(f"The shipped model could not be loaded: {e}. Train one on the Train page.",
                     icon=":material/error:")
            return None
    st.markdown("  \n".join(f"**{name}:** {value}" for name, value in model_facts(model).items()))
    return model


def canvas_input() -> tuple[np.ndarray | None, int]:
    """The canvas and its controls -> (RGBA image or None, number of strokes)."""
    generation = st.session_state.setdefault("canvas_generation", 0)
    st.space(34)  # room for the canvas's own toolbar (undo, redo, delete), which floats above it
    result = st_canvas(stroke_width=st.session_state.get("stroke_width", 18), stroke_color="#FFFFFF",
                       background_color="#000000", width=CANVAS_SIDE, height=CANVAS_SIDE,
                       drawing_mode="freedraw", update_streamlit=True, return_image_data=True,
                       key=f"canvas_{generation}")
    st.slider("Pen width", min_value=6, max_value=40, value=18, key="stroke_width", persist_state="session",
              width=CANVAS_SIDE)
    # A new key gives a fresh, empty canvas.
    st.button("Clear", icon=":material/ink_eraser:", key="clear", width=CANVAS_SIDE,
              on_click=lambda: st.session_state.update(canvas_generation=generation + 1))
    strokes = len((result.json_data or {}).get("objects") or [])
    image = result.image_data
    if image is None:
        image = st.session_state.get(INJECTED_CANVAS_KEY)
    return image, strokes


def upload_input() -> np.ndarray | None:
    file = st.file_uploader("A picture of one digit", type=["png", "jpg", "jpeg", "gif", "bmp", "webp",
                                                             "tif", "tiff"], key="digit_upload")
    if file is None:
        return None
    try:
        image = mnist_net.image_from_bytes(file.getvalue())
    except ValueError as e:
        st.error(f"Could not use **{file.name}**: {e}", icon=":material/error:")
        return None
    st.image(image, caption=file.name, width=160)
    return image


def probability_chart(proba: np.ndarray, digit: int) -> alt.Chart:
    table = pd.DataFrame({"digit": DIGITS, "probability": proba.astype(float),
                          "chosen": [d == digit for d in range(10)]})
    return (alt.Chart(table).mark_bar()
            .encode(x=alt.X("digit:N", sort=DIGITS, title=None, axis=alt.Axis(labelAngle=0, labelFontSize=13)),
                    y=alt.Y("probability:Q", title=None, scale=alt.Scale(domain=[0, 1]),
                            axis=alt.Axis(format=".0%", tickCount=3)),
                    color=alt.condition(alt.datum.chosen, alt.value("#3b5bdb"), alt.value("#c5cbd8")),
                    tooltip=["digit", alt.Tooltip("probability:Q", format=".1%")]))


def show_prediction(model: mnist_net.MLP | None, image: np.ndarray | None, strokes: int) -> None:
    prompt = "Draw a digit from 0 to 9 in the black box: the network guesses as you draw."
    if image is None:
        st.info(prompt, icon=":material/draw:")
        return
    try:
        x = mnist_net.canvas_to_input(image)
    except ValueError as e:
        st.error(f"Could not read that picture: {e}", icon=":material/error:")
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
        headline = (f"Not sure: a {digit} ({verdict.probability:.0%}) "
                    f"or a {verdict.runner_up} ({verdict.runner_up_probability:.0%})?")
    st.markdown(
        f'<div class="prediction" data-digit="{digit}" data-sure="{int(verdict.sure)}" '
        f'data-strokes="{strokes}">'
        f'<div class="prediction-label">The network says</div>'
        f'<div class="prediction-digit{"" if verdict.sure else " unsure"}">{digit}</div>'
        f'<div class="prediction-prob">{headline}</div></div>', unsafe_allow_html=True)
    st.altair_chart(probability_chart(proba, digit), width="stretch", height=190)
    st.image(np.repeat(np.repeat(x.reshape(28, 28), 5, axis=0), 5, axis=1), clamp=True, width=140,
             caption="What the network sees (28×28)")


st.html("""<style>
.prediction { text-align: center; }
.prediction-label { color: #5c6370; font-size: 0.95rem; }
.prediction-digit { font-size: 6rem; font-weight: 700; line-height: 1.05; color: #3b5bdb; }
.prediction-digit.unsure { color: #9aa1ad; }
.prediction-prob { font-size: 1.1rem; color: #1f2430; margin-bottom: 0.5rem; }
</style>""")

st.title("Draw a digit")
st.caption("Draw one digit, 0 to 9, with your mouse or finger. The network guesses after every stroke.")

with st.sidebar:
    model = choose_model()

source = st.segmented_control("Input", ["Draw", "Upload an image"], default="Draw", required=True,
                              key="input_mode", label_visibility="collapsed", persist_state="session")
drawing = source != "Upload an image"
left, right = st.columns([1, 1], gap="large")
with left:
    image, strokes = canvas_input() if drawing else (upload_input(), 0)
with right:
    if drawing:
        st.space(34)  # line up with the canvas, which sits below its toolbar's space
    show_prediction(model, image, strokes)
