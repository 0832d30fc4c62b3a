"""One opened-store handle per store and process: the root zarr.json is read once, and never stale.

Real stores on disk; reads are counted by wrapping the file opens
(``io.open``, which ``pathlib`` and zarr's ``LocalStore`` use) and the
handle's store's whole-file reads (``store.local.read_file``, capped),
so every way the root zarr.json can be read counts.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from napari_zarr_vectors import _reader, drill, lod, pyramid, samples, store
from napari_zarr_vectors._qt import follow as _follow
from napari_zarr_vectors.store import local


@pytest.fixture(scope="module")
def linked_points(tmp_path_factory) -> Path:
    """50,000 uniform 2D points, 4 levels (bins 5/10/20/40) with cross-level links."""
    path = tmp_path_factory.mktemp("handle") / "points.zv"
    return samples.make_uniform_point_cloud(
        path, n=50_000, extent=1000.0, chunk=100.0, bin_size=5.0, factors=[(2.0, 1.0)] * 3, ndim=2
    )


@pytest.fixture
def points_copy(linked_points, tmp_path) -> Path:
    """A copy of the linked store this test may change."""
    import shutil

    return Path(shutil.copytree(linked_points, tmp_path / "copy.zv"))


class RootReads:
    """Counts reads of one store's root zarr.json: file opens, and the handle's store's reads of it."""

    def __init__(self, monkeypatch, path: Path) -> None:
        self.root = os.path.realpath(path)
        self.meta = os.path.join(self.root, "zarr.json")
        self.opens = 0
        self.gets = 0
        self.stats = 0
        opener, read_file, stat = io.open, local.read_file, os.stat

        def counting_open(file, *args, **kwargs):
            if isinstance(file, str | os.PathLike) and os.path.realpath(os.fspath(file)) == self.meta:
                self.opens += 1
            return opener(file, *args, **kwargs)

        def counting_read(path, *args, **kwargs):
            if os.path.realpath(os.fspath(path)) == self.meta:
                self.gets += 1
            return read_file(path, *args, **kwargs)

        def counting_stat(target, *args, **kwargs):
            if isinstance(target, str | os.PathLike) and os.fspath(target) == self.meta:
                self.stats += 1
            return stat(target, *args, **kwargs)

        monkeypatch.setattr(io, "open", counting_open)
        monkeypatch.setattr(builtins, "open", counting_open)
        monkeypatch.setattr(local, "read_file", counting_read)
        monkeypatch.setattr(os, "stat", counting_stat)


def _settled_age(path: Path) -> None:
    """Wait until the root zarr.json is older than the racy window (a fresh one is re-read to compare)."""
    age = time.time() - (path / "zarr.json").stat().st_mtime
    if age < store.RACY_S:
        time.sleep(store.RACY_S - age + 0.01)


def test_open_view_and_drill_read_the_root_zarr_json_once(make_napari_viewer, qtbot, linked_points, monkeypatch):
    monkeypatch.setenv(lod.BUDGET_ENV, "3000")  # the whole store shows level 2 (2,500), a tenth of it level 0
    viewer = make_napari_viewer()
    viewer.window._qt_viewer.canvas.size = (600, 800)
    _reader.prefer_this_reader_for_stores()  # what the plugin's first read does: no reader dialog after that
    _settled_age(linked_points)
    store.forget(linked_points)  # nothing of this store is open in this process yet
    reads = RootReads(monkeypatch, linked_points)

    # plugin=None: napari picks the reader, as File > Open and `napari FILE` do (viewer.open's default is "napari")
    *_, layer = viewer.open(str(linked_points), plugin=None)
    follower = _follow.follower_of(layer)
    assert follower is not None
    qtbot.waitUntil(lambda: follower.idle, timeout=30_000)
    opened_at = follower.level
    viewer.scene.camera.center = (500.0, 500.0)
    viewer.scene.camera.zoom = viewer.canvas.size[1] / 100.0  # a window 10% of the store's width: finer levels
    qtbot.waitUntil(lambda: follower.idle, timeout=30_000)
    _follow.wait_settled(viewer)
    assert follower.level < opened_at  # the follower read the store again, at another level

    d = drill.drill_for(str(linked_points))
    top = max(d.levels())
    some = store.read_level(str(linked_points), top, chunks=[tuple(store.chunks_present(str(linked_points), top)[0])])
    keys = d.locate(top, some.positions[:2])
    down = d.children(top, keys)
    assert len(down) > 0
    up = d.parents(top - 1, down.keys)
    assert {tuple(k) for k in keys.tolist()} <= {tuple(k) for k in up.keys.tolist()}

    assert reads.opens == 1, f"the root zarr.json was opened {reads.opens} times"
    assert reads.gets == 1  # and that one read went through the handle's zarr store


def test_two_calls_give_one_handle_while_the_store_is_unchanged(linked_points, monkeypatch):
    _settled_age(linked_points)
    first = store.handle(linked_points)
    assert store.handle(linked_points) is first
    assert store.handle(str(linked_points) + os.sep) is first  # one address, whatever the spelling
    assert store.handle(first) is first  # a handle passes through
    relative = os.path.relpath(linked_points)
    assert store.handle(relative) is first
    assert store.open_info(linked_points) is store.open_info(first)  # described once
    reads = RootReads(monkeypatch, linked_points)
    assert store.handle(linked_points) is first
    assert (reads.stats, reads.opens) == (1, 0)  # checked with one stat, nothing read


