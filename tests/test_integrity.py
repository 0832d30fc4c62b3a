"""Integrity checks on read (issue 26, item 8): damaged link rows, fragment tables and vertex dtypes are a
StoreError naming the array and what to do, never NaN parents, short or invented polylines, or garbage
coordinates; damaged data is not called missing.

Real stores are built with the samples, copied, and one array is edited with zarr, as damage would leave it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from zarr_vectors.encoding.fragments import decode_fragments, encode_fragments
from zarr_vectors.encoding.ragged import decode_ragged_blob, encode_ragged_blob

import napari_zarr_vectors as nzv
from napari_zarr_vectors import drill, samples, store

# ---------------------------------------------------------------- stores and hand-made damage


@pytest.fixture(scope="module")
def points(tmp_path_factory) -> Path:
    """20,000 points, 4 levels with +1 links (level counts 20,000 / 1,167 / 245 / 63)."""
    return samples.make_point_cloud(tmp_path_factory.mktemp("integrity") / "p.zv", n=20_000)


@pytest.fixture(scope="module")
def lines(tmp_path_factory) -> Path:
    """300 random-walk streamlines (22,579 vertices at level 0), 4 levels."""
    return samples.make_streamlines(tmp_path_factory.mktemp("integrity") / "s.zv", n=300)


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    store.forget(dst)
    return dst


def _array(path: Path, name: str) -> tuple[zarr.Array, list[int]]:
    arr = zarr.open_array(str(path / name), mode="r+")
    return arr, [int(o) for o in (arr.attrs.get("chunk_grid_origin") or [0] * arr.ndim)]


def _cell(path: Path, name: str, chunk: tuple[int, ...]) -> bytes:
    arr, origin = _array(path, name)
    return bytes(np.asarray(arr[tuple(c - o for c, o in zip(chunk, origin, strict=True))]).item())


def _set_cell(path: Path, name: str, chunk: tuple[int, ...], blob: bytes) -> None:
    arr, origin = _array(path, name)
    at = tuple(slice(c - o, c - o + 1) for c, o in zip(chunk, origin, strict=True))
    cell = np.empty((1,) * arr.ndim, dtype=object)
    cell.flat[0] = blob
    arr[at] = cell
    store.forget(path)


def _chunks(path: Path, name: str) -> list[tuple[int, ...]]:
    meta = json.loads((path / name / "zarr.json").read_text())
    return [tuple(int(c) for c in k.split(".")) for k in meta["attributes"]["nonempty_chunks"]]


def _set_attribute(path: Path, name: str, key: str, value) -> None:
    doc = path / name / "zarr.json"
    meta = json.loads(doc.read_text())
    meta["attributes"][key] = value
    doc.write_text(json.dumps(meta))
    store.forget(path)


def _link_rows(blob: bytes) -> np.ndarray:
    return np.concatenate([np.asarray(g, np.int64).reshape(-1, 2) for g in decode_ragged_blob(blob, "int64", ncols=2)])


def _damage_link(path: Path, row: int) -> tuple[tuple[int, ...], np.ndarray]:
    """Record 0 of level 1's first +1 link cell points at ``row`` of level 2; (cell, its records as they were)."""
    segment = "1/links/+1/0.0.0"
    cell = _chunks(path, segment)[0]
    records = _link_rows(_cell(path, segment, cell))
    damaged = records.copy()
    damaged[0, 1] = row
    _set_cell(path, segment, cell, encode_ragged_blob([damaged], np.dtype("int64")))
    return cell, records


def _damage_fragments(path: Path, level: int, change) -> tuple[int, ...]:
    """``change(table)`` applied to the (start, count) table of one chunk's fragments; the chunk."""
    name = f"{level}/vertex_fragments"
    for chunk in _chunks(path, name):
        fi = decode_fragments(_cell(path, name, chunk))
        table = fi.ranges()
        if table is not None and len(table) >= 2:
            table = np.array(table, np.int64)
            change(table)
            _set_cell(path, name, chunk, encode_fragments([(int(a), int(b)) for a, b in table]))
            return chunk
    raise AssertionError("no chunk with two range fragments")


ADVICE = "napari-zarr-vectors repair"


def _assert_damaged(err: pytest.ExceptionInfo, *parts: str, reading: str = "") -> str:
    text = str(err.value)
    for part in parts:
        assert part in text, (reading, part, text)
    assert "missing" not in text.replace("not missing", "")  # damage is never called missing
    return text


# ---------------------------------------------------------------- healthy stores read as before


def test_healthy_polylines_read_as_upstream_reads_them(lines):
    from zarr_vectors.types.polylines import read_polylines

    h = store.handle(lines)
    for level in store.list_levels(lines):
        got = store.read_level(lines, level)
        raw = read_polylines(h.group, level=level)
        parts = [np.concatenate([np.asarray(s) for s in p]) for p in raw["polylines"]]
        keep = [i for i, p in enumerate(parts) if len(p)]
        np.testing.assert_array_equal(got.part_objects, np.asarray(raw["object_ids"])[keep])
        np.testing.assert_array_equal(got.positions, np.concatenate([parts[i] for i in keep]))
        np.testing.assert_array_equal(np.diff(got.offsets), [len(parts[i]) for i in keep])
    # one object, and several in the order asked for
    some = store.read_level(lines, 0, object_ids=[7, 3])
    np.testing.assert_array_equal(some.part_objects, [7, 3])
    raw = read_polylines(h.group, level=0, object_ids=[7, 3])
    np.testing.assert_array_equal(some.positions, np.concatenate([np.concatenate(p) for p in raw["polylines"]]))


