"""Stores whose chunk grid does not start at 0 (issue 26, item 7).

zarr-vectors anchors each chunk array of a level at ``chunk_grid_origin =
floor(min corner / chunk shape)``: chunk ``k`` (grid coordinates, what the
presence manifests and links name) is stored in the array's cell ``k -
origin``.  The documented ``samples.make_point_cloud(..., n=20000)`` writes
such a store; box reads, chunk counts and remote requests must follow it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_zarr_vectors import lod, samples, store
from napari_zarr_vectors._serve import StoreServer


def _chunk_404s(server: StoreServer) -> list[str]:
    """Chunk files (``.../c/...``) the server was asked for but does not have (metadata probes 404 normally)."""
    return [r.path for r in server.requests if r.status == 404 and "/c/" in r.path]


def _origin(path: Path, level: int, array: str = "vertices") -> list[int]:
    meta = json.loads((path / str(level) / array / "zarr.json").read_text())
    return [int(v) for v in meta["attributes"].get("chunk_grid_origin") or []]


@pytest.fixture(scope="module")
def origin_points(tmp_path_factory) -> Path:
    """The docs' point cloud: 20,000 points, 4 levels, level 0's grid anchored at (0, 1, 0)."""
    return samples.make_point_cloud(tmp_path_factory.mktemp("origin") / "p.zv", n=20_000)


@pytest.fixture(scope="module")
def origin_points_2d(tmp_path_factory) -> Path:
    return samples.make_point_cloud(tmp_path_factory.mktemp("origin2d") / "p2.zv", n=20_000, ndim=2)


@pytest.fixture(scope="module")
def origin_lines(tmp_path_factory) -> Path:
    """Random-walk streamlines around 0: negative grid coordinates, an origin like (-8, -12, -8)."""
    return samples.make_streamlines(tmp_path_factory.mktemp("originl") / "s.zv", n=300)


def test_the_sample_stores_have_an_origin(origin_points, origin_points_2d, origin_lines):
    # the precondition of every other test here: were the origins all 0, they would test nothing
    assert any(_origin(origin_points, 0))
    assert any(_origin(origin_points_2d, 0))
    assert all(o < 0 for o in _origin(origin_lines, 0))


BOXES = [
    ([0.0, 0.0, 0.0], [800.0, 800.0, 800.0]),
    ([500.0, 300.0, 100.0], [1300.0, 900.0, 1900.0]),
    ([1500.0, 1500.0, 1500.0], [2000.0, 2000.0, 2000.0]),
    ([-100.0, -100.0, -100.0], [3000.0, 3000.0, 3000.0]),
]


def _sorted_rows(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float64)
    return a[np.lexsort(a.T[::-1])] if len(a) else a


@pytest.mark.parametrize("box", BOXES)
def test_box_reads_equal_a_filter_of_the_whole_level(origin_points, box):
    for level in store.list_levels(origin_points):
        whole = store.read_level(origin_points, level)
        inside = np.all((whole.positions >= box[0]) & (whole.positions <= box[1]), axis=1)
        got = store.read_level(origin_points, level, bbox=box)
        assert len(got.positions) == int(inside.sum())
        np.testing.assert_array_equal(_sorted_rows(got.positions), _sorted_rows(whole.positions[inside]))
        for name, values in got.vertex_attributes.items():
            assert len(values) == len(got.positions), name


def test_a_box_read_of_lines_with_a_negative_origin(origin_lines):
    box = ([-60.0, -60.0, -60.0], [60.0, 60.0, 60.0])
    got = store.read_polyline_box(origin_lines, 0, box)
    whole = store.read_level(origin_lines, 0)
    assert 0 < len(got.positions) < len(whole.positions)
    # every vertex drawn is a vertex of the level, and every level vertex inside the box is drawn
    have = {tuple(r) for r in np.round(got.positions, 4).tolist()}
    inside = np.all((whole.positions >= box[0]) & (whole.positions <= box[1]), axis=1)
    assert {tuple(r) for r in np.round(whole.positions[inside], 4).tolist()} <= have


def test_a_chunk_file_really_gone_is_named_by_its_grid_coordinates(origin_points, tmp_path):
    import shutil

    copy = tmp_path / "p.zv"
    shutil.copytree(origin_points, copy)
    origin = _origin(copy, 0)
    meta = json.loads((copy / "0" / "vertices" / "zarr.json").read_text())
    chunk = tuple(int(c) for c in meta["attributes"]["nonempty_chunks"][-1].split("."))
    cell = [c - o for c, o in zip(chunk, origin, strict=True)]
    (copy / "0" / "vertices" / "c").joinpath(*map(str, cell)).unlink()
    lo = np.asarray(chunk, float) * 200.0
    with pytest.raises(store.StoreError) as err:
        store.read_level(copy, 0, bbox=(lo + 1, lo + 199))
    text = str(err.value)
    assert "missing data on disk" in text
    assert f"vertices chunk ({', '.join(map(str, chunk))})" in text


@pytest.fixture
def served(origin_points, origin_points_2d, monkeypatch):
    monkeypatch.setenv("NAPARI_ZARR_VECTORS_TIMEOUT", "5")
    monkeypatch.setenv("NAPARI_ZARR_VECTORS_RETRIES", "0")
    assert origin_points.parent != origin_points_2d.parent
    store.forget_remote()
    with StoreServer(origin_points.parent) as server:
        yield server, server.url(origin_points.name)
    store.forget_remote()


def test_chunk_counts_over_http_equal_the_local_ones(served, origin_points):
    server, url = served
    for level in store.list_levels(origin_points):
        local = store.chunk_vertex_counts(origin_points, level)
        remote = store.chunk_vertex_counts(url, level)
        np.testing.assert_array_equal(remote[0], local[0])
        np.testing.assert_array_equal(remote[1], local[1])
    # every file asked for exists: no chunk was looked for at its grid coordinates instead of its cell
    assert not _chunk_404s(server)
    assert any("/0/vertices/c/" in r.path for r in server.requests)


def test_box_reads_over_http_equal_the_local_ones(served, origin_points):
    server, url = served
    box = BOXES[1]
    for level in (0, 1):
        local = store.read_level(origin_points, level, bbox=box)
        remote = store.read_level(url, level, bbox=box)
        np.testing.assert_array_equal(_sorted_rows(remote.positions), _sorted_rows(local.positions))
    assert not _chunk_404s(server)


def test_the_level_of_detail_refines_to_level_0_over_http(origin_points_2d, monkeypatch):
    monkeypatch.setenv("NAPARI_ZARR_VECTORS_RETRIES", "0")
    store.forget_remote()
    with StoreServer(origin_points_2d.parent) as server:
        url = server.url(origin_points_2d.name)
        ctl = lod.LevelOfDetail(url, "point_cloud", budget=2_000)
        whole = store.read_level(origin_points_2d, 0)
        centre, width = tuple(whole.positions[len(whole.positions) // 2].tolist()), 150.0  # on the data
        view = lod.View(
            center=(centre[1], centre[0]),
            zoom=800 / width,
            canvas_size=(600, 800),
            ndisplay=2,
            displayed=(0, 1),
            point=(0.0, 0.0),
            scale=(1.0, 1.0),
            translate=(0.0, 0.0),
        )
        region = ctl.update(view, ctl.request())
        assert region is not None and region.level == 0
        assert region.vertex_count == int(region.box.contains(whole.positions).sum()) > 0
        assert not _chunk_404s(server)
    store.forget_remote()
