"""What the pyramid builder needs from upstream: its builder and one-level coarsening, the cross-level link
pass, the selection-strategy registry, and the vectorized engine's level reads and writes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .access import plain
from .chunks import chunk_vertex_counts
from .handle import Handle, _level, _root, _target, _writing, handle
from .integrity import check_fragments
from .read import read_level
from .rows import pack_rows


def upstream_build_pyramid(path: str | os.PathLike[str], factors: Sequence[tuple[float, float]], **kwargs: Any) -> dict:
    """Run the upstream ``build_pyramid`` unchanged (geometry and links only)."""
    from zarr_vectors.multiresolution.coarsen import build_pyramid

    with _writing(path):
        return build_pyramid(_target(path), factors=[tuple(map(float, f)) for f in factors], **kwargs)


def coarsen_one_level(
    path: str | os.PathLike[str],
    source_level: int,
    target_level: int,
    *,
    coarsen_factor: float,
    sparsity_factor: float,
    method: str,
    sparsity_strategy: str,
    sparsity_seed: int | None,
    emit_links: str,
    chunk_scale: int = 1,
) -> dict:
    """Upstream ``coarsen_level``, emitting +-1 links inline as ``emit_links`` says."""
    from zarr_vectors.multiresolution.coarsen import coarsen_level

    with _writing(path):
        return coarsen_level(
            _target(path),
            source_level=source_level,
            target_level=target_level,
            coarsen_factor=float(coarsen_factor),
            sparsity_factor=float(sparsity_factor),
            method=method,
            sparsity_strategy=sparsity_strategy,
            sparsity_seed=sparsity_seed,
            cross_level_storage=emit_links,
            chunk_scale_factor=int(chunk_scale),
        )


def finalize_links(path: str | os.PathLike[str], depth: int, storage: str) -> None:
    """Upstream's post-build pass: stamps the root's link settings, composes +-N (N >= 2)."""
    from zarr_vectors.multiresolution.coarsen import _finalize_cross_level_for_store

    with _writing(path):
        _finalize_cross_level_for_store(_target(path), cross_level_depth=depth, cross_level_storage=storage)


def object_slots(path: str | os.PathLike[str], level: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Object slots of a level: (slot ids, alive mask, representative point per slot).

    Upstream's sparsity draws slot indices; a dropped object leaves an
    empty slot. The representative point is the mean of the object's
    vertices at that level (NaN for an empty slot).
    """
    from zarr_vectors.core.arrays import read_object_manifest_rows

    h = handle(path)
    ids, manifests = read_object_manifest_rows(h.level_group(level))
    ids = np.asarray(ids, dtype=np.int64)
    alive = np.fromiter((len(m) > 0 for m in manifests), dtype=bool, count=len(manifests))
    info = h.info()
    data = read_level(h, level, kind=info.kind, vertex_attributes=(), object_attributes=())
    reps = np.full((len(ids), info.ndim), np.nan)
    if data.part_objects is not None and data.offsets is not None and len(data.part_objects):
        lengths = np.diff(data.offsets)
        slot_of = {int(i): s for s, i in enumerate(ids)}
        slot = np.fromiter((slot_of.get(int(o), -1) for o in data.part_objects), np.int64, len(data.part_objects))
        vslot = np.repeat(slot, lengths)
        good = vslot >= 0
        counts = np.bincount(vslot[good], minlength=len(ids))
        for axis in range(info.ndim):
            sums = np.bincount(vslot[good], weights=data.positions[good, axis], minlength=len(ids))
            reps[:, axis] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return ids, alive, reps


def register_selection_strategy(name: str, fn: Any) -> None:
    from zarr_vectors import building as b

    b.register_selection_strategy(name, fn)


def selection_strategy(name: str) -> Any:
    """The selection function a package registered with zarr-vectors under ``name``."""
    from zarr_vectors.multiresolution.registry import require_selection_strategy

    return require_selection_strategy(name)


def registered_selection_strategies() -> list[str]:
    from zarr_vectors.multiresolution.registry import registered_selection_strategies as reg

    return list(reg())


def coarsen_methods() -> tuple[str, ...]:
    import zarr_vectors as zv

    return tuple(zv.coarsen_methods())


