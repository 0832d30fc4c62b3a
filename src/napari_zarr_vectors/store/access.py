"""The one place a store address (a local path or a URL) becomes an opened store, and what it can do.

``resolve`` decides once, when an address is opened, whether it is a folder
on this machine or a bucket or web server, and records what follows as
capability flags on an ``Access``: can this plugin write there (journal,
lock, write sessions), does a stat of the root tell a change by another
process, can folders be listed, are chunk sizes read from file lengths.
Every other module asks those flags (and the methods that word failures),
never whether an address is a URL.  A URL is opened once per process
through the upstream obstore backend behind the read-only session cache
(``caching.py``), and its failures become sentences (``remote.py``).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from . import journal, limits, remote
from .caching import caching_store
from .errors import RemoteStoreError, StoreError
from .metadata import _parse_root_json, declared_levels

limits.install()  # chunk headers checked before decoding, wherever zarr or zarr-vectors decode them

Address = str | os.PathLike[str]


@dataclass(frozen=True)
class Access:
    """A store address, spelled once, with what the store there can do (decided when it was resolved)."""

    #: The one spelling: a canonical URL, or the resolved local path.
    address: str
    #: What handles and messages name: the folder (a Path), or the URL (a str).
    path: Path | str
    #: The address as messages, logs and layer metadata show it: no user, password or query.
    shown: str
    #: The folder on this machine's disk; None when the store is reached over the network.
    local: Path | None
    #: This plugin may change the store (lock, journal, write sessions): a local folder.
    writable: bool
    #: One stat of the root zarr.json tells whether another process replaced it (else: read once a session).
    watchable: bool
    #: Folders can be listed (a web server cannot: its names come from metadata or index pages).
    can_list: bool
    #: Chunk vertex counts come from the chunk files' lengths (a HEAD each) instead of reading every blob.
    sizes_from_lengths: bool

    @property
    def name(self) -> str:
        """The store's folder name (its last path part)."""
        return name_of(self.address)

    def may_exist(self) -> bool:
        """False only when the store certainly is not there (a local path that is no folder); no request is made."""
        return self.local is None or self.local.is_dir()

    def root_may_exist(self) -> bool:
        """False only when a local store certainly has no root zarr.json file (a URL's is checked when read)."""
        return self.local is None or (self.local / "zarr.json").is_file()

    def raise_failure(self, exc: BaseException, what: str, message: str | None = None) -> NoReturn:
        """Raise ``failure`` (or ``message`` for a local store); a network failure's chain is cut (it names URLs)."""
        if self.local is None:
            raise _remote_failure(self.address, exc, what) from None
        text = message or f"Store '{self.path}': {what} failed: {exc}"
        raise StoreError(text + _symlink_note(self.local)) from exc

    def network_failure(self, exc: BaseException, what: str) -> StoreError | None:
        """``failure`` when ``exc`` came from reaching the store over the network, else None."""
        if self.local is None and remote.is_network_error(exc):
            return _remote_failure(self.address, exc, what)
        return None

    def gone_chunks(
        self, level: int, chunks: Sequence[Sequence[int]], arrays: Sequence[str]
    ) -> list[tuple[str, tuple[int, ...]]]:
        """``(array, chunk)`` pairs of ``level`` with no chunk file: gone on disk, or answered 404 this session."""
        keys = [(a, tuple(int(c) for c in k)) for a in arrays for k in chunks]
        if self.local is None:
            missing = set(remote_group(self.address)._zarr.store.stats.missing)
            return [(a, k) for a, k in keys if f"{level}/{a}/c/" + "/".join(map(str, k)) in missing]
        folder = self.local / str(level)
        return [(a, k) for a, k in keys if not (folder / a / "c").joinpath(*map(str, k)).is_file()]

    def explain(self, exc: BaseException, what: str, local: str) -> str:
        """A failure as one sentence: for a URL what to check on the network, else ``local``."""
        return local if self.local is not None else remote.explain(self.address, exc, what)

    def file_stores(self) -> tuple[Any, Any]:
        """Zarr stores to read the store's files from, for copying them: (metadata, data).

        A URL's metadata comes through its session cache and its data past
        it (a copy reads each file once; caching would only hold memory);
        a local store's both through zarr's read-only LocalStore.
        """
        if self.local is None:
            cache = remote_group(self.address)._zarr.store
            return cache, cache._store
        from .local import LocalStore

        if not self.local.is_dir():
            raise StoreError(f"'{self.address}' does not exist or is not a directory.")
        files = LocalStore(self.address)  # read-only, every file capped (limits)
        return files, files

    def missing_error(self, level: int, gone: Sequence[tuple[str, tuple[int, ...]]], after: str = "") -> StoreError:
        """The error for chunks ``level`` lists but that hold no data: ``gone`` on disk, or the server's 404s."""
        if self.local is None:
            return _missing_chunks(self.address, level)
        return missing_on_disk(self.path, level, gone, after)


