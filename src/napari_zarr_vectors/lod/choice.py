"""Which level to show, as pure functions of store metadata: no vertex is read, no Qt, no napari.

``choose_level`` picks the level a store opens at (the finest whose
vertex count fits a budget).  The rest is what the camera-following
controller builds on: the visible box (``visible_box``), vertex
estimates from per-chunk counts (``count_in_box``), a level for the view
with hysteresis (``choose_level_for_view``), and a level per region of
the view (``plan_regions``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .budgets import DEFAULT_PIXELS_PER_VERTEX, DEFAULT_VERTEX_BUDGET


def choose_level(
    counts: Sequence[tuple[int, int]],
    budget: int = DEFAULT_VERTEX_BUDGET,
    drawn: Callable[[int], int] | None = None,
) -> int:
    """The finest level whose vertex count fits ``budget``.

    ``counts`` holds ``(level_index, vertex_count)`` pairs from metadata.
    ``drawn``, when given, estimates how many vertices a level really
    draws (per_object polylines repeat shared metavertices, so they draw
    many more than the level's count); it is asked only for levels whose
    metadata count already fits, finest first, so its cost stays small.
    When no level fits, the coarsest one is returned: showing something
    beats showing nothing.

    Parameters
    ----------
    counts : sequence of (int, int)
        ``(level_index, vertex_count)`` per level, e.g. from ``open_info(path).levels``.
    budget : int, optional
        The most vertices to show (default ``DEFAULT_VERTEX_BUDGET``, 250,000).
    drawn : callable, optional
        ``drawn(level_index)`` -> vertices that level really draws.

    Returns
    -------
    int
        The chosen level index.

    Raises
    ------
    ValueError
        ``counts`` is empty or ``budget`` is below 1.
    """
    if not counts:
        raise ValueError("choose_level needs at least one level")
    if budget < 1:
        raise ValueError(f"the vertex budget must be at least 1, got {budget}")
    ordered = sorted(counts)
    for index, count in ordered:
        if count <= budget and (drawn is None or drawn(index) <= budget):
            return index
    return ordered[-1][0]


# ---------------------------------------------------------------- view-dependent choice (issue 4, first part)


@dataclass(frozen=True)
class Box:
    """An axis-aligned box ``[lo, hi]`` in store coordinates (store axis order)."""

    lo: np.ndarray
    hi: np.ndarray

    def expanded(self, margin: float) -> Box:
        """The box grown by ``margin`` times its size on every side."""
        pad = (self.hi - self.lo) * margin
        return Box(self.lo - pad, self.hi + pad)

    def contains(self, points: np.ndarray) -> np.ndarray:
        return np.all((points >= self.lo) & (points <= self.hi), axis=1)


def visible_box(
    *,
    center: Sequence[float],
    zoom: float,
    canvas_size: tuple[int, int],
    ndisplay: int,
    displayed: Sequence[int],
    point: Sequence[float],
    slab: float,
    scale: Sequence[float],
    translate: Sequence[float],
) -> Box:
    """The part of the data the camera can show, in store coordinates.

    Everything napari-side is in napari (world, slowest-axis-first) order:
    ``center`` the camera centre of the displayed axes, ``zoom`` screen
    pixels per world unit, ``canvas_size`` (height, width) in pixels,
    ``displayed`` the displayed axes, ``point`` the dims point. In 2D the
    non-displayed axes are a slab ``slab`` world units thick around the
    slice; in 3D the box is the cube that holds the view's bounding sphere
    (any rotation shows no more than that).
    """
    ndim = len(point)
    lo = np.asarray(point, dtype=float).copy()
    hi = lo.copy()
    lo -= slab / 2
    hi += slab / 2
    half_h, half_w = canvas_size[0] / (2 * zoom), canvas_size[1] / (2 * zoom)
    c = np.asarray(center, dtype=float)[-len(displayed) :]
    if ndisplay == 3:
        radius = float(np.hypot(half_h, half_w))
        for i, axis in enumerate(displayed):
            lo[axis], hi[axis] = c[i] - radius, c[i] + radius
    else:
        for axis, half, ci in zip(displayed[-2:], (half_h, half_w), c[-2:], strict=True):
            lo[axis], hi[axis] = ci - half, ci + half
    s = np.asarray(scale, dtype=float)[-ndim:]
    t = np.asarray(translate, dtype=float)[-ndim:]
    data_lo, data_hi = (lo - t) / s, (hi - t) / s
    a, b = np.minimum(data_lo, data_hi), np.maximum(data_lo, data_hi)
    return Box(a[::-1].copy(), b[::-1].copy())  # napari order -> store order


def count_in_box(chunk_coords: np.ndarray, chunk_counts: np.ndarray, chunk_shape: Sequence[float], box: Box) -> float:
    """Vertices a box holds, estimated from per-chunk counts (no vertex is read).

    Each chunk contributes its count times the fraction of its volume
    inside the box (vertices assumed spread evenly within a chunk).
    """
    coords = np.asarray(chunk_coords, dtype=float).reshape(-1, len(chunk_shape))
    if not len(coords):
        return 0.0
    size = np.asarray(chunk_shape, dtype=float)
    c_lo, c_hi = coords * size, (coords + 1) * size
    overlap = np.clip(np.minimum(c_hi, box.hi) - np.maximum(c_lo, box.lo), 0, None) / size
    return float(np.sum(np.asarray(chunk_counts, dtype=float) * np.prod(overlap, axis=1)))


@dataclass(frozen=True)
class LevelGrid:
    """What the view-dependent choice knows of a level: its bin and per-chunk vertex counts."""

    index: int
    bin_shape: tuple[float, ...]
    chunk_shape: tuple[float, ...]
    chunk_coords: np.ndarray
    chunk_counts: np.ndarray


def choose_level_for_view(
    levels: Sequence[LevelGrid],
    box: Box,
    *,
    budget: int = DEFAULT_VERTEX_BUDGET,
    world_per_pixel: float,
    current: int | None = None,
    hysteresis: float = 0.15,
) -> int:
    """The finest level whose estimated vertices in ``box`` fit ``budget``.

    Never finer than about one bin per screen pixel (finer detail would
    not be visible). Hysteresis: the level shown stays while its estimate
    is within ``budget * (1 + hysteresis)``, and a finer one is taken only
    when it fits ``budget * (1 - hysteresis)``, so a view at a boundary
    does not flicker between two levels.
    """
    if not levels:
        raise ValueError("choose_level_for_view needs at least one level")
    estimates = {
        lv.index: (count_in_box(lv.chunk_coords, lv.chunk_counts, lv.chunk_shape, box), max(lv.bin_shape))
        for lv in levels
    }
    return choose_level_from_estimates(estimates, budget, world_per_pixel, current, hysteresis)


def choose_level_from_estimates(
    levels: dict[int, tuple[float, float]],
    budget: int,
    world_per_pixel: float,
    current: int | None = None,
    hysteresis: float = 0.15,
) -> int:
    """The level choice of ``choose_level_for_view`` from ``{level: (estimated vertices, bin size)}``."""
    ordered = sorted(levels)
    # the finest level worth showing: the coarsest whose bins are still no bigger than a pixel
    finest_ok = max((i for i in ordered if levels[i][1] <= world_per_pixel), default=ordered[0])
    estimates = {i: levels[i][0] for i in ordered if i >= finest_ok}
    if current in estimates and estimates[current] <= budget * (1 + hysteresis):
        finer = [i for i in estimates if i < current and estimates[i] <= budget * (1 - hysteresis)]
        return min(finer) if finer else current
    for index in sorted(estimates):
        if estimates[index] <= budget:
            return index
    return max(estimates)


# ---------------------------------------------------------------- a level per region (issue 18, item 3)


#: At most this many regions are planned per view; a wider view plans on a grid of bigger regions.
MAX_REGIONS = 4096
#: How far the criterion steps per try when the budget does not hold (x1.25: about a 1 px step at 4 px).
_CRITERION_STEP = 1.25


@dataclass(frozen=True)
class RegionPlan:
    """A level per region of a view: ``levels[i, j, ...]`` for the region (tile) ``origin + (i, j, ...)``.

    Regions are cells of a regular grid of ``tile_shape`` (store units, origin 0): the finest level's
    chunks, or bigger cells when the view holds more than ``MAX_REGIONS`` of those.
    """

    tile_shape: np.ndarray
    origin: np.ndarray
    levels: np.ndarray
    estimate: float
    pixels_per_vertex: float

    def tiles_of(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(flat tile index, inside the plan's grid) of each position."""
        cell = np.floor(np.asarray(positions, float) / self.tile_shape).astype(np.int64) - self.origin
        inside = np.all((cell >= 0) & (cell < np.asarray(self.levels.shape)), axis=1)
        flat = np.zeros(len(cell), np.int64)
        if inside.any():
            flat[inside] = np.ravel_multi_index(tuple(cell[inside].T), self.levels.shape)
        return flat, inside

    def level_of(self, positions: np.ndarray) -> np.ndarray:
        """The level planned for each position's region (-1 outside the plan)."""
        flat, inside = self.tiles_of(positions)
        out = np.full(len(flat), -1, np.int64)
        out[inside] = self.levels.ravel()[flat[inside]]
        return out

    def used(self) -> list[int]:
        """The levels some region shows, finest first."""
        return sorted(int(v) for v in np.unique(self.levels) if v >= 0)

    def same_as(self, other: RegionPlan | None, box: Box) -> bool:
        """Whether ``other`` plans the same level for every region meeting ``box``."""
        if other is None or not np.array_equal(other.tile_shape, self.tile_shape):
            return False
        lo = np.floor(box.lo / self.tile_shape).astype(np.int64)
        hi = np.floor(box.hi / self.tile_shape).astype(np.int64)
        for plan in (self, other):
            if np.any(lo < plan.origin) or np.any(hi >= plan.origin + np.asarray(plan.levels.shape)):
                return False
        cut = [
            tuple(slice(int(a), int(b) + 1) for a, b in zip(lo - p.origin, hi - p.origin, strict=True))
            for p in (self, other)
        ]
        return bool(np.array_equal(self.levels[cut[0]], other.levels[cut[1]]))


def _data_extent(levels: Sequence[LevelGrid]) -> Box | None:
    """The box the levels' non-empty chunks fill."""
    los, his = [], []
    for g in levels:
        full = np.asarray(g.chunk_counts) > 0
        if full.any():
            size = np.asarray(g.chunk_shape, float)
            los.append((g.chunk_coords[full] * size).min(axis=0))
            his.append(((g.chunk_coords[full] + 1) * size).max(axis=0))
    if not los:
        return None
    return Box(np.min(los, axis=0), np.max(his, axis=0))


def _tile_counts(
    grid: LevelGrid, tile: np.ndarray, origin: np.ndarray, shape: tuple[int, ...], weights: np.ndarray | None
) -> np.ndarray:
    """A level's vertices per region: a chunk inside one region counts there whole; a chunk spanning
    several spreads its count over them by ``weights`` (else by volume)."""
    out = np.zeros(shape, float)
    counts = np.asarray(grid.chunk_counts, float)
    if not len(counts):
        return out
    size = np.asarray(grid.chunk_shape, float)
    coords = np.asarray(grid.chunk_coords, float).reshape(-1, len(size))
    c_lo, c_hi = coords * size, (coords + 1) * size
    first = np.floor(c_lo / tile + 1e-9).astype(np.int64) - origin
    last = np.ceil(c_hi / tile - 1e-9).astype(np.int64) - 1 - origin
    dims = np.asarray(shape)
    meet = np.all((last >= 0) & (first < dims), axis=1) & (counts > 0)
    single = meet & np.all(first == last, axis=1)
    if single.any():
        np.add.at(out, tuple(first[single].T), counts[single])
    for k in np.flatnonzero(meet & ~single):
        lo, hi = np.maximum(first[k], 0), np.minimum(last[k], dims - 1)
        cut = tuple(slice(int(a), int(b) + 1) for a, b in zip(lo, hi, strict=True))
        spanned = np.prod(last[k] - first[k] + 1)  # regions the whole chunk spans (some may lie outside the grid)
        inside = np.prod(hi - lo + 1)
        share = counts[k] * inside / spanned
        w = None if weights is None else weights[cut]
        if w is None or w.sum() <= 0:
            out[cut] += share / inside
        else:
            out[cut] += share * w / w.sum()
    return out


def plan_regions(
    levels: Sequence[LevelGrid],
    box: Box,
    *,
    budget: int,
    data_per_pixel: float,
    displayed: Sequence[int],
    pixels_per_vertex: float = DEFAULT_PIXELS_PER_VERTEX,
    current: RegionPlan | None = None,
    hysteresis: float = 0.15,
) -> RegionPlan:
    """A level per region of ``box``: the finest whose vertices leave ``pixels_per_vertex`` screen pixels each.

    Regions are the finest level's chunks (store order; ``displayed`` are
    the store axes on screen).  A region's vertices at each level come from
    per-chunk counts, no vertex read: exact where a chunk lies in one
    region; a coarser chunk spanning several spreads its count over them in
    proportion to what the finest level holds there (at most one vertex per
    bin), so a coarse level is estimated dense where the data is.  Levels
    finer than about a bin per pixel are never chosen.  Then the vertex
    budget: while the regions' total exceeds it, the criterion is raised
    (x1.25 a step), so dense regions go coarse and sparse ones keep their
    finest vertices.  With ``current``, a region keeps its level unless
    the new one is better by ``hysteresis`` (no flicker at a threshold).
    """
    if not levels:
        raise ValueError("plan_regions needs at least one level")
    ordered = sorted(levels, key=lambda g: g.index)
    finest = ordered[0]
    extent = _data_extent(ordered[:1])  # every vertex lies within the finest level's chunks
    lo, hi = np.asarray(box.lo, float), np.asarray(box.hi, float)
    if extent is not None:
        lo, hi = np.maximum(lo, extent.lo), np.minimum(hi, extent.hi)
    hi = np.maximum(hi, lo)
    tile = np.asarray(finest.chunk_shape, float).copy()
    while True:
        origin = np.floor(lo / tile).astype(np.int64)
        top = np.maximum(np.ceil(hi / tile).astype(np.int64) - 1, origin)  # a box ending on a boundary stops there
        shape = tuple(int(v) for v in top - origin + 1)
        if int(np.prod(shape)) <= MAX_REGIONS:
            break
        tile = tile * 2
    base = _tile_counts(finest, tile, origin, shape, None)
    est = [base]
    for g in ordered[1:]:
        bins = float(np.prod(tile / np.asarray(g.bin_shape, float)))  # at most a vertex per bin of the level
        est.append(_tile_counts(g, tile, origin, shape, np.minimum(base, bins)))
    est_stack = np.stack(est)  # (levels, *shape)
    index = np.array([g.index for g in ordered])
    # screen pixels a region covers: its two largest displayed extents, in pixels
    extents = sorted((float(tile[a]) for a in displayed), reverse=True)[:2] or [float(tile[0])]
    area = float(np.prod(extents)) / max(data_per_pixel, 1e-30) ** len(extents)
    worth = np.array([max(g.bin_shape) <= data_per_pixel for g in ordered])
    first_ok = int(np.flatnonzero(worth)[-1]) if worth.any() else 0  # coarsest level with bins within a pixel
    prior = None
    if current is not None and np.array_equal(current.tile_shape, tile):
        prior = np.full(shape, -1, np.int64)
        o = current.origin - origin
        src = tuple(
            slice(max(0, -int(a)), min(int(s), int(d) - int(a)))
            for a, s, d in zip(o, current.levels.shape, shape, strict=True)
        )
        dst = tuple(slice(max(0, int(a)), max(0, int(a)) + (sl.stop - sl.start)) for a, sl in zip(o, src, strict=True))
        if all(sl.stop > sl.start for sl in src):
            prior[dst] = np.searchsorted(index, np.clip(current.levels[src], index[0], index[-1]))
    # the share of each region inside the box: what the budget counts (a region half in view draws half)
    share = np.ones(shape)
    for axis in range(len(shape)):
        t_lo = (origin[axis] + np.arange(shape[axis])) * tile[axis]
        frac = np.clip(np.minimum(t_lo + tile[axis], hi[axis]) - np.maximum(t_lo, lo[axis]), 0, None) / tile[axis]
        share = share * frac.reshape([-1 if a == axis else 1 for a in range(len(shape))])
    ppv = float(pixels_per_vertex)
    for _ in range(64):
        chosen = _choose_per_region(est_stack, area / ppv, first_ok, prior, hysteresis)
        total = float((np.take_along_axis(est_stack, chosen[None], 0)[0] * share).sum())
        if total <= budget or np.all(chosen == len(ordered) - 1):
            break
        ppv *= _CRITERION_STEP
    return RegionPlan(tile, origin, index[chosen], total, ppv)


def _choose_per_region(
    est: np.ndarray, most: float, first_ok: int, prior: np.ndarray | None, hysteresis: float
) -> np.ndarray:
    """Per region, the position (in ``est``'s level axis) of the finest level with at most ``most`` vertices."""
    n = est.shape[0]
    fits = est <= most
    fits[:first_ok] = False
    fits[-1] = True  # the coarsest always shows: something beats nothing
    chosen = np.argmax(fits, axis=0)
    if prior is None:
        return chosen
    known = prior >= 0
    p = np.clip(prior, 0, n - 1)
    held = np.take_along_axis(est, p[None], 0)[0]
    picked = np.take_along_axis(est, chosen[None], 0)[0]
    # keep a finer level already shown while it is within the tolerance; refine only with room to spare
    keep_finer = known & (p < chosen) & (p >= first_ok) & (held <= most * (1 + hysteresis))
    keep_coarser = known & (p > chosen) & (picked > most * (1 - hysteresis))
    return np.where(keep_finer | keep_coarser, p, chosen)
