"""``napari-zarr-vectors download``: a local copy of a store served by a real local web server.

Stores of every kind the tests write (upstream's writers and pyramids, and
a pyramid built by this plugin) are served over HTTP; the copies are
compared with the served folders byte for byte, a download is killed with
SIGKILL (and interrupted with Ctrl+C) in a real subprocess and resumed,
and the server's request log shows what each run fetched.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from conftest import KINDS, ctrl_c_works
from napari_zarr_vectors import cli, download, pyramid, samples, store
from napari_zarr_vectors._serve import StoreServer

#: What every full copy passes: upstream's strictest validation (pyramid conformance).
STRICTEST = 5


def names_of(folder: Path) -> set[str]:
    """The files below ``folder`` as relative paths; safe to poll while a download still renames them.

    ``os.walk`` skips a folder that vanishes under it, and nothing is opened, so a part file
    renamed between the listing and a read cannot fail the poll.
    """
    return {str((Path(root) / name).relative_to(folder)) for root, _dirs, names in os.walk(folder) for name in names}


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (relative path -> bytes), once nothing writes there."""
    return {name: (folder / name).read_bytes() for name in sorted(names_of(folder))}


def get_paths(server: StoreServer, store_name: str) -> list[str]:
    """The files of ``store_name`` the server was asked for (GET), as keys inside the store."""
    prefix = store_name + "/"
    return [r.path[len(prefix) :] for r in server.requests if r.method == "GET" and r.path.startswith(prefix)]


def is_data(key: str) -> bool:
    return not key.endswith("zarr.json")


@pytest.fixture(autouse=True)
def _fresh_handles(monkeypatch):
    """Short timeouts and no retries (faults show fast); no remote handle outlives a test."""
    monkeypatch.setenv("NAPARI_ZARR_VECTORS_TIMEOUT", "5")
    monkeypatch.setenv("NAPARI_ZARR_VECTORS_RETRIES", "0")
    store.forget_remote()
    yield
    store.forget_remote()


@pytest.fixture(scope="session")
def served_root(upstream_stores, tmp_path_factory) -> Path:
    """A store of every kind, a pyramid built by this plugin, a sharded store and one without attributes."""
    root = tmp_path_factory.mktemp("served")
    for kind, path in upstream_stores.items():
        shutil.copytree(path, root / f"{kind}.zv")
    samples.make_uniform_point_cloud(
        root / "plugin.zv", n=20_000, extent=1000.0, chunk=200.0, bin_size=10.0, factors=[(2.0, 1.0)] * 3
    )
    from zarr_vectors.multiresolution.coarsen import build_pyramid
    from zarr_vectors.types.points import write_points

    rng = np.random.default_rng(3)
    write_points(
        str(root / "sharded.zv"),
        rng.uniform(0, 1000, (5000, 3)).astype(np.float32),
        chunk_shape=(200.0,) * 3,
        bin_shape=(50.0,) * 3,
        shard_shape=2,
        vertex_attributes={"a": rng.uniform(0, 1, 5000).astype(np.float32)},
    )
    build_pyramid(str(root / "sharded.zv"), factors=[(2.0, 1.0)])
    store.write_point_cloud(
        root / "bare.zv", rng.uniform(0, 1000, (8000, 3)), chunk_shape=(200.0,) * 3, bin_shape=(20.0,) * 3
    )
    pyramid.build_pyramid(root / "bare.zv", [(2.0, 1.0), (2.0, 1.0)])
    return root


ALL_STORES = [*KINDS, "plugin", "sharded", "bare"]


@pytest.fixture
def server(served_root):
    with StoreServer(served_root, latency=0.0) as s:
        yield s


@pytest.mark.parametrize("name", ALL_STORES)
def test_the_files_found_from_metadata_are_the_files_on_disk(served_root, server, name):
    folder = served_root / f"{name}.zv"
    on_disk = set(files_of(folder))
    local = store.copy_plan(folder)  # listing where zarr-vectors would list, the rest from metadata
    assert local.keys == on_disk
    assert not local.optional and not local.skipped and not local.dropped
    served = store.copy_plan(server.url(folder.name))  # a web server: folder index pages, the rest from metadata
    # cells of arrays without a presence manifest may be absent (a fill value): only those are "maybe"
    assert served.keys - served.optional <= on_disk <= served.keys
    assert all(not key.endswith("zarr.json") and "/object_" in key for key in served.optional)
    assert served.metadata == {k: (folder / k).read_bytes() for k in on_disk if k.endswith("zarr.json")}


