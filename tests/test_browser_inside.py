"""The look-inside views in headless Chromium: draw a digit stroke by stroke, open each view and see
its parts (four step pictures and the plain resize, why this digit, inside the layers with its
cells counted from the decoded pictures, a chart that grows per stroke and follows Undo, two models
side by side); first, train two tiny networks and open the mistakes explorer and runs side by side
(their model is then one to compare with on the draw page). A small CNN, uploaded through the model
picker: its filters, feature maps and dense units. Screenshots of every view, desktop and phone
(390x844), in ``screenshots/inside_*.png``.
"""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from browser_kit import choose_option, draw, screenshot, shown_answer, touch_draw
from PIL import Image
from test_app_inside import tiles_in

from mnist_net import MLP, TrainConfig, load_model, save_model

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
    open_view(page, "inside_layers", ".st-key-layer_outputs")
    open_view(page, "inside_strokes", "[data-testid=stVegaLiteChart]")
    # (:is: a bare comma list would also match any caption elsewhere, e.g. the phone's hidden intro line)
    open_view(page, "inside_compare", ":is([data-testid=stMarkdown], [data-testid=stCaptionContainer])")
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
    # Inside the layers (the shipped 784-400-200-10): a cell per unit, and 8 top units' 28x28 weights.
    layers = shown_pictures(page, ".st-key-layer_outputs")
    hidden = [layer.size for layer in load_model().layers[:-1]]
    assert [c for c, _, _ in layers] == [f"{i} · dense {h} · {h} units" for i, h in enumerate(hidden, start=1)]
    assert [tiles_in(p)[2] for _, p, _ in layers] == hidden
    assert all(shown <= page.viewport_size["width"] for _, _, shown in layers)
    units = shown_pictures(page, ".st-key-top_units")
    assert len(units) == 8 and all(p.shape == (84, 84, 3) and shown == 84 for _, p, shown in units)
    assert all(re.fullmatch(r"unit \d+ · \d+\.\d\d", c) for c, _, _ in units)
    if name == "phone":  # the two "why" pictures side by side, 140 px each
        boxes = [why.nth(i).bounding_box() for i in range(2)]
        assert boxes[0]["y"] == boxes[1]["y"] and boxes[1]["width"] == pytest.approx(140, abs=1)
    strokes_view = page.locator(".st-key-inside_strokes")
    expect(strokes_view.locator("[data-testid=stVegaLiteChart]")).to_have_count(1)
    # The legend's ten digits all inside the chart (on a phone too): two rows of five.
    labels = strokes_view.locator("svg .role-legend-label text")
    expect(labels).to_have_count(10)
    chart = strokes_view.locator("[data-testid=stVegaLiteChart]").bounding_box()
    assert [labels.nth(i).text_content() for i in range(10)] == [str(d) for d in range(10)]
    for i in range(10):
        label = labels.nth(i).bounding_box()
        assert chart["x"] <= label["x"] and label["x"] + label["width"] <= chart["x"] + chart["width"], (i, label)
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


def shown_pictures(page, container: str) -> list[tuple[str, np.ndarray, float]]:
    """(caption, decoded PNG, width shown in CSS px) of each figure in a picture strip on the page."""
    figures = page.locator(f"{container} figure").evaluate_all(
        "fs => fs.map(f => [f.querySelector('figcaption').textContent, f.querySelector('img').src, "
        "f.querySelector('img').complete, f.querySelector('img').getBoundingClientRect().width])"
    )
    assert figures and all(done for _, _, done, _ in figures), figures
    return [
        (caption, np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB")), width)
        for caption, src, _, width in figures
    ]


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


SMALL_CNN = "conv 8x5x5 -> pool 2 -> conv 8x3x3 -> pool 2 -> dense 32 -> dense 10"


@pytest.fixture(scope="module")
def small_cnn_file(tmp_path_factory, mnist):
    """A small CNN trained for one epoch on 3,000 MNIST digits (about 80% right: its maps show strokes)."""
    config = TrainConfig(layers=SMALL_CNN, activation="relu", epochs=1, n_train=3000, batch_size=32, seed=0)
    model = MLP(config).fit(mnist.X_train, mnist.y_train)
    return save_model(model, tmp_path_factory.mktemp("cnn") / "small-cnn.pkl")


def check_cnn_layers(page, draw_strokes, cnn_file, name: str) -> None:
    """Upload the CNN through the model picker, draw a 7, and count its filters, maps and units."""
    from playwright.sync_api import expect

    page.get_by_role("heading", name="Draw a digit").wait_for()
    sidebar = page.locator('[data-testid="stSidebar"]')
    if not sidebar.is_visible() or sidebar.bounding_box()["x"] < 0:  # a phone: the picker is folded away
        page.locator('[data-testid="stExpandSidebarButton"]').click()
    choose_option(page, "model_choice", "Upload a model file…")
    page.locator('.st-key-model_upload input[type="file"]').set_input_files(str(cnn_file))
    expect(sidebar).to_contain_text("Loaded small-cnn.pkl", timeout=60_000)
    if name == "phone":
        page.keyboard.press("Escape")
        page.locator("[data-testid=stSidebarCollapseButton] button").click()
    for n, stroke in enumerate(SEVEN_STROKES, start=1):
        draw_strokes(page, [stroke])
        shown_answer(page, n)
    open_view(page, "inside_layers", ".st-key-layer_outputs")
    [(caption, filters, _)] = shown_pictures(page, ".st-key-layer_filters")
    assert caption == "1 · conv 8x5x5 · 8 filters 5×5" and tiles_in(filters) == (1, 8, 8)
    tiles = filters[~(filters == 255).all(axis=2)].astype(int)  # the pixels of the tiles, not the white lines
    reds, greens, blues = tiles.T
    assert (reds > 0).any() and (blues > 0).any() and not ((reds > 0) & (blues > 0)).any()  # one sign each
    assert (greens == 0).all()
    layers = shown_pictures(page, ".st-key-layer_outputs")
    assert [c for c, _, _ in layers] == [
        "1 · conv 8x5x5 · 8 maps 28×28",
        "2 · pool 2 · 8 maps 14×14",
        "3 · conv 8x3x3 · 8 maps 14×14",
        "4 · pool 2 · 8 maps 7×7",
        "5 · dense 32 · 32 units",
    ]
    assert [tiles_in(p) for _, p, _ in layers] == [(1, 8, 8)] * 4 + [(2, 16, 32)]
    assert all(shown <= page.viewport_size["width"] for _, _, shown in layers)
    expect(page.locator(".st-key-inside_layers")).to_contain_text("The units of dense 32 that fired most: ")
    expect(page.locator(".st-key-top_units")).to_have_count(0)  # they read maps: no 28x28 weights
    page.locator(".st-key-inside_layers").scroll_into_view_if_needed()
    screenshot(page, f"inside_layers_cnn_{name}.png")


def test_cnn_layers_desktop(app_url, browser_page, small_cnn_file):
    browser_page.goto(app_url)
    check_cnn_layers(browser_page, draw, small_cnn_file, "desktop")


def test_cnn_layers_phone(app_url, phone_page, small_cnn_file):
    phone_page.goto(app_url)
    check_cnn_layers(phone_page, touch_draw, small_cnn_file, "phone")
