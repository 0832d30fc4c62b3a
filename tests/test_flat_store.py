"""A store with only level 0 (no pyramid) honours the vertex budget (issue 27, item 4).

Pure: ``lod.chunk_quotas`` and ``lod.even_order`` without a store or a viewer.  Store: ``lod.read_level_sample`` and
``layers.layers_for_store`` on real stores.  Viewer: a 1,500,000-point level-0-only store opened with
``viewer.open(path, plugin=None)`` (what File > Open and ``napari PATH`` do) draws at most the budget, spread over
the store's extent, says so in the Levels dock and offers a pyramid.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_zarr_vectors import layers, lod, store
from napari_zarr_vectors.layers import METADATA_KEY

PLUGIN = "napari-zarr-vectors"
EXTENT = 1000.0
#: The viewer tests' vertex budget (small: quick to draw under software OpenGL).
BUDGET = 40_000


def clustered(n: int, seed: int = 0, dense: float = 2 / 3) -> np.ndarray:
    """``n`` 3D points in [0, EXTENT)^3: a share ``dense`` of them in one tight cluster near the origin, written
    first (the first rows), the rest uniform."""
    rng = np.random.default_rng(seed)
    k = int(n * dense)
    pos = np.concatenate([rng.normal(150.0, 25.0, (k, 3)), rng.uniform(0.0, EXTENT, (n - k, 3))])
    return np.clip(pos, 0.0, EXTENT - 1e-3).astype(np.float32)


def write_flat(path, n: int, seed: int = 0) -> str:
    """A level-0-only store as saving a layer writes it; ``intensity`` is each point's x over EXTENT."""
    pos = clustered(n, seed)
    return store.write_point_cloud(str(path), pos, attributes={"intensity": pos[:, 0] / np.float32(EXTENT)})


def octant_counts(store_positions: np.ndarray) -> np.ndarray:
    """Points per octant of the store's extent (store axis order)."""
    index = ((np.asarray(store_positions) >= EXTENT / 2).astype(int) * [1, 2, 4]).sum(axis=1)
    return np.bincount(index, minlength=8)


# ---------------------------------------------------------------- pure: no store, no viewer


def test_quotas_cap_dense_chunks_evenly_and_fill_the_budget():
    counts = np.array([10, 500, 3000, 0, 7000])
    q = lod.chunk_quotas(counts, 2000)
    assert q.sum() == 2000
    assert (q <= counts).all()
    assert q[0] == 10 and q[3] == 0  # a sparse chunk keeps every point
    capped = q[counts > q]
    assert capped.max() - capped.min() <= 1  # dense chunks share what is left evenly
    assert lod.chunk_quotas(counts, 10**6).tolist() == counts.tolist()  # all fits: all of it
    assert lod.chunk_quotas(counts, 0).sum() == 0
    assert lod.chunk_quotas([2.7, 0.4], 100).tolist() == [2, 0]  # estimates round down: never over
    with pytest.raises(ValueError, match="budget"):
        lod.chunk_quotas(counts, -1)


def test_even_order_is_a_deterministic_permutation():
    pos = np.random.default_rng(1).uniform(0, 50, (5000, 3)).astype(np.float32)
    order = lod.even_order(pos)
    assert sorted(order.tolist()) == list(range(len(pos)))
    assert np.array_equal(order, lod.even_order(pos.copy()))
    assert lod.even_order(pos[:1]).tolist() == [0] and len(lod.even_order(pos[:0])) == 0
    same = np.zeros((100, 2))  # every point at one place: still each row once
    assert sorted(lod.even_order(same).tolist()) == list(range(100))


def test_an_even_prefix_covers_space_not_density():
    """90% of the points in a dot, 10% spread: the first 1,000 cover a 4x4 grid evenly, not the dot."""
    rng = np.random.default_rng(2)
    pos = np.concatenate([rng.normal(50, 2, (90_000, 2)), rng.uniform(0, 100, (10_000, 2))])
    first = pos[lod.even_order(pos, (0, 0), (100, 100))[:1000]]
    grid, _, _ = np.histogram2d(first[:, 0], first[:, 1], bins=4, range=[[0, 100], [0, 100]])
    assert grid.min() >= 0.8 * 1000 / 16 and grid.max() <= 1.2 * 1000 / 16
    in_dot = np.linalg.norm(first - 50, axis=1) < 6
    assert in_dot.mean() < 0.05  # a tenth of a percent of the area; the first rows are 90% dot
    assert (np.linalg.norm(pos[:1000] - 50, axis=1) < 6).mean() > 0.9