def test_without_folder_index_pages_the_format_s_names_are_probed(served_root, server):
    server.rules.fail[r"/$"] = 404  # a server that lists no folder: only files are served
    bare = served_root / "bare.zv"
    plan = store.copy_plan(server.url("bare.zv"))
    assert plan.keys == set(files_of(bare))
    assert any("/links/-1/+1." in key for key in plan.keys)  # the grown chunks' link offsets were found by probing
    # attribute names are in no metadata: without a listing they cannot be known, and the message says where to go
    with pytest.raises(store.StoreError, match=r"no folder index for '0/vertex_attributes/'.*s3://"):
        store.copy_plan(server.url("point_cloud.zv"))


@pytest.mark.parametrize("name", ["point_cloud", "line", "graph", "skeleton", "mesh", "plugin", "sharded"])
def test_a_full_download_is_the_store_byte_for_byte_and_validates(served_root, server, tmp_path, capsys, name):
    dest = tmp_path / "copy.zv"
    assert cli.main(["download", server.url(f"{name}.zv"), str(dest)]) == 0
    out, err = capsys.readouterr()
    assert files_of(dest) == files_of(served_root / f"{name}.zv")
    assert store.validate(dest, level=STRICTEST) == []
    assert store.validate(dest) == []
    assert not download.hidden_folder(dest).exists()
    assert f"to {dest}" in out and "level" in out  # the summary, then the copy's info table
    assert "files" in err  # the progress went to stderr


def test_levels_0_2_copy_only_those_levels_and_nothing_dangles(served_root, server, tmp_path):
    source = served_root / "plugin.zv"
    dest = tmp_path / "two.zv"
    assert cli.main(["download", server.url("plugin.zv"), str(dest), "--levels", "0,2", "--quiet"]) == 0
    info = store.open_info(dest)
    assert [lv.index for lv in info.levels] == [0, 2]
    assert [lv.vertex_count for lv in info.levels] == [store.open_info(source).level(i).vertex_count for i in (0, 2)]
    assert sorted(int(n) for n in store.declared_levels(store.read_root_json(dest)["attributes"])) == [0, 2]
    assert sorted(p.name for p in dest.iterdir() if p.is_dir()) == ["0", "2"]
    for level in (0, 2):  # no link family points into a level that is not there
        assert all(level + d in (0, 2) for d in store.link_deltas(dest, level))
    assert store.repair(dest, dry_run=True) == []
    # valid up to upstream's level 4; level 5 (pyramid conformance) wants levels 0..N without gaps
    for level in range(1, STRICTEST):
        assert store.validate(dest, level=level) == []
    assert store.validate(dest, level=STRICTEST) == ["Levels [0, 2], expected [0, 1]"]
    # only the levels asked for were fetched, and no link family into the others
    fetched = [k for k in get_paths(server, "plugin.zv") if is_data(k) and (source / k).is_file()]
    assert fetched and all(k.split("/")[0] in ("0", "2") for k in fetched)
    assert not any(k.startswith(("0/links/+1/", "2/links/-1/", "2/links/+1/")) for k in fetched)
    # the data files copied are the source's, byte for byte
    copied = files_of(dest)
    assert all(copied[k] == (source / k).read_bytes() for k in copied if is_data(k))
    np.testing.assert_array_equal(store.read_level(dest, 2).positions, store.read_level(source, 2).positions)


def test_levels_always_include_level_0_and_a_contiguous_subset_is_a_full_pyramid(server, tmp_path):
    dest = tmp_path / "coarse.zv"
    assert cli.main(["download", server.url("plugin.zv"), str(dest), "--levels", "1", "--quiet"]) == 0
    assert [lv.index for lv in store.open_info(dest).levels] == [0, 1]
    assert store.validate(dest, level=STRICTEST) == []
    assert download.parse_levels("2,3") == (2, 3) and download.parse_levels("all") is None


