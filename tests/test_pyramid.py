"""build_pyramid on real stores: aggregation, compounding sparsity, links on disk, rollback."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import zarr_vectors as zv
from zarr_vectors import building
from zarr_vectors.multiresolution.coarsen import _decode_parent_from_plus_one, _reconstruct_chunk_assignments

from napari_zarr_vectors import pyramid, samples, store
from napari_zarr_vectors.pyramid import BuildCancelled, PyramidError


def upstream_parent(path, fine_level: int) -> np.ndarray:
    """Parent rows decoded by upstream's own code, independent of ours."""
    root = building.open_store(str(path))
    fine = building.get_resolution_level(root, fine_level)
    coarse = building.get_resolution_level(root, fine_level + 1)
    fa, nf = _reconstruct_chunk_assignments(fine, 3)
    ca, _ = _reconstruct_chunk_assignments(coarse, 3)
    return _decode_parent_from_plus_one(fine, fine_assn=fa, coarse_assn=ca, n_fine=nf)


def write_points(path, n, seed=0, chunk=500.0):
    """Uniform points in a 2000 cube; small tests use big chunks (upstream pays ~10 ms per chunk)."""
    rng = np.random.default_rng(seed)
    building.write_points(
        str(path),
        rng.uniform(0, 2000, (n, 3)).astype(np.float32),
        chunk_shape=(chunk,) * 3,
        bin_shape=(50.0,) * 3,
        vertex_attributes={
            "intensity": rng.uniform(0, 1, n).astype(np.float32),
            "label": rng.integers(0, 16, n).astype(np.int32),
        },
    )
    return path


@pytest.fixture(scope="module")
def tutorial_points(tmp_path_factory):
    """The tutorial's point pyramid at 200,000 points: [(2,1)]*3, intensity mean, label mode."""
    path = write_points(tmp_path_factory.mktemp("tut") / "synchrotron.zv", 200_000, chunk=200.0)
    pyramid.build_pyramid(path, [(2.0, 1.0)] * 3, agg_mode="mean", agg_overrides={"label": "mode"})
    return path


def test_tutorial_point_pyramid_levels_and_attributes(tutorial_points):
    summary = pyramid.pyramid_summary(tutorial_points)
    counts = [row["vertices"] for row in summary["levels"]]
    assert [row["level"] for row in summary["levels"]] == [0, 1, 2, 3]
    assert counts[1] < counts[0]
    for fine, coarse in zip(counts[1:-1], counts[2:], strict=True):
        assert 6 <= fine / coarse <= 8.5
    for row in summary["levels"][1:]:
        assert set(row["attributes"]) >= {"intensity", "label"}
    assert 0 < summary["storage_overhead"] < 1
    assert zv.open(str(tutorial_points)).validate(level=2).errors == []


def test_coarse_attributes_equal_brute_force_over_level0_descendants(tutorial_points):
    pos0, vals0 = store.read_rows(tutorial_points, 0, ["intensity", "label"])
    to_level = np.arange(len(pos0))
    below = pos0
    rng = np.random.default_rng(1)
    for level in (1, 2, 3):
        parent = upstream_parent(tutorial_points, level - 1)
        to_level = np.where(to_level >= 0, parent[to_level], -1)
        pos, vals = store.read_rows(tutorial_points, level, ["intensity", "label"])
        # geometry cross-check of the map: a per_object metavertex is the centroid of its children
        sums = np.stack([np.bincount(parent, weights=below[:, a], minlength=len(pos)) for a in range(3)], 1)
        n = np.bincount(parent, minlength=len(pos))
        np.testing.assert_allclose(sums / n[:, None], pos, atol=0.05)
        below = pos
        for coarse in rng.choice(len(pos), 40, replace=False):
            members = to_level == coarse
            assert vals["intensity"][coarse] == pytest.approx(vals0["intensity"][members].mean(), rel=1e-5)
            labels, freq = np.unique(vals0["label"][members], return_counts=True)
            assert vals["label"][coarse] == labels[np.argmax(freq)]


