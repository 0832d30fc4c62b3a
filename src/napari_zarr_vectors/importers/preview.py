"""What an import of a file would do, read cheaply before it runs: the Import dock shows it.

``preview_table`` reads a point table's schema and first rows (never the
whole file), gives each column its role as ``import_file`` would
(``plan_columns``), and, for Parquet, the row count and the extent from
the file's own column statistics. No Qt here.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .tables import ImportFailed, TablePlan, _arrow_failure, _open, _pyarrow, plan_columns, table_format

#: Rows a preview shows.
PREVIEW_ROWS = 8
#: Longest a preview cell's text is shown.
CELL_CHARS = 24

POSITION, ATTRIBUTE, IGNORED = "position", "attribute", "ignored"


@dataclass(frozen=True)
class TablePreview:
    """A table's columns with their roles, its first rows as text, and what its metadata says of its size."""

    plan: TablePlan
    roles: dict[str, str]
    head: dict[str, list[str]]
    rows: int | None
    extent: tuple[np.ndarray, np.ndarray] | None

    def describe(self) -> str:
        """One or two lines: the format, the preset, the positions and how many rows (when known)."""
        plan = self.plan
        rows = f"{self.rows:,} rows" if self.rows is not None else "rows counted while importing (CSV has no count)"
        text = f"{plan.format.upper()} point table ({plan.preset}); positions {', '.join(plan.position)}; {rows}"
        if self.extent is not None:
            lo, hi = self.extent
            size = " x ".join(f"{h - lo_:.4g}" for lo_, h in zip(lo, hi, strict=True))
            text += f"; extent {size}"
        return text + "."


def _cell(value: Any) -> str:
    text = "" if value is None else f"{value:.6g}" if isinstance(value, float) else str(value)
    return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…"


def _parquet_extent(source: Path, position: Sequence[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """Each position column's min and max from the row groups' statistics, or None when a group lacks them."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(source).metadata
    names = [meta.schema.column(i).path for i in range(meta.num_columns)]
    lo = np.full(len(position), np.inf)
    hi = np.full(len(position), -np.inf)
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for k, name in enumerate(position):
            if name not in names:
                return None
            stats = group.column(names.index(name)).statistics
            if stats is None or not stats.has_min_max:
                return None
            try:
                lo[k], hi[k] = min(lo[k], float(stats.min)), max(hi[k], float(stats.max))
            except (TypeError, ValueError):
                return None
    return (lo, hi) if np.isfinite(lo).all() and np.isfinite(hi).all() else None


def table_columns(source: str | os.PathLike[str]) -> tuple[str, ...]:
    """A table's column names, from its schema or header alone; ImportFailed when it cannot be read."""
    path = Path(source)
    fmt = table_format(path)
    if not path.is_file() or path.stat().st_size == 0:
        raise ImportFailed(f"Cannot import '{source}': it is not a file with a table in it.")
    columns, _, _ = _open(_pyarrow(), path, fmt)
    return columns


def preview_table(
    source: str | os.PathLike[str],
    *,
    x: str | None = None,
    y: str | None = None,
    z: str | None = None,
    attributes: Sequence[str] | None = None,
    rows: int = PREVIEW_ROWS,
) -> TablePreview:
    """The roles ``import_file`` would give a table's columns, and its first ``rows`` rows as text.

    Reads the schema and the first record batch only. Raises ImportFailed
    as ``import_file`` would (no position columns, a named column missing,
    an unreadable, empty or missing file, an unknown type).
    """
    path = Path(source)
    fmt = table_format(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise ImportFailed(f"Cannot import '{source}': it {what}.")
    if path.stat().st_size == 0:
        raise ImportFailed(f"Cannot import '{source}': the file is empty.")
    pa = _pyarrow()
    columns, total, open_batches = _open(pa, path, fmt)
    plan = plan_columns(str(source), fmt, columns, x=x, y=y, z=z, attributes=attributes)
    roles = {c: POSITION if c in plan.position else ATTRIBUTE if c in plan.attributes else IGNORED for c in columns}
    head: dict[str, list[str]] = {c: [] for c in columns}
    reader = None
    try:
        reader = open_batches(list(columns), {})
        for batch in itertools.islice(reader, 1):
            for name in columns:
                head[name] = [_cell(v) for v in batch.column(name).slice(0, rows).to_pylist()]
    except (pa.ArrowException, OSError) as exc:
        raise _arrow_failure(exc, str(source), fmt) from None
    finally:
        if reader is not None and hasattr(reader, "close"):
            reader.close()
    extent = None
    if fmt == "parquet":
        try:
            extent = _parquet_extent(path, plan.position)
        except (pa.ArrowException, OSError):  # statistics are a bonus; the import reads the file itself
            extent = None
    return TablePreview(plan, roles, head, total, extent)


__all__ = ["ATTRIBUTE", "IGNORED", "POSITION", "PREVIEW_ROWS", "TablePreview", "preview_table", "table_columns"]
