"""The vectorized engine vs upstream ``build_pyramid``, on the same level-0 stores, in one run.

Stores (level 0 written once into the sample cache):
  points       the tutorial's 500,000 uniform points (intensity, label), factors [(2,1)]*3
  streamlines  the tutorial's 10,000 random-walk streamlines, factors [(2,1),(2,4),(2,4)], seed 42

Each build runs in its own process on a fresh copy (so peak memory is the
build's own; it is printed as peak RSS over the process after imports).
Timing starts after ``zarr_vectors`` is imported, for both runs.
Upstream builds geometry and links only; ours also aggregates every
vertex attribute onto every level. Ours runs twice: with its default
(``chunk_scale="auto"``: coarse chunks grow with the coarsen factor) and
with level 0's chunk grid on every level (``chunk_scale=1``, upstream's
layout). Builds alternate order across repeats.

"I/O floor": the files each run added, rewritten with the same sizes
and folders by plain ``open``/``write`` into the same file system. No
writer of that output can be faster, so ``upstream / floor`` bounds the
speed-up any engine can reach for it here.

--tiny runs the same builds on 5,000 points in a 400-unit cube and 200
streamlines in 400-unit chunks (a few dozen chunks, so a few hundred
files), written into the work folder (not the cache), in seconds: a smoke test.

    python benchmarks/build_pyramid.py [--repeats 1] [--only points|streamlines] [--where DIR] [--tiny]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {
    "points": ([(2.0, 1.0)] * 3, dict(agg_mode="mean", agg_overrides={"label": "mode"})),
    "streamlines": ([(2.0, 1.0), (2.0, 4.0), (2.0, 4.0)], dict(sparsity_seed=42)),
}
RUNS = ("upstream", "ours", "ours-grid1")
SIZES = {"points": 500_000, "streamlines": 10_000}
TINY_SIZES = {"points": 5_000, "streamlines": 200}
TINY_LAYOUT = {"points": dict(extent=400.0), "streamlines": dict(chunk=400.0, bin_size=100.0)}


def level0(case: str, tiny_in: Path | None = None) -> Path:
    """The case's level-0 store: cached at full size, or (``tiny_in``) a tiny one written into that folder."""
    from napari_zarr_vectors import samples

    if tiny_in is None:
        path, n, layout = samples.cache_dir() / f"bench_{case}_level0.zv", SIZES[case], {}
    else:
        path, n, layout = tiny_in / f"tiny_{case}_level0.zv", TINY_SIZES[case], TINY_LAYOUT[case]
    if not path.exists():
        if case == "points":
            samples.make_uniform_point_cloud(path, n, factors=None, **layout)  # the uniform cloud it always built
        else:
            samples.make_streamlines(path, n, factors=None, **layout)
    return path


def _peak_kb() -> int:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited from the parent over exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child(case: str, run: str, path: str) -> None:
    """One timed build in this process; prints a JSON line."""
    import zarr_vectors.building  # noqa: F401  (imports are not the build: ~0.35 s, paid by both runs alike)
    import zarr_vectors.core.arrays  # noqa: F401
    import zarr_vectors.multiresolution.coarsen  # noqa: F401

    from napari_zarr_vectors import pyramid, store

    factors, options = CASES[case]
    before = _peak_kb()
    t = time.perf_counter()
    if run == "upstream":
        store.upstream_build_pyramid(path, factors, sparsity_seed=options.get("sparsity_seed"))
    else:
        pyramid.build_pyramid(path, factors, chunk_scale=1 if run == "ours-grid1" else None, **options)
    seconds = time.perf_counter() - t
    peak = _peak_kb()
    info = store.open_info(path)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_mb": peak / 1024,
                "grew_mb": (peak - before) / 1024,
                "vertices": [lv.vertex_count for lv in info.levels],
                "files": sum(len(f) for _, _, f in os.walk(path)),
            }
        )
    )


def file_names(root: Path) -> set[str]:
    return {str(f.relative_to(root)) for f in root.rglob("*") if f.is_file()}


def added_files(have: set[str], built: Path) -> list[tuple[str, int]]:
    """(relative path, size) of every file in ``built`` whose name is not in ``have``."""
    return [
        (rel, f.stat().st_size)
        for f in built.rglob("*")
        if f.is_file() and (rel := str(f.relative_to(built))) not in have
    ]


def io_floor(files: list[tuple[str, int]], where: Path) -> float:
    """Seconds to write these files (same folders, same sizes) with plain open/write."""
    shutil.rmtree(where, ignore_errors=True)
    t = time.perf_counter()
    made: set[Path] = set()
    for rel, size in files:
        target = where / rel
        if target.parent not in made:
            target.parent.mkdir(parents=True, exist_ok=True)
            made.add(target.parent)
        with open(target, "wb") as fh:
            fh.write(b"\0" * size)
    seconds = time.perf_counter() - t
    shutil.rmtree(where, ignore_errors=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--only", choices=list(CASES))
    parser.add_argument("--where", help="folder for the copies (default: a temporary folder)")
    parser.add_argument("--tiny", action="store_true", help="5,000 points / 200 streamlines: a smoke run")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    work = Path(tempfile.mkdtemp(prefix="nzv-bench-", dir=args.where))
    try:
        for case in [args.only] if args.only else list(CASES):
            base = level0(case, work if args.tiny else None)
            base_files = file_names(base)
            results: dict[str, list[dict]] = {r: [] for r in RUNS}
            for rep in range(args.repeats):
                for run in RUNS if rep % 2 == 0 else RUNS[::-1]:
                    copy = work / f"{case}-{run}.zv"
                    shutil.rmtree(copy, ignore_errors=True)
                    shutil.copytree(base, copy)
                    os.sync()
                    out = subprocess.run(
                        [sys.executable, __file__, "--child", case, run, str(copy)],
                        check=True,
                        capture_output=True,
                        text=True,
                    ).stdout
                    result = json.loads(out.strip().splitlines()[-1])
                    result["floor"] = io_floor(added_files(base_files, copy), work / "floor")
                    results[run].append(result)
                    shutil.rmtree(copy)
            up = statistics.median(r["seconds"] for r in results["upstream"])
            factors, _ = CASES[case]
            print(f"\n{case}: level 0 {results['upstream'][0]['vertices'][0]:,} vertices, factors {factors}")
            for run in RUNS:
                rs = results[run]
                sec = statistics.median(r["seconds"] for r in rs)
                floor = statistics.median(r["floor"] for r in rs)
                peak, grew = max(r["peak_mb"] for r in rs), max(r["grew_mb"] for r in rs)
                print(
                    f"  {run:10s} {sec:7.2f} s  x{up / sec:5.1f} vs upstream  "
                    f"peak RSS {peak:6.0f} MB (+{grew:.0f} in build)  "
                    f"levels {rs[0]['vertices']}  files {rs[0]['files']:,}  "
                    f"I/O floor {floor:5.2f} s (upstream / floor x{up / floor:.1f})"
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
