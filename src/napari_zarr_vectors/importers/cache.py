"""The import cache behind opening a file directly: each file imported once into a store, reused while unchanged.

``viewer.open("tracts.trk")`` (and drag and drop, and ``napari FILE``)
imports the file into a store in the user cache folder and opens that
store; the next open of the same, unchanged file opens the store without
importing again. An entry is keyed by the file's real path, size and
modification time (a hash of them names its folder), so a changed file
is imported again into a new entry.

Layout, under ``$NAPARI_ZARR_VECTORS_CACHE`` or ``~/.cache/napari-zarr-vectors``
(the folder the sample stores use)::

    imports/<key>/<file stem>.zv     an entry: a complete store, nothing else counts
    imports/.locks/<key>.lock        held while <key> is imported (deleted when released)

An entry only ever appears complete: ``import_file`` writes the store in a
temporary sibling and renames it into place when the import and its
pyramid succeeded. A failure removes the temporary and the empty key
folder; one left by a killed process is removed by the next import. Two
processes opening the same file at once take the key's lock in turn: the
second waits, then finds the entry the first made. No Qt and no napari here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import pyramid, store
from ..store.write import PARTIAL_INFIX
from .tables import ImportFailed

#: The environment variable that moves the cache folder (samples and imports).
CACHE_ENV = "NAPARI_ZARR_VECTORS_CACHE"
#: Bumped when what an import writes changes, so entries written before are not reused.
CACHE_VERSION = 1
IMPORTS = "imports"
LOCKS = ".locks"


def cache_root() -> Path:
    """``$NAPARI_ZARR_VECTORS_CACHE``, or ``~/.cache/napari-zarr-vectors`` (as ``samples.cache_dir``); not created."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "napari-zarr-vectors"


def imports_dir() -> Path:
    """The folder holding the stores files were imported into when opened directly; not created."""
    return cache_root() / IMPORTS


@dataclass(frozen=True)
class CacheEntry:
    """Where the store for one state (path, size, modification time) of a file is, or will be."""

    source: Path
    key: str
    path: Path

    @property
    def folder(self) -> Path:
        return self.path.parent

    def exists(self) -> bool:
        """True when the entry is a complete store (a temporary or an emptied folder is not)."""
        return store.is_store(self.path)


def entry_for(source: str | os.PathLike[str]) -> CacheEntry:
    """The cache entry of ``source`` as it is now; ImportFailed when it is not a file."""
    real = Path(os.path.realpath(source))
    try:
        st = real.stat()
    except OSError:
        raise ImportFailed(f"Cannot import '{source}': it does not exist. Nothing was written.") from None
    if not real.is_file():
        raise ImportFailed(f"Cannot import '{source}': it is a folder, not a file. Nothing was written.")
    text = f"v{CACHE_VERSION}\0{real}\0{st.st_size}\0{st.st_mtime_ns}"
    key = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return CacheEntry(real, key, imports_dir() / key / f"{real.stem or 'import'}.zv")


def lookup(source: str | os.PathLike[str]) -> Path | None:
    """The store ``source`` was imported into, when it is unchanged since; None otherwise. Never imports."""
    try:
        entry = entry_for(source)
    except ImportFailed:
        return None
    return entry.path if entry.exists() else None


def importable_format(path: str | os.PathLike[str]) -> str | None:
    """The format ``import_file`` reads ``path`` as (from its ending), or None when it imports no such file."""
    from .. import importers

    format_of = getattr(importers, "format_of", None)  # every format; point tables only before it exists
    try:
        fmt = format_of(path) if format_of is not None else importers.table_format(path)
    except (store.StoreError, ValueError):
        return None
    return str(fmt) if fmt else None


def is_point_table(path: str | os.PathLike[str]) -> bool:
    """False only for a Parquet file whose schema has no position columns (read from its footer, not its rows).

    A file whose schema cannot be read (damaged, or pyarrow missing) counts
    as one, so opening it says what is wrong instead of "no reader".
    """
    from .tables import plan_columns

    try:
        import pyarrow.parquet as pq

        names = pq.read_schema(path).names
    except Exception:  # pyarrow missing, or not a readable Parquet footer: the import says which
        return True
    try:
        plan_columns(str(path), "parquet", names)
    except ImportFailed:
        return False
    return True


