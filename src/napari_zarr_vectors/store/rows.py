"""A level's vertices in row order (chunk by chunk, as links address them), in batches of whole chunks, and the
parent maps decoded from the +delta links."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from .chunks import check_positions, chunk_offsets, chunk_vertex_counts, pack_rows, vertex_dtype_of
from .errors import StoreError
from .handle import Handle, handle
from .integrity import check_fragments, damaged
from .read import _read_points, read_point_chunks


def _rows_of(
    chunks: np.ndarray, local: np.ndarray, offsets: Mapping[tuple, int], total: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Global row of each (chunk, local row) endpoint, and its chunk's row count (-1 where the chunk is unknown).

    Chunk coordinates are packed into one int64 key and looked up with a
    sorted search: ~10x faster than upstream's np.unique(axis=0) gather.
    ``total`` (the level's rows) sizes the last chunk.
    """
    if len(chunks) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    table = np.asarray(list(offsets.keys()), dtype=np.int64).reshape(-1, chunks.shape[1])
    starts = np.asarray(list(offsets.values()), dtype=np.int64)
    # ``offsets`` lists the chunks in row order, laid out back to back: each one's rows end where the next begins
    sizes = np.diff(np.r_[starts, starts[-1] if total is None else total]) if len(starts) else starts
    tkeys, keys = pack_rows(table, chunks)
    order = np.argsort(tkeys)
    tkeys, starts, sizes = tkeys[order], starts[order], sizes[order]
    pos = np.clip(np.searchsorted(tkeys, keys), 0, len(tkeys) - 1)
    found = tkeys[pos] == keys
    return np.where(found, starts[pos] + local, -1), np.where(found, sizes[pos], -1)


def _check_parent_links(
    path: object, fine_level: int, delta: int, chunks: np.ndarray, vi: np.ndarray, ends: list[tuple[int, np.ndarray]]
) -> None:
    """Every record's endpoints name a row of a chunk of their level (``ends``: (level, chunk rows) per endpoint)."""
    for k, (level, sizes) in enumerate(ends):
        bad = (vi[:, k] < 0) | (vi[:, k] >= sizes)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            chunk = ", ".join(str(int(c)) for c in chunks[i, k])
            place = f"which has {int(sizes[i]):,} rows" if sizes[i] >= 0 else "which the level does not have"
            more = f" ({int(bad.sum()) - 1:,} more records too)" if bad.sum() > 1 else ""
            raise damaged(
                path,
                fine_level + delta,
                f"{fine_level}/links/{delta:+d} record {i} points at row {int(vi[i, k]):,} of chunk ({chunk}) of "
                f"level {level}, {place}{more}",
            )


def parent_map(path: str | os.PathLike[str] | Handle, fine_level: int, delta: int = 1) -> np.ndarray:
    """For every row of ``fine_level``, its parent's row at ``fine_level + delta`` (-1: none).

    Decoded from the ``links/+delta`` records at the fine level, read in
    one batched prefetch (one upstream read per chunk costs ~2 ms).  Every
    record must name a row of an existing chunk at both levels: one that
    does not is damaged, and a StoreError names it (rather than a parent
    at another chunk's vertex, or a row past the level's end).
    """
    from zarr_vectors import building as b

    h = handle(path)
    fine = h.level_group(fine_level)
    fine_off, _, n_fine = chunk_offsets(h, fine_level)
    coarse_off, _, n_coarse = chunk_offsets(h, fine_level + delta)
    family = b.links_group_path(delta)
    if not fine.array_exists(family):
        raise StoreError(
            f"Store '{path}': level {fine_level} has no +{delta} cross-level links; "
            "rebuild the pyramid with cross_level_depth >= 1."
        )
    plan = [
        (f"{family}/{seg}", sorted(fine.list_chunks(f"{family}/{seg}"))) for seg in b.list_link_offsets(fine, delta)
    ]
    with fine.batched_reads(plan):
        chunks, vi = b.read_link_arrays(fine, delta=delta)
    parent = np.full(n_fine, -1, dtype=np.int64)
    if len(vi) == 0:
        return parent
    f_rows, f_sizes = _rows_of(chunks[:, 0, :], vi[:, 0], fine_off, n_fine)
    c_rows, c_sizes = _rows_of(chunks[:, 1, :], vi[:, 1], coarse_off, n_coarse)
    _check_parent_links(h.path, fine_level, delta, chunks, vi, [(fine_level, f_sizes), (fine_level + delta, c_sizes)])
    parent[f_rows] = c_rows
    return parent


