"""The app's CSS and the HTML of the answer block and of picture strips (the only raw HTML the pages write)."""

from __future__ import annotations

import base64
import html
import re

# Columns stack below 640 px (Streamlit's breakpoint), which puts the answer under the canvas:
# there the answer bar above the canvas says it instead, so it shows while drawing.
PHONE = "@media (max-width: 640px)"
FOLDED_SIDEBAR = "@media (max-width: 768px)"  # Streamlit folds the sidebar away below this width

PREDICTION_CSS = f"""<style>
.prediction {{ text-align: center; }}
.prediction-label {{ color: #5c6370; font-size: 0.95rem; }}
.prediction-digit {{ font-size: 6rem; font-weight: 700; line-height: 1.05; color: #3b5bdb; }}
.prediction-digit.unsure {{ color: #9aa1ad; }}
.prediction-prob {{ font-size: 1.1rem; color: #1f2430; margin-bottom: 0.5rem; }}
/* Nothing next to the canvas may take a press meant for it: not by lying over its edge, nor by
   being what a phone picks for a finger on the canvas's edge (touch adjustment): the bar is text only. */
.st-key-canvas {{ position: relative; z-index: 1; }}
.st-key-answer_bar {{ display: none; pointer-events: none; }}
/* margin-bottom: Streamlit ends a Markdown block 1rem early (for a paragraph's own margin, which this has not). */
.answer-bar {{ display: flex; align-items: center; gap: 0.6rem; min-height: 3.4rem; padding: 0 0.75rem;
  margin-bottom: 1rem; border-radius: 0.5rem; background: #f3f5f9; color: #1f2430; font-size: 1rem;
  line-height: 1.25; }}
.answer-bar-digit {{ font-size: 2.6rem; font-weight: 700; color: #3b5bdb; min-width: 1.6rem; }}
.answer-bar-digit.unsure {{ color: #9aa1ad; }}
/* The draw page's ten "No, it's a ..." digits in one row under the canvas (280 px: 28 px each). */
.st-key-feedback_digit [data-testid="stButtonGroup"] > div {{ flex-wrap: nowrap; }}
.st-key-feedback_digit button {{ min-width: 0; padding: 0.25rem 0; flex: 1 1 0; }}
.collect-prompt {{ display: flex; align-items: baseline; flex-wrap: wrap; gap: 0 0.6rem; margin-bottom: 0.25rem; }}
.collect-prompt-text {{ font-size: 1.5rem; font-weight: 600; color: #1f2430; }}
.collect-wait {{ color: #9aa1ad; line-height: 2.2rem; }}  /* as tall as the digit: the line does not jump */
.collect-prompt-digit {{ font-size: 2.2rem; font-weight: 700; color: #3b5bdb; }}
.collect-progress {{ color: #5c6370; font-size: 0.95rem; }}
.picture-strip {{ display: flex; flex-wrap: wrap; gap: 0.75rem 1rem; align-items: flex-start; margin-bottom: 0.5rem; }}
.picture-strip figure {{ margin: 0; text-align: center; max-width: 100%; }}
.picture-strip img {{ display: block; border-radius: 0.25rem; image-rendering: pixelated; }}
.picture-strip figcaption {{ color: #5c6370; font-size: 0.8rem; margin-top: 0.25rem; white-space: nowrap; }}
.picture-strip .apart {{ margin-left: 1rem; }}
{PHONE} {{
  .st-key-answer_bar {{ display: block; }}
  .st-key-draw_intro {{ display: none; }}  /* the answer bar (or collect mode's prompt) says what to do */
  .prediction {{ display: none; }}
  /* Two 168-px "why" pictures do not fit side by side in a phone's expander; at 140 px they do. */
  .st-key-why_digit img {{ width: 140px !important; }}
  h1 {{ font-size: 1.9rem !important; padding: 0 !important; }}
}}
/* Where the sidebar (the model picker, on this page) folds behind a bare icon: say what is there. */
{FOLDED_SIDEBAR} {{
  [data-testid="stExpandSidebarButton"]::after {{ content: "Model"; margin-left: 0.3rem; font-size: 0.95rem;
    color: #1f2430; }}
}}
</style>"""

