"""New stores, written all or nothing into a temporary sibling and renamed into place, and attribute writes."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import socket
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .access import plain, refuse_remote
from .categorical import encode_text, is_text
from .errors import StoreError
from .handle import _chunk_offsets, _level, _writing, forget


def auto_chunk_shape(
    positions: np.ndarray, *, target_per_chunk: int = 50_000
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """A cubic chunk (and a bin a quarter of it) holding about ``target_per_chunk`` vertices.

    Used when the caller gives no layout: a few tens of thousands of
    vertices per chunk keeps reads batched and boxes selective.
    """
    positions = np.asarray(positions, float)
    ndim = positions.shape[1]
    extent = positions.max(0) - positions.min(0) if len(positions) else np.ones(ndim)
    edge = float(max(extent.max(), 1e-6))
    per_axis = max(1, int(np.ceil((max(len(positions), 1) / target_per_chunk) ** (1.0 / ndim))))
    chunk = edge / per_axis
    # a round number a little larger than needed, so bounds fall inside the grid
    magnitude = 10 ** np.floor(np.log10(chunk))
    chunk = float(np.ceil(chunk * 1.01 / magnitude) * magnitude)
    return (chunk,) * ndim, (chunk / 4.0,) * ndim


def check_new_target(target: Path, verb: str = "write", error: type[StoreError] | None = None) -> None:
    """Refuse a new store's folder that is a file, holds something, or cannot be made (``verb`` names the act)."""
    error = error or StoreError
    if target.exists() or target.is_symlink():
        if not target.is_dir():
            raise error(
                f"Refusing to {verb} '{target}': a file with that name exists. Choose a new name; nothing was changed."
            )
        if any(target.iterdir()):
            raise error(
                f"Refusing to {verb} '{target}': it exists and is not empty. "
                "Choose a new name or delete it yourself; nothing was changed."
            )
    if not target.parent.is_dir():
        raise error(f"Cannot {verb} '{target}': folder '{target.parent}' does not exist.")
    if not os.access(target.parent, os.W_OK):
        raise error(f"Cannot {verb} '{target}': folder '{target.parent}' is not writable.")


#: A writer's temporary sibling of its target: ``.NAME.partial-<pid>-<host>-<8 hex>``.
PARTIAL_INFIX = ".partial-"
_TEMP_TAIL = re.compile(r"^(?P<pid>[0-9]+)-(?P<host>.*)-[0-9a-f]{8}$")


def _host() -> str:
    """This machine's name as it goes into a temporary name (letters, digits, dots and dashes)."""
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname())[:64] or "host"


