"""What crash safety costs a build: journaled builds against the same build with no write session.

The journal (lock, listing, staged metadata, os.sync, publish) is what
keeps a store whole through kill -9 (docs/safety.md).  Target: at most
10% of the build time on 500k points.  Builds alternate (unjournaled,
journaled) so the shared machine's drift hits both; medians are compared.

    python benchmarks/crash_safety.py [--repeats 5] [--tiny]

--tiny builds 5,000 points once each, to check the script still runs.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from napari_zarr_vectors import pyramid, samples, store

FACTORS = [(2.0, 1.0)] * 3


def _build(source: Path, work: Path, *, journaled: bool) -> float:
    target = work / "build.zv"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    real = store.write_session
    if not journaled:  # the same build with no lock, journal, staging or publish step
        store.write_session = lambda *a, **k: contextlib.nullcontext()
    try:
        t = time.perf_counter()
        pyramid.build_pyramid(target, FACTORS, agg_mode="mean", agg_overrides={"label": "mode"})
        return time.perf_counter() - t
    finally:
        store.write_session = real


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--tiny", action="store_true", help="5,000 points, one build each")
    args = parser.parse_args()
    n = 5_000 if args.tiny else 500_000
    repeats = args.repeats or (1 if args.tiny else 5)
    with tempfile.TemporaryDirectory(prefix="nzv-bench-safety-") as tmp:
        work = Path(tmp)
        extent = 400.0 if args.tiny else 2000.0
        source = samples.make_uniform_point_cloud(work / "level0.zv", n=n, extent=extent, factors=None)
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(repeats):
            for journaled in (False, True):
                times[journaled].append(_build(source, work, journaled=journaled))
    plain, safe = statistics.median(times[False]), statistics.median(times[True])
    print(f"{n:,} points, {len(FACTORS)} levels, median of {repeats}:")
    print(f"  build without a write session: {plain:.3f} s")
    print(f"  build journaled (crash-safe):  {safe:.3f} s")
    print(f"  ratio journaled / plain: {safe / plain:.2f}x (target <= 1.10x)")


if __name__ == "__main__":
    main()