def test_even_subsample_takes_k_rows():
    pos = np.random.default_rng(3).uniform(0, 1, (1000, 2))
    rows = lod.even_subsample(pos, 100)
    assert len(rows) == 100 and len(np.unique(rows)) == 100 and np.all(np.diff(rows) > 0)
    assert len(lod.even_subsample(pos, 5000)) == 1000 and len(lod.even_subsample(pos, 0)) == 0


# ---------------------------------------------------------------- a real store, no viewer


@pytest.fixture(scope="module")
def flat_60k(tmp_path_factory) -> str:
    return write_flat(tmp_path_factory.mktemp("flat") / "flat60k.zv", 60_000, seed=4)


def test_a_sample_fits_the_budget_and_covers_the_extent(flat_60k):
    sample = lod.read_level_sample(flat_60k, 0, 5_000, cache=None)
    data = sample.data
    assert data.vertex_count == 5_000 and sample.in_view == 60_000
    assert sum(sample.quotas.values()) == 5_000
    counts = octant_counts(data.positions)
    assert counts.min() > 0
    assert counts.max() < 0.35 * 5_000  # the first rows would put two thirds in octant 0
    np.testing.assert_allclose(data.vertex_attributes["intensity"], data.positions[:, 0] / EXTENT, rtol=1e-6)
    assert len(np.unique(data.positions, axis=0)) == 5_000  # no point twice


def test_a_box_gets_its_own_sample_and_all_its_points_when_they_fit(flat_60k):
    cache = lod.ChunkCache()
    big = lod.Box(np.array([500.0, 0.0, 0.0]), np.array([1000.0, 1000.0, 1000.0]))
    sample = lod.read_level_sample(flat_60k, 0, 3_000, box=big, cache=cache)
    assert sample.data.vertex_count == 3_000
    assert big.contains(sample.data.positions).all()
    again = lod.read_level_sample(flat_60k, 0, 3_000, box=big, cache=cache)
    assert again.reads == 0  # the ordered prefixes were kept
    assert np.array_equal(np.sort(again.data.positions, axis=0), np.sort(sample.data.positions, axis=0))
    small = lod.Box(np.array([600.0, 600.0, 600.0]), np.array([700.0, 700.0, 700.0]))
    inside = store.read_level(flat_60k, 0, bbox=(small.lo, small.hi)).positions
    assert 0 < len(inside) < 3_000
    got = lod.read_level_sample(flat_60k, 0, 3_000, box=small, cache=cache).data.positions
    assert np.array_equal(np.sort(got, axis=0), np.sort(inside, axis=0))  # every point in the box


def test_layers_open_a_flat_store_as_a_sample_unless_a_level_is_asked(flat_60k):
    *_, (data, kwargs, kind) = layers.layers_for_store(flat_60k, vertex_budget=5_000)
    assert kind == "points" and len(data) == 5_000
    assert kwargs["metadata"][METADATA_KEY]["sampled_from"] == 60_000
    assert len(kwargs["features"]) == 5_000
    *_, (whole, kwargs, _) = layers.layers_for_store(flat_60k, vertex_budget=5_000, level=0)
    assert len(whole) == 60_000 and "sampled_from" not in kwargs["metadata"][METADATA_KEY]
    *_, (fits, kwargs, _) = layers.layers_for_store(flat_60k, vertex_budget=100_000)
    assert len(fits) == 60_000 and "sampled_from" not in kwargs["metadata"][METADATA_KEY]


def test_the_levels_dock_line():
    state = lod.ViewState(budget=1000)
    assert state.sample_text == ""
    state.show(0, (0,), 1000, sampled_from=1_500_000)
    assert state.sample_text == ("level 0 only: showing 1,000 of 1,500,000 points; build a pyramid for faster views")
    state.show(0, (0,), 800)
    assert state.sample_text == ""


# ---------------------------------------------------------------- in napari: 1,500,000 points, level 0 only


@pytest.fixture(scope="module")
def flat_1500k(tmp_path_factory) -> str:
    path = write_flat(tmp_path_factory.mktemp("flat") / "flat1500k.zv", 1_500_000)
    assert [lv.index for lv in store.open_info(path).levels] == [0]
    return path


