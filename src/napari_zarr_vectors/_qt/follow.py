"""Binds the Qt-free level-of-detail controller (``lod.LevelOfDetail``) to napari layers.

Every Points / Vectors / Shapes layer the reader makes for a point cloud
or polyline store gets a ``LayerFollower``: camera, dims and canvas
events restart a ~100 ms timer; when it fires, a worker thread chooses
the level and reads the chunks in view; the GUI thread swaps the result
into the layer only if no newer request was made meanwhile.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from .. import _napari_private, _renderer, colouring, lod, store
from ..layers import DENSITY_KEY, METADATA_KEY, Payload, region_payload
from .binding import LayerBinding, binding_of, bindings, real_viewer
from .workers import on_closing, start_worker

log = store.remote.guarded_logger(__name__)  # its records are redacted: a failure's text may quote a URL

DEBOUNCE_MS = 100
#: A swap's layer-list thumbnail is redrawn once no swap came for this long.
THUMBNAIL_DELAY_MS = 300
#: A view of several levels draws no marker smaller than this many screen pixels (when it was swapped in).
MIN_MARKER_PIXELS = 2.0
#: Vectors layers draw tens of thousands of polylines quickly; Shapes layers ~14 ms per path.
VECTORS_PATH_BUDGET = 20_000

_WATCHED_VIEWERS: weakref.WeakSet[Any] = weakref.WeakSet()
#: In 3D napari draws a multiscale image's coarsest level; the density is locked to the finest level this small.
DENSITY_3D_VOXELS = 256**3


def _stop_following() -> None:
    """At interpreter exit: no further plans (a follower's timer never fires again without an event loop)."""
    for f in bindings(LayerFollower):
        f.detached = True


on_closing(_stop_following)


def follower_of(layer: Any) -> LayerFollower | None:
    """The follower attached to ``layer``, if any."""
    return binding_of(LayerFollower, layer)


def followers(viewer: Any | None = None) -> list[LayerFollower]:
    """Every live follower (of one viewer's layers, when given)."""
    return bindings(LayerFollower, viewer)


def levels_changed(path: str, levels: list[int] | None = None) -> None:
    """Tell the followers of store ``path`` its ``levels`` now (read when not given), so they re-plan now."""
    target = store.address(path)
    mine = [f for f in followers() if f.path == target]
    if mine and levels is None:
        levels = store.list_levels(target)
    for f in mine:
        f.state.set_levels(levels)  # a lock on a removed level is released (and re-plans)
        f.lod.forget_shown()
        f.schedule(immediately=True)


def wait_settled(viewer: Any, timeout: float = 30.0) -> bool:
    """Process Qt events until every follower of ``viewer`` has drawn its current view (for scripts).

    Returns False if ``timeout`` seconds passed first.
    """
    from qtpy.QtWidgets import QApplication

    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        QApplication.processEvents()
        if all(f.idle for f in followers(viewer)) and all(c.idle for c in companions(viewer)):
            return True
        time.sleep(0.005)
    return False


def _followable(layer: Any) -> bool:
    meta = getattr(layer, "metadata", {}).get(METADATA_KEY)
    if not isinstance(meta, dict) or "path" not in meta:
        return False
    kind = meta.get("kind")
    ltype = type(layer).__name__.lower()
    if kind in store.POINT_KINDS:
        return ltype == "points"
    return kind in store.POLYLINE_KINDS and ltype in ("vectors", "shapes")


def watch_viewer(viewer: Any) -> None:
    """Attach a follower to each of our layers added to ``viewer`` from now on (once per viewer)."""
    viewer = real_viewer(viewer)
    if viewer is None or viewer in _WATCHED_VIEWERS:
        return
    _WATCHED_VIEWERS.add(viewer)

    def _attach(layer: Any) -> None:
        _hide_source_secrets(layer)
        if _followable(layer) and follower_of(layer) is None:
            LayerFollower(viewer, layer)
        elif _density_meta(layer) is not None and companion_of(layer) is None:
            DensityCompanion(viewer, layer)

    def _on_inserted(event: Any) -> None:
        layer = getattr(event, "value", None)
        if layer is not None:
            _attach(layer)

    viewer.layers.events.inserted.connect(_on_inserted)
    for layer in list(viewer.layers):
        _attach(layer)


def _hide_source_secrets(layer: Any) -> None:
    """Our layer's ``source.path`` without the user, password or signed query of the URL it was opened from.

    Napari sets it to the address given to ``viewer.open`` whatever the
    reader returns; the layer's metadata already carries the address shown.
    """
    metadata = getattr(layer, "metadata", None) or {}
    if METADATA_KEY not in metadata and DENSITY_KEY not in metadata:
        return  # another reader's layer: its source is not ours to change
    path = getattr(getattr(layer, "source", None), "path", None)
    if isinstance(path, str) and store.redact(path) != path:
        _napari_private.set_source_path(layer, store.redact(path))


class LayerFollower(LayerBinding):
    """Keeps one layer showing the pyramid level and region that fit the current view.

    Its level, lock and budget live in ``state`` (``lod.ViewState``): the
    follower writes what it drew there, re-plans when the lock or the
    budget changes there, and ``layer.metadata`` mirrors it.
    """

    #: The last swapped payload's worker seconds ("read", "payload"); ``last_swap_seconds`` is the GUI part.
    last_work_seconds: Mapping[str, float] = MappingProxyType({})

    def __init__(self, viewer: Any, layer: Any, *, debounce_ms: int = DEBOUNCE_MS) -> None:
        from qtpy.QtCore import QTimer

        meta = layer.metadata[METADATA_KEY]
        super().__init__(viewer, layer)
        viewer = self.viewer
        self.layer_type = type(layer).__name__.lower()
        self.path = store.address(meta["path"])
        self.kind = meta["kind"]
        self.shape_type = "line" if self.kind in store.LINE_KINDS else "path"
        path_budget = None
        if self.kind in store.POLYLINE_KINDS:
            path_budget = lod.DEFAULT_SHAPES_PATH_LIMIT if self.layer_type == "shapes" else VECTORS_PATH_BUDGET
        #: The layer's level, lock and budget: one home each (``layer.metadata`` mirrors it).
        self.state = lod.ViewState.from_metadata(meta, budget=lod.default_vertex_budget(), vertex_count=len(layer.data))
        self.lod = lod.LevelOfDetail(self.path, self.kind, path_budget=path_budget, state=self.state)
        #: Each point's level when the view shows several (None: one level).
        self.point_levels: np.ndarray | None = None
        if not self.state.sampled_from:
            # the reader loaded this whole level: any view at this level is covered until the level changes
            everywhere = np.full(len(layer.scale), np.inf)
            self.lod.shown = (self.state.level, lod.Box(-everywhere, everywhere))
        # else a level-0-only store opened as an even subsample: the first plan refines it (from the shared cache)
        self.swaps = 0
        self.last_swap_seconds = 0.0
        self.stale = 0
        self.failures = 0
        self._failure_shown = False
        self._unmirror = self.state.mirror(meta)
        self.state.events.locked.connect(self._replan)
        self.state.events.budget.connect(self._replan)
        self._our_size: float | None = float(layer.current_size) if self.layer_type == "points" else None
        self._workers: set[Any] = set()
        self._last_event = 0.0  # perf_counter of the last schedule (a quiet spell plans at once)
        self._debounce_ms = int(debounce_ms) or DEBOUNCE_MS
        self._leading = False  # the timer is set for the next event-loop turn
        #: Seconds from the last view change to the plan starting (the debounce, or one event-loop turn).
        self.last_wait_seconds = 0.0
        self._thumb_timer = QTimer()
        self._thumb_timer.setSingleShot(True)
        self._thumb_timer.timeout.connect(self._thumbnail_now)
        self._timer = QTimer()
        self._timer.setSingleShot(True)
        self._timer.setInterval(int(debounce_ms))
        self._timer.timeout.connect(self._start)
        for emitter in (
            viewer.scene.camera.events.center,
            viewer.scene.camera.events.zoom,
            viewer.scene.camera.events.angles,
            viewer.dims.events.current_step,
            viewer.dims.events.ndisplay,
            viewer.dims.events.order,
            viewer.canvas.events.size,
        ):
            self.connect(emitter, self._on_view_event)
        self.connect(viewer.canvas.events.size, self._on_canvas_size)
        self._on_canvas_size()  # the canvas may have been laid out again since the reader sized the budget
        self.schedule(immediately=True)

    # ---------------------------------------------------------------- public
    @property
    def level(self) -> int:
        """The (finest) level drawn (``state.level``)."""
        return self.state.level

    @property
    def levels_shown(self) -> tuple[int, ...]:
        """The levels drawn, finest first: several when each region shows its own (``state.levels_shown``)."""
        return self.state.levels_shown

    @property
    def vertex_count(self) -> int:
        """Vertices drawn (``state.vertex_count``)."""
        return self.state.vertex_count

    @property
    def busy(self) -> int:
        """Reads in flight."""
        return len(self._workers)

    @property
    def idle(self) -> bool:
        """No update pending and no read in flight: what is drawn is the current view's."""
        return not self._timer.isActive() and not self._workers

    @property
    def locked(self) -> int | None:
        return self.lod.locked

    @property
    def budget(self) -> int:
        return self.state.budget

    def lock(self, level: int | None) -> None:
        """Keep ``level`` shown whatever the zoom (None: automatic again); the view is planned again."""
        self.lod.lock(level)

    def set_budget(self, budget: int, reason: str | None = None) -> None:
        """A new vertex budget (and where it came from); the view is planned again."""
        self.state.set_budget(budget, reason)

    def _replan(self, *_: Any) -> None:
        """The lock or the budget changed in the state: read the view again, now."""
        self.lod.forget_shown()
        self.schedule(immediately=True)

    def _thumbnail_later(self) -> None:
        """Redraw the layer-list thumbnail after the swaps pause (each would cost ~15 ms at 150,000 points)."""
        self._thumb_timer.start(THUMBNAIL_DELAY_MS)

    def _thumbnail_now(self) -> None:
        layer = self.layer
        if layer is not None and not self.detached:
            _napari_private.thumbnail(layer)

    def schedule(self, immediately: bool = False) -> None:
        """Plan again after the debounce interval (or on the next event-loop turn).

        A view change after a quiet spell (one scroll-wheel step, a click on
        a button, the first event of a drag) is planned on the next
        event-loop turn, so the events of one step still coalesce; events
        following within the interval (the rest of a drag) wait for it.
        """
        if self.detached:
            return
        now = time.perf_counter()
        quiet = now - self._last_event >= self._debounce_ms / 1000 and not self._workers
        self._last_event = now
        if self._leading and self._timer.isActive():
            return  # planned for the next turn already: this event of the same step joins it
        if immediately or (quiet and not self._timer.isActive()):
            self._leading = True
            self._timer.start(0)
        else:
            self._timer.start(self._debounce_ms)

    def view(self) -> lod.View:
        """The current camera, canvas and dims, in the layer's terms."""
        layer = self.layer
        v = self.viewer
        ndim = layer.ndim
        displayed = tuple(int(d) - (v.dims.ndim - ndim) for d in v.dims.displayed if int(d) >= v.dims.ndim - ndim)
        point = tuple(float(x) for x in v.dims.point[-ndim:])
        return lod.View(
            center=tuple(float(c) for c in v.scene.camera.center),
            zoom=float(v.scene.camera.zoom),
            canvas_size=tuple(int(s) for s in v.canvas.size),
            ndisplay=int(v.dims.ndisplay),
            displayed=displayed,
            point=point,
            scale=tuple(float(s) for s in layer.scale),
            translate=tuple(float(t) for t in layer.translate),
        )

    def _stopped(self) -> None:
        """Stop following (the layer was removed): timers, reads in flight, the state's hold on the layer."""
        self._timer.stop()
        self._thumb_timer.stop()
        for worker in list(self._workers):
            worker.quit()
        self._unmirror()
        with contextlib.suppress(TypeError, ValueError):
            self.state.events.locked.disconnect(self._replan)
            self.state.events.budget.disconnect(self._replan)

    # ---------------------------------------------------------------- internals
    def _on_view_event(self, event: Any = None) -> None:
        self.schedule()

    def _on_canvas_size(self, event: Any = None) -> None:
        """A software renderer's budget scales with the canvas (``lod.budget_for``): follow a resize.

        Only while the state holds such a budget (``lod.budget_follows_canvas``):
        one set by hand, by a script or when opened is kept whatever the canvas.
        """
        if not lod.budget_follows_canvas(self.state.budget_reason):
            return
        budget, reason = _renderer.machine_budget(self.viewer)
        if lod.budget_follows_canvas(reason) and (budget, reason) != (self.state.budget, self.state.budget_reason):
            self.state.set_budget(budget, reason)

    def _start(self) -> None:
        self._leading = False
        self.last_wait_seconds = time.perf_counter() - self._last_event
        layer = self.layer
        if layer is None or self.detached:
            self.detach()
            return
        generation = self.lod.request()
        view = self.view()
        colouring = _napari_private.face_colouring(layer) if self.layer_type == "points" else None
        worker: Any = None

        def finished() -> None:  # delivered on the GUI thread, after `worker` below is bound
            self._finished(worker)

        worker = start_worker(
            self._work, view, generation, colouring, returned=self._apply, errored=self._failed, finished=finished
        )
        if worker is not None:
            self._workers.add(worker)

    def _work(
        self, view: lod.View, generation: int, colouring: dict[str, Any] | None = None
    ) -> tuple[lod.Region, Payload] | None:
        t = time.perf_counter()
        region = self.lod.update(view, generation, colouring=colouring)
        if region is None:
            return None
        read = time.perf_counter()
        grid = next(g for g in self.lod.levels if g.index == region.level)
        store_scale = view.scale[::-1]  # napari order -> store order, like bin_shape
        payload = region_payload(
            self.layer_type,
            region,
            bin_shape=grid.bin_shape,
            scale=store_scale,
            shape_type=self.shape_type,
            colouring=colouring,
            level_bins={g.index: g.bin_shape for g in self.lod.levels},
            min_size=MIN_MARKER_PIXELS / max(view.zoom, 1e-30),
        )
        payload.seconds = {"read": read - t, "payload": time.perf_counter() - read}
        return region, payload

    def _finished(self, worker: Any) -> None:
        self._workers.discard(worker)

    def _failed(self, exc: Exception) -> None:
        # a failed read leaves what is shown in place; the next move tries again
        message = store.redact(str(exc))  # whatever failed, its text may quote a URL
        self.last_error = message
        self.failures += 1
        log.warning("napari-zarr-vectors: level-of-detail update failed: %s", message)
        if not self._failure_shown:  # one notification per outage, not one per move or chunk
            self._failure_shown = True
            from napari.utils.notifications import show_warning

            layer = self.layer
            name = getattr(layer, "name", "layer")
            show_warning(f"{name}: could not load the view; the last view stays on screen. {message}")
        self._notify()

    def _apply(self, result: tuple[lod.Region, Payload] | None) -> None:
        if result is None or self.detached:
            return
        region, payload = result
        if not self.lod.accept(region):
            self.stale += 1
            return
        layer = self.layer
        if layer is None:
            return
        t = time.perf_counter()
        swap(layer, payload, self)
        self.last_swap_seconds = time.perf_counter() - t
        self.last_work_seconds = dict(payload.seconds)
        self.point_levels = region.point_levels if len(region.levels_shown) > 1 else None
        self.last_error = None
        self._failure_shown = False
        self.swaps += 1
        self.state.set_levels([g.index for g in self.lod.levels])
        self.state.show(region.level, region.levels_shown, payload.vertex_count, region.sampled_from)
        self._notify()


def _blocked(layer: Any) -> list[Any]:
    """Event groups to silence during a swap: the layer's, and its colour managers' (each would redraw)."""
    groups = [layer.events]
    for name in ("_face", "_border", "_edge"):
        manager = getattr(layer, name, None)
        if manager is not None and hasattr(manager, "events"):
            groups.append(manager.events)
    return groups


def _face_colors(layer: Any, payload: Payload) -> tuple[bool, np.ndarray | None]:
    """(usable, colours): the payload's face colours if mapped with the layer's colouring now, else mapped here.

    Colours None: direct colours (every new point gets the layer's current
    colour).  Not usable: a colormap whose limits napari has not fixed yet
    (napari's setters fix them from the new values).
    """
    now = _napari_private.face_colouring(layer)
    mapped = payload.colouring
    if payload.face_colors is not None and mapped is not None and _same_colouring(mapped, now):
        return True, payload.face_colors
    name = now["name"]
    if now["mode"] == "direct" or name is None:
        return True, None
    if name not in payload.features:
        return False, None
    values = payload.features[name].to_numpy()
    if now["mode"] == "cycle":
        return True, _napari_private.cycle_colours(layer, values)  # may add values to the cycle, as napari would
    colours = colouring.point_colours({name: values}, now)
    return colours is not None, colours


def _same_colouring(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two ``face_colouring`` snapshots map alike (the cycle may have grown: the old entries must hold)."""
    if (a["mode"], a["name"], a["contrast_limits"]) != (b["mode"], b["name"], b["contrast_limits"]):
        return False
    if a["mode"] == "colormap" and a["colormap"] is not b["colormap"]:
        return bool(a["colormap"].same_colors(b["colormap"]))
    if a["mode"] == "cycle":
        return all(k in b["mapping"] and np.array_equal(v, b["mapping"][k]) for k, v in a["mapping"].items())
    return True


def _swap_points(layer: Any, payload: Payload, follower: LayerFollower | None) -> None:
    """New points into a Points layer: state written directly (``_napari_private.replace_points``) when it can.

    The fast path keeps what a fresh layer would show; a layer whose
    points carry different symbols, border widths or border colours (the
    user edited some) goes through napari's setters, which keep them.
    """
    ours = follower._our_size if follower is not None else None
    follow_size = ours is None or np.allclose(layer.current_size, ours)
    size = payload.style["size"] if follow_size else layer.current_size
    sizes = payload.style.get("sizes") if follow_size else None  # per point: a region of several levels
    usable, colours = _face_colors(layer, payload) if _napari_private.uniform(layer) else (False, None)
    if usable:
        _napari_private.replace_points(
            layer, payload.data, payload.features, colours, size=size if sizes is None else sizes
        )
        if follower is not None:
            _napari_private.use_scalar_symbol(follower.viewer, layer)
    else:
        layer.data = payload.data
        layer.features = payload.features
        if follow_size:
            layer.size = size if sizes is None else sizes
    if follow_size:
        layer.current_size = size
        if follower is not None:
            follower._our_size = size


def swap(layer: Any, payload: Payload, follower: LayerFollower | None = None) -> None:
    """Replace a layer's data in place, keeping its colouring and the user's style settings.

    Every property is set with the layer's events blocked and the layer
    refreshed once at the end: one property at a time would redraw after
    each (measured ~0.6 s against ~0.25 s for 250,000 points).  Sizes and
    widths follow the level only while the user has not changed them.
    Points take the colours mapped on the worker and skip napari's
    per-point work (see ``_swap_points``).
    """
    from contextlib import ExitStack

    if hasattr(layer, "selected_data"):
        layer.selected_data = set()
    deferred = follower is not None and payload.layer_type == "points"
    with ExitStack() as stack:
        for group in _blocked(layer):
            stack.enter_context(group.blocker_all())
        if payload.layer_type == "points":
            _swap_points(layer, payload, follower)
        elif payload.layer_type == "vectors":
            layer.data = payload.data
            layer.features = payload.features
            layer.edge_width = payload.style["edge_width"]
            if str(layer.edge_color_mode) == "direct" and "direction_colors" in payload.style:
                layer.edge_color = payload.style["direction_colors"]
        else:  # shapes: few paths by construction (the path budget)
            width = payload.style["edge_width"]
            layer.data = [(p, payload.style["shape_type"]) for p in payload.data]
            layer.edge_width = [width] * len(payload.data)
            layer.features = payload.features
    layer.refresh(thumbnail=not deferred)  # a follower redraws the thumbnail once the camera rests
    if deferred:
        follower._thumbnail_later()
    if payload.layer_type == "points":
        layer.events.current_size()  # blocked above with the rest: the size slider shows the size in effect


# ---------------------------------------------------------------- density images


def _density_meta(layer: Any) -> dict | None:
    meta = (getattr(layer, "metadata", None) or {}).get(DENSITY_KEY)
    return meta if isinstance(meta, dict) and "lazy" in meta else None


def companions(viewer: Any | None = None) -> list[DensityCompanion]:
    """Every live density companion (of one viewer's layers, when given)."""
    return bindings(DensityCompanion, viewer)


def companion_of(layer: Any) -> DensityCompanion | None:
    """The density companion attached to ``layer``, if any."""
    return binding_of(DensityCompanion, layer)


class DensityCompanion(LayerBinding):
    """Computes a density image's counts on a worker the first time it is shown; keeps 3D views detailed.

    Until the counts are in, the layer shows zeros; then its contrast is
    set from the data and it redraws.  In 3D, where napari would draw the
    coarsest level (a few voxels), the finest level within
    ``DENSITY_3D_VOXELS`` is locked; in 2D napari picks levels itself.
    """

    def __init__(self, viewer: Any, layer: Any) -> None:
        super().__init__(viewer, layer)
        self.lazy = _density_meta(layer)["lazy"]
        self._worker: Any = None
        self.connect(layer.events.visible, self._on_visible)
        self.connect(self.viewer.dims.events.ndisplay, self._on_ndisplay)
        self._on_ndisplay()
        self._on_visible()

    @property
    def idle(self) -> bool:
        """Nothing being computed."""
        return self._worker is None

    @property
    def ready(self) -> bool:
        return self.lazy.ready

    def _on_ndisplay(self, event: Any = None) -> None:
        layer = self.layer
        if layer is None or self.detached:
            return
        if self.viewer.dims.ndisplay == 3 and layer.ndim == 3:
            fits = [k for k, sh in enumerate(layer.level_shapes) if int(np.prod(sh)) <= DENSITY_3D_VOXELS]
            layer.locked_data_level = fits[0] if fits else len(layer.level_shapes) - 1
        elif layer.locked_data_level is not None:
            layer.locked_data_level = None

    def _on_visible(self, event: Any = None) -> None:
        layer = self.layer
        if layer is None or self.detached or not layer.visible or self.lazy.ready or self._worker is not None:
            return
        self._worker = start_worker(
            self.lazy.compute, returned=self._apply, errored=self._failed, finished=self._finished
        )

    def _finished(self) -> None:
        self._worker = None
        self._notify()  # the counts arrived or failed

    def _apply(self, result: Any) -> None:
        layer = self.layer
        if layer is None:
            return
        self.last_error = None
        layer.contrast_limits_range = self.lazy.value_range()
        layer.contrast_limits = self.lazy.contrast_limits()
        layer.refresh()

    def _failed(self, exc: Exception) -> None:
        from napari.utils.notifications import show_error

        self.last_error = store.redact(str(exc))
        layer = self.layer
        show_error(f"{getattr(layer, 'name', 'density')}: could not count the density: {self.last_error}")
