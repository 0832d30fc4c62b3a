"""``LayerBinding``: what ties a helper object to one napari layer, for the follower and the density companion.

It holds the layer weakly (a removed layer is freed, not kept alive by
its helper), remembers every event connection it makes so ``detach``
undoes them all, detaches itself when the layer leaves the viewer, and
tells subscribers of its changes through one psygnal signal.  One live
binding of each kind per layer (``binding_of``).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from psygnal import Signal

B = TypeVar("B", bound="LayerBinding")

#: Per binding class, the live binding of each layer.
_BINDINGS: dict[type, weakref.WeakKeyDictionary[Any, LayerBinding]] = {}


def real_viewer(viewer: Any) -> Any:
    """The viewer itself behind napari's ``PublicOnlyProxy`` (what dock widgets are handed).

    Everything that keys on a viewer (the watched set, ``followers(viewer)``,
    ``wait_settled``) keys on this, so a proxy and the viewer it wraps are one.
    """
    while viewer is not None and hasattr(type(viewer), "__wrapped__"):
        viewer = viewer.__wrapped__
    return viewer


class LayerBinding:
    """One layer, held weakly, with the event connections made for it; ``detach`` undoes them."""

    #: Emitted with the binding after each change subscribers should show (a swap, a failure, counts in).
    changed = Signal(object)

    def __init__(self, viewer: Any, layer: Any) -> None:
        self.viewer = real_viewer(viewer)
        self._layer = weakref.ref(layer)
        self.detached = False
        self.last_error: str | None = None
        self._connections: list[tuple[Any, Callable[..., Any]]] = []
        self.connect(self.viewer.layers.events.removed, self._on_removed)
        _BINDINGS.setdefault(type(self), weakref.WeakKeyDictionary())[layer] = self

    @property
    def layer(self) -> Any | None:
        """The layer, or None once napari has freed it."""
        return self._layer()

    def connect(self, emitter: Any, slot: Callable[..., Any]) -> None:
        """``emitter.connect(slot)``, undone by ``detach``."""
        emitter.connect(slot)
        self._connections.append((emitter, slot))

    def on_change(self, callback: Callable[[Any], None]) -> None:
        """Call ``callback(self)`` after each change (``changed``)."""
        self.changed.connect(callback)

    def detach(self) -> None:
        """Stop: every connection made through ``connect`` is undone (the layer was removed)."""
        if self.detached:
            return
        self.detached = True
        self._stopped()
        for emitter, slot in self._connections:
            with contextlib.suppress(TypeError, ValueError, RuntimeError):  # already gone with its object
                emitter.disconnect(slot)
        self._connections.clear()

    def _stopped(self) -> None:
        """What a subclass stops on detach, before its connections are undone (timers, workers)."""

    def _notify(self) -> None:
        self.changed.emit(self)

    def _on_removed(self, event: Any) -> None:
        if getattr(event, "value", None) is self.layer or self.layer is None:
            self.detach()


def binding_of(kind: type[B], layer: Any) -> B | None:
    """The binding of class ``kind`` attached to ``layer``, if any."""
    return _BINDINGS.get(kind, {}).get(layer)


def bindings(kind: type[B], viewer: Any | None = None) -> list[B]:
    """Every live binding of class ``kind`` (of one viewer's layers, when given)."""
    out = [b for b in _BINDINGS.get(kind, {}).values() if not b.detached]
    if viewer is not None:
        viewer = real_viewer(viewer)
        out = [b for b in out if b.viewer is viewer]
    return out
