"""Layers follow the camera through the pyramid, in a real napari viewer."""

from __future__ import annotations

import time

import numpy as np
import pytest

from napari_zarr_vectors import lod, pyramid, samples
from napari_zarr_vectors._qt import follow as _follow
from napari_zarr_vectors.layers import METADATA_KEY

PLUGIN = "napari-zarr-vectors"
BUDGET = 100_000


def settle(qtbot, follower, timeout=20_000):
    """Wait until no timer is pending and no read is in flight."""
    qtbot.waitUntil(lambda: follower.idle, timeout=timeout)


def shown_store_positions(layer) -> np.ndarray:
    return np.asarray(layer.data)[:, ::-1]  # napari (y, x) -> store (x, y)


@pytest.fixture
def opened(make_napari_viewer, qtbot, two_million_points, monkeypatch):
    monkeypatch.setenv(lod.BUDGET_ENV, str(BUDGET))
    viewer = make_napari_viewer()
    viewer.window._qt_viewer.canvas.size = (600, 800)
    *_, layer = viewer.open(str(two_million_points), plugin=PLUGIN)
    assert layer.metadata[METADATA_KEY]["level"] == 3  # opens at the coarsest level, quickest to draw
    follower = _follow.follower_of(layer)
    assert follower is not None
    settle(qtbot, follower)
    return viewer, layer, follower


def test_first_view_is_coarse_and_within_budget(opened):
    viewer, layer, follower = opened
    assert follower.level >= 2  # 2M and 250k do not fit 100,000
    assert 0 < len(layer.data) <= BUDGET
    assert layer.metadata[METADATA_KEY]["level"] == follower.level


def test_zoom_to_five_percent_goes_finer_and_back(opened, qtbot):
    viewer, layer, follower = opened
    coarse = follower.level
    width = viewer.canvas.size[1] / viewer.scene.camera.zoom
    viewer.scene.camera.center = (1200.0, 700.0)
    viewer.scene.camera.zoom = viewer.canvas.size[1] / (0.05 * 2000.0)  # a window 5% of the store's width
    settle(qtbot, follower)
    assert follower.level < coarse
    assert follower.level == 0
    shown = shown_store_positions(layer)
    assert 0 < len(shown) <= BUDGET
    box = follower.lod.box_for(follower.view(), follower.level)
    assert box.contains(shown).all()  # every shown vertex lies inside the margin-expanded box
    assert (box.hi - box.lo)[0] < 0.1 * 2000.0
    assert len(layer.features) == len(shown) and set(layer.features.columns) >= {"intensity", "label"}
    # colours still follow the intensity feature through the swap
    assert layer.face_color.shape == (len(shown), 4)
    assert len(np.unique(layer.face_color.round(3), axis=0)) > 10
    viewer.scene.camera.zoom = viewer.canvas.size[1] / width
    viewer.scene.camera.center = (1000.0, 1000.0)
    settle(qtbot, follower)
    assert follower.level == coarse
    assert len(layer.data) <= BUDGET


def test_locked_level_holds_through_zooms(opened, qtbot):
    viewer, layer, follower = opened
    follower.lock(3)
    settle(qtbot, follower)
    assert follower.level == 3
    zoom = viewer.scene.camera.zoom
    for factor in (4, 20, 1):
        viewer.scene.camera.zoom = zoom * factor
        settle(qtbot, follower)
        assert follower.level == 3
    follower.lock(None)
    viewer.scene.camera.zoom = zoom * 20
    settle(qtbot, follower)
    assert follower.level == 0


