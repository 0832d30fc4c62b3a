"""Dock widget "Levels": per store layer, the level shown, vertices shown, the budget, auto or locked.

Thin: the choice itself is ``lod.LevelOfDetail``'s; this only shows a
follower's state and passes the user's lock and budget to it.

Each layer takes two table rows: its name across the table, then its
controls and state, so a long layer name never squeezes the numbers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from napari.utils.notifications import show_error
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGroupBox,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..layers import METADATA_KEY
from . import follow as _follow
from ._layout import FittedTable, WrappingLabel

if TYPE_CHECKING:
    import napari

AUTO = "auto"
#: The budget reason of a layer whose budget was typed into this widget.
SET_HERE = "set here"
COLUMNS = ["level", "shown", "vertices", "budget"]
LEVEL, SHOWN, VERTICES, BUDGET = range(len(COLUMNS))


class LevelsWidget(QWidget):
    """One row per layer that follows the camera; edits lock a level or change the budget."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        _follow.watch_viewer(napari_viewer)
        layout = QVBoxLayout(self)
        self.table = FittedTable(0, len(COLUMNS))  # 4 rows: two layers
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.setSelectionMode(QTableWidget.NoSelection)
        self.table.setToolTip(
            "level: 'auto' follows the camera (the finest level whose vertices in view fit the budget); "
            "a number locks that level. shown: the level drawn now ('0\u20132': each region of a point cloud at the "
            "finest level that leaves a few screen pixels per vertex). vertices: drawn now. "
            "budget: the most vertices drawn; type a number and press Enter."
        )
        layout.addWidget(self.table)
        self.budget_note = WrappingLabel("")
        self.budget_note.setToolTip(
            "Where each default budget comes from: a software OpenGL renderer (such as Mesa llvmpipe) "
            "gets a vertex per 20 canvas pixels (30,000 to 100,000), a GPU 250,000; "
            "$NAPARI_ZARR_VECTORS_VERTEX_BUDGET or a number typed here overrides it."
        )
        layout.addWidget(self.budget_note)
        self.hint = WrappingLabel("Open a Zarr Vectors point or polyline store to see its levels here.")
        layout.addWidget(self.hint)
        self.density_box = QGroupBox("Density images")
        self.density_box.setToolTip(
            "A point cloud's level-0 vertex density as a multiscale image under its points "
            "(log colour scale). Counted the first time it is shown."
        )
        self._density_layout = QVBoxLayout(self.density_box)
        self._density_boxes: dict[int, QCheckBox] = {}
        layout.addWidget(self.density_box)
        self._rows: list[_follow.LayerFollower] = []
        self._hooked: set[int] = set()
        napari_viewer.layers.events.inserted.connect(self._rebuild_soon)
        napari_viewer.layers.events.removed.connect(self._rebuild_soon)
        self.rebuild()

    def _rebuild_soon(self, event: Any = None) -> None:
        from qtpy.QtCore import QTimer

        QTimer.singleShot(0, self.rebuild)  # the follower attaches on the same insert event

    def rebuild(self) -> None:
        """Two rows per live follower of this viewer: the layer's name, then its level, state and budget."""
        self._rows = [f for f in _follow.followers(self.viewer) if f.layer is not None]
        self.table.clear_title_rows()
        self.table.setRowCount(2 * len(self._rows))
        for i, f in enumerate(self._rows):
            if id(f) not in self._hooked:
                self._hooked.add(id(f))
                f.on_change(self._on_follower_change)
            self.table.set_title_row(2 * i, f.layer.name)
            combo = QComboBox()
            combo.addItems([AUTO] + [str(g) for g in self._levels_of(f)])
            combo.setCurrentText(AUTO if f.locked is None else str(f.locked))
            combo.currentTextChanged.connect(lambda text, f=f: self._lock(f, text))
            self.table.setCellWidget(2 * i + 1, LEVEL, combo)
            budget = QSpinBox()
            budget.setRange(1_000, 50_000_000)
            budget.setSingleStep(50_000)
            budget.setGroupSeparatorShown(True)
            budget.setValue(int(f.budget))
            budget.setKeyboardTracking(False)  # apply on Enter or focus loss, not every keystroke
            budget.valueChanged.connect(lambda value, f=f: self._set_budget(f, value))
            self.table.setCellWidget(2 * i + 1, BUDGET, budget)
            self._show_state(i, f)
        self.hint.setVisible(not self._rows)
        self._show_budget_note()
        self._rebuild_density()

    def _set_budget(self, f: _follow.LayerFollower, value: int) -> None:
        """The user's budget for one layer: applied, and its reason becomes 'set here'."""
        f.set_budget(value)
        if f.layer is not None:
            f.layer.metadata.get(METADATA_KEY, {})["budget_reason"] = SET_HERE
        self._show_budget_note()

    def _show_budget_note(self) -> None:
        """Under the table, each budget and where it came from (one line when all layers share it)."""
        lines = []
        for f in self._rows:
            reason = f.layer.metadata.get(METADATA_KEY, {}).get("budget_reason") if f.layer is not None else None
            if reason == SET_HERE:
                lines.append((f, f"Budget {f.budget:,}: {SET_HERE}."))
            elif reason:
                lines.append((f, f"Budget {f.budget:,}: {reason}. Set a number to override."))
        if len({text for _, text in lines}) == 1 and len(lines) == len(self._rows):
            text = lines[0][1]
        else:
            text = "\n".join(f"{f.layer.name}: {line}" for f, line in lines)
        self.budget_note.setText(text)
        self.budget_note.setVisible(bool(text))

    def budget_reason_text(self) -> str:
        """What the note under the table says about the budgets."""
        return self.budget_note.text() if self.budget_note.isVisibleTo(self) else ""

    def level_box(self, i: int) -> QComboBox:
        """Layer ``i``'s level choice: 'auto' or a level to lock."""
        return self.table.cellWidget(2 * i + 1, LEVEL)

    def budget_box(self, i: int) -> QSpinBox:
        """Layer ``i``'s vertex budget."""
        return self.table.cellWidget(2 * i + 1, BUDGET)

    def layer_name(self, i: int) -> str:
        return self.table.item(2 * i, 0).text()

    def _rebuild_density(self) -> None:
        """One check box per density image layer: ticking it shows the layer (and counts it, once)."""
        live = {id(c): c for c in _follow.companions(self.viewer) if c.layer is not None}
        for key in [k for k in self._density_boxes if k not in live]:
            box = self._density_boxes.pop(key)
            self._density_layout.removeWidget(box)
            box.deleteLater()
        for key, c in live.items():
            if key in self._density_boxes:
                continue
            layer = c.layer
            box = QCheckBox(layer.name)
            box.setChecked(bool(layer.visible))
            box.toggled.connect(lambda on, layer=layer: setattr(layer, "visible", bool(on)))
            layer.events.visible.connect(lambda e, key=key, layer=layer: self._sync_check(key, layer))
            c.on_change(lambda c, key=key: self._density_state(key, c))
            self._density_layout.addWidget(box)
            self._density_boxes[key] = box
        self.density_box.setVisible(bool(self._density_boxes))

    @property
    def density_checks(self) -> list[QCheckBox]:
        """The density check boxes, in the order shown."""
        return list(self._density_boxes.values())

    def _sync_check(self, key: int, layer: Any) -> None:
        box = self._density_boxes.get(key)
        if box is not None and box.isChecked() != bool(layer.visible):
            box.setChecked(bool(layer.visible))

    def _density_state(self, key: int, c: _follow.DensityCompanion) -> None:
        box = self._density_boxes.get(key)
        if box is not None:
            box.setToolTip(c.last_error or ("counted" if c.ready else "not counted yet"))

    @staticmethod
    def _levels_of(f: _follow.LayerFollower) -> list[int]:
        if f.lod.levels:
            return [g.index for g in f.lod.levels]
        return list(f.layer.metadata.get("zarr_vectors", {}).get("levels", []))

    def _lock(self, f: _follow.LayerFollower, text: str) -> None:
        try:
            f.lock(None if text == AUTO else int(text))
        except ValueError as exc:
            show_error(f"Cannot lock that level: {exc}")

    def _on_follower_change(self, f: _follow.LayerFollower) -> None:
        if f not in self._rows:
            return
        i = self._rows.index(f)
        combo = self.level_box(i)
        if combo is not None and combo.count() - 1 != len(self._levels_of(f)):
            self.rebuild()  # a build added or removed levels
            return
        self._show_state(i, f)
        if f.last_error:
            show_error(f"{f.layer.name}: could not load the view: {f.last_error}")

    def _show_state(self, i: int, f: _follow.LayerFollower) -> None:
        shown = f.levels_shown
        level_text = str(f.level) if len(shown) == 1 else f"{shown[0]}\u2013{shown[-1]}"  # "0–2": per region
        for column, text in ((SHOWN, level_text), (VERTICES, f"{f.vertex_count:,}")):
            item = QTableWidgetItem(text)
            item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
            self.table.setItem(2 * i + 1, column, item)
        self.table.fit()

    def shown_text(self, i: int) -> tuple[str, str]:
        """(level shown, vertices shown) of layer ``i``, as the table displays them."""
        row = 2 * i + 1
        return self.table.item(row, SHOWN).text(), self.table.item(row, VERTICES).text()
