"""Makes the density page's pictures: the overlay in napari and the Deep Zoom export in a browser.

    xvfb-run -a -s "-screen 0 1280x1024x24" python docs/images/make_density_images.py

Needs Debian's chromium and ``npm ci --prefix tests/browser`` for the browser picture.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from napari_zarr_vectors import density, pyramid, store

HERE = Path(__file__).parent
OSD = HERE.parent.parent / "tests" / "browser" / "node_modules" / "openseadragon" / "build" / "openseadragon"


def galaxy(path: Path, n: int = 1_500_000) -> Path:
    """A 2D spiral galaxy of points (two arms, a bulge, a sparse halo) with a 4-level pyramid."""
    rng = np.random.default_rng(1)
    arm = rng.uniform(0, 1, n)
    theta = arm * 4 * np.pi + rng.integers(0, 2, n) * np.pi
    r = 60 + 700 * arm
    spread = 25 + 40 * arm
    pts = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1) + rng.normal(0, 1, (n, 2)) * spread[:, None]
    bulge = rng.normal(0, 90, (n // 3, 2))
    halo = rng.uniform(-1000, 1000, (n // 10, 2))
    pos = (np.vstack([pts, bulge, halo]) + 1000).clip(0, 1999.9).astype(np.float32)
    with store.atomic_store(path) as tmp:
        store.write_point_cloud(
            tmp,
            pos,
            chunk_shape=(250.0, 250.0),
            bin_shape=(10.0, 10.0),
        )
        pyramid.build_pyramid(tmp, [(2.0, 1.0)] * 4)
    return path


def napari_pictures(path: Path) -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_zarr_vectors._qt import follow as _follow

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1280, 860)
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-zarr-vectors", "Levels")
    layers = viewer.open(str(path), plugin="napari-zarr-vectors")
    image, points = layers
    _follow.wait_settled(viewer)
    QApplication.processEvents()
    widget.density_checks[0].value = True
    _follow.wait_settled(viewer)
    points.visible = False
    viewer.reset_view()
    _follow.wait_settled(viewer)
    for _ in range(10):
        QApplication.processEvents()
    viewer.screenshot(str(HERE / "density_whole.png"), canvas_only=False, flash=False)
    points.visible = True
    viewer.scene.camera.center = (1000 + 520, 1000 + 420)  # (y, x): the outer edge of an arm
    viewer.scene.camera.zoom = viewer.scene.camera.zoom * 16
    _follow.wait_settled(viewer)
    points.size = 1.2  # small marks, so the density pixels show between them
    points.face_color = "white"
    _follow.wait_settled(viewer)
    for _ in range(10):
        QApplication.processEvents()
    viewer.screenshot(str(HERE / "density_overlay.png"), canvas_only=True, flash=False)
    viewer.close()


def browser_picture(path: Path, work: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None or not OSD.is_dir():
        print("skipping the browser picture: chromium or OpenSeadragon missing", file=sys.stderr)
        return
    site = work / "site"
    dzi = density.export_deep_zoom(path, site, pixel_size=1.0)
    shutil.copy(OSD / "openseadragon.min.js", site)
    shutil.copytree(OSD / "images", site / "images")
    (site / "index.html").write_text(
        "<!doctype html><html><head><style>html,body{margin:0;background:#222}#v{width:900px;height:640px}"
        "</style></head><body><div id='v'></div><script src='openseadragon.min.js'></script><script>"
        f"OpenSeadragon({{id:'v',prefixUrl:'images/',tileSources:'{dzi.name}',animationTime:0,"
        "showNavigator:true});</script></body></html>"
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", "8765", "--bind", "127.0.0.1", "--directory", str(site)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import time

        time.sleep(1.0)
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={work / 'profile'}",
                "--hide-scrollbars",
                "--window-size=900,640",
                "--virtual-time-budget=20000",
                f"--screenshot={HERE / 'density_openseadragon.png'}",
                "http://127.0.0.1:8765/index.html",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    finally:
        server.terminate()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        path = galaxy(work / "galaxy.zv")
        napari_pictures(path)
        browser_picture(path, work)


if __name__ == "__main__":
    main()
