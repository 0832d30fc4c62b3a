"""A store's levels: list them, remove the coarsest, sum them up, and size new ones before a build.

Also ``store_path_of``, the store a napari layer was read from, which
the Build dock uses to find the store whose levels it shows.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from .. import density, store
from .options import PyramidError
from .plan import normalize_factors


def list_resolution_levels(path: str | os.PathLike[str]) -> list[int]:
    """The store's resolution levels, finest (0) first.

    Parameters
    ----------
    path : str or os.PathLike
        The store.

    Returns
    -------
    list of int
        Level indices on disk, sorted: ``[0, 1, 2]`` for a three-level pyramid.

    Raises
    ------
    StoreError
        ``path`` is not a Zarr Vectors store, or its metadata is damaged.
    """
    return store.list_levels(path)


def remove_resolution_level(path: str | os.PathLike[str], level_index: int) -> None:
    """Remove the coarsest level (only it can go, so the pyramid never has a hole), and every link into it.

    Parameters
    ----------
    path : str or os.PathLike
        The store.
    level_index : int
        The level to remove: the store's coarsest, and never 0 (level 0
        is the data itself).

    Returns
    -------
    None

    Raises
    ------
    PyramidError
        ``level_index`` is 0, not a level of the store, or not the coarsest.
    StoreError
        ``path`` is not a Zarr Vectors store, its metadata is damaged, or
        it is read-only. Every check runs before anything is changed.
    """
    store.refuse_remote(path, "remove a level")
    info = store.open_info(path)
    levels = [lv.index for lv in info.levels]
    if isinstance(level_index, bool) or not isinstance(level_index, int | np.integer):
        raise PyramidError(
            f"level_index must be a whole number, one of the store's levels {levels}; got {level_index!r}."
        )
    coarse = levels[1:]
    if level_index == 0:
        raise PyramidError(
            f"Level 0 of '{info.path}' holds the data itself and cannot be removed; only coarse levels can. "
            + (
                f"The coarsest is level {levels[-1]}: remove_resolution_level(path, {levels[-1]}) removes it, "
                "then the next one can go."
                if coarse
                else "This store has no coarse levels."
            )
        )
    if level_index not in levels:
        raise PyramidError(f"Store '{info.path}' has no resolution level {level_index}; it has levels {levels}.")
    if level_index != levels[-1]:
        raise PyramidError(
            f"Only the coarsest level ({levels[-1]}) can be removed, so no level is left without "
            f"its parent; remove levels {levels[-1]} down to {level_index} in turn, starting with "
            f"remove_resolution_level(path, {levels[-1]})."
        )
    # all or nothing, in one write session: the level and every link family pointing into it
    # (with cross_level_depth 2, level 1's links/+2 as well as level 2's links/+1)
    store.remove_level(info.path, int(level_index))


def pyramid_summary(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Per level: vertices, objects, bin shape, bytes on disk, ratio to level 0; the overhead; the density pyramid.

    Parameters
    ----------
    path : str or os.PathLike
        The store.

    Returns
    -------
    dict
        ``path``, ``kind``, ``levels`` (one dict per level: ``level``,
        ``vertices``, ``objects``, ``bin_shape``, ``bytes``,
        ``vertex_ratio`` to level 0, vertex ``attributes``, and which of
        them are ``text_attributes``, aggregated with ``mode`` only),
        ``storage_overhead`` (coarse levels' bytes over level 0's) and
        ``density`` (the default density pyramid's shapes and overhead,
        from metadata only).

    Raises
    ------
    StoreError
        ``path`` is not a readable Zarr Vectors store.
    """
    store.recover_if_interrupted(path)  # a killed build is undone (or finished) before it is summed up
    h = store.handle(path)
    info = store.open_info(h)
    base = info.levels[0]
    names = store.level_attribute_names(h, [lv.index for lv in info.levels])
    text = {lv.index: tuple(store.text_attributes(h, lv.index)) for lv in info.levels}
    rows = []
    for lv in info.levels:
        nbytes = store.level_nbytes(info.path, lv.index)
        rows.append(
            {
                "level": lv.index,
                "vertices": lv.vertex_count,
                "objects": lv.object_count,
                "bin_shape": lv.bin_shape,
                "bytes": nbytes,
                "vertex_ratio": lv.vertex_count / max(base.vertex_count, 1),
                "attributes": names[lv.index],
                "text_attributes": text[lv.index],
            }
        )
    level0 = rows[0]["bytes"] or 1
    return {
        "path": info.path,
        "kind": info.kind,
        "levels": rows,
        "storage_overhead": sum(r["bytes"] for r in rows[1:]) / level0,
        # the image pyramid of its default density raster: shapes and pixels over level 0's
        "density": density.density_summary(info),
    }


