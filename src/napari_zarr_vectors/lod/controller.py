"""The level-of-detail controller: what one store layer shows for a view, chosen and read off the GUI thread.

``LevelOfDetail`` turns a camera ``View`` into a ``Region`` of vertices:
it chooses the level (or a level per region) with ``choice``, reads the
chunks in view through ``store``, keeps them in a ``ChunkCache`` and maps
point colours with ``colouring``.  Its budget, lock and level shown live
in a ``state.ViewState``.  No Qt: ``_qt.follow`` binds it to napari layers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import colouring, store
from .budgets import DEFAULT_VERTEX_BUDGET, default_pixels_per_vertex
from .choice import (
    _CRITERION_STEP,
    Box,
    LevelGrid,
    RegionPlan,
    choose_level_from_estimates,
    count_in_box,
    plan_regions,
    visible_box,
)
from .sample import chunk_quotas, even_order
from .state import ViewState


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
class Region(store.LevelData):
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
    #: A store with only level 0, over the budget in view: the points the view holds, of which an even
    #: subsample is drawn (``read_level_sample``); 0 when every point in view is drawn.
    sampled_from: int = 0
    #: With ``sampled_from``: the points each chunk gave (what a later view compares with).
    quotas: dict[tuple[int, ...], int] | None = None

    @property
    def levels_shown(self) -> tuple[int, ...]:
        """The levels drawn, finest first."""
        if self.point_levels is not None and len(self.point_levels):
            return tuple(int(v) for v in np.unique(self.point_levels))
        return (int(self.level),)


@dataclass
class Sample:
    """An even subsample of a level within a budget (``read_level_sample``)."""

    data: store.LevelData
    #: Points the box holds (chunks partly in it counted by the share of their volume inside).
    in_view: int
    #: Points each chunk gave.
    quotas: dict[tuple[int, ...], int]
    #: Chunks read from the store (the rest came from the cache).
    reads: int = 0


#: Chunks of level-0-only stores in ``even_order``, cut to what a view needed: shared by the reader and the
#: followers, so the view a store opens with is read once.  Bounded in bytes; entries are per store stamp.
EVEN_PREFIXES = ChunkCache(96 * 2**20)
#: Sampling reads a level this many vertices at a time (whole chunks), never all of it at once.
SAMPLE_BATCH_VERTICES = 262_144


def _chunk_boxes(coords: np.ndarray, chunk_shape: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    size = np.asarray(chunk_shape, dtype=float)
    c = np.asarray(coords, dtype=float).reshape(-1, len(size))
    return c * size, (c + 1) * size


def _in_box(coords: np.ndarray, counts: np.ndarray, chunk_shape: Sequence[float], box: Box | None) -> np.ndarray:
    """Each chunk's points in ``box``, estimated by the share of its volume inside (all of them without a box)."""
    counts = np.asarray(counts, dtype=float)
    if box is None:
        return counts
    lo, hi = _chunk_boxes(coords, chunk_shape)
    overlap = np.clip(np.minimum(hi, box.hi) - np.maximum(lo, box.lo), 0, None) / (hi - lo)
    return counts * np.prod(overlap, axis=1)


