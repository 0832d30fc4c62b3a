"""Dock widget "Drill": from selected metanodes down to their children, or up to their parents.

Thin: the link walking is ``drill.Drill``'s and the breadcrumb is
``drill.Breadcrumb``'s (no Qt).  This widget turns a selection in the
chosen layer (a store's Points layer, or its own highlight or metanodes
layer) into keys, runs the step on a napari worker, and shows the result
in a highlight Points layer (itself a valid source for the next step),
optional parent->child link vectors, and the breadcrumb of the levels visited.
"""

from __future__ import annotations

from typing import Any

import napari.layers
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, Label, PushButton
from napari.utils.notifications import show_error, show_info, show_warning

from .. import drill, store
from ..layers import METADATA_KEY, _bin_extent, _marker_size
from . import follow as _follow
from ._mg import follow_active, layer_choice, row, wrapping_label
from .workers import start_worker

DRILL_KEY = "zarr_vectors_drill"  # not METADATA_KEY: a highlight must not get a camera follower
NEXT, FINEST = "next finer level", "level 0"
DOWN_KEY, UP_KEY = "Control-Shift-Down", "Control-Shift-Up"
HIGHLIGHT = "magenta"
TO_SOURCE = "The layer whose selected points are drilled; it follows the active layer"
HINT = (
    "Select points (metanodes) in a store's Points layer with napari's selection tool, then "
    f"drill down ({DOWN_KEY}) or up ({UP_KEY}). For polylines, press 'Metanodes' first."
)