def read_rows(
    path: str | os.PathLike[str], level: int, attributes: Sequence[str] = ()
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A level's vertices (and attributes) in row order: chunk by chunk, as links address them."""
    return read_row_batch(path, level, None, (), attributes)


def iter_rows(
    path: str | os.PathLike[str],
    level: int,
    attributes: Sequence[str] = (),
    *,
    batch_vertices: int | None = 1_000_000,
) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """A level's vertices (float64) and attributes in row order, a batch of whole chunks at a time.

    Memory stays near ``batch_vertices`` rows whatever the level's size
    (None: one batch).  Point clouds go through upstream's typed point
    reader, one call per batch; other kinds through the raw chunk buffers.
    """
    batches = row_batches(path, level, batch_vertices)
    for keys, counts in batches:
        yield read_row_batch(path, level, keys, counts, attributes, whole=len(batches) == 1)


def row_batches(
    path: str | os.PathLike[str], level: int, batch_vertices: int | None = 1_000_000
) -> list[tuple[list[tuple[int, ...]], list[int]]]:
    """A level's chunks in row order, grouped into batches of about ``batch_vertices`` rows (whole chunks)."""
    return group_batches(*chunk_vertex_counts(path, level), batch_vertices)


def group_batches(
    coords: np.ndarray, counts: np.ndarray, batch_vertices: int | None
) -> list[tuple[list[tuple[int, ...]], list[int]]]:
    """Chunks (in row order) grouped into consecutive batches of about ``batch_vertices`` rows."""
    limit = batch_vertices or max(int(np.sum(counts)), 1)
    batches: list[tuple[list[tuple[int, ...]], list[int]]] = []
    size = limit + 1
    for key, n in zip(coords.tolist(), counts.tolist(), strict=True):
        if size + n > limit and (not batches or batches[-1][0]):
            batches.append(([], []))
            size = 0
        batches[-1][0].append(tuple(int(c) for c in key))
        batches[-1][1].append(int(n))
        size += n
    return batches


def read_row_batch(
    path: str | os.PathLike[str],
    level: int,
    chunk_keys: Sequence[tuple[int, ...]] | None,
    counts: Sequence[int],
    attributes: Sequence[str] = (),
    *,
    whole: bool = False,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The rows (float64) and attributes of some chunks of a level, in row order; one batched read.

    ``chunk_keys=None`` means every chunk (listed here); ``whole=True``
    says the given keys are every chunk. A whole point cloud is read with
    one whole-level typed read, ~10x faster than naming its chunks.
    """
    from zarr_vectors import building as b
    from zarr_vectors.core.arrays import read_vertex_fragment_index

    h = handle(path)
    group, ndim = h.level_group(level), h.ndim
    points = list(b.read_root_metadata(h.group).geometry_types)[:1] == ["point_cloud"]
    if chunk_keys is None or whole:
        if points:
            data = _read_points(h, level, None, list(attributes))
            return np.asarray(data.positions, np.float64), data.vertex_attributes
        if chunk_keys is None:
            chunk_keys = [tuple(int(c) for c in k) for k in chunk_vertex_counts(h, level)[0]]
    if not chunk_keys:
        return np.zeros((0, ndim)), {name: np.zeros(0) for name in attributes}
    if points:
        sizes = dict(zip(chunk_keys, counts, strict=True))
        got = read_point_chunks(h, level, chunk_keys, attributes, counts=sizes)
        parts = [got[k] for k in chunk_keys if k in got]
        return (
            np.concatenate([np.asarray(p, np.float64).reshape(-1, ndim) for p, _ in parts]),
            {name: np.concatenate([np.asarray(a[name]) for _, a in parts]) for name in attributes},
        )
    ckeys = [".".join(map(str, k)) for k in chunk_keys]
    plan = [(b.VERTICES, ckeys), (b.VERTEX_FRAGMENTS, ckeys)]
    plan += [(f"{b.VERTEX_ATTRIBUTES}/{name}", ckeys) for name in attributes]
    positions, values = [], {name: [] for name in attributes}
    with group.batched_reads(plan):
        dtype = vertex_dtype_of(h, level)
        fragments = group.array_exists(b.VERTEX_FRAGMENTS)
        for key in chunk_keys:
            buf = np.asarray(b.read_chunk_vertex_buffer(group, key, dtype=dtype, ndim=ndim), np.float64)
            buf = buf.reshape(-1, ndim)
            if fragments and len(buf):  # the table attributes are cut by: checked against the buffer first
                check_fragments(h.path, level, key, read_vertex_fragment_index(group, key), len(buf), dtype)
            check_positions(h, level, buf)
            positions.append(buf)
            for name in attributes:
                groups = b.read_chunk_attributes(group, name, key)
                part = np.concatenate([np.asarray(g) for g in groups]) if groups else np.zeros(0)
                if len(part) != len(buf):
                    raise StoreError(
                        f"Store '{path}': attribute '{name}' at level {level}, chunk {key} has "
                        f"{len(part)} rows for {len(buf)} vertices."
                    )
                values[name].append(part)
    return np.concatenate(positions), {k: np.concatenate(v) for k, v in values.items()}


def vertex_attribute_names(path: str | os.PathLike[str] | Handle, level: int) -> tuple[str, ...]:
    return handle(path).attribute_names(level)


def level_attribute_names(path: str | os.PathLike[str] | Handle, levels: Sequence[int]) -> dict[int, tuple[str, ...]]:
    """The vertex attribute names of several levels."""
    h = handle(path)
    return {level: h.attribute_names(level) for level in levels}
