"""Our build_pyramid (2 attributes aggregated) vs upstream build_pyramid alone, same store, one run.

The 500,000-point sample's level 0 is written once; each repeat copies it
twice and builds [(2,1)]*3 on each copy, alternating which goes first, so
machine noise hits both. Target: aggregation adds at most 25% to upstream.

    python benchmarks/build_pyramid.py [--points 500000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from napari_zarr_vectors import pyramid, samples, store

FACTORS = [(2.0, 1.0)] * 3


def upstream(path: Path) -> float:
    t = time.perf_counter()
    store.upstream_build_pyramid(path, FACTORS)
    return time.perf_counter() - t


def ours(path: Path) -> float:
    t = time.perf_counter()
    pyramid.build_pyramid(path, FACTORS, agg_mode="mean", agg_overrides={"label": "mode"})
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=500_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nzv-bench-"))
    try:
        base = samples.make_point_cloud(work / "base.zv", args.points, factors=None)
        times: dict[str, list[float]] = {"upstream": [], "ours": []}
        for r in range(args.repeats):
            order = [("upstream", upstream), ("ours", ours)]
            for name, fn in order if r % 2 == 0 else order[::-1]:
                copy = work / f"{name}-{r}.zv"
                shutil.copytree(base, copy)
                os.sync()  # the copy's dirty pages must not be written back inside the timed build
                times[name].append(fn(copy))
                shutil.rmtree(copy)
                os.sync()
        up, us = statistics.median(times["upstream"]), statistics.median(times["ours"])
        paired = [o / u for o, u in zip(times["ours"], times["upstream"], strict=True)]
        print(f"{args.points:,} points, factors {FACTORS}, {args.repeats} interleaved pairs")
        runs = {k: [round(t, 2) for t in v] for k, v in times.items()}
        print(f"upstream build_pyramid (no attributes):        median {up:6.2f} s  {runs['upstream']}")
        print(f"ours (intensity mean + label mode aggregated): median {us:6.2f} s  {runs['ours']}")
        print(f"ours / upstream per pair: {[round(r, 2) for r in paired]}")
        med = statistics.median(paired)
        print(f"median paired ratio {med:.2f} -> aggregation adds {100 * (med - 1):.0f}% (target <= 25%)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
