"""Dock widget "Levels": per store layer, the level shown, vertices shown, the budget, auto or locked.

Thin: the choice itself is ``lod.LevelOfDetail``'s; this only shows a
follower's state and passes the user's lock and budget to it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from napari.utils.notifications import show_error
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGroupBox,
    QHeaderView,
    QLabel,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .. import _follow

if TYPE_CHECKING:
    import napari

AUTO = "auto"
COLUMNS = ["layer", "level", "shown", "vertices", "budget"]


class LevelsWidget(QWidget):
    """One row per layer that follows the camera; edits lock a level or change the budget."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        _follow.watch_viewer(napari_viewer)
        layout = QVBoxLayout(self)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setToolTip(
            "level: 'auto' follows the camera (the finest level whose vertices in view fit the budget); "
            "a number locks that level. shown: the level drawn now."
        )
        layout.addWidget(self.table)
        self.hint = QLabel("Open a Zarr Vectors point or polyline store to see its levels here.")
        self.hint.setWordWrap(True)
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
        """One row per live follower of this viewer."""
        self._rows = [f for f in _follow.followers(self.viewer) if f.layer is not None]
        self.table.setRowCount(len(self._rows))
        for r, f in enumerate(self._rows):
            if id(f) not in self._hooked:
                self._hooked.add(id(f))
                f.on_change(self._on_follower_change)
            self.table.setItem(r, 0, QTableWidgetItem(f.layer.name))
            combo = QComboBox()
            combo.addItems([AUTO] + [str(g) for g in self._levels_of(f)])
            combo.setCurrentText(AUTO if f.locked is None else str(f.locked))
            combo.currentTextChanged.connect(lambda text, f=f: self._lock(f, text))
            self.table.setCellWidget(r, 1, combo)
            budget = QSpinBox()
            budget.setRange(1_000, 50_000_000)
            budget.setSingleStep(50_000)
            budget.setGroupSeparatorShown(True)
            budget.setValue(int(f.budget))
            budget.setKeyboardTracking(False)  # apply on Enter or focus loss, not every keystroke
            budget.valueChanged.connect(lambda value, f=f: f.set_budget(value))
            self.table.setCellWidget(r, 4, budget)
            self._show_state(r, f)
        self.hint.setVisible(not self._rows)
        self._rebuild_density()

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
        r = self._rows.index(f)
        combo = self.table.cellWidget(r, 1)
        if combo is not None and combo.count() - 1 != len(self._levels_of(f)):
            self.rebuild()  # a build added or removed levels
            return
        self._show_state(r, f)
        if f.last_error:
            show_error(f"{f.layer.name}: could not load the view: {f.last_error}")

    def _show_state(self, r: int, f: _follow.LayerFollower) -> None:
        self.table.setItem(r, 2, QTableWidgetItem(str(f.level)))
        self.table.setItem(r, 3, QTableWidgetItem(f"{f.vertex_count:,}"))

    def shown_text(self, row: int) -> tuple[str, str]:
        """(level shown, vertices shown) as the table displays them."""
        return self.table.item(row, 2).text(), self.table.item(row, 3).text()
