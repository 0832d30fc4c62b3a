"""LAS and LAZ point clouds (laspy; LAZ through lazrs) as point stores, classification and intensity kept.

Positions are the file's scaled coordinates (``las.x``, ``las.y``,
``las.z``: the header's scale and offset applied), in its coordinate
reference system's units, usually metres; float64 when float32 would
round them (projected coordinates of a few million metres). Kept as
vertex attributes: ``classification`` (aggregated with ``mode``),
``intensity`` and, where the point format has them, ``red``, ``green``,
``blue``. Other dimensions (return numbers, GPS time, scan angle) are not.

laspy (and lazrs for LAZ) are optional (the ``import`` extra) and
imported only when a LAS/LAZ file is read.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from .. import store
from .geometry import Loaded, check_file, first_line, needs
from .tables import EXTRA, ImportFailed

LIDAR_SUFFIXES: dict[str, str] = {".las": "las", ".laz": "laz"}
#: The LAS dimensions kept, when the file's point format has them.
KEPT = ("classification", "intensity", "red", "green", "blue")


def load(source: str | os.PathLike[str], fmt: str) -> Loaded:
    """Read a LAS or LAZ file into level 0 of a point store (written by ``Loaded.write``)."""
    path = check_file(source)
    laspy = needs("laspy", "laspy", "LAS and LAZ point clouds")
    try:
        las = laspy.read(str(path))
    except Exception as exc:
        text = first_line(exc)
        if re.search(r"LazBackend|lazrs|laszip", text, re.IGNORECASE):
            raise ImportFailed(
                f"Cannot import '{source}': reading compressed LAZ needs lazrs, which is not installed ({text}). "
                f'Install it with: pip install "napari-zarr-vectors[{EXTRA}]"'
            ) from None
        raise ImportFailed(
            f"Cannot import '{source}': it is not a readable {fmt.upper()} point cloud (truncated, damaged, or not "
            f"that kind of file: {text}). Export it again. Nothing was written."
        ) from None
    positions = np.column_stack([np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)]).astype(np.float64)
    if not len(positions):
        raise ImportFailed(f"Cannot import '{source}': the point cloud holds no points. Nothing was written.")
    names = set(las.point_format.dimension_names)
    columns = {name: np.array(las[name]) for name in KEPT if name in names}
    keep = np.isfinite(positions).all(axis=1)
    if not keep.all():
        raise ImportFailed(
            f"Cannot import '{source}': {int((~keep).sum()):,} of its points have NaN or infinite coordinates. "
            "Nothing was written."
        )

    def write(folder: Path) -> None:
        store.write_point_cloud(folder, positions, attributes=columns, publish=False)

    return Loaded(
        format=fmt,
        kind="point_cloud",
        vertices=len(positions),
        objects=0,
        vertex_attributes=tuple(columns),
        object_attributes=(),
        labels=("classification",) if "classification" in columns else (),
        write=write,
    )
