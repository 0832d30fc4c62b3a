"""A local static web server for stores, for tests, benchmarks and trying remote opening.

It serves a folder the way a plain web server or a bucket's public HTTP
endpoint does (GET and HEAD, byte ranges), and records every request so
a test can count what a view fetched.  It can add a fixed latency to
every request (a cloud round trip), answer chosen paths with an error
status, or stall on them (a network that hangs).

    with StoreServer(folder, latency=0.05) as server:
        url = server.url("points.zv")
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit


@dataclass
class Request:
    """One request the server answered: method, path below the served folder, status."""

    method: str
    path: str
    status: int


@dataclass
class _Rules:
    latency: float = 0.0
    fail: dict[str, int] = field(default_factory=dict)  # regex on the path -> status
    stall: dict[str, float] = field(default_factory=dict)  # regex on the path -> seconds


class _Handler(SimpleHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def handle(self) -> None:
        with self.server.lock:
            self.server.inflight += 1
            self.server.max_inflight = max(self.server.max_inflight, self.server.inflight)
        try:
            super().handle()
        finally:
            with self.server.lock:
                self.server.inflight -= 1

    def _rel(self) -> str:
        return unquote(urlsplit(self.path).path).lstrip("/")

    def _prelude(self) -> bool:
        """Latency, stalls and injected failures; True when the request was answered here."""
        rules, rel = self.server.rules, self._rel()
        if rules.latency:
            time.sleep(rules.latency)
        for pattern, seconds in list(rules.stall.items()):
            if re.search(pattern, rel):
                time.sleep(seconds)
        for pattern, status in list(rules.fail.items()):
            if re.search(pattern, rel):
                self._record(status)
                self.send_error(status)
                return True
        return False

    def _record(self, status: int) -> None:
        with self.server.lock:
            self.server.requests.append(Request(self.command, self._rel(), int(status)))

    def send_response(self, code: int, message: str | None = None) -> None:
        if code < 400:
            self._record(code)
        super().send_response(code, message)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        if code == HTTPStatus.NOT_FOUND:
            self._record(code)
        super().send_error(code, message, explain)

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's name
        if not self._prelude():
            super().do_HEAD()

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self._prelude():
            return
        rng = self.headers.get("Range")
        if not rng:
            super().do_GET()
            return
        self._send_range(rng)

    def _send_range(self, header: str) -> None:
        path = Path(self.translate_path(self.path))
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
        if not path.is_file() or match is None:
            self.send_error(HTTPStatus.NOT_FOUND if not path.is_file() else HTTPStatus.BAD_REQUEST)
            return
        data = path.read_bytes()
        first, last = match.groups()
        if first == "":  # a suffix: the last N bytes
            start, end = max(0, len(data) - int(last)), len(data) - 1
        else:
            start, end = int(first), min(int(last) if last else len(data) - 1, len(data) - 1)
        if start >= len(data) or start > end:
            self.send_error(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            return
        body = data[start : end + 1]
        self.send_response(HTTPStatus.PARTIAL_CONTENT)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # a reader opens many connections at once; the default backlog of 5 drops them
    rules: _Rules
    requests: list[Request]
    lock: threading.Lock
    inflight: int = 0
    max_inflight: int = 0


class StoreServer:
    """Serves ``root`` on 127.0.0.1 (a free port) from a background thread; a context manager."""

    def __init__(self, root: str | os.PathLike[str], *, latency: float = 0.0, port: int = 0) -> None:
        self.root = Path(root).absolute()
        handler = lambda *a, **kw: _Handler(*a, directory=str(self.root), **kw)  # noqa: E731
        self._server = _Server(("127.0.0.1", port), handler)
        self._server.rules = _Rules(latency=float(latency))
        self._server.requests = []
        self._server.lock = threading.Lock()
        self._thread = threading.Thread(target=self._server.serve_forever, name="StoreServer", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def rules(self) -> _Rules:
        """``latency`` (seconds added to every request), ``fail`` and ``stall`` (path regex -> status / seconds)."""
        return self._server.rules

    def url(self, rel: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{rel.lstrip('/')}"

    @property
    def requests(self) -> list[Request]:
        with self._server.lock:
            return list(self._server.requests)

    @property
    def max_inflight(self) -> int:
        """Most connections open at once since the last ``clear()``."""
        return self._server.max_inflight

    def clear(self) -> None:
        with self._server.lock:
            self._server.requests.clear()
            self._server.max_inflight = self._server.inflight

    def start(self) -> StoreServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> StoreServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def free_port() -> int:
    """A port nothing listens on (for a refused connection)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
