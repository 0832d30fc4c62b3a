"""npe2 sample data: the tutorial's point cloud and streamlines, built once and cached."""

from __future__ import annotations

from . import layers, samples
from ._reader import _follow_camera


def synthetic_point_cloud() -> list:
    _follow_camera()
    return layers.layers_for_store(samples.sample_store("synthetic_points.zv"), progressive=True)


def synthetic_streamlines() -> list:
    _follow_camera()
    return layers.layers_for_store(samples.sample_store("synthetic_streamlines.zv"), progressive=True)
