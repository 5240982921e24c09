"""The draw page's canvas: streamlit-drawable-canvas made fit for a class, and the drawing kept.

The component (0.13.0) as shipped has three habits a class trips over, each handled here:

- Its toolbar (send, undo, redo, edit, reset) floats invisibly over the canvas's top-right
  corner and takes the presses there: strokes started there are lost, a tap can hit reset.
  0.13 has no option to hide it and its CSS lives in a shadow root the page's CSS cannot
  reach, so ``use_canvas_for_digits`` registers the component again under its own name
  (same script) with its stylesheet plus one rule that hides the toolbar. Undo and Clear
  are the page's own buttons, outside the drawing area.
- It reports a stroke 200 ms after the pen lifts (a fixed debounce in its script). A small
  script in the component's HTML presses the component's own (hidden) "send" control when
  the pen lifts, so each stroke goes to the app at once.
- The drawing lives only in the component, so it is gone whenever the canvas unmounts
  (another page, upload mode, the browser's Back). Here a ``Drawing`` in session state holds
  the strokes and what the network reads in them, and gives them to each new canvas as its
  ``initial_drawing``. Undo and Clear give the mounted canvas a new drawing rather than
  mounting a fresh canvas under a new key (a fresh canvas first appears below the old one
  until the rerun ends, then jumps up: a stroke drawn meanwhile lands beside it).

Every drawing the app gives the canvas carries a revision number, in an invisible marker
object that the canvas keeps and reports back with every stroke. A report of an older
revision was sent before the canvas had the newer drawing, and is ignored: a cleared or
undone stroke never comes back. (A stroke drawn before the canvas shows the cleared drawing
is cleared too: the canvas takes the new drawing when it arrives, which also cuts short a
stroke in progress at that moment, as the component re-creates its pen on every new drawing.)
Non-goals: shapes, colours, editing or moving strokes, redo.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st
import streamlit_drawable_canvas
from streamlit_drawable_canvas import st_canvas

import mnist_net
from pages.ui import state

SIDE = 280  # canvas pixels, also its size on screen
INK, PAPER = "#FFFFFF", "#000000"

COMPONENT_NAME = "streamlit-drawable-canvas.streamlit_drawable_canvas"  # the package's own name for it
_ASSETS = Path(streamlit_drawable_canvas.__file__).parent / "frontend" / "build"
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
    st.components.v2.component(COMPONENT_NAME, html=_HTML, css=_CSS, js="index-*.js")


# --- the drawing ------------------------------------------------------------------------------


def _marker(revision: int) -> dict[str, Any]:
    """An invisible, empty object that carries ``revision`` through the canvas and back."""
    return {
        "type": "Rect",
        "originX": "left",
        "originY": "top",
        "left": revision,
        "top": 0,
        "width": 0,
        "height": 0,
        "strokeWidth": 0,
        "fill": "",
        "visible": False,
    }


def _split(objects: list[dict]) -> tuple[int | None, list[dict]]:
    """A reported object list -> (revision of its marker or None, the strokes after it)."""
    if objects and objects[0].get("type") == "Rect" and objects[0].get("visible") is False:
        return int(objects[0].get("left", -1)), objects[1:]
    return None, objects


@dataclass
class Drawing:
    """The strokes on the canvas and what the network reads in them (one per session).

    ``inputs[k]`` is the network input of the first ``k`` strokes (None: no digit to read),
    kept for every stroke count seen, so Undo shows the answer without waiting for the canvas.
    """

    revision: int = 0
    given: list[dict] = field(default_factory=list)  # the strokes last given to the canvas
    strokes: list[dict] = field(default_factory=list)  # canvas objects (paths), oldest first
    inputs: dict[int, np.ndarray | None] = field(default_factory=lambda: {0: None})
    last_report: dict | None = None

    @property
    def read(self) -> bool:
        """Whether the network input of the current strokes is known (not waiting for the canvas)."""
        return len(self.strokes) in self.inputs

    @property
    def network_input(self) -> np.ndarray | None:
        """(784,) float32 input of the current strokes, or None (no digit, or not read yet)."""
        return self.inputs.get(len(self.strokes))

    def give(self, strokes: list[dict]) -> None:
        """Put ``strokes`` on the canvas under a new revision (reports of older ones are ignored)."""
        self.revision += 1
        self.given = list(strokes)
        self.strokes = list(strokes)
        self.inputs = {k: x for k, x in self.inputs.items() if k <= len(strokes)}

    def undo(self) -> None:
        if self.strokes:
            self.give(self.strokes[:-1])

    def clear(self) -> None:
        self.give([])

    def initial_drawing(self) -> dict[str, Any]:
        """What the canvas is given: the marker, then the strokes. The same within a revision:
        a new one makes the canvas reload, which would cut short a stroke being drawn."""
        return {"objects": [_marker(self.revision), *self.given]}

    def take(self, report: dict | None, picture: Callable[[], np.ndarray | None]) -> bool:
        """Read a report of the canvas (its json, and its picture when needed); whether it was taken.

        Not taken: no report, the one already read, one of an older revision, or the
        component's default value (no picture: nothing drawn on this canvas yet). Raises
        ValueError (from ``canvas_to_input``) if the picture cannot be read.
        """
        if not report or report == self.last_report:
            return False
        revision, strokes = _split(report.get("objects") or [])
        if revision != self.revision:
            return False
        image = picture()
        if image is None:
            return False
        self.last_report = report
        self.strokes = strokes
        k = len(strokes)
        self.inputs = {n: x for n, x in self.inputs.items() if n < k}
        self.inputs[k] = mnist_net.canvas_to_input(image)
        return True


def session_drawing() -> Drawing:
    return st.session_state.setdefault(state.DRAWING_KEY, Drawing())


def undo() -> None:
    session_drawing().undo()


def clear() -> None:
    session_drawing().clear()


def digit_canvas(stroke_width: int) -> Drawing:
    """Show the canvas with the session's drawing on it; returns the drawing, latest stroke read."""
    use_canvas_for_digits()
    drawing = session_drawing()
    if state.CANVAS_KEY not in st.session_state:
        # A new canvas (first visit, back from another page or from upload): give it the strokes.
        drawing.give(drawing.strokes)
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
