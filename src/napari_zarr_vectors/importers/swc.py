"""SWC neuron skeletons as skeleton stores: one object per tree, so forests are kept.

An SWC file is lines of ``id type x y z radius parent`` (``parent`` -1 for
a root); ``#`` starts a comment. Every node becomes a vertex with its
``type`` and ``radius`` as vertex attributes (and its SWC id as
``node_id``), every parent -> child link an edge. zarr-vectors stores one
rooted tree per skeleton object, so a file with several roots (a forest:
a neuron with detached fragments, or several neurons) is written with
one object per tree; nothing is joined or dropped.

The file is read whole (it is text, checked line by line so a bad row is
named): files above ``MAX_SWC_BYTES`` are refused before reading.
"""

from __future__ import annotations

import os

import numpy as np

from .. import store
from .geometry import Loaded, check_file
from .tables import ImportFailed

SWC_SUFFIXES: dict[str, str] = {".swc": "swc"}
#: The largest SWC file read (about 10,000,000 nodes): it is parsed whole, in memory.
MAX_SWC_BYTES = 512 << 20
_FIELDS = "id type x y z radius parent"


def _bad(source: object, line_no: int, line: str, why: str) -> ImportFailed:
    shown = line if len(line) <= 80 else line[:77] + "..."
    return ImportFailed(
        f"Cannot import '{source}': line {line_no:,} ({shown!r}) {why}. Each SWC row is 7 numbers: {_FIELDS}. "
        "Fix or remove that line. Nothing was written."
    )


def parse(source: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The SWC file's nodes as arrays (``id``, ``type``, ``xyz``, ``radius``, ``parent``, ``line``), in file order.

    Raises ImportFailed naming the line of the first bad row: not 7
    numbers, an id that is not a whole number, a coordinate that is not
    finite, a repeated id.
    """
    path = check_file(source, MAX_SWC_BYTES, "SWC files")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ImportFailed(
            f"Cannot import '{source}': it is not an SWC text file (byte {exc.start:,} is not text). "
            "Nothing was written."
        ) from None
    ids: list[int] = []
    types: list[int] = []
    coords: list[tuple[float, float, float]] = []
    radius: list[float] = []
    parent: list[int] = []
    lines: list[int] = []
    for line_no, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) < 7:
            raise _bad(source, line_no, raw.strip(), f"has {len(parts)} values, not 7")
        try:
            values = [float(p) for p in parts[:7]]
        except ValueError:
            word = next(p for p in parts[:7] if not _is_number(p))
            raise _bad(source, line_no, raw.strip(), f"holds {word!r}, not a number") from None
        if not all(np.isfinite(values)):
            raise _bad(source, line_no, raw.strip(), "holds a NaN or infinite value")
        for k in (0, 1, 6):
            if values[k] != int(values[k]):
                name = ("id", "", "", "", "", "", "parent")[k] or "type"
                raise _bad(source, line_no, raw.strip(), f"has {name} {parts[k]}, not a whole number")
        ids.append(int(values[0]))
        types.append(int(values[1]))
        coords.append((values[2], values[3], values[4]))
        radius.append(values[5])
        parent.append(int(values[6]))
        lines.append(line_no)
    if not ids:
        raise ImportFailed(f"Cannot import '{source}': it holds no SWC nodes (only comments). Nothing was written.")
    return {
        "id": np.asarray(ids, np.int64),
        "type": np.asarray(types, np.int32),
        "xyz": np.asarray(coords, np.float64),
        "radius": np.asarray(radius, np.float64),
        "parent": np.asarray(parent, np.int64),
        "line": np.asarray(lines, np.int64),
    }


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


def trees(source: object, nodes: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Each node's parent row (-1 for a root) and tree number (0, 1, ... in order of their roots).

    Raises ImportFailed naming the line of a repeated id, of a parent id
    that is not in the file, or of a node in a cycle (no root above it).
    """
    ids, parent, line = nodes["id"], nodes["parent"], nodes["line"]
    n = len(ids)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    repeat = np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])
    if len(repeat):
        first, again = sorted(order[repeat[0] : repeat[0] + 2])
        raise ImportFailed(
            f"Cannot import '{source}': line {line[again]:,} repeats node id {ids[again]} (first on line "
            f"{line[first]:,}). Each SWC node needs its own id. Nothing was written."
        )
    is_root = parent < 0
    where = np.searchsorted(sorted_ids, parent).clip(0, n - 1)
    found = sorted_ids[where] == parent
    missing = np.flatnonzero(~is_root & ~found)
    if len(missing):
        i = missing[0]
        raise ImportFailed(
            f"Cannot import '{source}': line {line[i]:,} gives node {ids[i]} the parent {parent[i]}, which is no "
            f"node's id in the file ({len(missing):,} such rows). Use -1 for a root. Nothing was written."
        )
    parent_row = np.where(is_root, -1, order[where])
    up = np.where(is_root, np.arange(n), parent_row)
    for _ in range(int(np.ceil(np.log2(max(n, 2)))) + 1):  # pointer jumping: each step doubles the reach
        up = up[up]
    cyclic = np.flatnonzero(~is_root[up])
    if len(cyclic):
        i = cyclic[0]
        raise ImportFailed(
            f"Cannot import '{source}': line {line[i]:,} (node {ids[i]}) is in a loop of parents that reaches no "
            f"root ({len(cyclic):,} nodes). An SWC skeleton is a tree: give one node of the loop parent -1. "
            "Nothing was written."
        )
    roots = np.flatnonzero(is_root)
    tree_of_root = np.full(n, -1, np.int64)
    tree_of_root[roots] = np.arange(len(roots))
    return parent_row, tree_of_root[up]