@dataclass(frozen=True)
class LevelLayout:
    """What the engine needs to know of a level before coarsening it (read from metadata only)."""

    ndim: int
    root_bin: tuple[float, ...]
    root_chunk: tuple[float, ...]
    bin_shape: tuple[float, ...]
    chunk_shape: tuple[float, ...]
    chunk_keys: np.ndarray  # (C, D) sorted as the level's rows run
    chunk_counts: np.ndarray  # (C,)
    has_objects: bool
    object_attributes: tuple[str, ...]


def level_layout(path: str | os.PathLike[str] | Handle, level: int) -> LevelLayout:
    from zarr_vectors import building as b

    h = handle(path)
    root = h.group
    meta = b.read_root_metadata(root)
    group = h.level_group(level)
    try:
        level_meta = b.read_level_metadata(root, level)
    except Exception:
        level_meta = None
    own_bin = getattr(level_meta, "bin_shape", None) if level_meta is not None else None
    keys, counts = chunk_vertex_counts(h, level)
    names: tuple[str, ...] = ()
    if b.OBJECT_ATTRIBUTES in group:
        names = tuple(str(n) for n in group[b.OBJECT_ATTRIBUTES].children())
    return LevelLayout(
        ndim=int(meta.sid_ndim),
        root_bin=tuple(float(v) for v in meta.effective_bin_shape),
        root_chunk=tuple(float(v) for v in meta.chunk_shape),
        bin_shape=tuple(float(v) for v in own_bin) if own_bin else tuple(float(v) for v in meta.effective_bin_shape),
        chunk_shape=tuple(float(v) for v in b.get_level_chunk_shape(meta, level_meta)),
        chunk_keys=keys,
        chunk_counts=counts,
        has_objects=b.OBJECT_INDEX in group,
        object_attributes=names,
    )


