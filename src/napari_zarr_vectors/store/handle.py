"""A store opened once per process: its root metadata, upstream group and what was read from them.

``handle(path)`` checks a kept handle with one stat of the root zarr.json
(other processes publish by replacing it) and opens the store afresh when
it changed; a URL's handle is kept for the session (``access.Access``
says which).  ``open_info`` describes a store from its metadata."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from zarr.core.sync import sync

from .access import Access, address, forget_opened, remote_group, remote_root_bytes, resolve, shown
from .errors import StoreError
from .info import ALL_KINDS, MESH_KINDS, POINT_KINDS, LevelInfo, StoreInfo
from .journal import JOURNAL
from .local import LocalStore
from .metadata import (
    MAX_METADATA_BYTES,
    _bounds,
    _check_root_sizes,
    _frozen,
    _mapping,
    _parse_root_json,
    _scene_transform,
    _shown,
    declared_levels,
    level_shapes,
    level_transforms,
    parse_level_json,
)


def read_root_json(path: Path | str) -> dict[str, Any]:
    """The root zarr.json as a dict whose ``attributes`` is a dict; a StoreError naming any problem.

    Read through the store's handle, so once per store and process while
    the file is unchanged; at most ``MAX_METADATA_BYTES`` are read, so a
    huge or hostile file costs neither the memory to parse it nor a
    RecursionError.  The dict is the handle's: do not change it.
    """
    return handle(path).root_json


def is_store(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a directory whose zarr.json carries ``attributes.zarr_vectors``.

    Never raises: readers use it to decide whether to claim a path.
    """
    try:
        if not resolve(path).may_exist():
            return False
        meta = handle(path).root_json
    except (StoreError, OSError, TypeError, ValueError):
        return False
    return "zarr_vectors" in (meta.get("attributes") or {})


def forget_remote(path: str | os.PathLike[str] | None = None) -> None:
    """Drop the opened handle (and its cache) of one remote store, or of all: the next read fetches afresh."""
    same = forget_opened(path)
    with _HANDLES_LOCK:
        for key in [k for k, h in _HANDLES.items() if not h.access.watchable and (same is None or k in same)]:
            _HANDLES.pop(key, None)


def _store_root(p: Path | str | Handle) -> tuple[dict[str, Any], Mapping[str, Any]]:
    """The root ``attributes`` and ``attributes.zarr_vectors`` of a store, or a StoreError saying what it is not."""
    root = (p if isinstance(p, Handle) else handle(p)).root_json
    attrs = root.get("attributes") or {}
    zmeta = attrs.get("zarr_vectors")
    if not isinstance(zmeta, Mapping):
        raise StoreError(
            f"'{p}' is a Zarr group but not a Zarr Vectors store (its zarr.json has no attributes.zarr_vectors)."
        )
    if root.get("zarr_format") != 3:
        raise StoreError(
            f"Store '{p}': its zarr.json says zarr_format {_shown(root.get('zarr_format'))}, but Zarr Vectors "
            "stores are Zarr v3 (zarr_format 3). Write the data into a new store with zarr-vectors, or restore "
            "zarr.json from a copy."
        )
    return attrs, zmeta


def _publishing_elsewhere(a: Access) -> bool:
    """A write journal in the store that is not this process's: its new levels may be half published."""
    if not a.writable:
        return False  # stores never written here have no journal; what their root lists is what they hold
    return (a.local / JOURNAL).is_dir() and _SESSIONS.get(a.address) is None


def _metadata_present(path: str | os.PathLike[str] | Handle, key: str) -> bool:
    """A metadata document of the store (on disk, staged by this process's write session, or on the server)."""
    h = path if isinstance(path, Handle) else handle(path)
    try:
        return bool(sync(h._store.exists(key)))
    except Exception as exc:  # noqa: BLE001 - obstore's errors become one sentence
        h.access.raise_failure(exc, f"looking for {key}")


#: Seconds after its last change within which a root zarr.json's stat cannot vouch for its content: an edit in
#: place within the file system's clock tick keeps its mtime and size, so such a handle re-reads it to compare.
RACY_S = 0.1


