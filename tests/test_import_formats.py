"""Tractograms, SWC skeletons, meshes and LAS/LAZ point clouds imported as stores: the same data the field's own
library reads, bad files refused with one message, nothing left behind.

Real files from packages on the package index: nibabel's bundled test tractograms (``nibabel.testing.data_path``:
``standard.trk``, ``standard.tck``, ``complex.trk`` with per-point and per-streamline data) and navis' bundled
example neurons (``navis/data/swc/*.swc``, 4,000-5,000 nodes each) and its ``lh.obj`` neuropil mesh. No package on
the index ships a TRX, PLY, STL, LAS or LAZ file small enough (trx-python fetches its test data from the network;
trimesh's models are in its source repository only): those are written by the libraries themselves (trx-python from
nibabel's ``complex.trk``; trimesh; laspy with lazrs).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import warnings
from pathlib import Path

import laspy
import nibabel as nib
import numpy as np
import pytest
import trimesh
from nibabel.testing import data_path
from trx import trx_file_memmap as tmm

import napari_zarr_vectors as nzv
from napari_zarr_vectors import cli, importers, store
from napari_zarr_vectors.importers import swc

NIBABEL_DATA = Path(data_path)
NAVIS_DATA = Path(importlib.util.find_spec("navis").submodule_search_locations[0]) / "data"  # without importing navis
NEURONS = sorted((NAVIS_DATA / "swc").glob("*.swc"))


def no_store_left(folder: Path, name: str) -> bool:
    """Neither the store nor a temporary sibling of it is there."""
    return not [p for p in os.listdir(folder) if p == name or p.startswith(f".{name}.partial")]


def _import(source: Path, out: Path, **kw) -> importers.ImportSummary:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        summary = nzv.import_file(source, out, **kw)
    assert store.validate(out, level=2) == [], store.validate(out, level=2)
    return summary


def _objects(out: Path, level: int = 0):
    """The level's polylines per object id (parts joined in order), its vertex and object attributes per object."""
    data = store.read_level(out, level)
    lines: dict[int, list[np.ndarray]] = {}
    attrs: dict[int, dict[str, list[np.ndarray]]] = {}
    for k, oid in enumerate(data.part_objects.tolist()):
        lo, hi = data.offsets[k], data.offsets[k + 1]
        lines.setdefault(oid, []).append(data.positions[lo:hi])
        for name, values in data.vertex_attributes.items():
            attrs.setdefault(oid, {}).setdefault(name, []).append(values[lo:hi])
    joined = {oid: np.concatenate(parts) for oid, parts in lines.items()}
    per_vertex = {oid: {n: np.concatenate(v) for n, v in a.items()} for oid, a in attrs.items()}
    per_object = {}
    for name, values in data.object_attributes.items():
        for k, oid in enumerate(data.part_objects.tolist()):
            per_object.setdefault(oid, {})[name] = values[k]
    return joined, per_vertex, per_object


def _same_streamlines(out: Path, streamlines, dpp: dict, dps: dict) -> None:
    lines, per_vertex, per_object = _objects(out)
    assert sorted(lines) == list(range(len(streamlines)))
    for i, s in enumerate(streamlines):
        np.testing.assert_allclose(lines[i], np.asarray(s), rtol=0, atol=1e-5)
        for name, seq in dpp.items():
            want = np.asarray(seq[i]).reshape(len(s), -1)
            for k in range(want.shape[1]):
                got = per_vertex[i][name if want.shape[1] == 1 else f"{name}_{k}"]
                np.testing.assert_allclose(got, want[:, k], rtol=1e-6)
        for name, values in dps.items():
            want = np.asarray(values[i]).reshape(-1)
            for k in range(len(want)):
                got = per_object[i][name if len(want) == 1 else f"{name}_{k}"]
                np.testing.assert_allclose(got, want[k], rtol=1e-6)


