"""With the plugin installed, napari's other files and folders go to napari's readers, with no dialog.

The manifest once claimed ``"*"``: every PNG then had two readers and
``viewer.open(path, plugin=None)`` (what File > Open and ``napari FILE``
use) raised ``MultipleReaderError``, which the GUI shows as its
"Choose reader" dialog.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from napari.layers import Layer
from napari.plugins import _npe2

from conftest import write_upstream_store
from napari_zarr_vectors import _reader, layers, store

PLUGIN = "napari-zarr-vectors"


@pytest.fixture
def other_files(tmp_path):
    from PIL import Image

    rgb = (np.arange(20 * 30 * 3) % 255).astype(np.uint8).reshape(20, 30, 3)
    png = tmp_path / "photo.png"
    Image.fromarray(rgb).save(png)
    tif = tmp_path / "stack.tif"
    Image.fromarray(rgb[..., 0]).save(tif)
    csv = tmp_path / "points.csv"
    csv.write_text("index,axis-0,axis-1\n0,1.0,2.0\n1,3.0,4.0\n")
    return {"png": png, "tif": tif, "csv": csv}


@pytest.mark.parametrize("kind", ["png", "tif", "csv"])
def test_other_files_open_with_napari_alone(make_napari_viewer, other_files, kind):
    viewer = make_napari_viewer()
    path = str(other_files[kind])
    assert set(_npe2.get_readers(path)) == {"napari"}
    for plugin in ("napari", None):  # viewer.open's default, and the GUI's / command line's choice
        added = viewer.open(path, plugin=plugin)
        assert len(added) == 1
    expected = "Points" if kind == "csv" else "Image"
    assert {type(layer).__name__ for layer in viewer.layers} == {expected}


def test_a_folder_that_is_no_store_is_left_to_others(tmp_path):
    plain = tmp_path / "images"
    plain.mkdir()
    (plain / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    assert _reader.get_reader(str(plain)) is None
    assert _reader.get_reader(str(tmp_path / "photo.png")) is None


def test_store_folders_open_without_asking_once_the_plugin_has_run(make_napari_viewer, tmp_path):
    """napari offers every folder to its builtin reader too; after our first read we are preferred for ours."""
    from napari.settings import get_settings

    viewer = make_napari_viewer()
    first = write_upstream_store("point_cloud", tmp_path / "first.zv", pyramid=False)
    second = write_upstream_store("point_cloud", tmp_path / "second.zarrvectors", pyramid=False)
    assert set(_npe2.get_readers(str(first))) == {"napari", PLUGIN}
    viewer.open(str(first), plugin=PLUGIN)  # what the user picks in napari's dialog the first time
    prefs = get_settings().plugins.extension2reader
    assert prefs[f"*.zv{os.sep}"] == PLUGIN and prefs[f"*.zarrvectors{os.sep}"] == PLUGIN
    added = viewer.open(str(second), plugin=None)
    assert [type(layer).__name__ for layer in added] == ["Image", "Points"]


def test_a_users_own_reader_choice_is_kept(make_napari_viewer):
    from napari.settings import get_settings

    make_napari_viewer()
    settings = get_settings().plugins
    settings.extension2reader = {f"*.zv{os.sep}": "someone-else"}
    _reader.prefer_this_reader_for_stores()
    assert settings.extension2reader[f"*.zv{os.sep}"] == "someone-else"
    assert settings.extension2reader[f"*.zarrvectors{os.sep}"] == PLUGIN


def _small_store(kind: str, path):
    """Fewer than 100 objects (the Shapes-layer range), pyramid [(2,1),(2,2)], written by upstream."""
    from zarr_vectors import building
    from zarr_vectors.multiresolution.coarsen import build_pyramid

    rng = np.random.default_rng(3)
    if kind == "line":
        segs = rng.uniform(0, 1000, (60, 2, 3)).astype(np.float32)
        building.write_lines(str(path), segs, chunk_shape=(200.0,) * 3, bin_shape=(50.0,) * 3)
    else:  # short, tight paths: on coarse levels several fall into one bin
        lines = [(rng.normal(0, 5, (40, 3)).cumsum(0) + rng.uniform(100, 900, 3)).astype(np.float32) for _ in range(99)]
        building.write_polylines(str(path), lines, chunk_shape=(100.0,) * 3, bin_shape=(25.0,) * 3, geometry_type=kind)
    build_pyramid(str(path), factors=[(2.0, 1.0), (2.0, 2.0)])
    return path


@pytest.mark.parametrize("kind", ["polyline", "streamline", "line"])
def test_small_polyline_stores_open_at_every_level(make_napari_viewer, qtbot, tmp_path, kind):
    from napari_zarr_vectors._qt import follow as _follow

    path = _small_store(kind, tmp_path / f"{kind}.zv")
    info = store.open_info(path)
    collapsed = 0
    viewer = make_napari_viewer()
    *_, layer = viewer.open(str(path), plugin=PLUGIN)
    assert type(layer).__name__ == "Shapes"
    follower = _follow.follower_of(layer)
    assert (follower is None) == (kind == "line")  # lines are not followed: they open at the budget's level
    for lv in info.levels:
        parts = store.read_level(path, lv.index, kind=kind).parts()
        distinct = [len(np.unique(p, axis=0)) for p in parts]
        collapsed += sum(d < 2 for d in distinct)
        # the reader's layer at this level, made as napari makes it
        shapes = Layer.create(*layers.layers_for_store(path, level=lv.index)[-1])
        assert len(shapes.data) == len(shapes.features) == sum(d >= 2 for d in distinct)
        if follower is not None:  # and the level-of-detail swap of this level into the open layer
            follower.lock(lv.index)
            qtbot.waitUntil(lambda i=lv.index: follower.idle and follower.level == i, timeout=20_000)
            assert follower.last_error is None
            assert 0 < len(layer.data) == len(layer.features)
            assert all(len(np.unique(p, axis=0)) >= 2 for p in layer.data)
    if kind != "line":
        assert collapsed > 0, "the store should have paths that collapse to one metanode, or this tests nothing"


@pytest.mark.parametrize("kind", ["point_cloud", "graph", "skeleton", "mesh"])
def test_other_small_stores_open_at_every_level(make_napari_viewer, upstream_stores, kind):
    viewer = make_napari_viewer()
    path = upstream_stores[kind]
    levels = store.open_info(path).levels
    for lv in levels:
        for data in layers.layers_for_store(path, level=lv.index, density=False):
            viewer.add_layer(Layer.create(*data))
    assert len(viewer.layers) >= len(levels) > 1


def test_samples_open_in_3d_as_the_reader_opens_them(make_napari_viewer, qtbot):
    from napari_zarr_vectors._qt import follow as _follow

    viewer = make_napari_viewer()
    added = viewer.open_sample(PLUGIN, "synthetic_point_cloud")
    assert viewer.dims.ndisplay == 3
    points = [layer for layer in added if type(layer).__name__ == "Points"]
    assert points and _follow.follower_of(points[0]) is not None
    assert _follow.wait_settled(viewer, timeout=60)
