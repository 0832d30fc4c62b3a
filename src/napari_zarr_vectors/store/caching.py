"""The session cache in front of a remote store: nothing is fetched twice in a session, nothing is written.

A zarr ``WrapperStore`` over the upstream obstore backend's ``ObjectStore``
(``access.py`` makes one per remote store and process).  Metadata is kept
for the session, chunk bytes up to a budget; a web server that cannot list
gets its listings from the store's own metadata and index pages.

Every whole file a remote store gives is fetched by ``fetch`` or
``stream`` here, the one place that trusts nothing about the answer: a
body the server encoded unasked (``Content-Encoding``) is refused, and
one larger than its cap (``limits``) is refused from its declared size
before a byte of it is read, and again while reading if it runs over.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable
from typing import Any

from zarr.storage import WrapperStore

from .errors import RemoteStoreError
from .limits import limit_for, too_large
from .metadata import declared_levels, is_metadata_key
from .remote import CACHE_BYTES, CLOSING, RemoteError, can_list, connections, index_page_names, redact, shown

#: Bytes read from a response body at a time (a download writes each to disk before the next).
PIECE_BYTES = 4 * 2**20


async def _open_body(inner: Any, url: str, key: str, limit: int | None) -> Any:
    """The answer for ``key`` with its body unread, or None (404); refused when encoded unasked or over its cap."""
    import obstore

    try:
        resp = await obstore.get_async(inner.store, key)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    where = f"{shown(url)}/{key}"
    encoding = str(resp.attributes.get("Content-Encoding") or "").strip().lower()
    if encoding not in ("", "identity"):
        raise RemoteStoreError(
            f"'{where}': the server sent this file encoded (Content-Encoding: {encoding[:40]}), which this plugin "
            "did not ask for; its bytes are not the file's. It was refused and nothing of it was kept. Configure "
            "the server to send the store's files as they are (for example nginx: gzip off for them), or copy the "
            "store from its bucket."
        )
    limit = limit_for(key) if limit is None else limit
    size = int(resp.meta.get("size") or 0)
    if size > limit:
        raise too_large(where, size, limit, key)
    return resp


async def _pieces(resp: Any, url: str, key: str, limit: int | None) -> AsyncIterator[Any]:
    """A body in pieces of about ``PIECE_BYTES``, stopped (refused) as soon as it passes ``limit``."""
    limit = limit_for(key) if limit is None else limit
    total = 0
    async for piece in resp.stream(min_chunk_size=PIECE_BYTES):
        total += len(piece)
        if total > limit:
            raise too_large(f"{shown(url)}/{key}", None, limit, key, declared=False)
        yield piece


async def fetch(inner: Any, url: str, key: str, limit: int | None = None) -> bytearray | None:
    """The whole file ``key`` of the remote store ``inner`` (a zarr ObjectStore), or None when it has none.

    Refused (``RemoteStoreError``, ``limits.TooLargeError``) when encoded
    unasked or larger than ``limit`` (default: its cap in ``limits``).
    """
    resp = await _open_body(inner, url, key, limit)
    if resp is None:
        return None
    size = int(resp.meta.get("size") or 0)
    out = bytearray()
    if size:
        out = bytearray(size)  # filled in place: the body is held once, not once per piece and again joined
    filled = 0
    async for piece in _pieces(resp, url, key, limit):
        if filled + len(piece) > len(out):
            out[filled:] = piece  # the server sent more than it announced (within the cap): grow
        else:
            out[filled : filled + len(piece)] = piece
        filled += len(piece)
    del out[filled:]
    return out


async def stream(inner: Any, url: str, key: str, limit: int | None = None) -> AsyncIterator[Any] | None:
    """The file ``key`` as pieces (to write to disk one by one), or None when it has none; checked as ``fetch``."""
    resp = await _open_body(inner, url, key, limit)
    if resp is None:
        return None
    return _pieces(resp, url, key, limit)


class _Stats:
    def __init__(self) -> None:
        self.requests = 0
        self.cached = 0
        self.bytes = 0
        self.missing: list[str] = []  # chunk keys the server had no file for (zarr reads those as empty)
        self.lock = threading.Lock()


class CachingStore(WrapperStore):
    """A read-only zarr store that remembers every answer: nothing is fetched twice in a session.

    Metadata (``zarr.json``) is kept for the session; chunk bytes up to
    ``max_bytes``, least recently used dropped first.  Concurrent
    requests for one key share a single fetch.  A store that cannot
    list (plain HTTP) lists a store's levels from its root metadata.
    """

    def __init__(self, store: Any, url: str, max_bytes: int = CACHE_BYTES) -> None:
        super().__init__(store)
        self.url = url
        self.max_bytes = int(max_bytes)
        self.stats = _Stats()
        self._meta: dict[Any, Any] = {}
        self._data: OrderedDict[Any, Any] = OrderedDict()
        self._nbytes = 0
        self._lock = threading.Lock()
        self._inflight: dict[Any, asyncio.Future] = {}
        self._slots: dict[Any, asyncio.Semaphore] = {}

    def _slot(self) -> asyncio.Semaphore:
        """This event loop's bound on requests in flight (a semaphore belongs to one loop)."""
        if CLOSING.is_set():
            raise RemoteError(f"'{shown(self.url)}': not read, napari is closing.")
        loop = asyncio.get_running_loop()
        slot = self._slots.get(loop)
        if slot is None:
            slot = self._slots[loop] = asyncio.Semaphore(connections())
        return slot

    def __str__(self) -> str:
        # zarr logs (DEBUG) and reprs its groups' store paths with this: obstore's spelling holds the full URL
        return redact(super().__str__(), self.url)

    def __repr__(self) -> str:
        return f"CachingStore('{shown(self.url)}')"

    @property
    def read_only(self) -> bool:
        return True

    def with_read_only(self, read_only: bool = False) -> CachingStore:
        # zarr opens mode "r" through this; a copy would start with an empty cache
        if not read_only:
            self._check_writable()
        return self

    @property
    def supports_writes(self) -> bool:
        return False

    @property
    def supports_deletes(self) -> bool:
        return False

    def _check_writable(self) -> None:
        raise RemoteError(f"'{shown(self.url)}' is a remote store, read-only here.")

    def _remember(self, key: Any, value: Any) -> None:
        with self._lock:
            if is_metadata_key(key[0]):
                self._meta[key] = value
                return
            size = len(value) if value is not None else 0
            if size > self.max_bytes:
                return
            self._data[key] = value
            self._nbytes += size
            while self._nbytes > self.max_bytes and self._data:
                _, old = self._data.popitem(last=False)
                self._nbytes -= len(old) if old is not None else 0

    def _recall(self, key: Any) -> tuple[bool, Any]:
        with self._lock:
            if key in self._meta:
                return True, self._meta[key]
            if key in self._data:
                self._data.move_to_end(key)
                return True, self._data[key]
        return False, None

    async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
        ck = (key, repr(byte_range))
        hit, value = self._recall(ck)
        if hit:
            with self.stats.lock:
                self.stats.cached += 1
            return value
        pending = self._inflight.get(ck)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except Exception:  # noqa: BLE001 - that fetch belonged to an earlier read: this one asks afresh
                pass
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._inflight[ck] = future
        try:
            with self.stats.lock:
                self.stats.requests += 1
            try:
                async with self._slot():
                    value = await self._fetch(key, prototype, byte_range)
            except FileNotFoundError:
                value = None
            with self.stats.lock:
                self.stats.bytes += len(value) if value is not None else 0
                if value is None and not is_metadata_key(key):
                    self.stats.missing.append(key)
            if value is not None or is_metadata_key(key):  # a missing chunk may be uploaded yet: ask again later
                self._remember(ck, value)
            future.set_result(value)
            return value
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: a failure nobody else awaited is not "never retrieved"
            raise
        finally:
            if self._inflight.get(ck) is future:  # a later fetch of the key may have taken the slot
                del self._inflight[ck]

    async def _fetch(self, key: str, prototype: Any, byte_range: Any) -> Any:
        """One request: a whole file through ``fetch`` (checked and capped), a byte range as zarr asks."""
        if byte_range is not None:
            return await self._store.get(key, prototype, byte_range)
        raw = await fetch(self._store, self.url, key)
        return None if raw is None else prototype.buffer.from_bytes(raw)

    async def get_partial_values(self, prototype: Any, key_ranges: Iterable[tuple[str, Any]]) -> list[Any]:
        return list(await asyncio.gather(*(self.get(k, prototype, r) for k, r in key_ranges)))

    async def getsize(self, key: str) -> int:
        """A file's size: from the cache when its bytes are there, else one HEAD request (kept)."""
        hit, value = self._recall((key, "None"))
        if hit and value is not None:
            return len(value)
        hit, size = self._recall((key, "size"))
        if hit:
            return size
        with self.stats.lock:
            self.stats.requests += 1
        async with self._slot():
            size = int(await self._store.getsize(key))
        with self._lock:
            self._meta[(key, "size")] = size
        return size

    async def exists(self, key: str) -> bool:
        from zarr.core.buffer import default_buffer_prototype

        if is_metadata_key(key):
            return await self.get(key, default_buffer_prototype()) is not None
        async with self._slot():
            return await self._store.exists(key)

    async def set(self, key: str, value: Any) -> None:
        self._check_writable()

    async def delete(self, key: str) -> None:
        self._check_writable()

    @property
    def can_list(self) -> bool:
        """Buckets list folders; a web server does not (obstore would send WebDAV PROPFIND)."""
        return can_list(self.url)

    def list_dir(self, prefix: str) -> AsyncIterator[str]:
        if self.can_list:
            return self._store.list_dir(prefix)
        return self._listing_from_metadata(prefix)

    async def _listing_from_metadata(self, prefix: str) -> AsyncIterator[str]:
        """A web server has no listing call: the root's levels come from its metadata, other folders from
        the server's index page (what ``python -m http.server``, nginx ``autoindex`` and Apache serve)."""
        from zarr.core.buffer import default_buffer_prototype

        folder = prefix.strip("/")
        if not folder:
            raw = await self.get("zarr.json", default_buffer_prototype())
            yield "zarr.json"
            if raw is None:
                return
            try:
                attrs = json.loads(raw.to_bytes()).get("attributes") or {}
            except ValueError:
                return
            for name in declared_levels(attrs):
                yield name
            return
        key = (f"{folder}/", "index")
        hit, names = self._recall(key)
        if not hit:
            try:
                async with self._slot():
                    page = await fetch(self._store, self.url, f"{folder}/")  # capped as a metadata document
            except Exception:  # noqa: BLE001 - any failure means the server lists nothing here
                page = None
            names = index_page_names(page) if page is not None else None
            with self._lock:
                self._meta[key] = names
        if names is None:
            raise RemoteError(
                f"'{shown(self.url)}': the web server does not list the folder '{folder}' (no index page), "
                "and this store needs it. Serve the store with folder listings on, open it from its bucket "
                "(s3://, gs://), or copy it with `napari-zarr-vectors download`."
            )
        for name in names:
            yield name


def caching_store(inner: Any, url: str, max_bytes: int = CACHE_BYTES) -> Any:
    """``inner`` (a zarr store reaching ``url``) wrapped read-only with the session cache."""
    return CachingStore(inner, url, max_bytes)
