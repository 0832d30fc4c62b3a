"""Every benchmark script runs end to end on tiny data (``--tiny``), so none rots unnoticed.

No timing is asserted: only that each script exits cleanly and still prints
its ratio against the baseline it measured in the same run. Each runs in a
subprocess with its own cache and temporary folders, so no real cache is
touched (and a ``--tiny`` run that falls back to a full-size store shows up
as a non-empty cache).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
SCRIPTS = sorted(p.stem for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_"))
XVFB = ["xvfb-run", "-a", "-s", "-screen 0 1280x1024x24"]

#: What each script prints for its ratio(s) against the baseline; every pattern must match stdout.
RATIOS: dict[str, list[str]] = {
    "build_pyramid": [r"^  ours +[\d.]+ s  x *[\d.]+ vs upstream", r"^  ours-grid1 +[\d.]+ s  x *[\d.]+ vs upstream"],
    "density": [r"^\S.* plugin 3D .* [\d.]+ +[\d.]+$", r"^\S.* plugin 2D .* [\d.]+ +[\d.]+$"],
    "crash_safety": [r"^  ratio journaled / plain: [\d.]+x"],
    "drill": [r"^  ratio baseline / drill +[\d.]+x"],
    "import": [r"^  ratio plugin / upstream: [\d.]+x the rows per second"],
    "flat_store": [r"^  ratio baseline / plugin: first draw [\d.]+x faster, peak memory [\d.]+x less"],
    "lod": [
        r"^    ratio: [\d.]+x faster \(target >= 10x\)",
        r"^    ratio: \d+x faster \(target >= 30x\)",
        r"^    ratio: [\d.]+x the vertices within the same budget",
    ],
    "many_levels": [r"^  ratio open   [\d,]+ / 10: [\d.]+x", r"^  ratio remove [\d,]+ / 10: [\d.]+x"],
    "open_store": [r"^ratio baseline / plugin: [\d.]+x faster"],
    "remote": [
        r"^    ratio upstream \[obstore\] / plugin: [\d.]+x",
        r"^\(b\) camera move .*\n    median [\d.]+ s",
        r"^\(c\) requests per view change: median \d+",
    ],
}
#: Scripts that open a napari viewer (they need a display: xvfb-run when there is none).
VIEWER = {"flat_store", "lod", "open_store", "remote"}


def test_every_script_is_covered() -> None:
    assert sorted(RATIOS) == SCRIPTS, "a benchmark script without a --tiny test (add its ratio pattern to RATIOS)"


@pytest.mark.parametrize("name", SCRIPTS)
def test_benchmark_runs_tiny(name: str, tmp_path: Path) -> None:
    cache, tmp = tmp_path / "cache", tmp_path / "tmp"
    tmp.mkdir()
    env = dict(os.environ, NAPARI_ZARR_VECTORS_CACHE=str(cache), TMPDIR=str(tmp))
    command = [sys.executable, str(BENCHMARKS / f"{name}.py"), "--tiny"]
    if name in VIEWER and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        if shutil.which("xvfb-run") is None:
            pytest.fail(f"{name}.py opens a viewer: run the suite under xvfb-run as the README says")
        command = XVFB + command
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    out = f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
    assert done.returncode == 0, out
    assert "Traceback" not in done.stderr, out
    for pattern in RATIOS[name]:
        assert re.search(pattern, done.stdout, flags=re.M), f"no line matching {pattern!r}\n{out}"
    left = sorted(str(p.relative_to(cache)) for p in cache.rglob("*")) if cache.exists() else []
    assert left == [], f"--tiny wrote into the cache: {left[:5]}"
