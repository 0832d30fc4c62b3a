"""npe2 writers: Points -> point_cloud, Shapes paths/lines -> polyline, Surface -> mesh.

Each refuses a target that exists and is not empty; nothing is overwritten.
"""

from __future__ import annotations

from typing import Any

from . import layers
from .store import StoreError


class LayerNotSaved(RuntimeError):
    """A layer cannot be saved as a store; the message says why and what to do.

    Deliberately not a ``ValueError`` (as ``StoreError`` is): napari takes a
    ``ValueError`` from a writer to mean "this writer does not apply" and
    replaces the message with "not a valid writer".
    """


def _write(path: str, data: Any, meta: dict, layer_type: str) -> list[str]:
    try:
        return [layers.write_layer(path, data, meta, layer_type)]
    except StoreError as exc:
        raise LayerNotSaved(str(exc)) from exc


def write_points(path: str, data: Any, meta: dict) -> list[str]:
    return _write(path, data, meta, "points")


def write_shapes(path: str, data: Any, meta: dict) -> list[str]:
    return _write(path, data, meta, "shapes")


def write_surface(path: str, data: Any, meta: dict) -> list[str]:
    return _write(path, data, meta, "surface")
