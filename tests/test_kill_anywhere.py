"""kill -9 at every filesystem write of ``repair``, ``export-dzi`` and the writer: the old state or the new one.

A child process counts its own writes below a work folder with a Python
audit hook (``open`` for writing, ``os.rename``/``os.replace``,
``os.remove``, ``os.rmdir``, ``os.mkdir``, ``shutil.rmtree``,
``os.truncate``) and sends itself ``SIGKILL`` (or ``SIGINT``, a real
Ctrl+C) just before its N-th one.  The parent runs it once to count the
writes, then for N spread over all of them (every N with
``NAPARI_ZARR_VECTORS_FULL_FAULTS=1``).  After each kill the target must be
the old state or the complete new one, and after the next run nothing may
be left beside it: no ``*.partial`` file, no temporary folder, no journal.
Everything is real: stores on disk, processes killed by the kernel.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import ctrl_c_works
from napari_zarr_vectors import _writer, density, samples, store
from napari_zarr_vectors.store import journal

CHILD = textwrap.dedent(
    """
    import json, os, signal, sys, threading
    sys.dont_write_bytecode = True
    op, n, how, root, args = sys.argv[1], int(sys.argv[2]), sys.argv[3], os.path.realpath(sys.argv[4]), sys.argv[5]
    args = json.loads(args)
    import numpy as np
    import PIL.Image, PIL.PngImagePlugin  # noqa: F401  (imported before the count starts)
    import zarr_vectors.building  # noqa: F401
    from napari_zarr_vectors import density, store
    if op == "layer":
        from napari_zarr_vectors import _writer

    WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    lock, seen = threading.Lock(), [0]

    def target(event, a):
        if event == "open":
            return (a[0], -1) if isinstance(a[2], int) and a[2] & WRITE else None
        if event == "os.rename":  # os.replace too
            return a[0], a[2]
        if event in ("os.remove", "os.rmdir", "shutil.rmtree"):
            return a[0], a[1]
        if event == "os.mkdir":
            return a[0], a[2]
        if event == "os.truncate":
            return a[0], -1
        return None

    def hook(event, a):
        t = target(event, a)
        if t is None or isinstance(t[0], int):
            return
        path, dir_fd = os.fsdecode(t[0]), t[1]
        if not os.path.isabs(path):
            base = os.readlink(f"/proc/self/fd/{dir_fd}") if isinstance(dir_fd, int) and dir_fd >= 0 else os.getcwd()
            path = os.path.join(base, path)
        if path != root and not path.startswith(root + os.sep):
            return
        with lock:
            seen[0] += 1
            hit = seen[0] == n
        if hit:
            os.kill(os.getpid(), signal.SIGKILL if how == "kill" else signal.SIGINT)

    data = np.load(args["input"]) if "input" in args else None
    sys.addaudithook(hook)
    try:
        if op == "write":
            store.write_point_cloud(args["target"], data, attributes={"intensity": data[:, 0].copy()})
        elif op == "layer":  # the napari writer contribution (napari flips the axes: z, y, x)
            _writer.write_points(args["target"], data[:, ::-1], {"features": {"intensity": data[:, 0].copy()}})
        elif op == "repair":
            store.repair(args["target"])
        elif op == "dzi":
            density.export_deep_zoom(args["store"], args["out"], axis="z", pixel_size=4.0, tile_size=64, name="cells")
    except KeyboardInterrupt:
        print(json.dumps({"writes": seen[0], "interrupted": True}), flush=True)
        sys.exit(130)
    print(json.dumps({"writes": seen[0]}), flush=True)
    """
)

FULL = os.environ.get("NAPARI_ZARR_VECTORS_FULL_FAULTS") == "1"
#: Kills per operation, spread evenly over its writes (every write with NAPARI_ZARR_VECTORS_FULL_FAULTS=1).
#: A child takes ~2 s here (most of it imports), so 40 kills are about 1.5 minutes an operation.
KILLS = 40


@pytest.fixture(scope="module")
def child(tmp_path_factory) -> Path:
    script = tmp_path_factory.mktemp("kill") / "child.py"
    script.write_text(CHILD)
    return script


def _run(child: Path, op: str, root: Path, n: int = 0, how: str = "kill", **args) -> subprocess.CompletedProcess:
    """The child doing ``op``; with ``n``, a SIGKILL (``how="int"``: SIGINT) just before its ``n``-th write in root."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    argv = [sys.executable, str(child), op, str(n), how, str(root), json.dumps({k: str(v) for k, v in args.items()})]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, preexec_fn=ctrl_c_works)