class Handle:
    """A store opened once in this process: its root metadata, its upstream group and what was read from them.

    ``handle(path)`` gives the store's current one; every read in this
    module goes through it, so opening, describing, viewing and drilling a
    store read its root ``zarr.json`` once.  It holds the parsed root, the
    upstream root group over a zarr store that keeps every metadata
    document (``caching.py``'s session cache for a URL), the
    ``StoreInfo``, and per level the vertex attribute names, chunk
    offsets and counts, and a ``LevelReader`` (chunk presence, link
    layouts).

    A handle is the store as it was when opened.  The store functions
    accept one wherever they take a path and use the store's current
    handle, which ``handle`` checks with one stat of the root zarr.json:
    other processes publish by replacing it, and this process's own
    writes through this module drop the handle.  During a write session
    in this process, reads get a handle over its staging store, made
    afresh for each call (nothing kept: the session is changing it).
    """

    def __init__(self, access: Access, stamp: tuple[int, ...], zstore: Any, raw: bytes, *, kept: bool) -> None:
        #: What the store can do, decided when its address was resolved.
        self.access = access
        self.address = access.address
        #: The store as messages and ``StoreInfo.path`` name it: a Path, or the URL (a str).
        self.path: Path | str = access.path
        self.stamp = stamp
        self.kept = kept
        self.root_json = _parse_root_json(access.shown, raw)
        self.racy = False
        self._raw = raw
        self._store = zstore
        self._lock = threading.Lock()
        self._group: Any = None
        self._memo: dict[Any, Any] = {}

    def __str__(self) -> str:
        return shown(self.path)

    def __repr__(self) -> str:
        return f"Handle({str(self)!r})"

    @property
    def raw(self) -> bytes:
        """The root zarr.json's bytes, as read."""
        return self._raw

    @property
    def attrs(self) -> Mapping[str, Any]:
        """The root zarr.json's ``attributes``."""
        return self.root_json.get("attributes") or {}

    @property
    def group(self) -> Any:
        """The upstream root Group (read-only), opened on first use."""
        if self._group is None:  # a remote store's handle is made with the group opened once per process
            from zarr_vectors import building as b

            group = b.open_store(self._store, mode="r")
            with self._lock:
                if self._group is None:
                    self._group = group
        return self._group

    def memo(self, key: Any, compute: Any) -> Any:
        """``compute()`` once per handle (a failure is not kept: the next call tries again)."""
        with self._lock:
            if key in self._memo:
                return self._memo[key]
        value = compute()
        with self._lock:
            return self._memo.setdefault(key, value)

    @property
    def dataset(self) -> Any:
        """The upstream ``Dataset`` facade over the root group; a StoreError when upstream cannot open it."""

        def open_dataset() -> Any:
            import zarr_vectors as zv

            try:
                return zv.open(self.group)
            except StoreError:
                raise
            except Exception as exc:  # upstream raises many kinds; all mean "cannot open"
                self.access.raise_failure(
                    exc, "opening the store", f"Store '{self.path}' cannot be opened by zarr-vectors: {exc}"
                )

        return self.memo("dataset", open_dataset)

    @property
    def root_meta(self) -> Any:
        """zarr-vectors' parsed root metadata (``RootMetadata``), once per handle."""
        from zarr_vectors import building as b

        def read() -> Any:
            try:
                return b.read_root_metadata(self.group)
            except StoreError:
                raise
            except Exception as exc:  # MetadataError, KeyError, TypeError: all a malformed root
                self.access.raise_failure(
                    exc,
                    "reading the root metadata",
                    f"Store '{self}': its root metadata '{self}/zarr.json' cannot be read by zarr-vectors ({exc}). "
                    "Restore that file from a copy.",
                )

        return self.memo("root_meta", read)

    @property
    def ndim(self) -> int:
        return self.memo("ndim", lambda: int(self.root_meta.sid_ndim))

    def info(self) -> StoreInfo:
        return self.memo("info", lambda: _describe(self))

    def level_group(self, level: int) -> Any:
        """A level's upstream group: a new object each call (upstream's batched reads are per object), no read."""
        from zarr_vectors import building as b

        return b.get_resolution_level(self.group, level)

    def attribute_names(self, level: int, kind: str = "vertex") -> tuple[str, ...]:
        return self.memo(("names", kind, int(level)), lambda: tuple(self.dataset.level(level).attribute_names(kind)))

    def chunk_offsets(self, level: int) -> tuple[dict[tuple, int], list[tuple], int]:
        """Each non-empty chunk's first row, the chunks in row order, and the level's rows (sizes every chunk)."""
        return self.memo(("offsets", int(level)), lambda: _chunk_offsets(self.level_group(level), self.ndim))