def read_level_sample(
    path: str | store.Handle,
    level: int,
    budget: int,
    *,
    box: Box | None = None,
    names: Sequence[str] | None = None,
    cache: ChunkCache | None = EVEN_PREFIXES,
) -> Sample:
    """At most ``budget`` points of ``level`` in ``box`` (default: all), spread evenly over space.

    Each chunk meeting the box gives a quota (``chunk_quotas``: all its
    points in the box up to a common cap), its first points in the box
    in its ``even_order``.  A chunk's points in the box are counted from
    its ordered prefix (an even sample of it), so a box that cuts a chunk
    or data thinner than the chunk still gets its share.  The level is
    read a batch of whole chunks at a time (``SAMPLE_BATCH_VERTICES``) and
    only each chunk's ordered prefix is kept, in ``cache``: a later view
    needing no more of a chunk reads nothing, and peak memory stays near
    a batch plus the sample.  Raises StoreError as the store's reads do.
    """
    h = store.handle(path)
    info = store.open_info(h)
    chunk_shape = info.level(level).chunk_shape
    coords, counts = store.chunk_vertex_counts(h, level)
    lo, hi = _chunk_boxes(coords, chunk_shape)
    by_volume = _in_box(coords, counts, chunk_shape, box)
    first_guess = chunk_quotas(by_volume, budget)
    names = list(h.attribute_names(level) if names is None else names)
    stamp = (h.address, store.signature(h), int(level), tuple(names))
    keys = [tuple(int(c) for c in k) for k in coords]
    sizes = {k: int(n) for k, n in zip(keys, counts, strict=True)}
    meeting = [i for i in range(len(keys)) if by_volume[i] > 0]
    prefixes: dict[int, tuple[np.ndarray, dict[str, np.ndarray], int]] = {}
    exact: dict[int, int] = {}  # chunks read for this box (now or before): their points in it, counted
    where = None if box is None else (tuple(box.lo.tolist()), tuple(box.hi.tolist()))
    for i in meeting:
        hit = cache.get((*stamp, keys[i])) if cache is not None else None
        if hit is not None:
            prefixes[i] = hit
            counted = cache.get((*stamp, keys[i], where))
            if counted is not None:
                exact[i] = counted  # the same box again: the same quotas, the same points
    reads = 0

    def read(indices: Sequence[int], quotas: Mapping[int, int | None]) -> None:
        nonlocal reads
        for batch in _batches(indices, counts):
            got = store.read_point_chunks(h, level, [keys[i] for i in batch], names, counts=sizes)
            reads += len(batch)
            for i in batch:
                pos, attrs = got.pop(keys[i])
                prefixes[i], exact[i] = _ordered_prefix(pos, attrs, lo[i], hi[i], box, quotas[i])
                if cache is not None:
                    cache.put((*stamp, keys[i]), prefixes[i], _nbytes(prefixes[i][:2]))
                    cache.put((*stamp, keys[i], where), exact[i], 64)
            del got

    read([i for i in meeting if i not in prefixes], {i: int(first_guess[i]) for i in meeting})
    for _ in range(3):
        held = np.zeros(len(keys))  # each chunk's points in the box: counted, or estimated from its even prefix
        for i, (pos, _, total) in prefixes.items():
            inside = len(pos) if box is None else int(box.contains(pos).sum())
            held[i] = exact.get(i, inside if len(pos) == total else inside * total / max(len(pos), 1))
        quotas = chunk_quotas(held, budget)
        # an estimated chunk given all it holds (a sparse part of the view, or too few in its prefix to tell):
        # read for all its points in the box; a prefix too short for its quota: read for a longer one
        again = {
            i: None if quotas[i] >= np.floor(held[i]) else int(quotas[i])
            for i in meeting
            if i not in exact
            and len(prefixes[i][0]) < prefixes[i][2]
            and (quotas[i] >= np.floor(held[i]) or _take_prefix(prefixes[i], int(quotas[i]), box) is None)
        }
        if not again:
            break
        read(list(again), again)
    ndim = len(chunk_shape)
    parts = [_take_prefix(prefixes[i], int(quotas[i]), box) for i in meeting if quotas[i] > 0]
    parts = [p for p in parts if p is not None]
    if parts:
        pos = np.concatenate([p for p, _ in parts])
        attrs = {n: np.concatenate([a[n] for _, a in parts]) for n in names if all(n in a for _, a in parts)}
    else:
        pos, attrs = np.zeros((0, ndim), np.float32), {n: np.zeros(0) for n in names}
    data = store.LevelData(kind=info.kind, level=int(level), positions=pos, vertex_attributes=attrs)
    in_view = max(int(round(float(held.sum()))), len(pos))
    return Sample(data, in_view, {keys[i]: int(quotas[i]) for i in meeting if quotas[i] > 0}, reads)


#: A chunk's ordered prefix keeps at least this many points (enough to count its points in a box from).
MIN_PREFIX = 4096


