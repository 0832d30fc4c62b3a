"""Dock widget "Build pyramid": edits a ``pyramid.BuildOptions`` and the new levels, runs the build on a worker.

Thin by design: every decision (validation, estimates, the build itself)
is in ``pyramid``; this file only binds it to magicgui widgets and napari.
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import napari.layers
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    ProgressBar,
    PushButton,
    SpinBox,
    Table,
)
from magicgui.widgets.bases import ValueWidget
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QEvent, Qt

from .. import pyramid, store
from ..layers import METADATA_KEY
from . import follow as _follow
from ._layout import OnEvents, ScrollArea, fit_table, refit
from ._mg import follow_active, heading, layer_choice, row, tight, wrapping_label
from .workers import start_worker

DEFAULT_ROW = (2.0, 1.0)
NO_SEED = "random each time"
DEFAULT_MODE = "(default)"
TEXT_MODE = pyramid.TEXT_MODE
# "coarse chunks" choices -> BuildOptions.chunk_scale (None: the engine's default, "auto" for
# point clouds and lines; upstream's builder, used for graphs and meshes, keeps level 0's grid)
CHUNK_CHOICES = [("grow with coarsen", None), ("keep level 0's grid", 1)]
NEW_COLUMNS = ("coarsen", "sparsity", "≈ vertices")
SUMMARY_COLUMNS = ("level", "vertices", "objects", "bin", "MB")
_RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter


def dock_options() -> pyramid.BuildOptions:
    """The dock's options at first: the defaults with seed 42 (the same survivors every time, as the dock had)."""
    return pyramid.BuildOptions(sparsity_seed=42)


def bind(
    widget: ValueWidget,
    model: Any,
    name: str,
    *,
    to_model: Callable[[Any], Any] = lambda v: v,
    to_widget: Callable[[Any], Any] = lambda v: v,
) -> None:
    """Bind ``widget`` two-way to the evented field ``model.<name>``; the widget starts at the field's value.

    A widget edit sets the field; a change of the field sets the widget
    (unless a choice widget has no such choice). Each side only acts on a
    change, so the two never echo each other for ever.
    """

    def show(value: Any) -> None:
        shown = to_widget(value)
        if isinstance(widget, ComboBox) and shown not in widget.choices:
            return
        if widget.value != shown:
            widget.value = shown

    widget.changed.connect(lambda value: setattr(model, name, to_model(value)))
    getattr(model.events, name).connect(show)
    show(getattr(model, name))


