"""npe2 reader: claims Zarr Vectors stores, returns one layer per geometry."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

from . import layers, store
from ._qt.follow import watch_viewer
from ._renderer import machine_budget

PathLike = str | os.PathLike[str]

PLUGIN_NAME = "napari-zarr-vectors"
#: napari's reader preferences match a folder as its real path plus a separator.
STORE_FOLDER_PATTERNS = tuple(f"*{suffix}{os.sep}" for suffix in store.STORE_SUFFIXES)


def _claims(path: PathLike) -> bool:
    """Ours when the metadata says so, or when a .zv/.zarrvectors folder has a (maybe broken) zarr.json.

    The second case lets a corrupt store get a clear message from us
    instead of a silent "no reader found".
    """
    try:
        a = store.resolve(path)
    except store.StoreError:  # a URL with a scheme not opened here: ours by its name, so the read says why
        return store.has_store_suffix(str(path).split("?", 1)[0])
    # a URL is ours when it names a store folder; whether it is one (404, offline) the read says clearly
    return (store.has_store_suffix(a.shown) and a.root_may_exist()) or store.is_store(path)


def get_reader(path: PathLike | list[PathLike]) -> Callable[[Any], list] | None:
    """Return a reader for Zarr Vectors stores, or None so napari tries other readers."""
    paths = path if isinstance(path, list) else [path]
    if not paths or not all(_claims(p) for p in paths):
        return None
    prefer_this_reader_for_stores()
    return read_stores


#: Files napari's own readers do not take, opened by importing them once into the cache (docs/importing.md).
#: Not .csv/.tsv (napari reads CSV) nor .obj (napari reads OBJ): those go through `napari-zarr-vectors import`.
#: napari.yaml's second reader lists the same patterns.
FILE_SUFFIXES = (".trk", ".tck", ".trx", ".swc", ".ply", ".stl", ".las", ".laz", ".parquet", ".pq")


def _opens_file(path: PathLike) -> bool:
    """Ours when it is a local file of a type in FILE_SUFFIXES that ``import_file`` reads (a Parquet point table)."""
    from .importers import cache

    p = os.fspath(path)
    if not isinstance(p, str) or "://" in p or not p.lower().endswith(FILE_SUFFIXES) or not os.path.isfile(p):
        return False
    fmt = cache.importable_format(p)
    if fmt is None:
        return False
    return fmt != "parquet" or cache.is_point_table(p)


def get_file_reader(path: PathLike | list[PathLike]) -> Callable[[Any], list] | None:
    """Return a reader for tractograms, skeletons, meshes, point clouds and Parquet point tables, or None.

    None (so napari moves on) for a type the importer does not read and
    for a Parquet file without position columns. No reader preference is
    set: napari picks this reader with no question when no other plugin
    claims the type, and asks (once, remembered) when one does.
    """
    paths = path if isinstance(path, list) else [path]
    if not paths or not all(_opens_file(p) for p in paths):
        return None
    return read_files


def read_files(path: PathLike | list[PathLike]) -> list:
    """Import each file into the cache (unless it is there, unchanged) and read the stores as ``read_stores`` does.

    Progress shows in napari's activity dock; a file that cannot be
    imported becomes one error notification (and no cache entry) instead
    of a traceback.
    """
    from .importers import cache

    paths = path if isinstance(path, list) else [path]
    stores: list[str] = []
    for p in paths:
        try:
            with _import_progress(p) as callbacks:
                made, imported = cache.cached_import(p, **callbacks)
        except store.StoreError as exc:
            _notify_error(str(exc))
            continue
        if imported:
            _notify_info(
                f"Imported '{os.path.basename(p)}' into '{made}'; opening it again while it is unchanged is instant."
            )
        stores.append(str(made))
    return read_stores(stores) if stores else [(None,)]


@contextlib.contextmanager
def _import_progress(path: PathLike) -> Iterator[dict[str, Any]]:
    """napari progress for one import: rows read, then the pyramid's steps, and a line when it waits for another."""
    from napari.utils import progress

    name = os.path.basename(os.fspath(path))
    bar = progress(total=0, desc=f"Importing {name}")
    done = {"n": 0}

    def _to(n: int, total: int | None) -> None:
        if total is not None and bar.total != total:
            bar.total = total
        bar.update(max(0, n - done["n"]))
        done["n"] = max(done["n"], n)

    def read_progress(rows: int, total: int | None) -> None:
        _to(rows, total)

    def build_progress(p: Any) -> None:
        if done.get("phase") != "build":
            done.update(phase="build", n=0)
            bar.n = 0
            bar.set_description(f"Building a pyramid for {name}")
        _to(p.step, p.total)

    def waiting() -> None:
        bar.set_description(f"Waiting for another napari importing {name}")

    try:
        yield {"read_progress": read_progress, "progress": build_progress, "waiting": waiting}
    finally:
        bar.close()


