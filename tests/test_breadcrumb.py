"""The drill breadcrumb model (drill.Breadcrumb): the levels a drilling session went through; no Qt, no napari."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_zarr_vectors import drill, pyramid, samples, store


def _keys(*rows: int) -> np.ndarray:
    """Keys of a 2D store: chunk (0, 0), the given rows."""
    return np.array([[0, 0, r] for r in rows], dtype=np.int64)


@pytest.fixture
def crumb() -> tuple[drill.Breadcrumb, list[str]]:
    """A new breadcrumb and the texts it had at each ``events.steps`` emission."""
    model = drill.Breadcrumb()
    texts: list[str] = []
    model.events.steps.connect(lambda _steps: texts.append(model.text()))
    return model, texts


def test_a_new_breadcrumb_is_empty():
    model = drill.Breadcrumb()
    assert model.steps == () and model.store_path is None and model.text() == ""


def test_the_first_step_starts_the_trail_at_its_query(crumb):
    model, texts = crumb
    model.record("a.zv", drill.Step(3, _keys(7)), drill.Step(2, _keys(1, 2, 3)), chained=True)
    assert [s.level for s in model.steps] == [3, 2]
    assert model.store_path == "a.zv"
    assert model.text() == "L3 (1) → L2 (3)"
    assert texts == ["L3 (1) → L2 (3)"]  # one event for the change


def test_chained_steps_append_and_going_back_pops(crumb):
    model, texts = crumb
    model.record("a.zv", drill.Step(3, _keys(7)), drill.Step(2, _keys(1, 2, 3)), chained=False)
    model.record("a.zv", drill.Step(2, _keys(1, 2)), drill.Step(1, _keys(*range(24))), chained=True)
    assert model.text() == "L3 (1) → L2 (3) → L1 (24)"
    # back up to the level-2 stop (the same vertices, in another order): the last stop goes
    model.record("a.zv", drill.Step(1, _keys(*range(24))), drill.Step(2, _keys(3, 1, 2)), chained=True)
    assert model.text() == "L3 (1) → L2 (3)"
    # up to other level-2 vertices than the stop before: that is a new stop, not a way back
    model.record("a.zv", drill.Step(2, _keys(1)), drill.Step(3, _keys(8)), chained=True)
    assert model.text() == "L3 (1) → L2 (3) → L3 (1)"
    assert texts == [
        "L3 (1) → L2 (3)",
        "L3 (1) → L2 (3) → L1 (24)",
        "L3 (1) → L2 (3)",
        "L3 (1) → L2 (3) → L3 (1)",
    ]


def test_an_unchained_step_or_another_store_restarts_the_trail(crumb):
    model, texts = crumb
    model.record("a.zv", drill.Step(3, _keys(7)), drill.Step(2, _keys(1, 2, 3)), chained=False)
    model.record("a.zv", drill.Step(2, _keys(1)), drill.Step(1, _keys(4, 5)), chained=True)
    model.record("a.zv", drill.Step(3, _keys(9)), drill.Step(2, _keys(6, 7)), chained=False)
    assert model.text() == "L3 (1) → L2 (2)"  # selected in the store's layer again: a new trail
    model.record("b.zv", drill.Step(2, _keys(6)), drill.Step(1, _keys(1, 2, 3, 4)), chained=True)
    assert model.store_path == "b.zv"
    assert model.text() == "L2 (1) → L1 (4)"  # chained, but from another store: a new trail
    assert len(texts) == 4


def test_the_label_counts_with_thousands_separators():
    assert drill.Step(0, np.zeros((12_345, 3), np.int64)).label() == "L0 (12,345)"


def test_clear_and_direct_changes_fire_the_event(crumb):
    model, texts = crumb
    model.steps = (drill.Step(2, _keys(1)), drill.Step(1, _keys(1, 2)))
    assert texts == ["L2 (1) → L1 (2)"]
    model.steps = model.steps  # the same trail: no change, no event
    assert len(texts) == 1
    model.clear()
    assert texts[-1] == "" and model.store_path is None


def test_same_compares_level_and_the_set_of_vertices():
    assert drill._same(drill.Step(1, _keys(1, 2)), drill.Step(1, _keys(2, 1)))
    assert not drill._same(drill.Step(1, _keys(1, 2)), drill.Step(2, _keys(1, 2)))
    assert not drill._same(drill.Step(1, _keys(1, 2)), drill.Step(1, _keys(1, 3)))
    assert not drill._same(drill.Step(1, _keys(1, 2)), drill.Step(1, _keys(1)))


def _record(model: drill.Breadcrumb, d: drill.Drill, level: int, keys: np.ndarray, found: drill.Vertices) -> None:
    model.record(d.path, drill.Step(level, keys), drill.Step(found.level, found.keys), chained=True)


def test_a_real_drill_down_and_back_up(tmp_path: Path):
    path = tmp_path / "pts.zv"
    samples.make_point_cloud(path, 5_000, extent=400.0, chunk=100.0, bin_size=25.0, factors=None, ndim=2)
    pyramid.build_pyramid(path, [(2.0, 1.0), (2.0, 1.0)])
    d = drill.Drill(path)
    model = drill.Breadcrumb()
    top = d.locate(2, store.read_rows(path, 2)[0][:1])  # one level-2 metanode
    kids = d.children(2, top, 1)
    _record(model, d, 2, top, kids)
    assert model.text() == f"L2 (1) → L1 ({len(kids)})" and len(kids) > 1
    grandkids = d.children(1, kids.keys, 1)
    _record(model, d, 1, kids.keys, grandkids)
    assert model.text() == f"L2 (1) → L1 ({len(kids)}) → L0 ({len(grandkids)})"
    back = d.parents(0, grandkids.keys, 1)  # the parents of all the children: the level-1 stop again
    _record(model, d, 0, grandkids.keys, back)
    assert model.text() == f"L2 (1) → L1 ({len(kids)})"
    assert model.store_path == d.path
