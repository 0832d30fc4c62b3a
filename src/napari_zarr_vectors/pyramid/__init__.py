"""Pyramid building on top of the upstream builder, with what it lacks.

Upstream ``zarr_vectors`` 0.9.2 coarsens geometry and writes cross-level
links. This package adds: vertex attributes on every coarse level
(aggregated from level 0 through the composed parent maps), sparsity that
compounds over surviving objects for every strategy, a
``spatial_coverage`` strategy, validation before anything is written,
progress and cancel, and a rollback that leaves the store as it was when
a build is cancelled or fails.

What lives where (this module only re-exports; the modules import each other, never it):

- ``options``: what a build is asked and reports: ``BuildOptions``,
  ``BuildProgress``, ``PyramidError``, ``BuildCancelled``, the option choices.
- ``plan``: validation before anything is written: ``plan_build`` (a
  ``BuildPlan``), ``normalize_factors``, ``available_methods``.
- ``sparsity``: which objects survive thinning: ``select_survivors``,
  ``available_strategies``, and the strategy registered for upstream's coarsener.
- ``build``: ``build_pyramid``, ``coarsen_level`` and ``run``: both engines,
  aggregation, links and rollback. ``SLAB_VERTICES`` is read there, so patch
  ``pyramid.build.SLAB_VERTICES`` (it is not re-exported here).
- ``levels``: ``list_resolution_levels``, ``remove_resolution_level``,
  ``pyramid_summary``, ``suggest_factors``, ``estimate_level_vertices``, ``store_path_of``.

No Qt here; the widget and the CLI call these functions.
"""

from .build import SOURCE_OBJECT_ATTRIBUTE, build_pyramid, coarsen_level, run
from .levels import (
    estimate_level_vertices,
    list_resolution_levels,
    pyramid_summary,
    remove_resolution_level,
    store_path_of,
    suggest_factors,
)
from .options import (
    AGG_MODES,
    COUNT_ATTRIBUTE,
    CROSS_OBJECT,
    ENGINES,
    LINK_STORAGES,
    BuildCancelled,
    BuildOptions,
    BuildProgress,
    CancelFn,
    ProgressFn,
    PyramidError,
)
from .plan import (
    ENGINE_KINDS,
    MAX_AUTO_CHUNK_SCALE,
    TEXT_MODE,
    BuildPlan,
    available_methods,
    normalize_factors,
    plan_build,
)
from .sparsity import BUILTIN_STRATEGIES, available_strategies, select_survivors

__all__ = [
    "AGG_MODES",
    "BUILTIN_STRATEGIES",
    "COUNT_ATTRIBUTE",
    "CROSS_OBJECT",
    "ENGINES",
    "ENGINE_KINDS",
    "LINK_STORAGES",
    "MAX_AUTO_CHUNK_SCALE",
    "SOURCE_OBJECT_ATTRIBUTE",
    "TEXT_MODE",
    "BuildCancelled",
    "BuildOptions",
    "BuildPlan",
    "BuildProgress",
    "CancelFn",
    "ProgressFn",
    "PyramidError",
    "available_methods",
    "available_strategies",
    "build_pyramid",
    "coarsen_level",
    "estimate_level_vertices",
    "list_resolution_levels",
    "normalize_factors",
    "plan_build",
    "pyramid_summary",
    "remove_resolution_level",
    "run",
    "select_survivors",
    "store_path_of",
    "suggest_factors",
]
