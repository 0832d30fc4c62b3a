"""The build options model, ``pyramid.BuildOptions``: no Qt, no viewer."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import zarr_vectors as zv

import napari_zarr_vectors as nzv
from napari_zarr_vectors import pyramid, store
from napari_zarr_vectors.pyramid import BuildOptions

#: The build keywords' defaults as build_pyramid / plan_build declared them before BuildOptions.
KEYWORD_DEFAULTS = {
    "agg_mode": "mean",
    "agg_overrides": None,
    "method": "per_object",
    "sparsity_strategy": "random",
    "sparsity_seed": None,
    "cross_level_depth": 1,
    "cross_level_storage": "explicit",
    "engine": "auto",
    "chunk_scale": None,
}


@pytest.fixture
def point_store(cells_store):
    return cells_store


def test_defaults_are_the_keyword_defaults():
    assert dataclasses.asdict(BuildOptions()) == KEYWORD_DEFAULTS
    assert BuildOptions.field_names() == tuple(KEYWORD_DEFAULTS)
    assert nzv.BuildOptions is BuildOptions


def test_keywords_override_options_and_leave_them_alone():
    options = BuildOptions(agg_mode="max", sparsity_seed=3)
    merged = BuildOptions.of(options, agg_mode="mode", cross_level_depth=-1)
    assert (merged.agg_mode, merged.sparsity_seed, merged.cross_level_depth) == ("mode", 3, -1)
    assert options.agg_mode == "max" and options.cross_level_depth == 1  # the caller's model is not edited
    assert BuildOptions.of(None, method="cross_object_metanode") == BuildOptions(method="cross_object_metanode")


def test_keywords_override_options_in_the_plan(point_store):
    path = point_store()
    plan = pyramid.plan_build(path, [(2, 1)], BuildOptions(agg_mode="max", chunk_scale=1), agg_mode="min")
    assert plan.modes == {"intensity": "min", "label": "min"}
    assert plan.chunk_scale == (1,)
    by_keyword = pyramid.plan_build(path, [(2, 1)], agg_mode="mean", agg_overrides={"label": "mode"})
    by_options = pyramid.plan_build(path, [(2, 1)], BuildOptions(agg_mode="mean", agg_overrides={"label": "mode"}))
    assert by_keyword == by_options and by_options.modes == {"intensity": "mean", "label": "mode"}


@pytest.mark.parametrize(
    "call",
    [
        lambda p: pyramid.plan_build(p, [(2, 1)], agg_mood="mean"),
        lambda p: pyramid.build_pyramid(p, [(2, 1)], agg_mood="mean"),
        lambda p: pyramid.coarsen_level(p, 0, 1, agg_mood="mean"),
        lambda p: BuildOptions.of(None, agg_mood="mean"),
    ],
    ids=["plan_build", "build_pyramid", "coarsen_level", "BuildOptions.of"],
)
def test_an_unknown_keyword_is_refused_by_name(point_store, tree_digest, call):
    path = point_store()
    before = tree_digest(path)
    with pytest.raises(TypeError, match="'agg_mood'") as err:
        call(path)
    for name in KEYWORD_DEFAULTS:
        assert name in str(err.value)
    assert tree_digest(path) == before


def test_options_of_another_type_are_refused(point_store):
    with pytest.raises(TypeError, match="options must be a BuildOptions"):
        pyramid.plan_build(point_store(), [(2, 1)], {"agg_mode": "mean"})


def test_changing_a_field_emits_its_event():
    options = BuildOptions()
    seen: list[tuple[str, object]] = []
    options.events.agg_mode.connect(lambda value: seen.append(("agg_mode", value)))
    options.events.chunk_scale.connect(lambda value: seen.append(("chunk_scale", value)))
    options.agg_mode = "mode"
    options.agg_mode = "mode"  # unchanged: no event
    options.chunk_scale = 1
    assert seen == [("agg_mode", "mode"), ("chunk_scale", 1)]
    group: list[str] = []
    options.events.connect(lambda info: group.append(info.signal.name))
    options.sparsity_seed = 7
    assert group == ["sparsity_seed"]


def test_options_build_the_same_valid_store_as_keywords(point_store):
    by_keyword, by_options = point_store("keywords.zv"), point_store("options.zv")
    factors = [(2, 1), (2, 1)]
    kw = pyramid.build_pyramid(by_keyword, factors, agg_mode="mean", agg_overrides={"label": "mode"}, sparsity_seed=1)
    options = BuildOptions(agg_mode="mean", agg_overrides={"label": "mode"}, sparsity_seed=1)
    opt = pyramid.build_pyramid(by_options, factors, options)
    for path in (by_keyword, by_options):
        assert zv.open(str(path)).validate().errors == []
        assert set(store.vertex_attribute_names(path, 2)) >= {"intensity", "label"}
    assert [r["vertices"] for r in kw["levels"]] == [r["vertices"] for r in opt["levels"]]
    for level in (1, 2):
        _, a = store.read_rows(by_keyword, level, ["intensity", "label"])
        _, b = store.read_rows(by_options, level, ["intensity", "label"])
        for name in ("intensity", "label"):
            np.testing.assert_array_equal(a[name], b[name])


def test_coarsen_level_takes_options(point_store):
    path = point_store()
    pyramid.coarsen_level(path, 0, 1, options=BuildOptions(agg_mode="max", cross_level_storage="implicit"))
    assert store.list_levels(path) == [0, 1]
    assert zv.open(str(path)).validate().errors == []