def prefer_this_reader_for_stores() -> None:
    """Make napari open ``*.zv`` / ``*.zarrvectors`` folders with this plugin from now on, without asking.

    Any folder can be offered to every reader that accepts folders, and
    napari's builtin reader accepts them all, so napari would ask which
    reader to use for each store folder (its dialog remembers one folder
    at a time).  napari's builtin reader cannot read these folders, so
    this preference gets in no other reader's way.  It is set the first
    time this plugin reads a store or opens a sample, only for patterns
    the user has no preference for; Preferences > Plugins changes it.
    """
    try:
        from napari.settings import get_settings
    except ImportError:  # pragma: no cover - napari is a dependency
        return
    plugins = get_settings().plugins
    prefs = dict(plugins.extension2reader)
    missing = {pattern: PLUGIN_NAME for pattern in STORE_FOLDER_PATTERNS if pattern not in prefs}
    if missing:
        plugins.extension2reader = {**prefs, **missing}


def read_stores(path: PathLike | list[PathLike]) -> list:
    """Layer-data tuples for every store in ``path``.

    A store that cannot be read becomes an error notification naming the
    store and the problem, and napari's "read, but nothing to show"
    sentinel ``[(None,)]``: raising instead would make napari offer its
    reader-choice dialog with a traceback, as if another reader could help.
    """
    paths = path if isinstance(path, list) else [path]
    out: list = []
    viewer = _current_viewer()
    progressive = viewer is not None  # a follower will refine what opens coarse
    # the budget for this machine's renderer and canvas ($NAPARI_ZARR_VECTORS_VERTEX_BUDGET still wins)
    budget, reason = machine_budget(viewer) if viewer is not None else (None, None)
    for p in paths:
        try:
            recovered = store.recover_if_interrupted(p)  # removes only what no reader could see
            opened = store.handle(p)  # the store opened once: its layers, followers and drills share it
            made = layers.layers_for_store(opened, progressive=progressive, vertex_budget=budget, budget_reason=reason)
            out.extend(made)
        except store.StoreError as exc:
            _notify_error(str(exc))
            continue
        _offer_pyramid(viewer, made)
        if recovered is not None:
            _notify_warning(recovered)
        interrupted = store.interrupted_write(p)  # left alone: read-only here, or its writer is still running
        if interrupted is not None:
            _notify_warning(
                f"{interrupted} The next build on it undoes that change first; "
                f"`napari-zarr-vectors recover {p}` does it now."
            )
        try:
            store.check_writable_format(opened)
        except store.StoreError as exc:  # another format series: shown, never changed
            _notify_warning(str(exc))
    if not out:
        return [(None,)]
    watch_viewer(viewer)
    if any(len(d[1].get("axis_labels", ())) >= 3 for d in out):
        _show_in_3d_once_added(viewer, [d[1]["name"] for d in out])
    return out


def _offer_pyramid(viewer: Any, made: list) -> None:
    """A level-0-only store opened as an even subsample: say so, and offer to build a pyramid (docs/viewing.md)."""
    from ._qt.flat_notice import offer_pyramid

    for data, kwargs, _ in made:
        meta = kwargs.get("metadata", {}).get(layers.METADATA_KEY) or {}
        if meta.get("sampled_from"):
            offer_pyramid(viewer, kwargs["name"], meta["path"], len(data), int(meta["sampled_from"]))


def _show_in_3d_once_added(viewer: Any, names: list[str]) -> None:
    """Switch ``viewer`` to 3D when our layer arrives.

    A 3D cloud seen through napari's default 2D slice shows a sliver of a
    bin's thickness; the whole cloud is what a user opening it wants.
    """
    if viewer is None or viewer.dims.ndisplay == 3:
        return

    def _on_inserted(event: Any) -> None:
        layer = getattr(event, "value", None)
        if layer is not None and any(layer.name.startswith(n) for n in names):
            viewer.layers.events.inserted.disconnect(_on_inserted)
            viewer.dims.ndisplay = 3

    viewer.layers.events.inserted.connect(_on_inserted)


def _current_viewer() -> Any:
    """The viewer napari is reading into, if any (None when read from a script without one)."""
    try:
        import napari
    except ImportError:  # pragma: no cover - napari is a dependency
        return None
    return napari.current_viewer()


def _notify_warning(message: str) -> None:
    from napari.utils.notifications import show_warning

    show_warning(message)


def _notify_info(message: str) -> None:
    from napari.utils.notifications import show_info

    show_info(message)


def _notify_error(message: str) -> None:
    from napari.utils.notifications import show_error

    show_error(message)
