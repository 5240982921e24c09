"""The drawing of the draw page, kept in session state: its strokes, revisions and what the network reads.

The canvas component keeps a drawing only while it is mounted; a ``Drawing`` outlives it
(another page, upload mode, the browser's Back) and gives the strokes to each new canvas as
its ``initial_drawing``. Undo and Clear give the mounted canvas a new drawing too.

Every drawing given to the canvas carries a revision number, in an invisible marker object
that the canvas keeps and reports back with every stroke (``marker``, ``split``); it reports
a new drawing as soon as it has it. A report of an older revision was sent before the canvas
had the newer drawing, and is ignored: a cleared or undone stroke never comes back. (The
canvas takes a new drawing when it arrives, which clears a stroke drawn on the old one
meanwhile and cuts short one in progress, as the component re-creates its pen; the answer
changes only once the canvas has the new drawing, so a person sees both change together.)
It also keeps what the "look inside" views need: the picture's ``InputSteps`` (the answer's
input is their last step) and the input after each stroke (``stroke_inputs``, for "stroke by
stroke"; Undo drops the undone strokes' entries, Clear all of them).
No Streamlit here: plain data in, plain data out (``pages.ui.canvas`` shows it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mnist_net.preprocess import InputSteps, input_steps


def marker(revision: int) -> dict[str, Any]:
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


def split(objects: list[dict]) -> tuple[int | None, list[dict]]:
    """A reported object list -> (revision of its marker or None, the strokes after it)."""
    if objects and objects[0].get("type") == "Rect" and objects[0].get("visible") is False:
        return int(objects[0].get("left", -1)), objects[1:]
    return None, objects


@dataclass
class Drawing:
    """The strokes on the canvas and the answer's input: the network input of the picture the
    canvas last reported (``shown_strokes`` strokes; None: no digit to read). One per session.

    After Undo or Clear the answer stays the one for the old picture until the canvas reports
    the new drawing: the canvas keeps showing the old one until then too, so the page never
    says "cleared" while the old strokes are still on the canvas.
    """

    revision: int = 0
    given: list[dict] = field(default_factory=list)  # the strokes last given to the canvas
    strokes: list[dict] = field(default_factory=list)  # canvas objects (paths), oldest first
    shown_strokes: int = 0
    shown_steps: InputSteps | None = None  # how the picture became the input (None: nothing reported yet)
    shown_picture: np.ndarray | None = None  # (H, W, 4) the picture last reported, for the plain-resize view
    # (strokes, input or None) after each reported stroke, oldest first, strokes increasing
    stroke_inputs: list[tuple[int, np.ndarray | None]] = field(default_factory=list)
    waiting: bool = False  # for the canvas to report the drawing it was given
    last_report: dict | None = None

    @property
    def shown_input(self) -> np.ndarray | None:
        """(784,) the network input of the picture last reported (None: no digit to read)."""
        return None if self.shown_steps is None else self.shown_steps.input

    def give(self, strokes: list[dict], mounting: bool = False) -> None:
        """Put ``strokes`` on the canvas under a new revision (reports of older ones are ignored).

        ``mounting``: a new canvas starts with them (it reports nothing until a stroke); the
        answer, for these very strokes, stays. (Only a page left in the instant between Undo
        or Clear and the canvas's report keeps the answer before it, until the next stroke.)
        """
        self.revision += 1
        self.given = list(strokes)
        self.strokes = list(strokes)
        self.waiting = not mounting

    def undo(self) -> None:
        if self.strokes:
            self.give(self.strokes[:-1])

    def clear(self) -> None:
        if self.strokes or self.given:  # nothing to clear: no new drawing (the canvas would reload for nothing)
            self.give([])

    def initial_drawing(self) -> dict[str, Any]:
        """What the canvas is given: the marker, then the strokes. The same within a revision:
        a new one makes the canvas reload, which would cut short a stroke being drawn."""
        return {"objects": [marker(self.revision), *self.given]}

    def take(self, report: dict | None, picture: Callable[[], np.ndarray | None]) -> bool:
        """Read a report of the canvas (its json, and its picture when needed); whether it was taken.

        Not taken: no report, the one already read, one of an older revision, or the
        component's default value (no picture: nothing drawn on this canvas yet). Raises
        ValueError (from ``input_steps``) if the picture cannot be read.
        """
        if not report or report == self.last_report:
            return False
        revision, strokes = split(report.get("objects") or [])
        if revision != self.revision:
            return False
        image = picture()
        if image is None:
            return False
        steps = input_steps(image)
        self.last_report = report
        self.strokes = strokes
        self.shown_strokes = len(strokes)
        self.shown_steps, self.shown_picture = steps, image
        # Undo comes back as fewer strokes: the entries of the undone ones go; a cleared canvas has none.
        kept = [(n, x) for n, x in self.stroke_inputs if n < len(strokes)]
        self.stroke_inputs = kept + [(len(strokes), steps.input)] if strokes else []
        self.waiting = False
        return True
