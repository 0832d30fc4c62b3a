"""The ``napari-zarr-vectors`` command: ``demo`` and ``info``.

``demo --screenshot PNG`` works without a screen: when there is no
display it re-runs itself under ``xvfb-run`` (Debian package ``xvfb``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from . import store

_UNDER_XVFB = "NAPARI_ZARR_VECTORS_UNDER_XVFB"


def _has_display() -> bool:
    if sys.platform != "linux":
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _reexec_under_xvfb(argv: Sequence[str]) -> int:
    xvfb = shutil.which("xvfb-run")
    if xvfb is None:
        print(
            "error: there is no screen (DISPLAY is unset) and xvfb-run is not installed.\n"
            "Install it (Debian/Ubuntu: sudo apt-get install xvfb libgl1 libgl1-mesa-dri) "
            "or run on a desktop.",
            file=sys.stderr,
        )
        return 2
    env = dict(os.environ, **{_UNDER_XVFB: "1"})
    cmd = [xvfb, "-a", "-s", "-screen 0 1280x1024x24", sys.executable, "-m", "napari_zarr_vectors.cli", *argv]
    os.execve(xvfb, cmd, env)
    return 0  # pragma: no cover - execve does not return


def cmd_info(args: argparse.Namespace) -> int:
    try:
        info = store.open_info(args.store)
    except store.StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"store:  {info.path}")
    print(f"kind:   {info.kind}  ({info.ndim}D, axes {', '.join(info.axis_names)})")
    lo, hi = info.bounds
    print(f"bounds: {[round(float(v), 3) for v in lo]} .. {[round(float(v), 3) for v in hi]}")
    if info.vertex_attributes:
        print(f"vertex attributes: {', '.join(info.vertex_attributes)}")
    if info.object_attributes:
        print(f"object attributes: {', '.join(info.object_attributes)}")
    print(f"{'level':>5} {'vertices':>12} {'objects':>10}  bin shape")
    for lv in info.levels:
        bins = " x ".join(f"{b:g}" for b in lv.bin_shape)
        print(f"{lv.index:>5} {lv.vertex_count:>12,} {lv.object_count:>10,}  {bins}")
    return 0


def cmd_demo(args: argparse.Namespace, argv: Sequence[str]) -> int:
    if args.screenshot and not _has_display() and not os.environ.get(_UNDER_XVFB):
        return _reexec_under_xvfb(argv)
    from . import samples

    print("Preparing the sample point cloud (built once, then cached) ...", flush=True)
    path = samples.sample_store("synthetic_points.zv")
    print(f"Opening {path}", flush=True)

    import napari

    viewer = napari.Viewer(show=True, title="napari-zarr-vectors demo")
    viewer.open(str(path), plugin="napari-zarr-vectors")
    if args.screenshot:
        from qtpy.QtWidgets import QApplication

        for _ in range(5):
            QApplication.processEvents()
        viewer.reset_view()
        if viewer.dims.ndisplay == 3:
            viewer.camera.angles = (5.0, 25.0, 140.0)
        viewer.camera.zoom *= 0.6
        out = Path(args.screenshot).absolute()
        viewer.screenshot(str(out), canvas_only=not args.window, flash=False)
        viewer.close()
        print(f"Saved screenshot to {out}")
        return 0
    napari.run()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-zarr-vectors",
        description="View and build multi-resolution Zarr Vectors pyramids in napari.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="build the sample point-cloud pyramid and open it in napari")
    demo.add_argument("--screenshot", metavar="PNG", help="render without a screen, save a PNG and exit")
    demo.add_argument("--window", action="store_true", help="with --screenshot: capture the whole window")
    info = sub.add_parser("info", help="print a store's levels: vertices, objects, bin shape")
    info.add_argument("store", help="path to a .zv / .zarrvectors store")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.command == "info":
        return cmd_info(args)
    return cmd_demo(args, argv)


if __name__ == "__main__":
    sys.exit(main())
