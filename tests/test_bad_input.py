"""Bad input gets a message naming the problem and what to do: no traceback, and the store unchanged.

Every case runs on a real store written by zarr-vectors (a few hundred 2D
points, three levels), damaged the way a user or a disk would damage it.
CLI cases run the command itself and read what it prints.
"""

from __future__ import annotations

import contextlib
import faulthandler
import inspect
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from zarr_vectors import building
from zarr_vectors.multiresolution.coarsen import build_pyramid as upstream_build_pyramid

import napari_zarr_vectors as nzv
from napari_zarr_vectors import _reader, _writer, cli, density, drill, pyramid, store
from napari_zarr_vectors.store import StoreError


def _write_tiny(path: Path, *, levels: bool = True) -> Path:
    """300 points in a 100 x 100 square, chunks of 50, bins of 10; with ``levels``, two coarse levels."""
    rng = np.random.default_rng(0)
    building.write_points(
        str(path),
        rng.uniform(0, 100, (300, 2)).astype(np.float32),
        vertex_attributes={"value": rng.uniform(0, 1, 300).astype(np.float32)},
        chunk_shape=(50.0, 50.0),
        bin_shape=(10.0, 10.0),
    )
    if levels:
        upstream_build_pyramid(str(path), factors=[(2.0, 1.0), (2.0, 1.0)])
    return path


