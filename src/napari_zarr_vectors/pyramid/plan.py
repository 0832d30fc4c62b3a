"""Validation before anything is written: ``plan_build`` turns a request into a ``BuildPlan``.

Every argument, the store (local, writable, its levels) and the engine
it resolves to are checked here, and a ``PyramidError`` names what to
change; the builder then only carries the plan out.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import store
from .options import AGG_MODES, COUNT_ATTRIBUTE, CROSS_OBJECT, ENGINES, LINK_STORAGES, BuildOptions, PyramidError
from .sparsity import available_strategies

ENGINE_KINDS = store.POINT_KINDS + store.POLYLINE_KINDS
#: The most ``chunk_scale="auto"`` grows a level's chunks by (a larger coarsen factor still coarsens).
MAX_AUTO_CHUNK_SCALE = 1024


def available_methods() -> list[str]:
    """Coarsening methods: upstream's (per_object and any registered) plus ours, cross_object_metanode."""
    methods = list(store.coarsen_methods())
    return methods + ([CROSS_OBJECT] if CROSS_OBJECT not in methods else [])


def normalize_factors(factors: Any) -> list[tuple[float, float]]:
    """``[(coarsen, sparsity), ...]`` as floats, or a PyramidError saying which entry is wrong."""
    example = "e.g. [(2, 1), (2, 4)] for two levels, or [(2, 1)] for one"
    if factors is None or isinstance(factors, str | bytes | Mapping) or not isinstance(factors, Sequence | np.ndarray):
        raise PyramidError(
            f"factors must be a list of (coarsen, sparsity) pairs, one per new level ({example}); "
            f"got {type(factors).__name__} {factors!r}."
        )
    if not len(factors):
        raise PyramidError(f"factors must be a non-empty list of (coarsen, sparsity) pairs ({example}).")
    out = []
    for i, pair in enumerate(factors):
        try:
            coarsen, sparsity = (float(v) for v in pair)
        except (TypeError, ValueError):
            raise PyramidError(
                f"factors[{i}] = {pair!r} is not a (coarsen, sparsity) pair of numbers, e.g. (2, 1)."
            ) from None
        if not (math.isfinite(coarsen) and coarsen >= 1):
            raise PyramidError(f"factors[{i}]: coarsen factor {coarsen} must be a number >= 1 (2 halves each axis).")
        if not (math.isfinite(sparsity) and sparsity >= 1):
            raise PyramidError(f"factors[{i}]: sparsity factor {sparsity} must be a number >= 1 (4 keeps 1 in 4).")
        out.append((coarsen, sparsity))
    return out


#: The one aggregation a text (categorical) attribute takes: its most frequent value.
TEXT_MODE = "mode"


def _attribute_modes(
    names: Sequence[str], agg_mode: str, overrides: Mapping[str, str] | None, text: Sequence[str] = ()
) -> dict[str, str]:
    """Each attribute's aggregation: its override, else ``agg_mode``; text attributes always ``mode``."""
    if agg_mode not in AGG_MODES:
        raise PyramidError(f"agg_mode {agg_mode!r} is unknown; choose one of {', '.join(AGG_MODES)}.")
    overrides = dict(overrides or {})
    for name, mode in overrides.items():
        if mode not in AGG_MODES:
            raise PyramidError(f"agg_overrides[{name!r}] = {mode!r} is unknown; choose one of {', '.join(AGG_MODES)}.")
        if name not in names:
            raise PyramidError(
                f"agg_overrides names {name!r}, which is not a level-0 vertex attribute; "
                f"the store has: {', '.join(names) or 'none'}."
            )
        if name in text and mode != TEXT_MODE:
            raise PyramidError(
                f"agg_overrides[{name!r}] = {mode!r}: {name!r} is a text attribute, and only 'mode' (its most "
                f"frequent value) applies to text. Ask for 'mode', or leave {name!r} out of agg_overrides "
                "(text attributes take 'mode' whatever agg_mode is)."
            )
    # agg_mode is the default for numbers: a text attribute takes mode unless asked otherwise (refused above)
    return {name: overrides.get(name, TEXT_MODE if name in text else agg_mode) for name in names}