@pytest.mark.parametrize("mode", ["sum", "min", "max", "count"])
def test_other_aggregations(tmp_path, mode):
    path = write_points(tmp_path / "p.zv", 20_000, seed=3)
    pyramid.build_pyramid(path, [(2.0, 1.0), (2.0, 1.0)], agg_mode=mode)
    pos0, vals0 = store.read_rows(path, 0, ["intensity", "label"])
    to2 = upstream_parent(path, 1)[upstream_parent(path, 0)]
    _, vals2 = store.read_rows(path, 2, ["intensity", "label"] + (["count"] if mode == "count" else []))
    for coarse in range(0, len(vals2["label"]), 7):
        members = to2 == coarse
        for name in ("intensity", "label"):
            v = vals0[name][members]
            want = {"sum": v.sum(dtype=np.float64), "min": v.min(), "max": v.max(), "count": len(v)}[mode]
            assert vals2[name][coarse] == pytest.approx(want, rel=1e-5)
        if mode == "count":
            assert vals2["count"][coarse] == members.sum()


@pytest.fixture(scope="module")
def streamline_source(tmp_path_factory):
    path = tmp_path_factory.mktemp("sl") / "tracts.zv"
    store.write_polyline_store(
        path,
        samples.random_walks(2000, seed=1),
        geometry_type="streamline",
        chunk_shape=(100.0,) * 3,
        bin_shape=(25.0,) * 3,
    )
    return path


def _objects(path, level):
    return set(store.read_level(path, level).part_objects.tolist())


def test_streamline_sparsity_compounds_and_keeps_ids(streamline_source, tmp_path):
    factors = [(2.0, 1.0), (2.0, 4.0), (2.0, 4.0)]
    built = {}
    for strategy in ("random", "spatial_coverage"):
        path = tmp_path / f"{strategy}.zv"
        shutil.copytree(streamline_source, path)
        summary = pyramid.build_pyramid(path, factors, sparsity_strategy=strategy, sparsity_seed=42)
        counts = [row["objects"] for row in summary["levels"]]
        for got, want in zip(counts, [2000, 2000, 500, 125], strict=True):
            assert abs(got - want) <= 0.02 * want, counts
        ids = [_objects(path, level) for level in range(4)]
        assert ids[0] == set(range(2000))
        assert ids[3] <= ids[2] <= ids[1] <= ids[0]  # survivors keep their ids
        assert zv.open(str(path)).validate(level=2).errors == []
        built[strategy] = ids[3]
    assert built["random"] != built["spatial_coverage"]


def test_spatial_coverage_is_deterministic_and_spread():
    rng = np.random.default_rng(0)
    pts = np.r_[rng.normal(0, 1, (900, 3)), rng.normal(50, 1, (100, 3))]  # a big and a small cluster
    alive = np.arange(1000)
    a = pyramid.select_survivors("spatial_coverage", alive, pts, 100, seed=[7, 1])
    b = pyramid.select_survivors("spatial_coverage", alive, pts, 100, seed=[7, 1])
    c = pyramid.select_survivors("spatial_coverage", alive, pts, 100, seed=[8, 1])
    assert len(a) == 100 and np.array_equal(a, b) and not np.array_equal(a, c)
    assert 5 <= np.sum(a >= 900) <= 15  # the small cluster keeps its share


def test_cancel_after_first_level_leaves_store_as_it_was(tmp_path, tree_digest):
    path = write_points(tmp_path / "c.zv", 20_000)
    before, level0 = tree_digest(path), tree_digest(path / "0")
    seen = []

    def cancel():
        return any(p.phase == "coarsen" for p in seen)

    with pytest.raises(BuildCancelled, match="cancelled"):
        pyramid.build_pyramid(path, [(2.0, 1.0)] * 3, progress=seen.append, cancel=cancel)
    assert [p.level for p in seen] == [1]
    assert store.list_levels(path) == [0]
    assert zv.open(str(path)).validate(level=2).errors == []
    assert tree_digest(path / "0") == level0
    assert tree_digest(path) == before


def test_an_error_mid_build_rolls_back(tmp_path, tree_digest):
    path = write_points(tmp_path / "e.zv", 5_000)
    before = tree_digest(path)

    def explode(progress):
        if progress.phase == "aggregate":
            raise RuntimeError("disk on fire")

    with pytest.raises(PyramidError, match="disk on fire"):
        pyramid.build_pyramid(path, [(2.0, 1.0)] * 2, progress=explode)
    assert tree_digest(path) == before


