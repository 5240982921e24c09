"""The runs list in a real browser: a reload and a second tab find a running training again
(via the browser's id cookie) and can stop it; a browser without that cookie sees nothing; the
settings come back after the reload; a stopped run can be kept under a name."""

import re

import pytest
from browser_kit import screenshot

pytestmark = pytest.mark.browser

RUNNING = re.compile(r"Epoch \d+/200 · batch")


def user_cookie(context) -> dict | None:
    return next((c for c in context.cookies() if c["name"] == "mnist_net_user"), None)


def test_reload_and_another_tab_find_the_run_and_stop_it_others_see_nothing(app_url, browser_page):
    from playwright.sync_api import expect

    page = browser_page
    context = page.context
    page.goto(app_url + "/train")
    page.get_by_role("heading", name="Train a network").wait_for()
    page.locator(".st-key-n_train input").fill("60000")
    page.locator(".st-key-epochs input").fill("200")
    page.locator(".st-key-hidden_sizes input").fill("96,48")
    page.locator(".st-key-start button").click()
    page.get_by_text(RUNNING).wait_for(timeout=60_000)
    cookie = user_cookie(context)
    assert cookie is not None and re.fullmatch(r"[A-Za-z0-9_-]{32}", cookie["value"])
    assert cookie["sameSite"] == "Strict" and cookie["path"] == "/"

    # Reload: a new Streamlit session, the same browser. The run, its progress and the settings are there.
    page.reload()
    page.get_by_role("heading", name="Your runs").wait_for()
    rows = page.locator('[class*="st-key-run_"]')
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text(re.compile(r"Run 1 \(shown below\) · training, \d+%.*784→96→48→10"))
    page.get_by_text(RUNNING).wait_for()
    expect(page.locator(".st-key-hidden_sizes input")).to_have_value("96,48")
    expect(page.locator(".st-key-epochs input")).to_have_value("200")
    page.locator('[data-testid="stVegaLiteChart"]').first.wait_for()
    screenshot(page, "train_reloaded.png")

    # A second tab of the same browser finds it too, and stops it from the runs list.
    tab = context.new_page()
    tab.goto(app_url + "/train")
    tab.get_by_role("heading", name="Your runs").wait_for()
    tab.locator('[class*="st-key-stop_"] button').click()
    tab.get_by_text("Training was stopped early").wait_for(timeout=60_000)
    expect(tab.get_by_text(re.compile(r"Stopped in epoch \d+ of 200"))).to_be_visible()
    page.get_by_text("Training was stopped early").wait_for(timeout=30_000)  # the first tab sees it end

    # Another browser (no id cookie) sees no run at all, and gets the app's own settings.
    saved = context.cookies()
    context.clear_cookies()
    tab.goto(app_url + "/train")
    tab.locator(".st-key-start button").wait_for()
    expect(tab.locator(".st-key-hidden_sizes input")).to_have_value("128,64")
    expect(tab.get_by_role("heading", name="Your runs")).to_have_count(0)
    expect(tab.get_by_text("Training was stopped early")).to_have_count(0)
    screenshot(tab, "train_other_user.png")
    assert user_cookie(context)["value"] != cookie["value"]  # it was given an id of its own

    # The first browser again: keep the stopped run under a name.
    context.clear_cookies()
    context.add_cookies(saved)
    tab.reload()
    tab.get_by_text("Training was stopped early").wait_for()
    tab.locator('[class*="st-key-keep_name_"] input').fill("class demo")
    tab.locator(".st-key-keep_model button").click()
    expect(
        tab.get_by_text(re.compile(r"Kept in the models folder as mnist-\d{8}-\d{6}-acc[\d.]+-class-demo\.pkl"))
    ).to_be_visible()
    tab.close()


def test_pause_resume_stop_and_train_more_with_the_weights_as_they_learn(app_url, browser_page):
    from playwright.sync_api import expect

    page = browser_page
    page.context.clear_cookies()  # a browser of its own: no runs of the test before
    page.goto(app_url + "/train")
    page.get_by_role("heading", name="Train a network").wait_for()
    # Long enough (minutes even on an idle machine) that it is still training when Stop is pressed.
    page.locator(".st-key-n_train input").fill("50000")
    page.locator(".st-key-epochs input").fill("200")
    page.locator(".st-key-hidden_sizes input").fill("128")
    page.locator(".st-key-start button").click()
    page.get_by_text(re.compile(r"Epoch \d+/200 · batch")).wait_for(timeout=60_000)
    tiles = page.locator('[data-testid="stImage"]', has_text="Each tile is one of the first layer's units")
    tiles.wait_for()
    expect(page.get_by_text("Weights as they learn")).to_be_visible()
    first_picture = tiles.locator("img").get_attribute("src")
    page.get_by_role("button", name="Pause").first.click()
    page.get_by_text(re.compile(r"Paused in epoch \d+/200, batch \d+/\d+ · about .* s left once resumed")).wait_for(
        timeout=30_000
    )
    expect(page.get_by_role("heading", name="Run 1: paused")).to_be_visible()
    expect(page.locator('[class*="st-key-run_"]')).to_contain_text("Run 1 (shown below) · paused")
    screenshot(page, "train_paused.png")
    page.get_by_role("button", name="Resume").first.click()
    page.get_by_text(re.compile(r"Epoch \d+/200 · batch")).wait_for(timeout=30_000)
    # The pictures change as it learns (a new one arrives about every second).
    page.wait_for_function(
        "src => [...document.querySelectorAll('[data-testid=stImage] img')].some(i => i.src && i.src !== src)",
        arg=first_picture,
        timeout=30_000,
    )
    screenshot(page, "train_weights_live.png")
    page.get_by_role("button", name="Stop").first.click()
    page.get_by_text("Training was stopped early").wait_for(timeout=60_000)
    expect(page.get_by_text("Weights it learned")).to_be_visible()
    page.locator('[class*="st-key-more_epochs_"] input').fill("1")
    page.locator(".st-key-train_more button").click()
    rows = page.locator('[class*="st-key-run_"]')
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text(re.compile(r"Run 2 \(shown below\).*continues Run 1 · .* 1 more epoch"))
    page.get_by_text(re.compile(r"Done! The network got")).wait_for(timeout=120_000)
    screenshot(page, "train_more_done.png")


