"""What users read when things go wrong (issue 26, item 10): a full disk, damaged metadata files, and the
public functions raising only StoreError (or ValueError / TypeError for arguments).

The full-disk tests write to a real, small tmpfs (mounting needs root; they are skipped where it cannot be
mounted). Every store here is real, on disk; nothing of the plugin's is mocked.
"""

from __future__ import annotations

import contextlib
import errno
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import napari_zarr_vectors as nzv
from napari_zarr_vectors import _writer, cli, store
from napari_zarr_vectors.store import StoreError

#: What a message never shows: errno text, Python's exception names, a traceback.
RAW = ("Errno", "Traceback", "JSONDecodeError", "KeyError", "ZeroDivisionError", "MemoryError")


def _clean(message: str) -> None:
    for raw in RAW:
        assert raw not in message, message


# ---------------------------------------------------------------- a full disk


@pytest.fixture
def small_disk(tmp_path):
    """``small_disk(kib)``: a fresh tmpfs of ``kib`` KiB (unmounted afterwards); skipped where none can be mounted."""
    mounts: list[Path] = []

    def make(kib: int) -> Path:
        mount = tmp_path / f"disk{len(mounts)}"
        mount.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(mount)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.decode().strip()}")
        mounts.append(mount)
        return mount

    yield make
    for mount in mounts:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(mount: Path, leave: int = 0) -> None:
    """Fill the file system at ``mount`` until at most ``leave`` bytes are free."""
    with open(mount / "filler", "wb") as f:
        block = b"\0" * 4096
        with contextlib.suppress(OSError):
            while shutil.disk_usage(mount).free > leave:
                f.write(block)
                f.flush()


def _du_kib(path: Path) -> int:
    return int(subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


def _points(n: int) -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 1000, (n, 3)).astype(np.float32)


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    _clean(err)
    return err


def test_writing_a_store_on_a_full_disk_says_where_and_how_much(small_disk):
    mount = small_disk(1024)
    target = mount / "big.zv"
    with pytest.raises(StoreError) as err:
        store.write_point_cloud(target, _points(200_000))  # 2.4 MB of positions on a 1 MiB disk
    message = str(err.value)
    assert "disk is full" in message and str(target) in message, message
    assert "is free on the file system holding" in message and "the write needs about 2.4 MB" in message, message
    assert "Nothing was written" in message, message
    _clean(message)
    assert sorted(p.name for p in mount.iterdir()) == [], "a partial copy was left beside the target"


def test_the_napari_writer_says_the_disk_is_full(small_disk):
    mount = small_disk(1024)
    with pytest.raises(_writer.LayerNotSaved) as err:
        _writer.write_points(str(mount / "layer.zv"), _points(200_000), {})
    assert "disk is full" in str(err.value) and "free" in str(err.value), err.value
    _clean(str(err.value))


@pytest.fixture
def level0_points(tmp_path) -> Path:
    path = tmp_path / "cells.zv"
    rng = np.random.default_rng(5)
    store.write_point_cloud(
        path,
        rng.uniform(0, 2000, (20_000, 3)).astype(np.float32),
        attributes={"intensity": rng.uniform(0, 1, 20_000).astype(np.float32)},
        chunk_shape=(500.0,) * 3,
        bin_shape=(50.0,) * 3,
    )
    return path


def test_a_build_on_a_full_disk_is_one_line_and_changes_nothing(small_disk, level0_points, tree_digest, capsys):
    mount = small_disk(_du_kib(level0_points) + 600)
    path = mount / "cells.zv"
    shutil.copytree(level0_points, path)
    _fill(mount, leave=32 * 1024)
    before = tree_digest(path)
    assert cli.main(["build", str(path), "--factors", "2,1", "2,1", "--quiet"]) == 1
    err = _one_error_line(capsys)
    assert "disk is full" in err and str(path) in err and "free" in err and "undone" in err, err
    assert tree_digest(path) == before
    assert store.list_levels(path) == [0]


@pytest.fixture
def pyramid_points(level0_points) -> Path:
    nzv.build_pyramid(level0_points, [(2.0, 1.0), (2.0, 1.0)])
    return level0_points


def _data_digest(path: Path) -> dict[str, bytes]:
    """Every file of the store but its write journal's folder (``test_no_journal_is_left_by_a_full_disk``)."""
    return {str(f.relative_to(path)): f.read_bytes() for f in path.rglob("*") if f.is_file() and JOURNAL not in f.parts}


JOURNAL = ".nzv-journal"


