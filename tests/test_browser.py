"""The real app in headless Chromium: draw digits with the mouse, train and stop from the page.

Screenshots of each page go into ``screenshots/``; the time from mouse-up to the prediction
shown is printed. Fixtures and helpers: ``tests/browser_kit.py``.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from browser_kit import DIGITS, draw, ink_at, screenshot, shown_prediction
from conftest import wait_until

pytestmark = pytest.mark.browser


def test_train_start_stop_shows_chart(app_url, browser_page):
    from playwright.sync_api import expect

    page = browser_page
    # First page of a fresh server, by deep link: the app's frame (navigation) must still run.
    page.goto(app_url + "/train")
    page.get_by_role("heading", name="Train a network").wait_for()
    sidebar = page.locator('[data-testid="stSidebar"]')
    # The sidebar renders after the heading: wait (auto-retrying) for the frame's menu, never read it at once.
    links = sidebar.locator('[data-testid="stPageLink"]')
    expect(links).to_have_count(3)
    expect(links).to_contain_text(["Draw a digit", "My digits", "Train a network"])  # the frame's menu ran
    assert sidebar.locator('[data-testid="stSidebarNav"]').count() == 0  # not Streamlit's own pages/ list
    # Minutes even on an idle machine (200k images/s for small nets): still training when Stop is pressed below.
    page.locator(".st-key-n_train input").fill("60000")
    page.locator(".st-key-epochs input").fill("200")
    page.locator(".st-key-hidden_sizes input").fill("128,64")
    page.locator(".st-key-start button").click()
    page.get_by_text(re.compile(r"Epoch \d+/200 · batch")).wait_for(timeout=60_000)
    page.locator('[data-testid="stVegaLiteChart"]').first.wait_for(timeout=30_000)
    screenshot(page, "train_running.png")
    # Leave for the draw page and come back: the run goes on and the live panel is still there.
    nav = page.locator('[data-testid="stSidebar"] [data-testid="stPageLink"]')
    nav.get_by_text("Draw a digit").click()
    page.wait_for_selector("canvas.upper-canvas")
    page.get_by_text("A network is training").wait_for()
    page.get_by_text("Watch it train").click()
    page.get_by_text(re.compile(r"Epoch \d+/200 · batch")).wait_for()
    page.locator('[data-testid="stVegaLiteChart"]').first.wait_for()
    page.locator(".st-key-stop button").click()
    page.get_by_text("Training was stopped early").wait_for(timeout=60_000)
    page.get_by_text("Test accuracy").first.wait_for()
    page.get_by_text(re.compile(r"Stopped in epoch \d+ of 200, after batch \d+ of 430")).wait_for()
    page.locator('[data-testid="stVegaLiteChart"]').nth(2).wait_for()  # curves, per digit, confusion
    screenshot(page, "train_done.png")
    page.locator(".st-key-use_model button").click()
    page.wait_for_selector("canvas.upper-canvas")
    facts = page.locator('[data-testid="stSidebar"]')
    expect(facts).to_contain_text("784 → 128 → 64 → 10")
    expect(facts).to_contain_text("Source: train page")


def test_draw_digits_with_the_mouse(app_url, browser_page):
    from playwright.sync_api import expect

    page = browser_page
    page.goto(app_url)
    page.wait_for_selector("canvas.upper-canvas")
    prompt = page.get_by_text("Draw a digit from 0 to 9 in the black box")
    prompt.wait_for()
    screenshot(page, "draw_empty.png")
    latencies = []
    for round_ in range(2):
        for digit, strokes in DIGITS.items():
            draw(page, strokes)
            shown, seconds = shown_prediction(page, len(strokes))
            latencies.append((digit, seconds))
            if round_ == 0:
                screenshot(page, f"draw_{digit}.png")
            assert shown == digit, f"drew a {digit}, the page shows {shown}"
            # Clear keeps the canvas mounted: the next digit is drawn as soon as it shows empty.
            page.locator(".st-key-clear button").click()
            prompt.wait_for()
            expect(page.locator(".prediction")).to_have_count(0)
            assert wait_until(lambda: ink_at(page, 0.5, 0.5, radius=140) == 0, timeout=30)
    times = [t for _, t in latencies]
    print(
        "\nmouse-up -> prediction shown (s): "
        + ", ".join(f"{d} {t:.3f}" for d, t in latencies)
        + f"; median {np.median(times):.3f}, max {max(times):.3f}"
    )
