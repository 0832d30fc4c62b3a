"""Open and remove a level of a store whose root lists 10,000 levels, against the same on a 10-level store.

A real three-level store is written, then its root zarr.json is edited to
list N levels (NGFF ``multiscales`` datasets and OME ``zv:level`` nodes),
and each added level gets a folder holding only its group's zarr.json (a
copy of level 2's, renumbered): what opening and removing read, made
cheaply.  Both stores are made the same way in this run, so the figures
that matter are the ratios (10,000 levels against 10): listing and
removing should cost about the levels' metadata, not a walk of every
folder per level.  Run with:

    python benchmarks/many_levels.py [--levels 10000] [--tiny]

--tiny uses 200 levels against 10: a smoke test of seconds.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from napari_zarr_vectors import pyramid, samples, store

BASELINE_LEVELS = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--levels", type=int, default=10_000, help="levels the big store lists (default 10,000)")
    parser.add_argument("--repeats", type=int, default=3, help="opens and removals per store (default 3)")
    parser.add_argument("--tiny", action="store_true", help="200 levels against 10, once: a smoke run")
    args = parser.parse_args()
    levels, repeats = (200, 1) if args.tiny else (args.levels, args.repeats)
    with tempfile.TemporaryDirectory(prefix="nzv-bench-") as tmp:
        seed = samples.make_point_cloud(
            Path(tmp) / "seed.zv", 2_000, extent=100.0, bin_size=5.0, factors=[(2.0, 1.0), (2.0, 1.0)]
        )
        small = measure(Path(tmp), seed, BASELINE_LEVELS, repeats)
        big = measure(Path(tmp), seed, levels, repeats)
    print("wall seconds (CPU seconds of this process: the figure to trust on a busy machine)")
    for n, (o, r, oc, rc) in ((BASELINE_LEVELS, small), (levels, big)):
        print(f"levels {n:>6,}: open {o:.3f} s ({oc:.3f} CPU)  remove {r:.3f} s ({rc:.3f} CPU)")
    print("  targets at 10,000 levels: open and remove each under 1 s")
    print(f"  ratio open   {levels:,} / {BASELINE_LEVELS}: {big[0] / small[0]:.1f}x")
    print(f"  ratio remove {levels:,} / {BASELINE_LEVELS}: {big[1] / small[1]:.1f}x")


def many_levels(seed: Path, target: Path, levels: int) -> Path:
    """A copy of the three-level ``seed`` whose root lists ``levels`` levels, levels 3.. holding only zarr.json."""
    import shutil

    shutil.copytree(seed, target)
    root = json.loads((target / "zarr.json").read_text())
    attrs = root["attributes"]
    datasets = attrs["multiscales"][0]["datasets"]
    nodes = attrs["ome"]["nodes"]
    top_ds, top_node = datasets[-1], nodes[-1]
    level_meta = json.loads((target / "2" / "zarr.json").read_text())
    for k in range(3, levels):
        ds = copy.deepcopy(top_ds)  # the same bin as level 2: a doubling per level would overflow a float
        ds["path"] = str(k)
        datasets.append(ds)
        node = dict(top_node, name=str(k))
        nodes.append(node)
        meta = copy.deepcopy(level_meta)
        meta["attributes"]["zarr_vectors_level"].update(level=k, parent_level=k - 1, arrays_present=[])
        os.mkdir(target / str(k))
        (target / str(k) / "zarr.json").write_text(json.dumps(meta))
    (target / "zarr.json").write_text(json.dumps(root))
    return target


def measure(tmp: Path, seed: Path, levels: int, repeats: int) -> tuple[float, float, float, float]:
    """Median wall seconds to open (``open_info``, handle forgotten first) and to remove the coarsest level;
    then the same in CPU seconds."""
    opens, removes, open_cpu, remove_cpu = [], [], [], []
    for r in range(repeats):
        path = many_levels(seed, tmp / f"levels-{levels}-{r}.zv", levels)
        store.forget(path)
        t, c = time.perf_counter(), time.process_time()
        info = store.open_info(path)
        opens.append(time.perf_counter() - t)
        open_cpu.append(time.process_time() - c)
        assert len(info.levels) == levels, len(info.levels)
        store.forget(path)
        t, c = time.perf_counter(), time.process_time()
        pyramid.remove_resolution_level(path, levels - 1)
        removes.append(time.perf_counter() - t)
        remove_cpu.append(time.process_time() - c)
        assert store.list_levels(path) == list(range(levels - 1))
    return tuple(statistics.median(v) for v in (opens, removes, open_cpu, remove_cpu))  # type: ignore[return-value]


if __name__ == "__main__":
    main()
