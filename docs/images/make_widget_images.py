"""Makes the widget pictures: the Build pyramid dock after a build, and a two-step drill.

    xvfb-run -a -s "-screen 0 1280x1200x24" python docs/images/make_widget_images.py

Each dock is opened as a user opens it (``add_plugin_dock_widget``, what the Plugins menu
does), so it has the width napari gives it. ``demo.png`` comes from the demo command itself:
``napari-zarr-vectors demo --screenshot docs/images/demo.png --window``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from napari_zarr_vectors import samples, store

HERE = Path(__file__).parent
PLUGIN = "napari-zarr-vectors"
#: Tall enough for the whole Build dock (it scrolls in a shorter window); the docks keep their own width.
WINDOW = (1280, 1150)


def _settle(viewer, turns: int = 20) -> None:
    from qtpy.QtWidgets import QApplication

    from napari_zarr_vectors._qt import follow as _follow

    _follow.wait_settled(viewer)
    for _ in range(turns):
        QApplication.processEvents()


def build_picture(work: Path) -> None:
    """A 200,000-point structured cloud, level 0 only, pyramided from the dock (label by mode)."""
    import napari
    from qtpy.QtCore import Qt

    path = samples.make_point_cloud(work / "cells.zv", 200_000, bin_size=25.0, factors=None)
    viewer = napari.Viewer(show=True)
    viewer.window.resize(*WINDOW)
    viewer.open(str(path), plugin=PLUGIN)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Build pyramid")
    _settle(viewer)
    widget._modes_for["label"].value = "mode"
    widget.build_button.native.click()
    while widget._worker is not None:
        _settle(viewer, 1)
    widget.agg_mode.native.setFocus(Qt.OtherFocusReason)
    _settle(viewer)
    viewer.screenshot(str(HERE / "build_widget.png"), canvas_only=False, flash=False)
    viewer.close()


def _full_metanode(path: Path) -> int:
    """A level-3 row of the blue cell's nucleus whose 8 children at level 2 each have 8 at level 1."""
    up2, up1 = store.parent_map(path, 2, 1), store.parent_map(path, 1, 1)
    kids2 = np.bincount(up2[up2 >= 0], minlength=store.level_rows(path, 3))
    kids1 = np.bincount(up1[up1 >= 0], minlength=store.level_rows(path, 2))
    _, attrs = store.read_rows(path, 3, ["label"])
    full = [
        r for r in np.flatnonzero((kids2 == 8) & (attrs["label"] == 3)) if np.all(kids1[np.flatnonzero(up2 == r)] == 8)
    ]
    return int(full[len(full) // 2])


def drill_picture() -> None:
    """The point sample in 3D at level 3: one metanode to its 8 children, three of those to 24."""
    import napari

    from napari_zarr_vectors._qt import follow as _follow

    path = samples.sample_store("synthetic_points.zv")
    row = _full_metanode(path)
    positions, _ = store.read_rows(path, 3)
    metanode = positions[row][::-1]  # napari order
    viewer = napari.Viewer(show=True)
    viewer.window.resize(*WINDOW)
    *_, layer = viewer.open(str(path), plugin=PLUGIN)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Drill")
    viewer.scene.camera.angles = (5.0, 25.0, 140.0)
    follower = _follow.follower_of(layer)
    follower.lock(3)
    _settle(viewer)
    pick = int(np.argmin(np.abs(np.asarray(layer.data) - metanode).max(1)))
    viewer.layers.selection.active = layer
    layer.selected_data = {pick}
    widget.show_links.value = True
    widget.drill_down()
    while widget.busy:
        _settle(viewer, 1)
    highlight = viewer.layers.selection.active
    highlight.selected_data = {0, 1, 2}
    widget.drill_down()
    while widget.busy:
        _settle(viewer, 1)
    _settle(viewer)
    print(widget.breadcrumb.value)
    viewer.screenshot(str(HERE / "drill.png"), canvas_only=False, flash=False)
    viewer.close()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        build_picture(Path(tmp))
    drill_picture()


if __name__ == "__main__":
    main()
