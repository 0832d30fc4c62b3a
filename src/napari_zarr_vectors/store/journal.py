"""Crash-safe writes to a store: a cross-process lock, an in-store journal, metadata published last.

The protocol (docs/safety.md describes it for other tools):

* **No links.** Before anything else, the writer refuses a store with a
  symbolic link anywhere in it (chunk folders and files, the journal and the
  lock file included): nothing is written, moved or deleted through one.
  ``recover`` looks too, holding the lock.
* **Lock.** A writer holds ``<store>/.nzv-lock`` (``filelock``: an OS lock,
  released when the process dies, even by ``kill -9``).  A second writer is
  refused at once, naming the holder recorded in the journal.
* **Journal.** Before the first byte changes, the writer records in
  ``<store>/.nzv-journal/journal.json`` who it is and every folder and
  file of the store outside chunk folders (``before``), fsynced.
* **Staged metadata.** Every ``zarr.json`` the writer writes goes to
  ``.nzv-journal/staged/`` instead.  Readers (this plugin, zarr-vectors,
  zarr) find levels, arrays and link families by their ``zarr.json``, so
  new folders are invisible and the store reads as it was published.
  Chunk files go straight to their folders, which only new nodes have.
* **Publish last.** When the data is written: sync it to disk, mark the
  journal ``publishing`` (atomically, fsynced), move the staged metadata
  into place by ``os.replace`` (new nodes first, the root ``zarr.json``
  last), apply deferred removals, then delete the journal.
* **Recovery.** A journal with no lock holder is a hot journal (SQLite's
  word): the writer died.  ``writing``: roll back by deleting what is not in
  ``before`` (all of it invisible, so every step leaves an openable store).
  ``publishing``: the data was durable, so roll forward.  The next writer, or
  ``recover``, does this before anything else; a reader sees the published
  store either way.

This module knows zarr's Store API, not zarr-vectors (except the writer
thread pool it waits for: ``settle_writer_threads``); ``session.py`` routes
its writes through :class:`StagingStore` during a :func:`write_session`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zarr.abc.store import ByteRequest
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype
from zarr.storage import LocalStore as _ZarrLocalStore

JOURNAL = ".nzv-journal"
LOCK = ".nzv-lock"
JOURNAL_FORMAT = 1
METADATA = "zarr.json"
#: Chunk folders are never listed in ``before``: a write session only adds nodes, so their contents are theirs.
CHUNK_DIR = "c"


class StoreLocked(RuntimeError):
    """Another process (or thread) is writing to this store."""


class JournalError(RuntimeError):
    """A journal that cannot be read or acted on."""


class SymlinkInStore(JournalError):
    """A symbolic link inside the store: a write or delete through it could land outside the store."""


# ---------------------------------------------------------------- the staging store


def _is_metadata(key: str) -> bool:
    return key == METADATA or key.endswith("/" + METADATA)


class LocalStore(_ZarrLocalStore):
    """A zarr ``LocalStore`` whose metadata writes go to the journal's staging folder.

    Named ``LocalStore`` on purpose: zarr-vectors writes and reads chunk
    cells straight to disk only for a store of that class name (its fast
    path), which is what chunks should do here too; metadata always goes
    through ``get``/``set``, which this class redirects.  Reads see staged
    metadata first (read-your-writes); removals of existing nodes are
    deferred to publish.
    """

    def __init__(self, root: Path | str, *, staged: Path | str, read_only: bool = False) -> None:
        super().__init__(root, read_only=read_only)
        self.staged = Path(staged)
        self.deferred_deletes: set[str] = set()
        self._lock = threading.Lock()

    def with_read_only(self, read_only: bool = False) -> LocalStore:
        clone = type(self)(self.root, staged=self.staged, read_only=read_only)
        clone.deferred_deletes = self.deferred_deletes  # one session, one set
        clone._lock = self._lock
        return clone

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LocalStore) and self.root == other.root and self.staged == other.staged

    __hash__ = None  # type: ignore[assignment]

    # -- helpers
    def _staged_path(self, key: str) -> Path:
        return self.staged / key

    def _hidden(self, key: str) -> bool:
        return any(key == d or key.startswith(d.rstrip("/") + "/") for d in self.deferred_deletes)

    # -- reads
    async def get(
        self, key: str, prototype: BufferPrototype | None = None, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        if self._hidden(key):
            return None
        if _is_metadata(key):
            staged = self._staged_path(key)
            if staged.is_file():
                inner = _ZarrLocalStore(self.staged, read_only=True)
                return await inner.get(key, prototype or default_buffer_prototype(), byte_range)
        return await super().get(key, prototype, byte_range)

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        return [await self.get(key, prototype, byte_range) for key, byte_range in key_ranges]

    async def exists(self, key: str) -> bool:
        if self._hidden(key):
            return False
        if _is_metadata(key) and self._staged_path(key).is_file():
            return True
        return await super().exists(key)

    async def list(self) -> AsyncIterator[str]:
        async for key in self.list_prefix(""):
            yield key

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        seen: set[str] = set()
        async for key in super().list_prefix(prefix):
            if not key.startswith(JOURNAL) and not key.startswith(LOCK) and not self._hidden(key):
                seen.add(key)
                yield key
        base = self.staged / prefix.rstrip("/") if prefix.strip("/") else self.staged
        if base.is_dir():
            for p in base.rglob(METADATA):
                key = p.relative_to(self.staged).as_posix()
                if key not in seen and not self._hidden(key):
                    yield key

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        seen: set[str] = set()
        async for name in super().list_dir(prefix):
            if name in (JOURNAL, LOCK) or self._hidden(f"{prefix.rstrip('/')}/{name}".lstrip("/")):
                continue
            seen.add(name)
            yield name
        base = self.staged / prefix if prefix.strip("/") else self.staged
        if base.is_dir():
            for p in base.iterdir():
                if p.name not in seen and not self._hidden(f"{prefix.rstrip('/')}/{p.name}".lstrip("/")):
                    yield p.name

    # -- writes
    async def set(self, key: str, value: Buffer) -> None:
        if _is_metadata(key):
            self._check_writable()
            with self._lock:
                self._unhide(key)
            await _ZarrLocalStore(self.staged).set(key, value)
            return
        await super().set(key, value)

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        if _is_metadata(key):
            if not await self.exists(key):
                await self.set(key, value)
            return
        await super().set_if_not_exists(key, value)

    def _unhide(self, key: str) -> None:
        for d in [d for d in self.deferred_deletes if key.startswith(d.rstrip("/") + "/") or key == d]:
            self.deferred_deletes.discard(d)

    async def delete(self, key: str) -> None:
        self._check_writable()
        if _is_metadata(key):
            self._staged_path(key).unlink(missing_ok=True)
            if (self.root / key).is_file():
                with self._lock:
                    self.deferred_deletes.add(key)
            return
        if (self.root / key).exists() and _inside_existing_node(self.root, key):
            with self._lock:
                self.deferred_deletes.add(key)
            return
        await super().delete(key)

    def delete_when_published(self, keys: Iterable[str]) -> None:
        """Delete these files (store-relative keys) when the session publishes: they stay until then.

        For what no zarr key names, such as leftover ``*.partial`` files of
        interrupted cell writes: a kill before the publish leaves them, one
        during it finishes the deletions on recovery (roll forward).
        """
        self._check_writable()
        with self._lock:
            self.deferred_deletes.update(keys)

    async def delete_dir(self, prefix: str) -> None:
        self._check_writable()
        prefix = prefix.rstrip("/")
        staged = self.staged / prefix if prefix else self.staged
        if staged.is_dir():
            shutil.rmtree(staged)
        real = self.root / prefix if prefix else self.root
        if not real.is_dir():
            return
        if (real / METADATA).is_file() or _inside_existing_node(self.root, prefix):
            with self._lock:
                self.deferred_deletes.add(prefix)  # an existing node: removed when the session publishes
        else:
            shutil.rmtree(real)


def _inside_existing_node(root: Path, key: str) -> bool:
    """Whether ``key`` lies below a node whose ``zarr.json`` is on disk (published), other than the root."""
    parts = key.strip("/").split("/")
    return any((root.joinpath(*parts[:i]) / METADATA).is_file() for i in range(len(parts) - 1, 0, -1))


# ---------------------------------------------------------------- the journal


@dataclass
class Holder:
    pid: int
    host: str
    started: float
    operation: str

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return f"process {self.pid} on {self.host} ({self.operation}, started {when})"


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform or file system can fsync a folder
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_json_atomic(path: Path, value: Any) -> None:
    """Write JSON durably: a temp file beside ``path``, fsync, rename over it, fsync the folder."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(value, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _entries(root: Path, descend: Any = None) -> Iterator[tuple[os.DirEntry, str]]:
    """Every entry below ``root`` as (entry, name), folders named with a trailing ``/``.

    The journal and the lock file are left out, and chunk folders (``c``)
    are not entered; ``descend(name)`` says whether to enter another folder.
    """
    stack = [(root, "")]
    while stack:
        folder, rel = stack.pop()
        with os.scandir(folder) as it:
            found = list(it)
        for entry in found:
            if not rel and entry.name in (JOURNAL, LOCK):
                continue
            is_dir = entry.is_dir(follow_symlinks=False)
            name = f"{rel}{entry.name}{'/' if is_dir else ''}"
            yield entry, name
            if is_dir and entry.name != CHUNK_DIR and (descend is None or descend(name)):
                stack.append((Path(entry.path), name))


