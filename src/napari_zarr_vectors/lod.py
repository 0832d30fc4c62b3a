"""Level-of-detail choice, free of Qt and napari.

Today: the initial level, the finest whose vertex count fits a budget.
The camera-following controller (visible box, hysteresis) grows here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

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
