"""The ``napari-zarr-vectors`` command: demo, info, import, build, remove, recover, repair, download and export-dzi.

``demo --screenshot PNG`` works without a screen: when there is no
display it re-runs itself under ``xvfb-run`` (Debian package ``xvfb``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from . import pyramid, store

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


# The Python names that library messages use, as each command spells them. Identifiers (with an
# underscore) are replaced wherever they appear; plain words only as ``word=value`` or when they
# open a sentence ("format must be one of ..."), so prose such as "no axis 'w'" stays prose.
_CLI_NAMES: dict[str, dict[str, str]] = {
    "build": {
        "factors": "--factors",
        "agg_mode": "--agg",
        "agg_overrides": "--agg-override",
        "method": "--method",
        "sparsity_strategy": "--strategy",
        "sparsity_seed": "--seed",
        "cross_level_depth": "--depth",
        "cross_level_storage": "--storage",
        "engine": "--engine",
        "chunk_scale": "--chunk-scale",
        "suggest_factors": "--suggest",
        "coarsen_level": "build",
        "remove_resolution_level": "napari-zarr-vectors remove STORE LEVEL",
    },
    "import": {
        "factors": "--factors",
        "agg_mode": "--agg",
        "agg_overrides": "--agg-override",
        "method": "--method",
        "sparsity_strategy": "--strategy",
        "sparsity_seed": "--seed",
        "cross_level_depth": "--depth",
        "cross_level_storage": "--storage",
        "engine": "--engine",
        "chunk_scale": "--chunk-scale",
        "suggest_factors": "--suggest",
    },
    "export-dzi": {
        "out_dir": "OUT",
        "axis": "--axis",
        "pixel_size": "--pixel-size",
        "tile_size": "--tile-size",
        "overlap": "--overlap",
        "format": "--format",
        "colormap": "--colormap",
        "level": "--level",
        "weight": "--weight",
        "reduce": "--reduce",
    },
    "remove": {"level_index": "LEVEL", "remove_resolution_level": "napari-zarr-vectors remove STORE LEVEL"},
    "download": {"levels": "--levels"},
}


def cli_message(message: str, command: str) -> str:
    """A library message with its Python argument names replaced by ``command``'s options."""
    message = re.sub(r"remove_resolution_level\(path, (\d+)\)", r"napari-zarr-vectors remove STORE \1", message)
    for name, option in _CLI_NAMES.get(command, {}).items():
        value = r"(?:'([^']*)'|\"([^\"]*)\"|([\w.+-]+))"
        message = re.sub(
            rf"(?<![\w-]){name}={value}", lambda m, o=option: f"{o} {next(g for g in m.groups() if g)}", message
        )
        message = re.sub(rf"(?<![\w-]){name}\[(\d+)\]", lambda m, o=option: f"{o} value {int(m[1]) + 1}", message)
        message = re.sub(rf"(?<![\w-]){name}\['([^']*)'\] = '([^']*)'", rf"{option} \1=\2", message)
        if "_" in name:
            message = re.sub(rf"(?<![\w-]){name}(?![\w])", option, message)
        else:
            message = re.sub(rf"(^|[.;:] ){name}(?= )", rf"\g<1>{option}", message)
    return message


def _fail(exc: BaseException, command: str, *, newline: bool = False, where: str | None = None) -> int:
    """Print a library error as the command's message (no traceback); the exit status 1.

    A full disk that reached here as a bare ``OSError`` (or a message
    quoting one) is said as ``store.disk_full`` says it, for ``where``
    (the path the command writes) or the file the system refused.
    """
    full = store.disk_full(where or getattr(store.full_disk_cause(exc), "filename", None) or ".", exc)
    if full is not None and (isinstance(exc, OSError) or "Errno" in str(exc)):
        exc = full
    message = store.redact(str(exc))  # an OSError from a library may quote a URL in full
    print(f"{chr(10) if newline else ''}error: {cli_message(message, command)}", file=sys.stderr)
    return 1


def cmd_info(args: argparse.Namespace) -> int:
    try:
        info = store.open_info(args.store)
    except (store.StoreError, OSError) as exc:
        return _fail(exc, "info")
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


def _parse_factor(text: str) -> tuple[float, float]:
    try:
        coarsen, sparsity = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not COARSEN,SPARSITY (for example 2,1 or 2,4)") from None
    return coarsen, sparsity