#: Opened local stores: address -> the handle of the root zarr.json last seen there; remote ones by URL.
_HANDLES: dict[str, Handle] = {}


#: Most handles kept; the store opened longest ago goes first (it is opened afresh when read again).
MAX_HANDLES = 64


#: Bumped each time this process changes a store: a handle opened meanwhile is not kept.
_EPOCHS: dict[str, int] = {}


_HANDLES_LOCK = threading.Lock()


def handle(path: str | os.PathLike[str] | Handle) -> Handle:
    """The store's current handle: one per store and process while its root zarr.json is unchanged.

    One ``stat`` of the root zarr.json checks a kept handle (a Handle
    given is checked the same way, so this is idempotent); a changed
    file, or a change this process made, opens the store afresh.  Raises
    StoreError when there is no store there to open (the message says why).
    """
    a = resolve(path)
    if not a.watchable:  # read once a session: its handle is kept until forgotten
        return _unwatched_handle(a)
    where = a.address
    staging = _SESSIONS.get(where)
    if staging is not None:  # a write in progress here: its staged view, nothing kept
        return Handle(a, (0, 0, 0), staging, _local_root_bytes(where, staging), kept=False)
    meta = os.path.join(where, "zarr.json")
    try:
        st = os.stat(meta)
    except (FileNotFoundError, NotADirectoryError):
        _forget(where)
        if not os.path.isdir(where):
            raise StoreError(f"'{where}' does not exist or is not a directory.") from None
        raise StoreError(
            f"'{where}' is not a Zarr Vectors store: it has no zarr.json. "
            "Open a directory written by zarr-vectors (a .zv or .zarrvectors store)."
        ) from None
    except OSError as exc:
        raise StoreError(
            f"Store '{where}': its zarr.json cannot be read ({exc}). Check the file's permissions, or restore it."
        ) from None
    stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
    with _HANDLES_LOCK:
        kept = _HANDLES.get(where)
        epoch = _EPOCHS.get(where, 0)
    if kept is not None and kept.stamp == stamp and (not kept.racy or _still_same(kept, st)):
        return kept
    if st.st_size > MAX_METADATA_BYTES:
        raise StoreError(
            f"Store '{where}' has a zarr.json of {st.st_size:,} bytes; a Zarr Vectors store's root zarr.json is a "
            f"few kB (at most {MAX_METADATA_BYTES:,} bytes are read). It is not a store's root metadata or it is "
            "damaged; restore it from a copy."
        )
    zstore = LocalStore(where)
    fresh = Handle(a, stamp, zstore, _local_root_bytes(where, zstore), kept=True)
    fresh.racy = _is_racy(st)
    with _HANDLES_LOCK:
        kept = _HANDLES.get(where)
        if kept is not None and kept.stamp == stamp and not kept.racy:
            return kept  # another thread opened it meanwhile: one handle
        if _EPOCHS.get(where, 0) == epoch:  # else this process changed the store meanwhile: not kept
            _keep(where, fresh)
    return fresh


def _keep(where: str, h: Handle) -> None:
    """Keep ``h`` as the store's handle (the caller holds ``_HANDLES_LOCK``)."""
    _HANDLES.pop(where, None)
    _HANDLES[where] = h
    while len(_HANDLES) > MAX_HANDLES:
        _HANDLES.pop(next(iter(_HANDLES)))


def _is_racy(st: os.stat_result) -> bool:
    import time

    return time.time_ns() - st.st_mtime_ns < RACY_S * 1e9


def _still_same(kept: Handle, st: os.stat_result) -> bool:
    """Whether a handle opened within ``RACY_S`` of its root's last change still matches it (one read)."""
    from zarr.core.sync import sync

    try:
        buf = sync(kept._store.reread("zarr.json"))
    except OSError:
        return False
    if buf is None or buf.to_bytes() != kept._raw:
        return False
    kept.racy = _is_racy(st)
    return True


