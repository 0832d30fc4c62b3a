"""The Drill dock widget in a real viewer: select a metanode, drill down to exactly its children, and back up."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_zarr_vectors import drill, pyramid, samples, store
from napari_zarr_vectors._qt import follow as _follow
from napari_zarr_vectors._qt.drill_widget import DrillWidget

PLUGIN = "napari-zarr-vectors"


@pytest.fixture(scope="module")
def small_streamlines(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("drillw") / "lines.zv"
    samples.make_streamlines(path, 200, chunk=250.0, bin_size=50.0, factors=None)
    pyramid.build_pyramid(path, [(2.0, 1.0)] * 3, method="per_object")
    return path


def _open_locked(viewer, qtbot, path: Path, level: int):
    *_, layer = viewer.open(str(path), plugin=PLUGIN)
    follower = _follow.follower_of(layer)
    follower.lock(level)
    qtbot.waitUntil(lambda: follower.idle and follower.level == level, timeout=30_000)
    return layer


def _viewer_and_widget(make_napari_viewer, qtbot, **kwargs):
    """A viewer and its Drill dock, opened the way the Plugins menu opens it."""
    viewer = make_napari_viewer(**kwargs)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Drill")
    assert isinstance(widget, DrillWidget)
    return viewer, widget


def _children_rows(path: Path, level: int, parent_position: np.ndarray) -> np.ndarray:
    """Positions (store order) of the level-``level - 1`` vertices whose parent sits at ``parent_position``."""
    coarse, _ = store.read_rows(path, level)
    row = int(np.argmin(np.abs(coarse - parent_position).max(1)))
    fine, _ = store.read_rows(path, level - 1)
    return fine[store.parent_map(path, level - 1, 1) == row]


def _as_set(positions: np.ndarray) -> set[tuple]:
    return {tuple(np.round(p, 3)) for p in np.asarray(positions, dtype=np.float64)}


def _click(qtbot, widget, button) -> None:
    qtbot.mouseClick(button.native, Qt.LeftButton)
    qtbot.waitUntil(lambda: not widget.busy, timeout=30_000)


def _highlight(viewer):
    return next(layer for layer in viewer.layers if layer.name.startswith("drill: "))


def test_drill_down_and_up_on_the_point_sample(make_napari_viewer, qtbot):
    path = samples.sample_store("synthetic_points.zv")
    viewer, widget = _viewer_and_widget(make_napari_viewer, qtbot)
    layer = _open_locked(viewer, qtbot, path, 3)
    pick = len(layer.data) // 2
    metanode = np.asarray(layer.data[pick])[::-1].astype(np.float64)
    layer.selected_data = {pick}
    viewer.layers.selection.active = layer

    widget.show_links.native.click()  # the check box, as a user ticks it
    assert widget.show_links.value
    _click(qtbot, widget, widget.down_button)
    assert widget.last_error is None
    hl = _highlight(viewer)
    expected = _children_rows(path, 3, metanode)
    assert len(expected) > 1
    assert _as_set(np.asarray(hl.data)[:, ::-1]) == _as_set(expected)  # exactly its children
    assert widget.breadcrumb.value == f"L3 (1) → L2 ({len(expected)})"
    links = viewer.layers[f"drill links: {store.open_info(path).name}"]
    assert len(links.data) == len(expected)
    np.testing.assert_allclose(links.data[:, 0], np.repeat(metanode[None, ::-1], len(expected), 0), atol=1e-3)
    assert viewer.layers.selection.active is hl

    _click(qtbot, widget, widget.up_button)  # nothing selected in the highlight: all of it goes up
    assert _as_set(np.asarray(hl.data)[:, ::-1]) == _as_set(metanode[None])
    assert widget.breadcrumb.value == "L3 (1)"
    assert np.allclose(hl.size, hl.current_size)  # the layer controls show the level-3 marker size

    # the keyboard shortcut drills down again, from the highlight
    hl.selected_data = {0}
    qtbot.keyClick(viewer.window._qt_viewer.canvas.native, Qt.Key_Down, Qt.ControlModifier | Qt.ShiftModifier)
    qtbot.waitUntil(lambda: len(_highlight(viewer).data) == len(expected), timeout=30_000)
    qtbot.waitUntil(lambda: not widget.busy, timeout=30_000)
    assert _as_set(np.asarray(_highlight(viewer).data)[:, ::-1]) == _as_set(expected)


def test_drill_straight_to_level_zero(make_napari_viewer, qtbot):
    path = samples.sample_store("synthetic_points.zv")
    viewer, widget = _viewer_and_widget(make_napari_viewer, qtbot)
    layer = _open_locked(viewer, qtbot, path, 3)
    bins = np.asarray(store.open_info(path).level(3).bin_shape)
    level0, _ = store.read_rows(path, 0)
    level0_bins, per_bin = np.unique(np.floor(level0 / bins), axis=0, return_counts=True)
    metanodes = np.asarray(layer.data)[:, ::-1]
    fullest = {tuple(b): int(c) for b, c in zip(level0_bins, per_bin, strict=True)}
    pick = int(np.argmax([fullest.get(tuple(np.floor(m / bins)), 0) for m in metanodes]))
    layer.selected_data = {pick}  # the metanode standing for the most points: the sample is not uniform
    metanode = metanodes[pick]
    widget.target.native.setCurrentText("level 0")  # what choosing it in the list does
    assert widget.target.value == "level 0"
    _click(qtbot, widget, widget.down_button)
    hl = _highlight(viewer)
    assert hl.metadata["zarr_vectors_drill"]["level"] == 0
    assert len(hl.data) == fullest[tuple(np.floor(metanode / bins))] > 1000  # all the points of its bin
    assert np.all(np.floor(np.asarray(hl.data)[:, ::-1] / bins) == np.floor(metanode / bins))


def test_drill_on_a_streamline_store(make_napari_viewer, qtbot, small_streamlines):
    viewer, widget = _viewer_and_widget(make_napari_viewer, qtbot)
    lines = _open_locked(viewer, qtbot, small_streamlines, 3)

    _click(qtbot, widget, widget.metanodes_button)
    nodes = viewer.layers.selection.active
    assert nodes is not lines and nodes.name.startswith("metanodes:")
    pick = 0
    metanode = np.asarray(nodes.data[pick])[::-1].astype(np.float64)
    nodes.selected_data = {pick}
    _click(qtbot, widget, widget.down_button)
    assert widget.last_error is None
    expected = _children_rows(small_streamlines, 3, metanode)
    hl = _highlight(viewer)
    assert _as_set(np.asarray(hl.data)[:, ::-1]) == _as_set(expected)
    assert "object" in hl.features and np.all(hl.features["object"] >= 0)

    _click(qtbot, widget, widget.up_button)
    assert _as_set(np.asarray(hl.data)[:, ::-1]) == _as_set(metanode[None])

    # the object of one child, at every level that keeps it
    hl.selected_data = {0}
    oid = int(hl.features["object"][0])
    _click(qtbot, widget, widget.object_button)
    shapes = viewer.layers[f"object {oid}: {store.open_info(small_streamlines).name}"]
    assert 0 in set(shapes.features["level"]) and len(shapes.data) >= 1
    level0 = store.read_level(small_streamlines, 0, object_ids=[oid])
    np.testing.assert_allclose(
        shapes.data[list(shapes.features["level"]).index(0)][:, ::-1], level0.positions, atol=1e-4
    )


def test_a_store_without_links_explains_and_changes_nothing(
    make_napari_viewer, qtbot, tmp_path, tree_digest, error_notifications
):
    path = tmp_path / "nolinks.zv"
    samples.make_point_cloud(path, 5_000, extent=400.0, chunk=100.0, bin_size=25.0, factors=None, ndim=2)
    pyramid.build_pyramid(path, [(2.0, 1.0), (2.0, 1.0)], cross_level_depth=0)
    before = tree_digest(path)
    viewer, widget = _viewer_and_widget(make_napari_viewer, qtbot)
    layer = _open_locked(viewer, qtbot, path, 2)
    layer.selected_data = {0}
    _click(qtbot, widget, widget.down_button)
    assert "cross_level_depth >= 1" in widget.last_error
    assert error_notifications[-1] == widget.last_error  # shown to the user as an error notification
    assert not any(x.name.startswith("drill: ") for x in viewer.layers)
    assert tree_digest(path) == before


def test_nothing_selected_says_what_to_do(make_napari_viewer, qtbot, small_points_2d, error_notifications):
    viewer, widget = _viewer_and_widget(make_napari_viewer, qtbot)
    assert widget.source.value is None and widget.source.choices == ()
    _click(qtbot, widget, widget.down_button)
    assert "Select a Zarr Vectors Points layer" in widget.last_error
    assert error_notifications[-1] == widget.last_error
    layer = _open_locked(viewer, qtbot, small_points_2d, 2)
    assert widget.source.value == layer  # the store's layer, active once opened
    _click(qtbot, widget, widget.down_button)
    assert "No points are selected" in widget.last_error
    assert error_notifications[-1] == widget.last_error
    _click(qtbot, widget, widget.metanodes_button)
    assert widget.last_error == "Select a Zarr Vectors polyline or streamline layer first."


def test_the_layer_choice_lists_drillable_layers_and_follows_the_active_one(make_napari_viewer, qtbot, small_points_2d):
    viewer, widget = _viewer_and_widget(make_napari_viewer, qtbot)
    layer = _open_locked(viewer, qtbot, small_points_2d, 2)
    image = viewer.add_image(np.zeros((8, 8)), name="an image")
    plain = viewer.add_points(np.zeros((3, 2)), name="plain points")
    assert list(widget.source.choices) == [layer]  # neither the image nor points of no store
    viewer.layers.selection.active = image
    assert widget.source.value == layer  # a layer it cannot drill from: the choice stays

    layer.selected_data = {0, 1}
    _click(qtbot, widget, widget.down_button)
    assert widget.last_error is None
    hl = _highlight(viewer)
    assert viewer.layers.selection.active is hl and widget.source.value == hl  # the next step starts there
    assert [x.name for x in widget.source.choices] == [layer.name, hl.name]

    # chosen in the list, not activated: the store's layer is drilled from, not the active highlight
    viewer.layers.selection.active = plain
    widget.source.native.setCurrentIndex(0)
    assert widget.source.value == layer
    layer.selected_data = {0}
    _click(qtbot, widget, widget.down_button)
    assert widget.last_error is None
    assert widget.breadcrumb.value.startswith("L2 (1) → L1 (")  # a new trail, from the store's layer

    viewer.layers.remove(hl)
    assert list(widget.source.choices) == [layer]


def test_the_breadcrumb_label_shows_what_the_model_holds(make_napari_viewer, qtbot):
    """Model -> widget: a change made to the breadcrumb model directly is what the label reads."""
    viewer, widget = _viewer_and_widget(make_napari_viewer, qtbot)
    assert widget.breadcrumb.value == ""
    keys = np.zeros((5, 3), np.int64)
    widget.breadcrumb_model.steps = (drill.Step(3, keys[:1]), drill.Step(2, keys))
    assert widget.breadcrumb.value == "L3 (1) → L2 (5)" == widget.breadcrumb_model.text()
    widget.breadcrumb_model.record("other.zv", drill.Step(1, keys[:2]), drill.Step(0, keys), chained=True)
    assert widget.breadcrumb.value == "L1 (2) → L0 (5)"
    assert widget.store_path == "other.zv"
    widget.breadcrumb_model.clear()
    assert widget.breadcrumb.value == "" and widget.store_path is None


def test_drill_dock_is_readable_at_its_default_width(make_napari_viewer, qtbot, small_points_2d):
    """Opened from the Plugins menu's entry: the whole hint shows, and every button's text."""
    import contextlib

    from napari_zarr_vectors._qt._layout import unreadable

    viewer = make_napari_viewer(show=True)
    viewer.open(str(small_points_2d), plugin=PLUGIN)
    dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Drill")
    qtbot.waitUntil(widget.native.isVisible, timeout=5000)
    with contextlib.suppress(qtbot.TimeoutError):
        qtbot.waitUntil(lambda: not unreadable(widget.native), timeout=3000)
    assert unreadable(widget.native) == []
    hint = widget.hint.native
    assert hint.height() >= hint.heightForWidth(hint.width())
    for button in (widget.down_button, widget.up_button, widget.metanodes_button, widget.object_button):
        assert button.native.width() >= button.native.sizeHint().width(), button.text
    for control in (widget.source, widget.target, widget.show_links):
        assert control.native.width() >= control.native.minimumSizeHint().width(), control.name
    assert dock.width() <= 400