def _parse_override(text: str) -> tuple[str, str]:
    name, sep, mode = text.partition("=")
    if not sep or not name or not mode:
        raise argparse.ArgumentTypeError(f"{text!r} is not ATTRIBUTE=MODE (for example label=mode)")
    return name, mode


def _bar(fraction: float, text: str, finished: bool, width: int = 30) -> None:
    """One text progress bar, redrawn in place; a newline once ``finished``."""
    done = int(round(width * fraction))
    print(f"\r[{'#' * done}{'.' * (width - done)}] {text}", end="", flush=True)
    if finished:
        print()


def _text_progress(p: pyramid.BuildProgress) -> None:
    _bar(p.fraction, f"{p.step}/{p.total} {p.message:<60}", p.step == p.total)


def build_options(args: argparse.Namespace) -> pyramid.BuildOptions:
    """The ``build`` command's options as the ``BuildOptions`` they stand for."""
    return pyramid.BuildOptions(
        agg_mode=args.agg,
        agg_overrides=dict(args.agg_override or []),
        method=args.method,
        sparsity_strategy=args.strategy,
        sparsity_seed=args.seed,
        cross_level_depth=args.depth,
        cross_level_storage=args.storage,
        engine=args.engine,
        chunk_scale=args.chunk_scale,
    )


def cmd_build(args: argparse.Namespace) -> int:
    factors = args.factors
    if args.suggest is not None and not args.suggest > 1:
        print(f"error: --suggest {args.suggest:g}: give a coarsen factor above 1, e.g. --suggest 2", file=sys.stderr)
        return 2
    try:
        if args.suggest:
            factors = pyramid.suggest_factors(args.store, args.suggest)
            print("suggested factors: " + " ".join(f"{c:g},{s:g}" for c, s in factors))
        if not factors:
            print("error: give --factors (for example --factors 2,1 2,4) or --suggest 2", file=sys.stderr)
            return 2
        pyramid.build_pyramid(args.store, factors, build_options(args), progress=None if args.quiet else _text_progress)
    except KeyboardInterrupt:
        print("\ninterrupted: the store is as it was", file=sys.stderr)
        return 130
    except (store.StoreError, OSError) as exc:
        return _fail(exc, "build", newline=True, where=args.store)
    return cmd_info(args)


