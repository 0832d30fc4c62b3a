"""A store opened with only level 0 and more points than the budget: say it is drawn as a subsample, offer a pyramid.

The notification carries a "Build pyramid…" button that opens the Build
pyramid dock on that store; its text also names the dock and the command
line, for a notification seen where buttons are not (the console, a log).
"""

from __future__ import annotations

import contextlib
import shlex
from typing import Any

from .. import store

PLUGIN = "napari-zarr-vectors"
BUILD_DOCK = "Build pyramid"
ACTION = "Build pyramid\u2026"


def pyramid_message(name: str, path: str, shown: int, total: int) -> str:
    """The notification's text: what is drawn, and the two ways to build a pyramid."""
    where = shlex.quote(store.shown(path))
    return (
        f"{name} has only level 0 (no pyramid): {shown:,} of its {total:,} points are drawn, spread evenly, and "
        "zooming in draws all the points of a small enough view. Build a pyramid for faster, finer views: "
        f"Plugins > Zarr Vectors > {BUILD_DOCK}, or `napari-zarr-vectors build {where}`."
    )


def offer_pyramid(viewer: Any, name: str, path: str, shown: int, total: int) -> None:
    """Show the notification (with its button when there is a viewer to open the dock in)."""
    from napari.utils.notifications import Notification, NotificationSeverity, notification_manager

    actions = [] if viewer is None else [(ACTION, lambda *_: open_build_dock(viewer, path))]
    notification_manager.dispatch(
        Notification(pyramid_message(name, path, shown, total), severity=NotificationSeverity.INFO, actions=actions)
    )


def open_build_dock(viewer: Any, path: str) -> Any:
    """The Build pyramid dock of ``viewer``, shown and set to the store at ``path``; returns its widget."""
    dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, BUILD_DOCK)
    with contextlib.suppress(AttributeError, RuntimeError):  # a dock closed by the user: shown again
        dock.setVisible(True)
        dock.raise_()
    widget.set_store(str(path))
    return widget
