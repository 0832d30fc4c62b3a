"""Files labs have, imported as new stores: point tables, tractograms, SWC skeletons, meshes, LAS/LAZ point clouds.

``import_file`` reads the file with the field's own library (``tables``:
pyarrow, in record batches; ``tractograms``: nibabel, trx-python;
``swc``; ``meshes``: trimesh; ``lidar``: laspy), writes level 0 and
builds a default pyramid in one all-or-nothing write:
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
from . import lidar, meshes, swc, tractograms
from .geometry import DataNotKept, Loaded
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

#: Every file ending ``import_file`` reads, and the format it is read as.
SUPPORTED: dict[str, str] = {
    **TABLE_SUFFIXES,
    **tractograms.TRACTOGRAM_SUFFIXES,
    **swc.SWC_SUFFIXES,
    **meshes.MESH_SUFFIXES,
    **lidar.LIDAR_SUFFIXES,
}
#: Each format, said in words, with the kind of store it becomes.
DESCRIPTIONS: dict[str, tuple[str, str]] = {
    "csv": ("CSV point table", "point_cloud"),
    "tsv": ("TSV point table", "point_cloud"),
    "parquet": ("Parquet point table", "point_cloud"),
    "trk": ("TrackVis TRK tractogram", "streamline"),
    "tck": ("MRtrix TCK tractogram", "streamline"),
    "trx": ("TRX tractogram", "streamline"),
    "swc": ("SWC skeleton", "skeleton"),
    "ply": ("PLY mesh", "mesh"),
    "obj": ("OBJ mesh", "mesh"),
    "stl": ("STL mesh", "mesh"),
    "las": ("LAS point cloud", "point_cloud"),
    "laz": ("LAZ point cloud", "point_cloud"),
}
_READERS: dict[str, Callable[[str | os.PathLike[str], str], Loaded]] = {
    **{fmt: tractograms.load for fmt in tractograms.TRACTOGRAM_SUFFIXES.values()},
    **{fmt: swc.load for fmt in swc.SWC_SUFFIXES.values()},
    **{fmt: meshes.load for fmt in meshes.MESH_SUFFIXES.values()},
    **{fmt: lidar.load for fmt in lidar.LIDAR_SUFFIXES.values()},
}


def format_of(path: str | os.PathLike[str]) -> str:
    """The format ``import_file`` reads ``path`` as (a ``SUPPORTED`` value: ``trk``, ``swc``, ``parquet``, ...).

    From the file's ending alone (case ignored; ``.csv.gz`` is ``csv``).
    Raises ImportFailed listing every supported ending otherwise.
    """
    name = Path(path).name.lower()
    for suffix, fmt in sorted(SUPPORTED.items(), key=lambda kv: -len(kv[0])):
        if name.endswith(suffix):
            return fmt
    raise ImportFailed(
        f"Cannot import '{path}': its type ('{Path(path).suffix or 'no extension'}') is not one this plugin "
        f"imports. Supported: {', '.join(SUPPORTED)}. Nothing was written."
    )


@dataclass(frozen=True)
class ImportSummary:
    """What an import made: the store, what the file was, which columns became what, and the levels built.

    For a file that is not a table, ``position`` is the store's axes,
    ``attributes`` its vertex attributes and ``rows_read`` its vertices;
    ``objects`` and ``object_attributes`` say what it has per object
    (streamline, tree).
    """

    path: str
    format: str
    preset: str
    position: tuple[str, ...]
    attributes: tuple[str, ...]
    text_attributes: tuple[str, ...]
    rows_read: int
    rows_dropped: int
    levels: tuple[int, ...]
    kind: str = "point_cloud"
    objects: int = 0
    object_attributes: tuple[str, ...] = ()

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
    """Import a file as a new store, with a pyramid; all or nothing.

    Parameters
    ----------
    source : str or os.PathLike
        A point table (``.csv``, ``.tsv``, optionally ``.gz``, ``.parquet``,
        ``.pq``), a tractogram (``.trk``, ``.tck``, ``.trx``), an SWC
        skeleton (``.swc``), a mesh (``.ply``, ``.obj``, ``.stl``) or a
        LAS/LAZ point cloud (``.las``, ``.laz``); see ``SUPPORTED``.
    store_path : str or os.PathLike
        The new store (a folder that does not exist yet, or is empty).
    x, y, z : str, optional
        The position columns (point tables only). Not given: a vendor preset's (10x Xenium,
        Vizgen MERSCOPE, NanoString CosMx) or columns named x, y (and z).
    attributes : sequence of str, optional
        (Point tables only.) The columns kept as vertex attributes. Not given: every other
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
        unknown type, or its columns cannot be used; the library that
        reads it is missing (the message names the extra to install).
    StoreError
        The target exists and is not empty, or writing failed. Nothing was written.
    ImportCancelled, BuildCancelled
        ``cancel()`` returned True. Nothing was written.
    """
    options = pyramid.BuildOptions.of(options, **keywords)
    store.refuse_remote(store_path, "import into a store")
    target = Path(store_path).absolute()
    fmt = format_of(source)  # an unknown type is refused before anything else
    if fmt in _READERS:
        given = [f"--{k}" for k, v in (("x", x), ("y", y), ("z", z), ("attributes", attributes)) if v is not None]
        if given:
            raise ImportFailed(
                f"Cannot import '{source}': {', '.join(given)} name columns of a point table; a "
                f"{DESCRIPTIONS[fmt][0]} has none. Leave them out. Nothing was written."
            )
    store.check_new_target(target, "import into")  # before the file is read, which may take minutes
    if fmt in _READERS:
        loaded = _READERS[fmt](source, fmt)
        return _import_loaded(
            loaded, target, build, factors, coarsen, _with_labels(options, loaded.labels), progress, cancel
        )
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


def _import_loaded(
    loaded: Loaded,
    target: Path,
    build: bool,
    factors: Any,
    coarsen: float,
    options: pyramid.BuildOptions,
    progress: pyramid.ProgressFn | None,
    cancel: pyramid.CancelFn | None,
) -> ImportSummary:
    """Write what a format reader read as level 0 of ``target``, then the pyramid; all or nothing."""
    with store.atomic_store(target) as tmp:
        try:
            loaded.write(tmp)
            levels_wanted = factors if factors is not None else (pyramid.suggest_factors(tmp, coarsen) if build else [])
            if build and levels_wanted:
                pyramid.build_pyramid(tmp, levels_wanted, options, progress=progress, cancel=cancel)
            levels = tuple(pyramid.list_resolution_levels(tmp))
            axes = store.open_info(tmp).axis_names
        except BaseException as exc:
            raise _named_as(exc, tmp, target) from None
        finally:
            store.forget(tmp)
    return ImportSummary(
        path=str(target),
        format=loaded.format,
        preset=DESCRIPTIONS[loaded.format][0],
        position=tuple(axes),
        attributes=loaded.vertex_attributes,
        text_attributes=(),
        rows_read=loaded.vertices,
        rows_dropped=0,
        levels=levels,
        kind=loaded.kind,
        objects=loaded.objects,
        object_attributes=loaded.object_attributes,
    )


__all__ = [
    "ATTRIBUTE",
    "DESCRIPTIONS",
    "SUPPORTED",
    "DataNotKept",
    "Loaded",
    "format_of",
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
