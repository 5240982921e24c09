"""The "look inside" views under AppTest: each draw-page view renders for a sigmoid, a ReLU and a deep
(4 hidden layers) model, and "inside the layers" for a tiny CNN too (its pictures decoded and their
tiles counted); stroke by stroke follows the strokes (Undo, Clear); two models side by
side; the train page's mistakes explorer, reliability diagram, coverage curve and runs side by side."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import block_digits
from PIL import Image
from streamlit.testing.v1 import AppTest

from mnist_net import MLP, TrainConfig, canvas_to_input, load_model
from mnist_net.confidence import assess
from mnist_net.jobs import DONE
from mnist_net.metrics import cell_members
from mnist_net.preprocess import input_steps
from mnist_net.registry import save_new_model
from mnist_net.runs import new_user_id
from pages.ui import state
from pages.ui.drawing import Drawing, marker

APP = str(Path(__file__).resolve().parents[1] / "app.py")
VIEWS = ("inside_steps", "inside_why", "inside_layers", "inside_strokes", "inside_compare")


def as_canvas(digit_784: np.ndarray) -> np.ndarray:
    grey = np.kron(digit_784.reshape(28, 28), np.ones((10, 10), np.uint8))
    return np.dstack([grey, grey, grey, np.full_like(grey, 255)])


def tiny_model(hidden, activation) -> MLP:
    X, y = block_digits(200)
    model = MLP(hidden_sizes=hidden, activation=activation, epochs=2, batch_size=32, seed=0).fit(X, y)
    model.metrics_ = {"test_accuracy": 0.5}
    return model


MODELS = {
    "sigmoid": ((16,), "sigmoid"),
    "relu": ((24, 12), "relu"),
    "deep": ((16, 16, 16, 16), "relu"),
}
TINY_CNN = "conv 4x5x5 -> pool 2 -> dense 16 -> dense 10"


def tiny_cnn() -> MLP:
    X, y = block_digits(200)
    config = TrainConfig(layers=TINY_CNN, activation="relu", epochs=1, batch_size=32, n_train=128, seed=0)
    model = MLP(config).fit(X, y)  # four batches
    model.metrics_ = {"test_accuracy": 0.5}
    return model


def chart_table(chart):
    """The data of a Vega-Lite chart element as a DataFrame."""
    return pa.ipc.open_stream(io.BytesIO(chart.proto.data.data)).read_pandas()


def strip_captions(at) -> list[str]:
    """The captions of the pictures in the steps strip, in order (each figure holds one PNG picture)."""
    strips = [m.value for m in at.markdown if 'class="picture-strip"' in m.value and "Ink found" in m.value]
    if not strips:
        return []
    [strip] = strips
    figures = re.findall(
        r'<figure class="([^"]*)"><img [^>]*src="data:image/png;base64,[^"]+"><figcaption>([^<]*)<', strip
    )
    assert len(figures) == strip.count("<figure")
    return [caption for _, caption in figures]


def step_images(at) -> list[str]:
    return [c for c in strip_captions(at) if c[:2] in ("1.", "2.", "3.", "4.")]


def stroke_report(drawing, n):
    strokes = [{"type": "Path", "path": [["M", i, 0], ["L", i, 10]]} for i in range(n)]
    return {"objects": [marker(drawing.revision), *strokes]}


@pytest.fixture
def draw_page(models_dir):
    saved = {name: save_new_model(tiny_model(*spec)) for name, spec in MODELS.items()}
    saved["cnn"] = save_new_model(tiny_cnn())
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception
    return at, saved


@pytest.mark.parametrize("kind", [*MODELS, "cnn"])
def test_every_draw_view_renders_for_the_model(draw_page, kind, mnist):
    at, saved = draw_page
    at.selectbox(key="model_choice").set_value(f"file:{saved[kind].name}").run()
    # Closed, the views run nothing: no step pictures, no stroke chart.
    image = as_canvas(mnist.X_test[0])
    at.session_state["injected_canvas_image"] = image
    at.run()
    assert [e.label for e in at.expander] == [
        "How your drawing became the input",
        "Why this digit",
        "Inside the layers",
        "Stroke by stroke",
        "Compare two models",
    ]
    assert not step_images(at) and len(at.get("vega_lite_chart")) == 1
    for key in VIEWS:
        at.session_state[key] = True
    at.run()
    assert not at.exception
    # The four steps in order, then the plain resize and what the network says of each.
    assert [c[:2] for c in step_images(at)] == ["1.", "2.", "3.", "4."]
    assert strip_captions(at)[-1] == "Plain resize"
    model = load_model(saved[kind])
    x = canvas_to_input(image)
    verdict = assess(model.predict_proba(x[None])[0])
    said = next(m.value for m in at.markdown if m.value.startswith("**These steps:**"))
    assert f"a {verdict.digit} ({verdict.probability:.0%})" in said
    # Why this digit: the input and its red/blue map, naming the answer and the runner-up by the logits.
    best, second = np.argsort(-model.logits(x[None])[0].astype(np.float64), kind="stable")[:2]
    why = [m.value for m in at.markdown if "picture-strip" in m.value and "Why " in m.value]
    assert len(why) == 1, [w[:300] for w in why]
    assert f"Why {best}, not {second}" in why[0] and why[0].count("<img") == 2
    assert any(f"surer of {best} than of {second}" in c.value for c in at.caption)
    # Compare: the chosen model and the first other one, each with its verdict and bars.
    compare = at.selectbox(key="compare_with")
    assert compare.value in compare.options and len(compare.options) == 4  # the shipped one and three saved
    verdicts = [m.value for m in at.markdown if "  \nsays a " in m.value]
    assert len(verdicts) == 2 and f"says a {verdict.digit} ({verdict.probability:.0%})" in verdicts[0]
    [compared] = [c for c in at.get("vega_lite_chart") if '"xOffset"' in c.proto.spec]
    table = chart_table(compared)
    assert list(table["model"].unique()) == ["Saved: " + saved[kind].name, compare.value]
    np.testing.assert_allclose(table["probability"][:10], model.predict_proba(x[None])[0], rtol=1e-5)
    # Another model to compare with: its verdict follows.
    other = [o for o in compare.options if o != compare.value][0]
    compare.set_value(other).run()
    assert not at.exception and other in [m.value for m in at.markdown if "  \nsays a " in m.value][1]


def strip_figures(at, key_text: str) -> list[tuple[str, np.ndarray]]:
    """(caption, decoded picture) of each figure of the one picture strip whose HTML holds ``key_text``."""
    [strip] = [m.value for m in at.markdown if 'class="picture-strip"' in m.value and key_text in m.value]
    found = re.findall(r'src="data:image/png;base64,([^"]+)"><figcaption>([^<]*)<', strip)
    assert len(found) == strip.count("<figure")
    return [
        (caption, np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))) for data, caption in found
    ]


def tiles_in(picture: np.ndarray) -> tuple[int, int, int]:
    """(rows, columns, tiles) of a grid picture, read from its 1-px lines (rows and columns of pixels all of
    the lines' colour, the corner pixel's for a framed grid, else white) and its non-empty cells."""
    framed = not (picture[0, 0] == 255).all() and (picture[0] == picture[0, 0]).all()
    line = picture[0, 0] if framed else np.array([255, 255, 255])
    is_line = (picture == line).all(axis=2)

    def runs(flags):
        cuts = [-1, *np.flatnonzero(flags), len(flags)]
        return [(a + 1, b) for a, b in zip(cuts, cuts[1:]) if b > a + 1]

    row_runs, col_runs = runs(is_line.all(axis=1)), runs(is_line.all(axis=0))
    filled = sum(not is_line[r0:r1, c0:c1].all() for r0, r1 in row_runs for c0, c1 in col_runs)
    return len(row_runs), len(col_runs), filled


def hidden_by_hand(model, x) -> list[np.ndarray]:
    """The hidden dense layers' outputs of an MLP for x (784,), written out here."""
    act = (lambda z: 1 / (1 + np.exp(-z))) if model.activation == "sigmoid" else (lambda z: np.maximum(z, 0))
    a, out = x.astype(np.float64), []
    for i in range(1, len(model.layers)):
        a = act(a @ model.params_[f"W{i}"] + model.params_[f"b{i}"])
        out.append(a)
    return out