def _listing(root: Path) -> list[str]:
    """Every folder and file below ``root``, chunk folders' contents and the journal excluded."""
    return [name for _, name in _entries(root)]


def _links_below(root: Path, most: int | None = None) -> Iterator[str]:
    """The path of every symbolic link below ``root``, never following one.

    Everything is walked: chunk folders (``c/``) and chunk files, the
    journal and the lock file too, since a write or a rollback touches any
    of them.  Only ``os.scandir`` entries are read (the kind comes from the
    folder listing, no ``stat`` per file on Linux): about 0.5 s for a store
    of 245,000 files in 6,600 folders, warm cache (docs/safety.md).  A
    folder that vanishes meanwhile (a live writer's rollback or publish; it
    is refused by the lock next) is skipped: nothing can be written through it.
    ``most``: stop after that many entries (a diagnosis, not a guard).
    """
    stack, seen = [os.fspath(root)], 0
    while stack and (most is None or seen < most):
        try:
            it = os.scandir(stack.pop())
        except (FileNotFoundError, NotADirectoryError):
            continue
        with it:
            for entry in it:
                seen += 1
                if entry.is_symlink():
                    yield entry.path
                elif entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)


def symlinks(root: Path) -> list[str]:
    """Symbolic links anywhere below ``root`` (relative names): a write or delete through one would leave the store."""
    return [os.path.relpath(path, root) for path in _links_below(root)]