def test_healthy_points_links_and_drills_pass_every_check(points, lines):
    for path in (points, lines):
        for level in store.list_levels(path):
            coords, counts = store.chunk_vertex_counts(path, level)
            assert int(counts.sum()) == store.open_info(path).level(level).vertex_count
            store.read_rows(path, level)
            if level + 1 in store.list_levels(path):
                parent = store.parent_map(path, level)
                assert parent.max() < store.open_info(path).level(level + 1).vertex_count
                if path == points:  # every point has a parent (per_object thinning drops some polylines)
                    assert parent.min() >= 0
    d = drill.Drill(points)
    keys = d.locate(0, store.read_level(points, 0).positions[:50])
    up = d.parents(0, keys, 3)
    assert len(up) and np.isfinite(up.positions).all()
    down = d.children(3, up.keys, 3)
    assert np.isfinite(down.positions).all() and len(down) >= 50


# ---------------------------------------------------------------- link rows


@pytest.mark.parametrize("row", [10**12, -7])
def test_a_link_row_out_of_its_level_is_named(points, tmp_path, row):
    path = _copy(points, tmp_path)
    cell, records = _damage_link(path, row)
    key = np.asarray([[*cell, records[0, 0]]])
    with pytest.raises(store.StoreError) as err:
        drill.parents(path, 1, key)
    _assert_damaged(
        err,
        f"1/links/+1/0.0.0 cell ({', '.join(map(str, cell))}) record 0 points at row {row:,} of level 2, "
        "which has 245 rows",
        ADVICE,
    )
    with pytest.raises(store.StoreError) as err:
        store.parent_map(path, 1)
    _assert_damaged(err, "1/links/+1 record", f"points at row {row:,} of chunk", ADVICE)


def test_a_link_row_past_its_chunk_is_named_not_drawn_at_nan(points, tmp_path):
    path = _copy(points, tmp_path)
    cell, records = _damage_link(path, 244)  # inside level 2 (245 rows), past any of its chunks
    key = np.asarray([[*cell, records[0, 0]]])
    with pytest.raises(store.StoreError) as err:
        drill.parents(path, 1, key)
    _assert_damaged(err, "1/links/+1 points at row 244 of chunk (", "of level 2, which has", ADVICE)
    # the records left as they were still drill: only the damaged one is refused
    other = np.asarray([[*cell, records[1, 0]]])
    if records[1, 0] != records[0, 0]:
        assert np.isfinite(drill.Drill(path).parents(1, other).positions).all()


# ---------------------------------------------------------------- fragment tables


def _reads(path: Path, level: int) -> dict:
    return {
        "read_level": lambda: store.read_level(path, level),
        "object read": lambda: store.read_level(path, level, object_ids=list(range(300))),
        "box read": lambda: store.read_polyline_box(path, level, ([-1e4] * 3, [1e4] * 3)),
        "rows": lambda: store.read_rows(path, level),
    }


def test_fragment_starts_beyond_the_data_are_named(lines, tmp_path):
    path = _copy(lines, tmp_path)

    def shift(table):
        table[0, 0] += 10**6

    chunk = _damage_fragments(path, 0, shift)
    for what, read in _reads(path, 0).items():
        with pytest.raises(store.StoreError) as err:
            read()
        _assert_damaged(
            err,
            f"0/vertex_fragments chunk ({', '.join(map(str, chunk))}): fragment range 0 is rows 1,0",
            "copy",
            reading=what,
        )


def test_fragment_counts_of_2_to_the_40_invent_nothing(lines, tmp_path):
    path = _copy(lines, tmp_path)

    def grow(table):
        table[-1, 1] = 2**40

    chunk = _damage_fragments(path, 1, grow)
    for what, read in _reads(path, 1).items():
        with pytest.raises(store.StoreError) as err:
            read()
        _assert_damaged(
            err, f"1/vertex_fragments chunk ({', '.join(map(str, chunk))})", "count 1,099,511,627,776", reading=what
        )
    # drilling into that chunk reads its fragment table too: refused, not a 2**40-row allocation
    d = drill.Drill(path)
    with pytest.raises(store.StoreError, match="vertex_fragments"):
        d._reader(1).vertex_chunks([chunk])