def test_fewer_levels_on_the_next_run_leave_what_the_first_run_fetched_of_the_others_out(served_root, server, tmp_path):
    dest = tmp_path / "copy.zv"
    last = max(k for k in files_of(served_root / "plugin.zv") if is_data(k))  # files are fetched in key order
    server.rules.fail[f"plugin\\.zv/{last}$"] = 404  # so the first run stops with every level (nearly) there
    assert cli.main(["download", server.url("plugin.zv"), str(dest), "--quiet"]) == 1
    first = _complete_data_files(download.hidden_folder(dest))
    assert any(k.startswith("1/") for k in first) and any(k.startswith("3/") for k in first)
    server.rules.fail.clear()
    assert cli.main(["download", server.url("plugin.zv"), str(dest), "--levels", "0,2", "--quiet"]) == 0
    assert sorted(p.name for p in dest.iterdir()) == ["0", "2", "zarr.json"]
    assert not (dest / "0" / "links" / "+1").exists() and not (dest / "2" / "links" / "-1").exists()
    assert store.repair(dest, dry_run=True) == []
    assert store.validate(dest, level=STRICTEST - 1) == []


def _start(url: str, dest: Path) -> subprocess.Popen:
    env = dict(os.environ, NAPARI_ZARR_VECTORS_RETRIES="0")
    return subprocess.Popen(
        [sys.executable, "-m", "napari_zarr_vectors.cli", "download", url, str(dest)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=ctrl_c_works,
    )


def _complete_data_files(hidden: Path) -> set[str]:
    return {
        k for k in names_of(hidden) if is_data(k) and not k.endswith(download.PART) and not k.startswith(download.STATE)
    }


def _wait_for_files(proc: subprocess.Popen, hidden: Path, count: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the download ended before it could be interrupted: {proc.stderr.read()[-2000:]}")
        if hidden.is_dir() and len(_complete_data_files(hidden)) >= count:
            return
        time.sleep(0.02)
    pytest.fail("the download made no progress")


def test_a_download_killed_with_sigkill_resumes_without_fetching_again(served_root, tmp_path):
    source = served_root / "plugin.zv"
    dest = tmp_path / "copy.zv"
    hidden = download.hidden_folder(dest)
    with StoreServer(served_root, latency=0.01) as server:  # a round trip per request, so the kill lands midway
        proc = _start(server.url("plugin.zv"), dest)
        _wait_for_files(proc, hidden, 150)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        done = _complete_data_files(hidden)
        assert not dest.exists()
        assert 150 <= len(done) < len([k for k in files_of(source) if is_data(k)])
        for key in done:  # what is there is whole
            assert (hidden / key).read_bytes() == (source / key).read_bytes()
        server.clear()
        again = _start(server.url("plugin.zv"), dest)
        out, err = again.communicate(timeout=300)
        assert again.returncode == 0, err[-3000:]
        fetched = set(get_paths(server, "plugin.zv"))
    assert not fetched & done, f"fetched again: {sorted(fetched & done)[:5]}"
    assert {k for k in files_of(source) if is_data(k)} - done <= fetched
    assert files_of(dest) == files_of(source)
    assert not hidden.exists()
    assert store.validate(dest, level=STRICTEST) == []
    assert "already here" in out


def test_ctrl_c_stops_with_whole_files_and_the_same_command_continues(served_root, tmp_path):
    source = served_root / "plugin.zv"
    dest = tmp_path / "copy.zv"
    hidden = download.hidden_folder(dest)
    with StoreServer(served_root, latency=0.03) as server:  # slow enough that the Ctrl+C lands before the end
        proc = _start(server.url("plugin.zv"), dest)
        _wait_for_files(proc, hidden, 100)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err[-3000:]
        assert "interrupted" in err and str(hidden) in err and "Traceback" not in err
        assert not dest.exists()
        assert not any(k.endswith(download.PART) for k in files_of(hidden))  # the writes in flight finished
        for key in _complete_data_files(hidden):
            assert (hidden / key).read_bytes() == (source / key).read_bytes()
        again = _start(server.url("plugin.zv"), dest)
        assert again.wait(300) == 0
    assert files_of(dest) == files_of(source)


def test_a_missing_chunk_fails_naming_the_url_and_the_file_and_the_next_run_continues(
    served_root, server, tmp_path, capsys
):
    source = served_root / "plugin.zv"
    dest = tmp_path / "copy.zv"
    hidden = download.hidden_folder(dest)
    missing = "0/vertices/c/1/1/1"
    server.rules.fail[rf"plugin\.zv/{missing}$"] = 404
    assert cli.main(["download", server.url("plugin.zv"), str(dest), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"{server.url('plugin.zv')}/{missing}" in err and "404" in err
    assert "run the same command again" in err and "Traceback" not in err
    assert not dest.exists() and hidden.is_dir()
    done = _complete_data_files(hidden)
    assert missing not in done
    server.rules.fail.clear()
    server.clear()
    assert cli.main(["download", server.url("plugin.zv"), str(dest), "--quiet"]) == 0
    fetched = {k for k in get_paths(server, "plugin.zv") if is_data(k)}
    assert missing in fetched and not fetched & done
    assert files_of(dest) == files_of(source)


def test_a_store_changed_on_the_server_since_the_interruption_is_downloaded_afresh(served_root, tmp_path, capsys):
    folder = tmp_path / "served"
    shutil.copytree(served_root / "bare.zv", folder / "bare.zv")
    dest = tmp_path / "copy.zv"
    with StoreServer(folder) as server:
        server.rules.fail[r"bare\.zv/1/vertices/c/"] = 404
        assert cli.main(["download", server.url("bare.zv"), str(dest), "--quiet"]) == 1
        server.rules.fail.clear()
        shutil.rmtree(folder / "bare.zv")  # the store is rewritten on the server: same layout, other points
        store.write_point_cloud(
            folder / "bare.zv",
            np.random.default_rng(9).uniform(0, 1000, (8000, 3)),
            chunk_shape=(200.0,) * 3,
            bin_shape=(20.0,) * 3,
        )
        pyramid.build_pyramid(folder / "bare.zv", [(2.0, 1.0), (2.0, 1.0)])
        store.forget_remote()
        capsys.readouterr()
        assert cli.main(["download", server.url("bare.zv"), str(dest), "--quiet"]) == 0
    assert "changed on the server" in capsys.readouterr().err
    assert files_of(dest) == files_of(folder / "bare.zv")


def test_an_existing_non_empty_dest_is_refused_before_anything_is_fetched(server, tmp_path, capsys):
    dest = tmp_path / "mine.zv"
    dest.mkdir()
    (dest / "notes.txt").write_text("keep me")
    assert cli.main(["download", server.url("plugin.zv"), str(dest)]) == 1
    err = capsys.readouterr().err
    assert f"Refusing to download into '{dest}': it exists and is not empty" in err
    assert server.requests == [] and (dest / "notes.txt").read_text() == "keep me"
    empty = tmp_path / "empty.zv"  # an empty folder is taken over
    empty.mkdir()
    assert cli.main(["download", server.url("bare.zv"), str(empty), "--quiet"]) == 0
    assert store.open_info(empty).kind == "point_cloud"


def test_a_local_path_is_refused_with_a_clear_message(served_root, tmp_path, capsys):
    assert cli.main(["download", str(served_root / "plugin.zv"), str(tmp_path / "copy.zv")]) == 1
    err = capsys.readouterr().err
    assert "is a local path; download copies a remote store (http(s)://, s3:// or gs://)" in err
    assert not (tmp_path / "copy.zv").exists()


def test_an_unknown_level_is_refused_naming_the_levels(server, tmp_path, capsys):
    assert cli.main(["download", server.url("plugin.zv"), str(tmp_path / "c.zv"), "--levels", "0,7"]) == 1
    assert "has no level 7; it has levels 0, 1, 2, 3" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["download", server.url("plugin.zv"), str(tmp_path / "c.zv"), "--levels", "two"])
    assert not download.hidden_folder(tmp_path / "c.zv").exists()


def test_a_hidden_folder_of_another_download_is_not_mixed_in(served_root, server, tmp_path, capsys):
    dest = tmp_path / "copy.zv"
    server.rules.fail[r"bare\.zv/0/vertices/c/0/0/0$"] = 404
    assert cli.main(["download", server.url("bare.zv"), str(dest), "--quiet"]) == 1
    capsys.readouterr()
    assert cli.main(["download", server.url("plugin.zv"), str(dest), "--quiet"]) == 1
    assert "holds an unfinished download of" in capsys.readouterr().err


@pytest.fixture
def bucket(served_root, monkeypatch):
    """moto's S3 server on a free port with the skeleton and plugin stores uploaded: a bucket lists its folders."""
    boto3 = pytest.importorskip("boto3")
    moto_server = pytest.importorskip("moto.server")
    import logging
    import socket

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="zv-download")
    uploads = [
        (f"data/{n}.zv/{k}", data)
        for n in ("skeleton", "plugin")
        for k, data in files_of(served_root / f"{n}.zv").items()
    ]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda kv: client.put_object(Bucket="zv-download", Key=kv[0], Body=kv[1]), uploads))
    try:
        yield "s3://zv-download/data"
    finally:
        store.forget_remote()
        server.stop()


