"""Open the sample point cloud to a drawn layer vs. loading all of level 0 into Points.

Both run in one process on one viewer-per-case, so machine noise hits
both alike; the figure that matters is the ratio.  Each plugin open starts
with the store's handle forgotten, as in a fresh process, so it includes
reading the store's metadata; napari's own part (adding and drawing the
same layers, their data already read) is printed beside it.  Run headless with:

    xvfb-run -a -s "-screen 0 1280x1024x24" python benchmarks/open_store.py [--tiny]

--tiny opens, once, 5,000 points made by the sample's recipe in a 500-unit
cube, in a temporary folder (not the cache): a smoke test of seconds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import napari

from _common import all_of_level0_as_points, drawn, open_with_plugin
from napari_zarr_vectors import layers, samples, store
from napari_zarr_vectors._renderer import machine_budget


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, help="opens per way (default 3; 1 with --tiny)")
    parser.add_argument("--tiny", action="store_true", help="5,000 points in a temporary folder: a smoke run")
    args = parser.parse_args()
    if args.tiny:
        with tempfile.TemporaryDirectory(prefix="nzv-bench-") as tmp:
            path = samples.make_point_cloud(Path(tmp) / "sample.zv", 5_000, extent=500.0, **samples.POINT_SAMPLE)
            measure(str(path), 1 if args.repeats is None else args.repeats)
    else:
        measure(str(samples.sample_store("synthetic_points.zv")), 3 if args.repeats is None else args.repeats)


def measure(path: str, repeats: int) -> None:
    info = store.open_info(path)
    print(f"store: {path}")
    print("levels: " + ", ".join(f"{lv.index}:{lv.vertex_count:,}" for lv in info.levels))
    plugin, baseline, alone = [], [], []
    for _ in range(repeats):  # interleaved so drift hits both
        baseline.append(all_of_level0_as_points(path, size=10, ndisplay=3))
        store.forget(path)  # as in a fresh process: the store is opened (its metadata read) inside the timing
        plugin.append(open_with_plugin(path))
        alone.append(napari_alone(path))
    p, b, n = statistics.median(plugin), statistics.median(baseline), statistics.median(alone)
    print(f"plugin open to drawn layer (median of {repeats}): {p:.2f} s")
    print(f"  of which napari adding and drawing the same layers (median of {repeats}): {n:.2f} s")
    print(f"all of level 0 as Points  (median of {repeats}): {b:.2f} s")
    print(f"ratio baseline / plugin: {b / p:.1f}x faster")


def napari_alone(path: str) -> float:
    """Seconds napari takes to add and draw the layers the plugin opens with, their data already read."""
    viewer = napari.Viewer(show=True)
    tuples = layers.layers_for_store(path, progressive=True, vertex_budget=machine_budget(viewer)[0])
    t = time.perf_counter()
    for data, kwargs, kind in tuples:
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    if any(len(kwargs.get("axis_labels", ())) >= 3 for _, kwargs, _ in tuples):
        viewer.dims.ndisplay = 3  # as the reader does for a 3D store
    drawn(viewer)
    elapsed = time.perf_counter() - t
    viewer.close()
    return elapsed


if __name__ == "__main__":
    main()
