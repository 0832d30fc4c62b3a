"""npe2 sample data: the tutorial's point cloud and streamlines, built once and cached.

A sample opens exactly as the same store opens through the reader
(camera following, 3D view for a 3D store, errors as notifications).
"""

from __future__ import annotations

from . import samples
from ._reader import prefer_this_reader_for_stores, read_stores


def synthetic_point_cloud() -> list:
    prefer_this_reader_for_stores()
    return read_stores(str(samples.sample_store("synthetic_points.zv")))


def synthetic_streamlines() -> list:
    prefer_this_reader_for_stores()
    return read_stores(str(samples.sample_store("synthetic_streamlines.zv")))
