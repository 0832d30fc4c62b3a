"""Level-of-detail choice, free of Qt and napari.

The initial level (the finest whose vertex count fits a budget), and the
view-dependent pieces the camera-following controller builds on: the
visible box, vertex estimates from per-chunk counts, and a level choice
with hysteresis.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

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

    A value that is not a positive whole number is ignored with a warning
    rather than breaking every open.
    """
    import os
    import warnings

    raw = os.environ.get(BUDGET_ENV)
    if not raw:
        return DEFAULT_VERTEX_BUDGET
    try:
        value = int(raw.replace("_", "").replace(",", ""))
        if value < 1:
            raise ValueError
    except ValueError:
        warnings.warn(
            f"{BUDGET_ENV}={raw!r} is not a positive whole number; using {DEFAULT_VERTEX_BUDGET:,}.",
            stacklevel=2,
        )
        return DEFAULT_VERTEX_BUDGET
    return value


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
    ordered = sorted(levels, key=lambda lv: lv.index)
    # the finest level worth showing: the coarsest whose bins are still no bigger than a pixel
    finest_ok = max((lv.index for lv in ordered if max(lv.bin_shape) <= world_per_pixel), default=ordered[0].index)
    candidates = [lv for lv in ordered if lv.index >= finest_ok]
    estimates = {lv.index: count_in_box(lv.chunk_coords, lv.chunk_counts, lv.chunk_shape, box) for lv in candidates}
    if current in estimates and estimates[current] <= budget * (1 + hysteresis):
        finer = [i for i in estimates if i < current and estimates[i] <= budget * (1 - hysteresis)]
        return min(finer) if finer else current
    for index in sorted(estimates):
        if estimates[index] <= budget:
            return index
    return max(estimates)
