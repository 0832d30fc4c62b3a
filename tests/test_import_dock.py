"""The Import dock in a real viewer, opened as the Plugins menu opens it, driven by real clicks and keys."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_zarr_vectors import importers, store
from napari_zarr_vectors._qt.import_widget import DETECTED, ImportWidget, default_target
from napari_zarr_vectors.layers import METADATA_KEY

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

PLUGIN = "napari-zarr-vectors"


def _xenium(path, n: int = 20_000, seed: int = 0):
    """A Xenium-style transcripts table with the vendor's column names, in several row groups."""
    rng = np.random.default_rng(seed)
    table = pa.table(
        {
            "transcript_id": np.arange(n, dtype=np.uint64),
            "cell_id": rng.integers(0, 300, n).astype(np.int64),
            "overlaps_nucleus": rng.integers(0, 2, n).astype(np.uint8),
            "feature_name": rng.choice([f"Gene{i}" for i in range(40)], n),
            "x_location": rng.uniform(0, 2000, n).astype(np.float32),
            "y_location": rng.uniform(0, 1500, n).astype(np.float32),
            "z_location": rng.uniform(0, 12, n).astype(np.float32),
            "qv": rng.uniform(20, 40, n).astype(np.float32),
        }
    )
    pq.write_table(table, path, row_group_size=5_000)
    return path


def _dock(viewer) -> ImportWidget:
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Import a file")
    assert isinstance(widget, ImportWidget)
    return widget


def _type_path(qtbot, edit, text: str) -> None:
    """Type a path into a FileEdit's line and press Enter, as a user pastes one."""
    line = edit.line_edit.native
    line.setFocus()
    line.selectAll()
    qtbot.keyClicks(line, text)
    qtbot.keyClick(line, Qt.Key_Return)


def _choose(qtbot, combo, text: str) -> None:
    """Pick ``text`` in a combo box from the keyboard (typing selects the item it begins)."""
    combo.native.setFocus()
    qtbot.keyClicks(combo.native, text)
    assert combo.native.currentText() == text


def _notifications():
    from napari.utils.notifications import notification_manager

    seen: list[str] = []
    notification_manager.notification_ready.connect(lambda n: seen.append(str(n.message)))
    return seen


def test_the_dock_previews_roles_imports_with_progress_and_opens_the_store(make_napari_viewer, qtbot, tmp_path):
    source = _xenium(tmp_path / "transcripts.parquet")
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    assert not widget.import_button.enabled  # nothing chosen yet
    _type_path(qtbot, widget.source, str(source))
    assert "10x Xenium" in widget.detected.value and "20,000 rows" in widget.detected.value
    roles = {r[0]: r[1] for r in widget.preview.value["data"]}
    assert roles["x_location"] == roles["y_location"] == roles["z_location"] == importers.POSITION
    assert roles["feature_name"] == roles["qv"] == importers.ATTRIBUTE
    assert roles["transcript_id"] == importers.IGNORED
    assert widget.target.value == default_target(source) == tmp_path / "transcripts.zv"
    assert widget.import_button.enabled

    values: list[int] = []
    widget.progress.changed.connect(values.append)
    qtbot.mouseClick(widget.import_button.native, Qt.LeftButton)
    assert widget.cancel_button.enabled and not widget.import_button.enabled
    qtbot.waitUntil(lambda: widget._worker is None, timeout=120_000)

    assert values[-1] == 100 and values == sorted(values) and len(set(values)) >= 3
    target = tmp_path / "transcripts.zv"
    info = store.open_info(target)
    assert len(info.levels) > 1
    assert store.validate(target, level=3) == []  # the upstream validator's conformance level 3
    opened = [layer for layer in viewer.layers if isinstance(layer.metadata.get(METADATA_KEY), dict)]
    assert opened and store.address(opened[0].metadata[METADATA_KEY]["path"]) == store.address(target)
    assert "Imported 20,000 points" in widget.status.value
    _, attrs = store.read_rows(target, 0, ["feature_name"])
    assert set(attrs["feature_name"]) <= {f"Gene{i}" for i in range(40)}  # text stayed text