@pytest.fixture(scope="module")
def templates(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {"pyramid": _write_tiny(root / "pyramid.zv"), "flat": _write_tiny(root / "flat.zv", levels=False)}


@pytest.fixture
def tiny(templates, tmp_path):
    """A fresh copy of a tiny store: ``tiny()`` has levels 0-2, ``tiny(levels=False)`` level 0 only."""

    def make(levels: bool = True, name: str = "tiny.zv") -> Path:
        target = tmp_path / name
        shutil.copytree(templates["pyramid" if levels else "flat"], target)
        return target

    return make


def _edit_root(path: Path, change, file: str = "zarr.json") -> None:
    meta = json.loads((path / file).read_text())
    change(meta)
    # an infinite float as valid JSON spells it: a number too large for a float (json.dumps writes Infinity)
    (path / file).write_text(json.dumps(meta).replace("Infinity", "1e400"))


@contextlib.contextmanager
def _deadline(seconds: float):
    """Fail the test, instead of hanging it, when the body runs longer than ``seconds``.

    SIGALRM's handler runs in the main thread between bytecodes, so it
    stops a Python loop that never ends (the density pixel doubling a
    negative size); should the body hang in C code instead, faulthandler
    ends the whole run, with every thread's traceback, a while later.
    """

    def expired(signum, frame):
        pytest.fail(f"still running after {seconds:g} s: this would hang for ever")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    faulthandler.dump_traceback_later(seconds * 4, exit=True, file=sys.__stderr__)  # capsys's stderr has no fd
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        faulthandler.cancel_dump_traceback_later()


def _run_cli(capsys, *argv: str) -> tuple[int, str]:
    """``napari-zarr-vectors ARGV`` in this process: its exit status and what it printed to stderr."""
    code = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def _read_through_napari(path: Path, error_notifications: list[str]) -> str:
    """Open ``path`` through the npe2 reader; the one error notification it shows."""
    reader = _reader.get_reader(str(path))
    assert reader is not None, "the reader must claim a damaged .zv store, to say what is wrong with it"
    with _deadline(60):
        got = reader(str(path))
    assert got == [(None,)]  # read, nothing to show: no reader-choice dialog
    assert len(error_notifications) == 1
    return error_notifications[0]


# ---------------------------------------------------------------- root metadata a user or a disk damaged


def _attributes_list(meta: dict) -> None:
    meta["attributes"] = [meta["attributes"]]


def _bounds_null(meta: dict) -> None:
    meta["attributes"]["zarr_vectors"]["bounds"] = None


def _scale_strings(meta: dict) -> None:
    scene = meta["attributes"]["ome"]["attributes"]["scene"]
    scene["coordinateTransformations"] = [{"type": "scale", "scale": ["2", "2"]}]


def _zarr_format_2(meta: dict) -> None:
    meta["zarr_format"] = 2


def _root_size(name: str, value: float):
    """Set ``attributes.zarr_vectors.<name>`` (base_bin_shape, chunk_shape) to ``value`` on both axes."""

    def change(meta: dict) -> None:
        meta["attributes"]["zarr_vectors"][name] = [value, value]

    return change


def _level_bin_nan(meta: dict) -> None:
    """Level 2's NGFF translation, from which zarr-vectors derives its bin (twice it)."""
    meta["attributes"]["multiscales"][0]["datasets"][2]["coordinateTransformations"][1]["translation"] = [
        float("nan")
    ] * 2


POSITIVE = "must be a list of 2 positive finite numbers"
DAMAGED_ROOTS = {
    "attributes list": (_attributes_list, ['"attributes" is a list', "Restore zarr.json"]),
    "bounds null": (_bounds_null, ["bounds is null", "[[min per axis], [max per axis]]"]),
    "scale strings": (_scale_strings, ['scale is ["2", "2"]', "list of 2 finite numbers"]),
    "zarr_format 2": (_zarr_format_2, ["zarr_format 2", "Zarr v3 (zarr_format 3)"]),
    # issue 26, item 4: a bin or chunk size that is not positive and finite (-50 hung napari's open)
    "base bin -50": (
        _root_size("base_bin_shape", -50),
        ["attributes.zarr_vectors.base_bin_shape is [-50, -50]", POSITIVE],
    ),
    "base bin 0": (_root_size("base_bin_shape", 0), ["attributes.zarr_vectors.base_bin_shape is [0, 0]", POSITIVE]),
    "base bin NaN": (_root_size("base_bin_shape", float("nan")), ["base_bin_shape is [NaN, NaN]", POSITIVE]),
    "base bin 1e400": (
        _root_size("base_bin_shape", float("inf")),
        ["base_bin_shape is [Infinity, Infinity]", POSITIVE],
    ),
    "chunk -50": (_root_size("chunk_shape", -50), ["attributes.zarr_vectors.chunk_shape is [-50, -50]", POSITIVE]),
    "chunk 0": (_root_size("chunk_shape", 0), ["attributes.zarr_vectors.chunk_shape is [0, 0]", POSITIVE]),
    "chunk NaN": (
        _root_size("chunk_shape", float("nan")),
        ["attributes.zarr_vectors.chunk_shape is [NaN, NaN]", POSITIVE],
    ),
    "chunk 1e400": (_root_size("chunk_shape", float("inf")), ["chunk_shape is [Infinity, Infinity]", POSITIVE]),
    "level bin NaN": (
        _level_bin_nan,
        ["multiscales[0].datasets[2].coordinateTransformations[1].translation", POSITIVE],
    ),
}


def _damage(path: Path, case: str) -> list[str]:
    change, words = DAMAGED_ROOTS[case]
    _edit_root(path, change)
    return words


@pytest.mark.parametrize("case", list(DAMAGED_ROOTS))
def test_damaged_root_metadata_in_python(tiny, tree_digest, case):
    path = tiny()
    words = _damage(path, case)
    before = tree_digest(path)
    calls = {
        "open_info": lambda: nzv.open_info(path),
        "read_level": lambda: nzv.read_level(path, 0),
        "pyramid_summary": lambda: nzv.pyramid_summary(path),
        "remove_resolution_level": lambda: nzv.remove_resolution_level(path, 2),
        "coarsen_level": lambda: nzv.coarsen_level(path, 2, 3),
        "density_pyramid": lambda: nzv.density_pyramid(path),
    }
    if case in ("attributes list", "zarr_format 2"):  # listing levels needs no bounds nor transforms
        calls["list_resolution_levels"] = lambda: nzv.list_resolution_levels(path)
    for name, call in calls.items():
        with _deadline(60), pytest.raises(StoreError) as err:
            call()
        for word in [path.name, *words]:
            assert word in str(err.value), f"{name}: {err.value}"
    assert tree_digest(path) == before


@pytest.mark.parametrize("case", list(DAMAGED_ROOTS))
def test_damaged_root_metadata_on_the_command_line(tiny, tree_digest, capsys, tmp_path, case):
    path = tiny()
    words = _damage(path, case)
    before = tree_digest(path)
    for argv in (
        ["info", path],
        ["build", path, "--factors", "2,1", "--quiet"],
        ["remove", path, "2"],
        ["export-dzi", path, tmp_path / "web", "--quiet"],
    ):
        with _deadline(60):
            code, err = _run_cli(capsys, *argv)
        assert code == 1, argv
        assert err.startswith("error:") or err.startswith("\nerror:")
        for word in words:
            assert word in err, (argv, err)
    assert tree_digest(path) == before
    assert not (tmp_path / "web").exists()


@pytest.mark.parametrize("case", list(DAMAGED_ROOTS))
def test_damaged_root_metadata_in_napari(tiny, tree_digest, error_notifications, case):
    path = tiny()
    words = _damage(path, case)
    before = tree_digest(path)
    message = _read_through_napari(path, error_notifications)
    for word in [path.name, *words]:
        assert word in message
    assert tree_digest(path) == before


@pytest.mark.parametrize(("name", "value"), [("chunk_shape", -50.0), ("bin_shape", 0.0), ("bin_ratio", float("nan"))])
def test_a_level_s_own_sizes_must_be_positive_and_finite(tiny, tree_digest, name, value):
    """A level's zarr.json (``1/zarr.json``) can carry its own bin and chunk sizes: checked as the root's are."""
    path = tiny()
    _edit_root(
        path, lambda meta: meta["attributes"]["zarr_vectors_level"].update({name: [value, value]}), "1/zarr.json"
    )
    before = tree_digest(path)
    with pytest.raises(StoreError) as err:
        nzv.open_info(path)
    for word in (path.name, f"level 1's 1/zarr.json's attributes.zarr_vectors_level.{name} is", POSITIVE):
        assert word in str(err.value)
    assert tree_digest(path) == before


@pytest.mark.parametrize("value", [-50.0, 0.0, float("nan"), float("inf")], ids=["-50", "0", "NaN", "1e400"])
def test_a_bad_base_bin_shape_is_said_promptly_in_napari(make_napari_viewer, tiny, error_notifications, value):
    """Issue 26, item 4: base_bin_shape [-50, -50] made viewer.open never return (its density pixel doubled)."""
    path = tiny()
    _edit_root(path, _root_size("base_bin_shape", value))
    viewer = make_napari_viewer()
    with _deadline(30):
        opened = viewer.open(str(path), plugin="napari-zarr-vectors")
    assert opened == [] and len(viewer.layers) == 0
    assert len(error_notifications) == 1
    for word in (path.name, "attributes.zarr_vectors.base_bin_shape is", POSITIVE):
        assert word in error_notifications[0]


@pytest.mark.parametrize("value", [-50.0, 0.0, float("nan"), float("inf")], ids=["-50", "0", "NaN", "inf"])
def test_the_density_image_never_doubles_a_bad_pixel_for_ever(tiny, value):
    """The loop that grows the density pixel until the raster fits stops on a pixel that is not positive and finite."""
    from dataclasses import replace

    from napari_zarr_vectors import layers

    info = store.open_info(tiny())
    bad = replace(info, levels=(replace(info.levels[0], bin_shape=(value, value)), *info.levels[1:]))
    with _deadline(30), pytest.raises(density.DensityError, match="a pixel and a bin must be positive and finite"):
        layers.density_layer(bad)
    with _deadline(30), pytest.raises(density.DensityError, match="positive and finite"):
        layers.density_layer(info, max_pixels=0)  # no raster fits: the pixel grows until it overflows, then stops


def test_build_refuses_damaged_metadata_before_writing(tiny, tree_digest):
    path = tiny(levels=False)
    _edit_root(path, _bounds_null)
    before = tree_digest(path)
    with pytest.raises(StoreError, match="bounds is null"):
        nzv.build_pyramid(path, [(2, 1)])
    assert tree_digest(path) == before


def test_deeply_nested_zarr_json(tiny, tree_digest, capsys, error_notifications):
    """200,000 nested lists: a RecursionError in json, which is_store (documented never to raise) let out."""
    path = tiny()
    (path / "zarr.json").write_text("[" * 200_000 + "]" * 200_000)
    before = tree_digest(path)
    assert store.is_store(path) is False
    with pytest.raises(StoreError, match="nested too deeply"):
        nzv.open_info(path)
    code, err = _run_cli(capsys, "info", path)
    assert code == 1 and "nested too deeply" in err
    assert "nested too deeply" in _read_through_napari(path, error_notifications)
    assert tree_digest(path) == before


def test_huge_zarr_json_is_not_read_whole(tiny, capsys):
    """A 300 MB zarr.json (sparse here) is refused after reading at most MAX_METADATA_BYTES of it."""
    path = tiny()
    with open(path / "zarr.json", "r+b") as f:
        f.truncate(300 * 2**20)
    tracemalloc.start()
    try:
        assert store.is_store(path) is False
        with pytest.raises(StoreError, match=r"zarr.json of 314,572,800 bytes.*restore it from a copy"):
            nzv.open_info(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * store.MAX_METADATA_BYTES, f"peak {peak / 2**20:.0f} MiB"
    code, err = _run_cli(capsys, "info", path)
    assert code == 1 and "314,572,800 bytes" in err


# ---------------------------------------------------------------- removing levels


def test_remove_on_a_folder_that_is_not_a_store(tmp_path, capsys):
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(StoreError, match="not a Zarr Vectors store: it has no zarr.json"):
        nzv.remove_resolution_level(plain, 1)
    group = tmp_path / "group.zarr"
    group.mkdir()
    (group / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}}))
    with pytest.raises(StoreError, match="not a Zarr Vectors store"):
        nzv.remove_resolution_level(group, 1)
    code, err = _run_cli(capsys, "remove", plain, "1")
    assert code == 1 and "no zarr.json" in err


