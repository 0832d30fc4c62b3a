"""Group-by reductions in whole-array numpy: mean, sum, count, min, max, mode.

Used to give coarse pyramid levels the attributes of the level-0
vertices they stand for. ``groups[i]`` names the coarse vertex that fine
value ``i`` belongs to (-1: none); every function returns one value per
coarse vertex. No Python loop runs per vertex or per group.
"""

from __future__ import annotations

import numpy as np

AGG_MODES = ("mean", "sum", "mode", "count", "min", "max")


def _check(groups: np.ndarray, values: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    groups = np.asarray(groups, dtype=np.int64)
    values = np.asarray(values)
    if groups.shape[0] != values.shape[0]:
        raise ValueError(f"{len(groups)} group labels for {len(values)} values")
    if len(groups) and groups.max(initial=-1) >= n_groups:
        raise ValueError(f"group label {groups.max()} out of range for {n_groups} groups")
    keep = groups >= 0
    if values.dtype.kind == "f":
        keep &= ~np.isnan(values) if values.ndim == 1 else ~np.isnan(values).any(axis=1)
    return groups[keep], values[keep]


def _fill(dtype: np.dtype) -> float | int:
    return np.nan if dtype.kind == "f" else 0


def reduce(groups: np.ndarray, values: np.ndarray, n_groups: int, mode: str) -> np.ndarray:
    """Reduce ``values`` per group with ``mode``; empty groups get NaN (floats) or 0.

    Text values (str or object) take ``mode`` only (a ValueError for any
    other); their empty groups get None.

    Output dtypes: mean -> float (float32 input stays float32), sum -> float64
    or int64, count -> int64, min/max/mode -> the input dtype.
    """
    if mode not in AGG_MODES:
        raise ValueError(f"unknown aggregation {mode!r}; choose one of {', '.join(AGG_MODES)}")
    values = np.asarray(values)
    if values.dtype.kind in "USO":
        return _reduce_text(groups, values, n_groups, mode)
    if values.ndim == 2:
        return np.stack([reduce(groups, values[:, c], n_groups, mode) for c in range(values.shape[1])], axis=1)
    g, v = _check(groups, values, n_groups)
    counts = np.bincount(g, minlength=n_groups)
    if mode == "count":
        return counts.astype(np.int64)
    if mode in ("sum", "mean"):
        sums = np.bincount(g, weights=v.astype(np.float64), minlength=n_groups)
        if mode == "sum":
            return sums.astype(np.int64) if v.dtype.kind in "iub" else sums
        out_dtype = np.float32 if v.dtype == np.float32 else np.float64
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan).astype(out_dtype)
    out = np.full(n_groups, _fill(v.dtype), dtype=v.dtype if v.dtype.kind in "fiub" else np.float64)
    if not len(g):
        return out
    if mode in ("min", "max"):
        order = np.argsort(g, kind="stable")
        gs, vs = g[order], v[order]
        starts = np.flatnonzero(np.r_[True, gs[1:] != gs[:-1]])
        fn = np.minimum if mode == "min" else np.maximum
        out[gs[starts]] = fn.reduceat(vs, starts)
        return out
    # mode: most frequent value per group, ties to the smallest value
    order = np.lexsort((v, g))
    gs, vs = g[order], v[order]
    run_start = np.flatnonzero(np.r_[True, (gs[1:] != gs[:-1]) | (vs[1:] != vs[:-1])])
    run_len = np.diff(np.r_[run_start, len(gs)])
    run_group, run_value = gs[run_start], vs[run_start]
    # within each group, the longest run; lexsort puts ties' smaller values first
    best = np.lexsort((-run_len, run_group))
    first = np.flatnonzero(np.r_[True, run_group[best][1:] != run_group[best][:-1]])
    out[run_group[best][first]] = run_value[best][first]
    return out


def _reduce_text(groups: np.ndarray, values: np.ndarray, n_groups: int, mode: str) -> np.ndarray:
    if mode != "mode":
        raise ValueError(f"aggregation {mode!r} does not apply to text values; only 'mode' does")
    if values.ndim != 1:
        raise ValueError(f"text values must be one per row, got shape {values.shape}")
    missing = np.fromiter((v is None for v in values), bool, len(values)) if values.dtype.kind == "O" else None
    text = values.astype(str)
    uniques, codes = np.unique(text, return_inverse=True)
    codes = codes.reshape(-1).astype(np.int64)
    if missing is not None:
        codes[missing] = -1
    best = mode_codes(groups, codes, n_groups)
    out = np.empty(n_groups, dtype=object)
    out[:] = None
    out[best >= 0] = uniques[best[best >= 0]]
    return out


def mode_codes(groups: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """The most frequent code per group (ties to the smallest), ignoring codes < 0 (missing); -1 for none.

    How text attributes are aggregated: on their dictionary codes, whose
    order is the categories' sorted order, so a tie goes to the first text.
    """
    groups = np.asarray(groups, dtype=np.int64)
    codes = np.asarray(codes, dtype=np.int64)
    if groups.shape != codes.shape:
        raise ValueError(f"{len(groups)} group labels for {len(codes)} codes")
    if len(groups) and groups.max(initial=-1) >= n_groups:
        raise ValueError(f"group label {groups.max()} out of range for {n_groups} groups")
    keep = (codes >= 0) & (groups >= 0)
    g, c = groups[keep], codes[keep]
    out = np.full(n_groups, -1, np.int64)
    if not len(g):
        return out
    width = int(c.max()) + 1
    if n_groups * width >= 2**62:  # one packed key per (group, code) would overflow: the general path
        best = reduce(g, c, n_groups, "mode")
        present = np.bincount(g, minlength=n_groups) > 0
        return np.where(present, best, -1)
    # one sort of packed (group, code) keys, then linear passes: several times faster than a two-key lexsort
    keys, counts = np.unique(g * width + c, return_counts=True)  # sorted: by group, then code
    run_group, run_code = keys // width, keys % width
    starts = np.flatnonzero(np.r_[True, run_group[1:] != run_group[:-1]])
    top = np.repeat(np.maximum.reduceat(counts, starts), np.diff(np.r_[starts, len(keys)]))
    hits = np.flatnonzero(counts == top)  # runs as frequent as their group's most frequent
    first = hits[np.r_[True, run_group[hits][1:] != run_group[hits][:-1]]]  # the smallest such code per group
    out[run_group[first]] = run_code[first]
    return out


def compose(parents: list[np.ndarray]) -> list[np.ndarray]:
    """Level-0 -> level-k maps from adjacent parent maps (``parents[k-1]``: level k-1 -> k).

    Returns ``[root_to_1, root_to_2, ...]``; -1 stays -1 (a vertex whose
    object was thinned away has no coarse ancestor).
    """
    out: list[np.ndarray] = []
    current: np.ndarray | None = None
    for parent in parents:
        parent = np.asarray(parent, dtype=np.int64)
        if current is None:
            current = parent.copy()
        else:
            nxt = np.full_like(current, -1)
            ok = current >= 0
            nxt[ok] = parent[current[ok]]
            current = nxt
        out.append(current)
    return out
