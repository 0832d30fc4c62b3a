"""Time and peak memory of density pyramids: the 500,000-point sample and a 10,000,000-point store.

For each store, in one run, each case in a fresh process (so peak memory
is its own):

* ``plugin 3D``   - ``density.compute_density``: the 3D raster at the default
  pixel (a quarter bin) and its GeoRaster pyramid, in 1M-vertex chunk batches;
* ``plugin 2D``   - the same projected along z;
* ``baseline 3D`` - the naive way: read all of level 0, ``numpy.histogramdd``
  at the same pixel, then block-sum the pyramid levels;
* ``baseline 2D`` - the same projected along z.

Peak memory is the process's peak resident set minus what it had after
imports.  The ratio columns compare the plugin with the baseline of the
same store and dimensionality.

--tiny runs every case on a 5,000-point cloud (the sample's recipe in a
500-unit cube) and 20,000 clustered points, written to a temporary folder
(not the cache): a smoke test of seconds.

    python benchmarks/density.py [--skip-10m] [--tiny]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_zarr_vectors import density, samples, store

TEN_MILLION = "bench_ten_million.zv"


def ten_million_store(path: Path | None = None, n: int = 10_000_000) -> Path:
    """``n`` points in 24 Gaussian clusters over a 2000-unit cube, level 0 only (built once, cached by default)."""
    path = samples.cache_dir() / TEN_MILLION if path is None else path
    if store.is_store(path):
        return path
    rng = np.random.default_rng(7)
    k = 24
    centres = rng.uniform(200, 1800, (k, 3))
    spread = rng.uniform(30, 200, k)
    which = rng.integers(0, k, n)
    pos = (centres[which] + rng.normal(0, 1, (n, 3)) * spread[which, None]).clip(0, 1999.99).astype(np.float32)
    with store.atomic_store(path) as tmp:
        store.write_point_cloud(tmp, pos, chunk_shape=(200.0,) * 3, bin_shape=(50.0,) * 3)
    return path


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _baseline(path: str, axis: int | None) -> list[np.ndarray]:
    info = store.open_info(path)
    grid = density.density_grid(info, axis=axis)
    pos, _ = store.read_rows(path, 0)
    edges = [grid.origin[a] + grid.pixel[a] * np.arange(grid.shape[::-1][i] + 1) for i, a in enumerate(grid.axes)]
    counts, _ = np.histogramdd(pos[:, list(grid.axes)], bins=edges)
    levels = [counts.T]
    while min(levels[-1].shape) >= 2:
        a = levels[-1]
        a = a[tuple(slice(0, s - s % 2) for s in a.shape)]
        shape = [v for s in a.shape for v in (s // 2, 2)]
        levels.append(a.reshape(shape).sum(axis=tuple(range(1, 2 * a.ndim, 2))))
    return levels


def one(case: str, path: str) -> dict:
    """Run one case in this process; returns seconds, peak MB over the import baseline, and a checksum."""
    axis = 2 if case.endswith("2D") else None
    before = _rss_mb()
    t = time.perf_counter()
    plugin = case.startswith("plugin")
    arrays = density.compute_density(path, axis=axis).arrays if plugin else _baseline(path, axis)
    seconds = time.perf_counter() - t
    return {
        "seconds": seconds,
        "peak_mb": _rss_mb() - before,
        "counted": int(arrays[0].sum()),
        "shape": list(arrays[0].shape),
        "levels": len(arrays),
    }


def run_case(case: str, path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--one", case, str(path)], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--one", nargs=2, metavar=("CASE", "STORE"), help=argparse.SUPPRESS)
    parser.add_argument("--skip-10m", action="store_true", help="only the 500,000-point sample")
    parser.add_argument("--tiny", action="store_true", help="5,000 + 20,000 points in a temporary folder: a smoke run")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(*args.one)))
        return
    if args.tiny:
        with tempfile.TemporaryDirectory(prefix="nzv-bench-") as tmp:
            sample = samples.make_point_cloud(Path(tmp) / "sample.zv", 5_000, extent=500.0, **samples.POINT_SAMPLE)
            stores = [("5k sample", sample)]
            if not args.skip_10m:
                stores.append(("20k clusters", ten_million_store(Path(tmp) / "clusters.zv", 20_000)))
            report(stores)
        return
    stores = [("500k sample", samples.sample_store("synthetic_points.zv"))]
    if not args.skip_10m:
        t = time.perf_counter()
        stores.append(("10M clusters", ten_million_store()))
        print(f"(10M store ready in {time.perf_counter() - t:.1f} s)")
    report(stores)


def report(stores: list[tuple[str, Path]]) -> None:
    """Every case on every store, each in its own process, printed as a table."""
    head = ("store", "case", "seconds", "peak MB", "level 0", "levels", "time x", "mem x")
    print("{:<14} {:<12} {:>8} {:>8} {:>16} {:>6} {:>7} {:>6}".format(*head))
    for label, path in stores:
        n0 = store.open_info(path).levels[0].vertex_count
        for dim in ("3D", "2D"):
            base = run_case(f"baseline {dim}", path)
            ours = run_case(f"plugin {dim}", path)
            assert ours["counted"] == n0, (ours["counted"], n0)
            for case, r in ((f"baseline {dim}", base), (f"plugin {dim}", ours)):
                ratio_t = base["seconds"] / r["seconds"]
                ratio_m = base["peak_mb"] / max(r["peak_mb"], 1.0)
                shape = "x".join(map(str, r["shape"]))
                print(
                    f"{label:<14} {case:<12} {r['seconds']:>8.2f} {r['peak_mb']:>8.0f} {shape:>16} "
                    f"{r['levels']:>6} {ratio_t:>7.2f} {ratio_m:>6.2f}"
                )
    print("time x / mem x: the baseline's seconds / peak MB over the row's (above 1: the row is faster / leaner)")


if __name__ == "__main__":
    main()
