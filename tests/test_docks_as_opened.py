"""Dock widgets opened the way a user opens them, before and after a store is open.

napari hands a plugin widget a ``PublicOnlyProxy`` of the viewer, not the
viewer.  The followers once compared viewers with ``is``: the Levels dock
opened from the Plugins menu after a store was open stayed empty, and
``wait_settled(viewer)`` returned at once when the dock came first.
"""

from __future__ import annotations

import pytest
from qtpy.QtCore import Qt

from napari_zarr_vectors import store
from napari_zarr_vectors._qt import follow as _follow
from napari_zarr_vectors.layers import METADATA_KEY

PLUGIN = "napari-zarr-vectors"
ORDERS = ["store first", "dock first"]


def _open(viewer, path, dock_name: str, order: str):
    """Open ``path`` and the dock in ``order``; the dock as the Plugins menu opens it."""
    if order == "dock first":
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, dock_name)
        *_, layer = viewer.open(str(path), plugin=PLUGIN)
    else:
        *_, layer = viewer.open(str(path), plugin=PLUGIN)
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, dock_name)
    assert type(widget.viewer).__name__ == "PublicOnlyProxy"  # what napari hands a plugin widget
    return layer, widget


def _settled(viewer, layer) -> None:
    """wait_settled waits: once it returns, the follower has drawn the current view."""
    follower = _follow.follower_of(layer)
    assert follower is not None
    assert _follow.wait_settled(viewer, timeout=60)
    assert follower.idle and follower.swaps >= 1  # the coarse first view was refined at least once
    assert layer.metadata[METADATA_KEY]["level"] == follower.level


@pytest.mark.parametrize("order", ORDERS)
def test_levels_dock_shows_the_open_store(make_napari_viewer, qtbot, small_points_2d, order):
    viewer = make_napari_viewer(show=True)
    layer, widget = _open(viewer, small_points_2d, "Levels", order)
    _settled(viewer, layer)
    qtbot.waitUntil(lambda: len(widget.layer_rows) == 1, timeout=5000)  # one row: the layer's
    assert _follow.followers(widget.viewer) == _follow.followers(viewer)
    assert widget.level_box(0).native.currentText() == "auto"
    assert widget.budget_box(0).native.value() == _follow.follower_of(layer).budget


@pytest.mark.parametrize("order", ORDERS)
def test_build_dock_shows_the_open_store(make_napari_viewer, qtbot, small_points_2d, order):
    viewer = make_napari_viewer(show=True)
    layer, widget = _open(viewer, small_points_2d, "Build pyramid", order)
    _settled(viewer, layer)
    levels = store.open_info(small_points_2d).levels
    qtbot.waitUntil(lambda: widget.summary_table.shape[0] == len(levels), timeout=10_000)
    assert widget.store_path == str(small_points_2d.resolve())


@pytest.mark.parametrize("order", ORDERS)
def test_drill_dock_drills_the_open_store(make_napari_viewer, qtbot, small_points_2d, order):
    viewer = make_napari_viewer(show=True)
    layer, widget = _open(viewer, small_points_2d, "Drill", order)
    _settled(viewer, layer)
    follower = _follow.follower_of(layer)
    follower.lock(2)
    qtbot.waitUntil(lambda: follower.idle and follower.level == 2, timeout=20_000)
    viewer.layers.selection.active = layer
    layer.selected_data = {0, 1}
    assert widget.source.value == layer  # the layer drilled from: the open store's
    qtbot.mouseClick(widget.down_button.native, Qt.LeftButton)
    qtbot.waitUntil(lambda: not widget.busy, timeout=20_000)
    assert widget.last_error is None
    assert widget.store_path == str(small_points_2d.resolve())
    assert widget.breadcrumb.value
