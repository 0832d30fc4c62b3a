"""Import a Xenium-style Parquet table with a pyramid: the plugin's ``import_file`` vs the upstream path.

A generated transcripts table (the vendor's column names: x/y/z_location,
feature_name, qv, cell_id, overlaps_nucleus, transcript_id) over a
3000 x 2000 x 12 um section is imported two ways, each in its own process
so its peak memory (VmHWM) is its own:

- plugin: ``napari_zarr_vectors.import_file`` (record batches, text kept
  as dictionary codes, level 0 then the default suggested pyramid);
- upstream: what a user without the plugin does: ``pyarrow`` reads the
  whole table, ``zarr_vectors`` ``write_points`` writes level 0 (the
  numeric columns only: upstream ``write_points`` takes no text column),
  then upstream ``build_pyramid`` builds the same levels.

Each prints rows per second and peak memory; the parent prints the ratio.
Targets (issue 27): at least 3x the upstream path's rows per second, and
at most 2 GB peak for the plugin. Run with:

    python benchmarks/import.py [--rows 20000000] [--tiny]

--tiny: 20,000 rows in a temporary folder, a smoke test.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BATCH = 1_000_000


def peak_mb() -> float:
    """This process's peak resident memory in MB (VmHWM: its own, not a parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # pragma: no cover - not Linux


def write_table(path: Path, rows: int) -> None:
    """``rows`` transcripts in clusters (cells) over a thin section, written batch by batch (bounded memory)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    genes = np.array([f"Gene{i:03d}" for i in range(300)])
    centres = rng.uniform((0, 0, 0), (3000, 2000, 12), size=(5000, 3))
    writer = None
    try:
        for start in range(0, rows, BATCH):
            n = min(BATCH, rows - start)
            cell = rng.integers(0, len(centres), n)
            pos = np.clip(centres[cell] + rng.normal(0, (8, 8, 2), (n, 3)), 0, (3000, 2000, 12)).astype(np.float32)
            batch = pa.table(
                {
                    "transcript_id": np.arange(start, start + n, dtype=np.uint64),
                    "cell_id": cell.astype(np.int64),
                    "overlaps_nucleus": rng.integers(0, 2, n).astype(np.uint8),
                    "feature_name": genes[rng.zipf(1.6, n) % len(genes)],
                    "x_location": pos[:, 0],
                    "y_location": pos[:, 1],
                    "z_location": pos[:, 2],
                    "qv": rng.uniform(20, 40, n).astype(np.float32),
                }
            )
            if writer is None:
                writer = pq.ParquetWriter(path, batch.schema)
            writer.write_table(batch, row_group_size=BATCH)
    finally:
        if writer is not None:
            writer.close()


def child(way: str, table: str, out: str, factors: str) -> None:
    """One import in this process; prints a JSON line of what it measured."""
    import zarr_vectors.building  # noqa: F401  (imports are not the import: paid alike)

    from napari_zarr_vectors import import_file, pyramid, store

    t0 = time.perf_counter()
    if way == "plugin":
        summary = import_file(table, out, progress=None)
        rows, levels = summary.rows_written, list(summary.levels)
        factors_used = None
    else:
        import pyarrow.parquet as pq

        numeric = ["x_location", "y_location", "z_location", "cell_id", "overlaps_nucleus", "qv"]
        t = pq.read_table(table, columns=numeric)
        pos = np.column_stack([t.column(c).to_numpy() for c in numeric[:3]])
        attrs = {c: t.column(c).to_numpy() for c in numeric[3:]}
        del t
        zarr_vectors.building.write_points(
            out, pos, chunk_shape=(200.0, 200.0, 12.0), bin_shape=(25.0, 25.0, 12.0), vertex_attributes=attrs
        )
        rows = len(pos)
        del pos, attrs
        factors_used = json.loads(factors)
        store.upstream_build_pyramid(out, [tuple(f) for f in factors_used])
        levels = pyramid.list_resolution_levels(out)
    seconds = time.perf_counter() - t0
    print(json.dumps({"way": way, "rows": rows, "seconds": seconds, "peak_mb": peak_mb(), "levels": levels}))


def run(way: str, table: Path, out: Path, factors: list) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", way, str(table), str(out), json.dumps(factors)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.exit(f"{way} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--tiny", action="store_true", help="20,000 rows, a smoke test")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    rows = 20_000 if args.tiny else args.rows
    with tempfile.TemporaryDirectory(prefix="nzv-import-bench-") as tmp:
        tmp = Path(tmp)
        table = tmp / "transcripts.parquet"
        t = time.perf_counter()
        write_table(table, rows)
        print(f"table: {rows:,} rows, {table.stat().st_size / 1e6:.0f} MB Parquet ({time.perf_counter() - t:.1f} s)")
        ours = run("plugin", table, tmp / "plugin.zv", [])
        # the upstream path builds as many levels as the plugin's suggestion, each x2
        n_levels = max(len(ours["levels"]) - 1, 1)
        up = run("upstream", table, tmp / "upstream.zv", [[2.0, 1.0]] * n_levels)
        for r in (ours, up):
            print(
                f"  {r['way']:8s} {r['seconds']:8.2f} s  {r['rows'] / r['seconds']:12,.0f} rows/s  "
                f"peak {r['peak_mb']:7.0f} MB  levels {r['levels']}"
            )
        ratio = (ours["rows"] / ours["seconds"]) / (up["rows"] / up["seconds"])
        print(f"  ratio plugin / upstream: {ratio:.2f}x the rows per second (target >= 3x)")
        print(f"  plugin peak memory {ours['peak_mb']:.0f} MB (target <= 2048 MB)")


if __name__ == "__main__":
    main()