# The frame's page links at the top of the page, for screens where the sidebar folds away (below
# Streamlit's 768 px breakpoint, behind a bare icon, and staying open over the page after a
# link in it is chosen). There the sidebar keeps only the page's own settings, and its icon
# goes when a page has none (nothing after the frame's menu, the sidebar's first element).
MENU_CSS = f"""<style>
.st-key-phone_menu {{ display: none; }}
{FOLDED_SIDEBAR} {{
  .st-key-phone_menu {{ display: flex; }}
  [data-testid="stMainBlockContainer"] {{ padding-top: 4.25rem; }}  /* the menu just under the header */
  .st-key-sidebar_menu {{ display: none; }}
  /* Three pages in one row on a phone: the links without their icons. */
  .st-key-phone_menu [data-testid="stPageLink-NavLink"] > span:has(> [data-testid="stIconMaterial"]) {{
    display: none; }}
  body:not(:has([data-testid="stSidebarUserContent"] [data-testid="stVerticalBlock"]:not(.st-key-sidebar_menu)
    > :nth-child(2))) [data-testid="stExpandSidebarButton"] {{ visibility: hidden; }}
}}
</style>"""


# My digits' grid: each digit's delete button on its picture's top-right corner, so a row is one picture high.
MY_DIGITS_CSS = """<style>
[class*="st-key-my_digit_"] { position: relative; }
[class*="st-key-remove_digit_"] { position: absolute; top: -4px; right: 0; z-index: 1; }
[class*="st-key-remove_digit_"] button { min-height: 0; padding: 0 2px; border-radius: 50%; background: #ffffffd0; }
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


def answer_bar_html(digit: int | None, sure: bool, text: str, strokes: int) -> str:
    """The answer in one line (phones, above the canvas): the digit, if any, and a few words."""
    shown = "" if digit is None else f'<span class="answer-bar-digit{"" if sure else " unsure"}">{int(digit)}</span>'
    data = "" if digit is None else f' data-digit="{int(digit)}" data-sure="{int(sure)}"'
    return f'<div class="answer-bar"{data} data-strokes="{int(strokes)}">{shown}<span>{html.escape(text)}</span></div>'


def collect_prompt(asked: int, number: int, total: int, round_: int, rounds: int, ready: bool = True) -> str:
    """Collect mode's line above the canvas: "Draw a 7", and how far along (data attributes for tests).

    Not ``ready``: the canvas has not shown its cleared drawing yet, and a stroke begun now would be
    cleared with the last digit, so the line asks to wait instead of naming the next digit.
    """
    progress = f"digit {int(number)} of {int(total)} · round {int(round_)} of {int(rounds)}"
    if not ready:
        return (
            '<div class="collect-prompt" data-ready="0"><span class="collect-prompt-text collect-wait">'
            f'Clearing…</span><span class="collect-progress">{progress}</span></div>'
        )
    return (
        f'<div class="collect-prompt" data-ready="1" data-asked="{int(asked)}" data-number="{int(number)}">'
        f'<span class="collect-prompt-text">Draw a <span class="collect-prompt-digit">{int(asked)}</span></span>'
        f'<span class="collect-progress">{progress}</span></div>'
    )


def picture_strip_html(pictures: list[tuple[bytes, str, str]], width: int | None) -> str:
    """Small pictures in a row (wrapping), each with a one-line caption: (PNG bytes, caption, CSS class).

    ``width``: every picture shown that many pixels wide; None: each at its own size, shrunk to
    the page's width where it is wider (a phone).
    The pictures go inline (data URIs) in one element: for a few tiny pictures redrawn per
    stroke, that costs a fraction of an image element each (a media file, decoded again to check).
    """
    size = "max-width: 100%" if width is None else f"width: {int(width)}px"
    figures = "".join(
        f'<figure class="{html.escape(css)}"><img style="{size}; height: auto" '
        f'alt="{html.escape(caption)}" '
        f'src="data:image/png;base64,{base64.b64encode(data).decode()}"><figcaption>{html.escape(caption)}'
        "</figcaption></figure>"
        for data, caption, css in pictures
    )
    return f'<div class="picture-strip">{figures}</div>'


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
