"""Train page: choose hyperparameters, watch a network learn, then keep it, use it or drop it.

A run is submitted to the server's ``RunRegistry`` (``state.run_registry``) under this
browser's user id, so a reload or another tab finds it again in "Your runs" (with Watch and
Stop) and the form comes back with the settings last used. Each run trains in its own
process (``mnist_net.jobs``); a fragment polls it for the live chart and the first layer's
weights as red/blue tiles. A running run can be paused and resumed; a finished one can be
trained N more epochs as a new run. A finished model stays in its run until the user keeps
it in the models folder (named), renames or deletes it.
The form starts from ``app_start_config()``. No maths here: this page only draws.
"""

from dataclasses import replace

import pandas as pd
import streamlit as st

import mnist_net
from mnist_net.architecture import PRESETS
from mnist_net.budget import estimate_training_cost
from mnist_net.config import ACTIVATIONS, OPTIMIZERS, TrainConfig, app_start_config, parse_hidden_sizes
from mnist_net.data import FILES, cache_dir, find_mnist
from mnist_net.history import USUAL_LEARNING_RATES, log_every_for
from mnist_net.jobs import (
    CANCELLED,
    DIVERGED,
    DONE,
    EVALUATING,
    FAILED,
    PAUSED,
    QUEUED,
    STARTING,
    STOPPED,
    TRAINING,
    JobSnapshot,
)
from mnist_net.runs import FINE_TUNE_RUN, MAX_MORE_EPOCHS, MORE_RUN, N_MNIST_TRAIN, RunRefused, RunView
from pages.ui import state
from pages.ui.charts import accuracy_curve, confusion_chart, enlarged, loss_curve, per_digit_chart, signed_tiles
from pages.ui.inside import show_mistakes_explorer, show_runs_side_by_side
from pages.ui.style import plain

state.run_inside_frame()

# Each poll costs the server about 0.1 CPU-s and the watching browser about 0.4 (benchmarks/app_overhead.py).
POLL_SECONDS = 1.0  # at least one update a second for a long run
FAST_POLL_SECONDS = 0.5  # for a short run, so even a run of a few seconds is seen learning
WAITING_POLL_SECONDS = 5.0  # for a run waiting for a slot or paused: a class can have many, each poll costs
SHORT_RUN_SECONDS = 60  # estimated by mnist_net.budget (which errs high)
CHART_HEIGHT = 280  # pixels, title and legend included
CHANCE_ACCURACY = 0.2  # at or below this a network has not learned (guessing gets 10%)
START = app_start_config()
NETWORKS = ("MLP", "CNN")
STATUS_WORDS = {
    QUEUED: "waiting for a free slot",
    STARTING: "starting",
    TRAINING: "training",
    PAUSED: "paused",
    EVALUATING: "testing",
    DONE: "done",
    STOPPED: "stopped early",
    DIVERGED: "diverged",
    FAILED: "failed",
    CANCELLED: "cancelled",
}


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


def settings_text(cfg: TrainConfig) -> str:
    images = f"{cfg.n_train:,}" if cfg.n_train else f"{N_MNIST_TRAIN:,}"
    epochs = f"{cfg.epochs} epoch{'s' if cfg.epochs != 1 else ''}"
    return (
        f"{cfg.architecture} · {cfg.activation} · {cfg.optimizer} · "
        f"learning rate {cfg.learning_rate:g} · batch {cfg.batch_size} · {epochs} · "
        f"{images} images · {'augmented' if cfg.augment else 'no augmentation'} · seed {cfg.seed}"
    )


def run_text(view: RunView) -> str:
    """A run's settings, and what it continues (a 'train more' run's epochs are the extra ones)."""
    if view.kind == FINE_TUNE_RUN:
        return f"{view.origin} on your digits · {view.config.architecture} · {view.config.activation}"
    text = settings_text(view.config)
    if view.kind == MORE_RUN:
        text = text.replace(" epoch", " more epoch", 1)
    return f"{view.origin} · {text}" if view.origin else text


TILE_COLUMNS = 8
TILE_PIXELS = 56  # about how wide one tile is drawn (a whole enlargement factor of its pixels)