def _settle(qtbot, follower):
    qtbot.waitUntil(lambda: follower.idle, timeout=120_000)


def _open(make_napari_viewer, monkeypatch, path):
    from napari_zarr_vectors import _reader

    monkeypatch.setenv(lod.BUDGET_ENV, str(BUDGET))
    viewer = make_napari_viewer()
    _reader.prefer_this_reader_for_stores()  # as after the first store a user opened: napari asks only once
    added = viewer.open(path, plugin=None)  # no plugin named: napari's reader choice, as File > Open
    (layer,) = [a for a in added if type(a).__name__ == "Points"]
    return viewer, layer


def test_a_million_and_a_half_points_open_within_the_budget(make_napari_viewer, qtbot, monkeypatch, flat_1500k):
    from napari.utils.notifications import notification_manager

    from napari_zarr_vectors._qt import follow as _follow

    seen = []
    record = lambda event: seen.append(getattr(event, "value", event))  # noqa: E731
    notification_manager.notification_ready.connect(record)
    try:
        viewer, layer = _open(make_napari_viewer, monkeypatch, flat_1500k)
    finally:
        notification_manager.notification_ready.disconnect(record)
    assert 0 < len(layer.data) <= BUDGET  # as opened, before the follower's first plan
    follower = _follow.follower_of(layer)
    _settle(qtbot, follower)
    shown = np.asarray(layer.data)[:, ::-1]  # napari (z, y, x) -> store (x, y, z)
    assert 0 < len(shown) <= BUDGET
    counts = octant_counts(shown)
    assert counts.min() > 0.05 * len(shown)  # every octant drawn: the first rows would be two thirds octant 0
    assert counts.max() < 0.3 * len(shown)
    np.testing.assert_allclose(layer.features["intensity"], shown[:, 0] / EXTENT, rtol=1e-6)
    assert follower.state.sampled_from == 1_500_000
    assert follower.state.sample_text == (
        f"level 0 only: showing {len(shown):,} of 1,500,000 points; build a pyramid for faster views"
    )

    # the Levels dock says so
    _dock, levels = viewer.window.add_plugin_dock_widget(PLUGIN, "Levels")
    qtbot.waitUntil(lambda: len(levels.layer_rows) == 1, timeout=5000)
    assert levels.sample_text(0) == follower.state.sample_text

    # the notification offers a pyramid, and its button opens the Build pyramid dock on this store
    (offer,) = [n for n in seen if "only level 0" in str(n.message)]
    assert "1,500,000" in str(offer.message) and "napari-zarr-vectors build" in str(offer.message)
    assert "Build pyramid" in str(offer.message)
    (action,) = offer.actions
    build = action[1](None)
    assert type(build).__name__ == "BuildPyramidWidget"
    assert build.store_path == flat_1500k

    # zoomed onto a small part: the points there, all of them once they fit, never more than the budget
    camera = viewer.scene.camera
    camera.center = (850.0, 850.0, 850.0)
    camera.zoom = viewer.canvas.size[1] / 40.0  # about 40 units across
    _settle(qtbot, follower)
    near = np.asarray(layer.data)[:, ::-1]
    assert 0 < len(near) <= BUDGET
    box = follower.lod.box_for(follower.view(), 0)
    assert box.contains(near).all()
    every = store.read_level(flat_1500k, 0, bbox=(box.lo, box.hi)).positions
    assert len(every) <= BUDGET and len(near) == len(every)
    assert follower.state.sampled_from == 0 and levels.sample_text(0) == ""


def test_a_pyramid_built_while_open_ends_the_sample(make_napari_viewer, qtbot, monkeypatch, tmp_path):
    import napari_zarr_vectors as nzv
    from napari_zarr_vectors._qt import follow as _follow

    path = write_flat(tmp_path / "grows.zv", 100_000, seed=5)
    monkeypatch.setenv(lod.BUDGET_ENV, "10000")
    viewer = make_napari_viewer()
    *_, layer = viewer.open(path, plugin=PLUGIN)
    follower = _follow.follower_of(layer)
    _settle(qtbot, follower)
    assert len(layer.data) <= 10_000 and follower.state.sampled_from == 100_000
    nzv.build_pyramid(path, factors=[(2.0, 1.0)] * 3)
    _follow.levels_changed(path)
    _settle(qtbot, follower)
    assert follower.state.sampled_from == 0 and follower.state.sample_text == ""
    assert len(follower.state.levels) == 4