def test_a_level_removed_or_built_in_this_process_is_seen_by_the_next_read(points_copy):
    before = store.handle(points_copy)
    assert [lv.index for lv in store.open_info(points_copy).levels] == [0, 1, 2, 3]
    counts_3 = store.chunk_vertex_counts(points_copy, 3)[1].sum()

    pyramid.remove_resolution_level(points_copy, 3)
    assert store.handle(points_copy) is not before
    assert [lv.index for lv in store.open_info(points_copy).levels] == [0, 1, 2]
    assert pyramid.list_resolution_levels(points_copy) == [0, 1, 2]
    with pytest.raises(store.StoreError, match="no resolution level 3"):
        store.open_info(points_copy).level(3)

    pyramid.coarsen_level(points_copy, 2, 3, coarsen_factor=4.0)  # a new level 3, twice as coarse as before
    info = store.open_info(points_copy)
    assert [lv.index for lv in info.levels] == [0, 1, 2, 3]
    assert info.level(3).bin_shape == (80.0, 80.0)
    assert store.chunk_vertex_counts(points_copy, 3)[1].sum() < counts_3
    assert drill.drill_for(points_copy).info is info  # the drill renewed with the handle

    rows = store.level_rows(points_copy, 0)
    store.write_vertex_attributes(points_copy, 0, {"extra": np.arange(rows, dtype=np.float32)})
    assert "extra" in store.vertex_attribute_names(points_copy, 0)
    assert "extra" in store.read_level(points_copy, 0).vertex_attributes


def test_reads_during_a_write_session_see_what_it_staged(points_copy):
    kept = store.handle(points_copy)
    rows = store.level_rows(points_copy, 1)
    with store.write_session(points_copy, "test"):
        store.write_vertex_attributes(points_copy, 1, {"staged": np.ones(rows, np.float32)})
        during = store.handle(points_copy)
        assert during is not kept and not during.kept  # the staging store's view, made afresh
        assert "staged" in store.vertex_attribute_names(points_copy, 1)
        assert "staged" not in kept.attribute_names(1)  # the handle of before is what was published
    assert "staged" in store.vertex_attribute_names(points_copy, 1)  # published
    assert store.handle(points_copy).kept


def test_a_root_rewritten_by_another_process_is_noticed_with_one_stat(points_copy, monkeypatch):
    _settled_age(points_copy)
    first = store.handle(points_copy)
    assert [lv.index for lv in store.open_info(first).levels] == [0, 1, 2, 3]
    code = "import sys; from napari_zarr_vectors import pyramid; pyramid.remove_resolution_level(sys.argv[1], 3)"
    subprocess.run([sys.executable, "-c", code, str(points_copy)], check=True, env={**os.environ})
    reads = RootReads(monkeypatch, points_copy)
    now = store.handle(points_copy)
    assert now is not first
    assert (reads.stats, reads.opens) == (1, 1)  # one stat noticed it; the new root was read once
    assert [lv.index for lv in store.open_info(points_copy).levels] == [0, 1, 2]


def test_a_publish_that_leaves_the_root_as_it_was_is_noticed_too(points_copy):
    """A write session replaces the root zarr.json even when it changed only a level (journal._publish)."""
    _settled_age(points_copy)
    assert "added" not in store.vertex_attribute_names(points_copy, 1)
    code = (
        "import sys, numpy as np; from napari_zarr_vectors import store; p = sys.argv[1]; "
        "rows = store.level_rows(p, 1)\n"
        "with store.write_session(p, 'test'):\n"
        "    store.write_vertex_attributes(p, 1, {'added': np.ones(rows, np.float32)})"
    )
    subprocess.run([sys.executable, "-c", code, str(points_copy)], check=True, env={**os.environ})
    assert "added" in store.vertex_attribute_names(points_copy, 1)


def test_an_edit_in_place_within_the_clock_tick_is_noticed(points_copy):
    meta = points_copy / "zarr.json"
    raw = meta.read_bytes()
    stamp = time.time_ns()
    os.utime(meta, ns=(stamp, stamp))  # as if just written
    first = store.handle(points_copy)
    assert first.racy
    root = json.loads(raw)
    root["attributes"]["zarr_vectors"]["bounds"][1][0] = 500.0  # the same bytes but for one bound
    edited = json.dumps(root, separators=(",", ":")).encode()
    edited += b" " * (len(raw) - len(edited))  # JSON may end in blanks
    assert len(edited) == len(raw)
    with open(meta, "r+b") as f:  # in place: same inode, same size, and the mtime put back
        f.write(edited)
    os.utime(meta, ns=(stamp, stamp))
    again = store.handle(points_copy)
    assert again is not first
    assert store.open_info(again).bounds[1][0] == 500.0


def test_what_a_handle_shares_cannot_be_changed_by_a_caller(linked_points):
    info = store.open_info(linked_points)
    with pytest.raises(ValueError, match="read-only"):
        info.bounds[0][0] = 5.0
    coords, counts = store.chunk_vertex_counts(linked_points, 1)
    with pytest.raises(ValueError, match="read-only"):
        counts[0] = 0
