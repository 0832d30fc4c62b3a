"""Carrying out a plan, all or nothing: ``build_pyramid``, ``coarsen_level`` and ``run``, with both engines.

The vectorized engine (``_vectorized``) reads the source level in slabs
of ``SLAB_VERTICES`` rows (on a dask client when given), coarsens in
whole-array numpy (``engine``) and writes each level, its aggregated
attributes and its links through ``store``. The upstream path
(``_coarsen_all``) calls zarr-vectors' coarsener level by level while
``_Aggregator`` writes the aggregated attributes beside it. Both run in
a ``store.write_session``: a cancel, an error or a kill leaves the store
as it was.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from .. import aggregate, engine, store
from .levels import pyramid_summary
from .options import (
    COUNT_ATTRIBUTE,
    CROSS_OBJECT,
    BuildCancelled,
    BuildOptions,
    BuildProgress,
    CancelFn,
    ProgressFn,
    PyramidError,
)
from .plan import BuildPlan, plan_build
from .sparsity import _context, _our_strategy_name, select_survivors

SOURCE_OBJECT_ATTRIBUTE = "source_object_id"
SLAB_VERTICES = 2_000_000


def build_pyramid(
    path: str | os.PathLike[str],
    factors: Any = ((2.0, 1.0), (2.0, 1.0)),
    options: BuildOptions | None = None,
    *,
    client: Any = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    **keywords: Any,
) -> dict[str, Any]:
    """Build coarse levels after level 0 with aggregated attributes; returns ``pyramid_summary``.

    Everything is checked before anything is written. On cancel or any
    error, every level this call created is removed and the store is as it was.

    Parameters
    ----------
    path : str or os.PathLike
        A store with level 0 only (extend a pyramid with ``coarsen_level``).
    factors : sequence of (float, float)
        One ``(coarsen, sparsity)`` pair per new level, each a ratio to the
        level below: coarsen 2 doubles the bin along every axis; sparsity 4
        keeps one object in four (of those that survived the level below;
        point clouds must use 1). E.g. ``[(2, 1), (2, 4)]``.
    options : BuildOptions, optional
        How to coarsen, thin, aggregate and link (``BuildOptions`` documents
        every field and its default); None: the defaults.
    client : distributed.Client, optional
        A dask client that reads and bins the level-0 slabs (vectorized engine).
    progress : callable, optional
        Called with a ``BuildProgress`` after every step.
    cancel : callable, optional
        Called between steps; returning True stops the build and restores the store.
    **keywords
        ``BuildOptions`` fields (``agg_mode``, ``agg_overrides``, ``method``,
        ``sparsity_strategy``, ``sparsity_seed``, ``cross_level_depth``,
        ``cross_level_storage``, ``engine``, ``chunk_scale``) that replace
        those of ``options``, e.g. ``agg_mode="mean", agg_overrides={"label": "mode"}``.

    Returns
    -------
    dict
        ``pyramid_summary(path)`` of the built store: per level its vertices,
        objects, bin shape, bytes and ratio to level 0, and the overhead.

    Raises
    ------
    PyramidError
        A bad argument (named, with what to change) or a failed build; a
        ``ValueError``. The store is unchanged.
    StoreError
        ``path`` is not a readable, writable Zarr Vectors store.
    BuildCancelled
        ``cancel()`` returned True; the store is unchanged.
    TypeError
        A keyword that is not a ``BuildOptions`` field (the message lists them).
    """
    plan = plan_build(path, factors, options, **keywords)
    run(plan, progress=progress, cancel=cancel, client=client)
    return pyramid_summary(plan.path)


def coarsen_level(
    path: str | os.PathLike[str],
    source_level: int,
    target_level: int,
    *,
    coarsen_factor: float = 2.0,
    sparsity_factor: float = 1.0,
    options: BuildOptions | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    **keywords: Any,
) -> dict[str, Any]:
    """Add one level after the coarsest, with aggregated attributes and +-1 links.

    Parameters
    ----------
    path : str or os.PathLike
        The store.
    source_level : int
        The store's coarsest level, the one coarsened.
    target_level : int
        The new level: ``source_level + 1``.
    coarsen_factor : float, optional
        Bin growth over ``source_level`` along every axis (default 2).
    sparsity_factor : float, optional
        Keep one object in this many (default 1: all; point clouds must use 1).
    options : BuildOptions, optional
        As for ``build_pyramid``; vertex attributes are aggregated from level 0.
        The +-1 links between the two levels are written unless
        ``cross_level_storage`` is ``"none"`` or ``cross_level_depth`` is 0.
    progress, cancel : callable, optional
        As for ``build_pyramid``.
    **keywords
        ``BuildOptions`` fields that replace those of ``options``, as for ``build_pyramid``.

    Returns
    -------
    dict
        ``pyramid_summary(path)`` after the level is added.

    Raises
    ------
    PyramidError
        A bad argument or a failed build (the store is then unchanged).
    StoreError
        ``path`` is not a readable, writable Zarr Vectors store.
    BuildCancelled
        ``cancel()`` returned True; the store is unchanged.
    TypeError
        A keyword that is not a ``BuildOptions`` field (the message lists them).
    """
    opts = BuildOptions.of(options, **keywords)
    if target_level != source_level + 1:
        raise PyramidError(f"target_level must be source_level + 1 ({source_level + 1}), got {target_level}.")
    if isinstance(opts.cross_level_depth, int | np.integer) and opts.cross_level_depth >= -1:  # else plan_build says
        linked = opts.cross_level_storage != "none" and opts.cross_level_depth != 0
        opts = replace(opts, cross_level_depth=1 if linked else 0)  # one new level: only its +-1 links exist
    plan = plan_build(path, [(coarsen_factor, sparsity_factor)], opts, source_level=source_level)
    run(plan, progress=progress, cancel=cancel)
    return pyramid_summary(plan.path)


def run(
    plan: BuildPlan, *, progress: ProgressFn | None = None, cancel: CancelFn | None = None, client: Any = None
) -> None:
    """Carry out a validated plan, all or nothing."""
    n = len(plan.factors)
    attrs = list(plan.modes)
    total = n + (n if attrs else 0) + 1
    step = 0

    def report(level: int, phase: str, message: str) -> None:
        nonlocal step
        step += 1
        if progress is not None:
            progress(BuildProgress(step=step, total=total, level=level, phase=phase, message=message))

    def check_cancel() -> None:
        if cancel is not None and cancel():
            raise BuildCancelled(f"Build of '{plan.path}' cancelled; the store is as it was.")

    aggregator: _Aggregator | None = None
    try:
        with store.write_session(plan.path, "build"):  # published last; undone on any failure, kill -9 included
            try:
                if plan.engine == "vectorized":
                    _vectorized(plan, report, check_cancel, client)
                else:
                    if attrs:
                        aggregator = _Aggregator(plan, report)
                    _coarsen_all(plan, report, check_cancel, aggregator)
                    if aggregator is not None:
                        aggregator.finish()
                    check_cancel()
                    _links(plan)
                report(plan.first_source + n, "links", "cross-level links written")
            except BaseException:
                if aggregator is not None:
                    aggregator.abandon()  # no write may still be running when the store is restored
                raise
    except (PyramidError, BuildCancelled, KeyboardInterrupt):
        raise
    except store.StoreBusy:
        raise
    except store.StoreError as exc:  # the store's own words say whether anything changed
        said = "Nothing was changed" in str(exc) or "undone" in str(exc)
        raise PyramidError(str(exc) if said else f"{exc} The build was undone; the store is unchanged.") from exc
    except Exception as exc:
        damage = _diagnose(plan)  # a level with chunks gone fails deep inside with a cryptic error
        if damage is not None:
            raise PyramidError(f"{damage} The build was undone; the store is unchanged.") from exc
        raise PyramidError(f"Building a pyramid for '{plan.path}' failed, the store is unchanged: {exc}") from exc


def _diagnose(plan: BuildPlan) -> str | None:
    """What is damaged in the levels a failed build read (chunks gone from disk), or None."""
    for level in sorted({0, plan.first_source}):
        try:
            store.check_level_chunks(plan.path, level)
        except store.StoreError as exc:
            return str(exc)
        except Exception:  # the diagnosis must never hide the build's own error
            return None
    return None


def _coarsen_all(plan: BuildPlan, report: Callable, check_cancel: Callable, aggregator: _Aggregator | None) -> None:
    emit = "explicit" if plan.storage == "explicit" else "implicit"  # +1 always: aggregation reads it
    has_objects = plan.info.kind not in store.POINT_KINDS
    strategy_name = "random"
    for i, (coarsen, sparsity) in enumerate(plan.factors):
        check_cancel()
        source = plan.first_source + i
        if has_objects and sparsity > 1:
            _, alive, points = store.object_slots(plan.path, source)
            _context.update(
                alive=np.flatnonzero(alive),
                points=points,
                sparsity=sparsity,
                strategy=plan.strategy,
                seed=None if plan.seed is None else [plan.seed, source],
            )
            strategy_name = _our_strategy_name()
        store.coarsen_one_level(
            plan.path,
            source,
            source + 1,
            coarsen_factor=coarsen,
            sparsity_factor=sparsity,
            method=plan.method,
            sparsity_strategy=strategy_name,
            sparsity_seed=plan.seed,
            emit_links=emit,
            chunk_scale=plan.chunk_scale[i],
        )
        _context.clear()
        report(source + 1, "coarsen", f"level {source + 1}: coarsened x{coarsen:g}, thinned 1/{sparsity:g}")
        if aggregator is not None:
            aggregator.level_ready(source)


def _aggregate_columns(
    modes: Mapping[str, str],
    to_level: np.ndarray,
    values: Mapping[str, np.ndarray],
    n_coarse: int,
    text: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, np.ndarray]:
    """Each level-0 attribute reduced onto a level's rows (plus ``count`` when some mode is count).

    A text attribute's values are its codes into ``text[name]`` (``_as_codes``);
    it is reduced to its most frequent code (-1 where a vertex has no text).
    """
    text = text or {}
    columns = {
        name: aggregate.mode_codes(to_level, values[name], n_coarse)
        if name in text
        else aggregate.reduce(to_level, values[name], n_coarse, mode)
        for name, mode in modes.items()
    }
    if "count" in modes.values():
        columns[COUNT_ATTRIBUTE] = aggregate.reduce(to_level, np.zeros(len(to_level)), n_coarse, "count")
    return columns


def _as_codes(values: dict[str, np.ndarray], text: Mapping[str, Sequence[str]]) -> dict[str, np.ndarray]:
    """Text attributes as int64 codes into their level-0 table (-1: missing): a few bytes a row, not a string."""
    return {name: store.text_codes(v, text[name]) if name in text else v for name, v in values.items()}


def _slab_task(
    path: str,
    level: int,
    keys: list[tuple[int, ...]],
    counts: list[int],
    weights: np.ndarray | None,
    grid: engine.BinGrid,
    attributes: Sequence[str],
    whole: bool = False,
    text: Mapping[str, Sequence[str]] | None = None,
) -> tuple[engine.Partial, dict[str, np.ndarray]]:
    """One slab of a stored level: read its chunks, bin them (runs on a dask worker when a client is given)."""
    positions, values = store.read_row_batch(path, level, keys, counts, attributes, whole=whole)
    return engine.slab_partial(positions, weights, grid), _as_codes(values, text or {})


def _stored_partials(
    plan: BuildPlan,
    level: int,
    chunks: tuple[np.ndarray, np.ndarray],
    weights: np.ndarray | None,
    grid: engine.BinGrid,
    attributes: list[str],
    client: Any,
) -> tuple[list[engine.Partial], dict[str, np.ndarray]]:
    """Every slab of a stored level binned, in row order, and (when asked) its attribute columns."""
    batches = store.group_batches(*chunks, SLAB_VERTICES)
    starts = np.cumsum([0] + [sum(c) for _, c in batches])
    args = [
        (
            plan.path,
            level,
            keys,
            counts,
            None if weights is None else weights[starts[j] : starts[j + 1]],
            grid,
            attributes,
            len(batches) == 1,  # the whole level: one read
            dict(plan.text),
        )
        for j, (keys, counts) in enumerate(batches)
    ]
    if client is not None:
        futures = [client.submit(_slab_task, *a, pure=False) for a in args]
        results = client.gather(futures)
    else:
        results = [_slab_task(*a) for a in args]
    values = {n: np.concatenate([r[1][n] for r in results]) if results else np.zeros(0) for n in attributes}
    return [r[0] for r in results], values


def _stored_representatives(
    plan: BuildPlan, level: int, offsets: np.ndarray, rows: np.ndarray, ndim: int
) -> np.ndarray:
    """Mean position of each object's rows, summed slab by slab from the stored level."""
    n = len(offsets) - 1
    obj = np.repeat(np.arange(n), np.diff(offsets))
    order = np.argsort(rows, kind="stable")
    srows, sobj = rows[order], obj[order]
    sums = np.zeros((n, ndim))
    start = 0
    for positions, _ in store.iter_rows(plan.path, level, batch_vertices=SLAB_VERTICES):
        stop = start + len(positions)
        a, b = np.searchsorted(srows, [start, stop])
        for axis in range(ndim):
            sums[:, axis] += np.bincount(sobj[a:b], weights=positions[srows[a:b] - start, axis], minlength=n)
        start = stop
    counts = np.bincount(obj, minlength=n)[:, None]
    with np.errstate(invalid="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _vectorized(plan: BuildPlan, report: Callable, check_cancel: Callable, client: Any) -> None:
    """Build every new level in whole-array numpy (``engine``), writing each through ``store`` in batches.

    Level ``first_source`` is read slab by slab; the levels built here
    stay in memory for the next step (each is ~coarsen^D times smaller).
    Every new level gets its aggregated vertex attributes from the
    level-0 values through the in-memory parent maps, and the links the
    plan asks for are written from the same maps.
    """
    path, first = plan.path, plan.first_source
    layout = store.level_layout(path, first)
    if len(layout.chunk_counts) and not layout.chunk_counts.all():  # a listed chunk with no vertices: gone
        store.check_level_chunks(path, first)
    ndim, attrs = layout.ndim, list(plan.modes)
    chunks_of = {first: (layout.chunk_keys, np.r_[0, np.cumsum(layout.chunk_counts)].astype(np.int64))}
    n_src = int(layout.chunk_counts.sum())
    objects = store.level_object_rows(path, first, layout) if layout.has_objects else None
    if objects is not None and len(objects[0]) == 0:
        raise PyramidError(f"Store '{path}': level {first} has no objects to coarsen.")
    obj_attrs = {n: store.read_object_attribute_table(path, first, n) for n in layout.object_attributes}
    values: dict[str, np.ndarray] = {}
    to_level: np.ndarray | None = None  # level-0 row -> row at the source level (None: level 0 itself)
    if attrs and first > 0:
        values = _as_codes(store.read_rows(path, 0, attrs)[1], plan.text)
        to_level = aggregate.compose([store.parent_map(path, f) for f in range(first)])[-1]
    positions: np.ndarray | None = None  # the source level's vertices, once it is one built here
    bin_shape, chunk_shape = np.asarray(layout.bin_shape), np.asarray(layout.chunk_shape)
    parents: list[np.ndarray] = []
    for i, (coarsen, sparsity) in enumerate(plan.factors):
        check_cancel()
        source, target = first + i, first + i + 1
        weights = kept_mask = None
        if objects is not None:
            ids, offs, rows = objects
            kept_mask = np.ones(len(ids), bool)
            if sparsity > 1 and len(ids) > 1:
                reps = (
                    engine.representatives(offs, rows, positions)
                    if positions is not None
                    else _stored_representatives(plan, source, offs, rows, ndim)
                )
                alive = np.flatnonzero(np.diff(offs) > 0)
                kept = select_survivors(
                    plan.strategy,
                    alive,
                    reps[alive],
                    max(1, round(len(alive) / sparsity)),
                    seed=None if plan.seed is None else [plan.seed, source],
                    bin_shape=tuple(bin_shape),
                )
                kept_mask[:] = False
                kept_mask[kept] = True
            weights = engine.occurrences(offs, rows, np.flatnonzero(kept_mask), n_src)
        new_bin, new_chunk = bin_shape * coarsen, chunk_shape * plan.chunk_scale[i]
        grid = engine.BinGrid.covering(new_bin, chunks_of[source][0], chunk_shape)
        if positions is None:
            wanted = attrs if (attrs and source == 0) else []
            stored = (layout.chunk_keys, layout.chunk_counts)
            partials, got = _stored_partials(plan, source, stored, weights, grid, wanted, client)
            values.update(got)
        else:
            step = SLAB_VERTICES
            partials = [
                engine.slab_partial(positions[a : a + step], None if weights is None else weights[a : a + step], grid)
                for a in range(0, max(len(positions), 1), step)
            ]
        coarse = engine.merge(partials, ndim, new_chunk)
        del partials
        new = store.NewLevel(
            level=target,
            source_level=source,
            positions=coarse.positions,
            chunk_keys=coarse.chunk_keys,
            chunk_starts=coarse.chunk_starts,
            bin_shape=tuple(float(v) for v in new_bin),
            chunk_shape=tuple(float(v) for v in new_chunk),
            sparsity=sparsity,
            method=plan.method,
            one_fragment_per_vertex=objects is not None,
        )
        if objects is not None:
            objects, obj_attrs = _new_objects(plan, new, objects, kept_mask, coarse.parent, obj_attrs)
        store.write_new_level(path, new, layout)
        report(target, "coarsen", f"level {target}: coarsened x{coarsen:g}, thinned 1/{sparsity:g}")
        if attrs:  # level-0 rows -> this level's rows, only needed to aggregate
            check_cancel()
            to_level = coarse.parent if to_level is None else aggregate.compose([to_level, coarse.parent])[-1]
            columns = _aggregate_columns(plan.modes, to_level, values, len(coarse.positions), plan.text)
            store.write_vertex_attributes(path, target, columns, categories=plan.text)
            report(target, "aggregate", f"level {target}: " + ", ".join(f"{k} {m}" for k, m in plan.modes.items()))
        parents.append(coarse.parent)
        chunks_of[target] = (coarse.chunk_keys, coarse.chunk_starts)
        positions, n_src, bin_shape, chunk_shape = coarse.positions, len(coarse.positions), new_bin, new_chunk
    check_cancel()
    _engine_links(plan, parents, chunks_of)


def _new_objects(
    plan: BuildPlan,
    new: store.NewLevel,
    objects: tuple[np.ndarray, np.ndarray, np.ndarray],
    kept_mask: np.ndarray,
    parent: np.ndarray,
    obj_attrs: dict[str, np.ndarray],
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], dict[str, np.ndarray]]:
    """The coarse level's objects: kept ids and trajectories (per_object), or a fresh dense id space."""
    ids, offs, rows = objects
    t_offs, t_rows = engine.trajectories(offs, rows, kept_mask, parent)
    if plan.method == CROSS_OBJECT:
        live = np.diff(t_offs) > 0
        t_offs, t_rows = engine.compact(t_offs, t_rows, live)
        new_ids = np.arange(int(live.sum()), dtype=np.int64)
        attrs = {n: d[live[: len(d)]] for n, d in obj_attrs.items() if n != SOURCE_OBJECT_ATTRIBUTE}
        attrs[SOURCE_OBJECT_ATTRIBUTE] = ids[live]
        new.object_attributes = {n: (d, None) for n, d in attrs.items()}
        new.preserves_ids = False
    else:
        new_ids = ids
        keep = np.flatnonzero(kept_mask)
        attrs = {}
        for name, data in obj_attrs.items():
            out = np.zeros_like(data)
            k = keep[keep < len(data)]
            out[k] = data[k]
            attrs[name] = out
        new.object_attributes = {n: (d, kept_mask.astype(np.uint8)) for n, d in attrs.items()}
    new.object_ids, new.object_offsets, new.object_rows = new_ids, t_offs, t_rows
    return (new_ids, t_offs, t_rows), attrs