def weights_caption(preview) -> str:
    n, h, w = preview.shape
    if h == w and h >= 10:  # a dense unit's incoming weights, pictured over its input
        what = (
            f"Each tile is one of the first layer's units (the first {n}): its {h * w} incoming weights, "
            f"drawn where they sit on the {h}x{w} input"
        )
    else:
        what = f"Each tile is one of the first layer's {n} filters ({h}x{w}), as it slides over the image"
    return (
        f"{what}. Red: ink there raises its output, blue: lowers it, black: no effect; each tile is scaled to "
        "its own strongest weight."
    )


def show_weights(snap: JobSnapshot, live: bool) -> None:
    """The first layer's weights as red/blue tiles (refreshed with the live chart while training)."""
    preview = snap.weights_preview
    if preview is None or not len(preview):
        return
    side = max(preview.shape[1:])
    picture = signed_tiles(preview, TILE_COLUMNS, max(1, round(TILE_PIXELS / side)))
    title = "Weights as they learn" if live else "Weights it learned"
    st.markdown(f"**{title}**")
    st.image(picture, caption=weights_caption(preview), width="content")  # never wider than a phone


def show_history(history: list[dict]) -> None:
    if not history:
        st.caption("Waiting for the first batches…")
        return
    left, right = st.columns(2)
    for column, (data, spec) in ((left, accuracy_curve(history)), (right, loss_curve(history))):
        with column:
            st.vega_lite_chart(data, spec, width="stretch", height=CHART_HEIGHT)


def progress_text(view: RunView) -> str:
    snap = view.snapshot
    h = snap.latest
    if snap.status == QUEUED:
        ahead = view.queue_position or 0
        slots = state.run_registry().max_running
        return (
            f"Waiting for a free slot: {ahead} run{'s' if ahead != 1 else ''} ahead of yours "
            f"(the server trains {slots} network{'s' if slots != 1 else ''} at a time)."
        )
    if h is None:
        return "Starting: loading MNIST in the training process…"
    if snap.status == EVALUATING:
        return "Training finished, testing on 10,000 unseen digits…"
    if snap.stopping:
        return f"Stopping after this batch (epoch {h['epoch']}, batch {h['batch']}), then testing the network as it is…"
    eta = snap.eta or 0
    where = f"epoch {h['epoch']}/{h['epochs']}, batch {h['batch']}/{h['batches_per_epoch']}"
    if view.kind == FINE_TUNE_RUN:  # one pass of small steps, no epochs or images per second
        where = f"step {h['batch']} of {h['batches_per_epoch']}"
    if snap.pausing:
        return f"Pausing after this batch ({where})…"
    if snap.paused and snap.pause_requested:
        return f"Paused in {where} · about {eta:,.0f} s left once resumed (the pause does not count)"
    if snap.paused:
        return f"Resuming in {where}…"
    if view.kind == FINE_TUNE_RUN:
        return f"Learning your handwriting: {where} · about {eta:,.0f} s left"
    return (
        f"Epoch {h['epoch']}/{h['epochs']} · batch {h['batch']}/{h['batches_per_epoch']} · "
        f"{h['samples_per_s']:,.0f} images/s · about {eta:,.0f} s left"
    )


def status_text(view: RunView) -> str:
    """One line for the runs list: what the run is doing or how it ended."""
    snap = view.snapshot
    words = STATUS_WORDS.get(snap.status, snap.status)
    if snap.status == QUEUED:
        return f"{words} ({view.queue_position or 0} ahead)"
    if snap.running:
        return f"{words}, {snap.fraction_done:.0%}"
    if snap.evaluation is not None:
        words += f" · test accuracy {snap.evaluation.accuracy:.2%}"
    tuning = view.tuning or {}
    if tuning.get("held_out_after") is not None:
        words += f" · your held-out digits {tuning['held_out_before']:.0%} → {tuning['held_out_after']:.0%}"
    if tuning.get("mnist_after") is not None:
        words += f" · MNIST test {tuning['mnist_after']:.2%}"
    if view.kept_path is not None:
        words += " · kept"
    return words


def show_runs_list(runs: list[RunView], shown: RunView | None) -> None:
    st.subheader("Your runs")
    st.caption(
        "Your runs stay here when you reload the page or open the app in another tab of this browser, and "
        "finished ones for a week even if the server restarts. Nobody else sees them."
    )
    registry, uid = state.run_registry(), state.user_id()
    for view in runs:
        with st.container(border=True, key=f"run_{view.id}"):
            text, buttons = st.columns([4, 2], vertical_alignment="center")
            marker = " (shown below)" if shown is not None and view.id == shown.id else ""
            text.markdown(f"**{plain(view.label)}**{marker} · {plain(status_text(view))}")
            text.caption(run_text(view))
            with buttons:
                row = st.container(horizontal=True, horizontal_alignment="right")
                if shown is None or view.id != shown.id:
                    row.button("Watch", key=f"watch_{view.id}", icon=":material/visibility:",
                               on_click=state.show_run, args=(view.id,))  # fmt: skip
                if view.snapshot.running:
                    row.button("Stop", key=f"stop_{view.id}", icon=":material/stop_circle:",
                               on_click=registry.stop, args=(uid, view.id))  # fmt: skip