def _link_message(root: Path, link: str) -> str:
    return (
        f"Store '{root}' contains a symbolic link ('{link}'); a change would write outside "
        "the store through it. Replace the link with a real copy of what it points to, then try again. "
        "Nothing was changed."
    )


def first_symlink(root: Path, most: int | None = None) -> str | None:
    """The first symbolic link below ``root`` (relative name), or None; ``most`` bounds the entries looked at."""
    link = next(_links_below(root, most), None)
    return None if link is None else os.path.relpath(link, root)


def refuse_symlinks(root: Path) -> None:
    """SymlinkInStore naming the first link found anywhere below ``root``; run before anything is written."""
    link = next(_links_below(root), None)
    if link is not None:
        raise SymlinkInStore(_link_message(root, link))


def journal_path(root: Path) -> Path:
    return root / JOURNAL / "journal.json"


def read_journal(root: Path) -> dict[str, Any] | None:
    path = journal_path(root)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise JournalError(
            f"Store '{root}' has an unreadable build journal ({path}): {exc}. "
            f"Move the folder '{root / JOURNAL}' aside to open the store as it was published."
        ) from exc
    return data if isinstance(data, dict) else None


def holder_of(root: Path) -> Holder | None:
    data = read_journal(root) or {}
    h = data.get("holder")
    if not isinstance(h, dict):
        return None
    try:
        return Holder(int(h["pid"]), str(h["host"]), float(h["started"]), str(h.get("operation", "build")))
    except (KeyError, TypeError, ValueError):
        return None


