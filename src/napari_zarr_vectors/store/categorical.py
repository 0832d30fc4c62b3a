"""Text (categorical) vertex attributes: zarr-vectors' dictionary encoding, read and written.

zarr-vectors stores a text attribute as integer codes plus a
``categories`` table in the attribute array's metadata
(``encoding: "dictionary"``, ``_FillValue`` marking a missing value;
``zarr_vectors.encoding.categorical``). Its point reader decodes them,
so a level written here reads back as text through ``read_level`` and
through upstream's ``read_points``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import StoreError
from .handle import Handle, handle

#: The code a missing value (None) is stored as, when a column has one.
MISSING_CODE = -1


def is_text(values: Any) -> bool:
    """Whether a column holds text (numpy str, bytes or object), not numbers."""
    return np.asarray(values).dtype.kind in "USO"


def text_attributes(path: str | os.PathLike[str] | Handle, level: int) -> dict[str, tuple[str, ...]]:
    """The level's dictionary-encoded (text) vertex attributes, each with its categories table."""
    h = handle(path)
    return h.memo(("text", int(level)), lambda: _text_attributes(h, level))


def raw_text_attributes(path: str | os.PathLike[str] | Handle, level: int) -> tuple[str, ...]:
    """The level's text vertex attributes stored as plain strings, not dictionary-encoded.

    Upstream's ``write_polylines`` (and other writers) store text so; no
    reader decodes a table for them, so a build cannot keep one per level.
    """
    h = handle(path)
    return h.memo(("raw-text", int(level)), lambda: tuple(n for n, m in _attribute_metas(h, level) if _raw_text(m)))


def _raw_text(meta: dict[str, Any]) -> bool:
    try:
        return np.dtype(meta.get("dtype", "float32")).kind in "USO" and "encoding" not in meta
    except TypeError:
        return False


def _attribute_metas(h: Handle, level: int) -> list[tuple[str, dict[str, Any]]]:
    """Each vertex attribute's array metadata (one whose metadata cannot be read is left to the read that needs it)."""
    from zarr_vectors import building as b

    group = h.level_group(level)
    out = []
    for name in h.attribute_names(level):
        try:
            meta = group.read_array_meta(f"{b.VERTEX_ATTRIBUTES}/{name}") or {}
        except Exception:
            continue
        if isinstance(meta, dict):
            out.append((name, meta))
    return out


def _text_attributes(h: Handle, level: int) -> dict[str, tuple[str, ...]]:
    from zarr_vectors.encoding.categorical import DICTIONARY_ENCODING

    out: dict[str, tuple[str, ...]] = {}
    for name, meta in _attribute_metas(h, level):
        if meta.get("encoding") != DICTIONARY_ENCODING:
            continue
        categories = meta.get("categories")
        if not isinstance(categories, list) or not all(isinstance(c, str | int | float | bool) for c in categories):
            raise StoreError(
                f"Store '{h.path}': text attribute '{name}' of level {level} has a damaged categories table "
                f"(expected a list of values, got {type(categories).__name__}). Run `napari-zarr-vectors repair "
                f"STORE` or write the store again."
            )
        out[name] = tuple(str(c) for c in categories)
    return out


def _code_dtype(n_categories: int, missing: bool) -> np.dtype:
    """The smallest integer type for the codes, signed when a missing code is stored (as upstream picks)."""
    for dtype in (np.int8, np.int16, np.int32) if missing else (np.uint8, np.uint16, np.uint32):
        if n_categories <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int64 if missing else np.uint64)


def _missing(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "O":
        return np.fromiter((v is None for v in values), bool, len(values))
    return np.zeros(len(values), bool)


def text_codes(values: Any, categories: Sequence[str]) -> np.ndarray:
    """Each value's index in ``categories`` (int64; -1 for None); values already codes pass through.

    Raises StoreError naming a value the table does not hold.
    """
    values = np.asarray(values)
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    cats = np.asarray([str(c) for c in categories], dtype=str)
    missing = _missing(values)
    present = values[~missing].astype(str)
    codes = np.full(len(values), MISSING_CODE, np.int64)
    if len(present):
        if not len(cats):
            raise StoreError(f"text value {present[0]!r} is not in the categories table (it is empty).")
        order = np.argsort(cats, kind="stable")
        pos = np.clip(np.searchsorted(cats[order], present), 0, len(cats) - 1)
        found = cats[order][pos] == present
        if not found.all():
            raise StoreError(f"text value {present[~found][0]!r} is not in the categories table.")
        codes[~missing] = order[pos]
    return codes


def encode_text(values: Any, categories: Sequence[str] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Codes and the array metadata zarr-vectors' dictionary encoding records, for a text column.

    ``values`` are text (None: missing) or integer codes into ``categories``
    (-1: missing). With ``categories`` None the table is the sorted distinct
    values, as upstream's ``encode_categorical`` makes it; a coarse level
    passes level 0's table so a value keeps its code (and colour) at every level.
    """
    from zarr_vectors.encoding.categorical import DICTIONARY_ENCODING

    values = np.asarray(values)
    if values.ndim != 1:
        raise StoreError(f"A text attribute must be one value per vertex, got shape {values.shape}.")
    if categories is None:
        if values.dtype.kind in "iu":
            raise StoreError("Integer codes need their categories table; pass categories=.")
        missing = _missing(values)
        categories = [str(c) for c in np.unique(values[~missing].astype(str))]
    codes = text_codes(values, categories)
    if len(codes) and (codes.max() >= len(categories) or codes.min() < MISSING_CODE):
        raise StoreError(f"Text codes run from {codes.min()} to {codes.max()}; the table has {len(categories)} values.")
    has_missing = bool((codes == MISSING_CODE).any())
    meta: dict[str, Any] = {"encoding": DICTIONARY_ENCODING, "categories": list(categories), "ordered": False}
    if has_missing:
        meta["_FillValue"] = MISSING_CODE
    return codes.astype(_code_dtype(len(categories), has_missing)), meta