@pytest.mark.parametrize("storage", ["none", "implicit", "explicit"])
@pytest.mark.parametrize("depth", [0, 1, 2, -1])
def test_links_on_disk_are_what_was_asked(tmp_path, depth, storage):
    path = write_points(tmp_path / "l.zv", 3_000)
    pyramid.build_pyramid(path, [(2.0, 1.0)] * 3, cross_level_depth=depth, cross_level_storage=storage)
    top = 3
    reach = top if depth == -1 else depth
    for level in range(top + 1):
        want = set()
        if storage != "none" and depth != 0:
            want |= {k for k in range(1, reach + 1) if level + k <= top}
            if storage == "explicit":
                want |= {-k for k in range(1, reach + 1) if level - k >= 0}
        assert set(store.link_deltas(path, level)) == want, (level, depth, storage)
    meta = json.loads((path / "zarr.json").read_text())["attributes"]["zarr_vectors"]
    assert (meta["cross_level_depth"], meta["cross_level_storage"]) == (depth, storage)
    assert zv.open(str(path)).validate(level=2).errors == []
    assert store.repair(path, dry_run=True) == []  # a fresh build has nothing stale or dangling
    # removing the top takes every family pointing into it (level 0's +3, level 1's +2 ...), and only those
    before = {level: set(store.link_deltas(path, level)) for level in range(top)}
    pyramid.remove_resolution_level(path, top)
    for level in range(top):
        assert set(store.link_deltas(path, level)) == {d for d in before[level] if level + d != top}, level


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"factors": [(0.5, 1)]}, "coarsen factor 0.5 must be a number >= 1"),
        ({"factors": [(2, 0)]}, "sparsity factor 0.0 must be a number >= 1"),
        ({"factors": []}, "non-empty list"),
        ({"factors": [(2,)]}, "not a \\(coarsen, sparsity\\) pair"),
        ({"factors": [(2, 2)]}, "point cloud has no objects to thin"),
        ({"agg_mode": "median"}, "agg_mode 'median' is unknown; choose one of mean, sum"),
        ({"agg_overrides": {"nope": "mode"}}, "not a level-0 vertex attribute; the store has: intensity, label"),
        ({"agg_overrides": {"label": "avg"}}, "agg_overrides\\['label'\\] = 'avg' is unknown"),
        ({"sparsity_strategy": "best"}, "sparsity_strategy 'best' is unknown; choose one of random, spatial_coverage"),
        ({"method": "magic"}, "method 'magic' is unknown"),
        ({"cross_level_depth": -2}, "cross_level_depth must be -1"),
        ({"cross_level_storage": "some"}, "cross_level_storage 'some' is unknown"),
    ],
)
def test_invalid_requests_are_refused_before_writing(tmp_path, tree_digest, kwargs, message):
    path = write_points(tmp_path / "v.zv", 2_000)
    before = tree_digest(path)
    kwargs = {"factors": [(2.0, 1.0)], **kwargs}
    with pytest.raises(PyramidError, match=message):
        pyramid.build_pyramid(path, **kwargs)
    assert tree_digest(path) == before


def test_existing_levels_and_level_removal(tmp_path):
    path = write_points(tmp_path / "x.zv", 3_000)
    pyramid.build_pyramid(path, [(2.0, 1.0)] * 2)
    with pytest.raises(PyramidError, match="already has levels \\[0, 1, 2\\]"):
        pyramid.build_pyramid(path, [(2.0, 1.0)])
    with pytest.raises(PyramidError, match="Only the coarsest level \\(2\\)"):
        pyramid.remove_resolution_level(path, 1)
    pyramid.remove_resolution_level(path, 2)
    assert pyramid.list_resolution_levels(path) == [0, 1]
    assert store.link_deltas(path, 1) == [-1]
    summary = pyramid.coarsen_level(path, 1, 2, coarsen_factor=2.0)
    assert [r["level"] for r in summary["levels"]] == [0, 1, 2]
    assert "intensity" in summary["levels"][2]["attributes"]
    assert zv.open(str(path)).validate(level=2).errors == []