def show_live(view: RunView) -> None:
    snap = view.snapshot
    doing = "waiting" if snap.status == QUEUED else "paused" if snap.pause_requested else "training…"
    st.subheader(f"{plain(view.label)}: {doing}")
    st.caption(run_text(view) + ". You can reload, switch pages or close the tab: training keeps going.")
    bar, pause_column, stop_column = st.columns([4, 1.3, 1.1], vertical_alignment="center")
    bar.progress(snap.fraction_done, text=progress_text(view))
    registry, uid = state.run_registry(), state.user_id()
    if snap.pause_requested:
        pause_column.button(
            "Resume", icon=":material/play_arrow:", key="resume", on_click=registry.resume, args=(uid, view.id),
            width="stretch", help="Carry on training where it paused.",
        )  # fmt: skip
    else:
        pause_column.button(
            "Pause", icon=":material/pause:", key="pause", on_click=registry.pause, args=(uid, view.id),
            width="stretch", disabled=snap.status not in (STARTING, TRAINING) or snap.stopping,
            help="Hold the training after this batch (it uses no CPU while paused); Resume carries on.",
        )  # fmt: skip
    stop_column.button(
        "Stop",
        icon=":material/stop_circle:",
        key="stop",
        on_click=registry.stop,
        args=(uid, view.id),
        width="stretch",
    )
    if view.kind == FINE_TUNE_RUN:  # no curves: a fine-tune's steps measure no loss
        st.caption("Learning your handwriting; the My digits page shows what it changed when it is done.")
        return
    st.space("small")  # room for the charts' hover toolbar, so it never covers the progress bar
    show_history(snap.history)
    show_weights(snap, live=True)


def moment_text(view: RunView) -> str:
    """Which moment each figure belongs to, for a run that ended early."""
    history = view.snapshot.history
    last = history[-1]
    epochs = [h for h in history if h.get("val_acc") is not None]
    val = (
        f"at the end of epoch {epochs[-1]['epoch']}, the last whole epoch"
        if epochs
        else "not measured (no whole epoch)"
    )
    return (
        f"Stopped in epoch {last['epoch']} of {last['epochs']}, after batch {last['batch']} of "
        f"{last['batches_per_epoch']}. Test accuracy, the charts below and the model are the network at that moment; "
        f"validation accuracy was measured {val}; training time and images per second run up to the stop."
    )


