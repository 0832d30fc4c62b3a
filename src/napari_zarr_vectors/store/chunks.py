"""A level's chunks: their vertex counts (from metadata, or a remote store's file lengths) and the chunks a
level lists but whose data is gone."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from .access import missing_on_disk
from .handle import Handle, _level, handle
from .metadata import _frozen


def level_rows(path: str | os.PathLike[str] | Handle, level: int) -> int:
    """How many vertex rows a level has (what parent maps index)."""
    return handle(path).chunk_offsets(level)[2]


def chunk_vertex_counts(path: str | os.PathLike[str] | Handle, level: int) -> tuple[np.ndarray, np.ndarray]:
    """Per non-empty chunk of a level: its grid coordinates (M, D) and vertex count (M,).

    Upstream sizes chunks by reading every vertex blob; for a remote store
    the blobs' sizes come from the server instead (a HEAD each, see
    ``_counts_from_lengths``), and are kept for the session.  A chunk the
    level lists as non-empty but that holds no vertices has lost its file:
    a StoreError names it, rather than a silent hole in the view.
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
        offsets, keys, total = h.chunk_offsets(level)
        starts = np.asarray([offsets[k] for k in keys], dtype=np.int64)
        got = np.asarray(keys, dtype=np.int64).reshape(len(keys), -1), np.diff(np.r_[starts, total])
    return _frozen(got[0]), _frozen(got[1])


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


def missing_chunks(path: str | os.PathLike[str], level: int) -> list[tuple[str, tuple[int, ...]]]:
    """``(array, chunk)`` pairs a level's manifests list but whose data is gone (or empty) on disk.

    Reads every vertex, fragment and vertex-attribute cell of the level, so
    it is a diagnosis for when a read or build has gone wrong, not a check
    for every open.
    """
    from zarr_vectors import building as b

    group, _ = _level(path, level)
    arrays = [a for a in (b.VERTICES, b.VERTEX_FRAGMENTS) if group.array_exists(a)]
    if b.VERTEX_ATTRIBUTES in group:
        arrays += [f"{b.VERTEX_ATTRIBUTES}/{n}" for n in sorted(group[b.VERTEX_ATTRIBUTES].children())]
    keys = sorted(set().union(*(group.list_chunks(a) for a in arrays))) if arrays else []
    found = []
    with group.batched_reads([(a, keys) for a in arrays]):
        for array in arrays:
            listed = set(group.list_chunks(array))
            for key in keys:
                try:
                    blob = group.read_bytes(array, key) if key in listed else b""
                except Exception:
                    blob = b""
                if not blob:
                    found.append((array, tuple(int(c) for c in key.split("."))))
    return found


def check_level_chunks(path: str | os.PathLike[str], level: int) -> None:
    """A StoreError naming the chunks of ``level`` whose data is missing on disk (nothing when all are there)."""
    gone = missing_chunks(path, level)
    if gone:
        raise missing_on_disk(
            handle(path).path, level, gone, "; until then the level cannot be read whole nor a pyramid built from it"
        )
