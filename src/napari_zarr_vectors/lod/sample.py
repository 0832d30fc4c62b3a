"""A store with only level 0: which of its points to draw within the vertex budget, as pure numpy.

A store saved from a layer has no pyramid, and its one level may hold
millions of points; drawing them all froze napari (issue 27, item 4).
What is drawn instead is an even subsample over space, as Potree's coarse
octree nodes are: sparse parts keep all their points and dense parts are
thinned, never "the first N rows".

Two pure pieces, so the choice is tested without a store or a viewer:

- ``chunk_quotas``: how many points each chunk in view may give, capped
  evenly (water filling), so the quotas add up to the budget;
- ``even_order``: an order of one chunk's points whose every prefix is
  spread evenly over the chunk (one point per occupied cell of a grid,
  then per cell of the grid twice as fine, ...), so a chunk's first
  ``quota`` points in that order are its subsample at any quota.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Bits per axis of the grid ``even_order`` refines down to (cells a 65,536th of the chunk's side in 2D and 3D).
MAX_BITS = 16


def chunk_quotas(counts: Sequence[float] | np.ndarray, budget: int) -> np.ndarray:
    """Points per chunk within ``budget``: each chunk gives all its points up to one common cap.

    ``counts`` are the points each chunk holds in view (estimates may be
    fractional; they are rounded down).  The cap is the largest for which
    the quotas fit the budget; what remains below the budget goes one
    point each to the biggest chunks.  So the quotas add up to
    ``min(budget, sum(counts))``, a sparse chunk keeps every point and a
    dense one is thinned: even over space at the scale of chunks.

    >>> chunk_quotas([10, 500, 3000], 1000).tolist()
    [10, 495, 495]
    """
    c = np.floor(np.clip(np.asarray(counts, dtype=float), 0, None)).astype(np.int64)
    budget = int(budget)
    if budget < 0:
        raise ValueError(f"the vertex budget must be at least 0, got {budget}")
    if int(c.sum()) <= budget:
        return c
    lo, hi = 0, int(c.max())  # sum(min(c, lo)) <= budget < sum(min(c, hi))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if int(np.minimum(c, mid).sum()) <= budget:
            lo = mid
        else:
            hi = mid
    quotas = np.minimum(c, lo)
    left = budget - int(quotas.sum())  # fewer than the chunks above the cap, or the cap would be higher
    if left > 0:
        above = np.flatnonzero(c > lo)
        biggest = above[np.argsort(-c[above], kind="stable")][:left]
        quotas[biggest] += 1
    return quotas


def _spread_bits(q: np.ndarray, bits: int, ndim: int, axis: int) -> np.ndarray:
    """``q``'s low ``bits`` bits placed every ``ndim``-th bit from ``axis`` (one axis of a Morton code)."""
    out = np.zeros(len(q), np.uint64)
    one = np.uint64(1)
    for b in range(bits):
        out |= ((q >> np.uint64(b)) & one) << np.uint64(b * ndim + axis)
    return out


def _mix32(x: np.ndarray) -> np.ndarray:
    """A bijective scramble of uint32 (lowbias32): deterministic pseudo-random keys, never two equal."""
    x = x.astype(np.uint32, copy=True)
    with np.errstate(over="ignore"):
        x ^= x >> np.uint32(16)
        x *= np.uint32(0x7FEB352D)
        x ^= x >> np.uint32(15)
        x *= np.uint32(0x846CA68B)
        x ^= x >> np.uint32(16)
    return x


def _bit_reversed(j: np.ndarray, nbits: np.ndarray) -> np.ndarray:
    """Each ``j`` with its low ``nbits`` bits in reverse order (van der Corput: any prefix of 0, 1, 2, ...
    reversed is spread evenly over the range)."""
    j = j.astype(np.uint32)
    out = np.zeros(len(j), np.uint32)
    nbits = nbits.astype(np.int64)
    for b in range(int(nbits.max(initial=0))):
        shift = nbits - 1 - b
        use = shift >= 0
        out[use] |= ((j[use] >> np.uint32(b)) & np.uint32(1)) << shift[use].astype(np.uint32)
    return out


