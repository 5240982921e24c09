"""Train page: choose hyperparameters, watch a network learn, then keep or use it.

The run is a ``mnist_net.jobs.TrainingJob`` (a worker thread) kept in session state, so it
survives clicks and page switches; a fragment polls it for the live chart. The job
evaluates and saves the model itself. The form starts from ``app_start_config()``. No maths
here: this page only draws.
"""

from dataclasses import replace

import streamlit as st

import mnist_net
from mnist_net.budget import estimate_training_cost, refusal
from mnist_net.config import ACTIVATIONS, OPTIMIZERS, TrainConfig, app_start_config, parse_hidden_sizes
from mnist_net.data import FILES, cache_dir, find_mnist
from mnist_net.history import log_every_for
from mnist_net.jobs import EVALUATING, FAILED, STOPPED, JobSnapshot, TrainingJob
from pages.ui import state
from pages.ui.charts import accuracy_curve, confusion_chart, enlarged, loss_curve, per_digit_chart

state.run_inside_frame()

POLL_SECONDS = 1.0  # at least one update a second; more often costs training speed
CHART_HEIGHT = 280  # pixels, title and legend included
N_MNIST_TRAIN = 60000
START = app_start_config()


def mnist_is_local() -> bool:
    try:
        find_mnist(download=False)
        return True
    except mnist_net.MnistError:
        return False


def show_mnist_help(error: Exception) -> None:
    files = "\n".join(f"   - `{name}`" for name in FILES)
    st.error(
        "MNIST is not on this machine and could not be downloaded, so there is nothing to train on.",
        icon=":material/cloud_off:",
    )
    st.markdown(
        "**What to do** (either one):\n\n"
        f"1. Put the four standard MNIST files in one folder:\n{files}\n\n"
        "   then restart the app with that folder in `MNIST_DIR`:\n"
        "   `MNIST_DIR=/path/to/folder streamlit run app.py`\n"
        f"2. Or connect this machine to the internet and press Start again: the files "
        f"(about 11 MB) are downloaded into `{cache_dir()}` and checked automatically."
    )
    with st.expander("Technical details"):
        st.code(str(error), language=None)


def show_history(history: list[dict]) -> None:
    if not history:
        st.caption("Waiting for the first batches…")
        return
    left, right = st.columns(2)
    for column, (data, spec) in ((left, accuracy_curve(history)), (right, loss_curve(history))):
        with column:
            st.vega_lite_chart(data, spec, width="stretch", height=CHART_HEIGHT)


def progress_text(snap: JobSnapshot) -> str:
    h = snap.latest
    if h is None:
        return "Starting…"
    if snap.status == EVALUATING:
        return "Training finished, testing on 10,000 unseen digits…"
    eta = snap.eta or 0
    return (
        f"Epoch {h['epoch']}/{h['epochs']} · batch {h['batch']}/{h['batches_per_epoch']} · "
        f"{h['samples_per_s']:,.0f} images/s · about {eta:,.0f} s left"
    )


def show_results(job: TrainingJob, snap: JobSnapshot) -> None:
    ev, model = snap.evaluation, job.model
    if snap.status == STOPPED:
        st.warning(
            "Training was stopped early. The results are for the network as it was then.", icon=":material/stop_circle:"
        )
    else:
        st.success(
            f"Done! The network got **{ev.accuracy:.2%}** of {ev.n:,} unseen test digits right.",
            icon=":material/check_circle:",
        )
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
    left, right = st.columns(2)
    left.altair_chart(per_digit_chart(ev), width="stretch", height=330)
    right.altair_chart(confusion_chart(ev), width="stretch", height=330)
    if len(ev.mistakes):
        st.caption("The test digits it got most confidently wrong:")
        columns = st.columns(len(ev.mistakes))
        for col, idx, said, p in zip(columns, ev.mistakes, ev.mistake_predicted, ev.mistake_probability):
            col.image(
                enlarged(job.data.X_test[idx]),
                width="stretch",
                caption=f"is {job.data.y_test[idx]}, said {said} ({p:.0%})",
            )

    st.subheader("Keep it")
    if snap.saved_path is not None:
        st.caption(f"Saved as `{snap.saved_path}`")
    elif snap.save_error:
        st.error(f"The model is kept for this session but was not saved: {snap.save_error}")
    left, right = st.columns(2)
    use = left.button(
        "Use this model on the Draw page", type="primary", icon=":material/draw:", key="use_model", width="stretch"
    )
    right.download_button(
        "Download model (.pkl)",
        data=mnist_net.model_to_bytes(model),
        file_name=snap.saved_path.name if snap.saved_path else "mnist-model.pkl",
        mime="application/octet-stream",
        icon=":material/download:",
        key="download_model",
        width="stretch",
    )
    if use:
        st.session_state[state.MODEL_CHOICE_KEY] = state.SESSION_MODEL_CHOICE
        st.switch_page("pages/draw.py")


