"""Which objects survive a thinned level, and the glue that lets upstream's coarsener thin the same way.

``select_survivors`` picks among the objects still alive (so thinning
compounds level over level): ``random``, ``spatial_coverage`` (in
proportion in every region) or a strategy registered with zarr-vectors.
Upstream's coarsener only calls registered strategies, with no notion of
which objects are still alive; ``_our_strategy_name`` registers one that
reads them from ``_context``, which the build sets just before each
upstream call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import store

BUILTIN_STRATEGIES = ("random", "spatial_coverage")
_OUR_PREFIX = "napari-zarr-vectors:"


def available_strategies() -> list[str]:
    """Sparsity strategies a build can use: ours plus any registered by installed packages."""
    others = [s for s in store.registered_selection_strategies() if not s.startswith(_OUR_PREFIX)]
    return list(BUILTIN_STRATEGIES) + sorted(s for s in others if s not in BUILTIN_STRATEGIES)


def select_survivors(
    strategy: str,
    alive: np.ndarray,
    points: np.ndarray,
    target: int,
    *,
    seed: Any = None,
    bin_shape: Sequence[float] | None = None,
) -> np.ndarray:
    """Pick ``target`` of the ``alive`` slot indices; returns them sorted.

    ``random``: uniform without replacement. ``spatial_coverage``: the
    objects' representative points are binned on a grid of about
    ``target`` cells and each cell keeps its proportional share (largest
    remainder), so thinning keeps the spatial spread. Deterministic for a
    given seed. Any other name is a strategy registered with zarr-vectors,
    called on the alive objects only.
    """
    alive = np.asarray(alive, dtype=np.int64)
    target = int(min(max(target, 1), len(alive)))
    rng = np.random.default_rng(seed)
    if target >= len(alive):
        return np.sort(alive)
    if strategy == "random":
        return np.sort(rng.choice(alive, target, replace=False))
    if strategy == "spatial_coverage":
        return np.sort(alive[_spatial_coverage(points, target, rng)])
    picked = np.asarray(
        store.selection_strategy(strategy)(
            len(alive), target, seed=seed, representative_points=points, bin_shape=bin_shape
        ),
        dtype=np.int64,
    )
    return np.sort(alive[picked])


def _spatial_coverage(points: np.ndarray, target: int, rng: np.random.Generator) -> np.ndarray:
    n = len(points)
    pts = np.nan_to_num(np.asarray(points, dtype=float), nan=0.0)
    lo, hi = pts.min(0), pts.max(0)
    extent = np.maximum(hi - lo, 1e-9)
    per_axis = max(1, int(math.ceil(target ** (1.0 / pts.shape[1]))))
    cell = np.minimum(((pts - lo) / extent * per_axis).astype(np.int64), per_axis - 1)
    cell_id = np.ravel_multi_index(cell.T, (per_axis,) * pts.shape[1])
    cells, inverse, counts = np.unique(cell_id, return_inverse=True, return_counts=True)
    quota = counts * target / n
    take = np.floor(quota).astype(np.int64)
    short = target - take.sum()
    if short > 0:  # largest remainders first; ties broken by the seeded generator
        order = np.lexsort((rng.random(len(cells)), -(quota - take)))
        take[order[:short]] += 1
    # a random rank inside each cell; keep the first take[cell] of them
    order = np.lexsort((rng.random(n), inverse))
    rank = np.empty(n, dtype=np.int64)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    rank[order] = np.arange(n) - np.repeat(starts, counts)
    return np.flatnonzero(rank < take[inverse])


_context: dict[str, Any] = {}


def _registered_strategy(n_objects: int, target_count: int, **ctx: Any) -> np.ndarray:
    """What upstream calls: selection among the ALIVE slots, at the compounded ratio."""
    alive, points = _context["alive"], _context["points"]
    target = max(1, round(len(alive) / _context["sparsity"]))
    return select_survivors(
        _context["strategy"], alive, points[alive], target, seed=_context["seed"], bin_shape=ctx.get("bin_shape")
    )


def _our_strategy_name() -> str:
    name = _OUR_PREFIX + "compounding"
    if name not in store.registered_selection_strategies():
        store.register_selection_strategy(name, _registered_strategy)
    return name
