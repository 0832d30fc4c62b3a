"""Upstream-written stores open through napari into the right layers (real viewer)."""

import shutil

import numpy as np
import pytest
import zarr_vectors as zv

from napari_zarr_vectors import _reader, store
from napari_zarr_vectors._qt import follow as _follow
from napari_zarr_vectors.layers import METADATA_KEY

PLUGIN = "napari-zarr-vectors"

EXPECTED = {
    "point_cloud": ["Image", "Points"],  # the density image (hidden) under the points
    "polyline": ["Vectors"],  # 120 paths > the Shapes limit: drawn as segments
    "streamline": ["Vectors"],
    "line": ["Vectors"],
    "graph": ["Vectors", "Points"],
    "skeleton": ["Vectors", "Points"],
    "mesh": ["Surface"],
}


def _vertex_count(layer) -> int:
    kind = type(layer).__name__
    if kind == "Points":
        return len(layer.data)
    if kind == "Surface":
        return len(layer.data[0])
    if kind == "Shapes":
        return sum(len(s) for s in layer.data)
    raise AssertionError(kind)


def settle(qtbot, layers) -> None:
    """Wait until every layer that follows the camera has drawn its view."""
    for layer in layers:
        f = _follow.follower_of(layer)
        if f is not None:
            qtbot.waitUntil(lambda f=f: f.idle and bool(f.lod.levels), timeout=20_000)


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_upstream_store_opens_as_layers(make_napari_viewer, qtbot, upstream_stores, kind):
    viewer = make_napari_viewer()
    path = upstream_stores[kind]
    layers = viewer.open(str(path), plugin=PLUGIN)
    settle(qtbot, layers)  # points and polylines open coarse, then refine to what fits the budget
    assert [type(layer).__name__ for layer in layers] == EXPECTED[kind]
    meta = layers[-1].metadata[METADATA_KEY]
    assert meta["path"] == str(path.resolve())
    level = meta["level"]
    assert level == 0  # every fixture store fits the default budget
    ref = zv.open(str(path)).level(level).read()
    info = store.open_info(path)
    for layer in layers:
        assert kind in layer.name and path.stem in layer.name
        assert tuple(layer.axis_labels) == ("z", "y", "x")
    if kind == "point_cloud":
        density_image, pts = layers
        assert density_image.multiscale and not density_image.visible
        assert len(pts.data) == ref.vertex_count == info.level(level).vertex_count
        assert set(pts.features.columns) == {"intensity", "label"}
        # coloured by the integer `label` (16 values), one colour per value, before the float `intensity`
        assert pts.face_color.shape == (len(pts.data), 4)
        assert len(np.unique(pts.face_color[:, :3], axis=0)) == len(np.unique(pts.features["label"])) > 10
        # napari order is the reverse of the store's (x, y, z)
        np.testing.assert_allclose(np.sort(pts.data[:, 2]), np.sort(ref.positions[:, 0]))
    elif kind in ("polyline", "streamline", "line"):
        vec = layers[0]
        n_parts = len(ref.parts)
        assert len(vec.data) == ref.vertex_count - n_parts  # one segment per consecutive pair
        assert "object_id" in vec.features.columns
        extra = {"polyline": "length", "streamline": "length", "line": "weight"}[kind]
        assert extra in vec.features.columns
    elif kind in ("graph", "skeleton"):
        edges, nodes = layers
        assert len(nodes.data) == ref.vertex_count
        assert len(edges.data) == len(ref.edges)
        np.testing.assert_allclose(edges.data[:, 0, :], nodes.data[ref.edges[:, 0]], rtol=1e-6)
    else:
        surface = layers[0]
        assert _vertex_count(surface) == ref.vertex_count
        assert len(surface.data[1]) == len(ref.faces)
    # a 3D store is shown in 3D, not as an empty 2D slice
    assert viewer.dims.ndisplay == 3


def test_budget_picks_a_coarser_level(make_napari_viewer, qtbot, upstream_stores, monkeypatch):
    monkeypatch.setenv("NAPARI_ZARR_VECTORS_VERTEX_BUDGET", "5000")
    path = upstream_stores["point_cloud"]
    info = store.open_info(path)
    expected = min(lv.index for lv in info.levels if lv.vertex_count <= 5000)
    assert expected > 0
    viewer = make_napari_viewer()
    *_, layer = viewer.open(str(path), plugin=PLUGIN)
    # upstream's coarse levels carry no attributes, so it opens where the budget says, not coarsest first
    assert layer.metadata[METADATA_KEY]["level"] == expected
    assert len(layer.data) == info.level(expected).vertex_count <= 5000
    settle(qtbot, [layer])  # then each region at the finest level the budget leaves it (lod.plan_regions)
    meta = layer.metadata[METADATA_KEY]
    assert set(meta["levels_shown"]) <= {lv.index for lv in info.levels}
    assert meta["level"] == min(meta["levels_shown"]) and 0 < len(layer.data) <= 5000


def test_few_paths_open_as_shapes(make_napari_viewer, tmp_path):
    rng = np.random.default_rng(3)
    lines = [rng.uniform(0, 100, (int(rng.integers(2, 9)), 3)) for _ in range(20)]
    path = store.write_polyline_store(tmp_path / "few.zv", lines)
    viewer = make_napari_viewer()
    *_, layer = viewer.open(path, plugin=PLUGIN)
    assert type(layer).__name__ == "Shapes"
    assert set(layer.shape_type) == {"path"}
    assert sorted(len(s) for s in layer.data) == sorted(len(x) for x in lines)


def test_non_store_directory_is_left_to_other_readers(tmp_path):
    folder = tmp_path / "not_a_store"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    assert _reader.get_reader(str(folder)) is None
    assert _reader.get_reader(str(tmp_path / "image.tif")) is None


def test_corrupt_store_gives_a_clear_notification(make_napari_viewer, upstream_stores, tmp_path, error_notifications):
    bad = tmp_path / "corrupt.zv"
    shutil.copytree(upstream_stores["point_cloud"], bad)
    (bad / "zarr.json").write_text("{ not json")
    viewer = make_napari_viewer()
    assert viewer.open(str(bad), plugin=PLUGIN) == []
    assert len(viewer.layers) == 0
    assert len(error_notifications) == 1
    assert "corrupt.zv" in error_notifications[0] and "corrupt zarr.json" in error_notifications[0]


def test_missing_level_gives_a_clear_notification(make_napari_viewer, upstream_stores, tmp_path, error_notifications):
    bad = tmp_path / "holey.zv"
    shutil.copytree(upstream_stores["point_cloud"], bad)
    shutil.rmtree(bad / "1")
    viewer = make_napari_viewer()
    assert viewer.open(str(bad), plugin=PLUGIN) == []
    assert len(error_notifications) == 1
    assert "holey.zv" in error_notifications[0] and "level 1" in error_notifications[0]
