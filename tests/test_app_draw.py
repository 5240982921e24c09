"""The draw page under Streamlit's AppTest: injected canvas pictures and uploads of real MNIST
test digits, the empty prompt, model choice (saved, uploaded, hostile file) and model facts; the
kept drawing (``pages.ui.drawing.Drawing``: revisions, Undo, Clear) across pages and models, and
the uploader's limit and refusals."""

import io
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from mnist_net import canvas_to_input, image_from_bytes, load_model, model_to_bytes
from mnist_net.confidence import assess
from mnist_net.registry import save_new_model
from mnist_net.uploads import MAX_UPLOAD_BYTES
from pages.ui.drawing import Drawing, marker

APP = str(Path(__file__).resolve().parents[1] / "app.py")
INJECT = "injected_canvas_image"  # the page's test seam (pages/draw.py INJECTED_CANVAS_KEY)
PROMPT = "Draw a digit from 0 to 9 in the black box"
UPLOAD_PROMPT = "Upload a photo or scan of one digit"


def as_canvas(digit_784: np.ndarray) -> np.ndarray:
    """A 28x28 MNIST digit painted like the canvas would: (280, 280, 4) RGBA, white ink on black."""
    grey = np.kron(digit_784.reshape(28, 28), np.ones((10, 10), np.uint8))
    return np.dstack([grey, grey, grey, np.full_like(grey, 255)])