st.title("Train a network")
st.caption("Train a fresh network on MNIST's handwritten digits and watch it learn, live.")

job = state.training_job()
running = state.training_is_running()

if not running and not mnist_is_local():
    st.info(
        "MNIST (the 70,000 training and test digits) is not on this machine yet. Pressing "
        "Start downloads it (about 11 MB) first.",
        icon=":material/info:",
    )

settings = st.expander(
    "Settings" if job is None else "Settings: change them and train again", expanded=job is None, icon=":material/tune:"
)
with settings, st.form("train_form", border=False):
    left, right = st.columns(2)
    hidden = left.text_input(
        "Hidden layer sizes",
        ",".join(map(str, START.hidden_sizes)),
        key="hidden_sizes",
        persist_state="session",
        help="Units in each hidden layer, comma-separated. 128,64 gives 784→128→64→10.",
    )
    activation = left.selectbox(
        "Activation", ACTIVATIONS, index=ACTIVATIONS.index(START.activation), key="activation", persist_state="session"
    )
    optimizer = left.selectbox(
        "Optimiser", OPTIMIZERS, index=OPTIMIZERS.index(START.optimizer), key="optimizer", persist_state="session"
    )
    lr = left.number_input(
        "Learning rate",
        min_value=1e-5,
        max_value=5.0,
        value=START.learning_rate,
        step=1e-4,
        format="%.4f",
        key="learning_rate",
        persist_state="session",
        help="About 0.001 for adam, 0.05 for momentum, 0.1 for sgd.",
    )
    n_train = right.number_input(
        "Training images",
        min_value=100,
        max_value=N_MNIST_TRAIN,
        value=START.n_train or N_MNIST_TRAIN,
        step=1000,
        key="n_train",
        persist_state="session",
        help="How many of the 60,000 MNIST training images to use. "
        "1 in 12 of them is held out to check progress (validation).",
    )
    epochs = right.number_input(
        "Epochs",
        min_value=1,
        max_value=200,
        value=START.epochs,
        key="epochs",
        persist_state="session",
        help="Passes over the training images.",
    )
    batch_size = right.number_input(
        "Batch size",
        min_value=1,
        max_value=4096,
        value=START.batch_size,
        step=16,
        key="batch_size",
        persist_state="session",
    )
    seed = right.number_input(
        "Seed",
        min_value=0,
        max_value=2**31 - 1,
        value=START.seed,
        key="seed",
        persist_state="session",
        help="Same settings and seed give the same network.",
    )
    augment = st.toggle(
        "Augment: randomly shift, rotate, scale and thicken the digits while training",
        value=START.augment,
        key="augment",
        persist_state="session",
        help="Slower to learn, but copes better with digits drawn by hand on the canvas.",
    )
    start = st.form_submit_button(
        "Start training", type="primary", icon=":material/play_arrow:", disabled=running, key="start"
    )


def config_from_form() -> TrainConfig:
    """The form's values on top of the app's starting config; ValueError says what is wrong."""
    n = int(n_train)
    return replace(
        START, hidden_sizes=parse_hidden_sizes(hidden), activation=activation, optimizer=optimizer,
        learning_rate=float(lr), batch_size=int(batch_size), epochs=int(epochs), augment=bool(augment),
        n_train=None if n >= N_MNIST_TRAIN else n, seed=int(seed), log_every=log_every_for(n, int(batch_size)),
    )  # fmt: skip


if start and not running:
    try:
        config = config_from_form()
    except ValueError as e:
        st.error(f"Please check the settings: {e}", icon=":material/warning:")
    else:
        if problem := refusal(estimate_training_cost(config, N_MNIST_TRAIN)):
            st.error(f"This server cannot run that: {problem}.", icon=":material/block:")
        else:
            try:
                with st.spinner("Loading MNIST…"):
                    data = state.get_mnist()
            except mnist_net.MnistError as e:
                show_mnist_help(e)
            else:
                state.start_training(TrainingJob(config, data))
                st.rerun()  # redraw with the form folded away and disabled while it trains


@st.fragment(run_every=POLL_SECONDS if running else None)
def live_panel() -> None:
    snap = job.snapshot()
    if snap.finished:
        # The run ended since the page last drew: redraw the whole page with the results.
        st.rerun(scope="app")
    cfg = job.config
    st.subheader("Training…")
    st.caption(
        f"{'→'.join(map(str, cfg.layer_sizes))} · {cfg.activation} · {cfg.optimizer} · "
        f"learning rate {cfg.learning_rate:g} · batch {cfg.batch_size} · "
        f"{'augmented' if cfg.augment else 'no augmentation'}. "
        "You can switch pages: training keeps going."
    )
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