def resolve(path: Address | Any) -> Access:
    """The ``Access`` of a store address (a path, ``file://`` or a URL, or anything with an ``address``).

    Raises StoreError for a URL whose scheme this plugin does not open.
    """
    where = address(path)
    if remote.is_url(where):
        can_list = remote.can_list(where)
        return Access(where, where, remote.canonical_url(remote.shown(where)), None, False, False, can_list, True)
    local = Path(where)
    return Access(where, local, where, local, True, True, True, False)


def address(path: Address | Any) -> str:
    """A store address's one spelling: a canonical URL, or the resolved local path (never resolves a URL)."""
    path = plain(path)
    if remote.is_url(path):
        url = remote.canonical_url(str(path))
        try:
            remote.check_scheme(url)
        except remote.RemoteError as exc:
            raise StoreError(str(exc)) from None
        return url
    return str(remote.local_path(path).resolve())


def writable(path: Any) -> bool:
    """Whether this plugin may change the store at ``path`` (False for a URL, or an address it cannot open)."""
    try:
        return resolve(path).writable
    except StoreError:
        return False


def is_remote(path: Any) -> bool:
    """Whether a store address is a URL (http(s)://, s3://, gs://) rather than a local path."""
    return remote.is_url(plain(path))


def plain(path: Any) -> Any:
    """An opened store (a ``Handle``) as its address, for the writers, which take paths; anything else unchanged."""
    spelled = getattr(path, "address", None)
    return spelled if isinstance(spelled, str) and not isinstance(path, str | os.PathLike) else path


def shown(path: Any) -> str:
    """An address as messages show it (a URL without credentials or query); never raises."""
    path = plain(path)
    return remote.shown(str(path)) if remote.is_url(path) else str(path)


def name_of(path: Any) -> str:
    """The store's folder name: the last part of its path or URL."""
    path = plain(path)
    return remote.name_of(path) if remote.is_url(path) else Path(path).name


def refuse_remote(path: Any, operation: str) -> None:
    """Writes never reach a store this plugin cannot change (a URL): a StoreError saying how to use a local copy."""
    path = plain(path)
    if not remote.is_url(path):
        return
    url = remote.shown(str(path))
    raise StoreError(
        f"'{url}' is a remote store, and this plugin only reads remote stores: it cannot {operation} there. "
        f"Make a local copy with `napari-zarr-vectors download {url} LOCAL.zv`, {operation} on the copy, "
        "and upload the copy with your cloud's own tool if others should see it. Nothing was changed."
    )


def missing_on_disk(
    path: Path | str, level: int, gone: Sequence[tuple[str, tuple[int, ...]]], after: str = ""
) -> StoreError:
    """The error naming ``(array, chunk)`` files a level lists but that are gone or empty (five, then a count)."""
    names = [f"{array} chunk ({', '.join(map(str, c))})" for array, c in gone[:5]]
    more = f" and {len(gone) - 5:,} more" if len(gone) > 5 else ""
    return StoreError(
        f"Store '{shown(path)}': level {level} is missing data on disk: {'; '.join(names)}{more}. "
        "The level's metadata lists it, but the file is gone or empty. Restore the store (or that level's "
        f"files) from a copy{after}."
    )


