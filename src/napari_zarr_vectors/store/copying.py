"""Planning a copy of a store (``napari-zarr-vectors download``) from its metadata.

A web server cannot list a folder, so the files are found from the store's
own metadata: the root lists its levels, every zarr.json says whether its
node is a group or an array, and every chunk array of zarr-vectors names
the chunks that hold data (``nonempty_chunks``), which with the array's grid
origin, chunk key encoding and shard shape give its files.  Metadata does
not name a group's children (attribute names, link offset segments), so
those come from a bucket's listing, the folder index page a web server may
give, or, on a server with neither, from probing the names the format
allows where they are finitely many."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import caching
from .access import plain, resolve, shown
from .errors import RemoteStoreError, StoreError
from .handle import _writing
from .levels import _drop_level_from_root_metadata, remove_link_family
from .metadata import _json_kind, _mapping, _parse_root_json, declared_levels

#: What a resolution level may hold (probed on a web server that gives no folder index).
_LEVEL_CHILDREN = (
    "vertices",
    "vertex_fragments",
    "link_fragments",
    "links",
    "cross_chunk_links",
    "link_attributes",
    "vertex_attributes",
    "fragment_attributes",
    "object_index",
    "object_attributes",
    "groups",
    "group_attributes",
)


_FIXED_CHILDREN = {
    "object_index": ("manifests", "object_ids"),
    "parametric": ("objects", "object_attributes", "groups", "group_attributes"),
}


#: Families whose children are level-delta segments (``+1``, ``-1``, ``0``...).
_DELTA_FAMILIES = ("links", "cross_chunk_links")


#: Most cells of an array without a presence manifest fetched blind from a server that cannot list.
_MAX_BLIND_CELLS = 100_000


#: Requests in flight at once while planning or copying.
COPY_CONCURRENCY = 16


@dataclass(frozen=True)
class CopyPlan:
    """The files a copy of a store takes, found from its metadata.

    ``metadata`` holds every zarr.json to copy, already fetched (key ->
    bytes); ``files`` the data files still to fetch.  Files in
    ``optional`` may be absent (cells of an array without a presence
    manifest, on a server that cannot list: absent means fill value).
    ``skipped`` names the link families ``(level, delta)`` left out
    because they point into a level not copied.
    """

    source: str
    levels: tuple[int, ...]
    dropped: tuple[int, ...]
    metadata: Mapping[str, bytes]
    files: tuple[str, ...]
    optional: frozenset[str] = frozenset()
    skipped: tuple[tuple[int, int], ...] = ()

    @property
    def keys(self) -> set[str]:
        """Every file of the copy, metadata included."""
        return set(self.metadata) | set(self.files)


def _safe_name(name: str) -> bool:
    """A child name that stays one path component inside the copy."""
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0")


class StoreFiles:
    """A store's files by key (bytes, or None when absent), for copying it.

    Remote stores are read through the session's handle: metadata through
    its cache, data files past it (a copy reads each once, and caching
    them would only hold memory).  Local stores (tests, checks) through
    the plugin's LocalStore.  Every whole file is capped (``limits``) and
    a server's unasked encodings refused (``caching.fetch``).  Reads are
    coroutines on zarr's I/O loop; ``run`` starts one there from any thread.
    """

    def __init__(self, source: str | os.PathLike[str]) -> None:
        self.access = resolve(source)
        self.source = self.access.address
        self._meta, self._data = self.access.file_stores()
        self.listing = "list" if self.access.can_list else "index"

    async def get(self, key: str, *, data: bool = False) -> bytes | None:
        """One file's bytes; None when the store has no such file (a 404)."""
        from zarr.core.buffer import default_buffer_prototype

        if data and self.access.local is None:
            raw = await caching.fetch(self._data, self.source, key)
            return None if raw is None else bytes(raw)
        try:
            buf = await (self._data if data else self._meta).get(key, default_buffer_prototype())
        except FileNotFoundError:
            return None
        return None if buf is None else buf.to_bytes()

    async def pieces(self, key: str) -> AsyncIterator[Any] | None:
        """A data file as pieces of a few MB, for writing to disk one by one (never whole in memory); None: absent.

        Refused before its body is read when it is larger than the chunk
        cap or encoded unasked, and stopped if it runs past the cap.
        """
        if self.access.local is None:
            return await caching.stream(self._data, self.source, key)
        raw = await self.get(key, data=True)
        if raw is None:
            return None

        async def one() -> AsyncIterator[bytes]:
            yield raw

        return one()

    async def list_dir(self, path: str) -> list[str]:
        return [name async for name in self._meta.list_dir(path)]

    async def list_prefix(self, prefix: str) -> list[str]:
        return [key async for key in self._meta.list_prefix(prefix)]

    def run(self, coro: Any) -> Any:
        """Start ``coro`` on zarr's I/O loop (where the store's requests run); a concurrent Future."""
        import asyncio

        from zarr.core.sync import _get_loop

        return asyncio.run_coroutine_threadsafe(coro, _get_loop())

    def explain(self, exc: BaseException, key: str) -> str:
        """A failure fetching ``key`` as one sentence naming the store, the file and what to check."""
        if isinstance(exc, StoreError):  # already a sentence (a cap, an encoding refused, a damaged file)
            return str(exc)
        return self.access.explain(exc, f"fetching '{key}'", f"Store '{self.source}': reading '{key}' failed ({exc}).")


