"""What a store holds, as plain values: geometry kinds, ``StoreInfo``, ``LevelInfo`` and ``LevelData``."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .access import name_of
from .errors import StoreError
from .metadata import STORE_SUFFIXES

POINT_KINDS = ("point_cloud",)
POLYLINE_KINDS = ("polyline", "streamline")
LINE_KINDS = ("line",)
GRAPH_KINDS = ("graph", "skeleton")
MESH_KINDS = ("mesh",)
ALL_KINDS = POINT_KINDS + POLYLINE_KINDS + LINE_KINDS + GRAPH_KINDS + MESH_KINDS


@dataclass(frozen=True)
class LevelInfo:
    """What one resolution level holds, read from metadata only."""

    index: int
    vertex_count: int
    object_count: int
    bin_shape: tuple[float, ...]
    chunk_shape: tuple[float, ...]


@dataclass(frozen=True)
class StoreInfo:
    """A store's geometry kind, axes, bounds, world transform and levels."""

    path: str
    kind: str
    ndim: int
    axis_names: tuple[str, ...]
    bounds: tuple[np.ndarray, np.ndarray]
    levels: tuple[LevelInfo, ...]
    vertex_attributes: tuple[str, ...]
    object_attributes: tuple[str, ...]
    scale: tuple[float, ...]
    translate: tuple[float, ...]

    @property
    def name(self) -> str:
        """The store's file name without its suffix, for layer names."""
        stem = name_of(self.path)
        for suffix in STORE_SUFFIXES:
            if stem.endswith(suffix):
                return stem[: -len(suffix)]
        return stem

    def level(self, index: int) -> LevelInfo:
        for info in self.levels:
            if info.index == index:
                return info
        raise StoreError(
            f"Store '{self.path}' has no resolution level {index}; it has levels {[lv.index for lv in self.levels]}."
        )


@dataclass
class LevelData:
    """One level (or a box of it) as plain arrays, in store axis order.

    ``offsets`` splits ``positions`` into parts (one per polyline or line);
    ``part_objects`` names each part's object id.  ``object_attributes``
    are aligned with ``part_objects``.
    """

    kind: str
    level: int
    positions: np.ndarray
    vertex_attributes: dict[str, np.ndarray] = field(default_factory=dict)
    offsets: np.ndarray | None = None
    part_objects: np.ndarray | None = None
    object_attributes: dict[str, np.ndarray] = field(default_factory=dict)
    edges: np.ndarray | None = None
    faces: np.ndarray | None = None

    @property
    def vertex_count(self) -> int:
        return int(len(self.positions))

    def parts(self) -> list[np.ndarray]:
        """Positions split into one array per part."""
        return split_parts(self.positions, self.offsets)


def split_parts(positions: np.ndarray, offsets: np.ndarray | None) -> list[np.ndarray]:
    """``positions`` cut at ``offsets`` (one array per polyline), or whole when there are none."""
    if offsets is None:
        return [positions]
    return [positions[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
