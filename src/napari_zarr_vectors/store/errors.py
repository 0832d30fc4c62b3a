"""The store's errors: each a ``ValueError`` whose message says what is wrong and what to do."""

from __future__ import annotations

import contextlib
import errno
import functools
import inspect
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from .remote import redact

F = TypeVar("F", bound=Callable[..., Any])


class StoreError(ValueError):
    """A store cannot be opened, read or written; the message says why and what to do.

    A ``ValueError``: every bad argument of the public API (and every damaged
    store) raises one of its subclasses, so ``except ValueError`` catches them.
    Its message never carries a URL's user, password, query or signature
    (``remote.redact``), whichever text it quotes.
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*(redact(a) if isinstance(a, str) else a for a in args))


class RemoteStoreError(StoreError):
    """A remote store could not be reached or read (404, 403, timeout, offline); the message says what to check."""


class StoreBusy(StoreError):
    """Another process is writing to the store (its build journal's lock is held)."""


#: errno values that mean "no room left": a full file system, or the user's quota used up.
_FULL = (errno.ENOSPC, errno.EDQUOT)


def full_disk_cause(exc: BaseException | None) -> OSError | None:
    """The ``OSError`` of a full disk (ENOSPC, EDQUOT) that ``exc`` is or was raised from, else None.

    Libraries wrap it (zarr, zarr-vectors, this plugin's own write
    session), so the whole ``__cause__`` / ``__context__`` chain is looked at.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _FULL:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def size_text(nbytes: float) -> str:
    """``nbytes`` as people read it: ``512 bytes``, ``3.2 MB``, ``1.5 GB``."""
    if nbytes < 1000:
        return f"{int(nbytes):,} bytes"
    for unit in ("kB", "MB", "GB", "TB"):
        nbytes /= 1000
        if nbytes < 1000 or unit == "TB":
            return f"{nbytes:.1f} {unit}"
    raise AssertionError("unreachable")


def _free_space(path: str | os.PathLike[str]) -> tuple[str, int, int] | None:
    """``(folder, free, total)`` bytes of the file system holding ``path`` (its nearest existing folder)."""
    folder = Path(os.path.abspath(path))
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        usage = shutil.disk_usage(folder)
    except OSError:
        return None
    return str(folder), usage.free, usage.total


def disk_full(
    path: str | os.PathLike[str],
    exc: BaseException,
    *,
    needed: int | None = None,
    outcome: str = "The change was undone; the store is as it was.",
) -> StoreError | None:
    """A StoreError saying the disk is full, when ``exc`` comes from a full disk; else None.

    The one message for a full disk, wherever the plugin writes: which
    path was being written (``path``, and the file the system refused),
    how much space the file system has free now (``shutil.disk_usage``),
    how much the write needed when the caller knows (``needed``, bytes),
    what became of the write (``outcome``) and what to do.  No errno
    text, no traceback.
    """
    full = full_disk_cause(exc)
    if full is None:
        return None
    refused = f" (writing '{full.filename}')" if full.filename else ""
    space = _free_space(path)
    free = (
        f"{size_text(space[1])} of {size_text(space[2])} is free on the file system holding '{space[0]}' now"
        if space is not None
        else "the free space could not be measured"
    )
    quota = " (your disk quota is used up)" if full.errno == errno.EDQUOT else ""
    need = f"; the write needs about {size_text(needed)}" if needed else ""
    return StoreError(
        f"'{path}': the disk is full{quota}{refused}: {free}{need}. {outcome} "
        "Free some space, or write somewhere with more room, and try again."
    )


def reraise_disk_full(
    path: str | os.PathLike[str], exc: BaseException, *, needed: int | None = None, outcome: str | None = None
) -> None:
    """Raise ``disk_full``'s StoreError (of ``exc``'s own StoreError class when it is one) if ``exc`` is a full disk.

    Returns quietly otherwise, so the caller re-raises ``exc`` as it was.
    """
    kwargs = {} if outcome is None else {"outcome": outcome}
    error = disk_full(path, exc, needed=needed, **kwargs)
    if error is None:
        return
    if isinstance(exc, StoreError) and type(exc) is not StoreError:
        with contextlib.suppress(TypeError):
            error = type(exc)(str(error))  # PyramidError stays a PyramidError
    raise error from exc


def reports_full_disk(
    path_arg: str = "path", *, outcome: str | None = None, needed: Callable[..., int | None] | None = None
) -> Callable[[F], F]:
    """Decorate a function that writes at its argument ``path_arg``: a full disk becomes ``disk_full``'s StoreError.

    ``needed(*args, **kwargs)``, when given, estimates the bytes the write
    needs (for the message).  Any other error passes through unchanged.
    """

    def wrap(func: F) -> F:
        signature = inspect.signature(func)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except (OSError, StoreError) as exc:
                try:
                    path = signature.bind_partial(*args, **kwargs).arguments.get(path_arg, "")
                except TypeError:
                    path = ""
                nbytes = None
                if needed is not None and full_disk_cause(exc) is not None:
                    with contextlib.suppress(Exception):
                        nbytes = needed(*args, **kwargs)
                reraise_disk_full(os.fspath(path) if path else ".", exc, needed=nbytes, outcome=outcome)
                raise

        return wrapper  # type: ignore[return-value]

    return wrap


def reports_full_disk_session(
    session: Callable[..., contextlib.AbstractContextManager[Any]], *, outcome: str | None = None
) -> Callable[..., contextlib.AbstractContextManager[Any]]:
    """``session`` (a context manager taking the store's path first) with a full disk as ``disk_full``'s StoreError.

    Covers a failure of the body as well as of the session's own writes
    (its journal, its publishing).
    """

    @functools.wraps(session)
    @contextlib.contextmanager
    def wrapper(path: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        try:
            with session(path, *args, **kwargs) as value:
                yield value
        except (OSError, StoreError) as exc:
            reraise_disk_full(os.fspath(path), exc, outcome=outcome)
            raise

    return wrapper


def data_nbytes(*args: Any, **kwargs: Any) -> int:
    """Bytes of the arrays among a call's arguments (in lists and dicts too): what a new store will hold, about."""
    total = 0
    stack = [*args, *kwargs.values()]
    while stack:
        value = stack.pop()
        if hasattr(value, "nbytes") and hasattr(value, "dtype"):
            total += int(value.nbytes)
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list | tuple):
            stack.extend(value)
    return total
