"""Drilling through pyramid levels along the cross-level links; free of Qt and napari.

A coarse metanode stands for the finer vertices linked to it.  Upstream
stores the links at the finer level pointing up (``links/+N``) and, with
explicit storage, at the coarser level pointing down (``links/-N``).
``parents`` and ``children`` use a direct ``±delta`` family when the store
has one, else compose single steps; with implicit storage ``children``
reads the ``+N`` links of only the finer chunks that meet the parents'
bins, since every child lies inside its parent's bin.

Vertices are named by *keys*: ``(chunk coordinates..., row in chunk)``,
one int64 row each, the way the links themselves name them.

``Breadcrumb`` is the trail of levels a user drilled through (the Drill
dock shows it): an evented model, so a view subscribes to its changes.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from psygnal import evented

from . import store


class DrillError(store.StoreError):
    """A drill cannot be made; the message says why and what to do.

    A ``StoreError`` (so a ``ValueError``), as every argument or store problem of the public API is.
    """


def no_links_message(path: str, level: int, delta: int) -> str:
    return (
        f"Store '{path}' has no cross-level links between levels {level} and {level + delta}, so its "
        "metanodes cannot be followed to their children or parents. The pyramid must be built with "
        "cross_level_depth >= 1: in the 'Build pyramid' widget remove the coarse levels and build "
        "again with 'cross-level depth' 1 or more (zarr-vectors 0.9.2 cannot add links to existing "
        "levels: its finalize pattern, build_pyramid(..., factors=[(1.0, 1.0)]), rewrites level 1)."
    )


@dataclass
class Vertices:
    """Vertices of one level found by a drill step.

    ``pairs`` links them to the query: row ``(i, j)`` says query key ``i``
    and vertex ``j`` are joined by a link (parent and child).
    ``objects`` names the object owning each vertex in stores that have
    objects (None for point clouds, or when not asked for).
    """

    level: int
    keys: np.ndarray
    positions: np.ndarray
    pairs: np.ndarray
    objects: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.keys)


def _as_keys(keys: np.ndarray | list, ndim: int) -> np.ndarray:
    """Keys as an ``(N, ndim + 1)`` int64 array, or a DrillError saying what a key is."""
    try:
        arr = np.asarray(keys)
        if arr.dtype.kind not in "iu" and not (arr.dtype.kind == "f" and np.all(np.mod(arr, 1) == 0)):
            raise TypeError
        arr = arr.astype(np.int64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim not in (1, 2) or (arr.ndim == 2 and arr.shape[1] != ndim + 1) or arr.size % (ndim + 1):
        shape = "?" if arr is None else arr.shape
        raise DrillError(
            f"Drill keys must be whole numbers, {ndim + 1} per vertex (its {ndim} chunk coordinates, then its "
            f"row in the chunk), as an (N, {ndim + 1}) array; got {type(keys).__name__} of shape {shape}. "
            "Take keys from Drill.locate or from a previous drill's .keys."
        )
    return arr.reshape(-1, ndim + 1)


def _index_of(needles: np.ndarray, haystack: np.ndarray) -> np.ndarray:
    """Index of each needle row in ``haystack`` rows (-1 where absent)."""
    n, h = store.pack_rows(needles, haystack)
    if not len(h):
        return np.full(len(n), -1, np.int64)
    order = np.argsort(h, kind="stable")
    pos = np.clip(np.searchsorted(h[order], n), 0, len(h) - 1)
    found = h[order][pos] == n
    return np.where(found, order[pos], -1)


def _unique_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique rows and, for every row, the index of its unique row."""
    if not len(rows):
        return rows, np.zeros(0, np.int64)
    uniq, inverse = np.unique(rows, axis=0, return_inverse=True)
    return uniq, np.asarray(inverse).reshape(-1)


