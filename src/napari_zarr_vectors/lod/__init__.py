"""Level of detail: which level of a store to show, and reading it, free of Qt and napari's viewer.

Every name is re-exported here (``from napari_zarr_vectors import lod;
lod.budget_for(...)``); the modules hold them along their seams:

- ``budgets``: how much a view may draw (the vertex budget, its
  environment variable and ``budget_for`` a renderer and canvas, the
  Shapes path limit, the per-region pixels per vertex).
- ``choice``: the pure level choice from store metadata (``choose_level``,
  ``visible_box``, ``count_in_box``, ``choose_level_for_view``,
  ``plan_regions`` for a level per region).
- ``state``: ``ViewState``, a layer's level, lock and budget as one
  evented model, mirrored into the layer's metadata.
- ``sample``: a store with only level 0 drawn within the budget, pure:
  ``chunk_quotas`` per chunk in view and each chunk's ``even_order``.
- ``controller``: ``LevelOfDetail``, which chooses and reads a camera
  ``View``'s ``Region`` on a worker thread, with its ``ChunkCache``; and
  ``read_level_sample``, the even subsample of a level read chunk by chunk.

The modules import each other directly, never this package.
"""

from __future__ import annotations

from .budgets import (
    BUDGET_ENV,
    BUDGET_STEP,
    DEFAULT_PIXELS_PER_VERTEX,
    DEFAULT_SHAPES_PATH_LIMIT,
    DEFAULT_VERTEX_BUDGET,
    PIXELS_ENV,
    REFERENCE_CANVAS_PIXELS,
    SOFTWARE_MAX_BUDGET,
    SOFTWARE_MIN_BUDGET,
    SOFTWARE_PIXELS_PER_VERTEX,
    SOFTWARE_REASON,
    SOFTWARE_RENDERERS,
    budget_follows_canvas,
    budget_for,
    default_pixels_per_vertex,
    default_vertex_budget,
    is_software_renderer,
)
from .choice import (
    MAX_REGIONS,
    Box,
    LevelGrid,
    RegionPlan,
    choose_level,
    choose_level_for_view,
    choose_level_from_estimates,
    count_in_box,
    plan_regions,
    visible_box,
)
from .controller import EVEN_PREFIXES, ChunkCache, LevelOfDetail, Region, Sample, View, read_level_sample
from .sample import chunk_quotas, even_order, even_subsample
from .state import MIRRORED, ViewState

__all__ = [
    # budgets
    "BUDGET_ENV",
    "BUDGET_STEP",
    "DEFAULT_PIXELS_PER_VERTEX",
    "DEFAULT_SHAPES_PATH_LIMIT",
    "DEFAULT_VERTEX_BUDGET",
    "PIXELS_ENV",
    "REFERENCE_CANVAS_PIXELS",
    "SOFTWARE_MAX_BUDGET",
    "SOFTWARE_MIN_BUDGET",
    "SOFTWARE_PIXELS_PER_VERTEX",
    "SOFTWARE_REASON",
    "SOFTWARE_RENDERERS",
    "budget_follows_canvas",
    "budget_for",
    "default_pixels_per_vertex",
    "default_vertex_budget",
    "is_software_renderer",
    # choice
    "MAX_REGIONS",
    "Box",
    "LevelGrid",
    "RegionPlan",
    "choose_level",
    "choose_level_for_view",
    "choose_level_from_estimates",
    "count_in_box",
    "plan_regions",
    "visible_box",
    # sample
    "chunk_quotas",
    "even_order",
    "even_subsample",
    # state
    "MIRRORED",
    "ViewState",
    # controller
    "ChunkCache",
    "LevelOfDetail",
    "EVEN_PREFIXES",
    "Region",
    "Sample",
    "View",
    "read_level_sample",
]