@pytest.fixture
def full_pyramid(small_disk, pyramid_points) -> Path:
    """A copy of ``pyramid_points`` on a tmpfs with no byte left."""
    mount = small_disk(_du_kib(pyramid_points) + 600)
    path = mount / "cells.zv"
    shutil.copytree(pyramid_points, path)
    _fill(mount)
    return path


def test_remove_on_a_full_disk_is_one_line_and_keeps_the_level(full_pyramid, capsys):
    path = full_pyramid
    before = _data_digest(path)
    assert cli.main(["remove", str(path), "2"]) == 1
    err = _one_error_line(capsys)
    assert "disk is full" in err and "level is still there" in err and "0 bytes of" in err, err
    assert _data_digest(path) == before
    assert store.list_levels(path) == [0, 1, 2]
    with pytest.raises(StoreError, match="disk is full"):  # the Python API says the same
        nzv.remove_resolution_level(path, 2)


def test_no_journal_is_left_by_a_full_disk(full_pyramid):
    """The journal's record cannot be written on a full disk: nothing was written, so its folder goes too."""
    with pytest.raises(StoreError, match="disk is full"):
        nzv.remove_resolution_level(full_pyramid, 2)
    assert not (full_pyramid / JOURNAL).exists(), sorted(p.name for p in (full_pyramid / JOURNAL).iterdir())


def test_repair_on_a_full_disk_is_one_line(small_disk, pyramid_points, capsys):
    mount = small_disk(_du_kib(pyramid_points) + 600)
    path = mount / "cells.zv"
    shutil.copytree(pyramid_points, path)
    shutil.rmtree(path / "2")  # listed but missing: repair drops it from the root's lists
    _fill(mount)
    assert cli.main(["repair", str(path)]) == 1
    err = _one_error_line(capsys)
    assert "disk is full" in err and str(path) in err, err
    assert store.declared_levels(store.read_root_json(path)["attributes"]) == ["0", "1", "2"]


def test_export_dzi_on_a_full_disk_is_one_line(small_disk, level0_points, capsys):
    mount = small_disk(64)
    out = mount / "web"
    code = cli.main(["export-dzi", str(level0_points), str(out), "--axis", "z", "--pixel-size", "2", "--quiet"])
    assert code == 1
    err = _one_error_line(capsys)
    assert "disk is full" in err and str(mount) in err and "free" in err, err


def test_a_disk_full_error_names_the_quota_and_nothing_else():
    error = store.disk_full("/some/where.zv", OSError(errno.EDQUOT, "Disk quota exceeded", "/some/where.zv/x"))
    assert error is not None and "quota" in str(error) and "/some/where.zv/x" in str(error)
    assert store.disk_full("/x", OSError(errno.EACCES, "Permission denied")) is None
    wrapped = StoreError("the change failed")
    wrapped.__cause__ = OSError(errno.ENOSPC, "No space left on device")
    assert store.disk_full("/x", wrapped) is not None  # found through the chain


# ---------------------------------------------------------------- damaged metadata files


@pytest.fixture(scope="module")
def three_levels(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("messages") / "three.zv"
    rng = np.random.default_rng(1)
    store.write_point_cloud(path, rng.uniform(0, 100, (2_000, 3)), chunk_shape=(200.0,) * 3, bin_shape=(5.0,) * 3)
    nzv.build_pyramid(path, [(2.0, 1.0), (2.0, 1.0)])
    return path


def _truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[:100])


#: Ways to damage one metadata file: its name in test ids, and what to do to the file.
DAMAGE = {
    "truncated": _truncate,
    "garbage": lambda f: f.write_bytes(b"\x00\xff garbage \x13"),
    "a list": lambda f: f.write_text("[1, 2, 3]"),
    "no node type": lambda f: f.write_text(json.dumps({"zarr_format": 3, "attributes": {}})),
    "empty": lambda f: f.write_bytes(b""),
}


def _damaged(three_levels: Path, tmp_path: Path, rel: str, how: str) -> Path:
    path = tmp_path / "damaged.zv"
    shutil.copytree(three_levels, path)
    DAMAGE[how](path / rel)
    return path


@pytest.mark.parametrize("how", sorted(DAMAGE))
def test_a_damaged_level_zarr_json_is_named_not_called_root_metadata(three_levels, tmp_path, how, capsys):
    path = _damaged(three_levels, tmp_path, "1/zarr.json", how)
    with pytest.raises(StoreError) as err:
        store.open_info(path)
    message = str(err.value)
    assert f"{path}/1/zarr.json" in message and "level 1" in message, message
    assert "root metadata" not in message and "repair" in message, message
    _clean(message)
    assert cli.main(["info", str(path)]) == 1
    assert f"{path}/1/zarr.json" in _one_error_line(capsys)


