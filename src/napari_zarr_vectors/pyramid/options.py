"""What a build is asked and what it reports: ``BuildOptions``, ``BuildProgress``, its errors and choices.

Shared by the planner, the builder, the Build dock and the command line.
Nothing here reads a store: the evented ``BuildOptions`` holds whatever a
user typed, and ``plan.plan_build`` checks it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from psygnal import evented

from .. import aggregate, store

AGG_MODES = aggregate.AGG_MODES
LINK_STORAGES = ("none", "implicit", "explicit")
CROSS_OBJECT = "cross_object_metanode"
ENGINES = ("auto", "vectorized", "upstream")
COUNT_ATTRIBUTE = "count"

ProgressFn = Callable[["BuildProgress"], None]
CancelFn = Callable[[], bool]


class PyramidError(store.StoreError):
    """A pyramid request is invalid or the build failed; the message says what to change.

    A ``StoreError``, so a ``ValueError``: ``except ValueError`` catches a bad ``factors=``.
    """


class BuildCancelled(Exception):
    """The build was cancelled; the store is as it was before.

    Not a ``PyramidError`` (nor a ``ValueError``): a cancel is what the caller
    asked for, not a bad argument or a failed build, so ``except ValueError``
    or ``except PyramidError`` around a build does not swallow it.
    """


@dataclass(frozen=True)
class BuildProgress:
    """One progress report: which step of how many, and what it is doing."""

    step: int
    total: int
    level: int
    phase: str  # "coarsen", "aggregate", "links", "done"
    message: str

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / max(self.total, 1))


@evented
@dataclass
class BuildOptions:
    """How a build coarsens, thins, aggregates and links: what a user edits before building.

    One evented model (``options.events.<field>`` fires when a field
    changes) shared by ``plan_build``, ``build_pyramid``, ``coarsen_level``,
    the Build dock and the command line. Nothing is checked here;
    ``plan_build`` validates it into a ``BuildPlan`` and names what to change.

    Parameters
    ----------
    agg_mode : str, optional
        How every numeric level-0 vertex attribute is reduced over the
        level-0 vertices a coarse vertex stands for: ``"mean"`` (default),
        ``"sum"``, ``"count"``, ``"min"``, ``"max"`` or ``"mode"``. Any
        ``"count"`` also writes an attribute ``count``.
    agg_overrides : mapping of str to str, optional
        Per-attribute modes that replace ``agg_mode``, e.g. ``{"label": "mode"}``.
    method : str, optional
        ``"per_object"`` (default: object ids kept across levels),
        ``"cross_object_metanode"`` (a fresh dense id space per level; the
        vectorized engine only), or a method registered with zarr-vectors.
    sparsity_strategy : str, optional
        Which objects survive thinning: ``"random"`` (default),
        ``"spatial_coverage"`` (in proportion in every region), or a
        strategy registered with zarr-vectors (``available_strategies()``).
    sparsity_seed : int, optional
        Seed for the strategy; the same seed keeps the same survivors.
        None (default): different survivors each time.
    cross_level_depth : int, optional
        Cross-level links to write: 1 (default) between adjacent levels,
        N also +-2..N, -1 between all levels, 0 none (no drill-down then).
        ``coarsen_level`` adds one level, so it writes the +-1 links unless this is 0.
    cross_level_storage : str, optional
        ``"explicit"`` (default: ``+N`` at the finer level and ``-N`` at
        the coarser), ``"implicit"`` (``+N`` only, half the space) or ``"none"``.
    engine : str, optional
        ``"auto"`` (default: the vectorized engine for point clouds,
        polylines and streamlines, upstream's coarsener for other kinds),
        ``"vectorized"`` or ``"upstream"``.
    chunk_scale : "auto", int or sequence of int, optional
        How much each new level's chunks grow over the level below:
        ``"auto"`` by the coarsen factor (rounded down), 1 keeps level 0's
        grid, or one whole number per level. None (default): ``"auto"``
        with the vectorized engine, 1 with upstream's.
    """

    agg_mode: str = "mean"
    agg_overrides: Mapping[str, str] | None = None
    method: str = "per_object"
    sparsity_strategy: str = "random"
    sparsity_seed: int | None = None
    cross_level_depth: int = 1
    cross_level_storage: str = "explicit"
    engine: str = "auto"
    chunk_scale: Any = None

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The option names, in order: the keywords the build functions accept besides their own."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def of(cls, options: BuildOptions | None = None, /, **keywords: Any) -> BuildOptions:
        """``options`` (or the defaults) with ``keywords`` replacing its fields; a new object, ``options`` unchanged.

        Raises TypeError naming an unknown keyword and the valid names, as a
        function given an unexpected keyword does.
        """
        names = cls.field_names()
        unknown = [k for k in keywords if k not in names]
        if unknown:
            raise TypeError(
                f"unexpected keyword argument{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                f"the build options are: {', '.join(names)}."
            )
        if options is None:
            return cls(**keywords)
        if not isinstance(options, cls):
            raise TypeError(f"options must be a BuildOptions (or None), got {type(options).__name__} {options!r}.")
        return replace(options, **keywords)