def test_remove_on_a_corrupt_zarr_json(tiny, tree_digest):
    path = tiny()
    (path / "zarr.json").write_text('{"zarr_format": 3, "attributes": {')
    before = tree_digest(path)
    with pytest.raises(StoreError, match="corrupt zarr.json"):
        nzv.remove_resolution_level(path, 2)
    assert tree_digest(path) == before


@pytest.fixture
def read_only(monkeypatch):
    """Make a store read-only: its write bits off, or (as root, whom they do not stop) os.access says so."""
    changed: list[tuple[Path, int]] = []

    def make(path: Path) -> None:
        if os.geteuid() != 0:
            for p in [path, *path.rglob("*")]:
                mode = stat.S_IMODE(p.stat().st_mode)
                changed.append((p, mode))
                p.chmod(mode & ~0o222)
            return
        root = str(path.resolve())
        real = os.access

        def access(p, mode, *args, **kwargs):
            inside = str(Path(p).resolve()).startswith(root)
            return False if inside and mode & os.W_OK else real(p, mode, *args, **kwargs)

        monkeypatch.setattr(os, "access", access)

    yield make
    for p, mode in reversed(changed):
        p.chmod(mode)


def test_remove_on_a_read_only_store(tiny, tree_digest, read_only, capsys):
    path = tiny()
    before = tree_digest(path)
    read_only(path)
    with pytest.raises(StoreError, match=r"is read-only .* nothing was changed"):
        nzv.remove_resolution_level(path, 2)
    code, err = _run_cli(capsys, "remove", path, "2")
    assert code == 1 and "read-only" in err
    assert tree_digest(path) == before