def _morton(positions: np.ndarray, lo: np.ndarray, span: float, bits: int) -> np.ndarray:
    """Each point's Morton code on a grid of ``2**bits`` cubes of side ``span / 2**bits`` per axis from ``lo``."""
    ndim = positions.shape[1]
    cells = float(2**bits)
    code = np.zeros(len(positions), np.uint64)
    for axis in range(ndim):  # an axis at a time: a few arrays of n, not of n * ndim
        q = np.clip(np.floor((positions[:, axis] - lo[axis]) * (cells / span)), 0, cells - 1).astype(np.uint64)
        code |= _spread_bits(q, bits, ndim, axis)
    return code


def even_order(
    positions: np.ndarray, lo: Sequence[float] | None = None, hi: Sequence[float] | None = None
) -> np.ndarray:
    """Row indices of ``positions`` in an order whose every prefix is spread evenly over space.

    The box ``[lo, hi]`` (default: the points' own bounds) is split into
    a grid of cubes, then each cube into ``2**ndim``, down to a grid a few
    times finer than the points (at most ``MAX_BITS`` halvings).  A
    point's depth is the coarsest grid in which it represents its cell (a
    cell's representative is its point with the lowest pseudo-random key,
    so it also represents its sub-cell: the representatives nest, as
    Potree's octree nodes do).  Points come ordered by depth, so the first
    ``k`` are one point per occupied cell of the finest grid that has at
    most ``k`` occupied cells, plus an even share of the next grid's
    (taken along the Morton curve in bit-reversed steps).  Deterministic:
    the same points give the same order.  Memory: about 60 bytes a point.
    """
    pos = np.asarray(positions)
    n = len(pos)
    if n <= 1:
        return np.arange(n, dtype=np.int64)
    if n >= 2**32:
        raise ValueError(f"even_order takes fewer than 2**32 points, got {n:,}")
    ndim = pos.shape[1]
    lo_ = pos.min(axis=0).astype(np.float64) if lo is None else np.asarray(lo, dtype=np.float64)
    hi_ = pos.max(axis=0).astype(np.float64) if hi is None else np.asarray(hi, dtype=np.float64)
    span = float(np.max(hi_ - lo_))  # cubes: even over space, whatever the box's proportions
    if not np.isfinite(span) or span <= 0:
        span = 1.0
    # a grid a few times finer than one point per cell is fine enough: below it points mostly sit alone
    bits = max(1, min(MAX_BITS, 63 // ndim, int(np.ceil(np.log2(n) / ndim)) + 2))
    code = _morton(pos, lo_, span, bits)
    by = np.argsort(code, kind="stable")  # Morton order
    code = code[by]
    key = _mix32(by)  # a point's key from its row: the same points in the same rows, the same order
    depth = np.full(n, bits + 1, np.int8)  # points sharing a finest cell: after every representative
    for level in range(bits + 1):
        cell = code >> np.uint64(ndim * (bits - level))
        starts = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]])
        del cell
        if len(starts) == n:  # every point has a cell of its own: all are representatives from here on
            depth[depth > level] = level
            break
        lowest = np.minimum.reduceat(key, starts)
        rep = key == np.repeat(lowest, np.diff(np.r_[starts, n]))
        depth[rep & (depth > level)] = level
    del code, key
    grouped = np.argsort(depth, kind="stable")  # by depth, Morton order within a depth
    d = depth[grouped]
    first = np.flatnonzero(np.r_[True, d[1:] != d[:-1]])
    sizes = np.diff(np.r_[first, n])
    rank = np.arange(n, dtype=np.int64)
    rank -= np.repeat(first, sizes)
    nbits = np.repeat(np.ceil(np.log2(np.maximum(sizes, 1))).astype(np.int8), sizes)
    spread = _bit_reversed(rank, nbits)
    del rank, nbits
    final = np.lexsort((spread, d))
    return by[grouped[final]]


def even_subsample(
    positions: np.ndarray, k: int, lo: Sequence[float] | None = None, hi: Sequence[float] | None = None
) -> np.ndarray:
    """The rows (sorted) of ``k`` points of ``positions`` spread evenly over space (``even_order``'s first ``k``)."""
    n = len(positions)
    if k >= n:
        return np.arange(n, dtype=np.int64)
    if k <= 0:
        return np.zeros(0, np.int64)
    return np.sort(even_order(positions, lo, hi)[:k])