def show_results(view: RunView) -> None:
    snap = view.snapshot
    ev = snap.evaluation
    registry, uid = state.run_registry(), state.user_id()
    model = registry.model(uid, view.id)
    if ev is None or model is None:
        return
    if snap.status == STOPPED:
        st.warning(
            "Training was stopped early. The results are for the network as it was then.", icon=":material/stop_circle:"
        )
    elif ev.accuracy <= CHANCE_ACCURACY:
        usual = USUAL_LEARNING_RATES.get(view.config.optimizer)
        st.warning(
            f"The network did not learn: it got **{ev.accuracy:.2%}** of {ev.n:,} unseen test digits right, "
            f"about what guessing gets (10%). The learning rate ({view.config.learning_rate:g}) is probably too "
            f"high{f' (about {usual:g} usually works for {view.config.optimizer})' if usual else ''}.",
            icon=":material/trending_flat:",
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
    if snap.status == STOPPED:
        st.caption(moment_text(view))

    if snap.note:
        st.caption(plain(snap.note))

    st.subheader("Learning curves")
    show_history(snap.history)
    show_weights(snap, live=False)

    st.subheader("Where it goes wrong")
    left, right = st.columns(2)
    left.altair_chart(per_digit_chart(ev), width="stretch", height=330)
    right.altair_chart(confusion_chart(ev), width="stretch", height=330)
    if len(ev.mistakes) and snap.mistake_images is not None and snap.mistake_labels is not None:
        st.caption("The test digits it got most confidently wrong:")
        with st.container(horizontal=True, key="worst_mistakes"):  # a row on a desktop, rows of three on a phone
            for image, label, said, p in zip(
                snap.mistake_images, snap.mistake_labels, ev.mistake_predicted, ev.mistake_probability
            ):
                st.image(enlarged(image), width=84, caption=f"is {label}, said {said} ({p:.0%})")
    explore = st.expander(
        "Explore the mistakes: any confusion-matrix cell, confidence vs accuracy, the \u201cnot sure\u201d rule",
        icon=":material/search:",
        key="explore_mistakes",
        on_change="rerun",
    )
    if explore.open:  # it runs the model over the 10,000 test digits (once per run): only when asked
        with explore:
            try:
                data = state.get_mnist()
            except mnist_net.MnistError as e:
                st.error(f"The test digits are not available: {plain(e)}", icon=":material/cloud_off:")
            else:
                show_mistakes_explorer(view.id, model, data)
    show_keep(view, model)


def show_keep(view: RunView, model: mnist_net.MLP, offer_more: bool = True) -> None:
    registry, uid = state.run_registry(), state.user_id()
    st.subheader("Keep it")
    if view.kept_path is None:
        st.caption(
            "This model lives only in your runs list until you keep it: finished runs stay there for a week (a server "
            "restart keeps them too) until newer runs push them off. Kept models go into the models folder, which "
            "everyone's Draw page lists."
        )
        name_col, keep_col = st.columns([3, 1], vertical_alignment="bottom")
        name = name_col.text_input("Name", value=f"run {view.number}", key=f"keep_name_{view.id}", max_chars=60)
        if keep_col.button("Keep", type="primary", icon=":material/save:", key="keep_model", width="stretch"):
            try:
                registry.keep(uid, view.id, name)
            except RunRefused as e:
                st.error(str(e), icon=":material/error:")
            else:
                st.rerun()
    else:
        st.caption(f"Kept in the models folder as `{plain(view.kept_path.name)}`.")
        name_col, rename_col, delete_col = st.columns([3, 1, 1], vertical_alignment="bottom")
        name = name_col.text_input(
            "Name", value=view.name or "", key=f"rename_{view.id}_{view.kept_path.name}", max_chars=60
        )
        rename = rename_col.button("Rename", icon=":material/edit:", key="rename_model", width="stretch")
        delete = delete_col.button("Delete file", icon=":material/delete:", key="delete_kept", width="stretch")
        try:
            if rename:
                registry.rename(uid, view.id, name)
                st.rerun()
            if delete:
                registry.delete_kept(uid, view.id)
                st.rerun()
        except RunRefused as e:
            st.error(str(e), icon=":material/error:")
    left, right = st.columns(2)
    use = left.button(
        "Use this model on the Draw page", type="primary", icon=":material/draw:", key="use_model", width="stretch"
    )
    job = registry.job(uid, view.id)
    right.download_button(
        "Download model (.pkl)",
        data=(job.model_bytes if job is not None else None) or b"",
        file_name=view.kept_path.name if view.kept_path else f"mnist-run-{view.number}.pkl",
        mime="application/octet-stream",
        icon=":material/download:",
        key="download_model",
        width="stretch",
    )
    if use:
        state.use_run_model(view.id)
        st.switch_page("pages/draw.py")
    if offer_more:
        show_train_more(view)


def show_train_more(view: RunView) -> None:
    """Train N more epochs of this run's model, as a new run that says what it continues."""
    registry, uid = state.run_registry(), state.user_id()
    st.subheader("Train more")
    done = max((int(h["epoch"]) for h in view.snapshot.history if h["kind"] == "epoch"), default=0)
    partly = view.snapshot.status == STOPPED and view.snapshot.history and view.snapshot.history[-1]["kind"] != "epoch"
    st.caption(
        f"Carries on from this network after its {done} whole epoch{'s' if done != 1 else ''}: the same weights and "
        "optimiser state, the curves continue. It is a new run in your list; this one stays as it is."
        + (" The part of the epoch before the stop is trained again from its start." if partly else "")
    )
    busy = any(v.snapshot.running for v in registry.runs(uid))
    epochs_col, button_col = st.columns([3, 1], vertical_alignment="bottom")
    more = epochs_col.number_input(
        "More epochs", min_value=1, max_value=MAX_MORE_EPOCHS, value=min(MAX_MORE_EPOCHS, max(1, view.config.epochs)),
        key=f"more_epochs_{view.id}",
    )  # fmt: skip
    if button_col.button(
        "Train more", icon=":material/fast_forward:", key="train_more", width="stretch", disabled=busy,
        help="Wait for your other run to finish first." if busy else None,
    ):  # fmt: skip
        try:
            run_id = registry.submit_more(uid, view.id, int(more), state.mnist_folder())
        except RunRefused as e:
            st.error(str(e), icon=":material/block:")
        except mnist_net.MnistError as e:
            show_mnist_help(e)
        else:
            state.show_run(run_id)
            st.rerun()


def show_fine_tune_results(view: RunView) -> None:
    """A finished fine-tune in short (the My digits page shows it in full), and keeping its model."""
    tuning, model = view.tuning or {}, state.run_registry().model(state.user_id(), view.id)
    if model is None:
        return
    if view.snapshot.status == STOPPED:
        st.warning("Stopped early: the figures are for the network as it was then.", icon=":material/stop_circle:")
    if view.snapshot.note:
        st.caption(plain(view.snapshot.note))
    held, mnist = st.columns(2)
    if tuning.get("held_out_after") is not None:
        held.metric(
            f"Your {tuning['n_held_out']} held-out digits", f"{tuning['held_out_after']:.1%}",
            f"{100 * (tuning['held_out_after'] - tuning['held_out_before']):+.1f} points",
        )  # fmt: skip
    if tuning.get("mnist_after") is not None and tuning.get("mnist_before") is not None:
        mnist.metric(
            "MNIST test",
            f"{tuning['mnist_after']:.2%}",
            f"{100 * (tuning['mnist_after'] - tuning['mnist_before']):+.2f} points",
        )
    st.caption(f"Taught on {tuning.get('n_train', 0)} of your digits. The My digits page shows which ones flipped.")
    show_keep(view, model, offer_more=False)


def show_ending(view: RunView) -> None:
    """A finished run: its results, or why there are none."""
    snap = view.snapshot
    st.subheader(plain(view.label))
    st.caption(run_text(view))
    if snap.status == DIVERGED:
        st.error(snap.error or "Training diverged.", icon=":material/trending_up:")
        st.caption("The network was stopped there: its weights are no use, so there is nothing to test or keep.")
        show_history(snap.history)
    elif snap.status == FAILED:
        st.error(f"Training failed: {snap.error}", icon=":material/error:")
    elif snap.status == CANCELLED:
        st.info("This run was stopped before it started.", icon=":material/block:")
    elif view.kind == FINE_TUNE_RUN:
        show_fine_tune_results(view)
    else:
        show_results(view)
    st.button(
        "Remove this run from the list",
        icon=":material/playlist_remove:",
        key="forget_run",
        on_click=forget,
        args=(view.id,),
        help="A model you kept stays in the models folder.",
    )


def settings_table(views: list[RunView]) -> pd.DataFrame:
    """One row per run: its settings and result, for "runs side by side"."""
    rows = []
    for v in views:
        cfg, ev = v.config, v.snapshot.evaluation
        rows.append(
            {
                "run": v.label, "test accuracy": None if ev is None else f"{ev.accuracy:.2%}",
                "layers": "→".join(map(str, cfg.layer_sizes)), "activation": cfg.activation,
                "optimiser": cfg.optimizer, "learning rate": cfg.learning_rate, "batch": cfg.batch_size,
                "epochs": cfg.epochs, "images": cfg.n_train or N_MNIST_TRAIN, "augmented": cfg.augment,
                "seed": cfg.seed, "status": STATUS_WORDS.get(v.snapshot.status, v.snapshot.status),
            }
        )  # fmt: skip
    return pd.DataFrame(rows)


def forget(run_id: str) -> None:
    state.run_registry().forget(state.user_id(), run_id)
    state.show_run(None)


def form_default(saved: dict, key: str, fallback, choices=None):
    """The form's starting value: what this user last submitted (if still valid), else the app's."""
    value = saved.get(key, fallback)
    if choices is not None and value not in choices:
        return fallback
    if type(value) is not type(fallback):
        return fallback
    return value


st.title("Train a network")
st.caption("Train a fresh network on MNIST's handwritten digits and watch it learn, live.")
# Sets the id cookie on a first visit (an invisible element; in the page, not the sidebar, which
# on phones holds only a page's own settings).
state.remember_user()

uid = state.user_id()
registry = state.run_registry()
runs = registry.runs(uid)
shown = state.shown_run(runs)
running = any(v.snapshot.running for v in runs)
saved = registry.settings(uid)

if not running and not mnist_is_local():
    st.info(
        "MNIST (the 70,000 training and test digits) is not on this machine yet. Pressing "
        "Start downloads it (about 11 MB) first.",
        icon=":material/info:",
    )

settings = st.expander(
    "Settings" if not runs else "Settings: change them and train again",
    expanded=not runs,
    icon=":material/tune:",
)


def epoch_time_text(hidden_text: str, layers_text: str) -> str:
    """How long one epoch over all of MNIST takes here, for both kinds of network (budget's estimate)."""
    parts = []
    for name, changes in (("the MLP", {"hidden_sizes": hidden_text}), ("the CNN", {"layers": layers_text})):
        try:
            if "hidden_sizes" in changes:
                cfg = replace(START, epochs=1, n_train=None, hidden_sizes=parse_hidden_sizes(hidden_text))
            else:
                cfg = replace(START, epochs=1, n_train=None, layers=layers_text)
        except ValueError:
            continue
        seconds = estimate_training_cost(cfg, N_MNIST_TRAIN).seconds
        when = f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
        parts.append(f"about {when} for {name}")
    return (
        "One epoch over all 60,000 images takes " + " and ".join(parts) + " on this server (estimated "
        "from measured speeds, on the high side; slower while other runs train). Fewer training images: "
        "proportionally less."
    )


with settings, st.form("train_form", border=False):
    top_left, top_right = st.columns([1, 3])
    network = top_left.radio(
        "Network",
        NETWORKS,
        index=NETWORKS.index(form_default(saved, "network", "MLP", NETWORKS)),
        horizontal=True,
        key="network",
        persist_state="session",
        help="MLP: dense layers only (the hidden sizes below). CNN: convolutions that look for strokes "
        "anywhere in the image; reads drawn digits better, but an epoch takes far longer here.",
    )
    cnn_layers = top_right.text_input(
        "CNN layers (for CNN)",
        form_default(saved, "layers", PRESETS["cnn"]),
        key="cnn_layers",
        persist_state="session",
        help="Layers from the image to the 10 scores, separated by ->: conv CHANNELSxKxK (add 'valid' for no "
        "padding), pool SIZE, dense UNITS, dropout RATE; the last is dense 10. Each conv and dense layer "
        "but the last is followed by the activation.",
    )
    left, right = st.columns(2)
    hidden = left.text_input(
        "Hidden layer sizes (for MLP)",
        form_default(saved, "hidden_sizes", ",".join(map(str, START.hidden_sizes))),
        key="hidden_sizes",
        persist_state="session",
        help="For MLP: units in each hidden layer, comma-separated. 128,64 gives 784→128→64→10.",
    )
    activation = left.selectbox(
        "Activation",
        ACTIVATIONS,
        index=ACTIVATIONS.index(form_default(saved, "activation", START.activation, ACTIVATIONS)),
        key="activation",
        persist_state="session",
    )
    optimizer = left.selectbox(
        "Optimiser",
        OPTIMIZERS,
        index=OPTIMIZERS.index(form_default(saved, "optimizer", START.optimizer, OPTIMIZERS)),
        key="optimizer",
        persist_state="session",
    )
    lr = left.number_input(
        "Learning rate",
        min_value=1e-5,
        max_value=5.0,
        value=min(5.0, max(1e-5, form_default(saved, "learning_rate", START.learning_rate))),
        step=1e-4,
        format="%.4f",
        key="learning_rate",
        persist_state="session",
        help="About " + ", ".join(f"{v:g} for {k}" for k, v in reversed(USUAL_LEARNING_RATES.items())) + ".",
    )
    n_train = right.number_input(
        "Training images",
        min_value=100,
        max_value=N_MNIST_TRAIN,
        value=min(N_MNIST_TRAIN, max(100, form_default(saved, "n_train", START.n_train or N_MNIST_TRAIN))),
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
        value=min(200, max(1, form_default(saved, "epochs", START.epochs))),
        key="epochs",
        persist_state="session",
        help="Passes over the training images.",
    )
    batch_size = right.number_input(
        "Batch size",
        min_value=1,
        max_value=4096,
        value=min(4096, max(1, form_default(saved, "batch_size", START.batch_size))),
        step=16,
        key="batch_size",
        persist_state="session",
    )
    seed = right.number_input(
        "Seed",
        min_value=0,
        max_value=2**31 - 1,
        value=min(2**31 - 1, max(0, form_default(saved, "seed", START.seed))),
        key="seed",
        persist_state="session",
        help="Same settings and seed give the same network.",
    )
    augment = st.toggle(
        "Augment: randomly shift, rotate, scale and thicken the digits while training",
        value=form_default(saved, "augment", START.augment),
        key="augment",
        persist_state="session",
        help="Slower to learn, but copes better with digits drawn by hand on the canvas.",
    )
    st.caption(
        epoch_time_text(
            form_default(saved, "hidden_sizes", ",".join(map(str, START.hidden_sizes))),
            form_default(saved, "layers", PRESETS["cnn"]),
        )
    )
    start = st.form_submit_button(
        "Start training", type="primary", icon=":material/play_arrow:", disabled=running, key="start"
    )


def config_from_form() -> TrainConfig:
    """The form's values on top of the app's starting config; ValueError says what is wrong."""
    n = int(n_train)
    if network == "CNN":
        architecture = {"layers": str(cnn_layers)}
    else:
        architecture = {"hidden_sizes": parse_hidden_sizes(hidden), "layers": ""}
    return replace(
        START, **architecture, activation=activation, optimizer=optimizer,
        learning_rate=float(lr), batch_size=int(batch_size), epochs=int(epochs), augment=bool(augment),
        n_train=None if n >= N_MNIST_TRAIN else n, seed=int(seed), log_every=log_every_for(n, int(batch_size)),
    )  # fmt: skip


if start and not running:
    registry.remember_settings(
        uid,
        {
            "network": str(network), "layers": str(cnn_layers),
            "hidden_sizes": str(hidden), "activation": activation, "optimizer": optimizer,
            "learning_rate": float(lr), "n_train": int(n_train), "epochs": int(epochs),
            "batch_size": int(batch_size), "seed": int(seed), "augment": bool(augment),
        },
    )  # fmt: skip
    try:
        config = config_from_form()
    except ValueError as e:
        st.error(f"Please check the settings: {e}", icon=":material/warning:")
    else:
        try:
            with st.spinner("Finding MNIST…"):
                folder = state.mnist_folder()
        except mnist_net.MnistError as e:
            show_mnist_help(e)
        else:
            try:
                state.start_training(config, folder)
            except RunRefused as e:
                st.error(str(e), icon=":material/block:")
            else:
                st.rerun()  # redraw with the form folded away and the new run shown


active_ids = {v.id for v in runs if v.snapshot.running}


def polls_slowly(view: RunView | None) -> bool:
    """Waiting for a slot or paused: nothing moves, so the page asks less often."""
    return view is not None and (view.snapshot.status == QUEUED or view.snapshot.pause_requested)


waiting = polls_slowly(shown)
short = shown is not None and estimate_training_cost(shown.config, N_MNIST_TRAIN).seconds < SHORT_RUN_SECONDS
poll = WAITING_POLL_SECONDS if waiting else FAST_POLL_SECONDS if short else POLL_SECONDS


@st.fragment(run_every=poll if active_ids else None)
def runs_and_live_panel() -> None:
    now = registry.runs(uid)
    current = next((v for v in now if shown is not None and v.id == shown.id), None)
    if (
        {v.id for v in now if v.snapshot.running} != active_ids
        or st.session_state.get(state.SELECTED_RUN_KEY) not in (None, shown.id if shown else None)
        or (current is not None and polls_slowly(current) != waiting)
    ):
        # A run ended or started, or a Watch was pressed, since the page was drawn: redraw it all.
        st.rerun(scope="app")
    show_runs_list(now, current)
    if current is not None and current.snapshot.running:
        show_live(current)


if runs:
    runs_and_live_panel()
    if shown is not None and not shown.snapshot.running:
        show_ending(shown)
trainings = [v for v in runs if v.kind != FINE_TUNE_RUN]  # a fine-tune has no curves to overlay
if len(trainings) >= 2:
    side_by_side = st.expander(
        "Runs side by side: curves overlaid, settings in a table",
        icon=":material/stacked_line_chart:",
        key="runs_side_by_side",
        on_change="rerun",
    )
    if side_by_side.open:
        with side_by_side:
            show_runs_side_by_side(trainings, settings_table)
