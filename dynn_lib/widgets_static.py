"""Widgets in the static book: the "needs a live kernel" note and a helper to show a widget with it.

The book is static HTML. myst-nb embeds each executed notebook's saved widget state and the
page renders it offline with the vendored widget manager (``book/_static/jupyter-widgets``), so
sliders and dropdowns appear, but nothing is computed when they move: the Python callbacks
need a running kernel (Binder, JupyterLab or Voilà). Every widget area therefore carries a
visible note with the CSS class :data:`NOTE_CLASS`, which the browser test (``tests/browser.py``)
looks for. The explorers of :mod:`dynn_lib.widgets` carry it as their first child (an HTML
widget), so it shows wherever the widget renders, which on the static page needs JavaScript, as
the saved state does. For any other widget, :func:`show_widget` prints the note as plain HTML
*before* it, so that the note shows even where JavaScript is off::

    from dynn_lib.widgets_static import show_widget
    show_widget(my_interactive_view)          # note + widget
"""
from __future__ import annotations

import html

__all__ = ["NOTE_CLASS", "NOTE_TEXT", "live_kernel_note", "show_widget"]

NOTE_CLASS = "dynn-widget-note"
"""CSS class of the note (styled by ``book/_static/widget-note.css``)."""

NOTE_TEXT = ("Interactive view: these controls respond only with a live Python kernel "
             "(open this notebook in JupyterLab, on Binder, or with Voilà). On the static "
             "page they show the state saved when the notebook was executed.")
"""The note's text (also the plain-text fallback)."""


class _Note:
    """A display object with an HTML and a plain-text form (no ipywidgets needed to render)."""

    def __init__(self, text: str):
        self.text = text

    def _repr_html_(self) -> str:
        return (f'<div class="{NOTE_CLASS}" role="note"><strong>Live kernel needed.</strong> '
                f"{html.escape(self.text)}</div>")

    def __repr__(self) -> str:
        return f"[Live kernel needed] {self.text}"


def live_kernel_note(text: str = NOTE_TEXT) -> _Note:
    """The note as a display object; ``display(live_kernel_note())`` prints it."""
    return _Note(text)


def show_widget(widget, note: str = NOTE_TEXT) -> None:
    """Display the live-kernel note, then ``widget`` (any ipywidgets widget or displayable)."""
    from IPython.display import display

    display(live_kernel_note(note))
    display(widget)
