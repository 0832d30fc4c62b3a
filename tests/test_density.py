"""Density rasters, their GeoRaster pyramids and Deep Zoom export, on real stores (no viewer)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from napari_zarr_vectors import density, pyramid, samples, store
from napari_zarr_vectors.density import DensityError


@pytest.fixture(scope="module")
def cloud3d(tmp_path_factory):
    """20,000 points in a 1000-cube with a 3-level pyramid (bins 50/100/200) carrying a `count` attribute."""
    path = tmp_path_factory.mktemp("density") / "cloud.zv"
    samples.make_uniform_point_cloud(path, 20_000, extent=1000.0, chunk=200.0, bin_size=50.0, factors=None)
    pyramid.build_pyramid(path, [(2.0, 1.0), (2.0, 1.0)], agg_mode="mean", agg_overrides={"label": "count"})
    return path


@pytest.fixture(scope="module")
def plane(tmp_path_factory):
    """A 2D store, wider than tall (700 x 300), so level shapes are not square."""
    rng = np.random.default_rng(3)
    pos = rng.uniform((0, 0), (700, 300), (30_000, 2)).astype(np.float32)
    path = tmp_path_factory.mktemp("density") / "plane.zv"
    with store.atomic_store(path) as tmp:
        store.write_point_cloud(
            tmp,
            pos,
            attributes={"value": rng.uniform(0, 10, len(pos)).astype(np.float32)},
            chunk_shape=(100.0, 100.0),
            bin_shape=(20.0, 20.0),
        )
    return path


def _edges(grid: density.DensityGrid) -> list[np.ndarray]:
    """Pixel edges per kept axis, store order, for numpy.histogramdd."""
    sizes = grid.shape[::-1]
    return [grid.origin[a] + grid.pixel[a] * np.arange(sizes[i] + 1) for i, a in enumerate(grid.axes)]


def _brute(path, grid, weight=None):
    pos, attrs = store.read_rows(path, 0, [weight] if weight else [])
    w = attrs[weight].astype(np.float64) if weight else None
    counts, _ = np.histogramdd(pos[:, list(grid.axes)], bins=_edges(grid))
    sums, _ = np.histogramdd(pos[:, list(grid.axes)], bins=_edges(grid), weights=w) if weight else (None, None)
    order = tuple(reversed(range(counts.ndim)))  # store order -> napari order
    return counts.transpose(order), (sums.transpose(order) if sums is not None else None)


def test_counts_sum_to_level0_vertices(cloud3d):
    d = density.compute_density(cloud3d)
    assert d.grid.pixel == (12.5, 12.5, 12.5)  # a quarter of the 50 bin
    assert d.arrays[0].dtype == np.uint32
    for a in d.arrays:
        assert int(a.sum()) == 20_000
    counts, _ = _brute(cloud3d, d.grid)
    np.testing.assert_array_equal(d.arrays[0], counts)


def test_counts_inside_bounds_only(cloud3d):
    lo, hi = (100.0, 250.0, 0.0), (600.0, 700.0, 500.0)
    d = density.compute_density(cloud3d, pixel_size=10.0, bounds=(lo, hi))
    pos, _ = store.read_rows(cloud3d, 0)
    inside = np.all((pos >= lo) & (pos < hi), axis=1)
    assert d.grid.shape == (50, 45, 50)  # z, y, x
    assert int(d.arrays[0].sum()) == int(inside.sum()) == d.counted


@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_weighted_raster_matches_histogramdd(plane, reduce):
    got = density.compute_density(plane, weight="value", reduce=reduce, pixel_size=7.0)
    counts, sums = _brute(plane, got.grid, "value")
    want = sums if reduce == "sum" else np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    np.testing.assert_allclose(got.arrays[0], want, rtol=1e-9, equal_nan=True)
    assert got.arrays[0].shape == (43, 100)  # rows = y (300 / 7), columns = x (700 / 7)


def test_projection_matches_histogramdd_along_z(cloud3d):
    got = density.compute_density(cloud3d, axis="z", pixel_size=25.0, weight="intensity")
    assert got.grid.axes == (0, 1) and got.grid.projected == 2
    _, sums = _brute(cloud3d, got.grid, "intensity")
    np.testing.assert_allclose(got.arrays[0], sums, rtol=1e-9)
    assert got.arrays[0].shape == (40, 40)


def test_level_shapes_follow_georaster(plane):
    d = density.compute_density(plane, pixel_size=3.0)
    h, w = d.arrays[0].shape
    assert (h, w) == (100, 234)
    top = math.floor(math.log2(min(h, w)))
    assert [a.shape for a in d.arrays] == [(h >> n, w >> n) for n in range(top + 1)]
    assert min(d.arrays[-1].shape) == 1
    assert all(int(a.sum()) == 30_000 for a in d.arrays)


def test_every_vertex_lies_in_a_nonzero_pixel_at_every_level(plane):
    """Level n covers the same extent with floor(size/2**n) pixels, so pixel j spans size0/size_n of level 0."""
    d = density.compute_density(plane, pixel_size=3.0)
    pos, _ = store.read_rows(plane, 0)
    for a in d.arrays:
        # world -> pixel by the extent alone, independent of the code under test
        frac = (pos - np.asarray(d.grid.origin)) / (np.asarray(d.grid.pixel) * np.asarray(d.arrays[0].shape[::-1]))
        j = np.floor(frac * np.asarray(a.shape[::-1])).astype(int)
        assert np.all(a[j[:, 1], j[:, 0]] > 0)


def test_coarse_level_counts_its_count_attribute(cloud3d):
    d = density.compute_density(cloud3d, level=2, pixel_size=50.0)
    assert "count" in d.source
    assert d.counted == 20_000 and int(d.arrays[0].sum()) == 20_000
    fine = density.compute_density(cloud3d, level=0, pixel_size=200.0)
    coarse = density.compute_density(cloud3d, level=2, pixel_size=200.0)
    # a level-2 metavertex sits inside its 200-bin, so at a 200 pixel both levels agree exactly
    np.testing.assert_array_equal(coarse.arrays[0], fine.arrays[0])


def test_upstream_store_density(upstream_stores):
    p = upstream_stores["point_cloud"]
    d = density.density_pyramid(p, axis=2)
    assert int(d[0].sum()) == store.open_info(p).levels[0].vertex_count
    lines = upstream_stores["streamline"]
    d = density.density_pyramid(lines)
    assert int(d[0].sum()) == store.open_info(lines).levels[0].vertex_count


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"weight": "nope"}, "no vertex attribute 'nope'"),
        ({"axis": "w"}, "no axis 'w'"),
        ({"reduce": "median"}, "reduce must be one of"),
        ({"pixel_size": 0.01}, "pass a larger pixel_size"),
        ({"pixel_size": -1}, "pixel_size must be positive"),
        ({"level": 9}, "no resolution level 9"),
    ],
)
def test_bad_requests_name_the_problem(cloud3d, kwargs, words):
    with pytest.raises(store.StoreError, match=words):
        density.density_pyramid(cloud3d, **kwargs)


def test_axis_on_a_2d_store_is_refused(plane):
    with pytest.raises(DensityError, match="already an image plane"):
        density.density_pyramid(plane, axis=0)


def test_pyramid_summary_reports_image_overhead(cloud3d, plane):
    s3 = pyramid.pyramid_summary(cloud3d)["density"]
    assert s3["shapes"][0] == [80, 80, 80]
    assert abs(s3["pyramid_over_level0"] - 8 / 7) < 0.01
    assert s3["storage_overhead"] == pytest.approx(s3["pyramid_over_level0"] - 1)
    s2 = pyramid.pyramid_summary(plane)["density"]
    assert s2["shapes"][0] == [60, 140]
    assert abs(s2["pyramid_over_level0"] - 4 / 3) < 0.02
    assert density.pyramid_overhead(density.georaster_shapes((4096, 4096))) == pytest.approx(4 / 3, rel=1e-6)


# ---------------------------------------------------------------- Deep Zoom


def test_deep_zoom_level_maths():
    levels = density.deep_zoom_levels(4224, 3168, 256)
    assert [lv.level for lv in levels] == list(range(14))
    assert (levels[13].columns, levels[13].rows) == (17, 13)
    assert (levels[8].width, levels[8].height, levels[8].columns, levels[8].rows) == (132, 99, 1, 1)
    assert (levels[0].width, levels[0].height) == (1, 1)
    assert [density.tile_span(4224, c, 256, 1) for c in (0, 1, 15, 16)] == [
        (0, 257),
        (255, 513),
        (3839, 4097),
        (4095, 4224),
    ]


@pytest.fixture(scope="module")
def wide_plane(tmp_path_factory):
    """A 2D store whose bounds are exactly [0, 4224] x [0, 3168] (it has a vertex at each corner)."""
    rng = np.random.default_rng(5)
    pos = rng.uniform((0, 0), (4224, 3168), (200_000, 2)).astype(np.float32)
    pos[:4] = [(0, 0), (4224, 0), (0, 3168), (4224, 3168)]
    path = tmp_path_factory.mktemp("dz") / "wide.zv"
    with store.atomic_store(path) as tmp:
        store.write_point_cloud(tmp, pos, chunk_shape=(1024.0, 1024.0), bin_shape=(64.0, 64.0))
    return path


def test_density_size_follows_numpy_histogram(wide_plane):
    """A span of W at pixel 1 is W pixels, the upper edge in the last one: 4224 x 3168, not 4225 x 3169."""
    lo, hi = store.open_info(wide_plane).bounds
    assert lo.tolist() == [0, 0] and hi.tolist() == [4224, 3168]
    d = density.compute_density(wide_plane, pixel_size=1.0)
    assert d.arrays[0].shape == (3168, 4224)
    pos, _ = store.read_rows(wide_plane, 0)
    want, _, _ = np.histogram2d(pos[:, 1], pos[:, 0], bins=(3168, 4224), range=((0, 3168), (0, 4224)))
    np.testing.assert_array_equal(d.arrays[0], want)
    assert d.counted == len(pos) == 200_000  # the corner vertices are counted, in the corner pixels
    assert d.arrays[0][-1, -1] >= 1 and d.arrays[0][0, -1] >= 1 and d.arrays[0][-1, 0] >= 1
    assert [a.shape for a in d.arrays[:2]] == [(3168, 4224), (1584, 2112)]
    assert all(int(a.sum()) == 200_000 for a in d.arrays)
    # explicit bounds stay half-open: the same span, the vertices on the upper edges left out
    inner = density.compute_density(wide_plane, pixel_size=1.0, bounds=((0, 0), (4224, 3168)))
    assert inner.arrays[0].shape == (3168, 4224)
    assert inner.counted == int(np.all(pos < [4224, 3168], axis=1).sum()) <= 200_000 - 3


def test_deep_zoom_export_tiles(wide_plane, tmp_path):
    dzi = density.export_deep_zoom(wide_plane, tmp_path / "web", pixel_size=1.0)
    assert dzi == tmp_path / "web" / "wide.dzi"
    desc = density.read_descriptor(dzi)
    assert desc == {"TileSize": 256, "Overlap": 1, "Format": "png", "Width": 4224, "Height": 3168}
    files = tmp_path / "web" / "wide_files"
    assert sorted(int(p.name) for p in files.iterdir()) == list(range(14))
    top = files / "13"
    assert len(list(top.iterdir())) == 17 * 13
    widths = [Image.open(top / f"{c}_0.png").size[0] for c in range(17)]
    assert widths[0] == 257 and set(widths[1:16]) == {258} and widths[16] == 129
    heights = [Image.open(top / f"0_{r}.png").size[1] for r in range(13)]
    assert heights[0] == 257 and set(heights[1:12]) == {258} and heights[12] == 3168 - 12 * 256 + 1
    assert list((files / "8").iterdir()) == [files / "8" / "0_0.png"]
    assert Image.open(files / "8" / "0_0.png").size == (132, 99)
    assert not list((tmp_path / "web").glob(".*"))  # no partial files left behind


def test_deep_zoom_shows_the_density(tmp_path):
    """A bright square on an empty raster is bright, at the same place, in the exported tiles."""
    raster = np.zeros((300, 500), np.uint32)
    raster[100:200, 300:400] = 50
    dzi = density.write_deep_zoom(raster, tmp_path, "square", tile_size=128)
    files = tmp_path / "square_files"
    top = np.asarray(Image.open(files / "9" / "2_0.png"))  # x 255..384, y 0..128
    assert top[110 - 0, 300 - 255].sum() > 3 * top[10, 10].sum()
    small = np.asarray(Image.open(files / "7" / "0_0.png"))  # 125 x 75: the square at 75..100, 25..50
    assert small[37, 87].sum() > 3 * small[5, 5].sum()
    assert density.read_descriptor(dzi)["Width"] == 500


def test_deep_zoom_refuses_existing_output_and_leaves_it(tmp_path, tree_digest):
    raster = np.ones((40, 60), np.uint32)
    density.write_deep_zoom(raster, tmp_path, "img")
    before = tree_digest(tmp_path)
    with pytest.raises(DensityError, match="already exists"):
        density.write_deep_zoom(raster * 2, tmp_path, "img")
    assert tree_digest(tmp_path) == before


def test_deep_zoom_needs_an_axis_for_3d(cloud3d, tmp_path):
    with pytest.raises(DensityError, match="name the axis"):
        density.export_deep_zoom(cloud3d, tmp_path)
    dzi = density.export_deep_zoom(cloud3d, tmp_path, axis="z", format="jpg")
    assert density.read_descriptor(dzi)["Format"] == "jpg"
    assert (tmp_path / "cloud_files" / "0" / "0_0.jpg").is_file()
