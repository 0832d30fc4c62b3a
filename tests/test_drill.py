"""Drilling along cross-level links (drill.py): no viewer, real stores built with every link layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_zarr_vectors import drill, pyramid, samples, store

DEPTHS = (1, 2, -1)
STORAGES = ("implicit", "explicit")


def _build(kind: str, path: Path, depth: int, storage: str) -> Path:
    if kind == "points":
        samples.make_point_cloud(path, 20_000, extent=400.0, chunk=100.0, bin_size=25.0, factors=None)
        pyramid.build_pyramid(path, [(2.0, 1.0)] * 3, cross_level_depth=depth, cross_level_storage=storage)
    else:
        samples.make_streamlines(path, 200, chunk=250.0, bin_size=50.0, factors=None)
        pyramid.build_pyramid(
            path,
            [(2.0, 1.0), (2.0, 2.0), (2.0, 1.0)],
            method="per_object",
            sparsity_seed=3,
            cross_level_depth=depth,
            cross_level_storage=storage,
        )
    return path


# every layout for points; two for streamlines (their writes are slow), covering implicit and direct +-N
LAYOUTS = [("points", d, s) for d in DEPTHS for s in STORAGES] + [
    ("streamlines", 1, "implicit"),
    ("streamlines", -1, "explicit"),
]


@pytest.fixture(scope="module", params=LAYOUTS, ids=[f"{k}-{d}-{s}" for k, d, s in LAYOUTS])
def linked(request, tmp_path_factory) -> tuple[Path, int, str]:
    kind, depth, storage = request.param
    path = tmp_path_factory.mktemp("drill") / f"{kind}_{depth}_{storage}.zv"
    return _build(kind, path, depth, storage), depth, storage


def _global_rows(path: Path, level: int, keys: np.ndarray) -> np.ndarray:
    offsets, _, _ = store.handle(path).chunk_offsets(level)
    return np.array([offsets[tuple(k[:-1])] + k[-1] for k in keys.tolist()], dtype=np.int64)


def _random_keys(path: Path, level: int, n: int, seed: int = 0) -> np.ndarray:
    """``n`` random vertices of ``level`` as keys (chunk coords, row)."""
    rng = np.random.default_rng(seed)
    coords, counts = store.chunk_vertex_counts(path, level)
    pick = rng.choice(len(coords), size=n, p=counts / counts.sum())
    return np.array([(*coords[i], rng.integers(counts[i])) for i in pick], dtype=np.int64)


def _pair_set(
    v: drill.Vertices,
) -> set[tuple]:
    return {(int(q), tuple(v.keys[j].tolist())) for q, j in v.pairs}


def test_layout_matches_the_build(linked):
    path, depth, storage = linked
    deltas = [store.link_deltas(path, level) for level in range(4)]
    assert all(1 in deltas[level] for level in range(3))
    assert (-1 in deltas[1]) == (storage == "explicit")
    assert (2 in deltas[0]) == (depth != 1)


def test_repair_finds_nothing_stale_in_a_fresh_build(linked):
    """Every family of every layout agrees with the composed +1 links, so repair's stale check keeps them all."""
    path, _, _ = linked
    assert store.repair(path, dry_run=True) == []


def test_x_is_among_the_children_of_its_parents(linked):
    path, _, _ = linked
    d = drill.Drill(path)
    for level in (0, 1):
        x = _random_keys(path, level, 40, seed=level)
        for delta in range(1, 4 - level):
            up = d.parents(level, x, delta)
            has_parent = np.unique(up.pairs[:, 0])
            assert len(has_parent) > 0
            down = d.children(level + delta, up.keys, delta)
            back = {tuple(k) for k in down.keys.tolist()}
            for q in has_parent:
                assert tuple(x[q].tolist()) in back
            # and through the pairs: x's parent lists x as a child
            child_pairs = _pair_set(down)
            for q, j in up.pairs:
                assert (int(j), tuple(x[q].tolist())) in child_pairs


def test_parents_agree_with_the_whole_level_parent_map(linked):
    path, _, _ = linked
    x = _random_keys(path, 0, 60, seed=5)
    up = drill.Drill(path).parents(0, x, 1)
    expected = store.parent_map(path, 0, 1)[_global_rows(path, 0, x)]
    got = np.full(len(x), -1)
    got[up.pairs[:, 0]] = _global_rows(path, 1, up.keys)[up.pairs[:, 1]]
    np.testing.assert_array_equal(got, expected)


def test_every_child_lies_in_its_parents_bin(linked):
    path, _, _ = linked
    d = drill.Drill(path)
    info = store.open_info(path)
    for level in (1, 2, 3):
        metanodes = _random_keys(path, level, 10, seed=level)
        kids = d.children(level, metanodes, 1)
        assert len(kids) > 0
        parent_pos = d.positions(level, metanodes)[kids.pairs[:, 0]]
        child_pos = kids.positions[kids.pairs[:, 1]]
        bins = np.asarray(info.level(level).bin_shape)
        np.testing.assert_array_equal(np.floor(child_pos / bins), np.floor(parent_pos / bins))


