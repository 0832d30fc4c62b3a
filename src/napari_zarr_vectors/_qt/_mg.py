"""magicgui pieces the docks share: a wrapped label, rows and headings, a layer choice.

magicgui's ``Label`` is a plain QLabel with a fixed size policy: a long
text widens the dock, or (word-wrapped) is clipped, because dock widgets
do not lay out height-for-width.  ``wrapping_label`` is a magicgui Label
whose Qt widget is ``_layout.WrappingLabel``, which keeps the height its
text needs at the width the dock gives it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from magicgui.backends._qtpy import widgets as _qt_backend
from magicgui.widgets import Container, Label, Widget, create_widget
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


def tight(container: Container) -> Container:
    """A container nested in a dock's: no margins of its own (the dock's are enough)."""
    container.margins = (0, 0, 0, 0)
    return container


def row(*widgets: Widget, label: str | None = None) -> Container:
    """Widgets side by side, without margins of their own (``label``: what a labelled form shows beside them)."""
    out = tight(Container(widgets=widgets, layout="horizontal", labels=False))
    if label is not None:
        out.label = label
    return out


def heading(text: str) -> Label:
    """A bold one-line title over a part of a dock."""
    return bold(Label(value=text))


def layer_choice(viewer: Any, keep: Callable[[Any], bool], **kwargs: Any) -> Widget:
    """A choice of ``viewer``'s layers for which ``keep(layer)``, made by magicgui for a napari layer annotation.

    It lists them anew when layers are added, removed or renamed, and
    follows the active layer when that one is kept (what the user points
    at in the layer list); choosing the active layer again emits
    ``changed`` again.  ``kwargs`` go to ``create_widget`` (label, name,
    tooltip, nullable).  A long layer name does not widen the dock.
    """
    import napari.layers
    from qtpy.QtWidgets import QComboBox

    options = {"choices": lambda _w: [(ly.name, ly) for ly in viewer.layers if keep(ly)]}
    for key in ("tooltip", "nullable"):
        if key in kwargs:
            options[key] = kwargs.pop(key)
    widget = create_widget(annotation=napari.layers.Layer, options=options, **kwargs)
    # Qt: magicgui has no size-adjust option, and a long layer name would widen the dock past its default width
    widget.native.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    widget._nzv_follower = _ChoiceFollower(viewer, widget, keep)  # lives with the widget; napari holds it weakly
    return widget


class _ChoiceFollower:
    """Keeps a layer choice's list current and on the active layer (napari's events hold methods weakly)."""

    def __init__(self, viewer: Any, widget: Widget, keep: Callable[[Any], bool]) -> None:
        self.widget, self.keep = widget, keep
        layers = viewer.layers
        for event in (layers.events.inserted, layers.events.removed, layers.events.renamed):
            event.connect(self.refresh)
        layers.selection.events.active.connect(self.on_active)

    def refresh(self, event: Any = None) -> None:
        with contextlib.suppress(RuntimeError):  # the dock was closed and its Qt widget deleted
            self.widget.reset_choices()

    def on_active(self, event: Any) -> None:
        self.follow(event.value)

    def follow(self, layer: Any) -> None:
        """The choice to ``layer`` when it is kept (again: ``changed`` is emitted again)."""
        if layer is None or not self.keep(layer):
            return
        with contextlib.suppress(RuntimeError):
            self.widget.reset_choices()
            if layer not in self.widget.choices:
                return
            if self.widget.value is layer:
                self.widget.changed.emit(layer)
            else:
                self.widget.value = layer


def follow_active(widget: Widget, layer: Any) -> None:
    """A ``layer_choice`` to ``layer`` when it is one it lists (a dock starting on the active layer)."""
    widget._nzv_follower.follow(layer)
