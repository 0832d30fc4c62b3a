"""A store is the old one or the new one after any interruption: real kill -9, Ctrl+C twice, a full disk, two writers.

Every fault here is real: a child process is killed, interrupted, or
runs out of space on a small tmpfs; nothing is raised inside it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ctrl_c_works
from napari_zarr_vectors import layers, pyramid, samples, store
from napari_zarr_vectors.store import journal

FACTORS = [(2.0, 1.0), (2.0, 1.0), (2.0, 1.0)]

CHILD = textwrap.dedent(
    """
    import sys, time
    from napari_zarr_vectors import pyramid
    path = sys.argv[1]
    print("building", flush=True)
    t = time.perf_counter()
    step = lambda p: print(f"step {p.step}", flush=True)  # noqa: E731
    if "streamlines" in path:
        pyramid.build_pyramid(path, [(2.0, 1.0), (2.0, 4.0), (2.0, 4.0)], sparsity_seed=1, progress=step)
    else:
        pyramid.build_pyramid(path, [(2.0, 1.0)] * 3, agg_mode="mean", agg_overrides={"label": "mode"}, progress=step)
    print(f"done {time.perf_counter() - t:.3f}", flush=True)
    """
)


@pytest.fixture(scope="module")
def level0(tmp_path_factory) -> Path:
    """200,000 uniform 3D points with two attributes, level 0 only (a build takes ~2 s here)."""
    path = tmp_path_factory.mktemp("crash") / "level0.zv"
    return samples.make_uniform_point_cloud(path, n=200_000, extent=1000.0, factors=None, chunk=200.0, bin_size=20.0)


@pytest.fixture
def child(tmp_path) -> Path:
    script = tmp_path / "build_child.py"
    script.write_text(CHILD)
    return script


def _start(child: Path, path: Path, **kw) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, str(child), str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_works,
        **kw,
    )
    assert proc.stdout.readline().strip() == "building"
    return proc


def _levels(path: Path) -> list[int]:
    return [lv.index for lv in store.open_info(path).levels]


def _assert_old_or_new(path: Path, old_digest: str, tree_digest, *, new_levels: int = 4) -> str:
    """What a reader sees is the old store or the whole new pyramid; then recovery leaves exactly one of them."""
    info = store.open_info(path)  # a reader, before any recovery: it must open
    seen = [lv.index for lv in info.levels]
    assert seen in ([0], list(range(new_levels))), seen
    for lv in info.levels:  # every listed level holds what its metadata says (no "1,000 vertices" reading 0)
        assert store.level_rows(path, lv.index) == lv.vertex_count
    store.read_level(path, seen[-1])  # and the coarsest reads
    assert layers.layers_for_store(path, density=False)  # the plugin opens it
    store.recover(path)  # a kill while publishing rolls forward: the reader saw the old store, now it is the new
    assert not (path / journal.JOURNAL).exists()
    after = _levels(path)
    assert after in ([0], list(range(new_levels))), after
    if after == [0]:
        assert tree_digest(path) == old_digest
        return "old"
    assert store.validate(path, level=3) == []
    return "new"


def _no_snapshots_left() -> None:
    assert not list(Path(tempfile.gettempdir()).glob("nzv-snapshot-*"))


@pytest.fixture(scope="module")
def streamlines0(tmp_path_factory) -> Path:
    """300 random-walk streamlines, level 0 only."""
    path = tmp_path_factory.mktemp("crash") / "streamlines0.zv"
    return samples.make_streamlines(path, n=300, factors=None)


#: Kills per kind, spread over the whole build.  A streamline build is slower (~12 s a kill here), so the
#: default run kills it 6 times; NAPARI_ZARR_VECTORS_FULL_FAULTS=1 runs 20 of each (about 5 minutes more).
FULL_FAULTS = os.environ.get("NAPARI_ZARR_VECTORS_FULL_FAULTS") == "1"
KILLS = {"points": 20, "streamlines": 20 if FULL_FAULTS else 6}


@pytest.mark.parametrize("kind", ["points", "streamlines"])
def test_kill_9_at_any_moment_leaves_the_old_or_the_new_store(level0, streamlines0, child, tmp_path, tree_digest, kind):
    source = level0 if kind == "points" else streamlines0
    old = tree_digest(source)
    reference = tmp_path / f"reference-{kind}.zv"
    shutil.copytree(source, reference)
    proc = _start(child, reference)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    steps = out.count("step ")
    assert steps >= 3
    # kill moments follow the build's own progress, so a slow or busy machine moves them with it:
    # after step k (0 = right at the start), then 0-0.4 s into what comes next, the last ones into publishing
    rng = np.random.default_rng(7)
    outcomes = []
    kills = KILLS[kind]
    for i in range(kills):
        after_step = (i * (steps + 1)) // kills
        path = tmp_path / f"killed-{kind}-{i}.zv"
        shutil.copytree(source, path)
        proc = _start(child, path)
        while after_step and (line := proc.stdout.readline()) and not line.startswith(f"step {after_step}"):
            pass
        time.sleep(float(rng.uniform(0.0, 0.4)))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        outcomes.append(_assert_old_or_new(path, old, tree_digest))
        assert not list(path.rglob("*.partial"))
        if outcomes[-1] == "old" and i % 4 == 0:  # a fresh build on the recovered store succeeds
            pyramid.build_pyramid(path, FACTORS)
            assert _levels(path) == [0, 1, 2, 3]
        shutil.rmtree(path)
    assert "old" in outcomes and "new" in outcomes, outcomes  # the kills landed before, during and after
    _no_snapshots_left()


def test_a_reader_during_a_build_sees_only_published_states(level0, child, tmp_path):
    path = tmp_path / "watched.zv"
    shutil.copytree(level0, path)
    proc = _start(child, path)
    seen = set()
    while proc.poll() is None:
        info = store.open_info(path)
        seen.add(tuple(lv.index for lv in info.levels))
        for lv in info.levels:
            assert lv.vertex_count > 0
    assert proc.returncode == 0, proc.stderr.read()
    seen.add(tuple(_levels(path)))
    assert seen <= {(0,), (0, 1, 2, 3)}, seen
    assert (0, 1, 2, 3) in seen


def test_a_second_writer_is_refused_naming_the_holder(level0, child, tmp_path, tree_digest):
    path = tmp_path / "shared.zv"
    shutil.copytree(level0, path)
    proc = _start(child, path)
    deadline = time.monotonic() + 60
    while not journal.journal_path(path).exists():  # the child holds the lock from its journal's first byte
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.005)
    with pytest.raises(store.StoreBusy, match=rf"process {proc.pid} on .*started"):
        pyramid.build_pyramid(path, FACTORS)
    with pytest.raises(store.StoreBusy):  # nor may anyone "recover" a live build
        store.recover(path)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert _levels(path) == [0, 1, 2, 3]
    assert store.validate(path, level=3) == []


def test_two_ctrl_c_in_a_row_leave_the_store_as_it_was(level0, child, tmp_path, tree_digest):
    old = tree_digest(level0)
    for after_step in (0, 1):  # the build's own progress times the Ctrl+C, so a quick machine cannot finish first
        path = tmp_path / f"interrupted{after_step}.zv"
        shutil.copytree(level0, path)
        proc = _start(child, path)
        while after_step and (line := proc.stdout.readline()) and not line.startswith(f"step {after_step}"):
            pass
        time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.02)  # the second Ctrl+C 20 ms later, while the first one's undo runs
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
        assert proc.returncode != 0
        assert not (path / journal.JOURNAL).exists(), "the undo was cut short"
        assert tree_digest(path) == old
        assert _levels(path) == [0]
    _no_snapshots_left()


SESSION_CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from napari_zarr_vectors import store
    path = Path(sys.argv[1])
    for _ in sys.stdin:  # one round per line: write sessions back to back until a Ctrl+C stops them
        print("running", flush=True)
        try:
            while True:
                try:
                    with store.write_session(path, "build"):
                        (path / "new_level").mkdir()
                        (path / "new_level" / "chunk").write_bytes(b"x" * 100)
                        raise RuntimeError("undo")
                except RuntimeError:
                    pass
        except KeyboardInterrupt:
            print("stopped", flush=True)
    """
)