class BuildPyramidWidget(Container):
    """Build, extend or trim a store's pyramid, with progress and Cancel."""

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__(labels=False)
        self.viewer = napari_viewer
        self._options = dock_options()
        self._worker: Any = None
        self._cancel = threading.Event()
        self._modes_for: dict[str, ComboBox] = {}
        self._text: set[str] = set()  # the chosen store's text attributes (mode only)
        self._levels: list[int] | None = None  # the chosen store's levels, None until one is read
        self._writable = False
        self._running = False
        self._filling_table = False

        # --- store: a store layer, or a path for a store that is not open
        self.layer_choice = layer_choice(
            napari_viewer, _is_store_layer, name="layer", label="store layer", nullable=True
        )
        self.layer_choice.changed.connect(self._on_layer_chosen)
        self.path_edit = FileEdit(mode="d", label="store path")
        line = self.path_edit.line_edit.native
        line.setPlaceholderText("store path (.zv), or choose a store layer")
        line.editingFinished.connect(self.refresh)  # magicgui's LineEdit reports every keystroke, not the end
        self.path_edit.choose_btn.changed.connect(self.refresh)  # after FileEdit's own handler set the path
        self.path_edit.choose_btn.text = "…"
        self.path_edit.choose_btn.tooltip = "Choose a store folder"

        # --- new levels
        self.levels_table = fit_table(Table(columns=NEW_COLUMNS), row_numbers=True)  # rows: the level each adds
        self.levels_table.changed.connect(self._on_factors_edited)
        self.add_button = PushButton(text="Add level")
        self.remove_row_button = PushButton(text="Remove row")
        self.suggest_button = PushButton(
            text="Suggest", tooltip="Levels of x2 until the coarsest fits one chunk or ~500 vertices"
        )
        self.add_button.changed.connect(lambda: self._add_row(*DEFAULT_ROW))
        self.remove_row_button.changed.connect(self._remove_row)
        self.suggest_button.changed.connect(self._suggest)

        # --- options, bound to self.options
        self.agg_mode = ComboBox(choices=list(pyramid.AGG_MODES), label="aggregation")
        self.overrides = tight(Container(labels=True, label="per attribute"))
        self.method = ComboBox(choices=pyramid.available_methods(), label="method")
        self.strategy = ComboBox(choices=pyramid.available_strategies(), label="sparsity strategy")
        self.seed = SpinBox(min=0, max=2**31 - 1)
        self.random_seed = CheckBox(text=NO_SEED, tooltip="New survivors every build (no seed)")
        self.depth = SpinBox(
            min=-1,
            max=16,
            label="cross-level depth",
            tooltip="1: adjacent levels; N: also ±2..N; -1: all levels; 0: none",
        )
        self.storage = ComboBox(choices=list(pyramid.LINK_STORAGES), label="link storage")
        self.chunks = ComboBox(
            choices=CHUNK_CHOICES,
            label="coarse chunks",
            tooltip="Coarse levels' chunk grid: grown with the coarsen factor (the default: fewer, fuller chunks; "
            "faster to build and to view) or level 0's grid on every level, as zarr-vectors' own builder makes it.",
        )
        for widget, name in (
            (self.agg_mode, "agg_mode"),
            (self.method, "method"),
            (self.strategy, "sparsity_strategy"),
            (self.storage, "cross_level_storage"),
        ):
            bind(widget, self._options, name)
        # a seed typed in is used; "random each time" is no seed (magicgui's SpinBox has no special value text)
        bind(
            self.seed,
            self._options,
            "sparsity_seed",
            to_model=int,
            to_widget=lambda v: self.seed.value if v is None else v,
        )
        bind(
            self.random_seed,
            self._options,
            "sparsity_seed",
            to_model=lambda random: None if random else int(self.seed.value),
            to_widget=lambda v: v is None,
        )
        bind(self.depth, self._options, "cross_level_depth", to_model=int)
        bind(self.chunks, self._options, "chunk_scale", to_widget=lambda v: None if v == "auto" else v)
        self._options.events.agg_overrides.connect(self._show_override_modes)

        # --- run
        self.build_button = PushButton(text="Build")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.build_button.changed.connect(self.build)
        self.cancel_button.changed.connect(self.cancel)
        self.build_reason = wrapping_label("")  # why Build is disabled, when it is
        self.progress = ProgressBar(min=0, max=100, value=0)
        self.status = wrapping_label("")

        # --- existing levels
        self.summary_table = fit_table(Table(columns=SUMMARY_COLUMNS))
        self.summary_table.read_only = True
        self.overhead_label = wrapping_label("")
        self.coarsen_one_button = PushButton(text="Coarsen one more level")
        self.remove_level_button = PushButton(text="Remove coarsest level")
        self.coarsen_one_button.changed.connect(self.coarsen_one)
        self.remove_level_button.changed.connect(self.remove_coarsest)

        self.content = Container(
            labels=False,
            widgets=[
                tight(Container(labels=True, widgets=[self.layer_choice, self.path_edit])),
                heading("New levels"),
                wrapping_label("One row per level; each factor is a ratio to the level below."),
                self.levels_table,
                row(self.add_button, self.remove_row_button, self.suggest_button),
                tight(
                    Container(
                        labels=True,
                        widgets=[
                            self.agg_mode,
                            self.overrides,
                            self.method,
                            self.strategy,
                            row(self.seed, self.random_seed, label="seed"),
                            self.depth,
                            self.storage,
                            self.chunks,
                        ],
                    )
                ),
                row(self.build_button, self.cancel_button),
                self.build_reason,
                self.progress,
                self.status,
                heading("Levels in the store"),
                self.summary_table,
                self.overhead_label,
                row(self.coarsen_one_button, self.remove_level_button),
            ],
        )
        self.content.native.layout().addStretch(1)  # magicgui has no stretch: spare height goes below, not between
        # magicgui's scrollable Container hands napari its inner widget and sizes itself once, at the first
        # insertion; this one follows the tables' widths, so a short dock scrolls instead of squeezing them
        self.scroll_area = ScrollArea(self.content.native)
        self.margins = (0, 0, 0, 0)
        self.native.layout().addWidget(self.scroll_area)
        self._close_filter = OnEvents(self.native, (QEvent.Type.Close,), lambda _: self._cancel.set())  # no close event

        self._show_overrides(())
        follow_active(self.layer_choice, napari_viewer.layers.selection.active)
        if not self.levels_table.shape[0]:
            for _ in range(3):
                self._add_row(*DEFAULT_ROW)
        self._update_buttons()

    @property
    def options(self) -> pyramid.BuildOptions:  # type: ignore[override]
        """The build options the controls edit, two-way: what Build and "Coarsen one more level" use.

        It replaces magicgui's ``Widget.options`` (a dict of enabled/visible,
        used only for a widget inside a function signature, which a dock is not).
        """
        return self._options

    # ------------------------------------------------------------ store

    @property
    def store_path(self) -> str:
        return self.path_edit.line_edit.value.strip()

    def set_store(self, path: str) -> None:
        self.path_edit.line_edit.value = str(path)
        self.refresh()

    def _on_layer_chosen(self, layer: Any) -> None:
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
            self.summary_table.value = {"data": [], "index": [], "columns": SUMMARY_COLUMNS}
            refit(self.summary_table)
            self._update_buttons(str(exc))
            self._fail(str(exc))
            return
        self._show_summary(summary)
        level0 = summary["levels"][0]
        self._show_overrides(level0["attributes"], level0.get("text_attributes", ()))
        self._update_estimates()

    def _show_summary(self, summary: dict) -> None:
        rows = summary["levels"]
        cells = [
            [
                str(r["level"]),
                f"{r['vertices']:,}",
                f"{r['objects']:,}",
                _bin_text(r["bin_shape"]),
                f"{r['bytes'] / 1e6:.1f}",
            ]
            for r in rows
        ]
        self.summary_table.value = {"data": cells, "index": list(range(len(rows))), "columns": SUMMARY_COLUMNS}
        for r in range(len(rows)):  # magicgui's Table has no cell alignment: numbers right-aligned in Qt
            for c in (0, 1, 2, 4):
                self.summary_table.native.item(r, c).setTextAlignment(_RIGHT)
        refit(self.summary_table)
        self.overhead_label.value = f"pyramid storage overhead over level 0: {summary['storage_overhead']:.0%}"
        self._levels = [int(row["level"]) for row in rows]
        self._writable = store.writable(self.store_path) and os.access(self.store_path, os.W_OK)
        self._update_buttons()

    def build_blocker(self) -> str | None:
        """Why Build cannot run on the chosen store, as ``pyramid.plan_build`` would refuse it; None if it can.

        Only the store's state is checked here; the factors and options are
        checked when Build is pressed, and a mistake there is reported then.
        """
        if not self.store_path:
            return "Choose a store first: choose a store layer, or type or browse to its path."
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
        self.build_button.enabled = not running and blocker is None
        self.build_button.tooltip = blocker or "Build the levels in the table, after level 0"
        self.build_reason.value = blocker or ""
        self.build_reason.visible = blocker is not None and not running
        self.coarsen_one_button.enabled = not running and readable and self._writable
        self.remove_level_button.enabled = not running and readable and self._writable and len(self._levels or []) > 1
        self.suggest_button.enabled = not running and readable
        self.cancel_button.enabled = running

    def _show_overrides(self, names: tuple[str, ...], text: tuple[str, ...] = ()) -> None:
        """One mode box per level-0 attribute; overrides of attributes the store lacks are dropped.

        A text attribute's box offers only ``mode`` (the one aggregation text
        takes, whatever the default is), so Build cannot be asked for a mean of text.
        """
        self.overrides.clear()
        self._modes_for = {}
        self._text = set(text)
        for name in names:
            if name == pyramid.COUNT_ATTRIBUTE:
                continue
            if name in self._text:
                box = ComboBox(
                    choices=[TEXT_MODE],
                    label=name,
                    tooltip=f"'{name}' is text: coarse levels keep its most frequent value (mode)",
                )
            else:
                box = ComboBox(choices=[DEFAULT_MODE, *pyramid.AGG_MODES], label=name)
            box.changed.connect(self._on_override_edited)
            self.overrides.append(box)
            self._modes_for[name] = box
        self.overrides.visible = bool(self._modes_for)
        kept = {
            n: m
            for n, m in (self._options.agg_overrides or {}).items()
            if n in self._modes_for and (n not in self._text or m == TEXT_MODE)
        }
        self._options.agg_overrides = kept or None
        self._show_override_modes(self._options.agg_overrides)

    def _on_override_edited(self, _value: Any = None) -> None:
        # a text attribute's box holds its only choice, mode, which the build applies anyway: not an override
        modes = {n: b.value for n, b in self._modes_for.items() if b.value != DEFAULT_MODE and n not in self._text}
        self._options.agg_overrides = modes or None

    def _show_override_modes(self, overrides: Any) -> None:
        for name, box in self._modes_for.items():
            mode = (overrides or {}).get(name, DEFAULT_MODE)
            if mode in box.choices and box.value != mode:
                box.value = mode

    # ------------------------------------------------------------ factors table

    @contextlib.contextmanager
    def _filling(self) -> Iterator[None]:
        """The table is being filled by the widget, not edited by the user."""
        self._filling_table = True
        try:
            yield
        finally:
            self._filling_table = False

    def _set_rows(self, rows: list[tuple[str, str]]) -> None:
        with self._filling():
            data = [[coarsen, sparsity, ""] for coarsen, sparsity in rows]
            self.levels_table.value = {"data": data, "index": list(range(len(rows))), "columns": NEW_COLUMNS}
        self._update_estimates()

    def _add_row(self, coarsen: float, sparsity: float) -> None:
        self._set_rows([*self.factors(), (f"{coarsen:g}", f"{sparsity:g}")])

    def _remove_row(self) -> None:
        # magicgui's Table has no selection: the selected rows are read from Qt
        chosen = {i.row() for i in self.levels_table.native.selectedIndexes()}
        rows = self.factors()
        chosen = chosen or {len(rows) - 1}
        self._set_rows([row for r, row in enumerate(rows) if r not in chosen])

    def _require_store(self) -> bool:
        if not self.store_path:
            self._fail("Choose a store first: choose a store layer or type its path.")
        return bool(self.store_path)

    def _suggest(self) -> None:
        if not self._require_store():
            return
        try:
            factors = pyramid.suggest_factors(self.store_path)
        except store.StoreError as exc:
            self._fail(str(exc))
            return
        self._set_rows([(f"{c:g}", f"{s:g}") for c, s in factors])

    def factors(self) -> list[tuple[str, str]]:
        """The table as entered (validated by pyramid.normalize_factors)."""
        data = self.levels_table.data
        return [
            tuple("" if data[r, c] is None else str(data[r, c]) for c in (0, 1))
            for r in range(self.levels_table.shape[0])
        ]

    def _on_factors_edited(self, info: dict) -> None:
        if not self._filling_table and info["column"] < 2:
            self._update_estimates()

    def _update_estimates(self) -> None:
        if self.store_path and self.levels_table.shape[0]:
            self._show_estimates(_estimates(self.store_path, self.factors()))
        else:
            self._show_estimates([])

    def _show_estimates(self, estimates: list) -> None:
        """The ≈ vertices column, and each row labelled with the level it adds (after the store's coarsest)."""
        table = self.levels_table
        n = table.shape[0]
        with self._filling():
            for r in range(n):
                value = estimates[r] if r < len(estimates) else ""
                table.data[r, 2] = f"≈ {value:,}" if isinstance(value, int) else str(value)
                item = table.native.item(r, 2)  # magicgui's Table makes every cell editable: this one is not
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
            first = self._levels[-1] + 1 if self._levels else 1
            table.row_headers = [str(first + r) for r in range(n)]
        refit(table)

    # ------------------------------------------------------------ building

    def build(self) -> None:
        """Validate, then build on a worker thread."""
        self._start(self.factors(), extend=False)

    def coarsen_one(self) -> None:
        """Add one level after the coarsest, with the first row's factors."""
        rows = self.factors() or [tuple(map(str, DEFAULT_ROW))]
        self._start(rows[:1], extend=True)

    @staticmethod
    def _plan_and_run(
        path: str, factors: list, options: pyramid.BuildOptions, extend: bool, cancel: Any, *, report: Any
    ) -> tuple:
        """Runs on the worker thread and touches no widget; returns what the GUI shows afterwards.

        ``report`` (from ``start_worker``) is the build's progress callback.
        The summary and estimates are read here too, so the GUI thread does
        no store I/O when the build ends.
        """
        with _gui_friendly():
            source = store.list_levels(path)[-1] if extend else 0
            plan = pyramid.plan_build(path, factors, options, source_level=source)
            pyramid.run(plan, progress=report, cancel=cancel)
            return plan.path, pyramid.pyramid_summary(plan.path), _estimates(plan.path, factors)

    def _start(self, factors: list, *, extend: bool) -> None:
        if self._worker is not None or not self._require_store():
            return
        self._cancel.clear()
        self.progress.value = 0
        self.status.value = "building…"
        self._set_running(True)
        # joined at interpreter exit, cancelled first, so the build's undo runs to its end
        self._worker = start_worker(
            self._plan_and_run,
            self.store_path,
            factors,
            pyramid.BuildOptions.of(self._options),  # a copy: edits during the build do not reach it
            extend,
            self._cancel.is_set,
            returned=self._on_done,
            errored=self._on_error,
            finished=self._on_finished,
            cancel=self._cancel.set,
            progressed=self._on_progress,
            progress_desc="Building pyramid",
        )
        if self._worker is None:  # the interpreter is exiting
            self._set_running(False)

    def cancel(self) -> None:
        self._cancel.set()
        self.status.value = "cancelling… (the store will be left as it was)"

    def _on_progress(self, p: pyramid.BuildProgress) -> None:
        self.progress.value = int(round(100 * p.fraction))
        self.status.value = p.message

    def _on_done(self, result: tuple) -> None:
        path, summary, estimates = result
        self.progress.value = 100
        self.status.value = "done"
        self._show_summary(summary)
        self._show_estimates(estimates)
        self._tell_layers([row["level"] for row in summary["levels"]], path)
        show_info(f"Pyramid built for {Path(path).name}.")

    def _on_error(self, exc: Exception) -> None:
        self.progress.value = 0
        if isinstance(exc, pyramid.BuildCancelled):
            self.status.value = str(exc)
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
        """Every layer showing this store learns its current levels.

        A layer following the camera learns them through its view state (its
        metadata mirrors that); the others, such as meshes, in their metadata.
        """
        target = store.address(path)
        for layer in self.viewer.layers:
            meta = layer.metadata.get(METADATA_KEY)
            followed = _follow.follower_of(layer) is not None
            if isinstance(meta, dict) and not followed and store.address(meta.get("path") or ".") == target:
                meta["levels"] = levels
        _follow.levels_changed(target, levels)  # layers following the camera re-plan with the new levels

    def _fail(self, message: str) -> None:
        self.status.value = message
        show_error(message)


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


def _is_store_layer(layer: Any) -> bool:
    """A layer opened from a store (its metadata names one)."""
    return bool(pyramid.store_path_of(getattr(layer, "metadata", None) or {}))


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
