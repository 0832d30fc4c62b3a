"""Layers -> writer -> upstream validator passes -> reading gives the same data back."""

import numpy as np
import pandas as pd
import pytest
import zarr_vectors as zv
from napari.layers import Image, Points, Shapes, Surface

from napari_zarr_vectors import layers as nzv_layers
from napari_zarr_vectors.store import StoreError

PLUGIN = "napari-zarr-vectors"


def _sorted_rows(a: np.ndarray) -> np.ndarray:
    return np.lexsort(a.T[::-1])


def test_points_round_trip(make_napari_viewer, tmp_path):
    rng = np.random.default_rng(7)
    n = 3000
    data = rng.uniform(0, 500, (n, 3))
    features = pd.DataFrame(
        {
            "intensity": rng.uniform(0, 1, n).astype(np.float32),
            "label": rng.integers(0, 5, n).astype(np.int32),
            "cell_type": pd.Categorical(rng.choice(["neuron", "glia", "other"], n)),
        }
    )
    viewer = make_napari_viewer()
    layer = viewer.add_points(data, features=features, name="cells")
    target = tmp_path / "cells.zv"
    written = layer.save(str(target), plugin=PLUGIN)
    assert written == [str(target.absolute())]
    assert zv.open(str(target)).validate(level=2).errors == []

    *_, back = viewer.open(str(target), plugin=PLUGIN)
    a, b = _sorted_rows(layer.data), _sorted_rows(back.data)
    np.testing.assert_array_equal(back.data[b], layer.data[a])
    for col in ("intensity", "label"):
        np.testing.assert_array_equal(back.features[col].to_numpy()[b], features[col].to_numpy()[a])
    assert list(back.features["cell_type"].astype(str).to_numpy()[b]) == list(
        features["cell_type"].astype(str).to_numpy()[a]
    )


def test_shapes_paths_round_trip(make_napari_viewer, tmp_path):
    rng = np.random.default_rng(8)
    paths = [rng.uniform(0, 300, (int(rng.integers(2, 12)), 3)) for _ in range(25)]
    viewer = make_napari_viewer()
    layer = viewer.add_shapes(paths, shape_type="path", features={"score": np.arange(25.0)})
    target = tmp_path / "paths.zarrvectors"
    layer.save(str(target), plugin=PLUGIN)
    assert zv.open(str(target)).validate(level=2).errors == []

    *_, back = viewer.open(str(target), plugin=PLUGIN)
    assert type(back).__name__ == "Shapes"
    order = np.argsort(back.features["object_id"].to_numpy())
    for got, want in zip([back.data[i] for i in order], layer.data, strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(back.features["score"].to_numpy()[order], np.arange(25.0))


def test_surface_round_trip(tmp_path):
    verts = np.array([[0, 0, 0], [0, 10, 0], [0, 0, 10], [5, 5, 5]], float)
    faces = np.array([[0, 1, 2], [1, 2, 3]])
    values = np.array([0.1, 0.2, 0.3, 0.4])
    layer = Surface((verts, faces, values))
    target = tmp_path / "mesh.zv"
    layer.save(str(target), plugin=PLUGIN)
    assert zv.open(str(target)).validate(level=2).errors == []
    (data, _, kind) = nzv_layers.layers_for_store(target)[0]
    assert kind == "surface"
    got_v, got_f, got_vals = data
    # same triangles, whatever order the vertices come back in
    tri = {tuple(sorted(map(tuple, got_v[f]))) for f in got_f}
    assert tri == {tuple(sorted(map(tuple, verts[f]))) for f in faces}
    assert sorted(got_vals) == sorted(values)


def test_existing_target_is_refused_and_untouched(upstream_stores, tmp_path, tree_digest):
    import shutil

    target = tmp_path / "exists.zv"
    shutil.copytree(upstream_stores["point_cloud"], target)
    before = tree_digest(target)
    layer = Points(np.zeros((4, 3)))
    with pytest.raises(Exception, match="exists and is not empty"):
        layer.save(str(target), plugin=PLUGIN)
    assert tree_digest(target) == before


def test_unsupported_layers_and_shapes_are_refused(tmp_path):
    with pytest.raises(StoreError, match="only points, shapes, surface"):
        nzv_layers.write_layer(str(tmp_path / "img.zv"), np.zeros((4, 4)), {}, "image")
    rect = Shapes([np.array([[0, 0], [0, 5], [5, 5], [5, 0]])], shape_type="rectangle")
    with pytest.raises(Exception, match="rectangle shapes"):
        rect.save(str(tmp_path / "rect.zv"), plugin=PLUGIN)
    assert not (tmp_path / "rect.zv").exists()
    assert not (tmp_path / "img.zv").exists()
    assert Image  # the Image layer type has no writer of ours in the manifest
