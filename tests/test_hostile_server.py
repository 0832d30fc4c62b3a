"""A hostile web server: errors quoting secrets, 3 GiB bodies, unasked gzip, redirects away, stalls (issue 26).

A real threaded ``http.server`` in the test serves a real store and
misbehaves on purpose.  Every client runs in a subprocess that reports
its own peak RSS (``ru_maxrss``), so a client that held a 3 GiB body
would show it (and would not take the test run down with it).  The store
URL carries a password, a signature and a token: none may appear in any
output, log record or exception message.  A download that meets a bad
answer must fail with a message and publish nothing.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest

from napari_zarr_vectors import store
from napari_zarr_vectors.store import limits, remote

PASSWORD, SIGNATURE, TOKEN = "s3cr3tPW", "SIGabc123", "TOKxyz789"
SECRETS = (PASSWORD, SIGNATURE, TOKEN)
HUGE = 3 * 2**30  # what the server claims and streams for a "3 GiB" body
#: Peak RSS a client may reach (kB as ru_maxrss gives it): an import of napari-zarr-vectors (without napari) and a
#: small store take ~85 MB, a 1.5 GiB chunk streamed to disk ~160 MB; one such body held would take over 1,500 MB.
RSS_BOUND_KB = 600 * 1024
SRC = str(Path(__file__).resolve().parents[1] / "src")


class HostileHandler(SimpleHTTPRequestHandler):
    """Serves the store's folder, misbehaving as ``server.mode`` says."""

    server: HostileServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass

    def _path(self) -> str:
        return unquote(urlsplit(self.path).path)

    def _stream_huge(self, filler: bytes) -> None:
        """A 200 with a 3 GiB Content-Length, its body generated on the fly until the client hangs up."""
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(self.server.huge_size))
        self.end_headers()
        block = filler * (2**20 // len(filler))
        sent = 0
        try:
            while sent < self.server.huge_size:
                self.wfile.write(block)
                sent += len(block)
                with self.server.lock:
                    self.server.huge_sent = max(self.server.huge_sent, sent)
        except OSError:
            pass  # the client hung up: what a capped client does

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        mode, path = self.server.mode, self._path()
        if mode == "error500":
            self.send_error(500, "Internal Server Error")
            return
        if mode == "slow" and "/c/" in path:
            time.sleep(3.0)
        if mode == "huge_metadata" and path.endswith("/zarr.json") and path.count("/") == 2:
            self._stream_huge(b" ")  # the store's root zarr.json: /NAME.zv/zarr.json
            return
        if mode == "huge_chunk" and path == f"/{self.server.huge_chunk}":  # one chunk file, not every one
            self._stream_huge(b"\x8f\x4a\x3a\x75")
            return
        if mode == "gzip" and "/c/" in path:
            file = Path(self.translate_path(self.path))
            if file.is_file():
                body = gzip.compress(file.read_bytes())
                self.send_response(200)
                self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
        if mode in ("redirect", "redirect_https", "same_host_redirect") and not path.startswith("/moved/"):
            host = "127.0.0.1" if mode == "same_host_redirect" else "localhost"
            scheme = "https" if mode == "redirect_https" else "http"
            self.send_response(302)
            # the target carries a signature of its own: it must not reach a message either
            location = f"{scheme}://{host}:{self.server.server_address[1]}/moved{self.path}"
            self.send_header("Location", location + ("&" if "?" in location else "?") + f"sig={SIGNATURE}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path.startswith("/moved/"):
            self.path = self.path[len("/moved") :]
        super().do_GET()

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's name
        if self.server.mode == "error500":
            self.send_error(500, "Internal Server Error")
            return
        super().do_HEAD()


class HostileServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    mode = "normal"
    huge_sent = 0
    huge_size = HUGE
    huge_chunk = ""  # the one chunk file (below the served folder) that "huge_chunk" answers with a huge body

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), lambda *a, **kw: HostileHandler(*a, directory=str(root), **kw))
        self.lock = threading.Lock()

    def url(self, name: str) -> str:
        """The store's URL with a basic-auth password and a signed query."""
        port = self.server_address[1]
        return (
            f"http://alice:{PASSWORD}@127.0.0.1:{port}/{name}?X-Amz-Signature={SIGNATURE}&X-Amz-Security-Token={TOKEN}"
        )