class DrillWidget(Container):
    """Drill down / up from the selected points of a store layer, with a breadcrumb."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__(labels=False)
        self.viewer = napari_viewer
        self.breadcrumb_model = drill.Breadcrumb()
        self.busy = False
        self.last_error: str | None = None
        self._worker: Any = None
        self._selected: list[int] = []

        self.hint = wrapping_label(HINT)
        self.source = layer_choice(napari_viewer, _drillable, name="source", tooltip=TO_SOURCE)
        self.down_button = PushButton(text="Drill down", tooltip=f"Children of the selected metanodes ({DOWN_KEY})")
        self.up_button = PushButton(text="Drill up", tooltip=f"Parents of the selected vertices ({UP_KEY})")
        self.target = ComboBox(choices=[NEXT, FINEST], value=NEXT, name="target")
        self.show_links = CheckBox(
            text="Show links", tooltip="Draw parent -> child edges of the last step as a Vectors layer"
        )
        self.metanodes_button = PushButton(
            text="Metanodes", tooltip="A selectable Points layer of the vertices a polyline layer shows now"
        )
        self.object_button = PushButton(
            text="Same object at all levels",
            tooltip="The object of the selected vertex, drawn at every level that keeps it",
        )
        self.breadcrumb = wrapping_label("")
        self.extend(
            [
                self.hint,
                row(Label(value="from"), self.source),
                row(self.down_button, self.up_button),
                row(Label(value="down to"), self.target, self.show_links),
                row(self.metanodes_button, self.object_button),
                self.breadcrumb,
            ]
        )
        self.native.layout().addStretch(1)  # magicgui has no stretch: keep the controls at the top of a tall dock

        self.breadcrumb_model.events.steps.connect(self._show_breadcrumb)
        self.down_button.changed.connect(self.drill_down)
        self.up_button.changed.connect(self.drill_up)
        self.metanodes_button.changed.connect(self.add_metanodes)
        self.object_button.changed.connect(self.same_object)
        follow_active(self.source, napari_viewer.layers.selection.active)
        for key, fn in ((DOWN_KEY, self.drill_down), (UP_KEY, self.drill_up)):
            napari_viewer.bind_key(key, lambda viewer, fn=fn: fn(), overwrite=True)

    @property
    def store_path(self) -> str | None:
        """The store the breadcrumb is in (None before the first step)."""
        return self.breadcrumb_model.store_path

    def _show_breadcrumb(self) -> None:
        """The breadcrumb label to what the model holds (on every change of its steps)."""
        self.breadcrumb.value = self.breadcrumb_model.text()

    # -- what the user points at
    def _source(self) -> tuple[Any, dict, np.ndarray] | None:
        """The chosen layer, its store metadata and selected positions (store order); None with a message."""
        layer = self.source.value
        meta = None if layer is None else _meta_of(layer)
        if meta is None:
            self._fail(
                "Select a Zarr Vectors Points layer (or this widget's highlight or metanodes layer) "
                "and select points in it with the selection tool."
            )
            return None
        if layer.__class__.__name__ != "Points":
            self._fail(f"'{layer.name}' is not a Points layer: press 'Metanodes' to pick its vertices.")
            return None
        selected = sorted(layer.selected_data)
        if not selected and meta.get("highlight"):
            selected = list(range(len(layer.data)))  # continue from everything highlighted
        if not selected:
            self._fail(f"No points are selected in '{layer.name}': select metanodes with the selection tool.")
            return None
        data = np.asarray(layer.data)[selected][:, -meta["ndim"] :]
        self._selected = selected
        return layer, meta, np.ascontiguousarray(data[:, ::-1])

    def _level_of(self, layer: Any, meta: dict, selected: list[int] | None = None) -> int | None:
        """The level of the selected vertices; None (with a message) when they come from several levels."""
        f = _follow.follower_of(layer)
        if f is None:  # not followed: the level it was opened or drawn at
            return int(meta["level"])
        levels = f.point_levels
        if selected is None or levels is None or len(levels) != len(layer.data):
            return int(f.level)
        found = sorted({int(v) for v in np.asarray(levels)[selected]})
        if len(found) > 1:
            self._fail(
                f"The selection holds vertices of levels {', '.join(map(str, found))}: this view shows each region "
                "at its own level. Select vertices of one level (their size tells them apart), or lock a level "
                "in the Levels dock."
            )
            return None
        return found[0]

    # -- actions
    def drill_down(self) -> None:
        """Children of the selection at the next finer level (or level 0)."""
        self._drill(down=True)

    def drill_up(self) -> None:
        """Parents of the selection at the next coarser level."""
        self._drill(down=False)

    def _selection(self) -> tuple[str, int, np.ndarray, bool] | None:
        """(store path, level, selected positions, from a highlight) when idle and something is selected."""
        if self.busy:
            return None
        src = self._source()
        if src is None:
            return None
        layer, meta, positions = src
        level = self._level_of(layer, meta, self._selected)
        if level is None:
            return None
        return meta["path"], level, positions, bool(meta.get("highlight"))

    def _drill(self, *, down: bool) -> None:
        picked = self._selection()
        if picked is None:
            return
        path, level, positions, highlight = picked
        try:
            d = drill.drill_for(path)
        except store.StoreError as exc:
            self._fail(str(exc))
            return
        if down:
            if level == 0:
                self._fail("These are level-0 vertices: there is nothing finer to drill down to.")
                return
            delta = level if self.target.value == FINEST else 1
        else:
            if level + 1 not in d.levels():
                self._fail(f"Level {level} is the coarsest level of '{path}': there is nothing to drill up to.")
                return
            delta = 1
        if not d.has_links(level, -delta if down else delta):
            self._fail(drill.no_links_message(path, level - delta if down else level, delta))
            return
        from_highlight = highlight and self.store_path == path

        def work() -> tuple[np.ndarray, drill.Vertices]:
            keys = d.locate(level, positions)
            step = d.children if down else d.parents
            return keys, step(level, keys, delta, objects=d.has_objects)

        self._run(work, lambda result: self._show(d.info, level, positions, result, from_highlight, down))

    def _run(self, work: Any, done: Any) -> None:
        self.busy = True
        self.last_error = None
        self._set_enabled(False)
        self._worker = start_worker(work, returned=done, errored=self._errored, finished=self._finished)

    def _errored(self, exc: Exception) -> None:
        if isinstance(exc, drill.DrillError | store.StoreError):
            self._fail(str(exc))
        else:
            self._fail(f"Drilling failed: {type(exc).__name__}: {exc}")

    def _finished(self) -> None:
        self.busy = False
        self._worker = None
        self._set_enabled(True)

    def _set_enabled(self, on: bool) -> None:
        for b in (self.down_button, self.up_button, self.object_button, self.metanodes_button):
            b.enabled = on

    def _fail(self, message: str) -> None:
        self.last_error = message
        show_error(message)

    # -- showing results
    def _show(
        self,
        info: store.StoreInfo,
        level: int,
        query_pos: np.ndarray,
        result: tuple[np.ndarray, drill.Vertices],
        chained: bool,
        down: bool,
    ) -> None:
        """Highlight what a step found; ``query_pos`` are the positions its query keys were located at."""
        path = info.path
        query, found = result
        if not len(found):
            show_warning(
                f"No {'children' if down else 'parents'} at level {found.level}: "
                + ("" if down else "these vertices' objects were thinned out of the coarser level.")
            )
            return
        self.breadcrumb_model.record(
            path, drill.Step(level, query), drill.Step(found.level, found.keys), chained=chained
        )
        layer = self._highlight(info, found)
        self._links(info, query_pos, found, down)
        self.viewer.layers.selection.active = layer
        _frame(self.viewer, layer)
        show_info(f"{len(found):,} {'children' if down else 'parents'} at level {found.level}")

    def _highlight(self, info: store.StoreInfo, found: drill.Vertices) -> Any:
        name = f"drill: {info.name}"
        features = {"level": np.full(len(found), found.level)}
        if found.objects is not None:
            features["object"] = found.objects
        kwargs = dict(
            scale=tuple(reversed(info.scale)),
            translate=tuple(reversed(info.translate)),
            size=_marker_size(info, found.level),
            face_color="transparent",
            border_color=HIGHLIGHT,
            border_width=0.2,
            projection_mode="all",  # in a 2D view of a 3D store, children sit on many slices
            features=features,
            metadata={DRILL_KEY: _drill_meta(info, found.level, highlight=True)},
        )
        data = np.ascontiguousarray(found.positions[:, ::-1])
        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
            layer.data = data
            layer.features = features
            layer.size = kwargs["size"]
            layer.current_size = kwargs["size"]  # what the layer controls' point size shows
            layer.metadata = kwargs["metadata"]
            layer.selected_data = set()
            return layer
        return self.viewer.add_points(data, name=name, **kwargs)

    def _links(self, info: store.StoreInfo, query_pos: np.ndarray, found: drill.Vertices, down: bool) -> None:
        name = f"drill links: {info.name}"
        if not self.show_links.value:
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
            return
        q, j = found.pairs[:, 0], found.pairs[:, 1]
        parent, child = (query_pos[q], found.positions[j]) if down else (found.positions[j], query_pos[q])
        vectors = np.stack([parent[:, ::-1], (child - parent)[:, ::-1]], axis=1)
        if name in self.viewer.layers:
            self.viewer.layers[name].data = vectors
            return
        self.viewer.add_vectors(
            vectors,
            name=name,
            edge_color=HIGHLIGHT,
            edge_width=0.1 * _bin_extent(info.level(found.level).bin_shape, info.scale),
            scale=tuple(reversed(info.scale)),
            translate=tuple(reversed(info.translate)),
        )

    def add_metanodes(self) -> None:
        """A selectable Points layer of the vertices the chosen polyline layer shows now."""
        layer = self.source.value
        meta = (getattr(layer, "metadata", None) or {}).get(METADATA_KEY)
        if meta is None or meta.get("kind") not in store.POLYLINE_KINDS:
            self._fail("Select a Zarr Vectors polyline or streamline layer first.")
            return
        info = store.open_info(meta["path"])
        level = self._level_of(layer, meta)
        vertices = _layer_vertices(layer)
        vertices = np.unique(vertices.round(6), axis=0) if len(vertices) else vertices
        name = f"metanodes: {info.name} (level {level})"
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        new = self.viewer.add_points(
            vertices,
            name=name,
            size=_marker_size(info, level),
            face_color="white",
            scale=layer.scale,
            translate=layer.translate,
            metadata={DRILL_KEY: _drill_meta(info, level, highlight=False)},
        )
        new.mode = "select"
        self.viewer.layers.selection.active = new
        show_info(f"{len(vertices):,} vertices of level {level}: select some, then drill.")

    def same_object(self) -> None:
        """The object of the first selected vertex, at every level that keeps it, as one Shapes layer."""
        picked = self._selection()
        if picked is None:
            return
        path, level, positions, _ = picked
        d = drill.drill_for(path)
        if not d.has_objects:
            self._fail("A point cloud has no objects to follow across levels.")
            return

        def work() -> tuple[int, dict[int, store.LevelData]]:
            keys = d.locate(level, positions[:1])
            oid = int(d._objects_of(level, keys)[0])
            if oid < 0:
                raise drill.DrillError(f"The selected vertex belongs to no object at level {level}.")
            return oid, {lv: store.read_level(path, lv, object_ids=[oid], object_attributes=()) for lv in d.levels()}

        self._run(work, lambda result: self._show_object(d.info, *result))

    def _show_object(self, info: store.StoreInfo, oid: int, per_level: dict[int, store.LevelData]) -> None:
        paths, levels = [], []
        for lv, data in per_level.items():
            for part in data.parts():
                if len(part) >= 2:
                    paths.append(np.ascontiguousarray(part[:, ::-1]))
                    levels.append(lv)
        kept = sorted(set(levels))
        name = f"object {oid}: {info.name}"
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        self.viewer.add_shapes(
            paths,
            shape_type="path",
            name=name,
            features={"level": np.asarray(levels)},
            edge_color="level",
            edge_colormap="plasma",
            edge_width=EDGE_WIDTH_FRACTION * _bin_extent(info.level(0).bin_shape, info.scale),
            scale=tuple(reversed(info.scale)),
            translate=tuple(reversed(info.translate)),
        )
        gone = [lv for lv in per_level if lv not in kept]
        show_info(
            f"Object {oid} at levels {', '.join(map(str, kept))}"
            + (f"; thinned out of level(s) {', '.join(map(str, gone))}" if gone else "")
        )


EDGE_WIDTH_FRACTION = 0.3


def _meta_of(layer: Any) -> dict | None:
    """Store metadata of a layer this widget can drill from (store layers, highlights, metanodes)."""
    metadata = getattr(layer, "metadata", None) or {}
    meta = metadata.get(DRILL_KEY) or metadata.get(METADATA_KEY)
    if not meta or "path" not in meta:
        return None
    if "ndim" not in meta:
        meta = {**meta, "ndim": store.open_info(meta["path"]).ndim}
    return meta


def _drill_meta(info: store.StoreInfo, level: int, *, highlight: bool) -> dict:
    return {"path": info.path, "level": int(level), "kind": info.kind, "ndim": info.ndim, "highlight": highlight}


def _drillable(layer: Any) -> bool:
    """A layer to drill from: a store's Points or polyline layer (for 'Metanodes'), a highlight or metanodes layer."""
    metadata = getattr(layer, "metadata", None) or {}
    meta = metadata.get(DRILL_KEY) or metadata.get(METADATA_KEY)
    if not meta or "path" not in meta:
        return False
    return layer.__class__.__name__ == "Points" or meta.get("kind") in store.POLYLINE_KINDS