class Drill:
    """Parents and children of vertices in one store, with small caches.

    One instance per opened store (``store.Handle``): its levels, link
    deltas and per-level readers are the handle's; safe to call from a
    worker thread (one call at a time).
    """

    def __init__(self, path: str | os.PathLike[str] | store.Handle) -> None:
        self.handle = store.handle(path)
        self.info = store.open_info(self.handle)
        self.path = self.info.path
        self.ndim = self.info.ndim
        self._deltas = {lv.index: set(store.link_deltas(self.handle, lv.index)) for lv in self.info.levels}
        self._owners: OrderedDict[int, dict] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def has_objects(self) -> bool:
        return self.info.kind not in store.POINT_KINDS

    def levels(self) -> list[int]:
        return [lv.index for lv in self.info.levels]

    def has_links(self, level: int, delta: int) -> bool:
        """Whether level ``level`` can be linked to ``level + delta`` (directly or by single steps)."""
        lo, hi = sorted((level, level + delta))
        return all(1 in self._deltas.get(f, ()) for f in range(lo, hi))

    def _reader(self, level: int) -> store.LevelReader:
        return store.reader_of(self.handle, level)

    # -- lookups
    def positions(self, level: int, keys: np.ndarray) -> np.ndarray:
        """Positions (store order) of keyed vertices, reading only their chunks (NaN for a key the level lacks)."""
        return self._reader(level).positions(_as_keys(keys, self.ndim))

    def locate(self, level: int, positions: np.ndarray, tolerance: float | None = None) -> np.ndarray:
        """Keys of the vertices of ``level`` nearest to ``positions`` (store order).

        Each position gets the nearest vertex (Euclidean distance) within
        ``tolerance``, default half the diagonal of the level's bin: the
        distance from a bin's centre to its corners, so a position near the
        middle of a metanode's bin finds that metanode.  A vertex's exact
        position finds that vertex.  Only the chunks that can hold a vertex
        that near are read: the position's own chunk first, then the others
        meeting the box around the nearest distance so far.  A position with no
        vertex within ``tolerance`` raises DrillError naming it and the tolerance.
        """
        positions = np.asarray(positions, dtype=np.float64).reshape(-1, self.ndim)
        lv = self.info.level(level)
        if tolerance is None:
            tol = 0.5 * float(np.linalg.norm(np.asarray(lv.bin_shape, dtype=np.float64)))
        else:
            tol = float(tolerance)
            if not tol >= 0:
                raise ValueError(f"tolerance must be a distance >= 0, got {tolerance!r}")
        chunk = np.asarray(lv.chunk_shape, dtype=np.float64)
        reader = self._reader(level)
        keys = np.full((len(positions), self.ndim + 1), -1, np.int64)
        best = np.full(len(positions), np.inf)
        own = np.floor(positions / chunk).astype(np.int64)
        self._nearest(reader, positions, [{tuple(c)} for c in own.tolist()], keys, best)
        # float32 rounding can put a vertex a hair outside its chunk: widen each box by that much
        slack = 1e-6 * (np.abs(positions) + chunk)
        radius = np.minimum(best, tol)[:, None] + slack
        lo, hi = np.floor((positions - radius) / chunk), np.floor((positions + radius) / chunk)  # +-inf stay floats
        more = np.flatnonzero(np.any((lo != own) | (hi != own), axis=1))
        if len(more):
            present = reader.chunks_present()
            wanted = []
            for i in more.tolist():
                meet = present[np.all((present >= lo[i]) & (present <= hi[i]), axis=1)]
                wanted.append({tuple(c) for c in meet.tolist()} - {tuple(own[i])})
            self._nearest(reader, positions[more], wanted, keys, best, rows=more)
        far = np.flatnonzero(best > tol)
        if len(far):
            i = int(far[0])
            nearest = f"the nearest is {best[i]:g} away" if np.isfinite(best[i]) else "none is nearer than that"
            others = f" (and {len(far) - 1} more positions)" if len(far) > 1 else ""
            raise DrillError(
                f"No vertex of level {level} within tolerance {tol:g} of position "
                f"{tuple(float(v) for v in np.round(positions[i], 3))}{others} in store '{self.path}' "
                f"({nearest}): pass a larger tolerance, or select points of a layer showing that level."
            )
        return keys

    @staticmethod
    def _nearest(
        reader: store.LevelReader,
        positions: np.ndarray,
        cells: list[set],
        keys: np.ndarray,
        best: np.ndarray,
        rows: np.ndarray | None = None,
    ) -> None:
        """Improve ``keys``/``best`` (at ``rows``, default all) with the nearest vertex in each position's ``cells``."""
        rows = np.arange(len(positions)) if rows is None else rows
        buffers = reader.vertex_chunks(set().union(*cells))
        for p, wanted, r in zip(positions, cells, rows.tolist(), strict=True):
            for cell in wanted:
                buf = buffers.get(tuple(int(v) for v in cell))
                if buf is None or not len(buf):
                    continue
                d = np.sqrt(((buf - p) ** 2).sum(1))
                j = int(np.argmin(d))
                if d[j] < best[r]:
                    best[r], keys[r] = d[j], (*cell, j)

    def parents(self, level: int, keys: np.ndarray, delta: int = 1, *, objects: bool = False) -> Vertices:
        """The metanodes at ``level + delta`` that the keyed vertices of ``level`` belong to."""
        with self._lock:
            return self._unique_step(level, _as_keys(keys, self.ndim), int(delta), objects)

    def children(self, level: int, keys: np.ndarray, delta: int = 1, *, objects: bool = False) -> Vertices:
        """The vertices at ``level - delta`` that the keyed metanodes of ``level`` stand for."""
        with self._lock:
            return self._unique_step(level, _as_keys(keys, self.ndim), -int(delta), objects)

    # -- internals
    def _unique_step(self, level: int, keys: np.ndarray, delta: int, objects: bool) -> Vertices:
        """``_step`` on the distinct keys; pairs name every query row, repeated keys included."""
        uniq, which = _unique_rows(keys)
        found = self._step(level, uniq, delta, objects)
        found.pairs = _join(np.column_stack([np.arange(len(keys)), which]), found.pairs)
        return found

    def _step(self, level: int, keys: np.ndarray, delta: int, objects: bool) -> Vertices:
        if delta == 0:
            raise DrillError("delta must be a whole number of levels, 1 or more: 0 would stay on the same level.")
        target = level + delta
        if target not in self._deltas:
            raise DrillError(
                f"Store '{self.path}' has no level {target}; its levels are {self.levels()}."
                if target >= 0
                else f"Level {level} has no finer level {target}."
            )
        if delta in self._deltas[level]:
            found = self._direct(level, keys, delta)
        elif delta < 0 and -delta in self._deltas[target]:
            found = self._implicit_children(level, keys, -delta)
        elif abs(delta) > 1 and self.has_links(level, delta):
            step = 1 if delta > 0 else -1
            found = self._compose(level, keys, [step] * abs(delta))
        else:
            raise DrillError(no_links_message(self.path, min(level, target), abs(delta)))
        if objects and self.has_objects:
            found.objects = self._objects_of(found.level, found.keys)
        return found

    def _compose(self, level: int, keys: np.ndarray, steps: list[int]) -> Vertices:
        pairs = np.column_stack([np.arange(len(keys)), np.arange(len(keys))])
        current = Vertices(level, keys, np.zeros((len(keys), self.ndim)), pairs)
        for step in steps:
            nxt = self._step(current.level, current.keys, step, False)
            nxt.pairs = _join(current.pairs, nxt.pairs)
            current = nxt
        return current

    def _direct(self, level: int, keys: np.ndarray, delta: int) -> Vertices:
        """Follow ``links/<delta>`` stored at ``level`` (cells are the query's own chunks)."""
        cells = {tuple(c) for c in keys[:, :-1].tolist()}
        chunks, rows = self._reader(level).link_cells(delta, cells, check=True)
        links = (f"{level}/links/{delta:+d}", max(level, level + delta))
        return self._gather(level + delta, keys, chunks, rows, src=0, links=links)

    def _implicit_children(self, level: int, keys: np.ndarray, delta: int) -> Vertices:
        """Children through ``links/+delta`` at the finer level: only its chunks inside the parents' bins."""
        fine = level - delta
        pos = self.positions(level, keys)
        bin_shape = np.asarray(self.info.level(level).bin_shape, dtype=np.float64)
        # a non-nested bin of an intermediate level can straddle the parent's bin border
        slack = sum(np.asarray(self.info.level(m).bin_shape, np.float64) for m in range(fine + 1, level))
        lo = np.floor(pos / bin_shape) * bin_shape - slack
        hi = lo + bin_shape + 2 * slack
        chunk_shape = np.asarray(self.info.level(fine).chunk_shape, dtype=np.float64)
        present = self._reader(fine).chunks_present()
        c_lo, c_hi = present * chunk_shape, (present + 1) * chunk_shape
        meet = np.zeros(len(present), bool)
        for a, b in zip(lo, hi, strict=True):
            meet |= np.all((c_hi > a) & (c_lo < b), axis=1)
        cells = {tuple(c) for c in present[meet].tolist()}
        chunks, rows = self._reader(fine).link_cells(delta, cells, check=True)
        return self._gather(fine, keys, chunks, rows, src=1, links=(f"{fine}/links/{delta:+d}", level))

    def _gather(
        self, out_level: int, keys: np.ndarray, chunks: np.ndarray, rows: np.ndarray, src: int, links: tuple[str, int]
    ) -> Vertices:
        """Records whose endpoint ``src`` is a query key -> the other endpoints, unique, with positions.

        The other endpoints are checked against their chunks as these are
        read (``LevelReader.positions``): links that name a vertex the level
        lacks are a StoreError naming ``links``, never a NaN position.
        """
        ends = [
            np.column_stack([chunks[:, e, :], rows[:, e]]) if len(rows) else np.zeros((0, self.ndim + 1), np.int64)
            for e in (0, 1)
        ]
        query = _index_of(ends[src], keys)
        hit = query >= 0
        other = ends[1 - src][hit]
        uniq, which = _unique_rows(other)
        pairs = (
            np.unique(np.column_stack([query[hit], which]), axis=0).reshape(-1, 2)
            if len(which)
            else np.zeros((0, 2), np.int64)
        )
        uniq = uniq.reshape(-1, self.ndim + 1)
        return Vertices(out_level, uniq, self._reader(out_level).positions(uniq, named_by=links), pairs)

    def _objects_of(self, level: int, keys: np.ndarray) -> np.ndarray:
        owners = self._owners.get(level)
        if owners is None:
            owners = store.fragment_owners(self.handle, level)
            self._owners[level] = owners
            while len(self._owners) > 4:
                self._owners.popitem(last=False)
        per_chunk = store.vertex_owners(self.handle, level, {tuple(c) for c in keys[:, :-1].tolist()}, owners)
        out = np.full(len(keys), -1, np.int64)
        for i, k in enumerate(keys.tolist()):
            rows = per_chunk.get(tuple(k[:-1]))
            if rows is not None and 0 <= k[-1] < len(rows):
                out[i] = rows[k[-1]]
        return out