def test_two_quick_moves_show_only_the_second(opened, qtbot):
    viewer, layer, follower = opened
    zoom = viewer.canvas.size[1] / 100.0
    applied = []
    follower.on_change(lambda f: applied.append(shown_store_positions(f.layer).mean(0)))

    # within the debounce interval: one read, one swap
    viewer.scene.camera.zoom = zoom
    viewer.scene.camera.center = (500.0, 500.0)
    viewer.scene.camera.center = (1500.0, 1500.0)
    settle(qtbot, follower)
    assert len(applied) == 1
    np.testing.assert_allclose(applied[-1], [1500.0, 1500.0], atol=10)

    # the first move's read still in flight when the second starts: the first is dropped
    real_update = follower.lod.update

    calls = []

    def slow_first(view, generation, colouring=None):
        calls.append(generation)
        if len(calls) == 1:
            time.sleep(0.6)
        return real_update(view, generation, colouring)

    follower.lod.update = slow_first
    applied.clear()
    stale = follower.stale
    viewer.scene.camera.center = (300.0, 300.0)
    qtbot.waitUntil(lambda: follower.busy == 1, timeout=5000)  # first read started (and sleeping)
    viewer.scene.camera.center = (1700.0, 300.0)  # napari order: y, x
    settle(qtbot, follower)
    np.testing.assert_allclose(shown_store_positions(layer).mean(0), [300.0, 1700.0], atol=10)
    assert all(abs(a[1] - 1700.0) < 10 for a in applied)  # nothing from the first move was ever shown
    assert follower.stale + (len(applied) == 1) >= stale + 1


