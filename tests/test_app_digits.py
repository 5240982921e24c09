"""The user's own digits under Streamlit's AppTest: "Right" / "No, it's a ..." on the draw page grow
the session's set (and clear the canvas, never taking one picture twice), collect mode's steps
(next, skip, undo last, done), the My digits page (grid, delete one, clear all with confirmation,
download, upload of a good and of a hostile set: merge or replace, nothing lost), and teaching a
small model: a fine-tune run appears, its before/after figures show, and its kept model is
listed on the draw page.

AppTest cannot draw, so a test plays the canvas: it puts a ``Drawing`` in session state and
gives it the canvas's report of a picture (an MNIST test digit painted as the canvas paints),
as tests/test_app_draw.py does.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import wait_until
from streamlit.testing.v1 import AppTest
from test_app_draw import as_canvas, report, stroke

from mnist_net import canvas_to_input, load_model
from mnist_net.digitset import DigitSet, DigitSetError, digit_set_from_bytes, digit_set_to_bytes
from mnist_net.registry import save_new_model
from pages.ui.drawing import Drawing

APP = str(Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture
def app(models_dir):
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception
    return at


def canvas_reports(at, picture: np.ndarray, strokes: int = 1) -> None:
    """What the canvas does after a stroke: report its picture, for the drawing's current revision."""
    drawing = at.session_state["drawing"] if "drawing" in at.session_state else None
    if drawing is None:
        drawing = Drawing()
        drawing.give([], mounting=True)
        at.session_state["drawing"] = drawing
    assert drawing.take(report(drawing, [stroke(i) for i in range(strokes)]), lambda: picture)
    at.run()
    assert not at.exception


def canvas_reports_blank(at) -> None:
    """What the canvas does once it has the cleared drawing: report it, blank."""
    blank = np.zeros((280, 280, 4), np.uint8)
    blank[..., 3] = 255
    drawing = at.session_state["drawing"]
    assert drawing.take(report(drawing, []), lambda: blank)
    at.run()


def my_set(at) -> DigitSet:
    return at.session_state["my_digits"]


def has_button(at, key: str) -> bool:
    return any(b.key == key for b in at.button)


def test_right_and_no_its_a_grow_the_set_and_clear_the_canvas(app, mnist):
    seven, two = mnist.X_test[0], mnist.X_test[1]  # a 7 and a 2
    canvas_reports(app, as_canvas(seven))
    default_says = int(load_model().predict(canvas_to_input(as_canvas(seven))[None])[0])
    right = app.button(key="feedback_right")
    assert right.label == f"Right, it's a {default_says}"
    right.click().run()
    assert not app.exception
    mine = my_set(app)
    assert len(mine) == 1 and int(mine.labels[0]) == default_says
    assert np.array_equal(mine.inputs[0], canvas_to_input(as_canvas(seven)))
    assert mine.thumbnails[0].shape == (56, 56) and mine.thumbnails[0].max() > 0
    # The canvas is given a blank drawing; until it reports it, the old picture cannot be kept again.
    drawing = app.session_state["drawing"]
    assert drawing.strokes == [] and drawing.waiting
    assert not has_button(app, "feedback_right")
    canvas_reports_blank(app)
    assert any("Kept as a" in c.value and "1 collected" in c.value for c in app.caption)
    # The next digit, corrected: "No, it's a 5" keeps it as a 5, whatever the network said.
    canvas_reports(app, as_canvas(two))
    app.button_group(key="feedback_digit").set_value(5).run()
    assert not app.exception
    mine = my_set(app)
    assert len(mine) == 2 and list(mine.labels) == [default_says, 5]
    assert np.array_equal(mine.inputs[1], canvas_to_input(as_canvas(two)))
    assert app.session_state["feedback_digit"] is None  # ready for the next digit
    canvas_reports_blank(app)
    # The set survives another page, upload mode and Clear.
    app.switch_page("pages/train.py").run()
    app.switch_page("pages/draw.py").run()
    app.button_group(key="input_mode").set_value("Upload an image").run()
    app.button_group(key="input_mode").set_value("Draw").run()
    app.button(key="clear").click().run()
    assert not app.exception and len(my_set(app)) == 2
    assert any("2 collected" in c.value for c in app.caption)


def prompt(at) -> tuple[int, int] | str | None:
    """(digit asked, its number) from collect mode's prompt; "clearing" while the canvas has not
    shown its cleared drawing (no digit named yet); None without a prompt."""
    for md in at.markdown:
        if 'class="collect-prompt"' in md.value:
            if 'data-ready="0"' in md.value:
                return "clearing"
            asked = int(md.value.split('data-asked="')[1].split('"')[0])
            number = int(md.value.split('data-number="')[1].split('"')[0])
            return asked, number
    return None


