"""Level-of-detail choice, free of Qt and napari.

The initial level (the finest whose vertex count fits a budget), and the
view-dependent pieces the camera-following controller builds on: the
visible box, vertex estimates from per-chunk counts, and a level choice
with hysteresis.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import store
from .store import LevelData

DEFAULT_VERTEX_BUDGET = 250_000
#: napari Shapes costs ~14 ms per path here (2,000 paths take ~29 s), so
#: above this many paths polylines are drawn as a Vectors layer instead.
DEFAULT_SHAPES_PATH_LIMIT = 100


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


BUDGET_ENV = "NAPARI_ZARR_VECTORS_VERTEX_BUDGET"


def default_vertex_budget() -> int:
    """The vertex budget from ``$NAPARI_ZARR_VECTORS_VERTEX_BUDGET``, else 250,000.

    The budget when nothing is known of the renderer (a script without a
    viewer); ``budget_for`` is the rule for a viewer's machine.  A value
    that is not a positive whole number is ignored with a warning rather
    than breaking every open.
    """
    value = _env_budget()
    return DEFAULT_VERTEX_BUDGET if value is None else value


def _env_budget() -> int | None:
    """``$NAPARI_ZARR_VECTORS_VERTEX_BUDGET`` as a positive whole number; None when unset or unusable."""
    import os
    import warnings

    raw = os.environ.get(BUDGET_ENV)
    if not raw:
        return None
    try:
        value = int(raw.replace("_", "").replace(",", ""))
        if value < 1:
            raise ValueError
    except ValueError:
        warnings.warn(
            f"{BUDGET_ENV}={raw!r} is not a positive whole number; ignoring it.",
            stacklevel=3,
        )
        return None
    return value


#: Substrings (lower case) of GL_RENDERER strings that name a renderer drawing on the CPU:
#: Mesa's llvmpipe/softpipe/swrast (CI, remote desktops, VMs), Google's SwiftShader,
#: Windows' fallback drivers and Apple's software renderer.
SOFTWARE_RENDERERS = (
    "llvmpipe",
    "softpipe",
    "swrast",
    "software rasterizer",
    "swiftshader",
    "microsoft basic render",
    "gdi generic",
    "apple software renderer",
)
#: Canvas pixels per vertex on a software renderer.  Measured on llvmpipe (2 cores): a
#: camera move costs ~920 ms at 250,000 vertices (swap 350 ms + draw 420 ms) and ~250 ms
#: at 50,000, about 80 ms plus 3.4 ms per 1,000 vertices.  A vertex per 20 pixels gives a
#: 1280x1024 canvas 60,000 vertices (~300 ms a move), and points of a few pixels already
#: fill the screen at that density, so more would cost time without showing more.
SOFTWARE_PIXELS_PER_VERTEX = 20
#: Bounds of the software budget: below 30,000 a small canvas shows too little of a cloud
#: (~180 ms a move anyway); above 100,000 (~420 ms a move) zooming feels stuck.
SOFTWARE_MIN_BUDGET = 30_000
SOFTWARE_MAX_BUDGET = 100_000
#: Software budgets are rounded down to this step, so the number shown reads as a setting.
BUDGET_STEP = 10_000
#: The canvas assumed when its size is unknown (napari's canvas on a 1280x1024 screen, maximized).
REFERENCE_CANVAS_PIXELS = 1280 * 1024


def is_software_renderer(renderer: str | None) -> bool:
    """Whether a GL_RENDERER string names a renderer that draws on the CPU."""
    text = (renderer or "").lower()
    return any(name in text for name in SOFTWARE_RENDERERS)


def _renderer_name(renderer: str) -> str:
    """A GL_RENDERER string without its parenthesised details: 'llvmpipe (LLVM 15.0.6, 256 bits)' -> 'llvmpipe'."""
    name = renderer.split(" (", 1)[0].strip() or renderer.strip()
    return name if len(name) <= 48 else name[:47] + "\u2026"


def budget_for(renderer: str | None, canvas_pixels: int | tuple[int, int] | None) -> tuple[int, str]:
    """The default vertex budget for a renderer and canvas, with a one-line reason.

    ``renderer`` is the GL_RENDERER string (None: unknown); ``canvas_pixels``
    the canvas's pixel count, or its ``(height, width)`` (named in the
    reason), or None.  ``$NAPARI_ZARR_VECTORS_VERTEX_BUDGET`` wins over
    everything.  A software renderer gets a vertex per
    ``SOFTWARE_PIXELS_PER_VERTEX`` canvas pixels, rounded down to
    ``BUDGET_STEP`` and kept within ``SOFTWARE_MIN_BUDGET`` ..
    ``SOFTWARE_MAX_BUDGET``; a GPU, or an unknown renderer, gets
    ``DEFAULT_VERTEX_BUDGET`` (napari's own work per vertex, not the GPU,
    is what limits it there).

    Examples
    --------
    >>> budget_for("llvmpipe (LLVM 15.0.6, 256 bits)", (1024, 1280))
    (60000, 'software renderer (llvmpipe), 1280x1024 canvas')
    """
    env = _env_budget()
    if env is not None:
        return env, f"set by ${BUDGET_ENV}"
    if renderer is None:
        return DEFAULT_VERTEX_BUDGET, "renderer not known"
    name = _renderer_name(renderer)
    if not is_software_renderer(renderer):
        return DEFAULT_VERTEX_BUDGET, f"GPU renderer ({name})"
    if isinstance(canvas_pixels, tuple):
        height, width = (int(v) for v in canvas_pixels)
        pixels: int | None = height * width
        canvas = f"{width}x{height} canvas"
    else:
        pixels = None if canvas_pixels is None else int(canvas_pixels)
        canvas = "canvas size unknown" if pixels is None else f"{pixels:,}-pixel canvas"
    if not pixels or pixels < 1:
        pixels, canvas = REFERENCE_CANVAS_PIXELS, "canvas size unknown"
    raw = pixels // SOFTWARE_PIXELS_PER_VERTEX
    budget = min(max(raw // BUDGET_STEP * BUDGET_STEP, SOFTWARE_MIN_BUDGET), SOFTWARE_MAX_BUDGET)
    return budget, f"software renderer ({name}), {canvas}"


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
    """What a controller update produced: one level read inside ``box`` (store order), for request ``generation``."""

    generation: int = 0
    box: Box | None = None


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
    ) -> None:
        import threading

        self._store = store
        self.path = str(path)
        self.kind = kind
        self.budget = int(budget)
        self.path_budget = path_budget
        self.margin = float(margin)
        self.cache = ChunkCache(cache_bytes)
        self.locked: int | None = None
        self._lock = threading.Lock()
        self._generation = 0
        self._signature: tuple[int, int] | None = None
        self.levels: list[LevelGrid] = []
        self._drawn_ratio: dict[int, float] = {}
        self._objects: dict[int, int] = {}
        self.shown: tuple[int, Box] | None = None  # the level shown and the box it covers
        self.reads = 0  # store reads made (chunks for points, regions for polylines), for tests and benchmarks

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
        return True

    def lock(self, level: int | None) -> None:
        """Show ``level`` whatever the view (None: choose automatically again)."""
        if level is not None and self.levels and level not in [lv.index for lv in self.levels]:
            raise ValueError(f"level {level} is not one of {[lv.index for lv in self.levels]}")
        self.locked = level

    def forget_shown(self) -> None:
        """Make the next update re-read even if the view did not move (budget or lock changed).

        The level shown is kept: it still anchors the hysteresis.
        """
        if self.shown is not None:
            nowhere = np.full(len(self.shown[1].lo), np.inf)
            self.shown = (self.shown[0], Box(nowhere, -nowhere))

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
        if self.locked is not None and self.locked not in [g.index for g in grids]:
            self.locked = None
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

    def update(self, view: View, generation: int) -> Region | None:
        """Plan and read for ``view`` (worker thread). None: stale, or nothing new to show."""
        with self._lock:
            if generation != self._generation:
                return None
            self._levels_current()
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
        missing = [k for k in keys if (level, k) not in self.cache]
        if missing:
            got = self._store.read_point_chunks(self.path, level, missing, names, counts=keys)
            self.reads += len(got)
            for k, value in got.items():
                self.cache.put((level, k), value, _nbytes(value))
        found = {k: self.cache.get((level, k)) for k in keys}
        for k in [k for k, v in found.items() if v is None]:  # evicted meanwhile: read again
            found[k] = self._store.read_point_chunks(self.path, level, [k], names)[k]
        ndim = len(grid.chunk_shape)
        parts = [v for v in found.values() if v is not None and len(v[0])]
        if parts:
            pos = np.concatenate([p for p, _ in parts])
            attrs = {n: np.concatenate([a[n] for _, a in parts]) for n in names if all(n in a for _, a in parts)}
            inside = box.contains(pos)
            pos = pos[inside]
            attrs = {n: v[inside] for n, v in attrs.items()}
        else:
            pos, attrs = np.zeros((0, ndim), np.float32), {n: np.zeros(0) for n in names}
        return Region(self.kind, level, pos, attrs, generation=generation, box=box)

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


def _covers(shown: Box, want: Box) -> bool:
    return bool(np.all(shown.lo <= want.lo) and np.all(shown.hi >= want.hi))
