"""Finding what is incomplete in a store (an interrupted journal, broken levels, dangling links, partial files)
and removing it, in one write session."""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

import numpy as np

from .access import plain, refuse_remote
from .chunks import chunk_offsets, level_rows
from .errors import StoreError
from .handle import _SESSIONS, Handle, _metadata_present, _store_root, _writing, handle
from .journal import SymlinkInStore, refuse_symlinks, symlinks
from .levels import _drop_level_from_root_metadata, link_deltas, remove_link_family
from .links import reader_of
from .metadata import declared_levels
from .rows import pack_rows
from .session import interrupted_write, recover, write_session

#: Cells of a link family read to tell whether it is stale, spread evenly over the family's cells.
STALE_SAMPLE_CELLS = 8


def repair(path: str | os.PathLike[str], *, dry_run: bool = False) -> list[str]:
    """Find what is incomplete in a store (and, unless ``dry_run``, remove it); one sentence per finding.

    For stores damaged by older versions of this plugin or by other
    tools: an interrupted journal, levels listed but missing or reading
    back fewer vertices than listed (they and every coarser level go),
    link families into levels that are not there, stale link families
    (their target level was rebuilt after them: ``_stale_family``; one
    whose cells cannot be read is reported and kept), leftover
    ``*.partial`` files.  Only what is incomplete is removed, and never
    level 0; the removal is itself one all-or-nothing write session.
    """
    path = plain(path)
    refuse_remote(path, "repair it")
    root = Path(path).resolve()
    with _writing(root):
        return _repair(root, dry_run)


def _repair(root: Path, dry_run: bool) -> list[str]:
    found: list[str] = []
    if not dry_run:  # before anything is read: whatever repair would delete could lie outside the store
        try:
            refuse_symlinks(root)
        except SymlinkInStore as exc:
            raise StoreError(str(exc)) from None
    else:
        found += [
            f"'{link}' is a symbolic link: repair (and every change) refuses the store until it is replaced by a real "
            "copy of what it points to"
            for link in symlinks(root)[:3]
        ]
    done = None if dry_run else recover(root)
    if done:
        found.append(done)
    elif (interrupted := interrupted_write(root)) is not None:
        found.append(f"{interrupted} (recovered by repair without --dry-run)")
    attrs, _ = _store_root(root)
    declared = sorted({int(n) for n in declared_levels(attrs)} | {int(n) for n in _level_dirs(root)})
    problems = {level: _level_problem(root, level) for level in declared}  # each level is read once
    broken = [level for level in declared if level != 0 and problems[level] is not None]
    found += _grouped_findings(broken, problems)
    bad = min(broken, default=None)
    if problems.get(0) is not None:
        found.append(f"level 0: {problems[0]} (level 0 is never removed; restore it from a copy)")
    present = [lv for lv in declared if bad is None or lv < bad]
    families = [(lv, d) for lv in present if problems[lv] is None for d in link_deltas(root, lv)]
    dangling = [(lv, d) for lv, d in families if lv + d not in present]
    for lv, d in dangling:
        found.append(f"level {lv}: links {d:+d} point to level {lv + d}, which is not a complete level")
    stale = []
    for lv, d in families:
        if lv + d not in present or problems[lv + d] is not None:
            continue
        try:
            why = _stale_family(root, lv, d, {v for v in present if problems[v] is None})
        except Exception as exc:  # damaged link cells: said, never a reason to delete what may be right
            found.append(f"level {lv}: links {d:+d} could not be checked ({exc}); they were left as they are")
            continue
        if why is not None:
            stale.append((lv, d))
            found.append(f"level {lv}: links {d:+d} {why}")
    partials = _partials(root)
    if partials:
        found.append(f"{len(partials)} leftover *.partial file(s) from interrupted writes, e.g. '{partials[0]}'")
    if dry_run or not (bad is not None or dangling or stale or partials):
        return found
    doomed = [lv for lv in declared if bad is not None and lv >= bad]
    with write_session(root, "repair"):
        for lv, d in dangling + stale:
            remove_link_family(root, lv, d)
        for level in sorted(doomed, reverse=True):
            if (root / str(level)).is_dir():
                _delete_level_tree(root, level)
        if doomed:
            _drop_level_from_root_metadata(root, doomed)
        partials = _partials(root)  # looked for again holding the lock
        _delete_files(root, partials)
    found.append(
        "repaired: "
        + ", ".join(
            [f"removed level(s) {_ranges(doomed)}"] * bool(doomed)
            + [f"removed {len(dangling)} dangling link famil{'y' if len(dangling) == 1 else 'ies'}"] * bool(dangling)
            + [f"removed {len(stale)} stale link famil{'y' if len(stale) == 1 else 'ies'}"] * bool(stale)
            + [f"deleted {len(partials)} partial file(s)"] * bool(partials)
        )
    )
    return found


