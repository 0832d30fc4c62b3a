"""The vectorized engine against the upstream-based path, on real stores (no viewer)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr_vectors as zv

from conftest import write_upstream_store
from napari_zarr_vectors import engine, pyramid, samples, store
from napari_zarr_vectors.pyramid import BuildCancelled, PyramidError
from napari_zarr_vectors.pyramid import build as pyramid_build  # where SLAB_VERTICES is read


def _level0(kind: str, tmp_path_factory, **kw) -> Path:
    return write_upstream_store(kind, tmp_path_factory.mktemp(kind) / f"{kind}.zv", pyramid=False, **kw)


@pytest.fixture(scope="module")
def level0_stores(tmp_path_factory) -> dict[str, Path]:
    """Level-0-only stores: each random-data generator of the tests, plus the tutorial's two (scaled down)."""
    out = {kind: _level0(kind, tmp_path_factory) for kind in ("point_cloud", "polyline", "streamline")}
    root = tmp_path_factory.mktemp("tutorial")
    out["tutorial_points"] = samples.make_point_cloud(root / "points.zv", 60_000, factors=None)
    out["tutorial_streamlines"] = samples.make_streamlines(root / "streamlines.zv", 400, factors=None)
    return out


def _both(src: Path, tmp_path: Path, factors, **options) -> dict[str, Path]:
    out = {}
    for eng in ("vectorized", "upstream"):
        copy = tmp_path / f"{eng}.zv"
        shutil.copytree(src, copy)
        pyramid.build_pyramid(copy, factors, engine=eng, **options)
        out[eng] = copy
    return out


def _canonical(path: Path, level: int, attributes=()):
    """A level's vertices sorted by position, with their attributes in the same order."""
    pos, values = store.read_rows(path, level, list(attributes))
    order = np.lexsort(pos.T[::-1])
    return pos[order], {k: v[order] for k, v in values.items()}


def _surviving_ids(path: Path, level: int) -> list[int]:
    info = store.open_info(path)
    data = store.read_level(path, level, kind=info.kind, vertex_attributes=(), object_attributes=())
    return sorted(set(np.asarray(data.part_objects).tolist()))


CASES = [
    ("tutorial_points", [(2.0, 1.0)] * 3, dict(agg_mode="mean", agg_overrides={"label": "mode"})),
    ("point_cloud", [(2.0, 1.0), (2.0, 1.0)], dict(agg_mode="max")),
    ("tutorial_streamlines", [(2.0, 1.0), (2.0, 4.0), (2.0, 4.0)], dict(sparsity_seed=42)),
    ("streamline", [(2.0, 1.0), (2.0, 3.0)], dict(sparsity_seed=7, sparsity_strategy="spatial_coverage")),
    ("polyline", [(3.0, 2.0)], dict(sparsity_seed=1, cross_level_storage="implicit")),
]