@pytest.mark.parametrize("name", ["standard.trk", "standard.tck", "complex.trk", "standard.LPS.trk"])
def test_nibabel_tractograms_round_trip_in_ras_mm(name, tmp_path):
    source = NIBABEL_DATA / name
    summary = _import(source, tmp_path / "t.zv")
    tractogram = nib.streamlines.load(source).tractogram  # RAS+ mm, as nibabel gives them
    assert summary.kind == "streamline" and summary.objects == len(tractogram.streamlines)
    assert summary.rows_read == len(tractogram.streamlines.get_data()) and summary.levels[0] == 0
    assert len(summary.levels) >= 2  # the default pyramid was built
    assert store.open_info(tmp_path / "t.zv").kind == "streamline"
    _same_streamlines(
        tmp_path / "t.zv", tractogram.streamlines, tractogram.data_per_point, tractogram.data_per_streamline
    )
    if name == "complex.trk":
        assert summary.attributes == ("colors_0", "colors_1", "colors_2", "fa")
        assert set(summary.object_attributes) == {
            "mean_colors_0",
            "mean_colors_1",
            "mean_colors_2",
            "mean_curvature",
            "mean_torsion",
        }


def test_trx_round_trips_with_groups_kept_and_per_group_data_named(tmp_path):
    """A TRX written by trx-python from nibabel's complex.trk, with a group and per-group data."""
    trk = nib.streamlines.load(NIBABEL_DATA / "complex.trk")
    trx = tmm.TrxFile.from_tractogram(trk.tractogram, reference=trk.header)
    trx.groups["first_two"] = np.array([0, 1], np.uint32)
    trx.data_per_group["first_two"] = {"volume": np.array([3.5], np.float32)}
    tmm.save(trx, str(tmp_path / "c.trx"))
    trx.close()

    with pytest.warns(importers.DataNotKept, match="per-group data \\(first_two\\) is not kept"):
        summary = nzv.import_file(tmp_path / "c.trx", tmp_path / "t.zv")
    assert store.validate(tmp_path / "t.zv", level=2) == []
    back = tmm.load(str(tmp_path / "c.trx"))
    try:
        _same_streamlines(tmp_path / "t.zv", back.streamlines, back.data_per_vertex, back.data_per_streamline)
    finally:
        back.close()
    _, _, per_object = _objects(tmp_path / "t.zv")
    assert [int(per_object[i]["group_first_two"]) for i in range(3)] == [1, 1, 0]
    assert "group_first_two" in summary.object_attributes


def _neuron(path: Path) -> dict[str, np.ndarray]:
    """An SWC file as navis reads it (navis, the field's reader, bundles these neurons)."""
    import navis

    nodes = navis.read_swc(str(path)).nodes
    return {
        "id": nodes.node_id.to_numpy(),
        "xyz": nodes[["x", "y", "z"]].to_numpy(np.float64),
        "type": nodes.label.to_numpy(),
        "radius": nodes.radius.to_numpy(np.float64),
        "parent": nodes.parent_id.to_numpy(),
    }


def _same_skeleton(out: Path, want: dict[str, np.ndarray], trees: int) -> None:
    data = store.read_level(out, 0)
    attrs = data.vertex_attributes
    order = np.argsort(attrs["node_id"])
    want_order = np.argsort(want["id"])
    np.testing.assert_array_equal(attrs["node_id"][order], want["id"][want_order])
    np.testing.assert_allclose(data.positions[order], want["xyz"][want_order], rtol=1e-6)
    np.testing.assert_array_equal(attrs["type"][order], want["type"][want_order])
    np.testing.assert_allclose(attrs["radius"][order], want["radius"][want_order], rtol=1e-6)
    ids = attrs["node_id"]
    got_edges = {(int(ids[c]), int(ids[p])) for c, p in data.edges}  # (child, parent)
    has_parent = want["parent"] >= 0
    assert got_edges == set(zip(want["id"][has_parent].tolist(), want["parent"][has_parent].tolist(), strict=True))
    assert store.open_info(out).levels[0].object_count == trees


@pytest.mark.parametrize("index", [0, 3])
def test_navis_neurons_round_trip(index, tmp_path):
    source = NEURONS[index]
    summary = _import(source, tmp_path / "n.zv")
    want = _neuron(source)
    assert summary.kind == "skeleton" and summary.rows_read == len(want["id"]) and summary.objects == 1
    assert summary.attributes == ("type", "radius", "node_id") and len(summary.levels) >= 2
    _same_skeleton(tmp_path / "n.zv", want, 1)