def test_remove_level_0_is_refused_without_impossible_advice(tiny, tree_digest, capsys):
    path = tiny()
    before = tree_digest(path)
    with pytest.raises(pyramid.PyramidError) as err:
        nzv.remove_resolution_level(path, 0)
    message = str(err.value)
    assert "Level 0" in message and "holds the data itself" in message
    assert "down to 0" not in message
    assert "remove_resolution_level(path, 2)" in message
    code, err = _run_cli(capsys, "remove", path, "0")
    assert code == 1 and "napari-zarr-vectors remove STORE 2" in err and "remove_resolution_level" not in err
    flat = tiny(levels=False, name="flat.zv")
    with pytest.raises(pyramid.PyramidError, match="has no coarse levels"):
        nzv.remove_resolution_level(flat, 0)
    assert tree_digest(path) == before


def test_remove_other_levels_is_refused(tiny, tree_digest, capsys):
    path = tiny()
    before = tree_digest(path)
    with pytest.raises(pyramid.PyramidError, match=r"Only the coarsest level \(2\).*remove levels 2 down to 1"):
        nzv.remove_resolution_level(path, 1)
    with pytest.raises(pyramid.PyramidError, match=r"no resolution level 7; it has levels \[0, 1, 2\]"):
        nzv.remove_resolution_level(path, 7)
    with pytest.raises(pyramid.PyramidError, match="level_index must be a whole number"):
        nzv.remove_resolution_level(path, "2")
    code, err = _run_cli(capsys, "remove", path, "7")
    assert code == 1 and "no resolution level 7" in err
    assert tree_digest(path) == before


