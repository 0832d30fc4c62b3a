"""Integrity checks on read: link rows, fragment tables and vertex dtypes against the level they belong to.

A store's chunks say things about each other: a link record names a row
of a chunk at another level, a fragment table names rows of its chunk's
vertex buffer, the vertex array's ``dtype`` says how many bytes a vertex
takes, and the level's metadata how many vertices it has.  When one of
them is damaged (a bad disk, a tool that wrote it wrong, an edit by hand)
upstream reads past the data or invents it: parents at NaN positions,
polylines short of vertices, or coordinates from the wrong bytes.

The readers (``links``, ``rows``, ``read``, ``polyline_box``) check
what they are about to use here, with whole-array numpy reductions over
what they read anyway: no extra read.  A violation is a ``StoreError``
naming the array, the chunk and what to run.  Damage is never called
missing: a file that is gone is reported as missing on disk elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .access import shown
from .errors import StoreError
from .remote import is_url


def advice(path: Any, level: int) -> str:
    """What to do about damaged data at ``level`` (level 0 is the data itself: nothing rebuilds it)."""
    if is_url(str(path)):
        return "The copy on the server is damaged: ask whoever publishes it to repair or upload it again."
    if level == 0:
        return "Level 0 holds the data itself: restore the store from a copy, or import the data again."
    return (
        f"Run `napari-zarr-vectors repair {shown(path)}` to find and remove damaged levels and links; if it "
        f"reports nothing, remove the levels down to level {level} (`napari-zarr-vectors remove STORE LEVEL`, "
        "coarsest first) and build them again."
    )


def damaged(path: Any, level: int, what: str) -> StoreError:
    """The error for data that is present but inconsistent: ``what`` says which array and how."""
    return StoreError(f"Store '{shown(path)}': {what}. The data is damaged, not missing. {advice(path, level)}")


def _chunk(chunk: Sequence[int]) -> str:
    return f"({', '.join(str(int(c)) for c in chunk)})"


def vertex_dtype(path: Any, level: int, declared: Any) -> np.dtype:
    """The dtype a level's ``vertices`` array declares, if it is one positions can have (real numbers)."""
    try:
        dtype = np.dtype(declared if declared is not None else "float32")
    except (TypeError, ValueError):
        dtype = None
    if dtype is None or dtype.kind not in "fiu" or dtype.itemsize > 8:
        raise damaged(
            path,
            level,
            f"{level}/vertices/zarr.json declares the vertices' dtype as {declared!r}, which positions cannot have "
            "(they are real numbers: float32, float64 or an integer type)",
        )
    return dtype


def _dtype_hint(rows: int, expected: int, dtype: np.dtype) -> str:
    """Why the row counts may differ: the declared dtype, when another width would make them agree."""
    if rows <= 0 or expected <= 0 or rows == expected:
        return ""
    width = dtype.itemsize * rows / expected  # the bytes a vertex coordinate would take for the counts to agree
    if width in (2, 4, 8) and width != dtype.itemsize:
        guess = {2: "float16", 4: "float32", 8: "float64"}[int(width)]
        return f" (read as {guess} instead of the declared {dtype}, the counts agree: the declared dtype is wrong)"
    return ""


def check_level_rows(path: Any, level: int, rows: int, listed: int | None, dtype: np.dtype) -> None:
    """The rows a level's vertex chunks hold (sized with the declared dtype) against its metadata's count."""
    if listed is None or int(rows) == int(listed):
        return
    raise damaged(
        path,
        level,
        f"level {level}'s vertex chunks hold {int(rows):,} vertices as {dtype} (the dtype "
        f"{level}/vertices/zarr.json declares), but its metadata lists {int(listed):,}"
        + _dtype_hint(int(rows), int(listed), dtype),
    )