@pytest.mark.parametrize("how", sorted(DAMAGE))
def test_a_damaged_array_zarr_json_is_named_when_read(three_levels, tmp_path, how):
    path = _damaged(three_levels, tmp_path, "1/vertices/zarr.json", how)
    with pytest.raises(StoreError) as err:
        store.read_level(path, 1)
    assert f"{path}/1/vertices/zarr.json" in str(err.value), err.value
    _clean(str(err.value))
    assert len(store.read_level(path, 0).positions) == 2_000  # the other levels still read


@pytest.mark.parametrize(
    ("field", "value"),
    [("vertex_count", "many"), ("vertex_count", -5), ("vertex_count", 2.5), ("chunk_shape", [0, 1, 1])],
)
def test_a_wrong_field_in_a_level_zarr_json_is_named(three_levels, tmp_path, field, value):
    path = tmp_path / "field.zv"
    shutil.copytree(three_levels, path)
    doc = json.loads((path / "2" / "zarr.json").read_text())
    doc["attributes"]["zarr_vectors_level"][field] = value
    (path / "2" / "zarr.json").write_text(json.dumps(doc))
    with pytest.raises(StoreError) as err:
        store.open_info(path)
    assert "level 2" in str(err.value) and field in str(err.value), err.value


def test_a_truncated_level_is_repaired(three_levels, tmp_path):
    path = _damaged(three_levels, tmp_path, "1/zarr.json", "truncated")
    found = store.repair(path)
    assert any("level 1" in line for line in found) and found[-1].startswith("repaired"), found
    assert [lv.index for lv in store.open_info(path).levels] == [0]


# ---------------------------------------------------------------- public functions raise StoreError


def _entry_points(path: Path) -> dict[str, object]:
    keys = np.zeros((1, 4), dtype=np.int64)
    return {
        "open_info": lambda: nzv.open_info(path),
        "list_resolution_levels": lambda: nzv.list_resolution_levels(path),
        "read_level 0": lambda: nzv.read_level(path, 0),
        "read_level 1": lambda: nzv.read_level(path, 1),
        "pyramid_summary": lambda: nzv.pyramid_summary(path),
        "suggest_factors": lambda: nzv.suggest_factors(path),
        "parents": lambda: nzv.parents(path, 0, keys),
        "children": lambda: nzv.children(path, 1, keys),
        "density_pyramid": lambda: nzv.density_pyramid(path, axis=2),
        "repair dry run": lambda: store.repair(path, dry_run=True),
        "remove_resolution_level": lambda: nzv.remove_resolution_level(path, 2),
        "build_pyramid": lambda: nzv.build_pyramid(path, [(2.0, 1.0)]),
    }


#: Metadata files of the three-level store that are damaged in turn.
FILES = ["1/zarr.json", "2/zarr.json", "0/vertices/zarr.json", "1/vertices/zarr.json", "0/links/zarr.json"]


@pytest.mark.parametrize("how", ["truncated", "a list", "no node type"])
@pytest.mark.parametrize("rel", FILES)
def test_public_functions_raise_only_store_errors_on_damaged_metadata(three_levels, tmp_path, rel, how):
    path = _damaged(three_levels, tmp_path, rel, how)
    if not (path / rel).exists():
        pytest.skip(f"{rel} is not in this store")
    wrong = []
    for name, call in _entry_points(path).items():
        try:
            call()
        except (StoreError, ValueError, TypeError) as exc:
            text = str(exc)
            if any(raw in text for raw in ("Traceback",)):
                wrong.append(f"{name}: {text}")
        except Exception as exc:  # noqa: BLE001 - the point of the test
            wrong.append(f"{name}: {type(exc).__module__}.{type(exc).__name__}: {exc}")
    assert wrong == [], "\n".join(wrong)


def test_the_cli_prints_one_line_for_a_damaged_store(three_levels, tmp_path, capsys):
    path = _damaged(three_levels, tmp_path, "0/vertices/zarr.json", "truncated")
    assert cli.main(["export-dzi", str(path), str(tmp_path / "out"), "--axis", "z", "--quiet"]) == 1
    assert f"{path}/0/vertices/zarr.json" in _one_error_line(capsys)
