"""Point face colours mapped off the GUI thread, as a Points layer would map them.

From a layer's colouring snapshot (``_napari_private.face_colouring``):
no Qt and no viewer (napari's colormap function is imported only when a
colormap is mapped).  The level-of-detail controller (``lod``) maps and
caches colours per chunk with it on a worker, and ``layers`` builds swap
payloads with it, so ``lod`` needs nothing from ``layers``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def point_colours(columns: Mapping[str, np.ndarray], colouring: Mapping[str, Any] | None) -> np.ndarray | None:
    """Face RGBA per point as a layer with ``colouring`` maps ``columns``, or None when the worker cannot.

    Colormap mode maps with napari's own function and the layer's contrast
    limits, so the colours equal a fresh layer's; cycle mode looks each
    distinct value up in the layer's table.  None (the GUI thread maps
    then) for direct colours, a value the cycle has not seen (napari
    assigns it the next colour), or limits napari has not fixed yet.
    """
    if not colouring or colouring.get("name") not in columns:
        return None
    values = np.asarray(columns[colouring["name"]])
    if colouring["mode"] == "colormap" and colouring.get("contrast_limits") is not None:
        from . import _napari_private

        return _napari_private.map_property(values, colouring["colormap"], colouring["contrast_limits"])
    if colouring["mode"] == "cycle":
        mapping = colouring["mapping"]
        uniques, inverse = np.unique(values, return_inverse=True)
        if not all(u in mapping for u in uniques.tolist()):
            return None
        table = np.array([mapping[u] for u in uniques.tolist()], dtype=np.float32).reshape(len(uniques), 4)
        return table[inverse.reshape(-1)]
    return None


def colouring_key(colouring: Mapping[str, Any] | None) -> tuple | None:
    """A hashable identity of a ``face_colouring`` snapshot, so colours mapped with it can be cached per chunk.

    None when there is nothing to map on the worker (direct colours, no feature).
    """
    if not colouring or colouring.get("name") is None:
        return None
    mode, name = colouring["mode"], colouring["name"]
    if mode == "colormap" and colouring.get("contrast_limits") is not None:
        cmap = colouring["colormap"]
        colours = np.asarray(getattr(cmap, "colors", ()), dtype=np.float32)
        controls = np.asarray(getattr(cmap, "controls", ()), dtype=np.float32)
        return (mode, name, tuple(colouring["contrast_limits"]), colours.tobytes(), controls.tobytes())
    if mode == "cycle":
        table = sorted((repr(k), np.asarray(v, np.float32).tobytes()) for k, v in colouring["mapping"].items())
        return (mode, name, tuple(table))
    return None