def test_choosing_position_columns_changes_the_roles(make_napari_viewer, qtbot, tmp_path):
    source = tmp_path / "plain.csv"
    rng = np.random.default_rng(1)
    lines = ["a,b,c,label"] + [f"{x:.3f},{y:.3f},{z:.3f},L{k}" for x, y, z, k in rng.uniform(0, 100, (200, 4))]
    source.write_text("\n".join(lines) + "\n")
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    _type_path(qtbot, widget.source, str(source))
    assert "found no coordinate columns" in widget.detected.value and "'a', 'b', 'c'" in widget.detected.value
    assert not widget.import_button.enabled
    assert "Choose x and y below" in widget.detected.value
    assert widget.x.choices == (DETECTED, "a", "b", "c", "label")  # the columns are offered all the same
    _choose(qtbot, widget.x, "a")
    _choose(qtbot, widget.y, "b")
    assert "positions a, b" in widget.detected.value
    assert widget.z.value == DETECTED
    _choose(qtbot, widget.z, "c")
    roles = {r[0]: r[1] for r in widget.preview.value["data"]}
    assert roles == {"a": "position", "b": "position", "c": "position", "label": "attribute"}
    assert widget.import_button.enabled


def test_cancel_leaves_nothing_and_says_so(make_napari_viewer, qtbot, tmp_path):
    source = _xenium(tmp_path / "big.parquet", n=400_000)
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    seen = _notifications()
    _type_path(qtbot, widget.source, str(source))
    qtbot.mouseClick(widget.import_button.native, Qt.LeftButton)
    qtbot.waitUntil(lambda: widget.progress.value > 0 or widget._worker is None, timeout=60_000)
    qtbot.mouseClick(widget.cancel_button.native, Qt.LeftButton)
    qtbot.waitUntil(lambda: widget._worker is None, timeout=120_000)
    assert not (tmp_path / "big.zv").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.parquet"]  # no temporary left beside it
    assert "cancelled" in widget.status.value and any("cancelled" in s for s in seen)
    assert len(viewer.layers) == 0


def test_bad_files_give_a_notification_and_no_store(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    empty = tmp_path / "empty.parquet"
    empty.write_bytes(b"")
    _type_path(qtbot, widget.source, str(empty))
    assert "empty" in widget.detected.value and not widget.import_button.enabled
    truncated = tmp_path / "cut.parquet"
    whole = _xenium(tmp_path / "whole.parquet", n=2_000).read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    _type_path(qtbot, widget.source, str(truncated))
    assert "Cannot import" in widget.detected.value and not widget.import_button.enabled
    # a target that exists and is not empty is refused by the import itself: a notification, nothing changed
    good = _xenium(tmp_path / "good.parquet", n=2_000)
    occupied = tmp_path / "occupied.zv"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    seen = _notifications()
    _type_path(qtbot, widget.source, str(good))
    _type_path(qtbot, widget.target, str(occupied))
    qtbot.mouseClick(widget.import_button.native, Qt.LeftButton)
    qtbot.waitUntil(lambda: widget._worker is None, timeout=60_000)
    assert any(str(occupied) in s for s in seen), seen
    assert sorted(p.name for p in occupied.iterdir()) == ["keep.txt"]
    assert len(viewer.layers) == 0


def test_a_skeleton_file_imports_through_the_dock(make_napari_viewer, qtbot, tmp_path):
    """Not a table: no column roles, its kind said, and the import opens the store."""
    source = tmp_path / "neuron.swc"
    rows = ["# a two-tree forest", "1 1 0 0 0 1 -1"]
    rows += [f"{i} 3 {i * 2.0} {i % 5} 0 0.5 {i - 1}" for i in range(2, 60)]
    rows += ["100 1 50 50 5 1 -1"] + [f"{i} 2 50 {i - 50.0} 5 0.3 {i - 1}" for i in range(101, 140)]
    source.write_text("\n".join(rows) + "\n")
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    _type_path(qtbot, widget.source, str(source))
    assert "SWC skeleton" in widget.detected.value and "skeleton store" in widget.detected.value
    assert widget.preview.value["data"] == [] and widget.import_button.enabled
    qtbot.mouseClick(widget.import_button.native, Qt.LeftButton)
    qtbot.waitUntil(lambda: widget._worker is None, timeout=120_000)
    assert "Imported 99 vertices in 2 objects" in widget.status.value, widget.status.value
    assert store.validate(tmp_path / "neuron.zv", level=2) == []
    assert any(isinstance(layer.metadata.get(METADATA_KEY), dict) for layer in viewer.layers)