class _ImportProgress:
    """The rows read (a bar when the file says how many it has), then the build's bar on a new line."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.open_line = False

    def read(self, done: int, total: int | None) -> None:
        if self.quiet:
            return
        if total:
            _bar(done / total, f"read {done:,}/{total:,} rows", False)
        else:
            print(f"\rread {done:,} rows", end="", flush=True)
        self.open_line = True

    def close_line(self) -> None:
        if self.open_line:
            print()
            self.open_line = False

    def build(self, p: pyramid.BuildProgress) -> None:
        if not self.quiet:
            self.close_line()
            _text_progress(p)


def _show_warning(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> None:
    print(f"warning: {message}", file=sys.stderr)


def cmd_import(args: argparse.Namespace) -> int:
    """Import a file as a new store with a default pyramid; print what became what, then the levels."""
    from . import importers

    if args.suggest is not None and not args.suggest > 1:
        print(f"error: --suggest {args.suggest:g}: give a coarsen factor above 1, e.g. --suggest 2", file=sys.stderr)
        return 2
    if args.no_pyramid and (args.factors or args.suggest):
        print("error: --no-pyramid builds no levels; leave out --factors and --suggest", file=sys.stderr)
        return 2
    shown = _ImportProgress(args.quiet)
    with warnings.catch_warnings():
        warnings.simplefilter("always", importers.RowsDropped)
        warnings.simplefilter("always", importers.ColumnsSkipped)
        warnings.simplefilter("always", importers.DataNotKept)
        warnings.showwarning = _show_warning  # catch_warnings puts the old one back
        try:
            summary = importers.import_file(
                args.source,
                args.store,
                x=args.x,
                y=args.y,
                z=args.z,
                attributes=args.attributes,
                build=not args.no_pyramid,
                factors=args.factors,
                coarsen=args.suggest or 2.0,
                options=build_options(args),
                read_progress=shown.read,
                progress=shown.build,
            )
        except KeyboardInterrupt:
            print("\ninterrupted: nothing was written", file=sys.stderr)
            return 130
        except (store.StoreError, OSError) as exc:
            shown.close_line()
            return _fail(exc, "import", where=args.store)
        finally:
            shown.close_line()
    text = set(summary.text_attributes)
    kept = ", ".join(f"{a} (text)" if a in text else a for a in summary.attributes) or "none"
    if summary.kind != "point_cloud" or summary.format in ("las", "laz"):
        per_object = f"; object attributes {', '.join(summary.object_attributes)}" if summary.object_attributes else ""
        objects = f" in {summary.objects:,} objects" if summary.objects else ""
        print(
            f"imported {summary.rows_read:,} vertices{objects} from {args.source} ({summary.preset}, as a "
            f"{summary.kind} store); vertex attributes {kept}{per_object}"
        )
        return cmd_info(argparse.Namespace(store=summary.path))
    print(
        f"imported {summary.rows_written:,} points from {args.source} ({summary.format}, {summary.preset}); "
        f"positions {', '.join(summary.position)}; attributes {kept}"
    )
    return cmd_info(argparse.Namespace(store=summary.path))


def cmd_remove(args: argparse.Namespace) -> int:
    try:
        pyramid.remove_resolution_level(args.store, args.level)
        info = store.open_info(args.store)
    except (store.StoreError, OSError) as exc:
        return _fail(exc, "remove", where=args.store)
    levels = ", ".join(str(lv.index) for lv in info.levels)
    print(f"removed level {args.level} of {info.path}; its levels are now {levels}")
    return 0


def _phase_progress(phase: str, done: int, total: int) -> None:
    _bar(done / max(total, 1), f"{phase} {done:,}/{total:,}", done >= total)


def cmd_export_dzi(args: argparse.Namespace) -> int:
    from . import density

    try:
        dzi = density.export_deep_zoom(
            args.store,
            args.out,
            axis=args.axis,
            pixel_size=args.pixel_size,
            tile_size=args.tile_size,
            overlap=args.overlap,
            format=args.format,
            colormap=args.colormap,
            level=args.level,
            weight=args.weight,
            reduce=args.reduce,
            name=args.name,
            progress=None if args.quiet else _phase_progress,
        )
    except KeyboardInterrupt:
        print("\ninterrupted: nothing was written", file=sys.stderr)
        return 130
    except (store.StoreError, OSError) as exc:
        return _fail(exc, "export-dzi", newline=not args.quiet, where=args.out)
    d = density.read_descriptor(dzi)
    levels = density.deep_zoom_levels(d["Width"], d["Height"], d["TileSize"])
    print(f"wrote {dzi}: {d['Width']} x {d['Height']} px, {len(levels)} levels, {d['Format']} tiles")
    print(f"tiles in {dzi.with_name(dzi.stem + '_files')}; open the .dzi in any Deep Zoom viewer (OpenSeadragon)")
    return 0


#: The window size of ``demo --screenshot``, so the picture is the same on every machine.
DEMO_WINDOW = (1280, 760)


def _demo_view(viewer: object) -> None:
    """The sample from a little above and to the side, filling most of the canvas."""
    viewer.reset_view()
    if viewer.dims.ndisplay == 3:
        viewer.scene.camera.angles = (5.0, 25.0, 140.0)
    viewer.scene.camera.zoom *= 0.75


QT_MISSING = (
    "error: napari needs a Qt binding to open a window, and none is installed.\n"
    'Install one with:  pip install "napari-zarr-vectors[all]"   (or: pip install PyQt6)'
)


def _qt_binding_missing() -> bool:
    """True when qtpy finds no Qt binding (napari installs none by itself)."""
    try:
        import qtpy  # noqa: F401
    except Exception:  # qtpy.QtBindingsNotFoundError, or an ImportError from a broken binding
        return True
    return False


def cmd_demo(args: argparse.Namespace, argv: Sequence[str]) -> int:
    if _qt_binding_missing():  # before the sample is built, and before xvfb-run is looked for
        print(QT_MISSING, file=sys.stderr)
        return 2
    if args.screenshot and not _has_display() and not os.environ.get(_UNDER_XVFB):
        return _reexec_under_xvfb(argv)
    from . import samples

    if args.store:
        try:
            path = store.address(args.store)
            store.open_info(path)  # a clear message now, before a window opens
        except (store.StoreError, OSError) as exc:
            return _fail(exc, "demo")
    else:
        print("Preparing the sample point cloud (built once, then cached) ...", flush=True)
        path = samples.sample_store("synthetic_points.zv")
    print(f"Opening {store.shown(path)}", flush=True)

    import napari
    from qtpy.QtWidgets import QApplication

    from ._qt.follow import wait_settled

    viewer = napari.Viewer(show=True, title="napari-zarr-vectors demo")
    saved_geometry = viewer.window.geometry()
    if args.screenshot:
        viewer.window.resize(*DEMO_WINDOW)
    viewer.open(str(path), plugin="napari-zarr-vectors")
    # the Levels dock says which level is drawn, how many vertices, and the budget that chose it
    viewer.window.add_plugin_dock_widget("napari-zarr-vectors", "Levels")
    for _ in range(5):
        QApplication.processEvents()
    _demo_view(viewer)
    if args.screenshot:
        if not wait_settled(viewer):  # the layer opens coarse and refines to what fits the budget in view
            print("note: the view was still refining after 30 s; the picture shows what had loaded", file=sys.stderr)
        for _ in range(5):
            QApplication.processEvents()
        out = Path(args.screenshot).absolute()
        viewer.screenshot(str(out), canvas_only=not args.window, flash=False)
        viewer.window.set_geometry(*saved_geometry)  # napari saves the geometry on close: leave the user's
        viewer.close()
        print(f"Saved screenshot to {out}")
        return 0
    napari.run()
    return 0


def cmd_recover(args: argparse.Namespace) -> int:
    """Finish or undo an interrupted build or removal (a hot journal), saying which."""
    try:
        done = store.recover(args.store)
    except store.StoreError as exc:
        return _fail(exc, "recover", where=args.store)
    print(done or f"{args.store}: no interrupted change to recover; the store is as it was published.")
    return 0


def cmd_repair(args: argparse.Namespace) -> int:
    """Report what is incomplete in a store and, without --dry-run, remove it."""
    try:
        found = store.repair(args.store, dry_run=args.dry_run)
    except store.StoreError as exc:
        return _fail(exc, "repair", where=args.store)
    for line in found:
        print(line)
    if not found:
        print(f"{args.store}: nothing incomplete found.")
    return 0


def _parse_levels(text: str) -> tuple[int, ...] | None:
    from .download import parse_levels

    try:
        return parse_levels(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_download(args: argparse.Namespace) -> int:
    """Copy a remote store to a local folder (resumable), then print the copy's levels."""
    from . import download

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    if not args.quiet:
        say(f"Reading the metadata of {remote_shown(args.url)} ...")
    try:
        result = download.download(
            args.url,
            args.dest,
            levels=args.levels,
            progress=None if args.quiet else download.TextProgress(sys.stderr),
            say=say,
        )
    except KeyboardInterrupt:
        hidden = download.hidden_folder(args.dest)
        kept = (
            f"the files fetched so far are kept in {hidden}; run the same command again to continue"
            if hidden.is_dir()
            else "nothing was downloaded"
        )
        print(f"\ninterrupted: {kept}", file=sys.stderr)
        return 130
    except (store.StoreError, OSError) as exc:
        return _fail(exc, "download", newline=not args.quiet, where=args.dest)
    resumed = f", {result.resumed:,} were already here" if result.resumed else ""
    print(
        f"downloaded {remote_shown(args.url)} to {result.path}: {result.files:,} files "
        f"({result.fetched:,} fetched now{resumed})"
    )
    return cmd_info(argparse.Namespace(store=str(result.path)))