def _local_root_bytes(where: str, zstore: Any) -> bytes:
    """The root zarr.json's bytes through ``zstore`` (what upstream then opens, so it is read once)."""
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    try:
        buf = sync(zstore.get("zarr.json", default_buffer_prototype()))
    except OSError as exc:
        raise StoreError(
            f"Store '{where}': its zarr.json cannot be read ({exc}). Check the file's permissions, or restore it."
        ) from None
    if buf is None:
        reason = "it is not a file" if os.path.exists(os.path.join(where, "zarr.json")) else "it was just removed"
        raise StoreError(
            f"Store '{where}': its zarr.json cannot be read ({reason}). Check the file's permissions, or restore it."
        )
    return buf.to_bytes()


def _unwatched_handle(a: Access) -> Handle:
    """The handle of a store read once a session (a URL): opened once, kept until ``forget_remote``."""
    url = a.address
    with _HANDLES_LOCK:
        kept = _HANDLES.get(url)
    if kept is not None:
        return kept
    group = remote_group(url)
    fresh = Handle(a, (0, 0, 0), group._zarr.store, remote_root_bytes(url), kept=True)
    fresh._group = group
    with _HANDLES_LOCK:
        kept = _HANDLES.get(url)
        if kept is None:
            _keep(url, fresh)
        return kept or fresh


def _forget(where: str) -> None:
    with _HANDLES_LOCK:
        _HANDLES.pop(where, None)
        _EPOCHS[where] = _EPOCHS.get(where, 0) + 1


def forget(path: str | os.PathLike[str] | Handle) -> None:
    """Drop the handle of the local store at ``path``: the next read opens it afresh.

    Every write in this module calls it (before and after it writes); a
    writer that changes a store by other means (its own files, another
    library) in this process calls it too.  ``forget_remote`` is the
    counterpart for URLs, whose session cache goes with their handle.
    """
    try:
        where = address(path)
    except (StoreError, TypeError, OSError):
        return
    _forget(where)


@contextlib.contextmanager
def _writing(path: str | os.PathLike[str] | Handle) -> Iterator[None]:
    """Drop the store's handle before and after a write, so no read keeps what it saw in between."""
    forget(path)
    try:
        yield
    finally:
        forget(path)


def open_info(path: str | os.PathLike[str] | Handle) -> StoreInfo:
    """Describe a store from its metadata, without reading vertices.

    Parameters
    ----------
    path : str or os.PathLike
        The store folder (``.zv`` or ``.zarrvectors``).

    Returns
    -------
    StoreInfo
        Its geometry kind, dimensionality, axis names, bounds, levels
        (vertex and object counts, bin and chunk shapes), attribute names
        and OME scene scale / translation.

    Raises
    ------
    StoreError
        Naming the store and the problem (not a store, corrupt or
        malformed metadata, a level listed but missing on disk, ...) and
        what to do. A ``ValueError``.
    """
    return handle(path).info()


