"""A level per region (issue 18, item 3): sparse regions show raw vertices, dense ones metanodes, in one layer."""

from __future__ import annotations

import numpy as np
import pytest

from napari_zarr_vectors import lod, samples, store
from napari_zarr_vectors._qt import follow as _follow
from napari_zarr_vectors.layers import METADATA_KEY

BUDGET = 6_000
EXTENT = 1000.0
CHUNK = 100.0


@pytest.fixture(scope="module")
def clustered(tmp_path_factory):
    """Two dense blobs (40,000 points each) in 4,000 uniform points; levels bin 2 / 8 / 32 / 128."""
    path = tmp_path_factory.mktemp("clustered") / "clustered.zv"
    return samples.make_clustered_point_cloud(
        path, background=4_000, blobs=2, per_blob=40_000, sigma=60.0, extent=EXTENT, chunk=CHUNK, bin_size=2.0
    )


def whole_view(canvas=(600, 800)) -> lod.View:
    width = 1.1 * EXTENT
    return lod.View(
        center=(EXTENT / 2, EXTENT / 2),
        zoom=canvas[1] / width,
        canvas_size=canvas,
        ndisplay=2,
        displayed=(0, 1),
        point=(0.0, 0.0),
        scale=(1.0, 1.0),
        translate=(0.0, 0.0),
    )


def tile_counts(path, level=0):
    """Level-0 vertices per level-0 chunk (the regions): {chunk: count}."""
    coords, counts = store.chunk_vertex_counts(str(path), level)
    return {tuple(int(c) for c in k): int(n) for k, n in zip(coords, counts, strict=True)}


def in_tile(positions, tile):
    lo = np.asarray(tile, float) * CHUNK
    return np.all((positions >= lo) & (positions < lo + CHUNK), axis=1)


# ---------------------------------------------------------------- the plan, without a store


def grids_one_dense_chunk(dense=50_000, sparse=50):
    """Level 0: 10x10 chunks of 100 units, 50 vertices each but (5, 5) with 50,000; level 1: bins 10, chunks 200."""
    coords0 = np.array([(i, j) for i in range(10) for j in range(10)], np.int64)
    counts0 = np.where((coords0 == (5, 5)).all(axis=1), dense, sparse)
    coords1 = np.array([(i, j) for i in range(5) for j in range(5)], np.int64)
    counts1 = np.where((coords1 == (2, 2)).all(axis=1), 3 * sparse + 100, 4 * sparse)  # (2,2) holds (5,5)
    return [
        lod.LevelGrid(0, (1.0, 1.0), (100.0, 100.0), coords0, counts0),
        lod.LevelGrid(1, (10.0, 10.0), (200.0, 200.0), coords1, counts1),
    ]


def test_plan_keeps_sparse_regions_raw_and_makes_the_dense_one_coarse():
    grids = grids_one_dense_chunk()
    box = lod.Box(np.zeros(2), np.full(2, 1000.0))
    plan = lod.plan_regions(grids, box, budget=20_000, data_per_pixel=1.0, displayed=(0, 1))
    assert plan.levels.shape == (10, 10)
    assert plan.levels[5, 5] == 1  # 50,000 vertices on 10,000 pixels: more than a vertex a pixel
    assert (np.delete(plan.levels.ravel(), 55) == 0).all()  # 50 on 10,000 pixels: raw
    assert plan.estimate <= 20_000
    assert plan.level_of(np.array([[550.0, 550.0], [10.0, 990.0], [5000.0, 5.0]])).tolist() == [1, 0, -1]


def test_plan_budget_turns_dense_regions_coarse_first():
    grids = grids_one_dense_chunk(dense=5_000, sparse=200)  # level 0 everywhere: 24,800 vertices
    box = lod.Box(np.zeros(2), np.full(2, 1000.0))
    roomy = lod.plan_regions(grids, box, budget=30_000, data_per_pixel=1.0, displayed=(0, 1))
    assert (roomy.levels == 0).all()
    tight = lod.plan_regions(grids, box, budget=20_000, data_per_pixel=1.0, displayed=(0, 1))
    assert tight.levels[5, 5] == 1 and (np.delete(tight.levels.ravel(), 55) == 0).all()
    assert tight.estimate <= 20_000 < roomy.estimate
    assert tight.pixels_per_vertex > lod.DEFAULT_PIXELS_PER_VERTEX  # the criterion was raised to fit


