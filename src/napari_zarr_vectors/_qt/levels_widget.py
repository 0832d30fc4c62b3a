"""Dock widget "Levels": per store layer, the level shown, vertices shown, the budget, auto or locked.

Thin: each layer's row is bound two-way to its ``lod.ViewState`` (the
follower's ``state``): choosing a level or typing a budget sets the
state, and any change of the state (the follower drew a view, a script
set a budget) shows in the row.  The level choice itself is
``lod.LevelOfDetail``'s.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import TYPE_CHECKING, Any

from magicgui.widgets import CheckBox, ComboBox, Container, Label, SpinBox
from napari.utils.notifications import show_error

from . import follow as _follow
from ._mg import bold, wrapping_label

if TYPE_CHECKING:
    import napari

    from .. import lod

AUTO = "auto"
#: The budget reason of a layer whose budget was typed into this widget.
SET_HERE = "set here"
LEVEL_TIP = (
    "'auto' follows the camera (the finest level whose vertices in view fit the budget); a number locks that level."
)
SHOWN_TIP = (
    "The level drawn now ('0\u20132': each region of a point cloud at the finest level that leaves "
    "a few screen pixels per vertex)."
)
BUDGET_TIP = "The most vertices drawn; type a number and press Enter."
BUDGET_NOTE_TIP = (
    "Where each default budget comes from: a software OpenGL renderer (such as Mesa llvmpipe) "
    "gets a vertex per 20 canvas pixels (30,000 to 100,000), a GPU 250,000; "
    "$NAPARI_ZARR_VECTORS_VERTEX_BUDGET or a number typed here overrides it."
)
SAMPLE_TIP = (
    "This store has only level 0: a view holding more points than the budget draws an even subsample of them "
    "(every point once the view holds few enough). Build a pyramid in the Build pyramid dock, or "
    "`napari-zarr-vectors build STORE`."
)
DENSITY_TIP = (
    "A point cloud's level-0 vertex density as a multiscale image under its points "
    "(log colour scale). Counted the first time it is shown."
)


class LayerRow(Container):
    """One follower's name, level choice, level and vertices shown, and budget, bound to its ``ViewState``."""

    def __init__(self, follower: _follow.LayerFollower) -> None:
        self.follower = follower
        self.state: lod.ViewState = follower.state
        self.title = bold(wrapping_label(follower.layer.name))
        self.level = ComboBox(label="level", choices=self._choices(), tooltip=LEVEL_TIP)
        self.shown = Label(label="shown", tooltip=SHOWN_TIP)
        self.vertices = Label(label="vertices", tooltip="Vertices drawn now.")
        self.budget = SpinBox(label="budget", min=1_000, max=50_000_000, step=50_000, tooltip=BUDGET_TIP)
        self.budget.native.setKeyboardTracking(False)  # Qt: apply on Enter or focus loss, not on every keystroke
        self.sample_note = wrapping_label("", tooltip=SAMPLE_TIP)
        super().__init__(widgets=[self.title, self.level, self.shown, self.vertices, self.sample_note, self.budget])
        self._show_lock()
        self._show_budget()
        self._show_drawn()
        self.level.changed.connect(self._lock)
        self.budget.changed.connect(self._set_budget)
        events = self.state.events
        self._subscriptions = [
            (events.locked, self._show_lock),
            (events.levels, self._show_levels),
            (events.budget, self._show_budget),
            (events.level, self._show_drawn),
            (events.levels_shown, self._show_drawn),
            (events.vertex_count, self._show_drawn),
            (events.sampled_from, self._show_drawn),
        ]
        for signal, slot in self._subscriptions:
            signal.connect(slot)

    def unbind(self) -> None:
        """Stop showing the state (the row is going away)."""
        for signal, slot in self._subscriptions:
            with contextlib.suppress(TypeError, ValueError):
                signal.disconnect(slot)

    # -- widget -> state
    def _lock(self, text: str) -> None:
        level = None if text == AUTO else int(text)
        if level == self.state.locked:
            return  # the state's own change, shown
        try:
            self.follower.lock(level)
        except ValueError as exc:
            show_error(f"Cannot lock that level: {exc}")
            self._show_lock()

    def _set_budget(self, value: int) -> None:
        if int(value) == self.state.budget:
            return  # the state's own change, shown
        self.follower.set_budget(int(value), SET_HERE)

    # -- state -> widget
    def _choices(self) -> list[str]:
        return [AUTO] + [str(v) for v in self.state.levels]

    def _show_levels(self, *_: Any) -> None:
        self.level.choices = self._choices()
        self._show_lock()

    def _show_lock(self, *_: Any) -> None:
        text = AUTO if self.state.locked is None else str(self.state.locked)
        if text not in self.level.choices:
            self.level.choices = [*self.level.choices, text]
        self.level.value = text

    def _show_budget(self, *_: Any) -> None:
        self.budget.value = min(max(int(self.state.budget), self.budget.min), self.budget.max)

    def _show_drawn(self, *_: Any) -> None:
        self.shown.value = self.state.shown_text
        self.vertices.value = f"{self.state.vertex_count:,}"
        self.sample_note.value = self.state.sample_text
        self.sample_note.visible = bool(self.sample_note.value)