def test_collect_mode_asks_each_digit_in_turn_with_skip_and_undo_last(app, mnist):
    app.button_group(key="input_mode").set_value("Collect my digits").run()
    assert prompt(app) is None and has_button(app, "collect_start")
    app.number_input(key="collect_rounds").set_value(1).run()
    app.button(key="collect_start").click().run()
    assert prompt(app) == (0, 1)
    app.button(key="collect_next").click().run()  # nothing drawn yet
    assert prompt(app) == (0, 1) and len(my_set(app)) == 0
    assert any("Draw a 0 first" in c.value for c in app.caption)
    pictures = [as_canvas(mnist.X_test[i]) for i in range(10)]
    canvas_reports(app, pictures[0])
    app.button(key="collect_next").click().run()
    # Taken; the next digit is named once the canvas shows the cleared drawing (a stroke begun
    # before then would be cleared too).
    assert prompt(app) == "clearing" and list(my_set(app).labels) == [0]
    app.button(key="collect_next").click().run()  # pressed twice: the same picture is not taken again
    assert prompt(app) == "clearing" and len(my_set(app)) == 1
    canvas_reports_blank(app)
    assert prompt(app) == (1, 2)
    app.switch_page("pages/my_digits.py").run()  # another page and back: collect mode is where it was
    app.switch_page("pages/draw.py").run()
    assert prompt(app) == (1, 2) and len(my_set(app)) == 1
    app.button(key="collect_skip").click().run()
    assert prompt(app) == (2, 3) and len(my_set(app)) == 1
    app.button(key="collect_back").click().run()  # undoes the skip: asks for the 1 again
    assert prompt(app) == (1, 2) and len(my_set(app)) == 1
    app.button(key="collect_back").click().run()  # undoes the 0: it leaves the set
    assert prompt(app) == (0, 1) and len(my_set(app)) == 0
    for digit in range(10):
        if digit == 4:
            app.button(key="collect_skip").click().run()
            continue
        canvas_reports(app, pictures[digit])
        app.button(key="collect_next").click().run()
        canvas_reports_blank(app)
    assert prompt(app) is None
    assert any("Done: 10 asked, 9 kept" in s.value for s in app.success)
    assert list(my_set(app).labels) == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    assert has_button(app, "collect_start")  # "Collect more"


def a_set(mnist, labels, start=0) -> DigitSet:
    """A digit set of MNIST test digits painted as canvases, labelled ``labels``."""
    from mnist_net.digitset import thumbnail_from_canvas

    digits = DigitSet.empty()
    for k, label in enumerate(labels):
        picture = as_canvas(mnist.X_test[start + k])
        digits = digits.add(canvas_to_input(picture), label, thumbnail_from_canvas(picture), 1.7e9 + start + k)
    return digits


def open_my_digits(at, digits: DigitSet | None = None) -> None:
    if digits is not None:
        at.session_state["my_digits"] = digits
    at.switch_page("pages/my_digits.py").run()
    assert not at.exception
    assert at.title[0].value == "My digits"


def test_my_digits_grid_delete_one_and_clear_all(app, mnist):
    open_my_digits(app, a_set(mnist, [3, 3, 7, 0]))
    assert any("4 digits: 0: 1" in c.value for c in app.caption)
    assert len(app.get("image")) == 4  # the grid: one picture per digit
    # Delete the second 3 (digit 1 of the set).
    app.button(key="remove_digit_1").click().run()
    mine = my_set(app)
    assert list(mine.labels) == [3, 7, 0] and mine.timestamps[0] == 1.7e9
    # A stale click (the set changed since the page was drawn) deletes nothing.
    app.session_state["my_digits"] = a_set(mnist, [1, 1, 1], start=100)
    app.button(key="remove_digit_0").click().run()
    assert len(my_set(app)) == 3  # digit 0 is not the one that was shown
    # Clear all asks first (a popover), then empties the set.
    app.button(key="clear_all_digits").click().run()
    assert len(my_set(app)) == 0
    assert any("No digits yet" in i.value for i in app.info)


