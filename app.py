"""The app's frame: page setup, navigation, and a sidebar note while a network trains.

Run with ``streamlit run app.py``. The pages live in ``pages/`` (short scripts that call
``mnist_net``), their shared app-side helpers in ``pages/ui/``. Streamlit's own navigation
menu is switched off (``client.showSidebarNavigation`` in .streamlit/config.toml) because
Streamlit runs a folder called ``pages/`` as an old-style multipage app until
``st.navigation`` has run once; the frame draws the menu itself with page links, and a page
run without the frame runs the frame instead (``pages.ui.state.run_inside_frame``).
Non-goals: authentication, multi-user model sharing.
"""

import streamlit as st

from mnist_net.jobs import QUEUED
from pages.ui.state import FRAME_KEY, training_is_running, user_runs
from pages.ui.style import MENU_CSS

st.set_page_config(page_title="Digit recogniser", page_icon="✏️", layout="centered")

draw_page = st.Page("pages/draw.py", title="Draw a digit", icon=":material/draw:", default=True)
train_page = st.Page("pages/train.py", title="Train a network", icon=":material/model_training:")
digits_page = st.Page("pages/my_digits.py", title="My digits", icon=":material/grid_view:")
page = st.navigation([draw_page, digits_page, train_page], position="hidden")
training_elsewhere = page.url_path != train_page.url_path and training_is_running()
with st.sidebar, st.container(key="sidebar_menu"):
    st.page_link(draw_page)
    st.page_link(digits_page)
    st.page_link(train_page)
    st.divider()
    if training_elsewhere:
        if all(v.snapshot.status == QUEUED for v in user_runs() if v.snapshot.running):
            st.info("Your network is waiting for its turn to train.", icon=":material/hourglass_top:")
        else:
            st.info("A network is training. It keeps going while you use this page.", icon=":material/hourglass_top:")
        st.page_link(train_page, label="Watch it train", icon=":material/monitoring:")
# The same menu at the top of the page where the sidebar folds away (phones; MENU_CSS shows one of the two).
st.html(MENU_CSS)
with st.container(horizontal=True, key="phone_menu", gap="small"):
    st.page_link(draw_page)
    st.page_link(digits_page)
    st.page_link(train_page, label="Train a network · training" if training_elsewhere else None)

# Pages check this flag to know they run inside the frame in this very script run.
st.session_state[FRAME_KEY] = True
try:
    page.run()
finally:
    st.session_state[FRAME_KEY] = False