def test_plan_hysteresis_keeps_a_region_at_a_threshold():
    grids = grids_one_dense_chunk(dense=10_500, sparse=50)  # (5, 5): 1.05 vertices a pixel at level 0
    box = lod.Box(np.zeros(2), np.full(2, 1000.0))
    fresh = lod.plan_regions(grids, box, budget=10**6, data_per_pixel=1.0, displayed=(0, 1))
    assert fresh.levels[5, 5] == 1
    was_raw = lod.RegionPlan(fresh.tile_shape, fresh.origin, np.zeros_like(fresh.levels), 0.0, 1.0)
    kept = lod.plan_regions(grids, box, budget=10**6, data_per_pixel=1.0, displayed=(0, 1), current=was_raw)
    assert kept.levels[5, 5] == 0  # within 15% of the criterion: what is shown stays


def test_a_wide_view_plans_on_bigger_regions():
    grids = grids_one_dense_chunk()
    box = lod.Box(np.full(2, -1e6), np.full(2, 1e6))  # clipped to the data: 10 x 10 regions
    assert lod.plan_regions(grids, box, budget=10**6, data_per_pixel=1.0, displayed=(0, 1)).levels.shape == (10, 10)
    fine = [lod.LevelGrid(0, (1.0,) * 2, (1.0,) * 2, np.array([(0, 0), (199, 199)]), np.array([5, 5]))]
    plan = lod.plan_regions(
        fine, lod.Box(np.zeros(2), np.full(2, 200.0)), budget=100, data_per_pixel=1.0, displayed=(0, 1)
    )
    assert np.prod(plan.levels.shape) <= lod.MAX_REGIONS and plan.tile_shape[0] > 1.0


# ---------------------------------------------------------------- the controller, on a real clustered store


def test_clustered_store_whole_shows_raw_background_and_coarse_blobs(clustered):
    ctl = lod.LevelOfDetail(str(clustered), "point_cloud", budget=BUDGET)
    region = ctl.update(whole_view(), ctl.request())
    assert ctl.accept(region)
    assert region.vertex_count <= BUDGET
    assert len(region.levels_shown) > 1 and region.levels_shown[0] == 0
    level0 = store.read_level(str(clustered), 0, kind="point_cloud")
    counts = tile_counts(clustered)
    sparse = [t for t, n in counts.items() if n <= 80]  # background only: 40 a region on average
    dense = [t for t, n in counts.items() if n >= 1_000]  # the blobs' cores
    assert len(sparse) >= 30 and len(dense) >= 4
    for tile in sparse:  # exactly the level-0 vertices there
        here = in_tile(region.positions, tile)
        assert (region.point_levels[here] == 0).all()
        got = np.sort(region.positions[here].view([("x", "f4"), ("y", "f4")]).ravel())
        want = np.sort(level0.positions[in_tile(level0.positions, tile)].view([("x", "f4"), ("y", "f4")]).ravel())
        assert np.array_equal(got, want)
    for tile in dense:  # metanodes: a coarse level, far fewer vertices than the raw ones
        here = in_tile(region.positions, tile)
        assert here.any() and (region.point_levels[here] >= 1).all()
        assert here.sum() < counts[tile] / 20
    # attributes come along for every vertex, whichever level it is from
    assert set(region.vertex_attributes) == {"intensity", "label"}
    assert all(len(v) == region.vertex_count for v in region.vertex_attributes.values())
    # one level for the whole view (as before) shows far fewer vertices, the background aggregated too
    one = lod.LevelOfDetail(str(clustered), "point_cloud", budget=BUDGET, per_region=False)
    single = one.update(whole_view(), one.request())
    assert single.level >= 2 and single.vertex_count < region.vertex_count / 2


def test_a_locked_level_is_one_level_everywhere(clustered):
    ctl = lod.LevelOfDetail(str(clustered), "point_cloud", budget=BUDGET)
    ctl.lock(2)
    region = ctl.update(whole_view(), ctl.request())
    assert region.plan is None and region.levels_shown == (2,)
    assert region.vertex_count == store.open_info(str(clustered)).level(2).vertex_count


# ---------------------------------------------------------------- in napari


