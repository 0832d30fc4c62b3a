"""Dock widget "Import a file": pick a lab's file, see what it will become, import it on a worker and open it.

Thin by design: the preview (``importers.preview_table``) and the import
(``importers.import_file``, all or nothing) are Qt-free; this file binds
them to magicgui widgets, a thread worker with progress and Cancel, and
napari notifications.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, ProgressBar, PushButton, Table
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QEvent

from .. import importers, pyramid, store
from ._layout import OnEvents, ScrollArea, fit_table
from ._mg import heading, row, tight, wrapping_label
from .workers import start_worker

PLUGIN = "napari-zarr-vectors"
DETECTED = "(detected)"
NONE = "(none)"
PREVIEW_COLUMNS = ("column", "role", "first values")
#: The share of the progress bar reading the file takes; the pyramid build takes the rest.
READ_SHARE = 0.5


@dataclass(frozen=True)
class Report:
    """One progress report of an import: a fraction of the whole (0-1) and what is happening."""

    fraction: float
    message: str


def default_target(source: str | Path) -> Path:
    """The store an import of ``source`` writes by default: beside it, named after it, ``.zv``."""
    source = Path(source)
    name = source.name
    for suffix in sorted(importers.SUPPORTED, key=len, reverse=True):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    else:
        name = source.stem
    return source.with_name(f"{name or 'imported'}.zv")


def _suffix_filter() -> str:
    patterns = " ".join(f"*{s}" for s in importers.SUPPORTED)
    return f"Files this plugin imports ({patterns})"


class ImportWidget(Container):
    """Import a point table, tractogram, SWC skeleton, mesh or LAS/LAZ file as a store with a pyramid; open it."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(labels=False)
        self.viewer = napari_viewer
        self._cancel = threading.Event()
        self._worker: Any = None
        self._preview: importers.TablePreview | None = None
        self._ready = False  # a file was chosen that can be imported as it is set up
        self._columns: tuple[str, ...] = ()

        self.source = FileEdit(mode="r", label="file", filter=_suffix_filter())
        self.source.line_edit.native.setPlaceholderText("a point table, tractogram, SWC, mesh or LAS file")
        self.source.line_edit.native.editingFinished.connect(self.refresh)
        self.source.choose_btn.changed.connect(self.refresh)
        self.source.choose_btn.text = "…"
        self.detected = wrapping_label("Choose a file to see what it holds.")
        self.x = ComboBox(choices=[DETECTED], label="x")
        self.y = ComboBox(choices=[DETECTED], label="y")
        self.z = ComboBox(choices=[DETECTED], label="z")
        for combo in (self.x, self.y, self.z):
            combo.changed.connect(self._on_roles_changed)
        self.preview = fit_table(Table(columns=PREVIEW_COLUMNS))
        self.target = FileEdit(mode="w", label="new store", filter="Zarr Vectors store (*.zv)")
        self.target.line_edit.native.setPlaceholderText("the new store (.zv): beside the file by default")
        self.target.choose_btn.text = "…"
        self.build = CheckBox(text="build a pyramid", value=True, tooltip="Levels suggested from the data")
        self.build.changed.connect(self._on_roles_changed)
        self.plan = wrapping_label("")
        self.import_button = PushButton(text="Import")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.import_button.changed.connect(self.start)
        self.cancel_button.changed.connect(self.cancel)
        self.progress = ProgressBar(value=0, min=0, max=100)
        self.status = wrapping_label("")

        self.content = Container(
            labels=False,
            widgets=[
                heading("File"),
                tight(Container(labels=True, widgets=[self.source])),
                self.detected,
                heading("Columns"),
                tight(Container(labels=True, widgets=[self.x, self.y, self.z])),
                self.preview,
                heading("Store"),
                tight(Container(labels=True, widgets=[self.target])),
                self.build,
                self.plan,
                row(self.import_button, self.cancel_button),
                self.progress,
                self.status,
            ],
        )
        self.content.native.layout().addStretch(1)
        self.scroll_area = ScrollArea(self.content.native)  # a short dock scrolls instead of squeezing the table
        self.margins = (0, 0, 0, 0)
        self.native.layout().addWidget(self.scroll_area)
        # closing the dock cancels an import in flight: nothing is left behind
        self._close_filter = OnEvents(self.native, (QEvent.Type.Close,), lambda _: self._cancel.set())
        self._update_buttons()

    # ------------------------------------------------------------ preview

    @property
    def source_path(self) -> str:
        text = self.source.line_edit.value
        return str(text).strip() if text else ""

    def _roles(self) -> dict[str, str | None]:
        chosen = {k: getattr(self, k).value for k in ("x", "y", "z")}
        return {k: (None if v in (DETECTED, NONE) else v) for k, v in chosen.items()}

    def refresh(self) -> None:
        """Read the chosen file's schema and first rows; show the roles and what the import will do."""
        path = self.source_path
        self._preview = None
        self._ready = False
        if not path:
            self._show_preview(None, "Choose a file to see what it holds.")
            return
        try:
            fmt = importers.format_of(path)
        except store.StoreError as exc:
            self._show_preview(None, str(exc))
            return
        if fmt not in importers.TABLE_SUFFIXES.values():  # not a table: no columns to give roles to
            self._show_other(path, fmt)
            return
        try:
            preview = importers.preview_table(path, **self._roles())
        except (store.StoreError, ValueError) as exc:
            try:  # no coordinate columns found: offer the columns, so the user can name them
                columns = importers.table_columns(path)
            except (store.StoreError, ValueError):
                columns = ()
            if columns and columns != self._columns:
                self._set_column_choices(columns)
            self._show_preview(None, str(exc) + (" Choose x and y below." if columns else ""))
            return
        self._preview = preview
        self._ready = True
        if preview.plan.columns != self._columns:
            self._set_column_choices(preview.plan.columns)
        if not self.target.line_edit.value or str(self.target.value) in ("", "."):
            self.target.value = default_target(path)
        self._show_preview(preview, preview.describe())

    def _show_other(self, path: str, fmt: str) -> None:
        """A tractogram, skeleton, mesh or LAS file: what it is read as and becomes; its reader checks the rest."""
        what, kind = importers.DESCRIPTIONS[fmt]
        if not Path(path).is_file():
            self._show_preview(None, f"Cannot import '{path}': it does not exist.")
            return
        self._ready = True
        self._set_column_choices(())
        if not self.target.line_edit.value or str(self.target.value) in ("", "."):
            self.target.value = default_target(path)
        self.detected.value = (
            f"{what}: becomes a {kind.replace('_', ' ')} store, with its own attributes kept "
            "(see Bring your own data). It is checked as it is read."
        )
        self.preview.value = {"data": [], "index": [], "columns": PREVIEW_COLUMNS}
        self.plan.value = (
            "Chunk and bin shapes are chosen from the data's extent and density; the pyramid's levels are "
            "suggested once level 0 is written."
            if self.build.value
            else "No pyramid is built."
        )
        self._update_buttons()

    def _set_column_choices(self, columns: tuple[str, ...]) -> None:
        self._columns = columns
        for combo, extra in ((self.x, [DETECTED]), (self.y, [DETECTED]), (self.z, [DETECTED, NONE])):
            with combo.changed.blocked():
                combo.choices = [*extra, *columns]
                combo.value = DETECTED

    def _on_roles_changed(self, _: Any = None) -> None:
        if self.source_path:
            self.refresh()

    def _show_preview(self, preview: importers.TablePreview | None, message: str) -> None:
        self.detected.value = message
        if preview is None:
            self.preview.value = {"data": [], "index": [], "columns": PREVIEW_COLUMNS}
            self.plan.value = ""
        else:
            data = [[c, preview.roles[c], ", ".join(preview.head.get(c, [])[:3])] for c in preview.plan.columns]
            self.preview.value = {"data": data, "index": list(preview.plan.columns), "columns": PREVIEW_COLUMNS}
            kept = [c for c, r in preview.roles.items() if r == importers.ATTRIBUTE]
            self.plan.value = (
                f"Level 0 keeps {len(kept)} attribute column(s){': ' + ', '.join(kept) if kept else ''}. "
                + (
                    "Chunk and bin shapes are chosen from the data's extent and density; the pyramid's levels are "
                    "suggested once level 0 is written (each halves the detail until about 500 vertices remain)."
                    if self.build.value
                    else "No pyramid is built (Build pyramid can add one later)."
                )
            )
        self._update_buttons()

    # ------------------------------------------------------------ import

    def _update_buttons(self) -> None:
        running = self._worker is not None
        self.import_button.enabled = self._ready and not running
        self.cancel_button.enabled = running
        for w in (self.source, self.x, self.y, self.z, self.target, self.build):
            w.enabled = not running

    def start(self) -> None:
        """Import on a worker; the store appears only when everything succeeded."""
        if self._worker is not None:
            return
        if not self._ready:
            self.refresh()
            if not self._ready:
                show_error(self.detected.value)
                return
        target = str(self.target.value or "").strip()
        if not target or target == ".":
            self._fail("Choose where the new store goes (new store).")
            return
        self._cancel.clear()
        self.progress.value = 0
        self.status.value = "importing…"
        self._worker = start_worker(
            _run_import,
            self.source_path,
            target,
            self._roles(),
            bool(self.build.value),
            self._cancel.is_set,
            returned=self._on_done,
            errored=self._on_error,
            finished=self._on_finished,
            cancel=self._cancel.set,
            progressed=self._on_progress,
            progress_desc="Importing",
        )
        self._update_buttons()

    def cancel(self) -> None:
        self._cancel.set()
        self.status.value = "cancelling… (nothing will be written)"

    def _on_progress(self, report: Report) -> None:
        self.progress.value = int(round(100 * report.fraction))
        self.status.value = report.message

    def _on_done(self, result: tuple[importers.ImportSummary, list[str]]) -> None:
        summary, notes = result
        self.progress.value = 100
        levels = len(summary.levels)
        self.status.value = (
            f"Imported {summary.rows_written:,} {'points' if summary.objects == 0 else 'vertices'} "
            f"{f'in {summary.objects:,} objects ' if summary.objects else ''}into {Path(summary.path).name} "
            f"({levels} level{'s' if levels != 1 else ''})."
        )
        for note in notes:
            show_warning(note)
        self.viewer.open(summary.path, plugin=PLUGIN)
        show_info(self.status.value)

    def _on_error(self, exc: Exception) -> None:
        self.progress.value = 0
        if isinstance(exc, importers.ImportCancelled | pyramid.BuildCancelled):
            self.status.value = f"{exc}"
            show_info(str(exc))
            return
        if isinstance(exc, store.StoreError | ValueError | TypeError):
            self._fail(str(exc))
        else:  # an unforeseen failure still reaches the user as one line, not a traceback
            self._fail(f"The import failed: {exc}. Nothing was written.")

    def _on_finished(self) -> None:
        self._worker = None
        self._update_buttons()

    def _fail(self, message: str) -> None:
        self.status.value = message
        show_error(message)


def _run_import(
    source: str, target: str, roles: dict[str, str | None], build: bool, cancel: Any, *, report: Any
) -> tuple[importers.ImportSummary, list[str]]:
    """Runs on the worker thread and touches no widget: the import, and the warnings it gave, as text."""

    def read(rows: int, total: int | None) -> None:
        fraction = READ_SHARE * rows / total if total else 0.0
        report(Report(fraction, f"read {rows:,}{f' of {total:,}' if total else ''} rows"))

    def built(p: pyramid.BuildProgress) -> None:
        report(Report(READ_SHARE + (1 - READ_SHARE) * p.fraction, p.message))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", importers.RowsDropped)
        warnings.simplefilter("always", importers.ColumnsSkipped)
        summary = importers.import_file(
            source, target, **roles, build=build, read_progress=read, progress=built, cancel=cancel
        )
    notes = [str(w.message) for w in caught if issubclass(w.category, importers.RowsDropped | importers.ColumnsSkipped)]
    return summary, notes