def _depth_two_points(path, storage: str, last: float = 2.0):
    """20,000 points, three levels linked with cross_level_depth=2 (the last coarsened ``last`` times)."""
    samples.make_point_cloud(path, 20_000, extent=400.0, chunk=100.0, bin_size=25.0, factors=None)
    pyramid.build_pyramid(path, [(2.0, 1.0), (2.0, 1.0), (last, 1.0)], cross_level_depth=2, cross_level_storage=storage)
    return path


def _level_keys(path, level: int, n: int, seed: int = 0) -> np.ndarray:
    """``n`` random vertices of ``level`` as drill keys (chunk coordinates, row in the chunk)."""
    rng = np.random.default_rng(seed)
    coords, counts = store.chunk_vertex_counts(path, level)
    pick = rng.choice(len(coords), size=n, p=counts / counts.sum())
    return np.array([(*coords[i], rng.integers(counts[i])) for i in pick], dtype=np.int64)


def _pairs(found) -> set[tuple]:
    return {(int(q), tuple(found.keys[j].tolist())) for q, j in found.pairs}


def _chained(first, second) -> set[tuple]:
    """(query, key) pairs of two single steps, joined by hand."""
    return {(int(q), tuple(second.keys[k].tolist())) for q, j in first.pairs for m, k in second.pairs if m == j}


def _two_levels_up_agree(path) -> bool:
    """Whether level 1's parents two levels up (direct links when stored) are its parents' parents.

    A family naming rows the level does not hold is refused by drilling (a StoreError): not agreeing either.
    """
    from napari_zarr_vectors import drill

    d = drill.Drill(path)
    x = _level_keys(path, 1, 50, seed=1)
    one = d.parents(1, x, 1)
    try:
        two = d.parents(1, x, 2)
    except store.StoreError as exc:
        assert "1/links/+2" in str(exc) and "damaged" in str(exc)
        return False
    return _pairs(two) == _chained(one, d.parents(2, one.keys, 1))


@pytest.mark.parametrize("storage", ["implicit", "explicit"])
def test_remove_then_coarsen_at_depth_two_drills_like_single_steps(tmp_path, storage):
    """Issue 26: with cross_level_depth=2, removing level 3 left level 1's links/+2 into it; once level 3 was
    built again (coarsen_level), parents(1, keys, 2) followed those links to other metanodes (8 for 6)."""
    import napari_zarr_vectors as nzv
    from napari_zarr_vectors import drill

    path = _depth_two_points(tmp_path / "d2.zv", storage)
    pyramid.remove_resolution_level(path, 3)
    assert all(lv + d != 3 for lv in range(3) for d in store.link_deltas(path, lv))
    assert store.link_deltas(path, 1) == ([-1, 1] if storage == "explicit" else [1])
    pyramid.coarsen_level(path, 2, 3, coarsen_factor=3.0, cross_level_storage=storage)
    # the public drill, as the issue ran it: +2 from level 1 is +1 twice
    x = _level_keys(path, 1, 50)
    one = nzv.parents(path, 1, x, 1)
    assert _pairs(nzv.parents(path, 1, x, 2)) == _chained(one, nzv.parents(path, 2, one.keys, 1))
    # and down again, and from level 0 (whose +2 into level 2 was kept and is still right)
    d = drill.Drill(path)
    top = _level_keys(path, 3, 5, seed=2)
    down = d.children(3, top, 1)
    assert _pairs(d.children(3, top, 2)) == _chained(down, d.children(2, down.keys, 1))
    assert 2 in store.link_deltas(path, 0)
    x0 = _level_keys(path, 0, 50, seed=3)
    one = d.parents(0, x0, 1)
    assert _pairs(d.parents(0, x0, 2)) == _chained(one, d.parents(1, one.keys, 1))
    assert store.repair(path, dry_run=True) == []
    assert zv.open(str(path)).validate(level=3).errors == []