def _file_lock(root: Path) -> Any:
    from filelock import FileLock

    # taking the lock opens the file: never through a link (filelock 4.x refuses one too, but then the
    # message would say the store is busy)
    if (root / LOCK).is_symlink():
        raise SymlinkInStore(_link_message(root, str(root / LOCK)))
    return FileLock(str(root / LOCK), timeout=0, thread_local=False, is_singleton=False)


def _locked_message(root: Path) -> str:
    holder = holder_of(root)
    who = holder.describe() if holder is not None else "another process"
    return (
        f"Store '{root}' is being changed by {who}; wait for it to finish. "
        f"If that process is gone, the lock is released by the operating system and the next "
        f"build recovers the store; on a network file system without locks, delete '{root / LOCK}' "
        f"only once you are sure nothing writes to the store."
    )


def _acquire(root: Path) -> Any:
    """The store's writer lock, taken without waiting; StoreLocked naming the holder when it is held."""
    lock = _file_lock(root)
    # Ctrl+C is held while the lock is taken: one landing after filelock created the lock file but before the
    # caller's cleanup began left the file behind (seen in CI); it is delivered once the file is gone again
    with _DeferSigint() as held:
        try:
            lock.acquire()
        except Exception as exc:
            raise StoreLocked(_locked_message(root)) from exc
        if held.pending:
            _release(root, lock)
    return lock


def _release(root: Path, lock: Any) -> None:
    """Delete the lock file while still holding it, then release: the store is left without it.

    A peer that opened the old file meanwhile finds it unlinked once it
    gets the lock, and filelock (4.x) then retries on a new file.
    """
    with _DeferSigint():  # not cut between the two
        with contextlib.suppress(OSError):
            (root / LOCK).unlink()
        lock.release()


def is_hot(root: Path) -> bool:
    """A journal whose writer is gone (nobody holds the lock)."""
    if not (root / JOURNAL).is_dir():
        return False
    lock = _file_lock(root)
    try:
        lock.acquire()
    except Exception:
        return False  # a live writer holds it: not hot, in progress
    _release(root, lock)
    return True


class _DeferSigint:
    """Hold back Ctrl+C while a rollback or publish runs, and deliver it afterwards."""

    def __enter__(self) -> _DeferSigint:
        self.pending = False
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._hold)
        return self

    def _hold(self, signum: int, frame: Any) -> None:
        self.pending = True

    def __exit__(self, *exc: Any) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        if self.pending and exc[0] is None:
            raise KeyboardInterrupt


class _SessionSigint:
    """A write session's Ctrl+C: the first one while the caller's writes run interrupts them; any other is held.

    Held until the store is restored or published, then delivered.  A
    handler installed for the whole session (not one per step) leaves no
    gap between steps where a Ctrl+C cut an undo short: CI saw a lock file
    left by one landing inside the lock's acquisition, and a second Ctrl+C
    20 ms after the first cut the build's own clean-up short.
    """

    def __init__(self) -> None:
        self.armed = False
        self.pending: tuple[int, Any] | None = None
        self.previous: Any = None
        self.installed = False

    def __enter__(self) -> _SessionSigint:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
            self.installed = True
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if not self.armed:
            self.pending = (signum, frame)
            return
        self.armed = False  # one interruption: what it sets off runs to the end
        self._deliver(signum, frame)

    def _deliver(self, signum: int, frame: Any) -> None:
        if callable(self.previous):
            self.previous(signum, frame)  # default_int_handler raises KeyboardInterrupt
        elif self.previous != signal.SIG_IGN:
            raise KeyboardInterrupt

    def arm(self) -> None:
        """Let a Ctrl+C interrupt from here; one held until now is delivered at once."""
        held, self.pending = self.pending, None
        if held is not None:
            self._deliver(*held)
        self.armed = True

    def __exit__(self, *exc: Any) -> None:
        self.armed = False
        if self.installed:
            signal.signal(signal.SIGINT, self.previous)
        held, self.pending = self.pending, None
        if held is not None and not (exc[0] is not None and issubclass(exc[0], KeyboardInterrupt)):
            self._deliver(*held)  # a failure's clean-up does not swallow the user's Ctrl+C


