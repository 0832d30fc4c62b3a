"""store.py against real upstream stores: metadata, reads, bad input, safe writes."""

import json
import shutil

import numpy as np
import pytest
import zarr_vectors as zv

from napari_zarr_vectors import store
from napari_zarr_vectors.store import StoreError


@pytest.mark.parametrize("kind", ["point_cloud", "polyline", "streamline", "line", "graph", "skeleton", "mesh"])
def test_open_info_matches_upstream(upstream_stores, kind):
    path = upstream_stores[kind]
    info = store.open_info(path)
    ds = zv.open(str(path))
    assert info.kind == kind
    assert info.ndim == 3
    assert info.axis_names == ("x", "y", "z")
    assert [lv.index for lv in info.levels] == [0, 1, 2]
    for lv in info.levels:
        assert lv.vertex_count == ds.level(lv.index).vertex_count
    assert info.levels[1].bin_shape == tuple(2 * b for b in info.levels[0].bin_shape)


def test_point_read_matches_upstream_and_bbox(upstream_stores):
    path = upstream_stores["point_cloud"]
    full = store.read_level(path, 0)
    ref = zv.open(str(path)).level(0).read()
    assert full.vertex_count == ref.vertex_count == 20_000
    assert set(full.vertex_attributes) == {"intensity", "label"}
    lo, hi = np.array([100.0, 100, 100]), np.array([400.0, 500, 600])
    box = store.read_level(path, 0, bbox=(lo, hi))
    inside = np.all((full.positions >= lo) & (full.positions <= hi), axis=1)
    assert box.vertex_count == inside.sum() > 0
    assert np.all((box.positions >= lo) & (box.positions <= hi))


def test_polyline_parts_and_object_attributes(upstream_stores):
    data = store.read_level(upstream_stores["streamline"], 0)
    parts = data.parts()
    assert len(parts) == 120
    assert data.object_attributes["length"].tolist() == [len(p) for p in parts]


def test_non_store_directory_is_not_claimed(tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "zarr.json").write_text(
        json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}})
    )
    assert not store.is_store(tmp_path / "plain")
    assert not store.is_store(tmp_path / "missing")
    with pytest.raises(StoreError, match="not a Zarr Vectors store"):
        store.open_info(tmp_path / "plain")


def test_corrupt_zarr_json_names_store_and_problem(upstream_stores, tmp_path):
    bad = tmp_path / "broken.zv"
    shutil.copytree(upstream_stores["point_cloud"], bad)
    (bad / "zarr.json").write_text("{ this is not json")
    assert not store.is_store(bad)
    with pytest.raises(StoreError) as err:
        store.open_info(bad)
    assert str(bad) in str(err.value) and "corrupt zarr.json" in str(err.value)


def test_missing_level_names_store_and_level(upstream_stores, tmp_path):
    bad = tmp_path / "gap.zv"
    shutil.copytree(upstream_stores["point_cloud"], bad)
    shutil.rmtree(bad / "2")
    with pytest.raises(StoreError) as err:
        store.open_info(bad)
    assert str(bad) in str(err.value) and "level 2" in str(err.value)


def test_write_refuses_non_empty_target_and_leaves_it_untouched(upstream_stores, tmp_path, tree_digest):
    target = tmp_path / "taken.zv"
    shutil.copytree(upstream_stores["point_cloud"], target)
    before = tree_digest(target)
    with pytest.raises(StoreError, match="exists and is not empty"):
        store.write_point_cloud(target, np.zeros((3, 3)))
    assert tree_digest(target) == before


def test_failed_write_leaves_nothing_behind(tmp_path):
    target = tmp_path / "bad.zv"
    with pytest.raises(StoreError, match="nothing was written"):
        # an attribute of the wrong length makes upstream fail mid-write
        store.write_point_cloud(target, np.random.default_rng(0).uniform(0, 10, (50, 3)), attributes={"a": np.zeros(7)})
    assert list(tmp_path.iterdir()) == []


def test_empty_directory_target_is_filled(tmp_path):
    target = tmp_path / "empty.zv"
    target.mkdir()
    store.write_point_cloud(target, np.random.default_rng(0).uniform(0, 10, (50, 3)))
    assert store.is_store(target)
    assert store.validate(target) == []


def test_auto_layout_divides_and_covers():
    pts = np.random.default_rng(1).uniform(-5, 995, (200_000, 3))
    chunk, bins = store.auto_chunk_shape(pts)
    assert len(chunk) == 3 and chunk[0] == bins[0] * 4
    per_axis = np.ceil((pts.max(0) - pts.min(0)) / chunk[0])
    assert per_axis.prod() >= 200_000 / 50_000


def test_a_box_over_a_chunk_whose_file_is_gone_names_the_chunk(small_points_2d, tmp_path):
    import shutil

    import numpy as np

    from napari_zarr_vectors import store

    damaged = tmp_path / "damaged.zv"
    shutil.copytree(small_points_2d, damaged)
    (damaged / "0" / "vertices" / "c" / "2" / "3").unlink()  # chunk (2, 3): x 200..300, y 300..400
    with pytest.raises(store.StoreError, match=r"vertices chunk \(2, 3\)"):
        store.read_level(damaged, 0, bbox=(np.array([210.0, 310.0]), np.array([290.0, 390.0])))
    with pytest.raises(store.StoreError, match=r"vertices chunk \(2, 3\)"):
        store.chunk_vertex_counts(damaged, 0)  # the viewer's sizing says so too, instead of a silent hole
    # a box elsewhere still reads
    assert store.read_level(damaged, 0, bbox=(np.array([610.0, 610.0]), np.array([690.0, 690.0]))).vertex_count > 0