def temp_sibling(target: str | os.PathLike[str]) -> Path:
    """A new temporary name beside ``target`` that says whose it is: ``.NAME.partial-<pid>-<host>-<random>``.

    The pid and host let the next writer to the same target tell a
    temporary left by a process that died (kill -9, a power cut) from one
    a live process is still writing (``remove_stale_temps``).
    """
    target = Path(target)
    return target.with_name(f".{target.name}{PARTIAL_INFIX}{os.getpid()}-{_host()}-{uuid.uuid4().hex[:8]}")


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` exists here (one we may not signal counts: it is alive)."""
    if pid <= 0:
        return True  # not a pid a temporary name holds: never treat it as gone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def stale_temps(target: str | os.PathLike[str]) -> list[Path]:
    """Temporaries of ``target`` (``temp_sibling`` names) whose writer, on this host, is no longer running.

    One of a live process, of another host, or of an older naming without
    a pid is never listed: it may still be written.
    """
    target = Path(target)
    prefix = f".{target.name}{PARTIAL_INFIX}"
    found = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return []
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        m = _TEMP_TAIL.match(entry.name[len(prefix) :])
        if m and m["host"] == _host() and not _alive(int(m["pid"])):
            found.append(Path(entry.path))
    return found


def remove_stale_temps(target: str | os.PathLike[str]) -> list[Path]:
    """Delete what ``stale_temps`` lists (left by writers that were killed); the paths removed."""
    removed = []
    for path in stale_temps(target):
        discard(path, settle=False)
        if not os.path.lexists(path):
            removed.append(path)
    return removed


def discard(path: Path, *, settle: bool = True) -> None:
    """Delete a writer's temporary folder or file, after its cell writes settled (``settle``); never raises."""
    if settle:
        from .journal import settle_writer_threads

        settle_writer_threads()
    for _ in range(3):  # a write that raced the first pass (it cannot once the pool settled) is caught by the next
        if not os.path.lexists(path):
            return
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()


@contextlib.contextmanager
def ctrl_c_held() -> Iterator[None]:
    """Hold back Ctrl+C (in the main thread) until the block has finished, then deliver it.

    For the few steps that publish or clean up: a rename cut in half by
    Ctrl+C would leave what a kill leaves, and the user only asked to stop.
    """
    from .journal import _DeferSigint

    with _DeferSigint():
        yield


@contextlib.contextmanager
def atomic_store(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write a new store at; it is renamed to ``target`` only on success.

    The temporary path is ``.NAME.partial-<pid>-<host>-<random>/NAME``
    beside ``target``: the store is written under its own final name, so
    the name zarr-vectors records in its root metadata (``ome.name``) is
    the final one, and the rename moves it into place in one step.  Any
    failure (an exception, Ctrl+C, a full disk) deletes the temporary
    folder; one left by a writer that was killed is deleted by the next
    write to the same target (``remove_stale_temps``).  An existing
    non-empty target is refused before anything is written.
    """
    refuse_remote(target, "write a store")
    target = Path(target).absolute()
    if target.parent.is_dir():
        remove_stale_temps(target)
    check_new_target(target)
    box = temp_sibling(target)
    published = False
    try:
        try:
            box.mkdir()
            tmp = box / target.name
            yield tmp
            if target.exists():  # an empty directory: replace it
                target.rmdir()
            os.replace(tmp, target)
            published = True
            forget(target)
        except BaseException as exc:
            with ctrl_c_held():  # a second Ctrl+C waits until the temporary folder is gone
                discard(box, settle=not published)
            if published or isinstance(exc, StoreError) or not isinstance(exc, Exception):
                raise
            raise StoreError(_failure_message(target, exc)) from exc
    finally:
        with ctrl_c_held():  # on success the folder is empty; a kill before this leaves it to the next write
            discard(box, settle=False)


def _failure_message(target: Path, exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return (
            f"Writing '{target}' failed: the disk holding '{target.parent}' is full. Nothing was written "
            "(the partial copy was deleted); free some space there and try again."
        )
    return f"Writing '{target}' failed, nothing was written: {exc}"


def _rows_text(rows: Sequence[int], limit: int = 10) -> str:
    """``rows 3, 17 and 99`` (the first ``limit``, then how many more)."""
    shown = [f"{r:,}" for r in rows[:limit]]
    more = len(rows) - len(shown)
    word = "row" if len(rows) == 1 else "rows"
    if more:
        return f"{word} {', '.join(shown)} and {more:,} more"
    return f"{word} {', '.join(shown[:-1])} and {shown[-1]}" if len(shown) > 1 else f"{word} {shown[0]}"


def _check_finite(
    path: str | os.PathLike[str], parts: Sequence[np.ndarray], what: tuple[str, str], part: str = ""
) -> None:
    """Refuse NaN or infinite coordinates, naming the rows (per ``part``, e.g. "path", when there are parts).

    ``what`` is the vertices' name, singular and plural.
    """
    bad = [np.flatnonzero(~np.isfinite(np.asarray(a, dtype=float)).all(axis=-1)) for a in parts]
    n_bad = sum(len(b) for b in bad)
    if not n_bad:
        return
    verb, noun = ("has", what[0]) if n_bad == 1 else ("have", what[1])
    if not part:  # "1 of 6 points has ..."
        total = len(parts[0])
        where = f"{n_bad:,} of {total:,} {what[1]} {verb} NaN or infinite coordinates ({_rows_text(bad[0].tolist())})"
    else:
        hit = [(i, b) for i, b in enumerate(bad) if len(b)]
        listed = "; ".join(f"{part} {i}: {_rows_text(b.tolist(), 5)}" for i, b in hit[:5])
        more = f"; and {len(hit) - 5:,} more {part}s" if len(hit) > 5 else ""
        where = (
            f"{n_bad:,} {noun} in {len(hit):,} of {len(parts):,} {part}s {verb} NaN or infinite coordinates "
            f"({listed}{more})"
        )
    raise StoreError(
        f"Cannot write '{path}': {where}. A store's vertices need finite positions: remove those rows or give "
        "them coordinates, then save again; nothing was written."
    )


def _store_dtype(arrays: Sequence[np.ndarray]) -> str:
    """float32 when every coordinate survives the cast exactly, else float64."""
    for a in arrays:
        a = np.asarray(a)
        if a.dtype != np.float32 and not np.array_equal(a.astype(np.float32), a):
            return "float64"
    return "float32"


def _layout(positions: np.ndarray, chunk_shape: Sequence[float] | None, bin_shape: Sequence[float] | None):
    if chunk_shape is None:
        chunk, auto_bin = auto_chunk_shape(positions)
        return chunk, tuple(bin_shape) if bin_shape is not None else auto_bin
    chunk = tuple(float(c) for c in chunk_shape)
    return chunk, tuple(float(b) for b in bin_shape) if bin_shape is not None else tuple(c / 4 for c in chunk)


def _write_store(
    path: str | os.PathLike[str],
    positions: np.ndarray,
    chunk_shape: Sequence[float] | None,
    bin_shape: Sequence[float] | None,
    write: Callable[..., Any],
    publish: bool = True,
) -> str:
    """A new store at ``path``, all or nothing: ``write(folder, chunk_shape=, bin_shape=)`` into a temporary sibling.

    The chunk and bin shapes not given are chosen from ``positions``.
    ``publish=False`` writes into ``path`` as it is, for a caller that
    holds an ``atomic_store`` temporary and publishes it itself.
    """
    chunk, bins = _layout(positions, chunk_shape, bin_shape)
    if not publish:
        write(str(path), chunk_shape=chunk, bin_shape=bins)
        forget(path)
        return str(Path(path).absolute())
    with atomic_store(path) as tmp:
        write(str(tmp), chunk_shape=chunk, bin_shape=bins)
    return str(Path(path).absolute())


def write_point_cloud(
    path: str | os.PathLike[str],
    positions: np.ndarray,
    *,
    attributes: Mapping[str, np.ndarray] | None = None,
    chunk_shape: Sequence[float] | None = None,
    bin_shape: Sequence[float] | None = None,
    categories: Mapping[str, Sequence[str]] | None = None,
    publish: bool = True,
) -> str:
    """Write a new point_cloud store; refuses an existing non-empty target.

    A column named in ``categories`` holds integer codes into that table
    (-1: missing) and is stored as text, dictionary-encoded, without the
    text itself ever being held per row (an importer keeps codes only).
    ``publish=False`` writes into ``path`` as it is, for a caller that
    holds an ``atomic_store`` temporary and publishes it itself.
    """
    from zarr_vectors import building as b

    positions = np.asarray(positions)
    if positions.ndim != 2 or positions.shape[1] < 2 or len(positions) == 0:
        raise StoreError(f"Cannot write '{path}': points must be a non-empty (N, D>=2) array, got {positions.shape}.")
    _check_finite(path, [positions], ("point", "points"))
    categories = dict(categories or {})
    columns = dict(attributes or {})
    encoded: dict[str, dict[str, Any]] = {}
    for name, table in categories.items():
        if name not in columns:
            raise StoreError(f"Cannot write '{path}': categories name '{name}', which is not an attribute.")
        columns[name], encoded[name] = encode_text(np.asarray(columns[name]), list(table))

    def write(target: str, **layout: Any) -> None:
        b.write_points(
            target,
            positions,
            **layout,
            vertex_attributes=columns or None,
            dtype=_store_dtype([positions]),
        )
        if encoded:  # the codes went in as integers; their table makes them text, as upstream records it
            group, _ = _level(target, 0, "r+")
            for name, meta in encoded.items():
                array = f"{b.VERTEX_ATTRIBUTES}/{name}"
                group.write_array_meta(array, {**group.read_array_meta(array), **meta})

    return _write_store(path, positions, chunk_shape, bin_shape, write, publish)


def _per_vertex(path: str | os.PathLike[str], columns: Mapping[str, np.ndarray] | None, n: int) -> dict[str, Any]:
    """``columns`` checked to hold one row per vertex (``n``); a StoreError naming the first that does not."""
    out = {}
    for name, values in (columns or {}).items():
        values = np.asarray(values)
        if values.ndim == 0 or len(values) != n:
            raise StoreError(
                f"Cannot write '{path}': vertex attribute '{name}' has {values.shape[0] if values.ndim else 0:,} "
                f"rows for {n:,} vertices."
            )
        out[name] = values
    return out


def write_polyline_store(
    path: str | os.PathLike[str],
    polylines: Sequence[np.ndarray],
    *,
    object_attributes: Mapping[str, np.ndarray] | None = None,
    vertex_attributes: Mapping[str, np.ndarray] | None = None,
    geometry_type: str = "polyline",
    chunk_shape: Sequence[float] | None = None,
    bin_shape: Sequence[float] | None = None,
    publish: bool = True,
) -> str:
    """Write a new polyline/streamline store, one object per polyline.

    ``vertex_attributes`` hold one row per vertex of the polylines in
    order (their concatenation), ``object_attributes`` one row per
    polyline. ``publish=False``: as ``write_point_cloud``.
    """
    from zarr_vectors import building as b

    polylines = [np.asarray(p) for p in polylines]
    if not polylines:
        raise StoreError(f"Cannot write '{path}': there are no paths to write.")
    _check_finite(path, polylines, ("vertex", "vertices"), "path")
    lengths = np.array([len(p) for p in polylines], dtype=np.int64)
    columns = _per_vertex(path, vertex_attributes, int(lengths.sum()))
    cuts = np.cumsum(lengths)[:-1]
    per_line = {name: list(np.split(values, cuts)) for name, values in columns.items()}
    return _write_store(
        path,
        np.concatenate(polylines),
        chunk_shape,
        bin_shape,
        lambda target, **layout: b.write_polylines(
            target,
            polylines,
            **layout,
            vertex_attributes=per_line or None,
            object_attributes=dict(object_attributes) if object_attributes else None,
            geometry_type=geometry_type,
            dtype=_store_dtype(polylines),
        ),
        publish,
    )


def write_graph_store(
    path: str | os.PathLike[str],
    positions: np.ndarray,
    edges: np.ndarray,
    *,
    kind: str = "graph",
    object_ids: np.ndarray | None = None,
    vertex_attributes: Mapping[str, np.ndarray] | None = None,
    chunk_shape: Sequence[float] | None = None,
    bin_shape: Sequence[float] | None = None,
    publish: bool = True,
) -> str:
    """Write a new graph or skeleton store; ``edges`` are (child, parent) rows of vertex indices.

    A skeleton holds one rooted tree per object: give a forest one
    ``object_ids`` value per tree (zarr-vectors refuses two roots in one
    object). ``publish=False``: as ``write_point_cloud``.
    """
    from zarr_vectors import building as b

    positions = np.asarray(positions)
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    if positions.ndim != 2 or positions.shape[1] < 2 or len(positions) == 0:
        raise StoreError(f"Cannot write '{path}': nodes must be a non-empty (N, D>=2) array, got {positions.shape}.")
    if len(edges) and (edges.min() < 0 or edges.max() >= len(positions)):
        raise StoreError(f"Cannot write '{path}': an edge names a node that is not among the {len(positions):,}.")
    _check_finite(path, [positions], ("node", "nodes"))
    columns = _per_vertex(path, vertex_attributes, len(positions))
    return _write_store(
        path,
        positions,
        chunk_shape,
        bin_shape,
        lambda target, **layout: b.write_graph(
            target,
            positions,
            edges,
            **layout,
            kind=kind,
            object_ids=None if object_ids is None else np.asarray(object_ids, dtype=np.int64),
            vertex_attributes=columns or None,
            dtype=_store_dtype([positions]),
        ),
        publish,
    )


def write_mesh_store(
    path: str | os.PathLike[str],
    vertices: np.ndarray,
    faces: np.ndarray,
    *,
    vertex_attributes: Mapping[str, np.ndarray] | None = None,
    chunk_shape: Sequence[float] | None = None,
    bin_shape: Sequence[float] | None = None,
    publish: bool = True,
) -> str:
    """Write a new mesh store. ``publish=False``: as ``write_point_cloud``."""
    from zarr_vectors import building as b

    vertices = np.asarray(vertices)
    faces = np.asarray(faces, dtype=np.int64)
    if len(vertices) == 0 or len(faces) == 0:
        raise StoreError(f"Cannot write '{path}': the surface has no vertices or no faces.")
    _check_finite(path, [vertices], ("surface vertex", "surface vertices"))
    return _write_store(
        path,
        vertices,
        chunk_shape,
        bin_shape,
        lambda target, **layout: b.write_mesh(
            target,
            vertices,
            faces,
            **layout,
            vertex_attributes=dict(vertex_attributes) if vertex_attributes else None,
            dtype=_store_dtype([vertices]),
        ),
        publish,
    )


def write_vertex_attributes(
    path: str | os.PathLike[str],
    level: int,
    columns: Mapping[str, np.ndarray],
    *,
    register: bool = True,
    categories: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """Write (or replace) row-ordered vertex attributes at ``level``, chunk writes batched.

    A text column (str or object values), or a column named in
    ``categories`` (its values text or integer codes into that table, -1
    missing), is stored dictionary-encoded, as zarr-vectors stores text:
    integer codes plus the categories table, so it reads back as text.
    ``register=False`` leaves the level's ``arrays_present`` alone (so this
    can run beside a writer of the same level's metadata); call
    ``register_level_arrays`` afterwards.
    """
    with _writing(path):
        _write_vertex_attributes(plain(path), level, columns, register, categories or {})


def _write_vertex_attributes(
    path: Any, level: int, columns: Mapping[str, np.ndarray], register: bool, categories: Mapping[str, Sequence[str]]
) -> None:
    from zarr_vectors import building as b

    group, ndim = _level(path, level, "r+")
    offsets, keys, total = _chunk_offsets(group, ndim)
    bounds = [(k, offsets[k], offsets[keys[i + 1]] if i + 1 < len(keys) else total) for i, k in enumerate(keys)]
    columns = {name: np.asarray(values) for name, values in columns.items()}
    extra: dict[str, dict[str, Any]] = {}
    for name, values in list(columns.items()):
        if name in categories or is_text(values):
            try:
                columns[name], extra[name] = encode_text(values, categories.get(name))
            except StoreError as exc:
                raise StoreError(f"Store '{path}': attribute '{name}' at level {level}: {exc}") from None
    for name, values in columns.items():
        if len(values) != total:
            raise StoreError(f"Store '{path}': attribute '{name}' has {len(values)} rows for {total} vertices.")
        array = f"{b.VERTEX_ATTRIBUTES}/{name}"
        if group.array_exists(array):
            group.delete_subtree(array)
        b.create_attribute_array(
            group,
            name,
            dtype=values.dtype.str.lstrip("<>|="),
            extra_meta=extra.get(name),
            register_family=register,
        )
    # every cell of every attribute in one flush: the writes fan out together
    with group.batched_writes():
        for name, values in columns.items():
            for key, start, stop in bounds:
                b.write_chunk_attributes(
                    group, name, key, [values[start:stop]], dtype=values.dtype, record_presence=False
                )
    for name in columns:
        group.derive_nonempty_chunks(f"{b.VERTEX_ATTRIBUTES}/{name}")
    if register:
        b.refresh_arrays_present(group)


def register_level_arrays(path: str | os.PathLike[str], level: int) -> None:
    """Re-derive a level's ``arrays_present`` from what is on disk."""
    from zarr_vectors import building as b

    with _writing(path):
        b.refresh_arrays_present(_level(plain(path), level, "r+")[0])
