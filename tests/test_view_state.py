"""``lod.ViewState``: a layer's level, lock and budget, evented, with the metadata a mirror of it (no Qt here)."""

from __future__ import annotations

import pytest

from napari_zarr_vectors import lod
from napari_zarr_vectors.lod import ViewState


def test_every_change_emits_its_field_event():
    state = ViewState(budget=30_000, levels=(0, 1, 2))
    seen: list[tuple[str, object]] = []

    def recorder(name: str):
        return lambda value: seen.append((name, value))  # one argument: psygnal passes the new value only

    for name in ("budget", "budget_reason", "locked", "level", "levels_shown", "vertex_count"):
        getattr(state.events, name).connect(recorder(name))
    state.set_budget(5_000, "a script")
    state.lock(2)
    state.show(1, (0, 1), 4_321)
    assert ("budget", 5_000) in seen and ("budget_reason", "a script") in seen and ("locked", 2) in seen
    assert ("level", 1) in seen and ("levels_shown", (0, 1)) in seen and ("vertex_count", 4_321) in seen
    assert state.shown_text == "0\u20131"
    seen.clear()
    state.set_budget(5_000)  # no change: no event
    assert seen == []


def test_bad_values_are_refused_and_change_nothing():
    state = ViewState(budget=30_000, levels=(0, 1))
    with pytest.raises(ValueError, match="at least 1"):
        state.set_budget(0)
    with pytest.raises(ValueError, match="level 5 is not one of"):
        state.lock(5)
    assert state.budget == 30_000 and state.locked is None
    with pytest.raises(ValueError, match="at least 1"):
        ViewState(budget=-3)


def test_a_lock_on_a_level_gone_is_released():
    state = ViewState(levels=(0, 1, 2, 3))
    state.lock(3)
    released: list[object] = []
    state.events.locked.connect(released.append)
    state.set_levels([0, 1])
    assert state.locked is None and released == [None]


def test_metadata_mirrors_the_state_and_seeds_it():
    meta = {"path": "x.zv", "level": 2, "levels": [0, 1, 2], "vertex_budget": 40_000, "budget_reason": "renderer"}
    state = ViewState.from_metadata(meta)
    assert (state.level, state.levels, state.budget, state.budget_reason) == (2, (0, 1, 2), 40_000, "renderer")
    assert state.levels_shown == (2,)
    stop = state.mirror(meta)
    state.set_budget(7_000, "set here")
    state.lock(1)
    state.show(1, (1,), 99)
    assert meta["vertex_budget"] == 7_000 and meta["budget_reason"] == "set here"
    assert meta["locked_level"] == 1 and meta["level"] == 1 and meta["levels_shown"] == [1]
    assert meta["path"] == "x.zv"  # what is not the state's stays
    stop()
    state.set_budget(8_000)
    assert meta["vertex_budget"] == 7_000  # no longer mirrored


def test_the_controller_reads_the_budget_and_lock_from_the_state():
    state = ViewState(budget=12_345)
    ctl = lod.LevelOfDetail("nowhere.zv", "point_cloud", state=state)
    assert ctl.budget == 12_345 and ctl.state is state
    state.set_budget(999)
    assert ctl.budget == 999
    ctl.lock(0)  # before the store's levels are known any level is taken
    assert state.locked == 0 and ctl.locked == 0
    ctl.budget = 2_000
    assert state.budget == 2_000
