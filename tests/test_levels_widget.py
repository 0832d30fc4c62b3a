"""The Levels dock widget shows and steers each layer's level of detail (real viewer, real Qt events)."""

from __future__ import annotations

from qtpy.QtCore import Qt

from napari_zarr_vectors import _follow
from napari_zarr_vectors._widgets.levels import AUTO, LevelsWidget

PLUGIN = "napari-zarr-vectors"


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
    qtbot.waitUntil(lambda: widget.table.rowCount() == 1, timeout=5000)
    assert widget.table.item(0, 0).text() == layer.name
    assert widget.shown_text(0) == (str(follower.level), f"{len(layer.data):,}")

    combo = widget.table.cellWidget(0, 1)
    assert [combo.itemText(i) for i in range(combo.count())] == [AUTO, "0", "1", "2", "3"]
    combo.setCurrentText("3")  # what choosing an item does
    settle(qtbot, follower)
    assert follower.locked == 3 and follower.level == 3
    assert widget.shown_text(0) == ("3", f"{len(layer.data):,}")

    combo.setCurrentText(AUTO)
    budget = widget.table.cellWidget(0, 4)
    budget.lineEdit().selectAll()
    qtbot.keyClicks(budget.lineEdit(), "5000")
    qtbot.keyClick(budget.lineEdit(), Qt.Key_Enter)
    settle(qtbot, follower)
    assert follower.budget == 5000 and follower.locked is None
    assert len(layer.data) <= 5000
    assert widget.shown_text(0)[1] == f"{len(layer.data):,}"

    viewer.layers.remove(layer)
    qtbot.waitUntil(lambda: widget.table.rowCount() == 0, timeout=5000)