def _writes(child: Path, op: str, root: Path, **args) -> int:
    """How many writes ``op`` makes below ``root`` when nothing stops it (it runs to completion)."""
    done = _run(child, op, root, **args)
    assert done.returncode == 0, done.stderr
    writes = json.loads(done.stdout.strip().splitlines()[-1])["writes"]
    assert writes > 0
    return writes


def _moments(total: int, kills: int = KILLS, *, head: int = 0) -> list[int]:
    """Which writes to kill at: every one, or about ``kills``: the first ``head``, the rest spread evenly, the last 4.

    The last writes are where the writer and export-dzi publish (renames
    into place, a marker's removal); ``head`` covers an operation whose
    publish comes early (repair: lock, journal, staged metadata and publish
    come first, then the removed levels are deleted, file by file).
    """
    if FULL or total <= kills:
        return list(range(1, total + 1))
    spread = np.linspace(head + 1, total, max(kills - head, 2)).round()
    return sorted(set(range(1, head + 1)) | {int(n) for n in spread} | set(range(max(1, total - 3), total + 1)))


def _killed(done: subprocess.CompletedProcess) -> bool:
    assert done.returncode in (0, -signal.SIGKILL), done.stderr
    return done.returncode == -signal.SIGKILL


def _digest(path: Path, *, skip: tuple[str, ...] = ()) -> str:
    """``tree_digest`` of a folder, leaving out the names in ``skip`` at its top."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file() and p.relative_to(path).parts[0] not in skip):
        h.update(str(f.relative_to(path)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


# ---------------------------------------------------------------- the writer


@pytest.fixture(scope="module")
def positions(tmp_path_factory) -> Path:
    """5,000 points in a 1000-unit cube, saved where the child reads them (outside its work folder)."""
    path = tmp_path_factory.mktemp("input") / "points.npy"
    rng = np.random.default_rng(5)
    np.save(path, rng.uniform(0, 1000, (5_000, 3)))
    return path


def _complete_store(target: Path, data: np.ndarray) -> None:
    """``target`` is the whole store: it validates, reads back the points, and names itself by its final name."""
    assert store.validate(target, level=2) == []
    got = store.read_level(target, 0).positions
    assert got.shape == data.shape
    np.testing.assert_allclose(got[np.lexsort(got.T)], data[np.lexsort(data.T)], rtol=1e-6)
    root = json.loads((target / "zarr.json").read_text())
    assert root["attributes"]["ome"]["name"] == target.name.removesuffix(".zv")
    for meta in target.rglob("zarr.json"):  # the temporary name is written nowhere
        assert "partial" not in meta.read_text(), meta


def _write(op: str, target: Path, data: np.ndarray) -> None:
    """What the child does for ``op``, here."""
    if op == "write":
        store.write_point_cloud(target, data, attributes={"intensity": data[:, 0].copy()})
    else:
        _writer.write_points(str(target), data[:, ::-1], {"features": {"intensity": data[:, 0].copy()}})


@pytest.mark.parametrize("op", ["write", "layer"])
def test_kill_9_at_every_write_of_a_new_store(child, positions, tmp_path, op):
    data = np.load(positions)
    root = tmp_path / "counted"
    root.mkdir()
    target = root / "cells.zv"
    total = _writes(child, op, root, input=positions, target=target)
    _complete_store(target, data)
    outcomes = []
    for n in _moments(total, KILLS if op == "write" else KILLS // 2):
        shutil.rmtree(root)
        root.mkdir()
        killed = _killed(_run(child, op, root, n, input=positions, target=target))
        if target.exists():  # the old state (nothing) or the whole new store: never a part of one
            _complete_store(target, data)
        outcomes.append("new" if target.exists() else "old")
        assert killed or target.exists()
        # the next run (this process) removes what the killed one left beside the target: its process is gone
        if outcomes[-1] == "old":
            _write(op, target, data)
        else:
            with pytest.raises((store.StoreError, _writer.LayerNotSaved), match="exists and is not empty"):
                _write(op, target, data)
        assert sorted(p.name for p in root.iterdir()) == ["cells.zv"], n
        _complete_store(target, data)
    assert "old" in outcomes and "new" in outcomes, outcomes


def test_ctrl_c_at_any_write_leaves_no_temporary_folder(child, positions, tmp_path):
    data = np.load(positions)
    root = tmp_path / "counted"
    root.mkdir()
    target = root / "cells.zv"
    total = _writes(child, "write", root, input=positions, target=target)
    for n in _moments(total, 8):
        shutil.rmtree(root)
        root.mkdir()
        done = _run(child, "write", root, n, how="int", input=positions, target=target)
        assert done.returncode in (0, 130), done.stderr
        left = sorted(p.name for p in root.iterdir())
        assert left in ([], ["cells.zv"]), (n, left)  # no .cells.zv.partial-* folder, even without a next run
        if left:
            _complete_store(target, data)


def test_the_next_writer_removes_only_temporaries_of_dead_processes(positions, tmp_path):
    """A temporary whose process is alive (or on another host, or named without a pid) is never touched."""
    data = np.load(positions)
    target = tmp_path / "cells.zv"
    pid, host = store.temp_sibling(target).name.split(".partial-", 1)[1].rsplit("-", 1)[0].split("-", 1)
    assert int(pid) == os.getpid() and host
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    try:
        names = {
            "dead": f".cells.zv.partial-{dead_pid}-{host}-0123abcd",
            "live": f".cells.zv.partial-{sleeper.pid}-{host}-4567cdef",
            "elsewhere": f".cells.zv.partial-{dead_pid}-another-machine-89abcdef",
            "old naming": ".cells.zv.partial-3fd2c09d",
            "another target": f".other.zv.partial-{dead_pid}-{host}-0123abcd",
        }
        for name in names.values():
            (tmp_path / name / "0").mkdir(parents=True)
        store.write_point_cloud(target, data)
        left = {p.name for p in tmp_path.iterdir()}
        assert names["dead"] not in left
        assert left == {"cells.zv", *(v for k, v in names.items() if k != "dead")}
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_full_disk_leaves_no_temporary_folder(positions, tmp_path):
    """On a tmpfs too small for the store: a message saying the disk is full, and all the space back."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1200k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        rng = np.random.default_rng(1)
        big = rng.uniform(0, 1000, (200_000, 3))
        with pytest.raises(store.StoreError, match=r"disk is full.*Nothing was written"):
            store.write_point_cloud(mount / "cells.zv", big, chunk_shape=(100.0,) * 3)
        assert list(mount.iterdir()) == []
        with pytest.raises(_writer.LayerNotSaved, match="is full"):  # the napari writer path says the same
            _writer.write_points(str(mount / "layer.zv"), big, {})
        assert list(mount.iterdir()) == []
        assert shutil.disk_usage(mount).used < 64 * 1024  # the partial store's space is free again
        store.write_point_cloud(mount / "small.zv", big[:1000])  # and a store that fits is written
        assert [p.name for p in mount.iterdir()] == ["small.zv"]
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


