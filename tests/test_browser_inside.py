"""The look-inside views in headless Chromium: draw a digit stroke by stroke, open each view and see
its parts (four step pictures and the plain resize, a chart that grows per stroke and follows Undo,
two models side by side); first, train two tiny networks and open the mistakes explorer and runs
side by side (their model is then one to compare with on the draw page). Screenshots of every
view, desktop and phone (390x844), in ``screenshots/inside_*.png``.
"""

from __future__ import annotations

import re

import pytest
from browser_kit import draw, screenshot, shown_answer, touch_draw

pytestmark = pytest.mark.browser

# A 7 in two strokes (the bar, then the stem) and a third (a cross-bar): three points on the chart.
SEVEN_STROKES = [
    [(0.27, 0.20), (0.73, 0.20)],
    [(0.73, 0.20), (0.62, 0.42), (0.45, 0.85)],
    [(0.45, 0.52), (0.72, 0.52)],
]


def open_view(page, key: str, content: str = "*") -> None:
    """Open the expander ``key`` and wait for its content (a click during a rerun can be lost: again then)."""
    for _ in range(3):
        page.locator(f".st-key-{key} summary").click()
        try:
            page.locator(f".st-key-{key} details[open] {content}").first.wait_for(timeout=20_000)
            return
        except Exception:  # Playwright's TimeoutError: not opened, click again
            continue
    raise AssertionError(f"the view {key} did not open")


def check_draw_views(page, draw_strokes, name: str, models: int) -> None:
    from playwright.sync_api import expect

    page.get_by_role("heading", name="Draw a digit").wait_for()
    for n, stroke in enumerate(SEVEN_STROKES, start=1):
        draw_strokes(page, [stroke])
        shown_answer(page, n)
    open_view(page, "inside_steps", ".st-key-input_steps")
    open_view(page, "inside_why", ".st-key-why_digit")
    open_view(page, "inside_strokes", "[data-testid=stVegaLiteChart]")
    open_view(page, "inside_compare", "[data-testid=stMarkdown], [data-testid=stCaptionContainer]")
    steps = page.locator(".st-key-input_steps figure.step")
    expect(steps).to_have_count(4)
    expect(steps.nth(0)).to_contain_text("1. Ink found")
    expect(steps.nth(3)).to_contain_text("4. Centred")
    expect(page.locator(".st-key-input_steps figure.naive")).to_have_count(1)
    # Each picture decoded in the browser, as wide as the others.
    sizes = page.locator(".st-key-input_steps img").evaluate_all(
        "imgs => imgs.map(i => [i.complete, i.naturalWidth, i.getBoundingClientRect().width])"
    )
    assert len(sizes) == 5, sizes
    assert all(done and natural == shown == 112 for done, natural, shown in sizes), sizes
    expect(page.locator(".st-key-naive_verdict")).to_contain_text(re.compile(r"it would say a \d \(\d+%"))
    # Why this digit: the input and its red/blue map (decoded, 168 px), naming the answer and runner-up.
    why = page.locator(".st-key-why_digit figure")
    expect(why).to_have_count(2)
    expect(why.nth(1)).to_contain_text(re.compile(r"^Why \d, not \d$"))
    why_sizes = why.locator("img").evaluate_all("imgs => imgs.map(i => [i.complete, i.naturalWidth])")
    assert why_sizes == [[True, 168], [True, 168]], why_sizes
    strokes_view = page.locator(".st-key-inside_strokes")
    expect(strokes_view.locator("[data-testid=stVegaLiteChart]")).to_have_count(1)
    expect(strokes_view).to_contain_text("3 strokes with a digit to read")
    compare = page.locator(".st-key-inside_compare")
    if models > 1:
        expect(compare.locator("[data-testid=stMarkdown]").filter(has_text=re.compile(r"says a \d"))).to_have_count(2)
        expect(compare.locator("[data-testid=stVegaLiteChart]")).to_have_count(1)  # both models' bars, grouped
    else:
        expect(compare).to_contain_text("There is only one model to choose from")
    # The answer is still the first thing on the page: above every view.
    answer = page.locator(".prediction").bounding_box() or page.locator(".answer-bar").bounding_box()
    assert answer["y"] < page.locator(".st-key-inside_steps").bounding_box()["y"]
    screenshot(page, f"inside_draw_{name}.png")
    # Undo: the chart takes the third stroke back.
    page.locator(".st-key-undo button").click()
    shown_answer(page, 2)
    expect(strokes_view).to_contain_text("2 strokes with a digit to read")
    page.locator(".st-key-clear button").click()
    shown_answer(page, 0)
    expect(strokes_view).to_contain_text("Draw a digit first")
    expect(strokes_view.locator("[data-testid=stVegaLiteChart]")).to_have_count(0)


def train_tiny(page, hidden: str, lr: str) -> None:
    settings = page.locator(".st-key-hidden_sizes input")
    settings.wait_for(state="attached")
    if page.locator('[class*="st-key-run_"]').count():  # after a run the settings are folded away
        page.locator("summary").filter(has_text="Settings").click()
        settings.wait_for(state="visible")
    settings.fill(hidden)
    page.locator(".st-key-n_train input").fill("600")
    page.locator(".st-key-epochs input").fill("2")
    page.locator(".st-key-learning_rate input").fill(lr)
    page.locator(".st-key-start button").click()
    page.get_by_text("Done! The network got").wait_for(timeout=120_000)


def test_train_page_views(app_url, browser_page):
    from playwright.sync_api import expect

    page = browser_page
    page.goto(app_url + "/train")
    page.get_by_role("heading", name="Train a network").wait_for()
    train_tiny(page, "16", "0.0100")
    train_tiny(page, "32", "0.0030")
    expect(page.locator('[class*="st-key-run_"]')).to_have_count(2)
    open_view(page, "explore_mistakes", ".st-key-cell_digits")
    cell_digits = page.locator(".st-key-cell_digits [data-testid=stImage]")
    expect(cell_digits.first).to_be_visible(timeout=60_000)
    assert 1 <= cell_digits.count() <= 24
    explore = page.locator(".st-key-explore_mistakes")
    expect(explore.locator("[data-testid=stVegaLiteChart]")).to_have_count(2)  # reliability, coverage
    expect(explore).to_contain_text("Calibration error")
    open_view(page, "runs_side_by_side", "[data-testid=stDataFrame]")
    side = page.locator(".st-key-runs_side_by_side")
    expect(side.locator("[data-testid=stVegaLiteChart]")).to_have_count(2)
    expect(side.locator("[data-testid=stDataFrame]")).to_have_count(1)
    screenshot(page, "inside_train_desktop.png")
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "inside_train_phone.png")
    page.set_viewport_size({"width": 1280, "height": 900})


def test_draw_page_views_desktop(app_url, browser_page):
    browser_page.goto(app_url)
    # This browser trained two networks (test_train_page_views): its newest is one more to compare with.
    check_draw_views(browser_page, draw, "desktop", models=2)


def test_draw_page_views_phone(app_url, phone_page):
    phone_page.goto(app_url)
    check_draw_views(phone_page, touch_draw, "phone", models=1)  # another browser: no runs of its own