@dataclass(frozen=True)
class BuildPlan:
    """A validated build request."""

    path: str
    info: store.StoreInfo
    factors: list[tuple[float, float]]
    modes: dict[str, str]
    method: str
    strategy: str
    seed: int | None
    depth: int
    storage: str
    first_source: int
    engine: str = "vectorized"
    chunk_scale: tuple[int, ...] = ()
    #: Text attributes at level 0 and their categories table (coarse levels keep the same table).
    text: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def plan_build(
    path: str | os.PathLike[str],
    factors: Any,
    options: BuildOptions | None = None,
    *,
    source_level: int = 0,
    **keywords: Any,
) -> BuildPlan:
    """Check everything before anything is written; raise PyramidError naming what to change.

    ``options`` (a ``BuildOptions``; its defaults when None) with any
    ``keywords``, which are ``BuildOptions`` field names, overriding it;
    ``source_level`` is the level the first new level coarsens.
    """
    opts = BuildOptions.of(options, **keywords)
    agg_mode, agg_overrides, method = opts.agg_mode, opts.agg_overrides, opts.method
    sparsity_strategy, sparsity_seed = opts.sparsity_strategy, opts.sparsity_seed
    cross_level_depth, cross_level_storage = opts.cross_level_depth, opts.cross_level_storage
    engine, chunk_scale = opts.engine, opts.chunk_scale
    store.refuse_remote(path, "build a pyramid")
    h = store.handle(path)
    info = store.open_info(h)
    norm = normalize_factors(factors)
    if engine not in ENGINES:
        raise PyramidError(f"engine {engine!r} is unknown; choose one of {', '.join(ENGINES)}.")
    if engine == "auto":
        engine = "vectorized" if info.kind in ENGINE_KINDS else "upstream"
    if engine == "vectorized" and info.kind not in ENGINE_KINDS:
        raise PyramidError(
            f"The vectorized engine builds point clouds, polylines and streamlines; this store holds "
            f"{info.kind}s. Use engine='upstream' (or 'auto')."
        )
    if method == CROSS_OBJECT and engine != "vectorized":
        raise PyramidError(
            f"method {CROSS_OBJECT!r} is built by the vectorized engine, for point clouds, polylines and "
            f"streamlines; this store holds {info.kind}s and engine is {engine!r}. Use method='per_object'."
        )
    if chunk_scale is None:  # the vectorized engine's default: fewer, fuller coarse chunks
        chunk_scale = "auto" if engine == "vectorized" else 1
    scales = _chunk_scales(chunk_scale, norm)
    if info.kind in store.POINT_KINDS and any(s != 1 for _, s in norm):
        raise PyramidError(
            "A point cloud has no objects to thin: set every sparsity factor to 1 "
            "(coarsening alone reduces a point cloud)."
        )
    names = [n for n in store.vertex_attribute_names(h, 0) if n != COUNT_ATTRIBUTE]
    text = store.text_attributes(h, 0)
    _refuse_text_without_table(info, text, store.raw_text_attributes(h, 0))
    modes = _attribute_modes(names, agg_mode, agg_overrides, tuple(text))
    methods = available_methods()
    if method not in methods:
        raise PyramidError(f"method {method!r} is unknown; this installation offers: {', '.join(methods)}.")
    strategies = available_strategies()
    if sparsity_strategy not in strategies:
        raise PyramidError(
            f"sparsity_strategy {sparsity_strategy!r} is unknown; choose one of {', '.join(strategies)}."
        )
    if sparsity_seed is not None and not isinstance(sparsity_seed, int | np.integer):
        raise PyramidError(f"sparsity_seed must be a whole number or None, got {sparsity_seed!r}.")
    if not isinstance(cross_level_depth, int | np.integer) or cross_level_depth < -1:
        raise PyramidError(
            "cross_level_depth must be -1 (all levels), 0 (none) or a positive whole number, "
            f"got {cross_level_depth!r}."
        )
    if cross_level_storage not in LINK_STORAGES:
        raise PyramidError(
            f"cross_level_storage {cross_level_storage!r} is unknown; choose one of {', '.join(LINK_STORAGES)}."
        )
    _refuse_redundant_levels(info, norm, source_level)
    levels = store.list_levels(h)
    if source_level != levels[-1]:
        raise PyramidError(
            f"Store '{info.path}' already has levels {levels}; a build adds levels after level "
            f"{levels[-1]}. Remove levels above {source_level} first (remove_resolution_level), "
            f"or build from level {levels[-1]}."
        )
    if not os.access(info.path, os.W_OK):
        raise PyramidError(f"Store '{info.path}' is not writable; copy it somewhere you can write, then build.")
    return BuildPlan(
        path=info.path,
        info=info,
        factors=norm,
        modes=modes,
        method=method,
        strategy=sparsity_strategy,
        seed=None if sparsity_seed is None else int(sparsity_seed),
        depth=int(cross_level_depth),
        storage=cross_level_storage,
        first_source=source_level,
        engine=engine,
        chunk_scale=scales,
        text={n: text[n] for n in names if n in text},
    )