def test_one_layer_of_several_levels_and_no_hole_while_refining(make_napari_viewer, qtbot, clustered, monkeypatch):
    monkeypatch.setenv(lod.BUDGET_ENV, str(BUDGET))
    viewer = make_napari_viewer()
    viewer.window._qt_viewer.canvas.size = (600, 800)
    layers = viewer.open(str(clustered), plugin="napari-zarr-vectors")
    points = [ly for ly in layers if type(ly).__name__ == "Points"]
    assert len(points) == 1
    layer = points[0]
    follower = _follow.follower_of(layer)
    snapshots = []  # (data in store order, levels, view box) at every swap

    def record(f):
        if f.swaps > len(snapshots):
            box = f.view().box(0.0)
            snapshots.append((np.asarray(layer.data)[:, ::-1].copy(), f.point_levels, box))

    follower.on_change(record)
    viewer.reset_view()
    qtbot.waitUntil(lambda: follower.idle and follower.swaps >= 1, timeout=30_000)
    meta = layer.metadata[METADATA_KEY]
    assert len(meta["levels_shown"]) > 1 and meta["level"] == 0
    assert 0 < len(layer.data) <= BUDGET
    # each vertex drawn at its level's size: metanodes of a coarse level are bigger
    levels = follower.point_levels
    assert levels is not None and len(levels) == len(layer.data)
    sizes = np.asarray(layer.size)
    assert sizes[levels == 0].max() < sizes[levels == max(meta["levels_shown"])].min()

    # zoom into the densest region in steps: each swap replaces the previous view's vertices region by region
    counts = tile_counts(clustered)
    core = max(counts, key=counts.get)
    target = (np.asarray(core) + 0.5) * CHUNK  # store (x, y)
    viewer.scene.camera.center = (float(target[1]), float(target[0]))
    for width in (600.0, 300.0, 150.0, 75.0):
        viewer.scene.camera.zoom = viewer.canvas.size[1] / width
        qtbot.waitUntil(lambda: follower.idle, timeout=30_000)
    assert len(snapshots) >= 3
    for (before, _, _), (after, _, box) in zip(snapshots, snapshots[1:], strict=False):
        assert len(after) and len(after) <= BUDGET
        # every region of the new view that showed vertices before still shows some: no hole
        seen = {tuple(t) for t in np.floor(before[box.contains(before)] / CHUNK).astype(int)}
        now = {tuple(t) for t in np.floor(after / CHUNK).astype(int)}
        assert seen <= now, f"regions emptied by a swap: {sorted(seen - now)[:5]}"
    assert follower.levels_shown[0] == 0  # zoomed in, the blob's core shows its raw vertices


def test_docks_show_the_levels_and_drill_one_level_at_a_time(make_napari_viewer, qtbot, clustered, monkeypatch):
    from qtpy.QtCore import Qt

    monkeypatch.setenv(lod.BUDGET_ENV, str(BUDGET))
    viewer = make_napari_viewer()
    viewer.window._qt_viewer.canvas.size = (600, 800)
    layer = next(
        ly for ly in viewer.open(str(clustered), plugin="napari-zarr-vectors") if type(ly).__name__ == "Points"
    )
    follower = _follow.follower_of(layer)
    viewer.reset_view()
    qtbot.waitUntil(lambda: follower.idle and len(follower.levels_shown) > 1, timeout=30_000)
    shown = follower.levels_shown
    _, levels = viewer.window.add_plugin_dock_widget("napari-zarr-vectors", "Levels")
    qtbot.waitUntil(lambda: len(levels.layer_rows) == 1, timeout=5_000)
    assert levels.shown_text(0)[0] == f"{shown[0]}\u2013{shown[-1]}"
    assert levels.shown_text(0)[1] == f"{len(layer.data):,}"

    _, drill = viewer.window.add_plugin_dock_widget("napari-zarr-vectors", "Drill")
    point_levels = follower.point_levels
    coarse = int(np.flatnonzero(point_levels == shown[-1])[0])
    raw = int(np.flatnonzero(point_levels == shown[0])[0])

    def press_down():
        qtbot.mouseClick(drill.down_button.native, Qt.LeftButton)
        qtbot.waitUntil(lambda: not drill.busy, timeout=30_000)

    viewer.layers.selection.active = layer
    layer.selected_data = {coarse, raw}
    press_down()
    assert f"levels {shown[0]}, {shown[-1]}" in drill.last_error
    assert not any(ly.name.startswith("drill: ") for ly in viewer.layers)  # nothing was drilled
    layer.selected_data = {coarse}
    press_down()
    assert drill.last_error is None
    assert drill.breadcrumb.value.startswith(f"L{shown[-1]} (1) → L{shown[-1] - 1} (")