def level_object_rows(
    path: str | os.PathLike[str], level: int, layout: LevelLayout | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every object of a level as the sequence of vertex rows its manifest walks.

    Returns ``(ids, offsets, rows)``: object ``k`` (id ``ids[k]``, in
    object-index row order) visits ``rows[offsets[k]:offsets[k+1]]``.
    Rows are level rows (chunk-major, as links address them). Passing the
    level's ``layout`` (when the caller has it) saves re-sizing every chunk.
    """
    from zarr_vectors import building as b
    from zarr_vectors.core import arrays as A

    h = handle(path)
    layout = layout or level_layout(h, level)
    group, ndim = h.level_group(level), h.ndim
    ids, manifests = A.read_object_manifest_rows(group)
    keys = [tuple(int(c) for c in k) for k in layout.chunk_keys.tolist()]
    starts = np.r_[0, np.cumsum(layout.chunk_counts)[:-1]].astype(np.int64).tolist()
    offsets_by_chunk = dict(zip(keys, starts, strict=True))
    ckeys = [".".join(map(str, k)) for k in keys]
    # every fragment of the level as (first row, row count), or an explicit row list
    frag_start: list[np.ndarray] = []
    frag_count: list[np.ndarray] = []
    explicit: dict[int, np.ndarray] = {}
    base = np.zeros(len(keys) + 1, np.int64)
    with group.batched_reads([(b.VERTEX_FRAGMENTS, ckeys)]):
        for i, key in enumerate(keys):
            fi = A.read_vertex_fragment_index(group, key)
            check_fragments(h.path, level, key, fi, int(layout.chunk_counts[i]))  # rows are cut by it below
            first = offsets_by_chunk[key]
            if fi.num_explicit_fragments == 0:  # range fragments only: the table is (start, count) per fragment
                table = np.asarray(fi._range_table, np.int64).reshape(-1, 2)
                frag_start.append(table[:, 0] + first)
                frag_count.append(table[:, 1])
            else:
                local = np.arange(int(fi.vertex_extent), dtype=np.int64)
                starts, counts = np.zeros(fi.num_fragments, np.int64), np.zeros(fi.num_fragments, np.int64)
                for f in range(fi.num_fragments):
                    explicit[int(base[i]) + f] = A.fragment_rows(local, fi, f) + first
                frag_start.append(starts)
                frag_count.append(counts)
            base[i + 1] = base[i] + fi.num_fragments
    f_start = np.concatenate(frag_start) if frag_start else np.zeros(0, np.int64)
    f_count = np.concatenate(frag_count) if frag_count else np.zeros(0, np.int64)
    for g, rows in explicit.items():
        f_count[g] = len(rows)
    lengths = np.fromiter(map(len, manifests), np.int64, len(manifests))
    flat = [entry for manifest in manifests for entry in manifest]
    empty = np.zeros(0, np.int64)
    if not flat:
        return np.asarray(ids, np.int64), np.zeros(len(manifests) + 1, np.int64), empty
    chunk = np.asarray([entry[0] for entry in flat], np.int64).reshape(len(flat), ndim)
    frag = np.fromiter((entry[1] for entry in flat), np.int64, len(flat))
    table, wanted = pack_rows(np.asarray(keys, np.int64).reshape(len(keys), ndim), chunk)
    order = np.argsort(table)
    pos = np.clip(np.searchsorted(table[order], wanted), 0, len(table) - 1)
    found = table[order][pos] == wanted
    chunk_index = order[pos]
    valid = found & (frag < np.diff(base)[chunk_index])
    gfrag = np.where(valid, base[chunk_index] + frag, 0)
    counts = np.where(valid, f_count[gfrag], 0)
    starts = f_start[gfrag]
    total = int(counts.sum())
    ends = np.cumsum(counts)
    within = np.arange(total) - np.repeat(ends - counts, counts)
    rows = np.repeat(starts, counts) + within
    for g, explicit_rows in explicit.items():  # rare: fragments that are row lists, not ranges
        hits = np.flatnonzero(valid & (gfrag == g))
        for h in hits:
            rows[ends[h] - counts[h] : ends[h]] = explicit_rows
    owner = np.repeat(np.arange(len(lengths)), lengths)
    per_object = np.bincount(owner, weights=counts, minlength=len(lengths)).astype(np.int64)
    return np.asarray(ids, np.int64), np.r_[0, np.cumsum(per_object)].astype(np.int64), rows


def read_object_attribute_table(path: str | os.PathLike[str], level: int, name: str) -> np.ndarray:
    from zarr_vectors.core import arrays as A

    return np.asarray(A.read_object_attributes(_level(path, level)[0], name))


@dataclass
class NewLevel:
    """A coarse level computed in memory, ready to write (rows chunk-major)."""

    level: int
    source_level: int
    positions: np.ndarray  # (n, D) float32, row order
    chunk_keys: np.ndarray  # (C, D), lexicographic
    chunk_starts: np.ndarray  # (C + 1,) row ranges
    bin_shape: tuple[float, ...]
    chunk_shape: tuple[float, ...]
    sparsity: float
    method: str
    one_fragment_per_vertex: bool
    object_ids: np.ndarray | None = None  # (O,) ids in object-index order
    object_offsets: np.ndarray | None = None  # (O + 1,)
    object_rows: np.ndarray | None = None  # coarse rows each object walks
    preserves_ids: bool = True
    object_attributes: dict[str, tuple[np.ndarray, np.ndarray | None]] | None = None  # name -> (data, present)


def write_new_level(path: str | os.PathLike[str], new: NewLevel, layout: LevelLayout) -> None:
    """Create one coarse level: metadata, vertices (batched), object index and object attributes."""
    with _writing(path):
        _write_new_level(plain(path), new, layout)


def _write_new_level(path: Any, new: NewLevel, layout: LevelLayout) -> None:
    from zarr_vectors import building as b
    from zarr_vectors.multiresolution.coarsen import _stamp_root_capability

    root = _root(path, "r+")
    ndim = layout.ndim
    has_objects = new.object_ids is not None
    chunk_override = None if np.allclose(new.chunk_shape, layout.root_chunk) else tuple(new.chunk_shape)
    meta = b.LevelMetadata(
        level=new.level,
        vertex_count=len(new.positions),
        arrays_present=[b.VERTICES, b.OBJECT_INDEX] if has_objects else [b.VERTICES],
        bin_shape=tuple(new.bin_shape),
        bin_ratio=tuple(max(1, int(round(t / r))) for t, r in zip(new.bin_shape, layout.root_bin, strict=True)),
        chunk_shape=chunk_override,
        object_sparsity=1.0 / new.sparsity,
        coarsening_method=new.method,
        parent_level=new.source_level,
        preserves_object_ids=bool(has_objects and new.preserves_ids),
        inherited_num_objects=len(new.object_ids) if has_objects else 0,
        shared_fragments=True,
    )
    group = b.create_resolution_level(root, new.level, meta)
    b.create_vertices_array(group, dtype="float32")
    if has_objects:
        b.create_object_index_array(group)
    pos = np.ascontiguousarray(new.positions, dtype=np.float32)
    keys = [tuple(int(c) for c in k) for k in new.chunk_keys]
    with group.batched_writes():
        for i, key in enumerate(keys):
            block = pos[new.chunk_starts[i] : new.chunk_starts[i + 1]]
            parts = list(block[:, None, :]) if new.one_fragment_per_vertex else [block]
            b.write_chunk_vertices(group, key, parts, dtype=np.float32)
    if has_objects:
        row_chunk, row_local = _chunk_of_rows(np.arange(len(pos)), new.chunk_starts)
        manifests = {}
        offs, rows = new.object_offsets, new.object_rows
        for k, oid in enumerate(new.object_ids.tolist()):
            sel = rows[offs[k] : offs[k + 1]]
            manifests[int(oid)] = list(zip([keys[c] for c in row_chunk[sel]], row_local[sel].tolist(), strict=True))
        b.write_object_index(group, manifests, sid_ndim=ndim)
        for name, (data, present) in (new.object_attributes or {}).items():
            b.create_object_attributes_array(group, name)
            b.write_object_attributes(group, name, data, present_mask=present)
        if new.preserves_ids:
            _stamp_root_capability(root, b.CAP_PRESERVED_OBJECT_IDS)
    _stamp_root_capability(root, b.CAP_SHARED_FRAGMENTS)


def _chunk_of_rows(rows: np.ndarray, chunk_starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which chunk (index into a level's chunk list) each row lies in, and its row inside that chunk."""
    chunk = np.searchsorted(chunk_starts, rows, side="right") - 1
    return chunk, rows - chunk_starts[chunk]


def write_parent_links(
    path: str | os.PathLike[str],
    fine_level: int,
    delta: int,
    parent: np.ndarray,
    fine_chunks: tuple[np.ndarray, np.ndarray],
    coarse_chunks: tuple[np.ndarray, np.ndarray],
    *,
    mirror: bool,
) -> None:
    """``links/+delta`` at the fine level (and ``-delta`` at the coarse one when ``mirror``) from a row map.

    ``parent[i]`` is fine row i's ancestor row ``delta`` levels up (-1:
    none); each ``*_chunks`` is ``(chunk_keys, chunk_starts)`` of a level.
    """
    from zarr_vectors import building as b
    from zarr_vectors.core.arrays import write_cross_level_links

    fine = np.flatnonzero(parent >= 0)
    if not len(fine):
        return
    coarse = parent[fine]

    def address(rows: np.ndarray, chunks: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        chunk, local = _chunk_of_rows(rows, chunks[1])
        return np.asarray(chunks[0], np.int64)[chunk], local

    f_cc, f_vi = address(fine, fine_chunks)
    c_cc, c_vi = address(coarse, coarse_chunks)
    with _writing(path):
        root = _root(plain(path), "r+")
        ndim = int(b.read_root_metadata(root).sid_ndim)
        group = b.get_resolution_level(root, fine_level)
        with group.batched_writes():
            write_cross_level_links(group, f_cc, f_vi, c_cc, c_vi, ndim, delta=delta)
        if mirror:
            group = b.get_resolution_level(root, fine_level + delta)
            with group.batched_writes():
                write_cross_level_links(group, c_cc, c_vi, f_cc, f_vi, ndim, delta=-delta)


def stamp_link_settings(path: str | os.PathLike[str], depth: int, storage: str, *, linked: bool) -> None:
    """Record the build's cross-level settings on the root, as upstream's finalize pass does."""
    from zarr_vectors import building as b
    from zarr_vectors.multiresolution.coarsen import _stamp_root_capability, _stamp_root_cross_level

    with _writing(path):
        root = _root(plain(path), "r+")
        _stamp_root_cross_level(root, depth=depth, storage=storage)
        if linked:
            _stamp_root_capability(root, b.CAP_MULTISCALE_LINKS)