def a_vertex_chunk(path: Path) -> Path:
    """The first level-0 vertices chunk file of the store at ``path``."""
    return next(p for p in sorted((path / "0" / "vertices" / "c").rglob("*")) if p.is_file())


@pytest.fixture(scope="module")
def served_root(upstream_stores, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostile")
    shutil.copytree(upstream_stores["point_cloud"], root / "cloud.zv")
    return root


@pytest.fixture
def server(served_root):
    srv = HostileServer(served_root)
    srv.huge_chunk = a_vertex_chunk(served_root / "cloud.zv").relative_to(served_root).as_posix()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


# ---------------------------------------------------------------- a client in its own process

CLIENT = r"""
import io, json, logging, sys, contextlib, traceback
records = []
class Keep(logging.Handler):
    def emit(self, record):
        records.append(self.format(record))
root = logging.getLogger()
root.setLevel(logging.DEBUG)
root.addHandler(Keep())
action, url, dest = sys.argv[1], sys.argv[2], sys.argv[3]
from napari_zarr_vectors import cli, download, store
out, err = io.StringIO(), io.StringIO()
result = {"error": None, "type": None}
try:
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        if action == "info":
            result["code"] = cli.main(["info", url])
        elif action == "read":
            info = store.open_info(url)
            result["vertices"] = int(len(store.read_level(url, 0).positions))
        elif action == "download":
            r = download.download(url, dest)
            result["files"] = r.files
        elif action == "cli-download":
            result["code"] = cli.main(["download", url, dest])
except BaseException as exc:
    result["error"] = str(exc)
    result["type"] = type(exc).__name__
    result["store_error"] = isinstance(exc, store.StoreError)
    result["traceback"] = "".join(traceback.format_exception(exc))
result["stdout"], result["stderr"], result["log"] = out.getvalue(), err.getvalue(), "\n".join(records)
# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across fork and exec, so a child of a large pytest
# process would report its parent's peak; VmHWM is this process's own memory map's peak.
with open("/proc/self/status") as status:
    result["maxrss_kb"] = next(int(ln.split()[1]) for ln in status if ln.startswith("VmHWM:"))
print("RESULT " + json.dumps(result))
"""


def run_client(action: str, url: str, dest: Path | str = "-", timeout: float = 240, **env: str) -> dict:
    """Run one client action in a subprocess; its result, with its whole stdout and stderr."""
    environ = {
        **os.environ,
        "PYTHONPATH": SRC,
        "NAPARI_ZARR_VECTORS_TIMEOUT": "2",
        "NAPARI_ZARR_VECTORS_RETRIES": "0",
        **env,
    }
    proc = subprocess.run(
        [sys.executable, "-c", CLIENT, action, url, str(dest)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environ,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"the client died (exit {proc.returncode}): {proc.stderr[-3000:]}"
    result = json.loads(lines[-1][len("RESULT ") :])
    result["process"] = proc.stdout + proc.stderr
    return result


def texts(result: dict) -> list[str]:
    return [str(result.get(k) or "") for k in ("error", "traceback", "stdout", "stderr", "log", "process")]


def assert_no_secret(result: dict) -> None:
    for text in texts(result):
        leaked = [s for s in SECRETS if s in text]
        assert not leaked, f"{leaked} in: {text[:2000]}"


def assert_clear(result: dict, *words: str) -> None:
    """Failed with a StoreError (no raw exception) whose message holds ``words``."""
    assert result["error"], result
    assert result.get("store_error"), result["traceback"]
    for word in words:
        assert word in result["error"], result["error"]


def outside(root: Path, dest: Path) -> set[str]:
    """Every path under ``root`` except the destination's own (a download may write only there and beside it)."""
    keep = (dest.name, f".{dest.name}.download")
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.relative_to(root).parts[0] not in keep}


# ---------------------------------------------------------------- the modes


def test_a_healthy_server_serves_within_the_bound(server, tmp_path):
    """The baseline the other modes are held to: the same clients on the same store, answered properly."""
    url = server.url("cloud.zv")
    read = run_client("read", url)
    assert read["error"] is None, read["traceback"]
    assert read["vertices"] == 20_000
    assert read["maxrss_kb"] < RSS_BOUND_KB
    got = run_client("download", url, tmp_path / "copy.zv")
    assert got["error"] is None, got["traceback"]
    assert store.open_info(tmp_path / "copy.zv").levels[0].vertex_count == 20_000
    assert_no_secret(read)
    assert_no_secret(got)


def test_a_500_with_credentials_in_the_url_quotes_no_secret(server, tmp_path):
    server.mode = "error500"
    url = server.url("cloud.zv")
    for action in ("info", "read", "download"):
        result = run_client(action, url, tmp_path / f"{action}.zv")
        assert_no_secret(result)
        if action == "info":
            assert result["code"] == 1 and "500" in result["stderr"]
        else:
            assert_clear(result, "500")
    assert not (tmp_path / "download.zv").exists()


@pytest.mark.parametrize("action", ["info", "read", "download"])
def test_a_3_gib_zarr_json_is_refused_by_its_size_in_bounded_memory(server, tmp_path, action):
    server.mode = "huge_metadata"
    dest = tmp_path / "copy.zv"
    result = run_client(action, server.url("cloud.zv"), dest)
    assert_no_secret(result)
    if action == "info":
        assert result["code"] == 1
        message = result["stderr"]
    else:
        assert_clear(result)
        message = result["error"]
    assert "zarr.json" in message and limits.METADATA_ENV in message and "3,221,225,472 bytes" in message
    assert result["maxrss_kb"] < RSS_BOUND_KB, result["maxrss_kb"]
    assert server.huge_sent < 256 * 2**20  # refused from its Content-Length: the body was hardly read
    assert not dest.exists()


@pytest.mark.parametrize("action", ["read", "download"])
def test_a_3_gib_chunk_is_refused_by_its_size_in_bounded_memory(server, tmp_path, action):
    server.mode = "huge_chunk"
    dest = tmp_path / "copy.zv"
    result = run_client(action, server.url("cloud.zv"), dest)
    assert_no_secret(result)
    assert_clear(result, "3,221,225,472 bytes", limits.CHUNK_ENV)
    assert result["maxrss_kb"] < RSS_BOUND_KB, result["maxrss_kb"]
    assert server.huge_sent < 256 * 2**20
    assert not dest.exists()


def test_a_chunk_within_a_raised_cap_is_streamed_to_disk_not_held(server, tmp_path):
    """With the chunk cap raised above a 1.5 GiB chunk, download streams its body to disk piece by piece."""
    server.mode, server.huge_size = "huge_chunk", 3 * 2**29
    dest = tmp_path / "copy.zv"
    free = shutil.disk_usage(tmp_path).free
    if free < 20 * 2**30:
        pytest.skip(f"needs 20 GiB free under {tmp_path} to write a 1.5 GiB chunk (has {free / 2**30:.1f})")
    raised = {limits.CHUNK_ENV: str(2 * 2**30), "NAPARI_ZARR_VECTORS_TIMEOUT": "300"}
    try:
        result = run_client("download", server.url("cloud.zv"), dest, timeout=600, **raised)
        assert_no_secret(result)
        assert result["error"] is None, result["traceback"]
        # the body went to disk whole, while the client's memory stayed under the bound (held whole, the body
        # alone would pass it): a faithful copy of what the server has, garbage chunk included
        assert (dest / server.huge_chunk.split("/", 1)[1]).stat().st_size == server.huge_size
        assert result["maxrss_kb"] < RSS_BOUND_KB, result["maxrss_kb"]
    finally:
        for folder in (dest, tmp_path / ".copy.zv.download"):  # 1.5 GiB of a shared disk
            shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("action", ["read", "download"])
def test_unasked_gzip_is_refused_and_no_corrupt_copy_is_published(server, tmp_path, action):
    server.mode = "gzip"
    dest = tmp_path / "copy.zv"
    result = run_client(action, server.url("cloud.zv"), dest)
    assert_no_secret(result)
    assert_clear(result, "Content-Encoding: gzip")
    assert not dest.exists()
    hidden = tmp_path / ".copy.zv.download"
    if hidden.exists():  # what is kept for a resume holds no encoded bytes under a chunk's name
        for file in hidden.rglob("*"):
            if file.is_file() and "/c/" in file.as_posix():
                assert file.read_bytes()[:2] != b"\x1f\x8b", file


def test_a_redirect_to_another_host_is_refused_and_one_within_the_host_followed(server, tmp_path):
    url = server.url("cloud.zv")
    server.mode = "redirect"  # 127.0.0.1 -> localhost
    for action in ("read", "download"):
        result = run_client(action, url, tmp_path / f"{action}.zv")
        assert_no_secret(result)
        assert_clear(result, "redirected", "another host", "localhost", remote.REDIRECT_HOSTS_ENV)
        assert not (tmp_path / f"{action}.zv").exists()
    server.mode = "redirect_https"  # through a proxy: a tunnel, refused as well
    result = run_client("read", url)
    assert_no_secret(result)
    assert_clear(result, "redirected", "another host", "localhost", remote.REDIRECT_HOSTS_ENV)
    server.mode = "redirect"
    allowed = run_client("read", url, **{remote.REDIRECT_HOSTS_ENV: "localhost"})
    assert allowed["error"] is None, allowed["traceback"]
    assert allowed["vertices"] == 20_000
    server.mode = "same_host_redirect"
    same = run_client("read", url)
    assert same["error"] is None, same["traceback"]
    assert same["vertices"] == 20_000


def test_a_slow_server_times_out_with_a_clear_message(server, tmp_path):
    server.mode = "slow"
    for action in ("read", "download"):
        result = run_client(action, server.url("cloud.zv"), tmp_path / f"{action}.zv", NAPARI_ZARR_VECTORS_TIMEOUT="1")
        assert_no_secret(result)
        assert_clear(result, "did not answer within 1 s", "NAPARI_ZARR_VECTORS_TIMEOUT")
    assert not (tmp_path / "download.zv").exists()


def test_an_index_page_naming_paths_outside_writes_nothing_outside(served_root, tmp_path):
    """A folder index listing $HOME, .., absolute paths and other hosts: the copy stays inside its destination."""
    hostile = tmp_path / "served"
    shutil.copytree(served_root / "cloud.zv", hostile / "cloud.zv")
    names = ["$HOME", "..", "../..", "/etc", "~", "%2e%2e", "..%2f..%2fescaped", "http://elsewhere.example/x", "C:"]
    links = "".join(f'<a href="{n}">{n}</a>' for n in names)
    for folder in ("cloud.zv/0/vertex_attributes", "cloud.zv/0"):
        target = hostile / folder / "index.html"
        existing = "".join(f'<a href="{p.name}/">{p.name}/</a>' for p in (hostile / folder).iterdir())
        target.write_text(f"<html><body>{links}{existing}</body></html>")
    srv = HostileServer(hostile)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        before = outside(tmp_path, tmp_path / "copy.zv")
        result = run_client("cli-download", srv.url("cloud.zv"), tmp_path / "copy.zv")
    finally:
        srv.shutdown()
        srv.server_close()
    assert_no_secret(result)
    assert "Traceback" not in result["stderr"] and result["type"] is None, result["traceback"]
    assert result["code"] in (0, 1)
    assert outside(tmp_path, tmp_path / "copy.zv") == before  # nothing written beside the destination
    assert not (Path.home() / "x").exists() or (Path.home() / "x").stat().st_mtime < time.time() - 600
    if result["code"] == 0:
        copied = {p.name for p in (tmp_path / "copy.zv").rglob("*")}
        assert not copied & {"$HOME", "~", "etc", "escaped", "x", "C:", "index.html"}


# ---------------------------------------------------------------- local stores: the same caps


def _sparse(path: Path, size: int) -> None:
    with open(path, "wb") as fh:
        fh.truncate(size)  # a 3 GiB file that takes no disk


@pytest.fixture
def local_copy(upstream_stores, tmp_path) -> Path:
    path = tmp_path / "cloud.zv"
    shutil.copytree(upstream_stores["point_cloud"], path)
    return path


def test_a_local_3_gib_level_zarr_json_is_refused_by_its_size(local_copy):
    _sparse(local_copy / "0" / "vertices" / "zarr.json", HUGE)
    result = run_client("read", str(local_copy))
    assert_clear(result, "zarr.json", "3,221,225,472 bytes", limits.METADATA_ENV)
    assert result["maxrss_kb"] < RSS_BOUND_KB


def test_a_local_3_gib_chunk_is_refused_by_its_size(local_copy):
    _sparse(a_vertex_chunk(local_copy), HUGE)
    result = run_client("read", str(local_copy))
    assert_clear(result, "3,221,225,472 bytes", limits.CHUNK_ENV)
    assert result["maxrss_kb"] < RSS_BOUND_KB


def test_a_3_kb_garbage_chunk_is_refused_before_decoding(local_copy):
    garbage = b"\x8f\x4a\x3a\x75" + bytes(np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8))
    a_vertex_chunk(local_copy).write_bytes(garbage)
    local = run_client("read", str(local_copy))
    assert_clear(local, "declares 1,966,754,447 values in 3,004 bytes")
    assert local["maxrss_kb"] < RSS_BOUND_KB  # it tried a 14.6 GiB allocation before
    srv = HostileServer(local_copy.parent)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        served = run_client("read", srv.url("cloud.zv"))
    finally:
        srv.shutdown()
        srv.server_close()
    assert_no_secret(served)
    assert_clear(served, "declares 1,966,754,447 values in 3,004 bytes")
    assert served["maxrss_kb"] < RSS_BOUND_KB


# ---------------------------------------------------------------- the codec checks, on zarr arrays


def _array(path: Path, codec: object, dtype: str = "float32") -> Path:
    import zarr

    arr = zarr.create_array(str(path), shape=(1000,), chunks=(1000,), dtype=dtype, compressors=[codec])
    arr[:] = np.arange(1000, dtype=dtype)
    return path / "c" / "0"


def _read(path: Path):
    import zarr

    return zarr.open_array(str(path), mode="r")[:]


def test_a_zstd_frame_declaring_more_than_its_chunk_is_refused_before_decompressing(tmp_path):
    from zarr.codecs import ZstdCodec

    chunk = _array(tmp_path / "a.zarr", ZstdCodec())
    np.testing.assert_array_equal(_read(tmp_path / "a.zarr"), np.arange(1000, dtype="float32"))
    raw = bytearray(chunk.read_bytes())
    # frame header descriptor: 8-byte content size, single segment; then the size 2**40
    raw[4:5] = bytes([0xE0])
    chunk.write_bytes(bytes(raw[:5]) + (2**40).to_bytes(8, "little") + bytes(raw[6:]))
    with pytest.raises(limits.CorruptChunkError, match="declares 1,099,511,627,776 bytes"):
        _read(tmp_path / "a.zarr")


def test_a_blosc_header_declaring_more_than_its_chunk_is_refused(tmp_path):
    from zarr.codecs import BloscCodec

    chunk = _array(tmp_path / "b.zarr", BloscCodec())
    raw = bytearray(chunk.read_bytes())
    raw[4:8] = (2**31).to_bytes(4, "little")
    chunk.write_bytes(bytes(raw))
    with pytest.raises(limits.CorruptChunkError, match="declares 2,147,483,648 bytes"):
        _read(tmp_path / "b.zarr")


def test_a_gzip_bomb_stops_inflating_at_the_chunk_s_declared_size(tmp_path):
    from zarr.codecs import GzipCodec

    chunk = _array(tmp_path / "g.zarr", GzipCodec())
    np.testing.assert_array_equal(_read(tmp_path / "g.zarr"), np.arange(1000, dtype="float32"))
    chunk.write_bytes(gzip.compress(bytes(64 * 2**20)))  # 64 MiB of zeros, for a chunk of 4,000 bytes
    with pytest.raises(limits.CorruptChunkError, match="inflates to more than 4,000 bytes"):
        _read(tmp_path / "g.zarr")