def _sync_all() -> None:
    """Make every written chunk durable before any metadata points to it."""
    sync = getattr(os, "sync", None)
    if sync is not None:
        sync()


def settle_writer_threads(timeout: float = 60.0) -> None:
    """Wait until zarr-vectors' shared cell-writer pool has finished every write already handed to it.

    zarr-vectors writes chunk cells from a thread pool and raises the
    first failure (a full disk) while the other cells are still being
    written: a folder removed at once fills again behind our back.  One
    waiting task per possible worker is queued behind those writes (the
    queue is first in, first out); once every worker thread of the pool
    holds one of them, no earlier write is still running.  Nothing to
    wait for when the pool was never started.
    """
    try:
        from zarr_vectors.core import _batch_writer
    except ImportError:  # pragma: no cover - another zarr-vectors layout: nothing known to wait for
        return
    pool = getattr(_batch_writer, "_WRITE_POOL", None)
    workers, threads = getattr(pool, "_max_workers", None), getattr(pool, "_threads", None)
    if pool is None or not isinstance(workers, int) or not isinstance(threads, set):
        return
    gate = threading.Condition()
    state = {"arrived": 0, "open": False}

    def hold() -> None:
        with gate:
            state["arrived"] += 1
            gate.notify_all()
            gate.wait_for(lambda: state["open"], timeout)

    try:
        for _ in range(workers):
            pool.submit(hold)
    except RuntimeError:  # the pool was shut down (interpreter exit): no writes are running
        return
    with gate:
        gate.wait_for(lambda: state["arrived"] >= len(threads), timeout)
        state["open"] = True
        gate.notify_all()


#: A rollback repeats until a pass finds nothing new for this long: writer threads may still be flushing cells.
QUIET_S = 0.25
QUIET_MAX_S = 60.0


def _rollback(root: Path, journal: dict[str, Any], *, until_quiet: bool = False) -> None:
    """Delete what is not in the journal's ``before`` listing (invisible: no metadata points to it), then the journal.

    ``until_quiet``: a writer's threads (zarr-vectors flushes cells on a
    pool) may still be finishing cells when the error reaches us, so the
    pass repeats until one finds nothing new, before the journal goes.
    """
    if until_quiet:
        settle_writer_threads()  # the cells already handed to zarr-vectors' writer threads land first
    deadline = time.monotonic() + QUIET_MAX_S
    while _undo_pass(root, set(journal.get("before") or [])) and until_quiet and time.monotonic() < deadline:
        time.sleep(QUIET_S)
    shutil.rmtree(root / JOURNAL, ignore_errors=True)
    _fsync_dir(root)


def _undo_pass(root: Path, before: set[str]) -> int:
    """One pass of the rollback; how many entries it removed."""
    doomed = [Path(e.path) for e, name in _entries(root, descend=before.__contains__) if name not in before]
    for path in doomed:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    return len(doomed)


def _staged_keys(staged: Path) -> list[str]:
    if not staged.is_dir():
        return []
    return [p.relative_to(staged).as_posix() for p in staged.rglob(METADATA)]


def _publish(root: Path, journal: dict[str, Any]) -> None:
    """Move staged metadata into place (deepest new nodes first, the root last), then apply removals.

    The root zarr.json is replaced by every publish, changed or not: a
    reader notices a publish by one stat of it (``store.handle``).
    """
    staged = root / JOURNAL / "staged"
    keys = _staged_keys(staged)
    if METADATA not in keys and (root / METADATA).is_file():
        staged.mkdir(parents=True, exist_ok=True)
        copy = staged / f".{METADATA}.copy"  # not a staged key until whole and durable (a crash may stop here)
        with open(copy, "wb") as fh:
            fh.write((root / METADATA).read_bytes())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(copy, staged / METADATA)
        keys.append(METADATA)
    # new nodes before existing ones; deeper before shallower: a node appears only once its children are whole
    keys.sort(key=lambda k: ((root / k).exists(), -k.count("/"), k))
    for key in keys:
        src, dest = staged / key, root / key
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dest)
        _fsync_dir(dest.parent)
    trash = root / JOURNAL / "trash"
    for i, key in enumerate(sorted(journal.get("deferred_deletes") or [], key=lambda k: -k.count("/"))):
        path = root / key
        if path.is_dir():
            trash.mkdir(parents=True, exist_ok=True)
            os.replace(path, trash / f"{i}")  # gone from the store in one step
        elif path.exists():
            path.unlink()
    shutil.rmtree(root / JOURNAL, ignore_errors=True)
    _fsync_dir(root)