def test_a_forest_in_any_row_order_is_one_object_per_tree(tmp_path):
    """Two neurons in one file, ids of the second offset, rows shuffled (children before parents)."""
    a, b = _neuron(NEURONS[1]), _neuron(NEURONS[2])
    shift = int(a["id"].max()) + 1
    b = {**b, "id": b["id"] + shift, "parent": np.where(b["parent"] >= 0, b["parent"] + shift, -1)}
    both = {k: np.concatenate([a[k], b[k]]) for k in a}
    rows = np.random.default_rng(0).permutation(len(both["id"]))
    text = ["# two neurons", "", "# id type x y z radius parent"]
    for i in rows:
        x, y, z = both["xyz"][i].tolist()
        r = float(both["radius"][i])
        text.append(f"{both['id'][i]} {both['type'][i]} {x!r} {y!r} {z!r} {r!r} {both['parent'][i]}")
    (tmp_path / "forest.swc").write_text("\n".join(text) + "\n")

    summary = _import(tmp_path / "forest.swc", tmp_path / "f.zv")
    assert summary.objects == 2
    _same_skeleton(tmp_path / "f.zv", both, 2)


def _same_mesh(out: Path, mesh: trimesh.Trimesh) -> None:
    """Same vertices (as a set) and the same triangles, by their corners' coordinates."""
    data = store.read_level(out, 0)
    got = np.round(data.positions.astype(np.float64), 4)
    want = np.round(np.asarray(mesh.vertices), 4)
    assert len(got) == len(want)
    np.testing.assert_array_equal(got[np.lexsort(got.T)], want[np.lexsort(want.T)])

    def triangles(v, f):
        return {tuple(sorted(map(tuple, v[t]))) for t in f}

    assert triangles(got, data.faces) == triangles(want, np.asarray(mesh.faces))
    assert len(data.faces) == len(mesh.faces)


def test_navis_obj_mesh_round_trips(tmp_path):
    source = NAVIS_DATA / "volumes" / "lh.obj"
    summary = _import(source, tmp_path / "m.zv")
    assert summary.kind == "mesh" and store.open_info(tmp_path / "m.zv").kind == "mesh"
    _same_mesh(tmp_path / "m.zv", trimesh.load(source, force="mesh", process=False))


@pytest.mark.parametrize("fmt", ["ply", "stl", "obj"])
def test_meshes_written_by_trimesh_round_trip(fmt, tmp_path):
    sphere = trimesh.creation.icosphere(3, radius=50.0)  # 642 vertices
    if fmt == "ply":
        sphere.visual.vertex_colors = np.column_stack(
            [np.arange(len(sphere.vertices)) % 256, np.full(len(sphere.vertices), 7), np.zeros(len(sphere.vertices))]
        ).astype(np.uint8)
    sphere.export(tmp_path / f"s.{fmt}")
    summary = _import(tmp_path / f"s.{fmt}", tmp_path / "m.zv")
    mesh = trimesh.load(tmp_path / f"s.{fmt}", force="mesh", process=False)
    if fmt == "stl":
        assert len(mesh.vertices) == 3 * len(mesh.faces)  # STL repeats corners: the import merges them
        mesh.merge_vertices()
    assert summary.rows_read == len(mesh.vertices) == 642
    _same_mesh(tmp_path / "m.zv", mesh)
    if fmt == "ply":
        assert {"red", "green", "blue"} <= set(summary.attributes)
        data = store.read_level(tmp_path / "m.zv", 0)
        key = np.round(data.positions.astype(np.float64), 4)
        red = dict(
            zip(map(tuple, np.round(np.asarray(mesh.vertices), 4)), mesh.visual.vertex_colors[:, 0], strict=True)
        )
        assert [red[tuple(k)] for k in key] == data.vertex_attributes["red"].tolist()


