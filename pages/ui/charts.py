"""Chart builders for the pages: plain data in, an Altair chart or a Vega-Lite spec out.

No maths here either: the numbers come from ``mnist_net`` (probabilities, history columns,
an ``Evaluation``); these only say how to draw them.
"""

from __future__ import annotations

import math
from typing import Any

import altair as alt
import numpy as np
import pandas as pd

from mnist_net.history import history_columns, thin_history
from mnist_net.metrics import Evaluation

DIGITS = [str(d) for d in range(10)]
BLUE, ORANGE, GREY = "#3b5bdb", "#f08c00", "#c5cbd8"


def probability_chart(proba: np.ndarray, digit: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(data, Vega-Lite spec) of the ten probabilities as bars, the guessed digit highlighted.

    A plain spec, not Altair: it is drawn after every stroke, and building and validating an
    Altair chart took most of a stroke's server time. The spec never changes, so the browser
    only swaps the data.
    """
    table = pd.DataFrame(
        {"digit": DIGITS, "probability": proba.astype(float), "chosen": [d == digit for d in range(10)]}
    )
    spec = {
        "mark": {"type": "bar"},
        "encoding": {
            "x": {
                "field": "digit",
                "type": "nominal",
                "sort": DIGITS,
                "title": None,
                "axis": {"labelAngle": 0, "labelFontSize": 13},
            },
            "y": {
                "field": "probability",
                "type": "quantitative",
                "title": None,
                "scale": {"domain": [0, 1]},
                "axis": {"format": ".0%", "tickCount": 3},
            },
            "color": {"condition": {"test": "datum.chosen", "value": BLUE}, "value": GREY},
            "tooltip": [
                {"field": "digit", "type": "nominal"},
                {"field": "probability", "type": "quantitative", "format": ".1%"},
            ],
        },
    }
    return table, spec


def epoch_axis_end(last_epoch: float) -> int:
    """The epoch axis runs from 0 to the end of the epoch in progress (at least 1)."""
    return max(1, math.ceil(last_epoch - 1e-9))


def learning_curve(
    history: list[dict], columns: dict[str, str], title: str, percent: bool
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(data, Vega-Lite spec) of one line per series; validation points appear once per epoch.

    The epoch axis shows whole epochs, up to the end of the epoch in progress; the legend sits
    above the plot, never over a curve; padding keeps the last labels inside the chart. A plain
    Vega-Lite spec, not Altair: it is redrawn at every poll while training, so it must be cheap;
    the history is thinned to a bounded number of points.
    """
    table = pd.DataFrame(history_columns(thin_history(history)))
    long = table.melt(id_vars="epoch", value_vars=list(columns), var_name="series").dropna()
    long = long[np.isfinite(long["value"])]  # a diverged run's infinite loss cannot be drawn
    long["series"] = long["series"].map(columns)
    end = epoch_axis_end(float(table["epoch"].max()) if len(table) else 1.0)
    spec = {
        "title": {"text": title, "anchor": "start", "offset": 0},
        "padding": {"left": 4, "top": 4, "right": 16, "bottom": 4},
        "mark": {"type": "line", "point": {"size": 25}},
        "encoding": {
            "x": {
                "field": "epoch",
                "type": "quantitative",
                "title": "epoch",
                "scale": {"domain": [0, end], "nice": False},
                # Whole epochs only. (Explicit tick "values" with a "d" format lose some ticks in Vega.)
                "axis": {"tickMinStep": 1, "format": "d"},
            },
            "y": {
                "field": "value",
                "type": "quantitative",
                "title": None,
                "scale": {"zero": False},
                "axis": {"format": ".0%"} if percent else {},
            },
            "color": {
                "field": "series",
                "type": "nominal",
                "title": None,
                "scale": {"domain": ["training", "validation"], "range": [BLUE, ORANGE]},
                "legend": {"orient": "top", "direction": "horizontal", "offset": 0, "padding": 0},
            },
            "tooltip": [
                {"field": "series"},
                {"field": "epoch", "type": "quantitative", "format": ".2f"},
                {"field": "value", "type": "quantitative", "format": ".4f"},
            ],
        },
    }
    return long, spec


def accuracy_curve(history: list[dict]) -> tuple[pd.DataFrame, dict[str, Any]]:
    return learning_curve(history, {"train_acc": "training", "val_acc": "validation"}, "Accuracy", percent=True)


def loss_curve(history: list[dict]) -> tuple[pd.DataFrame, dict[str, Any]]:
    return learning_curve(history, {"loss": "training", "val_loss": "validation"}, "Loss", percent=False)


def per_digit_chart(ev: Evaluation) -> alt.LayerChart:
    """Accuracy per digit as labelled bars."""
    per_class = pd.DataFrame({"digit": DIGITS, "accuracy": ev.per_class})
    per_digit = alt.Chart(per_class, title="Accuracy per digit").encode(
        x=alt.X("digit:N", sort=DIGITS, title="digit", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("accuracy:Q", title=None, axis=alt.Axis(format=".0%"), scale=alt.Scale(domain=[0, 1])),
        tooltip=["digit", alt.Tooltip("accuracy:Q", format=".2%")],
    )
    return per_digit.mark_bar() + per_digit.mark_text(dy=-6, fontSize=9).encode(
        text=alt.Text("accuracy:Q", format=".0%")
    )


def confusion_chart(ev: Evaluation) -> alt.LayerChart:
    """The confusion matrix as a heat map with counts (log-like colour scale: errors stay visible)."""
    true_d, pred_d = np.meshgrid(np.arange(10), np.arange(10), indexing="ij")
    cells = pd.DataFrame(
        {
            "true digit": true_d.ravel().astype(str),
            "predicted": pred_d.ravel().astype(str),
            "count": ev.confusion.ravel(),
        }
    )
    base = alt.Chart(cells, title="Confusion matrix").encode(
        x=alt.X("predicted:N", sort=DIGITS, axis=alt.Axis(labelAngle=0, orient="top", labelOverlap=False)),
        y=alt.Y("true digit:N", sort=DIGITS, axis=alt.Axis(labelOverlap=False)),
    )
    heat = base.mark_rect().encode(
        color=alt.Color("count:Q", scale=alt.Scale(type="symlog", scheme="blues"), legend=None),
        tooltip=["true digit", "predicted", "count"],
    )
    text = base.mark_text(fontSize=10).encode(
        text="count:Q", color=alt.condition(alt.datum.count > ev.n / 20, alt.value("white"), alt.value("#333"))
    )
    return heat + text


def enlarged(image_784: np.ndarray, factor: int = 3) -> np.ndarray:
    """A 28x28 digit repeated into blocks so it stays crisp when shown bigger."""
    return np.repeat(np.repeat(image_784.reshape(28, 28), factor, axis=0), factor, axis=1)