def _describe(h: Handle) -> StoreInfo:
    """``open_info``'s work, once per handle.

    The levels are the root zarr.json's list (``level_ids_of``), and each
    level's sizes and vertex count come from its own ``<level>/zarr.json``,
    all read in one batch and parsed here: no level folder is listed and
    no upstream level object made, so a root listing 10,000 levels opens
    in well under a second (``benchmarks/many_levels.py``).
    """
    p = h.path
    attrs, zmeta = _store_root(h)
    ds = h.dataset
    try:
        kinds = tuple(ds.kinds)
        ndim = int(ds.ndim)
    except Exception as exc:
        raise StoreError(
            f"Store '{shown(p)}' has unreadable root metadata in '{shown(p)}/zarr.json': {exc}. "
            "Restore that file from a copy."
        ) from exc
    if not kinds:
        raise StoreError(f"Store '{p}' declares no geometry type; it holds nothing to show.")
    kind = kinds[0]
    if kind not in ALL_KINDS:
        raise StoreError(
            f"Store '{p}' holds geometry '{kind}', which this plugin does not show (supported: {', '.join(ALL_KINDS)})."
        )
    _check_root_sizes(p, attrs, ndim)  # before any level's bin or chunk is derived from them
    level_ids = level_ids_of(h)
    if not level_ids:
        raise StoreError(f"Store '{p}' has no resolution levels.")
    docs = _level_documents(h, level_ids)
    root_meta = h.root_meta
    transforms = level_transforms(attrs)
    named = shown(p)
    levels = []
    for index in level_ids:
        raw = docs[index]
        if raw is None:
            raise StoreError(
                f"Store '{named}' lists resolution level {index} but its directory "
                f"'{named}/{index}' is missing or incomplete (it has no zarr.json). Restore the level from a "
                f"copy, or run `napari-zarr-vectors repair {named}` to remove it and rebuild the pyramid."
            )
        meta = parse_level_json(named, index, raw)
        bins, chunk = level_shapes(
            named,
            index,
            meta,
            transforms.get(str(index), (None, None)),
            getattr(root_meta, "base_bin_shape", None),
            getattr(root_meta, "chunk_shape", None),
            ndim,
        )
        levels.append(
            LevelInfo(
                index=index,
                vertex_count=int(meta["vertex_count"]),
                object_count=0 if kind in POINT_KINDS + MESH_KINDS else _object_count(h, index),
                bin_shape=bins,
                chunk_shape=chunk,
            )
        )
    lv0 = ds.level(level_ids[0])
    axis_names = tuple(str(_mapping(a).get("name", f"axis{i}")) for i, a in enumerate(ds.axes))
    if len(axis_names) != ndim:
        axis_names = tuple(f"axis{i}" for i in range(ndim))
    lo, hi = _bounds(p, zmeta.get("bounds"), ndim)
    scale, translate = _scene_transform(attrs, ndim, p)
    try:
        vertex_attributes = tuple(lv0.attribute_names("vertex"))
        object_attributes = tuple(lv0.attribute_names("object"))
    except Exception as exc:
        _level_failure(h, level_ids[0], exc, "its attribute names")
    return StoreInfo(
        path=h.access.shown,
        kind=kind,
        ndim=ndim,
        axis_names=axis_names,
        bounds=(_frozen(np.asarray(lo, float)), _frozen(np.asarray(hi, float))),
        levels=tuple(levels),
        vertex_attributes=vertex_attributes,
        object_attributes=object_attributes,
        scale=scale,
        translate=translate,
    )


def level_ids_of(h: Handle) -> tuple[int, ...]:
    """The store's levels, sorted: the root zarr.json's list, read once per handle.

    A level exists when the root lists it (NGFF ``multiscales`` datasets or
    OME ``zv:level`` nodes): that is how every write publishes one, and a
    level folder the root does not list is unpublished (a writer's, or what
    one left; ``repair`` finds it).  Only a root that lists no level at all
    (another tool's) has its level folders listed, as zarr-vectors does.
    """

    def levels() -> tuple[int, ...]:
        declared = declared_levels(h.attrs)
        if declared:
            return tuple(int(n) for n in declared)
        try:
            found = tuple(sorted(int(i) for i in h.dataset.levels))
        except StoreError:
            raise
        except Exception as exc:
            h.access.raise_failure(exc, "listing the levels", f"Store '{h}': its levels cannot be listed: {exc}")
        if _publishing_elsewhere(h.access):
            return ()  # another process is publishing: a level is published when the root lists it
        return found

    return h.memo("level_ids", levels)


def _level_documents(h: Handle, levels: tuple[int, ...]) -> dict[int, bytes | None]:
    """Each level's ``<level>/zarr.json`` bytes (None when absent), in one batch.

    A kept local handle reads the files straight from disk (about 40 µs
    each, where one upstream group open costs a millisecond); a write
    session's staged view and a URL's session cache are asked for all of
    them in one ``gather``.
    """
    keys = {level: f"{level}/zarr.json" for level in levels}
    store = h._store
    if isinstance(store, LocalStore):
        return {level: _read_capped(h, os.path.join(h.address, key), level) for level, key in keys.items()}
    from zarr.core.buffer import default_buffer_prototype

    async def read_all() -> list[Any]:
        import asyncio

        proto = default_buffer_prototype()
        return await asyncio.gather(*(store.get(key, proto) for key in keys.values()))

    try:
        bufs = sync(read_all())
    except StoreError:
        raise
    except Exception as exc:  # noqa: BLE001 - obstore's errors become one sentence
        h.access.raise_failure(exc, "reading the levels' metadata")
    return {level: None if buf is None else buf.to_bytes() for level, buf in zip(keys, bufs, strict=True)}


