"""The one way this plugin runs work off the GUI thread: ``start_worker``.

Every worker (a follower's read, a density count, a build, a drill step)
is a napari thread worker (``napari.qt.threading.create_worker``, what
``@thread_worker`` makes) started here, so that

- the interpreter's exit cancels and waits for it (``wait_for_workers``);
- its result, error and end reach the GUI thread as callbacks;
- a long job can report progress: napari's activity dock shows a progress
  bar, and a callback on the GUI thread gets each report.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QObject, Signal

#: Longest the interpreter's exit waits for work in flight (then it exits anyway; a read is ~0.1-1 s).
SHUTDOWN_WAIT_S = 20.0
#: Workers started by this plugin that may still run, each with what cancels it.
_LIVE_WORKERS: dict[Any, Callable[[], None] | None] = {}
#: Called first when the interpreter exits (followers stop planning).
_CLOSING_HOOKS: list[Callable[[], None]] = []
_closing = False
_hook_registered = False


class _Relay(QObject):
    """Carries a worker thread's progress reports to the GUI thread.

    A queued Qt signal, because a napari FunctionWorker has no signal of
    its own for progress (only a generator's ``yielded``), and magicgui has
    no cross-thread signal at all.
    """

    reported = Signal(object)


def start_worker(
    fn: Callable[..., Any],
    *args: Any,
    returned: Callable[[Any], None] | None = None,
    errored: Callable[[Exception], None] | None = None,
    finished: Callable[[], None] | None = None,
    cancel: Callable[[], None] | None = None,
    progressed: Callable[[Any], None] | None = None,
    progress_desc: str | None = None,
) -> Any:
    """Start ``fn(*args)`` on a napari thread worker that the interpreter's exit waits for.

    A worker still reading when a script ends would otherwise run while
    Python shuts down its executors (zarr's reads then fail with "cannot
    schedule new futures" or wait forever) and emit to Qt objects already
    deleted (abort, exit code 134).  ``cancel`` asks the work to stop early
    at exit.  Errors go to ``errored`` only (not re-raised in the event loop).

    With ``progressed``, ``fn`` is called with one more keyword,
    ``report``: a callable the worker thread may call with any value,
    delivered to ``progressed`` on the GUI thread.  With ``progress_desc``
    napari's activity dock shows a progress bar named so while ``fn`` runs;
    a report with a ``fraction`` (0-1) and a ``message`` moves it.

    Returns the worker, or None (starting nothing) once the interpreter is exiting.
    """
    from napari.qt.threading import create_worker

    if _closing:
        return None
    _register_exit_hook()
    kwargs: dict[str, Any] = {}
    relay = None
    if progressed is not None:
        relay = _Relay()
        kwargs["report"] = relay.reported.emit
    options: dict[str, Any] = {"_start_thread": False, "_ignore_errors": True}
    if progress_desc is not None:
        options["_progress"] = {"desc": progress_desc}
    worker = create_worker(fn, *args, **kwargs, **options)
    if relay is not None:
        worker._nzv_relay = relay  # kept alive with the worker
        relay.reported.connect(progressed)
        pbar = getattr(worker, "pbar", None)
        if pbar is not None:
            relay.reported.connect(lambda report, pbar=pbar: _move_bar(pbar, report))
    for signal, slot in ((worker.returned, returned), (worker.errored, errored), (worker.finished, finished)):
        if slot is not None:
            signal.connect(slot)
    worker.finished.connect(lambda w=worker: _LIVE_WORKERS.pop(w, None))
    _LIVE_WORKERS[worker] = cancel
    worker.start()
    return worker


def _move_bar(pbar: Any, report: Any) -> None:
    """napari's activity-dock bar to a report's fraction (in percent) and message."""
    fraction = getattr(report, "fraction", None)
    if fraction is None:
        return
    if not pbar.total:
        pbar.total = 100
    pbar.update(int(round(100 * fraction)) - pbar.n)
    message = getattr(report, "message", None)
    if message:
        pbar.set_description(message)


def on_closing(hook: Callable[[], None]) -> None:
    """Call ``hook()`` when the interpreter exits, before workers are cancelled."""
    _CLOSING_HOOKS.append(hook)


def wait_for_workers(timeout: float = SHUTDOWN_WAIT_S) -> bool:
    """Cancel and wait for every worker this plugin started; no new ones start afterwards.

    Runs when the interpreter exits, before Python stops its thread-pool
    executors.  Waits on Qt's thread pool itself, since the ``finished``
    signals are delivered only by an event loop that no longer runs.
    Returns False if some worker was still running at ``timeout``.
    """
    global _closing
    _closing = True
    from .. import store

    store.remote.CLOSING.set()  # a read still waiting on the network ends now instead of holding the exit
    for hook in list(_CLOSING_HOOKS):
        with contextlib.suppress(Exception):
            hook()
    for cancel in list(_LIVE_WORKERS.values()):
        if cancel is not None:
            with contextlib.suppress(Exception):
                cancel()
    if not _LIVE_WORKERS:
        return True
    from qtpy.QtCore import QThreadPool

    return bool(QThreadPool.globalInstance().waitForDone(int(timeout * 1000)))


def _register_exit_hook() -> None:
    """Wait for our workers when the interpreter exits, before its executors shut down.

    ``atexit`` runs too late: ``concurrent.futures`` refuses new work from
    a hook in ``threading``'s own exit list, which runs first.  Hooks there
    run newest first, so ours, registered after ``concurrent.futures`` is
    imported, runs before that refusal.
    """
    global _hook_registered
    if _hook_registered:
        return
    import concurrent.futures.thread  # noqa: F401  registers its hook first, so ours runs before it

    register = getattr(threading, "_register_atexit", None)
    try:
        if register is not None:
            register(wait_for_workers)
        else:  # pragma: no cover - CPython has had it since 3.9
            import atexit

            atexit.register(wait_for_workers)
    except RuntimeError:  # the interpreter is already exiting
        return
    _hook_registered = True
