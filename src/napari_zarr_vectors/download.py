"""A local working copy of a remote store: resumable, with progress, and at its name only when complete.

Remote stores are read-only in this plugin; pyramids are built on a copy.
``download`` finds the store's files from its metadata (``store.copy_plan``),
fetches them concurrently into a hidden sibling of the destination
(``.NAME.download``), each through a temporary file renamed into place, so
a file that is there is whole.  An interrupted download (Ctrl+C, kill -9, a
lost connection) leaves that folder; the same command run again fetches
only what is missing.  When every file is there, the copy is made
consistent for the levels chosen (``store.finish_copy``) and the folder is
renamed to the destination.  Qt-free: the CLI and any other front end use it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from . import store

#: The download's own record in the hidden folder: which URL it copies, and the metadata it planned from.
STATE = ".nzv-download.json"
#: Suffix of a file still being written (never taken for a whole file; removed when a download resumes).
PART = ".nzv-part"


class DownloadError(store.StoreError):
    """A download was refused or failed; the message says why and what to do."""


@dataclass(frozen=True)
class DownloadProgress:
    """How far a download is: files (metadata included) and bytes fetched by this run."""

    files_done: int
    files_total: int
    bytes_done: int
    resumed: int  # files already there from an interrupted run

    @property
    def fraction(self) -> float:
        return self.files_done / self.files_total if self.files_total else 1.0

    @property
    def finished(self) -> bool:
        return self.files_done >= self.files_total


@dataclass(frozen=True)
class DownloadResult:
    """What a finished download made: the copy, its levels, and what this run fetched."""

    path: Path
    levels: tuple[int, ...]
    files: int
    fetched: int
    bytes: int
    resumed: int


def hidden_folder(dest: str | os.PathLike[str]) -> Path:
    """Where a download into ``dest`` collects its files until it is complete: ``.NAME.download`` beside it."""
    dest = Path(dest).absolute()
    return dest.parent / f".{dest.name}.download"


def parse_levels(text: str) -> tuple[int, ...] | None:
    """``"all"`` as None, ``"2,3"`` as (2, 3); a ValueError naming what is wrong."""
    text = text.strip().lower()
    if text == "all":
        return None
    try:
        levels = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise ValueError(f"{text!r} is not a list of levels (for example 0,2 or all)") from None
    if not levels or min(levels) < 0:
        raise ValueError(f"{text!r} is not a list of levels (for example 0,2 or all)")
    return levels


def _check_source(url: str) -> str:
    if store.resolve(url).local is not None:
        raise DownloadError(
            f"'{url}' is a local path; download copies a remote store (http(s)://, s3:// or gs://). "
            "A local store needs no download: open it, or copy its folder (cp -r) to build pyramids on a copy."
        )
    return store.address(url)


def _check_dest(dest: Path) -> None:
    store.check_new_target(dest, "download into", DownloadError)


def _target(root: Path, key: str) -> Path:
    """Where ``key`` goes inside ``root``; a DownloadError for a key that would leave it (``..``, absolute, drive)."""
    parts = key.split("/")
    bad = [p for p in parts if p in ("", ".", "..") or "\\" in p or "\0" in p or (len(p) == 2 and p[1] == ":")]
    path = root.joinpath(*parts)
    if bad or Path(key).is_absolute() or root not in path.parents:
        # store.copy_plan only names keys inside the store; this guards the guard
        raise DownloadError(f"Refusing to write '{key}': it is not a path inside the store. Nothing was written.")
    return path


def _write_file(root: Path, key: str, data: bytes) -> None:
    """Write ``root/key`` whole or not at all: a temporary file, flushed to disk, renamed into place."""
    path = _target(root, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}{PART}")
    try:
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())  # a power cut must not leave a short file under the final name
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


async def _write_pieces(root: Path, key: str, pieces: Any) -> int:
    """Write ``root/key`` from an async iterator of pieces, whole or not at all; its size.

    Each piece goes to disk before the next is read, so a file is never
    held in memory whole (a server's 3 GiB "chunk" is refused by the cap
    long before, but even an allowed one streams).
    """
    path = _target(root, key)
    await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}{PART}")
    size = 0
    # opened here, not on a thread: a Ctrl+C that cancels an awaited open would leave the file behind
    fh = tmp.open("wb")
    try:
        try:
            async for piece in pieces:
                await asyncio.to_thread(fh.write, piece)
                size += len(piece)
            await asyncio.to_thread(fh.flush)
            await asyncio.to_thread(os.fsync, fh.fileno())  # a power cut must not leave a short file
        finally:
            fh.close()
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return size


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (where the platform can)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove_parts(root: Path) -> None:
    """Delete what an interrupted run was still writing (never a whole file)."""
    for folder, _, names in os.walk(root):
        for name in names:
            if name.endswith(PART):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(folder, name))


def _digests(plan: store.CopyPlan) -> dict[str, str]:
    return {key: hashlib.sha256(raw).hexdigest() for key, raw in plan.metadata.items()}


def _read_state(hidden: Path) -> dict[str, Any] | None:
    try:
        state = json.loads((hidden / STATE).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _interrupted(hidden: Path, url: str) -> dict[str, Any] | None:
    """The record of an interrupted download into ``hidden`` (None: there is none); refused when of another URL."""
    if not hidden.exists():
        return None
    if not hidden.is_dir():
        raise DownloadError(f"'{hidden}' is a file, where this download keeps its files; move it aside.")
    state = _read_state(hidden)
    if state is not None and state.get("url") != store.shown(url):
        raise DownloadError(
            f"'{hidden}' holds an unfinished download of {state.get('url')!r}, not of '{store.shown(url)}'. "
            f"Finish that one (napari-zarr-vectors download {state.get('url')} ...), or delete the folder."
        )
    return state  # None: stopped before it recorded anything (at most parts, removed before fetching)


def _restart_if_changed(hidden: Path, state: dict[str, Any], plan: store.CopyPlan, say: Callable[[str], None]) -> None:
    """Keep an interrupted download's files when the store is as it was then; else start afresh."""
    before = state.get("metadata") if isinstance(state.get("metadata"), dict) else {}
    now = _digests(plan)
    changed = sorted(k for k in before.keys() & now.keys() if before[k] != now[k])
    if changed:
        say(
            f"The store changed on the server since the interrupted download ({changed[0]} differs); "
            "starting over so the copy is not a mix of two versions."
        )
        shutil.rmtree(hidden)