def remote_shown(url: str) -> str:
    """A URL as messages show it (no credentials or query); a local path as given."""
    return store.shown(url)


def _parse_axis(text: str) -> int | str:
    """``--axis``: an index as an int (``2``, ``-1``), a name (``z``) as given."""
    return int(text) if text.lstrip("-").isdigit() else text


def _add_build_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of ``build`` (levels and ``BuildOptions``), which ``import`` takes too."""
    default = pyramid.BuildOptions()  # the options the flags leave as they are
    build = parser
    build.add_argument("--factors", nargs="+", type=_parse_factor, metavar="C,S", help="one COARSEN,SPARSITY per level")
    build.add_argument("--suggest", type=float, metavar="C", help="instead of --factors: levels of xC until one chunk")
    build.add_argument(
        "--agg", default=default.agg_mode, choices=pyramid.AGG_MODES, help="aggregation for every attribute"
    )
    build.add_argument("--agg-override", nargs="+", type=_parse_override, metavar="ATTR=MODE")
    build.add_argument("--method", default=default.method, help="per_object or cross_object_metanode")
    build.add_argument("--engine", default=default.engine, choices=pyramid.ENGINES)
    build.add_argument(
        "--chunk-scale",
        default=default.chunk_scale,
        type=lambda v: v if v == "auto" else int(v),
        help="1 keeps level 0's chunk grid; 'auto' grows coarse chunks with the coarsen factor "
        "(default: auto with the vectorized engine, 1 with upstream's)",
    )
    build.add_argument(
        "--strategy", default=default.sparsity_strategy, help="sparsity strategy: random, spatial_coverage, ..."
    )
    build.add_argument("--seed", type=int, default=default.sparsity_seed)
    build.add_argument(
        "--depth", type=int, default=default.cross_level_depth, help="cross-level link depth: 0, N, or -1 for all"
    )
    build.add_argument("--storage", default=default.cross_level_storage, choices=pyramid.LINK_STORAGES)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-zarr-vectors",
        description="View and build multi-resolution Zarr Vectors pyramids in napari.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="build the sample point-cloud pyramid and open it in napari")
    demo.set_defaults(func=lambda args: cmd_demo(args, args.argv))  # argv: what it re-runs under xvfb-run
    demo.add_argument("--screenshot", metavar="PNG", help="render without a screen, save a PNG and exit")
    demo.add_argument("--window", action="store_true", help="with --screenshot: capture the whole window")
    demo.add_argument(
        "--store", metavar="PATH_OR_URL", help="open this store (a path, or an http(s)://, s3://, gs:// URL) instead"
    )
    info = sub.add_parser("info", help="print a store's levels: vertices, objects, bin shape")
    info.set_defaults(func=cmd_info)
    info.add_argument("store", help="a .zv / .zarrvectors store: a path, or an http(s)://, s3://, gs:// URL")
    imp = sub.add_parser(
        "import",
        help="import a file (point table, tractogram, SWC, mesh, LAS/LAZ) as a new store, with a pyramid",
        description="Read a file, write it as level 0 of a new store and build a default "
        "pyramid, all or nothing: point tables (CSV, TSV, Parquet), tractograms (TRK, TCK, TRX), SWC skeletons, "
        "meshes (PLY, OBJ, STL) and LAS/LAZ point clouds. Vendor tables (10x Xenium transcripts.parquet, "
        "Vizgen MERSCOPE detected_transcripts.csv, NanoString CosMx *_tx_file.csv) and columns named x, y, z are "
        "found by themselves. Example: napari-zarr-vectors import transcripts.parquet transcripts.zv",
    )
    imp.set_defaults(func=cmd_import)
    imp.add_argument(
        "source",
        metavar="SOURCE",
        help="a .csv, .tsv (or .csv.gz, .tsv.gz), .parquet, .pq, .trk, .tck, .trx, .swc, .ply, .obj, .stl, .las or "
        ".laz file",
    )
    imp.add_argument("store", metavar="STORE", help="the new store: a folder that does not exist yet, or is empty")
    imp.add_argument("--x", metavar="COLUMN", help="the x position column (default: found from the columns)")
    imp.add_argument("--y", metavar="COLUMN", help="the y position column")
    imp.add_argument("--z", metavar="COLUMN", help="the z position column (none found or given: a 2D store)")
    imp.add_argument(
        "--attributes", nargs="+", metavar="COLUMN", help="the columns to keep (default: every other column)"
    )
    imp.add_argument("--no-pyramid", action="store_true", help="write level 0 only; build later with `build`")
    _add_build_flags(imp)
    imp.add_argument("--quiet", action="store_true", help="no progress bars")
    build = sub.add_parser(
        "build",
        help="build a pyramid with aggregated attributes",
        description="Add coarse levels after level 0. Example: "
        "napari-zarr-vectors build tracts.zv --factors 2,1 2,4 2,4 --agg mean --agg-override label=mode",
    )
    build.set_defaults(func=cmd_build)
    build.add_argument("store", help="path to a .zv / .zarrvectors store")
    _add_build_flags(build)
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    remove = sub.add_parser(
        "remove",
        help="remove the coarsest level of a pyramid (and the links into it)",
        description="Remove a store's coarsest level; only it can go, so no level loses its parent, and "
        "level 0 (the data) never goes. Example: napari-zarr-vectors remove tracts.zv 3",
    )
    remove.set_defaults(func=cmd_remove)
    remove.add_argument("store", help="path to a .zv / .zarrvectors store")
    remove.add_argument("level", type=int, metavar="LEVEL", help="the level to remove: the store's coarsest")
    recover = sub.add_parser(
        "recover",
        help="finish or undo a build or removal that was interrupted (killed, power loss)",
        description="A killed build leaves a journal in the store; readers still see the store as it was. "
        "This undoes the interrupted build (or finishes publishing it, if only that was left). "
        "The next build does the same by itself. Example: napari-zarr-vectors recover tracts.zv",
    )
    recover.set_defaults(func=cmd_recover)
    recover.add_argument("store", help="path to a .zv / .zarrvectors store")
    repair = sub.add_parser(
        "repair",
        help="report what is incomplete in a store and remove it (never level 0)",
        description="For stores damaged by older versions or other tools: levels listed but missing or "
        "short of their vertices (they and every coarser level go), links into levels that are not there, "
        "leftover *.partial files, an interrupted build. Example: napari-zarr-vectors repair tracts.zv --dry-run",
    )
    repair.set_defaults(func=cmd_repair)
    repair.add_argument("store", help="path to a .zv / .zarrvectors store")
    repair.add_argument("--dry-run", action="store_true", help="only report; change nothing")
    download = sub.add_parser(
        "download",
        help="copy a remote store (http(s)://, s3://, gs://) to a local folder, resumably",
        description="Make a local working copy of a remote store (remote stores are read-only here; build "
        "pyramids on the copy). The copy appears at DEST only when complete; an interrupted download "
        "(Ctrl+C, a lost connection, kill) continues where it stopped when the same command is run again. "
        "Example: napari-zarr-vectors download https://example.org/data/cells.zv cells.zv --levels 0,1",
    )
    download.set_defaults(func=cmd_download)
    download.add_argument("url", metavar="URL", help="the remote store: http(s)://, s3:// or gs://")
    download.add_argument("dest", metavar="DEST", help="the local folder to create (new, or empty)")
    download.add_argument(
        "--levels",
        type=_parse_levels,
        default=None,
        metavar="N,N|all",
        help="levels to copy, for example 0,2 (level 0, the data, is always copied; default: all)",
    )
    download.add_argument("--quiet", action="store_true", help="no progress bar")
    dzi = sub.add_parser(
        "export-dzi",
        help="write a store's 2D density as a Deep Zoom image (.dzi + tiles) for web viewers",
        description="Example: napari-zarr-vectors export-dzi cells.zv web/ --axis z",
    )
    dzi.set_defaults(func=cmd_export_dzi)
    dzi.add_argument("store", help="a .zv / .zarrvectors store: a path, or an http(s)://, s3://, gs:// URL")
    dzi.add_argument("out", help="output folder: gets NAME.dzi and NAME_files/")
    dzi.add_argument("--axis", type=_parse_axis, help="axis to project a 3D store along (name such as z, or index)")
    dzi.add_argument("--pixel-size", type=float, help="pixel size in store units (default: a quarter of the bin)")
    dzi.add_argument("--tile-size", type=int, default=256)
    dzi.add_argument("--overlap", type=int, default=1)
    dzi.add_argument("--format", default="png", choices=("png", "jpg"))
    dzi.add_argument("--colormap", default="magma", help="a napari colormap name")
    dzi.add_argument("--level", type=int, default=0, help="store level to count (a coarse level uses `count`)")
    dzi.add_argument("--weight", help="a vertex attribute to sum or average instead of counting")
    dzi.add_argument("--reduce", default="sum", choices=("sum", "mean"))
    dzi.add_argument("--name", help="output name (default: the store's name)")
    dzi.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