def _refuse_text_without_table(info: store.StoreInfo, text: Mapping[str, tuple[str, ...]], raw: Sequence[str]) -> None:
    """A PyramidError for a text vertex attribute a build cannot keep as text at every level.

    zarr-vectors dictionary-encodes text (codes plus a categories table)
    and decodes it on reading only for point clouds; text stored as plain
    strings, or in another kind of store, would come back as codes or not at all.
    """
    names = [n for n in raw if n != COUNT_ATTRIBUTE]
    if info.kind not in store.POINT_KINDS:
        names += [n for n in text if n not in names]
    if not names:
        return
    where = "a point cloud store" if info.kind in store.POINT_KINDS else f"a {info.kind} store"
    why = (
        "stored as plain strings, not dictionary-encoded"
        if info.kind in store.POINT_KINDS
        else "text vertex attributes are kept on coarse levels for point clouds only (zarr-vectors decodes text "
        "tables there alone)"
    )
    listed = ", ".join(repr(n) for n in names)
    raise PyramidError(
        f"Store '{info.path}' has text vertex attribute{'s' if len(names) > 1 else ''} {listed} in {where}: {why}. "
        "Store the text as integer labels (one number per value) and build again; nothing was changed."
    )


def _refuse_redundant_levels(info: store.StoreInfo, factors: list[tuple[float, float]], source_level: int) -> None:
    """A PyramidError when a coarsening level follows one whose bins already span the store's whole extent.

    Past that level every bin holds the data's whole width along every
    axis, so coarsening further only repeats it (and 200 requested levels
    would grow bins and chunks beyond what the format's integers hold).
    """
    lo, hi = info.bounds
    extent = np.asarray(hi, float) - np.asarray(lo, float)
    try:
        bins = np.asarray(info.level(source_level).bin_shape, float)
    except store.StoreError:
        return  # plan_build names a missing source level itself
    for i, (coarsen, _) in enumerate(factors):
        if coarsen > 1 and np.all(bins >= extent):
            level = source_level + i
            shown = " x ".join(f"{v:g}" for v in bins)
            across = " x ".join(f"{v:.4g}" for v in extent)
            raise PyramidError(
                f"factors asks for {len(factors)} new levels, but level {level}'s bins ({shown}) already span the "
                f"store's whole extent ({across}), so the levels after it would only repeat it. Ask for at most "
                f"{i} coarsening levels here (suggest_factors proposes how many)."
                if i
                else f"Level {level}'s bins ({shown}) already span the store's whole extent ({across}): "
                "coarsening it further would only repeat it. Keep coarsen factors at 1 (thinning only) or build "
                "from a finer level."
            )
        bins = bins * coarsen


def _chunk_scales(chunk_scale: Any, factors: list[tuple[float, float]]) -> tuple[int, ...]:
    """Per new level, the whole number its chunks grow by over the level below.

    ``"auto"`` grows them by the coarsen factor (rounded down), so a chunk
    keeps about as many bins at every level -- the vector counterpart of
    an image pyramid's fixed tile size in pixels: fewer, fuller chunks
    at coarse levels. ``1`` keeps level 0's grid on every level, as
    upstream does.
    """
    if chunk_scale == "auto":
        return tuple(min(MAX_AUTO_CHUNK_SCALE, max(1, int(math.floor(c + 1e-9)))) for c, _ in factors)
    values = [chunk_scale] * len(factors) if isinstance(chunk_scale, int | np.integer) else list(chunk_scale)
    if len(values) != len(factors) or not all(isinstance(v, int | np.integer) and v >= 1 for v in values):
        raise PyramidError(
            f"chunk_scale must be 'auto', a whole number >= 1, or one such number per level "
            f"({len(factors)}), got {chunk_scale!r}."
        )
    return tuple(int(v) for v in values)