def _ordered_prefix(
    pos: np.ndarray, attrs: Mapping[str, np.ndarray], lo: np.ndarray, hi: np.ndarray, box: Box | None, quota: int | None
) -> tuple[tuple[np.ndarray, dict[str, np.ndarray], int], int]:
    """A chunk's points in ``even_order`` cut after twice ``quota`` of them in ``box`` (at least ``MIN_PREFIX``
    points; None: after the last one in the box), so a little zoom needs no new read; the prefix holds the
    chunk's point count last.  Also the chunk's points in the box."""
    order = even_order(pos, lo, hi)
    inside = np.flatnonzero(np.ones(len(order), bool) if box is None else box.contains(pos[order]))
    want = None if quota is None else max(2 * int(quota), 1)
    if want is None or len(inside) <= want:
        end = int(inside[-1]) + 1 if len(inside) else 0
    else:
        end = int(inside[want - 1]) + 1
    kept = order[: max(end, min(MIN_PREFIX, len(order)))]
    return (pos[kept], {n: np.asarray(v)[kept] for n, v in attrs.items()}, len(order)), len(inside)


def _take_prefix(
    prefix: tuple[np.ndarray, dict[str, np.ndarray], int], quota: int, box: Box | None
) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """A chunk's first ``quota`` points in ``box`` from its cached ordered prefix; None when it holds too few."""
    pos, attrs, total = prefix
    if box is None:
        if len(pos) < quota and len(pos) < total:
            return None
        return pos[:quota], {n: v[:quota] for n, v in attrs.items()}
    rows = np.flatnonzero(box.contains(pos))
    if len(rows) < quota and len(pos) < total:
        return None
    rows = rows[:quota]
    return pos[rows], {n: v[rows] for n, v in attrs.items()}


def _batches(indices: Sequence[int], counts: np.ndarray) -> list[list[int]]:
    """``indices`` grouped in runs of about ``SAMPLE_BATCH_VERTICES`` vertices (a bigger chunk alone)."""
    out: list[list[int]] = []
    run: list[int] = []
    held = 0
    for i in indices:
        n = int(counts[i])
        if run and held + n > SAMPLE_BATCH_VERTICES:
            out.append(run)
            run, held = [], 0
        run.append(i)
        held += n
    if run:
        out.append(run)
    return out


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
        #: A level-0-only store: each chunk's points in the subsample shown (None: every point in view shown).
        self.sample_quotas: dict[tuple[int, ...], int] | None = None
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
        self.sample_quotas = region.quotas if region.sampled_from else None
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
            if self.flat():
                return self._update_flat(view, generation)
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

    def flat(self) -> bool:
        """Whether the store holds points at one level only (no pyramid): see ``_update_flat``."""
        return self.kind in self._store.POINT_KINDS and len(self.levels) == 1

    def _update_flat(self, view: View, generation: int, hysteresis: float = 0.15) -> Region | None:
        """A level-0-only store: every point of the chunks in view when they fit the budget, else an even subsample.

        The subsample (``read_level_sample``) gives each chunk in view a
        quota.  A view that the box read covers and that holds no fewer
        points by more than ``hysteresis`` (a pan, not a zoom in) reads
        nothing new.  The budget holds whatever the lock: the one level is
        all there is.
        """
        grid = self.levels[0]
        level = grid.index
        box = self.box_for(view, level)
        covered = self.shown is not None and self.shown[0] == level and _covers(self.shown[1], view.box(0.0))
        if covered and self.sample_quotas is None:
            return None  # every point of a box covering the view is drawn already
        if sum(self._chunks_meeting(grid, box).values()) <= self.budget:
            return self._read_points(level, box, generation)
        if covered:
            # a move within the box read, not zoomed in (no room for more points here): what is drawn stays
            now = _in_box(grid.chunk_coords, grid.chunk_counts, grid.chunk_shape, box).sum()
            before = _in_box(grid.chunk_coords, grid.chunk_counts, grid.chunk_shape, self.shown[1]).sum()
            if now * (1 + hysteresis) >= before:
                return None
        sample = read_level_sample(self.path, level, self.budget, box=box, names=self._attribute_names(level))
        self.reads += sample.reads
        data = sample.data
        colours = None
        if colouring.colouring_key(self._colouring) is not None:
            mapped = colouring.point_colours(data.vertex_attributes, self._colouring)
            colours = None if mapped is None else np.asarray(mapped, np.float32)
        return Region(
            self.kind,
            level,
            data.positions,
            data.vertex_attributes,
            generation=generation,
            box=box,
            face_colors=colours,
            sampled_from=sample.in_view if data.vertex_count < sample.in_view else 0,  # else: all in view
            quotas=sample.quotas,
        )

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