def _layer_vertices(layer: Any) -> np.ndarray:
    """Every vertex a Vectors or Shapes layer draws (napari order)."""
    if layer.__class__.__name__ == "Vectors":
        v = np.asarray(layer.data)
        return np.concatenate([v[:, 0], v[:, 0] + v[:, 1]]) if len(v) else np.zeros((0, v.shape[-1]))
    parts = [np.asarray(p) for p in layer.data]
    return np.concatenate(parts) if parts else np.zeros((0, layer.ndim))


def _frame(viewer: Any, layer: Any) -> None:
    """Centre the camera on a layer's points and zoom so they fill most of the canvas."""
    data = np.asarray(layer.data)
    if not len(data):
        return
    world = data * np.asarray(layer.scale) + np.asarray(layer.translate)
    lo, hi = world.min(0), world.max(0)
    shown = list(viewer.dims.displayed)
    centre = (lo + hi) / 2
    span = float(np.max(hi[shown] - lo[shown]))
    span = max(span, float(np.mean(layer.size)) * 4)
    for axis in viewer.dims.not_displayed:  # a 2D view of a 3D store: go to the highlight's middle slice
        if axis < len(centre):
            viewer.dims.set_point(axis, float(centre[axis]))
    viewer.scene.camera.center = tuple(centre[shown])
    viewer.scene.camera.zoom = 0.8 * min(int(s) for s in viewer.canvas.size) / span