def test_remove_command_in_a_real_process(tiny):
    """`napari-zarr-vectors remove STORE LEVEL`, run as a user runs it: a refusal, then a removal."""
    path = tiny()

    def run(*argv):
        return subprocess.run(
            [sys.executable, "-m", "napari_zarr_vectors.cli", "remove", *map(str, argv)],
            capture_output=True,
            text=True,
            timeout=300,
        )

    refused = run(path, 1)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "Only the coarsest level (2) can be removed" in refused.stderr
    done = run(path, 2)
    assert done.returncode == 0, done.stderr
    assert "removed level 2" in done.stdout and "levels are now 0, 1" in done.stdout
    assert store.list_levels(path) == [0, 1]


# ---------------------------------------------------------------- building


def test_factors_that_is_not_a_list(tiny, tree_digest, capsys):
    path = tiny(levels=False)
    before = tree_digest(path)
    for bad in (2, 2.0, "2,1", {"coarsen": 2}):
        with pytest.raises(ValueError, match=r"factors must be a list of \(coarsen, sparsity\) pairs") as err:
            nzv.build_pyramid(path, bad)
        assert "[(2, 1)]" in str(err.value)
    with pytest.raises(ValueError, match=r"factors\[1\] = 2 is not a \(coarsen, sparsity\) pair"):
        nzv.build_pyramid(path, [(2, 1), 2])
    assert tree_digest(path) == before


def test_two_hundred_levels(tiny, tree_digest, capsys):
    """Bins doubling 200 times outgrow every integer; past a level spanning the data, levels only repeat it."""
    path = tiny(levels=False)
    before = tree_digest(path)
    with pytest.raises(pyramid.PyramidError) as err:
        nzv.build_pyramid(path, [(2, 1)] * 200)
    message = str(err.value)
    assert "200 new levels" in message and "level 4's bins (160 x 160)" in message
    assert "at most 4 coarsening levels" in message
    code, cli_err = _run_cli(capsys, "build", path, "--factors", *["2,1"] * 200, "--quiet")
    assert code == 1 and "--factors asks for 200 new levels" in cli_err and "--suggest" in cli_err
    assert tree_digest(path) == before
    assert nzv.build_pyramid(path, [(2, 1)] * 4)["levels"][-1]["level"] == 4  # the most that helps, allowed


def test_missing_level0_chunk_is_named(tiny, tree_digest, error_notifications, capsys):
    path = tiny(levels=False)
    (path / "0" / "vertices" / "c" / "1" / "0").unlink()
    before = tree_digest(path)
    named = r"level 0 is missing data on disk: vertices chunk \(1, 0\)"
    for engine in ("vectorized", "upstream"):
        with pytest.raises(pyramid.PyramidError, match=named + r".*store is unchanged"):
            nzv.build_pyramid(path, [(2, 1)], engine=engine)
        assert tree_digest(path) == before
    with pytest.raises(StoreError, match=named):
        nzv.read_level(path, 0)
    code, err = _run_cli(capsys, "build", path, "--factors", "2,1", "--quiet")
    assert code == 1 and "vertices chunk (1, 0)" in err
    assert "vertices chunk (1, 0)" in _read_through_napari(path, error_notifications)
    assert tree_digest(path) == before


