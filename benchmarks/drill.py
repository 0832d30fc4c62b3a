"""Latency of drilling one metanode from level 3 to level 0 of the 500,000-point sample.

Target (issue 5): at most 200 ms here.  The baseline, measured in the same
run, is what a drill costs without chunk-level reads: the whole-level
parent maps of levels 0-2 plus all of level 0.  Both link layouts are
timed: the sample's explicit ±1 links (three composed -1 steps) and an
implicit copy (only +1: children found through the parents' bin
footprint).

--tiny drills once (unless --repeats says otherwise) in 5,000 points made
by the sample's recipe in a 500-unit cube, in a temporary folder (not the
cache): a smoke test of seconds.

    python benchmarks/drill.py [--repeats 15] [--tiny]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_zarr_vectors import drill, pyramid, samples, store

TINY = {"n": 5_000, "extent": 500.0}


def metanodes(path: Path, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coords, counts = store.chunk_vertex_counts(path, 3)
    pick = rng.choice(len(coords), size=n, p=counts / counts.sum())
    return np.array([(*coords[i], rng.integers(counts[i])) for i in pick], dtype=np.int64)


def drill_once(path: Path, key: np.ndarray, *, cold: bool) -> tuple[float, int]:
    """Seconds for one level 3 -> 0 drill from a selected position (locate + children + positions)."""
    d = drill.Drill(path) if cold else drill.drill_for(path)
    position = d.positions(3, key[None])
    t = time.perf_counter()
    if cold:
        d = drill.Drill(path)
    keys = d.locate(3, position)
    kids = d.children(3, keys, 3)
    return time.perf_counter() - t, len(kids)


def whole_level_baseline(path: Path, key: np.ndarray) -> float:
    """Seconds to find the same children from whole-level parent maps and all of level 0."""
    t = time.perf_counter()
    offsets, _, _ = store.handle(path).chunk_offsets(3)
    row = offsets[tuple(key[:-1])] + key[-1]
    to_top = store.parent_map(path, 0, 1)
    for fine in (1, 2):
        up = store.parent_map(path, fine, 1)
        to_top = np.where(to_top >= 0, up[np.maximum(to_top, 0)], -1)
    positions, _ = store.read_rows(path, 0)
    positions[to_top == row]
    return time.perf_counter() - t


def measure(label: str, path: Path, repeats: int) -> None:
    keys = metanodes(path, repeats)
    drill.drill_for(path).children(3, keys[:1], 3)  # imports and first-touch caches
    warm = [drill_once(path, k, cold=False) for k in keys]
    cold = [drill_once(path, k, cold=True)[0] for k in keys[:5]]
    base = [whole_level_baseline(path, k) for k in keys[:3]]
    w = statistics.median(t for t, _ in warm)
    b = statistics.median(base)
    print(
        f"{label}: level 3 -> 0, median {statistics.median(n for _, n in warm):,.0f} children\n"
        f"  drill (store already open)   median {w * 1e3:7.1f} ms   max {max(t for t, _ in warm) * 1e3:7.1f} ms\n"
        f"  drill (first on the store)   median {statistics.median(cold) * 1e3:7.1f} ms\n"
        f"  whole-level baseline         median {b * 1e3:7.1f} ms\n"
        f"  ratio baseline / drill       {b / w:7.1f}x   target <= 200 ms: {'met' if w <= 0.2 else 'NOT met'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, help="drills per layout (default 15; 1 with --tiny)")
    parser.add_argument("--tiny", action="store_true", help="5,000 points in a temporary folder: a smoke run")
    args = parser.parse_args()
    repeats = args.repeats if args.repeats is not None else 1 if args.tiny else 15
    recipe = dict(samples.POINT_SAMPLE, **(TINY if args.tiny else {}))
    with tempfile.TemporaryDirectory() as tmp:
        if args.tiny:
            path = samples.make_point_cloud(Path(tmp) / "sample.zv", **recipe)
            measure("explicit ±1 (the sample's recipe)", path, repeats)
        else:
            path = samples.sample_store("synthetic_points.zv")
            measure("explicit ±1 (the sample)", path, repeats)
        implicit = Path(tmp) / "implicit.zv"
        samples.make_point_cloud(implicit, factors=None, **recipe)  # the sample, level 0
        pyramid.build_pyramid(implicit, samples.POINT_FACTORS, cross_level_storage="implicit")
        measure("implicit +1 only", implicit, repeats)


if __name__ == "__main__":
    main()