@pytest.mark.parametrize(("name", "factors", "options"), CASES, ids=[c[0] for c in CASES])
def test_vectorized_matches_upstream_path(level0_stores, tmp_path, name, factors, options):
    src = level0_stores[name]
    built = _both(src, tmp_path, factors, **options)
    new, old = built["vectorized"], built["upstream"]
    assert store.validate(new) == []
    info_new, info_old = store.open_info(new), store.open_info(old)
    assert [lv.vertex_count for lv in info_new.levels] == [lv.vertex_count for lv in info_old.levels]
    assert [lv.object_count for lv in info_new.levels] == [lv.object_count for lv in info_old.levels]
    assert [lv.bin_shape for lv in info_new.levels] == [lv.bin_shape for lv in info_old.levels]
    attrs = [a for a in store.vertex_attribute_names(new, 1)]
    assert sorted(attrs) == sorted(store.vertex_attribute_names(old, 1))
    for level in range(1, len(factors) + 1):
        pa, va = _canonical(new, level, attrs)
        pb, vb = _canonical(old, level, attrs)
        np.testing.assert_allclose(pa, pb, rtol=0, atol=1e-3)  # float32 centroids
        for name_ in attrs:
            np.testing.assert_allclose(va[name_], vb[name_], rtol=1e-5, equal_nan=True)
        if info_new.kind != "point_cloud":
            assert _surviving_ids(new, level) == _surviving_ids(old, level)
    # the same parent of every level-0 vertex, matched through positions
    for level in range(len(factors)):
        pos_new, pos_old = store.read_rows(new, level)[0], store.read_rows(old, level)[0]
        up_new, up_old = store.read_rows(new, level + 1)[0], store.read_rows(old, level + 1)[0]
        par_new, par_old = store.parent_map(new, level), store.parent_map(old, level)
        a = np.where(par_new[:, None] >= 0, up_new[np.maximum(par_new, 0)], np.nan)
        b = np.where(par_old[:, None] >= 0, up_old[np.maximum(par_old, 0)], np.nan)
        ka, kb = np.lexsort(pos_new.T[::-1]), np.lexsort(pos_old.T[::-1])
        np.testing.assert_allclose(a[ka], b[kb], atol=1e-3, equal_nan=True)


def test_vectorized_levels_read_back_through_upstream_readers(level0_stores, tmp_path):
    lines = tmp_path / "lines.zv"
    shutil.copytree(level0_stores["tutorial_streamlines"], lines)
    pyramid.build_pyramid(lines, [(2.0, 1.0), (2.0, 4.0)], sparsity_seed=3, cross_level_depth=2)
    ds = zv.open(str(lines))
    ds.validate()
    kept = store.open_info(lines).levels[2].object_count
    assert ds.level(2).objects.count == kept
    points = tmp_path / "points.zv"
    shutil.copytree(level0_stores["tutorial_points"], points)
    pyramid.build_pyramid(points, [(2.0, 1.0)])  # default chunk_scale: "auto" with this engine
    from zarr_vectors.types.points import read_points

    got = read_points(str(points), level=1)
    assert got["vertex_count"] == store.open_info(points).levels[1].vertex_count
    # its chunks are twice level 0's, recorded where readers look for them
    assert store.open_info(points).levels[1].chunk_shape == tuple(
        2 * c for c in store.open_info(points).levels[0].chunk_shape
    )
    assert store.validate(points) == []
    grid1 = tmp_path / "grid1.zv"
    shutil.copytree(level0_stores["tutorial_points"], grid1)
    pyramid.build_pyramid(grid1, [(2.0, 1.0)], engine="upstream")  # upstream's builder keeps level 0's grid
    assert store.open_info(grid1).levels[1].chunk_shape == store.open_info(grid1).levels[0].chunk_shape


@pytest.mark.parametrize(
    ("depth", "storage"), [(0, "explicit"), (1, "implicit"), (2, "explicit"), (-1, "implicit"), (1, "none")]
)
def test_links_follow_depth_and_storage(level0_stores, tmp_path, depth, storage):
    path = tmp_path / "p.zv"
    shutil.copytree(level0_stores["point_cloud"], path)
    pyramid.build_pyramid(path, [(2.0, 1.0)] * 3, cross_level_depth=depth, cross_level_storage=storage)
    n = 3 if depth == -1 else (0 if storage == "none" else depth)
    for level in range(4):
        want = [d for d in range(1, n + 1) if level + d <= 3]
        if storage == "explicit":
            want = sorted([-d for d in range(1, n + 1) if level - d >= 0] + want)
        assert store.link_deltas(path, level) == want, level
    for level in range(3 if n else 0):
        assert (store.parent_map(path, level) >= 0).all()
    if n >= 2:  # +2 is the +1 map composed
        composed = store.parent_map(path, 1)[store.parent_map(path, 0)]
        np.testing.assert_array_equal(store.parent_map(path, 0, delta=2), composed)
    assert store.validate(path) == []


