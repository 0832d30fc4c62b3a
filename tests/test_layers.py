"""layers.py without a viewer: level choice for polylines counts what is drawn; how points are coloured."""

import numpy as np

from napari_zarr_vectors import layers, samples, store


def test_polyline_budget_counts_drawn_vertices(upstream_stores):
    path = upstream_stores["streamline"]
    info = store.open_info(path)
    drawn = {lv.index: store.read_level(path, lv.index).vertex_count for lv in info.levels}
    unique1 = info.level(1).vertex_count
    # per_object levels draw shared metavertices once per object: more than the metadata count
    assert drawn[1] > unique1
    budget = (unique1 + drawn[1]) // 2  # the metadata says level 1 fits; what it draws does not
    assert drawn[2] <= budget
    ((data, kwargs, kind),) = layers.layers_for_store(path, vertex_budget=budget)
    assert kwargs["metadata"]["zarr_vectors"]["level"] == 2
    shapes = max(lv.object_count for lv in info.levels) <= layers.lod.DEFAULT_SHAPES_PATH_LIMIT  # any level
    assert kind == ("shapes" if shapes else "vectors")
    estimate = store.estimate_drawn_vertices(path, 1, sample=16)
    assert abs(estimate - drawn[1]) < 0.25 * drawn[1]


def test_vectors_segments_join_consecutive_vertices():
    parts = [np.array([[0.0, 0, 0], [1, 0, 0], [1, 1, 0]]), np.array([[5.0, 5, 5], [6, 6, 6]])]
    vec, owner = layers._segments(parts)
    assert vec.shape == (3, 2, 3)
    np.testing.assert_array_equal(vec[:, 0] + vec[:, 1], [[1, 0, 0], [1, 1, 0], [6, 6, 6]])
    assert owner.tolist() == [0, 0, 1]


def test_direction_colours_follow_the_axis():
    colors = layers.direction_colors(np.array([[0.0, 0, 2], [0, 3, 0], [4, 0, 0], [0, 0, 0]]))
    assert colors.shape == (4, 4)
    assert colors[0].argmax() == 0 and colors[1, :3].argmax() == 1 and colors[2, :3].argmax() == 2
    assert np.allclose(colors[3, :3], colors[3, 0])  # a zero-length segment is grey


def test_points_are_coloured_by_label_one_colour_per_value_at_every_level(tmp_path):
    path = samples.make_point_cloud(tmp_path / "cells.zv", 20_000, extent=1000.0, chunk=100.0, bin_size=10.0, ndim=2)
    info = store.open_info(path)
    seen = {}
    for level in (3, 0):
        (_, (data, kwargs, kind)) = layers.layers_for_store(path, level=level)
        face = kwargs["face_color"]
        assert kind == "points" and face["color_properties"] == "label" and face["color_mode"] == "cycle"
        mapping = face["categorical_colormap"]["colormap"]
        for value, colour in mapping.items():
            assert colour == layers.LABEL_PALETTE[value % len(layers.LABEL_PALETTE)]
            assert seen.setdefault(value, colour) == colour  # the same colour at every level
        assert set(np.unique(kwargs["features"]["label"])) <= set(mapping)
    assert set(seen) == set(range(1, samples.N_CELLS + samples.N_FIBRES + 1))  # every structure
    assert len(info.levels) == 4


def test_a_label_averaged_on_coarse_levels_or_with_many_values_is_not_a_label():
    n = 1000
    rng = np.random.default_rng(0)
    ints = rng.integers(0, 8, n).astype(np.int32)
    assert layers._label_attribute({"intensity": rng.uniform(0, 1, n), "label": ints}) == "label"
    assert layers._label_attribute({"label": ints.astype(np.float64) + 0.5}) is None  # a mean: not a label
    assert layers._label_attribute({"id": np.arange(n)}) is None  # more than MAX_LABELS values
    assert layers._label_attribute({"one": np.zeros(n, np.int32)}) is None  # nothing to tell apart
    colours = layers.label_colors("label", np.array([0, 1, 17]))["categorical_colormap"]["colormap"]
    assert colours == {0: layers.BACKGROUND_COLOR, 1: layers.LABEL_PALETTE[1], 17: layers.LABEL_PALETTE[1]}
