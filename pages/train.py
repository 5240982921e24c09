"""Train page: choose hyperparameters, watch a network learn, then keep or use it.

The run is a ``mnist_net.jobs.TrainingJob`` (a worker thread) kept in session state,
so it survives clicks and page switches; a fragment polls it for the live chart. The
job evaluates and saves the model itself. No maths here: this page only draws.
"""

import os

import runpy
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

import mnist_net
from mnist_net.config import ACTIVATIONS, OPTIMIZERS, TrainConfig
from mnist_net.data import FILES, cache_dir, find_mnist
from mnist_net.jobs import (FAILED, STOPPED, TrainingJob, history_columns, log_every_for, parse_hidden_sizes,
                            thin_history)

if not st.session_state.get("app_frame_ran"):
    # Streamlit ran this page without app.py (a deep link on a fresh server, see app.py):
    # run the frame, which runs this page inside it, and stop this bare run.
    runpy.run_path(str(Path(__file__).resolve().parents[1] / "app.py"))
    st.stop()

JOB_KEY = "train_job"  # the current (or last) TrainingJob of this session
PREVIOUS_MODEL_KEY = "previous_session_model"  # the model of the job before it, for the draw page
POLL_SECONDS = 1.0  # the issue asks for at least one update a second; more costs training speed
CHART_HEIGHT = 280  # pixels, title and legend included
N_MNIST_TRAIN = 60000


@st.cache_resource(show_spinner=False)
def get_mnist(mnist_dir: str):
    """The data set, loaded once per server; ``mnist_dir`` (the MNIST_DIR setting) is only the cache key."""
    return mnist_net.load_mnist(progress=False)


def mnist_is_local() -> bool:
    try:
        find_mnist(download=False)
        return True
    except mnist_net.MnistError:
        return False


def show_mnist_help(error: Exception) -> None:
    files = "\n".join(f"   - `{name}`" for name in FILES)
    st.error("MNIST is not on this machine and could not be downloaded, so there is nothing to train on.",
             icon=":material/cloud_off:")
    st.markdown(
        "**What to do** (either one):\n\n"
        f"1. Put the four standard MNIST files in one folder:\n{files}\n\n"
        "   then restart the app with that folder in `MNIST_DIR`:\n"
        "   `MNIST_DIR=/path/to/folder streamlit run app.py`\n"
        f"2. Or connect this machine to the internet and press Start again: the files "
        f"(about 11 MB) are downloaded into `{cache_dir()}` and checked automatically.")
    with st.expander("Technical details"):
        st.code(str(error), language=None)


def line_chart(history: list[dict], columns: dict[str, str], title: str, percent: bool,
               legend_corner: str) -> None:
    """One line per series; validation points appear once per epoch. The legend sits inside
    the plot, in the corner the curves leave empty (accuracy rises, loss falls). A plain
    Vega-Lite spec, not Altair: this redraws every poll while training, so it must be cheap."""
    table = pd.DataFrame(history_columns(thin_history(history)))
    long = table.melt(id_vars="epoch", value_vars=list(columns), var_name="series").dropna()
    long["series"] = long["series"].map(columns)
    spec = {
        "title": title,
        "mark": {"type": "line", "point": {"size": 25}},
        "encoding": {
            "x": {"field": "epoch", "type": "quantitative", "title": "epoch"},
            "y": {"field": "value", "type": "quantitative", "title": None, "scale": {"zero": False},
                  "axis": {"format": ".0%"} if percent else {}},
            "color": {"field": "series", "type": "nominal", "title": None,
                      "scale": {"domain": ["training", "validation"], "range": ["#3b5bdb", "#f08c00"]},
                      "legend": {"orient": legend_corner}},
            "tooltip": [{"field": "series"}, {"field": "epoch", "type": "quantitative", "format": ".2f"},
                        {"field": "value", "type": "quantitative", "format": ".4f"}],
        },
    }
    st.vega_lite_chart(long, spec, width="stretch", height=CHART_HEIGHT)


def show_history(history: list[dict]) -> None:
    if not history:
        st.caption("Waiting for the first batches…")
        return
    left, right = st.columns(2)
    with left:
        line_chart(history, {"train_acc": "training", "val_acc": "validation"}, "Accuracy", percent=True,
                   legend_corner="bottom-right")
    with right:
        line_chart(history, {"loss": "training", "val_loss": "validation"}, "Loss", percent=False,
                   legend_corner="top-right")