def recover(root: str | os.PathLike[str]) -> str | None:
    """Finish or undo an interrupted write on ``root``; a sentence saying which, or None if none was needed.

    Raises StoreLocked if a live writer holds the store, SymlinkInStore if a
    symbolic link is anywhere in it (recovery deletes and moves files).
    """
    root = Path(root)
    if not (root / JOURNAL).is_dir():
        return None
    lock = _acquire(root)
    try:
        refuse_symlinks(root)  # rolling back deletes and rolling forward moves files: only inside the store
        return _recover_locked(root)
    finally:
        _release(root, lock)


def _recover_locked(root: Path) -> str | None:
    journal = read_journal(root)
    if journal is None:  # killed while starting its journal: nothing in the store had changed yet
        shutil.rmtree(root / JOURNAL, ignore_errors=True)
        return None
    holder = holder_of(root)
    who = holder.describe() if holder is not None else "an earlier process"
    with _DeferSigint():
        if journal.get("state") == "publishing":
            _publish(root, journal)
            return f"Finished publishing an interrupted {journal.get('operation', 'build')} by {who} on '{root}'."
        _rollback(root, journal)
    return f"Undid an interrupted {journal.get('operation', 'build')} by {who} on '{root}'; the store is as it was."


@contextlib.contextmanager
def write_session(root: str | os.PathLike[str], operation: str = "build") -> Iterator[LocalStore]:
    """Hold the store's lock, journal the write, and yield the staging store to write through.

    On success the new metadata is published last; on any exception
    (KeyboardInterrupt and kill -9 included, through recovery) the store
    is left as it was.  A store with a symbolic link anywhere in it is
    refused (SymlinkInStore) before anything else; then a hot journal found
    first is recovered first.
    """
    root = Path(root)
    # before the lock: a kill during the walk leaves nothing behind (not even the lock file), and the walk
    # covers the journal, so recovering a hot journal below is safe too
    refuse_symlinks(root)
    with _SessionSigint() as sigint:
        lock = None
        try:
            lock = _acquire(root)
            if (root / JOURNAL).is_dir():
                _recover_locked(root)
            journal: dict[str, Any] | None = None
            try:
                (root / JOURNAL).mkdir(exist_ok=True)
                staged = root / JOURNAL / "staged"
                record: dict[str, Any] = {
                    "format": JOURNAL_FORMAT,
                    "operation": operation,
                    "state": "writing",
                    "holder": {
                        "pid": os.getpid(),
                        "host": socket.gethostname(),
                        "started": time.time(),
                        "operation": operation,
                    },
                    "before": _listing(root),
                }
                write_json_atomic(journal_path(root), record)
                journal = record
                staging = LocalStore(root, staged=staged)
                sigint.arm()  # a Ctrl+C held during the setup is delivered here, into the undo below
                yield staging
                sigint.armed = False
            except BaseException:
                sigint.armed = False  # first, before anything can check for signals: the undo is not cut short
                if journal is not None:
                    _rollback(root, journal, until_quiet=True)
                else:  # nothing was recorded, so nothing was written: the new journal folder goes
                    shutil.rmtree(root / JOURNAL, ignore_errors=True)
                raise
            _sync_all()
            journal["state"] = "publishing"
            journal["deferred_deletes"] = sorted(staging.deferred_deletes)
            write_json_atomic(journal_path(root), journal)
            _publish(root, journal)
        finally:
            if lock is not None:
                _release(root, lock)