def test_ctrl_c_at_any_moment_of_a_write_sessions_setup_or_undo_leaves_no_trace(tmp_path, tree_digest):
    """Ctrl+C swept over the lock, the journal's setup and the undo: no lock file, journal or new file stays."""
    path = samples.make_uniform_point_cloud(tmp_path / "sessions.zv", n=1000, extent=100.0, factors=None, chunk=50.0)
    before = sorted(p.name for p in path.iterdir())
    old = tree_digest(path)
    script = tmp_path / "session_child.py"
    script.write_text(SESSION_CHILD)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_works,
    )
    rng = np.random.default_rng(3)
    try:
        for _ in range(100):
            proc.stdin.write("go\n")
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == "running", proc.stderr.read()
            time.sleep(float(rng.uniform(0.0, 0.3)))  # a session here: ~10 ms of setup, ~0.25 s of undo
            proc.send_signal(signal.SIGINT)
            assert proc.stdout.readline().strip() == "stopped", proc.stderr.read()
            assert sorted(p.name for p in path.iterdir()) == before
            assert tree_digest(path) == old
    finally:
        proc.kill()
        proc.wait(timeout=60)


def _used_kib(path: Path) -> int:
    return int(subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


@pytest.fixture
def small_disk(tmp_path, level0):
    """The level-0 store on a tmpfs with room for it and ~400 KiB more: not for its pyramid."""
    mount = tmp_path / "disk"
    mount.mkdir()
    size = _used_kib(level0) + 400
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.decode().strip()}")
    shutil.copytree(level0, mount / "full.zv")
    yield mount / "full.zv"
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_gives_a_message_and_the_old_store(small_disk, tree_digest):
    path = small_disk
    old = tree_digest(path)
    with pytest.raises(pyramid.PyramidError, match="disk is full"):
        pyramid.build_pyramid(path, FACTORS, agg_mode="mean")
    assert tree_digest(path) == old
    assert not (path / journal.JOURNAL).exists()
    assert _levels(path) == [0]


