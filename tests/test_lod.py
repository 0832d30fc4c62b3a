import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from napari_zarr_vectors import lod


def test_finest_level_that_fits():
    counts = [(0, 500_000), (1, 63_000), (2, 8_000), (3, 1_000)]
    assert lod.choose_level(counts, 250_000) == 1
    assert lod.choose_level(counts, 500_000) == 0
    assert lod.choose_level(counts, 8_000) == 2


def test_nothing_fits_gives_coarsest():
    assert lod.choose_level([(0, 10), (1, 5)], 1) == 1


def test_order_of_input_does_not_matter():
    assert lod.choose_level([(2, 10), (0, 1000), (1, 100)], 150) == 1


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="at least one level"):
        lod.choose_level([], 10)
    with pytest.raises(ValueError, match="budget"):
        lod.choose_level([(0, 1)], 0)


@given(st.lists(st.integers(0, 10**7), min_size=1, max_size=8), st.integers(1, 10**7))
def test_choice_fits_and_is_finest(sizes, budget):
    counts = list(enumerate(sizes))
    chosen = lod.choose_level(counts, budget)
    fitting = [i for i, c in counts if c <= budget]
    if fitting:
        assert chosen == min(fitting)
    else:
        assert chosen == len(sizes) - 1


def test_budget_from_environment(monkeypatch):
    monkeypatch.setenv(lod.BUDGET_ENV, "5_000")
    assert lod.default_vertex_budget() == 5000
    monkeypatch.setenv(lod.BUDGET_ENV, "lots")
    with pytest.warns(UserWarning, match="not a positive whole number"):
        assert lod.default_vertex_budget() == lod.DEFAULT_VERTEX_BUDGET


# ---------------------------------------------------------------- view-dependent choice


def test_visible_box_2d_slab_and_transform():
    box = lod.visible_box(
        center=(0, 500, 500),
        zoom=1.0,
        canvas_size=(200, 400),
        ndisplay=2,
        displayed=(1, 2),
        point=(1000, 0, 0),
        slab=50,
        scale=(1, 1, 1),
        translate=(0, 0, 0),
    )
    # napari order (z, y, x) -> store order (x, y, z)
    np.testing.assert_allclose(box.lo, [300, 400, 975])
    np.testing.assert_allclose(box.hi, [700, 600, 1025])
    scaled = lod.visible_box(
        center=(0, 500, 500),
        zoom=2.0,
        canvas_size=(200, 400),
        ndisplay=2,
        displayed=(1, 2),
        point=(1000, 0, 0),
        slab=50,
        scale=(2, 2, 2),
        translate=(0, 100, 0),
    )
    # half the world extent at zoom 2, then world -> data: (world - translate) / scale
    np.testing.assert_allclose(scaled.lo, [200, 175, 487.5])
    np.testing.assert_allclose(scaled.hi, [300, 225, 512.5])


def test_visible_box_3d_holds_any_rotation():
    box = lod.visible_box(
        center=(10, 20, 30),
        zoom=1.0,
        canvas_size=(300, 400),
        ndisplay=3,
        displayed=(0, 1, 2),
        point=(0, 0, 0),
        slab=1,
        scale=(1, 1, 1),
        translate=(0, 0, 0),
    )
    np.testing.assert_allclose(box.hi - box.lo, [500, 500, 500])  # 2 * hypot(150, 200)
    np.testing.assert_allclose((box.lo + box.hi) / 2, [30, 20, 10])


def _uniform_grid(level, per_chunk, n_chunks, chunk, bins):
    coords = np.stack(np.meshgrid(*[np.arange(n_chunks)] * 3, indexing="ij"), -1).reshape(-1, 3)
    return lod.LevelGrid(level, (bins,) * 3, (chunk,) * 3, coords, np.full(len(coords), per_chunk))


