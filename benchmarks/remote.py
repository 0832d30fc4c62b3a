"""Remote stores: the 2,000,000-point store on a local web server that adds 50 ms to every request.

50 ms is a same-region cloud round trip.  In one run:

(a) open to first draw: ``viewer.open(url)`` until the first frame is drawn,
    vs upstream's own ``read_points(url, level=<coarsest>)`` (the data only,
    no viewer), with each backend upstream offers: fsspec (the configuration
    the issue measured; needs aiohttp) and obstore (plain http allowed);
(b) camera move to a 5% window somewhere new, from the last camera event to
    the data drawn (median over the moves);
(c) requests per view change (to the web server, counted by it).

Run headless with:

    xvfb-run -a -s "-screen 0 1280x1024x24" python benchmarks/remote.py [--latency 0.05] [--tiny]

--tiny: 20,000 points (benchmarks/lod.py's tiny store), 3 moves, a smoke test of seconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication

from _common import drawn
from lod import two_million_store
from napari_zarr_vectors import lod, store
from napari_zarr_vectors._qt import follow as _follow
from napari_zarr_vectors._serve import StoreServer


def upstream_read(url: str, level: int, backend: str) -> tuple[float, int] | None:
    """Seconds and points of upstream ``read_points(url, level=level)`` through ``backend``; None without it."""
    import zarr_vectors as zv
    from zarr_vectors.types.points import read_points

    if backend == "fsspec":
        try:
            import aiohttp  # noqa: F401 - fsspec's HTTP filesystem needs it
        except ImportError:
            return None
        options = zv.StorageOptions(backend="fsspec")
    else:
        options = zv.StorageOptions(backend="obstore", options={"client_options": {"allow_http": True}})
    t = time.perf_counter()
    out = read_points(zv.open(url, storage=options)._group, level=level)
    return time.perf_counter() - t, len(out["positions"])


def open_to_first_draw(viewer: napari.Viewer, url: str) -> tuple[float, list]:
    t = time.perf_counter()
    layers = viewer.open(url, plugin=None)
    drawn(viewer)
    return time.perf_counter() - t, layers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds added to every request (default 0.05)")
    parser.add_argument("--moves", type=int, help="camera moves for (b) (default 10; 3 with --tiny)")
    parser.add_argument("--tiny", action="store_true", help="20,000 points: a smoke run")
    args = parser.parse_args()
    moves = args.moves or (3 if args.tiny else 10)
    if args.tiny:
        # 20,000 points fit the default budget whole: a small one makes each move need new data, as on 2M
        os.environ.setdefault(lod.BUDGET_ENV, "500")
        with tempfile.TemporaryDirectory(prefix="nzv-bench-") as tmp:
            run(Path(two_million_store(Path(tmp))), args.latency, moves)
    else:
        run(Path(two_million_store()), args.latency, moves)


def run(path: Path, latency: float, moves: int) -> None:
    info = store.open_info(path)
    coarsest = info.levels[-1].index
    with StoreServer(path.parent, latency=latency) as server:
        url = server.url(path.name)
        print(f"store: {url} ({latency * 1000:.0f} ms per request)")
        print("  levels: " + ", ".join(f"{lv.index}:{lv.vertex_count:,}" for lv in info.levels))

        baselines = {}
        for backend in ("fsspec", "obstore"):
            server.clear()
            got = upstream_read(url, coarsest, backend)
            if got is None:
                print(f"  upstream read_points(url, level={coarsest}) [{backend}]: skipped (pip install aiohttp)")
                continue
            seconds, n = got
            baselines[backend] = seconds
            print(
                f"  upstream read_points(url, level={coarsest}) [{backend}]: {seconds:.2f} s, {n:,} points, "
                f"{len(server.requests)} requests"
            )

        app = QApplication.instance() or QApplication([])
        viewer = napari.Viewer(show=True)
        viewer.window._qt_viewer.canvas.size = (600, 800)
        server.clear()
        first, layers = open_to_first_draw(viewer, url)
        opened_requests = len(server.requests)
        follower = next(f for f in map(_follow.follower_of, layers) if f is not None)
        print(f"(a) plugin open to first draw: {first:.2f} s (target <= 2 s), {opened_requests} requests")
        for backend, seconds in baselines.items():
            print(f"    ratio upstream [{backend}] / plugin: {seconds / first:.1f}x faster (target >= 10x)")
        while not follower.idle:
            app.processEvents()
            time.sleep(0.001)
        drawn(viewer)

        lo, hi = info.bounds
        extent = float(np.max(hi - lo))
        camera = viewer.scene.camera
        rng = np.random.default_rng(0)
        totals, requests, levels = [], [], []
        for _ in range(moves):
            server.clear()
            swaps = follower.swaps
            camera.zoom = viewer.canvas.size[1] / (0.05 * extent)
            camera.center = tuple(rng.uniform(lo + 0.1 * extent, hi - 0.1 * extent)[::-1])  # the last camera event
            t = time.perf_counter()
            while follower.swaps == swaps or not follower.idle:
                app.processEvents()
                time.sleep(0.001)
                if follower.idle and follower.swaps == swaps and time.perf_counter() - t > 2.0:
                    break  # what is shown already covers the new view: nothing to fetch
                if time.perf_counter() - t > 60:
                    raise RuntimeError(f"no swap within 60 s ({follower.last_error})")
            drawn(viewer)
            totals.append(time.perf_counter() - t)
            requests.append(len(server.requests))
            levels.append(follower.level)
        print(f"(b) camera move to a 5% window -> data drawn, {moves} moves:")
        med = statistics.median(totals)
        print(f"    median {med:.2f} s (target <= 1 s); min {min(totals):.2f}, max {max(totals):.2f}")
        print(f"    levels shown: {levels}")
        print(f"(c) requests per view change: median {statistics.median(requests):.0f}, all {requests}")
        print(f"    open: {opened_requests} requests; session cache: {store.remote_stats(url)}")
        viewer.close()


if __name__ == "__main__":
    main()
