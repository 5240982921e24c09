"""The draw page's canvas: streamlit-drawable-canvas made fit for a class.

The component (0.13.0) as shipped has three habits a class trips over:

- Its toolbar (send, undo, redo, edit, reset) floats invisibly over the canvas's top-right
  corner and takes the presses there: strokes started there are lost, a tap can hit reset.
  0.13 has no option to hide it and its CSS lives in a shadow root the page's CSS cannot
  reach, so ``use_canvas_for_digits`` registers the component again under the package's
  name (same script) with its stylesheet plus one rule that hides the toolbar. Undo and Clear
  are the page's own buttons, outside the drawing area.
- It reports a stroke 200 ms after the pen lifts (a fixed debounce in its script). A small
  script in the component's HTML presses the component's own (hidden) "send" control when
  the pen lifts, so each stroke goes to the app at once.
- The drawing lives only in the component, so it is gone whenever the canvas unmounts
  (another page, upload mode, the browser's Back). The session's ``pages.ui.drawing.Drawing``
  holds it and gives it to each new canvas. Undo and Clear give the mounted canvas a new
  drawing rather than mounting a fresh canvas under a new key: a fresh canvas first appears
  below the old one until the rerun ends, then jumps up, and a stroke drawn meanwhile lands
  beside it.
Non-goals: shapes, colours, editing or moving strokes, redo.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
import streamlit_drawable_canvas
from streamlit_drawable_canvas import CanvasResult, st_canvas

from pages.ui import state
from pages.ui.drawing import Drawing

SIDE = 280  # canvas pixels, also its size on screen
INK, PAPER = "#FFFFFF", "#000000"

COMPONENT_NAME = "streamlit-drawable-canvas.streamlit_drawable_canvas"  # the package's own name for it
_ASSETS = Path(streamlit_drawable_canvas.__file__).parent / "frontend" / "build"
_JS = next(_ASSETS.glob("index-*.js")).name  # its script, as is (by name: no file search per run)
# The component's script sets the toolbar's display inline, hence !important.
_CSS = "".join(p.read_text() for p in sorted(_ASSETS.glob("index-*.css"))) + "\n.dc-toolbar{display:none!important}\n"
# One set of listeners for every canvas on the page (installed once). The canvas finishes a
# stroke in its own document-level mouseup/touchend handlers, which run before these window-level
# ones; pressing its send control then, in the same task, reports the stroke before anything
# else (a new drawing from the app) can reach the canvas.
_SEND_AT_ONCE = """<script>
if (!window.digitCanvasSendsAtOnce) {
  window.digitCanvasSendsAtOnce = true;
  let drawingOn = null;
  const penDown = (event) => {
    const canvas = event.composedPath().find((el) => el.classList && el.classList.contains("upper-canvas"));
    drawingOn = canvas ? canvas.getRootNode() : null;
  };
  const penUp = (event) => {
    if (!drawingOn || (event.touches && event.touches.length > 0)) return;
    const root = drawingOn;
    drawingOn = null;
    root.querySelector('button[aria-label="Update the app with this drawing"]')?.click();
  };
  window.addEventListener("mousedown", penDown, true);
  window.addEventListener("touchstart", penDown, true);
  window.addEventListener("mouseup", penUp);
  window.addEventListener("touchend", penUp);
  window.addEventListener("touchcancel", penUp);
}
</script>"""
_HTML = '<div class="canvas-root"></div>' + _SEND_AT_ONCE  # the package's root element, then the script


def use_canvas_for_digits() -> None:
    """Register the canvas component with its toolbar hidden and strokes sent at once.

    Called on every run (so it holds on whichever runtime runs the page); registering the
    same definition again changes nothing. The first call replaces the package's own
    definition, which Streamlit notes once in the server log.
    """
    st.components.v2.component(COMPONENT_NAME, html=_HTML, css=_CSS, js=_JS)


def session_drawing() -> Drawing:
    return st.session_state.setdefault(state.DRAWING_KEY, Drawing())


def _caught_up() -> Drawing:
    """The session's drawing with the canvas's latest report taken, for the buttons' callbacks.

    A callback runs before the page reads the canvas, so a stroke whose report reached the
    app together with the click would not count yet, and Undo would take the stroke before it.
    """
    drawing = session_drawing()
    latest = (st.session_state.get(state.CANVAS_KEY) or {}).get("drawing") or {}
    result = CanvasResult(latest.get("raw"), latest.get("data"), return_image_data=True)
    drawing.take(result.json_data, lambda: result.image_data)
    return drawing


def latest_drawing() -> Drawing:
    """The session's drawing with the canvas's latest report read: for callbacks that take the picture."""
    return _caught_up()


def undo() -> None:
    _caught_up().undo()


def clear() -> None:
    _caught_up().clear()


def digit_canvas(stroke_width: int) -> Drawing:
    """Show the canvas with the session's drawing on it; returns the drawing, latest stroke read."""
    use_canvas_for_digits()
    drawing = session_drawing()
    if state.CANVAS_KEY not in st.session_state:
        # A new canvas (first visit, back from another page or from upload): give it the strokes.
        drawing.give(drawing.strokes, mounting=True)
    result = st_canvas(
        stroke_width=stroke_width,
        stroke_color=INK,
        background_color=PAPER,
        width=SIDE,
        height=SIDE,
        drawing_mode="freedraw",
        initial_drawing=drawing.initial_drawing(),
        update_streamlit=True,
        return_image_data=True,
        key=state.CANVAS_KEY,
    )
    drawing.take(result.json_data, lambda: result.image_data)
    return drawing
