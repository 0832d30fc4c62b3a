"""Level-of-detail viewing: open-to-first-draw and camera-to-drawn latency, against baselines in the same run.

(a) the 2,000,000-point store (4 levels) opened by the plugin vs all of
    level 0 added as one Points layer;
(b) from the last camera event to the swapped data drawn, median over 20
    moves that each need new data (zooms and pans across the store);
(c) 10,000 streamlines opened by the plugin vs all of them added as
    napari Shapes paths (the baseline takes minutes: run it with --shapes);
    then, without a viewer, the refine's box read for six zoomed views vs
    the upstream whole-object read it replaced (time and vertices drawn);
(d) a clustered store (4 dense blobs in a sparse background, 1,025,000
    points) viewed whole: vertices drawn with a level per region vs one
    level for the whole view, at the same budget.

Run headless with:

    xvfb-run -a -s "-screen 0 1280x1024x24" python benchmarks/lod.py [--shapes] [--tiny] [--only-lines]

--tiny: the same steps (with the Shapes baseline) on 20,000 points (bins
of 20, so as full as the big store's), budgets of 2,500 and 500, 3 moves,
1 repeat, and 200 streamlines, in a temporary folder (not the cache): a
smoke test of seconds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication

from _common import PLUGIN, all_of_level0_as_points, drawn, open_with_plugin
from napari_zarr_vectors import lod, samples, store
from napari_zarr_vectors._qt import follow as _follow


def two_million_store(tiny_in: Path | None = None) -> str:
    """The cached 2,000,000-point store, or (``tiny_in``) 20,000 points as full per bin, written into that folder."""
    path = samples.cache_dir() / "bench_two_million_2d.zv" if tiny_in is None else tiny_in / "tiny_2d.zv"
    n, bin_size = (2_000_000, 2.0) if tiny_in is None else (20_000, 20.0)
    if not store.is_store(path):
        if tiny_in is None:
            print("building the 2,000,000-point store once (~40 s) ...", flush=True)
        samples.make_uniform_point_cloud(  # every bin equally full, as this benchmark has always measured
            path, n=n, extent=2000.0, chunk=200.0, bin_size=bin_size, factors=[(2.0, 1.0)] * 3, ndim=2
        )
    return str(path)


def clustered_store(tiny_in: Path | None = None) -> str:
    """The cached clustered store (1,025,000 points), or (``tiny_in``) 42,000 points written into that folder."""
    if tiny_in is None:
        path = samples.cache_dir() / "bench_clustered_2d.zv"
        kw: dict = {}
    else:
        path = tiny_in / "tiny_clustered.zv"
        kw = {"background": 2_000, "blobs": 2, "per_blob": 20_000, "sigma": 60.0, "extent": 1000.0, "chunk": 100.0}
    if not store.is_store(path):
        samples.make_clustered_point_cloud(path, **kw)
    return str(path)


def per_region_vs_one_level(path: str, budget: int | None) -> None:
    """(d): the store viewed whole, a level per region and then one level, in one viewer."""
    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    follower = next(f for f in map(_follow.follower_of, viewer.open(path, plugin=PLUGIN)) if f is not None)
    if budget is not None:
        follower.set_budget(budget)
    rows = []
    for per_region in (True, False):
        follower.lod.per_region = per_region
        follower.lod.forget_shown()
        follower.schedule(immediately=True)
        t = time.perf_counter()
        while not follower.idle:
            app.processEvents()
            time.sleep(0.001)
        drawn(viewer)
        levels = follower.point_levels
        shown = {lv: int((levels == lv).sum()) for lv in follower.levels_shown} if levels is not None else {}
        rows.append((per_region, follower.vertex_count, follower.levels_shown, shown, time.perf_counter() - t))
    viewer.close()
    print(f"(d) clustered store viewed whole, budget {follower.budget:,}: {path}")
    for per_region, n, levels, shown, seconds in rows:
        label = "a level per region" if per_region else "one level         "
        detail = ", ".join(f"level {lv}: {k:,}" for lv, k in shown.items()) if shown else f"level {levels[0]}"
        print(f"    {label}: {n:,} vertices drawn ({detail}); {seconds:.2f} s to drawn")
    print(f"    ratio: {rows[0][1] / max(rows[1][1], 1):.1f}x the vertices within the same budget")


def all_as_shapes(path: str) -> float:
    viewer = napari.Viewer(show=True)
    t = time.perf_counter()
    data = store.read_level(path, 0)
    viewer.add_shapes([p[:, ::-1] for p in data.parts()], shape_type="path", edge_width=2)
    viewer.dims.ndisplay = 3
    drawn(viewer)
    elapsed = time.perf_counter() - t
    viewer.close()
    return elapsed


def camera_latency(path: str, moves: int, budget: int | None = None, seed: int = 0) -> list[dict[str, float]]:
    """Per move: seconds from the last camera event to the new data drawn, and where they went."""
    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    # a point cloud opens with its (hidden) density image first: follow the Points layer
    follower = next(f for f in map(_follow.follower_of, viewer.open(path, plugin=PLUGIN)) if f is not None)

    def wait_idle() -> None:
        while not follower.idle:
            app.processEvents()
            time.sleep(0.001)

    wait_idle()
    if budget:  # 0 or None: the default budget for this machine
        follower.set_budget(budget)
        wait_idle()
    camera = viewer.scene.camera
    rng = np.random.default_rng(seed)
    width0 = viewer.canvas.size[1] / camera.zoom
    out = []
    for i in range(moves):
        swaps = follower.swaps
        fraction = [0.05, 0.2, 1.0][i % 3]  # a 5% window, a 20% window, the whole store
        camera.zoom = viewer.canvas.size[1] / (fraction * width0)
        camera.center = tuple(rng.uniform(200, 1800, 2))  # the last camera event
        t = time.perf_counter()
        while follower.swaps == swaps:
            app.processEvents()
            time.sleep(0.001)
            if time.perf_counter() - t > 30:
                raise RuntimeError("no swap within 30 s")
        swapped = time.perf_counter()
        drawn(viewer)
        done = time.perf_counter()
        work = follower.last_work_seconds
        out.append(
            {
                "total": done - t,
                "wait": follower.last_wait_seconds,
                "read": work.get("read", float("nan")),
                "payload": work.get("payload", float("nan")),
                "swap": follower.last_swap_seconds,
                "draw": done - swapped,
                "level": "-".join(map(str, follower.levels_shown[:: max(len(follower.levels_shown) - 1, 1)])),
                "vertices": follower.vertex_count,
            }
        )
        wait_idle()
    viewer.close()
    return out


def report_latency(path: str, moves: int, budget: int | None) -> None:
    runs = camera_latency(path, moves, budget)
    steps = ("total", "wait", "read", "payload", "swap", "draw", "vertices")
    med = {k: statistics.median(r[k] for r in runs) for k in steps}
    ms = {k: med[k] * 1000 for k in steps}
    label = f"budget {budget:,}" if budget else "default budget"
    print(f"(b) {label}: last camera event -> swapped data drawn, {moves} moves")
    print(
        f"    median {ms['total']:.0f} ms (target <= 300 ms); min {min(r['total'] for r in runs) * 1000:.0f}, "
        f"max {max(r['total'] for r in runs) * 1000:.0f}"
    )
    print(
        f"    medians per step: wait {ms['wait']:.0f} ms (debounce or event loop), read {ms['read']:.0f} ms, "
        f"payload {ms['payload']:.0f} ms (worker); swap {ms['swap']:.0f} ms (GUI); draw {ms['draw']:.0f} ms (GL)"
    )
    plugin = ms["total"] - ms["draw"]
    print(f"    plugin's part (all but the draw): {plugin:.0f} ms (target <= 150 ms)")
    print(
        f"    levels shown (finest-coarsest): {' '.join(r['level'] for r in runs)}; "
        f"vertices median {int(med['vertices']):,}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, help="opens per way (default 3; 1 with --tiny)")
    parser.add_argument("--moves", type=int, help="camera moves for (b) (default 20; 3 with --tiny)")
    parser.add_argument("--shapes", action="store_true", help="run (c)'s Shapes baseline (minutes; always with --tiny)")
    parser.add_argument(
        "--budgets",
        type=int,
        nargs="*",
        help="vertex budgets for (b), 0 the default (default 0 250000; 2500 500 with --tiny)",
    )
    parser.add_argument("--tiny", action="store_true", help="20,000 points, 200 streamlines: a smoke run")
    parser.add_argument("--only-lines", action="store_true", help="run (c) only (streamlines), not (a) and (b)")
    args = parser.parse_args()
    tiny = args.tiny
    if args.repeats is None:
        args.repeats = 1 if tiny else 3
    if args.moves is None:
        args.moves = 3 if tiny else 20
    if args.budgets is None:
        args.budgets = [2_500, 500] if tiny else [0, 250_000]
    args.shapes = args.shapes or tiny
    if tiny:
        with tempfile.TemporaryDirectory(prefix="nzv-bench-") as tmp:
            run(args, Path(tmp))
    else:
        run(args, None)


def run(args: argparse.Namespace, tiny_in: Path | None) -> None:
    """(a) to (d) on the full-size stores, or (``tiny_in``) on tiny ones written into that folder."""
    if not args.only_lines:
        points(args, tiny_in)
    streamlines(args, tiny_in)
    if not args.only_lines:
        per_region_vs_one_level(clustered_store(tiny_in), 2_500 if tiny_in is not None else None)


def points(args: argparse.Namespace, tiny_in: Path | None) -> None:
    """(a) and (b): the 2,000,000-point store (or the tiny one)."""
    path = two_million_store(tiny_in)
    info = store.open_info(path)
    print(f"(a) store: {path}")
    print("    levels: " + ", ".join(f"{lv.index}:{lv.vertex_count:,}" for lv in info.levels))
    plugin, baseline, refined = [], [], []
    for _ in range(args.repeats):  # interleaved so drift hits both
        baseline.append(all_of_level0_as_points(path))
        plugin.append(open_with_plugin(path, refined))
    p, b = statistics.median(plugin), statistics.median(baseline)
    print(f"    plugin open to first draw (median of {args.repeats}): {p:.2f} s")
    print(f"    plugin open to refined view at the budget (median): {statistics.median(refined):.2f} s")
    print(f"    all of level 0 as Points  (median of {args.repeats}): {b:.2f} s")
    print(f"    ratio: {b / p:.1f}x faster (target >= 10x)")

    for budget in args.budgets or [None]:
        report_latency(path, args.moves, budget)


def streamlines(args: argparse.Namespace, tiny_in: Path | None) -> None:
    """(c): 10,000 streamlines (or 200) opened by the plugin, and refined."""
    if tiny_in is None:
        lines, n_lines = str(samples.sample_store("synthetic_streamlines.zv")), "10,000"
    else:
        lines, n_lines = str(samples.make_streamlines(tiny_in / "tiny_streamlines.zv", 200)), "200"
    refined = []
    t_plugin = statistics.median([open_with_plugin(lines, refined) for _ in range(args.repeats)])
    print(f"(c) {n_lines} streamlines: plugin open to first draw (median of {args.repeats}): {t_plugin:.2f} s")
    print(f"    to refined view at the budget (median): {statistics.median(refined):.2f} s")
    if args.shapes:
        t_shapes = all_as_shapes(lines)
        print(f"    all {n_lines} as Shapes paths: {t_shapes:.1f} s")
        print(f"    ratio: {t_shapes / t_plugin:.0f}x faster (target >= 30x)")
    else:
        print("    (Shapes baseline skipped; --shapes runs it, ~2 minutes here)")
    refine_reads(lines, n_lines)


#: (c)'s zoomed views: (fraction of the store's width shown, centre as a fraction of its extent).
REFINE_VIEWS = [(0.05, 0.5), (0.05, 0.6), (0.2, 0.55), (0.2, 0.7), (0.5, 0.5), (1.0, 0.5)]


class WholeObjectRefine(lod.LevelOfDetail):
    """The refine before issue 18: upstream's per-object bbox read, every whole polyline crossing the box's chunks."""

    def refresh_levels(self) -> None:  # drawn-vertex ratios from 64 sampled objects a level, as then
        info = store.open_info(self.path)
        counts = {lv.index: store.chunk_vertex_counts(self.path, lv.index) for lv in info.levels}
        self.levels = [lod.LevelGrid(lv.index, lv.bin_shape, lv.chunk_shape, *counts[lv.index]) for lv in info.levels]
        self._objects = {lv.index: lv.object_count for lv in info.levels}
        self._drawn_ratio = {
            lv.index: store.estimate_drawn_vertices(self.path, lv.index) / max(lv.vertex_count, 1) for lv in info.levels
        }
        self.cache.clear()
        self._signature = store.signature(self.path)

    def _read_polylines(self, level: int, box: lod.Box, generation: int) -> lod.Region:
        data = store.read_level(self.path, level, kind=self.kind, bbox=(box.lo, box.hi))
        self.reads += 1
        return lod.Region(**vars(data), generation=generation, box=box)


def refine_reads(path: str, n_lines: str, budget: int = 250_000) -> None:
    """(c) refine, no viewer: the controller's box read vs the whole-object refine it replaced, per zoomed view.

    Each view gets fresh controllers (level tables read first, as a
    follower has them after its first move), so every read is cold.  The
    old refine reads whole objects, and when they overshoot the budget it
    reads the next coarser level again: both reads are in its time.
    """
    info = store.open_info(path)
    lo, hi = info.bounds
    rows, t_levels = [], {lod.LevelOfDetail: [], WholeObjectRefine: []}
    for fraction, where in REFINE_VIEWS:
        width = fraction * float(np.max(hi - lo))
        centre = lo + where * (hi - lo)
        view = lod.View(
            center=tuple(centre[::-1]),
            zoom=800 / width,
            canvas_size=(600, 800),
            ndisplay=3,
            displayed=(0, 1, 2),
            point=tuple(centre[::-1]),
            scale=(1.0,) * 3,
            translate=(0.0,) * 3,
        )
        row = [fraction]
        for kind in (lod.LevelOfDetail, WholeObjectRefine):
            ctl = kind(path, info.kind, budget=budget, path_budget=_follow.VECTORS_PATH_BUDGET)
            t = time.perf_counter()
            ctl.refresh_levels()
            t_levels[kind].append(time.perf_counter() - t)
            t = time.perf_counter()
            region = ctl.update(view, ctl.request())
            row += [region.level, time.perf_counter() - t, region.vertex_count, ctl.reads]
        rows.append(row)
    new_t, old_t = (statistics.median(t_levels[k]) for k in (lod.LevelOfDetail, WholeObjectRefine))
    print(f"(c) refine, {n_lines} streamlines, budget {budget:,}, no viewer; median per view:")
    print(f"    level tables (once, before the first read): {new_t:.2f} s vs {old_t:.2f} s sampling objects")
    for fraction, level, new, v_new, _, old_level, old, v_old, reads in rows:
        print(
            f"    {fraction:>4.0%} of the width: box read level {level}, {new * 1000:5.0f} ms, {v_new:>7,} vertices; "
            f"whole objects level {old_level}, {old * 1000:5.0f} ms ({reads} reads), {v_old:>7,} vertices"
        )
    new_s, old_s = statistics.median(r[2] for r in rows), statistics.median(r[6] for r in rows)
    print(f"    median refine read {new_s * 1000:.0f} ms vs {old_s * 1000:.0f} ms whole objects (target <= 1 s)")
    print(f"    ratio: box read {old_s / new_s:.1f}x faster than whole objects")


if __name__ == "__main__":
    main()