def progress_text(snap) -> str:
    h = snap.latest
    if h is None:
        return "Starting…"
    if snap.status == "evaluating":
        return "Training finished, testing on 10,000 unseen digits…"
    eta = snap.eta or 0
    return (f"Epoch {h['epoch']}/{h['epochs']} · batch {h['batch']}/{h['batches_per_epoch']} · "
            f"{h['samples_per_s']:,.0f} images/s · about {eta:,.0f} s left")


def enlarged(image_784: np.ndarray, factor: int = 3) -> np.ndarray:
    """A 28x28 digit repeated into blocks so it stays crisp when shown bigger."""
    return np.repeat(np.repeat(image_784.reshape(28, 28), factor, axis=0), factor, axis=1)


def show_results(job: TrainingJob, snap) -> None:
    ev, model = snap.evaluation, job.model
    if snap.status == STOPPED:
        st.warning("Training was stopped early. The results are for the network as it was then.",
                   icon=":material/stop_circle:")
    else:
        st.success(f"Done! The network got **{ev.accuracy:.2%}** of {ev.n:,} unseen test digits right.",
                   icon=":material/check_circle:")
    val = model.metrics_.get("val_accuracy")
    last = snap.history[-1]
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Test accuracy", f"{ev.accuracy:.2%}")
    c2.metric("Validation accuracy", f"{val:.2%}" if val is not None else "–")
    c3.metric("Training time", f"{last['elapsed']:.0f} s")
    c4.metric("Images per second", f"{last['samples_per_s']:,.0f}")

    st.subheader("Learning curves")
    show_history(snap.history)

    st.subheader("Where it goes wrong")
    digits = [str(d) for d in range(10)]
    per_class = pd.DataFrame({"digit": digits, "accuracy": ev.per_class})
    per_digit = alt.Chart(per_class, title="Accuracy per digit").encode(
        x=alt.X("digit:N", sort=digits, title="digit", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("accuracy:Q", title=None, axis=alt.Axis(format=".0%"), scale=alt.Scale(domain=[0, 1])),
        tooltip=["digit", alt.Tooltip("accuracy:Q", format=".2%")])
    bars = per_digit.mark_bar() + per_digit.mark_text(dy=-6, fontSize=9).encode(
        text=alt.Text("accuracy:Q", format=".0%"))
    true_d, pred_d = np.meshgrid(np.arange(10), np.arange(10), indexing="ij")
    cells = pd.DataFrame({"true digit": true_d.ravel().astype(str), "predicted": pred_d.ravel().astype(str),
                          "count": ev.confusion.ravel()})
    base = alt.Chart(cells, title="Confusion matrix").encode(
        x=alt.X("predicted:N", sort=digits, axis=alt.Axis(labelAngle=0, orient="top", labelOverlap=False)),
        y=alt.Y("true digit:N", sort=digits, axis=alt.Axis(labelOverlap=False)))
    heat = base.mark_rect().encode(
        color=alt.Color("count:Q", scale=alt.Scale(type="symlog", scheme="blues"), legend=None),
        tooltip=["true digit", "predicted", "count"])
    text = base.mark_text(fontSize=10).encode(
        text="count:Q", color=alt.condition(alt.datum.count > ev.n / 20, alt.value("white"), alt.value("#333")))
    left, right = st.columns(2)
    left.altair_chart(bars, width="stretch", height=330)
    right.altair_chart(heat + text, width="stretch", height=330)

    if len(ev.mistakes):
        st.caption("The test digits it got most confidently wrong:")
        columns = st.columns(len(ev.mistakes))
        for col, idx, said, p in zip(columns, ev.mistakes, ev.mistake_predicted, ev.mistake_probability):
            col.image(enlarged(job.data.X_test[idx]), width="stretch",
                      caption=f"is {job.data.y_test[idx]}, said {said} ({p:.0%})")

    st.subheader("Keep it")
    if snap.saved_path is not None:
        st.caption(f"Saved as `{snap.saved_path}`")
    elif snap.save_error:
        st.error(f"The model is kept for this session but was not saved: {snap.save_error}")
    left, right = st.columns(2)
    use = left.button("Use this model on the Draw page", type="primary", icon=":material/draw:", key="use_model",
                      width="stretch")
    right.download_button("Download model (.pkl)", data=mnist_net.model_to_bytes(model),
                          file_name=snap.saved_path.name if snap.saved_path else "mnist-model.pkl",
                          mime="application/octet-stream", icon=":material/download:", key="download_model",
                          width="stretch")
    if use:
        st.session_state["model_choice"] = "session"
        st.switch_page("pages/draw.py")


st.title("Train a network")
st.caption("Train a fresh network on MNIST's handwritten digits and watch it learn, live.")

job: TrainingJob | None = st.session_state.get(JOB_KEY)
running = job is not None and job.snapshot().running

if not running and not mnist_is_local():
    st.info("MNIST (the 70,000 training and test digits) is not on this machine yet. Pressing "
            "Start downloads it (about 11 MB) first.", icon=":material/info:")

settings = st.expander("Settings" if job is None else "Settings: change them and train again",
                        expanded=job is None, icon=":material/tune:")
with settings, st.form("train_form", border=False):
    left, right = st.columns(2)
    hidden = left.text_input("Hidden layer sizes", "128,64", key="hidden_sizes", persist_state="session",
                             help="Units in each hidden layer, comma-separated. 128,64 gives 784→128→64→10.")
    activation = left.selectbox("Activation", ACTIVATIONS, index=ACTIVATIONS.index("relu"), key="activation",
                                persist_state="session")
    optimizer = left.selectbox("Optimiser", OPTIMIZERS, index=OPTIMIZERS.index("adam"), key="optimizer",
                               persist_state="session")
    lr = left.number_input("Learning rate", min_value=1e-5, max_value=5.0, value=1e-3, step=1e-4,
                           format="%.4f", key="learning_rate", persist_state="session",
                           help="About 0.001 for adam, 0.05 for momentum, 0.1 for sgd.")
    n_train = right.number_input("Training images", min_value=100, max_value=N_MNIST_TRAIN, value=N_MNIST_TRAIN,
                                 step=1000, key="n_train", persist_state="session",
                                 help="How many of the 60,000 MNIST training images to use. "
                                      "1 in 12 of them is held out to check progress (validation).")
    epochs = right.number_input("Epochs", min_value=1, max_value=200, value=5, key="epochs",
                                persist_state="session", help="Passes over the training images.")
    batch_size = right.number_input("Batch size", min_value=1, max_value=4096, value=128, step=16,
                                    key="batch_size", persist_state="session")
    seed = right.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, key="seed",
                              persist_state="session", help="Same settings and seed give the same network.")
    augment = st.toggle("Augment: randomly shift, rotate, scale and thicken the digits while training",
                        value=False, key="augment", persist_state="session",
                        help="Slower to learn, but copes better with digits drawn by hand on the canvas.")
    start = st.form_submit_button("Start training", type="primary", icon=":material/play_arrow:", disabled=running,
                                  key="start")