def _lock(key: str) -> Any:
    from filelock import FileLock

    folder = imports_dir() / LOCKS
    folder.mkdir(parents=True, exist_ok=True)
    return FileLock(str(folder / f"{key}.lock"), thread_local=False, is_singleton=False)


@contextlib.contextmanager
def _held(key: str, waiting: Callable[[], None] | None) -> Iterator[None]:
    """Hold ``key``'s import lock: taken at once when free, else after ``waiting()`` is called once."""
    from filelock import Timeout

    lock = _lock(key)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if waiting is not None:
            waiting()
        lock.acquire(timeout=-1)
    try:
        yield
    finally:
        with store.ctrl_c_held():  # the lock file goes while still held: no lock file is left behind
            with contextlib.suppress(OSError):
                os.unlink(lock.lock_file)
            lock.release()


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()


def sweep() -> list[Path]:
    """Remove what killed imports left (their temporaries, empty key folders); the paths removed.

    A key folder another process is importing into is skipped: its lock
    is held. Entries (complete stores) are never touched.
    """
    from filelock import Timeout

    removed: list[Path] = []
    try:
        folders = [Path(e.path) for e in os.scandir(imports_dir()) if e.is_dir() and e.name != LOCKS]
    except OSError:
        return removed
    for folder in folders:
        lock = _lock(folder.name)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue
        try:
            for child in list(folder.iterdir()):
                name = child.name
                if name.startswith(".") and PARTIAL_INFIX in name:
                    removed += store.remove_stale_temps(folder / name[1:].split(PARTIAL_INFIX, 1)[0])
            if not any(folder.iterdir()):
                folder.rmdir()
                removed.append(folder)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                os.unlink(lock.lock_file)
            lock.release()
    return removed


def cached_import(
    source: str | os.PathLike[str],
    *,
    import_file: Callable[..., Any] | None = None,
    read_progress: Callable[[int, int | None], None] | None = None,
    progress: pyramid.ProgressFn | None = None,
    waiting: Callable[[], None] | None = None,
) -> tuple[Path, bool]:
    """The store ``source`` is imported into (importing it now unless the cache has it), and whether it imported.

    ``import_file`` is ``importers.import_file`` unless given; it is
    called with the default options and the progress callbacks.
    ``waiting`` is called when another process is importing the same
    file and this one waits for it. Raises what ``import_file`` raises
    (ImportFailed, StoreError, ImportCancelled); no entry is then left.
    A file that changes while it is read is refused (ImportFailed) and
    its entry removed: open it again once it is written.
    """
    entry = entry_for(source)
    if entry.exists():
        return entry.path, False
    if import_file is None:
        from . import import_file
    try:
        imports_dir().mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise store.StoreError(
            f"Cannot import '{source}' into the cache: folder '{imports_dir()}' cannot be made ({exc.strerror}). "
            f"Set {CACHE_ENV} to a writable folder. Nothing was written."
        ) from None
    sweep()
    with _held(entry.key, waiting):
        if entry.exists():  # imported by the process we waited for
            return entry.path, False
        if os.path.lexists(entry.path):  # a store emptied or damaged by hand: import afresh
            store.discard(entry.path)
        entry.folder.mkdir(exist_ok=True)
        try:
            import_file(entry.source, entry.path, read_progress=read_progress, progress=progress)
        except BaseException:
            _remove_if_empty(entry.folder)
            raise
        try:
            changed = entry_for(entry.source).key != entry.key
        except ImportFailed:
            changed = True
        if changed:
            with store.ctrl_c_held():
                store.discard(entry.path)
                _remove_if_empty(entry.folder)
            raise ImportFailed(
                f"Cannot import '{source}': it changed while it was read (is it still being written?). "
                "Open it again once it is complete. Nothing was kept."
            )
    return entry.path, True


__all__ = [
    "CACHE_ENV",
    "CACHE_VERSION",
    "CacheEntry",
    "cache_root",
    "cached_import",
    "entry_for",
    "importable_format",
    "imports_dir",
    "is_point_table",
    "lookup",
    "sweep",
]