def test_cross_object_metanode_gives_a_fresh_dense_id_space(level0_stores, tmp_path):
    path = tmp_path / "s.zv"
    shutil.copytree(level0_stores["streamline"], path)
    per_object = tmp_path / "o.zv"
    shutil.copytree(level0_stores["streamline"], per_object)
    factors = [(2.0, 1.0), (2.0, 4.0)]
    pyramid.build_pyramid(path, factors, method="cross_object_metanode", sparsity_seed=5)
    pyramid.build_pyramid(per_object, factors, method="per_object", sparsity_seed=5)
    assert store.validate(path) == []
    info, ref = store.open_info(path), store.open_info(per_object)
    survivors = _surviving_ids(per_object, 2)
    assert info.levels[2].object_count == len(survivors) < info.levels[0].object_count
    assert _surviving_ids(path, 2) == list(range(len(survivors)))  # renumbered 0..K-1
    # the same metanodes (one per occupied bin) and provenance back to the level below
    np.testing.assert_allclose(_canonical(path, 2)[0], _canonical(per_object, 2)[0], atol=1e-3)
    assert info.levels[2].vertex_count == ref.levels[2].vertex_count
    data = store.read_level(path, 2, kind=info.kind, object_attributes=(pyramid.SOURCE_OBJECT_ATTRIBUTE,))
    src_ids = np.asarray(data.object_attributes[pyramid.SOURCE_OBJECT_ATTRIBUTE])
    assert len(src_ids) == len(survivors) and set(src_ids.tolist()) <= set(range(ref.levels[0].object_count))


def test_cross_object_metanode_is_refused_for_other_kinds(upstream_stores, tmp_path):
    path = tmp_path / "g.zv"
    shutil.copytree(upstream_stores["graph"], path)
    for level in reversed(store.list_levels(path)[1:]):
        pyramid.remove_resolution_level(path, level)
    with pytest.raises(PyramidError, match="cross_object_metanode.*per_object"):
        pyramid.build_pyramid(path, [(2.0, 1.0)], method="cross_object_metanode")
    with pytest.raises(PyramidError, match="engine='upstream'"):
        pyramid.build_pyramid(path, [(2.0, 1.0)], engine="vectorized")


@pytest.mark.parametrize("when", ["cancel", "failure"])
def test_cancel_and_failure_leave_the_store_as_it_was(level0_stores, tmp_path, tree_digest, monkeypatch, when):
    path = tmp_path / "s.zv"
    shutil.copytree(level0_stores["tutorial_streamlines"], path)
    before = tree_digest(path)
    steps = []
    if when == "failure":
        real = store.write_parent_links

        def broken(*a, **k):
            real(*a, **k)  # half the links are on disk when it fails
            raise OSError("disk full")

        monkeypatch.setattr(store, "write_parent_links", broken)
        with pytest.raises(PyramidError, match="disk full.*|.*unchanged"):
            pyramid.build_pyramid(path, [(2.0, 1.0), (2.0, 2.0)], agg_mode="mean")
    else:
        with pytest.raises(BuildCancelled):
            pyramid.build_pyramid(path, [(2.0, 1.0), (2.0, 2.0)], progress=steps.append, cancel=lambda: len(steps) >= 2)
    assert tree_digest(path) == before
    assert store.list_levels(path) == [0]