def check_fragments(path: Any, level: int, chunk: Sequence[int], fi: Any, rows: int, dtype: Any = None) -> None:
    """A chunk's fragment table (``ChunkFragmentIndex``) against its vertex buffer of ``rows`` rows.

    Every range must start at 0 or later and end at ``rows`` or before,
    every explicit row must be one of the buffer's, and the rows the
    table spans must be the buffer's: a table that spans fewer or more
    means the buffer was read with the wrong dtype or one of them is
    damaged.  Two min/max reductions over the table.
    """
    table = fi._range_table
    explicit = fi._csr_indices
    extent = 0
    if table.size:
        starts, counts = table[:, 0], table[:, 1]
        if starts.min() < 0 or counts.min() < 0 or (counts > rows - starts).any():
            bad = np.flatnonzero((starts < 0) | (counts < 0) | (counts > rows - starts))
            i = int(bad[0])
            raise damaged(
                path,
                level,
                f"{level}/vertex_fragments chunk {_chunk(chunk)}: fragment range {i} is rows {int(starts[i]):,} to "
                f"{int(starts[i]) + int(counts[i]):,} (start {int(starts[i]):,}, count {int(counts[i]):,}), but "
                f"the chunk's vertices/ buffer has {rows:,} rows"
                + (f" and {len(bad) - 1:,} more ranges are out of bounds" if len(bad) > 1 else ""),
            )
        extent = int((starts + counts).max())
    if explicit.size:
        low, high = int(explicit.min()), int(explicit.max())
        if low < 0 or high >= rows:
            raise damaged(
                path,
                level,
                f"{level}/vertex_fragments chunk {_chunk(chunk)}: an explicit fragment names row "
                f"{low if low < 0 else high:,} of a chunk of {rows:,} rows",
            )
        extent = max(extent, high + 1)
    if fi.num_fragments and extent != rows:
        hint = _dtype_hint(rows, extent, np.dtype(dtype)) if dtype is not None else ""
        raise damaged(
            path,
            level,
            f"{level}/vertex_fragments chunk {_chunk(chunk)} spans {extent:,} vertex rows, but the chunk's "
            f"vertices/ buffer holds {rows:,}{hint}",
        )


def check_link_rows(
    path: Any,
    level: int,
    array: str,
    cell: Sequence[int],
    rows: np.ndarray,
    bounds: Sequence[tuple[int, int | None]],
) -> None:
    """One link cell's records (``(M, width)`` rows) against the levels they name (``level``: where they are stored).

    ``bounds[k]`` is ``(level, rows)`` for endpoint ``k``: each row must
    be at least 0 and below ``rows`` (the level's vertex count; None: not
    known, only the sign is checked).  A row past its chunk but within
    its level is caught where the chunk is read (``check_link_targets``).
    """
    if not len(rows):
        return
    for k, (target, total) in enumerate(bounds):
        column = rows[:, k]
        bad = (column < 0) if total is None else (column < 0) | (column >= total)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            of = "" if total is None else f", which has {int(total):,} rows"
            raise damaged(
                path,
                max(level, *(lv for lv, _ in bounds)),
                f"{level}/{array} cell {_chunk(cell)} record {i} points at row {int(column[i]):,} of level "
                f"{target}{of}",
            )


def check_link_targets(
    path: Any, level: int, what: str, target: int, keys: np.ndarray, sizes: dict[tuple[int, ...], int]
) -> None:
    """Vertices that links name (``(N, D + 1)`` keys at level ``target``) against their chunks' sizes.

    ``sizes`` maps each chunk the level has to its rows (a chunk absent
    from it does not exist at that level).  ``level`` is the coarser level
    of the two the links join: building it again rewrites them.
    """
    if not len(keys):
        return
    n = np.asarray([sizes.get(tuple(int(c) for c in k[:-1]), -1) for k in keys], np.int64)
    bad = np.flatnonzero((keys[:, -1] < 0) | (keys[:, -1] >= n))
    if len(bad):
        i = int(bad[0])
        chunk, row = keys[i, :-1], int(keys[i, -1])
        place = (
            f"chunk {_chunk(chunk)} of level {target}, which has {int(n[i]):,} rows"
            if n[i] >= 0
            else f"chunk {_chunk(chunk)} of level {target}, which has no such chunk"
        )
        more = f" ({len(bad) - 1:,} more records too)" if len(bad) > 1 else ""
        raise damaged(path, level, f"{what} points at row {row:,} of {place}{more}")


def check_in_bounds(path: Any, level: int, positions: np.ndarray, lo: np.ndarray, hi: np.ndarray, dtype: Any) -> None:
    """Positions read from a level against the store's bounds widened by one of the level's chunks.

    Every vertex of a level lies in the data's bounds or, at a coarse
    level, in a chunk that meets them; a vertex elsewhere (or NaN) was read
    from the wrong bytes: a wrong declared dtype, or a damaged buffer.
    One vectorised comparison over what was read.
    """
    pos = np.asarray(positions)
    if not pos.size:
        return
    inside = (pos >= lo) & (pos <= hi)
    if inside.all():
        return
    i = int(np.flatnonzero(~inside.all(axis=1))[0])
    where = tuple(float(v) for v in np.asarray(pos[i], np.float64))
    raise damaged(
        path,
        level,
        f"level {level}'s vertices, read as {np.dtype(dtype)} (the dtype {level}/vertices/zarr.json declares), "
        f"include {where}, outside the store's bounds (widened by one chunk: {np.round(lo, 3).tolist()} to "
        f"{np.round(hi, 3).tolist()}); the declared dtype or the vertex chunks are wrong",
    )
