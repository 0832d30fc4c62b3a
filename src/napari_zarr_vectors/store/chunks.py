"""A level's chunks: their vertex counts (from metadata, or a remote store's file lengths), where their files lie
(a level's grid origin), and the chunks a level lists but whose data is gone or damaged."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .access import missing_on_disk
from .errors import StoreError
from .handle import Handle, _level, handle
from .integrity import check_fragments, check_in_bounds, check_level_rows, damaged, vertex_dtype
from .metadata import _frozen


def level_rows(path: str | os.PathLike[str] | Handle, level: int) -> int:
    """How many vertex rows a level has (what parent maps index)."""
    return chunk_offsets(path, level)[2]


def chunk_offsets(path: str | os.PathLike[str] | Handle, level: int) -> tuple[dict[tuple, int], list[tuple], int]:
    """``Handle.chunk_offsets``, with a chunk that cannot be decoded named rather than numcodecs' bare error.

    Upstream sizes a level in one batched read, which fails whole on one
    bad chunk ("corrupt buffer, data seem truncated"): the chunks are then
    read one by one to say which is damaged.
    """
    h = handle(path)
    try:
        return h.chunk_offsets(level)
    except Exception as exc:  # a chunk refused before decoding (limits.CorruptChunkError) is named too
        if h.access.local is not None:
            check_level_chunks(h.path, level)
        if isinstance(exc, StoreError):
            raise
        h.access.raise_failure(exc, f"sizing the chunks of level {level}")


def chunk_vertex_counts(path: str | os.PathLike[str] | Handle, level: int) -> tuple[np.ndarray, np.ndarray]:
    """Per non-empty chunk of a level: its grid coordinates (M, D) and vertex count (M,).

    Upstream sizes chunks by reading every vertex blob; for a remote store
    the blobs' sizes come from the server instead (a HEAD each, see
    ``_counts_from_lengths``), and are kept for the session.  A chunk the
    level lists as non-empty but that holds no vertices has lost its file:
    a StoreError names it, rather than a silent hole in the view.  Their
    sum must be the vertex count the level's metadata lists: otherwise the
    declared vertex dtype or a chunk is wrong, and a StoreError says which.
    """
    h = handle(path)
    coords, counts = h.memo(("counts", int(level)), lambda: _chunk_counts(h, level))
    if len(counts) and not counts.all():
        raise h.access.missing_error(level, [("vertices", tuple(int(c) for c in k)) for k in coords[counts == 0]])
    return coords, counts


def _chunk_counts(h: Handle, level: int) -> tuple[np.ndarray, np.ndarray]:
    """Per non-empty chunk: its coordinates and vertex count, once per handle (read-only arrays: shared)."""
    got = _counts_from_lengths(h, level) if h.access.sizes_from_lengths else None
    if got is None:
        offsets, keys, total = chunk_offsets(h, level)
        starts = np.asarray([offsets[k] for k in keys], dtype=np.int64)
        got = np.asarray(keys, dtype=np.int64).reshape(len(keys), -1), np.diff(np.r_[starts, total])
    counts = got[1]
    if counts.all():  # else a chunk's file is gone, which chunk_vertex_counts names
        check_level_rows(h.path, level, int(counts.sum()), listed_vertex_count(h, level), vertex_dtype_of(h, level))
    return _frozen(got[0]), _frozen(got[1])


def listed_vertex_count(path: str | os.PathLike[str] | Handle, level: int) -> int | None:
    """The vertex count a level's own metadata lists (None when it lists none), once per handle."""
    h = handle(path)

    def listed() -> int | None:
        from zarr_vectors import building as b

        try:
            count = b.read_level_metadata(h.group, level).vertex_count
        except Exception:  # noqa: BLE001 - no readable count: nothing to check against
            return None
        return None if count is None or int(count) < 0 else int(count)

    return h.memo(("listed", int(level)), listed)


def vertex_dtype_of(path: str | os.PathLike[str] | Handle, level: int) -> np.dtype:
    """The dtype a level's ``vertices`` array declares (float32 when it declares none), if positions can have it."""
    h = handle(path)
    attrs = array_meta(h, f"{level}/vertices").get("attributes") or {}
    return vertex_dtype(h.path, level, attrs.get("dtype", "float32"))


