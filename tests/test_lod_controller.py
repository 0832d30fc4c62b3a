"""The Qt-free level-of-detail controller on real stores: level choice, region reads, staleness, cache."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from napari_zarr_vectors import colouring, lod, pyramid, samples, store


def view_of(center_xy, width, canvas=(600, 800), ndim=2):
    """A 2D view showing ``width`` store units across the canvas, centred on (x, y)."""
    zoom = canvas[1] / width
    return lod.View(
        center=(float(center_xy[1]), float(center_xy[0])),
        zoom=zoom,
        canvas_size=canvas,
        ndisplay=2,
        displayed=(0, 1),
        point=(0.0,) * ndim,
        scale=(1.0,) * ndim,
        translate=(0.0,) * ndim,
    )


def run(ctl, view):
    region = ctl.update(view, ctl.request())
    if region is not None:
        assert ctl.accept(region)
    return region


def test_cache_is_bounded_in_bytes_and_drops_least_recent():
    cache = lod.ChunkCache(max_bytes=1000)
    for i in range(5):
        cache.put(i, np.zeros(50, np.float32), 200)  # 5 x 200 = the bound exactly
    assert len(cache) == 5 and cache.nbytes == 1000
    cache.get(0)  # 0 becomes the most recent
    cache.put("new", np.zeros(1), 300)  # 1 and 2 must go (the least recent)
    assert 0 in cache and "new" in cache and 1 not in cache and 2 not in cache
    assert cache.nbytes <= 1000
    cache.put("huge", np.zeros(1), 5000)  # larger than the cache: kept out, nothing flushed
    assert "huge" not in cache and 0 in cache


def test_zoom_in_reads_a_finer_level_only_inside_the_box(small_points_2d):
    ctl = lod.LevelOfDetail(str(small_points_2d), "point_cloud", budget=5_000)
    whole = run(ctl, view_of((500, 500), 1400))
    assert whole.level == 2 and whole.vertex_count <= 5_000  # 10k at level 1 does not fit
    close = run(ctl, view_of((300, 700), 60))  # 6% of the width
    assert close.level == 0
    assert 0 < close.vertex_count <= 5_000
    np.testing.assert_allclose(ctl.box_for(view_of((300, 700), 60), 0).lo, close.box.lo)
    assert close.box.contains(close.positions).all()
    # every level-0 vertex of the box is there: compare with a brute-force read
    everything = store.read_level(str(small_points_2d), 0, kind="point_cloud")
    inside = close.box.contains(everything.positions)
    assert close.vertex_count == int(inside.sum())
    assert sorted(close.vertex_attributes) == ["intensity", "label"]
    back = run(ctl, view_of((500, 500), 1400))
    assert back.level == 2


def test_a_view_still_covered_needs_no_read(small_points_2d):
    ctl = lod.LevelOfDetail(str(small_points_2d), "point_cloud", budget=20_000)
    run(ctl, view_of((300, 700), 60))
    reads = ctl.reads
    assert run(ctl, view_of((302, 700), 60)) is None  # moved 2 units: still inside the margin
    far = run(ctl, view_of((330, 700), 60))  # half a view away: new data, from cache where possible
    assert far is not None and far.level == 0
    assert ctl.reads - reads <= 2  # at most the newly touched chunks


def test_only_the_newest_request_is_shown(small_points_2d):
    ctl = lod.LevelOfDetail(str(small_points_2d), "point_cloud", budget=20_000)
    first = ctl.request()
    second = ctl.request()
    assert ctl.update(view_of((300, 700), 60), first) is None  # stale before it started
    late = ctl.update(view_of((300, 700), 60), second)
    ctl.request()  # a third move arrives while the second's read was in flight
    assert not ctl.accept(late)
    assert ctl.shown is None


def test_lock_holds_through_zooms(small_points_2d):
    ctl = lod.LevelOfDetail(str(small_points_2d), "point_cloud", budget=5_000)
    run(ctl, view_of((500, 500), 1400))
    ctl.lock(3)
    ctl.forget_shown()
    assert run(ctl, view_of((300, 700), 60)).level == 3
    assert run(ctl, view_of((500, 500), 1400)).level == 3
    with pytest.raises(ValueError, match="not one of"):
        ctl.lock(7)
    ctl.lock(None)
    assert run(ctl, view_of((300, 700), 60)).level == 0


def test_never_finer_than_a_bin_per_pixel(small_points_2d):
    one = lod.LevelOfDetail(str(small_points_2d), "point_cloud", budget=10**9, per_region=False)
    # 800 px across 8,000 units: 10 units a pixel, so 5-unit bins (level 0) are invisible detail
    assert run(one, view_of((500, 500), 8000)).level == 1
    # per region, the screen-space criterion: level 1 leaves a pixel a vertex; 4 pixels a vertex asks for level 2
    regional = lod.LevelOfDetail(str(small_points_2d), "point_cloud", budget=10**9)
    assert run(regional, view_of((500, 500), 8000)).levels_shown == (1,)
    strict = lod.LevelOfDetail(str(small_points_2d), "point_cloud", budget=10**9, pixels_per_vertex=4.0)
    assert run(strict, view_of((500, 500), 8000)).levels_shown == (2,)


def test_new_levels_are_picked_up_without_reopening(tmp_path):
    path = samples.make_point_cloud(
        tmp_path / "grow.zv", n=60_000, extent=1000.0, chunk=100.0, bin_size=5.0, factors=None, ndim=2
    )
    ctl = lod.LevelOfDetail(str(path), "point_cloud", budget=20_000)
    assert run(ctl, view_of((500, 500), 1400)).level == 0  # the only level, over budget
    pyramid.build_pyramid(path, [(2.0, 1.0), (2.0, 1.0)])
    region = run(ctl, view_of((500, 501), 1400))
    assert [g.index for g in ctl.levels] == [0, 1, 2]
    # the structured sample: its sparse regions stay at level 0, its dense ones take the new level 1
    assert region.levels_shown == (0, 1) and region.vertex_count <= 20_000
    ctl.lock(2)
    pyramid.remove_resolution_level(path, 2)
    run(ctl, view_of((500, 500), 1400))
    assert [g.index for g in ctl.levels] == [0, 1]
    assert ctl.locked is None  # the locked level went away: automatic again


def test_polylines_read_the_pieces_in_the_box_or_whole_objects_and_respect_a_path_budget(upstream_stores, tmp_path):
    path = tmp_path / "lines.zv"
    shutil.copytree(upstream_stores["streamline"], path)
    full = store.read_level(str(path), 0, kind="streamline")
    ctl = lod.LevelOfDetail(str(path), "streamline", budget=10**6, path_budget=10**6)
    view = lod.View(
        center=(650.0, 650.0, 650.0),  # off the middle, where every walk starts
        zoom=800 / 80,
        canvas_size=(600, 800),
        ndisplay=3,
        displayed=(0, 1, 2),
        point=(500.0, 500.0, 500.0),
        scale=(1.0, 1.0, 1.0),
        translate=(0.0, 0.0, 0.0),
    )
    region = run(ctl, view)
    assert region.level == 0 and 0 < region.vertex_count < full.vertex_count
    # the camera refine draws pieces: every segment meets the box read, every vertex is one of its object's
    by_id = dict(zip(full.part_objects.tolist(), full.parts(), strict=True))
    box = region.box
    for oid, part in zip(region.part_objects.tolist(), region.parts(), strict=True):
        whole = {tuple(v) for v in by_id[oid].tolist()}
        assert {tuple(v) for v in part.tolist()} <= whole
        if len(part) > 1:
            lo, hi = np.minimum(part[:-1], part[1:]), np.maximum(part[:-1], part[1:])
            assert np.all((hi >= box.lo) & (lo <= box.hi))
        else:
            assert box.contains(part).all()
    assert len(set(region.part_objects.tolist())) < len(full.part_objects)
    # whole objects on request: every polyline with a fragment in the box's chunks, end to end
    ends = lod.LevelOfDetail(str(path), "streamline", budget=10**6, path_budget=10**6)
    ends.whole_objects = True
    whole_region = run(ends, view)
    assert whole_region.level == 0 and whole_region.vertex_count > region.vertex_count
    for oid, part in zip(whole_region.part_objects.tolist(), whole_region.parts(), strict=True):
        np.testing.assert_allclose(part, by_id[oid])  # the whole polyline, not a clipped piece
    assert set(region.part_objects.tolist()) <= set(whole_region.part_objects.tolist())
    assert len(whole_region.part_objects) < len(full.part_objects)
    tight = lod.LevelOfDetail(str(path), "streamline", budget=10**6, path_budget=5)
    coarse = run(tight, view)
    assert coarse.level > 0  # level 0 has more than 5 paths in view


def _rgba_keys(ctl):
    return {k for k in ctl.cache._items if isinstance(k, tuple) and k[0] == "rgba"}


def test_colours_are_mapped_per_chunk_and_kept_with_it(small_points_2d):
    from napari.utils.colormaps import ensure_colormap

    cycle = {
        "mode": "cycle",
        "name": "label",
        "mapping": {i: np.array([i / 16, 0.5, 1 - i / 16, 1], np.float32) for i in range(16)},
    }
    ctl = lod.LevelOfDetail(str(small_points_2d), "point_cloud", budget=20_000)
    first = ctl.update(view_of((300, 700), 60), ctl.request(), colouring=cycle)
    assert ctl.accept(first)
    np.testing.assert_array_equal(first.face_colors, colouring.point_colours(first.vertex_attributes, cycle))
    mapped, reads = _rgba_keys(ctl), ctl.reads
    assert 0 < len(mapped) <= reads  # one mapping per chunk read
    far = ctl.update(view_of((330, 700), 60), ctl.request(), colouring=cycle)
    np.testing.assert_array_equal(far.face_colors, colouring.point_colours(far.vertex_attributes, cycle))
    assert len(_rgba_keys(ctl) - mapped) == ctl.reads - reads  # only the newly read chunks were mapped

    ramp = {
        "mode": "colormap",
        "name": "intensity",
        "colormap": ensure_colormap("viridis"),
        "contrast_limits": (0.0, 1.0),
    }
    ctl.forget_shown()
    region = ctl.update(view_of((300, 700), 60), ctl.request(), colouring=ramp)
    np.testing.assert_allclose(region.face_colors, colouring.point_colours(region.vertex_attributes, ramp))

    unseen = dict(cycle, mapping={k: v for k, v in cycle["mapping"].items() if k != 3})
    ctl.forget_shown()
    assert ctl.update(view_of((300, 700), 60), ctl.request(), colouring=unseen).face_colors is None  # GUI maps