def _ranges(levels: Collection[int]) -> str:
    """Level numbers as runs: ``3-9999`` rather than ten thousand numbers, ``1, 3-5`` for a few."""
    runs: list[list[int]] = []
    for level in sorted(levels):
        if runs and level == runs[-1][1] + 1:
            runs[-1][1] = level
        else:
            runs.append([level, level])
    return ", ".join(str(a) if a == b else f"{a}, {b}" if b == a + 1 else f"{a}-{b}" for a, b in runs)


def _grouped_findings(levels: list[int], problems: dict[int, str | None]) -> list[str]:
    """One sentence per problem: levels with the same one (a root listing thousands that are gone) share it."""
    by_problem: dict[str, list[int]] = {}
    for level in levels:
        by_problem.setdefault(str(problems[level]), []).append(level)
    return [
        f"level {lv[0]}: {why}" if len(lv) == 1 else f"levels {_ranges(lv)} ({len(lv):,} levels): {why}"
        for why, lv in by_problem.items()
    ]


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


def _partials(root: Path) -> list[Path]:
    """Leftover ``*.partial`` files of interrupted cell writes (a write session's own journal is not looked in)."""
    return [p for p in root.rglob("*.partial") if ".nzv-journal" not in p.relative_to(root).parts]


def _delete_files(root: Path, files: list[Path]) -> None:
    """Delete files through the write session: recorded now, deleted when it publishes (or rolled forward)."""
    _SESSIONS[str(root)].delete_when_published(p.relative_to(root).as_posix() for p in files)


def _delete_level_tree(root: Path, level: int) -> None:
    """Remove a level's folder through the write session (deferred to its publish)."""
    from zarr.core.sync import sync

    staging = _SESSIONS.get(str(root))
    sync(staging.delete_dir(str(level)))


