"""Level-of-detail choice, free of Qt and napari.

The initial level (the finest whose vertex count fits a budget), and the
view-dependent pieces the camera-following controller builds on: the
visible box, vertex estimates from per-chunk counts, and a level choice
with hysteresis.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from psygnal import evented

from .. import colouring, store
from ..store import LevelData
from .budgets import (
    BUDGET_ENV,
    BUDGET_STEP,
    DEFAULT_PIXELS_PER_VERTEX,
    DEFAULT_SHAPES_PATH_LIMIT,
    DEFAULT_VERTEX_BUDGET,
    PIXELS_ENV,
    REFERENCE_CANVAS_PIXELS,
    SOFTWARE_MAX_BUDGET,
    SOFTWARE_MIN_BUDGET,
    SOFTWARE_PIXELS_PER_VERTEX,
    SOFTWARE_REASON,
    SOFTWARE_RENDERERS,
    budget_follows_canvas,
    budget_for,
    default_pixels_per_vertex,
    default_vertex_budget,
    is_software_renderer,
)

__all__ = [
    # budgets
    "BUDGET_ENV",
    "BUDGET_STEP",
    "DEFAULT_PIXELS_PER_VERTEX",
    "DEFAULT_SHAPES_PATH_LIMIT",
    "DEFAULT_VERTEX_BUDGET",
    "PIXELS_ENV",
    "REFERENCE_CANVAS_PIXELS",
    "SOFTWARE_MAX_BUDGET",
    "SOFTWARE_MIN_BUDGET",
    "SOFTWARE_PIXELS_PER_VERTEX",
    "SOFTWARE_REASON",
    "SOFTWARE_RENDERERS",
    "budget_follows_canvas",
    "budget_for",
    "default_pixels_per_vertex",
    "default_vertex_budget",
    "is_software_renderer",
    # choice
    "MAX_REGIONS",
    "Box",
    "LevelGrid",
    "RegionPlan",
    "choose_level",
    "choose_level_for_view",
    "choose_level_from_estimates",
    "count_in_box",
    "plan_regions",
    "visible_box",
    # state
    "MIRRORED",
    "ViewState",
    # controller
    "ChunkCache",
    "LevelOfDetail",
    "Region",
    "View",
]


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


# ---------------------------------------------------------------- the controller (no Qt)


class ChunkCache:
    """Recently read chunks, least recently used dropped first, bounded in bytes. Thread-safe."""

    def __init__(self, max_bytes: int = 256 * 2**20) -> None:
        import threading
        from collections import OrderedDict

        self.max_bytes = int(max_bytes)
        self.nbytes = 0
        self._items: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Any) -> bool:
        return key in self._items

    def get(self, key: Any) -> Any | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: Any, value: Any, nbytes: int) -> None:
        with self._lock:
            if key in self._items:
                self.nbytes -= self._items.pop(key)[1]
            if nbytes > self.max_bytes:
                return  # bigger than the whole cache: keep it out rather than flush everything
            self._items[key] = (value, int(nbytes))
            self.nbytes += int(nbytes)
            while self.nbytes > self.max_bytes:
                _, (_, size) = self._items.popitem(last=False)
                self.nbytes -= size

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.nbytes = 0


def _nbytes(value: Any) -> int:
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, dict):
        return sum(_nbytes(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_nbytes(v) for v in value)
    return 64


@dataclass(frozen=True)
class View:
    """What the camera shows, in napari terms (see ``visible_box``)."""

    center: tuple[float, ...]
    zoom: float
    canvas_size: tuple[int, int]
    ndisplay: int
    displayed: tuple[int, ...]
    point: tuple[float, ...]
    scale: tuple[float, ...]
    translate: tuple[float, ...]

    def box(self, slab: float) -> Box:
        return visible_box(
            center=self.center,
            zoom=self.zoom,
            canvas_size=self.canvas_size,
            ndisplay=self.ndisplay,
            displayed=self.displayed,
            point=self.point,
            slab=slab,
            scale=self.scale,
            translate=self.translate,
        )

    @property
    def data_per_pixel(self) -> float:
        """Store units per screen pixel along the displayed axes."""
        s = np.abs(np.asarray(self.scale, dtype=float)[list(self.displayed)])
        return float(1.0 / (self.zoom * s.mean())) if self.zoom > 0 else float("inf")


@dataclass
class Region(LevelData):
    """What a controller update produced, read inside ``box`` (store order), for request ``generation``.

    One level (``level``), or with a ``plan`` a level per region: then
    ``level`` is the finest shown and ``point_levels`` each vertex's level.
    """

    generation: int = 0
    box: Box | None = None
    plan: RegionPlan | None = None
    point_levels: np.ndarray | None = None
    #: Points: RGBA per vertex mapped with the colouring given to ``update``, per chunk and cached (None: unmapped).
    face_colors: np.ndarray | None = None

    @property
    def levels_shown(self) -> tuple[int, ...]:
        """The levels drawn, finest first."""
        if self.point_levels is not None and len(self.point_levels):
            return tuple(int(v) for v in np.unique(self.point_levels))
        return (int(self.level),)


#: The layer-metadata keys ``ViewState.mirror`` writes, each from one field.
MIRRORED = {
    "level": "level",
    "levels_shown": "levels_shown",
    "levels": "levels",
    "locked": "locked_level",
    "budget": "vertex_budget",
    "budget_reason": "budget_reason",
}


@evented
@dataclass
class ViewState:
    """One store layer's level of detail: what the user chose and what is drawn; pure and evented (psygnal).

    Each value has this one home: the layer's ``LevelOfDetail`` reads the
    budget and the lock from it, the follower writes what it drew, the
    Levels dock shows it and edits it, and ``layer.metadata`` is a mirror
    written from it (``mirror``).  Every change emits
    ``state.events.<field>``; set fields on the GUI thread only, since
    subscribers may be widgets.
    """

    #: The most vertices drawn for a view.
    budget: int = DEFAULT_VERTEX_BUDGET
    #: Where the budget came from ("software renderer (llvmpipe), ...", "set here").
    budget_reason: str = ""
    #: The level shown whatever the view, or None: chosen from the view.
    locked: int | None = None
    #: The (finest) level drawn now.
    level: int = 0
    #: Every level drawn now, finest first (several when each region shows its own).
    levels_shown: tuple[int, ...] = (0,)
    #: The store's levels.
    levels: tuple[int, ...] = ()
    #: Vertices drawn now.
    vertex_count: int = 0

    def __post_init__(self) -> None:
        if int(self.budget) < 1:
            raise ValueError(f"the vertex budget must be at least 1, got {self.budget}")

    def lock(self, level: int | None) -> None:
        """Show ``level`` whatever the view (None: choose from the view again); refuses a level the store lacks."""
        if level is not None and self.levels and int(level) not in self.levels:
            raise ValueError(f"level {level} is not one of {list(self.levels)}")
        self.locked = None if level is None else int(level)

    def set_budget(self, budget: int, reason: str | None = None) -> None:
        """A new vertex budget (at least 1), and where it came from when given."""
        if int(budget) < 1:
            raise ValueError(f"the vertex budget must be at least 1, got {budget}")
        if reason is not None:
            self.budget_reason = reason
        self.budget = int(budget)

    def show(self, level: int, levels_shown: Sequence[int], vertex_count: int) -> None:
        """Record what was drawn (the follower, after a swap)."""
        self.levels_shown = tuple(int(v) for v in levels_shown) or (int(level),)
        self.vertex_count = int(vertex_count)
        self.level = int(level)

    def set_levels(self, levels: Sequence[int]) -> None:
        """The store's levels now (a build added or removed some); a lock on a level gone is released."""
        levels = tuple(int(v) for v in levels)
        if self.locked is not None and levels and self.locked not in levels:
            self.locked = None
        self.levels = levels

    @property
    def shown_text(self) -> str:
        """The level drawn as the Levels dock shows it: ``2``, or ``0–2`` for a level per region."""
        shown = self.levels_shown
        return str(self.level) if len(shown) <= 1 else f"{shown[0]}\u2013{shown[-1]}"

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any], **defaults: Any) -> ViewState:
        """A state from a layer's store metadata (what the reader wrote), ``defaults`` for what it lacks."""
        values = dict(defaults)
        for name, key in MIRRORED.items():
            if meta.get(key) is not None:
                values[name] = meta[key]
        for name in ("levels_shown", "levels"):
            if name in values:
                values[name] = tuple(int(v) for v in values[name])
        if "levels_shown" not in values and "level" in values:
            values["levels_shown"] = (int(values["level"]),)
        return cls(**values)

    def mirror(self, metadata: MutableMapping[str, Any]) -> Callable[[], None]:
        """Write every field into ``metadata`` now and after each change; returns what stops it."""

        def write(*_: Any) -> None:
            for name, key in MIRRORED.items():
                value = getattr(self, name)
                metadata[key] = list(value) if isinstance(value, tuple) else value

        write()
        self.events.connect(write)
        return lambda: self.events.disconnect(write)


