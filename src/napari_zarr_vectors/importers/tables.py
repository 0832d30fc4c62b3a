"""Point tables (CSV, TSV, Parquet) read with pyarrow in record batches: columns given roles, text kept as codes.

A table becomes level 0 of a point store: its position columns (x, y and
perhaps z, in store axis order) and its other columns as vertex
attributes. Columns are found by a vendor preset (10x Xenium, Vizgen
MERSCOPE, NanoString CosMx), by the generic names ``x``/``y``/``z``, or
as the caller names them. Text columns are dictionary-encoded batch by
batch (an integer code per row plus one table of distinct values), so no
per-row string is ever held. Rows whose coordinates are NaN, infinite or
missing are dropped and counted.

pyarrow is optional (the ``import`` extra) and imported only when a table is read.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import store

#: File endings read as point tables, and the format each is.
TABLE_SUFFIXES: dict[str, str] = {
    ".csv": "csv",
    ".csv.gz": "csv",
    ".tsv": "tsv",
    ".tsv.gz": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
#: Rows per Parquet record batch, and bytes per CSV block: memory per batch stays small whatever the file.
BATCH_ROWS = 1 << 20
CSV_BLOCK_BYTES = 16 << 20
#: A text column with more distinct values than this (an id per row) is not kept: its table would not fit
#: a store's metadata, and `mode` over it says nothing.
MAX_TEXT_CATEGORIES = 65_536
#: The extra that brings pyarrow.
EXTRA = "import"
PYARROW_MISSING = (
    "Reading CSV, TSV and Parquet tables needs pyarrow, which is not installed. "
    f'Install it with: pip install "napari-zarr-vectors[{EXTRA}]"'
)
#: A leading unnamed column is a saved pandas index (MERSCOPE's detected_transcripts.csv has one).
_INDEX_NAMES = ("", "Unnamed: 0")

ProgressFn = Callable[[int, int | None], None]
CancelFn = Callable[[], bool]


class ImportFailed(store.StoreError):
    """A file could not be imported; the message names the file, what is wrong and what to do. Nothing was written."""


class RowsDropped(UserWarning):
    """Rows of an imported table had NaN, infinite or missing coordinates and were left out (counted in the message)."""


class ColumnsSkipped(UserWarning):
    """Columns of an imported table could not be kept as attributes (the message names them and why)."""


class ImportCancelled(Exception):
    """The import was cancelled while the table was read; nothing was written."""


@dataclass(frozen=True)
class Preset:
    """A vendor's table: the columns that identify it, its position columns and what its other columns are."""

    name: str
    position: tuple[str, str, str | None]
    identify: tuple[str, ...]
    #: columns never kept unless asked for (an id per row)
    ignored: tuple[str, ...] = ()
    #: integer columns that are labels (cell ids, fields of view): aggregated with `mode`, never averaged
    labels: tuple[str, ...] = ()


PRESETS: tuple[Preset, ...] = (
    Preset(
        "10x Xenium transcripts",
        ("x_location", "y_location", "z_location"),
        identify=("x_location", "y_location", "feature_name"),
        ignored=("transcript_id",),
        labels=("cell_id", "overlaps_nucleus", "codeword_index"),
    ),
    Preset(
        "Vizgen MERSCOPE detected transcripts",
        ("global_x", "global_y", "global_z"),
        identify=("global_x", "global_y", "gene"),
        labels=("barcode_id", "fov", "cell_id"),
    ),
    Preset(
        "NanoString CosMx transcripts",
        ("x_global_px", "y_global_px", "z"),
        identify=("x_global_px", "y_global_px", "target"),
        labels=("fov", "cell_ID", "cellID", "cell_id"),
    ),
)
GENERIC = "generic x/y/z columns"
GIVEN = "columns given"


@dataclass(frozen=True)
class TablePlan:
    """What a table's columns become: which are positions (store axis order x, y[, z]), which attributes."""

    source: str
    format: str
    preset: str
    columns: tuple[str, ...]
    position: tuple[str, ...]
    attributes: tuple[str, ...]
    labels: tuple[str, ...] = ()
    explicit_attributes: bool = False