@pytest.mark.parametrize("suffix", ["las", "laz"])
def test_las_and_laz_keep_classification_and_intensity(suffix, tmp_path):
    rng = np.random.default_rng(3)
    header = laspy.LasHeader(point_format=1, version="1.2")
    header.scales, header.offsets = [0.01, 0.01, 0.01], [500_000.0, 4_000_000.0, 0.0]
    las = laspy.LasData(header)
    n = 3_000
    las.x = 500_000 + rng.uniform(0, 200, n)
    las.y = 4_000_000 + rng.uniform(0, 100, n)
    las.z = rng.uniform(0, 30, n)
    las.classification = rng.choice([2, 5, 6], n)
    las.intensity = rng.integers(0, 4_000, n)
    las.write(tmp_path / f"a.{suffix}")

    summary = _import(tmp_path / f"a.{suffix}", tmp_path / "p.zv")
    assert summary.attributes == ("classification", "intensity") and summary.rows_read == n
    back = laspy.read(tmp_path / f"a.{suffix}")
    want = np.column_stack([back.x, back.y, back.z])
    got, attrs = store.read_rows(tmp_path / "p.zv", 0, ["classification", "intensity"])
    order, want_order = np.lexsort(got.T), np.lexsort(want.T)
    np.testing.assert_allclose(got[order], want[want_order], rtol=0, atol=1e-6)  # float64 keeps 4,000,000.01
    np.testing.assert_array_equal(attrs["classification"][order], np.asarray(back.classification)[want_order])
    np.testing.assert_array_equal(attrs["intensity"][order], np.asarray(back.intensity)[want_order])
    coarse = store.read_level(tmp_path / "p.zv", summary.levels[-1]).vertex_attributes["classification"]
    assert set(np.unique(coarse)) <= {2, 5, 6}  # mode, never an average of classes


def test_supported_and_format_of():
    assert importers.format_of("brain.TRK") == "trk" and importers.format_of("/a/b/n.swc") == "swc"
    assert importers.format_of("t.csv.gz") == "csv" and importers.format_of("scan.laz") == "laz"
    assert set(importers.SUPPORTED.values()) == set(importers.DESCRIPTIONS)
    for suffix in (".trk", ".tck", ".trx", ".swc", ".ply", ".obj", ".stl", ".las", ".laz", ".parquet", ".csv"):
        assert suffix in importers.SUPPORTED
    with pytest.raises(importers.ImportFailed, match="Supported: .*\\.trk.*\\.swc.*\\.laz"):
        importers.format_of("brain.nii.gz")


def _bytes(name: str) -> bytes:
    return (NIBABEL_DATA / name).read_bytes()


def _trk_v1() -> bytes:
    data = bytearray(_bytes("standard.trk"))
    data[992:996] = np.int32(1).tobytes()  # version 1: no vox_to_ras
    return bytes(data)


def _swc(rows: str) -> str:
    return "# id type x y z radius parent\n" + rows


