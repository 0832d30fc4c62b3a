"""Drilling: a level opened once for many small reads of vertex chunks and cross-level link cells.

Keys name a vertex the way links do: its chunk's grid coordinates and its
row within that chunk's vertex buffer.  Global row numbers would need every
chunk's offset (0.1-0.4 s a level here); these need only the chunks a drill
touches."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .chunks import check_positions, listed_vertex_count, vertex_dtype_of
from .errors import StoreError
from .handle import Handle, _level, handle
from .integrity import check_fragments, check_link_rows, check_link_targets


class LevelReader:
    """One level opened once for many small reads (drilling): a handle's per-level part (``Handle.reader``).

    Opening a level, listing a link family's offset arrays and parsing
    their chunk listings cost more than the few cells a drill reads
    (~60% of a level 3 -> 0 drill, measured), so they are done once per
    reader; each read resolves zarr nodes at most once.  Reads are one at
    a time (upstream's batched reads belong to the level's group object).
    """

    def __init__(self, path: str | os.PathLike[str] | Handle, level: int) -> None:
        h = path if isinstance(path, Handle) else handle(path)  # a handle's reader reads that handle
        self.handle = h
        self.path, self.level = str(h.path), int(level)
        self._root = h.group
        self.group = h.level_group(level)
        self.ndim = h.ndim
        self._links: dict[int, tuple] = {}
        self._present: frozenset | None = None
        self._dtype: Any = None
        #: Rows of each vertex chunk read so far: what link records naming them are checked against.
        self._sizes: dict[tuple[int, ...], int] = {}
        self._reading = threading.RLock()

    def chunks_present(self) -> np.ndarray:
        """Grid coordinates (M, D) of the level's non-empty vertex chunks (presence manifest, no data read)."""
        return np.asarray(sorted(self._vertex_present()), dtype=np.int64).reshape(-1, self.ndim)

    def _vertex_present(self) -> frozenset:
        from zarr_vectors import building as b

        if self._present is None:
            self._present = frozenset(self.group.chunk_present_set(b.VERTICES))
        return self._present

    def vertex_chunks(self, chunks: Iterable[Sequence[int]]) -> dict[tuple[int, ...], np.ndarray]:
        """The vertex buffers (rows as links address them) of some chunks, in one batch.

        Each buffer is checked before it is returned: against its chunk's
        fragment table (read in the same batch) and the store's bounds, so
        a wrong declared dtype or a damaged chunk is a StoreError.
        """
        from zarr_vectors import building as b
        from zarr_vectors.core import arrays as A

        keys = sorted({tuple(int(c) for c in k) for k in chunks} & self._vertex_present())
        names = [".".join(map(str, k)) for k in keys]
        out = {}
        with (
            self._reading,
            self._root.cached_nodes(),
            self.group.batched_reads([(b.VERTICES, names), (b.VERTEX_FRAGMENTS, names)]),
        ):
            if self._dtype is None:
                self._dtype = vertex_dtype_of(self.handle, self.level)
            fragments = self.group.array_exists(b.VERTEX_FRAGMENTS)
            for key in keys:
                buf = np.asarray(b.read_chunk_vertex_buffer(self.group, key, dtype=self._dtype, ndim=self.ndim))
                buf = buf.reshape(-1, self.ndim)
                if fragments and len(buf):
                    try:
                        fi = A.read_vertex_fragment_index(self.group, key)
                    except Exception:  # noqa: BLE001 - no table to check against (a point level may keep none)
                        fi = None
                    if fi is not None:
                        check_fragments(self.path, self.level, key, fi, len(buf), self._dtype)
                out[key] = np.asarray(buf, dtype=np.float64)
        for key, buf in out.items():
            check_positions(self.handle, self.level, buf)
            self._sizes[key] = len(buf)
        return out

    def positions(self, keys: np.ndarray, *, named_by: tuple[str, int] | None = None) -> np.ndarray:
        """Positions (``(N, D)``, float64) of keyed vertices (``(N, D + 1)``: chunk, row), reading only their chunks.

        A key whose chunk or row the level lacks gets NaN, unless
        ``named_by`` says the keys came from stored links: ``(array, level)``,
        e.g. ``("1/links/+1", 2)`` with the coarser level of the two they
        join.  Then it is a StoreError naming them: links that point nowhere
        are damaged.
        """
        keys = np.asarray(keys, np.int64).reshape(-1, self.ndim + 1)
        out = np.full((len(keys), self.ndim), np.nan)
        if not len(keys):
            return out
        chunks, which = np.unique(keys[:, :-1], axis=0, return_inverse=True)
        which = np.asarray(which).reshape(-1)
        buffers = self.vertex_chunks([tuple(c) for c in chunks.tolist()])
        if named_by is not None:
            sizes = {k: len(v) for k, v in buffers.items()}
            check_link_targets(self.path, named_by[1], named_by[0], self.level, keys, sizes)
        for i, c in enumerate(chunks.tolist()):
            buf = buffers.get(tuple(int(v) for v in c))
            if buf is None:
                continue
            sel = np.flatnonzero(which == i)
            rows = keys[sel, -1]
            ok = (rows >= 0) & (rows < len(buf))
            out[sel[ok]] = buf[rows[ok]]
        return out

    def _link_layout(self, delta: int) -> tuple:
        """(width, scales, [(array name, offsets, present cells, dtype)]) of ``links/<delta>``, cached."""
        from zarr_vectors import building as b
        from zarr_vectors.core import arrays as A

        if delta in self._links:
            return self._links[delta]
        g, family = self.group, b.links_group_path(delta)
        segments = []
        width, scales = 2, ((1,) * self.ndim, (1,) * self.ndim)
        with self._reading, self._root.cached_nodes():
            if g.array_exists(family):
                fam = g.read_array_meta(family) or {}
                width, directed, kind = int(fam.get("link_width", 2)), bool(fam.get("directed")), fam.get("store")
                scales = A._link_scales(g, delta, self.ndim)
                for seg in A.list_link_offsets(g, delta):
                    name = f"{family}/{seg}"
                    offsets = A.parse_offsets(seg, sid_ndim=self.ndim, link_width=width)
                    meta = g.read_array_meta(name) or {}
                    if meta.get("has_perm", A.links_has_perm(offsets, delta=delta, directed=directed, store=kind)):
                        raise StoreError(
                            f"Store '{self.path}': links/{delta:+d} at level {self.level} store their endpoints "
                            "permuted, which cross-level links never do; rebuild the pyramid's links."
                        )
                    dtype = np.dtype(meta.get("dtype", "int64"))
                    segments.append((name, offsets, frozenset(g.chunk_present_set(name)), dtype))
        self._links[delta] = (width, scales, segments)
        return self._links[delta]

    def link_cells_present(self, delta: int) -> list[tuple[int, ...]]:
        """The source cells that hold ``links/<delta>`` records, sorted (chunk listings only, no data read)."""
        return sorted(set().union(*(seg[2] for seg in self._link_layout(delta)[2])))

    def link_cells(
        self, delta: int, cells: Iterable[Sequence[int]], *, check: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``links/<delta>`` records whose source cell is one of ``cells``.

        Returns ``(chunks, rows)`` shaped ``(M, 2, D)`` and ``(M, 2)``:
        endpoint 0 is the source (a vertex of this level), endpoint 1 the
        vertex at ``level + delta``.  Only the listed cells are read, in one batch.
        With ``check`` (what drilling uses) each row is checked against the
        vertex count of the level it names (from metadata): a negative or
        larger row is a StoreError naming the array, cell and record, and
        ``positions(..., named_by=...)`` checks the rows against their
        chunks when those are read.  ``repair`` reads them unchecked: it
        diagnoses exactly such records.
        """
        from zarr_vectors.core import arrays as A

        width, (scale_src, scale_trg), segments = self._link_layout(delta)
        levels = [self.level, self.level + delta] + [self.level + delta] * max(width - 2, 0)
        bounds = [(lv, listed_vertex_count(self.handle, lv)) for lv in levels] if check else []
        wanted = {tuple(int(c) for c in k) for k in cells}
        plan = [(seg, sorted(wanted & seg[2])) for seg in segments if wanted & seg[2]]
        chunk_parts, row_parts = [], []
        batch = [(seg[0], [".".join(map(str, c)) for c in cs]) for seg, cs in plan]
        with self._reading, self._root.cached_nodes(), self.group.batched_reads(batch):
            for (name, offsets, _, dtype), cs in plan:
                for cell in cs:
                    blob = self.group.read_bytes(name, ".".join(map(str, cell)))
                    rows = A._link_cell_rows(blob, ncols=width, flat=False, dtype=dtype)
                    if check:
                        check_link_rows(self.path, self.level, name, cell, rows, bounds)
                    ends = A.cell_endpoint_chunks(cell, offsets, scale_src, scale_trg)
                    chunk_parts.append(np.broadcast_to(np.asarray(ends, np.int64), (len(rows), width, self.ndim)))
                    row_parts.append(rows)
        if not row_parts:
            return np.zeros((0, 2, self.ndim), np.int64), np.zeros((0, 2), np.int64)
        return np.concatenate(chunk_parts), np.concatenate(row_parts).astype(np.int64)


def reader_of(path: str | os.PathLike[str] | Handle, level: int) -> LevelReader:
    """The level's ``LevelReader`` (chunk presence, link layouts), one per handle."""
    h = path if isinstance(path, Handle) else handle(path)
    return h.memo(("reader", int(level)), lambda: LevelReader(h, level))


def chunks_present(path: str | os.PathLike[str] | Handle, level: int) -> np.ndarray:
    """Grid coordinates (M, D) of a level's non-empty vertex chunks, from the presence manifest."""
    return reader_of(path, level).chunks_present()


def fragment_owners(path: str | os.PathLike[str] | Handle, level: int) -> dict[tuple[tuple[int, ...], int], int]:
    """Which object owns each (chunk, fragment) of a level; a fragment shared by several names the lowest id.

    Reads every object manifest of the level (about a second for 10,000
    objects here), so callers cache it.
    """
    from zarr_vectors.core import arrays as A

    group, _ = _level(path, level)
    ids, manifests = A.read_object_manifest_rows(group)
    owner: dict[tuple[tuple[int, ...], int], int] = {}
    for oid, manifest in sorted(zip(ids.tolist(), manifests, strict=True), reverse=True):
        for chunk, frag in manifest:
            owner[(tuple(int(c) for c in chunk), int(frag))] = int(oid)
    return owner


def vertex_owners(
    path: str | os.PathLike[str],
    level: int,
    chunks: Iterable[Sequence[int]],
    owners: Mapping[tuple[tuple[int, ...], int], int],
) -> dict[tuple[int, ...], np.ndarray]:
    """Per chunk, the object owning each vertex row (-1: none), from ``fragment_owners``.

    Each chunk's fragment table is checked against its rows (known when
    the chunk's vertices were read through ``reader_of``, else the level's
    vertex count bounds it) before rows are made from it.
    """
    from zarr_vectors.core import arrays as A

    group, _ = _level(path, level)
    sizes = reader_of(path, level)._sizes  # the chunks a drill read: their rows are known
    listed = listed_vertex_count(path, level)
    out = {}
    for chunk in {tuple(int(c) for c in k) for k in chunks}:
        fi = A.read_vertex_fragment_index(group, chunk)
        n = sizes.get(chunk)
        if n is None:  # not read here: the table's own extent, bounded by the level's vertex count
            n = int(A._fragment_vertex_extent(fi))
            if listed is not None and n > listed:
                n = listed
        check_fragments(path, level, chunk, fi, n)
        owner = np.full(n, -1, np.int64)
        for frag in range(fi.num_fragments):
            oid = owners.get((chunk, frag))
            if oid is not None:
                rows = A.fragment_rows(np.arange(n), fi, frag)
                owner[rows] = np.where(owner[rows] < 0, oid, np.minimum(owner[rows], oid))
        out[chunk] = owner
    return out
