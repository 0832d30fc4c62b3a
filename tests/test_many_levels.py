"""Stores with many levels (issue 26, item 11): the root's list is the level list, read once; no level folder is
walked to list or remove levels; and what ``open_info`` derives per level equals what zarr-vectors derives.

Speed is measured by ``benchmarks/many_levels.py`` (run tiny in tests/test_benchmarks.py), not asserted here.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr_vectors as zv

import napari_zarr_vectors as nzv
from napari_zarr_vectors import store

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from many_levels import many_levels  # noqa: E402 - the benchmark's own store recipe


@pytest.mark.parametrize("kind", ["point_cloud", "polyline", "streamline", "line", "graph", "skeleton", "mesh"])
def test_level_sizes_and_counts_are_what_zarr_vectors_derives(upstream_stores, kind):
    path = upstream_stores[kind]
    info = store.open_info(path)
    ds = zv.open(str(path))
    assert [lv.index for lv in info.levels] == sorted(ds.levels)
    for lv in info.levels:
        theirs = ds.level(lv.index)
        assert lv.vertex_count == theirs.vertex_count, (kind, lv.index)
        assert lv.bin_shape == pytest.approx(tuple(theirs.resolution)), (kind, lv.index)
        assert lv.chunk_shape == pytest.approx(tuple(theirs.scale)), (kind, lv.index)


@pytest.fixture(scope="module")
def seed(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("many") / "seed.zv"
    rng = np.random.default_rng(3)
    store.write_point_cloud(path, rng.uniform(0, 100, (2_000, 3)), chunk_shape=(200.0,) * 3, bin_shape=(5.0,) * 3)
    nzv.build_pyramid(path, [(2.0, 1.0), (2.0, 1.0)])
    return path


def test_a_root_listing_many_levels_opens_and_loses_its_coarsest(seed, tmp_path):
    path = many_levels(seed, tmp_path / "many.zv", 500)
    info = store.open_info(path)
    assert [lv.index for lv in info.levels] == list(range(500))
    assert info.levels[499].vertex_count == info.levels[2].vertex_count
    nzv.remove_resolution_level(path, 499)
    assert not (path / "499").exists()
    assert nzv.list_resolution_levels(path) == list(range(499))
    root = json.loads((path / "zarr.json").read_text())["attributes"]
    assert store.declared_levels(root) == [str(i) for i in range(499)]
    assert len(store.open_info(path).levels) == 499


def test_levels_are_the_roots_list_not_the_folders(seed, tmp_path):
    path = tmp_path / "listed.zv"
    shutil.copytree(seed, path)
    shutil.copytree(path / "2", path / "7")  # a folder the root does not list (what an interrupted writer leaves)
    assert nzv.list_resolution_levels(path) == [0, 1, 2]
    assert [lv.index for lv in store.open_info(path).levels] == [0, 1, 2]
    shutil.rmtree(path / "2")  # a level the root lists, gone: listed (no folder is looked at), and said on open
    store.forget(path)
    assert nzv.list_resolution_levels(path) == [0, 1, 2]
    with pytest.raises(store.StoreError, match="lists resolution level 2"):
        store.open_info(path)


def test_remove_deletes_families_into_the_level_from_any_level(seed, tmp_path):
    path = tmp_path / "deep.zv"
    shutil.copytree(seed, path)
    nzv.remove_resolution_level(path, 2)
    nzv.remove_resolution_level(path, 1)
    nzv.build_pyramid(path, [(2.0, 1.0), (2.0, 1.0)], cross_level_depth=2)
    assert 2 in store.link_deltas(path, 0)
    nzv.remove_resolution_level(path, 2)
    assert all(level + d != 2 for level in (0, 1) for d in store.link_deltas(path, level))