@pytest.mark.parametrize(
    ("built", "rebuilt", "finding"),
    [
        (2.0, 3.0, "address .* vertices level 3 does not hold"),  # a coarser level 3: old rows are gone
        (4.0, 2.0, "disagree with the \\+1 links composed 2 times"),  # a finer one: old rows exist, other parents
    ],
    ids=["rows-gone", "other-parents"],
)
def test_repair_finds_and_removes_stale_link_families(tmp_path, tree_digest, capsys, built, rebuilt, finding):
    """A store left by the old remove: level 1's links/+2 outlived level 3, which was then built again."""
    from napari_zarr_vectors import cli

    path = _depth_two_points(tmp_path / "stale.zv", "implicit", last=built)
    shutil.copytree(path / "1" / "links" / "+2", tmp_path / "old+2")  # what the old remove left behind
    pyramid.remove_resolution_level(path, 3)
    pyramid.coarsen_level(path, 2, 3, coarsen_factor=rebuilt)
    shutil.copytree(tmp_path / "old+2", path / "1" / "links" / "+2", dirs_exist_ok=True)  # (the old remove kept it)
    assert store.link_deltas(path, 1) == [1, 2]
    assert not _two_levels_up_agree(path)  # the symptom: drilling +2 reads the stale family
    before = tree_digest(path)
    assert cli.main(["repair", str(path), "--dry-run"]) == 0
    report = capsys.readouterr().out
    assert re.search(f"level 1: links \\+2 {finding}.*level 3 was rebuilt after them \\(stale links\\)", report)
    assert tree_digest(path) == before  # a dry run changes nothing
    assert cli.main(["repair", str(path)]) == 0
    assert "removed 1 stale link family" in capsys.readouterr().out
    assert store.link_deltas(path, 1) == [1] and 2 in store.link_deltas(path, 0)  # only the stale one went
    assert _two_levels_up_agree(path)  # composed from +1 now
    assert store.repair(path) == []


def test_suggest_factors_counts_levels_like_an_image_pyramid(tmp_path):
    path = write_points(tmp_path / "s.zv", 20_000)
    # extent 2000 / chunk 500: 2 levels of x2 until the grid fits one chunk; the floor may stop it earlier
    assert pyramid.suggest_factors(path, 2.0, vertex_floor=1) == [(2.0, 1.0)] * 2
    assert pyramid.suggest_factors(path, 2.0, vertex_floor=10_000) == [(2.0, 1.0)] * 1
    est = pyramid.estimate_level_vertices(path, [(2.0, 1.0)] * 2)
    pyramid.build_pyramid(path, [(2.0, 1.0)] * 2)
    actual = [lv.vertex_count for lv in store.open_info(path).levels[1:]]
    assert est == actual


def test_upstream_pyramid_of_every_kind_gets_attributes(upstream_stores, tmp_path):
    """Stores of other kinds build too; their vertex attributes reach the coarse levels."""
    for kind in ("graph", "skeleton", "mesh"):
        path = tmp_path / f"{kind}.zv"
        shutil.copytree(upstream_stores[kind], path)
        for level in sorted(store.list_levels(path))[1:][::-1]:
            pyramid.remove_resolution_level(path, level)
        pyramid.build_pyramid(path, [(2.0, 1.0)])
        names = store.vertex_attribute_names(path, 0)
        assert names and set(names) <= set(store.vertex_attribute_names(path, 1)), kind
        assert zv.open(str(path)).validate(level=2).errors == [], kind
        assert store.repair(path, dry_run=True) == [], kind  # upstream's links: nothing stale


def test_a_strategy_registered_by_another_package_is_offered_and_compounds(tmp_path):
    calls = []

    def first_ones(n_objects, target_count, **ctx):
        calls.append((n_objects, target_count, ctx.get("representative_points") is not None))
        return np.arange(target_count)

    building.register_selection_strategy("test-first-ones", first_ones)
    assert "test-first-ones" in pyramid.available_strategies()
    path = store.write_polyline_store(
        tmp_path / "few.zv",
        samples.random_walks(200, seed=3),
        geometry_type="streamline",
        chunk_shape=(500.0,) * 3,
        bin_shape=(50.0,) * 3,
    )
    summary = pyramid.build_pyramid(path, [(2.0, 2.0), (2.0, 2.0)], sparsity_strategy="test-first-ones")
    assert [row["objects"] for row in summary["levels"]] == [200, 100, 50]
    # called on the alive objects only, with their representative points
    assert calls == [(200, 100, True), (100, 50, True)]
    assert _objects(path, 2) == set(range(50))
