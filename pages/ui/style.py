"""The app's CSS and the HTML of the answer block (the only raw HTML the pages write)."""

from __future__ import annotations

import html
import re

PREDICTION_CSS = """<style>
.prediction { text-align: center; }
.prediction-label { color: #5c6370; font-size: 0.95rem; }
.prediction-digit { font-size: 6rem; font-weight: 700; line-height: 1.05; color: #3b5bdb; }
.prediction-digit.unsure { color: #9aa1ad; }
.prediction-prob { font-size: 1.1rem; color: #1f2430; margin-bottom: 0.5rem; }
</style>"""


def prediction_html(digit: int, sure: bool, headline: str, strokes: int) -> str:
    """The big answer: "The network says", the digit, and how sure. Data attributes are for tests."""
    return (
        f'<div class="prediction" data-digit="{int(digit)}" data-sure="{int(sure)}" '
        f'data-strokes="{int(strokes)}">'
        f'<div class="prediction-label">The network says</div>'
        f'<div class="prediction-digit{"" if sure else " unsure"}">{int(digit)}</div>'
        f'<div class="prediction-prob">{html.escape(headline)}</div></div>'
    )


# What Markdown (and Streamlit's extensions: ``:emoji:``, ``$math$``, ``:color[...]``) can read as markup.
# A colon only starts markup before a letter or a slash (``:smile:``, ``https://``): "10:00" stays.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#!|~$&]|:(?=[A-Za-z/]))")


def plain(text: object) -> str:
    """Text from a file or a user, made safe to put inside Markdown: shown as typed, never as markup.

    Each character Markdown could read as markup is backslash-escaped, so a link or an image
    in a model's description stays text and no viewer's browser fetches anything. Line breaks
    become spaces (a value is shown inline).
    """
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))
