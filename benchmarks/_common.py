"""What the benchmark scripts share: a forced draw, the plugin's open, and the all-of-level-0 baseline."""

from __future__ import annotations

import time

import napari
import numpy as np

from napari_zarr_vectors import store
from napari_zarr_vectors._qt import follow as _follow

PLUGIN = "napari-zarr-vectors"


def drawn(viewer: napari.Viewer) -> None:
    viewer.screenshot(canvas_only=True, flash=False)  # forces a full render


def open_with_plugin(path: str, settled: list[float] | None = None) -> float:
    """Seconds from open to the first draw; with ``settled``, also appends the seconds until refined."""
    viewer = napari.Viewer(show=True)
    t = time.perf_counter()
    viewer.open(path, plugin=PLUGIN)
    drawn(viewer)
    elapsed = time.perf_counter() - t
    if settled is not None:
        _follow.wait_settled(viewer)
        drawn(viewer)
        settled.append(time.perf_counter() - t)
    viewer.close()
    return elapsed


def all_of_level0_as_points(path: str, *, size: float = 1.0, ndisplay: int = 2) -> float:
    """Seconds to read all of level 0 and draw it as one Points layer coloured by intensity."""
    viewer = napari.Viewer(show=True)
    t = time.perf_counter()
    data = store.read_level(path, 0)
    viewer.add_points(
        np.ascontiguousarray(data.positions[:, ::-1]),
        features=dict(data.vertex_attributes),
        face_color="intensity",
        size=size,
    )
    viewer.dims.ndisplay = ndisplay
    drawn(viewer)
    elapsed = time.perf_counter() - t
    viewer.close()
    return elapsed
