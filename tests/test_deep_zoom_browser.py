"""The Deep Zoom export opens in OpenSeadragon, in headless Chromium, served from localhost.

Needs Debian's ``chromium``, Node.js, and OpenSeadragon and playwright-core
from npm (``npm ci --prefix tests/browser``); ``.ci/run`` installs them and sets
NAPARI_ZARR_VECTORS_REQUIRE_BROWSER=1, which turns a skip into a failure.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_zarr_vectors import density, store

BROWSER = Path(__file__).parent / "browser"
OSD = BROWSER / "node_modules" / "openseadragon" / "build" / "openseadragon"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NODE = shutil.which("node")
REQUIRED = os.environ.get("NAPARI_ZARR_VECTORS_REQUIRE_BROWSER") == "1"


def _missing() -> str | None:
    if CHROMIUM is None:
        return "Chromium is not installed (Debian: apt-get install chromium)"
    if NODE is None:
        return "Node.js is not installed (Debian: apt-get install nodejs npm)"
    if not (OSD / "openseadragon.min.js").is_file() or not (BROWSER / "node_modules" / "playwright-core").is_dir():
        return "OpenSeadragon and playwright-core are not installed (npm ci --prefix tests/browser)"
    return None


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>loading</title>
<style>html, body {{ margin: 0; background: #fff; }} #osd {{ width: 800px; height: 600px; background: #fff; }}</style>
</head><body><div id="osd"></div>
<script src="openseadragon.min.js"></script>
<script>
  const viewer = OpenSeadragon({{
    id: "osd", prefixUrl: "images/", tileSources: "{dzi}",
    showNavigationControl: false, animationTime: 0, blendTime: 0, immediateRender: true,
  }});
  viewer.addHandler("open-failed", (e) => {{ document.title = "failed: " + e.message; }});
  viewer.world.addHandler("add-item", (e) => {{
    e.item.addHandler("fully-loaded-change", (f) => {{ if (f.fullyLoaded) document.title = "loaded"; }});
  }});
</script></body></html>
"""


@contextlib.contextmanager
def _serve(root: Path):
    """A static file server for ``root`` on a free localhost port, for the duration of the block."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _screenshot(url: str, out: Path, profile: Path) -> None:
    """Chromium, driven by playwright-core, waits until OpenSeadragon has drawn every tile, then shoots."""
    run = subprocess.run(
        [NODE, str(BROWSER / "shot.mjs"), url, str(out), CHROMIUM, str(profile)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, f"the browser did not show the image: {run.stderr[-2000:]}"


def _disk_store(path: Path) -> Path:
    """40,000 points in a disk on the left half of a 1000 x 500 plane: dense centre, sparse rim."""
    rng = np.random.default_rng(11)
    r = 200 * np.sqrt(rng.uniform(0, 1, 40_000)) ** 1.5
    t = rng.uniform(0, 2 * np.pi, 40_000)
    pos = np.stack([250 + r * np.cos(t), 250 + r * np.sin(t)], axis=1).astype(np.float32)
    pos = np.vstack([pos, [[0.0, 0.0], [1000.0, 500.0]]]).astype(
        np.float32
    )  # span 1000 x 500: that many pixels at pixel 1
    with store.atomic_store(path) as tmp:
        store.write_point_cloud(tmp, pos, chunk_shape=(250.0, 250.0), bin_shape=(10.0, 10.0))
    return path


def test_openseadragon_shows_the_exported_density(tmp_path):
    reason = _missing()
    if reason is not None:
        if REQUIRED:
            pytest.fail(f"browser test required but {reason}")
        pytest.skip(reason)
    site = tmp_path / "site"
    dzi = density.export_deep_zoom(_disk_store(tmp_path / "disk.zv"), site, pixel_size=1.0)
    assert density.read_descriptor(dzi)["Width"] == 1000
    shutil.copy(OSD / "openseadragon.min.js", site)
    shutil.copytree(OSD / "images", site / "images")
    (site / "index.html").write_text(PAGE.format(dzi=dzi.name))
    shot = tmp_path / "osd.png"
    with _serve(site) as base:
        _screenshot(f"{base}/index.html", shot, tmp_path / "profile")
    rgb = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    # OpenSeadragon fits the 1000 x 500 image across the 800 px page: 0.8 px a pixel, 400 px tall, centred
    yy, xx = np.mgrid[: rgb.shape[0], : rgb.shape[1]]
    lit = rgb.max(axis=2) > 40
    in_disk = np.hypot(xx - 200, yy - 300) < 150  # the disk: centre (250, 250), radius 200 units
    right_half = (xx > 420) & (yy > 110) & (yy < 490)
    assert lit[in_disk].mean() > 0.25, "the disk's points are not drawn"
    assert lit[right_half].mean() < 0.01, "the empty half of the image is not empty"
    assert np.abs(rgb[300, 600] - [0, 0, 4]).max() <= 8, "empty pixels are not magma's zero colour"
    assert (rgb[50, 400] == 255).all(), "the page around the image is not the page's white"
    # the disk's centre is brighter than its rim: the density's gradient survives into the tiles
    centre = rgb[290:310, 190:210].sum(axis=2).mean()
    rim = rgb[290:310, 40:60].sum(axis=2).mean()
    assert centre > 2 * rim
    shutil.copy(shot, tmp_path.parent / "osd-last.png")  # for a person to look at after a run