def suggest_factors(
    path: str | os.PathLike[str], coarsen: float = 2.0, *, vertex_floor: int = 500, max_levels: int = 12
) -> list[tuple[float, float]]:
    """Levels until the coarsest grid fits one chunk or its vertex estimate reaches ``vertex_floor``.

    The vector counterpart of an image pyramid's ceil(log2(max dimension)):
    level k bins at base_bin * coarsen**k; it stops at the first k whose
    bins across the data extent fit in one chunk's bins, or whose occupied-
    bin estimate (bins across the extent, capped by level 0's count) is at
    most ``vertex_floor``.

    Parameters
    ----------
    path : str or os.PathLike
        The store.
    coarsen : float, optional
        The coarsen factor of every suggested level (default 2; must be > 1).
    vertex_floor : int, optional
        Stop once a level's estimated vertex count is at most this (default 500).
    max_levels : int, optional
        Never suggest more levels than this (default 12).

    Returns
    -------
    list of (float, float)
        ``[(coarsen, 1.0)] * k``, ready for ``build_pyramid``'s ``factors``.

    Raises
    ------
    PyramidError
        ``coarsen`` is not above 1.
    StoreError
        ``path`` is not a readable Zarr Vectors store.
    """
    if isinstance(coarsen, bool) or not isinstance(coarsen, int | float | np.number) or not coarsen > 1:
        raise PyramidError(f"coarsen must be a number > 1 to suggest levels (2 halves each axis), got {coarsen!r}.")
    info = store.open_info(path)
    lo, hi = info.bounds
    extent = np.maximum(hi - lo, 1e-9)
    base_bin = np.asarray(info.levels[0].bin_shape)
    chunk = np.asarray(info.levels[0].chunk_shape)
    n0 = info.levels[0].vertex_count
    levels = 0
    for k in range(1, max_levels + 1):
        bins = base_bin * coarsen**k
        across = np.ceil(extent / bins)
        levels = k
        if np.all(across <= np.ceil(chunk / base_bin)) or min(n0, float(np.prod(across))) <= vertex_floor:
            break
    return [(float(coarsen), 1.0)] * levels


def estimate_level_vertices(path: str | os.PathLike[str], factors: Any, *, sample: int = 200_000) -> list[int]:
    """Vertex count each requested level will have, estimated before building.

    Bins a (sampled) copy of the coarsest existing level's vertices at each
    new level's bin: a per_object point level has one metavertex per
    occupied bin; thinning scales the estimate by the fraction kept.
    """
    norm = normalize_factors(factors)
    h = store.handle(path)
    info = store.open_info(h)
    top = info.levels[-1]
    data = store.read_level(h, top.index, kind=info.kind, vertex_attributes=(), object_attributes=())
    pos = data.positions
    if len(pos) > sample:
        pos = pos[np.random.default_rng(0).choice(len(pos), sample, replace=False)]
    bins = np.asarray(top.bin_shape, dtype=float)
    kept = 1.0
    out = []
    for coarsen, sparsity in norm:
        bins = bins * coarsen
        kept /= sparsity
        occupied = len(np.unique(np.floor(pos / bins).astype(np.int64), axis=0)) if len(pos) else 0
        out.append(int(round(min(occupied, top.vertex_count) * kept)))
    return out


def store_path_of(layer_metadata: Mapping[str, Any]) -> str | None:
    """The store a layer came from, from the metadata the reader writes."""
    meta = layer_metadata.get("zarr_vectors") if layer_metadata else None
    path = meta.get("path") if isinstance(meta, Mapping) else None
    if not path:
        return None
    return store.address(path)  # one spelling: a resolved folder, or the URL