def _join(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairs (q, m) joined with pairs (m, n) into unique pairs (q, n)."""
    b = b[np.argsort(b[:, 0], kind="stable")]
    lo = np.searchsorted(b[:, 0], a[:, 1], "left")
    n = np.searchsorted(b[:, 0], a[:, 1], "right") - lo
    if not n.sum():
        return np.zeros((0, 2), np.int64)
    idx = np.repeat(lo - np.cumsum(np.r_[0, n[:-1]]), n) + np.arange(n.sum())
    return np.unique(np.column_stack([np.repeat(a[:, 0], n), b[idx, 1]]), axis=0).astype(np.int64)


_drills: OrderedDict[str, Drill] = OrderedDict()
_drills_lock = threading.Lock()


def drill_for(path: str | os.PathLike[str] | store.Handle) -> Drill:
    """A cached ``Drill`` for ``path``, renewed with the store's handle (when its levels change)."""
    h = store.handle(path)
    with _drills_lock:
        d = _drills.get(h.address)
    if d is None or d.handle is not h:
        d = Drill(h)
        with _drills_lock:
            _drills[h.address] = d
            _drills.move_to_end(h.address)
            while len(_drills) > 8:
                _drills.popitem(last=False)
    return d


def parents(path: str | os.PathLike[str], level: int, keys: np.ndarray, delta: int = 1) -> Vertices:
    """The metanodes at ``level + delta`` of the keyed vertices of ``level`` (see ``Drill.parents``).

    Parameters
    ----------
    path : str or os.PathLike
        The store.
    level : int
        The level the keyed vertices belong to.
    keys : array_like of int, shape (N, D + 1)
        One vertex per row: its chunk's grid coordinates, then its row in
        that chunk (``Drill.locate`` or a previous result's ``keys``).
    delta : int, optional
        How many levels up to go (default 1); direct ``+delta`` links are
        used when stored, else single steps are composed.

    Returns
    -------
    Vertices
        The distinct parents at ``level + delta``: their ``keys``,
        ``positions`` (store axis order), ``pairs`` (query row, result row)
        for every link, and ``objects`` (owning object ids; None for point clouds).

    Raises
    ------
    DrillError
        A key of the wrong shape, a level the store lacks, or a store with
        no cross-level links; the message says what to do.
    """
    return drill_for(path).parents(level, keys, delta, objects=True)


def children(path: str | os.PathLike[str], level: int, keys: np.ndarray, delta: int = 1) -> Vertices:
    """The vertices at ``level - delta`` of the keyed metanodes of ``level`` (see ``Drill.children``).

    Parameters
    ----------
    path : str or os.PathLike
        The store.
    level : int
        The level the keyed metanodes belong to.
    keys : array_like of int, shape (N, D + 1)
        One metanode per row: its chunk's grid coordinates, then its row in that chunk.
    delta : int, optional
        How many levels down to go (default 1; ``level`` reaches level 0).

    Returns
    -------
    Vertices
        The distinct children at ``level - delta``, with ``keys``,
        ``positions``, ``pairs`` (query row, result row) and ``objects``.

    Raises
    ------
    DrillError
        A key of the wrong shape, a level the store lacks, or a store with
        no cross-level links; the message says what to do.
    """
    return drill_for(path).children(level, keys, delta, objects=True)


# ---------------------------------------------------------------- the breadcrumb of a drilling session


@dataclass(eq=False)  # compared by identity: its keys are an array; ``_same`` says whether two stops match
class Step:
    """One stop on the breadcrumb: a level and the keys of the vertices highlighted there."""

    level: int
    keys: np.ndarray

    def label(self) -> str:
        """``L<level> (<vertices>)``, the stop as the breadcrumb writes it."""
        return f"L{self.level} ({len(self.keys):,})"


def _same(a: Step, b: Step) -> bool:
    """Same level and the same set of vertices."""
    if a.level != b.level or a.keys.shape != b.keys.shape:
        return False
    return bool(np.array_equal(np.unique(a.keys, axis=0), np.unique(b.keys, axis=0)))


@evented
@dataclass
class Breadcrumb:
    """The levels a drilling session went through in one store, as evented fields.

    ``steps`` is replaced (never changed in place) at every change, so
    ``events.steps`` fires once per change; ``store_path`` is set before it.
    A view shows ``text()`` on ``events.steps``.
    """

    store_path: str | None = None
    steps: tuple[Step, ...] = ()

    def record(self, path: str, start: Step, found: Step, *, chained: bool) -> None:
        """A drill step from ``start`` (its query) to ``found`` (its result) in the store at ``path``.

        A step not chained from the last result, or in another store,
        starts a new trail at ``start``; a step back to the stop before the
        last one pops the last one (back where we came from); any other
        step appends ``found``.
        """
        steps = list(self.steps)
        if not chained or not steps or self.store_path != path:
            steps = [start]
        if len(steps) >= 2 and _same(steps[-2], found):
            steps.pop()
        else:
            steps.append(found)
        self.store_path = path
        self.steps = tuple(steps)

    def clear(self) -> None:
        """No trail (and no store)."""
        self.store_path = None
        self.steps = ()

    def text(self) -> str:
        """The trail as one line, e.g. ``L3 (1) → L2 (8) → L1 (24)``; empty when there is none."""
        return " → ".join(s.label() for s in self.steps)
