"""Layout helpers for the dock widgets: everything readable at the width napari gives a dock.

Napari sets no width for a plugin's dock: the dock area takes the width
its widgets ask for (their size hints), and shares the window's height
among the docks stacked in it. So each widget here asks for the width its
tables' columns need, keeps room for several table rows, and scrolls
rather than squeezing when the height runs short.

For magicgui widgets (whose ``.native`` Qt class is magicgui's, so no size
hint can be overridden): ``fit_table`` / ``refit`` give a magicgui
``Table`` that width and those rows; ``_mg.wrapping_label`` is a magicgui
label drawn by ``WrappingLabel``. ``unreadable`` checks them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QEvent, QObject, QSize, Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QAbstractScrollArea,
    QFrame,
    QHeaderView,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QStyledItemDelegate,
    QTableWidget,
    QWidget,
)

if TYPE_CHECKING:
    from magicgui.widgets import Table

#: Table rows always visible without scrolling the table.
TABLE_ROWS = 4


class WrappingLabel(QLabel):
    """A word-wrapped label that keeps the height its text needs at its current width.

    Dock widgets do not lay out height-for-width, so a plain wrapped
    QLabel gets one line's height and its text is clipped.
    """

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(text, parent)
        self.setWordWrap(True)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt naming
        super().setText(text)
        self._fit()

    def resizeEvent(self, event: Any) -> None:  # noqa: N802 - Qt naming
        super().resizeEvent(event)
        self._fit()

    def _fit(self) -> None:
        _fit_label(self)

    def fits(self) -> bool:
        """Is all of the text shown (its wrapped height within the label's)?"""
        return _label_fits(self)


def _fit_label(label: QLabel) -> None:
    """A wrapped label's minimum height to what its text needs at its width."""
    height = label.heightForWidth(label.width()) if label.text() else 0
    if height >= 0 and height != label.minimumHeight():
        label.setMinimumHeight(height)


def _label_fits(label: QLabel) -> bool:
    return label.heightForWidth(label.width()) <= label.height()


class OnEvents(QObject):
    """Calls ``fn(widget)`` after the watched widget gets an event of ``types``: magicgui's Qt classes are not ours."""

    def __init__(self, widget: QWidget, types: tuple[QEvent.Type, ...], fn: Any) -> None:
        super().__init__(widget)  # lives as long as the widget
        self.types, self.fn = types, fn
        widget.installEventFilter(self)

    def eventFilter(self, watched: Any, event: Any) -> bool:  # noqa: N802 - Qt naming
        if event.type() in self.types:
            self.fn(watched)
        return False


def _columns_width(table: QTableWidget) -> int:
    header = table.horizontalHeader()
    width = sum(
        max(header.sectionSizeHint(c), table.sizeHintForColumn(c))
        for c in range(table.columnCount())
        if not table.isColumnHidden(c)
    )
    if not table.verticalHeader().isHidden():
        width += table.verticalHeader().sizeHint().width()
    return width + 2 * table.frameWidth() + _scroll_bar_width(table)


def _rows_height(table: QTableWidget, rows: int) -> int:
    shown = rows * table.verticalHeader().defaultSectionSize()
    return table.horizontalHeader().sizeHint().height() + shown + 2 * table.frameWidth()


def _cut_columns(table: QTableWidget) -> list[int]:
    header = table.horizontalHeader()
    return [
        c
        for c in range(table.columnCount())
        if table.columnWidth(c) < max(header.sectionSizeHint(c), table.sizeHintForColumn(c))
    ]


def fit_table(table: Table, *, rows: int = TABLE_ROWS, row_numbers: bool = False) -> Table:
    """Lay out a magicgui ``Table``: columns as wide as their contents, ``rows`` rows tall, no horizontal scrolling.

    magicgui's table has no size options, and its Qt class is magicgui's,
    so this sets its ``.native`` QTableWidget up instead; call ``refit``
    after its contents change. Returns ``table``.
    """
    native = table.native
    native.visible_rows = rows  # unreadable() checks it
    native.verticalHeader().setVisible(row_numbers)
    header = native.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    header.setStretchLastSection(True)
    native.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    native.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
    native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
    native.setTextElideMode(Qt.TextElideMode.ElideMiddle)
    native.setItemDelegate(QStyledItemDelegate(native))  # magicgui's shows "1.4" as "1.4000": cells show their text
    # napari's stylesheet reaches the table when it is docked: measure again then
    restyled = (QEvent.Type.Show, QEvent.Type.StyleChange, QEvent.Type.FontChange)
    native._nzv_refit = OnEvents(native, restyled, _size_table)  # (resizing its columns here would stop the stretch)
    refit(table)
    return table


def refit(table: Table) -> None:
    """After a fitted table's contents change: columns to their contents, its minimum width, ``rows`` rows tall."""
    native = table.native
    header = native.horizontalHeader()
    last = native.columnCount() - 1  # setting a magicgui Table's value re-creates its columns: stretch the last anew
    for c in range(last + 1):
        mode = QHeaderView.ResizeMode.Stretch if c == last else QHeaderView.ResizeMode.ResizeToContents
        header.setSectionResizeMode(c, mode)
    native.resizeColumnsToContents()
    _size_table(native)


def _size_table(native: QTableWidget) -> None:
    """A fitted table's minimum width from its columns, and its height of ``visible_rows`` rows."""
    native.setMinimumWidth(_columns_width(native))
    native.setFixedHeight(_rows_height(native, native.visible_rows))


class ScrollArea(QScrollArea):
    """A frameless vertical scroll area that asks for its content's minimum width (and a scroll bar's).

    So a short dock scrolls its widget instead of squeezing the tables,
    and a narrow one never clips it.
    """

    def __init__(self, content: QWidget) -> None:
        super().__init__()
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setWidget(content)
        content.installEventFilter(self)

    def eventFilter(self, watched: Any, event: Any) -> bool:  # noqa: N802 - Qt naming
        if watched is self.widget() and event.type() == QEvent.Type.LayoutRequest:
            self.updateGeometry()  # the content's minimum width may have changed: so may ours
        return super().eventFilter(watched, event)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt naming
        width = self.widget().minimumSizeHint().width() + _scroll_bar_width(self) + 2 * self.frameWidth()
        return QSize(width, super().minimumSizeHint().height())

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt naming
        content = self.widget().sizeHint()
        return QSize(self.minimumSizeHint().width(), content.height())


def _scroll_bar_width(view: QAbstractScrollArea) -> int:
    """The vertical scroll bar's width as drawn (napari's stylesheet sets it; the style's metric does not know)."""
    bar = view.verticalScrollBar()
    return max(bar.sizeHint().width(), bar.width() if bar.isVisible() else 0)


def unreadable(widget: Any) -> list[str]:
    """What a user could not read in ``widget`` as it is laid out now; empty when everything shows.

    Cut table columns or cell widgets, tables showing fewer than their
    ``visible_rows``, clipped wrapped labels, and content wider than its
    scroll area. ``widget`` is a QWidget or a magicgui widget (its ``.native``
    is checked); the tables are magicgui tables laid out by ``fit_table``,
    the labels ``WrappingLabel``s.
    """
    widget = getattr(widget, "native", widget)
    problems = []
    for table in widget.findChildren(QTableWidget):
        if not table.isVisible() or getattr(table, "visible_rows", None) is None:
            continue
        name = table.objectName() or " / ".join(
            table.horizontalHeaderItem(c).text() for c in range(table.columnCount()) if table.horizontalHeaderItem(c)
        )
        cut = _cut_columns(table)
        if cut:
            problems.append(f"table [{name}]: columns {cut} are narrower than their contents")
        if table.horizontalScrollBar().maximum() > 0:
            problems.append(f"table [{name}]: the columns are wider than the table")
        shown = table.viewport().height() / table.verticalHeader().defaultSectionSize()
        if shown < table.visible_rows - 0.01:
            problems.append(f"table [{name}]: {shown:.1f} rows visible, fewer than {table.visible_rows}")
        for r in range(table.rowCount()):
            for c in range(table.columnCount()):
                cell = table.cellWidget(r, c)
                if cell is not None and cell.width() < cell.minimumSizeHint().width():
                    problems.append(f"table [{name}]: the widget in row {r}, column {c} is cut")
    for label in widget.findChildren(QLabel):
        if isinstance(label, WrappingLabel) and label.isVisible() and label.text() and not _label_fits(label):
            problems.append(f"label {label.text()[:40]!r}…: the text is clipped")
    for area in widget.findChildren(ScrollArea):
        if area.isVisible() and area.widget().width() > area.viewport().width():
            problems.append(
                f"the content ({area.widget().width()} px) is wider than its scroll area "
                f"({area.viewport().width()} px): clipped on the right"
            )
    return problems
