"""Text (categorical) vertex attributes through a build: stored dictionary-encoded, kept with ``mode``, read as text.

The store is made so each coarse vertex's most frequent text is known: clusters of points, each
inside one bin of every coarse level, with a chosen mix of genes (a tie, missing values).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import zarr_vectors as zv
from qtpy.QtCore import Qt
from zarr_vectors.types.points import read_points

import napari_zarr_vectors as nzv
from napari_zarr_vectors import aggregate, layers, samples, store
from napari_zarr_vectors._qt.build_widget import BuildPyramidWidget

PLUGIN = "napari-zarr-vectors"
# Level 0's bin is 50; levels 1 and 2 bin at 100 and 200. A cluster centred at 200k + 50 (spread +-20)
# lies in one bin of level 1 and one of level 2, so its coarse vertex stands for exactly its points.
CLUSTERS = {
    # centre (x, y, z) in cluster units -> the cluster's genes, and the mode a coarse vertex must keep
    (0, 0, 0): (["Gene7"] * 7 + ["Gene3"] * 3, "Gene7"),
    (1, 0, 0): (["Gene139"] * 6 + ["Gene2"] * 4, "Gene139"),
    (0, 1, 0): (["Banana"] * 5 + ["Apple"] * 5, "Apple"),  # a tie goes to the first text in sorted order
    (1, 1, 1): ([None] * 3 + ["Rare"] * 2, "Rare"),  # a missing value is not a value: it never wins
    (2, 2, 0): ([None] * 4, None),  # no text at all: missing at every level
}


def _cluster_rows(rng: np.random.Generator):
    positions, genes, cells, qv, expected = [], [], [], [], {}
    for c, (key, (names, mode)) in enumerate(CLUSTERS.items()):
        centre = np.asarray(key, float) * 200 + 50
        positions.append(centre + rng.uniform(-20, 20, (len(names), 3)))
        genes += names
        cells += [100 + c] * (len(names) - 1) + [7]  # an integer label: its mode is the cluster's cell id
        qv += list(rng.uniform(0, 40, len(names)))
        expected[key] = (mode, 100 + c)
    return np.concatenate(positions).astype(np.float32), np.array(genes, dtype=object), cells, qv, expected


def write_text_store(path) -> dict:
    """A level-0 point store with a text ``gene`` (dictionary-encoded by upstream), an int ``cell`` and float ``qv``."""
    pos, genes, cells, qv, expected = _cluster_rows(np.random.default_rng(3))
    store.write_point_cloud(
        path,
        pos,
        attributes={"gene": genes, "cell": np.asarray(cells, np.int32), "qv": np.asarray(qv, np.float32)},
        chunk_shape=(400.0,) * 3,
        bin_shape=(50.0,) * 3,
    )
    return expected


def _cluster_of(position: np.ndarray) -> tuple[int, ...]:
    return tuple(int(v) for v in np.floor(np.asarray(position) / 200))


def check_levels(path, expected: dict, levels=(1, 2)) -> None:
    """Every coarse level: text read as text, each cluster's vertex keeping its mode, the validator content."""
    assert store.text_attributes(path, 0) == {"gene": ("Apple", "Banana", "Gene139", "Gene2", "Gene3", "Gene7", "Rare")}
    for level in levels:
        data = store.read_level(path, level)
        gene = data.vertex_attributes["gene"]
        assert gene.dtype.kind in "UO", f"level {level}: gene read as {gene.dtype}"
        assert len(data.positions) == len(CLUSTERS)
        got = {_cluster_of(p): g for p, g in zip(data.positions, gene, strict=True)}
        assert got == {k: mode for k, (mode, _) in expected.items()}
        assert all(g is None or isinstance(g, str) for g in gene)
        cells = data.vertex_attributes["cell"]
        assert cells.dtype.kind == "i"  # an integer label kept with mode stays an integer
        assert {_cluster_of(p): int(c) for p, c in zip(data.positions, cells, strict=True)} == {
            k: cell for k, (_, cell) in expected.items()
        }
        assert data.vertex_attributes["qv"].dtype.kind == "f"  # numbers still take the default, mean
        # the categories table is level 0's, so a value keeps its code (and colour) at every level
        assert store.text_attributes(path, level) == store.text_attributes(path, 0)
        # upstream's own reader decodes the coarse level's text too
        raw = read_points(str(path), level=level, attribute_names=["gene"])
        assert sorted(map(str, raw["vertex_attributes"]["gene"])) == sorted(map(str, gene))
        assert zv.open(str(path)).validate(level=level).errors == []


@pytest.mark.parametrize("engine", ["vectorized", "upstream"])
def test_python_build_keeps_text_with_mode_at_every_level(tmp_path, engine):
    path = tmp_path / "tx.zv"
    expected = write_text_store(path)
    summary = nzv.build_pyramid(path, [(2, 1), (2, 1)], engine=engine, agg_overrides={"cell": "mode"})
    assert [r["level"] for r in summary["levels"]] == [0, 1, 2]
    assert all(r["text_attributes"] == ("gene",) for r in summary["levels"])
    check_levels(path, expected)
    level0 = store.read_level(path, 0).vertex_attributes["gene"]  # level 0 reads back as written (rows by chunk)
    written = [g for genes, _ in CLUSTERS.values() for g in genes]
    assert sorted(map(str, level0)) == sorted(map(str, written))


def test_any_default_aggregation_gives_text_mode(tmp_path):
    path = tmp_path / "tx.zv"
    expected = write_text_store(path)
    nzv.build_pyramid(path, [(2, 1), (2, 1)], agg_mode="max", agg_overrides={"cell": "mode", "gene": "mode"})
    check_levels(path, expected)