def test_per_object_point_parent_is_the_mean_of_its_children(linked):
    path, _, _ = linked
    if store.open_info(path).kind != "point_cloud":
        pytest.skip("per_object points only")
    d = drill.Drill(path)
    for level in (1, 2, 3):
        metanodes = _random_keys(path, level, 10, seed=level)
        kids = d.children(level, metanodes, 1)
        parent_pos = d.positions(level, metanodes)
        for q in range(len(metanodes)):
            mine = kids.positions[kids.pairs[kids.pairs[:, 0] == q, 1]]
            np.testing.assert_allclose(mine.mean(0), parent_pos[q], rtol=0, atol=1e-3)


def _composed(first: drill.Vertices, second: drill.Vertices) -> set[tuple]:
    """(query, key) pairs of two chained steps, joined by hand."""
    return {(int(q), tuple(second.keys[k].tolist())) for q, j in first.pairs for m, k in second.pairs if m == j}


def test_a_depth_two_lookup_equals_two_single_steps(linked):
    path, _, _ = linked
    d = drill.Drill(path)
    x = _random_keys(path, 0, 40, seed=9)
    direct = d.parents(0, x, 2)
    one = d.parents(0, x, 1)
    two = d.parents(1, one.keys, 1)
    assert _pair_set(direct) == _composed(one, two)
    top = _random_keys(path, 2, 8, seed=2)
    direct_down = d.children(2, top, 2)
    a = d.children(2, top, 1)
    b = d.children(1, a.keys, 1)
    assert _pair_set(direct_down) == _composed(a, b)


def test_polyline_drills_name_the_objects(linked):
    path, _, _ = linked
    if store.open_info(path).kind == "point_cloud":
        assert drill.children(path, 1, _random_keys(path, 1, 3), 1).objects is None
        return
    top = _random_keys(path, 3, 4, seed=1)
    kids = drill.children(path, 3, top, 1)
    assert kids.objects is not None and len(kids.objects) == len(kids)
    assert np.all(kids.objects >= 0)
    # every named object really passes through that child at level 2
    data = store.read_level(path, 2, kind=store.open_info(path).kind, object_attributes=())
    for j in range(min(len(kids), 10)):
        part = [p for p, o in zip(data.parts(), data.part_objects, strict=True) if o == kids.objects[j]]
        assert any(np.any(np.all(np.isclose(p, kids.positions[j], atol=1e-4), axis=1)) for p in part)


def test_locate_finds_keys_from_positions(linked):
    path, _, _ = linked
    d = drill.Drill(path)
    x = _random_keys(path, 1, 20, seed=4)
    x = np.unique(x, axis=0)
    pos = d.positions(1, x)
    located = d.locate(1, pos)
    np.testing.assert_array_equal(d.positions(1, located), pos)
    np.testing.assert_array_equal(d.locate(1, pos, tolerance=0), located)  # exact matches need no tolerance
    with pytest.raises(drill.DrillError, match="No vertex of level 1 within tolerance 0.5 of position"):
        d.locate(1, pos[:1] + 7.0, tolerance=0.5)


