"""The app's frame: page setup, navigation, and a sidebar note while a network trains.

Run with ``streamlit run app.py``. The pages live in ``app_pages/``; they hold no maths
and call ``mnist_net``. (Not ``pages/``: Streamlit treats a folder of that name as an old-style
multipage app until ``st.navigation`` first runs, so a fresh server would open a deep link
such as ``/train`` without this frame.) Non-goals: authentication, multi-user model sharing.
"""

import streamlit as st

st.set_page_config(page_title="Digit recogniser", page_icon="✏️", layout="centered")

draw_page = st.Page("app_pages/draw.py", title="Draw a digit", icon=":material/draw:", default=True)
train_page = st.Page("app_pages/train.py", title="Train a network", icon=":material/model_training:")
page = st.navigation([draw_page, train_page])

job = st.session_state.get("train_job")
if page.url_path != train_page.url_path and job is not None and job.snapshot().running:
    with st.sidebar:
        st.info("A network is training. It keeps going while you use this page.",
                icon=":material/hourglass_top:")
        st.page_link(train_page, label="Watch it train", icon=":material/monitoring:")

page.run()
