"""npe2 writers: Points -> point_cloud, Shapes paths/lines -> polyline, Surface -> mesh.

Each refuses a target that exists and is not empty; nothing is overwritten.
"""

from __future__ import annotations

from typing import Any

from . import layers


def write_points(path: str, data: Any, meta: dict) -> list[str]:
    return [layers.write_layer(path, data, meta, "points")]


def write_shapes(path: str, data: Any, meta: dict) -> list[str]:
    return [layers.write_layer(path, data, meta, "shapes")]


def write_surface(path: str, data: Any, meta: dict) -> list[str]:
    return [layers.write_layer(path, data, meta, "surface")]
