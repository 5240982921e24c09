"""The "look inside" views: how a drawing became the input, why this digit, inside the layers, stroke
by stroke, two models side by side (draw page); mistakes to explore, confidence against accuracy,
runs side by side (train page).

Each view is one function drawing numbers that ``mnist_net`` computed (``preprocess.input_steps``,
``explain``, ``inside``, ``metrics``); no maths here. The draw page's views sit in expanders below
the answer and run only while open (``look_inside``): a stroke reruns the drawing panel, and a
closed view costs it nothing.

"Why this digit" draws ``explain.margin_attribution``, "Inside the layers" ``inside.look_inside``
(every hidden layer's output, a CNN's first filters, the first dense layer's top units and their
weights). A new view is a ``DrawView`` in ``DRAW_VIEWS``; it gets the same ``Reading`` (model,
input, probabilities) as the others.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import streamlit as st

import mnist_net
from mnist_net.confidence import MIN_MARGIN, MIN_PROBABILITY, assess
from mnist_net.data import BOX, SIDE
from mnist_net.explain import margin_attribution
from mnist_net.inside import look_inside as layers_inside
from mnist_net.metrics import cell_members, coverage_curve, reliability_bins
from mnist_net.preprocess import InputSteps
from mnist_net.synth import naive_input
from pages.ui import state
from pages.ui.charts import (
    GREY_PALETTE,
    attribution_picture,
    boxed_fit,
    boxed_picture,
    comparison_chart,
    coverage_chart,
    enlarged,
    filter_grid,
    grey_picture,
    map_grid,
    pad_to,
    placed_picture,
    png,
    reliability_chart,
    runs_chart,
    signed_tiles,
    stroke_chart,
    unit_cells,
)
from pages.ui.style import picture_strip_html, plain

STEP_WIDTH = 112  # pixels per step picture (each is at most that wide)
WHY_WIDTH = 168  # pixels of the "why this digit" pictures (6 per input pixel)
UNIT_FACTOR = 3  # a top unit's 28x28 weights drawn 84 px wide
MAX_CELL_DIGITS = 24  # test digits shown for one confusion-matrix cell


@dataclass(frozen=True)
class Reading:
    """What the draw page's answer was read from, for the views below it."""

    model: mnist_net.MLP
    model_label: str
    x: np.ndarray  # (784,) the network input
    proba: np.ndarray  # (10,) the model's probabilities for it
    steps: InputSteps | None = None  # how the picture became x (None: x came some other way)
    picture: np.ndarray | None = None  # the picture itself (drawing or upload)
    stroke_inputs: list[tuple[int, np.ndarray | None]] = field(default_factory=list)  # the drawing's, per stroke
    other_models: dict[str, Callable[[], mnist_net.MLP]] = field(default_factory=dict)  # label -> loader

    @property
    def digit(self) -> int:
        return int(np.argmax(self.proba))


@dataclass(frozen=True)
class DrawView:
    key: str  # its expander's key (session state: open or not)
    label: str
    icon: str
    show: Callable[[Reading], None]


def verdict_text(proba: np.ndarray) -> str:
    v = assess(proba)
    return f"a {v.digit} ({v.probability:.0%})" + ("" if v.sure else ", not sure")


