"""magicgui widgets drawn by a Qt class magicgui lacks.

magicgui's ``Label`` is a plain QLabel with a fixed size policy: a long
text widens the dock, or (word-wrapped) is clipped, because dock widgets
do not lay out height-for-width.  ``wrapping_label`` is a magicgui Label
whose Qt widget is ``_layout.WrappingLabel``, which keeps the height its
text needs at the width the dock gives it.
"""

from __future__ import annotations

from typing import Any

from magicgui.backends._qtpy import widgets as _qt_backend
from magicgui.widgets import Label
from magicgui.widgets.bases import ValueWidget

from ._layout import WrappingLabel


class _WrappingLabelBackend(_qt_backend.Label):
    def __init__(self, **kwargs: Any) -> None:
        _qt_backend.QBaseStringWidget.__init__(self, WrappingLabel, "text", "setText", "", **kwargs)


class WrappingText(ValueWidget[str]):
    """A magicgui label (a value widget showing text) that word-wraps at the dock's width and shows all of it."""

    def __init__(self, value: str = "", **kwargs: Any) -> None:
        super().__init__(value=value, widget_type=_WrappingLabelBackend, **kwargs)


def wrapping_label(value: str = "", **kwargs: Any) -> WrappingText:
    """A ``WrappingText`` showing ``value``."""
    return WrappingText(value, **kwargs)


def bold(label: Label | WrappingText) -> Label | WrappingText:
    """``label`` in a bold font (magicgui has no font setting)."""
    font = label.native.font()
    font.setBold(True)
    label.native.setFont(font)
    return label
