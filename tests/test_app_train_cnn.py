"""The train page trains a CNN: the settings form's network choice and layer spec reach the run,
the run trains, tests and yields a CNN model; a bad spec is explained; the form says how long an
epoch takes here."""

from test_app_train import open_train_page, train_page  # noqa: F401 (the fixture)

from mnist_net.architecture import PRESETS
from mnist_net.jobs import DONE
from pages.ui import state

TINY = "conv 4x3x3 -> pool 2 -> dense 10"


def test_the_form_offers_mlp_or_cnn_and_says_how_long_an_epoch_takes(train_page):  # noqa: F811
    at = train_page
    assert at.radio(key="network").options == ["MLP", "CNN"] and at.radio(key="network").value == "MLP"
    assert at.text_input(key="cnn_layers").value == PRESETS["cnn"]
    [epoch] = [c.value for c in at.caption if "One epoch over all 60,000 images" in c.value]
    assert "for the MLP" in epoch and "for the CNN" in epoch and "min for the CNN" in epoch


def test_a_tiny_cnn_trains_from_the_page(train_page):  # noqa: F811
    at = train_page
    at.radio(key="network").set_value("CNN")
    at.text_input(key="cnn_layers").set_value(TINY)
    for key, value in {"n_train": 300, "epochs": 1, "batch_size": 32}.items():
        at.number_input(key=key).set_value(value)
    at.button(key="start").click().run()
    assert not at.exception and not at.error
    job = at.session_state["train_job"]
    assert job.config.layers == TINY and job.config.n_train == 300
    assert job.join(timeout=180)
    at.run()
    snap = job.snapshot()
    assert snap.status == DONE, snap.error
    assert job.model is not None and job.model.config.layers == TINY
    assert job.model.params_["W1"].shape == (3, 3, 1, 4)
    assert snap.evaluation is not None and 0 <= snap.evaluation.accuracy <= 1
    shown = [e.value for e in [*at.caption, *at.markdown, *at.info]]
    assert any(TINY in text for text in shown), shown  # the run's settings name its layers
    # The form remembers the choice for this user.
    again = open_train_page(at.session_state[state.USER_ID_KEY])
    assert again.radio(key="network").value == "CNN" and again.text_input(key="cnn_layers").value == TINY


def test_a_bad_layer_spec_is_explained_and_nothing_starts(train_page):  # noqa: F811
    at = train_page
    at.radio(key="network").set_value("CNN")
    at.text_input(key="cnn_layers").set_value("conv 32x5x5 -> pool 2 -> dense 9")
    at.button(key="start").click().run()
    assert not at.exception and "train_job" not in at.session_state
    assert any("Please check the settings" in e.value and "last layer must be dense 10" in e.value for e in at.error)