# ---------------------------------------------------------------- repair


@pytest.fixture(scope="module")
def damaged(tmp_path_factory) -> Path:
    """A 3-level pyramid with level 2's vertices gone and ``*.partial`` files in and outside chunk folders."""
    path = tmp_path_factory.mktemp("damaged") / "damaged.zv"
    # few chunks, so the removed levels are few files: the kills land in the session, not only in deleting them
    samples.make_uniform_point_cloud(
        path, n=20_000, extent=1000.0, chunk=500.0, bin_size=25.0, factors=[(2.0, 1.0)] * 3
    )
    shutil.rmtree(path / "2" / "vertices" / "c")
    cell = next(p for p in sorted((path / "0" / "vertices" / "c").rglob("*")) if p.is_file())
    for partial in (
        cell.with_name(f"{cell.name}.0123abcd.partial"),
        path / "0" / "vertices" / "stray.4567cdef.partial",
        path / "1" / "links" / "x.89abcdef.partial",
        path / "3" / "vertices" / "y.0123abcd.partial",  # inside a level repair removes
    ):
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.write_bytes(b"left by an interrupted cell write")
    return path


def test_kill_9_at_every_write_of_repair(child, damaged, tmp_path):
    old = _digest(damaged)
    reference = tmp_path / "reference" / "damaged.zv"
    shutil.copytree(damaged, reference)
    store.repair(reference)
    assert [lv.index for lv in store.open_info(reference).levels] == [0, 1]
    assert not list(reference.rglob("*.partial"))
    new = _digest(reference)
    root = tmp_path / "counted"
    path = root / "damaged.zv"
    shutil.copytree(damaged, path)
    total = _writes(child, "repair", root, target=path)
    assert _digest(path) == new
    outcomes = []
    for n in _moments(total, head=28):  # its first ~28 writes: lock, journal, staged metadata, publish
        shutil.rmtree(root)
        shutil.copytree(damaged, path)
        _killed(_run(child, "repair", root, n, target=path))
        store.recover(path)  # what opening the store or the next change does first: undo, or finish publishing
        state = _digest(path, skip=(journal.LOCK,))  # the lock file may stay (docs/safety.md); it holds nothing
        assert state in (old, new), f"killed before write {n} of {total}: neither the old store nor the repaired one"
        outcomes.append("old" if state == old else "new")
        store.repair(path)  # the next run
        assert _digest(path, skip=(journal.LOCK,)) == new
        assert [p.name for p in root.iterdir()] == ["damaged.zv"]  # nothing beside the store
        assert not (path / journal.JOURNAL).exists() and not list(path.rglob("*.partial"))
        # the lock file goes with the next write session; one that had nothing to change may leave it (empty)
        assert not (path / journal.LOCK).exists() or (path / journal.LOCK).stat().st_size == 0
    assert "old" in outcomes and "new" in outcomes, outcomes