def test_download_then_upload_merges_or_replaces_and_a_hostile_file_changes_nothing(app, mnist):
    mine = a_set(mnist, [1, 2, 3])
    open_my_digits(app, mine)
    data = app.get("download_button")[0].proto
    assert data.label.startswith("Download my 3 digits")
    theirs = a_set(mnist, [4, 5], start=50)
    upload = lambda name, blob: app.file_uploader(key=[u.key for u in app.get("file_uploader")][0]).set_value(  # noqa: E731
        (name, blob, "application/octet-stream")
    )
    upload("theirs.npz", digit_set_to_bytes(theirs)).run()
    assert not app.exception and len(my_set(app)) == 3  # nothing changes before the user says
    assert any("theirs.npz** holds 2 digits" in i.value for i in app.info)
    app.button(key="add_uploaded").click().run()
    assert list(my_set(app).labels) == [1, 2, 3, 4, 5]
    upload("theirs.npz", digit_set_to_bytes(theirs)).run()
    app.button(key="replace_with_uploaded").click().run()
    assert list(my_set(app).labels) == [4, 5]
    # Hostile files: refused with digitset's reason, the set untouched, the uploader empty again.
    pickled = io.BytesIO()
    np.savez(pickled, inputs=np.array([object()], dtype=object))
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("labels.npy", b"\x93NUMPY garbage")
    bad_labels = DigitSet(theirs.inputs, theirs.labels, theirs.thumbnails, theirs.timestamps)
    raw = dict(np.load(io.BytesIO(digit_set_to_bytes(bad_labels))))
    raw["labels"] = np.array([4, 12], dtype=raw["labels"].dtype)
    out_of_range = io.BytesIO()
    np.savez(out_of_range, **raw)
    for name, blob in [
        ("pickle.npz", pickled.getvalue()),
        ("broken.npz", zipped.getvalue()),
        ("labels.npz", out_of_range.getvalue()),
        ("empty.npz", b""),
        ("text.npz", b"hello"),
    ]:
        with pytest.raises(DigitSetError) as refused:
            digit_set_from_bytes(blob)
        upload(name, blob).run()
        assert not app.exception
        assert any(f"Could not use **{name}**" in e.value and "unchanged" in e.value for e in app.error), name
        assert any(str(refused.value)[:30] in e.value.replace("\\", "") for e in app.error), name
        assert list(my_set(app).labels) == [4, 5]
        assert all(u.value is None for u in app.get("file_uploader"))


def wait_for_run(at, timeout=240) -> None:
    def finished():
        at.run()
        assert not at.exception
        return has_button(at, "teach_again")

    assert wait_until(finished, timeout=timeout, interval=0.5)


@pytest.mark.slow
def test_teaching_a_small_model_makes_a_run_with_figures_and_a_kept_model(app, small_model, models_dir, mnist):
    saved = save_new_model(small_model)
    labels = [d for _ in range(3) for d in range(10)]
    open_my_digits(app, a_set(mnist, labels, start=200))
    assert app.selectbox(key="teach_model").value == "default"  # the draw page's model, to start with
    app.selectbox(key="teach_model").set_value(f"file:{saved.name}").run()
    app.button(key="teach").click().run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    run_id = app.session_state["teach_run"]
    assert run_id
    wait_for_run(app)
    assert not app.error, [e.value for e in app.error]
    assert any("on 20 of your digits; tested on 10 others" in s.value for s in app.success)
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Your 10 held-out digits"].endswith("%") and metrics["MNIST test (10,000 digits)"].endswith("%")
    [figures] = [c.value for c in app.caption if c.value.startswith("Before → after")]
    assert "your held-out digits" in figures and " of 10) → " in figures and "MNIST test" in figures
    # The run is a run like any other: the train page lists it, as a fine-tune of the saved model.
    app.switch_page("pages/train.py").run()
    assert any("fine-tunes" in m.value for m in [*app.markdown, *app.caption])
    app.switch_page("pages/my_digits.py").run()
    app.text_input(key=f"teach_name_{run_id}").set_value("my hand").run()
    app.button(key="keep_taught").click().run()
    assert not app.exception
    kept = [p.name for p in models_dir.iterdir() if "my-hand" in p.name]
    assert len(kept) == 1
    assert load_model(models_dir / kept[0]).fine_tune_ is not None
    app.button(key="use_taught").click().run()
    assert not app.exception and app.title[0].value == "Draw a digit"
    assert app.selectbox(key="model_choice").value == f"file:{kept[0]}"


@pytest.mark.slow
def test_teaching_can_be_stopped(app, small_model, mnist):
    save_new_model(small_model)
    open_my_digits(app, a_set(mnist, list(range(10)) * 2, start=300))
    app.button(key="teach").click().run()
    app.button(key="stop_teaching").click().run()
    assert not app.exception
    wait_for_run(app)
    stopped = [w.value for w in app.warning if "Stopped early" in w.value]
    cancelled = [i.value for i in app.info if "Stopped before it started" in i.value]
    assert stopped or cancelled  # which one depends on whether its process had started
    assert has_button(app, "teach_again")
    app.button(key="teach_again").click().run()
    assert has_button(app, "teach") and len(my_set(app)) == 20  # the digits are all still there