def own_server_env(tmp_path, mnist_for_app) -> dict[str, str]:
    """A server's environment with its own cache, runs and models folders under ``tmp_path``."""
    return {
        "MNIST_DIR": str(mnist_for_app), "OMP_NUM_THREADS": "1", "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "MNIST_NET_RUNS_DIR": str(tmp_path / "runs"), "MNIST_NET_MODELS_DIR": str(tmp_path / "models"),
    }  # fmt: skip


def start_run(page, url: str, n_train: str, epochs: str, hidden: str) -> None:
    """Open the Train page and start a run of these settings."""
    page.goto(url + "/train")
    page.get_by_role("heading", name="Train a network").wait_for()
    page.locator(".st-key-n_train input").fill(n_train)
    page.locator(".st-key-epochs input").fill(epochs)
    page.locator(".st-key-hidden_sizes input").fill(hidden)
    page.locator(".st-key-start button").click()


def test_a_finished_run_is_still_there_after_the_server_restarts(tmp_path, mnist_for_app, browser_page):
    """Two servers one after the other over the same runs folder: the second shows the first's run."""
    from app_server import start_app, stop_app
    from playwright.sync_api import expect

    env = own_server_env(tmp_path, mnist_for_app)
    page = browser_page
    page.context.clear_cookies()
    proc, url = start_app(tmp_path, env, timeout=90)
    try:
        start_run(page, url, "2000", "1", "32")
        done = page.get_by_text(re.compile(r"Done! The network got \d+\.\d\d% of 10,000 unseen test digits right"))
        done.wait_for(timeout=120_000)
        said = done.inner_text()
    finally:
        stop_app(proc)
    proc, url = start_app(tmp_path, env, timeout=90)  # a new server process: nothing in memory
    try:
        page.goto(url + "/train")
        page.get_by_role("heading", name="Your runs").wait_for()
        rows = page.locator('[class*="st-key-run_"]')
        expect(rows).to_have_count(1)
        expect(rows).to_contain_text(re.compile(r"Run 1 \(shown below\) · done · test accuracy"))
        expect(page.get_by_text(said)).to_be_visible()
        expect(page.get_by_text("Weights it learned")).to_be_visible()
        screenshot(page, "train_after_restart.png")
    finally:
        stop_app(proc)


@pytest.mark.parametrize("how", ["shut down", "killed"])
def test_a_run_still_training_when_the_server_is_shut_down_comes_back_stopped(
    tmp_path, mnist_for_app, browser_page, how
):
    """Mid-training, the server is shut down (SIGTERM, as Ctrl-C or a service manager stops it) or
    killed outright (SIGKILL): the next server shows the run stopped, and says why."""
    from app_server import start_app, stop_app
    from playwright.sync_api import expect

    env = own_server_env(tmp_path, mnist_for_app)
    page = browser_page
    page.context.clear_cookies()
    proc, url = start_app(tmp_path, env, timeout=90)
    try:
        start_run(page, url, "50000", "200", "64")
        page.get_by_text(re.compile(r"Epoch \d+/200 · batch")).wait_for(timeout=60_000)
        if how == "killed":
            proc.kill()  # no exit handler runs: the training process stores the run itself
            proc.wait(timeout=30)
    finally:
        stop_app(proc)  # SIGTERM, and SIGKILL after 20 s
    if how == "shut down":
        assert proc.returncode == 0  # it ended by itself, within the 20 s
        assert "stopping 1 training run(s)" in (tmp_path / "streamlit.log").read_text()
    proc, url = start_app(tmp_path, env, timeout=90)  # at once: the run may be stored after this server started
    try:
        page.goto(url + "/train")
        page.get_by_role("heading", name="Your runs").wait_for()
        rows = page.locator('[class*="st-key-run_"]')
        expect(rows).to_have_count(1, timeout=30_000)
        expect(rows).to_contain_text(re.compile(r"Run 1 \(shown below\) · stopped early · test accuracy"))
        expect(page.get_by_text("Training was stopped early")).to_be_visible()
        why = "The server was shut down while" if how == "shut down" else "The server stopped unexpectedly"
        expect(page.get_by_text(why)).to_be_visible()
        expect(page.get_by_text(re.compile(r"Stopped in epoch \d+ of 200"))).to_be_visible()
        screenshot(page, f"train_stopped_{how.replace(' ', '_')}.png")
    finally:
        stop_app(proc)