def _read_capped(h: Handle, file: str, level: int) -> bytes | None:
    """A level's zarr.json from disk, at most one byte past the cap (``parse_level_json`` refuses more)."""
    try:
        with open(file, "rb") as f:
            # read(n) sets aside n bytes first: only an oversized file is read to its cap
            big = os.fstat(f.fileno()).st_size > MAX_METADATA_BYTES
            return f.read(MAX_METADATA_BYTES + 1) if big else f.read()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    except OSError as exc:
        raise StoreError(
            f"Store '{h}': level {level}'s metadata file '{file}' cannot be read ({exc}). "
            "Check the file's permissions, or restore it from a copy."
        ) from None


def _object_count(h: Handle, level: int) -> int:
    """Objects at a level of a line, polyline or graph store (zarr-vectors reads its object index)."""
    try:
        return int(h.dataset.level(level).objects.count)
    except StoreError:
        raise
    except Exception as exc:
        _level_failure(h, level, exc, "its object count")


def _level_failure(h: Handle, level: int, exc: BaseException, what: str) -> NoReturn:
    """Raise what reading ``what`` of ``level`` failed with as a StoreError naming the level's files."""
    failed = h.access.network_failure(exc, f"reading level {level}'s metadata")
    if failed is not None:
        raise failed from None
    raise StoreError(
        f"Store '{shown(h.path)}': resolution level {level} cannot be read ({what}: {exc}); its metadata is under "
        f"'{shown(h.path)}/{level}/'. Run `napari-zarr-vectors repair {shown(h.path)}` to find what is damaged."
    ) from exc


def signature(path: str | os.PathLike[str] | Handle) -> tuple[int, ...]:
    """Changes whenever levels are added or removed (the root zarr.json is replaced, or this process changed
    the store); one stat call."""
    a = path.access if isinstance(path, Handle) else resolve(path)
    if not a.watchable:
        return (0, 0)  # never written here; its root is read once a session
    st = (a.local / "zarr.json").stat()
    return (st.st_mtime_ns, st.st_size, st.st_ino, _EPOCHS.get(a.address, 0))


def validate(path: str | os.PathLike[str] | Handle, level: int = 2) -> list[str]:
    """Upstream validator's errors (empty when the store passes)."""
    return [str(e) for e in handle(path).dataset.validate(level=level).errors]


#: Stores being written by this process: resolved path -> the journal's staging store to write through.
_SESSIONS: dict[str, Any] = {}


def _target(path: str | os.PathLike[str] | Handle) -> Any:
    """What zarr-vectors should open to write ``path``: the staging store of a write in progress here, else the path.

    Reads go through ``handle(path)`` instead.
    """
    a = resolve(path)
    if not a.writable:
        return remote_group(a.address)  # opened read-only: upstream's write is refused there
    key = a.address
    staging = _SESSIONS.get(key)
    return key if staging is None else staging


def _root(path: str | os.PathLike[str] | Handle, mode: str = "r") -> Any:
    """The upstream root group: the handle's to read; opened writable afresh (dropping the handle) to write."""
    from zarr_vectors import building as b

    if mode == "r":
        return handle(path).group
    forget(path)  # the caller writes next; its write helper drops the handle again when done
    return b.open_store(_target(path), mode=mode)


def _level(path: str | os.PathLike[str] | Handle, level: int, mode: str = "r") -> tuple[Any, int]:
    """A level's group and the store's dimensionality."""
    from zarr_vectors import building as b

    if mode == "r":
        h = handle(path)
        return h.level_group(level), h.ndim
    root = _root(path, mode)
    return b.get_resolution_level(root, level), int(b.read_root_metadata(root).sid_ndim)


def _chunk_offsets(group: Any, ndim: int) -> tuple[dict[tuple, int], list[tuple], int]:
    from zarr_vectors.spatial.boundary import chunk_local_to_global_offsets

    offsets, keys, total = chunk_local_to_global_offsets(group, ndim)
    return (
        {tuple(int(c) for c in k): int(v) for k, v in offsets.items()},
        [tuple(int(c) for c in k) for k in keys],
        int(total),
    )