# ---------------------------------------------------------------- export-dzi


@pytest.fixture(scope="module")
def small_store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("dzi") / "cells.zv"
    return samples.make_uniform_point_cloud(path, n=5_000, extent=400.0, chunk=100.0, bin_size=25.0, factors=None)


def _export_state(out: Path, reference: Path) -> str:
    """``old`` (nothing), ``new`` (the whole export, as the reference), or ``half`` (a marked tile folder)."""
    dzi, files = out / "cells.dzi", out / "cells_files"
    visible = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    if not visible:
        return "old"
    assert "cells_files" in visible, f"a descriptor without its tiles: {visible}"
    if (files / density.INCOMPLETE).exists():
        if dzi.exists():
            assert dzi.read_bytes() == (reference / "cells.dzi").read_bytes()
        return "half"
    assert visible == ["cells.dzi", "cells_files"], f"tiles without a descriptor and without the marker: {visible}"
    assert _digest(files) == _digest(reference / "cells_files")
    assert dzi.read_bytes() == (reference / "cells.dzi").read_bytes()
    return "new"


def test_kill_9_at_every_write_of_export_dzi(child, small_store, tmp_path):
    reference = tmp_path / "reference"
    density.export_deep_zoom(small_store, reference, axis="z", pixel_size=4.0, tile_size=64, name="cells")
    out = tmp_path / "out"
    out.mkdir()
    total = _writes(child, "dzi", out, store=small_store, out=out)
    assert _export_state(out, reference) == "new"
    outcomes = []
    for n in _moments(total):
        shutil.rmtree(out)
        out.mkdir()
        _killed(_run(child, "dzi", out, n, store=small_store, out=out))
        outcomes.append(_export_state(out, reference))
        # the next run (this process) replaces a half output and removes the killed one's temporaries
        density.export_deep_zoom(small_store, out, axis="z", pixel_size=4.0, tile_size=64, name="cells")
        assert sorted(p.name for p in out.iterdir()) == ["cells.dzi", "cells_files"], n  # no temporaries
        assert _export_state(out, reference) == "new"
    # a kill before the last write (the marker's removal) leaves the marked half: "new" needs no kill at all
    assert set(outcomes) == {"old", "half"} and outcomes[-1] == "half", outcomes


def test_a_complete_export_is_still_refused_and_a_foreign_folder_is_never_replaced(small_store, tmp_path):
    out = tmp_path / "out"
    density.export_deep_zoom(small_store, out, axis="z", pixel_size=4.0, tile_size=64, name="cells")
    with pytest.raises(density.DensityError, match="already exists"):
        density.export_deep_zoom(small_store, out, axis="z", pixel_size=4.0, tile_size=64, name="cells")
    (out / "mine_files").mkdir()  # someone's folder without the marker: refused, untouched
    (out / "mine_files" / "keep").write_bytes(b"x")
    with pytest.raises(density.DensityError, match="already exists"):
        density.export_deep_zoom(small_store, out, axis="z", pixel_size=4.0, tile_size=64, name="mine")
    assert (out / "mine_files" / "keep").read_bytes() == b"x"


def test_ctrl_c_at_any_write_of_export_dzi_leaves_nothing_or_the_whole_export(child, small_store, tmp_path):
    reference = tmp_path / "reference"
    density.export_deep_zoom(small_store, reference, axis="z", pixel_size=4.0, tile_size=64, name="cells")
    out = tmp_path / "out"
    out.mkdir()
    total = _writes(child, "dzi", out, store=small_store, out=out)
    for n in _moments(total, 6):  # the last 4 are the publish: Ctrl+C waits for it
        shutil.rmtree(out)
        out.mkdir()
        done = _run(child, "dzi", out, n, how="int", store=small_store, out=out)
        assert done.returncode in (0, 130), done.stderr
        assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [], n  # its temporaries went too
        assert _export_state(out, reference) in ("old", "new"), n
