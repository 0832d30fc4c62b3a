"""The default vertex budget fits the machine: a real viewer's GL renderer and canvas (issue 18, item 4).

Under xvfb the renderer is Mesa llvmpipe, a software renderer, so a store
opened through napari gets the software budget, not the GPU's 250,000.
"""

from __future__ import annotations

import pytest
from qtpy.QtCore import Qt

from napari_zarr_vectors import _renderer, lod
from napari_zarr_vectors._qt import follow as _follow
from napari_zarr_vectors._qt.levels_widget import SET_HERE
from napari_zarr_vectors.layers import METADATA_KEY

PLUGIN = "napari-zarr-vectors"


def _software_renderer(viewer) -> str:
    renderer = _renderer.gl_renderer(viewer)
    if renderer is None or "llvmpipe" not in renderer:
        pytest.skip(f"needs Mesa llvmpipe (as under xvfb in CI); this GL renderer is {renderer!r}")
    return renderer


def _settle(qtbot, follower) -> None:
    qtbot.waitUntil(lambda: follower.idle, timeout=20_000)


def test_renderer_is_read_from_the_viewers_canvas(make_napari_viewer):
    viewer = make_napari_viewer()
    renderer = _renderer.gl_renderer(viewer)
    assert renderer is None or (isinstance(renderer, str) and renderer.strip() == renderer != "")
    assert _renderer.gl_renderer() == renderer  # kept for the process
    height, width = _renderer.canvas_size(viewer)
    assert height > 0 and width > 0
    assert _renderer.machine_budget(viewer) == lod.budget_for(renderer, (height, width))


def test_no_canvas_gives_no_size_and_no_error():
    assert _renderer.canvas_size(object()) is None
    assert _renderer.canvas_size(None) is None


def test_software_renderer_gives_the_software_budget(make_napari_viewer, qtbot, small_points_2d):
    """200,000 points in view: a GPU budget (250,000) would draw level 0; the software budget draws level 1."""
    viewer = make_napari_viewer()
    renderer = _software_renderer(viewer)
    size = _renderer.canvas_size(viewer)
    expected, expected_reason = lod.budget_for(renderer, size)
    assert lod.SOFTWARE_MIN_BUDGET <= expected <= lod.SOFTWARE_MAX_BUDGET < lod.DEFAULT_VERTEX_BUDGET

    *_, layer = viewer.open(str(small_points_2d), plugin=PLUGIN)
    meta = layer.metadata[METADATA_KEY]
    assert meta["vertex_budget"] == expected
    assert meta["budget_reason"] == expected_reason
    assert "software renderer (llvmpipe)" in meta["budget_reason"]
    assert f"{size[1]}x{size[0]} canvas" in meta["budget_reason"]
    follower = _follow.follower_of(layer)
    assert follower.budget == expected
    _settle(qtbot, follower)
    assert 0 < len(layer.data) <= expected
    assert follower.level == 1  # level 0's 200,000 vertices are over the software budget


def test_environment_budget_wins_over_the_renderer(make_napari_viewer, qtbot, small_points_2d, monkeypatch):
    monkeypatch.setenv(lod.BUDGET_ENV, "300000")  # above the GPU's 250,000 too: the variable, not the renderer
    viewer = make_napari_viewer()
    *_, layer = viewer.open(str(small_points_2d), plugin=PLUGIN)
    meta = layer.metadata[METADATA_KEY]
    assert (meta["vertex_budget"], meta["budget_reason"]) == (300_000, f"set by ${lod.BUDGET_ENV}")
    follower = _follow.follower_of(layer)
    assert follower.budget == 300_000
    _settle(qtbot, follower)
    assert follower.level == 0  # 200,000 fits (within the hysteresis margin, 85% of the budget)


def test_levels_dock_shows_why_and_a_typed_budget_is_set_here(make_napari_viewer, qtbot, small_points_2d):
    viewer = make_napari_viewer(show=True)
    renderer = _software_renderer(viewer)
    *_, layer = viewer.open(str(small_points_2d), plugin=PLUGIN)
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Levels")
    follower = _follow.follower_of(layer)
    qtbot.waitUntil(lambda: len(widget.layer_rows) == 1, timeout=5000)
    reason = layer.metadata[METADATA_KEY]["budget_reason"]
    assert "llvmpipe" in reason and "llvmpipe" in renderer
    text = widget.budget_reason_text()
    assert text == f"Budget {follower.budget:,}: {reason}. Set a number to override."
    assert widget.budget_box(0).native.value() == follower.budget

    box = widget.budget_box(0).native
    box.lineEdit().selectAll()
    qtbot.keyClicks(box.lineEdit(), "40000")
    qtbot.keyClick(box.lineEdit(), Qt.Key_Enter)
    _settle(qtbot, follower)
    assert follower.budget == 40_000
    assert layer.metadata[METADATA_KEY]["budget_reason"] == SET_HERE
    assert widget.budget_reason_text() == f"Budget 40,000: {SET_HERE}."
    widget.rebuild()  # a rebuild (another layer, a build) keeps what the user set
    assert widget.budget_reason_text() == f"Budget 40,000: {SET_HERE}."
    assert widget.budget_box(0).value == 40_000


def test_a_resized_window_moves_the_machine_budget_but_not_a_set_one(make_napari_viewer, qtbot, small_points_2d):
    """The software budget is per canvas pixel: a bigger window gets more vertices, unless a budget was set."""
    viewer = make_napari_viewer(show=True)
    renderer = _software_renderer(viewer)
    window = viewer.window._qt_window
    window.resize(700, 500)
    qtbot.waitUntil(lambda: _renderer.canvas_size(viewer)[1] < 700, timeout=5000)
    *_, layer = viewer.open(str(small_points_2d), plugin=PLUGIN)
    follower = _follow.follower_of(layer)
    _settle(qtbot, follower)
    qtbot.waitUntil(  # the window laid out, maybe again after the open: the budget is the canvas's as it is
        lambda: (
            (follower.budget, follower.state.budget_reason) == lod.budget_for(renderer, _renderer.canvas_size(viewer))
        ),
        timeout=5000,
    )
    small = follower.budget
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Levels")
    qtbot.waitUntil(lambda: len(widget.layer_rows) == 1, timeout=5000)

    window.resize(1270, 1000)  # what a user's drag of the window's corner does
    qtbot.waitUntil(lambda: follower.budget != small, timeout=5000)
    size = _renderer.canvas_size(viewer)
    bigger, reason = lod.budget_for(renderer, size)
    assert bigger > small
    assert (follower.budget, follower.state.budget_reason) == (bigger, reason)
    assert f"{size[1]}x{size[0]} canvas" in reason
    assert layer.metadata[METADATA_KEY]["vertex_budget"] == bigger
    assert widget.budget_box(0).value == bigger
    assert widget.budget_reason_text() == f"Budget {bigger:,}: {reason}. Set a number to override."
    _settle(qtbot, follower)
    assert 0 < len(layer.data) <= bigger

    follower.set_budget(45_000, "a script")  # set, not the machine's: a resize keeps it
    _settle(qtbot, follower)
    window.resize(700, 500)
    qtbot.waitUntil(lambda: _renderer.canvas_size(viewer)[1] < 700, timeout=5000)
    qtbot.wait(100)
    assert (follower.budget, follower.state.budget_reason) == (45_000, "a script")
    assert widget.budget_box(0).value == 45_000
