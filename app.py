"""The app's frame: page setup, navigation, and a sidebar note while a network trains.

Run with ``streamlit run app.py``. The pages live in ``pages/``; they hold no maths and
call ``mnist_net``. Streamlit runs a folder called ``pages/`` as an old-style multipage app
until ``st.navigation`` has run once, so on a fresh server a deep link such as ``/train``
would run a page without this frame: each page then sends the visitor here first, and
the frame forwards to the page that was asked for (the browser test opens ``/train`` first).
Non-goals: authentication, multi-user model sharing.
"""

import streamlit as st

FRAME_KEY = "app_frame_ran"

st.set_page_config(page_title="Digit recogniser", page_icon="✏️", layout="centered")

draw_page = st.Page("pages/draw.py", title="Draw a digit", icon=":material/draw:", default=True)
train_page = st.Page("pages/train.py", title="Train a network", icon=":material/model_training:")
page = st.navigation([draw_page, train_page])

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