class LevelsWidget(Container):
    """One row per layer that follows the camera; edits lock a level or change the budget."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        self.viewer = napari_viewer
        _follow.watch_viewer(napari_viewer)
        self.rows = Container(labels=False)
        self.budget_note = wrapping_label("", tooltip=BUDGET_NOTE_TIP)
        self.hint = wrapping_label("Open a Zarr Vectors point or polyline store to see its levels here.")
        self.density_box = Container(labels=False, tooltip=DENSITY_TIP)
        self._density_title = bold(Label(value="Density images", tooltip=DENSITY_TIP))
        self.density_box.append(self._density_title)
        super().__init__(widgets=[self.rows, self.budget_note, self.hint, self.density_box], labels=False)
        self._density_boxes: dict[int, CheckBox] = {}
        self._hooked: weakref.WeakSet[_follow.LayerFollower] = weakref.WeakSet()  # (ids may be reused)
        napari_viewer.layers.events.inserted.connect(self._rebuild_soon)
        napari_viewer.layers.events.removed.connect(self._rebuild_soon)
        self.rebuild()

    def _rebuild_soon(self, event: Any = None) -> None:
        from qtpy.QtCore import QTimer

        QTimer.singleShot(0, self.rebuild)  # Qt: the follower attaches on the same insert event, after us

    @property
    def layer_rows(self) -> list[LayerRow]:
        """The rows shown, one per live follower of this viewer."""
        return list(self.rows)

    def _alive(self) -> bool:
        """Whether the Qt widget still exists (napari deletes a closed dock's; layer events may still come)."""
        try:
            self.native.objectName()
        except RuntimeError:
            for emitter in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
                with contextlib.suppress(TypeError, ValueError):
                    emitter.disconnect(self._rebuild_soon)
            return False
        return True

    def rebuild(self) -> None:
        """One row per live follower of this viewer (rows of followers still live are kept)."""
        if not self._alive():
            return
        live = [f for f in _follow.followers(self.viewer) if f.layer is not None]
        kept = {id(row.follower): row for row in self.layer_rows}
        for row in self.layer_rows:
            if row.follower not in live:
                row.unbind()
        self.rows.clear()
        for f in live:
            row = kept.get(id(f))
            if row is None or row.follower is not f:
                row = LayerRow(f)
            if f not in self._hooked:
                self._hooked.add(f)
                f.on_change(self._on_follower_change)
                f.state.events.budget_reason.connect(self._show_budget_note)
                f.state.events.budget.connect(self._show_budget_note)
            self.rows.append(row)
        self.hint.visible = not live
        self._show_budget_note()
        self._rebuild_density()

    def _show_budget_note(self, *_: Any) -> None:
        """Under the rows, each budget and where it came from (one line when all layers share it)."""
        rows = self.layer_rows
        lines = []
        for row in rows:
            state = row.state
            if state.budget_reason == SET_HERE:
                lines.append((row, f"Budget {state.budget:,}: {SET_HERE}."))
            elif state.budget_reason:
                lines.append((row, f"Budget {state.budget:,}: {state.budget_reason}. Set a number to override."))
        if len({text for _, text in lines}) == 1 and len(lines) == len(rows):
            text = lines[0][1]
        else:
            text = "\n".join(f"{row.title.value}: {line}" for row, line in lines)
        self.budget_note.value = text
        self.budget_note.visible = bool(text)

    def budget_reason_text(self) -> str:
        """What the note under the rows says about the budgets."""
        return self.budget_note.value if self.budget_note.native.isVisibleTo(self.native) else ""

    def level_box(self, i: int) -> ComboBox:
        """Layer ``i``'s level choice: 'auto' or a level to lock."""
        return self.layer_rows[i].level

    def budget_box(self, i: int) -> SpinBox:
        """Layer ``i``'s vertex budget."""
        return self.layer_rows[i].budget

    def layer_name(self, i: int) -> str:
        return self.layer_rows[i].title.value

    def sample_text(self, i: int) -> str:
        """Layer ``i``'s level-0-only note ("" and hidden when every point in view is drawn)."""
        return self.layer_rows[i].sample_note.value

    def shown_text(self, i: int) -> tuple[str, str]:
        """(level shown, vertices shown) of layer ``i``, as the row displays them."""
        row = self.layer_rows[i]
        return row.shown.value, row.vertices.value

    def _on_follower_change(self, f: _follow.LayerFollower) -> None:
        if f.last_error and f in [row.follower for row in self.layer_rows]:
            show_error(f"{f.layer.name}: could not load the view: {f.last_error}")

    # -- density images
    def _rebuild_density(self) -> None:
        """One check box per density image layer: ticking it shows the layer (and counts it, once)."""
        live = {id(c): c for c in _follow.companions(self.viewer) if c.layer is not None}
        for key in [k for k in self._density_boxes if k not in live]:
            self.density_box.remove(self._density_boxes.pop(key))
        for key, c in live.items():
            if key in self._density_boxes:
                continue
            layer = c.layer
            box = CheckBox(value=bool(layer.visible))
            box.text = layer.name  # set after: the constructor turns underscores into spaces
            box.changed.connect(lambda on, layer=layer: setattr(layer, "visible", bool(on)))
            layer.events.visible.connect(lambda e, key=key, layer=layer: self._sync_check(key, layer))
            c.on_change(lambda c, key=key: self._density_state(key, c))
            self.density_box.append(box)
            self._density_boxes[key] = box
        self.density_box.visible = bool(self._density_boxes)

    @property
    def density_checks(self) -> list[CheckBox]:
        """The density check boxes, in the order shown."""
        return list(self._density_boxes.values())

    def _sync_check(self, key: int, layer: Any) -> None:
        box = self._density_boxes.get(key)
        if box is not None and box.value != bool(layer.visible):
            box.value = bool(layer.visible)

    def _density_state(self, key: int, c: _follow.DensityCompanion) -> None:
        box = self._density_boxes.get(key)
        if box is not None:
            box.tooltip = c.last_error or ("counted" if c.ready else "not counted yet")
