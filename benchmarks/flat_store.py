"""Open a store with only level 0 (no pyramid): the plugin's even subsample vs. drawing every point.

A 1,500,000-point store is written with ``store.write_point_cloud`` (what
saving a layer does), then opened two ways, each in its own process so
its peak memory (VmHWM) is its own:

- plugin: ``viewer.open(path)`` with no ``plugin=``, until the first draw
  and until the follower settled (the view refined within the budget);
- baseline: what opening did before level-0-only stores honoured the
  budget: all of level 0 read and drawn as one Points layer.

Each prints seconds, points drawn and peak memory; the parent prints the
ratios.  Run headless with:

    xvfb-run -a -s "-screen 0 1280x1024x24" python benchmarks/flat_store.py [--tiny]

--tiny writes 20,000 points with a 2,000-point budget in a temporary folder: a smoke test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def peak_mb() -> float:
    """This process's peak resident memory in MB (VmHWM: its own, not a parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # pragma: no cover - not Linux


def write_store(path: Path, n: int) -> None:
    """``n`` points in clusters over a 2000 x 1500 x 12 section, with a float attribute, level 0 only."""
    from napari_zarr_vectors import store

    rng = np.random.default_rng(0)
    centres = rng.uniform((0, 0, 0), (2000, 1500, 12), size=(40, 3))
    pick = rng.integers(0, len(centres), n)
    pos = centres[pick] + rng.normal(0, (120, 120, 3), size=(n, 3))
    pos = np.clip(pos, (0, 0, 0), (2000, 1500, 12)).astype(np.float32)
    store.write_point_cloud(str(path), pos, attributes={"intensity": rng.random(n).astype(np.float32)})


def child(way: str, path: str) -> None:
    """One open in this process; prints a JSON line of what it measured."""
    import napari

    from _common import drawn
    from napari_zarr_vectors import _reader, store
    from napari_zarr_vectors._qt import follow

    _reader.prefer_this_reader_for_stores()  # as after the first store a user opened (napari asks once)
    viewer = napari.Viewer(show=True)
    t = time.perf_counter()
    if way == "plugin":
        viewer.open(path, plugin=None)  # what File > Open and `napari PATH` do (viewer.open defaults to "napari")
        drawn(viewer)
        first = time.perf_counter() - t
        follow.wait_settled(viewer, timeout=600)
        drawn(viewer)
    else:
        data = store.read_level(path, 0)
        viewer.add_points(
            np.ascontiguousarray(data.positions[:, ::-1]), features=dict(data.vertex_attributes), face_color="intensity"
        )
        viewer.dims.ndisplay = 3
        drawn(viewer)
        first = time.perf_counter() - t
    settled = time.perf_counter() - t
    points = sum(len(layer.data) for layer in viewer.layers if type(layer).__name__ == "Points")
    print(json.dumps({"first": first, "settled": settled, "points": points, "peak_mb": peak_mb()}), flush=True)
    viewer.close()


def run(way: str, path: Path, env: dict[str, str]) -> dict:
    here = Path(__file__).resolve().parent
    done = subprocess.run(
        [sys.executable, str(here / "flat_store.py"), "--child", way, str(path)],
        env=env,
        cwd=here,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        raise SystemExit(f"{way} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="20,000 points, a 2,000-point budget: a smoke run")
    parser.add_argument("--points", type=int, default=1_500_000)
    parser.add_argument("--budget", type=int, help="vertex budget (default: the machine's)")
    parser.add_argument("--child", nargs=2, metavar=("WAY", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    n, budget = (20_000, 2_000) if args.tiny else (args.points, args.budget)
    env = dict(os.environ)
    if budget is not None:
        env["NAPARI_ZARR_VECTORS_VERTEX_BUDGET"] = str(budget)
    with tempfile.TemporaryDirectory(prefix="nzv-bench-") as tmp:
        path = Path(tmp) / "flat.zv"
        t = time.perf_counter()
        write_store(path, n)
        print(f"store: {n:,} points, level 0 only (written in {time.perf_counter() - t:.1f} s)")
        print(f"budget: {budget if budget is not None else 'the machine default'}")
        got = {way: run(way, path, env) for way in ("baseline", "plugin")}
    for way, m in got.items():
        print(
            f"  {way:<8} first draw {m['first']:6.2f} s  settled {m['settled']:6.2f} s  "
            f"points drawn {m['points']:>9,}  peak {m['peak_mb']:7.0f} MB"
        )
    b, p = got["baseline"], got["plugin"]
    first, peak = b["first"] / p["first"], b["peak_mb"] / p["peak_mb"]
    print(f"  ratio baseline / plugin: first draw {first:.1f}x faster, peak memory {peak:.1f}x less")
    print(f"  points drawn: {p['points']:,} of {n:,} ({b['points'] / max(p['points'], 1):.0f}x fewer)")


if __name__ == "__main__":
    main()