def test_missing_attribute_chunk_is_named(tiny, tree_digest):
    path = tiny(levels=False)
    (path / "0" / "vertex_attributes" / "value" / "c" / "0" / "1").unlink()
    before = tree_digest(path)
    with pytest.raises(pyramid.PyramidError, match=r"vertex_attributes/value chunk \(0, 1\)"):
        nzv.build_pyramid(path, [(2, 1)])
    assert tree_digest(path) == before


def test_argument_errors_are_value_errors_and_cancel_is_not(tiny, tree_digest):
    path = tiny(levels=False)
    before = tree_digest(path)
    for error in (StoreError, pyramid.PyramidError, density.DensityError, drill.DrillError):
        assert issubclass(error, ValueError)
    assert not issubclass(pyramid.BuildCancelled, ValueError | StoreError)
    with pytest.raises(ValueError, match="agg_mode 'avg' is unknown"):
        nzv.build_pyramid(path, [(2, 1)], agg_mode="avg")
    with pytest.raises(pyramid.BuildCancelled, match="cancelled"):
        nzv.build_pyramid(path, [(2, 1)], cancel=lambda: True)
    assert tree_digest(path) == before


def test_cli_build_names_its_options(tiny, tree_digest, capsys):
    path = tiny(levels=False)
    before = tree_digest(path)
    cases = {
        ("--agg-override", "nope=mode"): "--agg-override names 'nope'",
        ("--agg-override", "value=avg"): "--agg-override value=avg is unknown",
        ("--engine", "upstream", "--method", "cross_object_metanode"): "Use --method per_object",
        ("--strategy", "nope"): "--strategy 'nope' is unknown",
        ("--depth", "-5"): "--depth must be",
        ("--factors", "0.5,1"): "--factors value 1: coarsen factor 0.5",
    }
    for extra, words in cases.items():
        argv = ["build", path, "--quiet", *(extra if "--factors" in extra else ("--factors", "2,1", *extra))]
        code, err = _run_cli(capsys, *argv)
        assert code == 1 and words in err, (extra, err)
        for python_name in ("agg_overrides", "sparsity_strategy", "cross_level_depth", "method='"):
            assert python_name not in err
    code, err = _run_cli(capsys, "build", path, "--suggest", "1")
    assert code == 2 and "--suggest 1: give a coarsen factor above 1" in err
    assert tree_digest(path) == before


# ---------------------------------------------------------------- Deep Zoom export


def test_export_dzi_unknown_colormap_before_counting(tiny, tmp_path, capsys):
    path = tiny()
    code = cli.main(["export-dzi", str(path), str(tmp_path / "web"), "--colormap", "magam"])
    captured = capsys.readouterr()
    assert code == 1 and "Traceback" not in captured.err
    assert "--colormap 'magam' is unknown (did you mean 'magma'" in captured.err
    assert len(captured.err) < 400  # not every colormap there is
    assert "vertices" not in captured.out  # refused before any counting
    assert not (tmp_path / "web").exists()
    with pytest.raises(density.DensityError, match="colormap 'magam' is unknown"):
        nzv.export_deep_zoom(path, tmp_path / "web", colormap="magam")


def test_export_dzi_output_that_is_a_file(tiny, tmp_path, capsys, tree_digest):
    path = tiny()
    target = tmp_path / "web"
    target.write_text("not a folder")
    code, err = _run_cli(capsys, "export-dzi", path, target, "--quiet")
    assert code == 1 and f"OUT '{target}' is a file, not a folder" in err
    assert target.read_text() == "not a folder"
    with pytest.raises(density.DensityError, match="out_dir .* is a file"):
        nzv.export_deep_zoom(path, target)
    code, err = _run_cli(capsys, "export-dzi", path, target / "inside", "--quiet")
    assert code == 1 and "is a file, not a folder" in err


def test_export_dzi_missing_parent_folder(tiny, tmp_path, capsys):
    path = tiny()
    target = tmp_path / "no" / "such" / "web"
    code, err = _run_cli(capsys, "export-dzi", path, target, "--quiet")
    assert code == 1
    assert f"OUT '{target}' cannot be made" in err and f"'{target.parent}', does not exist" in err
    assert "Create that folder first" in err
    assert not (tmp_path / "no").exists()