@pytest.mark.parametrize("version", ["2.0.0", "0.7.0", None])
def test_stores_of_another_format_are_not_changed(level0, tmp_path, tree_digest, version):
    import json

    path = tmp_path / "other.zv"
    shutil.copytree(level0, path)
    meta = json.loads((path / "zarr.json").read_text())
    if version is None:
        del meta["attributes"]["zarr_vectors"]["zv_version"]
    else:
        meta["attributes"]["zarr_vectors"]["zv_version"] = version
    (path / "zarr.json").write_text(json.dumps(meta))
    old = tree_digest(path)
    expected = r"changes only Zarr Vectors 0\.9\.x stores" if version else "zv_version"
    with pytest.raises(store.StoreError, match=expected):
        pyramid.build_pyramid(path, FACTORS)
    assert tree_digest(path) == old


def test_a_symlink_inside_the_store_is_refused(level0, tmp_path, tree_digest):
    path = tmp_path / "linked.zv"
    shutil.copytree(level0, path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (path / "1").symlink_to(outside, target_is_directory=True)
    with pytest.raises(store.StoreError, match="symbolic link"):
        pyramid.build_pyramid(path, FACTORS)
    assert list(outside.iterdir()) == []


#: Where a link is planted (relative to the store) and whether it points to a folder or a file outside.
#: A build of ``level0`` writes 25 files below ``0/links/+1/0.0.0/c/3`` (its +1 links): the first two
#: are where the write lands, the third is in an existing array that the build only reads.
PLANTED = {
    "a chunk folder the build writes": ("0/links/+1/0.0.0/c/3", "folder"),
    "a chunk file the build writes": ("0/links/+1/0.0.0/c/3/3/3", "file"),
    "a folder in level 0's vertex chunks": ("0/vertices/c/9", "folder"),
    "a vertex chunk file of level 0": ("0/vertices/c/3/3/3", "file"),
    "the lock file": (journal.LOCK, "file"),
}


def _plant_link(path: Path, where: str, kind: str, outside: Path) -> Path:
    """A symbolic link at ``path / where`` to a folder or a file in ``outside``; the link."""
    link = path / where
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_dir():
        shutil.rmtree(link)
    elif link.exists():
        link.unlink()
    if kind == "folder":
        link.symlink_to(outside, target_is_directory=True)
    else:
        (outside / "precious").write_bytes(b"not the store's")
        link.symlink_to(outside / "precious")
    return link


def _outside_as_planted(outside: Path, kind: str) -> None:
    """Nothing landed in the outside folder, and the file a link points to still holds its bytes."""
    if kind == "folder":
        assert list(outside.iterdir()) == []
    else:
        assert [p.name for p in outside.iterdir()] == ["precious"]
        assert (outside / "precious").read_bytes() == b"not the store's"


def _refused_naming(link: Path) -> str:
    import re

    return rf"contains a symbolic link \('{re.escape(str(link))}'\).*Nothing was changed"


@pytest.mark.parametrize("where", list(PLANTED))
def test_a_symlink_anywhere_in_the_store_chunks_included_is_refused_by_a_build(level0, tmp_path, tree_digest, where):
    """Issue 26: links inside chunk folders (``c/``) were not looked for, and a build wrote through them."""
    rel, kind = PLANTED[where]
    path = tmp_path / "linked.zv"
    shutil.copytree(level0, path)
    outside = tmp_path / "outside"
    outside.mkdir()
    link = _plant_link(path.resolve(), rel, kind, outside)
    old = tree_digest(path)
    with pytest.raises(store.StoreError, match=_refused_naming(link)):
        pyramid.build_pyramid(path, FACTORS, cross_level_depth=1)
    _outside_as_planted(outside, kind)
    assert tree_digest(path) == old
    assert not (path / journal.JOURNAL).exists()
    assert link.is_symlink()


@pytest.fixture(scope="module")
def pyramided(level0, tmp_path_factory) -> Path:
    """``level0`` with levels 1-3 and their links, built by the plugin."""
    path = tmp_path_factory.mktemp("pyramided") / "pyramided.zv"
    shutil.copytree(level0, path)
    pyramid.build_pyramid(path, FACTORS)
    return path


@pytest.mark.parametrize("rel", ["2/links/+1/0.0.0/c/9", "3/vertices/c/9"])
def test_removing_a_level_refuses_a_symlink_in_a_chunk_folder(pyramided, tmp_path, tree_digest, rel):
    path = tmp_path / "linked.zv"
    shutil.copytree(pyramided, path)
    assert (path / rel).parent.is_dir()  # a chunk folder of the store as built: the removal deletes it
    outside = tmp_path / "outside"
    outside.mkdir()
    link = _plant_link(path.resolve(), rel, "folder", outside)
    old = tree_digest(path)
    with pytest.raises(store.StoreError, match=_refused_naming(link)):
        pyramid.remove_resolution_level(path, 3)
    _outside_as_planted(outside, "folder")
    assert tree_digest(path) == old
    assert _levels(path) == [0, 1, 2, 3]


def test_repair_refuses_a_symlink_in_a_chunk_folder(pyramided, tmp_path, tree_digest):
    path = tmp_path / "linked.zv"
    shutil.copytree(pyramided, path)
    (path / "0/vertices/c/3/3/3.0123abcd.partial").write_bytes(b"left by an interrupted write")  # work for repair
    outside = tmp_path / "outside"
    outside.mkdir()
    link = _plant_link(path.resolve(), "1/links/+1/0.0.0/c/9", "folder", outside)
    old = tree_digest(path)
    assert any("partial" in line for line in store.repair(path, dry_run=True))  # a dry run only reads
    with pytest.raises(store.StoreError, match=_refused_naming(link)):
        store.repair(path)
    _outside_as_planted(outside, "folder")
    assert tree_digest(path) == old


def test_recovery_refuses_a_symlink_in_a_chunk_folder_and_opening_leaves_it_alone(pyramided, tmp_path, tree_digest):
    """A hot journal (its writer gone) with work to undo: recovery deletes files, so it is refused too."""
    path = tmp_path / "linked.zv"
    shutil.copytree(pyramided, path)
    holder = {"pid": 2**22 + 7, "host": "elsewhere", "started": time.time(), "operation": "build"}
    before = journal._listing(path)
    (path / journal.JOURNAL).mkdir()
    entry = {"format": journal.JOURNAL_FORMAT, "operation": "build", "state": "writing", "holder": holder}
    journal.write_json_atomic(journal.journal_path(path), {**entry, "before": before})
    (path / "4").mkdir()  # written by the dead writer, not in its ``before``: a rollback deletes it
    (path / "4" / "unpublished").write_bytes(b"x")
    outside = tmp_path / "outside"
    outside.mkdir()
    link = _plant_link(path.resolve(), "0/vertices/c/9", "folder", outside)
    old = tree_digest(path)
    assert store.interrupted_write(path) is not None
    with pytest.raises(store.StoreError, match=_refused_naming(link)):
        store.recover(path)
    with pytest.raises(store.StoreError, match=_refused_naming(link)):
        store.repair(path)
    assert store.recover_if_interrupted(path) is None  # an open reads it as published
    _outside_as_planted(outside, "folder")
    assert tree_digest(path) == old


def test_a_hot_journal_is_reported_to_readers_and_undone_by_the_next_build(level0, child, tmp_path, tree_digest):
    path = tmp_path / "hot.zv"
    shutil.copytree(level0, path)
    proc = _start(child, path)
    deadline = time.monotonic() + 60
    # kill once the build has journaled and written a little: no fixed delay, which a loaded machine outruns
    while not (path / journal.JOURNAL / "staged").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    if not (path / journal.JOURNAL).exists():
        pytest.fail("the build finished (or never journaled) before it could be killed")
    message = store.interrupted_write(path)
    assert message and f"process {proc.pid}" in message
    summary = pyramid.build_pyramid(path, FACTORS)  # recovers first, then builds
    assert [row["level"] for row in summary["levels"]] == [0, 1, 2, 3]
    assert store.interrupted_write(path) is None
    for level in (3, 2, 1):
        pyramid.remove_resolution_level(path, level)
    assert _levels(path) == [0]
    assert store.validate(path, level=2) == []
    assert tree_digest(path / "0" / "vertices") == tree_digest(level0 / "0" / "vertices")


def test_removing_a_level_is_all_or_nothing_under_kill_9(level0, tmp_path, tree_digest):
    built = tmp_path / "built.zv"
    shutil.copytree(level0, built)
    pyramid.build_pyramid(built, FACTORS)
    script = tmp_path / "remove_child.py"
    script.write_text(
        "import sys\nfrom napari_zarr_vectors import pyramid\nprint('building', flush=True)\n"
        "pyramid.remove_resolution_level(sys.argv[1], 3)\n"
    )
    for i, delay in enumerate((0.0, 0.05, 0.1, 0.2)):
        path = tmp_path / f"rm{i}.zv"
        shutil.copytree(built, path)
        proc = _start(script, path)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        assert _levels(path) in ([0, 1, 2, 3], [0, 1, 2])
        store.recover(path)
        assert _levels(path) in ([0, 1, 2, 3], [0, 1, 2])
        assert store.validate(path, level=2) == []
        assert not (path / journal.JOURNAL).exists()


def _killed_mid_build(child: Path, path: Path) -> int:
    """Start a build on ``path`` and SIGKILL it once its journal exists; the child's pid."""
    proc = _start(child, path)
    while not journal.journal_path(path).exists():
        time.sleep(0.005)
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    return proc.pid


def test_opening_recovers_a_writable_store_and_warns_on_a_read_only_one(
    make_napari_viewer, level0, child, tmp_path, capsys, warning_notifications, monkeypatch, tree_digest
):
    from napari_zarr_vectors import cli

    old = tree_digest(level0)
    path = tmp_path / "cli.zv"
    shutil.copytree(level0, path)
    viewer = make_napari_viewer()
    # a store this process cannot write (as root chmod does not stop us, so the check is what is patched)
    pid = _killed_mid_build(child, path)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p).startswith(str(path)) else real_access(p, mode))
    viewer.open(str(path), plugin="napari-zarr-vectors")
    assert any("interrupted change" in w and f"process {pid}" in w and "recover" in w for w in warning_notifications)
    assert journal.journal_path(path).exists()  # opening a store it cannot write changed nothing
    monkeypatch.undo()
    assert cli.main(["recover", str(path)]) == 0
    assert "Undid an interrupted build" in capsys.readouterr().out
    assert not (path / journal.JOURNAL).exists() and tree_digest(path) == old
    assert cli.main(["recover", str(path)]) == 0
    assert "no interrupted change" in capsys.readouterr().out
    # a writable store: opening it undoes the interrupted build and says so
    warning_notifications.clear()
    pid = _killed_mid_build(child, path)
    viewer.open(str(path), plugin="napari-zarr-vectors")
    assert any(f"Undid an interrupted build by process {pid}" in w for w in warning_notifications)
    assert not (path / journal.JOURNAL).exists() and tree_digest(path) == old


