"""The app's frame: page setup, navigation, and a sidebar note while a network trains.

Run with ``streamlit run app.py``. The pages live in ``pages/``; they hold no maths and
call ``mnist_net``. Streamlit runs a folder called ``pages/`` as an old-style multipage app
until ``st.navigation`` has run once in the process (and under AppTest, on every run): then it
runs a page without this frame, and shows its own list of the folder. So Streamlit's own
navigation menu is switched off (``client.showSidebarNavigation`` in .streamlit/config.toml),
the frame draws the menu itself with page links, and a page run without the frame runs the
frame instead (the guard at the top of each page).
Non-goals: authentication, multi-user model sharing.
"""

import streamlit as st

FRAME_KEY = "app_frame_ran"

st.set_page_config(page_title="Digit recogniser", page_icon="✏️", layout="centered")

draw_page = st.Page("pages/draw.py", title="Draw a digit", icon=":material/draw:", default=True)
train_page = st.Page("pages/train.py", title="Train a network", icon=":material/model_training:")
page = st.navigation([draw_page, train_page], position="hidden")
with st.sidebar:
    st.page_link(draw_page)
    st.page_link(train_page)
    st.divider()

job = st.session_state.get("train_job")
if page.url_path != train_page.url_path and job is not None and job.snapshot().running:
    with st.sidebar:
        st.info("A network is training. It keeps going while you use this page.",
                icon=":material/hourglass_top:")
        st.page_link(train_page, label="Watch it train", icon=":material/monitoring:")

# Pages check this flag to know they run inside the frame in this very script run.
st.session_state[FRAME_KEY] = True
try:
    page.run()
finally:
    st.session_state[FRAME_KEY] = False