def depth_first(parent_row: np.ndarray, tree: np.ndarray) -> np.ndarray:
    """The nodes tree after tree, each tree in depth-first order from its root (children in file order).

    zarr-vectors stores a skeleton's parents implicitly (a node's parent
    is the one before it, unless recorded): it orders one tree depth-first
    itself, but takes further trees as given, so each must come so
    ordered, or a node reads back joined to its predecessor.
    """
    n = len(parent_row)
    child = np.flatnonzero(parent_row >= 0)
    by_parent = child[np.argsort(parent_row[child], kind="stable")]
    starts = np.searchsorted(parent_row[by_parent], np.arange(n + 1))
    roots = np.flatnonzero(parent_row < 0)
    roots = roots[np.argsort(tree[roots], kind="stable")]
    order = np.empty(n, np.int64)
    at = 0
    for root in roots.tolist():
        stack = [root]
        while stack:
            node = stack.pop()
            order[at] = node
            at += 1
            stack.extend(reversed(by_parent[starts[node] : starts[node + 1]].tolist()))
    return order


def load(source: str | os.PathLike[str], fmt: str = "swc") -> Loaded:
    """Read an SWC file into level 0 of a skeleton store (written by ``Loaded.write``), one object per tree."""
    nodes = parse(source)
    parent_row, tree = trees(source, nodes)
    order = depth_first(parent_row, tree)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    child = np.flatnonzero(parent_row >= 0)
    edges = np.column_stack([rank[child], rank[parent_row[child]]]) if len(child) else np.zeros((0, 2), np.int64)
    positions = nodes["xyz"][order]
    columns = {
        "type": nodes["type"][order],
        "radius": nodes["radius"][order],
        "node_id": nodes["id"][order],
    }
    object_ids = tree[order]

    def write(folder: os.PathLike[str]) -> None:
        store.write_graph_store(
            folder, positions, edges, kind="skeleton", object_ids=object_ids, vertex_attributes=columns, publish=False
        )

    return Loaded(
        format=fmt,
        kind="skeleton",
        vertices=len(positions),
        objects=int(tree.max()) + 1,
        vertex_attributes=tuple(columns),
        object_attributes=(),
        labels=("type", "node_id"),
        write=write,
    )
