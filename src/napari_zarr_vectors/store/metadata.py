"""Pure parsing of a store's root ``zarr.json``: sizes capped, every field checked, nothing trusted.

No I/O here: callers hand in bytes or parsed dicts.  A malformed field
becomes a StoreError naming the field and what it must be."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .errors import StoreError

STORE_SUFFIXES = (".zarrvectors", ".zv")
#: The most of a root zarr.json ever read: a store's is a few kB (about 1 kB a level), so a
#: larger file is not a store's metadata, and parsing a huge one costs several times its size.
MAX_METADATA_BYTES = 16 * 2**20


def _json_kind(value: Any) -> str:
    """A JSON value's kind, as a user editing zarr.json would call it."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, int | float) else type(value).__name__)


def _parse_root_json(path: str, raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_METADATA_BYTES:
        raise StoreError(
            f"Store '{path}' has a zarr.json of {len(raw):,} bytes; a Zarr Vectors store's root zarr.json is a few "
            f"kB (at most {MAX_METADATA_BYTES:,} bytes are read). It is not a store's root metadata."
        )
    try:
        root = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(
            f"Store '{path}' has a corrupt zarr.json ({exc}). "
            "The store's root metadata cannot be read; restore it from a copy."
        ) from None
    except RecursionError:
        raise StoreError(
            f"Store '{path}' has a corrupt zarr.json: its JSON is nested too deeply to be metadata. "
            "Restore it from a copy."
        ) from None
    if not isinstance(root, dict):
        raise StoreError(
            f"Store '{path}' has a corrupt zarr.json: it holds {_json_kind(root)}, not a JSON object. "
            "Restore it from a copy."
        )
    attrs = root.get("attributes")
    if attrs is not None and not isinstance(attrs, dict):
        raise StoreError(
            f"Store '{path}' has a corrupt zarr.json: its \"attributes\" is {_json_kind(attrs)}, not an object "
            "of named attributes. Restore zarr.json from a copy."
        )
    return root


def has_store_suffix(path: str | os.PathLike[str]) -> bool:
    return str(path).rstrip("/\\").lower().endswith(STORE_SUFFIXES)


def _shown(value: Any, limit: int = 120) -> str:
    """A metadata value as JSON for a message, cut to ``limit`` characters."""
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _mapping(value: Any) -> Mapping[str, Any]:
    """``value`` when it is a JSON object, else an empty one (metadata this plugin only reads if well formed)."""
    return value if isinstance(value, Mapping) else {}


def _floats(value: Any, ndim: int, positive: bool) -> list[float] | None:
    """``value`` as ``ndim`` finite floats (each above 0 when ``positive``), else None.

    Plain Python, no numpy per call: a root listing 10,000 levels has
    some 50,000 of these checked when it is opened.
    """
    if not isinstance(value, list | tuple) or len(value) != ndim:
        return None
    low = 0.0 if positive else -math.inf
    out = []
    for v in value:
        kind = type(v)
        if kind is not float and kind is not int and (isinstance(v, bool) or not isinstance(v, int | float)):
            return None
        try:
            f = float(v)
        except OverflowError:  # an int beyond any float
            return None
        if not low < f < math.inf:  # NaN fails this too
            return None
        out.append(f)
    return out


def _numbers(p: Path, value: Any, ndim: int, what: str) -> np.ndarray:
    """``value`` as ``ndim`` finite floats, or a StoreError naming the metadata field ``what``."""
    out = _floats(value, ndim, positive=False)
    if out is None:
        raise StoreError(
            f"Store '{p}': its zarr.json's {what} is {_shown(value)}; it must be a list of {ndim} finite numbers "
            f"(one per axis). Fix that entry in zarr.json, or restore the file from a copy."
        )
    return np.asarray(out, dtype=float)


def _sizes(p: Path, value: Any, ndim: int, what: str, where: str = "its zarr.json's") -> np.ndarray:
    """``value`` as ``ndim`` positive finite floats (a bin or chunk size), or a StoreError naming the field ``what``.

    A size of 0, below 0, NaN or infinite has no meaning, and code that
    grows or divides by a bin (the density image doubles its pixel until
    it fits) would never finish on one; so it is refused where it is read.
    """
    return np.asarray(_size_list(p, value, ndim, what, where), dtype=float)


def _size_list(p: Any, value: Any, ndim: int, what: str, where: str = "its zarr.json's") -> list[float]:
    """``_sizes`` as a list of floats."""
    out = _floats(value, ndim, positive=True)
    if out is None:
        raise StoreError(
            f"Store '{p}': {where} {what} is {_shown(value)}; it must be a list of {ndim} positive finite numbers "
            "(one per axis: a size in the data's units). Fix that entry, or restore the file from a copy."
        )
    return out


#: The root's sizes: level 0's bin (the chunk's when absent) and every level's chunk unless a level has its own.
ROOT_SIZES = ("base_bin_shape", "chunk_shape")
#: A level's own sizes in its ``<level>/zarr.json`` (``bin_ratio`` scales the root's bin when ``bin_shape`` is absent).
LEVEL_SIZES = ("bin_shape", "bin_ratio", "chunk_shape")


def _check_root_sizes(p: Path, attrs: Mapping[str, Any], ndim: int) -> None:
    """The bin and chunk sizes the root's zarr.json gives: each positive and finite, or a StoreError naming it.

    ``attributes.zarr_vectors.base_bin_shape`` and ``.chunk_shape``, and
    each coarse level's NGFF ``scale`` (its bin ratio) and ``translation``
    (half its bin) in ``attributes.multiscales``, from which zarr-vectors
    derives a level's bin.  An absent entry is left to zarr-vectors.
    """
    zmeta = _mapping(attrs.get("zarr_vectors"))
    for name in ROOT_SIZES:
        if zmeta.get(name) is not None:
            _sizes(p, zmeta[name], ndim, f"attributes.zarr_vectors.{name}")
    multiscales = attrs.get("multiscales")
    for i, ms in enumerate(multiscales if isinstance(multiscales, list) else []):
        datasets = _mapping(ms).get("datasets")
        for j, ds in enumerate(datasets if isinstance(datasets, list) else []):
            name = str(_mapping(ds).get("path"))
            if not name.isdigit() or int(name) == 0:
                continue  # level 0's bin is the root's base_bin_shape: zarr-vectors ignores its transforms
            transforms = _mapping(ds).get("coordinateTransformations")
            for k, tr in enumerate(transforms if isinstance(transforms, list) else []):
                kind = _mapping(tr).get("type")
                if kind in ("scale", "translation") and tr.get(kind) is not None:
                    where = f"attributes.multiscales[{i}].datasets[{j}].coordinateTransformations[{k}].{kind}"
                    _sizes(p, tr[kind], ndim, where)


def _check_level_sizes(p: Path, level: int, level_attrs: Mapping[str, Any], ndim: int) -> None:
    """A level's own bin and chunk sizes (in ``<level>/zarr.json``): each positive and finite, or a StoreError."""
    meta = _mapping(level_attrs.get("zarr_vectors_level"))
    for name in LEVEL_SIZES:
        if meta.get(name) is not None:
            _sizes(p, meta[name], ndim, f"attributes.zarr_vectors_level.{name}", f"level {level}'s {level}/zarr.json's")


def _scene_transform(
    attrs: Mapping[str, Any], ndim: int, path: Path = Path(".")
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Scale and translation from the OME scene transforms (identity when absent)."""
    scale = np.ones(ndim)
    translate = np.zeros(ndim)
    scene = _mapping(_mapping(_mapping(attrs.get("ome")).get("attributes")).get("scene"))
    transforms = scene.get("coordinateTransformations")
    where = "attributes.ome.attributes.scene.coordinateTransformations"
    for i, tr in enumerate(transforms if isinstance(transforms, list) else []):
        if not isinstance(tr, Mapping):
            continue
        kind = tr.get("type")
        values = tr.get(kind) if kind in ("scale", "translation") else None
        if not isinstance(values, list | tuple) or len(values) != ndim:
            continue  # a transform for other axes (or of another type) is not ours to apply
        v = _numbers(path, values, ndim, f"{where}[{i}].{kind}")
        if kind == "scale":
            if np.any(v == 0):
                raise StoreError(
                    f"Store '{path}': its zarr.json's {where}[{i}].scale is {list(values)}; a scale of 0 "
                    "collapses an axis. Fix that entry in zarr.json (1 means unscaled)."
                )
            scale, translate = scale * v, translate * v
        else:
            translate = translate + v
    return tuple(scale.tolist()), tuple(translate.tolist())


def _bounds(p: Path, raw: Any, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """``attributes.zarr_vectors.bounds`` as (min, max) arrays, or a StoreError saying what it must be."""
    try:
        lo, hi = (_numbers(p, corner, ndim, "bounds") for corner in raw)
        if np.all(lo <= hi):
            return lo, hi
    except (StoreError, TypeError, ValueError):
        pass
    raise StoreError(
        f"Store '{p}': its zarr.json's attributes.zarr_vectors.bounds is {_shown(raw)}; it must be "
        f"[[min per axis], [max per axis]], two lists of {ndim} finite numbers with each min <= max. "
        "Restore zarr.json from a copy (the bounds say where the data lies: the viewer and density images need them)."
    )


def _frozen(array: np.ndarray) -> np.ndarray:
    """``array`` made read-only: a handle's results are shared by every caller."""
    array.setflags(write=False)
    return array


def declared_levels(attrs: Mapping[str, Any]) -> list[str]:
    """Level names a store's root attributes list (``multiscales`` datasets and OME ``zv:level`` nodes), sorted.

    Malformed entries (a user-edited zarr.json) are skipped, never raised on.
    """

    def mapping(value: Any) -> Mapping[str, Any]:
        return value if isinstance(value, Mapping) else {}

    names: list[str] = []
    multiscales = attrs.get("multiscales")
    for ms in multiscales if isinstance(multiscales, list) else []:
        datasets = mapping(ms).get("datasets")
        if isinstance(datasets, list):
            names += [str(d.get("path")) for d in datasets if isinstance(d, Mapping)]
    nodes = mapping(attrs.get("ome")).get("nodes")
    for node in nodes if isinstance(nodes, list) else []:
        if isinstance(node, Mapping) and node.get("type") == "zv:level":
            names.append(str(node.get("name")))
    return sorted({n for n in names if n.isdigit()}, key=int)


def is_metadata_key(key: str) -> bool:
    """Metadata documents (zarr v3, and the v2 names zarr probes for): kept all session, absences too."""
    return key.rsplit("/", 1)[-1] in ("zarr.json", ".zgroup", ".zattrs", ".zarray", ".zmetadata")


def level_transforms(attrs: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Each level's NGFF ``(scale, translation)`` from ``attributes.multiscales``, read in one pass.

    The answer zarr-vectors' ``read_level_transform`` gives for one level
    (the first dataset whose ``path`` is the level's name; its last scale
    and last translation, None when absent), for every level at once: that
    function scans the whole list per level, so a root listing 10,000
    levels cost 10^8 steps.  Values are as written (``_check_root_sizes``
    checks those of coarse levels); malformed entries are skipped.
    """
    found: dict[str, tuple[Any, Any]] = {}
    multiscales = attrs.get("multiscales")
    for ms in multiscales if isinstance(multiscales, list) else []:
        datasets = _mapping(ms).get("datasets")
        for ds in datasets if isinstance(datasets, list) else []:
            name = _mapping(ds).get("path")
            if not isinstance(name, str) or name in found:
                continue
            scale = translation = None
            transforms = ds.get("coordinateTransformations")
            for tr in transforms if isinstance(transforms, list) else []:
                kind = _mapping(tr).get("type")
                if kind == "scale":
                    scale = tr.get("scale") or []
                elif kind == "translation":
                    translation = tr.get("translation") or []
            found[name] = (scale, translation)
    return found


def level_file(store: Any, level: int) -> str:
    """How messages name a level's metadata file: ``STORE/<level>/zarr.json``."""
    return f"{store}/{level}/zarr.json"


def parse_level_json(store: Any, level: int, raw: bytes) -> Mapping[str, Any]:
    """A level's ``<level>/zarr.json``: its ``attributes.zarr_vectors_level``, or a StoreError naming that file.

    ``store`` is the store as messages show it.  The level's own file is
    named (not "the root metadata"), with what to do about it.
    """
    where = level_file(store, level)
    fix = (
        "Restore it from a copy (level 0 is the data itself)."
        if level == 0
        else f"Restore it from a copy, or run `napari-zarr-vectors repair {store}` to remove level {level} "
        "and the levels above it (they can be built again)."
    )
    if len(raw) > MAX_METADATA_BYTES:
        raise StoreError(
            f"Store '{store}': level {level}'s metadata file '{where}' holds {len(raw):,} bytes; a level's zarr.json "
            f"is a few hundred bytes (at most {MAX_METADATA_BYTES:,} are read). {fix}"
        )
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        why = "its JSON is nested too deeply" if isinstance(exc, RecursionError) else f"{exc}"
        raise StoreError(
            f"Store '{store}': level {level}'s metadata file '{where}' is corrupt ({why}). {fix}"
        ) from None
    attrs = doc.get("attributes") if isinstance(doc, dict) else None
    meta = attrs.get("zarr_vectors_level") if isinstance(attrs, dict) else None
    if not isinstance(meta, dict):
        what = (
            f"holds {_json_kind(doc)}, not a JSON object"
            if not isinstance(doc, dict)
            else "has no attributes.zarr_vectors_level object"
        )
        raise StoreError(f"Store '{store}': level {level}'s metadata file '{where}' {what}. {fix}")
    for key in ("level", "vertex_count", "arrays_present"):
        if key not in meta:
            raise StoreError(
                f"Store '{store}': level {level}'s metadata file '{where}' lacks attributes.zarr_vectors_level."
                f"{key}. {fix}"
            )
    count = meta["vertex_count"]
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise StoreError(
            f"Store '{store}': level {level}'s metadata file '{where}' says attributes.zarr_vectors_level."
            f"vertex_count is {_shown(count)}; it must be a whole number of at least 0. {fix}"
        )
    return meta


def level_shapes(
    store: Any,
    level: int,
    meta: Mapping[str, Any],
    transform: tuple[Any, Any],
    root_bin: Any,
    root_chunk: Any,
    ndim: int,
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """A level's bin and chunk sizes, derived as zarr-vectors' ``Level.resolution`` and ``Level.scale`` do.

    ``meta`` is the level's ``zarr_vectors_level`` (``parse_level_json``),
    ``transform`` its NGFF ``(scale, translation)`` (``level_transforms``)
    and ``root_bin`` / ``root_chunk`` the root's ``base_bin_shape`` and
    ``chunk_shape``.  The NGFF scale and translation take precedence over
    the level's own ``bin_ratio`` / ``bin_shape`` (level 0 has neither);
    a level with no bin of its own has the root's bin times its ratio.
    Each result is checked positive and finite, naming the file.
    """
    where = f"level {level}'s {level}/zarr.json's"
    own: dict[str, list[float]] = {}
    for name in LEVEL_SIZES:  # the level's own sizes, each checked once
        if meta.get(name) is not None:
            own[name] = _size_list(store, meta[name], ndim, f"attributes.zarr_vectors_level.{name}", where)
    own_bin = own.get("bin_shape") or meta.get("bin_size") or None
    ratio = own.get("bin_ratio")
    scale, translation = transform
    if scale is not None:
        if level == 0:
            own_bin = ratio = None
        else:
            ratio = scale
            if translation is not None:
                own_bin = [2.0 * float(t) for t in translation]
    source = "(zarr-vectors derives it from the root's and the level's zarr.json)"
    chunk = own.get("chunk_shape") or _size_list(store, root_chunk, ndim, f"chunk size {source}", where)
    if own_bin:
        bins = own_bin
    elif root_bin:
        ratio = list(ratio) if ratio else [1.0] * len(root_bin)
        bins = [float(b) * float(r) for b, r in zip(root_bin, ratio, strict=False)]
    else:
        bins = chunk
    # checked again as derived: a ratio times a base, or twice a translation, can still overflow
    return tuple(_size_list(store, bins, ndim, f"bin size {source}", where)), tuple(chunk)


def check_metadata_document(root: Any, key: str, raw: bytes) -> None:
    """A StoreError naming the file when the metadata document ``key`` of the store at ``root`` is damaged.

    Every metadata document a local store's handle reads passes here
    once (they are kept after): it must be JSON, an object, and for a
    ``zarr.json`` what zarr itself accepts as a group's or an array's
    metadata.  So a truncated or hand-edited array or level metadata file
    is named, with what to do, instead of surfacing as a zarr, JSON or
    KeyError from deep inside a read.
    """
    where = f"{root}/{key}"
    top = key.split("/", 1)[0]
    fix = (
        f"run `napari-zarr-vectors repair {root}` to remove level {top} and the levels above it, or restore the "
        "file from a copy"
        if top.isdigit() and int(top) > 0
        else "restore the file from a copy"
    )

    def damaged(why: str) -> StoreError:
        return StoreError(f"Store '{root}': the metadata file '{where}' is damaged ({why}); {fix}.")

    if len(raw) > MAX_METADATA_BYTES:
        raise damaged(f"{len(raw):,} bytes, where metadata is a few kB")
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise damaged(f"not JSON: {exc}") from None
    except RecursionError:
        raise damaged("its JSON is nested too deeply") from None
    if not isinstance(doc, dict):
        raise damaged(f"it holds {_json_kind(doc)}, not a JSON object")
    if key.rsplit("/", 1)[-1] != "zarr.json":
        return
    kind = doc.get("node_type")
    try:
        if kind == "array":
            from zarr.core.metadata.v3 import ArrayV3Metadata

            ArrayV3Metadata.from_dict(dict(doc))
        elif kind == "group":
            from zarr.core.group import GroupMetadata

            GroupMetadata.from_dict(dict(doc))
        else:
            raise damaged(f'its node_type is {_shown(kind)}, not "group" or "array"')
    except StoreError:
        raise
    except Exception as exc:  # zarr's own validation: ValueError, TypeError, KeyError, MetadataValidationError
        raise damaged(f"zarr cannot read it: {type(exc).__name__}: {exc}") from None
