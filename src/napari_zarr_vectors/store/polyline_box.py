"""Polylines read by box in whole arrays: every manifest of a level once (``PolylineIndex``), then only the
chunks a box meets, gathered with numpy; ``clip_parts`` cuts what is drawn to the box."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .access import address, resolve, shown
from .chunks import _raise_if_chunks_missing, _read_object_attributes, check_positions, pack_rows, vertex_dtype_of
from .errors import StoreError
from .handle import Handle, _level, _root, handle
from .info import LevelData
from .integrity import check_fragments, damaged


@dataclass(frozen=True)
class PolylineIndex:
    """Every object manifest of a polyline level as flat arrays: what a box read needs before any vertex.

    Entry ``e`` is one ``(chunk, fragment)`` step of an object's walk:
    object-index row ``entry_row[e]`` (object id ``ids[entry_row[e]]``)
    visits fragment ``entry_fragment[e]`` of chunk ``entry_chunk[e]``.
    Entries run object by object (in object-index row order), each
    object's in its manifest's order, so consecutive entries of one
    object are consecutive pieces of its polyline.
    """

    level: int
    ndim: int
    chunk_shape: tuple[float, ...]
    ids: np.ndarray  # (O,) int64 object id per object-index row
    entry_row: np.ndarray  # (E,) int32
    entry_chunk: np.ndarray  # (E, D) int32
    entry_fragment: np.ndarray  # (E,) int32

    @property
    def nbytes(self) -> int:
        return int(self.ids.nbytes + self.entry_row.nbytes + self.entry_chunk.nbytes + self.entry_fragment.nbytes)

    @property
    def sharing(self) -> float:
        """Manifest entries per distinct fragment: about how many times a stored vertex is drawn.

        1 when no two objects share a fragment (level 0); per_object
        coarse levels share metavertices, one fragment each, so there it
        is drawn / stored exactly (31x at the streamline sample's level 1).
        """
        if not len(self.entry_row):
            return 1.0
        (code,) = pack_rows(np.c_[self.entry_chunk, self.entry_fragment])
        top = int(code.max()) + 1
        if top <= 16 * len(code):  # a dense code range: a mask counts the distinct ones without a sort
            seen = np.zeros(top, bool)
            seen[code] = True
            return float(len(code) / int(np.count_nonzero(seen)))
        code = np.sort(code)
        return float(len(code) / (1 + int(np.count_nonzero(code[1:] != code[:-1]))))


def _manifest_entries(group: Any, ndim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ids, entry rows, entry chunks, entry fragments) of every manifest of a level, decoded with numpy.

    Upstream's decoder builds a Python tuple per entry (0.5-0.9 s for the
    streamline sample's 400k-600k entries); the uniform layout every bulk
    writer produces (a ``<u4`` block count, then blocks of ``D`` ``<i8``
    chunk coordinates, a mode byte 0 and an ``<i8`` fragment index) is
    parsed here as arrays instead.  Anything else goes through upstream's
    decoder, so the two never disagree.
    """
    from zarr_vectors.core import arrays as A
    from zarr_vectors.encoding.fragments import MANIFEST_MODE_SINGLE

    empty = np.zeros(0, np.int32)
    meta = group.read_array_meta(A.OBJECT_INDEX)
    A._require_object_index_layout(meta)
    if int(meta.get("num_objects", 0)) == 0:
        return empty.astype(np.int64), empty, np.zeros((0, ndim), np.int32), empty
    sid = int(meta["sid_ndim"])
    blobs = group.read_vlen_array(f"{A.OBJECT_INDEX}/manifests")
    ids = np.asarray(A.object_ids_for_rows(group), np.int64)
    if ids.size != len(blobs):  # as upstream: a table that disagrees with the rows cannot name them
        ids = np.arange(len(blobs), dtype=np.int64)
    n = len(blobs)
    block = np.dtype([("chunk", "<i8", (sid,)), ("mode", "u1"), ("fragment", "<i8")])  # packed: 8 * sid + 9 bytes
    lengths = np.fromiter((len(b) for b in blobs), np.int64, n)
    if n and int(lengths.min()) >= 4 and not np.any((lengths - 4) % block.itemsize):
        heads = np.frombuffer(b"".join(b[:4] for b in blobs), "<u4").astype(np.int64)
        per_row = (lengths - 4) // block.itemsize
        if np.array_equal(heads, per_row):
            table = np.frombuffer(b"".join(b[4:] for b in blobs), block)
            if not np.any(table["mode"] != MANIFEST_MODE_SINGLE):
                rows = np.repeat(np.arange(n, dtype=np.int32), per_row)
                return ids, rows, table["chunk"][:, :ndim].astype(np.int32), table["fragment"].astype(np.int32)
    manifests = A._decode_manifests(blobs, sid)  # ranges or explicit blocks: upstream expands them
    sizes = np.fromiter(map(len, manifests), np.int64, n)
    flat = [entry for manifest in manifests for entry in manifest]
    chunk = np.asarray([entry[0] for entry in flat], np.int32).reshape(len(flat), sid)[:, :ndim]
    frag = np.fromiter((entry[1] for entry in flat), np.int32, len(flat))
    return ids, np.repeat(np.arange(n, dtype=np.int32), sizes), chunk, frag


def polyline_index(path: str | os.PathLike[str] | Handle, level: int) -> PolylineIndex:
    """The flat manifest table of a polyline level (``PolylineIndex``); callers reading many boxes keep it.

    About 0.1 s for the streamline sample's 600k manifest entries (upstream's
    per-object decode took 0.9 s).
    """
    from zarr_vectors import building as b

    p = address(path)
    try:
        root = _root(p)
        meta = b.read_root_metadata(root)
        ndim = int(meta.sid_ndim)
        group = b.get_resolution_level(root, level)
        try:
            level_meta = b.read_level_metadata(root, level)
        except Exception:
            level_meta = None
        shape = tuple(float(v) for v in b.get_level_chunk_shape(meta, level_meta))
        if b.OBJECT_INDEX not in group:
            raise StoreError(f"Store '{shown(p)}': level {level} has no object index (no polylines to read).")
        ids, rows, chunk, frag = _manifest_entries(group, ndim)
    except StoreError:
        raise
    except Exception as exc:
        resolve(p).raise_failure(exc, f"reading the object index of level {level}")
    return PolylineIndex(level, ndim, shape, ids, rows, chunk, frag)


def _fragment_table(fi: Any) -> tuple[np.ndarray, np.ndarray]:
    """Every fragment of a chunk as rows of its vertex buffer: (offsets (F + 1,), rows), CSR style."""
    table = fi.ranges()
    if table is not None:  # range fragments only, what bulk writers produce
        table = np.asarray(table, np.int64).reshape(-1, 2)
        counts = table[:, 1]
        offsets = np.r_[0, np.cumsum(counts)].astype(np.int64)
        within = np.arange(int(offsets[-1]), dtype=np.int64) - np.repeat(offsets[:-1], counts)
        return offsets, np.repeat(table[:, 0], counts) + within
    parts = [np.asarray(fi.indices(f), np.int64) for f in range(fi.num_fragments)]  # rare: explicit row lists
    offsets = np.r_[0, np.cumsum([len(x) for x in parts])].astype(np.int64)
    return offsets, (np.concatenate(parts) if parts else np.zeros(0, np.int64))


def _box_chunks(index: PolylineIndex, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Whether each manifest entry's chunk can hold a vertex of the box ``[lo, hi]``.

    Chunk ``c`` holds ``[c * shape, (c + 1) * shape)`` (grid coordinates
    are absolute: an array's ``chunk_grid_origin`` only says in which of
    its cells chunk ``c`` is stored), so a chunk that only touches ``lo`` with its upper face is
    not read (upstream's chunk resolution says the same).
    """
    shape = np.asarray(index.chunk_shape, float)
    c = index.entry_chunk
    return np.all(((c + 1) * shape > lo) & (c * shape <= hi), axis=1)


def read_polyline_box(
    path: str | os.PathLike[str] | Handle,
    level: int,
    box: tuple[Sequence[float], Sequence[float]],
    *,
    kind: str = "polyline",
    index: PolylineIndex | None = None,
    whole_objects: bool = False,
    clip: bool = True,
    vertex_attributes: Sequence[str] | None = None,
    object_attributes: Sequence[str] | None = None,
    object_ids: Sequence[int] | None = None,
) -> LevelData:
    """The polylines of a level inside a box, read in whole arrays (no per-object reader).

    The manifests (``index``, from ``polyline_index``; read here when not
    given) say which fragments lie in the chunks meeting the box; those
    chunks' vertex buffers, fragment tables and vertex attributes are read
    in one batch and gathered with numpy.

    A *part* is a run of consecutive manifest entries of one object whose
    chunks all meet the box, joined (as an object's fragments join into
    its polyline): so an object that leaves the box's chunks and comes
    back is two parts, both naming it in ``part_objects``.  With
    ``whole_objects`` every object having a fragment there is read end to
    end instead, one part per object (what upstream's bbox read returns).

    ``clip`` then bounds what is drawn: only segments whose bounding box
    meets ``box`` are kept (with both their vertices, so a segment
    crossing the edge stays whole), and a part is cut where it leaves the
    box; a part of one vertex stays if that vertex is inside.
    ``clip=False`` returns the chunks' fragments as they are.

    Returns a ``LevelData`` like ``read_level``'s: ``offsets``,
    ``part_objects``, per-vertex attributes (``vertex_attributes``: None
    reads every one) and per-part object attributes (``object_attributes``:
    None reads every one).  ``object_ids`` keeps only those objects, in
    that order (``read_level``'s object read).

    Every fragment table is checked against its chunk's vertex buffer
    before it is used (``integrity.check_fragments``), and the positions
    against the store's bounds: damaged data is a StoreError, not a short
    or invented polyline.
    """
    from zarr_vectors import building as b

    p = address(path)
    index = index if index is not None else polyline_index(p, level)
    ndim = index.ndim
    lo, hi = (np.asarray(v, float).reshape(ndim) for v in box)
    meet = _box_chunks(index, lo, hi)
    if object_ids is not None:
        meet &= np.isin(index.ids[index.entry_row], np.asarray(list(object_ids), np.int64))
    if whole_objects:
        meet = np.isin(index.entry_row, np.unique(index.entry_row[meet]))
    sel = np.flatnonzero(meet)
    try:
        group, _ = _level(p, level)
        if vertex_attributes is None:
            vertex_attributes = (
                tuple(str(n) for n in group[b.VERTEX_ATTRIBUTES].children()) if (b.VERTEX_ATTRIBUTES in group) else ()
            )
        names = list(vertex_attributes)
        if object_attributes is None:
            object_attributes = (
                tuple(str(n) for n in group[b.OBJECT_ATTRIBUTES].children()) if (b.OBJECT_ATTRIBUTES in group) else ()
            )
        chunks = index.entry_chunk[sel]
        (code,) = pack_rows(chunks)  # one int64 per chunk: ~10x faster than np.unique(axis=0)
        _, first, chunk_of = np.unique(code, return_index=True, return_inverse=True)
        chunk_of = np.asarray(chunk_of, np.int64).reshape(-1)
        keys = [tuple(int(c) for c in k) for k in chunks[first].tolist()]
        buffers, attrs, frag_offsets, frag_rows = _read_box_chunks(p, group, level, keys, names, ndim)
    except StoreError:
        raise
    except Exception as exc:
        resolve(p).raise_failure(exc, f"reading a box of level {level}")
    # each selected entry -> its fragment's rows in the joined buffer of the box's chunks (CSR over all fragments)
    n_frags = np.fromiter((len(o) - 1 for o in frag_offsets), np.int64, len(keys))
    frag_base = np.r_[0, np.cumsum(n_frags)].astype(np.int64)
    row_base = np.r_[0, np.cumsum([len(x) for x in buffers])].astype(np.int64)
    all_counts = np.concatenate([np.diff(o) for o in frag_offsets] + [np.zeros(0, np.int64)])
    all_offsets = np.r_[0, np.cumsum(all_counts)].astype(np.int64)
    all_rows = np.concatenate(
        [r + base for r, base in zip(frag_rows, row_base[:-1], strict=True)] + [np.zeros(0, np.int64)]
    )
    frag = index.entry_fragment[sel]
    valid = (frag >= 0) & (frag < n_frags[chunk_of]) if len(sel) else np.zeros(0, bool)
    if not np.all(valid):  # a manifest naming a fragment its chunk lacks: that chunk's data is short
        lacking = [keys[i] for i in np.unique(chunk_of[~valid])]
        _raise_if_chunks_missing(p, level, lacking)
        e = int(np.flatnonzero(~valid)[0])
        raise damaged(
            p,
            level,
            f"the object manifest of object {int(index.ids[index.entry_row[sel[e]]])} names fragment "
            f"{int(frag[e])} of chunk ({', '.join(map(str, keys[chunk_of[e]]))}), whose {level}/vertex_fragments "
            f"table has {int(n_frags[chunk_of[e]])} fragments",
        )
    gfrag = np.where(valid, frag_base[chunk_of] + frag, 0)
    counts = np.where(valid, all_offsets[gfrag + 1] - all_offsets[gfrag], 0)
    ends = np.cumsum(counts)
    within = np.arange(int(ends[-1]) if len(ends) else 0, dtype=np.int64) - np.repeat(ends - counts, counts)
    rows = all_rows[np.repeat(all_offsets[gfrag], counts) + within]
    # parts: runs of consecutive selected entries of one object
    erow = index.entry_row[sel]
    start = np.ones(len(sel), bool)
    if len(sel):
        start[1:] = (sel[1:] != sel[:-1] + 1) | (erow[1:] != erow[:-1])
    part_of_entry = np.cumsum(start) - 1
    n_parts = int(start.sum())
    lengths = np.bincount(part_of_entry, weights=counts, minlength=n_parts).astype(np.int64)
    part_objects = index.ids[erow[start]]
    nonempty = lengths > 0
    part_objects, lengths = part_objects[nonempty], lengths[nonempty]
    joined = np.concatenate(buffers) if buffers else np.zeros((0, ndim), np.float32)
    check_positions(handle(p), level, joined)
    positions = joined[rows]
    vattrs = {name: values[rows] for name, values in attrs.items()}
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    data = LevelData(
        kind=kind,
        level=level,
        positions=positions,
        vertex_attributes=vattrs,
        offsets=offsets,
        part_objects=np.asarray(part_objects, np.int64),
    )
    if object_ids is not None and len(data.part_objects) > 1:  # the order asked for (a stable sort keeps parts')
        rank = {int(o): i for i, o in reversed(list(enumerate(object_ids)))}
        data = _reordered(data, np.argsort([rank[int(o)] for o in data.part_objects], kind="stable"))
    onames = list(object_attributes)
    if len(data.part_objects):
        data.object_attributes = _read_object_attributes(handle(p), level, onames, data.part_objects)
    else:  # an empty box still names its columns (a layer's features keep them): zero-length, in their dtype
        first_row = _read_object_attributes(handle(p), level, onames, np.zeros(1, np.int64))
        data.object_attributes = {k: v[:0] for k, v in first_row.items()}
    return clip_parts(data, lo, hi) if clip else data


def _reordered(data: LevelData, order: np.ndarray) -> LevelData:
    """``data`` with its parts in ``order`` (vertex attributes follow their vertices)."""
    offsets = np.asarray(data.offsets, np.int64)
    lengths = np.diff(offsets)[order]
    take = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in order] + [np.zeros(0, np.int64)])
    return LevelData(
        kind=data.kind,
        level=data.level,
        positions=np.asarray(data.positions)[take],
        vertex_attributes={k: np.asarray(v)[take] for k, v in data.vertex_attributes.items()},
        offsets=np.r_[0, np.cumsum(lengths)].astype(np.int64),
        part_objects=np.asarray(data.part_objects)[order],
    )


def _read_box_chunks(
    p: Path | str, group: Any, level: int, keys: list[tuple[int, ...]], names: Sequence[str], ndim: int
) -> tuple[list[np.ndarray], dict[str, np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Vertex buffers, joined vertex attributes, and fragment tables (offsets, rows) of some chunks; one batch."""
    from zarr_vectors import building as b
    from zarr_vectors.core import arrays as A

    ckeys = [".".join(map(str, k)) for k in keys]
    plan = [(b.VERTICES, ckeys), (b.VERTEX_FRAGMENTS, ckeys)]
    plan += [(f"{b.VERTEX_ATTRIBUTES}/{name}", ckeys) for name in names]
    buffers, frag_offsets, frag_rows = [], [], []
    values: dict[str, list[np.ndarray]] = {name: [] for name in names}
    layouts = {name: A.attribute_layout(group, name) for name in names}
    short: list[tuple[int, ...]] = []
    undecodable: list[tuple[tuple[int, ...], str]] = []
    dtype = vertex_dtype_of(handle(p), level)
    with group.batched_reads(plan):
        for key in keys:
            buf = np.asarray(b.read_chunk_vertex_buffer(group, key, dtype=dtype, ndim=ndim)).reshape(-1, ndim)
            try:
                fi = A.read_vertex_fragment_index(group, key)
            except Exception as exc:  # noqa: BLE001 - a gone file reads as empty bytes, which upstream refuses too
                fi = None
                undecodable.append((key, type(exc).__name__))
            if fi is not None and len(buf):
                check_fragments(p, level, key, fi, len(buf), dtype)
            if fi is None or not len(buf):  # the manifests name this chunk: its file is gone (or a 404)
                short.append(key)
                buffers.append(np.zeros((0, ndim), buf.dtype))
                frag_offsets.append(np.zeros(1, np.int64))
                frag_rows.append(np.zeros(0, np.int64))
                for name in names:
                    values[name].append(np.zeros(0, layouts[name][0]))
                continue
            offsets, rows = _fragment_table(fi)
            buffers.append(buf)
            frag_offsets.append(offsets)
            frag_rows.append(rows)
            for name in names:
                a_dtype, a_ncols = layouts[name]
                raw = group.read_bytes(f"{b.VERTEX_ATTRIBUTES}/{name}", ".".join(map(str, key)))
                full = A.attribute_buffer(raw, fi, a_dtype, what=f"Attribute '{name}' chunk {key}")
                if full is None or len(full) != len(buf):
                    raise StoreError(
                        f"Store '{shown(p)}': attribute '{name}' at level {level}, chunk {key} has "
                        f"{0 if full is None else len(full)} rows for {len(buf)} vertices."
                    )
                values[name].append(full.reshape(len(buf)) if a_ncols == 1 and full.shape[1] == 1 else full)
    if short:  # zarr reads a gone file (or a 404) as empty: name it rather than leave a hole
        _raise_if_chunks_missing(p, level, short)
        if resolve(p).local is None:  # a 404 the session recorded: missing on the server
            raise resolve(p).missing_error(level, [(b.VERTICES, k) for k in short])
        key = short[0]
        why = dict(undecodable).get(key)
        what = f"its fragment table cannot be decoded ({why})" if why else "its vertex buffer is empty"
        more = f" ({len(short) - 1:,} more chunks too)" if len(short) > 1 else ""
        raise damaged(
            p,
            level,
            f"{level}/vertices chunk ({', '.join(map(str, key))}), which the object manifests name, has files on "
            f"disk but {what}{more}",
        )
    joined = {name: np.concatenate(v) if v else np.zeros(0, layouts[name][0]) for name, v in values.items()}
    return buffers, joined, frag_offsets, frag_rows


def clip_parts(data: LevelData, lo: Sequence[float], hi: Sequence[float]) -> LevelData:
    """Polyline parts cut to the segments whose bounding box meets ``[lo, hi]`` (store order).

    A kept segment keeps both its vertices, so what is drawn reaches at
    most one segment past the box; a part is split where a segment is
    dropped.  A one-vertex part stays when that vertex is inside.  Vertex
    attributes, ``part_objects`` and the per-part object attributes follow.
    """
    pos = np.asarray(data.positions)
    offsets = np.asarray(data.offsets, np.int64)
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    n = len(pos)
    part = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    inside = np.all((pos >= lo) & (pos <= hi), axis=1) if n else np.zeros(0, bool)
    if n > 1:
        a, b2 = pos[:-1], pos[1:]
        seg = (part[1:] == part[:-1]) & np.all((np.maximum(a, b2) >= lo) & (np.minimum(a, b2) <= hi), axis=1)
    else:
        seg = np.zeros(max(n - 1, 0), bool)
    keep = inside.copy()
    keep[:-1] |= seg
    keep[1:] |= seg
    joined_before = np.zeros(n, bool)
    joined_before[1:] = seg
    kept = np.flatnonzero(keep)
    starts = ~joined_before[kept]
    new_part = np.cumsum(starts) - 1
    lengths = np.bincount(new_part, minlength=int(starts.sum())).astype(np.int64)
    source = part[kept[starts]]  # the part each new part was cut from
    return LevelData(
        kind=data.kind,
        level=data.level,
        positions=pos[kept],
        vertex_attributes={k: np.asarray(v)[kept] for k, v in data.vertex_attributes.items() if len(v) == n},
        offsets=np.r_[0, np.cumsum(lengths)].astype(np.int64),
        part_objects=None if data.part_objects is None else np.asarray(data.part_objects)[source],
        object_attributes={k: np.asarray(v)[source] for k, v in data.object_attributes.items()},
    )
