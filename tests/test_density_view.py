"""The density companion layer in a real viewer: multiscale, aligned with the Points, toggled from Levels."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt

from napari_zarr_vectors import store
from napari_zarr_vectors._qt import follow as _follow
from napari_zarr_vectors._qt.levels_widget import LevelsWidget
from napari_zarr_vectors.layers import DENSITY_KEY, METADATA_KEY

PLUGIN = "napari-zarr-vectors"


def _open(viewer, qtbot, path):
    layers = viewer.open(str(path), plugin=PLUGIN)
    image = next(layer for layer in layers if DENSITY_KEY in layer.metadata)
    points = next(layer for layer in layers if METADATA_KEY in layer.metadata)
    qtbot.waitUntil(lambda: all(f.idle for f in _follow.followers(viewer)), timeout=20_000)
    return image, points


def _show_from_widget(viewer, qtbot, image):
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Levels")
    assert isinstance(widget, LevelsWidget)
    qtbot.waitUntil(lambda: len(widget.density_checks) == 1, timeout=5_000)
    box = widget.density_checks[0].native
    assert box.text() == image.name and not box.isChecked()
    box.setFocus()
    qtbot.keyClick(box, Qt.Key_Space)  # a real key event toggles the real check box
    assert image.visible
    companion = _follow.companion_of(image)
    qtbot.waitUntil(lambda: companion.idle and companion.ready, timeout=60_000)
    return widget, companion


def test_density_image_overlays_points_at_every_level(make_napari_viewer, qtbot, small_points_2d):
    viewer = make_napari_viewer(show=True)  # napari picks image levels when the canvas draws
    image, points = _open(viewer, qtbot, small_points_2d)
    assert image.multiscale and not image.visible
    lazy = image.metadata[DENSITY_KEY]["lazy"]
    assert not lazy.ready  # nothing counted while hidden
    shapes = [tuple(s) for s in image.level_shapes]
    assert shapes[0] == (800, 800)  # a quarter of the 5-unit bin over the 1000-unit square
    assert shapes == [(800 >> n, 800 >> n) for n in range(10)]  # floor(log2(800)) = 9

    widget, companion = _show_from_widget(viewer, qtbot, image)
    assert image.contrast_limits[1] > 0
    # level-0 vertices, placed in the world by the Points layer's own transform
    pos, _ = store.read_rows(small_points_2d, 0)
    world = pos[::50, ::-1] * np.asarray(points.scale) + np.asarray(points.translate)
    data = np.asarray([image.world_to_data(w) for w in world[:2000]])  # level-0 pixel centres are integers
    n0 = np.asarray(shapes[0])
    for level, shape in enumerate(shapes):
        j = np.floor((data + 0.5) * (np.asarray(shape) / n0)).astype(int)
        assert np.all((j >= 0) & (j < np.asarray(shape)))
        values = np.asarray(image.data[level])[j[:, 0], j[:, 1]]
        assert np.all(values > 0), f"a vertex fell in an empty pixel at level {level}"
    # the image's pixels tile exactly the points' square (napari's extent runs centre to centre)
    half = np.asarray(image.scale) / 2
    np.testing.assert_allclose(image.extent.world[0] - half, [0, 0], atol=1e-6)
    np.testing.assert_allclose(image.extent.world[1] + half, [1000, 1000], atol=1e-6)

    # napari picks the image level itself: the coarsest whose view still has a pixel per screen pixel
    viewer.canvas.size = (200, 150)  # a small canvas: the whole image fits a coarse level
    viewer.reset_view()
    qtbot.waitUntil(lambda: image.data_level >= 2, timeout=10_000)
    viewer.scene.camera.zoom = viewer.scene.camera.zoom * 16
    qtbot.waitUntil(lambda: image.data_level == 0, timeout=10_000)

    # unticking hides it again and keeps the counts
    widget.density_checks[0].native.click()
    assert not image.visible and lazy.ready


def test_density_in_3d_locks_a_detailed_level(make_napari_viewer, qtbot, upstream_stores):
    viewer = make_napari_viewer()
    image, points = _open(viewer, qtbot, upstream_stores["point_cloud"])
    assert viewer.dims.ndisplay == 3
    assert image.level_shapes[0].tolist() == [80, 80, 80]
    assert image.locked_data_level == 0  # napari alone would draw the 1-voxel top level in 3D
    _show_from_widget(viewer, qtbot, image)
    counts = image.metadata[DENSITY_KEY]["lazy"].density.arrays
    assert int(counts[0].sum()) == 20_000
    viewer.dims.ndisplay = 2
    assert image.locked_data_level is None


def test_hiding_from_the_layer_list_unticks_the_box(make_napari_viewer, qtbot, small_points_2d):
    viewer = make_napari_viewer()
    image, _ = _open(viewer, qtbot, small_points_2d)
    widget, _ = _show_from_widget(viewer, qtbot, image)
    image.visible = False
    assert not widget.density_checks[0].native.isChecked()
    viewer.layers.remove(image)
    qtbot.waitUntil(lambda: not widget.density_checks, timeout=5_000)


def test_store_gone_before_counting_is_an_error_notification(make_napari_viewer, qtbot, tmp_path, error_notifications):
    """The counting fails on the worker: a notification names the layer and the problem; nothing crashes."""
    import shutil

    from napari_zarr_vectors import samples

    path = samples.make_point_cloud(tmp_path / "gone.zv", 5_000, extent=500.0, chunk=100.0, bin_size=25.0, factors=None)
    viewer = make_napari_viewer()
    image, _ = _open(viewer, qtbot, path)
    shutil.rmtree(path)
    image.visible = True
    companion = _follow.companion_of(image)
    qtbot.waitUntil(lambda: companion.idle and companion.last_error is not None, timeout=20_000)
    assert not companion.ready
    assert any("could not count the density" in m and "gone.zv" in m for m in error_notifications), error_notifications
