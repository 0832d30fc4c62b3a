"""Levels and link families: listing, removing (never level 0) and sizing them."""

from __future__ import annotations

import json
import os
from collections.abc import Collection
from pathlib import Path

from zarr.core.sync import sync

from .access import plain, refuse_remote, resolve
from .errors import StoreError, reports_full_disk
from .handle import (
    _SESSIONS,
    Handle,
    _level,
    _local_root_bytes,
    _store_root,
    _target,
    _writing,
    forget,
    handle,
    level_ids_of,
)
from .metadata import _mapping
from .session import unwritable, write_session


def list_levels(path: str | os.PathLike[str] | Handle) -> list[int]:
    """Resolution levels of the store, sorted: the ones its root zarr.json lists (``handle.level_ids_of``).

    One read of the root (kept with the store's handle), no level folder
    listed: fast for any number of levels.
    """
    h = handle(path)
    _store_root(h)  # a clear message for what is not a store
    return list(level_ids_of(h))


@reports_full_disk("path", outcome="The change was undone; the level is still there.")
def remove_level(path: str | os.PathLike[str], level: int) -> None:
    """Remove one resolution level (never level 0) and every link family that points into it.

    A read-only store is refused before anything changes.
    """
    path = plain(path)
    refuse_remote(path, "remove a level")
    levels = list_levels(path)
    if level == 0:
        raise StoreError(f"Store '{path}': level 0 holds the data itself and cannot be removed.")
    if level not in levels:
        raise StoreError(f"Store '{path}' has no resolution level {level}; it has {levels}.")
    # every link family of another level that points into this one goes too (level 1's +2 into level 3, ...):
    # left behind, a family would be read after the level is rebuilt and drill to the wrong vertices
    into = _families_into(Path(path), levels, level)
    holders = sorted({str(v) for v, _ in into})
    links = [f"{v}/{family}" for v in holders for family in ("links", "cross_chunk_links")]
    blocked = unwritable(path, trees=[str(level), *links], folders=holders)
    if blocked is not None:
        raise StoreError(
            f"Store '{path}' is read-only ('{blocked}' cannot be changed), so level {level} cannot be removed; "
            "nothing was changed. Make the store writable (or copy it somewhere you can write) and try again."
        )
    try:
        with write_session(path, "remove"):  # the level goes in one step when the session publishes
            for v, d in into:
                remove_link_family(path, v, d)
            # the level's tree, then the root's lists (upstream's remove_resolution_level would also list every
            # level folder to rebuild the OME nodes: seconds for thousands of levels, and the same result)
            sync(_target(path).delete_dir(str(level)))  # the session's staging store: gone when it publishes
            forget(path)
            _drop_level_from_root_metadata(Path(path).resolve(), level)
    except PermissionError as exc:
        raise StoreError(
            f"Store '{path}': removing level {level} was refused by the file system ({exc}); the level may be "
            "partly removed. Make the store writable, then remove the level again."
        ) from exc


def _families_into(root: Path, levels: list[int], level: int) -> list[tuple[int, int]]:
    """``(holder, delta)`` of every link family of another level that points into ``level``.

    One look per level for the one family that could (``<v>/links/<level - v>``),
    rather than listing every level's links: a stat each, so thousands of levels cost milliseconds.
    """
    from zarr_vectors import building as b

    where = os.fspath(root)
    return [
        (v, level - v)
        for v in levels
        if v != level and os.path.isdir(os.path.join(where, str(v), b.links_group_path(level - v)))
    ]


def _drop_level_from_root_metadata(root: Path, level: int | Collection[int]) -> None:
    """Upstream 0.9.2 leaves a removed level listed in ``multiscales`` and the OME nodes; drop it (or them).

    Several levels go in one rewrite of the root document: one rewrite per
    level was quadratic (80 s for a root listing 1,000 levels).
    """
    gone = {str(int(level))} if isinstance(level, int) else {str(int(v)) for v in level}
    staging = _SESSIONS.get(str(root))
    # during a write session, the staged root when there is one (read as bytes: a handle would parse it too)
    raw = handle(root).raw if staging is None else _local_root_bytes(str(root), staging)
    meta = json.loads(raw)
    meta_path = root / "zarr.json" if staging is None else staging.staged / "zarr.json"
    meta_path.parent.mkdir(parents=True, exist_ok=True)
    attrs = meta.get("attributes") or {}
    multiscales = attrs.get("multiscales")
    for ms in multiscales if isinstance(multiscales, list) else []:
        if isinstance(ms, dict) and isinstance(ms.get("datasets"), list):
            ms["datasets"] = [d for d in ms["datasets"] if str(_mapping(d).get("path")) not in gone]
    ome = attrs.get("ome")
    if isinstance(ome, dict) and isinstance(ome.get("nodes"), list):
        ome["nodes"] = [
            n
            for n in ome["nodes"]
            if not (_mapping(n).get("type") == "zv:level" and str(_mapping(n).get("name")) in gone)
        ]
    tmp = meta_path.with_name(".zarr.json.tmp")
    # indented as zarr writes it, unless it lists thousands of levels (Python's indenting encoder is ~10x slower)
    tmp.write_text(json.dumps(meta, indent=2 if len(raw) < 2**20 else None))
    os.replace(tmp, meta_path)
    forget(root)


def link_deltas(path: str | os.PathLike[str] | Handle, level: int) -> list[int]:
    """The cross-level link deltas stored at ``level`` (0, the intra-level links, excluded)."""
    from zarr_vectors import building as b

    h = handle(path)
    found = h.memo(("deltas", int(level)), lambda: tuple(int(d) for d in b.list_link_deltas(h.level_group(level))))
    return sorted(d for d in found if d != 0)


def remove_link_family(path: str | os.PathLike[str] | Handle, level: int, delta: int) -> None:
    """Delete ``links/<delta>`` at ``level`` (and its cross-chunk twin when present)."""
    from zarr_vectors import building as b

    path = plain(path)
    with _writing(path):
        group, _ = _level(path, level, "r+")
        for family in (b.links_group_path(delta), f"cross_chunk_links/{delta:+d}"):
            if group.array_exists(family) or (Path(path) / str(level) / family).exists():
                group.delete_subtree(family)
        b.refresh_arrays_present(group)


def level_nbytes(path: str | os.PathLike[str], level: int) -> int:
    """Bytes on disk under a level's folder (0 for a remote store: a web server cannot list them)."""
    folder = resolve(path).local
    if folder is None:
        return 0  # not on this machine's disk
    total = 0
    stack = [str(folder / str(level))]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
    return total