def _prune(hidden: Path, plan: store.CopyPlan) -> None:
    """Delete what the copy does not take (levels an earlier run was asked for, files the store no longer has)."""
    keep = plan.keys | {STATE}
    for folder, _, names in os.walk(hidden, topdown=False):
        for name in names:
            path = Path(folder, name)
            if path.relative_to(hidden).as_posix() not in keep:
                path.unlink()
        if Path(folder) != hidden and not any(Path(folder).iterdir()):
            Path(folder).rmdir()


def _write_state(hidden: Path, url: str, plan: store.CopyPlan) -> None:
    state = {"url": store.shown(url), "levels": list(plan.levels), "metadata": _digests(plan)}
    _write_file(hidden, STATE, json.dumps(state, indent=1).encode())


async def _fetch_all(
    files: store.StoreFiles,
    hidden: Path,
    keys: list[str],
    optional: frozenset[str],
    on_file: Callable[[int], None],
    concurrency: int,
) -> tuple[str, BaseException | None] | None:
    """Fetch ``keys`` into ``hidden``, ``concurrency`` at a time; the first failure as (key, exception or None: 404)."""
    pending = iter(keys)
    failure: list[tuple[str, BaseException | None]] = []

    async def worker() -> None:
        for key in pending:
            if failure:
                return
            try:
                pieces = await files.pieces(key)
                if pieces is None:
                    if key in optional:  # a cell never written reads as its fill value: nothing to copy
                        on_file(0)
                        continue
                    failure.append((key, None))
                    return
                size = await _write_pieces(hidden, key, pieces)
            except Exception as exc:  # noqa: BLE001 - reported with the file's name
                failure.append((key, exc))
                return
            on_file(size)

    await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    return failure[0] if failure else None


def _run(files: store.StoreFiles, coro: Any, done: threading.Event) -> Any:
    """Run ``coro`` on the store's I/O loop; Ctrl+C cancels it and waits until its writes have settled."""
    future = files.run(coro)
    try:
        while True:
            try:
                return future.result(timeout=0.2)
            except concurrent.futures.TimeoutError:
                continue
    except KeyboardInterrupt:
        future.cancel()
        done.wait(5.0)
        raise