# ---------------------------------------------------------------- saving layers, drilling


@pytest.mark.parametrize(
    ("writer", "data", "words"),
    [
        (
            _writer.write_points,
            np.array([[0.0, 1.0], [np.nan, 2.0], [3.0, 4.0], [5.0, np.inf]]),
            "2 of 4 points have NaN or infinite coordinates (rows 1 and 3)",
        ),
        (
            _writer.write_shapes,
            [np.array([[0.0, 0.0], [1.0, 1.0]]), np.array([[2.0, 2.0], [np.nan, 3.0], [4.0, 4.0]])],
            "1 vertex in 1 of 2 paths has NaN or infinite coordinates (path 1: row 1)",
        ),
        (
            _writer.write_surface,
            (np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, -np.inf, 0.0]]), np.array([[0, 1, 2]])),
            "1 of 3 surface vertices has NaN or infinite coordinates (row 2)",
        ),
    ],
)
def test_saving_a_layer_with_nan_coordinates(tmp_path, writer, data, words):
    target = tmp_path / "layer.zv"
    meta = {"shape_type": ["path", "path"]} if writer is _writer.write_shapes else {}
    with pytest.raises(_writer.LayerNotSaved) as err:
        writer(str(target), data, meta)
    assert words in str(err.value) and "nothing was written" in str(err.value)
    assert isinstance(err.value.__cause__, StoreError)
    assert list(tmp_path.iterdir()) == []


def test_saving_a_nan_layer_through_napari_keeps_the_message(make_napari_viewer, tmp_path):
    """napari reads a ValueError from a writer as "not a valid writer": ours must reach the user intact."""
    import warnings

    viewer = make_napari_viewer()  # napari finds its plugins' writers
    layer = viewer.add_points(np.array([[0.0, 1.0, 2.0], [np.nan, 1.0, 2.0], [3.0, 4.0, 5.0]]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no "not a valid writer" instead of our message
        with pytest.raises(_writer.LayerNotSaved, match=r"1 of 3 points has NaN or infinite coordinates \(row 1\)"):
            layer.save(str(tmp_path / "cells.zv"), plugin="napari-zarr-vectors")
    assert list(tmp_path.iterdir()) == []


def test_drill_key_of_the_wrong_shape(tiny, tree_digest):
    path = tiny()
    before = tree_digest(path)
    for bad in ([[1, 2]], [0, 0, 1, 2], "keys", [[0.5, 0, 1]]):
        with pytest.raises(ValueError, match=r"Drill keys must be whole numbers, 3 per vertex .* \(N, 3\) array"):
            nzv.parents(path, 0, bad)
        with pytest.raises(drill.DrillError, match="Take keys from Drill.locate"):
            nzv.children(path, 1, bad)
    with pytest.raises(drill.DrillError, match="delta must be a whole number of levels, 1 or more"):
        nzv.parents(path, 0, [[0, 0, 0]], delta=0)
    assert tree_digest(path) == before


# ---------------------------------------------------------------- the public API


def test_parents_and_children_are_public(tiny):
    path = tiny()
    d = drill.Drill(path)
    key = d.locate(2, d.positions(2, [[0, 0, 0]]))
    kids = nzv.children(path, 2, key, 2)
    assert len(kids) > 0 and kids.level == 0
    up = nzv.parents(path, 0, kids.keys, 2)
    np.testing.assert_array_equal(up.keys, key)


def test_public_functions_document_every_parameter():
    for name in nzv.__all__:
        obj = getattr(nzv, name)
        if not inspect.isfunction(obj):
            continue
        doc = inspect.getdoc(obj) or ""
        assert "Parameters\n----------" in doc and "Returns\n-------" in doc, name
        section = doc.split("Parameters\n----------\n")[1].split("Returns\n-------")[0]
        documented = {
            part.strip().lstrip("*")  # numpydoc writes **keywords
            for line in section.splitlines()
            if line and not line.startswith(" ")
            for part in line.split(":")[0].split(",")
        }
        missing = [p for p in inspect.signature(obj).parameters if p not in documented]
        assert not missing, f"{name} does not document {missing}"
