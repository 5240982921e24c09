"""Chart builders for the pages: plain data in, an Altair chart or a Vega-Lite spec out.

No maths here either: the numbers come from ``mnist_net`` (probabilities, history columns,
an ``Evaluation``); these only say how to draw them.
"""

from __future__ import annotations

import io
import math
from typing import Any

import altair as alt
import numpy as np
import pandas as pd
from PIL import Image

from mnist_net.history import history_columns, thin_history
from mnist_net.inside import scaled_per_tile
from mnist_net.metrics import Evaluation

DIGITS = [str(d) for d in range(10)]
BLUE, ORANGE, GREY = "#3b5bdb", "#f08c00", "#c5cbd8"


def probability_axis() -> dict[str, Any]:
    """The y encoding every probability chart shares: 0-100% with three ticks (a fresh dict each time)."""
    return {
        "field": "probability",
        "type": "quantitative",
        "title": None,
        "scale": {"domain": [0, 1]},
        "axis": {"format": ".0%", "tickCount": 3},
    }


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
            "y": probability_axis(),
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


# --- look inside: the draw page's views ----------------------------------------------------------

DIGIT_COLOURS = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
]  # fmt: skip
BOX_RED = np.array([230, 60, 60], np.uint8)


def stroke_chart(strokes: list[int], proba: np.ndarray, guess: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(data, Vega-Lite spec) of the ten probabilities after each stroke: one line per digit, the guess bold.

    strokes: (k,) stroke counts; proba: (k, 10). A plain spec (drawn per stroke: cheap to build).
    """
    k = len(strokes)
    table = pd.DataFrame(
        {
            "stroke": np.repeat(np.asarray(strokes, int), 10),
            "digit": np.tile(DIGITS, k),
            "probability": np.asarray(proba, float).reshape(-1),
            "guess": np.tile([d == guess for d in range(10)], k),
        }
    )
    spec = {
        "padding": {"left": 4, "top": 4, "right": 12, "bottom": 4},
        "mark": {"type": "line", "point": {"size": 30}},
        "encoding": {
            "x": {
                "field": "stroke",
                "type": "quantitative",
                "title": "after stroke",
                "scale": {"domain": [1, max(2, int(max(strokes, default=1)))], "nice": False},
                "axis": {"tickMinStep": 1, "format": "d"},
            },
            "y": probability_axis(),
            "color": {
                "field": "digit",
                "type": "nominal",
                "sort": DIGITS,
                "title": None,
                "scale": {"domain": DIGITS, "range": DIGIT_COLOURS},
                "legend": {  # two rows of five: ten in a row do not fit a phone (8 and 9 were cut off)
                    "orient": "top",
                    "direction": "horizontal",
                    "columns": 5,
                    "symbolSize": 60,
                    "labelFontSize": 12,
                    "offset": 4,
                    "padding": 0,
                },
            },
            "strokeWidth": {"condition": {"test": "datum.guess", "value": 4}, "value": 1.5},
            "opacity": {"condition": {"test": "datum.guess", "value": 1}, "value": 0.6},
            "tooltip": [
                {"field": "stroke", "type": "quantitative"},
                {"field": "digit", "type": "nominal"},
                {"field": "probability", "type": "quantitative", "format": ".1%"},
            ],
        },
    }
    return table, spec


def png(picture: np.ndarray, palette: np.ndarray | None = None) -> bytes:
    """An (h, w) or (h, w, 3) uint8 picture as PNG bytes, compressed lightly: these are drawn per stroke, and
    Streamlit's own encoding of an array (zlib level 6) took twice the time for a few hundred bytes less.

    With a ``palette`` (256, 3) uint8, ``picture`` (h, w) holds its indices: one byte a pixel to compress
    instead of three (feature-map grids: 2-3x faster)."""
    buffer = io.BytesIO()
    image = Image.fromarray(picture)
    if palette is not None:
        image = Image.frombytes("P", (picture.shape[1], picture.shape[0]), np.ascontiguousarray(picture).tobytes())
        image.putpalette(np.asarray(palette, np.uint8).tobytes())
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def comparison_chart(probabilities: dict[str, np.ndarray]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(data, Vega-Lite spec) of two (or more) models' ten probabilities as grouped bars, one colour per
    model (name -> (10,) probabilities; the first in blue). One chart, not one per model: drawn per stroke."""
    names = list(probabilities)
    table = pd.DataFrame(
        {
            "digit": DIGITS * len(names),
            "model": np.repeat(names, 10),
            "probability": np.concatenate([np.asarray(p, float) for p in probabilities.values()]),
        }
    )
    spec = {
        "mark": {"type": "bar"},
        "encoding": {
            "x": {"field": "digit", "type": "nominal", "sort": DIGITS, "title": None,
                  "axis": {"labelAngle": 0, "labelFontSize": 13}},
            "xOffset": {"field": "model", "type": "nominal", "sort": names},
            "y": probability_axis(),
            "color": {"field": "model", "type": "nominal", "title": None, "sort": names,
                      "scale": {"domain": names, "range": [BLUE, ORANGE, GREY][: len(names)]},
                      "legend": {"orient": "top", "direction": "horizontal", "columns": 1, "offset": 0,
                                 "padding": 0, "labelLimit": 280}},  # one a line: two long names cut off on a phone
            "tooltip": [{"field": "model"}, {"field": "digit"},
                        {"field": "probability", "type": "quantitative", "format": ".1%"}],
        },
    }  # fmt: skip
    return table, spec


def pad_to(picture: np.ndarray, side: int) -> np.ndarray:
    """An (h, w, 3) uint8 picture (h, w <= side) centred on black, side x side: pictures in a row all the same size."""
    h, w = picture.shape[:2]
    top, left = (side - h) // 2, (side - w) // 2
    return np.pad(picture, ((top, side - h - top), (left, side - w - left), (0, 0)))


def grey_picture(image: np.ndarray, max_side: int = 140) -> np.ndarray:
    """(h, w) ink in [0, 1] -> (h', w', 3) uint8 white ink on black, shrunk by whole steps to at most
    ``max_side`` (a picture to show, not an input)."""
    step = max(1, -(-max(image.shape) // max_side))
    grey = (np.clip(image[::step, ::step], 0, 1) * 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def boxed_picture(ink: np.ndarray, box: tuple[int, int, int, int], max_side: int = 140) -> np.ndarray:
    """The ink (h, w) as ``grey_picture`` with the digit's box (top, left, bottom, right) drawn in red."""
    step = max(1, -(-max(ink.shape) // max_side))
    picture = grey_picture(ink, max_side)
    h, w = picture.shape[:2]
    top, left = min(h - 1, box[0] // step), min(w - 1, box[1] // step)
    bottom, right = min(h - 1, (box[2] - 1) // step), min(w - 1, (box[3] - 1) // step)
    return outline(picture, top, left, bottom, right)


def outline(picture: np.ndarray, top: int, left: int, bottom: int, right: int) -> np.ndarray:
    """Draw a red rectangle (inclusive corners) on an (h, w, 3) uint8 picture, in place; returns it."""
    picture[top, left : right + 1] = picture[bottom, left : right + 1] = BOX_RED
    picture[top : bottom + 1, left] = picture[top : bottom + 1, right] = BOX_RED
    return picture


def boxed_fit(small: np.ndarray, side: int, factor: int = 5) -> np.ndarray:
    """``small`` (h, w <= side) centred in a side x side box, enlarged ``factor`` times, the box outlined."""
    field = np.zeros((side, side), np.float32)
    top, left = (side - small.shape[0]) // 2, (side - small.shape[1]) // 2
    field[top : top + small.shape[0], left : left + small.shape[1]] = small
    big = np.repeat(np.repeat(field, factor, axis=0), factor, axis=1)
    picture = np.repeat((np.clip(big, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)
    return outline(picture, 0, 0, side * factor - 1, side * factor - 1)


def placed_picture(x: np.ndarray, offset: tuple[int, int], shape: tuple[int, int], factor: int = 5) -> np.ndarray:
    """The 28x28 input enlarged ``factor`` times, the fitted digit's place (offset, shape) outlined in
    red and its centre of mass (pixel 14, 14) marked with a red dot."""
    picture = np.repeat(enlarged(x, factor)[..., None], 3, axis=2)
    picture = (np.clip(picture, 0, 1) * 255).astype(np.uint8)
    top, left = offset[0] * factor, offset[1] * factor
    outline(picture, top, left, top + shape[0] * factor - 1, left + shape[1] * factor - 1)
    centre = 14 * factor + factor // 2
    picture[centre - 2 : centre + 3, centre - 2 : centre + 3] = BOX_RED
    return picture


# --- look inside: the train page's views ---------------------------------------------------------


def reliability_chart(bins) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(data, Vega-Lite spec) of a reliability diagram (``metrics.Reliability``): accuracy per
    confidence bin as bars, the diagonal of perfect calibration as a dashed line."""
    lo, hi = bins.edges[:-1], bins.edges[1:]
    filled = bins.count > 0
    table = pd.DataFrame(
        {
            "lo": lo[filled],
            "hi": hi[filled],
            "accuracy": bins.accuracy[filled],
            "confidence": bins.confidence[filled],
            "count": bins.count[filled],
        }
    )
    percent_axis = {"format": ".0%", "tickCount": 5}
    spec = {
        "title": {"text": "Confidence vs accuracy", "anchor": "start", "offset": 0},
        "padding": {"left": 4, "top": 4, "right": 16, "bottom": 4},
        "layer": [
            {
                "mark": {"type": "rect", "color": BLUE, "opacity": 0.85},
                "encoding": {
                    "x": {"field": "lo", "type": "quantitative", "title": "confidence (top probability)",
                          "scale": {"domain": [0, 1]}, "axis": percent_axis},
                    "x2": {"field": "hi"},
                    "y": {"field": "accuracy", "type": "quantitative", "title": "accuracy",
                          "scale": {"domain": [0, 1]}, "axis": percent_axis},
                    "y2": {"datum": 0},
                    "tooltip": [
                        {"field": "lo", "title": "from", "format": ".0%"},
                        {"field": "hi", "title": "to", "format": ".0%"},
                        {"field": "count", "title": "test digits", "format": ","},
                        {"field": "confidence", "title": "mean confidence", "format": ".1%"},
                        {"field": "accuracy", "title": "accuracy", "format": ".1%"},
                    ],
                },
            },
            {
                "mark": {"type": "rule", "color": ORANGE, "strokeDash": [4, 4], "strokeWidth": 2},
                "encoding": {"x": {"datum": 0}, "y": {"datum": 0}, "x2": {"datum": 1}, "y2": {"datum": 1}},
            },
        ],
    }  # fmt: skip
    return table, spec


def coverage_chart(curve) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(data, Vega-Lite spec) of the "not sure" rule's trade (``metrics.CoverageCurve``): accuracy of
    the sure answers against the share answered as sure, the thresholds in use marked."""
    keep = curve.coverage > 0
    table = pd.DataFrame(
        {
            "coverage": curve.coverage[keep],
            "accuracy": curve.accuracy[keep],
            "min_probability": curve.min_probability[keep],
            "min_margin": curve.min_margin[keep],
            "current": (np.arange(len(curve.scale)) == curve.current)[keep],
        }
    )
    tooltip = [
        {"field": "coverage", "title": "answered as sure", "format": ".1%"},
        {"field": "accuracy", "title": "of those right", "format": ".2%"},
        {"field": "min_probability", "title": "probability at least", "format": ".2f"},
        {"field": "min_margin", "title": "ahead of runner-up by", "format": ".2f"},
    ]
    x = {"field": "coverage", "type": "quantitative", "title": "answered as sure (coverage)",
         "axis": {"format": ".0%"}, "scale": {"zero": False}}  # fmt: skip
    y = {"field": "accuracy", "type": "quantitative", "title": "accuracy of those",
         "axis": {"format": ".1%"}, "scale": {"zero": False}}  # fmt: skip
    spec = {
        "title": {"text": "What the \u201cnot sure\u201d rule trades", "anchor": "start", "offset": 0},
        "padding": {"left": 4, "top": 4, "right": 16, "bottom": 4},
        "layer": [
            {"mark": {"type": "line", "color": BLUE, "point": {"size": 20}},
             "encoding": {"x": x, "y": y, "tooltip": tooltip}},
            {"transform": [{"filter": "datum.current"}],
             "mark": {"type": "point", "color": ORANGE, "size": 160, "filled": True},
             "encoding": {"x": x, "y": y, "tooltip": tooltip}},
            {"transform": [{"filter": "datum.current"}],
             "mark": {"type": "text", "align": "left", "dx": 10, "dy": -10, "color": ORANGE, "fontWeight": "bold"},
             "encoding": {"x": x, "y": y, "text": {"value": "the app's rule"}}},
        ],
    }  # fmt: skip
    return table, spec


def runs_chart(curves: dict[str, list[dict]], column: str, title: str, percent: bool):
    """(data, Vega-Lite spec) of one history column (e.g. ``val_acc``) for several runs overlaid, a
    colour per run. curves: run label -> its history records (thinned here)."""
    frames = []
    for label, history in curves.items():
        table = pd.DataFrame(history_columns(thin_history(history)))
        if column in table and len(table):
            part = table[["epoch", column]].rename(columns={column: "value"}).dropna()
            part = part[np.isfinite(part["value"])]
            part["run"] = label
            frames.append(part)
    data = pd.concat(frames) if frames else pd.DataFrame({"epoch": [], "value": [], "run": []})
    end = epoch_axis_end(float(data["epoch"].max()) if len(data) else 1.0)
    spec = {
        "title": {"text": title, "anchor": "start", "offset": 0},
        "padding": {"left": 4, "top": 4, "right": 16, "bottom": 4},
        "mark": {"type": "line", "point": {"size": 20}},
        "encoding": {
            "x": {"field": "epoch", "type": "quantitative", "title": "epoch",
                  "scale": {"domain": [0, end], "nice": False}, "axis": {"tickMinStep": 1, "format": "d"}},
            "y": {"field": "value", "type": "quantitative", "title": None, "scale": {"zero": False},
                  "axis": {"format": ".0%"} if percent else {}},
            "color": {"field": "run", "type": "nominal", "title": None, "sort": list(curves),
                      "scale": {"domain": list(curves), "range": DIGIT_COLOURS},
                      "legend": {"orient": "top", "direction": "horizontal", "offset": 0, "padding": 0}},
            "tooltip": [{"field": "run"}, {"field": "epoch", "type": "quantitative", "format": ".2f"},
                        {"field": "value", "type": "quantitative", "format": ".4f"}],
        },
    }  # fmt: skip
    return data, spec


def attribution_picture(pixels: np.ndarray, scale: float, x: np.ndarray, factor: int = 6) -> np.ndarray:
    """(28*factor, 28*factor, 3) uint8: red where ``pixels`` (784,) is positive, blue where negative (full
    colour at ``scale``), over the input ``x`` (784,) drawn faint grey so the digit stays recognisable."""
    share = pixels / scale if scale > 0 else np.zeros_like(pixels)
    faint = 0.25 * np.clip(x, 0, 1)
    rgb = np.stack([np.maximum(faint, np.clip(share, 0, 1)), faint, np.maximum(faint, np.clip(-share, 0, 1))], axis=1)
    rgb = (rgb * 255).astype(np.uint8).reshape(28, 28, 3)
    return np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)


# --- look inside: tiles (weights, filters, feature maps) -----------------------------------------

GAP_COLOUR = np.array([255, 255, 255], np.uint8)  # the page's white: 1-px lines between red/blue tiles
# Between grey tiles (whose strongest value is white): a slate no grey or orange cell can have, so the
# lines never merge with a tile.
GREY_GAP_COLOUR = np.array([150, 162, 185], np.uint8)


def tile_grid(tiles: np.ndarray, columns: int, factor: int, gap: Any = GAP_COLOUR, frame: bool = False) -> np.ndarray:
    """Tiles (n, h, w, 3) (or (n, h, w)) uint8 in a grid of ``columns`` (fewer if n is smaller), tile i at
    row i // columns, column i % columns, each enlarged ``factor`` times, with 1-px lines of ``gap``
    (a colour, or a value for 2-D tiles) between them and where the last row ends early:
    (rows*h*factor + rows-1, cols*w*factor + cols-1[, 3]) uint8, plus 2 in each direction with a 1-px
    ``frame`` of the gap (so a white tile stays visible on a white page)."""
    n, h, w = tiles.shape[:3]
    columns = max(1, min(int(columns), n))
    factor = max(1, int(factor))
    rows = max(1, -(-n // columns))
    th, tw, rest = h * factor, w * factor, tiles.shape[3:]
    # Every slot as its tile plus a line below and to the right, then the slots laid out row by row
    # (one reshape, no loop over tiles: a dense layer has up to 4096 cells).
    slots = np.empty((rows * columns, th + 1, tw + 1, *rest), np.uint8)
    slots[:] = gap
    slots[:n, :th, :tw] = np.repeat(np.repeat(tiles, factor, axis=1), factor, axis=2)
    laid = slots.reshape(rows, columns, th + 1, tw + 1, *rest).swapaxes(1, 2)
    laid = laid.reshape(rows * (th + 1), columns * (tw + 1), *rest)[:-1, :-1]
    if not frame:
        return np.ascontiguousarray(laid)
    grid = np.empty((laid.shape[0] + 2, laid.shape[1] + 2, *rest), np.uint8)
    grid[:] = gap
    grid[1:-1, 1:-1] = laid
    return grid


def signed_tiles(weights: np.ndarray, columns: int, factor: int) -> np.ndarray:
    """Weights (n, h, w) as a grid of red/blue tiles (``tile_grid``): (H, W, 3) uint8.

    Positive is red, negative blue, zero black (as in ``attribution_picture``); the brighter, the
    larger. Each tile is scaled by its own largest |w| (``inside.scaled_per_tile``), so every
    unit's or filter's pattern shows however large its weights are overall; tiles are not
    comparable in strength with each other.
    """
    share = scaled_per_tile(np.asarray(weights))
    zero = np.zeros_like(share)
    rgb = np.stack([np.clip(share, 0, 1), zero, np.clip(-share, 0, 1)], axis=-1)
    return tile_grid((rgb * 255).round().astype(np.uint8), columns, factor)


TILE_PIXELS = 48  # about how wide a feature map or filter is drawn (enlarged by a whole factor)


LINE_INDEX = 255  # in a grey grid's palette: the lines; 0-254 are greys from black to white
GREY_PALETTE = np.concatenate(
    [np.repeat(np.round(np.arange(LINE_INDEX) * 255 / (LINE_INDEX - 1)).astype(np.uint8)[:, None], 3, 1),
     GREY_GAP_COLOUR[None]]
)  # fmt: skip


def grey_tiles(shown: np.ndarray, columns: int, factor: int) -> np.ndarray:
    """Maps (n, h, w) with values in [0, 1] as white-on-black tiles in a grid (``tile_grid``), slate lines
    between them and round them: (H, W) uint8 indices into GREY_PALETTE (``png(picture, GREY_PALETTE)``)."""
    level = np.clip(np.nan_to_num(np.asarray(shown, np.float32)), 0, 1) * (LINE_INDEX - 1)
    return tile_grid(level.round().astype(np.uint8), columns, factor, LINE_INDEX, frame=True)


def grid_layout(n: int, side: int) -> tuple[int, int]:
    """(columns, factor) for n tiles of ``side`` pixels: 8 columns (16 beyond 64 tiles), each tile
    enlarged to about TILE_PIXELS; the page scales a grid down to a phone's width."""
    return (8 if n <= 64 else 16), max(1, round(TILE_PIXELS / max(1, side)))


def map_grid(shown: np.ndarray) -> np.ndarray:
    """A layer's feature maps (c, h, w) in [0, 1] as one grey grid picture (``grid_layout``): (H, W) indices
    into GREY_PALETTE."""
    columns, factor = grid_layout(len(shown), max(shown.shape[1:]))
    return grey_tiles(shown, columns, factor)


def filter_grid(filters: np.ndarray) -> np.ndarray:
    """Conv filters (c_out, kh, kw) as one red/blue grid picture (``signed_tiles``, ``grid_layout``)."""
    columns, factor = grid_layout(len(filters), max(filters.shape[1:]))
    return signed_tiles(filters, columns, factor)


def cell_layout(n: int) -> tuple[int, int]:
    """(columns, cell pixels) for a dense layer of n units drawn as a grid of cells about 270-320 px wide."""
    if n <= 256:
        return min(n, 16), 16
    return (32, 8) if n <= 1024 else (64, 4)


def unit_cells(shown: np.ndarray, marked: np.ndarray | None = None) -> np.ndarray:
    """A dense layer's units (n,) in [0, 1] as a grid of grey cells, unit 0 top left, row by row; the
    ``marked`` units (indices) drawn in orange instead of white (same brightness): (H, W, 3) uint8."""
    shown = np.clip(np.nan_to_num(np.asarray(shown, np.float32).reshape(-1)), 0, 1)
    rgb = np.repeat(shown[:, None], 3, axis=1)
    if marked is not None and len(marked):
        rgb[np.asarray(marked, int)] = shown[np.asarray(marked, int), None] * (np.array([240, 140, 0]) / 255)
    columns, cell = cell_layout(len(shown))
    return tile_grid((rgb * 255).round().astype(np.uint8)[:, None, None, :], columns, cell, GREY_GAP_COLOUR, True)