@dataclass
class Table:
    """A table read into level-0 arrays: positions, attributes (text as codes), each text column's categories."""

    plan: TablePlan
    positions: np.ndarray
    attributes: dict[str, np.ndarray]
    categories: dict[str, tuple[str, ...]]
    rows_read: int
    rows_dropped: int
    #: attribute columns left out, each with why
    skipped: dict[str, str] = field(default_factory=dict)


def table_format(source: str | os.PathLike[str]) -> str:
    """``csv``, ``tsv`` or ``parquet`` from the file's ending; ImportFailed listing the supported endings."""
    name = Path(source).name.lower()
    for suffix, fmt in sorted(TABLE_SUFFIXES.items(), key=lambda kv: -len(kv[0])):
        if name.endswith(suffix):
            return fmt
    raise ImportFailed(
        f"Cannot import '{source}': its type ('{Path(source).suffix or 'no extension'}') is not one this plugin "
        f"imports. Supported: {', '.join(TABLE_SUFFIXES)} (point tables). Nothing was written."
    )


def _pyarrow() -> Any:
    try:
        import pyarrow
    except ImportError:
        raise ImportFailed(PYARROW_MISSING) from None
    return pyarrow


def _find(columns: Sequence[str], wanted: str) -> str | None:
    """``wanted`` among ``columns``: exactly, else ignoring case."""
    if wanted in columns:
        return wanted
    folded = [c for c in columns if c.lower() == wanted.lower()]
    return folded[0] if len(folded) == 1 else None


def plan_columns(
    source: str,
    fmt: str,
    columns: Sequence[str],
    *,
    x: str | None = None,
    y: str | None = None,
    z: str | None = None,
    attributes: Sequence[str] | None = None,
) -> TablePlan:
    """Give each column its role: the caller's names first, then a vendor preset, then generic x/y/z.

    Raises ImportFailed naming the columns found and the options to use
    when no position columns are found, or a named column is not there.
    """
    columns = tuple(columns)
    shown = ", ".join(repr(c) for c in columns) or "none"
    for role, name in (("x", x), ("y", y), ("z", z), *(("attributes", a) for a in attributes or ())):
        if name is not None and name not in columns:
            raise ImportFailed(
                f"Cannot import '{source}': it has no column '{name}' (given as {role}: --{role} on the command "
                f"line, {role}= in Python). Its columns are: {shown}. Nothing was written."
            )
    preset = next((p for p in PRESETS if all(c in columns for c in p.identify)), None)
    if x is not None or y is not None:
        if x is None or y is None:
            raise ImportFailed(
                f"Cannot import '{source}': give both position columns, --x and --y (x= and y= in Python), "
                f"and --z for 3D. Its columns are: {shown}. Nothing was written."
            )
        found, name = (x, y, z), GIVEN
    elif preset is not None:
        found, name = (*preset.position[:2], preset.position[2] if preset.position[2] in columns else None), preset.name
        found = (found[0], found[1], z if z is not None else found[2])
    else:
        gx, gy = _find(columns, "x"), _find(columns, "y")
        if gx is None or gy is None:
            raise ImportFailed(
                f"Cannot import '{source}': found no coordinate columns (none named x and y, and no vendor layout: "
                "10x Xenium x_location/y_location, MERSCOPE global_x/global_y, CosMx x_global_px/y_global_px). "
                f"Its columns are: {shown}. Name them with --x COLUMN --y COLUMN [--z COLUMN] "
                "(x=, y=, z= in Python). Nothing was written."
            )
        found, name = (gx, gy, z if z is not None else _find(columns, "z")), GENERIC
    position = tuple(c for c in found if c is not None)
    if len(set(position)) != len(position):
        raise ImportFailed(f"Cannot import '{source}': one column is given two position roles ({position}).")
    if attributes is not None:
        kept = tuple(a for a in dict.fromkeys(attributes) if a not in position)
    else:
        ignored = set(_INDEX_NAMES) | set(preset.ignored if preset is not None and name == preset.name else ())
        kept = tuple(c for c in columns if c not in position and c not in ignored)
    named = preset.labels if preset is not None else ()
    labels = tuple(c for c in kept if c in named or _LABEL_NAME.search(c))
    return TablePlan(source, fmt, name, columns, position, kept, labels, attributes is not None)


