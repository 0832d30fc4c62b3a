"""PLY, OBJ and STL surfaces (trimesh) as mesh stores.

The file is read with ``trimesh.load(path, force="mesh", process=False)``:
vertices and faces as the file has them (a scene of several meshes
becomes one mesh, their vertices one after another; polygons become
triangles). An STL, which repeats each corner per triangle, has its
identical vertices merged (``merge_vertices``). Kept as vertex
attributes: per-vertex colours (``red``, ``green``, ``blue``, ``alpha``)
and, for PLY, every other numeric vertex property (``quality``,
``intensity``, ...). Face colours, normals and textures are not kept.
Positions are in the file's own units.

trimesh is optional (the ``import`` extra) and imported only when a mesh is read.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from .. import store
from .geometry import DataNotKept, Loaded, attribute_name, check_file, needs, unreadable
from .tables import ImportFailed

MESH_SUFFIXES: dict[str, str] = {".ply": "ply", ".obj": "obj", ".stl": "stl"}
#: PLY vertex properties that are the position, normal or colour (kept otherwise, or not at all).
_PLY_OWN = {"x", "y", "z", "nx", "ny", "nz", "red", "green", "blue", "alpha", "r", "g", "b", "a"}


def read_mesh(source: str | os.PathLike[str], fmt: str):  # noqa: ANN201 (a trimesh.Trimesh; trimesh is optional)
    """The file as one ``trimesh.Trimesh``, read as ``load`` reads it (for a caller comparing to trimesh itself)."""
    path = check_file(source)
    trimesh = needs("trimesh", "trimesh", "PLY, OBJ and STL meshes")
    try:
        mesh = trimesh.load(str(path), file_type=fmt, force="mesh", process=False)
    except Exception as exc:
        raise unreadable(source, f"{fmt.upper()} mesh", exc) from None
    if not isinstance(mesh, trimesh.Trimesh):
        raise ImportFailed(
            f"Cannot import '{source}': it holds no surface (trimesh read it as {type(mesh).__name__}: "
            "a point cloud or lines, not faces). Nothing was written."
        )
    if fmt == "stl":
        mesh.merge_vertices()
    return mesh


def load(source: str | os.PathLike[str], fmt: str) -> Loaded:
    """Read a PLY, OBJ or STL file into level 0 of a mesh store (written by ``Loaded.write``)."""
    mesh = read_mesh(source, fmt)
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    if not len(vertices) or not len(faces):
        what = "no vertices" if not len(vertices) else f"{len(vertices):,} vertices but no faces (a point cloud?)"
        raise ImportFailed(
            f"Cannot import '{source}': trimesh found {what}; a mesh store needs triangles. Nothing was written."
        )
    columns: dict[str, np.ndarray] = {}
    visual = getattr(mesh, "visual", None)
    if getattr(visual, "kind", None) == "vertex":
        colors = np.asarray(visual.vertex_colors)
        for k, name in enumerate(("red", "green", "blue", "alpha")[: colors.shape[1]]):
            columns[name] = colors[:, k].copy()
    raw = (mesh.metadata or {}).get("_ply_raw", {}).get("vertex", {}).get("data")
    if raw is not None and getattr(raw, "dtype", None) is not None and raw.dtype.names and len(raw) == len(vertices):
        for name in raw.dtype.names:
            values = np.asarray(raw[name])
            if name.lower() not in _PLY_OWN and values.ndim == 1 and values.dtype.kind in "biuf":
                columns[attribute_name(name)] = values.copy()
    dropped = [n for n in ("face colours", "texture") if _has(mesh, n)]
    if dropped:
        warnings.warn(
            DataNotKept(
                f"'{source}': its {' and '.join(dropped)} are not kept (a mesh store keeps per-vertex values)."
            ),
            stacklevel=3,
        )

    def write(folder: Path) -> None:
        store.write_mesh_store(folder, vertices, faces, vertex_attributes=columns, publish=False)

    return Loaded(
        format=fmt,
        kind="mesh",
        vertices=len(vertices),
        objects=0,
        vertex_attributes=tuple(columns),
        object_attributes=(),
        labels=(),
        write=write,
    )


def _has(mesh: object, what: str) -> bool:
    visual = getattr(mesh, "visual", None)
    if what == "face colours":
        return getattr(visual, "kind", None) == "face"
    return getattr(visual, "kind", None) == "texture" and getattr(visual, "uv", None) is not None