def test_coarsen_level_extends_with_text(tmp_path):
    path = tmp_path / "tx.zv"
    expected = write_text_store(path)
    nzv.build_pyramid(path, [(2, 1)], agg_overrides={"cell": "mode"})
    nzv.coarsen_level(path, 1, 2, coarsen_factor=2.0, agg_overrides={"cell": "mode"})
    check_levels(path, expected)


@pytest.mark.parametrize("mode", ["mean", "sum", "min", "max", "count"])
def test_a_text_attribute_asked_for_another_aggregation_is_refused(tmp_path, mode):
    path = tmp_path / "tx.zv"
    write_text_store(path)
    with pytest.raises(
        ValueError, match=rf"agg_overrides\['gene'\] = '{mode}': 'gene' is a text attribute.*only 'mode'"
    ):
        nzv.build_pyramid(path, [(2, 1)], agg_overrides={"gene": mode})
    assert store.list_levels(path) == [0]  # refused before anything was written


def test_cli_build_with_a_text_attribute(tmp_path):
    path = tmp_path / "tx.zv"
    expected = write_text_store(path)
    cmd = [sys.executable, "-m", "napari_zarr_vectors.cli", "build", str(path), "--factors", "2,1", "2,1"]
    bad = subprocess.run([*cmd, "--agg-override", "gene=mean"], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0
    assert "--agg-override gene=mean: 'gene' is a text attribute" in bad.stderr and "only 'mode'" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert store.list_levels(path) == [0]
    run = subprocess.run([*cmd, "--agg-override", "cell=mode"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "gene mode" in run.stdout + run.stderr  # the progress names the aggregation text got
    check_levels(path, expected)


def test_layer_features_show_text_and_colour_by_a_number(tmp_path):
    path = tmp_path / "tx.zv"
    expected = write_text_store(path)
    nzv.build_pyramid(path, [(2, 1), (2, 1)])
    for level in (0, 1, 2):
        (data, kwargs, kind), *_ = layers.layers_for_store(path, level=level, density=False)
        assert kind == "points"
        features = kwargs["features"]
        gene = features["gene"]
        assert not pd.api.types.is_numeric_dtype(gene)
        if level:
            shown = {_cluster_of(p[::-1]): g for p, g in zip(data, gene, strict=True)}  # layer axes are reversed
            assert {k: (None if v is None or v != v else v) for k, v in shown.items()} == {
                k: m for k, (m, _) in expected.items()
            }
        assert kwargs["face_color"] != "gene" and "gene" not in str(kwargs.get("face_color"))


def test_text_in_a_polyline_store_is_refused_with_its_name(tmp_path):
    from zarr_vectors import building

    tracts = samples.random_walks(20)
    path = tmp_path / "tracts.zv"
    building.write_polylines(
        str(path),
        tracts,
        chunk_shape=(100.0,) * 3,
        bin_shape=(25.0,) * 3,
        vertex_attributes={"region": [np.array(["a"] * len(t)) for t in tracts]},
    )
    with pytest.raises(ValueError, match="text vertex attribute 'region' in a streamline store.*point clouds only"):
        nzv.build_pyramid(path, [(2, 1)])
    assert store.list_levels(path) == [0]


def test_reduce_takes_mode_of_text_and_refuses_the_rest():
    groups = np.array([0, 0, 0, 1, 1, 2, -1])
    values = np.array(["b", "a", "b", "x", None, None, "z"], dtype=object)
    assert aggregate.reduce(groups, values, 4, "mode").tolist() == ["b", "x", None, None]
    with pytest.raises(ValueError, match="'mean' does not apply to text values; only 'mode'"):
        aggregate.reduce(groups, values, 4, "mean")
    codes = np.array([1, 0, 1, 2, -1, -1, 3])
    assert aggregate.mode_codes(groups, codes, 4).tolist() == [1, 2, -1, -1]


def test_mode_codes_matches_the_general_mode():
    """The packed-key mode of codes equals reduce's mode over the rows that have a code (ties to the smallest)."""
    rng = np.random.default_rng(1)
    for _ in range(300):
        n_groups, width, rows = int(rng.integers(1, 40)), int(rng.integers(1, 6)), int(rng.integers(0, 200))
        groups, codes = rng.integers(-1, n_groups, rows), rng.integers(-1, width, rows)
        labelled = np.where(codes >= 0, groups, -1)
        has = aggregate.reduce(labelled, codes, n_groups, "count") > 0
        expected = np.where(has, aggregate.reduce(labelled, codes, n_groups, "mode"), -1)
        assert aggregate.mode_codes(groups, codes, n_groups).tolist() == expected.tolist()


def test_build_dock_offers_only_mode_for_text_and_builds(make_napari_viewer, qtbot, tmp_path):
    path = tmp_path / "tx.zv"
    expected = write_text_store(path)
    viewer = make_napari_viewer(show=True)
    viewer.open(str(path), plugin=PLUGIN)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Build pyramid")
    assert isinstance(widget, BuildPyramidWidget)
    assert widget.store_path == str(path.resolve())
    assert tuple(widget._modes_for["gene"].choices) == ("mode",)
    assert "mode" in widget._modes_for["cell"].choices and "mean" in widget._modes_for["cell"].choices
    assert widget.build_button.enabled, widget.build_reason.value
    widget._modes_for["cell"].value = "mode"
    assert widget.options.agg_overrides == {"cell": "mode"}
    while widget.levels_table.shape[0] > 2:
        qtbot.mouseClick(widget.remove_row_button.native, Qt.LeftButton)
    qtbot.mouseClick(widget.build_button.native, Qt.LeftButton)
    qtbot.waitUntil(lambda: widget._worker is None, timeout=120_000)
    assert widget.status.value == "done"
    assert store.list_levels(path) == [0, 1, 2]
    check_levels(path, expected)