def show_steps(reading: Reading) -> None:
    """The steps of canvas_to_input as small pictures, beside a plain resize of the whole picture."""
    s = reading.steps
    if s is None or s.ink is None or s.box is None or s.fitted is None or s.offset is None:
        st.caption("No steps to show for this input.")
        return
    top, left, bottom, right = s.box
    pictures = [
        (grey_picture(s.ink, STEP_WIDTH), "1. Ink found"),
        (boxed_picture(s.kept, s.box, STEP_WIDTH), "2. Crop box"),
        (boxed_fit(s.fitted, BOX, STEP_WIDTH // BOX), f"3. Into {BOX}×{BOX}"),
        (placed_picture(s.input, s.offset, s.fitted.shape, STEP_WIDTH // SIDE), "4. Centred"),
    ]
    strip = [(png(pad_to(picture, STEP_WIDTH)), caption, "step") for picture, caption in pictures]
    naive = None if reading.picture is None else naive_input(reading.picture)
    if naive is not None:
        picture = (np.clip(enlarged(naive, STEP_WIDTH // SIDE), 0, 1) * 255).astype(np.uint8)
        strip.append((png(picture), "Plain resize", "apart naive"))
    st.container(key="input_steps").markdown(picture_strip_html(strip, STEP_WIDTH), unsafe_allow_html=True)
    st.caption(
        f"1: the background is taken away ({s.ink.shape[1]}×{s.ink.shape[0]} px). 2: specks far from the digit "
        f"are dropped and the box around its ink found ({right - left}×{bottom - top} px). 3: the box is resized "
        f"so its long side is {BOX} px ({s.fitted.shape[1]}×{s.fitted.shape[0]}: aspect kept), strokes made full "
        f"ink. 4: it is placed in {SIDE}×{SIDE} so its centre of mass (red dot) is on pixel (14, 14), as MNIST's "
        "digits were made. Right: the whole picture simply resized."
    )
    if naive is None:
        return
    naive_proba = reading.model.predict_proba(naive[None])[0]
    st.container(key="naive_verdict").markdown(
        f"**These steps:** the network says {verdict_text(reading.proba)}. "
        f"**A plain resize** of the whole picture to {SIDE}×{SIDE} (what many demos do): it would say "
        f"{verdict_text(naive_proba)}."
    )


def show_strokes(reading: Reading) -> None:
    """The ten probabilities after each stroke so far, by the model that is answering now."""
    points = [(n, x) for n, x in reading.stroke_inputs if x is not None]
    if not points:
        st.caption("Draw stroke by stroke: this chart grows with each one (Clear starts it again, Undo takes back).")
        return
    proba = reading.model.predict_proba(np.stack([x for _, x in points]))
    data, spec = stroke_chart([n for n, _ in points], proba, reading.digit)
    st.vega_lite_chart(data, spec, width="stretch", height=240, key="stroke_chart")
    st.caption(
        f"How sure the network was of each digit after each stroke: {len(points)} "
        f"stroke{'s' if len(points) != 1 else ''} with a digit to read so far. The bold line is its answer now."
    )


def show_comparison(reading: Reading) -> None:
    """The same input read by the chosen model and by another one from the picker."""
    if not reading.other_models:
        st.caption("There is only one model to choose from: train or upload another to compare.")
        return
    other_label = st.selectbox("Compare with", list(reading.other_models), key=state.COMPARE_KEY)
    try:
        other = reading.other_models[other_label]()
    except mnist_net.ModelFileError as e:
        st.error(f"**{plain(other_label)}** could not be used: {plain(e)}", icon=":material/error:")
        return
    other_proba = other.predict_proba(reading.x[None])[0]
    with st.container(key="compare_verdicts"):
        for column, label, proba in zip(
            st.columns(2), (reading.model_label, other_label), (reading.proba, other_proba)
        ):
            column.markdown(f"**{plain(label)}**  \nsays {verdict_text(proba)}")
    data, spec = comparison_chart({reading.model_label: reading.proba, other_label: other_proba})
    st.vega_lite_chart(data, spec, width="stretch", height=210, key="compare_chart")


def show_why(reading: Reading) -> None:
    """Which pixels pushed the network towards its answer (red) and which towards the runner-up (blue)."""
    a = margin_attribution(reading.model, reading.x)
    heat = attribution_picture(a.pixels, a.display_scale, reading.x, factor=WHY_WIDTH // SIDE)
    strip = [
        (png((np.clip(enlarged(reading.x, WHY_WIDTH // SIDE), 0, 1) * 255).astype(np.uint8)), "The input", "step"),
        (png(heat), f"Why {a.digit}, not {a.rival}", "step"),
    ]
    st.container(key="why_digit").markdown(picture_strip_html(strip, WHY_WIDTH), unsafe_allow_html=True)
    st.caption(
        f"Red: ink that made the network surer of {a.digit} than of {a.rival}, its runner-up; blue: ink that "
        f"spoke for {a.rival}; brighter is stronger (the strongest 5% in full colour). Method: the gradient "
        f"of the difference of the two digits' scores (logits: {a.margin:+.2f} now) with respect to each pixel, "
        "times the pixel's ink (gradient x input). Blank pixels show no colour: they pushed neither way."
    )


# Pictures of a model's weights (filters, a unit's 784 weights) do not change with the drawing: drawn
# once per model and kept with it (dropped with the model), not encoded again on every stroke.
_WEIGHT_PICTURES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
MAX_KEPT_PICTURES = 512  # per model: a dense first layer has at most 4096 units


def weight_picture(model: mnist_net.MLP, key: Hashable, draw: Callable[[], bytes]) -> bytes:
    """The PNG ``draw()`` returns for this model's weights ``key``, drawn on first use only."""
    kept = _WEIGHT_PICTURES.setdefault(model, {})
    if key not in kept:
        if len(kept) >= MAX_KEPT_PICTURES:
            kept.clear()
        kept[key] = draw()
    return kept[key]


def layer_caption(layer) -> str:
    """ "1 · conv 32x5x5 · 32 maps 28×28" or "5 · dense 256 · 256 units": the layer by its spec and what is drawn."""
    if layer.is_map:
        c, h, w = layer.values.shape
        return f"{layer.position} · {layer.title} · {c} map{'s' if c != 1 else ''} {h}×{w}"
    n = layer.values.size
    return f"{layer.position} · {layer.title} · {n} unit{'s' if n != 1 else ''}"


def show_layers(reading: Reading) -> None:
    """Each hidden layer's output for this input; a CNN's first filters; the first dense layer's top units."""
    inside = layers_inside(reading.model, reading.x)
    top = inside.top
    if inside.filters is not None:
        n, kh, kw = inside.filters.shape
        filters = weight_picture(reading.model, "filters", lambda: png(filter_grid(inside.filters)))
        strip = [(filters, f"1 · {inside.filters_title} · {n} filters {kh}×{kw}", "grid")]
        st.container(key="layer_filters").markdown(picture_strip_html(strip, None), unsafe_allow_html=True)
        st.caption(
            f"The first layer's {n} filters, each {kh}×{kw} weights: red positive, blue negative, black about zero "
            "(each filter scaled to its own strongest weight). Each one slides over the input; where the ink lies "
            "on its red and not on its blue, its map below lights up."
        )
    if not inside.layers:
        st.caption("This network has no hidden layers: its inputs go straight to the ten scores.")
        return
    strip = []
    for layer in inside.layers:
        picture = (
            png(map_grid(layer.shown), GREY_PALETTE)
            if layer.is_map
            else png(unit_cells(layer.shown, top.units if top is not None and layer.position == top.position else None))
        )
        strip.append((picture, layer_caption(layer), "grid"))
    st.container(key="layer_outputs").markdown(picture_strip_html(strip, None), unsafe_allow_html=True)
    marked = (
        f" Orange: the {len(top.units)} units of {top.title} that fired most."
        if top is not None and len(top.units)
        else ""
    )
    st.caption(
        "What each hidden layer made of your drawing, in the network's order, named by its spec (dropout is left "
        "out: it changes nothing when the network reads). Conv and pool layers: one small picture per channel "
        "(its feature map). Dense layers: one cell per unit, the first top left, row by row, in a fixed place "
        "(not sorted), so you can watch the same units light up as you draw. White is the layer's strongest "
        f"output, black nothing (one scale per layer: a map that hardly responds stays dark).{marked}"
    )
    if top is None or not len(top.units):
        return
    if top.weights is None:
        units = ", ".join(f"{u + 1} ({a:.2f})" for u, a in zip(top.units, top.activations))
        st.caption(
            f"The units of {top.title} that fired most: {units}. They read the maps above, not pixels, so their "
            "weights are no 28×28 picture."
        )
        return
    strip = [
        (
            weight_picture(reading.model, ("unit", int(u)), lambda w=w: png(signed_tiles(w[None], 1, UNIT_FACTOR))),
            f"unit {u + 1} · {a:.2f}",
            "unit",
        )
        for u, a, w in zip(top.units, top.activations, top.weights)
    ]
    st.container(key="top_units").markdown(picture_strip_html(strip, 28 * UNIT_FACTOR), unsafe_allow_html=True)
    st.caption(
        f"The {len(top.units)} units of {top.title} (the first layer) that fired most for your drawing, strongest "
        "first, with their output. Each picture is that unit's 784 incoming weights, one per input pixel: red "
        "pixels raise the unit when they have ink, blue ones lower it (each picture scaled to its own strongest "
        "weight). A unit fires when your ink falls on its red and misses its blue."
    )


DRAW_VIEWS = [
    DrawView("inside_steps", "How your drawing became the input", ":material/transform:", show_steps),
    DrawView("inside_why", "Why this digit", ":material/psychology:", show_why),
    DrawView("inside_layers", "Inside the layers", ":material/layers:", show_layers),
    DrawView("inside_strokes", "Stroke by stroke", ":material/timeline:", show_strokes),
    DrawView("inside_compare", "Compare two models", ":material/compare:", show_comparison),
]


def look_inside(reading: Reading | None) -> None:
    """The draw page's views, each in an expander whose code runs only while it is open."""
    st.caption("Look inside")
    for view in DRAW_VIEWS:
        box = st.expander(view.label, icon=view.icon, key=view.key, on_change="rerun")
        if box.open:
            with box:
                if reading is None:
                    st.caption("Draw a digit first: this shows what the network did with it.")
                else:
                    view.show(reading)


# --- the train page's views -------------------------------------------------------------------------


def test_probabilities(run_id: str, model: mnist_net.MLP, X_test: np.ndarray) -> np.ndarray:
    """(n, 10) the run's model's probabilities on the test images, computed once per run in this session."""
    cached = st.session_state.get(state.TEST_PROBABILITIES_KEY)
    if cached is None or cached[0] != run_id:
        cached = (run_id, model.predict_proba(X_test))
        st.session_state[state.TEST_PROBABILITIES_KEY] = cached
    return cached[1]


def show_mistakes_explorer(run_id: str, model: mnist_net.MLP, data: mnist_net.Mnist) -> None:
    """Choose a confusion-matrix cell, see its test digits; confidence vs accuracy; the not-sure rule's trade."""
    proba = test_probabilities(run_id, model, data.X_test)
    y = data.y_test
    said = proba.argmax(axis=1)
    counts = np.bincount(y * 10 + said, minlength=100).reshape(10, 10)
    cells = sorted(
        ((int(t), int(p)) for t, p in zip(*np.nonzero(counts))),
        key=lambda c: (c[0] == c[1], -counts[c]),
    )  # mistakes first, the commonest first
    chosen = st.selectbox(
        "Confusion-matrix cell",
        cells,
        format_func=lambda c: (
            f"a {c[0]} read as {c[1]} ({counts[c]:,} test digits)"
            if c[0] != c[1]
            else f"a {c[0]} read right ({counts[c]:,})"
        ),
        key=f"cell_{run_id}",
    )
    if chosen is not None:
        members = cell_members(y, proba, *chosen)
        shown = members[:MAX_CELL_DIGITS]
        st.caption(
            f"{len(members):,} test digits are a {chosen[0]} the network read as {chosen[1]}"
            + (f"; the {len(shown)} it was surest of:" if len(members) > len(shown) else ":")
        )
        with st.container(horizontal=True, key="cell_digits"):
            for i in shown:
                truth = "" if chosen[0] == chosen[1] else f" · {chosen[0]}: {proba[i, chosen[0]]:.0%}"
                caption = f"{chosen[1]}: {proba[i, chosen[1]]:.0%}{truth}"
                st.image(enlarged(data.X_test[i] / 255.0), width=90, caption=caption)
    left, right = st.columns(2)
    bins = reliability_bins(y, proba)
    with left:
        table, spec = reliability_chart(bins)
        st.vega_lite_chart(table, spec, width="stretch", height=280, key="reliability_chart")
        st.caption(
            f"Test digits grouped by how sure the network was. A bar under the dashed line: less often right "
            f"than it was sure (overconfident). Calibration error: {bins.calibration_error:.2%}."
        )
    curve = coverage_curve(y, proba)
    with right:
        table, spec = coverage_chart(curve)
        st.vega_lite_chart(table, spec, width="stretch", height=280, key="coverage_chart")
        i = curve.current
        st.caption(
            f"The app says \u201cnot sure\u201d unless the top probability is at least {MIN_PROBABILITY:.2f} and "
            f"{MIN_MARGIN:.2f} ahead of the runner-up. For this model it answers {curve.coverage[i]:.1%} of the "
            f"test digits as sure, {curve.accuracy[i]:.2%} of them right (all answers: {curve.accuracy[0]:.2%}). "
            "Stricter thresholds (left along the curve) answer fewer, more often right."
        )


def show_runs_side_by_side(views: list, settings_table: Callable[[list], pd.DataFrame]) -> None:
    """This browser's runs' curves overlaid, and their settings in a table."""
    with_history = [v for v in views if v.snapshot.history]
    if len(with_history) < 2:
        st.caption("Train two or more networks to compare them here (change one setting, train again).")
        return
    curves = {v.label: v.snapshot.history for v in reversed(with_history)}
    left, right = st.columns(2)
    for column, (col, title, percent) in zip(
        (left, right), (("val_acc", "Validation accuracy", True), ("loss", "Training loss", False))
    ):
        data, spec = runs_chart(curves, col, title, percent)
        column.vega_lite_chart(data, spec, width="stretch", height=280, key=f"runs_{col}")
    st.dataframe(settings_table(list(reversed(with_history))), hide_index=True, width="stretch", key="runs_table")