def _counts_from_lengths(h: Handle, level: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Vertex counts of a remote level's chunks from their files' sizes, or None when the layout does not allow it.

    A ``vertices`` cell is one vlen-bytes item of raw positions: 8 bytes of
    header (item count and length) and ``n * ndim * itemsize`` of data, so
    the file size gives ``n``.  Reading the blobs instead fetched all of
    level 0 (28 MB for the 2,000,000-point store) before the first refined
    view.  Any other codec, encoding or cell shape: None (upstream's count).
    """
    from zarr.core.sync import sync

    cached = h._store  # the session cache
    meta = array_meta(h, f"{level}/vertices")
    if not meta:
        return None
    attrs = meta.get("attributes") or {}
    shape = (meta.get("chunk_grid") or {}).get("configuration", {}).get("chunk_shape")
    if meta.get("codecs") != [{"name": "vlen-bytes", "configuration": {}}] or attrs.get("encoding") != "raw":
        return None
    if not shape or any(int(c) != 1 for c in shape) or not isinstance(attrs.get("nonempty_chunks"), list):
        return None
    chunks = [str(k) for k in attrs["nonempty_chunks"]]
    ndim = len(shape)
    origin = grid_origin(meta, ndim)

    def cell(chunk: str) -> str:  # a chunk at grid coordinates k lies in the array's cell k - origin
        return "/".join(str(int(c) - o) for c, o in zip(chunk.split("."), origin, strict=False))

    row = ndim * np.dtype(str(attrs.get("dtype", "float32"))).itemsize

    async def sizes() -> list[int]:
        import asyncio

        async def one(chunk: str) -> int:
            try:
                return int(await cached.getsize(f"{level}/vertices/c/" + cell(chunk)))
            except FileNotFoundError:
                cached.stats.missing.append(f"{level}/vertices/c/" + cell(chunk))
                return 8  # no file: no vertices, which the caller reports as a missing chunk

        return list(await asyncio.gather(*(one(c) for c in chunks)))

    try:
        got = np.asarray(sync(sizes()), dtype=np.int64)
    except Exception as exc:  # noqa: BLE001 - obstore's errors become one sentence
        h.access.raise_failure(exc, f"sizing level {level}'s chunks")
    if len(got) and (np.any(got < 8) or np.any((got - 8) % row)):
        return None  # not the layout assumed: let upstream count
    coords = np.asarray([[int(c) for c in k.split(".")] for k in chunks], dtype=np.int64).reshape(len(chunks), ndim)
    order = np.lexsort(coords.T[::-1]) if len(coords) else np.zeros(0, np.int64)
    return coords[order], (got[order] - 8) // row


def array_meta(h: Handle, array: str) -> dict[str, Any]:
    """An array's parsed ``zarr.json`` through the handle's store (kept for the session), or {} when absent or
    unreadable."""
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    try:
        raw = sync(h._store.get(f"{array}/zarr.json", default_buffer_prototype()))
        meta = json.loads(raw.to_bytes()) if raw is not None else {}
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def grid_origin(meta: dict[str, Any], ndim: int | None = None) -> tuple[int, ...]:
    """An array's ``chunk_grid_origin`` (the grid coordinates of its cell 0; zeros when absent).

    zarr-vectors anchors a level's arrays at ``floor(min corner / chunk
    shape)``, so data below the grid's 0 (or far above it) does not
    allocate empty cells: chunk ``k`` is stored in cell ``k - origin``.
    """
    raw = (meta.get("attributes") or {}).get("chunk_grid_origin")
    n = len(meta.get("shape") or ()) if ndim is None else ndim
    if not isinstance(raw, list) or not raw:
        return (0,) * n
    try:
        return tuple(int(v) for v in raw)
    except (TypeError, ValueError):
        return (0,) * n


def pack_rows(*arrays: np.ndarray) -> list[np.ndarray]:
    """Integer rows (same width in every array) as one int64 code each, comparable across the arrays."""
    filled = [np.asarray(a, dtype=np.int64) for a in arrays if len(a)]
    if not filled:
        return [np.zeros(0, np.int64) for _ in arrays]
    both = np.concatenate(filled)
    lo = both.min(0)
    span = both.max(0) - lo + 1
    strides = np.concatenate([np.cumprod(span[::-1])[::-1][1:], [1]]).astype(np.int64)
    return [(np.asarray(a, dtype=np.int64) - lo) @ strides if len(a) else np.zeros(0, np.int64) for a in arrays]


def _read_object_attributes(h: Handle, level: int, names: Sequence[str], ids: np.ndarray) -> dict[str, np.ndarray]:
    """Object attributes for the given object ids (dense arrays indexed by id)."""
    if not names or ids is None or len(ids) == 0:
        return {}
    from zarr_vectors import building as b

    group = h.level_group(level)
    out: dict[str, np.ndarray] = {}
    for name in names:
        try:
            dense = np.asarray(b.read_object_attributes(group, name))
        except Exception:
            continue  # coarse levels may not carry every object attribute
        if dense.shape[0] <= int(ids.max()):
            continue
        out[name] = dense[ids]
    return out


def _raise_if_chunks_missing(path: Any, level: int, chunks: Sequence[tuple[int, ...]]) -> None:
    """A StoreError naming the chunks among ``chunks`` whose vertex file is gone (locally, or 404 on the server).

    Chunks are named by their grid coordinates; a file lies at the array's cell ``chunk - chunk_grid_origin``.
    """
    h = path if isinstance(path, Handle) else handle(path)
    gone = []
    for array in ("vertices", "vertex_fragments"):
        origin = _file_layout(h, f"{level}/{array}")
        if origin is None:
            continue
        cells = {tuple(c - o for c, o in zip(k, origin, strict=False)): tuple(k) for k in chunks}
        gone += [(a, cells[k]) for a, k in h.access.gone_chunks(level, list(cells), [array])]
    if gone:
        raise h.access.missing_error(level, gone)


def _file_layout(h: Handle, array: str) -> tuple[int, ...] | None:
    """An array's ``chunk_grid_origin`` when it keeps each cell in its own file ``c/i/j`` (unsharded, "/"
    keys: a gone file, a gone chunk), else None.

    A chunk at grid coordinates ``k`` lies in cell ``k - origin`` (zero origin when the attribute is absent).
    """
    meta = array_meta(h, array)
    encoding = meta.get("chunk_key_encoding") or {}
    separator = (encoding.get("configuration") or {}).get("separator", "/")
    sharded = any(isinstance(c, dict) and c.get("name") == "sharding_indexed" for c in meta.get("codecs") or [])
    if encoding.get("name", "default") != "default" or separator != "/" or sharded:
        return None
    return grid_origin(meta)


def check_positions(path: str | os.PathLike[str] | Handle, level: int, positions: np.ndarray) -> None:
    """Positions read from ``level`` against the store's bounds, widened by one of the level's chunks (see
    ``integrity.check_in_bounds``); the bounds come from metadata, kept per handle."""
    h = handle(path)

    def box() -> tuple[np.ndarray, np.ndarray] | None:
        from zarr_vectors import building as b

        try:
            root = b.read_root_metadata(h.group)
            try:
                level_meta = b.read_level_metadata(h.group, level)
            except Exception:  # noqa: BLE001 - a level without its own metadata uses the root's chunk
                level_meta = None
            chunk = np.abs(np.asarray(b.get_level_chunk_shape(root, level_meta), np.float64))
            lo, hi = (np.asarray(v, np.float64) for v in root.bounds)
        except Exception:  # noqa: BLE001 - no usable bounds: nothing to check against (open_info says why)
            return None
        if lo.shape != chunk.shape or hi.shape != chunk.shape or not np.all(np.isfinite(np.r_[lo, hi, chunk])):
            return None
        return lo - chunk, hi + chunk

    bounds = h.memo(("bounds", int(level)), box)
    if bounds is not None:
        check_in_bounds(h.path, level, positions, bounds[0], bounds[1], vertex_dtype_of(h, level))


def missing_chunks(path: str | os.PathLike[str], level: int) -> list[tuple[str, tuple[int, ...]]]:
    """``(array, chunk)`` pairs a level's manifests list but whose data is gone, empty or unreadable on disk.

    Reads every vertex, fragment and vertex-attribute cell of the level, so
    it is a diagnosis for when a read or build has gone wrong, not a check
    for every open.  ``check_level_chunks`` tells the gone from the damaged.
    """
    gone, unreadable = _chunk_problems(path, level)
    return sorted(gone + [(array, chunk) for array, chunk, _ in unreadable])


def _chunk_problems(
    path: str | os.PathLike[str], level: int
) -> tuple[list[tuple[str, tuple[int, ...]]], list[tuple[str, tuple[int, ...], str]]]:
    """The level's listed chunks whose file is gone (or not listed by that array), and those whose file is there
    but cannot be decoded (with the reason)."""
    from zarr_vectors import building as b

    group, _ = _level(path, level)
    local = handle(path).access.local is not None
    arrays = [a for a in (b.VERTICES, b.VERTEX_FRAGMENTS) if group.array_exists(a)]
    if b.VERTEX_ATTRIBUTES in group:
        arrays += [f"{b.VERTEX_ATTRIBUTES}/{n}" for n in sorted(group[b.VERTEX_ATTRIBUTES].children())]
    keys = sorted(set().union(*(group.list_chunks(a) for a in arrays))) if arrays else []
    gone: list[tuple[str, tuple[int, ...]]] = []
    unreadable: list[tuple[str, tuple[int, ...], str]] = []

    def scan() -> None:
        gone.clear()
        unreadable.clear()
        for array in arrays:
            listed = set(group.list_chunks(array))
            for key in keys:
                chunk = tuple(int(c) for c in key.split("."))
                if key not in listed:
                    gone.append((array, chunk))
                    continue
                try:
                    blob = group.read_bytes(array, key)
                except Exception as exc:  # noqa: BLE001 - zarr and numcodecs raise many kinds for a bad file
                    unreadable.append((array, chunk, _reason(exc, local)))
                    continue
                if not blob:  # zarr reads a gone file as the empty fill value
                    gone.append((array, chunk))

    try:
        with group.batched_reads([(a, keys) for a in arrays]):
            scan()
    except Exception:  # noqa: BLE001 - the batch fails whole on one bad cell: read them one by one to find it
        scan()
    return gone, unreadable


def _reason(exc: BaseException, local: bool) -> str:
    """Why a chunk could not be decoded, in a few words (a remote store's error text may quote its URL: not shown)."""
    if local and isinstance(exc, StoreError):  # our own sentence (a cap refused, a header checked): whole
        return f"{type(exc).__name__}: {exc}"
    text = str(exc).splitlines()[0][:200] if str(exc) and local else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def check_level_chunks(path: str | os.PathLike[str], level: int) -> None:
    """A StoreError naming the chunks of ``level`` whose data is missing on disk, or present but undecodable
    (nothing when all are there and readable)."""
    gone, unreadable = _chunk_problems(path, level)
    if gone:
        raise missing_on_disk(
            handle(path).path, level, gone, "; until then the level cannot be read whole nor a pyramid built from it"
        )
    if unreadable:
        array, chunk, reason = unreadable[0]
        more = f" ({len(unreadable) - 1:,} more chunks too)" if len(unreadable) > 1 else ""
        raise damaged(
            handle(path).path,
            level,
            f"{level}/{array} chunk ({', '.join(map(str, chunk))}) is on disk but cannot be decoded ({reason}){more}",
        )


def check_point_fragments(path: str | os.PathLike[str] | Handle, level: int, keys: Sequence[Sequence[int]]) -> None:
    """Each chunk's fragment table against its vertex buffer (``integrity.check_fragments``), chunk by chunk.

    A diagnosis, run only after a point read came out with other than
    the rows its chunks hold: upstream's point reader slices rows by the
    fragment tables without checking them, so a damaged table repeats or
    drops vertices.  Undecodable chunks are named by ``check_level_chunks``.
    """
    from zarr_vectors import building as b
    from zarr_vectors.core.arrays import read_vertex_fragment_index

    h = handle(path)
    group = h.level_group(level)
    if not group.array_exists(b.VERTEX_FRAGMENTS):
        return
    dtype, ndim = vertex_dtype_of(h, level), h.ndim
    chunks = sorted({tuple(int(c) for c in k) for k in keys})
    ckeys = [".".join(map(str, k)) for k in chunks]
    try:
        with group.batched_reads([(b.VERTICES, ckeys), (b.VERTEX_FRAGMENTS, ckeys)]):
            for key in chunks:
                buf = np.asarray(b.read_chunk_vertex_buffer(group, key, dtype=dtype, ndim=ndim)).reshape(-1, ndim)
                if len(buf):
                    check_fragments(h.path, level, key, read_vertex_fragment_index(group, key), len(buf), dtype)
    except StoreError:
        raise
    except Exception:  # noqa: BLE001 - an undecodable chunk: named below, else the caller's own message
        if h.access.local is not None:
            check_level_chunks(h.path, level)


def check_point_rows(
    path: str | os.PathLike[str] | Handle, level: int, keys: Sequence[Sequence[int]] | None, rows: int
) -> None:
    """The rows a point read returned against what its chunks hold (``keys``; None: the whole level).

    Both counts are at hand (chunk sizes are kept per handle), so a
    healthy read costs one sum; a mismatch is diagnosed chunk by chunk
    and reported as damage, never passed on as data.
    """
    h = handle(path)
    # the sizes as counted (not chunk_vertex_counts, which refuses a level with a chunk gone anywhere: a read of
    # other chunks is fine, and a read of that one has named it already)
    coords, counts = h.memo(("counts", int(level)), lambda: _chunk_counts(h, level))
    sizes = {tuple(int(c) for c in k): int(n) for k, n in zip(coords, counts, strict=True)}
    wanted = list(sizes) if keys is None else sorted({tuple(int(c) for c in k) for k in keys})
    expected = sum(sizes.get(k, 0) for k in wanted)
    if int(rows) == expected:
        return
    check_point_fragments(h, level, [k for k in wanted if k in sizes])
    raise damaged(
        h.path,
        level,
        f"reading {len(wanted):,} chunks of level {level} gave {int(rows):,} vertices, but their vertices/ buffers "
        f"hold {expected:,}: a vertex_fragments table or a vertices/ chunk disagrees with the other",
    )
