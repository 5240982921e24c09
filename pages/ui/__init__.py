"""The app's side of the house: session keys, the frame guard, model access, charts and CSS.

The pages in ``pages/`` stay short scripts (widgets -> a call into ``mnist_net`` -> display)
and take everything Streamlit-specific that is not a widget from here. This folder is not a
page: Streamlit's old-style multipage mode only runs the ``*.py`` files directly in ``pages/``.
"""
