"""The write session: a store changed all or nothing, safe against kill -9, a full disk and a second writer.

Takes the cross-process lock, recovers an interrupted earlier write, and
routes every zarr-vectors write for the store through the journal's
staging store (``journal.py``), so the new metadata is published last."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .access import plain, refuse_remote, resolve
from .errors import StoreBusy, StoreError
from .handle import _SESSIONS, Handle, _forget, _store_root, _writing, handle
from .metadata import _mapping

_SESSION_OWNERS: dict[str, int] = {}


_SESSIONS_LOCK = threading.Lock()


#: The format series this plugin writes (zarr-vectors is pinned to it); others are read, never changed.
WRITABLE_ZV_SERIES = "0.9"


def check_writable_format(path: str | os.PathLike[str] | Handle) -> None:
    """Refuse to change a store written in another format series than the one this plugin writes."""
    attrs, _ = _store_root(handle(path))
    zv_meta = _mapping(attrs.get("zarr_vectors"))
    version = str(zv_meta.get("zv_version", "")).strip()
    series = ".".join(version.split(".")[:2])
    if series != WRITABLE_ZV_SERIES:
        shown = f"format {version}" if version else "no format version (zv_version)"
        raise StoreError(
            f"Store '{path}' has {shown}; this plugin changes only Zarr Vectors {WRITABLE_ZV_SERIES}.x stores "
            f"(zarr-vectors {WRITABLE_ZV_SERIES}). It can still be opened; to build or remove levels, convert it "
            "with a matching zarr-vectors release first. Nothing was changed."
        )


@contextlib.contextmanager
def write_session(path: str | os.PathLike[str], operation: str = "build") -> Iterator[None]:
    """Change a store all or nothing, safe against kill -9, a full disk and a second writer.

    Takes the store's cross-process lock (refused at once, naming the
    holder, when held), recovers an interrupted earlier write, journals
    this one, and routes every zarr-vectors write for ``path`` in this
    process through the journal's staging store, so the new metadata is
    published last.  See ``journal.py`` and docs/safety.md.
    """
    from . import journal

    path = plain(path)
    refuse_remote(path, "build or remove levels")
    root = Path(path).resolve()
    key = str(root)
    if _SESSION_OWNERS.get(key) == threading.get_ident():  # nested in this thread's own session: part of it
        yield
        return
    check_writable_format(root)  # a symbolic link anywhere in the store is refused by journal.write_session
    with _SESSIONS_LOCK:
        if key in _SESSIONS:
            raise StoreBusy(f"Store '{path}' is already being changed by this process; wait for that to finish.")
        _SESSIONS[key] = None  # reserved
        _SESSION_OWNERS[key] = threading.get_ident()
    try:
        with journal.write_session(root, operation) as staging:
            _SESSIONS[key] = staging
            try:
                yield
            finally:
                _SESSIONS[key] = None
    except journal.StoreLocked as exc:
        raise StoreBusy(str(exc)) from exc
    except journal.JournalError as exc:
        raise StoreError(str(exc)) from exc
    except OSError as exc:
        raise StoreError(_os_error_message(path, exc)) from exc
    finally:
        with _SESSIONS_LOCK:
            _SESSIONS.pop(key, None)
            _SESSION_OWNERS.pop(key, None)
        _forget(key)  # published (or undone): the next read opens the store as it now is


def _os_error_message(path: str | os.PathLike[str], exc: OSError) -> str:
    import errno

    if exc.errno == errno.ENOSPC:
        return f"Store '{path}': the disk is full ({exc}). The change was undone; free some space and try again."
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"Store '{path}' cannot be written ({exc}); nothing was changed. Make it writable and try again."
    return f"Store '{path}': the change failed ({exc}) and was undone; the store is as it was."


def recover(path: str | os.PathLike[str]) -> str | None:
    """Finish or undo an interrupted build on ``path`` (a sentence saying which), or None if there was none."""
    from . import journal

    path = plain(path)
    refuse_remote(path, "recover an interrupted change")
    try:
        with _writing(path):
            return journal.recover(Path(path).resolve())
    except journal.StoreLocked as exc:
        raise StoreBusy(str(exc)) from exc
    except journal.JournalError as exc:
        raise StoreError(str(exc)) from exc


def recover_if_interrupted(path: str | os.PathLike[str]) -> str | None:
    """Recover an interrupted write left in ``path`` when the store can be written; a sentence, or None.

    What recovery deletes was never visible and what it publishes was
    durable, so an open may do it.  A store this process cannot write,
    one with a symbolic link in it, or one a live writer holds, is left
    alone: it reads as published.
    """
    from . import journal

    root = _journaled(path)
    if root is None:
        return None
    if _SESSIONS.get(str(root)) is not None or interrupted_write(root) is None:
        return None
    if not os.access(root, os.W_OK) or not os.access(root / ".nzv-journal", os.W_OK):
        return None
    try:
        return recover(root)
    except StoreBusy:
        return None
    except StoreError as exc:
        if isinstance(exc.__cause__, journal.SymlinkInStore):  # never changed through a link: read as published
            return None
        raise


def _journaled(path: Any) -> Path | None:
    """The folder of a store that may hold a write journal (one this plugin can write), else None."""
    try:
        a = resolve(path)
    except StoreError:
        return None
    return a.local if a.writable else None


def interrupted_write(path: str | os.PathLike[str]) -> str | None:
    """A sentence about an interrupted write left in ``path``'s journal (nobody holds its lock), else None."""
    from . import journal

    root = _journaled(path)
    if root is None:
        return None
    try:
        if not journal.is_hot(root):
            return None
        holder = journal.holder_of(root)
    except (journal.JournalError, OSError):
        return None
    who = holder.describe() if holder is not None else "an earlier process"
    return f"Store '{root}' has an interrupted change by {who}; it shows as it was before that change."


def unwritable(path: str | os.PathLike[str], trees: Iterable[str] = (), folders: Iterable[str] = ()) -> Path | None:
    """The first file or folder a change could not make, or None.

    Covers the store folder and its root zarr.json, every folder and
    zarr.json below each of ``trees`` (relative paths, e.g. a level to
    delete: a folder's entries can only be removed when it is writable),
    and each of ``folders`` with its own zarr.json. Checked before a
    change, so a read-only store is refused while it is still whole.
    """
    root = Path(path).resolve()
    candidates = [root, root / "zarr.json"]
    for rel in folders:
        candidates += [root / rel, root / rel / "zarr.json"]
    for rel in trees:
        for folder, _, files in os.walk(root / rel):
            candidates.append(Path(folder))
            candidates += [Path(folder) / f for f in files if f == "zarr.json"]
    return next((c for c in candidates if c.exists() and not os.access(c, os.W_OK)), None)
