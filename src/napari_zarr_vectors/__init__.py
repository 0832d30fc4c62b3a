"""napari-zarr-vectors: view and build multi-resolution Zarr Vectors pyramids in napari.

The public Python API; everything else is internal.
"""

from .density import density_pyramid, export_deep_zoom
from .drill import children, parents
from .importers import ImportSummary, import_file
from .lod import DEFAULT_VERTEX_BUDGET, choose_level
from .pyramid import (
    BuildCancelled,
    BuildOptions,
    BuildProgress,
    PyramidError,
    build_pyramid,
    coarsen_level,
    list_resolution_levels,
    pyramid_summary,
    remove_resolution_level,
    suggest_factors,
)
from .store import StoreError, StoreInfo, open_info, read_level

try:
    from importlib.metadata import version as _version

    __version__ = _version("napari-zarr-vectors")
except Exception:  # pragma: no cover - running from a bare checkout
    __version__ = "0.0.0+unknown"

__all__ = [
    "DEFAULT_VERTEX_BUDGET",
    "BuildCancelled",
    "BuildOptions",
    "BuildProgress",
    "PyramidError",
    "StoreError",
    "StoreInfo",
    "ImportSummary",
    "build_pyramid",
    "children",
    "choose_level",
    "coarsen_level",
    "density_pyramid",
    "export_deep_zoom",
    "import_file",
    "list_resolution_levels",
    "open_info",
    "parents",
    "pyramid_summary",
    "read_level",
    "remove_resolution_level",
    "suggest_factors",
    "__version__",
]
