"""Polylines read by box in whole arrays (``store.read_polyline_box``), against upstream's reader, on real stores."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from zarr_vectors import building
from zarr_vectors.core import arrays as A
from zarr_vectors.types.polylines import read_polylines

from napari_zarr_vectors import lod, pyramid, samples, store
from napari_zarr_vectors._qt import follow as _follow

PLUGIN = "napari-zarr-vectors"
FACTORS = [(2.0, 1.0), (2.0, 2.0)]


@pytest.fixture(scope="module")
def lines_store(tmp_path_factory):
    """150 random walks written by upstream (vertex and object attributes), with a per_object pyramid."""
    rng = np.random.default_rng(3)
    lines = [(rng.normal(0, 25, (int(rng.integers(20, 90)), 3)).cumsum(0) + 400).astype(np.float32) for _ in range(150)]
    path = tmp_path_factory.mktemp("box") / "walks.zv"
    building.write_polylines(
        str(path),
        lines,
        chunk_shape=(100.0,) * 3,
        bin_shape=(25.0,) * 3,
        geometry_type="streamline",
        vertex_attributes={"speed": [np.linalg.norm(np.gradient(x, axis=0), axis=1).astype(np.float32) for x in lines]},
        object_attributes={
            "length": np.array([len(x) for x in lines], np.float32),
            "bundle": rng.integers(0, 5, len(lines)).astype(np.int32),
        },
    )
    pyramid.build_pyramid(path, FACTORS, method="per_object")
    return path


def upstream_restricted(path, level, lo, hi, attribute=None):
    """Upstream's whole-object read, kept to the fragments in the chunks that can hold the box's vertices.

    Returns Counters of (object, vertex[, attribute]) and of (object, vertex, next vertex) for
    consecutive vertices both kept: what a box read must hold, with its connectivity.
    """
    shape = np.asarray(store.open_info(path).level(level).chunk_shape, float)
    raw = read_polylines(str(path), level=level)
    group = building.get_resolution_level(building.open_store(str(path)), level)
    manifests = A.read_object_manifests(group)
    values = raw["vertex_attributes"].get(attribute) if attribute else None
    verts, edges, at = Counter(), Counter(), 0
    for oid, fragments in zip(raw["object_ids"], raw["polylines"], strict=True):
        chunks = [np.asarray(cc, float) for cc, _ in manifests[oid]]
        assert len(chunks) == len(fragments)
        line = np.concatenate(fragments)
        chunk = np.concatenate([np.repeat(c[None], len(f), 0) for c, f in zip(chunks, fragments, strict=True)])
        keep = np.all(((chunk + 1) * shape > lo) & (chunk * shape <= hi), axis=1)
        extra = values[at : at + len(line)] if values is not None else [None] * len(line)
        at += len(line)
        for v, x, k in zip(line.tolist(), list(extra), keep.tolist(), strict=True):
            if k:
                verts[(oid, tuple(v)) if attribute is None else (oid, tuple(v), float(x))] += 1
        for a, b in zip(line[:-1][keep[:-1] & keep[1:]].tolist(), line[1:][keep[:-1] & keep[1:]].tolist(), strict=True):
            edges[(oid, tuple(a), tuple(b))] += 1
    return verts, edges


def counted(data, attribute=None):
    """The same Counters for a ``LevelData`` read."""
    verts, edges = Counter(), Counter()
    values = data.vertex_attributes.get(attribute) if attribute else None
    for k, (oid, part) in enumerate(zip(data.part_objects.tolist(), data.parts(), strict=True)):
        a, b = data.offsets[k], data.offsets[k + 1]
        for i, v in enumerate(part.tolist()):
            verts[(oid, tuple(v)) if attribute is None else (oid, tuple(v), float(values[a + i]))] += 1
        for u, w in zip(part[:-1].tolist(), part[1:].tolist(), strict=True):
            edges[(oid, tuple(u), tuple(w))] += 1
        assert b - a == len(part)
    return verts, edges


BOXES = [
    ([350.0, 350.0, 350.0], [450.0, 450.0, 450.0]),  # the middle, where every walk starts
    ([480.0, 300.0, 200.0], [700.0, 520.0, 430.0]),  # off the middle, faces between chunks
    ([0.0, 0.0, 0.0], [200.0, 200.0, 200.0]),  # a corner, touching chunk faces exactly
]


@pytest.mark.parametrize("level", [0, 1, 2])
@pytest.mark.parametrize("box", BOXES)
def test_box_read_is_upstreams_whole_objects_restricted_to_the_box_chunks(lines_store, level, box):
    lo, hi = (np.asarray(v) for v in box)
    data = store.read_polyline_box(lines_store, level, (lo, hi), kind="streamline", clip=False)
    want_v, want_e = upstream_restricted(lines_store, level, lo, hi)
    got_v, got_e = counted(data)
    assert got_v == want_v and got_e == want_e
    assert data.vertex_count == sum(want_v.values()) > 0
    assert len(data.offsets) == len(data.part_objects) + 1 and data.offsets[-1] == data.vertex_count
    if level > 0:  # per_object coarse levels share metavertices between objects: the case the index must count
        assert store.polyline_index(lines_store, level).sharing > 1


@pytest.mark.parametrize("box", BOXES[:2])
def test_vertex_and_object_attributes_follow_the_vertices_and_parts(lines_store, box):
    lo, hi = (np.asarray(v) for v in box)
    data = store.read_polyline_box(lines_store, 0, (lo, hi), kind="streamline", clip=False)
    assert set(data.vertex_attributes) == {"speed"} and len(data.vertex_attributes["speed"]) == data.vertex_count
    assert counted(data, "speed")[0] == upstream_restricted(lines_store, 0, lo, hi, "speed")[0]
    assert set(data.object_attributes) == {"length", "bundle"}
    for name in ("length", "bundle"):
        dense = store.read_object_attribute_table(lines_store, 0, name)
        np.testing.assert_array_equal(data.object_attributes[name], dense[data.part_objects])
    narrow = store.read_polyline_box(
        lines_store, 0, (lo, hi), clip=False, vertex_attributes=(), object_attributes=("bundle",)
    )
    assert narrow.vertex_attributes == {} and set(narrow.object_attributes) == {"bundle"}
    np.testing.assert_array_equal(narrow.positions, data.positions)


@pytest.mark.parametrize("level", [0, 1, 2])
def test_whole_objects_are_upstreams_bbox_read(lines_store, level):
    lo, hi = np.array([480.0, 300.0, 200.0]), np.array([700.0, 520.0, 430.0])
    ours = store.read_polyline_box(lines_store, level, (lo, hi), kind="streamline", whole_objects=True, clip=False)
    theirs = store.read_level(lines_store, level, kind="streamline", bbox=(lo, hi))
    np.testing.assert_array_equal(ours.part_objects, theirs.part_objects)
    np.testing.assert_array_equal(ours.offsets, theirs.offsets)
    np.testing.assert_array_equal(ours.positions, theirs.positions)
    for name, values in theirs.object_attributes.items():
        np.testing.assert_array_equal(ours.object_attributes[name], values)


@pytest.mark.parametrize("level", [0, 1])
def test_clipping_keeps_what_meets_the_box_and_drops_the_rest(lines_store, level):
    lo, hi = np.array([420.0, 380.0, 360.0]), np.array([470.0, 430.0, 440.0])  # smaller than a chunk
    full = store.read_polyline_box(lines_store, level, (lo, hi), clip=False)
    cut = store.read_polyline_box(lines_store, level, (lo, hi))
    assert 0 < cut.vertex_count < full.vertex_count
    full_v, full_e = counted(full)
    cut_v, cut_e = counted(cut)
    assert not cut_v - full_v and not cut_e - full_e  # pieces of what the chunks hold, nothing made up
    inside = lambda v: bool(np.all((np.asarray(v) >= lo) & (np.asarray(v) <= hi)))  # noqa: E731
    assert all(cut_v[key] == n for key, n in full_v.items() if inside(key[1]))  # every vertex in the box
    assert all(cut_e[key] == n for key, n in full_e.items() if inside(key[1]) or inside(key[2]))
    for part in cut.parts():  # every segment drawn meets the box; a lone vertex lies in it
        if len(part) > 1:
            a, b = np.minimum(part[:-1], part[1:]), np.maximum(part[:-1], part[1:])
            assert np.all((b >= lo) & (a <= hi))
        else:
            assert inside(part[0])
    dense = store.read_object_attribute_table(lines_store, level, "length")
    np.testing.assert_array_equal(cut.object_attributes["length"], dense[cut.part_objects])


def test_an_empty_box_gives_empty_arrays(lines_store):
    far = (np.array([5000.0, 5000.0, 5000.0]), np.array([5100.0, 5100.0, 5100.0]))
    for clip in (True, False):
        data = store.read_polyline_box(lines_store, 0, far, kind="streamline", clip=clip)
        assert data.positions.shape == (0, 3) and data.vertex_count == 0
        np.testing.assert_array_equal(data.offsets, [0])
        assert len(data.part_objects) == 0 and data.parts() == []
        assert {k: len(v) for k, v in data.vertex_attributes.items()} == {"speed": 0}
        assert {k: len(v) for k, v in data.object_attributes.items()} == {"length": 0, "bundle": 0}


def test_two_dimensional_polylines(tmp_path):
    rng = np.random.default_rng(5)
    lines = [rng.normal(0, 20, (int(rng.integers(10, 60)), 2)).cumsum(0) + 300 for _ in range(60)]
    path = store.write_polyline_store(tmp_path / "flat.zv", lines, chunk_shape=(100.0, 100.0), bin_shape=(25.0, 25.0))
    lo, hi = np.array([250.0, 280.0]), np.array([390.0, 330.0])
    data = store.read_polyline_box(path, 0, (lo, hi), clip=False)
    assert data.positions.shape[1] == 2
    assert counted(data) == upstream_restricted(path, 0, lo, hi)


def test_zooming_into_streamlines_draws_only_the_pieces_in_the_read_box(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    monkeypatch.setenv(lod.BUDGET_ENV, "50000")
    path = samples.make_streamlines(tmp_path / "lines.zv", n=800)
    viewer = make_napari_viewer()
    *_, layer = viewer.open(str(path), plugin=PLUGIN)
    follower = _follow.follower_of(layer)
    assert type(layer).__name__ == "Vectors"
    qtbot.waitUntil(lambda: follower.idle, timeout=20_000)
    coarse = follower.level
    viewer.scene.camera.center = (250.0, 250.0, 250.0)
    viewer.scene.camera.zoom *= 12
    qtbot.waitUntil(lambda: follower.idle, timeout=20_000)
    level, box = follower.lod.shown
    assert follower.level == level < coarse
    assert ("line index", level) in follower.lod.cache  # read through the box reader's manifest table
    segments = np.asarray(layer.data)
    assert len(segments) > 0
    start = segments[:, 0, ::-1]  # napari (z, y, x) -> store (x, y, z)
    end = start + segments[:, 1, ::-1]
    a, b = np.minimum(start, end), np.maximum(start, end)
    tol = 1e-3 * float(np.max(box.hi - box.lo))
    assert np.all((b >= box.lo - tol) & (a <= box.hi + tol))  # every segment drawn meets the box read
    whole = store.read_polyline_box(path, level, (box.lo, box.hi), whole_objects=True, clip=False)
    assert 0 < follower.vertex_count < whole.vertex_count  # the whole objects would have drawn more
    assert set(layer.features["object_id"]) <= set(whole.part_objects.tolist())