def _engine_links(plan: BuildPlan, parents: list[np.ndarray], chunks_of: dict) -> None:
    """The +-N links the plan asks for, from the in-memory parent maps (composed for N >= 2)."""
    first, last = plan.first_source, plan.first_source + len(parents)
    linked = plan.storage != "none" and plan.depth != 0
    if linked:
        max_delta = last if plan.depth == -1 else plan.depth
        for k, fine in enumerate(range(first, last)):
            composed = parents[k]
            for delta in range(1, max_delta + 1):
                if fine + delta > last:
                    break
                if delta > 1:
                    composed = aggregate.compose([composed, parents[k + delta - 1]])[-1]
                if not (composed >= 0).any():
                    break
                store.write_parent_links(
                    plan.path,
                    fine,
                    delta,
                    composed,
                    chunks_of[fine],
                    chunks_of[fine + delta],
                    mirror=plan.storage == "explicit",
                )
    store.stamp_link_settings(plan.path, plan.depth, plan.storage, linked=linked)


class _Aggregator:
    """Gives every new level every level-0 attribute, reduced over its level-0 descendants.

    A level is aggregated as soon as its parent map exists (right after it
    is coarsened) and its attribute cells are written on a background
    thread while upstream coarsens the next level: the writes are disk-bound,
    coarsening is CPU-bound, so they overlap. The writes touch only the new
    ``vertex_attributes`` arrays; the level's ``arrays_present`` is updated
    once at the end, when nothing else writes its metadata.
    """

    def __init__(self, plan: BuildPlan, report: Callable) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.plan, self.report = plan, report
        self.values = _as_codes(store.read_rows(plan.path, 0, list(plan.modes))[1], plan.text)
        self.to_level: np.ndarray | None = None  # level 0 row -> row at the level reached so far
        for fine in range(plan.first_source):  # a level added to an existing pyramid
            self._compose(fine)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nzv-attributes")
        self.pending: list[tuple[int, Any]] = []

    def _compose(self, fine: int) -> None:
        parent = store.parent_map(self.plan.path, fine)
        self.to_level = parent if self.to_level is None else aggregate.compose([self.to_level, parent])[-1]

    def level_ready(self, fine: int) -> None:
        """Level ``fine + 1`` was just written: reduce its attributes and queue the write."""
        self._compose(fine)
        n_coarse = store.level_rows(self.plan.path, fine + 1)
        to_level = self.to_level
        columns = _aggregate_columns(self.plan.modes, to_level, self.values, n_coarse, self.plan.text)
        future = self.pool.submit(
            store.write_vertex_attributes,
            self.plan.path,
            fine + 1,
            columns,
            register=False,
            categories=self.plan.text,
        )
        self.pending.append((fine + 1, future))
        self._drain(block=False)

    def _drain(self, *, block: bool) -> None:
        while self.pending and (block or self.pending[0][1].done()):
            level, future = self.pending.pop(0)
            future.result()  # re-raises a failed write here, in the building thread
            modes = ", ".join(f"{k} {m}" for k, m in self.plan.modes.items())
            self.report(level, "aggregate", f"level {level}: {modes}")

    def finish(self) -> None:
        self._drain(block=True)
        self.pool.shutdown()
        last = self.plan.first_source + len(self.plan.factors)
        for level in range(self.plan.first_source + 1, last + 1):
            store.register_level_arrays(self.plan.path, level)

    def abandon(self) -> None:
        """Wait for queued writes to stop (their errors no longer matter)."""
        for _, future in self.pending:
            future.cancel()
        self.pool.shutdown(wait=True)


def _links(plan: BuildPlan) -> None:
    """Leave on disk exactly the links asked for."""
    store.finalize_links(plan.path, plan.depth, plan.storage)
    if plan.storage == "none" or plan.depth == 0:
        last = plan.first_source + len(plan.factors)
        for level in range(plan.first_source, last + 1):
            for delta in store.link_deltas(plan.path, level):
                store.remove_link_family(plan.path, level, delta)