def test_a_store_in_a_bucket_downloads_whole_or_by_level(served_root, bucket, tmp_path):
    whole = tmp_path / "skeleton.zv"  # link offset segments and attribute names: found by listing the bucket
    assert cli.main(["download", f"{bucket}/skeleton.zv", str(whole), "--quiet"]) == 0
    assert files_of(whole) == files_of(served_root / "skeleton.zv")
    assert store.validate(whole, level=STRICTEST) == []
    two = tmp_path / "two.zv"
    assert cli.main(["download", f"{bucket}/plugin.zv", str(two), "--levels", "0,2", "--quiet"]) == 0
    assert [lv.index for lv in store.open_info(two).levels] == [0, 2]
    assert store.repair(two, dry_run=True) == []


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_one_line_a_tenth_in_a_log_and_one_redrawn_bar_on_a_terminal():
    steps = [download.DownloadProgress(i, 200, i * 1000, 0) for i in range(0, 201)]
    log = io.StringIO()
    printer = download.TextProgress(log)
    for p in steps:
        printer(p)
    lines = log.getvalue().splitlines()
    assert len(lines) == 11 and "\r" not in log.getvalue()
    assert lines[-1].startswith("[" + "#" * 30 + "]") and "200/200 files, 200.0 kB fetched" in lines[-1]
    term = _Terminal()
    printer = download.TextProgress(term)
    for p in steps:
        printer(p)
    text = term.getvalue()
    assert text.startswith("\r[") and text.endswith("200/200 files, 200.0 kB fetched\n") and text.count("\n") == 1


@pytest.mark.parametrize(
    "key", ["0/../../outside", "../x", "/etc/passwd", "0//x", "0/./x", "C:/x", "0/a\\..\\..\\x", "0/\0"]
)
def test_a_key_that_would_leave_the_copy_is_refused_before_anything_is_written(tmp_path, key):
    root = tmp_path / "hidden"
    root.mkdir()
    with pytest.raises(download.DownloadError, match="not a path inside the store"):
        download._write_file(root, key, b"data")
    assert [p for p in tmp_path.rglob("*") if p != root] == []


def test_a_damaged_level_metadata_file_is_named_and_nothing_is_published(served_root, tmp_path, capsys):
    folder = tmp_path / "served"
    shutil.copytree(served_root / "plugin.zv", folder / "plugin.zv")
    level_json = folder / "plugin.zv" / "1" / "zarr.json"
    level_json.write_bytes(level_json.read_bytes()[:40])  # truncated mid-document
    dest = tmp_path / "copy.zv"
    with StoreServer(folder, latency=0.0) as s:
        assert cli.main(["download", s.url("plugin.zv"), str(dest), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "1/zarr.json" in err and "Traceback" not in err and "AttributeError" not in err
    assert not dest.exists()