def download(
    url: str,
    dest: str | os.PathLike[str],
    *,
    levels: Iterable[int] | None = None,
    progress: Callable[[DownloadProgress], None] | None = None,
    say: Callable[[str], None] | None = None,
    concurrency: int = store.COPY_CONCURRENCY,
) -> DownloadResult:
    """Copy the remote store at ``url`` (the chosen ``levels``, default all; level 0 always) to ``dest``.

    ``dest`` appears only when the copy is complete; until then the files
    collect in ``hidden_folder(dest)``, and calling this again with the
    same arguments continues from there.  ``progress`` is called after
    every file; ``say`` with notes for the user (a restart, say).

    Raises
    ------
    DownloadError, store.StoreError
        The request is refused (local path, ``dest`` not empty, unknown
        level) or a file cannot be fetched; the message names the URL and
        the file, and the files fetched so far stay for the next run.
    KeyboardInterrupt
        After Ctrl+C, once the files being written are whole.
    """
    say = say or (lambda _: None)
    url = _check_source(str(url))
    dest = Path(dest).absolute()
    _check_dest(dest)
    hidden = hidden_folder(dest)
    state = _interrupted(hidden, url)
    plan = store.copy_plan(url, levels)
    if state is not None:
        _restart_if_changed(hidden, state, plan, say)
    hidden.mkdir(exist_ok=True)
    _remove_parts(hidden)
    _write_state(hidden, url, plan)

    fetched_bytes = 0
    for key, raw in plan.metadata.items():  # small, and already fetched while planning
        path = hidden.joinpath(*key.split("/"))
        if not (path.is_file() and path.read_bytes() == raw):  # finish_copy may have edited it: start from the source
            _write_file(hidden, key, raw)
            fetched_bytes += len(raw)
    todo = [key for key in plan.files if not hidden.joinpath(*key.split("/")).is_file()]
    total = len(plan.metadata) + len(plan.files)
    resumed = len(plan.files) - len(todo)
    counts = {"done": len(plan.metadata) + resumed, "bytes": fetched_bytes}

    def on_file(nbytes: int) -> None:
        counts["done"] += 1
        counts["bytes"] += nbytes
        if progress is not None:
            progress(DownloadProgress(counts["done"], total, counts["bytes"], resumed))

    if progress is not None:
        progress(DownloadProgress(counts["done"], total, counts["bytes"], resumed))
    files = store.StoreFiles(url)
    settled = threading.Event()

    async def fetch() -> tuple[str, BaseException | None] | None:
        try:
            return await _fetch_all(files, hidden, todo, plan.optional, on_file, concurrency)
        finally:
            settled.set()

    failure = _run(files, fetch(), settled)
    if failure is not None:
        key, exc = failure
        kept = (
            f"The {counts['done']:,} files fetched so far are kept in '{hidden}': run the same command again "
            "to continue from there."
        )
        if exc is None:
            raise DownloadError(
                f"'{store.shown(url)}/{key}': the server has no such file (404 Not Found), though the store's "
                f"metadata lists it. The store on the server is incomplete; ask its owner to upload '{key}', or "
                f"copy other levels with --levels. {kept}"
            )
        raise DownloadError(f"{files.explain(exc, key)} {kept}")
    _prune(hidden, plan)
    with warnings.catch_warnings():
        # zarr names every file it meets while listing the copy; the resume record is ours, not a stray
        warnings.filterwarnings("ignore", message=f".*{re.escape(STATE)}.*")
        store.finish_copy(hidden, plan)
        try:
            store.open_info(hidden)  # never publish a copy that does not open
        except store.StoreError as exc:
            raise DownloadError(f"The copy in '{hidden}' does not open: {exc}") from None
    (hidden / STATE).unlink()
    if dest.is_dir():  # an empty folder: the copy takes its place
        dest.rmdir()
    os.replace(hidden, dest)
    _fsync_folder(dest.parent)
    return DownloadResult(
        path=dest,
        levels=plan.levels,
        files=total,
        fetched=len(todo),
        bytes=counts["bytes"],
        resumed=resumed,
    )


def _size(nbytes: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if nbytes < 1000 or unit == "GB":
            return f"{nbytes:,.0f} {unit}" if unit == "B" else f"{nbytes:,.1f} {unit}"
        nbytes /= 1000
    return f"{nbytes:,.1f} TB"  # pragma: no cover - the loop returns at GB


class TextProgress:
    """A download's progress on a text stream (stderr by default).

    On a terminal: one bar redrawn in place with ``\\r`` (at most ten times
    a second); otherwise (a log, a pipe) one line each time another tenth
    of the files is done, so a log stays short.
    """

    def __init__(self, stream: IO[str] | None = None, width: int = 30) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.width = width
        self._drawn = 0.0
        self._tenth = -1

    def text(self, p: DownloadProgress) -> str:
        done = int(round(self.width * p.fraction))
        resumed = f", {p.resumed:,} already here" if p.resumed else ""
        return (
            f"[{'#' * done}{'.' * (self.width - done)}] {p.files_done:,}/{p.files_total:,} files, "
            f"{_size(p.bytes_done)} fetched{resumed}"
        )

    def __call__(self, p: DownloadProgress) -> None:
        if self.tty:
            now = time.monotonic()
            if p.finished or now - self._drawn >= 0.1:
                self._drawn = now
                self.stream.write("\r" + self.text(p) + ("\n" if p.finished else ""))
                self.stream.flush()
            return
        tenth = int(p.fraction * 10)
        if tenth > self._tenth:
            self._tenth = tenth
            self.stream.write(self.text(p) + "\n")
            self.stream.flush()