@pytest.mark.parametrize("damage", ["count", "start"])
def test_a_damaged_point_fragment_table_is_named_by_every_point_read(points, tmp_path, damage):
    """Upstream's point reader slices rows by the table unchecked: repeated or dropped points, silently."""
    path = _copy(points, tmp_path)

    def change(table):
        if damage == "count":
            table[0, 1] = 2**40
        else:  # a range that holds points (an empty one past the data drops nothing: reads may return it)
            table[np.flatnonzero(table[:, 1] > 0)[-1], 0] += 10**6

    chunk = _damage_fragments(path, 0, change)
    named = f"0/vertex_fragments chunk ({', '.join(map(str, chunk))})"
    reads = {
        "whole": lambda: store.read_level(path, 0),
        "box": lambda: store.read_level(path, 0, bbox=([-1e4] * 3, [1e4] * 3)),
        "chunks": lambda: store.read_point_chunks(path, 0, [chunk]),
        "density": lambda: nzv.density_pyramid(path, level=0, axis="z"),
    }
    for what, read in reads.items():
        store.forget(path)
        with pytest.raises(store.StoreError) as err:
            read()
        _assert_damaged(err, named, "Level 0 holds the data itself", reading=what)


# ---------------------------------------------------------------- vertex dtypes


def test_a_wrong_vertex_dtype_is_not_read_as_coordinates(points, tmp_path):
    path = _copy(points, tmp_path)
    _set_attribute(path, "0/vertices", "dtype", "int8")
    with pytest.raises(store.StoreError) as err:
        store.read_level(path, 0)
    _assert_damaged(err, "read as int8", "0/vertices/zarr.json", "outside the store's bounds")
    with pytest.raises(store.StoreError) as err:
        store.read_level(path, 0, bbox=([0.0] * 3, [800.0] * 3))
    _assert_damaged(err, "read as int8")
    with pytest.raises(store.StoreError) as err:
        store.chunk_vertex_counts(path, 0)
    _assert_damaged(err, "80,000 vertices as int8", "lists 20,000", "read as float32")
    with pytest.raises(store.StoreError) as err:
        store.reader_of(path, 0).vertex_chunks(_chunks(path, "0/vertices")[:3])
    _assert_damaged(err, "int8")


@pytest.mark.parametrize("dtype", ["bool", "<U4", "complex64", "no such type"])
def test_a_dtype_positions_cannot_have_is_refused_before_reading(points, tmp_path, dtype):
    path = _copy(points, tmp_path)
    _set_attribute(path, "1/vertices", "dtype", dtype)
    with pytest.raises(store.StoreError) as err:
        store.read_level(path, 1)
    _assert_damaged(err, f"1/vertices/zarr.json declares the vertices' dtype as {dtype!r}", ADVICE)


# ---------------------------------------------------------------- damaged is not missing


def test_an_undecodable_chunk_is_damaged_and_a_gone_one_missing(points, tmp_path):
    path = _copy(points, tmp_path)
    _arr, origin = _array(path, "1/vertices")
    first, second = _chunks(path, "1/vertices")[:2]
    file = (path / "1" / "vertices" / "c").joinpath(*(str(c - o) for c, o in zip(first, origin, strict=True)))
    file.write_bytes(b"\xff" * 5)  # present, but not a vlen-bytes chunk
    store.forget(path)
    with pytest.raises(store.StoreError) as err:
        store.check_level_chunks(path, 1)
    _assert_damaged(err, f"1/vertices chunk ({', '.join(map(str, first))}) is on disk but cannot be decoded")
    for size in (lambda: store.chunk_vertex_counts(path, 1), lambda: store.level_rows(path, 1)):
        store.forget(path)  # sizing the level (density, export, builds) names the chunk, not numcodecs' bare error
        with pytest.raises(store.StoreError) as err:
            size()
        _assert_damaged(err, f"1/vertices chunk ({', '.join(map(str, first))}) is on disk but cannot be decoded")
    file.unlink()
    with pytest.raises(store.StoreError, match="missing data on disk") as err:
        store.check_level_chunks(path, 1)
    assert f"vertices chunk ({', '.join(map(str, first))})" in str(err.value)
    assert second != first


# ---------------------------------------------------------------- the Drill dock


def test_the_drill_dock_shows_damaged_links_as_an_error(make_napari_viewer, qtbot, points, tmp_path):
    from napari_zarr_vectors._qt import follow as _follow
    from napari_zarr_vectors._qt.drill_widget import DrillWidget

    path = _copy(points, tmp_path)
    cell, records = _damage_link(path, 10**12)
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-zarr-vectors", "Drill")
    assert isinstance(widget, DrillWidget)
    *_, layer = viewer.open(str(path), plugin="napari-zarr-vectors")
    follower = _follow.follower_of(layer)
    follower.lock(1)
    qtbot.waitUntil(lambda: follower.idle and follower.level == 1, timeout=30_000)
    source = store.reader_of(path, 1).vertex_chunks([cell])[cell][records[0, 0]]
    pick = int(np.argmin(np.abs(np.asarray(layer.data)[:, ::-1] - source).max(1)))
    layer.selected_data = {pick}
    viewer.layers.selection.active = layer
    widget.up_button.native.click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=30_000)
    assert widget.last_error is not None
    assert "points at row 1,000,000,000,000 of level 2" in widget.last_error
    assert not [lyr for lyr in viewer.layers if lyr.name.startswith("drill: ")]  # no NaN point drawn