class LevelOfDetail:
    """Chooses and reads what one store layer should show for a view; Qt-free.

    The GUI side calls ``request()`` for each (debounced) camera change and
    hands the returned generation, with the view, to ``update()`` on a
    worker thread; ``update`` returns a ``Region`` to show, or None when
    the request went stale or what is shown already covers the view.
    ``accept()`` on the GUI thread then says whether the region is still
    the newest, so a slow read never overwrites a later one.
    """

    def __init__(
        self,
        path: str,
        kind: str,
        *,
        budget: int = DEFAULT_VERTEX_BUDGET,
        path_budget: int | None = None,
        margin: float = 0.2,
        cache_bytes: int = 256 * 2**20,
        per_region: bool = True,
        pixels_per_vertex: float | None = None,
        state: ViewState | None = None,
    ) -> None:
        import threading

        self._store = store
        self.path = str(path)
        self.kind = kind
        #: The budget, the lock and the level shown live here (one home each; ``budget`` seeds a new one).
        self.state = ViewState(budget=int(budget)) if state is None else state
        self.path_budget = path_budget
        self.margin = float(margin)
        self.cache = ChunkCache(cache_bytes)
        self._lock = threading.Lock()
        self._generation = 0
        self._signature: tuple[int, ...] | None = None
        self.levels: list[LevelGrid] = []
        self._drawn_ratio: dict[int, float] = {}
        self._objects: dict[int, int] = {}
        self._shown_box: Box | None = None  # the box the level shown covers (None: nothing read yet)
        #: Point clouds viewed with every axis on screen get a level per region (``plan_regions``).
        self.per_region = bool(per_region)
        self.pixels_per_vertex = default_pixels_per_vertex() if pixels_per_vertex is None else float(pixels_per_vertex)
        self.plan: RegionPlan | None = None  # the per-region plan shown (None: one level)
        self._colouring: Mapping[str, Any] | None = None  # the colouring of the update running
        self.reads = 0  # store reads made (chunks for points, regions for polylines), for tests and benchmarks

    @property
    def budget(self) -> int:
        """The vertex budget (``state.budget``)."""
        return self.state.budget

    @budget.setter
    def budget(self, value: int) -> None:
        self.state.set_budget(value)

    @property
    def locked(self) -> int | None:
        """The locked level, or None (``state.locked``); a level the store no longer has counts as None."""
        locked = self.state.locked
        if locked is not None and self.levels and locked not in [g.index for g in self.levels]:
            return None
        return locked

    @property
    def shown(self) -> tuple[int, Box] | None:
        """The (finest) level shown (``state.level``) and the box it covers; None before anything was read."""
        return None if self._shown_box is None else (self.state.level, self._shown_box)

    @shown.setter
    def shown(self, value: tuple[int, Box]) -> None:
        level, self._shown_box = value
        if level != self.state.level:
            self.state.level = int(level)

    # -- GUI thread
    def request(self) -> int:
        """A new generation: every older one still in flight becomes stale."""
        self._generation += 1
        return self._generation

    @property
    def generation(self) -> int:
        return self._generation

    def accept(self, region: Region) -> bool:
        """Whether ``region`` is the newest; if so it becomes what is shown."""
        if region.generation != self._generation:
            return False
        self.shown = (region.level, region.box)
        self.plan = region.plan
        return True

    def lock(self, level: int | None) -> None:
        """Show ``level`` whatever the view (None: choose automatically again)."""
        if level is not None and self.levels and level not in [lv.index for lv in self.levels]:
            raise ValueError(f"level {level} is not one of {[lv.index for lv in self.levels]}")
        self.state.locked = None if level is None else int(level)

    def forget_shown(self) -> None:
        """Make the next update re-read even if the view did not move (budget or lock changed).

        The level shown is kept: it still anchors the hysteresis.
        """
        if self._shown_box is not None:
            nowhere = np.full(len(self._shown_box.lo), np.inf)
            self._shown_box = Box(nowhere, -nowhere)

    # -- worker thread
    def refresh_levels(self) -> None:
        """Re-read the store's levels and per-chunk counts (after a build added or removed some)."""
        info = self._store.open_info(self.path)
        grids = []
        for lv in info.levels:
            coords, counts = self._store.chunk_vertex_counts(self.path, lv.index)
            grids.append(LevelGrid(lv.index, lv.bin_shape, lv.chunk_shape, coords, counts))
            self._objects[lv.index] = lv.object_count
        self.levels = grids
        self.cache.clear()
        if self.kind in self._store.POLYLINE_KINDS:
            for lv in info.levels:  # the manifest tables box reads need anyway (~0.1 s a level, kept in the cache)
                self._drawn_ratio[lv.index] = self._line_index(lv.index).sharing
        # a lock on a level gone counts as none (``locked``); the GUI thread releases it in the state
        self._signature = self._store.signature(self.path)

    def _levels_current(self) -> None:
        if not self.levels or self._store.signature(self.path) != self._signature:
            self.refresh_levels()

    def _grid(self, index: int) -> LevelGrid:
        return next(g for g in self.levels if g.index == index)

    def box_for(self, view: View, level: int) -> Box:
        """The margin-expanded box a level is read in (a 2D slab is one bin of that level thick)."""
        grid = self._grid(level)
        slab = float(max(grid.bin_shape)) * float(np.mean(np.abs(view.scale)))
        return view.box(slab).expanded(self.margin)

    def choose(self, view: View) -> int:
        """The level to show for ``view``: the locked one, else the finest that fits the budgets.

        Each level is measured in its own margin-expanded box.  Polylines
        count drawn vertices (per_object levels repeat shared metavertices)
        and, with a path budget, a level whose paths in the box exceed it
        counts as over budget.
        """
        if self.locked is not None:
            return self.locked
        estimates = {}
        for g in self.levels:
            box = self.box_for(view, g.index)
            stored = count_in_box(g.chunk_coords, g.chunk_counts, g.chunk_shape, box)
            est = stored * self._drawn_ratio.get(g.index, 1.0)
            if self.path_budget is not None and g.index in self._objects:
                share = stored / max(float(np.sum(g.chunk_counts)), 1.0)
                if self._objects[g.index] * min(share, 1.0) > self.path_budget:
                    est = float("inf")
            estimates[g.index] = (est, max(g.bin_shape))
        current = self.shown[0] if self.shown else None
        return choose_level_from_estimates(estimates, self.budget, view.data_per_pixel, current)

    def update(self, view: View, generation: int, colouring: Mapping[str, Any] | None = None) -> Region | None:
        """Plan and read for ``view`` (worker thread). None: stale, or nothing new to show.

        With ``colouring`` (a layer's ``face_colouring`` snapshot), point
        regions carry ``face_colors``, mapped once per chunk and cached with it.
        """
        with self._lock:
            if generation != self._generation:
                return None
            self._levels_current()
            self._colouring = colouring
            if self.regional(view):
                return self._update_per_region(view, generation)
            level = self.choose(view)
            want = view.box(0.0)
            if self.shown is not None and self.shown[0] == level and _covers(self.shown[1], want):
                return None
            reader = self._read_polylines if self.kind in self._store.POLYLINE_KINDS else self._read_points
            region = reader(level, self.box_for(view, level), generation)
            # estimates can be low (clustered data, paths counted from vertices): coarser levels keep the promise
            while self.locked is None and self._over_budget(region):
                coarser = [g.index for g in self.levels if g.index > region.level]
                if not coarser or generation != self._generation:
                    break
                region = reader(min(coarser), self.box_for(view, min(coarser)), generation)
            return region

    def regional(self, view: View) -> bool:
        """Whether ``view`` gets a level per region: a point cloud, not locked, every store axis on screen."""
        return (
            self.per_region
            and self.locked is None
            and self.kind in self._store.POINT_KINDS
            and bool(self.levels)
            and len(set(view.displayed)) == len(self.levels[0].chunk_shape)
        )

    def plan_for(
        self, view: View, current: RegionPlan | None = None, pixels_per_vertex: float | None = None
    ) -> RegionPlan:
        """The per-region plan for ``view`` (see ``plan_regions``), in the margin-expanded view box.

        ``pixels_per_vertex`` overrides the controller's criterion (a re-plan after a read came out over).
        """
        ndim = len(self.levels[0].chunk_shape)
        return plan_regions(
            self.levels,
            view.box(0.0).expanded(self.margin),
            budget=self.budget,
            data_per_pixel=view.data_per_pixel,
            displayed=range(ndim),
            pixels_per_vertex=self.pixels_per_vertex if pixels_per_vertex is None else pixels_per_vertex,
            current=current,
        )

    def _update_per_region(self, view: View, generation: int) -> Region | None:
        box = view.box(0.0).expanded(self.margin)
        plan = self.plan_for(view, self.plan)
        want = view.box(0.0)
        if self.shown is not None and _covers(self.shown[1], want) and plan.same_as(self.plan, want):
            return None
        region = self._read_plan(plan, box, generation)
        # estimates spread coarse chunks evenly where the data is: when a read comes out over, coarsen and read again
        for _ in range(4):
            if region.vertex_count <= self.budget or generation != self._generation:
                break
            if np.all(plan.levels == max(g.index for g in self.levels)):
                break
            ppv = plan.pixels_per_vertex * max(region.vertex_count / self.budget, _CRITERION_STEP)
            plan = self.plan_for(view, pixels_per_vertex=ppv)
            region = self._read_plan(plan, box, generation)
        return region

    def _read_plan(self, plan: RegionPlan, box: Box, generation: int) -> Region:
        """Each level's vertices in the regions the plan gives it, inside ``box``: one layer's worth."""
        used = plan.used()
        names_of = {lv: self._attribute_names(lv) for lv in used}
        names = list(dict.fromkeys(n for lv in used for n in names_of[lv]))
        pos_parts, attr_parts, level_parts, colour_parts = [], [], [], []
        for lv in used:
            grid = self._grid(lv)
            keys = self._chunks_meeting(grid, box)
            keys = {k: n for k, n in keys.items() if _chunk_meets_level(plan, grid.chunk_shape, k, lv)}
            found = self._chunk_values(lv, keys, names_of[lv])
            parts = [v for v in found.values() if v is not None and len(v[0])]
            if not parts:
                continue
            pos = np.concatenate([p for p, _ in parts])
            keep = box.contains(pos) & (plan.level_of(pos) == lv)
            pos_parts.append(pos[keep])
            colour_parts.append(self._colours_of(lv, found, keep))
            attr_parts.append(
                {
                    n: np.concatenate([a[n] for _, a in parts])[keep]
                    for n in names_of[lv]
                    if all(n in a for _, a in parts)
                }
            )
            level_parts.append(np.full(int(keep.sum()), lv, np.int16))
        ndim = len(box.lo)
        if pos_parts:
            pos = np.concatenate(pos_parts)
            attrs = {n: _joined([a.get(n) for a in attr_parts], [len(p) for p in pos_parts]) for n in names}
            point_levels = np.concatenate(level_parts)
        else:
            pos, attrs, point_levels = (
                np.zeros((0, ndim), np.float32),
                {n: np.zeros(0) for n in names},
                np.zeros(0, np.int16),
            )
        drawn = np.unique(point_levels)
        level = int(drawn[0]) if len(drawn) else (used[0] if used else min(g.index for g in self.levels))
        colours = None
        if colour_parts and all(c is not None for c in colour_parts):
            colours = np.concatenate(colour_parts)
        return Region(
            self.kind,
            level,
            pos,
            attrs,
            generation=generation,
            box=box,
            plan=plan,
            point_levels=point_levels,
            face_colors=colours,
        )

    def _colours_of(self, level: int, found: Mapping[tuple[int, ...], Any], keep: np.ndarray) -> np.ndarray | None:
        """RGBA of the non-empty chunks in ``found`` (joined in its order) cut by ``keep``; None when not mappable.

        Each chunk's colours are mapped once per colouring and cached next to
        its vertices: a float feature's colormap costs ~60 ms per 250,000
        points here, a label lookup ~12 ms.
        """
        key = colouring.colouring_key(self._colouring)
        if key is None:
            return None
        out = []
        for k, v in found.items():
            if v is None or not len(v[0]):
                continue
            ck = ("rgba", level, k, key)
            rgba = self.cache.get(ck)
            if rgba is None:
                rgba = colouring.point_colours(v[1], self._colouring)
                if rgba is None:
                    return None  # a value the cycle has not seen: the GUI thread maps, as napari would
                rgba = np.asarray(rgba, np.float32)
                self.cache.put(ck, rgba, rgba.nbytes)
            out.append(rgba)
        if not out:
            return np.zeros((0, 4), np.float32)
        return np.concatenate(out)[keep]

    def _chunk_values(self, level: int, keys: Mapping[tuple[int, ...], int], names: Sequence[str]) -> dict:
        """(positions, attributes) per chunk of ``level``, from the cache or read (one batch for those missing)."""
        missing = [k for k in keys if (level, k) not in self.cache]
        if missing:
            got = self._store.read_point_chunks(self.path, level, missing, names, counts=keys)
            self.reads += len(got)
            for k, value in got.items():
                self.cache.put((level, k), value, _nbytes(value))
        found = {k: self.cache.get((level, k)) for k in keys}
        for k in [k for k, v in found.items() if v is None]:  # evicted meanwhile: read again
            found[k] = self._store.read_point_chunks(self.path, level, [k], names)[k]
        return found

    def _over_budget(self, region: Region) -> bool:
        if region.vertex_count > self.budget:
            return True
        paths = len(region.part_objects) if region.part_objects is not None else 0
        return self.path_budget is not None and paths > self.path_budget

    def _chunks_meeting(self, grid: LevelGrid, box: Box) -> dict[tuple[int, ...], int]:
        """The non-empty chunks that meet ``box``, with their vertex counts."""
        size = np.asarray(grid.chunk_shape, dtype=float)
        lo, hi = grid.chunk_coords * size, (grid.chunk_coords + 1) * size
        meet = np.all((hi >= box.lo) & (lo <= box.hi), axis=1) & (grid.chunk_counts > 0)
        return {
            tuple(int(c) for c in k): int(n)
            for k, n in zip(grid.chunk_coords[meet], grid.chunk_counts[meet], strict=True)
        }

    def _read_points(self, level: int, box: Box, generation: int) -> Region:
        grid = self._grid(level)
        keys = self._chunks_meeting(grid, box)
        names = self._attribute_names(level)
        found = self._chunk_values(level, keys, names)
        ndim = len(grid.chunk_shape)
        parts = [v for v in found.values() if v is not None and len(v[0])]
        colours = None
        if parts:
            pos = np.concatenate([p for p, _ in parts])
            attrs = {n: np.concatenate([a[n] for _, a in parts]) for n in names if all(n in a for _, a in parts)}
            inside = box.contains(pos)
            pos = pos[inside]
            attrs = {n: v[inside] for n, v in attrs.items()}
            colours = self._colours_of(level, found, inside)
        else:
            pos, attrs = np.zeros((0, ndim), np.float32), {n: np.zeros(0) for n in names}
        return Region(self.kind, level, pos, attrs, generation=generation, box=box, face_colors=colours)

    def _attribute_names(self, level: int) -> list[str]:
        key = ("names", level)
        names = self.cache.get(key)
        if names is None:
            names = list(self._store.vertex_attribute_names(self.path, level))
            self.cache.put(key, names, 64)
        return names

    #: Polylines: read every object crossing the box end to end, unclipped (True), instead of the pieces in the
    #: box (False, the default: docs/viewing.md).  Set on an instance; the vertex budget still bounds the read.
    whole_objects: bool = False

    def _line_index(self, level: int) -> store.PolylineIndex:
        """A polyline level's manifest table (``store.polyline_index``), cached."""
        index = self.cache.get(("line index", level))
        if index is None:
            index = self._store.polyline_index(self.path, level)
            self.cache.put(("line index", level), index, index.nbytes)
        return index

    def _read_polylines(self, level: int, box: Box, generation: int) -> Region:
        """The polylines in the box: the fragments of the chunks that can hold its vertices, cut to the box.

        One whole-array store read per chunk set (``store.read_polyline_box``),
        kept unclipped in the cache, so a small move within the same chunks
        only re-cuts; the level's manifest table is read once and cached too.
        """
        grid = self._grid(level)
        size = np.asarray(grid.chunk_shape, dtype=float)
        holds = np.all(((grid.chunk_coords + 1) * size > box.lo) & (grid.chunk_coords * size <= box.hi), axis=1)
        keys = tuple(tuple(int(c) for c in k) for k in grid.chunk_coords[holds & (grid.chunk_counts > 0)])
        whole = bool(self.whole_objects)
        cache_key = ("lines", level, whole, keys)
        data = self.cache.get(cache_key)
        if data is None:
            index = self._line_index(level)
            data = self._store.read_polyline_box(
                self.path, level, (box.lo, box.hi), kind=self.kind, index=index, whole_objects=whole, clip=False
            )
            self.reads += 1
            value = (data.positions, data.offsets, data.part_objects, data.object_attributes, data.vertex_attributes)
            self.cache.put(cache_key, data, _nbytes(value))
        if not whole:
            data = self._store.clip_parts(data, box.lo, box.hi)
        return Region(**vars(data), generation=generation, box=box)