def test_slabs_give_the_same_level_as_one_pass(level0_stores, tmp_path, monkeypatch):
    one, many = tmp_path / "one.zv", tmp_path / "many.zv"
    for p in (one, many):
        shutil.copytree(level0_stores["tutorial_streamlines"], p)
    pyramid.build_pyramid(one, [(2.0, 2.0)], sparsity_seed=9, sparsity_strategy="spatial_coverage")
    monkeypatch.setattr(pyramid_build, "SLAB_VERTICES", 1_000)  # many slabs of whole chunks
    assert len(store.row_batches(many, 0, 1_000)) > 10
    slabs, slab_task = [], pyramid_build._slab_task
    monkeypatch.setattr(pyramid_build, "_slab_task", lambda *a: slabs.append(a[1]) or slab_task(*a))
    pyramid.build_pyramid(many, [(2.0, 2.0)], sparsity_seed=9, sparsity_strategy="spatial_coverage")
    assert len(slabs) > 10  # the build itself read level 0 in those slabs
    np.testing.assert_array_equal(store.read_rows(one, 1)[0], store.read_rows(many, 1)[0])
    assert _surviving_ids(one, 1) == _surviving_ids(many, 1)
    np.testing.assert_array_equal(store.parent_map(one, 0), store.parent_map(many, 0))


def test_slabs_run_on_a_dask_client(level0_stores, tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    local, remote = tmp_path / "local.zv", tmp_path / "dask.zv"
    for p in (local, remote):
        shutil.copytree(level0_stores["tutorial_points"], p)
    options = dict(agg_mode="mean", agg_overrides={"label": "mode"})
    pyramid.build_pyramid(local, [(2.0, 1.0)] * 2, **options)
    monkeypatch.setattr(pyramid_build, "SLAB_VERTICES", 5_000)
    with distributed.Client(processes=False, n_workers=2, threads_per_worker=1, dashboard_address=None) as client:
        pyramid.build_pyramid(remote, [(2.0, 1.0)] * 2, client=client, **options)
        prefixes = client.cluster.scheduler.task_prefixes
        ran = sum(p.state_counts["memory"] for name, p in prefixes.items() if "slab_task" in name)
    assert ran > 5  # the level-0 slabs ran as dask tasks
    for level in (1, 2):
        a, b = _canonical(local, level, ["intensity", "label"]), _canonical(remote, level, ["intensity", "label"])
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1]["label"], b[1]["label"])
    assert store.validate(remote) == []


def test_bin_partials_merge_exactly():
    rng = np.random.default_rng(0)
    pos = rng.uniform(-50, 150, (5_000, 2)).astype(np.float32)
    w = rng.integers(0, 3, len(pos)).astype(float)
    grid = engine.BinGrid.covering((10.0, 10.0), np.array([[-1, -1], [1, 1]]), (100.0, 100.0))
    whole = engine.merge([engine.slab_partial(pos, w, grid)], 2, (100.0, 100.0))
    parts = engine.merge(
        [engine.slab_partial(pos[a : a + 700], w[a : a + 700], grid) for a in range(0, 5_000, 700)], 2, (100.0, 100.0)
    )
    np.testing.assert_array_equal(whole.positions, parts.positions)
    np.testing.assert_array_equal(whole.parent, parts.parent)
    # a bin's metavertex is the weighted mean of its rows; zero-weight rows add nothing but still get it as parent
    bins = np.floor(pos / 10).astype(int)
    target = bins[0]
    inside = (bins == target).all(1)
    if w[inside].sum():
        want = (pos[inside] * w[inside, None]).sum(0) / w[inside].sum()
        np.testing.assert_allclose(whole.positions[whole.parent[0]], want, rtol=1e-5)
    occupied = {tuple(b) for b in bins[w > 0]}
    has_parent = np.array([tuple(b) in occupied for b in bins])
    np.testing.assert_array_equal(whole.parent >= 0, has_parent)


def test_cli_build_passes_engine_options(level0_stores, tmp_path):
    from napari_zarr_vectors import cli

    path = tmp_path / "s.zv"
    shutil.copytree(level0_stores["streamline"], path)
    args = ["build", str(path), "--factors", "2,1", "--method", "cross_object_metanode", "--chunk-scale", "auto"]
    assert cli.main([*args, "--quiet"]) == 0
    info = store.open_info(path)
    assert info.levels[1].chunk_shape == tuple(2 * c for c in info.levels[0].chunk_shape)
    assert _surviving_ids(path, 1) == list(range(info.levels[1].object_count))
