"""The Levels dock widget shows and steers each layer's level of detail (real viewer, real Qt events)."""

from __future__ import annotations

import contextlib

from qtpy.QtCore import Qt

from napari_zarr_vectors._qt import follow as _follow
from napari_zarr_vectors._qt._layout import unreadable
from napari_zarr_vectors._qt.levels_widget import AUTO, COLUMNS, LevelsWidget

PLUGIN = "napari-zarr-vectors"
#: About the width of napari's own layer-controls column (367 px here): a dock must not ask for much more.
DOCK_WIDTH_LIMIT = 400


def assert_readable(qtbot, widget):
    """Once the dock is shown and laid out (a turn of the event loop), nothing in ``widget`` is cut."""
    qtbot.waitUntil(widget.isVisible, timeout=5000)
    with contextlib.suppress(qtbot.TimeoutError):
        qtbot.waitUntil(lambda: not unreadable(widget), timeout=3000)
    assert unreadable(widget) == []


def settle(qtbot, follower):
    qtbot.waitUntil(lambda: follower.idle, timeout=20_000)


def test_levels_widget_shows_locks_and_sets_budget(make_napari_viewer, qtbot, small_points_2d):
    viewer = make_napari_viewer()
    widget = LevelsWidget(viewer)
    qtbot.addWidget(widget)
    assert widget.hint.isVisibleTo(widget)
    *_, layer = viewer.open(str(small_points_2d), plugin=PLUGIN)
    follower = _follow.follower_of(layer)
    settle(qtbot, follower)
    qtbot.waitUntil(lambda: widget.table.rowCount() == 2, timeout=5000)  # the layer's name, then its state
    assert widget.layer_name(0) == layer.name
    assert widget.shown_text(0) == (str(follower.level), f"{len(layer.data):,}")

    combo = widget.level_box(0)
    assert [combo.itemText(i) for i in range(combo.count())] == [AUTO, "0", "1", "2", "3"]
    combo.setCurrentText("3")  # what choosing an item does
    settle(qtbot, follower)
    assert follower.locked == 3 and follower.level == 3
    assert widget.shown_text(0) == ("3", f"{len(layer.data):,}")

    combo.setCurrentText(AUTO)
    budget = widget.budget_box(0)
    budget.lineEdit().selectAll()
    qtbot.keyClicks(budget.lineEdit(), "5000")
    qtbot.keyClick(budget.lineEdit(), Qt.Key_Enter)
    settle(qtbot, follower)
    assert follower.budget == 5000 and follower.locked is None
    assert len(layer.data) <= 5000
    assert widget.shown_text(0)[1] == f"{len(layer.data):,}"

    viewer.layers.remove(layer)
    qtbot.waitUntil(lambda: widget.table.rowCount() == 0, timeout=5000)


def test_levels_dock_is_readable_at_its_default_width(make_napari_viewer, qtbot, small_points_2d):
    """Opened from the Plugins menu's entry: every column, the budget box and the name show whole."""
    viewer = make_napari_viewer(show=True)
    *_, layer = viewer.open(str(small_points_2d), plugin=PLUGIN)
    layer.name = "a long layer name for a 200,000-point store (point_cloud)"
    dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Levels")
    settle(qtbot, _follow.follower_of(layer))
    qtbot.waitUntil(lambda: widget.table.rowCount() == 2, timeout=5000)
    assert_readable(qtbot, widget)
    assert dock.width() <= DOCK_WIDTH_LIMIT
    assert widget.table.viewport().height() >= 4 * widget.table.verticalHeader().defaultSectionSize()
    assert widget.table.columnSpan(0, 0) == len(COLUMNS)  # the name runs across the table


def test_levels_rows_keep_their_height_beside_other_docks(make_napari_viewer, qtbot, small_points_2d):
    viewer = make_napari_viewer(show=True)
    viewer.open(str(small_points_2d), plugin=PLUGIN)
    docks = [viewer.window.add_plugin_dock_widget(PLUGIN, name)[1] for name in ("Build pyramid", "Levels", "Drill")]
    qtbot.waitUntil(lambda: docks[1].table.rowCount() == 2, timeout=5000)
    for widget in docks:
        assert_readable(qtbot, widget)
