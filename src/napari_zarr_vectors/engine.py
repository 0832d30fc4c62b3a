"""The vectorized coarsening step: one pyramid level from the one below, in whole-array numpy.

Pure numpy, no store access: ``pyramid`` feeds it rows read through
``store`` and writes what it returns through ``store``. It reproduces
what upstream's per_object coarsener computes (same bins, same
centroids, same parents, same trajectories) without its per-chunk and
per-object Python:

* a vertex's bin is ``floor(position / bin_shape)`` (bins aligned at 0);
* a metavertex is the centroid of the surviving objects' vertex
  *occurrences* in its bin (a vertex shared by two surviving objects
  counts twice, as upstream's concatenated per-object positions do);
* every source row whose bin holds a metavertex gets it as parent, even
  a row of a thinned-away object (upstream's link pass re-bins every row);
* an object's coarse trajectory is its rows' parents with consecutive
  repeats dropped.

Positions arrive in slabs (batches of whole chunks): each slab reduces to
per-bin partial sums (``slab_partial``), which merge exactly, so a level
never needs its positions in memory at once and slabs can be computed
elsewhere (a dask worker) and merged here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BinGrid:
    """Packs a bin's integer coordinates into one int64 (row-major over a bounded box)."""

    bin_shape: np.ndarray  # (D,) float64
    lo: np.ndarray  # (D,) int64, smallest bin coordinate
    span: np.ndarray  # (D,) int64

    @classmethod
    def covering(cls, bin_shape: Sequence[float], chunk_keys: np.ndarray, chunk_shape: Sequence[float]) -> BinGrid:
        """The bins a level's chunks can hold (its vertices lie in its chunks), with a margin of one."""
        bins = np.asarray(bin_shape, np.float64)
        chunk = np.asarray(chunk_shape, np.float64)
        keys = np.asarray(chunk_keys, np.int64).reshape(-1, len(bins))
        if not len(keys):
            keys = np.zeros((1, len(bins)), np.int64)
        lo = np.floor(keys.min(0) * chunk / bins).astype(np.int64) - 1
        hi = np.floor((keys.max(0) + 1) * chunk / bins).astype(np.int64) + 1
        span = hi - lo + 1
        if float(np.prod(span.astype(np.float64))) >= 2.0**62:
            raise ValueError(f"bin grid {span.tolist()} is too large to index; use a larger coarsen factor")
        return cls(bins, lo, span)

    def keys(self, positions: np.ndarray) -> np.ndarray:
        """The packed bin of each position (float32 positions are binned as float64, as upstream does)."""
        coords = np.floor(np.asarray(positions, np.float64) / self.bin_shape).astype(np.int64) - self.lo
        if len(coords) and ((coords < 0).any() or (coords >= self.span).any()):
            raise ValueError("a vertex lies outside the chunks that hold it; the store's chunk index is inconsistent")
        strides = np.r_[np.cumprod(self.span[::-1])[::-1][1:], 1].astype(np.int64)
        return coords @ strides


@dataclass
class Partial:
    """One slab reduced: each row's bin, and per occupied bin the weighted position sums."""

    row_keys: np.ndarray  # (n,) int64
    bins: np.ndarray  # (u,) sorted int64
    sums: np.ndarray  # (u, D) float64
    weights: np.ndarray  # (u,) float64


def slab_partial(positions: np.ndarray, weights: np.ndarray | None, grid: BinGrid) -> Partial:
    """Bin a slab of rows; ``weights`` is each row's occurrence count in surviving objects (None: 1)."""
    keys = grid.keys(positions)
    w = np.ones(len(keys)) if weights is None else np.asarray(weights, np.float64)
    live = w > 0
    bins, inverse = np.unique(keys[live], return_inverse=True)
    pos = np.asarray(positions, np.float64)[live]
    wl = w[live]
    sums = np.stack([np.bincount(inverse, weights=pos[:, a] * wl, minlength=len(bins)) for a in range(pos.shape[1])], 1)
    return Partial(
        keys, bins, sums.reshape(len(bins), pos.shape[1]), np.bincount(inverse, weights=wl, minlength=len(bins))
    )


@dataclass
class Coarse:
    """A coarse level in memory: vertices in row order and the source rows' parents."""

    positions: np.ndarray  # (n, D) float32, rows chunk-major
    chunk_keys: np.ndarray  # (C, D), lexicographic
    chunk_starts: np.ndarray  # (C + 1,)
    parent: np.ndarray  # (n_source,) coarse row of each source row, -1: none