def test_count_in_box_uses_overlap_fractions():
    grid = _uniform_grid(0, 1000, 10, 100.0, 25.0)
    whole = lod.Box(np.zeros(3), np.full(3, 1000.0))
    assert lod.count_in_box(grid.chunk_coords, grid.chunk_counts, grid.chunk_shape, whole) == 1_000_000
    half = lod.Box(np.zeros(3), np.array([500.0, 1000, 1000]))
    assert lod.count_in_box(grid.chunk_coords, grid.chunk_counts, grid.chunk_shape, half) == 500_000
    sliver = lod.Box(np.array([0.0, 0, 0]), np.array([50.0, 100, 100]))
    assert lod.count_in_box(grid.chunk_coords, grid.chunk_counts, grid.chunk_shape, sliver) == 500


def test_view_choice_zooms_in_to_finer_levels_and_holds_at_the_boundary():
    levels = [
        _uniform_grid(0, 8000, 10, 100.0, 12.5),  # 8M vertices
        _uniform_grid(1, 1000, 10, 100.0, 25.0),  # 1M
        _uniform_grid(2, 125, 10, 100.0, 50.0),  # 125k
    ]
    whole = lod.Box(np.zeros(3), np.full(3, 1000.0))
    assert lod.choose_level_for_view(levels, whole, budget=250_000, world_per_pixel=1.0) == 2
    small = lod.Box(np.zeros(3), np.full(3, 100.0))  # one chunk: 8000 at level 0
    assert lod.choose_level_for_view(levels, small, budget=250_000, world_per_pixel=0.1) == 0
    # never finer than a bin per pixel: at 30 world units per pixel level 0's 12.5 bins are invisible
    assert lod.choose_level_for_view(levels, small, budget=250_000, world_per_pixel=30.0) == 1
    # hysteresis: level 1 estimates 1000 per chunk; a budget just under it keeps level 1 when shown
    box = lod.Box(np.zeros(3), np.array([100.0, 100, 1000]))  # 10 chunks: 10,000 at level 1
    assert lod.choose_level_for_view(levels, box, budget=9_500, world_per_pixel=0.1, current=1) == 1
    assert lod.choose_level_for_view(levels, box, budget=9_500, world_per_pixel=0.1, current=2) == 2
    assert lod.choose_level_for_view(levels, box, budget=9_500, world_per_pixel=0.1) == 2


def test_chunk_counts_of_a_real_store_estimate_a_box(upstream_stores):
    from napari_zarr_vectors import store

    path = upstream_stores["point_cloud"]
    coords, counts = store.chunk_vertex_counts(path, 0)
    info = store.open_info(path)
    assert counts.sum() == info.level(0).vertex_count and coords.shape == (len(counts), 3)
    box = lod.Box(np.array([100.0, 100, 100]), np.array([700.0, 500, 900]))
    estimate = lod.count_in_box(coords, counts, info.level(0).chunk_shape, box)
    actual = box.contains(store.read_level(path, 0).positions).sum()
    assert abs(estimate - actual) < 0.1 * actual


# ---------------------------------------------------------------- the default budget for the machine (issue 18)

LLVMPIPE = "llvmpipe (LLVM 15.0.6, 256 bits)"


def test_software_renderer_gets_a_vertex_per_20_pixels_rounded():
    assert lod.budget_for(LLVMPIPE, (1024, 1280)) == (60_000, "software renderer (llvmpipe), 1280x1024 canvas")
    assert lod.budget_for(LLVMPIPE, 1280 * 1024)[0] == 60_000
    budget, reason = lod.budget_for(LLVMPIPE, (1600, 1600))  # 128,000 raw: rounded down to the step
    assert budget == 100_000 == lod.SOFTWARE_MAX_BUDGET  # capped
    assert lod.budget_for(LLVMPIPE, (600, 800))[0] == 30_000  # 24,000 raw: the floor
    assert lod.budget_for(LLVMPIPE, (1080, 1600))[0] == 80_000  # 86,400 raw
    assert lod.budget_for("Mesa softpipe", 10)[0] == lod.SOFTWARE_MIN_BUDGET