# ---------------------------------------------------------------- URLs, opened once per process


#: Remote stores opened in this process: canonical URL -> the upstream root Group over the session cache.
_REMOTE: dict[str, Any] = {}


_REMOTE_LOCK = threading.Lock()


def remote_group(url: str) -> Any:
    """The upstream root Group of a remote store, opened once per process over the read-only session cache."""
    with _REMOTE_LOCK:
        group = _REMOTE.get(url)
        if group is not None:
            return group
    remote.guard_logs()  # loggers of modules imported since the store package was: their records are redacted too
    try:
        import obstore
        from zarr.storage import ObjectStore
    except ImportError as exc:  # pragma: no cover - obstore is a dependency
        raise StoreError(f"Opening '{remote.shown(url)}' needs obstore: pip install obstore ({exc}).") from None
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync
    from zarr_vectors import building as b

    try:
        # the same two steps as upstream's obstore backend, with our options and the cache between
        inner = ObjectStore(obstore.store.from_url(url, **remote.storage_options(url)), read_only=True)
        cached = caching_store(inner, url)
        root_json = sync(cached.get("zarr.json", default_buffer_prototype()))
    except Exception as exc:  # noqa: BLE001 - obstore raises many kinds; each becomes one sentence
        raise _remote_failure(url, exc, "opening the store") from None
    if root_json is None:
        raise RemoteStoreError(
            f"'{remote.shown(url)}': the server answered 404 Not Found for its zarr.json, so there is no store "
            "there. Check the URL: it must name the store folder (ending in .zv or .zarrvectors)."
        )
    # a truncated or foreign root document is named as such here (zarr's own parse says only "Unterminated string")
    root_doc = _parse_root_json(remote.shown(url), root_json.to_bytes())
    try:
        attrs = root_doc.get("attributes") or {}
        # a warm-up for the levels a view reads first; a root listing thousands of levels (hostile or
        # damaged) would otherwise cost tens of thousands of requests before anything is checked
        sync(_prefetch_metadata(cached, declared_levels(attrs)[:PREFETCH_LEVELS]))
    except Exception:  # noqa: BLE001 - a warm-up only: whatever failed is fetched (and reported) when read
        pass
    try:
        group = b.open_store(cached, mode="r")
    except Exception as exc:  # noqa: BLE001 - upstream raises many kinds; each becomes one sentence
        raise _remote_failure(url, exc, "opening the store") from None
    with _REMOTE_LOCK:
        group = _REMOTE.setdefault(url, group)
        # layer metadata and messages carry the URL without its query or user part (a signed URL's secret):
        # that spelling finds this handle too
        _REMOTE.setdefault(remote.canonical_url(remote.shown(url)), group)
        return group


#: Each level's metadata documents an open reads (the level, its arrays, its attribute and link folders).
_LEVEL_METADATA = ("", "vertices", "vertex_fragments", "vertex_attributes", "object_attributes", "links")


#: Levels whose metadata an open fetches ahead, all at once (a real pyramid has a handful to a few dozen).
PREFETCH_LEVELS = 64


async def _prefetch_metadata(cached: Any, levels: Sequence[str]) -> None:
    """Fetch every level's metadata in two concurrent rounds, not the ~6 serial requests per level an open makes.

    Opening a store and describing its levels reads a few small documents
    per level, one after another; at a 50 ms round trip that alone took
    ~0.6 s for four levels.  Fetched here all at once, they are served from
    the session cache afterwards.
    """
    import asyncio

    from zarr.core.buffer import default_buffer_prototype

    proto = default_buffer_prototype()

    async def fetch(key: str) -> None:
        with contextlib.suppress(Exception):
            await cached.get(key, proto)

    async def listing(prefix: str) -> tuple[str, list[str]]:
        try:
            return prefix, [n async for n in cached.list_dir(prefix)]
        except Exception:  # noqa: BLE001 - no listing: the read that needs it says so
            return prefix, []

    first = [fetch(f"{lv}/{a}/zarr.json".replace("//", "/").lstrip("/")) for lv in levels for a in _LEVEL_METADATA]
    lists = [listing(f"{lv}/{folder}") for lv in levels for folder in ("vertex_attributes", "links")]
    found = await asyncio.gather(*lists, *first)
    second = [
        fetch(f"{prefix}/{name}/zarr.json")
        for prefix, names in found[: len(lists)]
        for name in names
        if name != "zarr.json"
    ]
    await asyncio.gather(*second)