def as_png(digit_784: np.ndarray, invert: bool = True) -> bytes:
    """A photo-like upload: dark ink on white paper, scaled up to 140x140."""
    grey = digit_784.reshape(28, 28)
    img = Image.fromarray(255 - grey if invert else grey).resize((140, 140), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def shown(at) -> tuple[int, bool] | None:
    """(digit, sure) from the prediction block, or None when the page shows no prediction."""
    for md in at.markdown:
        m = re.search(r'class="prediction" data-digit="(\d)" data-sure="([01])"', md.value)
        if m:
            return int(m.group(1)), m.group(2) == "1"
    return None


def expected(model, image) -> int:
    return int(model.predict(canvas_to_input(image)[None])[0])


@pytest.fixture
def saved(small_model, models_dir):
    """The small real model, saved in the app's models folder."""
    return save_new_model(small_model)


@pytest.fixture
def app(saved):
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception
    return at


def pick(at, choice):
    at.selectbox(key="model_choice").set_value(choice).run()
    assert not at.exception


def test_empty_canvas_shows_the_prompt(app):
    assert app.title[0].value == "Draw a digit"
    assert any(PROMPT in i.value for i in app.info)
    assert shown(app) is None
    black = np.zeros((280, 280, 4), np.uint8)
    black[..., 3] = 255
    app.session_state[INJECT] = black
    app.run()
    assert shown(app) is None and any(PROMPT in i.value for i in app.info)


def test_injected_canvas_digits_are_predicted(app, saved, small_model, mnist):
    pick(app, f"file:{saved.name}")
    correct = 0
    for idx in range(10):  # the first ten MNIST test digits
        image = as_canvas(mnist.X_test[idx])
        app.session_state[INJECT] = image
        app.run()
        assert not app.exception
        digit, _ = shown(app)
        assert digit == expected(small_model, image)
        correct += digit == mnist.y_test[idx]
    assert correct >= 8  # a ~93% model on real test digits
    assert app.get("vega_lite_chart")  # the ten probabilities
    [network_input] = [im for im in app.get("image") if "28×28" in im.captions[0]]
    assert network_input


def test_not_sure_state_follows_the_confidence_rule(app, saved, small_model, mnist):
    """The page shows "not sure" exactly when mnist_net.confidence says so."""
    pick(app, f"file:{saved.name}")
    verdicts = {}
    for idx in range(300):
        image = as_canvas(mnist.X_test[idx])
        sure = assess(small_model.predict_proba(canvas_to_input(image)[None])[0]).sure
        verdicts.setdefault(sure, image)
        if len(verdicts) == 2:
            break
    assert set(verdicts) == {True, False}  # both states really exercised
    for sure, image in verdicts.items():
        app.session_state[INJECT] = image
        app.run()
        assert shown(app) == (expected(small_model, image), sure)
        block = next(m.value for m in app.markdown if 'class="prediction"' in m.value)
        assert ("Not sure" in block) == (not sure) and ("prediction-digit unsure" in block) == (not sure)


def test_upload_path_uses_the_same_pipeline(app, saved, small_model, mnist):
    pick(app, f"file:{saved.name}")
    app.button_group(key="input_mode").set_value("Upload an image").run()
    # Nothing uploaded yet: upload mode's own words, not the canvas's ("the black box" is not on the page).
    assert any(UPLOAD_PROMPT in i.value for i in app.info)
    assert not any(PROMPT in i.value for i in app.info)
    digit_784 = mnist.X_test[0]  # a 7
    png = as_png(digit_784)
    app.file_uploader(key="digit_upload").set_value(("seven.png", png, "image/png")).run()
    assert not app.exception and not app.error
    assert shown(app)[0] == expected(small_model, image_from_bytes(png)) == 7


def test_bad_image_upload_gives_a_message(app):
    app.button_group(key="input_mode").set_value("Upload an image").run()
    app.file_uploader(key="digit_upload").set_value(("digit.png", b"not an image", "image/png")).run()
    assert not app.exception
    assert any("Could not use" in e.value for e in app.error)
    assert shown(app) is None


class _Hostile:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_hostile_model_upload_is_refused_and_page_keeps_working(app, tmp_path, mnist):
    marker = tmp_path / "pwned"
    pick(app, "upload")
    evil = pickle.dumps({"format_version": 1, "params": _Hostile(marker)})
    app.file_uploader(key="model_upload").set_value(("model.pkl", evil, "application/octet-stream")).run()
    assert not app.exception
    assert not marker.exists()  # nothing in the file was executed
    assert any("model.pkl** could not be used" in e.value and "refused" in e.value for e in app.error)
    # Still predicting, with the shipped default model.
    image = as_canvas(mnist.X_test[1])
    app.session_state[INJECT] = image
    app.run()
    assert shown(app)[0] == expected(load_model(), image)


def test_uploaded_model_is_used_and_described(app, small_model, mnist):
    pick(app, "upload")
    data = model_to_bytes(small_model)
    app.file_uploader(key="model_upload").set_value(("mine.pkl", data, "application/octet-stream")).run()
    assert not app.exception and not app.error
    facts = " ".join(m.value for m in app.sidebar.markdown)
    assert "784 → 64 → 10" in facts and "relu" in facts and "2026-11-28 10:00 UTC" in facts
    image = as_canvas(mnist.X_test[2])
    app.session_state[INJECT] = image
    app.run()
    assert shown(app)[0] == expected(small_model, image)


def test_default_model_facts(app):
    facts = " ".join(m.value for m in app.sidebar.markdown)
    default = load_model()
    assert " → ".join(map(str, default.layer_sizes)) in facts
    assert default.activation in facts
    assert f"{100 * default.metrics_['test_accuracy']:.2f}%" in facts


def test_broken_saved_model_falls_back_to_default(app, models_dir, mnist):
    broken = models_dir / "mnist-20261128-000000-acc99.00.pkl"
    broken.write_bytes(b"\x80\x04 truncated")
    app.run()
    pick(app, f"file:{broken.name}")
    assert any(f"{broken.name}** could not be used" in e.value for e in app.sidebar.error)
    image = as_canvas(mnist.X_test[3])
    app.session_state[INJECT] = image
    app.run()
    assert not app.exception
    assert shown(app)[0] == expected(load_model(), image)


def ten_bars_canvas() -> np.ndarray:
    """Ten vertical bars, white on black: read as "0, 96.7% sure" before the not-a-digit check."""
    image = np.zeros((280, 280, 4), np.uint8)
    image[..., 3] = 255
    for k in range(10):
        image[60:220, 30 + 22 * k : 38 + 22 * k, :3] = 255
    return image


def test_a_drawing_that_is_no_digit_is_said_to_be_none(app, mnist):
    app.session_state[INJECT] = ten_bars_canvas()
    app.run()
    assert not app.exception
    digit, sure = shown(app)
    assert not sure
    assert any("look like a digit" in m.value for m in app.markdown)
    app.session_state[INJECT] = as_canvas(mnist.X_test[0])  # a real 7 is still read as a digit
    app.run()
    assert not any("look like a digit" in m.value for m in app.markdown)
    assert shown(app)[0] == 7


# --- the kept drawing (pages.ui.drawing.Drawing) -------------------------------------------------


def report(drawing_or_revision, strokes):
    """What the canvas reports: its marker object (the revision it was given), then the strokes."""
    revision = getattr(drawing_or_revision, "revision", drawing_or_revision)
    return {"objects": [marker(revision), *strokes]}


def stroke(n):
    return {"type": "Path", "path": [["M", n, 0], ["L", n, 10]]}


def test_reports_of_an_older_revision_are_ignored(mnist):
    d = Drawing()
    d.give([], mounting=True)  # a new canvas
    one, two = as_canvas(mnist.X_test[0]), as_canvas(mnist.X_test[1])
    assert d.take(report(d, [stroke(1)]), lambda: one)
    assert d.take(report(d, [stroke(1), stroke(2)]), lambda: two)
    assert d.shown_strokes == 2 and np.array_equal(d.shown_input, canvas_to_input(two))
    assert not d.take(report(d, [stroke(1), stroke(2)]), lambda: two)  # the same report, read once
    d.undo()
    assert d.strokes == [stroke(1)] and d.initial_drawing() == report(d, [stroke(1)])
    # A stroke in flight from before Undo (the older revision) never brings the undone stroke back.
    assert not d.take(report(d.revision - 1, [stroke(1), stroke(2), stroke(3)]), lambda: two)
    assert d.strokes == [stroke(1)]
    d.clear()
    assert d.strokes == [] and d.initial_drawing() == report(d, [])
    assert not d.take(report(d.revision - 1, [stroke(1)]), lambda: one)
    assert d.strokes == []


def test_after_undo_the_answer_changes_when_the_canvas_has_the_new_drawing(mnist):
    d = Drawing()
    d.give([], mounting=True)
    one, two = as_canvas(mnist.X_test[0]), as_canvas(mnist.X_test[1])
    d.take(report(d, [stroke(1)]), lambda: one)
    d.take(report(d, [stroke(1), stroke(2)]), lambda: two)
    d.undo()
    d.undo()  # twice, before the canvas answered: both strokes go
    assert d.strokes == [] and d.waiting
    # Until the canvas reports the new drawing (it still shows the old one), the old answer stays.
    assert d.shown_strokes == 2 and np.array_equal(d.shown_input, canvas_to_input(two))
    assert not d.take(report(d, []), lambda: None)  # the component's default value: no picture
    blank = np.zeros((280, 280, 4), np.uint8)
    blank[..., 3] = 255
    assert d.take(report(d, []), lambda: blank)
    assert not d.waiting and d.shown_strokes == 0 and d.shown_input is None


def test_a_new_canvas_gets_the_kept_strokes_and_the_same_drawing_until_it_changes(mnist):
    d = Drawing()
    d.give([], mounting=True)
    picture = as_canvas(mnist.X_test[0])
    d.take(report(d, [stroke(1)]), lambda: picture)
    assert d.initial_drawing() == report(d, [])  # what the canvas was given stays: no reload per stroke
    d.give(d.strokes, mounting=True)  # back from another page: a new canvas, with the stroke on it
    assert d.initial_drawing() == report(d, [stroke(1)])
    assert not d.waiting and d.shown_strokes == 1 and d.shown_input is not None  # the answer stays
    assert not d.take(report(d.revision - 1, [stroke(1), stroke(2)]), lambda: picture)


@pytest.fixture
def drawn(mnist):
    """A session drawing of one stroke whose picture is MNIST test digit 0 (a 7)."""
    d = Drawing()
    d.give([], mounting=True)
    d.take(report(d, [stroke(1)]), lambda: as_canvas(mnist.X_test[0]))
    return d


def test_the_drawing_is_kept_across_pages_and_read_by_the_newly_chosen_model(app, saved, small_model, drawn):
    x = drawn.shown_input
    app.session_state["drawing"] = drawn
    app.run()
    default = load_model()
    assert shown(app)[0] == int(default.predict(x[None])[0])
    assert 'data-strokes="1"' in next(m.value for m in app.markdown if 'class="prediction"' in m.value)
    # Another page and back: still there. Then a model chosen elsewhere (a session's trained
    # network, as "use this model" sets it): the same drawing, read by that model.
    app.switch_page("pages/train.py").run()
    app.session_state["previous_session_model"] = small_model
    app.session_state["model_choice"] = "session"
    app.switch_page("pages/draw.py").run()
    assert not app.exception
    facts = " ".join(m.value for m in app.sidebar.markdown)
    assert "784 → 64 → 10" in facts
    assert shown(app) == (int(small_model.predict(x[None])[0]), assess(small_model.predict_proba(x[None])[0]).sure)
    pick(app, f"file:{saved.name}")
    assert shown(app)[0] == int(small_model.predict(x[None])[0])
    # Upload mode and back: the drawing is still there.
    app.button_group(key="input_mode").set_value("Upload an image").run()
    assert shown(app) is None
    app.button_group(key="input_mode").set_value("Draw").run()
    assert shown(app)[0] == int(small_model.predict(x[None])[0])


def test_undo_and_clear_buttons(app, drawn, mnist):
    one, two = as_canvas(mnist.X_test[0]), as_canvas(mnist.X_test[1])
    drawn.take(report(drawn, [stroke(1), stroke(2)]), lambda: two)
    app.session_state["drawing"] = drawn
    app.run()
    block = lambda: next(m.value for m in app.markdown if 'class="prediction"' in m.value)  # noqa: E731
    assert 'data-strokes="2"' in block()
    app.button(key="undo").click().run()
    drawing = app.session_state["drawing"]
    assert not app.exception and drawing.strokes == [stroke(1)] and drawing.waiting
    assert 'data-strokes="2"' in block()  # the old answer, while the canvas still shows the old drawing
    drawing.take(report(drawing, [stroke(1)]), lambda: one)  # what the canvas reports once it has it
    app.run()
    assert 'data-strokes="1"' in block() and shown(app)[0] == expected(load_model(), one)
    app.button(key="clear").click().run()
    assert app.session_state["drawing"].strokes == []
    blank = np.zeros((280, 280, 4), np.uint8)
    blank[..., 3] = 255
    app.session_state["drawing"].take(report(app.session_state["drawing"], []), lambda: blank)
    app.run()
    assert shown(app) is None and any(PROMPT in i.value for i in app.info)
    app.button(key="undo").click().run()  # nothing to undo
    assert not app.exception and shown(app) is None


def test_upload_says_the_real_limit_and_a_refused_picture_leaves_the_uploader(app, saved, small_model, mnist):
    app.button_group(key="input_mode").set_value("Upload an image").run()
    uploader = app.file_uploader(key="digit_upload")
    assert uploader.proto.max_upload_size_mb == MAX_UPLOAD_BYTES // 2**20 == 20
    assert "20 MB" in uploader.proto.help and any("up to 20 MB" in i.value for i in app.info)
    uploader.set_value(("scan.png", b"not an image", "image/png")).run()
    assert not app.exception
    assert any("Could not use **scan.png**" in e.value for e in app.error), [e.value for e in app.error]
    # The refused file is gone: a fresh, empty uploader takes the next picture.
    assert not [u for u in app.get("file_uploader") if u.key == "digit_upload"]
    [fresh] = app.get("file_uploader")
    assert fresh.value is None
    png = as_png(mnist.X_test[0])
    fresh.set_value(("seven.png", png, "image/png")).run()
    assert not app.error and shown(app)[0] == expected(load_model(), image_from_bytes(png))