def _chunk_meets_level(plan: RegionPlan, chunk_shape: Sequence[float], key: tuple[int, ...], level: int) -> bool:
    """Whether chunk ``key`` (of a level with ``chunk_shape``) meets a region the plan gives ``level``."""
    size = np.asarray(chunk_shape, float)
    lo = np.asarray(key, float) * size
    first = np.floor(lo / plan.tile_shape + 1e-9).astype(np.int64) - plan.origin
    last = np.ceil((lo + size) / plan.tile_shape - 1e-9).astype(np.int64) - 1 - plan.origin
    first, last = np.maximum(first, 0), np.minimum(last, np.asarray(plan.levels.shape) - 1)
    if np.any(last < first):
        return False
    return bool(
        (plan.levels[tuple(slice(int(a), int(b) + 1) for a, b in zip(first, last, strict=True))] == level).any()
    )


def _joined(values: Sequence[np.ndarray | None], lengths: Sequence[int]) -> np.ndarray:
    """One attribute over parts read from several levels; a level without it fills NaN (numbers) or empty text."""
    sample = next(v for v in values if v is not None)
    if all(v is not None for v in values):
        return np.concatenate(values)
    kind = np.asarray(sample).dtype.kind
    dtype = np.asarray(sample).dtype if kind in "fc" else (float if kind in "iub" else object)
    fill = "" if dtype is object else np.nan
    parts = [
        np.asarray(v, dtype) if v is not None else np.full(n, fill, dtype) for v, n in zip(values, lengths, strict=True)
    ]
    return np.concatenate(parts)


def _covers(shown: Box, want: Box) -> bool:
    return bool(np.all(shown.lo <= want.lo) and np.all(shown.hi >= want.hi))
