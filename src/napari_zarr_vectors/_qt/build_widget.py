"""Dock widget "Build pyramid": collects the parameters, runs pyramid.build_pyramid on a worker.

Thin by design: every decision (validation, estimates, the build itself)
is in ``pyramid``; this file only binds it to Qt and napari.
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Qt, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .. import pyramid, store
from ..layers import METADATA_KEY
from . import follow as _follow
from ._layout import FittedTable, WrappingLabel, in_scroll_area
from .workers import start_worker

if TYPE_CHECKING:
    import napari

DEFAULT_ROW = (2.0, 1.0)
NO_SEED = "random each time"
# "coarse chunks" choices -> build_pyramid's chunk_scale (None: the engine's default, "auto" for
# point clouds and lines; upstream's builder, used for graphs and meshes, keeps level 0's grid)
CHUNK_CHOICES = {"grow with coarsen": None, "keep level 0's grid": 1}


class _ProgressRelay(QObject):
    """Carries progress from the worker thread to the GUI thread (queued signal)."""

    progressed = Signal(object)


class BuildPyramidWidget(QWidget):
    """Build, extend or trim a store's pyramid, with progress and Cancel."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self._worker: Any = None
        self._cancel = threading.Event()
        self._relay = _ProgressRelay()
        self._relay.progressed.connect(self._on_progress)
        self._modes_for: dict[str, QComboBox] = {}
        self._levels: list[int] | None = None  # the chosen store's levels, None until one is read
        self._writable = False
        self._running = False

        layout = QVBoxLayout()
        self.scroll_area = in_scroll_area(self, layout)  # a short dock scrolls instead of squeezing the tables
        # --- store
        row = QHBoxLayout()
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("store path (.zv), or select a store layer")
        self.path_edit.editingFinished.connect(self.refresh)
        browse = QPushButton("…")
        browse.setToolTip("Choose a store folder")
        browse.clicked.connect(self._browse)
        row.addWidget(self.path_edit)
        row.addWidget(browse)
        layout.addLayout(row)

        # --- levels table
        levels_box = QGroupBox("New levels")
        lv = QVBoxLayout(levels_box)
        lv.addWidget(WrappingLabel("One row per level; each factor is a ratio to the level below."))
        self.levels_table = FittedTable(0, 3, row_numbers=True)  # each row labelled with the level it adds
        self.levels_table.setHorizontalHeaderLabels(["coarsen", "sparsity", "≈ vertices"])
        self.levels_table.itemChanged.connect(self._on_factors_edited)
        lv.addWidget(self.levels_table)
        buttons = QHBoxLayout()
        self.add_button = QPushButton("Add level")
        self.remove_row_button = QPushButton("Remove row")
        self.suggest_button = QPushButton("Suggest")
        self.suggest_button.setToolTip("Levels of x2 until the coarsest fits one chunk or ~500 vertices")
        self.add_button.clicked.connect(lambda: self._add_row(*DEFAULT_ROW))
        self.remove_row_button.clicked.connect(self._remove_row)
        self.suggest_button.clicked.connect(self._suggest)
        for b in (self.add_button, self.remove_row_button, self.suggest_button):
            buttons.addWidget(b)
        lv.addLayout(buttons)
        layout.addWidget(levels_box)

        # --- options
        form = QFormLayout()
        self.agg_mode = QComboBox()
        self.agg_mode.addItems(list(pyramid.AGG_MODES))
        form.addRow("aggregation", self.agg_mode)
        self.overrides_box = QGroupBox("per-attribute aggregation")
        self.overrides_form = QFormLayout(self.overrides_box)
        form.addRow(self.overrides_box)
        self.method = QComboBox()
        self.method.addItems(pyramid.available_methods())
        form.addRow("method", self.method)
        self.strategy = QComboBox()
        self.strategy.addItems(pyramid.available_strategies())
        form.addRow("sparsity strategy", self.strategy)
        self.seed = QSpinBox()
        self.seed.setRange(-1, 2**31 - 1)
        self.seed.setValue(42)
        self.seed.setSpecialValueText(NO_SEED)
        form.addRow("seed", self.seed)
        self.depth = QSpinBox()
        self.depth.setRange(-1, 16)
        self.depth.setValue(1)
        self.depth.setSpecialValueText("all levels (-1)")
        form.addRow("cross-level depth", self.depth)
        self.storage = QComboBox()
        self.storage.addItems(list(pyramid.LINK_STORAGES))
        self.storage.setCurrentText("explicit")
        form.addRow("link storage", self.storage)
        self.chunks = QComboBox()
        self.chunks.addItems(list(CHUNK_CHOICES))
        self.chunks.setToolTip(
            "Coarse levels' chunk grid: grown with the coarsen factor (the default: fewer, fuller chunks; "
            "faster to build and to view) or level 0's grid on every level, as zarr-vectors' own builder makes it."
        )
        form.addRow("coarse chunks", self.chunks)
        layout.addLayout(form)

        # --- run
        run = QHBoxLayout()
        self.build_button = QPushButton("Build")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.build_button.clicked.connect(self.build)
        self.cancel_button.clicked.connect(self.cancel)
        run.addWidget(self.build_button)
        run.addWidget(self.cancel_button)
        layout.addLayout(run)
        self.build_reason = WrappingLabel("")  # why Build is disabled, when it is
        layout.addWidget(self.build_reason)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.status = WrappingLabel("")
        layout.addWidget(self.progress)
        layout.addWidget(self.status)

        # --- existing levels
        summary_box = QGroupBox("Levels in the store")
        sv = QVBoxLayout(summary_box)
        self.summary_table = FittedTable(0, 5)
        self.summary_table.setHorizontalHeaderLabels(["level", "vertices", "objects", "bin", "MB"])
        self.summary_table.setEditTriggers(QTableWidget.NoEditTriggers)
        sv.addWidget(self.summary_table)
        self.overhead_label = WrappingLabel("")
        sv.addWidget(self.overhead_label)
        more = QHBoxLayout()
        self.coarsen_one_button = QPushButton("Coarsen one more level")
        self.remove_level_button = QPushButton("Remove coarsest level")
        self.coarsen_one_button.clicked.connect(self.coarsen_one)
        self.remove_level_button.clicked.connect(self.remove_coarsest)
        more.addWidget(self.coarsen_one_button)
        more.addWidget(self.remove_level_button)
        sv.addLayout(more)
        layout.addWidget(summary_box)
        layout.addStretch(1)

        self.viewer.layers.selection.events.active.connect(self._on_active_layer)
        self._on_active_layer()
        if self.levels_table.rowCount() == 0:
            for _ in range(3):
                self._add_row(*DEFAULT_ROW)
        self._update_buttons()

    # ------------------------------------------------------------ store

    @property
    def store_path(self) -> str:
        return self.path_edit.text().strip()

    def set_store(self, path: str) -> None:
        self.path_edit.setText(str(path))
        self.refresh()

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a Zarr Vectors store")
        if folder:
            self.set_store(folder)

    def _on_active_layer(self, event: Any = None) -> None:
        layer = self.viewer.layers.selection.active
        path = pyramid.store_path_of(getattr(layer, "metadata", None) or {})
        if path and path != self.store_path:
            self.set_store(path)

    def refresh(self) -> None:
        """Reload the level summary, attribute list and estimates for the current store."""
        if not self.store_path:
            self._levels = None
            self._update_buttons()
            return
        try:
            summary = pyramid.pyramid_summary(self.store_path)
        except store.StoreError as exc:
            self._levels = None
            self.summary_table.setRowCount(0)
            self._update_buttons(str(exc))
            self._fail(str(exc))
            return
        self._show_summary(summary)
        self._show_overrides(summary["levels"][0]["attributes"])
        self._update_estimates()

    def _show_estimates(self, estimates: list) -> None:
        self.levels_table.blockSignals(True)
        for r, value in enumerate(estimates[: self.levels_table.rowCount()]):
            text = f"≈ {value:,}" if isinstance(value, int) else str(value)
            self.levels_table.item(r, 2).setText(text)
        self.levels_table.blockSignals(False)
        self._number_rows()

    def _number_rows(self) -> None:
        """Each row is labelled with the level it adds: after the store's coarsest, as the estimates are."""
        first = self._levels[-1] + 1 if self._levels else 1
        self.levels_table.setVerticalHeaderLabels([str(first + r) for r in range(self.levels_table.rowCount())])
        self.levels_table.fit()

    def _show_summary(self, summary: dict) -> None:
        rows = summary["levels"]
        self.summary_table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            bins = _bin_text(row["bin_shape"])
            cells = [row["level"], f"{row['vertices']:,}", f"{row['objects']:,}", bins, f"{row['bytes'] / 1e6:.1f}"]
            for c, value in enumerate(cells):
                item = QTableWidgetItem(str(value))
                if c != 3:
                    item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                self.summary_table.setItem(r, c, item)
        self.summary_table.fit()
        self.overhead_label.setText(f"pyramid storage overhead over level 0: {summary['storage_overhead']:.0%}")
        self._levels = [int(row["level"]) for row in rows]
        self._writable = not store.is_remote(self.store_path) and os.access(self.store_path, os.W_OK)
        self._update_buttons()

    def build_blocker(self) -> str | None:
        """Why Build cannot run on the chosen store, as ``pyramid.plan_build`` would refuse it; None if it can.

        Only the store's state is checked here; the factors and options are
        checked when Build is pressed, and a mistake there is reported then.
        """
        if not self.store_path:
            return "Choose a store first: select a store layer, or type or browse to its path."
        try:
            store.refuse_remote(self.store_path, "build a pyramid")
        except store.StoreError as exc:
            return str(exc)
        if self._levels is None:
            return f"'{self.store_path}' could not be read as a Zarr Vectors store."
        if self._levels != [0]:
            return (
                f"This store already has levels {self._levels[0]}–{self._levels[-1]}; Build makes a pyramid "
                "from level 0 only. Add a level with 'Coarsen one more level', or remove coarse levels first."
            )
        if not self._writable:
            return "This store is not writable: copy it somewhere you can write, then build."
        return None

    def _update_buttons(self, reason: str | None = None) -> None:
        """Enable what can run on the chosen store now; say why Build cannot."""
        running = self._running
        blocker = reason or self.build_blocker()
        readable = self._levels is not None
        self.build_button.setEnabled(not running and blocker is None)
        self.build_button.setToolTip(blocker or "Build the levels in the table, after level 0")
        self.build_reason.setText(blocker or "")
        self.build_reason.setVisible(blocker is not None and not running)
        self.coarsen_one_button.setEnabled(not running and readable and self._writable)
        self.remove_level_button.setEnabled(not running and readable and self._writable and len(self._levels or []) > 1)
        self.suggest_button.setEnabled(not running and readable)
        self.cancel_button.setEnabled(running)

    def _show_overrides(self, names: tuple[str, ...]) -> None:
        while self.overrides_form.rowCount():
            self.overrides_form.removeRow(0)
        self._modes_for = {}
        for name in names:
            if name == pyramid.COUNT_ATTRIBUTE:
                continue
            box = QComboBox()
            box.addItems(["(default)", *pyramid.AGG_MODES])
            self.overrides_form.addRow(name, box)
            self._modes_for[name] = box
        self.overrides_box.setVisible(bool(self._modes_for))

    # ------------------------------------------------------------ factors table

    def _add_row(self, coarsen: float, sparsity: float) -> None:
        self.levels_table.blockSignals(True)
        r = self.levels_table.rowCount()
        self.levels_table.insertRow(r)
        self.levels_table.setItem(r, 0, QTableWidgetItem(f"{coarsen:g}"))
        self.levels_table.setItem(r, 1, QTableWidgetItem(f"{sparsity:g}"))
        estimate = QTableWidgetItem("")
        estimate.setFlags(estimate.flags() & ~Qt.ItemIsEditable)
        self.levels_table.setItem(r, 2, estimate)
        self.levels_table.blockSignals(False)
        self._update_estimates()

    def _remove_row(self) -> None:
        rows = sorted({i.row() for i in self.levels_table.selectedIndexes()}) or [self.levels_table.rowCount() - 1]
        for r in reversed(rows):
            if r >= 0:
                self.levels_table.removeRow(r)
        self._update_estimates()

    def _require_store(self) -> bool:
        if not self.store_path:
            self._fail("Choose a store first: select a store layer or type its path.")
        return bool(self.store_path)

    def _suggest(self) -> None:
        if not self._require_store():
            return
        try:
            factors = pyramid.suggest_factors(self.store_path)
        except store.StoreError as exc:
            self._fail(str(exc))
            return
        self.levels_table.setRowCount(0)
        for coarsen, sparsity in factors:
            self._add_row(coarsen, sparsity)

    def factors(self) -> list[tuple[str, str]]:
        """The table as entered (validated by pyramid.normalize_factors)."""
        out = []
        for r in range(self.levels_table.rowCount()):
            cells = [self.levels_table.item(r, c) for c in (0, 1)]
            out.append(tuple(c.text() if c is not None else "" for c in cells))
        return out

    def _on_factors_edited(self, item: QTableWidgetItem) -> None:
        if item.column() < 2:
            self._update_estimates()

    def _update_estimates(self) -> None:
        self._number_rows()
        if not self.store_path or not self.levels_table.rowCount():
            return
        self._show_estimates(_estimates(self.store_path, self.factors()))

    # ------------------------------------------------------------ building

    def build_kwargs(self) -> dict[str, Any]:
        overrides = {n: b.currentText() for n, b in self._modes_for.items() if b.currentText() != "(default)"}
        return {
            "agg_mode": self.agg_mode.currentText(),
            "agg_overrides": overrides,
            "method": self.method.currentText(),
            "sparsity_strategy": self.strategy.currentText(),
            "sparsity_seed": None if self.seed.value() < 0 else int(self.seed.value()),
            "cross_level_depth": int(self.depth.value()),
            "cross_level_storage": self.storage.currentText(),
            "chunk_scale": CHUNK_CHOICES[self.chunks.currentText()],
        }

    def build(self) -> None:
        """Validate, then build on a worker thread."""
        self._start(self.factors(), extend=False)

    def coarsen_one(self) -> None:
        """Add one level after the coarsest, with the first row's factors."""
        rows = self.factors() or [tuple(map(str, DEFAULT_ROW))]
        self._start(rows[:1], extend=True)

    @staticmethod
    def _plan_and_run(path: str, factors: list, kwargs: dict, extend: bool, progress: Any, cancel: Any) -> tuple:
        """Runs on the worker thread and touches no widget; returns what the GUI shows afterwards.

        The summary and estimates are read here too, so the GUI thread does
        no store I/O when the build ends.
        """
        with _gui_friendly():
            source = store.list_levels(path)[-1] if extend else 0
            plan = pyramid.plan_build(path, factors, source_level=source, **kwargs)
            pyramid.run(plan, progress=progress, cancel=cancel)
            return plan.path, pyramid.pyramid_summary(plan.path), _estimates(plan.path, factors)

    def _start(self, factors: list, *, extend: bool) -> None:
        if self._worker is not None or not self._require_store():
            return
        self._cancel.clear()
        self.progress.setValue(0)
        self.status.setText("building…")
        self._set_running(True)
        # joined at interpreter exit, cancelled first, so the build's undo runs to its end
        self._worker = start_worker(
            self._plan_and_run,
            self.store_path,
            factors,
            self.build_kwargs(),
            extend,
            self._relay.progressed.emit,
            self._cancel.is_set,
            returned=self._on_done,
            errored=self._on_error,
            finished=self._on_finished,
            cancel=self._cancel.set,
        )

    def cancel(self) -> None:
        self._cancel.set()
        self.status.setText("cancelling… (the store will be left as it was)")

    def _on_progress(self, p: pyramid.BuildProgress) -> None:
        self.progress.setValue(int(round(100 * p.fraction)))
        self.status.setText(p.message)

    def _on_done(self, result: tuple) -> None:
        path, summary, estimates = result
        self.progress.setValue(100)
        self.status.setText("done")
        self._show_summary(summary)
        self._show_estimates(estimates)
        self._tell_layers([row["level"] for row in summary["levels"]], path)
        show_info(f"Pyramid built for {Path(path).name}.")

    def _on_error(self, exc: Exception) -> None:
        self.progress.setValue(0)
        if isinstance(exc, pyramid.BuildCancelled):
            self.status.setText(str(exc))
            show_info(str(exc))
        else:
            self._fail(str(exc))
        self.refresh()

    def _on_finished(self) -> None:
        self._worker = None
        self._set_running(False)

    def _set_running(self, running: bool) -> None:
        self._running = running
        self._update_buttons()

    def remove_coarsest(self) -> None:
        try:
            levels = store.list_levels(self.store_path)
            pyramid.remove_resolution_level(self.store_path, levels[-1])
        except (store.StoreError, IndexError) as exc:
            self._fail(str(exc))
            return
        self.refresh()
        self._tell_layers(store.list_levels(self.store_path), self.store_path)

    def _tell_layers(self, levels: list[int], path: str) -> None:
        """Every layer showing this store learns its current levels."""
        target = store.address(path)
        for layer in self.viewer.layers:
            meta = layer.metadata.get(METADATA_KEY)
            if isinstance(meta, dict) and store.address(meta.get("path") or ".") == target:
                meta["levels"] = levels
        _follow.levels_changed(target)  # layers following the camera re-plan with the new levels

    def _fail(self, message: str) -> None:
        self.status.setText(message)
        show_error(message)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt naming
        self._cancel.set()
        super().closeEvent(event)


@contextlib.contextmanager
def _gui_friendly() -> Any:
    """Keep the garbage collector off napari's objects while a build runs beside the GUI.

    Measured: the upstream builder's allocations trigger full collections
    that walk every napari/Qt object, ~150 ms each with the GIL held, so
    the event loop stalls. Objects that exist before the build are frozen
    (skipped by the collector) until it ends.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _bin_text(bin_shape: Any) -> str:
    """A bin shape in few characters: ``50³`` for a cube, ``50×25`` otherwise."""
    sides = [f"{b:g}" for b in bin_shape]
    if len(set(sides)) == 1 and len(sides) in (2, 3):
        return sides[0] + ("²" if len(sides) == 2 else "³")
    return "×".join(sides)


def _estimates(path: str, factors: list) -> list:
    """Per new level, its estimated vertex count, or "?" when the table does not parse yet."""
    try:
        return pyramid.estimate_level_vertices(path, factors, sample=50_000)
    except store.StoreError:
        return ["?"] * len(factors)
