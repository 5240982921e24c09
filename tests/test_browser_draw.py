"""The draw page in headless Chromium, as a class uses it: mouse and touch, desktop and phone.

Strokes that start anywhere on the canvas (corners, edges, under the component's old toolbar)
are drawn and counted; Undo and Clear are buttons outside the drawing area; a stroke drawn at
once after Clear is never lost, also with every core busy; the drawing survives other pages,
upload mode and the browser's Back, and is read again by a newly trained model; on a phone
the answer is on screen while drawing; uploads say their real limit and a refused picture
leaves the uploader. Prints mouse-up -> answer times (median, p90), idle and under load.
Fixtures and helpers: ``tests/browser_kit.py``.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from browser_kit import (
    DIGITS,
    answer_delays,
    cpu_load,
    draw,
    ink_at,
    screenshot,
    shown_answer,
    touch_draw,
    watch_answers,
)
from conftest import wait_until
from PIL import Image

pytestmark = pytest.mark.browser

# Strokes that start on the canvas's border, 2 px in (corners and edge midpoints), and in the
# strip the component's toolbar used to cover (top ~30 px of the right half), each going inwards.
EDGE = 2 / 280
STARTS = [
    (EDGE, EDGE),
    (0.5, EDGE),
    (1 - EDGE, EDGE),
    (1 - EDGE, 0.5),
    (1 - EDGE, 1 - EDGE),
    (0.5, 1 - EDGE),
    (EDGE, 1 - EDGE),
    (EDGE, 0.5),
    (0.62, 0.05),
    (0.85, 0.08),
]
LEFT_ONE = [[(0.2, 0.15), (0.2, 0.85)]]  # a 1 at the left, apart from SEVEN's top bar
SEVEN = DIGITS["7"]
ONLY_IN = {"1": (0.2, 0.5), "7": (0.7, 0.2)}  # a point each of these two digits inks and the other not


def inwards(start: tuple[float, float]) -> list[list[tuple[float, float]]]:
    x, y = start
    return [[(x, y), (x + 0.3 * (0.5 - x), y + 0.3 * (0.5 - y))]]


def open_draw_page(page, app_url) -> None:
    page.goto(app_url)
    page.wait_for_selector("canvas.upper-canvas")
    page.wait_for_selector('.answer-bar[data-strokes="0"]', state="attached")


def clear(page) -> None:
    """Press Clear and wait until the page says it is cleared: by then the canvas is blank too."""
    page.locator(".st-key-clear button").click()
    shown_answer(page, 0)
    assert ink_at(page, 0.5, 0.5, radius=140) == 0


def check_strokes_from_every_edge(page, draw_with) -> None:
    for count, start in enumerate(STARTS, 1):
        draw_with(page, inwards(start))
        shown_answer(page, count)  # drawn and counted
        assert ink_at(page, *start) > 200, f"a stroke starting at {start} left no ink there"
    # Nothing of the old toolbar (undo, redo, the pencil of edit mode, reset) is on the canvas.
    assert page.locator(".dc-toolbar").first.is_hidden()
    assert page.locator('button[aria-label="Edit"]').first.is_hidden()
    assert page.locator('button[aria-label="Reset canvas & history"]').first.is_hidden()


def test_strokes_from_every_edge_and_corner_are_drawn_and_counted_mouse(app_url, browser_page):
    page = browser_page
    open_draw_page(page, app_url)
    check_strokes_from_every_edge(page, draw)
    # Pressing where the hidden reset used to be adds a stroke and wipes nothing.
    draw(page, inwards((0.97, 0.04)))
    shown_answer(page, len(STARTS) + 1)
    assert all(ink_at(page, *start) > 200 for start in STARTS)
    screenshot(page, "draw_edges_desktop.png")
    clear(page)


def test_undo_and_clear_are_buttons_and_undo_takes_the_last_stroke(app_url, browser_page):
    from playwright.sync_api import expect

    page = browser_page
    open_draw_page(page, app_url)
    canvas_box = page.locator("canvas.upper-canvas").bounding_box()
    for name in ("undo", "clear"):  # visible buttons below the canvas, not on it
        button = page.locator(f".st-key-{name} button")
        expect(button).to_be_visible()
        assert button.bounding_box()["y"] >= canvas_box["y"] + canvas_box["height"]
    draw(page, LEFT_ONE)
    assert shown_answer(page, 1) == "1"
    # A second stroke, then Undo at once: the stroke just drawn goes, the first stays.
    draw(page, SEVEN)
    page.locator(".st-key-undo button").click()
    assert shown_answer(page, 1) == "1"
    assert wait_until(lambda: ink_at(page, *ONLY_IN["7"]) == 0, timeout=30)
    assert ink_at(page, *ONLY_IN["1"]) > 200
    page.locator(".st-key-undo button").click()
    shown_answer(page, 0)
    assert wait_until(lambda: ink_at(page, *ONLY_IN["1"]) == 0, timeout=30)
    page.locator(".st-key-undo button").click()  # nothing left to undo: nothing happens
    draw(page, SEVEN)
    assert shown_answer(page, 1) == "7"
    clear(page)


def test_a_stroke_right_after_clear_is_never_lost_under_load(app_url, browser_page):
    """50 times, with every core busy: Clear, and as soon as the page shows it cleared (or 100,
    300, 1000 ms later), draw the next digit; it is drawn, counted and read, every time."""
    page = browser_page
    open_draw_page(page, app_url)
    draw(page, LEFT_ONE)
    shown_answer(page, 1)
    pauses_ms = (0, 100, 300, 1000)
    with cpu_load():
        for round_ in range(50):
            digit, other = ("7", "1") if round_ % 2 == 0 else ("1", "7")
            clear(page)
            if pauses_ms[round_ % 4]:
                page.wait_for_timeout(pauses_ms[round_ % 4])  # the person's pause, not a wait for the app
            draw(page, SEVEN if digit == "7" else LEFT_ONE)
            page.wait_for_selector(f'.answer-bar[data-strokes="1"][data-digit="{digit}"]', state="attached")
            assert ink_at(page, *ONLY_IN[digit]) > 200 and ink_at(page, *ONLY_IN[other]) == 0, f"round {round_}"
    clear(page)


def measure_strokes(page, rounds: int) -> list[float]:
    """Draw ``rounds`` one- and two-stroke digits (Clear between them); mouse-up -> answer times."""
    watch_answers(page)
    before = len(answer_delays(page))
    for round_ in range(rounds):
        if round_ % 3 == 2:
            draw(page, LEFT_ONE)
            shown_answer(page, 1)
            draw(page, [[(0.45, 0.5), (0.85, 0.5)]])
            shown_answer(page, 2)
        else:
            draw(page, SEVEN if round_ % 2 else LEFT_ONE)
            shown_answer(page, 1)
        page.locator(".st-key-clear button").click()
        shown_answer(page, 0)
    return answer_delays(page)[before:]


def test_answer_speed_idle_and_under_load(app_url, browser_page):
    """Mouse-up to the answer in the page (timed in the browser); printed, not asserted."""
    page = browser_page
    open_draw_page(page, app_url)
    measure_strokes(page, 3)  # warm-up: first chart and image in this page
    idle = measure_strokes(page, 18)
    with cpu_load():
        loaded = measure_strokes(page, 9)
    assert len(idle) == 24 and len(loaded) == 12  # every stroke got its answer (one and two strokes)
    for name, times in (("idle", idle), ("every core busy", loaded)):
        print(
            f"\nmouse-up -> answer shown, {name}: median {np.median(times):.3f} s, "
            f"p90 {np.percentile(times, 90):.3f} s, max {max(times):.3f} s over {len(times)} strokes"
        )


def test_drawing_survives_other_pages_upload_back_and_a_new_model(app_url, browser_page):
    from playwright.sync_api import expect

    page = browser_page
    open_draw_page(page, app_url)
    draw(page, SEVEN)
    assert shown_answer(page, 1) == "7"
    sidebar = page.locator('[data-testid="stSidebar"]')

    def still_there(reads_as: str | None = "7") -> None:
        page.wait_for_selector("canvas.upper-canvas")
        digit = shown_answer(page, 1)
        assert digit is not None and reads_as in (None, digit)
        assert wait_until(lambda: ink_at(page, *ONLY_IN["7"]) > 200, timeout=30)

    sidebar.get_by_text("Train a network").click()
    page.get_by_role("heading", name="Train a network").wait_for()
    sidebar.get_by_text("Draw a digit").click()
    still_there()
    page.locator(".st-key-input_mode button", has_text="Upload an image").click()
    page.get_by_text("Upload a photo or scan of one digit").wait_for()
    page.locator(".st-key-input_mode button", has_text="Draw").click()
    still_there()
    sidebar.get_by_text("Train a network").click()
    page.get_by_role("heading", name="Train a network").wait_for()
    page.go_back()
    still_there()
    # More strokes go on top of the kept drawing.
    draw(page, LEFT_ONE)
    shown_answer(page, 2)
    page.locator(".st-key-undo button").click()
    still_there()
    # Train a tiny network and use it: the same drawing is read again, by the new model.
    before = page.locator(".prediction-prob").inner_text()
    sidebar.get_by_text("Train a network").click()
    page.locator(".st-key-n_train input").fill("300")
    page.locator(".st-key-epochs input").fill("1")
    page.locator(".st-key-hidden_sizes input").fill("16")
    page.locator(".st-key-start button").click()
    page.locator(".st-key-use_model button").click(timeout=120_000)
    still_there(reads_as=None)  # whatever a network trained on 300 digits for one epoch makes of it
    expect(sidebar).to_contain_text("Source: train page")
    expect(page.locator(".prediction-prob")).not_to_have_text(before)
    clear(page)


def test_phone_touch_drawing_answer_on_screen_and_menu(app_url, phone_page):
    from playwright.sync_api import expect

    page = phone_page
    open_draw_page(page, app_url)
    menu = page.locator(".st-key-phone_menu")
    expect(menu.get_by_text("Draw a digit")).to_be_visible()
    expect(menu.get_by_text("Train a network")).to_be_visible()
    sidebar_button = page.locator('[data-testid="stExpandSidebarButton"]')
    expect(sidebar_button).to_be_visible()  # it holds this page's model picker, and says so
    assert sidebar_button.evaluate("b => getComputedStyle(b, '::after').content") == '"Model"'
    check_strokes_from_every_edge(page, touch_draw)
    clear(page)
    touch_draw(page, SEVEN)
    assert shown_answer(page, 1) == "7"
    viewport = page.viewport_size
    canvas = page.locator("canvas.upper-canvas").bounding_box()
    bar = page.locator(".answer-bar").bounding_box()
    # Without scrolling: the whole canvas and the answer are on screen together.
    assert 0 <= canvas["y"] and canvas["y"] + canvas["height"] <= viewport["height"]
    assert 0 <= bar["y"] and bar["y"] + bar["height"] <= viewport["height"]
    expect(page.locator(".answer-bar .answer-bar-digit")).to_have_text("7")
    screenshot(page, "draw_phone.png")
    # The menu at the top changes page; no sidebar is left open over the page.
    menu.get_by_text("Train a network").click()
    page.get_by_role("heading", name="Train a network").wait_for()
    expect(sidebar_button).to_be_hidden()  # nothing of this page's is in the sidebar
    screenshot(page, "train_phone.png")
    assert not page.locator('[data-testid="stSidebar"]').is_visible() or (
        page.locator('[data-testid="stSidebar"]').bounding_box()["x"] + 1 < 0
    )
    menu.get_by_text("Draw a digit").click()
    assert shown_answer(page, 1) == "7"


FILE_IN_UPLOADER = '[data-testid="stFileChip"]'  # a file the uploader lists (Streamlit 1.67's "chip")


def upload(page, path) -> None:
    """Give ``path`` to the uploader once the page shows exactly one.

    After each upload the page swaps in a fresh, empty uploader (so no refused file stays in
    its list); for a moment the old one can still be in the page beside the new one.
    """
    from playwright.sync_api import expect

    inputs = page.locator('[data-testid="stFileUploader"] input[type="file"]')
    expect(inputs).to_have_count(1, timeout=30_000)
    inputs.set_input_files(str(path))


def test_upload_says_its_limit_and_a_refused_picture_leaves_the_uploader(app_url, browser_page, tmp_path, mnist):
    from playwright.sync_api import expect

    page = browser_page
    open_draw_page(page, app_url)
    page.locator(".st-key-input_mode button", has_text="Upload an image").click()
    page.get_by_text("Upload a photo or scan of one digit").wait_for()
    expect(page.get_by_text("Draw a digit from 0 to 9 in the black box")).to_have_count(0)
    uploader = page.locator('[data-testid="stFileUploader"]')
    expect(uploader).to_contain_text("20MB")
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"not an image at all")
    upload(page, bad)
    page.get_by_text(re.compile(r"Could not use .*notes\.png")).wait_for()
    # The refused file is not left in the uploader's list; a second refusal does not pile up either.
    expect(page.locator(FILE_IN_UPLOADER)).to_have_count(0)
    upload(page, bad)
    page.get_by_text(re.compile(r"Could not use .*notes\.png")).wait_for()
    expect(page.locator(FILE_IN_UPLOADER)).to_have_count(0)
    screenshot(page, "draw_upload_refused.png")
    # Over the limit: the browser refuses it, saying the same limit.
    big = tmp_path / "huge.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(21 * 10**6))
    upload(page, big)
    expect(uploader).to_contain_text("must be 20.0MB or smaller")
    # A real picture of a digit (dark ink on white paper, as photographed) is read like a drawing,
    # shown below the uploader, which is empty again (the refused files are gone from it).
    seven = tmp_path / "seven.png"
    paper = Image.fromarray(255 - mnist.X_test[0].reshape(28, 28)).resize((200, 200), Image.Resampling.BILINEAR)
    paper.save(seven)
    upload(page, seven)
    page.wait_for_selector('.prediction[data-digit="7"]')
    expect(page.get_by_text(re.compile(r"Could not use"))).to_have_count(0)
    expect(page.locator(FILE_IN_UPLOADER)).to_have_count(0)
    expect(page.get_by_text("seven.png")).to_be_visible()
    screenshot(page, "draw_upload.png")
    page.locator(".st-key-input_mode button", has_text="Draw").click()
    page.wait_for_selector("canvas.upper-canvas")