BAD = {
    "empty trk": ("t.trk", b"", ["the file is empty"]),
    "empty swc": ("n.swc", "", ["the file is empty"]),
    "empty ply": ("m.ply", b"", ["the file is empty"]),
    "truncated trk": ("t.trk", _bytes("standard.trk")[:-500], ["not a readable TRK tractogram", "truncated"]),
    "truncated tck": ("t.tck", _bytes("standard.tck")[:-50], ["not a readable TCK tractogram"]),
    "truncated ply": ("m.ply", None, ["not a readable PLY mesh"]),
    "truncated las": ("p.las", None, ["not a readable LAS point cloud"]),
    "text as trk": ("t.trk", "x,y,z\n1,2,3\n", ["not a readable TRK tractogram"]),
    "text as tck": ("t.tck", "x,y,z\n1,2,3\n", ["not a readable TCK tractogram"]),
    "text as trx": ("t.trx", "x,y,z\n1,2,3\n", ["not a readable TRX tractogram"]),
    "text as stl": ("m.stl", "solid nothing here at all\n", ["no vertices"]),
    "text as las": ("p.las", "not a point cloud at all", ["not a readable LAS point cloud"]),
    "binary as swc": ("n.swc", b"\x89PNG\r\n\x1a\n\x00\xff\xfe", ["not an SWC text file"]),
    "swc bad row": ("n.swc", _swc("1 1 0 0 0 1 -1\n2 3 1 0 0 1 1\n3 3 2 zero 0 1 2\n"), ["line 4", "'zero'"]),
    "swc short row": ("n.swc", _swc("1 1 0 0 0 1 -1\n\n2 3 1 0 0\n"), ["line 4", "has 5 values, not 7"]),
    "swc missing parent": ("n.swc", _swc("1 1 0 0 0 1 -1\n2 3 1 0 0 1 9\n"), ["line 3", "parent 9"]),
    "swc repeated id": ("n.swc", _swc("1 1 0 0 0 1 -1\n1 3 1 0 0 1 1\n"), ["line 3 repeats node id 1", "line 2"]),
    "swc loop": ("n.swc", _swc("1 1 0 0 0 1 -1\n2 3 1 0 0 1 3\n3 3 2 0 0 1 2\n"), ["loop of parents"]),
    "swc comments only": ("n.swc", "# nothing\n\n", ["holds no SWC nodes"]),
    "tck data in another file": (
        "t.tck",
        _bytes("simple.tck").replace(b"file: . ", b"file: d "),
        ["kept in another file", "single-file"],
    ),
    "trk needing a reference": ("t.trk", _trk_v1(), ["no voxel-to-RAS affine", "reference image"]),
    "unknown extension": ("brain.nii", "x", ["not one this plugin imports", ".trk", ".swc", ".ply", ".laz", ".csv"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_gives_one_message_and_leaves_no_store(case, tmp_path, capsys):
    name, content, expected = BAD[case]
    source = tmp_path / name
    if content is None:  # a truncated copy of a good file, written by the library
        if name.endswith(".ply"):
            trimesh.creation.icosphere(2).export(tmp_path / "whole.ply")
        else:
            las = laspy.LasData(laspy.LasHeader(point_format=1, version="1.2"))
            las.x, las.y, las.z = np.arange(500.0), np.arange(500.0), np.arange(500.0)
            las.write(tmp_path / "whole.las")
        whole = (tmp_path / f"whole{source.suffix}").read_bytes()
        content = whole[: len(whole) // 2 + 3]
    (source.write_bytes if isinstance(content, bytes) else source.write_text)(content)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = cli.main(["import", str(source), str(tmp_path / "out.zv"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.startswith("error: ") and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for text in expected:
        assert text in err, (text, err)
    assert "Nothing was written" in err
    assert no_store_left(tmp_path, "out.zv")


def test_an_swc_above_the_size_cap_is_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(swc, "MAX_SWC_BYTES", 1_000)
    (tmp_path / "n.swc").write_text(_swc("1 1 0 0 0 1 -1\n" * 100))
    with pytest.raises(importers.ImportFailed, match="larger than the 0 MiB this import reads whole for SWC files"):
        nzv.import_file(tmp_path / "n.swc", tmp_path / "out.zv")
    assert no_store_left(tmp_path, "out.zv")


def test_table_flags_with_another_format_are_refused(tmp_path, capsys):
    assert cli.main(["import", str(NEURONS[0]), str(tmp_path / "out.zv"), "--x", "a", "--quiet"]) == 1
    assert "--x name columns of a point table; a SWC skeleton has none" in capsys.readouterr().err
    assert no_store_left(tmp_path, "out.zv")


def test_the_command_imports_a_tractogram(tmp_path, capsys):
    assert cli.main(["import", str(NIBABEL_DATA / "complex.trk"), str(tmp_path / "t.zv"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "imported 8 vertices in 3 objects" in out and "TrackVis TRK tractogram" in out and "fa" in out
    assert "kind:   streamline" in out


@pytest.mark.parametrize(
    ("module", "source", "package"), [("nibabel", "standard.trk", "nibabel"), ("laspy", "", "laspy")]
)
def test_without_the_reader_the_message_names_the_extra(module, source, package, tmp_path):
    path = NIBABEL_DATA / source if source else tmp_path / "p.las"
    if not source:
        path.write_bytes(b"LASF" + bytes(400))
    code = (
        f"import sys; sys.modules[{module!r}] = None\n"  # as if it were not installed
        "from napari_zarr_vectors import cli\n"
        f"sys.exit(cli.main(['import', {str(path)!r}, {str(tmp_path / 'out.zv')!r}, '--quiet']))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stderr
    assert f"needs {package}, which is not installed" in run.stderr
    assert 'pip install "napari-zarr-vectors[import]"' in run.stderr and "Traceback" not in run.stderr
    assert no_store_left(tmp_path, "out.zv")
