"""aggregate.reduce against a per-group Python loop, on random data."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from napari_zarr_vectors import aggregate


def brute(groups, values, n, mode):
    out = []
    for g in range(n):
        v = values[groups == g]
        if values.dtype.kind == "f":
            v = v[~np.isnan(v)]
        if mode == "count":
            out.append(len(v))
        elif mode == "sum":
            out.append(v.astype(np.float64).sum())  # the sum of nothing is 0
        elif len(v) == 0:
            out.append(np.nan if values.dtype.kind == "f" or mode == "mean" else 0)
        elif mode == "mean":
            out.append(v.astype(np.float64).mean())
        elif mode == "min":
            out.append(v.min())
        elif mode == "max":
            out.append(v.max())
        else:
            vals, counts = np.unique(v, return_counts=True)
            out.append(vals[np.argmax(counts)])  # np.unique sorts: ties go to the smallest
    return np.asarray(out, dtype=np.float64)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 12),
    st.data(),
    st.sampled_from(aggregate.AGG_MODES),
    st.sampled_from(["float32", "int32"]),
)
def test_reduce_matches_brute_force(n, data, mode, dtype):
    size = data.draw(st.integers(0, 200))
    groups = data.draw(hnp.arrays(np.int64, size, elements=st.integers(-1, n - 1)))
    if dtype == "int32":
        values = data.draw(hnp.arrays(np.int32, size, elements=st.integers(-5, 5)))
    else:
        values = data.draw(
            hnp.arrays(np.float32, size, elements=st.floats(-100, 100, width=32) | st.just(np.float32(np.nan)))
        )
    got = aggregate.reduce(groups, values, n, mode).astype(np.float64)
    want = brute(groups, values, n, mode)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4, equal_nan=True)


def test_dtypes_follow_the_mode():
    g = np.array([0, 0, 1])
    f = np.array([1.0, 2.0, 3.0], np.float32)
    i = np.array([1, 1, 2], np.int32)
    assert aggregate.reduce(g, f, 2, "mean").dtype == np.float32
    assert aggregate.reduce(g, i, 2, "mode").dtype == np.int32
    assert aggregate.reduce(g, i, 2, "sum").dtype == np.int64
    assert aggregate.reduce(g, f, 2, "count").tolist() == [2, 1]


def test_unknown_mode_and_bad_groups_are_refused():
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate.reduce([0], [1.0], 1, "median")
    with pytest.raises(ValueError, match="out of range"):
        aggregate.reduce([3], [1.0], 2, "sum")


def test_compose_chains_maps_and_keeps_missing():
    a = np.array([0, 0, 1, -1])  # level 0 -> 1
    b = np.array([1, -1])  # level 1 -> 2
    one, two = aggregate.compose([a, b])
    assert one.tolist() == [0, 0, 1, -1]
    assert two.tolist() == [1, 1, -1, -1]
