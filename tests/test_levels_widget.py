"""The Levels dock widget shows and steers each layer's level of detail (real viewer, real Qt events)."""

from __future__ import annotations

import contextlib

from qtpy.QtCore import Qt

from napari_zarr_vectors._qt import follow as _follow
from napari_zarr_vectors._qt._layout import unreadable
from napari_zarr_vectors._qt.levels_widget import AUTO, SET_HERE, LevelsWidget
from napari_zarr_vectors.layers import METADATA_KEY

PLUGIN = "napari-zarr-vectors"
#: About the width of napari's own layer-controls column (367 px here): a dock must not ask for much more.
DOCK_WIDTH_LIMIT = 400


def assert_readable(qtbot, widget):
    """Once the dock is shown and laid out (a turn of the event loop), nothing in ``widget`` is cut."""
    native = getattr(widget, "native", widget)  # a magicgui widget's Qt widget
    qtbot.waitUntil(native.isVisible, timeout=5000)
    with contextlib.suppress(qtbot.TimeoutError):
        qtbot.waitUntil(lambda: not unreadable(native), timeout=3000)
    assert unreadable(native) == []


def type_budget(qtbot, widget, i: int, text: str) -> None:
    """Type ``text`` into layer ``i``'s budget box and press Enter, as a user does."""
    line = widget.budget_box(i).native.lineEdit()
    line.selectAll()
    qtbot.keyClicks(line, text)
    qtbot.keyClick(line, Qt.Key_Enter)


def settle(qtbot, follower):
    qtbot.waitUntil(lambda: follower.idle, timeout=20_000)


def test_levels_widget_shows_locks_and_sets_budget(make_napari_viewer, qtbot, small_points_2d):
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Levels")
    assert isinstance(widget, LevelsWidget)
    assert widget.hint.native.isVisibleTo(widget.native)
    *_, layer = viewer.open(str(small_points_2d), plugin=PLUGIN)
    follower = _follow.follower_of(layer)
    settle(qtbot, follower)
    qtbot.waitUntil(lambda: len(widget.layer_rows) == 1, timeout=5000)
    assert not widget.hint.native.isVisibleTo(widget.native)
    assert widget.layer_name(0) == layer.name
    assert widget.shown_text(0) == (str(follower.level), f"{len(layer.data):,}")

    combo = widget.level_box(0).native
    assert [combo.itemText(i) for i in range(combo.count())] == [AUTO, "0", "1", "2", "3"]
    combo.setCurrentText("3")  # what choosing an item does
    settle(qtbot, follower)
    assert follower.locked == 3 and follower.level == 3
    assert widget.shown_text(0) == ("3", f"{len(layer.data):,}")
    assert layer.metadata[METADATA_KEY]["level"] == 3 and layer.metadata[METADATA_KEY]["locked_level"] == 3

    combo.setCurrentText(AUTO)
    type_budget(qtbot, widget, 0, "5000")
    settle(qtbot, follower)
    assert follower.budget == 5000 and follower.locked is None
    assert len(layer.data) <= 5000
    assert widget.shown_text(0)[1] == f"{len(layer.data):,}"

    viewer.layers.remove(layer)
    qtbot.waitUntil(lambda: len(widget.layer_rows) == 0, timeout=5000)
    assert widget.hint.native.isVisibleTo(widget.native)


def test_a_budget_set_in_the_model_shows_in_the_widget_and_the_reverse(make_napari_viewer, qtbot, small_points_2d):
    """The row is bound both ways to the layer's ``ViewState``; the metadata mirrors the state."""
    viewer = make_napari_viewer()
    *_, layer = viewer.open(str(small_points_2d), plugin=PLUGIN)
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Levels")
    follower = _follow.follower_of(layer)
    state = follower.state
    settle(qtbot, follower)
    qtbot.waitUntil(lambda: len(widget.layer_rows) == 1, timeout=5000)

    state.set_budget(12_000, "a script")  # the model: the widget, the metadata and the view follow
    assert widget.budget_box(0).value == 12_000
    assert widget.budget_box(0).native.value() == 12_000
    assert layer.metadata[METADATA_KEY]["vertex_budget"] == 12_000
    assert widget.budget_reason_text() == "Budget 12,000: a script. Set a number to override."
    settle(qtbot, follower)
    assert len(layer.data) <= 12_000 and widget.shown_text(0)[1] == f"{len(layer.data):,}"

    type_budget(qtbot, widget, 0, "7000")  # the widget: the model follows
    assert state.budget == 7000 and state.budget_reason == SET_HERE
    assert layer.metadata[METADATA_KEY]["vertex_budget"] == 7000
    settle(qtbot, follower)
    assert len(layer.data) <= 7000

    state.lock(2)  # a lock set in the model shows as the row's choice
    assert widget.level_box(0).value == "2"
    settle(qtbot, follower)
    assert widget.shown_text(0)[0] == "2"


def test_levels_dock_is_readable_at_its_default_width(make_napari_viewer, qtbot, small_points_2d):
    """Opened from the Plugins menu's entry: every column, the budget box and the name show whole."""
    viewer = make_napari_viewer(show=True)
    *_, layer = viewer.open(str(small_points_2d), plugin=PLUGIN)
    layer.name = "a long layer name for a 200,000-point store (point_cloud)"
    dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Levels")
    settle(qtbot, _follow.follower_of(layer))
    qtbot.waitUntil(lambda: len(widget.layer_rows) == 1, timeout=5000)
    assert_readable(qtbot, widget)
    assert dock.width() <= DOCK_WIDTH_LIMIT
    row = widget.layer_rows[0]
    assert row.title.native.width() >= row.budget.native.width()  # the name runs across the row, wrapped
    assert row.budget.native.width() >= row.budget.native.minimumSizeHint().width()


def test_levels_rows_keep_their_height_beside_other_docks(make_napari_viewer, qtbot, small_points_2d):
    viewer = make_napari_viewer(show=True)
    viewer.open(str(small_points_2d), plugin=PLUGIN)
    docks = [viewer.window.add_plugin_dock_widget(PLUGIN, name)[1] for name in ("Build pyramid", "Levels", "Drill")]
    qtbot.waitUntil(lambda: len(docks[1].layer_rows) == 1, timeout=5000)
    for widget in docks:
        assert_readable(qtbot, widget)