def test_software_budget_with_an_unknown_canvas_assumes_the_reference_canvas():
    budget, reason = lod.budget_for(LLVMPIPE, None)
    assert budget == lod.REFERENCE_CANVAS_PIXELS // lod.SOFTWARE_PIXELS_PER_VERTEX // 10_000 * 10_000 == 60_000
    assert reason == "software renderer (llvmpipe), canvas size unknown"
    assert lod.budget_for(LLVMPIPE, (0, 0)) == (60_000, reason)  # a canvas not laid out yet


def test_only_the_canvas_sized_budget_follows_the_canvas():
    assert lod.budget_follows_canvas(lod.budget_for(LLVMPIPE, (600, 800))[1])
    assert lod.budget_follows_canvas(lod.budget_for(LLVMPIPE, None)[1])  # unknown now, known after a resize
    assert not lod.budget_follows_canvas(lod.budget_for("NVIDIA GeForce RTX 3060/PCIe/SSE2", (600, 800))[1])
    assert not lod.budget_follows_canvas(lod.budget_for(None, (600, 800))[1])
    for reason in ("set here", "given when opened", f"set by ${lod.BUDGET_ENV}", "a script", "", None):
        assert not lod.budget_follows_canvas(reason)


def test_gpu_and_unknown_renderers_keep_the_full_default():
    gpu = "NVIDIA GeForce RTX 3060/PCIe/SSE2"
    assert lod.budget_for(gpu, (1024, 1280)) == (250_000, f"GPU renderer ({gpu})")
    assert lod.budget_for("Mesa Intel(R) UHD Graphics 620 (KBL GT2)", 100) == (
        250_000,
        "GPU renderer (Mesa Intel(R) UHD Graphics 620)",
    )
    assert lod.budget_for(None, (1024, 1280)) == (lod.DEFAULT_VERTEX_BUDGET, "renderer not known")


@pytest.mark.parametrize(
    "renderer",
    [LLVMPIPE, "Software Rasterizer", "Google SwiftShader", "Microsoft Basic Render Driver", "GDI Generic", "swrast"],
)
def test_software_renderers_are_recognised(renderer):
    assert lod.is_software_renderer(renderer)
    assert lod.budget_for(renderer, (1024, 1280))[0] < lod.DEFAULT_VERTEX_BUDGET


def test_environment_wins_over_the_machine(monkeypatch):
    monkeypatch.setenv(lod.BUDGET_ENV, "123,000")
    expected = (123_000, f"set by ${lod.BUDGET_ENV}")
    assert lod.budget_for(LLVMPIPE, (1024, 1280)) == expected
    assert lod.budget_for("NVIDIA GeForce RTX 3060", None) == expected
    assert lod.default_vertex_budget() == 123_000
    monkeypatch.setenv(lod.BUDGET_ENV, "0")
    with pytest.warns(UserWarning, match="not a positive whole number"):
        assert lod.budget_for(LLVMPIPE, (1024, 1280))[0] == 60_000  # a bad value is ignored, the rule applies


def test_default_vertex_budget_without_a_renderer_is_unchanged(monkeypatch):
    assert lod.default_vertex_budget() == lod.DEFAULT_VERTEX_BUDGET == lod.budget_for(None, None)[0]


def test_lod_modules_import_their_siblings_and_colouring_never_the_package_or_layers():
    """No import cycle: a module of lod/ imports siblings directly, and colouring (not layers) for colours."""
    import ast
    from pathlib import Path

    for path in Path(lod.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("napari_zarr_vectors") for a in node.names), path.name
            elif isinstance(node, ast.ImportFrom):
                assert node.level > 0 or not node.module.startswith("napari_zarr_vectors"), path.name
                assert node.level != 1 or node.module, f"{path.name}: 'from . import' takes from the lod package"
                parent = {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
                assert node.level != 2 or not parent & {"lod", "layers"}, f"{path.name} imports {parent}"