def test_deep_zoom_names_cannot_leave_the_output_folder(tmp_path, level0):
    from napari_zarr_vectors import density

    out = tmp_path / "web" / "deep"
    (tmp_path / "web").mkdir()
    with pytest.raises(density.DensityError, match="not a plain file name"):
        density.export_deep_zoom(level0, out, axis="z", name="../../x")
    assert not list(tmp_path.rglob("x.dzi"))


def test_repair_removes_only_what_is_incomplete(level0, tmp_path, tree_digest, capsys):
    """A store damaged the way older versions left it: a level listed but empty, a stray partial file."""
    from napari_zarr_vectors import cli

    path = tmp_path / "damaged.zv"
    shutil.copytree(level0, path)
    pyramid.build_pyramid(path, FACTORS)
    level0_digest = tree_digest(path / "0" / "vertices")
    shutil.rmtree(path / "2" / "vertices" / "c")  # level 2 lists its vertices but holds none
    (path / "0" / "vertices" / "stray.abc123.partial").write_bytes(b"half")
    assert cli.main(["repair", str(path), "--dry-run"]) == 0
    report = capsys.readouterr().out
    assert "level 2:" in report and "partial" in report
    assert _levels(path) == [0, 1, 2, 3]  # a dry run changes nothing
    assert cli.main(["repair", str(path)]) == 0
    assert "removed level(s) 2, 3" in capsys.readouterr().out
    assert _levels(path) == [0, 1]
    assert store.validate(path, level=2) == []
    assert not list(path.rglob("*.partial"))
    assert tree_digest(path / "0" / "vertices") == level0_digest
    assert store.repair(path) == []  # nothing left to find