if start and not running:
    try:
        n = int(n_train)
        config = TrainConfig(hidden_sizes=parse_hidden_sizes(hidden), activation=activation,
                             optimizer=optimizer, learning_rate=float(lr), batch_size=int(batch_size),
                             epochs=int(epochs), augment=bool(augment),
                             n_train=None if n >= N_MNIST_TRAIN else n, seed=int(seed),
                             log_every=log_every_for(n, int(batch_size)))
    except ValueError as e:
        st.error(f"Please check the settings: {e}", icon=":material/warning:")
    else:
        try:
            with st.spinner("Loading MNIST…"):
                data = get_mnist(os.environ.get("MNIST_DIR", ""))
        except mnist_net.MnistError as e:
            show_mnist_help(e)
        else:
            if job is not None and job.model is not None:
                st.session_state[PREVIOUS_MODEL_KEY] = job.model
            st.session_state[JOB_KEY] = TrainingJob(config, data).start()
            st.rerun()  # redraw with the form folded away and disabled while it trains


@st.fragment(run_every=POLL_SECONDS if running else None)
def live_panel() -> None:
    snap = job.snapshot()
    if snap.finished:
        # The run ended since the page last drew: redraw the whole page with the results.
        st.rerun(scope="app")
    sizes = "→".join(str(s) for s in (784, *job.config.hidden_sizes, 10))
    st.subheader("Training…")
    st.caption(f"{sizes} · {job.config.activation} · {job.config.optimizer} · "
               f"learning rate {job.config.learning_rate:g} · batch {job.config.batch_size} · "
               f"{'augmented' if job.config.augment else 'no augmentation'}. "
               "You can switch pages: training keeps going.")
    bar, button = st.columns([5, 1], vertical_alignment="center")
    bar.progress(snap.fraction_done, text=progress_text(snap))
    button.button("Stop", icon=":material/stop_circle:", key="stop", on_click=job.stop, width="stretch")
    show_history(snap.history)


if running:
    live_panel()
elif job is not None:
    snap = job.snapshot()
    if snap.status == FAILED:
        st.error(f"Training failed: {snap.error}", icon=":material/error:")
    else:
        show_results(job, snap)
