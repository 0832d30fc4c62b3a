"""Finding what is incomplete in a store (an interrupted journal, broken levels, dangling links, partial files)
and removing it, in one write session."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .access import plain, refuse_remote
from .chunks import level_rows
from .handle import _SESSIONS, _metadata_present, _store_root, _writing, handle
from .levels import _drop_level_from_root_metadata, link_deltas, remove_link_family
from .metadata import declared_levels
from .session import interrupted_write, recover, write_session


def repair(path: str | os.PathLike[str], *, dry_run: bool = False) -> list[str]:
    """Find what is incomplete in a store (and, unless ``dry_run``, remove it); one sentence per finding.

    For stores damaged by older versions of this plugin or by other
    tools: an interrupted journal, levels listed but missing or reading
    back fewer vertices than listed (they and every coarser level go),
    link families into levels that are not there, leftover ``*.partial``
    files.  Only what is incomplete is removed, and never level 0; the
    removal is itself one all-or-nothing write session.
    """
    path = plain(path)
    refuse_remote(path, "repair it")
    root = Path(path).resolve()
    with _writing(root):
        return _repair(root, dry_run)


def _repair(root: Path, dry_run: bool) -> list[str]:
    found: list[str] = []
    done = None if dry_run else recover(root)
    if done:
        found.append(done)
    elif (interrupted := interrupted_write(root)) is not None:
        found.append(f"{interrupted} (recovered by repair without --dry-run)")
    attrs, _ = _store_root(root)
    declared = sorted({int(n) for n in declared_levels(attrs)} | {int(n) for n in _level_dirs(root)})
    problems = {level: _level_problem(root, level) for level in declared}  # each level is read once
    broken = [level for level in declared if level != 0 and problems[level] is not None]
    found += [f"level {level}: {problems[level]}" for level in broken]
    bad = min(broken, default=None)
    if problems.get(0) is not None:
        found.append(f"level 0: {problems[0]} (level 0 is never removed; restore it from a copy)")
    present = [lv for lv in declared if bad is None or lv < bad]
    dangling = [
        (lv, d) for lv in present if problems[lv] is None for d in link_deltas(root, lv) if lv + d not in present
    ]
    for lv, d in dangling:
        found.append(f"level {lv}: links {d:+d} point to level {lv + d}, which is not a complete level")
    partials = [p for p in root.rglob("*.partial") if ".nzv-journal" not in p.parts]
    if partials:
        found.append(f"{len(partials)} leftover *.partial file(s) from interrupted writes, e.g. '{partials[0]}'")
    if dry_run or not (bad is not None or dangling or partials):
        return found
    doomed = [lv for lv in declared if bad is not None and lv >= bad]
    with write_session(root, "repair"):
        for lv, d in dangling:
            remove_link_family(root, lv, d)
        for level in sorted(doomed, reverse=True):
            if (root / str(level)).is_dir():
                _delete_level_tree(root, level)
            _drop_level_from_root_metadata(root, level)
    for p in partials:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    found.append(
        "repaired: "
        + ", ".join(
            [f"removed level(s) {', '.join(map(str, sorted(doomed)))}"] * bool(doomed)
            + [f"removed {len(dangling)} dangling link famil{'y' if len(dangling) == 1 else 'ies'}"] * bool(dangling)
            + [f"deleted {len(partials)} partial file(s)"] * bool(partials)
        )
    )
    return found


def _level_dirs(root: Path) -> list[str]:
    return [e.name for e in os.scandir(root) if e.is_dir() and e.name.isdigit()]


def _level_problem(root: Path, level: int) -> str | None:
    """Why ``level`` is incomplete (missing, unreadable, fewer vertices than its metadata lists), or None."""
    if not _metadata_present(root, f"{level}/zarr.json"):
        return "listed, but its folder or zarr.json is missing"
    try:
        lv = handle(root).dataset.level(level)
        listed = int(lv.vertex_count) if hasattr(lv, "vertex_count") else None
        rows = level_rows(root, level)
    except Exception as exc:  # upstream raises many kinds for a damaged level
        return f"cannot be read ({exc})"
    if listed is not None and rows < listed:
        return f"lists {listed:,} vertices but holds {rows:,}"
    if listed is not None and listed > 0 and rows == 0:
        return "holds no vertices"
    return None


def _delete_level_tree(root: Path, level: int) -> None:
    """Remove a level's folder through the write session (deferred to its publish)."""
    from zarr.core.sync import sync

    staging = _SESSIONS.get(str(root))
    sync(staging.delete_dir(str(level)))