def _remote_failure(url: str, exc: BaseException, what: str) -> StoreError:
    if isinstance(exc, StoreError) and not isinstance(exc.__cause__, BaseException):
        return exc
    text = remote.redact(str(exc), url)  # the upstream text may quote the URL in full: redacted before it is cut
    if "not found" in text.lower() and "zarr.json" not in text and not remote.is_network_error(exc):
        text = f"'{remote.shown(url)}' is not a Zarr Vectors store ({text.splitlines()[0][:200]})."
        return RemoteStoreError(remote.redact(text, url))
    return RemoteStoreError(remote.explain(url, exc, what))


def _missing_chunks(url: str, level: int) -> StoreError:
    """The error for chunks a remote level's manifest lists but the server has no file for."""
    missing = list(dict.fromkeys(k for k in remote_group(url)._zarr.store.stats.missing if k.startswith(f"{level}/")))

    def chunk_name(key: str) -> str:  # "0/vertices/c/1/1" -> "vertices chunk (1, 1) (0/vertices/c/1/1)"
        array, _, coords = key[len(f"{level}/") :].partition("/c/")
        return f"{array} chunk ({', '.join(coords.split('/'))}) ({key})"

    named = f" for {chunk_name(missing[-1])}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
    return RemoteStoreError(
        f"'{remote.shown(url)}': the server answered 404 Not Found{named if missing else ''} while reading "
        f"level {level}, a file the store's metadata lists. Check that every file of the store was uploaded."
    )


def forget_opened(path: Address | None = None) -> set[str] | None:
    """Drop one remote store opened in this process (its session cache goes too), or all; the spellings dropped.

    None means all.  Layer metadata and messages carry a URL without its
    query or user part, so that spelling is dropped with the full one.
    """
    with _REMOTE_LOCK:
        if path is None:
            _REMOTE.clear()
            return None
        a = resolve(path)
        same = {a.address, a.shown}
        for url in same:
            _REMOTE.pop(url, None)
        return same


def remote_stats(path: str | os.PathLike[str]) -> dict[str, int]:
    """Requests made, answers served from the session cache and bytes fetched for a remote store (tests, benchmarks)."""
    store = remote_group(address(path))._zarr.store
    stats = store.stats
    return {"requests": stats.requests, "cached": stats.cached, "bytes": stats.bytes}


def remote_root_bytes(url: str) -> bytes:
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    group = remote_group(url)
    try:
        buf = sync(group._zarr.store.get("zarr.json", default_buffer_prototype()))
    except Exception as exc:  # noqa: BLE001 - obstore's errors become one sentence
        raise _remote_failure(url, exc, "reading its zarr.json") from None
    if buf is None:
        raise RemoteStoreError(
            f"'{remote.shown(url)}' is not a Zarr Vectors store: the server has no zarr.json there (404). "
            "Check the URL: it must name the store folder (ending in .zv or .zarrvectors)."
        )
    return buf.to_bytes()


def _symlink_note(root: Path, most: int = 200_000) -> str:
    """A sentence naming a symbolic link below ``root`` (the likely cause of a failed read), or "".

    Run only when a read has failed; the walk (``journal``'s, never
    following a link) stops after ``most`` entries.
    """
    link = journal.first_symlink(root, most)
    if link is None:
        return ""
    return (
        f" The store holds a symbolic link ('{link}'), which points at data the store did not write: "
        "replace it with a real copy of what it should hold."
    )