def test_a_build_adds_levels_while_open(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv(lod.BUDGET_ENV, "20000")
    path = samples.make_point_cloud(
        tmp_path / "grow.zv", n=60_000, extent=1000.0, chunk=100.0, bin_size=5.0, factors=None, ndim=2
    )
    viewer = make_napari_viewer()
    *_, layer = viewer.open(str(path), plugin=PLUGIN)
    follower = _follow.follower_of(layer)
    settle(qtbot, follower)
    # the only level, over the budget: an even subsample of it (test_flat_store.py)
    assert follower.level == 0 and len(layer.data) == 20_000 and follower.state.sampled_from == 60_000
    pyramid.build_pyramid(path, [(2.0, 1.0), (2.0, 1.0)])
    _follow.levels_changed(str(path))  # what the build widget says when its worker is done
    settle(qtbot, follower)
    # a level per region: the structured sample's sparse regions stay at level 0, its dense ones take level 1
    assert follower.levels_shown == (0, 1) and len(layer.data) <= 20_000
    assert layer.metadata[METADATA_KEY]["levels"] == [0, 1, 2]
    assert layer.metadata[METADATA_KEY]["levels_shown"] == [0, 1]


def test_removed_layer_stops_following(opened, qtbot):
    viewer, layer, follower = opened
    viewer.layers.remove(layer)
    assert follower.detached
    viewer.scene.camera.zoom *= 3
    qtbot.wait(250)
    assert follower.idle


def test_streamlines_follow_as_vectors(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv(lod.BUDGET_ENV, "50000")  # levels 0 and 1 draw ~66k and ~56k: level 2 at first
    path = samples.make_streamlines(tmp_path / "lines.zv", n=800)
    viewer = make_napari_viewer()
    *_, layer = viewer.open(str(path), plugin=PLUGIN)
    follower = _follow.follower_of(layer)
    assert type(layer).__name__ == "Vectors"
    settle(qtbot, follower)
    coarse = follower.level
    # off the middle, where every walk starts: a box there would hold a piece of nearly every streamline
    viewer.scene.camera.center = (250.0, 250.0, 250.0)
    viewer.scene.camera.zoom *= 12
    settle(qtbot, follower)
    assert follower.level < coarse
    assert 0 < follower.vertex_count <= 50_000
    assert layer.edge_color.shape == (len(layer.data), 4)


def test_size_slider_shows_the_size_drawn(make_napari_viewer, qtbot, small_points_2d):
    """The swap sets sizes with the layer's events blocked; the layer controls still show the new size."""
    viewer = make_napari_viewer()
    *_, layer = viewer.open(str(small_points_2d), plugin=PLUGIN)
    follower = _follow.follower_of(layer)
    settle(qtbot, follower)
    follower.lock(3)
    settle(qtbot, follower)
    follower.lock(1)  # a finer level: smaller markers
    settle(qtbot, follower)
    slider = viewer.window._qt_viewer.controls.widgets[layer]._current_size_slider_control.size_slider
    assert follower.swaps >= 2 and np.allclose(layer.size, layer.current_size)
    assert abs(slider.value() - layer.current_size) <= 0.5, (slider.value(), layer.current_size)


def test_a_label_keeps_its_colour_through_level_swaps(make_napari_viewer, qtbot, tmp_path):
    path = samples.make_point_cloud(tmp_path / "cells.zv", 40_000, extent=1000.0, chunk=100.0, bin_size=10.0, ndim=2)
    viewer = make_napari_viewer()
    *_, layer = viewer.open(str(path), plugin=PLUGIN)
    follower = _follow.follower_of(layer)
    colours = {}
    for level in (3, 1, 0):
        follower.lock(level)
        settle(qtbot, follower)
        assert follower.level == level
        labels = layer.features["label"].to_numpy()
        for value in np.unique(labels):
            shown = np.unique(layer.face_color[labels == value].round(3), axis=0)
            assert len(shown) == 1  # one colour per label
            assert np.allclose(colours.setdefault(int(value), shown[0]), shown[0]), (level, value)
    assert len(colours) == samples.N_CELLS + samples.N_FIBRES


def test_a_swapped_layer_equals_a_fresh_layer_of_its_region(opened, qtbot):
    """Data, features, face colours, size and symbol after a swap are what a new layer of that region shows."""
    import napari
    import pandas as pd

    from napari_zarr_vectors import layers, store

    viewer, layer, follower = opened
    viewer.scene.camera.center = (800.0, 1200.0)
    viewer.scene.camera.zoom = viewer.canvas.size[1] / (0.1 * 2000.0)
    settle(qtbot, follower)
    assert follower.swaps >= 2 and follower.level == 0
    info = store.open_info(follower.path)
    region = store.LevelData(
        info.kind,
        follower.level,
        np.asarray(layer.data)[:, ::-1],
        {k: layer.features[k].to_numpy() for k in layer.features},
    )
    data, kwargs, _ = layers.points_layer(info, region, "fresh", BUDGET)
    fresh = napari.layers.Points(data, **kwargs)
    np.testing.assert_array_equal(layer.data, fresh.data)
    pd.testing.assert_frame_equal(layer.features, fresh.features)
    np.testing.assert_array_equal(layer.face_color, fresh.face_color)
    assert layer.face_color_mode == fresh.face_color_mode
    np.testing.assert_allclose(layer.size, fresh.size)
    assert list(layer.symbol) == list(fresh.symbol)
    np.testing.assert_array_equal(layer.shown, fresh.shown)
    # selecting and deleting points still keeps every per-point array in step
    layer.selected_data = {0, 1, 2}
    layer.remove_selected()
    assert len(layer.data) == len(layer.face_color) == len(layer.features) == len(layer.size) == len(fresh.data) - 3


def test_the_swap_follows_a_colormap_attribute_with_its_limits(make_napari_viewer, qtbot, tmp_path):
    """A float-coloured layer keeps its contrast limits; a cycle value first seen after a swap gets napari's colour."""
    import napari

    path = samples.make_uniform_point_cloud(
        tmp_path / "f.zv", n=40_000, extent=1000.0, chunk=100.0, bin_size=10.0, factors=[(2.0, 1.0)] * 2, ndim=2
    )
    viewer = make_napari_viewer()
    *_, layer = viewer.open(str(path), plugin=PLUGIN)
    follower = _follow.follower_of(layer)
    settle(qtbot, follower)
    layer.face_color = "intensity"  # colormap mode, as a user would switch it
    layer.face_contrast_limits = (0.2, 0.7)
    for level in (2, 0):
        follower.lock(level)
        settle(qtbot, follower)
        assert follower.level == level
        fresh = napari.layers.Points(
            layer.data, features=layer.features, face_color="intensity", face_contrast_limits=(0.2, 0.7)
        )
        assert layer.face_color_mode == "colormap" and tuple(layer.face_contrast_limits) == (0.2, 0.7)
        np.testing.assert_array_equal(layer.face_color, fresh.face_color)
