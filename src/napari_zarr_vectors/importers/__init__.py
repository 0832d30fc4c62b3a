"""Files labs have, imported as new stores: point tables (CSV, TSV, Parquet) for now.

``import_file`` reads the file (``tables``: pyarrow, in record batches),
writes level 0 and builds a default pyramid in one all-or-nothing write:
the store appears under its name only when everything succeeded, and a
failure of any step (a bad file, a failed build, Ctrl+C) leaves nothing.
No Qt here; the command line (``napari-zarr-vectors import``) calls it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import pyramid, store
from .preview import ATTRIBUTE, IGNORED, POSITION, TablePreview, preview_table, table_columns
from .tables import (
    EXTRA,
    GENERIC,
    GIVEN,
    MAX_TEXT_CATEGORIES,
    PRESETS,
    PYARROW_MISSING,
    TABLE_SUFFIXES,
    ColumnsSkipped,
    ImportCancelled,
    ImportFailed,
    Preset,
    RowsDropped,
    Table,
    TablePlan,
    plan_columns,
    read_table,
    table_format,
)


@dataclass(frozen=True)
class ImportSummary:
    """What an import made: the store, what the file was, which columns became what, and the levels built."""

    path: str
    format: str
    preset: str
    position: tuple[str, ...]
    attributes: tuple[str, ...]
    text_attributes: tuple[str, ...]
    rows_read: int
    rows_dropped: int
    levels: tuple[int, ...]

    @property
    def rows_written(self) -> int:
        return self.rows_read - self.rows_dropped


def _with_labels(options: pyramid.BuildOptions, labels: Sequence[str]) -> pyramid.BuildOptions:
    """``options`` with `mode` for every label column the caller gave no mode for (a cell id is never averaged)."""
    given = dict(options.agg_overrides or {})
    extra = {name: "mode" for name in labels if name not in given}
    return pyramid.BuildOptions.of(options, agg_overrides={**extra, **given}) if extra else options


def _named_as(exc: BaseException, tmp: Path, target: Path) -> BaseException:
    """``exc`` with the temporary store's path in its message replaced by the store's own."""
    if exc.args and isinstance(exc.args[0], str) and str(tmp) in exc.args[0]:
        exc.args = (exc.args[0].replace(str(tmp), str(target)), *exc.args[1:])
    return exc


def import_file(
    source: str | os.PathLike[str],
    store_path: str | os.PathLike[str],
    *,
    x: str | None = None,
    y: str | None = None,
    z: str | None = None,
    attributes: Sequence[str] | None = None,
    build: bool = True,
    factors: Any = None,
    coarsen: float = 2.0,
    options: pyramid.BuildOptions | None = None,
    read_progress: Callable[[int, int | None], None] | None = None,
    progress: pyramid.ProgressFn | None = None,
    cancel: pyramid.CancelFn | None = None,
    **keywords: Any,
) -> ImportSummary:
    """Import a point table (CSV, TSV or Parquet) as a new store, with a pyramid; all or nothing.

    Parameters
    ----------
    source : str or os.PathLike
        A ``.csv``, ``.tsv`` (optionally ``.gz``), ``.parquet`` or ``.pq`` file.
    store_path : str or os.PathLike
        The new store (a folder that does not exist yet, or is empty).
    x, y, z : str, optional
        The position columns. Not given: a vendor preset's (10x Xenium,
        Vizgen MERSCOPE, NanoString CosMx) or columns named x, y (and z).
    attributes : sequence of str, optional
        The columns kept as vertex attributes. Not given: every other
        column (a preset leaves out per-row ids). Text stays text.
    build : bool, optional
        Build a pyramid after level 0 (default True).
    factors : sequence of (float, float), optional
        The pyramid's levels, as ``build_pyramid`` takes them. Not given:
        ``suggest_factors(store, coarsen)``.
    coarsen : float, optional
        The coarsen factor of the suggested levels (default 2).
    options : BuildOptions, optional
        How to build (``build_pyramid``'s options); label columns (cell
        ids, fields of view) get ``mode`` unless ``agg_overrides`` names them.
    read_progress : callable, optional
        Called with ``(rows_read, total_rows or None)`` after each batch.
    progress, cancel : callable, optional
        As ``build_pyramid`` takes them; ``cancel`` is also asked between batches.
    **keywords
        ``BuildOptions`` fields, e.g. ``agg_mode="mean"``.

    Returns
    -------
    ImportSummary

    Raises
    ------
    ImportFailed
        A ``StoreError``: the file is missing, empty, truncated, of an
        unknown type, or its columns cannot be used; pyarrow is missing.
    StoreError
        The target exists and is not empty, or writing failed. Nothing was written.
    ImportCancelled, BuildCancelled
        ``cancel()`` returned True. Nothing was written.
    """
    options = pyramid.BuildOptions.of(options, **keywords)
    store.refuse_remote(store_path, "import into a store")
    target = Path(store_path).absolute()
    table_format(source)  # an unknown type is refused before anything else
    store.check_new_target(target, "import into")  # before the file is read, which may take minutes
    table = read_table(source, x=x, y=y, z=z, attributes=attributes, progress=read_progress, cancel=cancel)
    options = _with_labels(options, table.plan.labels)
    with store.atomic_store(target) as tmp:
        try:
            store.write_point_cloud(
                tmp, table.positions, attributes=table.attributes, categories=table.categories, publish=False
            )
            # level 0 is on disk: the build reads it back in slabs, so the arrays read from the file can go
            table.positions, table.attributes = np.empty((0, table.positions.shape[1])), {}
            levels_wanted = factors if factors is not None else (pyramid.suggest_factors(tmp, coarsen) if build else [])
            if build and levels_wanted:
                pyramid.build_pyramid(tmp, levels_wanted, options, progress=progress, cancel=cancel)
            levels = tuple(pyramid.list_resolution_levels(tmp))
        except BaseException as exc:
            raise _named_as(exc, tmp, target) from None
        finally:
            store.forget(tmp)
    plan = table.plan
    return ImportSummary(
        path=str(target),
        format=plan.format,
        preset=plan.preset,
        position=plan.position,
        attributes=plan.attributes,
        text_attributes=tuple(table.categories),
        rows_read=table.rows_read,
        rows_dropped=table.rows_dropped,
        levels=levels,
    )


__all__ = [
    "ATTRIBUTE",
    "EXTRA",
    "GENERIC",
    "GIVEN",
    "IGNORED",
    "MAX_TEXT_CATEGORIES",
    "POSITION",
    "PRESETS",
    "PYARROW_MISSING",
    "TABLE_SUFFIXES",
    "ColumnsSkipped",
    "ImportCancelled",
    "ImportFailed",
    "ImportSummary",
    "Preset",
    "RowsDropped",
    "Table",
    "TablePlan",
    "TablePreview",
    "import_file",
    "plan_columns",
    "preview_table",
    "table_columns",
    "read_table",
    "table_format",
]