def _stale_family(root: Path, level: int, delta: int, complete: Collection[int]) -> str | None:
    """Why ``links/<delta>`` at ``level`` is stale (written before the level it points into was rebuilt), or None.

    No metadata records when a family was written, so its records are
    checked against the levels as they are now, on a sample: at most
    ``STALE_SAMPLE_CELLS`` of its cells (its source chunks), spread
    evenly over them.  Every sampled record must address a vertex both
    levels hold (its chunk is there, its row is below that chunk's count).
    A family other than ``+1`` must also agree with the ``+1`` links
    composed ``|delta|`` times (the ``+1`` links are written with the
    level they point into, by every build): for ``+delta``, every sampled
    source vertex has the same parents either way; for ``-delta``, every
    sampled record joins a metanode to a vertex whose composed ancestor
    it is.  A rebuilt level differs almost everywhere, so a few cells
    tell; a level rebuilt exactly as it was leaves the family right, and
    it is kept.  Cost: the sampled cells of the family and of each ``+1``
    family on the way (a few chunks' links, not whole levels; opening a
    family's offset arrays dominates, 0.05-0.2 s a family here), and the
    chunk counts of the levels involved, which ``repair`` reads anyway.
    ``complete`` are the levels that can be read (a ``+1`` chain through
    any other level is not followed).
    """
    h = handle(root)
    reader = reader_of(h, level)
    cells = reader.link_cells_present(delta)
    if not cells:
        return None
    pick = np.unique(np.linspace(0, len(cells) - 1, min(len(cells), STALE_SAMPLE_CELLS)).round().astype(int))
    sample = [cells[i] for i in pick.tolist()]
    source, target = _ends(*reader.link_cells(delta, sample))
    for lv, keys in ((level, source), (level + delta, target)):
        gone = int((~_held(h, lv, keys)).sum())
        if gone:
            return (
                f"address {gone:,} vertices level {lv} does not hold: level {level + delta} was rebuilt "
                "after them (stale links)"
            )
    fine, steps = min(level, level + delta), abs(delta)
    if delta == 1 or not all(f in complete and 1 in link_deltas(h, f) for f in range(fine, fine + steps)):
        return None  # +1 is the reference; without a +1 chain there is nothing to compose
    if delta > 0:  # every sampled source vertex with a parent, whether or not this family lists it
        fine_keys = np.unique(np.concatenate([source, _ends(*reader.link_cells(1, sample))[0]]), axis=0)
        direct = np.column_stack([source, target])
    else:
        fine_keys = np.unique(target, axis=0)
        direct = np.column_stack([target, source])
    which, ancestors = _compose_up(h, fine, fine_keys, steps)
    composed = np.column_stack([fine_keys[which], ancestors])
    if delta < 0:  # only the metanodes of the sampled cells: their records are the ones read
        ndim = h.ndim
        in_sample = np.isin(*pack_rows(ancestors[:, :ndim], np.asarray(sample, np.int64).reshape(-1, ndim)))
        composed = composed[in_sample]
    width = fine_keys.shape[1]
    a, b = np.unique(direct, axis=0), np.unique(composed, axis=0)
    if np.array_equal(a, b):
        return None
    differ = {tuple(r[:width]) for r in set(map(tuple, a.tolist())) ^ set(map(tuple, b.tolist()))}
    return (
        f"disagree with the +1 links composed {steps} times for {len(differ):,} of {len(fine_keys):,} sampled "
        f"vertices: level {level + delta} was rebuilt after them (stale links)"
    )


def _ends(chunks: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A family's records as (source keys, target keys): chunk coordinates, then the row in the chunk."""
    return tuple(np.column_stack([chunks[:, e, :], rows[:, e]]).astype(np.int64) for e in (0, 1))


def _held(h: Handle, level: int, keys: np.ndarray) -> np.ndarray:
    """Whether each key names a vertex ``level`` holds: its chunk has vertices and its row is below their count."""
    offsets, order, total = chunk_offsets(h, level)
    if not len(keys) or not order:
        return np.zeros(len(keys), bool)
    table = np.asarray(order, np.int64).reshape(len(order), -1)
    starts = np.asarray([offsets[k] for k in order], np.int64)
    counts = np.diff(np.r_[starts, total])
    t, k = pack_rows(table, keys[:, :-1])
    by = np.argsort(t)
    at = by[np.clip(np.searchsorted(t[by], k), 0, len(t) - 1)]
    rows = keys[:, -1]
    return (t[at] == k) & (rows >= 0) & (rows < counts[at])


def _compose_up(h: Handle, level: int, keys: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``keys`` of ``level`` followed up ``steps`` levels along ``+1`` links: (index into keys, ancestor key) pairs."""
    which, current = np.arange(len(keys)), keys
    for k in range(steps):
        cells = {tuple(c) for c in current[:, :-1].tolist()}
        source, target = _ends(*reader_of(h, level + k).link_cells(1, cells))
        if not len(source) or not len(current):
            return np.zeros(0, np.int64), np.zeros((0, keys.shape[1]), np.int64)
        q, s = pack_rows(current, source)
        by = np.argsort(s, kind="stable")
        lo, hi = np.searchsorted(s[by], q, "left"), np.searchsorted(s[by], q, "right")
        n = hi - lo
        sel = by[np.repeat(lo, n) + np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)]
        which, current = np.repeat(which, n), target[sel]
    return which, current