@pytest.mark.parametrize("kind", [*MODELS, "cnn"])
def test_inside_the_layers_draws_every_hidden_layer(draw_page, kind, mnist):
    at, saved = draw_page
    at.selectbox(key="model_choice").set_value(f"file:{saved[kind].name}").run()
    image = as_canvas(mnist.X_test[7])
    at.session_state["injected_canvas_image"] = image
    at.run()
    assert not any("picture-strip" in m.value and " · dense " in m.value for m in at.markdown)  # closed: not run
    at.session_state["inside_layers"] = True
    at.run()
    assert not at.exception
    model, x = load_model(saved[kind]), canvas_to_input(image)
    layers = strip_figures(at, " units</figcaption>")
    if kind == "cnn":
        # Filters: 4 red/blue tiles of 5x5 in one row; then 4 maps 28x28, 4 maps 14x14, 16 units.
        [(caption, filters)] = strip_figures(at, " filters 5×5")
        assert caption == "1 · conv 4x5x5 · 4 filters 5×5" and tiles_in(filters) == (1, 4, 4)
        assert [c for c, _ in layers] == [
            "1 · conv 4x5x5 · 4 maps 28×28",
            "2 · pool 2 · 4 maps 14×14",
            "3 · dense 16 · 16 units",
        ]
        assert [tiles_in(p) for _, p in layers] == [(1, 4, 4), (1, 4, 4), (1, 16, 16)]
        assert not any('alt="unit ' in m.value for m in at.markdown)  # no 28x28 weights: they read maps
        [listed] = [c.value for c in at.caption if c.value.startswith("The units of dense 16 that fired most")]
        outputs = model.layer_outputs(x[None])
        first_dense = outputs[2].values[0]
        top = np.argsort(-first_dense.astype(np.float64), kind="stable")[:8]
        assert listed.startswith(
            "The units of dense 16 that fired most: " + ", ".join(f"{u + 1} ({first_dense[u]:.2f})" for u in top)
        )
        return
    hidden = MODELS[kind][0]
    assert [c for c, _ in layers] == [f"{i} · dense {h} · {h} units" for i, h in enumerate(hidden, start=1)]
    assert [tiles_in(p) for _, p in layers] == [(-(-h // 16), min(h, 16), h) for h in hidden]
    # Each cell is its unit's output over the layer's largest, grey; layer 1's top 8 units in orange.
    by_hand = hidden_by_hand(model, x)
    top = np.argsort(-by_hand[0], kind="stable")[:8]
    for n, ((_, picture), values) in enumerate(zip(layers, by_hand)):
        centres = picture[1 + 8 :: 17, 1 + 8 :: 17].reshape(-1, 3)[: len(values)].astype(float)
        share = values / values.max()
        colour = np.repeat(share[:, None], 3, axis=1) * 255
        if n == 0:
            colour[top] = share[top, None] * [240, 140, 0]
        np.testing.assert_allclose(centres, colour, atol=1.01)
    # The top units' weights: 8 pictures of 84 px, named by unit and output, red/blue as W1's column.
    units = strip_figures(at, 'alt="unit ')
    assert [c for c, _ in units] == [f"unit {u + 1} · {by_hand[0][u]:.2f}" for u in top]
    for (_, picture), u in zip(units, top):
        assert picture.shape == (84, 84, 3)
        w = model.params_["W1"][:, u].reshape(28, 28)
        share = w / np.abs(w).max()
        expected = np.stack([np.clip(share, 0, 1), np.zeros_like(share), np.clip(-share, 0, 1)], axis=-1) * 255
        np.testing.assert_allclose(picture[1::3, 1::3], expected, atol=1.01)  # red positive, blue negative


def test_stroke_by_stroke_grows_with_strokes_and_follows_undo_and_clear(draw_page, mnist):
    at, saved = draw_page
    drawing = Drawing()
    drawing.give([], mounting=True)
    pictures = [as_canvas(mnist.X_test[i]) for i in range(4)]
    for n in (1, 2, 3):
        drawing.take(stroke_report(drawing, n), lambda n=n: pictures[n])
    at.session_state["drawing"] = drawing
    at.session_state["inside_strokes"] = True
    at.run()
    assert not at.exception

    def stroke_table():
        [chart] = [c for c in at.get("vega_lite_chart") if '"after stroke"' in c.proto.spec]
        return chart_table(chart)

    table = stroke_table()
    assert sorted(set(table["stroke"])) == [1, 2, 3] and len(table) == 30
    # The probabilities are the answering model's, for each stroke's picture.

    expected = load_model().predict_proba(np.stack([canvas_to_input(pictures[n]) for n in (1, 2, 3)]))
    np.testing.assert_allclose(table["probability"].to_numpy().reshape(3, 10), expected, rtol=1e-5)
    # Undo: the canvas reports two strokes; the chart loses the third and keeps the first two.
    at.button(key="undo").click().run()
    drawing = at.session_state["drawing"]
    drawing.take(stroke_report(drawing, 2), lambda: pictures[2])
    at.run()
    table = stroke_table()
    assert sorted(set(table["stroke"])) == [1, 2]
    np.testing.assert_allclose(table["probability"].to_numpy().reshape(2, 10), expected[:2], rtol=1e-5)
    # Clear: nothing left to chart.
    at.button(key="clear").click().run()
    drawing = at.session_state["drawing"]
    blank = np.zeros((280, 280, 4), np.uint8)
    blank[..., 3] = 255
    drawing.take(stroke_report(drawing, 0), lambda: blank)
    at.run()
    assert drawing.stroke_inputs == []
    assert not [c for c in at.get("vega_lite_chart") if '"after stroke"' in c.proto.spec]


def test_upload_shows_the_steps_too(draw_page, mnist):
    at, _ = draw_page
    at.button_group(key="input_mode").set_value("Upload an image").run()
    image = as_canvas(mnist.X_test[3])[..., :3]
    at.session_state[state.UPLOADED_DIGIT_KEY] = ("three.png", image)
    at.session_state["inside_steps"] = True
    at.run()
    assert not at.exception
    steps = input_steps(image)
    shown = step_images(at)
    assert len(shown) == 4
    top, left, bottom, right = steps.box
    assert shown[1] == "2. Crop box"
    assert any(f"({right - left}×{bottom - top} px)" in c.value for c in at.caption)


# --- the train page -------------------------------------------------------------------------------


@pytest.fixture
def two_runs(mnist_dir, models_dir, monkeypatch):
    monkeypatch.setenv("MNIST_DIR", str(mnist_dir))
    user = new_user_id()
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state[state.USER_ID_KEY] = user
    at.switch_page("pages/train.py").run()
    for hidden, lr in (("16", 0.01), ("32", 0.003)):
        at.text_input(key="hidden_sizes").set_value(hidden)
        at.number_input(key="n_train").set_value(600)
        at.number_input(key="epochs").set_value(2)
        at.number_input(key="batch_size").set_value(32)
        at.number_input(key="learning_rate").set_value(lr)
        at.button(key="start").click().run()
        job = at.session_state["train_job"]
        assert job.join(timeout=120) and job.snapshot().status == DONE
        at.run()
    yield at, user
    state.run_registry().stop_all(user, timeout=60)


def test_train_page_mistakes_reliability_coverage_and_runs_side_by_side(two_runs, mnist):
    at, user = two_runs
    assert any(e.label.startswith("Explore the mistakes") for e in at.expander)
    assert not [c for c in at.get("vega_lite_chart") if "Confidence vs accuracy" in c.proto.spec]  # closed: not run
    at.session_state["explore_mistakes"] = True
    at.session_state["runs_side_by_side"] = True
    at.run()
    assert not at.exception
    # The shown run (the newest) and its model's probabilities on the test set.
    [newest, older] = state.run_registry().runs(user)
    model = state.run_registry().model(user, newest.id)
    proba = model.predict_proba(mnist.X_test)
    cell = at.selectbox(key=f"cell_{newest.id}")
    true_digit, said = cell.value
    assert true_digit != said  # mistakes first
    members = cell_members(mnist.y_test, proba, true_digit, said)
    digits = [im for im in at.get("image") if im.captions and im.captions[0].startswith(f"{said}: ")]
    assert len(digits) == min(24, len(members))
    assert digits[0].captions[0].startswith(f"{said}: {proba[members[0], said]:.0%}")
    # A cell where it was right: only those digits.
    assert any("read right" in o for o in cell.options)
    cell.set_value((true_digit, true_digit)).run()
    assert not at.exception
    members = cell_members(mnist.y_test, proba, true_digit, true_digit)
    digits = [im for im in at.get("image") if im.captions and im.captions[0].startswith(f"{true_digit}: ")]
    assert len(digits) == min(24, len(members)) and len(members) > 0
    # Reliability diagram and coverage curve, the current rule marked.
    specs = [c.proto.spec for c in at.get("vega_lite_chart")]
    assert any("Confidence vs accuracy" in s for s in specs)
    [coverage] = [c for c in at.get("vega_lite_chart") if "the app's rule" in c.proto.spec]
    assert chart_table(coverage)["current"].sum() == 1
    # Runs side by side: both runs' curves and a settings row each.
    [val_chart] = [c for c in at.get("vega_lite_chart") if "Validation accuracy" in c.proto.spec]
    assert set(chart_table(val_chart)["run"]) == {newest.label, older.label}
    [table] = at.get("arrow_data_frame") or at.dataframe
    rows = table.value
    assert list(rows["run"]) == [older.label, newest.label] and list(rows["layers"]) == ["784→16→10", "784→32→10"]
    assert list(rows["learning rate"]) == [0.01, 0.003]


def test_weight_pictures_are_drawn_once_per_model_and_go_with_it():
    import gc

    from pages.ui.inside import _WEIGHT_PICTURES, weight_picture

    calls = []

    def draw(tag):
        calls.append(tag)
        return tag.encode()

    a, b = tiny_model((16,), "relu"), tiny_model((16,), "relu")
    assert weight_picture(a, ("unit", 3), lambda: draw("a3")) == b"a3"
    assert weight_picture(a, ("unit", 3), lambda: draw("again")) == b"a3"  # kept: not drawn again
    assert weight_picture(b, ("unit", 3), lambda: draw("b3")) == b"b3"  # another model: its own
    assert calls == ["a3", "b3"]
    kept = len(_WEIGHT_PICTURES)
    del a
    gc.collect()
    assert b in _WEIGHT_PICTURES and len(_WEIGHT_PICTURES) == kept - 1  # a's went with it
