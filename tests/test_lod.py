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