class _Text:
    """One text column's codes, batch by batch, against one growing table of distinct values."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.parts: list[np.ndarray] = []

    def add(self, array: Any, keep: np.ndarray) -> bool:
        """Append ``array``'s codes for the ``keep`` rows; False once the column has too many distinct values."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if not pa.types.is_dictionary(array.type):
            array = pc.dictionary_encode(array)
        values = array.dictionary.to_pylist()
        lookup = np.fromiter(
            (
                self.index.setdefault(v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v), len(self.index))
                for v in values
            ),
            np.int64,
            len(values),
        )
        if len(self.index) > MAX_TEXT_CATEGORIES:
            return False
        indices = pc.fill_null(array.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        codes = np.where(indices >= 0, lookup[np.maximum(indices, 0)] if len(lookup) else -1, -1)
        self.parts.append(codes[keep].astype(np.int32))
        return True

    def finish(self) -> tuple[np.ndarray, tuple[str, ...]]:
        """All codes, renumbered so the table is sorted (as zarr-vectors makes it), and the table."""
        table = np.array(list(self.index), dtype=object)
        order = np.argsort(table.astype(str), kind="stable") if len(table) else np.zeros(0, np.int64)
        renumber = np.empty(len(order) + 1, np.int32)
        renumber[order] = np.arange(len(order), dtype=np.int32)
        renumber[-1] = -1  # index -1: missing stays missing
        codes = np.concatenate(self.parts) if self.parts else np.zeros(0, np.int32)
        self.parts = []
        return renumber[codes], tuple(str(t) for t in table[order])


def _kind(pa: Any, dtype: Any) -> str | None:
    """``number``, ``bool``, ``text`` or None (a type no attribute can hold: lists, structs, times)."""
    t = pa.types
    if t.is_dictionary(dtype):
        return "text" if _kind(pa, dtype.value_type) == "text" else None
    if t.is_integer(dtype) or t.is_floating(dtype):
        return "number"
    if t.is_boolean(dtype):
        return "bool"
    if t.is_string(dtype) or t.is_large_string(dtype) or t.is_binary(dtype) or t.is_large_binary(dtype):
        return "text"
    if hasattr(t, "is_string_view") and (t.is_string_view(dtype) or t.is_binary_view(dtype)):
        return "text"
    return None


def _numbers(array: Any) -> np.ndarray:
    """A numeric Arrow array as numpy; missing values NaN (an integer column with gaps becomes float64)."""
    return array.to_numpy(zero_copy_only=False)


#: Integer columns named so are labels (ids, fields of view), aggregated with `mode` however the table came.
_LABEL_NAME = re.compile(r"(^|_)(id|ids|label|labels|fov|cluster)$|ID$", re.IGNORECASE)
_COLUMN_NO = re.compile(r"In CSV column #(\d+): ")


def _arrow_failure(
    exc: BaseException, plan_source: str, fmt: str, columns: Sequence[str] = (), position: Sequence[str] = ()
) -> ImportFailed:
    """What a pyarrow read error means, as one sentence naming the file and what to do."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    if fmt == "parquet":
        return ImportFailed(
            f"Cannot import '{plan_source}': it is not a complete Parquet file (truncated or damaged: {first}). "
            "Copy or export it again. Nothing was written."
        )
    if "Empty CSV file" in text:
        return ImportFailed(f"Cannot import '{plan_source}': the file is empty. Nothing was written.")
    m = re.search(r"Expected (\d+) columns, got (\d+)", text)
    if m:
        return ImportFailed(
            f"Cannot import '{plan_source}': a row has {m[2]} values where the header has {m[1]} columns; "
            f"the file looks truncated or damaged ({first}). Copy or export it again. Nothing was written."
        )
    m = _COLUMN_NO.search(text)
    if m and "conversion error" in text:
        index = int(m[1])
        name = columns[index] if index < len(columns) else f"#{index}"
        value = re.search(r"invalid value '([^']*)'", text)
        holds = f" but holds {value[1]!r}" if value else ""
        if name in position:
            return ImportFailed(
                f"Cannot import '{plan_source}': position column '{name}' must hold numbers{holds} ({first}). "
                "Fix the value, or give other position columns (--x, --y, --z). Nothing was written."
            )
        return ImportFailed(
            f"Cannot import '{plan_source}': column '{name}' changes type: its first rows read as numbers, a later "
            f"row{holds.replace(' but', '')} ({first}). Fix the value, or leave the column out by naming the ones "
            "to keep with --attributes (attributes= in Python). Nothing was written."
        )
    return ImportFailed(f"Cannot import '{plan_source}': the table cannot be read ({first}). Nothing was written.")


def _open(pa: Any, source: Path, fmt: str) -> tuple[tuple[str, ...], int | None, Any]:
    """The table's columns, its row count when the file says it (Parquet), and a function opening its batches."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(source)
        except (pa.ArrowException, OSError) as exc:
            raise _arrow_failure(exc, str(source), fmt) from None
        columns = tuple(pf.schema_arrow.names)

        def batches(needed: Sequence[str], types: dict[str, Any]) -> Any:
            schema = pf.schema_arrow
            for name in needed:
                if name in types and _kind(pa, schema.field(name).type) != types[name]:
                    raise ImportFailed(
                        f"Cannot import '{source}': column '{name}' holds {schema.field(name).type}, not numbers; "
                        "positions must be numbers. Give other position columns (--x, --y, --z). Nothing was written."
                    )
            return pf.iter_batches(batch_size=BATCH_ROWS, columns=list(needed))

        return columns, int(pf.metadata.num_rows), batches
    import pyarrow.csv as pcsv

    read = pcsv.ReadOptions(block_size=CSV_BLOCK_BYTES)
    parse = pcsv.ParseOptions(delimiter="\t" if fmt == "tsv" else ",")
    try:
        columns = tuple(pcsv.open_csv(source, read_options=read, parse_options=parse).schema.names)
    except (pa.ArrowException, OSError) as exc:
        raise _arrow_failure(exc, str(source), fmt) from None

    def batches(needed: Sequence[str], types: dict[str, Any]) -> Any:
        convert = pcsv.ConvertOptions(
            include_columns=list(needed), column_types={n: pa.float64() for n, k in types.items() if k == "number"}
        )
        return pcsv.open_csv(source, read_options=read, parse_options=parse, convert_options=convert)

    return columns, None, batches


def read_table(
    source: str | os.PathLike[str],
    *,
    x: str | None = None,
    y: str | None = None,
    z: str | None = None,
    attributes: Sequence[str] | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> Table:
    """Read a point table into level-0 arrays, in record batches.

    Raises ImportFailed (the file is missing, empty, truncated, of an
    unknown type, has no position columns or columns of the wrong type),
    ImportCancelled when ``cancel()`` returns True between batches.
    Rows with NaN, infinite or missing coordinates are dropped; the
    caller warns with ``Table.rows_dropped``.
    """
    import warnings

    path = Path(source)
    fmt = table_format(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise ImportFailed(f"Cannot import '{source}': it {what}. Nothing was written.")
    if path.stat().st_size == 0:
        raise ImportFailed(f"Cannot import '{source}': the file is empty. Nothing was written.")
    pa = _pyarrow()
    columns, total, open_batches = _open(pa, path, fmt)
    plan = plan_columns(str(source), fmt, columns, x=x, y=y, z=z, attributes=attributes)
    needed = [*plan.position, *plan.attributes]
    reader = None

    pos_parts: list[np.ndarray] = []
    numbers: dict[str, list[np.ndarray]] = {}
    texts: dict[str, _Text] = {}
    skipped: dict[str, str] = {}
    rows_read = dropped = 0
    all_float32 = True
    try:
        reader = open_batches(needed, {c: "number" for c in plan.position})
        for batch in reader:
            if cancel is not None and cancel():
                raise ImportCancelled(f"The import of '{source}' was cancelled; nothing was written.")
            coords = [batch.column(name) for name in plan.position]
            for name, col in zip(plan.position, coords, strict=True):
                if _kind(pa, col.type) != "number":
                    raise ImportFailed(
                        f"Cannot import '{source}': column '{name}' holds {col.type}, not numbers; positions must be "
                        "numbers. Give other position columns (--x, --y, --z). Nothing was written."
                    )
                all_float32 &= pa.types.is_float32(col.type)
            block = np.column_stack([_numbers(c).astype(np.float64, copy=False) for c in coords])
            keep = np.isfinite(block).all(axis=1)
            rows_read += len(block)
            dropped += int(len(block) - keep.sum())
            pos_parts.append(block[keep].astype(np.float32) if all_float32 else block[keep])
            for name in plan.attributes:
                if name in skipped:
                    continue
                col = batch.column(name)
                kind = _kind(pa, col.type)
                if kind == "text":
                    if not texts.setdefault(name, _Text()).add(col, keep):
                        texts.pop(name)
                        skipped[name] = f"more than {MAX_TEXT_CATEGORIES:,} distinct values (an id per row?)"
                elif kind in ("number", "bool"):
                    values = _numbers(col)[keep]
                    numbers.setdefault(name, []).append(values.astype(np.uint8) if kind == "bool" else values)
                else:
                    numbers.pop(name, None)
                    texts.pop(name, None)
                    what = "no values in its first rows" if pa.types.is_null(col.type) else f"its type ({col.type})"
                    skipped[name] = f"{what}: neither numbers nor text"
            if progress is not None:
                progress(rows_read, total)
    except (pa.ArrowException, OSError) as exc:
        raise _arrow_failure(exc, str(source), fmt, needed, plan.position) from None
    finally:
        if reader is not None and hasattr(reader, "close"):
            reader.close()
    if plan.explicit_attributes and skipped:
        name, why = next(iter(skipped.items()))
        raise ImportFailed(
            f"Cannot import '{source}': attribute column '{name}' cannot be kept: {why}. Leave it out of "
            "--attributes (attributes= in Python). Nothing was written."
        )
    if rows_read == 0:
        raise ImportFailed(f"Cannot import '{source}': the table has no rows (only a header). Nothing was written.")
    if rows_read == dropped:
        raise ImportFailed(
            f"Cannot import '{source}': every one of its {rows_read:,} rows has NaN, infinite or missing coordinates "
            f"in {', '.join(plan.position)}. Nothing was written."
        )
    if dropped:
        warnings.warn(
            RowsDropped(
                f"{dropped:,} of {rows_read:,} rows of '{source}' have NaN, infinite or missing coordinates "
                f"({', '.join(plan.position)}); they were left out and {rows_read - dropped:,} imported."
            ),
            stacklevel=3,
        )
    if skipped:
        warnings.warn(
            ColumnsSkipped(
                f"Columns of '{source}' not kept: "
                + "; ".join(f"'{name}' ({why})" for name, why in skipped.items())
                + ". Every other column was imported."
            ),
            stacklevel=3,
        )
    positions = np.concatenate(pos_parts) if all_float32 else np.concatenate(pos_parts).astype(np.float64)
    pos_parts.clear()
    out: dict[str, np.ndarray] = {}
    categories: dict[str, tuple[str, ...]] = {}
    for name in plan.attributes:  # in the table's order
        if name in numbers:
            out[name] = np.concatenate(numbers.pop(name))
        elif name in texts:
            out[name], categories[name] = texts.pop(name).finish()
    plan = TablePlan(
        plan.source,
        plan.format,
        plan.preset,
        plan.columns,
        plan.position,
        tuple(out),
        tuple(c for c in plan.labels if c in out and out[c].dtype.kind in "iu"),
        plan.explicit_attributes,
    )
    return Table(plan, positions, out, categories, rows_read, dropped, skipped)