def merge(partials: Sequence[Partial], ndim: int, chunk_shape: Sequence[float]) -> Coarse:
    """Metavertices from every slab's partial sums; rows ordered by chunk (lexicographic), then bin."""
    if partials:
        bins = np.concatenate([p.bins for p in partials])
        sums = np.concatenate([p.sums for p in partials])
        weights = np.concatenate([p.weights for p in partials])
        row_keys = np.concatenate([p.row_keys for p in partials])
    else:
        bins, sums, weights, row_keys = (np.zeros(0, np.int64), np.zeros((0, ndim)), np.zeros(0), np.zeros(0, np.int64))
    ubins, inverse = np.unique(bins, return_inverse=True)
    total_w = np.bincount(inverse, weights=weights, minlength=len(ubins))
    cent = np.empty((len(ubins), ndim), np.float32)
    for a in range(ndim):
        cent[:, a] = np.bincount(inverse, weights=sums[:, a], minlength=len(ubins)) / np.maximum(total_w, 1e-300)
    chunks = np.floor(cent.astype(np.float64) / np.asarray(chunk_shape, np.float64)).astype(np.int64)
    # chunk-major (lexicographic chunk coordinates), then bin key inside a chunk
    order = np.lexsort((ubins, *chunks.T[::-1]))
    row_of_bin = np.empty(len(ubins), np.int64)  # index in the sorted bins -> coarse row
    row_of_bin[order] = np.arange(len(ubins))
    cent, chunks = cent[order], chunks[order]
    if len(chunks):
        starts = np.flatnonzero(np.r_[True, (chunks[1:] != chunks[:-1]).any(1)])
        keys = chunks[starts]
    else:
        starts, keys = np.zeros(0, np.int64), np.zeros((0, ndim), np.int64)
    # parents: every source row whose bin holds a metavertex
    parent = np.full(len(row_keys), -1, np.int64)
    if len(ubins):
        pos = np.clip(np.searchsorted(ubins, row_keys), 0, len(ubins) - 1)
        hit = ubins[pos] == row_keys
        parent[hit] = row_of_bin[pos[hit]]
    return Coarse(cent, keys, np.r_[starts, len(cent)].astype(np.int64), parent)


def occurrences(offsets: np.ndarray, rows: np.ndarray, kept: np.ndarray, n_rows: int) -> np.ndarray:
    """How many times each source row occurs in the kept objects' row sequences."""
    sel = _select(offsets, rows, kept)
    return np.bincount(sel, minlength=n_rows).astype(np.float64)


def _select(offsets: np.ndarray, rows: np.ndarray, kept: np.ndarray) -> np.ndarray:
    lengths = np.diff(offsets)[kept]
    if not lengths.sum():
        return np.zeros(0, np.int64)
    starts = np.repeat(offsets[:-1][kept], lengths)
    within = np.arange(lengths.sum()) - np.repeat(np.r_[0, np.cumsum(lengths)[:-1]], lengths)
    return rows[starts + within]


def trajectories(
    offsets: np.ndarray, rows: np.ndarray, kept_mask: np.ndarray, parent: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each object's coarse rows (parents of its rows, consecutive repeats dropped); dropped objects get none."""
    n = len(offsets) - 1
    obj = np.repeat(np.arange(n), np.diff(offsets))
    mapped = parent[rows] if len(rows) else np.zeros(0, np.int64)
    keep = kept_mask[obj] & (mapped >= 0)
    obj, mapped = obj[keep], mapped[keep]
    if len(mapped):
        first = np.r_[True, (mapped[1:] != mapped[:-1]) | (obj[1:] != obj[:-1])]
        obj, mapped = obj[first], mapped[first]
    counts = np.bincount(obj, minlength=n)
    return np.r_[0, np.cumsum(counts)].astype(np.int64), mapped.astype(np.int64)


def representatives(offsets: np.ndarray, rows: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Mean position of each object's row sequence (NaN for an empty object)."""
    n = len(offsets) - 1
    obj = np.repeat(np.arange(n), np.diff(offsets))
    counts = np.bincount(obj, minlength=n)
    out = np.full((n, positions.shape[1]), np.nan)
    pos = np.asarray(positions, np.float64)[rows] if len(rows) else np.zeros((0, positions.shape[1]))
    for a in range(positions.shape[1]):
        sums = np.bincount(obj, weights=pos[:, a], minlength=n)
        out[:, a] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return out


def compact(offsets: np.ndarray, rows: np.ndarray, kept_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Only the kept objects' sequences, renumbered densely (cross_object_metanode's fresh id space)."""
    sel = _select(offsets, rows, np.flatnonzero(kept_mask))
    lengths = np.diff(offsets)[kept_mask]
    return np.r_[0, np.cumsum(lengths)].astype(np.int64), sel