class _Planner:
    """Walks a store's metadata (concurrently) and collects the files of the chosen levels."""

    def __init__(self, files: StoreFiles, root: dict[str, Any], keep: Sequence[int], declared: Sequence[int]) -> None:
        import asyncio

        self.files, self.root, self.keep, self.declared = files, root, set(keep), list(declared)
        self.gate = asyncio.Semaphore(COPY_CONCURRENCY)
        self.metadata: dict[str, bytes] = {}
        self.data: set[str] = set()
        self.optional: set[str] = set()
        self.skipped: set[tuple[int, int]] = set()
        self.nodes: dict[str, dict[str, Any] | None] = {}

    def shown(self, key: str) -> str:
        return f"'{shown(self.files.source)}/{key}'"

    async def _get(self, key: str) -> bytes | None:
        async with self.gate:
            try:
                return await self.files.get(key)
            except StoreError:
                raise
            except Exception as exc:  # noqa: BLE001 - obstore's errors become one sentence
                raise RemoteStoreError(self.files.explain(exc, key)) from None

    async def node(self, path: str) -> dict[str, Any] | None:
        """The parsed zarr.json of ``path`` (None when there is none), fetched once."""
        if path in self.nodes:
            return self.nodes[path]
        key = f"{path}/zarr.json" if path else "zarr.json"
        raw = await self._get(key)
        meta = None
        if raw is not None:
            try:
                meta = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                top = path.split("/")[0]
                whose = f"Level {top}'s metadata " if top.isdigit() else "The store's metadata "
                raise StoreError(
                    f"{whose}{self.shown(key)} is not valid JSON ({exc}); the store is damaged where it is kept: "
                    "ask its owner to repair it, or copy other levels with --levels."
                ) from None
            if not isinstance(meta, dict):
                raise StoreError(f"{self.shown(key)} holds {_json_kind(meta)}, not Zarr metadata.")
            self.metadata[key] = raw
        self.nodes[path] = meta
        return meta

    async def walk(self) -> None:
        import asyncio

        root_children = [str(lv) for lv in sorted(self.keep)]
        missing: list[str] = []
        step = 2 * COPY_CONCURRENCY  # in order, a batch at a time: a root listing 10,000 levels of which the
        for start in range(0, len(root_children), step):  # fourth is gone fails after one batch, not 10,000 GETs
            batch = root_children[start : start + step]
            missing = [name for name, meta in zip(batch, await self._nodes(batch), strict=True) if not meta]
            if missing:
                break
        if missing:
            raise StoreError(
                f"Store '{shown(self.files.source)}' lists level {missing[0]}, but its "
                f"{self.shown(missing[0] + '/zarr.json')} is missing: the store is incomplete where it is kept. "
                "Copy the other levels with --levels, or ask the store's owner to upload that level."
            )
        extras = await self._children("")
        extras = [n for n in extras if not n.isdigit()]  # levels: only the listed ones that were chosen
        await asyncio.gather(*(self._visit(name) for name in root_children + extras))

    async def _nodes(self, paths: Sequence[str]) -> list[dict[str, Any] | None]:
        import asyncio

        return list(await asyncio.gather(*(self.node(p) for p in paths)))

    async def _visit(self, path: str) -> None:
        import asyncio

        if self._into_dropped_level(path):
            return
        meta = await self.node(path)
        if meta is None:
            return  # a listed or probed name that is not a Zarr node
        if meta.get("node_type") == "array":
            await self._array_files(path, meta)
            return
        names = await self._children(path)
        await asyncio.gather(*(self._visit(f"{path}/{name}") for name in names))

    def _into_dropped_level(self, path: str) -> bool:
        """A link family (or its attributes) pointing into a level not copied: skipped, and noted."""
        parts = path.split("/")
        if not parts[0].isdigit() or len(parts) < 3:
            return False
        if parts[1] in _DELTA_FAMILIES and len(parts) == 3:
            segment = parts[2]
        elif parts[1] == "link_attributes" and len(parts) == 4:
            segment = parts[3]
        else:
            return False
        try:
            from zarr_vectors.core.paths import parse_delta

            delta = parse_delta(segment)
        except ValueError:
            return False
        level = int(parts[0])
        if delta == 0 or level + delta in self.keep:
            return False
        self.skipped.add((level, delta))
        return True

    async def _children(self, path: str) -> list[str]:
        """The child names of group ``path``: listed (a bucket; a web server's folder index page), else probed."""
        names: list[str] | None = None
        if path or self.files.listing == "list":  # a web server's root "listing" is only the levels it lists
            try:
                async with self.gate:
                    names = await self.files.list_dir(path)
            except Exception as exc:  # noqa: BLE001 - obstore's errors become one sentence
                if self.files.listing == "list":
                    raise RemoteStoreError(self.files.explain(exc, path + "/")) from None
                # a web server without an index page for this folder: the format's names are probed
        if names is None:
            names = await self._probe(path)
        # the node's own metadata, and what journals, locks and interrupted writes leave (never store content)
        return sorted(
            n
            for n in names
            if n != "zarr.json" and _safe_name(n) and not n.startswith(".") and not n.endswith(".partial")
        )

    async def _probe(self, path: str) -> list[str]:
        """The names a group may hold by the format; a StoreError where the format leaves them open."""
        parts = path.split("/") if path else []
        if not parts:
            return ["parametric"]
        if len(parts) == 1 and parts[0].isdigit():
            return list(_LEVEL_CHILDREN)
        if parts[-1] in _FIXED_CHILDREN and len(parts) <= 2:
            return list(_FIXED_CHILDREN[parts[-1]])
        if parts[0].isdigit() and len(parts) == 2 and parts[1] in _DELTA_FAMILIES:
            from zarr_vectors.core.paths import format_delta

            level = int(parts[0])
            return [format_delta(t - level) for t in self.declared]
        if parts[0].isdigit() and len(parts) == 3 and parts[1] in _DELTA_FAMILIES and parts[2] != "0":
            segments = await self._cross_level_segments(int(parts[0]), path)
            if segments is not None:
                return segments
        raise StoreError(
            f"'{shown(self.files.source)}': the web server gives no folder index for '{path}/', and the names "
            "in it are not recorded in the store's metadata (zarr-vectors finds them by listing). Download from "
            "the bucket's own address (s3://... or gs://...) instead, or from a server that lists folders "
            "(nginx autoindex, Apache Indexes, python -m http.server)."
        )

    async def _cross_level_segments(self, level: int, path: str) -> list[str] | None:
        """The offset segments a two-endpoint cross-level family can have (probed on a server without an index).

        An endpoint at the other level lies in chunk ``anchor + offset``
        with ``anchor = floor(c * r_src / r_trg)`` (zarr-vectors'
        ``anchor_chunk``; ``r`` a level's chunk size in root chunks), so
        per axis the offset is within ``-1 .. r_src / r_trg``.
        """
        import itertools

        from zarr_vectors.core.paths import format_offsets, parse_delta

        family = _mapping((await self.node(path) or {}).get("attributes"))
        if int(family.get("link_width", 2)) != 2:
            return None
        target = level + parse_delta(path.split("/")[2])
        r_src, r_trg = await self._chunk_scale(level), await self._chunk_scale(target)
        if r_src is None or r_trg is None:
            return None
        spans = [range(-1, max(1, s // t) + 1) for s, t in zip(r_src, r_trg, strict=True)]
        return [format_offsets([offset]) for offset in itertools.product(*spans)]

    async def _chunk_scale(self, level: int) -> list[int] | None:
        """A level's chunk shape in root chunks per axis (1s unless the pyramid grew its chunks)."""
        base = _mapping(_mapping(self.root.get("attributes")).get("zarr_vectors")).get("chunk_shape")
        meta = await self.node(str(level))
        own = _mapping(_mapping(_mapping(meta).get("attributes")).get("zarr_vectors_level")).get("chunk_shape") or base
        try:
            return [max(1, round(float(a) / float(b))) for a, b in zip(own, base, strict=True)]
        except (TypeError, ValueError, ZeroDivisionError):
            return None

    async def _array_files(self, path: str, meta: dict[str, Any]) -> None:
        """The data files of array ``path``: from its presence manifest, else listed, else every cell (optional)."""
        import itertools

        from zarr.core.metadata.v3 import ArrayV3Metadata

        try:
            md = ArrayV3Metadata.from_dict(meta)
            outer = tuple(int(c) for c in md.chunk_grid.chunk_shape)
        except Exception as exc:  # noqa: BLE001 - zarr raises many kinds for bad metadata
            raise StoreError(f"{self.shown(path + '/zarr.json')} is not Zarr v3 array metadata ({exc}).") from None
        attrs = _mapping(meta.get("attributes"))
        present = attrs.get("nonempty_chunks")
        if isinstance(present, list):
            origin = [int(v) for v in attrs.get("chunk_grid_origin") or [0] * len(outer)]
            for cell in present:
                try:
                    coords = [int(c) for c in str(cell).split(".")]
                except ValueError:
                    raise StoreError(
                        f"{self.shown(path + '/zarr.json')} lists chunk {cell!r}, which is not a chunk key."
                    ) from None
                index = tuple((c - o) // s for c, o, s in zip(coords, origin, outer, strict=True))
                self.data.add(f"{path}/{md.encode_chunk_key(index)}")
            return
        if self.files.listing == "list":
            try:
                keys = await self.files.list_prefix(path + "/")
            except Exception as exc:  # noqa: BLE001 - obstore's errors become one sentence
                raise RemoteStoreError(self.files.explain(exc, path + "/")) from None
            self.data.update(k for k in keys if k != f"{path}/zarr.json")
            return
        grid = [range(-(-int(n) // c)) for n, c in zip(md.shape, outer, strict=True)]
        cells = int(np.prod([len(r) for r in grid])) if grid else 1
        if cells > _MAX_BLIND_CELLS:
            raise StoreError(
                f"'{shown(self.files.source)}': array '{path}' records no presence manifest and has {cells:,} "
                "chunk cells; without a listing each would be asked for. Download from the bucket's own address "
                "(s3://... or gs://...) instead."
            )
        for index in itertools.product(*grid):
            key = f"{path}/{md.encode_chunk_key(tuple(index))}"
            self.data.add(key)
            self.optional.add(key)


def copy_plan(source: str | os.PathLike[str], levels: Iterable[int] | None = None) -> CopyPlan:
    """Find every file a copy of ``source`` with ``levels`` (default: all; 0 always) takes, from its metadata.

    Link families pointing into levels left out are left out too (and
    listed in ``skipped``), so the copy has nothing dangling once
    ``finish_copy`` has run.
    """
    files = StoreFiles(source)

    async def plan() -> CopyPlan:
        root_raw = await files.get("zarr.json")
        if root_raw is None:
            raise StoreError(f"'{shown(files.source)}' is not a Zarr Vectors store: it has no zarr.json.")
        root = _parse_root_json(shown(files.source), root_raw)
        attrs = _mapping(root.get("attributes"))
        if not isinstance(attrs.get("zarr_vectors"), Mapping):
            raise StoreError(f"'{shown(files.source)}' is a Zarr group but not a Zarr Vectors store.")
        declared = [int(n) for n in declared_levels(attrs)]
        if 0 not in declared:
            raise StoreError(f"Store '{shown(files.source)}' lists no level 0 (it lists {declared}): it has no data.")
        wanted = sorted({0, *(int(v) for v in levels)}) if levels is not None else declared
        unknown = [lv for lv in wanted if lv not in declared]
        if unknown:
            raise StoreError(
                f"Store '{shown(files.source)}' has no level {unknown[0]}; it has levels "
                f"{', '.join(map(str, declared))}."
            )
        planner = _Planner(files, root, wanted, declared)
        planner.metadata["zarr.json"] = root_raw
        planner.nodes[""] = root
        await planner.walk()
        return CopyPlan(
            source=files.source,
            levels=tuple(wanted),
            dropped=tuple(lv for lv in declared if lv not in wanted),
            metadata=dict(sorted(planner.metadata.items())),
            files=tuple(sorted(planner.data)),
            optional=frozenset(planner.optional),
            skipped=tuple(sorted(planner.skipped)),
        )

    return files.run(plan()).result()


def finish_copy(path: str | os.PathLike[str], plan: CopyPlan) -> None:
    """Make a local copy of some of a store's levels consistent: the root lists only them, no link dangles.

    The families into levels not copied were never fetched; removing them
    (``remove_link_family``, as ``repair`` does) re-derives each level's
    ``arrays_present``, and ``_drop_level_from_root_metadata`` takes the
    levels left out off the root's lists, as ``remove_level`` does.
    """
    root = Path(plain(path)).resolve()
    with _writing(root):
        for level, delta in plan.skipped:
            remove_link_family(root, level, delta)
        if plan.dropped:
            _drop_level_from_root_metadata(root, plan.dropped)