def _brute_nearest(d: drill.Drill, level: int, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every vertex of ``level`` as keys and positions, and each query's Euclidean distance to the nearest."""
    coords, counts = store.chunk_vertex_counts(d.path, level)
    keys = np.array([(*c, r) for c, n in zip(coords.tolist(), counts.tolist(), strict=True) for r in range(n)])
    pos = d.positions(level, keys)
    return keys, np.sqrt(((query[:, None, :] - pos[None]) ** 2).sum(-1)).min(1)


def test_locate_finds_the_nearest_vertex_within_half_a_bin_diagonal(tmp_path):
    path = tmp_path / "near.zv"
    points = np.random.default_rng(0).uniform(0, 400, (5_000, 3)).astype(np.float32)  # every level-2 bin filled
    store.write_point_cloud(path, points, chunk_shape=(100.0,) * 3, bin_shape=(25.0,) * 3)
    pyramid.build_pyramid(path, [(2.0, 1.0)] * 2)
    d = drill.Drill(path)
    # level 2: bins of 100, one metanode near the middle of each; queries anywhere, chunk borders included
    rng = np.random.default_rng(1)
    query = np.r_[rng.uniform(0, 400, (40, 3)), [[100.0, 200.0, 300.0], [199.99, 200.01, 0.0]]]
    all_keys, nearest = _brute_nearest(d, 2, query)
    tol = 0.5 * np.sqrt(3) * 100.0
    ok = nearest <= tol
    assert ok.sum() > 20
    found = d.locate(2, query[ok])
    got = np.sqrt(((d.positions(2, found) - query[ok]) ** 2).sum(1))
    np.testing.assert_allclose(got, nearest[ok], rtol=1e-9)  # the nearest one (ties aside)
    assert {tuple(k) for k in found.tolist()} <= {tuple(k) for k in all_keys.tolist()}
    # the docs' example: the middle of a bin finds that bin's metanode (its points' centroid)
    middle = d.positions(2, d.locate(2, [[250.0, 250.0, 250.0]]))[0]
    assert np.all((middle >= 200.0) & (middle < 300.0))
    # a tolerance larger than a chunk searches every chunk within it
    far = np.array([[-300.0, 50.0, 50.0]])
    _, far_nearest = _brute_nearest(d, 0, far)
    key = d.locate(0, far, tolerance=far_nearest[0] + 1.0)
    np.testing.assert_allclose(np.linalg.norm(d.positions(0, key) - far), far_nearest)
    assert d.locate(0, far, tolerance=np.inf).tolist() == key.tolist()
    # nothing within: the message names the position, the tolerance and how near the nearest is
    with pytest.raises(drill.DrillError, match=r"within tolerance 86.6025 of position \(-300.0, 50.0, 50.0\)") as e:
        d.locate(2, far)
    assert "(none is nearer than that)" in str(e.value) and str(path) in str(e.value)
    near = query[ok][:1] + 1.0
    tight = 0.5 * float(np.linalg.norm(d.positions(2, d.locate(2, near)) - near))
    with pytest.raises(drill.DrillError, match=r"\(the nearest is [0-9.]+ away\): pass a larger tolerance"):
        d.locate(2, near, tolerance=tight)
    with pytest.raises(drill.DrillError, match=r"and 1 more positions"):
        d.locate(2, np.r_[far, far + 1.0, [[250.0, 250.0, 250.0]]])
    with pytest.raises(ValueError, match="tolerance must be a distance >= 0"):
        d.locate(2, query[:1], tolerance=-1.0)


def test_a_store_without_links_says_how_to_rebuild(tmp_path):
    path = tmp_path / "nolinks.zv"
    samples.make_point_cloud(path, 5_000, extent=400.0, chunk=100.0, bin_size=25.0, factors=None, ndim=2)
    pyramid.build_pyramid(path, [(2.0, 1.0), (2.0, 1.0)], cross_level_depth=0)
    d = drill.Drill(path)
    assert not d.has_links(2, -2)
    with pytest.raises(drill.DrillError, match=r"cross_level_depth >= 1"):
        d.children(2, _random_keys(path, 2, 1), 1)
    with pytest.raises(drill.DrillError, match="no level 3"):
        d.parents(2, _random_keys(path, 2, 1), 1)


@pytest.mark.parametrize("kind", ["point_cloud", "streamline"])
def test_stores_pyramided_by_upstream_drill_too(upstream_stores, kind):
    path = upstream_stores[kind]
    d = drill.Drill(path)
    x = _random_keys(path, 0, 20)
    up = d.parents(0, x, 2)
    down = d.children(2, up.keys, 2)
    back = {tuple(k) for k in down.keys.tolist()}
    assert all(tuple(x[q].tolist()) in back for q in np.unique(up.pairs[:, 0]))


def test_drilling_one_metanode_reads_only_its_footprint(monkeypatch):
    """Level 3 -> 0 of the 500,000-point sample touches only the chunks under the metanode's bin."""
    from zarr_vectors.core.group import Group

    path = samples.sample_store("synthetic_points.zv")
    info = store.open_info(path)
    d = drill.Drill(path)
    metanode = _random_keys(path, 3, 1, seed=7)
    centre = d.positions(3, metanode)[0]

    touched: list[tuple[str, str]] = []
    real_read, real_batch = Group.read_bytes, Group.batched_reads

    def read_bytes(self, array_name, chunk_key):
        touched.append((array_name, chunk_key))
        return real_read(self, array_name, chunk_key)

    def batched_reads(self, plan):
        touched.extend((name, key) for name, keys in plan for key in keys)
        return real_batch(self, plan)

    monkeypatch.setattr(Group, "read_bytes", read_bytes)
    monkeypatch.setattr(Group, "batched_reads", batched_reads)
    kids = d.children(3, metanode, 3)
    monkeypatch.undo()

    bins = np.asarray(info.level(3).bin_shape)
    lo = np.floor(centre / bins) * bins
    level0, _ = store.read_rows(path, 0)
    in_bin = np.all(np.floor(level0 / bins) == np.floor(centre / bins), axis=1)
    assert len(kids) == int(in_bin.sum()) > 1  # every level-0 point of the metanode's bin, and only those

    def footprint(level: int) -> set[str]:
        """The chunks of ``level`` (each level has its own chunk grid) that the metanode's bin overlaps."""
        chunk = np.asarray(info.level(level).chunk_shape)
        ranges = [np.arange(a, b) for a, b in zip(lo // chunk, np.ceil((lo + bins) / chunk), strict=True)]
        return {".".join(map(str, c)) for c in np.stack(np.meshgrid(*ranges), -1).reshape(-1, 3).astype(int).tolist()}

    anywhere = set().union(*(footprint(level) for level in range(4)))
    chunk_reads = {key for name, key in touched if name.startswith(("vertices", "vertex_fragments", "links"))}
    assert chunk_reads, "no chunk reads were seen"
    assert chunk_reads <= anywhere, f"read chunks outside the footprint: {sorted(chunk_reads - anywhere)}"
    assert len(footprint(0)) <= 8 < len(store.chunks_present(path, 0))
    assert np.all(np.floor(kids.positions / bins) == np.floor(centre / bins))
